//! Job plugins through the CLI: a user's job crate built as a cdylib and
//! submitted to a cluster of real processes; plugins that are broken or
//! whose code crashes, aborts, panics or hangs; a plugin built against an
//! older Arrow; and the crate `harrow new` scaffolds.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use common::*;

/// Serializes plugin builds: `cargo rustc` with other flags rewrites the
/// same artifact, so each build is copied out before the next starts.
static BUILD: Mutex<()> = Mutex::new(());

/// The workspace root.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The target directory this test binary was built into.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .ancestors()
        .nth(3)
        .unwrap()
        .to_path_buf()
}

/// Settings for a crate built outside the workspace (its own Arrow, so
/// nothing to share with the workspace's build): its own target dir, and
/// no debug info, which nearly halves building Arrow from scratch.
fn separate_build(command: &mut Command, target: &Path) {
    command
        .env("CARGO_TARGET_DIR", target)
        .env("CARGO_PROFILE_DEV_DEBUG", "false");
}

/// Runs cargo (in `dir`, with JSON messages) and returns the cdylib it built.
fn cargo_cdylib(dir: &Path, args: &[&str], target: Option<&Path>) -> PathBuf {
    let mut command = Command::new(env!("CARGO"));
    // The message format goes before any `--` that starts rustc's flags.
    command
        .current_dir(dir)
        .arg(args[0])
        .arg("--message-format=json-render-diagnostics")
        .args(&args[1..]);
    if let Some(target) = target {
        separate_build(&mut command, target);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "cargo {args:?} failed:\n{}",
        describe(&output)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .rfind(|f| f.extension().is_some_and(|e| e == "so"))
        .unwrap_or_else(|| panic!("cargo {args:?} built no shared library"))
}

/// Builds a workspace package's plugin (`extra` are rustc flags for its own
/// crate) and returns a copy at `dest`.
fn plugin(package: &str, extra: &[&str], dest: &Path) -> PathBuf {
    let _build = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let built = if extra.is_empty() {
        cargo_cdylib(&workspace(), &["build", "-p", package, "--lib"], None)
    } else {
        let mut args = vec!["rustc", "-p", package, "--lib", "--crate-type", "cdylib"];
        args.extend([["--"].as_slice(), extra].concat());
        cargo_cdylib(&workspace(), &args, None)
    };
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::copy(&built, dest).unwrap();
    dest.to_path_buf()
}

/// Sample readings: per file a header, `stations` × `per_station` lines,
/// and one malformed line; returns the highest reading per station-year.
fn write_readings(dir: &Path, years: &[u32], stations: usize) -> BTreeMap<(String, i64), f64> {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng::new(7);
    let mut max = BTreeMap::new();
    for year in years {
        let mut text = String::from("station,date,temperature_c\n");
        for _ in 0..stations * 40 {
            let station = format!("ST{:03}", rng.below(stations));
            let celsius = format!("{:.1}", (rng.below(700) as f64 - 250.0) / 10.0);
            text.push_str(&format!(
                "{station},{year}-07-{:02},{celsius}\n",
                rng.below(28) + 1
            ));
            let value: f64 = celsius.parse().unwrap();
            let entry = max
                .entry((station, i64::from(*year)))
                .or_insert(f64::NEG_INFINITY);
            *entry = f64::max(*entry, value);
        }
        text.push_str("this is not a reading\n");
        std::fs::write(dir.join(format!("readings-{year}.csv")), text).unwrap();
    }
    max
}

fn status_json(cluster: &Cluster, job: &str) -> serde_json::Value {
    serde_json::from_str(&cluster.ok(&["status", job, "--json"])).unwrap()
}

fn so_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "so"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_user_job_crate_runs_on_a_cluster_as_a_plugin() {
    let cluster = Cluster::start(2, 2, 2);
    let library = plugin(
        "harrow-example-max-temperature",
        &[],
        &cluster.dir.path().join("build/libmax_temperature.so"),
    );
    let library = library.to_str().unwrap();
    let input = cluster.path("readings");
    let expected = write_readings(Path::new(&input), &[2021, 2022, 2023], 12);
    let out = cluster.path("out");
    let stdout = cluster.ok(&[
        "submit",
        "--plugin",
        library,
        "max-temperature",
        "--input-format",
        "text",
        "--input",
        &input,
        "--output",
        &out,
        "--reducers",
        "3",
        "--split-size",
        "4KiB",
        "--wait",
    ]);
    let job = stdout.lines().next().unwrap();

    let mut found = BTreeMap::new();
    for line in read_output(&out) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [station, year, max] = fields[..] else {
            panic!("bad output line {line:?}");
        };
        let key = (station.to_string(), year.parse::<i64>().unwrap());
        found.insert(key, max.parse::<f64>().unwrap());
    }
    assert_eq!(found, expected);

    let status = status_json(&cluster, job);
    assert_eq!(status["counters"]["malformed_readings"], 3, "{status}");
    assert_eq!(
        status["counters"]["station_years"],
        expected.len(),
        "{status}"
    );
    let sha256 = harrow_plugin::sha256_hex(&std::fs::read(library).unwrap());
    assert_eq!(status["plugin"]["sha256"], sha256.as_str());
    assert_eq!(status["plugin"]["file_name"], "libmax_temperature.so");
    let text = cluster.ok(&["status", job]);
    assert!(text.contains("plugin:  libmax_temperature.so"), "{text}");
    assert!(text.contains("malformed_readings: 3"), "{text}");

    // The same bytes again: stored once at the coordinator, fetched at most
    // once per worker; the job's own argument changes the output.
    let out_f = cluster.path("out-fahrenheit");
    cluster.ok(&[
        "submit",
        "--plugin",
        library,
        "max-temperature",
        "--arg",
        "unit=fahrenheit",
        "--input-format",
        "text",
        "--input",
        &input,
        "--output",
        &out_f,
        "--wait",
    ]);
    let hottest = read_output(&out_f)
        .iter()
        .map(|l| l.rsplit('\t').next().unwrap().parse::<f64>().unwrap())
        .fold(f64::NEG_INFINITY, f64::max);
    let expected_hottest = expected.values().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    assert!((hottest - (expected_hottest * 9.0 / 5.0 + 32.0)).abs() < 1e-9);
    assert_eq!(so_files(&cluster.dir.path().join("plugins")).len(), 1);
    for worker in &cluster.workers {
        assert!(so_files(&worker.work_dir.join("plugins")).len() <= 1);
    }
    // The plugin's log lines reach the worker's log with the attempt.
    let logs = cluster.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("skipping malformed reading") && l.contains("attempt")),
        "{logs}"
    );
}

