//! Table formats through the real binary: CSV, JSON lines and Parquet in,
//! text, CSV, JSON lines and Parquet out, through the aggregate and distinct
//! jobs, checked against computations in the test; quoted line breaks in
//! CSV; malformed records and corrupt files.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use common::{Cluster, Rng, describe};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;

const CITIES: &[&str] = &["oslo", "rome", "new york, ny", "lima", ""];

/// Per key: count, sum, min, max of the values.
type Statistics = BTreeMap<Option<String>, (i64, i64, i64, i64)>;

fn add(stats: &mut Statistics, key: Option<String>, value: i64) {
    let entry = stats.entry(key).or_insert((0, 0, i64::MAX, i64::MIN));
    entry.0 += 1;
    entry.1 += value;
    entry.2 = entry.2.min(value);
    entry.3 = entry.3.max(value);
}

/// A CSV of `rows` sales (city, qty, price) and its statistics of qty per
/// city; an empty city is null.
fn sales_csv(rng: &mut Rng, rows: usize) -> (String, Statistics) {
    let mut text = String::from("city,qty,price\n");
    let mut stats = Statistics::new();
    for _ in 0..rows {
        let city = CITIES[rng.below(CITIES.len())];
        let qty = rng.below(200) as i64 - 50;
        let price = rng.below(10_000) as f64 / 100.0;
        let field = if city.contains(',') {
            format!("\"{city}\"")
        } else {
            city.to_string()
        };
        text.push_str(&format!("{field},{qty},{price}\n"));
        add(
            &mut stats,
            (!city.is_empty()).then(|| city.to_string()),
            qty,
        );
    }
    (text, stats)
}

/// The committed files of a job's output with `extension`, after checking
/// `_SUCCESS` is there and nothing else is.
fn part_files(dir: &str, extension: &str) -> Vec<std::path::PathBuf> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.contains(&"_SUCCESS".to_string()), "{names:?}");
    names
        .iter()
        .filter(|n| *n != "_SUCCESS")
        .map(|n| {
            assert!(
                n.starts_with("part-r-") && n.ends_with(extension),
                "unexpected {n} in {dir}"
            );
            Path::new(dir).join(n)
        })
        .collect()
}

fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    reader.map(Result::unwrap).collect()
}

/// The statistics an aggregate job wrote as Parquet, checking its schema.
fn aggregate_parquet_output(dir: &str) -> Statistics {
    let mut stats = Statistics::new();
    for path in part_files(dir, ".parquet") {
        for batch in read_parquet(&path) {
            let types: Vec<&DataType> = batch
                .schema_ref()
                .fields()
                .iter()
                .map(|f| f.data_type())
                .collect();
            assert_eq!(
                types,
                [
                    &DataType::Utf8,
                    &DataType::Int64,
                    &DataType::Int64,
                    &DataType::Int64,
                    &DataType::Int64,
                    &DataType::Float64
                ]
            );
            let city = batch.column(0).as_string::<i32>();
            let int = |i: usize| batch.column(i).as_primitive::<Int64Type>().clone();
            let (count, sum, min, max) = (int(1), int(2), int(3), int(4));
            let mean = batch.column(5).as_primitive::<Float64Type>();
            for row in 0..batch.num_rows() {
                let key = city.is_valid(row).then(|| city.value(row).to_string());
                let values = (
                    count.value(row),
                    sum.value(row),
                    min.value(row),
                    max.value(row),
                );
                let expected_mean = values.1 as f64 / values.0 as f64;
                assert!((mean.value(row) - expected_mean).abs() < 1e-9);
                assert!(stats.insert(key, values).is_none(), "a key written twice");
            }
        }
    }
    stats
}

fn status(cluster: &Cluster, job: &str) -> serde_json::Value {
    serde_json::from_str(&cluster.ok(&["status", job, "--json"])).unwrap()
}

