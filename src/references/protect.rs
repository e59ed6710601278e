//! Protection of referents in use: a Function still named by a hook, or by a step of a Task that
//! objects name, and a Task still named by an object, is not deleted, nor edited into one that
//! cannot run, unless its owner says so with an annotation.
//!
//! The verdicts ([`judge`], [`judge_task`]) are pure: a function of the name, the change, who uses
//! the referent and the annotation. [`Protector`] finds those users with live LISTs for every
//! change that would break something: the reference index may lag the API server by the moment
//! in which an object naming the referent was created, and a denial missed then is not caught
//! later.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kube::core::admission::Operation;
use kube::Client;
use thiserror::Error;

use super::index::{list_referents, list_tasks_naming, Listed, Referent};
use crate::functions::ClusterSource;
use crate::metrics;
use crate::review::{Object, Reply, Request, ALLOW_BREAKING_REFERENCES};
use crate::rules::tasks::{Task, TaskState};
use crate::rules::{Container, FailurePolicy, Function, Resolution};
use crate::sources::Source;
use crate::stash::{STASH_GROUP, STASH_VERSION};
use crate::validator::{look_up, lookup_budget, Deadline, KubeStashSources, Outcome};

/// How many referring objects a message names; the rest are counted.
const SHOWN_REFERENTS: usize = 10;
/// How many Tasks a message about a Function names; the rest are counted.
const SHOWN_TASKS: usize = 5;

/// Whether what is known of a referent lets it run: a Function's container, a Task's steps.
pub trait CanRun: Clone + PartialEq {
    fn runs(&self) -> bool;
}

impl CanRun for Container {
    fn runs(&self) -> bool {
        *self == Container::Valid
    }
}

impl CanRun for TaskState {
    fn runs(&self) -> bool {
        *self == TaskState::Runs
    }
}

/// What a change does to a referent, as protection judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<S> {
    /// Deleted.
    Delete,
    /// Updated from a referent that could run to one that cannot (a Function without a usable
    /// image; a Task without steps, or with a step naming a Function that is missing or cannot
    /// run).
    Breaks(S),
    /// Anything else: created, updated without breaking it, or already broken before.
    Other,
}

/// What a change does to a Task.
pub type TaskChange = Change<TaskState>;

impl<S: CanRun> Change<S> {
    /// The change a review makes, from what the old and the new object can do.
    pub fn of(operation: &Operation, old: Option<&S>, new: Option<&S>) -> Self {
        match (operation, old, new) {
            (Operation::Delete, _, _) => Change::Delete,
            (Operation::Update, Some(old), Some(new)) if old.runs() && !new.runs() => {
                Change::Breaks(new.clone())
            }
            _ => Change::Other,
        }
    }

    fn breaks(&self) -> bool {
        !matches!(self, Change::Other)
    }
}

/// A Task whose steps name a Function, and the objects that name the Task: through them, users of
/// the Function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskUsers {
    pub task: String,
    /// The indexes of the steps that name the Function.
    pub steps: Vec<usize>,
    /// The `task` fields that name the Task, in order.
    pub objects: Vec<Referent>,
}

/// Who breaks when a Function does: the hooks that name it, and the objects naming a Task whose
/// steps name it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users {
    pub hooks: Vec<Referent>,
    /// Only Tasks that some object names; by Task name.
    pub tasks: Vec<TaskUsers>,
}

impl Users {
    /// Users that are hooks alone.
    pub fn hooks(hooks: Vec<Referent>) -> Self {
        Users {
            hooks,
            tasks: Vec::new(),
        }
    }

    /// The users found by live LISTs: the hooks, and for each Task whose steps name the Function
    /// (`naming`: Task -> steps), the objects naming it; a Task that no object names uses nothing.
    pub fn of(listed: Listed, naming: &BTreeMap<String, Vec<usize>>) -> Self {
        let mut by_task = listed.tasks;
        let tasks = naming
            .iter()
            .filter_map(|(task, steps)| {
                let objects = by_task.remove(task).filter(|o| !o.is_empty())?;
                Some(TaskUsers {
                    task: task.clone(),
                    steps: steps.clone(),
                    objects,
                })
            })
            .collect();
        Users {
            hooks: listed.hooks,
            tasks,
        }
    }

