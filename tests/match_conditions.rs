//! The webhook's `matchConditions`: the API server calls the webhook only for an object with at
//! least one hook `executor`. The CEL expressions are taken exactly as rendered by
//! `kubectl kustomize` and evaluated with `cel-interpreter` against every shape an object can
//! have. A condition that errors makes the API server apply `failurePolicy: Fail` (the write is
//! rejected), so here an error fails the test, it never counts as `false`.
//!
//! `cel-interpreter` is not cel-go, the CEL of the API server; the expressions use only what the
//! two agree on, and the test environment adds what `cel-interpreter` lacks (see `context`).

mod support;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;

use cel_interpreter::{Context, Program, ResolveResult, Value as Cel};
use serde::Deserialize;
use serde_json::{json, Value};
use stash_webhook::stash::{
    executor_refs, task_refs, SpecHooks, StashKind, STASH_GROUP, STASH_VERSION,
};
use support::kustomize::{kustomize, overlay_with};

const NAME: &str = "stash-webhook";
const WEBHOOK_NAME: &str = "validate.stash-webhook.stash.appscode.com";
const KUBESTASH_WEBHOOK_NAME: &str = "validate-kubestash.stash-webhook.stash.appscode.com";
/// The webhooks with matchConditions.
const CONDITIONAL_WEBHOOKS: [&str; 2] = [WEBHOOK_NAME, KUBESTASH_WEBHOOK_NAME];
const HOOK_NAMES: [&str; 4] = ["preBackup", "postBackup", "preRestore", "postRestore"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cert_manager_overlay() -> Vec<Value> {
    kustomize(&repo().join("manifests/overlays/cert-manager"))
}

/// The Stash validating webhook of the ValidatingWebhookConfiguration.
fn webhook(docs: &[Value]) -> &Value {
    webhook_named(docs, WEBHOOK_NAME)
}

/// The webhook named `name` of the ValidatingWebhookConfiguration.
fn webhook_named<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    let configs: Vec<_> = docs
        .iter()
        .filter(|d| d["kind"] == "ValidatingWebhookConfiguration" && d["metadata"]["name"] == NAME)
        .collect();
    assert_eq!(
        configs.len(),
        1,
        "one ValidatingWebhookConfiguration {NAME}: {configs:?}"
    );
    let webhooks = configs[0]["webhooks"].as_array().expect("webhooks");
    webhooks
        .iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("no webhook {name}: {webhooks:?}"))
}

/// A named condition, compiled.
struct Condition {
    name: String,
    program: Program,
}

/// The webhook's matchConditions, exactly as rendered.
fn conditions(webhook: &Value) -> Vec<Condition> {
    let conditions = webhook["matchConditions"]
        .as_array()
        .unwrap_or_else(|| panic!("the webhook has matchConditions: {webhook}"));
    assert!(
        (1..=3).contains(&conditions.len()),
        "one to three conditions: {conditions:?}"
    );
    conditions
        .iter()
        .map(|c| {
            let name = c["name"]
                .as_str()
                .expect("a condition has a name")
                .to_owned();
            let expression = c["expression"]
                .as_str()
                .expect("a condition has an expression");
            let program = Program::compile(expression)
                .unwrap_or_else(|e| panic!("condition {name} does not parse: {e}\n{expression}"));
            Condition { name, program }
        })
        .collect()
}

/// The type names of the values a JSON object holds. cel-go resolves these identifiers to type
/// values, compared with `type(x) == map`. `cel-interpreter` has neither `type()` nor type
/// values, so the test adds both: a type is a string no JSON value can be compared equal to by
/// accident, and `type()` returns the name cel-go would give a value read from JSON (integers
/// are `int`: Kubernetes reads unstructured numbers as int64 or float64).
const TYPE_NAMES: [&str; 8] = [
    "map",
    "list",
    "string",
    "int",
    "uint",
    "double",
    "bool",
    "null_type",
];

fn type_value(name: &str) -> Cel {
    Cel::String(Arc::new(format!("<CEL type {name}>")))
}

