//! One review of a KubeStash object: its references found by walking the object, the Addons and
//! HookTemplates they name looked up side by side, then the Functions those run, all under the
//! review's one deadline; a denial resting on memory is confirmed live, as for Stash objects.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kube::core::admission::Operation;

use super::{answer, confirmed, look_up, refusal, resolve, Deadline, Outcome, Validator};
use crate::kubestash::referents::{Addon, AddonFunction, HookTemplate};
use crate::kubestash::{self, Kind, References};
use crate::review::{self, Request};
use crate::rules::kubestash::{self as rules, Known};
use crate::rules::{Resolution, Verdict};
use crate::sources::{Referent, Source};

/// Where KubeStash's referents come from; each None when there is no source for it at all.
#[derive(Clone, Default)]
pub struct KubeStashSources {
    pub addons: Option<Arc<dyn Source<Addon>>>,
    pub functions: Option<Arc<dyn Source<AddonFunction>>>,
    pub hook_templates: Option<Arc<dyn Source<HookTemplate>>>,
}

impl KubeStashSources {
    pub(super) fn is_ready(&self) -> bool {
        fn ready<T: Referent>(s: &Option<Arc<dyn Source<T>>>) -> bool {
            s.as_ref().is_none_or(|s| s.is_ready())
        }
        ready(&self.addons) && ready(&self.functions) && ready(&self.hook_templates)
    }
}

/// A source the cluster serves: one whose CRD is absent answers nothing (names not checked).
fn installed<T: Referent>(source: &Option<Arc<dyn Source<T>>>) -> Option<&dyn Source<T>> {
    source.as_deref().filter(|s| s.is_installed())
}

/// What one review's lookups found, and the names answered from memory.
#[derive(Default)]
struct Found {
    addons: Lookups<Addon>,
    functions: Lookups<AddonFunction>,
    hook_templates: Lookups<HookTemplate>,
}

struct Lookups<T> {
    found: HashMap<String, Resolution<T>>,
    remembered: Vec<String>,
}

impl<T> Default for Lookups<T> {
    fn default() -> Self {
        Lookups {
            found: HashMap::new(),
            remembered: Vec::new(),
        }
    }
}

impl<T: Referent> Lookups<T> {
    async fn find(
        &mut self,
        source: Option<&dyn Source<T>>,
        names: Vec<String>,
        deadline: Deadline,
    ) {
        let Some(source) = source else {
            return;
        };
        let names: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| !self.found.contains_key(*n))
            .collect();
        let (found, remembered) = resolve(source, names, deadline).await;
        self.found.extend(found);
        self.remembered.extend(remembered);
    }

    /// Looks up live what memory answered; false when nothing was.
    async fn confirm(&mut self, source: Option<&dyn Source<T>>, deadline: Deadline) -> bool {
        let Some(source) = source.filter(|s| s.memory_may_lag()) else {
            return false;
        };
        if self.remembered.is_empty() {
            return false;
        }
        let names = std::mem::take(&mut self.remembered);
        let names = names.iter().map(String::as_str).collect();
        confirmed(&mut self.found, look_up(source, names, deadline).await);
        true
    }
}

impl Validator {
    pub(super) async fn review_kubestash(
        &self,
        req: &Request<'_>,
        kind: &'static Kind,
        api_server_timeout: Option<Duration>,
    ) -> Outcome {
        let with_kind = |mut outcome: Outcome| {
            outcome.other_kind = Some(kind.label);
            outcome
        };
        let (object, old) = match review::whole_objects(req.body) {
            Ok(objects) => objects,
            Err(err) => return with_kind(refusal(format!("the request could not be read: {err}"))),
        };
        let Some(object) = object else {
            return with_kind(refusal(format!(
                "{} {} has no object to judge: the request is malformed",
                kind.kind, req.name
            )));
        };
        let namespace = req.namespace.as_deref().unwrap_or_default();
        let refs = kubestash::references(kind, &object, namespace);
        if refs.is_empty() {
            return with_kind(answer(Verdict::default()));
        }
        let old_refs = match (&req.operation, &old) {
            (Operation::Update, Some(old)) => kubestash::references(kind, old, namespace),
            _ => References::default(),
        };
        let deadline = Deadline::after(self.lookup_budget(api_server_timeout));
        let sources = &self.kubestash;
        let (addons, functions, templates) = (
            installed(&sources.addons),
            installed(&sources.functions),
            installed(&sources.hook_templates),
        );
        fn known<'f>(found: &'f Found, sources: [bool; 3]) -> Known<'f> {
            Known {
                addons: sources[0].then_some(&found.addons.found),
                functions: sources[1].then_some(&found.functions.found),
                hook_templates: sources[2].then_some(&found.hook_templates.found),
            }
        }
        let present = [addons.is_some(), functions.is_some(), templates.is_some()];
        let mut found = Found::default();
        let (a, t) = (
            rules::addons_to_resolve(kind, &refs),
            rules::hook_templates_to_resolve(kind, &refs),
        );
        futures::join!(
            found.addons.find(addons, a, deadline),
            found.hook_templates.find(templates, t, deadline),
        );
        let f = rules::functions_to_resolve(&refs, known(&found, present));
        found.functions.find(functions, f, deadline).await;

        let judge = |found: &Found| {
            rules::judge(
                kind,
                namespace,
                &refs,
                &old_refs,
                known(found, present),
                &self.policy,
            )
        };
        let mut verdict = judge(&found);
        if !verdict.allowed() {
            // A cache is trusted to allow, never to deny: what it answered is looked up again.
            let (a, t) = futures::join!(
                found.addons.confirm(addons, deadline),
                found.hook_templates.confirm(templates, deadline),
            );
            // Addons or HookTemplates read again may run other Functions.
            let f = rules::functions_to_resolve(&refs, known(&found, present));
            found.functions.find(functions, f, deadline).await;
            let f = found.functions.confirm(functions, deadline).await;
            if a || t || f {
                verdict = judge(&found);
            }
        }
        with_kind(answer(verdict))
    }
}
