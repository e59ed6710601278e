//! Where the hooks are in each Stash kind, and every executor reference found in an object.
//!
//! Decoding is deliberately tolerant: only `hooks.*.executor` is read. A hook, a `hooks` block or a
//! `members` list of an unexpected shape is skipped, never rejected, because the API evolves (the
//! design proposal itself writes `exec` as a plain list) and the CRD schema is the API server's job.

use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::scan::{DeError, Key, Scanner};

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
        let mut path = String::with_capacity(self.0.len() + 1 + name.len());
        path.push_str(&self.0);
        path.push('.');
        path.push_str(name);
        FieldPath(path)
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

/// One hook's executor, borrowed from the decoded spec, and where it is (`path` points at the
/// `executor` field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorRef<'a> {
    pub path: FieldPath,
    pub executor: &'a Executor,
}

impl<'a> ExecutorRef<'a> {
    /// The Function this executor names, when it names one.
    pub fn function_name(&self) -> Option<&'a str> {
        match self.executor {
            Executor::Ref {
                function: FunctionName::Named(name),
                ..
            } if !name.is_empty() => Some(name),
            _ => None,
        }
    }
}

/// The hooks of a spec, as decoded: of `spec.hooks` and of each `spec.members[i].hooks`, each
/// hook's name and executor. Everything else of the spec is skipped while decoding; a hook
/// without an executor (or with `executor: null`) is not kept. Which hook names count depends on
/// the kind, known only once the whole review is read, so all are kept here and filtered by
/// [`executor_refs`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SpecHooks {
    pub hooks: HookSet,
    /// One entry per element of `spec.members` when it is a list, in order (field paths use the
    /// index); empty otherwise.
    pub members: Vec<HookSet>,
}

/// The executors of one `hooks` block: (hook name, executor), in document order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HookSet(pub Vec<(&'static str, Executor)>);

impl HookSet {
    /// The executor of hook `name`; the last one when a name is repeated, as JSON readers do.
    fn get(&self, name: &str) -> Option<&Executor> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, e)| e)
    }
}

/// Every executor reference in an object's spec hooks, in document order of the kind's hook
/// names. Hooks without `executor` yield nothing.
pub fn executor_refs(kind: StashKind, spec: &SpecHooks) -> Vec<ExecutorRef<'_>> {
    // Sized once: growing a Vec reallocates, and reallocation takes the allocator's arena lock,
    // which two worker threads then contend for.
    let most = spec.hooks.0.len() + spec.members.iter().map(|m| m.0.len()).sum::<usize>();
    let mut refs = Vec::with_capacity(most);
    collect_hooks(kind, &spec.hooks, None, &mut refs);
    if kind.has_members() {
        for (i, member) in spec.members.iter().enumerate() {
            collect_hooks(kind, member, Some(i), &mut refs);
        }
    }
    refs
}

/// The executors of a spec's or a member's hooks. Paths are built only for the executors found:
/// most of a BackupBatch's members have none.
fn collect_hooks<'a>(
    kind: StashKind,
    hooks: &'a HookSet,
    member: Option<usize>,
    out: &mut Vec<ExecutorRef<'a>>,
) {
    for &hook_name in kind.hook_names() {
        if let Some(executor) = hooks.get(hook_name) {
            out.push(ExecutorRef {
                path: executor_path(member, hook_name),
                executor,
            });
        }
    }
}

/// `spec.hooks.NAME.executor` or `spec.members[I].hooks.NAME.executor`, in one allocation.
fn executor_path(member: Option<usize>, hook_name: &str) -> FieldPath {
    use std::fmt::Write;
    let mut path = String::with_capacity(48 + hook_name.len());
    match member {
        None => path.push_str("spec.hooks."),
        Some(i) => {
            // Writing to a String cannot fail.
            let _ = write!(path, "spec.members[{i}].hooks.");
        }
    }
    path.push_str(hook_name);
    path.push_str(".executor");
    FieldPath(path)
}

// Decoding, straight from the scanner over the review's body. Every shape is accepted: a shape
// other than the expected one is recorded (an executor or field of the wrong type, for the rules
// to report) or passed over (a `hooks`, hook or `members` that is not a map or list), never an
// error. Only JSON that is not JSON is refused. `depth` is how many containers of the spec the
// walk has entered, for the nesting limit of what it skips.

/// Accepts any value and keeps only its JSON type, as the rules name it.
struct TypeName;

