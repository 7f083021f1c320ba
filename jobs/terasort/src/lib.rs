//! The TeraSort benchmark as three built-in jobs, over records in the
//! layout of `gensort -a` (the ASCII form of the Sort Benchmark's records):
//! 100 bytes, a 10-byte key of printable characters, two spaces, the row
//! number as 32 hex digits, two spaces, 52 bytes of filler, `\r\n`.
//!
//! - `teragen --arg rows=N` writes N records with pseudo-random keys (a
//!   pure function of the row number, so the same N gives the same records
//!   anywhere). It reads no input: the engine feeds it row numbers.
//! - `terasort` sorts records by key. Its partitioning is total-order: the
//!   engine samples the input at submission and cuts the key space at the
//!   sample's quantiles, so the `part-r-*` files read in order are sorted.
//! - `teravalidate` checks that its input, read file by file in name order,
//!   is sorted by key, and reports the record count and a checksum (the sum
//!   of every record's CRC32C, which does not depend on order: teragen's
//!   counters and teravalidate over the sorted output must agree).

use std::sync::Arc;

use harrow_sdk::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryBuilder, RecordBatch, StringArray, StringBuilder,
    StructArray, UInt64Array,
};
use harrow_sdk::arrow::datatypes::{DataType, Field, Fields, Schema, UInt64Type};
use harrow_sdk::{
    ArgSpec, BatchJob, Counters, GeneratedInput, JobArgs, JobDefinition, JobError, JobSchema,
    KeyGroups, Partitioning, ROW_COLUMN, TextBatch,
};

/// Bytes of a record, line end included.
pub const RECORD_BYTES: usize = 100;
/// Bytes of a record's key.
pub const KEY_BYTES: usize = 10;
/// Bytes of a record as a line, without its `\r\n`.
pub const LINE_BYTES: usize = RECORD_BYTES - 2;

/// Records per teragen map task unless `rows_per_task` says otherwise:
/// about 100 MiB of output.
const DEFAULT_ROWS_PER_TASK: u64 = 1 << 20;

pub const TERAGEN: JobDefinition = JobDefinition {
    name: "teragen",
    summary: "generates TeraSort records (gensort -a layout); no --input",
    args: &[
        ArgSpec {
            name: "rows",
            help: "how many 100-byte records to generate",
            required: true,
        },
        ArgSpec {
            name: "rows_per_task",
            help: "records per map task (default 1048576)",
            required: false,
        },
    ],
    create: |args: &JobArgs| Ok(harrow_sdk::batch_runtime(TeraGen::new(args)?)),
};

pub const TERASORT: JobDefinition = JobDefinition {
    name: "terasort",
    summary: "sorts TeraSort records by their 10-byte key into globally ordered part files",
    args: &[],
    create: |_: &JobArgs| Ok(harrow_sdk::batch_runtime(TeraSort)),
};

pub const TERAVALIDATE: JobDefinition = JobDefinition {
    name: "teravalidate",
    summary: "checks TeraSort records are sorted across files; reports count and checksum",
    args: &[ArgSpec {
        name: "require_sorted",
        help: "fail the job when the records are out of order (default true)",
        required: false,
    }],
    create: |args: &JobArgs| Ok(harrow_sdk::batch_runtime(TeraValidate::new(args)?)),
};

/// The one-column output of teragen and terasort: a record without its
/// `\n` (the text output writer adds it back), so part files hold records
/// of exactly [`RECORD_BYTES`].
fn record_output() -> Arc<Schema> {
    Arc::new(Schema::new(vec![Field::new(
        "record",
        DataType::Utf8,
        false,
    )]))
}

/// splitmix64's finalizer: a bijection that scatters nearby numbers.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Appends record `row` as a line (no `\r\n`) to `line`.
pub fn record_line(row: u64, line: &mut String) {
    let mut key = (u128::from(mix(row ^ 0x7465_7261_6765_6e31)) << 64)
        | u128::from(mix(row.wrapping_add(0x9e37_79b9_7f4a_7c15)));
    for _ in 0..KEY_BYTES {
        line.push(char::from(b' ' + (key % 95) as u8));
        key /= 95;
    }
    line.push_str("  ");
    line.push_str(&format!("{row:032X}"));
    line.push_str("  ");
    let filler = mix(!row);
    for group in 0..13 {
        let digit = char::from_digit(((filler >> (4 * group)) & 0xf) as u32, 16)
            .expect("a nibble is a hex digit")
            .to_ascii_uppercase();
        for _ in 0..4 {
            line.push(digit);
        }
    }
}

