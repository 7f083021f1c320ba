//! The plugin side of the ABI: the `extern "C"` entry points the table
//! of [`super::table`] points at. Each catches panics and reports every
//! failure through the caller's error buffer.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, RecordBatch, StringArray};
use arrow::datatypes::Schema;
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema};

use crate::{
    Counters, JobArgs, JobError, JobRuntime, KeyGroups, Mapper, OwnedMapper, TaskInfo, TaskKind,
    panic_message,
};

use super::{
    ErrorBuf, Exports, FAILED, FfiBatch, FfiGroups, LogFn, OK, counters_to_batch, import_batch,
    schema_to_ffi, write_error,
};

/// Runs an entry point's body: a panic or an error becomes [`FAILED`] with
/// its message in `error`.
fn guarded(error: *mut ErrorBuf, body: impl FnOnce() -> Result<(), JobError>) -> i32 {
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        Err(JobError::Panic {
            message: panic_message(panic.as_ref()),
        })
    });
    match outcome {
        Ok(()) => OK,
        Err(e) => {
            // SAFETY: the caller passes a valid error buffer.
            unsafe { write_error(error, &e.to_string()) };
            FAILED
        }
    }
}

/// Drops a value, swallowing a panic from its destructor (nothing may
/// unwind out of an `extern "C"` function).
fn drop_quietly<T>(value: T) {
    let _ = catch_unwind(AssertUnwindSafe(move || drop(value)));
}

/// # Safety
/// `ptr` points to `len` readable bytes (or `len` is 0).
unsafe fn str_from<'a>(ptr: *const u8, len: usize) -> Result<&'a str, JobError> {
    if len == 0 {
        return Ok("");
    }
    // SAFETY: the caller promises `len` readable bytes at `ptr`.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    std::str::from_utf8(bytes)
        .map_err(|e| JobError::job(format!("invalid UTF-8 across the plugin ABI: {e}")))
}

/// Moves the array out of `array`, leaving a released one, and imports it.
///
/// # Safety
/// `array` and `schema` point to a valid exported array and schema.
unsafe fn take_batch(
    array: *mut FFI_ArrowArray,
    schema: *const FFI_ArrowSchema,
) -> Result<RecordBatch, JobError> {
    // SAFETY: the caller hands over a valid array (taken, leaving a
    // released one) and lends the schema.
    unsafe { import_batch(std::ptr::replace(array, FFI_ArrowArray::empty()), &*schema) }
        .map_err(JobError::arrow("importing a batch into the plugin"))
}

/// # Safety
/// `out` points to a writable [`FfiBatch`].
unsafe fn put_batch(out: *mut FfiBatch, batch: &RecordBatch) -> Result<(), JobError> {
    let exported =
        FfiBatch::export(batch).map_err(JobError::arrow("exporting a batch from the plugin"))?;
    // SAFETY: the caller passes a writable, empty struct.
    unsafe { std::ptr::write(out, exported) };
    Ok(())
}

/// A job handle: the runtime behind an `Arc`, so mappers can hold it.
struct JobHandle(Arc<dyn JobRuntime>);

static LOGGER: OnceLock<FfiLogger> = OnceLock::new();

struct FfiLogger {
    log: LogFn,
}

impl log::Log for FfiLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        let target = record.target();
        // SAFETY: the host's callback takes byte slices valid for the call.
        unsafe {
            (self.log)(
                record.level() as u32,
                target.as_ptr(),
                target.len(),
                message.as_ptr(),
                message.len(),
            )
        };
    }

    fn flush(&self) {}
}

pub(super) unsafe extern "C" fn init_logging(log: LogFn, max_level: u32) {
    let _ = catch_unwind(|| {
        let logger = LOGGER.get_or_init(|| FfiLogger { log });
        // Fails when the plugin set a logger of its own; that one stays.
        if log::set_logger(logger).is_ok() {
            let level = match max_level {
                0 => log::LevelFilter::Off,
                1 => log::LevelFilter::Error,
                2 => log::LevelFilter::Warn,
                3 => log::LevelFilter::Info,
                4 => log::LevelFilter::Debug,
                _ => log::LevelFilter::Trace,
            };
            log::set_max_level(level);
        }
    });
}

