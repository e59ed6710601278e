//! The rules: from executor references, the old object's references and what is known of each
//! named Function, to a verdict; [`tasks`] does the same for Task references. Pure: no HTTP, no
//! TLS, no API calls.

pub mod kubestash;
pub mod tasks;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use crate::functions::variables::{self, Variable};
use crate::image::{self, ImageError};
use crate::stash::{json_type, Executor, ExecutorRef, FieldPath, Name, Params};

const LIST_FUNCTIONS: &str = "list them with: kubectl get functions.stash.appscode.com";

/// Whether a Function can run a hook: all the rules need to know of a Function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Container {
    Valid,
    NoImage,
    /// `spec.image` is present but not a string; carries the JSON type found.
    ImageNotAString(&'static str),
    InvalidImage {
        image: String,
        error: ImageError,
    },
}

impl Container {
    /// Judges a Function's `spec.image` once, when the Function is loaded or cached.
    pub fn from_image(image: Option<&serde_json::Value>) -> Self {
        match image {
            None | Some(serde_json::Value::Null) => Container::NoImage,
            Some(serde_json::Value::String(s)) if s.is_empty() => Container::NoImage,
            // Stash fills in the variables an image reads before the Job runs: what is judged is
            // the rest of it.
            Some(serde_json::Value::String(s)) => {
                match image::validate(&variables::with_placeholders(s, "x")) {
                    Ok(()) => Container::Valid,
                    Err(error) => Container::InvalidImage {
                        image: shown(s),
                        error,
                    },
                }
            }
            Some(other) => Container::ImageNotAString(json_type(other)),
        }
    }

    /// What keeps it from running a hook, as a message goes on after `Function "f" `; none when
    /// it can. Both families' Functions are said so.
    pub fn fault(&self) -> Option<String> {
        Some(match self {
            Container::Valid => return None,
            Container::NoImage => "has no container image (its spec.image is not set)".to_owned(),
            Container::ImageNotAString(found) => {
                format!("has an invalid container image: spec.image must be a string, got {found}")
            }
            Container::InvalidImage { image, error } => {
                format!("has an invalid container image \"{image}\": {error}")
            }
        })
    }
}

/// What the rules know of one Function: whether it can run a hook, and the variables it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub container: Container,
    /// Every `${NAME}` the Function reads, each once, with whether it has a default.
    pub variables: Vec<Variable>,
    /// The first `${` that Stash's substitution cannot parse, from there on: Stash then fails the
    /// Function with `bad substitution` whatever its inputs.
    pub malformed: Option<String>,
}

impl Function {
    /// What the rules need of a Function given as JSON: its image, and the variables its whole
    /// object reads (Stash substitutes the object's JSON, keys included).
    pub fn from_object(object: &serde_json::Value) -> Self {
        Function {
            container: Container::from_image(object.get("spec").and_then(|s| s.get("image"))),
            variables: variables::of_json(object),
            malformed: variables::malformed_in_json(object).map(|text| shown(&text)),
        }
    }
}

impl From<Container> for Function {
    /// A Function that reads no variables.
    fn from(container: Container) -> Self {
        Function {
            container,
            variables: Vec::new(),
            malformed: None,
        }
    }
}

/// What a source found for one name of a referent (a [`Function`], a [`tasks::Task`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution<T = Function> {
    Found(Arc<T>),
    NotFound,
    /// The lookup failed (forbidden, timed out, API unreachable); carries why, for the user.
    Unverified(String),
}

impl<T> Resolution<T> {
    /// A referent found, with what is known of it.
    pub fn found(referent: impl Into<T>) -> Self {
        Resolution::Found(Arc::new(referent.into()))
    }

    /// Whether the referent is known not to exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Resolution::NotFound)
    }
}

/// How the rules are applied: what the operator chose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub on_lookup_failure: FailurePolicy,
    /// Variables this cluster's Stash provides beyond those it always does
    /// ([`variables::STASH_VARIABLES`]).
    pub extra_variables: Vec<String>,
}

