//! The reports `status`, `jobs` and `workers` show, built from the
//! scheduler's state (the types and their wire form are
//! `harrow_core::report` and `harrow_core::wire`).

use harrow_core::ids::{Phase, WorkerId};
use harrow_core::report::{
    AttemptCounts, AttemptReport, BadRecordsReport, FaultReport, JobReport, PhaseReport,
    PluginReport, TaskReport, WorkerReport,
};

use crate::scheduler::input_check;
use crate::scheduler::task::SuspendedOutput;
use crate::scheduler::{
    Attempt, AttemptState, Job, JobState, Scheduler, Task, TaskOutput, TaskState, Worker,
};

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

fn phase_report(job: &Job, phase: Phase) -> PhaseReport {
    let total = match phase {
        Phase::Map => job.maps.len(),
        Phase::Reduce => job.reduces.len(),
    };
    let (pending, running, succeeded) = job.index.counts(phase);
    PhaseReport {
        total: total as u32,
        pending: pending as u32,
        running: running as u32,
        succeeded: succeeded as u32,
        failed: (total - pending - running - succeeded) as u32,
    }
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
        .filter(|w| w.slow.is_some() && job.index.running_on(w.id) > 0)
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
    let map_wins: Vec<_> = winning_counters(&job.maps).collect();
    let reduce_wins: Vec<_> = winning_counters(&job.reduces).collect();
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
        started_at_ms: job
            .tasks()
            .filter_map(|t| t.attempts.first().map(|a| a.started_at_ms))
            .min(),
        finished_at_ms: job.finished_at_ms,
        map: phase_report(job, Phase::Map),
        reduce: phase_report(job, Phase::Reduce),
        // Generated input's splits are row ranges, not bytes.
        input_bytes: match job.plan.inputs.is_empty() {
            true => 0,
            false => job.plan.splits.iter().map(|s| s.end - s.start).sum(),
        },
        input_records: map_wins.iter().map(|c| c.records_in).sum(),
        output_records: reduce_wins.iter().map(|c| c.records_out).sum(),
        output_files: reduce_wins.len() as u32,
        spilled_records: map_wins.iter().map(|c| c.spilled_records).sum(),
        suspect_workers: suspect_holders(job),
        slow_workers: slow_runners(scheduler, job),
        plugin: job.plan.spec.plugin.as_ref().map(|p| PluginReport {
            file_name: p.file_name.clone(),
            sha256: p.sha256.clone(),
        }),
        args: job.plan.spec.args.clone(),
        counters: {
            let mut sum = harrow_sdk::Counters::default();
            for counters in map_wins.iter().chain(&reduce_wins) {
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
            excluded_from: scheduler
                .excluded_from(worker.id)
                .iter()
                .map(ToString::to_string)
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use harrow_proto::v1 as pb;

    use super::*;

    #[test]
    fn every_job_state_survives_the_wire() {
        for state in JobState::NAMES {
            let report = JobReport {
                state: state.to_string(),
                ..JobReport::default()
            };
            let wire = pb::JobStatus::from(report);
            assert_eq!(JobReport::from(wire).state, state);
        }
    }
}
