//! Shared by the integration tests: the real server on a real TLS socket, certificates, clients,
//! recorded reviews, and the stand-in API server.

#![allow(dead_code)]

pub mod apiserver;
pub mod kustomize;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use stash_webhook::functions::{FileSource, FunctionSource};
use stash_webhook::http::{self, App, Limits};
use stash_webhook::metrics::Metrics;
use stash_webhook::references::protect::Protector;
use stash_webhook::rules::tasks::Task;
use stash_webhook::rules::FailurePolicy;
use stash_webhook::sources::Source;
use stash_webhook::tls::{TlsFiles, TlsSource};
use stash_webhook::validator::{KubeStashSources, Validator};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A CA and a serving certificate for localhost/127.0.0.1, on disk.
pub struct Certs {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
}

impl Certs {
    pub fn new() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let bundle = stash_webhook::certs::generate(
            "localhost",
            &["localhost".to_owned()],
            &[std::net::IpAddr::from([127, 0, 0, 1])],
            1,
        )
        .unwrap();
        std::fs::write(dir.path().join("tls.crt"), &bundle.cert_pem).unwrap();
        std::fs::write(dir.path().join("tls.key"), &bundle.key_pem).unwrap();
        std::fs::write(dir.path().join("ca.crt"), &bundle.ca_cert_pem).unwrap();
        Certs {
            ca_pem: bundle.ca_cert_pem,
            dir,
        }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }
    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.cert(),
            key: self.key(),
            client_ca: None,
        }
    }
}

/// How to start a webhook for a test.
pub struct Options {
    pub on_lookup_failure: FailurePolicy,
    pub lookup_timeout: Duration,
    pub limits: Limits,
    /// Function protection; off unless a test gives one.
    pub protector: Protector,
    /// Where Tasks come from; none: Task names are not checked.
    pub tasks: Option<Arc<dyn Source<Task>>>,
    /// Where KubeStash's referents come from; none: their names are not checked.
    pub kubestash: KubeStashSources,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            on_lookup_failure: FailurePolicy::Deny,
            lookup_timeout: Duration::from_secs(2),
            limits: Limits::default(),
            protector: Protector::off(),
            tasks: None,
            kubestash: KubeStashSources::default(),
        }
    }
}

