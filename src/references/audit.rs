//! The audit: every hook whose executor cannot be resolved, and every `task` whose Task cannot
//! run (the referent deleted with the annotation, broken by an edit, or the object admitted while
//! the webhook was not in the path), gets a `Warning` Event, and a `Normal` one when it is fixed.
//! One replica writes them, the holder of a Lease; admission stays active on every replica.
//!
//! KubeStash objects get the same: every `addon` whose Addon (or task of it) is missing or cannot
//! run, and every hook whose HookTemplate is, judged by the KubeStash rules on each pass against
//! the watched Addons, Functions and HookTemplates, the objects themselves listed live.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

use super::index::{self, ObjectKey, ReferenceIndex};
use super::protect::kubestash::ObjectKey as KubeStashKey;
use crate::functions::ClusterSource;
use crate::metrics::Metrics;
use crate::rules::tasks::{self as task_rules, Task};
use crate::rules::{self, valid_object_name, Function, Policy, Resolution, Verdict};
use crate::sources::Source;
use crate::stash::{Executor, ExecutorRef, FieldPath, Name, StashKind, TaskRef, TaskUse};
use crate::stash::{STASH_GROUP, STASH_VERSION};
use crate::tasks::ClusterSource as TaskSource;
use crate::validator::KubeStashSources;

/// The Event reasons, as `kubectl get events --field-selector reason=...` finds them.
pub const NOT_FOUND: &str = "ExecutorFunctionNotFound";
pub const UNUSABLE: &str = "ExecutorFunctionUnusable";
pub const RESOLVED: &str = "ExecutorFunctionResolved";
/// A `task` names a Task that does not exist.
pub const TASK_NOT_FOUND: &str = "TaskNotFound";
/// A `task` names a Task that cannot run: no steps, a step whose Function is missing or cannot
/// run, a variable left unset.
pub const TASK_UNUSABLE: &str = "TaskUnusable";
pub const TASK_RESOLVED: &str = "TaskResolved";
/// What the audit writes of one road to a container image: its Warning reasons, the Normal
/// reason and note once it resolves again, and the Events' action.
struct Road {
    broken: [&'static str; 2],
    resolved: &'static str,
    fixed: &'static str,
    action: &'static str,
}

/// Stash's two roads, then KubeStash's.
const ROADS: [Road; 4] = [
    Road {
        broken: [NOT_FOUND, UNUSABLE],
        resolved: RESOLVED,
        fixed: "the executor's Function resolves again",
        action: "AuditExecutor",
    },
    Road {
        broken: [TASK_NOT_FOUND, TASK_UNUSABLE],
        resolved: TASK_RESOLVED,
        fixed: "the Task resolves and can run again",
        action: "AuditTask",
    },
    Road {
        broken: [ADDON_NOT_FOUND, ADDON_UNUSABLE],
        resolved: ADDON_RESOLVED,
        fixed: "the Addon resolves and its tasks can run again",
        action: "AuditAddon",
    },
    Road {
        broken: [HOOK_TEMPLATE_NOT_FOUND, HOOK_TEMPLATE_UNUSABLE],
        resolved: HOOK_TEMPLATE_RESOLVED,
        fixed: "the HookTemplate resolves and can run again",
        action: "AuditHookTemplate",
    },
];

/// The road an Event reason is about.
fn road(reason: &str) -> &'static Road {
    ROADS
        .iter()
        .find(|r| r.broken.contains(&reason) || r.resolved == reason)
        .unwrap_or(&ROADS[0])
}

/// The Warning reasons of some roads, for the gauge.
fn warning_reasons(roads: &'static [Road]) -> impl Iterator<Item = &'static str> {
    roads.iter().flat_map(|r| r.broken)
}

/// How long the LISTs of the KubeStash objects of one pass may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long confirming one finding with live lookups may take (for KubeStash, all the new
/// findings of a pass together, each name looked up once).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// The most an Event's note holds (the API server's limit is 1 kB).
const NOTE_MAX: usize = 1000;

/// How the audit runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the Lease is: the webhook's own namespace.
    pub namespace: String,
    /// This replica's name in the Lease (the pod's name).
    pub identity: String,
    /// How often every broken reference's Event is written again, so it stays visible.
    pub interval: Duration,
    /// How long a Lease holds without renewal; a new leader takes over within it.
    pub lease_duration: Duration,
    pub policy: Policy,
}

