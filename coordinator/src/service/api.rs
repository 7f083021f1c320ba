//! The read-only JSON API under `/api/v1/` on the HTTP listener: jobs, a
//! job, its tasks with their attempts (paged) and workers, in the shapes
//! `harrow jobs --json`, `harrow status --json` and `harrow workers --json`
//! print. Nothing here changes state.
//!
//! Who may read: with tokens, a caller presenting the client token or the
//! viewer token as `Authorization: Bearer`; without tokens, anyone who can
//! reach the listener (which is then loopback, or the operator said
//! `--insecure`). Every request's `Host` must be an IP address,
//! `localhost` or a name the operator configured, so a web page on some
//! other site cannot reach a loopback coordinator by rebinding its DNS name
//! to 127.0.0.1.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use harrow_core::ids::JobId;
use harrow_core::report::{JobReport, TaskReport, WorkerReport};
use harrow_core::rpc::security::Token;
use serde::{Deserialize, Serialize};
use tonic::{Code, Status};

use super::{Coordinator, parse_id};

/// Tasks per page of `jobs/{id}/attempts` unless asked otherwise, and the
/// most a page holds.
const PAGE: usize = 1_000;
const MAX_PAGE: usize = 10_000;

/// Who may read the API and the pages, and under which host names.
#[derive(Debug, Default)]
pub struct HttpAccess {
    /// The tokens that open it (the client's and the viewer's); none: open.
    tokens: Vec<Token>,
    /// Host names it answers to besides IP addresses and `localhost`.
    hosts: Vec<String>,
    /// Browser sessions opened with a token on the login page, by their
    /// cookie, with when they expire (ms since the epoch).
    sessions: Mutex<HashMap<String, u64>>,
    /// Served over HTTPS: session cookies are marked `Secure`.
    pub https: bool,
}

/// The cookie a browser session is kept in, and how long it lasts.
pub const SESSION_COOKIE: &str = "harrow_session";
pub const SESSION_MS: u64 = 12 * 3600 * 1000;
/// Sessions kept at once; the oldest go first.
const MAX_SESSIONS: usize = 1_000;

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl HttpAccess {
    pub fn new(tokens: Vec<Token>, hosts: Vec<String>) -> Self {
        HttpAccess {
            tokens,
            hosts,
            sessions: Mutex::default(),
            https: false,
        }
    }

    /// Whether it needs a token at all.
    pub fn guarded(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Opens a browser session for a caller who presented `token`; its
    /// cookie value, or `None` for a token that opens nothing.
    pub fn log_in(&self, token: &str, now_ms: u64) -> Option<String> {
        if !self
            .tokens
            .iter()
            .any(|t| t.matches(token.trim().as_bytes()))
        {
            return None;
        }
        let id = Token::random().ok()?.expose().to_string();
        let mut sessions = self.sessions.lock().expect("sessions lock");
        sessions.retain(|_, expires| *expires > now_ms);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), now_ms + SESSION_MS);
        Some(id)
    }

    /// Whether the request's cookie names a live session.
    fn in_session(&self, headers: &HeaderMap, now_ms: u64) -> bool {
        let sessions = self.sessions.lock().expect("sessions lock");
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .flat_map(|h| h.split(';'))
            .filter_map(|pair| pair.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
            .any(|id| sessions.get(id).is_some_and(|expires| *expires > now_ms))
    }

    /// Admits a request with these headers (a Bearer token or a session
    /// cookie), or says why not.
    pub fn admit(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if !self.answers_to(host) {
            return Err(Refusal {
                status: StatusCode::MISDIRECTED_REQUEST,
                message: format!(
                    "this coordinator does not answer to the host name {host:?}; name it with --http-host"
                ),
            });
        }
        if self.tokens.is_empty() || self.in_session(headers, now_ms()) {
            return Ok(());
        }
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "));
        match presented {
            Some(token)
                if self
                    .tokens
                    .iter()
                    .any(|t| t.matches(token.trim().as_bytes())) =>
            {
                Ok(())
            }
            Some(_) => Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                message: "the token presented is not the client or viewer token".into(),
            }),
            None => Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                message: "present the client or viewer token as Authorization: Bearer TOKEN, or log in at /login".into(),
            }),
        }
    }

    /// Whether `host` (a `Host` header: a name or address, maybe a port)
    /// is an IP address, `localhost` or a configured name.
    fn answers_to(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            // [v6] or [v6]:port
            Some(rest) => rest.split_once(']').map_or("", |(address, _)| address),
            None => match host.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                _ => host,
            },
        };
        !name.is_empty()
            && (name.parse::<IpAddr>().is_ok()
                || name.eq_ignore_ascii_case("localhost")
                || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(name)))
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = error_body(self.status, self.message);
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid"));
        }
        response
    }
}

