//! Which reduce partition a key belongs to: xxh3 with a fixed seed over the
//! key's canonical bytes (UTF-8, raw bytes, little-endian integers), modulo
//! the number of partitions. The same in every process and every release;
//! changing it would send one key to two reducers during a rolling upgrade.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Int64Type, UInt64Type};
use xxhash_rust::xxh3::xxh3_64_with_seed;

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
}
