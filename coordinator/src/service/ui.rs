//! The web UI on the HTTP listener: jobs (`/`), a job with its timeline
//! (`/jobs/{id}`) and workers (`/workers`), rendered on the server as HTML
//! from the same reports as the JSON API. No script: a page of a running
//! job reloads itself every two seconds (`<meta http-equiv="refresh">`).
//! Everything that came from a user (names, arguments, paths, messages) is
//! escaped by `maud`. With tokens, a browser logs in at `/login` with the
//! client or viewer token and gets an HttpOnly, SameSite=Strict session
//! cookie; nothing here changes a job.

mod timeline;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use harrow_core::ids::JobId;
use harrow_core::report::{JobReport, PhaseReport, WorkerReport, duration};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use super::api::{HttpAccess, SESSION_COOKIE, SESSION_MS, now_ms};
use super::{Coordinator, parse_id};

/// Jobs per page of `/`, and attempts per page of a job's table.
const JOBS_PER_PAGE: usize = 50;
const ATTEMPTS_PER_PAGE: usize = 200;

const STYLE: &str = include_str!("ui/style.css");

#[derive(Clone)]
struct Ui {
    coordinator: Arc<Coordinator>,
    access: Arc<HttpAccess>,
}

/// The pages, behind the host check and (with tokens) a session.
pub fn router(coordinator: Arc<Coordinator>, access: Arc<HttpAccess>) -> Router {
    let ui = Ui {
        coordinator,
        access: access.clone(),
    };
    let pages = Router::new()
        .route("/", get(jobs_page))
        .route("/jobs/{id}", get(job_page))
        .route("/workers", get(workers_page))
        .layer(middleware::from_fn_with_state(access.clone(), admit_page));
    Router::new()
        .route("/login", get(login_page).post(log_in))
        .merge(pages)
        .with_state(ui)
}

/// A page refused for want of a token sends the browser to the login page.
async fn admit_page(
    State(access): State<Arc<HttpAccess>>,
    request: Request,
    next: Next,
) -> Response {
    match access.admit(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) if refusal.status == StatusCode::UNAUTHORIZED => {
            Redirect::to("/login").into_response()
        }
        Err(refusal) => (
            refusal.status,
            page("Refused", false, html! { p { (refusal.message) } }),
        )
            .into_response(),
    }
}

