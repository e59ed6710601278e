//! The stand-in API server (`tests/support/apiserver.rs`) answers the real clients the product
//! uses as kube-apiserver would: `kube::Api<DynamicObject>` and `kube::runtime::watcher` for the
//! hook kinds, `kube::runtime::events::Recorder` for Events, and `kube-lease-manager` for leader
//! election over a Lease.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{
    Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::Resource as _;
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use serde_json::{json, Value};
use support::apiserver::{ApiServer, HOOK_KINDS};
use support::eventually;

const WAIT: Duration = Duration::from_secs(10);

fn resource(plural: &str) -> ApiResource {
    let kind = match plural {
        "backupconfigurations" => "BackupConfiguration",
        "restoresessions" => "RestoreSession",
        "backupbatches" => "BackupBatch",
        "restorebatches" => "RestoreBatch",
        "backupblueprints" => "BackupBlueprint",
        other => panic!("not a hook kind: {other}"),
    };
    ApiResource {
        group: "stash.appscode.com".into(),
        version: "v1beta1".into(),
        api_version: "stash.appscode.com/v1beta1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn namespaced(plural: &str) -> bool {
    plural != "backupblueprints"
}

/// The status of a refused call.
fn refusal<T: std::fmt::Debug>(result: kube::Result<T>) -> Box<kube::core::Status> {
    match result {
        Err(kube::Error::Api(status)) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// What a `watcher` reports, as `init-done`, `apply NAME GENERATION`, `delete NAME`.
fn record_watcher(api: Api<DynamicObject>, config: watcher::Config) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut stream = watcher(api, config).boxed();
        while let Some(event) = stream.next().await {
            let line = match event {
                Ok(watcher::Event::Apply(o)) => {
                    format!(
                        "apply {} {}",
                        o.metadata.name.unwrap_or_default(),
                        o.metadata.generation.unwrap_or(0)
                    )
                }
                Ok(watcher::Event::InitApply(o)) => {
                    format!("init {}", o.metadata.name.unwrap_or_default())
                }
                Ok(watcher::Event::Delete(o)) => {
                    format!("delete {}", o.metadata.name.unwrap_or_default())
                }
                Ok(watcher::Event::Init) => "init".to_owned(),
                Ok(watcher::Event::InitDone) => "init-done".to_owned(),
                Err(e) => format!("error {e}"),
            };
            log.lock().unwrap().push(line);
        }
    });
    seen
}

fn has(seen: &Arc<Mutex<Vec<String>>>, line: &str) -> bool {
    seen.lock().unwrap().iter().any(|l| l == line)
}

#[tokio::test]
async fn every_hook_kind_is_listed_and_got_with_the_metadata_a_server_sets() {
    let api = ApiServer::start().await;
    let client = api.client();
    for plural in HOOK_KINDS {
        let (first, second) = if namespaced(plural) {
            (Some("demo"), Some("prod"))
        } else {
            (None, None)
        };
        let uid_a = api.put_object(
            plural,
            first,
            &format!("{plural}-a"),
            json!({"paused": false}),
        );
        let uid_b = api.put_object(
            plural,
            second,
            &format!("{plural}-b"),
            json!({"paused": true}),
        );
        assert_ne!(uid_a, uid_b);

        let all: Api<DynamicObject> = Api::all_with(client.clone(), &resource(plural));
        let list = all.list(&ListParams::default()).await.unwrap();
        assert_eq!(
            list.metadata.resource_version,
            Some(api.resource_version().to_string())
        );
        assert_eq!(list.metadata.continue_.as_deref(), Some(""));
        let names: Vec<_> = list
            .items
            .iter()
            .map(|o| o.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, [format!("{plural}-a"), format!("{plural}-b")]);
        let a = &list.items[0];
        assert_eq!(a.metadata.uid.as_deref(), Some(uid_a.as_str()));
        assert_eq!(a.metadata.namespace.as_deref(), first);
        assert!(a.metadata.creation_timestamp.is_some());
        assert_eq!(a.metadata.generation, Some(1));
        assert!(
            a.metadata
                .resource_version
                .as_deref()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                > 200
        );
        assert_eq!(a.types.as_ref().unwrap().kind, resource(plural).kind);
        assert_eq!(a.data["spec"], json!({"paused": false}));

        let one: Api<DynamicObject> = match first {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource(plural)),
            None => Api::all_with(client.clone(), &resource(plural)),
        };
        let got = one.get(&format!("{plural}-a")).await.unwrap();
        assert_eq!(got.metadata.uid.as_deref(), Some(uid_a.as_str()));
        let missing = refusal(one.get("ghost").await);
        assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
        assert_eq!(
            missing.message,
            format!("{plural}.stash.appscode.com \"ghost\" not found")
        );

        if let Some(ns) = first {
            let in_demo = one.list(&ListParams::default()).await.unwrap();
            assert_eq!(in_demo.items.len(), 1, "only {ns}'s");
        }
        assert_eq!(api.counters_for(plural).gets(), 2);
        assert_eq!(
            api.counters_for(plural).lists(),
            if first.is_some() { 2 } else { 1 }
        );
    }
    assert_eq!(api.counters().lists(), 0, "Functions are counted apart");
}

