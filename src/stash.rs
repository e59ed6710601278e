//! The Stash kinds this webhook judges and where their references are (a table, [`KindInfo`],
//! beside KubeStash's), and every reference found in an object, with its field path: each hook's
//! executor (a Function) and the Task that runs the backup or restore (`spec.task`, or
//! `spec.members[i].task` of a batch).
//!
//! Decoding is deliberately tolerant: only `hooks.*.executor` and `task` are read. A hook, a `hooks` block or a
//! `members` list of an unexpected shape is skipped, never rejected, because the API evolves (the
//! design proposal itself writes `exec` as a plain list) and the CRD schema is the API server's job.

use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The API group whose kinds carry hooks.
pub const STASH_GROUP: &str = "stash.appscode.com";
/// The only served version of the hook-bearing kinds.
pub const STASH_VERSION: &str = "v1beta1";

/// A Stash kind this webhook judges, and where its references are: data, as KubeStash's kinds are
/// ([`crate::kubestash::KINDS`]). Its objects are read by the decoder below, which reads only
/// these places.
#[derive(Debug, PartialEq, Eq)]
pub struct KindInfo {
    pub kind: &'static str,
    pub plural: &'static str,
    /// The hooks, each at `spec.hooks.NAME.executor` (and `spec.members[*].hooks.NAME.executor`
    /// for a batch), naming a Function.
    pub hooks: &'static [&'static str],
    /// A batch: its Tasks and more hooks are in `spec.members[*]`, each with `task.name`; the
    /// other kinds name their Task at `spec.task.name`.
    pub members: bool,
    /// Its values are filled in per target later (a blueprint): a value holding `${` is not judged.
    pub template: bool,
}

const BACKUP_HOOKS: &[&str] = &["preBackup", "postBackup"];
const RESTORE_HOOKS: &[&str] = &["preRestore", "postRestore"];

/// Every Stash kind judged, in [`StashKind::ALL`]'s order (stashed/apimachinery
/// `apis/stash/v1beta1/*_types.go`: `Hooks`, `Members`, `Task`).
const KINDS: [KindInfo; 5] = [
    KindInfo {
        kind: "BackupConfiguration",
        plural: "backupconfigurations",
        hooks: BACKUP_HOOKS,
        members: false,
        template: false,
    },
    KindInfo {
        kind: "RestoreSession",
        plural: "restoresessions",
        hooks: RESTORE_HOOKS,
        members: false,
        template: false,
    },
    KindInfo {
        kind: "BackupBatch",
        plural: "backupbatches",
        hooks: BACKUP_HOOKS,
        members: true,
        template: false,
    },
    KindInfo {
        kind: "RestoreBatch",
        plural: "restorebatches",
        hooks: RESTORE_HOOKS,
        members: true,
        template: false,
    },
    KindInfo {
        kind: "BackupBlueprint",
        plural: "backupblueprints",
        hooks: BACKUP_HOOKS,
        members: false,
        template: true,
    },
];

/// A Stash kind whose objects carry hooks, and so are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

    /// Where its references are.
    pub fn info(self) -> &'static KindInfo {
        &KINDS[self as usize]
    }

    pub fn as_str(self) -> &'static str {
        self.info().kind
    }

    /// The plural resource name, as webhook rules, RBAC and API paths name it.
    pub fn plural(self) -> &'static str {
        self.info().plural
    }

    fn hook_names(self) -> &'static [&'static str] {
        self.info().hooks
    }

    fn has_members(self) -> bool {
        self.info().members
    }

    /// Whether the kind names its Task in `spec.task` (a batch names one per member instead).
    fn has_task(self) -> bool {
        !self.has_members()
    }

    /// Whether the kind's values are templates, filled in per target before they are used: a
    /// BackupBlueprint's `${TARGET_...}` become a BackupConfiguration's values.
    pub fn is_template(self) -> bool {
        self.info().template
    }
}

