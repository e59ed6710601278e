//! The reference index: for every object of the five hook kinds, its identity, its executor
//! references and its Task references (never the whole object), and the reverse views, Function
//! name -> the objects whose hooks name it and Task name -> the objects that name it. Kept current
//! by kube's watcher, one per kind. Also the live LISTs that protection decides with, since the
//! index may lag.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{ApiResource, GroupVersionKind};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::rules::valid_object_name;
use crate::sources::{list_pages, watch_not_served, SpecObject};
use crate::stash::{
    executor_refs, task_refs, Executor, FieldPath, Name, SpecHooks, StashKind, TaskRef,
    STASH_GROUP, STASH_VERSION,
};
use crate::tasks::TaskObject;

/// Which object: kind, namespace (none for a cluster-scoped one) and name. The kind is a Stash
/// kind, or the name of another family's (`&'static str`, for KubeStash).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey<K = StashKind> {
    pub kind: K,
    pub namespace: Option<String>,
    pub name: String,
}

impl<K: fmt::Display> fmt::Display for ObjectKey<K> {
    /// `demo/BackupConfiguration/app-backup`, or `BackupBlueprint/b` for a cluster-scoped one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}/{}", self.kind, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// One place that names a referent: the object, and where in it: a hook naming a Function, or a
/// `task` field naming a Task.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Referent<K = StashKind> {
    pub object: ObjectKey<K>,
    /// A hook (`spec.hooks.preBackup`, `spec.members[2].hooks.postBackup`) or a task field
    /// (`spec.task`, `spec.members[2].task`).
    pub path: String,
}

impl<K: fmt::Display> fmt::Display for Referent<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.object, self.path)
    }
}

/// What the index keeps of one object: no more than the audit and its Events need, since a
/// cluster may hold tens of thousands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indexed {
    /// For the Events' reference to the object.
    pub uid: String,
    /// Each executor with the path of its `executor` field.
    pub executors: Vec<(FieldPath, Executor)>,
    /// Each Task reference, where it is and what it says (the name and the names of the params it
    /// gives, as the Task rules judge them). What it says is shared by every object that says
    /// the same, as most objects naming a Task do: tens of thousands of objects name a few dozen
    /// Tasks.
    pub tasks: Box<[(TaskAt, Arc<TaskRef>)]>,
}

/// Where an object names its Task: `spec.task`, or `spec.members[i].task` of a batch. Kept as
/// the member's index, not as a path: the path is the same text in almost every object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskAt {
    Spec,
    Member(u32),
}

impl TaskAt {
    /// Where a Task reference found by [`task_refs`] is.
    fn of(path: &FieldPath) -> Option<TaskAt> {
        let path = path.as_str();
        if path == "spec.task" {
            return Some(TaskAt::Spec);
        }
        let member = path.strip_prefix("spec.members[")?.strip_suffix("].task")?;
        member.parse().ok().map(TaskAt::Member)
    }

    /// The path of the `task` field.
    pub fn path(self) -> FieldPath {
        match self {
            TaskAt::Spec => FieldPath::from("spec.task"),
            TaskAt::Member(i) => FieldPath::from(format!("spec.members[{i}].task").as_str()),
        }
    }
}

impl Indexed {
    /// The index's view of an object of `kind` as the API serves it; none without a name.
    pub fn of(kind: StashKind, object: &SpecObject) -> Option<(ObjectKey, Indexed)> {
        let name = object.metadata.name.clone()?;
        // A spec the API server stored is JSON; should it not read, the object has no hooks.
        let spec = SpecHooks::from_value(&object.spec).unwrap_or_default();
        let executors = executor_refs(kind, &spec)
            .into_iter()
            .map(|r| (r.path, r.executor.clone()))
            .collect();
        let tasks = task_refs(kind, &spec)
            .into_iter()
            .filter_map(|u| Some((TaskAt::of(&u.path)?, Arc::new(u.task.clone()))))
            .collect();
        Some((
            ObjectKey {
                kind,
                namespace: object.metadata.namespace.clone(),
                name,
            },
            Indexed {
                uid: object.metadata.uid.clone().unwrap_or_default(),

                executors,
                tasks,
            },
        ))
    }

    /// Each Function named, with the hook naming it.
    fn named(&self) -> impl Iterator<Item = (&str, String)> {
        self.executors.iter().filter_map(|(path, executor)| {
            let Executor::Ref {
                function: crate::stash::Name::Named(name),
                ..
            } = executor
            else {
                return None;
            };
            let hook = path.as_str().trim_end_matches(".executor").to_owned();
            Some((name.as_str(), hook))
        })
    }

