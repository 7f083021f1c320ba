//! Micro benchmarks of the hot kernels, on fixed synthetic data:
//! tokenize and emit (the record-level map of `wordcount` over a text
//! batch), partition hashing, sorting keys in Arrow's row format, Arrow IPC
//! encode and decode with LZ4 and ZSTD, and the reducer's k-way merge.
//!
//! `cargo bench -p harrow-benches --bench kernels` (criterion; reports in
//! `target/criterion`).

use std::hint::black_box;
use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::ipc::CompressionType;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::row::{RowConverter, SortField};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use harrow_core::task::OutputFormat;
use harrow_job_wordcount::WordCount;
use harrow_sdk::testing::text_batch;
use rayon::slice::ParallelSliceMut;

/// Deterministic words: `n` of them drawn from a vocabulary of `vocabulary`.
fn words(n: usize, vocabulary: usize) -> Vec<String> {
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Skewed: small ranks far more often.
            let rank = (state % vocabulary as u64) * (state >> 40 & 7) / 7;
            format!("w{rank:x}ord")
        })
        .collect()
}

/// 8192 lines of 10 words each.
fn text(lines: usize) -> String {
    let words = words(lines * 10, 50_000);
    words.chunks(10).map(|line| line.join(" ") + "\n").collect()
}

fn key_value(keys: Vec<String>) -> RecordBatch {
    let values = UInt64Array::from(vec![1u64; keys.len()]);
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::UInt64, false),
        ])),
        vec![Arc::new(StringArray::from(keys)), Arc::new(values)],
    )
    .unwrap()
}

fn tokenize_and_emit(c: &mut Criterion) {
    let text = text(8192);
    let batch = text_batch("bench.txt", &text).unwrap();
    let job = harrow_sdk::record_runtime(WordCount);
    let mut group = c.benchmark_group("map");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("wordcount tokenize+emit (8192 lines)", |b| {
        b.iter(|| {
            let mut mapper = job.mapper();
            mapper.map(black_box(&batch)).unwrap();
            black_box(mapper.finish().unwrap())
        })
    });
    group.finish();
}

fn partition_hashing(c: &mut Criterion) {
    let keys: ArrayRef = Arc::new(StringArray::from(words(100_000, 50_000)));
    let mut group = c.benchmark_group("partition");
    group.throughput(Throughput::Elements(keys.len() as u64));
    group.bench_function("xxh3 of 100k string keys, 16 partitions", |b| {
        b.iter(|| harrow_core::partition::partition_ids(black_box(&keys), 16).unwrap())
    });
    group.finish();
}

fn key_sort(c: &mut Criterion) {
    let keys: ArrayRef = Arc::new(StringArray::from(words(100_000, 50_000)));
    let converter = RowConverter::new(vec![SortField::new(DataType::Utf8)]).unwrap();
    let mut group = c.benchmark_group("sort");
    group.throughput(Throughput::Elements(keys.len() as u64));
    group.bench_function(
        "row format: convert, sort comparing through Rows::row",
        |b| {
            b.iter(|| {
                let rows = converter
                    .convert_columns(std::slice::from_ref(black_box(&keys)))
                    .unwrap();
                let mut order: Vec<u32> = (0..rows.num_rows() as u32).collect();
                order.sort_unstable_by(|&x, &y| rows.row(x as usize).cmp(&rows.row(y as usize)));
                order
            })
        },
    );
    group.bench_function("row format: convert, par_sort (bytes, index) pairs", |b| {
        b.iter(|| {
            let rows = converter
                .convert_columns(std::slice::from_ref(black_box(&keys)))
                .unwrap();
            let mut order: Vec<(&[u8], u32)> = (0..rows.num_rows())
                .map(|i| (rows.row(i).data(), i as u32))
                .collect();
            order.par_sort_unstable();
            order.into_iter().map(|(_, i)| i).collect::<Vec<u32>>()
        })
    });
    let partitions = vec![0; keys.len()];
    group.bench_function(
        "row format: convert, sort with 16-byte prefixes (as map tasks do)",
        |b| {
            b.iter(|| {
                let rows = converter
                    .convert_columns(std::slice::from_ref(black_box(&keys)))
                    .unwrap();
                harrow_core::partition::sort_order(&partitions, &rows)
            })
        },
    );
    group.bench_function("arrow sort_to_indices on the strings", |b| {
        b.iter(|| arrow::compute::sort_to_indices(black_box(&keys), None, None).unwrap())
    });
    group.finish();
}

fn ipc(c: &mut Criterion) {
    let batch = key_value(words(100_000, 50_000));
    let mut group = c.benchmark_group("ipc");
    group.throughput(Throughput::Elements(batch.num_rows() as u64));
    for (name, compression) in [
        ("none", None),
        ("lz4", Some(CompressionType::LZ4_FRAME)),
        ("zstd", Some(CompressionType::ZSTD)),
    ] {
        let options = IpcWriteOptions::default()
            .try_with_compression(compression)
            .unwrap();
        let encode = |batch: &RecordBatch| {
            let mut writer =
                StreamWriter::try_new_with_options(Vec::new(), &batch.schema(), options.clone())
                    .unwrap();
            writer.write(batch).unwrap();
            writer.into_inner().unwrap()
        };
        group.bench_function(format!("encode 100k rows, {name}"), |b| {
            b.iter(|| encode(black_box(&batch)))
        });
        let bytes = encode(&batch);
        group.bench_function(format!("decode 100k rows, {name}"), |b| {
            b.iter(|| {
                StreamReader::try_new(Cursor::new(black_box(&bytes)), None)
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap()
            })
        });
    }
    group.finish();
}

/// Eight sorted segments of 25k rows each, merged and reduced by wordcount.
fn merge(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut segments = Vec::new();
    for index in 0..8 {
        let mut keys = words(25_000, 50_000);
        keys.sort_unstable();
        let batch = key_value(keys);
        let path = dir.path().join(format!("segment-{index}"));
        let file = std::fs::File::create(&path).unwrap();
        let mut writer = StreamWriter::try_new(file, &batch.schema()).unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        segments.push(harrow_worker::reduce::merge::Run::file(&path).unwrap());
    }
    let job = harrow_sdk::record_runtime(WordCount);
    let mut group = c.benchmark_group("merge");
    group.throughput(Throughput::Elements(200_000));
    group.bench_function("merge and reduce 8 segments of 25k rows", |b| {
        b.iter_batched(
            || dir.path().join("out.txt"),
            |output| {
                harrow_worker::reduce::merge::merge_and_reduce(
                    job.as_ref(),
                    &segments,
                    &output,
                    OutputFormat::Text,
                    &AtomicU64::new(0),
                )
                .unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(
    kernels,
    tokenize_and_emit,
    partition_hashing,
    key_sort,
    ipc,
    merge
);
criterion_main!(kernels);
