//! Function lookups through `kube::Client` against the stand-in API server: the watch-backed
//! cache, the live GET that confirms every would-be denial, and each way a lookup can fail.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stash_webhook::functions::ClusterSource;
use stash_webhook::metrics::Metrics;
use stash_webhook::rules::FailurePolicy;
use stash_webhook::sources::Source;
use support::apiserver::ApiServer;
use support::{eventually, Options, Webhook};

/// The recorded review without its `spec.task`: these stories are about Function lookups (the
/// Task's own are told with it, below).
fn fixture(name: &str) -> String {
    support::fixture(name).replace(r#","task":{"name":"mysql-backup-8.0.14"}}"#, "}")
}

fn create_naming(function: &str) -> String {
    fixture("backupconfiguration-create").replace("mysql-hook-executor", function)
}

const WAIT: Duration = Duration::from_secs(10);

struct Cluster {
    api: ApiServer,
    source: Arc<ClusterSource>,
    tasks: Arc<stash_webhook::tasks::ClusterSource>,
    webhook: Webhook,
    _watches: [tokio::task::JoinHandle<()>; 2],
}

/// A webhook on the stand-in's Functions and Tasks, as the server runs in a cluster.
async fn cluster(mut options: Options, prepare: impl FnOnce(&ApiServer)) -> Cluster {
    let api = ApiServer::start().await;
    prepare(&api);
    let metrics = Metrics::default();
    let (source, watch) = ClusterSource::start(api.client(), metrics.clone());
    let source = Arc::new(source);
    let (tasks, task_watch) =
        stash_webhook::tasks::ClusterSource::start(api.client(), metrics.clone());
    let tasks = Arc::new(tasks);
    options.tasks = Some(tasks.clone());
    let webhook = Webhook::start(source.clone(), metrics, options).await;
    Cluster {
        api,
        source,
        tasks,
        webhook,
        _watches: [watch, task_watch],
    }
}

async fn synced(options: Options, prepare: impl FnOnce(&ApiServer)) -> Cluster {
    let c = cluster(options, prepare).await;
    let (source, tasks) = (c.source.clone(), c.tasks.clone());
    eventually(WAIT, "the Function and Task caches to sync", || {
        let ready = source.is_ready() && tasks.is_ready();
        async move { ready }
    })
    .await;
    c
}

/// A webhook whose API server stopped before the webhook started.
async fn down_at_start(options: Options) -> (Webhook, tokio::task::JoinHandle<()>) {
    let api = ApiServer::start().await;
    let client = api.client();
    api.stop().await;
    let metrics = Metrics::default();
    let (source, _watch) = ClusterSource::start(client, metrics.clone());
    let webhook = Webhook::start(Arc::new(source), metrics, options).await;
    (webhook, _watch)
}

/// The recorded CREATE as the API server sent it, naming an executor and a Task.
async fn recorded_create(c: &Cluster) -> Value {
    c.webhook
        .review(support::fixture("backupconfiguration-create"))
        .await
}

/// The Function the recorded reviews' executor names.
fn with_mysql(api: &ApiServer) {
    api.put_function("mysql-hook-executor", Some("appscode/mysql-hook:8.0.14"));
}

/// The Task the recorded reviews name, as an addon installs it, with its step's Function.
fn with_mysql_task(api: &ApiServer) {
    api.put_function_spec(
        "mysql-backup",
        json!({"image": "stashed/stash-mysql:8.0.14"}),
    );
    api.put_object(
        "tasks",
        None,
        "mysql-backup-8.0.14",
        json!({"steps": [{"name": "mysql-backup"}]}),
    );
}

/// A review of the CREATE of a BackupBatch with these `members`.
fn batch_creation(members: Vec<Value>) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "b-1", "kind": {"group": "stash.appscode.com", "version": "v1beta1", "kind": "BackupBatch"},
        "resource": {"group": "stash.appscode.com", "version": "v1beta1", "resource": "backupbatches"},
        "name": "batch", "namespace": "demo", "operation": "CREATE", "userInfo": {"username": "admin"},
        "object": {"apiVersion": "stash.appscode.com/v1beta1", "kind": "BackupBatch", "metadata": {"name": "batch", "namespace": "demo"},
                   "spec": {"members": members}}}})
}

