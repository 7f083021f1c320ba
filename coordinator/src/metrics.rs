//! `/metrics` (Prometheus text, in the OpenMetrics flavour) and `/healthz`
//! on the coordinator's HTTP listener (`--http-listen`).
//!
//! Every figure is read from the scheduler's state at scrape time, so the
//! metrics can never disagree with `harrow status`. The scheduler keeps
//! every job it has run, so sums over attempts only grow: they are exposed
//! as counters. Labels are phases, states and outcomes, never job ids, so
//! the series stay few whatever the cluster runs.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use harrow_core::ids::Phase;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

use crate::scheduler::{AttemptState, JobState, Scheduler, TaskState, Worker, phase_name};
use crate::service::Coordinator;

type Labels = Vec<(&'static str, &'static str)>;

const PHASES: [Phase; 2] = [Phase::Map, Phase::Reduce];

/// A registered family of gauges or counters, with every listed label set
/// present (0 when nothing has it), so dashboards see zeros, not gaps.
fn family<M>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    labels: impl IntoIterator<Item = Labels>,
) -> Family<Labels, M>
where
    M: Default,
    Family<Labels, M>: Metric + Clone,
{
    let family = Family::<Labels, M>::default();
    for set in labels {
        let _ = family.get_or_create(&set);
    }
    registry.register(name, help, family.clone());
    family
}

/// The metrics of `scheduler` in the Prometheus text format.
pub fn render(scheduler: &Scheduler) -> String {
    let mut registry = Registry::with_prefix("harrow");
    let jobs: Family<Labels, Gauge> = family(
        &mut registry,
        "jobs",
        "Jobs by state",
        JobState::NAMES.map(|s| vec![("state", s)]),
    );
    let by_phase = |states: &'static [&'static str]| {
        PHASES.iter().flat_map(move |p| {
            states
                .iter()
                .map(move |s| vec![("phase", phase_name(*p)), ("state", *s)])
        })
    };
    let tasks: Family<Labels, Gauge> = family(
        &mut registry,
        "tasks",
        "Tasks by phase and state",
        by_phase(&TaskState::NAMES),
    );
    let attempts: Family<Labels, Counter> = family(
        &mut registry,
        "attempts",
        "Task attempts by phase and state: failed attempts count toward the attempt limit; lost ones (worker died, fetch failure, handed back) and killed ones (backup lost, job ended) do not",
        by_phase(&AttemptState::NAMES),
    );
    let per_phase = |registry: &mut Registry, name, help| {
        family::<Counter>(
            registry,
            name,
            help,
            PHASES.map(|p| vec![("phase", phase_name(p))]),
        )
    };
    let bytes_in = per_phase(
        &mut registry,
        "input_bytes",
        "Bytes read by succeeded attempts",
    );
    let records_in = per_phase(
        &mut registry,
        "input_records",
        "Records read by succeeded attempts",
    );
    let bytes_out = per_phase(
        &mut registry,
        "output_bytes",
        "Bytes written by succeeded attempts",
    );
    let records_out = per_phase(
        &mut registry,
        "output_records",
        "Records written by succeeded attempts",
    );
    let spilled = Counter::<u64>::default();
    registry.register(
        "spilled_records",
        "Map output records spilled to disk past the memory budget, by succeeded attempts",
        spilled.clone(),
    );
    // 1 ms to about 65 s.
    let fetch = Histogram::new(exponential_buckets(0.001, 2.0, 17));
    registry.register(
        "shuffle_fetch_seconds",
        "Time succeeded reduce attempts spent fetching their segments",
        fetch.clone(),
    );
    let pending = Gauge::<i64>::default();
    registry.register(
        "pending_tasks",
        "Tasks waiting for a slot in jobs that are running (the queue)",
        pending.clone(),
    );
    let workers: Family<Labels, Gauge> = family(
        &mut registry,
        "workers",
        "Workers by state",
        Worker::SHOWN_STATES.map(|s| vec![("state", s)]),
    );
    let slots = Gauge::<i64>::default();
    registry.register("worker_slots", "Task slots of live workers", slots.clone());

    for job in scheduler.jobs() {
        jobs.get_or_create(&vec![("state", job.state.name())]).inc();
        let active = matches!(job.state, JobState::Queued | JobState::Running);
        for (phase, list) in [(Phase::Map, &job.maps), (Phase::Reduce, &job.reduces)] {
            let phase_label = phase_name(phase);
            for task in list {
                tasks
                    .get_or_create(&vec![("phase", phase_label), ("state", task.state.name())])
                    .inc();
                if active && task.state == TaskState::Pending {
                    pending.inc();
                }
                for attempt in &task.attempts {
                    attempts
                        .get_or_create(&vec![
                            ("phase", phase_label),
                            ("state", attempt.state.name()),
                        ])
                        .inc();
                    if attempt.state != AttemptState::Succeeded {
                        continue;
                    }
                    let c = &attempt.counters;
                    let labels = vec![("phase", phase_label)];
                    bytes_in.get_or_create(&labels).inc_by(c.bytes_in);
                    records_in.get_or_create(&labels).inc_by(c.records_in);
                    bytes_out.get_or_create(&labels).inc_by(c.bytes_out);
                    records_out.get_or_create(&labels).inc_by(c.records_out);
                    spilled.inc_by(c.spilled_records);
                    if phase == Phase::Reduce {
                        fetch.observe(c.fetch_ms as f64 / 1000.0);
                    }
                }
            }
        }
    }
    for worker in scheduler.workers() {
        workers
            .get_or_create(&vec![("state", worker.shown_state())])
            .inc();
    }
    slots.set(scheduler.live_slots() as i64);
    let mut text = String::new();
    encode(&mut text, &registry).expect("writing to a String cannot fail");
    text
}

/// Serves `/metrics` and `/healthz` on `listener` until `stop` completes.
pub fn serve(
    coordinator: Arc<Coordinator>,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = coordinator.metrics();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    )
                        .into_response()
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(%error, "HTTP server stopped");
        }
    });
}
