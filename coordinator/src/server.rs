//! Starting and stopping a coordinator: bind, serve both gRPC services.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use harrow_core::registry::JobRegistry;
use harrow_core::rpc::health::{Health, ServingStatus};
use harrow_core::rpc::limits;
use harrow_core::rpc::security::{self, Role, Tls, Token, TokenCheck};
use harrow_core::rpc::shutdown::signalled;
use harrow_proto::v1::job_service_server::JobServiceServer;
use harrow_proto::v1::worker_service_server::WorkerServiceServer;
use tokio::sync::watch;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;

use crate::clock::{Clock, SystemClock};
use harrow_core::rpc::limits::MAX_MESSAGE_BYTES;

use crate::limits::CLOSE_CONNECTIONS;
use crate::plugins::PluginStore;
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::service::api::HttpAccess;
use crate::service::{Coordinator, JobApi, PluginSettings, WorkerApi};
use crate::state::{Retention, StateError, StateStore};

/// Why a coordinator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
}

/// How often workers heartbeat unless told otherwise.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 1000;

#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub listen: SocketAddr,
    pub scheduler: SchedulerConfig,
    pub heartbeat_interval_ms: u64,
    /// Where uploaded plugins are stored.
    pub plugin_dir: PathBuf,
    /// The `harrow` binary, run as `harrow plugin-host` to check plugin jobs.
    pub executable: PathBuf,
    /// The token clients present (job service); `None`: not checked.
    pub client_token: Option<Token>,
    /// The token workers present (worker service); `None`: not checked.
    pub worker_token: Option<Token>,
    /// TLS (mutual) on the listener; `None`: plain HTTP/2.
    pub tls: Option<Tls>,
    /// Also serve gRPC health, in plaintext and alone, on this address (for
    /// probes that cannot speak TLS).
    pub health_listen: Option<SocketAddr>,
    /// Serve `/metrics`, `/healthz` and the JSON API (`/api/v1/`) over
    /// HTTP on this address.
    pub http_listen: Option<SocketAddr>,
    /// A read-only token for the JSON API (besides the client token).
    pub viewer_token: Option<Token>,
    /// Host names the HTTP listener answers to besides IP addresses and
    /// `localhost`.
    pub http_hosts: Vec<String>,
    /// Connections the gRPC server holds open at once.
    pub max_connections: usize,
    /// Where the coordinator keeps its state across restarts; `None`: in
    /// memory only.
    pub state_dir: Option<PathBuf>,
    /// How long finished jobs stay in the state dir's history.
    pub retention: Retention,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            scheduler: SchedulerConfig::default(),
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            plugin_dir: std::env::temp_dir().join("harrow").join("plugins"),
            executable: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("harrow")),
            client_token: None,
            worker_token: None,
            tls: None,
            health_listen: None,
            http_listen: None,
            viewer_token: None,
            http_hosts: Vec::new(),
            max_connections: limits::DEFAULT_MAX_CONNECTIONS,
            state_dir: None,
            retention: Retention::default(),
        }
    }
}

/// How often the scheduler gets a `Tick`: often enough to notice a silent
/// worker soon after its timeout.
fn tick_interval(config: &SchedulerConfig) -> std::time::Duration {
    std::time::Duration::from_millis((config.worker_timeout_ms / 4).clamp(10, 1_000))
}

/// A running coordinator.
pub struct CoordinatorHandle {
    pub address: SocketAddr,
    shutdown: watch::Sender<bool>,
    serving: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    /// `grpc.health.v1`: the coordinator as a whole ("") and each service.
    health: Health,
    /// Where it serves only gRPC health in plaintext, if asked to.
    pub health_address: Option<SocketAddr>,
    /// Where it serves `/metrics` and `/healthz`, if asked to.
    pub http_address: Option<SocketAddr>,
    tls: bool,
    coordinator: Arc<Coordinator>,
}

const WORKER_SERVICE: &str = <WorkerServiceServer<WorkerApi> as NamedService>::NAME;
const JOB_SERVICE: &str = <JobServiceServer<JobApi> as NamedService>::NAME;

