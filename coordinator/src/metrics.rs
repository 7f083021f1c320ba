//! `/metrics` (Prometheus text, in the OpenMetrics flavour) and `/healthz`
//! on the coordinator's HTTP listener (`--http-listen`).
//!
//! Every figure is read from the scheduler's state at scrape time, so the
//! metrics can never disagree with `harrow status`: its tally of the jobs
//! it holds plus those it let go of (`Scheduler::tally`), so sums over
//! attempts only grow and are exposed as counters. Labels are phases, states and outcomes, never job ids, so
//! the series stay few whatever the cluster runs.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use harrow_core::ids::Phase;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Metric, Registry};

use crate::scheduler::tally::{FETCH_BUCKETS, FetchTimes};
use crate::scheduler::{AttemptState, JobState, Scheduler, TaskState, Worker, phase_name};
use crate::service::Coordinator;
use crate::service::api::HttpAccess;

type Labels = Vec<(&'static str, &'static str)>;

const PHASES: [Phase; 2] = [Phase::Map, Phase::Reduce];

/// Reduce fetch times as an OpenMetrics histogram, from the tally's
/// bucket counts (the jobs the scheduler let go of included).
#[derive(Debug)]
struct FetchHistogram(FetchTimes);

impl TypedMetric for FetchHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for FetchHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let bounds = FETCH_BUCKETS.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds.zip(self.0.counts).collect();
        let times = &self.0;
        encoder.encode_histogram::<NoLabelSet>(times.sum_seconds, times.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

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
    let tally = scheduler.tally();
    registry.register(
        "shuffle_fetch_seconds",
        "Time succeeded reduce attempts spent fetching their segments",
        FetchHistogram(tally.fetch.clone()),
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

    for (state, n) in &tally.jobs {
        jobs.get_or_create(&vec![("state", *state)]).set(*n as i64);
    }
    for ((phase, state), n) in &tally.tasks {
        let labels = vec![("phase", phase_name(*phase)), ("state", *state)];
        tasks.get_or_create(&labels).set(*n as i64);
    }
    for ((phase, state), n) in &tally.attempts {
        let labels = vec![("phase", phase_name(*phase)), ("state", *state)];
        attempts.get_or_create(&labels).inc_by(*n);
    }
    for (phase, io) in &tally.io {
        let labels = vec![("phase", phase_name(*phase))];
        bytes_in.get_or_create(&labels).inc_by(io.bytes_in);
        records_in.get_or_create(&labels).inc_by(io.records_in);
        bytes_out.get_or_create(&labels).inc_by(io.bytes_out);
        records_out.get_or_create(&labels).inc_by(io.records_out);
    }
    spilled.inc_by(tally.spilled_records);
    pending.set(tally.pending_tasks as i64);
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

/// Serves `/metrics`, `/healthz` (both open), the JSON API and the web UI
/// (behind `access`) on `listener`, over HTTPS with `tls`, until `stop`
/// completes.
pub fn serve(
    coordinator: Arc<Coordinator>,
    access: HttpAccess,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let access = Arc::new(access);
    let api = crate::service::api::router(coordinator.clone(), access.clone());
    let ui = crate::service::ui::router(coordinator.clone(), access);
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
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(api)
        .merge(ui);
    match tls {
        Some(config) => {
            let listener = crate::https::TlsListener::new(listener, config)?;
            let serving = axum::serve(listener, app).with_graceful_shutdown(stop);
            tokio::spawn(async move { log_stop(serving.await) });
        }
        None => {
            let serving = axum::serve(listener, app).with_graceful_shutdown(stop);
            tokio::spawn(async move { log_stop(serving.await) });
        }
    }
    Ok(())
}

fn log_stop(served: std::io::Result<()>) {
    if let Err(error) = served {
        tracing::error!(%error, "HTTP server stopped");
    }
}
