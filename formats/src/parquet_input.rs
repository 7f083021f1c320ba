//! Reading a split of a Parquet file: the row groups whose midpoint lies in
//! the split's byte range (as Hadoop and Spark assign them, so each row
//! group belongs to exactly one split), only the columns the job reads.
//!
//! The footer and the column chunks come through `object_store` ranged
//! reads; each row group is fetched on the async runtime and decoded on the
//! rayon pool by a synchronous reader.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{Schema, SchemaRef};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use harrow_core::task::Split;
use harrow_sdk::table::column_names;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReader};
use parquet::arrow::async_reader::{
    AsyncFileReader, ParquetRecordBatchStream, ParquetRecordBatchStreamBuilder,
};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader, RowGroupMetaData};

use crate::input::InputError;
use crate::limits::BATCH_ROWS;

/// A Parquet file in an object store, as the async Parquet reader sees it.
struct StoreFile {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

impl AsyncFileReader for StoreFile {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        // object_store coalesces nearby ranges into fewer requests.
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let size = self.size;
        async move {
            let metadata = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(64 << 10))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

async fn open_file(
    store: Arc<dyn ObjectStore>,
    path: Path,
    location: &str,
    size: u64,
) -> Result<ParquetRecordBatchStreamBuilder<StoreFile>, InputError> {
    ParquetRecordBatchStreamBuilder::new(StoreFile { store, path, size })
        .await
        .map_err(|source| InputError::Parquet {
            location: location.to_string(),
            source,
        })
}

/// The Arrow schema of a Parquet file, without its metadata.
pub async fn parquet_schema(
    store: Arc<dyn ObjectStore>,
    path: Path,
    location: &str,
    size: u64,
) -> Result<SchemaRef, InputError> {
    let builder = open_file(store, path, location, size).await?;
    Ok(Arc::new(Schema::new(builder.schema().fields().clone())))
}

/// The byte range a row group's column chunks cover.
fn row_group_bytes(row_group: &RowGroupMetaData) -> Range<u64> {
    let ranges = row_group.columns().iter().map(|c| {
        let (start, len) = c.byte_range();
        start..start + len
    });
    ranges
        .reduce(|a, b| a.start.min(b.start)..a.end.max(b.end))
        .unwrap_or(0..0)
}

/// The row groups of a file whose midpoint lies in `[start, end)`.
pub fn owned_row_groups(metadata: &ParquetMetaData, start: u64, end: u64) -> Vec<usize> {
    metadata
        .row_groups()
        .iter()
        .enumerate()
        .filter(|(_, row_group)| {
            let bytes = row_group_bytes(row_group);
            let middle = bytes.start + (bytes.end - bytes.start) / 2;
            (start..end).contains(&middle)
        })
        .map(|(index, _)| index)
        .collect()
}

/// The row groups of one split, one at a time.
pub struct ParquetSplit {
    stream: ParquetRecordBatchStream<StoreFile>,
    location: String,
    /// The columns the job reads, with the planned types.
    target: SchemaRef,
    /// Compressed bytes of the row groups still to come, in order.
    sizes: std::vec::IntoIter<u64>,
}

/// A fetched row group: decode it with [`RowGroup::batches`] on a CPU thread.
pub struct RowGroup {
    reader: ParquetRecordBatchReader,
    location: String,
    target: SchemaRef,
    pub bytes: u64,
}

impl ParquetSplit {
    /// `target`: the planned schema of the columns the job reads.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        path: Path,
        split: &Split,
        target: SchemaRef,
    ) -> Result<Self, InputError> {
        let location = split.location.clone();
        let builder = open_file(store, path, &location, split.file_size).await?;
        let row_groups = owned_row_groups(builder.metadata(), split.start, split.end);
        let file_schema = builder.schema().clone();
        let mut roots = Vec::new();
        for field in target.fields() {
            let index =
                file_schema
                    .index_of(field.name())
                    .map_err(|_| InputError::ParquetSchema {
                        location: location.clone(),
                        reason: format!(
                            "no column `{}` (it has: {})",
                            field.name(),
                            column_names(&file_schema)
                        ),
                    })?;
            roots.push(index);
        }
        let sizes: Vec<u64> = row_groups
            .iter()
            .map(|&i| builder.metadata().row_group(i).compressed_size().max(0) as u64)
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let stream = builder
            .with_projection(mask)
            .with_row_groups(row_groups)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|source| InputError::Parquet {
                location: location.clone(),
                source,
            })?;
        Ok(ParquetSplit {
            stream,
            location,
            target,
            sizes: sizes.into_iter(),
        })
    }