/// `harrow submit --wait` of a plugin's job with `--arg mode=MODE`.
fn submit(
    cluster: &Cluster,
    input: &str,
    library: &Path,
    job: &str,
    mode: &str,
    out: &str,
) -> std::process::Output {
    cluster.harrow(&[
        "submit",
        "--plugin",
        library.to_str().unwrap(),
        job,
        "--arg",
        &format!("mode={mode}"),
        "--input",
        input,
        "--output",
        &cluster.path(out),
        "--wait",
    ])
}

#[test]
fn broken_and_misbehaving_plugins_fail_only_their_job() {
    let mut cluster = Cluster::start_with(2, 1, &["--max-attempts", "2", "--stall-timeout", "3s"]);
    let build = cluster.dir.path().join("build");
    let misbehave = plugin("harrow-test-misbehave", &[], &build.join("libmisbehave.so"));
    let aborting = plugin(
        "harrow-test-misbehave",
        &["-C", "panic=abort"],
        &build.join("libmisbehave_abort.so"),
    );
    let bad_abi = plugin("harrow-test-bad-abi", &[], &build.join("libbad_abi.so"));
    let garbage = build.join("libgarbage.so");
    std::fs::write(&garbage, "this is not an ELF file").unwrap();
    let input = cluster.path("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(format!("{input}/a.txt"), "one\ntwo\nthree\n").unwrap();
    std::fs::write(format!("{input}/b.txt"), "four\n").unwrap();

    let refused = |library: &Path, job: &str, mode: &str, needles: &[&str]| {
        let output = submit(&cluster, &input, library, job, mode, "refused");
        assert!(!output.status.success(), "{}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        for needle in needles {
            assert!(stderr.contains(needle), "expected {needle:?} in:\n{stderr}");
        }
    };
    refused(
        &garbage,
        "misbehave",
        "ok",
        &["libgarbage.so", "not a loadable shared library"],
    );
    refused(
        &bad_abi,
        "misbehave",
        "ok",
        &["ABI version 999", "speaks version 1", "rebuild"],
    );
    refused(
        &aborting,
        "misbehave",
        "ok",
        &["panic = \"abort\"", "rebuild"],
    );
    refused(
        &misbehave,
        "misbehave",
        "fail-create",
        &["refusing to build, as asked"],
    );
    refused(
        &misbehave,
        "nope",
        "ok",
        &["no job `nope`", "it exports: misbehave"],
    );
    let output = cluster.harrow(&[
        "submit",
        "--plugin",
        misbehave.to_str().unwrap(),
        "misbehave",
        "--input",
        &input,
        "--output",
        &cluster.path("refused"),
    ]);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("missing required argument `mode`"),
        "{}",
        describe(&output)
    );

    // Job code that fails at run time: the job fails with what happened,
    // the workers stay up.
    for (mode, needles) in [
        ("panic-map", &["panicked", "map broke\\0here"][..]),
        ("panic-combine", &["panicked", "combine broke"]),
        ("panic-reduce", &["panicked", "reduce broke on"]),
        (
            "abort",
            &["plugin host process was killed by signal 6", "SIGABRT"],
        ),
        (
            "segfault",
            &["plugin host process was killed by signal 11", "SIGSEGV"],
        ),
        ("hang", &["made no progress", "killed as hung"]),
    ] {
        let output = submit(
            &cluster,
            &input,
            &misbehave,
            "misbehave",
            mode,
            &format!("out-{mode}"),
        );
        assert!(!output.status.success(), "{mode}: {}", describe(&output));
        let job = String::from_utf8(output.stdout).unwrap();
        let status = status_json(&cluster, job.trim());
        assert_eq!(status["state"], "failed", "{mode}: {status}");
        let error = status["error"].as_str().unwrap();
        for needle in needles {
            assert!(
                error.contains(needle),
                "{mode}: expected {needle:?} in {error}"
            );
        }
        cluster.assert_workers_alive();
    }

    // The cluster runs the next jobs, plugin and built-in.
    let output = submit(&cluster, &input, &misbehave, "misbehave", "ok", "out-ok");
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        read_output(&cluster.path("out-ok")),
        ["a.txt\t3", "b.txt\t1"]
    );
    cluster.ok(&[
        "submit",
        "wordcount",
        "--input",
        &input,
        "--output",
        &cluster.path("out-wordcount"),
        "--wait",
    ]);
    cluster.assert_workers_alive();

    // A plugin's job can ask for total order: the coordinator samples it
    // in a plugin host of its own and the part files come out in order.
    let lines = cluster.path("lines");
    std::fs::create_dir_all(&lines).unwrap();
    let text: String = (0..3000)
        .map(|i| format!("line {:05}\n", (i * 7919) % 3000))
        .collect();
    std::fs::write(format!("{lines}/lines.txt"), text).unwrap();
    let ordered = cluster.path("out-ordered");
    cluster.ok(&[
        "submit",
        "--plugin",
        misbehave.to_str().unwrap(),
        "ordered",
        "--input",
        &lines,
        "--output",
        &ordered,
        "--reducers",
        "3",
        "--split-size",
        "8KiB",
        "--wait",
    ]);
    let mut parts: Vec<String> = std::fs::read_dir(&ordered)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("part-r-"))
        .collect();
    parts.sort();
    let in_file_order: Vec<String> = parts
        .iter()
        .flat_map(|part| {
            let text = std::fs::read_to_string(format!("{ordered}/{part}")).unwrap();
            text.lines().map(str::to_string).collect::<Vec<_>>()
        })
        .collect();
    let expected: Vec<String> = (0..3000).map(|i| format!("line {i:05}\t1")).collect();
    assert_eq!(
        in_file_order, expected,
        "part files concatenated are sorted"
    );
    let empty = parts
        .iter()
        .filter(|part| {
            std::fs::metadata(format!("{ordered}/{part}"))
                .unwrap()
                .len()
                == 0
        })
        .count();
    assert_eq!(
        empty, 0,
        "the sampled bounds spread the keys over all reducers"
    );
}

