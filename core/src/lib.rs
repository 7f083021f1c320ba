//! What the worker and the coordinator share: ids, storage locations, task
//! specs and their wire conversions, and the job registry. Nothing here does
//! I/O beyond opening a store.

pub mod health;
pub mod ids;
pub mod limits;
pub mod registry;
pub mod security;
pub mod shutdown;
pub mod storage;
pub mod task;
pub mod wire;
