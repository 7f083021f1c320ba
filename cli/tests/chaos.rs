//! Chaos through real processes: a coordinator and four workers, faults
//! injected at chosen moments of a job (found by following its status, not
//! by sleeping). Each job must succeed with output equal to a sequential
//! computation, and leave no `_temporary` behind.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

fn chaos_cluster() -> Cluster {
    Cluster::start_with(4, 2, &["--worker-timeout", "1s", "--max-attempts", "4"])
}

/// The `sleep` job's output: every non-empty file and its line count.
fn sleep_reference(files: &[PathBuf]) -> Vec<String> {
    let mut lines: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let bytes = std::fs::read(file).unwrap();
            if bytes.is_empty() {
                return None;
            }
            let newlines = bytes.iter().filter(|b| **b == b'\n').count();
            let count = newlines + usize::from(bytes.last() != Some(&b'\n'));
            Some(format!("{}\t{count}", file.display()))
        })
        .collect();
    lines.sort();
    lines
}

/// Submits `sleep` over the corpus in small splits; returns the job id.
fn submit_sleep(cluster: &Cluster, corpus: &str, out: &str, map_ms: u32, reduce_ms: u32) -> String {
    let map_ms = format!("map_ms={map_ms}");
    let reduce_ms = format!("reduce_ms={reduce_ms}");
    let args = [
        "submit",
        "sleep",
        "--input",
        corpus,
        "--output",
        out,
        "--split-size",
        "16KiB",
        "--reducers",
        "3",
        "--arg",
        &map_ms,
        "--arg",
        &reduce_ms,
    ];
    cluster.ok(&args).trim().to_string()
}

fn setup(cluster: &Cluster) -> (String, Vec<PathBuf>, String) {
    let corpus = cluster.path("corpus");
    let files = write_corpus(Path::new(&corpus));
    (corpus, files, cluster.path("out"))
}

/// Follows the job to its end; asserts success and the expected output.
fn assert_succeeds(cluster: &Cluster, job: &str, out: &str, expected: &[String]) -> Value {
    let status = cluster.follow(job).until("the job ends", is_terminal);
    assert_eq!(status["state"], "succeeded", "{status:#}");
    assert_eq!(read_output(out), expected);
    status
}

fn running_on(status: &Value, phase: &str) -> Option<String> {
    attempts(status, phase)
        .into_iter()
        .find(|a| a["state"] == "running")
        .map(|a| a["worker_id"].as_str().unwrap().to_string())
}

#[test]
fn sigkill_a_worker_in_the_middle_of_the_map_phase() {
    let mut cluster = chaos_cluster();
    let (corpus, files, out) = setup(&cluster);
    let job = submit_sleep(&cluster, &corpus, &out, 700, 0);
    let status = cluster
        .follow(&job)
        .until("a map runs", |s| running_on(s, "m").is_some());
    let victim = cluster.worker_index(&running_on(&status, "m").unwrap());
    cluster.kill_worker(victim);
    let status = assert_succeeds(&cluster, &job, &out, &sleep_reference(&files));
    assert!(
        attempts(&status, "m").iter().any(|a| a["state"] == "lost"),
        "{status:#}"
    );
}

#[test]
fn sigkill_a_worker_holding_map_output_before_reducers_fetch() {
    let mut cluster = chaos_cluster();
    let (corpus, files, out) = setup(&cluster);
    // Reducers sleep before they fetch: the window to kill in.
    let job = submit_sleep(&cluster, &corpus, &out, 50, 1500);
    let status = cluster.follow(&job).until("all maps are done", |s| {
        s["map"]["succeeded"] == s["map"]["total"] && running_on(s, "r").is_some()
    });
    let holder = attempts(&status, "m")
        .into_iter()
        .find(|a| a["state"] == "succeeded")
        .map(|a| a["worker_id"].as_str().unwrap().to_string())
        .unwrap();
    cluster.kill_worker(cluster.worker_index(&holder));
    let status = assert_succeeds(&cluster, &job, &out, &sleep_reference(&files));
    // Its map output was re-created elsewhere.
    let maps = attempts(&status, "m");
    assert!(
        maps.iter()
            .any(|a| a["attempt_id"].as_str().unwrap().ends_with("/a-2")),
        "{status:#}"
    );
}

