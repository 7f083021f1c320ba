//! A job's timeline as SVG, drawn on the server: a lane per worker slot
//! (attempts placed greedily, as they ran), a bar per attempt coloured by
//! phase and end (backups outlined); past `MAX_BARS` attempts, each worker
//! gets one lane of time buckets shaded by how busy its slots were, so a
//! 100,000-task job's page stays small. And the per-phase attempt-duration
//! quantiles, with the stragglers named.

use std::collections::BTreeMap;

use harrow_core::report::{AttemptReport, JobReport, TaskReport, WorkerReport, duration};
use maud::{Markup, html};

/// Attempts drawn one bar each; beyond, the timeline is bucketed.
pub const MAX_BARS: usize = 3_000;
/// Time buckets across a bucketed timeline, at most; and the most buckets
/// over all lanes, so a page stays small whatever the cluster's size.
const BUCKETS: usize = 120;
const MAX_CELLS: usize = 6_000;
const WIDTH: f64 = 1000.0;
const LABEL: f64 = 110.0;
const LANE: f64 = 14.0;
/// An attempt this many times the phase's median, and at least
/// `STRAGGLER_MS` longer, is a straggler.
const STRAGGLER: u64 = 2;
const STRAGGLER_MS: u64 = 1_000;

/// One attempt placed on the timeline.
struct Bar<'a> {
    attempt: &'a AttemptReport,
    phase: &'static str,
    backup: bool,
}

fn phase(attempt: &AttemptReport) -> &'static str {
    if attempt.attempt_id.contains("/r-") {
        "reduce"
    } else {
        "map"
    }
}

/// The task's attempts, each marked a backup if an earlier attempt of the
/// task was still running when it started.
fn bars(task: &TaskReport) -> impl Iterator<Item = Bar<'_>> {
    task.attempts.iter().enumerate().map(|(i, attempt)| Bar {
        attempt,
        phase: phase(attempt),
        backup: task.attempts[..i]
            .iter()
            .any(|e| e.finished_at_ms.is_none_or(|f| f > attempt.started_at_ms)),
    })
}

pub fn render(report: &JobReport, workers: &[WorkerReport], end: u64) -> Markup {
    let mut by_worker: BTreeMap<&str, Vec<Bar>> = BTreeMap::new();
    for bar in report.tasks.iter().flat_map(bars) {
        by_worker
            .entry(&bar.attempt.worker_id)
            .or_default()
            .push(bar);
    }
    let total: usize = by_worker.values().map(Vec::len).sum();
    if total == 0 {
        return html! { p { "No attempt has started yet." } };
    }
    let origin = by_worker
        .values()
        .flatten()
        .map(|b| b.attempt.started_at_ms)
        .min()
        .unwrap_or(end);
    let span = end.saturating_sub(origin).max(1) as f64;
    let x = |ms: u64| LABEL + ms.saturating_sub(origin) as f64 / span * (WIDTH - LABEL);
    let slots = |worker: &str| {
        workers
            .iter()
            .find(|w| w.worker_id == worker)
            .map_or(1, |w| w.slots.max(1) as usize)
    };
    let bucketed = total > MAX_BARS;
    let buckets_per_lane = (MAX_CELLS / by_worker.len().max(1)).clamp(10, BUCKETS);
    // Each worker's lanes: its slots' bars, or one lane of buckets.
    let mut lanes: Vec<(&str, Markup)> = Vec::new();
    for (worker, mut bars) in by_worker {
        if bucketed {
            lanes.push((
                worker,
                buckets(&bars, origin, span, slots(worker), buckets_per_lane),
            ));
            continue;
        }
        bars.sort_by_key(|b| b.attempt.started_at_ms);
        let mut ends: Vec<u64> = Vec::new();
        let mut placed: Vec<Vec<Bar>> = Vec::new();
        for bar in bars {
            let finish = bar.attempt.finished_at_ms.unwrap_or(end);
            let lane = match ends.iter().position(|&e| e <= bar.attempt.started_at_ms) {
                Some(lane) => lane,
                None => {
                    ends.push(0);
                    placed.push(Vec::new());
                    ends.len() - 1
                }
            };
            ends[lane] = finish;
            placed[lane].push(bar);
        }
        for (i, lane) in placed.iter().enumerate() {
            let label = if i == 0 { worker } else { "" };
            lanes.push((label, lane_bars(lane, end, &x)));
        }
    }
    let height = lanes.len() as f64 * LANE + 20.0;
    html! {
        svg.timeline xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(height)
            viewBox=(format!("0 0 {WIDTH} {height}")) role="img" aria-label="attempts over time by worker" {
            @for (i, (label, content)) in lanes.iter().enumerate() {
                g transform=(format!("translate(0,{})", i as f64 * LANE)) {
                    text x="4" y=(LANE - 3.0) { (label) }
                    (content)
                }
            }
            @for tick in 0..=4u64 {
                @let at = origin + (span as u64) * tick / 4;
                text x=(px(x(at))) y=(height - 4.0) text-anchor=(if tick == 4 { "end" } else { "start" }) {
                    "+" (duration(at - origin))
                }
            }
        }
        p.legend {
            span style="background:#4c8bd6" {} "map"
            span style="background:#8a5cc7" {} "reduce"
            span style="background:#d64c4c" {} "failed"
            span style="background:#e0a030" {} "lost"
            span style="background:#b0b5bd" {} "killed"
            " · outlined: a backup · faded: running"
            @if bucketed { " · " (total) " attempts, shaded by how busy each worker's slots were" }
        }
    }
}

