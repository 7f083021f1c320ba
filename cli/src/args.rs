//! The `harrow` command line: every subcommand, its flags and its help.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use harrow_core::task::{InputFormat, OutputFormat};

use harrow_coordinator::scheduler::SchedulerConfig;
use harrow_coordinator::server::DEFAULT_HEARTBEAT_INTERVAL_MS;
use harrow_coordinator::state::Retention;

use crate::values::{
    Millis, SplitSize, parse_bytes, parse_delimiter, parse_duration_ms, parse_key_value,
    parse_millis, parse_split_size,
};

const DEFAULT_COORDINATOR: &str = "http://127.0.0.1:7070";
/// The scheduler's defaults, which the fault flags show and start from.
const DEFAULTS: SchedulerConfig = SchedulerConfig::DEFAULT;

/// Harrow: a distributed MapReduce engine.
///
/// Built-in jobs: wordcount, inverted-index, grep (--arg pattern=REGEX),
/// sleep (--arg map_ms=N --arg reduce_ms=N --arg fail_on=TEXT), aggregate (--arg key=COL
/// --arg value=COL), distinct (--arg columns=A,B). Your own jobs: `harrow
/// new DIR` scaffolds a job crate; `--plugin LIB` runs a job from its
/// library.
#[derive(Debug, Parser)]
#[command(name = "harrow", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a job on this machine: an in-process coordinator and workers on loopback.
    Run(RunArgs),
    /// Run the coordinator.
    Coordinator(CoordinatorArgs),
    /// Run a worker that pulls tasks from a coordinator.
    Worker(WorkerArgs),
    /// Submit a job to a coordinator and print its id.
    Submit {
        #[command(flatten)]
        job: JobOptions,
        /// Follow progress until the job ends; exit non-zero unless it succeeds.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Show a job's state and progress.
    Status {
        /// The job id, e.g. job-000001.
        job_id: String,
        /// Print JSON, including every task and its attempts.
        #[arg(long)]
        json: bool,
        /// Keep printing: one status (a JSON line with --json) each time it
        /// changes, until the job ends.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List all jobs, newest first.
    Jobs {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List registered workers.
    Workers {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Cancel a job: its attempts are killed and its temporary output removed.
    Cancel {
        /// The job id, e.g. job-000001.
        job_id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Create a job crate: a record-level job with a test, built as a plugin
    /// library (`cargo build --release`, then `harrow run --plugin ...`).
    New {
        /// Directory to create; its last component names the crate.
        path: PathBuf,
        /// The harrow-sdk the crate depends on, as a path (default: the SDK
        /// in the source tree this binary was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Load a job plugin and run its code for a worker (started by workers
    /// and the coordinator, not by hand).
    #[command(hide = true)]
    PluginHost {
        #[arg(long)]
        library: PathBuf,
        #[arg(long)]
        socket: Option<PathBuf>,
    },
}

// The flags of `harrow run` (its help is the variant's).
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub job: JobOptions,
    /// Number of in-process workers.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Task slots per worker (default: the number of CPUs).
    #[arg(long)]
    pub slots: Option<usize>,
    /// Memory the job's tasks may use, all workers together, with an
    /// optional unit (512MiB, 4GiB); map output beyond a task's share
    /// is spilled to disk (default: half of the cgroup's memory limit,
    /// else of the machine's memory).
    #[arg(long, value_parser = parse_bytes)]
    pub memory_budget: Option<u64>,
}

// The flags of `harrow coordinator` (its help is the variant's).
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Address for the gRPC services (workers and clients) and gRPC
    /// health.
    #[arg(long, env = "HARROW_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub listener: ListenOptions,
    /// Serve Prometheus metrics (/metrics), a liveness check (/healthz),
    /// the web UI (/) and the read-only JSON API (/api/v1/) over HTTP on
    /// this address (HTTPS with the --tls-* files). Metrics and liveness
    /// need no token (they hold counts by state, never job names or
    /// data); the UI and the API need the client or viewer token when
    /// tokens are set. Like --listen, an address other than
    /// loopback needs tokens or --insecure.
    #[arg(long, env = "HARROW_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// A host name the HTTP listener answers to, besides IP addresses and
    /// localhost (repeat, or separate with commas); requests naming any
    /// other host are refused, so a web page elsewhere cannot reach the
    /// API through a DNS name pointed at this machine.
    #[arg(long = "http-host", env = "HARROW_HTTP_HOSTS", value_delimiter = ',')]
    pub http_hosts: Vec<String>,
    #[command(flatten)]
    pub faults: FaultOptions,
    /// How often workers heartbeat, in milliseconds.
    #[arg(long, env = "HARROW_HEARTBEAT_INTERVAL_MS", default_value_t = DEFAULT_HEARTBEAT_INTERVAL_MS)]
    pub heartbeat_interval_ms: u64,
    /// Where uploaded job plugins are kept (default: harrow/plugins in
    /// the temporary directory).
    #[arg(long, env = "HARROW_PLUGIN_DIR")]
    pub plugin_dir: Option<PathBuf>,
    /// File holding the client token: every job service call (submit,
    /// status, cancel, plugin upload) must present it. Needs
    /// --worker-token-file too.
    #[arg(long, env = "HARROW_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// File holding the worker token, which workers present; it cannot
    /// submit jobs or upload plugins, and must differ from the client
    /// token.
    #[arg(long, env = "HARROW_WORKER_TOKEN_FILE")]
    pub worker_token_file: Option<PathBuf>,
    /// File holding a viewer token: it reads the web UI and the JSON API
    /// and nothing else, so people who look at jobs cannot submit them or
    /// upload plugins. Needs --token-file.
    #[arg(long, env = "HARROW_VIEWER_TOKEN_FILE")]
    pub viewer_token_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: TlsOptions,
    #[command(flatten)]
    pub insecure: Insecure,
    #[command(flatten)]
    pub state: StateOptions,
}

/// Where the coordinator keeps jobs and their history across restarts.
#[derive(Debug, Args)]
pub struct StateOptions {
    /// Keep the coordinator's state in this directory (created 0700):
    /// job ids and the history of finished jobs survive a restart, and
    /// uploaded plugins are kept here (unless --plugin-dir). One
    /// coordinator at a time may use it. Without it, everything is in
    /// memory.
    #[arg(long, env = "HARROW_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Finished jobs kept in the history (the state dir, or memory without
    /// one), the newest.
    #[arg(long, env = "HARROW_RETAIN_JOBS", default_value_t = Retention::default().jobs)]
    pub retain_jobs: usize,
    /// How long a finished job stays in the history (the state dir, or
    /// memory without one).
    #[arg(long, env = "HARROW_RETAIN_FOR", default_value_t = Millis(Retention::default().for_ms), value_parser = parse_millis)]
    pub retain_for: Millis,
}

// The flags of `harrow worker` (its help is the variant's).
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The coordinator's URL.
    #[arg(long, env = "HARROW_COORDINATOR", default_value = DEFAULT_COORDINATOR)]
    pub coordinator: String,
    /// Concurrent task attempts (default: the number of CPUs, which
    /// honours a cgroup CPU quota).
    #[arg(long, env = "HARROW_SLOTS")]
    pub slots: Option<usize>,
    /// Address to serve shuffle segments (and gRPC health) on; port 0
    /// picks a free port.
    #[arg(long, env = "HARROW_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub listener: ListenOptions,
    /// The address other workers reach this one at, HOST or HOST:PORT
    /// (default port: the bound one); needed when --listen is 0.0.0.0.
    /// In Kubernetes: the pod IP.
    #[arg(long, env = "HARROW_ADVERTISE")]
    pub advertise: Option<String>,
    /// Directory for map output and reduce scratch (default: a new temporary directory).
    #[arg(long, env = "HARROW_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Memory the worker's tasks may use together, with an optional unit
    /// (512MiB, 4GiB); each slot gets an equal share, and map output
    /// beyond it is spilled to disk (default: half of the cgroup's
    /// memory limit, else of the machine's memory).
    #[arg(long, env = "HARROW_MEMORY_BUDGET", value_parser = parse_bytes)]
    pub memory_budget: Option<u64>,
    /// On SIGTERM or SIGINT: how long running attempts may finish and map
    /// output stay served before the worker exits (e.g. 30s).
    #[arg(long, env = "HARROW_GRACE_PERIOD", default_value = "30s", value_parser = parse_duration_ms)]
    pub grace_period: u64,
    /// File holding the worker token (the coordinator's
    /// --worker-token-file): presented to the coordinator and other
    /// workers, and required of reducers fetching shuffle segments.
    #[arg(long, env = "HARROW_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: TlsOptions,
    #[command(flatten)]
    pub insecure: Insecure,
}

/// How the coordinator handles failures.
#[derive(Debug, Args)]
pub struct FaultOptions {
    /// Failed attempts after which a task, and its job, fail. Attempts lost
    /// with their worker or to a fetch failure do not count.
    #[arg(long, env = "HARROW_MAX_ATTEMPTS", default_value_t = DEFAULTS.max_attempts)]
    pub max_attempts: u32,
    /// A worker without a heartbeat this long is dead: its running attempts
    /// and the map output on its disk are re-run elsewhere (e.g. 10s, 500ms).
    #[arg(long, env = "HARROW_WORKER_TIMEOUT", default_value_t = Millis(DEFAULTS.worker_timeout_ms), value_parser = parse_millis)]
    pub worker_timeout: Millis,
    /// An attempt without progress this long gets a backup attempt on
    /// another worker; the first to finish wins.
    #[arg(long, env = "HARROW_STALL_TIMEOUT", default_value_t = Millis(DEFAULTS.stall_timeout_ms), value_parser = parse_millis)]
    pub stall_timeout: Millis,
    /// A job with work to do and no live worker this long fails.
    #[arg(long, env = "HARROW_NO_WORKER_TIMEOUT", default_value_t = Millis(DEFAULTS.no_worker_timeout_ms), value_parser = parse_millis)]
    pub no_worker_timeout: Millis,
    /// A worker that a reducer could not reach is suspect: it gets no new
    /// tasks and its map output is re-run, unless it answers a health
    /// check and heartbeats within this long (default: three heartbeat
    /// intervals). Otherwise it is dead.
    #[arg(long, env = "HARROW_SUSPECT_TIMEOUT", value_parser = parse_duration_ms)]
    pub suspect_timeout: Option<u64>,
    /// Failed fetches of one map task's output, not explained by its
    /// worker dying, after which its job fails.
    #[arg(long, env = "HARROW_MAX_FETCH_FAILURES", default_value_t = DEFAULTS.max_fetch_failures)]
    pub max_fetch_failures: u32,
}

impl FaultOptions {
    pub fn scheduler_config(
        &self,
        heartbeat_interval_ms: u64,
    ) -> harrow_coordinator::scheduler::SchedulerConfig {
        let defaults = harrow_coordinator::scheduler::SchedulerConfig::for_heartbeat_interval(
            heartbeat_interval_ms,
        );
        harrow_coordinator::scheduler::SchedulerConfig {
            max_attempts: self.max_attempts,
            worker_timeout_ms: self.worker_timeout.0,
            stall_timeout_ms: self.stall_timeout.0,
            no_worker_timeout_ms: self.no_worker_timeout.0,
            suspect_timeout_ms: self.suspect_timeout.unwrap_or(defaults.suspect_timeout_ms),
            max_fetch_failures: self.max_fetch_failures,
            ..defaults
        }
    }
}

/// Which coordinator a client command talks to, and how it proves who it is.
#[derive(Debug, Args)]
pub struct Target {
    /// The coordinator's URL.
    #[arg(long, env = "HARROW_COORDINATOR", default_value = DEFAULT_COORDINATOR)]
    pub coordinator: String,
    /// File holding the client token, when the coordinator requires one.
    #[arg(long, env = "HARROW_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: TlsOptions,
}

/// TLS material: all three files, or none. With them every connection is
/// mutual TLS: servers present their certificate and require one signed by
/// the CA from every caller.
#[derive(Debug, Args)]
pub struct TlsOptions {
    /// This process's certificate (PEM). A worker's must be valid for the
    /// name `harrow-worker`; the coordinator's for the host in the URL
    /// that workers and clients use.
    #[arg(long, env = "HARROW_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "HARROW_TLS_KEY", requires_all = ["tls_cert", "tls_ca"])]
    pub tls_key: Option<PathBuf>,
    /// The CA certificate (PEM) that signs the certificates of the
    /// coordinator, the workers and the clients.
    #[arg(long, env = "HARROW_TLS_CA", requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
}

impl TlsOptions {
    /// The TLS material, if configured.
    pub fn load(
        &self,
    ) -> Result<Option<harrow_core::rpc::security::Tls>, harrow_core::rpc::security::SecurityError>
    {
        match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => {
                harrow_core::rpc::security::Tls::from_files(cert, key, ca).map(Some)
            }
            _ => Ok(None),
        }
    }
}

/// Listener settings the coordinator and workers share.
#[derive(Debug, Args)]
pub struct ListenOptions {
    /// Also serve gRPC health (grpc.health.v1), alone and in plaintext, on
    /// this address: Kubernetes' gRPC probes cannot speak TLS. It tells only
    /// serving states, so it needs no token.
    #[arg(long, env = "HARROW_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// Connections the gRPC server holds open at once; further callers
    /// wait until one closes. Each connection may have 64 calls in flight.
    #[arg(long, env = "HARROW_MAX_CONNECTIONS", default_value_t = harrow_core::rpc::limits::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
}

/// The override for serving without authentication.
#[derive(Debug, Args)]
pub struct Insecure {
    /// Serve on a non-loopback --listen address without a token: anyone
    /// who can reach the port can run jobs, and plugins are code. Only for
    /// networks where every host is trusted.
    #[arg(long)]
    pub insecure: bool,
}

/// What to run: the job, its input and output, and how to cut it up.
#[derive(Debug, Args)]
pub struct JobOptions {
    /// The job: wordcount, inverted-index, grep or sleep (text input), aggregate
    /// or distinct (table input: CSV, JSON lines, Parquet), teragen (no
    /// input), terasort or teravalidate (TeraSort records), or a job of the
    /// --plugin library.
    pub job: String,
    /// A job plugin: the library built from a job crate (see `harrow new`),
    /// e.g. target/release/libmy_job.so. It is uploaded with the submission;
    /// workers fetch it by hash and run it in a child process.
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// Input files, directories or globs in the last path components, local
    /// or in object stores (`logs/2026-*/*.txt`, `s3://bucket/logs/*.gz`,
    /// gs://, az://, abfss://, http(s)://); repeatable. Files ending in .gz,
    /// .zst or .bz2 are decompressed and read whole. Not given for a job
    /// that generates its input (teragen).
    #[arg(long = "input", num_args = 1..)]
    pub inputs: Vec<String>,
    /// Output directory, local or `s3://`, `gs://`, `az://`; must not exist
    /// or be empty.
    #[arg(long)]
    pub output: String,
    /// Number of reduce partitions (and output files).
    #[arg(long, default_value_t = 4)]
    pub reducers: u32,
    /// Bytes per map split, with an optional unit (64MiB, 1GiB, 4096); 0 means one split per file; auto spreads the input over one wave of the live workers' slots, each split between 32MiB and 512MiB.
    #[arg(long, default_value = "auto", value_parser = parse_split_size)]
    pub split_size: SplitSize,
    /// A job argument as key=value; repeatable.
    #[arg(long = "arg", value_parser = parse_key_value)]
    pub args: Vec<(String, String)>,
    /// An object store setting as key=value (aws_endpoint, aws_region,
    /// google_service_account, azure_storage_account_name, ...), on top of
    /// the store's environment variables; repeatable; never printed.
    #[arg(long = "storage-option", value_parser = parse_key_value)]
    pub storage_options: Vec<(String, String)>,
    /// How to read the input: text (lines), csv (with a header line),
    /// jsonl (one JSON object per line) or parquet. Default: from the file
    /// extensions (.csv/.tsv, .json/.jsonl/.ndjson, .parquet/.pq, else
    /// text), which must agree.
    #[arg(long, value_parser = clap::value_parser!(InputFormat))]
    pub input_format: Option<InputFormat>,
    /// The CSV or JSON lines schema as name:type,... (types: string, int,
    /// int32, double, float, bool, date, timestamp, or an Arrow type name).
    /// Default: inferred from the first records of the first files.
    #[arg(long)]
    pub schema: Option<String>,
    /// The CSV field delimiter: one character, or `tab`. Default: a comma
    /// (a tab for .tsv files).
    #[arg(long, value_parser = parse_delimiter)]
    pub csv_delimiter: Option<u8>,
    /// Skip up to N malformed input records (a CSV row with the wrong
    /// number of fields or a value of the wrong type, malformed JSON) in
    /// the whole job, counted and listed in `harrow status`; one more fails
    /// the job. Default: none, the first fails the job.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub skip_bad_records: u64,
    /// How to write the output: text (tab-separated columns), csv (with a
    /// header line), jsonl or parquet (the job's schema, zstd-compressed).
    #[arg(long, default_value = "text", value_parser = clap::value_parser!(OutputFormat))]
    pub output_format: OutputFormat,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
