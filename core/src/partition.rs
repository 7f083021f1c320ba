//! Which reduce partition a key belongs to. By hash (the default): xxh3
//! with a fixed seed over the key's canonical bytes (UTF-8, raw bytes,
//! little-endian integers), modulo the number of partitions. The same in
//! every process and every release; changing it would send one key to two
//! reducers during a rolling upgrade. By range (total order): the key's
//! bytes in Arrow's row format, the order the shuffle sorts and merges in,
//! against bounds cut from a sample of the job's map output (by the
//! coordinator, at submission).

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Int64Type, UInt64Type};
use arrow::row::{RowConverter, Rows, SortField};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use arrow::error::ArrowError;
use rayon::slice::ParallelSliceMut;

const PARTITION_SEED: u64 = 0x6861_7272_6f77_0001; // "harrow", version 1

#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "keys of type {data_type} cannot be partitioned (supported: Utf8, Binary, Int64, UInt64, Boolean)"
)]
pub struct UnsupportedKey {
    pub data_type: DataType,
}

/// The partition of every key in `keys`, in `0..partitions`.
pub fn partition_ids(keys: &ArrayRef, partitions: u32) -> Result<Vec<u32>, UnsupportedKey> {
    assert!(partitions > 0, "a job has at least one partition");
    assert_eq!(keys.null_count(), 0, "map output keys are never null");
    let part = |hash: u64| (hash % u64::from(partitions)) as u32;
    let hash = |bytes: &[u8]| part(xxh3_64_with_seed(bytes, PARTITION_SEED));
    Ok(match keys.data_type() {
        DataType::Utf8 => keys
            .as_string::<i32>()
            .iter()
            .map(|k| hash(k.unwrap_or_default().as_bytes()))
            .collect(),
        DataType::LargeUtf8 => keys
            .as_string::<i64>()
            .iter()
            .map(|k| hash(k.unwrap_or_default().as_bytes()))
            .collect(),
        DataType::Binary => keys
            .as_binary::<i32>()
            .iter()
            .map(|k| hash(k.unwrap_or_default()))
            .collect(),
        DataType::Int64 => keys
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .map(|k| hash(&k.to_le_bytes()))
            .collect(),
        DataType::UInt64 => keys
            .as_primitive::<UInt64Type>()
            .values()
            .iter()
            .map(|k| hash(&k.to_le_bytes()))
            .collect(),
        DataType::Boolean => keys
            .as_boolean()
            .values()
            .iter()
            .map(|k| hash(&[u8::from(k)]))
            .collect(),
        other => {
            return Err(UnsupportedKey {
                data_type: other.clone(),
            });
        }
    })
}

/// The converter for keys of `key_type` into Arrow's row format, the one
/// order the map sort, the range partitioner and the merge share.
pub fn key_converter(key_type: &DataType) -> Result<RowConverter, ArrowError> {
    RowConverter::new(vec![SortField::new(key_type.clone())])
}

/// `keys` in Arrow's row format.
pub fn key_rows(key_type: &DataType, keys: &ArrayRef) -> Result<Rows, ArrowError> {
    key_converter(key_type)?.convert_columns(std::slice::from_ref(keys))
}

/// The partition of every row under range `bounds`: the number of bounds
/// at or below it.
pub fn range_partition_ids(bounds: &[Vec<u8>], rows: &Rows) -> Vec<u32> {
    rows.iter()
        .map(|row| bounds.partition_point(|bound| bound.as_slice() <= row.data()) as u32)
        .collect()
}

/// The order of rows by (partition, key): each row's partition and index,
/// sorted. Each entry carries the key's first 16 bytes as an integer, so
/// most comparisons are two integer compares; only keys that share those
/// bytes compare the rest (in place, not through `Rows::row`).
pub fn sort_order(partitions: &[u32], rows: &Rows) -> Vec<(u32, u32)> {
    assert_eq!(partitions.len(), rows.num_rows(), "a partition per row");
    let prefix = |bytes: &[u8]| {
        let mut head = [0u8; 16];
        let n = bytes.len().min(16);
        head[..n].copy_from_slice(&bytes[..n]);
        u128::from_be_bytes(head)
    };
    // Zero padding keeps the order: a key shorter than 16 bytes ties only
    // with keys that extend it by zeros, and the full bytes decide those.
    let mut order: Vec<(u32, u128, &[u8], u32)> = (0..rows.num_rows())
        .map(|i| {
            let bytes = rows.row(i).data();
            (partitions[i], prefix(bytes), bytes, i as u32)
        })
        .collect();
    order.par_sort_unstable();
    order.into_iter().map(|(p, _, _, i)| (p, i)).collect()
}

