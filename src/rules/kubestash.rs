//! The rules for KubeStash objects: from their addon and hook references, the stored object's
//! references and what is known of each Addon, Function and HookTemplate named, to a verdict.
//! Pure, as the Stash rules are, and sharing their verdict, ratchet, cap and lookup policy.

use std::collections::{HashMap, HashSet};

use super::{closest_first, look, named, params_not_a_map, problem, shown};
use super::{valid_object_name, valid_param_name};
use super::{FailurePolicy, Found, Policy};
use super::{Resolution, Verdict};
use crate::kubestash::referents::{Addon, AddonFunction, HookTemplate, Parameter};
use crate::kubestash::referents::{HookExecutor, Usage};
use crate::kubestash::{Inputs, Kind, Name, Named, Params, Reference, TaskUse};
use crate::stash::FieldPath;

const LIST_ADDONS: &str = "list them with: kubectl get addons.addons.kubestash.com";
const LIST_FUNCTIONS: &str = "list them with: kubectl get functions.addons.kubestash.com";
const LIST_HOOK_TEMPLATES: &str = "list them with: kubectl get hooktemplates.core.kubestash.com -A";

/// The inputs KubeStash sets for every Function it runs, besides the parameters (kubestash/
/// apimachinery `apis/variables.go`), and `DB_VERSION`, which it picks from the Function's
/// `availableVersions`.
#[rustfmt::skip]
pub const KUBESTASH_VARIABLES: &[&str] = &[
    "DB_VERSION", "authSecretName", "authSecretYaml", "backupSession", "configSecretName",
    "configSecretYaml", "enableCache", "imageRegistry", "imageRepo", "imageTag", "interimDataDir",
    "invokerKind", "invokerName", "issuerRefName", "licenseApiService", "mongoDBName", "mongoYaml",
    "name", "namespace", "pgName", "pgYaml", "restoreNamespace", "restoreSession", "snapshotName",
    "targetKind", "targetMountPath", "targetName", "targetNamespace", "targetPaths", "taskName",
];

/// What is known of each referent, by name (HookTemplates by `NAMESPACE/NAME`): what one review's
/// lookups found, or what the audit and protection gather across many objects. A map is none when
/// there is no source for that referent at all (not installed, not in the catalog), so its names
/// are reported as not checked, never denied.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    pub addons: Option<HashMap<String, Resolution<Addon>>>,
    pub functions: Option<HashMap<String, Resolution<AddonFunction>>>,
    pub hook_templates: Option<HashMap<String, Resolution<HookTemplate>>>,
}

/// What some objects name that can be looked up, each kind by name.
#[derive(Debug, Default)]
pub struct Wanted {
    pub addons: Vec<String>,
    /// As `NAMESPACE/NAME`.
    pub hook_templates: Vec<String>,
    pub functions: Vec<String>,
}

/// What `objects` name that can be looked up: their Addons and HookTemplates, and the Functions
/// run by the tasks they name of the Addons `known` holds as found, and by the HookTemplates it
/// holds as found.
pub fn to_resolve(objects: &[(&Kind, &[Reference])], known: &Catalog) -> Wanted {
    let mut wanted = Wanted::default();
    let functions = &mut wanted.functions;
    let all = objects
        .iter()
        .flat_map(|(k, refs)| refs.iter().map(move |r| (k, r)));
    for (kind, r) in all {
        let name = lookable(kind, &r.name);
        match &r.named {
            Named::Addon(tasks) => {
                wanted.addons.extend(name.map(str::to_owned));
                let Some(Resolution::Found(addon)) = lookup(known.addons.as_ref(), name) else {
                    continue;
                };
                let offered = || addon.backup_tasks.iter().chain(&addon.restore_tasks);
                for task in tasks.iter().filter_map(|t| t.name.as_str()) {
                    let runs = offered().filter(|t| t.name == task);
                    functions.extend(runs.filter_map(|t| t.function.clone()));
                }
            }
            Named::HookTemplate { .. } => {
                let key = name.and_then(|_| r.key());
                let found = lookup(known.hook_templates.as_ref(), key.as_deref());
                if let Some(Resolution::Found(template)) = found {
                    functions.extend(template.function().map(str::to_owned));
                }
                wanted.hook_templates.extend(key);
            }
        }
    }
    functions.retain(|n| valid_object_name(n));
    wanted
}

