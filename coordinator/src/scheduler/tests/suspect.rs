//! Failures as they come: a dead or stopped worker makes every fetch of its
//! output fail at once. Suspect workers, their probes and clearing, the
//! blamed reducer, failure kinds, waiting reducers and the worker's
//! lifecycle. The simulation under correlated faults is
//! `correlated.rs`.

use harrow_core::ids::{AttemptId, Phase, TaskId, WorkerId};
use harrow_core::rpc::health::ProbeFailure;
use harrow_core::task::{Assignment, AttemptOutcome, FailureKind, FetchFailure, TaskSpec};

use super::{Harness, Outputs, locations};
use crate::scheduler::*;

fn unreachable(
    h: &mut Harness,
    reducer: WorkerId,
    reduce: AttemptId,
    map: AttemptId,
) -> Vec<Action> {
    h.report(
        reducer,
        reduce,
        AttemptOutcome::FetchFailed {
            map_attempt: map,
            message: "tcp connect error: connection refused".into(),
            cause: FetchFailure::Unreachable,
        },
    )
}

/// How a probe of a process that is gone fails.
pub(super) fn refused() -> ProbeFailure {
    ProbeFailure {
        refused: true,
        message: "connection refused".to_string(),
    }
}

pub(super) fn address(index: usize) -> String {
    format!("127.0.0.1:{}", 1000 + index)
}

fn worker_state(h: &Harness, worker: WorkerId) -> WorkerState {
    h.scheduler
        .workers()
        .find(|w| w.id == worker)
        .unwrap()
        .state
        .clone()
}

fn task(h: &Harness, id: TaskId) -> Task {
    h.scheduler.job(id.job).unwrap().task(id).unwrap().clone()
}

/// Three workers at distinct addresses, each having run two of a job's
/// six map tasks; the job has two reducers, none started.
fn mapped(h: &mut Harness) -> (Vec<WorkerId>, JobId) {
    let workers: Vec<WorkerId> = (0..3).map(|i| h.worker_at(&address(i))).collect();
    let job = h.submit(6, 2);
    for &w in &workers {
        for map in h.request(w, 2) {
            h.succeed(w, &map);
        }
    }
    (workers, job)
}

/// The map outputs of `reduce` held at `worker`'s address.
fn held_at(reduce: &Assignment, index: usize) -> Vec<AttemptId> {
    locations(reduce)
        .iter()
        .flatten()
        .filter(|m| m.shuffle_address == address(index))
        .map(|m| m.map_attempt)
        .collect()
}

#[test]
fn a_worker_a_reducer_cannot_reach_is_suspect_and_all_its_needed_output_runs_again_at_once() {
    let mut h = Harness::new(1);
    let (w, job) = mapped(&mut h);
    let r1 = h.request(w[1], 1);
    let r2 = h.request(w[2], 1);
    let on_w0 = held_at(&r1[0], 0);
    assert_eq!(on_w0.len(), 2);

    let actions = unreachable(&mut h, w[1], r1[0].attempt, on_w0[0]);
    assert_eq!(
        actions,
        [Action::ProbeWorker {
            worker: w[0],
            address: address(0)
        }]
    );
    assert_eq!(worker_state(&h, w[0]).name(), "suspect");
    // Both of its outputs are pending in the same step, not one per report.
    for map in &on_w0 {
        assert_eq!(task(&h, map.task).state, TaskState::Pending);
    }
    assert!(matches!(
        task(&h, r1[0].attempt.task).attempts[0].state,
        AttemptState::Lost {
            cause: LostCause::Fetch,
            ..
        }
    ));
    assert!(
        h.request(w[0], 2).is_empty(),
        "a suspect worker gets no tasks"
    );
    let report = crate::report::job_report(&h.scheduler, h.scheduler.job(job).unwrap(), false);
    assert_eq!(report.suspect_workers, [w[0].to_string()]);

    // The other reducer finds the same: its attempt ends, nothing is counted.
    assert!(unreachable(&mut h, w[2], r2[0].attempt, on_w0[1]).is_empty());
    assert!(h.scheduler.job(job).unwrap().fetch_failures[&on_w0[0].task].len() == 1);

    // The probe is refused: dead. Its output runs again elsewhere, and the
    // reducers get the new locations; max_attempts 1 was never touched.
    h.handle(Event::ProbeEnded {
        worker: w[0],
        result: Err(refused()),
    });
    assert_eq!(worker_state(&h, w[0]).name(), "dead");
    let again = h.request(w[1], 2);
    assert_eq!(again.len(), 2);
    for map in &again {
        h.succeed(w[1], map);
    }
    let reduces: Vec<Assignment> = [w[1], w[2]].iter().flat_map(|&x| h.request(x, 1)).collect();
    assert_eq!(reduces.len(), 2);
    for reduce in &reduces {
        assert!(held_at(reduce, 0).is_empty());
    }
    h.succeed(w[1], &reduces[0]);
    h.succeed(w[2], &reduces[1]);
    assert_eq!(h.state(job), JobState::Committing);
    assert!(
        h.scheduler
            .job(job)
            .unwrap()
            .fetch_failures
            .values()
            .all(Vec::is_empty)
    );
}