/// The real server, serving TLS on a loopback port.
pub struct Webhook {
    pub addr: SocketAddr,
    pub certs: Certs,
    pub metrics: Metrics,
    pub tls: Arc<TlsSource>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Webhook {
    pub async fn start(
        source: Arc<dyn FunctionSource>,
        metrics: Metrics,
        options: Options,
    ) -> Webhook {
        Self::start_with_certs(source, metrics, options, Certs::new(), None).await
    }

    pub async fn start_with_certs(
        source: Arc<dyn FunctionSource>,
        metrics: Metrics,
        options: Options,
        certs: Certs,
        client_ca: Option<PathBuf>,
    ) -> Webhook {
        let mut files = certs.files();
        files.client_ca = client_ca;
        let tls = TlsSource::load(files, metrics.clone()).unwrap();
        let mut validator =
            Validator::new(source, options.on_lookup_failure, options.lookup_timeout);
        if let Some(tasks) = options.tasks {
            validator = validator.with_tasks(tasks);
        }
        validator = validator.with_kubestash(options.kubestash);
        let app = App::new(
            validator,
            options.protector,
            metrics.clone(),
            options.limits,
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(http::serve_tls(listener, tls.clone(), app, async {
            let _ = stopped.await;
        }));
        Webhook {
            addr,
            certs,
            metrics,
            tls,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A webhook whose Functions, and Tasks when it has any, come from YAML text (as the server
    /// reads `--functions-file`).
    pub async fn with_functions(yaml: &str) -> Webhook {
        let metrics = Metrics::default();
        let source = Arc::new(
            FileSource::from_text(yaml, Path::new("functions.yaml"), metrics.clone()).unwrap(),
        );
        let options = Options {
            tasks: source.source_of(),
            kubestash: KubeStashSources::from_file(&source),
            ..Options::default()
        };
        Webhook::start(source, metrics, options).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.addr.port(), path)
    }

    /// An HTTPS client that trusts this webhook's CA and negotiates HTTP/2 or HTTP/1.1 by ALPN.
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().unwrap()
    }

    pub fn http1_client(&self) -> reqwest::Client {
        self.client_builder().http1_only().build().unwrap()
    }

    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let ca = reqwest::Certificate::from_pem(self.certs.ca_pem.as_bytes()).unwrap();
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .resolve("localhost", self.addr)
            .timeout(Duration::from_secs(30))
    }

    /// POSTs a review body as the API server does.
    pub async fn post(
        &self,
        client: &reqwest::Client,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        client
            .post(self.url("/validate?timeout=5s"))
            .header("Content-Type", "application/json")
            .header("User-Agent", "kube-apiserver-admission")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs a review of a Function to `/protect` and returns its `response` object.
    pub async fn protect(&self, body: impl Into<reqwest::Body>) -> Value {
        let response = self
            .client()
            .post(self.url("/protect?timeout=5s"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let review: Value = response.json().await.unwrap();
        review["response"].clone()
    }

    /// POSTs a review and returns its `response` object.
    pub async fn review(&self, body: impl Into<reqwest::Body>) -> Value {
        let response = self.post(&self.client(), body).await;
        assert_eq!(response.status(), 200);
        let review: Value = response.json().await.unwrap();
        review["response"].clone()
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A review recorded from a kube-apiserver (`tests/fixtures/reviews/NAME.json`).
pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reviews")
        .join(format!("{name}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The recorded BackupConfiguration CREATE, with its executor naming `function`.
pub fn create_naming(function: &str) -> String {
    fixture("backupconfiguration-create").replace("mysql-hook-executor", function)
}

/// Polls `check` until it holds or `within` passes; the tests never sleep a fixed time.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < within {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {within:?} waiting for: {what}");
}

pub const FUNCTIONS: &str = r#"
apiVersion: stash.appscode.com/v1beta1
kind: Function
metadata: {name: mysql-hook-executor}
spec: {image: "appscode/mysql-hook:8.0.14", args: ["--param-a=${a}", "--param-c=${c}"]}
---
apiVersion: stash.appscode.com/v1beta1
kind: Function
metadata: {name: no-image-fn}
spec: {command: [/bin/sh]}
---
apiVersion: stash.appscode.com/v1beta1
kind: Function
metadata: {name: mysql-backup}
spec: {image: "stashed/stash-mysql:8.0.14", args: ["backup-mysql", "--namespace=${NAMESPACE}"]}
---
apiVersion: stash.appscode.com/v1beta1
kind: Task
metadata: {name: mysql-backup-8.0.14}
spec:
  steps:
  - {name: mysql-backup}
"#;

/// An AdmissionReview of the KubeStash object `demo/db` of `kind` (`core.kubestash.com`), with
/// `spec`, and the stored object's when there is one.
pub fn kubestash_review(
    kind: &str,
    operation: &str,
    spec: Value,
    old_spec: Option<Value>,
) -> String {
    let object = |spec| {
        serde_json::json!({"apiVersion": "core.kubestash.com/v1alpha1", "kind": kind,
            "metadata": {"name": "db", "namespace": "demo"}, "spec": spec})
    };
    kubestash_review_of(operation, object(spec), old_spec.map(object))
}

/// An AdmissionReview of a whole KubeStash object (`core.kubestash.com`), as the API server
/// sends one: its kind, name and namespace are the object's.
pub fn kubestash_review_of(operation: &str, object: Value, old_object: Option<Value>) -> String {
    let kind = &object["kind"];
    let plural = stash_webhook::kubestash::KINDS
        .iter()
        .find(|k| *kind == k.kind)
        .map_or("unknown", |k| k.plural);
    let group_version = |field: &str, value: &Value| serde_json::json!({"group": "core.kubestash.com", "version": "v1alpha1", field: value});
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "5b8c3a1e-0000-4000-8000-000000000001",
            "kind": group_version("kind", kind),
            "requestKind": group_version("kind", kind),
            "resource": group_version("resource", &Value::from(plural)),
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin"},
            "object": object,
            "oldObject": old_object,
            "dryRun": false,
        }
    })
    .to_string()
}
