//! The table of review cases: every kind and hook location, every outcome, through the same
//! `Validator::review` the server calls, with Functions from a real `FileSource`.

use std::path::Path;

use serde_json::{json, Value};

use super::*;
use crate::functions::FileSource;
use crate::metrics::Metrics;
use crate::rules::FailurePolicy;

const FUNCTIONS: &str = r#"
apiVersion: stash.appscode.com/v1beta1
kind: Function
metadata: {name: good}
spec: {image: appscode/mysql-hook:8.0.14}
---
apiVersion: stash.appscode.com/v1beta1
kind: Function
metadata: {name: no-image}
spec: {command: [/bin/sh]}
---
apiVersion: stash.appscode.com/v1beta1
kind: Task
metadata: {name: good-task}
spec:
  steps:
  - {name: good}
---
apiVersion: stash.appscode.com/v1beta1
kind: Task
metadata: {name: imageless-step}
spec:
  steps:
  - {name: good}
  - {name: no-image}
"#;

fn validator() -> Validator {
    let source = Arc::new(
        FileSource::from_text(FUNCTIONS, Path::new("t.yaml"), Metrics::default()).unwrap(),
    );
    Validator::new(source.clone(), FailurePolicy::Deny, Duration::from_secs(1)).with_tasks(source)
}

const GHOST_TASK: &str = "Task \"ghost-task\" not found: install the Stash addon that provides it (kubectl get tasks.stash.appscode.com lists those installed), or correct the name";

struct Case {
    name: &'static str,
    kind: &'static str,
    operation: &'static str,
    object: Value,
    old: Value,
    dry_run: bool,
    allowed: bool,
    message: &'static str,
    warnings: &'static [&'static str],
}

impl Default for Case {
    fn default() -> Self {
        Case {
            name: "",
            kind: "BackupConfiguration",
            operation: "CREATE",
            object: Value::Null,
            old: Value::Null,
            dry_run: false,
            allowed: true,
            message: "",
            warnings: &[],
        }
    }
}

fn request(
    kind: &str,
    group: &str,
    operation: &str,
    object: &Value,
    old: &Value,
    dry_run: bool,
) -> Vec<u8> {
    let with_meta = |spec: &Value| {
        if spec.is_null() {
            Value::Null
        } else {
            json!({"apiVersion": format!("{group}/v1beta1"), "kind": kind, "metadata": {"name": "obj", "namespace": "demo"}, "spec": spec})
        }
    };
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u-1", "kind": {"group": group, "version": "v1beta1", "kind": kind},
            "resource": {"group": group, "version": "v1beta1", "resource": "x"},
            "name": "obj", "namespace": "demo", "operation": operation, "userInfo": {"username": "admin"},
            "object": with_meta(object), "oldObject": with_meta(old), "dryRun": dry_run
        }
    });
    serde_json::to_vec(&review).unwrap()
}

fn decode(body: &[u8]) -> Request<'_> {
    crate::review::decode(body).unwrap().1
}

fn hook(name: &str, function: &str) -> Value {
    json!({ name: {"exec": {"command": ["/bin/true"]}, "executor": {"functionName": function}} })
}

const GHOST_PRE_BACKUP: &str = "spec.hooks.preBackup.executor.functionName: Function \"ghost\" not found: create the Function, or fix the name (list them with: kubectl get functions.stash.appscode.com)";

