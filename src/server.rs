//! HTTPS: routes, request limits, the TLS accept loop and graceful shutdown. Thin on purpose:
//! decode, review, encode, record.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::{Bytes, BytesMut};
use futures::future::ready;
use futures::task::AtomicWaker;
use futures::FutureExt;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body as HttpBody, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;
use tracing::Instrument;

use crate::admission::Validator;
use crate::metrics::{self, Metrics};
use crate::review;
use crate::tls::TlsSource;

mod deadline;

use deadline::Deadlines;

/// Limits that protect the server from slow, large or many clients.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// For the headers, then again for the body.
    pub request_timeout: Duration,
    /// A connection that moves no byte for this long is closed (gracefully).
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
    pub metrics: Metrics,
    pub limits: Limits,
    /// Cleared when shutdown begins, so the readiness probe sends traffic elsewhere.
    pub accepting: AtomicBool,
}

impl App {
    pub fn new(validator: Validator, metrics: Metrics, limits: Limits) -> Arc<Self> {
        Arc::new(App {
            validator,
            metrics,
            limits,
            accepting: AtomicBool::new(true),
        })
    }
}

/// Where the API server POSTs reviews.
const VALIDATE: &str = "/validate";

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            VALIDATE,
            post(|State(app): State<Arc<App>>, request: Request| async move {
                match validate(app, request) {
                    Validate::Review(review) => review.await,
                    Validate::Refused(refused) => refused,
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(app)
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if !app.accepting.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    if !app.validator.source().is_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "Function cache not synced yet\n",
        )
            .into_response();
    }
    "ok\n".into_response()
}

/// A request refused before review: the status, and a message saying what to send instead.
fn refuse(app: &App, status: StatusCode, message: String) -> Response {
    app.metrics.record_rejected(status.as_u16());
    tracing::info!(status = status.as_u16(), %message, "refused request");
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message + "\n",
    )
        .into_response()
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    // What the API server sends, matched before any parsing.
    if value.as_bytes() == b"application/json" {
        return true;
    }
    value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// The API server's own deadline for this call, sent as `?timeout=5s`.
fn api_server_timeout(query: Option<&str>) -> Option<Duration> {
    let query = query?;
    // What the API server sends is `timeout=` alone: found without splitting the query.
    let value = match query.strip_prefix("timeout=") {
        Some(value) if !value.contains('&') => value,
        _ => query
            .split('&')
            .find_map(|kv| kv.strip_prefix("timeout="))?,
    };
    // And whole seconds ("10s"): read without the general parser.
    match value.strip_suffix('s').and_then(|n| n.parse::<u64>().ok()) {
        Some(seconds) => Some(Duration::from_secs(seconds)),
        None => humantime::parse_duration(value).ok(),
    }
}

/// What every connection serves. `POST /validate`, the route all real traffic takes, goes straight
/// to [`validate`], without the router's per-request matching, extensions and boxing; the rest
/// (the probes, and the 404 and 405 answers) goes through the axum router, which routes
/// `/validate` to the same function.
#[derive(Clone)]
struct Routes {
    app: Arc<App>,
    router: Router,
}

type RoutesFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for Routes {
    type Response = Response;
    type Error = Infallible;
    type Future = RoutesFuture;

    fn call(&self, request: hyper::Request<Incoming>) -> RoutesFuture {
        if request.method() == Method::POST && request.uri().path() == VALIDATE {
            // The review's future is boxed as it is, not inside another future: it is the
            // largest thing a request allocates, and each layer around it is another copy.
            return match validate(self.app.clone(), request) {
                Validate::Review(review) => Box::pin(review.map(Ok)),
                Validate::Refused(refused) => Box::pin(ready(Ok(refused))),
            };
        }
        Box::pin(self.router.clone().oneshot(request))
    }
}

/// What `/validate` makes of a request before reading its body.
enum Validate<F> {
    /// The future that reads the body, reviews it and answers.
    Review(F),
    /// The answer that refuses the request on its headers alone.
    Refused(Response),
}

