//! The Function source: where the rules learn whether a named Function exists and can run a hook.
//!
//! Two implementations: [`ClusterSource`] (a watch-backed cache over the Kubernetes API, with a
//! live GET to confirm every would-be denial) and [`FileSource`] (Functions read from a file, for
//! trying the webhook without a cluster).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use thiserror::Error;

use crate::hooks::STASH_GROUP;
use crate::metrics::{LookupResult, LookupSource, Metrics};
use crate::rules::{Container, Resolution};

/// A map keyed by Function name. Every review hashes the names it resolves, so the hasher is
/// foldhash (randomly seeded per process, as hashbrown's default is) rather than SipHash, which
/// cost more than the lookups themselves.
pub type NameMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Answers "what is Function NAME?" for the rules.
pub trait FunctionSource: Send + Sync + 'static {
    /// Resolves one Function name, within `budget`.
    fn resolve<'a>(&'a self, name: &'a str, budget: Duration) -> BoxFuture<'a, Resolution>;
    /// Answers from memory when the answer is final, without waiting; `None` means "call
    /// [`FunctionSource::resolve`]". Most reviews are answered this way, so it must stay cheap.
    fn resolve_now(&self, _name: &str) -> Option<Resolution> {
        None
    }
    /// True once the source can answer from a complete view (file loaded, cache synced).
    fn is_ready(&self) -> bool;
    /// How many Functions the source holds.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A Function as this webhook reads it: its name, resourceVersion and image, nothing else.
/// Decoding only these fields keeps the watch cheap and the cache small.
#[derive(Debug, Clone, Deserialize)]
pub struct FunctionObject {
    #[serde(deserialize_with = "slim_meta", default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: FunctionSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct FunctionSpec {
    /// Kept as raw JSON so a Function with a malformed image is reported, not dropped from the watch.
    #[serde(default)]
    pub image: Option<Value>,
}

impl FunctionObject {
    pub fn container(&self) -> Container {
        Container::from_image(self.spec.image.as_ref())
    }
}

fn slim_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Slim {
        name: Option<String>,
        resource_version: Option<String>,
    }
    let slim = Slim::deserialize(d)?;
    Ok(ObjectMeta {
        name: slim.name,
        resource_version: slim.resource_version,
        ..ObjectMeta::default()
    })
}

impl kube::Resource for FunctionObject {
    type DynamicType = ();
    type Scope = kube::core::ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Function".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        STASH_GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1beta1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "functions".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Functions read once from a file: the source for `--functions-file` and `--dev`.
#[derive(Debug, Default)]
pub struct FileSource {
    functions: NameMap<String, Container>,
    metrics: Metrics,
}

/// A Functions file that cannot be used; the server refuses to start with it.
#[derive(Debug, Error)]
pub enum FunctionsFileError {
    #[error("cannot read Functions file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Functions file {path}: document {doc} is not valid YAML or JSON: {source}")]
    Parse {
        path: PathBuf,
        doc: usize,
        source: serde_yaml_ng::Error,
    },
    #[error("Functions file {path}: document {doc}: {what}; expected kind Function (apiVersion stash.appscode.com/v1beta1) with metadata.name, or a List of them")]
    NotAFunction {
        path: PathBuf,
        doc: usize,
        what: String,
    },
}

impl FileSource {
    pub fn from_path(path: &Path, metrics: Metrics) -> Result<Self, FunctionsFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| FunctionsFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_text(&text, path, metrics)
    }

    /// Reads one Function, several YAML documents, or a List (JSON is YAML too).
    pub fn from_text(
        text: &str,
        origin: &Path,
        metrics: Metrics,
    ) -> Result<Self, FunctionsFileError> {
        let mut functions = NameMap::default();
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let doc_no = i + 1;
            let value = Value::deserialize(doc).map_err(|source| FunctionsFileError::Parse {
                path: origin.to_owned(),
                doc: doc_no,
                source,
            })?;
            let not_a_function = |what: String| FunctionsFileError::NotAFunction {
                path: origin.to_owned(),
                doc: doc_no,
                what,
            };
            let items = match value.get("kind").and_then(Value::as_str) {
                _ if value.is_null() => continue, // an empty document, e.g. a trailing `---`
                Some(kind) if kind.ends_with("List") => match value.get("items") {
                    Some(Value::Array(items)) => items.clone(),
                    _ => return Err(not_a_function(format!("{kind} has no items list"))),
                },
                _ => vec![value],
            };
            for item in items {
                let kind = item.get("kind").and_then(Value::as_str).unwrap_or_default();
                let api_version = item
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if kind != "Function" || api_version != "stash.appscode.com/v1beta1" {
                    return Err(not_a_function(format!(
                        "found kind \"{kind}\" apiVersion \"{api_version}\""
                    )));
                }
                let object: FunctionObject =
                    serde_json::from_value(item).map_err(|e| not_a_function(e.to_string()))?;
                let Some(name) = object.metadata.name.clone().filter(|n| !n.is_empty()) else {
                    return Err(not_a_function("a Function has no metadata.name".into()));
                };
                functions.insert(name, object.container());
            }
        }
        metrics.set_cached_functions(functions.len());
        Ok(FileSource { functions, metrics })
    }
}

impl FileSource {
    fn lookup(&self, name: &str) -> Resolution {
        let resolution = match self.functions.get(name) {
            Some(container) => Resolution::Found(container.clone()),
            None => Resolution::NotFound,
        };
        self.metrics
            .record_lookup(LookupSource::File, LookupResult::of(&resolution));
        resolution
    }
}

