//! Planning a submission: expand the input paths and globs into files,
//! cut them into splits, and check the output location is free. All through
//! `object_store`, so object stores plug in behind the same code.

use futures::TryStreamExt;
use harrow_core::storage::{Location, LocationError, StorageOptions};
use harrow_core::task::{Compression, Split};
use harrow_sdk::GeneratedInput;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::limits::{MAX_AUTO_SPLIT, MIN_AUTO_SPLIT};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Location(#[from] LocationError),
    #[error("input {input} does not exist")]
    MissingInput { input: String },
    #[error("input directory {input} contains no files")]
    EmptyDirectory { input: String },
    #[error("input pattern {pattern} matched no files")]
    NoMatch { pattern: String },
    #[error("invalid glob {pattern}: {reason}")]
    BadGlob { pattern: String, reason: String },
    #[error(
        "output {output} already exists and is not empty; choose a new output directory or delete it"
    )]
    OutputExists { output: String },
    #[error("listing {location}: {source}")]
    Storage {
        location: String,
        #[source]
        source: object_store::Error,
    },
}

/// One input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    pub location: String,
    pub size: u64,
}

impl InputFile {
    pub fn new(location: &str, size: u64) -> Self {
        InputFile {
            location: location.to_string(),
            size,
        }
    }
}

const GLOB_CHARS: &[char] = &['*', '?', '[', '{'];

/// Expands each input (a file, a directory, or a glob in its last path
/// components) into files, sorted and without duplicates. Files and
/// directories whose name starts with `_` or `.` are skipped inside
/// directories, as Hadoop does (`_SUCCESS`, `.crc`).
pub async fn list_inputs(
    inputs: &[String],
    storage: &StorageOptions,
) -> Result<Vec<InputFile>, PlanError> {
    let mut files = Vec::new();
    for input in inputs {
        let found = if input.contains(GLOB_CHARS) {
            list_glob(input, storage).await?
        } else {
            list_path(input, storage).await?
        };
        files.extend(found);
    }
    files.sort_by(|a, b| a.location.cmp(&b.location));
    files.dedup();
    Ok(files)
}

