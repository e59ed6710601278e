//! Protection of KubeStash's referents in use, as for Stash's ([`super::protect`]): an Addon named
//! by an addon reference, a Function run by an Addon's task that some object names or by a
//! HookTemplate that some hook names, and a HookTemplate named by a hook, is not deleted, nor
//! edited into one that cannot run, unless its owner says so with the same annotation.
//!
//! Who uses a referent is found by live LISTs of the four core.kubestash.com kinds (and of Addons
//! and HookTemplates, for a Function), page by page, as [`kubestash::KINDS`] says where their
//! references are. A kind whose CRD is absent has no objects. The verdicts are pure functions of
//! the change, of what was listed and of what is known of the Functions named.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::core::admission::Operation;
use kube::{Api, Client};
use serde_json::Value;

use super::{
    decide, through_text, unusable, within, ListError, Protector, Through, Unchecked, RETRY_LIST,
};
use crate::kubestash::referents::{Addon, AddonFunction, HookTemplate};
use crate::kubestash::{self, Kind, References, TaskList, CORE_GROUP, VERSION};
use crate::references::index;
use crate::review::{self, Reply, Request};
use crate::rules::{Container, Resolution};
use crate::sources::{not_served, Referent, Source};
use crate::validator::{look_up, Deadline, Outcome};

const LIST_FUNCTIONS: &str = "list them with: kubectl get functions.addons.kubestash.com";

/// One object of the four kinds that name KubeStash referents (`BackupConfiguration`).
pub type ObjectKey = index::ObjectKey<&'static str>;

/// One place that names a referent: the object, and the field (an `addon`, one of its `tasks`,
/// a hook).
pub type User = index::Referent<&'static str>;

/// One listed object and its references.
#[derive(Debug, Clone)]
pub struct Listed {
    pub kind: &'static Kind,
    pub key: ObjectKey,
    pub uid: String,
    pub refs: References,
}

/// Every object of the four kinds that holds a reference, in the order listed.
#[derive(Debug, Clone, Default)]
pub struct Objects(pub Vec<Listed>);

impl Objects {
    /// The `addon` fields naming Addon `addon`.
    pub fn addon_users(&self, addon: &str) -> Vec<User> {
        let mut users: Vec<User> = self
            .0
            .iter()
            .flat_map(|o| {
                o.refs
                    .addons
                    .iter()
                    .filter(|a| a.name.as_str() == Some(addon))
                    .map(|a| user(&o.key, a.path.as_str()))
            })
            .collect();
        users.sort();
        users
    }

    /// The `tasks` elements naming task `task` of Addon `addon` in its `list`.
    pub fn task_users(&self, addon: &str, list: TaskList, task: &str) -> Vec<User> {
        let mut users: Vec<User> = self
            .0
            .iter()
            .filter(|o| o.kind.tasks == list)
            .flat_map(|o| {
                o.refs
                    .addons
                    .iter()
                    .filter(|a| a.name.as_str() == Some(addon))
                    .flat_map(|a| &a.tasks)
                    .filter(|t| t.name.as_str() == Some(task))
                    .map(|t| user(&o.key, t.path.as_str()))
            })
            .collect();
        users.sort();
        users
    }

    /// The hooks naming HookTemplate `key` (`NAMESPACE/NAME`).
    pub fn hook_users(&self, key: &str) -> Vec<User> {
        let mut users: Vec<User> = self
            .0
            .iter()
            .flat_map(|o| {
                o.refs
                    .hooks
                    .iter()
                    .filter(|h| h.key().as_deref() == Some(key))
                    .map(|h| user(&o.key, h.path.as_str()))
            })
            .collect();
        users.sort();
        users
    }
}

fn user(key: &ObjectKey, path: &str) -> User {
    User {
        object: key.clone(),
        path: path.to_owned(),
    }
}

/// How many objects one LIST page holds, as for Stash's kinds.
const PAGE: u32 = 500;

