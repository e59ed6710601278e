//! After admission, against the stand-in API server: Function and Task protection over HTTPS
//! (`/protect`), decided by live LISTs so that an object the index has not seen yet is protected
//! too, and the audit's Events on executors and Tasks, one leader at a time, with none lost or
//! duplicated through an outage. The same for KubeStash's referents (Addons, its Functions,
//! HookTemplates): protection by live LISTs of the KubeStash kinds, and the audit's Events.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stash_webhook::functions::ClusterSource;
use stash_webhook::kubestash::referents::{Addon, AddonFunction, HookTemplate};
use stash_webhook::metrics::Metrics;
use stash_webhook::references::audit::{self, Settings};
use stash_webhook::references::index::{self, ReferenceIndex};
use stash_webhook::references::protect::{self, Protector};
use stash_webhook::rules::tasks::Task;
use stash_webhook::rules::{FailurePolicy, Policy};
use stash_webhook::sources::{ClusterSource as Watched, Referent, Source};
use stash_webhook::tasks::ClusterSource as TaskSource;
use stash_webhook::validator::KubeStashSources;
use support::apiserver::ApiServer;
use support::{eventually, fixture, Options, Webhook};

const WAIT: Duration = Duration::from_secs(20);
const ANNOTATION: &str = "stash-webhook.stash.appscode.com/allow-breaking-references";

fn naming(function: &str) -> Value {
    json!({"hooks": {"preBackup": {"exec": {"command": ["/bin/true"]}, "executor": {"functionName": function}}}})
}

/// A review of a DELETE of Function `name`, as the API server sends it (the recorded one, renamed),
/// with or without the annotation on the object deleted.
fn delete_of(name: &str, annotated: bool) -> String {
    let mut review: Value = serde_json::from_str(&fixture("function-delete")).unwrap();
    review["request"]["name"] = json!(name);
    review["request"]["oldObject"]["metadata"]["name"] = json!(name);
    if annotated {
        review["request"]["oldObject"]["metadata"]["annotations"][ANNOTATION] = json!("true");
    }
    review.to_string()
}

/// A review of a referent `R` (a Task, an Addon, ...), as the API server sends it (the recorded
/// Function DELETE, made one of `R`): `old` and `new` are the `spec` of `oldObject` and `object` (none:
/// null), each with the annotation when `annotated`.
fn referent_review<R: Referent>(
    operation: &str,
    (namespace, name): (Option<&str>, &str),
    old: Option<Value>,
    new: Option<Value>,
    annotated: bool,
) -> String {
    let (group, version, kind, resource) = (R::GROUP, R::VERSION, R::KIND, R::PLURAL);
    let mut review: Value = serde_json::from_str(&fixture("function-delete")).unwrap();
    let request = &mut review["request"];
    for field in ["kind", "requestKind"] {
        request[field] = json!({"group": group, "version": version, "kind": kind});
    }
    for field in ["resource", "requestResource"] {
        request[field] = json!({"group": group, "version": version, "resource": resource});
    }
    request["name"] = json!(name);
    if let Some(namespace) = namespace {
        request["namespace"] = json!(namespace);
    }
    request["operation"] = json!(operation);
    let object = |spec: Option<Value>| match spec {
        Some(spec) => {
            let mut object = json!({"apiVersion": format!("{group}/{version}"), "kind": kind,
                "metadata": {"name": name}, "spec": spec});
            if let Some(namespace) = namespace {
                object["metadata"]["namespace"] = json!(namespace);
            }
            if annotated {
                object["metadata"]["annotations"][ANNOTATION] = json!("true");
            }
            object
        }
        None => Value::Null,
    };
    request["oldObject"] = object(old);
    request["object"] = object(new);
    review.to_string()
}

/// A review of a Task: `old` and `new` are the `spec.steps` of `oldObject` and `object`.
fn task_review(
    operation: &str,
    name: &str,
    old: Option<Value>,
    new: Option<Value>,
    annotated: bool,
) -> String {
    let spec = |steps: Option<Value>| steps.map(|steps| json!({ "steps": steps }));
    referent_review::<Task>(operation, (None, name), spec(old), spec(new), annotated)
}

/// A cluster: the stand-in, the Function and Task caches, the reference index, and the webhook
/// serving `/protect`.
struct Cluster {
    api: ApiServer,
    source: Arc<ClusterSource>,
    tasks: Arc<TaskSource>,
    kubestash: Option<KubeStashSources>,
    index: Arc<ReferenceIndex>,
    index_watches: Vec<tokio::task::JoinHandle<()>>,
    webhook: Webhook,
    metrics: Metrics,
}

impl Cluster {
    /// Stops the index's watches: from now on it lags, holding what it had, still synced.
    fn freeze_index(&self) {
        for watch in &self.index_watches {
            watch.abort();
        }
    }
}

async fn cluster(prepare: impl FnOnce(&ApiServer)) -> Cluster {
    let api = ApiServer::start().await;
    prepare(&api);
    let metrics = Metrics::default();
    let (source, _watch) = ClusterSource::start(api.client(), metrics.clone());
    let source = Arc::new(source);
    let (tasks, _task_watch) = TaskSource::start(api.client(), metrics.clone());
    let tasks = Arc::new(tasks);
    let index = Arc::new(ReferenceIndex::default());
    let index_watches = index::start(api.client(), index.clone(), metrics.clone());
    let kubestash = KubeStashSources {
        addons: Some(Arc::new(
            Watched::<Addon>::start(api.client(), metrics.clone()).0,
        )),
        functions: Some(Arc::new(
            Watched::<AddonFunction>::start(api.client(), metrics.clone()).0,
        )),
        hook_templates: Some(Arc::new(
            Watched::<HookTemplate>::start(api.client(), metrics.clone()).0,
        )),
    };
    let protector = Protector::new(
        Some(protect::Cluster {
            client: api.client(),
            functions: source.clone(),
        }),
        FailurePolicy::Deny,
        Duration::from_secs(2),
    )
    .with_kubestash(kubestash.clone());
    let webhook = Webhook::start(
        source.clone(),
        metrics.clone(),
        Options {
            protector,
            ..Options::default()
        },
    )
    .await;
    let (s, t, i, k) = (
        source.clone(),
        tasks.clone(),
        index.clone(),
        kubestash.clone(),
    );
    eventually(WAIT, "the caches and the index to sync", || {
        let (s, t, i, k) = (s.clone(), t.clone(), i.clone(), k.clone());
        async move { s.is_ready() && t.is_ready() && i.is_synced() && k.is_ready() }
    })
    .await;
    Cluster {
        api,
        source,
        tasks,
        kubestash: Some(kubestash),
        index,
        index_watches,
        webhook,
        metrics,
    }
}