impl From<FailurePolicy> for Policy {
    fn from(on_lookup_failure: FailurePolicy) -> Self {
        Policy {
            on_lookup_failure,
            extra_variables: Vec::new(),
        }
    }
}

impl Policy {
    /// Whether Stash (or this cluster's, per `--extra-variables`) sets `name` for a hook.
    fn provides(&self, name: &str) -> bool {
        variables::provided_by_stash(name) || self.is_extra(name)
    }

    /// Whether Stash sets `name` for the steps of a Task it runs.
    fn provides_for_task(&self, name: &str) -> bool {
        variables::provided_for_task(name) || self.is_extra(name)
    }

    fn is_extra(&self, name: &str) -> bool {
        self.extra_variables.iter().any(|v| v == name)
    }
}

/// What to do when a Function cannot be looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Deny the object: nothing unverified gets in (the safe default).
    #[default]
    Deny,
    /// Allow the object with a warning naming the Function that could not be verified.
    Allow,
}

/// One problem with one field: what is wrong, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: FieldPath,
    pub what: String,
    pub fix: String,
}

impl Problem {
    /// The reference the problem is in, and whether it is a task: a hook
    /// (`spec.members[3].hooks.preBackup`, `spec.sessions[0].hooks.preBackup[1]`) or a task
    /// (`spec.members[3].task`, `spec.sessions[0].addon.tasks[2]`, `spec.addon`).
    fn reference(&self) -> (&str, bool) {
        let path = self.path.as_str();
        if let Some((hook, _)) = path.split_once(".executor") {
            return (hook, false);
        }
        // Through the first `]` after `at`, or `len` on from `at` when there is none.
        let upto = |at: usize, len: usize| {
            let end = path[at..].find(']').map_or(at + len, |e| at + e + 1);
            &path[..end.min(path.len())]
        };
        if let Some(at) = path.find(".hooks.") {
            return (upto(at, path.len() - at), false);
        }
        if let Some(at) = path.find(".task") {
            return (upto(at, ".task".len()), true);
        }
        match path.find(".addon") {
            Some(at) => (&path[..at + ".addon".len()], true),
            None => (path, false),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.path, self.what, self.fix)
    }
}

/// The outcome of judging one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub denials: Vec<Problem>,
    pub warnings: Vec<String>,
}

impl Verdict {
    pub fn allowed(&self) -> bool {
        self.denials.is_empty()
    }

    /// The denial text: one line per problem, field path first, at most [`MAX_LINES`] of them and
    /// then a line counting the rest. kubectl prints it after
    /// `admission webhook "NAME" denied the request: `.
    pub fn message(&self) -> String {
        let lines: Vec<String> = self.denials.iter().map(Problem::to_string).collect();
        let rest = self.denials.get(MAX_LINES..).unwrap_or_default();
        let references: HashSet<(&str, bool)> = rest.iter().map(Problem::reference).collect();
        let tasks = references.iter().filter(|(_, task)| *task).count();
        let counted = (references.len() - tasks, tasks);
        capped(lines, "problems", Some(counted)).join("\n")
    }

    /// The warnings, at most [`MAX_LINES`] of them and then one counting the rest.
    pub fn capped_warnings(self) -> Vec<String> {
        capped(self.warnings, "warnings", None)
    }

    /// Adds what `other` found, after what this verdict holds.
    pub fn extend(&mut self, other: Verdict) {
        self.denials.extend(other.denials);
        self.warnings.extend(other.warnings);
    }

    /// Records one finding: a problem in a reference that the stored object already had the same
    /// (`kept`) is only a warning, so an object whose referent broke after it was admitted can
    /// still be edited; one that could not be verified follows `--on-lookup-failure`.
    pub(crate) fn add(&mut self, found: Found, kept: bool, policy: &Policy) {
        match found {
            Found::Warning(text) => self.warnings.push(text),
            Found::Problem(p) if kept => self.warnings.push(format!(
                "{}: {}; allowed because this reference is unchanged, but {} will fail until it is fixed",
                p.path,
                p.what,
                if p.reference().1 { "the task" } else { "the hook" }
            )),
            Found::Problem(p) => self.denials.push(p),
            Found::Unverified(p) if kept || policy.on_lookup_failure == FailurePolicy::Allow => self
                .warnings
                .push(format!("{}: {}; allowed without verification", p.path, p.what)),
            Found::Unverified(p) => self.denials.push(p),
        }
    }
}