/// `/validate`. The checks that need only the headers run before the future is built, so the
/// future holds the body and the review, not the whole request.
fn validate<B>(
    app: Arc<App>,
    request: axum::http::Request<B>,
) -> Validate<impl Future<Output = Response>>
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if !is_json(request.headers()) {
        return Validate::Refused(refuse(
            &app,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json: POST an AdmissionReview as JSON".into(),
        ));
    }
    let max = app.limits.max_body_bytes;
    // A declared length (Content-Length, which hyper has already parsed and checked) is the
    // body's lower bound: over the limit, the request is refused before a byte of it is read.
    if request.body().size_hint().lower() > max as u64 {
        return Validate::Refused(refuse(&app, StatusCode::PAYLOAD_TOO_LARGE, too_large(max)));
    }
    let timeout = api_server_timeout(request.uri().query());
    let body = Limited::new(request.into_body(), max);
    Validate::Review(async move {
        let body = match read_body(&app, body).await {
            Ok(body) => body,
            Err(refused) => return refused,
        };
        answer(&app, &body, timeout).await
    })
}

fn too_large(max: usize) -> String {
    format!("the body is larger than the {max} byte limit (--max-body-bytes)")
}

/// The whole body, within the size limit and the request timeout; or the refusal to send.
async fn read_body<B>(app: &App, body: Limited<B>) -> Result<Bytes, Response>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut collect = std::pin::pin!(collect(body));
    // A review's body has usually arrived with its headers: read it without arming a timer,
    // and arm one only for a body still on its way.
    let collected = match futures::FutureExt::now_or_never(collect.as_mut()) {
        Some(done) => Ok(done),
        None => tokio::time::timeout(app.limits.request_timeout, collect).await,
    };
    match collected {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => Err(refuse(
            app,
            StatusCode::PAYLOAD_TOO_LARGE,
            too_large(app.limits.max_body_bytes),
        )),
        Ok(Err(err)) => Err(refuse(
            app,
            StatusCode::BAD_REQUEST,
            format!("cannot read the body: {err}"),
        )),
        Err(_) => Err(refuse(
            app,
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {} (--request-timeout)",
                humantime::format_duration(app.limits.request_timeout)
            ),
        )),
    }
}

/// The most a body's buffer is sized for before the bytes arrive; past it, it grows as they do.
const PRESIZE_MAX: usize = 64 * 1024;

/// The body's data, trailers ignored. A review's body usually comes in one frame, which is taken
/// as it is; more frames are joined in one buffer.
async fn collect<B: HttpBody<Data = Bytes> + Unpin>(mut body: B) -> Result<Bytes, B::Error> {
    let mut first = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if let Some(joined) = &mut joined {
            joined.extend_from_slice(&data);
        } else if first.is_empty() {
            first = data;
        } else {
            // Sized by what has arrived and what the client says is to come, but never more up
            // front than `PRESIZE_MAX`: a declared length costs the client nothing to send.
            let hint = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
            let size = first
                .len()
                .saturating_add(data.len())
                .saturating_add(hint)
                .min(PRESIZE_MAX);
            let mut buffer = BytesMut::with_capacity(size);
            buffer.extend_from_slice(&first);
            buffer.extend_from_slice(&data);
            joined = Some(buffer);
        }
    }
    Ok(joined.map_or(first, BytesMut::freeze))
}

/// Decodes, reviews and encodes one body, and records the review.
async fn answer(app: &App, body: &[u8], timeout: Option<Duration>) -> Response {
    let started = Instant::now();
    let (version, request) = match review::decode(body) {
        Ok(decoded) => decoded,
        Err(err) => return refuse(app, StatusCode::BAD_REQUEST, err.to_string()),
    };
    let span = tracing::info_span!("review", uid = %request.uid);
    let outcome = app
        .validator
        .review(&request, timeout)
        .instrument(span.clone())
        .await;
    let elapsed = started.elapsed();
    app.metrics.record_review(
        outcome.kind,
        &request.operation,
        outcome.verdict,
        elapsed.as_secs_f64(),
    );
    let operation = metrics::operation_label(&request.operation);
    span.in_scope(|| {
        tracing::info!(
            kind = %request.kind.kind,
            namespace = request.namespace.as_deref().unwrap_or(""),
            name = %request.name,
            operation = %operation,
            dry_run = request.dry_run,
            judged = outcome.judged,
            verdict = ?outcome.verdict,
            latency_us = elapsed.as_micros() as u64,
            denial = %outcome.reply.message,
            "review"
        )
    });
    match review::encode(version, &request.uid, &outcome.reply) {
        Ok(json) => {
            // Built directly: a static header value is neither checked nor copied per answer.
            let mut response = Response::new(axum::body::Body::from(json));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        // Serializing our own response cannot fail in practice; if it did, the API server
        // applies its failurePolicy to the 500.
        Err(err) => {
            tracing::error!(error = %err, "cannot encode the AdmissionReview response");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the response\n",
            )
                .into_response()
        }
    }
}

