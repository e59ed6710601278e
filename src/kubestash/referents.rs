//! What the rules know of KubeStash's referents: an `Addon` (its tasks), an addons.kubestash.com
//! `Function` (its container), and a `HookTemplate` (its executor, parameters and usage policy),
//! each read once from its object when a source loads it. Read from kubestash/apimachinery
//! `apis/addons/v1alpha1/{addon,function}_types.go` and `apis/core/v1alpha1/hooktemplate_types.go`.

use serde_json::Value;

use super::{list, TaskList, ADDONS_GROUP, CORE_GROUP, VERSION};
use crate::functions::variables::{self, Variable};
use crate::rules::{shown, Container};
use crate::sources::Referent;

/// An Addon: the tasks it offers for backups and for restores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addon {
    pub backup_tasks: Vec<AddonTask>,
    pub restore_tasks: Vec<AddonTask>,
}

/// One of an Addon's tasks (`spec.backupTasks[i]`, `spec.restoreTasks[i]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddonTask {
    pub name: String,
    /// The Function that runs it (`function`); none when it is not set.
    pub function: Option<String>,
    pub parameters: Vec<Parameter>,
    /// The volumes it declares (`volumeTemplate[].name`), which `addonVolumes` may fill.
    pub volumes: Vec<String>,
}

/// A declared parameter (`parameters[i]` of an Addon task, `params[i]` of a HookTemplate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    pub name: String,
    pub required: bool,
    pub default: Option<String>,
}

impl Parameter {
    /// Required with no default: the reference must set it.
    pub fn must_be_set(&self) -> bool {
        self.required && self.default.as_deref().is_none_or(str::is_empty)
    }
}

impl Addon {
    /// Its backup tasks, or its restore tasks.
    pub fn tasks(&self, list: TaskList) -> &[AddonTask] {
        match list {
            TaskList::Backup => &self.backup_tasks,
            TaskList::Restore => &self.restore_tasks,
        }
    }
}

/// A KubeStash Function: whether its container can run, and the variables it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddonFunction {
    pub container: Container,
    /// Every `${NAME}` its spec reads (KubeStash substitutes the inputs into the whole spec,
    /// `pkg.ResolveWithInputs`).
    pub variables: Vec<Variable>,
    /// Why KubeStash cannot pick the tag of an image that reads `${DB_VERSION}`, as a message
    /// goes on after `Function "f" `: it picks it from `spec.availableVersions`
    /// (`pkg.FindAppropriateAddonVersion`), which fails on an empty list or on a version that is
    /// not semver.
    pub versions: Option<String>,
}

impl AddonFunction {
    /// What keeps it from running, each as a message goes on after `Function "f" `: the field
    /// at fault, what is wrong, and the fix.
    pub fn faults(&self) -> Vec<(&'static str, String, &'static str)> {
        let image = (self.container.fault())
            .map(|f| ("spec.image", f, "give the Function a valid spec.image"));
        let fix = "list the image's versions in spec.availableVersions";
        let versions = (self.versions.clone()).map(|what| ("spec.availableVersions", what, fix));
        image.into_iter().chain(versions).collect()
    }
}

/// A version as Masterminds/semver's `NewVersion` (which KubeStash uses) reads it: an optional
/// `v`, one to three dot-separated numbers, then an optional `-prerelease` and `+build`.
fn is_semver(version: &str) -> bool {
    let version = version.strip_prefix('v').unwrap_or(version);
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    (1..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// A HookTemplate: what runs the hook, the parameters it declares, and who may use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookTemplate {
    pub executor: HookExecutor,
    pub params: Vec<Parameter>,
    pub usage: Usage,
}

/// `spec.executor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookExecutor {
    /// `type: Function`, with `function.name` when it is set.
    Function(Option<String>),
    /// `Pod` or `Operator`: runs the hook's action in an existing container.
    Other,
}

