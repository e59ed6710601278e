//! The `stash-webhook` binary as an operator runs it: `serve --dev` with no cluster, a SIGTERM
//! while reviews are in flight (each gets its answer; the process exits 0), and the audit turned
//! off.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::apiserver::ApiServer;
use support::{create_naming, eventually, fixture, kubestash_review, kubestash_review_of};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn client(ca_pem: &[u8], port: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap())
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A server process, killed if the test ends (or panics) before it exits.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_exit(mut server: Server) -> std::process::ExitStatus {
    for _ in 0..300 {
        if let Some(status) = server.0.try_wait().unwrap() {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not exit within 15 s");
}

/// Whether the server on `port` gets ready (true) or exits first (false), within 20 s.
async fn ready_unless_exited(client: &reqwest::Client, port: u16, server: &mut Child) -> bool {
    let url = format!("https://localhost:{port}/readyz");
    let mut exited = false;
    eventually(Duration::from_secs(20), "the server to be ready", || {
        exited = matches!(server.try_wait(), Ok(Some(_)));
        let (client, url, exited) = (client.clone(), url.clone(), exited);
        async move { exited || matches!(client.get(&url).send().await, Ok(r) if r.status() == 200) }
    })
    .await;
    !exited
}

/// A CREATE review of the one KubeStash object of `manifests/examples/FILE`.
fn kubestash_example_create(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("manifests/examples")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let object: Value = serde_yaml_ng::from_str(&text).unwrap();
    kubestash_review_of("CREATE", object, None)
}

#[tokio::test]
async fn dev_mode_serves_the_examples_with_a_verifiable_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    // Started again on another port if it exits before it is ready, as `Files::serve` does.
    let (child, port, client) = 'ready: {
        for _ in 0..3 {
            // Each start writes a fresh CA: the one to trust is the one written after it.
            let _ = std::fs::remove_file(&ca);
            let port = free_port();
            let mut child = Command::new(env!("CARGO_BIN_EXE_stash-webhook"))
                .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}")])
                .arg("--dev-certs-dir")
                .arg(dir.path())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // The certificates are written first, then the port is bound.
            eventually(
                Duration::from_secs(20),
                "certs/dev/ca.crt to be written",
                || {
                    let ca = ca.clone();
                    async move { std::fs::metadata(&ca).is_ok_and(|m| m.len() > 0) }
                },
            )
            .await;
            let client = client(&std::fs::read(&ca).unwrap(), port);
            if ready_unless_exited(&client, port, &mut child).await {
                break 'ready (child, port, client);
            }
        }
        panic!("the server exited before it was ready, three times in a row");
    };

    let ok: Value = validate(&client, port, fixture("backupconfiguration-create")).await;
    assert_eq!(ok["response"]["allowed"], true);
    let denied: Value = validate(&client, port, create_naming("no-image-fn")).await;
    assert_eq!(denied["response"]["allowed"], false);
    assert!(denied["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .contains("has no container image"));

    // The KubeStash examples, against the KubeStash catalog of the same file.
    let ok: Value = validate(
        &client,
        port,
        kubestash_example_create("kubestash-backupconfiguration-valid.yaml"),
    )
    .await;
    assert_eq!(ok["response"]["allowed"], true, "{ok}");
    assert!(ok["response"]["warnings"].is_null(), "{ok}");
    let denied: Value = validate(
        &client,
        port,
        kubestash_example_create("kubestash-backupconfiguration-missing-hooktemplate.yaml"),
    )
    .await;
    assert_eq!(denied["response"]["allowed"], false);
    assert_eq!(
        denied["response"]["status"]["message"],
        r#"spec.sessions[0].hooks.preBackup[0].hookTemplate.name: HookTemplate "mysql-readonly" not found in namespace "demo": create it there, or set hookTemplate.namespace to the namespace that has it (list them with: kubectl get hooktemplates.core.kubestash.com -A)"#
    );

    signal(&child, "-INT");
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(output.status.success());
    // Logs to a pipe are plain text, with no terminal colour codes; at the default level a denial
    // is logged and an allowed review is not (it is counted in the metrics).
    let logs = String::from_utf8(output.stderr).unwrap();
    assert!(logs.contains("review"), "{logs}");
    assert!(logs.contains(r#"verdict="denied""#), "{logs}");
    assert!(!logs.contains(r#"verdict="allowed""#), "{logs}");
    assert!(
        !logs.contains('\x1b'),
        "colour codes in logs written to a pipe:\n{logs}"
    );
}

#[tokio::test]
async fn sigterm_lets_in_flight_reviews_finish_then_exits_zero() {
    let api = ApiServer::start().await;
    api.put_function("mysql-hook-executor", Some("appscode/mysql-hook:8.0.14"));
    let files = Files::of(&api);
    let (child, port, client) = files
        .serve(|c| {
            c.args(["--lookup-timeout", "10s", "--shutdown-grace", "10s"]);
        })
        .await;

    // Reviews that need a live GET, which the API server answers slowly: in flight at SIGTERM.
    api.set_get_delay(Duration::from_millis(1500));
    let gets = api.counters().gets();
    let mut in_flight = Vec::new();
    for i in 0..4 {
        let request = client
            .post(format!("https://localhost:{port}/validate?timeout=5s"))
            .header("Content-Type", "application/json")
            .body(create_naming(&format!("ghost-{i}")));
        in_flight.push(tokio::spawn(async move { request.send().await }));
    }
    eventually(Duration::from_secs(10), "4 lookups in flight", || {
        let n = api.counters().gets();
        async move { n >= gets + 4 }
    })
    .await;
    signal(&child.0, "-TERM");

    for (i, review) in in_flight.into_iter().enumerate() {
        let response = review
            .await
            .unwrap()
            .expect("an in-flight review is answered");
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["response"]["allowed"], false);
        let message = body["response"]["status"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("Function \"ghost-{i}\" not found")),
            "{message}"
        );
    }
    let status = wait_exit(child).await;
    assert_eq!(status.code(), Some(0));
}

/// `stash-webhook serve` on 127.0.0.1:`port` against the stand-in, as a pod runs it: the
/// certificate and kubeconfig of [`Files`], no in-cluster config, logs discarded.
fn serve_command(port: u16, kubeconfig: &Path, cert: &Path, key: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stash-webhook"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stderr(Stdio::null());
    command
}

/// What servers against the stand-in share: a kubeconfig for it and a serving certificate for
/// localhost, in a directory removed with it.
struct Files {
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// The PEM of the CA that signed the certificate.
    ca: String,
}

impl Files {
    fn of(api: &ApiServer) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster: {{server: \"http://{}\"}}\n\
                 users:\n- name: webhook\n  user: {{}}\ncontexts:\n- name: c\n  context: {{cluster: stand-in, user: webhook}}\n\
                 current-context: c\n",
                api.addr
            ),
        )
        .unwrap();
        let bundle =
            stash_webhook::certs::generate("localhost", &["localhost".into()], &[], 1).unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert, &bundle.cert_pem).unwrap();
        std::fs::write(&key, &bundle.key_pem).unwrap();
        Files {
            _dir: dir,
            kubeconfig,
            cert,
            key,
            ca: bundle.ca_cert_pem,
        }
    }

    /// A server against the stand-in with the flags and environment `configure` adds, once it
    /// is ready: the process, its port, and a client that trusts it. The port is free when it is
    /// chosen, but another process may bind it before the server does (an outgoing connection
    /// takes its local port from the same range): a server that exits before it is ready is
    /// started again on another port.
    async fn serve(&self, configure: impl Fn(&mut Command)) -> (Server, u16, reqwest::Client) {
        for _ in 0..3 {
            let port = free_port();
            let mut command = serve_command(port, &self.kubeconfig, &self.cert, &self.key);
            configure(&mut command);
            let mut server = Server(command.spawn().unwrap());
            let client = client(self.ca.as_bytes(), port);
            if ready_unless_exited(&client, port, &mut server.0).await {
                return (server, port, client);
            }
        }
        panic!("the server exited before it was ready, three times in a row");
    }
}

/// `--audit=false`: the server serves, indexes and protects, but takes no Lease and writes no
/// Event, while a replica with the audit on (the default) does both for the same broken
/// reference.
#[tokio::test]
async fn with_the_audit_off_no_lease_is_taken_and_no_event_written() {
    let api = ApiServer::start().await;
    api.put_object(
        "backupconfigurations",
        Some("demo"),
        "orphan",
        serde_json::json!({"hooks": {"preBackup": {"executor": {"functionName": "never-created"}}}}),
    );
    let files = Files::of(&api);
    let start = |name: &'static str, audit: Option<&'static str>| {
        let files = &files;
        async move {
            // A metrics port of its own for each start, should one be taken meanwhile.
            let metrics = std::cell::Cell::new(0);
            let (server, ..) = files
                .serve(|command| {
                    metrics.set(free_port());
                    command
                        .args(["--metrics-listen", &format!("127.0.0.1:{}", metrics.get())])
                        .args(["--pod-name", name, "--namespace", "stash-system"])
                        .env_remove("STASH_WEBHOOK_AUDIT");
                    if let Some(audit) = audit {
                        command.env("STASH_WEBHOOK_AUDIT", audit);
                    }
                })
                .await;
            (server, metrics.get())
        }
    };
    let index_synced = |metrics: u16| async move {
        let url = format!("http://127.0.0.1:{metrics}/metrics");
        let text = match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        text.lines()
            .any(|l| l == "stash_webhook_reference_index_synced 1")
    };

    // Off, through the environment as the flag's fallback.
    let (_off, metrics) = start("replica-off", Some("false")).await;
    eventually(Duration::from_secs(20), "the index to sync", || {
        index_synced(metrics)
    })
    .await;

    // On, by default: it takes the Lease and reports the broken reference.
    let (_on, _) = start("replica-on", None).await;
    an_event(&api, "the Warning Event", |e| {
        e["reason"] == "ExecutorFunctionNotFound"
    })
    .await;
    let lease = api.lease("stash-system", "stash-webhook-audit").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "replica-on");
    assert!(
        api.events()
            .iter()
            .all(|e| e["reportingInstance"] == "replica-on"),
        "{:?}",
        api.events()
    );
}

