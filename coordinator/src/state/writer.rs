//! The state dir's writing side: the records a commit holds, the changes
//! the coordinator collects from its scheduler, and the writer thread that
//! group-commits them (each transaction takes every write queued while the
//! last one committed).

use std::path::Path;
use std::sync::mpsc;

use harrow_core::ids::JobId;
use harrow_proto::v1 as pb;
use prost::Message;
use redb::{Database, ReadableTable};
use tokio::sync::oneshot;

use super::{IdKind, JOB_TASKS, JOBS, JobRecord, META, REQUESTS, Retention, is_terminal, live};
use crate::scheduler::{Job, Task, Worker};

pub(super) enum Record {
    /// A job first seen: its plan, and its secrets for a file of their own.
    Plan {
        id: u64,
        plan: Vec<u8>,
        secrets: Vec<u8>,
    },
    LiveJob {
        id: u64,
        record: Vec<u8>,
    },
    Task {
        key: (u64, u8, u32),
        task: Vec<u8>,
    },
    Worker {
        id: u64,
        worker: Vec<u8>,
    },
    /// The job ended: what it needed to resume goes.
    Ended {
        id: u64,
    },
    Request {
        id: String,
        job: u64,
    },
    Job {
        id: u64,
        summary: Vec<u8>,
        tasks: Option<Vec<u8>>,
    },
    Reserved {
        kind: IdKind,
        through: u64,
    },
    /// Ids past `through` were never handed out: a clean stop gives back
    /// the rest of the reservation.
    Used {
        kind: IdKind,
        through: u64,
    },
    Prune {
        retention: Retention,
        now_ms: u64,
    },
}

pub(super) struct Write {
    pub(super) records: Vec<Record>,
    pub(super) done: Option<oneshot::Sender<Result<(), String>>>,
}

/// What changed in the scheduler since the last write, built under its
/// lock so the records agree with one another.
#[derive(Default)]
pub struct Changes {
    pub(super) records: Vec<Record>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// A job first seen: its plan, its secrets (a file of their own), its
    /// request id and its status as submitted.
    pub fn submitted(&mut self, job: &Job, status: &pb::JobStatus) {
        if let Some(request) = &job.plan.request_id {
            self.records.push(Record::Request {
                id: request.clone(),
                job: job.id.0,
            });
        }
        let (plan, secrets) = live::encode_plan(&job.plan);
        self.records.push(Record::Plan {
            id: job.id.0,
            plan,
            secrets,
        });
        self.records.push(job_record(status, None));
        self.job(job);
    }

    /// A job's state changed.
    pub fn job(&mut self, job: &Job) {
        self.records.push(Record::LiveJob {
            id: job.id.0,
            record: live::encode_json(&JobRecord::of(job)),
        });
    }

    /// A task changed: its state, attempts or commit.
    pub fn task(&mut self, task: &Task) {
        self.records.push(Record::Task {
            key: live::task_key(task.id),
            task: live::encode_json(task),
        });
    }

    /// A worker registered or changed state.
    pub fn worker(&mut self, worker: &Worker) {
        self.records.push(Record::Worker {
            id: worker.id.0,
            worker: live::encode_json(worker),
        });
    }

    /// A job ended: its status and tasks go to the history, what it needed
    /// to resume goes, and the history is pruned to `retention`.
    pub fn ended(&mut self, full: &pb::JobStatus, retention: Retention, now_ms: u64) {
        let record = job_record(full, Some(full));
        if let Record::Job { id, .. } = &record {
            self.records.push(Record::Ended { id: *id });
        }
        self.records.push(record);
        self.records.push(Record::Prune { retention, now_ms });
    }
}

fn job_record(status: &pb::JobStatus, full: Option<&pb::JobStatus>) -> Record {
    let mut summary = status.clone();
    summary.tasks.clear();
    let id = status
        .job_id
        .parse::<JobId>()
        .map(|j| j.0)
        .expect("the coordinator's own job id");
    Record::Job {
        id,
        summary: summary.encode_to_vec(),
        tasks: full.map(Message::encode_to_vec),
    }
}

