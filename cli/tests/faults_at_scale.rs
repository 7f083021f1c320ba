//! Faults at the scale users run them: four workers, a 32 MiB generated
//! corpus cut into 330 map tasks, eight reducers (as many as the slots, so
//! a killed worker leaves more reducers than free slots), and a worker
//! timeout of 2 s. One cluster and one corpus serve every job here. Fault
//! moments are chosen by the job's progress read from `status --json`, not
//! by sleeping. Every job must succeed with part files byte-identical to
//! the fault-free run, whose output equals the sequential word count.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use common::*;
use serde_json::Value;

/// Bytes per map split: 32 MiB in 100 KiB splits is about 330 map tasks.
const SPLIT: &str = "100KiB";
const REDUCERS: usize = 8;

fn submit(cluster: &Cluster, corpus: &str, out: &str) -> String {
    submit_wordcount(cluster, corpus, out, SPLIT, REDUCERS)
}

fn fraction(status: &Value, phase: &str) -> f64 {
    let done = status[phase]["succeeded"].as_f64().unwrap();
    done / status[phase]["total"].as_f64().unwrap()
}

/// The map tasks whose output (their last succeeded attempt's: a re-run's
/// replaces the one before) lies on `worker`.
fn outputs_on(status: &Value, worker: &str) -> BTreeSet<String> {
    status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["task_id"].as_str().unwrap().contains("/m-") && t["state"] == "succeeded")
        .filter(|t| {
            t["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .rfind(|a| a["state"] == "succeeded")
                .is_some_and(|a| a["worker_id"] == worker)
        })
        .map(|t| t["task_id"].as_str().unwrap().to_string())
        .collect()
}

