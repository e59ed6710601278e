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
use crate::rules::{Found, Policy, Problem, Resolution};
use crate::sources::{list_pages, Referent, SpecObject};
use crate::validator::{Deadline, KubeStashSources, Outcome};

const LIST_FUNCTIONS: &str = "list them with: kubectl get functions.addons.kubestash.com";

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

/// The objects of one kind that hold references, one at a time, to `each`; none when its CRD
/// is absent.
async fn list_kind(
    client: &Client,
    kind: &'static Kind,
    each: &mut impl FnMut(Listed),
) -> Result<(), kube::Error> {
    let gvk = GroupVersionKind::gvk(CORE_GROUP, VERSION, kind.kind);
    let api: Api<SpecObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, kind.plural),
    );
    list_pages(&api, |object| {
        let Some(name) = object.metadata.name else {
            return;
        };
        let namespace = object.metadata.namespace;
        // Where every reference is, under `spec`.
        let fields = Value::Object(serde_json::Map::from_iter([("spec".into(), object.spec)]));
        let refs = kubestash::references(kind, &fields, namespace.as_deref().unwrap_or_default());
        if refs.is_empty() {
            return;
        }
        each(Listed {
            kind,
            key: ObjectKey {
                kind: kind.kind,
                namespace,
                name,
            },
            uid: object.metadata.uid.unwrap_or_default(),
            refs,
        });
    })
    .await
}

/// Every object of the four kinds that holds a reference, from live LISTs, one at a time and
/// kind after kind: a cluster's worth of objects and their references is never held at once.
pub async fn for_each_object(
    client: &Client,
    mut each: impl FnMut(Listed),
) -> Result<(), kube::Error> {
    for kind in kubestash::KINDS {
        list_kind(client, kind, &mut each).await?;
    }
    Ok(())
}

/// The referent a review changes, read from its object.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    Addon(Addon),
    Function(AddonFunction),
    HookTemplate(HookTemplate),
}

/// How a referent is read from its object.
pub(super) type Reader = fn(&Value) -> Written;

/// The KubeStash referent a review is about: its kind as metrics label it, and how to read it.
pub(super) fn referent(req: &Request<'_>) -> Option<(&'static str, Reader)> {
    fn is<R: Referent>(req: &Request<'_>) -> bool {
        (&*req.kind.group, &*req.kind.version, &*req.kind.kind) == (R::GROUP, R::VERSION, R::KIND)
    }
    let referents: [(bool, &str, Reader); 3] = [
        (is::<Addon>(req), "Addon.addons.kubestash.com", |o| {
            Written::Addon(Addon::from_object(o))
        }),
        (
            is::<AddonFunction>(req),
            "Function.addons.kubestash.com",
            |o| Written::Function(AddonFunction::from_object(o)),
        ),
        (
            is::<HookTemplate>(req),
            "HookTemplate.core.kubestash.com",
            |o| Written::HookTemplate(HookTemplate::from_object(o)),
        ),
    ];
    let (_, label, read) = referents.into_iter().find(|(is, _, _)| *is)?;
    Some((label, read))
}

impl Written {
    fn kind(&self) -> &'static str {
        match self {
            Written::Addon(_) => Addon::KIND,
            Written::Function(_) => AddonFunction::KIND,
            Written::HookTemplate(_) => HookTemplate::KIND,
        }
    }

    /// The Functions it runs.
    fn functions(&self) -> Vec<String> {
        match self {
            Written::Addon(addon) => addon.functions().map(str::to_owned).collect(),
            Written::HookTemplate(template) => {
                template.function().into_iter().map(str::to_owned).collect()
            }
            Written::Function(_) => Vec::new(),
        }
    }

    /// What to warn about it as written: what keeps it from running, field path first, as the
    /// rules say it of an object that names it. `key`: its name (`NAMESPACE/NAME` for a
    /// HookTemplate); `catalog`: what is known of the Functions it runs. Pure.
    pub fn warnings(&self, key: &str, catalog: &Catalog) -> Vec<String> {
        let runs = |path: &str, runner: String, function: Option<&str>| {
            let (found, _) = rules::function_problems(&path.into(), &runner, function, catalog);
            found.into_iter().filter_map(|found| match found {
                Found::Problem(problem) => Some(problem.to_string()),
                _ => None,
            })
        };
        match self {
            Written::Addon(addon) => {
                let mut warnings = Vec::new();
                for list in [TaskList::Backup, TaskList::Restore] {
                    for (i, task) in addon.tasks(list).iter().enumerate() {
                        let (list, name) = (list.as_str(), &task.name);
                        let path = format!("spec.{list}Tasks[{i}].function");
                        let runner = format!("{list} task \"{name}\" of Addon \"{key}\"");
                        warnings.extend(runs(&path, runner, task.function.as_deref()));
                    }
                }
                warnings
            }
            Written::HookTemplate(template) => match &template.executor {
                HookExecutor::Function(None) => vec![format!(
                    "spec.executor.function.name: HookTemplate \"{key}\" has executor type Function but names no Function: a hook that names it fails until it names one (set it to the name of a Function, {LIST_FUNCTIONS})"
                )],
                HookExecutor::Function(function) => {
                    let runner = format!("HookTemplate \"{key}\"");
                    runs("spec.executor.function.name", runner, function.as_deref()).collect()
                }
                HookExecutor::Other => Vec::new(),
            },
            Written::Function(function) => (function.faults().into_iter())
                .map(|(field, what, fix)| format!("{field}: Function \"{key}\" {what}: an Addon task or HookTemplate that runs it fails until it is fixed ({fix})"))
                .collect(),
        }
    }

    /// Puts it in `catalog` as `key`: found, or not found once `deleted`.
    fn put(&self, key: &str, deleted: bool, catalog: &mut Catalog) {
        fn put<R>(map: &mut Option<HashMap<String, Resolution<R>>>, key: &str, r: R, gone: bool) {
            let answer = if gone {
                Resolution::NotFound
            } else {
                Resolution::found(r)
            };
            map.get_or_insert_with(HashMap::new)
                .insert(key.to_owned(), answer);
        }
        match self.clone() {
            Written::Addon(a) => put(&mut catalog.addons, key, a, deleted),
            Written::Function(f) => put(&mut catalog.functions, key, f, deleted),
            Written::HookTemplate(t) => put(&mut catalog.hook_templates, key, t, deleted),
        }
    }
}

