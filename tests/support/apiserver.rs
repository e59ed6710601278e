//! A stand-in Kubernetes API server, spoken to by a real `kube::Client` over HTTP on loopback.
//!
//! It serves, the way kube-apiserver does (bodies follow `tests/fixtures/api/`, recorded from a
//! real kube-apiserver):
//! - Stash `functions`, `tasks` and the five hook-bearing kinds (`stash.appscode.com/v1beta1`): GET, LIST
//!   (cluster-wide and per namespace, `limit`/`continue` pagination over a consistent snapshot,
//!   label and field selectors), WATCH (newline-delimited events from a resourceVersion,
//!   BOOKMARKs, and an `ERROR` event carrying a 410 `Status`, sent with HTTP 200, for a compacted
//!   resourceVersion), and the writes below;
//! - `events.k8s.io/v1` Events: POST, PUT, merge PATCH, LIST, validated as kube-apiserver does;
//! - `coordination.k8s.io/v1` Leases: GET, POST, PUT (409 on a stale resourceVersion), merge and
//!   strategic merge PATCH, and server-side apply with field-manager conflicts (409).
//!
//! One resourceVersion counter serves every resource, as etcd's does; each watch sees only its
//! own resource's changes. Faults: 403 for everything or one resource, failing writes (429, 500,
//! 503, 504) for one resource, delays, and an outage (`stop`/`restart`: connections refused).
//!
//! Simplified: field ownership is tracked per field of `spec` (of the top level for an Event),
//! not per nested field; a strategic merge patch is applied as a JSON merge patch (no list merge
//! keys, no `$patch` directives); JSON patch is not served (415); a LIST with
//! `resourceVersionMatch=Exact` of an older resourceVersion answers 410; set-based label
//! selectors are refused (400); WATCH applies selectors to each event's object.

#![allow(dead_code)]
// Handlers answer a refusal as the `Response` a kube-apiserver sends; it is the error type here.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

/// The user every 403 names (`tests/fixtures/api/get-forbidden.json`).
const USER: &str = "system:serviceaccount:stash-system:stash-webhook";
const STASH: &str = "stash.appscode.com";
/// The field manager of objects the test helpers put, as in the recorded fixtures.
const HELPER_MANAGER: &str = "kubectl-client-side-apply";

/// The plural names of the five kinds that carry hooks.
pub const HOOK_KINDS: [&str; 5] = [
    "backupconfigurations",
    "restoresessions",
    "backupbatches",
    "restorebatches",
    "backupblueprints",
];

/// A resource this server serves.
struct Kind {
    /// What the test helpers call it: the plural for Stash's kinds and the built-in ones
    /// (`functions`, `events`), the plural and group for KubeStash's, whose plurals are Stash's too
    /// (`functions.addons.kubestash.com`, `backupconfigurations.core.kubestash.com`).
    name: &'static str,
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    /// A custom resource (CRD): it has `metadata.generation`, needs a resourceVersion to be PUT,
    /// and refuses strategic merge patches (415), as kube-apiserver does for CRDs.
    custom: bool,
}

const fn stash(plural: &'static str, kind: &'static str, namespaced: bool) -> Kind {
    Kind {
        name: plural,
        group: STASH,
        version: "v1beta1",
        plural,
        kind,
        namespaced,
        custom: true,
    }
}

/// A KubeStash kind (kubestash/apimachinery `apis/{core,addons}/v1alpha1`), known to the helpers
/// by its `plural.group`.
const fn kubestash(
    name: &'static str,
    group: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
) -> Kind {
    Kind {
        name,
        group,
        version: "v1alpha1",
        plural,
        kind,
        namespaced,
        custom: true,
    }
}

pub const KUBESTASH_CORE: &str = "core.kubestash.com";
pub const KUBESTASH_ADDONS: &str = "addons.kubestash.com";

static KINDS: [Kind; 16] = [
    stash("functions", "Function", false),
    stash("tasks", "Task", false),
    stash("backupconfigurations", "BackupConfiguration", true),
    stash("restoresessions", "RestoreSession", true),
    stash("backupbatches", "BackupBatch", true),
    stash("restorebatches", "RestoreBatch", true),
    stash("backupblueprints", "BackupBlueprint", false),
    kubestash(
        "addons.addons.kubestash.com",
        KUBESTASH_ADDONS,
        "addons",
        "Addon",
        false,
    ),
    kubestash(
        "functions.addons.kubestash.com",
        KUBESTASH_ADDONS,
        "functions",
        "Function",
        false,
    ),
    kubestash(
        "hooktemplates.core.kubestash.com",
        KUBESTASH_CORE,
        "hooktemplates",
        "HookTemplate",
        true,
    ),
    kubestash(
        "backupconfigurations.core.kubestash.com",
        KUBESTASH_CORE,
        "backupconfigurations",
        "BackupConfiguration",
        true,
    ),
    kubestash(
        "restoresessions.core.kubestash.com",
        KUBESTASH_CORE,
        "restoresessions",
        "RestoreSession",
        true,
    ),
    kubestash(
        "backupbatches.core.kubestash.com",
        KUBESTASH_CORE,
        "backupbatches",
        "BackupBatch",
        true,
    ),
    kubestash(
        "backupblueprints.core.kubestash.com",
        KUBESTASH_CORE,
        "backupblueprints",
        "BackupBlueprint",
        true,
    ),
    Kind {
        name: "events",
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        custom: false,
    },
    Kind {
        name: "leases",
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        kind: "Lease",
        namespaced: true,
        custom: false,
    },
];

impl Kind {
    /// The resource served at `/apis/{group}/{version}/.../{plural}`.
    fn at(group: &str, version: &str, plural: &str) -> Option<&'static Kind> {
        KINDS
            .iter()
            .find(|k| k.plural == plural && k.group == group && k.version == version)
    }

    /// A resource a test helper names (see [`Kind::name`]): an unknown one is a bug in the test.
    fn known(name: &str) -> &'static Kind {
        KINDS
            .iter()
            .find(|k| k.name == name)
            .unwrap_or_else(|| panic!("the stand-in API server does not serve {name:?}"))
    }

    fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    /// `functions.stash.appscode.com`, as kube-apiserver's messages name a resource.
    fn resource(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }

    /// Where the fields whose managers are tracked live: `spec`, or the top level of an Event
    /// (which has no spec).
    fn tracked_in(&self) -> Option<&'static str> {
        (self.name != "events").then_some("spec")
    }
}

/// Requests to one resource, counted as they arrive (refused ones too).
#[derive(Default)]
pub struct Counters {
    pub get: AtomicUsize,
    pub list: AtomicUsize,
    pub watch: AtomicUsize,
    pub create: AtomicUsize,
    pub update: AtomicUsize,
    pub patch: AtomicUsize,
    pub delete: AtomicUsize,
}

impl Counters {
    pub fn gets(&self) -> usize {
        self.get.load(Ordering::SeqCst)
    }
    pub fn lists(&self) -> usize {
        self.list.load(Ordering::SeqCst)
    }
    pub fn watches(&self) -> usize {
        self.watch.load(Ordering::SeqCst)
    }
    /// POSTs.
    pub fn creates(&self) -> usize {
        self.create.load(Ordering::SeqCst)
    }
    /// PUTs.
    pub fn updates(&self) -> usize {
        self.update.load(Ordering::SeqCst)
    }
    /// PATCHes of every type, server-side apply included.
    pub fn patches(&self) -> usize {
        self.patch.load(Ordering::SeqCst)
    }
    pub fn deletes(&self) -> usize {
        self.delete.load(Ordering::SeqCst)
    }
}

/// One change of one object, as a watch delivers it.
#[derive(Clone)]
struct Change {
    rv: u64,
    /// The resource, as [`Kind::name`].
    plural: &'static str,
    kind: &'static str,
    object: Value,
}

/// The fields one field manager owns, as `metadata.managedFields` shows them.
#[derive(Clone)]
struct Manager {
    name: String,
    operation: &'static str,
    api_version: String,
    time: String,
    fields: BTreeSet<String>,
}

