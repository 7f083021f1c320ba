//! Helpers for jobs over tables (CSV, JSON lines, Parquet input): grouping
//! by columns of any type, nulls included.
//!
//! A group key of one or more columns is carried through the shuffle as one
//! `Binary` map output key holding the columns in Arrow's row format. Byte
//! order of that encoding is the columns' sort order, so the engine's sort
//! and partitioning work on it unchanged, and the reduce decodes it back to
//! the typed columns.
//!
//! [`GroupTable`] is the map-side hash table of such a job: a state per
//! distinct key of a mapper's batches, hashed by typed values and updated
//! in place, so Arrow rows are made only once per distinct key, when the
//! mapper finishes.

use std::hash::BuildHasher;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Int64Array, RecordBatch};
use arrow::compute::{SortOptions, cast, sort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, FieldRef, Int64Type, Schema};
use arrow::row::{RowConverter, SortField};
use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

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

    /// The key columns of `batch`.
    fn columns(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>, JobError> {
        self.fields
            .iter()
            .map(|f| {
                batch
                    .column_by_name(f.name())
                    .cloned()
                    .ok_or_else(|| JobError::MissingColumn {
                        column: f.name().clone(),
                    })
            })
            .collect()
    }

    /// The group key of every row of `batch`, as one binary value per row.
    pub fn encode(&self, batch: &RecordBatch) -> Result<BinaryArray, JobError> {
        self.encode_columns(&self.columns(batch)?)
    }

    fn encode_columns(&self, columns: &[ArrayRef]) -> Result<BinaryArray, JobError> {
        self.converter()?
            .convert_columns(columns)
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

/// The map-side hash table of a table job: a state `S` per distinct group
/// key of a mapper's batches, updated row by row in place, and the keys
/// encoded once, when the mapper finishes, exactly as
/// [`KeyColumns::encode`] encodes them. A key of one integer column is
/// hashed as an `i64` with the state beside it (one memory access per
/// row); a key of one string or binary column is hashed as its bytes, and
/// any other key as its Arrow row format, with the states in a `Vec`.
#[derive(Debug)]
pub struct GroupTable<S> {
    columns: KeyColumns,
    table: Table<S>,
    /// The state of the null key (one-column tables only).
    null: Option<S>,
}

#[derive(Debug)]
enum Table<S> {
    /// One integer column, as `i64` (lossless for every type this takes).
    Integer(hashbrown::HashMap<i64, S, FxBuildHasher>),
    /// One string or binary column, by its bytes.
    Bytes(ByteKeys, Vec<S>),
    /// Anything else, by the row format of its columns.
    Rows(ByteKeys, Vec<S>),
}

/// Byte string keys in one buffer, and a hash table of their ids.
#[derive(Debug, Default)]
struct ByteKeys {
    ids: HashTable<u32>,
    data: Vec<u8>,
    /// Where key `id` ends in `data`.
    ends: Vec<usize>,
}

impl ByteKeys {
    fn get(&self, id: usize) -> &[u8] {
        key_at(&self.data, &self.ends, id as u32)
    }

    /// The state of `key`, a new one if it is new.
    fn state<'s, S: Default>(&mut self, states: &'s mut Vec<S>, key: &[u8]) -> &'s mut S {
        let hash = FxBuildHasher.hash_one(key);
        let ByteKeys { ids, data, ends } = self;
        let id = match ids.find(hash, |&id| key_at(data, ends, id) == key) {
            Some(&id) => id as usize,
            None => {
                let id = states.len();
                ids.insert_unique(hash, id as u32, |&id| {
                    FxBuildHasher.hash_one(key_at(data, ends, id))
                });
                data.extend_from_slice(key);
                ends.push(data.len());
                states.push(S::default());
                id
            }
        };
        &mut states[id]
    }
}

fn key_at<'a>(data: &'a [u8], ends: &[usize], id: u32) -> &'a [u8] {
    let id = id as usize;
    let start = if id == 0 { 0 } else { ends[id - 1] };
    &data[start..ends[id]]
}

/// Calls `update` with the state of each of `values`' keys and its row.
fn update_bytes<'a, T, S, E>(
    keys: &mut ByteKeys,
    states: &mut Vec<S>,
    null: &mut Option<S>,
    values: impl Iterator<Item = Option<&'a T>>,
    update: &mut impl FnMut(&mut S, usize) -> Result<(), E>,
) -> Result<(), E>
where
    T: AsRef<[u8]> + ?Sized + 'a,
    S: Default,
{
    for (row, value) in values.enumerate() {
        let state = match value {
            Some(value) => keys.state(states, value.as_ref()),
            None => null.get_or_insert_with(S::default),
        };
        update(state, row)?;
    }
    Ok(())
}

