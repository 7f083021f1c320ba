//! The Parquet group-by workload: a table of `key` (Int64, about 1M
//! distinct, uniform) and `value` (Int64 in 0..1000), written once with
//! zstd in row groups of 1M rows, and a hand-written baseline that decodes
//! the row groups in parallel with the parquet crate and folds them in one
//! FxHash map per rayon split.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{Array, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rayon::prelude::*;
use rustc_hash::FxHashMap;

const KEYS: u64 = 1 << 20;
const ROW_GROUP_ROWS: usize = 1 << 20;
/// Rows per `size` byte: 80M rows for 1 GiB, as the workload.
const BYTES_PER_ROW: u64 = 13;

/// splitmix64.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The Parquet file for `size`, generated if missing.
pub fn ensure_parquet(dir: &Path, size: u64) -> Result<PathBuf> {
    let rows = size / BYTES_PER_ROW;
    let path = dir.join(format!("groupby-v1-{rows}.parquet"));
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(dir)?;
    eprintln!("generating {} ...", path.display());
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Int64, false),
        Field::new("value", DataType::Int64, false),
    ]));
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let tmp = path.with_extension("tmp");
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(&tmp)?,
        schema.clone(),
        Some(properties),
    )?;
    let groups: Vec<u64> = (0..rows.div_ceil(ROW_GROUP_ROWS as u64)).collect();
    for batch in groups.chunks(4) {
        let batches: Vec<RecordBatch> = batch
            .par_iter()
            .map(|&group| {
                let start = group * ROW_GROUP_ROWS as u64;
                let end = rows.min(start + ROW_GROUP_ROWS as u64);
                let keys =
                    Int64Array::from_iter_values((start..end).map(|r| (mix(r) % KEYS) as i64));
                let values =
                    Int64Array::from_iter_values((start..end).map(|r| (mix(!r) % 1000) as i64));
                RecordBatch::try_new(schema.clone(), vec![Arc::new(keys), Arc::new(values)])
                    .expect("columns fit the schema")
            })
            .collect();
        for batch in batches {
            writer.write(&batch)?;
        }
    }
    writer.close()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Count, sum, min and max of one key's values.
type Stats = (u64, i64, i64, i64);

const EMPTY: Stats = (0, 0, i64::MAX, i64::MIN);

fn fold(into: &mut Stats, other: Stats) {
    *into = (
        into.0 + other.0,
        into.1 + other.1,
        into.2.min(other.2),
        into.3.max(other.3),
    );
}

/// (distinct keys, rows, sum of values): row groups decoded in parallel,
/// folded into one map per rayon split, merged.
pub fn hand_aggregate(input: &Path) -> Result<(usize, u64, i64)> {
    let metadata = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(input)?)?
        .metadata()
        .clone();
    let groups: Vec<usize> = (0..metadata.num_row_groups()).collect();
    let merged = groups
        .par_iter()
        .try_fold(FxHashMap::<i64, Stats>::default, |mut map, &group| {
            let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(input)?)?
                .with_row_groups(vec![group])
                .with_batch_size(64 << 10)
                .build()?;
            for batch in reader {
                let batch = batch?;
                let keys = batch.column(0).as_primitive::<Int64Type>();
                let values = batch.column(1).as_primitive::<Int64Type>();
                for (&key, &value) in keys.values().iter().zip(values.values()) {
                    fold(map.entry(key).or_insert(EMPTY), (1, value, value, value));
                }
                debug_assert_eq!(keys.null_count(), 0);
            }
            anyhow::Ok(map)
        })
        .try_reduce(FxHashMap::default, |mut a, b| {
            for (key, stats) in b {
                fold(a.entry(key).or_insert(EMPTY), stats);
            }
            Ok(a)
        })
        .context("aggregating the Parquet file")?;
    let rows = merged.values().map(|g| g.0).sum();
    let sum = merged.values().map(|g| g.1).sum();
    Ok((merged.len(), rows, sum))
}
