//! The Harrow job SDK: everything a job author depends on.
//!
//! A job is written at one of two levels, and the engine runs both the same
//! way through [`JobRuntime`]:
//!
//! - the record level ([`Job`]): `map` over lines with a typed [`Emitter`],
//!   `reduce` over a key and its values, an optional `combine` that folds
//!   values in a typed hash map inside the map task before anything becomes
//!   an Arrow row;
//! - the batch level ([`BatchJob`]): Arrow `RecordBatch` in, key/value
//!   `RecordBatch` out, grouped reduce over Arrow arrays, for jobs that use
//!   Arrow compute kernels.
//!
//! The SDK depends on Arrow and small collections crates only, never on an
//! async runtime or the wire protocol.
//!
//! ```
//! use harrow_sdk::{Emitter, Job, JobArgs, JobError, Line, Output, testing};
//!
//! struct LineLengths;
//!
//! impl Job for LineLengths {
//!     type Key = u64;
//!     type Value = u64;
//!     type Output = (u64, u64);
//!     const OUTPUT_COLUMNS: &'static [&'static str] = &["length", "lines"];
//!     const COMBINE: bool = true;
//!
//!     fn map(&self, line: &Line<'_>, emit: &mut Emitter<'_, Self>) -> Result<(), JobError> {
//!         emit.emit(&(line.text.len() as u64), 1);
//!         Ok(())
//!     }
//!
//!     fn combine(&self, _key: &u64, values: &mut dyn Iterator<Item = u64>) -> u64 {
//!         values.sum()
//!     }
//!
//!     fn reduce(
//!         &self,
//!         key: &u64,
//!         values: &mut dyn Iterator<Item = u64>,
//!         out: &mut Output<'_, (u64, u64)>,
//!     ) -> Result<(), JobError> {
//!         out.push((*key, values.sum()));
//!         Ok(())
//!     }
//! }
//!
//! let job = harrow_sdk::record_runtime(LineLengths);
//! let lines = testing::run_text(job.as_ref(), &[("a.txt", "ab\ncd\nxyz\n")]).unwrap();
//! assert_eq!(lines, ["2\t2", "3\t1"]);
//! ```

mod args;
mod batch;
mod counters;
mod error;
mod input;
mod output;
pub mod plugin;
mod record;
mod runtime;
pub mod table;
pub mod testing;
mod value;

pub use arrow;
pub use log;

pub use args::{ArgSpec, JobArgs};
pub use batch::{BatchJob, batch_runtime};
pub use counters::{Counter, Counters};
pub use error::{JobError, panic_message};
pub use input::{
    FILE_METADATA_KEY, LINE_COLUMN, Line, OFFSET_COLUMN, TextBatch, base_name, text_schema,
};
pub use output::{format_text_lines, group_bounds};
pub use record::{Emitter, Job, Output, record_runtime};
pub use runtime::{
    GeneratedInput, JobDefinition, JobRuntime, JobSchema, KEY_COLUMN, KeyGroups, Mapper,
    OwnedMapper, Partitioning, ROW_COLUMN, TaskInfo, TaskKind, VALUE_COLUMN, generated_schema,
};
pub use value::{Key, Row, Value};
