//! What a worker is asked to do and what it reports back, as domain types.
//! The wire forms are in `wire`; neither side keeps protobuf types.

use std::collections::BTreeMap;

use crate::ids::AttemptId;
use crate::storage::StorageOptions;

/// A compression codec of an input file, known by its extension. Compressed
/// files are read whole, one split per file: their byte ranges cannot be
/// decoded independently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    Bzip2,
}

impl Compression {
    pub fn of(location: &str) -> Option<Compression> {
        let name = location.rsplit('/').next().unwrap_or(location);
        let extension = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match extension.as_str() {
            "gz" | "gzip" => Some(Compression::Gzip),
            "zst" | "zstd" => Some(Compression::Zstd),
            "bz2" => Some(Compression::Bzip2),
            _ => None,
        }
    }
}

/// A byte range of one file: the input of one map task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub location: String,
    pub start: u64,
    pub end: u64,
    pub file_size: u64,
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}..{}]", self.location, self.start, self.end)
    }
}

/// What one map attempt wrote for one reduce partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentInfo {
    pub partition: u32,
    pub bytes: u64,
    pub records: u64,
    pub crc32c: u32,
}

/// Where a reducer fetches one segment of its partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapOutput {
    pub map_attempt: AttemptId,
    pub shuffle_address: String,
    pub segment: SegmentInfo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskSpec {
    Map {
        split: Split,
    },
    Reduce {
        partition: u32,
        output: String,
        map_outputs: Vec<MapOutput>,
    },
}

/// One attempt handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub attempt: AttemptId,
    pub job_name: String,
    pub args: BTreeMap<String, String>,
    pub reducers: u32,
    pub task: TaskSpec,
    /// Object store settings for the job's input and output.
    pub storage: StorageOptions,
}

/// Bytes and records an attempt read and wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttemptCounters {
    pub bytes_in: u64,
    pub records_in: u64,
    pub bytes_out: u64,
    pub records_out: u64,
}

/// How an attempt ended, as its worker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Map attempts list one segment per reduce partition; reduce attempts none.
    Succeeded { segments: Vec<SegmentInfo> },
    /// The attempt failed by itself: job code, bad input, a local error.
    Failed { message: String },
    /// A reduce attempt could not fetch, or could not verify, the segment
    /// of `map_attempt`: the map output's fault, not the reducer's.
    FetchFailed {
        map_attempt: AttemptId,
        message: String,
    },
    /// A shutting-down worker gave the attempt back unfinished.
    HandedBack { message: String },
}

/// The name of a reduce partition's committed output file.
pub fn part_file_name(partition: u32) -> String {
    format!("part-r-{partition:05}")
}

/// The directory under the job's output where attempts write before commit.
pub const TEMPORARY_DIR: &str = "_temporary";

/// The marker written last when a job succeeds.
pub const SUCCESS_FILE: &str = "_SUCCESS";
