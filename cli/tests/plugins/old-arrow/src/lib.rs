//! Counts lines per file, like the engine's jobs, but built with Arrow 57:
//! batches reach it through the C Data interface whatever the engine's
//! Arrow. It sums each group with Arrow 57's own kernel to use that release
//! directly.

use std::sync::Arc;

use arrow::array::{Array, RecordBatch, StringArray, UInt64Array};
use arrow::compute::kernels::aggregate::sum;
use arrow::datatypes::{DataType, Field, Schema};
use harrow_sdk::{BatchJob, Counters, JobArgs, JobDefinition, JobError, JobSchema, KeyGroups, TextBatch};

pub const DEFINITION: JobDefinition = JobDefinition {
    name: "old-arrow-lines",
    summary: "lines per file: file<TAB>lines",
    args: &[],
    create: |_args: &JobArgs| Ok(harrow_sdk::batch_runtime(Lines)),
};

harrow_sdk::export_plugin!(DEFINITION);

struct Lines;

fn arrow_error(e: arrow::error::ArrowError) -> JobError {
    JobError::job(e.to_string())
}

impl BatchJob for Lines {
    fn schema(&self) -> JobSchema {
        JobSchema {
            key: DataType::Utf8,
            value: DataType::UInt64,
            output: Arc::new(Schema::new(vec![
                Field::new("file", DataType::Utf8, false),
                Field::new("lines", DataType::UInt64, false),
            ])),
            combiner: false,
            input_columns: Some(vec!["line".to_string(), "offset".to_string()]),
            partitioning: harrow_sdk::Partitioning::Hash,
            generated: None,
        }
    }

    fn map_batch(&self, input: &RecordBatch, counters: &mut Counters) -> Result<RecordBatch, JobError> {
        let text = TextBatch::new(input)?;
        let file = harrow_sdk::base_name(text.file());
        counters.counter("old_arrow_batches").add(1);
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::UInt64, false),
            ])),
            vec![
                Arc::new(StringArray::from(vec![file; text.len()])),
                Arc::new(UInt64Array::from(vec![1u64; text.len()])),
            ],
        )
        .map_err(arrow_error)
    }

    fn reduce_groups(&self, groups: KeyGroups<'_>, _counters: &mut Counters) -> Result<RecordBatch, JobError> {
        let keys = groups.keys().as_any().downcast_ref::<StringArray>().ok_or_else(|| JobError::job("keys are not strings"))?;
        let values = groups.values().as_any().downcast_ref::<UInt64Array>().ok_or_else(|| JobError::job("values are not u64"))?;
        let mut files = Vec::new();
        let mut lines = Vec::new();
        for index in 0..groups.len() {
            let rows = groups.group(index);
            files.push(keys.value(rows.start).to_string());
            lines.push(sum(&values.slice(rows.start, rows.len())).unwrap_or(0));
        }
        RecordBatch::try_new(
            self.schema().output,
            vec![Arc::new(StringArray::from(files)), Arc::new(UInt64Array::from(lines))],
        )
        .map_err(arrow_error)
    }
}
