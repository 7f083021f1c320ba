//! Helpers for tests that run the real `harrow` binary: a cluster of
//! separate coordinator and worker processes on ports the OS picks
//! ([`cluster`]), waits with deadlines ([`bounded`]), a deterministic test
//! corpus and sequential reference computations ([`data`]), reading job
//! statuses ([`jobs`]), CPU-limited cgroups ([`cgroup`]) and plain HTTP
//! requests ([`http`]), and a headless browser ([`browser`]).

// Each test binary uses a part of these helpers.
#![allow(dead_code, unused_imports)]

pub mod bounded;
pub mod browser;
pub mod cgroup;
pub mod cluster;
pub mod data;
pub mod http;
pub mod jobs;

pub use cgroup::Cgroup;
pub use cluster::Cluster;
pub use data::*;
pub use http::*;
pub use jobs::*;

pub const HARROW: &str = env!("CARGO_BIN_EXE_harrow");
