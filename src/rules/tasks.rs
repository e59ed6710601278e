//! The rules for Task references (`spec.task`, `spec.members[i].task`): the Task exists and has
//! steps, the Function of every step exists and can run, and every variable they read is set.
//! Pure, like the executor rules, and sharing their texts and their ratchet.
//!
//! Stash runs a Task (stashed/apimachinery `pkg/resolve`, `TaskResolver.GetPodSpec`) by resolving
//! the Task object with the object's inputs (its `task.params`, then the variables Stash sets over
//! them), then, for each of `spec.steps`, the step's Function with the step's `params`, the same
//! inputs upserted over them. A Function it cannot get fails the Job ("can't get Function X for
//! Task Y"), a Task without steps too ("empty steps/containers"), and so does a variable that none
//! of them sets (`ValueNotFoundError`).

use std::collections::HashMap;

use serde_json::Value;

use super::{
    closest_first, found_or, function_problem, look, named, problem, shown, valid_object_name,
    Found, Function, Policy, Resolution, Verdict,
};
use crate::functions::variables::{self, Variable};
use crate::stash::{FieldPath, StashKind, TaskParams, TaskRef, TaskUse};

const LIST_TASKS: &str = "kubectl get tasks.stash.appscode.com";
const LIST_FUNCTIONS: &str = "list them with: kubectl get functions.stash.appscode.com";

/// What the rules know of one Task: its steps, and the variables the Task object itself reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Task {
    pub steps: Vec<Step>,
    /// Every `${NAME}` of the Task object (Stash resolves the whole object with its inputs).
    pub variables: Vec<Variable>,
}

/// One of a Task's `spec.steps`: the Function it runs and the parameters it gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// `name`; none when it is missing, empty or not a string.
    pub function: Option<String>,
    /// The `name` of each of its `params`.
    pub params: Vec<String>,
}

impl Task {
    /// What the rules need of a Task given as JSON.
    pub fn from_object(object: &Value) -> Self {
        Task {
            steps: Task::from_steps(object.pointer("/spec/steps")),
            variables: variables::of_json(object),
        }
    }

    /// A Task's `spec.steps` as written; none when it is missing or not a list.
    pub fn from_steps(steps: Option<&Value>) -> Vec<Step> {
        let Some(Value::Array(steps)) = steps else {
            return Vec::new();
        };
        steps
            .iter()
            .map(|step| Step {
                function: step
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned),
                params: match step.get("params") {
                    Some(Value::Array(params)) => params
                        .iter()
                        .filter_map(|p| p.get("name")?.as_str().map(str::to_owned))
                        .collect(),
                    _ => Vec::new(),
                },
            })
            .collect()
    }

    /// The Functions its steps name that can be object names, each once, in step order.
    pub fn functions(&self) -> impl Iterator<Item = &str> {
        let mut seen = Vec::new();
        self.steps.iter().filter_map(move |step| {
            let name = step.function.as_deref()?;
            (valid_object_name(name) && !seen.contains(&name)).then(|| {
                seen.push(name);
                name
            })
        })
    }
}

/// What a Task can be told apart by, for protection and the audit: can it run at all?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    Runs,
    NoSteps,
    /// A step names a Function that does not exist or cannot run: the first such step, and why.
    BrokenStep {
        step: usize,
        what: String,
    },
}

impl Task {
    /// Whether the Task can run, given what is known of the Functions its steps name (a Function
    /// that could not be looked up counts as running: nothing is known against it).
    pub fn state<'a>(
        &self,
        functions: impl Fn(&str) -> Option<&'a Resolution<Function>>,
    ) -> TaskState {
        if self.steps.is_empty() {
            return TaskState::NoSteps;
        }
        match self.broken_steps(functions).into_iter().next() {
            Some(broken) => TaskState::BrokenStep {
                step: broken.step,
                what: broken.what,
            },
            None => TaskState::Runs,
        }
    }

    /// Every step that cannot run, in order, given what is known of the Functions the steps name
    /// (one that could not be looked up, or was not, counts as running).
    pub fn broken_steps<'a>(
        &self,
        functions: impl Fn(&str) -> Option<&'a Resolution<Function>>,
    ) -> Vec<BrokenStep> {
        let mut broken = Vec::new();
        for (step, s) in self.steps.iter().enumerate() {
            let (what, fix) = match s.function.as_deref() {
                None => (
                    "names no Function".to_owned(),
                    format!("name the Function this step runs ({LIST_FUNCTIONS})"),
                ),
                Some(name) if !valid_object_name(name) => (
                    format!("\"{}\" is not a valid Function name", shown(name)),
                    format!("name the Function this step runs ({LIST_FUNCTIONS})"),
                ),
                Some(name) => match functions(name) {
                    Some(Resolution::NotFound) => (
                        format!("Function \"{}\" not found", shown(name)),
                        format!("create the Function, or name another one in the step ({LIST_FUNCTIONS})"),
                    ),
                    Some(Resolution::Found(f)) => match function_problem(name, f) {
                        Some(problem) => problem,
                        None => continue,
                    },
                    _ => continue,
                },
            };
            broken.push(BrokenStep { step, what, fix });
        }
        broken
    }
}