/// The most problems, or warnings, listed in one answer: a BackupBatch with thousands of broken
/// members would otherwise get a denial of thousands of lines, in kubectl and in every audit log
/// that records it.
pub const MAX_LINES: usize = 20;

/// The first [`MAX_LINES`] of `lines`, then one line counting the rest (`what`: "problems" or
/// "warnings"), and how many hooks and tasks they are in when that is known.
fn capped(mut lines: Vec<String>, what: &str, rest_in: Option<(usize, usize)>) -> Vec<String> {
    if lines.len() <= MAX_LINES {
        return lines;
    }
    let more = lines.len() - MAX_LINES;
    lines.truncate(MAX_LINES);
    let count = |n: usize, one: &str| match n {
        0 => None,
        1 => Some(format!("1 more {one}")),
        n => Some(format!("{n} more {one}s")),
    };
    let hooks = match rest_in {
        Some((hooks, tasks)) => {
            let parts: Vec<String> = [count(hooks, "hook"), count(tasks, "task")]
                .into_iter()
                .flatten()
                .collect();
            format!(" in {}", parts.join(" and "))
        }
        None => String::new(),
    };
    lines.push(format!(
        "... and {more} more {what}{hooks}, not listed (stash-webhook check -f FILE lists them all)"
    ));
    lines
}

/// How much of a value from the object a message echoes: enough to recognise it.
const SHOWN_CHARS: usize = 100;

/// `value` as a message shows it: whole when short, else its start and how long it is.
pub fn shown(value: &str) -> String {
    match value.char_indices().nth(SHOWN_CHARS) {
        None => value.to_owned(),
        Some((cut, _)) => format!(
            "{}... ({} characters)",
            &value[..cut],
            value.chars().count()
        ),
    }
}

/// Kubernetes names a Function as it names most objects: a lowercase RFC 1123 subdomain, at most
/// 253 characters. A name that is not one cannot exist, so it is denied without a lookup.
pub fn valid_object_name(name: &str) -> bool {
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-'
    };
    name.len() <= 253 && name.split('.').all(label_ok)
}

/// Judges the references of an object. `old_refs` are those of the stored object on UPDATE
/// (empty on CREATE): a problem in a reference left unchanged is a warning, not a denial, so an
/// object whose Function was deleted after it was accepted can still be paused or edited.
/// `resolve` answers for every name returned by [`names_to_resolve`].
pub fn judge<'a>(
    refs: &[ExecutorRef],
    old_refs: &[ExecutorRef],
    resolve: impl Fn(&str) -> Option<&'a Resolution>,
    policy: &Policy,
) -> Verdict {
    let unchanged = Unchanged::from(old_refs);
    let mut verdict = Verdict::default();
    for r in refs {
        for (problem, subject) in problems(r, &resolve, policy) {
            let kept = match &subject {
                Subject::Function => unchanged.function(r),
                Subject::Param(key) => unchanged.param(&r.path, key),
                Subject::Executor => unchanged.executor(r),
            };
            verdict.add(problem, kept, policy);
        }
    }
    verdict
}

/// The distinct Function names that `judge` will ask about, each once: those that can be object
/// names at all.
pub fn names_to_resolve<'a>(refs: &[ExecutorRef<'a>]) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    refs.iter()
        .filter_map(ExecutorRef::function_name)
        .filter(|name| valid_object_name(name) && seen.insert(*name))
        .collect()
}

/// One thing a rule found.
pub(crate) enum Found {
    Problem(Problem),
    Unverified(Problem),
    /// Allowed as it is, with this warning.
    Warning(String),
}

/// What a problem is about, for ratcheting: the reference to the Function, one parameter, or the
/// whole executor (which parameters it gives the Function it names).
enum Subject {
    Function,
    Param(String),
    Executor,
}

