//! The records of jobs that have not ended, which a restarted coordinator
//! resumes: each job's plan (and, in a file of its own, its secrets), its
//! state, every task with its attempts and commit, and the workers.
//! Tasks, jobs and workers are JSON of the scheduler's own types; a plan is
//! protobuf, as workers get it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use harrow_core::ids::{JobId, Phase, TaskId};
use harrow_core::wire;
use harrow_proto::v1 as pb;
use prost::Message;
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::StateError;
use crate::scheduler::{Job, JobPlan, JobState, ResumedJob, Task, Worker};

pub(super) const PLANS: TableDefinition<u64, &[u8]> = TableDefinition::new("plans");
pub(super) const LIVE_JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("live_jobs");
/// Keyed by (job, phase: 0 map, 1 reduce, index).
pub(super) const TASKS: TableDefinition<(u64, u8, u32), &[u8]> = TableDefinition::new("tasks");
pub(super) const WORKERS: TableDefinition<u64, &[u8]> = TableDefinition::new("workers");

/// What a job is, besides its plan and tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub state: JobState,
    pub submitted_at_ms: u64,
    pub finished_at_ms: Option<u64>,
}

impl JobRecord {
    pub fn of(job: &Job) -> Self {
        JobRecord {
            state: job.state.clone(),
            submitted_at_ms: job.submitted_at_ms,
            finished_at_ms: job.finished_at_ms,
        }
    }
}

pub(super) fn task_key(task: TaskId) -> (u64, u8, u32) {
    let phase = match task.phase {
        Phase::Map => 0,
        Phase::Reduce => 1,
    };
    (task.job.0, phase, task.index)
}

pub fn encode_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("the scheduler's records serialize")
}

/// A plan without its secrets, and the secrets apart.
pub fn encode_plan(plan: &JobPlan) -> (Vec<u8>, Vec<u8>) {
    let mut spec = wire::job_spec_fields(&plan.spec);
    let secrets = pb::StoredSecrets {
        storage_options: std::mem::take(&mut spec.storage_options),
        shuffle_key: std::mem::take(&mut spec.shuffle_key),
    };
    let stored = pb::StoredPlan {
        spec: Some(spec),
        inputs: plan.inputs.clone(),
        output: plan.output.clone(),
        splits: plan.splits.iter().cloned().map(Into::into).collect(),
        request_id: plan.request_id.clone().unwrap_or_default(),
    };
    (stored.encode_to_vec(), secrets.encode_to_vec())
}

fn decode_plan(path: &Path, plan: &[u8], secrets: &[u8]) -> Result<JobPlan, StateError> {
    let bad = |reason: String| StateError::Record {
        path: path.to_path_buf(),
        reason,
    };
    let stored = pb::StoredPlan::decode(plan).map_err(|e| bad(e.to_string()))?;
    let secrets = pb::StoredSecrets::decode(secrets).map_err(|e| bad(e.to_string()))?;
    let mut spec = stored
        .spec
        .ok_or_else(|| bad("a plan without its spec".into()))?;
    spec.storage_options = secrets.storage_options;
    spec.shuffle_key = secrets.shuffle_key;
    let spec = wire::job_spec(spec).map_err(|e| bad(e.to_string()))?;
    Ok(JobPlan {
        spec: Arc::new(spec),
        inputs: stored.inputs,
        output: stored.output,
        splits: stored.splits.into_iter().map(Into::into).collect(),
        request_id: Some(stored.request_id).filter(|id| !id.is_empty()),
    })
}

fn decode_json<T: for<'de> Deserialize<'de>>(path: &Path, bytes: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(bytes).map_err(|e| StateError::Record {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Where a job's secrets are kept while it runs.
pub(super) fn secrets_path(dir: &Path, job: u64) -> PathBuf {
    dir.join("secrets").join(JobId(job).to_string())
}

/// Writes a job's secrets (0600, in a 0700 dir), durably, before its plan
/// is committed.
pub(super) fn write_secrets(dir: &Path, job: u64, secrets: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let path = secrets_path(dir, job);
    let parent = path.parent().expect("under the secrets dir");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)?;
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(secrets)?;
    file.sync_all()?;
    std::fs::rename(&temporary, &path)?;
    std::fs::File::open(parent)?.sync_all()
}

/// Removes a job's secrets once it ended; already gone is fine.
pub(super) fn remove_secrets(dir: &Path, job: u64) {
    let path = secrets_path(dir, job);
    if let Err(error) = std::fs::remove_file(&path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(%error, path = %path.display(), "could not remove a job's secrets");
    }
}

/// What the state dir holds to resume from.
pub(super) struct Live {
    pub jobs: Vec<ResumedJob>,
    pub workers: Vec<Worker>,
    /// Jobs whose secrets are gone: they cannot run again.
    pub lost: Vec<JobId>,
}

/// Reads every job that has not ended and every worker.
pub(super) fn read(
    txn: &redb::WriteTransaction,
    dir: &Path,
    path: &Path,
) -> Result<Live, StateError> {
    let store = |e: redb::Error| StateError::Store {
        path: path.to_path_buf(),
        source: Box::new(e),
    };
    let plans = txn.open_table(PLANS).map_err(|e| store(e.into()))?;
    let live = txn.open_table(LIVE_JOBS).map_err(|e| store(e.into()))?;
    let tasks = txn.open_table(TASKS).map_err(|e| store(e.into()))?;
    let workers = txn.open_table(WORKERS).map_err(|e| store(e.into()))?;
    let mut jobs = Vec::new();
    let mut lost = Vec::new();
    for entry in plans.iter().map_err(|e| store(e.into()))? {
        let (id, plan) = entry.map_err(|e| store(e.into()))?;
        let id = id.value();
        let Ok(secrets) = std::fs::read(secrets_path(dir, id)) else {
            lost.push(JobId(id));
            continue;
        };
        let plan = decode_plan(path, plan.value(), &secrets)?;
        let record =
            live.get(id)
                .map_err(|e| store(e.into()))?
                .ok_or_else(|| StateError::Record {
                    path: path.to_path_buf(),
                    reason: format!("{} has a plan but no state", JobId(id)),
                })?;
        let record: JobRecord = decode_json(path, record.value())?;
        let mut restored = ResumedJob {
            id: JobId(id),
            plan,
            state: record.state,
            submitted_at_ms: record.submitted_at_ms,
            maps: Vec::new(),
            reduces: Vec::new(),
        };
        for entry in tasks
            .range((id, 0, 0)..=(id, 1, u32::MAX))
            .map_err(|e| store(e.into()))?
        {
            let (key, bytes) = entry.map_err(|e| store(e.into()))?;
            let task: Task = decode_json(path, bytes.value())?;
            match key.value().1 {
                0 => restored.maps.push(task),
                _ => restored.reduces.push(task),
            }
        }
        jobs.push(restored);
    }
    let mut restored_workers = Vec::new();
    for entry in workers.iter().map_err(|e| store(e.into()))? {
        let (_, bytes) = entry.map_err(|e| store(e.into()))?;
        restored_workers.push(decode_json(path, bytes.value())?);
    }
    Ok(Live {
        jobs,
        workers: restored_workers,
        lost,
    })
}
