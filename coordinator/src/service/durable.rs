//! What the services keep in the state dir, when there is one. The
//! persister writes what changed in the scheduler (jobs, tasks, workers;
//! a job's end to the history) in one commit at a time, each taking every
//! change made while the last one was written. Ids are reserved before
//! they are handed out; a submission, a cancellation and a commit grant
//! are answered once the persister has written them. A job the scheduler
//! no longer holds (it ended before a restart) is read from the history.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use harrow_core::ids::{JobId, WorkerId};
use harrow_proto::v1 as pb;
use tokio::sync::oneshot;
use tonic::Status;

use super::{Coordinator, status};
use crate::report::job_report;
use crate::scheduler::{Action, Event, JobPlan, Scheduler};
use crate::state::{Changes, IdKind, Retention, StateStore};

/// How long a call waits for its change to be written before it gives up
/// on the coordinator's disk.
const WRITE_WAIT: Duration = Duration::from_secs(30);

/// The coordinator's state dir and how long it keeps finished jobs.
pub(super) struct Durable {
    store: Arc<StateStore>,
    retention: Retention,
    /// Held from reserving an id to handing it out, so two submissions (or
    /// registrations) cannot both take the last reserved id.
    ids: tokio::sync::Mutex<()>,
    /// What the state dir holds, as the persister last wrote it.
    written: std::sync::Mutex<Written>,
    /// The scheduler version the state dir holds everything of.
    durable: std::sync::Mutex<Watermark>,
}

/// How far the state dir holds the scheduler's changes, and the calls
/// waiting for a later version. A commit wakes only the calls it made
/// durable, not every waiting one: with a thousand reports waiting, a
/// wake-up for each at every commit costs more than the commits.
#[derive(Default)]
struct Watermark {
    reached: u64,
    waiting: BTreeMap<u64, Vec<oneshot::Sender<()>>>,
}

impl Watermark {
    /// Something to await until `version` is durable; `None` if it is.
    fn wait_for(&mut self, version: u64) -> Option<oneshot::Receiver<()>> {
        if version <= self.reached {
            return None;
        }
        let (wake, woken) = oneshot::channel();
        self.waiting.entry(version).or_default().push(wake);
        Some(woken)
    }

    /// Everything up to `version` is durable: wakes who waited for it.
    fn reach(&mut self, version: u64) {
        self.reached = self.reached.max(version);
        let later = self.waiting.split_off(&(self.reached + 1));
        for wake in std::mem::replace(&mut self.waiting, later)
            .into_values()
            .flatten()
        {
            let _ = wake.send(());
        }
    }
}

/// What was written, to find what changed since.
#[derive(Default)]
struct Written {
    /// Each live job's revision.
    jobs: BTreeMap<JobId, u64>,
    ended: BTreeSet<JobId>,
    /// Each worker's shown state, slots and address.
    workers: BTreeMap<WorkerId, (&'static str, u32, String)>,
}

impl Durable {
    /// The state dir, holding what `scheduler` was restored from.
    pub(super) fn new(store: Arc<StateStore>, retention: Retention, scheduler: &Scheduler) -> Self {
        let mut written = Written::default();
        for job in scheduler.jobs() {
            written.jobs.insert(job.id, job.revision);
        }
        for worker in scheduler.workers() {
            written.workers.insert(worker.id, worker_key(worker));
        }
        Durable {
            store,
            retention,
            ids: tokio::sync::Mutex::new(()),
            written: std::sync::Mutex::new(written),
            durable: std::sync::Mutex::default(),
        }
    }