/// The checksum of one record: CRC32C of its line.
pub fn record_checksum(line: &[u8]) -> u64 {
    u64::from(crc32c::crc32c(line))
}

/// `teragen`: row numbers in, records out, keyed by row number.
#[derive(Debug, Clone)]
pub struct TeraGen {
    input: GeneratedInput,
}

impl TeraGen {
    pub fn new(args: &JobArgs) -> Result<Self, JobError> {
        let rows: u64 = args.require("rows")?;
        let rows_per_task: u64 = args.get_or("rows_per_task", DEFAULT_ROWS_PER_TASK)?;
        if rows_per_task == 0 {
            return Err(JobError::InvalidArgument {
                name: "rows_per_task".into(),
                value: "0".into(),
                reason: "a map task needs at least one row".into(),
            });
        }
        Ok(TeraGen {
            input: GeneratedInput {
                rows,
                rows_per_task,
            },
        })
    }
}

impl BatchJob for TeraGen {
    fn schema(&self) -> JobSchema {
        JobSchema {
            key: DataType::UInt64,
            value: DataType::Utf8,
            output: record_output(),
            combiner: false,
            input_columns: Some(vec![ROW_COLUMN.to_string()]),
            partitioning: Partitioning::Hash,
            generated: Some(self.input),
        }
    }

    fn map_batch(
        &self,
        input: &RecordBatch,
        counters: &mut Counters,
    ) -> Result<RecordBatch, JobError> {
        let rows = input
            .column_by_name(ROW_COLUMN)
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or_else(|| JobError::job("teragen reads generated row numbers"))?;
        let mut records = StringBuilder::with_capacity(rows.len(), rows.len() * (LINE_BYTES + 1));
        let mut line = String::with_capacity(LINE_BYTES + 1);
        let mut checksum = 0u64;
        for &row in rows.values() {
            line.clear();
            record_line(row, &mut line);
            checksum += record_checksum(line.as_bytes());
            line.push('\r');
            records.append_value(&line);
        }
        counters.counter("records").add(rows.len() as u64);
        counters.counter("checksum").add(checksum);
        let keys: ArrayRef = Arc::new(rows.clone());
        RecordBatch::try_new(
            self.schema().key_value(),
            vec![keys, Arc::new(records.finish())],
        )
        .map_err(JobError::arrow("teragen output"))
    }

    fn reduce_groups(
        &self,
        groups: KeyGroups<'_>,
        _counters: &mut Counters,
    ) -> Result<RecordBatch, JobError> {
        RecordBatch::try_new(record_output(), vec![groups.values().clone()])
            .map_err(JobError::arrow("teragen output"))
    }
}

/// `terasort`: lines in, keyed by their first [`KEY_BYTES`] bytes.
#[derive(Debug, Clone, Copy)]
pub struct TeraSort;

/// A record whose line is too short to hold a key, named by place.
fn short_record(file: &str, offset: u64, len: usize) -> JobError {
    JobError::job(format!(
        "a record of {len} bytes has no {KEY_BYTES}-byte key (TeraSort records are {RECORD_BYTES} bytes)"
    ))
    .at_record(file, offset)
}

impl BatchJob for TeraSort {
    fn schema(&self) -> JobSchema {
        JobSchema {
            partitioning: Partitioning::TotalOrder,
            ..JobSchema::over_lines(DataType::Binary, DataType::Utf8, record_output())
        }
    }

