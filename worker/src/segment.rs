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
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let data = data_path(dir, stem);
    let data_tmp = data.with_extension("data.tmp");
    let mut out = BufWriter::new(File::create(&data_tmp).map_err(io_error(&data_tmp))?);
    let mut entries = Vec::with_capacity(partitions.len());
    let mut offset = 0u64;
    for (partition, batches) in partitions.iter().enumerate() {
        let partition = u32::try_from(partition).expect("partition count fits u32");
        let (bytes, records) = encode_segment(partition, schema, batches)?;
        out.write_all(&bytes).map_err(io_error(&data_tmp))?;
        let info = SegmentInfo {
            partition,
            bytes: bytes.len() as u64,
            records,
            crc32c: crc32c::crc32c(&bytes),
        };
        entries.push(IndexEntry { offset, info });
        offset += info.bytes;
    }
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|file| file.sync_data())
        .map_err(io_error(&data_tmp))?;
    std::fs::rename(&data_tmp, &data).map_err(io_error(&data))?;

    let index = index_path(dir, stem);
    let index_tmp = index.with_extension("index.tmp");
    std::fs::write(&index_tmp, encode_index(&entries)).map_err(io_error(&index_tmp))?;
    std::fs::rename(&index_tmp, &index).map_err(io_error(&index))?;
    Ok(entries.into_iter().map(|e| e.info).collect())
}

/// One IPC stream of the partition's batches, cut into streaming-sized
/// batches; nothing at all for an empty partition.
fn encode_segment(
    partition: u32,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<(Vec<u8>, u64), SegmentError> {
    let records: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if records == 0 {
        return Ok((Vec::new(), 0));
    }
    let encode = |source| SegmentError::Encode { partition, source };
    let options = IpcWriteOptions::default()
        .try_with_compression(Some(CompressionType::LZ4_FRAME))
        .map_err(encode)?;
    let mut writer =
        StreamWriter::try_new_with_options(Vec::new(), schema, options).map_err(encode)?;
    for batch in batches {
        let mut start = 0;
        while start < batch.num_rows() {
            let len = SEGMENT_BATCH_ROWS.min(batch.num_rows() - start);
            writer.write(&batch.slice(start, len)).map_err(encode)?;
            start += len;
        }
    }
    writer.finish().map_err(encode)?;
    Ok((writer.into_inner().map_err(encode)?, records as u64))
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

fn decode_index(bytes: &[u8]) -> Result<Vec<IndexEntry>, String> {
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
