//! Ids of jobs, tasks, attempts and workers: newtypes with one text form
//! each (`job-000042`, `job-000042/m-00017`, `job-000042/m-00017/a-2`,
//! `worker-0003`), parsed strictly so an id from the wire can name a file.

use std::fmt;
use std::str::FromStr;

/// An id string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id {text:?} (expected {expected})")]
pub struct IdError {
    pub kind: &'static str,
    pub text: String,
    pub expected: &'static str,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct JobId(pub u64);

/// Map or reduce.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Phase {
    Map,
    Reduce,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct TaskId {
    pub job: JobId,
    pub phase: Phase,
    pub index: u32,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct AttemptId {
    pub task: TaskId,
    /// 1 for the first attempt of a task.
    pub number: u32,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct WorkerId(pub u64);

impl TaskId {
    /// The task's own part of its id: `m-00017`.
    pub fn short(&self) -> String {
        let letter = match self.phase {
            Phase::Map => 'm',
            Phase::Reduce => 'r',
        };
        format!("{letter}-{:05}", self.index)
    }
}

impl AttemptId {
    /// A name for files of this attempt, unique within its job: `m-00017.a-2`.
    pub fn file_stem(&self) -> String {
        format!("{}.a-{}", self.task.short(), self.number)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job-{:06}", self.0)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.job, self.short())
    }
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/a-{}", self.task, self.number)
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker-{:04}", self.0)
    }
}

/// `prefix` followed by only ASCII digits.
fn number_after(text: &str, prefix: &str) -> Option<u64> {
    let digits = text.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl FromStr for JobId {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, IdError> {
        number_after(text, "job-")
            .map(JobId)
            .ok_or_else(|| IdError {
                kind: "job",
                text: text.to_string(),
                expected: "job-NNNNNN",
            })
    }
}

impl FromStr for TaskId {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, IdError> {
        let parse = || {
            let (job, task) = text.split_once('/')?;
            let (phase, index) = if let Some(index) = number_after(task, "m-") {
                (Phase::Map, index)
            } else {
                (Phase::Reduce, number_after(task, "r-")?)
            };
            Some(TaskId {
                job: job.parse().ok()?,
                phase,
                index: u32::try_from(index).ok()?,
            })
        };
        parse().ok_or_else(|| IdError {
            kind: "task",
            text: text.to_string(),
            expected: "job-NNNNNN/m-NNNNN or job-NNNNNN/r-NNNNN",
        })
    }
}

impl FromStr for AttemptId {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, IdError> {
        let parse = || {
            let (task, number) = text.rsplit_once('/')?;
            Some(AttemptId {
                task: task.parse().ok()?,
                number: u32::try_from(number_after(number, "a-")?).ok()?,
            })
        };
        parse().ok_or_else(|| IdError {
            kind: "attempt",
            text: text.to_string(),
            expected: "job-NNNNNN/m-NNNNN/a-N",
        })
    }
}

impl FromStr for WorkerId {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, IdError> {
        number_after(text, "worker-")
            .map(WorkerId)
            .ok_or_else(|| IdError {
                kind: "worker",
                text: text.to_string(),
                expected: "worker-NNNN",
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text() {
        let attempt = AttemptId {
            task: TaskId {
                job: JobId(42),
                phase: Phase::Map,
                index: 17,
            },
            number: 2,
        };
        assert_eq!(attempt.to_string(), "job-000042/m-00017/a-2");
        assert_eq!(attempt.to_string().parse::<AttemptId>().unwrap(), attempt);
        assert_eq!(attempt.file_stem(), "m-00017.a-2");
        assert_eq!("worker-0003".parse::<WorkerId>().unwrap(), WorkerId(3));
    }

    #[test]
    fn rejects_ids_that_could_name_other_files() {
        for text in [
            "job-1/../m-1/a-1",
            "job-1/m-1/a-1/..",
            "job-/m-1/a-1",
            "job-1/x-1/a-1",
            "job-1/m-+1/a-1",
        ] {
            assert!(text.parse::<AttemptId>().is_err(), "{text}");
        }
    }
}
