//! The fuzz targets' smoke mode: each target of `harrow_worker::fuzz_targets`
//! runs over valid seeds and a fixed number of deterministic mutations of
//! them (bytes flipped, inserted, deleted, truncated, spliced), so the
//! suite catches a decoder that panics on bad bytes without libFuzzer. For
//! longer runs, `cargo +nightly fuzz run --fuzz-dir worker/fuzz TARGET`
//! (see the README).

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use harrow_proto::v1 as pb;
use harrow_worker::fuzz_targets;
use prost::Message;

/// xorshift64*: the same inputs on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A mutation of one of `seeds`: a few edits of the kinds fuzzers make.
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(6) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => data.insert(at, rng.next() as u8),
            2 if at < data.len() => {
                let end = (at + 1 + rng.below(8)).min(data.len());
                data.drain(at..end);
            }
            3 => data.truncate(at),
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                let piece = other[from..(from + rng.below(16)).min(other.len())].to_vec();
                data.splice(at..at, piece);
            }
            _ => {
                // A field's bytes as a huge or boundary value.
                let value = [0u8, 0x7f, 0x80, 0xff][rng.below(4)];
                data.insert(at, value);
            }
        }
    }
    data
}

/// Runs `target` on every seed and on `mutations` mutations of them.
fn smoke(name: &str, seeds: Vec<Vec<u8>>, mutations: usize, target: fn(&[u8])) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
    for seed in &seeds {
        target(seed);
    }
    for _ in 0..mutations {
        let input = mutate(&mut rng, &seeds);
        let caught = std::panic::catch_unwind(|| target(&input));
        assert!(
            caught.is_ok(),
            "fuzz target {name} panicked on {} bytes: {input:?}",
            input.len()
        );
    }
}

#[test]
fn wire_messages() {
    let assignment = pb::TaskAssignment {
        attempt_id: "job-000001/m-00002/a-1".into(),
        job_name: "wordcount".into(),
        reducers: 3,
        task: Some(pb::task_assignment::Task::Map(pb::MapTask {
            split: Some(pb::InputSplit {
                location: "/data/in.txt".into(),
                start: 0,
                end: 100,
                file_size: 100,
            }),
            job_maps: 4,
        })),
        input: Some(pb::InputSpec {
            format: "csv".into(),
            arrow_schema: harrow_core::wire::schema_to_bytes(&Schema::new(vec![Field::new(
                "a",
                DataType::Int64,
                true,
            )])),
            csv_delimiter: u32::from(b','),
            skip_bad_records: 2,
        }),
        output_format: "text".into(),
        range_partitioner: Some(pb::RangePartitioner {
            bounds: vec![b"m".to_vec(), b"t".to_vec()],
        }),
        shuffle_key: "k".repeat(64),
        ..Default::default()
    };
    let fetch = pb::FetchSegmentRequest {
        map_attempt_id: "job-000001/m-00002/a-1".into(),
        partition: 1,
        shuffle_key: "k".repeat(64),
    };
    let batch = batch();
    let seeds = vec![
        assignment.encode_to_vec(),
        fetch.encode_to_vec(),
        harrow_core::wire::batch_to_bytes(&batch).unwrap(),
        harrow_core::wire::schema_to_bytes(&batch.schema()),
        Vec::new(),
    ];
    smoke("wire_messages", seeds, 4000, fuzz_targets::wire_messages);
}

fn batch() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::UInt64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["a", "bb", "ccc"])),
            Arc::new(UInt64Array::from(vec![1, 2, 3])),
        ],
    )
    .unwrap()
}

#[test]
fn segment_index() {
    let dir = tempfile::tempdir().unwrap();
    let batch = batch();
    harrow_worker::shuffle::segment::write_map_output(
        dir.path(),
        "seed",
        &batch.schema(),
        &[vec![batch.clone()], vec![], vec![batch]],
    )
    .unwrap();
    let index = std::fs::read(harrow_worker::shuffle::segment::index_path(
        dir.path(),
        "seed",
    ))
    .unwrap();
    smoke(
        "segment_index",
        vec![index],
        4000,
        fuzz_targets::segment_index,
    );
}

#[test]
fn split_reader() {
    let seeds = vec![
        b"\x00first line\nsecond\r\n\nlast without newline".to_vec(),
        b"\x01a,b\n\"quoted\nfield\",2\n3,\"x\"\"y\"\n".to_vec(),
        b"\x02{\"a\":1}\n{\"a\":2}\n\n{\"a\":3}".to_vec(),
        b"\x05\n\n\n".to_vec(),
    ];
    smoke("split_reader", seeds, 600, fuzz_targets::split_reader);
}

#[test]
fn records() {
    let seeds = vec![
        b"id,name,score\n1,ann,2.5\n2,\"b,c\",\n,x,1e3\n".to_vec(),
        b"{\"id\":1,\"name\":\"ann\",\"score\":2.5}\n{\"id\":null}\n".to_vec(),
        b"id,name,score\n\"unterminated\n".to_vec(),
    ];
    smoke("records", seeds, 1500, fuzz_targets::records);
}
