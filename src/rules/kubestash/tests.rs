use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::*;
use crate::kubestash::{self, references, CORE_GROUP, VERSION};
use crate::sources::Referent;

fn kind(name: &str) -> &'static Kind {
    kubestash::kind(CORE_GROUP, VERSION, name).unwrap()
}

fn addon() -> Addon {
    Addon::from_object(&json!({"spec": {
        "backupTasks": [
            {"name": "logical-backup", "function": "workload-backup",
             "parameters": [{"name": "paths", "required": true},
                            {"name": "exclude", "required": false},
                            {"name": "scratchDir", "required": true, "default": "/tmp"}],
             "volumeTemplate": [{"name": "kubestash-tmp-volume"}]},
            {"name": "manifest-backup", "function": "manifest-backup"},
            {"name": "volume-snapshot", "function": "no-image"}],
        "restoreTasks": [{"name": "logical-backup-restore", "function": "workload-restore"}]}}))
}

fn function(spec: Value) -> AddonFunction {
    AddonFunction::from_object(&json!({ "spec": spec }))
}

/// The cluster every test judges against: one Addon, its Functions (one without an image), and
/// HookTemplates in "demo".
struct Cluster {
    addons: HashMap<String, Resolution<Addon>>,
    functions: HashMap<String, Resolution<AddonFunction>>,
    templates: HashMap<String, Resolution<HookTemplate>>,
}

impl Cluster {
    fn new() -> Self {
        let found = |f| Resolution::Found(Arc::new(f));
        let functions = HashMap::from([
            (
                "workload-backup".to_owned(),
                found(function(
                    json!({"image": "ghcr.io/kubestash/workload:v0.28.0",
                    "args": ["--paths=${paths}", "--ns=${namespace}", "--x=${exclude:=}"]}),
                )),
            ),
            (
                "manifest-backup".to_owned(),
                found(function(json!({"image": "m:1"}))),
            ),
            ("no-image".to_owned(), found(function(json!({})))),
            (
                "workload-restore".to_owned(),
                found(function(json!({"image": "r:1"}))),
            ),
            (
                "hook-fn".to_owned(),
                found(function(
                    json!({"image": "h:1", "args": ["${mode}", "${secret}"]}),
                )),
            ),
        ]);
        let template = |spec| {
            Resolution::Found(Arc::new(HookTemplate::from_object(
                &json!({ "spec": spec }),
            )))
        };
        let templates = HashMap::from([
            (
                "demo/freeze".to_owned(),
                template(
                    json!({"executor": {"type": "Function", "function": {"name": "hook-fn"}},
                    "params": [{"name": "mode", "required": true}]}),
                ),
            ),
            (
                "demo/ghost-fn".to_owned(),
                template(json!({"executor": {"type": "Function", "function": {"name": "ghost"}}})),
            ),
            (
                "tools/shared".to_owned(),
                template(json!({"executor": {"type": "Pod"}})),
            ),
        ]);
        Cluster {
            addons: HashMap::from([(
                "workload-addon".to_owned(),
                Resolution::Found(Arc::new(addon())),
            )]),
            functions,
            templates,
        }
    }

    /// What the validator would have looked up for `refs`: every name asked for.
    fn known(&self, kind: &Kind, refs: &[Reference]) -> Catalog {
        fn pick<T: std::fmt::Debug + PartialEq>(
            names: Vec<String>,
            from: &HashMap<String, Resolution<T>>,
        ) -> HashMap<String, Resolution<T>> {
            names
                .into_iter()
                .map(|n| {
                    let r = match from.get(&n) {
                        Some(Resolution::Found(f)) => Resolution::Found(f.clone()),
                        _ => Resolution::NotFound,
                    };
                    (n, r)
                })
                .collect()
        }
        let objects = [(kind, refs)];
        let wanted = to_resolve(&objects, &Catalog::default());
        let mut known = Catalog {
            addons: Some(pick(wanted.addons, &self.addons)),
            hook_templates: Some(pick(wanted.hook_templates, &self.templates)),
            functions: None,
        };
        let functions = to_resolve(&objects, &known).functions;
        known.functions = Some(pick(functions, &self.functions));
        known
    }
}

