//! The Harrow coordinator: planning, the scheduler, job state and the gRPC
//! services. The `harrow` binary (the `harrow-cli` crate) starts it with
//! the jobs linked in; tests start the same code in-process.

pub mod clock;
pub mod failpoint;
pub mod https;
pub mod input_plan;
pub mod limits;
pub mod metrics;
pub mod planner;
pub mod plugins;
pub mod report;
pub mod sample;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod state;
