//! The floor: the least an HTTPS server on this stack can do per request. hyper 1 + hyper-util
//! (HTTP/1.1 and HTTP/2 on one port) + tokio-rustls, ALPN h2 and http/1.1. It reads the whole
//! request body and answers a fixed small JSON response; the webhook is measured against it.
//!
//! Run: `cargo run --release --example floor_server -- --listen 127.0.0.1:9443 --cert tls.crt --key tls.key`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

/// About the size of the webhook's answer to an allowed review.
const RESPONSE: &[u8] = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"2f4654dc-4eb5-4f5c-99a7-7fac85a06744","allowed":true,"status":{}}}"#;

struct Args {
    listen: SocketAddr,
    cert: String,
    key: String,
}

fn parse_args() -> Result<Args, String> {
    let usage = "usage: floor_server --listen ADDR --cert PATH --key PATH";
    let (mut listen, mut cert, mut key) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{usage}"))?;
        match flag.as_str() {
            "--listen" => {
                listen = Some(
                    value
                        .parse()
                        .map_err(|e| format!("--listen {value}: {e}"))?,
                )
            }
            "--cert" => cert = Some(value),
            "--key" => key = Some(value),
            _ => return Err(format!("unknown flag {flag}\n{usage}")),
        }
    }
    match (listen, cert, key) {
        (Some(listen), Some(cert), Some(key)) => Ok(Args { listen, cert, key }),
        _ => Err(usage.to_owned()),
    }
}

fn tls_config(args: &Args) -> Result<rustls::ServerConfig, String> {
    let chain = CertificateDer::pem_file_iter(&args.cert)
        .map_err(|e| format!("{}: {e}", args.cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", args.cert))?;
    let key = PrivateKeyDer::from_pem_file(&args.key).map_err(|e| format!("{}: {e}", args.key))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the whole body, as the webhook must before it can decode a review.
    let _ = request.into_body().collect().await;
    let mut response = Response::new(Full::new(Bytes::from_static(RESPONSE)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let config = match tls_config(&args) {
        Ok(config) => Arc::new(config),
        Err(msg) => {
            eprintln!("TLS: {msg}");
            std::process::exit(1);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let listener = match TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot listen on {}: {e}", args.listen);
                std::process::exit(1);
            }
        };
        eprintln!("floor server on https://{}", args.listen);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        loop {
            let tcp = match listener.accept().await {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    eprintln!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), hyper::service::service_fn(answer))
                    .await;
            });
        }
    });
}