/// The worker holding the most map output, or, once reducers run, one
/// running a reducer too.
fn pick_victim(status: &Value) -> String {
    if let Some(reducer) = attempts(status, "r")
        .into_iter()
        .find(|a| a["state"] == "running")
    {
        return reducer["worker_id"].as_str().unwrap().to_string();
    }
    let mut held: BTreeMap<String, usize> = BTreeMap::new();
    for a in attempts(status, "m") {
        if a["state"] == "succeeded" {
            *held
                .entry(a["worker_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    held.into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(w, _)| w)
        .expect("some map output exists")
}

/// What a run cost, for the summary printed at the end.
struct Cost {
    label: String,
    wall_ms: u64,
    map_attempts: usize,
    reduce_attempts: usize,
}

impl Cost {
    fn of(label: &str, status: &Value) -> Cost {
        Cost {
            label: label.to_string(),
            wall_ms: status["finished_at_ms"].as_u64().unwrap()
                - status["submitted_at_ms"].as_u64().unwrap(),
            map_attempts: attempts(status, "m").len(),
            reduce_attempts: attempts(status, "r").len(),
        }
    }
}

/// Reduce attempts each reduce task lost to fetch failures.
fn fetch_losses(status: &Value) -> BTreeMap<String, usize> {
    let mut losses = BTreeMap::new();
    for task in status["tasks"].as_array().unwrap() {
        let id = task["task_id"].as_str().unwrap();
        if !id.contains("/r-") {
            continue;
        }
        let lost = task["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| {
                a["state"] == "lost"
                    && a["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("could not fetch"))
            })
            .count();
        losses.insert(id.to_string(), lost);
    }
    losses
}

struct Suite {
    cluster: Cluster,
    corpus: String,
    clean: BTreeMap<String, Vec<u8>>,
    runs: usize,
    costs: Vec<Cost>,
}

impl Suite {
    fn output(&mut self) -> String {
        self.runs += 1;
        self.cluster.path(&format!("out-{}", self.runs))
    }

    /// Waits for the job's end; asserts success and the fault-free bytes.
    fn finish(&mut self, label: &str, job: &str, out: &str) -> Value {
        let status = self.cluster.follow(job).until("the job ends", is_terminal);
        assert_eq!(status["state"], "succeeded", "{label}: {}", status["error"]);
        assert!(
            part_files(out) == self.clean,
            "{label}: the output differs from the fault-free run"
        );
        self.costs.push(Cost::of(label, &status));
        status
    }

    /// SIGKILLs a worker once the job reaches `point`, checks that its map
    /// output is set aside all at once, and replaces it.
    fn kill_at(&mut self, label: &str, point: impl Fn(&Value) -> bool) {
        let out = self.output();
        let job = submit(&self.cluster, &self.corpus, &out);
        let mut follow = self.cluster.follow(&job);
        let status = follow.until(label, |s| point(s) || is_terminal(s));
        assert!(!is_terminal(&status), "{label}: the job ended first");
        let victim = pick_victim(&status);
        let held = outputs_on(&status, &victim);
        self.cluster.kill_worker(self.cluster.worker_index(&victim));

        // From the kill on, the victim's output is either all still
        // standing (nobody noticed yet) or all set aside: never one file
        // at a time.
        let set_aside = RefCell::new(false);
        let end = follow.until("the job ends", |s| {
            let reducing = s["reduce"]["succeeded"] != s["reduce"]["total"];
            let standing = outputs_on(s, &victim);
            if reducing && !is_terminal(s) {
                let all = held.is_subset(&standing);
                let none = standing.is_empty();
                assert!(
                    all && !*set_aside.borrow() || none,
                    "{label}: {} of {victim}'s {} map outputs still stand while others were set aside",
                    standing.len(),
                    held.len()
                );
                if none {
                    *set_aside.borrow_mut() = true;
                }
            }
            is_terminal(s)
        });
        drop(follow);
        assert_eq!(end["state"], "succeeded", "{label}: {}", end["error"]);
        let status = self.finish(label, &job, &out);
        for (task, lost) in fetch_losses(&status) {
            assert!(
                lost <= 1,
                "{label}: {task} lost {lost} attempts to fetch failures after one worker died"
            );
        }
        self.cluster.add_worker();
    }
}

#[test]
fn jobs_of_hundreds_of_tasks_survive_killed_stopped_and_churned_workers() {
    let started = Instant::now();
    let cluster = Cluster::start_with(4, 2, &["--worker-timeout", "2s"]);
    let corpus = cluster.path("corpus");
    let reference = write_large_corpus(std::path::Path::new(&corpus), 8, 4 << 20);
    let mut suite = Suite {
        cluster,
        corpus,
        clean: BTreeMap::new(),
        runs: 0,
        costs: Vec::new(),
    };

    // Fault-free: the reference, and no map attempt beyond one per task
    // but backups.
    let out = suite.output();
    let job = submit(&suite.cluster, &suite.corpus, &out);
    let status = suite
        .cluster
        .follow(&job)
        .until("the job ends", is_terminal);
    assert_eq!(status["state"], "succeeded", "{}", status["error"]);
    assert_eq!(read_output(&out), reference);
    suite.clean = part_files(&out);
    let maps = status["map"]["total"].as_u64().unwrap() as usize;
    assert!(maps >= 300, "{maps} map tasks");
    let backups = attempts(&status, "m")
        .iter()
        .filter(|a| !a["attempt_id"].as_str().unwrap().ends_with("/a-1"))
        .count();
    for a in attempts(&status, "m") {
        assert!(
            matches!(a["state"].as_str(), Some("succeeded" | "killed")),
            "a fault-free run ended {a}"
        );
    }
    assert_eq!(attempts(&status, "m").len(), maps + backups);
    suite.costs.push(Cost::of("fault-free", &status));
    eprintln!("fault-free: {maps} map tasks, {backups} map backups");

    // (a) One worker SIGKILLed at eleven points across map and reduce.
    for share in [0.02, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95] {
        suite.kill_at(&format!("kill at {:.0}% of maps", share * 100.0), |s| {
            fraction(s, "map") >= share
        });
    }
    suite.kill_at("kill as reducers start", |s| {
        fraction(s, "map") == 1.0 && attempts(s, "r").iter().any(|a| a["state"] == "running")
    });
    for share in [0.25, 0.6] {
        suite.kill_at(&format!("kill at {:.0}% of reduces", share * 100.0), |s| {
            fraction(s, "reduce") >= share
        });
    }

    // (b) SIGSTOP one worker past the worker timeout, then SIGCONT.
    let out = suite.output();
    let job = submit(&suite.cluster, &suite.corpus, &out);
    let mut follow = suite.cluster.follow(&job);
    let status = follow.until("a third of the maps", |s| fraction(s, "map") >= 0.3);
    let victim = pick_victim(&status);
    let index = suite.cluster.worker_index(&victim);
    suite.cluster.signal_worker(index, "STOP");
    follow.until("the stopped worker is declared dead", |s| {
        attempts(s, "m")
            .iter()
            .any(|a| a["worker_id"] == victim.as_str() && a["state"] == "lost")
            || is_terminal(s)
    });
    suite.cluster.signal_worker(index, "CONT");
    drop(follow);
    suite.finish("SIGSTOP past the worker timeout", &job, &out);

    // (c) Churn: a random worker but the first SIGKILLed every 1-2 s and
    // replaced, for the whole job.
    let out = suite.output();
    let job = submit(&suite.cluster, &suite.corpus, &out);
    let protected = suite.cluster.workers[0].id.clone();
    let mut rng = Rng::new(0x00C4_0121);
    let mut kills = 0;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(
            1_000 + rng.below(1_000) as u64,
        ));
        let status: Value =
            serde_json::from_str(&suite.cluster.ok(&["status", &job, "--json"])).unwrap();
        if is_terminal(&status) {
            break;
        }
        let mut live = Vec::new();
        for i in 0..suite.cluster.workers.len() {
            if suite.cluster.workers[i].id != protected && suite.cluster.worker_running(i) {
                live.push(i);
            }
        }
        let index = live[rng.below(live.len())];
        suite.cluster.kill_worker(index);
        suite.cluster.add_worker();
        kills += 1;
    }
    let status = suite.finish(&format!("churn, {kills} workers killed"), &job, &out);
    assert!(kills >= 2, "the job ended before churn began: {status}");

    let clean_ms = suite.costs[0].wall_ms as f64;
    eprintln!(
        "{:<34} {:>6} {:>6} {:>13} {:>16}",
        "run", "wall s", "ratio", "map attempts", "reduce attempts"
    );
    for cost in &suite.costs {
        eprintln!(
            "{:<34} {:>6.2} {:>6.2} {:>13} {:>16}",
            cost.label,
            cost.wall_ms as f64 / 1000.0,
            cost.wall_ms as f64 / clean_ms,
            cost.map_attempts,
            cost.reduce_attempts
        );
    }
    eprintln!(
        "faults at scale: {:.0} s for {} jobs",
        started.elapsed().as_secs_f64(),
        suite.costs.len()
    );
}
