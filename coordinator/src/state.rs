//! The coordinator's durable state under `--state-dir`: one redb file,
//! `state.redb`, that a second coordinator cannot open while this one has
//! it (redb locks the whole file). What it holds today:
//! - `meta`: the format version, the coordinator's generation (one more at
//!   every start), and how far job and worker ids are reserved;
//! - `jobs`: every job's status as the client sees it (`JobStatus`, without
//!   tasks), written when it is submitted and when it ends;
//! - `job_tasks`: a finished job's status with its tasks and attempts;
//! - `requests`: each submission's request id to its job, so a client's
//!   retry after a crash does not run the job twice;
//! - for jobs that have not ended (`live.rs`): `plans`, `live_jobs`,
//!   `tasks` and `workers`, from which a restarted coordinator resumes
//!   them, and each job's secrets in `secrets/JOB` (0600), removed when
//!   it ends.
//!
//! Writes are group-committed (`writer.rs`): one thread takes every write
//! queued while the last commit ran and commits them in one transaction
//! (one fsync). Every write can be waited for; which calls wait is the
//! services' choice (`service/durable.rs`). Statuses are protobuf-encoded:
//! field numbers make old records readable by newer code. Nothing secret is stored: a status holds no
//! storage options and no token.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use harrow_core::ids::JobId;

use harrow_proto::v1 as pb;
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use tokio::sync::oneshot;

/// The layout this code reads and writes. A newer state dir is refused; an
/// older one would be migrated forward here.
pub const FORMAT_VERSION: u64 = 1;

/// Ids reserved at once: a crash skips at most this many.
const ID_BLOCK: u64 = 1_000;

const FILE_NAME: &str = "state.redb";
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");
const JOB_TASKS: TableDefinition<u64, &[u8]> = TableDefinition::new("job_tasks");
/// A submission's request id to the job it made, while the job is kept.
const REQUESTS: TableDefinition<&str, u64> = TableDefinition::new("requests");

const FORMAT: &str = "format_version";
const GENERATION: &str = "generation";
const JOBS_RESERVED: &str = "job_ids_reserved";
const WORKERS_RESERVED: &str = "worker_ids_reserved";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is in use by another coordinator (only one may use a state dir)")]
    Locked { path: PathBuf },
    #[error("{path} is corrupt ({reason}); refusing to start over it")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path} is not a Harrow coordinator's state (it has no format version)")]
    Foreign { path: PathBuf },
    #[error(
        "{path} has state format {found}, newer than this coordinator's {FORMAT_VERSION}: run a newer harrow"
    )]
    Newer { path: PathBuf, found: u64 },
    #[error("{path}: {source}")]
    Store {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("{path}: a stored job record cannot be read: {reason}")]
    Record { path: PathBuf, reason: String },
    #[error("{path}: the state writer stopped")]
    WriterGone { path: PathBuf },
}

/// Which ids a reservation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Job,
    Worker,
}

impl IdKind {
    fn key(self) -> &'static str {
        match self {
            IdKind::Job => JOBS_RESERVED,
            IdKind::Worker => WORKERS_RESERVED,
        }
    }
}

/// What the coordinator found in its state dir at start.
#[derive(Debug)]
pub struct Restored {
    /// This start's generation: 1 for a new state dir.
    pub generation: u64,
    /// Ids up to these may have been handed out before: the coordinator
    /// starts after them.
    pub jobs_used: u64,
    pub workers_used: u64,
    /// Jobs that had not ended when the last coordinator stopped and
    /// cannot be resumed (their plan or secrets are gone): failed.
    pub interrupted: Vec<JobId>,
    /// Jobs to resume, as last written.
    pub jobs: Vec<crate::scheduler::ResumedJob>,
    /// Every worker known, as last written.
    pub workers: Vec<crate::scheduler::Worker>,
}

/// How long finished jobs are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// At most this many finished jobs, the newest.
    pub jobs: usize,
    /// None that finished longer ago than this.
    pub for_ms: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            jobs: 1_000,
            for_ms: 7 * 24 * 3_600_000,
        }
    }
}

/// The open state dir.
pub struct StateStore {
    path: PathBuf,
    db: std::sync::Arc<Database>,
    /// To the writer thread; closed (and the thread joined) on drop, so
    /// the file is free once the store is gone.
    writes: Option<mpsc::Sender<Write>>,
    writer: Option<std::thread::JoinHandle<()>>,
    reserved: tokio::sync::Mutex<[u64; 2]>,
}

