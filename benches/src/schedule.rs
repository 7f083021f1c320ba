//! `harrow-bench schedule`: the coordinator's scheduling throughput over
//! real gRPC, without and with a state dir, in the same run. Simulated
//! workers (each a connection of its own, one slot each) register,
//! heartbeat, ask for a task and report it done at once, taking the next
//! task in the report's reply as a worker does: a `teragen` job of `tasks`
//! map tasks (and its reduces, through the commit protocol) finishes
//! without any data. Reports completions per second and the p50 and p99
//! latency of an assignment: from the request or report that asked for a
//! task to the reply that carried it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use harrow_cli::builtin_jobs;
use harrow_cli::client::{Client, Submission};
use harrow_coordinator::server::{CoordinatorConfig, start_coordinator};
use harrow_coordinator::state::Retention;
use harrow_core::rpc::limits::{self, MAX_MESSAGE_BYTES};
use harrow_core::rpc::security::{AuthChannel, Connector};
use harrow_core::task::{AttemptCounters, AttemptOutcome, InputReport, SegmentInfo};
use harrow_core::wire;
use harrow_proto::v1 as pb;
use harrow_proto::v1::worker_service_client::WorkerServiceClient;
use harrow_proto::v1::worker_service_server::WorkerServiceServer;

mod transport;

const REDUCERS: u32 = 8;

struct Measured {
    tasks: usize,
    seconds: f64,
    /// Latencies of requests and reports that got a task, sorted.
    latencies: Vec<Duration>,
}

impl Measured {
    fn quantile(&self, q: f64) -> Duration {
        let index = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
        self.latencies.get(index).copied().unwrap_or_default()
    }

    fn line(&self, label: &str) -> String {
        format!(
            "{label:<22} {:>9.0} completions/s   assignment p50 {:>6.2} ms   p99 {:>6.2} ms",
            self.tasks as f64 / self.seconds,
            self.quantile(0.5).as_secs_f64() * 1e3,
            self.quantile(0.99).as_secs_f64() * 1e3
        )
    }
}

