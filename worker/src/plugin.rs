//! A worker's plugins: a job's library fetched from the coordinator by its
//! hash, once, and one plugin host (`harrow_plugin::PluginHost`) per job.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use harrow_core::ids::JobId;
use harrow_core::rpc::security::AuthChannel;
use harrow_core::task::PluginRef;
use harrow_proto::v1 as pb;
use harrow_proto::v1::worker_service_client::WorkerServiceClient;
use harrow_sdk::JobRuntime;
use tokio::io::AsyncWriteExt;

use harrow_plugin::limits::CREATE_TIMEOUT;
use harrow_plugin::{HostError, HostSpec, LibraryHasher, PluginHost, is_sha256_hex};

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("invalid plugin hash {0:?}: expected 64 hex digits")]
    BadHash(String),
    #[error("fetching plugin {plugin} from the coordinator: {status}")]
    Fetch {
        plugin: PluginRef,
        status: tonic::Status,
    },
    #[error("plugin {plugin}: the fetched bytes hash to {found}, not the expected sha256")]
    HashMismatch { plugin: PluginRef, found: String },
    #[error("plugin cache {path}: {source}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Host(#[from] HostError),
}

/// The worker's plugins: libraries fetched once by hash into `dir`, and one
/// running host per job.
pub struct Plugins {
    executable: PathBuf,
    dir: PathBuf,
    /// Held while a host starts, so concurrent attempts of a job share one.
    hosts: tokio::sync::Mutex<HashMap<JobId, Arc<PluginHost>>>,
    /// Hosts started, numbering their sockets: a replaced host removes its
    /// own socket, never its successor's.
    started: std::sync::atomic::AtomicU64,
}

/// What the worker knows of a job when it needs its plugin.
#[derive(Debug, Clone, Copy)]
pub struct PluginJob<'a> {
    pub job: JobId,
    pub plugin: &'a PluginRef,
    pub name: &'a str,
    pub args: &'a std::collections::BTreeMap<String, String>,
    pub input_schema: &'a arrow::datatypes::Schema,
}

impl Plugins {
    /// `executable` is the `harrow` binary; libraries and sockets go in `dir`.
    pub fn new(executable: PathBuf, dir: PathBuf) -> Self {
        Plugins {
            executable,
            dir,
            hosts: tokio::sync::Mutex::new(HashMap::new()),
            started: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The job, run by the job's host (started, and the library fetched,
    /// when there is none or the last one died).
    pub async fn job(
        &self,
        job: PluginJob<'_>,
        coordinator: &WorkerServiceClient<AuthChannel>,
    ) -> Result<Arc<dyn JobRuntime>, PluginError> {
        let mut hosts = self.hosts.lock().await;
        if let Some(host) = hosts.get(&job.job)
            && !host.has_exited()
        {
            return Ok(host.job());
        }
        let library = self.library(job.plugin, coordinator).await?;
        let number = self
            .started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let host = PluginHost::start(HostSpec {
            executable: &self.executable,
            library: &library,
            plugin: job.plugin,
            job_name: job.name,
            args: job.args,
            input_schema: job.input_schema,
            socket: Some(self.dir.join(format!("{}-{number}.sock", job.job))),
            timeout: CREATE_TIMEOUT,
        })
        .await?;
        let host = Arc::new(host);
        hosts.insert(job.job, host.clone());
        Ok(host.job())
    }

    /// Kills the job's host, if it has one: its calls in flight fail.
    pub async fn kill(&self, job: JobId) {
        if let Some(host) = self.hosts.lock().await.remove(&job) {
            host.kill();
        }
    }

    /// Jobs with a host.
    pub async fn jobs(&self) -> Vec<JobId> {
        self.hosts.lock().await.keys().copied().collect()
    }

    /// The library on local disk, fetched from the coordinator and checked
    /// against its hash the first time.
    pub async fn library(
        &self,
        plugin: &PluginRef,
        coordinator: &WorkerServiceClient<AuthChannel>,
    ) -> Result<PathBuf, PluginError> {
        if !is_sha256_hex(&plugin.sha256) {
            return Err(PluginError::BadHash(plugin.sha256.clone()));
        }
        let path = self.dir.join(format!("{}.so", plugin.sha256));
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(path);
        }
        let cache = |source| PluginError::Cache {
            path: self.dir.clone(),
            source,
        };
        tokio::fs::create_dir_all(&self.dir).await.map_err(cache)?;
        let fetch = |status| PluginError::Fetch {
            plugin: plugin.clone(),
            status,
        };
        let mut chunks = coordinator
            .clone()
            .fetch_plugin(pb::FetchPluginRequest {
                sha256: plugin.sha256.clone(),
            })
            .await
            .map_err(fetch)?
            .into_inner();
        let temporary = tempfile::NamedTempFile::new_in(&self.dir).map_err(cache)?;
        let (file, temporary) = temporary.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut hasher = LibraryHasher::default();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(fetch)?;
            hasher.update(&chunk.data);
            file.write_all(&chunk.data).await.map_err(cache)?;
        }
        file.sync_all().await.map_err(cache)?;
        let found = hasher.finish();
        if found != plugin.sha256 {
            return Err(PluginError::HashMismatch {
                plugin: plugin.clone(),
                found,
            });
        }
        temporary.persist(&path).map_err(|e| cache(e.error))?;
        tracing::info!(plugin = %plugin, "plugin fetched");
        Ok(path)
    }
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins").field("dir", &self.dir).finish()
    }
}