fn problems<'a>(
    r: &ExecutorRef,
    resolve: &impl Fn(&str) -> Option<&'a Resolution>,
    policy: &Policy,
) -> Vec<(Found, Subject)> {
    let mut out = Vec::new();
    let (function, params) = match r.executor {
        Executor::WrongType(found) => {
            out.push((
                problem(
                    r.path.clone(),
                    format!("must be a map, got {found}"),
                    "write executor: {functionName: NAME, params: {KEY: VALUE}}".to_owned(),
                ),
                Subject::Function,
            ));
            return out;
        }
        Executor::Ref { function, params } => (function, params),
    };

    // Paths are built only for problems found: most references have none.
    let name_path = || r.path.child("functionName");
    let name_fix = || format!("name the Function that runs this hook ({LIST_FUNCTIONS})");
    match name_as_written(function, "Function") {
        Err(wrong) => out.push((problem(name_path(), wrong, name_fix()), Subject::Function)),
        Ok(name) => {
            let found = found_or(
                resolve(name),
                &name_path(),
                &format!("Function \"{name}\""),
                "Functions",
                || {
                    let fix = format!("create the Function, or fix the name ({LIST_FUNCTIONS})");
                    (format!("Function \"{name}\" not found"), fix)
                },
            );
            match found {
                Ok(function) => {
                    // The Function's own problem first, then what its parameters lack.
                    if let Some((what, fix)) = function_problem(name, function) {
                        out.push((problem(name_path(), what, fix), Subject::Function));
                    }
                    out.extend(parameter_problems(r, name, params, function, policy));
                }
                Err(finding) => out.push((finding, Subject::Function)),
            }
        }
    }

    let params_path = || r.path.child("params");
    match params {
        Params::Absent => {}
        Params::WrongType(found) => out.push((
            params_not_a_map(params_path(), found),
            Subject::Param(String::new()),
        )),
        Params::Keys(keys) => {
            for key in keys {
                let what = if key.is_empty() {
                    "parameter name must not be empty".to_owned()
                } else if !valid_param_name(key) {
                    format!("parameter name \"{}\" is invalid", shown(key))
                } else {
                    continue;
                };
                out.push((
                    problem(
                        params_path().key(&shown(key)),
                        what,
                        "use letters, digits and '_', not starting with a digit, since the Function reads it as ${NAME}".into(),
                    ),
                    Subject::Param(key.clone()),
                ));
            }
        }
    }
    out
}

/// What keeps a Function from running at all, and the fix: its container, or text Stash's
/// substitution cannot parse; none when it can run.
pub(crate) fn function_problem(name: &str, function: &Function) -> Option<(String, String)> {
    if let Some(problem) = container_problem(name, &function.container) {
        return Some(problem);
    }
    let text = function.malformed.as_ref()?;
    Some((
        format!("Function \"{name}\" has a ${{ that Stash cannot substitute, at \"{text}\", so Stash fails it with \"bad substitution\""),
        format!("fix the reference in the Function (kubectl edit functions.stash.appscode.com {name}): write ${{NAME}}, or ${{NAME:=default}}, or $${{ for a literal ${{"),
    ))
}

/// What is wrong with a Function's container, and the fix; none when it can run a hook.
pub(crate) fn container_problem(name: &str, container: &Container) -> Option<(String, String)> {
    // Checked first: most Functions can run, and reviews call this for every executor.
    let fault = container.fault()?;
    let edit = format!("kubectl edit functions.stash.appscode.com {name}");
    let fix = match container {
        Container::NoImage => {
            format!("give the Function an image ({edit}), or name another Function")
        }
        _ => format!("fix spec.image on the Function ({edit})"),
    };
    Some((format!("Function \"{name}\" {fault}"), fix))
}

