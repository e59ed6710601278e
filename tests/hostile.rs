//! Hostile input, property-tested: arbitrary bytes, arbitrary JSON and arbitrary mutations of
//! recorded reviews never panic the decode-and-judge path; each yields either a well-formed
//! AdmissionReview answering the request's uid, or a decode error (which the server sends as 400).
//! Whatever decodes is read as serde_json reads the same text into a `Value`.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Map, Value};
use stash_webhook::functions::FileSource;
use stash_webhook::metrics::Metrics;
use stash_webhook::review;
use stash_webhook::rules::FailurePolicy;
use stash_webhook::stash::{
    json_type, Executor, Hooks, Member, Name, Params, SpecHooks, TaskParams, TaskRef,
};
use stash_webhook::validator::Validator;
use support::{fixture, FUNCTIONS};

fn validator() -> Validator {
    let source = FileSource::from_text(FUNCTIONS, Path::new("f.yaml"), Metrics::default()).unwrap();
    Validator::new(
        Arc::new(source),
        FailurePolicy::Deny,
        Duration::from_secs(1),
    )
}

/// How a refused body's 400 begins: each names what is wrong.
const REFUSALS: [&str; 5] = [
    "the body is not a valid AdmissionReview: ",
    "the body is empty: ",
    "the body is not a JSON object: ",
    "kind is ",
    "apiVersion ",
];

/// Runs one body through the path the server runs, and checks the outcome: a refusal that says
/// what is wrong, or an answer to the request that was read as serde_json reads it.
fn check(validator: &Validator, body: &[u8]) -> Result<(), TestCaseError> {
    let as_json = std::str::from_utf8(body)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(text).ok());
    let (version, request) = match review::decode(body) {
        Err(err) => {
            let text = err.to_string();
            prop_assert!(
                REFUSALS.iter().any(|r| text.starts_with(r))
                    || text == "the AdmissionReview has no request: the API server sends one in every call",
                "{}",
                text
            );
            // What is JSON is never refused as cut short.
            if let (Some(_), review::ReviewError::Json(err)) = (&as_json, &err) {
                prop_assert_ne!(err.classify(), serde_json::error::Category::Eof, "{}", text);
            }
            return Ok(());
        }
        Ok(decoded) => decoded,
    };
    // Decoded, so it is JSON, and was read as serde_json reads it.
    let Some(value) = as_json else {
        return Err(TestCaseError::fail("decoded a body serde_json refuses"));
    };
    prop_assert_eq!(Some(&*request.uid), value["request"]["uid"].as_str());
    prop_assert_eq!(
        &*request.kind.kind,
        value["request"]["kind"]["kind"]
            .as_str()
            .unwrap_or_default()
    );
    let spec_of = |object: &str| match value["request"].get(object) {
        None | Some(Value::Null) => None,
        Some(object) => Some(hooks_of(object.get("spec").unwrap_or(&Value::Null))),
    };
    prop_assert_eq!(
        request.object.as_ref().map(|o| o.spec.clone()),
        spec_of("object")
    );
    prop_assert_eq!(
        request.old_object.as_ref().map(|o| o.spec.clone()),
        spec_of("oldObject")
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime.block_on(validator.review(&request, Some(Duration::from_secs(5))));
    let reply = outcome.reply.clone();
    let encoded = review::encode(version, &request.uid, outcome.reply).unwrap();
    let answer: Value = serde_json::from_slice(&encoded).unwrap();
    prop_assert_eq!(answer["kind"].as_str(), Some("AdmissionReview"));
    prop_assert_eq!(answer["apiVersion"].as_str(), Some(version.api_version()));
    prop_assert_eq!(answer["response"]["uid"].as_str(), Some(&*request.uid));
    prop_assert_eq!(answer["response"]["allowed"].as_bool(), Some(reply.allowed));
    if !reply.allowed {
        let message = answer["response"]["status"]["message"]
            .as_str()
            .unwrap_or_default();
        prop_assert!(!message.is_empty());
        for line in message.lines() {
            prop_assert!(
                line.starts_with("spec.")
                    || line.starts_with("... and ")
                    || line.contains(" has no object to judge"),
                "{}",
                line
            );
        }
    }
    Ok(())
}

