//! Sampling a job's map output keys when it is submitted, to cut the bounds
//! of total-order partitioning: the job's own map runs over the first piece
//! of up to [`SAMPLE_SPLITS`] splits spread over the input, as TeraSort's
//! sampler does, and the bounds fall at the quantiles of the keys it emits
//! (`harrow_core::partition::range_bounds`, the order the workers sort in).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use arrow::compute::concat;
use harrow_core::partition::{key_rows, range_bounds};
use harrow_core::storage::StorageOptions;
use harrow_core::task::{InputSpec, Split};
use harrow_formats::decode::ChunkDecoder;
use harrow_formats::source::{Source, SplitInput};
use harrow_sdk::{JobRuntime, TaskInfo, TaskKind, panic_message};

use crate::limits::SAMPLE_SPLITS;

/// Bytes read from each sampled split (a Parquet split gives its first row
/// group whatever its size, a compressed file its first chunk).
const SAMPLE_BYTES: u64 = 1 << 20;
/// Rows taken from each sampled split of generated input.
const SAMPLE_ROWS: u64 = 10_000;

/// `reducers - 1` range bounds for `job` over the input `splits`. Job code
/// runs on tokio's blocking threads; a panic in it is an error.
pub async fn sample_range_bounds(
    job: Arc<dyn JobRuntime>,
    splits: &[Split],
    spec: &InputSpec,
    storage: &StorageOptions,
    reducers: u32,
) -> Result<Vec<Vec<u8>>, String> {
    let decoder = Arc::new(
        ChunkDecoder::new(spec, job.schema().input_columns.as_deref())
            .map_err(|e| e.to_string())?,
    );
    let starting = job.clone();
    blocking("starting the map task", move || {
        let task = TaskInfo {
            attempt: "sample".to_string(),
            kind: TaskKind::Map,
            partition: None,
        };
        starting
            .start_task(&task)
            .map_err(|e| format!("job code failed in start_task: {e}"))
    })
    .await?;
    let generated = job.schema().generated.is_some();
    let piece = if generated { SAMPLE_ROWS } else { SAMPLE_BYTES };
    let step = splits.len().div_ceil(SAMPLE_SPLITS).max(1);
    let mut keys: Vec<ArrayRef> = Vec::new();
    for split in splits.iter().step_by(step) {
        let input = SplitInput {
            split,
            spec,
            storage,
        };
        let mut source = Source::open(input, generated, decoder.projected_schema(), piece)
            .await
            .map_err(|e| e.to_string())?;
        let Some(piece) = source.next().await.map_err(|e| e.to_string())? else {
            continue;
        };
        let (job, decoder, file) = (job.clone(), decoder.clone(), split.location.clone());
        let output = blocking("map", move || {
            let decoded = piece.decode(&decoder, &file).map_err(|e| e.to_string())?;
            let mut mapper = job.mapper();
            for batch in &decoded.batches {
                mapper
                    .map(batch)
                    .map_err(|e| format!("job code failed in map: {e}"))?;
            }
            let (output, _counters) = mapper
                .finish()
                .map_err(|e| format!("job code failed in map: {e}"))?;
            Ok(output)
        })
        .await?;
        keys.push(output.column(0).clone());
    }
    let key_type = job.schema().key.clone();
    blocking("cutting range bounds", move || {
        let sample = match keys.as_slice() {
            [] => arrow::array::new_empty_array(&key_type),
            keys => {
                let keys: Vec<&dyn Array> = keys.iter().map(|k| k.as_ref()).collect();
                concat(&keys).map_err(|e| format!("collecting sampled keys: {e}"))?
            }
        };
        let rows = key_rows(&key_type, &sample).map_err(|e| format!("encoding keys: {e}"))?;
        Ok(range_bounds(&rows, reducers))
    })
    .await
}

/// Runs `work` on a blocking thread; a panic there (job code) becomes an
/// error naming what was `during`.
async fn blocking<T: Send + 'static>(
    during: &'static str,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(error) if error.is_panic() => Err(format!(
            "job code panicked in {during} while sampling: {}",
            panic_message(error.into_panic().as_ref())
        )),
        Err(error) => Err(format!("{during} while sampling: {error}")),
    }
}
