//! Running one attempt: its task built from the assignment, run with
//! panics caught, and its outcome reported.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::FutureExt;
use futures::future::{AbortRegistration, Abortable};
use harrow_core::task::{
    Assignment, AttemptCounters, AttemptOutcome, InputReport, SegmentInfo, TaskSpec,
};
use harrow_core::wire;
use harrow_formats::source::SplitInput;
use harrow_proto::v1 as pb;

use super::Shared;
use super::link::patiently;
use crate::cpu::CpuPanic;
use crate::error::TaskError;
use crate::map::{MapOutputSpec, lanes, run_map};
use crate::memory::TaskMemory;
use crate::plugin::PluginJob;
use crate::reduce::ReduceTask;
use crate::shuffle::fetch::ThisWorker;
use crate::shuffle::serve::job_dir;

/// Runs the attempt and reports how it ended. The report offers the
/// attempt's slot for the next task unless the worker is draining; returns
/// what the coordinator handed out for it. An attempt stopped through
/// `stop` (killed) is not reported.
pub(super) async fn run_attempt(
    shared: &Shared,
    assignment: Assignment,
    progress: Arc<AtomicU64>,
    stop: AbortRegistration,
) -> Vec<pb::TaskAssignment> {
    let attempt = assignment.attempt;
    tracing::info!(%attempt, job = %assignment.job.name, "attempt started");
    // A panic in code that runs on the async runtime (a decoder reading a
    // corrupt footer, say) fails the attempt, not the worker.
    let work = AssertUnwindSafe(execute(shared, assignment, progress)).catch_unwind();
    let Ok(executed) = Abortable::new(work, stop).await else {
        return Vec::new();
    };
    let executed = executed.unwrap_or_else(|panic| {
        Err(TaskError::Panic {
            during: "panicked:",
            source: CpuPanic {
                message: harrow_sdk::panic_message(panic.as_ref()),
            },
        })
    });
    let (counters, outcome) = match executed {
        Ok((counters, segments, input)) => {
            (counters, AttemptOutcome::Succeeded { segments, input })
        }
        Err(error) => {
            tracing::warn!(%attempt, %error, "attempt failed");
            let message = error.to_string();
            let outcome = match error {
                TaskError::Fetch {
                    map_attempt, cause, ..
                } => AttemptOutcome::FetchFailed {
                    map_attempt,
                    message,
                    cause,
                },
                error => AttemptOutcome::Failed {
                    message,
                    kind: error.kind(),
                },
            };
            (AttemptCounters::default(), outcome)
        }
    };
    let report = pb::AttemptReport {
        free_slots: u32::from(!shared.draining.load(Ordering::SeqCst)),
        ..wire::attempt_report(shared.worker_id(), attempt, counters, outcome)
    };
    let reported = patiently("ReportAttempt", || {
        let mut client = shared.coordinator.clone();
        let report = report.clone();
        async move { client.report_attempt(report).await }
    })
    .await;
    match reported {
        Ok(response) => response.into_inner().assignments,
        Err(status) => {
            tracing::warn!(%attempt, %status, "could not report attempt");
            Vec::new()
        }
    }
}

async fn execute(
    shared: &Shared,
    assignment: Assignment,
    progress: Arc<AtomicU64>,
) -> Result<(AttemptCounters, Vec<SegmentInfo>, InputReport), TaskError> {
    let attempt = assignment.attempt;
    let job = match &assignment.job.plugin {
        Some(plugin) => {
            let job = PluginJob {
                job: attempt.task.job,
                plugin,
                name: &assignment.job.name,
                args: &assignment.job.args,
                input_schema: &assignment.job.input.schema,
            };
            shared.plugins.job(job, &shared.coordinator).await?
        }
        None => {
            let args = harrow_sdk::JobArgs::new(assignment.job.args.clone())
                .with_input_schema(assignment.job.input.schema.clone());
            shared.registry.instantiate(&assignment.job.name, &args)?
        }
    };
    let dir = job_dir(&shared.config.work_dir, attempt.task.job);
    match assignment.task {
        TaskSpec::Map { split, job_maps } => {
            shared
                .shuffle_keys
                .insert(attempt.task.job, assignment.job.shuffle_key.clone());
            let input = SplitInput {
                split: &split,
                spec: &assignment.job.input,
                storage: &assignment.job.storage,
            };
            let output = MapOutputSpec {
                reducers: assignment.job.reducers,
                partitioner: assignment.job.partitioner.clone(),
                memory: TaskMemory::share(shared.config.memory_budget, shared.config.slots),
                lanes: lanes(rayon::current_num_threads(), shared.config.slots, job_maps),
            };
            let result = run_map(job, attempt, input, output, dir, &progress).await?;
            Ok((result.counters, result.segments, result.input))
        }
        TaskSpec::Reduce {
            partition,
            output,
            map_outputs,
        } => {
            let task = ReduceTask {
                job,
                attempt,
                partition,
                output: &output,
                map_outputs: &map_outputs,
                shuffle_key: &assignment.job.shuffle_key,
                scratch: dir.join(attempt.file_stem()),
                progress,
                storage: &assignment.job.storage,
                format: assignment.job.output_format,
                own: ThisWorker {
                    address: &shared.shuffle_address,
                    work_dir: &shared.config.work_dir,
                    connector: &shared.connector,
                },
            };
            let counters = task.run(shared).await?;
            Ok((counters, Vec::new(), InputReport::default()))
        }
    }
}