impl<'de> Visitor<'de> for TypeName {
    type Value = &'static str;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<&'static str, E> {
        Ok("a boolean")
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<&'static str, E> {
        Ok("a number")
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<&'static str, E> {
        Ok("a number")
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<&'static str, E> {
        Ok("a number")
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<&'static str, E> {
        Ok("a string")
    }
    fn visit_unit<E: de::Error>(self) -> Result<&'static str, E> {
        Ok("null")
    }
    fn visit_none<E: de::Error>(self) -> Result<&'static str, E> {
        Ok("null")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<&'static str, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok("a list")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<&'static str, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok("a map")
    }
}

/// The JSON type of any value, read (and checked) as serde reads a value of that type.
struct TypeOf(&'static str);

impl<'de> Deserialize<'de> for TypeOf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TypeName).map(TypeOf)
    }
}

/// Reads the value at the scanner as a map with `member`, or, when it is not a map, only its
/// type, which is returned.
fn map_or_type<'a>(
    s: &mut Scanner<'a>,
    depth: u32,
    member: impl FnMut(&mut Scanner<'a>, Key<'a>) -> Result<(), DeError>,
) -> Result<Option<&'static str>, DeError> {
    if s.next_byte() == Some(b'{') {
        s.object(member)?;
        return Ok(None);
    }
    Ok(Some(s.deserialize_at::<TypeOf>(depth)?.0))
}

impl SpecHooks {
    /// Reads a spec given as JSON, as a review's spec is read, with the same errors.
    pub fn from_value(spec: &Value) -> Result<Self, DeError> {
        let text = spec.to_string();
        SpecHooks::read(&mut Scanner::new(text.as_bytes()))
    }

    /// Reads the spec at the scanner: its `hooks` and the `hooks` of each of its `members`.
    pub fn read(s: &mut Scanner<'_>) -> Result<Self, DeError> {
        let mut spec = SpecHooks::default();
        map_or_type(s, 0, |s, key| {
            match &*key.bytes() {
                b"hooks" => spec.hooks = HookSet::read(s, 1)?,
                b"members" => spec.members = read_members(s, 1)?,
                _ => s.skip_at(1)?,
            }
            Ok(())
        })?;
        Ok(spec)
    }
}

/// `members`: one [`HookSet`] per element when it is a list (an element that is not a map has
/// none, and keeps its place, so field paths stay right); none when it is not a list.
fn read_members(s: &mut Scanner<'_>, depth: u32) -> Result<Vec<HookSet>, DeError> {
    if s.next_byte() != Some(b'[') {
        s.deserialize_at::<TypeOf>(depth)?;
        return Ok(Vec::new());
    }
    let mut members = Vec::new();
    s.array(|s| {
        let mut hooks = HookSet::default();
        map_or_type(s, depth + 1, |s, key| {
            match &*key.bytes() {
                b"hooks" => hooks = HookSet::read(s, depth + 2)?,
                _ => s.skip_at(depth + 2)?,
            }
            Ok(())
        })?;
        members.push(hooks);
        Ok::<_, DeError>(())
    })?;
    Ok(members)
}

impl HookSet {
    /// A `hooks` block: each hook of some kind (which ones count for an object depends on its
    /// kind, known later) with its executor; any other key is passed over. Names are matched in
    /// place, so a hook costs no allocation for its name.
    fn read(s: &mut Scanner<'_>, depth: u32) -> Result<HookSet, DeError> {
        let mut set = Vec::new();
        map_or_type(s, depth, |s, key| {
            let key = key.bytes();
            let name = BACKUP_HOOKS
                .iter()
                .chain(RESTORE_HOOKS)
                .find(|name| name.as_bytes() == &*key)
                .copied();
            let Some(name) = name else {
                return Ok(s.skip_at(depth + 1)?);
            };
            if let Some(executor) = read_hook(s, depth + 1)? {
                set.push((name, executor));
            } else {
                // A later hook of the same name without an executor replaces an earlier one.
                set.retain(|(n, _)| *n != name);
            }
            Ok(())
        })?;
        Ok(HookSet(set))
    }
}

/// One hook, reduced to its executor: none when the hook is not a map, or has no executor or a
/// null one.
fn read_hook(s: &mut Scanner<'_>, depth: u32) -> Result<Option<Executor>, DeError> {
    let mut executor = None;
    map_or_type(s, depth, |s, key| {
        match &*key.bytes() {
            b"executor" => executor = read_executor(s, depth + 1)?,
            _ => s.skip_at(depth + 1)?,
        }
        Ok(())
    })?;
    Ok(executor)
}

/// `executor`: none when null.
fn read_executor(s: &mut Scanner<'_>, depth: u32) -> Result<Option<Executor>, DeError> {
    let mut function = FunctionName::Missing;
    let mut params = Params::Absent;
    let read = map_or_type(s, depth, |s, key| {
        match &*key.bytes() {
            b"functionName" => function = read_function_name(s, depth + 1)?,
            b"params" => params = read_params(s, depth + 1)?,
            _ => s.skip_at(depth + 1)?,
        }
        Ok(())
    })?;
    Ok(match read {
        None => Some(Executor::Ref { function, params }),
        Some("null") => None,
        Some(other) => Some(Executor::WrongType(other)),
    })
}