/// One broken reference, as its Event says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub reason: &'static str,
    pub note: String,
}

impl Finding {
    /// What the audit reports of the verdict on one reference: none when admission would allow
    /// it; else the first of `reasons` (not found) when the referent is `missing`, the second
    /// (unusable) otherwise, and the denial as the note.
    fn of(verdict: Verdict, reasons: [&'static str; 2], missing: bool) -> Option<Finding> {
        (!verdict.allowed()).then(|| Finding {
            reason: reasons[usize::from(!missing)],
            note: note(verdict.message()),
        })
    }
}

/// Which hook of which object: the object's uid and the executor's path.
type HookId = (String, String);

/// What the audit reports of one executor, given what is known of the Function it names: a
/// finding when it cannot run the hook, none when it can (or when its Function could not be
/// looked up, which says nothing of the reference). Pure.
pub fn finding(
    path: &FieldPath,
    executor: &Executor,
    resolution: Option<&Resolution>,
    policy: &Policy,
) -> Option<Finding> {
    let reference = ExecutorRef {
        path: path.clone(),
        executor,
    };
    let name = reference.function_name();
    if matches!(resolution, Some(Resolution::Unverified(_))) {
        return None;
    }
    let verdict = rules::judge(&[reference], &[], |_| resolution, policy);
    let missing = name.is_some() && matches!(resolution, Some(Resolution::NotFound));
    Finding::of(verdict, [NOT_FOUND, UNUSABLE], missing)
}

/// What the audit reports of the Task reference `task` at `path` of an object of `kind`, given
/// what is known of the Task it names (`resolution`) and of the Functions of its steps: a finding
/// when the Task is missing or cannot run (judged as admission judges it, without the ratchet),
/// none when it can, or when something it depends on could not be looked up, which says nothing
/// of the reference. Pure.
pub fn task_finding<'a>(
    kind: StashKind,
    path: &FieldPath,
    task: &TaskRef,
    resolution: Option<&'a Resolution<Task>>,
    functions: impl Fn(&str) -> Option<&'a Resolution<Function>>,
    policy: &Policy,
) -> Option<Finding> {
    match resolution {
        None if task_name(task).is_some() => return None,
        Some(Resolution::Unverified(_)) => return None,
        Some(Resolution::Found(found)) => {
            let unknown = found.functions().any(|f| {
                !matches!(
                    functions(f),
                    Some(Resolution::Found(_) | Resolution::NotFound)
                )
            });
            if unknown {
                return None;
            }
        }
        _ => {}
    }
    let lookup = |_: &str| resolution;
    let uses = [TaskUse {
        path: path.clone(),
        task,
    }];
    let verdict = task_rules::judge(kind, &uses, &[], Some(&lookup), functions, policy);
    let missing = matches!(resolution, Some(Resolution::NotFound));
    Finding::of(verdict, [TASK_NOT_FOUND, TASK_UNUSABLE], missing)
}