#[tokio::test]
async fn the_watcher_sees_each_kind_added_modified_and_deleted_and_nothing_else() {
    let api = ApiServer::start().await;
    let client = api.client();
    api.put_object(
        "backupconfigurations",
        Some("demo"),
        "before-start",
        json!({}),
    );
    let logs: Vec<_> = HOOK_KINDS
        .iter()
        .map(|plural| {
            record_watcher(
                Api::all_with(client.clone(), &resource(plural)),
                watcher::Config::default(),
            )
        })
        .collect();
    for log in &logs {
        eventually(WAIT, "every watcher to list", || {
            let done = has(log, "init-done");
            async move { done }
        })
        .await;
    }
    assert!(has(&logs[0], "init before-start"));

    for plural in HOOK_KINDS {
        let ns = namespaced(plural).then_some("demo");
        let name = format!("{plural}-x");
        api.put_object(plural, ns, &name, json!({"target": 1}));
        api.put_object(plural, ns, &name, json!({"target": 2}));
        assert!(api.delete_object(plural, ns, &name));
    }
    for (plural, log) in HOOK_KINDS.iter().zip(&logs) {
        eventually(
            WAIT,
            &format!("the {plural} watcher to see the deletion"),
            || {
                let done = has(log, &format!("delete {plural}-x"));
                async move { done }
            },
        )
        .await;
        let lines = log.lock().unwrap().clone();
        let changes: Vec<&String> = lines
            .iter()
            .skip_while(|l| *l != "init-done")
            .skip(1)
            .collect();
        assert_eq!(
            changes,
            [
                &format!("apply {plural}-x 1"),
                &format!("apply {plural}-x 2"),
                &format!("delete {plural}-x")
            ],
            "only its own kind's changes, in order"
        );
        assert_eq!(api.counters_for(plural).lists(), 1);
        assert!(api.counters_for(plural).watches() >= 1);
    }
}

