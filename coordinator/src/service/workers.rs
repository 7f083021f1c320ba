//! The worker service: registration, heartbeats, task requests, commits,
//! fetch failures and waiting reducers, attempt reports and plugin fetches,
//! each one scheduler event.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use harrow_core::ids::{AttemptId, WorkerId};
use harrow_core::task::FetchFailure;
use harrow_core::wire;
use harrow_proto::v1 as pb;
use harrow_proto::v1::worker_service_server::WorkerService;
use tonic::{Request, Response, Status};

use super::{Coordinator, parse_id, status};
use crate::limits::PLUGIN_CHUNK_BYTES;
use crate::scheduler::{Action, AttemptProgress, Event, FetchReport};

type PluginStream = Pin<Box<dyn Stream<Item = Result<pb::PluginChunk, Status>> + Send>>;

/// The worker-facing service.
#[derive(Clone)]
pub struct WorkerApi(pub Arc<Coordinator>);

#[tonic::async_trait]
impl WorkerService for WorkerApi {
    type FetchPluginStream = PluginStream;

    async fn fetch_plugin(
        &self,
        request: Request<pb::FetchPluginRequest>,
    ) -> Result<Response<PluginStream>, Status> {
        let sha256 = request.into_inner().sha256;
        let path = self.0.plugins.store.path(&sha256)?;
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| status::internal(&path.display().to_string(), e))?;
        let chunks: Vec<Result<pb::PluginChunk, Status>> = bytes
            .chunks(PLUGIN_CHUNK_BYTES)
            .map(|data| {
                Ok(pb::PluginChunk {
                    file_name: String::new(),
                    data: data.to_vec(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let request = request.into_inner();
        if request.slots == 0 {
            return Err(status::invalid("a worker needs at least one slot"));
        }
        let actions = self
            .0
            .register(request.shuffle_address, request.slots, request.incarnation)
            .await?;
        let [Action::WorkerRegistered { worker }] = actions.as_slice() else {
            unreachable!("registration always registers: {actions:?}")
        };
        tracing::info!(%worker, "worker registered");
        Ok(Response::new(pb::RegisterResponse {
            worker_id: worker.to_string(),
            heartbeat_interval_ms: self.0.heartbeat_interval_ms,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let request = request.into_inner();
        let worker: WorkerId = parse_id(&request.worker_id)?;
        let running = request
            .running
            .iter()
            .map(|p| {
                Ok(AttemptProgress {
                    attempt: parse_id(&p.attempt_id)?,
                    bytes: p.bytes,
                })
            })
            .collect::<Result<_, Status>>()?;
        let jobs_with_data = request
            .jobs_with_data
            .iter()
            .map(|j| parse_id(j))
            .collect::<Result<_, _>>()?;
        if request.leaving {
            self.0.apply(Event::WorkerLeft { worker });
            return Ok(Response::new(pb::HeartbeatResponse::default()));
        }
        if request.draining {
            // Idempotent; wakes task requests so none hands it more work.
            self.0.apply(Event::WorkerDraining { worker });
        }
        let mut response = pb::HeartbeatResponse::default();
        for action in self.0.apply(Event::Heartbeat {
            worker,
            incarnation: request.incarnation,
            running,
            jobs_with_data,
        }) {
            match action {
                Action::UnknownWorker { .. } => response.unknown_worker = true,
                Action::KillAttempts { attempts, .. } => {
                    response.kill_attempts = attempts.iter().map(ToString::to_string).collect();
                }
                Action::ReleaseJobs { jobs, .. } => {
                    response.release_jobs = jobs.iter().map(ToString::to_string).collect()
                }
                Action::MayExit { .. } => response.may_exit = true,
                other => unreachable!("heartbeat produced {other:?}"),
            }
        }
        Ok(Response::new(response))
    }

    async fn request_task(
        &self,
        request: Request<pb::TaskRequest>,
    ) -> Result<Response<pb::TaskResponse>, Status> {
        let request = request.into_inner();
        let worker: WorkerId = parse_id(&request.worker_id)?;
        let event = || Event::RequestTasks {
            worker,
            free_slots: request.free_slots,
        };
        let response = self
            .0
            .long_poll(request.wait_ms, event, |actions| {
                let response = task_response(actions);
                let done = !response.assignments.is_empty() || response.unknown_worker;
                (response, done)
            })
            .await;
        self.reduces_assigned(&response.assignments).await;
        Ok(Response::new(response))
    }

    async fn request_commit(
        &self,
        request: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        let request = request.into_inner();
        let worker: WorkerId = parse_id(&request.worker_id)?;
        let attempt: AttemptId = parse_id(&request.attempt_id)?;
        let actions = self.0.apply(Event::RequestCommit { worker, attempt });
        let response = match actions.as_slice() {
            // A grant holds once written: a restarted coordinator knows
            // who holds each partition's commit.
            [Action::CommitGranted { .. }] => {
                self.0.written().await?;
                pb::CommitResponse {
                    granted: true,
                    reason: String::new(),
                }
            }
            [Action::CommitRefused { reason, .. }] => pb::CommitResponse {
                granted: false,
                reason: reason.clone(),
            },
            other => unreachable!("commit request produced {other:?}"),
        };
        Ok(Response::new(response))
    }

    async fn report_fetch_failure(
        &self,
        request: Request<pb::FetchFailureReport>,
    ) -> Result<Response<pb::FetchFailureResponse>, Status> {
        let request = request.into_inner();
        let cause = if request.worker_unreachable {
            FetchFailure::Unreachable
        } else {
            FetchFailure::Corrupt
        };
        let event = Event::FetchFailed(FetchReport {
            reducer: parse_id(&request.worker_id)?,
            attempt: parse_id(&request.attempt_id)?,
            map_attempt: parse_id(&request.map_attempt_id)?,
            message: request.message,
            cause,
        });
        let mut response = pb::FetchFailureResponse::default();
        for action in self.0.apply(event) {
            match action {
                Action::WaitForMapOutputs { .. } => response.wait = true,
                Action::StopAttempt { reason, .. } => response.reason = reason,
                _ => {}
            }
        }
        Ok(Response::new(response))
    }

    async fn wait_map_outputs(
        &self,
        request: Request<pb::WaitMapOutputsRequest>,
    ) -> Result<Response<pb::WaitMapOutputsResponse>, Status> {
        let request = request.into_inner();
        let worker: WorkerId = parse_id(&request.worker_id)?;
        let attempt: AttemptId = parse_id(&request.attempt_id)?;
        let event = || Event::WaitMapOutputs { worker, attempt };
        let response = self
            .0
            .long_poll(request.wait_ms, event, |actions| {
                let mut response = pb::WaitMapOutputsResponse::default();
                for action in actions {
                    match action {
                        Action::MapOutputs { outputs, .. } => {
                            response.ready = true;
                            response.map_outputs = outputs.into_iter().map(Into::into).collect();
                        }
                        Action::StopAttempt { .. } => response.stop = true,
                        other => unreachable!("waiting for map outputs produced {other:?}"),
                    }
                }
                let done = response.ready || response.stop;
                (response, done)
            })
            .await;
        Ok(Response::new(response))
    }

    async fn report_attempt(
        &self,
        request: Request<pb::AttemptReport>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let request = request.into_inner();
        let worker: WorkerId = parse_id(&request.worker_id)?;
        let attempt: AttemptId = parse_id(&request.attempt_id)?;
        let outcome = wire::attempt_outcome(request.outcome)?;
        let counters = request.counters.map(Into::into).unwrap_or_default();
        self.0.apply(Event::AttemptEnded {
            worker,
            attempt,
            counters,
            outcome,
        });
        // Answered once written: the worker holds the attempt (and reports
        // it running) until then, so a restarted coordinator never runs
        // finished work again.
        self.0.written().await?;
        // The freed slot's next task, as a task request would choose it,
        // handed out with nothing to wait for between.
        let assignments = match request.free_slots {
            0 => Vec::new(),
            free_slots => {
                task_response(self.0.apply(Event::RequestTasks { worker, free_slots })).assignments
            }
        };
        self.reduces_assigned(&assignments).await;
        Ok(Response::new(pb::ReportResponse { assignments }))
    }
}

impl WorkerApi {
    /// The `reduce-assigned` failpoint: pauses once reduce assignments about
    /// to be handed out are durable.
    async fn reduces_assigned(&self, assignments: &[pb::TaskAssignment]) {
        let reduces = assignments
            .iter()
            .any(|a| matches!(a.task, Some(pb::task_assignment::Task::Reduce(_))));
        if reduces && self.0.written().await.is_ok() {
            crate::failpoint::pause_at("reduce-assigned").await;
        }
    }
}

/// A task request's reply from the scheduler's actions.
fn task_response(actions: Vec<Action>) -> pb::TaskResponse {
    let mut response = pb::TaskResponse::default();
    for action in actions {
        match action {
            Action::Assign { assignment, .. } => response.assignments.push((*assignment).into()),
            Action::UnknownWorker { .. } => response.unknown_worker = true,
            other => unreachable!("task request produced {other:?}"),
        }
    }
    response
}