/// Serves `router` over TLS on `listener` until `shutdown` completes, then stops accepting, lets
/// in-flight requests finish within the grace period, and returns.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<TlsSource>,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = app.limits.clone();
    let service = Routes {
        app: app.clone(),
        router: router(app.clone()),
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // HTTP/1.1's header-read deadline and the timer that keeps it are the connection's own (see
    // `deadline`): both are set on each connection's copy of this builder.
    builder
        .http1()
        // Head and body flattened into one buffer, one write into TLS: rustls takes a vectored
        // write slice by slice, which costs more than copying an answer of a few hundred bytes.
        .writev(false)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        // No keep-alive pings: hyper's server sends them to idle connections too, and a peer's
        // answer is traffic, so no HTTP/2 connection would ever be idle for --idle-timeout. A
        // dead peer moves no byte and is closed as idle.
        .max_concurrent_streams(256);
    // How often each connection's watchdog looks: often enough to see a header deadline pass
    // soon after it does.
    let tick = limits
        .idle_timeout
        .min(limits.request_timeout)
        .min(Duration::from_secs(1))
        .max(Duration::from_millis(10));
    let builder = Arc::new(builder);
    let max_connections = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max_connections));
    let (draining_tx, draining) = watch::channel(false);
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
        let (builder, service, limits, draining) = (
            builder.clone(),
            service.clone(),
            limits.clone(),
            draining.clone(),
        );
        tokio::spawn(async move {
            let _permit = permit;
            let stream =
                match tokio::time::timeout(limits.request_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(err)) => {
                        tracing::debug!(%peer, error = %err, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            // The protocol agreed in the handshake (ALPN), served without reading the first bytes
            // to tell: the connection's first request head is then under its deadline at once.
            let alpn = stream.get_ref().1.alpn_protocol();
            let (h1_only, h2_only) = (alpn == Some(b"http/1.1"), alpn == Some(b"h2"));
            let (io, activity) = Tracked::new(stream);
            let deadlines = Deadlines::new(activity.clone(), limits.request_timeout, tick);
            // Copied here, on the connection's own task and only after its handshake, rather than
            // in the accept loop. The shared builder names no version, so each copy may name one.
            let mut builder = (*builder).clone();
            if h1_only {
                builder = builder.http1_only();
            } else if h2_only {
                builder = builder.http2_only();
            }
            builder
                .http1()
                .timer(deadlines.clone())
                .header_read_timeout(limits.request_timeout);
            // Borrowed by the connection for as long as this task runs: no second copy.
            let conn = builder.serve_connection(TokioIo::new(io), service);
            let watch = Watch {
                activity,
                deadlines,
                idle_timeout: limits.idle_timeout,
                tick,
                draining,
                peer,
            };
            serve_connection(conn, watch).await;
        });
    }

    drop(listener);
    app.accepting.store(false, Ordering::Release);
    let _ = draining_tx.send(true);
    tracing::info!("shutting down: no new connections; waiting for in-flight reviews");
    // Every connection holds a permit until it ends: all permits back means all connections done.
    let all_closed = permits.acquire_many(max_connections as u32);
    match tokio::time::timeout(limits.shutdown_grace, all_closed).await {
        Ok(_) => tracing::info!("all connections closed"),
        Err(_) => {
            tracing::warn!(grace = ?limits.shutdown_grace, "grace period over; closing remaining connections")
        }
    }
    Ok(())
}

/// What a connection's watchdog watches, and how often it looks.
struct Watch {
    activity: Activity,
    deadlines: Deadlines,
    idle_timeout: Duration,
    tick: Duration,
    draining: watch::Receiver<bool>,
    peer: SocketAddr,
}

