//! Why an attempt failed. Every variant names what and where; the worker
//! reports the message to the coordinator, which decides what to retry.

use std::path::PathBuf;

use harrow_core::ids::AttemptId;
use harrow_core::partition::UnsupportedKey;
use harrow_core::registry::RegistryError;
use harrow_core::storage::LocationError;
use harrow_core::task::{FailureKind, FetchFailure};
use harrow_formats::input::InputError;
use harrow_formats::output::OutputError;
use harrow_formats::source::OpenError;
use harrow_sdk::JobError;

use crate::cpu::CpuPanic;
use crate::shuffle::segment::SegmentError;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Location(#[from] LocationError),
    #[error(transparent)]
    Plugin(#[from] crate::plugin::PluginError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("job code failed in {during}: {source}")]
    Job {
        during: &'static str,
        #[source]
        source: JobError,
    },
    #[error("job code {during} {source}")]
    Panic {
        during: &'static str,
        #[source]
        source: CpuPanic,
    },
    #[error("arrow error in {during}: {source}")]
    Arrow {
        during: &'static str,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error(transparent)]
    Partition(#[from] UnsupportedKey),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("reading segment {path}: {source}")]
    SegmentRead {
        path: PathBuf,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A segment of a map attempt could not be fetched or failed its check.
    #[error("fetching segment of {map_attempt} from {address}: {reason}")]
    Fetch {
        map_attempt: AttemptId,
        address: String,
        reason: String,
        /// The worker at `address` did not answer, rather than this one
        /// segment being missing or corrupt.
        cause: FetchFailure,
    },
    /// A local output path the job cannot write through.
    #[error("{path}: {reason}")]
    OutputPath { path: PathBuf, reason: String },
    #[error("writing output {location}: {source}")]
    Output {
        location: String,
        #[source]
        source: object_store::Error,
    },
    #[error("commit of {attempt} refused: {reason}")]
    CommitRefused { attempt: AttemptId, reason: String },
    #[error("coordinator call {call} failed: {status}")]
    Coordinator {
        call: &'static str,
        status: tonic::Status,
    },
    /// The coordinator stopped a reduce attempt that waited for map output
    /// (killed to make room for maps, superseded, or its job ended).
    #[error("stopped by the coordinator while waiting for map output")]
    Stopped,
}

impl TaskError {
    /// Whose fault the failure is: the one place that decides what a
    /// failure counts toward (the README's "Fault tolerance" lists it).
    /// A fetch failure is reported as such and is not classified here.
    pub fn kind(&self) -> FailureKind {
        match self {
            TaskError::Registry(_)
            | TaskError::Location(_)
            | TaskError::Job { .. }
            | TaskError::Panic { .. }
            | TaskError::Arrow { .. }
            | TaskError::Partition(_)
            | TaskError::CommitRefused { .. }
            | TaskError::OutputPath { .. }
            | TaskError::Fetch { .. } => FailureKind::Job,
            TaskError::Plugin(error) => plugin_kind(error),
            TaskError::Input(InputError::Read { source, .. })
            | TaskError::Output { source, .. } => store_kind(source),
            TaskError::Input(_) => FailureKind::Job,
            TaskError::Segment(SegmentError::Encode { .. }) => FailureKind::Job,
            TaskError::Segment(SegmentError::Io { .. } | SegmentError::CorruptIndex { .. })
            | TaskError::SegmentRead { .. } => FailureKind::Worker,
            // A path the job named that this process may not use.
            TaskError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                FailureKind::Job
            }
            TaskError::Io { .. } => FailureKind::Worker,
            TaskError::Coordinator { .. } | TaskError::Stopped => FailureKind::Transient,
        }
    }

    pub fn job(during: &'static str) -> impl FnOnce(JobError) -> TaskError {
        move |source| TaskError::Job { during, source }
    }

    pub fn panic(during: &'static str) -> impl FnOnce(CpuPanic) -> TaskError {
        move |source| TaskError::Panic { during, source }
    }

    pub fn arrow(during: &'static str) -> impl FnOnce(arrow::error::ArrowError) -> TaskError {
        move |source| TaskError::Arrow { during, source }
    }

    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TaskError {
        let path = path.into();
        move |source| TaskError::Io { path, source }
    }
}

impl From<OpenError> for TaskError {
    fn from(error: OpenError) -> TaskError {
        match error {
            OpenError::Location(error) => TaskError::Location(error),
            OpenError::Input(error) => TaskError::Input(error),
        }
    }
}

/// Output errors keep their kinds: a local I/O error is the worker's, rows
/// that do not fit the job's schema are the job's.
impl From<OutputError> for TaskError {
    fn from(error: OutputError) -> TaskError {
        match error {
            OutputError::Io { path, source } => TaskError::Io { path, source },
            OutputError::Arrow { during, source } => TaskError::Arrow { during, source },
            OutputError::Path { path, reason } => TaskError::OutputPath { path, reason },
        }
    }
}

/// An object store's error: its refusals are the job's (a missing object,
/// bad credentials, a path it cannot hold); anything else is what is left
/// after `object_store`'s own retries of timeouts and 5xx answers.
fn store_kind(error: &object_store::Error) -> FailureKind {
    use object_store::Error;
    match error {
        Error::NotFound { .. }
        | Error::InvalidPath { .. }
        | Error::PermissionDenied { .. }
        | Error::Unauthenticated { .. }
        | Error::NotSupported { .. }
        | Error::NotImplemented { .. }
        | Error::AlreadyExists { .. }
        | Error::Precondition { .. }
        | Error::NotModified { .. }
        | Error::UnknownConfigurationKey { .. } => FailureKind::Job,
        Error::JoinError { .. } => FailureKind::Worker,
        _ => FailureKind::Transient,
    }
}

fn plugin_kind(error: &crate::plugin::PluginError) -> FailureKind {
    use crate::plugin::PluginError;
    match error {
        PluginError::Fetch { status, .. } if status.code() == tonic::Code::NotFound => {
            FailureKind::Job
        }
        PluginError::Fetch { .. } | PluginError::HashMismatch { .. } => FailureKind::Transient,
        PluginError::Cache { .. } => FailureKind::Worker,
        PluginError::BadHash(_) | PluginError::Host(_) => FailureKind::Job,
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use harrow_core::task::FailureKind::{Job, Transient, Worker};

    use super::*;

    fn io(kind: ErrorKind) -> TaskError {
        TaskError::io("/work/job-000001/m-00000.data")(std::io::Error::from(kind))
    }

    fn store(error: object_store::Error) -> TaskError {
        TaskError::Output {
            location: "s3://bucket/out".into(),
            source: error,
        }
    }

    fn generic(message: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: message.into(),
        }
    }

    #[test]
    fn each_failure_has_one_kind() {
        let job_error = TaskError::Job {
            during: "map",
            source: harrow_sdk::JobError::job("bad record"),
        };
        let panic = TaskError::Panic {
            during: "panicked:",
            source: CpuPanic {
                message: "index out of bounds".into(),
            },
        };
        let refused = TaskError::OutputPath {
            path: "/out/_temporary".into(),
            reason: "is a symbolic link".into(),
        };
        let coordinator = TaskError::Coordinator {
            call: "RequestCommit",
            status: tonic::Status::unavailable("connection refused"),
        };
        let not_found = store(object_store::Error::NotFound {
            path: "out/part-r-00000".into(),
            source: "404".into(),
        });
        let denied = store(object_store::Error::PermissionDenied {
            path: "out".into(),
            source: "403".into(),
        });
        let cases = [
            (job_error, Job),
            (panic, Job),
            (refused, Job),
            (io(ErrorKind::PermissionDenied), Job),
            (not_found, Job),
            (denied, Job),
            (io(ErrorKind::StorageFull), Worker),
            (io(ErrorKind::Other), Worker),
            (coordinator, Transient),
            (store(generic("HTTP 503 after 10 retries")), Transient),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error}");
        }
    }

    #[test]
    fn output_errors_keep_their_kind_and_message() {
        let disk_full = OutputError::Io {
            path: "/work/out/part".into(),
            source: std::io::Error::from(ErrorKind::StorageFull),
        };
        let wrong_rows = OutputError::Arrow {
            during: "checking reduce output against the job's schema",
            source: arrow::error::ArrowError::SchemaError("n is Utf8".into()),
        };
        let link = OutputError::Path {
            path: "/out/_temporary".into(),
            reason: "is a symbolic link".into(),
        };
        for (error, kind) in [(disk_full, Worker), (wrong_rows, Job), (link, Job)] {
            let message = error.to_string();
            let error = TaskError::from(error);
            assert_eq!((error.kind(), error.to_string()), (kind, message));
        }
    }

    #[test]
    fn the_plugins_own_failures_are_the_jobs_and_fetching_it_may_pass() {
        let plugin = harrow_core::task::PluginRef {
            sha256: "ab".repeat(32),
            file_name: "libjob.so".into(),
        };
        let fetch = |status| {
            TaskError::Plugin(crate::plugin::PluginError::Fetch {
                plugin: plugin.clone(),
                status,
            })
        };
        assert_eq!(
            fetch(tonic::Status::not_found("no such plugin")).kind(),
            Job
        );
        assert_eq!(
            fetch(tonic::Status::unavailable("restarting")).kind(),
            Transient
        );
        let bad = TaskError::Plugin(crate::plugin::PluginError::BadHash("xyz".into()));
        assert_eq!(bad.kind(), Job);
    }
}