fn judge_in(kind_name: &str, spec: Value, old: Option<Value>) -> Verdict {
    let kind = kind(kind_name);
    let refs = references(kind, &json!({ "spec": spec }), "demo");
    let old = old
        .map(|o| references(kind, &json!({ "spec": o }), "demo"))
        .unwrap_or_default();
    let cluster = Cluster::new();
    let known = cluster.known(kind, &refs);
    judge(kind, "demo", &refs, &old, &known, &Policy::default())
}

fn session(addon: Value) -> Value {
    json!({"sessions": [{"name": "s", "addon": addon}]})
}

fn denials(verdict: &Verdict) -> Vec<String> {
    verdict.denials.iter().map(ToString::to_string).collect()
}

#[test]
fn a_valid_backup_configuration_is_allowed_without_warnings() {
    let v = judge_in(
        "BackupConfiguration",
        session(json!({"name": "workload-addon", "tasks": [
            {"name": "logical-backup", "params": {"paths": "/data"},
             "addonVolumes": [{"name": "kubestash-tmp-volume"}]}]})),
        None,
    );
    assert_eq!(v, Verdict::default());
}

#[test]
fn a_missing_addon_is_denied_naming_how_to_list_them() {
    let v = judge_in(
        "BackupConfiguration",
        session(json!({"name": "workload-adon", "tasks": [{"name": "logical-backup"}]})),
        None,
    );
    assert_eq!(
        denials(&v),
        ["spec.sessions[0].addon.name: Addon \"workload-adon\" not found: install the KubeStash addon that provides it, or fix the name (list them with: kubectl get addons.addons.kubestash.com)"]
    );
}

#[test]
fn a_task_the_addon_does_not_have_lists_its_tasks_closest_first() {
    let v = judge_in(
        "BackupConfiguration",
        session(json!({"name": "workload-addon", "tasks": [{"name": "manifest-backups"}]})),
        None,
    );
    assert_eq!(
        denials(&v),
        ["spec.sessions[0].addon.tasks[0].name: Addon \"workload-addon\" has no backup task \"manifest-backups\": name one of Addon \"workload-addon\"'s backup tasks (it has manifest-backup, logical-backup, volume-snapshot)"]
    );
    // A restore names the Addon's restore tasks, not its backup tasks.
    let v = judge_in(
        "RestoreSession",
        json!({"addon": {"name": "workload-addon", "tasks": [{"name": "logical-backup"}]}}),
        None,
    );
    assert_eq!(
        denials(&v),
        ["spec.addon.tasks[0].name: Addon \"workload-addon\" has no restore task \"logical-backup\": name one of Addon \"workload-addon\"'s restore tasks (it has logical-backup-restore)"]
    );
}

#[test]
fn a_task_whose_function_cannot_run_names_the_addon_task_and_function() {
    let v = judge_in(
        "BackupConfiguration",
        session(json!({"name": "workload-addon", "tasks": [{"name": "volume-snapshot"}]})),
        None,
    );
    assert_eq!(
        denials(&v),
        ["spec.sessions[0].addon.tasks[0].name: backup task \"volume-snapshot\" of Addon \"workload-addon\" runs Function \"no-image\" (functions.addons.kubestash.com), which has no container image (its spec.image is not set): give the Function a valid spec.image (kubectl edit functions.addons.kubestash.com no-image)"]
    );
}

#[test]
fn a_required_parameter_without_default_must_be_set() {
    let v = judge_in(
        "BackupConfiguration",
        session(json!({"name": "workload-addon", "tasks": [
            {"name": "logical-backup", "params": {"pathz": "/data"}}]})),
        None,
    );
    assert_eq!(
        denials(&v),
        ["spec.sessions[0].addon.tasks[0].params: backup task \"logical-backup\" of Addon \"workload-addon\" requires parameter \"paths\", which is not set and has no default: add params.paths"]
    );
    assert_eq!(
        v.warnings,
        ["spec.sessions[0].addon.tasks[0].params[pathz]: backup task \"logical-backup\" of Addon \"workload-addon\" declares no parameter \"pathz\" (it declares paths, exclude, scratchDir): check the name"]
    );
}

