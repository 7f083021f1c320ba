//! The scheduler: a synchronous state machine with no I/O and no clock of
//! its own. The gRPC layer turns requests into [`Event`]s, calls
//! [`Scheduler::handle`] with the current time, and carries out the
//! returned [`Action`]s. Only the scheduler decides placement.

#[cfg(test)]
mod correlated_tests;
#[cfg(test)]
mod fault_tests;
mod fetch;
pub mod input_check;
mod invariants;
pub mod job;
mod placement;
pub mod speed;
#[cfg(test)]
mod speed_tests;
#[cfg(test)]
mod suspect_tests;
pub mod task;
#[cfg(test)]
mod tests;
mod workers;

use std::collections::BTreeMap;

use harrow_core::ids::{AttemptId, JobId, Phase, WorkerId};
use harrow_core::rpc::health::ProbeFailure;
use harrow_core::task::{
    Assignment, AttemptCounters, AttemptOutcome, FailureKind, MapOutput, TaskSpec,
};

use crate::limits::{LATE_HEARTBEATS, SUSPECT_HEARTBEATS};
pub use fetch::FetchReport;
use fetch::FetchVerdict;
pub use job::{FetchFailureRecord, Job, JobEvent, JobPlan, JobState};
pub use task::{
    Attempt, AttemptState, LostCause, Task, TaskChange, TaskEvent, TaskInput, TaskOutput, TaskState,
};
pub use workers::{AttemptProgress, UnreachableReport, Worker, WorkerState};

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Failed attempts after which a task, and its job, fail.
    pub max_attempts: u32,
    /// A worker silent this long is dead.
    pub worker_timeout_ms: u64,
    /// A job with work to do and no live worker this long fails.
    pub no_worker_timeout_ms: u64,
    /// An attempt without progress this long gets a backup elsewhere.
    pub stall_timeout_ms: u64,
    /// Failed attempts of one job on one worker after which the worker gets
    /// no more of that job's tasks.
    pub exclude_after_failures: u32,
    /// Fetch failures of one map output (one attempt's) after which its
    /// job fails: it keeps failing while its worker stays alive.
    pub max_fetch_failures: u32,
    /// A suspect worker that does not answer a probe and heartbeat within
    /// this long is dead.
    pub suspect_timeout_ms: u64,
    /// A worker whose heartbeat is this late has its shuffle service
    /// probed: if the connection is refused, it is dead without waiting
    /// out the worker timeout.
    pub late_heartbeat_ms: u64,
}

impl SchedulerConfig {
    /// The defaults for workers that heartbeat every `interval_ms`.
    pub fn for_heartbeat_interval(interval_ms: u64) -> SchedulerConfig {
        SchedulerConfig {
            suspect_timeout_ms: SUSPECT_HEARTBEATS * interval_ms,
            late_heartbeat_ms: LATE_HEARTBEATS * interval_ms,
            ..SchedulerConfig::default()
        }
    }
}

impl SchedulerConfig {
    /// The defaults, which `harrow coordinator --help` shows.
    pub const DEFAULT: SchedulerConfig = SchedulerConfig {
        max_attempts: 4,
        worker_timeout_ms: 10_000,
        no_worker_timeout_ms: 300_000,
        stall_timeout_ms: 60_000,
        exclude_after_failures: 3,
        max_fetch_failures: 4,
        suspect_timeout_ms: 3_000,
        late_heartbeat_ms: 2_000,
    };
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig::DEFAULT
    }
}

