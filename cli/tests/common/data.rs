//! Test input: a deterministic corpus (small, or large and generated),
//! the books in shared/data when present, compressed copies, and the
//! sequential reference computations outputs are compared with.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

/// A small deterministic random generator (splitmix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "the",
    "The",
    "THE",
    "cat",
    "Cat",
    "sat",
    "on",
    "mat",
    "naïve",
    "café",
    "Ärger",
    "straße",
    "日本語",
    "текст",
    "über",
    "x",
    "a",
    "zebra",
    "Zebra",
    "éclair",
    "ελληνικά",
    "don",
    "t",
    "it",
    "s",
    "harrow",
    "map",
    "reduce",
];
const SEPARATORS: &[&str] = &[
    " ", " ", " ", ", ", ". ", "; ", "—", " 42 ", "3rd", "\t", "-", "'", "  (", ") ", "_", "9",
];

/// Writes the test corpus into `dir`: files of different sizes with mixed
/// case, punctuation, digits, non-ASCII letters, CRLF and LF line ends, an
/// empty file and one without a final newline.
pub fn write_corpus(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng::new(0x4841_5252_4f57);
    let mut paths = Vec::new();
    for (index, lines) in [0usize, 1, 7, 60, 400, 2500].iter().enumerate() {
        let mut text = String::new();
        for line in 0..*lines {
            let words = rng.below(14);
            for _ in 0..words {
                text.push_str(WORDS[rng.below(WORDS.len())]);
                text.push_str(SEPARATORS[rng.below(SEPARATORS.len())]);
            }
            let last_line = line + 1 == *lines;
            if !(last_line && index == 3) {
                text.push_str(if rng.below(3) == 0 { "\r\n" } else { "\n" });
            }
        }
        let path = dir.join(format!("doc-{index}.txt"));
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    paths
}

/// The words of `text` as the wordcount job defines them, computed the
/// simplest way.
pub fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if c.is_alphabetic() {
            current.push(c);
        } else if !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned()
}

/// Sequential word count, as sorted `word\tcount` lines.
pub fn reference_wordcount(files: &[PathBuf]) -> Vec<String> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for file in files {
        for word in words(&read_lossy(file)) {
            *counts.entry(word).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|(w, n)| format!("{w}\t{n}"))
        .collect()
}

/// Sequential inverted index, as sorted `word\tN\tnames` lines.
pub fn reference_inverted_index(files: &[PathBuf]) -> Vec<String> {
    let mut index: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        for word in words(&read_lossy(file)) {
            index.entry(word).or_default().insert(name.clone());
        }
    }
    index
        .into_iter()
        .map(|(w, names)| {
            let names: Vec<String> = names.into_iter().collect();
            format!("{w}\t{}\t{}", names.len(), names.join(","))
        })
        .collect()
}

/// All lines of all `part-r-*` files in `dir`, sorted; asserts `_SUCCESS`
/// exists and nothing else is visible.
pub fn read_output(dir: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(
        names.contains(&"_SUCCESS".to_string()),
        "no _SUCCESS in {dir}: {names:?}"
    );
    for name in &names {
        if name == "_SUCCESS" {
            continue;
        }
        assert!(name.starts_with("part-r-"), "unexpected {name} in {dir}");
        let text = std::fs::read_to_string(Path::new(dir).join(name)).unwrap();
        lines.extend(text.lines().map(str::to_string));
    }
    lines.sort();
    lines
}

/// `data` compressed with the codec of a file extension: gz, zst or bz2.
pub fn compress(extension: &str, data: &[u8]) -> Vec<u8> {
    use async_compression::tokio::write::{BzEncoder, GzipEncoder, ZstdEncoder};
    use tokio::io::{AsyncWrite, AsyncWriteExt};
    async fn run(mut encoder: impl AsyncWrite + Unpin, data: &[u8]) {
        encoder.write_all(data).await.unwrap();
        encoder.shutdown().await.unwrap();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut out = Vec::new();
    runtime.block_on(async {
        match extension {
            "gz" => run(GzipEncoder::new(&mut out), data).await,
            "zst" => run(ZstdEncoder::new(&mut out), data).await,
            "bz2" => run(BzEncoder::new(&mut out), data).await,
            other => panic!("{other}"),
        }
    });
    out
}

/// The gutenberg books CI has, if present.
pub fn gutenberg() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/gutenberg");
    dir.is_dir().then(|| dir.canonicalize().unwrap())
}

/// The `.txt` files in `dir`, sorted.
pub fn text_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    files
}

/// Writes `files` text files of about `bytes_per_file` each into `dir`:
/// lines of 5 to 15 lowercase words drawn from a vocabulary of 20,000 with
/// a skewed (Zipf-like) frequency, as prose has. Returns the sequential
/// word count of it (sorted `word\tcount` lines), tallied as it is written.
pub fn write_large_corpus(dir: &Path, files: usize, bytes_per_file: usize) -> Vec<String> {
    use std::io::Write;
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng::new(0x0053_4341_4c45);
    let vocabulary: Vec<String> = (0..20_000)
        .map(|_| {
            let len = 2 + rng.below(9);
            (0..len)
                .map(|_| (b'a' + rng.below(26) as u8) as char)
                .collect()
        })
        .collect();
    let mut counts = vec![0u64; vocabulary.len()];
    for file in 0..files {
        let mut out =
            std::io::BufWriter::new(File::create(dir.join(format!("part-{file}.txt"))).unwrap());
        let mut written = 0;
        while written < bytes_per_file {
            let words = 5 + rng.below(11);
            for w in 0..words {
                // u³ over the vocabulary: low indexes are far more common.
                let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
                let index = (u * u * u * vocabulary.len() as f64) as usize;
                counts[index] += 1;
                let word = &vocabulary[index];
                out.write_all(word.as_bytes()).unwrap();
                out.write_all(if w + 1 == words { b"\n" } else { b" " })
                    .unwrap();
                written += word.len() + 1;
            }
        }
        out.flush().unwrap();
    }
    let mut total: BTreeMap<&str, u64> = BTreeMap::new();
    for (word, count) in vocabulary.iter().zip(counts) {
        if count > 0 {
            *total.entry(word).or_default() += count;
        }
    }
    total
        .into_iter()
        .map(|(w, n)| format!("{w}\t{n}"))
        .collect()
}

/// The bytes of each `part-r-*` file in `dir`, by name.
pub fn part_files(dir: &str) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_str().unwrap().starts_with("part-r-"))
        .map(|e| {
            let name = e.file_name().into_string().unwrap();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect()
}
