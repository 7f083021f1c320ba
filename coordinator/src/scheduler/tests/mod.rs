//! Scheduler tests: the state machine driven by hand with a fake clock (a
//! number passed to `handle`), no sleeps, no I/O.

mod correlated;
mod faults;
mod restore;
mod speed;
mod suspect;

use std::collections::{BTreeMap, BTreeSet};

use harrow_core::ids::{AttemptId, JobId, Phase, WorkerId};
use harrow_core::task::{
    Assignment, AttemptCounters, AttemptOutcome, FailureKind, InputReport, InputSpec, JobSpec,
    OutputFormat, SegmentInfo, Split, TaskSpec,
};
use proptest::prelude::*;

use super::*;

/// The incarnation of every simulated worker process.
pub const INCARNATION: u64 = 7;

pub(crate) struct Harness {
    pub scheduler: Scheduler,
    pub now_ms: u64,
    /// How far each event moves the clock.
    pub ms_per_event: u64,
}

/// Timeouts of the test scheduler: a worker dies after 1 s of silence (and
/// is probed after 300 ms), an attempt without progress for 5 s gets a backup, jobs without workers
/// fail after 10 s. Every event advances the fake clock by 10 ms (unless a
/// test sets `ms_per_event`).
pub(super) fn test_config(max_attempts: u32) -> SchedulerConfig {
    SchedulerConfig {
        max_attempts,
        worker_timeout_ms: 1_000,
        stall_timeout_ms: 5_000,
        no_worker_timeout_ms: 10_000,
        suspect_timeout_ms: 500,
        late_heartbeat_ms: 300,
        ..SchedulerConfig::default()
    }
}

/// A job of built-in `name` over `splits` of text or `input`.
pub(crate) fn plan(
    name: &str,
    output: &str,
    reducers: u32,
    splits: Vec<Split>,
    input: InputSpec,
) -> JobPlan {
    let spec = JobSpec {
        name: name.into(),
        args: BTreeMap::new(),
        reducers,
        storage: Default::default(),
        input,
        output_format: OutputFormat::Text,
        plugin: None,
        partitioner: harrow_core::task::Partitioner::Hash,
        shuffle_key: harrow_core::rpc::security::Token::random().unwrap(),
    };
    JobPlan {
        spec: std::sync::Arc::new(spec),
        inputs: vec!["/in".into()],
        output: output.into(),
        splits,
        request_id: None,
    }
}

/// A reduce assignment's map output locations (`None`: pending); none for
/// a map.
pub fn locations(assignment: &Assignment) -> &[Option<MapOutput>] {
    match &assignment.task {
        TaskSpec::Reduce { map_outputs, .. } => map_outputs,
        TaskSpec::Map { .. } => &[],
    }
}

/// Where a reduce attempt stands on the map output it needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Outputs {
    /// Every location is known.
    Known,
    /// Some map task runs again.
    Pending,
    /// The coordinator stopped the attempt.
    Stopped,
}

impl Harness {
    /// Asks for the locations a reduce attempt lacks, as a real reducer
    /// does, and fills them in once known.
    pub fn ask_locations(&mut self, worker: WorkerId, assignment: &mut Assignment) -> Outputs {
        if locations(assignment).iter().all(Option::is_some) {
            return Outputs::Known;
        }
        let attempt = assignment.attempt;
        let reply = self.handle(Event::WaitMapOutputs { worker, attempt });
        let TaskSpec::Reduce { map_outputs, .. } = &mut assignment.task else {
            unreachable!("only reduces have map outputs")
        };
        match &reply[..] {
            [] => Outputs::Pending,
            [Action::MapOutputs { outputs, .. }] => {
                *map_outputs = outputs.iter().cloned().map(Some).collect();
                Outputs::Known
            }
            [Action::StopAttempt { .. }] => Outputs::Stopped,
            other => panic!("unexpected reply to WaitMapOutputs: {other:?}"),
        }
    }

