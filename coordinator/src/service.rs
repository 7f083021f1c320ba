//! The coordinator's gRPC services, a thin layer around the scheduler:
//! convert the request to an [`Event`], apply it under the lock with the
//! clock's time, carry out side effects, convert the reply. Protobuf types
//! stop here.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use harrow_core::ids::{AttemptId, JobId, WorkerId};
use harrow_core::registry::{JobRegistry, RegistryError};
use harrow_core::rpc::health::probe_shuffle;
use harrow_core::rpc::security::{Connector, Token};
use harrow_core::storage::{Location, StorageOptions};
use harrow_core::task::{
    FetchFailure, InputSpec, OutputFormat, Partitioner, PluginRef, SUCCESS_FILE, TEMPORARY_DIR,
    UnknownFormat,
};
use harrow_core::wire;
use harrow_plugin::{CREATE_TIMEOUT, HostSpec, PluginHost};
use harrow_proto::v1 as pb;
use harrow_proto::v1::job_service_server::JobService;
use harrow_proto::v1::worker_service_server::WorkerService;
use harrow_sdk::{JobArgs, JobError, JobRuntime, JobSchema, Partitioning};
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::{Notify, watch};
use tonic::{Request, Response, Status};

use crate::clock::Clock;
use crate::input_plan::{self, InputRequest};
use crate::planner;
use crate::plugins::{MAX_PLUGIN_BYTES, PluginStore};
use crate::report::{job_report, worker_reports};
use crate::sample::sample_range_bounds;
use crate::scheduler::{Action, AttemptProgress, Event, FetchReport, JobPlan, Scheduler};

/// The longest a worker's task request may wait for work.
const MAX_TASK_WAIT: Duration = Duration::from_secs(30);

/// Where uploaded plugins live, and the `harrow` binary that runs one in
/// a child process to check a submission.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    pub store: PluginStore,
    pub executable: PathBuf,
}

/// State shared by the services.
pub struct Coordinator {
    scheduler: Mutex<Scheduler>,
    clock: Arc<dyn Clock>,
    registry: Arc<JobRegistry>,
    plugins: PluginSettings,
    heartbeat_interval_ms: u64,
    /// How the coordinator reaches workers to probe a suspect one.
    connector: Connector,
    /// Woken whenever work may have become available.
    work_available: Notify,
    /// Bumped on every state change, for status watchers.
    version: watch::Sender<u64>,
}

impl Coordinator {
    pub fn new(
        scheduler: Scheduler,
        clock: Arc<dyn Clock>,
        registry: Arc<JobRegistry>,
        plugins: PluginSettings,
        heartbeat_interval_ms: u64,
        connector: Connector,
    ) -> Arc<Self> {
        Arc::new(Coordinator {
            scheduler: Mutex::new(scheduler),
            clock,
            registry,
            plugins,
            heartbeat_interval_ms,
            connector,
            work_available: Notify::new(),
            version: watch::Sender::new(0),
        })
    }

    /// The cluster's metrics in the Prometheus text format.
    pub fn metrics(&self) -> String {
        crate::metrics::render(&self.scheduler.lock().expect("scheduler lock"))
    }