#[test]
fn every_flag_is_documented_in_the_readme() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for command in ["serve", "certs"] {
        let help = Command::new(env!("CARGO_BIN_EXE_stash-webhook"))
            .args([command, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8(help.stdout).unwrap();
        let flags: Vec<&str> = help
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("--"))
            .map(|l| l.split([' ', ',', '=']).next().unwrap_or_default())
            .filter(|f| *f != "help")
            .collect();
        assert!(flags.len() >= 4, "{help}");
        for flag in flags {
            assert!(
                readme.contains(&format!("--{flag}")),
                "`--{flag}` of `{command}` is not in README.md"
            );
        }
    }
}

/// A cluster with Stash alone: the server gets ready without the KubeStash CRDs (their lists
/// answer 404), still judges Stash objects, and reports KubeStash names as not checked.
#[tokio::test]
async fn a_cluster_without_kubestash_is_served_and_kubestash_names_are_not_checked() {
    let api = ApiServer::start().await;
    api.set_kubestash_installed(false);
    let files = Files::of(&api);
    let (_child, port, client) = files.serve(|_| {}).await;

    let denied: Value = validate(&client, port, create_naming("ghost")).await;
    assert_eq!(denied["response"]["allowed"], false, "{denied}");
    let review = kubestash_review(
        "RestoreSession",
        "CREATE",
        serde_json::json!({"addon": {"name": "workload-addon", "tasks": [{"name": "t"}]}}),
        None,
    );
    let allowed: Value = validate(&client, port, review).await;
    assert_eq!(allowed["response"]["allowed"], true, "{allowed}");
    assert_eq!(
        allowed["response"]["warnings"],
        serde_json::json!(["spec.addon.name: Addon \"workload-addon\" not checked: there are no Addons to check it against (the cluster does not serve them: their CRD is not installed; or the catalog and files checked hold none)"])
    );
}

