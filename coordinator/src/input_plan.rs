//! Planning how a job's input is read: its format (given, or inferred from
//! the file extensions, which must agree) and its schema, fixed once at
//! submission so every split decodes to the same columns and types.
//!
//! - text: `line`, `offset`;
//! - CSV and JSON lines: `--schema`, or inferred from the head (the first
//!   [`SAMPLE_BYTES`], up to [`SAMPLE_RECORDS`] records) of each of the
//!   first [`SAMPLE_FILES`] files, with the types widened to agree (an
//!   integer column with a float in another file is a float; any other
//!   disagreement makes the column a string). CSV files must have a header
//!   line, and every sampled header must match the first;
//! - Parquet: the schema of the first file; other files must have the
//!   columns the job reads, in types that convert.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use harrow_core::storage::{Location, LocationError, StorageOptions};
use harrow_core::task::{Compression, InputFormat, InputSpec};
use harrow_formats::compressed::CompressedReader;
use harrow_formats::framing::Framing;
use harrow_formats::input::InputError;
use harrow_formats::parquet_input::parquet_schema;
use harrow_sdk::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use object_store::ObjectStoreExt;

use crate::limits::{SAMPLE_BYTES, SAMPLE_FILES, SAMPLE_RECORDS};
use crate::planner::InputFile;

