//! What `status`, `jobs` and `workers` show: serializable reports, built
//! from the scheduler's state by the coordinator, carried as protobuf
//! (`crate::wire::report`), and turned back into the same reports by the
//! client (for text or `--json`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::task::BadRecord;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PhaseReport {
    pub total: u32,
    pub pending: u32,
    pub running: u32,
    pub succeeded: u32,
    pub failed: u32,
}

/// The failure-handling settings a job runs under.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FaultReport {
    pub max_attempts: u32,
    pub worker_timeout_ms: u64,
    pub stall_timeout_ms: u64,
    pub no_worker_timeout_ms: u64,
    pub suspect_timeout_ms: u64,
}

/// A job's attempts by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AttemptCounts {
    pub total: u32,
    pub running: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub lost: u32,
    pub killed: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptReport {
    pub attempt_id: String,
    pub worker_id: String,
    pub state: String,
    pub started_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    pub bytes_in: u64,
    pub records_in: u64,
    pub bytes_out: u64,
    pub records_out: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// A malformed input record that was skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRecordReport {
    pub location: String,
    pub offset: u64,
    pub reason: String,
}

impl From<BadRecord> for BadRecordReport {
    fn from(b: BadRecord) -> Self {
        BadRecordReport {
            location: b.location,
            offset: b.offset,
            reason: b.reason,
        }
    }
}

impl From<BadRecordReport> for BadRecord {
    fn from(b: BadRecordReport) -> Self {
        BadRecord {
            location: b.location,
            offset: b.offset,
            reason: b.reason,
        }
    }
}

/// The malformed input records the job skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BadRecordsReport {
    pub skipped: u64,
    /// `--skip-bad-records`.
    pub limit: u64,
    /// The first of them.
    pub samples: Vec<BadRecordReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskReport {
    pub task_id: String,
    pub state: String,
    pub input: String,
    pub attempts: Vec<AttemptReport>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JobReport {
    pub job_id: String,
    pub job_name: String,
    pub state: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
    pub inputs: Vec<String>,
    pub output: String,
    pub reducers: u32,
    pub submitted_at_ms: u64,
    /// When its first attempt started: before, it was queued.
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    pub map: PhaseReport,
    pub reduce: PhaseReport,
    pub input_bytes: u64,
    pub input_records: u64,
    pub output_records: u64,
    pub output_files: u32,
    /// Map output records spilled to disk (memory budget exceeded).
    pub spilled_records: u64,
    pub faults: FaultReport,
    pub attempts: AttemptCounts,
    pub input_format: String,
    /// The planned input schema, `name: type` per column.
    pub input_columns: Vec<String>,
    pub output_format: String,
    pub bad_records: BadRecordsReport,
    /// The job's own counters, summed over the winning attempts of its
    /// map and reduce tasks.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, u64>,
    /// The job's arguments, as submitted.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    /// The plugin the job came from: file name and SHA-256.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginReport>,
    /// Suspect workers whose map output of this job is set aside.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suspect_workers: Vec<String>,
    /// Slow workers running attempts of this job (they get no new ones).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slow_workers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskReport>,
}

impl JobReport {
    pub fn is_terminal(&self) -> bool {
        matches!(self.state.as_str(), "succeeded" | "failed" | "cancelled")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginReport {
    pub file_name: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerReport {
    pub worker_id: String,
    pub address: String,
    pub slots: u32,
    pub running_attempts: u32,
    pub last_heartbeat_ms: u64,
    pub registered_at_ms: u64,
    pub state: String,
    /// Why a suspect or dead worker is so.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Running jobs whose tasks failed too often on it: they give it no
    /// more.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub excluded_from: Vec<String>,
}

/// A duration for people: `850ms`, `12.3s`, `4m05s`, `2h10m`.
pub fn duration(ms: u64) -> String {
    let seconds = ms / 1000;
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, seconds / 60 % 60),
    }
}

#[cfg(test)]
mod duration_tests {
    use super::duration;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(12_340), "12.3s");
        assert_eq!(duration(245_000), "4m05s");
        assert_eq!(duration(7_800_000), "2h10m");
    }
}
