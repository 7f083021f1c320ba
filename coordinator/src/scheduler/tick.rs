//! What time tells, on every tick: silent and suspect workers declared
//! dead, late ones probed, slow ones judged, hung attempts failed, waiting
//! reducers preempted for the maps they wait for, and jobs left without
//! workers failed.

use harrow_core::ids::{AttemptId, JobId, WorkerId};
use harrow_core::task::FailureKind;

use super::attempt::LostCause;
use super::{
    Action, Attempt, AttemptState, JobEvent, JobState, Scheduler, TaskEvent, Worker, WorkerState,
};
use crate::limits::SPEED_WINDOW_MS;

impl Scheduler {
    pub(super) fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let timeout = self.config.worker_timeout_ms;
        let suspect_timeout = self.config.suspect_timeout_ms;
        let overdue: Vec<(WorkerId, String)> = self
            .workers
            .values()
            .filter_map(|w| match &w.state {
                _ if !w.is_alive() => None,
                _ if now_ms.saturating_sub(w.last_heartbeat_ms) > timeout => {
                    Some((w.id, format!("{} sent no heartbeat for {timeout} ms", w.id)))
                }
                WorkerState::Suspect {
                    since_ms, reason, ..
                } if now_ms.saturating_sub(*since_ms) > suspect_timeout => Some((
                    w.id,
                    format!(
                        "{} was suspect for {suspect_timeout} ms (--suspect-timeout) without answering: {reason}",
                        w.id
                    ),
                )),
                _ => None,
            })
            .collect();
        for (worker, reason) in overdue {
            actions.extend(self.declare_dead(worker, reason, now_ms));
        }
        actions.extend(self.probe_late_workers(now_ms));
        self.judge_speed(now_ms);
        actions.extend(self.fail_hung_attempts(now_ms));
        actions.extend(self.preempt_waiting_reducers(now_ms));
        actions.extend(self.fail_jobs_without_workers(now_ms));
        actions
    }

    /// Probes, once per silence, every alive or draining worker whose
    /// heartbeat is `late_heartbeat_ms` late: a process that died is found
    /// by its refused connection long before the worker timeout, whether
    /// or not a reducer was fetching from it.
    fn probe_late_workers(&mut self, now_ms: u64) -> Vec<Action> {
        let late = self.config.late_heartbeat_ms;
        let mut actions = Vec::new();
        for worker in self.workers.values_mut() {
            let silent = now_ms.saturating_sub(worker.last_heartbeat_ms) > late;
            let probed = worker.late_probe_for_ms == Some(worker.last_heartbeat_ms);
            if matches!(worker.state, WorkerState::Alive | WorkerState::Draining)
                && silent
                && !probed
            {
                worker.late_probe_for_ms = Some(worker.last_heartbeat_ms);
                actions.push(Action::ProbeWorker {
                    worker: worker.id,
                    address: worker.shuffle_address.clone(),
                });
            }
        }
        actions
    }

    /// Fails attempts that made no progress for twice the stall timeout:
    /// the stall already got them a backup, so their code is stuck (an
    /// endless loop in job code), not slow. The failure counts toward
    /// `max_attempts`; the worker kills the attempt at its next heartbeat.
    pub(super) fn fail_hung_attempts(&mut self, now_ms: u64) -> Vec<Action> {
        let limit = self.config.stall_timeout_ms.saturating_mul(2);
        let hung: Vec<AttemptId> = self
            .jobs
            .values()
            .filter(|j| j.state == JobState::Running)
            .flat_map(|j| j.running_tasks())
            .flat_map(|t| &t.attempts)
            .filter(|a| a.state == AttemptState::Running && a.waiting_since_ms.is_none())
            .filter(|a| now_ms.saturating_sub(a.progress_at_ms) > limit)
            .map(|a| a.id)
            .collect();
        let mut actions = Vec::new();
        for attempt in hung {
            let event = TaskEvent::Failed {
                attempt,
                error: format!(
                    "made no progress for {} s (twice --stall-timeout); killed as hung",
                    limit / 1000
                ),
                kind: FailureKind::Job,
                counters: Default::default(),
            };
            actions.extend(self.apply_to_task(attempt, event, now_ms));
        }
        actions
    }

    /// Marks the workers whose attempts run far slower than their peers'
    /// as slow, and clears those that caught up (or whose slow attempts
    /// aged out of the window: they are tried again).
    fn judge_speed(&mut self, now_ms: u64) {
        let live: Vec<WorkerId> = self
            .workers
            .values()
            .filter(|w| w.state == WorkerState::Alive)
            .map(|w| w.id)
            .collect();
        // Jobs that ended before the window hold no recent attempt.
        let recent = self.jobs.values().filter(|j| {
            j.finished_at_ms
                .is_none_or(|end| now_ms.saturating_sub(end) <= SPEED_WINDOW_MS)
        });
        let mut slow = super::speed::slow_workers(recent, &live, now_ms);
        for worker in self.workers.values_mut() {
            worker.slow = slow.remove(&worker.id);
        }
    }

    /// Reduce attempts waiting for map output hold slots the maps they wait
    /// for need, and those maps are the job's critical path: while a job
    /// has map tasks ready to run and no worker that takes tasks has a free
    /// slot, it gives up one waiting reducer per such map (those that
    /// fetched least first), counted against nothing; they run again once
    /// the maps are done and fetch what they had anew, which costs less
    /// than re-running the maps on a fraction of the slots. The worker
    /// stops them at its next heartbeat or wait.
    pub(super) fn preempt_waiting_reducers(&mut self, now_ms: u64) -> Vec<Action> {
        let takers: Vec<(WorkerId, u32)> = self
            .workers()
            .filter(|w| w.takes_tasks())
            .map(|w| (w.id, w.slots))
            .collect();
        if takers
            .iter()
            .any(|&(w, slots)| self.running_on(w) < slots as usize)
        {
            return Vec::new();
        }
        let mut preempt = Vec::new();
        for job in self.jobs.values().filter(|j| j.state == JobState::Running) {
            let ready = job.runnable(harrow_core::ids::Phase::Map, now_ms).count();
            if ready == 0 {
                continue;
            }
            let mut waiting: Vec<&Attempt> = job
                .reduces
                .iter()
                .flat_map(|t| &t.attempts)
                .filter(|a| {
                    a.state == AttemptState::Running
                        && a.waiting_since_ms.is_some()
                        && takers.iter().any(|&(w, _)| w == a.worker)
                })
                .collect();
            waiting.sort_by_key(|a| (a.progress_bytes, a.id));
            preempt.extend(waiting.into_iter().take(ready).map(|a| a.id));
        }
        let reason = "killed while waiting for map output, to make room for it";
        self.lose_attempts(preempt, reason, LostCause::Preempted, now_ms)
    }

    /// Fails every job with work to do once no worker has been alive for
    /// the no-worker timeout (counted from the job's submission if later).
    pub(super) fn fail_jobs_without_workers(&mut self, now_ms: u64) -> Vec<Action> {
        if self.workers.values().any(Worker::is_alive) {
            self.no_workers_since_ms = None;
            return Vec::new();
        }
        let since = *self.no_workers_since_ms.get_or_insert(now_ms);
        let timeout = self.config.no_worker_timeout_ms;
        let stuck: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| matches!(j.state, JobState::Queued | JobState::Running))
            .filter(|j| now_ms.saturating_sub(since.max(j.submitted_at_ms)) >= timeout)
            .map(|j| j.id)
            .collect();
        let mut actions = Vec::new();
        for job in stuck {
            let error = format!(
                "no live worker for {timeout} ms (--no-worker-timeout) while the job had work to do"
            );
            actions.extend(self.end_job(job, JobEvent::TaskFailed { error }, now_ms));
        }
        actions
    }
}
