//! A map attempt's output: sorted by (partition, key), combined, and
//! written as one segment per partition; past the spill threshold, as
//! sorted runs on disk, merged at the end.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::row::Rows;
use harrow_core::partition::{key_rows, partition_ids, range_partition_ids, sort_order};
use harrow_core::task::{Partitioner, SegmentInfo};
use harrow_sdk::{JobRuntime, KeyGroups, group_bounds};
use rustc_hash::FxHashMap;

use super::MapOutputSpec;
use crate::cpu::run_cpu;
use crate::error::TaskError;
use crate::reduce::merge::{Run, merge_runs};
use crate::shuffle::segment::{
    MapOutputWriter, data_path, index_path, read_index, write_map_output,
};

/// Sorts `outputs` and writes them as the map output (or a spilled run)
/// named `stem`, on the rayon pool.
pub(super) async fn spill(
    job: &Arc<dyn JobRuntime>,
    outputs: Vec<RecordBatch>,
    output: &MapOutputSpec,
    dir: &Path,
    stem: &str,
) -> Result<(Vec<SegmentInfo>, u64), TaskError> {
    let (job, output, dir, stem) = (
        job.clone(),
        output.clone(),
        dir.to_path_buf(),
        stem.to_string(),
    );
    run_cpu(move || sort_and_write(job.as_ref(), outputs, &output, &dir, &stem))
        .await
        .map_err(TaskError::panic("panicked sorting map output:"))?
}

/// The sorted runs a map attempt has spilled.
pub(super) struct Spills {
    pub(super) stem: String,
    pub(super) runs: Vec<String>,
}

/// Sorts `outputs` and writes them as the next spilled run; returns the
/// records it holds.
pub(super) async fn spill_run(
    job: &Arc<dyn JobRuntime>,
    outputs: Vec<RecordBatch>,
    output: &MapOutputSpec,
    dir: &Path,
    spills: &mut Spills,
) -> Result<u64, TaskError> {
    let run = format!("{}.spill-{}", spills.stem, spills.runs.len());
    let (segments, _) = spill(job, outputs, output, dir, &run).await?;
    spills.runs.push(run);
    Ok(segments.iter().map(|s| s.records).sum())
}

/// Merges the spilled runs partition by partition into the map output
/// `stem`, combining again if the job has a combiner (a key may have rows
/// in several runs), then deletes the runs. Memory holds a batch per run.
pub(super) fn merge_spills(
    job: &dyn JobRuntime,
    runs: &[String],
    reducers: u32,
    dir: &Path,
    stem: &str,
) -> Result<(Vec<SegmentInfo>, u64), TaskError> {
    let indexes = runs
        .iter()
        .map(|run| read_index(&index_path(dir, run)))
        .collect::<Result<Vec<_>, _>>()?;
    let schema = job.schema().key_value();
    let mut writer = MapOutputWriter::create(dir, stem, &schema)?;
    // Progress is the input read; merging reads none.
    let unread = AtomicU64::new(0);
    for partition in 0..reducers {
        let parts: Vec<Run> = runs
            .iter()
            .zip(&indexes)
            .map(|(run, index)| (index[partition as usize], run))
            .filter(|(entry, _)| entry.info.bytes > 0)
            .map(|(entry, run)| Run {
                path: data_path(dir, run),
                offset: entry.offset,
                len: entry.info.bytes,
            })
            .collect();
        merge_runs(&job.schema().key, &parts, &unread, |batch| {
            let batch = combine_groups(job, batch)?;
            Ok(writer.write(partition, &batch)?)
        })?;
    }
    let segments = writer.finish(reducers)?;
    for run in runs {
        for path in [data_path(dir, run), index_path(dir, run)] {
            std::fs::remove_file(&path).map_err(TaskError::io(path))?;
        }
    }
    let bytes = segments.iter().map(|s| s.bytes).sum();
    Ok((segments, bytes))
}

/// A sorted batch with each group of equal keys folded by the job's
/// combiner; the batch itself when the job has none.
fn combine_groups(job: &dyn JobRuntime, sorted: RecordBatch) -> Result<RecordBatch, TaskError> {
    if !job.schema().combiner {
        return Ok(sorted);
    }
    let bounds = group_bounds(sorted.column(0)).map_err(TaskError::arrow("grouping map output"))?;
    job.combine(KeyGroups::new(&sorted, &bounds))
        .map_err(TaskError::job("combine"))
}

