//! Helpers for jobs over tables (CSV, JSON lines, Parquet input): grouping
//! by columns of any type, nulls included.
//!
//! A group key of one or more columns is carried through the shuffle as one
//! `Binary` map output key holding the columns in Arrow's row format. Byte
//! order of that encoding is the columns' sort order, so the engine's sort
//! and partitioning work on it unchanged, and the reduce decodes it back to
//! the typed columns.
//!
//! [`GroupIds`] is the map-side hash table of such a job: it gives each
//! distinct key of a task's batches a dense id, hashing typed values, so a
//! job folds its rows into per-id state and makes Arrow rows only once per
//! distinct key, when the mapper finishes.

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

/// Dense ids for the distinct group keys of a task's batches, from 0 in the
/// order keys first appear: a job keeps its per-group state in a `Vec`
/// indexed by id and asks [`GroupIds::keys`] for the encoded keys when it
/// is done. A key of one integer column is hashed as an `i64`, a key of
/// one string or binary column as its bytes, and any other key as its
/// Arrow row format; in every case the keys come out exactly as
/// [`KeyColumns::encode`] encodes them.
#[derive(Debug)]
pub struct GroupIds {
    columns: KeyColumns,
    table: Table,
    /// The id of the null key (one-column tables only).
    null: Option<u32>,
    len: u32,
    /// The ids of the last batch's rows.
    ids: Vec<u32>,
}

#[derive(Debug)]
enum Table {
    /// One integer column: its values as `i64` (lossless for every type
    /// this takes), indexed by id (0 at the null key's id).
    Integer {
        ids: hashbrown::HashMap<i64, u32, FxBuildHasher>,
        keys: Vec<i64>,
    },
    /// One string or binary column, by its bytes.
    Bytes(ByteKeys),
    /// Anything else, by the row format of its columns.
    Rows(ByteKeys),
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
    fn get(&self, id: u32) -> &[u8] {
        key_at(&self.data, &self.ends, id)
    }

    /// The id of `key`, `next` if it is new.
    fn id(&mut self, key: &[u8], next: u32) -> u32 {
        let hash = FxBuildHasher.hash_one(key);
        let ByteKeys { ids, data, ends } = self;
        if let Some(&id) = ids.find(hash, |&id| key_at(data, ends, id) == key) {
            return id;
        }
        ids.insert_unique(hash, next, |&id| {
            FxBuildHasher.hash_one(key_at(data, ends, id))
        });
        self.push(key);
        next
    }

    fn push(&mut self, key: &[u8]) {
        self.data.extend_from_slice(key);
        self.ends.push(self.data.len());
    }
}

fn key_at<'a>(data: &'a [u8], ends: &[usize], id: u32) -> &'a [u8] {
    let id = id as usize;
    let start = if id == 0 { 0 } else { ends[id - 1] };
    &data[start..ends[id]]
}

/// The id of each of `values` in a table of byte keys with `len` keys so
/// far, `null` the null key's id.
fn byte_ids<'a, T: AsRef<[u8]> + ?Sized + 'a>(
    keys: &mut ByteKeys,
    len: &mut u32,
    null: &mut Option<u32>,
    values: impl Iterator<Item = Option<&'a T>>,
    ids: &mut Vec<u32>,
) {
    for value in values {
        let next = *len;
        let id = match value {
            Some(value) => keys.id(value.as_ref(), next),
            None => *null.get_or_insert_with(|| {
                keys.push(&[]);
                next
            }),
        };
        *len += u32::from(id == next);
        ids.push(id);
    }
}

impl GroupIds {
    pub fn new(columns: KeyColumns) -> GroupIds {
        use DataType::*;
        let table = match columns.fields.as_slice() {
            [field] => match field.data_type() {
                Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 => Table::Integer {
                    ids: Default::default(),
                    keys: Vec::new(),
                },
                Utf8 | LargeUtf8 | Utf8View | Binary | LargeBinary | BinaryView => {
                    Table::Bytes(ByteKeys::default())
                }
                _ => Table::Rows(ByteKeys::default()),
            },
            _ => Table::Rows(ByteKeys::default()),
        };
        GroupIds {
            columns,
            table,
            null: None,
            len: 0,
            ids: Vec::new(),
        }
    }

    /// The number of distinct keys seen.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Gives each row of `batch` the id of its key, new keys the next
    /// ids; [`GroupIds::ids`] returns them.
    pub fn assign(&mut self, batch: &RecordBatch) -> Result<(), JobError> {
        let GroupIds {
            columns: key,
            table,
            null,
            len,
            ids,
        } = self;
        let columns = key.columns(batch)?;
        ids.clear();
        ids.reserve(batch.num_rows());
        match table {
            Table::Integer { ids: table, keys } => {
                let values = cast(&columns[0], &DataType::Int64)
                    .map_err(JobError::arrow("hashing group keys"))?;
                let values = values.as_primitive::<Int64Type>();
                let mut id_of = |value: Option<i64>| {
                    let next = *len;
                    let id = match value {
                        Some(value) => *table.entry(value).or_insert(next),
                        None => *null.get_or_insert(next),
                    };
                    if id == next {
                        keys.push(value.unwrap_or_default());
                        *len += 1;
                    }
                    id
                };
                if values.null_count() == 0 {
                    ids.extend(values.values().iter().map(|&v| id_of(Some(v))));
                } else {
                    ids.extend(values.iter().map(id_of));
                }
            }
            Table::Bytes(keys) => {
                let column = &columns[0];
                match column.data_type() {
                    DataType::Utf8 => {
                        byte_ids(keys, len, null, column.as_string::<i32>().iter(), ids)
                    }
                    DataType::LargeUtf8 => {
                        byte_ids(keys, len, null, column.as_string::<i64>().iter(), ids)
                    }
                    DataType::Utf8View => {
                        byte_ids(keys, len, null, column.as_string_view().iter(), ids)
                    }
                    DataType::Binary => {
                        byte_ids(keys, len, null, column.as_binary::<i32>().iter(), ids)
                    }
                    DataType::LargeBinary => {
                        byte_ids(keys, len, null, column.as_binary::<i64>().iter(), ids)
                    }
                    _ => byte_ids(keys, len, null, column.as_binary_view().iter(), ids),
                }
            }
            Table::Rows(keys) => {
                let rows = key
                    .converter()?
                    .convert_columns(&columns)
                    .map_err(JobError::arrow("encoding group keys"))?;
                for row in rows.iter() {
                    let id = keys.id(row.data(), *len);
                    *len += u32::from(id == *len);
                    ids.push(id);
                }
            }
        }
        Ok(())
    }

