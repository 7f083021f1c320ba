//! Reading a whole compressed file (gzip, zstd, bzip2): the object is
//! streamed from the store through a decoder and cut into chunks of whole
//! lines. Offsets are positions in the decompressed text. A compressed file
//! is always one split: its byte ranges cannot be decoded on their own.

use std::pin::Pin;
use std::sync::Arc;

use async_compression::tokio::bufread::{BzDecoder, GzipDecoder, ZstdDecoder};
use bytes::BytesMut;
use futures::TryStreamExt;
use harrow_core::task::Compression;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use tokio_util::io::StreamReader;

use crate::framing::Framing;
use crate::input::{InputError, TextChunk};

/// Yields the decompressed lines of one file in chunks of about `chunk_bytes`.
pub struct CompressedReader {
    framing: Framing,
    decoder: Pin<Box<dyn AsyncRead + Send>>,
    location: String,
    /// Decompressed bytes not handed out yet, starting at `offset`.
    pending: BytesMut,
    offset: u64,
    chunk_bytes: usize,
    done: bool,
}

impl CompressedReader {
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        path: Path,
        location: &str,
        compression: Compression,
        chunk_bytes: usize,
        framing: Framing,
    ) -> Result<Self, InputError> {
        let read_error = |source| InputError::Read {
            location: location.to_string(),
            offset: 0,
            source,
        };
        let stream = store.get(&path).await.map_err(read_error)?.into_stream();
        let compressed = BufReader::new(StreamReader::new(stream.map_err(std::io::Error::other)));
        let decoder: Pin<Box<dyn AsyncRead + Send>> = match compression {
            Compression::Gzip => {
                let mut decoder = GzipDecoder::new(compressed);
                // `cat a.gz b.gz > c.gz` is a valid gzip file.
                decoder.multiple_members(true);
                Box::pin(decoder)
            }
            Compression::Zstd => {
                let mut decoder = ZstdDecoder::new(compressed);
                decoder.multiple_members(true);
                Box::pin(decoder)
            }
            Compression::Bzip2 => {
                let mut decoder = BzDecoder::new(compressed);
                decoder.multiple_members(true);
                Box::pin(decoder)
            }
        };
        Ok(CompressedReader {
            framing,
            decoder,
            location: location.to_string(),
            pending: BytesMut::new(),
            offset: 0,
            chunk_bytes: chunk_bytes.max(1),
            done: false,
        })
    }

    /// The next chunk of whole lines, or `None` at the end of the file.
    pub async fn next_chunk(&mut self) -> Result<Option<TextChunk>, InputError> {
        while !self.done {
            let at_eof = self.fill().await?;
            let cut = if at_eof {
                self.done = true;
                self.pending.len()
            } else {
                self.framing.last_end(&self.pending).unwrap_or(0)
            };
            if cut > 0 {
                let offset = self.offset;
                self.offset += cut as u64;
                return Ok(Some(TextChunk {
                    data: self.pending.split_to(cut).freeze(),
                    offset,
                }));
            }
        }
        Ok(None)
    }

    /// Reads until `chunk_bytes` more are pending or the end; true at the end.
    async fn fill(&mut self) -> Result<bool, InputError> {
        let target = self.pending.len() + self.chunk_bytes;
        while self.pending.len() < target {
            self.pending.reserve(target - self.pending.len());
            let read = self
                .decoder
                .read_buf(&mut self.pending)
                .await
                .map_err(|source| InputError::Decode {
                    location: self.location.clone(),
                    offset: self.offset + self.pending.len() as u64,
                    source,
                })?;
            if read == 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::chunk_lines;
    use async_compression::tokio::write::{BzEncoder, GzipEncoder, ZstdEncoder};
    use object_store::memory::InMemory;
    use tokio::io::{AsyncWrite, AsyncWriteExt};

    async fn compress(compression: Compression, data: &[u8]) -> Vec<u8> {
        async fn run(mut encoder: impl AsyncWrite + Unpin, data: &[u8]) {
            encoder.write_all(data).await.unwrap();
            encoder.shutdown().await.unwrap();
        }
        let mut out = Vec::new();
        match compression {
            Compression::Gzip => run(GzipEncoder::new(&mut out), data).await,
            Compression::Zstd => run(ZstdEncoder::new(&mut out), data).await,
            Compression::Bzip2 => run(BzEncoder::new(&mut out), data).await,
        }
        out
    }

    async fn read_lines(
        compression: Compression,
        stored: Vec<u8>,
        chunk_bytes: usize,
    ) -> Result<Vec<(u64, String)>, InputError> {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("f");
        store.put(&path, stored.into()).await.unwrap();
        let mut reader =
            CompressedReader::open(store, path, "f", compression, chunk_bytes, Framing::Lines)
                .await?;
        let mut lines = Vec::new();
        while let Some(chunk) = reader.next_chunk().await? {
            lines.extend(chunk_lines("f", &chunk));
        }
        Ok(lines)
    }

    #[tokio::test]
    async fn every_codec_yields_the_lines_with_decompressed_offsets() {
        let text = b"alpha beta\r\ngamma\n\nlast line without newline";
        for compression in [Compression::Gzip, Compression::Zstd, Compression::Bzip2] {
            for chunk_bytes in [1, 7, 1 << 20] {
                let lines = read_lines(compression, compress(compression, text).await, chunk_bytes)
                    .await
                    .unwrap();
                assert_eq!(
                    lines,
                    [
                        (0, "alpha beta".to_string()),
                        (12, "gamma".to_string()),
                        (18, String::new()),
                        (19, "last line without newline".to_string())
                    ],
                    "{compression:?} with {chunk_bytes}-byte chunks"
                );
            }
        }
    }

    #[tokio::test]
    async fn concatenated_gzip_members_are_one_file() {
        let mut both = compress(Compression::Gzip, b"one\n").await;
        both.extend(compress(Compression::Gzip, b"two\n").await);
        let lines = read_lines(Compression::Gzip, both, 64).await.unwrap();
        assert_eq!(lines, [(0, "one".to_string()), (4, "two".to_string())]);
    }

    #[tokio::test]
    async fn a_corrupt_file_is_an_error_naming_it() {
        let mut data = compress(Compression::Gzip, &b"some text\n".repeat(1000)).await;
        let middle = data.len() / 2;
        data.truncate(middle);
        let error = read_lines(Compression::Gzip, data, 64)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("decompressing f at decompressed byte"),
            "{error}"
        );
        let error = read_lines(Compression::Zstd, b"not zstd at all".to_vec(), 64)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("decompressing f"), "{error}");
    }
}
