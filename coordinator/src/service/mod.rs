//! The coordinator's gRPC services, a thin layer around the scheduler:
//! convert the request to an [`Event`], apply it under the lock with the
//! clock's time, carry out side effects, convert the reply. Protobuf types
//! stop here.

pub mod api;
mod durable;
mod jobs;
mod status;
pub mod ui;
mod workers;

pub use jobs::JobApi;
pub use workers::WorkerApi;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harrow_core::ids::{JobId, WorkerId};
use harrow_core::registry::JobRegistry;
use harrow_core::rpc::health::probe_shuffle;
use harrow_core::rpc::security::Connector;
use harrow_core::storage::{Location, StorageOptions};
use harrow_core::task::{PluginRef, SUCCESS_FILE, TEMPORARY_DIR};
use harrow_plugin::limits::CREATE_TIMEOUT;
use harrow_plugin::{HostSpec, PluginHost};
use harrow_proto::v1 as pb;
use harrow_sdk::{JobArgs, JobRuntime};
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::{Notify, watch};
use tonic::Status;

use crate::clock::Clock;
use crate::limits::MAX_TASK_WAIT;
use crate::plugins::PluginStore;
use crate::scheduler::{Action, Event, Scheduler};
use crate::state::{Retention, StateStore};
use durable::Durable;

/// Where uploaded plugins live, and the `harrow` binary that runs one in
/// a child process to check a submission.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    pub store: PluginStore,
    pub executable: PathBuf,
}

/// State shared by the services.
pub struct Coordinator {
    scheduler: Mutex<Scheduler>,
    clock: Arc<dyn Clock>,
    registry: Arc<JobRegistry>,
    plugins: PluginSettings,
    heartbeat_interval_ms: u64,
    /// How the coordinator reaches workers to probe a suspect one.
    connector: Connector,
    /// Woken whenever work may have become available.
    work_available: Notify,
    /// Woken on every change, for waiting reducers' questions.
    changed: Notify,
    /// Bumped on every state change, for status watchers.
    version: watch::Sender<u64>,
    /// The state dir, if the coordinator has one.
    durable: Option<Durable>,
    /// How many ended jobs, and for how long, stay queryable (in the state
    /// dir if there is one, else in memory).
    retention: Retention,
}

impl Coordinator {
    pub fn new(
        scheduler: Scheduler,
        clock: Arc<dyn Clock>,
        registry: Arc<JobRegistry>,
        plugins: PluginSettings,
        heartbeat_interval_ms: u64,
        connector: Connector,
        (state, retention): (Option<Arc<StateStore>>, Retention),
    ) -> Arc<Self> {
        let durable = state.map(|store| Durable::new(store, retention, &scheduler));
        Arc::new(Coordinator {
            scheduler: Mutex::new(scheduler),
            clock,
            registry,
            plugins,
            heartbeat_interval_ms,
            connector,
            work_available: Notify::new(),
            changed: Notify::new(),
            version: watch::Sender::new(0),
            durable,
            retention,
        })
    }

    /// The cluster's metrics in the Prometheus text format.
    pub fn metrics(&self) -> String {
        crate::metrics::render(&self.scheduler.lock().expect("scheduler lock"))
    }

    /// Every worker it has seen, as `harrow workers` shows them.
    pub fn worker_reports(&self) -> Vec<harrow_core::report::WorkerReport> {
        crate::report::worker_reports(&self.scheduler.lock().expect("scheduler lock"))
    }

    /// Applies one event and starts the side effects it calls for.
    fn apply(self: &Arc<Self>, event: Event) -> Vec<Action> {
        // Task requests and heartbeats change nothing worth waking anyone
        // for unless they return actions. A change wakes one waiting task
        // request, which wakes the next if it got work (a relay, not a
        // herd of requests each looking at every task); ticks wake them
        // all: time passing alone can make work available (a worker
        // declared dead, an attempt now stalled), for any of them.
        let is_poll = matches!(
            event,
            Event::RequestTasks { .. } | Event::Heartbeat { .. } | Event::WaitMapOutputs { .. }
        );
        let is_tick = matches!(event, Event::Tick);
        let actions = {
            let mut scheduler = self.scheduler.lock().expect("scheduler lock");
            scheduler.handle(event, self.clock.now_ms())
        };
        // The version moves first: a side effect that waits for the state
        // dir to hold this change (a commit) waits for this version.
        if !is_poll || !actions.is_empty() {
            if is_tick {
                self.work_available.notify_waiters();
            } else {
                self.work_available.notify_one();
            }
            self.changed.notify_waiters();
            self.version.send_modify(|v| *v += 1);
        }
        self.carry_out(&actions);
        actions
    }

