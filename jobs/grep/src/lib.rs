//! Built-in job `grep --arg pattern=REGEX`: every line matching the
//! pattern. Output: `file:byte_offset<TAB>line`, where the offset is that of
//! the line's start in its file, so output is deterministic. Written against
//! the batch-level API: the match runs over a whole Arrow string column.

use std::sync::Arc;

use harrow_sdk::arrow::array::BooleanArray;
use harrow_sdk::arrow::array::{Array, RecordBatch, StringArray, StringBuilder};
use harrow_sdk::arrow::compute::filter;
use harrow_sdk::arrow::datatypes::{DataType, Field, Schema};
use harrow_sdk::{
    ArgSpec, BatchJob, Counters, JobArgs, JobDefinition, JobError, JobSchema, KeyGroups, TextBatch,
};
use regex::Regex;

pub const DEFINITION: JobDefinition = JobDefinition {
    name: "grep",
    summary: "lines matching a regular expression: file:byte_offset<TAB>line",
    args: &[ArgSpec {
        name: "pattern",
        help: "the regular expression (Rust regex syntax) a line must match",
        required: true,
    }],
    create: |args: &JobArgs| Ok(harrow_sdk::batch_runtime(Grep::new(args)?)),
};

/// Keeps lines matching `pattern`, keyed by `file:offset`.
#[derive(Debug, Clone)]
pub struct Grep {
    pattern: Regex,
}

impl Grep {
    pub fn new(args: &JobArgs) -> Result<Self, JobError> {
        let source: String = args.require("pattern")?;
        let pattern = Regex::new(&source).map_err(|e| JobError::InvalidArgument {
            name: "pattern".to_string(),
            value: source.clone(),
            reason: e.to_string(),
        })?;
        Ok(Grep { pattern })
    }
}

impl BatchJob for Grep {
    fn schema(&self) -> JobSchema {
        JobSchema::over_lines(
            DataType::Utf8,
            DataType::Utf8,
            Arc::new(Schema::new(vec![
                Field::new("location", DataType::Utf8, false),
                Field::new("line", DataType::Utf8, false),
            ])),
        )
    }

    fn map_batch(
        &self,
        input: &RecordBatch,
        _counters: &mut Counters,
    ) -> Result<RecordBatch, JobError> {
        let text = TextBatch::new(input)?;
        let matches: BooleanArray = text
            .lines()
            .iter()
            .map(|line| Some(line.is_some_and(|l| self.pattern.is_match(l))))
            .collect();
        let lines = filter(text.lines(), &matches).map_err(arrow_error)?;
        let offsets = filter(text.offsets(), &matches).map_err(arrow_error)?;
        let offsets = offsets
            .as_any()
            .downcast_ref::<harrow_sdk::arrow::array::UInt64Array>()
            .expect("filter keeps the array type");
        let mut locations = StringBuilder::with_capacity(offsets.len(), offsets.len() * 24);
        for offset in offsets.values() {
            locations.append_value(format!("{}:{offset}", text.file()));
        }
        RecordBatch::try_new(
            self.schema().key_value(),
            vec![Arc::new(locations.finish()), lines],
        )
        .map_err(arrow_error)
    }

    fn reduce_groups(
        &self,
        groups: KeyGroups<'_>,
        _counters: &mut Counters,
    ) -> Result<RecordBatch, JobError> {
        // Every key is unique (file:offset), so the sorted key/value batch
        // already is the output.
        let lines = groups
            .values()
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("value column is Utf8 by schema");
        assert_eq!(groups.len(), lines.len(), "grep keys are unique");
        RecordBatch::try_new(
            self.schema().output,
            vec![groups.keys().clone(), groups.values().clone()],
        )
        .map_err(arrow_error)
    }
}

fn arrow_error(source: harrow_sdk::arrow::error::ArrowError) -> JobError {
    JobError::job(format!("grep: {source}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_matching_lines_with_offsets() {
        let args = JobArgs::parse_pairs(["pattern=ca[tr]"]).unwrap();
        let job = harrow_sdk::batch_runtime(Grep::new(&args).unwrap());
        let lines = harrow_sdk::testing::run_text(
            job.as_ref(),
            &[("a.txt", "a cat\r\ndog\ncar\n"), ("b.txt", "scar")],
        )
        .unwrap();
        assert_eq!(lines, ["a.txt:0\ta cat", "a.txt:11\tcar", "b.txt:0\tscar"]);
    }

    #[test]
    fn rejects_a_bad_pattern() {
        let args = JobArgs::parse_pairs(["pattern=(unclosed"]).unwrap();
        let error = DEFINITION.instantiate(&args).err().unwrap().to_string();
        assert!(error.contains("pattern"), "{error}");
        let error = DEFINITION
            .instantiate(&JobArgs::default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("missing required argument `pattern`"),
            "{error}"
        );
    }
}