#[test]
fn sigkill_a_worker_in_the_middle_of_a_reduce() {
    let mut cluster = chaos_cluster();
    let (corpus, files, out) = setup(&cluster);
    let job = submit_sleep(&cluster, &corpus, &out, 0, 1500);
    let status = cluster
        .follow(&job)
        .until("a reduce runs", |s| running_on(s, "r").is_some());
    let victim = cluster.worker_index(&running_on(&status, "r").unwrap());
    cluster.kill_worker(victim);
    let status = assert_succeeds(&cluster, &job, &out, &sleep_reference(&files));
    assert!(
        attempts(&status, "r").iter().any(|a| a["state"] == "lost"),
        "{status:#}"
    );
}

#[test]
fn sigstop_a_worker_past_the_timeout_then_sigcont_it() {
    let cluster = chaos_cluster();
    let (corpus, files, out) = setup(&cluster);
    let job = submit_sleep(&cluster, &corpus, &out, 700, 300);
    let mut follow = cluster.follow(&job);
    let status = follow.until("a map runs", |s| running_on(s, "m").is_some());
    let paused = running_on(&status, "m").unwrap();
    let index = cluster.worker_index(&paused);
    cluster.signal_worker(index, "STOP");
    follow.until("the paused worker's attempts are lost", |s| {
        attempts(s, "m")
            .iter()
            .any(|a| a["worker_id"] == paused.as_str() && a["state"] == "lost")
    });
    cluster.signal_worker(index, "CONT");
    drop(follow);
    assert_succeeds(&cluster, &job, &out, &sleep_reference(&files));
    // It was declared dead and came back under a new id.
    let workers: Value = serde_json::from_str(&cluster.ok(&["workers", "--json"])).unwrap();
    let workers = workers.as_array().unwrap();
    assert!(workers.len() >= 5, "{workers:#?}");
    let old = workers
        .iter()
        .find(|w| w["worker_id"] == paused.as_str())
        .unwrap();
    assert_eq!(old["state"], "dead");
    assert!(
        old["reason"]
            .as_str()
            .unwrap()
            .contains("sent no heartbeat"),
        "{old:#}"
    );
}

#[test]
fn all_workers_die_and_new_ones_finish_the_job() {
    let mut cluster = chaos_cluster();
    let (corpus, files, out) = setup(&cluster);
    let job = submit_sleep(&cluster, &corpus, &out, 500, 0);
    cluster.follow(&job).until("a map succeeds", |s| {
        s["map"]["succeeded"].as_u64() > Some(0)
    });
    for index in 0..4 {
        cluster.kill_worker(index);
    }
    for _ in 0..3 {
        cluster.add_worker();
    }
    assert_succeeds(&cluster, &job, &out, &sleep_reference(&files));
}

#[test]
fn a_corrupted_shuffle_file_is_detected_and_its_map_rerun() {
    let cluster = chaos_cluster();
    let (corpus, files, out) = setup(&cluster);
    let job = submit_sleep(&cluster, &corpus, &out, 0, 1500);
    cluster.follow(&job).until("all maps are done", |s| {
        s["map"]["succeeded"] == s["map"]["total"]
    });
    // Flip a byte in the middle of the largest map output on disk.
    let mut data_files: Vec<(u64, PathBuf)> = cluster
        .workers
        .iter()
        .filter_map(|w| std::fs::read_dir(w.work_dir.join(&job)).ok())
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .map(|p| (std::fs::metadata(&p).unwrap().len(), p))
        .collect();
    data_files.sort();
    let (size, victim) = data_files.pop().expect("map output on disk");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[size as usize / 2] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();
    let status = assert_succeeds(&cluster, &job, &out, &sleep_reference(&files));
    // The reducer that found it reported it and waited: the map ran again
    // and no reduce attempt ended for it.
    let rerun = attempts(&status, "m")
        .iter()
        .any(|a| a["state"] == "succeeded" && !a["attempt_id"].as_str().unwrap().ends_with("/a-1"));
    assert!(rerun, "no map ran again after the corruption: {status:#}");
    assert!(
        attempts(&status, "r")
            .iter()
            .all(|a| a["state"] == "succeeded" || a["state"] == "killed"),
        "{status:#}"
    );
    assert!(cluster.logs().contains("CRC32C"), "no reducer reported it");
}

