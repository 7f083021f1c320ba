//! What goes into the scheduler (`Event`) and what comes out (`Action`).

use harrow_core::ids::{AttemptId, JobId, WorkerId};
use harrow_core::rpc::health::ProbeFailure;
use harrow_core::storage::StorageOptions;
use harrow_core::task::{Assignment, AttemptCounters, AttemptOutcome, MapOutput};

use super::{AttemptProgress, FetchReport, JobPlan, JobState};

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
        /// The worker process's start, drawn by it.
        incarnation: u64,
    },
    Heartbeat {
        worker: WorkerId,
        /// Must be the incarnation the id was given to.
        incarnation: u64,
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
        /// How to reach the output's store (the job may be let go of
        /// before this is carried out).
        storage: StorageOptions,
    },
    JobFinished {
        job: JobId,
        state: JobState,
    },
}
