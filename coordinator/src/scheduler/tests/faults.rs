//! Fault tolerance of the scheduler, driven by hand with the fake clock of
//! `tests::Harness`: dead workers, lost map output, fetch failures, stalls,
//! stragglers, exclusion, no workers, and a simulation of many workers
//! under random faults.

use std::collections::{BTreeMap, BTreeSet};

use harrow_core::ids::{AttemptId, Phase, TaskId, WorkerId};
use harrow_core::task::{Assignment, AttemptOutcome, FetchFailure, InputReport, TaskSpec};
use proptest::prelude::*;

use super::{Harness, Outputs, phases};
use crate::scheduler::*;

/// A reducer's report that one segment of `map` was missing or corrupt.
fn fetch_failed(
    h: &mut Harness,
    worker: WorkerId,
    reduce: AttemptId,
    map: AttemptId,
) -> Vec<Action> {
    fetch_failed_as(h, worker, reduce, map, FetchFailure::Corrupt)
}

fn fetch_failed_as(
    h: &mut Harness,
    worker: WorkerId,
    reduce: AttemptId,
    map: AttemptId,
    cause: FetchFailure,
) -> Vec<Action> {
    let message = match cause {
        FetchFailure::Corrupt => "CRC32C mismatch",
        FetchFailure::Unreachable => "tcp connect error: connection refused",
    };
    h.report(
        worker,
        reduce,
        AttemptOutcome::FetchFailed {
            map_attempt: map,
            message: message.into(),
            cause,
        },
    )
}

fn attempt_states(h: &Harness, task: TaskId) -> Vec<AttemptState> {
    let job = h.scheduler.job(task.job).unwrap();
    job.task(task)
        .unwrap()
        .attempts
        .iter()
        .map(|a| a.state.clone())
        .collect()
}

#[test]
fn a_dead_workers_attempts_and_needed_map_output_are_run_again() {
    let mut h = Harness::new(1);
    let (w1, w2) = (h.worker(), h.worker());
    let job = h.submit(3, 1);
    let maps = h.request(w1, 2);
    let third = h.request(w2, 1);
    h.succeed(w1, &maps[0]);
    h.succeed(w1, &maps[1]);
    // w1 falls silent; w2 keeps heartbeating its running map.
    h.now_ms += 600;
    h.heartbeat(w2, &[third[0].attempt], 10);
    let actions = h.advance(500);
    assert!(
        actions
            .iter()
            .all(|a| matches!(a, Action::ProbeWorker { .. })),
        "a job losing a worker goes on: {actions:?}"
    );
    assert!(
        !h.scheduler
            .workers()
            .find(|w| w.id == w1)
            .unwrap()
            .is_alive()
    );
    // Both maps whose output lived on w1 run again, on w2: not counted as
    // failures although max_attempts is 1.
    let again = h.request(w2, 2);
    assert_eq!(phases(&again), [Phase::Map, Phase::Map]);
    assert_eq!(again[0].attempt.number, 2);
    h.succeed(w2, &third[0]);
    h.succeed(w2, &again[0]);
    h.succeed(w2, &again[1]);
    let reduce = h.request(w2, 1);
    let TaskSpec::Reduce { map_outputs, .. } = &reduce[0].task else {
        panic!()
    };
    assert!(
        map_outputs
            .iter()
            .flatten()
            .all(|m| m.map_attempt.task.job == job)
    );
    h.succeed(w2, &reduce[0]);
    h.handle(Event::JobCommitEnded { job, error: None });
    assert_eq!(h.state(job), JobState::Succeeded);
}

#[test]
fn a_running_attempt_on_a_dead_worker_is_lost_not_failed() {
    let mut h = Harness::new(1);
    let (w1, w2) = (h.worker(), h.worker());
    let job = h.submit(1, 1);
    let map = h.request(w1, 1);
    h.heartbeat(w2, &[], 0);
    h.now_ms += 900;
    h.heartbeat(w2, &[], 0);
    h.advance(200);
    let task = map[0].attempt.task;
    assert!(matches!(
        attempt_states(&h, task)[..],
        [AttemptState::Lost { .. }]
    ));
    assert_eq!(h.state(job), JobState::Running);
    let retry = h.request(w2, 1);
    assert_eq!(retry[0].attempt.number, 2);
}

