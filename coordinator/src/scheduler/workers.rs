//! The worker side of the scheduler: registration, heartbeats, draining,
//! and what time tells: workers declared dead (their attempts and the map
//! output on their disk run again) and jobs left without any worker.

use harrow_core::ids::{AttemptId, JobId, WorkerId};
use harrow_core::rpc::health::ProbeFailure;
use harrow_core::task::FailureKind;

use super::task::LostCause;
use super::{
    Action, Attempt, AttemptState, Job, JobEvent, JobState, Scheduler, TaskEvent, TaskOutput,
    TaskState,
};
use crate::limits::POISON_WORKER_DEATHS;

/// A worker's lifecycle.
///
/// ```text
///          a reducer could not reach       probe answered and a
///          its shuffle service             heartbeat arrived
///  Alive ─────────────────────────▶ Suspect ─────────────────▶ Alive
///    │                                 │ probe refused, or the
///    │                                 │ suspect timeout passed
///    ├── no heartbeat for the worker timeout ─────────────────▶ Dead
///    │                                                          ▲
///    └─ SIGTERM ─▶ Draining (no new tasks) ── leaves, silent ───┘
///                           or unreachable
/// ```
///
/// A suspect worker gets no new tasks and reducers are not pointed at its
/// map output (which is re-run meanwhile); what it runs goes on, and its
/// reports count. A dead worker that comes back is told it is unknown and
/// registers anew, under a new id; nothing it reports under the old id
/// counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerState {
    Alive,
    /// A reducer could not reach it. Cleared once a probe of its shuffle
    /// service answers and it heartbeats, both after `since_ms`.
    Suspect {
        since_ms: u64,
        reason: String,
        probed: bool,
        heartbeat: bool,
    },
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
    pub const NAMES: [&'static str; 4] = ["alive", "suspect", "draining", "dead"];

    pub fn name(&self) -> &'static str {
        match self {
            WorkerState::Alive => "alive",
            WorkerState::Suspect { .. } => "suspect",
            WorkerState::Draining => "draining",
            WorkerState::Dead { .. } => "dead",
        }
    }
}

/// A reducer's report that it could not reach `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnreachableReport {
    pub target: WorkerId,
    pub at_ms: u64,
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
    /// Reducers on this worker could not reach these workers, lately.
    pub unreachable_reports: Vec<UnreachableReport>,
    /// Why its attempts run far slower than its peers', if they do: it
    /// gets no new tasks until they catch up (`speed::slow_workers`).
    pub slow: Option<String>,
    /// The heartbeat after which it fell silent and was probed for it
    /// (`SchedulerConfig::late_heartbeat_ms`): one probe per silence.
    pub late_probe_for_ms: Option<u64>,
}

impl Worker {
    /// Alive, suspect or draining: its attempts count.
    pub fn is_alive(&self) -> bool {
        match self.state {
            WorkerState::Alive | WorkerState::Suspect { .. } | WorkerState::Draining => true,
            WorkerState::Dead { .. } => false,
        }
    }

    /// Alive, and neither suspect, draining nor slow: it gets new tasks.
    pub fn takes_tasks(&self) -> bool {
        self.state == WorkerState::Alive && self.slow.is_none()
    }

