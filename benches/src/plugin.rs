//! The `plugin` workload: the same word count built in and as a plugin
//! library run in a child process, so the ratio is what isolation costs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

use crate::{Options, Run, Times, count_output, report, rss, run_harrow, zipf};

pub fn plugin(size: u64, o: &Options) -> Result<()> {
    let (data_dir, runs) = (o.data_dir.as_path(), o.runs.max(1));
    let input = zipf::ensure_text(data_dir, size)?;
    let bytes = std::fs::metadata(&input)?.len();
    let library = wordcount_plugin(data_dir)?;
    eprintln!("input: {} ({bytes} bytes)", input.display());
    let runtime = tokio::runtime::Runtime::new()?;
    let mut builtin_times = Times::new("wordcount built in (in-process)");
    let mut plugin_times = Times::new("wordcount plugin (child process not in RSS)");
    for _ in 0..runs {
        let builtin = Run::new("wordcount", &input, o);
        let (result, rss) = rss::measured(|| run_harrow(&runtime, builtin.clone()));
        let (seconds, out) = result?;
        builtin_times.add(seconds, rss);
        let expected = count_output(&out.path().join("out"))?;
        let (result, rss) = rss::measured(|| run_harrow(&runtime, builtin.plugin(&library)));
        let (seconds, out) = result?;
        plugin_times.add(seconds, rss);
        let got = count_output(&out.path().join("out"))?;
        ensure!(
            got == expected,
            "the plugin found {got:?}, built in {expected:?}"
        );
    }
    report("plugin", &mut [builtin_times, plugin_times], bytes)
}

/// Builds `jobs/wordcount` as a plugin library and copies it into `dir`.
fn wordcount_plugin(dir: &Path) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["rustc", "--message-format=json-render-diagnostics"])
        .args(["-p", "harrow-job-wordcount", "--release", "--lib"])
        .args(["--crate-type", "cdylib", "--features", "plugin"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo to build the wordcount plugin")?;
    ensure!(
        output.status.success(),
        "building the wordcount plugin failed"
    );
    let built = String::from_utf8(output.stdout)?
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .rfind(|f| f.extension().is_some_and(|e| e == "so"))
        .context("cargo built no wordcount plugin")?;
    std::fs::create_dir_all(dir)?;
    let library = dir.join("libwordcount_plugin.so");
    std::fs::copy(&built, &library)?;
    Ok(library)
}
