//! Storage locations: a user's path or URL turned into an object store and a
//! path inside it. Readers and writers go through `object_store`, never
//! `std::fs`, so every store works behind the same interface: local files
//! (a path or `file://`), `s3://`, `gs://`, `az://`/`abfss://`, and
//! `http(s)://` for reading. Credentials and endpoints come from each
//! store's standard environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`),
//! overridden by storage options (`--storage-option key=value`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::http::HttpBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

/// A location that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LocationError {
    #[error("invalid location {location:?}: {reason}")]
    Invalid { location: String, reason: String },
    #[error(
        "unsupported location {location:?}: scheme `{scheme}` is not supported (use a local path, file://, s3://, gs://, az://, abfss:// or http(s)://)"
    )]
    UnsupportedScheme { location: String, scheme: String },
    #[error("storage option `{key}` is not known for {scheme}:// locations")]
    UnknownOption { scheme: String, key: String },
    #[error("cannot open {location}: {reason}")]
    Store { location: String, reason: String },
}

/// Settings for object stores (`--storage-option key=value`), e.g.
/// `aws_endpoint`, `aws_region`. Values may be secrets: `Debug` shows the
/// keys only, and nothing prints the values.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageOptions(BTreeMap<String, String>);

impl StorageOptions {
    pub fn new(options: BTreeMap<String, String>) -> Self {
        StorageOptions(options)
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn into_map(self) -> BTreeMap<String, String> {
        self.0
    }
}

impl std::fmt::Debug for StorageOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// A file or directory in some store.
#[derive(Debug, Clone)]
pub struct Location {
    store: Arc<dyn ObjectStore>,
    path: Path,
    /// `scheme://authority` of an object store; `None` for local files.
    root: Option<String>,
    /// How users see it: an absolute path for local files, a URL otherwise.
    display: String,
}

impl PartialEq for Location {
    fn eq(&self, other: &Self) -> bool {
        self.display == other.display
    }
}

impl Location {
    /// Parses a local path (relative to the current directory) or a URL,
    /// with no storage options.
    pub fn parse(text: &str) -> Result<Location, LocationError> {
        Self::parse_with(text, &StorageOptions::default())
    }

    /// Parses a local path or a URL; object stores get `options` on top of
    /// their environment variables (local files ignore them).
    pub fn parse_with(text: &str, options: &StorageOptions) -> Result<Location, LocationError> {
        match text.split_once("://") {
            None => Self::local(text, FsPath::new(text)),
            Some(("file", rest)) => Self::local(text, FsPath::new(rest)),
            Some((scheme, rest)) => Self::remote(text, scheme, rest, options),
        }
    }