#[derive(Debug, Clone)]
pub enum Event {
    SubmitJob {
        plan: JobPlan,
    },
    CancelJob {
        job: JobId,
    },
    RegisterWorker {
        shuffle_address: String,
        slots: u32,
    },
    Heartbeat {
        worker: WorkerId,
        running: Vec<AttemptProgress>,
        jobs_with_data: Vec<JobId>,
    },
    /// The worker is shutting down (SIGTERM): no new tasks for it.
    WorkerDraining {
        worker: WorkerId,
    },
    /// The worker has shut down.
    WorkerLeft {
        worker: WorkerId,
    },
    RequestTasks {
        worker: WorkerId,
        free_slots: u32,
    },
    RequestCommit {
        worker: WorkerId,
        attempt: AttemptId,
    },
    AttemptEnded {
        worker: WorkerId,
        attempt: AttemptId,
        counters: AttemptCounters,
        outcome: AttemptOutcome,
    },
    /// A running reduce attempt could not fetch a map output; it keeps
    /// what it fetched and waits for new locations, unless told to stop.
    FetchFailed(FetchReport),
    /// A waiting reduce attempt asks where its map outputs are now.
    WaitMapOutputs {
        worker: WorkerId,
        attempt: AttemptId,
    },
    /// A [`Action::ProbeWorker`] ended: the worker's shuffle service
    /// answered a health check, or why not.
    ProbeEnded {
        worker: WorkerId,
        result: Result<(), ProbeFailure>,
    },
    /// The I/O of a [`Action::CommitJob`] finished.
    JobCommitEnded {
        job: JobId,
        error: Option<String>,
    },
    /// Time passed: detect dead workers and jobs without workers.
    Tick,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    JobAccepted {
        job: JobId,
    },
    JobRejected {
        reason: String,
    },
    WorkerRegistered {
        worker: WorkerId,
    },
    /// The worker is not registered (the coordinator restarted): it must register again.
    UnknownWorker {
        worker: WorkerId,
    },
    Assign {
        worker: WorkerId,
        assignment: Box<Assignment>,
    },
    CommitGranted {
        attempt: AttemptId,
    },
    CommitRefused {
        attempt: AttemptId,
        reason: String,
    },
    /// The reduce attempt should wait for its map outputs' new locations.
    WaitForMapOutputs {
        attempt: AttemptId,
    },
    /// Every map task succeeded again: where each output is, in order.
    MapOutputs {
        attempt: AttemptId,
        outputs: Vec<MapOutput>,
    },
    /// The attempt must end now (it no longer runs, or its worker is to
    /// blame for its fetch failures).
    StopAttempt {
        attempt: AttemptId,
        reason: String,
    },
    /// Attempts the worker runs that must stop.
    KillAttempts {
        worker: WorkerId,
        attempts: Vec<AttemptId>,
    },
    /// Jobs whose map output the worker may delete.
    ReleaseJobs {
        worker: WorkerId,
        jobs: Vec<JobId>,
    },
    /// A draining worker runs nothing and holds no map output an unfinished
    /// reducer needs: it may exit.
    MayExit {
        worker: WorkerId,
    },
    /// The worker is suspect, or late with its heartbeat: check its
    /// shuffle service (gRPC health) at `address`, then send
    /// [`Event::ProbeEnded`].
    ProbeWorker {
        worker: WorkerId,
        address: String,
    },
    /// Every reduce committed: write `_SUCCESS`, clear `_temporary`, then
    /// send [`Event::JobCommitEnded`].
    CommitJob {
        job: JobId,
        output: String,
    },
    /// The job ended without success: clear its `_temporary`.
    AbortJobOutput {
        job: JobId,
        output: String,
    },
    JobFinished {
        job: JobId,
        state: JobState,
    },
}

#[derive(Debug, Default)]
pub struct Scheduler {
    config: SchedulerConfig,
    jobs: BTreeMap<JobId, Job>,
    workers: BTreeMap<WorkerId, Worker>,
    next_job: u64,
    next_worker: u64,
    /// Since when no worker has been alive, if none is.
    no_workers_since_ms: Option<u64>,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Self {
        Scheduler {
            config,
            ..Scheduler::default()
        }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    pub fn jobs(&self) -> impl DoubleEndedIterator<Item = &Job> {
        self.jobs.values()
    }

    pub fn job(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id)
    }

    /// The task slots of the workers alive now.
    pub fn live_slots(&self) -> u64 {
        self.workers()
            .filter(|w| w.state == WorkerState::Alive)
            .map(|w| u64::from(w.slots))
            .sum()
    }

    pub fn workers(&self) -> impl Iterator<Item = &Worker> {
        self.workers.values()
    }

