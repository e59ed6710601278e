use serde_json::json;

use super::*;
use crate::kubestash::{references, KINDS};

const ANNOTATION: &str = "stash-webhook.stash.appscode.com/allow-breaking-references";

/// `demo/db-backup`, which names task `logical-backup` of Addon `workload-addon` and hooks
/// HookTemplate `demo/freeze`.
fn db_backup() -> Listed {
    let kind = &KINDS[0];
    let spec = json!({"sessions": [{
        "addon": {"name": "workload-addon", "tasks": [{"name": "logical-backup"}]},
        "hooks": {"preBackup": [{"name": "f", "hookTemplate": {"name": "freeze"}}]}}]});
    Listed {
        kind,
        key: ObjectKey {
            kind: kind.kind,
            namespace: Some("demo".into()),
            name: "db-backup".into(),
        },
        uid: "uid-db-backup".into(),
        refs: references(kind, &json!({ "spec": spec }), "demo"),
    }
}

fn addon(tasks: Value) -> Addon {
    Addon::from_object(&json!({"spec": {"backupTasks": tasks}}))
}

fn template(function: &str) -> HookTemplate {
    HookTemplate::from_object(
        &json!({"spec": {"executor": {"type": "Function", "function": {"name": function}}}}),
    )
}

fn function(spec: Value) -> AddonFunction {
    AddonFunction::from_object(&json!({ "spec": spec }))
}

/// The Addon and the HookTemplate `db-backup` names, both running Function `workload-backup`;
/// Function `imageless`; and Function `gone`, which does not exist.
fn catalog() -> Catalog {
    let mut catalog = Catalog::default();
    let tasks = json!([{"name": "logical-backup", "function": "workload-backup"}]);
    addon(tasks).put("workload-addon", false, &mut catalog);
    template("workload-backup").put("demo/freeze", false, &mut catalog);
    let image = json!({"image": "ghcr.io/kubestash/workload:v0.1"});
    function(image).put("workload-backup", false, &mut catalog);
    function(json!({})).put("imageless", false, &mut catalog);
    function(json!({})).put("gone", true, &mut catalog);
    catalog
}

/// What changing referent `key` (`old`) to `new` (none: deleting it) breaks in `db-backup`, as
/// `(path, first denial)`.
fn breaks<R: Guarded>(old: R, key: &str, new: Option<R>) -> Vec<(String, String)> {
    let before = catalog();
    let mut after = before.clone();
    match new {
        Some(new) => new.put(key, false, &mut after),
        None => old.put(key, true, &mut after),
    }
    broken_by(&db_backup(), &before, &after)
        .into_iter()
        .map(|(user, problem)| (user.path, format!("{}: {}", problem.path, problem.what)))
        .collect()
}

fn an_addon() -> Addon {
    addon(json!([]))
}

fn a_function() -> AddonFunction {
    function(json!({}))
}

#[test]
fn deleting_a_referent_breaks_the_references_that_reach_it() {
    let addon_path = "spec.sessions[0].addon";
    let hook_path = "spec.sessions[0].hooks.preBackup[0]";
    assert_eq!(
        breaks(an_addon(), "workload-addon", None),
        [(
            addon_path.to_owned(),
            format!("{addon_path}.name: Addon \"workload-addon\" not found")
        )]
    );
    assert_eq!(
        breaks(template("x"), "demo/freeze", None),
        [(
            hook_path.to_owned(),
            format!("{hook_path}.hookTemplate.name: HookTemplate \"freeze\" not found in namespace \"demo\"")
        )]
    );
    // Through the Addon's task and through the HookTemplate.
    let through: Vec<String> = breaks(a_function(), "workload-backup", None)
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    assert_eq!(through, [addon_path, hook_path]);
    // What the object does not reach.
    assert!(breaks(an_addon(), "other-addon", None).is_empty());
    assert!(breaks(template("x"), "other/freeze", None).is_empty());
    assert!(breaks(a_function(), "imageless", None).is_empty());
}

#[test]
fn an_update_breaks_what_admission_would_now_deny() {
    let path = "spec.sessions[0].addon";
    let removed = json!([{"name": "manifest-backup", "function": "workload-backup"}]);
    assert_eq!(
        breaks(an_addon(), "workload-addon", Some(addon(removed))),
        [(
            path.to_owned(),
            format!("{path}.tasks[0].name: Addon \"workload-addon\" has no backup task \"logical-backup\"")
        )]
    );
    let repointed = json!([{"name": "logical-backup", "function": "gone"}]);
    assert_eq!(
        breaks(an_addon(), "workload-addon", Some(addon(repointed))),
        [(
            path.to_owned(),
            format!("{path}.tasks[0].name: backup task \"logical-backup\" of Addon \"workload-addon\" runs Function \"gone\" (functions.addons.kubestash.com), which is not found")
        )]
    );
    let imageless = breaks(a_function(), "workload-backup", Some(function(json!({}))));
    assert_eq!(imageless.len(), 2, "{imageless:?}");
    assert!(imageless[1]
        .1
        .ends_with("which has no container image (its spec.image is not set)"));
    // A task no object names, a Function left usable, a Pod executor: nothing breaks.
    let more = json!([{"name": "logical-backup", "function": "workload-backup"},
        {"name": "manifest-backup", "function": "gone"}]);
    assert!(breaks(an_addon(), "workload-addon", Some(addon(more))).is_empty());
    let image = json!({"image": "ghcr.io/kubestash/workload:v0.2"});
    assert!(breaks(a_function(), "workload-backup", Some(function(image))).is_empty());
    let pod = HookTemplate::from_object(&json!({"spec": {"executor": {"type": "Pod"}}}));
    let pod = Some(pod);
    assert!(breaks(template("x"), "demo/freeze", pod).is_empty());
}

