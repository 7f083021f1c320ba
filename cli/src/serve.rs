//! The long-running commands: `harrow coordinator`, `harrow worker` and
//! `harrow run` (both in one process), each started from its flags.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use harrow_coordinator::server::{CoordinatorConfig, start_coordinator};
use harrow_coordinator::state::Retention;
use harrow_core::rpc::security::{Token, check_listen};
use harrow_worker::memory::default_budget;

use crate::args::{CoordinatorArgs, Insecure, RunArgs, WorkerArgs};
use crate::builtin_jobs;
use crate::local::{LocalConfig, run_local};
use crate::progress::{Progress, summary};
use crate::show::job_exit;

/// `harrow run`: the job on an in-process coordinator and workers.
pub async fn run(args: RunArgs) -> Result<ExitCode> {
    anyhow::ensure!(args.workers > 0, "--workers must be at least 1");
    let config = LocalConfig {
        workers: args.workers,
        slots_per_worker: args.slots.unwrap_or_else(cpus).max(1),
        work_dir: None,
        executable: executable()?,
        memory_budget: args.memory_budget.unwrap_or_else(default_budget),
    };
    let mut progress = Progress::new();
    let report = run_local(config, args.job.submission(), |report| {
        progress.update(report)
    })
    .await?;
    progress.finish();
    println!("{}", summary(&report));
    Ok(job_exit(&report))
}

