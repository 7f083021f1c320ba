//! Which tasks a worker should run: pure functions over a job's state and
//! the time, so placement is tested without a scheduler around it.

use harrow_core::ids::{Phase, WorkerId};

use super::{AttemptState, Job, SchedulerConfig, Task, speed};
use crate::limits::SLOW_TASK_QUANTILE;

fn tasks(job: &Job, phase: Phase) -> &[Task] {
    match phase {
        Phase::Map => &job.maps,
        Phase::Reduce => &job.reduces,
    }
}

/// Indexes of the phase's pending tasks that may start now (not waiting
/// out a backoff), in order.
fn pending(job: &Job, phase: Phase, now_ms: u64) -> Vec<usize> {
    tasks(job, phase)
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_runnable(now_ms))
        .map(|(i, _)| i)
        .collect()
}

/// The job's tasks that may start now, in the order to start them: map
/// tasks first; reduce tasks once every map task has succeeded, or, after
/// that happened once, while maps run again but none is left to start (a
/// lost reducer fetches what live workers hold while the last maps run,
/// and waits for the rest).
pub fn pending_in_order(job: &Job, now_ms: u64) -> Vec<(Phase, usize)> {
    let maps = pending(job, Phase::Map, now_ms);
    let reducing =
        job.maps_done() || (maps.is_empty() && job.reduces.iter().any(|t| !t.attempts.is_empty()));
    let reduces = if reducing {
        pending(job, Phase::Reduce, now_ms)
    } else {
        Vec::new()
    };
    let maps = maps.into_iter().map(|i| (Phase::Map, i));
    maps.chain(reduces.into_iter().map(|i| (Phase::Reduce, i)))
        .collect()
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
    let startable = tasks.iter().any(|t| t.is_runnable(now_ms));
    let mut stalled = Vec::new();
    let mut running = Vec::new();
    for (index, task) in tasks.iter().enumerate() {
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
    let with_backups = tasks.iter().filter(|t| t.running().len() > 1).count();
    let mut budget = cap.saturating_sub(with_backups);
    if startable || running.is_empty() || budget == 0 {
        return stalled;
    }
    let sizes = speed::TaskSizes::of(job);
    let (Some(median), Some(slow_rate)) = (
        median_duration_ms(tasks),
        speed::quantile(
            &mut speed::phase_rates(job, &sizes, phase, now_ms),
            SLOW_TASK_QUANTILE,
        ),
    ) else {
        return stalled;
    };
    let mut stragglers: Vec<(f64, usize)> = running
        .into_iter()
        .filter_map(|(index, task, attempt)| {
            let left = sizes.time_left_ms(task, attempt, now_ms)?;
            let rate = sizes.rate(task, attempt, now_ms)?;
            let old = speed::active_ms(attempt, now_ms) >= median;
            (old && rate <= slow_rate && left > median as f64).then_some((left, index))
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
