//! A map attempt: read the split in chunks of whole records (row groups,
//! for Parquet), decode and map each on the rayon pool (several at once),
//! then partition by key hash, sort by (partition, key), combine, and write
//! one segment per partition.
//!
//! A job with a combiner keeps one mapper per lane of the attempt for many
//! pieces, piece `i` going to lane `i % lanes`, so its hash table folds a
//! large share of the split before anything is sorted; a lane's mapper is
//! finished when it has mapped its share of the task's memory, and when the
//! input ends. A piece waits for the one before it on its lane to hand the
//! mapper over, so lanes take pieces in a fixed order and the output does
//! not depend on timing; meanwhile the next piece is read.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::row::Rows;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use harrow_core::ids::AttemptId;
use harrow_core::task::{
    AttemptCounters, BAD_RECORD_SAMPLES, InputFormat, InputReport, InputSpec, Partitioner,
    SegmentInfo,
};
use harrow_sdk::{
    JobError, JobRuntime, KeyGroups, Mapper, OwnedMapper, TaskInfo, TaskKind, group_bounds,
};
use rustc_hash::FxHashMap;
use tokio::sync::oneshot;

use crate::cpu::run_cpu;
use crate::error::TaskError;
use crate::memory::{MIN_CHUNK_BYTES, TaskMemory};
use crate::merge::{Run, merge_runs};
use crate::segment::{MapOutputWriter, data_path, index_path, read_index, write_map_output};
use harrow_core::partition::{key_rows, partition_ids, range_partition_ids, sort_order};
use harrow_formats::decode::ChunkDecoder;
use harrow_formats::input::InputError;
use harrow_formats::source::{Piece, Source, SplitInput};

/// What a map attempt produced.
#[derive(Debug)]
pub struct MapResult {
    pub segments: Vec<SegmentInfo>,
    pub counters: AttemptCounters,
    pub input: InputReport,
}

/// Where map output goes: how many reduce partitions, how keys are
/// assigned to them, how much of it may be held in memory, and in how many
/// lanes a job with a combiner folds it (see [`lanes`]).
#[derive(Debug, Clone)]
pub struct MapOutputSpec {
    pub reducers: u32,
    pub partitioner: Partitioner,
    pub memory: TaskMemory,
    pub lanes: usize,
}

/// The lanes of a map task of a job with a combiner: the worker's rayon
/// `threads` shared among the map tasks it may run at once (its `slots`,
/// or the job's maps if fewer; `job_maps` 0 is unknown), at least one.
/// Fewer lanes fold more rows per hash table, so less is sorted and
/// shuffled; a job of one map task still folds on every thread.
pub fn lanes(threads: usize, slots: usize, job_maps: u32) -> usize {
    let concurrent = match job_maps {
        0 => slots,
        maps => slots.min(maps as usize),
    };
    threads.div_ceil(concurrent.max(1)).max(1)
}

