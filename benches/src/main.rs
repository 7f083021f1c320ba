//! `harrow-bench`: macro benchmarks. Generates its data deterministically,
//! runs Harrow in local mode and a hand-written baseline in the same
//! process, checks they agree, and reports wall time, MB/s and the ratio.
//!
//! ```text
//! cargo run --release -p harrow-benches -- wordcount --size 1GiB
//! cargo run --release -p harrow-benches -- aggregate --size 512MiB
//! cargo run --release -p harrow-benches -- plugin --size 256MiB
//! cargo run --release -p harrow-benches -- terasort --size 1GiB
//! cargo run --release -p harrow-benches -- parquet --size 1GiB
//! cargo run --release -p harrow-benches -- recovery --tasks 10000 --history 1000
//! cargo run --release -p harrow-benches -- schedule --workers 1000 --tasks 100000
//! cargo run --release -p harrow-benches -- ui --tasks 100000
//! ```

mod group_by;
mod peers;
mod plugin;
mod recovery;
mod rss;
mod schedule;
mod table;
mod terasort;
mod tuned;
mod ui;
mod zipf;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use clap::{Args, Parser, Subcommand};
use harrow_cli::client::Submission;
use harrow_cli::local::{LocalConfig, run_local};
use harrow_cli::values::{SplitSize, parse_bytes, parse_split_size};

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
        #[command(flatten)]
        options: Options,
    },
    /// Count, sum, min and max of an integer column per key over a CSV
    /// (Zipf-drawn keys from 100k words, fixed seed): `aggregate`.
    Aggregate {
        /// Bytes of CSV to generate (about).
        #[arg(long, default_value = "512MiB", value_parser = parse_bytes)]
        size: u64,
        #[command(flatten)]
        options: Options,
    },
    /// Sort 100-byte records by their 10-byte key (teragen's records):
    /// `terasort`, against a hand-written sort and GNU sort when present.
    Terasort {
        /// Bytes of records to generate.
        #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
        size: u64,
        #[command(flatten)]
        options: Options,
    },
    /// Count, sum, min and max per key over a Parquet table (about 1M
    /// int64 keys, 80M rows per GiB): `aggregate`, against a hand-written
    /// parallel Parquet group-by.
    Parquet {
        /// Sizes the table: one row per 13 bytes.
        #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
        size: u64,
        #[command(flatten)]
        options: Options,
    },
    /// A coordinator's restart from its state dir: time from opening it to
    /// the first task assigned.
    Recovery {
        /// Unfinished tasks to resume (jobs of 1,000 maps, half done).
        #[arg(long, default_value_t = 10_000)]
        tasks: usize,
        /// Finished jobs in the history.
        #[arg(long, default_value_t = 1_000)]
        history: usize,
    },
    /// The coordinator's scheduling throughput over real gRPC, in memory
    /// and with a state dir: simulated workers that finish each task at
    /// once.
    Schedule {
        #[arg(long, default_value_t = 1_000)]
        workers: usize,
        /// Map tasks of the job.
        #[arg(long, default_value_t = 100_000)]
        tasks: usize,
        /// Runs of each setting.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Rendering a job's web page from a synthetic finished job, against
    /// serializing its report to JSON.
    Ui {
        /// Map tasks of the job.
        #[arg(long, default_value_t = 100_000)]
        tasks: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Word count built in (in-process) against the same crate built as a
    /// plugin (run in a plugin host child process): the plugin path's cost.
    Plugin {
        /// Bytes of text to generate.
        #[arg(long, default_value = "256MiB", value_parser = parse_bytes)]
        size: u64,
        #[command(flatten)]
        options: Options,
    },
}

/// What every workload takes.
#[derive(Debug, Args)]
struct Options {
    /// Where generated data is kept between runs.
    #[arg(long, default_value = "target/bench-data")]
    data_dir: PathBuf,
    /// Runs of each system; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Bytes per map split, or auto (the coordinator's choice).
    #[arg(long, default_value = "auto", value_parser = parse_split_size)]
    split_size: SplitSize,
    /// Harrow's memory budget (default: `harrow run`'s, half the memory).
    #[arg(long, value_parser = parse_bytes)]
    memory_budget: Option<u64>,
    /// Also run DuckDB, Polars and Spark where the workload has them
    /// (wordcount, aggregate, parquet), from the environment
    /// `benches/peers/setup.sh` makes.
    #[arg(long)]
    peers: bool,
}

/// A workload: its size and the options.
type WorkloadFn = fn(u64, &Options) -> Result<()>;

fn main() -> Result<()> {
    // As the harrow binary does; the baselines in this process share it.
    harrow_worker::memory::limit_malloc_arenas();
    let (workload, size, o): (WorkloadFn, _, _) = match Cli::parse().workload {
        Workload::Recovery { tasks, history } => return recovery::recovery(tasks, history),
        Workload::Schedule {
            workers,
            tasks,
            runs,
        } => return schedule::schedule(workers, tasks, runs),
        Workload::Ui { tasks, runs } => return ui::ui(tasks, runs),
        Workload::Wordcount { size, options } => (wordcount, size, options),
        Workload::Aggregate { size, options } => (group_by::aggregate, size, options),
        Workload::Plugin { size, options } => (plugin::plugin, size, options),
        Workload::Terasort { size, options } => (sort, size, options),
        Workload::Parquet { size, options } => (group_by::parquet, size, options),
    };
    workload(size, &o)
}

/// A system's name, its wall times and its highest peak RSS.
struct Times {
    name: String,
    walls: Vec<f64>,
    peak_rss: u64,
}

impl Times {
    fn new(name: &str) -> Self {
        Times {
            name: name.to_string(),
            walls: Vec::new(),
            peak_rss: 0,
        }
    }

    fn add(&mut self, wall: f64, peak_rss: u64) {
        self.walls.push(wall);
        self.peak_rss = self.peak_rss.max(peak_rss);
    }
}

/// What a baseline run gives to check: its answer, or a temporary
/// directory whose `out` holds what it wrote, read (untimed) like Harrow's.
enum Produced<T> {
    Answer(T),
    Output(tempfile::TempDir),
}

/// A hand-written baseline: its name and how to run it.
type Baseline<'a, T> = (&'a str, &'a dyn Fn() -> Result<Produced<T>>);

/// Runs each baseline and Harrow `runs` times, checking that every
/// baseline and Harrow's output (read by `read`) give the same answer:
/// every system's wall times, baselines first, and the answer.
fn measure<T: PartialEq + std::fmt::Debug>(
    runs: usize,
    baselines: &[Baseline<'_, T>],
    harrow: impl Fn() -> Result<(f64, tempfile::TempDir)>,
    read: impl Fn(&Path) -> Result<T>,
) -> Result<(Vec<Times>, T)> {
    let mut times: Vec<Times> = baselines
        .iter()
        .map(|(name, _)| Times::new(name))
        .chain(std::iter::once(Times::new("harrow run (local mode)")))
        .collect();
    let mut expected: Option<T> = None;
    let mut check = |name: &str, answer: T| -> Result<()> {
        match &expected {
            Some(expected) => ensure!(
                answer == *expected,
                "{name} found {answer:?}, the first baseline {expected:?}"
            ),
            None => expected = Some(answer),
        }
        Ok(())
    };
    for _ in 0..runs {
        for (index, (name, baseline)) in baselines.iter().enumerate() {
            let start = Instant::now();
            let (produced, rss) = rss::measured(baseline);
            times[index].add(start.elapsed().as_secs_f64(), rss);
            let produced = produced?;
            let answer = match produced {
                Produced::Answer(answer) => answer,
                Produced::Output(dir) => read(&dir.path().join("out"))?,
            };
            check(name, answer)?;
        }
        let (result, rss) = rss::measured(&harrow);
        let (seconds, out) = result?;
        times[baselines.len()].add(seconds, rss);
        check("harrow", read(&out.path().join("out"))?)?;
    }
    Ok((times, expected.expect("at least one run")))
}

/// A job for `run_harrow`.
#[derive(Debug, Clone)]
struct Run {
    job: String,
    args: Vec<(String, String)>,
    input: PathBuf,
    split_size: SplitSize,
    memory_budget: u64,
    plugin: Option<PathBuf>,
}

impl Run {
    fn new(job: &str, input: &Path, options: &Options) -> Self {
        Run {
            job: job.to_string(),
            args: Vec::new(),
            input: input.to_path_buf(),
            split_size: options.split_size,
            memory_budget: options
                .memory_budget
                .unwrap_or_else(harrow_worker::memory::default_budget),
            plugin: None,
        }
    }

    fn args(mut self, args: &[(&str, &str)]) -> Self {
        self.args = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self
    }

    fn plugin(mut self, library: &Path) -> Self {
        self.plugin = Some(library.to_path_buf());
        self
    }
}

/// Runs the job in local mode (one worker, a slot and a reducer per CPU):
/// its wall time, and the temporary directory holding its `out`.
fn run_harrow(runtime: &tokio::runtime::Runtime, run: Run) -> Result<(f64, tempfile::TempDir)> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let out = tempfile::tempdir()?;
    let submission = Submission {
        reducers: cpus as u32,
        split_size_bytes: run.split_size.bytes(),
        args: run.args,
        plugin: run.plugin,
        ..Submission::new(
            &run.job,
            vec![run.input.display().to_string()],
            out.path().join("out").display().to_string(),
        )
    };
    let config = LocalConfig {
        workers: 1,
        slots_per_worker: cpus,
        work_dir: None,
        executable: harrow_binary()?,
        memory_budget: run.memory_budget,
    };
    let start = Instant::now();
    let report = runtime.block_on(run_local(config, submission, |_| {}))?;
    let seconds = start.elapsed().as_secs_f64();
    ensure!(
        report.state == "succeeded",
        "harrow {} ended {}: {}",
        run.job,
        report.state,
        report.error
    );
    Ok((seconds, out))
}

/// The `harrow` binary built next to this one (`cargo build --release`
/// builds both), which workers run as `harrow plugin-host`.
fn harrow_binary() -> Result<std::path::PathBuf> {
    let bench = std::env::current_exe()?;
    Ok(bench.with_file_name("harrow"))
}

/// Prints each system's median wall time, MB/s and ratio to the first
/// system, and writes the same as JSON to `target/bench-results/WORKLOAD.json`.
fn report(workload: &str, systems: &mut [Times], bytes: u64) -> Result<()> {
    let mb = bytes as f64 / 1e6;
    println!(
        "{:<10} {:<44} {:>8} {:>9} {:>10} {:>8}",
        "workload", "system", "wall s", "MB/s", "RSS MiB", "ratio"
    );
    let first = median(&mut systems[0].walls);
    let mut rows = Vec::new();
    for system in systems.iter_mut() {
        let wall = median(&mut system.walls);
        println!(
            "{:<10} {:<44} {:>8.2} {:>9.0} {:>10.0} {:>8.2}",
            workload,
            system.name,
            wall,
            mb / wall,
            system.peak_rss as f64 / f64::from(1 << 20),
            wall / first
        );
        rows.push(serde_json::json!({
            "workload": workload,
            "system": system.name,
            "wall_s_median": wall,
            "wall_s_runs": system.walls,
            "mb_per_s": mb / wall,
            "peak_rss_bytes": system.peak_rss,
            "ratio": wall / first,
            "input_bytes": bytes,
        }));
    }
    let dir = Path::new("target/bench-results");
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{workload}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&rows)?)?;
    eprintln!("results written to {}", path.display());
    Ok(())
}

