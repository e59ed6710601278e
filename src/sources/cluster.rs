//! Referents from the Kubernetes API: a watch-backed cache, and a live GET to confirm every
//! would-be denial. One implementation for every referent kind.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ApiResource;
use kube::core::DynamicResourceScope;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{Referent, Source};
use crate::metrics::{LookupResult, LookupSource, Metrics};
use crate::rules::Resolution;

/// A referent's object as the API serves it: its name and resourceVersion, and what the rules need
/// of it, worked out once when it is decoded. Nothing else of the object is kept, so the cache
/// stays small.
#[derive(Debug, Clone)]
pub struct Object<R> {
    pub metadata: ObjectMeta,
    pub referent: Arc<R>,
}

impl<'de, R: Referent> Deserialize<'de> for Object<R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Whole, as JSON: the variables a referent reads may be anywhere in it.
        let object = Value::deserialize(d)?;
        let text = |path: &str| {
            object
                .pointer(path)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Ok(Object {
            metadata: ObjectMeta {
                name: text("/metadata/name"),
                namespace: text("/metadata/namespace"),
                resource_version: text("/metadata/resourceVersion"),
                ..ObjectMeta::default()
            },
            referent: Arc::new(R::from_object(&object)),
        })
    }
}

impl<R: Referent> kube::Resource for Object<R> {
    type DynamicType = ();
    // Dynamic, so one type serves both cluster-scoped and namespaced referents.
    type Scope = DynamicResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        R::KIND.into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        R::GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        R::VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        R::PLURAL.into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// An object of a kind that names referents, as LISTs and watches of many serve it, read for its
/// references alone: its identity and its `spec`. The rest (`managedFields`, the last-applied
/// annotation, `status`) is passed over as it is read, never built: at 50,000 objects, building
/// it took more time than the API server took to send it.
#[derive(Debug, Clone, Deserialize)]
pub struct SpecObject {
    #[serde(deserialize_with = "identity")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Value,
}

/// Of an object's metadata, what names it.
fn identity<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Identity {
        name: Option<String>,
        namespace: Option<String>,
        uid: Option<String>,
        resource_version: Option<String>,
    }
    let id = Identity::deserialize(d)?;
    Ok(ObjectMeta {
        name: id.name,
        namespace: id.namespace,
        uid: id.uid,
        resource_version: id.resource_version,
        ..ObjectMeta::default()
    })
}

impl kube::Resource for SpecObject {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(resource: &ApiResource) -> Cow<'_, str> {
        resource.kind.as_str().into()
    }
    fn group(resource: &ApiResource) -> Cow<'_, str> {
        resource.group.as_str().into()
    }
    fn version(resource: &ApiResource) -> Cow<'_, str> {
        resource.version.as_str().into()
    }
    fn plural(resource: &ApiResource) -> Cow<'_, str> {
        resource.plural.as_str().into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl<R: Referent> Object<R> {
    /// The name sources know it by (`NAMESPACE/NAME` for a namespaced referent), and the referent.
    fn into_referent(self) -> (Option<String>, Arc<R>) {
        let name = match (R::NAMESPACED, self.metadata.namespace) {
            (true, Some(namespace)) => self.metadata.name.map(|n| format!("{namespace}/{n}")),
            (true, None) => None,
            (false, _) => self.metadata.name,
        };
        (name, self.referent)
    }
}

/// Referents from the Kubernetes API: a watch keeps a map of name -> referent current, and
/// lookups answer from it with no API call. The cache may lag the API server, so it is trusted to
/// allow but never to deny: a miss, a referent it holds as unusable, or a verdict that denies on
/// what it holds, is confirmed with one live GET. That is what keeps `kubectl apply -f dir/` (a
/// Function, a Task and the BackupConfiguration together) from being wrongly denied.
pub struct ClusterSource<R: Referent> {
    client: Client,
    cache: Arc<Cache<R>>,
    metrics: Metrics,
}

struct Cache<T> {
    items: RwLock<HashMap<String, Arc<T>>>,
    synced: AtomicBool,
    /// The API server answered the list 404: the kind is not served (its CRD is not installed).
    absent: AtomicBool,
    /// Woken on every change, for the audit.
    changed: tokio::sync::Notify,
}

