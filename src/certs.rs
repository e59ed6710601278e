//! Certificates for serving: a CA and a serving certificate for the webhook's Service
//! (`stash-webhook certs`), and the throwaway set `serve --dev` uses on loopback.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use thiserror::Error;
use time::{Duration, OffsetDateTime};

#[derive(Debug, Error)]
pub enum CertError {
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A CA and a serving certificate it signed, all PEM.
pub struct Bundle {
    pub ca_cert_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// The DNS names the API server uses to reach a Service.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// A CA that signs serving certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    /// A new CA valid for `days`.
    pub fn generate(common_name: &str, days: u32) -> Result<Ca, CertError> {
        let now = OffsetDateTime::now_utc();
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&format!("{common_name} CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = backdated(now);
        params.not_after = now + Duration::days(i64::from(days));
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// An existing CA, from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, CertError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Ca {
            issuer,
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        })
    }

    /// A serving certificate for `dns_names` and `ips`, valid for `days`, with the key usages a
    /// TLS server needs. Returns the certificate and its key, PEM.
    pub fn issue(
        &self,
        common_name: &str,
        dns_names: &[String],
        ips: &[IpAddr],
        days: u32,
    ) -> Result<(String, String), CertError> {
        let now = OffsetDateTime::now_utc();
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(dns_names.to_vec())?;
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.distinguished_name = name(common_name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = backdated(now);
        params.not_after = now + Duration::days(i64::from(days));
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Backdated a little: a node whose clock runs behind must not see a certificate from the future.
fn backdated(now: OffsetDateTime) -> OffsetDateTime {
    now - Duration::minutes(5)
}

/// Generates a CA valid for `days * 10` and a serving certificate valid for `days`.
pub fn generate(
    common_name: &str,
    dns_names: &[String],
    ips: &[IpAddr],
    days: u32,
) -> Result<Bundle, CertError> {
    let ca = Ca::generate(common_name, days.saturating_mul(10))?;
    let (cert_pem, key_pem) = ca.issue(common_name, dns_names, ips, days)?;
    Ok(Bundle {
        ca_cert_pem: ca.cert_pem,
        cert_pem,
        key_pem,
    })
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "stash-webhook");
    dn
}

/// How many webhooks the ValidatingWebhookConfiguration holds (`manifests/base`): the patch
/// written by [`write_for_service`] sets the caBundle of each.
pub const WEBHOOKS: usize = 4;

/// Files written for a cluster install.
pub struct Written {
    pub files: Vec<PathBuf>,
    /// True when an existing `ca.crt`/`ca.key` in the output directory signed the new certificate.
    pub reused_ca: bool,
}

/// Writes, under `out`: `ca.crt`, `ca.key`, `tls.crt`, `tls.key` (keys mode 0600),
/// `ca-bundle.b64`, and `webhook-ca-bundle-patch.yaml`, a kustomize patch that sets the caBundle
/// of every webhook of the ValidatingWebhookConfiguration.
///
/// When `out` already holds `ca.crt` and `ca.key`, that CA signs the new serving certificate, so a
/// rotation keeps the caBundle the API server trusts and no request fails while pods catch up.
pub fn write_for_service(
    service: &str,
    namespace: &str,
    out: &Path,
    days: u32,
) -> Result<Written, CertError> {
    let common_name = format!("{service}.{namespace}.svc");
    let (ca_cert, ca_key) = (out.join("ca.crt"), out.join("ca.key"));
    let (ca, reused_ca) = match (
        std::fs::read_to_string(&ca_cert),
        std::fs::read_to_string(&ca_key),
    ) {
        (Ok(cert), Ok(key)) => (Ca::from_pem(&cert, &key)?, true),
        _ => (Ca::generate(&common_name, days.saturating_mul(10))?, false),
    };
    let (cert_pem, key_pem) = ca.issue(
        &common_name,
        &service_dns_names(service, namespace),
        &[],
        days,
    )?;
    let ca_b64 = base64::engine::general_purpose::STANDARD.encode(ca.cert_pem.as_bytes());
    // Every webhook of the configuration, in its order: validate and protect (Stash), then
    // validate-kubestash and protect-kubestash.
    let mut patch = String::from(
        "# Generated by `stash-webhook certs`: sets the CA that the API server trusts for this webhook.\n",
    );
    for i in 0..WEBHOOKS {
        patch.push_str(&format!(
            "- op: replace\n  path: /webhooks/{i}/clientConfig/caBundle\n  value: {ca_b64}\n"
        ));
    }
    let files = [
        ("ca.crt", ca.cert_pem.as_str()),
        ("ca.key", ca.key_pem.as_str()),
        ("tls.crt", cert_pem.as_str()),
        ("tls.key", key_pem.as_str()),
        ("ca-bundle.b64", ca_b64.as_str()),
        ("webhook-ca-bundle-patch.yaml", patch.as_str()),
    ];
    std::fs::create_dir_all(out).map_err(|source| CertError::Write {
        path: out.to_owned(),
        source,
    })?;
    let mut written = Vec::new();
    for (file, content) in files {
        let path = out.join(file);
        write_file(&path, content, file.ends_with(".key"))?;
        written.push(path);
    }
    Ok(Written {
        files: written,
        reused_ca,
    })
}

/// Writes a CA (`ca.crt`) and a certificate for localhost, 127.0.0.1 and ::1 (`tls.crt`,
/// `tls.key`) under `dir`, for `serve --dev`. Returns the certificate and key paths.
pub fn write_dev(dir: &Path) -> Result<(PathBuf, PathBuf), CertError> {
    let ips = [
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
    ];
    let bundle = generate("localhost", &["localhost".to_owned()], &ips, 30)?;
    std::fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    write_file(&dir.join("ca.crt"), &bundle.ca_cert_pem, false)?;
    write_file(&cert, &bundle.cert_pem, false)?;
    write_file(&key, &bundle.key_pem, true)?;
    Ok((cert, key))
}

fn write_file(path: &Path, content: &str, secret: bool) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    use std::io::Write;
    options
        .open(path)
        .map_err(err)?
        .write_all(content.as_bytes())
        .map_err(err)
}