#[test]
fn a_suspect_worker_that_answers_is_cleared_and_its_output_stands() {
    let mut h = Harness::new(1);
    let (w, job) = mapped(&mut h);
    let r1 = h.request(w[1], 1);
    let on_w0 = held_at(&r1[0], 0);
    unreachable(&mut h, w[1], r1[0].attempt, on_w0[0]);
    // One of its outputs starts running again elsewhere; the other waits.
    let rerun = h.request(w[2], 1);
    assert_eq!(rerun.len(), 1);
    assert_eq!(rerun[0].attempt.task, on_w0[0].task);

    // The probe answers, but clearing also needs a heartbeat.
    h.handle(Event::ProbeEnded {
        worker: w[0],
        result: Ok(()),
    });
    assert_eq!(worker_state(&h, w[0]).name(), "suspect");
    h.heartbeat(w[0], &[], 0);
    assert_eq!(worker_state(&h, w[0]), WorkerState::Alive);
    for map in &on_w0 {
        let TaskState::Succeeded { attempt, .. } = task(&h, map.task).state else {
            panic!("{:?}", task(&h, map.task).state)
        };
        assert_eq!(attempt, *map, "the original output stands");
    }
    // The re-run that started is killed; its worker learns at a heartbeat.
    assert_eq!(
        h.heartbeat(w[2], &[rerun[0].attempt], 1),
        [Action::KillAttempts {
            worker: w[2],
            attempts: vec![rerun[0].attempt]
        }]
    );
    let reduce = h.request(w[1], 2);
    assert_eq!(reduce.len(), 2);
    assert_eq!(held_at(&reduce[0], 0), on_w0);
    for r in &reduce {
        h.succeed(w[1], r);
    }
    assert_eq!(h.state(job), JobState::Committing);
}

#[test]
fn a_suspect_worker_that_does_not_answer_within_the_suspect_timeout_is_dead() {
    let mut h = Harness::new(1);
    let (w, _) = mapped(&mut h);
    let r1 = h.request(w[1], 1);
    unreachable(&mut h, w[1], r1[0].attempt, held_at(&r1[0], 0)[0]);
    // It heartbeats (a stopped shuffle server, a live agent), but the probe
    // never answers.
    for _ in 0..4 {
        h.heartbeat(w[0], &[], 0);
        h.advance(100);
    }
    assert_eq!(worker_state(&h, w[0]).name(), "suspect");
    h.heartbeat(w[0], &[], 0);
    h.advance(200);
    let WorkerState::Dead { reason, .. } = worker_state(&h, w[0]) else {
        panic!()
    };
    assert!(reason.contains("--suspect-timeout"), "{reason}");
}

/// The probes among `actions`, by worker.
fn probed(actions: &[Action]) -> Vec<WorkerId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ProbeWorker { worker, .. } => Some(*worker),
            _ => None,
        })
        .collect()
}