    fn is_empty(&self) -> bool {
        self.hooks.is_empty() && self.tasks.iter().all(|t| t.objects.is_empty())
    }
}

/// The verdict on a change to Function `name`, given who uses it and whether the Function carries
/// the annotation that allows breaking them. Pure.
pub fn judge(
    name: &str,
    change: &Change<Container>,
    new_container: Option<&Container>,
    users: &Users,
    allow_breaking: bool,
) -> Reply {
    let mut warnings = Vec::new();
    if let Some(container) = new_container.filter(|c| **c != Container::Valid) {
        warnings.push(format!(
            "spec.image: Function \"{name}\" {}: a hook that names it fails until it has one (set spec.image to a container image)",
            unusable(container)
        ));
    }
    if !change.breaks() || users.is_empty() {
        return Reply::warn(warnings);
    }
    let what = match change {
        Change::Breaks(container) => format!(
            "spec.image: this change leaves Function \"{name}\" unable to run ({}), and it is used by {}",
            unusable(container),
            users_text(users)
        ),
        _ => format!("Function \"{name}\" is used by {}", users_text(users)),
    };
    let breaks = match (users.hooks.is_empty(), users.tasks.is_empty()) {
        (false, true) => "those hooks fail until they name a Function that can run",
        (true, false) => "those Tasks fail until their steps name a Function that can run",
        _ => "those hooks and Tasks fail until they name a Function that can run",
    };
    decide(warnings, what, "Function", breaks, allow_breaking)
}

/// The verdict on a change to Task `name`, given the `task` fields that name it (`users`), the
/// warnings about the Task as written ([`task_warnings`]) and whether the Task carries the
/// annotation that allows breaking them. Pure.
pub fn judge_task(
    name: &str,
    change: &TaskChange,
    warnings: Vec<String>,
    users: &[Referent],
    allow_breaking: bool,
) -> Reply {
    if !change.breaks() || users.is_empty() {
        return Reply::warn(warnings);
    }
    let mut budget = SHOWN_REFERENTS;
    let used = format!(
        "{}: {}",
        count(users.len(), "object"),
        names(users, &mut budget)
    );
    let what = match change {
        TaskChange::Breaks(state) => {
            let (path, why) = match state {
                TaskState::BrokenStep { step, what } => {
                    (format!("spec.steps[{step}].name"), what.clone())
                }
                _ => ("spec.steps".to_owned(), "it has no steps".to_owned()),
            };
            format!("{path}: this change leaves Task \"{name}\" unable to run ({why}), and it is used by {used}")
        }
        _ => format!("Task \"{name}\" is used by {used}"),
    };
    decide(
        warnings,
        what,
        "Task",
        "those objects fail until they name a Task that can run",
        allow_breaking,
    )
}

/// Denies a change that breaks what `what` names, or allows it with a warning saying what
/// `breaks` when the referent (a `kind`) carries the annotation.
pub(super) fn decide(
    mut warnings: Vec<String>,
    what: String,
    kind: &str,
    breaks: &str,
    allow_breaking: bool,
) -> Reply {
    if allow_breaking {
        warnings.push(format!(
            "{what}; allowed by the annotation {ALLOW_BREAKING_REFERENCES}=true: {breaks}"
        ));
        return Reply::warn(warnings);
    }
    Reply {
        warnings,
        ..Reply::deny(format!(
            "{what}: change or delete them first, or annotate the {kind} with {ALLOW_BREAKING_REFERENCES}=true"
        ))
    }
}

