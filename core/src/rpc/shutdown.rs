//! The shutdown flag a process's servers and loops share: a `watch`
//! channel that turns true once.

use tokio::sync::watch;

/// Completes once `stop` is true (or its sender is gone).
pub async fn signalled(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
