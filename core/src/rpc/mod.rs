//! The plumbing every process's gRPC shares: role tokens, TLS and the
//! connector ([`security`]), per-connection bounds ([`limits`]), the
//! standard health service and the coordinator's probe of a worker
//! ([`health`]), graceful shutdown ([`shutdown`]), and calls that ride out
//! the other end's restart ([`retry`]).
//!
//! It lives in harrow-core, beside the domain, because every process (the
//! coordinator, each worker, the CLI's client) needs all of it, and the
//! domain's task specs carry a [`security::Token`] (a job's shuffle key):
//! a crate of its own would move the boundary without removing a
//! dependency.

pub mod health;
pub mod limits;
pub mod retry;
pub mod security;
pub mod shutdown;
