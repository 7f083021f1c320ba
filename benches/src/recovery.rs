//! `harrow-bench recovery`: how long a coordinator takes from opening its
//! state dir to handing out its first task, with `tasks` unfinished tasks
//! (in jobs of 1,000, half their maps done) and `history` finished jobs.
//! The state is written through the coordinator's own `StateStore`, as its
//! persister writes it; the clock is stopped once the restored scheduler
//! answers a worker's task request with an assignment.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use harrow_coordinator::report::job_report;
use harrow_coordinator::scheduler::{
    Action, Event, JobPlan, ResumedJob, Scheduler, SchedulerConfig,
};
use harrow_coordinator::state::{Changes, Retention, StateStore};
use harrow_core::rpc::security::Token;
use harrow_core::task::{
    AttemptOutcome, InputReport, InputSpec, JobSpec, OutputFormat, Partitioner, SegmentInfo, Split,
};

const TASKS_PER_JOB: usize = 1_000;
const REDUCERS: u32 = 8;

fn plan(job: usize, maps: usize) -> Result<JobPlan> {
    let spec = JobSpec {
        name: "wordcount".into(),
        args: Default::default(),
        reducers: REDUCERS,
        storage: Default::default(),
        input: InputSpec::text(),
        output_format: OutputFormat::Text,
        plugin: None,
        partitioner: Partitioner::Hash,
        shuffle_key: Token::random()?,
    };
    let splits = (0..maps)
        .map(|i| Split {
            location: format!("/data/input-{i:05}.txt"),
            start: 0,
            end: 64 << 20,
            file_size: 64 << 20,
        })
        .collect();
    Ok(JobPlan {
        spec: Arc::new(spec),
        inputs: vec!["/data".into()],
        output: format!("/out/{job}"),
        splits,
        request_id: None,
    })
}

/// A scheduler holding `history` ended jobs and `live` jobs of
/// `TASKS_PER_JOB` maps, half of them done, on one worker.
fn build(history: usize, live: usize) -> Result<Scheduler> {
    let mut scheduler = Scheduler::new(SchedulerConfig::default());
    let mut now = 1_000;
    let mut step = |scheduler: &mut Scheduler, event: Event| {
        now += 1;
        scheduler.handle(event, now)
    };
    let registered = step(
        &mut scheduler,
        Event::RegisterWorker {
            shuffle_address: "10.0.0.1:7071".into(),
            slots: u32::MAX / 2,
            incarnation: 1,
        },
    );
    let [Action::WorkerRegistered { worker }] = registered[..] else {
        anyhow::bail!("registration answered {registered:?}");
    };
    for job in 0..history + live {
        let plan = plan(job, if job < history { 4 } else { TASKS_PER_JOB })?;
        let accepted = step(&mut scheduler, Event::SubmitJob { plan });
        let [Action::JobAccepted { job: id }] = accepted[..] else {
            anyhow::bail!("submission answered {accepted:?}");
        };
        if job < history {
            step(&mut scheduler, Event::CancelJob { job: id });
        }
    }
    // Half of every live job's maps run and succeed.
    let assigned = step(
        &mut scheduler,
        Event::RequestTasks {
            worker,
            free_slots: (live * TASKS_PER_JOB / 2) as u32,
        },
    );
    for action in assigned {
        let Action::Assign { assignment, .. } = action else {
            continue;
        };
        let segments = (0..REDUCERS)
            .map(|partition| SegmentInfo {
                partition,
                bytes: 1 << 20,
                records: 10_000,
                crc32c: 0,
            })
            .collect();
        let outcome = AttemptOutcome::Succeeded {
            segments,
            input: InputReport::default(),
        };
        let ended = Event::AttemptEnded {
            worker,
            attempt: assignment.attempt,
            counters: Default::default(),
            outcome,
        };
        step(&mut scheduler, ended);
    }
    Ok(scheduler)
}

/// Writes what `scheduler` holds, as the coordinator's persister would.
async fn write(store: &StateStore, scheduler: &Scheduler) -> Result<()> {
    let mut changes = Changes::default();
    for job in scheduler.jobs() {
        let summary = job_report(scheduler, job, false).into();
        changes.submitted(job, &summary);
        if job.state.is_terminal() {
            let full = job_report(scheduler, job, true).into();
            changes.ended(&full, Retention::default(), 2_000_000);
        } else {
            for task in job.tasks() {
                changes.task(task);
            }
        }
    }
    for worker in scheduler.workers() {
        changes.worker(worker);
    }
    store.write(changes).await.context("writing the state")
}

pub fn recovery(tasks: usize, history: usize) -> Result<()> {
    // Each live job leaves half its maps and all its reduces to do.
    let unfinished_per_job = TASKS_PER_JOB / 2 + REDUCERS as usize;
    let live = tasks.div_ceil(unfinished_per_job).max(1);
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let built = Instant::now();
    let scheduler = build(history, live)?;
    let unfinished: usize = scheduler
        .jobs()
        .filter(|j| !j.state.is_terminal())
        .flat_map(|j| j.tasks())
        .filter(|t| t.state.name() != "succeeded")
        .count();
    {
        let (store, _) = StateStore::open(dir.path(), Retention::default(), 1_000)?;
        runtime.block_on(write(&store, &scheduler))?;
    }
    let bytes = std::fs::metadata(dir.path().join("state.redb"))?.len();
    eprintln!(
        "state: {history} finished jobs, {live} running with {unfinished} unfinished tasks, {:.1} MiB, built in {:.1} s",
        bytes as f64 / (1 << 20) as f64,
        built.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let now = 3_000_000;
    let (store, restored) = StateStore::open(dir.path(), Retention::default(), now)?;
    let opened = started.elapsed();
    ensure!(
        restored.jobs.len() == live,
        "{} jobs resumed",
        restored.jobs.len()
    );
    let mut scheduler = Scheduler::new(SchedulerConfig::default());
    scheduler.start_ids_after(restored.jobs_used, restored.workers_used);
    let worker = restored.workers[0].id;
    let jobs: Vec<ResumedJob> = restored.jobs;
    scheduler.restore(restored.workers, jobs, now);
    let assigned = scheduler.handle(
        Event::RequestTasks {
            worker,
            free_slots: 1,
        },
        now,
    );
    let first = started.elapsed();
    ensure!(
        matches!(assigned[..], [Action::Assign { .. }]),
        "no task assigned: {assigned:?}"
    );
    drop(store);
    println!(
        "recovery: state dir opened and checked in {:.3} s, first task assigned {:.3} s after start",
        opened.as_secs_f64(),
        first.as_secs_f64()
    );
    Ok(())
}
