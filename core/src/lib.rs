//! What the worker and the coordinator share: ids, storage locations, task
//! specs and their wire conversions, the job registry, and the
//! partitioning contract (which partition a key goes to, in which order).
//! Nothing here does I/O beyond opening a store.

pub mod health;
pub mod ids;
pub mod limits;
pub mod partition;
pub mod registry;
pub mod security;
pub mod shutdown;
pub mod storage;
pub mod task;
pub mod wire;
