//! The worker's link to the coordinator: registration, heartbeats on a
//! task of their own, the long poll for attempts, and the questions a
//! reduce attempt asks (where lost map output went, whether it may commit).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::AbortHandle;
use tokio::sync::OwnedSemaphorePermit;

use harrow_core::ids::{AttemptId, JobId};
use harrow_core::rpc::{retry, security};
use harrow_core::task::{Assignment, FetchFailure};
use harrow_core::wire;
use harrow_proto::v1 as pb;

use super::attempts::run_attempt;
use super::{RunningAttempt, Shared, WorkerError};
use crate::error::TaskError;
use crate::limits::{COORDINATOR_OUTAGE, REGISTER_TRIES, RELOCATE_WAIT, RETRY_DELAY, TASK_POLL_MS};
use crate::reduce::CommitGate;
use crate::shuffle::fetch::{Recovery, Relocation};
use crate::shuffle::serve::job_dir;

/// An attempt's call to the coordinator, again while it cannot be reached
/// (it may be restarting from its state dir), for up to
/// `COORDINATOR_OUTAGE`. The calls retried are idempotent: a repeated
/// report of an ended attempt is ignored, a repeated commit request of the
/// holder granted again.
pub(super) async fn patiently<T, F, Fut>(call: &'static str, make: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    retry::patiently(call, COORDINATOR_OUTAGE, RETRY_DELAY, make).await
}

impl Shared {
    /// An attempt's call to the coordinator, made `patiently`; a failure
    /// is the attempt's `TaskError::Coordinator`.
    async fn call<T, F, Fut>(&self, call: &'static str, make: F) -> Result<T, TaskError>
    where
        F: Fn(pb::worker_service_client::WorkerServiceClient<security::AuthChannel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        patiently(call, || make(self.coordinator.clone()))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| TaskError::Coordinator { call, status })
    }

    pub(super) fn worker_id(&self) -> String {
        self.worker_id.lock().expect("worker id lock").clone()
    }

    /// Registers (again), retrying while the coordinator is unreachable.
    pub(super) async fn register(&self) -> Result<Duration, WorkerError> {
        let request = pb::RegisterRequest {
            shuffle_address: self.shuffle_address.clone(),
            slots: self.config.slots as u32,
            incarnation: self.incarnation,
        };
        let mut tries = 0;
        loop {
            tries += 1;
            match self.coordinator.clone().register(request.clone()).await {
                Ok(response) => {
                    let response = response.into_inner();
                    *self.worker_id.lock().expect("worker id lock") = response.worker_id;
                    return Ok(Duration::from_millis(
                        response.heartbeat_interval_ms.max(10),
                    ));
                }
                // A refused token or certificate will not be accepted by
                // waiting.
                Err(status)
                    if tries >= REGISTER_TRIES
                        || status.code() == tonic::Code::Unauthenticated
                        || security::is_certificate_refused(&status) =>
                {
                    return Err(WorkerError::Register {
                        url: self.config.coordinator.clone(),
                        tries,
                        reason: security::describe_status(&status),
                    });
                }
                Err(status) => {
                    tracing::debug!(%status, "coordinator not reachable yet");
                    tokio::time::sleep(RETRY_DELAY).await;
                }
            }
        }
    }
}

pub(super) async fn heartbeat_loop(shared: Arc<Shared>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        send_heartbeat(&shared, false).await;
    }
}

/// One heartbeat: running attempts with their progress, the jobs whose map
/// output is on disk, whether the worker drains or leaves.
pub(super) async fn send_heartbeat(shared: &Shared, leaving: bool) {
    let running: Vec<pb::AttemptProgress> = shared
        .running
        .lock()
        .expect("running lock")
        .iter()
        .map(|(attempt, running)| pb::AttemptProgress {
            attempt_id: attempt.to_string(),
            bytes: running.progress.load(Ordering::Relaxed),
        })
        .collect();
    // Jobs with map output or a plugin host here: the coordinator says when
    // each may go.
    let mut held = shared.shuffle_keys.jobs();
    held.extend(shared.plugins.jobs().await);
    let jobs_with_data = held.iter().map(ToString::to_string).collect();
    let request = pb::HeartbeatRequest {
        worker_id: shared.worker_id(),
        running,
        jobs_with_data,
        draining: shared.draining.load(Ordering::SeqCst),
        leaving,
        incarnation: shared.incarnation,
    };
    match shared.coordinator.clone().heartbeat(request).await {
        Ok(response) if !leaving => handle_heartbeat_response(shared, response.into_inner()).await,
        Ok(_) => {}
        Err(status) => tracing::warn!(%status, "heartbeat failed"),
    }
}

async fn handle_heartbeat_response(shared: &Shared, response: pb::HeartbeatResponse) {
    if response.may_exit {
        shared.exit_allowed.store(true, Ordering::SeqCst);
        shared.may_exit.notify_waiters();
    }
    if response.unknown_worker && !shared.draining.load(Ordering::SeqCst) {
        tracing::warn!("coordinator does not know this worker; registering again");
        if let Err(error) = shared.register().await {
            tracing::error!(%error, "re-registration failed");
        }
        return;
    }
    for attempt in response.kill_attempts {
        let Ok(attempt) = attempt.parse::<AttemptId>() else {
            continue;
        };
        let (killed, job_still_running) = {
            let mut running = shared.running.lock().expect("running lock");
            let killed = running.remove(&attempt);
            let job = attempt.task.job;
            (killed, running.keys().any(|a| a.task.job == job))
        };
        if let Some(running) = killed {
            tracing::info!(%attempt, "killing attempt");
            running.abort.abort();
            // Its code may be stuck in the job's plugin host (a hung
            // attempt); killing the host frees the threads waiting on it.
            // Not while other attempts of the job run here: they would fail
            // with it. The host goes at the latest when the job ends.
            if !job_still_running {
                shared.plugins.kill(attempt.task.job).await;
            }
        }
    }
    for job in response.release_jobs {
        let Ok(job) = job.parse::<JobId>() else {
            continue;
        };
        shared.shuffle_keys.remove(job);
        shared.plugins.kill(job).await;
        let dir = job_dir(&shared.config.work_dir, job);
        if let Err(error) = tokio::fs::remove_dir_all(&dir).await
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, dir = %dir.display(), "could not delete map output");
        }
    }
}