/// Every object of `resource`, page by page, to `each`; none when its CRD is absent (404).
async fn list_each(
    client: &Client,
    resource: &ApiResource,
    mut each: impl FnMut(DynamicObject),
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = match api.list(&params).await {
            Ok(page) => page,
            Err(err) if not_served(&err) => return Ok(()),
            Err(err) => return Err(err),
        };
        page.items.into_iter().for_each(&mut each);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

fn resource(group: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, VERSION, kind), plural)
}

/// The objects of one kind that hold references, one at a time, to `each`.
async fn list_kind(
    client: &Client,
    kind: &'static Kind,
    each: &mut impl FnMut(Listed),
) -> Result<(), kube::Error> {
    let resource = resource(CORE_GROUP, kind.kind, kind.plural);
    list_each(client, &resource, |object| {
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

/// The objects of the four kinds that `keep` keeps, from live LISTs.
pub async fn list_objects(
    client: &Client,
    keep: impl Fn(&Listed) -> bool,
) -> Result<Objects, kube::Error> {
    let mut kept = Vec::new();
    for_each_object(client, |object| {
        if keep(&object) {
            kept.push(object);
        }
    })
    .await?;
    Ok(Objects(kept))
}

/// Every referent of `R`, by name (HookTemplates by `NAMESPACE/NAME`), from a live LIST.
async fn list_referents<R: Referent>(client: &Client) -> Result<BTreeMap<String, R>, kube::Error> {
    let mut found = BTreeMap::new();
    let resource = resource(R::GROUP, R::KIND, R::PLURAL);
    list_each(client, &resource, |object| {
        let Some(name) = object.metadata.name.clone() else {
            return;
        };
        let name = match object.metadata.namespace.clone() {
            Some(ns) if R::NAMESPACED => format!("{ns}/{name}"),
            _ => name,
        };
        let whole = serde_json::to_value(&object).unwrap_or(Value::Null);
        found.insert(name, R::from_object(&whole));
    })
    .await?;
    Ok(found)
}

/// Whether a Function named by an Addon task or a HookTemplate can run it, as far as is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runs {
    /// It can, or nothing is known against it (no source, a lookup that failed).
    Yes,
    /// No Function is named.
    NoName,
    NotFound(String),
    Unusable(String, Container),
}

impl Runs {
    /// What `lookup` says of Function `name`.
    pub fn of<'a>(
        name: Option<&str>,
        lookup: impl Fn(&str) -> Option<&'a Resolution<AddonFunction>>,
    ) -> Runs {
        let Some(name) = name else {
            return Runs::NoName;
        };
        match lookup(name) {
            Some(Resolution::NotFound) => Runs::NotFound(name.to_owned()),
            Some(Resolution::Found(f)) if f.container != Container::Valid => {
                Runs::Unusable(name.to_owned(), f.container.clone())
            }
            _ => Runs::Yes,
        }
    }

    fn runs(&self) -> bool {
        *self == Runs::Yes
    }

    /// `Function "f" not found`, in a few words.
    fn why(&self) -> String {
        match self {
            Runs::Yes => "it can run".to_owned(),
            Runs::NoName => "it names no Function".to_owned(),
            Runs::NotFound(name) => format!("Function \"{name}\" not found"),
            Runs::Unusable(name, container) => {
                format!("Function \"{name}\" {}", unusable(container))
            }
        }
    }
}

fn list_field(list: TaskList) -> &'static str {
    match list {
        TaskList::Backup => "spec.backupTasks",
        TaskList::Restore => "spec.restoreTasks",
    }
}

const LISTS: [TaskList; 2] = [TaskList::Backup, TaskList::Restore];

