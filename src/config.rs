//! Command line and environment: every flag has a `STASH_WEBHOOK_*` fallback, and `--help` is the
//! reference.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::rules::FailurePolicy;

/// `--on-lookup-failure`: the flag's values for [`FailurePolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnLookupFailure {
    /// Deny the object: nothing unverified gets in (the safe default).
    Deny,
    /// Allow the object with a warning naming the Function that could not be verified.
    Allow,
}

impl From<OnLookupFailure> for FailurePolicy {
    fn from(flag: OnLookupFailure) -> Self {
        match flag {
            OnLookupFailure::Deny => FailurePolicy::Deny,
            OnLookupFailure::Allow => FailurePolicy::Allow,
        }
    }
}

/// The longest time any duration flag takes.
const LONGEST: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A duration flag, in humantime's syntax ("10s", "2m", "1h 30m"), above zero and at most a year.
/// Zero would fail every handshake, lookup or check at once (and a zero interval stops the
/// timer); far beyond a year, adding it to the clock overflows, which the HTTP stack would not
/// survive.
fn duration(text: &str) -> Result<Duration, String> {
    let value = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if value.is_zero() {
        return Err("must be longer than zero".into());
    }
    if value > LONGEST {
        return Err("must be at most a year (365d)".into());
    }
    Ok(value)
}