/// The name when it can be looked up: one a Kubernetes object may have, and not a blueprint's
/// `${...}`, which is filled in per target later.
fn lookable<'n>(kind: &Kind, name: &'n Name) -> Option<&'n str> {
    let judged = |n: &&str| !(kind.template && n.contains("${"));
    name.as_str().filter(|n| judged(n) && valid_object_name(n))
}

/// What `found` holds of `name`, when there is a map and a name.
pub(crate) fn lookup<'a, T>(
    found: Option<&'a HashMap<String, Resolution<T>>>,
    name: Option<&str>,
) -> Option<&'a Resolution<T>> {
    found?.get(name?)
}

/// Judges the references of a KubeStash object of `kind`. `old` are the stored object's on
/// UPDATE: a problem the stored object already had, word for word, is a warning, as for Stash
/// objects. Word for word means the same referents at the same place, so `known` needs only
/// what `refs` name; `old` is judged only when `refs` have a problem.
pub fn judge(
    kind: &Kind,
    namespace: &str,
    refs: &[Reference],
    old: &[Reference],
    known: &Catalog,
    policy: &Policy,
) -> Verdict {
    let text = |found: &Found| match found {
        Found::Problem(p) | Found::Unverified(p) => Some(p.to_string()),
        Found::Warning(_) => None,
    };
    // Everything found of each reference, in order.
    let findings = |refs: &[Reference]| -> Vec<Found> {
        let each = |r: &Reference| match &r.named {
            Named::Addon(tasks) => addon_problems(kind, r, tasks, known),
            Named::HookTemplate {
                namespace: ns,
                inputs,
            } => hook_problems(kind, namespace, r, (ns, inputs), known),
        };
        refs.iter().flat_map(each).collect()
    };
    let found = findings(refs);
    let had: HashSet<String> = match found.iter().any(|f| !matches!(f, Found::Warning(_))) {
        true => findings(old).iter().filter_map(text).collect(),
        false => HashSet::new(),
    };
    let mut verdict = Verdict::default();
    for found in found {
        let kept = text(&found).is_some_and(|t| had.contains(&t));
        verdict.add(found, kept, policy);
    }
    verdict
}

/// Judges one reference alone (`one`), without the ratchet, a lookup that failed or was not made
/// being a warning: what the audit reports of a reference, and what protection compares before
/// and after a change.
pub fn judge_alone(kind: &Kind, namespace: &str, one: &Reference, known: &Catalog) -> Verdict {
    let (one, policy) = (std::slice::from_ref(one), FailurePolicy::Allow.into());
    judge(kind, namespace, one, &[], known, &policy)
}

/// The family whose blueprint fills in names per target, when `kind` is a blueprint.
fn blueprint(kind: &Kind) -> Option<&'static str> {
    kind.template.then_some("KubeStash")
}