    /// Attempts running on `worker`, over all jobs.
    pub fn running_on(&self, worker: WorkerId) -> usize {
        self.jobs
            .values()
            .flat_map(Job::tasks)
            .flat_map(|t| &t.attempts)
            .filter(|a| a.worker == worker && a.state == AttemptState::Running)
            .count()
    }

    pub fn handle(&mut self, event: Event, now_ms: u64) -> Vec<Action> {
        let actions = self.apply_event(event, now_ms);
        if cfg!(debug_assertions) {
            self.check_invariants();
        }
        actions
    }

    fn apply_event(&mut self, event: Event, now_ms: u64) -> Vec<Action> {
        match event {
            Event::SubmitJob { plan } => self.submit(plan, now_ms),
            Event::CancelJob { job } => self.cancel(job, now_ms),
            Event::RegisterWorker {
                shuffle_address,
                slots,
            } => self.register(shuffle_address, slots, now_ms),
            Event::Heartbeat {
                worker,
                running,
                jobs_with_data,
            } => self.heartbeat(worker, &running, &jobs_with_data, now_ms),
            Event::WorkerDraining { worker } => self.drain(worker),
            Event::WorkerLeft { worker } => {
                match self.workers.get(&worker).filter(|w| w.is_alive()) {
                    Some(_) => {
                        self.declare_dead(worker, format!("{worker} left the cluster"), now_ms)
                    }
                    None => Vec::new(),
                }
            }
            Event::RequestTasks { worker, free_slots } => self.assign(worker, free_slots, now_ms),
            Event::RequestCommit { worker, attempt } => {
                self.request_commit(worker, attempt, now_ms)
            }
            Event::AttemptEnded {
                worker,
                attempt,
                counters,
                outcome,
            } => self.attempt_ended(worker, attempt, counters, outcome, now_ms),
            Event::FetchFailed(report) => self.fetch_failed_while_running(report, now_ms),
            Event::WaitMapOutputs { worker, attempt } => {
                self.wait_map_outputs(worker, attempt, now_ms)
            }
            Event::ProbeEnded { worker, result } => self.probe_ended(worker, result, now_ms),
            Event::JobCommitEnded { job, error } => self.job_commit_ended(job, error, now_ms),
            Event::Tick => self.tick(now_ms),
        }
    }

    fn submit(&mut self, plan: JobPlan, now_ms: u64) -> Vec<Action> {
        if let Some(other) = self
            .jobs
            .values()
            .find(|j| !j.state.is_terminal() && j.plan.output == plan.output)
        {
            return vec![Action::JobRejected {
                reason: format!("output {} is being written by {}", plan.output, other.id),
            }];
        }
        assert!(
            plan.spec.reducers > 0,
            "the planner guarantees at least one reducer"
        );
        self.next_job += 1;
        let id = JobId(self.next_job);
        self.jobs.insert(id, Job::new(id, plan, now_ms));
        vec![Action::JobAccepted { job: id }]
    }

    fn is_running_on(&self, attempt: AttemptId, worker: WorkerId) -> bool {
        self.jobs
            .get(&attempt.task.job)
            .and_then(|job| job.task(attempt.task))
            .and_then(|task| task.attempt(attempt))
            .is_some_and(|a| a.worker == worker && a.state == AttemptState::Running)
    }

    /// Hands work to the worker's free slots: jobs in submission order, a
    /// job's map tasks before its reduce tasks; then backups for stalled
    /// attempts and stragglers.
    fn assign(&mut self, worker: WorkerId, free_slots: u32, now_ms: u64) -> Vec<Action> {
        match self.workers.get(&worker) {
            Some(record) if !record.is_alive() => return vec![Action::UnknownWorker { worker }],
            None => return vec![Action::UnknownWorker { worker }],
            // Suspect, draining or slow: nothing new.
            Some(record) if !record.takes_tasks() => return Vec::new(),
            Some(_) => {}
        }
        let mut free = free_slots as usize;
        let mut actions = Vec::new();
        let cap = (self.live_slots() as f64 * crate::limits::SPECULATIVE_SHARE) as usize;
        let cap = cap.max(crate::limits::MIN_SPECULATIVE);
        let job_ids: Vec<JobId> = self.jobs.keys().copied().collect();
        for backups in [false, true] {
            for &job_id in &job_ids {
                if free == 0 {
                    return actions;
                }
                let job = &self.jobs[&job_id];
                if !matches!(job.state, JobState::Queued | JobState::Running)
                    || self.excluded(job, worker)
                {
                    continue;
                }
                let phase = if job.maps_done() {
                    Phase::Reduce
                } else {
                    Phase::Map
                };
                let candidates = if backups {
                    placement::backup_candidates(job, phase, worker, now_ms, &self.config, cap)
                } else {
                    placement::pending(job, phase, now_ms)
                };
                for index in candidates.into_iter().take(free) {
                    let assignment = self.start_attempt(job_id, phase, index, worker, now_ms);
                    actions.push(Action::Assign {
                        worker,
                        assignment: Box::new(assignment),
                    });
                    free -= 1;
                }
            }
        }
        actions
    }

