//! The coordinator's state dir through the CLI: job history and ids across
//! a SIGKILL and a SIGTERM of the coordinator, the one-coordinator lock,
//! a damaged state file refused, and running jobs of hundreds of tasks
//! resumed after the coordinator is killed mid-map, between the phases,
//! mid-reduce and inside the final commit. Real processes; the `sleep` job
//! where the data does not matter.

mod common;

use std::time::Instant;

use common::*;

fn job_id(stdout: &str) -> String {
    stdout.trim().to_string()
}

fn status(cluster: &Cluster, job: &str) -> serde_json::Value {
    serde_json::from_str(&cluster.ok(&["status", job, "--json"])).unwrap()
}

fn number(job: &str) -> u64 {
    job.trim_start_matches("job-").parse().unwrap()
}

#[test]
fn jobs_and_their_history_outlive_the_coordinator() {
    let started = Instant::now();
    let state_dir = tempfile::tempdir().unwrap();
    let state = state_dir.path().join("state");
    let state = state.to_str().unwrap();
    let mut cluster = Cluster::start_with(1, 2, &["--state-dir", state]);
    let input = cluster.path("input.txt");
    std::fs::write(&input, "a b c\nb c\nc\n").unwrap();

    // One job that finishes, one that is still running when the
    // coordinator is killed.
    let out = cluster.path("done");
    cluster.ok(&submit_args("wordcount", &input, &out, &["--wait"]));
    let running = job_id(&cluster.ok(&submit_args(
        "sleep",
        &input,
        &cluster.path("cut-short"),
        &["--arg", "map_ms=600000"],
    )));
    cluster
        .follow(&running)
        .until("a map runs", |s| s["map"]["running"].as_u64() == Some(1));
    // A job that ends while an older one runs: once its history is
    // written the scheduler lets go of it, and the state dir answers.
    let later = job_id(&cluster.ok(&submit_args(
        "wordcount",
        &input,
        &cluster.path("later"),
        &[],
    )));
    cluster
        .follow(&later)
        .until("it succeeds", |s| s["state"] == "succeeded");
    let listed = cluster.ok(&["jobs"]);
    assert!(
        listed.contains(&later) && listed.contains(&running),
        "{listed}"
    );
    assert_eq!(status(&cluster, &later)["state"], "succeeded");
    cluster.kill_coordinator();

    cluster.restart_coordinator();
    let listed = cluster.ok(&["jobs"]);
    assert!(listed.contains("job-000001"), "{listed}");
    assert!(listed.contains(&running), "{listed}");
    let done = status(&cluster, "job-000001");
    assert_eq!(done["state"], "succeeded");
    assert_eq!(done["output_records"], 3);
    assert!(
        !attempts(&done, "r").is_empty(),
        "a finished job keeps its tasks: {done}"
    );
    // The running job resumed; cancelled, it ends for good.
    assert_eq!(status(&cluster, &running)["state"], "running");
    cluster.ok(&["cancel", &running]);
    assert_eq!(status(&cluster, &running)["state"], "cancelled");

    // One coordinator per state dir.
    let refused = cluster.second_coordinator_fails();
    assert!(
        refused.contains("in use by another coordinator"),
        "{refused}"
    );
    assert!(refused.contains("state.redb"), "{refused}");

    // Ids are never handed out twice, even after a SIGKILL...
    let after_kill = job_id(&cluster.ok(&submit_args(
        "wordcount",
        &input,
        &cluster.path("after-kill"),
        &[],
    )));
    assert!(number(&after_kill) > number(&running), "{after_kill}");
    // ...and after a clean stop they go on where they were.
    assert!(cluster.stop_coordinator().success());
    cluster.restart_coordinator();
    let next = job_id(&cluster.ok(&submit_args(
        "wordcount",
        &input,
        &cluster.path("after-stop"),
        &[],
    )));
    assert_eq!(number(&next), number(&after_kill) + 1, "{next}");

    // A damaged state file is refused, never started over.
    cluster.kill_coordinator();
    let file = state_dir.path().join("state").join("state.redb");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let refused = cluster.second_coordinator_fails();
    assert!(refused.contains("state.redb"), "{refused}");
    println!("state suite: {:.1} s", started.elapsed().as_secs_f64());
}

/// Bytes per split: 8 MiB in 24 KiB splits is about 340 map tasks.
const SPLIT: &str = "24KiB";
const REDUCERS: usize = 8;

/// Where the coordinator is killed, and how the moment is found.
enum KillPoint {
    /// Once the job's status satisfies this.
    Progress(fn(&serde_json::Value) -> bool),
    /// Once the coordinator, started with this failpoint, reaches it.
    Failpoint(&'static str),
}

fn phase_done(status: &serde_json::Value, phase: &str) -> u64 {
    status[phase]["succeeded"].as_u64().unwrap()
}

/// The id of the job writing `out`, once the coordinator has it.
fn job_writing(cluster: &Cluster, out: &str) -> String {
    let mut id = None;
    let listed = || {
        let jobs: serde_json::Value =
            serde_json::from_str(&cluster.ok(&["jobs", "--json"])).unwrap();
        id = jobs
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["output"] == out)
            .map(|j| j["job_id"].as_str().unwrap().to_string());
        id.is_some()
    };
    common::bounded::until("the job listed", listed, || cluster.logs());
    id.expect("listed")
}

