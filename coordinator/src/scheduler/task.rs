//! One task's lifecycle and the attempts it ran.
//!
//! ```text
//!            assign            an attempt succeeded
//!  Pending ─────────▶ Running ──────────────────────▶ Succeeded
//!     ▲     (backups join      │ last running attempt      │ map output lost (its
//!     │      a running task)   │ ended without success,    │ worker died, a fetch
//!     ├────────────────────────┤ within its limits         │ failed) or suspended
//!     └────────────────────────┼───────────────────────────┤ (its worker suspect)
//!                              │                           │
//!  Pending | Running ── suspect worker cleared ────────────▶ Succeeded (restored)
//!                              │ a limit reached
//!                              └──────────────────────────▶ Failed
//!  Pending | Running ── job ended ──▶ Cancelled
//! ```
//!
//! What an attempt's end counts toward depends on its cause, never on
//! other tasks' failures:
//! - a failure of the job's own (`FailureKind::Job`) toward
//!   `--max-attempts`;
//! - a failure of the worker's (`FailureKind::Worker`) toward that worker's
//!   exclusion from the job, and toward [`MAX_WORKER_FAILURES`];
//! - a passing failure (`FailureKind::Transient`) toward
//!   [`MAX_TRANSIENT_FAILURES`], retried after a growing backoff;
//! - an attempt lost with its worker, to a fetch failure or handed back
//!   toward nothing; the scheduler's poison rule and the per-output fetch
//!   failure bound keep those from looping.
//!
//! A map task whose output sits on a suspect worker goes back to pending
//! with that output kept aside (`suspended`): if the worker is cleared,
//! the output is restored (`OutputRestored`) and a re-run that started
//! meanwhile is killed, since the original reported first.

use std::collections::BTreeMap;

use harrow_core::ids::{AttemptId, TaskId, WorkerId};
use harrow_core::task::{AttemptCounters, FailureKind, InputReport, SegmentInfo, Split};

use super::attempt::{Attempt, AttemptState, LostCause};
use crate::limits::{
    MAX_TRANSIENT_BACKOFF_MS, MAX_TRANSIENT_FAILURES, MAX_WORKER_FAILURES, TRANSIENT_BACKOFF_MS,
};

/// What a task reads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// A map output set aside while its worker is suspect.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SuspendedOutput {
    pub attempt: AttemptId,
    pub output: TaskOutput,
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
        kind: FailureKind,
        counters: AttemptCounters,
    },
    Lost {
        attempt: AttemptId,
        reason: String,
        cause: LostCause,
    },
    /// A succeeded map task's output is gone (its worker died, or it failed
    /// to be fetched); a suspended one is forgotten.
    OutputLost,
    /// A succeeded map task's worker is suspect: run it again unless the
    /// worker is cleared first.
    OutputSuspended,
    /// The suspect worker was cleared: its output stands again.
    OutputRestored,
    Cancelled,
}

/// What a transition tells the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskChange {
    Started {
        attempt: AttemptId,
    },
    /// The task succeeded (or its output was restored); these other
    /// attempts were killed.
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

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub input: TaskInput,
    pub state: TaskState,
    pub attempts: Vec<Attempt>,
    /// The one attempt allowed to make its output visible.
    pub committer: Option<AttemptId>,
    /// The output of a map task whose worker is suspect.
    pub suspended: Option<SuspendedOutput>,
    /// A task retried after a passing failure waits until then.
    pub not_before_ms: u64,
    /// Counts the changes of state, attempts and commit, so the
    /// coordinator's state dir writes only the tasks that changed.
    #[serde(skip)]
    pub revision: u64,
}

