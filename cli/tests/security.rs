//! Authentication through the CLI and the wire: a cluster of real
//! processes whose coordinator requires a client token and a worker token.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{
    Cluster, HARROW, bounded, describe, http_get, http_get_with, http_request, read_output,
    reference_wordcount, submit_args, write_corpus,
};
use harrow_proto::v1::FetchSegmentRequest;
use harrow_proto::v1::job_service_client::JobServiceClient;
use harrow_proto::v1::shuffle_service_client::ShuffleServiceClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The overall status a plaintext gRPC health check at `address` reports.
fn plain_health(address: &str) -> ServingStatus {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .unwrap()
            .into_inner()
            .status()
    })
}

/// Writes a token file; tokens are 32 or more printable characters.
fn token_file(dir: &Path, name: &str, fill: char) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", fill.to_string().repeat(48))).unwrap();
    path
}

/// Runs `harrow ARGS` to its end.
fn harrow(args: &[&str]) -> std::process::Output {
    bounded::run(
        Command::new(HARROW)
            .args(args)
            .env_remove("HARROW_TOKEN_FILE")
            .env_remove("HARROW_WORKER_TOKEN_FILE")
            .stdin(Stdio::null()),
    )
}

fn refused(args: &[&str]) -> String {
    let output = harrow(args);
    assert!(
        !output.status.success(),
        "harrow {args:?} succeeded:\n{}",
        describe(&output)
    );
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn tokens_guard_every_service_and_the_right_one_runs_jobs() {
    let secrets = tempfile::tempdir().unwrap();
    let client = token_file(secrets.path(), "client", 'c');
    let worker = token_file(secrets.path(), "worker", 'w');
    let wrong = token_file(secrets.path(), "wrong", 'x');
    let viewer = token_file(secrets.path(), "viewer", 'v');
    let (client, worker, wrong, viewer) = (
        client.to_str().unwrap(),
        worker.to_str().unwrap(),
        wrong.to_str().unwrap(),
        viewer.to_str().unwrap(),
    );
    // Two workers, so reducers fetch segments from each other with the
    // worker token.
    let cluster = Cluster::start_configured(
        2,
        2,
        &[
            "--token-file",
            client,
            "--worker-token-file",
            worker,
            "--viewer-token-file",
            viewer,
            "--http-listen",
            "127.0.0.1:0",
        ],
        &["--token-file", worker],
    );
    let corpus = write_corpus(&cluster.dir.path().join("corpus"));
    let input = cluster.path("corpus");
    let out = cluster.path("out");
    let submit = |token: Option<&str>| {
        let mut args = vec!["submit", "wordcount", "--input", &input, "--output", &out];
        if let Some(token) = token {
            args.extend(["--token-file", token]);
        }
        cluster.harrow(&args)
    };

    for (who, token) in [
        ("no token", None),
        ("a wrong token", Some(wrong)),
        ("the worker token", Some(worker)),
        ("the viewer token", Some(viewer)),
    ] {
        let output = submit(token);
        assert!(!output.status.success(), "{who}: {}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("needs the cluster's client token"),
            "{who}: {stderr}"
        );
    }
    let error = cluster.fails(&["jobs"]);
    assert!(error.contains("client token"), "{error}");
    let error = cluster.fails(&["workers", "--token-file", worker]);
    assert!(error.contains("client token"), "{error}");

    // The refused calls left nothing behind.
    let jobs = cluster.ok(&["jobs", "--json", "--token-file", client]);
    assert_eq!(jobs.trim(), "[]", "{jobs}");
    assert!(!Path::new(&out).exists());

    // The wire: a bare gRPC client gets UNAUTHENTICATED from the job
    // service and from a worker's shuffle service.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut jobs = JobServiceClient::connect(cluster.url.clone())
            .await
            .unwrap();
        let status = jobs
            .list_jobs(harrow_proto::v1::ListJobsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
        let mut shuffle =
            ShuffleServiceClient::connect(format!("http://{}", cluster.workers[0].address))
                .await
                .unwrap();
        let status = shuffle
            .fetch_segment(FetchSegmentRequest {
                map_attempt_id: "job-000001/m-00000/a-1".into(),
                partition: 0,
                shuffle_key: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    });

    // The client token runs the job; its shuffle crosses workers.
    let job = submit(Some(client));
    assert!(job.status.success(), "{}", describe(&job));
    let job_id = String::from_utf8(job.stdout).unwrap().trim().to_string();
    let status = cluster.harrow(&["status", &job_id, "--token-file", client]);
    assert!(status.status.success(), "{}", describe(&status));
    let waited = cluster.harrow(&[
        "submit",
        "grep",
        "--arg",
        "pattern=cat",
        "--input",
        &input,
        "--output",
        &cluster.path("grep"),
        "--wait",
        "--token-file",
        client,
    ]);
    assert!(
        waited.status.success(),
        "{}\n{}",
        describe(&waited),
        cluster.logs()
    );
    // The streamed status is guarded like the rest; the job has ended by
    // now (one slot per worker would run the grep after it).
    let followed = cluster.ok(&[
        "status",
        &job_id,
        "--follow",
        "--json",
        "--token-file",
        client,
    ]);
    assert!(followed.contains("\"succeeded\""), "{followed}");
    assert_eq!(read_output(&out), reference_wordcount(&corpus));

    // The HTTP API: the client and viewer tokens read it, nothing else
    // does; metrics and liveness stay open.
    let http = cluster.http_address();
    let host = format!("Host: {http}");
    let bearer = |file: &str| {
        let token = std::fs::read_to_string(file).unwrap();
        format!("Authorization: Bearer {}", token.trim())
    };
    let path = format!("/api/v1/jobs/{job_id}");
    for file in [client, viewer] {
        let (status_line, body) = http_get_with(&http, &path, &[&host, &bearer(file)]);
        assert_eq!(status_line, "HTTP/1.1 200 OK", "{file}: {body}");
        assert!(body.contains(&job_id), "{body}");
    }
    for file in [worker, wrong] {
        let (status_line, body) = http_get_with(&http, &path, &[&host, &bearer(file)]);
        assert!(status_line.contains("401"), "{file}: {status_line}");
        assert!(!body.contains(&job_id), "{body}");
    }
    let (status_line, body) = http_get(&http, "/api/v1/workers");
    assert!(status_line.contains("401"), "{status_line}");
    assert!(body.contains("Bearer"), "{body}");
    assert_eq!(http_get(&http, "/healthz").0, "HTTP/1.1 200 OK");
    // The pages: the login form first, then a session cookie from the
    // viewer token opens them.
    let (status_line, headers, _) = http_request(&http, "GET", "/", &[&host], "");
    assert!(status_line.contains("303"), "{status_line}");
    assert!(
        headers.contains(&"location: /login".to_string()),
        "{headers:?}"
    );
    let form = "Content-Type: application/x-www-form-urlencoded";
    let wrong_login = format!("token={}", "x".repeat(48));
    let (status_line, headers, _) =
        http_request(&http, "POST", "/login", &[&host, form], &wrong_login);
    assert!(status_line.contains("401"), "{status_line}");
    assert!(
        !headers.iter().any(|h| h.starts_with("set-cookie")),
        "{headers:?}"
    );
    let login = format!("token={}", std::fs::read_to_string(viewer).unwrap().trim());
    let (status_line, headers, _) = http_request(&http, "POST", "/login", &[&host, form], &login);
    assert!(status_line.contains("303"), "{status_line}");
    let cookie = headers
        .iter()
        .find_map(|h| h.strip_prefix("set-cookie: "))
        .unwrap_or_else(|| panic!("no session cookie: {headers:?}"));
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = format!("Cookie: {}", cookie.split(';').next().unwrap());
    let (status_line, page) = http_get_with(&http, &format!("/jobs/{job_id}"), &[&host, &session]);
    assert_eq!(status_line, "HTTP/1.1 200 OK", "{page}");
    assert!(page.contains("data-attempt="), "{page}");
    let (status_line, metrics) = http_get(&http, "/metrics");
    assert_eq!(status_line, "HTTP/1.1 200 OK");
    assert!(!metrics.contains(&job_id), "{metrics}");

    // A worker with the wrong token is turned away at once.
    let rejected = harrow(&[
        "worker",
        "--coordinator",
        &cluster.url,
        "--token-file",
        wrong,
        "--work-dir",
        &cluster.path("rejected"),
    ]);
    assert!(!rejected.status.success(), "{}", describe(&rejected));
    let stderr = String::from_utf8_lossy(&rejected.stderr);
    assert!(stderr.contains("worker token"), "{stderr}");
}

#[test]
fn exposed_listeners_and_muddled_tokens_are_refused_at_start() {
    let secrets = tempfile::tempdir().unwrap();
    let client = token_file(secrets.path(), "client", 'c');
    let weak = secrets.path().join("weak");
    std::fs::write(&weak, "letmein\n").unwrap();
    let (client, weak) = (client.to_str().unwrap(), weak.to_str().unwrap());

    let error = refused(&["coordinator", "--listen", "0.0.0.0:0"]);
    assert!(
        error.contains("refusing to listen on 0.0.0.0:0 without authentication")
            && error.contains("--insecure"),
        "{error}"
    );
    let error = refused(&[
        "worker",
        "--listen",
        "0.0.0.0:0",
        "--coordinator",
        "http://127.0.0.1:9",
    ]);
    assert!(error.contains("refusing to listen"), "{error}");
    // The HTTP listener serves the API, so it is held to the same rule.
    let error = refused(&["coordinator", "--http-listen", "0.0.0.0:0"]);
    assert!(error.contains("refusing to listen on 0.0.0.0:0"), "{error}");

    let worker = token_file(secrets.path(), "worker", 'w');
    let worker = worker.to_str().unwrap();
    for (tokens, says) in [
        (&["--token-file", client][..], "needs --worker-token-file"),
        (
            &["--token-file", client, "--worker-token-file", client][..],
            "the same token",
        ),
        (&["--viewer-token-file", client][..], "needs --token-file"),
        (
            &[
                "--token-file",
                client,
                "--worker-token-file",
                worker,
                "--viewer-token-file",
                client,
            ][..],
            "must only read",
        ),
    ] {
        let error = refused(&[&["coordinator", "--listen", "127.0.0.1:0"][..], tokens].concat());
        assert!(error.contains(says), "{error}");
    }
    let error = refused(&["jobs", "--token-file", weak]);
    assert!(
        error.contains("is 7 bytes") && error.contains("openssl rand -hex 32"),
        "{error}"
    );
}

/// A certificate and key on disk, and the CA that signed it.
struct Identity {
    cert: String,
    key: String,
    ca: String,
}

impl Identity {
    fn flags(&self) -> [&str; 6] {
        [
            "--tls-cert",
            &self.cert,
            "--tls-key",
            &self.key,
            "--tls-ca",
            &self.ca,
        ]
    }
}

/// A certificate authority whose files live in `dir`.
struct Authority {
    dir: PathBuf,
    name: String,
    key: rcgen::KeyPair,
    params: rcgen::CertificateParams,
    pem: String,
}

impl Authority {
    fn new(dir: &Path, name: &str) -> Authority {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} CA"));
        let pem = params.self_signed(&key).unwrap().pem();
        let path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&path, &pem).unwrap();
        Authority {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            key,
            params,
            pem,
        }
    }

    fn ca_path(&self) -> String {
        self.dir
            .join(format!("{}-ca.pem", self.name))
            .to_str()
            .unwrap()
            .to_string()
    }

    /// Issues a certificate for the names a cluster on loopback uses:
    /// the coordinator's address and the workers' common name.
    fn issue(&self, who: &str, expired: bool) -> Identity {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            harrow_core::rpc::security::WORKER_TLS_NAME.to_string(),
        ])
        .unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let base = self.dir.join(format!("{}-{who}", self.name));
        let (cert_path, key_path) = (base.with_extension("crt"), base.with_extension("key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        assert!(self.pem.contains("BEGIN CERTIFICATE"));
        Identity {
            cert: cert_path.to_str().unwrap().to_string(),
            key: key_path.to_str().unwrap().to_string(),
            ca: self.ca_path(),
        }
    }
}

