//! What jobs did, summed: jobs and tasks by state, attempts by phase and
//! state, bytes and records of succeeded attempts, reduce fetch times.
//! `/metrics` reads the tally of the jobs the scheduler holds plus that of
//! the jobs it let go of ([`Scheduler::retire`]), so its counters never go
//! down while memory holds only the retained jobs.

use std::collections::BTreeMap;

use harrow_core::ids::{JobId, Phase};

use super::{AttemptState, Job, JobState, Scheduler, TaskState};

/// Upper bounds of the reduce fetch time buckets, in seconds: 1 ms
/// doubling to about 65 s; a last bucket takes the rest.
pub const FETCH_BUCKETS: [f64; 17] = {
    let mut bounds = [0.001; 17];
    let mut i = 1;
    while i < bounds.len() {
        bounds[i] = bounds[i - 1] * 2.0;
        i += 1;
    }
    bounds
};

/// Bytes and records of a phase's succeeded attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhaseIo {
    pub bytes_in: u64,
    pub records_in: u64,
    pub bytes_out: u64,
    pub records_out: u64,
}

/// Succeeded reduce attempts' fetch times as a histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchTimes {
    /// Per bucket of [`FETCH_BUCKETS`], and one past the last.
    pub counts: [u64; FETCH_BUCKETS.len() + 1],
    pub sum_seconds: f64,
    pub count: u64,
}

impl Default for FetchTimes {
    fn default() -> Self {
        FetchTimes {
            counts: [0; FETCH_BUCKETS.len() + 1],
            sum_seconds: 0.0,
            count: 0,
        }
    }
}

impl FetchTimes {
    pub fn observe(&mut self, seconds: f64) {
        let bucket = FETCH_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(FETCH_BUCKETS.len());
        self.counts[bucket] += 1;
        self.sum_seconds += seconds;
        self.count += 1;
    }

    fn merge(&mut self, other: &FetchTimes) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.sum_seconds += other.sum_seconds;
        self.count += other.count;
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Jobs by state name.
    pub jobs: BTreeMap<&'static str, u64>,
    /// Tasks by phase and state name.
    pub tasks: BTreeMap<(Phase, &'static str), u64>,
    /// Attempts by phase and state name.
    pub attempts: BTreeMap<(Phase, &'static str), u64>,
    pub io: BTreeMap<Phase, PhaseIo>,
    pub spilled_records: u64,
    pub fetch: FetchTimes,
    /// Pending tasks of queued and running jobs.
    pub pending_tasks: u64,
}

impl Tally {
    /// Counts `job` in.
    pub fn add(&mut self, job: &Job) {
        *self.jobs.entry(job.state.name()).or_default() += 1;
        let active = matches!(job.state, JobState::Queued | JobState::Running);
        for (phase, tasks) in [(Phase::Map, &job.maps), (Phase::Reduce, &job.reduces)] {
            for task in tasks {
                *self.tasks.entry((phase, task.state.name())).or_default() += 1;
                if active && task.state == TaskState::Pending {
                    self.pending_tasks += 1;
                }
                for attempt in &task.attempts {
                    *self
                        .attempts
                        .entry((phase, attempt.state.name()))
                        .or_default() += 1;
                    if attempt.state != AttemptState::Succeeded {
                        continue;
                    }
                    let c = &attempt.counters;
                    let io = self.io.entry(phase).or_default();
                    io.bytes_in += c.bytes_in;
                    io.records_in += c.records_in;
                    io.bytes_out += c.bytes_out;
                    io.records_out += c.records_out;
                    self.spilled_records += c.spilled_records;
                    if phase == Phase::Reduce {
                        self.fetch.observe(c.fetch_ms as f64 / 1000.0);
                    }
                }
            }
        }
    }

    /// Adds `other`'s sums to these.
    pub fn merge(&mut self, other: &Tally) {
        for (state, n) in &other.jobs {
            *self.jobs.entry(state).or_default() += n;
        }
        for (key, n) in &other.tasks {
            *self.tasks.entry(*key).or_default() += n;
        }
        for (key, n) in &other.attempts {
            *self.attempts.entry(*key).or_default() += n;
        }
        for (phase, io) in &other.io {
            let mine = self.io.entry(*phase).or_default();
            mine.bytes_in += io.bytes_in;
            mine.records_in += io.records_in;
            mine.bytes_out += io.bytes_out;
            mine.records_out += io.records_out;
        }
        self.spilled_records += other.spilled_records;
        self.fetch.merge(&other.fetch);
        self.pending_tasks += other.pending_tasks;
    }
}

impl Scheduler {
    /// Everything the coordinator ran in this process: the jobs it holds
    /// and those it let go of.
    pub fn tally(&self) -> Tally {
        let mut tally = self.retired.clone();
        for job in self.jobs.values() {
            tally.add(job);
        }
        tally
    }

    /// Lets go of ended jobs (their history is written, or past
    /// retention), keeping what they did in the tally. Jobs that have not
    /// ended, or that it does not hold, are left alone.
    pub fn retire(&mut self, jobs: impl IntoIterator<Item = JobId>) {
        for id in jobs {
            if self.jobs.get(&id).is_some_and(|j| j.state.is_terminal()) {
                let job = self.jobs.remove(&id).expect("checked above");
                self.retired.add(&job);
            }
        }
    }

    /// The ended jobs past `retention` at `now_ms`: beyond the newest
    /// `retention.jobs` to end, or ended longer ago than `retention.for_ms`.
    pub fn ended_past(&self, retention: crate::state::Retention, now_ms: u64) -> Vec<JobId> {
        let mut ended: Vec<(u64, JobId)> = self
            .jobs
            .values()
            .filter_map(|j| j.finished_at_ms.map(|at| (at, j.id)))
            .collect();
        ended.sort_unstable_by(|a, b| b.cmp(a));
        ended
            .into_iter()
            .enumerate()
            .filter(|&(rank, (at, _))| {
                rank >= retention.jobs || now_ms.saturating_sub(at) > retention.for_ms
            })
            .map(|(_, (_, id))| id)
            .collect()
    }
}
