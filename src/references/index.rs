//! The reference index: for every object of the five hook kinds, its identity and its executor
//! references (never the whole object), and the reverse view, Function name -> the hooks that
//! name it. Kept current by kube's watcher, one per kind.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::stash::{
    executor_refs, Executor, FieldPath, SpecHooks, StashKind, STASH_GROUP, STASH_VERSION,
};

/// Which object: kind, namespace (none for a cluster-scoped one) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: StashKind,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    /// `demo/BackupConfiguration/app-backup`, or `BackupBlueprint/b` for a cluster-scoped one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}/{}", self.kind, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// One hook that names a Function: the object, and the hook's path in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Referent {
    pub object: ObjectKey,
    /// `spec.hooks.preBackup`, `spec.members[2].hooks.postBackup`.
    pub hook: String,
}

impl fmt::Display for Referent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.object, self.hook)
    }
}

/// What the index keeps of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indexed {
    pub uid: String,
    pub resource_version: String,
    /// Each executor with the path of its `executor` field.
    pub executors: Vec<(FieldPath, Executor)>,
}

impl Indexed {
    /// The index's view of an object of `kind` as the API serves it; none without a name.
    pub fn of(kind: StashKind, object: &DynamicObject) -> Option<(ObjectKey, Indexed)> {
        let name = object.metadata.name.clone()?;
        let spec = object.data.get("spec").unwrap_or(&serde_json::Value::Null);
        // A spec the API server stored is JSON; should it not read, the object has no hooks.
        let spec = SpecHooks::from_value(spec).unwrap_or_default();
        let executors = executor_refs(kind, &spec)
            .into_iter()
            .map(|r| (r.path, r.executor.clone()))
            .collect();
        Some((
            ObjectKey {
                kind,
                namespace: object.metadata.namespace.clone(),
                name,
            },
            Indexed {
                uid: object.metadata.uid.clone().unwrap_or_default(),
                resource_version: object.metadata.resource_version.clone().unwrap_or_default(),
                executors,
            },
        ))
    }

    /// Each Function named, with the hook naming it.
    fn named(&self) -> impl Iterator<Item = (&str, String)> {
        self.executors.iter().filter_map(|(path, executor)| {
            let Executor::Ref {
                function: crate::stash::FunctionName::Named(name),
                ..
            } = executor
            else {
                return None;
            };
            let hook = path.as_str().trim_end_matches(".executor").to_owned();
            Some((name.as_str(), hook))
        })
    }
}

/// The objects, and for each Function name the objects whose hooks name it (their keys shared with
/// the objects' map, not copied: a cluster may hold tens of thousands).
#[derive(Default)]
struct State {
    objects: HashMap<Arc<ObjectKey>, Indexed>,
    by_function: HashMap<String, HashSet<Arc<ObjectKey>>>,
}

impl State {
    fn insert(&mut self, key: ObjectKey, indexed: Indexed) {
        self.remove(&key);
        let key = Arc::new(key);
        for (function, _) in indexed.named() {
            self.by_function
                .entry(function.to_owned())
                .or_default()
                .insert(key.clone());
        }
        self.objects.insert(key, indexed);
    }

    fn remove(&mut self, key: &ObjectKey) {
        let Some((key, old)) = self.objects.remove_entry(key) else {
            return;
        };
        for (function, _) in old.named() {
            if let Some(objects) = self.by_function.get_mut(function) {
                objects.remove(&key);
                if objects.is_empty() {
                    self.by_function.remove(function);
                }
            }
        }
    }

