//! Connections: the TLS versions and ALPN protocols offered; and abuse (slow headers, slow bodies,
//! idle and silent connections) cut off by timeouts and bounded, while well-behaved clients are
//! served.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use stash_webhook::functions::FileSource;
use stash_webhook::http::Limits;
use stash_webhook::metrics::Metrics;
use support::{fixture, Options, Webhook, FUNCTIONS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

async fn webhook(limits: Limits) -> Webhook {
    let metrics = Metrics::default();
    let source = FileSource::from_text(FUNCTIONS, Path::new("f.yaml"), metrics.clone()).unwrap();
    Webhook::start(
        Arc::new(source),
        metrics,
        Options {
            limits,
            ..Options::default()
        },
    )
    .await
}

fn short_limits() -> Limits {
    Limits {
        request_timeout: Duration::from_millis(400),
        idle_timeout: Duration::from_millis(400),
        ..Limits::default()
    }
}

/// A raw HTTP/1.1-over-TLS connection, to misbehave byte by byte.
async fn raw_tls(webhook: &Webhook) -> TlsStream<TcpStream> {
    connect(webhook, rustls::DEFAULT_VERSIONS, &[b"http/1.1"]).await
}

/// A TLS connection offering only `versions` and the ALPN protocols `alpn`.
async fn connect(
    webhook: &Webhook,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(webhook.certs.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(webhook.addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// Reads until the server closes the connection, failing the test if it is still open after 10 s
/// (far beyond any limit a test sets); returns what the server sent.
async fn read_until_closed(stream: &mut TlsStream<TcpStream>) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server kept a misbehaving connection open for 10 s"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request head that stops short is cut off by the header deadline (--request-timeout; the
/// idle timeout, HTTP/2's, is far longer). `read_until_closed` fails the test if the connection is
/// still open after 10 s.
#[tokio::test]
async fn stalled_heads_are_cut_off() {
    let webhook = webhook(Limits {
        request_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(60),
        ..Limits::default()
    })
    .await;
    let mut stream = raw_tls(&webhook).await;
    stream
        .write_all(b"POST /validate HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    read_until_closed(&mut stream).await;
}

/// Sends a request head a byte every 50 ms, without end, from now on, until the server closes
/// the connection (failing the test if that takes 10 s).
async fn trickle_head_until_closed(stream: TlsStream<TcpStream>) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let trickle = tokio::spawn(async move {
        let head = b"POST /validate HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
        for byte in head.iter().chain(std::iter::repeat(&b'a')).take(1000) {
            if writer.write_all(&[*byte]).await.is_err() || writer.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
            Err(_) => panic!("trickled headers kept the connection open for 10 s"),
        }
    }
    trickle.abort();
}

/// Headers sent a byte every 50 ms keep the connection from ever being idle, so only the
/// deadline for the headers (--request-timeout) can end them.
#[tokio::test]
async fn trickled_headers_are_cut_off_though_never_idle() {
    let webhook = webhook(Limits {
        idle_timeout: Duration::from_secs(60),
        ..short_limits()
    })
    .await;
    trickle_head_until_closed(raw_tls(&webhook).await).await;
}

/// An HTTP/1.1 connection kept alive is served while requests keep coming; one on which no next
/// request starts within the headers' deadline is closed (the idle timeout here is far longer),
/// and clients open another.
#[tokio::test]
async fn kept_alive_connections_are_closed_when_no_next_request_comes() {
    let webhook = webhook(Limits {
        request_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(60),
        ..Limits::default()
    })
    .await;
    let mut stream = raw_tls(&webhook).await;
    for _ in 0..3 {
        assert_served(&mut stream).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    read_until_closed(&mut stream).await;
    // A silent connection is closed the same way, before its first request.
    let mut silent = raw_tls(&webhook).await;
    read_until_closed(&mut silent).await;
}

/// An HTTP/2 connection on which the client sends nothing more, and answers no ping, is closed
/// once the idle timeout has passed twice: once before the ping, once waiting for its answer (the
/// header deadline, 60 s here, is HTTP/1.1's).
#[tokio::test]
async fn idle_http2_connections_are_closed() {
    let webhook = webhook(Limits {
        request_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let mut stream = connect(&webhook, rustls::DEFAULT_VERSIONS, &[b"h2"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // The client preface, then an empty SETTINGS frame, then silence.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    read_until_closed(&mut stream).await;
}

/// An HTTP/2 client that answers the server's pings keeps its connection however long it is
/// quiet: after several idle timeouts, the next review goes over the same connection.
#[tokio::test]
async fn http2_connections_whose_client_answers_pings_stay_open() {
    let webhook = webhook(Limits {
        idle_timeout: Duration::from_millis(200),
        ..Limits::default()
    })
    .await;
    let stream = connect(&webhook, rustls::DEFAULT_VERSIONS, &[b"h2"]).await;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    for _ in 0..2 {
        let request = hyper::Request::post("https://localhost/validate?timeout=5s")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(fixture(
                "backupconfiguration-create",
            ))))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        // Five idle timeouts: long enough for pings to be sent, answered, and sent again.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        !connection.is_finished(),
        "the server closed a live connection"
    );
}

/// A request that sends its headers and then stops short of the body it declared: a declared
/// length within the limit waits for the body and gets 408 at the body's deadline; one over the
/// limit is refused at once, before any of it arrives.
#[tokio::test]
async fn slow_bodies_get_408_and_declared_oversized_ones_413_at_once() {
    let short_deadline = Limits {
        request_timeout: Duration::from_millis(400),
        idle_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let partial = &b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"kind\":"[..];
    for (limits, request, status, ending) in [
        (
            short_deadline.clone(),
            partial,
            "HTTP/1.1 408 Request Timeout",
            "the body did not arrive within 400ms (--request-timeout)\n",
        ),
        (
            short_deadline,
            b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n",
            "HTTP/1.1 413 Payload Too Large",
            "the body is larger than the 8388608 byte limit (--max-body-bytes)\n",
        ),
    ] {
        let webhook = webhook(limits).await;
        let mut stream = raw_tls(&webhook).await;
        stream.write_all(request).await.unwrap();
        let response = read_until_closed(&mut stream).await;
        assert!(response.starts_with(status), "{response}");
        assert!(response.ends_with(ending), "{response}");
    }
}

/// Reads one response to `GET /healthz` (its body is `ok`), failing if the connection closes first.
async fn read_health(stream: &mut TlsStream<TcpStream>) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !out.ends_with(b"\r\n\r\nok\n") {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) => panic!("closed mid-use: {}", String::from_utf8_lossy(&out)),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("{e}: {}", String::from_utf8_lossy(&out)),
            Err(_) => panic!("no answer within 5 s: {}", String::from_utf8_lossy(&out)),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `GET /healthz` on the connection and checks it is answered 200.
async fn assert_served(stream: &mut TlsStream<TcpStream>) {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let response = read_health(stream).await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
}

#[tokio::test]
async fn connections_in_use_are_not_closed_as_idle() {
    let webhook = webhook(short_limits()).await;
    let mut stream = raw_tls(&webhook).await;
    // Four times the idle timeout of 400 ms, with a request every 150 ms, on one connection.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1600) {
        assert_served(&mut stream).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // Left alone, the same connection is then closed.
    read_until_closed(&mut stream).await;
}

#[tokio::test]
async fn idle_and_never_handshaking_connections_are_closed() {
    let webhook = webhook(short_limits()).await;
    let mut idle = raw_tls(&webhook).await;
    read_until_closed(&mut idle).await;

    let mut no_tls = TcpStream::connect(webhook.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), no_tls.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)));
}

#[tokio::test]
async fn connection_slots_are_bounded_and_idle_holders_make_way() {
    let webhook = webhook(Limits {
        max_connections: 4,
        ..short_limits()
    })
    .await;
    // Four clients take every slot and then say nothing.
    let mut holders = Vec::new();
    for _ in 0..4 {
        holders.push(TcpStream::connect(webhook.addr).await.unwrap());
    }
    // A well-behaved client is served once the idle holders are cut off.
    let response = webhook
        .post(&webhook.client(), fixture("backupconfiguration-create"))
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn well_behaved_clients_are_served_during_a_slowloris() {
    let webhook = webhook(Limits {
        request_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        ..Limits::default()
    })
    .await;
    let mut attackers = Vec::new();
    for _ in 0..50 {
        let mut s = raw_tls(&webhook).await;
        s.write_all(b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
            .await
            .unwrap();
        attackers.push(s);
    }
    let client = webhook.client();
    for _ in 0..20 {
        let response = webhook
            .post(&client, fixture("backupconfiguration-create"))
            .await;
        assert_eq!(response.status(), 200);
    }
    drop(attackers);
}

/// Completes a handshake with only `versions` offered and ALPN `alpn`; returns what was agreed.
async fn handshake(
    webhook: &Webhook,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> (rustls::ProtocolVersion, Option<Vec<u8>>) {
    let stream = connect(webhook, versions, alpn).await;
    let (_, session) = stream.get_ref();
    (
        session.protocol_version().unwrap(),
        session.alpn_protocol().map(<[u8]>::to_vec),
    )
}

#[tokio::test]
async fn speaks_tls_1_2_and_1_3_with_h2_and_http1_alpn() {
    let webhook = webhook(Limits::default()).await;
    let (version, alpn) = handshake(&webhook, &[&rustls::version::TLS12], &[b"http/1.1"]).await;
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_2);
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    let (version, alpn) =
        handshake(&webhook, &[&rustls::version::TLS13], &[b"h2", b"http/1.1"]).await;
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_3);
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
}