    /// Applies one event and starts the side effects it calls for.
    fn apply(self: &Arc<Self>, event: Event) -> Vec<Action> {
        // Task requests and heartbeats change nothing worth waking anyone
        // for unless they return actions. Ticks always wake waiting task
        // requests: time passing alone can make work available (a worker
        // declared dead, an attempt now stalled).
        let is_poll = matches!(
            event,
            Event::RequestTasks { .. } | Event::Heartbeat { .. } | Event::WaitMapOutputs { .. }
        );
        let actions = {
            let mut scheduler = self.scheduler.lock().expect("scheduler lock");
            scheduler.handle(event, self.clock.now_ms())
        };
        for action in &actions {
            match action {
                Action::CommitJob { job, output } => self.spawn_commit(*job, output.clone()),
                Action::AbortJobOutput { job, output } => {
                    let output = output.clone();
                    let job = *job;
                    let storage = self.storage_of(job);
                    tokio::spawn(async move {
                        if let Err(error) = clear_temporary(&output, &storage).await {
                            tracing::warn!(%job, %error, "could not clear temporary output");
                        }
                    });
                }
                Action::JobFinished { job, state } => {
                    tracing::info!(%job, state = state.name(), "job finished")
                }
                Action::ProbeWorker { worker, address } => {
                    self.spawn_probe(*worker, address.clone())
                }
                Action::JobAccepted { .. }
                | Action::JobRejected { .. }
                | Action::WorkerRegistered { .. }
                | Action::UnknownWorker { .. }
                | Action::Assign { .. }
                | Action::CommitGranted { .. }
                | Action::CommitRefused { .. }
                | Action::WaitForMapOutputs { .. }
                | Action::MapOutputs { .. }
                | Action::StopAttempt { .. }
                | Action::KillAttempts { .. }
                | Action::ReleaseJobs { .. }
                | Action::MayExit { .. } => {}
            }
        }
        if !is_poll || !actions.is_empty() {
            self.work_available.notify_waiters();
            self.version.send_modify(|v| *v += 1);
        }
        actions
    }

    /// Builds a plugin's job in a plugin host of its own, as a worker will,
    /// to check its name and arguments against the input's schema. With a
    /// `socket`, the host also serves the job there.
    async fn check_plugin_job(
        &self,
        plugin: &PluginRef,
        request: &pb::SubmitJobRequest,
        input_schema: &arrow::datatypes::Schema,
        socket: Option<PathBuf>,
    ) -> Result<Arc<PluginHost>, String> {
        let library = self
            .plugins
            .store
            .path(&plugin.sha256)
            .map_err(|e| e.to_string())?;
        let args = request.args.clone().into_iter().collect();
        PluginHost::start(HostSpec {
            executable: &self.plugins.executable,
            library: &library,
            plugin,
            job_name: &request.job_name,
            args: &args,
            input_schema,
            socket,
            timeout: CREATE_TIMEOUT,
        })
        .await
        .map(Arc::new)
        .map_err(|e| e.to_string())
    }

    /// Whether `name` is a built-in job that generates its input.
    fn builtin_generates(&self, name: &str, args: &JobArgs) -> bool {
        let args = args
            .clone()
            .with_input_schema(harrow_sdk::generated_schema());
        self.registry
            .instantiate(name, &args)
            .is_ok_and(|job| job.schema().generated.is_some())
    }

    /// A plugin's job served by a plugin host of the coordinator's own, to
    /// sample its map output; the host ends when the job is dropped.
    async fn sampling_plugin_job(
        &self,
        plugin: &PluginRef,
        request: &pb::SubmitJobRequest,
        input_schema: &arrow::datatypes::Schema,
    ) -> Result<(Arc<dyn JobRuntime>, tempfile::TempDir), Status> {
        // A short path of its own: socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("harrow-sample")
            .tempdir()
            .map_err(|e| Status::internal(format!("creating a directory for sampling: {e}")))?;
        let socket = dir.path().join("job.sock");
        let host = self
            .check_plugin_job(plugin, request, input_schema, Some(socket))
            .await
            .map_err(Status::invalid_argument)?;
        Ok((host.job(), dir))
    }