    fn map_batch(
        &self,
        input: &RecordBatch,
        _counters: &mut Counters,
    ) -> Result<RecordBatch, JobError> {
        let text = TextBatch::new(input)?;
        let lines = text.lines();
        let n = lines.len();
        let mut keys = BinaryBuilder::with_capacity(n, n * KEY_BYTES);
        let mut rests = StringBuilder::with_capacity(n, n * (LINE_BYTES - KEY_BYTES));
        for (row, line) in lines.iter().enumerate() {
            let line = line.unwrap_or_default();
            if line.len() < KEY_BYTES || !line.is_char_boundary(KEY_BYTES) {
                return Err(short_record(
                    text.file(),
                    text.offsets().value(row),
                    line.len(),
                ));
            }
            let (key, rest) = line.split_at(KEY_BYTES);
            keys.append_value(key);
            rests.append_value(rest);
        }
        RecordBatch::try_new(
            self.schema().key_value(),
            vec![Arc::new(keys.finish()), Arc::new(rests.finish())],
        )
        .map_err(JobError::arrow("terasort output"))
    }

    fn reduce_groups(
        &self,
        groups: KeyGroups<'_>,
        _counters: &mut Counters,
    ) -> Result<RecordBatch, JobError> {
        let keys = groups.keys().as_binary::<i32>();
        let rests = groups.values().as_string::<i32>();
        let n = keys.len();
        let mut records = StringBuilder::with_capacity(n, n * (LINE_BYTES + 1));
        let mut line = Vec::with_capacity(LINE_BYTES + 1);
        for (key, rest) in keys.iter().zip(rests.iter()) {
            line.clear();
            line.extend_from_slice(key.unwrap_or_default());
            line.extend_from_slice(rest.unwrap_or_default().as_bytes());
            line.push(b'\r');
            // The key is the start of a valid UTF-8 line cut at a character
            // boundary, the rest its remainder.
            records.append_value(
                std::str::from_utf8(&line).map_err(|e| JobError::job(e.to_string()))?,
            );
        }
        RecordBatch::try_new(record_output(), vec![Arc::new(records.finish())])
            .map_err(JobError::arrow("terasort output"))
    }
}

/// `teravalidate`: one summary row per input batch, all under one key, so
/// one reduce sees them all and checks the order between them.
#[derive(Debug, Clone)]
pub struct TeraValidate {
    require_sorted: bool,
}

impl TeraValidate {
    pub fn new(args: &JobArgs) -> Result<Self, JobError> {
        Ok(TeraValidate {
            require_sorted: args.get_or("require_sorted", true)?,
        })
    }

    fn summary_fields() -> Fields {
        Fields::from(vec![
            Field::new("file", DataType::Utf8, false),
            Field::new("offset", DataType::UInt64, false),
            Field::new("first_key", DataType::Binary, false),
            Field::new("last_key", DataType::Binary, false),
            Field::new("records", DataType::UInt64, false),
            Field::new("checksum", DataType::UInt64, false),
            // Where the first record sorting below its predecessor is.
            Field::new("unsorted_at", DataType::UInt64, true),
        ])
    }
}

/// The batch summaries, in file and offset order.
struct Summary<'a> {
    file: &'a str,
    offset: u64,
    first_key: &'a [u8],
    last_key: &'a [u8],
    unsorted_at: Option<u64>,
}

impl BatchJob for TeraValidate {
    fn schema(&self) -> JobSchema {
        JobSchema::over_lines(
            DataType::Utf8,
            DataType::Struct(Self::summary_fields()),
            Arc::new(Schema::new(vec![
                Field::new("name", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, false),
            ])),
        )
    }