/// Rows sampled to decide whether hashing will find repeated keys.
const REPEAT_SAMPLE_ROWS: usize = 1 << 16;

/// Whether the first rows' keys repeat enough (a tenth of them or more)
/// for folding them by hashing to pay. Hashing mostly distinct keys costs
/// more than sorting them with the rest (TeraSort-like or high-cardinality
/// data: 1M uniform keys in a 12M-row map task were 13% slower hashed).
fn keys_repeat(rows: &Rows) -> bool {
    let sample = rows.num_rows().min(REPEAT_SAMPLE_ROWS);
    let distinct: rustc_hash::FxHashSet<&[u8]> = (0..sample).map(|i| rows.row(i).data()).collect();
    distinct.len() * 10 <= sample * 9
}

/// Folds the rows of each distinct key of `batch` (its keys in `rows`) with
/// the job's combiner: rows are grouped by hashing their keys (groups in
/// the order their keys first appear), then combined. Returns the batch
/// unchanged, and false, when every key is distinct.
fn hash_combine(
    job: &dyn JobRuntime,
    batch: &RecordBatch,
    rows: &Rows,
) -> Result<(RecordBatch, bool), TaskError> {
    let n = batch.num_rows();
    let mut ids: FxHashMap<&[u8], u32> = FxHashMap::default();
    let group_of: Vec<u32> = (0..n)
        .map(|i| {
            let next = ids.len() as u32;
            *ids.entry(rows.row(i).data()).or_insert(next)
        })
        .collect();
    let groups = ids.len();
    drop(ids);
    if groups == n {
        return Ok((batch.clone(), false));
    }
    // A counting sort by group: group g is rows bounds[g]..bounds[g + 1].
    let mut bounds = vec![0usize; groups + 1];
    for &group in &group_of {
        bounds[group as usize + 1] += 1;
    }
    for g in 0..groups {
        bounds[g + 1] += bounds[g];
    }
    let mut next = bounds.clone();
    let mut indices = vec![0u32; n];
    for (row, &group) in group_of.iter().enumerate() {
        indices[next[group as usize]] = row as u32;
        next[group as usize] += 1;
    }
    let grouped = take_record_batch(batch, &UInt32Array::from(indices))
        .map_err(TaskError::arrow("grouping map output"))?;
    let combined = job
        .combine(KeyGroups::new(&grouped, &bounds))
        .map_err(TaskError::job("combine"))?;
    Ok((combined, true))
}

/// Partitions, sorts and combines map output and writes the segments.
fn sort_and_write(
    job: &dyn JobRuntime,
    outputs: Vec<RecordBatch>,
    output: &MapOutputSpec,
    dir: &std::path::Path,
    stem: &str,
) -> Result<(Vec<SegmentInfo>, u64), TaskError> {
    let reducers = output.reducers;
    let schema = job.schema().key_value();
    let all =
        concat_batches(&schema, &outputs).map_err(TaskError::arrow("concatenating map output"))?;
    drop(outputs);
    let mut rows =
        key_rows(&job.schema().key, all.column(0)).map_err(TaskError::arrow("encoding keys"))?;
    // With a combiner and repeated keys, equal keys are folded before the
    // sort, found by hashing: the sort and the shuffle then handle one row
    // per key. Mostly distinct keys are sorted first and combined after.
    let (all, combined) = match job.schema().combiner && keys_repeat(&rows) {
        true => hash_combine(job, &all, &rows)?,
        false => (all, false),
    };
    if combined {
        rows = key_rows(&job.schema().key, all.column(0))
            .map_err(TaskError::arrow("encoding keys"))?;
    }
    let partitions = match &output.partitioner {
        Partitioner::Hash => partition_ids(all.column(0), reducers)?,
        Partitioner::Range { bounds } => range_partition_ids(bounds, &rows),
    };
    let order = sort_order(&partitions, &rows);
    let sorted_partitions: Vec<u32> = order.iter().map(|&(p, _)| p).collect();
    let indices = UInt32Array::from_iter_values(order.iter().map(|&(_, i)| i));
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
        let slice = match combined {
            true => slice,
            false => combine_groups(job, slice)?,
        };
        per_partition[partition as usize].push(slice);
        start += len;
    }
    let segments = write_map_output(dir, stem, &schema, &per_partition)?;
    let bytes = segments.iter().map(|s| s.bytes).sum();
    Ok((segments, bytes))
}
