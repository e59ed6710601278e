//! The routes: `POST /validate` (decode, review, encode, record), the probes, and the 4xx answers
//! to requests that are not reviews, each saying what to send instead.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError};
use thiserror::Error;
use tower_http::limit::RequestBodyLimitLayer;
use tracing::Instrument;

use crate::metrics::{self, Metrics};
use crate::references::protect::Protector;
use crate::review::{self, ReviewError};
use crate::validator::Validator;

/// Limits that protect the server from slow, large or many clients.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// For the TLS handshake, then the headers, then the body; on HTTP/1.1 also the wait for the
    /// next request on a kept-alive connection.
    pub request_timeout: Duration,
    /// An HTTP/2 connection on which nothing arrives for this long is pinged, and closed when the
    /// ping is not answered within it again.
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 8 * 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// What the handlers share.
pub struct App {
    pub validator: Validator,
    pub protector: Protector,
    pub metrics: Metrics,
    pub limits: Limits,
    /// Cleared when shutdown begins, so the readiness probe sends traffic elsewhere.
    pub accepting: AtomicBool,
}

impl App {
    pub fn new(
        validator: Validator,
        protector: Protector,
        metrics: Metrics,
        limits: Limits,
    ) -> Arc<Self> {
        Arc::new(App {
            validator,
            protector,
            metrics,
            limits,
            accepting: AtomicBool::new(true),
        })
    }
}

/// Every route the server answers.
pub fn router(app: Arc<App>) -> Router {
    let reviews = |route: MethodRouter<Arc<App>>| {
        route
            .fallback(|| async { Refusal::Method })
            // A declared length over the limit is refused before the body is read; an
            // undeclared one is cut off once it crosses the limit.
            .layer(RequestBodyLimitLayer::new(app.limits.max_body_bytes))
            .layer(middleware::from_fn_with_state(app.clone(), record_refusal))
    };
    Router::new()
        .route("/validate", reviews(post(validate)))
        .route("/protect", reviews(post(protect)))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: this server answers POST /validate, POST /protect, GET /healthz and GET /readyz\n",
            )
        })
        .with_state(app)
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if !app.accepting.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    if !app.validator.is_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "Function and Task caches not synced yet\n",
        )
            .into_response();
    }
    "ok\n".into_response()
}

/// A request to `/validate` refused before review, with a message saying what to send instead.
#[derive(Debug, Error)]
enum Refusal {
    #[error("Content-Type must be application/json: POST an AdmissionReview as JSON")]
    NotJson,
    #[error("use POST to send an AdmissionReview")]
    Method,
    #[error("the body is larger than the {0} byte limit (--max-body-bytes)")]
    TooLarge(usize),
    #[error("the body did not arrive within {} (--request-timeout)", humantime::format_duration(*.0))]
    SlowBody(Duration),
    #[error("cannot read the body: {0}")]
    Unreadable(axum::Error),
    #[error(transparent)]
    Invalid(#[from] ReviewError),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::Method => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::SlowBody(_) => StatusCode::REQUEST_TIMEOUT,
            Refusal::Unreadable(_) | Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Which judgment a route asks for.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    /// The hook kinds: executor references.
    Validate,
    /// Functions: protection of those in use.
    Protect,
}

/// Marks a response as one of this server's refusals, with the text it sent.
#[derive(Clone)]
struct Refused(Arc<str>);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let message: Arc<str> = format!("{self}\n").into();
        let mut response = (
            self.status(),
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            message.to_string(),
        )
            .into_response();
        response.extensions_mut().insert(Refused(message));
        response
    }
}