/// What to warn about a Task as it is written: no steps, or each step that cannot run, field path
/// first. `functions` answers for the Functions its steps name. Pure.
pub fn task_warnings<'a>(
    name: &str,
    task: &Task,
    functions: impl Fn(&str) -> Option<&'a Resolution<Function>>,
) -> Vec<String> {
    if task.steps.is_empty() {
        return vec![format!(
            "spec.steps: Task \"{name}\" has no steps: an object that names it fails until it has some (Stash refuses to run a Task without steps: \"empty steps/containers\")"
        )];
    }
    task.broken_steps(functions)
        .into_iter()
        .map(|broken| {
            format!(
                "spec.steps[{}].name: {}: an object that names Task \"{name}\" fails until this step can run: {}",
                broken.step, broken.what, broken.fix
            )
        })
        .collect()
}

/// Why a Function cannot run a hook, in a few words.
pub(super) fn unusable(container: &Container) -> String {
    match container {
        Container::Valid => "can run".to_owned(),
        Container::NoImage => "has no container image".to_owned(),
        Container::ImageNotAString(found) => format!("has spec.image of the wrong type ({found})"),
        Container::InvalidImage { image, error } => {
            format!("has an invalid container image \"{image}\": {error}")
        }
    }
}

/// `1 hook`, `3 objects`.
pub(super) fn count(n: usize, one: &str) -> String {
    match n {
        1 => format!("1 {one}"),
        n => format!("{n} {one}s"),
    }
}

/// `a (spec.hooks.preBackup), b (...) and 2 more`: as many as `budget` allows, which is reduced
/// by as many.
pub(super) fn names<R: std::fmt::Display>(referents: &[R], budget: &mut usize) -> String {
    let shown = referents.len().min(*budget);
    *budget -= shown;
    let listed: Vec<String> = referents[..shown].iter().map(ToString::to_string).collect();
    match referents.len() - shown {
        0 => listed.join(", "),
        more => format!("{} and {more} more", listed.join(", ")),
    }
}

/// `3 hooks: a (spec.hooks.preBackup), ... and by Task "t" (spec.steps[0]), named by 2 objects:
/// b (spec.task), c (spec.task)`: at most [`SHOWN_REFERENTS`] objects named in all, hooks first,
/// and at most [`SHOWN_TASKS`] Tasks; the rest counted.
fn users_text(users: &Users) -> String {
    let through: Vec<Through<'_, Referent>> = users
        .tasks
        .iter()
        .map(|t| {
            let steps: Vec<String> = t.steps.iter().map(|i| format!("spec.steps[{i}]")).collect();
            Through {
                what: format!("Task \"{}\" ({})", t.task, steps.join(", ")),
                objects: &t.objects,
                noun: "object",
            }
        })
        .collect();
    through_text(("hook", &users.hooks), &through, ("Task", "Tasks"))
}

/// A referent through which objects use the one changed (a Task whose steps run a Function, an
/// Addon's task, a HookTemplate), and the places that name it.
pub struct Through<'a, R> {
    /// `Task "t" (spec.steps[0])`.
    pub what: String,
    pub objects: &'a [R],
    /// What each of `objects` is: `object`, `hook`.
    pub noun: &'static str,
}

/// Who uses a referent, directly (`direct`: what they are, and where) and through others, as
/// [`users_text`] says it: at most [`SHOWN_REFERENTS`] places named in all, direct ones first, and
/// at most [`SHOWN_TASKS`] referents they go through; the rest counted as `more` (one, many).
pub(super) fn through_text<R: std::fmt::Display>(
    direct: (&str, &[R]),
    through: &[Through<'_, R>],
    more: (&str, &str),
) -> String {
    let mut budget = SHOWN_REFERENTS;
    let mut parts = Vec::new();
    let (noun, direct) = direct;
    if !direct.is_empty() {
        parts.push(format!(
            "{}: {}",
            count(direct.len(), noun),
            names(direct, &mut budget)
        ));
    }
    for t in through.iter().take(SHOWN_TASKS) {
        let head = format!("{}, named by {}", t.what, count(t.objects.len(), t.noun));
        parts.push(match budget {
            0 => head,
            _ => format!("{head}: {}", names(t.objects, &mut budget)),
        });
    }
    if let Some(rest) = through.get(SHOWN_TASKS..).filter(|r| !r.is_empty()) {
        let objects = rest.iter().map(|t| t.objects.len()).sum();
        let what = match rest.len() {
            1 => format!("1 more {}", more.0),
            n => format!("{n} more {}", more.1),
        };
        parts.push(format!("{what}, named by {}", count(objects, "object")));
    }
    parts.join(" and by ")
}

/// What protection needs of a cluster: a client for the live LISTs, and the Function source (its
/// cache, and live GETs) to tell whether a Task's steps can run.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub functions: Arc<ClusterSource>,
}

