//! TLS: the serving certificate, optional client authentication, and reloading both when their
//! files change.
//!
//! A Kubernetes Secret mounted as a volume is updated by swapping a symlink, so file events are
//! unreliable; the files are re-read on an interval and compared by content instead. Each new
//! connection takes the configuration current at accept time, so a reload never fails a handshake.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

use crate::metrics::Metrics;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("{path}: certificate is not valid X.509: {reason}")]
    X509 { path: PathBuf, reason: String },
    #[error("the certificate and key do not make a usable TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA {path} cannot verify clients: {reason}")]
    ClientCa { path: PathBuf, reason: String },
}

/// Where the TLS material lives.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// The current TLS configuration, replaced whole when its files change.
pub struct TlsSource {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    loaded: Mutex<Vec<Vec<u8>>>,
    metrics: Metrics,
}

impl TlsSource {
    /// Loads the files once; startup fails if they are unusable.
    pub fn load(files: TlsFiles, metrics: Metrics) -> Result<Arc<Self>, TlsError> {
        let contents = read_all(&files)?;
        let config = build(&files, &contents, &metrics)?;
        Ok(Arc::new(TlsSource {
            files,
            current: RwLock::new(config),
            loaded: Mutex::new(contents),
            metrics,
        }))
    }

    /// The configuration for the next handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the files; when they changed and are usable, new handshakes use them. A broken
    /// update (a half-written file, a key that does not match) keeps the previous configuration.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let contents = read_all(&self.files)?;
        let mut loaded = match self.loaded.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        if *loaded == contents {
            return Ok(false);
        }
        let config = build(&self.files, &contents, &self.metrics)?;
        match self.current.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        *loaded = contents;
        Ok(true)
    }

    /// Checks the files every `interval` until the task is dropped.
    pub fn spawn_reloader(self: Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                match self.reload_if_changed() {
                    Ok(true) => {
                        tracing::info!(cert = %self.files.cert.display(), "reloaded TLS certificate")
                    }
                    Ok(false) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "TLS files changed but cannot be used; keeping the previous certificate")
                    }
                }
            }
        })
    }
}

fn read_all(files: &TlsFiles) -> Result<Vec<Vec<u8>>, TlsError> {
    let mut paths = vec![&files.cert, &files.key];
    paths.extend(files.client_ca.as_ref());
    paths
        .into_iter()
        .map(|p| {
            std::fs::read(p).map_err(|source| TlsError::Read {
                path: p.clone(),
                source,
            })
        })
        .collect()
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn build(
    files: &TlsFiles,
    contents: &[Vec<u8>],
    metrics: &Metrics,
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(&files.cert, &contents[0])?;
    let key = PrivateKeyDer::from_pem_slice(&contents[1]).map_err(|e| TlsError::Key {
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    let not_after = not_after(&files.cert, &chain[0])?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match (&files.client_ca, contents.get(2)) {
        (Some(path), Some(pem)) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(path, pem)? {
                roots.add(cert).map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    metrics.set_cert_not_after(not_after);
    Ok(Arc::new(config))
}

/// The certificate's notAfter, in seconds since the epoch.
fn not_after(path: &Path, cert: &CertificateDer<'_>) -> Result<i64, TlsError> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| TlsError::X509 {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(parsed.validity().not_after.timestamp())
}
