//! A simulation of jobs of hundreds of map tasks per worker under
//! correlated faults: a dead or stopped worker makes every fetch of its
//! output fail at once, until it is declared dead.

use std::collections::{BTreeMap, BTreeSet};

use harrow_core::ids::{AttemptId, TaskId, WorkerId};
use harrow_core::task::{
    Assignment, AttemptOutcome, FetchFailure, InputReport, SegmentInfo, TaskSpec,
};
use proptest::prelude::*;

use super::Harness;
use crate::scheduler::*;

use super::suspect::{address, refused};

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
    /// locations, as it does when some were pending at its start; a
    /// waiting reduce asks for them.
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
                    *map_outputs = outputs.iter().cloned().map(Some).collect();
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
                let unreachable = map_outputs
                    .iter()
                    .flatten()
                    .find(|m| !self.serves(&m.shuffle_address));
                if unreachable.is_none() && map_outputs.iter().any(Option::is_none) {
                    self.sims[i].waiting.insert(a.attempt);
                    self.sims[i].running.push(a);
                    return;
                }
                match unreachable {
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
