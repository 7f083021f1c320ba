//! Bad input through the CLI: each case gets a clear error naming what and
//! where, only its own job fails, and the cluster runs the next job.

mod common;

use std::process::Command;

use common::*;

fn assert_mentions(stderr: &str, needles: &[&str]) {
    for needle in needles {
        assert!(stderr.contains(needle), "expected {needle:?} in:\n{stderr}");
    }
}

#[test]
fn submissions_with_bad_input_are_refused_and_the_cluster_stays_up() {
    let cluster = Cluster::start(2, 2, 2);
    let corpus = cluster.path("corpus");
    write_corpus(std::path::Path::new(&corpus));
    let out = cluster.path("out");
    let missing = cluster.path("no-such-dir");

    let stderr = cluster.fails(&["submit", "wordcount", "--input", &missing, "--output", &out]);
    assert_mentions(&stderr, &["input", &missing, "does not exist"]);

    let glob = format!("{corpus}/*.csv");
    let stderr = cluster.fails(&["submit", "wordcount", "--input", &glob, "--output", &out]);
    assert_mentions(&stderr, &[&glob, "matched no files"]);

    let stderr = cluster.fails(&["submit", "wordcont", "--input", &corpus, "--output", &out]);
    assert_mentions(
        &stderr,
        &[
            "unknown job `wordcont`",
            "wordcount",
            "inverted-index",
            "grep",
            "sleep",
        ],
    );

    let stderr = cluster.fails(&["submit", "grep", "--input", &corpus, "--output", &out]);
    assert_mentions(&stderr, &["missing required argument `pattern`"]);

    let stderr = cluster.fails(&submit_args(
        "grep",
        &corpus,
        &out,
        &["--arg", "pattern=(oops"],
    ));
    assert_mentions(&stderr, &["invalid value \"(oops\" for argument `pattern`"]);

    let stderr = cluster.fails(&submit_args(
        "sleep",
        &corpus,
        &out,
        &["--arg", "map_ms=soon"],
    ));
    assert_mentions(&stderr, &["map_ms", "soon"]);

    let stderr = cluster.fails(&submit_args(
        "wordcount",
        &corpus,
        &out,
        &["--arg", "colour=red"],
    ));
    assert_mentions(&stderr, &["unknown argument `colour`", "wordcount"]);

    let stderr = cluster.fails(&submit_args(
        "wordcount",
        &corpus,
        &out,
        &["--arg", "novalue"],
    ));
    assert_mentions(&stderr, &["--arg", "key=value"]);

    let stderr = cluster.fails(&submit_args(
        "wordcount",
        &corpus,
        &out,
        &["--reducers", "0"],
    ));
    assert_mentions(&stderr, &["--reducers must be at least 1"]);

    let stderr = cluster.fails(&submit_args(
        "wordcount",
        &corpus,
        &out,
        &["--split-size", "9 parsecs"],
    ));
    assert_mentions(&stderr, &["--split-size", "parsecs"]);

    let stderr = cluster.fails(&[
        "submit",
        "teragen",
        "--output",
        &out,
        "--arg",
        "rows=100001",
        "--arg",
        "rows_per_task=1",
    ]);
    assert_mentions(&stderr, &["100001 map tasks", "over the 100000"]);

    // An existing, non-empty output directory is never overwritten.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(format!("{out}/keep.txt"), "precious").unwrap();
    let stderr = cluster.fails(&["submit", "wordcount", "--input", &corpus, "--output", &out]);
    assert_mentions(&stderr, &[&out, "already exists and is not empty"]);
    assert_eq!(
        std::fs::read_to_string(format!("{out}/keep.txt")).unwrap(),
        "precious"
    );

    // None of that left a job behind, and the next job runs.
    let jobs: serde_json::Value = serde_json::from_str(&cluster.ok(&["jobs", "--json"])).unwrap();
    assert!(jobs.as_array().unwrap().is_empty(), "{jobs}");
    let good = cluster.path("good");
    cluster.ok(&submit_args("wordcount", &corpus, &good, &["--wait"]));
    assert!(!read_output(&good).is_empty());
}

#[test]
fn invalid_utf8_is_read_with_replacement_characters() {
    let cluster = Cluster::start(1, 2, 2);
    let input = cluster.path("latin1");
    std::fs::create_dir_all(&input).unwrap();
    // "café olé" in Latin-1, then valid UTF-8.
    std::fs::write(
        format!("{input}/old.txt"),
        b"caf\xe9 ol\xe9\r\nna\xc3\xafve caf\xc3\xa9\n",
    )
    .unwrap();
    let out = cluster.path("out");
    cluster.ok(&submit_args("wordcount", &input, &out, &["--wait"]));
    assert_eq!(
        read_output(&out),
        ["caf\t1", "café\t1", "naïve\t1", "ol\t1"]
    );
}