impl FunctionSource for FileSource {
    fn resolve<'a>(&'a self, name: &'a str, _budget: Duration) -> BoxFuture<'a, Resolution> {
        futures::future::ready(self.lookup(name)).boxed()
    }

    fn resolve_now(&self, name: &str) -> Option<Resolution> {
        Some(self.lookup(name))
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn len(&self) -> usize {
        self.functions.len()
    }
}

/// Functions from the Kubernetes API: a watch keeps a map of name -> [`Container`] current, and
/// lookups answer from it with no API call. The cache may lag the API server, so it is trusted to
/// allow but never to deny: a miss, or a Function it holds as unusable, is confirmed with one live
/// GET. That is what keeps `kubectl apply -f dir/` (Function and BackupConfiguration together)
/// from being wrongly denied.
pub struct ClusterSource {
    api: Api<FunctionObject>,
    cache: Arc<Cache>,
    metrics: Metrics,
}

#[derive(Default)]
struct Cache {
    functions: RwLock<NameMap<String, Container>>,
    synced: AtomicBool,
}

impl Cache {
    fn len(&self) -> usize {
        self.functions.read().map(|m| m.len()).unwrap_or_default()
    }

    /// True when the cache holds `name` as a usable Function; no clone of what it holds.
    fn is_valid(&self, name: &str) -> bool {
        self.functions
            .read()
            .is_ok_and(|m| matches!(m.get(name), Some(Container::Valid)))
    }

    fn apply(&self, f: impl FnOnce(&mut NameMap<String, Container>)) -> usize {
        match self.functions.write() {
            Ok(mut m) => {
                f(&mut m);
                m.len()
            }
            // A poisoned lock means a panic while writing; recover the map rather than stop caching.
            Err(poisoned) => {
                let mut m = poisoned.into_inner();
                f(&mut m);
                m.len()
            }
        }
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

    async fn live_get(&self, name: &str, budget: Duration) -> Resolution {
        let resolution = match tokio::time::timeout(budget, self.api.get_opt(name)).await {
            Ok(Ok(Some(function))) => Resolution::Found(function.container()),
            Ok(Ok(None)) => Resolution::NotFound,
            Ok(Err(err)) => Resolution::Unverified(describe_api_error(&err)),
            Err(_) => Resolution::Unverified(format!(
                "the Kubernetes API did not answer within {} ms",
                budget.as_millis()
            )),
        };
        self.metrics
            .record_lookup(LookupSource::Api, LookupResult::of(&resolution));
        resolution
    }
}

impl FunctionSource for ClusterSource {
    fn resolve<'a>(&'a self, name: &'a str, budget: Duration) -> BoxFuture<'a, Resolution> {
        async move {
            if let Some(found) = self.resolve_now(name) {
                return found;
            }
            self.live_get(name, budget).await
        }
        .boxed()
    }

    /// Only a usable Function is final from the cache; anything else is confirmed live.
    fn resolve_now(&self, name: &str) -> Option<Resolution> {
        if !self.cache.is_valid(name) {
            return None;
        }
        let found = Resolution::Found(Container::Valid);
        self.metrics
            .record_lookup(LookupSource::Cache, LookupResult::of(&found));
        Some(found)
    }

    fn is_ready(&self) -> bool {
        self.cache.synced.load(Ordering::Acquire)
    }

    fn len(&self) -> usize {
        self.cache.len()
    }
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
    let mut initial: NameMap<String, Container> = NameMap::default();
    let mut last_error: Option<Instant> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => initial.clear(),
            Ok(Event::InitApply(f)) => {
                if let Some(name) = f.metadata.name.clone() {
                    initial.insert(name, f.container());
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
                    let container = f.container();
                    let n = cache.apply(|m| {
                        m.insert(name, container);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<FileSource, FunctionsFileError> {
        FileSource::from_text(text, Path::new("test.yaml"), Metrics::default())
    }

    #[tokio::test]
    async fn reads_multi_document_yaml_and_lists() {
        let source = load(
            "apiVersion: stash.appscode.com/v1beta1\nkind: Function\nmetadata: {name: a}\nspec: {image: busybox}\n---\n\
             apiVersion: v1\nkind: List\nitems:\n- {apiVersion: stash.appscode.com/v1beta1, kind: Function, metadata: {name: b}, spec: {}}\n---\n",
        )
        .unwrap();
        assert_eq!(source.len(), 2);
        let budget = Duration::from_secs(1);
        assert_eq!(
            source.resolve("a", budget).await,
            Resolution::Found(Container::Valid)
        );
        assert_eq!(
            source.resolve("b", budget).await,
            Resolution::Found(Container::NoImage)
        );
        assert_eq!(source.resolve("c", budget).await, Resolution::NotFound);
    }

    #[test]
    fn reads_json() {
        let source = load(r#"{"apiVersion":"stash.appscode.com/v1beta1","kind":"Function","metadata":{"name":"a"},"spec":{"image":"x"}}"#).unwrap();
        assert_eq!(source.len(), 1);
    }

    #[test]
    fn rejects_what_is_not_a_function() {
        let err = load("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Functions file test.yaml: document 1: found kind \"ConfigMap\" apiVersion \"v1\"; expected kind Function (apiVersion stash.appscode.com/v1beta1) with metadata.name, or a List of them"
        );
        let err =
            load("apiVersion: stash.appscode.com/v1beta1\nkind: Function\nspec: {}\n").unwrap_err();
        assert!(
            err.to_string().contains("a Function has no metadata.name"),
            "{err}"
        );
        let err = load("a: [").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Functions file test.yaml: document 1 is not valid YAML or JSON"),
            "{err}"
        );
    }
}