/// Why the users of a referent could not be listed.
#[derive(Debug, Error)]
pub(super) enum ListError {
    #[error("the Kubernetes API refused to list the objects that could name it ({0}); grant the webhook's ServiceAccount list on the five hook kinds")]
    Objects(kube::Error),
    #[error("the Kubernetes API refused to list the Tasks that could name it ({0}); grant the webhook's ServiceAccount list on tasks.stash.appscode.com")]
    Tasks(kube::Error),
    #[error("the Kubernetes API refused to list the KubeStash objects that could name it ({0}); grant the webhook's ServiceAccount list on the core.kubestash.com and addons.kubestash.com kinds")]
    KubeStash(kube::Error),
    #[error("the Kubernetes API did not list the objects that could name it within {} ms", .0.as_millis())]
    Timeout(Duration),
}

/// A change that could not be checked: what, why, and when to retry.
pub(super) struct Unchecked {
    pub subject: String,
    pub why: String,
    pub retry: &'static str,
}

impl Unchecked {
    /// `what` (`Task "t"`) could not be checked for the `users` (`objects`, `hooks`) that name it:
    /// they could not be listed.
    pub(super) fn listing(what: &str, users: &str, err: ListError) -> Self {
        let retry = match err {
            // A retry does not help a cluster that holds more than the budget lets it list.
            ListError::Timeout(_) => "retry; if it keeps timing out, raise the webhook's --protect-timeout and the protect webhooks' timeoutSeconds together",
            _ => "retry once the webhook can list them",
        };
        Unchecked {
            subject: format!("{what} could not be checked for {users} that name it"),
            why: err.to_string(),
            retry,
        }
    }
}

/// Judges reviews of Functions and Tasks (`/protect`). Without a cluster (Functions and Tasks
/// from a file), every change is allowed: there are no objects to protect.
pub struct Protector {
    cluster: Option<Cluster>,
    /// KubeStash's referents, when its referents are protected too.
    kubestash: Option<KubeStashSources>,
    on_lookup_failure: FailurePolicy,
    /// The most one review may take (`--protect-timeout`), LISTs and lookups together.
    timeout: Duration,
}

impl Protector {
    pub fn new(
        cluster: Option<Cluster>,
        on_lookup_failure: FailurePolicy,
        timeout: Duration,
    ) -> Self {
        Protector {
            cluster,
            kubestash: None,
            on_lookup_failure,
            timeout,
        }
    }

    /// A protector that allows every change.
    pub fn off() -> Self {
        Protector::new(None, FailurePolicy::Deny, Duration::from_secs(1))
    }

    /// Protects KubeStash's referents too (Addons, its Functions, HookTemplates), telling whether
    /// a task or a HookTemplate can run from these sources.
    pub fn with_kubestash(mut self, sources: KubeStashSources) -> Self {
        self.kubestash = Some(sources);
        self
    }