fn cases() -> Vec<Case> {
    let ghost = |path: &str| {
        format!("{path}.executor.functionName: Function \"ghost\" not found: create the Function, or fix the name (list them with: kubectl get functions.stash.appscode.com)")
    };
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut cases = vec![
        Case { name: "no hooks and no task", object: json!({"target": {"ref": {"name": "app"}}}), ..Case::default() },
        Case { name: "a task without a name", object: json!({"task": {"params": []}}), ..Case::default() },
        Case { name: "good task", object: json!({"task": {"name": "good-task"}}), ..Case::default() },
        Case {
            name: "missing task",
            object: json!({"task": {"name": "ghost-task"}}),
            allowed: false,
            message: leak(format!("spec.task.name: {GHOST_TASK}")),
            ..Case::default()
        },
        Case {
            name: "a task's imageless step and a missing executor Function, one denial",
            object: json!({"hooks": hook("preBackup", "ghost"), "task": {"name": "imageless-step"}}),
            allowed: false,
            message: leak(format!("{GHOST_PRE_BACKUP}\nspec.task.name: Task \"imageless-step\", at its spec.steps[1].name: Function \"no-image\" has no container image (its spec.image is not set): give the Function an image (kubectl edit functions.stash.appscode.com no-image), or name another Function")),
            ..Case::default()
        },
        Case {
            name: "UPDATE keeping a missing task warns",
            operation: "UPDATE",
            object: json!({"schedule": "*/10 * * * *", "task": {"name": "ghost-task"}}),
            old: json!({"schedule": "*/5 * * * *", "task": {"name": "ghost-task"}}),
            warnings: &["spec.task.name: Task \"ghost-task\" not found; allowed because this reference is unchanged, but the task will fail until it is fixed"],
            ..Case::default()
        },
        Case { name: "hook without executor", object: json!({"hooks": {"preBackup": {"exec": {"command": ["/bin/true"]}}}}), ..Case::default() },
        Case { name: "proposal's list-form exec without executor", object: json!({"hooks": {"preBackup": {"exec": ["/bin/true"]}}}), ..Case::default() },
        Case { name: "good executor", object: json!({"hooks": hook("preBackup", "good")}), ..Case::default() },
        Case { name: "missing Function", object: json!({"hooks": hook("preBackup", "ghost")}), allowed: false, message: GHOST_PRE_BACKUP, ..Case::default() },
        Case { name: "dry-run is judged the same", object: json!({"hooks": hook("preBackup", "ghost")}), dry_run: true, allowed: false, message: GHOST_PRE_BACKUP, ..Case::default() },
        Case { name: "DELETE is allowed", operation: "DELETE", old: json!({"hooks": hook("preBackup", "ghost")}), ..Case::default() },
        Case { name: "CONNECT is allowed", operation: "CONNECT", object: json!({"hooks": hook("preBackup", "ghost")}), ..Case::default() },
        Case { name: "a kind not judged is allowed", kind: "Function", object: json!({"hooks": hook("preBackup", "ghost")}), ..Case::default() },
        Case {
            name: "UPDATE keeping a broken reference warns",
            operation: "UPDATE",
            object: json!({"schedule": "*/10 * * * *", "hooks": hook("preBackup", "ghost")}),
            old: json!({"schedule": "*/5 * * * *", "hooks": hook("preBackup", "ghost")}),
            warnings: &["spec.hooks.preBackup.executor.functionName: Function \"ghost\" not found; allowed because this reference is unchanged, but the hook will fail until it is fixed"],
            ..Case::default()
        },
        Case {
            name: "UPDATE introducing a broken reference is denied",
            operation: "UPDATE",
            object: json!({"hooks": hook("preBackup", "ghost")}),
            old: json!({"hooks": hook("preBackup", "good")}),
            allowed: false,
            message: GHOST_PRE_BACKUP,
            ..Case::default()
        },
        Case {
            name: "several problems, one line each",
            object: json!({"hooks": {
                "preBackup": {"executor": {"functionName": "no-image", "params": {"a-b": "c"}}},
                "postBackup": {"executor": {}}
            }}),
            allowed: false,
            message: "spec.hooks.preBackup.executor.functionName: Function \"no-image\" has no container image (its spec.image is not set): give the Function an image (kubectl edit functions.stash.appscode.com no-image), or name another Function\n\
                      spec.hooks.preBackup.executor.params[a-b]: parameter name \"a-b\" is invalid: use letters, digits and '_', not starting with a digit, since the Function reads it as ${NAME}\n\
                      spec.hooks.postBackup.executor.functionName: is required: name the Function that runs this hook (list them with: kubectl get functions.stash.appscode.com)",
            ..Case::default()
        },
    ];
    // Every kind and every hook location.
    let locations: &[(&'static str, &[&str], bool)] = &[
        ("BackupConfiguration", &["preBackup", "postBackup"], false),
        ("RestoreSession", &["preRestore", "postRestore"], false),
        ("BackupBatch", &["preBackup", "postBackup"], true),
        ("RestoreBatch", &["preRestore", "postRestore"], true),
        ("BackupBlueprint", &["preBackup", "postBackup"], false),
    ];
    for &(kind, hooks, members) in locations {
        for &h in hooks {
            cases.push(Case {
                name: leak(format!("{kind} spec.hooks.{h}")),
                kind,
                object: json!({"hooks": hook(h, "ghost")}),
                allowed: false,
                message: leak(ghost(&format!("spec.hooks.{h}"))),
                ..Case::default()
            });
            cases.push(Case {
                name: leak(format!("{kind} spec.hooks.{h} good")),
                kind,
                object: json!({"hooks": hook(h, "good")}),
                ..Case::default()
            });
            if members {
                cases.push(Case {
                    name: leak(format!("{kind} spec.members[1].hooks.{h}")),
                    kind,
                    object: json!({"members": [{"hooks": hook(h, "good")}, {"hooks": hook(h, "ghost")}]}),
                    allowed: false,
                    message: leak(ghost(&format!("spec.members[1].hooks.{h}"))),
                    ..Case::default()
                });
            }
        }
    }
    // Every place a Task is named.
    for (kind, path, object) in [
        (
            "BackupConfiguration",
            "spec.task",
            json!({"task": {"name": "ghost-task"}}),
        ),
        (
            "RestoreSession",
            "spec.task",
            json!({"task": {"name": "ghost-task"}}),
        ),
        (
            "BackupBlueprint",
            "spec.task",
            json!({"task": {"name": "ghost-task"}}),
        ),
        (
            "BackupBatch",
            "spec.members[1].task",
            json!({"members": [{"task": {"name": "good-task"}}, {"task": {"name": "ghost-task"}}]}),
        ),
        (
            "RestoreBatch",
            "spec.members[0].task",
            json!({"members": [{"task": {"name": "ghost-task"}}]}),
        ),
    ] {
        cases.push(Case {
            name: leak(format!("{kind} {path}")),
            kind,
            object,
            allowed: false,
            message: leak(format!("{path}.name: {GHOST_TASK}")),
            ..Case::default()
        });
    }
    // Backup hooks on restore kinds (and the reverse) are not hook locations: not judged.
    cases.push(Case {
        name: "preBackup on a RestoreSession is not a hook",
        kind: "RestoreSession",
        object: json!({"hooks": hook("preBackup", "ghost")}),
        ..Case::default()
    });
    cases.push(Case {
        name: "preRestore on a BackupConfiguration is not a hook",
        object: json!({"hooks": hook("preRestore", "ghost")}),
        ..Case::default()
    });
    cases
}

#[tokio::test]
async fn review_table() {
    let v = validator();
    for case in cases() {
        let body = request(
            case.kind,
            "stash.appscode.com",
            case.operation,
            &case.object,
            &case.old,
            case.dry_run,
        );
        let out = v.review(&decode(&body), Some(Duration::from_secs(5))).await;
        assert_eq!(
            out.reply.allowed, case.allowed,
            "{}: {:?}",
            case.name, out.reply.message
        );
        assert_eq!(out.reply.message, case.message, "{}", case.name);
        assert_eq!(out.reply.warnings, case.warnings, "{}", case.name);
    }
}

#[tokio::test]
async fn other_groups_are_allowed_unjudged() {
    let body = request(
        "BackupConfiguration",
        "example.com",
        "CREATE",
        &json!({"hooks": hook("preBackup", "ghost")}),
        &Value::Null,
        false,
    );
    let out = validator().review(&decode(&body), None).await;
    assert!(out.reply.allowed);
    assert!(!out.judged);
}

#[test]
fn lookups_get_at_most_half_the_api_servers_deadline() {
    let v = validator();
    assert_eq!(v.lookup_budget(None), Duration::from_secs(1));
    assert_eq!(
        v.lookup_budget(Some(Duration::from_secs(30))),
        Duration::from_secs(1)
    );
    assert_eq!(
        v.lookup_budget(Some(Duration::from_secs(1))),
        Duration::from_millis(500)
    );
}
