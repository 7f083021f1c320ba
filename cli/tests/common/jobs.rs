//! Reading what the CLI prints about jobs, and submitting the common ones.

use std::process::Output;

use super::cluster::Cluster;

/// The attempts of a status's tasks of one phase (`"m"` or `"r"`).
pub fn attempts<'a>(status: &'a serde_json::Value, phase: &str) -> Vec<&'a serde_json::Value> {
    let marker = format!("/{phase}-");
    status["tasks"]
        .as_array()
        .map(|tasks| {
            tasks
                .iter()
                .filter(|t| t["task_id"].as_str().unwrap().contains(&marker))
                .flat_map(|t| t["attempts"].as_array().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

pub fn describe(output: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Whether a `status --json` says the job ended.
pub fn is_terminal(status: &serde_json::Value) -> bool {
    matches!(
        status["state"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

/// The arguments of `harrow submit JOB --input INPUT --output OUTPUT`
/// followed by `extra`.
pub fn submit_args<'a>(
    job: &'a str,
    input: &'a str,
    output: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec!["submit", job, "--input", input, "--output", output];
    args.extend_from_slice(extra);
    args
}

/// Submits `wordcount` over `corpus` in splits of `split_size` to
/// `reducers` reducers; returns the job id.
pub fn submit_wordcount(
    cluster: &Cluster,
    corpus: &str,
    out: &str,
    split_size: &str,
    reducers: usize,
) -> String {
    let reducers = reducers.to_string();
    let args = [
        "submit",
        "wordcount",
        "--input",
        corpus,
        "--output",
        out,
        "--split-size",
        split_size,
        "--reducers",
        &reducers,
    ];
    cluster.ok(&args).trim().to_string()
}