impl<T: Referent> Cache<T> {
    fn new() -> Self {
        Cache {
            items: RwLock::new(HashMap::new()),
            synced: AtomicBool::new(false),
            absent: AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn len(&self) -> usize {
        self.items.read().map(|m| m.len()).unwrap_or_default()
    }

    fn get(&self, name: &str) -> Option<Arc<T>> {
        self.items.read().ok()?.get(name).cloned()
    }

    fn apply(&self, f: impl FnOnce(&mut HashMap<String, Arc<T>>)) -> usize {
        // A poisoned lock means a panic while writing; recover the map rather than stop caching.
        let mut items = self.items.write().unwrap_or_else(|p| p.into_inner());
        f(&mut items);
        let n = items.len();
        drop(items);
        self.changed.notify_one();
        n
    }
}

impl<R: Referent> ClusterSource<R> {
    /// Starts watching the referent kind on `client`. The watch runs until the returned task is
    /// aborted, re-listing as kube's watcher decides (on 410 Gone, after errors).
    pub fn start(client: Client, metrics: Metrics) -> (Self, tokio::task::JoinHandle<()>) {
        let api: Api<Object<R>> = Api::all_with(client.clone(), &());
        let cache = Arc::new(Cache::new());
        let task = tokio::spawn(run_watch(api, cache.clone(), metrics.clone()));
        (
            ClusterSource {
                client,
                cache,
                metrics,
            },
            task,
        )
    }

    async fn live_get(&self, name: &str) -> Resolution<R> {
        let (api, name) = match (R::NAMESPACED, name.split_once('/')) {
            (true, Some((namespace, name))) => (
                Api::<Object<R>>::namespaced_with(self.client.clone(), namespace, &()),
                name,
            ),
            _ => (Api::all_with(self.client.clone(), &()), name),
        };
        let resolution = match api.get_opt(name).await {
            Ok(Some(object)) => Resolution::Found(object.into_referent().1),
            Ok(None) => Resolution::NotFound,
            Err(err) => Resolution::Unverified(describe_api_error::<R>(&err)),
        };
        self.metrics.record_lookup(
            R::RESOURCE,
            LookupSource::Api,
            LookupResult::of(&resolution),
        );
        resolution
    }
}

impl<R: Referent> Source<R> for ClusterSource<R> {
    fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Resolution<R>> {
        self.live_get(name).boxed()
    }

    /// Only a referent that answers from the cache is answered there; anything else is looked up
    /// live.
    fn resolve_now(&self, name: &str) -> Option<Resolution<R>> {
        let found = self.cache.get(name).filter(|r| r.answers_from_cache())?;
        self.metrics
            .record_lookup(R::RESOURCE, LookupSource::Cache, LookupResult::Found);
        Some(Resolution::Found(found))
    }

    fn cached(&self, name: &str) -> Option<Arc<R>> {
        self.cache.get(name)
    }

    fn changed(&self) -> BoxFuture<'_, ()> {
        self.cache.changed.notified().boxed()
    }

    fn memory_may_lag(&self) -> bool {
        true
    }

    fn is_ready(&self) -> bool {
        self.cache.synced.load(Ordering::Acquire) || !self.is_installed()
    }

    fn is_installed(&self) -> bool {
        !self.cache.absent.load(Ordering::Acquire)
    }

    fn len(&self) -> usize {
        self.cache.len()
    }
}

/// Every referent of kind `R` in the cluster, by name: one LIST, no watch (for `check --cluster`).
/// A kind whose CRD is not installed has none.
pub async fn list<R: Referent>(client: Client) -> Result<HashMap<String, Arc<R>>, String> {
    let api: Api<Object<R>> = Api::all_with(client, &());
    let list = match api.list(&Default::default()).await {
        Ok(list) => list,
        Err(err) if not_served(&err) => return Ok(HashMap::new()),
        Err(err) => return Err(describe_api_error::<R>(&err)),
    };
    Ok(list
        .items
        .into_iter()
        .filter_map(|object| {
            let (name, referent) = object.into_referent();
            Some((name?, referent))
        })
        .collect())
}

/// How many objects one page of a paginated LIST holds.
const PAGE: u32 = 500;

/// Every object `api` lists, page by page, to `each`: a cluster's worth of objects is never held
/// at once. None when the cluster does not serve the kind (its CRD is not installed).
pub async fn list_pages<K>(api: &Api<K>, mut each: impl FnMut(K)) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut params = kube::api::ListParams::default().limit(PAGE);
    loop {
        let page = match api.list(&params).await {
            Ok(page) => page,
            Err(err) if not_served(&err) => return Ok(()),
            Err(err) => return Err(err),
        };
        page.items.into_iter().for_each(&mut each);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// Whether the API server does not serve the resource asked for (its CRD is not installed): a
/// kind a cluster does not have, not a failure.
pub fn not_served(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}

/// The same for a watch: its first LIST was answered 404.
pub fn watch_not_served(err: &watcher::Error) -> bool {
    matches!(err, watcher::Error::InitialListFailed(err) if not_served(err))
}

/// Turns a failed lookup into words an admin can act on.
fn describe_api_error<T: Referent>(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) if status.code == 403 => format!(
            "the Kubernetes API refused the lookup (403 Forbidden: {}); grant the webhook's ServiceAccount get, list and watch on {}.{}",
            status.message,
            T::PLURAL,
            T::GROUP,
        ),
        kube::Error::Api(status) => format!(
            "the Kubernetes API answered {} {} ({})",
            status.code, status.reason, status.message
        ),
        other => format!("the Kubernetes API could not be reached ({other})"),
    }
}

