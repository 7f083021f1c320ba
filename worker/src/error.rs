//! Why an attempt failed. Every variant names what and where; the worker
//! reports the message to the coordinator, which decides what to retry.

use std::path::PathBuf;

use harrow_core::ids::AttemptId;
use harrow_core::registry::RegistryError;
use harrow_core::storage::LocationError;
use harrow_sdk::JobError;

use crate::cpu::CpuPanic;
use crate::input::InputError;
use crate::partition::UnsupportedKey;
use crate::segment::SegmentError;

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
    },
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
}

impl TaskError {
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
