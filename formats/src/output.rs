//! Output writers, one local file per reduce attempt:
//! - text: each row's columns formatted and joined by a tab, one
//!   `\n`-terminated line per row;
//! - CSV: a header line of the job's output column names, then RFC 4180 rows;
//! - JSON lines: one object per row, null fields left out;
//! - Parquet: the job's declared output schema, zstd-compressed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use harrow_core::task::OutputFormat;
use harrow_sdk::format_text_lines;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// Why output could not be written, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("arrow error in {during}: {source}")]
    Arrow {
        during: &'static str,
        #[source]
        source: ArrowError,
    },
    /// A local output path the job cannot write through.
    #[error("{path}: {reason}")]
    Path { path: PathBuf, reason: String },
}

impl OutputError {
    fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> OutputError {
        let path = path.into();
        move |source| OutputError::Io { path, source }
    }

    fn arrow(during: &'static str) -> impl FnOnce(ArrowError) -> OutputError {
        move |source| OutputError::Arrow { during, source }
    }
}

type Buffered = BufWriter<File>;

enum Sink {
    Text(Buffered),
    Csv(arrow::csv::Writer<Buffered>),
    Jsonl(arrow::json::LineDelimitedWriter<Buffered>),
    Parquet(ArrowWriter<Buffered>),
}

/// Writes a reduce attempt's output to a local file in the job's format.
pub struct OutputWriter {
    sink: Sink,
    schema: SchemaRef,
    path: PathBuf,
    records: u64,
}

