//! TeraSort through the CLI on a cluster of processes: teragen writes
//! records, terasort orders them across part files with its sampled
//! total-order partitioner, teravalidate checks order, count and checksum.

mod common;

use std::process::Command;

use common::*;

const ROWS: usize = 30_000;
const RECORD: usize = 100;

/// The value of a job's counter `name`, from `harrow status --json`.
fn counter(cluster: &Cluster, job: &str, name: &str) -> u64 {
    let status: serde_json::Value =
        serde_json::from_str(&cluster.ok(&["status", job.trim(), "--json"])).unwrap();
    status["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {status}"))
}

/// The part files of `dir` in name order.
fn part_files(dir: &str) -> Vec<Vec<u8>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("part-r-"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|name| std::fs::read(std::path::Path::new(dir).join(name)).unwrap())
        .collect()
}

fn records(bytes: &[u8]) -> Vec<&[u8]> {
    assert_eq!(bytes.len() % RECORD, 0, "whole records");
    let records: Vec<&[u8]> = bytes.chunks(RECORD).collect();
    assert!(records.iter().all(|r| r.ends_with(b"\r\n")));
    records
}

/// Every record of the part files of `dir`, in file order.
fn all_records(dir: &str) -> Vec<Vec<u8>> {
    part_files(dir)
        .iter()
        .flat_map(|f| records(f).into_iter().map(<[u8]>::to_vec))
        .collect()
}

#[test]
fn terasort_orders_generated_records_across_part_files() {
    let cluster = Cluster::start(2, 2, 4);
    let generated = cluster.path("generated");
    let job = cluster.ok(&[
        "submit",
        "teragen",
        "--arg",
        &format!("rows={ROWS}"),
        "--arg",
        "rows_per_task=7000",
        "--output",
        &generated,
        "--reducers",
        "3",
        "--wait",
    ]);
    assert_eq!(counter(&cluster, &job, "records"), ROWS as u64);
    let checksum = counter(&cluster, &job, "checksum");
    let mut input = all_records(&generated);
    assert_eq!(input.len(), ROWS);

    // Generated records are not sorted, and teravalidate says where.
    let unsorted = cluster.path("unsorted-report");
    let error = cluster.fails(&submit_args(
        "teravalidate",
        &generated,
        &unsorted,
        &["--reducers", "1", "--wait"],
    ));
    assert!(
        error.contains("records are not sorted: part-r-00000 at byte"),
        "{error}"
    );

    let sorted = cluster.path("sorted");
    cluster.ok(&submit_args(
        "terasort",
        &generated,
        &sorted,
        &["--reducers", "5", "--split-size", "256KiB", "--wait"],
    ));
    let parts = part_files(&sorted);
    assert_eq!(parts.len(), 5);
    // The sample's quantiles balance the partitions.
    for part in &parts {
        let share = part.len() / RECORD;
        assert!(
            share > ROWS / 5 / 2 && share < ROWS / 5 * 3 / 2,
            "unbalanced partitions: {:?}",
            parts.iter().map(|p| p.len() / RECORD).collect::<Vec<_>>()
        );
    }
    let output: Vec<&[u8]> = parts.iter().flat_map(|p| records(p)).collect();
    assert!(
        output.windows(2).all(|w| w[0][..10] <= w[1][..10]),
        "part files concatenated are sorted by key"
    );
    let mut output: Vec<Vec<u8>> = output.into_iter().map(<[u8]>::to_vec).collect();
    output.sort();
    input.sort();
    assert!(output == input, "the same records, each once");

    let report = cluster.path("report");
    let job = cluster.ok(&submit_args(
        "teravalidate",
        &sorted,
        &report,
        &["--reducers", "1", "--wait"],
    ));
    assert_eq!(counter(&cluster, &job, "checksum"), checksum);
    assert_eq!(
        read_output(&report),
        [
            format!("checksum\t{checksum}"),
            format!("records\t{ROWS}"),
            "sorted\ttrue".to_string(),
        ]
    );
}

#[test]
fn terasort_jobs_refuse_bad_submissions_and_records() {
    let cluster = Cluster::start(1, 2, 2);
    let input = cluster.path("records.txt");
    std::fs::write(&input, "0123456789 fine\nshort\n").unwrap();

    let error = cluster.fails(&[
        "submit",
        "teragen",
        "--arg",
        "rows=10",
        "--input",
        &input,
        "--output",
        &cluster.path("a"),
    ]);
    assert!(
        error.contains("job `teragen` generates its own input; drop --input"),
        "{error}"
    );
    let error = cluster.fails(&["submit", "teragen", "--output", &cluster.path("b")]);
    assert!(error.contains("rows"), "{error}");
    let error = cluster.fails(&["submit", "terasort", "--output", &cluster.path("c")]);
    assert!(error.contains("no input given"), "{error}");

    // A record too short for a key fails the job, named by file and byte.
    let error = cluster.fails(&submit_args(
        "terasort",
        &input,
        &cluster.path("d"),
        &["--reducers", "1", "--wait"],
    ));
    assert!(error.contains("records.txt:16"), "{error}");
    assert!(
        error.contains("a record of 5 bytes has no 10-byte key"),
        "{error}"
    );
}

#[test]
fn terasort_spills_past_a_small_memory_budget_and_still_sorts() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let output = bounded::run(Command::new(HARROW).arg("run").args(args));
        assert!(output.status.success(), "{}", describe(&output));
        String::from_utf8(output.stdout).unwrap()
    };
    run(&["teragen", "--arg", "rows=20000", "--output", &path("gen")]);
    let summary = run(&[
        "terasort",
        "--input",
        &path("gen"),
        "--output",
        &path("sorted"),
        "--reducers",
        "3",
        "--split-size",
        "2MiB",
        "--memory-budget",
        "1MiB",
    ]);
    // Every piece outgrows the budget: all records are spilled and merged.
    assert!(
        summary.contains("20000 map output records spilled to disk"),
        "{summary}"
    );
    let mut input = all_records(&path("gen"));
    let parts = part_files(&path("sorted"));
    let output: Vec<&[u8]> = parts.iter().flat_map(|p| records(p)).collect();
    assert!(output.windows(2).all(|w| w[0][..10] <= w[1][..10]));
    let mut output: Vec<Vec<u8>> = output.into_iter().map(<[u8]>::to_vec).collect();
    output.sort();
    input.sort();
    assert!(output == input, "the same records, each once");
}
