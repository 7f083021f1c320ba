//! The client side of the job service, for the CLI and `harrow run`.

use anyhow::{Context, Result};
use futures::StreamExt;
use harrow_core::task::{InputFormat, OutputFormat};
use harrow_proto::v1 as pb;
use harrow_proto::v1::job_service_client::JobServiceClient;
use std::path::{Path, PathBuf};

use harrow_core::rpc::retry::{is_outage, patiently};
use harrow_core::rpc::security::{AuthChannel, ConnectError, Connector, Token, describe_status};

use harrow_coordinator::limits::PLUGIN_CHUNK_BYTES;
use harrow_core::report::{JobReport, WorkerReport};
use harrow_core::rpc::limits::MAX_MESSAGE_BYTES;

use crate::args::JobOptions;

/// How long a follower keeps reconnecting to a coordinator it cannot
/// reach, and how often it tries.
const RECONNECT_FOR: std::time::Duration = std::time::Duration::from_secs(120);
const RECONNECT_DELAY: std::time::Duration = std::time::Duration::from_millis(500);

/// What to submit.
#[derive(Debug, Clone)]
pub struct Submission {
    pub job_name: String,
    pub inputs: Vec<String>,
    pub output: String,
    pub reducers: u32,
    /// `None`: sized by the coordinator.
    pub split_size_bytes: Option<u64>,
    pub args: Vec<(String, String)>,
    pub storage_options: Vec<(String, String)>,
    /// `None`: from the file extensions.
    pub input_format: Option<InputFormat>,
    /// `None`: inferred.
    pub schema: Option<String>,
    pub csv_delimiter: Option<u8>,
    pub skip_bad_records: u64,
    pub output_format: OutputFormat,
    /// A job plugin library to upload; the job is one of its jobs.
    pub plugin: Option<PathBuf>,
}

impl Submission {
    /// A text job with the default settings.
    pub fn new(job_name: &str, inputs: Vec<String>, output: String) -> Self {
        Submission {
            job_name: job_name.to_string(),
            inputs,
            output,
            reducers: 4,
            split_size_bytes: None,
            args: Vec::new(),
            storage_options: Vec::new(),
            input_format: None,
            schema: None,
            csv_delimiter: None,
            skip_bad_records: 0,
            output_format: OutputFormat::Text,
            plugin: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    url: String,
    jobs: JobServiceClient<AuthChannel>,
}

impl Client {
    /// Connects to the coordinator at `url`, presenting `connector`'s
    /// credential on every call.
    pub async fn connect(url: &str, connector: &Connector) -> Result<Client> {
        let channel = connector.connect(url).await.map_err(|e| match e {
            ConnectError::Url { .. } => anyhow::anyhow!("coordinator: {e}"),
            ConnectError::Unreachable { reason, .. } => {
                anyhow::anyhow!("cannot reach the coordinator at {url}: {reason}")
            }
        })?;
        let jobs = JobServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Client {
            url: url.to_string(),
            jobs,
        })
    }

    fn failed(&self, call: &str) -> impl FnOnce(tonic::Status) -> anyhow::Error + '_ {
        let call = call.to_string();
        move |status| {
            anyhow::anyhow!(
                "{call} failed: {} (coordinator {})",
                describe_status(&status),
                self.url
            )
        }
    }

    /// Uploads a plugin library; the coordinator keeps it by content hash.
    pub async fn upload_plugin(&self, path: &Path) -> Result<pb::PluginRef> {
        let bytes = tokio::fs::read(path)
            .await
            .with_context(|| format!("cannot read plugin {}", path.display()))?;
        let file_name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let chunks: Vec<pb::PluginChunk> = bytes
            .chunks(PLUGIN_CHUNK_BYTES)
            .map(|data| pb::PluginChunk {
                file_name: file_name.clone(),
                data: data.to_vec(),
            })
            .collect();
        let response = self
            .jobs
            .clone()
            .upload_plugin(tokio_stream::iter(chunks))
            .await
            .map_err(self.failed("plugin upload"))?
            .into_inner();
        Ok(pb::PluginRef {
            sha256: response.sha256,
            file_name,
        })
    }

    pub async fn submit(&self, submission: Submission) -> Result<String> {
        let plugin = match &submission.plugin {
            Some(path) => Some(self.upload_plugin(path).await?),
            None => None,
        };
        let request = pb::SubmitJobRequest {
            plugin,
            job_name: submission.job_name,
            inputs: submission.inputs,
            output: submission.output,
            reducers: submission.reducers,
            split_size_bytes: submission.split_size_bytes,
            args: submission.args.into_iter().collect(),
            storage_options: submission.storage_options.into_iter().collect(),
            input_format: submission
                .input_format
                .map(|f| f.name().to_string())
                .unwrap_or_default(),
            output_format: submission.output_format.name().to_string(),
            input_schema: submission.schema.unwrap_or_default(),
            csv_delimiter: submission
                .csv_delimiter
                .map(|d| char::from(d).to_string())
                .unwrap_or_default(),
            skip_bad_records: submission.skip_bad_records,
            // The same on every retry: a coordinator that restarted after
            // accepting the job answers with it rather than making another.
            request_id: Token::random()
                .context("drawing a request id")?
                .expose()
                .to_string(),
        };
        let response = patiently("submit", RECONNECT_FOR, RECONNECT_DELAY, || {
            let mut jobs = self.jobs.clone();
            let request = request.clone();
            async move { jobs.submit_job(request).await }
        })
        .await
        .map_err(self.failed("submit"))?;
        Ok(response.into_inner().job_id)
    }