    fn remote(
        text: &str,
        scheme: &str,
        rest: &str,
        options: &StorageOptions,
    ) -> Result<Location, LocationError> {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(LocationError::Invalid {
                location: text.to_string(),
                reason: "no bucket, container or host".to_string(),
            });
        }
        let root = format!("{scheme}://{authority}");
        let store = cached_store(&root, scheme, options)?;
        let path = path.trim_end_matches('/');
        let path = Path::parse(path).map_err(|e| LocationError::Invalid {
            location: text.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Location {
            store,
            display: join(&root, path.as_ref()),
            root: Some(root),
            path,
        })
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
            root: None,
            display,
        })
    }

    /// A location in a given store, shown as `memory:///path` (for tests
    /// and tools that bring their own store).
    pub fn for_store(store: Arc<dyn ObjectStore>, path: Path) -> Location {
        Location {
            store,
            display: join("memory://", path.as_ref()),
            root: Some("memory://".to_string()),
            path,
        }
    }

    /// Whether this is a local file or directory.
    pub fn is_local(&self) -> bool {
        self.root.is_none()
    }

    /// The file system path of a local location.
    pub fn local_path(&self) -> Option<std::path::PathBuf> {
        self.is_local().then(|| self.display.clone().into())
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A location below this one.
    pub fn child(&self, name: &str) -> Location {
        self.with_path(self.path.clone().join(name))
    }

    /// The same store at another path, e.g. one returned by a listing.
    pub fn with_path(&self, path: Path) -> Location {
        Location {
            store: self.store.clone(),
            display: join(self.root.as_deref().unwrap_or(""), path.as_ref()),
            root: self.root.clone(),
            path,
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

/// `root/path`, or just `root` for the empty path.
fn join(root: &str, path: &str) -> String {
    if path.is_empty() && !root.is_empty() {
        root.to_string()
    } else {
        format!("{root}/{path}")
    }
}

/// One store per root and options for the process: clients hold connection
/// pools and credentials, so they are built once.
fn cached_store(
    root: &str,
    scheme: &str,
    options: &StorageOptions,
) -> Result<Arc<dyn ObjectStore>, LocationError> {
    type Stores = Mutex<HashMap<(String, StorageOptions), Arc<dyn ObjectStore>>>;
    static STORES: OnceLock<Stores> = OnceLock::new();
    let stores = STORES.get_or_init(Default::default);
    let key = (root.to_string(), options.clone());
    if let Some(store) = stores.lock().expect("store cache lock").get(&key) {
        return Ok(store.clone());
    }
    let store = build_store(root, scheme, options)?;
    stores
        .lock()
        .expect("store cache lock")
        .insert(key, store.clone());
    Ok(store)
}

fn build_store(
    root: &str,
    scheme: &str,
    options: &StorageOptions,
) -> Result<Arc<dyn ObjectStore>, LocationError> {
    let unknown = |key: &str| LocationError::UnknownOption {
        scheme: scheme.to_string(),
        key: key.to_string(),
    };
    let built = match scheme {
        "s3" | "s3a" => {
            let mut builder = AmazonS3Builder::from_env().with_url(root);
            for (key, value) in options.as_map() {
                let key: AmazonS3ConfigKey = key.parse().map_err(|_| unknown(key))?;
                builder = builder.with_config(key, value);
            }
            builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        }
        "gs" => {
            let mut builder = GoogleCloudStorageBuilder::from_env().with_url(root);
            for (key, value) in options.as_map() {
                let key: GoogleConfigKey = key.parse().map_err(|_| unknown(key))?;
                builder = builder.with_config(key, value);
            }
            builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let mut builder = MicrosoftAzureBuilder::from_env().with_url(root);
            for (key, value) in options.as_map() {
                let key: AzureConfigKey = key.parse().map_err(|_| unknown(key))?;
                builder = builder.with_config(key, value);
            }
            builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        }
        "http" | "https" => {
            if let Some(key) = options.as_map().keys().next() {
                return Err(unknown(key));
            }
            HttpBuilder::new()
                .with_url(root)
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        }
        other => {
            return Err(LocationError::UnsupportedScheme {
                location: root.to_string(),
                scheme: other.to_string(),
            });
        }
    };
    built.map_err(|e| LocationError::Store {
        location: root.to_string(),
        reason: e.to_string(),
    })
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

    fn options(pairs: &[(&str, &str)]) -> StorageOptions {
        StorageOptions::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn object_store_urls_keep_their_scheme_and_bucket() {
        let s3 = options(&[
            ("aws_region", "us-east-1"),
            ("aws_endpoint", "http://127.0.0.1:9"),
        ]);
        let location = Location::parse_with("s3://logs/2026/11/", &s3).unwrap();
        assert_eq!(location.to_string(), "s3://logs/2026/11");
        assert_eq!(location.path().as_ref(), "2026/11");
        assert!(!location.is_local());
        assert_eq!(
            location.child("_SUCCESS").to_string(),
            "s3://logs/2026/11/_SUCCESS"
        );
        let bucket_root = Location::parse_with("s3://logs", &s3).unwrap();
        assert_eq!(bucket_root.child("a.txt").to_string(), "s3://logs/a.txt");

        let error = Location::parse_with("gs://bucket/x", &options(&[("google_nope", "x")]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("storage option `google_nope` is not known for gs://"),
            "{error}"
        );
        let azure = options(&[
            ("azure_storage_account_name", "acct"),
            ("azure_storage_use_emulator", "true"),
        ]);
        assert_eq!(
            Location::parse_with("az://container/dir", &azure)
                .unwrap()
                .to_string(),
            "az://container/dir"
        );
    }

    #[test]
    fn storage_options_are_checked_and_never_shown() {
        let bad = options(&[("aws_no_such_thing", "x")]);
        let error = Location::parse_with("s3://b/p", &bad)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("storage option `aws_no_such_thing`"),
            "{error}"
        );
        let secret = options(&[("aws_secret_access_key", "hunter2")]);
        assert!(!format!("{secret:?}").contains("hunter2"));
        let error = Location::parse("s3:///no-bucket").unwrap_err().to_string();
        assert!(error.contains("no bucket"), "{error}");
    }
}
