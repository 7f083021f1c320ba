//! How fast attempts and workers go: an attempt's progress as a share of
//! its task, its rate, and which workers run far slower than their peers.
//! Pure functions over the scheduler's state and the time; placement
//! (backups) and the worker lifecycle (`slow`) use them.

use std::collections::BTreeMap;

use harrow_core::ids::{Phase, WorkerId};

use super::{Attempt, AttemptState, Job, Task, TaskInput, TaskOutput, TaskState};
use crate::limits::{MIN_RATE_ELAPSED_MS, MIN_SPEED_SAMPLES, SLOW_FACTOR, SPEED_WINDOW_MS};

/// A reduce attempt's progress counts its segments' bytes as fetched and
/// again (decoded, larger) as merged: its whole is taken as this many
/// times the partition's bytes.
const REDUCE_PROGRESS_PER_BYTE: u64 = 3;

/// How big each of a job's tasks is, in the unit its attempts report
/// progress in: a map's split length; a reduce's partition bytes over the
/// job's map output (computed once, for every partition).
#[derive(Debug, Clone)]
pub struct TaskSizes {
    partitions: Vec<u64>,
}

impl TaskSizes {
    /// Sizes of the job's map and reduce tasks.
    pub fn of(job: &Job) -> TaskSizes {
        let mut partitions = vec![0; job.reduces.len()];
        for map in &job.maps {
            if let TaskState::Succeeded {
                output: TaskOutput::Map { segments, .. },
                ..
            } = &map.state
            {
                for (bytes, segment) in partitions.iter_mut().zip(segments) {
                    *bytes += segment.bytes * REDUCE_PROGRESS_PER_BYTE;
                }
            }
        }
        TaskSizes { partitions }
    }

    /// Sizes of map tasks only.
    pub fn maps() -> TaskSizes {
        TaskSizes {
            partitions: Vec::new(),
        }
    }

    /// The share of its task an attempt has done, in `[0, 1]`, if its
    /// task's size is known.
    pub fn share(&self, task: &Task, attempt: &Attempt) -> Option<f64> {
        let whole = match &task.input {
            TaskInput::Split(split) => split.end.saturating_sub(split.start),
            TaskInput::Partition(partition) => self
                .partitions
                .get(*partition as usize)
                .copied()
                .unwrap_or(0),
        };
        (whole > 0).then(|| (attempt.progress_bytes as f64 / whole as f64).min(1.0))
    }

    /// Estimated milliseconds a running attempt needs to finish, from the
    /// rate at which it progressed so far (LATE's estimate): `None` while
    /// it is too young to tell or its task's size is unknown; infinite
    /// while it has made no progress.
    pub fn time_left_ms(&self, task: &Task, attempt: &Attempt, now_ms: u64) -> Option<f64> {
        let elapsed = active_ms(attempt, now_ms);
        if elapsed < MIN_RATE_ELAPSED_MS {
            return None;
        }
        let share = self.share(task, attempt)?;
        if share <= 0.0 {
            return Some(f64::INFINITY);
        }
        Some(elapsed as f64 * (1.0 - share) / share)
    }

    /// A running attempt's share of its task per millisecond, once it is
    /// old enough to tell.
    pub fn rate(&self, task: &Task, attempt: &Attempt, now_ms: u64) -> Option<f64> {
        let elapsed = active_ms(attempt, now_ms);
        if elapsed < MIN_RATE_ELAPSED_MS {
            return None;
        }
        Some(self.share(task, attempt)? / elapsed as f64)
    }
}

/// Milliseconds a running attempt has worked: since it started, less the
/// time it waited for map output.
pub fn active_ms(attempt: &Attempt, now_ms: u64) -> u64 {
    now_ms
        .saturating_sub(attempt.started_at_ms)
        .saturating_sub(attempt.waited_ms)
}

/// Shares of their task per millisecond: of the phase's running attempts
/// (old enough to tell, not waiting) and of its succeeded ones (the whole
/// task over their run time).
pub fn phase_rates(job: &Job, sizes: &TaskSizes, phase: Phase, now_ms: u64) -> Vec<f64> {
    let tasks = match phase {
        Phase::Map => &job.maps,
        Phase::Reduce => &job.reduces,
    };
    let mut rates = Vec::new();
    for task in tasks {
        for attempt in &task.attempts {
            let rate = match (&attempt.state, attempt.finished_at_ms) {
                (AttemptState::Succeeded, Some(end)) => {
                    Some(1.0 / end.saturating_sub(attempt.started_at_ms).max(1) as f64)
                }
                (AttemptState::Running, _) if attempt.waiting_since_ms.is_none() => {
                    sizes.rate(task, attempt, now_ms)
                }
                _ => None,
            };
            rates.extend(rate);
        }
    }
    rates
}

/// The value below which a `share` of the sorted `values` lie.
pub fn quantile(values: &mut [f64], share: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let index = ((values.len() - 1) as f64 * share).round() as usize;
    Some(values[index])
}

/// Shares of their task per millisecond of each worker's map attempts
/// lately: those that succeeded within the window, and those running long
/// enough to tell. Map splits are of similar size, so these compare
/// across workers.
fn map_rates_by_worker<'a>(
    jobs: impl Iterator<Item = &'a Job>,
    now_ms: u64,
) -> BTreeMap<WorkerId, Vec<f64>> {
    let mut rates: BTreeMap<WorkerId, Vec<f64>> = BTreeMap::new();
    let sizes = TaskSizes::maps();
    for job in jobs {
        for task in &job.maps {
            for attempt in &task.attempts {
                let rate = match (&attempt.state, attempt.finished_at_ms) {
                    (AttemptState::Succeeded, Some(end))
                        if now_ms.saturating_sub(end) <= SPEED_WINDOW_MS =>
                    {
                        1.0 / end.saturating_sub(attempt.started_at_ms).max(1) as f64
                    }
                    (AttemptState::Running, _) => match sizes.rate(task, attempt, now_ms) {
                        Some(rate) => rate,
                        None => continue,
                    },
                    _ => continue,
                };
                rates.entry(attempt.worker).or_default().push(rate);
            }
        }
    }
    rates
}

/// The workers whose map attempts lately ran [`SLOW_FACTOR`] times slower
/// than the median worker's, each with the reason. A worker needs
/// [`MIN_SPEED_SAMPLES`] attempts in the window, and as many peers with
/// that many, to be judged.
pub fn slow_workers<'a>(
    jobs: impl Iterator<Item = &'a Job>,
    live: &[WorkerId],
    now_ms: u64,
) -> BTreeMap<WorkerId, String> {
    let mut medians: BTreeMap<WorkerId, f64> = map_rates_by_worker(jobs, now_ms)
        .into_iter()
        .filter(|(worker, rates)| live.contains(worker) && rates.len() >= MIN_SPEED_SAMPLES)
        .map(|(worker, mut rates)| (worker, quantile(&mut rates, 0.5).expect("not empty")))
        .collect();
    if medians.len() <= MIN_SPEED_SAMPLES {
        return BTreeMap::new();
    }
    let mut all: Vec<f64> = medians.values().copied().collect();
    let median = quantile(&mut all, 0.5).expect("not empty");
    medians.retain(|_, rate| *rate * SLOW_FACTOR < median);
    medians
        .into_iter()
        .map(|(worker, rate)| {
            let reason = format!(
                "its map attempts run {:.1}x slower than the median worker's (over {SLOW_FACTOR}x): no new tasks until its recent attempts catch up",
                median / rate
            );
            (worker, reason)
        })
        .collect()
}