#[test]
fn a_worker_late_with_its_heartbeat_is_probed_once_and_dead_if_refused() {
    let mut h = Harness::new(1);
    let (w, job) = mapped(&mut h);
    let keep_up = |h: &mut Harness| {
        h.heartbeat(w[1], &[], 0);
        h.heartbeat(w[2], &[], 0);
    };
    // w0 falls silent: probed once past the late-heartbeat limit, not on
    // every tick.
    h.heartbeat(w[0], &[], 0);
    keep_up(&mut h);
    assert!(probed(&h.advance(200)).is_empty(), "not late yet");
    keep_up(&mut h);
    assert_eq!(probed(&h.advance(200)), [w[0]]);
    keep_up(&mut h);
    assert!(probed(&h.advance(100)).is_empty(), "one probe per silence");
    assert_eq!(worker_state(&h, w[0]).name(), "alive");
    // Its process is gone: dead at once, well before the worker timeout,
    // and its map output runs again.
    h.handle(Event::ProbeEnded {
        worker: w[0],
        result: Err(refused()),
    });
    let WorkerState::Dead { reason, .. } = worker_state(&h, w[0]) else {
        panic!("{:?}", worker_state(&h, w[0]));
    };
    assert!(reason.contains("refused"), "{reason}");
    let again = h.request(w[1], 2);
    assert_eq!(phases(&again), [Phase::Map, Phase::Map]);
    assert_eq!(h.state(job), JobState::Running);
}

#[test]
fn a_late_worker_whose_probe_gets_no_answer_waits_for_the_worker_timeout() {
    let mut h = Harness::new(1);
    let (w, _) = mapped(&mut h);
    for &worker in &w {
        h.heartbeat(worker, &[], 0);
    }
    h.advance(200);
    h.heartbeat(w[1], &[], 0);
    assert_eq!(probed(&h.advance(200)), [w[0], w[2]]);
    // A stopped process: the connection opens, nothing answers. A silence
    // is no proof of death before the worker timeout.
    let silent = ProbeFailure {
        refused: false,
        message: "no answer within 500 ms".to_string(),
    };
    for worker in [w[0], w[2]] {
        h.handle(Event::ProbeEnded {
            worker,
            result: Err(silent.clone()),
        });
        assert_eq!(worker_state(&h, worker).name(), "alive");
    }
    // w2 heartbeats again, so a new silence is probed again; w0 stays
    // silent and dies at the worker timeout.
    h.heartbeat(w[1], &[], 0);
    h.heartbeat(w[2], &[], 0);
    h.advance(200);
    h.heartbeat(w[1], &[], 0);
    assert_eq!(probed(&h.advance(200)), [w[2]]);
    h.heartbeat(w[1], &[], 0);
    h.heartbeat(w[2], &[], 0);
    h.advance(200);
    assert_eq!(worker_state(&h, w[0]).name(), "dead");
    assert_eq!(worker_state(&h, w[2]).name(), "alive");
}

#[test]
fn a_reducer_that_cannot_reach_workers_others_reach_is_blamed_not_them() {
    let mut h = Harness::new(1);
    let (w, job) = mapped(&mut h);
    let r = h.request(w[2], 1);
    unreachable(&mut h, w[2], r[0].attempt, held_at(&r[0], 0)[0]);
    // w0 answers the probe and heartbeats: the coordinator reaches it.
    h.handle(Event::ProbeEnded {
        worker: w[0],
        result: Ok(()),
    });
    h.heartbeat(w[0], &[], 0);
    assert_eq!(worker_state(&h, w[0]), WorkerState::Alive);
    // Now w2's reducers cannot reach w1 either: w2 is to blame.
    for round in 0..3 {
        let r = h.request(w[2], 1);
        assert_eq!(r.len(), 1, "round {round}");
        let on_w1 = held_at(&r[0], 1)[0];
        assert!(unreachable(&mut h, w[2], r[0].attempt, on_w1).is_empty());
        assert_eq!(worker_state(&h, w[1]), WorkerState::Alive);
        assert_eq!(task(&h, on_w1.task).state.name(), "succeeded");
        let AttemptState::Failed { error, kind } = task(&h, r[0].attempt.task)
            .attempt(r[0].attempt)
            .unwrap()
            .state
            .clone()
        else {
            panic!()
        };
        assert_eq!(kind, FailureKind::Worker);
        assert!(
            error.contains(&format!("{} could not reach {}", w[2], w[1])),
            "{error}"
        );
    }
    // Three failures of its own: w2 gets no more of the job's tasks.
    assert!(h.request(w[2], 1).is_empty());
    let reduces = h.request(w[1], 2);
    assert_eq!(reduces.len(), 2);
    for r in &reduces {
        h.succeed(w[1], r);
    }
    assert_eq!(h.state(job), JobState::Committing);
}