    /// The hooks that name `function`, in order.
    fn referents(&self, function: &str) -> Vec<Referent> {
        let mut referents: Vec<Referent> = self
            .by_function
            .get(function)
            .into_iter()
            .flatten()
            .filter_map(|key| Some((key, self.objects.get(key)?)))
            .flat_map(|(key, indexed)| {
                indexed
                    .named()
                    .filter(|(f, _)| *f == function)
                    .map(|(_, hook)| Referent {
                        object: ObjectKey::clone(key),
                        hook,
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        referents.sort();
        referents
    }
}

/// The index, shared by the protection webhook and the audit.
#[derive(Default)]
pub struct ReferenceIndex {
    state: RwLock<State>,
    synced: [AtomicBool; 5],
    /// Woken on every change, for the audit.
    changed: Notify,
}

impl ReferenceIndex {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A poisoned lock means a panic while writing; what it holds is still the best view.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an object as it is now.
    pub fn apply(&self, key: ObjectKey, indexed: Indexed) {
        self.write().insert(key, indexed);
        self.changed.notify_one();
    }

    /// Forgets an object.
    pub fn delete(&self, key: &ObjectKey) {
        self.write().remove(key);
        self.changed.notify_one();
    }

    /// Replaces every object of `kind` (after a LIST), and marks the kind synced.
    pub fn replace_kind(&self, kind: StashKind, objects: Vec<(ObjectKey, Indexed)>) {
        {
            let mut state = self.write();
            let stale: Vec<ObjectKey> = state
                .objects
                .keys()
                .filter(|k| k.kind == kind)
                .map(|k| ObjectKey::clone(k))
                .collect();
            for key in &stale {
                state.remove(key);
            }
            for (key, indexed) in objects {
                state.insert(key, indexed);
            }
        }
        self.synced[kind as usize].store(true, Ordering::Release);
        self.changed.notify_one();
    }

    /// True once every kind has been listed.
    pub fn is_synced(&self) -> bool {
        self.synced.iter().all(|s| s.load(Ordering::Acquire))
    }

    /// The hooks that name `function`, in order.
    pub fn referents(&self, function: &str) -> Vec<Referent> {
        self.read().referents(function)
    }

    /// How many objects the index holds.
    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `visit` with every object that has executors, under the index's lock: nothing is
    /// copied, so `visit` must be quick and must not wait.
    pub fn visit(&self, mut visit: impl FnMut(&ObjectKey, &Indexed)) {
        let state = self.read();
        for (key, indexed) in state
            .objects
            .iter()
            .filter(|(_, i)| !i.executors.is_empty())
        {
            visit(key, indexed);
        }
    }

    /// The executor at `path` of the object `key`, when the index holds one there.
    pub fn executor(&self, key: &ObjectKey, path: &str) -> Option<(FieldPath, Executor)> {
        self.read()
            .objects
            .get(key)?
            .executors
            .iter()
            .find(|(p, _)| p.as_str() == path)
            .cloned()
    }

    /// Resolves when the index changes.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// The API resource of a hook kind, for `Api<DynamicObject>`.
pub fn api_resource(kind: StashKind) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(STASH_GROUP, STASH_VERSION, kind.as_str()),
        kind.plural(),
    )
}

/// Every hook that names `function`, from live LISTs of the five kinds: what the protection
/// webhook confirms a would-be denial with, since the index may lag.
pub async fn list_referents(client: &Client, function: &str) -> Result<Vec<Referent>, kube::Error> {
    let mut referents = BTreeSet::new();
    for kind in StashKind::ALL {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &api_resource(kind));
        let mut params = kube::api::ListParams::default().limit(500);
        loop {
            let page = api.list(&params).await?;
            for object in &page.items {
                if let Some((key, indexed)) = Indexed::of(kind, object) {
                    referents.extend(indexed.named().filter(|(f, _)| *f == function).map(
                        |(_, hook)| Referent {
                            object: key.clone(),
                            hook,
                        },
                    ));
                }
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
    }
    Ok(referents.into_iter().collect())
}

/// Keeps `index` current: a watch of each of the five kinds, re-listing as kube's watcher decides
/// (on 410 Gone, after errors, with backoff). Runs until the tasks are aborted.
pub fn start(
    client: Client,
    index: Arc<ReferenceIndex>,
    metrics: Metrics,
) -> Vec<tokio::task::JoinHandle<()>> {
    StashKind::ALL
        .into_iter()
        .map(|kind| {
            tokio::spawn(watch_kind(
                client.clone(),
                kind,
                index.clone(),
                metrics.clone(),
            ))
        })
        .collect()
}

async fn watch_kind(client: Client, kind: StashKind, index: Arc<ReferenceIndex>, metrics: Metrics) {
    let api: Api<DynamicObject> = Api::all_with(client, &api_resource(kind));
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut initial = Vec::new();
    let mut last_error: Option<Instant> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => initial.clear(),
            Ok(Event::InitApply(object)) => initial.extend(Indexed::of(kind, &object)),
            Ok(Event::InitDone) => {
                let first = !index.synced[kind as usize].load(Ordering::Acquire);
                index.replace_kind(kind, std::mem::take(&mut initial));
                metrics.set_indexed_objects(index.len());
                if index.is_synced() && first {
                    metrics.set_index_synced(true);
                    tracing::info!(objects = index.len(), "reference index synced");
                }
            }
            Ok(Event::Apply(object)) => {
                if let Some((key, indexed)) = Indexed::of(kind, &object) {
                    index.apply(key, indexed);
                    metrics.set_indexed_objects(index.len());
                }
            }
            Ok(Event::Delete(object)) => {
                if let Some((key, _)) = Indexed::of(kind, &object) {
                    index.delete(&key);
                    metrics.set_indexed_objects(index.len());
                }
            }
            Err(err) => {
                metrics.record_watch_error(kind.plural());
                let quiet = last_error.is_some_and(|t| t.elapsed() < Duration::from_secs(60));
                if quiet {
                    tracing::debug!(%kind, error = %err, "watch failed; retrying");
                } else {
                    tracing::warn!(%kind, error = %err, "watch failed; retrying with backoff, Function protection confirms with live LISTs");
                    last_error = Some(Instant::now());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(
        kind: StashKind,
        ns: Option<&str>,
        name: &str,
        spec: serde_json::Value,
    ) -> (ObjectKey, Indexed) {
        let mut metadata =
            json!({"name": name, "uid": format!("uid-{name}"), "resourceVersion": "1"});
        if let Some(ns) = ns {
            metadata["namespace"] = json!(ns);
        }
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "stash.appscode.com/v1beta1", "kind": kind.as_str(), "metadata": metadata, "spec": spec
        }))
        .unwrap();
        Indexed::of(kind, &object).unwrap()
    }

    fn pre(function: &str) -> serde_json::Value {
        json!({"hooks": {"preBackup": {"executor": {"functionName": function}}}})
    }

    #[test]
    fn knows_which_hooks_name_a_function_as_objects_change() {
        let index = ReferenceIndex::default();
        let (k1, i1) = object(StashKind::BackupConfiguration, Some("demo"), "a", pre("f"));
        index.apply(k1.clone(), i1);
        let (k2, i2) = object(
            StashKind::BackupBatch,
            Some("demo"),
            "b",
            json!({"members": [{"hooks": {"postBackup": {"executor": {"functionName": "f"}}}}]}),
        );
        index.apply(k2, i2);
        let (k3, i3) = object(StashKind::BackupBlueprint, None, "c", pre("g"));
        index.apply(k3.clone(), i3);
        let shown: Vec<String> = index
            .referents("f")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            [
                "demo/BackupConfiguration/a (spec.hooks.preBackup)",
                "demo/BackupBatch/b (spec.members[0].hooks.postBackup)"
            ]
        );
        assert_eq!(
            index.referents("g")[0].to_string(),
            "BackupBlueprint/c (spec.hooks.preBackup)"
        );

        // Changed to name another Function, then deleted.
        let (k1, i1) = object(StashKind::BackupConfiguration, Some("demo"), "a", pre("g"));
        index.apply(k1.clone(), i1);
        assert_eq!(index.referents("f").len(), 1);
        assert_eq!(index.referents("g").len(), 2);
        index.delete(&k1);
        index.delete(&k3);
        assert!(index.referents("g").is_empty());
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn a_relist_replaces_the_objects_of_its_kind_only() {
        let index = ReferenceIndex::default();
        let (k1, i1) = object(
            StashKind::BackupConfiguration,
            Some("demo"),
            "gone",
            pre("f"),
        );
        index.apply(k1, i1);
        let (k2, i2) = object(
            StashKind::RestoreSession,
            Some("demo"),
            "kept",
            json!({"hooks": {"preRestore": {"executor": {"functionName": "f"}}}}),
        );
        index.apply(k2, i2);
        let fresh = vec![object(
            StashKind::BackupConfiguration,
            Some("demo"),
            "new",
            pre("f"),
        )];
        index.replace_kind(StashKind::BackupConfiguration, fresh);
        let names: Vec<String> = index
            .referents("f")
            .iter()
            .map(|r| r.object.name.clone())
            .collect();
        assert_eq!(names, ["new", "kept"]);
        assert!(!index.is_synced(), "only one kind listed");
        for kind in StashKind::ALL {
            index.replace_kind(kind, Vec::new());
        }
        assert!(index.is_synced());
    }
}