    /// Each Task named, with where the `task` field naming it is. A name that cannot be an
    /// object's (a blueprint's templated one, filled in per target) names no Task.
    fn named_tasks(&self) -> impl Iterator<Item = (&str, TaskAt)> {
        self.tasks.iter().filter_map(|(at, task)| match &task.name {
            Name::Named(name) if valid_object_name(name) => Some((name.as_str(), *at)),
            _ => None,
        })
    }

    /// Whether the object holds any reference the index keeps.
    fn refers(&self) -> bool {
        !(self.executors.is_empty() && self.tasks.is_empty())
    }
}

/// The objects, and for each Function name the objects whose hooks name it, for each Task name the
/// objects that name it (their keys shared with the objects' map, not copied: a cluster may hold
/// tens of thousands).
#[derive(Default)]
struct State {
    objects: HashMap<Arc<ObjectKey>, Indexed>,
    by_function: HashMap<String, HashSet<Arc<ObjectKey>>>,
    by_task: HashMap<String, HashSet<Arc<ObjectKey>>>,
    /// Each distinct Task reference the objects hold, once.
    task_refs: HashSet<Arc<TaskRef>>,
}

/// Adds `key` under `name` in a reverse map.
fn link(map: &mut HashMap<String, HashSet<Arc<ObjectKey>>>, name: &str, key: &Arc<ObjectKey>) {
    match map.get_mut(name) {
        Some(objects) => {
            objects.insert(key.clone());
        }
        None => {
            map.insert(name.to_owned(), HashSet::from([key.clone()]));
        }
    }
}

/// Takes `key` out from under `name` in a reverse map, and the name with it once nothing is left.
fn unlink(map: &mut HashMap<String, HashSet<Arc<ObjectKey>>>, name: &str, key: &ObjectKey) {
    if let Some(objects) = map.get_mut(name) {
        objects.remove(key);
        if objects.is_empty() {
            map.remove(name);
        }
    }
}

impl State {
    /// Makes `indexed` hold the index's copy of each of its Task references, adding those the
    /// index does not hold yet.
    fn share(&mut self, indexed: &mut Indexed) {
        for (_, task) in indexed.tasks.iter_mut() {
            match self.task_refs.get(task) {
                Some(shared) => *task = shared.clone(),
                None => {
                    self.task_refs.insert(task.clone());
                }
            }
        }
    }

    fn insert(&mut self, key: ObjectKey, mut indexed: Indexed) {
        self.remove(&key);
        self.share(&mut indexed);
        let key = Arc::new(key);
        for (function, _) in indexed.named() {
            link(&mut self.by_function, function, &key);
        }
        for (task, _) in indexed.named_tasks() {
            link(&mut self.by_task, task, &key);
        }
        self.objects.insert(key, indexed);
    }

    fn remove(&mut self, key: &ObjectKey) {
        let Some((key, old)) = self.objects.remove_entry(key) else {
            return;
        };
        for (function, _) in old.named() {
            unlink(&mut self.by_function, function, &key);
        }
        for (task, _) in old.named_tasks() {
            unlink(&mut self.by_task, task, &key);
        }
        // A Task reference no other object holds is forgotten with the last one: once this
        // object's copies are gone, each is held here and by the set alone.
        let mut held: Vec<Arc<TaskRef>> = old.tasks.iter().map(|(_, t)| t.clone()).collect();
        drop(old);
        held.sort_by_key(Arc::as_ptr);
        held.dedup_by(|a, b| Arc::ptr_eq(a, b));
        for task in held {
            if Arc::strong_count(&task) == 2 {
                self.task_refs.remove(&task);
            }
        }
    }

    /// The `task` fields that name `task`, in order.
    fn task_referents(&self, task: &str) -> Vec<Referent> {
        self.places(self.by_task.get(task), |indexed| {
            let named = indexed.named_tasks().filter(|(t, _)| *t == task);
            named.map(|(_, at)| at.path().as_str().to_owned()).collect()
        })
    }

    /// The hooks that name `function`, in order.
    fn referents(&self, function: &str) -> Vec<Referent> {
        self.places(self.by_function.get(function), |indexed| {
            let named = indexed.named().filter(|(f, _)| *f == function);
            named.map(|(_, hook)| hook).collect()
        })
    }