impl Task {
    pub fn new(id: TaskId, input: TaskInput) -> Self {
        Task {
            id,
            input,
            state: TaskState::Pending,
            attempts: Vec::new(),
            committer: None,
            suspended: None,
            not_before_ms: 0,
            revision: 0,
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

    /// Failed attempts of this kind.
    pub fn failures(&self, kind: FailureKind) -> u32 {
        self.count(|s| matches!(s, AttemptState::Failed { kind: k, .. } if *k == kind)) as u32
    }

    /// The distinct workers that died while running one of its attempts,
    /// each with how many attempts it was running then.
    pub fn workers_died_running(&self) -> BTreeMap<WorkerId, u32> {
        self.attempts
            .iter()
            .filter_map(|a| match a.state {
                AttemptState::Lost {
                    cause: LostCause::WorkerDied { attempts },
                    ..
                } => Some((a.worker, attempts)),
                _ => None,
            })
            .collect()
    }

    /// Whether it is pending and may start at `now_ms`.
    pub fn is_runnable(&self, now_ms: u64) -> bool {
        self.state == TaskState::Pending && self.not_before_ms <= now_ms
    }

    fn count(&self, matches: impl Fn(&AttemptState) -> bool) -> usize {
        self.attempts.iter().filter(|a| matches(&a.state)).count()
    }

    /// Every transition of the task lifecycle.
    pub fn apply(&mut self, event: TaskEvent, now_ms: u64, max_attempts: u32) -> TaskChange {
        let change = self.transition(event, now_ms, max_attempts);
        if change != TaskChange::Ignored {
            self.revision += 1;
        }
        change
    }

    /// Grants the commit to `attempt`.
    pub fn grant_commit(&mut self, attempt: AttemptId) {
        self.committer = Some(attempt);
        self.revision += 1;
    }

    fn transition(&mut self, event: TaskEvent, now_ms: u64, max_attempts: u32) -> TaskChange {
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
                    waiting_since_ms: None,
                    waited_ms: 0,
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
                self.suspended = None;
                TaskChange::Succeeded { killed }
            }
            (
                TaskState::Running { attempts },
                TaskEvent::Failed {
                    attempt,
                    error,
                    kind,
                    counters,
                },
            ) if attempts.contains(&attempt) => {
                attempts.retain(|a| *a != attempt);
                let failed = AttemptState::Failed {
                    error: error.clone(),
                    kind,
                };
                self.end_attempt(attempt, failed, Some(counters), now_ms);
                let failures = self.failures(kind);
                let limit = match kind {
                    FailureKind::Job => max_attempts,
                    FailureKind::Worker => MAX_WORKER_FAILURES,
                    FailureKind::Transient => MAX_TRANSIENT_FAILURES,
                };
                if failures >= limit {
                    self.end_running(now_ms);
                    let error = match kind {
                        FailureKind::Job => error,
                        kind => format!("{failures} {} failures; last: {error}", kind.name()),
                    };
                    self.state = TaskState::Failed {
                        error: error.clone(),
                    };
                    return TaskChange::Failed { error };
                }
                if kind == FailureKind::Transient {
                    let backoff = TRANSIENT_BACKOFF_MS
                        .saturating_mul(1 << (failures - 1).min(16))
                        .min(MAX_TRANSIENT_BACKOFF_MS);
                    self.not_before_ms = now_ms + backoff;
                }
                self.after_attempt_ended()
            }
            (
                TaskState::Running { attempts },
                TaskEvent::Lost {
                    attempt,
                    reason,
                    cause,
                },
            ) if attempts.contains(&attempt) => {
                attempts.retain(|a| *a != attempt);
                self.end_attempt(attempt, AttemptState::Lost { reason, cause }, None, now_ms);
                self.after_attempt_ended()
            }
            (TaskState::Succeeded { .. }, TaskEvent::OutputLost) => {
                self.state = TaskState::Pending;
                TaskChange::Retrying
            }
            (TaskState::Pending | TaskState::Running { .. }, TaskEvent::OutputLost) => {
                self.suspended = None;
                TaskChange::Ignored
            }
            (TaskState::Succeeded { attempt, output }, TaskEvent::OutputSuspended) => {
                self.suspended = Some(SuspendedOutput {
                    attempt: *attempt,
                    output: output.clone(),
                });
                self.state = TaskState::Pending;
                TaskChange::Retrying
            }
            (TaskState::Pending | TaskState::Running { .. }, TaskEvent::OutputRestored) => {
                let Some(SuspendedOutput { attempt, output }) = self.suspended.take() else {
                    return TaskChange::Ignored;
                };
                let killed = self.running().to_vec();
                self.end_running(now_ms);
                self.state = TaskState::Succeeded { attempt, output };
                TaskChange::Succeeded { killed }
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
            | (TaskState::Pending | TaskState::Running { .. }, TaskEvent::OutputSuspended)
            | (TaskState::Succeeded { .. }, TaskEvent::OutputRestored)
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
