//! The worker side of the scheduler: registration, heartbeats, draining,
//! suspect workers and their probes, and death: a dead worker's attempts
//! and the map output on its disk run again, and the poison rule.

use harrow_core::ids::{AttemptId, JobId, Phase, WorkerId};
use harrow_core::rpc::health::ProbeFailure;

use super::attempt::LostCause;
use super::lifecycle::{WorkerChange, WorkerEvent};
use super::{
    Action, AttemptState, Job, JobEvent, JobState, Scheduler, Task, TaskEvent, TaskOutput,
    TaskState,
};
use super::{AttemptProgress, Worker, WorkerState};
use crate::limits::POISON_WORKER_DEATHS;

impl Scheduler {
    pub(super) fn register(
        &mut self,
        shuffle_address: String,
        slots: u32,
        incarnation: u64,
        now_ms: u64,
    ) -> Vec<Action> {
        self.next_worker += 1;
        let id = WorkerId(self.next_worker);
        self.workers.insert(
            id,
            Worker {
                id,
                shuffle_address,
                slots,
                incarnation,
                registered_at_ms: now_ms,
                last_heartbeat_ms: now_ms,
                state: WorkerState::Alive,
                unreachable_reports: Vec::new(),
                slow: None,
                late_probe_for_ms: None,
            },
        );
        self.no_workers_since_ms = None;
        vec![Action::WorkerRegistered { worker: id }]
    }

    pub(super) fn alive(&self, worker: WorkerId) -> bool {
        self.workers.get(&worker).is_some_and(Worker::is_alive)
    }

    pub(super) fn heartbeat(
        &mut self,
        worker: WorkerId,
        incarnation: u64,
        running: &[AttemptProgress],
        jobs_with_data: &[JobId],
        now_ms: u64,
    ) -> Vec<Action> {
        // Another process using this id (fenced): it must register anew.
        let Some(record) = self
            .workers
            .get_mut(&worker)
            .filter(|w| w.is_alive() && w.incarnation == incarnation)
        else {
            return vec![Action::UnknownWorker { worker }];
        };
        let mut actions = Vec::new();
        if record.apply(WorkerEvent::Heartbeat, now_ms) == WorkerChange::Cleared {
            self.set_aside_outputs(worker, TaskEvent::OutputRestored, now_ms);
        }
        let listed: Vec<AttemptId> = running.iter().map(|p| p.attempt).collect();
        actions.extend(self.confirm_attempts(worker, &listed, now_ms));
        let mut kill = Vec::new();
        for progress in running {
            let attempt = self
                .jobs
                .get_mut(&progress.attempt.task.job)
                .and_then(|job| job.task_mut(progress.attempt.task))
                .and_then(|task| task.attempt_mut(progress.attempt))
                .filter(|a| a.worker == worker && a.state == AttemptState::Running);
            match attempt {
                Some(attempt) => {
                    if progress.bytes > attempt.progress_bytes {
                        attempt.progress_bytes = progress.bytes;
                        attempt.progress_at_ms = now_ms;
                    }
                }
                None => kill.push(progress.attempt),
            }
        }
        let release: Vec<JobId> = jobs_with_data
            .iter()
            .filter(|job| self.jobs.get(job).is_none_or(|j| j.state.is_terminal()))
            .copied()
            .collect();
        if !kill.is_empty() {
            actions.push(Action::KillAttempts {
                worker,
                attempts: kill,
            });
        }
        if !release.is_empty() {
            actions.push(Action::ReleaseJobs {
                worker,
                jobs: release,
            });
        }
        if self.workers[&worker].state == WorkerState::Draining && self.may_exit(worker) {
            actions.push(Action::MayExit { worker });
        }
        actions
    }

    pub(super) fn drain(&mut self, worker: WorkerId) -> Vec<Action> {
        match self.workers.get_mut(&worker) {
            Some(record) => {
                record.apply(WorkerEvent::Drain, 0);
                Vec::new()
            }
            None => vec![Action::UnknownWorker { worker }],
        }
    }

