//! One attempt of a task: where it ran, how it ended, what it reported.

use harrow_core::ids::{AttemptId, WorkerId};
use harrow_core::task::{AttemptCounters, FailureKind};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AttemptState {
    Running,
    Succeeded,
    /// Failed; `kind` says what the failure counts toward.
    Failed {
        error: String,
        kind: FailureKind,
    },
    /// Ended through no fault of its own. Does not count.
    Lost {
        reason: String,
        cause: LostCause,
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

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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
    /// A reduce attempt waiting, since then, for map output to be run
    /// again: not stalled, and the first to make room for those maps.
    pub waiting_since_ms: Option<u64>,
    /// Milliseconds it spent waiting so far, which say nothing of its speed.
    pub waited_ms: u64,
    pub counters: AttemptCounters,
}

/// Why an attempt was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LostCause {
    /// Its worker died (or left) while it ran, with `attempts` attempts
    /// running in all (this one included).
    WorkerDied { attempts: u32 },
    /// A reduce attempt could not fetch a map output.
    Fetch,
    /// A shutting-down worker gave it back.
    HandedBack,
    /// Another attempt of its task holds the commit.
    CommitHeldElsewhere,
    /// Killed while waiting for map output, to give its slot to the maps
    /// it waits for.
    Preempted,
    /// Running when the coordinator last wrote its state, but not on its
    /// worker when the restarted coordinator heard from it (it ended while
    /// the coordinator was down, and its report was lost).
    Unconfirmed,
}
