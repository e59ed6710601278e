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

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::core::admission::Operation;
use kube::{Api, Client};
use serde_json::Value;

use super::{decide, through_text, unusable, within, ListError, Protector, Unchecked, RETRY_LIST};
use crate::kubestash::referents::{Addon, AddonFunction, HookExecutor, HookTemplate};
use crate::kubestash::{self, Kind, References, TaskList, CORE_GROUP, VERSION};
use crate::references::index;
use crate::review::{self, Reply, Request};
use crate::rules::kubestash::{self as rules, Catalog};
use crate::rules::{Container, FailurePolicy, Found, Policy, Problem, Resolution};
use crate::sources::{list_pages, Referent, Source};
use crate::validator::{look_up, Deadline, Outcome};

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
    let api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, kind.plural),
    );
    list_pages(&api, |object| {
        let Some(name) = object.metadata.name.clone() else {
            return;
        };
        let namespace = object.metadata.namespace.clone();
        let whole = serde_json::to_value(&object).unwrap_or(Value::Null);
        let refs = kubestash::references(kind, &whole, namespace.as_deref().unwrap_or_default());
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

/// Which KubeStash referent a review is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Which {
    Addon,
    Function,
    HookTemplate,
}

impl Which {
    pub(super) fn of(req: &Request<'_>) -> Option<Which> {
        fn is<R: Referent>(req: &Request<'_>) -> bool {
            (&*req.kind.group, &*req.kind.version, &*req.kind.kind)
                == (R::GROUP, R::VERSION, R::KIND)
        }
        [
            (is::<Addon>(req), Which::Addon),
            (is::<AddonFunction>(req), Which::Function),
            (is::<HookTemplate>(req), Which::HookTemplate),
        ]
        .into_iter()
        .find_map(|(is, which)| is.then_some(which))
    }

    /// As metrics label the kind.
    pub(super) fn label(self) -> &'static str {
        match self {
            Which::Addon => "Addon.addons.kubestash.com",
            Which::Function => "Function.addons.kubestash.com",
            Which::HookTemplate => "HookTemplate.core.kubestash.com",
        }
    }

    fn read(self, object: &Value) -> Written {
        match self {
            Which::Addon => Written::Addon(Addon::from_object(object)),
            Which::Function => Written::Function(AddonFunction::from_object(object)),
            Which::HookTemplate => Written::HookTemplate(HookTemplate::from_object(object)),
        }
    }
}

impl Written {
    /// The Functions it runs.
    fn functions(&self) -> Vec<String> {
        match self {
            Written::Addon(addon) => addon.functions().map(str::to_owned).collect(),
            Written::HookTemplate(template) => {
                template.function().map(str::to_owned).into_iter().collect()
            }
            Written::Function(_) => Vec::new(),
        }
    }

    /// What to warn about it as written: what keeps it from running, field path first, as the
    /// rules say it of an object that names it. `key`: its name (`NAMESPACE/NAME` for a
    /// HookTemplate); `catalog`: what is known of the Functions it runs. Pure.
    pub fn warnings(&self, key: &str, catalog: &Catalog) -> Vec<String> {
        let runs = |path: &str, runner: String, function: Option<&str>| {
            let (found, _) =
                rules::function_problems(&path.into(), &runner, function, catalog.known());
            found.into_iter().filter_map(|found| match found {
                Found::Problem(problem) => Some(problem.to_string()),
                _ => None,
            })
        };
        match self {
            Written::Addon(addon) => [TaskList::Backup, TaskList::Restore]
                .into_iter()
                .flat_map(|list| {
                    addon.tasks(list).iter().enumerate().flat_map(move |(i, task)| {
                        let path = format!("spec.{}Tasks[{i}].function", list.as_str());
                        let runner = format!("{} task \"{}\" of Addon \"{key}\"", list.as_str(), task.name);
                        runs(&path, runner, task.function.as_deref())
                    })
                })
                .collect(),
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
            Written::Function(function) if function.container != Container::Valid => vec![format!(
                "spec.image: Function \"{key}\" {}: an Addon task or HookTemplate that runs it fails until it has one (set spec.image to a container image)",
                unusable(&function.container)
            )],
            _ => Vec::new(),
        }
    }

