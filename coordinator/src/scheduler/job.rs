//! One job's lifecycle, its tasks and what it was asked to do.
//!
//! ```text
//!          first assignment          last reduce committed         _SUCCESS written
//!  Queued ─────────────────▶ Running ─────────────────────▶ Committing ──────────────▶ Succeeded
//!    │                         │ a task failed max attempts      │ writing _SUCCESS failed
//!    │                         └───────────────────────────▶ Failed ◀┘
//!    └──────── cancel ─────────┴── cancel ──▶ Cancelled
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use harrow_core::ids::{AttemptId, JobId, Phase, TaskId, WorkerId};
use harrow_core::task::{FetchFailure, JobSpec, Split};

use super::index::TaskIndex;
use super::placement::LateStats;
use super::task::{Task, TaskChange, TaskEvent, TaskInput};

/// A validated submission: what the planner found and the user asked for.
#[derive(Debug, Clone)]
pub struct JobPlan {
    /// What every attempt shares, handed to each by reference.
    pub spec: Arc<JobSpec>,
    pub inputs: Vec<String>,
    pub output: String,
    pub splits: Vec<Split>,
    /// The client's id for the submission, the same on its retries.
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum JobState {
    Queued,
    Running,
    Committing,
    Succeeded,
    Failed { error: String },
    Cancelled,
}

impl JobState {
    /// Every state's `name`.
    pub const NAMES: [&'static str; 6] = [
        "queued",
        "running",
        "committing",
        "succeeded",
        "failed",
        "cancelled",
    ];

    pub fn is_terminal(&self) -> bool {
        match self {
            JobState::Queued | JobState::Running | JobState::Committing => false,
            JobState::Succeeded | JobState::Failed { .. } | JobState::Cancelled => true,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Committing => "committing",
            JobState::Succeeded => "succeeded",
            JobState::Failed { .. } => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// A reducer's failure to fetch a map task's output from `holder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchFailureRecord {
    pub holder: WorkerId,
    pub cause: FetchFailure,
}

/// What happens to a job as a whole.
#[derive(Debug, Clone)]
pub enum JobEvent {
    Started,
    AllReducesCommitted,
    TaskFailed { error: String },
    CommitEnded { error: Option<String> },
    Cancel,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: JobId,
    pub plan: JobPlan,
    pub state: JobState,
    pub maps: Vec<Task>,
    pub reduces: Vec<Task>,
    pub submitted_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    /// Fetch failures reported against each map task's outputs, with the
    /// worker that held each; those a worker's death explains are dropped.
    pub fetch_failures: BTreeMap<TaskId, Vec<FetchFailureRecord>>,
    /// Counts the changes of state (see `Task::revision`).
    pub revision: u64,
    /// Its tasks by state and its attempts by worker.
    pub index: TaskIndex,
    /// Each phase's LATE statistics, while fresh enough to use.
    pub late_stats: BTreeMap<Phase, LateStats>,
    /// Tasks whose revision moved since the state dir's persister last
    /// took them: what it writes costs what changed, not the job's size.
    pub changed: BTreeSet<TaskId>,
}

impl Job {
    pub fn new(id: JobId, plan: JobPlan, now_ms: u64) -> Self {
        let task_id = |phase, index: usize| TaskId {
            job: id,
            phase,
            index: index as u32,
        };
        let maps = plan
            .splits
            .iter()
            .enumerate()
            .map(|(i, split)| Task::new(task_id(Phase::Map, i), TaskInput::Split(split.clone())))
            .collect();
        let reduces = (0..plan.spec.reducers as usize)
            .map(|i| Task::new(task_id(Phase::Reduce, i), TaskInput::Partition(i as u32)))
            .collect();
        let mut job = Job {
            id,
            plan,
            state: JobState::Queued,
            maps,
            reduces,
            submitted_at_ms: now_ms,
            finished_at_ms: None,
            fetch_failures: BTreeMap::new(),
            revision: 0,
            index: TaskIndex::default(),
            late_stats: BTreeMap::new(),
            changed: BTreeSet::new(),
        };
        job.reindex();
        job
    }

    /// Computes the phase's LATE statistics again if they are stale.
    pub fn refresh_late_stats(&mut self, phase: Phase, now_ms: u64) {
        if self
            .late_stats
            .get(&phase)
            .is_some_and(|s| s.is_fresh(now_ms))
        {
            return;
        }
        let stats = LateStats::of(self, phase, now_ms);
        self.late_stats.insert(phase, stats);
    }

    /// Computes the index again, after tasks were replaced wholesale.
    pub fn reindex(&mut self) {
        self.index = TaskIndex::of(self.tasks());
    }

    pub fn task(&self, id: TaskId) -> Option<&Task> {
        match id.phase {
            Phase::Map => self.maps.get(id.index as usize),
            Phase::Reduce => self.reduces.get(id.index as usize),
        }
    }

    /// A task to record progress or a commit grant on; its state changes
    /// go through [`Job::apply_to_task`].
    pub fn task_mut(&mut self, id: TaskId) -> Option<&mut Task> {
        match id.phase {
            Phase::Map => self.maps.get_mut(id.index as usize),
            Phase::Reduce => self.reduces.get_mut(id.index as usize),
        }
    }

    /// Every change of a task's state: applies `event` to task `id`,
    /// keeping the index true. `None` if the job has no such task.
    pub fn apply_to_task(
        &mut self,
        id: TaskId,
        event: TaskEvent,
        now_ms: u64,
        max_attempts: u32,
    ) -> Option<TaskChange> {
        let task = match id.phase {
            Phase::Map => self.maps.get_mut(id.index as usize)?,
            Phase::Reduce => self.reduces.get_mut(id.index as usize)?,
        };
        let books = (&mut self.index, &mut self.changed);
        Some(apply_indexed(books, task, event, now_ms, max_attempts))
    }

    /// Grants the reduce task's commit to `attempt`.
    pub fn grant_commit(&mut self, attempt: AttemptId) {
        if let Some(task) = self.task_mut(attempt.task) {
            task.grant_commit(attempt);
            self.changed.insert(attempt.task);
        }
    }

    /// The tasks changed since the last call.
    pub fn take_changed(&mut self) -> BTreeSet<TaskId> {
        std::mem::take(&mut self.changed)
    }

    /// Applies `event` to every task of the phase that `select` picks.
    pub fn apply_to_each(
        &mut self,
        phase: Phase,
        select: impl Fn(&Task) -> bool,
        event: &TaskEvent,
        now_ms: u64,
        max_attempts: u32,
    ) {
        let tasks = match phase {
            Phase::Map => &mut self.maps,
            Phase::Reduce => &mut self.reduces,
        };
        for task in tasks.iter_mut().filter(|t| select(t)) {
            let books = (&mut self.index, &mut self.changed);
            apply_indexed(books, task, event.clone(), now_ms, max_attempts);
        }
    }

    /// Indexes of the phase's pending tasks that may start at `now_ms`
    /// (not waiting out a backoff), in order.
    pub fn runnable(&self, phase: Phase, now_ms: u64) -> impl Iterator<Item = usize> + '_ {
        let tasks = match phase {
            Phase::Map => &self.maps,
            Phase::Reduce => &self.reduces,
        };
        self.index
            .pending(phase)
            .filter(move |&i| tasks[i].is_runnable(now_ms))
    }

    /// Counts one more fetch failure of a map task's output; returns the
    /// count.
    pub fn record_fetch_failure(&mut self, task: TaskId, record: FetchFailureRecord) -> u32 {
        let records = self.fetch_failures.entry(task).or_default();
        records.push(record);
        records.len() as u32
    }

    /// Forgets the failures to reach `worker`: it died, which explains them.
    pub fn forget_fetch_failures_of(&mut self, worker: WorkerId) {
        for records in self.fetch_failures.values_mut() {
            records.retain(|r| !(r.holder == worker && r.cause == FetchFailure::Unreachable));
        }
    }

    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.maps.iter().chain(&self.reduces)
    }

