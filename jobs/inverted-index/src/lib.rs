//! Built-in job `inverted-index`: for each word, the number of distinct
//! input files it occurs in and their base names, sorted and comma-separated.
//! Output: `word<TAB>N<TAB>name1,name2,...`. Words are as in `wordcount`.

use harrow_job_wordcount::for_each_word;
use harrow_sdk::{Emitter, Job, JobArgs, JobDefinition, JobError, Line, Output, base_name};

pub const DEFINITION: JobDefinition = JobDefinition {
    name: "inverted-index",
    summary: "for each word, the files it occurs in: word<TAB>N<TAB>name1,name2,...",
    args: &[],
    create: |_args: &JobArgs| Ok(harrow_sdk::record_runtime(InvertedIndex)),
};

/// Maps each word to the base name of its file; the combiner and the reduce
/// take the union of comma-separated, sorted name lists.
#[derive(Debug, Clone, Copy, Default)]
pub struct InvertedIndex;

impl Job for InvertedIndex {
    type Key = String;
    /// A sorted, comma-separated set of file base names.
    type Value = String;
    type Output = (String, u64, String);
    const OUTPUT_COLUMNS: &'static [&'static str] = &["word", "files", "names"];
    const COMBINE: bool = true;

    fn map(&self, line: &Line<'_>, emit: &mut Emitter<'_, Self>) -> Result<(), JobError> {
        let name = base_name(line.file);
        if name.contains(',') {
            return Err(JobError::job(format!(
                "file name {name:?} contains a comma, which the output format uses as separator"
            )));
        }
        for_each_word(line.text, |word| emit.emit(word, name.to_string()));
        Ok(())
    }

    fn combine(&self, _word: &String, names: &mut dyn Iterator<Item = String>) -> String {
        union(names).join(",")
    }

    fn reduce(
        &self,
        word: &String,
        names: &mut dyn Iterator<Item = String>,
        out: &mut Output<'_, (String, u64, String)>,
    ) -> Result<(), JobError> {
        let names = union(names);
        out.push((word.clone(), names.len() as u64, names.join(",")));
        Ok(())
    }
}

/// The sorted distinct names in comma-separated name lists.
fn union(lists: &mut dyn Iterator<Item = String>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for list in lists {
        names.extend(
            list.split(',')
                .filter(|n| !n.is_empty())
                .map(str::to_string),
        );
    }
    names.sort_unstable();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_distinct_files_per_word() {
        let job = harrow_sdk::record_runtime(InvertedIndex);
        let lines = harrow_sdk::testing::run_text(
            job.as_ref(),
            &[
                ("/data/b.txt", "cat dog\ncat"),
                ("/data/a.txt", "cat"),
                ("/other/c.txt", "dog"),
            ],
        )
        .unwrap();
        assert_eq!(lines, ["cat\t2\ta.txt,b.txt", "dog\t2\tb.txt,c.txt"]);
    }
}
