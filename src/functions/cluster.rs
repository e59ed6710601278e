//! Functions from the Kubernetes API: a watch-backed cache, and a live GET to confirm every
//! would-be denial.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};

use super::{FunctionObject, FunctionSource};
use crate::metrics::{LookupResult, LookupSource, Metrics};
use crate::rules::{Container, Function, Resolution};

/// Functions from the Kubernetes API: a watch keeps a map of name -> [`Function`] current, and
/// lookups answer from it with no API call. The cache may lag the API server, so it is trusted to
/// allow but never to deny: a miss, a Function it holds as unusable, or a verdict that denies on
/// what it holds, is confirmed with one live GET. That is what keeps `kubectl apply -f dir/` (Function and BackupConfiguration together)
/// from being wrongly denied.
pub struct ClusterSource {
    api: Api<FunctionObject>,
    cache: Arc<Cache>,
    metrics: Metrics,
}

#[derive(Default)]
struct Cache {
    functions: RwLock<HashMap<String, Arc<Function>>>,
    synced: AtomicBool,
    /// Woken on every change, for the audit.
    changed: tokio::sync::Notify,
}

impl Cache {
    fn len(&self) -> usize {
        self.functions.read().map(|m| m.len()).unwrap_or_default()
    }

    /// What the cache holds for `name`, when it is a usable Function.
    fn usable(&self, name: &str) -> Option<Arc<Function>> {
        let functions = self.functions.read().ok()?;
        functions
            .get(name)
            .filter(|f| f.container == Container::Valid)
            .cloned()
    }

    fn apply(&self, f: impl FnOnce(&mut HashMap<String, Arc<Function>>)) -> usize {
        // A poisoned lock means a panic while writing; recover the map rather than stop caching.
        let mut functions = self.functions.write().unwrap_or_else(|p| p.into_inner());
        f(&mut functions);
        let n = functions.len();
        drop(functions);
        self.changed.notify_one();
        n
    }
}

impl ClusterSource {
    /// Starts watching Functions on `client`. The watch runs until the returned source is dropped
    /// with its task aborted, re-listing as kube's watcher decides (on 410 Gone, after errors).
    pub fn start(client: Client, metrics: Metrics) -> (Self, tokio::task::JoinHandle<()>) {
        let api: Api<FunctionObject> = Api::all(client);
        let cache = Arc::new(Cache::default());
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

    /// What the cache holds for `name`, usable or not; for the audit, which confirms what it
    /// reports with [`FunctionSource::resolve`].
    pub fn cached(&self, name: &str) -> Option<Arc<Function>> {
        let functions = self.cache.functions.read().ok()?;
        functions.get(name).cloned()
    }

    /// Resolves when the cache changes.
    pub async fn changed(&self) {
        self.cache.changed.notified().await;
    }

    async fn live_get(&self, name: &str) -> Resolution {
        let resolution = match self.api.get_opt(name).await {
            Ok(Some(object)) => Resolution::Found(object.function),
            Ok(None) => Resolution::NotFound,
            Err(err) => Resolution::Unverified(describe_api_error(&err)),
        };
        self.metrics
            .record_lookup(LookupSource::Api, LookupResult::of(&resolution));
        resolution
    }
}

impl FunctionSource for ClusterSource {
    fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Resolution> {
        self.live_get(name).boxed()
    }

    /// Only a usable Function is answered from the cache; anything else is looked up live.
    fn resolve_now(&self, name: &str) -> Option<Resolution> {
        let found = Resolution::Found(self.cache.usable(name)?);
        self.metrics
            .record_lookup(LookupSource::Cache, LookupResult::of(&found));
        Some(found)
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

/// Every Function in the cluster, by name: one LIST, no watch (for `check --cluster`).
pub async fn list_functions(client: Client) -> Result<HashMap<String, Arc<Function>>, String> {
    let api: Api<FunctionObject> = Api::all(client);
    let list = api
        .list(&Default::default())
        .await
        .map_err(|err| describe_api_error(&err))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|f| Some((f.metadata.name?, f.function)))
        .collect())
}

/// Turns a failed lookup into words an admin can act on.
fn describe_api_error(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) if status.code == 403 => format!(
            "the Kubernetes API refused the lookup (403 Forbidden: {}); grant the webhook's ServiceAccount get, list and watch on functions.stash.appscode.com",
            status.message
        ),
        kube::Error::Api(status) => format!(
            "the Kubernetes API answered {} {} ({})",
            status.code, status.reason, status.message
        ),
        other => format!("the Kubernetes API could not be reached ({other})"),
    }
}

async fn run_watch(api: Api<FunctionObject>, cache: Arc<Cache>, metrics: Metrics) {
    let config = watcher::Config::default();
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut initial: HashMap<String, Arc<Function>> = HashMap::new();
    let mut last_error: Option<Instant> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => initial.clear(),
            Ok(Event::InitApply(f)) => {
                if let Some(name) = f.metadata.name.clone() {
                    initial.insert(name, f.function);
                }
            }
            Ok(Event::InitDone) => {
                let fresh = std::mem::take(&mut initial);
                let n = cache.apply(|m| *m = fresh);
                metrics.set_cached_functions(n);
                if !cache.synced.swap(true, Ordering::AcqRel) {
                    tracing::info!(functions = n, "Function cache synced");
                } else {
                    tracing::info!(functions = n, "Function cache re-listed");
                }
            }
            Ok(Event::Apply(f)) => {
                if let Some(name) = f.metadata.name.clone() {
                    let function = f.function;
                    let n = cache.apply(|m| {
                        m.insert(name, function);
                    });
                    metrics.set_cached_functions(n);
                }
            }
            Ok(Event::Delete(f)) => {
                if let Some(name) = &f.metadata.name {
                    let n = cache.apply(|m| {
                        m.remove(name);
                    });
                    metrics.set_cached_functions(n);
                }
            }
            Err(err) => {
                metrics.record_watch_error();
                // Log the first error of a burst at warn, the rest at debug, so an outage does
                // not flood the log while the watcher backs off and retries.
                let quiet = last_error.is_some_and(|t| t.elapsed() < Duration::from_secs(60));
                if quiet {
                    tracing::debug!(error = %err, "Function watch failed; retrying");
                } else {
                    tracing::warn!(error = %err, "Function watch failed; retrying with backoff, lookups fall back to live GETs");
                    last_error = Some(Instant::now());
                }
            }
        }
    }
}