/// `harrow coordinator`: serves until SIGTERM or SIGINT.
pub async fn coordinator(args: CoordinatorArgs) -> Result<ExitCode> {
    let CoordinatorArgs {
        listen,
        faults,
        heartbeat_interval_ms,
        plugin_dir,
        token_file,
        worker_token_file,
        viewer_token_file,
        tls,
        insecure,
        listener,
        http_listen,
        http_hosts,
        state,
    } = args;
    let (client_token, worker_token) =
        coordinator_tokens(token_file.as_deref(), worker_token_file.as_deref())?;
    let viewer_token = viewer_token(viewer_token_file.as_deref(), [&client_token, &worker_token])?;
    guard_listen(listen, client_token.is_some(), &insecure)?;
    if let Some(http) = http_listen {
        guard_listen(http, client_token.is_some(), &insecure)?;
    }
    anyhow::ensure!(faults.max_attempts > 0, "--max-attempts must be at least 1");
    anyhow::ensure!(
        faults.max_fetch_failures > 0,
        "--max-fetch-failures must be at least 1"
    );
    anyhow::ensure!(
        faults.worker_timeout.0 > heartbeat_interval_ms,
        "--worker-timeout must be longer than --heartbeat-interval-ms"
    );
    anyhow::ensure!(state.retain_jobs > 0, "--retain-jobs must be at least 1");
    if state.state_dir.is_none() {
        tracing::warn!(
            "no --state-dir: jobs and their history will not survive a restart of the coordinator"
        );
    }
    // Uploaded plugins live with the state they belong to.
    let plugin_dir = plugin_dir
        .or_else(|| state.state_dir.as_ref().map(|dir| dir.join("plugins")))
        .unwrap_or(CoordinatorConfig::default().plugin_dir);
    let config = CoordinatorConfig {
        listen,
        scheduler: faults.scheduler_config(heartbeat_interval_ms),
        heartbeat_interval_ms,
        plugin_dir,
        executable: executable()?,
        client_token,
        worker_token,
        tls: tls.load()?,
        health_listen: listener.health_listen,
        http_listen,
        viewer_token,
        http_hosts,
        max_connections: listener.max_connections,
        state_dir: state.state_dir,
        retention: Retention {
            jobs: state.retain_jobs,
            for_ms: state.retain_for.0,
        },
    };
    let coordinator = start_coordinator(config, builtin_jobs())
        .await
        .with_context(|| format!("starting the coordinator on {listen}"))?;
    if let Some(health) = coordinator.health_address {
        tracing::info!(%health, "serving gRPC health in plaintext");
    }
    if let Some(http) = coordinator.http_address {
        tracing::info!(%http, "serving /metrics and /healthz");
    }
    // Tests and scripts read the address from this line.
    println!("harrow coordinator listening on {}", coordinator.address);
    let mut signal_error = None;
    coordinator
        .serve_until(async {
            if let Err(error) = shutdown_signal().await {
                signal_error = Some(error);
            }
        })
        .await
        .context("coordinator stopped")?;
    match signal_error {
        Some(error) => Err(error).context("waiting for SIGTERM or SIGINT"),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// `harrow worker`: serves until SIGTERM or SIGINT, then drains.
pub async fn worker(args: WorkerArgs) -> Result<ExitCode> {
    let WorkerArgs {
        coordinator,
        slots,
        listen,
        work_dir,
        memory_budget,
        grace_period,
        token_file,
        tls,
        insecure,
        advertise,
        listener,
    } = args;
    let token = read_token(token_file.as_deref())?;
    guard_listen(listen, token.is_some(), &insecure)?;
    // A scratch dir only when none is given: removed on a clean exit, and a
    // killed worker leaves nothing in the temp dir when the user chose one.
    let scratch;
    let work_dir = match work_dir {
        Some(dir) => dir,
        None => {
            scratch = tempfile::Builder::new()
                .prefix("harrow-worker-")
                .tempdir()?;
            scratch.path().to_path_buf()
        }
    };
    let config = harrow_worker::WorkerConfig {
        coordinator,
        listen,
        slots: slots.unwrap_or_else(cpus).max(1),
        work_dir,
        executable: executable()?,
        memory_budget: memory_budget.unwrap_or_else(default_budget),
        token,
        tls: tls.load()?,
        advertise,
        health_listen: listener.health_listen,
        max_connections: listener.max_connections,
    };
    let worker = harrow_worker::start_worker(config, builtin_jobs()).await?;
    if let Some(health) = worker.health_address {
        tracing::info!(%health, "serving gRPC health in plaintext");
    }
    // Tests and scripts read the id and the address from this line.
    if worker.advertised == worker.shuffle_address.to_string() {
        println!(
            "harrow worker {} serving shuffle on {}",
            worker.worker_id, worker.shuffle_address
        );
    } else {
        println!(
            "harrow worker {} serving shuffle on {} as {}",
            worker.worker_id, worker.shuffle_address, worker.advertised
        );
    }
    shutdown_signal().await?;
    worker.drain(Duration::from_millis(grace_period)).await;
    Ok(ExitCode::SUCCESS)
}

/// This binary, which workers run as `harrow plugin-host`.
pub fn executable() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the harrow binary's own path")
}

pub fn read_token(path: Option<&Path>) -> Result<Option<Token>> {
    Ok(path.map(Token::from_file).transpose()?)
}

/// The coordinator's two tokens: both or neither, and not the same.
fn coordinator_tokens(
    client: Option<&Path>,
    worker: Option<&Path>,
) -> Result<(Option<Token>, Option<Token>)> {
    let (client, worker) = (read_token(client)?, read_token(worker)?);
    match (&client, &worker) {
        (Some(_), None) => anyhow::bail!(
            "--token-file needs --worker-token-file: workers authenticate with a token of their own"
        ),
        (None, Some(_)) => anyhow::bail!(
            "--worker-token-file needs --token-file: clients must authenticate as well"
        ),
        (Some(c), Some(w)) if c == w => anyhow::bail!(
            "--token-file and --worker-token-file hold the same token; a worker's token must not let it submit jobs"
        ),
        _ => Ok((client, worker)),
    }
}

/// The viewer token, which needs the client token and must differ from
/// the other two.
fn viewer_token(path: Option<&Path>, others: [&Option<Token>; 2]) -> Result<Option<Token>> {
    let viewer = read_token(path)?;
    if let Some(viewer) = &viewer {
        anyhow::ensure!(
            others[0].is_some(),
            "--viewer-token-file needs --token-file: without tokens the API is open to all who reach it"
        );
        anyhow::ensure!(
            others.iter().all(|other| other.as_ref() != Some(viewer)),
            "--viewer-token-file holds the client or worker token; a viewer's token must only read"
        );
    }
    Ok(viewer)
}

/// Refuses an exposed listener without a token unless --insecure says so,
/// and then says loudly what that means.
fn guard_listen(listen: std::net::SocketAddr, token: bool, insecure: &Insecure) -> Result<()> {
    check_listen(listen, token, insecure.insecure)?;
    if insecure.insecure && !token && !listen.ip().is_loopback() {
        tracing::warn!(
            %listen,
            "--insecure: serving without authentication; anyone who can reach this address can run jobs and code on the cluster"
        );
    }
    Ok(())
}

/// SIGTERM (Kubernetes, systemd) or SIGINT (Ctrl-C).
async fn shutdown_signal() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => Ok(()),
        interrupted = tokio::signal::ctrl_c() => interrupted,
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