/// The hooks of `spec` as the README states the rules read them, from a `Value`: a reference for
/// the decoder, written apart from it.
fn hooks_of(spec: &Value) -> SpecHooks {
    fn executor(hook: &Value) -> Option<Executor> {
        match hook.get("executor")? {
            Value::Null => None,
            Value::Object(fields) => Some(Executor::Ref {
                function: match fields.get("functionName") {
                    None | Some(Value::Null) => Name::Missing,
                    Some(Value::String(name)) => Name::Named(name.clone()),
                    Some(other) => Name::WrongType(json_type(other)),
                },
                params: match fields.get("params") {
                    None | Some(Value::Null) => Params::Absent,
                    Some(Value::Object(params)) => {
                        let mut keys: Vec<String> = params.keys().cloned().collect();
                        keys.sort();
                        Params::Keys(keys)
                    }
                    Some(other) => Params::WrongType(json_type(other)),
                },
            }),
            other => Some(Executor::WrongType(json_type(other))),
        }
    }
    fn hooks(hooks: Option<&Value>) -> Hooks {
        let Some(Value::Object(hooks)) = hooks else {
            return Hooks::default();
        };
        let get = |name: &str| hooks.get(name).and_then(executor);
        Hooks {
            pre_backup: get("preBackup"),
            post_backup: get("postBackup"),
            pre_restore: get("preRestore"),
            post_restore: get("postRestore"),
        }
    }
    fn task(task: Option<&Value>) -> Option<TaskRef> {
        let Value::Object(task) = task? else {
            return None;
        };
        let name = match task.get("name")? {
            Value::String(name) if !name.is_empty() => Name::Named(name.clone()),
            Value::String(_) | Value::Null => return None,
            other => Name::WrongType(json_type(other)),
        };
        let params = match task.get("params") {
            None | Some(Value::Null) => TaskParams::Absent,
            Some(Value::Array(items)) => TaskParams::Names(
                items
                    .iter()
                    .map(|p| p.get("name").and_then(Value::as_str).map(str::to_owned))
                    .collect(),
            ),
            Some(other) => TaskParams::WrongType(json_type(other)),
        };
        Some(TaskRef { name, params })
    }
    let Value::Object(spec) = spec else {
        return SpecHooks::default();
    };
    SpecHooks {
        hooks: hooks(spec.get("hooks")),
        members: match spec.get("members") {
            Some(Value::Array(members)) => members
                .iter()
                .map(|m| Member {
                    hooks: hooks(m.get("hooks")),
                    task: task(m.get("task")),
                })
                .collect(),
            _ => Vec::new(),
        },
        task: task(spec.get("task")),
        image: spec.get("image").filter(|v| !v.is_null()).cloned(),
        steps: spec.get("steps").filter(|v| !v.is_null()).cloned(),
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("functionName"),
            Just("executor"),
            Just("hooks"),
            Just("params"),
            Just("preBackup"),
            Just("members"),
            Just("mysql-hook-executor"),
            Just("no-image-fn"),
            Just("")
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    // Deep enough for spec -> hooks -> hook -> executor -> params -> value.
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        "[a-zA-Z]{0,8}",
                        Just("functionName".to_owned()),
                        Just("executor".to_owned()),
                        Just("params".to_owned()),
                        Just("hooks".to_owned()),
                        Just("members".to_owned()),
                        Just("exec".to_owned()),
                        Just("preBackup".to_owned()),
                        Just("postBackup".to_owned()),
                        Just("preRestore".to_owned()),
                        Just("postRestore".to_owned())
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kvs| Value::Object(kvs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

#[derive(Debug, Clone)]
enum Edit {
    Replace(Value),
    Remove,
}

/// Walks `choices` down from `node` (each number picks a key or an index) and edits there.
fn mutate(node: &mut Value, choices: &[usize], edit: Edit) {
    let Some((&c, rest)) = choices.split_first() else {
        if let Edit::Replace(v) = edit {
            *node = v;
        }
        return;
    };
    match node {
        Value::Object(map) if !map.is_empty() => {
            let key = map.keys().nth(c % map.len()).cloned().unwrap_or_default();
            if rest.is_empty() && matches!(edit, Edit::Remove) {
                map.remove(&key);
            } else if let Some(child) = map.get_mut(&key) {
                mutate(child, rest, edit);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let i = c % items.len();
            if rest.is_empty() && matches!(edit, Edit::Remove) {
                items.remove(i);
            } else {
                mutate(&mut items[i], rest, edit);
            }
        }
        _ => {
            if let Edit::Replace(v) = edit {
                *node = v;
            }
        }
    }
}

/// The recorded review with a few bytes replaced by JSON's syntax characters (and bytes that are
/// not UTF-8), maybe cut short: mostly not JSON, in every way a byte can break it.
fn syntax_mutated_review() -> impl Strategy<Value = Vec<u8>> {
    let syntax = b"{}[]\",:\\ \t0123-.eE+tfnrlsu\x01\x7f\xc3\xffa".to_vec();
    (
        prop::collection::vec((any::<usize>(), prop::sample::select(syntax)), 0..6),
        any::<usize>(),
        any::<bool>(),
    )
        .prop_map(|(edits, cut, truncate)| {
            let mut bytes = fixture("backupconfiguration-create").into_bytes();
            for (at, byte) in edits {
                let i = at % bytes.len();
                bytes[i] = byte;
            }
            if truncate {
                bytes.truncate(cut % bytes.len());
            }
            bytes
        })
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![arb_json().prop_map(Edit::Replace), Just(Edit::Remove)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Arbitrary bytes, put where the decoder reads: in place of part of a recorded review.
    #[test]
    fn arbitrary_bytes_in_a_recorded_review_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        at in any::<usize>(),
        len in 0usize..32,
    ) {
        let mut body = fixture("backupconfiguration-create").into_bytes();
        let at = at % body.len();
        let end = (at + len).min(body.len());
        body.splice(at..end, bytes);
        check(&validator(), &body)?;
    }

    #[test]
    fn arbitrary_json_never_panics(value in arb_json()) {
        check(&validator(), &serde_json::to_vec(&value).unwrap())?;
    }

    #[test]
    fn arbitrary_requests_in_a_valid_envelope_never_panic(request in arb_json()) {
        let body = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request});
        check(&validator(), &serde_json::to_vec(&body).unwrap())?;
    }

    /// Any spec, in a valid request: decoded (and so compared by `check` with the reference
    /// reading), judged and answered.
    #[test]
    fn arbitrary_specs_are_read_as_serde_json_reads_them(spec in arb_json(), kind in 0usize..5, pretty in any::<bool>()) {
        let kind = ["BackupConfiguration", "RestoreSession", "BackupBatch", "RestoreBatch", "BackupBlueprint"][kind];
        let mut review: Value = serde_json::from_str(&fixture("backupconfiguration-update")).unwrap();
        review["request"]["kind"]["kind"] = kind.into();
        review["request"]["object"]["spec"] = spec;
        let body = if pretty { serde_json::to_vec_pretty(&review) } else { serde_json::to_vec(&review) }.unwrap();
        let (_, request) = review::decode(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(request.object.is_some());
        check(&validator(), &body)?;
    }

    #[test]
    fn mutated_recorded_reviews_never_panic(
        which in 0usize..4,
        edits in prop::collection::vec((prop::collection::vec(any::<usize>(), 1..10), arb_edit()), 1..6),
        in_spec in any::<bool>(),
    ) {
        let name = ["backupconfiguration-create", "backupconfiguration-update", "backupconfiguration-create-dryrun", "backupconfiguration-delete"][which];
        let mut review: Value = serde_json::from_str(&fixture(name)).unwrap();
        for (choices, edit) in edits {
            // Half the time, aim at the hooks, where the rules look.
            let target = if in_spec { review.pointer_mut("/request/object/spec/hooks/preBackup") } else { None };
            match target {
                Some(hooks) => mutate(hooks, &choices, edit),
                None => mutate(&mut review, &choices, edit),
            }
        }
        check(&validator(), &serde_json::to_vec(&review).unwrap())?;
    }

    /// Syntax broken in every way a byte can break it: refused exactly when serde_json refuses it
    /// (checked in `check`), never a panic.
    #[test]
    fn syntax_mutated_reviews_never_panic(bytes in syntax_mutated_review()) {
        check(&validator(), &bytes)?;
    }

    #[test]
    fn byte_flipped_recorded_reviews_never_panic(flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..16)) {
        let mut bytes = fixture("backupconfiguration-create").into_bytes();
        for (at, byte) in flips {
            let i = at % bytes.len();
            bytes[i] = byte;
        }
        check(&validator(), &bytes)?;
    }
}
