//! The one place the coordinator's domain errors become gRPC statuses. The
//! code says what the caller can do about it:
//! - `INVALID_ARGUMENT`: the request is wrong; fix it (a bad id, format,
//!   schema, job name or argument, an unreadable input);
//! - `NOT_FOUND`: it names something that does not exist (a job, an input,
//!   a plugin that was never uploaded);
//! - `ALREADY_EXISTS`: it would overwrite something (a non-empty output);
//! - `FAILED_PRECONDITION`: valid, but the cluster's state refuses it now
//!   (a job already writing the same output);
//! - `RESOURCE_EXHAUSTED`: too large (a plugin past the limit);
//! - `INTERNAL`: the coordinator's own failure (its disk, its randomness).
//!
//! The message is the error's own text, which the CLI prints as is.

use harrow_core::ids::{IdError, JobId};
use harrow_core::registry::RegistryError;
use tonic::Status;

use crate::input_plan::InputPlanError;
use crate::planner::PlanError;
use crate::plugins::StoreError;

impl From<PlanError> for Status {
    fn from(error: PlanError) -> Status {
        let code = match &error {
            PlanError::MissingInput { .. } | PlanError::NoMatch { .. } => tonic::Code::NotFound,
            PlanError::OutputExists { .. } => tonic::Code::AlreadyExists,
            PlanError::Location(_)
            | PlanError::EmptyDirectory { .. }
            | PlanError::BadGlob { .. }
            | PlanError::Storage { .. } => tonic::Code::InvalidArgument,
        };
        Status::new(code, error.to_string())
    }
}

impl From<InputPlanError> for Status {
    fn from(error: InputPlanError) -> Status {
        Status::invalid_argument(error.to_string())
    }
}

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Status {
        match error {
            StoreError::Unknown(_) => Status::not_found(error.to_string()),
            StoreError::Io { .. } => Status::internal(error.to_string()),
        }
    }
}

/// A malformed id in a request.
pub fn bad_id(error: IdError) -> Status {
    Status::invalid_argument(error.to_string())
}

/// A job the registry does not know, or whose arguments it refuses.
pub fn registry(error: RegistryError) -> Status {
    Status::invalid_argument(error.to_string())
}

/// The request is wrong in a way no domain type names.
pub fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message.into())
}

/// The coordinator's own failure while `doing` something.
pub fn internal(doing: &str, error: impl std::fmt::Display) -> Status {
    Status::internal(format!("{doing}: {error}"))
}

/// No job by this id.
pub fn no_job(job: JobId) -> Status {
    Status::not_found(format!("no job {job}"))
}

/// Valid, but the cluster's state refuses it now.
pub fn refused(reason: impl Into<String>) -> Status {
    Status::failed_precondition(reason.into())
}

/// Past a size limit.
pub fn too_large(message: impl Into<String>) -> Status {
    Status::resource_exhausted(message.into())
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn each_error_maps_to_what_the_caller_can_do() {
        let cases: Vec<(Status, Code)> = vec![
            (
                PlanError::MissingInput {
                    input: "/in".into(),
                }
                .into(),
                Code::NotFound,
            ),
            (
                PlanError::OutputExists {
                    output: "/out".into(),
                }
                .into(),
                Code::AlreadyExists,
            ),
            (
                PlanError::BadGlob {
                    pattern: "[".into(),
                    reason: "unclosed".into(),
                }
                .into(),
                Code::InvalidArgument,
            ),
            (InputPlanError::NothingToInfer.into(), Code::InvalidArgument),
            // A plugin never uploaded is missing wherever it is named: at
            // submission and when a worker fetches it.
            (StoreError::Unknown("ab".repeat(32)).into(), Code::NotFound),
            (
                StoreError::Io {
                    path: "/plugins".into(),
                    source: std::io::Error::other("disk full"),
                }
                .into(),
                Code::Internal,
            ),
            (
                bad_id("job-x".parse::<JobId>().unwrap_err()),
                Code::InvalidArgument,
            ),
        ];
        for (status, code) in cases {
            assert_eq!(status.code(), code, "{}", status.message());
            assert!(!status.message().is_empty());
        }
    }
}