async fn list_path(input: &str, storage: &StorageOptions) -> Result<Vec<InputFile>, PlanError> {
    let location = Location::parse_with(input, storage)?;
    match location.store().head(location.path()).await {
        Ok(meta) => {
            return Ok(vec![InputFile {
                location: location.to_string(),
                size: meta.size,
            }]);
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(source) => {
            return Err(PlanError::Storage {
                location: location.to_string(),
                source,
            });
        }
    }
    let files = list_under(&location).await?;
    if files.is_empty() {
        // A directory with only hidden files still exists.
        let exists = location.is_local() && exists_locally(&location.to_string());
        return Err(if exists {
            PlanError::EmptyDirectory {
                input: input.to_string(),
            }
        } else {
            PlanError::MissingInput {
                input: input.to_string(),
            }
        });
    }
    Ok(files)
}

/// Whether a local path exists, to tell an empty directory from a missing
/// one (object stores have no directories: a prefix without objects is
/// simply missing).
fn exists_locally(path: &str) -> bool {
    std::path::Path::new(path).exists()
}

async fn list_glob(pattern: &str, storage: &StorageOptions) -> Result<Vec<InputFile>, PlanError> {
    // List below the longest prefix without glob characters.
    let glob_start = pattern
        .find(GLOB_CHARS)
        .expect("pattern has a glob character");
    let base = match pattern[..glob_start].rfind('/') {
        Some(slash) => &pattern[..slash.max(1)],
        None => ".",
    };
    let base = Location::parse_with(base, storage)?;
    let absolute_pattern = Location::parse_with(pattern, storage)
        .map(|l| l.to_string())
        .unwrap_or_else(|_| pattern.to_string());
    let matcher = globset::GlobBuilder::new(&absolute_pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| PlanError::BadGlob {
            pattern: pattern.to_string(),
            reason: e.to_string(),
        })?
        .compile_matcher();
    let files: Vec<InputFile> = list_under(&base)
        .await?
        .into_iter()
        .filter(|f| matcher.is_match(&f.location))
        .collect();
    if files.is_empty() {
        return Err(PlanError::NoMatch {
            pattern: pattern.to_string(),
        });
    }
    Ok(files)
}

/// Every visible file below `location`.
async fn list_under(location: &Location) -> Result<Vec<InputFile>, PlanError> {
    let storage = |source| PlanError::Storage {
        location: location.to_string(),
        source,
    };
    let listed: Vec<_> = location
        .store()
        .list(Some(location.path()))
        .try_collect()
        .await
        .or_else(|e| match e {
            object_store::Error::NotFound { .. } => Ok(Vec::new()),
            other => Err(storage(other)),
        })?;
    let prefix_parts = location.path().parts().count();
    Ok(listed
        .into_iter()
        .filter(|meta| {
            meta.location
                .parts()
                .skip(prefix_parts)
                .all(|part| !part.as_ref().starts_with(['_', '.']))
        })
        .map(|meta| InputFile {
            location: location.with_path(meta.location).to_string(),
            size: meta.size,
        })
        .collect())
}

/// The split size when the submission names none: the input spread over
/// one wave of the live workers' `slots`, so each slot's mapper folds as
/// much as it can and no slot idles while another has a second split;
/// at least [`MIN_AUTO_SPLIT`], where per-task costs start to show, and
/// at most [`MAX_AUTO_SPLIT`], the most a lost task has to read again.
/// With no live worker yet, the input is cut as for one slot.
pub fn auto_split_size(files: &[InputFile], slots: u64) -> u64 {
    let total: u64 = files.iter().map(|f| f.size).sum();
    total
        .div_ceil(slots.max(1))
        .next_multiple_of(1 << 20)
        .clamp(MIN_AUTO_SPLIT, MAX_AUTO_SPLIT)
}

/// Cuts files into splits of `split_size` bytes (0: one split per file).
/// An empty file still gets a split, so every input file is visited.
pub fn splits(files: &[InputFile], split_size: u64) -> Vec<Split> {
    let mut splits = Vec::new();
    for file in files {
        // Compressed files cannot be decoded from the middle: whole.
        let whole = split_size == 0 || Compression::of(&file.location).is_some();
        let step = if whole { file.size.max(1) } else { split_size };
        let mut start = 0;
        loop {
            let end = (start + step).min(file.size);
            splits.push(Split {
                location: file.location.clone(),
                start,
                end,
                file_size: file.size,
            });
            start = end;
            if start >= file.size {
                break;
            }
        }
    }
    splits
}

/// The location generated input's splits name in messages.
pub const GENERATED_LOCATION: &str = "generated rows";

/// Splits of generated input: `rows_per_task` row numbers each.
pub fn row_splits(input: GeneratedInput) -> Vec<Split> {
    (0..input.rows)
        .step_by(input.rows_per_task.max(1) as usize)
        .map(|start| Split {
            location: GENERATED_LOCATION.to_string(),
            start,
            end: input.rows.min(start + input.rows_per_task.max(1)),
            file_size: input.rows,
        })
        .collect()
}

/// Refuses an output location that holds anything.
pub async fn check_output(output: &str, storage: &StorageOptions) -> Result<Location, PlanError> {
    let location = Location::parse_with(output, storage)?;
    let exists = |_| PlanError::OutputExists {
        output: location.to_string(),
    };
    if location.store().head(location.path()).await.is_ok() {
        return Err(exists(()));
    }
    let mut listing = location.store().list(Some(location.path()));
    match listing.try_next().await {
        Ok(Some(_)) => Err(exists(())),
        Ok(None) | Err(object_store::Error::NotFound { .. }) => Ok(location),
        Err(source) => Err(PlanError::Storage {
            location: location.to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(location: &str, size: u64) -> InputFile {
        InputFile::new(location, size)
    }

    #[test]
    fn splits_cover_every_byte_once() {
        let splits = splits(&[file("/a", 10), file("/b", 0), file("/c", 4)], 4);
        let ranges: Vec<(&str, u64, u64)> = splits
            .iter()
            .map(|s| (s.location.as_str(), s.start, s.end))
            .collect();
        assert_eq!(
            ranges,
            [
                ("/a", 0, 4),
                ("/a", 4, 8),
                ("/a", 8, 10),
                ("/b", 0, 0),
                ("/c", 0, 4)
            ]
        );
    }

    #[test]
    fn compressed_files_are_one_split_whatever_the_split_size() {
        let splits = splits(
            &[
                file("/a.txt.gz", 10),
                file("/b.ZST", 10),
                file("/c.bz2", 10),
                file("/d.txt", 10),
            ],
            4,
        );
        let per_file: Vec<&str> = splits.iter().map(|s| s.location.as_str()).collect();
        assert_eq!(
            per_file,
            [
                "/a.txt.gz",
                "/b.ZST",
                "/c.bz2",
                "/d.txt",
                "/d.txt",
                "/d.txt"
            ]
        );
    }

    #[test]
    fn auto_split_size_spreads_the_input_over_one_wave_of_slots() {
        let file = |size: u64| InputFile {
            location: "file:///data/a.txt".into(),
            size,
        };
        const MIB: u64 = 1 << 20;
        // 1 GiB over 2 slots: two 512 MiB splits.
        assert_eq!(auto_split_size(&[file(1 << 30)], 2), 512 * MIB);
        // Over 8 slots, in two files: 128 MiB.
        let files = [file(600 * MIB), file(424 * MIB)];
        assert_eq!(auto_split_size(&files, 8), 128 * MIB);
        // Rounded up to a MiB, so the last split is not a sliver.
        assert_eq!(auto_split_size(&[file(1000 * MIB + 1)], 10), 101 * MIB);
        // Bounded both ways, and no live worker counts as one slot.
        assert_eq!(auto_split_size(&[file(10 * MIB)], 4), MIN_AUTO_SPLIT);
        assert_eq!(auto_split_size(&[file(100 << 30)], 4), MAX_AUTO_SPLIT);
        assert_eq!(auto_split_size(&[file(100 * MIB)], 0), 100 * MIB);
        assert_eq!(auto_split_size(&[], 4), MIN_AUTO_SPLIT);
    }

    #[test]
    fn split_size_zero_means_one_split_per_file() {
        let splits = splits(&[file("/a", 10), file("/b", 0)], 0);
        assert_eq!(splits.len(), 2);
        assert_eq!((splits[0].start, splits[0].end), (0, 10));
    }

    #[tokio::test]
    async fn lists_directories_and_globs_skipping_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("logs/2026-11-01")).unwrap();
        std::fs::write(root.join("logs/2026-11-01/a.txt"), "a").unwrap();
        std::fs::write(root.join("logs/2026-11-01/b.json"), "bb").unwrap();
        std::fs::write(root.join("logs/_SUCCESS"), "").unwrap();
        std::fs::write(root.join("logs/.hidden"), "").unwrap();
        let root = root.display().to_string();

        let all = list_inputs(&[format!("{root}/logs")], &StorageOptions::default())
            .await
            .unwrap();
        let names: Vec<&str> = all
            .iter()
            .map(|f| harrow_sdk::base_name(&f.location))
            .collect();
        assert_eq!(names, ["a.txt", "b.json"]);

        let txt = list_inputs(
            &[format!("{root}/logs/2026-11-*/*.txt")],
            &StorageOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(txt, [file(&format!("{root}/logs/2026-11-01/a.txt"), 1)]);

        let error = list_inputs(&[format!("{root}/logs/*.csv")], &StorageOptions::default())
            .await
            .unwrap_err();
        assert!(error.to_string().contains("matched no files"), "{error}");
        let error = list_inputs(&[format!("{root}/missing")], &StorageOptions::default())
            .await
            .unwrap_err();
        assert!(error.to_string().contains("does not exist"), "{error}");
    }

    #[tokio::test]
    async fn refuses_a_non_empty_output() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        check_output(out.to_str().unwrap(), &StorageOptions::default())
            .await
            .unwrap();
        std::fs::create_dir_all(&out).unwrap();
        check_output(out.to_str().unwrap(), &StorageOptions::default())
            .await
            .unwrap();
        std::fs::write(out.join("part-r-00000"), "x").unwrap();
        let error = check_output(out.to_str().unwrap(), &StorageOptions::default())
            .await
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("already exists and is not empty"),
            "{error}"
        );
    }
}
