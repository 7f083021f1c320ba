//! Sampling a job's map output keys when it is submitted, to cut the bounds
//! of total-order partitioning: the job's own map runs over the first piece
//! of up to [`SAMPLE_SPLITS`] splits spread over the input, as TeraSort's
//! sampler does, and the bounds fall at the quantiles of the keys it emits.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::compute::concat;
use harrow_core::storage::StorageOptions;
use harrow_core::task::{InputSpec, Split};
use harrow_sdk::JobRuntime;

use crate::cpu::run_cpu;
use crate::error::TaskError;
use crate::map_task::{LaneSlot, MapInput, Source, map_piece, start_map};
use crate::partition::{key_rows, range_bounds};

/// Splits sampled, at most, spread evenly over the input.
pub const SAMPLE_SPLITS: usize = 10;
/// Bytes read from each sampled split (a Parquet split gives its first row
/// group whatever its size).
const SAMPLE_BYTES: u64 = 1 << 20;
/// Rows taken from each sampled split of generated input.
const SAMPLE_ROWS: u64 = 10_000;

/// `reducers - 1` range bounds for `job` over the input `splits`.
pub async fn sample_range_bounds(
    job: Arc<dyn JobRuntime>,
    splits: &[Split],
    spec: &InputSpec,
    storage: &StorageOptions,
    reducers: u32,
) -> Result<Vec<Vec<u8>>, TaskError> {
    let decoder = start_map(&job, spec, "sample".to_string()).await?;
    let piece = match job.schema().generated {
        Some(_) => SAMPLE_ROWS,
        None => SAMPLE_BYTES,
    };
    let step = splits.len().div_ceil(SAMPLE_SPLITS).max(1);
    let mut keys: Vec<ArrayRef> = Vec::new();
    for split in splits.iter().step_by(step) {
        let input = MapInput {
            split,
            spec,
            storage,
        };
        let mut source = Source::open(job.as_ref(), input, &decoder, piece).await?;
        if let Some(piece) = source.next().await? {
            let map = map_piece(
                job.clone(),
                decoder.clone(),
                split.location.clone(),
                piece,
                LaneSlot::single(),
            );
            let mapped = run_cpu(map)
                .await
                .map_err(TaskError::panic("panicked in map while sampling:"))??;
            if let Some(output) = mapped.output {
                keys.push(output.column(0).clone());
            }
        }
    }
    let key_type = job.schema().key.clone();
    run_cpu(move || {
        let sample = match keys.as_slice() {
            [] => arrow::array::new_empty_array(&key_type),
            keys => {
                let keys: Vec<&dyn arrow::array::Array> = keys.iter().map(|k| k.as_ref()).collect();
                concat(&keys).map_err(TaskError::arrow("collecting sampled keys"))?
            }
        };
        Ok(range_bounds(&key_rows(&key_type, &sample)?, reducers))
    })
    .await
    .map_err(TaskError::panic("panicked cutting range bounds:"))?
}
