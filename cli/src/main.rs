//! The `harrow` binary: parses the command line and runs the subcommand.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use harrow_cli::args::{Cli, Command, Insecure, JobOptions, Target};
use harrow_cli::builtin_jobs;
use harrow_cli::client::{Client, Submission};
use harrow_cli::local::{LocalConfig, run_local};
use harrow_cli::progress::{Progress, summary};
use harrow_coordinator::report::JobReport;
use harrow_coordinator::server::{CoordinatorConfig, start_coordinator};
use harrow_core::security::{Connector, Token, check_listen};

fn main() -> ExitCode {
    harrow_worker::memory::limit_malloc_arenas();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HARROW_LOG")
                .unwrap_or_else(|_| default_log_filter(&cli.command).into()),
        )
        .with_writer(std::io::stderr)
        // Colors for a terminal, plain text for a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Servers log what they do; client commands only warnings.
fn default_log_filter(command: &Command) -> &'static str {
    match command {
        Command::Coordinator { .. } | Command::Worker { .. } | Command::PluginHost { .. } => "info",
        _ => "warn",
    }
}

fn submission(job: JobOptions) -> Submission {
    Submission {
        job_name: job.job,
        inputs: job.inputs.iter().map(|i| resolve_local(i)).collect(),
        output: resolve_local(&job.output),
        reducers: job.reducers,
        split_size_bytes: job.split_size.bytes(),
        args: job.args,
        storage_options: job.storage_options,
        input_format: job.input_format,
        schema: job.schema,
        csv_delimiter: job.csv_delimiter,
        skip_bad_records: job.skip_bad_records,
        output_format: job.output_format,
        plugin: job
            .plugin
            .map(|path| std::path::absolute(&path).unwrap_or(path)),
    }
}

/// This binary, which workers run as `harrow plugin-host`.
fn executable() -> Result<std::path::PathBuf> {
    std::env::current_exe().context("cannot find the harrow binary's own path")
}

/// Local paths are relative to where the user runs the command, not to
/// the coordinator's working directory: send them absolute.
fn resolve_local(location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    std::path::absolute(location).map_or_else(|_| location.to_string(), |p| p.display().to_string())
}

/// A client of the coordinator `target` names, with its token if given.
async fn connect(target: &Target) -> Result<Client> {
    let token = read_token(target.token_file.as_deref())?;
    let connector = Connector::new(token.as_ref(), target.tls.load()?);
    Client::connect(&target.coordinator, &connector).await
}

fn read_token(path: Option<&std::path::Path>) -> Result<Option<Token>> {
    Ok(path.map(Token::from_file).transpose()?)
}

