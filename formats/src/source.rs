//! A split as a sequence of pieces, whatever its format: text chunks of
//! whole records, Parquet row groups, or row numbers of generated input;
//! and each piece decoded into Arrow batches. The worker's map attempts
//! read their splits this way, and the coordinator the splits it samples.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::datatypes::SchemaRef;
use harrow_core::storage::{Location, LocationError, StorageOptions};
use harrow_core::task::{Compression, InputFormat, InputSpec, Split};

use crate::compressed::CompressedReader;
use crate::decode::{ChunkDecoder, Decoded};
use crate::framing::Framing;
use crate::input::{InputError, SplitReader, TextChunk};
use crate::limits::BATCH_ROWS;
use crate::limits::COMPRESSED_CHUNK_BYTES;
use crate::limits::MAX_PIECE_ROWS;
use crate::parquet_input::{ParquetSplit, RowGroup};

/// The split to read and how.
#[derive(Debug, Clone, Copy)]
pub struct SplitInput<'a> {
    pub split: &'a Split,
    pub spec: &'a InputSpec,
    pub storage: &'a StorageOptions,
}

/// Why a split could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Location(#[from] LocationError),
    #[error(transparent)]
    Input(#[from] InputError),
}

/// Where a split's pieces come from.
pub enum Source {
    Split(SplitReader),
    Compressed(CompressedReader),
    Parquet(ParquetSplit),
    /// Generated input: the split's `start..end` are row numbers.
    Rows {
        next: u64,
        end: u64,
        piece: u64,
    },
}

/// A unit of input to decode (and map) on a CPU thread.
pub enum Piece {
    Chunk(TextChunk),
    RowGroup(RowGroup),
    Rows(Range<u64>),
}

impl Piece {
    /// Input bytes read.
    pub fn bytes(&self) -> u64 {
        match self {
            Piece::Chunk(chunk) => chunk.data.len() as u64,
            Piece::RowGroup(group) => group.bytes,
            Piece::Rows(_) => 0,
        }
    }

    /// How far this piece moves a reader through its split, in the split's
    /// own unit: bytes, or rows of generated input.
    pub fn progress(&self) -> u64 {
        match self {
            Piece::Rows(rows) => rows.end - rows.start,
            _ => self.bytes(),
        }
    }

    /// The piece as Arrow batches in the job's input schema; `file` names
    /// the input in bad-record reports.
    pub fn decode(self, decoder: &ChunkDecoder, file: &str) -> Result<Decoded, InputError> {
        Ok(match self {
            Piece::Chunk(chunk) => decoder.decode(file, &chunk)?,
            Piece::RowGroup(group) => Decoded {
                batches: group.batches()?,
                ..Decoded::default()
            },
            Piece::Rows(rows) => Decoded {
                batches: row_batches(rows),
                ..Decoded::default()
            },
        })
    }
}

impl Source {
    /// Opens a split. `generated`: the job makes its own input, and the
    /// split's range is row numbers; `schema`: the columns a Parquet split
    /// reads (the decoder's projection); `piece_bytes`: the size of the
    /// text chunks of a plain file, and the rows per piece of generated
    /// input (up to [`MAX_PIECE_ROWS`]).
    pub async fn open(
        input: SplitInput<'_>,
        generated: bool,
        schema: &SchemaRef,
        piece_bytes: u64,
    ) -> Result<Source, OpenError> {
        let split = input.split;
        if generated {
            return Ok(Source::Rows {
                next: split.start,
                end: split.end,
                piece: piece_bytes.clamp(1, MAX_PIECE_ROWS),
            });
        }
        let location = Location::parse_with(&split.location, input.storage)?;
        let store = location.store().clone();
        let path = location.path().clone();
        let framing = Framing::of(input.spec.format);
        Ok(
            match (input.spec.format, Compression::of(&split.location)) {
                (InputFormat::Parquet, _) => {
                    Source::Parquet(ParquetSplit::open(store, path, split, schema.clone()).await?)
                }
                (_, Some(compression)) => Source::Compressed(
                    CompressedReader::open(
                        store,
                        path,
                        &split.location,
                        compression,
                        COMPRESSED_CHUNK_BYTES as usize,
                        framing,
                    )
                    .await?,
                ),
                (_, None) => {
                    Source::Split(SplitReader::new(store, path, split, piece_bytes, framing))
                }
            },
        )
    }

    pub async fn next(&mut self) -> Result<Option<Piece>, InputError> {
        Ok(match self {
            Source::Split(reader) => reader.next_chunk().await?.map(Piece::Chunk),
            Source::Compressed(reader) => reader.next_chunk().await?.map(Piece::Chunk),
            Source::Parquet(reader) => reader.next_row_group().await?.map(Piece::RowGroup),
            Source::Rows { next, end, piece } => (*next < *end).then(|| {
                let start = *next;
                *next = (*end).min(start + *piece);
                Piece::Rows(start..*next)
            }),
        })
    }

    /// Where the records of a byte-range split start and end.
    pub fn span(&self) -> Option<(u64, u64)> {
        match self {
            Source::Split(reader) => reader.span(),
            Source::Compressed(_) | Source::Parquet(_) | Source::Rows { .. } => None,
        }
    }
}

/// Batches of generated input: row numbers, [`BATCH_ROWS`] at a time.
fn row_batches(rows: Range<u64>) -> Vec<RecordBatch> {
    let schema = harrow_sdk::generated_schema();
    (rows.start..rows.end)
        .step_by(BATCH_ROWS)
        .map(|start| {
            let end = rows.end.min(start + BATCH_ROWS as u64);
            let column: ArrayRef = Arc::new(UInt64Array::from_iter_values(start..end));
            RecordBatch::try_new(schema.clone(), vec![column]).expect("row numbers fit the schema")
        })
        .collect()
}