fn cel_type(value: Cel) -> ResolveResult {
    Ok(type_value(match value {
        Cel::Map(_) => "map",
        Cel::List(_) => "list",
        Cel::String(_) => "string",
        Cel::Int(_) => "int",
        Cel::UInt(_) => "uint",
        Cel::Float(_) => "double",
        Cel::Bool(_) => "bool",
        Cel::Null => "null_type",
        other => panic!("type() of a value JSON does not have: {other:?}"),
    }))
}

/// A JSON value as the API server hands it to CEL: objects as maps, arrays as lists, integers
/// as int.
fn cel(value: &Value) -> Cel {
    match value {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Cel::Int(i),
            None => Cel::Float(n.as_f64().expect("a JSON number")),
        },
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(items) => Cel::List(Arc::new(items.iter().map(cel).collect())),
        Value::Object(fields) => Cel::from(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), cel(v)))
                .collect::<HashMap<String, Cel>>(),
        ),
    }
}

/// The variables of a webhook's matchConditions (`object`, `oldObject`, `request`; `authorizer`
/// cannot be modelled here, so an expression using it fails with an undeclared reference).
fn context(object: &Value, old_object: &Value, request: &Value) -> Context<'static> {
    let mut ctx = Context::default();
    ctx.add_function("type", cel_type);
    for name in TYPE_NAMES {
        ctx.add_variable_from_value(name, type_value(name));
    }
    ctx.add_variable_from_value("object", cel(object));
    ctx.add_variable_from_value("oldObject", cel(old_object));
    ctx.add_variable_from_value("request", cel(request));
    ctx
}

/// Whether the API server would call the webhook: all conditions true. An error, a panic of the
/// interpreter or a non-bool result is returned as `Err`, never as `false`.
fn evaluate(
    conditions: &[Condition],
    object: &Value,
    old_object: &Value,
    request: &Value,
) -> Result<bool, String> {
    let ctx = context(object, old_object, request);
    let mut all = true;
    for condition in conditions {
        let result = catch_unwind(AssertUnwindSafe(|| condition.program.execute(&ctx)));
        match result {
            Ok(Ok(Cel::Bool(b))) => all &= b,
            Ok(Ok(other)) => return Err(format!("{}: not a bool: {other:?}", condition.name)),
            Ok(Err(e)) => return Err(format!("{}: evaluation error: {e}", condition.name)),
            Err(_) => return Err(format!("{}: the interpreter panicked", condition.name)),
        }
    }
    Ok(all)
}

fn create_request(object: &Value) -> Value {
    json!({"operation": "CREATE", "object": object, "oldObject": null})
}

/// A Stash object of `kind` with `spec`.
fn of_kind(kind: &str, spec: Value) -> Value {
    object("stash.appscode.com/v1beta1", kind, spec)
}

fn object(api_version: &str, kind: &str, spec: Value) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "sample", "namespace": "demo"},
        "spec": spec,
    })
}

fn hook_with_executor() -> Value {
    json!({
        "exec": {"command": ["/bin/sh", "-c", "echo hi"]},
        "executor": {"functionName": "mysql-hook-executor", "params": {"a": "b"}},
    })
}

fn hook_without_executor() -> Value {
    json!({"exec": {"command": ["/bin/sh", "-c", "echo hi"]}})
}