/// Creates or replaces Task `name` with these `spec.steps`.
fn put_task(api: &ApiServer, name: &str, steps: Value) {
    api.put_object("tasks", None, name, json!({"steps": steps}));
}

/// Task `pg-backup` runs Function `pg-dump` (which reads nothing it must be given); a
/// BackupConfiguration and a BackupBatch member name the Task; no hook names the Function.
fn with_task_users(api: &ApiServer) {
    api.put_function_spec("pg-dump", json!({"image": "stashed/postgres-stash:16"}));
    put_task(api, "pg-backup", json!([{"name": "pg-dump"}]));
    api.put_object(
        "backupconfigurations",
        Some("demo"),
        "db-backup",
        json!({"task": {"name": "pg-backup"}}),
    );
    api.put_object(
        "backupbatches",
        Some("demo"),
        "batch",
        json!({"members": [{"target": {}}, {"target": {}}, {"task": {"name": "pg-backup"}}]}),
    );
}

const TWO_TASK_USERS: &str =
    "demo/BackupConfiguration/db-backup (spec.task), demo/BackupBatch/batch (spec.members[2].task)";

/// A Function that can run the hooks below (it reads no variable they would have to set).
fn put_mysql_hook_executor(api: &ApiServer) {
    api.put_function_spec(
        "mysql-hook-executor",
        json!({"image": "appscode/mysql-hook:8.0.14"}),
    );
}

fn with_three_users(api: &ApiServer) {
    put_mysql_hook_executor(api);
    api.put_function("unused", Some("busybox"));
    api.put_object(
        "backupconfigurations",
        Some("demo"),
        "app-backup",
        naming("mysql-hook-executor"),
    );
    api.put_object(
        "backupbatches",
        Some("demo"),
        "batch",
        json!({"members": [{"target": {}}, {"hooks": {"postBackup": {"executor": {"functionName": "mysql-hook-executor"}}}}]}),
    );
    api.put_object(
        "backupblueprints",
        None,
        "blueprint",
        naming("mysql-hook-executor"),
    );
}

/// One BackupConfiguration naming a Function that was never created.
fn with_an_orphan(api: &ApiServer) {
    api.put_object(
        "backupconfigurations",
        Some("demo"),
        "orphan",
        naming("never-created"),
    );
}

const THREE_HOOKS: &str = "demo/BackupConfiguration/app-backup (spec.hooks.preBackup), demo/BackupBatch/batch (spec.members[1].hooks.postBackup), BackupBlueprint/blueprint (spec.hooks.preBackup)";

#[tokio::test]
async fn deleting_a_function_in_use_is_denied_unless_annotated() {
    let c = cluster(with_three_users).await;
    let r = c
        .webhook
        .protect(delete_of("mysql-hook-executor", false))
        .await;
    assert_eq!(r["allowed"], false);
    assert_eq!(
        r["status"]["message"],
        format!("Function \"mysql-hook-executor\" is used by 3 hooks: {THREE_HOOKS}: change or delete them first, or annotate the Function with {ANNOTATION}=true")
    );

    let r = c
        .webhook
        .protect(delete_of("mysql-hook-executor", true))
        .await;
    assert_eq!(r["allowed"], true);
    assert_eq!(
        r["warnings"],
        json!([format!("Function \"mysql-hook-executor\" is used by 3 hooks: {THREE_HOOKS}; allowed by the annotation {ANNOTATION}=true: those hooks fail until they name a Function that can run")])
    );

    // Nothing names it: allowed, once live LISTs say so (the index may lag).
    let lists = c.api.counters_for("backupconfigurations").lists();
    let task_lists = c.api.counters_for("tasks").lists();
    let r = c.webhook.protect(delete_of("unused", false)).await;
    assert_eq!(r["allowed"], true);
    assert!(r.get("warnings").is_none(), "{r}");
    assert!(c.api.counters_for("backupconfigurations").lists() > lists);
    assert!(c.api.counters_for("tasks").lists() > task_lists);
}

#[tokio::test]
async fn an_update_that_takes_away_the_image_of_a_function_in_use_is_denied() {
    let c = cluster(with_three_users).await;
    let mut review: Value = serde_json::from_str(&fixture("function-create")).unwrap();
    review["request"]["operation"] = json!("UPDATE");
    review["request"]["oldObject"] = review["request"]["object"].clone();
    review["request"]["object"]["spec"] = json!({"args": ["--param-a=${a}"]});
    let r = c.webhook.protect(review.to_string()).await;
    assert_eq!(r["allowed"], false);
    assert_eq!(
        r["status"]["message"],
        format!("spec.image: this change leaves Function \"mysql-hook-executor\" unable to run (has no container image), and it is used by 3 hooks: {THREE_HOOKS}: change or delete them first, or annotate the Function with {ANNOTATION}=true")
    );
    // Another edit that keeps it usable is allowed.
    review["request"]["object"]["spec"] = json!({"image": "appscode/mysql-hook:8.0.15"});
    assert_eq!(c.webhook.protect(review.to_string()).await["allowed"], true);
}