#[test]
fn an_output_that_keeps_failing_from_a_live_worker_fails_the_job() {
    let mut h = Harness::new(1);
    let (w, job) = mapped(&mut h);
    for round in 0..4 {
        assert_eq!(h.state(job), JobState::Running, "round {round}");
        let r = h.request(w[1], 1);
        assert_eq!(phases(&r), [Phase::Reduce], "round {round}");
        unreachable(&mut h, w[1], r[0].attempt, held_at(&r[0], 0)[0]);
        h.handle(Event::ProbeEnded {
            worker: w[0],
            result: Ok(()),
        });
        h.heartbeat(w[0], &[], 0);
    }
    let JobState::Failed { error } = h.state(job) else {
        panic!("{:?}", h.state(job))
    };
    assert!(
        error.contains("could not be fetched 4 times") && error.contains("stayed alive"),
        "{error}"
    );
}

#[test]
fn passing_failures_are_retried_after_a_backoff_without_counting() {
    let mut h = Harness::new(1);
    let w = h.worker();
    let job = h.submit(1, 1);
    for failure in 1..crate::limits::MAX_TRANSIENT_FAILURES {
        let a = h.request(w, 1);
        assert_eq!(a.len(), 1, "failure {failure}");
        h.fail_as(w, a[0].attempt, "object store: 503", FailureKind::Transient);
        assert!(h.request(w, 1).is_empty(), "backing off after {failure}");
        let backoff = crate::limits::TRANSIENT_BACKOFF_MS << (failure - 1).min(16);
        h.now_ms += backoff.min(crate::limits::MAX_TRANSIENT_BACKOFF_MS);
    }
    assert_eq!(h.state(job), JobState::Running);
    let a = h.request(w, 1);
    h.fail_as(w, a[0].attempt, "object store: 503", FailureKind::Transient);
    let JobState::Failed { error } = h.state(job) else {
        panic!()
    };
    assert!(
        error.contains("10 transient failures; last: object store: 503"),
        "{error}"
    );
}

#[test]
fn a_workers_own_failure_counts_toward_its_exclusion_not_the_task() {
    let mut h = Harness::new(1);
    let (bad, good) = (h.worker(), h.worker());
    let job = h.submit(1, 1);
    for _ in 0..3 {
        let a = h.request(bad, 1);
        h.fail_as(
            bad,
            a[0].attempt,
            "No space left on device",
            FailureKind::Worker,
        );
    }
    assert_eq!(h.state(job), JobState::Running, "max_attempts 1 untouched");
    assert!(h.request(bad, 1).is_empty(), "excluded");
    assert_eq!(h.request(good, 1).len(), 1);
}

fn fetch_failed_running(
    h: &mut Harness,
    reducer: WorkerId,
    reduce: AttemptId,
    map: AttemptId,
) -> Vec<Action> {
    h.handle(Event::FetchFailed(FetchReport {
        reducer,
        attempt: reduce,
        map_attempt: map,
        message: "tcp connect error: connection refused".into(),
        cause: FetchFailure::Unreachable,
    }))
}

