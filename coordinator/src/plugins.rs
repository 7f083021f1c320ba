//! Where the coordinator keeps uploaded job plugins: one file per library,
//! named by the SHA-256 of its bytes, written whole or not at all.

use std::path::{Path, PathBuf};

use harrow_core::task::PluginRef;
use harrow_plugin::{is_sha256_hex, sha256_hex};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("plugin store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no plugin with sha256 {0} was uploaded (harrow submit --plugin uploads it)")]
    Unknown(String),
}

#[derive(Debug, Clone)]
pub struct PluginStore {
    dir: PathBuf,
}

impl PluginStore {
    pub fn new(dir: PathBuf) -> Self {
        PluginStore { dir }
    }

    /// Stores `bytes`; false when the same bytes were already stored.
    pub fn store(&self, bytes: &[u8]) -> Result<(String, bool), StoreError> {
        let sha256 = sha256_hex(bytes);
        let path = self.dir.join(format!("{sha256}.so"));
        if path.exists() {
            return Ok((sha256, false));
        }
        let io = |source| StoreError::Io {
            path: self.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let mut temporary = tempfile::NamedTempFile::new_in(&self.dir).map_err(io)?;
        std::io::Write::write_all(&mut temporary, bytes).map_err(io)?;
        temporary.as_file().sync_all().map_err(io)?;
        temporary.persist(&path).map_err(|e| io(e.error))?;
        Ok((sha256, true))
    }

    /// The stored library with hash `sha256`.
    pub fn path(&self, sha256: &str) -> Result<PathBuf, StoreError> {
        let path = self.dir.join(format!("{sha256}.so"));
        if is_sha256_hex(sha256) && path.is_file() {
            Ok(path)
        } else {
            Err(StoreError::Unknown(sha256.to_string()))
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The reference a job keeps: the hash, and the name it was submitted as.
    pub fn reference(&self, sha256: &str, file_name: &str) -> Result<PluginRef, StoreError> {
        self.path(sha256)?;
        Ok(PluginRef {
            sha256: sha256.to_string(),
            file_name: file_name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_by_content_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = PluginStore::new(dir.path().join("plugins"));
        let (hash, stored) = store.store(b"not really a library").unwrap();
        assert!(stored);
        assert_eq!(
            store.store(b"not really a library").unwrap(),
            (hash.clone(), false)
        );
        assert_eq!(
            std::fs::read(store.path(&hash).unwrap()).unwrap(),
            b"not really a library"
        );
        assert!(matches!(
            store.path(&"0".repeat(64)),
            Err(StoreError::Unknown(_))
        ));
        assert!(matches!(store.path("../x"), Err(StoreError::Unknown(_))));
    }
}
