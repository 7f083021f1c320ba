//! Job progress on stderr: bars for maps and reduces on a terminal, plain
//! lines (one per change) otherwise, and the one-line summary.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use harrow_core::report::JobReport;

pub enum Progress {
    Bars {
        map: ProgressBar,
        reduce: ProgressBar,
        _group: MultiProgress,
    },
    Lines {
        last: String,
    },
}

impl Progress {
    pub fn new() -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress::Lines {
                last: String::new(),
            };
        }
        let group = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{prefix:>7} [{bar:40}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> ");
        let bar = |name: &str| {
            let bar = group.add(ProgressBar::new(0));
            bar.set_style(style.clone());
            bar.set_prefix(name.to_string());
            bar
        };
        Progress::Bars {
            map: bar("map"),
            reduce: bar("reduce"),
            _group: group,
        }
    }

    pub fn update(&mut self, report: &JobReport) {
        match self {
            Progress::Bars { map, reduce, .. } => {
                for (bar, phase) in [(map, &report.map), (reduce, &report.reduce)] {
                    bar.set_length(u64::from(phase.total));
                    bar.set_position(u64::from(phase.succeeded));
                    bar.set_message(format!("{} running", phase.running));
                }
            }
            Progress::Lines { last } => {
                let line = format!(
                    "{} {}: map {}/{} done ({} running), reduce {}/{} done ({} running)",
                    report.job_id,
                    report.state,
                    report.map.succeeded,
                    report.map.total,
                    report.map.running,
                    report.reduce.succeeded,
                    report.reduce.total,
                    report.reduce.running
                );
                if line != *last {
                    eprintln!("{line}");
                    *last = line;
                }
            }
        }
    }

    pub fn finish(self) {
        if let Progress::Bars { map, reduce, .. } = self {
            map.finish();
            reduce.finish();
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

/// The one-line summary of a finished job.
pub fn summary(report: &JobReport) -> String {
    let elapsed = report
        .finished_at_ms
        .map(|end| end.saturating_sub(report.submitted_at_ms) as f64 / 1000.0)
        .unwrap_or_default();
    let mut line = format!(
        "{} {} {}: {} input bytes, {} input records, {} output records in {} output files, {:.2} s",
        report.job_id,
        report.job_name,
        report.state,
        report.input_bytes,
        report.input_records,
        report.output_records,
        report.output_files,
        elapsed
    );
    if report.state == "succeeded" {
        line.push_str(&format!(" -> {}", report.output));
    }
    if report.spilled_records > 0 {
        line.push_str(&format!(
            "\n{} map output records spilled to disk (past the memory budget)",
            report.spilled_records
        ));
    }
    if !report.counters.is_empty() {
        let counters: Vec<String> = report
            .counters
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        line.push_str(&format!("\ncounters: {}", counters.join(", ")));
    }
    let bad = &report.bad_records;
    if let Some(first) = bad.samples.first() {
        line.push_str(&format!(
            "\nskipped {} malformed input records (see `harrow status {}`), the first: {} at byte {}: {}",
            bad.skipped, report.job_id, first.location, first.offset, first.reason
        ));
    }
    if !report.error.is_empty() {
        line.push_str(&format!("\nerror: {}", report.error));
    }
    line
}