    pub async fn review(&self, req: &Request<'_>, api_server_timeout: Option<Duration>) -> Outcome {
        // All the lookups of one review share one deadline, as the validator's do.
        let deadline = Deadline::after(lookup_budget(self.timeout, api_server_timeout));
        // The annotation counts on what is being written; on a DELETE, on the object deleted.
        let annotated = match req.operation {
            Operation::Delete => req.old_object.as_ref(),
            _ => req.object.as_ref(),
        }
        .is_some_and(|o| o.metadata.allow_breaking_references);
        if let Some(outcome) = self.review_kubestash(req, annotated, deadline).await {
            return outcome;
        }
        let ours = req.kind.group == STASH_GROUP && req.kind.version == STASH_VERSION;
        let reply = match &*req.kind.kind {
            "Function" if ours => self.function(req, annotated, deadline).await,
            "Task" if ours => self.task(req, annotated, deadline).await,
            _ => {
                return Outcome {
                    reply: Reply::allow(),
                    verdict: metrics::Verdict::Allowed,
                    judged: false,
                    kind: None,
                    other_kind: None,
                }
            }
        };
        match reply {
            Ok(reply) => self.outcome(reply),
            Err(unchecked) => self.unverified(&unchecked),
        }
    }

    /// The outcome of a judged review.
    fn outcome(&self, reply: Reply) -> Outcome {
        let verdict = if !reply.allowed {
            metrics::Verdict::Denied
        } else if !reply.warnings.is_empty() {
            metrics::Verdict::Warned
        } else {
            metrics::Verdict::Allowed
        };
        Outcome {
            reply,
            verdict,
            judged: true,
            kind: None,
            other_kind: None,
        }
    }

    /// A review of Function `req.name`; on a failed LIST, what could not be checked and why.
    async fn function(
        &self,
        req: &Request<'_>,
        annotated: bool,
        deadline: Deadline,
    ) -> Result<Reply, Unchecked> {
        let container = |o: &Option<Object>| {
            o.as_ref()
                .map(|o| Container::from_image(o.spec.image.as_ref()))
        };
        let (old, new) = (container(&req.old_object), container(&req.object));
        let change = Change::of(&req.operation, old.as_ref(), new.as_ref());
        let new_container = match req.operation {
            Operation::Create | Operation::Update => new.as_ref(),
            _ => None,
        };
        let users = match (&self.cluster, change.breaks()) {
            (Some(cluster), true) => {
                // Always live: an object created a moment ago may not be in the index yet.
                match within(deadline, list_users(cluster, &req.name)).await {
                    Ok(users) => users,
                    Err(err) => {
                        let users = match err {
                            ListError::Tasks(_) => "Tasks",
                            _ => "hooks",
                        };
                        let what = format!("Function \"{}\"", req.name);
                        return Err(Unchecked::listing(&what, users, err));
                    }
                }
            }
            _ => Users::default(),
        };
        Ok(judge(&req.name, &change, new_container, &users, annotated))
    }