    /// Applies `event` until `answer` says its actions make a reply, or
    /// `wait_ms` (at most [`MAX_TASK_WAIT`]) passes; then the last reply.
    /// Each look registers for a wake-up first, so a change between the
    /// look and the wait still wakes it.
    async fn long_poll<R>(
        self: &Arc<Self>,
        wait_ms: u64,
        event: impl Fn() -> Event,
        answer: impl Fn(Vec<Action>) -> (R, bool),
    ) -> R {
        let wait = Duration::from_millis(wait_ms).min(MAX_TASK_WAIT);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.work_available.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (reply, done) = answer(self.apply(event()));
            if done || tokio::time::timeout_at(deadline, notified).await.is_err() {
                return reply;
            }
        }
    }

    /// Lets the scheduler notice time passing.
    pub fn tick(self: &Arc<Self>) {
        self.apply(Event::Tick);
    }

    /// The storage options a job was submitted with.
    fn storage_of(&self, job: JobId) -> StorageOptions {
        let scheduler = self.scheduler.lock().expect("scheduler lock");
        scheduler
            .job(job)
            .map(|j| j.plan.storage.clone())
            .unwrap_or_default()
    }

    /// Checks a suspect worker's shuffle service, then tells the scheduler.
    fn spawn_probe(self: &Arc<Self>, worker: WorkerId, address: String) {
        tracing::info!(%worker, %address, "probing a worker's shuffle service");
        let coordinator = self.clone();
        let timeout = {
            let scheduler = self.scheduler.lock().expect("scheduler lock");
            Duration::from_millis(scheduler.config().suspect_timeout_ms)
        };
        tokio::spawn(async move {
            let result = probe_shuffle(&coordinator.connector, &address, timeout).await;
            if let Err(failure) = &result {
                tracing::warn!(%worker, error = %failure.message, refused = failure.refused, "worker probe failed");
            }
            coordinator.apply(Event::ProbeEnded { worker, result });
        });
    }

    /// Writes `_SUCCESS` and clears `_temporary`, then tells the scheduler.
    fn spawn_commit(self: &Arc<Self>, job: JobId, output: String) {
        let coordinator = self.clone();
        let storage = self.storage_of(job);
        tokio::spawn(async move {
            let error = commit_job_output(&output, &storage).await.err();
            coordinator.apply(Event::JobCommitEnded { job, error });
        });
    }
}

async fn commit_job_output(output: &str, storage: &StorageOptions) -> Result<(), String> {
    clear_temporary(output, storage).await?;
    let location = Location::parse_with(output, storage).map_err(|e| e.to_string())?;
    let marker = location.child(SUCCESS_FILE);
    location
        .store()
        .put(marker.path(), Vec::<u8>::new().into())
        .await
        .map_err(|e| format!("writing {marker}: {e}"))?;
    Ok(())
}

async fn clear_temporary(output: &str, storage: &StorageOptions) -> Result<(), String> {
    use futures::TryStreamExt;
    let location = Location::parse_with(output, storage).map_err(|e| e.to_string())?;
    let temporary = location.child(TEMPORARY_DIR);
    if let Some(path) = temporary.local_path() {
        // Removes links themselves and never follows them: a link planted
        // under the output cannot turn the clean-up on files outside it.
        return match tokio::fs::remove_dir_all(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("deleting {}: {e}", path.display())),
        };
    }
    let store: &Arc<dyn ObjectStore> = temporary.store();
    let listed: Vec<_> = match store.list(Some(temporary.path())).try_collect().await {
        Ok(listed) => listed,
        Err(object_store::Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(format!("listing {temporary}: {e}")),
    };
    for meta in listed {
        match store.delete(&meta.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(format!("deleting {}: {e}", meta.location)),
        }
    }
    Ok(())
}

/// A submitted job, built to check it: a built-in job itself, or the schema
/// a plugin host reported for a plugin's job.
enum Built {
    Builtin(Arc<dyn JobRuntime>),
    Plugin(JobSchema),
}

impl Built {
    fn schema(&self) -> &JobSchema {
        match self {
            Built::Builtin(job) => job.schema(),
            Built::Plugin(schema) => schema,
        }
    }
}