#[allow(clippy::too_many_arguments)]
pub(super) unsafe extern "C" fn create(
    context: *const c_void,
    name: *const u8,
    name_len: usize,
    args_array: *mut FFI_ArrowArray,
    args_schema: *const FFI_ArrowSchema,
    input_schema: *const FFI_ArrowSchema,
    job_out: *mut *mut c_void,
    schema_out: *mut FFI_ArrowSchema,
    error: *mut ErrorBuf,
) -> i32 {
    guarded(error, || {
        // SAFETY: `context` is the `Exports` static `table` was built from.
        let exports = unsafe { &*context.cast::<Exports>() };
        // SAFETY: the caller passes valid arguments, as documented on the table.
        let name = unsafe { str_from(name, name_len)? };
        let args = unsafe { take_batch(args_array, args_schema)? };
        let input = unsafe { Schema::try_from(&*input_schema) }
            .map_err(JobError::arrow("importing the input schema"))?;
        let definition = exports
            .definitions
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = exports.definitions.iter().map(|d| d.name).collect();
                JobError::job(format!(
                    "the plugin has no job `{name}` (it exports: {})",
                    known.join(", ")
                ))
            })?;
        let pairs = arg_pairs(&args)?;
        let args = JobArgs::new(pairs).with_input_schema(Arc::new(input));
        let job = definition.instantiate(&args)?;
        let schema = FFI_ArrowSchema::try_from(&schema_to_ffi(job.schema()))
            .map_err(JobError::arrow("exporting the job schema"))?;
        // SAFETY: the caller passes writable out-pointers.
        unsafe {
            std::ptr::write(schema_out, schema);
            *job_out = Box::into_raw(Box::new(JobHandle(job))).cast();
        }
        Ok(())
    })
}

/// The `name`, `value` string pairs of an arguments batch.
fn arg_pairs(args: &RecordBatch) -> Result<std::collections::BTreeMap<String, String>, JobError> {
    let strings = |index: usize| {
        args.columns()
            .get(index)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| JobError::job("job arguments must be (name: Utf8, value: Utf8)"))
    };
    let (names, values) = (strings(0)?, strings(1)?);
    Ok(names
        .iter()
        .zip(values.iter())
        .map(|(n, v)| (n.unwrap_or("").to_string(), v.unwrap_or("").to_string()))
        .collect())
}

pub(super) unsafe extern "C" fn drop_job(job: *mut c_void) {
    if !job.is_null() {
        // SAFETY: `job` came from `create` and is dropped once.
        drop_quietly(unsafe { Box::from_raw(job.cast::<JobHandle>()) });
    }
}

/// # Safety
/// `job` came from `create` and was not dropped.
unsafe fn job_ref<'a>(job: *mut c_void) -> &'a Arc<dyn JobRuntime> {
    // SAFETY: as the caller promises.
    unsafe { &(*job.cast::<JobHandle>()).0 }
}

pub(super) unsafe extern "C" fn start_task(
    job: *mut c_void,
    attempt: *const u8,
    attempt_len: usize,
    kind: u32,
    partition: i64,
    error: *mut ErrorBuf,
) -> i32 {
    guarded(error, || {
        // SAFETY: valid arguments, as documented on the table.
        let (job, attempt) = unsafe { (job_ref(job), str_from(attempt, attempt_len)?) };
        job.start_task(&TaskInfo {
            attempt: attempt.to_string(),
            kind: if kind == 1 {
                TaskKind::Reduce
            } else {
                TaskKind::Map
            },
            partition: u32::try_from(partition).ok(),
        })
    })
}

pub(super) unsafe extern "C" fn new_mapper(
    job: *mut c_void,
    mapper_out: *mut *mut c_void,
    error: *mut ErrorBuf,
) -> i32 {
    guarded(error, || {
        // SAFETY: `job` is a live handle.
        let handle = OwnedMapper::new(unsafe { job_ref(job) }.clone());
        // SAFETY: the caller passes a writable out-pointer.
        unsafe { *mapper_out = Box::into_raw(Box::new(handle)).cast() };
        Ok(())
    })
}

