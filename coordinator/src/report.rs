//! What `status`, `jobs` and `workers` show: serializable reports built from
//! the scheduler's state on the server, carried as protobuf, and turned
//! back into the same reports by the client (for text or `--json`).

use std::collections::BTreeMap;

use harrow_core::ids::WorkerId;
use harrow_core::task::BadRecord;
use harrow_proto::v1 as pb;
use serde::Serialize;

use crate::scheduler::input_check;
use crate::scheduler::task::SuspendedOutput;
use crate::scheduler::{
    Attempt, AttemptState, Job, JobState, Scheduler, Task, TaskOutput, TaskState, Worker,
};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PhaseReport {
    pub total: u32,
    pub pending: u32,
    pub running: u32,
    pub succeeded: u32,
    pub failed: u32,
}

/// The failure-handling settings a job runs under.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FaultReport {
    pub max_attempts: u32,
    pub worker_timeout_ms: u64,
    pub stall_timeout_ms: u64,
    pub no_worker_timeout_ms: u64,
    pub suspect_timeout_ms: u64,
}

/// A job's attempts by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AttemptCounts {
    pub total: u32,
    pub running: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub lost: u32,
    pub killed: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptReport {
    pub attempt_id: String,
    pub worker_id: String,
    pub state: String,
    pub started_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    pub bytes_in: u64,
    pub records_in: u64,
    pub bytes_out: u64,
    pub records_out: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// A malformed input record that was skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRecordReport {
    pub location: String,
    pub offset: u64,
    pub reason: String,
}

impl From<BadRecord> for BadRecordReport {
    fn from(b: BadRecord) -> Self {
        BadRecordReport {
            location: b.location,
            offset: b.offset,
            reason: b.reason,
        }
    }
}

impl From<BadRecordReport> for BadRecord {
    fn from(b: BadRecordReport) -> Self {
        BadRecord {
            location: b.location,
            offset: b.offset,
            reason: b.reason,
        }
    }
}