    /// The group id of each row of the batch last assigned.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The encoded key of each group, by id, as [`KeyColumns::encode`]
    /// encodes them.
    pub fn keys(&self) -> Result<BinaryArray, JobError> {
        let present = |id: u32| self.null != Some(id);
        let data_type = self.columns.fields[0].data_type();
        let column = match &self.table {
            Table::Integer { keys, .. } => {
                let values: Int64Array = (0..self.len)
                    .map(|id| present(id).then(|| keys[id as usize]))
                    .collect();
                cast(&values, data_type)
            }
            Table::Bytes(keys) => {
                let values: BinaryArray = (0..self.len)
                    .map(|id| present(id).then(|| keys.get(id)))
                    .collect();
                // To a string type through Utf8, which checks the bytes.
                match data_type {
                    DataType::LargeUtf8 | DataType::Utf8View => {
                        cast(&values, &DataType::Utf8).and_then(|utf8| cast(&utf8, data_type))
                    }
                    _ => cast(&values, data_type),
                }
            }
            Table::Rows(keys) => {
                return Ok((0..self.len).map(|id| Some(keys.get(id))).collect());
            }
        }
        .map_err(JobError::arrow("building group keys"))?;
        self.columns.encode_columns(&[column])
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
    use arrow::array::{Int8Array, Int64Array, StringArray, UInt32Array};
    use arrow::datatypes::Field;

    /// For keys of every kind, over two batches: the ids are dense, in the
    /// order keys first appear, equal keys share one, and `keys` encodes
    /// each id's key as `encode` does.
    #[test]
    fn group_ids_agree_with_the_encoding_for_every_kind_of_key() {
        let strings = || {
            Arc::new(StringArray::from(vec![
                Some("b"),
                None,
                Some("a"),
                Some("b"),
                None,
                Some(""),
            ])) as ArrayRef
        };
        let columns: Vec<(&str, ArrayRef)> = vec![
            (
                "int8",
                Arc::new(Int8Array::from(vec![
                    Some(-3),
                    None,
                    Some(7),
                    Some(-3),
                    None,
                    Some(0),
                ])),
            ),
            (
                "uint32",
                Arc::new(UInt32Array::from(vec![
                    4_000_000_000,
                    1,
                    4_000_000_000,
                    2,
                    1,
                    0,
                ])),
            ),
            ("utf8", strings()),
            (
                "large_utf8",
                cast(&strings(), &DataType::LargeUtf8).unwrap(),
            ),
            ("utf8_view", cast(&strings(), &DataType::Utf8View).unwrap()),
            ("binary", cast(&strings(), &DataType::Binary).unwrap()),
            (
                "binary_view",
                cast(&strings(), &DataType::BinaryView).unwrap(),
            ),
            (
                "float",
                Arc::new(arrow::array::Float64Array::from(vec![
                    Some(1.5),
                    None,
                    Some(-0.0),
                    Some(1.5),
                    None,
                    Some(0.0),
                ])),
            ),
        ];
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let batch = RecordBatch::try_new(
            schema.clone(),
            columns.iter().map(|(_, a)| a.clone()).collect(),
        )
        .unwrap();
        let mut keys: Vec<Vec<String>> = columns
            .iter()
            .map(|(name, _)| vec![name.to_string()])
            .collect();
        keys.push(vec!["int8".into(), "utf8".into()]);
        for names in keys {
            let columns = KeyColumns::new(&schema, &names).unwrap();
            let mut groups = GroupIds::new(columns.clone());
            let mut all = Vec::new();
            for part in [batch.slice(0, 3), batch.slice(3, 3)] {
                groups.assign(&part).unwrap();
                all.extend_from_slice(groups.ids());
            }
            let encoded = columns.encode(&batch).unwrap();
            let mut firsts: Vec<usize> = Vec::new();
            for (row, &id) in all.iter().enumerate() {
                match firsts.get(id as usize) {
                    Some(&first) => assert_eq!(encoded.value(first), encoded.value(row)),
                    None => {
                        assert_eq!(id as usize, firsts.len(), "{names:?}: ids are dense");
                        assert!(
                            firsts
                                .iter()
                                .all(|&f| encoded.value(f) != encoded.value(row)),
                            "{names:?}: row {row} has a key seen before"
                        );
                        firsts.push(row);
                    }
                }
            }
            assert_eq!(groups.len(), firsts.len());
            let expected: Vec<&[u8]> = firsts.iter().map(|&row| encoded.value(row)).collect();
            let found = groups.keys().unwrap();
            assert_eq!(
                found.iter().flatten().collect::<Vec<_>>(),
                expected,
                "{names:?}"
            );
        }
    }

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