/// Counts and logs every refusal of `/validate` and `/protect`: the one place they all pass. The
/// body limit's own 413 is given this server's text.
async fn record_refusal(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let status = response.status();
    if !status.is_client_error() {
        return response;
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE && response.extensions().get::<Refused>().is_none() {
        response = Refusal::TooLarge(app.limits.max_body_bytes).into_response();
    }
    app.metrics.record_rejected(status.as_u16());
    let message = response
        .extensions()
        .get::<Refused>()
        .map_or("", |m| m.0.trim_end());
    tracing::info!(status = status.as_u16(), %message, "refused request");
    response
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// The API server's own deadline for this call, sent as `?timeout=5s`.
fn api_server_timeout(uri: &Uri) -> Option<Duration> {
    let value = uri
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("timeout="))?;
    humantime::parse_duration(value).ok()
}

/// `POST /validate`: the hook kinds.
async fn validate(State(app): State<Arc<App>>, request: Request) -> Result<Response, Refusal> {
    answer(app, request, Endpoint::Validate).await
}

/// `POST /protect`: Functions.
async fn protect(State(app): State<Arc<App>>, request: Request) -> Result<Response, Refusal> {
    answer(app, request, Endpoint::Protect).await
}

/// Reads the body (within the size limit and the request timeout), decodes, reviews and encodes
/// it, and records the review.
async fn answer(app: Arc<App>, request: Request, endpoint: Endpoint) -> Result<Response, Refusal> {
    if !is_json(request.headers()) {
        return Err(Refusal::NotJson);
    }
    let timeout = api_server_timeout(request.uri());
    let body = request.into_body().collect();
    let body = match tokio::time::timeout(app.limits.request_timeout, body).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(err)) if caused_by::<LengthLimitError>(&err) => {
            return Err(Refusal::TooLarge(app.limits.max_body_bytes))
        }
        Ok(Err(err)) => return Err(Refusal::Unreadable(err)),
        Err(_) => return Err(Refusal::SlowBody(app.limits.request_timeout)),
    };

    let started = Instant::now();
    let (version, request) = review::decode(&body)?;
    let span = tracing::info_span!("review", uid = %request.uid);
    let outcome = match endpoint {
        Endpoint::Validate => {
            app.validator
                .review(&request, timeout)
                .instrument(span.clone())
                .await
        }
        Endpoint::Protect => {
            app.protector
                .review(&request, timeout)
                .instrument(span.clone())
                .await
        }
    };
    let elapsed = started.elapsed();
    match outcome.other_kind {
        Some(label) => app.metrics.record_review_of(
            label,
            &request.operation,
            outcome.verdict,
            elapsed.as_secs_f64(),
        ),
        None => app.metrics.record_review(
            outcome.kind,
            &request.operation,
            outcome.verdict,
            elapsed.as_secs_f64(),
        ),
    }
    // A denial or a warning is what an operator looks for, at info. An allowed review is already
    // counted in the metrics and recorded in the API server's audit log: it is logged at debug,
    // since formatting and writing a line for each is a large share of what a review costs.
    macro_rules! log_review {
        ($level:expr) => {
            tracing::event!(
                $level,
                kind = %request.kind.kind,
                namespace = request.namespace.as_deref().unwrap_or(""),
                name = %request.name,
                operation = metrics::operation_label(&request.operation),
                dry_run = request.dry_run(),
                judged = outcome.judged,
                verdict = outcome.verdict.as_str(),
                latency_us = elapsed.as_micros() as u64,
                denial = %outcome.reply.message,
                "review"
            )
        };
    }
    span.in_scope(|| match outcome.verdict {
        metrics::Verdict::Allowed => log_review!(tracing::Level::DEBUG),
        metrics::Verdict::Warned | metrics::Verdict::Denied => log_review!(tracing::Level::INFO),
    });
    match review::encode(version, &request.uid, outcome.reply) {
        Ok(json) => Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response()),
        // Serializing our own response cannot fail in practice; if it did, the API server
        // applies its failurePolicy to the 500.
        Err(err) => {
            tracing::error!(error = %err, "cannot encode the AdmissionReview response");
            Ok((
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the response\n",
            )
                .into_response())
        }
    }
}

/// Whether `err`, or an error it wraps, is an `E`.
fn caused_by<E: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if err.is::<E>() {
            return true;
        }
        cause = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_json_by_its_media_type_alone() {
        for (value, json) in [
            (&b"application/json"[..], true),
            (b"application/json; charset=utf-8", true),
            (b"Application/JSON", true),
            (b" application/json ;charset=utf-8", true),
            (b"application/jsonx", false),
            (b"application/json-patch+json", false),
            (b"text/yaml", false),
            (b"", false),
            (b"application/json\xff", false),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_bytes(value).unwrap(),
            );
            assert_eq!(
                is_json(&headers),
                json,
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
        assert!(!is_json(&HeaderMap::new()), "no Content-Type");
    }

    #[test]
    fn reads_the_api_server_deadline() {
        for (uri, want) in [
            ("/validate?timeout=5s", Some(Duration::from_secs(5))),
            ("/validate?a=b&timeout=30s", Some(Duration::from_secs(30))),
            ("/validate?timeout=500ms", Some(Duration::from_millis(500))),
            ("/validate?timeout=1m30s", Some(Duration::from_secs(90))),
            ("/validate?timeout=oops", None),
            ("/validate?timeout=s", None),
            ("/validate?timeout=5s&a=s", Some(Duration::from_secs(5))),
            ("/validate?timeout=99999999999999999999s", None),
            ("/validate?timeout=-5s", None),
            ("/validate", None),
        ] {
            let uri: Uri = uri.parse().unwrap();
            assert_eq!(api_server_timeout(&uri), want, "{uri}");
        }
    }
}