#[test]
fn a_reference_broken_before_is_not_the_changes_doing() {
    let mut before = catalog();
    an_addon().put("workload-addon", true, &mut before);
    let mut after = before.clone();
    a_function().put("workload-backup", true, &mut after);
    let broken = broken_by(&db_backup(), &before, &after);
    let paths: Vec<&str> = broken.iter().map(|(u, _)| u.path.as_str()).collect();
    assert_eq!(paths, ["spec.sessions[0].hooks.preBackup[0]"]);
}

#[test]
fn a_breaking_change_is_denied_naming_its_users_unless_annotated() {
    let before = catalog();
    let mut after = before.clone();
    an_addon().put("workload-addon", true, &mut after);
    let broken = broken_by(&db_backup(), &before, &after);
    let reply = judge(
        ("Addon", "workload-addon"),
        true,
        &broken,
        Vec::new(),
        false,
    );
    assert!(!reply.allowed);
    assert_eq!(
        reply.message,
        format!("Addon \"workload-addon\" is used by 1 reference: demo/BackupConfiguration/db-backup (spec.sessions[0].addon): change or delete them first, or annotate the Addon with {ANNOTATION}=true")
    );
    let reply = judge(("Addon", "workload-addon"), true, &broken, Vec::new(), true);
    assert!(reply.allowed);
    assert_eq!(
        reply.warnings,
        [format!("Addon \"workload-addon\" is used by 1 reference: demo/BackupConfiguration/db-backup (spec.sessions[0].addon); allowed by the annotation {ANNOTATION}=true: those objects fail until Addon \"workload-addon\" exists again, or they are changed")]
    );
    let reply = judge(
        ("Addon", "workload-addon"),
        false,
        &broken,
        Vec::new(),
        false,
    );
    assert_eq!(
        reply.message,
        format!("this change breaks Addon \"workload-addon\" for 1 reference: demo/BackupConfiguration/db-backup (spec.sessions[0].addon) (first denial: spec.sessions[0].addon.name: Addon \"workload-addon\" not found): change or delete them first, or annotate the Addon with {ANNOTATION}=true")
    );
    let unused = judge(
        ("Addon", "workload-addon"),
        true,
        &[],
        vec!["w".into()],
        false,
    );
    assert_eq!(unused, Reply::warn(vec!["w".into()]));
}

#[test]
fn a_referent_that_cannot_run_is_written_with_a_warning_per_problem() {
    let tasks = json!([{"name": "t0"}, {"name": "t1", "function": "gone"},
        {"name": "t2", "function": "imageless"}, {"name": "t3", "function": "workload-backup"}]);
    assert_eq!(
        addon(tasks).warnings("a", &catalog()),
        [
            "spec.backupTasks[0].function: backup task \"t0\" of Addon \"a\" names no Function: fix the Addon, or name another task",
            "spec.backupTasks[1].function: backup task \"t1\" of Addon \"a\" runs Function \"gone\" (functions.addons.kubestash.com), which is not found: install the addon catalog that provides it (list them with: kubectl get functions.addons.kubestash.com)",
            "spec.backupTasks[2].function: backup task \"t2\" of Addon \"a\" runs Function \"imageless\" (functions.addons.kubestash.com), which has no container image (its spec.image is not set): give the Function a valid spec.image (kubectl edit functions.addons.kubestash.com imageless)",
        ]
    );
    assert_eq!(
        template("gone").warnings("demo/freeze", &catalog()),
        ["spec.executor.function.name: HookTemplate \"demo/freeze\" runs Function \"gone\" (functions.addons.kubestash.com), which is not found: install the addon catalog that provides it (list them with: kubectl get functions.addons.kubestash.com)"]
    );
    let nameless = HookTemplate::from_object(&json!({"spec": {"executor": {"type": "Function"}}}));
    assert_eq!(
        nameless.warnings("demo/freeze", &catalog()),
        ["spec.executor.function.name: HookTemplate \"demo/freeze\" has executor type Function but names no Function (its spec.executor.function.name is not set): fix the HookTemplate (kubectl edit hooktemplates.core.kubestash.com freeze -n demo)"]
    );
    assert_eq!(
        function(json!({})).warnings("f", &catalog()),
        ["spec.image: Function \"f\" has no container image (its spec.image is not set): an Addon task or HookTemplate that runs it fails until it is fixed (give the Function a valid spec.image)"]
    );
    let versionless =
        json!({"image": "ghcr.io/kubedb/mongodb-restic-plugin:v0.11.0_${DB_VERSION}"});
    assert_eq!(
        function(versionless).warnings("f", &catalog()),
        ["spec.availableVersions: Function \"f\" reads ${DB_VERSION} in its image, but its spec.availableVersions is empty, so KubeStash cannot choose a version: an Addon task or HookTemplate that runs it fails until it is fixed (list the image's versions in spec.availableVersions)"]
    );
    // Unknown Functions (no source for them) are not warned about here.
    assert!(template("gone")
        .warnings("demo/freeze", &Catalog::default())
        .is_empty());
    assert!(template("workload-backup")
        .warnings("demo/freeze", &catalog())
        .is_empty());
}
