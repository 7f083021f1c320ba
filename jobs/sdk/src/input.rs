//! The shape of text input as jobs see it: a `line` column, an `offset`
//! column (byte offset of the line's start in its file) and the file's
//! location in the schema metadata.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::JobError;

/// The text of a line, without its `\n` or `\r\n`.
pub const LINE_COLUMN: &str = "line";
/// The byte offset of the line's first byte in its file.
pub const OFFSET_COLUMN: &str = "offset";
/// Schema metadata key holding the location of the file the batch came from.
pub const FILE_METADATA_KEY: &str = "harrow.file";

/// The schema of text input batches read from `file`.
pub fn text_schema(file: &str) -> SchemaRef {
    let metadata = HashMap::from([(FILE_METADATA_KEY.to_string(), file.to_string())]);
    Arc::new(Schema::new_with_metadata(
        vec![
            Field::new(LINE_COLUMN, DataType::Utf8, false),
            Field::new(OFFSET_COLUMN, DataType::UInt64, false),
        ],
        metadata,
    ))
}

/// The last path component of a location (`/data/a.txt` → `a.txt`).
pub fn base_name(location: &str) -> &str {
    let trimmed = location.trim_end_matches('/');
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

/// One line of text input.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    /// The location of the file the line is in.
    pub file: &'a str,
    /// Byte offset of the line's start in the file.
    pub offset: u64,
    /// The line, without its terminator. Invalid UTF-8 was replaced by U+FFFD.
    pub text: &'a str,
}

/// A typed view of a text input batch.
#[derive(Debug)]
pub struct TextBatch<'a> {
    file: &'a str,
    lines: &'a StringArray,
    offsets: &'a UInt64Array,
}

impl<'a> TextBatch<'a> {
    pub fn new(batch: &'a RecordBatch) -> Result<Self, JobError> {
        let file = batch
            .schema_ref()
            .metadata()
            .get(FILE_METADATA_KEY)
            .map(String::as_str)
            .unwrap_or("");
        Ok(TextBatch {
            file,
            lines: column(batch, LINE_COLUMN)?,
            offsets: column(batch, OFFSET_COLUMN)?,
        })
    }

    pub fn file(&self) -> &'a str {
        self.file
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn lines(&self) -> &'a StringArray {
        self.lines
    }

    pub fn offsets(&self) -> &'a UInt64Array {
        self.offsets
    }

    pub fn line(&self, row: usize) -> Line<'a> {
        Line {
            file: self.file,
            offset: self.offsets.value(row),
            text: self.lines.value(row),
        }
    }
}

fn column<'a, A: Array + 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a A, JobError> {
    let array = batch
        .column_by_name(name)
        .ok_or_else(|| JobError::MissingColumn {
            column: name.to_string(),
        })?;
    array
        .as_any()
        .downcast_ref::<A>()
        .ok_or_else(|| JobError::ColumnType {
            column: name.to_string(),
            expected: if name == OFFSET_COLUMN {
                DataType::UInt64
            } else {
                DataType::Utf8
            },
            found: array.data_type().clone(),
        })
}
