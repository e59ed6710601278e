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
use crate::sources::{FileSource, Referent, Source};

/// Where KubeStash's referents come from; each None when there is no source for it at all.
#[derive(Clone, Default)]
pub struct KubeStashSources {
    pub addons: Option<Arc<dyn Source<Addon>>>,
    pub functions: Option<Arc<dyn Source<AddonFunction>>>,
    pub hook_templates: Option<Arc<dyn Source<HookTemplate>>>,
}

impl KubeStashSources {
    /// A catalog file's referents, each kind only when the file has some.
    pub fn from_file(file: &Arc<FileSource>) -> Self {
        KubeStashSources {
            addons: file.source_of(),
            functions: file.source_of(),
            hook_templates: file.source_of(),
        }
    }

    pub(super) fn is_ready(&self) -> bool {
        fn ready<T: Referent>(s: &Option<Arc<dyn Source<T>>>) -> bool {
            s.as_ref().is_none_or(|s| s.is_ready())
        }
        ready(&self.addons) && ready(&self.functions) && ready(&self.hook_templates)
    }
}

/// What one review's lookups found, and the names answered from memory.
struct Found<'s> {
    addons: Lookups<'s, Addon>,
    functions: Lookups<'s, AddonFunction>,
    hook_templates: Lookups<'s, HookTemplate>,
}

impl<'s> Found<'s> {
    fn new(sources: &'s KubeStashSources) -> Self {
        Found {
            addons: Lookups::new(&sources.addons),
            functions: Lookups::new(&sources.functions),
            hook_templates: Lookups::new(&sources.hook_templates),
        }
    }

    /// What the rules are given: each referent's answers, or none without a source for it.
    fn known(&self) -> Known<'_> {
        Known {
            addons: self.addons.known(),
            functions: self.functions.known(),
            hook_templates: self.hook_templates.known(),
        }
    }
}

/// The lookups of one referent kind in one review.
struct Lookups<'s, T> {
    /// None when there is no source, or the cluster does not serve the kind (its CRD is not
    /// installed): its names are then not checked.
    source: Option<&'s dyn Source<T>>,
    found: HashMap<String, Resolution<T>>,
    remembered: Vec<String>,
}

impl<'s, T: Referent> Lookups<'s, T> {
    fn new(source: &'s Option<Arc<dyn Source<T>>>) -> Self {
        Lookups {
            source: source.as_deref().filter(|s| s.is_installed()),
            found: HashMap::new(),
            remembered: Vec::new(),
        }
    }

    fn known(&self) -> Option<&HashMap<String, Resolution<T>>> {
        self.source.map(|_| &self.found)
    }

    async fn find(&mut self, names: Vec<String>, deadline: Deadline) {
        let Some(source) = self.source else {
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
    async fn confirm(&mut self, deadline: Deadline) -> bool {
        let Some(source) = self.source.filter(|s| s.memory_may_lag()) else {
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
        let mut found = Found::new(&self.kubestash);
        let (a, t) = (
            rules::addons_to_resolve(kind, &refs),
            rules::hook_templates_to_resolve(kind, &refs),
        );
        futures::join!(
            found.addons.find(a, deadline),
            found.hook_templates.find(t, deadline),
        );
        let f = rules::functions_to_resolve(&refs, found.known());
        found.functions.find(f, deadline).await;

        let judge = |found: &Found| {
            rules::judge(
                kind,
                namespace,
                &refs,
                &old_refs,
                found.known(),
                &self.policy,
            )
        };
        let mut verdict = judge(&found);
        if !verdict.allowed() {
            // A cache is trusted to allow, never to deny: what it answered is looked up again.
            let (a, t) = futures::join!(
                found.addons.confirm(deadline),
                found.hook_templates.confirm(deadline),
            );
            // Addons or HookTemplates read again may run other Functions.
            let f = rules::functions_to_resolve(&refs, found.known());
            found.functions.find(f, deadline).await;
            let f = found.functions.confirm(deadline).await;
            if a || t || f {
                verdict = judge(&found);
            }
        }
        with_kind(answer(verdict))
    }
}