    /// What changed since the last write, and the jobs whose end it
    /// writes; records it as written.
    fn changes(&self, scheduler: &mut Scheduler, now_ms: u64) -> (Changes, Vec<JobId>) {
        let changed = scheduler.take_changed();
        let scheduler = &*scheduler;
        let mut written = self.written.lock().expect("written lock");
        let mut changes = Changes::default();
        let mut ended = Vec::new();
        for job in scheduler.jobs() {
            if written.ended.contains(&job.id) {
                continue;
            }
            if job.state.is_terminal() {
                let full = job_report(scheduler, job, true).into();
                changes.ended(&full, self.retention, now_ms);
                written.jobs.remove(&job.id);
                written.ended.insert(job.id);
                ended.push(job.id);
                continue;
            }
            let Some(&revision) = written.jobs.get(&job.id) else {
                let summary = job_report(scheduler, job, false).into();
                changes.submitted(job, &summary);
                for task in job.tasks() {
                    changes.task(task);
                }
                written.jobs.insert(job.id, job.revision);
                continue;
            };
            if revision != job.revision {
                changes.job(job);
                written.jobs.insert(job.id, job.revision);
            }
            for &task in changed.get(&job.id).into_iter().flatten() {
                changes.task(job.task(task).expect("a changed task is the job's"));
            }
        }
        for worker in scheduler.workers() {
            let key = worker_key(worker);
            if written.workers.get(&worker.id) != Some(&key) {
                changes.worker(worker);
                written.workers.insert(worker.id, key);
            }
        }
        (changes, ended)
    }
}

fn worker_key(worker: &crate::scheduler::Worker) -> (&'static str, u32, String) {
    (
        worker.state.name(),
        worker.slots,
        worker.shuffle_address.clone(),
    )
}

impl Coordinator {
    /// Submits a planned job; with a state dir, answers once the job is
    /// stored (a job that cannot be stored is cancelled and the submission
    /// fails).
    pub(super) async fn submit(self: &Arc<Self>, plan: JobPlan) -> Result<Vec<Action>, Status> {
        let Some(durable) = &self.durable else {
            return Ok(self.apply(Event::SubmitJob { plan }));
        };
        let actions = self
            .with_reserved(durable, IdKind::Job, || {
                self.apply(Event::SubmitJob { plan })
            })
            .await?;
        if let [Action::JobAccepted { job }] = actions.as_slice()
            && let Err(error) = self.written().await
        {
            self.apply(Event::CancelJob { job: *job });
            return Err(error);
        }
        Ok(actions)
    }

