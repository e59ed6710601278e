//! TLS in production shape: certificates from `stash-webhook certs` verify for the Service's DNS
//! names, a rotated Secret is picked up without a restart or a failed request, and client
//! authentication refuses what it should.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use stash_webhook::functions::FileSource;
use stash_webhook::metrics::Metrics;
use support::{eventually, fixture, Certs, Options, Webhook, FUNCTIONS};
use x509_parser::prelude::*;

fn source(metrics: &Metrics) -> Arc<FileSource> {
    Arc::new(FileSource::from_text(FUNCTIONS, Path::new("f.yaml"), metrics.clone()).unwrap())
}

#[tokio::test]
async fn certs_command_output_verifies_for_the_service_names() {
    let out = tempfile::tempdir().unwrap();
    let certs_command = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_stash-webhook"))
            .args([
                "certs",
                "--service",
                "stash-webhook",
                "--namespace",
                "stash-system",
                "--out",
            ])
            .arg(out.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let read = |f: &str| std::fs::read_to_string(out.path().join(f)).unwrap();
    let first = certs_command();
    assert!(!first.contains("existing CA"), "{first}");
    let (first_ca, first_cert) = (read("ca.crt"), read("tls.crt"));

    // Run again, as for a rotation: a new serving certificate from the same CA.
    let second = certs_command();
    assert!(
        second.starts_with("signed a new serving certificate with the existing CA"),
        "{second}"
    );
    assert_eq!(read("ca.crt"), first_ca);
    assert_ne!(read("tls.crt"), first_cert);

    // SANs and key usage of the serving certificate.
    let pem = pem_of(&read("tls.crt"));
    let (_, cert) = X509Certificate::from_der(&pem).unwrap();
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(name) => Some(name.to_string()),
            _ => None,
        })
        .collect();
    for name in [
        "stash-webhook.stash-system.svc",
        "stash-webhook.stash-system.svc.cluster.local",
    ] {
        assert!(sans.iter().any(|s| s == name), "{sans:?}");
    }
    assert!(!cert.is_ca());
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_encipherment());
    assert!(
        cert.extended_key_usage()
            .unwrap()
            .unwrap()
            .value
            .server_auth
    );
    // The caBundle is the CA, base64.
    use base64::Engine;
    let bundle = base64::engine::general_purpose::STANDARD
        .decode(read("ca-bundle.b64"))
        .unwrap();
    assert_eq!(String::from_utf8(bundle).unwrap(), read("ca.crt"));
    // One caBundle per webhook of the configuration, in its order (validate, protect,
    // validate-kubestash, protect-kubestash).
    let patch = read("webhook-ca-bundle-patch.yaml");
    for i in 0..stash_webhook::certs::WEBHOOKS {
        let entry = format!(
            "- op: replace\n  path: /webhooks/{i}/clientConfig/caBundle\n  value: {}\n",
            read("ca-bundle.b64")
        );
        assert!(patch.contains(&entry), "webhook {i}:\n{patch}");
    }
    assert_eq!(patch.matches("- op:").count(), 4);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in ["tls.key", "ca.key"] {
            let mode = std::fs::metadata(out.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{key} is readable by its owner only");
        }
    }

    // The chain verifies: serve with it and connect by the Service's name, trusting only ca.crt.
    let metrics = Metrics::default();
    let certs = Certs {
        ca_pem: read("ca.crt"),
        dir: out,
    };
    let webhook =
        Webhook::start_with_certs(source(&metrics), metrics, Options::default(), certs, None).await;
    let ca = reqwest::Certificate::from_pem(webhook.certs.ca_pem.as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .resolve("stash-webhook.stash-system.svc", webhook.addr)
        .build()
        .unwrap();
    let url = format!(
        "https://stash-webhook.stash-system.svc:{}/healthz",
        webhook.addr.port()
    );
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
}

fn pem_of(text: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(text.as_bytes()).unwrap();
    pem.contents
}

/// Lays out TLS files the way the kubelet mounts a Secret: `tls.crt -> ..data/tls.crt`,
/// `..data -> ..<timestamp>`; an update writes a new timestamped directory and swaps `..data`.
struct MountedSecret {
    dir: tempfile::TempDir,
    generation: usize,
}

impl MountedSecret {
    fn new(certs: &Certs) -> MountedSecret {
        let mut s = MountedSecret {
            dir: tempfile::tempdir().unwrap(),
            generation: 0,
        };
        s.update(certs);
        for f in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{f}"), s.dir.path().join(f)).unwrap();
        }
        s
    }

    fn update(&mut self, certs: &Certs) {
        self.generation += 1;
        let version = format!("..2026_11_25_{:02}", self.generation);
        let target = self.dir.path().join(&version);
        std::fs::create_dir(&target).unwrap();
        std::fs::copy(certs.cert(), target.join("tls.crt")).unwrap();
        std::fs::copy(certs.key(), target.join("tls.key")).unwrap();
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
    }
}