/// `spec.usagePolicy.allowedNamespaces.from` (kmodules `FromNamespaces`; Same when unset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Same,
    All,
    /// Namespaces chosen by labels: not judged here (it would take a lookup per review).
    Selector,
}

impl HookTemplate {
    /// The Function it runs, when it runs one.
    pub fn function(&self) -> Option<&str> {
        match &self.executor {
            HookExecutor::Function(name) => name.as_deref(),
            HookExecutor::Other => None,
        }
    }
}

fn text(value: Option<&Value>) -> Option<String> {
    Some(value?.as_str()?.to_owned()).filter(|s| !s.is_empty())
}

fn parameters(value: Option<&Value>) -> Vec<Parameter> {
    let parameter = |p: &Value| {
        Some(Parameter {
            name: p.get("name")?.as_str()?.to_owned(),
            required: p.get("required").and_then(Value::as_bool).unwrap_or(false),
            default: p.get("default").and_then(Value::as_str).map(str::to_owned),
        })
    };
    list(value).iter().filter_map(parameter).collect()
}

impl Referent for Addon {
    const GROUP: &'static str = ADDONS_GROUP;
    const VERSION: &'static str = VERSION;
    const KIND: &'static str = "Addon";
    const PLURAL: &'static str = "addons";
    const RESOURCE: &'static str = "addons.addons.kubestash.com";

    fn from_object(object: &Value) -> Self {
        let task = |task: &Value| {
            let volumes = list(task.get("volumeTemplate")).iter();
            Some(AddonTask {
                name: task.get("name")?.as_str()?.to_owned(),
                function: text(task.get("function")),
                parameters: parameters(task.get("parameters")),
                volumes: volumes.filter_map(|v| text(v.get("name"))).collect(),
            })
        };
        let tasks = |field: &str| -> Vec<AddonTask> {
            let tasks = list(object.pointer(&format!("/spec/{field}")));
            tasks.iter().filter_map(task).collect()
        };
        Addon {
            backup_tasks: tasks("backupTasks"),
            restore_tasks: tasks("restoreTasks"),
        }
    }

    /// A review's denial is confirmed live anyway; an Addon's tasks' Functions are looked up on
    /// their own.
    fn answers_from_cache(&self) -> bool {
        true
    }
}

impl Referent for AddonFunction {
    const GROUP: &'static str = ADDONS_GROUP;
    const VERSION: &'static str = VERSION;
    const KIND: &'static str = "Function";
    const PLURAL: &'static str = "functions";
    const RESOURCE: &'static str = "functions.addons.kubestash.com";

    fn from_object(object: &Value) -> Self {
        let spec = object.get("spec").unwrap_or(&Value::Null);
        let image = spec.get("image");
        let reads = |i: &str| {
            variables::variables_in(i)
                .iter()
                .any(|v| v.name == "DB_VERSION")
        };
        let reads_version = image.and_then(Value::as_str).is_some_and(reads);
        let listed = list(spec.get("availableVersions"));
        let available: Vec<&str> = listed.iter().filter_map(Value::as_str).collect();
        let versions = match available.iter().find(|v| !is_semver(v)) {
            _ if !reads_version => None,
            _ if available.is_empty() => Some("reads ${DB_VERSION} in its image, but its spec.availableVersions is empty, so KubeStash cannot choose a version".to_owned()),
            Some(bad) => Some(format!(
                "lists \"{}\" in spec.availableVersions, which is not a semantic version, so KubeStash cannot choose a version for ${{DB_VERSION}}",
                shown(bad)
            )),
            None => None,
        };
        AddonFunction {
            container: Container::from_image(image),
            variables: variables::of_json(spec),
            versions,
        }
    }

    fn answers_from_cache(&self) -> bool {
        self.faults().is_empty()
    }
}

impl Referent for HookTemplate {
    const GROUP: &'static str = CORE_GROUP;
    const VERSION: &'static str = VERSION;
    const KIND: &'static str = "HookTemplate";
    const PLURAL: &'static str = "hooktemplates";
    const RESOURCE: &'static str = "hooktemplates.core.kubestash.com";
    const NAMESPACED: bool = true;

