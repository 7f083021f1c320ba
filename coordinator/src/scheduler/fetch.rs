//! Fetch failures: what a reducer's report that it could not fetch a map
//! output means for the output's worker (suspect, or one map task run
//! again), for the map task (counted, up to `max_fetch_failures`) and for
//! the reducer (it waits for the new location, or is blamed), and the
//! long poll of a waiting reducer.

use harrow_core::ids::{AttemptId, WorkerId};
use harrow_core::task::{AttemptCounters, FailureKind, FetchFailure};

use super::{
    Action, Attempt, FetchFailureRecord, JobEvent, JobState, Scheduler, TaskEvent, TaskOutput,
    TaskState, UnreachableReport, WorkerState,
};

/// What a fetch failure means for the reduce attempt that reported it.
pub(super) enum FetchVerdict {
    /// Not its fault: it may wait for the output's new location.
    Wait,
    /// Its own worker is to blame: it fails, as the worker's failure.
    Blamed(String),
}

/// A reduce attempt's report that it could not fetch a map output.
#[derive(Debug, Clone)]
pub struct FetchReport {
    /// The reducer's worker.
    pub reducer: WorkerId,
    /// The reduce attempt.
    pub attempt: AttemptId,
    pub map_attempt: AttemptId,
    pub message: String,
    pub cause: FetchFailure,
}

impl Scheduler {
    /// A reducer could not fetch a map output. Unless the reducer's own
    /// worker is to blame, the reduce attempt may wait for the output's new
    /// location (or, once ended, is lost: it counts toward nothing). What
    /// happens to the map output depends on the cause:
    /// - the holder did not answer: the holder becomes suspect, and all
    ///   its needed output is set aside at once (not one file at a time);
    /// - the segment was missing or corrupt: that one map task runs again.
    ///
    /// Either way the failure is counted against the map task: one whose
    /// output keeps failing fails the job. Failures to reach a worker that
    /// then dies are forgotten: its death explains them.
    pub(super) fn note_fetch_failure(
        &mut self,
        fetch: FetchReport,
        now_ms: u64,
    ) -> (FetchVerdict, Vec<Action>) {
        let FetchReport {
            reducer,
            map_attempt,
            message,
            cause,
            ..
        } = fetch;
        let reason = format!("could not fetch the output of {map_attempt}: {message}");
        // A location already replaced (its worker suspect or dead, or a
        // re-run) tells nothing new.
        let Some(holder) = self.holder(map_attempt) else {
            return (FetchVerdict::Wait, Vec::new());
        };
        if cause == FetchFailure::Unreachable {
            if let Some(others) = self.blames_reducer(reducer, holder, now_ms) {
                let error = format!(
                    "{reducer} could not reach {holder} nor {others}, which other workers reach: {reason}"
                );
                return (FetchVerdict::Blamed(error), Vec::new());
            }
            let report = UnreachableReport {
                target: holder,
                at_ms: now_ms,
            };
            let record = self.workers.get_mut(&reducer).expect("reporter is alive");
            record.unreachable_reports.push(report);
        }
        let limit = self.config.max_fetch_failures;
        let job = self
            .jobs
            .get_mut(&map_attempt.task.job)
            .expect("holder has a job");
        let record = FetchFailureRecord { holder, cause };
        let failures = job.record_fetch_failure(map_attempt.task, record);
        if failures >= limit {
            let task = job.task(map_attempt.task).expect("task exists");
            let error = format!(
                "the output of map task {} ({}) could not be fetched {failures} times (--max-fetch-failures) from workers that stayed alive; last error: {message}",
                map_attempt.task, task.input
            );
            let ended = self.end_job(map_attempt.task.job, JobEvent::TaskFailed { error }, now_ms);
            return (FetchVerdict::Wait, ended);
        }
        let effects = match cause {
            FetchFailure::Unreachable => {
                let suspicion = format!("a reducer on {reducer} could not reach it: {message}");
                self.suspect(holder, suspicion, now_ms)
            }
            FetchFailure::Corrupt => {
                let (event, max_attempts) = (TaskEvent::OutputLost, self.config.max_attempts);
                job.apply_to_task(map_attempt.task, event, now_ms, max_attempts)
                    .expect("task exists");
                Vec::new()
            }
        };
        (FetchVerdict::Wait, effects)
    }