/// A webhook whose protection lists from `api`, with no reference index at all.
async fn protecting_with(api: &ApiServer, policy: FailurePolicy) -> Webhook {
    let metrics = Metrics::default();
    let (source, _watch) = ClusterSource::start(api.client(), metrics.clone());
    let source = Arc::new(source);
    let cluster = protect::Cluster {
        client: api.client(),
        functions: source.clone(),
    };
    let protector = Protector::new(Some(cluster), policy, Duration::from_secs(2));
    let options = Options {
        protector,
        ..Options::default()
    };
    Webhook::start(source, metrics, options).await
}

/// The race protection must not lose: an object naming a Function or a Task is created, and the
/// referent deleted at once, before the index has seen the object (here it never will: its
/// watches are stopped). Live LISTs find the object, and the delete is denied.
#[tokio::test]
async fn a_referent_deleted_right_after_an_object_names_it_is_denied_though_the_index_lags() {
    let c = cluster(|api| {
        api.put_function("f", Some("busybox"));
        put_task(api, "t", json!([{"name": "f"}]));
    })
    .await;
    c.freeze_index();
    c.api.put_object(
        "restoresessions",
        Some("demo"),
        "new-user",
        json!({"hooks": {"preRestore": {"executor": {"functionName": "f"}}}}),
    );
    c.api.put_object(
        "backupconfigurations",
        Some("demo"),
        "new-task-user",
        json!({"task": {"name": "t"}}),
    );
    assert!(c.index.referents("f").is_empty() && c.index.task_referents("t").is_empty());
    assert!(c.index.is_synced());

    let r = c.webhook.protect(delete_of("f", false)).await;
    assert_denied(&r, format!("Function \"f\" is used by 1 hook: demo/RestoreSession/new-user (spec.hooks.preRestore) and by Task \"t\" (spec.steps[0]), named by 1 object: demo/BackupConfiguration/new-task-user (spec.task): change or delete them first, or annotate the Function with {ANNOTATION}=true"));
    let r = c
        .webhook
        .protect(task_review(
            "DELETE",
            "t",
            Some(json!([{"name": "f"}])),
            None,
            false,
        ))
        .await;
    assert_denied(&r, format!("Task \"t\" is used by 1 object: demo/BackupConfiguration/new-task-user (spec.task): change or delete them first, or annotate the Task with {ANNOTATION}=true"));
}

/// An audit replica. Its Lease lasts `lease`: long enough that a busy test machine never lets it
/// lapse, except where a test wants a takeover soon.
fn start_audit_with(
    c: &Cluster,
    identity: &str,
    interval: Duration,
    lease: Duration,
) -> tokio::task::JoinHandle<()> {
    let settings = Settings {
        namespace: "stash-system".into(),
        identity: identity.into(),
        interval,
        lease_duration: lease,
        policy: Policy::default(),
    };
    tokio::spawn(audit::run(
        c.api.client(),
        c.index.clone(),
        c.source.clone(),
        c.tasks.clone(),
        c.kubestash.clone(),
        c.metrics.clone(),
        settings,
    ))
}

fn start_audit(c: &Cluster, identity: &str, interval: Duration) -> tokio::task::JoinHandle<()> {
    start_audit_with(c, identity, interval, Duration::from_secs(30))
}