/// The variables `function` reads that this executor leaves unset (denials: Stash fails the Job
/// with `ValueNotFoundError`), and the parameters it sets that the Function never reads
/// (warnings: most likely a misspelt name).
fn parameter_problems(
    r: &ExecutorRef,
    name: &str,
    params: &Params,
    function: &Function,
    policy: &Policy,
) -> Vec<(Found, Subject)> {
    let keys: &[String] = match params {
        Params::Keys(keys) => keys,
        // A `params` of the wrong shape is reported on its own; nothing here can be told.
        Params::WrongType(_) => return Vec::new(),
        Params::Absent => &[],
    };
    let mut out = Vec::new();
    for variable in &function.variables {
        let set = keys.contains(&variable.name);
        if variable.has_default || set || policy.provides(&variable.name) {
            continue;
        }
        let var = shown(&variable.name);
        out.push((
            Found::Problem(Problem {
                path: r.path.child("params"),
                what: format!("Function \"{name}\" reads ${{{var}}}, which this hook does not set and Stash does not provide"),
                fix: format!("add params.{var}, or give it a default in the Function (${{{var}:=...}})"),
            }),
            Subject::Executor,
        ));
    }
    let read: Vec<&str> = function.variables.iter().map(|v| v.name.as_str()).collect();
    for key in keys {
        if read.contains(&key.as_str()) || !valid_param_name(key) {
            continue;
        }
        out.push((
            Found::Warning(format!(
                "{}: Function \"{name}\" does not read ${{{}}} ({}): check the name",
                r.path.child("params").key(&shown(key)),
                shown(key),
                closest_first(key, &read, ("it reads", "it reads no variables")),
            )),
            Subject::Param(key.clone()),
        ));
    }
    out
}

/// `it reads A, B`: `names`, the closest to `key` first, at most five, after `said.0`; or
/// `said.1` when there are none.
pub(crate) fn closest_first(key: &str, names: &[&str], said: (&str, &str)) -> String {
    if names.is_empty() {
        return said.1.to_owned();
    }
    let mut names = names.to_vec();
    names.sort_by_key(|name| (variables::distance(key, name), *name));
    let shown_names: Vec<String> = names.iter().take(5).map(|n| shown(n)).collect();
    let more = if names.len() > 5 { ", ..." } else { "" };
    format!("{} {}{more}", said.0, shown_names.join(", "))
}

/// A problem that denies: at `path`, `what` is wrong, and the `fix`.
pub(crate) fn problem(path: FieldPath, what: String, fix: String) -> Found {
    Found::Problem(Problem { path, what, fix })
}

/// The referent `shown` (`Function "f"`) when it was found; else the finding that ends the checks
/// of this reference: not found (`not_found` gives what and fix), or not verified (`kinds`: what
/// the webhook must be able to read).
pub(crate) fn found_or<'a, T>(
    answer: Option<&'a Resolution<T>>,
    path: &FieldPath,
    shown: &str,
    kinds: &str,
    not_found: impl FnOnce() -> (String, String),
) -> Result<&'a Arc<T>, Found> {
    let (what, fix) = match answer {
        Some(Resolution::Found(found)) => return Ok(found),
        Some(Resolution::NotFound) => {
            let (what, fix) = not_found();
            return Err(problem(path.clone(), what, fix));
        }
        Some(Resolution::Unverified(why)) => (
            format!("{shown} could not be verified: {why}"),
            format!("retry once the webhook can read {kinds}"),
        ),
        None => (
            format!("{shown} could not be verified: it was not looked up"),
            "retry".to_owned(),
        ),
    };
    Err(Found::Unverified(Problem {
        path: path.clone(),
        what,
        fix,
    }))
}

/// A name as written, when it names something to look up; else what is said of it: a problem
/// (ended by `fix`), or, in a blueprint of `family` (`Stash`, `KubeStash`), that a name holding
/// `${` is filled in per target later. `what`: the kind it names (`Task`).
pub(crate) fn named<'n>(
    blueprint: Option<&str>,
    path: &FieldPath,
    name: &'n Name,
    what: &str,
    fix: impl FnOnce() -> String,
) -> Result<&'n str, Found> {
    match (blueprint, name.as_str()) {
        (Some(family), Some(name)) if name.contains("${") => Err(Found::Warning(format!(
            "{path}: {what} \"{}\" is filled in per target when {family} creates each BackupConfiguration from this blueprint: not checked here",
            shown(name)
        ))),
        _ => name_as_written(name, what).map_err(|wrong| problem(path.clone(), wrong, fix())),
    }
}