/// A step of a Task that cannot run: which, what is wrong, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenStep {
    pub step: usize,
    pub what: String,
    pub fix: String,
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskState::Runs => f.write_str("can run"),
            TaskState::NoSteps => f.write_str("has no steps"),
            TaskState::BrokenStep { step, what } => write!(f, "spec.steps[{step}].name: {what}"),
        }
    }
}

/// What the rules may ask of Tasks: `None` when there is no Task source at all (no cluster, and
/// no Task in any file), so that names are reported as not checked rather than not found.
pub type TaskLookup<'l, 'a> = Option<&'l dyn Fn(&str) -> Option<&'a Resolution<Task>>>;

/// The distinct Task names that [`judge`] will ask about: those that can be object names (a
/// blueprint's templated name is filled in per target, and is not asked about).
pub fn names_to_resolve<'a>(uses: &[TaskUse<'a>]) -> Vec<&'a str> {
    let mut names: Vec<&str> = uses
        .iter()
        .filter_map(TaskUse::task_name)
        .filter(|name| valid_object_name(name))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Judges the Task references of an object of `kind`. `old` are those of the stored object on
/// UPDATE: a problem of a reference left unchanged is a warning, as for executors. `functions`
/// answers for the Functions of the steps of every Task found.
pub fn judge<'a>(
    kind: StashKind,
    uses: &[TaskUse],
    old: &[TaskUse],
    tasks: TaskLookup<'_, 'a>,
    functions: impl Fn(&str) -> Option<&'a Resolution<Function>>,
    policy: &Policy,
) -> Verdict {
    let old: HashMap<&FieldPath, &TaskRef> = old.iter().map(|u| (&u.path, u.task)).collect();
    let mut verdict = Verdict::default();
    for u in uses {
        let before = old.get(&u.path).copied();
        for (found, subject) in problems(kind, u, tasks, &functions, policy) {
            let kept = match subject {
                Subject::Task => before.is_some_and(|b| b.name == u.task.name),
                Subject::Inputs => before == Some(u.task),
            };
            verdict.add(found, kept, policy);
        }
    }
    verdict
}

/// What a problem is about, for ratcheting: the Task named (and so its steps' Functions), or the
/// inputs given to it.
enum Subject {
    Task,
    Inputs,
}