#[test]
fn a_reducer_that_cannot_fetch_waits_for_the_new_locations() {
    let mut h = Harness::new(1);
    let (w, job) = mapped(&mut h);
    let r = h.request(w[1], 1);
    let attempt = r[0].attempt;
    let actions = fetch_failed_running(&mut h, w[1], attempt, held_at(&r[0], 0)[0]);
    assert!(
        actions.contains(&Action::WaitForMapOutputs { attempt }),
        "{actions:?}"
    );
    assert!(matches!(actions[0], Action::ProbeWorker { .. }));
    let wait = |h: &mut Harness| {
        h.handle(Event::WaitMapOutputs {
            worker: w[1],
            attempt,
        })
    };
    assert!(wait(&mut h).is_empty(), "not ready while maps run again");
    h.handle(Event::ProbeEnded {
        worker: w[0],
        result: Err(refused()),
    });
    // Waiting is not stalling: no backup and no hang, however long.
    for _ in 0..12 {
        h.heartbeat(w[1], &[attempt], 0);
        h.heartbeat(w[2], &[], 0);
        h.advance(900);
    }
    assert_eq!(task(&h, attempt.task).attempts.len(), 1);
    for map in h.request(w[2], 2) {
        h.succeed(w[2], &map);
    }
    let [Action::MapOutputs { outputs, .. }] = &wait(&mut h)[..] else {
        panic!()
    };
    assert!(outputs.iter().all(|m| m.shuffle_address != address(0)));
    let mut resumed = r[0].clone();
    resumed.task = TaskSpec::Reduce {
        partition: 0,
        output: "/out".into(),
        map_outputs: outputs.iter().cloned().map(Some).collect(),
    };
    h.succeed(w[1], &resumed);
    let task = task(&h, attempt.task);
    assert_eq!(task.attempts.len(), 1, "the same attempt finished");
    assert_eq!(task.state.name(), "succeeded");
    assert_eq!(h.state(job), JobState::Running);
}

#[test]
fn waiting_reducers_make_room_for_the_maps_they_wait_for_and_start_again_beside_them() {
    let mut h = Harness::new(1);
    let w: Vec<WorkerId> = (0..3).map(|i| h.worker_at(&address(i))).collect();
    let job = h.submit(9, 6);
    for &x in &w {
        for map in h.request(x, 3) {
            h.succeed(x, &map);
        }
    }
    let reduces: Vec<(WorkerId, Assignment)> = w
        .iter()
        .flat_map(|&x| h.request(x, 2).into_iter().map(move |a| (x, a)))
        .collect();
    assert_eq!(reduces.len(), 6, "every slot holds a reducer");
    // w0 dies; the four reducers left wait for its three map outputs.
    for _ in 0..3 {
        h.heartbeat(w[1], &[], 0);
        h.heartbeat(w[2], &[], 0);
        h.advance(400);
    }
    assert_eq!(worker_state(&h, w[0]).name(), "dead");
    let waiting: Vec<&(WorkerId, Assignment)> =
        reduces.iter().filter(|(x, _)| *x != w[0]).collect();
    for (x, a) in &waiting {
        let gone = held_at(a, 0)[0];
        let actions = fetch_failed_running(&mut h, *x, a.attempt, gone);
        assert_eq!(actions, [Action::WaitForMapOutputs { attempt: a.attempt }]);
    }
    let preempted = |h: &Harness| -> Vec<AttemptId> {
        waiting
            .iter()
            .map(|(_, a)| a.attempt)
            .filter(|&a| {
                matches!(
                    task(h, a.task).attempt(a).unwrap().state,
                    AttemptState::Lost {
                        cause: LostCause::Preempted,
                        ..
                    }
                )
            })
            .collect()
    };
    // No free slot for the three maps: three waiting reducers make room,
    // one per map, though that takes more than one per worker.
    h.advance(0);
    let gave_way = preempted(&h);
    assert_eq!(gave_way.len(), 3);
    for (x, a) in &waiting {
        let reply = h.handle(Event::WaitMapOutputs {
            worker: *x,
            attempt: a.attempt,
        });
        if gave_way.contains(&a.attempt) {
            assert!(
                matches!(reply[..], [Action::StopAttempt { .. }]),
                "{reply:?}"
            );
        } else {
            assert!(reply.is_empty());
        }
    }
    let maps: Vec<Assignment> = [w[1], w[2]].iter().flat_map(|&x| h.request(x, 2)).collect();
    assert_eq!(phases(&maps), [Phase::Map; 3]);
    // With the maps running and none left to start, the last waiting
    // reducer keeps what it fetched.
    h.advance(0);
    assert_eq!(preempted(&h), gave_way);
    assert_eq!(h.state(job), JobState::Running);

    // The slot left free takes a reducer at once: it fetches what the live
    // workers hold and waits for the three outputs still to come.
    let mut restarted = h.request(w[2], 1);
    assert_eq!(phases(&restarted), [Phase::Reduce]);
    let pending = locations(&restarted[0])
        .iter()
        .filter(|m| m.is_none())
        .count();
    assert_eq!(pending, 3);
    assert!(
        locations(&restarted[0])
            .iter()
            .flatten()
            .all(|m| m.shuffle_address != address(0))
    );
    let restarted = &mut restarted[0];
    assert_eq!(h.ask_locations(w[2], restarted), Outputs::Pending);
    let waiting_since = task(&h, restarted.attempt.task)
        .attempt(restarted.attempt)
        .unwrap()
        .waiting_since_ms;
    assert!(waiting_since.is_some(), "it counts as waiting");
    for (x, map) in [w[1], w[1], w[2]].into_iter().zip(&maps) {
        h.succeed(x, map);
    }
    assert_eq!(h.ask_locations(w[2], restarted), Outputs::Known);
    h.succeed(w[2], restarted);
    assert_eq!(task(&h, restarted.attempt.task).state.name(), "succeeded");
}