/// `params` (an executor's, a KubeStash task's or hook's) of another shape than a map.
pub(crate) fn params_not_a_map(path: FieldPath, found: &str) -> Found {
    let what = format!("must be a map of parameter names to string values, got {found}");
    problem(path, what, "write params: {KEY: VALUE}".into())
}

/// The referent `key` of kind `what` (`shown` as messages name it) that is known, from `known`:
/// none when there is no source for the kind at all (not served, none in the files read); else
/// the finding that ends the checks of this reference: not checked, not found (`not_found` gives
/// what and fix), or not verified.
pub(crate) fn look<'a, T>(
    known: Option<Option<&'a Resolution<T>>>,
    key: &str,
    path: &FieldPath,
    (what, shown): (&str, &str),
    not_found: impl FnOnce() -> (String, String),
) -> Result<&'a Arc<T>, Found> {
    let Some(answer) = known else {
        return Err(Found::Warning(format!(
            "{path}: {what} \"{key}\" not checked: there are no {what}s to check it against (the cluster does not serve them: their CRD is not installed; or the catalog and files checked hold none)"
        )));
    };
    found_or(answer, path, shown, &format!("{what}s"), not_found)
}

/// What is wrong with a name as written, before any lookup (the denial's what); or the name.
/// `what`: the kind it names (`Function`).
pub(crate) fn name_as_written<'n>(name: &'n Name, what: &str) -> Result<&'n str, String> {
    match name {
        Name::Missing => Err("is required".into()),
        Name::WrongType(found) => Err(format!("must be a string, got {found}")),
        Name::Named(name) if name.is_empty() => Err("must not be empty".into()),
        Name::Named(name) if !valid_object_name(name) => Err(format!(
            "\"{}\" is not a valid {what} name: Kubernetes names are lowercase letters, digits, '-' and '.', start and end with a letter or digit, and are at most 253 characters",
            shown(name)
        )),
        Name::Named(name) => Ok(name),
    }
}

/// Parameters are substituted into the Function's command and args as `${NAME}`, so a name must be
/// one that substitution can match: a shell-style variable name.
pub fn valid_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What the stored object already had, for ratcheting on UPDATE.
struct Unchanged<'a> {
    functions: HashMap<&'a FieldPath, &'a Executor>,
    params: HashSet<(&'a FieldPath, &'a str)>,
}

impl<'a> From<&'a [ExecutorRef<'a>]> for Unchanged<'a> {
    fn from(old: &'a [ExecutorRef<'a>]) -> Self {
        let mut functions = HashMap::new();
        let mut params = HashSet::new();
        for r in old {
            functions.insert(&r.path, r.executor);
            match r.executor {
                Executor::Ref {
                    params: Params::Keys(keys),
                    ..
                } => params.extend(keys.iter().map(|k| (&r.path, k.as_str()))),
                Executor::Ref {
                    params: Params::WrongType(_),
                    ..
                } => {
                    params.insert((&r.path, ""));
                }
                _ => {}
            }
        }
        Unchanged { functions, params }
    }
}

impl Unchanged<'_> {
    /// The same hook named the same Function (or was malformed the same way) before.
    fn function(&self, r: &ExecutorRef) -> bool {
        match (self.functions.get(&r.path), r.executor) {
            (Some(Executor::Ref { function: old, .. }), Executor::Ref { function: new, .. }) => {
                old == new
            }
            (Some(old @ Executor::WrongType(_)), new) => *old == new,
            _ => false,
        }
    }

    /// The same hook had the same executor before: the same Function and the same parameters.
    fn executor(&self, r: &ExecutorRef) -> bool {
        self.functions.get(&r.path) == Some(&r.executor)
    }

    fn param(&self, path: &FieldPath, key: &str) -> bool {
        self.params.contains(&(path, key))
    }
}

#[cfg(test)]
mod tests;