/// A coordinate, to a tenth of a pixel.
fn px(value: f64) -> String {
    format!("{value:.1}")
}

fn lane_bars(bars: &[Bar], end: u64, x: &impl Fn(u64) -> f64) -> Markup {
    html! {
        @for bar in bars {
            @let a = bar.attempt;
            @let finish = a.finished_at_ms.unwrap_or(end);
            @let class = format!("{} {}{}", bar.phase, a.state, if bar.backup { " backup" } else { "" });
            rect class=(class) data-attempt=(a.attempt_id) x=(px(x(a.started_at_ms)))
                y="1" width=(px((x(finish) - x(a.started_at_ms)).max(1.0))) height=(LANE - 2.0) {
                title { (a.attempt_id) ": " (a.state) ", " (duration(finish - a.started_at_ms)) }
            }
        }
    }
}

/// One lane of `count` time buckets, each shaded by the share of the
/// worker's slot time its attempts used, coloured by the phase that used
/// the most.
fn buckets(bars: &[Bar], origin: u64, span: f64, slots: usize, count: usize) -> Markup {
    let width = span / count as f64;
    let mut busy = vec![[0.0f64; 2]; count];
    for bar in bars {
        let a = bar.attempt;
        let start = a.started_at_ms.saturating_sub(origin) as f64;
        let finish = a
            .finished_at_ms
            .map_or(span, |f| f.saturating_sub(origin) as f64);
        let first = ((start / width) as usize).min(count - 1);
        let last = ((finish / width) as usize).min(count - 1);
        for (i, bucket) in busy.iter_mut().enumerate().take(last + 1).skip(first) {
            let (lo, hi) = (i as f64 * width, (i + 1) as f64 * width);
            let overlap = finish.min(hi) - start.max(lo);
            bucket[usize::from(bar.phase == "reduce")] += overlap.max(0.0);
        }
    }
    // Each bucket's phase and share of slot time, in tenths; runs of equal
    // buckets are drawn as one rect.
    let shade = |[map, reduce]: [f64; 2]| {
        let share = ((map + reduce) / (width * slots as f64)).min(1.0);
        let phase = if reduce > map { "reduce" } else { "map" };
        (phase, (share * 10.0).ceil() as u32)
    };
    let mut runs: Vec<(usize, usize, (&str, u32))> = Vec::new();
    for (i, bucket) in busy.iter().enumerate() {
        let look = shade(*bucket);
        match runs.last_mut() {
            Some((_, end, last)) if *last == look && *end == i => *end = i + 1,
            _ => runs.push((i, i + 1, look)),
        }
    }
    let step = (WIDTH - LABEL) / count as f64;
    html! {
        @for (first, end, (phase, tenths)) in runs {
            @if tenths > 0 {
                rect class=(phase) x=(px(LABEL + first as f64 * step)) y="1"
                    width=(px((end - first) as f64 * step)) height=(LANE - 2.0)
                    fill-opacity=(format!("{:.1}", f64::from(tenths) / 10.0)) {}
            }
        }
    }
}

/// Per phase: how many attempts ended, p50, p95 and the longest, and the
/// attempts (running ones included) over `STRAGGLER` times the median.
pub fn quantiles(report: &JobReport, end: u64) -> Markup {
    let took = |a: &AttemptReport| {
        a.finished_at_ms
            .unwrap_or(end)
            .saturating_sub(a.started_at_ms)
    };
    let rows: Vec<_> = ["map", "reduce"]
        .into_iter()
        .filter_map(|name| {
            let attempts: Vec<&AttemptReport> = report
                .tasks
                .iter()
                .flat_map(|t| &t.attempts)
                .filter(|a| phase(a) == name)
                .collect();
            let mut ended: Vec<u64> = attempts
                .iter()
                .filter(|a| a.state == "succeeded")
                .map(|a| took(a))
                .collect();
            ended.sort_unstable();
            let at = |q: f64| ended[((ended.len() - 1) as f64 * q).round() as usize];
            (!ended.is_empty()).then(|| {
                let median = at(0.5);
                let stragglers: Vec<&str> = attempts
                    .iter()
                    .filter(|a| took(a) > (STRAGGLER * median).max(median + STRAGGLER_MS))
                    .map(|a| a.attempt_id.as_str())
                    .collect();
                (name, ended.len(), median, at(0.95), at(1.0), stragglers)
            })
        })
        .collect();
    html! {
        @if rows.is_empty() { p { "No attempt has succeeded yet." } }
        @else {
            table {
                thead { tr { th { "Phase" } th.num { "Succeeded" } th.num { "p50" } th.num { "p95" } th.num { "Max" } th { "Stragglers (over " (STRAGGLER) "× p50 and p50 + " (duration(STRAGGLER_MS)) ")" } } }
                tbody {
                    @for (name, count, p50, p95, max, stragglers) in &rows {
                        tr {
                            td { (name) } td.num { (count) } td.num { (duration(*p50)) }
                            td.num { (duration(*p95)) } td.num { (duration(*max)) }
                            td.stragglers {
                                @for id in stragglers.iter().take(10) { code { (id) } " " }
                                @if stragglers.len() > 10 { "and " (stragglers.len() - 10) " more" }
                            }
                        }
                    }
                }
            }
        }
    }
}
