//! A stand-in Kubernetes API server for Functions (`functions.stash.appscode.com`, cluster-scoped).
//!
//! It speaks the REST protocol the way kube-apiserver does for a client such as `kube::Client`:
//! GET (200 object / 404 `Status`), LIST (with `metadata.resourceVersion`), WATCH (newline-delimited
//! events from a resourceVersion, BOOKMARKs, and an `ERROR` event carrying a 410 `Status` for a
//! compacted resourceVersion, sent with HTTP 200), and 403 `Status` bodies when access is denied.
//! The bodies follow `tests/fixtures/api/`, recorded from a real kube-apiserver.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

const PREFIX: &str = "/apis/stash.appscode.com/v1beta1/functions";

#[derive(Default)]
pub struct Counters {
    pub get: AtomicUsize,
    pub list: AtomicUsize,
    pub watch: AtomicUsize,
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
}

#[derive(Clone)]
struct Event {
    rv: u64,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct Store {
    rv: u64,
    /// Watches from a resourceVersion below this get 410 Gone (etcd compaction).
    compacted: u64,
    functions: BTreeMap<String, Value>,
    history: Vec<Event>,
}

struct Shared {
    store: Mutex<Store>,
    events: broadcast::Sender<Event>,
    /// Bumped to end every open watch stream (as when an API server restarts).
    drop_watches: watch::Sender<u64>,
    counters: Counters,
    forbidden: AtomicBool,
    fail_gets_with_500: AtomicBool,
    get_delay_ms: AtomicU64,
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
        let (events, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store {
                rv: 200,
                compacted: 0,
                ..Store::default()
            }),
            events,
            drop_watches: watch::channel(0).0,
            counters: Counters::default(),
            forbidden: AtomicBool::new(false),
            fail_gets_with_500: AtomicBool::new(false),
            get_delay_ms: AtomicU64::new(0),
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
            .route(PREFIX, get(list_or_watch))
            .route(&format!("{PREFIX}/{{name}}"), get(get_one))
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
        *self.server.lock().unwrap() = Some(task);
    }

    /// A `kube::Client` pointed at this server.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(format!("http://{}", self.addr).parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
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
        let mut store = self.shared.store.lock().unwrap();
        store.rv += 1;
        let rv = store.rv;
        let existed = store.functions.contains_key(name);
        let object = json!({
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "Function",
            "metadata": {
                "name": name,
                "resourceVersion": rv.to_string(),
                "uid": format!("00000000-0000-0000-0000-{rv:012}"),
                "creationTimestamp": "2026-11-24T22:36:49Z",
                "generation": 1,
                "managedFields": [{"apiVersion": "stash.appscode.com/v1beta1", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {".": {}, "f:args": {}, "f:image": {}}},
                    "manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-11-24T22:36:49Z"}]
            },
            "spec": spec
        });
        store.functions.insert(name.to_owned(), object.clone());
        let event = Event {
            rv,
            kind: if existed { "MODIFIED" } else { "ADDED" },
            object,
        };
        store.history.push(event.clone());
        let _ = self.shared.events.send(event);
    }

    pub fn delete_function(&self, name: &str) {
        let mut store = self.shared.store.lock().unwrap();
        let Some(mut object) = store.functions.remove(name) else {
            return;
        };
        store.rv += 1;
        let rv = store.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let event = Event {
            rv,
            kind: "DELETED",
            object,
        };
        store.history.push(event.clone());
        let _ = self.shared.events.send(event);
    }

    /// Answers every request with 403, as for a ServiceAccount without RBAC.
    pub fn set_forbidden(&self, on: bool) {
        self.shared.forbidden.store(on, Ordering::SeqCst);
    }

    pub fn set_get_delay(&self, delay: Duration) {
        self.shared
            .get_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn set_gets_fail_with_500(&self, on: bool) {
        self.shared.fail_gets_with_500.store(on, Ordering::SeqCst);
    }

    /// Forgets history (as etcd compaction does) and ends open watches, so the client's next
    /// watch from its last resourceVersion gets 410 Gone and must re-list.
    pub fn compact_and_drop_watches(&self) {
        {
            let mut store = self.shared.store.lock().unwrap();
            store.rv += 1;
            store.compacted = store.rv;
            store.history.clear();
        }
        self.shared.drop_watches.send_modify(|n| *n += 1);
    }

    /// Stops serving: connections are refused until [`ApiServer::restart`].
    pub async fn stop(&self) {
        let task = self.server.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        self.shared.drop_watches.send_modify(|n| *n += 1);
    }

    /// Serves again on the same address, with the same Functions.
    pub async fn restart(&self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(task) = self.server.lock().unwrap().take() {
            task.abort();
        }
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache, private"),
        ],
        body,
    )
        .into_response()
}

