//! Starting and stopping a coordinator: bind, serve both gRPC services.

use std::net::SocketAddr;
use std::sync::Arc;

use harrow_core::registry::JobRegistry;
use harrow_proto::v1::job_service_server::JobServiceServer;
use harrow_proto::v1::worker_service_server::WorkerServiceServer;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

use crate::clock::SystemClock;
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::service::{Coordinator, JobApi, WorkerApi};

/// The largest gRPC message the coordinator accepts or sends.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub listen: SocketAddr,
    pub max_attempts: u32,
    pub heartbeat_interval_ms: u64,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            max_attempts: SchedulerConfig::default().max_attempts,
            heartbeat_interval_ms: 1000,
        }
    }
}

/// A running coordinator.
pub struct CoordinatorHandle {
    pub address: SocketAddr,
    shutdown: watch::Sender<bool>,
    serving: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl CoordinatorHandle {
    /// The URL clients and workers use.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.serving.await;
    }

    /// Serves until the server fails.
    pub async fn wait(self) -> Result<(), tonic::transport::Error> {
        self.serving
            .await
            .expect("coordinator server task panicked")
    }
}

pub async fn start_coordinator(
    config: CoordinatorConfig,
    registry: Arc<JobRegistry>,
) -> std::io::Result<CoordinatorHandle> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let address = listener.local_addr()?;
    let scheduler = Scheduler::new(SchedulerConfig {
        max_attempts: config.max_attempts,
    });
    let coordinator = Coordinator::new(
        scheduler,
        Arc::new(SystemClock),
        registry,
        config.heartbeat_interval_ms,
    );
    let (shutdown, mut stopped) = watch::channel(false);
    let serving = tokio::spawn(
        Server::builder()
            .add_service(
                WorkerServiceServer::new(WorkerApi(coordinator.clone()))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(
                JobServiceServer::new(JobApi(coordinator))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }),
    );
    Ok(CoordinatorHandle {
        address,
        shutdown,
        serving,
    })
}