/// A scheduler error as an HTTP status and a JSON body.
struct ApiError(Status);

impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        ApiError(status)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.0.code() {
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::InvalidArgument => StatusCode::BAD_REQUEST,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error_body(status, self.0.message().to_string())
    }
}

fn error_body(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// The API's routes, behind the host and token checks.
pub fn router(coordinator: Arc<Coordinator>, access: Arc<HttpAccess>) -> Router {
    Router::new()
        .route("/api/v1/jobs", get(jobs))
        .route("/api/v1/jobs/{id}", get(job))
        .route("/api/v1/jobs/{id}/attempts", get(attempts))
        .route("/api/v1/workers", get(workers))
        .with_state(coordinator)
        .layer(middleware::from_fn_with_state(access, admit))
}

async fn admit(State(access): State<Arc<HttpAccess>>, request: Request, next: Next) -> Response {
    match access.admit(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

async fn jobs(
    State(coordinator): State<Arc<Coordinator>>,
) -> Result<Json<Vec<JobReport>>, ApiError> {
    let jobs = coordinator.job_statuses()?;
    Ok(Json(jobs.into_iter().map(Into::into).collect()))
}

async fn job(
    State(coordinator): State<Arc<Coordinator>>,
    Path(id): Path<String>,
) -> Result<Json<JobReport>, ApiError> {
    let job: JobId = parse_id(&id)?;
    Ok(Json(coordinator.job_status(job, false)?.into()))
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

/// A page of a job's tasks, each with its attempts.
#[derive(Debug, Serialize)]
struct TaskPage {
    job_id: String,
    /// Tasks in the job, maps first.
    total: usize,
    offset: usize,
    tasks: Vec<TaskReport>,
}

async fn attempts(
    State(coordinator): State<Arc<Coordinator>>,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<TaskPage>, ApiError> {
    let job: JobId = parse_id(&id)?;
    let report: JobReport = coordinator.job_status(job, true)?.into();
    let limit = page.limit.unwrap_or(PAGE).min(MAX_PAGE);
    let total = report.tasks.len();
    let tasks = report
        .tasks
        .into_iter()
        .skip(page.offset)
        .take(limit)
        .collect();
    Ok(Json(TaskPage {
        job_id: report.job_id,
        total,
        offset: page.offset,
        tasks,
    }))
}

async fn workers(State(coordinator): State<Arc<Coordinator>>) -> Json<Vec<WorkerReport>> {
    Json(coordinator.worker_reports())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: &str, authorization: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().unwrap());
        if let Some(value) = authorization {
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn host_names_other_than_addresses_localhost_and_configured_ones_are_refused() {
        let access = HttpAccess::new(Vec::new(), vec!["harrow.example.com".into()]);
        for host in [
            "127.0.0.1:9090",
            "10.1.2.3",
            "[::1]:9090",
            "localhost:9090",
            "LOCALHOST",
            "harrow.example.com:443",
            "Harrow.Example.com",
        ] {
            assert_eq!(access.admit(&headers(host, None)), Ok(()), "{host}");
        }
        for host in ["evil.example:9090", "127.0.0.1.evil.example", "", "[::1"] {
            let refused = access.admit(&headers(host, None)).unwrap_err();
            assert_eq!(refused.status, StatusCode::MISDIRECTED_REQUEST, "{host}");
            assert!(
                refused.message.contains("--http-host"),
                "{}",
                refused.message
            );
        }
    }

    #[test]
    fn with_tokens_only_the_client_or_viewer_token_opens_it() {
        let token = |fill: char| Token::from_wire(&fill.to_string().repeat(40)).unwrap();
        let access = HttpAccess::new(vec![token('c'), token('v')], Vec::new());
        let bearer = |fill: char| format!("Bearer {}", fill.to_string().repeat(40));
        assert_eq!(
            access.admit(&headers("localhost", Some(&bearer('c')))),
            Ok(())
        );
        assert_eq!(
            access.admit(&headers("localhost", Some(&bearer('v')))),
            Ok(())
        );
        for authorization in [None, Some(bearer('w')), Some("Basic abc".to_string())] {
            let refused = access
                .admit(&headers("localhost", authorization.as_deref()))
                .unwrap_err();
            assert_eq!(
                refused.status,
                StatusCode::UNAUTHORIZED,
                "{authorization:?}"
            );
        }
    }
}