    pub fn new(max_attempts: u32) -> Self {
        Harness {
            scheduler: Scheduler::new(test_config(max_attempts)),
            now_ms: 1_000,
            ms_per_event: 10,
        }
    }

    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        self.now_ms += self.ms_per_event;
        self.scheduler.handle(event, self.now_ms)
    }

    /// Advances the clock and ticks.
    pub fn advance(&mut self, ms: u64) -> Vec<Action> {
        self.now_ms += ms;
        self.handle(Event::Tick)
    }

    /// A heartbeat reporting `running` attempts with `bytes` of progress each.
    pub fn heartbeat(
        &mut self,
        worker: WorkerId,
        running: &[AttemptId],
        bytes: u64,
    ) -> Vec<Action> {
        let running = running
            .iter()
            .map(|&attempt| AttemptProgress { attempt, bytes })
            .collect();
        self.handle(Event::Heartbeat {
            worker,
            incarnation: INCARNATION,
            running,
            jobs_with_data: vec![],
        })
    }

    pub fn worker(&mut self) -> WorkerId {
        self.worker_at("127.0.0.1:1")
    }

    /// A worker serving its map output at `address`.
    pub fn worker_at(&mut self, address: &str) -> WorkerId {
        match self.handle(Event::RegisterWorker {
            shuffle_address: address.into(),
            slots: 2,
            incarnation: INCARNATION,
        })[..]
        {
            [Action::WorkerRegistered { worker }] => worker,
            ref other => panic!("{other:?}"),
        }
    }

    pub fn submit(&mut self, maps: usize, reducers: u32) -> JobId {
        self.submit_to(maps, reducers, "/out")
    }

    pub fn submit_to(&mut self, maps: usize, reducers: u32, output: &str) -> JobId {
        let splits = (0..maps)
            .map(|i| Split {
                location: format!("/in/f{i}"),
                start: 0,
                end: 10,
                file_size: 10,
            })
            .collect();
        let plan = plan("wordcount", output, reducers, splits, InputSpec::text());
        match self.handle(Event::SubmitJob { plan })[..] {
            [Action::JobAccepted { job }] => job,
            ref other => panic!("{other:?}"),
        }
    }

    pub fn request(&mut self, worker: WorkerId, free_slots: u32) -> Vec<Assignment> {
        self.handle(Event::RequestTasks { worker, free_slots })
            .into_iter()
            .map(|action| match action {
                Action::Assign { assignment, .. } => *assignment,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    pub fn succeed(&mut self, worker: WorkerId, assignment: &Assignment) -> Vec<Action> {
        assert!(
            locations(assignment).iter().all(Option::is_some),
            "{} cannot finish while map output is pending",
            assignment.attempt
        );
        let segments = (0..assignment.job.reducers)
            .map(|partition| SegmentInfo {
                partition,
                bytes: 1,
                records: 1,
                crc32c: 0,
            })
            .collect();
        let outcome = match assignment.task {
            TaskSpec::Map { .. } => AttemptOutcome::Succeeded {
                segments,
                input: InputReport::default(),
            },
            TaskSpec::Reduce { .. } => {
                let granted = self.handle(Event::RequestCommit {
                    worker,
                    attempt: assignment.attempt,
                });
                assert_eq!(
                    granted,
                    [Action::CommitGranted {
                        attempt: assignment.attempt
                    }]
                );
                AttemptOutcome::Succeeded {
                    segments: Vec::new(),
                    input: InputReport::default(),
                }
            }
        };
        self.report(worker, assignment.attempt, outcome)
    }

    /// A failure of the job's own kind.
    pub fn fail(&mut self, worker: WorkerId, attempt: AttemptId, message: &str) -> Vec<Action> {
        self.fail_as(worker, attempt, message, FailureKind::Job)
    }

    pub fn fail_as(
        &mut self,
        worker: WorkerId,
        attempt: AttemptId,
        message: &str,
        kind: FailureKind,
    ) -> Vec<Action> {
        self.report(
            worker,
            attempt,
            AttemptOutcome::Failed {
                message: message.into(),
                kind,
            },
        )
    }

    pub fn report(
        &mut self,
        worker: WorkerId,
        attempt: AttemptId,
        outcome: AttemptOutcome,
    ) -> Vec<Action> {
        self.handle(Event::AttemptEnded {
            worker,
            attempt,
            counters: AttemptCounters::default(),
            outcome,
        })
    }

    pub fn state(&self, job: JobId) -> JobState {
        self.scheduler.job(job).unwrap().state.clone()
    }
}

pub(super) fn phases(assignments: &[Assignment]) -> Vec<Phase> {
    assignments.iter().map(|a| a.attempt.task.phase).collect()
}

#[test]
fn maps_run_before_reduces_and_every_slot_is_used() {
    let mut h = Harness::new(4);
    let worker = h.worker();
    let job = h.submit(3, 2);
    assert_eq!(h.state(job), JobState::Queued);

    let first = h.request(worker, 2);
    assert_eq!(phases(&first), [Phase::Map, Phase::Map]);
    assert_eq!(h.state(job), JobState::Running);
    // The third map goes out; reduces wait although a slot is free.
    h.succeed(worker, &first[0]);
    let second = h.request(worker, 2);
    assert_eq!(phases(&second), [Phase::Map]);
    h.succeed(worker, &first[1]);
    assert!(h.request(worker, 1).is_empty(), "a map is still running");
    h.succeed(worker, &second[0]);

    let reduces = h.request(worker, 4);
    assert_eq!(phases(&reduces), [Phase::Reduce, Phase::Reduce]);
    let TaskSpec::Reduce {
        map_outputs,
        partition,
        ..
    } = &reduces[1].task
    else {
        panic!()
    };
    assert_eq!(*partition, 1);
    assert_eq!(map_outputs.len(), 3);
    assert!(
        map_outputs
            .iter()
            .all(|m| m.as_ref().unwrap().segment.partition == 1)
    );

    h.succeed(worker, &reduces[0]);
    let actions = h.succeed(worker, &reduces[1]);
    assert_eq!(
        actions,
        [Action::CommitJob {
            job,
            output: "/out".into()
        }]
    );
    assert_eq!(h.state(job), JobState::Committing);
    let actions = h.handle(Event::JobCommitEnded { job, error: None });
    assert_eq!(
        actions,
        [Action::JobFinished {
            job,
            state: JobState::Succeeded
        }]
    );
    assert!(h.scheduler.job(job).unwrap().finished_at_ms.is_some());
}

/// Runs `job` to success on `worker`, one task at a time.
fn run_to_success(h: &mut Harness, worker: WorkerId, job: JobId) {
    while !matches!(h.state(job), JobState::Committing) {
        let assigned = h.request(worker, 1);
        assert!(!assigned.is_empty(), "{job} has work left");
        for assignment in &assigned {
            h.succeed(worker, assignment);
        }
    }
    h.handle(Event::JobCommitEnded { job, error: None });
    assert_eq!(h.state(job), JobState::Succeeded);
}

#[test]
fn ended_jobs_let_go_of_keep_their_counts() {
    let mut h = Harness::new(4);
    let worker = h.worker();
    let first = h.submit_to(3, 2, "/first");
    run_to_success(&mut h, worker, first);
    for _ in 0..50 {
        h.advance(200);
        h.heartbeat(worker, &[], 0);
    }
    let second = h.submit_to(2, 1, "/second");
    run_to_success(&mut h, worker, second);
    let running = h.submit_to(4, 1, "/running");
    let before = h.scheduler.tally();
    // Series come in no fixed order.
    let sorted = |text: String| {
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines.sort();
        lines.join("\n")
    };
    let metrics = sorted(crate::metrics::render(&h.scheduler));

    // Retention keeps the newest ended jobs, and those that ended lately.
    let now = h.now_ms;
    let keep_one = crate::state::Retention {
        jobs: 1,
        for_ms: 60_000,
    };
    assert_eq!(h.scheduler.ended_past(keep_one, now), [first]);
    let keep_recent = crate::state::Retention {
        jobs: 10,
        for_ms: 5_000,
    };
    assert_eq!(h.scheduler.ended_past(keep_recent, now), [first]);
    assert!(
        h.scheduler
            .ended_past(crate::state::Retention::default(), now)
            .is_empty()
    );

    // A job that has not ended stays whatever it is asked.
    h.scheduler.retire([first, second, running]);
    assert!(h.scheduler.job(first).is_none() && h.scheduler.job(second).is_none());
    assert!(h.scheduler.job(running).is_some());
    assert_eq!(h.scheduler.tally(), before);
    assert_eq!(sorted(crate::metrics::render(&h.scheduler)), metrics);
    assert!(
        metrics.contains("harrow_jobs{state=\"succeeded\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("harrow_attempts_total{phase=\"map\",state=\"succeeded\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("harrow_shuffle_fetch_seconds_count 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("harrow_shuffle_fetch_seconds_bucket{le=\"+Inf\"} 3"),
        "{metrics}"
    );
}

#[test]
fn jobs_are_served_in_submission_order() {
    let mut h = Harness::new(4);
    let worker = h.worker();
    let first = h.submit_to(1, 1, "/out1");
    let second = h.submit_to(2, 1, "/out2");
    let assigned = h.request(worker, 3);
    let jobs: Vec<JobId> = assigned.iter().map(|a| a.attempt.task.job).collect();
    // The first job's only map, then the second job fills the free slots.
    assert_eq!(jobs, [first, second, second]);
}

#[test]
fn a_failed_attempt_is_retried_until_max_attempts_then_fails_the_job() {
    let mut h = Harness::new(3);
    let worker = h.worker();
    let job = h.submit(1, 1);
    for number in 1..=3 {
        let assigned = h.request(worker, 1);
        assert_eq!(assigned[0].attempt.number, number);
        let actions = h.fail(worker, assigned[0].attempt, "bad record at byte 7");
        if number < 3 {
            assert!(actions.is_empty());
            assert_eq!(h.state(job), JobState::Running);
        } else {
            let JobState::Failed { error } = h.state(job) else {
                panic!()
            };
            assert!(
                error.contains("map task job-000001/m-00000 (/in/f0[0..10])"),
                "{error}"
            );
            assert!(
                error.contains("after 3 attempts") && error.contains("bad record at byte 7"),
                "{error}"
            );
            assert!(matches!(
                actions[..],
                [Action::AbortJobOutput { .. }, Action::JobFinished { .. }]
            ));
        }
    }
    assert!(h.request(worker, 1).is_empty());
}

#[test]
fn reports_from_other_workers_or_ended_attempts_are_ignored() {
    let mut h = Harness::new(4);
    let worker = h.worker();
    let other = h.worker();
    let job = h.submit(1, 1);
    let assigned = h.request(worker, 1);
    // Wrong worker: fenced.
    assert!(h.fail(other, assigned[0].attempt, "late").is_empty());
    assert_eq!(h.scheduler.job(job).unwrap().maps[0].attempts.len(), 1);
    h.fail(worker, assigned[0].attempt, "first failure");
    // The same attempt again: it already ended.
    assert!(h.fail(worker, assigned[0].attempt, "duplicate").is_empty());
    let retry = h.request(other, 1);
    assert_eq!(retry[0].attempt.number, 2);
    // A late success of attempt 1 changes nothing.
    assert!(h.succeed(worker, &assigned[0]).is_empty());
    assert_eq!(
        h.scheduler.job(job).unwrap().maps[0].state,
        TaskState::Running {
            attempts: vec![retry[0].attempt]
        }
    );
}

#[test]
fn only_one_attempt_of_a_task_may_commit() {
    let mut h = Harness::new(4);
    let worker = h.worker();
    h.submit(1, 1);
    let map = h.request(worker, 1);
    h.succeed(worker, &map[0]);
    let reduce = h.request(worker, 1);
    let attempt = reduce[0].attempt;
    assert_eq!(
        h.handle(Event::RequestCommit { worker, attempt }),
        [Action::CommitGranted { attempt }]
    );
    // Asking again is idempotent; a map attempt or a stranger is refused.
    assert_eq!(
        h.handle(Event::RequestCommit { worker, attempt }),
        [Action::CommitGranted { attempt }]
    );
    let stranger = h.worker();
    assert!(matches!(
        h.handle(Event::RequestCommit {
            worker: stranger,
            attempt
        })[..],
        [Action::CommitRefused { .. }]
    ));
    // The holder fails after the grant: the next attempt may commit.
    h.fail(worker, attempt, "disk full");
    let retry = h.request(worker, 1)[0].attempt;
    assert_eq!(
        h.handle(Event::RequestCommit {
            worker,
            attempt: retry
        }),
        [Action::CommitGranted { attempt: retry }]
    );
}

#[test]
fn cancel_kills_running_attempts_through_heartbeats_and_releases_data() {
    let mut h = Harness::new(4);
    let worker = h.worker();
    let job = h.submit(2, 1);
    let assigned = h.request(worker, 2);
    h.succeed(worker, &assigned[0]);
    let actions = h.handle(Event::CancelJob { job });
    assert_eq!(
        actions[1],
        Action::JobFinished {
            job,
            state: JobState::Cancelled
        }
    );
    let running = vec![AttemptProgress {
        attempt: assigned[1].attempt,
        bytes: 0,
    }];
    let actions = h.handle(Event::Heartbeat {
        worker,
        incarnation: INCARNATION,
        running,
        jobs_with_data: vec![job],
    });
    assert_eq!(
        actions,
        [
            Action::KillAttempts {
                worker,
                attempts: vec![assigned[1].attempt]
            },
            Action::ReleaseJobs {
                worker,
                jobs: vec![job]
            },
        ]
    );
    // Its late report changes nothing; no more work is handed out.
    assert!(h.succeed(worker, &assigned[1]).is_empty());
    assert!(h.request(worker, 2).is_empty());
    assert_eq!(h.state(job), JobState::Cancelled);
}

#[test]
fn unknown_workers_are_told_to_register() {
    let mut h = Harness::new(4);
    let ghost = WorkerId(99);
    assert_eq!(
        h.handle(Event::RequestTasks {
            worker: ghost,
            free_slots: 1
        }),
        [Action::UnknownWorker { worker: ghost }]
    );
    let heartbeat = Event::Heartbeat {
        worker: ghost,
        incarnation: INCARNATION,
        running: vec![],
        jobs_with_data: vec![],
    };
    assert_eq!(
        h.handle(heartbeat),
        [Action::UnknownWorker { worker: ghost }]
    );
    // A known id from another process (another incarnation) is fenced.
    let worker = h.worker();
    let impostor = Event::Heartbeat {
        worker,
        incarnation: INCARNATION + 1,
        running: vec![],
        jobs_with_data: vec![],
    };
    assert_eq!(h.handle(impostor), [Action::UnknownWorker { worker }]);
    assert!(h.heartbeat(worker, &[], 0).is_empty());
}

#[test]
fn a_second_job_writing_the_same_output_is_rejected_while_the_first_runs() {
    let mut h = Harness::new(4);
    h.submit(1, 1);
    let plan = h.scheduler.jobs().next().unwrap().plan.clone();
    assert!(matches!(
        h.handle(Event::SubmitJob { plan })[..],
        [Action::JobRejected { .. }]
    ));
}

#[test]
fn a_map_reporting_the_wrong_number_of_segments_fails_its_attempt() {
    let mut h = Harness::new(4);
    let worker = h.worker();
    let job = h.submit(1, 3);
    let assigned = h.request(worker, 1);
    h.report(
        worker,
        assigned[0].attempt,
        AttemptOutcome::Succeeded {
            segments: vec![],
            input: InputReport::default(),
        },
    );
    let task = &h.scheduler.job(job).unwrap().maps[0];
    assert_eq!(task.state, TaskState::Pending);
    assert!(
        matches!(&task.attempts[0].state, AttemptState::Failed { error, .. } if error.contains("0 segments for 3 partitions"))
    );
}

proptest! {
    /// Whatever the order of requests and reports, and with fewer failures
    /// per task than max attempts, every job succeeds and no task commits
    /// twice.
    #[test]
    fn jobs_finish_and_commit_once_under_any_interleaving(
        maps in 1usize..6,
        reducers in 1u32..4,
        jobs in 1usize..3,
        steps in proptest::collection::vec((0usize..3, 0usize..8, 0u8..10), 1..400),
    ) {
        let mut h = Harness::new(4);
        let workers: Vec<WorkerId> = (0..3).map(|_| h.worker()).collect();
        let ids: Vec<JobId> = (0..jobs).map(|j| h.submit_to(maps, reducers, &format!("/out{j}"))).collect();
        let mut running: Vec<(WorkerId, Assignment)> = Vec::new();
        let mut failures: BTreeMap<harrow_core::ids::TaskId, u32> = BTreeMap::new();
        let mut committed: BTreeSet<harrow_core::ids::TaskId> = BTreeSet::new();
        let mut step = |h: &mut Harness, running: &mut Vec<(WorkerId, Assignment)>, w: usize, pick: usize, dice: u8| -> Result<(), TestCaseError> {
            if running.is_empty() || dice < 3 {
                let worker = workers[w];
                for a in h.request(worker, 2) {
                    running.push((worker, a));
                }
                return Ok(());
            }
            let (worker, assignment) = running.remove(pick % running.len());
            let task = assignment.attempt.task;
            let fails = failures.entry(task).or_default();
            if dice < 5 && *fails < 3 {
                *fails += 1;
                h.fail(worker, assignment.attempt, "injected");
            } else {
                if assignment.attempt.task.phase == Phase::Reduce {
                    prop_assert!(committed.insert(task), "{task} committed twice");
                }
                h.succeed(worker, &assignment);
            }
            Ok(())
        };
        for (w, pick, dice) in steps {
            step(&mut h, &mut running, w, pick, dice)?;
        }
        // Drain: keep going until no work is left. Every worker asks, since
        // one where a job failed three times is excluded from it.
        for _ in 0..10_000 {
            if running.is_empty() {
                for &worker in &workers {
                    running.extend(h.request(worker, 2).into_iter().map(|a| (worker, a)));
                }
                if running.is_empty() {
                    break;
                }
            }
            step(&mut h, &mut running, 0, 0, 9)?;
        }
        for job in ids {
            prop_assert_eq!(h.state(job), JobState::Committing);
            h.handle(Event::JobCommitEnded { job, error: None });
            prop_assert_eq!(h.state(job), JobState::Succeeded);
        }
        prop_assert_eq!(committed.len(), jobs * reducers as usize);
    }
}

#[test]
fn a_retried_submission_gets_the_job_it_made_not_another() {
    let mut h = Harness::new(4);
    let with_request = |id: &str| {
        let mut plan = plan("wordcount", "/out", 1, vec![], InputSpec::text());
        plan.request_id = Some(id.to_string());
        plan
    };
    let first = h.handle(Event::SubmitJob {
        plan: with_request("r-1"),
    });
    let [Action::JobAccepted { job }] = first[..] else {
        panic!("{first:?}")
    };
    let again = h.handle(Event::SubmitJob {
        plan: with_request("r-1"),
    });
    assert_eq!(again, [Action::JobAccepted { job }]);
    assert_eq!(h.scheduler.jobs().count(), 1);
    assert_eq!(h.scheduler.job_submitted_as("r-1"), Some(job));
    assert_eq!(h.scheduler.job_submitted_as("r-2"), None);
}
