//! The k-way merge of sorted runs: on the reduce side the fetched
//! segments, on the map side the runs a map attempt spilled. Each run is a
//! stream of key-sorted batches read from a local file; the merge pulls the
//! smallest key across all of them (keys compared in Arrow's row format),
//! gathers rows into batches that never split a group of equal keys, and
//! hands each batch to a sink: the job's reduce, or the map side's combine
//! and segment writer. Memory holds one batch per run plus one output
//! batch, whatever the runs' size.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Take};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, RecordBatch};
use arrow::compute::interleave;
use arrow::datatypes::DataType;
use arrow::ipc::reader::StreamReader;
use arrow::row::{OwnedRow, RowConverter, Rows};
use harrow_core::task::OutputFormat;
use harrow_formats::output::OutputWriter;
use harrow_sdk::{Counters, JobRuntime, KeyGroups, group_bounds};

use crate::error::TaskError;

/// Rows gathered before a sink call (more if one group is larger).
const MERGE_BATCH_ROWS: usize = 8192;

/// What one reduce wrote.
#[derive(Debug, Clone, Default)]
pub struct ReduceStats {
    pub records_in: u64,
    pub records_out: u64,
    pub bytes_out: u64,
    /// The job's own counters, added to by every reduce call.
    pub counters: Counters,
}

/// A sorted run: an Arrow IPC stream at `offset` in a file, `len` bytes
/// long (a whole fetched segment, or one partition of a spilled run).
#[derive(Debug, Clone)]
pub struct Run {
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
}

impl Run {
    /// A whole file.
    pub fn file(path: &Path) -> Result<Run, TaskError> {
        let len = std::fs::metadata(path).map_err(TaskError::io(path))?.len();
        Ok(Run {
            path: path.to_path_buf(),
            offset: 0,
            len,
        })
    }
}

struct Cursor {
    path: PathBuf,
    reader: StreamReader<Take<BufReader<File>>>,
    rows: Rows,
    row: usize,
    /// Index of the cursor's current batch in the merge's `sources`.
    source: usize,
}

/// Merges the sorted segments in `runs`, reduces every group and writes
/// the output in `format` to `output`.
pub fn merge_and_reduce(
    job: &dyn JobRuntime,
    runs: &[Run],
    output: &Path,
    format: OutputFormat,
    progress: &AtomicU64,
) -> Result<ReduceStats, TaskError> {
    let mut writer = OutputWriter::create(output, format, job.schema().output.clone())?;
    let mut counters = Counters::default();
    let records_in = merge_runs(&job.schema().key, runs, progress, |batch| {
        let bounds =
            group_bounds(batch.column(0)).map_err(TaskError::arrow("grouping reduce input"))?;
        let output = job
            .reduce(KeyGroups::new(&batch, &bounds), &mut counters)
            .map_err(TaskError::job("reduce"))?;
        Ok(writer.write(&output)?)
    })?;
    let (records_out, bytes_out) = writer.finish()?;
    Ok(ReduceStats {
        records_in,
        records_out,
        bytes_out,
        counters,
    })
}

