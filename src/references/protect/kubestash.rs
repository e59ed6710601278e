//! Protection of KubeStash's referents in use, as for Stash's ([`super::protect`]): an Addon, a
//! KubeStash Function or a HookTemplate is not deleted, nor edited, so that an object naming it
//! (directly, or through an Addon's task or a HookTemplate) would no longer be admitted, unless
//! its owner says so with the same annotation.
//!
//! What breaks is not spelled out a second time here: the objects that may depend on the referent
//! are listed live, page by page, and each of their references is judged by the KubeStash rules
//! with the referent as it is and as the change leaves it. A reference admitted before and denied
//! after is broken by the change; one broken before is not this change's doing.

use std::collections::HashMap;

use kube::api::{ApiResource, GroupVersionKind};
use kube::core::admission::Operation;
use kube::{Api, Client};
use serde_json::Value;

use super::{decide, through_text, within, ListError, Protector, Unchecked};
use crate::kubestash::referents::{Addon, AddonFunction, HookExecutor, HookTemplate};
use crate::kubestash::{self, Kind, Reference, References, TaskList, CORE_GROUP, VERSION};
use crate::references::index;
use crate::review::{self, Reply, Request};
use crate::rules::kubestash::{self as rules, Catalog};
use crate::rules::{Found, Problem, Resolution};
use crate::sources::{list_pages, Referent, SpecObject};
use crate::validator::{Deadline, KubeStashSources, Outcome};

/// One object of the four kinds that name KubeStash referents (`BackupConfiguration`).
pub type ObjectKey = index::ObjectKey<&'static str>;

/// One reference that names a referent: the object, and the field (an `addon`, a hook).
pub type User = index::Referent<&'static str>;

/// One listed object and its references.
#[derive(Debug, Clone)]
pub struct Listed {
    pub kind: &'static Kind,
    pub key: ObjectKey,
    pub uid: String,
    pub refs: References,
}

/// Every object of the four kinds that holds a reference, from live LISTs (a kind whose CRD is
/// absent has none), one at a time and kind after kind: a cluster's worth of objects and their
/// references is never held at once.
pub async fn for_each_object(
    client: &Client,
    mut each: impl FnMut(Listed),
) -> Result<(), kube::Error> {
    for kind in kubestash::KINDS {
        let gvk = GroupVersionKind::gvk(CORE_GROUP, VERSION, kind.kind);
        let resource = ApiResource::from_gvk_with_plural(&gvk, kind.plural);
        let api: Api<SpecObject> = Api::all_with(client.clone(), &resource);
        list_pages(&api, |object| {
            let (Some(name), namespace) = (object.metadata.name, object.metadata.namespace) else {
                return;
            };
            // Where every reference is, under `spec`.
            let fields = Value::Object(serde_json::Map::from_iter([("spec".into(), object.spec)]));
            let refs =
                kubestash::references(kind, &fields, namespace.as_deref().unwrap_or_default());
            if refs.is_empty() {
                return;
            }
            let uid = object.metadata.uid.unwrap_or_default();
            let key = ObjectKey {
                kind: kind.kind,
                namespace,
                name,
            };
            each(Listed {
                kind,
                key,
                uid,
                refs,
            });
        })
        .await?;
    }
    Ok(())
}

/// A KubeStash referent that protection guards: where a catalog keeps it, the Functions it runs,
/// and what keeps it from running as written.
pub trait Guarded: Referent + PartialEq {
    /// Its kind, as metrics label it.
    const LABEL: &'static str;

    /// Where a catalog keeps referents of its kind.
    fn slot(catalog: &mut Catalog) -> &mut Option<HashMap<String, Resolution<Self>>>;

    /// The Functions it runs.
    fn runs(&self) -> Vec<String> {
        Vec::new()
    }

    /// What to warn about it as written: what keeps it from running, field path first, as the
    /// rules say it of an object that names it. `key`: its name (`NAMESPACE/NAME` for a
    /// HookTemplate); `catalog`: what is known of the Functions it runs. Pure.
    fn warnings(&self, key: &str, catalog: &Catalog) -> Vec<String>;

    /// Puts it in `catalog` as `key`: found, or not found once `deleted`.
    fn put(&self, key: &str, deleted: bool, catalog: &mut Catalog) {
        let answer = match deleted {
            true => Resolution::NotFound,
            false => Resolution::found(self.clone()),
        };
        let slot = Self::slot(catalog).get_or_insert_with(HashMap::new);
        slot.insert(key.to_owned(), answer);
    }
}

