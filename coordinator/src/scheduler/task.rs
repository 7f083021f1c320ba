//! One task's lifecycle and the attempts it ran.
//!
//! ```text
//!            assign            an attempt succeeded
//!  Pending ─────────▶ Running ──────────────────────▶ Succeeded
//!     ▲     (backups join      │ last running attempt      │ map output lost
//!     │      a running task)   │ failed with attempts left,│ (its worker died,
//!     ├────────────────────────┤ or was lost               │  a fetch failed)
//!     └────────────────────────┼───────────────────────────┘
//!                              │ failed max attempts
//!                              └──────────────────────────▶ Failed
//!  Pending | Running ── job ended ──▶ Cancelled
//! ```
//!
//! Only attempts that failed by themselves (job code, bad input) count
//! toward the attempt limit; attempts lost with their worker, killed as the
//! losing backup, or ended by a fetch failure do not.

use harrow_core::ids::{AttemptId, TaskId, WorkerId};
use harrow_core::task::{AttemptCounters, InputReport, SegmentInfo, Split};

/// Lost attempts after which a task fails its job anyway, so a task whose
/// workers keep dying cannot loop forever.
pub const MAX_LOST_ATTEMPTS: usize = 16;

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
    /// One attempt, or several when backups run; never empty.
    Running {
        attempts: Vec<AttemptId>,
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

impl TaskState {
    /// Every state's `name`.
    pub const NAMES: [&'static str; 5] = ["pending", "running", "succeeded", "failed", "cancelled"];

    pub fn name(&self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running { .. } => "running",
            TaskState::Succeeded { .. } => "succeeded",
            TaskState::Failed { .. } => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }
}

/// What a succeeded task left for later tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutput {
    /// A map task's segments, one per partition, on the worker that ran
    /// it, and what it found in its input.
    Map {
        worker: WorkerId,
        segments: Vec<SegmentInfo>,
        input: InputReport,
    },
    /// A reduce task's committed file.
    Reduce,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptState {
    Running,
    Succeeded,
    /// Failed by itself; counts toward the attempt limit.
    Failed {
        error: String,
    },
    /// Ended through no fault of its own: its worker died, or it could not
    /// fetch its input. Does not count.
    Lost {
        reason: String,
    },
    /// Stopped by the coordinator: a backup won, or the job ended.
    Killed,
}

impl AttemptState {
    /// Every state's `name`.
    pub const NAMES: [&'static str; 5] = ["running", "succeeded", "failed", "lost", "killed"];

    pub fn name(&self) -> &'static str {
        match self {
            AttemptState::Running => "running",
            AttemptState::Succeeded => "succeeded",
            AttemptState::Failed { .. } => "failed",
            AttemptState::Lost { .. } => "lost",
            AttemptState::Killed => "killed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: AttemptId,
    pub worker: WorkerId,
    pub state: AttemptState,
    pub started_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    /// When the attempt last reported progress (or started).
    pub progress_at_ms: u64,
    /// Input bytes processed, as last reported.
    pub progress_bytes: u64,
    pub counters: AttemptCounters,
}

/// What happens to a task.
#[derive(Debug, Clone)]
pub enum TaskEvent {
    /// A first attempt, or a backup for a running task.
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
    Lost {
        attempt: AttemptId,
        reason: String,
    },
    /// A succeeded map task's output is gone.
    OutputLost,
    Cancelled,
}

/// What a transition tells the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskChange {
    Started {
        attempt: AttemptId,
    },
    /// The task succeeded; these other attempts were killed.
    Succeeded {
        killed: Vec<AttemptId>,
    },
    /// An attempt ended but others still run.
    AttemptEnded,
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

    pub fn attempt_mut(&mut self, id: AttemptId) -> Option<&mut Attempt> {
        self.attempts.iter_mut().find(|a| a.id == id)
    }

    /// The attempts running now.
    pub fn running(&self) -> &[AttemptId] {
        match &self.state {
            TaskState::Running { attempts } => attempts,
            _ => &[],
        }
    }

    pub fn failed_attempts(&self) -> u32 {
        self.count(|s| matches!(s, AttemptState::Failed { .. })) as u32
    }

    pub fn lost_attempts(&self) -> usize {
        self.count(|s| matches!(s, AttemptState::Lost { .. }))
    }

    fn count(&self, matches: impl Fn(&AttemptState) -> bool) -> usize {
        self.attempts.iter().filter(|a| matches(&a.state)).count()
    }

    /// Every transition of the task lifecycle.
    pub fn apply(&mut self, event: TaskEvent, now_ms: u64, max_attempts: u32) -> TaskChange {
        match (&mut self.state, event) {
            (TaskState::Pending | TaskState::Running { .. }, TaskEvent::Assigned { worker }) => {
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
                    progress_at_ms: now_ms,
                    progress_bytes: 0,
                    counters: AttemptCounters::default(),
                });
                match &mut self.state {
                    TaskState::Running { attempts } => attempts.push(id),
                    _ => self.state = TaskState::Running { attempts: vec![id] },
                }
                TaskChange::Started { attempt: id }
            }
            (
                TaskState::Running { attempts },
                TaskEvent::Succeeded {
                    attempt,
                    output,
                    counters,
                },
            ) if attempts.contains(&attempt) => {
                let killed: Vec<AttemptId> =
                    attempts.iter().copied().filter(|a| *a != attempt).collect();
                self.end_attempt(attempt, AttemptState::Succeeded, Some(counters), now_ms);
                for other in &killed {
                    self.end_attempt(*other, AttemptState::Killed, None, now_ms);
                }
                self.state = TaskState::Succeeded { attempt, output };
                TaskChange::Succeeded { killed }
            }
            (
                TaskState::Running { attempts },
                TaskEvent::Failed {
                    attempt,
                    error,
                    counters,
                },
            ) if attempts.contains(&attempt) => {
                attempts.retain(|a| *a != attempt);
                self.end_attempt(
                    attempt,
                    AttemptState::Failed {
                        error: error.clone(),
                    },
                    Some(counters),
                    now_ms,
                );
                if self.failed_attempts() >= max_attempts {
                    self.end_running(now_ms);
                    self.state = TaskState::Failed {
                        error: error.clone(),
                    };
                    TaskChange::Failed { error }
                } else {
                    self.after_attempt_ended()
                }
            }
            (TaskState::Running { attempts }, TaskEvent::Lost { attempt, reason })
                if attempts.contains(&attempt) =>
            {
                attempts.retain(|a| *a != attempt);
                self.end_attempt(
                    attempt,
                    AttemptState::Lost {
                        reason: reason.clone(),
                    },
                    None,
                    now_ms,
                );
                if self.lost_attempts() >= MAX_LOST_ATTEMPTS {
                    self.end_running(now_ms);
                    let error = format!("{MAX_LOST_ATTEMPTS} attempts were lost; last: {reason}");
                    self.state = TaskState::Failed {
                        error: error.clone(),
                    };
                    TaskChange::Failed { error }
                } else {
                    self.after_attempt_ended()
                }
            }
            (TaskState::Succeeded { .. }, TaskEvent::OutputLost) => {
                self.state = TaskState::Pending;
                TaskChange::Retrying
            }
            (TaskState::Running { .. }, TaskEvent::Cancelled) => {
                self.end_running(now_ms);
                self.state = TaskState::Cancelled;
                TaskChange::Cancelled
            }
            (TaskState::Pending, TaskEvent::Cancelled) => {
                self.state = TaskState::Cancelled;
                TaskChange::Cancelled
            }
            (TaskState::Running { .. }, TaskEvent::Succeeded { .. })
            | (TaskState::Running { .. }, TaskEvent::Failed { .. })
            | (TaskState::Running { .. }, TaskEvent::Lost { .. })
            | (TaskState::Running { .. } | TaskState::Pending, TaskEvent::OutputLost)
            | (TaskState::Pending, TaskEvent::Succeeded { .. })
            | (TaskState::Pending, TaskEvent::Failed { .. })
            | (TaskState::Pending, TaskEvent::Lost { .. })
            | (TaskState::Succeeded { .. }, TaskEvent::Assigned { .. })
            | (TaskState::Succeeded { .. }, TaskEvent::Succeeded { .. })
            | (TaskState::Succeeded { .. }, TaskEvent::Failed { .. })
            | (TaskState::Succeeded { .. }, TaskEvent::Lost { .. })
            | (TaskState::Succeeded { .. }, TaskEvent::Cancelled)
            | (TaskState::Failed { .. } | TaskState::Cancelled, _) => TaskChange::Ignored,
        }
    }

    /// After one attempt ended without success: still running if others
    /// run, else pending again.
    fn after_attempt_ended(&mut self) -> TaskChange {
        if self.running().is_empty() {
            self.state = TaskState::Pending;
            TaskChange::Retrying
        } else {
            TaskChange::AttemptEnded
        }
    }

    fn end_running(&mut self, now_ms: u64) {
        for attempt in self.running().to_vec() {
            self.end_attempt(attempt, AttemptState::Killed, None, now_ms);
        }
    }

    fn end_attempt(
        &mut self,
        id: AttemptId,
        state: AttemptState,
        counters: Option<AttemptCounters>,
        now_ms: u64,
    ) {
        if self.committer == Some(id) && state != AttemptState::Succeeded {
            self.committer = None;
        }
        let attempt = self.attempt_mut(id).expect("a running attempt is recorded");
        assert_eq!(
            attempt.state,
            AttemptState::Running,
            "only a running attempt ends"
        );
        attempt.state = state;
        if let Some(counters) = counters {
            attempt.counters = counters;
        }
        attempt.finished_at_ms = Some(now_ms);
    }
}
