//! Reading a split of a text, CSV or JSON lines file: the byte range
//! `[start, end)`, by ranged reads through `object_store`, cut into chunks
//! of whole records (see [`Framing`]).
//!
//! The boundary rule, which makes every record belong to exactly one split:
//! a split owns the records whose first byte lies in `[start, end)`. So a
//! split not starting at 0 skips the partial line it starts in (unless the
//! byte before `start` ends a line), and reads past `end` to finish its last
//! record. Lines end at `\n`; a `\r` before it is dropped; the last line of a
//! file may lack its `\n`. Invalid UTF-8 in text is replaced by U+FFFD
//! (documented in the README): the job sees every line, and the offset
//! stays exact.
//!
//! A CSV split cannot know whether the line break it starts after is inside
//! a quoted field. Each reader reports its [`SplitReader::span`], where its
//! first record starts and its last one ends; the coordinator checks that
//! adjacent splits meet, which fails the job when a quoted line break
//! crossed a split boundary instead of reading records wrong.

use std::sync::Arc;

use arrow::array::{ArrayBuilder, RecordBatch, StringBuilder, UInt64Builder};
use bytes::{Bytes, BytesMut};
use harrow_core::task::{BadRecord, Split};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::framing::Framing;
use crate::limits::BATCH_ROWS;

/// A split that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("reading {location} at byte {offset}: {source}")]
    Read {
        location: String,
        offset: u64,
        #[source]
        source: object_store::Error,
    },
    /// A compressed file that does not decode; the offset is in the
    /// decompressed text.
    #[error("decompressing {location} at decompressed byte {offset}: {source}")]
    Decode {
        location: String,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "malformed record in {0} (pass --skip-bad-records N to skip up to N malformed records)"
    )]
    BadRecord(BadRecord),
    #[error(
        "malformed record in {0} (pass --skip-bad-records N to skip up to N malformed records); this split starts mid-file, so if the file has quoted fields holding line breaks, rerun with --split-size 0 to read each file whole"
    )]
    BadCsvRecordMidFile(BadRecord),
    #[error("{location}: header `{found}` does not match the input schema `{expected}`")]
    Header {
        location: String,
        found: String,
        expected: String,
    },
    #[error("the input has no column `{column}` (it has: {available})")]
    MissingColumn { column: String, available: String },
    #[error("reading Parquet file {location}: {source}")]
    Parquet {
        location: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("Parquet file {location}: {reason}")]
    ParquetSchema { location: String, reason: String },
    #[error(
        "{count} malformed records in this split alone exceed --skip-bad-records {limit}; the first: {first}"
    )]
    TooManyBadRecords {
        count: u64,
        limit: u64,
        first: BadRecord,
    },
}

/// Whole lines owned by a split, starting at `offset` in the file.
#[derive(Debug, Clone)]
pub struct TextChunk {
    pub data: Bytes,
    pub offset: u64,
}

/// Yields the split's records as chunks of about `read_bytes` each.
pub struct SplitReader {
    framing: Framing,
    store: Arc<dyn ObjectStore>,
    path: Path,
    location: String,
    end: u64,
    file_size: u64,
    read_bytes: u64,
    /// Fetched bytes not yet handed out, starting at file offset `pending_offset`.
    pending: BytesMut,
    pending_offset: u64,
    next_read: u64,
    /// The split does not start at 0: drop bytes up to the first line start.
    skip_partial_line: bool,
    /// Where the split's first record starts, once known.
    first_record: Option<u64>,
    done: bool,
}

