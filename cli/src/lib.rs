//! The `harrow` command and everything a user types: the command line
//! (`args`), the client of a coordinator (`client`), progress bars
//! (`progress`), a whole cluster in one process (`local`) and new job
//! crates (`scaffold`). The binary (`main.rs`) is a thin layer over this
//! library, so the benches start the same local mode in-process.

pub mod args;
pub mod client;
pub mod local;
pub mod progress;
pub mod scaffold;
pub mod serve;
pub mod show;
pub mod values;

use std::sync::Arc;

use harrow_core::registry::JobRegistry;

/// The jobs linked into the `harrow` binary.
pub fn builtin_jobs() -> Arc<JobRegistry> {
    Arc::new(JobRegistry::new([
        harrow_job_wordcount::DEFINITION,
        harrow_job_inverted_index::DEFINITION,
        harrow_job_grep::DEFINITION,
        harrow_job_sleep::DEFINITION,
        harrow_job_aggregate::DEFINITION,
        harrow_job_distinct::DEFINITION,
        harrow_job_terasort::TERAGEN,
        harrow_job_terasort::TERASORT,
        harrow_job_terasort::TERAVALIDATE,
    ]))
}