    /// The tasks with attempts running, from the index.
    pub fn running_tasks(&self) -> impl Iterator<Item = &Task> {
        let maps = self.index.running(Phase::Map).map(|i| &self.maps[i]);
        maps.chain(self.index.running(Phase::Reduce).map(|i| &self.reduces[i]))
    }

    pub fn maps_done(&self) -> bool {
        self.index.succeeded(Phase::Map) == self.maps.len()
    }

    pub fn reduces_done(&self) -> bool {
        self.index.succeeded(Phase::Reduce) == self.reduces.len()
    }

    /// Every transition of the job lifecycle; returns whether the state changed.
    pub fn apply(&mut self, event: JobEvent, now_ms: u64) -> bool {
        let next = match (&self.state, event) {
            (JobState::Queued, JobEvent::Started) => JobState::Running,
            (JobState::Running, JobEvent::AllReducesCommitted) => JobState::Committing,
            (JobState::Running, JobEvent::TaskFailed { error }) => JobState::Failed { error },
            (JobState::Committing, JobEvent::CommitEnded { error: None }) => JobState::Succeeded,
            (JobState::Committing, JobEvent::CommitEnded { error: Some(error) }) => {
                JobState::Failed { error }
            }
            (JobState::Queued | JobState::Running, JobEvent::Cancel) => JobState::Cancelled,
            (
                JobState::Queued,
                JobEvent::AllReducesCommitted
                | JobEvent::TaskFailed { .. }
                | JobEvent::CommitEnded { .. },
            )
            | (JobState::Running, JobEvent::Started | JobEvent::CommitEnded { .. })
            | (
                JobState::Committing,
                JobEvent::Started
                | JobEvent::AllReducesCommitted
                | JobEvent::TaskFailed { .. }
                | JobEvent::Cancel,
            )
            | (JobState::Succeeded | JobState::Failed { .. } | JobState::Cancelled, _) => {
                return false;
            }
        };
        if next.is_terminal() {
            self.finished_at_ms = Some(now_ms);
        }
        self.state = next;
        self.revision += 1;
        true
    }
}

/// Applies `event` to `task`, taking it out of `index` before and putting
/// it back after, and noting it in `changed` if it changed.
fn apply_indexed(
    (index, changed): (&mut TaskIndex, &mut BTreeSet<TaskId>),
    task: &mut Task,
    event: TaskEvent,
    now_ms: u64,
    max_attempts: u32,
) -> TaskChange {
    index.remove(task);
    let change = task.apply(event, now_ms, max_attempts);
    index.add(task);
    if change != TaskChange::Ignored {
        changed.insert(task.id);
    }
    change
}
