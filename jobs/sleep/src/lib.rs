//! Built-in job `sleep --arg map_ms=N --arg reduce_ms=N`: sleeps that long
//! at the start of every map and reduce task and emits one record per input
//! file (`file<TAB>lines`), for scheduling tests and demos, like Hadoop's
//! SleepJob. With `--arg fail_on=TEXT` its map panics on every line holding
//! TEXT, to exercise failure handling.

use std::time::Duration;

use harrow_sdk::{
    ArgSpec, Emitter, Job, JobArgs, JobDefinition, JobError, Line, Output, TaskInfo, TaskKind,
};

pub const DEFINITION: JobDefinition = JobDefinition {
    name: "sleep",
    summary: "sleep per task, then count lines per input file: file<TAB>lines",
    args: &[
        ArgSpec {
            name: "map_ms",
            help: "milliseconds each map task sleeps (default 0)",
            required: false,
        },
        ArgSpec {
            name: "reduce_ms",
            help: "milliseconds each reduce task sleeps (default 0)",
            required: false,
        },
        ArgSpec {
            name: "fail_on",
            help: "panic in map on any line containing this text (for failure tests)",
            required: false,
        },
    ],
    create: |args: &JobArgs| Ok(harrow_sdk::record_runtime(Sleep::new(args)?)),
};

#[derive(Debug, Clone)]
pub struct Sleep {
    map: Duration,
    reduce: Duration,
    fail_on: Option<String>,
}

impl Sleep {
    pub fn new(args: &JobArgs) -> Result<Self, JobError> {
        Ok(Sleep {
            map: Duration::from_millis(args.get_or("map_ms", 0)?),
            reduce: Duration::from_millis(args.get_or("reduce_ms", 0)?),
            fail_on: args
                .get("fail_on")?
                .filter(|text: &String| !text.is_empty()),
        })
    }
}

impl Job for Sleep {
    type Key = String;
    type Value = u64;
    type Output = (String, u64);
    const OUTPUT_COLUMNS: &'static [&'static str] = &["file", "lines"];
    const COMBINE: bool = true;

    fn start_task(&self, task: &TaskInfo) -> Result<(), JobError> {
        // Task code runs on a CPU pool thread, never on an async runtime, so
        // a blocking sleep here is what the job means: a busy slot.
        std::thread::sleep(match task.kind {
            TaskKind::Map => self.map,
            TaskKind::Reduce => self.reduce,
        });
        Ok(())
    }

    fn map(&self, line: &Line<'_>, emit: &mut Emitter<'_, Self>) -> Result<(), JobError> {
        if let Some(text) = &self.fail_on {
            assert!(!line.text.contains(text.as_str()), "line contains {text:?}");
        }
        emit.emit(line.file, 1);
        Ok(())
    }

    fn combine(&self, _file: &String, lines: &mut dyn Iterator<Item = u64>) -> u64 {
        lines.sum()
    }

    fn reduce(
        &self,
        file: &String,
        lines: &mut dyn Iterator<Item = u64>,
        out: &mut Output<'_, (String, u64)>,
    ) -> Result<(), JobError> {
        out.push((file.clone(), lines.sum()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emits_one_record_per_file() {
        let job = DEFINITION
            .instantiate(&JobArgs::parse_pairs(["map_ms=1"]).unwrap())
            .unwrap();
        let lines =
            harrow_sdk::testing::run_text(job.as_ref(), &[("a", "x\ny\n"), ("b", "z")]).unwrap();
        assert_eq!(lines, ["a\t2", "b\t1"]);
    }

    #[test]
    fn a_panic_in_map_names_the_record() {
        let job = DEFINITION
            .instantiate(&JobArgs::parse_pairs(["fail_on=boom"]).unwrap())
            .unwrap();
        let error = harrow_sdk::testing::run_text(job.as_ref(), &[("a.txt", "fine\nka-boom\n")])
            .err()
            .unwrap()
            .to_string();
        assert_eq!(error, "at a.txt:5: panicked: line contains \"boom\"");
    }

    #[test]
    fn rejects_bad_and_unknown_arguments() {
        let bad = JobArgs::parse_pairs(["map_ms=soon"]).unwrap();
        let error = DEFINITION.instantiate(&bad).err().unwrap().to_string();
        assert!(
            error.contains("map_ms") && error.contains("soon"),
            "{error}"
        );
        let unknown = JobArgs::parse_pairs(["map_sm=1"]).unwrap();
        let error = DEFINITION.instantiate(&unknown).err().unwrap().to_string();
        assert!(error.contains("unknown argument `map_sm`"), "{error}");
    }
}