fn problems<'a>(
    kind: StashKind,
    u: &TaskUse,
    tasks: TaskLookup<'_, 'a>,
    functions: &impl Fn(&str) -> Option<&'a Resolution<Function>>,
    policy: &Policy,
) -> Vec<(Found, Subject)> {
    let mut out = Vec::new();
    let name_path = || u.path.child("name");
    let name_fix =
        || format!("name the Task that runs it (list those installed with: {LIST_TASKS})");
    let params_path = || u.path.child("params");

    if let TaskParams::WrongType(found) = &u.task.params {
        out.push((
            problem(
                params_path(),
                format!("must be a list of {{name, value}}, got {found}"),
                "write params: [{name: NAME, value: VALUE}]".into(),
            ),
            Subject::Inputs,
        ));
    }
    let blueprint = kind.is_template().then_some("Stash");
    let name = match named(blueprint, &name_path(), &u.task.name, "Task", name_fix) {
        Ok(name) => name,
        Err(found) => {
            out.push((found, Subject::Task));
            return out;
        }
    };
    let not_found = || {
        let fix = format!("install the Stash addon that provides it ({LIST_TASKS} lists those installed), or correct the name");
        (format!("Task \"{name}\" not found"), fix)
    };
    let which = format!("Task \"{name}\"");
    let answer = tasks.map(|t| t(name));
    let found = look(answer, name, &name_path(), ("Task", &which), not_found);
    let task = match found {
        Ok(task) => task,
        Err(finding) => {
            out.push((finding, Subject::Task));
            return out;
        }
    };

    if task.steps.is_empty() {
        out.push((
            problem(
                name_path(),
                format!("Task \"{name}\" has no steps, so Stash refuses to run it (\"empty steps/containers\")"),
                format!("give the Task steps (kubectl edit tasks.stash.appscode.com {name}), or name another Task"),
            ),
            Subject::Task,
        ));
        return out;
    }

    // Each step's Function, and whether every step's was found (else unused parameters cannot be
    // told apart from those a missing Function would read).
    let mut all_found = true;
    let mut found_functions: Vec<(usize, &str, &Function)> = Vec::new();
    for (i, step) in task.steps.iter().enumerate() {
        // Built only for a step with a problem: most have none.
        let at = || format!("Task \"{name}\", at its spec.steps[{i}].name");
        let edit_task = || format!("kubectl edit tasks.stash.appscode.com {name}");
        let Some(function) = step.function.as_deref() else {
            all_found = false;
            out.push((
                problem(
                    name_path(),
                    format!("{}: no Function is named", at()),
                    format!("fix the Task ({}), or name another Task", edit_task()),
                ),
                Subject::Task,
            ));
            continue;
        };
        if !valid_object_name(function) {
            all_found = false;
            out.push((
                problem(
                    name_path(),
                    format!(
                        "{}: \"{}\" is not a valid Function name",
                        at(),
                        shown(function)
                    ),
                    format!("fix the Task ({}), or name another Task", edit_task()),
                ),
                Subject::Task,
            ));
            continue;
        }
        let shown = format!("{}: Function \"{function}\"", at());
        let found = found_or(
            functions(function),
            &name_path(),
            &shown,
            "Functions",
            || {
                let fix = format!("create the Function, or fix the Task ({LIST_FUNCTIONS})");
                (format!("{shown} not found"), fix)
            },
        );
        match found {
            Ok(f) => {
                if let Some((what, fix)) = function_problem(function, f) {
                    out.push((
                        problem(name_path(), format!("{}: {what}", at()), fix),
                        Subject::Task,
                    ));
                }
                found_functions.push((i, function, f));
            }
            Err(finding) => {
                all_found = false;
                out.push((finding, Subject::Task));
            }
        }
    }

    // The inputs: the object's task.params, and what Stash sets for a Task run.
    let given: Vec<&str> = u.task.params.names().map(|(_, n)| n).collect();
    let inputs_fix = |var: &str, default_in: &str| {
        format!("add {{name: {var}, value: ...}} to {}, or give it a default in the {default_in} (${{{var}:=...}})", params_path())
    };
    for variable in &task.variables {
        if variable.has_default
            || given.contains(&variable.name.as_str())
            || policy.provides_for_task(&variable.name)
        {
            continue;
        }
        let var = shown(&variable.name);
        out.push((
            problem(
                params_path(),
                format!("Task \"{name}\" reads ${{{var}}}, which {} does not set and Stash does not provide", params_path()),
                inputs_fix(&var, "Task"),
            ),
            Subject::Inputs,
        ));
    }
    for &(i, function, f) in &found_functions {
        let step_params = &task.steps[i].params;
        for variable in &f.variables {
            let set = variable.has_default
                || step_params.contains(&variable.name)
                || given.contains(&variable.name.as_str())
                || policy.provides_for_task(&variable.name);
            if set {
                continue;
            }
            let var = shown(&variable.name);
            out.push((
                problem(
                    params_path(),
                    format!(
                        "Function \"{function}\" (Task \"{name}\", spec.steps[{i}]) reads ${{{var}}}, which neither that step's params nor {} set and Stash does not provide",
                        params_path()
                    ),
                    inputs_fix(&var, "Function"),
                ),
                Subject::Inputs,
            ));
        }
    }

    // A parameter no step reads, when every step's Function is known: most likely a misspelt name.
    if all_found {
        let mut read: Vec<&str> = task.variables.iter().map(|v| v.name.as_str()).collect();
        for (_, _, f) in &found_functions {
            read.extend(f.variables.iter().map(|v| v.name.as_str()));
        }
        read.sort_unstable();
        read.dedup();
        for (index, key) in u.task.params.names() {
            if read.contains(&key) {
                continue;
            }
            out.push((
                Found::Warning(format!(
                    "{}: no step of Task \"{name}\" reads ${{{}}} ({}): check the name",
                    params_path().key(&index.to_string()),
                    shown(key),
                    closest_first(key, &read, ("they read", "they read no variables")),
                )),
                Subject::Inputs,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