/// The raw watch protocol under the watcher: typed events from a resourceVersion, bookmarks, and
/// a namespaced watch that sees only its namespace.
#[tokio::test]
async fn a_watch_streams_typed_events_and_bookmarks_from_a_resource_version() {
    let api = ApiServer::start().await;
    let ar = resource("restoresessions");
    let demo: Api<DynamicObject> = Api::namespaced_with(api.client(), "demo", &ar);
    let rv = demo
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = demo
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();

    api.put_object("restoresessions", Some("prod"), "elsewhere", json!({}));
    api.put_object(
        "backupconfigurations",
        Some("demo"),
        "other-kind",
        json!({}),
    );
    api.put_object("restoresessions", Some("demo"), "r", json!({"n": 1}));
    api.put_object("restoresessions", Some("demo"), "r", json!({"n": 2}));
    api.delete_object("restoresessions", Some("demo"), "r");
    let mut seen = Vec::new();
    let mut bookmarks = 0;
    let deadline = Instant::now() + WAIT;
    while seen.len() < 3 && Instant::now() < deadline {
        match tokio::time::timeout(WAIT, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            WatchEvent::Added(o) => seen.push(format!("ADDED {}", o.metadata.name.unwrap())),
            WatchEvent::Modified(o) => seen.push(format!(
                "MODIFIED {} {}",
                o.metadata.name.unwrap(),
                o.data["spec"]["n"]
            )),
            WatchEvent::Deleted(o) => seen.push(format!("DELETED {}", o.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => bookmarks += 1,
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(seen, ["ADDED r", "MODIFIED r 2", "DELETED r"]);
    assert!(bookmarks >= 1, "a bookmark follows the replay");
    // The resourceVersion is shared by every kind, as etcd's is.
    assert_eq!(api.resource_version(), rv.parse::<u64>().unwrap() + 5);
}

#[tokio::test]
async fn lists_paginate_over_a_consistent_snapshot_and_the_watcher_pages_through() {
    let api = ApiServer::start().await;
    let ar = resource("backupbatches");
    for (ns, name) in [
        ("a", "one"),
        ("a", "two"),
        ("b", "three"),
        ("b", "four"),
        ("c", "five"),
    ] {
        api.put_object("backupbatches", Some(ns), name, json!({}));
    }
    let all: Api<DynamicObject> = Api::all_with(api.client(), &ar);
    let first = all.list(&ListParams::default().limit(2)).await.unwrap();
    let names = |l: &kube::core::ObjectList<DynamicObject>| -> Vec<String> {
        l.items
            .iter()
            .map(|o| o.metadata.name.clone().unwrap())
            .collect()
    };
    assert_eq!(names(&first), ["one", "two"], "etcd order: namespace/name");
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let token = first.metadata.continue_.clone().unwrap();
    // Changes after the first page are not in the next pages: they are the same snapshot.
    api.put_object("backupbatches", Some("b"), "added-later", json!({}));
    api.delete_object("backupbatches", Some("c"), "five");
    let second = all
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(&second), ["four", "three"]);
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
    let token = second.metadata.continue_.clone().unwrap();
    let third = all
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(&third), ["five"]);
    assert_eq!(third.metadata.continue_.as_deref(), Some(""));

    // A compacted snapshot's token answers 410 Expired.
    api.compact_and_drop_watches();
    let expired = refusal(
        all.list(&ListParams::default().limit(2).continue_token(&token))
            .await,
    );
    assert_eq!((expired.code, expired.reason.as_str()), (410, "Expired"));

    // kube's watcher lists in pages (page_size 500 by default; 2 here) before it watches.
    let lists = api.counters_for("backupbatches").lists();
    let log = record_watcher(all.clone(), watcher::Config::default().page_size(2));
    eventually(WAIT, "the paged initial list", || {
        let done = has(&log, "init-done");
        async move { done }
    })
    .await;
    let inits = log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("init "))
        .count();
    assert_eq!(inits, 5, "{:?}", log.lock().unwrap());
    assert_eq!(api.counters_for("backupbatches").lists() - lists, 3);
}

#[tokio::test]
async fn after_410_gone_the_watcher_relists_and_sees_what_changed() {
    let api = ApiServer::start().await;
    api.put_object("backupblueprints", None, "bp-1", json!({}));
    let log = record_watcher(
        Api::all_with(api.client(), &resource("backupblueprints")),
        watcher::Config::default(),
    );
    eventually(WAIT, "the first list", || {
        let done = has(&log, "init-done");
        async move { done }
    })
    .await;
    api.compact_and_drop_watches();
    api.put_object("backupblueprints", None, "bp-2", json!({}));
    eventually(WAIT, "a re-list that finds bp-2", || {
        let found = has(&log, "init bp-2") || has(&log, "apply bp-2 1");
        async move { found }
    })
    .await;
    assert!(api.counters_for("backupblueprints").lists() >= 2);
}

#[tokio::test]
async fn one_resource_can_be_forbidden_slow_or_failing_while_the_rest_works() {
    let api = ApiServer::start().await;
    let client = api.client();
    api.put_object("backupconfigurations", Some("demo"), "bc", json!({}));
    api.set_forbidden_resource("backupconfigurations", true);
    let bcs: Api<DynamicObject> = Api::all_with(client.clone(), &resource("backupconfigurations"));
    let refused = refusal(bcs.list(&ListParams::default()).await);
    assert_eq!((refused.code, refused.reason.as_str()), (403, "Forbidden"));
    assert_eq!(refused.message, "backupconfigurations.stash.appscode.com is forbidden: User \"system:serviceaccount:stash-system:stash-webhook\" cannot list resource \"backupconfigurations\" in API group \"stash.appscode.com\" at the cluster scope");
    let in_demo: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "demo", &resource("backupconfigurations"));
    let refused = refusal(in_demo.get("bc").await);
    assert_eq!(refused.message, "backupconfigurations.stash.appscode.com \"bc\" is forbidden: User \"system:serviceaccount:stash-system:stash-webhook\" cannot get resource \"backupconfigurations\" in API group \"stash.appscode.com\" in the namespace \"demo\"");
    let rss: Api<DynamicObject> = Api::all_with(client.clone(), &resource("restoresessions"));
    rss.list(&ListParams::default()).await.unwrap();
    api.set_forbidden_resource("backupconfigurations", false);
    bcs.list(&ListParams::default()).await.unwrap();

    // A slow LIST of a hook kind; GETs are not slowed by it.
    api.set_list_delay(Duration::from_millis(400));
    let started = Instant::now();
    rss.list(&ListParams::default()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400));
    api.set_list_delay(Duration::ZERO);

    // Writes of Events fail with 500 while reading them works.
    api.set_writes_fail("events", Some(500));
    let events: Api<K8sEvent> = Api::namespaced(client.clone(), "demo");
    let refused = refusal(
        events
            .create(&PostParams::default(), &valid_event("e1"))
            .await,
    );
    assert_eq!(
        (refused.code, refused.reason.as_str()),
        (500, "InternalError")
    );
    events.list(&ListParams::default()).await.unwrap();
    api.set_writes_fail("events", None);
    events
        .create(&PostParams::default(), &valid_event("e1"))
        .await
        .unwrap();

    // Everything forbidden.
    api.set_forbidden(true);
    let leases: Api<Lease> = Api::namespaced(client, "stash-system");
    let refused = refusal(leases.get("lock").await);
    assert_eq!(refused.message, "leases.coordination.k8s.io \"lock\" is forbidden: User \"system:serviceaccount:stash-system:stash-webhook\" cannot get resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"stash-system\"");
    let refused = refusal(
        events
            .create(&PostParams::default(), &valid_event("e2"))
            .await,
    );
    assert!(
        refused
            .message
            .starts_with("events.events.k8s.io is forbidden: User "),
        "{}",
        refused.message
    );
}

