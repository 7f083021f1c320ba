//! `harrow run`: the whole job in one process, same results as a cluster.

mod common;

use std::process::Command;

use common::*;

fn run(args: &[&str]) -> std::process::Output {
    bounded::run(Command::new(HARROW).arg("run").args(args))
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

#[test]
fn table_group_bys_fold_in_hash_tables_to_the_same_result_under_any_budget() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sales.csv");
    // 200k rows of 30k integer keys, 5k city names and values with some
    // nulls (empty fields): the map folds them in hash tables by integer,
    // by string and by row format.
    let mut rng = Rng::new(5);
    let mut csv = String::from("k,city,n\n");
    let mut expected: std::collections::BTreeMap<u64, (u64, i64, i64, i64)> = Default::default();
    let mut pairs = std::collections::BTreeSet::new();
    let mut cities = std::collections::BTreeSet::new();
    for _ in 0..200_000 {
        let k = rng.below(30_000) as u64;
        let city = letters(rng.below(5_000));
        let n = match rng.below(10) {
            0 => None,
            _ => Some(rng.below(2_000) as i64 - 1_000),
        };
        let value = n.map_or(String::new(), |n| n.to_string());
        csv.push_str(&format!("{k},{city},{value}\n"));
        let group = expected.entry(k).or_insert((0, 0, i64::MAX, i64::MIN));
        if let Some(n) = n {
            *group = (group.0 + 1, group.1 + n, group.2.min(n), group.3.max(n));
        }
        pairs.insert(format!("{city}\t{k}"));
        cities.insert(city);
    }
    std::fs::write(&input, &csv).unwrap();
    let expected: Vec<String> = expected
        .iter()
        .map(|(k, (count, sum, min, max))| match count {
            0 => format!("{k}\t0\t\t\t"),
            _ => format!("{k}\t{count}\t{sum}\t{min}\t{max}"),
        })
        .collect();
    let run_job = |job: &str, args: &[&str], budget: &str| {
        let out = dir.path().join(format!("{job}-{}-{budget}", args[0]));
        let mut command = vec![
            job,
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ];
        for arg in args {
            command.extend(["--arg", arg]);
        }
        command.extend([
            "--reducers",
            "3",
            "--slots",
            "2",
            "--split-size",
            "1MiB",
            "--memory-budget",
            budget,
        ]);
        let output = run(&command);
        assert!(output.status.success(), "{}", describe(&output));
        let stdout = String::from_utf8(output.stdout).unwrap();
        let spilled = stdout.contains("map output records spilled to disk");
        assert_eq!(spilled, budget == "1MiB", "{stdout}");
        read_output(out.to_str().unwrap())
    };
    for budget in ["1MiB", "1GiB"] {
        // Integer keys: count, sum, min and max as folded here (the mean,
        // the sixth field, follows from them).
        let lines = run_job("aggregate", &["key=k", "value=n"], budget);
        let mut folded: Vec<String> = lines
            .iter()
            .map(|line| line.rsplit_once('\t').unwrap().0.to_string())
            .collect();
        folded.sort_by_key(|line| line.split('\t').next().unwrap().parse::<u64>().unwrap());
        assert_eq!(folded, expected, "budget {budget}");
        // String keys: every city once, its counts adding up to the rows
        // with a value.
        let by_city = run_job("aggregate", &["key=city", "value=n"], budget);
        let names: Vec<&str> = by_city
            .iter()
            .map(|l| l.split('\t').next().unwrap())
            .collect();
        assert!(
            names.iter().copied().eq(cities.iter().map(String::as_str)),
            "budget {budget}"
        );
        let counted: u64 = by_city
            .iter()
            .map(|line| line.split('\t').nth(1).unwrap().parse::<u64>().unwrap())
            .sum();
        let with_value: u64 = expected
            .iter()
            .map(|line| line.split('\t').nth(1).unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(counted, with_value, "budget {budget}");
        // Two columns: keyed by their row format.
        let distinct = run_job("distinct", &["columns=city,k"], budget);
        assert_eq!(
            distinct,
            pairs.iter().cloned().collect::<Vec<_>>(),
            "budget {budget}"
        );
    }
}
