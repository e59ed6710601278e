//! Referents from the Kubernetes API: a watch-backed cache, and a live GET to confirm every
//! would-be denial. One implementation for every referent kind.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use kube::core::ClusterResourceScope;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use super::{Referent, Source};
use crate::metrics::{LookupResult, LookupSource, Metrics};
use crate::rules::Resolution;

/// An object as the API serves it, decoded straight into what the rules need of it (never kept
/// whole, so the cache stays small).
pub trait Cached:
    Resource<DynamicType = (), Scope = ClusterResourceScope>
    + DeserializeOwned
    + Clone
    + fmt::Debug
    + Send
    + Sync
    + 'static
{
    type Referent: Referent;
    fn into_referent(self) -> (Option<String>, Arc<Self::Referent>);
}

/// Referents from the Kubernetes API: a watch keeps a map of name -> referent current, and
/// lookups answer from it with no API call. The cache may lag the API server, so it is trusted to
/// allow but never to deny: a miss, a referent it holds as unusable, or a verdict that denies on
/// what it holds, is confirmed with one live GET. That is what keeps `kubectl apply -f dir/` (a
/// Function, a Task and the BackupConfiguration together) from being wrongly denied.
pub struct ClusterSource<K: Cached> {
    api: Api<K>,
    cache: Arc<Cache<K::Referent>>,
    metrics: Metrics,
}

struct Cache<T> {
    items: RwLock<HashMap<String, Arc<T>>>,
    synced: AtomicBool,
    /// Woken on every change, for the audit.
    changed: tokio::sync::Notify,
}

impl<T: Referent> Cache<T> {
    fn new() -> Self {
        Cache {
            items: RwLock::new(HashMap::new()),
            synced: AtomicBool::new(false),
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

impl<K: Cached> ClusterSource<K> {
    /// Starts watching the referent kind on `client`. The watch runs until the returned task is
    /// aborted, re-listing as kube's watcher decides (on 410 Gone, after errors).
    pub fn start(client: Client, metrics: Metrics) -> (Self, tokio::task::JoinHandle<()>) {
        let api: Api<K> = Api::all(client);
        let cache = Arc::new(Cache::new());
        let task = tokio::spawn(run_watch(api.clone(), cache.clone(), metrics.clone()));
        (
            ClusterSource {
                api,
                cache,
                metrics,
            },
            task,
        )
    }

    /// What the cache holds for `name`, usable or not; for the audit and protection, which
    /// confirm what they report with [`Source::resolve`].
    pub fn cached(&self, name: &str) -> Option<Arc<K::Referent>> {
        self.cache.get(name)
    }

    /// Calls `visit` with every cached referent, under the cache's lock: it must be quick.
    pub fn visit(&self, mut visit: impl FnMut(&str, &K::Referent)) {
        if let Ok(items) = self.cache.items.read() {
            for (name, item) in items.iter() {
                visit(name, item);
            }
        }
    }

    /// Resolves when the cache changes.
    pub async fn changed(&self) {
        self.cache.changed.notified().await;
    }

    async fn live_get(&self, name: &str) -> Resolution<K::Referent> {
        let resolution = match self.api.get_opt(name).await {
            Ok(Some(object)) => Resolution::Found(object.into_referent().1),
            Ok(None) => Resolution::NotFound,
            Err(err) => Resolution::Unverified(describe_api_error::<K::Referent>(&err)),
        };
        self.metrics.record_lookup(
            K::Referent::PLURAL,
            LookupSource::Api,
            LookupResult::of(&resolution),
        );
        resolution
    }
}

impl<K: Cached> Source<K::Referent> for ClusterSource<K> {
    fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Resolution<K::Referent>> {
        self.live_get(name).boxed()
    }

    /// Only a referent that answers from the cache is answered there; anything else is looked up
    /// live.
    fn resolve_now(&self, name: &str) -> Option<Resolution<K::Referent>> {
        let found = self.cache.get(name).filter(|r| r.answers_from_cache())?;
        self.metrics.record_lookup(
            K::Referent::PLURAL,
            LookupSource::Cache,
            LookupResult::Found,
        );
        Some(Resolution::Found(found))
    }

    fn memory_may_lag(&self) -> bool {
        true
    }

    fn is_ready(&self) -> bool {
        self.cache.synced.load(Ordering::Acquire)
    }

    fn len(&self) -> usize {
        self.cache.len()
    }
}

/// Every referent of kind `K` in the cluster, by name: one LIST, no watch (for `check --cluster`).
/// A kind whose CRD is not installed has none.
pub async fn list<K: Cached>(client: Client) -> Result<HashMap<String, Arc<K::Referent>>, String> {
    let api: Api<K> = Api::all(client);
    let list = match api.list(&Default::default()).await {
        Ok(list) => list,
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(HashMap::new()),
        Err(err) => return Err(describe_api_error::<K::Referent>(&err)),
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

/// Turns a failed lookup into words an admin can act on.
fn describe_api_error<T: Referent>(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) if status.code == 403 => format!(
            "the Kubernetes API refused the lookup (403 Forbidden: {}); grant the webhook's ServiceAccount get, list and watch on {}.stash.appscode.com",
            status.message,
            T::PLURAL,
        ),
        kube::Error::Api(status) => format!(
            "the Kubernetes API answered {} {} ({})",
            status.code, status.reason, status.message
        ),
        other => format!("the Kubernetes API could not be reached ({other})"),
    }
}

async fn run_watch<K: Cached>(api: Api<K>, cache: Arc<Cache<K::Referent>>, metrics: Metrics) {
    let kind = K::Referent::KIND;
    let plural = K::Referent::PLURAL;
    let config = watcher::Config::default();
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut initial: HashMap<String, Arc<K::Referent>> = HashMap::new();
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
