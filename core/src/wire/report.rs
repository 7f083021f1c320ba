//! Reports between protobuf and their domain form (`crate::report`).

use harrow_proto::v1 as pb;

use crate::report::{
    AttemptCounts, AttemptReport, BadRecordsReport, FaultReport, JobReport, PhaseReport,
    PluginReport, TaskReport, WorkerReport,
};
use crate::task::BadRecord;

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
            started_at_ms: r.started_at_ms.unwrap_or_default(),
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
            args: r.args.into_iter().collect(),
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
            started_at_ms: (s.started_at_ms > 0).then_some(s.started_at_ms),
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
            args: s.args.into_iter().collect(),
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
            excluded_from: w.excluded_from,
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
            excluded_from: w.excluded_from,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_states_survive_the_wire() {
        for state in ["running", "succeeded", "failed", "lost", "killed"] {
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
