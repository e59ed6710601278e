use serde_json::json;

use super::*;
use crate::kubestash::{references, KINDS};

const ANNOTATION: &str = "stash-webhook.stash.appscode.com/allow-breaking-references";

fn backup_configuration(name: &str, spec: Value) -> Listed {
    let kind = &KINDS[0];
    Listed {
        kind,
        key: ObjectKey {
            kind: kind.kind,
            namespace: Some("demo".into()),
            name: name.into(),
        },
        uid: format!("uid-{name}"),
        refs: references(kind, &json!({ "spec": spec }), "demo"),
    }
}

/// `db-backup` names task `logical-backup` of Addon `workload-addon` and hooks HookTemplate
/// `demo/freeze`.
fn objects() -> Objects {
    Objects(vec![backup_configuration(
        "db-backup",
        json!({"sessions": [{
            "addon": {"name": "workload-addon", "tasks": [{"name": "logical-backup"}]},
            "hooks": {"preBackup": [{"name": "f", "hookTemplate": {"name": "freeze"}}]}}]}),
    )])
}

fn addon(tasks: Value) -> Addon {
    Addon::from_object(&json!({"spec": {"backupTasks": tasks}}))
}

fn functions() -> HashMap<String, Resolution<AddonFunction>> {
    let function = |spec| Resolution::found(AddonFunction::from_object(&json!({ "spec": spec })));
    HashMap::from([
        (
            "workload-backup".to_owned(),
            function(json!({"image": "ghcr.io/kubestash/workload:v0.1"})),
        ),
        ("imageless".to_owned(), function(json!({}))),
        ("gone".to_owned(), Resolution::NotFound),
    ])
}

#[test]
fn deleting_an_addon_in_use_is_denied_naming_its_users_unless_annotated() {
    let known = functions();
    let judge = |name, allow| {
        judge_addon(
            name,
            Edit {
                operation: &Operation::Delete,
                old: None,
                new: None,
            },
            &objects(),
            |f| known.get(f),
            Vec::new(),
            allow,
        )
    };
    let reply = judge("workload-addon", false);
    assert!(!reply.allowed);
    assert_eq!(
        reply.message,
        format!("Addon \"workload-addon\" is used by 1 object: demo/BackupConfiguration/db-backup (spec.sessions[0].addon): change or delete them first, or annotate the Addon with {ANNOTATION}=true")
    );
    let reply = judge("workload-addon", true);
    assert!(reply.allowed);
    assert_eq!(
        reply.warnings,
        [format!("Addon \"workload-addon\" is used by 1 object: demo/BackupConfiguration/db-backup (spec.sessions[0].addon); allowed by the annotation {ANNOTATION}=true: those objects fail until they name an Addon that exists")]
    );
    let unused = judge("other", false);
    assert_eq!(unused, Reply::allow());
}

#[test]
fn an_addon_update_removing_a_used_task_or_breaking_its_function_is_denied() {
    let known = functions();
    let old = addon(json!([
        {"name": "logical-backup", "function": "workload-backup"},
        {"name": "unused", "function": "workload-backup"}]));
    let judge = |new: &Addon| {
        judge_addon(
            "workload-addon",
            Edit {
                operation: &Operation::Update,
                old: Some(&old),
                new: Some(new),
            },
            &objects(),
            |f| known.get(f),
            Vec::new(),
            false,
        )
    };
    let removed = judge(&addon(
        json!([{"name": "unused", "function": "workload-backup"}]),
    ));
    assert_eq!(
        removed.message,
        format!("spec.backupTasks: this change removes backup task \"logical-backup\" of Addon \"workload-addon\", and it is used by 1 object: demo/BackupConfiguration/db-backup (spec.sessions[0].addon.tasks[0]): change or delete them first, or annotate the Addon with {ANNOTATION}=true")
    );
    let repointed = judge(&addon(
        json!([{"name": "logical-backup", "function": "gone"}]),
    ));
    assert_eq!(
        repointed.message,
        format!("spec.backupTasks[0].function: this change leaves backup task \"logical-backup\" of Addon \"workload-addon\" unable to run (Function \"gone\" not found), and it is used by 1 object: demo/BackupConfiguration/db-backup (spec.sessions[0].addon.tasks[0]): change or delete them first, or annotate the Addon with {ANNOTATION}=true")
    );
    // Removing a task no object names is allowed.
    let reply = judge(&addon(
        json!([{"name": "logical-backup", "function": "workload-backup"}]),
    ));
    assert_eq!(reply, Reply::allow());
    assert!(!breaks_a_task(&old, &old, &|f: &str| known.get(f)));
}

#[test]
fn an_addon_whose_tasks_cannot_run_is_written_with_a_warning_per_task() {
    let known = functions();
    let warnings = addon_warnings(
        "a",
        &addon(json!([{"name": "t0"}, {"name": "t1", "function": "gone"},
            {"name": "t2", "function": "imageless"}, {"name": "t3", "function": "workload-backup"}])),
        |f| known.get(f),
    );
    assert_eq!(
        warnings,
        [
            "spec.backupTasks[0].function: backup task \"t0\" of Addon \"a\" names no Function: an object that names this task fails until it names one (set function to the name of a Function, list them with: kubectl get functions.addons.kubestash.com)",
            "spec.backupTasks[1].function: Function \"gone\" not found: an object that names backup task \"t1\" of Addon \"a\" fails until it exists (create the Function, or fix the name; list them with: kubectl get functions.addons.kubestash.com)",
            "spec.backupTasks[2].function: Function \"imageless\" has no container image: an object that names backup task \"t2\" of Addon \"a\" fails until it can run",
        ]
    );
}

