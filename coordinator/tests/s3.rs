//! Input and output on a real S3-compatible server on loopback: moto's
//! server, installed into a venv under the target dir and started by the
//! test itself. Settings go through `--storage-option`, whose values must
//! never show up in status or logs.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use common::*;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};

const SECRET: &str = "s3cr3t-never-printed";

/// A moto S3 server on 127.0.0.1, killed on drop.
struct Moto {
    child: Child,
    endpoint: String,
    venv: PathBuf,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The venv with moto, made once per test process (tests run in parallel).
fn venv() -> PathBuf {
    static VENV: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    VENV.get_or_init(make_venv).clone()
}

fn make_venv() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("moto-venv");
    if !venv.join("bin/moto_server").exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(made.success(), "python3 -m venv failed");
        let installed = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "moto[server]"])
            .status()
            .unwrap();
        assert!(installed.success(), "pip install moto[server] failed");
    }
    venv
}

fn start_moto() -> Moto {
    let venv = venv();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(venv.join("bin/moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Ready once it says it runs; keep draining its log afterwards.
    let mut lines = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            lines.read_line(&mut line).unwrap() > 0,
            "moto_server exited"
        );
        if line.contains("Running on") {
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        venv,
    }
}

impl Moto {
    fn create_bucket(&self, bucket: &str) {
        let script = "import sys, boto3\nboto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
                      aws_access_key_id='test', aws_secret_access_key='test').create_bucket(Bucket=sys.argv[2])";
        let status = Command::new(self.venv.join("bin/python"))
            .args(["-c", script, &self.endpoint, bucket])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn options(&self) -> Vec<(String, String)> {
        [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_region", "us-east-1"),
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", SECRET),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn store(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
        for (key, value) in self.options() {
            builder = builder.with_config(key.parse().unwrap(), value);
        }
        Arc::new(builder.build().unwrap())
    }

    /// `--storage-option` flags for the CLI.
    fn flags(&self) -> Vec<String> {
        self.options()
            .into_iter()
            .flat_map(|(k, v)| ["--storage-option".to_string(), format!("{k}={v}")])
            .collect()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn upload(store: &Arc<dyn ObjectStore>, prefix: &str, files: &[PathBuf]) {
    runtime().block_on(async {
        for file in files {
            let name = file.file_name().unwrap().to_str().unwrap();
            let path = StorePath::from(format!("{prefix}/{name}"));
            store
                .put(&path, std::fs::read(file).unwrap().into())
                .await
                .unwrap();
        }
    });
}

/// Every object name under `prefix`, and the sorted lines of its part files.
fn read_output(store: &Arc<dyn ObjectStore>, prefix: &str) -> (Vec<String>, Vec<String>) {
    runtime().block_on(async {
        let listed: Vec<_> = store
            .list(Some(&StorePath::from(prefix)))
            .try_collect()
            .await
            .unwrap();
        let mut names = Vec::new();
        let mut lines = Vec::new();
        for meta in listed {
            let name = meta
                .location
                .as_ref()
                .strip_prefix(&format!("{prefix}/"))
                .unwrap()
                .to_string();
            if name.starts_with("part-r-") {
                let bytes = store
                    .get(&meta.location)
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                lines.extend(
                    String::from_utf8(bytes.to_vec())
                        .unwrap()
                        .lines()
                        .map(str::to_string),
                );
            }
            names.push(name);
        }
        names.sort();
        lines.sort();
        (names, lines)
    })
}

#[test]
fn wordcount_with_input_and_output_on_s3_equals_the_local_run() {
    let moto = start_moto();
    moto.create_bucket("books");
    let store = moto.store("books");
    let cluster = Cluster::start(3, 2, 4);
    let corpus = cluster.path("corpus");
    let files = write_corpus(Path::new(&corpus));
    upload(&store, "corpus", &files);

    let flags = moto.flags();
    let mut args: Vec<&str> = vec![
        "submit",
        "wordcount",
        "--input",
        "s3://books/corpus",
        "--output",
        "s3://books/out",
        "--reducers",
        "5",
        "--split-size",
        "2KiB",
        "--wait",
    ];
    args.extend(flags.iter().map(String::as_str));
    let job = cluster.ok(&args).trim().to_string();

    let (names, lines) = read_output(&store, "out");
    let mut expected_names: Vec<String> = (0..5).map(|p| format!("part-r-{p:05}")).collect();
    expected_names.push("_SUCCESS".to_string());
    expected_names.sort();
    assert_eq!(names, expected_names, "no _temporary or stray objects");
    assert_eq!(lines, reference_wordcount(&files));

    // The same through a local run.
    let local = cluster.path("local");
    let run = std::process::Command::new(HARROW)
        .args([
            "run",
            "wordcount",
            "--input",
            &corpus,
            "--output",
            &local,
            "--reducers",
            "5",
        ])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", describe(&run));
    assert_eq!(common::read_output(&local), lines);

    // The secret went nowhere visible.
    let status = cluster.ok(&["status", &job, "--json"]);
    assert!(status.contains("s3://books/out"));
    for shown in [
        status,
        cluster.ok(&["status", &job]),
        cluster.ok(&["jobs", "--json"]),
    ] {
        assert!(!shown.contains(SECRET));
    }
    for log in std::fs::read_dir(cluster.dir.path()).unwrap() {
        let path = log.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            assert!(
                !std::fs::read_to_string(&path).unwrap().contains(SECRET),
                "{}",
                path.display()
            );
        }
    }
}

#[test]
fn a_missing_bucket_or_prefix_is_named_and_refused() {
    let moto = start_moto();
    moto.create_bucket("present");
    let cluster = Cluster::start(1, 1, 2);
    let flags = moto.flags();
    let mut args: Vec<&str> = vec![
        "submit",
        "wordcount",
        "--input",
        "s3://absent/in",
        "--output",
        "s3://present/out",
    ];
    args.extend(flags.iter().map(String::as_str));
    let stderr = cluster.fails(&args);
    assert!(stderr.contains("s3://absent/in"), "{stderr}");
    assert!(!stderr.contains(SECRET), "{stderr}");

    args[3] = "s3://present/nothing-here";
    let stderr = cluster.fails(&args);
    assert!(
        stderr.contains("s3://present/nothing-here does not exist"),
        "{stderr}"
    );

    let bad: Vec<&str> = vec![
        "submit",
        "wordcount",
        "--input",
        "s3://present/in",
        "--output",
        "s3://present/out",
        "--storage-option",
        "aws_colour=blue",
    ];
    let stderr = cluster.fails(&bad);
    assert!(
        stderr.contains("storage option `aws_colour` is not known for s3://"),
        "{stderr}"
    );
}