impl fmt::Display for StashKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A field path in the notation the API server uses in its own errors
/// (`spec.members[1].hooks.postBackup.executor.functionName`, map keys as `params[key]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    /// The field `name` of this one; of none (the object itself) when this one is empty.
    pub fn child(&self, name: &str) -> Self {
        let mut path = String::with_capacity(self.0.len() + 1 + name.len());
        path.push_str(&self.0);
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(name);
        FieldPath(path)
    }

    /// The element `i` of a list (`tasks[2]`).
    pub fn index(&self, i: usize) -> Self {
        FieldPath(format!("{}[{i}]", self.0))
    }

    pub fn key(&self, key: &str) -> Self {
        FieldPath(format!("{}[{}]", self.0, key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for FieldPath {
    fn from(path: &str) -> Self {
        FieldPath(path.to_owned())
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

/// A name as written (an executor's `functionName`, a KubeStash `addon.name`): a string, missing,
/// or a value of another JSON type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Name {
    Named(String),
    Missing,
    /// Present but not a string; carries the JSON type found.
    WrongType(&'static str),
}

impl Name {
    pub fn of(value: Option<&Value>) -> Self {
        match value {
            None | Some(Value::Null) => Name::Missing,
            Some(Value::String(s)) => Name::Named(s.clone()),
            Some(other) => Name::WrongType(json_type(other)),
        }
    }

    /// The name, when one is written and not empty.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Name::Named(name) if !name.is_empty() => Some(name),
            _ => None,
        }
    }
}

/// `params` as a map (an executor's, a KubeStash task's or hook's): only the keys are judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Params {
    Absent,
    Keys(Vec<String>),
    /// Present but not a map; carries the JSON type found.
    WrongType(&'static str),
}

impl Params {
    pub fn of(value: Option<&Value>) -> Self {
        match value {
            None | Some(Value::Null) => Params::Absent,
            Some(Value::Object(map)) => Params::Keys(map.keys().cloned().collect()),
            Some(other) => Params::WrongType(json_type(other)),
        }
    }

    /// The keys given; none when absent or not a map.
    pub fn keys(&self) -> &[String] {
        match self {
            Params::Keys(keys) => keys,
            Params::Absent | Params::WrongType(_) => &[],
        }
    }
}

/// The executor of one hook, as written in the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executor {
    Ref {
        function: Name,
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
            Executor::Ref { function, .. } => function.as_str(),
            Executor::WrongType(_) => None,
        }
    }
}

/// What the rules read of a spec: of `spec.hooks` and of each `spec.members[i].hooks`, each
/// hook's executor, `spec.task` and each `spec.members[i].task` (the hook kinds), and
/// `spec.image` (a Function). Which of them count depends on the kind, known only once the whole
/// review is read, so all are kept here and picked by [`executor_refs`] and [`task_refs`].
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct SpecHooks {
    #[serde(default, deserialize_with = "map_or_default")]
    pub hooks: Hooks,
    /// One entry per element of `spec.members` when it is a list, in order (field paths use the
    /// index); empty otherwise.
    #[serde(default, deserialize_with = "members")]
    pub members: Vec<Member>,
    /// `spec.task`, when it is a map with a `name`.
    #[serde(default, deserialize_with = "task_ref")]
    pub task: Option<TaskRef>,
    /// A Function's `spec.image`, as JSON: judged by [`crate::rules::Container::from_image`].
    #[serde(default)]
    pub image: Option<Value>,
    /// A Task's `spec.steps`, as JSON: read by [`crate::rules::tasks::Task::from_steps`].
    #[serde(default)]
    pub steps: Option<Value>,
}

/// The executors of one `hooks` block; a hook without one is `None`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hooks {
    #[serde(default, deserialize_with = "hook_executor")]
    pub pre_backup: Option<Executor>,
    #[serde(default, deserialize_with = "hook_executor")]
    pub post_backup: Option<Executor>,
    #[serde(default, deserialize_with = "hook_executor")]
    pub pre_restore: Option<Executor>,
    #[serde(default, deserialize_with = "hook_executor")]
    pub post_restore: Option<Executor>,
}

impl Hooks {
    /// The executor of the hook named `name`, as the API names it (`preBackup`, ...).
    pub fn get(&self, name: &str) -> Option<&Executor> {
        match name {
            "preBackup" => self.pre_backup.as_ref(),
            "postBackup" => self.post_backup.as_ref(),
            "preRestore" => self.pre_restore.as_ref(),
            "postRestore" => self.post_restore.as_ref(),
            _ => None,
        }
    }
}

