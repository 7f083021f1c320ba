//! The plugin boundary: a small, versioned C ABI that a job crate built as
//! a `cdylib` exports through [`export_plugin!`](crate::export_plugin), and
//! that the engine's plugin host loads.
//!
//! Only C types cross it: function pointers, byte slices, an error buffer
//! the caller owns, and record batches through Arrow's C Data interface
//! (`FFI_ArrowArray`/`FFI_ArrowSchema`, a batch travelling as a struct
//! array). No Rust trait objects, allocations or panics cross: every entry
//! point catches panics and reports them as an error message, and memory is
//! freed by whoever allocated it (the C Data interface's release callbacks).
//! That keeps a plugin built against another Arrow release, or another
//! compiler, working.
//!
//! A library is checked in two steps: `harrow_plugin_abi_version()` must
//! return [`ABI_VERSION`], and only then is `harrow_plugin_v1()` called for
//! the [`PluginV1`] table.
#![allow(unsafe_code)]

mod entry;

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use arrow::array::{Array, RecordBatch, StringArray, StructArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema};

use crate::{Counters, GeneratedInput, JobDefinition, JobSchema, Partitioning};

/// The ABI version this SDK speaks. Bumped on any change to [`PluginV1`]
/// or to what its functions mean.
pub const ABI_VERSION: u32 = 1;
/// The symbol returning the ABI version (`extern "C" fn() -> u32`).
pub const ABI_VERSION_SYMBOL: &str = "harrow_plugin_abi_version";
/// The symbol returning the version 1 table (`extern "C" fn() -> PluginV1`).
pub const TABLE_SYMBOL: &str = "harrow_plugin_v1";
/// The SDK version, as a NUL-terminated string.
const SDK_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// Metadata key on the job schema: `"true"` when the job has a combiner.
pub const COMBINER_METADATA_KEY: &str = "harrow.combiner";
/// Metadata key on the job schema: `"true"` when the job reads every input
/// column (its `input` field is then empty).
pub const ALL_COLUMNS_METADATA_KEY: &str = "harrow.all_columns";
/// Job schema metadata: `true` when the job asks for total-order partitioning.
pub const TOTAL_ORDER_METADATA_KEY: &str = "harrow.total_order";
/// Job schema metadata: `ROWS/ROWS_PER_TASK` when the job generates its input.
pub const GENERATED_METADATA_KEY: &str = "harrow.generated";

/// A status returned by every fallible entry point.
pub const OK: i32 = 0;
pub const FAILED: i32 = 1;

/// Where an entry point writes its error message: a buffer the caller owns.
/// The callee copies at most `capacity` bytes of UTF-8 (cut at a character
/// boundary, NUL bytes escaped as `\0`) and sets `len`.
#[repr(C)]
#[derive(Debug)]
pub struct ErrorBuf {
    pub data: *mut u8,
    pub capacity: usize,
    pub len: usize,
}

/// Log levels passed to [`LogFn`]: 1 error … 5 trace, as `log::Level`.
pub type LogFn = unsafe extern "C" fn(
    level: u32,
    target: *const u8,
    target_len: usize,
    message: *const u8,
    message_len: usize,
);