    /// Its state as shown: an alive worker that runs far slower than its
    /// peers is `slow`.
    pub fn shown_state(&self) -> &'static str {
        match (&self.state, &self.slow) {
            (WorkerState::Alive, Some(_)) => "slow",
            (state, _) => state.name(),
        }
    }

    /// Every `shown_state`.
    pub const SHOWN_STATES: [&'static str; 5] = ["alive", "slow", "suspect", "draining", "dead"];

    /// Why it is slow, suspect or dead.
    pub fn reason(&self) -> Option<&str> {
        match (&self.state, &self.slow) {
            (WorkerState::Suspect { reason, .. } | WorkerState::Dead { reason, .. }, _) => {
                Some(reason)
            }
            (WorkerState::Alive, Some(reason)) => Some(reason),
            (WorkerState::Alive | WorkerState::Draining, _) => None,
        }
    }

    /// The reason it is suspect, if it is.
    pub fn suspect_reason(&self) -> Option<&str> {
        match &self.state {
            WorkerState::Suspect { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// What happens to a worker, as far as its lifecycle goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEvent {
    Heartbeat,
    /// SIGTERM: it finishes what it runs and takes nothing new.
    Drain,
    /// A reducer could not reach its shuffle service.
    Unreachable {
        reason: String,
    },
    /// A probe of its shuffle service answered.
    ProbeAnswered,
    /// It is gone: silent for the worker timeout, refused a probe, left,
    /// or suspect for the suspect timeout.
    Died {
        reason: String,
    },
}

/// What an event changed, for the scheduler to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerChange {
    Unchanged,
    /// Now suspect: set its map output aside and probe it.
    Suspected,
    /// Suspect no more: its map output stands again.
    Cleared,
    /// Now dead: its attempts and needed map output run again.
    Died,
}

impl Worker {
    /// The one place a worker's state changes (the diagram on
    /// [`WorkerState`]).
    pub fn apply(&mut self, event: WorkerEvent, now_ms: u64) -> WorkerChange {
        use WorkerState::{Alive, Dead, Draining, Suspect};
        match (&mut self.state, event) {
            (Dead { .. }, _) => WorkerChange::Unchanged,
            (_, WorkerEvent::Died { reason }) => {
                self.state = Dead {
                    at_ms: now_ms,
                    reason,
                };
                WorkerChange::Died
            }
            (state, WorkerEvent::Heartbeat) => {
                self.last_heartbeat_ms = now_ms;
                if let Suspect { heartbeat, .. } = state {
                    *heartbeat = true;
                }
                self.clear_if_answered()
            }
            (Suspect { probed, .. }, WorkerEvent::ProbeAnswered) => {
                *probed = true;
                self.clear_if_answered()
            }
            (Alive, WorkerEvent::Drain) => {
                self.state = Draining;
                WorkerChange::Unchanged
            }
            (Alive, WorkerEvent::Unreachable { reason }) => {
                self.state = Suspect {
                    since_ms: now_ms,
                    reason,
                    probed: false,
                    heartbeat: false,
                };
                WorkerChange::Suspected
            }
            // A draining worker that cannot be reached has left.
            (Draining, WorkerEvent::Unreachable { reason }) => {
                self.state = Dead {
                    at_ms: now_ms,
                    reason,
                };
                WorkerChange::Died
            }
            (
                _,
                WorkerEvent::Drain | WorkerEvent::Unreachable { .. } | WorkerEvent::ProbeAnswered,
            ) => WorkerChange::Unchanged,
        }
    }

    /// A suspect worker that answered the probe and heartbeat is alive
    /// again.
    fn clear_if_answered(&mut self) -> WorkerChange {
        match self.state {
            WorkerState::Suspect {
                probed: true,
                heartbeat: true,
                ..
            } => {
                self.state = WorkerState::Alive;
                WorkerChange::Cleared
            }
            _ => WorkerChange::Unchanged,
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
        running: &[AttemptProgress],
        jobs_with_data: &[JobId],
        now_ms: u64,
    ) -> Vec<Action> {
        let Some(record) = self.workers.get_mut(&worker).filter(|w| w.is_alive()) else {
            return vec![Action::UnknownWorker { worker }];
        };
        let mut actions = Vec::new();
        if record.apply(WorkerEvent::Heartbeat, now_ms) == WorkerChange::Cleared {
            self.set_aside_outputs(worker, TaskEvent::OutputRestored, now_ms);
        }
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
            for task in &mut job.maps {
                let holds = match (&task.state, &task.suspended) {
                    (TaskState::Succeeded { output, .. }, _) => on_worker(output),
                    (_, Some(suspended)) => on_worker(&suspended.output),
                    (_, None) => false,
                };
                if holds {
                    task.apply(event.clone(), now_ms, max_attempts);
                }
            }
        }
    }

    pub(super) fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let timeout = self.config.worker_timeout_ms;
        let suspect_timeout = self.config.suspect_timeout_ms;
        let overdue: Vec<(WorkerId, String)> = self
            .workers
            .values()
            .filter_map(|w| match &w.state {
                _ if !w.is_alive() => None,
                _ if now_ms.saturating_sub(w.last_heartbeat_ms) > timeout => {
                    Some((w.id, format!("{} sent no heartbeat for {timeout} ms", w.id)))
                }
                WorkerState::Suspect {
                    since_ms, reason, ..
                } if now_ms.saturating_sub(*since_ms) > suspect_timeout => Some((
                    w.id,
                    format!(
                        "{} was suspect for {suspect_timeout} ms (--suspect-timeout) without answering: {reason}",
                        w.id
                    ),
                )),
                _ => None,
            })
            .collect();
        for (worker, reason) in overdue {
            actions.extend(self.declare_dead(worker, reason, now_ms));
        }
        actions.extend(self.probe_late_workers(now_ms));
        self.judge_speed(now_ms);
        actions.extend(self.fail_hung_attempts(now_ms));
        actions.extend(self.preempt_waiting_reducers(now_ms));
        actions.extend(self.fail_jobs_without_workers(now_ms));
        actions
    }

    /// Probes, once per silence, every alive or draining worker whose
    /// heartbeat is `late_heartbeat_ms` late: a process that died is found
    /// by its refused connection long before the worker timeout, whether
    /// or not a reducer was fetching from it.
    fn probe_late_workers(&mut self, now_ms: u64) -> Vec<Action> {
        let late = self.config.late_heartbeat_ms;
        let mut actions = Vec::new();
        for worker in self.workers.values_mut() {
            let silent = now_ms.saturating_sub(worker.last_heartbeat_ms) > late;
            let probed = worker.late_probe_for_ms == Some(worker.last_heartbeat_ms);
            if matches!(worker.state, WorkerState::Alive | WorkerState::Draining)
                && silent
                && !probed
            {
                worker.late_probe_for_ms = Some(worker.last_heartbeat_ms);
                actions.push(Action::ProbeWorker {
                    worker: worker.id,
                    address: worker.shuffle_address.clone(),
                });
            }
        }
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
            .filter(|a| a.state == AttemptState::Running && a.waiting_since_ms.is_none())
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
                kind: FailureKind::Job,
                counters: Default::default(),
            };
            actions.extend(self.apply_to_task(attempt, event, now_ms));
        }
        actions
    }

    /// Marks the workers whose attempts run far slower than their peers'
    /// as slow, and clears those that caught up (or whose slow attempts
    /// aged out of the window: they are tried again).
    fn judge_speed(&mut self, now_ms: u64) {
        let live: Vec<WorkerId> = self
            .workers
            .values()
            .filter(|w| w.state == WorkerState::Alive)
            .map(|w| w.id)
            .collect();
        let mut slow = super::speed::slow_workers(self.jobs.values(), &live, now_ms);
        for worker in self.workers.values_mut() {
            worker.slow = slow.remove(&worker.id);
        }
    }

    /// Reduce attempts waiting for map output hold slots the maps they wait
    /// for need, and those maps are the job's critical path: while a job
    /// has map tasks ready to run and no worker that takes tasks has a free
    /// slot, it gives up one waiting reducer per such map (those that
    /// fetched least first), counted against nothing; they run again once
    /// the maps are done and fetch what they had anew, which costs less
    /// than re-running the maps on a fraction of the slots. The worker
    /// stops them at its next heartbeat or wait.
    pub(super) fn preempt_waiting_reducers(&mut self, now_ms: u64) -> Vec<Action> {
        let takers: Vec<(WorkerId, u32)> = self
            .workers()
            .filter(|w| w.takes_tasks())
            .map(|w| (w.id, w.slots))
            .collect();
        if takers
            .iter()
            .any(|&(w, slots)| self.running_on(w) < slots as usize)
        {
            return Vec::new();
        }
        let mut preempt = Vec::new();
        for job in self.jobs.values().filter(|j| j.state == JobState::Running) {
            let ready = job.maps.iter().filter(|t| t.is_runnable(now_ms)).count();
            if ready == 0 {
                continue;
            }
            let mut waiting: Vec<&Attempt> = job
                .reduces
                .iter()
                .flat_map(|t| &t.attempts)
                .filter(|a| {
                    a.state == AttemptState::Running
                        && a.waiting_since_ms.is_some()
                        && takers.iter().any(|&(w, _)| w == a.worker)
                })
                .collect();
            waiting.sort_by_key(|a| (a.progress_bytes, a.id));
            preempt.extend(waiting.into_iter().take(ready).map(|a| a.id));
        }
        let mut actions = Vec::new();
        for attempt in preempt {
            let event = TaskEvent::Lost {
                attempt,
                reason: "killed while waiting for map output, to make room for it".to_string(),
                cause: LostCause::Preempted,
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
