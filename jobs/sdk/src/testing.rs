//! An in-process runner for unit-testing a job without a cluster: one map
//! over all input, sort by key, the job's combiner and reduce, and the output
//! as a batch, or as text lines (`col1<TAB>col2…`) as the engine's text
//! output writes them.

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray, UInt64Array};

use crate::table::sort_into_groups;
use crate::{JobError, JobRuntime, KeyGroups, TaskInfo, TaskKind, format_text_lines, text_schema};

/// Runs `job` over input batches (each one mapper's share) and returns its
/// output, sorted by key.
pub fn run_batches(job: &dyn JobRuntime, inputs: &[RecordBatch]) -> Result<RecordBatch, JobError> {
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
    let mapped = mapper.finish()?;
    let (sorted, bounds) = sort_into_groups(&mapped)?;
    let (sorted, bounds) = if job.schema().combiner {
        sort_into_groups(&job.combine(KeyGroups::new(&sorted, &bounds))?)?
    } else {
        (sorted, bounds)
    };
    job.start_task(&task(TaskKind::Reduce))?;
    job.reduce(KeyGroups::new(&sorted, &bounds))
}

/// Runs `job` over `(file, contents)` pairs and returns the output lines,
/// sorted by key.
pub fn run_text(job: &dyn JobRuntime, files: &[(&str, &str)]) -> Result<Vec<String>, JobError> {
    let inputs = files
        .iter()
        .map(|(file, contents)| text_batch(file, contents))
        .collect::<Result<Vec<_>, _>>()?;
    let output = run_batches(job, &inputs)?;
    let mut lines = Vec::new();
    format_text_lines(&output, |line| lines.push(line.to_string()))
        .map_err(JobError::arrow("formatting"))?;
    Ok(lines)
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
