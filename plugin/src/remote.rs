//! The parent's side of a plugin host: starting the child process, building
//! the job in it, and [`RemoteJob`], a [`JobRuntime`] whose every call is a
//! request to the child over its Unix socket. When the child dies (a
//! segfault or abort in job code, the OOM killer, a kill after a stall),
//! calls fail with how it ended, and the next attempt starts a new child.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use harrow_core::task::PluginRef;
use harrow_core::wire::{batch_from_bytes, batch_to_bytes, schema_from_bytes, schema_to_bytes};
use harrow_proto::v1 as pb;
use harrow_proto::v1::plugin_request::Request;
use harrow_proto::v1::plugin_response::Response;
use harrow_sdk::plugin::schema_from_ffi;
use harrow_sdk::{
    Counters, JobError, JobRuntime, JobSchema, KeyGroups, Mapper, TaskInfo, TaskKind,
};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::oneshot;

use crate::limits::EXIT_WAIT;
use crate::protocol::{frame, read_message, read_message_async, write_message};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("could not start the plugin host ({executable} plugin-host): {source}")]
    Spawn {
        executable: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("plugin {plugin}: {message}")]
    Rejected { plugin: String, message: String },
    #[error("plugin {plugin}: the plugin host process {ended} while building job `{job}`")]
    Crashed {
        plugin: String,
        job: String,
        ended: String,
    },
    #[error("plugin {plugin}: job `{job}` was not built within {} s", .timeout.as_secs())]
    Timeout {
        plugin: String,
        job: String,
        timeout: Duration,
    },
    #[error("plugin {plugin}: talking to the plugin host: {source}")]
    Io {
        plugin: String,
        #[source]
        source: std::io::Error,
    },
}

/// What a plugin host is started for.
#[derive(Debug, Clone)]
pub struct HostSpec<'a> {
    /// The `harrow` binary.
    pub executable: &'a Path,
    /// The plugin library on local disk.
    pub library: &'a Path,
    pub plugin: &'a PluginRef,
    pub job_name: &'a str,
    pub args: &'a BTreeMap<String, String>,
    pub input_schema: &'a Schema,
    /// Where the host serves requests; `None` to only build the job (to
    /// check a submission).
    pub socket: Option<PathBuf>,
    /// How long building the job may take.
    pub timeout: Duration,
}

/// A running plugin host for one job.
pub struct PluginHost {
    plugin: String,
    job: String,
    schema: JobSchema,
    socket: Option<PathBuf>,
    /// Idle connections.
    pool: Mutex<Vec<UnixStream>>,
    exit: Arc<ExitWatch>,
    kill: Mutex<Option<oneshot::Sender<()>>>,
    /// Held open: the host exits when it closes.
    _control: tokio::net::UnixStream,
}

/// How the child ended, once it has.
#[derive(Default)]
struct ExitWatch {
    ended: Mutex<Option<String>>,
    changed: Condvar,
}

impl ExitWatch {
    fn set(&self, ended: String) {
        *self.ended.lock().expect("exit lock") = Some(ended);
        self.changed.notify_all();
    }

    /// How the child ended, waiting up to `timeout` for it to end.
    fn wait(&self, timeout: Duration) -> Option<String> {
        let ended = self.ended.lock().expect("exit lock");
        let (ended, _) = self
            .changed
            .wait_timeout_while(ended, timeout, |ended| ended.is_none())
            .expect("exit lock");
        ended.clone()
    }
}