    /// The places (`at`: an object's field paths) of the objects `keys`, sorted.
    fn places(
        &self,
        keys: Option<&HashSet<Arc<ObjectKey>>>,
        at: impl Fn(&Indexed) -> Vec<String>,
    ) -> Vec<Referent> {
        let mut referents: Vec<Referent> = keys
            .into_iter()
            .flatten()
            .filter_map(|key| Some((key, self.objects.get(key)?)))
            .flat_map(|(key, indexed)| {
                at(indexed).into_iter().map(|path| Referent {
                    object: ObjectKey::clone(key),
                    path,
                })
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

    /// The index's view of an object of `kind` (see [`Indexed::of`]), holding the index's copy of
    /// each of its Task references. The watches read objects this way, so that what a LIST of
    /// thousands of objects naming a few Tasks gathers before it is applied is not thousands of
    /// copies of the same references.
    pub fn indexed(&self, kind: StashKind, object: &SpecObject) -> Option<(ObjectKey, Indexed)> {
        let (key, mut indexed) = Indexed::of(kind, object)?;
        if !indexed.tasks.is_empty() {
            self.write().share(&mut indexed);
        }
        Some((key, indexed))
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
            // A Task reference held by nothing else any more (one that a reader still held
            // when its last object went) goes now.
            state.task_refs.retain(|t| Arc::strong_count(t) > 1);
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

    /// The `task` fields that name `task`, in order.
    pub fn task_referents(&self, task: &str) -> Vec<Referent> {
        self.read().task_referents(task)
    }

    /// How many objects the index holds.
    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `visit` with every object that has executors or Task references, under the index's
    /// lock: nothing is copied, so `visit` must be quick and must not wait.
    pub fn visit(&self, mut visit: impl FnMut(&ObjectKey, &Indexed)) {
        let state = self.read();
        for (key, indexed) in state.objects.iter().filter(|(_, i)| i.refers()) {
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

    /// The Task reference at `path` of the object `key`, when the index holds one there.
    pub fn task(&self, key: &ObjectKey, path: &str) -> Option<(FieldPath, Arc<TaskRef>)> {
        self.read()
            .objects
            .get(key)?
            .tasks
            .iter()
            .map(|(at, task)| (at.path(), task))
            .find(|(p, _)| p.as_str() == path)
            .map(|(p, task)| (p, task.clone()))
    }

    /// How many distinct Task references the objects hold.
    #[cfg(test)]
    fn distinct_task_refs(&self) -> usize {
        self.read().task_refs.len()
    }

    /// Resolves when the index changes.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// The API resource of a hook kind, for `Api<SpecObject>`.
pub fn api_resource(kind: StashKind) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(STASH_GROUP, STASH_VERSION, kind.as_str()),
        kind.plural(),
    )
}

/// What live LISTs of the five kinds found: the hooks that name a Function, and for each of some
/// Tasks the `task` fields that name it, each in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listed {
    pub hooks: Vec<Referent>,
    pub tasks: BTreeMap<String, Vec<Referent>>,
}

/// Every hook that names `function` (when one is given) and every `task` field that names one of
/// `tasks`, from live LISTs of the five kinds (side by side, each page by page): what protection
/// decides with, since the index may lag. The caller bounds the time it may take.
pub async fn list_referents(
    client: &Client,
    function: Option<&str>,
    tasks: &BTreeSet<String>,
) -> Result<Listed, kube::Error> {
    let kinds = StashKind::ALL.map(|kind| list_kind(client, kind, function, tasks));
    let mut listed = Listed::default();
    for found in futures::future::try_join_all(kinds).await? {
        listed.hooks.extend(found.hooks);
        for (task, referents) in found.tasks {
            listed.tasks.entry(task).or_default().extend(referents);
        }
    }
    listed.hooks.sort();
    for referents in listed.tasks.values_mut() {
        referents.sort();
    }
    Ok(listed)
}

async fn list_kind(
    client: &Client,
    kind: StashKind,
    function: Option<&str>,
    tasks: &BTreeSet<String>,
) -> Result<Listed, kube::Error> {
    let api: Api<SpecObject> = Api::all_with(client.clone(), &api_resource(kind));
    let mut listed = Listed::default();
    list_pages(&api, |object| {
        let Some((key, indexed)) = Indexed::of(kind, &object) else {
            return;
        };
        if let Some(function) = function {
            let hooks = indexed.named().filter(|(f, _)| *f == function);
            listed.hooks.extend(hooks.map(|(_, hook)| Referent {
                object: key.clone(),
                path: hook,
            }));
        }
        for (task, at) in indexed.named_tasks().filter(|(t, _)| tasks.contains(*t)) {
            listed
                .tasks
                .entry(task.to_owned())
                .or_default()
                .push(Referent {
                    object: key.clone(),
                    path: at.path().as_str().to_owned(),
                });
        }
    })
    .await?;
    Ok(listed)
}

/// Every Task whose steps name `function`, with the indexes of those steps, from a live LIST of
/// Tasks (page by page). A cluster without the Task CRD has none.
pub async fn list_tasks_naming(
    client: &Client,
    function: &str,
) -> Result<BTreeMap<String, Vec<usize>>, kube::Error> {
    let api: Api<TaskObject> = Api::all(client.clone());
    let mut naming = BTreeMap::new();
    list_pages(&api, |object| {
        let steps: Vec<usize> = object
            .referent
            .steps
            .iter()
            .enumerate()
            .filter(|(_, step)| step.function.as_deref() == Some(function))
            .map(|(i, _)| i)
            .collect();
        if let (false, Some(name)) = (steps.is_empty(), object.metadata.name) {
            naming.insert(name, steps);
        }
    })
    .await?;
    Ok(naming)
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
    let api: Api<SpecObject> = Api::all_with(client, &api_resource(kind));
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut initial = Vec::new();
    let mut last_error: Option<Instant> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => initial.clear(),
            Ok(Event::InitApply(object)) => initial.extend(index.indexed(kind, &object)),
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
                if let Some((key, indexed)) = index.indexed(kind, &object) {
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
            // The kind is not served (a cluster with KubeStash alone): it has no objects, and the
            // index counts it as listed, so the audit of what is installed goes on. A retry lists
            // it once its CRD is installed.
            Err(err) if watch_not_served(&err) => {
                if !index.synced[kind as usize].load(Ordering::Acquire) {
                    tracing::info!(%kind, "not served by this cluster (its CRD is not installed): no objects of it to index");
                    index.replace_kind(kind, Vec::new());
                    if index.is_synced() {
                        metrics.set_index_synced(true);
                        tracing::info!(objects = index.len(), "reference index synced");
                    }
                }
            }
            Err(err) => {
                metrics.record_watch_error(kind.plural());
                let quiet = last_error.is_some_and(|t| t.elapsed() < Duration::from_secs(60));
                if quiet {
                    tracing::debug!(%kind, error = %err, "watch failed; retrying");
                } else {
                    tracing::warn!(%kind, error = %err, "watch failed; retrying with backoff, protection decides with live LISTs");
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
        let object: SpecObject = serde_json::from_value(json!({
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

    fn task(name: &str) -> serde_json::Value {
        json!({"task": {"name": name, "params": [{"name": "outputDir", "value": "/tmp"}]}})
    }

    #[test]
    fn knows_which_objects_name_a_task_as_they_change() {
        let index = ReferenceIndex::default();
        let (k1, i1) = object(
            StashKind::BackupConfiguration,
            Some("demo"),
            "a",
            task("pg-backup"),
        );
        assert_eq!(
            *i1.tasks,
            [(
                TaskAt::Spec,
                Arc::new(TaskRef {
                    name: Name::Named("pg-backup".into()),
                    params: crate::stash::TaskParams::Names(vec![Some("outputDir".into())]),
                })
            )]
        );
        index.apply(k1.clone(), i1);
        let (k2, i2) = object(
            StashKind::BackupBatch,
            Some("demo"),
            "b",
            json!({"members": [{"task": {"name": "other"}}, {"task": {"name": "pg-backup"}}, {"task": {"name": "pg-backup"}}]}),
        );
        index.apply(k2.clone(), i2);
        // A blueprint's templated name is filled in per target: it names no Task.
        let (k3, i3) = object(
            StashKind::BackupBlueprint,
            None,
            "c",
            task("pg-backup-${TARGET_APP_VERSION}"),
        );
        index.apply(k3.clone(), i3);
        let shown = |task: &str| -> Vec<String> {
            index
                .task_referents(task)
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(
            shown("pg-backup"),
            [
                "demo/BackupConfiguration/a (spec.task)",
                "demo/BackupBatch/b (spec.members[1].task)",
                "demo/BackupBatch/b (spec.members[2].task)"
            ]
        );
        assert_eq!(
            shown("other"),
            ["demo/BackupBatch/b (spec.members[0].task)"]
        );
        assert!(
            index.referents("pg-backup").is_empty(),
            "Functions and Tasks apart"
        );
        assert_eq!(
            index
                .task(&k2, "spec.members[0].task")
                .map(|(_, t)| t.name.clone()),
            Some(Name::Named("other".into()))
        );
        let mut visited = 0;
        index.visit(|_, _| visited += 1);
        assert_eq!(visited, 3, "objects with Task references are visited");
        // The same reference is held once: a's (pg-backup with outputDir), b's two, c's.
        assert_eq!(index.distinct_task_refs(), 4);

        // Changed to name another Task, then deleted.
        let (k1, i1) = object(
            StashKind::BackupConfiguration,
            Some("demo"),
            "a",
            task("other"),
        );
        index.apply(k1.clone(), i1);
        assert_eq!(shown("pg-backup").len(), 2);
        assert_eq!(shown("other").len(), 2);
        index.delete(&k2);
        index.delete(&k1);
        assert!(shown("pg-backup").is_empty() && shown("other").is_empty());
        assert!(
            index.read().by_task.is_empty(),
            "no empty entries left behind"
        );
        assert_eq!(index.distinct_task_refs(), 1, "the blueprint's, still held");
        index.delete(&k3);
        assert_eq!(index.distinct_task_refs(), 0);
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