fn valid_event(name: &str) -> K8sEvent {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "demo"},
        "eventTime": "2026-11-24T22:36:49.000000Z", "reportingController": "stash-webhook",
        "reportingInstance": "pod-a", "action": "Audit", "reason": "MissingFunction", "type": "Warning",
        "regarding": {"kind": "BackupConfiguration", "namespace": "demo", "name": "bc"}
    }))
    .unwrap()
}

fn audit_event() -> Event {
    Event {
        type_: EventType::Warning,
        reason: "MissingFunction".into(),
        note: Some("Function \"ghost\" not found".into()),
        action: "Audit".into(),
        secondary: None,
    }
}

fn recorder(api: &ApiServer) -> Recorder {
    Recorder::new(
        api.client(),
        Reporter {
            controller: "stash-webhook".into(),
            instance: Some("pod-a".into()),
        },
    )
}

#[tokio::test]
async fn the_recorder_creates_an_event_then_patches_its_series() {
    let api = ApiServer::start().await;
    let client = api.client();
    api.put_object("backupconfigurations", Some("demo"), "nightly", json!({}));
    api.put_object("backupblueprints", None, "blueprint", json!({}));
    let bc = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "demo",
        &resource("backupconfigurations"),
    )
    .get("nightly")
    .await
    .unwrap();
    let recorder = recorder(&api);
    let reference = bc.object_ref(&resource("backupconfigurations"));
    recorder.publish(&audit_event(), &reference).await.unwrap();
    recorder.publish(&audit_event(), &reference).await.unwrap();
    let counters = api.counters_for("events");
    assert_eq!((counters.creates(), counters.patches()), (1, 1));
    let events = api.events();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event["metadata"]["namespace"], "demo");
    assert_eq!(event["series"]["count"], 2);
    assert_eq!(event["regarding"]["name"], "nightly");
    assert_eq!(event["regarding"]["uid"], bc.metadata.uid.clone().unwrap());
    assert_eq!(event["reportingController"], "stash-webhook");
    assert_eq!(event["reportingInstance"], "pod-a");
    assert_eq!(event["note"], "Function \"ghost\" not found");

    // A cluster-scoped object's Events go to `default`.
    let bp = Api::<DynamicObject>::all_with(client.clone(), &resource("backupblueprints"))
        .get("blueprint")
        .await
        .unwrap();
    recorder
        .publish(
            &audit_event(),
            &bp.object_ref(&resource("backupblueprints")),
        )
        .await
        .unwrap();
    let in_default = Api::<K8sEvent>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(in_default.items.len(), 1);
    assert_eq!(
        in_default.items[0]
            .regarding
            .as_ref()
            .unwrap()
            .name
            .as_deref(),
        Some("blueprint")
    );
    let everywhere = Api::<K8sEvent>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(everywhere.items.len(), 2);
}

