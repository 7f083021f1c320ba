//! Checks over what succeeded map tasks report about their input, made each
//! time one succeeds:
//! - the job's budget of malformed records (`--skip-bad-records`), over the
//!   winning attempts only, so a re-run task is not counted twice;
//! - once every map task is done, that the byte-range splits of each file
//!   meet: where one split's last record ends, the next one's first record
//!   starts. They always do for text and JSON lines; for CSV they do not
//!   when a quoted field holding a line break crosses a split boundary (the
//!   later split cannot see the quote), and the job fails instead of
//!   handing the reducers broken records.

use std::collections::BTreeMap;

use harrow_core::task::{BAD_RECORD_SAMPLES, BadRecord, InputReport};

use super::job::Job;
use super::task::{TaskInput, TaskOutput, TaskState};

/// The malformed records skipped by the job's succeeded map tasks: how many,
/// and the first of them.
pub fn bad_records(job: &Job) -> (u64, Vec<BadRecord>) {
    let mut count = 0;
    let mut samples = Vec::new();
    for (_, report) in reports(job) {
        count += report.bad_records;
        let room = BAD_RECORD_SAMPLES.saturating_sub(samples.len());
        samples.extend(report.bad_record_samples.iter().take(room).cloned());
    }
    (count, samples)
}

/// Why the job must fail, if it must.
pub fn check(job: &Job) -> Option<String> {
    let limit = job.plan.input.skip_bad_records;
    let (count, samples) = bad_records(job);
    if count > limit {
        let first = samples
            .first()
            .map(|b| format!("; the first: {b}"))
            .unwrap_or_default();
        return Some(format!(
            "{count} malformed input records exceed --skip-bad-records {limit}{first}"
        ));
    }
    if job.maps_done() {
        return splits_meet(job).err();
    }
    None
}

/// Each succeeded map task's split and input report.
fn reports(job: &Job) -> impl Iterator<Item = (&TaskInput, &InputReport)> {
    job.maps.iter().filter_map(|task| match &task.state {
        TaskState::Succeeded {
            output: TaskOutput::Map { input, .. },
            ..
        } => Some((&task.input, input)),
        _ => None,
    })
}

/// A split's start, and where its first record starts and last one ends.
type SplitSpan = (u64, (u64, u64));

fn splits_meet(job: &Job) -> Result<(), String> {
    let mut by_file: BTreeMap<&str, Vec<SplitSpan>> = BTreeMap::new();
    for (input, report) in reports(job) {
        if let (TaskInput::Split(split), Some(span)) = (input, report.span) {
            by_file
                .entry(split.location.as_str())
                .or_default()
                .push((split.start, span));
        }
    }
    for (location, mut spans) in by_file {
        spans.sort_unstable();
        for pair in spans.windows(2) {
            let ((_, (_, end)), (boundary, (start, _))) = (pair[0], pair[1]);
            if end != start {
                return Err(format!(
                    "{location}: the records before split boundary {boundary} end at byte {end}, \
                     but the split after it starts reading at byte {start}: a quoted CSV field \
                     holding a line break crosses the boundary; rerun with --split-size 0 to \
                     read each file whole"
                ));
            }
        }
    }
    Ok(())
}