    /// Starts the side effects `actions` call for.
    pub fn carry_out(self: &Arc<Self>, actions: &[Action]) {
        for action in actions {
            match action {
                Action::CommitJob { job, output } => self.spawn_commit(*job, output.clone()),
                Action::AbortJobOutput {
                    job,
                    output,
                    storage,
                } => {
                    let (job, output, storage) = (*job, output.clone(), storage.clone());
                    tokio::spawn(async move {
                        if let Err(error) = clear_temporary(&output, &storage).await {
                            tracing::warn!(%job, %error, "could not clear temporary output");
                        }
                    });
                }
                Action::JobFinished { job, state } => {
                    tracing::info!(%job, state = state.name(), "job finished")
                }
                Action::ProbeWorker { worker, address } => {
                    self.spawn_probe(*worker, address.clone())
                }
                Action::JobAccepted { .. }
                | Action::JobRejected { .. }
                | Action::WorkerRegistered { .. }
                | Action::UnknownWorker { .. }
                | Action::Assign { .. }
                | Action::CommitGranted { .. }
                | Action::CommitRefused { .. }
                | Action::WaitForMapOutputs { .. }
                | Action::MapOutputs { .. }
                | Action::StopAttempt { .. }
                | Action::KillAttempts { .. }
                | Action::ReleaseJobs { .. }
                | Action::MayExit { .. } => {}
            }
        }
    }

    /// Builds a plugin's job in a plugin host of its own, as a worker will,
    /// to check its name and arguments against the input's schema. With a
    /// `socket`, the host also serves the job there.
    async fn check_plugin_job(
        &self,
        plugin: &PluginRef,
        request: &pb::SubmitJobRequest,
        input_schema: &arrow::datatypes::Schema,
        socket: Option<PathBuf>,
    ) -> Result<Arc<PluginHost>, String> {
        let library = self
            .plugins
            .store
            .path(&plugin.sha256)
            .map_err(|e| e.to_string())?;
        let args = request.args.clone().into_iter().collect();
        PluginHost::start(HostSpec {
            executable: &self.plugins.executable,
            library: &library,
            plugin,
            job_name: &request.job_name,
            args: &args,
            input_schema,
            socket,
            timeout: CREATE_TIMEOUT,
        })
        .await
        .map(Arc::new)
        .map_err(|e| e.to_string())
    }

    /// Whether `name` is a built-in job that generates its input.
    fn builtin_generates(&self, name: &str, args: &JobArgs) -> bool {
        let args = args
            .clone()
            .with_input_schema(harrow_sdk::generated_schema());
        self.registry
            .instantiate(name, &args)
            .is_ok_and(|job| job.schema().generated.is_some())
    }

    /// A plugin's job served by a plugin host of the coordinator's own, to
    /// sample its map output; the host ends when the job is dropped.
    async fn sampling_plugin_job(
        &self,
        plugin: &PluginRef,
        request: &pb::SubmitJobRequest,
        input_schema: &arrow::datatypes::Schema,
    ) -> Result<(Arc<dyn JobRuntime>, tempfile::TempDir), Status> {
        // A short path of its own: socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("harrow-sample")
            .tempdir()
            .map_err(|e| status::internal("creating a directory for sampling", e))?;
        let socket = dir.path().join("job.sock");
        let host = self
            .check_plugin_job(plugin, request, input_schema, Some(socket))
            .await
            .map_err(status::invalid)?;
        Ok((host.job(), dir))
    }