fn read_function_name(s: &mut Scanner<'_>, depth: u32) -> Result<FunctionName, DeError> {
    if s.next_byte() == Some(b'"') {
        return Ok(FunctionName::Named(s.deserialize_at::<String>(depth)?));
    }
    Ok(match s.deserialize_at::<TypeOf>(depth)?.0 {
        "null" => FunctionName::Missing,
        other => FunctionName::WrongType(other),
    })
}

/// `params`: only the keys are judged; sorted and each once, as a JSON map holds them.
fn read_params(s: &mut Scanner<'_>, depth: u32) -> Result<Params, DeError> {
    let mut keys: Vec<String> = Vec::new();
    let read = map_or_type(s, depth, |s, key| {
        keys.push(s.key_text(&key)?.into_owned());
        Ok(s.skip_at(depth + 1)?)
    })?;
    Ok(match read {
        None => {
            keys.sort_unstable();
            keys.dedup();
            Params::Keys(keys)
        }
        Some("null") => Params::Absent,
        Some(other) => Params::WrongType(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(kind: StashKind, obj: Value) -> Vec<String> {
        executor_refs(kind, &SpecHooks::from_value(&obj["spec"]).unwrap())
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

    /// Nesting counts from the spec, through the containers the walk reads, into what it skips:
    /// refused where a plain skip of the same spec is refused, at the same byte.
    #[test]
    fn nesting_is_limited_as_a_skip_of_the_spec_limits_it() {
        let (mut passed, mut refused) = (0, 0);
        for inner in 120..=130 {
            for (open, close) in [
                (r#"{"hooks": {"preBackup": {"exec": "#, "}}}"),
                (
                    r#"{"members": [{"hooks": {"postBackup": {"executor": {"params": {"a": "#,
                    "}}}}}]}",
                ),
            ] {
                let text = format!("{open}{}{}{close}", "[".repeat(inner), "]".repeat(inner));
                let read = SpecHooks::read(&mut Scanner::new(text.as_bytes()))
                    .map(drop)
                    .map_err(|e| e.to_string());
                let skipped = Scanner::new(text.as_bytes())
                    .skip()
                    .map_err(|e| e.to_string());
                assert_eq!(read, skipped, "{inner} in {open}");
                if read.is_ok() {
                    passed += 1;
                } else {
                    refused += 1;
                }
            }
        }
        assert!(
            passed > 0 && refused > 0,
            "{passed} passed, {refused} refused"
        );
    }

    #[test]
    fn repeated_keys_read_as_a_json_map_holds_them() {
        // Repeated keys cannot be written as a `Value`: read from the text.
        let text = r#"{"hooks": {"preBackup": {"executor": {"functionName": "first"}},
                          "preBackup": {"executor": {"functionName": "last", "params": {"b": 1, "a": 2, "b": 3}}},
                          "postBackup": {"executor": {"functionName": "gone"}},
                          "postBackup": {"exec": ["/bin/true"]}}}"#;
        let spec = SpecHooks::read(&mut Scanner::new(text.as_bytes())).unwrap();
        let refs = executor_refs(StashKind::BackupConfiguration, &spec);
        assert_eq!(refs.len(), 1);
        assert_eq!(
            *refs[0].executor,
            Executor::Ref {
                function: FunctionName::Named("last".into()),
                params: Params::Keys(vec!["a".into(), "b".into()])
            }
        );
    }

    #[test]
    fn reads_executor_fields_and_their_shapes() {
        let obj = json!({"spec": {"hooks": {
            "preBackup": {"executor": {"functionName": "fn", "params": {"a": "b", "c": "d"}}},
            "postBackup": {"executor": "fn"}
        }}});
        let spec = SpecHooks::from_value(&obj["spec"]).unwrap();
        let refs = executor_refs(StashKind::BackupConfiguration, &spec);
        assert_eq!(
            *refs[0].executor,
            Executor::Ref {
                function: FunctionName::Named("fn".into()),
                params: Params::Keys(vec!["a".into(), "c".into()])
            }
        );
        assert_eq!(*refs[1].executor, Executor::WrongType("a string"));

        let obj = json!({"spec": {"hooks": {"preBackup": {"executor": {"functionName": 3, "params": ["a"]}}}}});
        let spec = SpecHooks::from_value(&obj["spec"]).unwrap();
        let refs = executor_refs(StashKind::BackupConfiguration, &spec);
        assert_eq!(
            *refs[0].executor,
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
