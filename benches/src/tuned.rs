//! The tuned hand-written word count Harrow is measured against: the input
//! cut into pieces at word boundaries and counted on rayon, one FxHash map
//! per rayon split, merged at the end. Word bytes are found 64 at a time as a
//! bitmask (ASCII letters, and any byte of a multi-byte character, checked
//! with `char::is_alphabetic` only when a run holds one). A word of at most
//! 15 bytes is an inline `u128` key (its bytes and its length), so the hot
//! loop neither allocates nor compares strings; longer words go to a map of
//! their own. A word is what `wordcount` counts: a maximal run of
//! alphabetic characters.

use rayon::prelude::*;
use rustc_hash::FxHashMap;

/// Counts per word: inline keys, and words longer than 15 bytes.
struct Counts {
    short: FxHashMap<u128, u64>,
    long: FxHashMap<Vec<u8>, u64>,
}

impl Default for Counts {
    /// Sized for a large vocabulary, so the hot loop rarely grows it.
    fn default() -> Self {
        Counts {
            short: FxHashMap::with_capacity_and_hasher(1 << 17, Default::default()),
            long: FxHashMap::default(),
        }
    }
}

impl Counts {
    /// Counts `text[begin..end]`.
    fn add(&mut self, text: &[u8], begin: usize, end: usize) {
        let len = end - begin;
        if len > 15 {
            let word = &text[begin..end];
            match self.long.get_mut(word) {
                Some(count) => *count += 1,
                None => {
                    self.long.insert(word.to_vec(), 1);
                }
            }
            return;
        }
        // One unaligned 16-byte load where the text allows, masked to the
        // word; the length goes in the top byte.
        let bytes = match text.get(begin..begin + 16) {
            Some(window) => u128::from_le_bytes(window.try_into().expect("16 bytes")),
            None => {
                let mut padded = [0u8; 16];
                padded[..len].copy_from_slice(&text[begin..end]);
                u128::from_le_bytes(padded)
            }
        };
        let key = (bytes & ((1u128 << (8 * len)) - 1)) | (len as u128) << 120;
        match self.short.get_mut(&key) {
            Some(count) => *count += 1,
            None => {
                self.short.insert(key, 1);
            }
        }
    }

    fn merge(self, other: Counts) -> Counts {
        let (mut big, small) = if self.short.len() >= other.short.len() {
            (self, other)
        } else {
            (other, self)
        };
        for (key, count) in small.short {
            *big.short.entry(key).or_default() += count;
        }
        for (key, count) in small.long {
            *big.long.entry(key).or_default() += count;
        }
        big
    }
}

/// Whether a byte may belong to a word: an ASCII letter, or any byte of a
/// multi-byte UTF-8 character (checked later).
fn word_byte(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte >= 0x80
}

/// Bit `i` set when `block[i]` may belong to a word.
fn mask(block: &[u8; 64]) -> u64 {
    let mut mask = 0u64;
    for (i, &byte) in block.iter().enumerate() {
        mask |= u64::from(word_byte(byte)) << i;
    }
    mask
}