fn phases(assignments: &[Assignment]) -> Vec<Phase> {
    super::phases(assignments)
}

#[test]
fn a_workers_lifecycle_changes_in_one_place() {
    use crate::scheduler::lifecycle::{WorkerChange as C, WorkerEvent as E};
    let mut h = Harness::new(1);
    let id = h.worker();
    let mut worker = h.scheduler.workers().find(|w| w.id == id).unwrap().clone();
    let unreachable = || E::Unreachable {
        reason: "refused".into(),
    };
    assert_eq!(worker.apply(unreachable(), 10), C::Suspected);
    assert_eq!(
        worker.apply(unreachable(), 11),
        C::Unchanged,
        "suspect once"
    );
    assert_eq!(
        worker.apply(E::Drain, 12),
        C::Unchanged,
        "a suspect does not drain"
    );
    assert_eq!(
        worker.apply(E::Heartbeat, 13),
        C::Unchanged,
        "not probed yet"
    );
    assert_eq!(worker.apply(E::ProbeAnswered, 14), C::Cleared);
    assert_eq!(
        (worker.state.name(), worker.last_heartbeat_ms),
        ("alive", 13)
    );
    assert_eq!(worker.apply(E::Drain, 15), C::Unchanged);
    assert_eq!(worker.state.name(), "draining");
    assert_eq!(
        worker.apply(unreachable(), 16),
        C::Died,
        "a drained worker left"
    );
    for event in [E::Heartbeat, E::ProbeAnswered, unreachable(), E::Drain] {
        assert_eq!(worker.apply(event, 17), C::Unchanged, "the dead stay dead");
    }
    assert_eq!(worker.state.name(), "dead");
}

#[test]
fn map_work_left_when_every_reduce_commits_stops() {
    let mut h = Harness::new(1);
    let (w, job) = mapped(&mut h);
    // Both reducers run on w1 and have fetched everything they need.
    let reduces = h.request(w[1], 2);
    let running: Vec<AttemptId> = reduces.iter().map(|r| r.attempt).collect();
    // w0 dies: its map output is set aside and one map re-runs on w2.
    for _ in 0..3 {
        h.heartbeat(w[1], &running, 1);
        h.heartbeat(w[2], &[], 0);
        h.advance(400);
    }
    assert_eq!(worker_state(&h, w[0]).name(), "dead");
    let rerun = h.request(w[2], 1);
    assert_eq!(phases(&rerun), [Phase::Map]);
    // The reducers needed nothing more: they commit, and the re-run, no
    // longer needed, is killed (the worker learns at its next heartbeat).
    for r in &reduces {
        h.succeed(w[1], r);
    }
    assert_eq!(h.state(job), JobState::Committing);
    let map = task(&h, rerun[0].attempt.task);
    assert_eq!(
        map.attempt(rerun[0].attempt).unwrap().state,
        AttemptState::Killed
    );
    let reply = h.heartbeat(w[2], &[rerun[0].attempt], 1);
    assert!(
        matches!(&reply[..], [Action::KillAttempts { attempts, .. }] if attempts == &[rerun[0].attempt]),
        "{reply:?}"
    );
    // And if w2 dies now, nothing of the job runs on a dead worker.
    for _ in 0..3 {
        h.heartbeat(w[1], &[], 0);
        h.advance(400);
    }
    assert_eq!(worker_state(&h, w[2]).name(), "dead");
    assert_eq!(h.state(job), JobState::Committing);
}
