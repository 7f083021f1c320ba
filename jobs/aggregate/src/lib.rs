//! Built-in table job `aggregate --arg key=COL --arg value=COL`: per
//! distinct value of the key column, the count of non-null values of the
//! value column, their sum, minimum, maximum and mean. Rows whose key is
//! null form one group, as in SQL's GROUP BY.
//!
//! Integer value columns are summed as Int64 (an overflow fails the job
//! rather than wrapping); floating point and decimal ones as Float64.
//!
//! Written against the batch-level API. The map folds each row into its
//! group's partial aggregate (count, sum, min, max) in a hash table of
//! typed keys ([`GroupTable`]), so a mapper's output is one row per key it
//! saw; the combiner folds partial rows again with Arrow's aggregate
//! kernels, and the reduce folds them a last time and adds the mean.

use std::sync::Arc;

use harrow_sdk::arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, Float64Array, Int64Array, PrimitiveArray,
    RecordBatch, StructArray,
};
use harrow_sdk::arrow::compute::cast;
use harrow_sdk::arrow::compute::kernels::aggregate::{max, min, sum_checked};
use harrow_sdk::arrow::datatypes::{
    ArrowNativeTypeOp, DataType, Field, Fields, Float64Type, Int64Type, Schema,
};
use harrow_sdk::arrow::error::ArrowError;
use harrow_sdk::table::{GroupTable, KeyColumns};
use harrow_sdk::{
    ArgSpec, BatchJob, Counters, JobArgs, JobDefinition, JobError, JobSchema, KeyGroups, Mapper,
};

pub const DEFINITION: JobDefinition = JobDefinition {
    name: "aggregate",
    summary: "count, sum, min, max and mean of a numeric column per key (table input)",
    args: &[
        ArgSpec {
            name: "key",
            help: "the column to group by (any type)",
            required: true,
        },
        ArgSpec {
            name: "value",
            help: "the numeric column to aggregate",
            required: true,
        },
    ],
    create: |args: &JobArgs| Ok(harrow_sdk::batch_runtime(Aggregate::new(args)?)),
};

/// The output columns after the key.
const STATISTICS: [&str; 5] = ["count", "sum", "min", "max", "mean"];

/// How the value column is summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Numeric {
    Integer,
    Float,
}

impl Numeric {
    fn of(data_type: &DataType) -> Option<Numeric> {
        use DataType::*;
        match data_type {
            Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 => Some(Numeric::Integer),
            UInt64 | Float16 | Float32 | Float64 | Decimal32(..) | Decimal64(..)
            | Decimal128(..) | Decimal256(..) => Some(Numeric::Float),
            _ => None,
        }
    }