#[test]
fn an_undeclared_volume_and_an_unset_variable_are_warned() {
    let v = judge_in(
        "BackupConfiguration",
        session(json!({"name": "workload-addon", "tasks": [
            {"name": "logical-backup", "params": {"paths": "/d"},
             "addonVolumes": [{"name": "tmp"}]}]})),
        None,
    );
    assert!(v.allowed());
    assert_eq!(
        v.warnings,
        ["spec.sessions[0].addon.tasks[0].addonVolumes[0].name: backup task \"logical-backup\" of Addon \"workload-addon\" declares no volume \"tmp\" (it declares kubestash-tmp-volume): check the name"]
    );
    let v = judge_in(
        "BackupConfiguration",
        json!({"sessions": [{"hooks": {"preBackup": [
            {"name": "f", "hookTemplate": {"name": "freeze"}, "params": {"mode": "x"}}]}}]}),
        None,
    );
    assert_eq!(
        v.warnings,
        ["spec.sessions[0].hooks.preBackup[0].params: the Function HookTemplate \"demo/freeze\" runs reads ${secret}, which no parameter, params key, variable or KubeStash input sets: add params.secret, or check the Function"]
    );
}

#[test]
fn hook_templates_missing_misused_or_running_a_missing_function() {
    let v = judge_in(
        "BackupConfiguration",
        json!({"sessions": [{"hooks": {
            "preBackup": [{"name": "a", "hookTemplate": {"name": "fraeze"}}],
            "postBackup": [
                {"name": "b", "hookTemplate": {"name": "ghost-fn"}},
                {"name": "c", "hookTemplate": {"name": "freeze"}, "variables": [{"name": "secret"}]},
                {"name": "d", "hookTemplate": {"name": "shared", "namespace": "tools"}}]}}]}),
        None,
    );
    assert_eq!(
        denials(&v),
        [
            "spec.sessions[0].hooks.preBackup[0].hookTemplate.name: HookTemplate \"fraeze\" not found in namespace \"demo\": create it there, or set hookTemplate.namespace to the namespace that has it (list them with: kubectl get hooktemplates.core.kubestash.com -A)",
            "spec.sessions[0].hooks.postBackup[0].hookTemplate.name: HookTemplate \"demo/ghost-fn\" runs Function \"ghost\" (functions.addons.kubestash.com), which is not found: install the addon catalog that provides it (list them with: kubectl get functions.addons.kubestash.com)",
            "spec.sessions[0].hooks.postBackup[1].params: HookTemplate \"demo/freeze\" requires parameter \"mode\", which is not set and has no default: add params.mode",
        ]
    );
    assert_eq!(
        v.warnings,
        ["spec.sessions[0].hooks.postBackup[2].hookTemplate: HookTemplate \"tools/shared\" may be used only from its own namespace (its spec.usagePolicy.allowedNamespaces.from is Same, or unset), not from \"demo\": KubeStash will refuse it; allow this namespace on the HookTemplate, or use one in \"demo\""]
    );
}

#[test]
fn a_problem_left_unchanged_by_an_update_is_a_warning() {
    let spec = session(json!({"name": "workload-addon", "tasks": [{"name": "volume-snapshot"}]}));
    let v = judge_in("BackupConfiguration", spec.clone(), Some(spec));
    assert!(v.allowed(), "{v:?}");
    assert_eq!(v.warnings.len(), 1);
    assert!(
        v.warnings[0].ends_with(
            "allowed because this reference is unchanged, but the task will fail until it is fixed"
        ),
        "{}",
        v.warnings[0]
    );
    // A task changed to a broken one is denied.
    let old = session(json!({"name": "workload-addon", "tasks": [{"name": "manifest-backup"}]}));
    let new = session(json!({"name": "workload-addon", "tasks": [{"name": "volume-snapshot"}]}));
    assert!(!judge_in("BackupConfiguration", new, Some(old)).allowed());
}

