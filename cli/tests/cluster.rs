//! End to end through the CLI: a coordinator and three workers as separate
//! processes, jobs submitted with `harrow submit --wait`, output compared
//! byte for byte with sequential computations.

mod common;

use common::*;
use harrow_proto::v1 as pb;

fn submit_and_wait(
    cluster: &Cluster,
    job: &str,
    input: &str,
    output: &str,
    extra: &[&str],
) -> String {
    let mut args = vec![
        "submit", job, "--input", input, "--output", output, "--wait",
    ];
    args.extend_from_slice(extra);
    let stdout = cluster.ok(&args);
    stdout.trim().to_string()
}

#[test]
fn wordcount_and_inverted_index_match_a_sequential_computation() {
    let cluster = Cluster::start(3, 2, 4);
    let corpus = cluster.path("corpus");
    let files = write_corpus(std::path::Path::new(&corpus));

    let out = cluster.path("wordcount");
    submit_and_wait(
        &cluster,
        "wordcount",
        &corpus,
        &out,
        &["--reducers", "10", "--split-size", "1KiB"],
    );
    assert_eq!(read_output(&out), reference_wordcount(&files));

    let out = cluster.path("index");
    submit_and_wait(
        &cluster,
        "inverted-index",
        &corpus,
        &out,
        &["--reducers", "10", "--split-size", "3000"],
    );
    assert_eq!(read_output(&out), reference_inverted_index(&files));

    // Ten reducers, ten part files, whatever the keys.
    let parts = std::fs::read_dir(&out).unwrap().filter(|e| {
        e.as_ref()
            .unwrap()
            .file_name()
            .to_str()
            .unwrap()
            .starts_with("part-r-")
    });
    assert_eq!(parts.count(), 10);
}

#[test]
fn gutenberg_books_when_present() {
    let Some(books) = gutenberg() else {
        eprintln!("shared/data/gutenberg not found; skipping");
        return;
    };
    let files = text_files(&books);
    let cluster = Cluster::start(3, 2, 4);
    let input = format!("{}/*.txt", books.display());
    let out = cluster.path("wordcount");
    submit_and_wait(
        &cluster,
        "wordcount",
        &input,
        &out,
        &["--reducers", "10", "--split-size", "256KiB"],
    );
    assert_eq!(read_output(&out), reference_wordcount(&files));
    let out = cluster.path("index");
    submit_and_wait(
        &cluster,
        "inverted-index",
        &input,
        &out,
        &["--reducers", "10"],
    );
    assert_eq!(read_output(&out), reference_inverted_index(&files));
}

#[test]
fn map_tasks_run_concurrently_on_several_workers() {
    let cluster = Cluster::start(3, 2, 4);
    let corpus = cluster.path("corpus");
    write_corpus(std::path::Path::new(&corpus));
    let out = cluster.path("sleep");
    // Six non-empty files, one map each, every map busy for a while.
    let job = submit_and_wait(
        &cluster,
        "sleep",
        &corpus,
        &out,
        &[
            "--reducers",
            "2",
            "--split-size",
            "0",
            "--arg",
            "map_ms=400",
        ],
    );
    let status: serde_json::Value =
        serde_json::from_str(&cluster.ok(&["status", &job, "--json"])).unwrap();
    assert_eq!(status["state"], "succeeded");
    let mut maps = Vec::new();
    for task in status["tasks"].as_array().unwrap() {
        // Without faults nothing is re-issued: one attempt per task.
        assert_eq!(task["attempts"].as_array().unwrap().len(), 1, "{task:#}");
        if !task["task_id"].as_str().unwrap().contains("/m-") {
            continue;
        }
        let attempt = &task["attempts"].as_array().unwrap()[0];
        assert_eq!(attempt["state"], "succeeded");
        maps.push((
            attempt["worker_id"].as_str().unwrap().to_string(),
            attempt["started_at_ms"].as_u64().unwrap(),
            attempt["finished_at_ms"].as_u64().unwrap(),
        ));
    }
    assert_eq!(maps.len(), 6);
    let overlapping_on_two_workers = maps.iter().any(|(w1, s1, e1)| {
        maps.iter()
            .any(|(w2, s2, e2)| w1 != w2 && s1 < e2 && s2 < e1)
    });
    assert!(
        overlapping_on_two_workers,
        "no two maps overlapped on different workers: {maps:?}"
    );
    // Sleep emits one record per non-empty input file.
    assert_eq!(read_output(&out).len(), 5);
}