/// `partitions - 1` bounds at the quantiles of a sample of keys, so that
/// each partition takes about as many keys as the others. Duplicated keys
/// may leave partitions empty; an empty sample sends every key to the last.
pub fn range_bounds(sample: &Rows, partitions: u32) -> Vec<Vec<u8>> {
    let mut sorted: Vec<&[u8]> = sample.iter().map(|row| row.data()).collect();
    sorted.sort_unstable();
    (1..u64::from(partitions))
        .map(|i| match sorted.len() as u64 {
            0 => Vec::new(),
            n => sorted[(i * n / u64::from(partitions)) as usize].to_vec(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn partition_ids_are_stable_across_releases() {
        // Pinned values: if this test changes, shuffle output of a running
        // cluster would disagree between old and new workers.
        let keys: ArrayRef = Arc::new(StringArray::from(vec!["the", "cat", "Ärger", ""]));
        let ids = partition_ids(&keys, 1000).unwrap();
        assert_eq!(ids, PINNED);
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![0, -1, 42]));
        let ids = partition_ids(&ints, 7).unwrap();
        assert!(ids.iter().all(|p| *p < 7));
    }

    const PINNED: [u32; 4] = [145, 457, 384, 423];

    #[test]
    fn range_partitions_follow_the_sample_and_keep_order() {
        let sample: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..1000).map(|i| format!("{i:04}")),
        ));
        let bounds = range_bounds(&key_rows(&DataType::Utf8, &sample).unwrap(), 4);
        assert_eq!(bounds.len(), 3);
        let keys: ArrayRef = Arc::new(StringArray::from(vec![
            "", "0249", "0250", "0499", "0500", "0750", "0999", "zzz",
        ]));
        let ids = range_partition_ids(&bounds, &key_rows(&DataType::Utf8, &keys).unwrap());
        assert_eq!(ids, [0, 0, 1, 1, 2, 3, 3, 3]);
        // No sample: every key in the last partition.
        let empty = range_bounds(&key_rows(&DataType::Utf8, &keys.slice(0, 0)).unwrap(), 3);
        let ids = range_partition_ids(&empty, &key_rows(&DataType::Utf8, &keys).unwrap());
        assert!(ids.iter().all(|&p| p == 2));
    }

    #[test]
    fn sort_order_is_partition_then_key_bytes() {
        // Keys around the 16-byte prefix: equal prefixes, zero padding,
        // one key a prefix of another.
        let texts = [
            "0123456789abcdefZ",
            "0123456789abcdef",
            "0123456789abcdefA",
            "0123456789abcde",
            "",
            "0123456789abcdef\0",
            "b",
            "a",
        ];
        let keys: ArrayRef = Arc::new(StringArray::from(texts.to_vec()));
        let rows = key_rows(&DataType::Utf8, &keys).unwrap();
        let partitions = [1, 0, 1, 0, 1, 0, 1, 0];
        let order = sort_order(&partitions, &rows);
        let mut expected: Vec<(u32, &[u8], u32)> = (0..texts.len())
            .map(|i| (partitions[i], rows.row(i).data(), i as u32))
            .collect();
        expected.sort_unstable();
        let expected: Vec<(u32, u32)> = expected.into_iter().map(|(p, _, i)| (p, i)).collect();
        assert_eq!(order, expected);
    }

    #[test]
    fn range_partitions_order_integers_numerically() {
        let sample: ArrayRef = Arc::new(Int64Array::from_iter_values(-500..500));
        let bounds = range_bounds(&key_rows(&DataType::Int64, &sample).unwrap(), 2);
        let keys: ArrayRef = Arc::new(Int64Array::from(vec![-1000, -1, 0, 1000]));
        let ids = range_partition_ids(&bounds, &key_rows(&DataType::Int64, &keys).unwrap());
        assert_eq!(ids, [0, 0, 1, 1]);
    }
}
