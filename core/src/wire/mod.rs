//! Conversions between the protobuf messages and the domain types, done at
//! the gRPC handlers on both sides. A message that does not convert is the
//! sender's fault and becomes `INVALID_ARGUMENT`.

pub mod report;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use harrow_proto::v1 as pb;

use crate::ids::{AttemptId, IdError};
use crate::rpc::security::Token;
use crate::storage::StorageOptions;
use crate::task::{
    Assignment, AttemptCounters, AttemptOutcome, BadRecord, FailureKind, FetchFailure, InputReport,
    InputSpec, JobSpec, MapOutput, Partitioner, PluginRef, SegmentInfo, Split, TaskSpec,
    UnknownFormat,
};

/// A wire message with a missing or malformed field.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WireError {
    #[error("field `{field}` is missing")]
    Missing { field: &'static str },
    #[error(transparent)]
    Id(#[from] IdError),
    #[error(transparent)]
    Format(#[from] UnknownFormat),
    #[error("field `{field}`: {reason}")]
    Schema { field: &'static str, reason: String },
    #[error("field `{field}` is out of range: {value}")]
    Range { field: &'static str, value: u64 },
    #[error("field `{field}`: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
}

impl From<WireError> for tonic::Status {
    fn from(error: WireError) -> Self {
        tonic::Status::invalid_argument(error.to_string())
    }
}

/// A schema as an Arrow IPC stream that holds only the schema message.
pub fn schema_to_bytes(schema: &Schema) -> Vec<u8> {
    let mut writer =
        StreamWriter::try_new(Vec::new(), schema).expect("a schema serializes to memory");
    writer.finish().expect("a schema serializes to memory");
    writer.into_inner().expect("a schema serializes to memory")
}

/// The schema of an IPC stream written by [`schema_to_bytes`].
pub fn schema_from_bytes(bytes: &[u8]) -> Result<SchemaRef, ArrowError> {
    without_panics(|| Ok(StreamReader::try_new(bytes, None)?.schema()))
}

/// A batch as an Arrow IPC stream: its schema and the batch.
pub fn batch_to_bytes(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let mut writer = StreamWriter::try_new(Vec::new(), batch.schema_ref())?;
    writer.write(batch)?;
    writer.finish()?;
    writer.into_inner()
}

/// The one batch of an IPC stream written by [`batch_to_bytes`].
pub fn batch_from_bytes(bytes: &[u8]) -> Result<RecordBatch, ArrowError> {
    without_panics(|| {
        let mut reader = StreamReader::try_new(bytes, None)?;
        match reader.next() {
            Some(batch) => batch,
            None => Ok(RecordBatch::new_empty(reader.schema())),
        }
    })
}

/// Arrow's IPC reader panics on some malformed buffer lengths (60.1, found
/// by the fuzz targets); bytes from another process must fail as an error.
fn without_panics<T>(
    decode: impl FnOnce() -> Result<T, ArrowError> + std::panic::UnwindSafe,
) -> Result<T, ArrowError> {
    std::panic::catch_unwind(decode).unwrap_or_else(|_| {
        Err(ArrowError::IpcError(
            "malformed Arrow IPC data (the decoder gave up)".to_string(),
        ))
    })
}

fn required<T>(value: Option<T>, field: &'static str) -> Result<T, WireError> {
    value.ok_or(WireError::Missing { field })
}

impl From<SegmentInfo> for pb::SegmentInfo {
    fn from(s: SegmentInfo) -> Self {
        pb::SegmentInfo {
            partition: s.partition,
            bytes: s.bytes,
            records: s.records,
            crc32c: s.crc32c,
        }
    }
}

impl From<pb::SegmentInfo> for SegmentInfo {
    fn from(s: pb::SegmentInfo) -> Self {
        SegmentInfo {
            partition: s.partition,
            bytes: s.bytes,
            records: s.records,
            crc32c: s.crc32c,
        }
    }
}

impl From<AttemptCounters> for pb::AttemptCounters {
    fn from(c: AttemptCounters) -> Self {
        pb::AttemptCounters {
            bytes_in: c.bytes_in,
            records_in: c.records_in,
            bytes_out: c.bytes_out,
            records_out: c.records_out,
            spilled_records: c.spilled_records,
            fetch_ms: c.fetch_ms,
            user: c
                .user
                .iter()
                .map(|(name, value)| (name.to_string(), value))
                .collect(),
        }
    }
}

impl From<pb::AttemptCounters> for AttemptCounters {
    fn from(c: pb::AttemptCounters) -> Self {
        AttemptCounters {
            bytes_in: c.bytes_in,
            records_in: c.records_in,
            bytes_out: c.bytes_out,
            records_out: c.records_out,
            spilled_records: c.spilled_records,
            fetch_ms: c.fetch_ms,
            user: c.user.into_iter().collect(),
        }
    }
}

impl From<Assignment> for pb::TaskAssignment {
    fn from(a: Assignment) -> Self {
        let task = match a.task {
            TaskSpec::Map { split, job_maps } => pb::task_assignment::Task::Map(pb::MapTask {
                split: Some(split.into()),
                job_maps,
            }),
            TaskSpec::Reduce {
                partition,
                output,
                map_outputs,
            } => pb::task_assignment::Task::Reduce(pb::ReduceTask {
                partition,
                output,
                map_outputs: map_outputs.into_iter().map(location).collect(),
            }),
        };
        pb::TaskAssignment {
            attempt_id: a.attempt.to_string(),
            task: Some(task),
            ..job_spec_fields(&a.job)
        }
    }
}

impl From<Split> for pb::InputSplit {
    fn from(split: Split) -> Self {
        pb::InputSplit {
            location: split.location,
            start: split.start,
            end: split.end,
            file_size: split.file_size,
        }
    }
}

impl From<pb::InputSplit> for Split {
    fn from(split: pb::InputSplit) -> Self {
        Split {
            location: split.location,
            start: split.start,
            end: split.end,
            file_size: split.file_size,
        }
    }
}

/// A job's spec as the job fields of an assignment (no attempt, no task).
pub fn job_spec_fields(job: &JobSpec) -> pb::TaskAssignment {
    pb::TaskAssignment {
        attempt_id: String::new(),
        job_name: job.name.clone(),
        args: job.args.clone().into_iter().collect(),
        reducers: job.reducers,
        task: None,
        storage_options: job.storage.clone().into_map().into_iter().collect(),
        input: Some(pb::InputSpec {
            format: job.input.format.name().to_string(),
            arrow_schema: schema_to_bytes(&job.input.schema),
            csv_delimiter: job.input.csv_delimiter.into(),
            skip_bad_records: job.input.skip_bad_records,
        }),
        plugin: job.plugin.clone().map(Into::into),
        output_format: job.output_format.name().to_string(),
        range_partitioner: match &job.partitioner {
            Partitioner::Hash => None,
            Partitioner::Range { bounds } => Some(pb::RangePartitioner {
                bounds: bounds.to_vec(),
            }),
        },
        shuffle_key: job.shuffle_key.expose().to_string(),
    }
}

impl TryFrom<pb::InputSpec> for InputSpec {
    type Error = WireError;
    fn try_from(input: pb::InputSpec) -> Result<Self, WireError> {
        Ok(InputSpec {
            format: input.format.parse()?,
            schema: schema_from_bytes(&input.arrow_schema).map_err(|e| WireError::Schema {
                field: "input.arrow_schema",
                reason: e.to_string(),
            })?,
            csv_delimiter: u8::try_from(input.csv_delimiter).map_err(|_| WireError::Range {
                field: "input.csv_delimiter",
                value: input.csv_delimiter.into(),
            })?,
            skip_bad_records: input.skip_bad_records,
        })
    }
}

impl From<MapOutput> for pb::MapOutputLocation {
    fn from(m: MapOutput) -> Self {
        pb::MapOutputLocation {
            map_attempt_id: m.map_attempt.to_string(),
            shuffle_address: m.shuffle_address,
            segment: Some(m.segment.into()),
            pending: false,
        }
    }
}

/// A map output's location, or `pending` while its map task runs again.
fn location(output: Option<MapOutput>) -> pb::MapOutputLocation {
    match output {
        Some(output) => output.into(),
        None => pb::MapOutputLocation {
            pending: true,
            ..Default::default()
        },
    }
}

/// Map output locations from the wire, where some may be pending.
fn pending_map_outputs(
    locations: Vec<pb::MapOutputLocation>,
) -> Result<Vec<Option<MapOutput>>, WireError> {
    locations
        .into_iter()
        .map(|m| {
            if m.pending {
                return Ok(None);
            }
            Ok(Some(MapOutput {
                map_attempt: m.map_attempt_id.parse()?,
                shuffle_address: m.shuffle_address,
                segment: required(m.segment, "map_outputs.segment")?.into(),
            }))
        })
        .collect()
}

/// Map output locations from the wire, every one available.
pub fn map_outputs(locations: Vec<pb::MapOutputLocation>) -> Result<Vec<MapOutput>, WireError> {
    pending_map_outputs(locations)?
        .into_iter()
        .map(|m| {
            m.ok_or(WireError::Invalid {
                field: "map_outputs",
                reason: "a location is pending where every map task has succeeded",
            })
        })
        .collect()
}

impl From<BadRecord> for pb::BadRecord {
    fn from(b: BadRecord) -> Self {
        pb::BadRecord {
            location: b.location,
            offset: b.offset,
            reason: b.reason,
        }
    }
}

impl From<pb::BadRecord> for BadRecord {
    fn from(b: pb::BadRecord) -> Self {
        BadRecord {
            location: b.location,
            offset: b.offset,
            reason: b.reason,
        }
    }
}

impl TryFrom<pb::TaskAssignment> for Assignment {
    type Error = WireError;
    fn try_from(mut a: pb::TaskAssignment) -> Result<Self, WireError> {
        let task = match required(a.task.take(), "task")? {
            pb::task_assignment::Task::Map(map) => TaskSpec::Map {
                split: required(map.split, "map.split")?.into(),
                job_maps: map.job_maps,
            },
            pb::task_assignment::Task::Reduce(reduce) => TaskSpec::Reduce {
                partition: reduce.partition,
                output: reduce.output,
                map_outputs: pending_map_outputs(reduce.map_outputs)?,
            },
        };
        Ok(Assignment {
            attempt: a.attempt_id.parse()?,
            task,
            job: Arc::new(job_spec(a)?),
        })
    }
}

/// A job's spec from the job fields of an assignment.
pub fn job_spec(a: pb::TaskAssignment) -> Result<JobSpec, WireError> {
    Ok(JobSpec {
        name: a.job_name,
        args: a.args.into_iter().collect(),
        reducers: a.reducers,
        storage: StorageOptions::new(a.storage_options.into_iter().collect()),
        input: required(a.input, "input")?.try_into()?,
        output_format: a.output_format.parse()?,
        plugin: a.plugin.map(Into::into),
        partitioner: match a.range_partitioner {
            None => Partitioner::Hash,
            Some(range) => {
                if range.bounds.len() + 1 != a.reducers as usize
                    || range.bounds.windows(2).any(|w| w[0] > w[1])
                {
                    return Err(WireError::Range {
                        field: "range_partitioner.bounds",
                        value: range.bounds.len() as u64,
                    });
                }
                Partitioner::Range {
                    bounds: range.bounds.into(),
                }
            }
        },
        shuffle_key: Token::from_wire(&a.shuffle_key).ok_or(WireError::Invalid {
            field: "shuffle_key",
            reason: "not a well-formed key",
        })?,
    })
}

impl From<PluginRef> for pb::PluginRef {
    fn from(p: PluginRef) -> Self {
        pb::PluginRef {
            sha256: p.sha256,
            file_name: p.file_name,
        }
    }
}

impl From<pb::PluginRef> for PluginRef {
    fn from(p: pb::PluginRef) -> Self {
        PluginRef {
            sha256: p.sha256,
            file_name: p.file_name,
        }
    }
}

/// Builds the report of how an attempt ended.
pub fn attempt_report(
    worker_id: String,
    attempt: AttemptId,
    counters: AttemptCounters,
    outcome: AttemptOutcome,
) -> pb::AttemptReport {
    let outcome = match outcome {
        AttemptOutcome::Succeeded { segments, input } => {
            pb::attempt_report::Outcome::Succeeded(pb::AttemptSucceeded {
                segments: segments.into_iter().map(Into::into).collect(),
                span: input.span.map(|(start, end)| pb::RecordSpan { start, end }),
                bad_records: input.bad_records,
                bad_record_samples: input
                    .bad_record_samples
                    .into_iter()
                    .map(Into::into)
                    .collect(),
            })
        }
        AttemptOutcome::Failed { message, kind } => {
            let kind = match kind {
                FailureKind::Job => pb::FailureKind::Task,
                FailureKind::Worker => pb::FailureKind::Worker,
                FailureKind::Transient => pb::FailureKind::Transient,
            };
            failed(kind, message, None)
        }
        AttemptOutcome::FetchFailed {
            map_attempt,
            message,
            cause,
        } => failed(pb::FailureKind::Fetch, message, Some((map_attempt, cause))),
        AttemptOutcome::HandedBack { message } => {
            failed(pb::FailureKind::HandedBack, message, None)
        }
    };
    pb::AttemptReport {
        worker_id,
        attempt_id: attempt.to_string(),
        counters: Some(counters.into()),
        outcome: Some(outcome),
        // Offers no slot: a worker that wants its next task sets it.
        free_slots: 0,
    }
}

/// A failure's report; a fetch failure names the map attempt and why.
fn failed(
    kind: pb::FailureKind,
    message: String,
    fetch: Option<(AttemptId, FetchFailure)>,
) -> pb::attempt_report::Outcome {
    pb::attempt_report::Outcome::Failed(pb::AttemptFailed {
        message,
        kind: kind.into(),
        map_attempt_id: fetch.map(|(a, _)| a.to_string()).unwrap_or_default(),
        worker_unreachable: fetch.is_some_and(|(_, cause)| cause == FetchFailure::Unreachable),
    })
}

/// The outcome carried by a report.
pub fn attempt_outcome(
    outcome: Option<pb::attempt_report::Outcome>,
) -> Result<AttemptOutcome, WireError> {
    Ok(match required(outcome, "outcome")? {
        pb::attempt_report::Outcome::Succeeded(s) => AttemptOutcome::Succeeded {
            segments: s.segments.into_iter().map(Into::into).collect(),
            input: InputReport {
                span: s.span.map(|span| (span.start, span.end)),
                bad_records: s.bad_records,
                bad_record_samples: s.bad_record_samples.into_iter().map(Into::into).collect(),
            },
        },
        pb::attempt_report::Outcome::Failed(f) => match pb::FailureKind::try_from(f.kind) {
            Ok(pb::FailureKind::Fetch) => AttemptOutcome::FetchFailed {
                map_attempt: f.map_attempt_id.parse()?,
                message: f.message,
                cause: if f.worker_unreachable {
                    FetchFailure::Unreachable
                } else {
                    FetchFailure::Corrupt
                },
            },
            Ok(pb::FailureKind::HandedBack) => AttemptOutcome::HandedBack { message: f.message },
            Ok(pb::FailureKind::Worker) => AttemptOutcome::Failed {
                message: f.message,
                kind: FailureKind::Worker,
            },
            Ok(pb::FailureKind::Transient) => AttemptOutcome::Failed {
                message: f.message,
                kind: FailureKind::Transient,
            },
            // Unknown kinds from a newer worker count as the attempt's own failure.
            Ok(pb::FailureKind::Task | pb::FailureKind::Unspecified) | Err(_) => {
                AttemptOutcome::Failed {
                    message: f.message,
                    kind: FailureKind::Job,
                }
            }
        },
    })
}