    /// Whether the job's tasks failed too often on this worker (by their
    /// own or the worker's fault; passing failures do not count), while
    /// other live workers could run them.
    fn excluded(&self, job: &Job, worker: WorkerId) -> bool {
        let failures_on = |w: WorkerId| {
            job.tasks()
                .flat_map(|t| &t.attempts)
                .filter(|a| {
                    a.worker == w
                        && matches!(
                            a.state,
                            AttemptState::Failed {
                                kind: FailureKind::Job | FailureKind::Worker,
                                ..
                            }
                        )
                })
                .count() as u32
        };
        let limit = self.config.exclude_after_failures;
        failures_on(worker) >= limit
            && self
                .workers
                .values()
                .any(|w| w.is_alive() && w.id != worker && failures_on(w.id) < limit)
    }

    fn start_attempt(
        &mut self,
        job_id: JobId,
        phase: Phase,
        index: usize,
        worker: WorkerId,
        now_ms: u64,
    ) -> Assignment {
        let map_outputs = if phase == Phase::Reduce {
            self.map_outputs(job_id, index as u32)
        } else {
            Vec::new()
        };
        let max_attempts = self.config.max_attempts;
        let job = self.jobs.get_mut(&job_id).expect("job exists");
        job.apply(JobEvent::Started, now_ms);
        let task = match phase {
            Phase::Map => &mut job.maps[index],
            Phase::Reduce => &mut job.reduces[index],
        };
        let TaskChange::Started { attempt } =
            task.apply(TaskEvent::Assigned { worker }, now_ms, max_attempts)
        else {
            unreachable!("a pending or running task takes an attempt")
        };
        let spec = match &task.input {
            TaskInput::Split(split) => TaskSpec::Map {
                split: split.clone(),
                job_maps: job.maps.len() as u32,
            },
            TaskInput::Partition(partition) => TaskSpec::Reduce {
                partition: *partition,
                output: job.plan.output.clone(),
                map_outputs,
            },
        };
        Assignment {
            attempt,
            task: spec,
            job: job.plan.spec.clone(),
        }
    }

    /// Where each map task's segment of `partition` is.
    fn map_outputs(&self, job: JobId, partition: u32) -> Vec<MapOutput> {
        self.jobs[&job]
            .maps
            .iter()
            .map(|task| match &task.state {
                TaskState::Succeeded {
                    attempt,
                    output:
                        TaskOutput::Map {
                            worker, segments, ..
                        },
                } => MapOutput {
                    map_attempt: *attempt,
                    shuffle_address: self.workers[worker].shuffle_address.clone(),
                    segment: segments[partition as usize],
                },
                other => {
                    unreachable!("reduces start only after every map succeeded, found {other:?}")
                }
            })
            .collect()
    }

