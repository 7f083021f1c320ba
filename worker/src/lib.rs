//! The Harrow worker, by stage: [`agent`] (a worker's life: its servers,
//! its link to the coordinator, the attempts it runs), [`map`] (a map
//! attempt: input pieces mapped on rayon, partitioned, sorted, combined,
//! spilled), [`shuffle`] (map output on disk, served and fetched) and
//! [`reduce`] (a reduce attempt: merge, reduce, output, commit); beside
//! them the CPU pool ([`cpu`]), the memory budget ([`memory`]), job
//! plugins ([`plugin`]) and the error of a task ([`error`]). Input and
//! output formats are `harrow_formats`.

pub mod agent;
pub mod cpu;
pub mod error;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod limits;
pub mod map;
pub mod memory;
pub mod plugin;
pub mod reduce;
pub mod shuffle;

pub use agent::{WorkerConfig, WorkerError, WorkerHandle, start_worker};