    /// A review of Task `req.name`; on a failed lookup, what could not be checked and why.
    async fn task(
        &self,
        req: &Request<'_>,
        annotated: bool,
        deadline: Deadline,
    ) -> Result<Reply, Unchecked> {
        let read = |o: &Option<Object>| {
            o.as_ref().map(|o| Task {
                steps: Task::from_steps(o.spec.steps.as_ref()),
                variables: Vec::new(),
            })
        };
        let (old, new) = match req.operation {
            Operation::Create => (None, read(&req.object)),
            Operation::Update => (read(&req.old_object), read(&req.object)),
            _ => (None, None),
        };
        let mut names: Vec<&str> = old.iter().chain(&new).flat_map(Task::functions).collect();
        names.sort_unstable();
        names.dedup();

        // The Functions from the cache first; what would lead to a denial or a warning is looked
        // up live before it is said.
        let mut functions: HashMap<String, Resolution<Function>> = HashMap::new();
        if let Some(cluster) = &self.cluster {
            for name in &names {
                functions.insert((*name).to_owned(), cluster.functions.remembered(name));
            }
        }
        let judged = |functions: &HashMap<String, Resolution<Function>>| {
            let lookup = |n: &str| functions.get(n);
            let state = |t: &Option<Task>| t.as_ref().map(|t| t.state(lookup));
            let change = TaskChange::of(&req.operation, state(&old).as_ref(), state(&new).as_ref());
            let warnings = new
                .as_ref()
                .map(|t| task_warnings(&req.name, t, lookup))
                .unwrap_or_default();
            (change, warnings)
        };
        let (mut change, mut warnings) = judged(&functions);
        let mut unconfirmed = None;
        let Some(cluster) = &self.cluster else {
            return Ok(judge_task(&req.name, &change, warnings, &[], annotated));
        };
        if matches!(change, TaskChange::Breaks(_)) || !warnings.is_empty() {
            let source: &dyn Source<Function> = cluster.functions.as_ref();
            // In name order, so the same failure is reported each time.
            let live: BTreeMap<_, _> = look_up(source, names.clone(), deadline)
                .await
                .into_iter()
                .collect();
            for (name, answer) in live {
                match answer {
                    // A lookup that failed tells nothing: what the cache said stands, unconfirmed.
                    Resolution::Unverified(why) => {
                        unconfirmed.get_or_insert((name, why));
                    }
                    answer => {
                        functions.insert(name, answer);
                    }
                }
            }
            (change, warnings) = judged(&functions);
        }
        if !change.breaks() {
            return Ok(judge_task(&req.name, &change, warnings, &[], annotated));
        }
        let tasks = BTreeSet::from([req.name.to_string()]);
        let listed = async {
            list_referents(&cluster.client, None, &tasks)
                .await
                .map_err(ListError::Objects)
        };
        let mut listed = within(deadline, listed)
            .await
            .map_err(|err| Unchecked::listing(&format!("Task \"{}\"", req.name), "objects", err))?;
        let users = listed.tasks.remove(&*req.name).unwrap_or_default();
        if let (TaskChange::Breaks(_), false, Some((function, why))) =
            (&change, users.is_empty(), unconfirmed)
        {
            return Err(Unchecked {
                subject: format!("Task \"{}\" could not be checked", req.name),
                why: format!("Function \"{function}\" of its steps could not be looked up: {why}"),
                retry: "retry once the webhook can read Functions",
            });
        }
        Ok(judge_task(&req.name, &change, warnings, &users, annotated))
    }

    /// A change whose users could not be listed, or whose Task could not be judged, under
    /// `--on-lookup-failure`.
    fn unverified(&self, unchecked: &Unchecked) -> Outcome {
        let text = format!("{}: {}", unchecked.subject, unchecked.why);
        let (reply, verdict) = match self.on_lookup_failure {
            FailurePolicy::Deny => (
                Reply::deny(format!("{text}: {}", unchecked.retry)),
                metrics::Verdict::Denied,
            ),
            FailurePolicy::Allow => (
                Reply::warn(vec![format!("{text}; allowed without verification")]),
                metrics::Verdict::Warned,
            ),
        };
        Outcome {
            reply,
            verdict,
            judged: true,
            kind: None,
            other_kind: None,
        }
    }
}

/// Who uses Function `name`, from live LISTs: the Tasks first (to know which Tasks' users count),
/// then the five kinds.
/// `list`, unless `deadline` passes first.
pub(super) async fn within<T>(
    deadline: Deadline,
    list: impl std::future::Future<Output = Result<T, ListError>>,
) -> Result<T, ListError> {
    tokio::time::timeout_at(deadline.at.into(), list)
        .await
        .unwrap_or(Err(ListError::Timeout(deadline.budget)))
}

async fn list_users(cluster: &Cluster, name: &str) -> Result<Users, ListError> {
    let naming = list_tasks_naming(&cluster.client, name)
        .await
        .map_err(ListError::Tasks)?;
    let tasks: BTreeSet<String> = naming.keys().cloned().collect();
    let listed = list_referents(&cluster.client, Some(name), &tasks)
        .await
        .map_err(ListError::Objects)?;
    Ok(Users::of(listed, &naming))
}

pub mod kubestash;

#[cfg(test)]
mod tests;
