//! What the services keep in the state dir, when there is one: ids are
//! reserved before they are handed out, a submission is answered once it
//! is stored, a job's end goes to the history, and a job the scheduler no
//! longer holds (it ended before a restart) is read from the history.

use std::sync::Arc;

use harrow_core::ids::JobId;
use harrow_proto::v1 as pb;
use tonic::Status;

use super::{Coordinator, status};
use crate::report::job_report;
use crate::scheduler::{Action, Event, JobPlan};
use crate::state::{IdKind, Retention, StateStore};

/// The coordinator's state dir and how long it keeps finished jobs.
pub(super) struct Durable {
    store: Arc<StateStore>,
    retention: Retention,
    /// Held from reserving an id to handing it out, so two submissions (or
    /// registrations) cannot both take the last reserved id.
    ids: tokio::sync::Mutex<()>,
}

impl Durable {
    pub(super) fn new(store: Arc<StateStore>, retention: Retention) -> Self {
        Durable {
            store,
            retention,
            ids: tokio::sync::Mutex::new(()),
        }
    }
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
        if let [Action::JobAccepted { job }] = actions.as_slice() {
            let stored = self.status_of(*job, false).expect("just accepted");
            if let Err(error) = durable.store.save_job(&stored).await {
                self.apply(Event::CancelJob { job: *job });
                return Err(status::internal("storing the submitted job", error));
            }
        }
        Ok(actions)
    }

    /// Registers a worker under an id never handed out before.
    pub(super) async fn register(
        self: &Arc<Self>,
        shuffle_address: String,
        slots: u32,
    ) -> Result<Vec<Action>, Status> {
        let event = Event::RegisterWorker {
            shuffle_address,
            slots,
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

    /// Stores a finished job, its tasks included, in the history.
    pub(super) fn keep_history(&self, job: JobId) {
        let Some(durable) = &self.durable else {
            return;
        };
        if let Some(full) = self.status_of(job, true) {
            durable
                .store
                .finish_job(&full, durable.retention, self.clock.now_ms());
        }
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

    /// Returns once what the services stored so far is durable (a
    /// cancellation is answered then).
    pub(super) async fn sync_state(&self) -> Result<(), Status> {
        match &self.durable {
            Some(durable) => durable
                .store
                .sync()
                .await
                .map_err(|e| status::internal("storing the job's end", e)),
            None => Ok(()),
        }
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

    /// Every job, newest first: those the scheduler holds, then the
    /// history's older ones.
    pub(super) fn job_statuses(&self) -> Result<Vec<pb::JobStatus>, Status> {
        let (mut statuses, oldest) = {
            let scheduler = self.lock();
            let statuses: Vec<pb::JobStatus> = scheduler
                .jobs()
                .rev()
                .map(|job| job_report(&scheduler, job, false).into())
                .collect();
            (statuses, scheduler.jobs().next().map(|job| job.id))
        };
        if let Some(durable) = &self.durable {
            let older = durable
                .store
                .jobs(oldest, durable.retention.jobs)
                .map_err(|e| status::internal("reading the job history", e))?;
            statuses.extend(older);
        }
        Ok(statuses)
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