#[test]
fn a_worker_that_comes_back_is_unknown_and_its_late_reports_are_ignored() {
    let mut h = Harness::new(4);
    let (w1, w2) = (h.worker(), h.worker());
    let job = h.submit(1, 1);
    let map = h.request(w1, 1);
    h.now_ms += 900;
    h.heartbeat(w2, &[], 0);
    h.advance(200);
    let retry = h.request(w2, 1);
    // SIGCONT: the old worker reports and heartbeats as if nothing happened.
    assert!(h.succeed(w1, &map[0]).is_empty());
    assert_eq!(
        h.heartbeat(w1, &[map[0].attempt], 5),
        [Action::UnknownWorker { worker: w1 }]
    );
    assert_eq!(
        h.handle(Event::RequestTasks {
            worker: w1,
            free_slots: 1
        }),
        [Action::UnknownWorker { worker: w1 }]
    );
    let task = h.scheduler.job(job).unwrap().maps[0].clone();
    assert_eq!(
        task.state,
        TaskState::Running {
            attempts: vec![retry[0].attempt]
        }
    );
    // It registers again under a new id and is told to kill its old attempt.
    let again = h.worker();
    assert_ne!(again, w1);
    assert_eq!(
        h.heartbeat(again, &[map[0].attempt], 5),
        [Action::KillAttempts {
            worker: again,
            attempts: vec![map[0].attempt]
        }]
    );
}

#[test]
fn a_fetch_failure_reruns_the_map_without_counting_against_the_reducer() {
    let mut h = Harness::new(1);
    let w = h.worker();
    let job = h.submit(2, 1);
    for map in h.request(w, 2) {
        h.succeed(w, &map);
    }
    let reduce = h.request(w, 1);
    let TaskSpec::Reduce { map_outputs, .. } = &reduce[0].task else {
        panic!()
    };
    let bad = map_outputs[1].as_ref().unwrap().map_attempt;
    fetch_failed(&mut h, w, reduce[0].attempt, bad);
    assert!(matches!(
        attempt_states(&h, reduce[0].attempt.task)[..],
        [AttemptState::Lost { .. }]
    ));
    assert_eq!(
        h.scheduler.job(job).unwrap().maps[1].state,
        TaskState::Pending
    );
    // The map runs again; then the reducer, with the new location.
    let rerun = h.request(w, 2);
    assert_eq!(rerun.len(), 1);
    assert_eq!(rerun[0].attempt.task, bad.task);
    h.succeed(w, &rerun[0]);
    let reduce = h.request(w, 1);
    let TaskSpec::Reduce { map_outputs, .. } = &reduce[0].task else {
        panic!()
    };
    assert_eq!(
        map_outputs[1].as_ref().unwrap().map_attempt,
        rerun[0].attempt
    );
    h.succeed(w, &reduce[0]);
    assert_eq!(h.state(job), JobState::Committing);
}

#[test]
fn repeated_fetch_failures_fail_the_job_with_the_map_task_named() {
    let mut h = Harness::new(4);
    let w = h.worker();
    let job = h.submit(1, 1);
    for round in 1..=4 {
        let map = h.request(w, 1);
        assert_eq!(phases(&map), [Phase::Map], "round {round}");
        h.succeed(w, &map[0]);
        let reduce = h.request(w, 1);
        fetch_failed(&mut h, w, reduce[0].attempt, map[0].attempt);
    }
    let JobState::Failed { error } = h.state(job) else {
        panic!("{:?}", h.state(job))
    };
    assert!(
        error.contains("map task job-000001/m-00000 (/in/f0[0..10])"),
        "{error}"
    );
    assert!(
        error.contains("could not be fetched 4 times") && error.contains("CRC32C mismatch"),
        "{error}"
    );
}

#[test]
fn a_stalled_attempt_gets_a_backup_and_the_first_to_finish_wins() {
    let mut h = Harness::new(4);
    let (w1, w2) = (h.worker(), h.worker());
    h.submit(1, 1);
    let first = h.request(w1, 1);
    // Progress keeps it from being a stall.
    for bytes in 1..=3 {
        h.now_ms += 3_000;
        h.heartbeat(w1, &[first[0].attempt], bytes);
        h.heartbeat(w2, &[], 0);
        assert!(h.request(w2, 1).is_empty());
    }
    // No progress for longer than the stall timeout.
    for _ in 0..6 {
        h.now_ms += 900;
        h.heartbeat(w1, &[first[0].attempt], 3);
        h.heartbeat(w2, &[], 0);
    }
    let backup = h.request(w2, 1);
    assert_eq!(backup[0].attempt.task, first[0].attempt.task);
    assert_eq!(backup[0].attempt.number, 2);
    assert!(
        h.request(w1, 1).is_empty(),
        "no backup on the stalled attempt's own worker"
    );
    h.succeed(w2, &backup[0]);
    assert!(matches!(
        attempt_states(&h, first[0].attempt.task)[..],
        [AttemptState::Killed, AttemptState::Succeeded]
    ));
    assert_eq!(
        h.heartbeat(w1, &[first[0].attempt], 3),
        [Action::KillAttempts {
            worker: w1,
            attempts: vec![first[0].attempt]
        }]
    );
}

