//! Every bound on a plugin host, in one place.

use std::time::Duration;

// The host's life.

/// How long a plugin may take to build its job.
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a failed call waits for the child's exit status, to say how it
/// ended rather than only that the connection broke.
pub const EXIT_WAIT: Duration = Duration::from_secs(10);

// What crosses the boundary.

/// The largest message either side accepts (a map output batch of one
/// chunk stays far below it).
pub const MAX_MESSAGE_BYTES: usize = 1 << 31;

/// The longest error message taken from a plugin.
pub const ERROR_CAPACITY: usize = 16 * 1024;