    fn from_object(object: &Value) -> Self {
        let spec = object.get("spec").unwrap_or(&Value::Null);
        let function = spec.pointer("/executor/function");
        // An executor without a type, but with a Function, runs that Function.
        let typed = spec.pointer("/executor/type").and_then(Value::as_str);
        let executor = match typed.or(function.map(|_| "Function")) {
            Some("Function") => HookExecutor::Function(text(function.and_then(|f| f.get("name")))),
            _ => HookExecutor::Other,
        };
        let from = spec.pointer("/usagePolicy/allowedNamespaces/from");
        let usage = match from.and_then(Value::as_str) {
            Some("All") => Usage::All,
            Some("Selector") => Usage::Selector,
            _ => Usage::Same,
        };
        HookTemplate {
            executor,
            params: parameters(spec.get("params")),
            usage,
        }
    }

    fn answers_from_cache(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_catalogs_workload_addon_reads_whole() {
        let addon = Addon::from_object(&json!({"spec": {
            "backupTasks": [{"name": "logical-backup", "function": "workload-backup",
                "parameters": [{"name": "paths", "required": true},
                               {"name": "scratchDir", "required": false, "default": "/tmp"}],
                "volumeTemplate": [{"name": "kubestash-tmp-volume"}]}],
            "restoreTasks": [{"name": "logical-backup-restore", "function": "workload-restore"}]}}));
        let task = &addon.backup_tasks[0];
        assert_eq!(task.function.as_deref(), Some("workload-backup"));
        assert!(task.parameters[0].must_be_set());
        assert!(!task.parameters[1].must_be_set());
        assert_eq!(task.volumes, ["kubestash-tmp-volume"]);
        let restore = &addon.restore_tasks[0];
        assert_eq!(restore.function.as_deref(), Some("workload-restore"));
    }

    #[test]
    fn an_image_reading_db_version_needs_semver_versions() {
        let versions = |spec| AddonFunction::from_object(&json!({ "spec": spec })).versions;
        let image = "ghcr.io/kubedb/mongodb-restic-plugin:v0.11.0_${DB_VERSION}";
        assert_eq!(versions(json!({"image": "x:1"})), None);
        assert_eq!(
            versions(json!({"image": image})).as_deref(),
            Some("reads ${DB_VERSION} in its image, but its spec.availableVersions is empty, so KubeStash cannot choose a version")
        );
        let usable =
            json!({"image": image, "availableVersions": ["4.2.3", "v5.0", "10.4.32-focal"]});
        assert_eq!(versions(usable), None);
        assert_eq!(
            versions(json!({"image": image, "availableVersions": ["4.2.3", "latest"]})).as_deref(),
            Some("lists \"latest\" in spec.availableVersions, which is not a semantic version, so KubeStash cannot choose a version for ${DB_VERSION}")
        );
        let imageless = AddonFunction::from_object(&json!({"spec": {}}));
        assert_eq!(imageless.container, Container::NoImage);
    }

    #[test]
    fn a_hook_templates_executor_and_policy() {
        let template = HookTemplate::from_object(&json!({"spec": {
            "executor": {"type": "Function", "function": {"name": "mysql-hook"}},
            "params": [{"name": "mode", "required": true}],
            "usagePolicy": {"allowedNamespaces": {"from": "All"}}}}));
        assert_eq!(template.function(), Some("mysql-hook"));
        assert_eq!(template.usage, Usage::All);
        let pod = HookTemplate::from_object(&json!({"spec": {"executor": {"type": "Pod"}}}));
        assert_eq!(pod.executor, HookExecutor::Other);
        assert_eq!(pod.usage, Usage::Same);
        let nameless =
            HookTemplate::from_object(&json!({"spec": {"executor": {"type": "Function"}}}));
        assert_eq!(nameless.executor, HookExecutor::Function(None));
    }
}