/// Every shape of object, with whether the webhook must be called for it.
fn table() -> Vec<(String, Value, bool)> {
    let mut rows: Vec<(String, Value, bool)> = Vec::new();
    let mut row = |name: String, object: Value, expected: bool| rows.push((name, object, expected));
    let batch = |kind: &str| kind == "BackupBatch" || kind == "RestoreBatch";

    // Every hook location of every kind, under each of the four hook names.
    for kind in StashKind::ALL.map(StashKind::as_str) {
        for hook in HOOK_NAMES {
            row(
                format!("{kind} spec.hooks.{hook}.executor"),
                of_kind(kind, json!({"hooks": {hook: hook_with_executor()}})),
                true,
            );
            row(
                format!("{kind} spec.hooks.{hook} without executor"),
                of_kind(kind, json!({"hooks": {hook: hook_without_executor()}})),
                false,
            );
            if batch(kind) {
                row(
                    format!("{kind} spec.members[0].hooks.{hook}.executor"),
                    of_kind(
                        kind,
                        json!({"members": [{"target": {}, "hooks": {hook: hook_with_executor()}}]}),
                    ),
                    true,
                );
                row(
                    format!("{kind} spec.members[0].hooks.{hook} without executor"),
                    of_kind(
                        kind,
                        json!({"members": [{"hooks": {hook: hook_without_executor()}}]}),
                    ),
                    false,
                );
            }
        }
        let task = |task: Value| {
            if batch(kind) {
                json!({"members": [{"target": {}}, {"task": task}]})
            } else {
                json!({"task": task})
            }
        };
        let at = if batch(kind) {
            "spec.members[1].task"
        } else {
            "spec.task"
        };
        for (what, value, sent) in [
            ("a name", json!({"name": "pg-backup"}), true),
            ("a name of another type", json!({"name": 7}), true),
            ("an empty name", json!({"name": ""}), false),
            ("a null name", json!({"name": null}), false),
            (
                "no name",
                json!({"params": [{"name": "a", "value": "b"}]}),
                false,
            ),
            ("a list", json!(["pg-backup"]), false),
            ("a string", json!("pg-backup"), false),
        ] {
            row(
                format!("{kind} {at} with {what}"),
                of_kind(kind, task(value)),
                sent,
            );
        }
        row(
            format!("{kind} with an empty spec"),
            of_kind(kind, json!({})),
            false,
        );
        row(
            format!("{kind} without spec"),
            json!({"apiVersion": "stash.appscode.com/v1beta1", "kind": kind, "metadata": {"name": "x"}}),
            false,
        );
    }

    let bb = |spec: Value| of_kind("BackupBatch", spec);
    let cases: Vec<(&str, Value, bool)> = vec![
        (
            "only the 3rd member has an executor",
            bb(json!({
                "hooks": {"preBackup": hook_without_executor()},
                "members": [
                    {"hooks": {"preBackup": hook_without_executor()}},
                    {"target": {"ref": {"kind": "AppBinding", "name": "db"}}},
                    {"hooks": {"postBackup": hook_with_executor()}},
                ],
            })),
            true,
        ),
        (
            "the 3rd member has an executor, spec.hooks is a string",
            bb(json!({
                "hooks": "executor",
                "members": ["executor", null, {"hooks": {"preBackup": hook_with_executor()}}],
            })),
            true,
        ),
        (
            "spec.hooks has one, members do not",
            bb(json!({
                "hooks": {"preBackup": hook_without_executor(), "postBackup": hook_with_executor()},
                "members": [{"hooks": {"preBackup": hook_without_executor()}}],
            })),
            true,
        ),
        (
            "members without executors",
            bb(json!({"members": [
                {"hooks": {"preBackup": hook_without_executor()}},
                {"hooks": {}},
                {},
            ]})),
            false,
        ),
        (
            "a hook name no kind has",
            bb(json!({"hooks": {"duringBackup": hook_with_executor()}})),
            true,
        ),
        (
            "an executor that is not a map (the server denies it)",
            bb(json!({"hooks": {"preBackup": {"executor": "mysql-hook-executor"}}})),
            true,
        ),
        (
            "an empty executor (the server denies it)",
            bb(json!({"hooks": {"preBackup": {"executor": {}}}})),
            true,
        ),
        (
            "executor: null (the key is there; the server allows it)",
            bb(json!({"hooks": {"preBackup": {"executor": null}}})),
            true,
        ),
        ("spec: null", bb(Value::Null), false),
        (
            "spec is a list",
            bb(json!([{"hooks": {"preBackup": hook_with_executor()}}])),
            false,
        ),
        ("spec is a string", bb(json!("executor")), false),
        (
            "executor directly in spec",
            bb(json!({"executor": {"functionName": "f"}})),
            false,
        ),
        ("hooks: null", bb(json!({"hooks": null})), false),
        ("hooks: {}", bb(json!({"hooks": {}})), false),
        (
            "hooks is a list",
            bb(json!({"hooks": [{"executor": {"functionName": "f"}}]})),
            false,
        ),
        ("hooks is a string", bb(json!({"hooks": "executor"})), false),
        ("hooks is a number", bb(json!({"hooks": 3})), false),
        (
            "a hook that is a list",
            bb(json!({"hooks": {"preBackup": [{"executor": {"functionName": "f"}}]}})),
            false,
        ),
        (
            "a hook that is a string",
            bb(json!({"hooks": {"preBackup": "executor"}})),
            false,
        ),
        (
            "a hook that is null",
            bb(json!({"hooks": {"preBackup": null}})),
            false,
        ),
        (
            "a hook that is empty",
            bb(json!({"hooks": {"preBackup": {}}})),
            false,
        ),
        (
            "executor deeper in a hook",
            bb(json!({"hooks": {"preBackup": {"exec": {"executor": {"functionName": "f"}}}}})),
            false,
        ),
        ("members: null", bb(json!({"members": null})), false),
        ("members: []", bb(json!({"members": []})), false),
        (
            "members is a map",
            bb(json!({"members": {"hooks": {"preBackup": hook_with_executor()}}})),
            false,
        ),
        (
            "members is a string",
            bb(json!({"members": "executor"})),
            false,
        ),
        (
            "members that are not maps",
            bb(json!({"members": ["executor", ["executor"], null, 1, true]})),
            false,
        ),
        (
            "a member without hooks",
            bb(json!({"members": [{"target": {}}]})),
            false,
        ),
        (
            "a member with hooks: null",
            bb(json!({"members": [{"hooks": null}]})),
            false,
        ),
        (
            "a member with hooks: {}",
            bb(json!({"members": [{"hooks": {}}]})),
            false,
        ),
        (
            "a member whose hooks is a list",
            bb(json!({"members": [{"hooks": [{"executor": {"functionName": "f"}}]}]})),
            false,
        ),
        (
            "a member whose hook is a string",
            bb(json!({"members": [{"hooks": {"preBackup": "executor"}}]})),
            false,
        ),
        (
            "a member whose hook is a list",
            bb(json!({"members": [{"hooks": {"preBackup": [{"executor": {}}]}}]})),
            false,
        ),
        ("object: null (DELETE)", Value::Null, false),
    ];
    for (name, object, expected) in cases {
        row(name.to_owned(), object, expected);
    }
    rows
}

