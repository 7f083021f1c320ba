//! Every bound the coordinator keeps, in one place, each with why it is
//! what it is. Defaults a user can change are flags (`SchedulerConfig`);
//! these are not.

use std::time::Duration;

// Retries: how often a task may fail by cause (see scheduler/task.rs).

/// Failures of the worker's own kind (a full disk, local I/O) after which
/// a task fails anyway: every worker failing it says the task is at fault.
pub const MAX_WORKER_FAILURES: u32 = 10;

/// Passing failures (a coordinator call, an object store timeout) after
/// which a task fails.
pub const MAX_TRANSIENT_FAILURES: u32 = 10;

/// The first retry after a passing failure waits this long; each next one
/// twice as long, up to [`MAX_TRANSIENT_BACKOFF_MS`].
pub const TRANSIENT_BACKOFF_MS: u64 = 250;

/// The longest wait between retries after passing failures.
pub const MAX_TRANSIENT_BACKOFF_MS: u64 = 30_000;

/// Distinct workers that must die while running a task's attempts before
/// the task is taken for what kills them (see `Scheduler::poison`).
pub const POISON_WORKER_DEATHS: usize = 3;

// Workers' health and speed.

/// The default suspect timeout, in heartbeat intervals.
pub const SUSPECT_HEARTBEATS: u64 = 3;

/// A heartbeat this many intervals late gets the worker probed.
pub const LATE_HEARTBEATS: u64 = 2;

/// A worker is slow when its attempts run this many times slower than the
/// median worker's.
pub const SLOW_FACTOR: f64 = 3.0;

/// Attempts that ended longer ago than this say nothing about a worker's
/// speed now; a slow worker that got no new tasks for this long is tried
/// again.
pub const SPEED_WINDOW_MS: u64 = 30_000;

/// A running attempt younger than this has no meaningful rate yet.
pub const MIN_RATE_ELAPSED_MS: u64 = 1_000;

/// Map attempts a worker must have run (or be running) in the window
/// before it can be called slow, and peers with as many to compare with.
pub const MIN_SPEED_SAMPLES: usize = 2;

// Speculative backups.

/// Speculative backups a job may run at once: this share of the live
/// slots (Hadoop's cap), but at least [`MIN_SPECULATIVE`].
pub const SPECULATIVE_SHARE: f64 = 0.1;

/// Backups a job may run at once however few slots are live.
pub const MIN_SPECULATIVE: usize = 2;

/// An attempt is a straggler only if it progresses slower than this share
/// of the phase's attempts (LATE's slow-task threshold).
pub const SLOW_TASK_QUANTILE: f64 = 0.25;

/// How long a phase's LATE statistics (median run time, slow rate, task
/// sizes) serve task requests before they are computed again: computing
/// them reads every attempt of the phase.
pub const LATE_STATS_MS: u64 = 500;

// RPC.

/// Map tasks a job may have: a reduce task's assignment names every map
/// output's location (70–150 bytes each) in one message of at most
/// `harrow_core::rpc::limits::MAX_MESSAGE_BYTES` (16 MiB).
pub const MAX_MAP_TASKS: usize = 100_000;

/// How long the server waits at shutdown for clients to close their
/// connections before it cuts them.
pub const CLOSE_CONNECTIONS: std::time::Duration = std::time::Duration::from_secs(5);

/// Plugin bytes per message, well under the message size limit.
pub const PLUGIN_CHUNK_BYTES: usize = 1 << 20;

/// Past this many tasks, a job's watchers get a new status at most every
/// [`WATCH_INTERVAL`], and at most every [`WATCH_PAUSE_FACTOR`] times as
/// long as the last took to build: each
/// is built from all of the job's tasks under the scheduler's lock, and at
/// 100,000 tasks rebuilding it on every change halved the coordinator's
/// throughput. Smaller jobs are followed change by change.
pub const WATCH_THROTTLE_TASKS: u32 = 10_000;

/// See [`WATCH_THROTTLE_TASKS`].
pub const WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// See [`WATCH_THROTTLE_TASKS`].
pub const WATCH_PAUSE_FACTOR: u32 = 10;

/// The longest a worker's task request may wait for work.
pub const MAX_TASK_WAIT: Duration = Duration::from_secs(30);

/// The largest plugin library accepted.
pub const MAX_PLUGIN_BYTES: usize = 512 << 20;

// Planning: splits, schema inference and sampling.

/// The smallest split `planner::auto_split_size` chooses: smaller ones
/// cost more in scheduling and shuffle files than they gain in spread.
pub const MIN_AUTO_SPLIT: u64 = 32 << 20;

/// The largest split `planner::auto_split_size` chooses, so one slow split
/// cannot hold a job for long.
pub const MAX_AUTO_SPLIT: u64 = 512 << 20;

/// Bytes read from the start of each sampled file.
pub const SAMPLE_BYTES: usize = 1 << 20;

/// Records per sampled file.
pub const SAMPLE_RECORDS: usize = 1000;

/// Files sampled for schema inference.
pub const SAMPLE_FILES: usize = 16;

/// Splits sampled, at most, spread evenly over the input.
pub const SAMPLE_SPLITS: usize = 10;
