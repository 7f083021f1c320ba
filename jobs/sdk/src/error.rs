//! The one error type job code and the SDK return.

use arrow::datatypes::DataType;

/// An error from a job: bad arguments at submit time, or a failure while
/// mapping or reducing. The engine fails the attempt with its message.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("missing required argument `{name}` (pass --arg {name}=VALUE)")]
    MissingArgument { name: String },
    #[error("invalid value {value:?} for argument `{name}`: {reason}")]
    InvalidArgument {
        name: String,
        value: String,
        reason: String,
    },
    #[error("unknown argument `{name}` for job `{job}` (it takes: {known})")]
    UnknownArgument {
        job: String,
        name: String,
        known: String,
    },
    #[error("column `{column}` has type {found}, expected {expected}")]
    ColumnType {
        column: String,
        expected: DataType,
        found: DataType,
    },
    #[error("input batch has no column `{column}`")]
    MissingColumn { column: String },
    #[error("arrow error in {during}: {source}")]
    Arrow {
        during: &'static str,
        #[source]
        source: arrow::error::ArrowError,
    },
    /// The job's own code reported a failure (bad record, broken invariant
    /// of its data); the message is the job's.
    #[error("{message}")]
    Job { message: String },
}

impl JobError {
    /// A failure reported by job code.
    pub fn job(message: impl Into<String>) -> Self {
        JobError::Job {
            message: message.into(),
        }
    }

    pub(crate) fn arrow(during: &'static str) -> impl FnOnce(arrow::error::ArrowError) -> Self {
        move |source| JobError::Arrow { during, source }
    }
}