/// The Events stored for `reason`, as (object name, reportingInstance, series count).
fn events(api: &ApiServer, reason: &str) -> Vec<(String, String, u64)> {
    let mut found: Vec<(String, String, u64)> = api
        .events()
        .iter()
        .filter(|e| e["reason"] == reason)
        .map(|e| {
            (
                e["regarding"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                e["reportingInstance"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                e["series"]["count"].as_u64().unwrap_or(1),
            )
        })
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn a_broken_reference_gets_one_warning_per_hook_then_a_normal_event_when_fixed() {
    let c = cluster(with_three_users).await;
    let _audit = start_audit(&c, "replica-a", Duration::from_secs(3600));
    // Deleted with the annotation: every hook naming it is reported.
    c.api.delete_function("mysql-hook-executor");
    let api = &c.api;
    wait_events(api, audit::NOT_FOUND, 3).await;
    let warnings: Vec<Value> = c
        .api
        .events()
        .into_iter()
        .filter(|e| e["reason"] == audit::NOT_FOUND)
        .collect();
    let app = warnings
        .iter()
        .find(|e| e["regarding"]["name"] == "app-backup")
        .unwrap();
    assert_eq!(app["type"], "Warning");
    assert_eq!(app["regarding"]["kind"], "BackupConfiguration");
    assert_eq!(app["metadata"]["namespace"], "demo");
    assert_eq!(
        app["note"],
        "spec.hooks.preBackup.executor.functionName: Function \"mysql-hook-executor\" not found: create the Function, or fix the name (list them with: kubectl get functions.stash.appscode.com)"
    );
    let blueprint = warnings
        .iter()
        .find(|e| e["regarding"]["name"] == "blueprint")
        .unwrap();
    assert_eq!(
        blueprint["metadata"]["namespace"], "default",
        "cluster-scoped: in default"
    );

    // Created again: one Normal Event per hook, and the Warnings are not written again.
    put_mysql_hook_executor(&c.api);
    wait_events(api, audit::RESOLVED, 3).await;
    assert_eq!(
        events(&c.api, audit::NOT_FOUND),
        [
            ("app-backup".into(), "replica-a".into(), 1),
            ("batch".into(), "replica-a".into(), 1),
            ("blueprint".into(), "replica-a".into(), 1)
        ]
    );
}

#[tokio::test]
async fn the_periodic_audit_refreshes_events_without_duplicating_them() {
    let c = cluster(with_an_orphan).await;
    let _audit = start_audit(&c, "replica-a", Duration::from_secs(1));
    let api = &c.api;
    // Written again on every interval: the same Event, its series counting up.
    eventually(WAIT, "the Warning refreshed twice", || async move {
        events(api, audit::NOT_FOUND)
            .first()
            .is_some_and(|(_, _, n)| *n >= 3)
    })
    .await;
    assert_eq!(events(&c.api, audit::NOT_FOUND).len(), 1);
}

#[tokio::test]
async fn only_the_leader_writes_events_and_another_takes_over_when_it_goes() {
    let c = cluster(with_an_orphan).await;
    let lease = Duration::from_secs(6);
    let first = start_audit_with(&c, "replica-a", Duration::from_secs(3600), lease);
    let api = &c.api;
    eventually(WAIT, "the leader's Warning", || async move {
        !events(api, audit::NOT_FOUND).is_empty()
    })
    .await;
    let second = start_audit_with(&c, "replica-b", Duration::from_secs(3600), lease);
    let leader = events(&c.api, audit::NOT_FOUND)[0].1.clone();
    // A second broken reference: written by the leader alone.
    c.api.put_object(
        "restoresessions",
        Some("demo"),
        "orphan-2",
        json!({"hooks": {"postRestore": {"executor": {"functionName": "never-created"}}}}),
    );
    wait_events(api, audit::NOT_FOUND, 2).await;
    let writers: Vec<String> = events(&c.api, audit::NOT_FOUND)
        .into_iter()
        .map(|(_, w, _)| w)
        .collect();
    assert_eq!(writers, [leader.clone(), leader.clone()]);

    // The leader goes away without releasing the Lease; the other takes over once it expires,
    // and writes what it finds (each Warning once more, as a new leader does).
    let (gone, survivor) = if leader == "replica-a" {
        (first, "replica-b")
    } else {
        (second, "replica-a")
    };
    gone.abort();
    eventually(
        Duration::from_secs(60),
        "the other replica's Warnings",
        || async move {
            events(api, audit::NOT_FOUND)
                .iter()
                .filter(|(_, w, _)| w == survivor)
                .count()
                == 2
        },
    )
    .await;
    let lease = c.api.lease("stash-system", "stash-webhook-audit").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], survivor);
}

#[tokio::test]
async fn an_outage_while_writing_events_loses_and_duplicates_none() {
    let c = cluster(with_three_users).await;
    let _audit = start_audit(&c, "replica-a", Duration::from_secs(3600));
    let api = &c.api;
    // The leader first writes nothing (nothing is broken); then Event writes fail.
    eventually(WAIT, "the audit to lead", || async move {
        api.lease("stash-system", "stash-webhook-audit")
            .is_some_and(|l| l["spec"]["holderIdentity"] == "replica-a")
    })
    .await;
    c.api.set_writes_fail("events", Some(500));
    c.api.delete_function("mysql-hook-executor");
    eventually(WAIT, "failed Event writes", || async move {
        api.counters_for("events").creates() >= 3
    })
    .await;
    assert!(events(&c.api, audit::NOT_FOUND).is_empty());
    // Back: each Warning is written once.
    c.api.set_writes_fail("events", None);
    wait_events(api, audit::NOT_FOUND, 3).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let written = events(&c.api, audit::NOT_FOUND);
    assert_eq!(written.len(), 3, "{written:?}");
    assert!(
        written.iter().all(|(_, _, n)| *n == 1),
        "written once each: {written:?}"
    );
}

/// The objects that could name the Function cannot be listed (no RBAC for them): the delete is
/// denied with the reason, or allowed with a warning under `--on-lookup-failure allow`.
#[tokio::test]
async fn referents_that_cannot_be_listed_follow_the_lookup_failure_policy() {
    let api = ApiServer::start().await;
    api.put_function("f", Some("busybox"));
    api.set_forbidden_resource("backupbatches", true);
    for (policy, allowed) in [(FailurePolicy::Deny, false), (FailurePolicy::Allow, true)] {
        let webhook = protecting_with(&api, policy).await;
        let r = webhook.protect(delete_of("f", false)).await;
        assert_eq!(r["allowed"], allowed, "{r}");
        let text = if allowed {
            r["warnings"][0].as_str().unwrap().to_owned()
        } else {
            r["status"]["message"].as_str().unwrap().to_owned()
        };
        assert!(
            text.starts_with("Function \"f\" could not be checked for hooks that name it: the Kubernetes API refused to list the objects that could name it (")
                && text.contains("403")
                && text.contains("backupbatches"),
            "{text}"
        );
    }
}

/// The Tasks cannot be listed: a Function DELETE says so, and follows the policy.
#[tokio::test]
async fn tasks_that_cannot_be_listed_follow_the_lookup_failure_policy() {
    let api = ApiServer::start().await;
    api.put_function("f", Some("busybox"));
    api.set_forbidden_resource("tasks", true);
    let webhook = protecting_with(&api, FailurePolicy::Deny).await;
    let r = webhook.protect(delete_of("f", false)).await;
    assert_refused_to_list(
        &r,
        "Function \"f\" could not be checked for Tasks that name it: the Kubernetes API refused to list the Tasks that could name it (",
        "); grant the webhook's ServiceAccount list on tasks.stash.appscode.com: retry once the webhook can list them",
    );
}

/// A denial with exactly `message`.
fn assert_denied(r: &Value, message: impl AsRef<str>) {
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(r["status"]["message"], message.as_ref(), "{r}");
}

/// An admission with exactly `warnings`.
fn assert_warned(r: &Value, warnings: Value) {
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(r["warnings"], warnings, "{r}");
}

/// A denial whose text begins with `start`, names the 403 and ends with `end`.
fn assert_refused_to_list(r: &Value, start: &str, end: &str) {
    assert_eq!(r["allowed"], false, "{r}");
    let text = r["status"]["message"].as_str().unwrap();
    assert!(
        text.starts_with(start) && text.contains("403") && text.ends_with(end),
        "{text}"
    );
}

#[tokio::test]
async fn deleting_a_task_in_use_is_denied_unless_annotated() {
    let c = cluster(with_task_users).await;
    let steps = || Some(json!([{"name": "pg-dump"}]));
    let r = c
        .webhook
        .protect(task_review("DELETE", "pg-backup", steps(), None, false))
        .await;
    assert_denied(&r, format!("Task \"pg-backup\" is used by 2 objects: {TWO_TASK_USERS}: change or delete them first, or annotate the Task with {ANNOTATION}=true"));
    let r = c
        .webhook
        .protect(task_review("DELETE", "pg-backup", steps(), None, true))
        .await;
    assert_warned(&r, json!([format!("Task \"pg-backup\" is used by 2 objects: {TWO_TASK_USERS}; allowed by the annotation {ANNOTATION}=true: those objects fail until they name a Task that can run")]));
    // A Task no object names may go.
    let r = c
        .webhook
        .protect(task_review("DELETE", "unused", steps(), None, false))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
}

#[tokio::test]
async fn deleting_a_function_used_only_through_a_task_step_is_denied() {
    let c = cluster(with_task_users).await;
    let r = c.webhook.protect(delete_of("pg-dump", false)).await;
    assert_denied(&r, format!("Function \"pg-dump\" is used by Task \"pg-backup\" (spec.steps[0]), named by 2 objects: {TWO_TASK_USERS}: change or delete them first, or annotate the Function with {ANNOTATION}=true"));
    let r = c.webhook.protect(delete_of("pg-dump", true)).await;
    assert_warned(&r, json!([format!("Function \"pg-dump\" is used by Task \"pg-backup\" (spec.steps[0]), named by 2 objects: {TWO_TASK_USERS}; allowed by the annotation {ANNOTATION}=true: those Tasks fail until their steps name a Function that can run")]));
}

#[tokio::test]
async fn an_update_that_breaks_a_task_in_use_is_denied_unless_annotated() {
    let c = cluster(with_task_users).await;
    let update = |steps, annotated| {
        let before = Some(json!([{"name": "pg-dump"}]));
        c.webhook.protect(task_review(
            "UPDATE",
            "pg-backup",
            before,
            Some(steps),
            annotated,
        ))
    };
    // A step naming a Function that does not exist.
    let r = update(json!([{"name": "pg-dump"}, {"name": "pg-dumpp"}]), false).await;
    assert_denied(&r, format!("spec.steps[1].name: this change leaves Task \"pg-backup\" unable to run (Function \"pg-dumpp\" not found), and it is used by 2 objects: {TWO_TASK_USERS}: change or delete them first, or annotate the Task with {ANNOTATION}=true"));
    assert_eq!(
        r["warnings"],
        json!(["spec.steps[1].name: Function \"pg-dumpp\" not found: an object that names Task \"pg-backup\" fails until this step can run: create the Function, or name another one in the step (list them with: kubectl get functions.stash.appscode.com)"])
    );
    // No steps left, annotated: allowed, saying what breaks.
    let r = update(json!([]), true).await;
    assert_warned(&r, json!([
            "spec.steps: Task \"pg-backup\" has no steps: an object that names it fails until it has some (Stash refuses to run a Task without steps: \"empty steps/containers\")",
            format!("spec.steps: this change leaves Task \"pg-backup\" unable to run (it has no steps), and it is used by 2 objects: {TWO_TASK_USERS}; allowed by the annotation {ANNOTATION}=true: those objects fail until they name a Task that can run")
        ]));
    // A step naming a Function created a moment ago, not yet in the cache: confirmed live, allowed.
    c.api
        .put_function_spec("pg-verify", json!({"image": "stashed/postgres-stash:16"}));
    let r = update(json!([{"name": "pg-dump"}, {"name": "pg-verify"}]), false).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r.get("warnings").is_none(), "{r}");
}

