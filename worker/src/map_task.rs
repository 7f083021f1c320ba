//! A map attempt: read the split in chunks of whole records (row groups,
//! for Parquet), decode and map each on the rayon pool (several at once),
//! then partition by key hash, sort by (partition, key), combine, and write
//! one segment per partition.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::row::{RowConverter, SortField};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use harrow_core::ids::AttemptId;
use harrow_core::storage::{Location, StorageOptions};
use harrow_core::task::{
    AttemptCounters, BAD_RECORD_SAMPLES, Compression, InputFormat, InputReport, InputSpec,
    SegmentInfo, Split,
};
use harrow_sdk::{JobRuntime, KeyGroups, TaskInfo, TaskKind, group_bounds};
use rayon::prelude::*;

use crate::compressed::CompressedReader;
use crate::cpu::run_cpu;
use crate::decode::{ChunkDecoder, Decoded};
use crate::error::TaskError;
use crate::framing::Framing;
use crate::input::{InputError, SplitReader, TextChunk};
use crate::parquet_input::{ParquetSplit, RowGroup};
use crate::partition::partition_ids;
use crate::segment::write_map_output;

/// Bounds on the bytes read per request and mapped per rayon job. Each
/// chunk gets its own mapper (and combining hash table), so a split is cut
/// into about as many chunks as there are rayon threads: fewer chunks mean
/// fewer partially combined rows to sort.
const MIN_CHUNK_BYTES: u64 = 1 << 20;
const MAX_CHUNK_BYTES: u64 = 32 << 20;

/// Where a map attempt's input comes from.
enum Source {
    Split(SplitReader),
    Compressed(CompressedReader),
    Parquet(ParquetSplit),
}

/// A unit of input to decode and map on a CPU thread.
enum Piece {
    Chunk(TextChunk),
    RowGroup(RowGroup),
}

impl Piece {
    fn bytes(&self) -> u64 {
        match self {
            Piece::Chunk(chunk) => chunk.data.len() as u64,
            Piece::RowGroup(group) => group.bytes,
        }
    }
}

impl Source {
    async fn next(&mut self) -> Result<Option<Piece>, InputError> {
        Ok(match self {
            Source::Split(reader) => reader.next_chunk().await?.map(Piece::Chunk),
            Source::Compressed(reader) => reader.next_chunk().await?.map(Piece::Chunk),
            Source::Parquet(reader) => reader.next_row_group().await?.map(Piece::RowGroup),
        })
    }

    /// Where the records of a byte-range split start and end.
    fn span(&self) -> Option<(u64, u64)> {
        match self {
            Source::Split(reader) => reader.span(),
            Source::Compressed(_) | Source::Parquet(_) => None,
        }
    }
}

/// What a map attempt produced.
#[derive(Debug)]
pub struct MapResult {
    pub segments: Vec<SegmentInfo>,
    pub counters: AttemptCounters,
    pub input: InputReport,
}

/// The split a map attempt reads and how.
#[derive(Debug, Clone, Copy)]
pub struct MapInput<'a> {
    pub split: &'a Split,
    pub spec: &'a InputSpec,
    pub storage: &'a StorageOptions,
}

/// Runs a map attempt, writing its output under `dir`.
pub async fn run_map(
    job: Arc<dyn JobRuntime>,
    attempt: AttemptId,
    input: MapInput<'_>,
    reducers: u32,
    dir: PathBuf,
    progress: &AtomicU64,
) -> Result<MapResult, TaskError> {
    let split = input.split;
    let location = Location::parse_with(&split.location, input.storage)?;
    let decoder = Arc::new(ChunkDecoder::new(
        input.spec,
        job.schema().input_columns.as_deref(),
    )?);
    let task = TaskInfo {
        attempt: attempt.to_string(),
        kind: TaskKind::Map,
        partition: None,
    };
    let starting = job.clone();
    run_cpu(move || starting.start_task(&task))
        .await
        .map_err(TaskError::panic("panicked starting the map task:"))?
        .map_err(TaskError::job("start_task"))?;

    let threads = rayon::current_num_threads().max(1) as u64;
    let chunk_bytes = ((split.end - split.start) / threads).clamp(MIN_CHUNK_BYTES, MAX_CHUNK_BYTES);
    let store = location.store().clone();
    let path = location.path().clone();
    let framing = Framing::of(input.spec.format);
    let mut source = match (input.spec.format, Compression::of(&split.location)) {
        (InputFormat::Parquet, _) => Source::Parquet(
            ParquetSplit::open(store, path, split, decoder.projected_schema().clone()).await?,
        ),
        // A compressed file is one split; its size says little about the
        // text inside, so chunks take the largest size.
        (_, Some(compression)) => Source::Compressed(
            CompressedReader::open(
                store,
                path,
                &split.location,
                compression,
                MAX_CHUNK_BYTES as usize / 2,
                framing,
            )
            .await?,
        ),
        (_, None) => Source::Split(SplitReader::new(store, path, split, chunk_bytes, framing)),
    };
    let parallelism = threads as usize + 1;
    let mut counters = AttemptCounters::default();
    let mut report = InputReport::default();
    let mut mapping = FuturesOrdered::new();
    let mut outputs = Vec::new();
    let mut input_done = false;
    loop {
        while !input_done && mapping.len() < parallelism {
            match source.next().await? {
                Some(piece) => {
                    counters.bytes_in += piece.bytes();
                    progress.fetch_add(piece.bytes(), Ordering::Relaxed);
                    mapping.push_back(run_cpu(map_piece(
                        job.clone(),
                        decoder.clone(),
                        split.location.clone(),
                        piece,
                    )));
                }
                None => input_done = true,
            }
        }
        let Some(mapped) = mapping.next().await else {
            break;
        };
        let mapped = mapped
            .map_err(TaskError::panic("panicked in map:"))?
            .map_err(|error| match (error, &source) {
                // A split that starts mid-file cannot see a quote opened
                // before it: say so, since that reads as malformed records.
                (TaskError::Input(InputError::BadRecord(bad)), Source::Split(_))
                    if input.spec.format == InputFormat::Csv && split.start > 0 =>
                {
                    TaskError::Input(InputError::BadCsvRecordMidFile(bad))
                }
                (error, _) => error,
            })?;
        counters.records_in += mapped.records;
        counters.user.merge(&mapped.counters);
        report.bad_records += mapped.bad_records;
        let room = BAD_RECORD_SAMPLES.saturating_sub(report.bad_record_samples.len());
        report
            .bad_record_samples
            .extend(mapped.bad_record_samples.into_iter().take(room));
        if report.bad_records > input.spec.skip_bad_records {
            return Err(InputError::TooManyBadRecords {
                count: report.bad_records,
                limit: input.spec.skip_bad_records,
                first: report.bad_record_samples[0].clone(),
            }
            .into());
        }
        outputs.push(mapped.output);
    }
    report.span = source.span();

    let stem = attempt.file_stem();
    let (segments, bytes_out) =
        run_cpu(move || sort_and_write(job.as_ref(), outputs, reducers, &dir, &stem))
            .await
            .map_err(TaskError::panic("panicked sorting map output:"))??;
    counters.records_out = segments.iter().map(|s| s.records).sum();
    counters.bytes_out = bytes_out;
    Ok(MapResult {
        segments,
        counters,
        input: report,
    })
}