impl Manager {
    /// As kube-apiserver names a manager in an apply conflict.
    fn describe(&self) -> String {
        if self.operation == "Update" {
            format!(
                "{:?} using {} at {}",
                self.name, self.api_version, self.time
            )
        } else {
            format!("{:?}", self.name)
        }
    }
}

#[derive(Clone)]
struct Stored {
    object: Value,
    managers: Vec<Manager>,
}

#[derive(Default)]
struct Store {
    rv: u64,
    /// Watches from a resourceVersion below this get 410 Gone (etcd compaction).
    compacted: u64,
    /// By resource, then by etcd-style key (`name`, or `namespace/name`), in etcd's order.
    objects: BTreeMap<&'static str, BTreeMap<String, Stored>>,
    history: Vec<Change>,
    /// What a paginated LIST saw, by resource and resourceVersion, for its `continue` tokens.
    /// Shared, so that each page of a large LIST does not copy the whole of it.
    snapshots: BTreeMap<(&'static str, u64), Snapshot>,
}

/// The objects of one resource at one resourceVersion, by key, as a paginated LIST saw them.
type Snapshot = Arc<Vec<(String, Value)>>;

fn key(kind: &Kind, namespace: &str, name: &str) -> String {
    if kind.namespaced {
        format!("{namespace}/{name}")
    } else {
        name.to_owned()
    }
}

impl Store {
    fn get(&self, kind: &Kind, key: &str) -> Option<&Stored> {
        self.objects.get(kind.name)?.get(key)
    }

    /// Stores a new state of an object under the next resourceVersion, with the metadata the
    /// server owns (uid, creationTimestamp, resourceVersion, generation, managedFields), and tells
    /// the watches. Returns the object as stored.
    fn write(
        &mut self,
        changes: &broadcast::Sender<Change>,
        kind: &'static Kind,
        namespace: &str,
        name: &str,
        mut stored: Stored,
    ) -> Value {
        self.rv += 1;
        let rv = self.rv;
        let key = key(kind, namespace, name);
        let old = self.get(kind, &key).map(|s| s.object.clone());
        let mut object = into_map(stored.object);
        let mut meta = into_map(object.remove("metadata").unwrap_or_default());
        meta.insert("name".into(), json!(name));
        if kind.namespaced {
            meta.insert("namespace".into(), json!(namespace));
        } else {
            meta.remove("namespace");
        }
        match &old {
            Some(old) => {
                for field in ["uid", "creationTimestamp"] {
                    if let Some(v) = old["metadata"].get(field) {
                        meta.insert(field.into(), v.clone());
                    }
                }
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                let spec_changed = old.get("spec") != object.get("spec");
                meta.insert(
                    "generation".into(),
                    json!(generation + i64::from(spec_changed)),
                );
            }
            None => {
                meta.insert(
                    "uid".into(),
                    json!(format!("00000000-0000-0000-0000-{rv:012}")),
                );
                meta.insert("creationTimestamp".into(), json!(now()));
                meta.insert("generation".into(), json!(1));
            }
        }
        if !kind.custom {
            meta.remove("generation");
        }
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        stored.managers.retain(|m| !m.fields.is_empty());
        if stored.managers.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert(
                "managedFields".into(),
                render_managers(kind, &stored.managers),
            );
        }
        object.insert("apiVersion".into(), json!(kind.api_version()));
        object.insert("kind".into(), json!(kind.kind));
        object.insert("metadata".into(), Value::Object(meta));
        stored.object = Value::Object(object);
        let object = stored.object.clone();
        self.objects
            .entry(kind.name)
            .or_default()
            .insert(key, stored);
        let change = if old.is_some() { "MODIFIED" } else { "ADDED" };
        self.publish(changes, rv, kind, change, object.clone());
        object
    }

    /// Deletes an object under the next resourceVersion and tells the watches.
    fn remove(
        &mut self,
        changes: &broadcast::Sender<Change>,
        kind: &'static Kind,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let stored = self
            .objects
            .get_mut(kind.name)?
            .remove(&key(kind, namespace, name))?;
        self.rv += 1;
        let rv = self.rv;
        let mut object = stored.object;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.publish(changes, rv, kind, "DELETED", object.clone());
        Some(object)
    }

    fn publish(
        &mut self,
        changes: &broadcast::Sender<Change>,
        rv: u64,
        kind: &'static Kind,
        change: &'static str,
        object: Value,
    ) {
        let change = Change {
            rv,
            plural: kind.name,
            kind: change,
            object,
        };
        self.history.push(change.clone());
        let _ = changes.send(change);
    }
}

struct Shared {
    store: Mutex<Store>,
    changes: broadcast::Sender<Change>,
    /// Bumped to end every open watch stream (as when an API server restarts).
    drop_watches: watch::Sender<u64>,
    counters: BTreeMap<&'static str, Counters>,
    forbidden: AtomicBool,
    /// API groups whose CRDs are not installed: their resources are not served at all.
    absent_groups: Mutex<BTreeSet<&'static str>>,
    forbidden_resources: Mutex<BTreeSet<&'static str>>,
    failing_writes: Mutex<BTreeMap<&'static str, u16>>,
    fail_gets_with_500: AtomicBool,
    get_delay_ms: AtomicU64,
    list_delay_ms: AtomicU64,
}

impl Shared {
    fn counters(&self, kind: &Kind) -> &Counters {
        &self.counters[kind.name]
    }
}