    /// Fetches the next row group, or `None` after the last.
    pub async fn next_row_group(&mut self) -> Result<Option<RowGroup>, InputError> {
        let reader = self
            .stream
            .next_row_group()
            .await
            .map_err(|source| InputError::Parquet {
                location: self.location.clone(),
                source,
            })?;
        Ok(reader.map(|reader| RowGroup {
            reader,
            location: self.location.clone(),
            target: self.target.clone(),
            bytes: self.sizes.next().unwrap_or(0),
        }))
    }
}

impl RowGroup {
    /// Decodes the row group into batches of the target schema, casting
    /// columns whose type in this file differs from the planned one.
    pub fn batches(self) -> Result<Vec<RecordBatch>, InputError> {
        let location = self.location;
        let target = self.target;
        let mut out = Vec::new();
        for batch in self.reader {
            let batch = batch.map_err(|e| InputError::Parquet {
                location: location.clone(),
                source: ParquetError::ArrowError(e.to_string()),
            })?;
            let columns = target
                .fields()
                .iter()
                .map(|field| {
                    let column = batch
                        .column_by_name(field.name())
                        .expect("the projection holds every target column");
                    if column.data_type() == field.data_type() {
                        Ok(column.clone())
                    } else {
                        cast(column, field.data_type()).map_err(|e| InputError::ParquetSchema {
                            location: location.clone(),
                            reason: format!(
                                "column `{}` is {}, which does not convert to the planned {}: {e}",
                                field.name(),
                                column.data_type(),
                                field.data_type()
                            ),
                        })
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            let batch = RecordBatch::try_new(target.clone(), columns).map_err(|e| {
                InputError::ParquetSchema {
                    location: location.clone(),
                    reason: e.to_string(),
                }
            })?;
            out.push(batch);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field};
    use object_store::memory::InMemory;
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    use proptest::prelude::*;

    /// A Parquet file of `groups` row groups of `rows` rows: n = 0, 1, ...
    fn file(groups: usize, rows: usize) -> Vec<u8> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("twice", DataType::Int64, false),
        ]));
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(rows))
            .build();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, schema.clone(), Some(properties)).unwrap();
        let n: Vec<i64> = (0..(groups * rows) as i64).collect();
        let twice: Vec<i64> = n.iter().map(|n| n * 2).collect();
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(n)),
                Arc::new(Int64Array::from(twice)),
            ],
        )
        .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        out
    }

    /// Every `n` read over splits of `split_size`, and the target column cast to Utf8.
    fn read_all(bytes: Vec<u8>, split_size: u64) -> Vec<i64> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            let path = Path::from("t.parquet");
            let size = bytes.len() as u64;
            store.put(&path, bytes.into()).await.unwrap();
            let target = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
            let mut seen = Vec::new();
            let mut start = 0;
            while start < size {
                let end = (start + split_size).min(size);
                let split = Split {
                    location: "t.parquet".into(),
                    start,
                    end,
                    file_size: size,
                };
                let mut reader =
                    ParquetSplit::open(store.clone(), path.clone(), &split, target.clone())
                        .await
                        .unwrap();
                while let Some(group) = reader.next_row_group().await.unwrap() {
                    for batch in group.batches().unwrap() {
                        assert_eq!(batch.num_columns(), 1);
                        let n = batch
                            .column(0)
                            .as_any()
                            .downcast_ref::<Int64Array>()
                            .unwrap();
                        seen.extend(n.values().iter().copied());
                    }
                }
                start = end;
            }
            seen
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn every_row_group_is_read_by_exactly_one_split(
            groups in 1usize..6,
            rows in 1usize..300,
            split_size in 64u64..4096,
        ) {
            let bytes = file(groups, rows);
            let expected: Vec<i64> = (0..(groups * rows) as i64).collect();
            prop_assert_eq!(read_all(bytes, split_size), expected);
        }
    }

    #[test]
    fn a_truncated_file_is_a_clear_error() {
        let mut bytes = file(2, 50);
        bytes.truncate(bytes.len() - 10);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let error = runtime.block_on(async {
            let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            let path = Path::from("t.parquet");
            let size = bytes.len() as u64;
            store.put(&path, bytes.into()).await.unwrap();
            parquet_schema(store, path, "s3://b/t.parquet", size)
                .await
                .unwrap_err()
        });
        let message = error.to_string();
        assert!(
            message.starts_with("reading Parquet file s3://b/t.parquet: "),
            "{message}"
        );
    }
}
