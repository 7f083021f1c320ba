//! The standard gRPC health service (`grpc.health.v1`) for the coordinator
//! and the workers: open to every caller (Kubernetes probes carry no
//! credentials) and telling nothing but serving states. It is served on
//! the process's gRPC port and, with `--health-listen`, on a plaintext port
//! of its own, since the kubelet's gRPC probes cannot speak TLS.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use harrow_proto::v1::shuffle_service_server;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as Answer;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

pub use tonic_health::ServingStatus;

use crate::rpc::security::{Connector, describe_status, is_connection_refused};

/// The name of the process as a whole, as probes ask for it.
pub const OVERALL: &str = "";

/// A process's health statuses, one per service name.
#[derive(Debug, Clone)]
pub struct Health {
    reporter: HealthReporter,
    names: Vec<&'static str>,
}

impl Health {
    /// Statuses for `OVERALL` and `services`, all `initial`.
    pub async fn new(services: &[&'static str], initial: ServingStatus) -> Health {
        let mut names = vec![OVERALL];
        names.extend_from_slice(services);
        let health = Health {
            reporter: HealthReporter::new(),
            names,
        };
        for name in &health.names {
            health.set(name, initial).await;
        }
        health
    }

    pub async fn set(&self, service: &str, status: ServingStatus) {
        self.reporter.set_service_status(service, status).await;
    }

    /// The gRPC service answering for these statuses.
    pub fn service(&self) -> HealthServer<HealthService> {
        HealthServer::new(HealthService::from_health_reporter(self.reporter.clone()))
    }

    /// Forgets every status, which ends open `Watch` streams: a server
    /// shutting down gracefully would otherwise wait for them forever.
    pub async fn clear(&self) {
        let mut reporter = self.reporter.clone();
        for name in &self.names {
            reporter.clear_service_status(name).await;
        }
    }

    /// Binds `address` and serves only health there, in plaintext, until
    /// `stop` completes. Returns the bound address.
    pub async fn serve_plain(
        &self,
        address: SocketAddr,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(address).await?;
        let bound = listener.local_addr()?;
        let service = self.service();
        tokio::spawn(async move {
            let served = Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop)
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "health server stopped");
            }
        });
        Ok(bound)
    }
}

/// Why a probe of a worker's shuffle service failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeFailure {
    /// The connection was refused: nothing listens at the address, so the
    /// process is gone. A timeout or a reset says less (a stopped process,
    /// an overloaded host, a network partition).
    pub refused: bool,
    pub message: String,
}

/// Asks the worker at `address` (`host:port`) whether its shuffle service
/// is serving, within `timeout`: how the coordinator checks a worker that a
/// reducer could not reach, or that is late with its heartbeat.
pub async fn probe_shuffle(
    connector: &Connector,
    address: &str,
    timeout: Duration,
) -> Result<(), ProbeFailure> {
    let failed = |message: String| ProbeFailure {
        refused: false,
        message,
    };
    let channel = connector
        .worker_channel(address)
        .map_err(|e| failed(e.to_string()))?;
    let request = HealthCheckRequest {
        service: shuffle_service_server::SERVICE_NAME.to_string(),
    };
    let answer = tokio::time::timeout(timeout, HealthClient::new(channel).check(request))
        .await
        .map_err(|_| failed(format!("no answer within {} ms", timeout.as_millis())))?
        .map_err(|status| ProbeFailure {
            refused: is_connection_refused(&status),
            message: describe_status(&status),
        })?;
    match answer.into_inner().status() {
        Answer::Serving => Ok(()),
        other => Err(failed(format!("it reports {}", other.as_str_name()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_probe_tells_a_refused_connection_from_silence() {
        let connector = Connector::new(None, None);
        let timeout = Duration::from_millis(300);

        // A port nothing listens on any more.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = closed.local_addr().unwrap().to_string();
        drop(closed);
        let failure = probe_shuffle(&connector, &address, timeout)
            .await
            .unwrap_err();
        assert!(failure.refused, "{failure:?}");

        // A listener that accepts connections and never answers, as a
        // stopped process's kernel does.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = silent.local_addr().unwrap().to_string();
        let failure = probe_shuffle(&connector, &address, timeout)
            .await
            .unwrap_err();
        assert!(!failure.refused, "{failure:?}");
        assert!(failure.message.contains("no answer"), "{failure:?}");
        drop(silent);
    }
}