#[test]
fn an_attempt_without_progress_for_twice_the_stall_timeout_fails_as_hung() {
    let mut h = Harness::new(2);
    let w1 = h.worker();
    let job = h.submit(1, 1);
    let first = h.request(w1, 1);
    // Stalled (5 s): a backup would be offered to another worker, but
    // nothing fails yet.
    h.now_ms += 6_000;
    h.heartbeat(w1, &[first[0].attempt], 0);
    h.advance(0);
    assert!(matches!(
        attempt_states(&h, first[0].attempt.task)[..],
        [AttemptState::Running]
    ));
    // Hung (over 10 s): failed, counted, killed at the next heartbeat.
    h.now_ms += 4_500;
    h.heartbeat(w1, &[first[0].attempt], 0);
    h.advance(0);
    let states = attempt_states(&h, first[0].attempt.task);
    assert!(
        matches!(&states[..], [AttemptState::Failed { error, .. }] if error.contains("no progress")),
        "{states:?}"
    );
    assert_eq!(
        h.heartbeat(w1, &[first[0].attempt], 0),
        [Action::KillAttempts {
            worker: w1,
            attempts: vec![first[0].attempt]
        }]
    );
    // The retry hangs too: with max_attempts 2, the job fails naming why.
    let second = h.request(w1, 1);
    h.now_ms += 10_500;
    h.heartbeat(w1, &[second[0].attempt], 0);
    h.advance(0);
    match h.state(job) {
        JobState::Failed { error } => assert!(error.contains("killed as hung"), "{error}"),
        other => panic!("job is {other:?}"),
    }
}

#[test]
fn the_losing_backup_of_a_reduce_is_refused_the_commit_and_not_counted() {
    let mut h = Harness::new(1);
    let (w1, w2) = (h.worker(), h.worker());
    let job = h.submit(1, 1);
    let map = h.request(w1, 1);
    h.succeed(w1, &map[0]);
    let first = h.request(w1, 1);
    h.now_ms += 6_000;
    h.heartbeat(w1, &[first[0].attempt], 0);
    h.heartbeat(w2, &[], 0);
    let backup = h.request(w2, 1);
    assert_eq!(backup.len(), 1);
    let granted = h.handle(Event::RequestCommit {
        worker: w2,
        attempt: backup[0].attempt,
    });
    assert_eq!(
        granted,
        [Action::CommitGranted {
            attempt: backup[0].attempt
        }]
    );
    let refused = h.handle(Event::RequestCommit {
        worker: w1,
        attempt: first[0].attempt,
    });
    assert!(matches!(refused[..], [Action::CommitRefused { .. }]));
    // Its failure report is fenced: max_attempts is 1 and the job goes on.
    assert!(h.fail(w1, first[0].attempt, "commit refused").is_empty());
    h.report(
        w2,
        backup[0].attempt,
        AttemptOutcome::Succeeded {
            segments: vec![],
            input: InputReport::default(),
        },
    );
    assert_eq!(h.state(job), JobState::Committing);
}

#[test]
fn a_worker_where_a_job_keeps_failing_gets_no_more_of_its_tasks() {
    let mut h = Harness::new(10);
    let (bad, good) = (h.worker(), h.worker());
    h.submit(1, 1);
    for _ in 0..3 {
        let a = h.request(bad, 1);
        h.fail(bad, a[0].attempt, "disk full");
    }
    assert!(h.request(bad, 1).is_empty(), "excluded");
    assert_eq!(h.scheduler.excluded_from(bad).len(), 1);
    assert!(h.scheduler.excluded_from(good).is_empty());
    assert_eq!(h.request(good, 1).len(), 1);
}

#[test]
fn exclusion_never_leaves_a_job_without_any_worker() {
    let mut h = Harness::new(10);
    let only = h.worker();
    h.submit(1, 1);
    for _ in 0..5 {
        let a = h.request(only, 1);
        assert_eq!(a.len(), 1);
        h.fail(only, a[0].attempt, "flaky");
    }
}