#[test]
fn grep_reports_file_and_byte_offset_of_each_match() {
    let cluster = Cluster::start(3, 2, 4);
    let corpus = cluster.path("corpus");
    let files = write_corpus(std::path::Path::new(&corpus));
    let out = cluster.path("grep");
    submit_and_wait(
        &cluster,
        "grep",
        &corpus,
        &out,
        &["--split-size", "2KiB", "--arg", "pattern=Zebra|über"],
    );
    let pattern = regex::Regex::new("Zebra|über").unwrap();
    let mut expected = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let mut offset = 0;
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            let line = piece.strip_suffix(b"\n").unwrap_or(piece);
            let line =
                String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line)).into_owned();
            if pattern.is_match(&line) {
                expected.push(format!("{}:{offset}\t{line}", file.display()));
            }
            offset += piece.len();
        }
    }
    expected.sort();
    assert!(!expected.is_empty());
    assert_eq!(read_output(&out), expected);
}

#[test]
fn without_a_split_size_the_input_is_spread_over_the_live_slots() {
    // Two workers of two slots: 100 MiB is 25 MiB per slot, below the
    // smallest split the coordinator picks by itself, so 32 MiB splits.
    let cluster = Cluster::start(2, 2, 4);
    let input = cluster.path("lines.txt");
    let mut line = "x".repeat((1 << 20) - 1);
    line.push('\n');
    std::fs::write(&input, line.repeat(100)).unwrap();
    let out = cluster.path("grep");
    let job = submit_and_wait(&cluster, "grep", &input, &out, &["--arg", "pattern=y"]);
    let status: serde_json::Value =
        serde_json::from_str(&cluster.ok(&["status", &job, "--json"])).unwrap();
    let lines: Vec<u64> = attempts(&status, "m")
        .iter()
        .map(|a| a["records_in"].as_u64().unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{status:#}");
    assert_eq!(lines.iter().sum::<u64>(), 100);
    assert!(read_output(&out).is_empty());
}

#[test]
fn jobs_workers_and_cancel_through_the_cli() {
    let cluster = Cluster::start(3, 1, 4);
    let workers: serde_json::Value =
        serde_json::from_str(&cluster.ok(&["workers", "--json"])).unwrap();
    assert_eq!(workers.as_array().unwrap().len(), 3);
    assert!(
        workers[0]["address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );

    let corpus = cluster.path("corpus");
    write_corpus(std::path::Path::new(&corpus));
    let out = cluster.path("long");
    let job = cluster.ok(&submit_args(
        "sleep",
        &corpus,
        &out,
        &["--split-size", "0", "--arg", "map_ms=60000"],
    ));
    let job = job.trim();
    let cancelled = cluster.ok(&["cancel", job]);
    assert_eq!(cancelled.trim(), format!("{job} cancelled"));
    let status: serde_json::Value =
        serde_json::from_str(&cluster.ok(&["status", job, "--json"])).unwrap();
    assert_eq!(status["state"], "cancelled");
    assert!(status["finished_at_ms"].is_u64());

    let jobs: serde_json::Value = serde_json::from_str(&cluster.ok(&["jobs", "--json"])).unwrap();
    assert_eq!(jobs[0]["job_id"], job);
    // Into a pipe whose reader has gone (`harrow jobs --json | head -1`),
    // the command ends quietly: no panic, no backtrace.
    for args in [["jobs", "--json"], ["workers", "--json"]] {
        use std::io::Read;
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut child = std::process::Command::new(HARROW)
            .args(args)
            .env("HARROW_COORDINATOR", &cluster.url)
            .stdin(std::process::Stdio::null())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = bounded::exit(&mut child, "harrow into a closed pipe", || cluster.logs());
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(stderr, "", "{args:?}");
        assert!(status.success(), "{args:?}: {status:?}");
    }
    // No committed output of a cancelled job is visible.
    let visible: Vec<_> = std::fs::read_dir(&out)
        .map(|d| {
            d.map(|e| e.unwrap().file_name())
                .filter(|n| n != "_temporary")
                .collect()
        })
        .unwrap_or_default();
    assert!(visible.is_empty(), "{visible:?}");

    // The cluster keeps working: the slots of the killed attempts are free again.
    let out = cluster.path("after");
    submit_and_wait(&cluster, "wordcount", &corpus, &out, &[]);
}

/// Workers size themselves from their cgroup, as in a Kubernetes pod: a
/// CPU quota of one core gives one slot (and one rayon thread: both follow
/// `available_parallelism`, which reads the quota), and a 512 MiB memory
/// limit a 256 MiB budget. Needs a writable cgroup v1 hierarchy (root, as
/// on CI); elsewhere it says why and checks nothing.
#[test]
fn a_worker_sizes_itself_from_its_cgroup() {
    let name = format!("harrow-test-{}", std::process::id());
    let cgroup = match Cgroup::create(&name, 100_000, Some(512 << 20)) {
        Ok(cgroup) => cgroup,
        Err(reason) => {
            eprintln!("skipped: cannot make a cgroup: {reason}");
            return;
        }
    };
    let mut cluster = Cluster::start(0, 0, 4);
    // No --slots: the worker decides.
    let wrapper = cgroup.wrapper();
    let index = cluster.add_worker_wrapped(&["sh", "-c", &wrapper], &[]);
    let workers: serde_json::Value =
        serde_json::from_str(&cluster.ok(&["workers", "--json"])).unwrap();
    assert_eq!(workers[0]["slots"], 1, "{workers}");
    let log =
        std::fs::read_to_string(cluster.dir.path().join(format!("worker-{index}.log"))).unwrap();
    assert!(
        log.contains(&format!("memory_budget={}", 256u64 << 20)),
        "{log}"
    );
    drop(cluster);
    drop(cgroup);
}

/// The JSON the API answers `path` with, which must be 200 OK.
fn api(address: &str, path: &str) -> serde_json::Value {
    let (status_line, body) = http_get(address, path);
    assert_eq!(status_line, "HTTP/1.1 200 OK", "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The value of the series `name` (with its labels) in Prometheus text.
fn series(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
        .parse()
        .unwrap()
}

#[test]
fn the_coordinator_serves_metrics_and_an_api_that_agree_with_status() {
    let cluster = Cluster::start_with(2, 2, &["--http-listen", "127.0.0.1:0"]);
    let address = cluster.http_address();
    assert_eq!(
        http_get(&address, "/healthz"),
        ("HTTP/1.1 200 OK".into(), "ok\n".into())
    );

    let corpus = cluster.path("corpus");
    write_corpus(std::path::Path::new(&corpus));
    let out = cluster.path("out");
    let job = submit_and_wait(
        &cluster,
        "wordcount",
        &corpus,
        &out,
        &["--reducers", "3", "--split-size", "4KiB"],
    );
    let status: serde_json::Value =
        serde_json::from_str(&cluster.ok(&["status", &job, "--json"])).unwrap();
    let (status_line, metrics) = http_get(&address, "/metrics");
    assert_eq!(status_line, "HTTP/1.1 200 OK");

    assert_eq!(series(&metrics, r#"harrow_jobs{state="succeeded"}"#), 1.0);
    assert_eq!(series(&metrics, r#"harrow_jobs{state="running"}"#), 0.0);
    assert_eq!(series(&metrics, r#"harrow_workers{state="alive"}"#), 2.0);
    assert_eq!(series(&metrics, "harrow_worker_slots"), 4.0);
    assert_eq!(series(&metrics, "harrow_pending_tasks"), 0.0);
    let succeeded = |phase: &str| {
        attempts(&status, phase)
            .iter()
            .filter(|a| a["state"] == "succeeded")
            .count() as f64
    };
    assert_eq!(
        series(&metrics, r#"harrow_tasks{phase="map",state="succeeded"}"#),
        status["map"]["total"].as_f64().unwrap()
    );
    assert_eq!(
        series(
            &metrics,
            r#"harrow_attempts_total{phase="map",state="succeeded"}"#
        ),
        succeeded("m")
    );
    assert_eq!(
        series(&metrics, r#"harrow_input_records_total{phase="map"}"#),
        status["input_records"].as_f64().unwrap()
    );
    assert_eq!(
        series(&metrics, r#"harrow_output_records_total{phase="reduce"}"#),
        status["output_records"].as_f64().unwrap()
    );
    // One fetch time per succeeded reduce attempt.
    assert_eq!(
        series(&metrics, "harrow_shuffle_fetch_seconds_count"),
        succeeded("r")
    );
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");

    // The API answers in the CLI's --json shapes, with the same figures.
    let json =
        |args: &[&str]| -> serde_json::Value { serde_json::from_str(&cluster.ok(args)).unwrap() };
    assert_eq!(api(&address, "/api/v1/jobs"), json(&["jobs", "--json"]));
    let mut summary = status.clone();
    summary.as_object_mut().unwrap().remove("tasks");
    assert_eq!(api(&address, &format!("/api/v1/jobs/{job}")), summary);
    let workers = api(&address, "/api/v1/workers");
    let ids = |workers: &serde_json::Value| -> Vec<serde_json::Value> {
        workers
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["worker_id"].clone())
            .collect()
    };
    assert_eq!(ids(&workers), ids(&json(&["workers", "--json"])));
    // Tasks with their attempts, a page at a time, as status has them.
    let tasks = status["tasks"].as_array().unwrap();
    let mut paged = Vec::new();
    while paged.len() < tasks.len() {
        let page = api(
            &address,
            &format!("/api/v1/jobs/{job}/attempts?offset={}&limit=5", paged.len()),
        );
        assert_eq!(page["total"], tasks.len());
        let page = page["tasks"].as_array().unwrap();
        assert!(!page.is_empty() && page.len() <= 5);
        paged.extend(page.iter().cloned());
    }
    assert_eq!(&paged, tasks);
    // Errors name what was wrong, with the status that says so.
    let (status_line, body) = http_get(&address, "/api/v1/jobs/job-999999");
    assert!(status_line.contains("404"), "{status_line}");
    assert!(body.contains("job-999999"), "{body}");
    let (status_line, body) = http_get(&address, "/api/v1/jobs/not-a-job");
    assert!(status_line.contains("400"), "{status_line}: {body}");
    // A host name it was not told of is refused (DNS rebinding).
    let (status_line, body) = http_get_with(&address, "/api/v1/jobs", &["Host: evil.example"]);
    assert!(status_line.contains("421"), "{status_line}");
    assert!(body.contains("--http-host"), "{body}");

    // The pages: the job listed, one timeline bar per attempt, the workers.
    let page = |path: &str| {
        let (status_line, body) = http_get(&address, path);
        assert_eq!(status_line, "HTTP/1.1 200 OK", "{path}: {body}");
        body
    };
    assert!(page("/").contains(&format!("href=\"/jobs/{job}\"")));
    let job_page = page(&format!("/jobs/{job}"));
    let attempts: usize = tasks
        .iter()
        .map(|t| t["attempts"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        job_page.matches("<rect class=").count(),
        attempts,
        "{job_page}"
    );
    assert!(
        !job_page.contains("http-equiv=\"refresh\""),
        "a finished job's page stays"
    );
    let workers_page = page("/workers");
    for id in ids(&workers) {
        assert!(
            workers_page.contains(id.as_str().unwrap()),
            "{workers_page}"
        );
    }
    // What a user typed is shown, inert.
    let planted = submit_and_wait(
        &cluster,
        "grep",
        &corpus,
        &cluster.path("planted"),
        &["--arg", "pattern=<script>alert(1)</script>"],
    );
    let planted = page(&format!("/jobs/{planted}"));
    assert!(
        planted.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{planted}"
    );
    assert!(!planted.contains("<script"), "{planted}");
}

/// A worker speaking the wire protocol by hand, with no process behind it.
struct HandWorker {
    client: harrow_proto::v1::worker_service_client::WorkerServiceClient<tonic::transport::Channel>,
    id: String,
}

impl HandWorker {
    /// Reports `assignment` done, offering `free_slots`; what the reply
    /// hands out.
    async fn finish(
        &mut self,
        assignment: &pb::TaskAssignment,
        free_slots: u32,
    ) -> Vec<pb::TaskAssignment> {
        use harrow_core::task::{AttemptCounters, AttemptOutcome, InputReport, SegmentInfo};
        let segments = match assignment.task {
            Some(pb::task_assignment::Task::Map(_)) => vec![SegmentInfo::default()],
            _ => Vec::new(),
        };
        let outcome = AttemptOutcome::Succeeded {
            segments,
            input: InputReport::default(),
        };
        let attempt = assignment.attempt_id.parse().unwrap();
        let report = pb::AttemptReport {
            free_slots,
            ..harrow_core::wire::attempt_report(
                self.id.clone(),
                attempt,
                AttemptCounters::default(),
                outcome,
            )
        };
        let reply = self.client.report_attempt(report).await.unwrap();
        reply.into_inner().assignments
    }

    async fn request(&mut self) -> Vec<pb::TaskAssignment> {
        let request = pb::TaskRequest {
            worker_id: self.id.clone(),
            free_slots: 1,
            wait_ms: 5_000,
        };
        let reply = self.client.request_task(request).await.unwrap();
        reply.into_inner().assignments
    }
}

#[test]
fn a_report_that_offers_its_slot_gets_the_next_task() {
    let cluster = Cluster::start(0, 1, 4);
    let out = cluster.path("generated");
    let job = cluster.ok(&[
        "submit",
        "teragen",
        "--output",
        &out,
        "--reducers",
        "1",
        "--arg",
        "rows=3",
        "--arg",
        "rows_per_task=1",
    ]);
    let job = job.trim().to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = harrow_proto::v1::worker_service_client::WorkerServiceClient::connect(
            cluster.url.clone(),
        )
        .await
        .unwrap();
        let registered = client
            .register(pb::RegisterRequest {
                shuffle_address: "127.0.0.1:9".into(),
                slots: 1,
                incarnation: 1,
            })
            .await
            .unwrap()
            .into_inner();
        // Heartbeats, as a worker's own task sends them, so that a slow
        // step on a loaded machine does not make the worker suspect.
        let beating = {
            let (mut client, id) = (client.clone(), registered.worker_id.clone());
            tokio::spawn(async move {
                loop {
                    let heartbeat = pb::HeartbeatRequest {
                        worker_id: id.clone(),
                        incarnation: 1,
                        ..Default::default()
                    };
                    let _ = client.heartbeat(heartbeat).await;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            })
        };
        let mut worker = HandWorker {
            client,
            id: registered.worker_id,
        };
        let first = worker.request().await;
        assert_eq!(first.len(), 1, "{first:?}");
        // Offering no slot: nothing comes back, the next task waits for a
        // request.
        assert_eq!(worker.finish(&first[0], 0).await, Vec::new());
        let second = worker.request().await;
        assert_eq!(second.len(), 1, "{second:?}");
        // Offering the slot: the report's reply carries the last map, and
        // that one's the reduce, once every map is done.
        let third = worker.finish(&second[0], 1).await;
        assert_eq!(third.len(), 1, "{third:?}");
        assert!(third[0].attempt_id.contains("/m-"), "{third:?}");
        let reduce = worker.finish(&third[0], 1).await;
        assert_eq!(reduce.len(), 1, "{reduce:?}");
        assert!(reduce[0].attempt_id.contains("/r-"), "{reduce:?}");
        let commit = pb::CommitRequest {
            worker_id: worker.id.clone(),
            attempt_id: reduce[0].attempt_id.clone(),
        };
        let granted = worker.client.request_commit(commit).await.unwrap();
        assert!(granted.into_inner().granted);
        // Nothing is left to hand out.
        assert_eq!(worker.finish(&reduce[0], 1).await, Vec::new());
        beating.abort();
    });
    let status = cluster.ok(&["status", &job, "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["state"], "succeeded", "{status}");
}

/// The web UI in a real browser (headless Chromium, installed with apt when
/// missing): the jobs page, a running job's page and finished ones, checked
/// on the DOM the browser built; screenshots land in
/// `target/ui-screenshots` for people to look at.
#[test]
fn the_web_ui_renders_in_a_real_browser() {
    let browser = browser::Browser::find_or_install();
    let flags = ["--http-listen", "127.0.0.1:0", "--max-attempts", "1"];
    let cluster = Cluster::start_with(2, 2, &flags);
    let base = format!("http://{}", cluster.http_address());
    let corpus = cluster.path("corpus");
    write_corpus(std::path::Path::new(&corpus));
    let status = |job: &str| -> serde_json::Value {
        serde_json::from_str(&cluster.ok(&["status", job, "--json"])).unwrap()
    };

    let finished = submit_and_wait(
        &cluster,
        "wordcount",
        &corpus,
        &cluster.path("counts"),
        &["--reducers", "3", "--split-size", "4KiB"],
    );
    // A job whose map panics on a line of the corpus: its failure shows.
    let failed = cluster
        .harrow(&submit_args(
            "sleep",
            &corpus,
            &cluster.path("failed"),
            &["--arg", "fail_on=the", "--wait"],
        ))
        .stdout;
    let failed = String::from_utf8(failed).unwrap().trim().to_string();
    assert_eq!(status(&failed)["state"], "failed");
    let running = cluster.ok(&submit_args(
        "sleep",
        &corpus,
        &cluster.path("running"),
        &["--split-size", "0", "--arg", "map_ms=600000"],
    ));
    let running = running.trim().to_string();
    bounded::until(
        "the sleeping job running",
        || status(&running)["attempts"]["running"].as_u64() > Some(0),
        || cluster.logs(),
    );

    let jobs = browser.dom(&format!("{base}/"));
    for job in [&finished, &failed, &running] {
        assert!(
            jobs.contains(&format!("href=\"/jobs/{job}\"")),
            "{job}: {jobs}"
        );
    }
    assert!(
        jobs.contains(r#"http-equiv="refresh""#),
        "a running job keeps / live"
    );

    let page = browser.dom(&format!("{base}/jobs/{finished}"));
    let attempts = status(&finished)["attempts"]["total"].as_u64().unwrap() as usize;
    assert_eq!(page.matches("data-attempt=").count(), attempts, "{page}");
    assert!(
        page.contains(r#"<span class="state succeeded">succeeded</span>"#),
        "{page}"
    );

    let page = browser.dom(&format!("{base}/jobs/{failed}"));
    assert!(page.contains("<h2>Failures</h2>"), "{page}");
    assert!(page.contains("class=\"map failed"), "a failed bar: {page}");

    let page = browser.dom(&format!("{base}/jobs/{running}"));
    assert!(
        page.contains(r#"<span class="state running">running</span>"#),
        "{page}"
    );
    assert!(
        page.contains("class=\"map running"),
        "a running bar: {page}"
    );

    browser.screenshot(&format!("{base}/"), "jobs");
    browser.screenshot(&format!("{base}/jobs/{running}"), "running-job");
    browser.screenshot(&format!("{base}/jobs/{finished}"), "finished-job");
    browser.screenshot(&format!("{base}/workers"), "workers");
    cluster.ok(&["cancel", &running]);
}
