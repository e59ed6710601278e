//! The connections: TLS accept loop, the protocol ALPN agreed, timeouts, a bound on connections
//! served at once, and graceful shutdown.
//!
//! Each limit is a library's: the TLS handshake under `tokio::time::timeout`; HTTP/1.1 request
//! heads, and the wait for the next one on a kept-alive connection, under hyper's
//! `header_read_timeout`; the body under the router's timeout; silent HTTP/2 connections found
//! out by hyper's keep-alive pings; drain by hyper-util's `GracefulShutdown`.
//!
//! Nothing here arms a timer per read or write: a timer moved on every I/O wakes the runtime's
//! driver thread over and over under load.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::http::header;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::router::{router, App, Limits};
use crate::metrics::Metrics;
use crate::tls::TlsSource;

/// The two ways a connection is served, picked by what ALPN agreed: `h2`, or HTTP/1.1 (what a
/// TLS client that offers no ALPN speaks; HTTP/2 over TLS requires ALPN).
struct Protocols {
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
}

impl Protocols {
    fn new(limits: &Limits) -> Self {
        let mut h1 = auto::Builder::new(TokioExecutor::new()).http1_only();
        h1.http1()
            .timer(TokioTimer::new())
            // Also ends a kept-alive connection that starts no new request in this time: hyper
            // runs it from when it waits for a request head.
            .header_read_timeout(limits.request_timeout)
            .keep_alive(true);
        let mut h2 = auto::Builder::new(TokioExecutor::new()).http2_only();
        h2.http2()
            .timer(TokioTimer::new())
            // A connection on which nothing has arrived for the idle timeout is pinged, and
            // closed when the ping is not answered within it: a vanished client, or one that
            // stopped reading, gives its slot back.
            .keep_alive_interval(limits.idle_timeout)
            .keep_alive_timeout(limits.idle_timeout)
            .max_concurrent_streams(256);
        Protocols { h1, h2 }
    }
}

/// Serves the router over TLS on `listener` until `shutdown` completes, then stops accepting, lets
/// in-flight requests finish within the grace period, and returns.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<TlsSource>,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = app.limits.clone();
    let service = TowerToHyperService::new(router(app.clone()));
    let protocols = Arc::new(Protocols::new(&limits));
    let max_connections = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);

    loop {
        // A slot first, then a connection: over the limit, clients wait in the listen backlog.
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = TlsAcceptor::from(tls.current());
        let (protocols, service, limits) = (protocols.clone(), service.clone(), limits.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let Some(io) = handshake(acceptor, tcp, &limits).await else {
                return;
            };
            let h2 = io.get_ref().1.alpn_protocol() == Some(b"h2");
            let builder = if h2 { &protocols.h2 } else { &protocols.h1 };
            let conn = builder.serve_connection(TokioIo::new(io), service);
            if let Err(err) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }

    drop(listener);
    app.accepting.store(false, Ordering::Release);
    tracing::info!("shutting down: no new connections; waiting for in-flight reviews");
    match tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => {
            tracing::warn!(grace = ?limits.shutdown_grace, "grace period over; closing remaining connections")
        }
    }
    Ok(())
}

/// The TLS handshake, within the request timeout.
async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    limits: &Limits,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let _ = tcp.set_nodelay(true);
    let peer = tcp.peer_addr().ok();
    match tokio::time::timeout(limits.request_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(err)) => {
            tracing::debug!(?peer, error = %err, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(?peer, "TLS handshake timed out");
            None
        }
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