/// The malformed input records the job skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BadRecordsReport {
    pub skipped: u64,
    /// `--skip-bad-records`.
    pub limit: u64,
    /// The first of them.
    pub samples: Vec<BadRecordReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskReport {
    pub task_id: String,
    pub state: String,
    pub input: String,
    pub attempts: Vec<AttemptReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobReport {
    pub job_id: String,
    pub job_name: String,
    pub state: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
    pub inputs: Vec<String>,
    pub output: String,
    pub reducers: u32,
    pub submitted_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    pub map: PhaseReport,
    pub reduce: PhaseReport,
    pub input_bytes: u64,
    pub input_records: u64,
    pub output_records: u64,
    pub output_files: u32,
    /// Map output records spilled to disk (memory budget exceeded).
    pub spilled_records: u64,
    pub faults: FaultReport,
    pub attempts: AttemptCounts,
    pub input_format: String,
    /// The planned input schema, `name: type` per column.
    pub input_columns: Vec<String>,
    pub output_format: String,
    pub bad_records: BadRecordsReport,
    /// The job's own counters, summed over the winning attempts of its
    /// map and reduce tasks.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, u64>,
    /// The plugin the job came from: file name and SHA-256.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginReport>,
    /// Suspect workers whose map output of this job is set aside.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suspect_workers: Vec<String>,
    /// Slow workers running attempts of this job (they get no new ones).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slow_workers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskReport>,
}

impl JobReport {
    pub fn is_terminal(&self) -> bool {
        matches!(self.state.as_str(), "succeeded" | "failed" | "cancelled")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginReport {
    pub file_name: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerReport {
    pub worker_id: String,
    pub address: String,
    pub slots: u32,
    pub running_attempts: u32,
    pub last_heartbeat_ms: u64,
    pub registered_at_ms: u64,
    pub state: String,
    /// Why a suspect or dead worker is so.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

fn attempt_report(attempt: &Attempt) -> AttemptReport {
    let state = attempt.state.name();
    let error = match &attempt.state {
        AttemptState::Failed { error, .. } => error.as_str(),
        AttemptState::Lost { reason, .. } => reason.as_str(),
        AttemptState::Running | AttemptState::Succeeded | AttemptState::Killed => "",
    };
    AttemptReport {
        attempt_id: attempt.id.to_string(),
        worker_id: attempt.worker.to_string(),
        state: state.to_string(),
        started_at_ms: attempt.started_at_ms,
        finished_at_ms: attempt.finished_at_ms,
        bytes_in: attempt.counters.bytes_in,
        records_in: attempt.counters.records_in,
        bytes_out: attempt.counters.bytes_out,
        records_out: attempt.counters.records_out,
        error: error.to_string(),
    }
}

fn phase_report(tasks: &[Task]) -> PhaseReport {
    let mut report = PhaseReport {
        total: tasks.len() as u32,
        ..PhaseReport::default()
    };
    for task in tasks {
        match task.state {
            TaskState::Pending => report.pending += 1,
            TaskState::Running { .. } => report.running += 1,
            TaskState::Succeeded { .. } => report.succeeded += 1,
            TaskState::Failed { .. } | TaskState::Cancelled => report.failed += 1,
        }
    }
    report
}

/// The winning attempt's counters of every succeeded task.
/// The workers holding the job's set-aside map output, in id order.
fn suspect_holders(job: &Job) -> Vec<String> {
    let holders: std::collections::BTreeSet<WorkerId> = job
        .maps
        .iter()
        .filter_map(|task| match &task.suspended {
            Some(SuspendedOutput {
                output: TaskOutput::Map { worker, .. },
                ..
            }) => Some(*worker),
            _ => None,
        })
        .collect();
    holders.iter().map(ToString::to_string).collect()
}

/// The slow workers running attempts of the job, in id order.
fn slow_runners(scheduler: &Scheduler, job: &Job) -> Vec<String> {
    scheduler
        .workers()
        .filter(|w| w.slow.is_some())
        .filter(|w| {
            job.tasks()
                .flat_map(|t| &t.attempts)
                .any(|a| a.worker == w.id && a.state == AttemptState::Running)
        })
        .map(|w| w.id.to_string())
        .collect()
}

fn winning_counters(tasks: &[Task]) -> impl Iterator<Item = &harrow_core::task::AttemptCounters> {
    tasks.iter().filter_map(|task| match &task.state {
        TaskState::Succeeded { attempt, .. } => task.attempt(*attempt).map(|a| &a.counters),
        _ => None,
    })
}

fn attempt_counts(job: &Job) -> AttemptCounts {
    let mut counts = AttemptCounts::default();
    for attempt in job.tasks().flat_map(|t| &t.attempts) {
        counts.total += 1;
        match attempt.state {
            AttemptState::Running => counts.running += 1,
            AttemptState::Succeeded => counts.succeeded += 1,
            AttemptState::Failed { .. } => counts.failed += 1,
            AttemptState::Lost { .. } => counts.lost += 1,
            AttemptState::Killed => counts.killed += 1,
        }
    }
    counts
}

/// The job's report; `scheduler` tells which of the workers running its
/// attempts are slow.
pub fn job_report(scheduler: &Scheduler, job: &Job, include_tasks: bool) -> JobReport {
    let config = scheduler.config();
    let error = match &job.state {
        JobState::Failed { error } => error.clone(),
        _ => String::new(),
    };
    let tasks = if include_tasks {
        job.tasks()
            .map(|task| TaskReport {
                task_id: task.id.to_string(),
                state: task.state.name().to_string(),
                input: task.input.to_string(),
                attempts: task.attempts.iter().map(attempt_report).collect(),
            })
            .collect()
    } else {
        Vec::new()
    };
    JobReport {
        job_id: job.id.to_string(),
        job_name: job.plan.spec.name.clone(),
        state: job.state.name().to_string(),
        error,
        inputs: job.plan.inputs.clone(),
        output: job.plan.output.clone(),
        reducers: job.plan.spec.reducers,
        submitted_at_ms: job.submitted_at_ms,
        finished_at_ms: job.finished_at_ms,
        map: phase_report(&job.maps),
        reduce: phase_report(&job.reduces),
        // Generated input's splits are row ranges, not bytes.
        input_bytes: match job.plan.inputs.is_empty() {
            true => 0,
            false => job.plan.splits.iter().map(|s| s.end - s.start).sum(),
        },
        input_records: winning_counters(&job.maps).map(|c| c.records_in).sum(),
        output_records: winning_counters(&job.reduces).map(|c| c.records_out).sum(),
        output_files: winning_counters(&job.reduces).count() as u32,
        spilled_records: winning_counters(&job.maps).map(|c| c.spilled_records).sum(),
        suspect_workers: suspect_holders(job),
        slow_workers: slow_runners(scheduler, job),
        plugin: job.plan.spec.plugin.as_ref().map(|p| PluginReport {
            file_name: p.file_name.clone(),
            sha256: p.sha256.clone(),
        }),
        counters: {
            let mut sum = harrow_sdk::Counters::default();
            for counters in winning_counters(&job.maps).chain(winning_counters(&job.reduces)) {
                sum.merge(&counters.user);
            }
            sum.iter()
                .map(|(name, value)| (name.to_string(), value))
                .collect()
        },
        faults: FaultReport {
            max_attempts: config.max_attempts,
            worker_timeout_ms: config.worker_timeout_ms,
            stall_timeout_ms: config.stall_timeout_ms,
            no_worker_timeout_ms: config.no_worker_timeout_ms,
            suspect_timeout_ms: config.suspect_timeout_ms,
        },
        attempts: attempt_counts(job),
        input_format: job.plan.spec.input.format.name().to_string(),
        input_columns: job
            .plan
            .spec
            .input
            .schema
            .fields()
            .iter()
            .map(|f| format!("{}: {}", f.name(), f.data_type()))
            .collect(),
        output_format: job.plan.spec.output_format.name().to_string(),
        bad_records: {
            let (skipped, samples) = input_check::bad_records(job);
            BadRecordsReport {
                skipped,
                limit: job.plan.spec.input.skip_bad_records,
                samples: samples.into_iter().map(Into::into).collect(),
            }
        },
        tasks,
    }
}

pub fn worker_reports(scheduler: &Scheduler) -> Vec<WorkerReport> {
    scheduler
        .workers()
        .map(|worker: &Worker| WorkerReport {
            worker_id: worker.id.to_string(),
            address: worker.shuffle_address.clone(),
            slots: worker.slots,
            running_attempts: scheduler.running_on(worker.id) as u32,
            last_heartbeat_ms: worker.last_heartbeat_ms,
            registered_at_ms: worker.registered_at_ms,
            state: worker.shown_state().to_string(),
            reason: worker.reason().unwrap_or_default().to_string(),
        })
        .collect()
}

/// A state name (`running`) as the protobuf enum value `PREFIX_RUNNING`.
fn state_to_wire(prefix: &str, state: &str, from_name: impl Fn(&str) -> Option<i32>) -> i32 {
    from_name(&format!("{prefix}{}", state.to_ascii_uppercase())).unwrap_or(0)
}

/// A protobuf enum value's name `PREFIX_RUNNING` as the state name `running`.
fn state_from_wire(prefix: &str, name: Option<&str>) -> String {
    name.and_then(|n| n.strip_prefix(prefix))
        .filter(|n| *n != "UNSPECIFIED")
        .unwrap_or("unknown")
        .to_ascii_lowercase()
}

impl From<&PhaseReport> for pb::PhaseProgress {
    fn from(p: &PhaseReport) -> Self {
        pb::PhaseProgress {
            total: p.total,
            pending: p.pending,
            running: p.running,
            succeeded: p.succeeded,
            failed: p.failed,
        }
    }
}

impl From<pb::PhaseProgress> for PhaseReport {
    fn from(p: pb::PhaseProgress) -> Self {
        PhaseReport {
            total: p.total,
            pending: p.pending,
            running: p.running,
            succeeded: p.succeeded,
            failed: p.failed,
        }
    }
}

impl From<JobReport> for pb::JobStatus {
    fn from(r: JobReport) -> Self {
        pb::JobStatus {
            job_id: r.job_id,
            job_name: r.job_name,
            state: state_to_wire("JOB_STATE_", &r.state, |n| {
                pb::JobState::from_str_name(n).map(Into::into)
            }),
            error: r.error,
            inputs: r.inputs,
            output: r.output,
            reducers: r.reducers,
            submitted_at_ms: r.submitted_at_ms,
            finished_at_ms: r.finished_at_ms,
            map: Some((&r.map).into()),
            reduce: Some((&r.reduce).into()),
            input_bytes: r.input_bytes,
            input_records: r.input_records,
            output_records: r.output_records,
            output_files: r.output_files,
            spilled_records: r.spilled_records,
            suspect_workers: r.suspect_workers,
            slow_workers: r.slow_workers,
            faults: Some(pb::FaultSettings {
                max_attempts: r.faults.max_attempts,
                worker_timeout_ms: r.faults.worker_timeout_ms,
                stall_timeout_ms: r.faults.stall_timeout_ms,
                no_worker_timeout_ms: r.faults.no_worker_timeout_ms,
                suspect_timeout_ms: r.faults.suspect_timeout_ms,
            }),
            attempts: Some(pb::AttemptCounts {
                total: r.attempts.total,
                running: r.attempts.running,
                succeeded: r.attempts.succeeded,
                failed: r.attempts.failed,
                lost: r.attempts.lost,
                killed: r.attempts.killed,
            }),
            input_format: r.input_format,
            output_format: r.output_format,
            input_columns: r.input_columns,
            counters: r.counters.into_iter().collect(),
            plugin: r.plugin.map(|p| pb::PluginRef {
                sha256: p.sha256,
                file_name: p.file_name,
            }),
            bad_records: Some(pb::BadRecords {
                skipped: r.bad_records.skipped,
                limit: r.bad_records.limit,
                samples: r
                    .bad_records
                    .samples
                    .into_iter()
                    .map(|b| BadRecord::from(b).into())
                    .collect(),
            }),
            tasks: r
                .tasks
                .into_iter()
                .map(|t| pb::TaskStatus {
                    task_id: t.task_id,
                    state: state_to_wire("TASK_STATE_", &t.state, |n| {
                        pb::TaskState::from_str_name(n).map(Into::into)
                    }),
                    input: t.input,
                    attempts: t
                        .attempts
                        .into_iter()
                        .map(|a| pb::AttemptStatus {
                            attempt_id: a.attempt_id,
                            worker_id: a.worker_id,
                            state: state_to_wire("ATTEMPT_STATE_", &a.state, |n| {
                                pb::AttemptState::from_str_name(n).map(Into::into)
                            }),
                            started_at_ms: a.started_at_ms,
                            finished_at_ms: a.finished_at_ms,
                            bytes_in: a.bytes_in,
                            records_in: a.records_in,
                            bytes_out: a.bytes_out,
                            records_out: a.records_out,
                            error: a.error,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl From<pb::JobStatus> for JobReport {
    fn from(s: pb::JobStatus) -> Self {
        JobReport {
            job_id: s.job_id,
            job_name: s.job_name,
            state: state_from_wire(
                "JOB_STATE_",
                pb::JobState::try_from(s.state)
                    .ok()
                    .map(|s| s.as_str_name()),
            ),
            error: s.error,
            inputs: s.inputs,
            output: s.output,
            reducers: s.reducers,
            submitted_at_ms: s.submitted_at_ms,
            finished_at_ms: s.finished_at_ms,
            map: s.map.map(Into::into).unwrap_or_default(),
            reduce: s.reduce.map(Into::into).unwrap_or_default(),
            input_bytes: s.input_bytes,
            input_records: s.input_records,
            output_records: s.output_records,
            output_files: s.output_files,
            spilled_records: s.spilled_records,
            suspect_workers: s.suspect_workers,
            slow_workers: s.slow_workers,
            faults: s
                .faults
                .map(|f| FaultReport {
                    max_attempts: f.max_attempts,
                    worker_timeout_ms: f.worker_timeout_ms,
                    stall_timeout_ms: f.stall_timeout_ms,
                    no_worker_timeout_ms: f.no_worker_timeout_ms,
                    suspect_timeout_ms: f.suspect_timeout_ms,
                })
                .unwrap_or_default(),
            attempts: s
                .attempts
                .map(|a| AttemptCounts {
                    total: a.total,
                    running: a.running,
                    succeeded: a.succeeded,
                    failed: a.failed,
                    lost: a.lost,
                    killed: a.killed,
                })
                .unwrap_or_default(),
            input_format: s.input_format,
            output_format: s.output_format,
            input_columns: s.input_columns,
            counters: s.counters.into_iter().collect(),
            plugin: s.plugin.map(|p| PluginReport {
                file_name: p.file_name,
                sha256: p.sha256,
            }),
            bad_records: s
                .bad_records
                .map(|b| BadRecordsReport {
                    skipped: b.skipped,
                    limit: b.limit,
                    samples: b
                        .samples
                        .into_iter()
                        .map(|b| BadRecord::from(b).into())
                        .collect(),
                })
                .unwrap_or_default(),
            tasks: s
                .tasks
                .into_iter()
                .map(|t| TaskReport {
                    task_id: t.task_id,
                    state: state_from_wire(
                        "TASK_STATE_",
                        pb::TaskState::try_from(t.state)
                            .ok()
                            .map(|s| s.as_str_name()),
                    ),
                    input: t.input,
                    attempts: t
                        .attempts
                        .into_iter()
                        .map(|a| AttemptReport {
                            attempt_id: a.attempt_id,
                            worker_id: a.worker_id,
                            state: state_from_wire(
                                "ATTEMPT_STATE_",
                                pb::AttemptState::try_from(a.state)
                                    .ok()
                                    .map(|s| s.as_str_name()),
                            ),
                            started_at_ms: a.started_at_ms,
                            finished_at_ms: a.finished_at_ms,
                            bytes_in: a.bytes_in,
                            records_in: a.records_in,
                            bytes_out: a.bytes_out,
                            records_out: a.records_out,
                            error: a.error,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl From<WorkerReport> for pb::WorkerStatus {
    fn from(w: WorkerReport) -> Self {
        pb::WorkerStatus {
            worker_id: w.worker_id,
            address: w.address,
            slots: w.slots,
            running_attempts: w.running_attempts,
            last_heartbeat_ms: w.last_heartbeat_ms,
            registered_at_ms: w.registered_at_ms,
            state: w.state,
            reason: w.reason,
        }
    }
}

impl From<pb::WorkerStatus> for WorkerReport {
    fn from(w: pb::WorkerStatus) -> Self {
        WorkerReport {
            worker_id: w.worker_id,
            address: w.address,
            slots: w.slots,
            running_attempts: w.running_attempts,
            last_heartbeat_ms: w.last_heartbeat_ms,
            registered_at_ms: w.registered_at_ms,
            state: w.state,
            reason: w.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_survive_the_wire() {
        for state in crate::scheduler::JobState::NAMES {
            let wire = state_to_wire("JOB_STATE_", state, |n| {
                pb::JobState::from_str_name(n).map(Into::into)
            });
            assert_ne!(wire, 0, "{state}");
            let name = pb::JobState::try_from(wire).ok().map(|s| s.as_str_name());
            assert_eq!(state_from_wire("JOB_STATE_", name), state);
        }
        for state in ["running", "succeeded", "failed", "killed"] {
            let wire = state_to_wire("ATTEMPT_STATE_", state, |n| {
                pb::AttemptState::from_str_name(n).map(Into::into)
            });
            let name = pb::AttemptState::try_from(wire)
                .ok()
                .map(|s| s.as_str_name());
            assert_eq!(state_from_wire("ATTEMPT_STATE_", name), state);
        }
        assert_eq!(
            state_from_wire("JOB_STATE_", Some("JOB_STATE_UNSPECIFIED")),
            "unknown"
        );
    }
}