/// What to warn about an Addon as it is written: each task that names no Function or one that
/// is missing or cannot run, field path first. Pure.
pub fn addon_warnings<'a>(
    name: &str,
    addon: &Addon,
    functions: impl Fn(&str) -> Option<&'a Resolution<AddonFunction>>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    for list in LISTS {
        for (i, task) in addon.tasks(list).iter().enumerate() {
            let path = format!("{}[{i}].function", list_field(list));
            let runner = format!(
                "{} task \"{}\" of Addon \"{name}\"",
                list.as_str(),
                task.name
            );
            match Runs::of(task.function.as_deref(), &functions) {
                Runs::Yes => {}
                Runs::NoName => warnings.push(format!(
                    "{path}: {runner} names no Function: an object that names this task fails until it names one (set function to the name of a Function, {LIST_FUNCTIONS})"
                )),
                Runs::NotFound(f) => warnings.push(format!(
                    "{path}: Function \"{f}\" not found: an object that names {runner} fails until it exists (create the Function, or fix the name; {LIST_FUNCTIONS})"
                )),
                Runs::Unusable(f, container) => warnings.push(format!(
                    "{path}: Function \"{f}\" {}: an object that names {runner} fails until it can run",
                    unusable(&container)
                )),
            }
        }
    }
    warnings
}

/// What to warn about a HookTemplate as it is written (`key`: `NAMESPACE/NAME`): a Function
/// executor that names no Function, or one that is missing or cannot run. Pure.
pub fn hook_template_warnings<'a>(
    key: &str,
    template: &HookTemplate,
    functions: impl Fn(&str) -> Option<&'a Resolution<AddonFunction>>,
) -> Vec<String> {
    if !matches!(
        template.executor,
        crate::kubestash::referents::HookExecutor::Function(_)
    ) {
        return Vec::new();
    }
    let path = "spec.executor.function.name";
    match Runs::of(template.function(), functions) {
        Runs::Yes => Vec::new(),
        Runs::NoName => vec![format!(
            "{path}: HookTemplate \"{key}\" has a Function executor that names no Function: a hook that names it fails until it names one (set {path}, {LIST_FUNCTIONS})"
        )],
        Runs::NotFound(f) => vec![format!(
            "{path}: Function \"{f}\" not found: a hook that names HookTemplate \"{key}\" fails until it exists (create the Function, or fix the name; {LIST_FUNCTIONS})"
        )],
        Runs::Unusable(f, container) => vec![format!(
            "{path}: Function \"{f}\" {}: a hook that names HookTemplate \"{key}\" fails until it can run",
            unusable(&container)
        )],
    }
}

/// What to warn about a KubeStash Function as it is written: a container that cannot run. Pure.
pub fn function_warnings(name: &str, container: &Container) -> Vec<String> {
    if *container == Container::Valid {
        return Vec::new();
    }
    vec![format!(
        "spec.image: Function \"{name}\" {}: an Addon task or HookTemplate that runs it fails until it has one (set spec.image to a container image)",
        unusable(container)
    )]
}

/// `1 object: a (spec.sessions[0].addon), ...`, capped as Stash's messages are.
fn users_text(users: &[User], noun: &str) -> String {
    through_text((noun, users), &[], ("", ""))
}

/// A review's change to a referent: the operation, and the referent as it was and as it will be
/// (each none when absent).
#[derive(Debug)]
pub struct Edit<'e, T> {
    pub operation: &'e Operation,
    pub old: Option<&'e T>,
    pub new: Option<&'e T>,
}

/// The verdict on a change to Addon `name`: `old` and `new` as they are read (none when absent),
/// who uses it (`objects`), what is known of the Functions its tasks name, the warnings about the
/// Addon as written, and whether it carries the annotation. Pure.
pub fn judge_addon<'a>(
    name: &str,
    edit: Edit<'_, Addon>,
    objects: &Objects,
    functions: impl Fn(&str) -> Option<&'a Resolution<AddonFunction>>,
    warnings: Vec<String>,
    allow_breaking: bool,
) -> Reply {
    let Edit {
        operation,
        old,
        new,
    } = edit;
    let mut broken = Vec::new();
    if *operation == Operation::Delete {
        let users = objects.addon_users(name);
        if !users.is_empty() {
            broken.push(format!(
                "Addon \"{name}\" is used by {}",
                users_text(&users, "object")
            ));
        }
    } else if let (Operation::Update, Some(old), Some(new)) = (operation, old, new) {
        broken = addon_breaks(name, old, new, objects, &functions);
    }
    if broken.is_empty() {
        return Reply::warn(warnings);
    }
    let breaks = match operation {
        Operation::Delete => "those objects fail until they name an Addon that exists",
        _ => "those objects fail until they name an Addon task that can run",
    };
    decide(warnings, broken.join("; "), "Addon", breaks, allow_breaking)
}