#[derive(Debug, Parser)]
#[command(
    name = "stash-webhook",
    version,
    about = "Validating admission webhook for Stash: rejects hooks whose executor Function is missing or has no valid container",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve AdmissionReviews over HTTPS (POST /validate; GET /healthz, /readyz).
    Serve(Box<ServeArgs>),
    /// Write a CA and a serving certificate for the webhook's Service, with its caBundle.
    Certs(CertsArgs),
    /// Judge manifests with the server's rules, before they reach a cluster. Exit 0 when all are
    /// allowed (warnings included), 1 when any is denied, 2 when an input cannot be read.
    Check(CheckArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckOutput {
    /// One line per problem, then a summary.
    Text,
    /// One JSON document.
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// A YAML or JSON file (several documents or a List are fine), a directory of them, or - for
    /// standard input. Repeat for more.
    #[arg(short = 'f', long = "filename", required = true)]
    pub filenames: Vec<PathBuf>,

    /// Read the directories' subdirectories too.
    #[arg(short = 'R', long)]
    pub recursive: bool,

    /// More referents that count as existing (YAML or JSON), besides those in the inputs: Stash's
    /// Functions and Tasks, KubeStash's Addons, Functions and HookTemplates.
    #[arg(long, env = "STASH_WEBHOOK_FUNCTIONS_FILE", conflicts_with = "cluster")]
    pub functions_file: Option<PathBuf>,

    /// Take the Functions from the cluster in KUBECONFIG (one LIST), besides those in the inputs.
    #[arg(long)]
    pub cluster: bool,

    /// Variables your Stash provides beyond those it always does, comma-separated (as the
    /// server's --extra-variables).
    #[arg(long, env = "STASH_WEBHOOK_EXTRA_VARIABLES", value_delimiter = ',')]
    pub extra_variables: Vec<String>,

    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: CheckOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Try it without a cluster: listen on 127.0.0.1:8443 with a fresh self-signed certificate
    /// (written under --dev-certs-dir, CA included) and the built-in example Functions.
    #[arg(long, env = "STASH_WEBHOOK_DEV")]
    pub dev: bool,

    /// Where --dev writes its CA and serving certificate.
    #[arg(long, env = "STASH_WEBHOOK_DEV_CERTS_DIR", default_value = "certs/dev")]
    pub dev_certs_dir: PathBuf,

    /// Address and port for HTTPS.
    #[arg(long, env = "STASH_WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,

    /// Serving certificate chain (PEM). Reloaded when the file changes.
    #[arg(long, env = "STASH_WEBHOOK_TLS_CERT", required_unless_present = "dev")]
    pub tls_cert: Option<PathBuf>,

    /// Private key of the serving certificate (PEM). Reloaded when the file changes.
    #[arg(long, env = "STASH_WEBHOOK_TLS_KEY", required_unless_present = "dev")]
    pub tls_key: Option<PathBuf>,

    /// CA bundle (PEM) that clients must present a certificate from; unset, no client certificate
    /// is asked for.
    #[arg(long, env = "STASH_WEBHOOK_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,

    /// How often to check the certificate, key and client CA files for changes.
    #[arg(long, env = "STASH_WEBHOOK_CERT_RELOAD_INTERVAL", default_value = "10s", value_parser = duration)]
    pub cert_reload_interval: Duration,

    /// Read the referents from this file instead of the Kubernetes API (YAML or JSON: one object,
    /// several documents, or a List): Stash's Functions and Tasks, KubeStash's Addons, Functions
    /// (addons.kubestash.com) and HookTemplates. A kind of which it holds none is not checked.
    #[arg(long, env = "STASH_WEBHOOK_FUNCTIONS_FILE")]
    pub functions_file: Option<PathBuf>,

    /// Longest time the Function lookups of one review, together, may take against the API. It
    /// is also capped at half of the API server's own webhook timeout (sent as ?timeout=).
    #[arg(long, env = "STASH_WEBHOOK_LOOKUP_TIMEOUT", default_value = "2s", value_parser = duration)]
    pub lookup_timeout: Duration,

    /// Longest time protection (/protect) may take to judge one change: it lists every object
    /// that could name the referent, live, which takes longer than lookups in a large cluster
    /// (about 2.3 s for 50,000 objects, benches/protect.sh). Also capped at half of the API
    /// server's webhook timeout: the protect webhooks are registered with 10 s.
    #[arg(long, env = "STASH_WEBHOOK_PROTECT_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub protect_timeout: Duration,

    /// What to do when a Function cannot be looked up (forbidden, timeout, API down): deny the
    /// object, or allow it with a warning.
    #[arg(
        long,
        env = "STASH_WEBHOOK_ON_LOOKUP_FAILURE",
        value_enum,
        default_value = "deny"
    )]
    pub on_lookup_failure: OnLookupFailure,

    /// Variables this cluster's Stash provides to a hook's Function beyond those it always does
    /// (README lists them), comma-separated: a Function may read them without a default, and a
    /// hook need not set them in params.
    #[arg(long, env = "STASH_WEBHOOK_EXTRA_VARIABLES", value_delimiter = ',')]
    pub extra_variables: Vec<String>,

    /// Run the audit: Events on the objects whose executor Function or Task cannot run, written
    /// by the replica holding the Lease stash-webhook-audit. --audit=false turns it off (no Lease,
    /// no Events); protection and the reference index stay.
    #[arg(
        long,
        env = "STASH_WEBHOOK_AUDIT",
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_value_t = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub audit: bool,

    /// Judge, protect and audit KubeStash's objects and referents (core.kubestash.com,
    /// addons.kubestash.com). --kubestash=false reads none of KubeStash's kinds, so the webhook
    /// needs no RBAC on them: the no-kubestash component and the chart's kubestash.enabled=false
    /// set it, and leave KubeStash's webhooks and ClusterRole out.
    #[arg(
        long,
        env = "STASH_WEBHOOK_KUBESTASH",
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_value_t = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub kubestash: bool,

    /// How often the audit writes the Event of every broken reference again, so it stays
    /// visible (the API server expires Events after an hour).
    #[arg(long, env = "STASH_WEBHOOK_AUDIT_INTERVAL", default_value = "10m", value_parser = duration)]
    pub audit_interval: Duration,

    /// The namespace the webhook runs in, where the audit's Lease is kept.
    #[arg(long, env = "STASH_WEBHOOK_NAMESPACE", default_value = "stash-system")]
    pub namespace: String,

    /// This replica's name in the audit's Lease (the pod's name); unset, the host name.
    #[arg(long, env = "STASH_WEBHOOK_POD_NAME")]
    pub pod_name: Option<String>,

    /// How long the audit's Lease holds without renewal: another replica takes over the audit
    /// within it when the leader goes away.
    #[arg(long, env = "STASH_WEBHOOK_LEASE_DURATION", default_value = "15s", value_parser = duration)]
    pub lease_duration: Duration,

    /// Largest request body accepted, in bytes; larger ones get 413 without being read whole.
    #[arg(long, env = "STASH_WEBHOOK_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Time allowed for a TLS handshake, then to receive a request's headers, then its body. An
    /// HTTP/1.1 connection kept alive between requests is closed when no next request arrives
    /// within it (clients open a new one).
    #[arg(long, env = "STASH_WEBHOOK_REQUEST_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub request_timeout: Duration,

    /// Ping an HTTP/2 connection on which nothing has arrived for this long, and close it when
    /// the ping is not answered within this long again (a client that vanished or stopped
    /// reading), so such clients cannot hold every connection slot. HTTP/1.1 connections are
    /// bounded by --request-timeout.
    #[arg(long, env = "STASH_WEBHOOK_IDLE_TIMEOUT", default_value = "120s", value_parser = duration)]
    pub idle_timeout: Duration,

    /// Most TLS connections served at once; more wait to be accepted.
    #[arg(long, env = "STASH_WEBHOOK_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Address and port for plain-HTTP Prometheus metrics (GET /metrics); unset, no metrics port.
    #[arg(long, env = "STASH_WEBHOOK_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// On SIGTERM or SIGINT, how long in-flight reviews may take to finish before exit.
    #[arg(long, env = "STASH_WEBHOOK_SHUTDOWN_GRACE", default_value = "20s", value_parser = duration)]
    pub shutdown_grace: Duration,

    /// Log format.
    #[arg(
        long,
        env = "STASH_WEBHOOK_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Log filter (tracing EnvFilter syntax, e.g. "info" or "stash_webhook=debug").
    #[arg(long, env = "STASH_WEBHOOK_LOG", default_value = "info")]
    pub log: String,
}

