//! The worker process's runtime: serve shuffle segments, register with the
//! coordinator, heartbeat on a task of its own (never behind running work),
//! pull attempts for free slots with a long poll, run them, report them.
//! Here: the worker's configuration, its servers, start and drain; in
//! [`link`] every call to the coordinator; in [`attempts`] running one.

mod attempts;
mod link;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::AbortHandle;
use harrow_core::ids::AttemptId;
use harrow_core::registry::JobRegistry;
use harrow_core::rpc::health::{Health, OVERALL, ServingStatus};
use harrow_core::rpc::limits;
use harrow_core::rpc::security::{self, AuthChannel, Connector, Role, Tls, Token, TokenCheck};
use harrow_core::rpc::shutdown::signalled;
use harrow_core::task::{AttemptCounters, AttemptOutcome};
use harrow_core::wire;
use harrow_proto::v1::shuffle_service_server::ShuffleServiceServer;
use harrow_proto::v1::worker_service_client::WorkerServiceClient;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tonic::service::interceptor::InterceptedService;

use crate::limits::{CLOSE_CONNECTIONS, MAX_SHUFFLE_MESSAGE_BYTES};
use crate::plugin::Plugins;
use crate::shuffle::serve::{ShuffleKeys, ShuffleServer};
use link::{heartbeat_loop, pull_loop, send_heartbeat};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The coordinator's URL, e.g. `http://127.0.0.1:7070`.
    pub coordinator: String,
    /// Where to serve shuffle segments; port 0 picks a free port.
    pub listen: SocketAddr,
    pub slots: usize,
    /// Where map output and reduce scratch files live.
    pub work_dir: PathBuf,
    /// The `harrow` binary, run as `harrow plugin-host` for job plugins.
    pub executable: PathBuf,
    /// Bytes of memory the worker's tasks may use together; each slot gets
    /// an equal share (see `memory::default_budget`).
    pub memory_budget: u64,
    /// The worker token: presented to the coordinator and to other workers,
    /// and required of reducers fetching from this one. `None`: no checks.
    pub token: Option<Token>,
    /// TLS for the shuffle server and every connection (mutual); `None`:
    /// plain HTTP/2.
    pub tls: Option<Tls>,
    /// The address other workers fetch shuffle segments from, `HOST` or
    /// `HOST:PORT` (default port: the bound one); `None`: the bound address,
    /// which must then not be unspecified (0.0.0.0).
    pub advertise: Option<String>,
    /// Also serve gRPC health, in plaintext and alone, on this address (for
    /// probes that cannot speak TLS).
    pub health_listen: Option<SocketAddr>,
    /// Connections the shuffle server holds open at once.
    pub max_connections: usize,
}