/// What keeps the Function that `runner` runs from running, as warnings at `path` (`nameless`:
/// what is said when it names none, and the fix).
fn runs(
    (path, runner): (&str, String),
    function: Option<&str>,
    nameless: (&str, String),
    catalog: &Catalog,
) -> Vec<String> {
    let (found, _) = rules::function_problems(&path.into(), &runner, function, nameless, catalog);
    let problem = |found| match found {
        Found::Problem(problem) => Some(problem.to_string()),
        _ => None,
    };
    found.into_iter().filter_map(problem).collect()
}

impl Guarded for Addon {
    const LABEL: &'static str = "Addon.addons.kubestash.com";

    fn slot(catalog: &mut Catalog) -> &mut Option<HashMap<String, Resolution<Self>>> {
        &mut catalog.addons
    }

    fn runs(&self) -> Vec<String> {
        let tasks = self.backup_tasks.iter().chain(&self.restore_tasks);
        tasks.filter_map(|t| t.function.clone()).collect()
    }

    fn warnings(&self, key: &str, catalog: &Catalog) -> Vec<String> {
        let mut warnings = Vec::new();
        for list in [TaskList::Backup, TaskList::Restore] {
            for (i, task) in self.tasks(list).iter().enumerate() {
                let (list, name) = (list.as_str(), &task.name);
                let path = format!("spec.{list}Tasks[{i}].function");
                let runner = format!("{list} task \"{name}\" of Addon \"{key}\"");
                let function = task.function.as_deref();
                let nameless = rules::task_nameless();
                warnings.extend(runs((&path, runner), function, nameless, catalog));
            }
        }
        warnings
    }
}

impl Guarded for AddonFunction {
    const LABEL: &'static str = "Function.addons.kubestash.com";

    fn slot(catalog: &mut Catalog) -> &mut Option<HashMap<String, Resolution<Self>>> {
        &mut catalog.functions
    }

    fn warnings(&self, key: &str, _: &Catalog) -> Vec<String> {
        (self.faults().into_iter())
            .map(|(field, what, fix)| format!("{field}: Function \"{key}\" {what}: an Addon task or HookTemplate that runs it fails until it is fixed ({fix})"))
            .collect()
    }
}

impl Guarded for HookTemplate {
    const LABEL: &'static str = "HookTemplate.core.kubestash.com";

    fn slot(catalog: &mut Catalog) -> &mut Option<HashMap<String, Resolution<Self>>> {
        &mut catalog.hook_templates
    }

    fn runs(&self) -> Vec<String> {
        self.function().into_iter().map(str::to_owned).collect()
    }

    fn warnings(&self, key: &str, catalog: &Catalog) -> Vec<String> {
        let HookExecutor::Function(function) = &self.executor else {
            return Vec::new();
        };
        let (namespace, name) = key.split_once('/').unwrap_or_default();
        let runner = format!("HookTemplate \"{key}\"");
        let nameless = rules::hook_nameless(namespace, name);
        let at = ("spec.executor.function.name", runner);
        runs(at, function.as_deref(), nameless, catalog)
    }
}

/// The references of `object` that the rules admit with `before` and deny with `after`, each
/// with the first problem found after: what a change from one catalog to the other breaks.
/// Without the ratchet, and a lookup that failed breaks nothing. Pure.
pub fn broken_by(object: &Listed, before: &Catalog, after: &Catalog) -> Vec<(User, Problem)> {
    let namespace = object.key.namespace.as_deref().unwrap_or_default();
    let judge = |one: &Reference, catalog: &Catalog| {
        rules::judge_alone(object.kind, namespace, one, catalog)
    };
    (object.refs.iter())
        .filter(|one| judge(one, before).allowed())
        .filter_map(|one| {
            let first = judge(one, after).denials.into_iter().next()?;
            let user = User {
                object: object.key.clone(),
                path: one.path.to_string(),
            };
            Some((user, first))
        })
        .collect()
}

/// The verdict on a change to referent `key` of kind `kind`: the references it breaks
/// ([`broken_by`]), the warnings about it as written, and whether it carries the annotation.
/// Pure.
pub fn judge(
    (kind, key): (&str, &str),
    delete: bool,
    broken: &[(User, Problem)],
    warnings: Vec<String>,
    allow_breaking: bool,
) -> Reply {
    let Some((_, first)) = broken.first() else {
        return Reply::warn(warnings);
    };
    let users: Vec<&User> = broken.iter().map(|(user, _)| user).collect();
    let users = through_text(("reference", &users), &[], ("", ""));
    let why = format!("{}: {}", first.path, first.what);
    let what = match delete {
        true => format!("{kind} \"{key}\" is used by {users}"),
        false => format!("this change breaks {kind} \"{key}\" for {users} (first denial: {why})"),
    };
    let breaks = if delete {
        "exists again"
    } else {
        "can run for them again"
    };
    let breaks = format!("those objects fail until {kind} \"{key}\" {breaks}, or they are changed");
    decide(warnings, what, kind, &breaks, allow_breaking)
}

