//! Loading a plugin library and calling it through the C ABI of
//! [`harrow_sdk::plugin`]: the checks on load, and [`FfiJob`], a
//! [`JobRuntime`] over the plugin's function table. This runs only inside
//! the plugin host process, never in a worker.
//!
//! A loaded library is never unloaded: the host process keeps it until it
//! exits, so nothing the plugin produced (an array whose release callback
//! lives in the plugin, say) can outlive its code.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::{CStr, c_void};
use std::path::Path;

use crate::limits::ERROR_CAPACITY;
use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow::ffi::FFI_ArrowSchema;
use harrow_sdk::plugin::{
    ABI_VERSION, ABI_VERSION_SYMBOL, ErrorBuf, FfiBatch, FfiGroups, LogFn, OK, PluginV1,
    TABLE_SYMBOL, args_to_batch, counters_from_batch, schema_from_ffi,
};
use harrow_sdk::{
    Counters, JobError, JobRuntime, JobSchema, KeyGroups, Mapper, TaskInfo, TaskKind,
};

/// Why a library cannot be used as a plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a loadable shared library: {reason}")]
    NotALibrary { reason: String },
    #[error(
        "not a Harrow plugin: the library does not export `{ABI_VERSION_SYMBOL}`; build the job \
         crate with crate-type = [\"cdylib\", \"rlib\"] and call harrow_sdk::export_plugin!(...) once"
    )]
    NotAPlugin,
    #[error(
        "the library speaks plugin ABI version {found}, but this engine speaks version \
         {ABI_VERSION}; rebuild the plugin against this release's harrow-sdk (update its \
         harrow-sdk dependency, then cargo build --release)"
    )]
    WrongAbi { found: u32 },
    #[error(
        "the library was built with panic = \"abort\", so a panic in its job code would end the \
         process instead of failing the attempt; remove panic = \"abort\" from the crate's \
         [profile] sections and rebuild"
    )]
    PanicAbort,
}

/// A loaded plugin library and its function table.
#[derive(Debug)]
pub struct Plugin {
    table: PluginV1,
}

impl Plugin {
    /// Loads `path` and checks that it is a plugin this engine can run.
    pub fn load(path: &Path) -> Result<Plugin, LoadError> {
        // SAFETY: loading a library runs its initializers. Plugins are
        // trusted code (only an authorized submitter uploads one), and this
        // runs in a process of its own.
        let library =
            unsafe { libloading::Library::new(path) }.map_err(|e| LoadError::NotALibrary {
                reason: e.to_string(),
            })?;
        // SAFETY: the symbol's type is the one the SDK's export macro defines.
        let version =
            unsafe { library.get::<unsafe extern "C" fn() -> u32>(ABI_VERSION_SYMBOL.as_bytes()) }
                .map_err(|_| LoadError::NotAPlugin)?;
        // SAFETY: as above; the function takes nothing and returns a u32.
        let found = unsafe { version() };
        if found != ABI_VERSION {
            return Err(LoadError::WrongAbi { found });
        }
        // SAFETY: a version 1 plugin exports the table function.
        let table_fn =
            unsafe { library.get::<unsafe extern "C" fn() -> PluginV1>(TABLE_SYMBOL.as_bytes()) }
                .map_err(|_| LoadError::NotAPlugin)?;
        // SAFETY: as above.
        let table = unsafe { table_fn() };
        if !table.panic_unwinds {
            return Err(LoadError::PanicAbort);
        }
        // Never unloaded: see the module docs.
        std::mem::forget(library);
        Ok(Plugin { table })
    }

    /// The harrow-sdk version the plugin was built with.
    pub fn sdk_version(&self) -> String {
        // SAFETY: the SDK exports a static NUL-terminated string.
        unsafe { CStr::from_ptr(self.table.sdk_version) }
            .to_string_lossy()
            .into_owned()
    }