impl OutputWriter {
    /// `schema`: the job's declared output schema.
    pub fn create(
        path: &Path,
        format: OutputFormat,
        schema: SchemaRef,
    ) -> Result<Self, OutputError> {
        // A new file only: never write through a link planted at its name.
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(OutputError::io(path))?;
        let out = BufWriter::with_capacity(1 << 20, file);
        let sink = match format {
            OutputFormat::Text => Sink::Text(out),
            OutputFormat::Csv => {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(out);
                // The header goes out even when the partition has no rows.
                writer
                    .write(&RecordBatch::new_empty(schema.clone()))
                    .map_err(OutputError::arrow("writing the CSV header"))?;
                Sink::Csv(writer)
            }
            OutputFormat::Jsonl => Sink::Jsonl(arrow::json::LineDelimitedWriter::new(out)),
            OutputFormat::Parquet => {
                let properties = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .build();
                let writer = ArrowWriter::try_new(out, schema.clone(), Some(properties))
                    .map_err(|e| parquet_error(path, e))?;
                Sink::Parquet(writer)
            }
        };
        Ok(OutputWriter {
            sink,
            schema,
            path: path.to_path_buf(),
            records: 0,
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), OutputError> {
        // The job's rows must have its declared types: Parquet stores them,
        // and every format should say the same thing.
        let batch = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec()).map_err(
            OutputError::arrow("checking reduce output against the job's schema"),
        )?;
        match &mut self.sink {
            Sink::Text(out) => {
                let mut failed = None;
                format_text_lines(&batch, |line| {
                    if failed.is_none()
                        && let Err(e) = out
                            .write_all(line.as_bytes())
                            .and_then(|()| out.write_all(b"\n"))
                    {
                        failed = Some(e);
                    }
                })
                .map_err(OutputError::arrow("formatting output"))?;
                if let Some(e) = failed {
                    return Err(OutputError::io(&self.path)(e));
                }
            }
            Sink::Csv(writer) => writer
                .write(&batch)
                .map_err(|e| write_error(&self.path, e))?,
            Sink::Jsonl(writer) => writer
                .write(&batch)
                .map_err(|e| write_error(&self.path, e))?,
            Sink::Parquet(writer) => writer
                .write(&batch)
                .map_err(|e| parquet_error(&self.path, e))?,
        }
        self.records += batch.num_rows() as u64;
        Ok(())
    }

    /// Finishes the format, flushes and syncs the file: (records, bytes).
    pub fn finish(self) -> Result<(u64, u64), OutputError> {
        let path = self.path;
        let out = match self.sink {
            Sink::Text(out) => out,
            Sink::Csv(writer) => writer.into_inner(),
            Sink::Jsonl(mut writer) => {
                writer.finish().map_err(|e| write_error(&path, e))?;
                writer.into_inner()
            }
            Sink::Parquet(writer) => writer.into_inner().map_err(|e| parquet_error(&path, e))?,
        };
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .map_err(OutputError::io(&path))?;
        file.sync_data().map_err(OutputError::io(&path))?;
        let bytes = file.metadata().map_err(OutputError::io(&path))?.len();
        Ok((self.records, bytes))
    }
}

fn write_error(path: &Path, error: ArrowError) -> OutputError {
    match error {
        ArrowError::IoError(_, source) => OutputError::io(path)(source),
        other => OutputError::arrow("writing output")(other),
    }
}

fn parquet_error(path: &Path, error: parquet::errors::ParquetError) -> OutputError {
    OutputError::io(path)(std::io::Error::other(error))
}

/// Creates `dir`, which lies below `root`, one level at a time, refusing to
/// pass through a symbolic link or anything but a directory: a link planted
/// under a job's output would send its files, and the clean-up's deletions,
/// outside it. `root` itself is the user's and is created as is.
pub fn create_below(root: &Path, dir: &Path) -> Result<(), OutputError> {
    std::fs::create_dir_all(root).map_err(OutputError::io(root))?;
    let relative = dir.strip_prefix(root).map_err(|_| OutputError::Path {
        path: dir.to_path_buf(),
        reason: format!("not below {}", root.display()),
    })?;
    let mut path = root.to_path_buf();
    for component in relative.components() {
        path.push(component);
        let refuse = |what: &str| OutputError::Path {
            path: path.clone(),
            reason: format!("{what}; refusing to write through it"),
        };
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(refuse("is a symbolic link"));
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(refuse("is not a directory")),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                match std::fs::create_dir(&path) {
                    Ok(()) => {}
                    // Another attempt made it first: check what it is.
                    Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                        let meta =
                            std::fs::symlink_metadata(&path).map_err(OutputError::io(&path))?;
                        if !meta.is_dir() {
                            return Err(refuse("is not a directory"));
                        }
                    }
                    Err(error) => return Err(OutputError::io(&path)(error)),
                }
            }
            Err(error) => return Err(OutputError::io(&path)(error)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("count", DataType::Int64, false),
            Field::new("mean", DataType::Float64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a,b", "c"])),
                Arc::new(Int64Array::from(vec![2, 1])),
                Arc::new(Float64Array::from(vec![Some(1.5), None])),
            ],
        )
        .unwrap()
    }

    fn write(format: OutputFormat) -> (Vec<u8>, u64, u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part");
        let batch = batch();
        let mut writer = OutputWriter::create(&path, format, batch.schema()).unwrap();
        writer.write(&batch).unwrap();
        let (records, bytes) = writer.finish().unwrap();
        (std::fs::read(&path).unwrap(), records, bytes)
    }

    #[test]
    fn text_csv_and_json_lines() {
        let (text, records, bytes) = write(OutputFormat::Text);
        assert_eq!(String::from_utf8(text).unwrap(), "a,b\t2\t1.5\nc\t1\t\n");
        assert_eq!((records, bytes), (2, 15));
        let (csv, _, _) = write(OutputFormat::Csv);
        assert_eq!(
            String::from_utf8(csv).unwrap(),
            "key,count,mean\n\"a,b\",2,1.5\nc,1,\n"
        );
        let (json, _, _) = write(OutputFormat::Jsonl);
        assert_eq!(
            String::from_utf8(json).unwrap(),
            "{\"key\":\"a,b\",\"count\":2,\"mean\":1.5}\n{\"key\":\"c\",\"count\":1}\n"
        );
    }

    #[test]
    fn parquet_keeps_the_schema_and_uses_zstd() {
        let (bytes, records, size) = write(OutputFormat::Parquet);
        assert_eq!((records, size), (2, bytes.len() as u64));
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(bytes),
        )
        .unwrap();
        let column = reader.metadata().row_group(0).column(0);
        assert_eq!(
            column.compression(),
            Compression::ZSTD(ZstdLevel::default())
        );
        let read: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
        assert_eq!(read, [batch()]);
    }

    #[test]
    fn rows_that_do_not_match_the_declared_schema_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part");
        let declared = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let mut writer = OutputWriter::create(&path, OutputFormat::Parquet, declared).unwrap();
        let wrong = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("n", DataType::Utf8, false)])),
            vec![Arc::new(StringArray::from(vec!["x"]))],
        )
        .unwrap();
        let error = writer.write(&wrong).unwrap_err().to_string();
        assert!(error.contains("job's schema"), "{error}");
    }

    #[cfg(unix)]
    #[test]
    fn directories_below_the_output_never_pass_through_links() {
        let root = tempfile::tempdir().unwrap();
        let output = root.path().join("out");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        create_below(&output, &output.join("_temporary/a-1")).unwrap();
        assert!(output.join("_temporary/a-1").is_dir());

        std::fs::remove_dir_all(output.join("_temporary")).unwrap();
        std::os::unix::fs::symlink(&outside, output.join("_temporary")).unwrap();
        let error = create_below(&output, &output.join("_temporary/a-2")).unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);

        // A link planted at a part file's name is not written through.
        let target = outside.join("target");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, output.join("part")).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("key", DataType::Utf8, false)]));
        assert!(OutputWriter::create(&output.join("part"), OutputFormat::Text, schema).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }
}
