//! The worker side of the scheduler: registration, heartbeats, draining,
//! and what time tells: workers declared dead (their attempts and the map
//! output on their disk run again) and jobs left without any worker.

use harrow_core::ids::{AttemptId, JobId, WorkerId};

use super::{
    Action, AttemptState, Job, JobEvent, JobState, Scheduler, TaskEvent, TaskOutput, TaskState,
};

/// A worker's lifecycle.
///
/// ```text
///  Alive ── no heartbeat for the worker timeout ──────────────▶ Dead
///    │                                                          ▲
///    └─ SIGTERM ─▶ Draining (no new tasks) ── leaves or silent ─┘
/// ```
///
/// A dead worker that comes back is told it is unknown and registers anew,
/// under a new id; nothing it reports under the old id counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerState {
    Alive,
    /// Shutting down: finishes what it runs and serves its map output, but
    /// gets no new tasks.
    Draining,
    Dead {
        at_ms: u64,
        reason: String,
    },
}

impl WorkerState {
    /// Every state's `name`.
    pub const NAMES: [&'static str; 3] = ["alive", "draining", "dead"];

    pub fn name(&self) -> &'static str {
        match self {
            WorkerState::Alive => "alive",
            WorkerState::Draining => "draining",
            WorkerState::Dead { .. } => "dead",
        }
    }
}

/// A registered worker.
#[derive(Debug, Clone)]
pub struct Worker {
    pub id: WorkerId,
    pub shuffle_address: String,
    pub slots: u32,
    pub registered_at_ms: u64,
    pub last_heartbeat_ms: u64,
    pub state: WorkerState,
}

impl Worker {
    /// Alive or draining: its attempts and map output count.
    pub fn is_alive(&self) -> bool {
        match self.state {
            WorkerState::Alive | WorkerState::Draining => true,
            WorkerState::Dead { .. } => false,
        }
    }
}

/// Input bytes an attempt has processed, as its worker last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptProgress {
    pub attempt: AttemptId,
    pub bytes: u64,
}

impl Scheduler {
    pub(super) fn register(
        &mut self,
        shuffle_address: String,
        slots: u32,
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
                registered_at_ms: now_ms,
                last_heartbeat_ms: now_ms,
                state: WorkerState::Alive,
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
        running: &[AttemptProgress],
        jobs_with_data: &[JobId],
        now_ms: u64,
    ) -> Vec<Action> {
        let Some(record) = self.workers.get_mut(&worker).filter(|w| w.is_alive()) else {
            return vec![Action::UnknownWorker { worker }];
        };
        record.last_heartbeat_ms = now_ms;
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
        let mut actions = Vec::new();
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
            Some(record) if record.state == WorkerState::Alive => {
                record.state = WorkerState::Draining;
                Vec::new()
            }
            Some(_) => Vec::new(),
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

    pub(super) fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let timeout = self.config.worker_timeout_ms;
        let silent: Vec<WorkerId> = self
            .workers
            .values()
            .filter(|w| w.is_alive() && now_ms.saturating_sub(w.last_heartbeat_ms) > timeout)
            .map(|w| w.id)
            .collect();
        for worker in silent {
            let reason = format!("{worker} sent no heartbeat for {timeout} ms");
            actions.extend(self.declare_dead(worker, reason, now_ms));
        }
        actions.extend(self.fail_hung_attempts(now_ms));
        actions.extend(self.fail_jobs_without_workers(now_ms));
        actions
    }

    /// Fails attempts that made no progress for twice the stall timeout:
    /// the stall already got them a backup, so their code is stuck (an
    /// endless loop in job code), not slow. The failure counts toward
    /// `max_attempts`; the worker kills the attempt at its next heartbeat.
    pub(super) fn fail_hung_attempts(&mut self, now_ms: u64) -> Vec<Action> {
        let limit = self.config.stall_timeout_ms.saturating_mul(2);
        let hung: Vec<AttemptId> = self
            .jobs
            .values()
            .filter(|j| j.state == JobState::Running)
            .flat_map(|j| j.tasks())
            .flat_map(|t| &t.attempts)
            .filter(|a| a.state == AttemptState::Running)
            .filter(|a| now_ms.saturating_sub(a.progress_at_ms) > limit)
            .map(|a| a.id)
            .collect();
        let mut actions = Vec::new();
        for attempt in hung {
            let event = TaskEvent::Failed {
                attempt,
                error: format!(
                    "made no progress for {} s (twice --stall-timeout); killed as hung",
                    limit / 1000
                ),
                counters: Default::default(),
            };
            actions.extend(self.apply_to_task(attempt, event, now_ms));
        }
        actions
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
        record.state = WorkerState::Dead {
            at_ms: now_ms,
            reason: reason.clone(),
        };
        let mut actions = Vec::new();
        let max_attempts = self.config.max_attempts;
        let job_ids: Vec<JobId> = self.jobs.keys().copied().collect();
        for job_id in job_ids {
            let job = &self.jobs[&job_id];
            if !matches!(job.state, JobState::Queued | JobState::Running) {
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
                };
                actions.extend(self.apply_to_task(attempt, event, now_ms));
            }
            let job = self.jobs.get_mut(&job_id).expect("job exists");
            if job.state == JobState::Running && !job.reduces_done() {
                for task in &mut job.maps {
                    if matches!(&task.state, TaskState::Succeeded { output: TaskOutput::Map { worker: w, .. }, .. } if *w == worker)
                    {
                        task.apply(TaskEvent::OutputLost, now_ms, max_attempts);
                    }
                }
            }
        }
        if !self.workers.values().any(Worker::is_alive) {
            self.no_workers_since_ms = Some(now_ms);
        }
        actions
    }

    /// Fails every job with work to do once no worker has been alive for
    /// the no-worker timeout (counted from the job's submission if later).
    pub(super) fn fail_jobs_without_workers(&mut self, now_ms: u64) -> Vec<Action> {
        if self.workers.values().any(Worker::is_alive) {
            self.no_workers_since_ms = None;
            return Vec::new();
        }
        let since = *self.no_workers_since_ms.get_or_insert(now_ms);
        let timeout = self.config.no_worker_timeout_ms;
        let stuck: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| matches!(j.state, JobState::Queued | JobState::Running))
            .filter(|j| now_ms.saturating_sub(since.max(j.submitted_at_ms)) >= timeout)
            .map(|j| j.id)
            .collect();
        let mut actions = Vec::new();
        for job in stuck {
            let error = format!(
                "no live worker for {timeout} ms (--no-worker-timeout) while the job had work to do"
            );
            actions.extend(self.end_job(job, JobEvent::TaskFailed { error }, now_ms));
        }
        actions
    }
}
