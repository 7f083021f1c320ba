//! A map attempt: read the split in line-aligned chunks, map each chunk on
//! the rayon pool (several at once), then partition by key hash, sort by
//! (partition, key), combine, and write one segment per partition.

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
use harrow_core::task::{AttemptCounters, Compression, SegmentInfo, Split};
use harrow_sdk::{JobRuntime, KeyGroups, TaskInfo, TaskKind, group_bounds};
use rayon::prelude::*;

use crate::compressed::CompressedReader;
use crate::cpu::run_cpu;
use crate::error::TaskError;
use crate::input::{SplitReader, TextChunk, chunk_batches};
use crate::partition::partition_ids;
use crate::segment::write_map_output;

/// Bounds on the bytes read per request and mapped per rayon job. Each
/// chunk gets its own mapper (and combining hash table), so a split is cut
/// into about as many chunks as there are rayon threads: fewer chunks mean
/// fewer partially combined rows to sort.
const MIN_CHUNK_BYTES: u64 = 1 << 20;
const MAX_CHUNK_BYTES: u64 = 32 << 20;

/// Where a map attempt's lines come from.
enum Chunks {
    Split(SplitReader),
    Compressed(CompressedReader),
}

impl Chunks {
    async fn next_chunk(&mut self) -> Result<Option<TextChunk>, crate::input::InputError> {
        match self {
            Chunks::Split(reader) => reader.next_chunk().await,
            Chunks::Compressed(reader) => reader.next_chunk().await,
        }
    }
}

/// What a map attempt produced.
#[derive(Debug)]
pub struct MapResult {
    pub segments: Vec<SegmentInfo>,
    pub counters: AttemptCounters,
}

/// Runs a map attempt, writing its output under `dir`.
pub async fn run_map(
    job: Arc<dyn JobRuntime>,
    attempt: AttemptId,
    split: &Split,
    reducers: u32,
    dir: PathBuf,
    progress: &AtomicU64,
    storage: &StorageOptions,
) -> Result<MapResult, TaskError> {
    let location = Location::parse_with(&split.location, storage)?;
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
    let mut reader = match Compression::of(&split.location) {
        // A compressed file is one split; its size says little about the
        // text inside, so chunks take the largest size.
        Some(compression) => Chunks::Compressed(
            CompressedReader::open(
                store,
                path,
                &split.location,
                compression,
                MAX_CHUNK_BYTES as usize / 2,
            )
            .await?,
        ),
        None => Chunks::Split(SplitReader::new(store, path, split, chunk_bytes)),
    };
    let parallelism = threads as usize + 1;
    let mut counters = AttemptCounters::default();
    let mut mapping = FuturesOrdered::new();
    let mut outputs = Vec::new();
    let mut input_done = false;
    loop {
        while !input_done && mapping.len() < parallelism {
            match reader.next_chunk().await? {
                Some(chunk) => {
                    counters.bytes_in += chunk.data.len() as u64;
                    progress.fetch_add(chunk.data.len() as u64, Ordering::Relaxed);
                    mapping.push_back(run_cpu(map_chunk(
                        job.clone(),
                        split.location.clone(),
                        chunk,
                    )));
                }
                None => input_done = true,
            }
        }
        let Some(mapped) = mapping.next().await else {
            break;
        };
        let (records, output) = mapped.map_err(TaskError::panic("panicked in map:"))??;
        counters.records_in += records;
        outputs.push(output);
    }

    let stem = attempt.file_stem();
    let (segments, bytes_out) =
        run_cpu(move || sort_and_write(job.as_ref(), outputs, reducers, &dir, &stem))
            .await
            .map_err(TaskError::panic("panicked sorting map output:"))??;
    counters.records_out = segments.iter().map(|s| s.records).sum();
    counters.bytes_out = bytes_out;
    Ok(MapResult { segments, counters })
}

/// The CPU work for one chunk: lines → batches → the job's map.
fn map_chunk(
    job: Arc<dyn JobRuntime>,
    file: String,
    chunk: TextChunk,
) -> impl FnOnce() -> Result<(u64, RecordBatch), TaskError> {
    move || {
        let mut mapper = job.mapper();
        let mut records = 0;
        for batch in chunk_batches(&file, &chunk) {
            records += batch.num_rows() as u64;
            mapper.map(&batch).map_err(TaskError::job("map"))?;
        }
        let output = mapper.finish().map_err(TaskError::job("map"))?;
        Ok((records, output))
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
    let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
    order.par_sort_unstable_by(|&a, &b| {
        let (a, b) = (a as usize, b as usize);
        partitions[a]
            .cmp(&partitions[b])
            .then_with(|| rows.row(a).cmp(&rows.row(b)))
    });
    let sorted_partitions: Vec<u32> = order.iter().map(|&i| partitions[i as usize]).collect();
    let sorted = take_record_batch(&all, &UInt32Array::from(order))
        .map_err(TaskError::arrow("sorting map output"))?;
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
