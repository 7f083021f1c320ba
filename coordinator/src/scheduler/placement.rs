//! Which tasks a worker should run: pure functions over a job's state and
//! the time, so placement is tested without a scheduler around it.

use harrow_core::ids::{Phase, WorkerId};

use super::{AttemptState, Job, SchedulerConfig, Task, speed};
use crate::limits::{LATE_STATS_MS, SLOW_TASK_QUANTILE};

fn tasks(job: &Job, phase: Phase) -> &[Task] {
    match phase {
        Phase::Map => &job.maps,
        Phase::Reduce => &job.reduces,
    }
}

/// Up to `limit` of the job's tasks that may start now, in the order to
/// start them: map tasks first; reduce tasks once every map task has
/// succeeded, or, after that happened once, while maps run again but none
/// is left to start (a lost reducer fetches what live workers hold while
/// the last maps run, and waits for the rest).
pub fn pending_in_order(job: &Job, now_ms: u64, limit: usize) -> Vec<(Phase, usize)> {
    let mut chosen: Vec<(Phase, usize)> = job
        .runnable(Phase::Map, now_ms)
        .take(limit)
        .map(|i| (Phase::Map, i))
        .collect();
    let reducing = job.maps_done()
        || (chosen.is_empty() && job.reduces.iter().any(|t| !t.attempts.is_empty()));
    if reducing {
        let room = limit - chosen.len();
        chosen.extend(
            job.runnable(Phase::Reduce, now_ms)
                .take(room)
                .map(|i| (Phase::Reduce, i)),
        );
    }
    chosen
}

/// Indexes of running tasks that should get a backup attempt on `worker`,
/// best first:
/// - stalled ones, whose only attempt made no progress for the stall
///   timeout;
/// - once the phase has no task left to start, stragglers as LATE picks
///   them: attempts that have worked (waits for map output aside) longer
///   than the median run time, progress slower than most of the phase's
///   (`SLOW_TASK_QUANTILE`), and whose estimated time left exceeds what a
///   fresh attempt takes (the median run time), those estimated to finish
///   last first, while the job runs fewer than `cap` backups.
///
/// Waiting reducers are neither. The scheduler offers backups only to
/// workers that are neither suspect nor slow.
pub fn backup_candidates(
    job: &Job,
    phase: Phase,
    worker: WorkerId,
    now_ms: u64,
    config: &SchedulerConfig,
    cap: usize,
) -> Vec<usize> {
    let tasks = tasks(job, phase);
    let startable = job.runnable(phase, now_ms).next().is_some();
    let mut stalled = Vec::new();
    let mut running = Vec::new();
    for index in job.index.running(phase) {
        let task = &tasks[index];
        let [only] = task.running() else { continue };
        let attempt = task.attempt(*only).expect("running attempt is recorded");
        if attempt.worker == worker || attempt.waiting_since_ms.is_some() {
            continue;
        }
        if now_ms.saturating_sub(attempt.progress_at_ms) > config.stall_timeout_ms {
            stalled.push(index);
        } else {
            running.push((index, task, attempt));
        }
    }
    let mut budget = cap.saturating_sub(job.index.backed_up(phase));
    if startable || running.is_empty() || budget == 0 {
        return stalled;
    }
    let Some(LateStats {
        sizes,
        median_ms: Some(median),
        slow_rate: Some(slow_rate),
        ..
    }) = job.late_stats.get(&phase)
    else {
        return stalled;
    };
    let mut stragglers: Vec<(f64, usize)> = running
        .into_iter()
        .filter_map(|(index, task, attempt)| {
            let left = sizes.time_left_ms(task, attempt, now_ms)?;
            let rate = sizes.rate(task, attempt, now_ms)?;
            let old = speed::active_ms(attempt, now_ms) >= *median;
            (old && rate <= *slow_rate && left > *median as f64).then_some((left, index))
        })
        .collect();
    stragglers.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut candidates = stalled;
    for (_, index) in stragglers {
        if budget == 0 {
            break;
        }
        budget -= 1;
        candidates.push(index);
    }
    candidates
}

/// What LATE measures a phase's running attempts against. Computing it
/// reads every attempt of the phase, so a job keeps it for
/// [`LATE_STATS_MS`] (`Job::late_stats`, refreshed by the scheduler
/// before it looks for backups).
#[derive(Debug, Clone)]
pub struct LateStats {
    computed_at_ms: u64,
    sizes: speed::TaskSizes,
    /// The median run time of the phase's succeeded attempts.
    median_ms: Option<u64>,
    /// Attempts progressing at this rate or slower are slow.
    slow_rate: Option<f64>,
}

impl LateStats {
    pub fn of(job: &Job, phase: Phase, now_ms: u64) -> LateStats {
        let sizes = speed::TaskSizes::of(job);
        let mut rates = speed::phase_rates(job, &sizes, phase, now_ms);
        LateStats {
            computed_at_ms: now_ms,
            median_ms: median_duration_ms(tasks(job, phase)),
            slow_rate: speed::quantile(&mut rates, SLOW_TASK_QUANTILE),
            sizes,
        }
    }

    pub fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.computed_at_ms) < LATE_STATS_MS
    }
}

/// The median run time of the phase's succeeded attempts.
fn median_duration_ms(tasks: &[Task]) -> Option<u64> {
    let mut durations: Vec<u64> = tasks
        .iter()
        .flat_map(|t| &t.attempts)
        .filter(|a| a.state == AttemptState::Succeeded)
        .filter_map(|a| a.finished_at_ms.map(|end| end - a.started_at_ms))
        .collect();
    if durations.is_empty() {
        return None;
    }
    durations.sort_unstable();
    Some(durations[durations.len() / 2])
}