#[test]
fn a_problem_the_stored_object_already_had_stays_a_warning_whatever_else_changed() {
    let hook = |params: Value| {
        json!({"sessions": [{"name": "s", "hooks": {"preBackup": [
            {"name": "freeze", "hookTemplate": {"name": "freeze"}, "params": params}]}}]})
    };
    // `mode` is required and unset before and after; another parameter is added.
    let v = judge_in(
        "BackupConfiguration",
        hook(json!({"secret": "s"})),
        Some(hook(json!({}))),
    );
    assert!(v.allowed(), "{v:?}");
    assert!(
        v.warnings[0].starts_with("spec.sessions[0].hooks.preBackup[0].params: HookTemplate \"demo/freeze\" requires parameter \"mode\", which is not set and has no default; allowed because this reference is unchanged"),
        "{v:?}"
    );
    // A problem the stored object did not have is denied, beside the one it had.
    let old = hook(json!({}));
    let new = json!({"sessions": [{"name": "s", "hooks": {"preBackup": [
        {"name": "freeze", "hookTemplate": {"name": "freeze"}},
        {"name": "gone", "hookTemplate": {"name": "gone"}}]}}]});
    let v = judge_in("BackupConfiguration", new, Some(old));
    assert_eq!(
        denials(&v),
        ["spec.sessions[0].hooks.preBackup[1].hookTemplate.name: HookTemplate \"gone\" not found in namespace \"demo\": create it there, or set hookTemplate.namespace to the namespace that has it (list them with: kubectl get hooktemplates.core.kubestash.com -A)"]
    );
}

#[test]
fn a_blueprints_templated_names_are_warned_not_judged() {
    let v = judge_in(
        "BackupBlueprint",
        json!({"backupConfigurationTemplate": {"sessions": [{"addon": {
            "name": "${ADDON}", "tasks": [{"name": "logical-backup"}]}}]}}),
        None,
    );
    assert!(v.allowed());
    assert_eq!(
        v.warnings,
        ["spec.backupConfigurationTemplate.sessions[0].addon.name: Addon \"${ADDON}\" is filled in per target when KubeStash creates each BackupConfiguration from this blueprint: not checked here"]
    );
}

#[test]
fn without_a_source_names_are_not_checked_never_denied() {
    let kind = kind("BackupConfiguration");
    let refs = references(
        kind,
        &json!({"spec": session(json!({"name": "anything", "tasks": [{"name": "t"}]}))}),
        "demo",
    );
    let v = judge(
        kind,
        "demo",
        &refs,
        &[],
        &Catalog::default(),
        &Policy::default(),
    );
    assert!(v.allowed());
    assert_eq!(
        v.warnings,
        ["spec.sessions[0].addon.name: Addon \"anything\" not checked: there are no Addons to check it against (the cluster does not serve them: their CRD is not installed; or the catalog and files checked hold none)"]
    );
}

#[test]
fn a_batch_with_many_broken_targets_gets_one_capped_denial() {
    let targets: Vec<Value> = (0..30)
        .map(|i| json!({"name": format!("t{i}"), "addon": {"name": "gone"}}))
        .collect();
    let v = judge_in(
        "BackupBatch",
        json!({"sessions": [{"targets": targets}]}),
        None,
    );
    let message = v.message();
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines.len(), 21);
    assert!(
        lines[0].starts_with("spec.sessions[0].targets[0].addon.name: Addon \"gone\" not found")
    );
    assert_eq!(
        lines[20],
        "... and 10 more problems in 10 more tasks, not listed (stash-webhook check -f FILE lists them all)"
    );
}

#[test]
fn image_versions_are_checked_when_the_image_reads_db_version() {
    let mut cluster = Cluster::new();
    cluster.functions.insert(
        "manifest-backup".into(),
        Resolution::Found(Arc::new(function(
            json!({"image": "x/y:v1_${DB_VERSION}", "availableVersions": []}),
        ))),
    );
    let kind = kind("BackupConfiguration");
    let refs = references(
        kind,
        &json!({"spec": session(json!({"name": "workload-addon", "tasks": [{"name": "manifest-backup"}]}))}),
        "demo",
    );
    let known = cluster.known(kind, &refs);
    let v = judge(kind, "demo", &refs, &[], &known, &Policy::default());
    assert_eq!(
        denials(&v),
        ["spec.sessions[0].addon.tasks[0].name: backup task \"manifest-backup\" of Addon \"workload-addon\" runs Function \"manifest-backup\" (functions.addons.kubestash.com), which reads ${DB_VERSION} in its image, but its spec.availableVersions is empty, so KubeStash cannot choose a version: list the image's versions in spec.availableVersions (kubectl edit functions.addons.kubestash.com manifest-backup)"]
    );
}