pub(super) unsafe extern "C" fn map(
    mapper: *mut c_void,
    array: *mut FFI_ArrowArray,
    schema: *const FFI_ArrowSchema,
    error: *mut ErrorBuf,
) -> i32 {
    guarded(error, || {
        // SAFETY: a live mapper handle and a valid batch.
        let (handle, batch) = unsafe {
            (
                &mut *mapper.cast::<OwnedMapper>(),
                take_batch(array, schema)?,
            )
        };
        handle.map(&batch)
    })
}

pub(super) unsafe extern "C" fn finish_mapper(
    mapper: *mut c_void,
    out: *mut FfiBatch,
    counters: *mut FfiBatch,
    error: *mut ErrorBuf,
) -> i32 {
    guarded(error, || {
        // SAFETY: a live mapper handle, consumed here.
        let handle = unsafe { Box::from_raw(mapper.cast::<OwnedMapper>()) };
        let (batch, user) = handle.finish()?;
        let user = counters_to_batch(&user).map_err(JobError::arrow("exporting counters"))?;
        // SAFETY: writable out-pointers.
        unsafe {
            put_batch(out, &batch)?;
            put_batch(counters, &user)
        }
    })
}

pub(super) unsafe extern "C" fn drop_mapper(mapper: *mut c_void) {
    if !mapper.is_null() {
        // SAFETY: a live mapper handle, dropped once.
        drop_quietly(unsafe { Box::from_raw(mapper.cast::<OwnedMapper>()) });
    }
}

/// # Safety
/// `groups` points to valid groups, whose batch is taken.
unsafe fn take_groups<'a>(groups: *mut FfiGroups) -> Result<(RecordBatch, &'a [u64]), JobError> {
    // SAFETY: as the caller promises.
    unsafe {
        let groups = &mut *groups;
        let batch = take_batch(&mut groups.batch.array, &groups.batch.schema)?;
        let bounds = if groups.bounds_len == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(groups.bounds, groups.bounds_len)
        };
        Ok((batch, bounds))
    }
}

/// Runs `f` over the groups, checking the bounds.
fn with_groups<T>(
    batch: &RecordBatch,
    bounds: &[u64],
    f: impl FnOnce(KeyGroups<'_>) -> Result<T, JobError>,
) -> Result<T, JobError> {
    let bounds: Vec<usize> = bounds.iter().map(|&b| b as usize).collect();
    f(KeyGroups::try_new(batch, &bounds)?)
}

pub(super) unsafe extern "C" fn combine(
    job: *mut c_void,
    groups: *mut FfiGroups,
    out: *mut FfiBatch,
    error: *mut ErrorBuf,
) -> i32 {
    guarded(error, || {
        // SAFETY: a live job handle and valid groups.
        let (job, (batch, bounds)) = unsafe { (job_ref(job), take_groups(groups)?) };
        if !job.schema().combiner {
            return Err(JobError::job("combine called on a job without a combiner"));
        }
        let combined = with_groups(&batch, bounds, |groups| job.combine(groups))?;
        // SAFETY: a writable out-pointer.
        unsafe { put_batch(out, &combined) }
    })
}

pub(super) unsafe extern "C" fn reduce(
    job: *mut c_void,
    groups: *mut FfiGroups,
    out: *mut FfiBatch,
    counters: *mut FfiBatch,
    error: *mut ErrorBuf,
) -> i32 {
    guarded(error, || {
        // SAFETY: a live job handle and valid groups.
        let (job, (batch, bounds)) = unsafe { (job_ref(job), take_groups(groups)?) };
        let mut user = Counters::default();
        let output = with_groups(&batch, bounds, |groups| job.reduce(groups, &mut user))?;
        let user = counters_to_batch(&user).map_err(JobError::arrow("exporting counters"))?;
        // SAFETY: writable out-pointers.
        unsafe {
            put_batch(out, &output)?;
            put_batch(counters, &user)
        }
    })
}
