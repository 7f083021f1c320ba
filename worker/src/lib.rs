//! The Harrow worker.

pub mod agent;
pub mod compressed;
pub mod cpu;
pub mod decode;
pub mod error;
pub mod fetch;
pub mod framing;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod input;
pub mod map_task;
pub mod memory;
pub mod merge;
pub mod output;
pub mod parquet_input;
pub mod partition;
pub mod plugin;
pub mod reduce_task;
pub mod sample;
pub mod segment;
pub mod shuffle;

pub use agent::{WorkerConfig, WorkerError, WorkerHandle, start_worker};
