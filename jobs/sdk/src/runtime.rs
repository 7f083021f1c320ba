//! The engine-facing side of a job: the object-safe [`JobRuntime`] that the
//! worker drives, whatever level the job was written at, and the
//! [`JobDefinition`] that registers a job under its name.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::{ArgSpec, Counters, JobArgs, JobError};

/// Name of the key column of map output.
pub const KEY_COLUMN: &str = "key";
/// Name of the value column of map output.
pub const VALUE_COLUMN: &str = "value";

/// The types a job declares: its map output key and value, its output
/// schema, whether it has a combiner, and the input columns it reads.
#[derive(Debug, Clone)]
pub struct JobSchema {
    pub key: DataType,
    pub value: DataType,
    pub output: SchemaRef,
    pub combiner: bool,
    /// The input columns the map reads; the engine decodes only these (a
    /// Parquet projection, skipped CSV fields). `None`: every column.
    pub input_columns: Option<Vec<String>>,
    /// How map output keys are spread over the reduce partitions.
    pub partitioning: Partitioning,
    /// Set when the job makes its own input from row numbers instead of
    /// reading files.
    pub generated: Option<GeneratedInput>,
}

/// How map output keys are assigned to reduce partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Partitioning {
    /// By a hash of the key: partitions of even size, in no order.
    #[default]
    Hash,
    /// By key ranges cut from a sample of the map output, taken when the
    /// job is submitted: every key of partition `i` sorts before every key
    /// of partition `i + 1`, so the part files read in order are sorted.
    TotalOrder,
}

/// Input that a job generates instead of reading files: the row numbers
/// `0..rows`, fed to the map as batches of one non-null `UInt64` column
/// named [`ROW_COLUMN`], `rows_per_task` rows per map task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratedInput {
    pub rows: u64,
    pub rows_per_task: u64,
}

/// The column of generated input.
pub const ROW_COLUMN: &str = "row";

/// The schema of generated input batches.
pub fn generated_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        ROW_COLUMN,
        DataType::UInt64,
        false,
    )]))
}

impl JobSchema {
    /// A job over lines of text (it reads the `line` and `offset` columns),
    /// without a combiner, partitioned by hash, reading files.
    pub fn over_lines(key: DataType, value: DataType, output: SchemaRef) -> JobSchema {
        JobSchema {
            key,
            value,
            output,
            combiner: false,
            input_columns: Some(vec![
                crate::LINE_COLUMN.to_string(),
                crate::OFFSET_COLUMN.to_string(),
            ]),
            partitioning: Partitioning::Hash,
            generated: None,
        }
    }

    /// The schema of map output batches: `key`, `value`.
    pub fn key_value(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(KEY_COLUMN, self.key.clone(), false),
            Field::new(VALUE_COLUMN, self.value.clone(), false),
        ]))
    }
}

/// Which phase a task belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    Map,
    Reduce,
}

/// What a job may know about the task it runs in.
#[derive(Debug, Clone)]
pub struct TaskInfo {
    /// The attempt id, e.g. `job-000042/m-00017/a-2`.
    pub attempt: String,
    pub kind: TaskKind,
    /// The reduce partition (reduce tasks only).
    pub partition: Option<u32>,
}

/// A key/value batch grouped by key, with the bounds of each run of equal
/// keys: group `i` is rows `bounds[i]..bounds[i + 1]`. A reduce sees the
/// groups in key order; a combine may see them in any order.
#[derive(Debug, Clone, Copy)]
pub struct KeyGroups<'a> {
    batch: &'a RecordBatch,
    bounds: &'a [usize],
}

impl<'a> KeyGroups<'a> {
    /// `bounds` starts at 0, rises strictly, and ends at the batch's row count.
    pub fn new(batch: &'a RecordBatch, bounds: &'a [usize]) -> Self {
        assert!(
            batch.num_columns() == 2,
            "key/value batch must have two columns"
        );
        assert!(
            bounds.first() == Some(&0) && bounds.last() == Some(&batch.num_rows()),
            "group bounds must cover the batch"
        );
        KeyGroups { batch, bounds }
    }

    /// Like [`KeyGroups::new`], for bounds from elsewhere (another
    /// process, a plugin): an error instead of a panic when they are wrong.
    pub fn try_new(batch: &'a RecordBatch, bounds: &'a [usize]) -> Result<Self, JobError> {
        let valid = batch.num_columns() == 2
            && bounds.first() == Some(&0)
            && bounds.last() == Some(&batch.num_rows())
            && bounds.windows(2).all(|w| w[0] < w[1]);
        if !valid {
            return Err(JobError::job(
                "malformed key groups: bounds must rise from 0 to the row count of a key/value batch",
            ));
        }
        Ok(KeyGroups { batch, bounds })
    }

