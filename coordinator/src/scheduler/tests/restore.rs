//! Resuming from the state dir (`scheduler/restore.rs`): what a restarted
//! coordinator makes of jobs, tasks and workers as they were written.

use std::collections::{BTreeMap, BTreeSet};

use harrow_core::ids::{AttemptId, Phase, WorkerId};
use proptest::prelude::*;

use super::{Harness, phases};
use crate::scheduler::*;

/// A new scheduler holding what `h`'s held, as the state dir would give it.
fn restarted(h: &Harness, now_ms: u64) -> (Harness, Vec<Action>) {
    resumed(durable(h), now_ms)
}

/// A new scheduler resumed from `saved` at `now_ms`.
fn resumed(saved: Durable, now_ms: u64) -> (Harness, Vec<Action>) {
    let mut after = Harness::new(4);
    after.now_ms = now_ms;
    let actions = after.scheduler.restore(saved.workers, saved.jobs, now_ms);
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

/// What the state dir holds: the scheduler as of the last answered report
/// or commit grant (those are answered only once written).
#[derive(Clone)]
struct Durable {
    workers: Vec<Worker>,
    jobs: Vec<ResumedJob>,
}

fn durable(h: &Harness) -> Durable {
    Durable {
        workers: h.scheduler.workers().cloned().collect(),
        jobs: h
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
            .collect(),
    }
}

/// A simulated worker process: the attempts it runs.
struct Process {
    id: WorkerId,
    running: Vec<harrow_core::task::Assignment>,
}

impl Process {
    /// Heartbeats what it runs, and stops what the coordinator says to.
    fn beat(&mut self, h: &mut Harness) {
        let running: Vec<AttemptId> = self.running.iter().map(|a| a.attempt).collect();
        for action in h.heartbeat(self.id, &running, 0) {
            if let Action::KillAttempts { attempts, .. } = action {
                self.running.retain(|a| !attempts.contains(&a.attempt));
            }
        }
    }

    /// Asks for work for its free slots (two in all).
    fn take_work(&mut self, h: &mut Harness) {
        let free = 2u32.saturating_sub(self.running.len() as u32);
        if free == 0 {
            return;
        }
        let request = Event::RequestTasks {
            worker: self.id,
            free_slots: free,
        };
        for action in h.handle(request) {
            if let Action::Assign { assignment, .. } = action {
                self.running.push(*assignment);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Crashes at random points, each restoring from the last durable
    /// point, with the worker processes carrying on: the job still ends
    /// well, and no partition is ever granted to two attempts that both
    /// wrote their output.
    #[test]
    fn restores_from_any_durable_point_never_commit_twice(
        steps in proptest::collection::vec((0u8..100, 0usize..1_000), 1..300),
    ) {
        let mut h = Harness::new(4);
        let mut processes: Vec<Process> = (0..3)
            .map(|_| Process { id: h.worker(), running: Vec::new() })
            .collect();
        let job = h.submit(12, 3);
        let mut saved = durable(&h);
        // Per partition, the attempts that were granted the commit and then
        // reported their output written.
        let mut written: BTreeMap<u32, BTreeSet<AttemptId>> = BTreeMap::new();

        let mut finish = |h: &mut Harness, p: &mut Process, pick: usize, saved: &mut Durable| {
            if p.running.is_empty() {
                return;
            }
            let mut a = p.running.remove(pick % p.running.len());
            match h.ask_locations(p.id, &mut a) {
                super::Outputs::Known => {}
                super::Outputs::Pending => {
                    p.running.push(a);
                    return;
                }
                super::Outputs::Stopped => return,
            }
            if a.attempt.task.phase == Phase::Reduce {
                let commit = Event::RequestCommit { worker: p.id, attempt: a.attempt };
                if h.handle(commit) != [Action::CommitGranted { attempt: a.attempt }] {
                    return;
                }
                *saved = durable(h);
                let outcome = harrow_core::task::AttemptOutcome::Succeeded {
                    segments: Vec::new(),
                    input: Default::default(),
                };
                h.report(p.id, a.attempt, outcome);
                written.entry(a.attempt.task.index).or_default().insert(a.attempt);
            } else {
                h.succeed(p.id, &a);
            }
            *saved = durable(h);
        };

        for (dice, pick) in steps {
            let p = &mut processes[pick % 3];
            match dice {
                0..=34 => p.take_work(&mut h),
                35..=79 => finish(&mut h, p, pick, &mut saved),
                80..=94 => p.beat(&mut h),
                _ => {
                    // The coordinator dies and comes back from its state dir;
                    // the processes carry on and heartbeat first.
                    h = resumed(saved.clone(), h.now_ms + 1_000).0;
                    for p in processes.iter_mut() {
                        p.beat(&mut h);
                    }
                }
            }
        }
        // Time and work until the job ends.
        for round in 0..2_000usize {
            if h.state(job) != JobState::Running && h.state(job) != JobState::Queued {
                break;
            }
            for p in processes.iter_mut() {
                p.beat(&mut h);
                p.take_work(&mut h);
                finish(&mut h, p, round, &mut saved);
            }
            h.advance(100);
        }
        prop_assert_eq!(h.state(job), JobState::Committing);
        for (partition, attempts) in &written {
            prop_assert_eq!(attempts.len(), 1, "partition {} by {:?}", partition, attempts);
        }
        prop_assert_eq!(written.len(), 3);
    }
}
