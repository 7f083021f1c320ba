//! The TeraSort workload: records from teragen's generator (gensort -a
//! layout, 100 bytes, 10-byte keys) written once to a file, a hand-written
//! sort as the baseline, and a digest of sorted output to check every system
//! wrote the same bytes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use harrow_job_terasort::{KEY_BYTES, RECORD_BYTES, record_line};
use rayon::prelude::*;

const ROWS_PER_CHUNK: u64 = 1 << 18;

/// A file of `size / 100` records in `dir`, generated if missing.
pub fn ensure_records(dir: &Path, size: u64) -> Result<PathBuf> {
    let rows = size / RECORD_BYTES as u64;
    let path = dir.join(format!("terasort-v1-{rows}.txt"));
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == rows * RECORD_BYTES as u64) {
        return Ok(path);
    }
    std::fs::create_dir_all(dir)?;
    eprintln!("generating {} ...", path.display());
    let tmp = path.with_extension("tmp");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    let chunks: Vec<u64> = (0..rows.div_ceil(ROWS_PER_CHUNK)).collect();
    for batch in chunks.chunks(8) {
        let texts: Vec<String> = batch
            .par_iter()
            .map(|&chunk| {
                let start = chunk * ROWS_PER_CHUNK;
                let end = rows.min(start + ROWS_PER_CHUNK);
                let mut text = String::with_capacity((end - start) as usize * RECORD_BYTES);
                for row in start..end {
                    record_line(row, &mut text);
                    text.push_str("\r\n");
                }
                text
            })
            .collect();
        for text in texts {
            out.write_all(text.as_bytes())?;
        }
    }
    out.flush()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The hand-written sort: read the file, sort record slices by key with
/// rayon's `par_sort_unstable_by`, write them to `out/sorted`.
pub fn hand_sort(input: &Path, out: &Path) -> Result<()> {
    let data = std::fs::read(input)?;
    ensure!(data.len() % RECORD_BYTES == 0, "not whole records");
    let mut records: Vec<&[u8]> = data.chunks_exact(RECORD_BYTES).collect();
    records.par_sort_unstable_by(|a, b| a[..KEY_BYTES].cmp(&b[..KEY_BYTES]));
    std::fs::create_dir_all(out)?;
    let mut file =
        std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(out.join("sorted"))?);
    for record in records {
        file.write_all(record)?;
    }
    file.flush()?;
    Ok(())
}

/// GNU sort over whole lines in byte order (`LC_ALL=C`), as the Sort
/// Benchmark's peers run it: with unique keys, the same order as by key.
pub fn gnu_sort(input: &Path, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let output = crate::rss::run_child(
        std::process::Command::new("sort")
            .env("LC_ALL", "C")
            .arg("-S")
            .arg("4G")
            .arg(format!("--parallel={threads}"))
            .arg("-o")
            .arg(out.join("sorted"))
            .arg(input),
    )
    .context("running GNU sort")?;
    ensure!(
        output.status.success(),
        "GNU sort failed: {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Whether GNU sort is on the PATH.
pub fn has_gnu_sort() -> bool {
    std::process::Command::new("sort")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("GNU"))
}

/// (records, CRC32C of the bytes) of the visible files in `dir` read in
/// name order, after checking they are sorted by key.
pub fn digest(dir: &Path) -> Result<(u64, u32)> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    names.retain(|p| {
        !p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(['_', '.'])
    });
    names.sort();
    let (mut records, mut crc) = (0u64, 0u32);
    let mut last_key = Vec::new();
    for name in names {
        let data = std::fs::read(&name)?;
        ensure!(
            data.len() % RECORD_BYTES == 0,
            "{} is not whole records",
            name.display()
        );
        for record in data.chunks_exact(RECORD_BYTES) {
            ensure!(
                record[..KEY_BYTES] >= last_key[..],
                "{} is out of order",
                name.display()
            );
            last_key.clear();
            last_key.extend_from_slice(&record[..KEY_BYTES]);
        }
        records += (data.len() / RECORD_BYTES) as u64;
        crc = crc32c::crc32c_append(crc, &data);
    }
    Ok((records, crc))
}