/// Merges the sorted `runs` of keys of `key_type`, handing `sink` batches
/// in key order, each holding whole groups of equal keys. Returns the rows
/// merged.
pub fn merge_runs(
    key_type: &DataType,
    runs: &[Run],
    progress: &AtomicU64,
    sink: impl FnMut(RecordBatch) -> Result<(), TaskError>,
) -> Result<u64, TaskError> {
    let mut merge = Merge {
        converter: harrow_core::partition::key_converter(key_type)
            .map_err(TaskError::arrow("encoding keys"))?,
        sources: Vec::new(),
        pending: Vec::new(),
        records: 0,
        progress,
        sink,
    };
    let mut cursors = Vec::new();
    for run in runs {
        let path = &run.path;
        let mut file = File::open(path).map_err(TaskError::io(path))?;
        file.seek(SeekFrom::Start(run.offset))
            .map_err(TaskError::io(path))?;
        let input = BufReader::with_capacity(1 << 20, file).take(run.len);
        let reader = StreamReader::try_new(input, None).map_err(read_error(path))?;
        let mut cursor = Cursor {
            path: path.clone(),
            reader,
            rows: merge.converter.empty_rows(0, 0),
            row: 0,
            source: 0,
        };
        if merge.load_next_batch(&mut cursor)? {
            cursors.push(cursor);
        }
    }
    // A min-heap of cursor indices by (current key, index), compared in
    // place: no key is copied to order the cursors.
    let mut heap: Vec<usize> = (0..cursors.len()).collect();
    for start in (0..heap.len() / 2).rev() {
        sift_down(&mut heap, &cursors, start);
    }

    // Once `pending` is full, the key at which it filled: the batch is cut
    // before the first different key, so no group spans two sink calls.
    let mut boundary: Option<OwnedRow> = None;
    while let Some(&index) = heap.first() {
        let passed_boundary = boundary
            .as_ref()
            .is_some_and(|b| b.row() != cursors[index].key());
        if passed_boundary {
            merge.flush(&mut cursors)?;
            boundary = None;
        }
        let cursor = &mut cursors[index];
        merge.pending.push((cursor.source, cursor.row));
        if boundary.is_none() && merge.pending.len() >= MERGE_BATCH_ROWS {
            boundary = Some(cursor.key().owned());
        }
        cursor.row += 1;
        if cursor.row >= cursor.rows.num_rows() && !merge.load_next_batch(cursor)? {
            heap.swap_remove(0);
        }
        sift_down(&mut heap, &cursors, 0);
    }
    merge.flush(&mut cursors)?;
    Ok(merge.records)
}

struct Merge<'p, S> {
    converter: RowConverter,
    /// Batches that pending rows or cursors point into.
    sources: Vec<RecordBatch>,
    /// (source, row) of each row gathered for the next sink call.
    pending: Vec<(usize, usize)>,
    records: u64,
    progress: &'p AtomicU64,
    sink: S,
}

impl Cursor {
    /// The key of the cursor's current row.
    fn key(&self) -> arrow::row::Row<'_> {
        self.rows.row(self.row)
    }
}

/// Restores the heap order below `position` (cursors ordered by current
/// key, then index, as a stable merge needs).
fn sift_down(heap: &mut [usize], cursors: &[Cursor], mut position: usize) {
    let before = |a: usize, b: usize| (cursors[a].key(), a) < (cursors[b].key(), b);
    loop {
        let (left, right) = (2 * position + 1, 2 * position + 2);
        let mut smallest = position;
        if left < heap.len() && before(heap[left], heap[smallest]) {
            smallest = left;
        }
        if right < heap.len() && before(heap[right], heap[smallest]) {
            smallest = right;
        }
        if smallest == position {
            return;
        }
        heap.swap(position, smallest);
        position = smallest;
    }
}

impl<S: FnMut(RecordBatch) -> Result<(), TaskError>> Merge<'_, S> {
    /// Moves the cursor to its next non-empty batch; false at its end.
    fn load_next_batch(&mut self, cursor: &mut Cursor) -> Result<bool, TaskError> {
        for batch in cursor.reader.by_ref() {
            let batch = batch.map_err(read_error(&cursor.path))?;
            if batch.num_rows() == 0 {
                continue;
            }
            cursor.rows = self
                .converter
                .convert_columns(std::slice::from_ref(batch.column(0)))
                .map_err(read_error(&cursor.path))?;
            cursor.row = 0;
            cursor.source = self.sources.len();
            self.progress
                .fetch_add(batch.get_array_memory_size() as u64, Ordering::Relaxed);
            self.sources.push(batch);
            return Ok(true);
        }
        Ok(false)
    }

    /// Hands the pending rows to the sink and forgets batches nothing
    /// points into.
    fn flush(&mut self, cursors: &mut [Cursor]) -> Result<(), TaskError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let gather = |column: usize| {
            let arrays: Vec<&dyn Array> = self
                .sources
                .iter()
                .map(|b| b.column(column).as_ref())
                .collect();
            interleave(&arrays, &self.pending).map_err(TaskError::arrow("merging segments"))
        };
        let schema = self.sources[0].schema();
        let batch = RecordBatch::try_new(schema, vec![gather(0)?, gather(1)?])
            .map_err(TaskError::arrow("merging segments"))?;
        self.records += batch.num_rows() as u64;
        self.pending.clear();
        let schema = batch.schema();
        (self.sink)(batch)?;

        let mut kept = Vec::with_capacity(cursors.len());
        for cursor in cursors.iter_mut() {
            let batch = std::mem::replace(
                &mut self.sources[cursor.source],
                RecordBatch::new_empty(schema.clone()),
            );
            cursor.source = kept.len();
            kept.push(batch);
        }
        self.sources = kept;
        Ok(())
    }
}

