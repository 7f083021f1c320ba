//! Helpers shared by the engine and the local test runner: finding groups
//! of equal keys in a sorted batch and formatting output rows as text.

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, SortField};
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// Start offsets of the runs of equal keys in `keys` (which must be sorted,
/// or at least have equal keys adjacent), followed by `keys.len()`.
pub fn group_bounds(keys: &ArrayRef) -> Result<Vec<usize>, ArrowError> {
    let converter = RowConverter::new(vec![SortField::new(keys.data_type().clone())])?;
    let rows = converter.convert_columns(std::slice::from_ref(keys))?;
    let mut bounds = Vec::new();
    for row in 0..rows.num_rows() {
        if row == 0 || rows.row(row) != rows.row(row - 1) {
            bounds.push(row);
        }
    }
    bounds.push(keys.len());
    Ok(bounds)
}

/// Formats every row of `batch` as its columns joined by a tab; nulls are
/// empty strings.
pub fn format_text_lines(
    batch: &RecordBatch,
    mut line: impl FnMut(&str),
) -> Result<(), ArrowError> {
    let options = FormatOptions::default().with_null("");
    let formatters = batch
        .columns()
        .iter()
        .map(|column| ArrayFormatter::try_new(column.as_ref() as &dyn Array, &options))
        .collect::<Result<Vec<_>, _>>()?;
    let mut text = String::new();
    for row in 0..batch.num_rows() {
        text.clear();
        for (i, formatter) in formatters.iter().enumerate() {
            if i > 0 {
                text.push('\t');
            }
            use std::fmt::Write;
            write!(text, "{}", formatter.value(row))
                .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
        }
        line(&text);
    }
    Ok(())
}