    /// Whether nothing runs on the worker and no unfinished job still needs
    /// map output on its disk.
    pub(super) fn may_exit(&self, worker: WorkerId) -> bool {
        let holds_needed_output = |job: &Job| {
            job.state == JobState::Running
                && !job.reduces_done()
                && job.maps.iter().any(|t| {
                    matches!(&t.state, TaskState::Succeeded { output: TaskOutput::Map { worker: w, .. }, .. } if *w == worker)
                })
        };
        self.running_on(worker) == 0 && !self.jobs.values().any(holds_needed_output)
    }

    /// A reducer on `reporter` could not reach `worker`'s shuffle service:
    /// it becomes suspect, and every map output on it that unfinished
    /// reducers need is run again unless it is cleared first. The
    /// coordinator probes it ([`Action::ProbeWorker`]). A draining worker
    /// that cannot be reached has left.
    pub(super) fn suspect(&mut self, worker: WorkerId, reason: String, now_ms: u64) -> Vec<Action> {
        let record = self.workers.get_mut(&worker).expect("worker exists");
        let address = record.shuffle_address.clone();
        let event = WorkerEvent::Unreachable {
            reason: reason.clone(),
        };
        match record.apply(event, now_ms) {
            WorkerChange::Suspected => {
                self.set_aside_outputs(worker, TaskEvent::OutputSuspended, now_ms);
                vec![Action::ProbeWorker { worker, address }]
            }
            WorkerChange::Died => self.lose_worker(worker, &reason, now_ms),
            WorkerChange::Unchanged | WorkerChange::Cleared => Vec::new(),
        }
    }

    /// A probe of a worker's shuffle service ended. A suspect worker that
    /// fails it is dead; a worker probed for a late heartbeat is dead only
    /// if its connection was refused (nothing listens there any more),
    /// since a stopped or busy process may still come back within the
    /// worker timeout.
    pub(super) fn probe_ended(
        &mut self,
        worker: WorkerId,
        result: Result<(), ProbeFailure>,
        now_ms: u64,
    ) -> Vec<Action> {
        let Some(record) = self.workers.get_mut(&worker) else {
            return Vec::new();
        };
        let address = record.shuffle_address.clone();
        match (&record.state, result) {
            (WorkerState::Suspect { .. }, Ok(())) => {
                if record.apply(WorkerEvent::ProbeAnswered, now_ms) == WorkerChange::Cleared {
                    self.set_aside_outputs(worker, TaskEvent::OutputRestored, now_ms);
                }
                Vec::new()
            }
            (WorkerState::Suspect { .. }, Err(failure)) => {
                let reason = format!(
                    "{worker} was suspect and its shuffle service at {address} did not answer a health check: {}",
                    failure.message
                );
                self.declare_dead(worker, reason, now_ms)
            }
            (WorkerState::Alive | WorkerState::Draining, Err(failure)) if failure.refused => {
                let silent = now_ms.saturating_sub(record.last_heartbeat_ms);
                let reason = format!(
                    "{worker} sent no heartbeat for {silent} ms and its shuffle service at {address} refused a connection: {}",
                    failure.message
                );
                self.declare_dead(worker, reason, now_ms)
            }
            _ => Vec::new(),
        }
    }

    /// Applies `event` (`OutputSuspended`, `OutputRestored` or
    /// `OutputLost`) to every map task of a running job whose output lies
    /// on `worker` (succeeded there, or set aside from there) while
    /// reducers still need it.
    fn set_aside_outputs(&mut self, worker: WorkerId, event: TaskEvent, now_ms: u64) {
        let max_attempts = self.config.max_attempts;
        let on_worker = |output: &TaskOutput| matches!(output, TaskOutput::Map { worker: w, .. } if *w == worker);
        for job in self.jobs.values_mut() {
            if job.state != JobState::Running || job.reduces_done() {
                continue;
            }
            let holds = |task: &Task| match (&task.state, &task.suspended) {
                (TaskState::Succeeded { output, .. }, _) => on_worker(output),
                (_, Some(suspended)) => on_worker(&suspended.output),
                (_, None) => false,
            };
            job.apply_to_each(Phase::Map, holds, &event, now_ms, max_attempts);
        }
    }

