//! `harrow-bench`: macro benchmarks. Generates its data deterministically,
//! runs Harrow in local mode and a hand-written baseline in the same
//! process, checks they agree, and reports wall time, MB/s and the ratio.
//!
//! ```text
//! cargo run --release -p harrow-benches -- wordcount --size 1GiB
//! ```

mod zipf;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use clap::{Parser, Subcommand};
use harrow_coordinator::cli::parse_bytes;
use harrow_coordinator::client::Submission;
use harrow_coordinator::local::{LocalConfig, run_local};

#[derive(Debug, Parser)]
#[command(name = "harrow-bench")]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Debug, Subcommand)]
enum Workload {
    /// Word count over Zipf-distributed text (100k distinct words, fixed seed).
    Wordcount {
        /// Bytes of text to generate.
        #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
        size: u64,
        /// Where generated data is kept between runs.
        #[arg(long, default_value = "target/bench-data")]
        data_dir: PathBuf,
        /// Runs of each system; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, default_value = "64MiB", value_parser = parse_bytes)]
        split_size: u64,
    },
}

fn main() -> Result<()> {
    match Cli::parse().workload {
        Workload::Wordcount {
            size,
            data_dir,
            runs,
            split_size,
        } => wordcount(size, &data_dir, runs.max(1), split_size),
    }
}

fn wordcount(size: u64, data_dir: &Path, runs: usize, split_size: u64) -> Result<()> {
    let input = zipf::ensure_text(data_dir, size)?;
    let bytes = std::fs::metadata(&input)?.len();
    eprintln!("input: {} ({bytes} bytes)", input.display());
    let runtime = tokio::runtime::Runtime::new()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());

    let mut baseline_times = Vec::new();
    let mut harrow_times = Vec::new();
    let mut expected = (0, 0);
    for run in 0..runs {
        let start = Instant::now();
        expected = baseline_wordcount(&input)?;
        baseline_times.push(start.elapsed().as_secs_f64());

        let out = tempfile::tempdir()?;
        let output = out.path().join("out");
        let submission = Submission {
            reducers: cpus as u32,
            split_size_bytes: split_size,
            ..Submission::new(
                "wordcount",
                vec![input.display().to_string()],
                output.display().to_string(),
            )
        };
        let config = LocalConfig {
            workers: 1,
            slots_per_worker: cpus,
            work_dir: None,
        };
        let start = Instant::now();
        let report = runtime.block_on(run_local(config, submission, |_| {}))?;
        harrow_times.push(start.elapsed().as_secs_f64());
        ensure!(
            report.state == "succeeded",
            "harrow run {run} ended {}: {}",
            report.state,
            report.error
        );
        let got = count_output(&output)?;
        ensure!(
            got == expected,
            "harrow counted {got:?} (distinct, total), baseline {expected:?}"
        );
    }
    eprintln!(
        "both counted {} distinct words, {} in total",
        expected.0, expected.1
    );

    let baseline = median(&mut baseline_times);
    let harrow = median(&mut harrow_times);
    let mb = bytes as f64 / 1e6;
    println!(
        "{:<10} {:<34} {:>8} {:>9} {:>8}",
        "workload", "system", "wall s", "MB/s", "ratio"
    );
    println!(
        "{:<10} {:<34} {:>8.2} {:>9.0} {:>8.2}",
        "wordcount",
        "simple Rust (1 thread, std HashMap)",
        baseline,
        mb / baseline,
        1.0
    );
    println!(
        "{:<10} {:<34} {:>8.2} {:>9.0} {:>8.2}",
        "wordcount",
        "harrow run (local mode)",
        harrow,
        mb / harrow,
        harrow / baseline
    );
    Ok(())
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The simple single-process word count: read the file, split into words
/// (maximal runs of alphabetic characters), count in a `HashMap`.
fn baseline_wordcount(input: &Path) -> Result<(usize, u64)> {
    let text = std::fs::read(input)?;
    let text = String::from_utf8_lossy(&text);
    let mut counts: HashMap<&str, u64> = HashMap::new();
    let mut start = None;
    for (index, c) in text.char_indices() {
        match (c.is_alphabetic(), start) {
            (true, None) => start = Some(index),
            (false, Some(begin)) => {
                *counts.entry(&text[begin..index]).or_default() += 1;
                start = None;
            }
            _ => {}
        }
    }
    if let Some(begin) = start {
        *counts.entry(&text[begin..]).or_default() += 1;
    }
    Ok((counts.len(), counts.values().sum()))
}

/// (distinct words, total count) in Harrow's output.
fn count_output(dir: &Path) -> Result<(usize, u64)> {
    let mut distinct = 0;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("part-r-")
        {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            let (_, count) = line
                .rsplit_once('\t')
                .context("output line without a tab")?;
            distinct += 1;
            total += count.parse::<u64>()?;
        }
    }
    Ok((distinct, total))
}
