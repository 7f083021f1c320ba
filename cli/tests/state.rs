//! The coordinator's state dir through the CLI: job history and ids across
//! a SIGKILL and a SIGTERM of the coordinator, the one-coordinator lock,
//! and a damaged state file refused. Real processes; the `sleep` job where
//! the data does not matter.

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
    let cut = status(&cluster, &running);
    assert_eq!(cut["state"], "failed");
    let error = cut["error"].as_str().unwrap();
    assert!(error.contains("coordinator stopped"), "{error}");

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