impl Drop for StateStore {
    fn drop(&mut self) {
        self.writes.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl StateStore {
    /// Opens (or starts) the state in `dir`: checks it, bumps the
    /// generation, marks the jobs that had not ended as failed, drops
    /// history past `retention`, and starts the writer.
    pub fn open(
        dir: &Path,
        retention: Retention,
        now_ms: u64,
    ) -> Result<(StateStore, Restored), StateError> {
        create_private_dir(dir)?;
        let path = dir.join(FILE_NAME);
        let db = Database::builder()
            .set_check_integrity_on_open(true)
            .create(&path)
            .map_err(|e| open_error(&path, e))?;
        let store_error = |e: redb::Error| StateError::Store {
            path: path.clone(),
            source: Box::new(e),
        };
        let txn = db.begin_write().map_err(|e| store_error(e.into()))?;
        let restored = {
            let mut meta = txn.open_table(META).map_err(|e| store_error(e.into()))?;
            let format = meta.get(FORMAT).map_err(|e| store_error(e.into()))?;
            match format.map(|v| v.value()) {
                Some(FORMAT_VERSION) => {}
                Some(found) if found > FORMAT_VERSION => {
                    return Err(StateError::Newer { path, found });
                }
                Some(found) => {
                    return Err(StateError::Corrupt {
                        path,
                        reason: format!("unknown format version {found}"),
                    });
                }
                None => {
                    let tables = txn.list_tables().map_err(|e| store_error(e.into()))?;
                    if tables.into_iter().any(|t| t.name() != META.name()) {
                        return Err(StateError::Foreign { path });
                    }
                    meta.insert(FORMAT, FORMAT_VERSION)
                        .map_err(|e| store_error(e.into()))?;
                }
            }
            let read = |key: &str| -> Result<u64, StateError> {
                Ok(meta
                    .get(key)
                    .map_err(|e| store_error(e.into()))?
                    .map_or(0, |v| v.value()))
            };
            let generation = read(GENERATION)? + 1;
            let jobs_used = read(JOBS_RESERVED)?;
            let workers_used = read(WORKERS_RESERVED)?;
            meta.insert(GENERATION, generation)
                .map_err(|e| store_error(e.into()))?;
            Restored {
                generation,
                jobs_used,
                workers_used,
                interrupted: Vec::new(),
                jobs: Vec::new(),
                workers: Vec::new(),
            }
        };
        let mut restored = restored;
        let live::Live {
            jobs,
            workers,
            lost,
        } = live::read(&txn, dir, &path)?;
        for job in &lost {
            forget_live(&txn, job.0).map_err(&store_error)?;
            live::remove_secrets(dir, job.0);
        }
        restored.jobs = jobs;
        restored.workers = workers;
        {
            let mut jobs = txn.open_table(JOBS).map_err(|e| store_error(e.into()))?;
            let mut interrupted = Vec::new();
            for entry in jobs.iter().map_err(|e| store_error(e.into()))? {
                let (id, bytes) = entry.map_err(|e| store_error(e.into()))?;
                let status = decode(&path, bytes.value())?;
                let resumed = restored.jobs.iter().any(|j| j.id.0 == id.value());
                if !is_terminal(&status) && !resumed {
                    interrupted.push((id.value(), status));
                }
            }
            for (id, mut status) in interrupted {
                status.state = pb::JobState::Failed as i32;
                status.error = if lost.contains(&JobId(id)) {
                    format!(
                        "the coordinator stopped while the job ran, and its secrets are gone from {}; submit the job again",
                        dir.join("secrets").display()
                    )
                } else {
                    format!(
                        "the coordinator stopped while the job ran (it started again as generation {}); submit the job again",
                        restored.generation
                    )
                };
                status.finished_at_ms = Some(now_ms);
                jobs.insert(id, status.encode_to_vec().as_slice())
                    .map_err(|e| store_error(e.into()))?;
                restored.interrupted.push(JobId(id));
            }
            txn.open_table(JOB_TASKS)
                .map_err(|e| store_error(e.into()))?;
            txn.open_table(REQUESTS)
                .map_err(|e| store_error(e.into()))?;
        }
        prune(&txn, retention, now_ms).map_err(store_error)?;
        txn.commit().map_err(|e| store_error(e.into()))?;

        let db = std::sync::Arc::new(db);
        let (writes, queue) = mpsc::channel();
        let writer_db = db.clone();
        let writer_dir = dir.to_path_buf();
        let writer = std::thread::Builder::new()
            .name("harrow-state".into())
            .spawn(move || write_loop(&writer_db, &writer_dir, &queue))
            .map_err(|source| StateError::Io {
                path: path.clone(),
                source,
            })?;
        let reserved = [restored.jobs_used, restored.workers_used];
        let store = StateStore {
            path,
            db,
            writes: Some(writes),
            writer: Some(writer),
            reserved: tokio::sync::Mutex::new(reserved),
        };
        Ok((store, restored))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes sure ids up to `id` are reserved, durably, before one is
    /// handed out: a block at a time, so most calls do not write.
    pub async fn reserve(&self, kind: IdKind, id: u64) -> Result<(), StateError> {
        let mut reserved = self.reserved.lock().await;
        let slot = &mut reserved[kind as usize];
        if id <= *slot {
            return Ok(());
        }
        let through = id + ID_BLOCK - 1;
        self.commit(vec![Record::Reserved { kind, through }])
            .await?;
        *slot = through;
        Ok(())
    }

    /// Writes `changes` in one commit (with whatever else is queued);
    /// returns once it is durable.
    pub async fn write(&self, changes: Changes) -> Result<(), StateError> {
        self.commit(changes.records).await
    }

    /// On a clean stop, after the last id was handed out: records the ids
    /// used, so the next start goes on from them rather than past the
    /// reservation.
    pub async fn close(&self, jobs_used: u64, workers_used: u64) -> Result<(), StateError> {
        let records = vec![
            Record::Used {
                kind: IdKind::Job,
                through: jobs_used,
            },
            Record::Used {
                kind: IdKind::Worker,
                through: workers_used,
            },
        ];
        self.commit(records).await
    }

    /// Returns once every write queued before is durable.
    pub async fn sync(&self) -> Result<(), StateError> {
        self.commit(Vec::new()).await
    }

    /// A stored job's status, with its tasks if asked and kept.
    pub fn job(&self, job: JobId, with_tasks: bool) -> Result<Option<pb::JobStatus>, StateError> {
        let read = || -> Result<Option<Vec<u8>>, redb::Error> {
            let txn = self.db.begin_read()?;
            if with_tasks {
                let tasks = txn.open_table(JOB_TASKS)?;
                if let Some(bytes) = tasks.get(job.0)? {
                    return Ok(Some(bytes.value().to_vec()));
                }
            }
            let jobs = txn.open_table(JOBS)?;
            Ok(jobs.get(job.0)?.map(|bytes| bytes.value().to_vec()))
        };
        let bytes = read().map_err(|e| self.store_error(e))?;
        bytes.map(|b| decode(&self.path, &b)).transpose()
    }

    /// The job a submission with this request id made, if it is kept.
    pub fn job_for_request(&self, request_id: &str) -> Result<Option<JobId>, StateError> {
        let read = || -> Result<Option<u64>, redb::Error> {
            let txn = self.db.begin_read()?;
            let requests = txn.open_table(REQUESTS)?;
            Ok(requests.get(request_id)?.map(|job| job.value()))
        };
        Ok(read().map_err(|e| self.store_error(e))?.map(JobId))
    }

    /// Stored jobs, newest first, without tasks: at most `limit` with ids
    /// below `before` (paging).
    pub fn jobs(
        &self,
        before: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<pb::JobStatus>, StateError> {
        let read = || -> Result<Vec<Vec<u8>>, redb::Error> {
            let txn = self.db.begin_read()?;
            let jobs = txn.open_table(JOBS)?;
            let end = before.map_or(u64::MAX, |j| j.0);
            jobs.range(..end)?
                .rev()
                .take(limit)
                .map(|entry| Ok(entry?.1.value().to_vec()))
                .collect()
        };
        let records = read().map_err(|e| self.store_error(e))?;
        records.iter().map(|b| decode(&self.path, b)).collect()
    }

    async fn commit(&self, records: Vec<Record>) -> Result<(), StateError> {
        let (done, committed) = oneshot::channel();
        let gone = || StateError::WriterGone {
            path: self.path.clone(),
        };
        self.sender()
            .send(Write {
                records,
                done: Some(done),
            })
            .map_err(|_| gone())?;
        committed
            .await
            .map_err(|_| gone())?
            .map_err(|reason| StateError::Record {
                path: self.path.clone(),
                reason,
            })
    }

    fn sender(&self) -> &mpsc::Sender<Write> {
        self.writes.as_ref().expect("open until dropped")
    }

    fn store_error(&self, e: redb::Error) -> StateError {
        StateError::Store {
            path: self.path.clone(),
            source: Box::new(e),
        }
    }
}

fn is_terminal(status: &pb::JobStatus) -> bool {
    matches!(
        pb::JobState::try_from(status.state),
        Ok(pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled)
    )
}

fn decode(path: &Path, bytes: &[u8]) -> Result<pb::JobStatus, StateError> {
    pb::JobStatus::decode(bytes).map_err(|e| StateError::Record {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn open_error(path: &Path, error: redb::DatabaseError) -> StateError {
    let path = path.to_path_buf();
    match error {
        redb::DatabaseError::DatabaseAlreadyOpen => StateError::Locked { path },
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(reason)) => {
            StateError::Corrupt { path, reason }
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(source))
            if source.kind() == std::io::ErrorKind::InvalidData =>
        {
            StateError::Corrupt {
                path,
                reason: source.to_string(),
            }
        }
        other => StateError::Store {
            path,
            source: Box::new(other.into()),
        },
    }
}

/// The state dir, readable by this user only (it may hold plugins).
fn create_private_dir(dir: &Path) -> Result<(), StateError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |source| StateError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)
}

mod live;
#[cfg(test)]
mod tests;
mod writer;

pub use live::JobRecord;
pub use writer::Changes;
use writer::{Record, Write, forget_live, prune, write_loop};