    /// Grants the commit to the first running attempt of a reduce task that asks.
    fn request_commit(&mut self, worker: WorkerId, attempt: AttemptId, now_ms: u64) -> Vec<Action> {
        let refuse = |reason: &str| {
            vec![Action::CommitRefused {
                attempt,
                reason: reason.to_string(),
            }]
        };
        if !self.is_running_on(attempt, worker) || !self.alive(worker) {
            return refuse(
                "the attempt is not running on this worker (killed, superseded, its worker was declared dead, or its job ended)",
            );
        }
        let job = self
            .jobs
            .get_mut(&attempt.task.job)
            .expect("running attempt has a job");
        if job.state != JobState::Running {
            return refuse("the job is not running");
        }
        let task = job
            .task_mut(attempt.task)
            .expect("running attempt has a task");
        match task.committer {
            None if attempt.task.phase == Phase::Reduce => {
                task.committer = Some(attempt);
                vec![Action::CommitGranted { attempt }]
            }
            None => refuse("map attempts do not commit"),
            Some(holder) if holder == attempt => vec![Action::CommitGranted { attempt }],
            Some(holder) => {
                // The losing backup: it ends here, through no fault of its
                // own, and its coming failure report is fenced.
                let reason = format!("{holder} holds the commit");
                let refused = refuse(&reason);
                let cause = LostCause::CommitHeldElsewhere;
                task.apply(
                    TaskEvent::Lost {
                        attempt,
                        reason,
                        cause,
                    },
                    now_ms,
                    self.config.max_attempts,
                );
                refused
            }
        }
    }

    fn attempt_ended(
        &mut self,
        worker: WorkerId,
        attempt: AttemptId,
        counters: AttemptCounters,
        outcome: AttemptOutcome,
        now_ms: u64,
    ) -> Vec<Action> {
        // Fencing: only a running attempt on the live worker it was given
        // to may change anything.
        if !self.is_running_on(attempt, worker) || !self.alive(worker) {
            return Vec::new();
        }
        let mut actions = Vec::new();
        let event = match outcome {
            AttemptOutcome::FetchFailed {
                map_attempt,
                message,
                cause,
            } => {
                let fetch = FetchReport {
                    reducer: worker,
                    attempt,
                    map_attempt,
                    message,
                    cause,
                };
                let attempt = fetch.attempt;
                let reason = format!(
                    "could not fetch the output of {}: {}",
                    fetch.map_attempt, fetch.message
                );
                let (verdict, effects) = self.note_fetch_failure(fetch, now_ms);
                actions.extend(effects);
                match verdict {
                    FetchVerdict::Wait => TaskEvent::Lost {
                        attempt,
                        reason,
                        cause: LostCause::Fetch,
                    },
                    FetchVerdict::Blamed(error) => TaskEvent::Failed {
                        attempt,
                        error,
                        kind: FailureKind::Worker,
                        counters: AttemptCounters::default(),
                    },
                }
            }
            AttemptOutcome::HandedBack { message } => TaskEvent::Lost {
                attempt,
                reason: format!("handed back by its worker: {message}"),
                cause: LostCause::HandedBack,
            },
            outcome => self.outcome_event(attempt, worker, counters, outcome),
        };
        actions.extend(self.apply_to_task(attempt, event, now_ms));
        actions
    }

    /// The task event of a map or reduce attempt's own outcome.
    fn outcome_event(
        &self,
        attempt: AttemptId,
        worker: WorkerId,
        counters: AttemptCounters,
        outcome: AttemptOutcome,
    ) -> TaskEvent {
        let job = &self.jobs[&attempt.task.job];
        let task = job.task(attempt.task).expect("running attempt has a task");
        let error = match (outcome, attempt.task.phase) {
            (AttemptOutcome::Succeeded { segments, input }, Phase::Map)
                if segments.len() == job.plan.spec.reducers as usize =>
            {
                return TaskEvent::Succeeded {
                    attempt,
                    output: TaskOutput::Map {
                        worker,
                        segments,
                        input,
                    },
                    counters,
                };
            }
            (AttemptOutcome::Succeeded { segments, .. }, Phase::Map) => format!(
                "reported {} segments for {} partitions",
                segments.len(),
                job.plan.spec.reducers
            ),
            (AttemptOutcome::Succeeded { .. }, Phase::Reduce)
                if task.committer == Some(attempt) =>
            {
                return TaskEvent::Succeeded {
                    attempt,
                    output: TaskOutput::Reduce,
                    counters,
                };
            }
            (AttemptOutcome::Succeeded { .. }, Phase::Reduce) => {
                "reported success without holding the commit".to_string()
            }
            (AttemptOutcome::Failed { message, kind }, _) => {
                return TaskEvent::Failed {
                    attempt,
                    error: message,
                    kind,
                    counters,
                };
            }
            (AttemptOutcome::FetchFailed { .. } | AttemptOutcome::HandedBack { .. }, _) => {
                unreachable!("handled by the caller")
            }
        };
        TaskEvent::Failed {
            attempt,
            error,
            kind: FailureKind::Job,
            counters,
        }
    }