/// Every executor reference in an object's spec hooks, in document order of the kind's hook
/// names. Hooks without `executor` yield nothing.
pub fn executor_refs(kind: StashKind, spec: &SpecHooks) -> Vec<ExecutorRef<'_>> {
    let mut refs = Vec::new();
    collect_hooks(kind, &spec.hooks, None, &mut refs);
    if kind.has_members() {
        for (i, member) in spec.members.iter().enumerate() {
            collect_hooks(kind, &member.hooks, Some(i), &mut refs);
        }
    }
    refs
}

/// What an object says of the Task that runs its backup or restore.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskRef {
    /// Never missing nor empty: such a `task` is not a reference.
    pub name: Name,
    pub params: TaskParams,
}

/// `task.params`: a list of `{name, value}`, of which the names are judged, in order (an entry
/// without a string name keeps its place, as `None`, so field paths stay right).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TaskParams {
    Absent,
    Names(Vec<Option<String>>),
    /// Present but not a list; carries the JSON type found.
    WrongType(&'static str),
}

impl TaskParams {
    /// The parameter names given, each with its index in the list.
    pub fn names(&self) -> impl Iterator<Item = (usize, &str)> {
        let names: &[Option<String>] = match self {
            TaskParams::Names(names) => names,
            _ => &[],
        };
        names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((i, n.as_deref()?)))
    }
}

/// One Task reference, borrowed from the decoded spec, and where it is (`path` points at the
/// `task` field: `spec.task`, `spec.members[2].task`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskUse<'a> {
    pub path: FieldPath,
    pub task: &'a TaskRef,
}

impl<'a> TaskUse<'a> {
    /// The Task this reference names.
    pub fn task_name(&self) -> Option<&'a str> {
        self.task.name.as_str()
    }
}

/// Every Task an object names, in document order. A `task` without a name, or with an empty one,
/// is not a reference: Stash picks the Task itself there (from the target's addon).
pub fn task_refs(kind: StashKind, spec: &SpecHooks) -> Vec<TaskUse<'_>> {
    let mut uses = Vec::new();
    if kind.has_task() {
        if let Some(task) = &spec.task {
            uses.push(TaskUse {
                path: FieldPath::from("spec.task"),
                task,
            });
        }
    } else {
        for (i, member) in spec.members.iter().enumerate() {
            if let Some(task) = &member.task {
                uses.push(TaskUse {
                    path: FieldPath(format!("spec.members[{i}].task")),
                    task,
                });
            }
        }
    }
    uses
}

fn collect_hooks<'a>(
    kind: StashKind,
    hooks: &'a Hooks,
    member: Option<usize>,
    out: &mut Vec<ExecutorRef<'a>>,
) {
    for &hook_name in kind.hook_names() {
        if let Some(executor) = hooks.get(hook_name) {
            let path = match member {
                None => format!("spec.hooks.{hook_name}.executor"),
                Some(i) => format!("spec.members[{i}].hooks.{hook_name}.executor"),
            };
            out.push(ExecutorRef {
                path: FieldPath(path),
                executor,
            });
        }
    }
}

// Decoding: serde derive structs over serde_json, reading of the spec only `hooks`, the `hooks` of
// each of `members`, and of each hook only `executor`; serde skips everything else without building
// it. Every shape is accepted: an `executor` of the wrong shape is recorded for the rules to
// report, a `hooks`, hook or `members` of the wrong shape is passed over. Only text that is not JSON
// (or a field given twice in one map, which serde refuses) fails the decode.

/// A value read as `T` when it has the shape `T` is read from, else nothing: the CRD schema, not
/// this webhook, decides which shapes the API server stores.
struct Lenient<T>(Option<T>);

/// Which JSON container a decoded type is read from.
trait Shape {
    const LIST: bool;
}

impl<T> Shape for Vec<T> {
    const LIST: bool = true;
}

impl<'de, T: Deserialize<'de> + Shape> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LenientVisitor(std::marker::PhantomData))
    }
}

