//! The batch-level job API: Arrow batches in, key/value batches out, and a
//! grouped reduce over Arrow arrays, for jobs that use Arrow compute kernels.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;

use crate::{Counters, JobError, JobRuntime, JobSchema, KeyGroups, Mapper, TaskInfo, TextBatch};

/// A job written over whole batches.
pub trait BatchJob: Send + Sync + 'static {
    fn schema(&self) -> JobSchema;

    fn start_task(&self, _task: &TaskInfo) -> Result<(), JobError> {
        Ok(())
    }

    /// Maps an input batch to a key/value batch with the schema's
    /// [`JobSchema::key_value`] columns. `counters` are this task's user
    /// counters. Not called when [`BatchJob::mapper`] gives a mapper.
    fn map_batch(
        &self,
        _input: &RecordBatch,
        _counters: &mut Counters,
    ) -> Result<RecordBatch, JobError> {
        unreachable!("map_batch called on a job that maps with its own mapper")
    }

    /// A mapper of the job's own, for a job that keeps state across the
    /// batches of a share of a map task: typically a hash table folding
    /// the rows of each key as they arrive (see
    /// [`crate::table::GroupTable`]), so map output holds one row per key
    /// and share instead of one per input row. The engine keeps a share's
    /// mapper for many batches and finishes it when the input ends or its
    /// memory share is used. `None` (the default): every batch goes
    /// through [`BatchJob::map_batch`].
    fn mapper(&self) -> Option<Box<dyn Mapper + '_>> {
        None
    }

    /// Folds each group into one key/value row. Only called when the schema
    /// declares a combiner.
    fn combine_groups(&self, _groups: KeyGroups<'_>) -> Result<RecordBatch, JobError> {
        unreachable!("combine_groups called on a job without a combiner")
    }

    /// Reduces each group into rows of the output schema.
    fn reduce_groups(
        &self,
        groups: KeyGroups<'_>,
        counters: &mut Counters,
    ) -> Result<RecordBatch, JobError>;
}

/// Wraps a batch-level job for the engine.
pub fn batch_runtime<J: BatchJob>(job: J) -> Arc<dyn JobRuntime> {
    let schema = job.schema();
    Arc::new(BatchRuntime { job, schema })
}

struct BatchRuntime<J> {
    job: J,
    schema: JobSchema,
}

impl<J: BatchJob> JobRuntime for BatchRuntime<J> {
    fn schema(&self) -> &JobSchema {
        &self.schema
    }

    fn start_task(&self, task: &TaskInfo) -> Result<(), JobError> {
        self.job.start_task(task)
    }

    fn mapper(&self) -> Box<dyn Mapper + '_> {
        self.job.mapper().unwrap_or_else(|| {
            Box::new(BatchMapper {
                job: &self.job,
                schema: &self.schema,
                outputs: Vec::new(),
                counters: Counters::default(),
            })
        })
    }

    fn combine(&self, groups: KeyGroups<'_>) -> Result<RecordBatch, JobError> {
        assert!(
            self.schema.combiner,
            "combine called on a job without a combiner"
        );
        self.job.combine_groups(groups)
    }

    fn reduce(
        &self,
        groups: KeyGroups<'_>,
        counters: &mut Counters,
    ) -> Result<RecordBatch, JobError> {
        self.job.reduce_groups(groups, counters)
    }
}

struct BatchMapper<'j, J> {
    job: &'j J,
    schema: &'j JobSchema,
    outputs: Vec<RecordBatch>,
    counters: Counters,
}

impl<J: BatchJob> Mapper for BatchMapper<'_, J> {
    fn map(&mut self, input: &RecordBatch) -> Result<(), JobError> {
        let output = JobError::catch_panic(|| self.job.map_batch(input, &mut self.counters))
            .map_err(|e| match TextBatch::new(input) {
                Ok(text) if !text.is_empty() => e.at_record(text.file(), text.offsets().value(0)),
                _ => e,
            })?;
        if output.num_rows() > 0 {
            self.outputs.push(output);
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(RecordBatch, Counters), JobError> {
        let batch = concat_batches(&self.schema.key_value(), &self.outputs)
            .map_err(JobError::arrow("map output"))?;
        Ok((batch, self.counters))
    }
}
