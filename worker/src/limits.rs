//! Every bound the worker keeps, in one place, each with why it is what
//! it is. The memory budget and its shares are `memory.rs`; the chunk
//! bounds of input are `harrow_formats::source`.

use std::time::Duration;

// The coordinator link.

/// How long one task request waits at the coordinator for work.
pub const TASK_POLL_MS: u64 = 10_000;

/// Pause after a failed call to the coordinator before the next try.
pub const RETRY_DELAY: Duration = Duration::from_millis(500);

/// Registration tries before the worker gives up (about a minute).
pub const REGISTER_TRIES: u32 = 120;

/// How long an attempt's calls to the coordinator (its report, a commit
/// request, a fetch failure) keep trying while it cannot be reached: long
/// enough for a coordinator to restart from its state dir.
pub const COORDINATOR_OUTAGE: Duration = Duration::from_secs(120);

/// How long a waiting reduce attempt's question may wait for an answer.
pub const RELOCATE_WAIT: Duration = Duration::from_secs(20);

/// How long the shuffle server waits at shutdown for its clients to close
/// their connections before it cuts them.
pub const CLOSE_CONNECTIONS: Duration = Duration::from_secs(5);

// The shuffle.

/// Bytes per streamed chunk.
pub const CHUNK_BYTES: usize = 1 << 20;

/// The largest message either end accepts.
pub const MAX_SHUFFLE_MESSAGE_BYTES: usize = 4 * CHUNK_BYTES;

/// Segments a reducer fetches at once.
pub const FETCH_CONCURRENCY: usize = 4;

/// How long a fetch waits for the serving worker's answer or its next
/// chunk. A stopped worker (SIGSTOP, a frozen VM) keeps its connections
/// open and answers nothing; past this it counts as unreachable. A live
/// worker sends a 1 MiB chunk far sooner, even on a loaded machine.
pub const FETCH_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Rounds of waiting for new locations after which a reduce attempt gives
/// up (the coordinator's own bounds end a job long before).
pub const MAX_FETCH_ROUNDS: usize = 32;

// Output uploads.

/// Bytes per part of a multipart upload; files up to this size go in one put.
pub const PART_BYTES: usize = 10 << 20;

/// Parts of one upload sent at once.
pub const PARTS_IN_FLIGHT: usize = 4;

// Memory.

/// The budget when nothing says how much memory there is.
pub const FALLBACK_BUDGET: u64 = 1 << 30;