/// What the submission says about its input.
#[derive(Debug, Clone, Default)]
pub struct InputRequest {
    pub format: Option<InputFormat>,
    /// `name:type,...`
    pub schema: Option<String>,
    pub csv_delimiter: Option<u8>,
    pub skip_bad_records: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum InputPlanError {
    #[error(
        "inputs mix formats: {first} is {first_format}, {other} is {other_format}; pass --input-format or submit them separately"
    )]
    MixedFormats {
        first: String,
        first_format: InputFormat,
        other: String,
        other_format: InputFormat,
    },
    #[error(
        "{location}: Parquet files carry their own compression and cannot be read through .{extension}"
    )]
    CompressedParquet { location: String, extension: String },
    #[error("--schema applies to csv and jsonl input, not {format}")]
    SchemaNotApplicable { format: InputFormat },
    #[error("invalid --schema: {0}")]
    BadSchema(String),
    #[error("{location}: header `{found}` differs from `{expected}` in {first}")]
    HeaderMismatch {
        location: String,
        found: String,
        expected: String,
        first: String,
    },
    #[error(
        "cannot infer a schema: the input has no records (pass --schema name:type,... to state it)"
    )]
    NothingToInfer,
    #[error("inferring the schema of {location}: {reason}")]
    Inference { location: String, reason: String },
    #[error(transparent)]
    Location(#[from] LocationError),
    #[error(transparent)]
    Input(#[from] InputError),
}

/// The format all `files` are read in.
pub fn resolve_format(
    files: &[InputFile],
    given: Option<InputFormat>,
) -> Result<InputFormat, InputPlanError> {
    if let Some(format) = given {
        return Ok(format);
    }
    let mut formats = files.iter().map(|f| (f, InputFormat::of(&f.location)));
    let Some((first, first_format)) = formats.next() else {
        return Ok(InputFormat::Text);
    };
    for (other, other_format) in formats {
        if other_format != first_format {
            return Err(InputPlanError::MixedFormats {
                first: first.location.clone(),
                first_format,
                other: other.location.clone(),
                other_format,
            });
        }
    }
    Ok(first_format)
}

/// Plans the input of a job over `files`.
pub async fn plan_input(
    files: &[InputFile],
    request: &InputRequest,
    storage: &StorageOptions,
) -> Result<InputSpec, InputPlanError> {
    let format = resolve_format(files, request.format)?;
    let tsv = |f: &InputFile| {
        let name = f.location.to_ascii_lowercase();
        name.ends_with(".tsv") || name.contains(".tsv.")
    };
    let csv_delimiter = request.csv_delimiter.unwrap_or_else(|| {
        if !files.is_empty() && files.iter().all(tsv) {
            b'\t'
        } else {
            b','
        }
    });
    let schema = match (format, &request.schema) {
        (InputFormat::Text | InputFormat::Parquet, Some(_)) => {
            return Err(InputPlanError::SchemaNotApplicable { format });
        }
        (InputFormat::Text, None) => harrow_sdk::text_schema(""),
        (InputFormat::Csv | InputFormat::Jsonl, Some(text)) => parse_schema(text)?,
        (InputFormat::Csv | InputFormat::Jsonl, None) => {
            infer(files, format, csv_delimiter, storage).await?
        }
        (InputFormat::Parquet, None) => {
            for file in files {
                if let Some(compression) = Compression::of(&file.location) {
                    return Err(InputPlanError::CompressedParquet {
                        location: file.location.clone(),
                        extension: format!("{compression:?}").to_lowercase(),
                    });
                }
            }
            match files.iter().find(|f| f.size > 0) {
                Some(file) => {
                    let location = Location::parse_with(&file.location, storage)?;
                    parquet_schema(
                        location.store().clone(),
                        location.path().clone(),
                        &file.location,
                        file.size,
                    )
                    .await?
                }
                None => return Err(InputPlanError::NothingToInfer),
            }
        }
    };
    Ok(InputSpec {
        format,
        schema,
        csv_delimiter,
        skip_bad_records: request.skip_bad_records,
    })
}

/// Parses `name:type,name:type`. Types: string, int (64-bit), int32,
/// double, float (32-bit), bool, date, timestamp (microseconds), or any
/// Arrow type name such as `Decimal128(10, 2)`.
pub fn parse_schema(text: &str) -> Result<SchemaRef, InputPlanError> {
    let mut fields = Vec::new();
    for column in split_top_level(text) {
        let column = column.trim();
        let Some((name, type_name)) = column.split_once(':') else {
            return Err(InputPlanError::BadSchema(format!(
                "`{column}` is not name:type"
            )));
        };
        let (name, type_name) = (name.trim(), type_name.trim());
        if name.is_empty() {
            return Err(InputPlanError::BadSchema(format!(
                "`{column}` has no column name"
            )));
        }
        let data_type = match type_name.to_ascii_lowercase().as_str() {
            "string" | "str" | "utf8" | "text" => DataType::Utf8,
            "int" | "int64" | "long" | "bigint" => DataType::Int64,
            "int32" | "integer" => DataType::Int32,
            "double" | "float64" => DataType::Float64,
            "float" | "float32" => DataType::Float32,
            "bool" | "boolean" => DataType::Boolean,
            "date" | "date32" => DataType::Date32,
            "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
            _ => DataType::from_str(type_name).map_err(|e| {
                InputPlanError::BadSchema(format!(
                    "column `{name}`: unknown type `{type_name}` ({e})"
                ))
            })?,
        };
        if fields.iter().any(|f: &Field| f.name() == name) {
            return Err(InputPlanError::BadSchema(format!(
                "column `{name}` appears twice"
            )));
        }
        fields.push(Field::new(name, data_type, true));
    }
    if fields.is_empty() {
        return Err(InputPlanError::BadSchema("no columns".to_string()));
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Splits at commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// Infers a CSV or JSON lines schema from the heads of the first files.
async fn infer(
    files: &[InputFile],
    format: InputFormat,
    delimiter: u8,
    storage: &StorageOptions,
) -> Result<SchemaRef, InputPlanError> {
    let mut merged: Option<(String, Schema)> = None;
    for file in files.iter().filter(|f| f.size > 0).take(SAMPLE_FILES) {
        let head = read_head(file, format, storage).await?;
        let failed = |e: harrow_sdk::arrow::error::ArrowError| InputPlanError::Inference {
            location: file.location.clone(),
            reason: e.to_string(),
        };
        let schema = match format {
            InputFormat::Csv => {
                let (schema, _) = harrow_sdk::arrow::csv::reader::Format::default()
                    .with_header(true)
                    .with_delimiter(delimiter)
                    .infer_schema(Cursor::new(&head[..]), Some(SAMPLE_RECORDS))
                    .map_err(failed)?;
                schema
            }
            _ => {
                let (schema, _) = harrow_sdk::arrow::json::reader::infer_json_schema(
                    Cursor::new(&head[..]),
                    Some(SAMPLE_RECORDS),
                )
                .map_err(failed)?;
                schema
            }
        };
        merged = Some(match merged {
            None => (file.location.clone(), schema),
            Some((first, so_far)) if format == InputFormat::Csv => {
                let names = |s: &Schema| {
                    s.fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                if names(&so_far) != names(&schema) {
                    return Err(InputPlanError::HeaderMismatch {
                        location: file.location.clone(),
                        found: names(&schema),
                        expected: names(&so_far),
                        first,
                    });
                }
                let widened = merge_schemas(&so_far, &schema);
                (first, widened)
            }
            Some((first, so_far)) => {
                let widened = merge_schemas(&so_far, &schema);
                (first, widened)
            }
        });
    }
    match merged {
        Some((_, schema)) if !schema.fields().is_empty() => Ok(Arc::new(schema)),
        _ => Err(InputPlanError::NothingToInfer),
    }
}

/// The first records of a file, decompressed, cut at a record boundary.
async fn read_head(
    file: &InputFile,
    format: InputFormat,
    storage: &StorageOptions,
) -> Result<Bytes, InputPlanError> {
    let location = Location::parse_with(&file.location, storage)?;
    let framing = Framing::of(format);
    if let Some(compression) = Compression::of(&file.location) {
        let mut reader = CompressedReader::open(
            location.store().clone(),
            location.path().clone(),
            &file.location,
            compression,
            SAMPLE_BYTES,
            framing,
        )
        .await?;
        return Ok(reader
            .next_chunk()
            .await?
            .map(|chunk| chunk.data)
            .unwrap_or_default());
    }
    let length = file.size.min(SAMPLE_BYTES as u64);
    let bytes = location
        .store()
        .get_range(location.path(), 0..length)
        .await
        .map_err(|source| InputError::Read {
            location: file.location.clone(),
            offset: 0,
            source,
        })?;
    if length == file.size {
        return Ok(bytes);
    }
    let end = framing.last_end(&bytes).unwrap_or(bytes.len());
    Ok(bytes.slice(..end))
}

/// Fields of both, by name in order of first appearance, with types
/// widened to agree.
fn merge_schemas(a: &Schema, b: &Schema) -> Schema {
    let mut fields: BTreeMap<&str, (usize, DataType)> = BTreeMap::new();
    for (i, field) in a.fields().iter().chain(b.fields().iter()).enumerate() {
        fields
            .entry(field.name().as_str())
            .and_modify(|(_, t)| *t = widen(t, field.data_type()))
            .or_insert((i, field.data_type().clone()));
    }
    let mut ordered: Vec<_> = fields.into_iter().collect();
    ordered.sort_by_key(|(_, (i, _))| *i);
    Schema::new(
        ordered
            .into_iter()
            .map(|(name, (_, t))| Field::new(name, t, true))
            .collect::<Vec<_>>(),
    )
}

fn widen(a: &DataType, b: &DataType) -> DataType {
    use DataType::*;
    match (a, b) {
        _ if a == b => a.clone(),
        (Null, other) | (other, Null) => other.clone(),
        (Int64, Float64) | (Float64, Int64) => Float64,
        _ => Utf8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_extensions_and_must_agree() {
        let csv = [
            InputFile::new("/d/a.csv", 1),
            InputFile::new("/d/b.CSV.gz", 1),
        ];
        assert_eq!(resolve_format(&csv, None).unwrap(), InputFormat::Csv);
        let mixed = [
            InputFile::new("/d/a.csv", 1),
            InputFile::new("/d/b.json", 1),
        ];
        let error = resolve_format(&mixed, None).unwrap_err().to_string();
        assert_eq!(
            error,
            "inputs mix formats: /d/a.csv is csv, /d/b.json is jsonl; pass --input-format or submit them separately"
        );
        assert_eq!(
            resolve_format(&mixed, Some(InputFormat::Text)).unwrap(),
            InputFormat::Text
        );
    }

    #[test]
    fn schemas_parse_with_friendly_and_arrow_type_names() {
        let schema = parse_schema("city:string, n:int ,price:Decimal128(10, 2),ok:bool").unwrap();
        let types: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(
            types,
            [
                DataType::Utf8,
                DataType::Int64,
                DataType::Decimal128(10, 2),
                DataType::Boolean
            ]
        );
        for (bad, says) in [
            ("city", "not name:type"),
            ("a:int,a:int", "appears twice"),
            ("a:complex", "unknown type `complex`"),
            ("", "no columns"),
        ] {
            let error = parse_schema(bad).unwrap_err().to_string();
            assert!(error.contains(says), "{bad:?}: {error}");
        }
    }

    #[tokio::test]
    async fn inference_widens_across_files_and_checks_headers() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            InputFile::new(path.to_str().unwrap(), text.len() as u64)
        };
        let a = write("a.csv", "city,n\nOslo,1\n");
        let b = write("b.csv", "city,n\nRome,2.5\n");
        let storage = StorageOptions::default();
        let request = InputRequest::default();
        let spec = plan_input(&[a.clone(), b], &request, &storage)
            .await
            .unwrap();
        assert_eq!(spec.format, InputFormat::Csv);
        assert_eq!(spec.schema.field(1).data_type(), &DataType::Float64);

        let c = write("c.csv", "n,city\n3,Bern\n");
        let error = plan_input(&[a, c], &request, &storage)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("header `n,city` differs from `city,n`"),
            "{error}"
        );

        let tsv = write("t.tsv", "city\tn\nOslo\t1\n");
        let spec = plan_input(&[tsv], &request, &storage).await.unwrap();
        assert_eq!(spec.csv_delimiter, b'\t');
        assert_eq!(spec.schema.field(1).data_type(), &DataType::Int64);

        let j1 = write("a.jsonl", "{\"k\":\"x\",\"v\":1}\n");
        let j2 = write("b.jsonl", "{\"v\":2,\"extra\":true}\n");
        let spec = plan_input(&[j1, j2], &request, &storage).await.unwrap();
        let names: Vec<&str> = spec
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["k", "v", "extra"]);
    }
}