/// The tasks of Addon `name` that some object names and that an update removes, or points at a
/// Function that is missing or cannot run (a Function left as it was breaks nothing new).
fn addon_breaks<'a>(
    name: &str,
    old: &Addon,
    new: &Addon,
    objects: &Objects,
    functions: &impl Fn(&str) -> Option<&'a Resolution<AddonFunction>>,
) -> Vec<String> {
    let mut broken = Vec::new();
    for list in LISTS {
        for task in old.tasks(list) {
            let kept = new
                .tasks(list)
                .iter()
                .enumerate()
                .find(|(_, t)| t.name == task.name);
            let what = match kept {
                None => None,
                Some((_, t)) if t.function == task.function => continue,
                Some((j, t)) => match Runs::of(t.function.as_deref(), functions) {
                    Runs::Yes => continue,
                    runs => Some((j, runs)),
                },
            };
            let users = objects.task_users(name, list, &task.name);
            if users.is_empty() {
                continue;
            }
            let used = users_text(&users, "object");
            let task_name = &task.name;
            let list_name = list.as_str();
            broken.push(match what {
                None => format!(
                    "{}: this change removes {list_name} task \"{task_name}\" of Addon \"{name}\", and it is used by {used}",
                    list_field(list)
                ),
                Some((j, runs)) => format!(
                    "{}[{j}].function: this change leaves {list_name} task \"{task_name}\" of Addon \"{name}\" unable to run ({}), and it is used by {used}",
                    list_field(list),
                    runs.why()
                ),
            });
        }
    }
    broken
}

/// The verdict on a change to HookTemplate `key` (`NAMESPACE/NAME`). Pure.
pub fn judge_hook_template<'a>(
    key: &str,
    edit: Edit<'_, HookTemplate>,
    objects: &Objects,
    functions: impl Fn(&str) -> Option<&'a Resolution<AddonFunction>>,
    warnings: Vec<String>,
    allow_breaking: bool,
) -> Reply {
    let Edit {
        operation,
        old,
        new,
    } = edit;
    let broken = match (operation, hook_template_breaks(operation, old, new, functions)) {
        (Operation::Delete, _) => Some(format!("HookTemplate \"{key}\" is used by")),
        (_, Some(runs)) => Some(format!(
            "spec.executor.function.name: this change leaves HookTemplate \"{key}\" unable to run ({}), and it is used by",
            runs.why()
        )),
        _ => None,
    };
    let users = match broken {
        Some(_) => objects.hook_users(key),
        None => Vec::new(),
    };
    let (Some(what), false) = (broken, users.is_empty()) else {
        return Reply::warn(warnings);
    };
    let breaks = match operation {
        Operation::Delete => "those hooks fail until they name a HookTemplate that exists",
        _ => "those hooks fail until they name a HookTemplate that can run",
    };
    decide(
        warnings,
        format!("{what} {}", users_text(&users, "hook")),
        "HookTemplate",
        breaks,
        allow_breaking,
    )
}

/// How an update leaves a HookTemplate's Function executor, when it changes which Function it
/// runs (or makes it a Function executor) to one that cannot run.
fn hook_template_breaks<'a>(
    operation: &Operation,
    old: Option<&HookTemplate>,
    new: Option<&HookTemplate>,
    functions: impl Fn(&str) -> Option<&'a Resolution<AddonFunction>>,
) -> Option<Runs> {
    let (Operation::Update, Some(old), Some(new)) = (operation, old, new) else {
        return None;
    };
    if old.executor == new.executor
        || !matches!(
            new.executor,
            crate::kubestash::referents::HookExecutor::Function(_)
        )
    {
        return None;
    }
    Some(Runs::of(new.function(), functions)).filter(|r| !r.runs())
}

