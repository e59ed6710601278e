//! Where the hooks are in each Stash kind, and every executor reference found in an object.
//!
//! Decoding is deliberately tolerant: only `hooks.*.executor` is read. A hook, a `hooks` block or a
//! `members` list of an unexpected shape is skipped, never rejected, because the API evolves (the
//! design proposal itself writes `exec` as a plain list) and the CRD schema is the API server's job.

use std::fmt;

use serde_json::Value;

/// The API group whose kinds carry hooks.
pub const STASH_GROUP: &str = "stash.appscode.com";
/// The only served version of the hook-bearing kinds.
pub const STASH_VERSION: &str = "v1beta1";

const BACKUP_HOOKS: &[&str] = &["preBackup", "postBackup"];
const RESTORE_HOOKS: &[&str] = &["preRestore", "postRestore"];

/// A Stash kind whose objects carry hooks, and so are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StashKind {
    BackupConfiguration,
    RestoreSession,
    BackupBatch,
    RestoreBatch,
    BackupBlueprint,
}

impl StashKind {
    /// Every judged kind, in a stable order (manifests, metrics and tests use it).
    pub const ALL: [StashKind; 5] = [
        StashKind::BackupConfiguration,
        StashKind::RestoreSession,
        StashKind::BackupBatch,
        StashKind::RestoreBatch,
        StashKind::BackupBlueprint,
    ];

    /// The judged kind for a group/version/kind, or `None` for anything this server does not judge.
    pub fn from_gvk(group: &str, version: &str, kind: &str) -> Option<Self> {
        if group != STASH_GROUP || version != STASH_VERSION {
            return None;
        }
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StashKind::BackupConfiguration => "BackupConfiguration",
            StashKind::RestoreSession => "RestoreSession",
            StashKind::BackupBatch => "BackupBatch",
            StashKind::RestoreBatch => "RestoreBatch",
            StashKind::BackupBlueprint => "BackupBlueprint",
        }
    }

    /// The plural resource name, as used in webhook rules and RBAC.
    pub fn plural(self) -> &'static str {
        match self {
            StashKind::BackupConfiguration => "backupconfigurations",
            StashKind::RestoreSession => "restoresessions",
            StashKind::BackupBatch => "backupbatches",
            StashKind::RestoreBatch => "restorebatches",
            StashKind::BackupBlueprint => "backupblueprints",
        }
    }

    fn hook_names(self) -> &'static [&'static str] {
        match self {
            StashKind::RestoreSession | StashKind::RestoreBatch => RESTORE_HOOKS,
            _ => BACKUP_HOOKS,
        }
    }

    fn has_members(self) -> bool {
        matches!(self, StashKind::BackupBatch | StashKind::RestoreBatch)
    }
}