#[test]
fn a_job_without_live_workers_fails_after_the_no_worker_timeout() {
    let mut h = Harness::new(4);
    let w = h.worker();
    let job = h.submit(1, 1);
    h.request(w, 1);
    h.advance(1_100);
    assert_eq!(h.state(job), JobState::Running);
    h.advance(9_000);
    assert_eq!(h.state(job), JobState::Running);
    let actions = h.advance(1_000);
    assert!(actions.contains(&Action::JobFinished {
        job,
        state: h.state(job)
    }));
    let JobState::Failed { error } = h.state(job) else {
        panic!()
    };
    assert!(error.contains("no live worker for 10000 ms"), "{error}");
}

#[test]
fn a_worker_registering_in_time_saves_the_job() {
    let mut h = Harness::new(4);
    let job = h.submit(1, 1);
    h.advance(9_000);
    let w = h.worker();
    h.advance(5_000 - 1_000);
    h.heartbeat(w, &[], 0);
    h.advance(500);
    assert_eq!(h.state(job), JobState::Queued);
}

#[test]
fn a_task_whose_workers_die_while_others_stay_alive_is_poison() {
    let mut h = Harness::new(4);
    let bystander = h.worker();
    let job = h.submit(2, 1);
    let other = h.request(bystander, 1);
    h.succeed(bystander, &other[0]);
    let mut victims = Vec::new();
    for round in 0..3 {
        assert_eq!(h.state(job), JobState::Running, "round {round}");
        let w = h.worker();
        victims.push(w);
        assert_eq!(h.request(w, 1).len(), 1);
        // Its worker goes silent; the bystander heartbeats on.
        for _ in 0..3 {
            h.heartbeat(bystander, &[], 0);
            h.advance(400);
        }
    }
    let JobState::Failed { error } = h.state(job) else {
        panic!("{:?}", h.state(job))
    };
    let names: Vec<String> = victims.iter().map(ToString::to_string).collect();
    assert!(
        error.contains("map task job-000001/m-00001")
            && error.contains(&names.join(", "))
            && error.contains("may be what kills them"),
        "{error}"
    );
}

#[test]
fn a_task_caught_in_deaths_of_many_workers_is_not_poison() {
    let mut h = Harness::new(4);
    let bystander = h.worker();
    let job = h.submit(1, 1);
    // Workers die all around (churn); the task is on three of them.
    for round in 0..3 {
        let others: Vec<WorkerId> = (0..2).map(|_| h.worker()).collect();
        let w = h.worker();
        assert_eq!(h.request(w, 1).len(), 1, "round {round}");
        for _ in 0..3 {
            h.heartbeat(bystander, &[], 0);
            h.advance(400);
        }
        assert!(
            others
                .iter()
                .all(|o| !h.scheduler.workers().any(|w| w.id == *o && w.is_alive()))
        );
    }
    assert_eq!(h.state(job), JobState::Running);
    let last = h.request(bystander, 1);
    h.succeed(bystander, &last[0]);
    let reduce = h.request(bystander, 1);
    h.succeed(bystander, &reduce[0]);
    assert_eq!(h.state(job), JobState::Committing);
}

