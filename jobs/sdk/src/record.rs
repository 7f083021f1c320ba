//! The record-level job API: map over lines with a typed emitter, reduce a
//! key and its values, and an optional combiner that folds values in a typed
//! hash table inside the map task, before anything becomes an Arrow row.

use std::marker::PhantomData;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema};
use hashbrown::HashMap;
use rustc_hash::FxBuildHasher;

use crate::value::{Key, Row, Value};
use crate::{
    Counter, Counters, JobError, JobRuntime, JobSchema, KEY_COLUMN, KeyGroups, Line, Mapper,
    Partitioning, TaskInfo, TextBatch, VALUE_COLUMN,
};

/// A job written record by record. See the crate docs for an example.
pub trait Job: Send + Sync + Sized + 'static {
    type Key: Key;
    type Value: Value;
    /// One output row: a tuple of values.
    type Output: Row;
    /// The output column names, one per element of `Output`.
    const OUTPUT_COLUMNS: &'static [&'static str];
    /// Whether [`Job::combine`] folds values on the map side.
    const COMBINE: bool = false;
    /// How keys are spread over reducers: by hash, or in key ranges so the
    /// part files read in order are sorted (see [`Partitioning`]).
    const PARTITIONING: Partitioning = Partitioning::Hash;

    /// Called once per task before any record.
    fn start_task(&self, _task: &TaskInfo) -> Result<(), JobError> {
        Ok(())
    }

    fn map(&self, line: &Line<'_>, emit: &mut Emitter<'_, Self>) -> Result<(), JobError>;

    /// Folds values of one key into one; must be associative and
    /// commutative, as it runs on any subset of a key's values in any order.
    /// Only called when `COMBINE` is true.
    fn combine(
        &self,
        _key: &Self::Key,
        _values: &mut dyn Iterator<Item = Self::Value>,
    ) -> Self::Value {
        unreachable!("combine called on a job whose COMBINE is false")
    }

    fn reduce(
        &self,
        key: &Self::Key,
        values: &mut dyn Iterator<Item = Self::Value>,
        out: &mut Output<'_, Self::Output>,
    ) -> Result<(), JobError>;
}

/// Wraps a record-level job for the engine.
pub fn record_runtime<J: Job>(job: J) -> Arc<dyn JobRuntime> {
    let fields: Vec<Field> = J::OUTPUT_COLUMNS
        .iter()
        .zip(J::Output::data_types())
        .map(|(name, data_type)| Field::new(*name, data_type, true))
        .collect();
    assert_eq!(
        fields.len(),
        J::Output::data_types().len(),
        "OUTPUT_COLUMNS must name every element of Output"
    );
    let schema = JobSchema {
        combiner: J::COMBINE,
        partitioning: J::PARTITIONING,
        ..JobSchema::over_lines(
            J::Key::data_type(),
            J::Value::data_type(),
            Arc::new(Schema::new(fields)),
        )
    };
    Arc::new(RecordRuntime { job, schema })
}

struct RecordRuntime<J> {
    job: J,
    schema: JobSchema,
}

impl<J: Job> JobRuntime for RecordRuntime<J> {
    fn schema(&self) -> &JobSchema {
        &self.schema
    }

    fn start_task(&self, task: &TaskInfo) -> Result<(), JobError> {
        self.job.start_task(task)
    }

    fn mapper(&self) -> Box<dyn Mapper + '_> {
        Box::new(RecordMapper {
            emitter: Emitter::new(&self.job),
            schema: &self.schema,
        })
    }

    fn combine(&self, groups: KeyGroups<'_>) -> Result<RecordBatch, JobError> {
        assert!(J::COMBINE, "combine called on a job without a combiner");
        let mut keys = <J::Key as Value>::Builder::default();
        let mut values = <J::Value as Value>::Builder::default();
        for_each_group::<J>(groups, |key, group| {
            let folded = self.job.combine(&key, group);
            J::Key::append(&mut keys, &key);
            J::Value::append(&mut values, &folded);
            Ok(())
        })?;
        key_value_batch(
            &self.schema,
            J::Key::finish(&mut keys),
            J::Value::finish(&mut values),
        )
    }

    fn reduce(
        &self,
        groups: KeyGroups<'_>,
        counters: &mut Counters,
    ) -> Result<RecordBatch, JobError> {
        let mut out = Output::<J::Output>::new(counters);
        for_each_group::<J>(groups, |key, group| self.job.reduce(&key, group, &mut out))?;
        let columns = J::Output::finish(&mut out.builders);
        RecordBatch::try_new(self.schema.output.clone(), columns)
            .map_err(JobError::arrow("reduce output"))
    }
}