#[tokio::test]
async fn a_task_that_cannot_run_is_created_with_a_warning() {
    let c = cluster(with_task_users).await;
    let r = c
        .webhook
        .protect(task_review(
            "CREATE",
            "new-task",
            None,
            Some(json!([{"name": "pg-dump"}, {"name": "ghost"}])),
            false,
        ))
        .await;
    assert_warned(&r, json!(["spec.steps[1].name: Function \"ghost\" not found: an object that names Task \"new-task\" fails until this step can run: create the Function, or name another one in the step (list them with: kubectl get functions.stash.appscode.com)"]));
    let r = c
        .webhook
        .protect(task_review(
            "CREATE",
            "fine",
            None,
            Some(json!([{"name": "pg-dump"}])),
            false,
        ))
        .await;
    assert_eq!(r, json!({"uid": r["uid"], "allowed": true, "status": {}}));
}

/// The value of one sample of the metrics, when it is there.
fn sample(metrics: &Metrics, line_start: &str) -> Option<String> {
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(line_start).map(str::to_owned))
}

#[tokio::test]
async fn a_task_that_breaks_gets_a_warning_per_object_then_a_normal_event_when_fixed() {
    let c = cluster(with_task_users).await;
    let _audit = start_audit(&c, "replica-a", Duration::from_secs(3600));
    let api = &c.api;
    let metrics = &c.metrics;
    // Deleted (with the annotation, say): each object naming it is told.
    c.api.delete_object("tasks", None, "pg-backup");
    wait_events(api, audit::TASK_NOT_FOUND, 2).await;
    // Both findings were confirmed live, with one GET of the Task between them.
    assert_eq!(c.api.counters_for("tasks").gets(), 1);
    let warning = event_on(&c.api, audit::TASK_NOT_FOUND, "db-backup");
    assert_eq!(warning["type"], "Warning");
    assert_eq!(warning["regarding"]["kind"], "BackupConfiguration");
    assert_eq!(warning["action"], "AuditTask");
    assert_eq!(
        warning["note"],
        "spec.task.name: Task \"pg-backup\" not found: install the Stash addon that provides it (kubectl get tasks.stash.appscode.com lists those installed), or correct the name"
    );
    let batch = event_on(&c.api, audit::TASK_NOT_FOUND, "batch");
    assert!(batch["note"]
        .as_str()
        .unwrap()
        .starts_with("spec.members[2].task.name: Task \"pg-backup\" not found: "));
    eventually(WAIT, "the gauge to count them", || async move {
        sample(
            metrics,
            "stash_webhook_broken_references{kind=\"BackupConfiguration\",reason=\"TaskNotFound\"} ",
        )
        .as_deref()
            == Some("1")
    })
    .await;

    // Back, with no steps: still broken, for another reason.
    put_task(&c.api, "pg-backup", json!([]));
    wait_events(api, audit::TASK_UNUSABLE, 2).await;
    let unusable = event_on(&c.api, audit::TASK_UNUSABLE, "db-backup");
    assert_eq!(
        unusable["note"],
        "spec.task.name: Task \"pg-backup\" has no steps, so Stash refuses to run it (\"empty steps/containers\"): give the Task steps (kubectl edit tasks.stash.appscode.com pg-backup), or name another Task"
    );

    // Fixed: one Normal Event per object, and the Warnings are not written again.
    put_task(&c.api, "pg-backup", json!([{"name": "pg-dump"}]));
    wait_events(api, audit::TASK_RESOLVED, 2).await;
    let resolved = event_on(&c.api, audit::TASK_RESOLVED, "db-backup");
    assert_eq!(resolved["type"], "Normal");
    assert_eq!(
        resolved["note"],
        "spec.task: the Task resolves and can run again"
    );
    assert!(events(&c.api, audit::TASK_NOT_FOUND)
        .iter()
        .all(|(_, _, n)| *n == 1));
    eventually(WAIT, "the gauge to go back to zero", || async move {
        sample(
            metrics,
            "stash_webhook_broken_references{kind=\"BackupConfiguration\",reason=\"TaskUnusable\"} ",
        )
        .as_deref()
            == Some("0")
    })
    .await;
    // Executor Events are not involved.
    assert!(events(&c.api, audit::NOT_FOUND).is_empty());
}