    /// Routes the plugin's `log` records to `log` up to `max_level`
    /// (1 error … 5 trace).
    pub fn init_logging(&self, log: LogFn, max_level: u32) {
        // SAFETY: a table function with plain arguments.
        unsafe { (self.table.init_logging)(log, max_level) };
    }

    /// Builds job `name` of the plugin.
    pub fn create(
        &self,
        name: &str,
        args: &BTreeMap<String, String>,
        input: &Schema,
    ) -> Result<FfiJob, JobError> {
        let args = args_to_batch(args.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(JobError::arrow("exporting job arguments"))?;
        let mut args =
            FfiBatch::export(&args).map_err(JobError::arrow("exporting job arguments"))?;
        let input = FFI_ArrowSchema::try_from(input)
            .map_err(JobError::arrow("exporting the input schema"))?;
        let mut handle: *mut c_void = std::ptr::null_mut();
        let mut schema = FFI_ArrowSchema::empty();
        call(|error| unsafe {
            // SAFETY: arguments as the table documents them; the plugin
            // takes the args array and lends nothing back.
            (self.table.create)(
                self.table.context,
                name.as_ptr(),
                name.len(),
                &mut args.array,
                &args.schema,
                &input,
                &mut handle,
                &mut schema,
                error,
            )
        })?;
        match Schema::try_from(&schema).and_then(|s| schema_from_ffi(&s)) {
            Ok(schema) => Ok(FfiJob {
                table: self.table,
                handle,
                schema,
            }),
            Err(e) => {
                // SAFETY: the handle `create` returned, dropped once.
                unsafe { (self.table.drop_job)(handle) };
                Err(JobError::arrow("importing the job schema")(e))
            }
        }
    }
}

/// A job built by a plugin, run through its C ABI.
pub struct FfiJob {
    table: PluginV1,
    handle: *mut c_void,
    schema: JobSchema,
}

// SAFETY: the handle points to the plugin's `Arc<dyn JobRuntime>`, which is
// `Send + Sync`; every table function may be called from any thread.
unsafe impl Send for FfiJob {}
unsafe impl Sync for FfiJob {}

impl Drop for FfiJob {
    fn drop(&mut self) {
        // SAFETY: the handle came from `create` and is dropped once, after
        // every mapper (they borrow the job).
        unsafe { (self.table.drop_job)(self.handle) };
    }
}

impl JobRuntime for FfiJob {
    fn schema(&self) -> &JobSchema {
        &self.schema
    }

    fn start_task(&self, task: &TaskInfo) -> Result<(), JobError> {
        let kind = match task.kind {
            TaskKind::Map => 0,
            TaskKind::Reduce => 1,
        };
        let partition = task.partition.map_or(-1, i64::from);
        call(|error| unsafe {
            // SAFETY: a live job handle and a borrowed string.
            (self.table.start_task)(
                self.handle,
                task.attempt.as_ptr(),
                task.attempt.len(),
                kind,
                partition,
                error,
            )
        })
    }

    fn mapper(&self) -> Box<dyn Mapper + '_> {
        Box::new(FfiMapper {
            job: self,
            handle: std::ptr::null_mut(),
        })
    }

    fn combine(&self, groups: KeyGroups<'_>) -> Result<RecordBatch, JobError> {
        let mut groups = export_groups(groups)?;
        let mut out = FfiBatch::empty();
        call(|error| unsafe {
            // SAFETY: a live job handle; the plugin takes the groups' batch.
            (self.table.combine)(self.handle, &mut groups.groups, &mut out, error)
        })?;
        import(out)
    }

    fn reduce(
        &self,
        groups: KeyGroups<'_>,
        counters: &mut Counters,
    ) -> Result<RecordBatch, JobError> {
        let mut groups = export_groups(groups)?;
        let (mut out, mut user) = (FfiBatch::empty(), FfiBatch::empty());
        call(|error| unsafe {
            // SAFETY: as in `combine`.
            (self.table.reduce)(self.handle, &mut groups.groups, &mut out, &mut user, error)
        })?;
        counters.merge(&import_counters(user)?);
        import(out)
    }
}

