//! Job arguments: the `--arg key=value` pairs of a submission, parsed into
//! typed values with errors that name the argument.

use std::collections::BTreeMap;
use std::str::FromStr;

use arrow::datatypes::SchemaRef;

use crate::{JobError, text_schema};

/// One argument a job accepts, for `--help` and for rejecting typos.
#[derive(Debug, Clone, Copy)]
pub struct ArgSpec {
    pub name: &'static str,
    pub help: &'static str,
    pub required: bool,
}

/// The arguments of one job submission, and the schema of the input it
/// reads (text lines unless the submission reads a table format).
///
/// ```
/// use harrow_sdk::JobArgs;
/// let args = JobArgs::parse_pairs(["map_ms=250"]).unwrap();
/// assert_eq!(args.get_or::<u64>("map_ms", 0).unwrap(), 250);
/// assert_eq!(args.get_or::<u64>("reduce_ms", 7).unwrap(), 7);
/// assert!(args.require::<u64>("missing").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobArgs {
    values: BTreeMap<String, String>,
    input: SchemaRef,
}

impl Default for JobArgs {
    fn default() -> Self {
        JobArgs::new(BTreeMap::new())
    }
}

impl JobArgs {
    pub fn new(values: BTreeMap<String, String>) -> Self {
        JobArgs {
            values,
            input: text_schema(""),
        }
    }

    /// The same arguments for input with `schema`.
    pub fn with_input_schema(mut self, schema: SchemaRef) -> Self {
        self.input = schema;
        self
    }

    /// The schema of the input batches the job's map will see, before the
    /// projection to [`crate::JobSchema::input_columns`].
    pub fn input_schema(&self) -> &SchemaRef {
        &self.input
    }

    /// Parses `key=value` strings, as given on the command line.
    pub fn parse_pairs<I, S>(pairs: I) -> Result<Self, JobError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut values = BTreeMap::new();
        for pair in pairs {
            let pair = pair.as_ref();
            let Some((key, value)) = pair.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                return Err(JobError::InvalidArgument {
                    name: pair.to_string(),
                    value: pair.to_string(),
                    reason: "expected key=value".to_string(),
                });
            };
            values.insert(key.to_string(), value.to_string());
        }
        Ok(JobArgs::new(values))
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    /// The raw value of an argument, if given.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A typed optional argument.
    pub fn get<T>(&self, name: &str) -> Result<Option<T>, JobError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let Some(raw) = self.raw(name) else {
            return Ok(None);
        };
        raw.parse()
            .map(Some)
            .map_err(|e: T::Err| JobError::InvalidArgument {
                name: name.to_string(),
                value: raw.to_string(),
                reason: e.to_string(),
            })
    }

    /// A typed argument with a default.
    pub fn get_or<T>(&self, name: &str, default: T) -> Result<T, JobError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        Ok(self.get(name)?.unwrap_or(default))
    }

    /// A typed argument that must be given.
    pub fn require<T>(&self, name: &str) -> Result<T, JobError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.get(name)?.ok_or_else(|| JobError::MissingArgument {
            name: name.to_string(),
        })
    }

    /// Rejects arguments the job does not declare and missing required ones.
    pub fn check(&self, job: &str, specs: &[ArgSpec]) -> Result<(), JobError> {
        for name in self.values.keys() {
            if !specs.iter().any(|spec| spec.name == name) {
                let known: Vec<&str> = specs.iter().map(|spec| spec.name).collect();
                return Err(JobError::UnknownArgument {
                    job: job.to_string(),
                    name: name.clone(),
                    known: if known.is_empty() {
                        "no arguments".to_string()
                    } else {
                        known.join(", ")
                    },
                });
            }
        }
        for spec in specs.iter().filter(|spec| spec.required) {
            if !self.values.contains_key(spec.name) {
                return Err(JobError::MissingArgument {
                    name: spec.name.to_string(),
                });
            }
        }
        Ok(())
    }
}