#[test]
fn sigterm_drains_a_worker_without_losing_its_work() {
    let mut cluster = chaos_cluster();
    let (corpus, files, out) = setup(&cluster);
    let job = submit_sleep(&cluster, &corpus, &out, 800, 400);
    let mut follow = cluster.follow(&job);
    let status = follow.until("a map runs", |s| running_on(s, "m").is_some());
    let leaving = running_on(&status, "m").unwrap();
    let index = cluster.worker_index(&leaving);
    // Its readiness (the gRPC health of the worker as a whole) turns to
    // NOT_SERVING as it drains, while it still serves shuffle segments.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let url = format!("http://{}", cluster.workers[index].address);
        let channel = tonic::transport::Endpoint::from_shared(url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = HealthClient::new(channel);
        let mut watch = health
            .watch(HealthCheckRequest::default())
            .await
            .unwrap()
            .into_inner();
        let first = watch.message().await.unwrap().unwrap();
        assert_eq!(first.status(), ServingStatus::Serving);
        cluster.signal_worker(index, "TERM");
        let next = watch.message().await.unwrap().expect("a status change");
        assert_eq!(next.status(), ServingStatus::NotServing);
        let shuffle = health
            .check(HealthCheckRequest {
                service: "harrow.v1.ShuffleService".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(shuffle.status(), ServingStatus::Serving);
    });
    // Its connections close with it.
    drop(runtime);
    // It finishes what it runs, serves its map output until reducers have
    // it, and exits cleanly before the job needs it no more.
    let exit = cluster.wait_worker(index);
    assert!(exit.success(), "{exit:?}");
    drop(follow);
    let workers: Value = serde_json::from_str(&cluster.ok(&["workers", "--json"])).unwrap();
    let gone = workers
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["worker_id"] == leaving.as_str())
        .unwrap();
    assert_eq!(gone["reason"], format!("{leaving} left the cluster"));
    let status = assert_succeeds(&cluster, &job, &out, &sleep_reference(&files));
    let mine: Vec<&Value> = attempts(&status, "m")
        .into_iter()
        .filter(|a| a["worker_id"] == leaving.as_str())
        .collect();
    assert!(!mine.is_empty());
    assert!(mine.iter().all(|a| a["state"] == "succeeded"), "{mine:#?}");
}

#[test]
fn a_draining_worker_hands_back_what_outlasts_its_grace_period() {
    let mut cluster = Cluster::start_with(1, 2, &["--worker-timeout", "1s"]);
    let slow = cluster.add_worker_with(&["--grace-period", "300ms"]);
    let (corpus, files, out) = setup(&cluster);
    let job = submit_sleep(&cluster, &corpus, &out, 2500, 0);
    let slow_id = cluster.workers[slow].id.clone();
    let status = cluster
        .follow(&job)
        .until("a map runs on the short-grace worker", |s| {
            attempts(s, "m")
                .iter()
                .any(|a| a["worker_id"] == slow_id.as_str() && a["state"] == "running")
        });
    assert_eq!(status["state"], "running");
    cluster.signal_worker(slow, "TERM");
    assert!(cluster.wait_worker(slow).success());
    let status = assert_succeeds(&cluster, &job, &out, &sleep_reference(&files));
    let handed_back = attempts(&status, "m")
        .into_iter()
        .any(|a| a["state"] == "lost" && a["error"].as_str().unwrap().contains("handed back"));
    assert!(handed_back, "{status:#}");
}