/// The verdict on a change to KubeStash Function `name`: who runs it (`through`: the Addon tasks
/// and HookTemplates that run it, with the places naming them), and whether it carries the
/// annotation. Pure.
pub fn judge_function(
    name: &str,
    breaks: Option<&Container>,
    delete: bool,
    through: &[Through<'_, User>],
    warnings: Vec<String>,
    allow_breaking: bool,
) -> Reply {
    if through.is_empty() || !(delete || breaks.is_some()) {
        return Reply::warn(warnings);
    }
    let used = through_text(
        ("", &[]),
        through,
        ("Addon task or HookTemplate", "Addon tasks or HookTemplates"),
    );
    let what = match breaks.filter(|_| !delete) {
        Some(container) => format!(
            "spec.image: this change leaves Function \"{name}\" unable to run ({}), and it is used by {used}",
            unusable(container)
        ),
        None => format!("Function \"{name}\" is used by {used}"),
    };
    let tasks = through.iter().any(|t| t.noun == "object");
    let templates = through.iter().any(|t| t.noun == "hook");
    let breaks = match (tasks, templates) {
        (true, false) => "those Addon tasks fail until they name a Function that can run",
        (false, true) => "those HookTemplates fail until they name a Function that can run",
        _ => "those Addon tasks and HookTemplates fail until they name a Function that can run",
    };
    decide(warnings, what, "Function", breaks, allow_breaking)
}

/// The Addon tasks and HookTemplates that run Function `name`, each with the places that name it
/// (those that no object names are left out), in name order.
pub struct Runners {
    /// (what, users, noun)
    pub entries: Vec<(String, Vec<User>, &'static str)>,
}

impl Runners {
    pub fn of(
        name: &str,
        addons: &BTreeMap<String, Addon>,
        templates: &BTreeMap<String, HookTemplate>,
        objects: &Objects,
    ) -> Runners {
        let mut entries = Vec::new();
        for (addon_name, addon) in addons {
            for list in LISTS {
                for (i, task) in addon.tasks(list).iter().enumerate() {
                    if task.function.as_deref() != Some(name) {
                        continue;
                    }
                    let users = objects.task_users(addon_name, list, &task.name);
                    if users.is_empty() {
                        continue;
                    }
                    entries.push((
                        format!(
                            "Addon \"{addon_name}\" {} task \"{}\" ({}[{i}].function)",
                            list.as_str(),
                            task.name,
                            list_field(list)
                        ),
                        users,
                        "object",
                    ));
                }
            }
        }
        for (key, template) in templates {
            if template.function() != Some(name) {
                continue;
            }
            let users = objects.hook_users(key);
            if !users.is_empty() {
                entries.push((
                    format!("HookTemplate \"{key}\" (spec.executor.function.name)"),
                    users,
                    "hook",
                ));
            }
        }
        Runners { entries }
    }

    pub fn through(&self) -> Vec<Through<'_, User>> {
        self.entries
            .iter()
            .map(|(what, users, noun)| Through {
                what: what.clone(),
                objects: users,
                noun,
            })
            .collect()
    }
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
        if is::<Addon>(req) {
            Some(Which::Addon)
        } else if is::<AddonFunction>(req) {
            Some(Which::Function)
        } else if is::<HookTemplate>(req) {
            Some(Which::HookTemplate)
        } else {
            None
        }
    }

    /// As metrics label the kind.
    pub(super) fn label(self) -> &'static str {
        match self {
            Which::Addon => "Addon.addons.kubestash.com",
            Which::Function => "Function.addons.kubestash.com",
            Which::HookTemplate => "HookTemplate.core.kubestash.com",
        }
    }
}

