//! Local mode (`harrow run`): an in-process coordinator and workers talking
//! real gRPC on loopback, the same code paths as a cluster.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use harrow_core::rpc::security::{Connector, Token};

use crate::builtin_jobs;
use crate::client::{Client, Submission};
use harrow_coordinator::scheduler::SchedulerConfig;
use harrow_coordinator::server::{CoordinatorConfig, start_coordinator};
use harrow_core::report::JobReport;

/// How often the in-process workers heartbeat.
const LOCAL_HEARTBEAT_MS: u64 = 200;

#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub workers: usize,
    pub slots_per_worker: usize,
    /// Where workers keep map output; a fresh temporary directory if `None`.
    pub work_dir: Option<PathBuf>,
    /// The `harrow` binary, run as `harrow plugin-host` for job plugins.
    pub executable: PathBuf,
    /// Memory all workers' tasks may use together, split evenly.
    pub memory_budget: u64,
}

/// Runs one job to its end on an in-process cluster and returns its final
/// status; `on_change` sees every status change.
pub async fn run_local(
    config: LocalConfig,
    submission: Submission,
    on_change: impl FnMut(&JobReport),
) -> Result<JobReport> {
    let registry = builtin_jobs();
    // Fresh tokens for this run: other users of the machine cannot call
    // its loopback ports.
    let client_token = Token::random().context("drawing a client token")?;
    let worker_token = Token::random().context("drawing a worker token")?;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let scratch = tempfile::Builder::new()
        .prefix("harrow-run-")
        .tempdir()
        .context("creating a work dir")?;
    let work_root = config
        .work_dir
        .clone()
        .unwrap_or_else(|| scratch.path().to_path_buf());
    let coordinator = start_coordinator(
        CoordinatorConfig {
            listen: loopback,
            heartbeat_interval_ms: LOCAL_HEARTBEAT_MS,
            scheduler: SchedulerConfig::for_heartbeat_interval(LOCAL_HEARTBEAT_MS),
            plugin_dir: work_root.join("plugins"),
            executable: config.executable.clone(),
            client_token: Some(client_token.clone()),
            http_listen: None,
            worker_token: Some(worker_token.clone()),
            ..CoordinatorConfig::default()
        },
        registry.clone(),
    )
    .await
    .context("starting the local coordinator")?;

    let mut workers = Vec::with_capacity(config.workers);
    for index in 0..config.workers {
        let worker = harrow_worker::start_worker(
            harrow_worker::WorkerConfig {
                coordinator: coordinator.url(),
                listen: loopback,
                slots: config.slots_per_worker,
                work_dir: work_root.join(format!("worker-{index}")),
                executable: config.executable.clone(),
                memory_budget: config.memory_budget / config.workers.max(1) as u64,
                token: Some(worker_token.clone()),
                tls: None,
                advertise: None,
                health_listen: None,
                max_connections: harrow_core::rpc::limits::DEFAULT_MAX_CONNECTIONS,
            },
            registry.clone(),
        )
        .await
        .context("starting a local worker")?;
        workers.push(worker);
    }

    let result = async {
        let client = Client::connect(
            &coordinator.url(),
            &Connector::new(Some(&client_token), None),
        )
        .await?;
        let job_id = client.submit(submission).await?;
        client.watch(&job_id, on_change).await
    }
    .await;

    for worker in workers {
        worker.shutdown().await;
    }
    coordinator.shutdown().await;
    result
}