#[tokio::test]
async fn rotated_certificate_is_served_without_restart_or_failed_requests() {
    let old = Certs::new();
    let new = Certs::new();
    let mut secret = MountedSecret::new(&old);
    let mounted = Certs {
        ca_pem: old.ca_pem.clone(),
        dir: tempfile::tempdir().unwrap(),
    };
    // The webhook reads the symlinks of the mounted Secret.
    for f in ["tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(secret.dir.path().join(f), mounted.dir.path().join(f)).unwrap();
    }
    let metrics = Metrics::default();
    let webhook =
        Webhook::start_with_certs(source(&metrics), metrics, Options::default(), mounted, None)
            .await;
    let reloader = webhook
        .tls
        .clone()
        .spawn_reloader(Duration::from_millis(50));

    // A client that trusts both CAs (as an API server with both in its caBundle during a
    // rotation) and makes a new connection, so a new handshake, for every request.
    let client = webhook
        .client_builder()
        .add_root_certificate(reqwest::Certificate::from_pem(new.ca_pem.as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .tls_info(true)
        .build()
        .unwrap();
    let new_der = pem_of(&std::fs::read_to_string(new.cert()).unwrap());

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (client, url, stop, sent, failed) = (
            client.clone(),
            webhook.url("/validate"),
            stop.clone(),
            sent.clone(),
            failed.clone(),
        );
        senders.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let ok = match client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(fixture("backupconfiguration-create"))
                    .send()
                    .await
                {
                    Ok(r) => r.status() == 200,
                    Err(_) => false,
                };
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    eventually(
        Duration::from_secs(10),
        "traffic before the rotation",
        || {
            let sent = sent.clone();
            async move { sent.load(Ordering::Relaxed) >= 20 }
        },
    )
    .await;

    secret.update(&new);

    let (client2, url) = (client.clone(), webhook.url("/healthz"));
    eventually(
        Duration::from_secs(10),
        "a handshake presenting the new certificate",
        || {
            let (client, url, new_der) = (client2.clone(), url.clone(), new_der.clone());
            async move {
                let r = client.get(&url).send().await.unwrap();
                let info = r.extensions().get::<reqwest::tls::TlsInfo>().unwrap();
                info.peer_certificate() == Some(new_der.as_slice())
            }
        },
    )
    .await;
    let at_rotation = sent.load(Ordering::Relaxed);
    eventually(
        Duration::from_secs(10),
        "traffic after the rotation",
        || {
            let sent = sent.clone();
            async move { sent.load(Ordering::Relaxed) >= at_rotation + 20 }
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    reloader.abort();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "of {} requests",
        sent.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn broken_certificate_update_keeps_the_previous_one() {
    let metrics = Metrics::default();
    let webhook = Webhook::start(source(&metrics), metrics, Options::default()).await;
    std::fs::write(
        webhook.certs.key(),
        "-----BEGIN PRIVATE KEY-----\nnot a key\n",
    )
    .unwrap();
    let err = webhook.tls.reload_if_changed().unwrap_err();
    assert!(
        err.to_string().contains("holds no usable PEM private key"),
        "{err}"
    );
    assert_eq!(
        webhook
            .client()
            .get(webhook.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

struct ClientCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn client_ca() -> ClientCa {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    ClientCa {
        issuer: Issuer::new(params, key),
        pem: cert.pem(),
    }
}

fn client_identity(ca: &ClientCa) -> reqwest::Identity {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["kube-apiserver".to_owned()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    reqwest::Identity::from_pem(format!("{}{}", cert.pem(), key.serialize_pem()).as_bytes())
        .unwrap()
}

#[tokio::test]
async fn client_authentication_admits_only_certificates_from_the_client_ca() {
    let trusted = client_ca();
    let other = client_ca();
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_path = ca_dir.path().join("client-ca.crt");
    std::fs::write(&ca_path, &trusted.pem).unwrap();
    let metrics = Metrics::default();
    let webhook = Webhook::start_with_certs(
        source(&metrics),
        metrics,
        Options::default(),
        Certs::new(),
        Some(ca_path),
    )
    .await;

    let without = webhook.client();
    assert!(
        without.get(webhook.url("/healthz")).send().await.is_err(),
        "no client certificate"
    );

    let wrong = webhook
        .client_builder()
        .identity(client_identity(&other))
        .build()
        .unwrap();
    assert!(
        wrong.get(webhook.url("/healthz")).send().await.is_err(),
        "a certificate from another CA"
    );

    let good = webhook
        .client_builder()
        .identity(client_identity(&trusted))
        .build()
        .unwrap();
    let response = webhook
        .post(&good, fixture("backupconfiguration-create"))
        .await;
    assert_eq!(response.status(), 200);
}
