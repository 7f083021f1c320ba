//! What the worker and the coordinator share: ids, storage locations, task
//! specs and their wire conversions, the job registry, and the
//! partitioning contract (which partition a key goes to, in which order);
//! and, in [`rpc`], the plumbing every process's gRPC shares (tokens, TLS,
//! bounds, health, shutdown). Nothing here does I/O beyond opening a store,
//! serving health and probing a worker.

pub mod ids;
pub mod partition;
pub mod registry;
pub mod report;
pub mod rpc;
pub mod storage;
pub mod task;
pub mod wire;