/// What is found of `addon`, an addon reference asking for `tasks`.
fn addon_problems(
    kind: &Kind,
    addon: &Reference,
    tasks: &[TaskUse],
    known: &Catalog,
) -> Vec<Found> {
    let path = addon.path.child("name");
    let fix = || format!("name the Addon that backs up this target ({LIST_ADDONS})");
    let found = named(blueprint(kind), &path, &addon.name, "Addon", fix).and_then(|name| {
        let shown = format!("Addon \"{name}\"");
        let not_found = || {
            let fix = "install the KubeStash addon that provides it, or fix the name";
            (
                format!("{shown} not found"),
                format!("{fix} ({LIST_ADDONS})"),
            )
        };
        let answer = known.addons.as_ref().map(|m| m.get(name));
        let found = look(answer, name, &path, ("Addon", &shown), not_found)?;
        Ok((name, found))
    });
    let (name, found) = match found {
        Ok(found) => found,
        Err(finding) => return vec![finding],
    };
    let (list, offered) = (kind.tasks.as_str(), found.tasks(kind.tasks));
    let mut out = Vec::new();
    for task in tasks {
        let path = task.path.child("name");
        // Only built for a problem: it ranks every task the Addon offers.
        let fix = || {
            let names: Vec<&str> = offered.iter().map(|t| t.name.as_str()).collect();
            let given = task.name.as_str().unwrap_or_default();
            let has = closest_first(given, &names, ("it has", "it has none"));
            format!("name one of Addon \"{name}\"'s {list} tasks ({has})")
        };
        let offer = named(blueprint(kind), &path, &task.name, "task", fix).and_then(|given| {
            let what = || format!("Addon \"{name}\" has no {list} task \"{given}\"");
            let offer = offered.iter().find(|t| t.name == given);
            offer.ok_or_else(|| problem(path.clone(), what(), fix()))
        });
        let offer = match offer {
            Ok(offer) => offer,
            Err(finding) => {
                out.push(finding);
                continue;
            }
        };
        let runner = format!("{list} task \"{}\" of Addon \"{name}\"", offer.name);
        let function = offer.function.as_deref();
        let (found, reads) = function_problems(&path, &runner, function, task_nameless(), known);
        out.extend(found);
        let (declared, given) = (&offer.parameters, &task.inputs);
        out.extend(input_problems(&task.path, &runner, declared, given, reads));
        let declared: Vec<&str> = offer.volumes.iter().map(String::as_str).collect();
        for (i, volume) in task
            .volumes
            .iter()
            .filter(|(_, v)| !offer.volumes.contains(v))
        {
            out.push(Found::Warning(format!(
                "{}: {runner} declares no volume \"{}\" ({}): check the name",
                task.path.child("addonVolumes").index(*i).child("name"),
                shown(volume),
                closest_first(volume, &declared, ("it declares", "it declares no volumes")),
            )));
        }
    }
    out
}

/// What is found of `hook`, a reference from an object in `namespace` to a HookTemplate in `ns`,
/// which the hook gives `inputs`.
fn hook_problems(
    kind: &Kind,
    namespace: &str,
    hook: &Reference,
    (ns, inputs): (&str, &Inputs),
    known: &Catalog,
) -> Vec<Found> {
    let path = hook.path.child("hookTemplate").child("name");
    let fix = || format!("name the HookTemplate that runs this hook ({LIST_HOOK_TEMPLATES})");
    let found = named(blueprint(kind), &path, &hook.name, "HookTemplate", fix).and_then(|name| {
        let key = format!("{ns}/{name}");
        let shown = format!("HookTemplate \"{key}\"");
        let not_found = || {
            let fix = "create it there, or set hookTemplate.namespace to the namespace that has it";
            let what = format!("HookTemplate \"{name}\" not found in namespace \"{ns}\"");
            (what, format!("{fix} ({LIST_HOOK_TEMPLATES})"))
        };
        let answer = known.hook_templates.as_ref().map(|m| m.get(&key));
        let found = look(answer, &key, &path, ("HookTemplate", &shown), not_found)?;
        Ok((name, shown, found))
    });
    let (name, runner, template) = match found {
        Ok(found) => found,
        Err(finding) => return vec![finding],
    };
    let mut out = Vec::new();
    if template.usage == Usage::Same && ns != namespace {
        out.push(Found::Warning(format!(
            "{}: {runner} may be used only from its own namespace (its spec.usagePolicy.allowedNamespaces.from is Same, or unset), not from \"{namespace}\": KubeStash will refuse it; allow this namespace on the HookTemplate, or use one in \"{namespace}\"",
            hook.path.child("hookTemplate"),
        )));
    }
    let (found, reads) = match &template.executor {
        HookExecutor::Other => (Vec::new(), None),
        HookExecutor::Function(function) => {
            let nameless = hook_nameless(ns, name);
            function_problems(&path, &runner, function.as_deref(), nameless, known)
        }
    };
    out.extend(found);
    let declared = &template.params;
    out.extend(input_problems(&hook.path, &runner, declared, inputs, reads));
    out
}

