//! KubeStash objects reviewed by the real server over TLS, against a catalog of Addons, Functions
//! and HookTemplates: the verdicts as the API server receives them, and the metrics that count
//! them.

mod support;

use serde_json::{json, Value};
use support::{kubestash_review as review, Webhook};

const CATALOG: &str = r#"
apiVersion: addons.kubestash.com/v1alpha1
kind: Addon
metadata: {name: workload-addon}
spec:
  backupTasks:
  - name: logical-backup
    function: workload-backup
    parameters:
    - {name: paths, required: true}
  - {name: snapshot, function: imageless}
  restoreTasks:
  - {name: logical-backup-restore, function: workload-restore}
---
apiVersion: addons.kubestash.com/v1alpha1
kind: Function
metadata: {name: workload-backup}
spec: {image: "ghcr.io/kubestash/workload:v0.28.0", args: ["--paths=${paths}"]}
---
apiVersion: addons.kubestash.com/v1alpha1
kind: Function
metadata: {name: workload-restore}
spec: {image: "ghcr.io/kubestash/workload:v0.28.0"}
---
apiVersion: addons.kubestash.com/v1alpha1
kind: Function
metadata: {name: imageless}
spec: {}
---
apiVersion: core.kubestash.com/v1alpha1
kind: HookTemplate
metadata: {name: freeze, namespace: demo}
spec:
  executor: {type: Function, function: {name: missing-hook-fn}}
"#;

fn backup(addon: Value, hooks: Value) -> Value {
    json!({"sessions": [{"name": "daily", "addon": addon, "hooks": hooks}]})
}

/// The webhook's answer to `operation` on a BackupConfiguration of `spec` (`old`: the stored one's).
async fn backup_review(
    webhook: &Webhook,
    operation: &str,
    spec: Value,
    old: Option<Value>,
) -> Value {
    webhook
        .review(review("BackupConfiguration", operation, spec, old))
        .await
}

