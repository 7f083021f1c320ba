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
    #[error(
        "it reads column(s) {missing}, which the input does not have (it has: {available}){hint}"
    )]
    InputColumns {
        missing: String,
        available: String,
        /// How to fix it, when the engine can tell; empty otherwise.
        hint: String,
    },
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
    /// The job's code panicked.
    #[error("panicked: {message}")]
    Panic { message: String },
    /// A failure while mapping one record (or, at the batch level, the batch
    /// starting there): where it happened.
    #[error("at {file}:{offset}: {source}")]
    AtRecord {
        file: String,
        offset: u64,
        #[source]
        source: Box<JobError>,
    },
}

impl JobError {
    /// A failure reported by job code.
    pub fn job(message: impl Into<String>) -> Self {
        JobError::Job {
            message: message.into(),
        }
    }

    /// Runs job code, turning a panic into [`JobError::Panic`].
    pub fn catch_panic<T>(code: impl FnOnce() -> Result<T, JobError>) -> Result<T, JobError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(code)).unwrap_or_else(|payload| {
            Err(JobError::Panic {
                message: panic_message(payload.as_ref()),
            })
        })
    }

    /// This error, located at a record (unless it already names one).
    pub fn at_record(self, file: &str, offset: u64) -> JobError {
        if let JobError::AtRecord { .. } = self {
            return self;
        }
        JobError::AtRecord {
            file: file.to_string(),
            offset,
            source: Box::new(self),
        }
    }

    /// Maps an Arrow error met `during` something.
    pub fn arrow(during: &'static str) -> impl FnOnce(arrow::error::ArrowError) -> Self {
        move |source| JobError::Arrow { during, source }
    }
}

/// The message of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