    fn map_batch(
        &self,
        input: &RecordBatch,
        _counters: &mut Counters,
    ) -> Result<RecordBatch, JobError> {
        let text = TextBatch::new(input)?;
        if text.is_empty() {
            return RecordBatch::try_new_with_options(
                self.schema().key_value(),
                vec![
                    Arc::new(StringArray::new_null(0)),
                    harrow_sdk::arrow::array::new_empty_array(&self.schema().value),
                ],
                &Default::default(),
            )
            .map_err(JobError::arrow("teravalidate output"));
        }
        let lines = text.lines();
        let offsets = text.offsets();
        let mut checksum = 0u64;
        let mut unsorted_at = None;
        let mut previous: Option<&[u8]> = None;
        for (row, line) in lines.iter().enumerate() {
            let line = line.unwrap_or_default().as_bytes();
            if line.len() < KEY_BYTES {
                return Err(short_record(text.file(), offsets.value(row), line.len()));
            }
            checksum += record_checksum(line);
            let key = &line[..KEY_BYTES];
            if unsorted_at.is_none() && previous.is_some_and(|p| key < p) {
                unsorted_at = Some(offsets.value(row));
            }
            previous = Some(key);
        }
        let key_of = |row: usize| &lines.value(row).as_bytes()[..KEY_BYTES];
        let summary = StructArray::try_new(
            Self::summary_fields(),
            vec![
                Arc::new(StringArray::from(vec![text.file()])),
                Arc::new(UInt64Array::from(vec![offsets.value(0)])),
                Arc::new(BinaryArray::from(vec![key_of(0)])),
                Arc::new(BinaryArray::from(vec![key_of(lines.len() - 1)])),
                Arc::new(UInt64Array::from(vec![lines.len() as u64])),
                Arc::new(UInt64Array::from(vec![checksum])),
                Arc::new(UInt64Array::from(vec![unsorted_at])),
            ],
            None,
        )
        .map_err(JobError::arrow("teravalidate output"))?;
        RecordBatch::try_new(
            self.schema().key_value(),
            vec![Arc::new(StringArray::from(vec![""])), Arc::new(summary)],
        )
        .map_err(JobError::arrow("teravalidate output"))
    }

    fn reduce_groups(
        &self,
        groups: KeyGroups<'_>,
        counters: &mut Counters,
    ) -> Result<RecordBatch, JobError> {
        let summaries = groups.values().as_struct();
        let column = |i: usize| summaries.column(i);
        let files = column(0).as_string::<i32>();
        let offsets = column(1).as_primitive::<UInt64Type>();
        let first_keys = column(2).as_binary::<i32>();
        let last_keys = column(3).as_binary::<i32>();
        let records: u64 = column(4).as_primitive::<UInt64Type>().values().iter().sum();
        let checksum: u64 = column(5).as_primitive::<UInt64Type>().values().iter().sum();
        let unsorted = column(6).as_primitive::<UInt64Type>();
        let mut batches: Vec<Summary<'_>> = (0..summaries.len())
            .map(|i| Summary {
                file: files.value(i),
                offset: offsets.value(i),
                first_key: first_keys.value(i),
                last_key: last_keys.value(i),
                unsorted_at: unsorted.is_valid(i).then(|| unsorted.value(i)),
            })
            .collect();
        batches.sort_unstable_by(|a, b| (a.file, a.offset).cmp(&(b.file, b.offset)));
        let mut problem = None;
        for (i, batch) in batches.iter().enumerate() {
            if let Some(offset) = batch.unsorted_at {
                problem = Some(format!(
                    "{} at byte {offset}: the key sorts below the record's before it",
                    harrow_sdk::base_name(batch.file)
                ));
                break;
            }
            if let Some(before) = i.checked_sub(1).map(|j| &batches[j])
                && batch.first_key < before.last_key
            {
                problem = Some(format!(
                    "{} at byte {}: key {:?} sorts below key {:?} of the record before it (in {})",
                    harrow_sdk::base_name(batch.file),
                    batch.offset,
                    batch.first_key.escape_ascii().to_string(),
                    before.last_key.escape_ascii().to_string(),
                    harrow_sdk::base_name(before.file),
                ));
                break;
            }
        }
        counters.counter("records").add(records);
        counters.counter("checksum").add(checksum);
        if let (Some(problem), true) = (&problem, self.require_sorted) {
            return Err(JobError::job(format!("records are not sorted: {problem}")));
        }
        let names = StringArray::from(vec!["records", "checksum", "sorted"]);
        let values = StringArray::from(vec![
            records.to_string(),
            checksum.to_string(),
            match &problem {
                None => "true".to_string(),
                Some(problem) => format!("false: {problem}"),
            },
        ]);
        RecordBatch::try_new(
            self.schema().output,
            vec![Arc::new(names), Arc::new(values)],
        )
        .map_err(JobError::arrow("teravalidate output"))
    }
}

#[cfg(test)]
mod tests;