#[test]
fn a_plugin_built_against_an_older_arrow_runs() {
    let crate_dir = workspace().join("cli/tests/plugins/old-arrow");
    let lock = std::fs::read_to_string(crate_dir.join("Cargo.lock")).unwrap();
    assert!(
        lock.contains("name = \"arrow\"\nversion = \"57."),
        "the lock file must pin Arrow 57"
    );
    assert!(!lock.contains("name = \"arrow\"\nversion = \"60."));
    let library = {
        let _build = BUILD.lock().unwrap_or_else(|e| e.into_inner());
        let target = target_dir().join("plugin-tests");
        cargo_cdylib(&crate_dir, &["build", "--locked", "--lib"], Some(&target))
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.txt"), "a\nb\nc\n").unwrap();
    std::fs::write(dir.path().join("y.txt"), "d\n").unwrap();
    let out = dir.path().join("out");
    let output = bounded::run(
        Command::new(HARROW)
            .args([
                "run",
                "--plugin",
                library.to_str().unwrap(),
                "old-arrow-lines",
            ])
            .args(["--reducers", "1", "--input"])
            .arg(dir.path().join("x.txt"))
            .arg(dir.path().join("y.txt"))
            .arg("--output")
            .arg(&out),
    );
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(read_output(out.to_str().unwrap()), ["x.txt\t3", "y.txt\t1"]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("counters: old_arrow_batches=2"), "{stdout}");
}

#[test]
fn harrow_new_scaffolds_a_crate_that_tests_and_runs_as_a_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let crate_dir = dir.path().join("long-words");
    let output = bounded::run(Command::new(HARROW).arg("new").arg(&crate_dir));
    assert!(output.status.success(), "{}", describe(&output));
    let target = target_dir().join("plugin-tests");
    let library = {
        let _build = BUILD.lock().unwrap_or_else(|e| e.into_inner());
        let mut test = Command::new(env!("CARGO"));
        test.arg("test").current_dir(&crate_dir);
        separate_build(&mut test, &target);
        let tested = test.output().unwrap();
        assert!(tested.status.success(), "{}", describe(&tested));
        let stdout = String::from_utf8_lossy(&tested.stdout);
        assert!(stdout.contains("2 passed"), "{stdout}");
        cargo_cdylib(&crate_dir, &["build", "--lib"], Some(&target))
    };
    assert!(
        library.ends_with("liblong_words.so"),
        "{}",
        library.display()
    );
    std::fs::write(dir.path().join("in.txt"), "Tea for two, two for tea.\n").unwrap();
    let out = dir.path().join("out");
    let output = bounded::run(
        Command::new(HARROW)
            .args(["run", "--plugin", library.to_str().unwrap(), "long-words"])
            .args(["--arg", "min_length=3", "--reducers", "1", "--input"])
            .arg(dir.path().join("in.txt"))
            .arg("--output")
            .arg(&out),
    );
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        read_output(out.to_str().unwrap()),
        ["for\t2", "tea\t2", "two\t2"]
    );
}
