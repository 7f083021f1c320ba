//! Storage locations: a user's path or URL turned into an object store and a
//! path inside it. Readers and writers go through `object_store`, never
//! `std::fs`, so object stores plug in behind the same interface.

use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::{Arc, OnceLock};

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

/// A location that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LocationError {
    #[error("invalid location {location:?}: {reason}")]
    Invalid { location: String, reason: String },
    #[error(
        "unsupported location {location:?}: scheme `{scheme}` is not supported (use a local path or file://)"
    )]
    UnsupportedScheme { location: String, scheme: String },
}

/// A file or directory in some store.
#[derive(Debug, Clone)]
pub struct Location {
    store: Arc<dyn ObjectStore>,
    path: Path,
    /// How users see it: an absolute path for local files.
    display: String,
}

impl PartialEq for Location {
    fn eq(&self, other: &Self) -> bool {
        self.display == other.display
    }
}

impl Location {
    /// Parses a local path (relative to the current directory) or a
    /// `file://` URL.
    pub fn parse(text: &str) -> Result<Location, LocationError> {
        if let Some((scheme, rest)) = text.split_once("://") {
            if scheme != "file" {
                return Err(LocationError::UnsupportedScheme {
                    location: text.to_string(),
                    scheme: scheme.to_string(),
                });
            }
            return Self::local(text, FsPath::new(rest));
        }
        Self::local(text, FsPath::new(text))
    }

    fn local(text: &str, path: &FsPath) -> Result<Location, LocationError> {
        let invalid = |reason: &str| LocationError::Invalid {
            location: text.to_string(),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(invalid("empty path"));
        }
        let absolute = std::path::absolute(path).map_err(|e| invalid(&e.to_string()))?;
        let normalized = normalize(&absolute);
        let display = normalized
            .to_str()
            .ok_or_else(|| invalid("path is not valid UTF-8"))?
            .to_string();
        let path =
            Path::parse(display.trim_start_matches('/')).map_err(|e| invalid(&e.to_string()))?;
        Ok(Location {
            store: local_store(),
            path,
            display,
        })
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A location below this one.
    pub fn child(&self, name: &str) -> Location {
        Location {
            store: self.store.clone(),
            path: self.path.clone().join(name),
            display: format!("{}/{name}", self.display.trim_end_matches('/')),
        }
    }

    /// The same store at another path, e.g. one returned by a listing.
    pub fn with_path(&self, path: Path) -> Location {
        let display = format!("/{path}");
        Location {
            store: self.store.clone(),
            path,
            display,
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

/// One local file system store for the process; deleting a file also
/// removes directories it leaves empty, so no empty `_temporary` remains.
fn local_store() -> Arc<dyn ObjectStore> {
    static STORE: OnceLock<Arc<dyn ObjectStore>> = OnceLock::new();
    STORE
        .get_or_init(|| Arc::new(LocalFileSystem::new().with_automatic_cleanup(true)))
        .clone()
}

/// Removes `.` and resolves `..` lexically.
fn normalize(path: &FsPath) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_become_absolute_and_normalized() {
        let location = Location::parse("/data/./logs/../in").unwrap();
        assert_eq!(location.to_string(), "/data/in");
        assert_eq!(location.path().as_ref(), "data/in");
        assert_eq!(location.child("a.txt").to_string(), "/data/in/a.txt");
        assert_eq!(Location::parse("file:///x/y").unwrap().to_string(), "/x/y");
    }

    #[test]
    fn unknown_schemes_are_refused_by_name() {
        let error = Location::parse("ftp://host/x").unwrap_err().to_string();
        assert!(error.contains("ftp"), "{error}");
    }
}