struct LenientVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de> + Shape> Visitor<'de> for LenientVisitor<T> {
    type Value = Lenient<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Lenient<T>, A::Error> {
        if T::LIST {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(Lenient(None));
        }
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|t| Lenient(Some(t)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Lenient<T>, A::Error> {
        if !T::LIST {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Lenient(None));
        }
        T::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(|t| Lenient(Some(t)))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Lenient<T>, E> {
        Ok(Lenient(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Lenient<T>, E> {
        Ok(Lenient(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Lenient<T>, E> {
        Ok(Lenient(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Lenient<T>, E> {
        Ok(Lenient(None))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Lenient<T>, E> {
        Ok(Lenient(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Lenient<T>, E> {
        Ok(Lenient(None))
    }
}

/// A map-shaped field, or its default when it is missing or of another shape.
fn map_or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Shape + Default,
{
    Ok(Lenient::<T>::deserialize(d)?.0.unwrap_or_default())
}

/// An object's `spec`: its hooks, or none when it is missing or not a map.
pub fn spec_hooks<'de, D: Deserializer<'de>>(d: D) -> Result<SpecHooks, D::Error> {
    map_or_default(d)
}

impl Shape for SpecHooks {
    const LIST: bool = false;
}

impl Shape for Hooks {
    const LIST: bool = false;
}

/// One hook, of which only the executor is read.
#[derive(Default, Deserialize)]
struct Hook {
    #[serde(default)]
    executor: Option<Executor>,
}

impl Shape for Hook {
    const LIST: bool = false;
}

/// `hooks.<name>`: its executor, none when the hook is not a map or has no (or a null) executor.
fn hook_executor<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Executor>, D::Error> {
    let hook: Hook = map_or_default(d)?;
    Ok(hook.executor)
}

/// One element of `members`, of which only the hooks and the task are read.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct Member {
    #[serde(default, deserialize_with = "map_or_default")]
    pub hooks: Hooks,
    #[serde(default, deserialize_with = "task_ref")]
    pub task: Option<TaskRef>,
}

impl Shape for Member {
    const LIST: bool = false;
}

/// `members`: one [`Member`] per element when it is a list (an element that is not a map has
/// nothing, and keeps its place, so field paths stay right); none when it is not a list.
fn members<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Member>, D::Error> {
    let members: Vec<Lenient<Member>> = map_or_default(d)?;
    Ok(members
        .into_iter()
        .map(|m| m.0.unwrap_or_default())
        .collect())
}

/// `task`: its reference when it is a map whose `name` is set and not empty; else none.
fn task_ref<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TaskRef>, D::Error> {
    d.deserialize_any(TaskVisitor)
}

// An executor and a task reference are read field by field, without building a `Value` of them:
// the fields read are kept, the others read through and dropped. A field given twice counts as
// given last, and an executor's `params` keys come sorted, each once, as in a `Value`'s map. What
// is dropped is still read by `deserialize_any`, under serde_json's nesting limit, so a value too
// deep for a `Value` is refused here as it was there.

/// The visit methods of a visitor for a boolean, a number, null and a list: each gives
/// `Self::other` of the JSON type, a list read through and dropped.
macro_rules! visit_other_values {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Self::other("a boolean"))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Self::other("a number"))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Self::other("a number"))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Self::other("a number"))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Self::other("null"))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<Dropped>()?.is_some() {}
            Ok(Self::other("a list"))
        }
    };
}

/// A value read through and dropped.
struct Dropped;

impl<'de> Deserialize<'de> for Dropped {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DroppedVisitor)
    }
}

struct DroppedVisitor;

impl DroppedVisitor {
    fn other(_: &'static str) -> Dropped {
        Dropped
    }
}

impl<'de> Visitor<'de> for DroppedVisitor {
    type Value = Dropped;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    visit_other_values!();
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Dropped, E> {
        Ok(Dropped)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Dropped, A::Error> {
        while map.next_entry::<Dropped, Dropped>()?.is_some() {}
        Ok(Dropped)
    }
}

/// A field read as a string: the string, null, or the JSON type of another value.
enum Text {
    String(String),
    Null,
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl TextVisitor {
    fn other(found: &'static str) -> Text {
        match found {
            "null" => Text::Null,
            found => Text::Other(found),
        }
    }
}

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    visit_other_values!();
    fn visit_str<E: de::Error>(self, text: &str) -> Result<Text, E> {
        Ok(Text::String(text.to_owned()))
    }
    fn visit_string<E: de::Error>(self, text: String) -> Result<Text, E> {
        Ok(Text::String(text))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Text, A::Error> {
        while map.next_entry::<Dropped, Dropped>()?.is_some() {}
        Ok(Text::Other("a map"))
    }
}

/// The key of a field of an executor, a task or a task parameter.
enum Key {
    FunctionName,
    Name,
    Params,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "functionName" => Key::FunctionName,
                    "name" => Key::Name,
                    "params" => Key::Params,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Executor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ExecutorVisitor)
    }
}

struct ExecutorVisitor;

impl ExecutorVisitor {
    fn other(found: &'static str) -> Executor {
        Executor::WrongType(found)
    }
}

impl<'de> Visitor<'de> for ExecutorVisitor {
    type Value = Executor;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an executor")
    }
    visit_other_values!();
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Executor, E> {
        Ok(Executor::WrongType("a string"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Executor, A::Error> {
        let (mut function, mut params) = (Name::Missing, Params::Absent);
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::FunctionName => {
                    function = match map.next_value::<Text>()? {
                        Text::String(name) => Name::Named(name),
                        Text::Null => Name::Missing,
                        Text::Other(found) => Name::WrongType(found),
                    }
                }
                Key::Params => params = map.next_value::<ParamsField>()?.0,
                Key::Name | Key::Other => {
                    map.next_value::<Dropped>()?;
                }
            }
        }
        Ok(Executor::Ref { function, params })
    }
}

/// An executor's `params`: the keys of a map, sorted and each once.
struct ParamsField(Params);

impl<'de> Deserialize<'de> for ParamsField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ParamsVisitor)
    }
}

struct ParamsVisitor;

impl ParamsVisitor {
    fn other(found: &'static str) -> ParamsField {
        ParamsField(match found {
            "null" => Params::Absent,
            found => Params::WrongType(found),
        })
    }
}

impl<'de> Visitor<'de> for ParamsVisitor {
    type Value = ParamsField;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of parameters")
    }
    visit_other_values!();
    fn visit_str<E: de::Error>(self, _: &str) -> Result<ParamsField, E> {
        Ok(Self::other("a string"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ParamsField, A::Error> {
        let mut keys = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value::<Dropped>()?;
            keys.push(key);
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(ParamsField(Params::Keys(keys)))
    }
}

struct TaskVisitor;

impl TaskVisitor {
    fn other(_: &'static str) -> Option<TaskRef> {
        None
    }
}

impl<'de> Visitor<'de> for TaskVisitor {
    type Value = Option<TaskRef>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a task reference")
    }
    visit_other_values!();
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<TaskRef>, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<TaskRef>, A::Error> {
        let (mut name, mut params) = (None, TaskParams::Absent);
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Name => name = Some(map.next_value::<Text>()?),
                Key::Params => params = map.next_value::<TaskParamsField>()?.0,
                Key::FunctionName | Key::Other => {
                    map.next_value::<Dropped>()?;
                }
            }
        }
        let name = match name {
            None | Some(Text::Null) => return Ok(None),
            Some(Text::String(name)) if name.is_empty() => return Ok(None),
            Some(Text::String(name)) => Name::Named(name),
            Some(Text::Other(found)) => Name::WrongType(found),
        };
        Ok(Some(TaskRef { name, params }))
    }
}