/// A lock that a panicked holder does not poison for everyone else.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running stand-in API server.
pub struct ApiServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ApiServer {
    pub async fn start() -> ApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            store: Mutex::new(Store {
                rv: 200,
                ..Store::default()
            }),
            changes: broadcast::channel(1024).0,
            drop_watches: watch::channel(0).0,
            counters: KINDS
                .iter()
                .map(|k| (k.name, Counters::default()))
                .collect(),
            forbidden: AtomicBool::new(false),
            absent_groups: Mutex::default(),
            forbidden_resources: Mutex::default(),
            failing_writes: Mutex::default(),
            fail_gets_with_500: AtomicBool::new(false),
            get_delay_ms: AtomicU64::new(0),
            list_delay_ms: AtomicU64::new(0),
        });
        let server = ApiServer {
            addr,
            shared,
            server: Mutex::new(None),
        };
        server.serve(listener);
        server
    }

    fn serve(&self, listener: TcpListener) {
        let app = Router::new()
            .fallback(handle)
            .with_state(self.shared.clone());
        // Connections are tracked so that stopping the server ends them too: a client must not
        // keep talking to a "stopped" API server over a pooled keep-alive connection.
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                connections.spawn(async move {
                    let builder = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    let _ = builder
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        *lock(&self.server) = Some(task);
    }

    /// A `kube::Client` pointed at this server.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(format!("http://{}", self.addr).parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// The requests for Functions.
    pub fn counters(&self) -> &Counters {
        self.counters_for("functions")
    }

    /// The requests for one resource, by plural name (`"events"`, `"leases"`, a hook kind...).
    pub fn counters_for(&self, plural: &str) -> &Counters {
        self.shared.counters(Kind::known(plural))
    }

    /// Creates or replaces a Function reading `${a}`; `image: None` makes one without a container
    /// image.
    pub fn put_function(&self, name: &str, image: Option<&str>) {
        let mut spec = json!({"args": ["--param-a=${a}"]});
        if let Some(image) = image {
            spec["image"] = json!(image);
        }
        self.put_function_spec(name, spec);
    }

    /// Creates or replaces a Function with this `spec`.
    pub fn put_function_spec(&self, name: &str, spec: Value) {
        self.put_object("functions", None, name, spec);
    }

    pub fn delete_function(&self, name: &str) {
        self.delete_object("functions", None, name);
    }

    /// Creates, or replaces the `spec` of, an object of a kind with a spec (the Stash kinds,
    /// `leases`), as `kubectl apply` would: watches see ADDED or MODIFIED. `namespace` must be
    /// given exactly for the namespaced kinds. Returns the object's `metadata.uid`.
    pub fn put_object(
        &self,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
        spec: Value,
    ) -> String {
        let kind = Kind::known(plural);
        assert_eq!(
            kind.namespaced,
            namespace.is_some(),
            "{plural} is {}namespaced",
            if kind.namespaced { "" } else { "not " }
        );
        let namespace = namespace.unwrap_or("");
        let mut store = lock(&self.shared.store);
        let current = store.get(kind, &key(kind, namespace, name)).cloned();
        let mut object = match &current {
            Some(current) => current.object.clone(),
            None => json!({"metadata": {"name": name}}),
        };
        object["spec"] = spec;
        let mut managers = current
            .as_ref()
            .map(|c| c.managers.clone())
            .unwrap_or_default();
        track_update(
            kind,
            &mut managers,
            current.as_ref().map(|c| &c.object),
            &object,
            HELPER_MANAGER,
        );
        let written = store.write(
            &self.shared.changes,
            kind,
            namespace,
            name,
            Stored { object, managers },
        );
        written["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Uninstalls (or installs again) the CRDs of KubeStash, both its groups: their resources
    /// answer 404 as kube-apiserver answers for a resource it does not serve.
    pub fn set_kubestash_installed(&self, installed: bool) {
        let mut absent = lock(&self.shared.absent_groups);
        for group in [KUBESTASH_CORE, KUBESTASH_ADDONS] {
            if installed {
                absent.remove(group);
            } else {
                absent.insert(group);
            }
        }
    }

    /// Whether Stash's CRDs are installed: when not, `stash.appscode.com` answers every request
    /// with the 404 of a resource the server does not serve (a cluster with KubeStash alone).
    pub fn set_stash_installed(&self, installed: bool) {
        let mut absent = lock(&self.shared.absent_groups);
        if installed {
            absent.remove("stash.appscode.com");
        } else {
            absent.insert("stash.appscode.com");
        }
    }

    /// Deletes an object (watches see DELETED); false when there was none.
    pub fn delete_object(&self, plural: &str, namespace: Option<&str>, name: &str) -> bool {
        let kind = Kind::known(plural);
        lock(&self.shared.store)
            .remove(&self.shared.changes, kind, namespace.unwrap_or(""), name)
            .is_some()
    }

    /// One stored object, as a GET would return it.
    pub fn object(&self, plural: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let kind = Kind::known(plural);
        let store = lock(&self.shared.store);
        let stored = store.get(kind, &key(kind, namespace.unwrap_or(""), name))?;
        Some(stored.object.clone())
    }

    /// Every stored object of a resource, in the order a LIST returns them.
    pub fn objects(&self, plural: &str) -> Vec<Value> {
        let kind = Kind::known(plural);
        let store = lock(&self.shared.store);
        store
            .objects
            .get(kind.name)
            .map(|objects| objects.values().map(|s| s.object.clone()).collect())
            .unwrap_or_default()
    }

    /// Every stored `events.k8s.io/v1` Event, in every namespace.
    pub fn events(&self) -> Vec<Value> {
        self.objects("events")
    }

    pub fn lease(&self, namespace: &str, name: &str) -> Option<Value> {
        self.object("leases", Some(namespace), name)
    }

    /// The store's current resourceVersion (shared by every resource).
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.store).rv
    }

    /// Answers every request with 403, as for a ServiceAccount without RBAC.
    pub fn set_forbidden(&self, on: bool) {
        self.shared.forbidden.store(on, Ordering::SeqCst);
    }

    /// Answers every request for one resource with 403 (RBAC missing for just that resource).
    pub fn set_forbidden_resource(&self, plural: &str, on: bool) {
        let kind = Kind::known(plural);
        let mut forbidden = lock(&self.shared.forbidden_resources);
        if on {
            forbidden.insert(kind.name);
        } else {
            forbidden.remove(kind.name);
        }
    }

    /// Fails every write (POST, PUT, PATCH, DELETE) of one resource with this status (429, 500,
    /// 503 or 504, each with kube-apiserver's body) while reads keep working; `None` heals it.
    /// Mind that kube's client retries 429, 503 and 504 by itself (15 times, backing off).
    pub fn set_writes_fail(&self, plural: &str, code: Option<u16>) {
        let kind = Kind::known(plural);
        let mut failing = lock(&self.shared.failing_writes);
        match code {
            Some(code) => failing.insert(kind.name, code),
            None => failing.remove(kind.name),
        };
    }

    /// Delays the answer to every GET of a Stash object (Functions and the hook kinds).
    pub fn set_get_delay(&self, delay: Duration) {
        self.shared
            .get_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Delays the answer to every LIST of the five hook kinds (not of Functions).
    pub fn set_list_delay(&self, delay: Duration) {
        self.shared
            .list_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Answers every GET of a Stash object with 500 (an etcd timeout).
    pub fn set_gets_fail_with_500(&self, on: bool) {
        self.shared.fail_gets_with_500.store(on, Ordering::SeqCst);
    }

    /// Forgets history (as etcd compaction does) and ends open watches, so the client's next
    /// watch from its last resourceVersion gets 410 Gone and must re-list; `continue` tokens of
    /// earlier LISTs expire too.
    pub fn compact_and_drop_watches(&self) {
        {
            let mut store = lock(&self.shared.store);
            store.rv += 1;
            store.compacted = store.rv;
            store.history.clear();
            store.snapshots.clear();
        }
        self.shared.drop_watches.send_modify(|n| *n += 1);
    }

    /// Stops serving: connections are refused until [`ApiServer::restart`].
    pub async fn stop(&self) {
        let task = lock(&self.server).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        self.shared.drop_watches.send_modify(|n| *n += 1);
    }

    /// Serves again on the same address, with the same objects.
    pub async fn restart(&self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.server).take() {
            task.abort();
        }
    }
}

// ---- Answers -------------------------------------------------------------------------------

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache, private"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// A `Status` body, as kube-apiserver sends with every error.
fn status(code: u16, reason: &str, message: &str, details: Value) -> Response {
    let mut body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    if !details.is_null() {
        body["details"] = details;
    }
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &body)
}

fn details(kind: &Kind, name: Option<&str>) -> Value {
    match name {
        Some(name) => json!({"name": name, "group": kind.group, "kind": kind.plural}),
        None => json!({"group": kind.group, "kind": kind.plural}),
    }
}

fn bad_request(message: &str) -> Response {
    status(400, "BadRequest", message, Value::Null)
}

/// `tests/fixtures/api/get-forbidden.json` and `list-forbidden.json`.
fn forbidden(kind: &Kind, verb: Verb, namespace: Option<&str>, name: Option<&str>) -> Response {
    let scope = match namespace {
        Some(namespace) => format!("in the namespace {namespace:?}"),
        None => "at the cluster scope".to_owned(),
    };
    let subject = match name {
        Some(name) => format!("{} {name:?}", kind.resource()),
        None => kind.resource(),
    };
    let message = format!(
        "{subject} is forbidden: User {USER:?} cannot {} resource {:?} in API group {:?} {scope}",
        verb.as_str(),
        kind.plural,
        kind.group
    );
    status(403, "Forbidden", &message, details(kind, name))
}

/// `tests/fixtures/api/get-missing.json`.
fn not_found(kind: &Kind, name: &str) -> Response {
    let message = format!("{} {name:?} not found", kind.resource());
    status(404, "NotFound", &message, details(kind, Some(name)))
}

fn already_exists(kind: &Kind, name: &str) -> Response {
    let message = format!("{} {name:?} already exists", kind.resource());
    status(409, "AlreadyExists", &message, details(kind, Some(name)))
}

/// A write from a stale `metadata.resourceVersion`.
fn modified_conflict(kind: &Kind, name: &str) -> Response {
    let message = format!(
        "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
        kind.resource()
    );
    status(409, "Conflict", &message, details(kind, Some(name)))
}

/// The body kube-apiserver sends when a server-side apply conflicts with other managers.
fn apply_conflict(conflicts: &[(String, String)]) -> Response {
    let message = match conflicts {
        [(manager, path)] => {
            format!("Apply failed with 1 conflict: conflict with {manager}: {path}")
        }
        _ => {
            let mut lines = Vec::new();
            let mut last: Option<&str> = None;
            for (manager, path) in conflicts {
                if last != Some(manager.as_str()) {
                    lines.push(format!("conflicts with {manager}:"));
                    last = Some(manager);
                }
                lines.push(format!("- {path}"));
            }
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                lines.join("\n")
            )
        }
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(manager, path)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {manager}"), "field": path}))
        .collect();
    status(409, "Conflict", &message, json!({"causes": causes}))
}

/// One reason a 422 gives.
struct FieldError {
    field: String,
    reason: &'static str,
    detail: String,
}

impl FieldError {
    fn required(field: &str, why: &str) -> FieldError {
        let detail = if why.is_empty() {
            "Required value".to_owned()
        } else {
            format!("Required value: {why}")
        };
        FieldError {
            field: field.to_owned(),
            reason: "FieldValueRequired",
            detail,
        }
    }

    fn invalid(field: &str, value: &Value, why: &str) -> FieldError {
        FieldError {
            field: field.to_owned(),
            reason: "FieldValueInvalid",
            detail: format!("Invalid value: {value}: {why}"),
        }
    }

    fn forbidden(field: &str, why: &str) -> FieldError {
        FieldError {
            field: field.to_owned(),
            reason: "FieldValueForbidden",
            detail: format!("Forbidden: {why}"),
        }
    }
}

/// 422 Invalid: `Event.events.k8s.io "x" is invalid: [eventTime: Required value, ...]`.
fn invalid(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Response {
    let reasons: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.detail))
        .collect();
    let reasons = match reasons.as_slice() {
        [one] => one.clone(),
        _ => format!("[{}]", reasons.join(", ")),
    };
    let causes: Vec<Value> = errors
        .iter()
        .map(|e| json!({"reason": e.reason, "message": e.detail, "field": e.field}))
        .collect();
    let message = format!("{kind}.{group} {name:?} is invalid: {reasons}");
    let mut details = json!({"group": group, "kind": kind, "causes": causes});
    if !name.is_empty() {
        details["name"] = json!(name);
    }
    status(422, "Invalid", &message, details)
}

