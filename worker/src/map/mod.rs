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

mod lanes;
mod output;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use harrow_core::ids::AttemptId;
use harrow_core::task::{
    AttemptCounters, BAD_RECORD_SAMPLES, InputFormat, InputReport, InputSpec, Partitioner,
    SegmentInfo,
};
use harrow_formats::decode::ChunkDecoder;
use harrow_formats::input::InputError;
use harrow_formats::limits::MIN_CHUNK_BYTES;
use harrow_formats::source::{Source, SplitInput};
use harrow_sdk::{JobRuntime, TaskInfo, TaskKind};

use crate::cpu::run_cpu;
use crate::error::TaskError;
use crate::memory::TaskMemory;
use lanes::{Lanes, finish_lane, map_on_lane};
use output::{Spills, merge_spills, spill, spill_run};

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
