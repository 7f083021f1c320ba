//! Tests of `formats/src/decode.rs`.
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
    let decoder = ChunkDecoder::new(&spec(InputFormat::Csv, 0), Some(&["n".to_string()])).unwrap();
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
                        rows.push((names.unwrap().value(row).to_string(), n.unwrap().value(row)));
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
