//! The plugin host: the child process (`harrow plugin-host`) that loads one
//! job plugin for one job and runs its code, so that a crash, an abort or an
//! endless loop in user code takes down this process, not the worker.
//!
//! Its stdin is one end of a Unix socket pair, the control channel: it reads
//! a `CreateJob` there, loads the library, builds the job and answers there.
//! (Its stdout is the parent's stderr, so a `println!` in job code lands in
//! the log and cannot corrupt the protocol.) With a socket path it then
//! serves map, combine and reduce requests on that Unix socket, a thread per
//! connection (each connection holds at most one mapper). It exits when the
//! control channel closes, which is when its parent drops it or dies.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::io::BufReader;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use harrow_core::wire::{batch_to_bytes, schema_from_bytes, schema_to_bytes};
use harrow_proto::v1 as pb;
use harrow_proto::v1::plugin_request::Request;
use harrow_proto::v1::plugin_response::Response;
use harrow_sdk::plugin::schema_to_ffi;
use harrow_sdk::{Counters, JobError, JobRuntime, KeyGroups, Mapper, TaskInfo, TaskKind};

use crate::library::{FfiJob, Plugin};
use crate::protocol::{read_message, write_message};

thread_local! {
    /// The attempt the current thread works for, for the plugin's log lines.
    static ATTEMPT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Runs the host until stdin closes. Errors building the job go to the
/// parent as a response; the returned error is for failures to talk to it.
pub fn run_host(library: &Path, socket: Option<&Path>) -> std::io::Result<()> {
    prefer_as_oom_victim();
    let mut control = UnixStream::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let Some(create) = read_message::<pb::CreateJob>(&mut control)? else {
        return Ok(());
    };
    let response = match build(library, create) {
        Ok((created, job)) => match socket.map(bind).transpose() {
            Ok(Some(listener)) => {
                let job: &'static FfiJob = Box::leak(Box::new(job));
                std::thread::spawn(move || accept(listener, job));
                Response::Created(created)
            }
            // Only checking a submission: nothing to serve.
            Ok(None) => Response::Created(created),
            Err(message) => Response::Error(message),
        },
        Err(message) => Response::Error(message),
    };
    write_message(
        &mut control,
        &pb::PluginResponse {
            response: Some(response),
        },
    )?;
    // Serve until the parent closes the control channel.
    std::io::copy(&mut control, &mut std::io::sink())?;
    Ok(())
}

/// Asks the kernel to pick this process first when memory runs out, so job
/// code that allocates without bound ends its own host (failing the
/// attempt), not the worker beside it. Raising one's own score needs no
/// privilege; where /proc is not writable, nothing changes.
fn prefer_as_oom_victim() {
    if let Err(error) = std::fs::write("/proc/self/oom_score_adj", "1000") {
        tracing::debug!(%error, "could not raise the plugin host's OOM score");
    }
}

fn build(library: &Path, create: pb::CreateJob) -> Result<(pb::JobCreated, FfiJob), String> {
    let plugin = Plugin::load(library).map_err(|e| e.to_string())?;
    plugin.init_logging(log_record, max_log_level());
    let input = schema_from_bytes(&create.input_schema)
        .map_err(|e| format!("bad input schema from the worker: {e}"))?;
    let args = create.args.into_iter().collect();
    let job = plugin
        .create(&create.job_name, &args, &input)
        .map_err(|e| format!("job `{}`: {e}", create.job_name))?;
    let created = pb::JobCreated {
        job_schema: schema_to_bytes(&schema_to_ffi(job.schema())),
        sdk_version: plugin.sdk_version(),
    };
    Ok((created, job))
}

fn bind(path: &Path) -> Result<UnixListener, String> {
    // A socket left by an earlier host of the same job.
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path).map_err(|e| format!("plugin host socket {}: {e}", path.display()))
}

fn accept(listener: UnixListener, job: &'static FfiJob) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                std::thread::spawn(move || {
                    if let Err(error) = serve(stream, job) {
                        tracing::debug!(%error, "plugin connection ended");
                    }
                });
            }
            Err(error) => tracing::warn!(%error, "plugin host accept failed"),
        }
    }
}

/// Serves one connection until the worker closes it.
fn serve(stream: UnixStream, job: &'static FfiJob) -> std::io::Result<()> {
    let mut reader = BufReader::new(&stream);
    let mut writer = &stream;
    let mut mapping = Mapping::default();
    while let Some(request) = read_message::<pb::PluginRequest>(&mut reader)? {
        ATTEMPT.with(|attempt| {
            let mut attempt = attempt.borrow_mut();
            attempt.clear();
            attempt.push_str(&request.attempt_id);
        });
        let response = match request.request {
            Some(request) => match handle(job, &mut mapping, request) {
                Ok(Some(response)) => response,
                Ok(None) => continue,
                Err(e) => Response::Error(e.to_string()),
            },
            None => Response::Error("empty plugin request".to_string()),
        };
        write_message(
            &mut writer,
            &pb::PluginResponse {
                response: Some(response),
            },
        )?;
    }
    Ok(())
}