/// What kube-apiserver answers when it is itself in trouble.
fn server_trouble(code: u16) -> Response {
    match code {
        429 => {
            let mut response = status(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
                json!({"retryAfterSeconds": 1}),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            response
        }
        503 => status(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
            Value::Null,
        ),
        504 => status(
            504,
            "Timeout",
            "Timeout: request did not complete within requested timeout - context deadline exceeded",
            Value::Null,
        ),
        _ => status(
            500,
            "InternalError",
            "Internal error occurred: etcdserver: request timed out",
            json!({"causes": [{"message": "etcdserver: request timed out"}]}),
        ),
    }
}

// ---- Requests ------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }

    fn writes(self) -> bool {
        matches!(
            self,
            Verb::Create | Verb::Update | Verb::Patch | Verb::Delete
        )
    }
}

/// What a request is about: `/apis/{group}/{version}[/namespaces/{ns}]/{plural}[/{name}]`.
struct Target {
    kind: &'static Kind,
    namespace: Option<String>,
    name: Option<String>,
}

impl Target {
    fn parse(path: &str) -> Option<Target> {
        let parts: Vec<&str> = path.strip_prefix("/apis/")?.split('/').collect();
        let (group, version, namespace, plural, name) = match parts.as_slice() {
            [g, v, "namespaces", ns, p] => (*g, *v, Some(*ns), *p, None),
            [g, v, "namespaces", ns, p, n] => (*g, *v, Some(*ns), *p, Some(*n)),
            [g, v, p] => (*g, *v, None, *p, None),
            [g, v, p, n] => (*g, *v, None, *p, Some(*n)),
            _ => return None,
        };
        let kind = Kind::at(group, version, plural)?;
        // A namespaced object is reached through its namespace; a cluster-scoped one never is.
        let misplaced = (namespace.is_some() && !kind.namespaced)
            || (name.is_some() && namespace.is_none() && kind.namespaced);
        if misplaced || namespace.is_some_and(str::is_empty) || name.is_some_and(str::is_empty) {
            return None;
        }
        Some(Target {
            kind,
            namespace: namespace.map(str::to_owned),
            name: name.map(str::to_owned),
        })
    }

    fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }
}

type Params = BTreeMap<String, String>;

/// Every request lands here: the path says what it is about, the method what to do.
async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(target) = Target::parse(uri.path()) else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
            json!({}),
        );
    };
    let query: Params = match Query::<Vec<(String, String)>>::try_from_uri(&uri) {
        Ok(Query(pairs)) => pairs.into_iter().collect(),
        Err(e) => return bad_request(&format!("invalid query: {e}")),
    };
    let kind = target.kind;
    if lock(&shared.absent_groups).contains(kind.group) {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
            json!({}),
        );
    }
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let collection_create = target.namespace.is_some() || !kind.namespaced;
    let verb = match (&method, target.name.is_some()) {
        (&Method::GET, true) => Verb::Get,
        (&Method::GET, false) if watching => Verb::Watch,
        (&Method::GET, false) => Verb::List,
        (&Method::POST, false) if collection_create => Verb::Create,
        (&Method::PUT, true) => Verb::Update,
        (&Method::PATCH, true) => Verb::Patch,
        (&Method::DELETE, true) => Verb::Delete,
        _ => {
            return status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                json!({}),
            )
        }
    };
    let counters = shared.counters(kind);
    let counter = match verb {
        Verb::Get => &counters.get,
        Verb::List => &counters.list,
        Verb::Watch => &counters.watch,
        Verb::Create => &counters.create,
        Verb::Update => &counters.update,
        Verb::Patch => &counters.patch,
        Verb::Delete => &counters.delete,
    };
    counter.fetch_add(1, Ordering::SeqCst);

    let delay = match verb {
        Verb::Get if kind.group == STASH => shared.get_delay_ms.load(Ordering::SeqCst),
        Verb::List if kind.group == STASH && HOOK_KINDS.contains(&kind.plural) => {
            shared.list_delay_ms.load(Ordering::SeqCst)
        }
        _ => 0,
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if shared.forbidden.load(Ordering::SeqCst)
        || lock(&shared.forbidden_resources).contains(kind.name)
    {
        let name = target.name.as_deref().filter(|_| verb != Verb::Create);
        return forbidden(kind, verb, target.namespace.as_deref(), name);
    }
    if verb == Verb::Get && kind.group == STASH && shared.fail_gets_with_500.load(Ordering::SeqCst)
    {
        return server_trouble(500);
    }
    if verb.writes() {
        if let Some(code) = lock(&shared.failing_writes).get(kind.name) {
            return server_trouble(*code);
        }
    }

    match verb {
        Verb::Get => get_one(&shared, &target),
        Verb::List => list(&shared, &target, &query),
        Verb::Watch => watch_stream(&shared, &target, &query),
        Verb::Create => create(&shared, &target, &query, &headers, &body),
        Verb::Update => update(&shared, &target, &query, &headers, &body),
        Verb::Patch => patch(&shared, &target, &query, &headers, &body),
        Verb::Delete => delete(&shared, &target, &query),
    }
}

fn get_one(shared: &Shared, target: &Target) -> Response {
    let kind = target.kind;
    let name = target.name.as_deref().unwrap_or_default();
    let store = lock(&shared.store);
    match store.get(kind, &key(kind, target.namespace(), name)) {
        Some(stored) => json_response(StatusCode::OK, &stored.object),
        None => not_found(kind, name),
    }
}

// ---- LIST and WATCH ------------------------------------------------------------------------