/// The version 1 function table. Handles (`job`, `mapper`) are opaque
/// pointers owned by the plugin; the caller frees them with `drop_job` and
/// `drop_mapper` (`finish_mapper` consumes its mapper), every mapper before
/// its job. Batches passed in are moved (the callee takes the
/// `FFI_ArrowArray` and leaves a released one); batches passed out are
/// written to caller-provided empty structs.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PluginV1 {
    /// The SDK version the plugin was built with, NUL-terminated.
    pub sdk_version: *const c_char,
    /// Whether the plugin was built with `panic = "unwind"`. With
    /// `panic = "abort"` a panic in job code would end the host process
    /// instead of failing the attempt, so such plugins are refused.
    pub panic_unwinds: bool,
    pub context: *const c_void,
    /// Routes the plugin's `log` records to `log` at up to `max_level`.
    pub init_logging: unsafe extern "C" fn(log: LogFn, max_level: u32),
    /// Builds job `name` with `args` (a batch of `name`, `value` strings)
    /// for input with `input_schema`; writes the job handle and its schema
    /// (see [`schema_to_ffi`]).
    pub create: unsafe extern "C" fn(
        context: *const c_void,
        name: *const u8,
        name_len: usize,
        args_array: *mut FFI_ArrowArray,
        args_schema: *const FFI_ArrowSchema,
        input_schema: *const FFI_ArrowSchema,
        job_out: *mut *mut c_void,
        schema_out: *mut FFI_ArrowSchema,
        error: *mut ErrorBuf,
    ) -> i32,
    pub drop_job: unsafe extern "C" fn(job: *mut c_void),
    /// `kind`: 0 map, 1 reduce; `partition`: -1 for none.
    pub start_task: unsafe extern "C" fn(
        job: *mut c_void,
        attempt: *const u8,
        attempt_len: usize,
        kind: u32,
        partition: i64,
        error: *mut ErrorBuf,
    ) -> i32,
    pub new_mapper: unsafe extern "C" fn(
        job: *mut c_void,
        mapper_out: *mut *mut c_void,
        error: *mut ErrorBuf,
    ) -> i32,
    pub map: unsafe extern "C" fn(
        mapper: *mut c_void,
        array: *mut FFI_ArrowArray,
        schema: *const FFI_ArrowSchema,
        error: *mut ErrorBuf,
    ) -> i32,
    /// Consumes the mapper, success or not.
    pub finish_mapper: unsafe extern "C" fn(
        mapper: *mut c_void,
        out: *mut FfiBatch,
        counters: *mut FfiBatch,
        error: *mut ErrorBuf,
    ) -> i32,
    pub drop_mapper: unsafe extern "C" fn(mapper: *mut c_void),
    pub combine: unsafe extern "C" fn(
        job: *mut c_void,
        groups: *mut FfiGroups,
        out: *mut FfiBatch,
        error: *mut ErrorBuf,
    ) -> i32,
    pub reduce: unsafe extern "C" fn(
        job: *mut c_void,
        groups: *mut FfiGroups,
        out: *mut FfiBatch,
        counters: *mut FfiBatch,
        error: *mut ErrorBuf,
    ) -> i32,
}

// SAFETY: the table holds function pointers and pointers to immutable
// statics of the plugin, which is never unloaded while the table is used.
unsafe impl Send for PluginV1 {}
unsafe impl Sync for PluginV1 {}

/// A record batch as a struct array through the C Data interface.
#[repr(C)]
#[derive(Debug)]
pub struct FfiBatch {
    pub array: FFI_ArrowArray,
    pub schema: FFI_ArrowSchema,
}

impl FfiBatch {
    pub fn empty() -> Self {
        FfiBatch {
            array: FFI_ArrowArray::empty(),
            schema: FFI_ArrowSchema::empty(),
        }
    }

    /// Exports `batch`, its schema metadata included.
    pub fn export(batch: &RecordBatch) -> Result<Self, ArrowError> {
        let schema = FFI_ArrowSchema::try_from(batch.schema().as_ref())?;
        let array = FFI_ArrowArray::new(&StructArray::from(batch.clone()).into_data());
        Ok(FfiBatch { array, schema })
    }

    /// Imports the batch, taking ownership of the array.
    ///
    /// # Safety
    /// `self` must hold a valid exported array and schema.
    pub unsafe fn import(self) -> Result<RecordBatch, ArrowError> {
        // SAFETY: as the caller promises.
        unsafe { import_batch(self.array, &self.schema) }
    }
}

/// Imports a batch exported as a struct array, taking ownership of `array`.
///
/// # Safety
/// `array` and `schema` must be a valid exported struct array and its schema.
pub unsafe fn import_batch(
    array: FFI_ArrowArray,
    schema: &FFI_ArrowSchema,
) -> Result<RecordBatch, ArrowError> {
    let batch_schema = Arc::new(Schema::try_from(schema)?);
    // SAFETY: the caller promises a valid C Data array and schema.
    let data = unsafe { arrow::ffi::from_ffi(array, schema)? };
    let columns = StructArray::from(data).columns().to_vec();
    RecordBatch::try_new(batch_schema, columns)
}

/// A sorted key/value batch and the bounds of its groups (see
/// [`KeyGroups::new`]).
#[repr(C)]
#[derive(Debug)]
pub struct FfiGroups {
    pub batch: FfiBatch,
    pub bounds: *const u64,
    pub bounds_len: usize,
}

/// The jobs a plugin exports; built by [`export_plugin!`](crate::export_plugin).
#[derive(Debug)]
pub struct Exports {
    pub definitions: &'static [JobDefinition],
    pub panic_unwinds: bool,
}

/// The table for `exports`; called by the code [`export_plugin!`](crate::export_plugin)
/// generates.
pub fn table(exports: &'static Exports) -> PluginV1 {
    PluginV1 {
        sdk_version: SDK_VERSION.as_ptr().cast(),
        panic_unwinds: exports.panic_unwinds,
        context: (exports as *const Exports).cast(),
        init_logging: entry::init_logging,
        create: entry::create,
        drop_job: entry::drop_job,
        start_task: entry::start_task,
        new_mapper: entry::new_mapper,
        map: entry::map,
        finish_mapper: entry::finish_mapper,
        drop_mapper: entry::drop_mapper,
        combine: entry::combine,
        reduce: entry::reduce,
    }
}