/// A Task update that would break it, whose step's Function cannot be looked up live: the cache
/// alone does not deny; `--on-lookup-failure` (deny here) decides, saying why.
#[tokio::test]
async fn a_task_update_whose_functions_cannot_be_looked_up_follows_the_lookup_failure_policy() {
    let c = cluster(with_task_users).await;
    c.api.set_gets_fail_with_500(true);
    let r = c
        .webhook
        .protect(task_review(
            "UPDATE",
            "pg-backup",
            Some(json!([{"name": "pg-dump"}])),
            Some(json!([{"name": "pg-dump"}, {"name": "ghost"}])),
            false,
        ))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    let text = r["status"]["message"].as_str().unwrap();
    assert!(
        text.starts_with("Task \"pg-backup\" could not be checked: Function \"ghost\" of its steps could not be looked up: the Kubernetes API answered 500 ")
            && text.ends_with(": retry once the webhook can read Functions"),
        "{text}"
    );
}

// ---- KubeStash's referents ------------------------------------------------------------------

const ADDONS: &str = "addons.addons.kubestash.com";
const KS_FUNCTIONS: &str = "functions.addons.kubestash.com";
const HOOK_TEMPLATES: &str = "hooktemplates.core.kubestash.com";
const KS_BACKUPS: &str = "backupconfigurations.core.kubestash.com";

fn addon_review(
    operation: &str,
    old: Option<Value>,
    new: Option<Value>,
    annotated: bool,
) -> String {
    referent_review::<Addon>(operation, (None, "workload-addon"), old, new, annotated)
}

fn workload_addon() -> Value {
    json!({"backupTasks": [
        {"name": "logical-backup", "function": "workload-backup"},
        {"name": "manifest-backup", "function": "workload-backup"}]})
}

/// Addon `workload-addon` (its task `logical-backup` run by Function `workload-backup`),
/// HookTemplate `demo/freeze` (run by Function `freeze-fn`), and BackupConfiguration
/// `demo/db-backup`, which names the task and the HookTemplate.
fn with_kubestash_users(api: &ApiServer) {
    api.put_object(
        KS_FUNCTIONS,
        None,
        "workload-backup",
        json!({"image": "ghcr.io/kubestash/workload-restic-plugin:v0.11.0"}),
    );
    api.put_object(
        KS_FUNCTIONS,
        None,
        "freeze-fn",
        json!({"image": "ghcr.io/kubestash/freeze:v0.1.0"}),
    );
    api.put_object(ADDONS, None, "workload-addon", workload_addon());
    api.put_object(
        HOOK_TEMPLATES,
        Some("demo"),
        "freeze",
        json!({"executor": {"type": "Function", "function": {"name": "freeze-fn"}}}),
    );
    api.put_object(
        HOOK_TEMPLATES,
        Some("demo"),
        "unused",
        json!({"executor": {"type": "Pod"}}),
    );
    api.put_object(
        KS_BACKUPS,
        Some("demo"),
        "db-backup",
        json!({"sessions": [{"name": "daily",
            "addon": {"name": "workload-addon", "tasks": [{"name": "logical-backup"}]},
            "hooks": {"preBackup": [{"name": "freeze", "hookTemplate": {"name": "freeze"}}]}}]}),
    );
}

#[tokio::test]
async fn deleting_a_kubestash_addon_in_use_is_denied_unless_annotated() {
    let c = cluster(with_kubestash_users).await;
    let r = c
        .webhook
        .protect(addon_review("DELETE", Some(workload_addon()), None, false))
        .await;
    assert_denied(&r, format!("Addon \"workload-addon\" is used by 1 reference: demo/BackupConfiguration/db-backup (spec.sessions[0].addon): change or delete them first, or annotate the Addon with {ANNOTATION}=true"));
    let r = c
        .webhook
        .protect(addon_review("DELETE", Some(workload_addon()), None, true))
        .await;
    assert_warned(&r, json!([format!("Addon \"workload-addon\" is used by 1 reference: demo/BackupConfiguration/db-backup (spec.sessions[0].addon); allowed by the annotation {ANNOTATION}=true: those objects fail until Addon \"workload-addon\" exists again, or they are changed")]));
}

