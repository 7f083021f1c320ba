//! Resuming from the coordinator's state dir: jobs, tasks and workers as
//! last written, with every timer started again from now. Succeeded map
//! tasks keep their output where it is, committed reduces stay committed,
//! and attempts restored as running wait for their worker's first
//! heartbeat to say whether they still run.

use std::collections::BTreeMap;

use harrow_core::ids::{AttemptId, JobId, WorkerId};

use super::WorkerState;
use super::attempt::LostCause;
use super::{Action, AttemptState, Job, JobPlan, JobState, Scheduler, Task, TaskEvent, Worker};

/// A job as the state dir holds it.
#[derive(Debug, Clone)]
pub struct ResumedJob {
    pub id: JobId,
    pub plan: JobPlan,
    pub state: JobState,
    pub submitted_at_ms: u64,
    pub maps: Vec<Task>,
    pub reduces: Vec<Task>,
}

impl Scheduler {
    /// Takes back the workers and jobs a coordinator held before it
    /// stopped. A live worker gets the worker timeout from now to heartbeat
    /// under its old id; an attempt on a worker that is gone is lost. A job
    /// that was committing commits again (idempotently).
    pub fn restore(
        &mut self,
        workers: Vec<Worker>,
        jobs: Vec<ResumedJob>,
        now_ms: u64,
    ) -> Vec<Action> {
        for mut worker in workers {
            if worker.is_alive() {
                worker.state = match worker.state {
                    WorkerState::Draining => WorkerState::Draining,
                    _ => WorkerState::Alive,
                };
                worker.last_heartbeat_ms = now_ms;
                worker.unreachable_reports.clear();
                worker.slow = None;
                worker.late_probe_for_ms = None;
            }
            self.next_worker = self.next_worker.max(worker.id.0);
            self.workers.insert(worker.id, worker);
        }
        let mut actions = Vec::new();
        let mut gone: Vec<AttemptId> = Vec::new();
        let mut unconfirmed: BTreeMap<WorkerId, Vec<AttemptId>> = BTreeMap::new();
        for resumed in jobs {
            let mut job = Job::new(resumed.id, resumed.plan, resumed.submitted_at_ms);
            job.state = resumed.state;
            for (slot, task) in job.maps.iter_mut().zip(resumed.maps) {
                *slot = task;
            }
            for (slot, task) in job.reduces.iter_mut().zip(resumed.reduces) {
                *slot = task;
            }
            for task in job.maps.iter_mut().chain(job.reduces.iter_mut()) {
                for attempt in &mut task.attempts {
                    if attempt.state != AttemptState::Running {
                        continue;
                    }
                    // The coordinator's downtime says nothing of the
                    // attempt's speed: it counts as waiting.
                    attempt.waited_ms += now_ms.saturating_sub(attempt.progress_at_ms);
                    attempt.progress_at_ms = now_ms;
                    if attempt.waiting_since_ms.is_some() {
                        attempt.waiting_since_ms = Some(now_ms);
                    }
                    if self.alive(attempt.worker) {
                        unconfirmed
                            .entry(attempt.worker)
                            .or_default()
                            .push(attempt.id);
                    } else {
                        gone.push(attempt.id);
                    }
                }
            }
            job.reindex();
            if job.state == JobState::Committing {
                actions.push(Action::CommitJob {
                    job: job.id,
                    output: job.plan.output.clone(),
                });
            }
            self.next_job = self.next_job.max(job.id.0);
            self.jobs.insert(job.id, job);
        }
        self.unconfirmed = unconfirmed;
        let reason = "its worker was gone when the coordinator restarted";
        actions.extend(self.lose_attempts(gone, reason, LostCause::Unconfirmed, now_ms));
        actions
    }

    /// At a restored worker's first heartbeat: the attempts restored as
    /// running on it that it does not run are lost.
    pub(super) fn confirm_attempts(
        &mut self,
        worker: WorkerId,
        running: &[AttemptId],
        now_ms: u64,
    ) -> Vec<Action> {
        let Some(restored) = self.unconfirmed.remove(&worker) else {
            return Vec::new();
        };
        let ended: Vec<AttemptId> = restored
            .into_iter()
            .filter(|&a| !running.contains(&a) && self.is_running_on(a, worker))
            .collect();
        let reason = "not running on its worker when the coordinator restarted";
        self.lose_attempts(ended, reason, LostCause::Unconfirmed, now_ms)
    }

    /// Ends `attempts` as lost, for `reason`: counted toward nothing.
    pub(super) fn lose_attempts(
        &mut self,
        attempts: Vec<AttemptId>,
        reason: &str,
        cause: LostCause,
        now_ms: u64,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        for attempt in attempts {
            let event = TaskEvent::Lost {
                attempt,
                reason: reason.to_string(),
                cause,
            };
            actions.extend(self.apply_to_task(attempt, event, now_ms));
        }
        actions
    }
}