    pub fn batch(&self) -> &'a RecordBatch {
        self.batch
    }

    pub fn keys(&self) -> &'a ArrayRef {
        self.batch.column(0)
    }

    pub fn values(&self) -> &'a ArrayRef {
        self.batch.column(1)
    }

    pub fn len(&self) -> usize {
        self.bounds.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The group starts, then the row count.
    pub fn bounds(&self) -> &'a [usize] {
        self.bounds
    }

    pub fn group(&self, index: usize) -> Range<usize> {
        self.bounds[index]..self.bounds[index + 1]
    }

    /// The first key/value row of each group.
    pub fn first_rows(&self) -> Result<RecordBatch, JobError> {
        let starts: UInt32Array = self.bounds[..self.len()]
            .iter()
            .map(|&start| start as u32)
            .collect();
        take_record_batch(self.batch, &starts).map_err(JobError::arrow("taking group keys"))
    }
}

/// A job as the engine runs it. Built from a [`crate::Job`] by
/// [`crate::record_runtime`] or from a [`crate::BatchJob`] by
/// [`crate::batch_runtime`].
pub trait JobRuntime: Send + Sync {
    fn schema(&self) -> &JobSchema;

    /// Called once per task before any data, on the task's thread.
    fn start_task(&self, task: &TaskInfo) -> Result<(), JobError>;

    /// A mapper for one share of a map task's input. The engine runs
    /// several per task in parallel; for a job with a combiner it keeps
    /// each for many batches, in a fixed order, and finishes it when the
    /// input ends or it has mapped its share of the task's memory.
    fn mapper(&self) -> Box<dyn Mapper + '_>;

    /// Folds each group of a grouped key/value batch into one key/value
    /// row (groups in any order). Called only when [`JobSchema::combiner`]
    /// is true.
    fn combine(&self, groups: KeyGroups<'_>) -> Result<RecordBatch, JobError>;

    /// Reduces each group of a sorted key/value batch into output rows,
    /// adding to the task's user `counters`.
    fn reduce(
        &self,
        groups: KeyGroups<'_>,
        counters: &mut Counters,
    ) -> Result<RecordBatch, JobError>;
}

/// Maps input batches of one share of a map task into key/value output.
pub trait Mapper: Send {
    fn map(&mut self, input: &RecordBatch) -> Result<(), JobError>;
    /// The key/value batch of everything mapped (combined, if the job has a
    /// combiner and maps in a hash table), and the user counters.
    fn finish(self: Box<Self>) -> Result<(RecordBatch, Counters), JobError>;
}

/// A mapper with a handle on its job, so it can outlive the borrow it was
/// made from: the engine keeps one across the pieces of a map task, and a
/// plugin keeps one behind a C handle.
pub struct OwnedMapper {
    // Declared before `job`, so dropped before it.
    mapper: Box<dyn Mapper + 'static>,
    job: Arc<dyn JobRuntime>,
}

impl OwnedMapper {
    pub fn new(job: Arc<dyn JobRuntime>) -> OwnedMapper {
        let mapper = job.mapper();
        // SAFETY: the mapper borrows the runtime inside the `Arc`, which
        // never moves, and which `job` keeps alive until the mapper is gone:
        // the fields drop in order, and `finish` drops the job after the
        // mapper.
        #[allow(unsafe_code)]
        let mapper: Box<dyn Mapper + 'static> = unsafe { std::mem::transmute(mapper) };
        OwnedMapper { mapper, job }
    }
}

impl Mapper for OwnedMapper {
    fn map(&mut self, input: &RecordBatch) -> Result<(), JobError> {
        self.mapper.map(input)
    }

    fn finish(self: Box<Self>) -> Result<(RecordBatch, Counters), JobError> {
        let OwnedMapper { mapper, job } = *self;
        let finished = mapper.finish();
        drop(job);
        finished
    }
}

/// A job under its name: how `harrow run NAME` and the worker find it.
#[derive(Clone, Copy)]
pub struct JobDefinition {
    pub name: &'static str,
    pub summary: &'static str,
    pub args: &'static [ArgSpec],
    pub create: fn(&JobArgs) -> Result<Arc<dyn JobRuntime>, JobError>,
}

impl JobDefinition {
    /// Checks the arguments against the declared ones and builds the job.
    /// Fails when the input lacks a column the job reads.
    pub fn instantiate(&self, args: &JobArgs) -> Result<Arc<dyn JobRuntime>, JobError> {
        args.check(self.name, self.args)?;
        let job = (self.create)(args)?;
        let input = args.input_schema();
        let missing: Vec<String> = job
            .schema()
            .input_columns
            .iter()
            .flatten()
            .filter(|column| input.field_with_name(column).is_err())
            .cloned()
            .collect();
        if !missing.is_empty() {
            // A line-reading job over a table format: say how to read lines.
            let hint = if missing.iter().any(|c| c == crate::LINE_COLUMN) {
                "; --input-format text reads any file as lines".to_string()
            } else {
                String::new()
            };
            return Err(JobError::InputColumns {
                missing: missing.join(", "),
                available: crate::table::column_names(input),
                hint,
            });
        }
        Ok(job)
    }
}

impl fmt::Debug for JobDefinition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobDefinition")
            .field("name", &self.name)
            .field("args", &self.args)
            .finish()
    }
}
