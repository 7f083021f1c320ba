//! Failures as they come: a dead or stopped worker makes every fetch of its
//! output fail at once. Suspect workers, their probes and clearing, the
//! blamed reducer, failure kinds, and a simulation of jobs of hundreds of
//! map tasks per worker under correlated faults.

use std::collections::{BTreeMap, BTreeSet};

use harrow_core::ids::{AttemptId, Phase, TaskId, WorkerId};
use harrow_core::rpc::health::ProbeFailure;
use harrow_core::task::{
    Assignment, AttemptOutcome, FailureKind, FetchFailure, InputReport, MapOutput, SegmentInfo,
    TaskSpec,
};
use proptest::prelude::*;

use super::tests::Harness;
use super::*;

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

fn map_outputs(assignment: &Assignment) -> &[MapOutput] {
    match &assignment.task {
        TaskSpec::Reduce { map_outputs, .. } => map_outputs,
        TaskSpec::Map { .. } => panic!("not a reduce: {assignment:?}"),
    }
}

/// How a probe of a process that is gone fails.
fn refused() -> ProbeFailure {
    ProbeFailure {
        refused: true,
        message: "connection refused".to_string(),
    }
}

fn address(index: usize) -> String {
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
    map_outputs(reduce)
        .iter()
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
    for failure in 1..task::MAX_TRANSIENT_FAILURES {
        let a = h.request(w, 1);
        assert_eq!(a.len(), 1, "failure {failure}");
        h.fail_as(w, a[0].attempt, "object store: 503", FailureKind::Transient);
        assert!(h.request(w, 1).is_empty(), "backing off after {failure}");
        let backoff = task::TRANSIENT_BACKOFF_MS << (failure - 1).min(16);
        h.now_ms += backoff.min(task::MAX_TRANSIENT_BACKOFF_MS);
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
        map_outputs: outputs.clone(),
    };
    h.succeed(w[1], &resumed);
    let task = task(&h, attempt.task);
    assert_eq!(task.attempts.len(), 1, "the same attempt finished");
    assert_eq!(task.state.name(), "succeeded");
    assert_eq!(h.state(job), JobState::Running);
}

#[test]
fn waiting_reducers_make_room_for_the_maps_they_wait_for() {
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
}

fn phases(assignments: &[Assignment]) -> Vec<Phase> {
    super::tests::phases(assignments)
}

/// How a simulated worker process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Up,
    /// SIGSTOP: no heartbeats, no answers, no fetches served.
    Stopped,
    /// SIGKILL: gone with its disk.
    Dead,
}

/// A simulated worker: one registration of one process, at an address of
/// its own (a process that registers again gets a new one).
struct Sim {
    id: WorkerId,
    address: String,
    life: Life,
    running: Vec<Assignment>,
    /// Running reduce attempts waiting for map output to be run again.
    waiting: BTreeSet<AttemptId>,
}

struct World {
    h: Harness,
    sims: Vec<Sim>,
    next_address: usize,
    probes: Vec<WorkerId>,
    granted: BTreeMap<TaskId, Vec<AttemptId>>,
}

impl World {
    fn register(&mut self) -> Sim {
        self.next_address += 1;
        let address = address(self.next_address);
        Sim {
            id: self.h.worker_at(&address),
            address,
            life: Life::Up,
            running: Vec::new(),
            waiting: BTreeSet::new(),
        }
    }

    /// Whether a fetch from `address` gets an answer.
    fn serves(&self, address: &str) -> bool {
        self.sims
            .iter()
            .any(|s| s.address == address && s.life == Life::Up)
    }

    fn note(&mut self, actions: &[Action]) {
        for action in actions {
            if let Action::ProbeWorker { worker, .. } = action {
                self.probes.push(*worker);
            }
        }
    }

    fn request(&mut self, i: usize) {
        let sim = &self.sims[i];
        if sim.life != Life::Up || sim.running.len() >= 2 {
            return;
        }
        let free = 2 - sim.running.len() as u32;
        let id = sim.id;
        for action in self.h.handle(Event::RequestTasks {
            worker: id,
            free_slots: free,
        }) {
            match action {
                Action::Assign { assignment, .. } => self.sims[i].running.push(*assignment),
                Action::UnknownWorker { .. } => self.sims[i] = self.register(),
                other => panic!("{other:?}"),
            }
        }
    }