    /// Starts the persister: it writes what changed whenever the
    /// scheduler's version moves, one commit at a time.
    pub fn start_persisting(self: &Arc<Self>) {
        if self.durable.is_none() {
            return;
        }
        let coordinator = self.clone();
        tokio::spawn(async move {
            let mut moved = coordinator.version.subscribe();
            loop {
                let durable = coordinator.durable.as_ref().expect("checked above");
                let (version, (changes, ended)) = {
                    let mut scheduler = coordinator.lock();
                    let version = *moved.borrow_and_update();
                    let changes = durable.changes(&mut scheduler, coordinator.clock.now_ms());
                    (version, changes)
                };
                if !changes.is_empty()
                    && let Err(error) = durable.store.write(changes).await
                {
                    // Write everything again on the next try.
                    tracing::error!(%error, "could not write the coordinator's state; retrying");
                    *durable.written.lock().expect("written lock") = Written::default();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                durable
                    .durable
                    .lock()
                    .expect("watermark lock")
                    .reach(version);
                // Their history is written: the state dir answers for them.
                if !ended.is_empty() {
                    coordinator.lock().retire(ended.iter().copied());
                    let mut written = durable.written.lock().expect("written lock");
                    for job in &ended {
                        written.ended.remove(job);
                    }
                }
                if moved.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Returns once the state dir holds every change made so far (with no
    /// state dir, at once).
    pub(super) async fn written(&self) -> Result<(), Status> {
        let Some(durable) = &self.durable else {
            return Ok(());
        };
        let target = *self.version.borrow();
        let Some(woken) = durable
            .durable
            .lock()
            .expect("watermark lock")
            .wait_for(target)
        else {
            return Ok(());
        };
        match tokio::time::timeout(WRITE_WAIT, woken).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Status::unavailable(
                "the coordinator could not write its state dir in time; try again",
            )),
        }
    }

    /// Registers a worker under an id never handed out before.
    pub(super) async fn register(
        self: &Arc<Self>,
        shuffle_address: String,
        slots: u32,
        incarnation: u64,
    ) -> Result<Vec<Action>, Status> {
        let event = Event::RegisterWorker {
            shuffle_address,
            slots,
            incarnation,
        };
        let Some(durable) = &self.durable else {
            return Ok(self.apply(event));
        };
        self.with_reserved(durable, IdKind::Worker, || self.apply(event))
            .await
    }

    /// Reserves the next id of `kind` durably, then runs `hand_out`, which
    /// takes it, with no other reservation in between.
    async fn with_reserved<T>(
        &self,
        durable: &Durable,
        kind: IdKind,
        hand_out: impl FnOnce() -> T,
    ) -> Result<T, Status> {
        let _ids = durable.ids.lock().await;
        let next = match kind {
            IdKind::Job => self.lock().next_job_id().0,
            IdKind::Worker => self.lock().next_worker_id().0,
        };
        durable
            .store
            .reserve(kind, next)
            .await
            .map_err(|e| status::internal("reserving an id", e))?;
        Ok(hand_out())
    }

    /// Records the ids handed out, once the services have stopped.
    pub async fn close_state(&self) -> Result<(), crate::state::StateError> {
        let Some(durable) = &self.durable else {
            return Ok(());
        };
        let _ids = durable.ids.lock().await;
        let (jobs, workers) = {
            let scheduler = self.lock();
            (
                scheduler.next_job_id().0 - 1,
                scheduler.next_worker_id().0 - 1,
            )
        };
        durable.store.close(jobs, workers).await
    }

    /// A job's status: the scheduler's while it holds the job, else the
    /// history's.
    pub(super) fn job_status(
        &self,
        job: JobId,
        include_tasks: bool,
    ) -> Result<pb::JobStatus, Status> {
        if let Some(status) = self.status_of(job, include_tasks) {
            return Ok(status);
        }
        let stored = match &self.durable {
            Some(durable) => durable
                .store
                .job(job, include_tasks)
                .map_err(|e| status::internal("reading the job history", e))?,
            None => None,
        };
        stored.ok_or_else(|| status::no_job(job))
    }

    /// The job a submission with this request id made: one the scheduler
    /// holds, or one in the history. None for an empty id.
    pub(super) fn job_submitted_as(&self, request_id: &str) -> Result<Option<JobId>, Status> {
        if request_id.is_empty() {
            return Ok(None);
        }
        if let Some(job) = self.lock().job_submitted_as(request_id) {
            return Ok(Some(job));
        }
        match &self.durable {
            Some(durable) => durable
                .store
                .job_for_request(request_id)
                .map_err(|e| status::internal("reading the job history", e)),
            None => Ok(None),
        }
    }

    /// Every job, newest first: those the scheduler holds as they are now,
    /// and the history's (ended jobs the scheduler let go of).
    pub(super) fn job_statuses(&self) -> Result<Vec<pb::JobStatus>, Status> {
        let held: Vec<pb::JobStatus> = {
            let scheduler = self.lock();
            scheduler
                .jobs()
                .map(|job| job_report(&scheduler, job, false).into())
                .collect()
        };
        let mut by_id: BTreeMap<JobId, pb::JobStatus> = BTreeMap::new();
        if let Some(durable) = &self.durable {
            let stored = durable
                .store
                .jobs(None, durable.retention.jobs + held.len())
                .map_err(|e| status::internal("reading the job history", e))?;
            for status in stored {
                if let Ok(id) = status.job_id.parse::<JobId>() {
                    by_id.insert(id, status);
                }
            }
        }
        for status in held {
            let id = status
                .job_id
                .parse::<JobId>()
                .expect("the coordinator's own job id");
            by_id.insert(id, status);
        }
        Ok(by_id.into_values().rev().collect())
    }

    fn status_of(&self, job: JobId, include_tasks: bool) -> Option<pb::JobStatus> {
        let scheduler = self.lock();
        let job = scheduler.job(job)?;
        Some(job_report(&scheduler, job, include_tasks).into())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, crate::scheduler::Scheduler> {
        self.scheduler.lock().expect("scheduler lock")
    }
}