#[test]
fn mutual_tls_cluster_runs_jobs_and_refuses_strangers() {
    let pki = tempfile::tempdir().unwrap();
    let cluster_ca = Authority::new(pki.path(), "cluster");
    let node = cluster_ca.issue("node", false);
    let expired = cluster_ca.issue("expired", true);
    let other_ca = Authority::new(pki.path(), "other");
    let stranger = other_ca.issue("stranger", false);
    // A stranger who trusts the cluster's CA, so only the cluster can
    // refuse it.
    let stranger = Identity {
        ca: cluster_ca.ca_path(),
        ..stranger
    };

    let health = ["--health-listen", "127.0.0.1:0"];
    let flags = [&node.flags()[..], &health[..]].concat();
    let http = ["--http-listen", "127.0.0.1:0"];
    let coordinator_flags = [&flags[..], &http[..]].concat();
    let cluster = Cluster::start_configured(2, 2, &coordinator_flags, &flags);
    assert!(cluster.url.starts_with("https://"), "{}", cluster.url);
    // Probes cannot speak TLS: health is served in plaintext on a port of
    // its own, by the coordinator and by each worker.
    for log in ["coordinator", "worker-0", "worker-1"] {
        let text = std::fs::read_to_string(cluster.dir.path().join(format!("{log}.log"))).unwrap();
        let address = text
            .split("health=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("{log} names no health address:\n{text}"));
        assert_eq!(plain_health(address), ServingStatus::Serving, "{log}");
    }
    let corpus = write_corpus(&cluster.dir.path().join("corpus"));
    let input = cluster.path("corpus");
    let out = cluster.path("out");
    let mut submit = vec![
        "submit",
        "wordcount",
        "--input",
        &input,
        "--output",
        &out,
        "--wait",
    ];
    submit.extend(node.flags());
    let job = cluster.harrow(&submit);
    assert!(
        job.status.success(),
        "{}\n{}",
        describe(&job),
        cluster.logs()
    );
    assert_eq!(read_output(&out), reference_wordcount(&corpus));

    // Callers the cluster must refuse. Under TLS 1.3 a client learns of
    // its refused certificate either from the server's alert or only as a
    // closed connection, whichever reaches it first; the refusal is what
    // counts.
    for (who, flags, says) in [
        (
            "a certificate from another CA",
            stranger.flags().to_vec(),
            "jobs failed",
        ),
        (
            "an expired certificate",
            expired.flags().to_vec(),
            "jobs failed",
        ),
        ("no certificate", Vec::new(), "needs --tls-cert"),
    ] {
        let mut args = vec!["jobs"];
        args.extend(flags);
        let output = cluster.harrow(&args);
        assert!(!output.status.success(), "{who}: {}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{who}: {stderr}");
    }
    let plain = cluster.harrow(&[
        "jobs",
        "--coordinator",
        &cluster.url.replace("https", "http"),
    ]);
    assert!(!plain.status.success(), "{}", describe(&plain));

    // A worker whose certificate comes from another CA is refused, and
    // stops at once instead of retrying.
    let work_dir = cluster.path("stranger");
    let mut args = vec![
        "worker",
        "--coordinator",
        &cluster.url,
        "--work-dir",
        &work_dir,
    ];
    args.extend(stranger.flags());
    let rejected = harrow(&args);
    assert!(!rejected.status.success(), "{}", describe(&rejected));
    let stderr = String::from_utf8_lossy(&rejected.stderr);
    assert!(stderr.contains("fatal alert: UnknownCA"), "{stderr}");
    let workers = cluster.harrow(&[&["workers", "--json"][..], &node.flags()[..]].concat());
    let listed: serde_json::Value = serde_json::from_slice(&workers.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");

    // The HTTP listener serves HTTPS with the coordinator's certificate,
    // asking browsers for none; plain HTTP gets no answer.
    let address = cluster.http_address();
    let (status_line, body) = https_get(&address, "/api/v1/workers", &cluster_ca.ca_path());
    assert_eq!(status_line, "HTTP/1.1 200 OK", "{body}");
    // The same workers (their heartbeat times move between the calls).
    let ids = |workers: &serde_json::Value| -> Vec<serde_json::Value> {
        let workers = workers.as_array().unwrap();
        workers.iter().map(|w| w["worker_id"].clone()).collect()
    };
    let served: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ids(&served), ids(&listed));
    let plain = std::panic::catch_unwind(|| http_get(&address, "/healthz"));
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
}

/// `GET path` over HTTPS, trusting the CA in `ca` and presenting no
/// certificate; the status line and body.
fn https_get(address: &str, path: &str, ca: &str) -> (String, String) {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        // A server may close without close_notify; what was read counts.
        let _ = tls.read_to_end(&mut response).await;
        let response = String::from_utf8(response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_string(), body.to_string())
    })
}