    /// Applies `event` until `answer` says its actions make a reply, or
    /// `wait_ms` (at most [`MAX_TASK_WAIT`]) passes; then the last reply.
    /// Each look registers for a wake-up first, so a change between the
    /// look and the wait still wakes it. A task request waits for work;
    /// other questions for any change.
    async fn long_poll<R>(
        self: &Arc<Self>,
        wait_ms: u64,
        event: impl Fn() -> Event,
        answer: impl Fn(Vec<Action>) -> (R, bool),
    ) -> R {
        let wait = Duration::from_millis(wait_ms).min(MAX_TASK_WAIT);
        let deadline = tokio::time::Instant::now() + wait;
        let for_work = matches!(event(), Event::RequestTasks { .. });
        let wakes = if for_work {
            &self.work_available
        } else {
            &self.changed
        };
        loop {
            let notified = wakes.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // A request answered with work wakes the next (in `apply`).
            let (reply, done) = answer(self.apply(event()));
            if done || tokio::time::timeout_at(deadline, notified).await.is_err() {
                return reply;
            }
        }
    }

    /// Lets the scheduler notice time passing. Without a state dir, the
    /// scheduler's memory is the job history: ended jobs past retention
    /// are let go of here (with one, once their history is written).
    pub fn tick(self: &Arc<Self>) {
        self.apply(Event::Tick);
        if self.durable.is_none() {
            let mut scheduler = self.scheduler.lock().expect("scheduler lock");
            let past = scheduler.ended_past(self.retention, self.clock.now_ms());
            scheduler.retire(past);
        }
    }

    /// The storage options a job was submitted with.
    fn storage_of(&self, job: JobId) -> StorageOptions {
        let scheduler = self.scheduler.lock().expect("scheduler lock");
        scheduler
            .job(job)
            .map(|j| j.plan.spec.storage.clone())
            .unwrap_or_default()
    }

    /// Checks a suspect worker's shuffle service, then tells the scheduler.
    fn spawn_probe(self: &Arc<Self>, worker: WorkerId, address: String) {
        tracing::info!(%worker, %address, "probing a worker's shuffle service");
        let coordinator = self.clone();
        let timeout = {
            let scheduler = self.scheduler.lock().expect("scheduler lock");
            Duration::from_millis(scheduler.config().suspect_timeout_ms)
        };
        tokio::spawn(async move {
            let result = probe_shuffle(&coordinator.connector, &address, timeout).await;
            if let Err(failure) = &result {
                tracing::warn!(%worker, error = %failure.message, refused = failure.refused, "worker probe failed");
            }
            coordinator.apply(Event::ProbeEnded { worker, result });
        });
    }

    /// Writes `_SUCCESS` and clears `_temporary`, then tells the scheduler.
    fn spawn_commit(self: &Arc<Self>, job: JobId, output: String) {
        let coordinator = self.clone();
        let storage = self.storage_of(job);
        tokio::spawn(async move {
            if coordinator.written().await.is_ok() {
                crate::failpoint::pause_at("job-commit").await;
            }
            let error = commit_job_output(&output, &storage).await.err();
            coordinator.apply(Event::JobCommitEnded { job, error });
        });
    }
}

async fn commit_job_output(output: &str, storage: &StorageOptions) -> Result<(), String> {
    clear_temporary(output, storage).await?;
    let location = Location::parse_with(output, storage).map_err(|e| e.to_string())?;
    let marker = location.child(SUCCESS_FILE);
    location
        .store()
        .put(marker.path(), Vec::<u8>::new().into())
        .await
        .map_err(|e| format!("writing {marker}: {e}"))?;
    Ok(())
}

async fn clear_temporary(output: &str, storage: &StorageOptions) -> Result<(), String> {
    use futures::TryStreamExt;
    let location = Location::parse_with(output, storage).map_err(|e| e.to_string())?;
    let temporary = location.child(TEMPORARY_DIR);
    if let Some(path) = temporary.local_path() {
        // Removes links themselves and never follows them: a link planted
        // under the output cannot turn the clean-up on files outside it.
        return match tokio::fs::remove_dir_all(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("deleting {}: {e}", path.display())),
        };
    }
    let store: &Arc<dyn ObjectStore> = temporary.store();
    let listed: Vec<_> = match store.list(Some(temporary.path())).try_collect().await {
        Ok(listed) => listed,
        Err(object_store::Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(format!("listing {temporary}: {e}")),
    };
    for meta in listed {
        match store.delete(&meta.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(format!("deleting {}: {e}", meta.location)),
        }
    }
    Ok(())
}

pub(super) fn parse_id<T: std::str::FromStr<Err = harrow_core::ids::IdError>>(
    text: &str,
) -> Result<T, Status> {
    text.parse().map_err(status::bad_id)
}
