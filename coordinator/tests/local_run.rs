//! `harrow run`: the whole job in one process, same results as a cluster.

mod common;

use std::process::Command;

use common::*;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(HARROW).arg("run").args(args).output().unwrap()
}

#[test]
fn run_matches_sequential_wordcount_and_inverted_index() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    let files = write_corpus(&corpus);
    let corpus = corpus.to_str().unwrap();

    let out = dir.path().join("wc");
    let output = run(&[
        "wordcount",
        "--input",
        corpus,
        "--output",
        out.to_str().unwrap(),
        "--reducers",
        "10",
        "--workers",
        "2",
        "--split-size",
        "700",
    ]);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        read_output(out.to_str().unwrap()),
        reference_wordcount(&files)
    );
    // The one-line summary on stdout.
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(
        stdout.starts_with("job-000001 wordcount succeeded:"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("{total} input bytes")), "{stdout}");
    assert!(stdout.contains("in 10 output files"), "{stdout}");
    // Plain progress lines on a non-terminal stderr.
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("job-000001 running: map"), "{stderr}");

    let out = dir.path().join("index");
    let output = run(&[
        "inverted-index",
        "--input",
        corpus,
        "--output",
        out.to_str().unwrap(),
        "--reducers",
        "10",
    ]);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        read_output(out.to_str().unwrap()),
        reference_inverted_index(&files)
    );
}

#[test]
fn run_with_bad_input_exits_non_zero_with_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let out = dir.path().join("out");
    let output = run(&[
        "wordcount",
        "--input",
        missing.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(&format!("input {} does not exist", missing.display())),
        "{stderr}"
    );

    let output = run(&[
        "nosuchjob",
        "--input",
        ".",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown job `nosuchjob`"));
}