/// What `source` says of each of `names`: from memory when it trusts it, live otherwise; nothing
/// without a source or when the cluster does not serve Functions.
async fn functions_named(
    source: Option<&dyn Source<AddonFunction>>,
    mut names: Vec<String>,
    deadline: Deadline,
) -> HashMap<String, Resolution<AddonFunction>> {
    let Some(source) = source.filter(|s| s.is_installed()) else {
        return HashMap::new();
    };
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
    found
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
                let (old, new) = match req.operation {
                    Operation::Create => (None, new),
                    Operation::Update => (old, new),
                    _ => (old, None),
                };
                match which {
                    Which::Addon => self.addon(req, old, new, annotated, deadline).await,
                    Which::Function => {
                        self.kubestash_function(req, old, new, annotated, deadline)
                            .await
                    }
                    Which::HookTemplate => {
                        self.hook_template(req, old, new, annotated, deadline).await
                    }
                }
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

    fn listing_failed(&self, what: String, err: ListError) -> Unchecked {
        Unchecked {
            subject: format!("{what} could not be checked for objects that name it"),
            why: err.to_string(),
            retry: RETRY_LIST,
        }
    }

    /// The objects that `keep` keeps, listed live before `deadline`.
    async fn objects(
        &self,
        deadline: Deadline,
        keep: impl Fn(&Listed) -> bool,
    ) -> Result<Objects, ListError> {
        let Some(cluster) = &self.cluster else {
            return Ok(Objects::default());
        };
        let client = cluster.client.clone();
        within(deadline, async move {
            list_objects(&client, keep)
                .await
                .map_err(ListError::KubeStash)
        })
        .await
    }

    async fn addon(
        &self,
        req: &Request<'_>,
        old: Option<Value>,
        new: Option<Value>,
        annotated: bool,
        deadline: Deadline,
    ) -> Result<Reply, Unchecked> {
        let name = &*req.name;
        let (old, new) = (
            old.as_ref().map(Addon::from_object),
            new.as_ref().map(Addon::from_object),
        );
        let names: Vec<String> = old
            .iter()
            .chain(&new)
            .flat_map(Addon::functions)
            .map(str::to_owned)
            .collect();
        let functions = match (&new, self.cluster.is_some()) {
            (Some(_), true) => {
                functions_named(self.kubestash.functions.as_deref(), names, deadline).await
            }
            _ => HashMap::new(),
        };
        let lookup = |f: &str| functions.get(f);
        let warnings = new
            .as_ref()
            .map(|a| addon_warnings(name, a, lookup))
            .unwrap_or_default();
        // Listed only when the change could break a user.
        let could_break = match (&req.operation, &old, &new) {
            (Operation::Delete, _, _) => true,
            (Operation::Update, Some(old), Some(new)) => breaks_a_task(old, new, &lookup),
            _ => false,
        };
        let objects = if could_break {
            self.objects(deadline, |o| names_addon(o, |a| a == name))
                .await
                .map_err(|e| self.listing_failed(format!("Addon \"{name}\""), e))?
        } else {
            Objects::default()
        };
        Ok(judge_addon(
            name,
            Edit {
                operation: &req.operation,
                old: old.as_ref(),
                new: new.as_ref(),
            },
            &objects,
            lookup,
            warnings,
            annotated,
        ))
    }

    async fn hook_template(
        &self,
        req: &Request<'_>,
        old: Option<Value>,
        new: Option<Value>,
        annotated: bool,
        deadline: Deadline,
    ) -> Result<Reply, Unchecked> {
        let key = format!(
            "{}/{}",
            req.namespace.as_deref().unwrap_or_default(),
            req.name
        );
        let (old, new) = (
            old.as_ref().map(HookTemplate::from_object),
            new.as_ref().map(HookTemplate::from_object),
        );
        let names: Vec<String> = new
            .iter()
            .filter_map(|t| t.function().map(str::to_owned))
            .collect();
        let functions = match self.cluster {
            Some(_) => functions_named(self.kubestash.functions.as_deref(), names, deadline).await,
            None => HashMap::new(),
        };
        let lookup = |f: &str| functions.get(f);
        let warnings = new
            .as_ref()
            .map(|t| hook_template_warnings(&key, t, lookup))
            .unwrap_or_default();
        let could_break = req.operation == Operation::Delete
            || hook_template_breaks(&req.operation, old.as_ref(), new.as_ref(), lookup).is_some();
        let objects = if could_break {
            self.objects(deadline, |o| names_hook_template(o, |k| k == key))
                .await
                .map_err(|e| self.listing_failed(format!("HookTemplate \"{key}\""), e))?
        } else {
            Objects::default()
        };
        Ok(judge_hook_template(
            &key,
            Edit {
                operation: &req.operation,
                old: old.as_ref(),
                new: new.as_ref(),
            },
            &objects,
            lookup,
            warnings,
            annotated,
        ))
    }

    async fn kubestash_function(
        &self,
        req: &Request<'_>,
        old: Option<Value>,
        new: Option<Value>,
        annotated: bool,
        deadline: Deadline,
    ) -> Result<Reply, Unchecked> {
        let name = &*req.name;
        let container =
            |o: &Option<Value>| o.as_ref().map(|o| AddonFunction::from_object(o).container);
        let (old, new) = (container(&old), container(&new));
        let warnings = new
            .as_ref()
            .map(|c| function_warnings(name, c))
            .unwrap_or_default();
        let delete = req.operation == Operation::Delete;
        let breaks = match (&req.operation, &old, &new) {
            (Operation::Update, Some(Container::Valid), Some(new)) if *new != Container::Valid => {
                Some(new)
            }
            _ => None,
        };
        let Some(cluster) = self.cluster.as_ref().filter(|_| delete || breaks.is_some()) else {
            return Ok(judge_function(name, None, false, &[], warnings, annotated));
        };
        let client = cluster.client.clone();
        let listed = within(deadline, async move {
            let (addons, templates) = futures::try_join!(
                list_referents::<Addon>(&client),
                list_referents::<HookTemplate>(&client),
            )
            .map_err(ListError::KubeStash)?;
            // Only the objects that name an Addon or a HookTemplate running the Function.
            let running: BTreeSet<&str> = addons
                .iter()
                .filter(|(_, a)| a.functions().any(|f| f == name))
                .map(|(n, _)| n.as_str())
                .collect();
            let hooks: BTreeSet<&str> = templates
                .iter()
                .filter(|(_, t)| t.function() == Some(name))
                .map(|(k, _)| k.as_str())
                .collect();
            let keep = |o: &Listed| {
                names_addon(o, |a| running.contains(a))
                    || names_hook_template(o, |k| hooks.contains(k))
            };
            let objects = list_objects(&client, keep)
                .await
                .map_err(ListError::KubeStash)?;
            Ok((addons, templates, objects))
        })
        .await;
        let (addons, templates, objects) =
            listed.map_err(|e| self.listing_failed(format!("Function \"{name}\""), e))?;
        let runners = Runners::of(name, &addons, &templates, &objects);
        Ok(judge_function(
            name,
            breaks,
            delete,
            &runners.through(),
            warnings,
            annotated,
        ))
    }
}

/// Whether `object` names an Addon that `addon` accepts.
fn names_addon(object: &Listed, addon: impl Fn(&str) -> bool) -> bool {
    object
        .refs
        .addons
        .iter()
        .any(|a| a.name.as_str().is_some_and(&addon))
}

/// Whether `object` names a HookTemplate whose `NAMESPACE/NAME` `key` accepts.
fn names_hook_template(object: &Listed, key: impl Fn(&str) -> bool) -> bool {
    object
        .refs
        .hooks
        .iter()
        .any(|h| h.key().is_some_and(|k| key(&k)))
}

/// Whether an update removes a task of the Addon, or points one at a Function that cannot run,
/// whoever uses it: only then are its users listed.
fn breaks_a_task<'a>(
    old: &Addon,
    new: &Addon,
    functions: &impl Fn(&str) -> Option<&'a Resolution<AddonFunction>>,
) -> bool {
    LISTS.iter().any(|&list| {
        old.tasks(list).iter().any(|task| {
            match new.tasks(list).iter().find(|t| t.name == task.name) {
                None => true,
                Some(t) if t.function == task.function => false,
                Some(t) => !Runs::of(t.function.as_deref(), functions).runs(),
            }
        })
    })
}

#[cfg(test)]
mod tests;