/// Each row's object, CREATEd, is sent to the webhook as the row expects: every wrong row
/// (or error) is listed.
fn assert_rows(conditions: &[Condition], rows: &[(String, Value, bool)]) {
    let mut wrong = Vec::new();
    for (name, object, expected) in rows {
        match evaluate(conditions, object, &Value::Null, &create_request(object)) {
            Ok(got) if got == *expected => {}
            Ok(got) => wrong.push(format!("{name}: expected {expected}, got {got}")),
            Err(e) => wrong.push(format!("{name}: expected {expected}, got an ERROR ({e})")),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} rows wrong:\n{}",
        wrong.len(),
        rows.len(),
        wrong.join("\n")
    );
}

#[test]
fn only_objects_with_an_executor_reach_the_webhook() {
    let docs = cert_manager_overlay();
    let conditions = conditions(webhook(&docs));

    let rows = table();
    assert_rows(&conditions, &rows);
    // 5 kinds x 4 hooks x 2, 2 batch kinds x 4 hooks x 2 members rows, 2 spec rows per kind, and
    // the shapes.
    // 7 task shapes per kind.
    assert_eq!(rows.len(), 40 + 16 + 10 + 35 + 34);
}

#[test]
fn every_object_the_server_would_judge_reaches_the_webhook() {
    // The condition is a filter in front of the server's own rules: whenever the server finds
    // an executor to judge, for any kind, the condition must send it the object; and when the
    // condition sends it nothing, the server finds nothing, for any kind.
    let docs = cert_manager_overlay();
    let conditions = conditions(webhook(&docs));
    for (name, object, expected) in table() {
        let got = evaluate(&conditions, &object, &Value::Null, &create_request(&object))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, expected, "{name}");
        let spec = SpecHooks::from_value(&object["spec"]).expect("every spec decodes");
        for kind in StashKind::ALL {
            let judged =
                !executor_refs(kind, &spec).is_empty() || !task_refs(kind, &spec).is_empty();
            assert!(
                got || !judged,
                "{name}: the server judges executors of this {kind:?} but the webhook is not called"
            );
        }
    }
}

/// A KubeStash object of `kind` with `spec`.
fn kubestash_of_kind(kind: &str, spec: Value) -> Value {
    object("core.kubestash.com/v1alpha1", kind, spec)
}

