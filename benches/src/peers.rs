//! Peer systems (DuckDB, Polars, Spark) as optional baselines: with `--peers`, each
//! runs `benches/peers/peers.py` in the virtual environment that
//! `benches/peers/setup.sh` creates, timed from the harness (the Python
//! interpreter's start and imports included) and checked like any baseline.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde::de::DeserializeOwned;

use crate::Produced;

const VENV_PYTHON: &str = "target/peers-venv/bin/python";
const SCRIPT: &str = "benches/peers/peers.py";

/// A peer baseline: its label and how to run it.
pub type Peer<T> = (String, Box<dyn Fn() -> Result<Produced<T>>>);

/// DuckDB, Polars and Spark (PySpark, local mode) on `workload` over
/// `input` when `wanted` and installed; a peer that is not (Spark without
/// a Java runtime) is skipped with a message saying how to install it.
pub fn peers<T: DeserializeOwned + 'static>(
    wanted: bool,
    workload: &str,
    input: &Path,
) -> Vec<Peer<T>> {
    if !wanted {
        return Vec::new();
    }
    let python = PathBuf::from(VENV_PYTHON);
    if !python.exists() {
        eprintln!("--peers: {VENV_PYTHON} is missing; run benches/peers/setup.sh first");
        return Vec::new();
    }
    ["duckdb", "polars", "pyspark"]
        .into_iter()
        .filter_map(|system| {
            let version = version(&python, system);
            let java = system != "pyspark" || Command::new("java").arg("-version").output().is_ok();
            if version.is_empty() || !java {
                eprintln!(
                    "--peers: skipping {system}: not installed{} (see benches/peers/setup.sh)",
                    if java { "" } else { ", or no java on the PATH" }
                );
                return None;
            }
            let label = format!("{system} {version} (peer)");
            let (workload, input, python) =
                (workload.to_string(), input.to_path_buf(), python.clone());
            let run: Box<dyn Fn() -> Result<Produced<T>>> =
                Box::new(move || run(&python, system, &workload, &input));
            Some((label, run))
        })
        .collect()
}

/// `peers` as baselines.
pub fn baselines<T>(peers: &[Peer<T>]) -> impl Iterator<Item = crate::Baseline<'_, T>> {
    peers
        .iter()
        .map(|(name, run)| (name.as_str(), run.as_ref() as _))
}

fn version(python: &Path, module: &str) -> String {
    Command::new(python)
        .args([
            "-c",
            &format!("import {module}; print({module}.__version__)"),
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn run<T: DeserializeOwned>(
    python: &Path,
    system: &str,
    workload: &str,
    input: &Path,
) -> Result<Produced<T>> {
    let output = crate::rss::run_child(
        Command::new(python)
            .arg(SCRIPT)
            .args([system, workload])
            .arg(input),
    )
    .with_context(|| format!("running {system}"))?;
    ensure!(
        output.status.success(),
        "{system} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("reading {system}'s answer"))?;
    Ok(Produced::Answer(answer))
}