/// The coordinator's two tokens: both or neither, and not the same.
fn coordinator_tokens(
    client: Option<&std::path::Path>,
    worker: Option<&std::path::Path>,
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

/// Exit code of a finished job: 0 only for success.
fn job_exit(report: &JobReport) -> ExitCode {
    if report.state == "succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run {
            job,
            workers,
            slots,
            memory_budget,
        } => {
            anyhow::ensure!(workers > 0, "--workers must be at least 1");
            let config = LocalConfig {
                workers,
                slots_per_worker: slots.unwrap_or_else(cpus).max(1),
                work_dir: None,
                executable: executable()?,
                memory_budget: memory_budget.unwrap_or_else(harrow_worker::memory::default_budget),
            };
            let mut progress = Progress::new();
            let report =
                run_local(config, submission(job), |report| progress.update(report)).await?;
            progress.finish();
            println!("{}", summary(&report));
            Ok(job_exit(&report))
        }
        Command::Coordinator {
            listen,
            faults,
            heartbeat_interval_ms,
            plugin_dir,
            token_file,
            worker_token_file,
            tls,
            insecure,
            listener,
            http_listen,
        } => {
            let (client_token, worker_token) =
                coordinator_tokens(token_file.as_deref(), worker_token_file.as_deref())?;
            guard_listen(listen, client_token.is_some(), &insecure)?;
            anyhow::ensure!(faults.max_attempts > 0, "--max-attempts must be at least 1");
            anyhow::ensure!(
                faults.max_fetch_failures > 0,
                "--max-fetch-failures must be at least 1"
            );
            anyhow::ensure!(
                faults.worker_timeout > heartbeat_interval_ms,
                "--worker-timeout must be longer than --heartbeat-interval-ms"
            );
            let config = CoordinatorConfig {
                listen,
                scheduler: faults.scheduler_config(heartbeat_interval_ms),
                heartbeat_interval_ms,
                plugin_dir: plugin_dir.unwrap_or(CoordinatorConfig::default().plugin_dir),
                executable: executable()?,
                client_token,
                worker_token,
                tls: tls.load()?,
                health_listen: listener.health_listen,
                http_listen,
                max_connections: listener.max_connections,
            };
            let coordinator = start_coordinator(config, builtin_jobs())
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            if let Some(health) = coordinator.health_address {
                tracing::info!(%health, "serving gRPC health in plaintext");
            }
            if let Some(http) = coordinator.http_address {
                tracing::info!(%http, "serving /metrics and /healthz");
            }
            // Tests and scripts read the address from this line.
            println!("harrow coordinator listening on {}", coordinator.address);
            tokio::select! {
                served = coordinator.wait() => served.context("coordinator stopped")?,
                stopped = shutdown_signal() => stopped?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker {
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
        } => {
            let token = read_token(token_file.as_deref())?;
            guard_listen(listen, token.is_some(), &insecure)?;
            let scratch = tempfile::Builder::new()
                .prefix("harrow-worker-")
                .tempdir()?;
            let work_dir = work_dir.unwrap_or_else(|| scratch.path().to_path_buf());
            let config = harrow_worker::WorkerConfig {
                coordinator,
                listen,
                slots: slots.unwrap_or_else(cpus).max(1),
                work_dir,
                executable: executable()?,
                memory_budget: memory_budget.unwrap_or_else(harrow_worker::memory::default_budget),
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
            worker
                .drain(std::time::Duration::from_millis(grace_period))
                .await;
            Ok(ExitCode::SUCCESS)
        }
        Command::PluginHost { library, socket } => {
            harrow_worker::plugin::run_plugin_host(&library, socket.as_deref())
                .context("plugin host")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::New { path, sdk } => {
            let sdk = sdk.unwrap_or_else(harrow_cli::scaffold::default_sdk_path);
            harrow_cli::scaffold::create(&path, &sdk)?;
            println!(
                "created {}: cd {} && cargo test && cargo build --release",
                path.display(),
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Submit { job, wait, target } => {
            let client = connect(&target).await?;
            let job_id = client.submit(submission(job)).await?;
            println!("{job_id}");
            if !wait {
                return Ok(ExitCode::SUCCESS);
            }
            let mut progress = Progress::new();
            let report = client
                .watch(&job_id, |report| progress.update(report))
                .await?;
            progress.finish();
            eprintln!("{}", summary(&report));
            Ok(job_exit(&report))
        }
        Command::Status {
            job_id,
            json,
            follow: true,
            target,
        } => {
            let client = connect(&target).await?;
            client
                .follow(&job_id, json, |report| {
                    if json {
                        match serde_json::to_string(report) {
                            Ok(line) => println!("{line}"),
                            Err(error) => eprintln!("error: {error}"),
                        }
                    } else {
                        print_status(report);
                        println!();
                    }
                })
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status {
            job_id,
            json,
            follow: false,
            target,
        } => {
            let client = connect(&target).await?;
            let report = client.status(&job_id, json).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_status(&report);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs { json, target } => {
            let client = connect(&target).await?;
            let jobs = client.jobs().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                println!(
                    "{:<12} {:<16} {:<11} {:>9} {:>9}",
                    "JOB", "NAME", "STATE", "MAPS", "REDUCES"
                );
                for job in jobs {
                    println!(
                        "{:<12} {:<16} {:<11} {:>9} {:>9}",
                        job.job_id,
                        job.job_name,
                        job.state,
                        format!("{}/{}", job.map.succeeded, job.map.total),
                        format!("{}/{}", job.reduce.succeeded, job.reduce.total)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Workers { json, target } => {
            let client = connect(&target).await?;
            let workers = client.workers().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&workers)?);
            } else {
                println!(
                    "{:<12} {:<9} {:<22} {:>5} {:>8} {:>15}",
                    "WORKER", "STATE", "ADDRESS", "SLOTS", "RUNNING", "HEARTBEAT_MS"
                );
                for w in workers {
                    println!(
                        "{:<12} {:<9} {:<22} {:>5} {:>8} {:>15}",
                        w.worker_id,
                        w.state,
                        w.address,
                        w.slots,
                        w.running_attempts,
                        w.last_heartbeat_ms
                    );
                    if !w.reason.is_empty() && w.state != "dead" {
                        println!("  {}", w.reason);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel { job_id, target } => {
            let client = connect(&target).await?;
            let report = client.cancel(&job_id).await?;
            println!("{} {}", report.job_id, report.state);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_status(report: &JobReport) {
    println!("job:     {} ({})", report.job_id, report.job_name);
    println!("state:   {}", report.state);
    if !report.error.is_empty() {
        println!("error:   {}", report.error);
    }
    if report.inputs.is_empty() {
        println!("input:   generated by the job");
    } else {
        println!(
            "input:   {} ({})",
            report.inputs.join(" "),
            report.input_format
        );
    }
    if report.input_format != "text" {
        println!("schema:  {}", report.input_columns.join(", "));
    }
    println!("output:  {} ({})", report.output, report.output_format);
    if let Some(plugin) = &report.plugin {
        println!("plugin:  {} (sha256 {})", plugin.file_name, plugin.sha256);
    }
    if !report.slow_workers.is_empty() {
        println!(
            "slow:    {} (no new tasks until they catch up; `harrow workers` says why)",
            report.slow_workers.join(", ")
        );
    }
    if !report.suspect_workers.is_empty() {
        println!(
            "suspect: {} (their map output is re-run unless they answer)",
            report.suspect_workers.join(", ")
        );
    }
    for (name, phase) in [("map", &report.map), ("reduce", &report.reduce)] {
        println!(
            "{name:<8} {}/{} succeeded, {} running, {} pending, {} failed",
            phase.succeeded, phase.total, phase.running, phase.pending, phase.failed
        );
    }
    println!(
        "records: {} in ({} bytes), {} out in {} files",
        report.input_records, report.input_bytes, report.output_records, report.output_files
    );
    if report.spilled_records > 0 {
        println!(
            "spilled: {} map output records (past the memory budget)",
            report.spilled_records
        );
    }
    let bad = &report.bad_records;
    if bad.skipped > 0 || bad.limit > 0 {
        println!(
            "bad records: {} skipped (--skip-bad-records {})",
            bad.skipped, bad.limit
        );
        for record in &bad.samples {
            println!(
                "  {} at byte {}: {}",
                record.location, record.offset, record.reason
            );
        }
        if bad.skipped > bad.samples.len() as u64 {
            println!("  ... and {} more", bad.skipped - bad.samples.len() as u64);
        }
    }
    if !report.counters.is_empty() {
        println!("counters:");
        for (name, value) in &report.counters {
            println!("  {name}: {value}");
        }
    }
    let a = &report.attempts;
    println!(
        "attempts: {} ({} running, {} succeeded, {} failed, {} lost, {} killed)",
        a.total, a.running, a.succeeded, a.failed, a.lost, a.killed
    );
    let f = &report.faults;
    println!(
        "faults:  max {} failed attempts per task; worker timeout {} ms, suspect timeout {} ms, stall timeout {} ms, no-worker timeout {} ms",
        f.max_attempts,
        f.worker_timeout_ms,
        f.suspect_timeout_ms,
        f.stall_timeout_ms,
        f.no_worker_timeout_ms
    );
}