/// `--kubestash=false` (through its environment variable, as the no-kubestash component sets it):
/// with KubeStash installed but no RBAC on its kinds (every request for them answers 403), the
/// server reads none of them, gets ready and judges Stash objects.
#[tokio::test]
async fn with_kubestash_off_none_of_its_kinds_is_read() {
    let api = ApiServer::start().await;
    let kubestash = [
        "addons.addons.kubestash.com",
        "functions.addons.kubestash.com",
        "hooktemplates.core.kubestash.com",
        "backupconfigurations.core.kubestash.com",
        "restoresessions.core.kubestash.com",
        "backupbatches.core.kubestash.com",
        "backupblueprints.core.kubestash.com",
    ];
    for plural in kubestash {
        api.set_forbidden_resource(plural, true);
    }
    let files = Files::of(&api);
    // Ready only because nothing waits for KubeStash's caches, which could never fill.
    let (_child, port, client) = files
        .serve(|command| {
            command
                .args(["--pod-name", "replica-a", "--namespace", "stash-system"])
                .env_remove("STASH_WEBHOOK_AUDIT")
                .env("STASH_WEBHOOK_KUBESTASH", "false");
        })
        .await;

    let denied: Value = validate(&client, port, create_naming("ghost")).await;
    assert_eq!(denied["response"]["allowed"], false, "{denied}");
    for plural in kubestash {
        let counters = api.counters_for(plural);
        assert_eq!((counters.lists(), counters.gets()), (0, 0), "{plural}");
    }
}