/// The references of `object` that the rules admit with `before` and deny with `after`, each
/// with the first problem found after: what a change from one catalog to the other breaks.
/// Without the ratchet, and a lookup that failed breaks nothing. Pure.
pub fn broken_by(object: &Listed, before: &Catalog, after: &Catalog) -> Vec<(User, Problem)> {
    let namespace = object.key.namespace.as_deref().unwrap_or_default();
    let judge = |one: &Reference, catalog: &Catalog| {
        rules::judge_alone(object.kind, namespace, one, catalog, &Policy::default())
    };
    (object.refs.iter())
        .filter(|one| judge(one, before).allowed())
        .filter_map(|one| {
            let first = judge(one, after).denials.into_iter().next()?;
            let user = User {
                object: object.key.clone(),
                path: one.path().to_string(),
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
    let (what, breaks) = if delete {
        (
            format!("{kind} \"{key}\" is used by {users}"),
            "exists again",
        )
    } else {
        let why = format!("{}: {}", first.path, first.what);
        (
            format!("this change breaks {kind} \"{key}\" for {users} (first denial: {why})"),
            "can run for them again",
        )
    };
    let breaks = format!("those objects fail until {kind} \"{key}\" {breaks}, or they are changed");
    decide(warnings, what, kind, &breaks, allow_breaking)
}

impl Protector {
    /// A review of an Addon, a KubeStash Function or a HookTemplate (`label`: its kind, as
    /// metrics label it).
    pub(super) async fn review_kubestash(
        &self,
        req: &Request<'_>,
        (label, read): (&'static str, Reader),
        annotated: bool,
        deadline: Deadline,
    ) -> Outcome {
        let reply = match review::whole_objects(req.body) {
            Ok((new, old)) => {
                // The API server sends the object deleted as the old object.
                let (old, new) = match req.operation {
                    Operation::Create => (None, new),
                    Operation::Update => (old, new),
                    _ => (old, None),
                };
                let (old, new) = (old.map(|o| read(&o)), new.map(|o| read(&o)));
                self.kubestash_change(req, (old, new), annotated, deadline)
                    .await
            }
            Err(err) => Ok(Reply::deny(format!("the request could not be read: {err}"))),
        };
        let mut outcome = match reply {
            Ok(reply) => self.outcome(reply),
            Err(unchecked) => self.unverified(&unchecked),
        };
        outcome.other_kind = Some(label);
        outcome
    }

    async fn kubestash_change(
        &self,
        req: &Request<'_>,
        (old, new): (Option<Written>, Option<Written>),
        annotated: bool,
        deadline: Deadline,
    ) -> Result<Reply, Unchecked> {
        let (Some(written), Some(sources)) = (new.as_ref().or(old.as_ref()), &self.kubestash)
        else {
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
        let functions = new
            .iter()
            .chain(&old)
            .flat_map(Written::functions)
            .collect();
        let looked_up = sources.catalog(&[], functions, false, deadline).await;
        let (mut before, mut after) = (looked_up.clone(), looked_up);
        if let Some(old) = &old {
            old.put(&key, false, &mut before);
        }
        written.put(&key, delete, &mut after);
        let warnings = new
            .as_ref()
            .map(|new| new.warnings(&key, &after))
            .unwrap_or_default();
        let broken = match (&self.cluster, changed) {
            (Some(cluster), true) => {
                let catalogs = (before, after);
                let broken = broken(cluster, sources, catalogs, deadline).await;
                let what = format!("{} \"{key}\"", written.kind());
                broken.map_err(|err| Unchecked::listing(&what, "objects", err))?
            }
            _ => Vec::new(),
        };
        Ok(judge(
            (written.kind(), &key),
            delete,
            &broken,
            warnings,
            annotated,
        ))
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