/// The input settings of a submission, checked.
fn input_request(request: &pb::SubmitJobRequest) -> Result<InputRequest, Status> {
    let format = match request.input_format.as_str() {
        "" => None,
        name => Some(name.parse().map_err(|e: UnknownFormat| {
            Status::invalid_argument(format!("--input-format: {e}"))
        })?),
    };
    let csv_delimiter = match request.csv_delimiter.as_bytes() {
        [] => None,
        [byte] if *byte != b'"' && *byte != b'\n' => Some(*byte),
        _ => {
            return Err(Status::invalid_argument(format!(
                "--csv-delimiter {:?} must be one character other than a quote or a line break",
                request.csv_delimiter
            )));
        }
    };
    Ok(InputRequest {
        format,
        schema: (!request.input_schema.is_empty()).then(|| request.input_schema.clone()),
        csv_delimiter,
        skip_bad_records: request.skip_bad_records,
    })
}

fn parse_id<T: std::str::FromStr<Err = harrow_core::ids::IdError>>(
    text: &str,
) -> Result<T, Status> {
    text.parse()
        .map_err(|e: harrow_core::ids::IdError| Status::invalid_argument(e.to_string()))
}

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
        let path = self
            .0
            .plugins
            .store
            .path(&sha256)
            .map_err(|e| Status::not_found(e.to_string()))?;
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| Status::internal(format!("{}: {e}", path.display())))?;
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
            return Err(Status::invalid_argument("a worker needs at least one slot"));
        }
        let actions = self.0.apply(Event::RegisterWorker {
            shuffle_address: request.shuffle_address,
            slots: request.slots,
        });
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
                let mut response = pb::TaskResponse::default();
                for action in actions {
                    match action {
                        Action::Assign { assignment, .. } => {
                            response.assignments.push((*assignment).into())
                        }
                        Action::UnknownWorker { .. } => response.unknown_worker = true,
                        other => unreachable!("task request produced {other:?}"),
                    }
                }
                let done = !response.assignments.is_empty() || response.unknown_worker;
                (response, done)
            })
            .await;
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
            [Action::CommitGranted { .. }] => pb::CommitResponse {
                granted: true,
                reason: String::new(),
            },
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
        Ok(Response::new(pb::ReportResponse {}))
    }
}

/// The client-facing service.
#[derive(Clone)]
pub struct JobApi(pub Arc<Coordinator>);

type PluginStream = Pin<Box<dyn Stream<Item = Result<pb::PluginChunk, Status>> + Send>>;

/// Plugin bytes per message, well under the message size limit.
pub const PLUGIN_CHUNK_BYTES: usize = 1 << 20;

type StatusStream = Pin<Box<dyn Stream<Item = Result<pb::JobStatus, Status>> + Send>>;

impl JobApi {
    fn report(&self, job: JobId, include_tasks: bool) -> Result<pb::JobStatus, Status> {
        let scheduler = self.0.scheduler.lock().expect("scheduler lock");
        let job = scheduler
            .job(job)
            .ok_or_else(|| Status::not_found(format!("no job {job}")))?;
        Ok(job_report(&scheduler, job, include_tasks).into())
    }
}

