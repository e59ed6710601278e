//! The audit of KubeStash objects: every `addon` whose Addon (or a task of it) is missing or
//! cannot run, and every hook whose HookTemplate is, judged by the KubeStash rules against the
//! watched Addons, Functions and HookTemplates. The objects are not indexed: each pass lists them
//! live and judges them as they are listed, so a cluster's worth is never held at once.

use std::collections::{HashMap, HashSet};

use super::{warning_reasons, Audit, Finding, HookId, Pass, ROADS};
use super::{CONFIRM_TIMEOUT, LIST_TIMEOUT};
use crate::kubestash::{Kind, Named, Reference, CORE_GROUP, VERSION};
use crate::references::protect::kubestash::{for_each_object, Listed, ObjectKey};
use crate::rules::kubestash::{self as rules, lookup, Catalog};
use crate::rules::Resolution;
use crate::validator::Deadline;

/// A KubeStash `addon` names an Addon that does not exist.
pub const ADDON_NOT_FOUND: &str = "AddonNotFound";
/// A KubeStash `addon` names an Addon, or a task of it, that cannot run: the task missing, its
/// Function missing or without a usable image, a parameter left unset.
pub const ADDON_UNUSABLE: &str = "AddonUnusable";
pub const ADDON_RESOLVED: &str = "AddonResolved";
/// A KubeStash hook names a HookTemplate that does not exist.
pub const HOOK_TEMPLATE_NOT_FOUND: &str = "HookTemplateNotFound";
/// A KubeStash hook names a HookTemplate that cannot run it.
pub const HOOK_TEMPLATE_UNUSABLE: &str = "HookTemplateUnusable";
pub const HOOK_TEMPLATE_RESOLVED: &str = "HookTemplateResolved";

/// What the audit reports of one reference of a KubeStash object of `kind` (`one`: the
/// reference alone), given what is known of the referents: a finding when admission would deny
/// it (without the ratchet), none when it would not, or when something it depends on could not
/// be looked up or is not served, which says nothing of the reference. Pure.
pub fn finding(kind: &Kind, namespace: &str, one: &Reference, known: &Catalog) -> Option<Finding> {
    let verdict = rules::judge_alone(kind, namespace, one, known);
    let key = one.key();
    let (reasons, answer) = match one.named {
        Named::Addon(_) => (
            [ADDON_NOT_FOUND, ADDON_UNUSABLE],
            lookup(known.addons.as_ref(), key.as_deref()).map(Resolution::is_not_found),
        ),
        Named::HookTemplate { .. } => (
            [HOOK_TEMPLATE_NOT_FOUND, HOOK_TEMPLATE_UNUSABLE],
            lookup(known.hook_templates.as_ref(), key.as_deref()).map(Resolution::is_not_found),
        ),
    };
    Finding::of(verdict, reasons, answer == Some(true))
}

impl Audit {
    /// The KubeStash part of a pass: every object of the four kinds listed live (a kind whose CRD
    /// is absent has none), each reference judged against the caches, a new finding confirmed
    /// live, and Events written as for Stash's references. False when the objects could not be
    /// listed or an Event could not be written (the pass is retried).
    pub(super) async fn kubestash_pass(&mut self, refresh_all: bool) -> bool {
        let Some(kubestash) = self.kubestash.clone() else {
            return true;
        };
        let mut catalog = Catalog::default();
        let mut current: HashMap<HookId, (ObjectKey, Finding)> = HashMap::new();
        // Of the references reported before, those still there (a fixed one gets a Normal
        // Event; one gone with its object gets none).
        let mut still_there: HashSet<HookId> = HashSet::new();
        // The references with a new finding, to confirm live: each with its kind and namespace.
        let mut new: Vec<(HookId, &'static Kind, String, Reference)> = Vec::new();
        // Every kind and reason, so that a count that fell to none is set to 0.
        let none = |k: &'static Kind| warning_reasons(&ROADS[2..]).map(move |r| ((k.label, r), 0));
        let mut counts: HashMap<_, i64> = crate::kubestash::KINDS.iter().flat_map(none).collect();
        let reported = &self.kubestash_reported;
        let judge = |object: Listed| {
            let namespace = object.key.namespace.clone().unwrap_or_default();
            kubestash.learn(object.kind, &object.refs, &mut catalog);
            for one in object.refs {
                let id = (object.uid.clone(), one.path.to_string());
                let Some(found) = finding(object.kind, &namespace, &one, &catalog) else {
                    if reported.contains_key(&id) {
                        still_there.insert(id);
                    }
                    continue;
                };
                *counts.entry((object.kind.label, found.reason)).or_default() += 1;
                if reported.get(&id).is_none_or(|(_, was)| *was != found) {
                    new.push((id.clone(), object.kind, namespace.clone(), one));
                }
                current.insert(id, (object.key.clone(), found));
            }
        };
        let listed = tokio::time::timeout(LIST_TIMEOUT, for_each_object(&self.client, judge));
        let listed = match listed.await {
            Ok(listed) => listed.map_err(|err| err.to_string()),
            Err(_) => Err(format!("no answer within {} s", LIST_TIMEOUT.as_secs())),
        };
        if let Err(why) = listed {
            tracing::warn!(error = %why, "audit: cannot list the KubeStash objects; retrying");
            return false;
        }
        for ((kind, reason), n) in counts {
            self.metrics.set_broken_references_of(kind, reason, n);
        }
        // The caches may lag: the new findings are confirmed with live lookups first, each
        // name looked up once for all of them (many objects name the same few referents).
        let objects: Vec<_> = (new.iter())
            .map(|(_, kind, _, one)| (*kind, std::slice::from_ref(one)))
            .collect();
        let deadline = Deadline::after(CONFIRM_TIMEOUT);
        let live = kubestash
            .catalog(&objects, Vec::new(), true, deadline)
            .await;
        let unconfirmed: HashSet<HookId> = (new.into_iter())
            .filter(|(_, kind, namespace, one)| finding(kind, namespace, one, &live).is_none())
            .map(|(id, ..)| id)
            .collect();
        let mut reported = std::mem::take(&mut self.kubestash_reported);
        let pass = Pass {
            current: &current,
            unconfirmed: &unconfirmed,
            still_there: &still_there,
            refresh_all,
        };
        let api_version = format!("{CORE_GROUP}/{VERSION}");
        let all_written = self.report(&mut reported, pass, &api_version).await;
        self.kubestash_reported = reported;
        all_written
    }
}