/// `labelSelector` (equality and existence) and `fieldSelector` (`metadata.name`,
/// `metadata.namespace`: what kube-apiserver supports for custom resources).
#[derive(Default)]
struct Selector {
    labels: Vec<(String, LabelTest)>,
    fields: Vec<(String, bool, String)>,
}

enum LabelTest {
    Equals(String),
    NotEquals(String),
    Exists,
    Absent,
}

/// `a!=b`, `a==b`, `a=b`: the key, whether it must equal, the value.
fn split_requirement(term: &str) -> Option<(&str, bool, &str)> {
    if let Some((k, v)) = term.split_once("!=") {
        return Some((k.trim(), false, v.trim()));
    }
    let (k, v) = term.split_once("==").or_else(|| term.split_once('='))?;
    Some((k.trim(), true, v.trim()))
}

impl Selector {
    fn parse(query: &Params) -> Result<Selector, Response> {
        let mut selector = Selector::default();
        let terms = |name: &str| -> Vec<String> {
            query
                .get(name)
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        if query.get("labelSelector").is_some_and(|s| s.contains('(')) {
            return Err(bad_request(
                "the stand-in API server does not support set-based label selectors (in, notin)",
            ));
        }
        for term in terms("labelSelector") {
            let test = match (term.strip_prefix('!'), split_requirement(&term)) {
                (Some(key), _) => (key.trim().to_owned(), LabelTest::Absent),
                (None, Some((k, true, v))) => (k.to_owned(), LabelTest::Equals(v.to_owned())),
                (None, Some((k, false, v))) => (k.to_owned(), LabelTest::NotEquals(v.to_owned())),
                (None, None) => (term.clone(), LabelTest::Exists),
            };
            selector.labels.push(test);
        }
        for term in terms("fieldSelector") {
            let Some((field, equal, value)) = split_requirement(&term) else {
                return Err(bad_request(&format!(
                    "invalid selector: '{term}'; can't understand '{term}'"
                )));
            };
            let Some(field) = field
                .strip_prefix("metadata.")
                .filter(|f| *f == "name" || *f == "namespace")
            else {
                return Err(bad_request(&format!("field label not supported: {field}")));
            };
            selector
                .fields
                .push((field.to_owned(), equal, value.to_owned()));
        }
        Ok(selector)
    }

    fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    fn matches(&self, object: &Value) -> bool {
        let label = |key: &str| object["metadata"]["labels"][key].as_str();
        let labels_match = self.labels.iter().all(|(key, test)| match test {
            LabelTest::Equals(v) => label(key) == Some(v.as_str()),
            LabelTest::NotEquals(v) => label(key) != Some(v.as_str()),
            LabelTest::Exists => label(key).is_some(),
            LabelTest::Absent => label(key).is_none(),
        });
        let fields_match = self.fields.iter().all(|(field, equal, value)| {
            (object["metadata"][field.as_str()].as_str().unwrap_or("") == value) == *equal
        });
        labels_match && fields_match
    }
}

/// What one LIST or WATCH covers: a resource, maybe one namespace, maybe selectors.
struct Scope {
    plural: &'static str,
    namespace: Option<String>,
    selector: Selector,
}

impl Scope {
    fn new(target: &Target, query: &Params) -> Result<Scope, Response> {
        Ok(Scope {
            plural: target.kind.name,
            namespace: target.namespace.clone(),
            selector: Selector::parse(query)?,
        })
    }

    fn contains(&self, plural: &str, object: &Value) -> bool {
        plural == self.plural
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| object["metadata"]["namespace"].as_str() == Some(ns))
            && self.selector.matches(object)
    }
}

/// kube-apiserver's `continue` token: base64 of `{"v":"meta.k8s.io/v1","rv":N,"start":"KEY\0"}`.
fn encode_continue(rv: u64, last_key: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{last_key}\u{0}")});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Option<(u64, String)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let token: Value = serde_json::from_slice(&bytes).ok()?;
    if token["v"] != "meta.k8s.io/v1" {
        return None;
    }
    Some((token["rv"].as_u64()?, token["start"].as_str()?.to_owned()))
}

/// The resourceVersion a LIST asks for: the current state is all this server keeps.
fn check_list_version(store: &Store, query: &Params) -> Result<(), Response> {
    let asked = match query.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => return Ok(()),
        Some(v) => v,
    };
    let Ok(asked) = asked.parse::<u64>() else {
        return Err(bad_request(&format!("invalid resourceVersion {asked:?}")));
    };
    if asked > store.rv {
        return Err(status(
            504,
            "Timeout",
            &format!("Too large resource version: {asked}, current: {}", store.rv),
            json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}),
        ));
    }
    if query.get("resourceVersionMatch").map(String::as_str) == Some("Exact") && asked != store.rv {
        return Err(status(
            410,
            "Expired",
            "The resourceVersion for the provided list is too old.",
            Value::Null,
        ));
    }
    Ok(())
}

fn list(shared: &Shared, target: &Target, query: &Params) -> Response {
    let kind = target.kind;
    let scope = match Scope::new(target, query) {
        Ok(scope) => scope,
        Err(response) => return response,
    };
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None | Some(Ok(0)) => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return bad_request("limit must be a non-negative integer"),
    };
    let mut store = lock(&shared.store);
    let (rv, start, all) = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let Some((rv, start)) = decode_continue(token) else {
                return bad_request("continue key is not valid: the stand-in could not decode it");
            };
            let snapshot = store
                .snapshots
                .get(&(kind.name, rv))
                .filter(|_| rv >= store.compacted);
            let Some(snapshot) = snapshot else {
                return status(410, "Expired", "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.", Value::Null);
            };
            (rv, Some(start), Arc::clone(snapshot))
        }
        None => {
            if let Err(response) = check_list_version(&store, query) {
                return response;
            }
            let all: Vec<(String, Value)> = store
                .objects
                .get(kind.name)
                .map(|objects| {
                    objects
                        .iter()
                        .map(|(k, s)| (k.clone(), s.object.clone()))
                        .collect()
                })
                .unwrap_or_default();
            (store.rv, None, Arc::new(all))
        }
    };
    let matching: Vec<&(String, Value)> = all
        .iter()
        .filter(|(key, _)| start.as_deref().is_none_or(|start| key.as_str() >= start))
        .filter(|(_, object)| scope.contains(kind.name, object))
        .collect();
    let (page, next) = match limit {
        Some(n) if matching.len() > n => (
            &matching[..n],
            Some(encode_continue(rv, &matching[n - 1].0)),
        ),
        _ => (&matching[..], None),
    };
    let remaining = matching.len() - page.len();
    let items: Vec<Value> = page.iter().map(|(_, object)| object.clone()).collect();
    let mut metadata =
        json!({"continue": next.clone().unwrap_or_default(), "resourceVersion": rv.to_string()});
    if remaining > 0 && scope.selector.is_empty() {
        metadata["remainingItemCount"] = json!(remaining);
    }
    if next.is_some() && start.is_none() {
        store.snapshots.insert((kind.name, rv), Arc::clone(&all));
    }
    let body = json!({"apiVersion": kind.api_version(), "items": items,
        "kind": format!("{}List", kind.kind), "metadata": metadata});
    json_response(StatusCode::OK, &body)
}