/// One KubeStash kind cannot be listed: a DELETE of an Addon says so, and follows the policy
/// (here Deny).
#[tokio::test]
async fn kubestash_objects_that_cannot_be_listed_follow_the_lookup_failure_policy() {
    let c = cluster(with_kubestash_users).await;
    c.api
        .set_forbidden_resource("restoresessions.core.kubestash.com", true);
    let r = c
        .webhook
        .protect(addon_review("DELETE", Some(workload_addon()), None, false))
        .await;
    assert_refused_to_list(
        &r,
        "Addon \"workload-addon\" could not be checked for objects that name it: the Kubernetes API refused to list the KubeStash objects that could name it (",
        "); grant the webhook's ServiceAccount list on the core.kubestash.com and addons.kubestash.com kinds: retry once the webhook can list them",
    );
}

#[tokio::test]
async fn deleting_an_unused_hook_template_is_allowed_and_a_used_one_denied() {
    let c = cluster(with_kubestash_users).await;
    let delete = |name: &str| {
        referent_review::<HookTemplate>(
            "DELETE",
            (Some("demo"), name),
            Some(json!({"executor": {"type": "Pod"}})),
            None,
            false,
        )
    };
    let lists = c.api.counters_for(KS_BACKUPS).lists();
    let r = c.webhook.protect(delete("unused")).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r.get("warnings").is_none(), "{r}");
    assert!(
        c.api.counters_for(KS_BACKUPS).lists() > lists,
        "decided by a live LIST"
    );
    let r = c.webhook.protect(delete("freeze")).await;
    assert_denied(&r, format!("HookTemplate \"demo/freeze\" is used by 1 reference: demo/BackupConfiguration/db-backup (spec.sessions[0].hooks.preBackup[0]): change or delete them first, or annotate the HookTemplate with {ANNOTATION}=true"));
}

#[tokio::test]
async fn an_addon_update_removing_a_used_task_is_denied() {
    let c = cluster(with_kubestash_users).await;
    let update = |new| {
        c.webhook.protect(addon_review(
            "UPDATE",
            Some(workload_addon()),
            Some(new),
            false,
        ))
    };
    let without =
        json!({"backupTasks": [{"name": "manifest-backup", "function": "workload-backup"}]});
    let r = update(without).await;
    assert_denied(&r, format!("this change breaks Addon \"workload-addon\" for 1 reference: demo/BackupConfiguration/db-backup (spec.sessions[0].addon) (first denial: spec.sessions[0].addon.tasks[0].name: Addon \"workload-addon\" has no backup task \"logical-backup\"): change or delete them first, or annotate the Addon with {ANNOTATION}=true"));
    // Removing the task no object names is allowed.
    let without =
        json!({"backupTasks": [{"name": "logical-backup", "function": "workload-backup"}]});
    let r = update(without).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r.get("warnings").is_none(), "{r}");
    // A task without a Function is written with a warning.
    let r = c
        .webhook
        .protect(addon_review(
            "CREATE",
            None,
            Some(json!({"backupTasks": [{"name": "t"}]})),
            false,
        ))
        .await;
    assert_warned(&r, json!(["spec.backupTasks[0].function: backup task \"t\" of Addon \"workload-addon\" names no Function: fix the Addon, or name another task"]));
}

#[tokio::test]
async fn a_kubestash_function_update_removing_its_image_while_used_is_denied() {
    let c = cluster(with_kubestash_users).await;
    let review = referent_review::<AddonFunction>(
        "UPDATE",
        (None, "workload-backup"),
        Some(json!({"image": "ghcr.io/kubestash/workload-restic-plugin:v0.11.0"})),
        Some(json!({})),
        false,
    );
    let r = c.webhook.protect(review).await;
    assert_denied(&r, format!("this change breaks Function \"workload-backup\" for 1 reference: demo/BackupConfiguration/db-backup (spec.sessions[0].addon) (first denial: spec.sessions[0].addon.tasks[0].name: backup task \"logical-backup\" of Addon \"workload-addon\" runs Function \"workload-backup\" (functions.addons.kubestash.com), which has no container image (its spec.image is not set)): change or delete them first, or annotate the Function with {ANNOTATION}=true"));
    assert_eq!(
        r["warnings"],
        json!(["spec.image: Function \"workload-backup\" has no container image (its spec.image is not set): an Addon task or HookTemplate that runs it fails until it is fixed (give the Function a valid spec.image)"])
    );
}

#[tokio::test]
async fn a_hook_template_in_use_deleted_gets_a_warning_event_then_a_normal_one_when_restored() {
    let c = cluster(with_kubestash_users).await;
    let _audit = start_audit(&c, "replica-a", Duration::from_secs(3600));
    // Deleted with the annotation (the stand-in calls no webhook).
    assert!(c.api.delete_object(HOOK_TEMPLATES, Some("demo"), "freeze"));
    let api = &c.api;
    let event = first_event(api, audit::HOOK_TEMPLATE_NOT_FOUND).await;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["regarding"]["kind"], "BackupConfiguration");
    assert_eq!(
        event["regarding"]["apiVersion"],
        "core.kubestash.com/v1alpha1"
    );
    assert_eq!(event["regarding"]["name"], "db-backup");
    assert_eq!(event["metadata"]["namespace"], "demo");
    assert_eq!(event["action"], "AuditHookTemplate");
    assert_eq!(
        event["note"],
        "spec.sessions[0].hooks.preBackup[0].hookTemplate.name: HookTemplate \"freeze\" not found in namespace \"demo\": create it there, or set hookTemplate.namespace to the namespace that has it (list them with: kubectl get hooktemplates.core.kubestash.com -A)"
    );
    // The addon reference still resolves: nothing said of it.
    assert!(events(&c.api, audit::ADDON_NOT_FOUND).is_empty());
    assert!(events(&c.api, audit::ADDON_UNUSABLE).is_empty());
    let gauge = "stash_webhook_broken_references{kind=\"BackupConfiguration.core.kubestash.com\",reason=\"HookTemplateNotFound\"} ";
    assert_eq!(sample(&c.metrics, gauge).as_deref(), Some("1"));

    c.api.put_object(
        HOOK_TEMPLATES,
        Some("demo"),
        "freeze",
        json!({"executor": {"type": "Function", "function": {"name": "freeze-fn"}}}),
    );
    eventually(
        Duration::from_secs(60),
        "a HookTemplateResolved Event",
        || async move { !events(api, audit::HOOK_TEMPLATE_RESOLVED).is_empty() },
    )
    .await;
    assert_eq!(events(&c.api, audit::HOOK_TEMPLATE_NOT_FOUND).len(), 1);
    let metrics = &c.metrics;
    eventually(WAIT, "the gauge to go back to zero", || async move {
        sample(metrics, gauge).as_deref() == Some("0")
    })
    .await;
}

