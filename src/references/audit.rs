//! The audit: every hook whose executor cannot be resolved (its Function deleted with the
//! annotation, broken by an edit, or the object admitted while the webhook was not in the path)
//! gets a `Warning` Event, and a `Normal` one when it is fixed. One replica writes them, the holder
//! of a Lease; admission stays active on every replica.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

use super::index::{ObjectKey, ReferenceIndex};
use crate::functions::ClusterSource;
use crate::metrics::Metrics;
use crate::rules::{self, Policy, Resolution};
use crate::sources::Source;
use crate::stash::{Executor, ExecutorRef, FieldPath, FunctionName, StashKind};

/// The Event reasons, as `kubectl get events --field-selector reason=...` finds them.
pub const NOT_FOUND: &str = "ExecutorFunctionNotFound";
pub const UNUSABLE: &str = "ExecutorFunctionUnusable";
pub const RESOLVED: &str = "ExecutorFunctionResolved";

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
    let verdict = rules::judge(&[reference], &[], |_| resolution, policy);
    if verdict.allowed() || matches!(resolution, Some(Resolution::Unverified(_))) {
        return None;
    }
    let reason = match (name, resolution) {
        (Some(_), Some(Resolution::NotFound)) => NOT_FOUND,
        _ => UNUSABLE,
    };
    let mut note = verdict.message();
    if note.len() > NOTE_MAX {
        let mut cut = NOTE_MAX;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    Some(Finding { reason, note })
}

/// What the Function cache holds for the Function `executor` names.
fn cached(functions: &ClusterSource, executor: &Executor) -> Option<Resolution> {
    let Executor::Ref {
        function: FunctionName::Named(name),
        ..
    } = executor
    else {
        return None;
    };
    Some(match functions.cached(name) {
        Some(function) => Resolution::Found(function),
        None => Resolution::NotFound,
    })
}

/// Runs the audit while this replica holds the Lease, until the task is aborted.
pub async fn run(
    client: Client,
    index: Arc<ReferenceIndex>,
    functions: Arc<ClusterSource>,
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
        client,
        Reporter {
            controller: "stash-webhook".into(),
            instance: Some(settings.identity.clone()),
        },
    );
    let mut audit = Audit {
        index,
        functions,
        recorder,
        metrics,
        settings,
        reported: HashMap::new(),
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
    index: Arc<ReferenceIndex>,
    functions: Arc<ClusterSource>,
    recorder: Recorder,
    metrics: Metrics,
    settings: Settings,
    /// What this leader has written, by hook; a finding is written again only when it changes,
    /// or on the periodic refresh.
    reported: HashMap<HookId, (ObjectKey, Finding)>,
}

impl Audit {
    /// Audits on every change of the index or the Functions, and on every interval, while
    /// `leading` says so.
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
                    _ = refresh.tick() => refresh_all = true,
                    () = tokio::time::sleep(Duration::from_secs(2)), if retry => {}
                }
                // Let a burst of changes (a re-list, `kubectl apply -f dir/`) settle into one pass.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if !(self.index.is_synced() && self.functions.is_ready()) {
                retry = true;
                continue;
            }
            retry = !self.pass(refresh_all).await;
        }
    }

    /// One audit pass; false when an Event could not be written (the pass is retried, so none is
    /// lost, and what was written is not written again).
    async fn pass(&mut self, refresh_all: bool) -> bool {
        let policy = self.settings.policy.clone();
        let mut current: HashMap<HookId, (ObjectKey, Finding)> = HashMap::new();
        let mut resolved_hooks: HashSet<HookId> = HashSet::new();
        // Judged from the cache under the index's lock: only what is broken is kept.
        self.index.visit(|key, indexed| {
            for (path, executor) in &indexed.executors {
                let id = (indexed.uid.clone(), path.as_str().to_owned());
                let resolution = cached(&self.functions, executor);
                match finding(path, executor, resolution.as_ref(), &policy) {
                    Some(found) => {
                        current.insert(id, (key.clone(), found));
                    }
                    None if self.reported.contains_key(&id) => {
                        resolved_hooks.insert(id);
                    }
                    None => {}
                }
            }
        });
        self.count(&current);
        let mut all_written = true;
        for (id, (key, found)) in &current {
            let unchanged = self.reported.get(id).is_some_and(|(_, f)| f == found);
            if unchanged && !refresh_all {
                continue;
            }
            // The cache may lag: a new finding is confirmed with a live lookup first.
            if !unchanged && !self.confirmed(key, id).await {
                continue;
            }
            if self
                .publish(key, &id.0, EventType::Warning, found.reason, &found.note)
                .await
            {
                self.reported
                    .insert(id.clone(), (key.clone(), found.clone()));
            } else {
                all_written = false;
            }
        }
        let fixed: Vec<HookId> = self
            .reported
            .keys()
            .filter(|id| !current.contains_key(*id))
            .cloned()
            .collect();
        for id in fixed {
            let Some((key, _)) = self.reported.get(&id).cloned() else {
                continue;
            };
            // Gone with its object or its executor: nothing to say on it.
            if !resolved_hooks.contains(&id) {
                self.reported.remove(&id);
                continue;
            }
            let note = format!("{}: the executor's Function resolves again", id.1);
            if self
                .publish(&key, &id.0, EventType::Normal, RESOLVED, &note)
                .await
            {
                self.reported.remove(&id);
            } else {
                all_written = false;
            }
        }
        all_written
    }

    /// Whether the finding for hook `id` of `key` still stands when its Function is looked up
    /// live.
    async fn confirmed(&self, key: &ObjectKey, id: &HookId) -> bool {
        let Some((path, executor)) = self.index.executor(key, &id.1) else {
            return false;
        };
        let resolution = match &executor {
            Executor::Ref {
                function: FunctionName::Named(name),
                ..
            } => Some(self.functions.resolve(name).await),
            _ => None,
        };
        finding(&path, &executor, resolution.as_ref(), &self.settings.policy).is_some()
    }

    /// The broken references gauge, by kind and reason.
    fn count(&self, current: &HashMap<HookId, (ObjectKey, Finding)>) {
        let mut counts: HashMap<(StashKind, &'static str), i64> = HashMap::new();
        for kind in StashKind::ALL {
            for reason in [NOT_FOUND, UNUSABLE] {
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

    /// Writes one Event on `key`; false when the API refused or could not be reached.
    async fn publish(
        &self,
        key: &ObjectKey,
        uid: &str,
        type_: EventType,
        reason: &str,
        note: &str,
    ) -> bool {
        let reference = ObjectReference {
            api_version: Some(format!(
                "{}/{}",
                crate::stash::STASH_GROUP,
                crate::stash::STASH_VERSION
            )),
            kind: Some(key.kind.as_str().to_owned()),
            name: Some(key.name.clone()),
            namespace: key.namespace.clone(),
            uid: Some(uid.to_owned()),
            ..ObjectReference::default()
        };
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note.to_owned()),
            action: "AuditExecutor".to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Container, Function};

    fn executor(name: &str) -> Executor {
        Executor::Ref {
            function: FunctionName::Named(name.into()),
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
}