/// Exports job definitions from a `cdylib` as a Harrow plugin:
///
/// ```ignore
/// harrow_sdk::export_plugin!(crate::DEFINITION);
/// ```
///
/// Use it once per library. The crate must be built with
/// `crate-type = ["cdylib", "rlib"]` and the default `panic = "unwind"`.
#[macro_export]
macro_rules! export_plugin {
    ($($definition:expr),+ $(,)?) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn harrow_plugin_abi_version() -> u32 {
            $crate::plugin::ABI_VERSION
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn harrow_plugin_v1() -> $crate::plugin::PluginV1 {
            static EXPORTS: $crate::plugin::Exports = $crate::plugin::Exports {
                definitions: &[$($definition),+],
                panic_unwinds: cfg!(panic = "unwind"),
            };
            $crate::plugin::table(&EXPORTS)
        }
    };
}

/// The job schema as one Arrow schema: fields `key` and `value` (the map
/// output types), `output` (a struct of the output columns) and `input` (a
/// struct naming the input columns read), with the combiner and the
/// all-columns flag in the metadata.
pub fn schema_to_ffi(schema: &JobSchema) -> Schema {
    let input = schema
        .input_columns
        .iter()
        .flatten()
        .map(|column| Field::new(column, DataType::Null, true))
        .collect::<Vec<_>>();
    Schema::new(vec![
        Field::new(crate::KEY_COLUMN, schema.key.clone(), false),
        Field::new(crate::VALUE_COLUMN, schema.value.clone(), false),
        Field::new(
            "output",
            DataType::Struct(schema.output.fields().clone()),
            false,
        ),
        Field::new("input", DataType::Struct(input.into()), false),
    ])
    .with_metadata(
        [
            (COMBINER_METADATA_KEY, schema.combiner),
            (ALL_COLUMNS_METADATA_KEY, schema.input_columns.is_none()),
            (
                TOTAL_ORDER_METADATA_KEY,
                schema.partitioning == Partitioning::TotalOrder,
            ),
        ]
        .into_iter()
        .map(|(key, flag)| (key.to_string(), flag.to_string()))
        .chain(schema.generated.map(|g| {
            (
                GENERATED_METADATA_KEY.to_string(),
                format!("{}/{}", g.rows, g.rows_per_task),
            )
        }))
        .collect::<std::collections::HashMap<String, String>>(),
    )
}

/// The inverse of [`schema_to_ffi`].
pub fn schema_from_ffi(schema: &Schema) -> Result<JobSchema, ArrowError> {
    let field = |name: &str| schema.field_with_name(name);
    let flag = |key: &str| schema.metadata().get(key).is_some_and(|v| v == "true");
    let struct_fields = |name: &str| match field(name)?.data_type() {
        DataType::Struct(fields) => Ok(fields.clone()),
        other => Err(ArrowError::SchemaError(format!(
            "job schema field `{name}` is {other}, not a struct"
        ))),
    };
    let input = struct_fields("input")?;
    Ok(JobSchema {
        key: field(crate::KEY_COLUMN)?.data_type().clone(),
        value: field(crate::VALUE_COLUMN)?.data_type().clone(),
        output: SchemaRef::new(Schema::new(struct_fields("output")?)),
        combiner: flag(COMBINER_METADATA_KEY),
        input_columns: (!flag(ALL_COLUMNS_METADATA_KEY))
            .then(|| input.iter().map(|f| f.name().clone()).collect()),
        partitioning: if flag(TOTAL_ORDER_METADATA_KEY) {
            Partitioning::TotalOrder
        } else {
            Partitioning::Hash
        },
        generated: match schema.metadata().get(GENERATED_METADATA_KEY) {
            None => None,
            Some(text) => Some(parse_generated(text).ok_or_else(|| {
                ArrowError::SchemaError(format!("malformed generated input `{text}`"))
            })?),
        },
    })
}

fn parse_generated(text: &str) -> Option<GeneratedInput> {
    let (rows, per_task) = text.split_once('/')?;
    Some(GeneratedInput {
        rows: rows.parse().ok()?,
        rows_per_task: per_task.parse().ok().filter(|&n| n > 0)?,
    })
}

/// Counters as a batch of `name` (string) and `value` (u64).
pub fn counters_to_batch(counters: &Counters) -> Result<RecordBatch, ArrowError> {
    let (names, values): (Vec<&str>, Vec<u64>) = counters.iter().unzip();
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("value", DataType::UInt64, false),
        ])),
        vec![
            Arc::new(StringArray::from(names)),
            Arc::new(UInt64Array::from(values)),
        ],
    )
}