fn read_error(path: &Path) -> impl FnOnce(arrow::error::ArrowError) -> TaskError + '_ {
    move |source| TaskError::SegmentRead {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use arrow::array::{StringArray, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::ipc::writer::StreamWriter;
    use harrow_sdk::{Emitter, Job, JobError, Line, Output};

    use super::*;

    /// Sums the values of each key.
    struct Sum;

    impl Job for Sum {
        type Key = String;
        type Value = u64;
        type Output = (String, u64);
        const OUTPUT_COLUMNS: &'static [&'static str] = &["key", "sum"];

        fn map(&self, _: &Line<'_>, _: &mut Emitter<'_, Self>) -> Result<(), JobError> {
            Ok(())
        }

        fn reduce(
            &self,
            key: &String,
            values: &mut dyn Iterator<Item = u64>,
            out: &mut Output<'_, (String, u64)>,
        ) -> Result<(), JobError> {
            out.push((key.clone(), values.sum()));
            Ok(())
        }
    }

    fn batch(rows: &[(String, u64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::UInt64, false),
        ]));
        let keys: StringArray = rows.iter().map(|(k, _)| Some(k.as_str())).collect();
        let values: UInt64Array = rows.iter().map(|(_, v)| Some(*v)).collect();
        RecordBatch::try_new(schema, vec![Arc::new(keys), Arc::new(values)]).unwrap()
    }

    #[test]
    fn merges_sorted_segments_into_one_reduce_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut expected: BTreeMap<String, u64> = BTreeMap::new();
        let mut segments = Vec::new();
        let mut state = 7u64;
        for segment in 0..5 {
            let mut rows: Vec<(String, u64)> = (0..3_000)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    // Few keys: groups larger than a reduce batch, across segments.
                    let key = format!("k{}", (state >> 33) % if segment == 0 { 3 } else { 500 });
                    (key, state >> 60)
                })
                .collect();
            rows.sort();
            for (key, value) in &rows {
                *expected.entry(key.clone()).or_default() += value;
            }
            let path = dir.path().join(format!("segment-{segment}"));
            let file = File::create(&path).unwrap();
            let first = batch(&rows[..1000]);
            let mut writer = StreamWriter::try_new(file, &first.schema()).unwrap();
            // Several batches per segment, one of them empty.
            writer.write(&first).unwrap();
            writer.write(&batch(&[])).unwrap();
            writer.write(&batch(&rows[1000..])).unwrap();
            writer.finish().unwrap();
            segments.push(path);
        }
        let output = dir.path().join("out.txt");
        let job = harrow_sdk::record_runtime(Sum);
        let runs: Vec<Run> = segments.iter().map(|s| Run::file(s).unwrap()).collect();
        let stats = merge_and_reduce(
            job.as_ref(),
            &runs,
            &output,
            OutputFormat::Text,
            &AtomicU64::new(0),
        )
        .unwrap();
        let lines: Vec<String> = std::fs::read_to_string(&output)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        let want: Vec<String> = expected.iter().map(|(k, v)| format!("{k}\t{v}")).collect();
        assert_eq!(lines, want);
        assert_eq!(stats.records_in, 15_000);
        assert_eq!(stats.records_out, expected.len() as u64);
    }
}