fn wordcount(size: u64, o: &Options) -> Result<()> {
    let (data_dir, runs) = (o.data_dir.as_path(), o.runs.max(1));
    let input = zipf::ensure_text(data_dir, size)?;
    let bytes = std::fs::metadata(&input)?.len();
    eprintln!("input: {} ({bytes} bytes)", input.display());
    let runtime = tokio::runtime::Runtime::new()?;

    let tuned = || Ok(Produced::Answer(tuned::count(&std::fs::read(&input)?)));
    let simple = || baseline_wordcount(&input).map(Produced::Answer);
    let mut baselines: Vec<Baseline<'_, _>> = vec![
        ("tuned Rust (rayon, bitmask, u128 keys)", &tuned),
        ("simple Rust (1 thread, std HashMap)", &simple),
    ];
    let peers = peers::peers(o.peers, "wordcount", &input);
    baselines.extend(peers::baselines(&peers));
    let (mut times, expected) = measure(
        runs,
        &baselines,
        || run_harrow(&runtime, Run::new("wordcount", &input, o)),
        count_output,
    )?;
    eprintln!(
        "all counted {} distinct words, {} in total",
        expected.0, expected.1
    );
    report("wordcount", &mut times, bytes)
}

fn sort(size: u64, o: &Options) -> Result<()> {
    let (data_dir, runs) = (o.data_dir.as_path(), o.runs.max(1));
    let input = terasort::ensure_records(data_dir, size)?;
    let bytes = std::fs::metadata(&input)?.len();
    eprintln!("input: {} ({bytes} bytes)", input.display());
    let runtime = tokio::runtime::Runtime::new()?;
    let into_temp = |sort: fn(&Path, &Path) -> Result<()>| -> Result<Produced<(u64, u32)>> {
        let dir = tempfile::tempdir()?;
        sort(&input, &dir.path().join("out"))?;
        Ok(Produced::Output(dir))
    };
    let hand = || into_temp(terasort::hand_sort);
    let gnu = || into_temp(terasort::gnu_sort);
    let mut baselines: Vec<Baseline<'_, (u64, u32)>> =
        vec![("hand-written Rust (rayon par_sort_unstable)", &hand)];
    if terasort::has_gnu_sort() {
        baselines.push(("GNU sort -S 4G --parallel (LC_ALL=C)", &gnu));
    }
    let (mut times, expected) = measure(
        runs,
        &baselines,
        || run_harrow(&runtime, Run::new("terasort", &input, o)),
        terasort::digest,
    )?;
    eprintln!(
        "all wrote {} records in order, CRC32C {:08x}",
        expected.0, expected.1
    );
    report("terasort", &mut times, bytes)
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
    for line in part_lines(dir)? {
        let (_, count) = line
            .rsplit_once('\t')
            .context("output line without a tab")?;
        distinct += 1;
        total += count.parse::<u64>()?;
    }
    Ok((distinct, total))
}

/// Every line of the part files in a job's output directory.
fn part_lines(dir: &Path) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("part-r-")
        {
            lines.extend(std::fs::read_to_string(&path)?.lines().map(str::to_string));
        }
    }
    Ok(lines)
}