async fn run_watch<R: Referent>(api: Api<Object<R>>, cache: Arc<Cache<R>>, metrics: Metrics) {
    let kind = R::KIND;
    let plural = R::RESOURCE;
    let config = watcher::Config::default();
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut initial: HashMap<String, Arc<R>> = HashMap::new();
    let mut last_error: Option<Instant> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => initial.clear(),
            Ok(Event::InitApply(object)) => {
                if let (Some(name), referent) = object.into_referent() {
                    initial.insert(name, referent);
                }
            }
            Ok(Event::InitDone) => {
                let fresh = std::mem::take(&mut initial);
                cache.absent.store(false, Ordering::Release);
                let n = cache.apply(|m| *m = fresh);
                metrics.set_cached(plural, n);
                if !cache.synced.swap(true, Ordering::AcqRel) {
                    tracing::info!(%kind, count = n, "cache synced");
                } else {
                    tracing::info!(%kind, count = n, "cache re-listed");
                }
            }
            Ok(Event::Apply(object)) => {
                if let (Some(name), referent) = object.into_referent() {
                    let n = cache.apply(|m| {
                        m.insert(name, referent);
                    });
                    metrics.set_cached(plural, n);
                }
            }
            Ok(Event::Delete(object)) => {
                if let (Some(name), _) = object.into_referent() {
                    let n = cache.apply(|m| {
                        m.remove(&name);
                    });
                    metrics.set_cached(plural, n);
                }
            }
            // The kind is not served: names of it go unchecked (and readiness does not wait for
            // it) until its CRD is installed and a retry lists it.
            Err(err) if watch_not_served(&err) => {
                if !cache.absent.swap(true, Ordering::AcqRel) {
                    tracing::info!(%kind, group = R::GROUP, "not served by this cluster (its CRD is not installed): its names are not checked until it is");
                    cache.changed.notify_one();
                }
            }
            Err(err) => {
                metrics.record_watch_error(plural);
                // Log the first error of a burst at warn, the rest at debug, so an outage does
                // not flood the log while the watcher backs off and retries.
                let quiet = last_error.is_some_and(|t| t.elapsed() < Duration::from_secs(60));
                if quiet {
                    tracing::debug!(%kind, error = %err, "watch failed; retrying");
                } else {
                    tracing::warn!(%kind, error = %err, "watch failed; retrying with backoff, lookups fall back to live GETs");
                    last_error = Some(Instant::now());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_object_keeps_its_identity_and_spec_and_nothing_else() {
        // Recorded from a kube-apiserver: annotations and managedFields as kubectl leaves them.
        let list: kube::core::ObjectList<SpecObject> =
            serde_json::from_str(include_str!("../../tests/fixtures/api/list.json")).unwrap();
        let object = &list.items[0];
        assert_eq!(object.metadata.name.as_deref(), Some("mysql-hook-executor"));
        assert_eq!(
            object.metadata.uid.as_deref(),
            Some("d15cd48e-ccf1-4bf1-aec0-41e086bfc35f")
        );
        assert_eq!(object.metadata.resource_version.as_deref(), Some("218"));
        assert!(object.metadata.annotations.is_none() && object.metadata.managed_fields.is_none());
        assert_eq!(
            object.spec,
            serde_json::json!({"args": ["--param-a=${a}"], "image": "appscode/mysql-hook:8.0.14"})
        );
        let specless: SpecObject = serde_json::from_str(r#"{"metadata": {"name": "x"}}"#).unwrap();
        assert!(specless.spec.is_null());
    }
}
