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
use crate::input::{BATCH_ROWS, InputError, TextChunk, chunk_batches};

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
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use bytes::Bytes;

    fn spec(format: InputFormat, skip: u64) -> InputSpec {
        InputSpec {
            format,
            schema: Arc::new(Schema::new(vec![
                Field::new("name", DataType::Utf8, true),
                Field::new("n", DataType::Int64, true),
            ])),
            csv_delimiter: b',',
            skip_bad_records: skip,
        }
    }

    fn chunk(text: &str, offset: u64) -> TextChunk {
        TextChunk {
            data: Bytes::copy_from_slice(text.as_bytes()),
            offset,
        }
    }

    fn numbers(decoded: &Decoded) -> Vec<i64> {
        decoded
            .batches
            .iter()
            .flat_map(|b| {
                let n = b.column_by_name("n").unwrap();
                let n = n.as_any().downcast_ref::<Int64Array>().unwrap();
                n.values().to_vec()
            })
            .collect()
    }

    #[test]
    fn csv_with_header_quoted_newlines_and_projection() {
        let decoder =
            ChunkDecoder::new(&spec(InputFormat::Csv, 0), Some(&["n".to_string()])).unwrap();
        let text = "name,n\n\"two\nlines\",2\n\nplain,3";
        let decoded = decoder.decode("f.csv", &chunk(text, 0)).unwrap();
        assert_eq!(numbers(&decoded), [2, 3]);
        assert_eq!(decoded.batches[0].num_columns(), 1);
        // Not at the file's start: the first record is data.
        let decoded = decoder.decode("f.csv", &chunk("x,7\n", 100)).unwrap();
        assert_eq!(numbers(&decoded), [7]);
    }

    #[test]
    fn a_bad_record_names_file_and_offset_or_is_skipped() {
        let text = "a,1\nb,oops\nc,3\nd\n";
        let strict = ChunkDecoder::new(&spec(InputFormat::Csv, 0), None).unwrap();
        let error = strict.decode("s3://b/f.csv", &chunk(text, 10)).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("s3://b/f.csv at byte 14"), "{message}");
        assert!(message.contains("oops"), "{message}");
        assert!(!message.contains("line"), "{message}");

        let lenient = ChunkDecoder::new(&spec(InputFormat::Csv, 5), None).unwrap();
        let decoded = lenient.decode("f.csv", &chunk(text, 10)).unwrap();
        assert_eq!(numbers(&decoded), [1, 3]);
        assert_eq!(decoded.bad_records, 2);
        let offsets: Vec<u64> = decoded
            .bad_record_samples
            .iter()
            .map(|b| b.offset)
            .collect();
        assert_eq!(offsets, [14, 25]);
        assert!(
            decoded.bad_record_samples[1]
                .reason
                .contains("number of fields"),
            "{:?}",
            decoded.bad_record_samples[1]
        );
    }

    #[test]
    fn a_header_that_does_not_match_the_schema_fails() {
        let decoder = ChunkDecoder::new(&spec(InputFormat::Csv, 10), None).unwrap();
        let error = decoder
            .decode("f.csv", &chunk("n,name\n1,a\n", 0))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "f.csv: header `n,name` does not match the input schema `name,n`"
        );
    }

    #[test]
    fn json_lines_decode_and_malformed_ones_are_found() {
        let text = "{\"name\":\"a\",\"n\":1,\"extra\":true}\n{\"n\":2}\n{\"n\": \n{\"n\":\"x\"}\n";
        let lenient = ChunkDecoder::new(&spec(InputFormat::Jsonl, 9), None).unwrap();
        let decoded = lenient.decode("f.jsonl", &chunk(text, 0)).unwrap();
        assert_eq!(numbers(&decoded), [1, 2]);
        let offsets: Vec<u64> = decoded
            .bad_record_samples
            .iter()
            .map(|b| b.offset)
            .collect();
        assert_eq!(offsets, [40, 47]);
        let strict = ChunkDecoder::new(&spec(InputFormat::Jsonl, 0), None).unwrap();
        let error = strict.decode("f.jsonl", &chunk(text, 0)).unwrap_err();
        assert!(error.to_string().contains("f.jsonl at byte 40"), "{error}");
    }

    #[test]
    fn a_missing_column_is_named() {
        let error =
            ChunkDecoder::new(&spec(InputFormat::Csv, 0), Some(&["nope".to_string()])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the input has no column `nope` (it has: name, n)"
        );
    }

    /// Reads `contents` over splits of `split_size` as the engine does: the
    /// `name` and `n` of every row, the bad records skipped, and whether
    /// every split's records met the next one's.
    fn read_splits(
        contents: &[u8],
        format: InputFormat,
        split_size: u64,
        read_bytes: u64,
    ) -> (Vec<(String, i64)>, u64, bool) {
        use crate::input::SplitReader;
        use harrow_core::task::Split;
        use object_store::memory::InMemory;
        use object_store::path::Path;
        use object_store::{ObjectStore, ObjectStoreExt};

        let decoder = ChunkDecoder::new(&spec(format, u64::MAX), None).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            let path = Path::from("f");
            store
                .put(&path, Bytes::copy_from_slice(contents).into())
                .await
                .unwrap();
            let size = contents.len() as u64;
            let (mut rows, mut bad, mut spans) = (Vec::new(), 0, Vec::new());
            let mut start = 0;
            while start < size {
                let end = (start + split_size).min(size);
                let split = Split {
                    location: "f".into(),
                    start,
                    end,
                    file_size: size,
                };
                let framing = Framing::of(format);
                let mut reader =
                    SplitReader::new(store.clone(), path.clone(), &split, read_bytes, framing);
                while let Some(chunk) = reader.next_chunk().await.unwrap() {
                    let decoded = decoder.decode("f", &chunk).unwrap();
                    bad += decoded.bad_records;
                    for batch in &decoded.batches {
                        let names = batch.column(0).as_any().downcast_ref::<StringArray>();
                        let n = batch.column(1).as_any().downcast_ref::<Int64Array>();
                        for row in 0..batch.num_rows() {
                            rows.push((
                                names.unwrap().value(row).to_string(),
                                n.unwrap().value(row),
                            ));
                        }
                    }
                }
                spans.push(reader.span().unwrap());
                start = end;
            }
            let meet = spans.windows(2).all(|pair| pair[0].1 == pair[1].0);
            (rows, bad, meet)
        })
    }

    /// A CSV field: quoted when it holds a comma, quote or line break.
    fn csv_field(value: &str) -> String {
        if value.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", value.replace('"', "\"\""))
        } else {
            value.to_string()
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn csv_splits_read_every_record_once_or_the_spans_say_they_did_not(
            names in proptest::collection::vec("[a-c ,\"\n]{1,12}", 1..25),
            split_size in 1u64..64,
            read_bytes in 1u64..32,
        ) {
            let mut text = String::from("name,n\n");
            for (i, name) in names.iter().enumerate() {
                text.push_str(&format!("{},{i}\n", csv_field(name)));
            }
            let whole = read_splits(text.as_bytes(), InputFormat::Csv, 1 << 20, 1 << 20);
            let expected: Vec<(String, i64)> =
                names.iter().cloned().zip(0..).collect();
            proptest::prop_assert_eq!(&whole.0, &expected);
            proptest::prop_assert!(whole.2);
            let (rows, bad, meet) =
                read_splits(text.as_bytes(), InputFormat::Csv, split_size, read_bytes);
            let quoted_line_breaks = names.iter().any(|n| n.contains('\n'));
            // Without quoted line breaks the splits always meet; with them,
            // meeting splits read exactly the records.
            proptest::prop_assert!(meet || quoted_line_breaks);
            if meet {
                proptest::prop_assert_eq!(rows, expected);
                proptest::prop_assert_eq!(bad, 0);
            }
        }

        #[test]
        fn json_lines_splits_read_every_record_once(
            names in proptest::collection::vec("[a-c \"\n{}]{0,12}", 1..25),
            blank_lines in proptest::collection::vec(proptest::bool::ANY, 25),
            split_size in 1u64..64,
            read_bytes in 1u64..32,
        ) {
            let mut text = String::new();
            for (i, name) in names.iter().enumerate() {
                let escaped = name.replace('"', "\\\"").replace('\n', "\\n");
                text.push_str(&format!("{{\"name\":\"{escaped}\",\"n\":{i}}}\n"));
                if blank_lines[i] {
                    text.push('\n');
                }
            }
            let expected: Vec<(String, i64)> = names.iter().cloned().zip(0..).collect();
            let (rows, bad, meet) =
                read_splits(text.as_bytes(), InputFormat::Jsonl, split_size, read_bytes);
            proptest::prop_assert!(meet);
            proptest::prop_assert_eq!(bad, 0);
            proptest::prop_assert_eq!(rows, expected);
        }
    }
}
