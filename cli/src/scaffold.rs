//! `harrow new`: a job crate a user can test, build as a plugin and submit.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The SDK of the source tree this binary was built from.
pub fn default_sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../jobs/sdk")
}

/// Creates the crate at `path` (which must not exist, or be empty),
/// depending on the SDK at `sdk`.
pub fn create(path: &Path, sdk: &Path) -> Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} does not end in a crate name", path.display()))?;
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        bail!(
            "{name:?} is not a crate name: use letters, digits, `-` and `_`, starting with a letter"
        );
    }
    let sdk = sdk.canonicalize().with_context(|| {
        format!(
            "no harrow-sdk at {}; pass --sdk with the path of jobs/sdk in a Harrow checkout",
            sdk.display()
        )
    })?;
    anyhow::ensure!(
        sdk.join("Cargo.toml").is_file(),
        "{} has no Cargo.toml; --sdk must point at jobs/sdk in a Harrow checkout",
        sdk.display()
    );
    if path.exists()
        && std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .next()
            .is_some()
    {
        bail!("{} already exists and is not empty", path.display());
    }
    let library = name.replace('-', "_");
    let fill = |template: &str| {
        template
            .replace("{name}", name)
            .replace("{library}", &library)
            .replace("{sdk}", &sdk.display().to_string())
    };
    let files = [
        ("Cargo.toml", fill(CARGO_TOML)),
        ("src/lib.rs", fill(LIB_RS)),
        ("README.md", fill(README)),
        (".gitignore", "/target\n".to_string()),
    ];
    for (file, contents) in files {
        let target = path.join(file);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, contents)
            .with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(())
}

const CARGO_TOML: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
# cdylib: the plugin library `harrow submit --plugin` uploads;
# rlib: for tests, and for linking the job into a program of your own.
crate-type = ["cdylib", "rlib"]

[dependencies]
harrow-sdk = { path = "{sdk}" }

# Optimized dependencies keep `cargo test` on real data quick.
[profile.dev.package."*"]
opt-level = 1

# A crate of its own, even inside another workspace's directory.
[workspace]
"#;

const LIB_RS: &str = r#"//! The `{name}` job: counts the words of at least `min_length` letters
//! (default 1), lowercased. Output: `word<TAB>count`.
//!
//! Build it as a plugin with `cargo build --release` and run it with
//! `harrow run --plugin target/release/lib{library}.so {name} --input ... --output ...`.

use harrow_sdk::{ArgSpec, Emitter, Job, JobArgs, JobDefinition, JobError, Line, Output};

/// The job as the engine finds it: its name, its arguments, how to build it.
pub const DEFINITION: JobDefinition = JobDefinition {
    name: "{name}",
    summary: "count words of at least min_length letters, lowercased: word<TAB>count",
    args: &[ArgSpec {
        name: "min_length",
        help: "the shortest word counted, in characters (default 1)",
        required: false,
    }],
    create: |args: &JobArgs| {
        let min_length = args.get_or("min_length", 1usize)?;
        Ok(harrow_sdk::record_runtime(WordCount { min_length }))
    },
};

// The plugin entry points: list every job the library offers.
harrow_sdk::export_plugin!(DEFINITION);

pub struct WordCount {
    min_length: usize,
}

impl Job for WordCount {
    type Key = String;
    type Value = u64;
    type Output = (String, u64);
    const OUTPUT_COLUMNS: &'static [&'static str] = &["word", "count"];
    /// Counts are summed in the map task before they are shuffled.
    const COMBINE: bool = true;

    fn map(&self, line: &Line<'_>, emit: &mut Emitter<'_, Self>) -> Result<(), JobError> {
        for word in line.text.split(|c: char| !c.is_alphabetic()) {
            if word.is_empty() {
                continue;
            }
            if word.chars().count() < self.min_length {
                // User counters are summed over the job and shown by `harrow status`.
                emit.counter("short_words").add(1);
                continue;
            }
            emit.emit(&word.to_lowercase(), 1);
        }
        Ok(())
    }

    fn combine(&self, _word: &String, counts: &mut dyn Iterator<Item = u64>) -> u64 {
        counts.sum()
    }

    fn reduce(
        &self,
        word: &String,
        counts: &mut dyn Iterator<Item = u64>,
        out: &mut Output<'_, (String, u64)>,
    ) -> Result<(), JobError> {
        out.push((word.clone(), counts.sum()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harrow_sdk::testing::{run_local, text_batch};

    #[test]
    fn counts_words_of_at_least_min_length() {
        let args = JobArgs::parse_pairs(["min_length=3"]).unwrap();
        let job = DEFINITION.instantiate(&args).unwrap();
        let input = text_batch("a.txt", "The cat and the hat\nA cat!\n").unwrap();
        let run = run_local(job.as_ref(), &[input]).unwrap();
        assert_eq!(run.lines().unwrap(), ["and\t1", "cat\t2", "hat\t1", "the\t2"]);
        assert_eq!(run.counters.get("short_words"), 1);
    }

    #[test]
    fn rejects_a_bad_argument() {
        let args = JobArgs::parse_pairs(["min_length=three"]).unwrap();
        let error = DEFINITION.instantiate(&args).err().unwrap();
        assert!(error.to_string().contains("min_length"), "{error}");
    }
}
"#;

const README: &str = r#"# {name}

A Harrow job, built as a plugin library.

```sh
cargo test                 # the job's own tests, in-process
cargo build --release      # the plugin: target/release/lib{library}.so
harrow run --plugin target/release/lib{library}.so {name} \
    --input 'books/*.txt' --output out --arg min_length=3
```

On a cluster, `harrow submit --plugin target/release/lib{library}.so {name} ...`
uploads the library to the coordinator; workers fetch it and run it in a
child process. Edit `src/lib.rs`: `map` sees each line of input, `reduce` each
word with its counts. Logging through `harrow_sdk::log::info!(...)` reaches
the worker's log with the attempt id.
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_crate_and_refuses_bad_names_and_full_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("max-temp");
        create(&path, &default_sdk_path()).unwrap();
        let manifest = std::fs::read_to_string(path.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"max-temp\""), "{manifest}");
        let lib = std::fs::read_to_string(path.join("src/lib.rs")).unwrap();
        assert!(lib.contains("name: \"max-temp\""));
        assert!(lib.contains("libmax_temp.so"));
        let again = create(&path, &default_sdk_path()).unwrap_err();
        assert!(again.to_string().contains("not empty"), "{again}");
        let bad = create(&dir.path().join("9lives"), &default_sdk_path()).unwrap_err();
        assert!(bad.to_string().contains("not a crate name"), "{bad}");
        let no_sdk = create(&dir.path().join("ok"), &dir.path().join("nowhere")).unwrap_err();
        assert!(no_sdk.to_string().contains("--sdk"), "{no_sdk}");
    }
}