fn watch_stream(shared: &Arc<Shared>, target: &Target, query: &Params) -> Response {
    let kind = target.kind;
    let scope = match Scope::new(target, query) {
        Ok(scope) => scope,
        Err(response) => return response,
    };
    let from = match query.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => None,
        Some(v) => match v.parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => return bad_request(&format!("invalid resourceVersion {v:?}")),
        },
    };
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    // sendInitialEvents (a streaming list) ends its synthetic ADDED events with a marked BOOKMARK.
    let initial_events_end =
        from.is_none() && query.get("sendInitialEvents").is_some_and(|v| v == "true");
    let timeout = Duration::from_secs(
        query
            .get("timeoutSeconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(290),
    );
    // Subscribed under the store's lock, so that no change falls between the replay and the
    // live stream.
    let (first, mut live, current) = {
        let store = lock(&shared.store);
        let live = shared.changes.subscribe();
        let first: Vec<(&'static str, Value)> = match from {
            Some(from) if from < store.compacted => {
                // tests/fixtures/api/watch-gone.jsonl: the 410 travels inside a 200 response.
                let line = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "message": format!("too old resource version: {from} ({})", store.rv),
                    "reason": "Expired", "code": 410}});
                return json_response_line(line);
            }
            // From a resourceVersion: every change since.
            Some(from) => store
                .history
                .iter()
                .filter(|c| c.rv > from && scope.contains(c.plural, &c.object))
                .map(|c| (c.kind, c.object.clone()))
                .collect(),
            // From "now": synthetic ADDED events for what exists.
            None => store
                .objects
                .get(kind.name)
                .into_iter()
                .flat_map(|objects| objects.values())
                .filter(|s| scope.contains(kind.name, &s.object))
                .map(|s| ("ADDED", s.object.clone()))
                .collect(),
        };
        (first, live, store.rv)
    };

    let mut dropped = shared.drop_watches.subscribe();
    dropped.borrow_and_update();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        let line = |change: &str, object: &Value| {
            Bytes::from(format!("{}\n", json!({"type": change, "object": object})))
        };
        let bookmark = |rv: u64, initial_end: bool| {
            let mut object = json!({"apiVersion": kind.api_version(), "kind": kind.kind,
                "metadata": {"resourceVersion": rv.to_string()}});
            if initial_end {
                object["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            Bytes::from(format!(
                "{}\n",
                json!({"type": "BOOKMARK", "object": object})
            ))
        };
        let from = from.unwrap_or(0);
        let mut last = from.max(current);
        for (change, object) in &first {
            if tx.send(Ok(line(change, object))).await.is_err() {
                return;
            }
        }
        if (bookmarks || initial_events_end)
            && tx
                .send(Ok(bookmark(last, initial_events_end)))
                .await
                .is_err()
        {
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(Duration::from_millis(500));
        loop {
            // Biased: a dropped watch must end before it delivers anything more, as a closed
            // connection would.
            tokio::select! {
                biased;
                _ = dropped.changed() => return,
                () = &mut deadline => return,
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(Ok(bookmark(last, false))).await.is_err() { return; }
                }
                change = live.recv() => match change {
                    // The resourceVersion is etcd's, shared by every resource: a bookmark may
                    // move past changes of other resources.
                    Ok(c) if c.rv > from => {
                        last = last.max(c.rv);
                        if scope.contains(c.plural, &c.object)
                            && tx.send(Ok(line(c.kind, &c.object))).await.is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                },
            }
        }
    });
    streaming(rx)
}

fn json_response_line(line: Value) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache, private"),
        ],
        format!("{line}\n"),
    )
        .into_response()
}

fn streaming(mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, Infallible>>) -> Response {
    let body = Body::from_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache, private"),
        ],
        body,
    )
        .into_response()
}

// ---- Writes --------------------------------------------------------------------------------

fn into_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The field manager of a non-apply write: `fieldManager`, else the User-Agent's first word, as
/// kube-apiserver takes it.
fn field_manager(query: &Params, headers: &HeaderMap) -> String {
    if let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) {
        return manager.clone();
    }
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    agent
        .split('/')
        .next()
        .unwrap_or("")
        .chars()
        .take(128)
        .collect()
}

fn dry_run(query: &Params) -> bool {
    query.get("dryRun").is_some_and(|d| d == "All")
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The object a POST or PUT sends (JSON, or YAML).
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, Response> {
    let parsed: Result<Value, String> = match content_type(headers).as_str() {
        "application/json" => serde_json::from_slice(body).map_err(|e| e.to_string()),
        "application/yaml" => serde_yaml_ng::from_slice(body).map_err(|e| e.to_string()),
        _ => return Err(status(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml", Value::Null)),
    };
    match parsed {
        Ok(value) if value.is_object() => Ok(value),
        Ok(_) => Err(bad_request(
            "couldn't get version/kind; json parse error: the body is not an object",
        )),
        Err(e) => Err(bad_request(&format!(
            "couldn't get version/kind; json parse error: {e}"
        ))),
    }
}

/// The object's `apiVersion` and `kind`, when given (or when `required`), must be this resource's.
fn check_type(kind: &Kind, object: &Value, required: bool) -> Result<(), Response> {
    let api_version = kind.api_version();
    match object.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v != api_version => return Err(bad_request(&format!("the API version in the data ({v}) does not match the expected API version ({api_version})"))),
        None if required => return Err(bad_request("Object 'apiVersion' is missing")),
        _ => {}
    }
    match object.get("kind").and_then(Value::as_str) {
        Some(k) if k != kind.kind => Err(bad_request(&format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            kind.kind
        ))),
        None if required => Err(bad_request("Object 'Kind' is missing")),
        _ => Ok(()),
    }
}

/// The name and namespace in a body, when given, must be those of the URL.
fn check_identity(
    object: &Value,
    name: &str,
    namespace: &str,
    kind: &Kind,
) -> Result<(), Response> {
    if let Some(theirs) = object["metadata"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
    {
        if theirs != name {
            return Err(bad_request(&format!(
                "the name of the object ({theirs}) does not match the name on the URL ({name})"
            )));
        }
    }
    if let Some(theirs) = object["metadata"]["namespace"]
        .as_str()
        .filter(|n| !n.is_empty())
    {
        if kind.namespaced && theirs != namespace {
            return Err(bad_request("the namespace of the provided object does not match the namespace sent on the request"));
        }
    }
    Ok(())
}

/// kube-apiserver cannot decode an object whose metadata, labels, annotations or spec have the
/// wrong shape.
fn check_shape(kind: &Kind, object: &Value) -> Result<(), Response> {
    let wrong = |what: &str| {
        Err(bad_request(&format!(
            "the stand-in could not decode the {}: {what} has the wrong type",
            kind.kind
        )))
    };
    let object_or_absent = |v: &Value| v.is_object() || v.is_null();
    if !object_or_absent(&object["metadata"]) {
        return wrong("metadata");
    }
    for part in ["labels", "annotations"] {
        let map = &object["metadata"][part];
        if !object_or_absent(map)
            || map
                .as_object()
                .is_some_and(|m| m.values().any(|v| !v.is_string()))
        {
            return wrong(&format!("metadata.{part}"));
        }
    }
    if let Some(container) = kind.tracked_in() {
        if !object_or_absent(&object[container]) {
            return wrong(container);
        }
    }
    Ok(())
}

/// kube-apiserver's validation of the objects it stores (for Events and Leases; the Stash CRDs'
/// schemas are not checked).
fn validate(kind: &Kind, name: &str, namespace: &str, object: &Value) -> Result<(), Response> {
    let errors = match kind.name {
        "events" => event_errors(namespace, object),
        "leases" => lease_errors(object),
        _ => Vec::new(),
    };
    if errors.is_empty() {
        Ok(())
    } else {
        Err(invalid(kind.group, kind.kind, name, &errors))
    }
}

fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, s),
    };
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let name_ok = name.len() <= 63
        && edge(name.chars().next())
        && edge(name.chars().last())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c))
    });
    name_ok && prefix_ok
}