/// A simulated worker of the property test.
struct SimWorker {
    id: WorkerId,
    alive: bool,
    /// Stops heartbeating but still "runs" (a SIGSTOP).
    paused: bool,
    running: Vec<Assignment>,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Many workers under random deaths, pauses, late and duplicate reports,
    /// task failures and fetch failures: every reduce commits exactly once,
    /// no stale attempt commits, the job never finishes with a partition
    /// missing, and it ends within a bound of simulated time.
    #[test]
    fn jobs_survive_random_faults(
        worker_count in 2usize..300,
        maps in 1usize..12,
        reducers in 1u32..6,
        steps in proptest::collection::vec((0u8..100, any::<u16>()), 1..600),
    ) {
        let mut h = Harness::new(4);
        let mut workers: Vec<SimWorker> = (0..worker_count)
            .map(|_| SimWorker { id: h.worker(), alive: true, paused: false, running: Vec::new() })
            .collect();
        let job = h.submit(maps, reducers);
        let mut failures: BTreeMap<TaskId, u32> = BTreeMap::new();
        let mut fetch_failures: BTreeMap<TaskId, u32> = BTreeMap::new();
        let mut finished: Vec<(WorkerId, Assignment)> = Vec::new();
        let mut granted: BTreeMap<TaskId, BTreeSet<AttemptId>> = BTreeMap::new();

        for (dice, pick) in steps {
            let pick = pick as usize;
            let index = pick % workers.len();
            match dice {
                0..=29 => {
                    let w = &mut workers[index];
                    if !w.alive || w.paused {
                        continue;
                    }
                    let reply = h.handle(Event::RequestTasks { worker: w.id, free_slots: 2 });
                    for action in reply {
                        match action {
                            Action::Assign { assignment, .. } => w.running.push(*assignment),
                            // Declared dead while paused: it registers anew,
                            // and what it ran under the old id is gone.
                            Action::UnknownWorker { .. } => {
                                *w = SimWorker { id: h.worker(), alive: true, paused: false, running: Vec::new() };
                            }
                            other => panic!("{other:?}"),
                        }
                    }
                }
                30..=64 => {
                    let w = &mut workers[index];
                    if w.running.is_empty() || !w.alive {
                        continue;
                    }
                    let mut a = w.running.remove(pick % w.running.len());
                    let id = w.id;
                    match h.ask_locations(id, &mut a) {
                        Outputs::Known => {}
                        Outputs::Pending => {
                            w.running.push(a);
                            continue;
                        }
                        Outputs::Stopped => continue,
                    }
                    let task = a.attempt.task;
                    let fail = failures.entry(task).or_default();
                    if dice < 40 && *fail < 2 {
                        *fail += 1;
                        h.fail(id, a.attempt, "injected");
                    } else if dice < 45 && task.phase == Phase::Reduce {
                        let TaskSpec::Reduce { map_outputs, .. } = &a.task else { unreachable!() };
                        let map = map_outputs[pick % map_outputs.len()].as_ref().unwrap().map_attempt;
                        let count = fetch_failures.entry(map.task).or_default();
                        if *count < 2 {
                            *count += 1;
                            fetch_failed(&mut h, id, a.attempt, map);
                        }
                    } else {
                        // Succeed, through the commit for reduces.
                        let outcome = match a.task {
                            TaskSpec::Map { .. } => AttemptOutcome::Succeeded {
                                segments: (0..reducers).map(|partition| harrow_core::task::SegmentInfo { partition, ..Default::default() }).collect(),
                                input: InputReport::default(),
                            },
                            TaskSpec::Reduce { .. } => {
                                let reply = h.handle(Event::RequestCommit { worker: id, attempt: a.attempt });
                                if let [Action::CommitGranted { attempt }] = reply[..] {
                                    let stale = h.scheduler.job(job).unwrap().task(task).unwrap()
                                        .attempt(attempt).unwrap().state != AttemptState::Running;
                                    prop_assert!(!stale, "{attempt} granted although not running");
                                    granted.entry(task).or_default().insert(attempt);
                                } else {
                                    h.fail(id, a.attempt, "commit refused");
                                    continue;
                                }
                                AttemptOutcome::Succeeded {
            segments: vec![],
            input: InputReport::default(),
        }
                            }
                        };
                        h.report(id, a.attempt, outcome);
                        finished.push((id, a));
                    }
                }
                65..=69 => {
                    // A duplicate or late report of something that already ended.
                    if let Some((id, a)) = finished.get(pick % finished.len().max(1)).cloned() {
                        h.fail(id, a.attempt, "late duplicate");
                        let segments = (0..reducers).map(|partition| harrow_core::task::SegmentInfo { partition, ..Default::default() }).collect();
                        h.report(id, a.attempt, AttemptOutcome::Succeeded {
            segments,
            input: InputReport::default(),
        });
                    }
                }
                70..=73 => {
                    // Death: the worker is gone with its disk.
                    workers[index].alive = false;
                }
                74..=76 => workers[index].paused = !workers[index].paused,
                77..=79 => {
                    // A dead worker comes back as a new registration.
                    if !workers[index].alive {
                        workers[index] = SimWorker { id: h.worker(), alive: true, paused: false, running: Vec::new() };
                    }
                }
                _ => {
                    // Time passes; live, unpaused workers heartbeat first.
                    h.now_ms += (pick % 700) as u64;
                    for w in workers.iter().filter(|w| w.alive && !w.paused) {
                        let running: Vec<AttemptId> = w.running.iter().map(|a| a.attempt).collect();
                        h.heartbeat(w.id, &running, h.now_ms);
                    }
                    h.handle(Event::Tick);
                }
            }
        }

        // Recovery: one healthy worker and time, until the job ends.
        let rescuer = h.worker();
        let deadline = h.now_ms + 20_000_000;
        let mut backlog: Vec<Assignment> = Vec::new();
        while !h.state(job).is_terminal() && h.state(job) != JobState::Committing {
            prop_assert!(h.now_ms < deadline, "the job did not end: {:?}", h.state(job));
            backlog.extend(h.request(rescuer, 4));
            let next = backlog.pop().and_then(|mut a| match h.ask_locations(rescuer, &mut a) {
                Outputs::Known => Some(a),
                // Behind the maps it waits for, while time passes.
                Outputs::Pending => {
                    backlog.insert(0, a);
                    None
                }
                Outputs::Stopped => None,
            });
            if let Some(a) = next {
                if a.attempt.task.phase == Phase::Reduce {
                    let reply = h.handle(Event::RequestCommit { worker: rescuer, attempt: a.attempt });
                    if let [Action::CommitGranted { attempt }] = reply[..] {
                        granted.entry(attempt.task).or_default().insert(attempt);
                    }
                }
                let segments = (0..reducers).map(|partition| harrow_core::task::SegmentInfo { partition, ..Default::default() }).collect();
                h.report(rescuer, a.attempt, AttemptOutcome::Succeeded {
            segments,
            input: InputReport::default(),
        });
            } else {
                let running: Vec<AttemptId> = backlog.iter().map(|a| a.attempt).collect();
                h.now_ms += 500;
                h.heartbeat(rescuer, &running, h.now_ms);
                h.handle(Event::Tick);
            }
        }
        if h.state(job) == JobState::Committing {
            h.handle(Event::JobCommitEnded { job, error: None });
        }
        // Injected failures stay below the attempt limit, fetch failures
        // below theirs: the job must succeed, every partition committed by
        // exactly one winning attempt that held the commit.
        prop_assert_eq!(h.state(job), JobState::Succeeded);
        let job = h.scheduler.job(job).unwrap();
        for task in &job.reduces {
            let TaskState::Succeeded { attempt, .. } = task.state else { panic!() };
            let winners = task.attempts.iter().filter(|a| a.state == AttemptState::Succeeded).count();
            prop_assert_eq!(winners, 1);
            prop_assert!(granted[&task.id].contains(&attempt));
        }
    }
}