#[tokio::test]
async fn event_writes_through_failures_and_an_outage_lose_or_duplicate_nothing() {
    let api = ApiServer::start().await;
    api.put_object("restoresessions", Some("demo"), "restore", json!({}));
    let rs =
        Api::<DynamicObject>::namespaced_with(api.client(), "demo", &resource("restoresessions"))
            .get("restore")
            .await
            .unwrap();
    let reference = rs.object_ref(&resource("restoresessions"));
    let recorder = recorder(&api);

    api.set_writes_fail("events", Some(500));
    let refused = refusal(recorder.publish(&audit_event(), &reference).await);
    assert_eq!(refused.code, 500);
    assert!(api.events().is_empty());
    api.set_writes_fail("events", None);
    recorder.publish(&audit_event(), &reference).await.unwrap();
    assert_eq!(api.events().len(), 1);

    // An outage: the connection is refused; after it the Recorder patches the same Event.
    api.stop().await;
    assert!(recorder.publish(&audit_event(), &reference).await.is_err());
    api.restart().await;
    recorder.publish(&audit_event(), &reference).await.unwrap();
    let events = api.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["series"]["count"], 2);

    // 503: kube's client retries by itself until the server heals; one write lands.
    api.set_writes_fail("events", Some(503));
    let patches = api.counters_for("events").patches();
    let publishing = {
        let recorder = recorder.clone();
        let reference = reference.clone();
        tokio::spawn(async move { recorder.publish(&audit_event(), &reference).await })
    };
    eventually(WAIT, "kube's client to retry the 503", || {
        let retried = api.counters_for("events").patches() >= patches + 2;
        async move { retried }
    })
    .await;
    api.set_writes_fail("events", None);
    tokio::time::timeout(Duration::from_secs(30), publishing)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let events = api.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["series"]["count"], 3);
}

#[tokio::test]
async fn events_are_validated_and_named_as_kube_apiserver_does() {
    let api = ApiServer::start().await;
    let events: Api<K8sEvent> = Api::namespaced(api.client(), "demo");
    events
        .create(&PostParams::default(), &valid_event("e1"))
        .await
        .unwrap();
    let refused = refusal(
        events
            .create(&PostParams::default(), &valid_event("e1"))
            .await,
    );
    assert_eq!(
        (refused.code, refused.reason.as_str()),
        (409, "AlreadyExists")
    );
    assert_eq!(
        refused.message,
        "events.events.k8s.io \"e1\" already exists"
    );
    let refused = refusal(
        events
            .patch(
                "ghost",
                &PatchParams::default(),
                &Patch::Merge(json!({"note": "x"})),
            )
            .await,
    );
    assert_eq!(
        (refused.code, refused.message.as_str()),
        (404, "events.events.k8s.io \"ghost\" not found")
    );

    let mut wrong = valid_event("e2");
    wrong.event_time = None;
    wrong.regarding.as_mut().unwrap().namespace = Some("prod".into());
    let refused = refusal(events.create(&PostParams::default(), &wrong).await);
    assert_eq!((refused.code, refused.reason.as_str()), (422, "Invalid"));
    assert_eq!(refused.message, "Event.events.k8s.io \"e2\" is invalid: [eventTime: Required value, regarding.namespace: Invalid value: \"prod\": does not match event.namespace]");
    let mut elsewhere = valid_event("e3");
    elsewhere.metadata.namespace = Some("prod".into());
    let refused = refusal(events.create(&PostParams::default(), &elsewhere).await);
    assert_eq!((refused.code, refused.reason.as_str()), (400, "BadRequest"));
    assert_eq!(api.events().len(), 1);
}

fn lease_apply(holder: &str) -> Patch<Value> {
    Patch::Apply(
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {"holderIdentity": holder}}),
    )
}