/// A mapper of the plugin, created on first use (creating one can fail).
struct FfiMapper<'j> {
    job: &'j FfiJob,
    handle: *mut c_void,
}

// SAFETY: the plugin's mapper is `Send`.
unsafe impl Send for FfiMapper<'_> {}

impl FfiMapper<'_> {
    fn handle(&mut self) -> Result<*mut c_void, JobError> {
        if self.handle.is_null() {
            let mut handle = std::ptr::null_mut();
            call(|error| unsafe {
                // SAFETY: a live job handle and a writable out-pointer.
                (self.job.table.new_mapper)(self.job.handle, &mut handle, error)
            })?;
            self.handle = handle;
        }
        Ok(self.handle)
    }
}

impl Mapper for FfiMapper<'_> {
    fn map(&mut self, input: &RecordBatch) -> Result<(), JobError> {
        let handle = self.handle()?;
        let mut batch = FfiBatch::export(input).map_err(JobError::arrow("exporting a batch"))?;
        call(|error| unsafe {
            // SAFETY: a live mapper; the plugin takes the array.
            (self.job.table.map)(handle, &mut batch.array, &batch.schema, error)
        })
    }

    fn finish(mut self: Box<Self>) -> Result<(RecordBatch, Counters), JobError> {
        let handle = self.handle()?;
        // `finish_mapper` consumes the mapper, success or not.
        self.handle = std::ptr::null_mut();
        let (mut out, mut user) = (FfiBatch::empty(), FfiBatch::empty());
        call(|error| unsafe {
            // SAFETY: a live mapper, consumed here.
            (self.job.table.finish_mapper)(handle, &mut out, &mut user, error)
        })?;
        Ok((import(out)?, import_counters(user)?))
    }
}

impl Drop for FfiMapper<'_> {
    fn drop(&mut self) {
        if !self.handle.is_null() {
            // SAFETY: a live mapper, dropped once.
            unsafe { (self.job.table.drop_mapper)(self.handle) };
        }
    }
}

/// Calls a table function with an error buffer; a non-OK status becomes
/// the plugin's message.
fn call(f: impl FnOnce(*mut ErrorBuf) -> i32) -> Result<(), JobError> {
    let mut bytes = vec![0u8; ERROR_CAPACITY];
    let mut error = ErrorBuf {
        data: bytes.as_mut_ptr(),
        capacity: bytes.len(),
        len: 0,
    };
    if f(&mut error) == OK {
        return Ok(());
    }
    let len = error.len.min(bytes.len());
    Err(JobError::job(String::from_utf8_lossy(&bytes[..len])))
}

/// Groups exported for a call; `groups.bounds` points into `bounds`, whose
/// buffer stays put while this lives.
struct ExportedGroups {
    groups: FfiGroups,
    _bounds: Vec<u64>,
}

fn export_groups(groups: KeyGroups<'_>) -> Result<ExportedGroups, JobError> {
    let bounds: Vec<u64> = groups.bounds().iter().map(|&b| b as u64).collect();
    let batch =
        FfiBatch::export(groups.batch()).map_err(JobError::arrow("exporting key groups"))?;
    Ok(ExportedGroups {
        groups: FfiGroups {
            batch,
            bounds: bounds.as_ptr(),
            bounds_len: bounds.len(),
        },
        _bounds: bounds,
    })
}

fn import(batch: FfiBatch) -> Result<RecordBatch, JobError> {
    // SAFETY: the plugin filled the batch after returning OK.
    unsafe { batch.import() }.map_err(JobError::arrow("importing a batch from the plugin"))
}

fn import_counters(batch: FfiBatch) -> Result<Counters, JobError> {
    counters_from_batch(&import(batch)?).map_err(JobError::arrow("importing counters"))
}