impl<S: Default> GroupTable<S> {
    pub fn new(columns: KeyColumns) -> GroupTable<S> {
        use DataType::*;
        let table = match columns.fields.as_slice() {
            [field] => match field.data_type() {
                Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 => {
                    Table::Integer(Default::default())
                }
                Utf8 | LargeUtf8 | Utf8View | Binary | LargeBinary | BinaryView => {
                    Table::Bytes(ByteKeys::default(), Vec::new())
                }
                _ => Table::Rows(ByteKeys::default(), Vec::new()),
            },
            _ => Table::Rows(ByteKeys::default(), Vec::new()),
        };
        GroupTable {
            columns,
            table,
            null: None,
        }
    }

    /// The number of distinct keys seen.
    pub fn len(&self) -> usize {
        let keys = match &self.table {
            Table::Integer(states) => states.len(),
            Table::Bytes(_, states) | Table::Rows(_, states) => states.len(),
        };
        keys + usize::from(self.null.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `update` with the state of each row's key (a new key starts
    /// from `S::default()`) and the row's index in `batch`, in row order.
    /// Stops at the first error `update` returns.
    pub fn update<E: From<JobError>>(
        &mut self,
        batch: &RecordBatch,
        mut update: impl FnMut(&mut S, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        let columns = self.columns.columns(batch)?;
        let null = &mut self.null;
        match &mut self.table {
            Table::Integer(states) => {
                let values = cast(&columns[0], &DataType::Int64)
                    .map_err(JobError::arrow("hashing group keys"))?;
                let values = values.as_primitive::<Int64Type>();
                if values.null_count() == 0 {
                    for (row, &value) in values.values().iter().enumerate() {
                        update(states.entry(value).or_default(), row)?;
                    }
                } else {
                    for (row, value) in values.iter().enumerate() {
                        let state = match value {
                            Some(value) => states.entry(value).or_default(),
                            None => null.get_or_insert_with(S::default),
                        };
                        update(state, row)?;
                    }
                }
            }
            Table::Bytes(keys, states) => {
                let column = &columns[0];
                let update = &mut update;
                match column.data_type() {
                    DataType::Utf8 => {
                        let values = column.as_string::<i32>().iter();
                        update_bytes(keys, states, null, values, update)?
                    }
                    DataType::LargeUtf8 => {
                        let values = column.as_string::<i64>().iter();
                        update_bytes(keys, states, null, values, update)?
                    }
                    DataType::Utf8View => {
                        let values = column.as_string_view().iter();
                        update_bytes(keys, states, null, values, update)?
                    }
                    DataType::Binary => {
                        let values = column.as_binary::<i32>().iter();
                        update_bytes(keys, states, null, values, update)?
                    }
                    DataType::LargeBinary => {
                        let values = column.as_binary::<i64>().iter();
                        update_bytes(keys, states, null, values, update)?
                    }
                    _ => {
                        let values = column.as_binary_view().iter();
                        update_bytes(keys, states, null, values, update)?
                    }
                }
            }
            Table::Rows(keys, states) => {
                let rows = self
                    .columns
                    .converter()?
                    .convert_columns(&columns)
                    .map_err(JobError::arrow("encoding group keys"))?;
                for (row, key) in rows.iter().enumerate() {
                    update(keys.state(states, key.data()), row)?;
                }
            }
        }
        Ok(())
    }

    /// The encoded key of every group, as [`KeyColumns::encode`] encodes
    /// them, and the groups' states in the same order.
    pub fn finish(self) -> Result<(BinaryArray, Vec<S>), JobError> {
        let data_type = self.columns.fields[0].data_type().clone();
        let (column, mut states): (ArrayRef, Vec<S>) = match self.table {
            Table::Integer(table) => {
                let (keys, states): (Vec<i64>, Vec<S>) = table.into_iter().unzip();
                let mut keys: Vec<Option<i64>> = keys.into_iter().map(Some).collect();
                keys.extend(self.null.is_some().then_some(None));
                (Arc::new(Int64Array::from(keys)), states)
            }
            Table::Bytes(keys, states) => {
                let mut values: Vec<Option<&[u8]>> =
                    (0..states.len()).map(|id| Some(keys.get(id))).collect();
                values.extend(self.null.is_some().then_some(None));
                (Arc::new(BinaryArray::from(values)), states)
            }
            Table::Rows(keys, states) => {
                let encoded = (0..states.len()).map(|id| Some(keys.get(id))).collect();
                return Ok((encoded, states));
            }
        };
        states.extend(self.null);
        // Back to the column's type; to a string type through Utf8, which
        // checks the bytes.
        let column = match data_type {
            DataType::LargeUtf8 | DataType::Utf8View if column.data_type() == &DataType::Binary => {
                cast(&column, &DataType::Utf8).and_then(|utf8| cast(&utf8, &data_type))
            }
            _ => cast(&column, &data_type),
        }
        .map_err(JobError::arrow("building group keys"))?;
        Ok((self.columns.encode_columns(&[column])?, states))
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
#[path = "table_tests.rs"]
mod tests;