/// The shuffle address the worker registers: `advertise` (with the bound
/// port when it names none), or the bound address itself.
fn advertised_address(advertise: Option<&str>, bound: SocketAddr) -> Result<String, WorkerError> {
    let Some(advertise) = advertise.map(str::trim) else {
        if bound.ip().is_unspecified() {
            return Err(WorkerError::Advertise {
                reason: format!(
                    "listening on {bound}, which other workers cannot connect to; give --advertise with this worker's reachable address (in Kubernetes, the pod IP)"
                ),
            });
        }
        return Ok(bound.to_string());
    };
    if let Ok(address) = advertise.parse::<SocketAddr>() {
        return Ok(address.to_string());
    }
    if let Ok(ip) = advertise.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, bound.port()).to_string());
    }
    let valid_host = |host: &str| {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    match advertise.rsplit_once(':') {
        Some((host, port)) if valid_host(host) && port.parse::<u16>().is_ok() => {
            Ok(advertise.to_string())
        }
        None if valid_host(advertise) => Ok(format!("{advertise}:{}", bound.port())),
        _ => Err(WorkerError::Advertise {
            reason: format!("{advertise:?} is not HOST or HOST:PORT"),
        }),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("TLS: {reason}")]
    Tls { reason: String },
    #[error("--advertise: {reason}")]
    Advertise { reason: String },
    #[error("coordinator: {0}")]
    CoordinatorUrl(#[from] harrow_core::rpc::security::ConnectError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("work dir {path}: {source}")]
    WorkDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not register with the coordinator at {url} after {tries} tries: {reason}")]
    Register {
        url: String,
        tries: u32,
        reason: String,
    },
    #[error("drawing the worker's incarnation: {0}")]
    Incarnation(#[source] std::io::Error),
}

/// A running worker.
pub struct WorkerHandle {
    /// The address the shuffle server is bound to.
    pub shuffle_address: SocketAddr,
    /// The address it registered for other workers to fetch from.
    pub advertised: String,
    /// Where it serves only gRPC health in plaintext, if asked to.
    pub health_address: Option<SocketAddr>,
    pub worker_id: String,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    shared: Arc<Shared>,
}

impl WorkerHandle {
    /// Stops pulling work, aborts running attempts and stops serving.
    pub async fn shutdown(mut self) {
        self.shared.health.clear().await;
        let _ = self.shutdown.send(true);
        let stopping = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(CLOSE_CONNECTIONS, stopping)
            .await
            .is_err()
        {
            tracing::warn!("closing connections that outlived the shutdown");
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
    }

    /// Graceful shutdown: take no new tasks; let running attempts finish
    /// within `grace` (hand back the rest); keep serving map output until
    /// the coordinator says no reducer needs it, or `grace` ends; tell the
    /// coordinator it leaves; stop.
    pub async fn drain(self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        let shared = self.shared.clone();
        shared.draining.store(true, Ordering::SeqCst);
        // Ready no more; the shuffle service stays up for the reducers.
        shared.health.set(OVERALL, ServingStatus::NotServing).await;
        tracing::info!(grace_ms = grace.as_millis() as u64, "draining");
        send_heartbeat(&shared, false).await;
        loop {
            let finished = shared.attempt_finished.notified();
            if shared.running.lock().expect("running lock").is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, finished).await.is_err() {
                hand_back_running(&shared).await;
                break;
            }
        }
        loop {
            let released = shared.may_exit.notified();
            if shared.exit_allowed.load(Ordering::SeqCst) {
                break;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                tracing::warn!("grace period over while map output may still be needed");
                break;
            }
        }
        send_heartbeat(&shared, true).await;
        self.shutdown().await;
    }
}

/// Aborts the attempts still running and reports them handed back, so the
/// coordinator reruns them at once without counting them as failures.
async fn hand_back_running(shared: &Shared) {
    let running: Vec<(AttemptId, RunningAttempt)> = shared
        .running
        .lock()
        .expect("running lock")
        .drain()
        .collect();
    for (attempt, running) in running {
        running.abort.abort();
        let outcome = AttemptOutcome::HandedBack {
            message: "the worker is shutting down and its grace period ended".to_string(),
        };
        let report = wire::attempt_report(
            shared.worker_id(),
            attempt,
            AttemptCounters::default(),
            outcome,
        );
        if let Err(status) = shared.coordinator.clone().report_attempt(report).await {
            tracing::warn!(%attempt, %status, "could not hand back attempt");
        }
    }
}

/// An attempt this worker runs: how to stop it and how far it got.
struct RunningAttempt {
    /// Stops the attempt's work; its report, once sent, is not stopped
    /// (the reply may carry the slot's next task).
    abort: AbortHandle,
    /// Input bytes processed, reported with every heartbeat.
    progress: Arc<AtomicU64>,
}

struct Shared {
    config: WorkerConfig,
    registry: Arc<JobRegistry>,
    plugins: Plugins,
    coordinator: WorkerServiceClient<AuthChannel>,
    /// How to reach the coordinator and other workers.
    connector: Connector,
    shuffle_address: String,
    worker_id: Mutex<String>,
    /// Drawn at start; registration and heartbeats carry it.
    incarnation: u64,
    running: Mutex<HashMap<AttemptId, RunningAttempt>>,
    /// The jobs with map output here, and their shuffle keys.
    shuffle_keys: ShuffleKeys,
    slots: Arc<Semaphore>,
    /// Shutting down: pull no more work.
    draining: AtomicBool,
    /// Woken whenever an attempt ends.
    attempt_finished: Notify,
    /// The coordinator said this draining worker may exit.
    exit_allowed: AtomicBool,
    may_exit: Notify,
    /// The `grpc.health.v1` statuses: the worker as a whole (serving while
    /// registered and not draining) and its shuffle service.
    health: Health,
}

const SHUFFLE_SERVICE: &str =
    <ShuffleServiceServer<ShuffleServer> as tonic::server::NamedService>::NAME;

/// Starts a worker: binds the shuffle server, registers, and begins work.
pub async fn start_worker(
    config: WorkerConfig,
    registry: Arc<JobRegistry>,
) -> Result<WorkerHandle, WorkerError> {
    assert!(config.slots > 0, "a worker has at least one slot");
    std::fs::create_dir_all(&config.work_dir).map_err(|source| WorkerError::WorkDir {
        path: config.work_dir.clone(),
        source,
    })?;
    let connector = Connector::new(config.token.as_ref(), config.tls.clone());
    let mut server = security::server(config.tls.as_ref()).map_err(|e| WorkerError::Tls {
        reason: e.to_string(),
    })?;
    let channel = connector.channel(&config.coordinator)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| WorkerError::Listen {
            address: config.listen,
            source,
        })?;
    let shuffle_address = listener
        .local_addr()
        .map_err(|source| WorkerError::Listen {
            address: config.listen,
            source,
        })?;
    let advertised = advertised_address(config.advertise.as_deref(), shuffle_address)?;
    let (shutdown, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let shuffle_keys = ShuffleKeys::default();
    let shuffle = InterceptedService::new(
        ShuffleServiceServer::new(ShuffleServer::new(
            config.work_dir.clone(),
            shuffle_keys.clone(),
        ))
        .max_decoding_message_size(MAX_SHUFFLE_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_SHUFFLE_MESSAGE_BYTES),
        TokenCheck::new(Role::Worker, config.token.as_ref()),
    );
    // Not ready until registered; the shuffle service serves at once.
    let health = Health::new(&[SHUFFLE_SERVICE], ServingStatus::NotServing).await;
    health.set(SHUFFLE_SERVICE, ServingStatus::Serving).await;
    let health_address = match config.health_listen {
        Some(address) => Some(
            health
                .serve_plain(address, signalled(stopped.clone()))
                .await
                .map_err(|source| WorkerError::Listen { address, source })?,
        ),
        None => None,
    };
    let health_service = health.service();
    let server_stop = stopped.clone();
    let max_connections = config.max_connections;
    tasks.spawn(async move {
        let serving = server
            // Probes carry no token: health is open, and tells nothing else.
            .add_service(health_service)
            .add_service(shuffle)
            .serve_with_incoming_shutdown(
                limits::incoming(listener, max_connections),
                signalled(server_stop),
            )
            .await;
        if let Err(error) = serving {
            tracing::error!(%error, "shuffle server stopped");
        }
    });

    let shared = Arc::new(Shared {
        slots: Arc::new(Semaphore::new(config.slots)),
        plugins: Plugins::new(config.executable.clone(), config.work_dir.join("plugins")),
        config,
        registry,
        coordinator: WorkerServiceClient::new(channel)
            .max_decoding_message_size(limits::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(limits::MAX_MESSAGE_BYTES),
        connector,
        shuffle_address: advertised.clone(),
        worker_id: Mutex::new(String::new()),
        incarnation: harrow_core::rpc::security::draw_incarnation()
            .map_err(WorkerError::Incarnation)?,
        running: Mutex::new(HashMap::new()),
        shuffle_keys,
        draining: AtomicBool::new(false),
        attempt_finished: Notify::new(),
        exit_allowed: AtomicBool::new(false),
        may_exit: Notify::new(),
        health,
    });
    let heartbeat_interval = shared.register().await?;
    shared.health.set(OVERALL, ServingStatus::Serving).await;
    let worker_id = shared.worker_id();
    tracing::info!(
        %worker_id,
        %shuffle_address,
        slots = shared.config.slots,
        memory_budget = shared.config.memory_budget,
        "worker registered"
    );

    tasks.spawn(until_stopped(
        stopped.clone(),
        heartbeat_loop(shared.clone(), heartbeat_interval),
    ));
    tasks.spawn(until_stopped(stopped, pull_loop(shared.clone())));
    Ok(WorkerHandle {
        shuffle_address,
        advertised,
        health_address,
        worker_id,
        shutdown,
        tasks,
        shared,
    })
}

async fn until_stopped(mut stopped: watch::Receiver<bool>, work: impl Future<Output = ()>) {
    tokio::select! {
        _ = stopped.wait_for(|stop| *stop) => {}
        () = work => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_address_defaults_to_the_bound_one() {
        let bound: SocketAddr = "10.1.2.3:7071".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:7071".parse().unwrap();
        let advertise =
            |text: Option<&str>, bound| advertised_address(text, bound).map_err(|e| e.to_string());
        assert_eq!(advertise(None, bound).unwrap(), "10.1.2.3:7071");
        let error = advertise(None, any).unwrap_err();
        assert!(
            error.contains("pod IP") && error.contains("0.0.0.0:7071"),
            "{error}"
        );
        assert_eq!(advertise(Some("10.0.0.9"), any).unwrap(), "10.0.0.9:7071");
        assert_eq!(
            advertise(Some("10.0.0.9:9000"), any).unwrap(),
            "10.0.0.9:9000"
        );
        assert_eq!(advertise(Some("fd00::1"), any).unwrap(), "[fd00::1]:7071");
        assert_eq!(
            advertise(Some("worker-3.harrow"), any).unwrap(),
            "worker-3.harrow:7071"
        );
        assert_eq!(advertise(Some("w3:80"), any).unwrap(), "w3:80");
        for bad in ["", "a b", "host:port", "http://x"] {
            assert!(advertise(Some(bad), any).is_err(), "{bad:?}");
        }
    }
}
