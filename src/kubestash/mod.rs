//! KubeStash, Stash's successor, as data: the kinds this webhook judges, where their references
//! sit, and which referent each names. The rules are in [`crate::rules::kubestash`]; what the
//! referents are, in [`referents`].
//!
//! A KubeStash object reaches a container image by two roads (kubestash/apimachinery
//! `apis/core/v1alpha1`): an `addon` (an `Addon`, one of its tasks, and that task's `Function`),
//! and a hook's `hookTemplate` (a namespaced `HookTemplate`, whose executor may be a `Function`).
//! Each kind below says where those are, as field patterns: `[*]` stands for every element of a
//! list, and becomes its index in the field paths of messages.

pub mod referents;

use serde_json::Value;

use crate::stash::FieldPath;
pub use crate::stash::{Name, Params};

/// The group of the kinds that name referents (BackupConfiguration, HookTemplate, ...).
pub const CORE_GROUP: &str = "core.kubestash.com";
/// The group of the referents an addon catalog installs (Addon, Function).
pub const ADDONS_GROUP: &str = "addons.kubestash.com";
/// The one served version of both groups.
pub const VERSION: &str = "v1alpha1";

/// Which of an Addon's task lists a reference names a task of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskList {
    /// `spec.backupTasks`
    Backup,
    /// `spec.restoreTasks`
    Restore,
}

impl TaskList {
    /// "backup" or "restore", as messages say it.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskList::Backup => "backup",
            TaskList::Restore => "restore",
        }
    }
}

/// A KubeStash kind this webhook judges, and where its references are.
#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    pub kind: &'static str,
    pub plural: &'static str,
    /// The kind as metrics and `check` name it (`BackupConfiguration.core.kubestash.com`),
    /// distinct from Stash's kind of the same name.
    pub label: &'static str,
    /// The addon references (`addon: {name, tasks: [{name, params, addonVolumes}]}`).
    pub addons: &'static [&'static str],
    /// Which of the Addon's task lists they name tasks of.
    pub tasks: TaskList,
    /// The hooks (`{name, hookTemplate: {name, namespace}, params, variables}`), each a list.
    pub hooks: &'static [&'static str],
    /// Its values are filled in per target later (a blueprint): a value holding `${` is not judged.
    pub template: bool,
}

/// The hooks of a backup session (`SessionConfig.Hooks`), where BackupConfigurations and
/// BackupBatches have them.
const SESSION_HOOKS: &[&str] = &[
    "spec.sessions[*].hooks.preBackup[*]",
    "spec.sessions[*].hooks.postBackup[*]",
];

/// Every KubeStash kind judged, with its references (kubestash/apimachinery
/// `apis/core/v1alpha1/*_types.go`: `BackupConfigurationSpec.Sessions`, `Session.Addon`,
/// `SessionConfig.Hooks`, `RestoreSessionSpec.{Addon,Hooks}`, `BackupBatchSpec.Sessions[].Targets`,
/// `BackupBlueprintSpec.BackupConfigurationTemplate`).
pub const KINDS: &[Kind] = &[
    Kind {
        kind: "BackupConfiguration",
        plural: "backupconfigurations",
        label: "BackupConfiguration.core.kubestash.com",
        addons: &["spec.sessions[*].addon"],
        tasks: TaskList::Backup,
        hooks: SESSION_HOOKS,
        template: false,
    },
    Kind {
        kind: "RestoreSession",
        plural: "restoresessions",
        label: "RestoreSession.core.kubestash.com",
        addons: &["spec.addon"],
        tasks: TaskList::Restore,
        hooks: &["spec.hooks.preRestore[*]", "spec.hooks.postRestore[*]"],
        template: false,
    },
    Kind {
        kind: "BackupBatch",
        plural: "backupbatches",
        label: "BackupBatch.core.kubestash.com",
        addons: &["spec.sessions[*].targets[*].addon"],
        tasks: TaskList::Backup,
        hooks: SESSION_HOOKS,
        template: false,
    },
    Kind {
        kind: "BackupBlueprint",
        plural: "backupblueprints",
        label: "BackupBlueprint.core.kubestash.com",
        addons: &["spec.backupConfigurationTemplate.sessions[*].addon"],
        tasks: TaskList::Backup,
        hooks: &[
            "spec.backupConfigurationTemplate.sessions[*].hooks.preBackup[*]",
            "spec.backupConfigurationTemplate.sessions[*].hooks.postBackup[*]",
        ],
        template: true,
    },
];