    /// Puts it, as `key`, in `catalog` (or marks it not found, when it is deleted).
    fn put(written: Option<&Written>, which: Which, key: &str, catalog: &mut Catalog) {
        fn put<R>(map: &mut Option<HashMap<String, Resolution<R>>>, key: &str, r: Resolution<R>) {
            map.get_or_insert_with(HashMap::new)
                .insert(key.to_owned(), r);
        }
        match (which, written.cloned()) {
            (_, Some(Written::Addon(a))) => put(&mut catalog.addons, key, Resolution::found(a)),
            (_, Some(Written::Function(f))) => {
                put(&mut catalog.functions, key, Resolution::found(f))
            }
            (_, Some(Written::HookTemplate(t))) => {
                put(&mut catalog.hook_templates, key, Resolution::found(t))
            }
            (Which::Addon, None) => put(&mut catalog.addons, key, Resolution::NotFound),
            (Which::Function, None) => put(&mut catalog.functions, key, Resolution::NotFound),
            (Which::HookTemplate, None) => {
                put(&mut catalog.hook_templates, key, Resolution::NotFound)
            }
        }
    }
}

/// The references of `object` that the rules admit with `before` and deny with `after`, each
/// with the first problem found after: what a change from one catalog to the other breaks.
/// Without the ratchet, and a lookup that failed breaks nothing. Pure.
pub fn broken_by(object: &Listed, before: &Catalog, after: &Catalog) -> Vec<(User, Problem)> {
    let policy = Policy {
        on_lookup_failure: FailurePolicy::Allow,
        ..Policy::default()
    };
    let namespace = object.key.namespace.as_deref().unwrap_or_default();
    let judge = |one: &References, catalog: &Catalog| {
        let none = References::default();
        rules::judge(object.kind, namespace, one, &none, catalog.known(), &policy)
    };
    object
        .refs
        .each()
        .filter(|(_, one)| judge(one, before).allowed())
        .filter_map(|(path, one)| {
            let first = judge(&one, after).denials.into_iter().next()?;
            let user = User {
                object: object.key.clone(),
                path: path.to_string(),
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
    let users = through_text(("object", &users), &[], ("", ""));
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

/// What `source` says of each of `names`: from memory when it trusts it, live otherwise; none
/// without a source, or when the cluster does not serve the kind.
async fn named<R: Referent>(
    source: Option<&dyn Source<R>>,
    mut names: Vec<String>,
    deadline: Deadline,
) -> Option<HashMap<String, Resolution<R>>> {
    let source = source.filter(|s| s.is_installed())?;
    names.sort_unstable();
    names.dedup();
    let mut found = HashMap::new();
    let mut pending = Vec::new();
    for name in &names {
        match source.resolve_now(name) {
            Some(answer) => {
                found.insert(name.clone(), answer);
            }
            None => pending.push(name.as_str()),
        }
    }
    found.extend(look_up(source, pending, deadline).await);
    Some(found)
}

impl Protector {
    /// A review of an Addon, a KubeStash Function or a HookTemplate.
    pub(super) async fn review_kubestash(
        &self,
        req: &Request<'_>,
        which: Which,
        annotated: bool,
        deadline: Deadline,
    ) -> Outcome {
        let reply = match review::whole_objects(req.body) {
            Ok((new, old)) => {
                let read = |o: Option<Value>| o.map(|o| which.read(&o));
                let (old, new) = match req.operation {
                    Operation::Create => (None, read(new)),
                    Operation::Update => (read(old), read(new)),
                    _ => (None, None),
                };
                self.kubestash_change(req, which, (old, new), annotated, deadline)
                    .await
            }
            Err(err) => Ok(Reply::deny(format!("the request could not be read: {err}"))),
        };
        let mut outcome = match reply {
            Ok(reply) => self.outcome(reply),
            Err(unchecked) => self.unverified(&unchecked),
        };
        outcome.other_kind = Some(which.label());
        outcome
    }

    async fn kubestash_change(
        &self,
        req: &Request<'_>,
        which: Which,
        (old, new): (Option<Written>, Option<Written>),
        annotated: bool,
        deadline: Deadline,
    ) -> Result<Reply, Unchecked> {
        let key = match (which, &req.namespace) {
            (Which::HookTemplate, Some(ns)) => format!("{ns}/{}", req.name),
            _ => req.name.to_string(),
        };
        let kind = match which {
            Which::Addon => Addon::KIND,
            Which::Function => AddonFunction::KIND,
            Which::HookTemplate => HookTemplate::KIND,
        };
        let sources = &self.kubestash;
        let mut catalog = Catalog {
            functions: match (&new, &self.cluster) {
                (Some(new), Some(_)) => {
                    named(sources.functions.as_deref(), new.functions(), deadline).await
                }
                _ => None,
            },
            ..Catalog::default()
        };
        let warnings = new
            .as_ref()
            .map(|new| new.warnings(&key, &catalog))
            .unwrap_or_default();
        let delete = req.operation == Operation::Delete;
        let changed = delete || (req.operation == Operation::Update && old != new);
        let (Some(cluster), true) = (&self.cluster, changed) else {
            return Ok(judge((kind, &key), delete, &[], warnings, annotated));
        };
        // The objects that may depend on the referent: those naming it, or (for a Function) an
        // Addon or a HookTemplate that memory says runs it, or does not know.
        let mut runs: HashMap<String, bool> = HashMap::new();
        let mut may_depend = |refs: &References| match which {
            Which::Addon => refs.addons.iter().any(|a| a.name.as_str() == Some(&key)),
            Which::HookTemplate => refs.hooks.iter().any(|h| h.key().as_deref() == Some(&key)),
            Which::Function => {
                let addons = refs.addons.iter().filter_map(|a| a.name.as_str());
                let via_addon = addons.map(str::to_owned).any(|name| {
                    *runs.entry(format!("addon {name}")).or_insert_with(|| {
                        match sources.addons.as_ref().and_then(|s| s.resolve_now(&name)) {
                            Some(Resolution::Found(addon)) => addon.functions().any(|f| f == key),
                            _ => true,
                        }
                    })
                });
                via_addon
                    || refs.hooks.iter().filter_map(|h| h.key()).any(|k| {
                        *runs.entry(format!("hook {k}")).or_insert_with(|| {
                            let found = sources
                                .hook_templates
                                .as_ref()
                                .and_then(|s| s.resolve_now(&k));
                            match found {
                                Some(Resolution::Found(t)) => t.function() == Some(&key),
                                _ => true,
                            }
                        })
                    })
            }
        };
        let client = cluster.client.clone();
        let listed = within(deadline, async move {
            let mut kept = Vec::new();
            for_each_object(&client, |o| {
                if may_depend(&o.refs) {
                    kept.push(o);
                }
            })
            .await
            .map_err(ListError::KubeStash)?;
            Ok(kept)
        })
        .await;
        let objects = listed.map_err(|err| Unchecked {
            subject: format!("{kind} \"{key}\" could not be checked for objects that name it"),
            why: err.to_string(),
            retry: RETRY_LIST,
        })?;

        // What they name, as it is and as the change leaves it.
        let names = |f: fn(&Kind, &References) -> Vec<String>| -> Vec<String> {
            objects.iter().flat_map(|o| f(o.kind, &o.refs)).collect()
        };
        catalog.addons = named(
            sources.addons.as_deref(),
            names(rules::addons_to_resolve),
            deadline,
        )
        .await;
        catalog.hook_templates = named(
            sources.hook_templates.as_deref(),
            names(rules::hook_templates_to_resolve),
            deadline,
        )
        .await;
        let mut after = catalog.clone();
        Written::put(new.as_ref(), which, &key, &mut after);
        let functions: Vec<String> = objects
            .iter()
            .flat_map(|o| {
                let mut names = rules::functions_to_resolve(&o.refs, catalog.known());
                names.extend(rules::functions_to_resolve(&o.refs, after.known()));
                names
            })
            .collect();
        catalog.functions = named(sources.functions.as_deref(), functions, deadline).await;
        after.functions = catalog.functions.clone();
        Written::put(new.as_ref(), which, &key, &mut after);
        let broken: Vec<(User, Problem)> = objects
            .iter()
            .flat_map(|o| broken_by(o, &catalog, &after))
            .collect();
        Ok(judge((kind, &key), delete, &broken, warnings, annotated))
    }
}

#[cfg(test)]
mod tests;
