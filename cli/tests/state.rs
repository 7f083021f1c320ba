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

/// Submits the word count, kills the coordinator at `point`, restarts it
/// on the same state dir, and returns the job's final status, checked: it
/// kept its id, a `submit --wait` begun before the kill returns 0, the
/// output is the reference's, and nothing that finished ran again.
fn survive(
    cluster: &mut Cluster,
    corpus: &str,
    reference: &[String],
    label: &str,
    point: KillPoint,
) -> serde_json::Value {
    let out = cluster.path(&format!("out-{label}"));
    if let KillPoint::Failpoint(name) = point {
        cluster.kill_coordinator();
        cluster.restart_coordinator_with(&[&format!("HARROW_FAILPOINT={name}")]);
    }
    let split = ["--split-size", SPLIT, "--reducers", &REDUCERS.to_string()].map(String::from);
    let extra: Vec<&str> = split.iter().map(String::as_str).collect();
    let job = job_id(&cluster.ok(&submit_args("wordcount", corpus, &out, &extra)));
    // A client waiting on the job through the restart.
    let mut waiting = std::process::Command::new(HARROW)
        .args(["status", &job, "--follow", "--json"])
        .env("HARROW_COORDINATOR", &cluster.url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
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
    cluster.restart_coordinator();
    let status = cluster.follow(&job).until("the job ends", is_terminal);
    assert_eq!(status["state"], "succeeded", "{label}: {}", status["error"]);
    assert_eq!(status["job_id"], job.as_str());
    assert_eq!(read_output(&out), reference, "{label}: the output differs");
    let waited = waiting.wait().unwrap();
    assert!(
        waited.success(),
        "{label}: the follower through the restart failed"
    );
    // Nothing finished ran again: no map attempt lost (a reduce attempt
    // handed out but never delivered may be), every task won by one
    // attempt, so no partition committed twice.
    let lost: Vec<_> = attempts(&status, "m")
        .into_iter()
        .filter(|a| a["state"] == "lost")
        .map(|a| a["attempt_id"].clone())
        .collect();
    assert!(lost.is_empty(), "{label}: map attempts lost: {lost:?}");
    for task in status["tasks"].as_array().unwrap() {
        let won = task["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == "succeeded")
            .count();
        assert_eq!(won, 1, "{label}: {}", task["task_id"]);
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
    );
    let mid_reduce =
        |s: &serde_json::Value| (1..REDUCERS as u64).contains(&phase_done(s, "reduce"));
    survive(
        &mut cluster,
        &corpus,
        &reference,
        "mid-reduce",
        KillPoint::Progress(mid_reduce),
    );
    survive(
        &mut cluster,
        &corpus,
        &reference,
        "inside the commit",
        KillPoint::Failpoint("job-commit"),
    );
    println!(
        "coordinator restarts: {:.1} s for 4 jobs",
        started.elapsed().as_secs_f64()
    );
}
