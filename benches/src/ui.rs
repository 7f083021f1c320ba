//! `harrow-bench ui`: how long the coordinator takes to render a job's page
//! of `tasks` finished map tasks (a synthetic state: 100 workers of 8
//! slots), and its size, against serializing the same job's report to
//! JSON (what `status --json` and the API do with it) in the same run.

use std::time::{Duration, Instant};

use anyhow::Result;
use harrow_coordinator::service::ui::job_markup;
use harrow_coordinator::service::ui::synthetic::synthetic_job;

/// The median of `runs` timings of `work`.
fn median(runs: usize, mut work: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs.max(1))
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

pub fn ui(tasks: usize, runs: usize) -> Result<()> {
    let (report, workers) = synthetic_job(tasks);
    let mut bytes = 0;
    let page = median(runs, || {
        bytes = job_markup(&report, &workers, 200_000, 0)
            .into_string()
            .len();
    });
    let mut json_bytes = 0;
    let json = median(runs, || {
        json_bytes = serde_json::to_string(&report).map_or(0, |j| j.len());
    });
    println!("job page of {tasks} tasks, median of {runs}:");
    println!(
        "  page  {:>8.1} ms {:>10} bytes",
        page.as_secs_f64() * 1e3,
        bytes
    );
    println!(
        "  JSON  {:>8.1} ms {:>10} bytes (baseline: the same report as status --json)",
        json.as_secs_f64() * 1e3,
        json_bytes
    );
    println!(
        "  page / JSON time: {:.2}",
        page.as_secs_f64() / json.as_secs_f64()
    );
    Ok(())
}