/// The 403 `Status` body kube-apiserver sends (`tests/fixtures/api/get-forbidden.json`).
fn forbidden(verb: &str, name: Option<&str>) -> Response {
    let user = "system:serviceaccount:stash-system:stash-webhook";
    let (message, details) = match name {
        Some(name) => (
            format!("functions.stash.appscode.com \"{name}\" is forbidden: User \"{user}\" cannot {verb} resource \"functions\" in API group \"stash.appscode.com\" at the cluster scope"),
            json!({"name": name, "group": "stash.appscode.com", "kind": "functions"}),
        ),
        None => (
            format!("functions.stash.appscode.com is forbidden: User \"{user}\" cannot {verb} resource \"functions\" in API group \"stash.appscode.com\" at the cluster scope"),
            json!({"group": "stash.appscode.com", "kind": "functions"}),
        ),
    };
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": "Forbidden", "details": details, "code": 403});
    json_response(StatusCode::FORBIDDEN, body.to_string().into_bytes())
}

async fn get_one(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    shared.counters.get.fetch_add(1, Ordering::SeqCst);
    let delay = shared.get_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if shared.forbidden.load(Ordering::SeqCst) {
        return forbidden("get", Some(&name));
    }
    if shared.fail_gets_with_500.load(Ordering::SeqCst) {
        let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Internal error occurred: etcdserver: request timed out", "reason": "InternalError",
            "details": {"causes": [{"message": "etcdserver: request timed out"}]}, "code": 500});
        return json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            body.to_string().into_bytes(),
        );
    }
    let found = shared.store.lock().unwrap().functions.get(&name).cloned();
    match found {
        Some(object) => json_response(StatusCode::OK, object.to_string().into_bytes()),
        None => {
            // tests/fixtures/api/get-missing.json
            let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("functions.stash.appscode.com \"{name}\" not found"), "reason": "NotFound",
                "details": {"name": name, "group": "stash.appscode.com", "kind": "functions"}, "code": 404});
            json_response(StatusCode::NOT_FOUND, body.to_string().into_bytes())
        }
    }
}

async fn list_or_watch(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    if watching {
        shared.counters.watch.fetch_add(1, Ordering::SeqCst);
    } else {
        shared.counters.list.fetch_add(1, Ordering::SeqCst);
    }
    if shared.forbidden.load(Ordering::SeqCst) {
        return forbidden(if watching { "watch" } else { "list" }, None);
    }
    if !watching {
        let store = shared.store.lock().unwrap();
        let items: Vec<Value> = store.functions.values().cloned().collect();
        let body = json!({"apiVersion": "stash.appscode.com/v1beta1", "items": items, "kind": "FunctionList",
            "metadata": {"continue": "", "resourceVersion": store.rv.to_string()}});
        return json_response(StatusCode::OK, body.to_string().into_bytes());
    }

    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let timeout = Duration::from_secs(
        query
            .get("timeoutSeconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(290),
    );
    let (replay, compacted, current) = {
        let store = shared.store.lock().unwrap();
        let replay: Vec<Event> = store
            .history
            .iter()
            .filter(|e| e.rv > from)
            .cloned()
            .collect();
        (replay, from < store.compacted, store.rv)
    };
    if compacted {
        // tests/fixtures/api/watch-gone.jsonl: the 410 travels inside a 200 response.
        let line = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": format!("too old resource version: {from} ({current})"),
            "reason": "Expired", "code": 410}});
        return json_response(StatusCode::OK, format!("{line}\n").into_bytes());
    }

    let mut live = shared.events.subscribe();
    let mut dropped = shared.drop_watches.subscribe();
    dropped.borrow_and_update();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        let line = |kind: &str, object: &Value| {
            Bytes::from(format!("{}\n", json!({"type": kind, "object": object})))
        };
        let bookmark = |rv: u64| {
            Bytes::from(format!(
                "{}\n",
                json!({"type": "BOOKMARK", "object": {"apiVersion": "stash.appscode.com/v1beta1", "kind": "Function",
                    "metadata": {"resourceVersion": rv.to_string()}}})
            ))
        };
        let mut last = from.max(current);
        for e in replay {
            last = last.max(e.rv);
            if tx.send(Ok(line(e.kind, &e.object))).await.is_err() {
                return;
            }
        }
        if bookmarks && tx.send(Ok(bookmark(last))).await.is_err() {
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
                    if tx.send(Ok(bookmark(last))).await.is_err() { return; }
                }
                event = live.recv() => match event {
                    Ok(e) if e.rv > from => {
                        last = last.max(e.rv);
                        if tx.send(Ok(line(e.kind, &e.object))).await.is_err() { return; }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                },
            }
        }
    });
    let body = Body::from_stream(tokio_stream_from(rx));
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

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, Infallible>>,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