/// Calls `f` with each group's key and an iterator over its values.
fn for_each_group<J: Job>(
    groups: KeyGroups<'_>,
    mut f: impl FnMut(J::Key, &mut dyn Iterator<Item = J::Value>) -> Result<(), JobError>,
) -> Result<(), JobError> {
    let keys = J::Key::downcast(groups.keys(), KEY_COLUMN)?;
    let values = J::Value::downcast(groups.values(), VALUE_COLUMN)?;
    for index in 0..groups.len() {
        let rows = groups.group(index);
        let key = J::Key::get(keys, rows.start);
        let mut group = rows.map(|row| J::Value::get(values, row));
        f(key, &mut group)?;
    }
    Ok(())
}

fn key_value_batch(
    schema: &JobSchema,
    keys: ArrayRef,
    values: ArrayRef,
) -> Result<RecordBatch, JobError> {
    RecordBatch::try_new(schema.key_value(), vec![keys, values])
        .map_err(JobError::arrow("map output"))
}

struct RecordMapper<'j, J: Job> {
    emitter: Emitter<'j, J>,
    schema: &'j JobSchema,
}

impl<J: Job> Mapper for RecordMapper<'_, J> {
    fn map(&mut self, input: &RecordBatch) -> Result<(), JobError> {
        let text = TextBatch::new(input)?;
        let job = self.emitter.job;
        for row in 0..text.len() {
            let line = text.line(row);
            let emitter = &mut self.emitter;
            // Catching here, per record, lets the error name the record.
            JobError::catch_panic(|| job.map(&line, emitter))
                .map_err(|e| e.at_record(line.file, line.offset))?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(RecordBatch, Counters), JobError> {
        let (keys, values, counters) = self.emitter.finish();
        Ok((key_value_batch(self.schema, keys, values)?, counters))
    }
}

/// Where `map` sends its key/value pairs. With a combiner, values of equal
/// keys are folded in a hash table as they arrive; without one, pairs are
/// appended to Arrow builders directly.
pub struct Emitter<'j, J: Job> {
    job: &'j J,
    sink: Sink<J>,
    counters: Counters,
}

enum Sink<J: Job> {
    Combining(HashMap<J::Key, J::Value, FxBuildHasher>),
    Direct {
        keys: <J::Key as Value>::Builder,
        values: <J::Value as Value>::Builder,
    },
}

impl<'j, J: Job> Emitter<'j, J> {
    fn new(job: &'j J) -> Self {
        let sink = if J::COMBINE {
            Sink::Combining(HashMap::default())
        } else {
            Sink::Direct {
                keys: Default::default(),
                values: Default::default(),
            }
        };
        Emitter {
            job,
            sink,
            counters: Counters::default(),
        }
    }

    /// A user counter of this map task, e.g. `emit.counter("bad_rows").add(1)`.
    pub fn counter(&mut self, name: &str) -> Counter<'_> {
        self.counters.counter(name)
    }

    /// Emits one key/value pair.
    pub fn emit(&mut self, key: &<J::Key as Key>::Borrowed, value: J::Value) {
        match &mut self.sink {
            Sink::Combining(table) => match table.get_key_value_mut(key) {
                Some((key, folded)) => {
                    let previous = std::mem::take(folded);
                    *folded = self.job.combine(key, &mut [previous, value].into_iter());
                }
                None => {
                    table.insert(J::Key::from_borrowed(key), value);
                }
            },
            Sink::Direct { keys, values } => {
                J::Key::append(keys, &J::Key::from_borrowed(key));
                J::Value::append(values, &value);
            }
        }
    }

    fn finish(self) -> (ArrayRef, ArrayRef, Counters) {
        let (keys, values) = match self.sink {
            Sink::Combining(table) => {
                let mut keys = <J::Key as Value>::Builder::default();
                let mut values = <J::Value as Value>::Builder::default();
                for (key, value) in &table {
                    J::Key::append(&mut keys, key);
                    J::Value::append(&mut values, value);
                }
                (J::Key::finish(&mut keys), J::Value::finish(&mut values))
            }
            Sink::Direct {
                mut keys,
                mut values,
            } => (J::Key::finish(&mut keys), J::Value::finish(&mut values)),
        };
        (keys, values, self.counters)
    }
}

/// Where `reduce` sends its output rows.
pub struct Output<'c, R: Row> {
    builders: R::Builders,
    counters: &'c mut Counters,
    _row: PhantomData<R>,
}

impl<'c, R: Row> Output<'c, R> {
    fn new(counters: &'c mut Counters) -> Self {
        Output {
            builders: R::Builders::default(),
            counters,
            _row: PhantomData,
        }
    }

    pub fn push(&mut self, row: R) {
        row.append(&mut self.builders);
    }

    /// A user counter of this reduce task, e.g. `out.counter("keys").add(1)`.
    pub fn counter(&mut self, name: &str) -> Counter<'_> {
        self.counters.counter(name)
    }
}