/// A connection's mapper, and the first error it met.
#[derive(Default)]
struct Mapping {
    mapper: Option<Box<dyn Mapper + 'static>>,
    error: Option<JobError>,
}

impl Mapping {
    fn map(&mut self, job: &'static FfiJob, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let mapped = batch_from_worker(bytes)
            .map_err(JobError::arrow("reading a map batch"))
            .and_then(|batch| self.mapper.get_or_insert_with(|| job.mapper()).map(&batch));
        if let Err(error) = mapped {
            self.mapper = None;
            self.error = Some(error);
        }
    }

    fn finish(&mut self, job: &'static FfiJob) -> Result<Response, JobError> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        let (batch, counters) = self
            .mapper
            .take()
            .unwrap_or_else(|| job.mapper())
            .finish()?;
        batch_response(&batch, &counters)
    }
}

/// The answer to a request; `None` for a batch to map, which gets none so
/// the worker can decode the next while this one maps (the first error
/// answers `finish_map`).
fn handle(
    job: &'static FfiJob,
    mapping: &mut Mapping,
    request: Request,
) -> Result<Option<Response>, JobError> {
    let done = Response::Done(pb::PluginDone {});
    Ok(Some(match request {
        Request::Start(start) => {
            let attempt = ATTEMPT.with(|a| a.borrow().clone());
            job.start_task(&TaskInfo {
                attempt,
                kind: if start.reduce {
                    TaskKind::Reduce
                } else {
                    TaskKind::Map
                },
                partition: start.partition,
            })?;
            done
        }
        Request::Map(bytes) => {
            mapping.map(job, &bytes);
            return Ok(None);
        }
        Request::FinishMap(_) => mapping.finish(job)?,
        Request::Combine(groups) => {
            let (batch, bounds) = read_groups(&groups)?;
            let combined = job.combine(KeyGroups::try_new(&batch, &bounds)?)?;
            batch_response(&combined, &Counters::default())?
        }
        Request::Reduce(groups) => {
            let (batch, bounds) = read_groups(&groups)?;
            let mut counters = Counters::default();
            let output = job.reduce(KeyGroups::try_new(&batch, &bounds)?, &mut counters)?;
            batch_response(&output, &counters)?
        }
    }))
}

fn read_groups(groups: &pb::Groups) -> Result<(RecordBatch, Vec<usize>), JobError> {
    let batch = batch_from_worker(&groups.batch).map_err(JobError::arrow("reading key groups"))?;
    Ok((batch, groups.bounds.iter().map(|&b| b as usize).collect()))
}

/// A batch the worker encoded, decoded without validating it again: the
/// bytes come from the worker's own Arrow writer over a socket in its work
/// dir, and re-checking every string's UTF-8 here cost about a tenth of a
/// plugin word count's CPU time (the worker checked it decoding the input).
fn batch_from_worker(bytes: &[u8]) -> Result<RecordBatch, arrow::error::ArrowError> {
    // SAFETY: the data is valid Arrow written by the worker's StreamWriter.
    let mut reader = unsafe { StreamReader::try_new(bytes, None)?.with_skip_validation(true) };
    match reader.next() {
        Some(batch) => batch,
        None => Ok(RecordBatch::new_empty(reader.schema())),
    }
}

fn batch_response(batch: &RecordBatch, counters: &Counters) -> Result<Response, JobError> {
    Ok(Response::Batch(pb::PluginBatch {
        batch: batch_to_bytes(batch).map_err(JobError::arrow("writing a batch"))?,
        counters: counters
            .iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect(),
    }))
}

/// The host's log level as the plugin ABI counts it (1 error … 5 trace).
fn max_log_level() -> u32 {
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        LevelFilter::OFF => 0,
        LevelFilter::ERROR => 1,
        LevelFilter::WARN => 2,
        LevelFilter::INFO => 3,
        LevelFilter::DEBUG => 4,
        _ => 5,
    }
}

/// Where the plugin's `log` records arrive: re-emitted as tracing events of
/// this process (whose stderr is the worker's) with the attempt they
/// belong to.
unsafe extern "C" fn log_record(
    level: u32,
    target: *const u8,
    target_len: usize,
    message: *const u8,
    message_len: usize,
) {
    let text = |ptr: *const u8, len: usize| {
        if len == 0 {
            return String::new();
        }
        // SAFETY: the plugin passes byte slices valid for this call.
        String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(ptr, len) }).into_owned()
    };
    let (target, message) = (text(target, target_len), text(message, message_len));
    let _ = std::panic::catch_unwind(|| {
        ATTEMPT.with(|attempt| {
            let attempt = attempt.borrow();
            let attempt = attempt.as_str();
            match level {
                1 => tracing::error!(target: "plugin", attempt, target, "{message}"),
                2 => tracing::warn!(target: "plugin", attempt, target, "{message}"),
                3 => tracing::info!(target: "plugin", attempt, target, "{message}"),
                4 => tracing::debug!(target: "plugin", attempt, target, "{message}"),
                _ => tracing::trace!(target: "plugin", attempt, target, "{message}"),
            }
        })
    });
}