    /// Applies a task event and what follows from it for the job.
    fn apply_to_task(&mut self, attempt: AttemptId, event: TaskEvent, now_ms: u64) -> Vec<Action> {
        let max_attempts = self.config.max_attempts;
        let job = self
            .jobs
            .get_mut(&attempt.task.job)
            .expect("attempt has a job");
        let task = job.task_mut(attempt.task).expect("attempt has a task");
        let change = task.apply(event, now_ms, max_attempts);
        let description = format!(
            "{} task {} ({}) failed after {} attempts",
            phase_name(attempt.task.phase),
            attempt.task,
            task.input,
            task.attempts.len()
        );
        match change {
            TaskChange::Succeeded { .. }
                if attempt.task.phase == Phase::Reduce && job.reduces_done() =>
            {
                job.apply(JobEvent::AllReducesCommitted, now_ms);
                vec![Action::CommitJob {
                    job: job.id,
                    output: job.plan.output.clone(),
                }]
            }
            TaskChange::Failed { error } => {
                let error = format!("{description}; last error: {error}");
                self.end_job(attempt.task.job, JobEvent::TaskFailed { error }, now_ms)
            }
            TaskChange::Succeeded { .. } if attempt.task.phase == Phase::Map => {
                match input_check::check(job, attempt.task) {
                    Some(error) => {
                        self.end_job(attempt.task.job, JobEvent::TaskFailed { error }, now_ms)
                    }
                    None => Vec::new(),
                }
            }
            TaskChange::Succeeded { .. }
            | TaskChange::AttemptEnded
            | TaskChange::Retrying
            | TaskChange::Ignored => Vec::new(),
            TaskChange::Started { .. } | TaskChange::Cancelled => {
                unreachable!("an attempt's end neither starts nor cancels a task")
            }
        }
    }

    fn cancel(&mut self, job: JobId, now_ms: u64) -> Vec<Action> {
        if !self.jobs.contains_key(&job) {
            return Vec::new();
        }
        self.end_job(job, JobEvent::Cancel, now_ms)
    }

    /// Fails or cancels a job: its unfinished tasks are cancelled (their
    /// workers learn it from their next heartbeat) and its temporary output
    /// is cleared.
    fn end_job(&mut self, id: JobId, event: JobEvent, now_ms: u64) -> Vec<Action> {
        let max_attempts = self.config.max_attempts;
        let job = self.jobs.get_mut(&id).expect("job exists");
        if !job.apply(event, now_ms) {
            return Vec::new();
        }
        for task in job.maps.iter_mut().chain(job.reduces.iter_mut()) {
            task.apply(TaskEvent::Cancelled, now_ms, max_attempts);
        }
        vec![
            Action::AbortJobOutput {
                job: id,
                output: job.plan.output.clone(),
            },
            Action::JobFinished {
                job: id,
                state: job.state.clone(),
            },
        ]
    }

    fn job_commit_ended(&mut self, id: JobId, error: Option<String>, now_ms: u64) -> Vec<Action> {
        let Some(job) = self.jobs.get_mut(&id) else {
            return Vec::new();
        };
        let failed = error.is_some();
        if !job.apply(JobEvent::CommitEnded { error }, now_ms) {
            return Vec::new();
        }
        let mut actions = Vec::new();
        if failed {
            actions.push(Action::AbortJobOutput {
                job: id,
                output: job.plan.output.clone(),
            });
        }
        actions.push(Action::JobFinished {
            job: id,
            state: job.state.clone(),
        });
        actions
    }
}

pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Map => "map",
        Phase::Reduce => "reduce",
    }
}