/// The four KubeStash kinds judged on /validate (core.kubestash.com v1alpha1).
const KUBESTASH_KINDS: [&str; 4] = [
    "BackupConfiguration",
    "RestoreSession",
    "BackupBatch",
    "BackupBlueprint",
];

/// Every shape of KubeStash object, with whether the webhook must be called for it.
fn kubestash_table() -> Vec<(String, Value, bool)> {
    let session = json!({
        "name": "daily",
        "addon": {"name": "workload-addon", "tasks": [{"name": "logical-backup"}]},
        "hooks": {"preBackup": [{"name": "ping", "hookTemplate": {"name": "ping", "namespace": "demo"}}]},
    });
    let restore_hooks = json!({"preRestore": [{"name": "ping", "hookTemplate": {"name": "ping", "namespace": "demo"}}]});
    let addon = json!({"name": "workload-addon", "tasks": [{"name": "logical-restore"}]});
    let mut rows: Vec<(String, Value, bool)> = Vec::new();
    // What each kind names a referent with, as KubeStash writes it, and every other value the
    // field can hold: the field is there, so the server decides.
    let named: [(&str, &str, Value); 5] = [
        ("BackupConfiguration", "sessions", json!([session])),
        ("BackupBatch", "sessions", json!([session])),
        ("RestoreSession", "addon", addon),
        ("RestoreSession", "hooks", restore_hooks),
        (
            "BackupBlueprint",
            "backupConfigurationTemplate",
            json!({"sessions": [session], "backends": []}),
        ),
    ];
    for (kind, field, value) in named {
        for (what, value) in [
            ("as written", value),
            ("empty list", json!([])),
            ("empty map", json!({})),
            ("a string", json!("workload-addon")),
            ("a number", json!(3)),
            ("null", Value::Null),
        ] {
            rows.push((
                format!("{kind} spec.{field}: {what}"),
                kubestash_of_kind(
                    kind,
                    json!({field: value, "target": {"kind": "StatefulSet"}}),
                ),
                true,
            ));
        }
    }
    for kind in KUBESTASH_KINDS {
        for (what, spec, sent) in [
            ("an empty spec", json!({}), false),
            ("spec: null", Value::Null, false),
            ("spec is a list", json!([{"sessions": []}]), false),
            ("spec is a string", json!("sessions"), false),
            ("spec is a number", json!(1), false),
            (
                "only other fields",
                json!({"target": {"kind": "StatefulSet", "name": "db"}, "backends": [{"name": "s3"}],
                       "dataSource": {"repository": "r"}, "paused": true,
                       "usagePolicy": {}, "subjects": []}),
                false,
            ),
            (
                "the names deeper than spec",
                json!({"target": {"sessions": [], "addon": {}, "hooks": {},
                                  "backupConfigurationTemplate": {}}}),
                false,
            ),
            (
                "another spelling",
                json!({"Sessions": [], "addons": {}, "hook": {}}),
                false,
            ),
            (
                "every name",
                json!({"sessions": [], "addon": {}, "hooks": {},
                                  "backupConfigurationTemplate": {}}),
                true,
            ),
        ] {
            rows.push((
                format!("{kind} with {what}"),
                kubestash_of_kind(kind, spec),
                sent,
            ));
        }
        rows.push((
            format!("{kind} without spec"),
            json!({"apiVersion": "core.kubestash.com/v1alpha1", "kind": kind, "metadata": {"name": "x"}}),
            false,
        ));
    }
    rows.push(("object: null (DELETE)".to_owned(), Value::Null, false));
    rows
}

#[test]
fn only_kubestash_objects_that_can_name_a_referent_reach_the_webhook() {
    let docs = cert_manager_overlay();
    let conditions = conditions(webhook_named(&docs, KUBESTASH_WEBHOOK_NAME));
    let rows = kubestash_table();
    assert_rows(&conditions, &rows);
    // 5 referent fields x 6 values, 4 kinds x 10 shapes, and DELETE.
    assert_eq!(rows.len(), 30 + 40 + 1);

    // The Stash shapes, none of which has a KubeStash field in spec but `hooks`: never an error.
    for (name, object, _) in table() {
        evaluate(&conditions, &object, &Value::Null, &create_request(&object))
            .unwrap_or_else(|e| panic!("Stash shape {name}: {e}"));
    }
}

