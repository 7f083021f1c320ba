//! Built-in table job `distinct --arg columns=A,B`: every distinct
//! combination of the values of the named columns (nulls included), once.
//!
//! Batch-level: the map keeps each key once in a hash table of typed keys
//! ([`GroupTable`]) and emits them when it finishes; the combiner and the
//! reduce keep the first row of each group again, and the reduce decodes
//! the key back to the columns.

use std::sync::Arc;

use harrow_sdk::arrow::array::{Array, NullArray, RecordBatch};
use harrow_sdk::arrow::datatypes::{DataType, Schema};
use harrow_sdk::arrow::error::ArrowError;
use harrow_sdk::table::{GroupTable, KeyColumns};
use harrow_sdk::{
    ArgSpec, BatchJob, Counters, JobArgs, JobDefinition, JobError, JobSchema, KeyGroups, Mapper,
};

pub const DEFINITION: JobDefinition = JobDefinition {
    name: "distinct",
    summary: "the distinct combinations of some columns (table input)",
    args: &[ArgSpec {
        name: "columns",
        help: "comma-separated column names, e.g. columns=city,year",
        required: true,
    }],
    create: |args: &JobArgs| Ok(harrow_sdk::batch_runtime(Distinct::new(args)?)),
};

#[derive(Debug, Clone)]
pub struct Distinct {
    key: KeyColumns,
    schema: JobSchema,
}

impl Distinct {
    pub fn new(args: &JobArgs) -> Result<Self, JobError> {
        let raw: String = args.require("columns")?;
        let names: Vec<String> = raw
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect();
        if names.is_empty() {
            return Err(JobError::InvalidArgument {
                name: "columns".into(),
                value: raw,
                reason: "name at least one column".into(),
            });
        }
        let key = KeyColumns::new(args.input_schema(), &names)?;
        let schema = JobSchema {
            key: DataType::Binary,
            value: DataType::Null,
            output: Arc::new(Schema::new(key.fields())),
            combiner: true,
            input_columns: Some(key.names()),
            partitioning: harrow_sdk::Partitioning::Hash,
            generated: None,
        };
        Ok(Distinct { key, schema })
    }
}

impl BatchJob for Distinct {
    fn schema(&self) -> JobSchema {
        self.schema.clone()
    }

    fn mapper(&self) -> Option<Box<dyn Mapper + '_>> {
        Some(Box::new(Keys {
            schema: &self.schema,
            groups: GroupTable::new(self.key.clone()),
        }))
    }

    fn combine_groups(&self, groups: KeyGroups<'_>) -> Result<RecordBatch, JobError> {
        groups.first_rows()
    }

    fn reduce_groups(
        &self,
        groups: KeyGroups<'_>,
        _counters: &mut Counters,
    ) -> Result<RecordBatch, JobError> {
        let firsts = groups.first_rows()?;
        let columns = self.key.decode(firsts.column(0))?;
        RecordBatch::try_new(self.schema.output.clone(), columns).map_err(arrow_error)
    }
}

/// The map side: the distinct keys seen.
struct Keys<'a> {
    schema: &'a JobSchema,
    groups: GroupTable<()>,
}

impl Mapper for Keys<'_> {
    fn map(&mut self, input: &RecordBatch) -> Result<(), JobError> {
        self.groups.update(input, |_, _| Ok::<_, JobError>(()))
    }

    fn finish(self: Box<Self>) -> Result<(RecordBatch, Counters), JobError> {
        let (keys, _) = self.groups.finish()?;
        let rows = keys.len();
        let batch = RecordBatch::try_new(
            self.schema.key_value(),
            vec![Arc::new(keys), Arc::new(NullArray::new(rows))],
        )
        .map_err(arrow_error)?;
        Ok((batch, Counters::default()))
    }
}

fn arrow_error(source: ArrowError) -> JobError {
    JobError::job(format!("distinct: {source}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use harrow_sdk::arrow::array::{Int64Array, StringArray};
    use harrow_sdk::arrow::datatypes::Field;
    use harrow_sdk::testing::run_local;

    #[test]
    fn keeps_each_combination_once() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("city", DataType::Utf8, true),
            Field::new("year", DataType::Int64, true),
            Field::new("other", DataType::Int64, true),
        ]));
        let batch = |cities: Vec<Option<&str>>, years: Vec<Option<i64>>| {
            let n = cities.len();
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(cities)),
                    Arc::new(Int64Array::from(years)),
                    Arc::new(Int64Array::from(vec![0; n])),
                ],
            )
            .unwrap()
        };
        let a = batch(
            vec![Some("oslo"), Some("oslo"), None, Some("rome")],
            vec![Some(2020), Some(2020), Some(1), None],
        );
        let b = batch(vec![None, Some("oslo")], vec![Some(1), Some(2021)]);
        let args = JobArgs::parse_pairs(["columns=city, year"])
            .unwrap()
            .with_input_schema(schema.clone());
        let job = DEFINITION.instantiate(&args).unwrap();
        let run = run_local(job.as_ref(), &[a, b]).unwrap();
        let lines = run.lines().unwrap();
        assert_eq!(lines, ["\t1", "oslo\t2020", "oslo\t2021", "rome\t"]);
        assert_eq!(run.output.schema().fields().len(), 2);
    }

    #[test]
    fn needs_columns_that_exist() {
        let args = JobArgs::parse_pairs(["columns= ,"]).unwrap();
        let error = DEFINITION.instantiate(&args).err().unwrap().to_string();
        assert!(error.contains("name at least one column"), "{error}");
        let args = JobArgs::parse_pairs(["columns=line,nope"]).unwrap();
        let error = DEFINITION.instantiate(&args).err().unwrap().to_string();
        assert!(error.contains("column(s) nope"), "{error}");
    }
}