#[derive(Debug, Clone, Args)]
pub struct CertsArgs {
    /// Name of the webhook's Service.
    #[arg(long, env = "STASH_WEBHOOK_SERVICE", default_value = "stash-webhook")]
    pub service: String,

    /// Namespace of the webhook's Service.
    #[arg(long, env = "STASH_WEBHOOK_NAMESPACE", default_value = "stash-system")]
    pub namespace: String,

    /// Directory to write ca.crt, ca.key, tls.crt, tls.key, ca-bundle.b64 and the kustomize patch
    /// to. If it already holds ca.crt and ca.key, that CA signs the new certificate (rotation
    /// without changing the caBundle).
    #[arg(long, env = "STASH_WEBHOOK_CERTS_OUT")]
    pub out: PathBuf,

    /// Validity of the serving certificate, in days (the CA gets ten times as long).
    #[arg(long, env = "STASH_WEBHOOK_CERT_DAYS", default_value_t = 365)]
    pub days: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> Result<ServeArgs, String> {
        let argv = ["stash-webhook", "serve", "--dev"].iter().chain(args);
        match Cli::try_parse_from(argv)
            .map_err(|err| err.to_string())?
            .command
        {
            Command::Serve(serve) => Ok(*serve),
            Command::Certs(_) | Command::Check(_) => Err("not serve".into()),
        }
    }

    #[test]
    fn the_audit_runs_unless_turned_off() {
        assert!(serve(&[]).unwrap().audit);
        assert!(serve(&["--audit"]).unwrap().audit);
        assert!(serve(&["--audit=true"]).unwrap().audit);
        assert!(!serve(&["--audit=false"]).unwrap().audit);
        assert!(!serve(&["--audit", "false"]).unwrap().audit);
        let err = serve(&["--audit=off"]).unwrap_err();
        assert!(err.contains("invalid value 'off' for '--audit"), "{err}");
    }

    #[test]
    fn durations_must_be_above_zero_and_at_most_a_year() {
        let args = serve(&["--request-timeout", "1h 30m", "--idle-timeout", "365d"]).unwrap();
        assert_eq!(args.request_timeout, Duration::from_secs(5400));
        assert_eq!(args.idle_timeout, LONGEST);
        for (flag, value, why) in [
            ("--request-timeout", "0s", "must be longer than zero"),
            ("--cert-reload-interval", "0s", "must be longer than zero"),
            ("--idle-timeout", "366d", "must be at most a year (365d)"),
            (
                "--lookup-timeout",
                "9999999999y",
                "must be at most a year (365d)",
            ),
            ("--shutdown-grace", "soon", "expected number at 0"),
        ] {
            let err = serve(&[flag, value]).unwrap_err();
            assert!(
                err.contains(&format!("invalid value '{value}' for '{flag} <"))
                    && err.contains(why),
                "{flag} {value}: {err}"
            );
        }
    }
}