/// The judged kind for a group/version/kind, or `None`.
pub fn kind(group: &str, version: &str, kind: &str) -> Option<&'static Kind> {
    let ours = group == CORE_GROUP && version == VERSION;
    KINDS.iter().find(|k| ours && k.kind == kind)
}

/// One reference of an object: where it is, the name it gives, and what that name names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The field that holds it: an `addon`, or an element of a hook list
    /// (`spec.sessions[0].hooks.preBackup[1]`).
    pub path: FieldPath,
    /// `addon.name`, or `hookTemplate.name`.
    pub name: Name,
    pub named: Named,
}

/// What a reference names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// An Addon, and the tasks asked of it (`addon.tasks`).
    Addon(Vec<TaskUse>),
    /// A HookTemplate in `namespace` (`hookTemplate.namespace`, or the object's own when it is
    /// empty), and what the hook gives it.
    HookTemplate { namespace: String, inputs: Inputs },
}

impl Reference {
    /// The key sources know what it names by (an Addon's name, a HookTemplate's
    /// `NAMESPACE/NAME`), when it gives a name.
    pub fn key(&self) -> Option<String> {
        let name = self.name.as_str()?;
        Some(match &self.named {
            Named::Addon(_) => name.to_owned(),
            Named::HookTemplate { namespace, .. } => format!("{namespace}/{name}"),
        })
    }
}

/// One of `addon.tasks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskUse {
    /// The element of `tasks` (`...addon.tasks[0]`).
    pub path: FieldPath,
    pub name: Name,
    pub inputs: Inputs,
    /// `addonVolumes[].name`, with each one's index.
    pub volumes: Vec<(usize, String)>,
}

/// What a task or a hook gives the Function it runs: its `params`, and `variables[].name` (with
/// each one's index), which are inputs too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub params: Params,
    pub variables: Vec<(usize, String)>,
}

impl Inputs {
    fn of(task_or_hook: &Value) -> Self {
        Inputs {
            params: Params::of(task_or_hook.get("params")),
            variables: names(task_or_hook.get("variables")),
        }
    }
}

/// Every reference of one object, addons first, each in document order.
pub type References = Vec<Reference>;

/// The references of an object of `kind` (`object`: the whole object, as JSON; `namespace`: the
/// request's, for hooks that leave `hookTemplate.namespace` empty). Values of an unexpected shape
/// are passed over: the CRD schema is the API server's job.
pub fn references(kind: &Kind, object: &Value, namespace: &str) -> References {
    let at = |patterns: &'static [&'static str]| {
        (patterns.iter()).flat_map(|pattern| locate(object, FieldPath::default(), pattern))
    };
    let addons = at(kind.addons).filter_map(|(path, addon)| {
        let name = Name::of(addon.as_object()?.get("name"));
        let tasks = locate(addon, path.clone(), "tasks[*]").into_iter();
        let tasks = tasks.filter_map(|(path, task)| {
            Some(TaskUse {
                name: Name::of(task.as_object()?.get("name")),
                inputs: Inputs::of(task),
                volumes: names(task.get("addonVolumes")),
                path,
            })
        });
        let named = Named::Addon(tasks.collect());
        Some(Reference { path, name, named })
    });
    let hooks = at(kind.hooks).filter_map(|(path, hook)| {
        let template = hook.get("hookTemplate")?.as_object()?;
        let namespace = match template.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() => ns,
            _ => namespace,
        };
        let (namespace, inputs) = (namespace.to_owned(), Inputs::of(hook));
        let named = Named::HookTemplate { namespace, inputs };
        let name = Name::of(template.get("name"));
        Some(Reference { path, name, named })
    });
    addons.chain(hooks).collect()
}

/// The `name` of each element of a list of `{name, ...}`, with its index.
fn names(value: Option<&Value>) -> Vec<(usize, String)> {
    let name = |(i, v): (usize, &Value)| Some((i, v.get("name")?.as_str()?.to_owned()));
    list(value).iter().enumerate().filter_map(name).collect()
}