impl fmt::Display for StashKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A field path in the notation the API server uses in its own errors
/// (`spec.members[1].hooks.postBackup.executor.functionName`, map keys as `params[key]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    pub fn new(root: &str) -> Self {
        FieldPath(root.to_owned())
    }

    pub fn child(&self, name: &str) -> Self {
        FieldPath(format!("{}.{}", self.0, name))
    }

    pub fn index(&self, i: usize) -> Self {
        FieldPath(format!("{}[{}]", self.0, i))
    }

    pub fn key(&self, key: &str) -> Self {
        FieldPath(format!("{}[{}]", self.0, key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The JSON type of a value, for messages about a value of the wrong shape.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// What an executor says about the Function that runs its hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FunctionName {
    Named(String),
    Missing,
    /// Present but not a string; carries the JSON type found.
    WrongType(&'static str),
}

/// An executor's `params`: only the keys are judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Params {
    Absent,
    Keys(Vec<String>),
    /// Present but not a map; carries the JSON type found.
    WrongType(&'static str),
}

/// The executor of one hook, as written in the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executor {
    Ref {
        function: FunctionName,
        params: Params,
    },
    /// `executor` is present but is not a map; carries the JSON type found.
    WrongType(&'static str),
}

/// One hook's executor and where it is (`path` points at the `executor` field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorRef {
    pub path: FieldPath,
    pub executor: Executor,
}

impl ExecutorRef {
    /// The Function this executor names, when it names one.
    pub fn function_name(&self) -> Option<&str> {
        match &self.executor {
            Executor::Ref {
                function: FunctionName::Named(name),
                ..
            } if !name.is_empty() => Some(name),
            _ => None,
        }
    }
}

/// Every executor reference in an object's `spec`, in document order. Hooks without `executor`
/// yield nothing.
pub fn executor_refs(kind: StashKind, spec: &Value) -> Vec<ExecutorRef> {
    let mut refs = Vec::new();
    collect_hooks(kind, spec, None, &mut refs);
    if kind.has_members() {
        if let Some(Value::Array(members)) = spec.get("members") {
            for (i, member) in members.iter().enumerate() {
                collect_hooks(kind, member, Some(i), &mut refs);
            }
        }
    }
    refs
}

/// The executors of `parent.hooks`, where `parent` is the spec or its member `member`. Paths are
/// built only for the executors found: most of a BackupBatch's members have none.
fn collect_hooks(
    kind: StashKind,
    parent: &Value,
    member: Option<usize>,
    out: &mut Vec<ExecutorRef>,
) {
    let Some(Value::Object(hooks)) = parent.get("hooks") else {
        return;
    };
    for &hook_name in kind.hook_names() {
        let Some(Value::Object(hook)) = hooks.get(hook_name) else {
            continue;
        };
        match hook.get("executor") {
            None | Some(Value::Null) => {}
            Some(executor) => out.push(ExecutorRef {
                path: FieldPath(match member {
                    None => format!("spec.hooks.{hook_name}.executor"),
                    Some(i) => format!("spec.members[{i}].hooks.{hook_name}.executor"),
                }),
                executor: read_executor(executor),
            }),
        }
    }
}

fn read_executor(value: &Value) -> Executor {
    let Value::Object(fields) = value else {
        return Executor::WrongType(json_type(value));
    };
    let function = match fields.get("functionName") {
        None | Some(Value::Null) => FunctionName::Missing,
        Some(Value::String(name)) => FunctionName::Named(name.clone()),
        Some(other) => FunctionName::WrongType(json_type(other)),
    };
    let params = match fields.get("params") {
        None | Some(Value::Null) => Params::Absent,
        Some(Value::Object(map)) => Params::Keys(map.keys().cloned().collect()),
        Some(other) => Params::WrongType(json_type(other)),
    };
    Executor::Ref { function, params }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(kind: StashKind, obj: Value) -> Vec<String> {
        executor_refs(kind, &obj["spec"])
            .into_iter()
            .map(|r| r.path.to_string())
            .collect()
    }

    #[test]
    fn finds_every_hook_location_of_a_backup_batch() {
        let obj = json!({"spec": {
            "hooks": {"preBackup": {"executor": {"functionName": "a"}}, "postBackup": {"executor": {"functionName": "b"}}},
            "members": [
                {"hooks": {"postBackup": {"executor": {"functionName": "c"}}}},
                {"target": {}},
                {"hooks": {"preBackup": {"executor": {"functionName": "d"}}}}
            ]
        }});
        assert_eq!(
            paths(StashKind::BackupBatch, obj),
            [
                "spec.hooks.preBackup.executor",
                "spec.hooks.postBackup.executor",
                "spec.members[0].hooks.postBackup.executor",
                "spec.members[2].hooks.preBackup.executor",
            ]
        );
    }

    #[test]
    fn restore_kinds_read_restore_hooks_only() {
        let obj = json!({"spec": {"hooks": {
            "preBackup": {"executor": {"functionName": "ignored"}},
            "preRestore": {"executor": {"functionName": "a"}},
            "postRestore": {"executor": {"functionName": "b"}}
        }}});
        assert_eq!(
            paths(StashKind::RestoreSession, obj),
            [
                "spec.hooks.preRestore.executor",
                "spec.hooks.postRestore.executor"
            ]
        );
    }

    #[test]
    fn members_are_read_only_for_batches() {
        let obj = json!({"spec": {"members": [{"hooks": {"preBackup": {"executor": {"functionName": "a"}}}}]}});
        assert!(paths(StashKind::BackupConfiguration, obj.clone()).is_empty());
        assert_eq!(
            paths(StashKind::BackupBatch, obj),
            ["spec.members[0].hooks.preBackup.executor"]
        );
    }

    #[test]
    fn unexpected_shapes_elsewhere_are_skipped() {
        for obj in [
            json!({}),
            json!({"spec": null}),
            json!({"spec": {"hooks": []}}),
            json!({"spec": {"hooks": {"preBackup": ["/bin/sh", "-c", "true"]}}}),
            json!({"spec": {"hooks": {"preBackup": {"exec": ["/bin/sh"], "executor": null}}}}),
            json!({"spec": {"members": {"not": "a list"}}}),
        ] {
            assert!(
                paths(StashKind::BackupBatch, obj.clone()).is_empty(),
                "{obj}"
            );
        }
    }

    #[test]
    fn reads_executor_fields_and_their_shapes() {
        let obj = json!({"spec": {"hooks": {
            "preBackup": {"executor": {"functionName": "fn", "params": {"a": "b", "c": "d"}}},
            "postBackup": {"executor": "fn"}
        }}});
        let refs = executor_refs(StashKind::BackupConfiguration, &obj["spec"]);
        assert_eq!(
            refs[0].executor,
            Executor::Ref {
                function: FunctionName::Named("fn".into()),
                params: Params::Keys(vec!["a".into(), "c".into()])
            }
        );
        assert_eq!(refs[1].executor, Executor::WrongType("a string"));

        let obj = json!({"spec": {"hooks": {"preBackup": {"executor": {"functionName": 3, "params": ["a"]}}}}});
        let refs = executor_refs(StashKind::BackupConfiguration, &obj["spec"]);
        assert_eq!(
            refs[0].executor,
            Executor::Ref {
                function: FunctionName::WrongType("a number"),
                params: Params::WrongType("a list")
            }
        );
    }

    #[test]
    fn kinds_are_matched_by_group_version_and_kind() {
        assert_eq!(
            StashKind::from_gvk("stash.appscode.com", "v1beta1", "RestoreBatch"),
            Some(StashKind::RestoreBatch)
        );
        assert_eq!(
            StashKind::from_gvk("stash.appscode.com", "v1beta1", "Function"),
            None
        );
        assert_eq!(StashKind::from_gvk("apps", "v1beta1", "BackupBatch"), None);
        assert_eq!(
            StashKind::from_gvk("stash.appscode.com", "v1alpha1", "BackupBatch"),
            None
        );
    }
}
