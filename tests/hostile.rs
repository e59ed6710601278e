//! Hostile input, property-tested: arbitrary bytes, arbitrary JSON and arbitrary mutations of
//! recorded reviews never panic the decode-and-judge path, and always yield either a well-formed
//! AdmissionReview answering the request's uid, or a decode error (which the server sends as 400).

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};
use stash_webhook::admission::Validator;
use stash_webhook::functions::FileSource;
use stash_webhook::hooks::{json_type, Executor, FunctionName, HookSet, Params, SpecHooks};
use stash_webhook::metrics::Metrics;
use stash_webhook::review;
use stash_webhook::rules::FailurePolicy;
use stash_webhook::scan::Scanner;
use support::{fixture, FUNCTIONS};

fn validator() -> Validator {
    let source = FileSource::from_text(FUNCTIONS, Path::new("f.yaml"), Metrics::default()).unwrap();
    Validator::new(
        Arc::new(source),
        FailurePolicy::Deny,
        Duration::from_secs(1),
    )
}

/// Runs one body through the path the server runs, and checks the outcome is well-formed.
fn check(validator: &Validator, body: &[u8]) -> Result<(), TestCaseError> {
    // The scanner under `decode` is as strict as serde_json: what serde_json refuses as JSON,
    // decode refuses too; and so is a body that is not UTF-8, which serde_json lets through
    // where it only skips a string.
    let is_json =
        serde_json::from_slice::<IgnoredAny>(body).is_ok() && std::str::from_utf8(body).is_ok();
    prop_assert!(is_json || review::decode(body).is_err());
    match review::decode(body) {
        Err(err) => prop_assert!(!err.to_string().is_empty()),
        Ok((version, request)) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let outcome =
                runtime.block_on(validator.review(&request, Some(Duration::from_secs(5))));
            let encoded = review::encode(version, &request.uid, &outcome.reply).unwrap();
            let answer: Value = serde_json::from_slice(&encoded).unwrap();
            prop_assert_eq!(answer["kind"].as_str(), Some("AdmissionReview"));
            prop_assert_eq!(answer["apiVersion"].as_str(), Some(version.api_version()));
            prop_assert_eq!(
                answer["response"]["uid"].as_str(),
                Some(request.uid.as_str())
            );
            let allowed = answer["response"]["allowed"].as_bool();
            prop_assert!(allowed.is_some());
            if allowed == Some(false) {
                let message = answer["response"]["status"]["message"]
                    .as_str()
                    .unwrap_or_default();
                prop_assert!(!message.is_empty());
                for line in message.lines() {
                    prop_assert!(
                        line.starts_with("spec.") || line.contains(" has no object to judge"),
                        "{}",
                        line
                    );
                }
            }
        }
    }
    Ok(())
}

/// The hooks of `spec` as the README states the rules read them, from a `Value`: a reference for
/// the scanner's reader, written apart from it.
fn hooks_of(spec: &Value) -> SpecHooks {
    fn executor(hook: &Value) -> Option<Executor> {
        match hook.get("executor")? {
            Value::Null => None,
            Value::Object(fields) => Some(Executor::Ref {
                function: match fields.get("functionName") {
                    None | Some(Value::Null) => FunctionName::Missing,
                    Some(Value::String(name)) => FunctionName::Named(name.clone()),
                    Some(other) => FunctionName::WrongType(json_type(other)),
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
    fn hook_set(hooks: Option<&Value>) -> HookSet {
        let names = ["preBackup", "postBackup", "preRestore", "postRestore"];
        let Some(Value::Object(hooks)) = hooks else {
            return HookSet::default();
        };
        HookSet(
            hooks
                .iter()
                .filter_map(|(name, hook)| {
                    let name = names.into_iter().find(|n| n == name)?;
                    Some((name, executor(hook)?))
                })
                .collect(),
        )
    }
    let Value::Object(spec) = spec else {
        return SpecHooks::default();
    };
    SpecHooks {
        hooks: hook_set(spec.get("hooks")),
        members: match spec.get("members") {
            Some(Value::Array(members)) => {
                members.iter().map(|m| hook_set(m.get("hooks"))).collect()
            }
            _ => Vec::new(),
        },
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

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&validator(), &bytes)?;
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

    #[test]
    fn scanner_accepts_exactly_what_serde_json_accepts(bytes in syntax_mutated_review()) {
        let mut scanner = Scanner::new(&bytes);
        let scanned = scanner.skip().and_then(|()| scanner.end());
        let parsed = serde_json::from_slice::<IgnoredAny>(&bytes);
        prop_assert_eq!(scanned.is_ok(), parsed.is_ok(), "scanner {:?}, serde_json {:?}", scanned, parsed.err());
    }

    #[test]
    fn scanner_reads_values_as_serde_json_reads_them(value in arb_json(), pretty in any::<bool>()) {
        let text = if pretty {
            serde_json::to_vec_pretty(&value).unwrap()
        } else {
            serde_json::to_vec(&value).unwrap()
        };
        let mut scanner = Scanner::new(&text);
        // The value written, exactly: floats are parsed correctly rounded (std's parser), where
        // serde_json's default parser may be one bit off.
        prop_assert_eq!(scanner.deserialize::<Value>().ok(), Some(value.clone()));
        prop_assert_eq!(scanner.end(), Ok(()));
        // The hooks the rules see: the same read by the scanner from the text as read from the
        // value by `hooks_of`.
        let mut scanner = Scanner::new(&text);
        prop_assert_eq!(SpecHooks::read(&mut scanner).ok(), Some(hooks_of(&value)));
        prop_assert_eq!(scanner.end(), Ok(()));
    }

    #[test]
    fn scanner_reads_exactly_what_serde_json_reads(bytes in syntax_mutated_review()) {
        let mut scanner = Scanner::new(&bytes);
        let read = scanner
            .deserialize::<Value>()
            .map_err(|e| e.to_string())
            .and_then(|v| scanner.end().map(|()| v).map_err(|e| e.to_string()));
        let parsed = serde_json::from_slice::<Value>(&bytes);
        prop_assert_eq!(read.as_ref().ok(), parsed.as_ref().ok(), "scanner {:?}, serde_json {:?}", read.as_ref().err(), parsed.as_ref().err());
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
