//! An attempt's end: the commit it asks for, the outcome it reports, and\n//! what that does to its task and job.

use harrow_core::ids::{AttemptId, Phase, WorkerId};
use harrow_core::task::{AttemptCounters, AttemptOutcome, FailureKind};

use super::{
    Action, FetchReport, FetchVerdict, JobEvent, JobState, LostCause, Scheduler, TaskChange,
    TaskEvent, TaskOutput, input_check, phase_name,
};

impl Scheduler {
    /// Grants the commit to the first running attempt of a reduce task that asks.
    pub(super) fn request_commit(
        &mut self,
        worker: WorkerId,
        attempt: AttemptId,
        now_ms: u64,
    ) -> Vec<Action> {
        let refuse = |reason: &str| {
            vec![Action::CommitRefused {
                attempt,
                reason: reason.to_string(),
            }]
        };
        if !self.is_running_on(attempt, worker) || !self.alive(worker) {
            return refuse(
                "the attempt is not running on this worker (killed, superseded, its worker was declared dead, or its job ended)",
            );
        }
        let job = self
            .jobs
            .get_mut(&attempt.task.job)
            .expect("running attempt has a job");
        if job.state != JobState::Running {
            return refuse("the job is not running");
        }
        let task = job.task(attempt.task).expect("running attempt has a task");
        match task.committer {
            None if attempt.task.phase == Phase::Reduce => {
                job.grant_commit(attempt);
                vec![Action::CommitGranted { attempt }]
            }
            None => refuse("map attempts do not commit"),
            Some(holder) if holder == attempt => vec![Action::CommitGranted { attempt }],
            Some(holder) => {
                // The losing backup: it ends here, through no fault of its
                // own, and its coming failure report is fenced.
                let reason = format!("{holder} holds the commit");
                let refused = refuse(&reason);
                let event = TaskEvent::Lost {
                    attempt,
                    reason,
                    cause: LostCause::CommitHeldElsewhere,
                };
                job.apply_to_task(attempt.task, event, now_ms, self.config.max_attempts);
                refused
            }
        }
    }

    pub(super) fn attempt_ended(
        &mut self,
        worker: WorkerId,
        attempt: AttemptId,
        counters: AttemptCounters,
        outcome: AttemptOutcome,
        now_ms: u64,
    ) -> Vec<Action> {
        // Fencing: only a running attempt on the live worker it was given
        // to may change anything.
        if !self.is_running_on(attempt, worker) || !self.alive(worker) {
            return Vec::new();
        }
        let mut actions = Vec::new();
        let event = match outcome {
            AttemptOutcome::FetchFailed {
                map_attempt,
                message,
                cause,
            } => {
                let fetch = FetchReport {
                    reducer: worker,
                    attempt,
                    map_attempt,
                    message,
                    cause,
                };
                let attempt = fetch.attempt;
                let reason = format!(
                    "could not fetch the output of {}: {}",
                    fetch.map_attempt, fetch.message
                );
                let (verdict, effects) = self.note_fetch_failure(fetch, now_ms);
                actions.extend(effects);
                match verdict {
                    FetchVerdict::Wait => TaskEvent::Lost {
                        attempt,
                        reason,
                        cause: LostCause::Fetch,
                    },
                    FetchVerdict::Blamed(error) => TaskEvent::Failed {
                        attempt,
                        error,
                        kind: FailureKind::Worker,
                        counters: AttemptCounters::default(),
                    },
                }
            }
            AttemptOutcome::HandedBack { message } => TaskEvent::Lost {
                attempt,
                reason: format!("handed back by its worker: {message}"),
                cause: LostCause::HandedBack,
            },
            outcome => self.outcome_event(attempt, worker, counters, outcome),
        };
        actions.extend(self.apply_to_task(attempt, event, now_ms));
        actions
    }