/// Runs a map attempt, writing its output under `dir`.
pub async fn run_map(
    job: Arc<dyn JobRuntime>,
    attempt: AttemptId,
    input: SplitInput<'_>,
    output: MapOutputSpec,
    dir: PathBuf,
    progress: &AtomicU64,
) -> Result<MapResult, TaskError> {
    let split = input.split;
    let decoder = start_map(&job, input.spec, attempt.to_string()).await?;

    // A few chunks per rayon thread, so reading overlaps mapping; with a
    // combiner, the lanes' mappers fold across chunks.
    let threads = rayon::current_num_threads().max(1) as u64;
    let chunk_bytes = ((split.end - split.start) / (4 * threads))
        .clamp(MIN_CHUNK_BYTES, output.memory.max_chunk_bytes());
    let generated = job.schema().generated.is_some();
    let mut source =
        Source::open(input, generated, decoder.projected_schema(), chunk_bytes).await?;
    let mut lanes = Lanes::new(job.as_ref(), output.lanes, &output.memory);
    // Pieces read and not yet mapped: one per lane (or thread), and one
    // more being read.
    let parallelism = match lanes.folding() {
        true => output.lanes.max(1) + 1,
        false => threads as usize + 1,
    };
    let mut counters = AttemptCounters::default();
    let mut report = InputReport::default();
    let mut mapping = FuturesOrdered::new();
    let mut outputs = Vec::new();
    let mut buffered = 0u64;
    let stem = attempt.file_stem();
    // Sorted runs written to disk when the buffered output outgrew memory:
    // `STEM.spill-N`.
    let mut spills = Spills {
        stem: stem.clone(),
        runs: Vec::new(),
    };
    let mut input_done = false;
    loop {
        while !input_done && mapping.len() < parallelism {
            match source.next().await? {
                Some(piece) => {
                    counters.bytes_in += piece.bytes();
                    progress.fetch_add(piece.progress(), Ordering::Relaxed);
                    let map = map_on_lane(
                        job.clone(),
                        decoder.clone(),
                        split.location.clone(),
                        piece,
                        lanes.take(),
                    );
                    mapping.push_back(map.boxed());
                }
                None => input_done = true,
            }
        }
        // Once every piece is mapped, the lanes are finished like pieces.
        if input_done && mapping.is_empty() {
            for lane in lanes.drain() {
                let finish = run_cpu(move || finish_lane(lane)).map(|finished| {
                    finished.map_err(TaskError::panic("panicked finishing a mapper:"))?
                });
                mapping.push_back(finish.boxed());
            }
        }
        let Some(mapped) = mapping.next().await else {
            break;
        };
        let mapped = mapped.map_err(|error| match (error, &source) {
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
        let Some(mapped) = mapped.output else {
            continue;
        };
        buffered += mapped.get_array_memory_size() as u64;
        outputs.push(mapped);
        if buffered > output.memory.spill_bytes() {
            let held = std::mem::take(&mut outputs);
            counters.spilled_records += spill_run(&job, held, &output, &dir, &mut spills).await?;
            buffered = 0;
        }
    }
    report.span = source.span();

    let (segments, bytes_out) = if spills.runs.is_empty() {
        spill(&job, outputs, &output, &dir, &stem).await?
    } else {
        if !outputs.is_empty() {
            counters.spilled_records +=
                spill_run(&job, outputs, &output, &dir, &mut spills).await?;
        }
        let job = job.clone();
        let reducers = output.reducers;
        let runs = spills.runs;
        run_cpu(move || merge_spills(job.as_ref(), &runs, reducers, &dir, &stem))
            .await
            .map_err(TaskError::panic("panicked merging spilled map output:"))??
    };
    counters.records_out = segments.iter().map(|s| s.records).sum();
    counters.bytes_out = bytes_out;
    Ok(MapResult {
        segments,
        counters,
        input: report,
    })
}

/// What every map over a job's input starts with: a decoder of the input
/// for the job, and the job's `start_task` for `attempt`, run on rayon.
pub(crate) async fn start_map(
    job: &Arc<dyn JobRuntime>,
    spec: &InputSpec,
    attempt: String,
) -> Result<Arc<ChunkDecoder>, TaskError> {
    let decoder = ChunkDecoder::new(spec, job.schema().input_columns.as_deref())?;
    let task = TaskInfo {
        attempt,
        kind: TaskKind::Map,
        partition: None,
    };
    let starting = job.clone();
    run_cpu(move || starting.start_task(&task))
        .await
        .map_err(TaskError::panic("panicked starting the map task:"))?
        .map_err(TaskError::job("start_task"))?;
    Ok(Arc::new(decoder))
}

/// Sorts `outputs` and writes them as the map output (or a spilled run)
/// named `stem`, on the rayon pool.
async fn spill(
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
struct Spills {
    stem: String,
    runs: Vec<String>,
}

/// Sorts `outputs` and writes them as the next spilled run; returns the
/// records it holds.
async fn spill_run(
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
fn merge_spills(
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

/// A mapper kept across pieces, and the bytes of decoded input it has
/// mapped: an estimate of what its state holds.
pub(crate) struct Lane {
    mapper: Box<OwnedMapper>,
    mapped: u64,
}

/// The lanes of a map attempt. For each lane, where its next piece gets
/// the mapper from: the piece before it on the lane sends it (or `None`
/// once finished) when it has mapped.
struct Lanes {
    handoffs: Vec<oneshot::Receiver<Option<Lane>>>,
    /// The lane of the next piece.
    next: usize,
    limit: u64,
}

/// Where a piece gets its mapper, and where it passes it on.
enum Handoff {
    /// A mapper of its own, finished after the piece (a job without a
    /// combiner has nothing to fold across pieces).
    Single,
    Lane {
        from: oneshot::Receiver<Option<Lane>>,
        to: oneshot::Sender<Option<Lane>>,
        limit: u64,
    },
}

impl Lanes {
    fn new(job: &dyn JobRuntime, lanes: usize, memory: &TaskMemory) -> Lanes {
        if !job.schema().combiner {
            return Lanes {
                handoffs: Vec::new(),
                next: 0,
                limit: 0,
            };
        }
        let handoffs = (0..lanes.max(1))
            .map(|_| {
                let (to, from) = oneshot::channel();
                let _ = to.send(None);
                from
            })
            .collect::<Vec<_>>();
        // Together the lanes hold about half of what a spill holds: their
        // state is estimated from their input, which a hash table of small
        // keys can outgrow.
        let limit = memory.spill_bytes() / (2 * handoffs.len() as u64);
        Lanes {
            handoffs,
            next: 0,
            limit,
        }
    }

    fn folding(&self) -> bool {
        !self.handoffs.is_empty()
    }

    fn take(&mut self) -> Handoff {
        if !self.folding() {
            return Handoff::Single;
        }
        let index = self.next % self.handoffs.len();
        self.next += 1;
        let (to, next) = oneshot::channel();
        let from = std::mem::replace(&mut self.handoffs[index], next);
        Handoff::Lane {
            from,
            to,
            limit: self.limit,
        }
    }

    /// The open lanes, once every piece is mapped.
    fn drain(&mut self) -> Vec<Lane> {
        self.handoffs
            .iter_mut()
            .filter_map(|handoff| handoff.try_recv().ok().flatten())
            .collect()
    }
}

/// Maps `piece` on the mapper its handoff gives, once the piece before it
/// on the lane is done, and passes the mapper on.
async fn map_on_lane(
    job: Arc<dyn JobRuntime>,
    decoder: Arc<ChunkDecoder>,
    file: String,
    piece: Piece,
    handoff: Handoff,
) -> Result<Mapped, TaskError> {
    let (slot, to) = match handoff {
        Handoff::Single => (LaneSlot::single(), None),
        Handoff::Lane { from, to, limit } => {
            // A closed handoff: the piece before failed, and so does the task.
            let lane = from.await.map_err(|_| TaskError::Job {
                during: "map",
                source: JobError::job("the piece before this one on its mapper failed"),
            })?;
            (LaneSlot { lane, limit }, Some(to))
        }
    };
    let mut mapped = run_cpu(map_piece(job, decoder, file, piece, slot))
        .await
        .map_err(TaskError::panic("panicked in map:"))??;
    if let Some(to) = to {
        let _ = to.send(mapped.lane.take());
    }
    Ok(mapped)
}

/// A piece's lane, as [`map_piece`] takes it: the lane's mapper is
/// finished once it has mapped `limit` bytes.
pub(crate) struct LaneSlot {
    lane: Option<Lane>,
    limit: u64,
}

impl LaneSlot {
    /// A mapper of its own, finished after the piece.
    pub(crate) fn single() -> LaneSlot {
        LaneSlot {
            lane: None,
            limit: 0,
        }
    }
}

/// What mapping one piece of input produced.
pub(crate) struct Mapped {
    records: u64,
    counters: harrow_sdk::Counters,
    /// The finished mapper's output, if it was finished.
    pub(crate) output: Option<RecordBatch>,
    /// The lane, unless it was finished.
    lane: Option<Lane>,
    bad_records: u64,
    bad_record_samples: Vec<harrow_core::task::BadRecord>,
}

/// Finishes a lane's mapper: its output, counted as a piece of no input.
fn finish_lane(lane: Lane) -> Result<Mapped, TaskError> {
    let (output, counters) = lane.mapper.finish().map_err(TaskError::job("map"))?;
    Ok(Mapped {
        records: 0,
        counters,
        output: Some(output),
        lane: None,
        bad_records: 0,
        bad_record_samples: Vec::new(),
    })
}

/// The CPU work for one piece: bytes, a row group or row numbers →
/// batches → the job's map, on the lane's mapper (a new one if it has
/// none), which is finished if it has mapped its share.
pub(crate) fn map_piece(
    job: Arc<dyn JobRuntime>,
    decoder: Arc<ChunkDecoder>,
    file: String,
    piece: Piece,
    slot: LaneSlot,
) -> impl FnOnce() -> Result<Mapped, TaskError> {
    move || {
        let decoded = piece.decode(&decoder, &file)?;
        let mut lane = slot.lane.unwrap_or_else(|| Lane {
            mapper: Box::new(OwnedMapper::new(job)),
            mapped: 0,
        });
        let mut records = 0;
        for batch in &decoded.batches {
            records += batch.num_rows() as u64;
            lane.mapped += batch.get_array_memory_size() as u64;
            lane.mapper.map(batch).map_err(TaskError::job("map"))?;
        }
        let mut mapped = match lane.mapped >= slot.limit {
            true => finish_lane(lane)?,
            false => Mapped {
                records: 0,
                counters: Default::default(),
                output: None,
                lane: Some(lane),
                bad_records: 0,
                bad_record_samples: Vec::new(),
            },
        };
        mapped.records = records;
        mapped.bad_records = decoded.bad_records;
        mapped.bad_record_samples = decoded.bad_record_samples;
        Ok(mapped)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_share_the_threads_among_the_maps_that_run_at_once() {
        // A slot per thread: each map task folds in one hash table.
        assert_eq!(lanes(2, 2, 10), 1);
        assert_eq!(lanes(8, 8, 100), 1);
        // A job of fewer maps than slots uses every thread all the same.
        assert_eq!(lanes(8, 8, 1), 8);
        assert_eq!(lanes(8, 8, 3), 3);
        // More threads than slots; an unknown number of maps.
        assert_eq!(lanes(8, 2, 0), 4);
        assert_eq!(lanes(3, 2, 5), 2);
        assert_eq!(lanes(1, 0, 0), 1);
    }
}
