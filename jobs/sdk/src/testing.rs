//! An in-process runner for unit-testing a job without a cluster: one map
//! over all input, sort by key, the job's combiner and reduce, and the output
//! as a batch, or as text lines (`col1<TAB>col2…`) as the engine's text
//! output writes them, with the user counters of map and reduce.
//!
//! ```
//! # use harrow_sdk::{Emitter, Job, JobError, Line, Output};
//! # struct Lines;
//! # impl Job for Lines {
//! #     type Key = String;
//! #     type Value = u64;
//! #     type Output = (String, u64);
//! #     const OUTPUT_COLUMNS: &'static [&'static str] = &["file", "lines"];
//! #     fn map(&self, line: &Line<'_>, emit: &mut Emitter<'_, Self>) -> Result<(), JobError> {
//! #         if line.text.is_empty() { emit.counter("empty").add(1); }
//! #         emit.emit(harrow_sdk::base_name(line.file), 1);
//! #         Ok(())
//! #     }
//! #     fn reduce(&self, key: &String, values: &mut dyn Iterator<Item = u64>,
//! #               out: &mut Output<'_, (String, u64)>) -> Result<(), JobError> {
//! #         out.push((key.clone(), values.sum()));
//! #         Ok(())
//! #     }
//! # }
//! use harrow_sdk::testing::{run_local, text_batch};
//!
//! let job = harrow_sdk::record_runtime(Lines);
//! let run = run_local(job.as_ref(), &[text_batch("a.txt", "x\n\ny\n").unwrap()]).unwrap();
//! assert_eq!(run.lines().unwrap(), ["a.txt\t3"]);
//! assert_eq!(run.counters.get("empty"), 1);
//! ```

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray, UInt64Array};

use crate::table::sort_into_groups;
use crate::{
    Counters, JobError, JobRuntime, KeyGroups, TaskInfo, TaskKind, format_text_lines, text_schema,
};

/// What a local run produced.
#[derive(Debug, Clone)]
pub struct LocalRun {
    /// The reduce output, sorted by key.
    pub output: RecordBatch,
    /// The user counters of map and reduce, summed.
    pub counters: Counters,
}

impl LocalRun {
    /// The output as the engine's text output writes it: columns joined by
    /// a tab, nulls empty.
    pub fn lines(&self) -> Result<Vec<String>, JobError> {
        let mut lines = Vec::new();
        format_text_lines(&self.output, |line| lines.push(line.to_string()))
            .map_err(JobError::arrow("formatting"))?;
        Ok(lines)
    }
}

/// Runs `job` over input batches (each one mapper's share).
pub fn run_local(job: &dyn JobRuntime, inputs: &[RecordBatch]) -> Result<LocalRun, JobError> {
    let task = |kind| TaskInfo {
        attempt: "local/t-00000/a-1".to_string(),
        kind,
        partition: None,
    };
    job.start_task(&task(TaskKind::Map))?;
    let mut mapper = job.mapper();
    for input in inputs {
        mapper.map(input)?;
    }
    let (mapped, mut counters) = mapper.finish()?;
    let (sorted, bounds) = sort_into_groups(&mapped)?;
    let (sorted, bounds) = if job.schema().combiner {
        sort_into_groups(&job.combine(KeyGroups::new(&sorted, &bounds))?)?
    } else {
        (sorted, bounds)
    };
    job.start_task(&task(TaskKind::Reduce))?;
    let output = job.reduce(KeyGroups::new(&sorted, &bounds), &mut counters)?;
    Ok(LocalRun { output, counters })
}

/// Runs `job` over `(file, contents)` pairs and returns the output lines,
/// sorted by key.
pub fn run_text(job: &dyn JobRuntime, files: &[(&str, &str)]) -> Result<Vec<String>, JobError> {
    let inputs = files
        .iter()
        .map(|(file, contents)| text_batch(file, contents))
        .collect::<Result<Vec<_>, _>>()?;
    run_local(job, &inputs)?.lines()
}

/// One text input batch of `contents` split into lines as the engine does
/// (`\n` or `\r\n` terminated, the last line may lack its terminator).
pub fn text_batch(file: &str, contents: &str) -> Result<RecordBatch, JobError> {
    let mut lines = Vec::new();
    let mut offsets = Vec::new();
    let mut offset = 0u64;
    for line in contents.split_inclusive('\n') {
        let text = line.strip_suffix('\n').unwrap_or(line);
        lines.push(text.strip_suffix('\r').unwrap_or(text));
        offsets.push(offset);
        offset += line.len() as u64;
    }
    RecordBatch::try_new(
        text_schema(file),
        vec![
            Arc::new(StringArray::from(lines)),
            Arc::new(UInt64Array::from(offsets)),
        ],
    )
    .map_err(JobError::arrow("text input"))
}
