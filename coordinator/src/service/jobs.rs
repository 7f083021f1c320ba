//! The job service: submission (input planning, building the job to check
//! it, sampling for total order), status, listing, watching, cancelling,
//! and plugin uploads.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use harrow_core::ids::JobId;
use harrow_core::registry::RegistryError;
use harrow_core::rpc::security::Token;
use harrow_core::storage::StorageOptions;
use harrow_core::task::{InputSpec, JobSpec, OutputFormat, Partitioner, UnknownFormat};
use harrow_proto::v1 as pb;
use harrow_proto::v1::job_service_server::JobService;
use harrow_sdk::{JobArgs, JobError, JobRuntime, JobSchema, Partitioning};
use tonic::{Request, Response, Status};

use super::{Coordinator, parse_id, status};
use crate::input_plan::{self, InputRequest};
use crate::limits::{
    MAX_MAP_TASKS, MAX_PLUGIN_BYTES, WATCH_INTERVAL, WATCH_PAUSE_FACTOR, WATCH_THROTTLE_TASKS,
};
use crate::planner;
use crate::sample::sample_range_bounds;
use crate::scheduler::{Action, Event, JobPlan};

/// The client-facing service.
#[derive(Clone)]
pub struct JobApi(pub Arc<Coordinator>);

type StatusStream = Pin<Box<dyn Stream<Item = Result<pb::JobStatus, Status>> + Send>>;

impl JobApi {
    fn report(&self, job: JobId, include_tasks: bool) -> Result<pb::JobStatus, Status> {
        self.0.job_status(job, include_tasks)
    }
}

#[tonic::async_trait]
impl JobService for JobApi {
    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let request = request.into_inner();
        // A retry of a submission already accepted: its job, not another.
        if let Some(job) = self.0.job_submitted_as(&request.request_id)? {
            tracing::info!(%job, request = request.request_id, "submission retried");
            return Ok(Response::new(pb::SubmitJobResponse {
                job_id: job.to_string(),
            }));
        }
        let args = JobArgs::new(request.args.clone().into_iter().collect());
        // Names and arguments first, before any storage is touched; the job
        // is built once the input's schema is known. A plugin's job is
        // checked by building it in a plugin host, then.
        let plugin = match &request.plugin {
            Some(plugin) => Some(
                self.0
                    .plugins
                    .store
                    .reference(&plugin.sha256, &plugin.file_name)?,
            ),
            None => {
                let definition = self
                    .0
                    .registry
                    .get(&request.job_name)
                    .map_err(status::registry)?;
                args.check(definition.name, definition.args)
                    .map_err(|e| status::invalid(format!("job `{}`: {e}", definition.name)))?;
                None
            }
        };
        if request.reducers == 0 {
            return Err(status::invalid("--reducers must be at least 1"));
        }
        let input_request = input_request(&request)?;
        let storage = StorageOptions::new(request.storage_options.clone().into_iter().collect());
        let output = planner::check_output(&request.output, &storage).await?;
        let output_format = match request.output_format.as_str() {
            "" => OutputFormat::Text,
            name => name
                .parse()
                .map_err(|e: UnknownFormat| status::invalid(format!("--output-format: {e}")))?,
        };
        // Without inputs, the job must generate its own.
        let generates = request.inputs.is_empty();
        let (files, input) = if generates {
            (Vec::new(), InputSpec::generated())
        } else {
            let files = planner::list_inputs(&request.inputs, &storage).await?;
            let input = input_plan::plan_input(&files, &input_request, &storage).await?;
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
                        return Err(status::invalid("no input given (--input PATH_OR_GLOB)"));
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        let built = built.map_err(|e| {
            if !generates && self.0.builtin_generates(&request.job_name, &args) {
                return status::invalid(format!(
                    "job `{}` generates its own input; drop --input",
                    request.job_name
                ));
            }
            status::invalid(format!("{e} (the input is {read_as})"))
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
                return Err(status::invalid("no input given (--input PATH_OR_GLOB)"));
            }
            (Some(_), false) => {
                return Err(status::invalid(format!(
                    "job `{}` generates its own input; drop --input",
                    request.job_name
                )));
            }
        };
        if splits.len() > MAX_MAP_TASKS {
            return Err(status::invalid(format!(
                "the input makes {} map tasks, over the {MAX_MAP_TASKS} a job may have (a reduce task is told where every map output is, in one message); use larger splits (--split-size) or fewer tasks",
                splits.len()
            )));
        }
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
                        status::invalid(format!(
                            "sampling the input for total-order partitioning: {e}"
                        ))
                    })?;
                Partitioner::Range {
                    bounds: bounds.into(),
                }
            }
            _ => Partitioner::Hash,
        };
        let spec = JobSpec {
            name: request.job_name,
            args: args.as_map().clone(),
            reducers: request.reducers,
            storage,
            input,
            output_format,
            plugin,
            partitioner,
            shuffle_key: Token::random()
                .map_err(|e| status::internal("drawing a shuffle key", e))?,
        };
        let plan = JobPlan {
            spec: Arc::new(spec),
            inputs: request.inputs,
            output: output.to_string(),
            splits,
            request_id: Some(request.request_id).filter(|id| !id.is_empty()),
        };
        match self.0.submit(plan).await?.as_slice() {
            [Action::JobAccepted { job }] => {
                tracing::info!(%job, "job submitted");
                Ok(Response::new(pb::SubmitJobResponse {
                    job_id: job.to_string(),
                }))
            }
            [Action::JobRejected { reason }] => Err(status::refused(reason.clone())),
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
        let jobs = self.0.job_statuses()?;
        Ok(Response::new(pb::ListJobsResponse { jobs }))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::CancelJobResponse>, Status> {
        let job: JobId = parse_id(&request.into_inner().job_id)?;
        self.report(job, false)?;
        self.0.apply(Event::CancelJob { job });
        self.0.written().await?;
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
                let built = tokio::time::Instant::now();
                changes.borrow_and_update();
                let status = match api.report(job, include_tasks) {
                    Ok(status) => status,
                    Err(e) => {
                        let _ = sender.send(Err(e)).await;
                        return;
                    }
                };
                let tasks = [&status.map, &status.reduce]
                    .iter()
                    .map(|phase| phase.as_ref().map_or(0, |p| p.total))
                    .sum::<u32>();
                let pause = match tasks > WATCH_THROTTLE_TASKS {
                    true => WATCH_INTERVAL.max(built.elapsed() * WATCH_PAUSE_FACTOR),
                    false => std::time::Duration::ZERO,
                };
                let terminal = harrow_core::report::JobReport::from(status.clone()).is_terminal();
                if last.as_ref() != Some(&status) {
                    last = Some(status.clone());
                    if sender.send(Ok(status)).await.is_err() {
                        return;
                    }
                }
                if terminal || changes.changed().await.is_err() {
                    return;
                }
                if !pause.is_zero() {
                    tokio::time::sleep_until(built + pause).await;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn list_workers(
        &self,
        _request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let workers = self
            .0
            .worker_reports()
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
                return Err(status::too_large(format!(
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
            .map_err(|e| status::internal("storing the plugin", e))??;
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
        name => Some(
            name.parse()
                .map_err(|e: UnknownFormat| status::invalid(format!("--input-format: {e}")))?,
        ),
    };
    let csv_delimiter = match request.csv_delimiter.as_bytes() {
        [] => None,
        [byte] if *byte != b'"' && *byte != b'\n' => Some(*byte),
        _ => {
            return Err(status::invalid(format!(
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
