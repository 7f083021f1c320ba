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
            if name.starts_with("part-r-") && !name.ends_with(".parquet") {
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
    let run = bounded::run(Command::new(HARROW).args([
        "run",
        "wordcount",
        "--input",
        &corpus,
        "--output",
        &local,
        "--reducers",
        "5",
    ]));
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

#[test]
fn parquet_on_s3_through_aggregate_to_parquet_on_s3_matches_a_computation() {
    use arrow::array::{AsArray, Float64Array, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::properties::WriterProperties;
    use std::collections::BTreeMap;

    let moto = start_moto();
    moto.create_bucket("tables");
    let store = moto.store("tables");
    let cluster = Cluster::start(2, 2, 4);
    let schema = Arc::new(Schema::new(vec![
        Field::new("region", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, true),
        Field::new("ignored", DataType::Int64, false),
    ]));
    let mut rng = Rng::new(42);
    // Per region: count of amounts, sum, min, max.
    let mut expected: BTreeMap<String, (i64, f64, f64, f64)> = BTreeMap::new();
    let dir = cluster.path("tables");
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for part in 0..3 {
        let rows = 4000;
        let regions: Vec<String> = (0..rows).map(|_| format!("r{}", rng.below(6))).collect();
        let amounts: Vec<Option<f64>> = (0..rows)
            .map(|_| (rng.below(10) > 0).then(|| rng.below(100_000) as f64 / 8.0))
            .collect();
        for (region, amount) in regions.iter().zip(&amounts) {
            let entry = expected
                .entry(region.clone())
                .or_insert((0, 0.0, f64::MAX, f64::MIN));
            if let Some(amount) = amount {
                *entry = (
                    entry.0 + 1,
                    entry.1 + amount,
                    entry.2.min(*amount),
                    entry.3.max(*amount),
                );
            }
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(regions)),
                Arc::new(Float64Array::from(amounts)),
                Arc::new(Int64Array::from(vec![7; rows])),
            ],
        )
        .unwrap();
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(1000))
            .build();
        let path = Path::new(&dir).join(format!("sales-{part}.parquet"));
        let mut writer = ArrowWriter::try_new(
            std::fs::File::create(&path).unwrap(),
            schema.clone(),
            Some(properties),
        )
        .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        files.push(path);
    }
    upload(&store, "in", &files);

    let flags = moto.flags();
    let mut args: Vec<&str> = vec![
        "submit",
        "aggregate",
        "--arg",
        "key=region",
        "--arg",
        "value=amount",
        "--input",
        "s3://tables/in/*.parquet",
        "--output",
        "s3://tables/out",
        "--output-format",
        "parquet",
        "--split-size",
        "8KiB",
        "--reducers",
        "3",
        "--wait",
    ];
    args.extend(flags.iter().map(String::as_str));
    cluster.ok(&args);

    let (names, _) = read_output(&store, "out");
    assert_eq!(
        names,
        [
            "_SUCCESS",
            "part-r-00000.parquet",
            "part-r-00001.parquet",
            "part-r-00002.parquet"
        ]
    );
    let mut seen = BTreeMap::new();
    runtime().block_on(async {
        for name in &names[1..] {
            let bytes = store
                .get(&StorePath::from(format!("out/{name}")))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
            let compression = reader.metadata().row_group(0).column(0).compression();
            assert!(
                matches!(compression, parquet::basic::Compression::ZSTD(_)),
                "{compression:?}"
            );
            for batch in reader.build().unwrap() {
                let batch = batch.unwrap();
                let region = batch.column(0).as_string::<i32>();
                let count = batch.column(1).as_primitive::<Int64Type>();
                let float = |i: usize| batch.column(i).as_primitive::<Float64Type>().clone();
                let (sum, min, max) = (float(2), float(3), float(4));
                for row in 0..batch.num_rows() {
                    seen.insert(
                        region.value(row).to_string(),
                        (
                            count.value(row),
                            sum.value(row),
                            min.value(row),
                            max.value(row),
                        ),
                    );
                }
            }
        }
    });
    assert_eq!(seen.len(), expected.len());
    for (region, (count, sum, min, max)) in &expected {
        let got = seen[region];
        assert_eq!((got.0, got.2, got.3), (*count, *min, *max), "{region}");
        assert!((got.1 - sum).abs() < 1e-6 * sum.abs().max(1.0), "{region}");
    }
}