/// The frame of every page: the title, the navigation and `body`; a page
/// that `live` reloads every two seconds.
fn page(title: &str, live: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if live { meta http-equiv="refresh" content="2"; }
                title { (title) " · Harrow" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                nav { a href="/" { "Jobs" } a href="/workers" { "Workers" } }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// A time as UTC.
fn clock(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

fn progress(phase: &PhaseReport) -> Markup {
    let percent = match phase.total {
        0 => 100,
        total => phase.succeeded * 100 / total,
    };
    html! {
        span.bar title=(format!("{} running, {} pending, {} failed", phase.running, phase.pending, phase.failed)) {
            span.fill style=(format!("width:{percent}%")) {}
        }
        " " (phase.succeeded) "/" (phase.total)
    }
}

fn state(state: &str) -> Markup {
    html! { span class=(format!("state {state}")) { (state) } }
}

#[derive(Debug, Deserialize)]
struct Paging {
    #[serde(default)]
    page: usize,
}

fn pager(base: &str, page: usize, more: bool) -> Markup {
    html! {
        p.pager {
            @if page > 0 { a href=(format!("{base}?page={}", page - 1)) { "← newer" } " " }
            @if more { a href=(format!("{base}?page={}", page + 1)) { "older →" } }
        }
    }
}

async fn jobs_page(State(ui): State<Ui>, Query(paging): Query<Paging>) -> Response {
    let jobs = match ui.coordinator.job_statuses() {
        Ok(jobs) => jobs,
        Err(status) => return error_page(status),
    };
    let jobs: Vec<JobReport> = jobs.into_iter().map(Into::into).collect();
    let now = now_ms();
    let live = jobs.iter().any(|j| !j.is_terminal());
    let shown = jobs
        .iter()
        .skip(paging.page * JOBS_PER_PAGE)
        .take(JOBS_PER_PAGE);
    let more = jobs.len() > (paging.page + 1) * JOBS_PER_PAGE;
    let body = html! {
        @if jobs.is_empty() { p { "No jobs yet: submit one with " code { "harrow submit" } "." } }
        @else {
            table {
                thead { tr {
                    th { "Job" } th { "Name" } th { "Plugin" } th { "State" } th { "Submitted" }
                    th { "Queued" } th { "Running" } th.num { "Input bytes" } th.num { "Input records" }
                    th { "Maps" } th { "Reduces" }
                } }
                tbody {
                    @for job in shown {
                        tr {
                            td { a href=(format!("/jobs/{}", job.job_id)) { (job.job_id) } }
                            td { (job.job_name) }
                            td { @if let Some(plugin) = &job.plugin { (plugin.file_name) } }
                            td { (state(&job.state)) }
                            td { (clock(job.submitted_at_ms)) }
                            @let end = job.finished_at_ms.unwrap_or(now);
                            td { (duration(job.started_at_ms.unwrap_or(end).saturating_sub(job.submitted_at_ms))) }
                            td { @if let Some(started) = job.started_at_ms { (duration(end.saturating_sub(started))) } }
                            td.num { (job.input_bytes) }
                            td.num { (job.input_records) }
                            td { (progress(&job.map)) }
                            td { (progress(&job.reduce)) }
                        }
                    }
                }
            }
            (pager("/", paging.page, more))
        }
    };
    page("Jobs", live, body).into_response()
}

async fn job_page(
    State(ui): State<Ui>,
    Path(id): Path<String>,
    Query(paging): Query<Paging>,
) -> Response {
    let job: JobId = match parse_id(&id) {
        Ok(job) => job,
        Err(status) => return error_page(status),
    };
    let report: JobReport = match ui.coordinator.job_status(job, true) {
        Ok(status) => status.into(),
        Err(status) => return error_page(status),
    };
    let workers = ui.coordinator.worker_reports();
    job_markup(&report, &workers, now_ms(), paging.page).into_response()
}

/// The page of a job (`page`: of its attempts table) at `now`: its size
/// does not grow with the number of tasks past the timeline's buckets and
/// a page of attempts.
pub fn job_markup(
    report: &JobReport,
    workers: &[WorkerReport],
    now: u64,
    page_number: usize,
) -> Markup {
    let paging = Paging { page: page_number };
    let end = report.finished_at_ms.unwrap_or(now);
    let attempts: Vec<_> = report
        .tasks
        .iter()
        .flat_map(|t| t.attempts.iter().map(move |a| (t, a)))
        .collect();
    let failures: Vec<_> = attempts
        .iter()
        .filter(|(_, a)| !a.error.is_empty())
        .collect();
    let shown = attempts
        .iter()
        .skip(paging.page * ATTEMPTS_PER_PAGE)
        .take(ATTEMPTS_PER_PAGE);
    let more = attempts.len() > (paging.page + 1) * ATTEMPTS_PER_PAGE;
    let body = html! {
        dl {
            dt { "State" } dd { (state(&report.state)) @if !report.error.is_empty() { " " span.error { (report.error) } } }
            dt { "Job" } dd { (report.job_name) @if let Some(plugin) = &report.plugin { " from " (plugin.file_name) " (sha256 " code { (plugin.sha256) } ")" } }
            dt { "Input" } dd { @if report.inputs.is_empty() { "generated by the job" } @else { (report.inputs.join(" ")) } " (" (report.input_format) ")" }
            @if !report.args.is_empty() { dt { "Arguments" } dd { @for (key, value) in &report.args { code { (key) "=" (value) } " " } } }
            @if !report.input_columns.is_empty() { dt { "Schema" } dd { (report.input_columns.join(", ")) } }
            dt { "Output" } dd { (report.output) " (" (report.output_format) ", " (report.reducers) " reducers)" }
            dt { "Submitted" } dd { (clock(report.submitted_at_ms)) ", " (duration(end.saturating_sub(report.submitted_at_ms))) @if report.finished_at_ms.is_none() { " so far" } }
            dt { "Maps" } dd { (progress(&report.map)) }
            dt { "Reduces" } dd { (progress(&report.reduce)) }
            dt { "Records" } dd { (report.input_records) " in (" (report.input_bytes) " bytes), " (report.output_records) " out in " (report.output_files) " files" @if report.spilled_records > 0 { ", " (report.spilled_records) " spilled" } }
            dt { "Attempts" } dd { (report.attempts.total) " (" (report.attempts.running) " running, " (report.attempts.succeeded) " succeeded, " (report.attempts.failed) " failed, " (report.attempts.lost) " lost, " (report.attempts.killed) " killed)" }
            dt { "Limits" } dd { "at most " (report.faults.max_attempts) " failed attempts per task; worker timeout " (duration(report.faults.worker_timeout_ms)) ", stall timeout " (duration(report.faults.stall_timeout_ms)) }
        }
        @if !report.counters.is_empty() {
            h2 { "Counters" }
            table { tbody { @for (name, value) in &report.counters { tr { td { (name) } td.num { (value) } } } } }
        }
        h2 { "Timeline" }
        (timeline::render(report, workers, end))
        h2 { "Attempt durations" }
        (timeline::quantiles(report, end))
        @if !failures.is_empty() {
            h2 { "Failures" }
            @for (task, attempt) in failures.iter().take(50) {
                div.failure {
                    p { code { (attempt.attempt_id) } " on " (attempt.worker_id) " (" (attempt.state) ", " (task.input) ")" }
                    pre { (attempt.error) }
                }
            }
        }
        h2 { "Attempts" }
        table {
            thead { tr {
                th { "Attempt" } th { "Worker" } th { "State" } th { "Started" } th { "Took" }
                th.num { "Bytes in" } th.num { "Records in" } th.num { "Records out" }
            } }
            tbody {
                @for (_, attempt) in shown {
                    tr {
                        td { code { (attempt.attempt_id) } }
                        td { (attempt.worker_id) }
                        td { (state(&attempt.state)) }
                        td { (clock(attempt.started_at_ms)) }
                        td { (duration(attempt.finished_at_ms.unwrap_or(end).saturating_sub(attempt.started_at_ms))) }
                        td.num { (attempt.bytes_in) }
                        td.num { (attempt.records_in) }
                        td.num { (attempt.records_out) }
                    }
                }
            }
        }
        (pager(&format!("/jobs/{}", report.job_id), paging.page, more))
    };
    let title = format!("{} ({})", report.job_id, report.job_name);
    page(&title, !report.is_terminal(), body)
}

async fn workers_page(State(ui): State<Ui>) -> Response {
    let workers = ui.coordinator.worker_reports();
    let now = now_ms();
    let body = html! {
        @if workers.is_empty() { p { "No worker has registered." } }
        @else {
            table {
                thead { tr {
                    th { "Worker" } th { "State" } th { "Address" } th.num { "Slots" }
                    th.num { "Running" } th { "Heartbeat" } th { "Why" } th { "Excluded from" }
                } }
                tbody {
                    @for w in &workers {
                        tr {
                            td { (w.worker_id) }
                            td { (state(&w.state)) }
                            td { (w.address) }
                            td.num { (w.slots) }
                            td.num { (w.running_attempts) }
                            td { (duration(now.saturating_sub(w.last_heartbeat_ms))) " ago" }
                            td { (w.reason) }
                            td { @for job in &w.excluded_from { a href=(format!("/jobs/{job}")) { (job) } " " } }
                        }
                    }
                }
            }
        }
    };
    page("Workers", true, body).into_response()
}

fn error_page(status: tonic::Status) -> Response {
    let code = match status.code() {
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = html! { p.error { (status.message()) } };
    (code, page("Not here", false, body)).into_response()
}

fn login_form(message: Option<&str>) -> Markup {
    let body = html! {
        @if let Some(message) = message { p.error { (message) } }
        form method="post" action="/login" {
            label { "Client or viewer token " input type="password" name="token" autocomplete="current-password" required; }
            " " button type="submit" { "Log in" }
        }
    };
    page("Log in", false, body)
}

async fn login_page(State(ui): State<Ui>) -> Response {
    if !ui.access.guarded() {
        return Redirect::to("/").into_response();
    }
    login_form(None).into_response()
}

#[derive(Deserialize)]
struct Login {
    token: String,
}

async fn log_in(
    State(ui): State<Ui>,
    headers: axum::http::HeaderMap,
    Form(login): Form<Login>,
) -> Response {
    // The host check holds here too: a login from a rebound name is refused.
    if let Err(refusal) = ui.access.admit(&headers)
        && refusal.status != StatusCode::UNAUTHORIZED
    {
        return (refusal.status, refusal.message).into_response();
    }
    match ui.access.log_in(&login.token, now_ms()) {
        Some(session) => {
            let secure = if ui.access.https { "; Secure" } else { "" };
            let cookie = format!(
                "{SESSION_COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
                SESSION_MS / 1000
            );
            ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        None => (
            StatusCode::UNAUTHORIZED,
            login_form(Some("That is not the client or viewer token.")),
        )
            .into_response(),
    }
}

/// A synthetic job for the page-size test and the render bench.
#[doc(hidden)]
pub mod synthetic {
    use harrow_core::report::{AttemptReport, JobReport, TaskReport, WorkerReport};

    /// A finished job of `maps` map tasks, each one attempt of 1 to 3 s on
    /// one of 100 workers of 8 slots.
    pub fn synthetic_job(maps: usize) -> (JobReport, Vec<WorkerReport>) {
        let tasks = (0..maps)
            .map(|i| {
                let started = 1_000 * (i / 800) as u64;
                TaskReport {
                    task_id: format!("job-000001/m-{i:05}"),
                    state: "succeeded".into(),
                    input: format!("/data/part-{i}.txt[0..1048576]"),
                    attempts: vec![AttemptReport {
                        attempt_id: format!("job-000001/m-{i:05}/a-1"),
                        worker_id: format!("worker-{:04}", i % 100 + 1),
                        state: "succeeded".into(),
                        started_at_ms: started,
                        finished_at_ms: Some(started + 1_000 + (i % 3) as u64 * 1_000),
                        bytes_in: 1 << 20,
                        records_in: 10_000,
                        bytes_out: 1 << 19,
                        records_out: 5_000,
                        error: String::new(),
                    }],
                }
            })
            .collect();
        let report = JobReport {
            job_id: "job-000001".into(),
            job_name: "wordcount".into(),
            state: "succeeded".into(),
            submitted_at_ms: 0,
            finished_at_ms: Some(130_000),
            tasks,
            ..JobReport::default()
        };
        let workers = (1..=100)
            .map(|i| WorkerReport {
                worker_id: format!("worker-{i:04}"),
                address: format!("10.0.0.{i}:7071"),
                slots: 8,
                running_attempts: 0,
                last_heartbeat_ms: 0,
                registered_at_ms: 0,
                state: "alive".into(),
                reason: String::new(),
                excluded_from: Vec::new(),
            })
            .collect();
        (report, workers)
    }
}

#[cfg(test)]
mod tests {
    use super::synthetic::synthetic_job;
    use super::*;

    #[test]
    fn a_page_of_a_job_of_100000_tasks_stays_under_a_megabyte() {
        let (report, workers) = synthetic_job(100_000);
        let page = job_markup(&report, &workers, 200_000, 0).into_string();
        assert!(page.len() < 1 << 20, "{} bytes", page.len());
        // Bucketed: no bar per attempt, a page of the attempts table.
        assert_eq!(page.matches("data-attempt=").count(), 0);
        assert_eq!(
            page.matches("<code>job-000001/m-").count(),
            ATTEMPTS_PER_PAGE
        );
        // A small job gets a bar per attempt.
        let (report, workers) = synthetic_job(500);
        let page = job_markup(&report, &workers, 200_000, 0).into_string();
        assert_eq!(page.matches("data-attempt=").count(), 500);
    }
}