/// An Event's note: the denial text, cut to what the API server keeps.
fn note(mut text: String) -> String {
    if text.len() > NOTE_MAX {
        let mut cut = NOTE_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// The Task a reference names, when it can be looked up.
fn task_name(task: &TaskRef) -> Option<&str> {
    match &task.name {
        Name::Named(name) if valid_object_name(name) => Some(name),
        _ => None,
    }
}

/// What the Function cache holds for the Function `executor` names.
fn cached(functions: &ClusterSource, executor: &Executor) -> Option<Resolution> {
    match executor {
        Executor::Ref {
            function: Name::Named(name),
            ..
        } => Some(functions.remembered(name)),
        _ => None,
    }
}

/// Runs the audit while this replica holds the Lease, until the task is aborted.
pub async fn run(
    client: Client,
    index: Arc<ReferenceIndex>,
    functions: Arc<ClusterSource>,
    tasks: Arc<TaskSource>,
    kubestash: Option<KubeStashSources>,
    metrics: Metrics,
    settings: Settings,
) {
    let duration = settings.lease_duration.as_secs().max(2);
    let manager = loop {
        let built = LeaseManagerBuilder::new(client.clone(), "stash-webhook-audit")
            .with_namespace(&settings.namespace)
            .with_identity(&settings.identity)
            .with_duration(duration)
            .with_grace((duration / 3).max(1))
            .build()
            .await;
        match built {
            Ok(manager) => break manager,
            Err(err) => {
                tracing::warn!(error = %err, "cannot set up the audit's Lease; retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    let (mut leading, _lease) = manager.watch().await;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "stash-webhook".into(),
            instance: Some(settings.identity.clone()),
        },
    );
    let mut audit = Audit {
        client,
        index,
        functions,
        tasks,
        kubestash,
        recorder,
        metrics,
        settings,
        reported: HashMap::new(),
        kubestash_reported: HashMap::new(),
    };
    loop {
        if !*leading.borrow_and_update() {
            audit.metrics.set_leader(false);
            if leading.changed().await.is_err() {
                return;
            }
            continue;
        }
        tracing::info!(identity = %audit.settings.identity, "audit: this replica leads, writing Events");
        audit.metrics.set_leader(true);
        // What this replica wrote when it led before still stands; what another leader wrote in
        // between is not known here, and is at worst written once more.
        audit.lead(&mut leading).await;
        tracing::info!("audit: this replica no longer leads");
    }
}

struct Audit {
    client: Client,
    index: Arc<ReferenceIndex>,
    functions: Arc<ClusterSource>,
    tasks: Arc<TaskSource>,
    kubestash: Option<KubeStashSources>,
    recorder: Recorder,
    metrics: Metrics,
    settings: Settings,
    /// What this leader has written, by reference (a hook's executor or a `task`); a finding is
    /// written again only when it changes, or on the periodic refresh.
    reported: HashMap<HookId, (ObjectKey, Finding)>,
    /// The same for the references of KubeStash objects.
    kubestash_reported: HashMap<HookId, (KubeStashKey, Finding)>,
}

impl Audit {
    /// Audits on every change of the index, the Functions or the Tasks, and on every interval,
    /// while `leading` says so.
    async fn lead(&mut self, leading: &mut tokio::sync::watch::Receiver<bool>) {
        // The first refresh one interval from now: leading begins with a pass of its own.
        let period = self.settings.interval;
        let mut refresh = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut retry = false;
        let mut first = true;
        loop {
            let mut refresh_all = false;
            if !std::mem::take(&mut first) {
                tokio::select! {
                    changed = leading.changed() => {
                        if changed.is_err() || !*leading.borrow_and_update() {
                            return;
                        }
                    }
                    () = self.index.changed() => {}
                    () = self.functions.changed() => {}
                    () = self.tasks.changed() => {}
                    () = self.kubestash_changed() => {}
                    _ = refresh.tick() => refresh_all = true,
                    () = tokio::time::sleep(Duration::from_secs(2)), if retry => {}
                }
                // Let a burst of changes (a re-list, `kubectl apply -f dir/`) settle into one pass.
                tokio::time::sleep(Duration::from_millis(200)).await;
                self.take_changes();
            }
            let kubestash_ready = self
                .kubestash
                .as_ref()
                .is_none_or(KubeStashSources::is_ready);
            if !(self.index.is_synced()
                && self.functions.is_ready()
                && self.tasks.is_ready()
                && kubestash_ready)
            {
                retry = true;
                continue;
            }
            let stash = self.pass(refresh_all).await;
            let kubestash = self.kubestash_pass(refresh_all).await;
            retry = !(stash && kubestash);
        }
    }

    /// Takes the changes signalled so far, which the pass about to run sees: each would
    /// otherwise start a pass of its own after it, and a KubeStash pass lists every object.
    fn take_changes(&self) {
        let _ = self.index.changed().now_or_never();
        let _ = self.functions.changed().now_or_never();
        let _ = self.tasks.changed().now_or_never();
        while self.kubestash_changed().now_or_never().is_some() {}
    }

    /// Resolves when KubeStash's referents change; never when they are not watched.
    async fn kubestash_changed(&self) {
        match &self.kubestash {
            Some(kubestash) => kubestash.changed().await,
            None => std::future::pending().await,
        }
    }

    /// One audit pass; false when an Event could not be written (the pass is retried, so none is
    /// lost, and what was written is not written again).
    async fn pass(&mut self, refresh_all: bool) -> bool {
        let policy = self.settings.policy.clone();
        let mut current: HashMap<HookId, (ObjectKey, Finding)> = HashMap::new();
        let mut resolved_hooks: HashSet<HookId> = HashSet::new();
        // What the caches hold of each Task and step Function, read once per pass: many objects
        // name the same few Tasks.
        let mut tasks: HashMap<String, Resolution<Task>> = HashMap::new();
        let mut functions: HashMap<String, Resolution<Function>> = HashMap::new();
        // Judged from the caches under the index's lock: only what is broken is kept.
        self.index.visit(|key, indexed| {
            let mut judged = |path: &FieldPath, found: Option<Finding>| {
                let id = (indexed.uid.clone(), path.as_str().to_owned());
                match found {
                    Some(found) => {
                        current.insert(id, (key.clone(), found));
                    }
                    None if self.reported.contains_key(&id) => {
                        resolved_hooks.insert(id);
                    }
                    None => {}
                }
            };
            for (path, executor) in &indexed.executors {
                let resolution = cached(&self.functions, executor);
                judged(path, finding(path, executor, resolution.as_ref(), &policy));
            }
            for (at, task) in indexed.tasks.iter() {
                let path = &at.path();
                if let Some(name) = task_name(task) {
                    if !tasks.contains_key(name) {
                        tasks.insert(name.to_owned(), self.tasks.remembered(name));
                    }
                    if let Some(Resolution::Found(found)) = tasks.get(name) {
                        for f in found.functions() {
                            if !functions.contains_key(f) {
                                functions.insert(f.to_owned(), self.functions.remembered(f));
                            }
                        }
                    }
                }
                let resolution = task_name(task).and_then(|name| tasks.get(name));
                let found = task_finding(
                    key.kind,
                    path,
                    task,
                    resolution,
                    |f| functions.get(f),
                    &policy,
                );
                judged(path, found);
            }
        });
        self.count(&current);
        // The cache may lag: a new finding is confirmed with a live lookup first.
        let mut live = Live::default();
        let mut unconfirmed = HashSet::new();
        for (id, (key, found)) in &current {
            let new = self.reported.get(id).is_none_or(|(_, f)| f != found);
            if new && !self.confirmed(key, id, &mut live).await {
                unconfirmed.insert(id.clone());
            }
        }
        let mut reported = std::mem::take(&mut self.reported);
        let all_written = self
            .report(
                &mut reported,
                Pass {
                    current: &current,
                    unconfirmed: &unconfirmed,
                    still_there: &resolved_hooks,
                    refresh_all,
                },
                &format!("{STASH_GROUP}/{STASH_VERSION}"),
            )
            .await;
        self.reported = reported;
        all_written
    }

    /// Writes what one pass found: a Warning Event for each finding that is new and confirmed, or
    /// due again (`refresh_all`); a Normal one for each reference reported before that is still
    /// there and no longer broken. `reported` is what has
    /// been written and stands; false when a write failed (it is retried).
    async fn report<K: Clone + fmt::Display>(
        &self,
        reported: &mut HashMap<HookId, (index::ObjectKey<K>, Finding)>,
        pass: Pass<'_, index::ObjectKey<K>>,
        api_version: &str,
    ) -> bool {
        let reference = |key: &index::ObjectKey<K>, uid: &str| ObjectReference {
            api_version: Some(api_version.to_owned()),
            kind: Some(key.kind.to_string()),
            name: Some(key.name.clone()),
            namespace: key.namespace.clone(),
            uid: Some(uid.to_owned()),
            ..ObjectReference::default()
        };
        let mut all_written = true;
        for (id, (key, found)) in pass.current {
            let unchanged = reported.get(id).is_some_and(|(_, f)| f == found);
            if (unchanged && !pass.refresh_all) || pass.unconfirmed.contains(id) {
                continue;
            }
            let reference = reference(key, &id.0);
            let (reason, note) = (found.reason, &found.note);
            if self
                .publish(
                    reference,
                    &key.to_string(),
                    EventType::Warning,
                    reason,
                    note,
                )
                .await
            {
                reported.insert(id.clone(), (key.clone(), found.clone()));
            } else {
                all_written = false;
            }
        }
        let fixed: Vec<HookId> = reported
            .keys()
            .filter(|id| !pass.current.contains_key(*id))
            .cloned()
            .collect();
        for id in fixed {
            let Some((key, was)) = reported.get(&id).cloned() else {
                continue;
            };
            // Gone with its object or its reference: nothing to say on it.
            if !pass.still_there.contains(&id) {
                reported.remove(&id);
                continue;
            }
            let road = road(was.reason);
            let (reason, note) = (road.resolved, format!("{}: {}", id.1, road.fixed));
            let reference = reference(&key, &id.0);
            if self
                .publish(
                    reference,
                    &key.to_string(),
                    EventType::Normal,
                    reason,
                    &note,
                )
                .await
            {
                reported.remove(&id);
            } else {
                all_written = false;
            }
        }
        all_written
    }

    /// Whether the finding for reference `id` of `key` still stands when what it names is looked
    /// up live (within [`CONFIRM_TIMEOUT`]; a lookup that does not answer confirms nothing).
    async fn confirmed(&self, key: &ObjectKey, id: &HookId, live: &mut Live) -> bool {
        tokio::time::timeout(CONFIRM_TIMEOUT, self.confirm(key, id, live))
            .await
            .unwrap_or(false)
    }

    async fn confirm(&self, key: &ObjectKey, id: &HookId, live: &mut Live) -> bool {
        let policy = &self.settings.policy;
        if let Some((path, task)) = self.index.task(key, &id.1) {
            let resolution = match task_name(&task) {
                Some(name) => Some(live.task(&self.tasks, name).await),
                None => None,
            };
            let mut functions = HashMap::new();
            if let Some(Resolution::Found(found)) = &resolution {
                for f in found.functions() {
                    functions.insert(f.to_owned(), live.function(&self.functions, f).await);
                }
            }
            return task_finding(
                key.kind,
                &path,
                &task,
                resolution.as_ref(),
                |f| functions.get(f),
                policy,
            )
            .is_some();
        }
        let Some((path, executor)) = self.index.executor(key, &id.1) else {
            return false;
        };
        let resolution = match &executor {
            Executor::Ref {
                function: Name::Named(name),
                ..
            } => Some(live.function(&self.functions, name).await),
            _ => None,
        };
        finding(&path, &executor, resolution.as_ref(), policy).is_some()
    }

    /// The broken references gauge, by kind and reason.
    fn count(&self, current: &HashMap<HookId, (ObjectKey, Finding)>) {
        let mut counts: HashMap<(StashKind, &'static str), i64> = HashMap::new();
        for kind in StashKind::ALL {
            for reason in warning_reasons(&ROADS[..2]) {
                counts.insert((kind, reason), 0);
            }
        }
        for (key, found) in current.values() {
            *counts.entry((key.kind, found.reason)).or_default() += 1;
        }
        for ((kind, reason), n) in counts {
            self.metrics.set_broken_references(kind, reason, n);
        }
    }

    /// Writes one Event on the object `reference` points at (`key`, for the logs); false when
    /// the API refused or could not be reached.
    async fn publish(
        &self,
        reference: ObjectReference,
        key: &str,
        type_: EventType,
        reason: &str,
        note: &str,
    ) -> bool {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note.to_owned()),
            action: road(reason).action.to_owned(),
            secondary: None,
        };
        match self.recorder.publish(&event, &reference).await {
            Ok(()) => {
                self.metrics.record_event(reason);
                true
            }
            Err(err) => {
                tracing::warn!(object = %key, %reason, error = %err, "cannot write the Event; retrying");
                false
            }
        }
    }
}

/// What one pass of the audit found, for [`Audit::report`].
struct Pass<'p, K> {
    current: &'p HashMap<HookId, (K, Finding)>,
    /// New findings that live lookups did not confirm: not written.
    unconfirmed: &'p HashSet<HookId>,
    /// Of the references reported before, those still there.
    still_there: &'p HashSet<HookId>,
    refresh_all: bool,
}

/// The live answers of one audit pass, by name: when a Function or Task that many objects name
/// breaks, each new finding is confirmed, but each name is looked up once.
#[derive(Default)]
struct Live {
    tasks: HashMap<String, Resolution<Task>>,
    functions: HashMap<String, Resolution<Function>>,
}

impl Live {
    async fn task(&mut self, source: &TaskSource, name: &str) -> Resolution<Task> {
        if let Some(known) = self.tasks.get(name) {
            return known.clone();
        }
        let answer = source.resolve(name).await;
        self.tasks.insert(name.to_owned(), answer.clone());
        answer
    }

    async fn function(&mut self, source: &ClusterSource, name: &str) -> Resolution<Function> {
        if let Some(known) = self.functions.get(name) {
            return known.clone();
        }
        let answer = source.resolve(name).await;
        self.functions.insert(name.to_owned(), answer.clone());
        answer
    }
}

mod kubestash;

pub use kubestash::{
    ADDON_NOT_FOUND, ADDON_RESOLVED, ADDON_UNUSABLE, HOOK_TEMPLATE_NOT_FOUND,
    HOOK_TEMPLATE_RESOLVED, HOOK_TEMPLATE_UNUSABLE,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Container, Function};

    fn executor(name: &str) -> Executor {
        Executor::Ref {
            function: Name::Named(name.into()),
            params: crate::stash::Params::Absent,
        }
    }

    #[test]
    fn findings_name_the_field_the_function_and_the_fix() {
        let path = FieldPath::from("spec.hooks.preBackup.executor");
        let policy = Policy::default();
        assert_eq!(
            finding(&path, &executor("ghost"), Some(&Resolution::NotFound), &policy),
            Some(Finding {
                reason: NOT_FOUND,
                note: "spec.hooks.preBackup.executor.functionName: Function \"ghost\" not found: create the Function, or fix the name (list them with: kubectl get functions.stash.appscode.com)".into()
            })
        );
        let no_image = Resolution::found(Container::NoImage);
        assert_eq!(
            finding(&path, &executor("f"), Some(&no_image), &policy)
                .unwrap()
                .reason,
            UNUSABLE
        );
        let fine = Resolution::found(Function::from(Container::Valid));
        assert_eq!(finding(&path, &executor("f"), Some(&fine), &policy), None);
        let unknown = Resolution::Unverified("down".into());
        assert_eq!(
            finding(&path, &executor("f"), Some(&unknown), &policy),
            None
        );
    }

    fn task_ref(name: &str) -> TaskRef {
        TaskRef {
            name: Name::Named(name.into()),
            params: crate::stash::TaskParams::Absent,
        }
    }

    fn task(steps: serde_json::Value) -> Resolution<Task> {
        Resolution::found(Task::from_object(
            &serde_json::json!({"spec": {"steps": steps}}),
        ))
    }

    #[test]
    fn task_findings_name_the_field_the_task_and_the_fix() {
        let path = FieldPath::from("spec.task");
        let policy = Policy::default();
        let functions: HashMap<String, Resolution<Function>> = HashMap::from([
            ("ok".to_owned(), Resolution::found(Container::Valid)),
            ("gone".to_owned(), Resolution::NotFound),
            ("down".to_owned(), Resolution::Unverified("down".into())),
        ]);
        let judge = |name: &str, resolution: Option<&Resolution<Task>>| {
            task_finding(
                StashKind::BackupConfiguration,
                &path,
                &task_ref(name),
                resolution,
                |f| functions.get(f),
                &policy,
            )
        };
        assert_eq!(
            judge("pg-backup", Some(&Resolution::NotFound)),
            Some(Finding {
                reason: TASK_NOT_FOUND,
                note: "spec.task.name: Task \"pg-backup\" not found: install the Stash addon that provides it (kubectl get tasks.stash.appscode.com lists those installed), or correct the name".into()
            })
        );
        assert_eq!(
            judge("t", Some(&task(serde_json::json!([])))),
            Some(Finding {
                reason: TASK_UNUSABLE,
                note: "spec.task.name: Task \"t\" has no steps, so Stash refuses to run it (\"empty steps/containers\"): give the Task steps (kubectl edit tasks.stash.appscode.com t), or name another Task".into()
            })
        );
        assert_eq!(
            judge("t", Some(&task(serde_json::json!([{"name": "ok"}, {"name": "gone"}])))),
            Some(Finding {
                reason: TASK_UNUSABLE,
                note: "spec.task.name: Task \"t\", at its spec.steps[1].name: Function \"gone\" not found: create the Function, or fix the Task (list them with: kubectl get functions.stash.appscode.com)".into()
            })
        );
        assert_eq!(
            judge("t", Some(&task(serde_json::json!([{"name": "ok"}])))),
            None
        );
        // Nothing known against it: a lookup that failed, or none made.
        assert_eq!(
            judge(
                "t",
                Some(&task(
                    serde_json::json!([{"name": "down"}, {"name": "gone"}])
                ))
            ),
            None
        );
        assert_eq!(
            judge("t", Some(&Resolution::Unverified("down".into()))),
            None
        );
        assert_eq!(judge("t", None), None);
        // A blueprint's templated name is not judged here.
        let templated = task_finding(
            StashKind::BackupBlueprint,
            &path,
            &task_ref("pg-${TARGET_APP_VERSION}"),
            None,
            |f| functions.get(f),
            &policy,
        );
        assert_eq!(templated, None);
    }
}