    /// Moves one running attempt of worker `i` on as a real one would: a
    /// map succeeds; a reduce succeeds if every map output it needs is
    /// served, else reports the first it cannot reach and waits for new
    /// locations; a waiting reduce asks for them.
    fn finish(&mut self, i: usize, pick: usize) {
        let sim = &mut self.sims[i];
        if sim.life != Life::Up || sim.running.is_empty() {
            return;
        }
        let index = pick % sim.running.len();
        let id = sim.id;
        let attempt = sim.running[index].attempt;
        if sim.waiting.contains(&attempt) {
            let reply = self.h.handle(Event::WaitMapOutputs {
                worker: id,
                attempt,
            });
            let sim = &mut self.sims[i];
            match &reply[..] {
                [] => {}
                [Action::MapOutputs { outputs, .. }] => {
                    sim.waiting.remove(&attempt);
                    let TaskSpec::Reduce { map_outputs, .. } = &mut sim.running[index].task else {
                        unreachable!()
                    };
                    *map_outputs = outputs.clone();
                }
                [Action::StopAttempt { .. }] => {
                    sim.waiting.remove(&attempt);
                    sim.running.remove(index);
                }
                other => panic!("{other:?}"),
            }
            return;
        }
        let a = self.sims[i].running.remove(index);
        let reducers = a.job.reducers;
        let outcome = match &a.task {
            TaskSpec::Map { .. } => AttemptOutcome::Succeeded {
                segments: (0..reducers)
                    .map(|partition| SegmentInfo {
                        partition,
                        bytes: 1,
                        ..Default::default()
                    })
                    .collect(),
                input: InputReport::default(),
            },
            TaskSpec::Reduce { map_outputs, .. } => {
                match map_outputs
                    .iter()
                    .find(|m| !self.serves(&m.shuffle_address))
                {
                    Some(missing) => {
                        let actions = self.h.handle(Event::FetchFailed(FetchReport {
                            reducer: id,
                            attempt: a.attempt,
                            map_attempt: missing.map_attempt,
                            message: "connection refused".into(),
                            cause: FetchFailure::Unreachable,
                        }));
                        self.note(&actions);
                        if actions.contains(&Action::WaitForMapOutputs { attempt: a.attempt }) {
                            self.sims[i].waiting.insert(a.attempt);
                            self.sims[i].running.push(a);
                        }
                        return;
                    }
                    None => {
                        let reply = self.h.handle(Event::RequestCommit {
                            worker: id,
                            attempt: a.attempt,
                        });
                        if reply != [Action::CommitGranted { attempt: a.attempt }] {
                            return;
                        }
                        self.granted
                            .entry(a.attempt.task)
                            .or_default()
                            .push(a.attempt);
                        AttemptOutcome::Succeeded {
                            segments: Vec::new(),
                            input: InputReport::default(),
                        }
                    }
                }
            }
        };
        let actions = self.h.report(id, a.attempt, outcome);
        self.note(&actions);
    }

