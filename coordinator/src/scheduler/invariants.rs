//! What must hold after every event, checked in debug builds (every test,
//! the simulations included) at the end of `Scheduler::handle`.

use super::index::TaskIndex;
use super::{AttemptState, Scheduler, TaskState};

impl Scheduler {
    /// Panics, naming the task or attempt, if the state is inconsistent:
    /// - a running task's attempt list is exactly its running attempts;
    /// - a succeeded task's attempt succeeded, and a reduce task's is the
    ///   one attempt granted the commit;
    /// - the commit is held by at most one attempt, running or succeeded;
    /// - a running attempt runs on a live worker;
    /// - a job that ended runs nothing;
    /// - a job's index agrees with its tasks.
    pub(super) fn check_invariants(&self) {
        for job in self.jobs.values() {
            assert!(
                job.index == TaskIndex::of(job.tasks()),
                "{}: the task index disagrees with its tasks",
                job.id
            );
            for task in job.tasks() {
                let running: Vec<_> = task
                    .attempts
                    .iter()
                    .filter(|a| a.state == AttemptState::Running)
                    .map(|a| a.id)
                    .collect();
                match &task.state {
                    TaskState::Running { attempts } => {
                        let mut listed = attempts.clone();
                        listed.sort();
                        let mut found = running.clone();
                        found.sort();
                        assert_eq!(listed, found, "{}: running attempts disagree", task.id);
                        assert!(!listed.is_empty(), "{} runs no attempt", task.id);
                    }
                    TaskState::Succeeded { attempt, .. } => {
                        let state = task.attempt(*attempt).map(|a| &a.state);
                        assert_eq!(
                            state,
                            Some(&AttemptState::Succeeded),
                            "{} succeeded through {attempt}",
                            task.id
                        );
                        if task.id.phase == harrow_core::ids::Phase::Reduce {
                            assert_eq!(
                                task.committer,
                                Some(*attempt),
                                "{} committed another attempt than the one that succeeded",
                                task.id
                            );
                        }
                    }
                    TaskState::Pending | TaskState::Failed { .. } | TaskState::Cancelled => {}
                }
                if let Some(committer) = task.committer {
                    let state = task.attempt(committer).map(|a| &a.state);
                    assert!(
                        matches!(state, Some(AttemptState::Running | AttemptState::Succeeded)),
                        "{}: the commit is held by {committer}, which is {state:?}",
                        task.id
                    );
                }
                for attempt in task
                    .attempts
                    .iter()
                    .filter(|a| a.state == AttemptState::Running)
                {
                    assert!(
                        self.alive(attempt.worker),
                        "{} runs on {}, which is not alive",
                        attempt.id,
                        attempt.worker
                    );
                    assert!(
                        !job.state.is_terminal(),
                        "{} runs in {}, which has ended",
                        attempt.id,
                        job.id
                    );
                }
            }
        }
    }
}