/// What mapping one piece of input produced.
struct Mapped {
    records: u64,
    counters: harrow_sdk::Counters,
    output: RecordBatch,
    bad_records: u64,
    bad_record_samples: Vec<harrow_core::task::BadRecord>,
}

/// The CPU work for one piece: bytes or a row group → batches → the job's map.
fn map_piece(
    job: Arc<dyn JobRuntime>,
    decoder: Arc<ChunkDecoder>,
    file: String,
    piece: Piece,
) -> impl FnOnce() -> Result<Mapped, TaskError> {
    move || {
        let decoded = match piece {
            Piece::Chunk(chunk) => decoder.decode(&file, &chunk)?,
            Piece::RowGroup(group) => Decoded {
                batches: group.batches()?,
                ..Decoded::default()
            },
        };
        let mut mapper = job.mapper();
        let mut records = 0;
        for batch in &decoded.batches {
            records += batch.num_rows() as u64;
            mapper.map(batch).map_err(TaskError::job("map"))?;
        }
        let (output, counters) = mapper.finish().map_err(TaskError::job("map"))?;
        Ok(Mapped {
            records,
            counters,
            output,
            bad_records: decoded.bad_records,
            bad_record_samples: decoded.bad_record_samples,
        })
    }
}

/// Partitions, sorts and combines map output and writes the segments.
fn sort_and_write(
    job: &dyn JobRuntime,
    outputs: Vec<RecordBatch>,
    reducers: u32,
    dir: &std::path::Path,
    stem: &str,
) -> Result<(Vec<SegmentInfo>, u64), TaskError> {
    let schema = job.schema().key_value();
    let all =
        concat_batches(&schema, &outputs).map_err(TaskError::arrow("concatenating map output"))?;
    drop(outputs);
    let partitions = partition_ids(all.column(0), reducers)?;
    let converter = RowConverter::new(vec![SortField::new(job.schema().key.clone())])
        .map_err(TaskError::arrow("sorting map output"))?;
    let rows = converter
        .convert_columns(std::slice::from_ref(all.column(0)))
        .map_err(TaskError::arrow("sorting map output"))?;
    // Sorting (partition, row bytes, index) triples compares the bytes
    // directly; comparing through `Rows::row` looks the offsets up on every
    // comparison and took 1.7 times as long (benches: `sort` group).
    let mut order: Vec<(u32, &[u8], u32)> = (0..all.num_rows())
        .map(|i| (partitions[i], rows.row(i).data(), i as u32))
        .collect();
    order.par_sort_unstable();
    let sorted_partitions: Vec<u32> = order.iter().map(|&(p, _, _)| p).collect();
    let indices = UInt32Array::from_iter_values(order.iter().map(|&(_, _, i)| i));
    drop(order);
    let sorted =
        take_record_batch(&all, &indices).map_err(TaskError::arrow("sorting map output"))?;
    drop(all);

    let mut per_partition = vec![Vec::new(); reducers as usize];
    let mut start = 0;
    while start < sorted.num_rows() {
        let partition = sorted_partitions[start];
        let len = sorted_partitions[start..].partition_point(|&p| p == partition);
        let slice = sorted.slice(start, len);
        let slice = if job.schema().combiner {
            let bounds =
                group_bounds(slice.column(0)).map_err(TaskError::arrow("grouping map output"))?;
            job.combine(KeyGroups::new(&slice, &bounds))
                .map_err(TaskError::job("combine"))?
        } else {
            slice
        };
        per_partition[partition as usize].push(slice);
        start += len;
    }
    let segments = write_map_output(dir, stem, &schema, &per_partition)?;
    let bytes = segments.iter().map(|s| s.bytes).sum();
    Ok((segments, bytes))
}
