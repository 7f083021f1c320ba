//! Resuming from the state dir (`scheduler/restore.rs`): what a restarted
//! coordinator makes of jobs, tasks and workers as they were written.

use harrow_core::ids::Phase;

use super::{Harness, phases};
use crate::scheduler::*;

/// A new scheduler holding what `h`'s held, as the state dir would give it.
fn restarted(h: &Harness, now_ms: u64) -> (Harness, Vec<Action>) {
    let jobs = h
        .scheduler
        .jobs()
        .map(|job| ResumedJob {
            id: job.id,
            plan: job.plan.clone(),
            state: job.state.clone(),
            submitted_at_ms: job.submitted_at_ms,
            maps: job.maps.clone(),
            reduces: job.reduces.clone(),
        })
        .collect();
    let workers = h.scheduler.workers().cloned().collect();
    let mut after = Harness::new(4);
    after.now_ms = now_ms;
    let actions = after.scheduler.restore(workers, jobs, now_ms);
    (after, actions)
}

#[test]
fn finished_work_stands_and_running_attempts_go_on_if_their_worker_still_runs_them() {
    let mut h = Harness::new(4);
    let (a, b) = (h.worker(), h.worker());
    let job = h.submit(4, 1);
    let on_a = h.request(a, 2);
    let on_b = h.request(b, 2);
    h.succeed(a, &on_a[0]);
    h.succeed(b, &on_b[0]);

    let (mut h, actions) = restarted(&h, 50_000);
    assert!(actions.is_empty(), "{actions:?}");
    // a still runs its attempt, b's ended while the coordinator was down
    // (and its report was lost).
    assert!(h.heartbeat(a, &[on_a[1].attempt], 0).is_empty());
    h.heartbeat(b, &[], 0);
    let job_now = h.scheduler.job(job).unwrap();
    assert_eq!(job_now.maps[0].state.name(), "succeeded");
    assert_eq!(job_now.maps[2].state.name(), "succeeded");
    assert_eq!(
        job_now.maps[1].attempts[0].state,
        AttemptState::Running,
        "a's attempt goes on"
    );
    assert!(matches!(
        job_now.maps[3].attempts[0].state,
        AttemptState::Lost {
            cause: LostCause::Unconfirmed,
            ..
        }
    ));
    // Only b's lost map runs again, then the reduce, with a's output.
    let again = h.request(b, 2);
    assert_eq!(phases(&again), [Phase::Map]);
    assert_eq!(again[0].attempt.task, on_b[1].attempt.task);
    h.succeed(a, &on_a[1]);
    h.succeed(b, &again[0]);
    let reduce = h.request(b, 1);
    assert_eq!(phases(&reduce), [Phase::Reduce]);
    h.succeed(b, &reduce[0]);
    assert_eq!(h.state(job), JobState::Committing);
}

#[test]
fn a_worker_that_does_not_come_back_loses_its_output_and_a_committing_job_commits_again() {
    let mut h = Harness::new(4);
    let (a, b) = (h.worker(), h.worker());
    let job = h.submit(2, 1);
    let committing = h.submit_to(1, 1, "/elsewhere");
    for map in h.request(a, 2) {
        h.succeed(a, &map);
    }
    // b runs the first job's reduce, and all of the second job.
    let [reducing, other_map] = &h.request(b, 2)[..] else {
        panic!("two tasks for b")
    };
    h.succeed(b, other_map);
    let other_reduce = h.request(b, 1);
    h.succeed(b, &other_reduce[0]);
    assert_eq!(h.state(committing), JobState::Committing);

    let (mut h, actions) = restarted(&h, 50_000);
    let commits: Vec<JobId> = actions
        .iter()
        .filter_map(|a| match a {
            Action::CommitJob { job, .. } => Some(*job),
            _ => None,
        })
        .collect();
    assert_eq!(commits, [committing]);
    // a never heartbeats again: past the worker timeout it is dead, and
    // the map output it held, which b's reducer needs, runs again.
    for _ in 0..40 {
        h.heartbeat(b, &[reducing.attempt], 0);
        h.advance(500);
    }
    assert_eq!(h.state(job), JobState::Running);
    let state = h
        .scheduler
        .workers()
        .find(|w| w.id == a)
        .unwrap()
        .state
        .name();
    assert_eq!(state, "dead");
    let rerun = h.request(b, 1);
    assert_eq!(phases(&rerun), [Phase::Map]);
}