#[test]
fn a_task_that_keeps_failing_fails_its_job_with_the_reason_and_nothing_else() {
    let cluster = Cluster::start(2, 2, 2);
    let input = cluster.path("input");
    std::fs::create_dir_all(&input).unwrap();
    // inverted-index refuses file names with its separator in them.
    std::fs::write(format!("{input}/a,b.txt"), "some words\n").unwrap();
    std::fs::write(format!("{input}/fine.txt"), "other words\n").unwrap();
    let out = cluster.path("out");
    let output = cluster.harrow(&submit_args("inverted-index", &input, &out, &["--wait"]));
    assert!(!output.status.success(), "{}", describe(&output));
    let job = String::from_utf8(output.stdout).unwrap().trim().to_string();
    let status: serde_json::Value =
        serde_json::from_str(&cluster.ok(&["status", &job, "--json"])).unwrap();
    assert_eq!(status["state"], "failed");
    let error = status["error"].as_str().unwrap();
    assert_mentions(
        error,
        &[
            "map task",
            "a,b.txt",
            "after 2 attempts",
            "contains a comma",
        ],
    );
    assert_mentions(
        &String::from_utf8_lossy(&output.stderr),
        &["failed", "contains a comma"],
    );
    // No partial output is visible.
    let visible: Vec<_> = std::fs::read_dir(&out)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(visible.is_empty(), "{visible:?}");

    // The workers survived; the next job runs.
    std::fs::remove_file(format!("{input}/a,b.txt")).unwrap();
    let good = cluster.path("good");
    cluster.ok(&submit_args("inverted-index", &input, &good, &["--wait"]));
    assert_eq!(
        read_output(&good),
        ["other\t1\tfine.txt", "words\t1\tfine.txt"]
    );
}

#[test]
fn client_commands_name_an_unreachable_coordinator() {
    let output =
        bounded::run(Command::new(HARROW).args(["jobs", "--coordinator", "http://127.0.0.1:9"]));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach the coordinator at http://127.0.0.1:9"),
        "{stderr}"
    );

    let stderr = bounded::run(Command::new(HARROW).args([
        "status",
        "job-000777",
        "--coordinator",
        "http://127.0.0.1:9",
    ]));
    assert!(!stderr.status.success());
}

#[test]
fn unknown_job_ids_are_reported() {
    let cluster = Cluster::start(1, 1, 2);
    let stderr = cluster.fails(&["status", "job-000777"]);
    assert_mentions(&stderr, &["no job job-000777"]);
    let stderr = cluster.fails(&["cancel", "not-a-job"]);
    assert_mentions(&stderr, &["invalid job id \"not-a-job\""]);
}

#[test]
fn a_map_that_panics_on_one_record_fails_the_job_naming_file_and_offset() {
    let cluster = Cluster::start(2, 2, 3);
    let input = cluster.path("input");
    std::fs::create_dir_all(&input).unwrap();
    let poisoned = format!("{input}/b.txt");
    std::fs::write(format!("{input}/a.txt"), "calm\n").unwrap();
    std::fs::write(&poisoned, "line one\npoison pill\nline three\n").unwrap();
    let out = cluster.path("out");
    let output = cluster.harrow(&submit_args(
        "sleep",
        &input,
        &out,
        &["--arg", "fail_on=poison", "--wait"],
    ));
    assert!(!output.status.success(), "{}", describe(&output));
    let job = String::from_utf8(output.stdout).unwrap().trim().to_string();
    let status: serde_json::Value =
        serde_json::from_str(&cluster.ok(&["status", &job, "--json"])).unwrap();
    let error = status["error"].as_str().unwrap();
    assert_mentions(
        error,
        &[
            "failed after 3 attempts",
            &format!("at {poisoned}:9"),
            "panicked",
            "line contains \"poison\"",
        ],
    );
    // Every attempt failed the same way; the workers are still there.
    let failed = status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["attempts"].as_array().unwrap())
        .filter(|a| a["state"] == "failed")
        .count();
    assert_eq!(failed, 3);
    let workers: serde_json::Value =
        serde_json::from_str(&cluster.ok(&["workers", "--json"])).unwrap();
    assert_eq!(workers.as_array().unwrap().len(), 2);

    let good = cluster.path("good");
    cluster.ok(&[
        "submit", "sleep", "--input", &input, "--output", &good, "--wait",
    ]);
    assert_eq!(read_output(&good).len(), 2);
}