/// A link planted under a job's output while the job runs: reducers refuse
/// to write through it, the job fails naming it, and the clean-up removes
/// the link without touching what it points at.
#[cfg(unix)]
#[test]
fn a_link_planted_in_the_output_is_refused_and_its_target_untouched() {
    let cluster = Cluster::start(1, 2, 2);
    let corpus = cluster.path("corpus");
    write_corpus(Path::new(&corpus));
    let out = cluster.path("out");
    let outside = cluster.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("canary"), "keep me").unwrap();

    let job = cluster.ok(&submit_args(
        "sleep",
        &corpus,
        &out,
        &["--reducers", "2", "--arg", "map_ms=300"],
    ));
    let job = job.trim();
    cluster
        .follow(job)
        .until("a map runs", |s| !common::attempts(s, "m").is_empty());
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink(&outside, Path::new(&out).join("_temporary")).unwrap();

    let status = cluster.follow(job).until("the job ends", |s| {
        s["state"] == "failed" || s["state"] == "succeeded"
    });
    assert_eq!(status["state"], "failed", "{status:#}");
    let error = status["error"].as_str().unwrap();
    assert!(
        error.contains("_temporary") && error.contains("symbolic link"),
        "{error}"
    );
    let left: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["canary"]);
    assert_eq!(
        std::fs::read_to_string(outside.join("canary")).unwrap(),
        "keep me"
    );
}