#[tokio::test]
async fn kubestash_objects_are_judged_against_the_catalog() {
    let webhook = Webhook::with_functions(CATALOG).await;

    let valid = backup(
        json!({"name": "workload-addon", "tasks": [{"name": "logical-backup", "params": {"paths": "/data"}}]}),
        json!({}),
    );
    let r = backup_review(&webhook, "CREATE", valid.clone(), None).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r.get("warnings").is_none(), "{r}");

    let broken = backup(
        json!({"name": "workload-addon", "tasks": [{"name": "snapshot"}, {"name": "logical-backup"}]}),
        json!({"preBackup": [{"name": "f", "hookTemplate": {"name": "freeze"}}]}),
    );
    let r = backup_review(&webhook, "CREATE", broken.clone(), None).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(r["status"]["code"], 403);
    assert_eq!(
        r["status"]["message"].as_str().unwrap().lines().collect::<Vec<_>>(),
        [
            "spec.sessions[0].addon.tasks[0].name: backup task \"snapshot\" of Addon \"workload-addon\" runs Function \"imageless\" (functions.addons.kubestash.com), which has no container image (its spec.image is not set): give the Function a valid spec.image (kubectl edit functions.addons.kubestash.com imageless)",
            "spec.sessions[0].addon.tasks[1].params: backup task \"logical-backup\" of Addon \"workload-addon\" requires parameter \"paths\", which is not set and has no default: add params.paths",
            "spec.sessions[0].hooks.preBackup[0].hookTemplate.name: HookTemplate \"demo/freeze\" runs Function \"missing-hook-fn\" (functions.addons.kubestash.com), which is not found: install the addon catalog that provides it (list them with: kubectl get functions.addons.kubestash.com)",
        ]
    );

    // The same problems already stored: an update that leaves them is allowed, with warnings.
    let r = backup_review(&webhook, "UPDATE", broken.clone(), Some(broken)).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(r["warnings"].as_array().unwrap().len(), 3, "{r}");

    let restore =
        json!({"addon": {"name": "workload-addon", "tasks": [{"name": "logical-backup-restore"}]}});
    let r = webhook
        .review(review("RestoreSession", "CREATE", restore, None))
        .await;
    assert_eq!(r["allowed"], true, "{r}");

    let text = webhook.metrics.encode();
    for line in [
        "stash_webhook_reviews_total{kind=\"BackupConfiguration.core.kubestash.com\",operation=\"CREATE\",verdict=\"denied\"} 1",
        "stash_webhook_reviews_total{kind=\"BackupConfiguration.core.kubestash.com\",operation=\"UPDATE\",verdict=\"warned\"} 1",
        "stash_webhook_reviews_total{kind=\"RestoreSession.core.kubestash.com\",operation=\"CREATE\",verdict=\"allowed\"} 1",
        "stash_webhook_cache_size{resource=\"hooktemplates.core.kubestash.com\"} 1",
        "stash_webhook_cache_size{resource=\"functions.addons.kubestash.com\"} 3",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    assert!(
        text.contains("stash_webhook_lookups_total{resource=\"addons.addons.kubestash.com\",source=\"file\",result=\"found\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn without_kubestash_referents_their_names_are_not_checked() {
    // A catalog of Stash Functions only: nothing to check KubeStash names against.
    let webhook = Webhook::with_functions(
        "apiVersion: stash.appscode.com/v1beta1\nkind: Function\nmetadata: {name: f}\nspec: {image: x}\n",
    )
    .await;
    let spec = backup(
        json!({"name": "anything", "tasks": [{"name": "t"}]}),
        json!({"postBackup": [{"name": "h", "hookTemplate": {"name": "h", "namespace": "tools"}}]}),
    );
    let r = backup_review(&webhook, "CREATE", spec, None).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(
        r["warnings"],
        json!([
            "spec.sessions[0].addon.name: Addon \"anything\" not checked: there are no Addons to check it against (the cluster does not serve them: their CRD is not installed; or the catalog and files checked hold none)",
            "spec.sessions[0].hooks.postBackup[0].hookTemplate.name: HookTemplate \"tools/h\" not checked: there are no HookTemplates to check it against (the cluster does not serve them: their CRD is not installed; or the catalog and files checked hold none)",
        ])
    );
}

#[tokio::test]
async fn a_kubestash_object_without_references_is_allowed_and_a_bad_one_gets_a_clear_answer() {
    let webhook = Webhook::with_functions(CATALOG).await;
    for spec in [json!({}), json!({"sessions": "not a list"}), json!(null)] {
        let r = backup_review(&webhook, "CREATE", spec, None).await;
        assert_eq!(r["allowed"], true, "{r}");
    }
    let r = backup_review(
        &webhook,
        "CREATE",
        backup(json!({"name": 7}), json!({})),
        None,
    )
    .await;
    assert_eq!(
        r["status"]["message"],
        "spec.sessions[0].addon.name: must be a string, got a number: name the Addon that backs up this target (list them with: kubectl get addons.addons.kubestash.com)"
    );
}

/// Watched from the stand-in API server, as the server runs in a cluster: reviews at steady state
/// make no API call, and a referent the caches have not seen yet (`kubectl apply -f dir/`) is
/// looked up live rather than denied.
#[tokio::test]
async fn at_steady_state_reviews_make_no_api_call_and_a_new_referent_is_looked_up_live() {
    use std::sync::Arc;

    use stash_webhook::kubestash::referents::{Addon, AddonFunction, HookTemplate};
    use stash_webhook::sources::{ClusterSource, Source};
    use stash_webhook::validator::KubeStashSources;
    use support::apiserver::ApiServer;
    use support::{eventually, Options};

    let api = ApiServer::start().await;
    api.put_object(
        "addons.addons.kubestash.com",
        None,
        "workload-addon",
        json!({"backupTasks": [{"name": "logical-backup", "function": "workload-backup"}]}),
    );
    api.put_object(
        "functions.addons.kubestash.com",
        None,
        "workload-backup",
        json!({"image": "ghcr.io/kubestash/workload:v0.28.0"}),
    );
    api.put_object(
        "hooktemplates.core.kubestash.com",
        Some("demo"),
        "freeze",
        json!({"executor": {"type": "Function", "function": {"name": "workload-backup"}}}),
    );
    let metrics = stash_webhook::metrics::Metrics::default();
    let (addons, _a) = ClusterSource::<Addon>::start(api.client(), metrics.clone());
    let (functions, _f) = ClusterSource::<AddonFunction>::start(api.client(), metrics.clone());
    let (templates, _t) = ClusterSource::<HookTemplate>::start(api.client(), metrics.clone());
    let (addons, functions, templates) =
        (Arc::new(addons), Arc::new(functions), Arc::new(templates));
    let sources = KubeStashSources {
        addons: Some(addons.clone()),
        functions: Some(functions.clone()),
        hook_templates: Some(templates.clone()),
    };
    let (stash_functions, _s) =
        stash_webhook::functions::ClusterSource::start(api.client(), metrics.clone());
    let options = Options {
        kubestash: sources,
        ..Options::default()
    };
    let webhook = Webhook::start(Arc::new(stash_functions), metrics, options).await;
    eventually(
        std::time::Duration::from_secs(20),
        "the KubeStash caches to sync",
        || {
            let ready = addons.is_ready() && functions.is_ready() && templates.is_ready();
            async move { ready }
        },
    )
    .await;

    let spec = backup(
        json!({"name": "workload-addon", "tasks": [{"name": "logical-backup"}]}),
        json!({"preBackup": [{"name": "f", "hookTemplate": {"name": "freeze"}}]}),
    );
    let gets = |plural: &str| api.counters_for(plural).gets();
    for _ in 0..10 {
        let r = backup_review(&webhook, "CREATE", spec.clone(), None).await;
        assert_eq!(r["allowed"], true, "{r}");
    }
    assert_eq!(
        (
            gets("addons.addons.kubestash.com"),
            gets("functions.addons.kubestash.com"),
            gets("hooktemplates.core.kubestash.com")
        ),
        (0, 0, 0),
        "cached, usable referents need no GET"
    );
    let text = webhook.metrics.encode();
    for line in [
        "stash_webhook_lookups_total{resource=\"addons.addons.kubestash.com\",source=\"cache\",result=\"found\"} 10",
        "stash_webhook_lookups_total{resource=\"functions.addons.kubestash.com\",source=\"cache\",result=\"found\"} 10",
        "stash_webhook_lookups_total{resource=\"hooktemplates.core.kubestash.com\",source=\"cache\",result=\"found\"} 10",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }

    // An UPDATE that fixes a typo: the stored object's Addon is not looked up, only the new one.
    let typo = backup(
        json!({"name": "workload-adon", "tasks": [{"name": "logical-backup"}]}),
        json!({"preBackup": [{"name": "f", "hookTemplate": {"name": "freeze"}}]}),
    );
    let r = backup_review(&webhook, "UPDATE", spec.clone(), Some(typo)).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(gets("addons.addons.kubestash.com"), 0);

    // Created a moment before the object that names it: the cache may not have it yet, and a
    // live GET finds it, so the object is allowed whatever the watch has delivered.
    api.put_object(
        "addons.addons.kubestash.com",
        None,
        "fresh-addon",
        json!({"backupTasks": [{"name": "b", "function": "workload-backup"}]}),
    );
    let fresh = backup(
        json!({"name": "fresh-addon", "tasks": [{"name": "b"}]}),
        json!({}),
    );
    let r = backup_review(&webhook, "CREATE", fresh, None).await;
    assert_eq!(r["allowed"], true, "{r}");

    // A denial rests on a live answer: a missing Addon is looked up before it is denied.
    let before = gets("addons.addons.kubestash.com");
    let missing = backup(
        json!({"name": "ghost-addon", "tasks": [{"name": "b"}]}),
        json!({}),
    );
    let r = backup_review(&webhook, "CREATE", missing, None).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(gets("addons.addons.kubestash.com") > before);
}