impl SplitReader {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        path: Path,
        split: &Split,
        read_bytes: u64,
        framing: Framing,
    ) -> Self {
        assert!(read_bytes > 0, "read size must be positive");
        let first = split.start.saturating_sub(1);
        let empty = split.start >= split.end.min(split.file_size);
        SplitReader {
            framing,
            store,
            path,
            location: split.location.clone(),
            end: split.end.min(split.file_size),
            file_size: split.file_size,
            read_bytes,
            pending: BytesMut::new(),
            pending_offset: first,
            next_read: first,
            skip_partial_line: split.start > 0 && !empty,
            first_record: (split.start == 0 || empty).then_some(split.start),
            done: empty,
        }
    }

    /// Once the reader is done: where its first record starts and where its
    /// last one ends (equal when it owns none).
    pub fn span(&self) -> Option<(u64, u64)> {
        let first = self.first_record?;
        self.done.then(|| (first, self.pending_offset.max(first)))
    }

    /// The next chunk of whole lines, or `None` at the end of the split.
    pub async fn next_chunk(&mut self) -> Result<Option<TextChunk>, InputError> {
        while !self.done {
            let at_eof = self.read_more().await?;
            if self.skip_partial_line {
                match memchr::memchr(b'\n', &self.pending) {
                    Some(newline) => {
                        self.consume(newline + 1);
                        self.skip_partial_line = false;
                        self.first_record = Some(self.pending_offset);
                    }
                    None if at_eof => {
                        self.first_record = Some(self.file_size);
                        self.pending_offset = self.file_size;
                        self.done = true;
                    }
                    None => continue,
                }
            }
            if self.done || self.pending_offset >= self.end {
                self.done = true;
                break;
            }
            if let Some(chunk) = self.cut(at_eof) {
                return Ok(Some(chunk));
            }
        }
        Ok(None)
    }

    /// Fetches the next `read_bytes` (none at end of file); true at end of file.
    async fn read_more(&mut self) -> Result<bool, InputError> {
        if self.next_read < self.file_size {
            let range = self.next_read..(self.next_read + self.read_bytes).min(self.file_size);
            let bytes = self
                .store
                .get_range(&self.path, range.clone())
                .await
                .map_err(|source| InputError::Read {
                    location: self.location.clone(),
                    offset: range.start,
                    source,
                })?;
            assert!(!bytes.is_empty(), "a non-empty range read returned nothing");
            self.next_read += bytes.len() as u64;
            self.pending.extend_from_slice(&bytes);
        }
        Ok(self.next_read >= self.file_size)
    }

    /// Takes the complete lines owned by the split from `pending`, if any.
    fn cut(&mut self, at_eof: bool) -> Option<TextChunk> {
        // Records starting before `end` are ours; the one holding byte
        // end-1 is the last, wherever it ends.
        let last_owned_byte = (self.end - 1 - self.pending_offset) as usize;
        let cut = if last_owned_byte < self.pending.len() {
            match self
                .framing
                .end_of_record_at(&self.pending, last_owned_byte)
            {
                Some(end) => {
                    self.done = true;
                    end
                }
                None if at_eof => {
                    self.done = true;
                    self.pending.len()
                }
                None => self.framing.last_end(&self.pending).unwrap_or(0),
            }
        } else if at_eof {
            self.done = true;
            self.pending.len()
        } else {
            self.framing.last_end(&self.pending).unwrap_or(0)
        };
        if cut == 0 {
            return None;
        }
        let offset = self.pending_offset;
        let data = self.consume(cut);
        Some(TextChunk { data, offset })
    }

    fn consume(&mut self, count: usize) -> Bytes {
        self.pending_offset += count as u64;
        self.pending.split_to(count).freeze()
    }
}

/// Cuts a chunk into text input batches of at most [`BATCH_ROWS`] lines.
pub fn chunk_batches(file: &str, chunk: &TextChunk) -> Vec<RecordBatch> {
    let schema = harrow_sdk::text_schema(file);
    let mut batches = Vec::new();
    let mut lines = StringBuilder::new();
    let mut offsets = UInt64Builder::new();
    let mut flush = |lines: &mut StringBuilder, offsets: &mut UInt64Builder| {
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(lines.finish()), Arc::new(offsets.finish())],
        )
        .expect("text batch matches its schema");
        batches.push(batch);
    };
    let data = &chunk.data[..];
    let mut start = 0;
    while start < data.len() {
        let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |n| start + n);
        let mut line = &data[start..end];
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        lines.append_value(String::from_utf8_lossy(line));
        offsets.append_value(chunk.offset + start as u64);
        if offsets.len() == BATCH_ROWS {
            flush(&mut lines, &mut offsets);
        }
        start = end + 1;
    }
    if !offsets.is_empty() {
        flush(&mut lines, &mut offsets);
    }
    batches
}

