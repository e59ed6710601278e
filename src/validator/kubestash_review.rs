//! One review of a KubeStash object: its references found by walking the object, the Addons and
//! HookTemplates they name looked up side by side, then the Functions those run, all under the
//! review's one deadline; a denial resting on memory is confirmed live, as for Stash objects.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{self, BoxFuture, FutureExt};
use kube::core::admission::Operation;

use super::{answer, look_up, refusal, resolve, Deadline, Outcome, Validator};
use crate::kubestash::referents::{Addon, AddonFunction, HookTemplate};
use crate::kubestash::{self, Kind, Reference, References};
use crate::review::{self, Request};
use crate::rules::kubestash::{self as rules, Catalog};
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

    pub fn is_ready(&self) -> bool {
        fn ready<T: Referent>(s: &Option<Arc<dyn Source<T>>>) -> bool {
            s.as_ref().is_none_or(|s| s.is_ready())
        }
        ready(&self.addons) && ready(&self.functions) && ready(&self.hook_templates)
    }

    /// What the sources say of everything `objects` name: the Addons and HookTemplates, then the
    /// Functions those run (and `functions`), each name once, all before `deadline`. From memory
    /// where a source trusts it, unless `live`: then every answer is a live one.
    pub(crate) async fn catalog(
        &self,
        objects: &[(&Kind, &[Reference])],
        mut functions: Vec<String>,
        live: bool,
        deadline: Deadline,
    ) -> Catalog {
        let wanted = rules::to_resolve(objects, &Catalog::default());
        let (addons, hook_templates) = futures::join!(
            answers(self.addons.as_deref(), wanted.addons, live, deadline),
            answers(
                self.hook_templates.as_deref(),
                wanted.hook_templates,
                live,
                deadline
            ),
        );
        let mut catalog = Catalog {
            addons,
            hook_templates,
            functions: None,
        };
        functions.extend(rules::to_resolve(objects, &catalog).functions);
        catalog.functions = answers(self.functions.as_deref(), functions, live, deadline).await;
        catalog
    }

    /// Fills in what memory holds, usable or not, of the referents `refs` names that `catalog` does
    /// not have yet; a kind the cluster does not serve is left out, and its names not checked.
    pub(crate) fn learn(&self, kind: &Kind, refs: &[Reference], catalog: &mut Catalog) {
        fn fill<R: Referent>(
            source: &Option<Arc<dyn Source<R>>>,
            map: &mut Option<HashMap<String, Resolution<R>>>,
            names: Vec<String>,
        ) {
            let Some(source) = source.as_deref().filter(|s| s.is_installed()) else {
                return;
            };
            let map = map.get_or_insert_with(HashMap::new);
            for name in names {
                map.entry(name)
                    .or_insert_with_key(|name| source.remembered(name));
            }
        }
        let objects = [(kind, refs)];
        let wanted = rules::to_resolve(&objects, catalog);
        fill(&self.addons, &mut catalog.addons, wanted.addons);
        fill(
            &self.hook_templates,
            &mut catalog.hook_templates,
            wanted.hook_templates,
        );
        let functions = rules::to_resolve(&objects, catalog).functions;
        fill(&self.functions, &mut catalog.functions, functions);
    }

    /// Resolves when what memory holds of KubeStash's referents changes; never without them.
    pub(crate) async fn changed(&self) {
        fn changed<T: Referent>(s: &Option<Arc<dyn Source<T>>>) -> BoxFuture<'_, ()> {
            s.as_ref()
                .map_or_else(|| future::pending().boxed(), |s| s.changed())
        }
        let (a, f, h) = (&self.addons, &self.functions, &self.hook_templates);
        future::select_all([changed(a), changed(f), changed(h)]).await;
    }

    /// Whether an answer from memory may lag the truth, and a denial must be confirmed live.
    fn may_lag(&self) -> bool {
        fn lags<T: Referent>(s: &Option<Arc<dyn Source<T>>>) -> bool {
            s.as_ref().is_some_and(|s| s.memory_may_lag())
        }
        lags(&self.addons) || lags(&self.functions) || lags(&self.hook_templates)
    }
}

/// What `source` says of each of `names`, each once: from memory where it trusts it (unless
/// `live`), live otherwise. None without a source, or when the cluster does not serve the kind
/// (its CRD is not installed): its names are then not checked.
async fn answers<R: Referent>(
    source: Option<&dyn Source<R>>,
    mut names: Vec<String>,
    live: bool,
    deadline: Deadline,
) -> Option<HashMap<String, Resolution<R>>> {
    let source = source.filter(|s| s.is_installed())?;
    names.sort_unstable();
    names.dedup();
    let names = names.iter().map(String::as_str).collect();
    Some(match live {
        true => look_up(source, names, deadline).await,
        false => resolve(source, names, deadline).await.0,
    })
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
            _ => References::new(),
        };
        let deadline = Deadline::after(self.lookup_budget(api_server_timeout));
        // Only the new object's referents: a problem the stored object had is matched word for
        // word, so it names the same referents at the same place, and those are looked up.
        let objects = [(kind, &refs[..])];
        let judge = |catalog: Catalog| {
            let known = &catalog;
            rules::judge(kind, namespace, &refs, &old_refs, known, &self.policy)
        };
        let sources = &self.kubestash;
        let mut verdict = judge(sources.catalog(&objects, Vec::new(), false, deadline).await);
        if !verdict.allowed() && sources.may_lag() {
            // A cache is trusted to allow, never to deny: a denial rests on live answers.
            verdict = judge(sources.catalog(&objects, Vec::new(), true, deadline).await);
        }
        with_kind(answer(verdict))
    }
}