/// Commits queued writes until every sender is gone: each round takes all
/// that queued during the last commit.
pub(super) fn write_loop(db: &Database, dir: &Path, queue: &mpsc::Receiver<Write>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        batch.extend(queue.try_iter());
        let result = commit_batch(db, dir, &batch).map_err(|e| e.to_string());
        if let Err(error) = &result {
            tracing::error!(%error, "could not write the coordinator's state");
        }
        for write in batch {
            if let Some(done) = write.done {
                let _ = done.send(result.clone());
            }
        }
    }
}

fn commit_batch(db: &Database, dir: &Path, batch: &[Write]) -> Result<(), redb::Error> {
    // Secrets first: a plan is never committed without them.
    for record in batch.iter().flat_map(|w| &w.records) {
        if let Record::Plan { id, secrets, .. } = record {
            live::write_secrets(dir, *id, secrets).map_err(redb::StorageError::Io)?;
        }
    }
    let txn = db.begin_write()?;
    for record in batch.iter().flat_map(|w| &w.records) {
        match record {
            Record::Plan { id, plan, .. } => {
                txn.open_table(live::PLANS)?.insert(id, plan.as_slice())?;
            }
            Record::LiveJob { id, record } => {
                txn.open_table(live::LIVE_JOBS)?
                    .insert(id, record.as_slice())?;
            }
            Record::Task { key, task } => {
                txn.open_table(live::TASKS)?.insert(key, task.as_slice())?;
            }
            Record::Worker { id, worker } => {
                txn.open_table(live::WORKERS)?
                    .insert(id, worker.as_slice())?;
            }
            Record::Ended { id } => forget_live(&txn, *id)?,
            Record::Request { id, job } => {
                txn.open_table(REQUESTS)?.insert(id.as_str(), job)?;
            }
            Record::Job { id, summary, tasks } => {
                txn.open_table(JOBS)?.insert(id, summary.as_slice())?;
                if let Some(tasks) = tasks {
                    txn.open_table(JOB_TASKS)?.insert(id, tasks.as_slice())?;
                }
            }
            Record::Reserved { kind, through } => {
                let mut meta = txn.open_table(META)?;
                let current = meta.get(kind.key())?.map_or(0, |v| v.value());
                meta.insert(kind.key(), current.max(*through))?;
            }
            Record::Used { kind, through } => {
                txn.open_table(META)?.insert(kind.key(), *through)?;
            }
            Record::Prune { retention, now_ms } => prune(&txn, *retention, *now_ms)?,
        }
    }
    txn.commit()?;
    for record in batch.iter().flat_map(|w| &w.records) {
        if let Record::Ended { id } = record {
            live::remove_secrets(dir, *id);
        }
    }
    Ok(())
}

/// Drops what a job needed to resume.
pub(super) fn forget_live(txn: &redb::WriteTransaction, id: u64) -> Result<(), redb::Error> {
    txn.open_table(live::PLANS)?.remove(id)?;
    txn.open_table(live::LIVE_JOBS)?.remove(id)?;
    let mut tasks = txn.open_table(live::TASKS)?;
    tasks.retain_in((id, 0, 0)..=(id, 1, u32::MAX), |_, _| false)?;
    Ok(())
}

/// Drops finished jobs past the retention: beyond the newest
/// `retention.jobs`, or finished longer than `retention.for_ms` ago.
pub(super) fn prune(
    txn: &redb::WriteTransaction,
    retention: Retention,
    now_ms: u64,
) -> Result<(), redb::Error> {
    let mut jobs = txn.open_table(JOBS)?;
    let mut finished = 0usize;
    let mut drop = Vec::new();
    for entry in jobs.iter()?.rev() {
        let (id, bytes) = entry?;
        let Ok(status) = pb::JobStatus::decode(bytes.value()) else {
            continue;
        };
        let Some(finished_at) = status.finished_at_ms.filter(|_| is_terminal(&status)) else {
            continue;
        };
        finished += 1;
        if finished > retention.jobs || now_ms.saturating_sub(finished_at) > retention.for_ms {
            drop.push(id.value());
        }
    }
    let mut tasks = txn.open_table(JOB_TASKS)?;
    for &id in &drop {
        jobs.remove(id)?;
        tasks.remove(id)?;
    }
    if !drop.is_empty() {
        txn.open_table(REQUESTS)?
            .retain(|_, job| !drop.contains(&job))?;
    }
    Ok(())
}
