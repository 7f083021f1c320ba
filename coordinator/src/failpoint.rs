//! Named points where the coordinator can be made to stop dead, so a test
//! can kill it exactly there rather than at a moment picked by timing:
//! `HARROW_FAILPOINT=NAME` in its environment pauses the task that reaches
//! `NAME` for good, after logging `failpoint NAME reached`. The points:
//! - `reduce-assigned`: a job's first reduce tasks were handed out (every
//!   map done and written), the answer not yet sent;
//! - `job-commit`: every reduce committed (and written), `_SUCCESS` not
//!   yet written.

use std::sync::OnceLock;

/// The variable that names the point.
pub const ENV: &str = "HARROW_FAILPOINT";

/// Pauses for good if `name` is the chosen point.
pub async fn pause_at(name: &str) {
    static CHOSEN: OnceLock<Option<String>> = OnceLock::new();
    let chosen = CHOSEN.get_or_init(|| std::env::var(ENV).ok());
    if chosen.as_deref() == Some(name) {
        tracing::warn!(failpoint = name, "failpoint {name} reached: pausing");
        std::future::pending::<()>().await;
    }
}
