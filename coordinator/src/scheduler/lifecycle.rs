//! A worker as the scheduler knows it: its record, its states and the one
//! place they change (`Worker::apply`).

use harrow_core::ids::{AttemptId, WorkerId};

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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UnreachableReport {
    pub target: WorkerId,
    pub at_ms: u64,
}

/// A registered worker.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Worker {
    pub id: WorkerId,
    pub shuffle_address: String,
    pub slots: u32,
    /// The worker process's start, which its heartbeats must carry.
    #[serde(default)]
    pub incarnation: u64,
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
