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

/// A word made of letters from a number, so word counts see it whole.
fn letters(mut n: usize) -> String {
    let mut word = String::from("x");
    loop {
        word.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
        if n == 0 {
            return word;
        }
    }
}

#[test]
fn a_small_memory_budget_spills_map_output_and_merges_it_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("words.txt");
    // About 3 MiB of 150k distinct words: each 1 MiB piece's combined
    // output is far above the spill threshold of a 1 MiB budget.
    let mut rng = Rng::new(11);
    let mut text = String::new();
    while text.len() < 3 << 20 {
        for _ in 0..12 {
            text.push_str(&letters(rng.below(150_000)));
            text.push(' ');
        }
        text.push('\n');
    }
    std::fs::write(&input, &text).unwrap();
    let expected = reference_wordcount(std::slice::from_ref(&input));

    let mut outputs = Vec::new();
    for budget in ["1MiB", "1GiB"] {
        let out = dir.path().join(format!("out-{budget}"));
        let output = run(&[
            "wordcount",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--reducers",
            "3",
            "--slots",
            "2",
            "--split-size",
            "3MiB",
            "--memory-budget",
            budget,
        ]);
        assert!(output.status.success(), "{}", describe(&output));
        let stdout = String::from_utf8(output.stdout).unwrap();
        let spilled = stdout.contains("map output records spilled to disk");
        assert_eq!(spilled, budget == "1MiB", "{stdout}");
        outputs.push(read_output(out.to_str().unwrap()));
    }
    assert_eq!(outputs[0], expected);
    assert_eq!(outputs[1], expected);
}