    fn data_type(self) -> DataType {
        match self {
            Numeric::Integer => DataType::Int64,
            Numeric::Float => DataType::Float64,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Aggregate {
    key: KeyColumns,
    value: String,
    numeric: Numeric,
    /// The partial aggregate of a group: count, sum, min, max.
    partial: Fields,
    schema: JobSchema,
}

impl Aggregate {
    pub fn new(args: &JobArgs) -> Result<Self, JobError> {
        let key_name: String = args.require("key")?;
        let value: String = args.require("value")?;
        let input = args.input_schema();
        let key = KeyColumns::new(input, std::slice::from_ref(&key_name))?;
        if STATISTICS.contains(&key_name.as_str()) {
            return Err(JobError::InvalidArgument {
                name: "key".into(),
                value: key_name,
                reason: format!(
                    "the output names its statistics {}; a key column cannot share a name with them",
                    STATISTICS.join(", ")
                ),
            });
        }
        let value_type = KeyColumns::new(input, std::slice::from_ref(&value))?.fields()[0]
            .data_type()
            .clone();
        let numeric = Numeric::of(&value_type).ok_or_else(|| JobError::InvalidArgument {
            name: "value".into(),
            value: value.clone(),
            reason: format!("the column is {value_type}, not a number"),
        })?;
        let t = numeric.data_type();
        let partial = Fields::from(vec![
            Field::new("count", DataType::Int64, false),
            Field::new("sum", t.clone(), true),
            Field::new("min", t.clone(), true),
            Field::new("max", t.clone(), true),
        ]);
        let mut output: Vec<Field> = key.fields().iter().map(|f| f.as_ref().clone()).collect();
        output.extend(partial.iter().map(|f| f.as_ref().clone()));
        output.push(Field::new("mean", DataType::Float64, true));
        let schema = JobSchema {
            key: DataType::Binary,
            value: DataType::Struct(partial.clone()),
            output: Arc::new(Schema::new(output)),
            combiner: true,
            input_columns: Some(vec![key_name, value.clone()]),
            partitioning: harrow_sdk::Partitioning::Hash,
            generated: None,
        };
        Ok(Aggregate {
            key,
            value,
            numeric,
            partial,
            schema,
        })
    }

    /// One partial row per group: the sums of counts and sums, the minimum
    /// of minimums, the maximum of maximums.
    fn fold(&self, groups: KeyGroups<'_>) -> Result<RecordBatch, JobError> {
        let partials = groups.values().as_struct();
        let (count, sum, min, max) = match self.numeric {
            Numeric::Integer => fold_typed::<Int64Type>(partials, &groups)?,
            Numeric::Float => fold_typed::<Float64Type>(partials, &groups)?,
        };
        let keys = groups.first_rows()?.column(0).clone();
        let values = StructArray::try_new(self.partial.clone(), vec![count, sum, min, max], None)
            .map_err(arrow_error)?;
        RecordBatch::try_new(self.schema.key_value(), vec![keys, Arc::new(values)])
            .map_err(arrow_error)
    }
}

/// Folds each group's partial columns with the aggregate kernels.
fn fold_typed<T>(
    partials: &StructArray,
    groups: &KeyGroups<'_>,
) -> Result<(ArrayRef, ArrayRef, ArrayRef, ArrayRef), JobError>
where
    T: ArrowPrimitiveType,
    T::Native: harrow_sdk::arrow::datatypes::ArrowNativeTypeOp,
{
    let counts = partials.column(0).as_primitive::<Int64Type>();
    let sums = partials.column(1).as_primitive::<T>();
    let mins = partials.column(2).as_primitive::<T>();
    let maxs = partials.column(3).as_primitive::<T>();
    let mut count = Vec::with_capacity(groups.len());
    let (mut sum, mut low, mut high) = (Vec::new(), Vec::new(), Vec::new());
    for index in 0..groups.len() {
        let range = groups.group(index);
        if range.len() == 1 {
            // Most groups of a batch with many keys: no kernel call needed.
            let row = range.start;
            let value = |a: &PrimitiveArray<T>| a.is_valid(row).then(|| a.value(row));
            count.push(counts.value(row));
            sum.push(value(sums));
            low.push(value(mins));
            high.push(value(maxs));
            continue;
        }
        let slice = |a: &PrimitiveArray<T>| a.slice(range.start, range.len());
        count.push(
            sum_checked(&counts.slice(range.start, range.len()))
                .map_err(overflow)?
                .unwrap_or(0),
        );
        sum.push(sum_checked(&slice(sums)).map_err(overflow)?);
        low.push(min(&slice(mins)));
        high.push(max(&slice(maxs)));
    }
    let array = |values: Vec<Option<T::Native>>| -> ArrayRef {
        Arc::new(PrimitiveArray::<T>::from_iter(values))
    };
    Ok((
        Arc::new(Int64Array::from(count)),
        array(sum),
        array(low),
        array(high),
    ))
}

impl BatchJob for Aggregate {
    fn schema(&self) -> JobSchema {
        self.schema.clone()
    }

    fn mapper(&self) -> Option<Box<dyn Mapper + '_>> {
        Some(match self.numeric {
            Numeric::Integer => Box::new(Folding::<Int64Type>::new(self)),
            Numeric::Float => Box::new(Folding::<Float64Type>::new(self)),
        })
    }

    fn combine_groups(&self, groups: KeyGroups<'_>) -> Result<RecordBatch, JobError> {
        self.fold(groups)
    }

    fn reduce_groups(
        &self,
        groups: KeyGroups<'_>,
        _counters: &mut Counters,
    ) -> Result<RecordBatch, JobError> {
        let folded = self.fold(groups)?;
        let partials = folded.column(1).as_struct();
        let counts = partials.column(0).as_primitive::<Int64Type>();
        let sums = cast(partials.column(1), &DataType::Float64).map_err(arrow_error)?;
        let sums = sums.as_primitive::<Float64Type>();
        let mean: Float64Array = (0..folded.num_rows())
            .map(|row| {
                let count = counts.value(row);
                (count > 0 && sums.is_valid(row)).then(|| sums.value(row) / count as f64)
            })
            .collect();
        let mut columns = self.key.decode(folded.column(0))?;
        columns.extend(partials.columns().iter().cloned());
        columns.push(Arc::new(mean));
        RecordBatch::try_new(self.schema.output.clone(), columns).map_err(arrow_error)
    }
}

/// The map side: each group's partial aggregate, updated in place in a
/// hash table of the keys.
struct Folding<'a, T: ArrowPrimitiveType> {
    job: &'a Aggregate,
    groups: GroupTable<Partial<T::Native>>,
}

/// A group's count of non-null values and, when it is not 0, their sum,
/// minimum and maximum.
#[derive(Debug, Clone, Copy)]
struct Partial<N> {
    count: i64,
    sum: N,
    min: N,
    max: N,
}

impl<N: ArrowNativeTypeOp> Default for Partial<N> {
    fn default() -> Self {
        Partial {
            count: 0,
            sum: N::ZERO,
            min: N::ZERO,
            max: N::ZERO,
        }
    }
}

impl<N: ArrowNativeTypeOp> Partial<N> {
    #[inline]
    fn add(&mut self, value: N) -> Result<(), JobError> {
        if self.count == 0 {
            *self = Partial {
                count: 1,
                sum: value,
                min: value,
                max: value,
            };
            return Ok(());
        }
        self.count += 1;
        self.sum = self.sum.add_checked(value).map_err(overflow)?;
        if value.is_lt(self.min) {
            self.min = value;
        }
        if value.is_gt(self.max) {
            self.max = value;
        }
        Ok(())
    }
}

impl<'a, T: ArrowPrimitiveType> Folding<'a, T>
where
    T::Native: ArrowNativeTypeOp,
{
    fn new(job: &'a Aggregate) -> Self {
        Folding {
            job,
            groups: GroupTable::new(job.key.clone()),
        }
    }
}

impl<T: ArrowPrimitiveType> Mapper for Folding<'_, T>
where
    T::Native: ArrowNativeTypeOp,
{
    fn map(&mut self, input: &RecordBatch) -> Result<(), JobError> {
        let column = &self.job.value;
        let values = input
            .column_by_name(column)
            .ok_or_else(|| JobError::MissingColumn {
                column: column.clone(),
            })?;
        let values = cast(values, &T::DATA_TYPE).map_err(arrow_error)?;
        let values = values.as_primitive::<T>();
        let data = values.values();
        match values.nulls().filter(|nulls| nulls.null_count() > 0) {
            None => self
                .groups
                .update(input, |partial, row| partial.add(data[row])),
            Some(nulls) => self
                .groups
                .update(input, |partial, row| match nulls.is_valid(row) {
                    true => partial.add(data[row]),
                    false => Ok(()),
                }),
        }
    }

    fn finish(self: Box<Self>) -> Result<(RecordBatch, Counters), JobError> {
        let (keys, partials) = self.groups.finish()?;
        let statistic = |of: fn(&Partial<T::Native>) -> T::Native| -> ArrayRef {
            Arc::new(
                partials
                    .iter()
                    .map(|p| (p.count > 0).then(|| of(p)))
                    .collect::<PrimitiveArray<T>>(),
            )
        };
        let columns = vec![
            Arc::new(Int64Array::from_iter_values(
                partials.iter().map(|p| p.count),
            )) as ArrayRef,
            statistic(|p| p.sum),
            statistic(|p| p.min),
            statistic(|p| p.max),
        ];
        let values =
            StructArray::try_new(self.job.partial.clone(), columns, None).map_err(arrow_error)?;
        let batch = RecordBatch::try_new(
            self.job.schema.key_value(),
            vec![Arc::new(keys), Arc::new(values)],
        )
        .map_err(arrow_error)?;
        Ok((batch, Counters::default()))
    }
}

fn arrow_error(source: ArrowError) -> JobError {
    JobError::job(format!("aggregate: {source}"))
}

fn overflow(source: ArrowError) -> JobError {
    JobError::job(format!("aggregate: the sum overflows Int64: {source}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use harrow_sdk::arrow::array::StringArray;
    use harrow_sdk::testing::run_local;

    fn input(cities: Vec<Option<&str>>, values: Vec<Option<i32>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("city", DataType::Utf8, true),
            Field::new("n", DataType::Int32, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(cities)),
                Arc::new(harrow_sdk::arrow::array::Int32Array::from(values)),
            ],
        )
        .unwrap()
    }

    fn args(batch: &RecordBatch, pairs: &[&str]) -> JobArgs {
        JobArgs::parse_pairs(pairs)
            .unwrap()
            .with_input_schema(batch.schema())
    }

    #[test]
    fn aggregates_per_key_across_batches_with_nulls() {
        let a = input(
            vec![Some("oslo"), Some("rome"), None, Some("oslo")],
            vec![Some(3), None, Some(7), Some(-1)],
        );
        let b = input(vec![Some("rome"), Some("oslo")], vec![Some(10), Some(4)]);
        let job = DEFINITION
            .instantiate(&args(&a, &["key=city", "value=n"]))
            .unwrap();
        let run = run_local(job.as_ref(), &[a, b]).unwrap();
        let lines = run.lines().unwrap();
        assert_eq!(
            lines,
            [
                "\t1\t7\t7\t7\t7.0",
                "oslo\t3\t6\t-1\t4\t2.0",
                "rome\t1\t10\t10\t10\t10.0"
            ]
        );
        assert_eq!(run.output.schema().field(2).data_type(), &DataType::Int64);
    }

    #[test]
    fn a_group_of_nulls_has_no_sum_or_mean() {
        let a = input(vec![Some("x")], vec![None]);
        let job = DEFINITION
            .instantiate(&args(&a, &["key=city", "value=n"]))
            .unwrap();
        let lines = run_local(job.as_ref(), &[a]).unwrap().lines().unwrap();
        assert_eq!(lines, ["x\t0\t\t\t\t"]);
    }

    #[test]
    fn refuses_columns_it_cannot_use() {
        let a = input(vec![], vec![]);
        let error = |pairs: &[&str]| {
            DEFINITION
                .instantiate(&args(&a, pairs))
                .err()
                .unwrap()
                .to_string()
        };
        assert!(error(&["key=town", "value=n"]).contains("(it has: city, n)"));
        assert!(error(&["key=city", "value=city"]).contains("is Utf8, not a number"));
        assert!(error(&["key=city"]).contains("missing required argument `value`"));
    }
}