#[test]
fn table_formats_round_trip_through_aggregate_and_distinct() {
    let cluster = Cluster::start(2, 2, 2);
    let mut rng = Rng::new(7);
    let input = cluster.path("sales");
    std::fs::create_dir_all(&input).unwrap();
    let mut expected = Statistics::new();
    for part in 0..3 {
        let (text, stats) = sales_csv(&mut rng, 3000);
        // One file compressed: read whole, its header found the same way.
        if part == 2 {
            let compressed = common::compress("gz", text.as_bytes());
            std::fs::write(format!("{input}/part-{part}.csv.gz"), compressed).unwrap();
        } else {
            std::fs::write(format!("{input}/part-{part}.csv"), text).unwrap();
        }
        for (key, (count, sum, min, max)) in stats {
            let entry = expected.entry(key).or_insert((0, 0, i64::MAX, i64::MIN));
            *entry = (
                entry.0 + count,
                entry.1 + sum,
                entry.2.min(min),
                entry.3.max(max),
            );
        }
    }

    // CSV in, Parquet out, many splits per file.
    let out = cluster.path("by-city");
    let job = cluster
        .ok(&[
            "submit",
            "aggregate",
            "--arg",
            "key=city",
            "--arg",
            "value=qty",
            "--input",
            &input,
            "--output",
            &out,
            "--output-format",
            "parquet",
            "--split-size",
            "8KiB",
            "--wait",
        ])
        .trim()
        .to_string();
    assert_eq!(aggregate_parquet_output(&out), expected);
    let report = status(&cluster, &job);
    assert_eq!(report["input_format"], "csv");
    assert_eq!(report["output_format"], "parquet");
    assert_eq!(
        report["input_columns"],
        serde_json::json!(["city: Utf8", "qty: Int64", "price: Float64"])
    );
    assert!(report["map"]["total"].as_u64().unwrap() > 3, "{report}");
    assert_eq!(report["input_records"], 9000);

    // Parquet in (several row groups per file, split across tasks),
    // JSON lines out: the distinct cities.
    let tables = cluster.path("tables");
    std::fs::create_dir_all(&tables).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("city", DataType::Utf8, true),
        Field::new("qty", DataType::Int64, false),
        Field::new("price", DataType::Float64, false),
    ]));
    let mut parquet_expected = Statistics::new();
    for part in 0..2 {
        let rows = 5000;
        let cities: Vec<Option<&str>> = (0..rows)
            .map(|_| Some(CITIES[rng.below(CITIES.len())]).filter(|c| !c.is_empty()))
            .collect();
        let qty: Vec<i64> = (0..rows).map(|_| rng.below(1000) as i64).collect();
        for (city, qty) in cities.iter().zip(&qty) {
            add(&mut parquet_expected, city.map(str::to_string), *qty);
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(cities)),
                Arc::new(Int64Array::from(qty)),
                Arc::new(Float64Array::from(vec![1.5; rows])),
            ],
        )
        .unwrap();
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(700))
            .build();
        let file = File::create(format!("{tables}/t-{part}.parquet")).unwrap();
        let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(properties)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }
    let distinct = cluster.path("cities");
    cluster.ok(&[
        "submit",
        "distinct",
        "--arg",
        "columns=city",
        "--input",
        &format!("{tables}/*.parquet"),
        "--output",
        &distinct,
        "--output-format",
        "jsonl",
        "--split-size",
        "4KiB",
        "--wait",
    ]);
    let mut lines: Vec<String> = part_files(&distinct, ".jsonl")
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            text.lines().map(str::to_string).collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "{\"city\":\"lima\"}",
            "{\"city\":\"new york, ny\"}",
            "{\"city\":\"oslo\"}",
            "{\"city\":\"rome\"}",
            "{}"
        ]
    );
    // The same Parquet through aggregate, every row group counted once.
    let parquet_out = cluster.path("parquet-by-city");
    cluster.ok(&[
        "submit",
        "aggregate",
        "--arg",
        "key=city",
        "--arg",
        "value=qty",
        "--input",
        &tables,
        "--output",
        &parquet_out,
        "--output-format",
        "parquet",
        "--split-size",
        "4KiB",
        "--wait",
    ]);
    assert_eq!(aggregate_parquet_output(&parquet_out), parquet_expected);

    // JSON lines in, CSV out with a header in every file.
    let events = cluster.path("events.jsonl");
    let mut text = String::new();
    let mut users: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for i in 0..2000 {
        let user = format!("u{}", rng.below(9));
        let ms = rng.below(5000) as i64;
        text.push_str(&format!("{{\"user\":\"{user}\",\"ms\":{ms},\"i\":{i}}}\n"));
        let entry = users.entry(user).or_default();
        entry.0 += 1;
        entry.1 += ms;
    }
    std::fs::write(&events, text).unwrap();
    let csv_out = cluster.path("by-user");
    cluster.ok(&[
        "submit",
        "aggregate",
        "--arg",
        "key=user",
        "--arg",
        "value=ms",
        "--input",
        &events,
        "--output",
        &csv_out,
        "--output-format",
        "csv",
        "--split-size",
        "16KiB",
        "--reducers",
        "3",
        "--wait",
    ]);
    let mut seen = BTreeMap::new();
    for path in part_files(&csv_out, ".csv") {
        let text = std::fs::read_to_string(path).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("user,count,sum,min,max,mean"));
        for line in lines {
            let fields: Vec<&str> = line.split(',').collect();
            seen.insert(
                fields[0].to_string(),
                (fields[1].parse().unwrap(), fields[2].parse().unwrap()),
            );
        }
    }
    assert_eq!(seen, users);
}