#[tonic::async_trait]
impl JobService for JobApi {
    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let request = request.into_inner();
        let args = JobArgs::new(request.args.clone().into_iter().collect());
        // Names and arguments first, before any storage is touched; the job
        // is built once the input's schema is known. A plugin's job is
        // checked by building it in a plugin host, then.
        let plugin = match &request.plugin {
            Some(plugin) => Some(
                self.0
                    .plugins
                    .store
                    .reference(&plugin.sha256, &plugin.file_name)
                    .map_err(|e| Status::failed_precondition(e.to_string()))?,
            ),
            None => {
                let definition = self
                    .0
                    .registry
                    .get(&request.job_name)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                args.check(definition.name, definition.args).map_err(|e| {
                    Status::invalid_argument(format!("job `{}`: {e}", definition.name))
                })?;
                None
            }
        };
        if request.reducers == 0 {
            return Err(Status::invalid_argument("--reducers must be at least 1"));
        }
        let plan_error = |e: planner::PlanError| match e {
            planner::PlanError::MissingInput { .. } | planner::PlanError::NoMatch { .. } => {
                Status::not_found(e.to_string())
            }
            planner::PlanError::OutputExists { .. } => Status::already_exists(e.to_string()),
            _ => Status::invalid_argument(e.to_string()),
        };
        let input_request = input_request(&request)?;
        let storage = StorageOptions::new(request.storage_options.clone().into_iter().collect());
        let output = planner::check_output(&request.output, &storage)
            .await
            .map_err(plan_error)?;
        let output_format = match request.output_format.as_str() {
            "" => OutputFormat::Text,
            name => name.parse().map_err(|e: UnknownFormat| {
                Status::invalid_argument(format!("--output-format: {e}"))
            })?,
        };
        // Without inputs, the job must generate its own.
        let generates = request.inputs.is_empty();
        let (files, input) = if generates {
            (Vec::new(), InputSpec::generated())
        } else {
            let files = planner::list_inputs(&request.inputs, &storage)
                .await
                .map_err(plan_error)?;
            let input = input_plan::plan_input(&files, &input_request, &storage)
                .await
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            (files, input)
        };
        let read_as = if generates {
            "generated".to_string()
        } else {
            format!("read as {}", input.format)
        };
        // With the input's schema known, the job checks it can read it.
        let built = match &plugin {
            Some(plugin) => self
                .0
                .check_plugin_job(plugin, &request, &input.schema, None)
                .await
                .map(|host| Built::Plugin(host.schema().clone())),
            None => {
                let with_input = args.clone().with_input_schema(input.schema.clone());
                match self.0.registry.instantiate(&request.job_name, &with_input) {
                    Ok(job) => Ok(Built::Builtin(job)),
                    // A job that reads columns, given none.
                    Err(RegistryError::Job {
                        source: JobError::InputColumns { .. },
                        ..
                    }) if generates => {
                        return Err(Status::invalid_argument(
                            "no input given (--input PATH_OR_GLOB)",
                        ));
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        let built = built.map_err(|e| {
            if !generates && self.0.builtin_generates(&request.job_name, &args) {
                return Status::invalid_argument(format!(
                    "job `{}` generates its own input; drop --input",
                    request.job_name
                ));
            }
            Status::invalid_argument(format!("{e} (the input is {read_as})"))
        })?;
        let schema = built.schema().clone();
        let splits = match (schema.generated, generates) {
            (Some(generated), true) => planner::row_splits(generated),
            (None, false) => {
                let split_size = request.split_size_bytes.unwrap_or_else(|| {
                    let slots = self
                        .0
                        .scheduler
                        .lock()
                        .expect("scheduler lock")
                        .live_slots();
                    planner::auto_split_size(&files, slots)
                });
                planner::splits(&files, split_size)
            }
            (None, true) => {
                return Err(Status::invalid_argument(
                    "no input given (--input PATH_OR_GLOB)",
                ));
            }
            (Some(_), false) => {
                return Err(Status::invalid_argument(format!(
                    "job `{}` generates its own input; drop --input",
                    request.job_name
                )));
            }
        };
        let partitioner = match schema.partitioning {
            Partitioning::TotalOrder if request.reducers > 1 => {
                let mut _sampling_dir = None;
                let job = match built {
                    Built::Builtin(job) => job,
                    Built::Plugin(_) => {
                        let plugin = plugin.as_ref().expect("a plugin job has a plugin");
                        let (job, dir) = self
                            .0
                            .sampling_plugin_job(plugin, &request, &input.schema)
                            .await?;
                        _sampling_dir = Some(dir);
                        job
                    }
                };
                let bounds = sample_range_bounds(job, &splits, &input, &storage, request.reducers)
                    .await
                    .map_err(|e| {
                        Status::invalid_argument(format!(
                            "sampling the input for total-order partitioning: {e}"
                        ))
                    })?;
                Partitioner::Range {
                    bounds: bounds.into(),
                }
            }
            _ => Partitioner::Hash,
        };
        let plan = JobPlan {
            name: request.job_name,
            args: args.as_map().clone(),
            inputs: request.inputs,
            output: output.to_string(),
            reducers: request.reducers,
            splits,
            storage,
            input,
            output_format,
            plugin,
            partitioner,
            shuffle_key: Token::random()
                .map_err(|e| Status::internal(format!("drawing a shuffle key: {e}")))?,
        };
        match self.0.apply(Event::SubmitJob { plan }).as_slice() {
            [Action::JobAccepted { job }] => {
                tracing::info!(%job, "job submitted");
                Ok(Response::new(pb::SubmitJobResponse {
                    job_id: job.to_string(),
                }))
            }
            [Action::JobRejected { reason }] => Err(Status::failed_precondition(reason.clone())),
            other => unreachable!("submit produced {other:?}"),
        }
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::JobStatus>, Status> {
        let request = request.into_inner();
        Ok(Response::new(self.report(
            parse_id(&request.job_id)?,
            request.include_tasks,
        )?))
    }

    async fn list_jobs(
        &self,
        _request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let scheduler = self.0.scheduler.lock().expect("scheduler lock");
        let jobs = scheduler
            .jobs()
            .rev()
            .map(|job| job_report(&scheduler, job, false).into())
            .collect();
        Ok(Response::new(pb::ListJobsResponse { jobs }))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::CancelJobResponse>, Status> {
        let job: JobId = parse_id(&request.into_inner().job_id)?;
        self.report(job, false)?;
        self.0.apply(Event::CancelJob { job });
        let state = self.report(job, false)?.state;
        Ok(Response::new(pb::CancelJobResponse { state }))
    }

    type WatchJobStream = StatusStream;

    async fn watch_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let request = request.into_inner();
        let job: JobId = parse_id(&request.job_id)?;
        let include_tasks = request.include_tasks;
        self.report(job, false)?;
        let api = self.clone();
        let mut changes = self.0.version.subscribe();
        let stream = async_stream(move |sender| async move {
            let mut last = None;
            loop {
                changes.borrow_and_update();
                let status = match api.report(job, include_tasks) {
                    Ok(status) => status,
                    Err(e) => {
                        let _ = sender.send(Err(e)).await;
                        return;
                    }
                };
                let terminal = crate::report::JobReport::from(status.clone()).is_terminal();
                if last.as_ref() != Some(&status) {
                    last = Some(status.clone());
                    if sender.send(Ok(status)).await.is_err() {
                        return;
                    }
                }
                if terminal || changes.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn list_workers(
        &self,
        _request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let scheduler = self.0.scheduler.lock().expect("scheduler lock");
        let workers = worker_reports(&scheduler)
            .into_iter()
            .map(Into::into)
            .collect();
        Ok(Response::new(pb::ListWorkersResponse { workers }))
    }

    async fn upload_plugin(
        &self,
        request: Request<tonic::Streaming<pb::PluginChunk>>,
    ) -> Result<Response<pb::UploadPluginResponse>, Status> {
        let mut chunks = request.into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = chunks.message().await? {
            if bytes.len() + chunk.data.len() > MAX_PLUGIN_BYTES {
                return Err(Status::resource_exhausted(format!(
                    "plugin is larger than {} MiB",
                    MAX_PLUGIN_BYTES >> 20
                )));
            }
            bytes.extend_from_slice(&chunk.data);
        }
        let size = bytes.len() as u64;
        let store = self.0.plugins.store.clone();
        let (sha256, stored) = tokio::task::spawn_blocking(move || store.store(&bytes))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(%sha256, bytes = size, stored, "plugin uploaded");
        Ok(Response::new(pb::UploadPluginResponse {
            sha256,
            bytes: size,
            stored,
        }))
    }
}

/// A stream fed by a task through a small bounded channel.
fn async_stream<F, Fut>(produce: F) -> StatusStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::JobStatus, Status>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    tokio::spawn(produce(sender));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))
}