/// The operand of each `has(X.f)` and `X.exists(` in `expression`, with where it is.
fn field_tests_and_iterations(expression: &str) -> Vec<(usize, String, &'static str)> {
    let operand_char = |c: char| c.is_ascii_alphanumeric() || "_.[]".contains(c);
    let mut found = Vec::new();
    for (at, _) in expression.match_indices("has(") {
        let argument: String = expression[at + 4..]
            .chars()
            .take_while(|&c| operand_char(c))
            .collect();
        let (operand, _field) = argument
            .rsplit_once('.')
            .unwrap_or_else(|| panic!("has() takes a field selection: has({argument}"));
        found.push((at, operand.to_owned(), "has"));
    }
    for (at, _) in expression.match_indices(".exists(") {
        let before = &expression[..at];
        let start = before
            .rfind(|c: char| !operand_char(c))
            .map_or(0, |i| i + 1);
        found.push((at, before[start..].to_owned(), "exists"));
    }
    found
}

#[test]
fn every_field_test_and_iteration_checks_the_type_first() {
    // cel-go, the API server's CEL, errors on has(x.f) when x is a list, and on x.exists() when
    // x is neither a list nor a map; cel-interpreter answers false to the first, so the table
    // cannot see a missing check there. Each has() and exists() must then follow, to its left,
    // a type check of its operand (`object` is a map whenever it is not null).
    let docs = cert_manager_overlay();
    for condition in CONDITIONAL_WEBHOOKS.iter().flat_map(|name| {
        webhook_named(&docs, name)["matchConditions"]
            .as_array()
            .expect("conditions")
    }) {
        let name = &condition["name"];
        let expression = condition["expression"].as_str().expect("expression");
        let found = field_tests_and_iterations(expression);
        assert!(!found.is_empty(), "{name}: reads no field?");
        for (at, operand, what) in found {
            let checked_before = |check: &str| expression[..at].contains(check);
            let checked = if operand == "object" {
                checked_before("object != null")
            } else if what == "has" {
                checked_before(&format!("type({operand}) == map"))
            } else {
                checked_before(&format!("type({operand}) == map"))
                    || checked_before(&format!("type({operand}) == list"))
            };
            assert!(
                checked,
                "{name}: {what}() on {operand} without a type check before it:\n{expression}"
            );
        }
    }
}

#[test]
fn conditions_read_only_the_new_object() {
    // Removing an executor is always allowed, so oldObject does not matter; and nothing asks
    // the authorizer, which a condition could not do without an API call.
    let docs = cert_manager_overlay();
    for condition in CONDITIONAL_WEBHOOKS
        .iter()
        .flat_map(|name| conditions(webhook_named(&docs, name)))
    {
        let references = condition.program.references();
        assert!(references.has_variable("object"), "{}", condition.name);
        for unused in ["oldObject", "request", "authorizer", "params"] {
            assert!(
                !references.has_variable(unused),
                "{} reads {unused}",
                condition.name
            );
        }
    }

    let conditions = conditions(webhook(&docs));
    let with = of_kind(
        "BackupConfiguration",
        json!({"hooks": {"preBackup": hook_with_executor()}}),
    );
    let without = of_kind(
        "BackupConfiguration",
        json!({"hooks": {"preBackup": hook_without_executor()}}),
    );
    let update = |object: &Value, old: &Value| {
        let request = json!({"operation": "UPDATE", "object": object, "oldObject": old});
        evaluate(&conditions, object, old, &request).expect("no error")
    };
    assert!(!update(&without, &with), "removing the executor");
    assert!(update(&with, &without), "adding an executor");
    assert!(update(&with, &with), "keeping it");
}