/// `events.k8s.io/v1` validation (kube-apiserver's `ValidateEventCreate` for v1).
fn event_errors(namespace: &str, event: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let text = |field: &str| event[field].as_str().unwrap_or("");
    if text("eventTime").is_empty() {
        errors.push(FieldError::required("eventTime", ""));
    }
    for field in [
        "reportingController",
        "reportingInstance",
        "action",
        "reason",
    ] {
        let value = text(field);
        if value.is_empty() {
            errors.push(FieldError::required(field, ""));
        } else if value.len() > 128 {
            errors.push(FieldError::invalid(
                field,
                &json!(value),
                "can have at most 128 characters",
            ));
        }
    }
    let controller = text("reportingController");
    if !controller.is_empty() && !is_qualified_name(controller) {
        errors.push(FieldError::invalid("reportingController", &json!(controller), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
    }
    match event["type"].as_str() {
        Some("Normal" | "Warning") => {}
        other => errors.push(FieldError {
            field: "type".into(),
            reason: "FieldValueNotSupported",
            detail: format!(
                "Unsupported value: {}: supported values: \"Normal\", \"Warning\"",
                json!(other.unwrap_or(""))
            ),
        }),
    }
    if text("note").len() > 1024 {
        errors.push(FieldError::invalid(
            "note",
            &json!("..."),
            "can have at most 1024 characters",
        ));
    }
    // An Event lives in its object's namespace; one about a cluster-scoped object in `default`.
    let regarding = event["regarding"]["namespace"].as_str().unwrap_or("");
    let home = if regarding.is_empty() {
        "default"
    } else {
        regarding
    };
    if namespace != home {
        errors.push(FieldError::invalid(
            "regarding.namespace",
            &json!(regarding),
            "does not match event.namespace",
        ));
    }
    if let Some(series) = event.get("series").filter(|s| !s.is_null()) {
        let count = series["count"].as_i64().unwrap_or(0);
        if count < 2 {
            errors.push(FieldError::invalid(
                "series.count",
                &json!(count),
                "should be at least 2",
            ));
        }
        if series["lastObservedTime"]
            .as_str()
            .is_none_or(str::is_empty)
        {
            errors.push(FieldError::required("series.lastObservedTime", ""));
        }
    }
    errors
}

fn lease_errors(lease: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (field, minimum, why) in [
        ("leaseDurationSeconds", 1, "must be greater than 0"),
        ("leaseTransitions", 0, "must be greater than or equal to 0"),
    ] {
        let value = &lease["spec"][field];
        if !value.is_null() && value.as_i64().is_none_or(|n| n < minimum) {
            errors.push(FieldError::invalid(&format!("spec.{field}"), value, why));
        }
    }
    errors
}

// ---- Field ownership (server-side apply) ---------------------------------------------------

/// The fields whose managers are tracked: those of `spec` (of the top level for an Event).
fn tracked(kind: &Kind, object: &Value) -> BTreeMap<String, Value> {
    let container = match kind.tracked_in() {
        Some(container) => &object[container],
        None => object,
    };
    let Some(fields) = container.as_object() else {
        return BTreeMap::new();
    };
    fields
        .iter()
        .filter(|(f, v)| {
            !v.is_null()
                && (kind.tracked_in().is_some()
                    || !matches!(f.as_str(), "apiVersion" | "kind" | "metadata"))
        })
        .map(|(f, v)| (f.clone(), v.clone()))
        .collect()
}

fn tracked_mut<'a>(kind: &Kind, object: &'a mut Value) -> &'a mut Map<String, Value> {
    if !object.is_object() {
        *object = json!({});
    }
    let container = match kind.tracked_in() {
        Some(container) => {
            if !object[container].is_object() {
                object[container] = json!({});
            }
            &mut object[container]
        }
        None => object,
    };
    container.as_object_mut().expect("made an object above")
}

/// `.spec.holderIdentity`, as kube-apiserver names a field in a conflict.
fn field_path(kind: &Kind, field: &str) -> String {
    match kind.tracked_in() {
        Some(container) => format!(".{container}.{field}"),
        None => format!(".{field}"),
    }
}

fn render_managers(kind: &Kind, managers: &[Manager]) -> Value {
    let entries = managers.iter().map(|m| {
        let fields: Map<String, Value> = m
            .fields
            .iter()
            .map(|f| (format!("f:{f}"), json!({})))
            .collect();
        let fields = match kind.tracked_in() {
            Some(container) => {
                let mut wrapped = Map::new();
                wrapped.insert(format!("f:{container}"), Value::Object(fields));
                Value::Object(wrapped)
            }
            None => Value::Object(fields),
        };
        json!({"apiVersion": m.api_version, "fieldsType": "FieldsV1", "fieldsV1": fields,
            "manager": m.name, "operation": m.operation, "time": m.time})
    });
    Value::Array(entries.collect())
}

/// The entry of one manager and operation, made if need be, its time now.
fn manager_entry<'a>(
    kind: &Kind,
    managers: &'a mut Vec<Manager>,
    name: &str,
    operation: &'static str,
) -> &'a mut Manager {
    let at = match managers
        .iter()
        .position(|m| m.name == name && m.operation == operation)
    {
        Some(at) => at,
        None => {
            managers.push(Manager {
                name: name.to_owned(),
                operation,
                api_version: kind.api_version(),
                time: String::new(),
                fields: BTreeSet::new(),
            });
            managers.len() - 1
        }
    };
    managers[at].time = now();
    &mut managers[at]
}

/// An Update (create, PUT, merge or strategic patch) by `manager`: it takes the fields it changed
/// or added from whoever owned them; a field that is gone is nobody's.
fn track_update(
    kind: &Kind,
    managers: &mut Vec<Manager>,
    old: Option<&Value>,
    new: &Value,
    manager: &str,
) {
    let before = old.map(|o| tracked(kind, o)).unwrap_or_default();
    let after = tracked(kind, new);
    let changed: BTreeSet<String> = after
        .iter()
        .filter(|(f, v)| before.get(*f) != Some(*v))
        .map(|(f, _)| f.clone())
        .collect();
    for m in managers.iter_mut() {
        m.fields
            .retain(|f| after.contains_key(f) && !changed.contains(f));
    }
    if !changed.is_empty() {
        manager_entry(kind, managers, manager, "Update")
            .fields
            .extend(changed);
    }
    managers.retain(|m| !m.fields.is_empty());
}

/// Server-side apply of `applied` by `manager`. A field it sets to a new value while another
/// manager owns it is a conflict (unless `force`, which takes it over); a field set to the value
/// it has is shared; a field this manager applied before and no longer applies is removed unless
/// another manager owns it. Returns the new state, or the conflicts (manager, field path).
fn apply(
    kind: &Kind,
    current: Option<&Stored>,
    applied: &Value,
    manager: &str,
    force: bool,
) -> Result<Stored, Vec<(String, String)>> {
    let mut stored = current.cloned().unwrap_or(Stored {
        object: json!({}),
        managers: Vec::new(),
    });
    let live = tracked(kind, &stored.object);
    let wanted = tracked(kind, applied);
    let mine = |m: &Manager| m.name == manager && m.operation == "Apply";
    let changed: BTreeSet<&String> = wanted
        .iter()
        .filter(|(f, v)| live.get(*f) != Some(*v))
        .map(|(f, _)| f)
        .collect();
    let mut conflicts: Vec<(String, String)> = stored
        .managers
        .iter()
        .filter(|m| !mine(m))
        .flat_map(|m| {
            m.fields
                .iter()
                .filter(|f| changed.contains(f))
                .map(move |f| (m.describe(), field_path(kind, f)))
        })
        .collect();
    conflicts.sort();
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    let before: BTreeSet<String> = stored
        .managers
        .iter()
        .filter(|m| mine(m))
        .flat_map(|m| m.fields.iter().cloned())
        .collect();
    let fields = tracked_mut(kind, &mut stored.object);
    for field in before.iter().filter(|f| !wanted.contains_key(*f)) {
        let shared = stored
            .managers
            .iter()
            .any(|m| !mine(m) && m.fields.contains(field));
        if !shared {
            fields.remove(field);
        }
    }
    for (field, value) in &wanted {
        fields.insert(field.clone(), value.clone());
    }
    for m in stored.managers.iter_mut().filter(|m| !mine(m)) {
        m.fields.retain(|f| !changed.contains(f));
    }
    manager_entry(kind, &mut stored.managers, manager, "Apply").fields =
        wanted.keys().cloned().collect();
    // Labels and annotations applied are merged in (their ownership is not tracked).
    let mut metadata = Map::new();
    for part in ["labels", "annotations"] {
        if let Some(entries) = applied["metadata"].get(part).filter(|v| v.is_object()) {
            metadata.insert(part.to_owned(), entries.clone());
        }
    }
    merge_patch(&mut stored.object, &json!({"metadata": metadata}));
    Ok(stored)
}