/// The elements of a list; none when the value is not one.
fn list(value: Option<&Value>) -> &[Value] {
    value.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// The values at `pattern` under `value` (found at `path`), each with its field path: `[*]`
/// stands for each element of a list, and becomes its index.
fn locate<'v>(value: &'v Value, path: FieldPath, pattern: &str) -> Vec<(FieldPath, &'v Value)> {
    let mut found = vec![(path, value)];
    for segment in pattern.split('.') {
        let (field, each) = match segment.strip_suffix("[*]") {
            Some(field) => (field, true),
            None => (segment, false),
        };
        let mut next = Vec::new();
        for (path, value) in found {
            let Some(child) = value.get(field) else {
                continue;
            };
            let path = path.child(field);
            match child.as_array() {
                _ if !each => next.push((path, child)),
                Some(list) => {
                    next.extend((list.iter().enumerate()).map(|(i, e)| (path.index(i), e)))
                }
                None => {}
            }
        }
        found = next;
    }
    found
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The addon references, each with its tasks.
    fn addons(refs: &[Reference]) -> Vec<(&Reference, &[TaskUse])> {
        (refs.iter())
            .filter_map(|r| match &r.named {
                Named::Addon(tasks) => Some((r, &tasks[..])),
                Named::HookTemplate { .. } => None,
            })
            .collect()
    }

    fn hooks(refs: &[Reference]) -> Vec<&Reference> {
        (refs.iter())
            .filter(|r| matches!(r.named, Named::HookTemplate { .. }))
            .collect()
    }

    #[test]
    fn every_reference_is_found_with_its_path() {
        let object = json!({"spec": {"sessions": [
            {"addon": {"name": "workload-addon", "tasks": [
                {"name": "logical-backup", "params": {"paths": "/data"},
                 "addonVolumes": [{"name": "kubestash-tmp-volume"}]}]},
             "hooks": {"preBackup": [
                {"name": "freeze", "hookTemplate": {"name": "freeze"}, "params": {"a": "b"}},
                {"name": "noop"},
                {"name": "other", "hookTemplate": {"name": "t", "namespace": "tools"}}]}},
            "not a session"
        ]}});
        let kind = kind(CORE_GROUP, VERSION, "BackupConfiguration").unwrap();
        let refs = references(kind, &object, "demo");
        assert_eq!(addons(&refs).len(), 1);
        let (addon, tasks) = addons(&refs)[0];
        assert_eq!(addon.path.as_str(), "spec.sessions[0].addon");
        assert_eq!(addon.name.as_str(), Some("workload-addon"));
        assert_eq!(tasks[0].path.as_str(), "spec.sessions[0].addon.tasks[0]");
        assert_eq!(tasks[0].inputs.params.keys(), ["paths"]);
        assert_eq!(tasks[0].volumes, [(0, "kubestash-tmp-volume".to_owned())]);
        let hooks: Vec<(&str, Option<String>)> = hooks(&refs)
            .iter()
            .map(|h| (h.path.as_str(), h.key()))
            .collect();
        assert_eq!(
            hooks,
            [
                (
                    "spec.sessions[0].hooks.preBackup[0]",
                    Some("demo/freeze".to_owned())
                ),
                (
                    "spec.sessions[0].hooks.preBackup[2]",
                    Some("tools/t".to_owned())
                ),
            ]
        );
    }

    #[test]
    fn each_kind_reads_its_own_places() {
        let restore = json!({"spec": {"addon": {"name": "a", "tasks": [{"name": "t"}]},
            "hooks": {"postRestore": [{"hookTemplate": {"name": "h"}}]}}});
        let refs = references(
            kind(CORE_GROUP, VERSION, "RestoreSession").unwrap(),
            &restore,
            "ns",
        );
        assert_eq!(addons(&refs)[0].0.path.as_str(), "spec.addon");
        assert_eq!(hooks(&refs)[0].path.as_str(), "spec.hooks.postRestore[0]");
        let batch = json!({"spec": {"sessions": [{"targets": [{}, {"addon": {"name": "a"}}]}]}});
        let refs = references(
            kind(CORE_GROUP, VERSION, "BackupBatch").unwrap(),
            &batch,
            "ns",
        );
        assert_eq!(
            addons(&refs)[0].0.path.as_str(),
            "spec.sessions[0].targets[1].addon"
        );
        assert!(kind("stash.appscode.com", "v1beta1", "BackupConfiguration").is_none());
    }

    #[test]
    fn values_of_another_shape_are_passed_over() {
        for spec in [
            json!(null),
            json!({"sessions": "x"}),
            json!({"sessions": [{"addon": 3, "hooks": {"preBackup": {"hookTemplate": {}}}}]}),
        ] {
            let refs = references(&KINDS[0], &json!({ "spec": spec }), "ns");
            assert!(refs.is_empty(), "{spec}");
        }
        let refs = references(
            &KINDS[0],
            &json!({"spec": {"sessions": [{"addon": {"name": 7, "tasks": "x"}}]}}),
            "ns",
        );
        assert_eq!(addons(&refs)[0].0.name, Name::WrongType("a number"));
        assert!(addons(&refs)[0].1.is_empty());
    }
}