/// Drives one connection: to completion, or to a graceful close when the server drains or the
/// connection has carried no bytes for `idle_timeout` (so idle clients cannot hold every slot).
///
/// The watchdog runs as its own task and asks for the close through a [`CloseSignal`], so a wake
/// of the connection (every request, every frame) polls the connection and one flag, not the
/// watchdog's timer and the drain channel as well.
async fn serve_connection<C>(conn: C, watch: Watch)
where
    C: Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>> + GracefulClose,
{
    let peer = watch.peer;
    let signal = Arc::new(CloseSignal::default());
    let watchdog = tokio::spawn(watch_connection(signal.clone(), watch));
    tokio::pin!(conn);
    let mut closing = false;
    let result = std::future::poll_fn(|cx| {
        if !closing {
            // Registered before the flag is read: a close asked for in between still wakes us.
            signal.waker.register(cx.waker());
            if signal.requested.load(Ordering::Acquire) {
                closing = true;
                conn.as_mut().close_gracefully();
            }
        }
        conn.as_mut().poll(cx)
    })
    .await;
    watchdog.abort();
    if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "connection ended with an error");
    }
}

/// A request, from a connection's watchdog to the connection, to close gracefully.
#[derive(Default)]
struct CloseSignal {
    requested: AtomicBool,
    waker: AtomicWaker,
}

/// Waits until the server drains or the connection has been idle for `idle_timeout`, then asks
/// the connection to close; on each tick, before and after, also advances the connection's
/// [`Deadlines`] (a connection asked to close still waits for its first request if it is reading
/// that request's head, and only the header deadline ends one that never completes). Activity is seen on the
/// watchdog's ticks (every second, or more often for shorter timeouts), so an idle connection is
/// closed up to two ticks late, and a header deadline is seen up to one tick late. The task ends
/// when the connection does, which aborts it.
async fn watch_connection(signal: Arc<CloseSignal>, watch: Watch) {
    let Watch {
        activity,
        deadlines,
        idle_timeout,
        tick,
        mut draining,
        peer,
    } = watch;
    let mut check = tokio::time::interval(tick);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut seen, mut active_at) = (activity.moves(), Instant::now());
    loop {
        tokio::select! {
            // Draining, or the server is gone: either way, time to close.
            _ = draining.wait_for(|d| *d) => break,
            _ = check.tick() => {
                deadlines.tick();
                let moves = activity.moves();
                if moves != seen {
                    (seen, active_at) = (moves, Instant::now());
                } else if active_at.elapsed() >= idle_timeout {
                    tracing::debug!(%peer, "closing idle connection");
                    break;
                }
            }
        }
    }
    signal.requested.store(true, Ordering::Release);
    signal.waker.wake();
    loop {
        check.tick().await;
        deadlines.tick();
    }
}

/// A connection that can be asked to finish its in-flight requests and close.
pub trait GracefulClose {
    fn close_gracefully(self: std::pin::Pin<&mut Self>);
}

impl<I, S, E> GracefulClose for auto::Connection<'_, I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: hyper::body::Body + Send + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn close_gracefully(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// How many reads and writes a connection has made that moved bytes, and how many of those were
/// reads; shared with its watchdog (idle is no move) and its header deadline (a head has begun
/// once a byte is read). The I/O path only counts, with no clock read per read or write; the
/// watchdog, on its own ticks, notes when the counts last changed.
#[derive(Clone, Default)]
struct Activity(Arc<Counts>);

#[derive(Default)]
struct Counts {
    moves: AtomicU64,
    reads: AtomicU64,
}

impl Activity {
    fn read(&self) {
        bump(&self.0.moves);
        bump(&self.0.reads);
    }

    fn wrote(&self) {
        bump(&self.0.moves);
    }

    fn moves(&self) -> u64 {
        self.0.moves.load(Ordering::Relaxed)
    }

    fn reads(&self) -> u64 {
        self.0.reads.load(Ordering::Relaxed)
    }
}

/// Adds one to a count with one writer (the connection's I/O, polled by one task at a time): a
/// load and a store count exactly, without a locked read-modify-write.
fn bump(count: &AtomicU64) {
    let n = count.load(Ordering::Relaxed);
    count.store(n.wrapping_add(1), Ordering::Relaxed);
}

/// An I/O stream that records activity on every read and write.
struct Tracked<S> {
    inner: S,
    activity: Activity,
}

