//! The map output file format. A map attempt writes `STEM.data`, the
//! concatenation of one segment per reduce partition, and `STEM.index`,
//! where each partition's segment lies with its record count and CRC32C.
//!
//! A segment is an Arrow IPC stream (LZ4-compressed body) of key/value
//! batches sorted by key; an empty partition has a zero-length segment. Both
//! files are written under temporary names and renamed, index last, so a
//! present index means a complete map output.
//!
//! Index layout (little-endian): magic `HRWIDX01`, `u32` partition count,
//! then per partition `u64 offset, u64 bytes, u64 records, u32 crc32c`.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::CompressionType;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use harrow_core::task::SegmentInfo;

const INDEX_MAGIC: &[u8; 8] = b"HRWIDX01";
const ENTRY_BYTES: usize = 8 + 8 + 8 + 4;
/// Rows per IPC batch inside a segment, so reducers can stream it.
const SEGMENT_BATCH_ROWS: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding segment for partition {partition}: {source}")]
    Encode {
        partition: u32,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("{path}: corrupt map output index: {reason}")]
    CorruptIndex { path: PathBuf, reason: String },
}

/// Where one partition's segment lies in the data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub offset: u64,
    pub info: SegmentInfo,
}

pub fn data_path(dir: &Path, stem: &str) -> PathBuf {
    dir.join(format!("{stem}.data"))
}

pub fn index_path(dir: &Path, stem: &str) -> PathBuf {
    dir.join(format!("{stem}.index"))
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SegmentError + '_ {
    move |source| SegmentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes one segment per partition: `partitions[p]` holds partition p's
/// sorted batches. Returns the segment of every partition.
pub fn write_map_output(
    dir: &Path,
    stem: &str,
    schema: &SchemaRef,
    partitions: &[Vec<RecordBatch>],
) -> Result<Vec<SegmentInfo>, SegmentError> {
    let mut writer = MapOutputWriter::create(dir, stem, schema)?;
    for (partition, batches) in partitions.iter().enumerate() {
        let partition = u32::try_from(partition).expect("partition count fits u32");
        for batch in batches {
            writer.write(partition, batch)?;
        }
    }
    writer.finish(partitions.len() as u32)
}

/// The data file as it is written: bytes and CRC32C of the current segment.
struct Tracked {
    file: BufWriter<File>,
    bytes: u64,
    crc: u32,
}

impl Write for Tracked {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.bytes += n as u64;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// The segment being written: its partition, stream and records so far.
struct OpenSegment {
    partition: u32,
    stream: StreamWriter<Tracked>,
    records: u64,
}

/// Writes a map output streaming: batches arrive partition by partition in
/// ascending order, each partition's sorted by key, and go to disk as they
/// come, so a map output of any size needs memory for one batch.
pub struct MapOutputWriter {
    dir: PathBuf,
    stem: String,
    schema: SchemaRef,
    data_tmp: PathBuf,
    /// The data file between segments.
    idle: Option<Tracked>,
    open: Option<OpenSegment>,
    entries: Vec<IndexEntry>,
    offset: u64,
}

impl MapOutputWriter {
    pub fn create(dir: &Path, stem: &str, schema: &SchemaRef) -> Result<Self, SegmentError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let data_tmp = data_path(dir, stem).with_extension("data.tmp");
        let file = File::create(&data_tmp).map_err(io_error(&data_tmp))?;
        Ok(MapOutputWriter {
            dir: dir.to_path_buf(),
            stem: stem.to_string(),
            schema: schema.clone(),
            idle: Some(Tracked {
                file: BufWriter::with_capacity(1 << 20, file),
                bytes: 0,
                crc: 0,
            }),
            data_tmp,
            open: None,
            entries: Vec::new(),
            offset: 0,
        })
    }

    /// Appends sorted rows of `partition`, which is the current one or a
    /// later one (the partitions between are empty).
    pub fn write(&mut self, partition: u32, batch: &RecordBatch) -> Result<(), SegmentError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let encode = |source| SegmentError::Encode { partition, source };
        if self.open.as_ref().is_some_and(|o| o.partition != partition) {
            self.close_segment()?;
        }
        if self.open.is_none() {
            assert!(
                partition as usize >= self.entries.len(),
                "partitions are written in ascending order"
            );
            self.close_empty_until(partition);
            let mut out = self
                .idle
                .take()
                .expect("the data file is idle between segments");
            (out.bytes, out.crc) = (0, 0);
            let options = IpcWriteOptions::default()
                .try_with_compression(Some(CompressionType::LZ4_FRAME))
                .map_err(encode)?;
            let stream =
                StreamWriter::try_new_with_options(out, &self.schema, options).map_err(encode)?;
            self.open = Some(OpenSegment {
                partition,
                stream,
                records: 0,
            });
        }
        let open = self.open.as_mut().expect("a segment is open");
        let mut start = 0;
        while start < batch.num_rows() {
            let len = SEGMENT_BATCH_ROWS.min(batch.num_rows() - start);
            open.stream
                .write(&batch.slice(start, len))
                .map_err(encode)?;
            start += len;
        }
        open.records += batch.num_rows() as u64;
        Ok(())
    }

    /// Zero-length segments for the partitions before `partition` that
    /// have none yet.
    fn close_empty_until(&mut self, partition: u32) {
        while (self.entries.len() as u32) < partition {
            self.entries.push(IndexEntry {
                offset: self.offset,
                info: SegmentInfo {
                    partition: self.entries.len() as u32,
                    ..SegmentInfo::default()
                },
            });
        }
    }

    fn close_segment(&mut self) -> Result<(), SegmentError> {
        let Some(mut open) = self.open.take() else {
            return Ok(());
        };
        let partition = open.partition;
        let encode = |source| SegmentError::Encode { partition, source };
        open.stream.finish().map_err(encode)?;
        let out = open.stream.into_inner().map_err(encode)?;
        let info = SegmentInfo {
            partition,
            bytes: out.bytes,
            records: open.records,
            crc32c: out.crc,
        };
        self.entries.push(IndexEntry {
            offset: self.offset,
            info,
        });
        self.offset += info.bytes;
        self.idle = Some(out);
        Ok(())
    }

    /// Closes the last segment, adds empty ones up to `partitions`, and
    /// renames the data file and then the index into place.
    pub fn finish(mut self, partitions: u32) -> Result<Vec<SegmentInfo>, SegmentError> {
        self.close_segment()?;
        self.close_empty_until(partitions);
        let out = self
            .idle
            .take()
            .expect("the data file is idle after the last segment");
        out.file
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|file| file.sync_data())
            .map_err(io_error(&self.data_tmp))?;
        let data = data_path(&self.dir, &self.stem);
        std::fs::rename(&self.data_tmp, &data).map_err(io_error(&data))?;

        let index = index_path(&self.dir, &self.stem);
        let index_tmp = index.with_extension("index.tmp");
        std::fs::write(&index_tmp, encode_index(&self.entries)).map_err(io_error(&index_tmp))?;
        std::fs::rename(&index_tmp, &index).map_err(io_error(&index))?;
        Ok(self.entries.into_iter().map(|e| e.info).collect())
    }
}

