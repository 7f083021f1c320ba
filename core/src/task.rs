//! What a worker is asked to do and what it reports back, as domain types.
//! The wire forms are in `wire`; neither side keeps protobuf types.

use crate::rpc::security::Token;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;

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

/// How input files are read. Without `--input-format` it is inferred from
/// each file's extension (after any compression extension): `.csv` and
/// `.tsv` are CSV, `.json`, `.jsonl` and `.ndjson` JSON lines, `.parquet`
/// and `.pq` Parquet, anything else text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputFormat {
    Text,
    Csv,
    Jsonl,
    Parquet,
}

impl InputFormat {
    pub fn of(location: &str) -> InputFormat {
        let name = location.rsplit('/').next().unwrap_or(location);
        let mut stem = name;
        if Compression::of(name).is_some()
            && let Some((rest, _)) = name.rsplit_once('.')
        {
            stem = rest;
        }
        let extension = stem
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        match extension.as_str() {
            "csv" | "tsv" => InputFormat::Csv,
            "json" | "jsonl" | "ndjson" => InputFormat::Jsonl,
            "parquet" | "pq" => InputFormat::Parquet,
            _ => InputFormat::Text,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            InputFormat::Text => "text",
            InputFormat::Csv => "csv",
            InputFormat::Jsonl => "jsonl",
            InputFormat::Parquet => "parquet",
        }
    }
}

/// A format name that is not one of text, csv, jsonl, parquet.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown format `{0}` (expected text, csv, jsonl or parquet)")]
pub struct UnknownFormat(pub String);

impl FromStr for InputFormat {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        match s.to_ascii_lowercase().as_str() {
            "text" | "txt" => Ok(InputFormat::Text),
            "csv" => Ok(InputFormat::Csv),
            "jsonl" | "json" | "ndjson" => Ok(InputFormat::Jsonl),
            "parquet" => Ok(InputFormat::Parquet),
            _ => Err(UnknownFormat(s.to_string())),
        }
    }
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How reduce output is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OutputFormat {
    /// Columns formatted and joined by a tab, one line per row.
    #[default]
    Text,
    /// RFC 4180 CSV with a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
    /// Parquet with the job's output schema, zstd-compressed.
    Parquet,
}

impl OutputFormat {
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Text => "text",
            OutputFormat::Csv => "csv",
            OutputFormat::Jsonl => "jsonl",
            OutputFormat::Parquet => "parquet",
        }
    }

    /// The extension of committed files (`part-r-00000.parquet`); none for text.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Text => "",
            OutputFormat::Csv => ".csv",
            OutputFormat::Jsonl => ".jsonl",
            OutputFormat::Parquet => ".parquet",
        }
    }
}

impl FromStr for OutputFormat {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        Ok(match s.parse::<InputFormat>()? {
            InputFormat::Text => OutputFormat::Text,
            InputFormat::Csv => OutputFormat::Csv,
            InputFormat::Jsonl => OutputFormat::Jsonl,
            InputFormat::Parquet => OutputFormat::Parquet,
        })
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a job's input is read: the same for every map task of the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    pub format: InputFormat,
    /// The planned schema: every split decodes to it (before projection).
    pub schema: SchemaRef,
    pub csv_delimiter: u8,
    /// Malformed records the job may skip in total.
    pub skip_bad_records: u64,
}

impl InputSpec {
    /// The input of a job that generates its own: row numbers.
    pub fn generated() -> Self {
        InputSpec {
            schema: harrow_sdk::generated_schema(),
            ..InputSpec::text()
        }
    }

    /// Lines of text, no records skipped.
    pub fn text() -> Self {
        InputSpec {
            format: InputFormat::Text,
            schema: harrow_sdk::text_schema(""),
            csv_delimiter: b',',
            skip_bad_records: 0,
        }
    }
}

/// A malformed input record that was skipped (or that failed the attempt).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BadRecord {
    pub location: String,
    /// Byte offset of the record in its file (decompressed, for compressed files).
    pub offset: u64,
    pub reason: String,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at byte {}: {}",
            self.location, self.offset, self.reason
        )
    }
}

/// How many bad records one attempt reports by name; the rest are counted.
pub const BAD_RECORD_SAMPLES: usize = 20;

/// What a map attempt says about the input it read.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct InputReport {
    /// For byte-range splits: where the first record owned by the split
    /// starts and where its last one ends.
    pub span: Option<(u64, u64)>,
    pub bad_records: u64,
    /// The first [`BAD_RECORD_SAMPLES`] of them.
    pub bad_record_samples: Vec<BadRecord>,
}

/// A byte range of one file: the input of one map task.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
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
        /// The job's number of map tasks.
        job_maps: u32,
    },
    Reduce {
        partition: u32,
        output: String,
        /// One per map task, in order; `None` while the map task runs
        /// again (the reducer asks where its output is once it has
        /// succeeded).
        map_outputs: Vec<Option<MapOutput>>,
    },
}

