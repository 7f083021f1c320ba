//! The scheduler: a synchronous state machine with no I/O and no clock of
//! its own. The gRPC layer turns requests into [`Event`]s, calls
//! [`Scheduler::handle`] with the current time, and carries out the
//! returned [`Action`]s. Only the scheduler decides placement.

pub mod job;
pub mod task;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use harrow_core::ids::{AttemptId, JobId, Phase, WorkerId};
use harrow_core::task::{Assignment, AttemptCounters, AttemptOutcome, MapOutput, TaskSpec};

pub use job::{Job, JobEvent, JobPlan, JobState};
pub use task::{
    Attempt, AttemptState, Task, TaskChange, TaskEvent, TaskInput, TaskOutput, TaskState,
};

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Failed attempts after which a task, and its job, fail.
    pub max_attempts: u32,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig { max_attempts: 4 }
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
        running: Vec<AttemptId>,
        jobs_with_data: Vec<JobId>,
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
    /// The I/O of a [`Action::CommitJob`] finished.
    JobCommitEnded {
        job: JobId,
        error: Option<String>,
    },
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
        assignment: Assignment,
    },
    CommitGranted {
        attempt: AttemptId,
    },
    CommitRefused {
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
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Self {
        Scheduler {
            config,
            ..Scheduler::default()
        }
    }

    pub fn jobs(&self) -> impl DoubleEndedIterator<Item = &Job> {
        self.jobs.values()
    }

    pub fn job(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id)
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
            Event::RequestTasks { worker, free_slots } => self.assign(worker, free_slots, now_ms),
            Event::RequestCommit { worker, attempt } => self.request_commit(worker, attempt),
            Event::AttemptEnded {
                worker,
                attempt,
                counters,
                outcome,
            } => self.attempt_ended(worker, attempt, counters, outcome, now_ms),
            Event::JobCommitEnded { job, error } => self.job_commit_ended(job, error, now_ms),
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
            plan.reducers > 0,
            "the planner guarantees at least one reducer"
        );
        self.next_job += 1;
        let id = JobId(self.next_job);
        self.jobs.insert(id, Job::new(id, plan, now_ms));
        vec![Action::JobAccepted { job: id }]
    }

    fn register(&mut self, shuffle_address: String, slots: u32, now_ms: u64) -> Vec<Action> {
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
            },
        );
        vec![Action::WorkerRegistered { worker: id }]
    }

    fn heartbeat(
        &mut self,
        worker: WorkerId,
        running: &[AttemptId],
        jobs_with_data: &[JobId],
        now_ms: u64,
    ) -> Vec<Action> {
        let Some(record) = self.workers.get_mut(&worker) else {
            return vec![Action::UnknownWorker { worker }];
        };
        record.last_heartbeat_ms = now_ms;
        let kill: Vec<AttemptId> = running
            .iter()
            .filter(|attempt| !self.is_running_on(**attempt, worker))
            .copied()
            .collect();
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
        actions
    }

    fn is_running_on(&self, attempt: AttemptId, worker: WorkerId) -> bool {
        self.jobs
            .get(&attempt.task.job)
            .and_then(|job| job.task(attempt.task))
            .and_then(|task| task.attempt(attempt))
            .is_some_and(|a| a.worker == worker && a.state == AttemptState::Running)
    }

    /// Hands pending tasks to the worker's free slots: jobs in submission
    /// order, a job's map tasks before its reduce tasks.
    fn assign(&mut self, worker: WorkerId, free_slots: u32, now_ms: u64) -> Vec<Action> {
        if !self.workers.contains_key(&worker) {
            return vec![Action::UnknownWorker { worker }];
        }
        let mut actions = Vec::new();
        let mut free = free_slots as usize;
        let max_attempts = self.config.max_attempts;
        let job_ids: Vec<JobId> = self.jobs.keys().copied().collect();
        for job_id in job_ids {
            if free == 0 {
                break;
            }
            let job = &self.jobs[&job_id];
            if !matches!(job.state, JobState::Queued | JobState::Running) {
                continue;
            }
            let phase = if job.maps_done() {
                Phase::Reduce
            } else {
                Phase::Map
            };
            let pending: Vec<usize> = match phase {
                Phase::Map => &job.maps,
                Phase::Reduce => &job.reduces,
            }
            .iter()
            .enumerate()
            .filter(|(_, t)| t.state == TaskState::Pending)
            .map(|(i, _)| i)
            .take(free)
            .collect();
            for index in pending {
                let assignment =
                    self.start_attempt(job_id, phase, index, worker, now_ms, max_attempts);
                actions.push(Action::Assign { worker, assignment });
                free -= 1;
            }
        }
        actions
    }

    fn start_attempt(
        &mut self,
        job_id: JobId,
        phase: Phase,
        index: usize,
        worker: WorkerId,
        now_ms: u64,
        max_attempts: u32,
    ) -> Assignment {
        let map_outputs = if phase == Phase::Reduce {
            self.map_outputs(job_id, index as u32)
        } else {
            Vec::new()
        };
        let job = self.jobs.get_mut(&job_id).expect("job exists");
        job.apply(JobEvent::Started, now_ms);
        let task = match phase {
            Phase::Map => &mut job.maps[index],
            Phase::Reduce => &mut job.reduces[index],
        };
        let TaskChange::Started { attempt } =
            task.apply(TaskEvent::Assigned { worker }, now_ms, max_attempts)
        else {
            unreachable!("a pending task starts when assigned")
        };
        let spec = match &task.input {
            TaskInput::Split(split) => TaskSpec::Map {
                split: split.clone(),
            },
            TaskInput::Partition(partition) => TaskSpec::Reduce {
                partition: *partition,
                output: job.plan.output.clone(),
                map_outputs,
            },
        };
        Assignment {
            attempt,
            job_name: job.plan.name.clone(),
            args: job.plan.args.clone(),
            reducers: job.plan.reducers,
            task: spec,
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
                    output: TaskOutput::Map { worker, segments },
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
    fn request_commit(&mut self, worker: WorkerId, attempt: AttemptId) -> Vec<Action> {
        let refuse = |reason: &str| {
            vec![Action::CommitRefused {
                attempt,
                reason: reason.to_string(),
            }]
        };
        if !self.is_running_on(attempt, worker) {
            return refuse(
                "the attempt is not running on this worker (killed, superseded or its job ended)",
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
            Some(_) => refuse("another attempt of this task holds the commit"),
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
        // Fencing: only the running attempt on the worker it was given to
        // may change anything.
        if !self.is_running_on(attempt, worker) {
            return Vec::new();
        }
        let max_attempts = self.config.max_attempts;
        let job = self
            .jobs
            .get_mut(&attempt.task.job)
            .expect("running attempt has a job");
        let reducers = job.plan.reducers;
        let task = job
            .task_mut(attempt.task)
            .expect("running attempt has a task");
        let event = match (outcome, attempt.task.phase) {
            (AttemptOutcome::Succeeded { segments }, Phase::Map)
                if segments.len() == reducers as usize =>
            {
                TaskEvent::Succeeded {
                    attempt,
                    output: TaskOutput::Map { worker, segments },
                    counters,
                }
            }
            (AttemptOutcome::Succeeded { segments }, Phase::Map) => TaskEvent::Failed {
                attempt,
                error: format!(
                    "reported {} segments for {} partitions",
                    segments.len(),
                    reducers
                ),
                counters,
            },
            (AttemptOutcome::Succeeded { .. }, Phase::Reduce)
                if task.committer == Some(attempt) =>
            {
                TaskEvent::Succeeded {
                    attempt,
                    output: TaskOutput::Reduce,
                    counters,
                }
            }
            (AttemptOutcome::Succeeded { .. }, Phase::Reduce) => TaskEvent::Failed {
                attempt,
                error: "reported success without holding the commit".to_string(),
                counters,
            },
            (AttemptOutcome::Failed { message }, _) => TaskEvent::Failed {
                attempt,
                error: message,
                counters,
            },
        };
        let change = task.apply(event, now_ms, max_attempts);
        let description = format!(
            "{} task {} ({})",
            phase_name(attempt.task.phase),
            attempt.task,
            task.input
        );
        match change {
            TaskChange::Succeeded if job.reduces_done() => {
                job.apply(JobEvent::AllReducesCommitted, now_ms);
                vec![Action::CommitJob {
                    job: job.id,
                    output: job.plan.output.clone(),
                }]
            }
            TaskChange::Failed { error } => {
                let error = format!(
                    "{description} failed after {max_attempts} attempts; last error: {error}"
                );
                self.end_job(attempt.task.job, JobEvent::TaskFailed { error }, now_ms)
            }
            TaskChange::Succeeded | TaskChange::Retrying | TaskChange::Ignored => Vec::new(),
            TaskChange::Started { .. } | TaskChange::Cancelled => {
                unreachable!("an attempt report neither starts nor cancels a task")
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