    pub async fn status(&self, job_id: &str, include_tasks: bool) -> Result<JobReport> {
        let request = pb::GetJobRequest {
            job_id: job_id.to_string(),
            include_tasks,
        };
        let status = self
            .jobs
            .clone()
            .get_job(request)
            .await
            .map_err(self.failed("status"))?;
        Ok(status.into_inner().into())
    }

    pub async fn jobs(&self) -> Result<Vec<JobReport>> {
        let response = self
            .jobs
            .clone()
            .list_jobs(pb::ListJobsRequest {})
            .await
            .map_err(self.failed("jobs"))?;
        Ok(response
            .into_inner()
            .jobs
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub async fn workers(&self) -> Result<Vec<WorkerReport>> {
        let response = self
            .jobs
            .clone()
            .list_workers(pb::ListWorkersRequest {})
            .await
            .map_err(self.failed("workers"))?;
        Ok(response
            .into_inner()
            .workers
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub async fn cancel(&self, job_id: &str) -> Result<JobReport> {
        let request = pb::CancelJobRequest {
            job_id: job_id.to_string(),
        };
        self.jobs
            .clone()
            .cancel_job(request)
            .await
            .map_err(self.failed("cancel"))?;
        self.status(job_id, false).await
    }

    /// Calls `on_change` with every new status until the job ends; returns the last.
    pub async fn watch(
        &self,
        job_id: &str,
        on_change: impl FnMut(&JobReport),
    ) -> Result<JobReport> {
        self.follow(job_id, false, on_change).await
    }

    /// Like [`Client::watch`], with every task and attempt in each status
    /// when `include_tasks`. While the coordinator cannot be reached (it
    /// is restarting), it connects again and goes on following, for up to
    /// `RECONNECT_FOR` without an answer.
    pub async fn follow(
        &self,
        job_id: &str,
        include_tasks: bool,
        mut on_change: impl FnMut(&JobReport),
    ) -> Result<JobReport> {
        let request = pb::GetJobRequest {
            job_id: job_id.to_string(),
            include_tasks,
        };
        let mut last: Option<JobReport> = None;
        let mut heard = tokio::time::Instant::now();
        loop {
            let outage = match self.jobs.clone().watch_job(request.clone()).await {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    loop {
                        match stream.next().await {
                            Some(Ok(status)) => {
                                heard = tokio::time::Instant::now();
                                let report = JobReport::from(status);
                                if last.as_ref() != Some(&report) {
                                    on_change(&report);
                                }
                                let terminal = report.is_terminal();
                                last = Some(report);
                                if terminal {
                                    return Ok(last.expect("just set"));
                                }
                            }
                            Some(Err(status)) if is_outage(&status) => break status,
                            Some(Err(status)) => return Err(self.failed("watch")(status)),
                            // The coordinator closed the stream (it is
                            // stopping): follow it again.
                            None => break tonic::Status::unavailable("the watch ended"),
                        }
                    }
                }
                Err(status) if is_outage(&status) => status,
                Err(status) => return Err(self.failed("watch")(status)),
            };
            if heard.elapsed() > RECONNECT_FOR {
                return Err(self.failed("watch")(outage));
            }
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
    }
}

impl JobOptions {
    /// The submission these flags ask for, local paths made absolute.
    pub fn submission(self) -> Submission {
        let job = self;
        Submission {
            job_name: job.job,
            inputs: job.inputs.iter().map(|i| resolve_local(i)).collect(),
            output: resolve_local(&job.output),
            reducers: job.reducers,
            split_size_bytes: job.split_size.bytes(),
            args: job.args,
            storage_options: job.storage_options,
            input_format: job.input_format,
            schema: job.schema,
            csv_delimiter: job.csv_delimiter,
            skip_bad_records: job.skip_bad_records,
            output_format: job.output_format,
            plugin: job
                .plugin
                .map(|path| std::path::absolute(&path).unwrap_or(path)),
        }
    }
}

/// Local paths are relative to where the user runs the command, not to
/// the coordinator's working directory: send them absolute.
fn resolve_local(location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    std::path::absolute(location).map_or_else(|_| location.to_string(), |p| p.display().to_string())
}
