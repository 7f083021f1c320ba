//! Entry points for fuzzing every decoder that takes bytes from the network
//! or from files: protobuf messages and their conversion to domain types,
//! map output indexes, Arrow IPC batches (segments, plugin messages), the
//! split reader that cuts text, CSV and JSON lines files at byte offsets,
//! and the CSV and JSON lines record decoders. Each must turn any bytes
//! into a value or an error, never a panic or a hang.
//!
//! `worker/fuzz` runs them under libFuzzer (`cargo +nightly fuzz run`);
//! `worker/tests/fuzz_smoke.rs` runs each over a fixed number of mutated
//! seeds in the test suite.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use bytes::Bytes;
use harrow_core::ids::AttemptId;
use harrow_core::task::{Assignment, InputFormat, InputSpec, OutputFormat, Split};
use harrow_core::wire;
use harrow_formats::decode::ChunkDecoder;
use harrow_formats::framing::Framing;
use harrow_formats::input::{SplitReader, TextChunk};
use harrow_proto::v1 as pb;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use prost::Message;

/// The messages workers and the coordinator decode from each other and
/// from clients, and their conversions.
pub fn wire_messages(data: &[u8]) {
    if let Ok(message) = pb::TaskAssignment::decode(data) {
        let _ = Assignment::try_from(message);
    }
    if let Ok(message) = pb::AttemptReport::decode(data) {
        let _ = message.attempt_id.parse::<AttemptId>();
        let _ = wire::attempt_outcome(message.outcome);
    }
    if let Ok(message) = pb::FetchSegmentRequest::decode(data) {
        let _ = message.map_attempt_id.parse::<AttemptId>();
    }
    if let Ok(message) = pb::SubmitJobRequest::decode(data) {
        let _ = message.input_format.parse::<InputFormat>();
        let _ = message.output_format.parse::<OutputFormat>();
    }
    if let Ok(message) = pb::InputSpec::decode(data) {
        let _ = InputSpec::try_from(message);
    }
    let _ = pb::HeartbeatRequest::decode(data);
    let _ = pb::PluginChunk::decode(data);
    let _ = wire::schema_from_bytes(data);
    let _ = wire::batch_from_bytes(data);
}

/// A map output index file.
pub fn segment_index(data: &[u8]) {
    let _ = crate::shuffle::segment::decode_index(data);
}

/// A file read in two splits cut at an offset the first bytes choose, with
/// small reads. For line-delimited input every record must come out once,
/// as a sequential read finds them.
pub fn split_reader(data: &[u8]) {
    let Some((&selector, file)) = data.split_first() else {
        return;
    };
    let format = match selector % 3 {
        0 => InputFormat::Text,
        1 => InputFormat::Csv,
        _ => InputFormat::Jsonl,
    };
    let framing = Framing::of(format);
    let len = file.len() as u64;
    let cut = if len == 0 {
        0
    } else {
        u64::from(selector) * 7919 % (len + 1)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let path = Path::from("input");
    let chunks = runtime.block_on(async {
        store
            .put(&path, Bytes::copy_from_slice(file).into())
            .await
            .expect("an in-memory put");
        let mut chunks = Vec::new();
        for (start, end) in [(0, cut), (cut, len)] {
            let split = Split {
                location: "input".into(),
                start,
                end,
                file_size: len,
            };
            let mut reader = SplitReader::new(store.clone(), path.clone(), &split, 3, framing);
            while let Ok(Some(chunk)) = reader.next_chunk().await {
                chunks.push(chunk);
            }
        }
        chunks
    });
    for chunk in &chunks {
        let end = chunk.offset + chunk.data.len() as u64;
        assert!(
            end <= len,
            "a chunk ends at {end}, past the file's {len} bytes"
        );
        assert_eq!(
            &file[chunk.offset as usize..end as usize],
            &chunk.data[..],
            "a chunk's bytes are not the file's at its offset"
        );
    }
    if framing == Framing::Lines {
        let read: Vec<(u64, &[u8])> = chunks
            .iter()
            .flat_map(|chunk| {
                framing
                    .records(&chunk.data)
                    .into_iter()
                    .map(move |r| (chunk.offset + r.start as u64, &chunk.data[r]))
            })
            .collect();
        let whole: Vec<(u64, &[u8])> = framing
            .records(file)
            .into_iter()
            .map(|r| (r.start as u64, &file[r]))
            .collect();
        assert_eq!(read, whole, "the two splits did not read each record once");
    }
}

/// CSV and JSON lines records decoded against a fixed schema, with and
/// without skipping bad records.
pub fn records(data: &[u8]) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("score", DataType::Float64, true),
    ]));
    let chunk = TextChunk {
        data: Bytes::copy_from_slice(data),
        offset: 0,
    };
    for format in [InputFormat::Csv, InputFormat::Jsonl] {
        for skip in [0, u64::MAX] {
            let spec = InputSpec {
                format,
                schema: schema.clone(),
                csv_delimiter: b',',
                skip_bad_records: skip,
            };
            let decoder = ChunkDecoder::new(&spec, None).expect("a valid spec");
            let _ = decoder.decode("input", &chunk);
        }
    }
}
