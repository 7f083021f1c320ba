//! Deterministic Zipf-distributed text: a fixed vocabulary of 100k words,
//! word ranks drawn with exponent 1.0 from a fixed seed, generated in
//! parallel chunks each with its own seed so the bytes never change.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use rayon::prelude::*;

const VOCABULARY: usize = 100_000;
const SEED: u64 = 0x5a49_5046_0001;
const CHUNK_BYTES: u64 = 16 << 20;

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn vocabulary() -> Vec<String> {
    let mut rng = Rng(SEED);
    let letters: Vec<char> = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZéü"
        .chars()
        .collect();
    (0..VOCABULARY)
        .map(|_| {
            let len = 2 + (rng.next() % 10) as usize;
            (0..len)
                .map(|_| letters[(rng.next() % letters.len() as u64) as usize])
                .collect()
        })
        .collect()
}

/// The cumulative Zipf(1.0) distribution over ranks.
fn cdf() -> Vec<f64> {
    let mut total = 0.0;
    let mut cdf: Vec<f64> = (1..=VOCABULARY)
        .map(|rank| {
            total += 1.0 / rank as f64;
            total
        })
        .collect();
    for value in &mut cdf {
        *value /= total;
    }
    cdf
}

/// The text file of `size` bytes in `dir`, generated if missing.
pub fn ensure_text(dir: &Path, size: u64) -> Result<PathBuf> {
    // The name carries the generator version: change it when the bytes change.
    let path = dir.join(format!("zipf-v2-{size}.txt"));
    generate(&path, size, b"", chunk_text)
}

/// A CSV of about `size` bytes in `dir`, generated if missing: a header
/// `key,value,price`, then rows whose key is a Zipf-drawn word, value an
/// integer in 0..1000 and price a decimal number.
pub fn ensure_csv(dir: &Path, size: u64) -> Result<PathBuf> {
    let path = dir.join(format!("zipf-v1-{size}.csv"));
    generate(&path, size, b"key,value,price\n", chunk_csv)
}

type Chunk = fn(&[String], &[f64], Rng, usize) -> Vec<u8>;

/// Writes `header` and chunks of about `size` bytes in total to `path`,
/// unless a complete file is there (marked by a `.done` file, or for text,
/// which is cut to exactly `size` bytes, by its size).
fn generate(path: &Path, size: u64, header: &[u8], chunk_bytes: Chunk) -> Result<PathBuf> {
    let done = path.with_extension("done");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let exact = header.is_empty() && std::fs::metadata(path).is_ok_and(|m| m.len() == size);
    if exact || (done.exists() && path.exists()) {
        return Ok(path.to_path_buf());
    }
    eprintln!("generating {} ...", path.display());
    let words = vocabulary();
    let cdf = cdf();
    let chunks = size.div_ceil(CHUNK_BYTES);
    let tmp = path.with_extension("tmp");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    out.write_all(header)?;
    // Generate a few chunks at a time in parallel, write them in order.
    for batch in (0..chunks).collect::<Vec<_>>().chunks(8) {
        let texts: Vec<Vec<u8>> = batch
            .par_iter()
            .map(|&chunk| {
                let len = CHUNK_BYTES.min(size - chunk * CHUNK_BYTES) as usize;
                chunk_bytes(
                    &words,
                    &cdf,
                    Rng(SEED ^ (chunk + 1).wrapping_mul(0x2545_F491_4F6C_DD1D)),
                    len,
                )
            })
            .collect();
        for text in texts {
            out.write_all(&text)?;
        }
    }
    out.flush()?;
    std::fs::rename(&tmp, path)?;
    std::fs::write(&done, b"")?;
    Ok(path.to_path_buf())
}

/// CSV rows of about `len` bytes.
fn chunk_csv(words: &[String], cdf: &[f64], mut rng: Rng, len: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(len + 64);
    while text.len() < len {
        let draw = rng.unit();
        let rank = cdf.partition_point(|p| *p < draw).min(VOCABULARY - 1);
        let value = rng.next() % 1000;
        let cents = rng.next() % 100_000;
        writeln!(
            text,
            "{},{value},{}.{:02}",
            words[rank],
            cents / 100,
            cents % 100
        )
        .expect("writing to memory");
    }
    text
}

/// Exactly `len` bytes of lines of Zipf words, ending in a newline.
fn chunk_text(words: &[String], cdf: &[f64], mut rng: Rng, len: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(len + 64);
    let mut on_line = 0;
    while text.len() < len {
        let draw = rng.unit();
        let rank = cdf.partition_point(|p| *p < draw).min(VOCABULARY - 1);
        text.extend_from_slice(words[rank].as_bytes());
        on_line += 1;
        if on_line == 12 {
            text.push(b'\n');
            on_line = 0;
        } else {
            text.push(b' ');
        }
    }
    text.truncate(len);
    if let Some(last) = text.last_mut() {
        *last = b'\n';
    }
    text
}
