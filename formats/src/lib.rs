//! Harrow's formats, for the coordinator (which plans and checks a job's
//! input) and the worker (which reads and writes it):
//!
//! - [`framing`]: where records end in a byte stream (lines, CSV with
//!   quoted line breaks);
//! - [`input`]: reading a split of a text file from any store, and the
//!   errors that name the file and offset;
//! - [`compressed`]: whole gzip, zstd and bzip2 files as one split;
//! - [`decode`]: text chunks into Arrow batches (lines, CSV, JSON lines),
//!   bad records counted against the job's budget;
//! - [`parquet_input`]: Parquet splits by row group, and a file's schema;
//! - [`source`]: a split as pieces (text chunks, row groups, generated
//!   rows), whatever its format, and each piece as batches;
//! - [`output`]: a reduce attempt's output file in the job's format.

pub mod compressed;
pub mod decode;
pub mod framing;
pub mod input;
pub mod limits;
pub mod output;
pub mod parquet_input;
pub mod source;