fn message(r: &Value) -> &str {
    r["status"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn found_in_the_cache_without_an_api_call_at_steady_state() {
    let c = synced(Options::default(), |api| {
        with_mysql(api);
        with_mysql_task(api);
    })
    .await;
    let gets_before = c.api.counters().gets();
    for _ in 0..20 {
        // As recorded: an executor and a Task.
        let r = recorded_create(&c).await;
        assert_eq!(r["allowed"], true);
    }
    assert_eq!(
        c.api.counters().gets(),
        gets_before,
        "a cached, valid Function needs no GET"
    );
    assert_eq!(c.api.counters().lists(), 1);
    let tasks = c.api.counters_for("tasks");
    assert_eq!((tasks.gets(), tasks.lists()), (0, 1), "nor a cached Task");
    let metrics = c.webhook.metrics.encode();
    for line in [
        // The executor's Function and the Task's step's, each review.
        "stash_webhook_lookups_total{resource=\"functions\",source=\"cache\",result=\"found\"} 40",
        "stash_webhook_lookups_total{resource=\"tasks\",source=\"cache\",result=\"found\"} 20",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in {metrics}"
        );
    }
    assert!(!metrics.contains("source=\"api\""), "{metrics}");
}

#[tokio::test]
async fn missing_function_is_confirmed_with_one_get_then_denied() {
    let c = synced(Options::default(), with_mysql).await;
    let gets_before = c.api.counters().gets();
    let r = c.webhook.review(create_naming("ghost")).await;
    assert_eq!(r["allowed"], false);
    assert_eq!(
        message(&r),
        "spec.hooks.preBackup.executor.functionName: Function \"ghost\" not found: create the Function, or fix the name (list them with: kubectl get functions.stash.appscode.com)"
    );
    assert_eq!(c.api.counters().gets(), gets_before + 1);
}

#[tokio::test]
async fn function_created_a_moment_earlier_is_not_wrongly_denied() {
    let c = synced(Options::default(), with_mysql).await;
    // Created and immediately named, before the watch can possibly have delivered it: the live
    // GET finds it.
    c.api.put_function("fresh-fn", Some("busybox:1.36"));
    let r = c.webhook.review(create_naming("fresh-fn")).await;
    assert_eq!(r["allowed"], true, "{r}");
}

#[tokio::test]
async fn created_changed_and_deleted_functions_are_seen_without_restart() {
    let c = synced(Options::default(), with_mysql).await;
    let api = &c.api;
    let source = c.source.clone();

    api.put_function("later-fn", Some("busybox:1.36"));
    eventually(WAIT, "the watch to deliver later-fn", || {
        let source = source.clone();
        async move { source.len() == 2 }
    })
    .await;
    let gets = api.counters().gets();
    assert_eq!(
        c.webhook.review(create_naming("later-fn")).await["allowed"],
        true
    );
    assert_eq!(api.counters().gets(), gets, "served from the cache");

    // Changed to have no image: denied (confirmed live).
    api.put_function("later-fn", None);
    let r = c.webhook.review(create_naming("later-fn")).await;
    assert_eq!(r["allowed"], false);
    assert!(
        message(&r).contains("Function \"later-fn\" has no container image"),
        "{r}"
    );

    // Deleted: denied.
    api.delete_function("later-fn");
    eventually(WAIT, "the watch to deliver the deletion", || {
        let source = source.clone();
        async move { source.len() == 1 }
    })
    .await;
    let r = c.webhook.review(create_naming("later-fn")).await;
    assert!(
        message(&r).contains("Function \"later-fn\" not found"),
        "{r}"
    );
    assert_eq!(api.counters().lists(), 1, "no re-list was needed");
}

#[tokio::test]
async fn forbidden_lookups_fail_closed_with_the_reason() {
    let c = cluster(Options::default(), |api| api.set_forbidden(true)).await;
    let r = c.webhook.review(create_naming("mysql-hook-executor")).await;
    assert_eq!(r["allowed"], false);
    assert_eq!(
        message(&r),
        "spec.hooks.preBackup.executor.functionName: Function \"mysql-hook-executor\" could not be verified: the Kubernetes API refused the lookup (403 Forbidden: functions.stash.appscode.com \"mysql-hook-executor\" is forbidden: User \"system:serviceaccount:stash-system:stash-webhook\" cannot get resource \"functions\" in API group \"stash.appscode.com\" at the cluster scope); grant the webhook's ServiceAccount get, list and watch on functions.stash.appscode.com: retry once the webhook can read Functions"
    );
    // Never synced: not ready.
    let readyz = c
        .webhook
        .client()
        .get(c.webhook.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(readyz.status(), 503);
    assert_eq!(
        readyz.text().await.unwrap(),
        "Function and Task caches not synced yet\n"
    );
}

#[tokio::test]
async fn forbidden_lookups_can_fail_open_with_a_warning() {
    let options = Options {
        on_lookup_failure: FailurePolicy::Allow,
        ..Options::default()
    };
    let c = cluster(options, |api| api.set_forbidden(true)).await;
    let r = c.webhook.review(create_naming("mysql-hook-executor")).await;
    assert_eq!(r["allowed"], true);
    let warning = r["warnings"][0].as_str().unwrap();
    assert!(warning.starts_with("spec.hooks.preBackup.executor.functionName: Function \"mysql-hook-executor\" could not be verified: the Kubernetes API refused the lookup (403 Forbidden"), "{warning}");
    assert!(
        warning.ends_with("; allowed without verification"),
        "{warning}"
    );
}

#[tokio::test]
async fn slow_api_server_times_out_within_the_lookup_budget() {
    let options = Options {
        lookup_timeout: Duration::from_millis(300),
        ..Options::default()
    };
    let c = synced(options, with_mysql).await;
    c.api.set_get_delay(Duration::from_secs(20));
    let started = Instant::now();
    let r = c.webhook.review(create_naming("ghost")).await;
    let took = started.elapsed();
    assert_eq!(r["allowed"], false);
    assert_eq!(
        message(&r),
        "spec.hooks.preBackup.executor.functionName: Function \"ghost\" could not be verified: the Kubernetes API did not answer within 300 ms: retry once the webhook can read Functions"
    );
    // The API server's own deadline for the call is 5 s (?timeout=5s); the answer must beat it.
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    // A Function valid in the cache is still allowed while the API server is slow.
    assert_eq!(
        c.webhook
            .review(fixture("backupconfiguration-create"))
            .await["allowed"],
        true
    );
}

/// The lookups of one review share one deadline: 64 names on an API server that takes 1.5 s per
/// GET (16 at a time, so four rounds: 6 s) are answered within the 2 s lookup budget, well before
/// the API server's own 5 s, with the names not looked up in time "could not be verified".
#[tokio::test]
async fn one_deadline_bounds_all_the_lookups_of_a_review() {
    let c = synced(Options::default(), with_mysql).await;
    c.api.set_get_delay(Duration::from_millis(1500));
    let members: Vec<Value> = (0..64)
        .map(|i| json!({"hooks": {"preBackup": {"executor": {"functionName": format!("slow-{i}")}}}}))
        .collect();
    let review = batch_creation(members);
    let started = Instant::now();
    let r = c.webhook.review(review.to_string()).await;
    let took = started.elapsed();
    assert_eq!(r["allowed"], false);
    // The API server gives up after its ?timeout=5s; the answer must come before.
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    // The first round was answered in time; what was still waiting when the budget ran out was
    // not.
    assert!(
        message(&r)
            .contains("could not be verified: the Kubernetes API did not answer within 2000 ms"),
        "{}",
        message(&r)
    );
}

/// The variables a Function reads come from the watch, and a denial for a variable left unset is
/// confirmed with one live GET first (the cache may lag); an edit of the Function is seen without
/// a restart.
#[tokio::test]
async fn parameters_are_judged_against_the_function_as_it_is_now() {
    let c = synced(Options::default(), |api| {
        api.put_function_spec(
            "pg-dump",
            json!({"image": "postgres:16", "args": ["--out=${outputDir}", "--level=${level}"]}),
        )
    })
    .await;
    let naming = |params: Value| {
        let mut review: Value =
            serde_json::from_str(&fixture("backupconfiguration-create")).unwrap();
        review["request"]["object"]["spec"]["hooks"]["preBackup"]["executor"] =
            json!({"functionName": "pg-dump", "params": params});
        review.to_string()
    };
    let source = c.source.clone();
    eventually(WAIT, "pg-dump in the cache", || {
        let source = source.clone();
        async move { source.resolve_now("pg-dump").is_some() }
    })
    .await;

    // Everything given: allowed from the cache, no API call.
    let gets = c.api.counters().gets();
    let r = c
        .webhook
        .review(naming(json!({"outputDir": "/b", "level": "9"})))
        .await;
    assert_eq!(r["allowed"], true);
    assert_eq!(c.api.counters().gets(), gets);

    // `level` left unset: denied, after one live GET to confirm what the cache said.
    let r = c.webhook.review(naming(json!({"outputDir": "/b"}))).await;
    assert_eq!(r["allowed"], false);
    assert_eq!(
        message(&r),
        "spec.hooks.preBackup.executor.params: Function \"pg-dump\" reads ${level}, which this hook does not set and Stash does not provide: add params.level, or give it a default in the Function (${level:=...})"
    );
    assert_eq!(c.api.counters().gets(), gets + 1);

    // The Function is edited to give `level` a default: the same object is then allowed.
    c.api.put_function_spec(
        "pg-dump",
        json!({"image": "postgres:16", "args": ["--out=${outputDir}", "--level=${level:=6}"]}),
    );
    let webhook = &c.webhook;
    eventually(WAIT, "the edited Function to be judged", || {
        let body = naming(json!({"outputDir": "/b"}));
        async move { webhook.review(body).await["allowed"] == true }
    })
    .await;
}

#[tokio::test]
async fn api_server_errors_are_reported() {
    let c = synced(Options::default(), with_mysql).await;
    c.api.set_gets_fail_with_500(true);
    let r = c.webhook.review(create_naming("ghost")).await;
    assert_eq!(r["allowed"], false);
    assert_eq!(
        message(&r),
        "spec.hooks.preBackup.executor.functionName: Function \"ghost\" could not be verified: the Kubernetes API answered 500 InternalError (Internal error occurred: etcdserver: request timed out): retry once the webhook can read Functions"
    );
}

#[tokio::test]
async fn unreachable_api_server_fails_closed_and_cache_keeps_answering() {
    let c = synced(Options::default(), with_mysql).await;
    c.api.stop().await;
    let r = c.webhook.review(create_naming("ghost")).await;
    assert_eq!(r["allowed"], false);
    assert!(
        message(&r).starts_with("spec.hooks.preBackup.executor.functionName: Function \"ghost\" could not be verified: the Kubernetes API could not be reached"),
        "{r}"
    );
    assert_eq!(
        c.webhook
            .review(fixture("backupconfiguration-create"))
            .await["allowed"],
        true
    );
}

#[tokio::test]
async fn watch_resumes_after_410_gone_with_a_relist() {
    let c = synced(Options::default(), with_mysql).await;
    let source = c.source.clone();
    let lists = c.api.counters().lists();
    c.api.compact_and_drop_watches();
    c.api.put_function("after-gone", Some("busybox:1.36"));
    eventually(
        WAIT,
        "a re-list after 410 Gone to pick up after-gone",
        || {
            let source = source.clone();
            async move { source.len() == 2 }
        },
    )
    .await;
    assert!(c.api.counters().lists() > lists, "the watcher re-listed");
    let gets = c.api.counters().gets();
    assert_eq!(
        c.webhook.review(create_naming("after-gone")).await["allowed"],
        true
    );
    assert_eq!(c.api.counters().gets(), gets);
}

#[tokio::test]
async fn many_functions_in_one_object_are_each_looked_up_once() {
    let c = synced(Options::default(), with_mysql).await;
    let members: Vec<Value> = (0..30)
        .map(|i| json!({"hooks": {"postBackup": {"executor": {"functionName": format!("ghost-{}", i % 10)}}}}))
        .collect();
    let review = batch_creation(members);
    let gets = c.api.counters().gets();
    let r = c.webhook.review(review.to_string()).await;
    assert_eq!(r["allowed"], false);
    // Twenty problems listed, the other ten counted.
    let lines: Vec<&str> = message(&r).lines().collect();
    assert_eq!(lines.len(), 21);
    assert!(lines[19].starts_with(
        "spec.members[19].hooks.postBackup.executor.functionName: Function \"ghost-9\" not found"
    ));
    assert_eq!(
        lines[20],
        "... and 10 more problems in 10 more hooks, not listed (stash-webhook check -f FILE lists them all)"
    );
    assert_eq!(c.api.counters().gets(), gets + 10);
}

#[tokio::test]
async fn api_server_unreachable_at_start_is_not_ready_and_fails_closed_in_time() {
    let (webhook, _watch) = down_at_start(Options {
        lookup_timeout: Duration::from_millis(500),
        ..Options::default()
    })
    .await;
    let readyz = webhook
        .client()
        .get(webhook.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(readyz.status(), 503);
    let started = Instant::now();
    let r = webhook.review(fixture("backupconfiguration-create")).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(r["allowed"], false);
    assert!(
        message(&r).starts_with("spec.hooks.preBackup.executor.functionName: Function \"mysql-hook-executor\" could not be verified: the Kubernetes API could not be reached"),
        "{r}"
    );
}

#[tokio::test]
async fn api_server_unreachable_at_start_can_fail_open() {
    let (webhook, _watch) = down_at_start(Options {
        on_lookup_failure: FailurePolicy::Allow,
        lookup_timeout: Duration::from_millis(500),
        ..Options::default()
    })
    .await;
    let r = webhook.review(fixture("backupconfiguration-create")).await;
    assert_eq!(r["allowed"], true);
    assert!(
        r["warnings"][0]
            .as_str()
            .unwrap()
            .contains("could not be verified: the Kubernetes API could not be reached"),
        "{r}"
    );
}

#[tokio::test]
async fn api_server_outage_the_cache_answers_and_the_watch_catches_up() {
    let c = synced(Options::default(), with_mysql).await;
    let source = c.source.clone();
    c.api.stop().await;
    // Changes made while this webhook cannot see the API server.
    c.api
        .put_function("made-during-outage", Some("busybox:1.36"));
    c.api.delete_function("mysql-hook-executor");
    c.api
        .put_function("mysql-hook-executor", Some("appscode/mysql-hook:8.0.15"));
    // The cache keeps answering for what it knew.
    let gets = c.api.counters().gets();
    assert_eq!(
        c.webhook
            .review(fixture("backupconfiguration-create"))
            .await["allowed"],
        true
    );
    assert_eq!(c.api.counters().gets(), gets);

    c.api.restart().await;
    eventually(
        Duration::from_secs(30),
        "the watch to resume and see made-during-outage",
        || {
            let source = source.clone();
            async move { source.len() == 2 }
        },
    )
    .await;
    let gets = c.api.counters().gets();
    assert_eq!(
        c.webhook.review(create_naming("made-during-outage")).await["allowed"],
        true
    );
    assert_eq!(c.api.counters().gets(), gets, "answered from the cache");
}

/// `kubectl apply -f dir/` with a Task, its step's Function and the object naming it: the caches
/// have not seen the first two yet, and live GETs find them.
#[tokio::test]
async fn a_task_and_its_function_created_a_moment_earlier_are_not_wrongly_denied() {
    let c = synced(Options::default(), with_mysql).await;
    with_mysql_task(&c.api);
    let r = recorded_create(&c).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(c.api.counters_for("tasks").gets(), 1);
}

#[tokio::test]
async fn a_missing_task_is_confirmed_with_one_get_then_denied() {
    let c = synced(Options::default(), with_mysql).await;
    let r = recorded_create(&c).await;
    assert_eq!(r["allowed"], false);
    assert_eq!(
        message(&r),
        "spec.task.name: Task \"mysql-backup-8.0.14\" not found: install the Stash addon that provides it (kubectl get tasks.stash.appscode.com lists those installed), or correct the name"
    );
    assert_eq!(c.api.counters_for("tasks").gets(), 1);
}

/// A Task edited to name a Function that does not exist: once the cache has it, the review is
/// denied, after the Task (answered from the cache) and the missing Function are looked up live.
#[tokio::test]
async fn a_task_changed_since_it_was_cached_is_judged_as_it_is_now() {
    let c = synced(Options::default(), |api| {
        with_mysql(api);
        with_mysql_task(api);
    })
    .await;
    let tasks = c.tasks.clone();
    c.api.put_object(
        "tasks",
        None,
        "mysql-backup-8.0.14",
        json!({"steps": [{"name": "mysql-backup"}, {"name": "ghost-step"}]}),
    );
    eventually(WAIT, "the watch to deliver the edited Task", || {
        let steps = tasks.cached("mysql-backup-8.0.14").map(|t| t.steps.len());
        async move { steps == Some(2) }
    })
    .await;
    let gets = c.api.counters_for("tasks").gets();
    let r = recorded_create(&c).await;
    assert_eq!(r["allowed"], false);
    assert_eq!(
        message(&r),
        "spec.task.name: Task \"mysql-backup-8.0.14\", at its spec.steps[1].name: Function \"ghost-step\" not found: create the Function, or fix the Task (list them with: kubectl get functions.stash.appscode.com)"
    );
    assert_eq!(
        c.api.counters_for("tasks").gets(),
        gets + 1,
        "the Task confirmed live"
    );
}