impl CoordinatorHandle {
    /// The URL clients and workers use.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.address)
    }

    /// Stops serving, then records in the state dir (if any) the ids
    /// handed out, so the next start goes on from them.
    pub async fn shutdown(mut self) {
        self.health.clear().await;
        let _ = self.shutdown.send(true);
        // Clients that keep a connection open do not hold the coordinator.
        if tokio::time::timeout(CLOSE_CONNECTIONS, &mut self.serving)
            .await
            .is_err()
        {
            tracing::warn!("closing connections that outlived the shutdown");
            self.serving.abort();
        }
        if let Err(error) = self.coordinator.close_state().await {
            tracing::warn!(%error, "could not record the ids handed out; the next start skips ahead");
        }
    }

    /// Serves until `stop` resolves, then shuts down; or until the server
    /// fails.
    pub async fn serve_until(
        mut self,
        stop: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        tokio::select! {
            served = &mut self.serving => served.expect("coordinator server task panicked"),
            () = stop => {
                self.shutdown().await;
                Ok(())
            }
        }
    }
}

/// Opens the state (refusing a damaged or busy one before anything is
/// bound), then serves.
pub async fn start_coordinator(
    config: CoordinatorConfig,
    registry: Arc<JobRegistry>,
) -> Result<CoordinatorHandle, StartError> {
    let clock = Arc::new(SystemClock::new());
    let mut scheduler = Scheduler::new(config.scheduler.clone());
    let mut resumed = Vec::new();
    let state = match &config.state_dir {
        Some(dir) => {
            let (store, restored) = StateStore::open(dir, config.retention, clock.now_ms())?;
            tracing::info!(
                state = %store.path().display(),
                generation = restored.generation,
                resumed = restored.jobs.len(),
                workers = restored.workers.iter().filter(|w| w.is_alive()).count(),
                "coordinator state restored"
            );
            for job in &restored.interrupted {
                tracing::warn!(%job, "the job cannot be resumed: marked failed");
            }
            scheduler.start_ids_after(restored.jobs_used, restored.workers_used);
            resumed = scheduler.restore(restored.workers, restored.jobs, clock.now_ms());
            Some(Arc::new(store))
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let address = listener.local_addr()?;
    let tick = tick_interval(&config.scheduler);
    let coordinator = Coordinator::new(
        scheduler,
        clock,
        registry,
        PluginSettings {
            store: PluginStore::new(config.plugin_dir.clone()),
            executable: config.executable.clone(),
        },
        config.heartbeat_interval_ms,
        // Probes ask only for health, which needs no token.
        security::Connector::new(None, config.tls.clone()),
        (state, config.retention),
    );
    coordinator.start_persisting();
    // A job that was committing commits again.
    coordinator.carry_out(&resumed);
    let handle = coordinator.clone();
    let (shutdown, stopped) = watch::channel(false);
    let ticking = coordinator.clone();
    let mut ticker_stopped = stopped.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => ticking.tick(),
                _ = ticker_stopped.wait_for(|stop| *stop) => return,
            }
        }
    });
    // Probes carry no token: health is open, and tells nothing else.
    let health = Health::new(&[WORKER_SERVICE, JOB_SERVICE], ServingStatus::Serving).await;
    let health_address = match config.health_listen {
        Some(address) => Some(
            health
                .serve_plain(address, signalled(stopped.clone()))
                .await?,
        ),
        None => None,
    };
    let health_service = health.service();
    let http_address = match config.http_listen {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address).await?;
            let bound = listener.local_addr()?;
            let tokens = [&config.client_token, &config.viewer_token]
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            let mut access = HttpAccess::new(tokens, config.http_hosts.clone());
            access.https = config.tls.is_some();
            let https = match &config.tls {
                Some(tls) => Some(crate::https::config(tls).map_err(StartError::Tls)?),
                None => None,
            };
            crate::metrics::serve(
                coordinator.clone(),
                access,
                listener,
                https,
                signalled(stopped.clone()),
            )?;
            Some(bound)
        }
        None => None,
    };
    let mut server =
        security::server(config.tls.as_ref()).map_err(|e| StartError::Tls(e.to_string()))?;
    let serving = tokio::spawn(
        server
            .add_service(health_service)
            .add_service(InterceptedService::new(
                WorkerServiceServer::new(WorkerApi(coordinator.clone()))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
                TokenCheck::new(Role::Worker, config.worker_token.as_ref()),
            ))
            .add_service(InterceptedService::new(
                JobServiceServer::new(JobApi(coordinator.clone()))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
                TokenCheck::new(Role::Client, config.client_token.as_ref()),
            ))
            .serve_with_incoming_shutdown(
                limits::incoming(listener, config.max_connections),
                signalled(stopped),
            ),
    );
    Ok(CoordinatorHandle {
        address,
        shutdown,
        serving,
        health,
        health_address,
        http_address,
        tls: config.tls.is_some(),
        coordinator: handle,
    })
}