/// A cluster with KubeStash alone: without Stash's CRDs (their lists answer 404) the server gets
/// ready, judges KubeStash objects against the cluster, and its audit reports a KubeStash object
/// whose Addon does not exist.
#[tokio::test]
async fn a_cluster_with_kubestash_alone_is_served_and_audited() {
    let api = ApiServer::start().await;
    api.set_stash_installed(false);
    api.put_object(
        "backupconfigurations.core.kubestash.com",
        Some("demo"),
        "orphan",
        serde_json::json!({"sessions": [{"addon": {"name": "never-created", "tasks": [{"name": "t"}]}}]}),
    );
    let files = Files::of(&api);
    let (_child, port, client) = files
        .serve(|command| {
            command
                .args(["--pod-name", "replica-a", "--namespace", "stash-system"])
                .env_remove("STASH_WEBHOOK_AUDIT");
        })
        .await;

    let review = kubestash_review(
        "BackupConfiguration",
        "CREATE",
        serde_json::json!({"sessions": [{"addon": {"name": "never-created"}}]}),
        None,
    );
    let denied: Value = validate(&client, port, review).await;
    assert_eq!(
        denied["response"]["status"]["message"],
        "spec.sessions[0].addon.name: Addon \"never-created\" not found: install the KubeStash addon that provides it, or fix the name (list them with: kubectl get addons.addons.kubestash.com)"
    );
    an_event(&api, "an AddonNotFound Event on demo/orphan", |e| {
        e["reason"] == "AddonNotFound" && e["regarding"]["name"] == "orphan"
    })
    .await;
}

/// `--protect-timeout`, not `--lookup-timeout`, bounds protection: its live LISTs of every object
/// that could name the referent may take longer than a lookup. With LISTs slower than the lookup
/// timeout, the DELETE of an unused Function is judged (and allowed) within a longer protect
/// timeout, and refused as unchecked within a shorter one.
#[tokio::test]
async fn protection_lists_for_as_long_as_the_protect_timeout_allows() {
    let api = ApiServer::start().await;
    api.put_function("unused", Some("busybox"));
    let files = Files::of(&api);
    let start = |protect_timeout: &'static str| {
        files.serve(move |command| {
            command
                .args(["--lookup-timeout", "1s"])
                .args(["--protect-timeout", protect_timeout])
                .env("STASH_WEBHOOK_AUDIT", "false");
        })
    };
    let (_long, long, client) = start("30s").await;
    let (_short, short, _) = start("1s").await;

    let mut review: Value = serde_json::from_str(&fixture("function-delete")).unwrap();
    review["request"]["name"] = "unused".into();
    review["request"]["oldObject"]["metadata"]["name"] = "unused".into();
    api.set_list_delay(Duration::from_millis(1500));
    let protect = |port: u16| {
        let (client, body) = (client.clone(), review.to_string());
        async move { post(&client, port, "protect?timeout=60s", body).await["response"].clone() }
    };
    let judged = protect(long).await;
    assert_eq!(judged["allowed"], true, "{judged}");
    let unchecked = protect(short).await;
    assert_eq!(unchecked["allowed"], false, "{unchecked}");
    assert_eq!(
        unchecked["status"]["message"],
        "Function \"unused\" could not be checked for hooks that name it: the Kubernetes API did not list the objects that could name it within 1000 ms: retry; if it keeps timing out, raise the webhook's --protect-timeout and the protect webhooks' timeoutSeconds together"
    );
}

/// Waits (60 s at most) for an Event the stand-in API server stores that `matches`.
async fn an_event(api: &ApiServer, what: &str, matches: impl Fn(&Value) -> bool + Copy) {
    eventually(Duration::from_secs(60), what, || async move {
        api.events().iter().any(matches)
    })
    .await;
}

/// POSTs `body` to the server's `/validate` and reads the AdmissionReview it answers.
async fn validate(client: &reqwest::Client, port: u16, body: String) -> Value {
    post(client, port, "validate?timeout=5s", body).await
}

/// POSTs `body` to the server's `path` (`protect?timeout=60s`) and reads the AdmissionReview it
/// answers.
async fn post(client: &reqwest::Client, port: u16, path: &str, body: String) -> Value {
    client
        .post(format!("https://localhost:{port}/{path}"))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