    /// A running reduce attempt's fetch failure: it waits for the new
    /// locations, keeping what it fetched, unless it is to blame.
    pub(super) fn fetch_failed_while_running(
        &mut self,
        fetch: FetchReport,
        now_ms: u64,
    ) -> Vec<Action> {
        let (worker, attempt) = (fetch.reducer, fetch.attempt);
        if !self.is_running_on(attempt, worker) || !self.alive(worker) {
            return vec![Action::StopAttempt {
                attempt,
                reason: "the attempt no longer runs".to_string(),
            }];
        }
        let (verdict, mut actions) = self.note_fetch_failure(fetch, now_ms);
        match verdict {
            FetchVerdict::Wait if self.is_running_on(attempt, worker) => {
                let record = self.attempt_mut(attempt).expect("running attempt exists");
                record.waiting_since_ms.get_or_insert(now_ms);
                actions.push(Action::WaitForMapOutputs { attempt });
            }
            // Its job just failed on this report.
            FetchVerdict::Wait => actions.push(Action::StopAttempt {
                attempt,
                reason: "its job ended".to_string(),
            }),
            FetchVerdict::Blamed(error) => {
                let event = TaskEvent::Failed {
                    attempt,
                    error: error.clone(),
                    kind: FailureKind::Worker,
                    counters: AttemptCounters::default(),
                };
                actions.extend(self.apply_to_task(attempt, event, now_ms));
                actions.push(Action::StopAttempt {
                    attempt,
                    reason: error,
                });
            }
        }
        actions
    }

    /// A waiting reduce attempt's question: nothing while some map task is
    /// still to run again (the attempt counts as waiting from then on), the
    /// locations once all have succeeded.
    pub(super) fn wait_map_outputs(
        &mut self,
        worker: WorkerId,
        attempt: AttemptId,
        now_ms: u64,
    ) -> Vec<Action> {
        if !self.is_running_on(attempt, worker) || !self.alive(worker) {
            return vec![Action::StopAttempt {
                attempt,
                reason: "the attempt no longer runs (killed to make room for maps, superseded, or its job ended)".to_string(),
            }];
        }
        let job = &self.jobs[&attempt.task.job];
        if job.state != JobState::Running || !job.maps_done() {
            let record = self.attempt_mut(attempt).expect("running attempt exists");
            record.waiting_since_ms.get_or_insert(now_ms);
            return Vec::new();
        }
        let outputs = self
            .map_outputs(attempt.task.job, attempt.task.index)
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .expect("every map task succeeded");
        let record = self.attempt_mut(attempt).expect("running attempt exists");
        if let Some(since) = record.waiting_since_ms.take() {
            record.waited_ms += now_ms.saturating_sub(since);
        }
        record.progress_at_ms = now_ms;
        vec![Action::MapOutputs { attempt, outputs }]
    }

    fn attempt_mut(&mut self, attempt: AttemptId) -> Option<&mut Attempt> {
        self.jobs
            .get_mut(&attempt.task.job)?
            .task_mut(attempt.task)?
            .attempt_mut(attempt)
    }

    /// The worker holding `map_attempt`'s output, if that is still the
    /// output reducers are given.
    fn holder(&self, map_attempt: AttemptId) -> Option<WorkerId> {
        let task = self
            .jobs
            .get(&map_attempt.task.job)?
            .task(map_attempt.task)?;
        match &task.state {
            TaskState::Succeeded {
                attempt,
                output: TaskOutput::Map { worker, .. },
            } if *attempt == map_attempt => Some(*worker),
            _ => None,
        }
    }

    /// Whether a reducer on `reducer` that cannot reach `target` is itself
    /// to blame: lately it also could not reach another worker which is
    /// alive and not suspect (cleared, or reached by everyone else). Names
    /// those others.
    fn blames_reducer(&self, reducer: WorkerId, target: WorkerId, now_ms: u64) -> Option<String> {
        let window = 2 * self
            .config
            .worker_timeout_ms
            .max(self.config.suspect_timeout_ms);
        let mut others: Vec<WorkerId> = self.workers[&reducer]
            .unreachable_reports
            .iter()
            .filter(|r| r.target != target && now_ms.saturating_sub(r.at_ms) <= window)
            .map(|r| r.target)
            .filter(|w| {
                self.workers
                    .get(w)
                    .is_some_and(|w| w.state == WorkerState::Alive)
            })
            .collect();
        others.sort_unstable();
        others.dedup();
        (!others.is_empty()).then(|| {
            others
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        })
    }
}
