//! After admission, against the stand-in API server: Function protection over HTTPS (`/protect`),
//! an index that lags never denying wrongly, and the audit's Events, one leader at a time, with
//! none lost or duplicated through an outage.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stash_webhook::functions::ClusterSource;
use stash_webhook::metrics::Metrics;
use stash_webhook::references::audit::{self, Settings};
use stash_webhook::references::index::{self, Indexed, ObjectKey, ReferenceIndex};
use stash_webhook::references::protect::Protector;
use stash_webhook::rules::{FailurePolicy, Policy};
use stash_webhook::sources::Source;
use stash_webhook::stash::{Executor, FieldPath, FunctionName, Params, StashKind};
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

/// A cluster: the stand-in, the Function cache, the reference index, and the webhook serving
/// `/protect` with them.
struct Cluster {
    api: ApiServer,
    source: Arc<ClusterSource>,
    index: Arc<ReferenceIndex>,
    webhook: Webhook,
    metrics: Metrics,
}

async fn cluster(prepare: impl FnOnce(&ApiServer)) -> Cluster {
    let api = ApiServer::start().await;
    prepare(&api);
    let metrics = Metrics::default();
    let (source, _watch) = ClusterSource::start(api.client(), metrics.clone());
    let source = Arc::new(source);
    let index = Arc::new(ReferenceIndex::default());
    index::start(api.client(), index.clone(), metrics.clone());
    let protector = Protector::new(
        Some((index.clone(), api.client())),
        FailurePolicy::Deny,
        Duration::from_secs(2),
    );
    let webhook = Webhook::start(
        source.clone(),
        metrics.clone(),
        Options {
            protector,
            ..Options::default()
        },
    )
    .await;
    let (s, i) = (source.clone(), index.clone());
    eventually(WAIT, "the cache and the index to sync", || {
        let (s, i) = (s.clone(), i.clone());
        async move { s.is_ready() && i.is_synced() }
    })
    .await;
    Cluster {
        api,
        source,
        index,
        webhook,
        metrics,
    }
}

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

    // Nothing names it: allowed, from the index alone (no LIST).
    let lists = c.api.counters_for("backupconfigurations").lists();
    let r = c.webhook.protect(delete_of("unused", false)).await;
    assert_eq!(r["allowed"], true);
    assert!(r.get("warnings").is_none(), "{r}");
    assert_eq!(c.api.counters_for("backupconfigurations").lists(), lists);
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

/// A webhook whose Function protection uses `index` (built by the test, not watched) and live
/// LISTs from `api`.
async fn protecting_with(
    api: &ApiServer,
    index: Arc<ReferenceIndex>,
    policy: FailurePolicy,
) -> Webhook {
    let metrics = Metrics::default();
    let (source, _watch) = ClusterSource::start(api.client(), metrics.clone());
    let protector = Protector::new(Some((index, api.client())), policy, Duration::from_secs(2));
    let options = Options {
        protector,
        ..Options::default()
    };
    Webhook::start(Arc::new(source), metrics, options).await
}

fn executor_naming(function: &str) -> Vec<(FieldPath, Executor)> {
    vec![(
        FieldPath::from("spec.hooks.preBackup.executor"),
        Executor::Ref {
            function: FunctionName::Named(function.into()),
            params: Params::Absent,
        },
    )]
}

/// The index may lag either way. It says a Function is in use that no longer is: the live LISTs
/// find no referent and the delete is allowed. It has not seen a new referent (here: it has not
/// synced): the live LISTs find it and the delete is denied.
#[tokio::test]
async fn an_index_that_lags_never_decides_a_denial_alone() {
    let api = ApiServer::start().await;
    api.put_function("f", Some("busybox"));
    api.put_object(
        "restoresessions",
        Some("demo"),
        "new-user",
        json!({"hooks": {"preRestore": {"executor": {"functionName": "f"}}}}),
    );

    // Synced, but holding a referent that is gone, and not the one that is there.
    let stale = Arc::new(ReferenceIndex::default());
    for kind in StashKind::ALL {
        stale.replace_kind(kind, Vec::new());
    }
    let gone = ObjectKey {
        kind: StashKind::BackupConfiguration,
        namespace: Some("demo".into()),
        name: "removed-a-moment-ago".into(),
    };
    stale.apply(
        gone,
        Indexed {
            uid: "u".into(),
            resource_version: "1".into(),
            executors: executor_naming("g"),
        },
    );
    api.put_function("g", Some("busybox"));
    let webhook = protecting_with(&api, stale, FailurePolicy::Deny).await;
    assert_eq!(
        webhook.protect(delete_of("g", false)).await["allowed"],
        true
    );

    // Not synced: whatever it holds, the LISTs decide.
    let unsynced = Arc::new(ReferenceIndex::default());
    let webhook = protecting_with(&api, unsynced, FailurePolicy::Deny).await;
    let r = webhook.protect(delete_of("f", false)).await;
    assert_eq!(r["allowed"], false);
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Function \"f\" is used by 1 hook: demo/RestoreSession/new-user (spec.hooks.preRestore): "),
        "{r}"
    );
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
    eventually(WAIT, "three Warning Events", || async move {
        events(api, audit::NOT_FOUND).len() == 3
    })
    .await;
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
    eventually(WAIT, "three Normal Events", || async move {
        events(api, audit::RESOLVED).len() == 3
    })
    .await;
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
    eventually(WAIT, "the second Warning", || async move {
        events(api, audit::NOT_FOUND).len() == 2
    })
    .await;
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
    eventually(WAIT, "three Warning Events", || async move {
        events(api, audit::NOT_FOUND).len() == 3
    })
    .await;
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
        // Never synced (its watch of backupbatches is refused too): the LISTs decide.
        let webhook = protecting_with(&api, Arc::new(ReferenceIndex::default()), policy).await;
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