/// Asks for work whenever a slot is free and runs what comes back.
pub(super) async fn pull_loop(shared: Arc<Shared>) {
    loop {
        let Ok(first) = shared.slots.clone().acquire_owned().await else {
            return;
        };
        if shared.draining.load(Ordering::SeqCst) {
            return;
        }
        let free = shared.slots.available_permits() + 1;
        let request = pb::TaskRequest {
            worker_id: shared.worker_id(),
            free_slots: free as u32,
            wait_ms: TASK_POLL_MS,
        };
        let response = match shared.coordinator.clone().request_task(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                tracing::warn!(%status, "task request failed");
                drop(first);
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
        };
        if response.unknown_worker {
            drop(first);
            if let Err(error) = shared.register().await {
                tracing::error!(%error, "re-registration failed");
            }
            continue;
        }
        let mut permit = Some(first);
        for assignment in response.assignments {
            let slot = match permit.take() {
                Some(slot) => slot,
                None => shared
                    .slots
                    .clone()
                    .try_acquire_owned()
                    .expect("coordinator assigned more than the free slots"),
            };
            start(&shared, assignment, slot);
        }
    }
}

/// Runs an assigned attempt in `slot`, and then whatever the coordinator
/// hands out for the slot with its report, until it hands out nothing.
fn start(shared: &Arc<Shared>, assignment: pb::TaskAssignment, slot: OwnedSemaphorePermit) {
    let assignment = match Assignment::try_from(assignment) {
        Ok(assignment) => assignment,
        Err(error) => {
            tracing::error!(%error, "malformed assignment");
            return;
        }
    };
    let attempt = assignment.attempt;
    let work = shared.clone();
    let progress = Arc::new(AtomicU64::new(0));
    let attempt_progress = progress.clone();
    let (abort, stop) = AbortHandle::new_pair();
    // Hold the lock across the spawn so the attempt cannot remove itself
    // before it is recorded.
    let mut running = shared.running.lock().expect("running lock");
    tokio::spawn(async move {
        let next = run_attempt(&work, assignment, attempt_progress, stop).await;
        work.running.lock().expect("running lock").remove(&attempt);
        work.attempt_finished.notify_waiters();
        // The report offered one slot, so at most one came back.
        match next.into_iter().next() {
            Some(next) => start(&work, next, slot),
            None => drop(slot),
        }
    });
    running.insert(attempt, RunningAttempt { abort, progress });
}

impl Recovery for Shared {
    async fn fetch_failed(
        &self,
        attempt: AttemptId,
        error: &TaskError,
    ) -> Result<Option<String>, TaskError> {
        let TaskError::Fetch {
            map_attempt, cause, ..
        } = error
        else {
            unreachable!("only fetch failures are reported: {error}")
        };
        let request = pb::FetchFailureReport {
            worker_id: self.worker_id(),
            attempt_id: attempt.to_string(),
            map_attempt_id: map_attempt.to_string(),
            message: error.to_string(),
            worker_unreachable: *cause == FetchFailure::Unreachable,
        };
        tracing::info!(%attempt, %error, "fetch failed; waiting for the map output");
        let response = self
            .call("ReportFetchFailure", |mut client| {
                let request = request.clone();
                async move { client.report_fetch_failure(request).await }
            })
            .await?;
        Ok((!response.wait).then_some(response.reason))
    }

    async fn relocate(&self, attempt: AttemptId) -> Result<Relocation, TaskError> {
        let request = pb::WaitMapOutputsRequest {
            worker_id: self.worker_id(),
            attempt_id: attempt.to_string(),
            wait_ms: RELOCATE_WAIT.as_millis() as u64,
        };
        let response = self
            .call("WaitMapOutputs", |mut client| {
                let request = request.clone();
                async move { client.wait_map_outputs(request).await }
            })
            .await?;
        Ok(match response {
            pb::WaitMapOutputsResponse { stop: true, .. } => Relocation::Stop,
            pb::WaitMapOutputsResponse {
                ready: true,
                map_outputs,
                ..
            } => Relocation::Ready(wire::map_outputs(map_outputs).map_err(|e| {
                TaskError::Coordinator {
                    call: "WaitMapOutputs",
                    status: e.into(),
                }
            })?),
            _ => Relocation::NotYet,
        })
    }
}

impl CommitGate for Shared {
    async fn request_commit(&self, attempt: AttemptId) -> Result<Option<String>, TaskError> {
        let request = pb::CommitRequest {
            worker_id: self.worker_id(),
            attempt_id: attempt.to_string(),
        };
        let response = self
            .call("RequestCommit", |mut client| {
                let request = request.clone();
                async move { client.request_commit(request).await }
            })
            .await?;
        Ok((!response.granted).then_some(response.reason))
    }
}