impl PluginHost {
    /// Starts the child, builds the job in it and returns once it answers.
    pub async fn start(spec: HostSpec<'_>) -> Result<PluginHost, HostError> {
        let plugin = spec.plugin.to_string();
        let io = |source| HostError::Io {
            plugin: plugin.clone(),
            source,
        };
        let mut command = Command::new(spec.executable);
        command
            .arg("plugin-host")
            .arg("--library")
            .arg(spec.library);
        if let Some(socket) = &spec.socket {
            command.arg("--socket").arg(socket);
        }
        let spawn_error = |source| HostError::Spawn {
            executable: spec.executable.to_path_buf(),
            source,
        };
        // The control channel is a socket pair: the child's end is its
        // stdin; its stdout goes to our stderr, the log.
        let (control, child_end) = std::os::unix::net::UnixStream::pair().map_err(spawn_error)?;
        let log = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(spawn_error)?;
        command
            .stdin(Stdio::from(OwnedFd::from(child_end)))
            .stdout(Stdio::from(log))
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let child = command.spawn().map_err(spawn_error);
        // The command holds our copy of the child's end: without dropping
        // it, the child's death would not end our reads.
        drop(command);
        let mut child = child?;
        control.set_nonblocking(true).map_err(io)?;
        let mut control = tokio::net::UnixStream::from_std(control).map_err(io)?;
        let create = pb::CreateJob {
            job_name: spec.job_name.to_string(),
            args: spec.args.clone().into_iter().collect(),
            input_schema: schema_to_bytes(spec.input_schema),
        };
        let answer = async {
            // A child that dies at once closes its stdin; the read below
            // then says how it ended.
            let _ = control.write_all(&frame(&create)).await;
            read_message_async::<pb::PluginResponse>(&mut control).await
        };
        let answer = match tokio::time::timeout(spec.timeout, answer).await {
            Ok(answer) => answer.map_err(io)?,
            Err(_) => {
                return Err(HostError::Timeout {
                    plugin,
                    job: spec.job_name.to_string(),
                    timeout: spec.timeout,
                });
            }
        };
        let created = match answer.and_then(|a| a.response) {
            Some(Response::Created(created)) => created,
            Some(Response::Error(message)) => return Err(HostError::Rejected { plugin, message }),
            Some(_) => {
                return Err(HostError::Rejected {
                    plugin,
                    message: "the plugin host answered out of turn".to_string(),
                });
            }
            None => {
                let status = child.wait().await.map_err(io)?;
                return Err(HostError::Crashed {
                    plugin,
                    job: spec.job_name.to_string(),
                    ended: describe_exit(status),
                });
            }
        };
        let schema = schema_from_bytes(&created.job_schema)
            .and_then(|schema| schema_from_ffi(&schema))
            .map_err(|e| HostError::Rejected {
                plugin: plugin.clone(),
                message: format!("bad job schema from the plugin host: {e}"),
            })?;
        let exit = Arc::new(ExitWatch::default());
        let (kill, killed) = oneshot::channel::<()>();
        let watch = exit.clone();
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                _ = killed => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            watch.set(match status {
                Ok(status) => describe_exit(status),
                Err(e) => format!("could not be waited for ({e})"),
            });
        });
        tracing::debug!(%plugin, job = spec.job_name, sdk = %created.sdk_version, "plugin host started");
        Ok(PluginHost {
            plugin,
            job: spec.job_name.to_string(),
            schema,
            socket: spec.socket,
            pool: Mutex::new(Vec::new()),
            exit,
            kill: Mutex::new(Some(kill)),
            _control: control,
        })
    }

    pub fn schema(&self) -> &JobSchema {
        &self.schema
    }

    /// Whether the child has ended.
    pub fn has_exited(&self) -> bool {
        self.exit.ended.lock().expect("exit lock").is_some()
    }

    /// Kills the child: calls in flight fail at once.
    pub fn kill(&self) {
        if let Some(kill) = self.kill.lock().expect("kill lock").take() {
            let _ = kill.send(());
        }
    }

    /// The job, for one attempt.
    pub fn job(self: &Arc<Self>) -> Arc<dyn JobRuntime> {
        Arc::new(RemoteJob {
            host: self.clone(),
            attempt: Mutex::new(String::new()),
        })
    }

    fn connect(&self) -> std::io::Result<UnixStream> {
        if let Some(stream) = self.pool.lock().expect("pool lock").pop() {
            return Ok(stream);
        }
        let socket = self.socket.as_ref().ok_or_else(|| {
            std::io::Error::other("this plugin host only checked a submission and serves no calls")
        })?;
        UnixStream::connect(socket)
    }

    fn release(&self, stream: UnixStream) {
        self.pool.lock().expect("pool lock").push(stream);
    }

    /// The error for a call that could not complete: how the child ended,
    /// if it did.
    fn failure(&self, during: &str, error: std::io::Error) -> JobError {
        match self.exit.wait(EXIT_WAIT) {
            Some(ended) => JobError::job(format!(
                "plugin {}: the plugin host process {ended} while {during} (job `{}`)",
                self.plugin, self.job
            )),
            None => JobError::job(format!(
                "plugin {}: lost the connection to the plugin host while {during}: {error}",
                self.plugin
            )),
        }
    }
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.kill();
        if let Some(socket) = &self.socket {
            let _ = std::fs::remove_file(socket);
        }
    }
}

/// "was killed by signal 11 (SIGSEGV)", "exited with status 3".
fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => {
            let name = match signal {
                4 => " (SIGILL)",
                6 => " (SIGABRT: the job code aborted)",
                7 => " (SIGBUS)",
                8 => " (SIGFPE)",
                9 => " (SIGKILL: killed, or out of memory)",
                11 => " (SIGSEGV: the job code crashed)",
                15 => " (SIGTERM)",
                _ => "",
            };
            format!("was killed by signal {signal}{name}")
        }
        (None, None) => "ended".to_string(),
    }
}

/// A job run by a plugin host, for one attempt.
struct RemoteJob {
    host: Arc<PluginHost>,
    attempt: Mutex<String>,
}

impl RemoteJob {
    fn attempt(&self) -> String {
        self.attempt.lock().expect("attempt lock").clone()
    }

