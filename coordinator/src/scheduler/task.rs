//! One task's lifecycle and the attempts it ran.
//!
//! ```text
//!            assign             attempt succeeded
//!  Pending ─────────▶ Running ─────────────────────▶ Succeeded
//!     ▲                  │ attempt failed,
//!     └──────────────────┤ attempts left
//!                        │ attempt failed, none left
//!                        └──────────────────────────▶ Failed
//!  Pending | Running ── job cancelled or failed ─────▶ Cancelled
//! ```

use harrow_core::ids::{AttemptId, TaskId, WorkerId};
use harrow_core::task::{AttemptCounters, SegmentInfo, Split};

/// What a task reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskInput {
    Split(Split),
    Partition(u32),
}

impl std::fmt::Display for TaskInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskInput::Split(split) => write!(f, "{split}"),
            TaskInput::Partition(partition) => write!(f, "partition {partition}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    Pending,
    /// One attempt runs (step 2 adds backups, hence the attempt is named).
    Running {
        attempt: AttemptId,
    },
    Succeeded {
        attempt: AttemptId,
        output: TaskOutput,
    },
    Failed {
        error: String,
    },
    Cancelled,
}

/// What a succeeded task left for later tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutput {
    /// A map task's segments, one per partition, on the worker that ran it.
    Map {
        worker: WorkerId,
        segments: Vec<SegmentInfo>,
    },
    /// A reduce task's committed file.
    Reduce,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptState {
    Running,
    Succeeded,
    Failed { error: String },
    Killed,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: AttemptId,
    pub worker: WorkerId,
    pub state: AttemptState,
    pub started_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    pub counters: AttemptCounters,
}

/// What happens to a task.
#[derive(Debug, Clone)]
pub enum TaskEvent {
    Assigned {
        worker: WorkerId,
    },
    Succeeded {
        attempt: AttemptId,
        output: TaskOutput,
        counters: AttemptCounters,
    },
    Failed {
        attempt: AttemptId,
        error: String,
        counters: AttemptCounters,
    },
    Cancelled,
}

/// What a transition tells the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskChange {
    Started {
        attempt: AttemptId,
    },
    Succeeded,
    Retrying,
    Failed {
        error: String,
    },
    Cancelled,
    /// The event does not apply in this state (a late or fenced report).
    Ignored,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub id: TaskId,
    pub input: TaskInput,
    pub state: TaskState,
    pub attempts: Vec<Attempt>,
    /// The one attempt allowed to make its output visible.
    pub committer: Option<AttemptId>,
}

impl Task {
    pub fn new(id: TaskId, input: TaskInput) -> Self {
        Task {
            id,
            input,
            state: TaskState::Pending,
            attempts: Vec::new(),
            committer: None,
        }
    }

    pub fn attempt(&self, id: AttemptId) -> Option<&Attempt> {
        self.attempts.iter().find(|a| a.id == id)
    }

    fn attempt_mut(&mut self, id: AttemptId) -> &mut Attempt {
        self.attempts
            .iter_mut()
            .find(|a| a.id == id)
            .expect("a running task's attempt is recorded")
    }

    fn failed_attempts(&self) -> u32 {
        self.attempts
            .iter()
            .filter(|a| matches!(a.state, AttemptState::Failed { .. }))
            .count() as u32
    }

    /// Every transition of the task lifecycle.
    pub fn apply(&mut self, event: TaskEvent, now_ms: u64, max_attempts: u32) -> TaskChange {
        match (&self.state, event) {
            (TaskState::Pending, TaskEvent::Assigned { worker }) => {
                let id = AttemptId {
                    task: self.id,
                    number: self.attempts.len() as u32 + 1,
                };
                self.attempts.push(Attempt {
                    id,
                    worker,
                    state: AttemptState::Running,
                    started_at_ms: now_ms,
                    finished_at_ms: None,
                    counters: AttemptCounters::default(),
                });
                self.state = TaskState::Running { attempt: id };
                TaskChange::Started { attempt: id }
            }
            (
                TaskState::Running { attempt: running },
                TaskEvent::Succeeded {
                    attempt,
                    output,
                    counters,
                },
            ) if *running == attempt => {
                self.end_attempt(attempt, AttemptState::Succeeded, counters, now_ms);
                self.state = TaskState::Succeeded { attempt, output };
                TaskChange::Succeeded
            }
            (
                TaskState::Running { attempt: running },
                TaskEvent::Failed {
                    attempt,
                    error,
                    counters,
                },
            ) if *running == attempt => {
                self.end_attempt(
                    attempt,
                    AttemptState::Failed {
                        error: error.clone(),
                    },
                    counters,
                    now_ms,
                );
                if self.committer == Some(attempt) {
                    self.committer = None;
                }
                if self.failed_attempts() >= max_attempts {
                    self.state = TaskState::Failed {
                        error: error.clone(),
                    };
                    TaskChange::Failed { error }
                } else {
                    self.state = TaskState::Pending;
                    TaskChange::Retrying
                }
            }
            (TaskState::Running { attempt }, TaskEvent::Cancelled) => {
                let attempt = *attempt;
                self.end_attempt(
                    attempt,
                    AttemptState::Killed,
                    AttemptCounters::default(),
                    now_ms,
                );
                self.state = TaskState::Cancelled;
                TaskChange::Cancelled
            }
            (TaskState::Pending, TaskEvent::Cancelled) => {
                self.state = TaskState::Cancelled;
                TaskChange::Cancelled
            }
            (TaskState::Running { .. }, TaskEvent::Assigned { .. })
            | (TaskState::Running { .. }, TaskEvent::Succeeded { .. })
            | (TaskState::Running { .. }, TaskEvent::Failed { .. })
            | (TaskState::Pending, TaskEvent::Succeeded { .. })
            | (TaskState::Pending, TaskEvent::Failed { .. })
            | (TaskState::Succeeded { .. }, _)
            | (TaskState::Failed { .. }, _)
            | (TaskState::Cancelled, _) => TaskChange::Ignored,
        }
    }

    fn end_attempt(
        &mut self,
        id: AttemptId,
        state: AttemptState,
        counters: AttemptCounters,
        now_ms: u64,
    ) {
        let attempt = self.attempt_mut(id);
        assert_eq!(
            attempt.state,
            AttemptState::Running,
            "only a running attempt ends"
        );
        attempt.state = state;
        attempt.counters = counters;
        attempt.finished_at_ms = Some(now_ms);
    }
}