/// A batch of `name`, `value` strings for job arguments.
pub fn args_to_batch<'a>(
    args: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<RecordBatch, ArrowError> {
    let (names, values): (Vec<&str>, Vec<&str>) = args.into_iter().unzip();
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("value", DataType::Utf8, false),
        ])),
        vec![
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(values)),
        ],
    )
}

/// The inverse of [`counters_to_batch`].
pub fn counters_from_batch(batch: &RecordBatch) -> Result<Counters, ArrowError> {
    let column = |index: usize| batch.columns().get(index).map(|c| c.as_any());
    let names = column(0).and_then(|c| c.downcast_ref::<StringArray>());
    let values = column(1).and_then(|c| c.downcast_ref::<UInt64Array>());
    let (Some(names), Some(values)) = (names, values) else {
        return Err(ArrowError::SchemaError(
            "counters batch must be (name: Utf8, value: UInt64)".to_string(),
        ));
    };
    Ok(names
        .iter()
        .zip(values.iter())
        .map(|(n, v)| (n.unwrap_or(""), v.unwrap_or(0)))
        .collect())
}

/// Writes `message` into `error` as [`ErrorBuf`] describes.
///
/// # Safety
/// `error` is null or points to a valid buffer of `capacity` bytes.
pub unsafe fn write_error(error: *mut ErrorBuf, message: &str) {
    // SAFETY: the caller passes a valid buffer or null.
    let Some(error) = (unsafe { error.as_mut() }) else {
        return;
    };
    let escaped = message.replace('\0', "\\0");
    let mut len = escaped.len().min(error.capacity);
    while !escaped.is_char_boundary(len) {
        len -= 1;
    }
    // SAFETY: `data` holds `capacity` bytes and `len <= capacity`.
    unsafe { std::ptr::copy_nonoverlapping(escaped.as_ptr(), error.data, len) };
    error.len = len;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_schema_survives_the_ffi_encoding() {
        let schema = JobSchema {
            key: DataType::Utf8,
            value: DataType::Int64,
            output: Arc::new(Schema::new(vec![Field::new("n", DataType::Float64, true)])),
            combiner: true,
            input_columns: Some(vec!["a".into(), "b".into()]),
            partitioning: crate::Partitioning::Hash,
            generated: None,
        };
        let back = schema_from_ffi(&schema_to_ffi(&schema)).unwrap();
        assert_eq!(back.key, schema.key);
        assert_eq!(back.value, schema.value);
        assert_eq!(back.output, schema.output);
        assert!(back.combiner);
        assert_eq!(back.input_columns, schema.input_columns);
        let all = JobSchema {
            input_columns: None,
            partitioning: crate::Partitioning::Hash,
            generated: None,
            combiner: false,
            ..schema
        };
        let back = schema_from_ffi(&schema_to_ffi(&all)).unwrap();
        assert_eq!(back.input_columns, None);
        assert!(!back.combiner);
        assert_eq!(back.partitioning, Partitioning::Hash);
        assert_eq!(back.generated, None);
        let sorting = JobSchema {
            partitioning: Partitioning::TotalOrder,
            generated: Some(GeneratedInput {
                rows: 1 << 40,
                rows_per_task: 7,
            }),
            ..all
        };
        let back = schema_from_ffi(&schema_to_ffi(&sorting)).unwrap();
        assert_eq!(back.partitioning, Partitioning::TotalOrder);
        assert_eq!(back.generated, sorting.generated);
    }

    #[test]
    fn errors_escape_nul_and_cut_at_a_character_boundary() {
        let mut bytes = [0u8; 5];
        let mut error = ErrorBuf {
            data: bytes.as_mut_ptr(),
            capacity: bytes.len(),
            len: 0,
        };
        // SAFETY: a valid buffer of `capacity` bytes.
        unsafe { write_error(&mut error, "a\0bé!") };
        assert_eq!(&bytes[..error.len], "a\\0b".as_bytes());
    }

    #[test]
    fn batches_and_counters_cross_the_c_data_interface() {
        let counters: Counters = [("bad", 3u64), ("ok", 9)].into_iter().collect();
        let batch = counters_to_batch(&counters).unwrap();
        let exported = FfiBatch::export(&batch).unwrap();
        // SAFETY: just exported.
        let imported = unsafe { exported.import() }.unwrap();
        assert_eq!(imported, batch);
        assert_eq!(counters_from_batch(&imported).unwrap(), counters);
    }
}
