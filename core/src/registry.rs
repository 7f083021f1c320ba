//! The jobs a process knows by name. The `harrow` binary registers the
//! built-in jobs; the coordinator checks names and arguments at submit and
//! workers instantiate jobs from the same registry.

use std::collections::BTreeMap;
use std::sync::Arc;

use harrow_sdk::{JobArgs, JobDefinition, JobError, JobRuntime};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("unknown job `{name}` (known jobs: {known})")]
    UnknownJob { name: String, known: String },
    #[error("job `{name}`: {source}")]
    Job {
        name: String,
        #[source]
        source: JobError,
    },
}

#[derive(Debug, Clone, Default)]
pub struct JobRegistry {
    jobs: BTreeMap<&'static str, JobDefinition>,
}

impl JobRegistry {
    pub fn new(definitions: impl IntoIterator<Item = JobDefinition>) -> Self {
        let mut jobs = BTreeMap::new();
        for definition in definitions {
            let previous = jobs.insert(definition.name, definition);
            assert!(
                previous.is_none(),
                "job `{}` registered twice",
                definition.name
            );
        }
        JobRegistry { jobs }
    }

    pub fn definitions(&self) -> impl Iterator<Item = &JobDefinition> {
        self.jobs.values()
    }

    pub fn get(&self, name: &str) -> Result<&JobDefinition, RegistryError> {
        self.jobs
            .get(name)
            .ok_or_else(|| RegistryError::UnknownJob {
                name: name.to_string(),
                known: self.jobs.keys().copied().collect::<Vec<_>>().join(", "),
            })
    }

    /// Looks the job up and builds it with `args`, checking them.
    pub fn instantiate(
        &self,
        name: &str,
        args: &JobArgs,
    ) -> Result<Arc<dyn JobRuntime>, RegistryError> {
        self.get(name)?
            .instantiate(args)
            .map_err(|source| RegistryError::Job {
                name: name.to_string(),
                source,
            })
    }
}
