//! Decoding chunks of whole records into input batches: text lines, CSV
//! and JSON lines, the last two with Arrow's decoders against the job's
//! planned schema and projection.
//!
//! Malformed records: a chunk is decoded [`BATCH_ROWS`] records at a time;
//! when a group fails, its records are decoded one by one to find the bad
//! ones and their byte offsets. Without a skip budget the first bad record
//! fails the attempt; with one, bad records are left out, counted and
//! reported, and the coordinator holds the job to the budget.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch, StringArray};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use harrow_core::task::{BAD_RECORD_SAMPLES, BadRecord, InputFormat, InputSpec};
use harrow_sdk::table::column_names;

use crate::framing::Framing;
use crate::input::{InputError, TextChunk, chunk_batches};
use crate::limits::BATCH_ROWS;

/// What a chunk decoded to.
#[derive(Debug, Default)]
pub struct Decoded {
    pub batches: Vec<RecordBatch>,
    pub bad_records: u64,
    /// The first [`BAD_RECORD_SAMPLES`] bad records.
    pub bad_record_samples: Vec<BadRecord>,
}

impl Decoded {
    fn bad(&mut self, record: BadRecord) {
        self.bad_records += 1;
        if self.bad_record_samples.len() < BAD_RECORD_SAMPLES {
            self.bad_record_samples.push(record);
        }
    }
}

/// Decodes the chunks of one map attempt.
#[derive(Debug, Clone)]
pub struct ChunkDecoder {
    format: InputFormat,
    /// The planned schema of the whole input.
    schema: SchemaRef,
    /// Indices into `schema` of the columns the job reads.
    projection: Option<Vec<usize>>,
    /// The schema of decoded batches.
    projected: SchemaRef,
    csv_delimiter: u8,
    skip_bad_records: bool,
}