impl<S> Tracked<S> {
    fn new(inner: S) -> (Self, Activity) {
        let activity = Activity::default();
        (
            Tracked {
                inner,
                activity: activity.clone(),
            },
            activity,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = std::pin::Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.wrote();
        }
        result
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = std::pin::Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.wrote();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serves Prometheus metrics over plain HTTP until `shutdown` completes.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functions::FileSource;
    use crate::rules::FailurePolicy;

    /// `serve_tls` answers `POST /validate` itself; the router keeps the route too (so other
    /// methods get 405), and must answer it the same way.
    #[tokio::test]
    async fn the_router_answers_reviews_as_the_direct_route_does() {
        let metrics = Metrics::default();
        let functions = FileSource::from_text(
            crate::EXAMPLE_FUNCTIONS,
            std::path::Path::new("functions.yaml"),
            metrics.clone(),
        )
        .unwrap();
        let validator = Validator::new(
            Arc::new(functions),
            FailurePolicy::Deny,
            Duration::from_secs(2),
        );
        let app = App::new(validator, metrics, Limits::default());
        let body = std::fs::read("tests/fixtures/reviews/backupconfiguration-create.json").unwrap();
        let request = || {
            axum::http::Request::post(VALIDATE)
                .header(header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from(body.clone()))
                .unwrap()
        };
        let read = |response: Response| async move {
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, bytes)
        };
        let direct = match validate(app.clone(), request()) {
            Validate::Review(review) => read(review.await).await,
            Validate::Refused(refused) => panic!("refused: {}", refused.status()),
        };
        let routed = read(router(app).oneshot(request()).await.unwrap()).await;
        assert_eq!(direct.0, StatusCode::OK);
        assert!(
            std::str::from_utf8(&direct.1)
                .unwrap()
                .contains(r#""uid":"2f4654dc-4eb5-4f5c-99a7-7fac85a06744","allowed":true"#),
            "{:?}",
            direct.1
        );
        assert_eq!(routed, direct);
    }

    #[tokio::test]
    async fn collects_a_body_of_one_frame_as_it_is_and_joins_more() {
        use http_body_util::StreamBody;
        use hyper::body::Frame;

        let body = |frames: Vec<Frame<Bytes>>| {
            StreamBody::new(futures::stream::iter(
                frames.into_iter().map(Ok::<_, Infallible>),
            ))
        };
        let one = Bytes::from_static(b"{\"kind\":\"AdmissionReview\"}");
        let got = collect(body(vec![Frame::data(one.clone())])).await.unwrap();
        assert_eq!(got, one);
        assert_eq!(got.as_ptr(), one.as_ptr(), "one frame is not copied");

        let mut trailers = HeaderMap::new();
        trailers.insert("x-t", HeaderValue::from_static("1"));
        let frames = vec![
            Frame::data(Bytes::from_static(b"ab")),
            Frame::data(Bytes::new()),
            Frame::data(Bytes::from_static(b"cd")),
            Frame::trailers(trailers),
            Frame::data(Bytes::from_static(b"ef")),
        ];
        assert_eq!(collect(body(frames)).await.unwrap(), "abcdef");
        assert_eq!(collect(body(Vec::new())).await.unwrap(), "");

        // Over the limit, whether in one frame or across several: the limit's own error.
        for frames in [vec!["abcdefg"], vec!["abc", "defg"]] {
            let frames = frames
                .into_iter()
                .map(|f| Frame::data(Bytes::from(f)))
                .collect();
            let err = collect(Limited::new(body(frames), 6)).await.unwrap_err();
            assert!(err.downcast_ref::<LengthLimitError>().is_some(), "{err}");
        }
    }

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
                HeaderValue::from_bytes(value).unwrap(),
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
        for (query, want) in [
            (Some("timeout=5s"), Some(Duration::from_secs(5))),
            (Some("a=b&timeout=30s"), Some(Duration::from_secs(30))),
            (Some("timeout=500ms"), Some(Duration::from_millis(500))),
            (Some("timeout=1m30s"), Some(Duration::from_secs(90))),
            (Some("timeout=oops"), None),
            (Some("timeout=s"), None),
            (Some("timeout=5s&a=s"), Some(Duration::from_secs(5))),
            (Some("timeout=99999999999999999999s"), None),
            (Some("timeout=-5s"), None),
            (None, None),
        ] {
            assert_eq!(api_server_timeout(query), want, "{query:?}");
        }
    }
}