    /// Sends `request` on `stream` and reads the answer. An error here is
    /// the connection's (or the child's); the plugin's own errors come back
    /// as [`Response::Error`].
    fn exchange(
        &self,
        stream: &UnixStream,
        request: Request,
        during: &str,
    ) -> Result<Response, JobError> {
        let message = pb::PluginRequest {
            attempt_id: self.attempt(),
            request: Some(request),
        };
        let (mut writer, mut reader) = (stream, stream);
        write_message(&mut writer, &message).map_err(|e| self.host.failure(during, e))?;
        read_message::<pb::PluginResponse>(&mut reader)
            .map_err(|e| self.host.failure(during, e))?
            .and_then(|r| r.response)
            .ok_or_else(|| {
                self.host
                    .failure(during, std::io::ErrorKind::UnexpectedEof.into())
            })
    }

    /// One request on a pooled connection.
    fn call(&self, request: Request, during: &str) -> Result<Response, JobError> {
        let stream = self
            .host
            .connect()
            .map_err(|e| self.host.failure(during, e))?;
        let response = self.exchange(&stream, request, during)?;
        self.host.release(stream);
        answer(response)
    }

    fn call_groups(
        &self,
        groups: KeyGroups<'_>,
        request: fn(pb::Groups) -> Request,
        during: &str,
    ) -> Result<(RecordBatch, Counters), JobError> {
        let groups = pb::Groups {
            batch: batch_to_bytes(groups.batch()).map_err(JobError::arrow("sending key groups"))?,
            bounds: groups.bounds().iter().map(|&b| b as u64).collect(),
        };
        batch_answer(self.call(request(groups), during)?)
    }
}

impl JobRuntime for RemoteJob {
    fn schema(&self) -> &JobSchema {
        self.host.schema()
    }

    fn start_task(&self, task: &TaskInfo) -> Result<(), JobError> {
        *self.attempt.lock().expect("attempt lock") = task.attempt.clone();
        let start = pb::StartTask {
            reduce: task.kind == TaskKind::Reduce,
            partition: task.partition,
        };
        self.call(Request::Start(start), "starting the task")
            .map(drop)
    }

    fn mapper(&self) -> Box<dyn Mapper + '_> {
        Box::new(RemoteMapper {
            job: self,
            stream: None,
        })
    }

    fn combine(&self, groups: KeyGroups<'_>) -> Result<RecordBatch, JobError> {
        let (batch, _) = self.call_groups(groups, Request::Combine, "combining")?;
        Ok(batch)
    }

    fn reduce(
        &self,
        groups: KeyGroups<'_>,
        counters: &mut Counters,
    ) -> Result<RecordBatch, JobError> {
        let (batch, user) = self.call_groups(groups, Request::Reduce, "reducing")?;
        counters.merge(&user);
        Ok(batch)
    }
}

/// A mapper in the child: the state lives with one connection, held from
/// the first batch to `finish`. Dropped unfinished, the connection closes
/// and the child drops the mapper.
struct RemoteMapper<'j> {
    job: &'j RemoteJob,
    stream: Option<UnixStream>,
}

impl RemoteMapper<'_> {
    fn stream(&mut self) -> Result<&UnixStream, JobError> {
        if self.stream.is_none() {
            let stream = self
                .job
                .host
                .connect()
                .map_err(|e| self.job.host.failure("mapping", e))?;
            self.stream = Some(stream);
        }
        Ok(self.stream.as_ref().expect("connected above"))
    }
}

impl Mapper for RemoteMapper<'_> {
    /// Sends the batch without waiting: the child answers map errors at
    /// `finish`, so decoding the next batch here overlaps mapping this one.
    fn map(&mut self, input: &RecordBatch) -> Result<(), JobError> {
        let bytes = batch_to_bytes(input).map_err(JobError::arrow("sending a map batch"))?;
        let job = self.job;
        let message = pb::PluginRequest {
            attempt_id: job.attempt(),
            request: Some(Request::Map(bytes)),
        };
        let mut stream = self.stream()?;
        write_message(&mut stream, &message).map_err(|e| job.host.failure("mapping", e))
    }

    fn finish(mut self: Box<Self>) -> Result<(RecordBatch, Counters), JobError> {
        let job = self.job;
        let request = Request::FinishMap(pb::FinishMap {});
        let response = job.exchange(self.stream()?, request, "mapping")?;
        if let Some(stream) = self.stream.take() {
            job.host.release(stream);
        }
        batch_answer(response)
    }
}

fn answer(response: Response) -> Result<Response, JobError> {
    match response {
        Response::Error(message) => Err(JobError::job(message)),
        response => Ok(response),
    }
}

fn batch_answer(response: Response) -> Result<(RecordBatch, Counters), JobError> {
    match answer(response)? {
        Response::Batch(batch) => Ok((
            batch_from_bytes(&batch.batch).map_err(JobError::arrow("reading a plugin batch"))?,
            batch.counters.into_iter().collect(),
        )),
        _ => Err(JobError::job("the plugin host answered out of turn")),
    }
}
