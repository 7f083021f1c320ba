//! The Harrow worker.

pub mod agent;
pub mod cpu;
pub mod error;
pub mod fetch;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod map_task;
pub mod memory;
pub mod merge;
pub mod plugin;
pub mod reduce_task;
pub mod segment;
pub mod shuffle;

pub use agent::{WorkerConfig, WorkerError, WorkerHandle, start_worker};
