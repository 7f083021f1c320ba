//! A job's tasks by state, and its attempts by worker, so that a task
//! request costs what it hands out rather than a scan of the job: at
//! 100,000 tasks and 1,000 workers, scans on every request are what
//! bounded the coordinator's throughput.
//!
//! Invariant: equal to `TaskIndex::of` the job's tasks after every event.
//! `Job::apply_to_task` keeps it so (every change of a task's state or of
//! its attempts' states goes through it); `check_invariants` recomputes it
//! in debug builds.

use std::collections::{BTreeMap, BTreeSet};

use harrow_core::ids::{Phase, WorkerId};
use harrow_core::task::FailureKind;

use super::{AttemptState, Task, TaskState};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskIndex {
    /// Per phase (map, reduce), the pending tasks' indexes.
    pending: [BTreeSet<usize>; 2],
    /// Per phase, the indexes of tasks with attempts running.
    running: [BTreeSet<usize>; 2],
    /// Per phase, running tasks with more than one attempt (backups).
    backed_up: [usize; 2],
    /// Per phase, succeeded tasks.
    succeeded: [usize; 2],
    /// Attempts that failed on each worker by the job's or the worker's
    /// fault (what excludes a worker from the job).
    failures_on: BTreeMap<WorkerId, u32>,
    /// Attempts running on each worker.
    running_on: BTreeMap<WorkerId, u32>,
}

fn slot(phase: Phase) -> usize {
    match phase {
        Phase::Map => 0,
        Phase::Reduce => 1,
    }
}

impl TaskIndex {
    /// The index of these tasks, computed from scratch.
    pub fn of<'a>(tasks: impl IntoIterator<Item = &'a Task>) -> TaskIndex {
        let mut index = TaskIndex::default();
        for task in tasks {
            index.add(task);
        }
        index
    }

    /// Counts `task` in.
    pub fn add(&mut self, task: &Task) {
        self.count(task, true);
    }

    /// Counts `task` out, as it was when added.
    pub fn remove(&mut self, task: &Task) {
        self.count(task, false);
    }

    fn count(&mut self, task: &Task, add: bool) {
        let (phase, position) = (slot(task.id.phase), task.id.index as usize);
        let step = |n: &mut usize| *n = if add { *n + 1 } else { *n - 1 };
        let mark = |set: &mut BTreeSet<usize>| {
            if add {
                set.insert(position);
            } else {
                set.remove(&position);
            }
        };
        match &task.state {
            TaskState::Pending => mark(&mut self.pending[phase]),
            TaskState::Running { attempts } => {
                mark(&mut self.running[phase]);
                if attempts.len() > 1 {
                    step(&mut self.backed_up[phase]);
                }
            }
            TaskState::Succeeded { .. } => step(&mut self.succeeded[phase]),
            TaskState::Failed { .. } | TaskState::Cancelled => {}
        }
        for attempt in &task.attempts {
            let counts = match attempt.state {
                AttemptState::Running => &mut self.running_on,
                AttemptState::Failed {
                    kind: FailureKind::Job | FailureKind::Worker,
                    ..
                } => &mut self.failures_on,
                _ => continue,
            };
            let count = counts.entry(attempt.worker).or_default();
            if add {
                *count += 1;
            } else {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&attempt.worker);
                }
            }
        }
    }

    /// Indexes of the phase's pending tasks, in order.
    pub fn pending(&self, phase: Phase) -> impl Iterator<Item = usize> + '_ {
        self.pending[slot(phase)].iter().copied()
    }

    /// Indexes of the phase's tasks with attempts running, in order.
    pub fn running(&self, phase: Phase) -> impl Iterator<Item = usize> + '_ {
        self.running[slot(phase)].iter().copied()
    }

    /// The phase's running tasks with a backup running too.
    pub fn backed_up(&self, phase: Phase) -> usize {
        self.backed_up[slot(phase)]
    }

    /// The phase's pending, running and succeeded tasks.
    pub fn counts(&self, phase: Phase) -> (usize, usize, usize) {
        let slot = slot(phase);
        let (pending, running) = (&self.pending[slot], &self.running[slot]);
        (pending.len(), running.len(), self.succeeded[slot])
    }

    pub fn succeeded(&self, phase: Phase) -> usize {
        self.succeeded[slot(phase)]
    }

    /// Attempts of the job that failed on `worker` by the job's or the
    /// worker's fault.
    pub fn failures_on(&self, worker: WorkerId) -> u32 {
        self.failures_on.get(&worker).copied().unwrap_or(0)
    }

    /// Attempts of the job running on `worker`.
    pub fn running_on(&self, worker: WorkerId) -> u32 {
        self.running_on.get(&worker).copied().unwrap_or(0)
    }

    /// The workers running attempts of the job.
    pub fn workers_running(&self) -> impl Iterator<Item = WorkerId> + '_ {
        self.running_on.keys().copied()
    }
}