    /// The worker is gone with everything on its disk: its running attempts
    /// are lost, and map output that unfinished reducers still need is
    /// re-run.
    pub(super) fn declare_dead(
        &mut self,
        worker: WorkerId,
        reason: String,
        now_ms: u64,
    ) -> Vec<Action> {
        let record = self.workers.get_mut(&worker).expect("worker exists");
        let event = WorkerEvent::Died {
            reason: reason.clone(),
        };
        match record.apply(event, now_ms) {
            WorkerChange::Died => self.lose_worker(worker, &reason, now_ms),
            _ => Vec::new(),
        }
    }

    /// What a death costs: the worker's running attempts are lost, and map
    /// output on its disk that unfinished reducers need runs again.
    fn lose_worker(&mut self, worker: WorkerId, reason: &str, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let attempts = self.running_on(worker) as u32;
        let job_ids: Vec<JobId> = self.jobs.keys().copied().collect();
        for job_id in job_ids {
            let job = &self.jobs[&job_id];
            if !matches!(job.state, JobState::Queued | JobState::Running)
                || job.index.running_on(worker) == 0
            {
                continue;
            }
            let lost: Vec<AttemptId> = job
                .tasks()
                .flat_map(|t| &t.attempts)
                .filter(|a| a.worker == worker && a.state == AttemptState::Running)
                .map(|a| a.id)
                .collect();
            for attempt in lost {
                let event = TaskEvent::Lost {
                    attempt,
                    reason: format!("worker lost: {reason}"),
                    cause: LostCause::WorkerDied { attempts },
                };
                actions.extend(self.apply_to_task(attempt, event, now_ms));
                if let Some(error) = self.poison(attempt) {
                    let event = JobEvent::TaskFailed { error };
                    actions.extend(self.end_job(job_id, event, now_ms));
                }
            }
        }
        self.set_aside_outputs(worker, TaskEvent::OutputLost, now_ms);
        for job in self.jobs.values_mut() {
            job.forget_fetch_failures_of(worker);
        }
        if !self.workers.values().any(Worker::is_alive) {
            self.no_workers_since_ms = Some(now_ms);
        }
        actions
    }

    /// Whether `attempt`'s task looks like what kills its workers: its
    /// attempts were running on [`POISON_WORKER_DEATHS`] distinct workers
    /// as each died, no other worker died since its first attempt started
    /// (the others stayed alive: this is not a cluster losing workers to
    /// something else), and a worker is still alive. A worker that died
    /// running other attempts too is shared evidence: it counts as one
    /// death divided among them, so where workers die at random a task is
    /// not taken for poison because it was beside the ones that did. Then
    /// its job fails, naming it, instead of the task taking the cluster
    /// down one worker at a time.
    fn poison(&self, attempt: AttemptId) -> Option<String> {
        let job = self.jobs.get(&attempt.task.job)?;
        if !matches!(job.state, JobState::Queued | JobState::Running) {
            return None;
        }
        let task = job.task(attempt.task)?;
        let died = task.workers_died_running();
        let since = task.attempts.first()?.started_at_ms;
        let others_died = self.workers.values().any(|w| {
            matches!(w.state, WorkerState::Dead { at_ms, .. } if at_ms >= since)
                && !died.contains_key(&w.id)
        });
        let evidence: f64 = died.values().map(|&n| 1.0 / f64::from(n.max(1))).sum();
        let poisoned = evidence >= POISON_WORKER_DEATHS as f64 - 1e-9
            && !others_died
            && self.workers.values().any(Worker::is_alive);
        poisoned.then(|| {
            let workers: Vec<String> = died.keys().map(ToString::to_string).collect();
            format!(
                "{} task {} ({}) was running on {} workers as each of them died ({}), while other workers stayed alive: it may be what kills them",
                super::phase_name(attempt.task.phase),
                attempt.task,
                task.input,
                died.len(),
                workers.join(", ")
            )
        })
    }
}
