//! A slow worker through real processes: one of four workers held to 5% of
//! a CPU by a cgroup quota (a noisy neighbour, a failing disk) while it
//! still heartbeats. The job must give the same bytes as on the three
//! healthy workers alone; the slow worker must be seen `slow`; the time
//! against the healthy run and the backups are printed, not asserted.
//! Needs a writable cgroup v1 hierarchy (root, as on CI); elsewhere it says
//! why and checks nothing.

mod common;

use std::cell::Cell;
use std::path::Path;
use std::time::Instant;

use common::*;
use serde_json::Value;

fn submit(cluster: &Cluster, corpus: &str, out: &str) -> String {
    submit_wordcount(cluster, corpus, out, "256KiB", 6)
}

fn wall_ms(status: &Value) -> u64 {
    status["finished_at_ms"].as_u64().unwrap() - status["submitted_at_ms"].as_u64().unwrap()
}

#[test]
fn a_worker_at_five_percent_of_a_cpu_neither_slows_nor_changes_a_job() {
    let started = Instant::now();
    let name = format!("harrow-slow-{}", std::process::id());
    let cgroup = match Cgroup::create(&name, 5_000, None) {
        Ok(cgroup) => cgroup,
        Err(reason) => {
            eprintln!("skipped: cannot make a cgroup: {reason}");
            return;
        }
    };
    let mut cluster = Cluster::start_with(3, 2, &["--worker-timeout", "2s"]);
    let corpus = cluster.path("corpus");
    let reference = write_large_corpus(Path::new(&corpus), 6, 8 << 20);

    // The three healthy workers alone.
    let healthy_out = cluster.path("healthy");
    let job = submit(&cluster, &corpus, &healthy_out);
    let healthy = cluster.follow(&job).until("the job ends", is_terminal);
    assert_eq!(healthy["state"], "succeeded", "{}", healthy["error"]);
    assert_eq!(read_output(&healthy_out), reference);

    // A fourth worker at 5% of a CPU, with two slots like the others.
    let wrapper = cgroup.wrapper();
    let index = cluster.add_worker_wrapped(&["sh", "-c", &wrapper], &[]);
    let slow_id = cluster.workers[index].id.clone();
    let out = cluster.path("with-slow");
    let job = submit(&cluster, &corpus, &out);
    let seen_slow = Cell::new(false);
    let lines = Cell::new(0);
    let status = cluster.follow(&job).until("the job ends", |s| {
        lines.set(lines.get() + 1);
        if !seen_slow.get() && lines.get() % 10 == 0 {
            let workers: Value = serde_json::from_str(&cluster.ok(&["workers", "--json"])).unwrap();
            seen_slow.set(
                workers
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|w| w["worker_id"] == slow_id.as_str() && w["state"] == "slow"),
            );
        }
        is_terminal(s)
    });
    assert_eq!(status["state"], "succeeded", "{}", status["error"]);
    assert!(
        part_files(&out) == part_files(&healthy_out),
        "the output differs from the healthy run's"
    );
    assert!(seen_slow.get(), "{slow_id} was never shown slow");

    let attempts_of = |phase: &str| attempts(&status, phase);
    let backups = ["m", "r"]
        .iter()
        .flat_map(|p| attempts_of(p))
        .filter(|a| !a["attempt_id"].as_str().unwrap().ends_with("/a-1"))
        .count();
    let on_slow = ["m", "r"]
        .iter()
        .flat_map(|p| attempts_of(p))
        .filter(|a| a["worker_id"] == slow_id.as_str())
        .count();
    eprintln!(
        "slow worker: {:.2} s with it against {:.2} s on the healthy three (ratio {:.2}); {backups} backups; {on_slow} attempts on the slow worker; {:.0} s in all",
        wall_ms(&status) as f64 / 1000.0,
        wall_ms(&healthy) as f64 / 1000.0,
        wall_ms(&status) as f64 / wall_ms(&healthy) as f64,
        started.elapsed().as_secs_f64()
    );
    drop(cluster);
    drop(cgroup);
}
