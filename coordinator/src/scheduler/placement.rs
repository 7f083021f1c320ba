//! Which tasks a worker should run: pure functions over a job's state and
//! the time, so placement is tested without a scheduler around it.

use harrow_core::ids::{Phase, WorkerId};

use super::{AttemptState, Job, SchedulerConfig, Task, TaskState};

/// A straggler runs at least this many times the phase's median duration.
const STRAGGLER_FACTOR: u64 = 2;
/// ... and at least this much longer than the median, so short tasks are
/// never duplicated for noise.
const STRAGGLER_MIN_EXTRA_MS: u64 = 1_000;

fn tasks(job: &Job, phase: Phase) -> &[Task] {
    match phase {
        Phase::Map => &job.maps,
        Phase::Reduce => &job.reduces,
    }
}

/// Indexes of the phase's pending tasks that may start now (not waiting
/// out a backoff), in order.
pub fn pending(job: &Job, phase: Phase, now_ms: u64) -> Vec<usize> {
    tasks(job, phase)
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_runnable(now_ms))
        .map(|(i, _)| i)
        .collect()
}

/// Indexes of running tasks that should get a backup attempt on `worker`:
/// those whose only attempt made no progress for the stall timeout, and,
/// near the end of the phase, stragglers far slower than the finished
/// tasks, at most 10% of the running tasks (at least one) having a backup.
pub fn backup_candidates(
    job: &Job,
    phase: Phase,
    worker: WorkerId,
    now_ms: u64,
    config: &SchedulerConfig,
) -> Vec<usize> {
    let tasks = tasks(job, phase);
    let running = tasks.iter().filter(|t| !t.running().is_empty()).count();
    let with_backups = tasks.iter().filter(|t| t.running().len() > 1).count();
    let mut speculation_budget = (running / 10).max(1).saturating_sub(with_backups);
    let median = median_duration_ms(tasks);
    let pending = tasks.iter().any(|t| t.state == TaskState::Pending);
    let succeeded = tasks
        .iter()
        .filter(|t| matches!(t.state, TaskState::Succeeded { .. }))
        .count();
    let near_end = !pending && succeeded * 2 >= tasks.len();

    let mut candidates = Vec::new();
    for (index, task) in tasks.iter().enumerate() {
        let [only] = task.running() else { continue };
        let attempt = task.attempt(*only).expect("running attempt is recorded");
        if attempt.worker == worker {
            continue;
        }
        let stalled = now_ms.saturating_sub(attempt.progress_at_ms) > config.stall_timeout_ms;
        let elapsed = now_ms.saturating_sub(attempt.started_at_ms);
        let straggling = near_end
            && median.is_some_and(|m| {
                elapsed >= m * STRAGGLER_FACTOR && elapsed >= m + STRAGGLER_MIN_EXTRA_MS
            });
        if stalled {
            candidates.push(index);
        } else if straggling && speculation_budget > 0 {
            speculation_budget -= 1;
            candidates.push(index);
        }
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