/// A TCP proxy to `target` that passes requests on at `bytes_per_second`,
/// so an upload through it takes long enough to be caught midway.
fn throttling_proxy(target: String, bytes_per_second: usize) -> String {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    fn pump(mut from: TcpStream, mut to: TcpStream, rate: Option<usize>) {
        std::thread::spawn(move || {
            let mut buffer = [0u8; 16 << 10];
            loop {
                match from.read(&mut buffer) {
                    Ok(0) | Err(_) => {
                        let _ = to.shutdown(std::net::Shutdown::Write);
                        return;
                    }
                    Ok(n) => {
                        if to.write_all(&buffer[..n]).is_err() {
                            return;
                        }
                        if let Some(rate) = rate {
                            let pause = n as f64 / rate as f64;
                            std::thread::sleep(std::time::Duration::from_secs_f64(pause));
                        }
                    }
                }
            }
        });
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(target.trim_start_matches("http://")) else {
                continue;
            };
            pump(
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
                Some(bytes_per_second),
            );
            pump(server, client, None);
        }
    });
    format!("http://{address}")
}

/// Runs boto3 against moto: `wait-upload PREFIX` returns once a multipart
/// upload under PREFIX is open; `open-uploads` prints how many are.
fn boto(moto: &Moto, bucket: &str, command: &str, prefix: &str) -> String {
    let script = r#"
import sys, time, boto3
endpoint, bucket, command, prefix = sys.argv[1:5]
s3 = boto3.client('s3', endpoint_url=endpoint, region_name='us-east-1',
                  aws_access_key_id='test', aws_secret_access_key='test')
def open_uploads():
    found = s3.list_multipart_uploads(Bucket=bucket).get('Uploads', [])
    return [u['Key'] for u in found if u['Key'].startswith(prefix)]
if command == 'wait-upload':
    deadline = time.time() + 300
    while not open_uploads():
        if time.time() > deadline:
            sys.exit('no multipart upload started')
        time.sleep(0.05)
    print(open_uploads()[0])
else:
    print(len(open_uploads()))
"#;
    let output = Command::new(moto.venv.join("bin/python"))
        .args(["-c", script, &moto.endpoint, bucket, command, prefix])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

#[test]
fn an_attempt_killed_mid_upload_leaves_no_object_and_no_open_multipart_upload() {
    let moto = start_moto();
    moto.create_bucket("out");
    let store = moto.store("out");
    let cluster = Cluster::start(1, 2, 2);
    // About 30 MB of output from one reducer: a multipart upload of
    // several parts, slowed to 4 MB/s on its way to the server.
    let input = cluster.path("lines.txt");
    let mut text = String::with_capacity(24 << 20);
    let mut rng = Rng::new(3);
    while text.len() < 20 << 20 {
        let n = rng.next();
        text.push_str(&format!("{n:020} {}\n", "x".repeat(80)));
    }
    std::fs::write(&input, text).unwrap();
    let proxy = throttling_proxy(moto.endpoint.clone(), 4 << 20);
    let flags: Vec<String> = moto
        .flags()
        .into_iter()
        .map(|f| f.replace(&moto.endpoint, &proxy))
        .collect();
    let mut args: Vec<&str> = vec![
        "submit",
        "grep",
        "--arg",
        "pattern=.",
        "--input",
        &input,
        "--output",
        "s3://out/result",
        "--reducers",
        "1",
    ];
    args.extend(flags.iter().map(String::as_str));
    let job = cluster.ok(&args).trim().to_string();

    let key = boto(&moto, "out", "wait-upload", "result/");
    assert!(key.starts_with("result/_temporary/"), "{key}");
    cluster.ok(&["cancel", &job]);

    // The killed attempt aborts its upload. Generous bound, safety net only.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while boto(&moto, "out", "open-uploads", "result/") != "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "the multipart upload was left open\n{}",
            cluster.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let report: serde_json::Value =
        serde_json::from_str(&cluster.ok(&["status", &job, "--json"])).unwrap();
    assert_eq!(report["state"], "cancelled");
    let (names, _) = read_output(&store, "result");
    assert!(names.is_empty(), "objects left behind: {names:?}");
}

/// An S3 endpoint that refuses every request as S3 does a wrong key.
fn refusing_endpoint() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InvalidAccessKeyId</Code>\
                            <Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>";
                let response = format!(
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes());
            });
        }
    });
    format!("http://{address}")
}

#[test]
fn refused_credentials_are_a_clear_error_that_does_not_show_the_secret() {
    let cluster = Cluster::start(1, 1, 2);
    let endpoint = refusing_endpoint();
    let options = [
        format!("aws_endpoint={endpoint}"),
        "aws_allow_http=true".to_string(),
        "aws_region=us-east-1".to_string(),
        "aws_access_key_id=wrong".to_string(),
        format!("aws_secret_access_key={SECRET}"),
    ];
    let mut args: Vec<&str> = vec![
        "submit",
        "wordcount",
        "--input",
        "s3://books/in",
        "--output",
        "/tmp/harrow-never-written",
    ];
    for option in &options {
        args.extend(["--storage-option", option.as_str()]);
    }
    let stderr = cluster.fails(&args);
    assert!(stderr.contains("s3://books/in"), "{stderr}");
    assert!(
        stderr.contains("403") || stderr.contains("InvalidAccessKeyId"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET), "{stderr}");
}
