//! The one way async code runs CPU work: on the rayon pool, replying through
//! a oneshot, with a panic in the closure (job code included) turned into an
//! error instead of taking the worker down.

use std::panic::{AssertUnwindSafe, catch_unwind};

use tokio::sync::oneshot;

/// The CPU closure panicked; the message is the panic's.
#[derive(Debug, Clone, thiserror::Error)]
#[error("panicked: {message}")]
pub struct CpuPanic {
    pub message: String,
}

/// Runs `work` on the rayon pool. If the caller is gone before the work
/// starts (its attempt was killed), the work is skipped.
pub async fn run_cpu<T, F>(work: F) -> Result<T, CpuPanic>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (reply, result) = oneshot::channel();
    rayon::spawn(move || {
        if reply.is_closed() {
            return;
        }
        let outcome = catch_unwind(AssertUnwindSafe(work)).map_err(|payload| CpuPanic {
            message: harrow_sdk::panic_message(payload.as_ref()),
        });
        // The receiver may be gone (attempt killed): nothing to tell.
        let _ = reply.send(outcome);
    });
    result.await.unwrap_or_else(|_| {
        Err(CpuPanic {
            message: "CPU pool dropped the work".to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_results_and_turns_panics_into_errors() {
        assert_eq!(run_cpu(|| 6 * 7).await.unwrap(), 42);
        let error = run_cpu(|| -> u32 { panic!("bad record at 17") })
            .await
            .unwrap_err();
        assert_eq!(error.message, "bad record at 17");
    }
}