    /// Time passes: live processes heartbeat, probes get their answers (a
    /// stopped worker's never comes), the scheduler ticks.
    fn pass(&mut self, ms: u64) {
        self.h.now_ms += ms;
        for i in 0..self.sims.len() {
            if self.sims[i].life != Life::Up {
                continue;
            }
            let running: Vec<AttemptId> = self.sims[i].running.iter().map(|a| a.attempt).collect();
            let now = self.h.now_ms;
            for action in self.h.heartbeat(self.sims[i].id, &running, now) {
                match action {
                    Action::KillAttempts { attempts, .. } => {
                        let sim = &mut self.sims[i];
                        sim.running.retain(|a| !attempts.contains(&a.attempt));
                        sim.waiting.retain(|a| !attempts.contains(a));
                    }
                    Action::UnknownWorker { .. } => self.sims[i] = self.register(),
                    Action::ReleaseJobs { .. } => {}
                    other => panic!("{other:?}"),
                }
            }
        }
        for worker in std::mem::take(&mut self.probes) {
            let life = self.sims.iter().find(|s| s.id == worker).map(|s| s.life);
            let result = match life {
                Some(Life::Up) => Ok(()),
                Some(Life::Stopped) => continue,
                Some(Life::Dead) | None => Err(refused()),
            };
            self.h.handle(Event::ProbeEnded { worker, result });
        }
        self.h.handle(Event::Tick);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Jobs of hundreds of map tasks per worker, more reducers than slots,
    /// workers killed, stopped and resumed, and replaced at random; a dead
    /// or stopped worker's every output is unreachable, as in a real
    /// cluster. While worker 0 stays up, every job succeeds without a
    /// single failure counted (max_attempts is 1), every partition commits
    /// once, and no reduce attempt ends because it could not fetch: it
    /// waits for the map output to be run again (or makes room for it).
    #[test]
    fn jobs_survive_correlated_worker_faults(
        worker_count in 2usize..6,
        maps_per_worker in 100usize..300,
        extra_reducers in 0u32..4,
        map_faults in 0u32..16,
        reduce_faults in 1u32..6,
        seed in any::<u64>(),
    ) {
        // Attempts end far faster than heartbeats come, as in a cluster.
        let mut h = Harness::new(1);
        h.ms_per_event = 1;
        let mut world = World {
            h,
            sims: Vec::new(),
            next_address: 0,
            probes: Vec::new(),
            granted: BTreeMap::new(),
        };
        for _ in 0..worker_count {
            let sim = world.register();
            world.sims.push(sim);
        }
        let reducers = 2 * worker_count as u32 + extra_reducers;
        let job = world.h.submit(maps_per_worker * worker_count, reducers);
        let mut random = seed | 1;
        let mut faults = 0u32;
        let mut last_pass = world.h.now_ms;
        let deadline = world.h.now_ms + 3_600_000;
        // Faults strike all through the job until each phase's budget is
        // spent, thickest while reducers fetch; worker 0 is never touched.
        while !world.h.state(job).is_terminal() && world.h.state(job) != JobState::Committing {
            prop_assert!(world.h.now_ms < deadline, "the job did not end: {:?}", world.h.state(job));
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            let (mut dice, pick) = (random % 1000, (random >> 20) as usize);
            let i = pick % world.sims.len();
            let reducing = world.h.scheduler.job(job).unwrap().maps_done();
            let budget = if reducing { map_faults + reduce_faults } else { map_faults };
            let faulty = i != 0 && faults < budget;
            if reducing && faulty && dice % 20 == 0 {
                dice = 990 + dice % 6;
            }
            match dice {
                0..=399 => world.request(i),
                // Other bits than those that chose the worker pick its
                // attempt.
                400..=989 => world.finish(i, pick >> 8),
                990..=992 if faulty && world.sims[i].life == Life::Up => {
                    world.sims[i].life = Life::Dead;
                    faults += 1;
                }
                993..=995 if faulty && world.sims[i].life == Life::Up => {
                    world.sims[i].life = Life::Stopped;
                    faults += 1;
                }
                993..=995 if world.sims[i].life == Life::Stopped => world.sims[i].life = Life::Up,
                996..=998 if world.sims[i].life == Life::Dead => {
                    world.sims[i] = world.register();
                }
                _ => world.pass((pick % 400) as u64),
            }
            // Heartbeats keep coming while the scheduler is busy.
            if world.h.now_ms - last_pass >= 300 {
                world.pass(0);
                last_pass = world.h.now_ms;
            }
        }
        if world.h.state(job) == JobState::Committing {
            world.h.handle(Event::JobCommitEnded { job, error: None });
        }
        prop_assert_eq!(world.h.state(job), JobState::Succeeded);
        let job = world.h.scheduler.job(job).unwrap();
        for task in &job.reduces {
            let TaskState::Succeeded { attempt, .. } = task.state else { panic!() };
            prop_assert_eq!(task.attempts.iter().filter(|a| a.state == AttemptState::Succeeded).count(), 1);
            prop_assert_eq!(&world.granted[&task.id], &vec![attempt]);
            // Reducers wait for what they cannot fetch: none ends for it.
            let fetch_losses = task.attempts.iter().filter(|a| matches!(a.state, AttemptState::Lost { cause: LostCause::Fetch, .. })).count();
            prop_assert_eq!(fetch_losses, 0, "{} lost attempts to fetch failures", task.id);
        }
    }
}

#[test]
fn a_workers_lifecycle_changes_in_one_place() {
    use super::workers::{WorkerChange as C, WorkerEvent as E};
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