#[tokio::test]
async fn leases_answer_gets_writes_and_apply_conflicts_as_kube_apiserver_does() {
    let api = ApiServer::start().await;
    let leases: Api<Lease> = Api::namespaced(api.client(), "stash-system");

    let missing = refusal(leases.get("lock").await);
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(
        missing.message,
        "leases.coordination.k8s.io \"lock\" not found"
    );
    let details = missing.details.unwrap();
    assert_eq!(
        (
            details.name.as_str(),
            details.group.as_str(),
            details.kind.as_str()
        ),
        ("lock", "coordination.k8s.io", "leases")
    );

    let mut lease: Lease = serde_json::from_value(json!({"metadata": {"name": "lock"}})).unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    assert_eq!(created.metadata.namespace.as_deref(), Some("stash-system"));
    let refused = refusal(leases.create(&PostParams::default(), &lease).await);
    assert_eq!(
        (refused.code, refused.reason.as_str()),
        (409, "AlreadyExists")
    );

    // Server-side apply: the first manager takes holderIdentity; another manager setting a
    // different value conflicts; the same value is shared; force takes it over.
    leases
        .patch("lock", &PatchParams::apply("alpha"), &lease_apply("alpha"))
        .await
        .unwrap();
    let refused = refusal(
        leases
            .patch("lock", &PatchParams::apply("beta"), &lease_apply("beta"))
            .await,
    );
    assert_eq!((refused.code, refused.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        refused.message,
        "Apply failed with 1 conflict: conflict with \"alpha\": .spec.holderIdentity"
    );
    let cause = &refused.details.unwrap().causes[0];
    assert_eq!(
        (cause.reason.as_str(), cause.field.as_str()),
        ("FieldManagerConflict", ".spec.holderIdentity")
    );
    leases
        .patch("lock", &PatchParams::apply("beta"), &lease_apply("alpha"))
        .await
        .unwrap();
    let taken = leases
        .patch(
            "lock",
            &PatchParams::apply("beta").force(),
            &lease_apply("beta"),
        )
        .await
        .unwrap();
    assert_eq!(taken.spec.unwrap().holder_identity.as_deref(), Some("beta"));

    // An Update (strategic merge patch) owns what it changes: an apply must not undo it.
    let strategic = Patch::Strategic(json!({"spec": {"leaseDurationSeconds": 9}}));
    leases
        .patch(
            "lock",
            &PatchParams {
                field_manager: Some("gamma".into()),
                ..PatchParams::default()
            },
            &strategic,
        )
        .await
        .unwrap();
    let apply_duration = Patch::Apply(
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {"holderIdentity": "beta", "leaseDurationSeconds": 5}}),
    );
    let refused = refusal(
        leases
            .patch("lock", &PatchParams::apply("beta"), &apply_duration)
            .await,
    );
    assert!(refused.message.starts_with("Apply failed with 1 conflict: conflict with \"gamma\" using coordination.k8s.io/v1 at "), "{}", refused.message);
    assert!(
        refused.message.ends_with(": .spec.leaseDurationSeconds"),
        "{}",
        refused.message
    );

    // Null removes a field, and with it its ownership: the next apply takes it without conflict.
    let release = Patch::Strategic(json!({"spec": {"holderIdentity": null}}));
    leases
        .patch("lock", &PatchParams::default(), &release)
        .await
        .unwrap();
    assert!(api.lease("stash-system", "lock").unwrap()["spec"]
        .get("holderIdentity")
        .is_none());
    leases
        .patch("lock", &PatchParams::apply("delta"), &lease_apply("delta"))
        .await
        .unwrap();
    let stored = api.lease("stash-system", "lock").unwrap();
    assert_eq!(stored["spec"]["holderIdentity"], "delta");
    let managers: Vec<&str> = stored["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert!(
        managers.contains(&"delta") && managers.contains(&"gamma"),
        "{managers:?}"
    );

    // Apply without fieldManager: 422, as kube-apiserver validates PatchOptions.
    let refused = refusal(
        leases
            .patch("lock", &PatchParams::default(), &lease_apply("x"))
            .await,
    );
    assert_eq!((refused.code, refused.reason.as_str()), (422, "Invalid"));
    assert_eq!(refused.message, "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch");

    // PUT from a stale resourceVersion.
    lease.metadata.resource_version = created.metadata.resource_version;
    let refused = refusal(leases.replace("lock", &PostParams::default(), &lease).await);
    assert_eq!((refused.code, refused.reason.as_str()), (409, "Conflict"));
    assert_eq!(refused.message, "Operation cannot be fulfilled on leases.coordination.k8s.io \"lock\": the object has been modified; please apply your changes to the latest version and try again");
    let current = leases.get("lock").await.unwrap();
    let replaced = leases
        .replace("lock", &PostParams::default(), &current)
        .await
        .unwrap();
    assert!(replaced.metadata.resource_version > current.metadata.resource_version);
}

