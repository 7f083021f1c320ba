//! gzip, zstd and bzip2 inputs through a real cluster: read whole, one
//! split each, same words as the plain text; a corrupt one fails its job
//! with the file named, and the cluster runs the next job.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// The corpus again, each file compressed with one of the codecs.
fn compressed_copy(files: &[PathBuf], dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (index, file) in files.iter().enumerate() {
        let extension = ["gz", "zst", "bz2"][index % 3];
        let name = format!(
            "{}.{extension}",
            file.file_name().unwrap().to_str().unwrap()
        );
        std::fs::write(
            dir.join(name),
            compress(extension, &std::fs::read(file).unwrap()),
        )
        .unwrap();
    }
}

#[test]
fn compressed_inputs_count_the_same_words_as_plain_ones() {
    let cluster = Cluster::start(2, 2, 2);
    let corpus = cluster.path("corpus");
    let files = write_corpus(Path::new(&corpus));
    let packed = cluster.path("packed");
    compressed_copy(&files, Path::new(&packed));
    let out = cluster.path("out");
    // A tiny split size: compressed files still get one split each.
    let job = cluster.ok(&submit_args(
        "wordcount",
        &packed,
        &out,
        &["--split-size", "100", "--wait"],
    ));
    assert_eq!(read_output(&out), reference_wordcount(&files));
    let status: serde_json::Value =
        serde_json::from_str(&cluster.ok(&["status", job.trim(), "--json"])).unwrap();
    assert_eq!(status["map"]["total"], files.len());
}

#[test]
fn a_corrupt_compressed_file_fails_its_job_naming_it() {
    let cluster = Cluster::start(2, 2, 2);
    let input = cluster.path("input");
    std::fs::create_dir_all(&input).unwrap();
    let mut truncated = compress("gz", &b"words and more words\n".repeat(5000));
    truncated.truncate(truncated.len() / 2);
    let broken = format!("{input}/broken.txt.gz");
    std::fs::write(&broken, truncated).unwrap();
    std::fs::write(
        format!("{input}/fine.txt.zst"),
        compress("zst", b"fine words\n"),
    )
    .unwrap();
    let out = cluster.path("out");
    let output = cluster.harrow(&submit_args("wordcount", &input, &out, &["--wait"]));
    assert!(!output.status.success(), "{}", describe(&output));
    let job = String::from_utf8(output.stdout).unwrap();
    let status: serde_json::Value =
        serde_json::from_str(&cluster.ok(&["status", job.trim(), "--json"])).unwrap();
    let error = status["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("decompressing {broken}")),
        "{error}"
    );

    std::fs::remove_file(&broken).unwrap();
    let good = cluster.path("good");
    cluster.ok(&submit_args("wordcount", &input, &good, &["--wait"]));
    assert_eq!(read_output(&good), ["fine\t1", "words\t1"]);
}
