//! Output writers. Text output: each row's columns formatted and joined by a
//! tab, one line per row, `\n`-terminated.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use harrow_sdk::format_text_lines;

use crate::error::TaskError;

/// Writes text output to a local file.
pub struct TextWriter {
    out: BufWriter<File>,
    path: PathBuf,
    pub records: u64,
    pub bytes: u64,
}

impl TextWriter {
    pub fn create(path: &Path) -> Result<Self, TaskError> {
        let file = File::create(path).map_err(TaskError::io(path))?;
        Ok(TextWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            path: path.to_path_buf(),
            records: 0,
            bytes: 0,
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), TaskError> {
        let mut failed = None;
        format_text_lines(batch, |line| {
            if failed.is_some() {
                return;
            }
            let written = self
                .out
                .write_all(line.as_bytes())
                .and_then(|()| self.out.write_all(b"\n"));
            match written {
                Ok(()) => {
                    self.records += 1;
                    self.bytes += line.len() as u64 + 1;
                }
                Err(e) => failed = Some(e),
            }
        })
        .map_err(TaskError::arrow("formatting output"))?;
        match failed {
            Some(e) => Err(TaskError::io(&self.path)(e)),
            None => Ok(()),
        }
    }

    /// Flushes and syncs the file.
    pub fn finish(self) -> Result<(u64, u64), TaskError> {
        let path = self.path;
        self.out
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|file| file.sync_data())
            .map_err(TaskError::io(&path))?;
        Ok((self.records, self.bytes))
    }
}