#[test]
fn a_draining_worker_gets_no_tasks_and_may_exit_once_its_output_is_not_needed() {
    let mut h = Harness::new(4);
    let (leaving, staying) = (h.worker(), h.worker());
    let job = h.submit(2, 1);
    let maps = h.request(leaving, 1);
    h.handle(Event::WorkerDraining { worker: leaving });
    assert!(
        h.request(leaving, 2).is_empty(),
        "no new work while draining"
    );
    // Its running map still counts and finishes.
    h.succeed(leaving, &maps[0]);
    let other = h.request(staying, 2);
    h.succeed(staying, &other[0]);
    // A reducer still needs the map output on it.
    assert!(
        !h.heartbeat(leaving, &[], 0)
            .contains(&Action::MayExit { worker: leaving })
    );
    let reduce = h.request(staying, 1);
    h.succeed(staying, &reduce[0]);
    assert_eq!(
        h.heartbeat(leaving, &[], 0),
        [Action::MayExit { worker: leaving }]
    );
    h.handle(Event::WorkerLeft { worker: leaving });
    assert!(
        !h.scheduler
            .workers()
            .find(|w| w.id == leaving)
            .unwrap()
            .is_alive()
    );
    assert_eq!(
        h.state(job),
        JobState::Committing,
        "nothing re-run after the reduces are done"
    );
}

#[test]
fn a_worker_that_leaves_early_has_its_needed_output_rerun_and_handed_back_attempts_are_not_counted()
{
    let mut h = Harness::new(1);
    let (leaving, staying) = (h.worker(), h.worker());
    let job = h.submit(2, 1);
    let maps = h.request(leaving, 2);
    h.succeed(leaving, &maps[0]);
    h.report(
        leaving,
        maps[1].attempt,
        AttemptOutcome::HandedBack {
            message: "grace period over".into(),
        },
    );
    h.handle(Event::WorkerLeft { worker: leaving });
    let again = h.request(staying, 2);
    assert_eq!(
        again.len(),
        2,
        "both maps run again: one handed back, one whose output left"
    );
    assert_eq!(h.state(job), JobState::Running);
}
