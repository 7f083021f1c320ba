//! The `harrow` binary: parses the command line and runs the subcommand.

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use harrow_cli::args::{Cli, Command, Target};
use harrow_cli::client::Client;
use harrow_cli::progress::{Progress, summary};
use harrow_cli::serve::read_token;
use harrow_cli::show::{job_exit, print_jobs, print_status, print_workers};
use harrow_cli::{out, scaffold, serve};
use harrow_core::rpc::security::Connector;

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

/// A client of the coordinator `target` names, with its token if given.
async fn connect(target: &Target) -> Result<Client> {
    let token = read_token(target.token_file.as_deref())?;
    let connector = Connector::new(token.as_ref(), target.tls.load()?);
    Client::connect(&target.coordinator, &connector).await
}

async fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run(args) => serve::run(args).await,
        Command::Coordinator(args) => serve::coordinator(args).await,
        Command::Worker(args) => serve::worker(args).await,
        Command::PluginHost { library, socket } => {
            harrow_plugin::run_plugin_host(&library, socket.as_deref())
                .map_err(|e| anyhow::Error::new(e).context("plugin host"))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::New { path, sdk } => {
            let sdk = sdk.unwrap_or_else(scaffold::default_sdk_path);
            scaffold::create(&path, &sdk)?;
            out!(
                "created {}: cd {} && cargo test && cargo build --release",
                path.display(),
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Submit { job, wait, target } => {
            let client = connect(&target).await?;
            let job_id = client.submit(job.submission()).await?;
            out!("{job_id}");
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
                            Ok(line) => out!("{line}"),
                            Err(error) => eprintln!("error: {error}"),
                        }
                    } else {
                        print_status(report);
                        out!();
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
                out!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_status(&report);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs { json, target } => {
            let jobs = connect(&target).await?.jobs().await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                print_jobs(&jobs);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Workers { json, target } => {
            let workers = connect(&target).await?.workers().await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&workers)?);
            } else {
                print_workers(&workers);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel { job_id, target } => {
            let client = connect(&target).await?;
            let report = client.cancel(&job_id).await?;
            out!("{} {}", report.job_id, report.state);
            Ok(ExitCode::SUCCESS)
        }
    }
}