/// RFC 7386 JSON merge patch: objects merge, `null` removes, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let Value::Object(target) = target else {
        return;
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

fn create(
    shared: &Shared,
    target: &Target,
    query: &Params,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let kind = target.kind;
    let namespace = target.namespace();
    let object = match parse_body(headers, body) {
        Ok(object) => object,
        Err(response) => return response,
    };
    if let Err(response) =
        check_type(kind, &object, false).and_then(|()| check_shape(kind, &object))
    {
        return response;
    }
    if let Some(theirs) = object["metadata"]["namespace"]
        .as_str()
        .filter(|n| !n.is_empty())
    {
        if kind.namespaced && theirs != namespace {
            return bad_request("the namespace of the provided object does not match the namespace sent on the request");
        }
    }
    let mut store = lock(&shared.store);
    let name = match (
        object["metadata"]["name"].as_str(),
        object["metadata"]["generateName"].as_str(),
    ) {
        (Some(name), _) if !name.is_empty() => name.to_owned(),
        (_, Some(prefix)) if !prefix.is_empty() => {
            format!("{prefix}{:05x}", (store.rv + 1) & 0xfffff)
        }
        _ => {
            return invalid(
                kind.group,
                kind.kind,
                "",
                &[FieldError::required(
                    "metadata.name",
                    "name or generateName is required",
                )],
            )
        }
    };
    if let Err(response) = validate(kind, &name, namespace, &object) {
        return response;
    }
    if store.get(kind, &key(kind, namespace, &name)).is_some() {
        return already_exists(kind, &name);
    }
    let mut managers = Vec::new();
    track_update(
        kind,
        &mut managers,
        None,
        &object,
        &field_manager(query, headers),
    );
    let stored = Stored { object, managers };
    let written = if dry_run(query) {
        stored.object
    } else {
        store.write(&shared.changes, kind, namespace, &name, stored)
    };
    json_response(StatusCode::CREATED, &written)
}

fn update(
    shared: &Shared,
    target: &Target,
    query: &Params,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let kind = target.kind;
    let (namespace, name) = (
        target.namespace(),
        target.name.as_deref().unwrap_or_default(),
    );
    let object = match parse_body(headers, body) {
        Ok(object) => object,
        Err(response) => return response,
    };
    let checked = check_type(kind, &object, false)
        .and_then(|()| check_identity(&object, name, namespace, kind))
        .and_then(|()| check_shape(kind, &object))
        .and_then(|()| validate(kind, name, namespace, &object));
    if let Err(response) = checked {
        return response;
    }
    let mut store = lock(&shared.store);
    let Some(current) = store.get(kind, &key(kind, namespace, name)).cloned() else {
        return not_found(kind, name);
    };
    match object["metadata"]["resourceVersion"]
        .as_str()
        .filter(|rv| !rv.is_empty())
    {
        Some(rv) if current.object["metadata"]["resourceVersion"] != rv => {
            return modified_conflict(kind, name)
        }
        None if kind.custom => {
            let error = FieldError {
                field: "metadata.resourceVersion".into(),
                reason: "FieldValueInvalid",
                detail: "Invalid value: 0x0: must be specified for an update".into(),
            };
            return invalid(kind.group, kind.kind, name, &[error]);
        }
        _ => {}
    }
    let mut managers = current.managers.clone();
    track_update(
        kind,
        &mut managers,
        Some(&current.object),
        &object,
        &field_manager(query, headers),
    );
    let stored = Stored { object, managers };
    let written = if dry_run(query) {
        stored.object
    } else {
        store.write(&shared.changes, kind, namespace, name, stored)
    };
    json_response(StatusCode::OK, &written)
}

fn patch(
    shared: &Shared,
    target: &Target,
    query: &Params,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let kind = target.kind;
    let (namespace, name) = (
        target.namespace(),
        target.name.as_deref().unwrap_or_default(),
    );
    let content_type = content_type(headers);
    let is_apply = content_type == "application/apply-patch+yaml";
    let force = query.get("force").map(String::as_str);
    let manager = query.get("fieldManager").cloned().unwrap_or_default();
    // The PatchOptions are validated first, as kube-apiserver does.
    if is_apply && manager.is_empty() {
        return invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            &[FieldError::required(
                "fieldManager",
                "is required for apply patch",
            )],
        );
    }
    if !is_apply && force.is_some() {
        return invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            &[FieldError::forbidden(
                "force",
                "may not be specified for non-apply patch",
            )],
        );
    }
    let parsed: Result<Value, String> = match content_type.as_str() {
        "application/apply-patch+yaml" => {
            serde_yaml_ng::from_slice(body).map_err(|e| e.to_string())
        }
        "application/merge-patch+json" => serde_json::from_slice(body).map_err(|e| e.to_string()),
        "application/strategic-merge-patch+json" if !kind.custom => {
            serde_json::from_slice(body).map_err(|e| e.to_string())
        }
        _ => {
            let strategic = if kind.custom {
                ""
            } else {
                ", application/strategic-merge-patch+json"
            };
            let message = format!("the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/apply-patch+yaml{strategic}");
            return status(415, "UnsupportedMediaType", &message, Value::Null);
        }
    };
    let patch = match parsed {
        Ok(patch) if patch.is_object() => patch,
        Ok(_) => return bad_request("the patch is not an object"),
        Err(e) => return bad_request(&format!("error decoding patch: {e}")),
    };
    if let Err(response) = check_shape(kind, &patch) {
        return response;
    }
    let mut store = lock(&shared.store);
    let current = store.get(kind, &key(kind, namespace, name)).cloned();
    let (stored, code) = if is_apply {
        let checked = check_type(kind, &patch, true)
            .and_then(|()| check_identity(&patch, name, namespace, kind));
        if let Err(response) = checked {
            return response;
        }
        if !patch["metadata"]["managedFields"].is_null() {
            return bad_request("metadata.managedFields must be nil");
        }
        match apply(
            kind,
            current.as_ref(),
            &patch,
            &manager,
            force == Some("true"),
        ) {
            Ok(stored) => (
                stored,
                if current.is_some() {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                },
            ),
            Err(conflicts) => return apply_conflict(&conflicts),
        }
    } else {
        let Some(current) = current else {
            return not_found(kind, name);
        };
        // A resourceVersion in the patch is a precondition.
        if let Some(rv) = patch["metadata"]["resourceVersion"].as_str() {
            if current.object["metadata"]["resourceVersion"] != rv {
                return modified_conflict(kind, name);
            }
        }
        let mut object = current.object.clone();
        merge_patch(&mut object, &patch);
        let mut managers = current.managers.clone();
        track_update(
            kind,
            &mut managers,
            Some(&current.object),
            &object,
            &field_manager(query, headers),
        );
        (Stored { object, managers }, StatusCode::OK)
    };
    let checked = check_shape(kind, &stored.object)
        .and_then(|()| validate(kind, name, namespace, &stored.object));
    if let Err(response) = checked {
        return response;
    }
    let written = if dry_run(query) {
        stored.object
    } else {
        store.write(&shared.changes, kind, namespace, name, stored)
    };
    json_response(code, &written)
}

fn delete(shared: &Shared, target: &Target, query: &Params) -> Response {
    let kind = target.kind;
    let (namespace, name) = (
        target.namespace(),
        target.name.as_deref().unwrap_or_default(),
    );
    let mut store = lock(&shared.store);
    if dry_run(query) {
        return match store.get(kind, &key(kind, namespace, name)) {
            Some(stored) => json_response(StatusCode::OK, &stored.object),
            None => not_found(kind, name),
        };
    }
    match store.remove(&shared.changes, kind, namespace, name) {
        Some(object) => json_response(StatusCode::OK, &object),
        None => not_found(kind, name),
    }
}
