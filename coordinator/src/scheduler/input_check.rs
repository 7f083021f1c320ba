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

use harrow_core::ids::TaskId;
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

/// Why the job must fail, if it must, now that map task `succeeded` has.
/// The budget is summed again only when that task skipped records, so a job
/// of many clean splits costs one pass at the end.
pub fn check(job: &Job, succeeded: TaskId) -> Option<String> {
    let limit = job.plan.spec.input.skip_bad_records;
    let skipped_some = job.task(succeeded).is_some_and(|task| {
        matches!(&task.state, TaskState::Succeeded {
            output: TaskOutput::Map { input, .. },
            ..
        } if input.bad_records > 0)
    });
    let (count, samples) = if skipped_some {
        bad_records(job)
    } else {
        (0, Vec::new())
    };
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

#[cfg(test)]
mod tests {

    use harrow_core::task::{Assignment, AttemptOutcome, InputSpec, SegmentInfo, Split, TaskSpec};

    use super::super::tests::Harness;
    use super::super::{Event, JobState};
    use super::*;

    /// A job over one 20-byte file in two splits, with a skip budget.
    fn submit(h: &mut Harness, output: &str, skip_bad_records: u64) -> harrow_core::ids::JobId {
        let split = |start, end| Split {
            location: "/in/f.csv".into(),
            start,
            end,
            file_size: 20,
        };
        let input = InputSpec {
            skip_bad_records,
            ..InputSpec::text()
        };
        let plan = super::super::tests::plan(
            "distinct",
            output,
            1,
            vec![split(0, 10), split(10, 20)],
            input,
        );
        match h.handle(Event::SubmitJob { plan })[..] {
            [super::super::Action::JobAccepted { job }] => job,
            ref other => panic!("{other:?}"),
        }
    }

    fn succeed(
        h: &mut Harness,
        worker: harrow_core::ids::WorkerId,
        map: &Assignment,
        span: (u64, u64),
        bad_records: u64,
    ) {
        let TaskSpec::Map { split, .. } = &map.task else {
            panic!("not a map: {map:?}")
        };
        let samples = (0..bad_records)
            .map(|i| BadRecord {
                location: split.location.clone(),
                offset: split.start + i,
                reason: "wrong number of fields".into(),
            })
            .collect();
        h.report(
            worker,
            map.attempt,
            AttemptOutcome::Succeeded {
                segments: vec![SegmentInfo::default()],
                input: InputReport {
                    span: Some(span),
                    bad_records,
                    bad_record_samples: samples,
                },
            },
        );
    }

    /// The map assignments of `job` among the next ones (an earlier job's
    /// reduce may come first).
    fn maps_of(
        h: &mut Harness,
        worker: harrow_core::ids::WorkerId,
        job: harrow_core::ids::JobId,
    ) -> Vec<Assignment> {
        h.request(worker, 3)
            .into_iter()
            .filter(|a| a.attempt.task.job == job)
            .collect()
    }

    #[test]
    fn splits_that_meet_go_on_and_splits_that_do_not_fail_the_job() {
        let mut h = Harness::new(2);
        let worker = h.worker();
        let good = submit(&mut h, "/good", 0);
        let maps = h.request(worker, 2);
        succeed(&mut h, worker, &maps[0], (0, 12), 0);
        succeed(&mut h, worker, &maps[1], (12, 20), 0);
        assert_eq!(h.state(good), JobState::Running);
        assert!(matches!(
            h.request(worker, 1)[0].task,
            TaskSpec::Reduce { .. }
        ));

        let bad = submit(&mut h, "/bad", 0);
        let maps = maps_of(&mut h, worker, bad);
        succeed(&mut h, worker, &maps[0], (0, 12), 0);
        assert_eq!(h.state(bad), JobState::Running);
        succeed(&mut h, worker, &maps[1], (11, 20), 0);
        let JobState::Failed { error } = h.state(bad) else {
            panic!("{:?}", h.state(bad))
        };
        assert!(
            error.starts_with(
                "/in/f.csv: the records before split boundary 10 end at byte 12, but the split after it starts reading at byte 11"
            ),
            "{error}"
        );
    }

    #[test]
    fn the_skip_budget_is_for_the_whole_job() {
        let mut h = Harness::new(2);
        let worker = h.worker();
        let within = submit(&mut h, "/within", 4);
        let maps = h.request(worker, 2);
        succeed(&mut h, worker, &maps[0], (0, 10), 2);
        succeed(&mut h, worker, &maps[1], (10, 20), 2);
        assert_eq!(h.state(within), JobState::Running);
        assert_eq!(bad_records(h.scheduler.job(within).unwrap()).0, 4);

        let over = submit(&mut h, "/over", 3);
        let maps = maps_of(&mut h, worker, over);
        succeed(&mut h, worker, &maps[0], (0, 10), 2);
        assert_eq!(h.state(over), JobState::Running);
        succeed(&mut h, worker, &maps[1], (10, 20), 2);
        let JobState::Failed { error } = h.state(over) else {
            panic!("{:?}", h.state(over))
        };
        assert_eq!(
            error,
            "4 malformed input records exceed --skip-bad-records 3; the first: /in/f.csv at byte 0: wrong number of fields"
        );
    }
}
