//! Job plugins: user jobs built as `cdylib`s against harrow-sdk, uploaded
//! with a submission and run in a child process (`harrow plugin-host`) of
//! the worker, or of the coordinator while it checks a submission.
//!
//! - [`library`]: loading a library and calling it through the SDK's C ABI
//!   (in the child only);
//! - [`host`]: the child process;
//! - [`remote`]: the parent's side, a `JobRuntime` over the child;
//! - [`protocol`]: how parent and child frame their messages;
//! - here: the hashes that name libraries.

pub mod host;
pub mod library;
pub mod limits;
pub mod protocol;
pub mod remote;

use std::path::Path;

use sha2::{Digest, Sha256};

pub use remote::{HostError, HostSpec, PluginHost};

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut hasher = LibraryHasher::default();
    hasher.update(bytes);
    hasher.finish()
}

/// A library's SHA-256, computed as its bytes arrive.
#[derive(Debug, Default)]
pub struct LibraryHasher(Sha256);

impl LibraryHasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The lowercase hex digest.
    pub fn finish(self) -> String {
        self.0
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// Whether `hash` looks like a SHA-256 in hex (it names files on disk).
pub fn is_sha256_hex(hash: &str) -> bool {
    hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The host side of `harrow plugin-host`.
pub fn run_plugin_host(library: &Path, socket: Option<&Path>) -> std::io::Result<()> {
    host::run_host(library, socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_checked_before_they_name_files() {
        let hash = sha256_hex(b"abc");
        assert_eq!(
            hash,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_sha256_hex(&hash));
        assert!(!is_sha256_hex("../../etc/passwd"));
        assert!(!is_sha256_hex(&hash.to_uppercase()));
        assert!(!is_sha256_hex(&hash[1..]));
    }
}