/// What is said of an Addon's task that names no Function, and the fix.
pub(crate) fn task_nameless() -> (&'static str, String) {
    (
        "names no Function",
        "fix the Addon, or name another task".into(),
    )
}

/// What is said of HookTemplate `namespace/name`, of executor type Function, when it names none,
/// and the fix.
pub(crate) fn hook_nameless(namespace: &str, name: &str) -> (&'static str, String) {
    let what = "has executor type Function but names no Function (its spec.executor.function.name is not set)";
    let edit = format!("kubectl edit hooktemplates.core.kubestash.com {name} -n {namespace}");
    (what, format!("fix the HookTemplate ({edit})"))
}

/// What keeps the Function `runner` runs from running, reported at `path`; and, when it was
/// found, the variables it reads. `nameless`: what is said when it names none, and the fix.
pub(crate) fn function_problems<'a>(
    path: &FieldPath,
    runner: &str,
    function: Option<&str>,
    (nameless, fix): (&str, String),
    known: &'a Catalog,
) -> (Vec<Found>, Option<&'a AddonFunction>) {
    let Some(function) = function else {
        let what = format!("{runner} {nameless}");
        return (vec![problem(path.clone(), what, fix)], None);
    };
    let runs = format!("{runner} runs Function \"{function}\" (functions.addons.kubestash.com)");
    let not_found = || {
        let fix = format!("install the addon catalog that provides it ({LIST_FUNCTIONS})");
        (format!("{runs}, which is not found"), fix)
    };
    let which = format!("{runs}, which");
    let answer = known.functions.as_ref().map(|m| m.get(function));
    let found = match look(answer, function, path, ("Function", &which), not_found) {
        Ok(found) => found,
        Err(finding) => return (vec![finding], None),
    };
    let edit = format!("kubectl edit functions.addons.kubestash.com {function}");
    let fault = |(_, what, fix)| {
        problem(
            path.clone(),
            format!("{runs}, which {what}"),
            format!("{fix} ({edit})"),
        )
    };
    (found.faults().into_iter().map(fault).collect(), Some(found))
}

/// The parameters a reference must set and does not, the keys it sets that are not declared,
/// and the variables the Function reads that nothing sets.
fn input_problems(
    path: &FieldPath,
    runner: &str,
    declared: &[Parameter],
    Inputs { params, variables }: &Inputs,
    function: Option<&AddonFunction>,
) -> Vec<Found> {
    let mut out = Vec::new();
    let params_path = path.child("params");
    if let Params::WrongType(found) = params {
        return vec![params_not_a_map(params_path, found)];
    }
    let keys = params.keys();
    let unset = declared
        .iter()
        .filter(|p| p.must_be_set() && !keys.contains(&p.name));
    for parameter in unset {
        let p = shown(&parameter.name);
        let what =
            format!("{runner} requires parameter \"{p}\", which is not set and has no default");
        let fix = format!("add params.{p}");
        out.push(problem(params_path.clone(), what, fix));
    }
    let names: Vec<&str> = declared.iter().map(|p| p.name.as_str()).collect();
    for key in keys.iter().filter(|k| !names.contains(&k.as_str())) {
        out.push(Found::Warning(format!(
            "{}: {runner} declares no parameter \"{}\" ({}): check the name",
            params_path.key(&shown(key)),
            shown(key),
            closest_first(key, &names, ("it declares", "it declares no parameters")),
        )));
    }
    let Some(function) = function else {
        return out;
    };
    let set = |name: &str| {
        names.contains(&name)
            || keys.iter().any(|k| k == name)
            || variables.iter().any(|(_, v)| v == name)
            || KUBESTASH_VARIABLES.contains(&name)
            || !valid_param_name(name)
    };
    for variable in (function.variables.iter()).filter(|v| !v.has_default && !set(&v.name)) {
        out.push(Found::Warning(format!(
            "{params_path}: the Function {runner} runs reads ${{{n}}}, which no parameter, params key, variable or KubeStash input sets: add params.{n}, or check the Function",
            n = shown(&variable.name)
        )));
    }
    out
}

#[cfg(test)]
mod tests;