/// One attempt handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub attempt: AttemptId,
    pub task: TaskSpec,
    /// What every attempt of the job shares.
    pub job: Arc<JobSpec>,
}

/// What every attempt of a job shares, fixed at submission: built once and
/// shared by reference by the scheduler's job and each assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// The job's name in the registry or its plugin.
    pub name: String,
    pub args: BTreeMap<String, String>,
    pub reducers: u32,
    /// Object store settings for the job's input and output.
    pub storage: StorageOptions,
    pub input: InputSpec,
    pub output_format: OutputFormat,
    /// The plugin holding the job; `None` for a built-in job.
    pub plugin: Option<PluginRef>,
    pub partitioner: Partitioner,
    /// The job's secret for shuffle fetches (see `ShuffleKeys`).
    pub shuffle_key: Token,
}

/// How a map attempt assigns its output keys to reduce partitions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Partitioner {
    /// By a hash of the key.
    #[default]
    Hash,
    /// By key ranges: partition `i` takes the keys, encoded in Arrow's row
    /// format, from `bounds[i - 1]` (inclusive) up to `bounds[i]`
    /// (exclusive). `reducers - 1` ascending bounds, cut from a sample.
    Range { bounds: Arc<[Vec<u8>]> },
}

/// A job plugin stored at the coordinator, by the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PluginRef {
    /// Lowercase hex.
    pub sha256: String,
    /// The file name it was uploaded as, for messages.
    pub file_name: String,
}

impl std::fmt::Display for PluginRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = self.sha256.get(..12).unwrap_or(&self.sha256);
        write!(f, "{} (sha256 {short})", self.file_name)
    }
}

/// Bytes and records an attempt read and wrote.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct AttemptCounters {
    pub bytes_in: u64,
    pub records_in: u64,
    pub bytes_out: u64,
    pub records_out: u64,
    /// Map output records spilled to disk in sorted runs.
    pub spilled_records: u64,
    /// Milliseconds a reduce attempt spent fetching its segments.
    pub fetch_ms: u64,
    /// The job's own counters.
    #[serde(with = "user_counters")]
    pub user: harrow_sdk::Counters,
}

/// The job's counters as a map of names to values, for the coordinator's
/// state (the SDK carries no serde).
mod user_counters {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        counters: &harrow_sdk::Counters,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let map: BTreeMap<&str, u64> = counters.iter().collect();
        map.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<harrow_sdk::Counters, D::Error> {
        let map = BTreeMap::<String, u64>::deserialize(deserializer)?;
        Ok(map.into_iter().collect())
    }
}

/// How an attempt ended, as its worker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Map attempts list one segment per reduce partition and report on
    /// their input; reduce attempts have neither.
    Succeeded {
        segments: Vec<SegmentInfo>,
        input: InputReport,
    },
    /// The attempt failed; `kind` says whose fault it was.
    Failed { message: String, kind: FailureKind },
    /// A reduce attempt could not fetch, or could not verify, the segment
    /// of `map_attempt`: the map output's fault, not the reducer's.
    FetchFailed {
        map_attempt: AttemptId,
        message: String,
        cause: FetchFailure,
    },
    /// A shutting-down worker gave the attempt back unfinished.
    HandedBack { message: String },
}

/// Whose fault a failed attempt was, which decides what it counts toward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FailureKind {
    /// The job's: its code, its input, an object store refusing its
    /// request (auth, not found). Counts toward `--max-attempts`.
    Job,
    /// The worker's: a full disk, a local I/O error. Counts toward the
    /// worker's exclusion from the job only.
    Worker,
    /// Nobody's: a coordinator call that did not get through, an object
    /// store timeout or 5xx. Retried after a backoff, within a budget of
    /// its own per task.
    Transient,
}

impl FailureKind {
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Job => "job",
            FailureKind::Worker => "worker",
            FailureKind::Transient => "transient",
        }
    }
}

/// Why a reduce attempt could not use a map output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FetchFailure {
    /// The map output's worker did not answer (connection refused or
    /// reset, a timeout, UNAVAILABLE, TLS): evidence about the whole
    /// worker, not one file.
    Unreachable,
    /// The worker answered, but this segment was missing or failed its
    /// size or CRC32C check: it concerns this one map output.
    Corrupt,
}

/// The name of a reduce partition's committed output file.
pub fn part_file_name(partition: u32, format: OutputFormat) -> String {
    format!("part-r-{partition:05}{}", format.extension())
}

/// The directory under the job's output where attempts write before commit.
pub const TEMPORARY_DIR: &str = "_temporary";

/// The marker written last when a job succeeds.
pub const SUCCESS_FILE: &str = "_SUCCESS";