impl Protector {
    /// A review of an Addon, a KubeStash Function or a HookTemplate, when KubeStash's referents
    /// are protected; None for any other kind.
    pub(super) async fn review_kubestash(
        &self,
        req: &Request<'_>,
        annotated: bool,
        deadline: Deadline,
    ) -> Option<Outcome> {
        fn is<R: Referent>(req: &Request<'_>) -> bool {
            let kind = (&*req.kind.group, &*req.kind.version, &*req.kind.kind);
            kind == (R::GROUP, R::VERSION, R::KIND)
        }
        let sources = self.kubestash.as_ref()?;
        let guard = (sources, annotated, deadline);
        Some(match () {
            _ if is::<Addon>(req) => self.guard::<Addon>(req, guard).await,
            _ if is::<AddonFunction>(req) => self.guard::<AddonFunction>(req, guard).await,
            _ if is::<HookTemplate>(req) => self.guard::<HookTemplate>(req, guard).await,
            _ => return None,
        })
    }

    async fn guard<R: Guarded>(
        &self,
        req: &Request<'_>,
        guard: (&KubeStashSources, bool, Deadline),
    ) -> Outcome {
        let reply = match review::whole_objects(req.body) {
            // The API server sends no old object on CREATE, and on DELETE the object deleted as
            // the old object, and no new one.
            Ok((new, old)) => {
                let read = |o: Option<Value>| o.map(|o| R::from_object(&o));
                self.change(req, (read(old), read(new)), guard).await
            }
            Err(err) => Ok(Reply::deny(format!("the request could not be read: {err}"))),
        };
        let mut outcome = match reply {
            Ok(reply) => self.outcome(reply),
            Err(unchecked) => self.unverified(&unchecked),
        };
        outcome.other_kind = Some(R::LABEL);
        outcome
    }

    async fn change<R: Guarded>(
        &self,
        req: &Request<'_>,
        (old, new): (Option<R>, Option<R>),
        (sources, annotated, deadline): (&KubeStashSources, bool, Deadline),
    ) -> Result<Reply, Unchecked> {
        let Some(written) = new.as_ref().or(old.as_ref()) else {
            return Ok(Reply::allow());
        };
        // A HookTemplate is known by `NAMESPACE/NAME`.
        let key = match &req.namespace {
            Some(ns) => format!("{ns}/{}", req.name),
            None => req.name.to_string(),
        };
        let delete = req.operation == Operation::Delete;
        let changed = delete || (req.operation == Operation::Update && old != new);
        // The Functions it runs, looked up as a review looks them up.
        let functions = new.iter().chain(&old).flat_map(R::runs).collect();
        let looked_up = sources.catalog(&[], functions, false, deadline).await;
        let (mut before, mut after) = (looked_up.clone(), looked_up);
        if let Some(old) = &old {
            old.put(&key, false, &mut before);
        }
        written.put(&key, delete, &mut after);
        let warnings = (new.as_ref())
            .map(|new| new.warnings(&key, &after))
            .unwrap_or_default();
        let broken = match (&self.cluster, changed) {
            (Some(cluster), true) => {
                let catalogs = (before, after);
                let broken = broken(cluster, sources, catalogs, deadline).await;
                let what = format!("{} \"{key}\"", R::KIND);
                broken.map_err(|err| Unchecked::listing(&what, "objects", err))?
            }
            _ => Vec::new(),
        };
        Ok(judge((R::KIND, &key), delete, &broken, warnings, annotated))
    }
}

/// The references that a change breaks ([`broken_by`]): every object of the four kinds,
/// listed live before `deadline` and judged as it is listed, with what memory holds of the
/// referents it reaches, and the referent changed as it is (`before`) and as the change
/// leaves it (`after`).
async fn broken(
    cluster: &super::Cluster,
    sources: &KubeStashSources,
    (mut before, mut after): (Catalog, Catalog),
    deadline: Deadline,
) -> Result<Vec<(User, Problem)>, ListError> {
    let client = cluster.client.clone();
    within(deadline, async move {
        let mut broken = Vec::new();
        let judge = |object: Listed| {
            sources.learn(object.kind, &object.refs, &mut before);
            sources.learn(object.kind, &object.refs, &mut after);
            broken.extend(broken_by(&object, &before, &after));
        };
        for_each_object(&client, judge)
            .await
            .map_err(ListError::KubeStash)?;
        Ok(broken)
    })
    .await
}

#[cfg(test)]
mod tests;