fn encode_index(entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + entries.len() * ENTRY_BYTES);
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for entry in entries {
        out.extend_from_slice(&entry.offset.to_le_bytes());
        out.extend_from_slice(&entry.info.bytes.to_le_bytes());
        out.extend_from_slice(&entry.info.records.to_le_bytes());
        out.extend_from_slice(&entry.info.crc32c.to_le_bytes());
    }
    out
}

/// Reads a map output index.
pub fn read_index(path: &Path) -> Result<Vec<IndexEntry>, SegmentError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io_error(path))?;
    decode_index(&bytes).map_err(|reason| SegmentError::CorruptIndex {
        path: path.to_path_buf(),
        reason,
    })
}

pub(crate) fn decode_index(bytes: &[u8]) -> Result<Vec<IndexEntry>, String> {
    let body = bytes.strip_prefix(INDEX_MAGIC).ok_or("bad magic")?;
    let (count, mut rest) = body.split_at_checked(4).ok_or("truncated header")?;
    let count = u32::from_le_bytes(count.try_into().expect("4 bytes")) as usize;
    if rest.len() != count * ENTRY_BYTES {
        return Err(format!("{} entry bytes for {count} partitions", rest.len()));
    }
    let mut take = |n: usize| {
        let (head, tail) = rest.split_at(n);
        rest = tail;
        head
    };
    let mut entries = Vec::with_capacity(count);
    let mut expected_offset = 0u64;
    for partition in 0..count {
        let offset = u64::from_le_bytes(take(8).try_into().expect("8 bytes"));
        let bytes = u64::from_le_bytes(take(8).try_into().expect("8 bytes"));
        let records = u64::from_le_bytes(take(8).try_into().expect("8 bytes"));
        let crc32c = u32::from_le_bytes(take(4).try_into().expect("4 bytes"));
        if offset != expected_offset {
            return Err(format!(
                "partition {partition} starts at {offset}, expected {expected_offset}"
            ));
        }
        expected_offset = offset.checked_add(bytes).ok_or("segment size overflows")?;
        entries.push(IndexEntry {
            offset,
            info: SegmentInfo {
                partition: partition as u32,
                bytes,
                records,
                crc32c,
            },
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{StringArray, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::ipc::reader::StreamReader;
    use std::sync::Arc;

    #[test]
    fn segments_round_trip_and_index_locates_them() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::UInt64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(UInt64Array::from(vec![1, 2])),
            ],
        )
        .unwrap();
        let infos = write_map_output(
            dir.path(),
            "m-00000.a-1",
            &schema,
            &[vec![batch.clone()], vec![]],
        )
        .unwrap();
        assert_eq!(infos[0].records, 2);
        assert_eq!(infos[1].bytes, 0);

        let index = read_index(&index_path(dir.path(), "m-00000.a-1")).unwrap();
        assert_eq!(index.iter().map(|e| e.info).collect::<Vec<_>>(), infos);
        let data = std::fs::read(data_path(dir.path(), "m-00000.a-1")).unwrap();
        let segment = &data[index[0].offset as usize..][..index[0].info.bytes as usize];
        assert_eq!(crc32c::crc32c(segment), index[0].info.crc32c);
        let read: Vec<RecordBatch> = StreamReader::try_new(segment, None)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(read, [batch]);
    }

    #[test]
    fn corrupt_indexes_are_refused() {
        assert!(decode_index(b"nope").is_err());
        let mut good = encode_index(&[IndexEntry {
            offset: 0,
            info: SegmentInfo::default(),
        }]);
        assert_eq!(decode_index(&good).unwrap().len(), 1);
        good.pop();
        assert!(decode_index(&good).is_err());
    }
}