#[test]
fn recorded_reviews_and_the_examples_are_sent_as_the_server_expects() {
    let docs = cert_manager_overlay();
    let conditions = conditions(webhook(&docs));

    let reviews = repo().join("tests/fixtures/reviews");
    let mut got = Vec::new();
    for file in [
        "backupconfiguration-create.json",
        "backupconfiguration-create-dryrun.json",
        "backupconfiguration-update.json",
        "backupconfiguration-delete.json",
        "function-create.json",
        "function-delete.json",
    ] {
        let text = std::fs::read_to_string(reviews.join(file)).expect("recorded review");
        let review: Value = serde_json::from_str(&text).expect("JSON");
        let request = &review["request"];
        let called = evaluate(
            &conditions,
            &request["object"],
            &request["oldObject"],
            request,
        )
        .unwrap_or_else(|e| panic!("{file}: {e}"));
        got.push((file, called));
    }
    assert_eq!(
        got,
        [
            ("backupconfiguration-create.json", true),
            ("backupconfiguration-create-dryrun.json", true),
            ("backupconfiguration-update.json", true),
            // object is null; the rules do not send DELETE anyway.
            ("backupconfiguration-delete.json", false),
            ("function-create.json", false),
            ("function-delete.json", false),
        ]
    );

    // Every example object names an executor or a Task (a KubeStash one an Addon and a
    // HookTemplate), valid or not: all are sent to their family's webhook.
    let kubestash_conditions = self::conditions(webhook_named(&docs, KUBESTASH_WEBHOOK_NAME));
    let examples = repo().join("manifests/examples");
    let mut judged = 0;
    let mut kubestash_judged = 0;
    for entry in std::fs::read_dir(&examples).expect("examples") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("example");
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let object = Value::deserialize(doc).expect("YAML");
            let kind = object["kind"].as_str().unwrap_or_default();
            if object["apiVersion"] == "core.kubestash.com/v1alpha1"
                && KUBESTASH_KINDS.contains(&kind)
            {
                let called = evaluate(
                    &kubestash_conditions,
                    &object,
                    &Value::Null,
                    &create_request(&object),
                )
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(called, "{}: {kind} is sent to the webhook", path.display());
                kubestash_judged += 1;
                continue;
            }
            if object["apiVersion"] != format!("{STASH_GROUP}/{STASH_VERSION}")
                || StashKind::from_gvk(STASH_GROUP, STASH_VERSION, kind).is_none()
            {
                continue;
            }
            let called = evaluate(&conditions, &object, &Value::Null, &create_request(&object))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(called, "{}: {kind} is sent to the webhook", path.display());
            judged += 1;
        }
    }
    assert_eq!(
        judged, 5,
        "the five Stash example objects of manifests/examples"
    );
    assert_eq!(
        kubestash_judged, 3,
        "the three KubeStash example objects of manifests/examples"
    );
}

#[test]
fn the_no_match_conditions_component_removes_them_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let without = overlay_with(dir.path(), "cert-manager", &["no-match-conditions"])
        .unwrap_or_else(|e| panic!("{e}"));
    let shipped = cert_manager_overlay();

    for name in CONDITIONAL_WEBHOOKS {
        assert!(
            webhook_named(&shipped, name)
                .get("matchConditions")
                .is_some(),
            "{name}"
        );
    }
    // Every webhook is otherwise exactly as shipped, in the same order, and so is every other
    // object.
    let webhooks = |docs: &[Value]| -> Vec<Value> {
        docs.iter()
            .find(|d| d["kind"] == "ValidatingWebhookConfiguration")
            .expect("ValidatingWebhookConfiguration")["webhooks"]
            .as_array()
            .expect("webhooks")
            .clone()
    };
    let expected: Vec<Value> = webhooks(&shipped)
        .into_iter()
        .map(|mut w| {
            w.as_object_mut()
                .expect("webhook")
                .remove("matchConditions");
            w
        })
        .collect();
    assert_eq!(webhooks(&without), expected);

    let others = |docs: &[Value]| -> Vec<Value> {
        docs.iter()
            .filter(|d| d["kind"] != "ValidatingWebhookConfiguration")
            .cloned()
            .collect()
    };
    assert_eq!(others(&without), others(&shipped));
    let config = |docs: &[Value]| -> Value {
        let mut config = docs
            .iter()
            .find(|d| d["kind"] == "ValidatingWebhookConfiguration")
            .expect("ValidatingWebhookConfiguration")
            .clone();
        config.as_object_mut().expect("config").remove("webhooks");
        config
    };
    assert_eq!(config(&without), config(&shipped));
}
