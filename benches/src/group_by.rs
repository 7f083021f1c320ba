//! The group-by workloads: `aggregate` over CSV and `parquet` over
//! Parquet, against a hand-written baseline.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, ensure};

use super::{
    Baseline, Options, Produced, Run, measure, part_lines, peers, report, run_harrow, table, zipf,
};

pub(super) fn aggregate(size: u64, o: &Options) -> Result<()> {
    let input = zipf::ensure_csv(&o.data_dir, size)?;
    let simple = || baseline_aggregate(&input).map(Produced::Answer);
    group_by(
        "aggregate",
        &input,
        ("simple Rust (1 thread, split(','))", &simple),
        o,
    )
}

pub(super) fn parquet(size: u64, o: &Options) -> Result<()> {
    let input = table::ensure_parquet(&o.data_dir, size)?;
    let hand = || table::hand_aggregate(&input).map(Produced::Answer);
    group_by(
        "parquet",
        &input,
        ("hand-written Rust (rayon over row groups)", &hand),
        o,
    )
}

/// A group-by workload: `aggregate` (count, sum, min and max of `value`
/// per `key`) over `input`, against `baseline` and the peers.
fn group_by(
    workload: &str,
    input: &Path,
    baseline: Baseline<'_, (usize, u64, i64)>,
    o: &Options,
) -> Result<()> {
    let bytes = std::fs::metadata(input)?.len();
    eprintln!("input: {} ({bytes} bytes)", input.display());
    let runtime = tokio::runtime::Runtime::new()?;
    let args = [("key", "key"), ("value", "value")];
    let mut baselines = vec![baseline];
    let peers = peers::peers(o.peers, "aggregate", input);
    baselines.extend(peers::baselines(&peers));
    let (mut times, expected) = measure(
        o.runs.max(1),
        &baselines,
        || run_harrow(&runtime, Run::new("aggregate", input, o).args(&args)),
        aggregate_output,
    )?;
    eprintln!(
        "all found {} keys over {} rows, sum {}",
        expected.0, expected.1, expected.2
    );
    report(workload, &mut times, bytes)
}

/// The simple single-process aggregate: read the file, split lines at
/// commas (the generated CSV has no quotes), fold in a `HashMap`:
/// (distinct keys, rows, sum of values).
fn baseline_aggregate(input: &Path) -> Result<(usize, u64, i64)> {
    let text = std::fs::read(input)?;
    let text = std::str::from_utf8(&text)?;
    let mut groups: HashMap<&str, (u64, i64, i64, i64)> = HashMap::new();
    for line in text.lines().skip(1) {
        let mut fields = line.split(',');
        let key = fields.next().context("a row without a key")?;
        let value: i64 = fields.next().context("a row without a value")?.parse()?;
        let group = groups.entry(key).or_insert((0, 0, i64::MAX, i64::MIN));
        *group = (
            group.0 + 1,
            group.1 + value,
            group.2.min(value),
            group.3.max(value),
        );
    }
    let rows = groups.values().map(|g| g.0).sum();
    let sum = groups.values().map(|g| g.1).sum();
    Ok((groups.len(), rows, sum))
}

/// (keys, rows, sum) in the aggregate job's text output.
fn aggregate_output(dir: &Path) -> Result<(usize, u64, i64)> {
    let (mut keys, mut rows, mut sum) = (0, 0, 0);
    for line in part_lines(dir)? {
        let fields: Vec<&str> = line.split('\t').collect();
        ensure!(
            fields.len() == 6,
            "output line {line:?} has {} fields",
            fields.len()
        );
        keys += 1;
        rows += fields[1].parse::<u64>()?;
        sum += fields[2].parse::<i64>()?;
    }
    Ok((keys, rows, sum))
}
