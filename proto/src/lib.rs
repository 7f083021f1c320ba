//! The generated gRPC code for Harrow's three services (worker, client,
//! shuffle), the plugin host's messages and the coordinator's stored
//! records. Nothing else lives here: domain types and conversions are in
//! `harrow-core`.

#![allow(clippy::all, missing_docs)]

/// Version 1 of the wire protocol.
pub mod v1 {
    tonic::include_proto!("harrow.v1");
}