/// Adds the words of `text`, which starts and ends at word boundaries.
fn count_piece(mut counts: Counts, text: &[u8]) -> Counts {
    let mut start: Option<usize> = None;
    let run = |counts: &mut Counts, begin: usize, end: usize| {
        if text[begin..end].is_ascii() {
            counts.add(text, begin, end);
        } else {
            split_non_ascii(&text[begin..end], |from, to| {
                counts.add(text, begin + from, begin + to)
            });
        }
    };
    let blocks = text.len() / 64;
    for block in 0..blocks {
        let base = block * 64;
        let bits = mask(text[base..base + 64].try_into().expect("64 bytes"));
        // Walk the edges of runs of set bits.
        let mut position = 0;
        while position < 64 {
            let rest = bits >> position;
            match start {
                None => {
                    if rest == 0 {
                        break;
                    }
                    position += rest.trailing_zeros() as usize;
                    start = Some(base + position);
                }
                Some(begin) => {
                    let zeros = (!rest).trailing_zeros() as usize;
                    if position + zeros >= 64 {
                        break;
                    }
                    position += zeros;
                    run(&mut counts, begin, base + position);
                    start = None;
                }
            }
        }
    }
    for (offset, &byte) in text[blocks * 64..].iter().enumerate() {
        let index = blocks * 64 + offset;
        match (word_byte(byte), start) {
            (true, None) => start = Some(index),
            (false, Some(begin)) => {
                run(&mut counts, begin, index);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(begin) = start {
        run(&mut counts, begin, text.len());
    }
    counts
}

/// Splits a run holding multi-byte characters at those that are not
/// alphabetic, reporting each word's range. ASCII bytes in a run are letters already; only multi-byte
/// characters are decoded (invalid UTF-8 splits too, as the engine
/// replaces it with U+FFFD, which is not alphabetic).
fn split_non_ascii(run: &[u8], mut word: impl FnMut(usize, usize)) {
    let mut start = 0;
    let mut index = 0;
    while index < run.len() {
        if run[index] < 0x80 {
            index += 1;
            continue;
        }
        let width = match run[index] {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            _ => 4,
        };
        let end = (index + width).min(run.len());
        let alphabetic = std::str::from_utf8(&run[index..end])
            .ok()
            .and_then(|c| c.chars().next())
            .is_some_and(char::is_alphabetic);
        if alphabetic {
            index = end;
        } else {
            if start < index {
                word(start, index);
            }
            // Skip the bad byte (or the whole non-alphabetic character).
            index = if std::str::from_utf8(&run[index..end]).is_ok() {
                end
            } else {
                index + 1
            };
            start = index;
        }
    }
    if start < run.len() {
        word(start, run.len());
    }
}

/// (distinct words, total count) of `text`.
pub fn count(text: &[u8]) -> (usize, u64) {
    let pieces = rayon::current_num_threads() * 16;
    let target = text.len() / pieces + 1;
    let mut bounds = vec![0];
    while let Some(&last) = bounds.last() {
        let mut cut = (last + target).min(text.len());
        // Move the cut past the word it falls in.
        while cut < text.len() && word_byte(text[cut]) {
            cut += 1;
        }
        bounds.push(cut);
        if cut == text.len() {
            break;
        }
    }
    // One map per rayon split, reused over its pieces; merged at the end.
    let counts = bounds
        .par_windows(2)
        .fold(Counts::default, |counts, w| {
            count_piece(counts, &text[w[0]..w[1]])
        })
        .reduce(Counts::default, Counts::merge);
    let distinct = counts.short.len() + counts.long.len();
    let total = counts.short.values().sum::<u64>() + counts.long.values().sum::<u64>();
    (distinct, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The simple definition, for comparison.
    fn reference(text: &str) -> (usize, u64) {
        let mut words = std::collections::HashMap::new();
        for word in text
            .split(|c: char| !c.is_alphabetic())
            .filter(|w| !w.is_empty())
        {
            *words.entry(word).or_insert(0u64) += 1;
        }
        (words.len(), words.values().sum())
    }

    #[test]
    fn counts_like_the_simple_definition() {
        let mut text = String::new();
        for i in 0..2_000 {
            text.push_str(
                [
                    "the ",
                    "naïve ",
                    "café—",
                    "x1y ",
                    "Straßenbahnhaltestelle ",
                    "日本語\n",
                ][i % 6],
            );
            if i % 7 == 0 {
                text.push_str(&"a".repeat(i % 70));
                text.push(' ');
            }
        }
        assert_eq!(count(text.as_bytes()), reference(&text));
        let invalid = b"ab\xffcd \xe2\x82x caf\xc3\xa9 \x82zz\xc3";
        assert_eq!(count(invalid), reference(&String::from_utf8_lossy(invalid)));
        assert_eq!(count(b""), (0, 0));
        assert_eq!(count(b"word"), (1, 1));
    }
}