/// Two replicas elect one leader through kube-lease-manager; when the leader dies without
/// releasing the Lease, the other takes over once the Lease expires.
#[tokio::test]
async fn one_of_two_lease_managers_leads_and_the_other_takes_over_when_it_dies() {
    const DURATION: u64 = 3;
    let api = ApiServer::start().await;
    let manager = |identity: &str| {
        LeaseManagerBuilder::new(api.client(), "stash-webhook-audit")
            .with_namespace("stash-system")
            .with_parameters(LeaseParams::new(identity, DURATION, 1))
            .build()
    };
    let (a, b) = (
        manager("replica-a").await.unwrap(),
        manager("replica-b").await.unwrap(),
    );
    let (rx_a, task_a) = a.watch().await;
    let (rx_b, task_b) = b.watch().await;
    let leaders = || (*rx_a.borrow(), *rx_b.borrow());
    eventually(WAIT, "one replica to lead", || {
        let (a, b) = leaders();
        async move { a || b }
    })
    .await;
    // Through several renewals, exactly one leads, and it is the Lease's holder.
    let leader = leaders();
    let watch_until = Instant::now() + Duration::from_secs(DURATION + 2);
    while Instant::now() < watch_until {
        assert_eq!(
            leaders(),
            leader,
            "the leadership must not move nor be shared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(leader.0 != leader.1);
    let (dead, dead_task, heir, heir_rx, heir_task) = if leader.0 {
        ("replica-a", task_a, "replica-b", rx_b, task_b)
    } else {
        ("replica-b", task_b, "replica-a", rx_a, task_a)
    };
    let lease = api.lease("stash-system", "stash-webhook-audit").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], dead);
    assert_eq!(lease["spec"]["leaseDurationSeconds"], DURATION);

    // The leader dies: it stops renewing and never releases.
    dead_task.abort();
    let died = Instant::now();
    eventually(
        Duration::from_secs(DURATION + 7),
        "the other replica to take over",
        || {
            let leads = *heir_rx.borrow();
            async move { leads }
        },
    )
    .await;
    let took = died.elapsed();
    assert!(
        took < Duration::from_secs(DURATION + 3),
        "took over after {took:?}"
    );
    let lease = api.lease("stash-system", "stash-webhook-audit").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], heir);
    assert_eq!(lease["spec"]["leaseTransitions"], 2);
    heir_task.abort();
}

/// A replica that shuts down releases the Lease (kube-lease-manager's strategic merge patch of
/// nulls), and the other replica then takes it.
#[tokio::test]
async fn a_lease_released_on_shutdown_goes_to_the_other_replica() {
    let api = ApiServer::start().await;
    let manager = |identity: &str| {
        LeaseManagerBuilder::new(api.client(), "audit")
            .with_namespace("default")
            .with_parameters(LeaseParams::new(identity, 3, 1))
            .build()
    };
    let (rx_first, first) = manager("first").await.unwrap().watch().await;
    eventually(WAIT, "the first replica to lead", || {
        let leads = *rx_first.borrow();
        async move { leads }
    })
    .await;
    let (rx_second, second) = manager("second").await.unwrap().watch().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!*rx_second.borrow());
    // Dropping the receiver asks the manager to release and stop.
    drop(rx_first);
    tokio::time::timeout(WAIT, first)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let released = api.lease("default", "audit").unwrap();
    assert!(
        released["spec"].get("holderIdentity").is_none(),
        "{released}"
    );
    eventually(WAIT, "the second replica to lead", || {
        let leads = *rx_second.borrow();
        async move { leads }
    })
    .await;
    assert_eq!(
        api.lease("default", "audit").unwrap()["spec"]["holderIdentity"],
        "second"
    );
    second.abort();
}
