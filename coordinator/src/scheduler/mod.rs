//! The scheduler: a synchronous state machine with no I/O and no clock of
//! its own. The gRPC layer turns requests into [`Event`]s, calls
//! [`Scheduler::handle`] with the current time, and carries out the
//! returned [`Action`]s. Only the scheduler decides placement.

mod attempt;
mod attempts;
mod events;
mod fetch;
pub mod index;
pub mod input_check;
mod invariants;
pub mod job;
mod lifecycle;
mod placement;
mod restore;
pub mod speed;
pub mod tally;
pub mod task;
#[cfg(test)]
pub(crate) mod tests;
mod tick;
mod workers;

use std::collections::{BTreeMap, BTreeSet};

use harrow_core::ids::{AttemptId, JobId, Phase, TaskId, WorkerId};
use harrow_core::task::{Assignment, MapOutput, TaskSpec};

use crate::limits::{LATE_HEARTBEATS, SUSPECT_HEARTBEATS};
pub use attempt::{Attempt, AttemptState, LostCause};
pub use events::{Action, Event};
pub use fetch::FetchReport;
use fetch::FetchVerdict;
pub use job::{FetchFailureRecord, Job, JobEvent, JobPlan, JobState};
pub use lifecycle::{AttemptProgress, UnreachableReport, Worker, WorkerState};
pub use restore::ResumedJob;
pub use tally::Tally;
pub use task::{Task, TaskChange, TaskEvent, TaskInput, TaskOutput, TaskState};

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

#[derive(Debug, Default)]
pub struct Scheduler {
    config: SchedulerConfig,
    jobs: BTreeMap<JobId, Job>,
    workers: BTreeMap<WorkerId, Worker>,
    next_job: u64,
    next_worker: u64,
    /// Since when no worker has been alive, if none is.
    no_workers_since_ms: Option<u64>,
    /// Attempts restored as running, per worker, until the worker's first
    /// heartbeat says which still run.
    unconfirmed: BTreeMap<WorkerId, Vec<AttemptId>>,
    /// What the jobs it let go of did.
    retired: Tally,
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

    /// The job a submission with this request id made, if it holds one.
    pub fn job_submitted_as(&self, request_id: &str) -> Option<JobId> {
        self.jobs
            .values()
            .find(|j| j.plan.request_id.as_deref() == Some(request_id))
            .map(|j| j.id)
    }

    /// Hands out job and worker ids after these: a restarted coordinator
    /// never reuses an id.
    pub fn start_ids_after(&mut self, jobs: u64, workers: u64) {
        self.next_job = self.next_job.max(jobs);
        self.next_worker = self.next_worker.max(workers);
    }

    /// The id the next submitted job gets.
    pub fn next_job_id(&self) -> JobId {
        JobId(self.next_job + 1)
    }

    /// The id the next registered worker gets.
    pub fn next_worker_id(&self) -> WorkerId {
        WorkerId(self.next_worker + 1)
    }

    pub fn jobs(&self) -> impl DoubleEndedIterator<Item = &Job> {
        self.jobs.values()
    }

    /// The tasks of each job changed since the last call (see
    /// [`Job::changed`]).
    pub fn take_changed(&mut self) -> BTreeMap<JobId, BTreeSet<TaskId>> {
        self.jobs
            .values_mut()
            .filter(|job| !job.changed.is_empty())
            .map(|job| (job.id, job.take_changed()))
            .collect()
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
            .map(|job| job.index.running_on(worker) as usize)
            .sum()
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
                incarnation,
            } => self.register(shuffle_address, slots, incarnation, now_ms),
            Event::Heartbeat {
                worker,
                incarnation,
                running,
                jobs_with_data,
            } => self.heartbeat(worker, incarnation, &running, &jobs_with_data, now_ms),
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
        // A retry of a submission already accepted.
        if let Some(id) = &plan.request_id
            && let Some(job) = self.job_submitted_as(id)
        {
            return vec![Action::JobAccepted { job }];
        }
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
    /// attempts and stragglers. Reduce tasks start once every map task has
    /// succeeded, and again, to fetch what live workers hold, while some
    /// map tasks run again but none waits for a slot.
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
        let job_ids: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| matches!(j.state, JobState::Queued | JobState::Running))
            .map(|j| j.id)
            .collect();
        for backups in [false, true] {
            let cap = if backups {
                let share = self.live_slots() as f64 * crate::limits::SPECULATIVE_SHARE;
                (share as usize).max(crate::limits::MIN_SPECULATIVE)
            } else {
                0
            };
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
                if backups {
                    let job = self.jobs.get_mut(&job_id).expect("job exists");
                    job.refresh_late_stats(phase, now_ms);
                }
                let job = &self.jobs[&job_id];
                let candidates = if backups {
                    placement::backup_candidates(job, phase, worker, now_ms, &self.config, cap)
                        .into_iter()
                        .map(|index| (phase, index))
                        .collect()
                } else {
                    placement::pending_in_order(job, now_ms, free)
                };
                for (phase, index) in candidates.into_iter().take(free) {
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

    /// The running jobs that no longer give `worker` their tasks (see
    /// `excluded`).
    pub fn excluded_from(&self, worker: WorkerId) -> Vec<JobId> {
        self.jobs
            .values()
            .filter(|job| !job.state.is_terminal() && self.excluded(job, worker))
            .map(|job| job.id)
            .collect()
    }

    /// Whether the job's tasks failed too often on this worker (by their
    /// own or the worker's fault; passing failures do not count), while
    /// other live workers could run them.
    fn excluded(&self, job: &Job, worker: WorkerId) -> bool {
        let failures_on = |w: WorkerId| job.index.failures_on(w);
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
        let id = TaskId {
            job: job_id,
            phase,
            index: index as u32,
        };
        let Some(TaskChange::Started { attempt }) =
            job.apply_to_task(id, TaskEvent::Assigned { worker }, now_ms, max_attempts)
        else {
            unreachable!("a pending or running task takes an attempt")
        };
        let task = job.task(id).expect("the task exists");
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

    /// Where each map task's segment of `partition` is; `None` while the
    /// map task runs again.
    fn map_outputs(&self, job: JobId, partition: u32) -> Vec<Option<MapOutput>> {
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
                } => Some(MapOutput {
                    map_attempt: *attempt,
                    shuffle_address: self.workers[worker].shuffle_address.clone(),
                    segment: segments[partition as usize],
                }),
                _ => None,
            })
            .collect()
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
        for phase in [Phase::Map, Phase::Reduce] {
            job.apply_to_each(phase, |_| true, &TaskEvent::Cancelled, now_ms, max_attempts);
        }
        vec![
            Action::AbortJobOutput {
                job: id,
                output: job.plan.output.clone(),
                storage: job.plan.spec.storage.clone(),
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
                storage: job.plan.spec.storage.clone(),
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