fn template(spec: Value) -> HookTemplate {
    HookTemplate::from_object(&json!({ "spec": spec }))
}

#[test]
fn a_hook_template_in_use_is_not_deleted_nor_pointed_at_a_function_that_cannot_run() {
    let known = functions();
    let judge = |op: Operation, old: Option<&HookTemplate>, new: Option<&HookTemplate>, key| {
        judge_hook_template(
            key,
            Edit {
                operation: &op,
                old,
                new,
            },
            &objects(),
            |f| known.get(f),
            Vec::new(),
            false,
        )
    };
    let reply = judge(Operation::Delete, None, None, "demo/freeze");
    assert_eq!(
        reply.message,
        format!("HookTemplate \"demo/freeze\" is used by 1 hook: demo/BackupConfiguration/db-backup (spec.sessions[0].hooks.preBackup[0]): change or delete them first, or annotate the HookTemplate with {ANNOTATION}=true")
    );
    assert_eq!(
        judge(Operation::Delete, None, None, "other/freeze"),
        Reply::allow()
    );
    let old = template(
        json!({"executor": {"type": "Function", "function": {"name": "workload-backup"}}}),
    );
    let new =
        template(json!({"executor": {"type": "Function", "function": {"name": "imageless"}}}));
    let reply = judge(Operation::Update, Some(&old), Some(&new), "demo/freeze");
    assert_eq!(
        reply.message,
        format!("spec.executor.function.name: this change leaves HookTemplate \"demo/freeze\" unable to run (Function \"imageless\" has no container image), and it is used by 1 hook: demo/BackupConfiguration/db-backup (spec.sessions[0].hooks.preBackup[0]): change or delete them first, or annotate the HookTemplate with {ANNOTATION}=true")
    );
    let pod = template(json!({"executor": {"type": "Pod"}}));
    assert!(judge(Operation::Update, Some(&old), Some(&pod), "demo/freeze").allowed);
    let nameless = template(json!({"executor": {"type": "Function"}}));
    assert_eq!(
        hook_template_warnings("demo/freeze", &nameless, |f| known.get(f)),
        ["spec.executor.function.name: HookTemplate \"demo/freeze\" has a Function executor that names no Function: a hook that names it fails until it names one (set spec.executor.function.name, list them with: kubectl get functions.addons.kubestash.com)"]
    );
    assert!(hook_template_warnings("demo/freeze", &pod, |f| known.get(f)).is_empty());
}

#[test]
fn a_function_run_by_a_used_addon_task_or_hook_template_is_protected() {
    let addons = BTreeMap::from([
        (
            "workload-addon".to_owned(),
            addon(json!([{"name": "logical-backup", "function": "workload-backup"}])),
        ),
        (
            "idle-addon".to_owned(),
            addon(json!([{"name": "logical-backup", "function": "workload-backup"}])),
        ),
    ]);
    let templates = BTreeMap::from([(
        "demo/freeze".to_owned(),
        template(
            json!({"executor": {"type": "Function", "function": {"name": "workload-backup"}}}),
        ),
    )]);
    let runners = Runners::of("workload-backup", &addons, &templates, &objects());
    let reply = judge_function(
        "workload-backup",
        Some(&Container::NoImage),
        false,
        &runners.through(),
        function_warnings("workload-backup", &Container::NoImage),
        false,
    );
    assert_eq!(
        reply.message,
        format!("spec.image: this change leaves Function \"workload-backup\" unable to run (has no container image), and it is used by Addon \"workload-addon\" backup task \"logical-backup\" (spec.backupTasks[0].function), named by 1 object: demo/BackupConfiguration/db-backup (spec.sessions[0].addon.tasks[0]) and by HookTemplate \"demo/freeze\" (spec.executor.function.name), named by 1 hook: demo/BackupConfiguration/db-backup (spec.sessions[0].hooks.preBackup[0]): change or delete them first, or annotate the Function with {ANNOTATION}=true")
    );
    assert_eq!(
        reply.warnings,
        ["spec.image: Function \"workload-backup\" has no container image: an Addon task or HookTemplate that runs it fails until it has one (set spec.image to a container image)"]
    );
    let reply = judge_function(
        "workload-backup",
        None,
        true,
        &runners.through(),
        Vec::new(),
        true,
    );
    assert!(reply.allowed);
    assert!(reply.warnings[0].starts_with(
        "Function \"workload-backup\" is used by Addon \"workload-addon\" backup task"
    ));
    assert!(reply.warnings[0].ends_with(&format!("; allowed by the annotation {ANNOTATION}=true: those Addon tasks and HookTemplates fail until they name a Function that can run")));
    let unused = Runners::of("other", &addons, &templates, &objects());
    assert_eq!(
        judge_function("other", None, true, &unused.through(), Vec::new(), false),
        Reply::allow()
    );
}