/// One simulated worker: takes a task at a time and reports it done.
async fn simulate(
    mut client: WorkerServiceClient<AuthChannel>,
    done: Arc<AtomicBool>,
) -> Result<Vec<Duration>> {
    let registered = client
        .register(pb::RegisterRequest {
            shuffle_address: "127.0.0.1:9".into(),
            slots: 1,
            incarnation: 1,
        })
        .await?
        .into_inner();
    let worker_id = registered.worker_id;
    let beating = {
        let (mut client, worker_id, done) = (client.clone(), worker_id.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let heartbeat = pb::HeartbeatRequest {
                    worker_id: worker_id.clone(),
                    incarnation: 1,
                    ..Default::default()
                };
                let _ = client.heartbeat(heartbeat).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let mut latencies = Vec::new();
    while !done.load(Ordering::Relaxed) {
        let mut asked = Instant::now();
        let mut assignments = client
            .request_task(pb::TaskRequest {
                worker_id: worker_id.clone(),
                free_slots: 1,
                wait_ms: 200,
            })
            .await?
            .into_inner()
            .assignments;
        // Each report offers the slot again, as a worker's does.
        while let Some(assignment) = assignments.pop() {
            latencies.push(asked.elapsed());
            let attempt = assignment.attempt_id.parse()?;
            let outcome = match assignment.task {
                Some(pb::task_assignment::Task::Map(_)) => AttemptOutcome::Succeeded {
                    segments: (0..REDUCERS)
                        .map(|partition| SegmentInfo {
                            partition,
                            ..Default::default()
                        })
                        .collect(),
                    input: InputReport::default(),
                },
                _ => {
                    let commit = pb::CommitRequest {
                        worker_id: worker_id.clone(),
                        attempt_id: assignment.attempt_id.clone(),
                    };
                    client.request_commit(commit).await?;
                    AttemptOutcome::Succeeded {
                        segments: Vec::new(),
                        input: InputReport::default(),
                    }
                }
            };
            let report = pb::AttemptReport {
                free_slots: 1,
                ..wire::attempt_report(
                    worker_id.clone(),
                    attempt,
                    AttemptCounters::default(),
                    outcome,
                )
            };
            asked = Instant::now();
            assignments = client
                .report_attempt(report)
                .await?
                .into_inner()
                .assignments;
        }
    }
    beating.abort();
    Ok(latencies)
}

async fn measure(
    workers: usize,
    tasks: usize,
    state_dir: Option<&std::path::Path>,
) -> Result<Measured> {
    let out = tempfile::tempdir()?;
    let config = CoordinatorConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        max_connections: workers + 64,
        plugin_dir: out.path().join("plugins"),
        state_dir: state_dir.map(|d| d.to_path_buf()),
        retention: Retention::default(),
        ..CoordinatorConfig::default()
    };
    let coordinator = start_coordinator(config, builtin_jobs())
        .await
        .context("starting the coordinator")?;
    let url = coordinator.url();
    let done = Arc::new(AtomicBool::new(false));
    let simulated = spawn_workers(&url, workers, &done).await?;
    let connector = Connector::new(None, None);
    let client = Client::connect(&url, &connector).await?;
    let output = out.path().join("out").to_string_lossy().into_owned();
    let mut submission = Submission::new("teragen", Vec::new(), output);
    submission.reducers = REDUCERS;
    submission.args = vec![
        ("rows".to_string(), tasks.to_string()),
        ("rows_per_task".to_string(), "1".to_string()),
    ];
    let started = Instant::now();
    let job = client.submit(submission).await?;
    let report = client.watch(&job, |_| {}).await?;
    let seconds = started.elapsed().as_secs_f64();
    ensure!(
        report.state == "succeeded",
        "the job ended {}: {}",
        report.state,
        report.error
    );
    let latencies = collect(simulated, &done).await?;
    coordinator.shutdown().await;
    Ok(Measured {
        tasks: tasks + REDUCERS as usize,
        seconds,
        latencies,
    })
}

type Simulated = Vec<tokio::task::JoinHandle<Result<Vec<Duration>>>>;

/// Connects `workers` simulated workers to the coordinator at `url`; they
/// work until `done`.
async fn spawn_workers(url: &str, workers: usize, done: &Arc<AtomicBool>) -> Result<Simulated> {
    let connector = Connector::new(None, None);
    let mut simulated = Vec::with_capacity(workers);
    for _ in 0..workers {
        let channel = connector.connect(url).await?;
        let client = WorkerServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        simulated.push(tokio::spawn(simulate(client, done.clone())));
    }
    Ok(simulated)
}

/// Stops the simulated workers; the latencies of their requests and reports
/// that got a task, sorted.
async fn collect(simulated: Simulated, done: &AtomicBool) -> Result<Vec<Duration>> {
    done.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for worker in simulated {
        latencies.extend(worker.await??);
    }
    latencies.sort();
    Ok(latencies)
}

/// The same workers against [`transport::NullCoordinator`].
async fn measure_transport(workers: usize, tasks: usize) -> Result<Measured> {
    let null = Arc::new(transport::NullCoordinator::new(tasks, REDUCERS as usize));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let service = WorkerServiceServer::from_arc(null.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        limits::bounded(tonic::transport::Server::builder())
            .add_service(service)
            .serve_with_incoming_shutdown(limits::incoming(listener, workers + 64), async {
                let _ = stopped.await;
            }),
    );
    let done = Arc::new(AtomicBool::new(false));
    let simulated = spawn_workers(&url, workers, &done).await?;
    let started = Instant::now();
    null.open();
    null.finished().await;
    let seconds = started.elapsed().as_secs_f64();
    let latencies = collect(simulated, &done).await?;
    let _ = stop.send(());
    server.await??;
    Ok(Measured {
        tasks: tasks + REDUCERS as usize,
        seconds,
        latencies,
    })
}

pub fn schedule(workers: usize, tasks: usize, runs: usize) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    eprintln!("{workers} simulated workers, {tasks} map tasks and {REDUCERS} reduces per job");
    for run in 1..=runs.max(1) {
        let ceiling = runtime.block_on(measure_transport(workers, tasks))?;
        let memory = runtime.block_on(measure(workers, tasks, None))?;
        let dir = tempfile::tempdir()?;
        let durable = runtime.block_on(measure(workers, tasks, Some(dir.path())))?;
        println!("run {run}");
        println!("  {}", ceiling.line("transport only"));
        println!("  {}", memory.line("in memory"));
        println!("  {}", durable.line("with --state-dir"));
        println!(
            "  in memory: {:.0}% of the transport's completions/s",
            ceiling.seconds / memory.seconds * 100.0
        );
        println!(
            "  --state-dir: {:.1}% fewer completions/s",
            (1.0 - memory.seconds / durable.seconds) * 100.0
        );
    }
    Ok(())
}
