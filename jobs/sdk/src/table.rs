//! Helpers for jobs over tables (CSV, JSON lines, Parquet input): grouping
//! by columns of any type, nulls included.
//!
//! A group key of one or more columns is carried through the shuffle as one
//! `Binary` map output key holding the columns in Arrow's row format. Byte
//! order of that encoding is the columns' sort order, so the engine's sort
//! and partitioning work on it unchanged, and the reduce decodes it back to
//! the typed columns.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryArray, RecordBatch};
use arrow::compute::{SortOptions, sort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, FieldRef, Schema};
use arrow::row::{RowConverter, SortField};

use crate::{JobError, group_bounds};

/// The columns a table job groups by, with their input types.
#[derive(Debug, Clone)]
pub struct KeyColumns {
    fields: Vec<FieldRef>,
}

impl KeyColumns {
    /// `names` must be columns of `input`; the error lists the ones it has.
    pub fn new(input: &Schema, names: &[String]) -> Result<Self, JobError> {
        let mut fields = Vec::with_capacity(names.len());
        for name in names {
            let field = input
                .field_with_name(name)
                .map_err(|_| JobError::InputColumns {
                    missing: name.clone(),
                    available: column_names(input),
                    hint: String::new(),
                })?;
            fields.push(Arc::new(field.clone()));
        }
        Ok(KeyColumns { fields })
    }

    /// The key columns, as the output declares them: nullable, since a
    /// group of nulls is a group.
    pub fn fields(&self) -> Vec<FieldRef> {
        self.fields
            .iter()
            .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
            .collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.fields.iter().map(|f| f.name().clone()).collect()
    }

    fn converter(&self) -> Result<RowConverter, JobError> {
        let sort_fields = self
            .fields
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        RowConverter::new(sort_fields).map_err(JobError::arrow("encoding group keys"))
    }

    /// The group key of every row of `batch`, as one binary value per row.
    pub fn encode(&self, batch: &RecordBatch) -> Result<BinaryArray, JobError> {
        let columns = self
            .fields
            .iter()
            .map(|f| {
                batch
                    .column_by_name(f.name())
                    .cloned()
                    .ok_or_else(|| JobError::MissingColumn {
                        column: f.name().clone(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.converter()?
            .convert_columns(&columns)
            .and_then(|rows| rows.try_into_binary())
            .map_err(JobError::arrow("encoding group keys"))
    }

    /// The typed key columns of encoded keys.
    pub fn decode(&self, keys: &ArrayRef) -> Result<Vec<ArrayRef>, JobError> {
        let binary =
            keys.as_any()
                .downcast_ref::<BinaryArray>()
                .ok_or_else(|| JobError::ColumnType {
                    column: crate::KEY_COLUMN.to_string(),
                    expected: DataType::Binary,
                    found: keys.data_type().clone(),
                })?;
        let converter = self.converter()?;
        let rows = converter.from_binary(binary.clone());
        converter
            .convert_rows(&rows)
            .map_err(JobError::arrow("decoding group keys"))
    }
}

/// The names of `schema`'s columns, joined by `, `, for error messages.
pub fn column_names(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `batch` sorted by its first (key) column, and the bounds of its groups
/// of equal keys (see [`crate::KeyGroups`]).
pub fn sort_into_groups(batch: &RecordBatch) -> Result<(RecordBatch, Vec<usize>), JobError> {
    let indices = sort_to_indices(batch.column(0), Some(SortOptions::default()), None)
        .map_err(JobError::arrow("sorting by key"))?;
    let sorted = take_record_batch(batch, &indices).map_err(JobError::arrow("sorting by key"))?;
    let bounds = group_bounds(sorted.column(0)).map_err(JobError::arrow("grouping by key"))?;
    Ok((sorted, bounds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::Field;

    #[test]
    fn keys_of_several_columns_with_nulls_survive_encoding_in_order() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("city", DataType::Utf8, true),
            Field::new("year", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![
                    Some("b"),
                    None,
                    Some("a"),
                    Some("a"),
                ])),
                Arc::new(Int64Array::from(vec![Some(1), Some(2), None, Some(-5)])),
            ],
        )
        .unwrap();
        let keys = KeyColumns::new(&schema, &["city".into(), "year".into()]).unwrap();
        let encoded: ArrayRef = Arc::new(keys.encode(&batch).unwrap());
        assert_eq!(keys.decode(&encoded).unwrap(), batch.columns());
        // Byte order is the rows' sort order, nulls first in each column:
        // (null, 2), (a, null), (a, -5), (b, 1).
        let mut order: Vec<usize> = (0..4).collect();
        let binary = encoded.as_any().downcast_ref::<BinaryArray>().unwrap();
        order.sort_by_key(|&i| binary.value(i).to_vec());
        assert_eq!(order, [1, 2, 3, 0]);
        let error = KeyColumns::new(&schema, &["nope".into()]).unwrap_err();
        assert!(
            error.to_string().contains("(it has: city, year)"),
            "{error}"
        );
    }
}
