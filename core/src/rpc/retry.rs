//! Calls that ride out the other end's outage: made again while it cannot
//! be reached (down, restarting), up to a bound, and given up at once when
//! it answers with a refusal.

use std::time::Duration;

use tonic::Status;

/// Whether a call failed because the other end is down or restarting
/// (nothing answered, or the connection broke), rather than refusing it:
/// worth trying again.
pub fn is_outage(status: &Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
    )
}

/// Makes `call` (named `what` in logs), again every `delay` while the
/// other end cannot be reached, for up to `outage` in all. Only for calls
/// that are safe to repeat.
pub async fn patiently<T, F, Fut>(
    what: &'static str,
    outage: Duration,
    delay: Duration,
    mut call: F,
) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let started = tokio::time::Instant::now();
    loop {
        match call().await {
            Err(status) if is_outage(&status) && started.elapsed() < outage => {
                tracing::debug!(call = what, %status, "not reachable; trying again");
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}
