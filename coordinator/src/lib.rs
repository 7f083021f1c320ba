//! The Harrow coordinator: planning, the scheduler, job state, the gRPC
//! services, the client and local mode. The `harrow` binary (`main.rs`) is
//! a thin layer over this library, so tests start the same code in-process.

pub mod cli;
pub mod client;
pub mod clock;
pub mod input_plan;
pub mod local;
pub mod metrics;
pub mod planner;
pub mod plugins;
pub mod progress;
pub mod report;
pub mod scaffold;
pub mod scheduler;
pub mod server;
pub mod service;

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