/// `task.params`: the `name` of each entry that is a map with a string `name`, in order.
struct TaskParamsField(TaskParams);

impl<'de> Deserialize<'de> for TaskParamsField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TaskParamsVisitor)
    }
}

struct TaskParamsVisitor;

impl TaskParamsVisitor {
    fn other(found: &'static str) -> TaskParamsField {
        TaskParamsField(match found {
            "null" => TaskParams::Absent,
            found => TaskParams::WrongType(found),
        })
    }
}

impl<'de> Visitor<'de> for TaskParamsVisitor {
    type Value = TaskParamsField;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of parameters")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<TaskParamsField, E> {
        Ok(Self::other("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<TaskParamsField, E> {
        Ok(Self::other("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<TaskParamsField, E> {
        Ok(Self::other("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<TaskParamsField, E> {
        Ok(Self::other("a number"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<TaskParamsField, E> {
        Ok(Self::other("null"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<TaskParamsField, E> {
        Ok(Self::other("a string"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TaskParamsField, A::Error> {
        while map.next_entry::<Dropped, Dropped>()?.is_some() {}
        Ok(Self::other("a map"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TaskParamsField, A::Error> {
        let mut names = Vec::new();
        while let Some(ParamName(name)) = seq.next_element()? {
            names.push(name);
        }
        Ok(TaskParamsField(TaskParams::Names(names)))
    }
}

/// One entry of `task.params`: its `name` when it is a map with a string `name`.
struct ParamName(Option<String>);

impl<'de> Deserialize<'de> for ParamName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ParamNameVisitor)
    }
}

struct ParamNameVisitor;

impl ParamNameVisitor {
    fn other(_: &'static str) -> ParamName {
        ParamName(None)
    }
}

impl<'de> Visitor<'de> for ParamNameVisitor {
    type Value = ParamName;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a parameter")
    }
    visit_other_values!();
    fn visit_str<E: de::Error>(self, _: &str) -> Result<ParamName, E> {
        Ok(ParamName(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ParamName, A::Error> {
        let mut name = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Name => {
                    name = match map.next_value::<Text>()? {
                        Text::String(name) => Some(name),
                        Text::Null | Text::Other(_) => None,
                    }
                }
                Key::FunctionName | Key::Params | Key::Other => {
                    map.next_value::<Dropped>()?;
                }
            }
        }
        Ok(ParamName(name))
    }
}

impl SpecHooks {
    /// Reads a spec given as JSON, as a review's spec is read.
    pub fn from_value(spec: &Value) -> Result<Self, serde_json::Error> {
        map_or_default(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_reads_its_own_row_of_the_table() {
        for kind in StashKind::ALL {
            assert_eq!(kind.as_str(), format!("{kind:?}"));
            assert_eq!(
                kind.plural(),
                format!("{kind:?}")
                    .to_lowercase()
                    .replace("batch", "batche")
                    + "s"
            );
        }
    }
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

    /// Duplicate keys behave as serde_json's readers make them: a field of a struct given twice is
    /// refused (a spec, a hooks block, a hook), a map keeps the last value (an executor, params).
    #[test]
    fn duplicate_keys_behave_as_serde_json_reads_them() {
        let read = |text: &str| serde_json::from_str::<SpecHooks>(text).map_err(|e| e.to_string());
        assert_eq!(
            read(r#"{"hooks": {"preBackup": {}, "preBackup": {}}}"#).unwrap_err(),
            "duplicate field `preBackup` at line 1 column 39"
        );
        assert_eq!(
            read(r#"{"hooks": {}, "hooks": {}}"#).unwrap_err(),
            "duplicate field `hooks` at line 1 column 21"
        );
        assert_eq!(
            read(r#"{"hooks": {"preBackup": {"executor": null, "executor": {}}}}"#).unwrap_err(),
            "duplicate field `executor` at line 1 column 53"
        );
        let spec = read(
            r#"{"hooks": {"preBackup": {"executor": {"functionName": "first", "functionName": "last",
                                                  "params": {"b": 1, "a": 2, "b": 3}}}}}"#,
        )
        .unwrap();
        assert_eq!(
            spec.hooks.pre_backup,
            Some(Executor::Ref {
                function: Name::Named("last".into()),
                params: Params::Keys(vec!["a".into(), "b".into()])
            })
        );
    }

    /// Deep nesting never overflows the stack: what is skipped, serde_json skips without
    /// recursing; what is read (an executor) is refused past serde_json's recursion limit.
    #[test]
    fn deep_nesting_is_skipped_or_refused() {
        let nested = |open: &str, close: &str| {
            format!("{open}{}{}{close}", "[".repeat(10_000), "]".repeat(10_000))
        };
        let skipped = nested(r#"{"hooks": {"preBackup": {"exec": "#, "}}}");
        assert_eq!(
            serde_json::from_str::<SpecHooks>(&skipped).unwrap(),
            SpecHooks::default()
        );
        let read = nested(
            r#"{"hooks": {"preBackup": {"executor": {"params": "#,
            "}}}}",
        );
        let err = serde_json::from_str::<SpecHooks>(&read).unwrap_err();
        assert!(
            err.to_string().starts_with("recursion limit exceeded"),
            "{err}"
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
                function: Name::Named("fn".into()),
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
                function: Name::WrongType("a number"),
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
