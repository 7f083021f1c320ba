//! Built-in job `wordcount`: how often each word occurs. A word is a maximal
//! run of alphabetic characters (`char::is_alphabetic`), case kept. Output:
//! `word<TAB>count`.

use harrow_sdk::{Emitter, Job, JobArgs, JobDefinition, JobError, Line, Output};

pub const DEFINITION: JobDefinition = JobDefinition {
    name: "wordcount",
    summary: "count each word (maximal run of alphabetic characters, case kept): word<TAB>count",
    args: &[],
    create: |_args: &JobArgs| Ok(harrow_sdk::record_runtime(WordCount)),
};

#[cfg(feature = "plugin")]
harrow_sdk::export_plugin!(DEFINITION);

/// Counts words, combining counts in the map task.
#[derive(Debug, Clone, Copy, Default)]
pub struct WordCount;

impl Job for WordCount {
    type Key = String;
    type Value = u64;
    type Output = (String, u64);
    const OUTPUT_COLUMNS: &'static [&'static str] = &["word", "count"];
    const COMBINE: bool = true;

    fn map(&self, line: &Line<'_>, emit: &mut Emitter<'_, Self>) -> Result<(), JobError> {
        for_each_word(line.text, |word| emit.emit(word, 1));
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

/// Calls `f` with every maximal run of alphabetic characters in `text`.
/// ASCII bytes are classified without decoding; other characters are
/// decoded and tested with `char::is_alphabetic`.
pub fn for_each_word(text: &str, mut f: impl FnMut(&str)) {
    let bytes = text.as_bytes();
    let mut start: Option<usize> = None;
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        let (alphabetic, width) = if byte.is_ascii() {
            (byte.is_ascii_alphabetic(), 1)
        } else {
            let c = text[index..]
                .chars()
                .next()
                .expect("index is on a char boundary");
            (c.is_alphabetic(), c.len_utf8())
        };
        match (alphabetic, start) {
            (true, None) => start = Some(index),
            (false, Some(begin)) => {
                f(&text[begin..index]);
                start = None;
            }
            _ => {}
        }
        index += width;
    }
    if let Some(begin) = start {
        f(&text[begin..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for_each_word(text, |w| out.push(w.to_string()));
        out
    }

    #[test]
    fn words_are_runs_of_alphabetic_characters() {
        assert_eq!(words("Hello, world! x2y"), ["Hello", "world", "x", "y"]);
        assert_eq!(words("naïve café—Ärger 42"), ["naïve", "café", "Ärger"]);
        assert_eq!(words("日本語 текст"), ["日本語", "текст"]);
        assert!(words("123 ... \t").is_empty());
    }

    #[test]
    fn counts_words_across_files() {
        let job = harrow_sdk::record_runtime(WordCount);
        let lines = harrow_sdk::testing::run_text(
            job.as_ref(),
            &[("a.txt", "the cat\r\nThe cat sat\n"), ("b.txt", "cat")],
        )
        .unwrap();
        assert_eq!(lines, ["The\t1", "cat\t3", "sat\t1", "the\t1"]);
    }
}