#[test]
fn quoted_line_breaks_in_csv_are_read_whole_or_fail_the_job() {
    let cluster = Cluster::start(2, 2, 2);
    // Each note is a quoted field over many lines that look like records.
    let mut text = String::from("id,note\n");
    for id in 0..40 {
        let note: Vec<String> = (0..20).map(|l| format!("{id}-{l},x")).collect();
        text.push_str(&format!("{id},\"{}\"\n", note.join("\n")));
    }
    let input = cluster.path("notes.csv");
    std::fs::write(&input, &text).unwrap();

    // One split per file: every record whole.
    let whole = cluster.path("whole");
    cluster.ok(&[
        "submit",
        "distinct",
        "--arg",
        "columns=id",
        "--input",
        &input,
        "--output",
        &whole,
        "--split-size",
        "0",
        "--reducers",
        "1",
        "--wait",
    ]);
    let ids: BTreeSet<i64> = common::read_output(&whole)
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(ids, (0..40).collect());

    // Small splits start inside quoted fields. Skipping the garbage that
    // makes is not enough: the splits do not meet, and the job fails.
    let split = cluster.path("split");
    let output = cluster.harrow(&[
        "submit",
        "distinct",
        "--arg",
        "columns=id",
        "--input",
        &input,
        "--output",
        &split,
        "--split-size",
        "1KiB",
        "--skip-bad-records",
        "1000000",
        "--wait",
    ]);
    assert!(!output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("notes.csv: the records before split boundary")
            && stderr.contains("--split-size 0"),
        "{stderr}"
    );
    assert!(!Path::new(&split).join("_SUCCESS").exists());
    let visible: Vec<_> = std::fs::read_dir(&split)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(visible.is_empty(), "{visible:?}");
}

#[test]
fn malformed_table_input_is_named_skipped_within_budget_and_the_cluster_stays_up() {
    let cluster = Cluster::start(2, 2, 2);
    let run = |args: &[&str]| {
        let mut all = vec!["submit", "aggregate", "--arg", "key=k", "--arg", "value=v"];
        all.extend_from_slice(args);
        all.push("--wait");
        cluster.harrow(&all)
    };
    let failed = |args: &[&str], needles: &[&str]| {
        let output = run(args);
        assert!(!output.status.success(), "{}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        for needle in needles {
            assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
        }
    };

    // A CSV row with too few fields, a value of the wrong type.
    let csv = cluster.path("bad.csv");
    std::fs::write(&csv, "k,v\na,1\nb\nc,x\nd,4\n").unwrap();
    let out = cluster.path("o1");
    failed(
        &[
            "--input",
            &csv,
            "--output",
            &out,
            "--schema",
            "k:string,v:int",
        ],
        &[
            "bad.csv at byte 8",
            "number of fields",
            "--skip-bad-records",
        ],
    );
    assert!(!Path::new(&out).exists() || std::fs::read_dir(&out).unwrap().next().is_none());

    // Within the budget: skipped, counted and listed.
    let out = cluster.path("o2");
    let output = run(&[
        "--input",
        &csv,
        "--output",
        &out,
        "--schema",
        "k:string,v:int",
        "--skip-bad-records",
        "2",
    ]);
    assert!(output.status.success(), "{}", describe(&output));
    let job = String::from_utf8(output.stdout).unwrap().trim().to_string();
    assert_eq!(
        common::read_output(&out),
        ["a\t1\t1\t1\t1\t1.0", "d\t1\t4\t4\t4\t4.0"]
    );
    let report = status(&cluster, &job);
    assert_eq!(report["bad_records"]["skipped"], 2);
    assert_eq!(report["bad_records"]["limit"], 2);
    let offsets: Vec<u64> = report["bad_records"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [8, 10]);
    let text = cluster.ok(&["status", &job]);
    assert!(text.contains("bad records: 2 skipped"), "{text}");
    // One fewer allowed: the job fails.
    let out = cluster.path("o3");
    failed(
        &[
            "--input",
            &csv,
            "--output",
            &out,
            "--schema",
            "k:string,v:int",
            "--skip-bad-records",
            "1",
        ],
        &["exceed --skip-bad-records 1"],
    );

    // Malformed JSON.
    let json = cluster.path("bad.jsonl");
    std::fs::write(&json, "{\"k\":\"a\",\"v\":1}\n{\"k\":\"b\",\"v\":\n").unwrap();
    let out = cluster.path("o4");
    failed(
        &[
            "--input",
            &json,
            "--output",
            &out,
            "--schema",
            "k:string,v:int",
        ],
        &["bad.jsonl at byte 16"],
    );

    // Parquet: a good file, then a truncated one.
    let dir = cluster.path("pq");
    std::fs::create_dir_all(&dir).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("v", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["a", "b"])),
            Arc::new(Int64Array::from(vec![1, 2])),
        ],
    )
    .unwrap();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    std::fs::write(format!("{dir}/a.parquet"), &bytes).unwrap();
    std::fs::write(format!("{dir}/b.parquet"), &bytes[..bytes.len() - 12]).unwrap();
    let out = cluster.path("o5");
    failed(
        &["--input", &dir, "--output", &out],
        &["reading Parquet file", "b.parquet"],
    );
    // Only the truncated file: refused at submission, naming it.
    let out = cluster.path("o6");
    failed(
        &["--input", &format!("{dir}/b.parquet"), "--output", &out],
        &["submit failed", "reading Parquet file", "b.parquet"],
    );

    // Still up: the good file aggregates.
    let out = cluster.path("o7");
    let output = run(&["--input", &format!("{dir}/a.parquet"), "--output", &out]);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        common::read_output(&out),
        ["a\t1\t1\t1\t1\t1.0", "b\t1\t2\t2\t2\t2.0"]
    );
}