/// Submits the word count with `submit --wait`, kills the coordinator at
/// `point` (and SIGKILLs the worker `killed` while it is down), restarts
/// it on the same state dir, and returns the job's final status, checked:
/// it kept its id, the `submit --wait` returns 0, the output is the
/// reference's, nothing that finished on a surviving worker ran again, and
/// no partition was committed twice.
fn survive(
    cluster: &mut Cluster,
    corpus: &str,
    reference: &[String],
    label: &str,
    point: KillPoint,
    killed: Option<usize>,
) -> serde_json::Value {
    let out = cluster.path(&format!("out-{label}"));
    if let KillPoint::Failpoint(name) = point {
        cluster.kill_coordinator();
        cluster.restart_coordinator_with(&[&format!("HARROW_FAILPOINT={name}")]);
    }
    let split = ["--split-size", SPLIT, "--reducers", &REDUCERS.to_string()].map(String::from);
    let mut extra: Vec<&str> = split.iter().map(String::as_str).collect();
    extra.push("--wait");
    // A client waiting on the job through the restart.
    let mut waiting = std::process::Command::new(HARROW)
        .args(submit_args("wordcount", corpus, &out, &extra))
        .env("HARROW_COORDINATOR", &cluster.url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let job = job_writing(cluster, &out);
    match point {
        KillPoint::Progress(reached) => {
            let status = cluster
                .follow(&job)
                .until(label, |s| reached(s) || is_terminal(s));
            assert!(
                !is_terminal(&status),
                "{label}: the job ended before the kill"
            );
        }
        KillPoint::Failpoint(name) => {
            cluster.await_coordinator_log(&format!("failpoint {name} reached"))
        }
    }
    cluster.kill_coordinator();
    let killed = killed.map(|index| {
        cluster.kill_worker(index);
        cluster.workers[index].address.clone()
    });
    cluster.restart_coordinator();
    let status = cluster.follow(&job).until("the job ends", is_terminal);
    // Every id the killed worker had: a worker the coordinator declared
    // dead (one that could not heartbeat in time after an earlier restart)
    // registered again under a new id, at the same address.
    let killed: Vec<String> = match killed {
        Some(address) => {
            let workers: serde_json::Value =
                serde_json::from_str(&cluster.ok(&["workers", "--json"])).unwrap();
            workers
                .as_array()
                .unwrap()
                .iter()
                .filter(|w| w["address"] == address.as_str())
                .map(|w| w["worker_id"].as_str().unwrap().to_string())
                .collect()
        }
        None => Vec::new(),
    };
    let on_killed =
        |attempt: &serde_json::Value| killed.iter().any(|id| attempt["worker_id"] == id.as_str());
    assert_eq!(status["state"], "succeeded", "{label}: {}", status["error"]);
    assert_eq!(status["job_id"], job.as_str());
    assert_eq!(read_output(&out), reference, "{label}: the output differs");
    let waited = waiting.wait().unwrap();
    assert!(waited.success(), "{label}: submit --wait failed");
    // Nothing finished ran again: no task succeeded twice on workers that
    // stayed alive (an attempt handed out but never received, or one on
    // the killed worker, may be lost and run again), and every partition
    // was committed by one attempt.
    for task in status["tasks"].as_array().unwrap() {
        let won: Vec<&serde_json::Value> = task["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == "succeeded")
            .collect();
        let on_survivors = won.iter().filter(|a| !on_killed(a)).count();
        assert!(on_survivors <= 1, "{label}: ran again: {task}");
        if task["task_id"].as_str().unwrap().contains("/r-") {
            assert_eq!(won.len(), 1, "{label}: {task}");
        }
    }
    if !killed.is_empty() {
        // Each map task's last success is on a worker that lived: what the
        // killed one held ran again.
        for task in status["tasks"].as_array().unwrap() {
            let last = task["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .rfind(|a| a["state"] == "succeeded")
                .unwrap();
            assert!(!on_killed(last), "{label}: {task}");
        }
    }
    status
}

#[test]
fn running_jobs_survive_the_coordinator_killed_at_any_point() {
    let started = Instant::now();
    let state_dir = tempfile::tempdir().unwrap();
    let state = state_dir.path().join("state");
    let flags = [
        "--state-dir",
        state.to_str().unwrap(),
        "--worker-timeout",
        "2s",
    ];
    let mut cluster = Cluster::start_with(3, 2, &flags);
    let corpus = cluster.path("corpus");
    let reference = write_large_corpus(std::path::Path::new(&corpus), 8, 1 << 20);

    let mid_map =
        |s: &serde_json::Value| phase_done(s, "map") * 3 > s["map"]["total"].as_u64().unwrap();
    let status = survive(
        &mut cluster,
        &corpus,
        &reference,
        "mid-map",
        KillPoint::Progress(mid_map),
        None,
    );
    assert!(
        status["map"]["total"].as_u64().unwrap() >= 300,
        "{}",
        status["map"]
    );
    survive(
        &mut cluster,
        &corpus,
        &reference,
        "between the phases",
        KillPoint::Failpoint("reduce-assigned"),
        None,
    );
    let mid_reduce =
        |s: &serde_json::Value| (1..REDUCERS as u64).contains(&phase_done(s, "reduce"));
    survive(
        &mut cluster,
        &corpus,
        &reference,
        "mid-reduce",
        KillPoint::Progress(mid_reduce),
        None,
    );
    survive(
        &mut cluster,
        &corpus,
        &reference,
        "inside the commit",
        KillPoint::Failpoint("job-commit"),
        None,
    );
    // A worker killed while the coordinator was down: its output runs
    // again, the others' is adopted.
    survive(
        &mut cluster,
        &corpus,
        &reference,
        "a worker lost meanwhile",
        KillPoint::Progress(mid_map),
        Some(0),
    );
    println!(
        "coordinator restarts: {:.1} s for 5 jobs",
        started.elapsed().as_secs_f64()
    );
}
