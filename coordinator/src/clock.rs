//! The only place the coordinator reads the time; the scheduler gets it as
//! an argument, so tests drive it with a fake clock.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch, never going back.
    fn now_ms(&self) -> u64;
}

/// The wall clock read once, at start, and advanced by the monotonic
/// clock from then on: timeouts measured with it survive a step of the
/// system clock (NTP, a suspended VM), which would otherwise declare every
/// worker dead at once, or none for as long as the step. Times shown to
/// users stay wall times, off only by the steps since the start.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    wall_at_start_ms: u64,
    start: Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock {
            wall_at_start_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        self.wall_at_start_ms + self.start.elapsed().as_millis() as u64
    }
}