    /// The task event of a map or reduce attempt's own outcome.
    fn outcome_event(
        &self,
        attempt: AttemptId,
        worker: WorkerId,
        counters: AttemptCounters,
        outcome: AttemptOutcome,
    ) -> TaskEvent {
        let job = &self.jobs[&attempt.task.job];
        let task = job.task(attempt.task).expect("running attempt has a task");
        let error = match (outcome, attempt.task.phase) {
            (AttemptOutcome::Succeeded { segments, input }, Phase::Map)
                if segments.len() == job.plan.spec.reducers as usize =>
            {
                return TaskEvent::Succeeded {
                    attempt,
                    output: TaskOutput::Map {
                        worker,
                        segments,
                        input,
                    },
                    counters,
                };
            }
            (AttemptOutcome::Succeeded { segments, .. }, Phase::Map) => format!(
                "reported {} segments for {} partitions",
                segments.len(),
                job.plan.spec.reducers
            ),
            (AttemptOutcome::Succeeded { .. }, Phase::Reduce)
                if task.committer == Some(attempt) =>
            {
                return TaskEvent::Succeeded {
                    attempt,
                    output: TaskOutput::Reduce,
                    counters,
                };
            }
            (AttemptOutcome::Succeeded { .. }, Phase::Reduce) => {
                "reported success without holding the commit".to_string()
            }
            (AttemptOutcome::Failed { message, kind }, _) => {
                return TaskEvent::Failed {
                    attempt,
                    error: message,
                    kind,
                    counters,
                };
            }
            (AttemptOutcome::FetchFailed { .. } | AttemptOutcome::HandedBack { .. }, _) => {
                unreachable!("handled by the caller")
            }
        };
        TaskEvent::Failed {
            attempt,
            error,
            kind: FailureKind::Job,
            counters,
        }
    }

    /// Applies a task event and what follows from it for the job.
    pub(super) fn apply_to_task(
        &mut self,
        attempt: AttemptId,
        event: TaskEvent,
        now_ms: u64,
    ) -> Vec<Action> {
        let max_attempts = self.config.max_attempts;
        let job = self
            .jobs
            .get_mut(&attempt.task.job)
            .expect("attempt has a job");
        let change = job
            .apply_to_task(attempt.task, event, now_ms, max_attempts)
            .expect("attempt has a task");
        let task = job.task(attempt.task).expect("attempt has a task");
        let description = format!(
            "{} task {} ({}) failed after {} attempts",
            phase_name(attempt.task.phase),
            attempt.task,
            task.input,
            task.attempts.len()
        );
        match change {
            TaskChange::Succeeded { .. }
                if attempt.task.phase == Phase::Reduce && job.reduces_done() =>
            {
                job.apply(JobEvent::AllReducesCommitted, now_ms);
                // Map output is needed no more: re-runs of output set aside
                // after the reducers had fetched it stop here.
                let event = TaskEvent::Cancelled;
                job.apply_to_each(Phase::Map, |_| true, &event, now_ms, max_attempts);
                vec![Action::CommitJob {
                    job: job.id,
                    output: job.plan.output.clone(),
                }]
            }
            TaskChange::Failed { error } => {
                let error = format!("{description}; last error: {error}");
                self.end_job(attempt.task.job, JobEvent::TaskFailed { error }, now_ms)
            }
            TaskChange::Succeeded { .. } if attempt.task.phase == Phase::Map => {
                match input_check::check(job, attempt.task) {
                    Some(error) => {
                        self.end_job(attempt.task.job, JobEvent::TaskFailed { error }, now_ms)
                    }
                    None => Vec::new(),
                }
            }
            TaskChange::Succeeded { .. }
            | TaskChange::AttemptEnded
            | TaskChange::Retrying
            | TaskChange::Ignored => Vec::new(),
            TaskChange::Started { .. } | TaskChange::Cancelled => {
                unreachable!("an attempt's end neither starts nor cancels a task")
            }
        }
    }
}