/// Each line of `chunk` with its byte offset, as its text batches hold
/// them: what the readers' tests compare.
#[cfg(test)]
pub(crate) fn chunk_lines(file: &str, chunk: &TextChunk) -> Vec<(u64, String)> {
    use arrow::array::{Array, StringArray, UInt64Array};
    let mut lines = Vec::new();
    for batch in chunk_batches(file, chunk) {
        let text = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let offsets = batch
            .column(1)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .unwrap();
        for row in 0..text.len() {
            lines.push((offsets.value(row), text.value(row).to_string()));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use proptest::prelude::*;

    /// Every (offset, line) the reader yields over splits of `split_size`.
    fn read_all(contents: &[u8], split_size: u64, read_bytes: u64) -> Vec<(u64, String)> {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("f.txt");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            store
                .put(&path, Bytes::copy_from_slice(contents).into())
                .await
                .unwrap();
            let size = contents.len() as u64;
            let mut out = Vec::new();
            let mut start = 0;
            loop {
                let end = if split_size == 0 {
                    size
                } else {
                    (start + split_size).min(size)
                };
                let split = Split {
                    location: "f.txt".into(),
                    start,
                    end,
                    file_size: size,
                };
                let mut reader = SplitReader::new(
                    store.clone(),
                    path.clone(),
                    &split,
                    read_bytes,
                    Framing::Lines,
                );
                while let Some(chunk) = reader.next_chunk().await.unwrap() {
                    out.extend(chunk_lines("f.txt", &chunk));
                }
                start = end;
                if start >= size {
                    break;
                }
            }
            out
        })
    }

    /// The lines of `contents` computed the obvious way.
    fn expected(contents: &[u8]) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut offset = 0u64;
        for piece in contents.split_inclusive(|b| *b == b'\n') {
            let line = piece.strip_suffix(b"\n").unwrap_or(piece);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            out.push((offset, String::from_utf8_lossy(line).into_owned()));
            offset += piece.len() as u64;
        }
        out
    }

    #[test]
    fn one_split_reads_every_line() {
        let text = b"first\r\nsecond\n\nlast without newline";
        assert_eq!(read_all(text, 0, 4), expected(text));
        assert_eq!(read_all(text, 0, 1024)[1], (7, "second".to_string()));
    }

    #[test]
    fn empty_file_has_no_lines() {
        assert!(read_all(b"", 0, 16).is_empty());
        assert!(read_all(b"", 3, 16).is_empty());
    }

    #[test]
    fn invalid_utf8_is_replaced_and_offsets_stay_exact() {
        let text = b"ok\n\xff\xfebad\nend\n";
        let lines = read_all(text, 3, 2);
        assert_eq!(lines[1], (3, "\u{fffd}\u{fffd}bad".to_string()));
        assert_eq!(lines[2], (9, "end".to_string()));
    }

    #[test]
    fn a_line_longer_than_the_split_is_read_once() {
        let mut text = b"short\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', 1000));
        text.extend(b"\ntail\n");
        assert_eq!(read_all(&text, 7, 13), expected(&text));
    }

    proptest! {
        #[test]
        fn tiny_splits_read_the_same_lines_as_one_split(
            lines in proptest::collection::vec("[a-c\u{e9}\r]{0,12}", 0..30),
            trailing_newline in any::<bool>(),
            split_size in 1u64..40,
            read_bytes in 1u64..17,
        ) {
            let mut text = lines.join("\n");
            if trailing_newline {
                text.push('\n');
            }
            let whole = read_all(text.as_bytes(), 0, 1 << 20);
            prop_assert_eq!(&whole, &expected(text.as_bytes()));
            prop_assert_eq!(read_all(text.as_bytes(), split_size, read_bytes), whole);
        }
    }
}