#[tokio::test]
async fn kubestash_findings_are_confirmed_with_one_live_lookup_of_each_name() {
    let c = cluster(|api| {
        with_kubestash_users(api);
        for name in ["a", "b", "c"] {
            api.put_object(
                KS_BACKUPS,
                Some("demo"),
                name,
                json!({"sessions": [{"name": "daily", "addon": {"name": "gone", "tasks": [{"name": "t"}]}}]}),
            );
        }
    })
    .await;
    let _audit = start_audit(&c, "replica-a", Duration::from_secs(3600));
    let api = &c.api;
    wait_events(api, audit::ADDON_NOT_FOUND, 3).await;
    // The three findings were confirmed live, with one GET of the Addon between them.
    assert_eq!(c.api.counters_for(ADDONS).gets(), 1);
    assert_eq!(
        event_on(&c.api, audit::ADDON_NOT_FOUND, "b")["note"],
        "spec.sessions[0].addon.name: Addon \"gone\" not found: install the KubeStash addon that provides it, or fix the name (list them with: kubectl get addons.addons.kubestash.com)"
    );
}

#[tokio::test]
async fn an_addon_losing_a_used_task_gets_an_addon_unusable_event() {
    let c = cluster(with_kubestash_users).await;
    let _audit = start_audit(&c, "replica-a", Duration::from_secs(3600));
    c.api.put_object(
        ADDONS,
        None,
        "workload-addon",
        json!({"backupTasks": [{"name": "manifest-backup", "function": "workload-backup"}]}),
    );
    let api = &c.api;
    let event = first_event(api, audit::ADDON_UNUSABLE).await;
    assert_eq!(event["regarding"]["name"], "db-backup");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["action"], "AuditAddon");
    assert_eq!(
        event["note"],
        "spec.sessions[0].addon.tasks[0].name: Addon \"workload-addon\" has no backup task \"logical-backup\": name one of Addon \"workload-addon\"'s backup tasks (it has manifest-backup)"
    );
    // Given the task again: a Normal Event.
    c.api
        .put_object(ADDONS, None, "workload-addon", workload_addon());
    let resolved = first_event(api, audit::ADDON_RESOLVED).await;
    assert_eq!(resolved["type"], "Normal");
    assert_eq!(
        resolved["note"],
        "spec.sessions[0].addon: the Addon resolves and its tasks can run again"
    );
}

#[tokio::test]
async fn a_cluster_without_kubestash_still_protects_stash_referents() {
    let c = cluster(|api| {
        api.set_kubestash_installed(false);
        with_three_users(api);
    })
    .await;
    let r = c
        .webhook
        .protect(delete_of("mysql-hook-executor", false))
        .await;
    assert_denied(&r, format!("Function \"mysql-hook-executor\" is used by 3 hooks: {THREE_HOOKS}: change or delete them first, or annotate the Function with {ANNOTATION}=true"));
    // A KubeStash referent has no users there: its kinds answer 404.
    let r = c
        .webhook
        .protect(addon_review("DELETE", Some(workload_addon()), None, false))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r.get("warnings").is_none(), "{r}");
    // The audit's passes go on without KubeStash's kinds: Stash's broken references are reported,
    // and the KubeStash pass, which finds no objects, completes (it sets its gauge).
    let _audit = start_audit(&c, "replica-a", Duration::from_secs(3600));
    c.api.delete_function("mysql-hook-executor");
    let api = &c.api;
    wait_events(api, audit::NOT_FOUND, 3).await;
    let gauge = "stash_webhook_broken_references{kind=\"BackupConfiguration.core.kubestash.com\",reason=\"AddonNotFound\"} ";
    let metrics = &c.metrics;
    eventually(WAIT, "the KubeStash pass's gauge", || async move {
        sample(metrics, gauge).as_deref() == Some("0")
    })
    .await;
}

/// The Event stored for `reason` on the object `name`.
fn event_on(api: &ApiServer, reason: &str, name: &str) -> Value {
    let found = api
        .events()
        .into_iter()
        .find(|e| e["reason"] == reason && e["regarding"]["name"] == name);
    found.unwrap_or_else(|| panic!("no {reason} Event on {name}: {:?}", api.events()))
}

/// Waits for `n` Events stored for `reason`.
async fn wait_events(api: &ApiServer, reason: &str, n: usize) {
    let what = format!("{n} {reason} Events");
    eventually(
        WAIT,
        &what,
        || async move { events(api, reason).len() == n },
    )
    .await;
}

/// The first Event stored for `reason`, once there is one.
async fn first_event(api: &ApiServer, reason: &str) -> Value {
    eventually(
        Duration::from_secs(60),
        &format!("a {reason} Event"),
        || async move { !events(api, reason).is_empty() },
    )
    .await;
    api.events()
        .into_iter()
        .find(|e| e["reason"] == reason)
        .unwrap()
}