impl ChunkDecoder {
    /// `columns`: the input columns the job reads, `None` for all.
    pub fn new(spec: &InputSpec, columns: Option<&[String]>) -> Result<Self, InputError> {
        let projection = match columns {
            None => None,
            Some(columns) => Some(
                columns
                    .iter()
                    .map(|c| {
                        spec.schema
                            .index_of(c)
                            .map_err(|_| InputError::MissingColumn {
                                column: c.clone(),
                                available: column_names(&spec.schema),
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let projected = match &projection {
            Some(indices) => Arc::new(
                spec.schema
                    .project(indices)
                    .expect("projection indices come from the schema"),
            ),
            None => spec.schema.clone(),
        };
        Ok(ChunkDecoder {
            format: spec.format,
            schema: spec.schema.clone(),
            projection,
            projected,
            csv_delimiter: spec.csv_delimiter,
            skip_bad_records: spec.skip_bad_records > 0,
        })
    }

    /// The schema of the batches this decoder makes.
    pub fn projected_schema(&self) -> &SchemaRef {
        &self.projected
    }

    pub fn decode(&self, file: &str, chunk: &TextChunk) -> Result<Decoded, InputError> {
        match self.format {
            InputFormat::Text => Ok(Decoded {
                batches: chunk_batches(file, chunk),
                ..Decoded::default()
            }),
            InputFormat::Csv | InputFormat::Jsonl => self.decode_records(file, chunk),
            InputFormat::Parquet => unreachable!("parquet is read by row group, not by chunk"),
        }
    }

    fn decode_records(&self, file: &str, chunk: &TextChunk) -> Result<Decoded, InputError> {
        let data = &chunk.data[..];
        let mut records = Framing::of(self.format).records(data);
        if self.format == InputFormat::Csv && chunk.offset == 0 && !records.is_empty() {
            let header = records.remove(0);
            self.check_header(file, &data[header])?;
        }
        let mut decoded = Decoded::default();
        for group in records.chunks(BATCH_ROWS) {
            let bytes = &data[group[0].start..group[group.len() - 1].end];
            match self.decode_bytes(bytes) {
                Ok(batch) => decoded.batches.push(batch),
                Err(_) => self.decode_one_by_one(file, chunk, group, &mut decoded)?,
            }
        }
        Ok(decoded)
    }

    /// Decodes a failed group record by record, setting the bad ones aside.
    fn decode_one_by_one(
        &self,
        file: &str,
        chunk: &TextChunk,
        group: &[Range<usize>],
        decoded: &mut Decoded,
    ) -> Result<(), InputError> {
        let mut good = Vec::new();
        for record in group {
            match self.decode_bytes(&chunk.data[record.clone()]) {
                Ok(batch) => good.push(batch),
                Err(error) => {
                    let bad = BadRecord {
                        location: file.to_string(),
                        offset: chunk.offset + record.start as u64,
                        reason: reason(&error),
                    };
                    if !self.skip_bad_records {
                        return Err(InputError::BadRecord(bad));
                    }
                    decoded.bad(bad);
                }
            }
        }
        if !good.is_empty() {
            let batch = concat_batches(&self.projected, &good)
                .expect("batches decoded to one schema concatenate");
            decoded.batches.push(batch);
        }
        Ok(())
    }

    /// Decodes whole records into one batch.
    fn decode_bytes(&self, bytes: &[u8]) -> Result<RecordBatch, ArrowError> {
        let batch = match self.format {
            InputFormat::Csv => {
                let mut builder = arrow::csv::ReaderBuilder::new(self.schema.clone())
                    .with_header(false)
                    .with_delimiter(self.csv_delimiter)
                    .with_batch_size(BATCH_ROWS);
                if let Some(projection) = &self.projection {
                    builder = builder.with_projection(projection.clone());
                }
                let mut decoder = builder.build_decoder();
                feed(bytes, |buf| decoder.decode(buf))?;
                // An empty buffer marks the end of input (a last record
                // without its newline).
                decoder.decode(&[])?;
                decoder.flush()?
            }
            InputFormat::Jsonl => {
                let mut decoder = arrow::json::ReaderBuilder::new(self.projected.clone())
                    .with_batch_size(BATCH_ROWS)
                    .build_decoder()?;
                feed(bytes, |buf| decoder.decode(buf))?;
                decoder.flush()?
            }
            InputFormat::Text | InputFormat::Parquet => unreachable!("not decoded by record"),
        };
        Ok(batch.unwrap_or_else(|| RecordBatch::new_empty(self.projected.clone())))
    }

    /// The first line of a CSV file must name the schema's columns in order.
    fn check_header(&self, file: &str, record: &[u8]) -> Result<(), InputError> {
        let expected: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        let strings = Arc::new(Schema::new(
            expected
                .iter()
                .map(|name| Field::new(*name, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let mismatch = |found: String| InputError::Header {
            location: file.to_string(),
            found,
            expected: expected.join(","),
        };
        let mut decoder = arrow::csv::ReaderBuilder::new(strings)
            .with_header(false)
            .with_delimiter(self.csv_delimiter)
            .build_decoder();
        let found = decoder
            .decode(record)
            .and_then(|_| decoder.decode(&[]))
            .and_then(|_| decoder.flush());
        let header = match found {
            Ok(Some(batch)) => batch,
            _ => {
                let text = String::from_utf8_lossy(record);
                return Err(mismatch(text.trim_end().to_string()));
            }
        };
        let names: Vec<String> = header
            .columns()
            .iter()
            .map(|c| {
                let c = c.as_any().downcast_ref::<StringArray>().expect("utf8");
                if c.is_null(0) {
                    String::new()
                } else {
                    c.value(0).to_string()
                }
            })
            .collect();
        if names
            .iter()
            .map(String::as_str)
            .eq(expected.iter().copied())
        {
            Ok(())
        } else {
            Err(mismatch(names.join(",")))
        }
    }
}

/// Hands `bytes` to a decoder until it has taken them all (or takes no more).
fn feed(
    mut bytes: &[u8],
    mut decode: impl FnMut(&[u8]) -> Result<usize, ArrowError>,
) -> Result<(), ArrowError> {
    while !bytes.is_empty() {
        let used = decode(bytes)?;
        if used == 0 {
            break;
        }
        bytes = &bytes[used..];
    }
    Ok(())
}

/// An Arrow decode error as a reason for one record: the line numbers in
/// it count from the record decoded alone, so they go; the offset says
/// where the record is.
fn reason(error: &ArrowError) -> String {
    let message = match error {
        ArrowError::ParseError(m) | ArrowError::CsvError(m) | ArrowError::JsonError(m) => m.clone(),
        other => other.to_string(),
    };
    let mut out = String::with_capacity(message.len());
    let mut rest = message.as_str();
    while let Some(at) = [" at line ", " for line "]
        .iter()
        .filter_map(|p| rest.find(p).map(|i| (i, p.len())))
        .min()
    {
        let (index, len) = at;
        let digits = rest[index + len..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        if digits == 0 {
            out.push_str(&rest[..index + len]);
        } else {
            out.push_str(&rest[..index]);
        }
        rest = &rest[index + len + digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
