use super::*;
use crate::rules::{Container, FailurePolicy, Problem};
use crate::stash::{task_refs, SpecHooks};
use serde_json::{json, Value};

fn task(steps: Value) -> Resolution<Task> {
    Resolution::found(Task::from_object(&json!({"spec": {"steps": steps}})))
}

/// Tasks by name: `pg-backup` runs `pg-dump` (reads `outputDir` and `level`; its step sets
/// `outputDir`) then `update-status` (reads nothing).
fn tasks() -> HashMap<String, Resolution<Task>> {
    HashMap::from([
        (
            "pg-backup".to_owned(),
            task(json!([
                {"name": "pg-dump", "params": [{"name": "outputDir", "value": "/tmp/out"}]},
                {"name": "update-status"}
            ])),
        ),
        ("empty".to_owned(), task(json!([]))),
        (
            "broken-steps".to_owned(),
            task(json!([{"name": "ghost"}, {"name": "no-image"}, {"params": []}])),
        ),
        (
            "reads-repo".to_owned(),
            Resolution::found(Task::from_object(&json!({"spec": {
                "steps": [{"name": "update-status"}],
                "volumes": [{"name": "secret", "secret": {"secretName": "${REPOSITORY_SECRET_NAME}"}},
                            {"name": "cfg", "configMap": {"name": "${CONFIG_NAME}"}}]
            }}))),
        ),
        (
            "needs-hook-type".to_owned(),
            task(json!([{"name": "reads-hook-type"}])),
        ),
        ("gone".to_owned(), Resolution::NotFound),
        (
            "unreachable".to_owned(),
            Resolution::Unverified("the Kubernetes API did not answer within 2000 ms".into()),
        ),
    ])
}

fn functions() -> HashMap<String, Resolution<Function>> {
    HashMap::from([
        (
            "pg-dump".to_owned(),
            Resolution::found(Function::from_object(&json!({"spec": {
                "image": "postgres:16", "args": ["--out=${outputDir}", "--level=${level}", "--ns=${NAMESPACE}"]
            }}))),
        ),
        (
            "update-status".to_owned(),
            Resolution::found(Container::Valid),
        ),
        (
            "reads-hook-type".to_owned(),
            Resolution::found(Function::from_object(
                &json!({"spec": {"image": "x", "args": ["${HOOK_TYPE}"]}}),
            )),
        ),
        ("no-image".to_owned(), Resolution::found(Container::NoImage)),
        ("ghost".to_owned(), Resolution::NotFound),
    ])
}

fn run_kind(
    kind: StashKind,
    new: Value,
    old: Option<Value>,
    with_tasks: bool,
    policy: FailurePolicy,
) -> Verdict {
    let (t, f) = (tasks(), functions());
    let new = SpecHooks::from_value(&new).unwrap();
    let old = old
        .map(|old| SpecHooks::from_value(&old).unwrap())
        .unwrap_or_default();
    let lookup = |name: &str| t.get(name);
    let lookup: TaskLookup = with_tasks.then_some(&lookup as _);
    judge(
        kind,
        &task_refs(kind, &new),
        &task_refs(kind, &old),
        lookup,
        |name| f.get(name),
        &policy.into(),
    )
}

fn run(new: Value) -> Verdict {
    run_kind(
        StashKind::BackupConfiguration,
        new,
        None,
        true,
        FailurePolicy::Deny,
    )
}

fn spec(name: Value, params: Value) -> Value {
    json!({"task": {"name": name, "params": params}})
}

fn lines(v: &Verdict) -> Vec<String> {
    v.denials.iter().map(ToString::to_string).collect()
}

#[test]
fn a_task_that_runs_with_what_it_is_given_is_allowed() {
    let v = run(spec(
        json!("pg-backup"),
        json!([{"name": "level", "value": "9"}]),
    ));
    assert_eq!(v, Verdict::default());
}

#[test]
fn no_name_or_an_empty_one_is_not_a_reference() {
    for spec in [
        json!({}),
        json!({"task": {}}),
        json!({"task": {"name": ""}}),
        json!({"task": "x"}),
        json!({"task": {"name": null}}),
    ] {
        assert_eq!(run(spec.clone()), Verdict::default(), "{spec}");
    }
}

#[test]
fn a_missing_task_is_denied_naming_the_path_the_task_and_the_fix() {
    assert_eq!(
        lines(&run(spec(json!("gone"), json!(null)))),
        ["spec.task.name: Task \"gone\" not found: install the Stash addon that provides it (kubectl get tasks.stash.appscode.com lists those installed), or correct the name"]
    );
}

#[test]
fn a_task_without_steps_is_denied() {
    assert_eq!(
        lines(&run(spec(json!("empty"), json!(null)))),
        ["spec.task.name: Task \"empty\" has no steps, so Stash refuses to run it (\"empty steps/containers\"): give the Task steps (kubectl edit tasks.stash.appscode.com empty), or name another Task"]
    );
}

#[test]
fn every_broken_step_is_one_line_naming_the_task_the_step_and_the_function() {
    assert_eq!(
        lines(&run(spec(json!("broken-steps"), json!(null)))),
        [
            "spec.task.name: Task \"broken-steps\", at its spec.steps[0].name: Function \"ghost\" not found: create the Function, or fix the Task (list them with: kubectl get functions.stash.appscode.com)",
            "spec.task.name: Task \"broken-steps\", at its spec.steps[1].name: Function \"no-image\" has no container image (its spec.image is not set): give the Function an image (kubectl edit functions.stash.appscode.com no-image), or name another Function",
            "spec.task.name: Task \"broken-steps\", at its spec.steps[2].name: no Function is named: fix the Task (kubectl edit tasks.stash.appscode.com broken-steps), or name another Task",
        ]
    );
}

#[test]
fn a_variable_no_input_sets_is_denied_and_an_unread_param_warned() {
    // pg-dump reads level, which neither its step nor task.params set.
    let v = run(spec(
        json!("pg-backup"),
        json!([{"name": "levle", "value": "9"}]),
    ));
    assert_eq!(
        lines(&v),
        ["spec.task.params: Function \"pg-dump\" (Task \"pg-backup\", spec.steps[0]) reads ${level}, which neither that step's params nor spec.task.params set and Stash does not provide: add {name: level, value: ...} to spec.task.params, or give it a default in the Function (${level:=...})"]
    );
    assert_eq!(
        v.warnings,
        ["spec.task.params[0]: no step of Task \"pg-backup\" reads ${levle} (they read level, NAMESPACE, outputDir): check the name"]
    );
}

#[test]
fn the_task_objects_own_variables_are_resolved_with_the_objects_inputs() {
    // REPOSITORY_SECRET_NAME is Stash's; CONFIG_NAME is nobody's until task.params sets it.
    assert_eq!(
        lines(&run(spec(json!("reads-repo"), json!(null)))),
        ["spec.task.params: Task \"reads-repo\" reads ${CONFIG_NAME}, which spec.task.params does not set and Stash does not provide: add {name: CONFIG_NAME, value: ...} to spec.task.params, or give it a default in the Task (${CONFIG_NAME:=...})"]
    );
    assert!(run(spec(
        json!("reads-repo"),
        json!([{"name": "CONFIG_NAME", "value": "c"}])
    ))
    .allowed());
}

#[test]
fn a_step_never_gets_the_variables_of_a_hook() {
    let v = run(spec(json!("needs-hook-type"), json!(null)));
    assert_eq!(v.denials.len(), 1);
    assert!(v.denials[0].what.contains("reads ${HOOK_TYPE}"), "{v:?}");
}

#[test]
fn names_that_cannot_be_names_and_values_of_the_wrong_type_are_denied_without_a_lookup() {
    assert_eq!(
        lines(&run(spec(json!("My_Task"), json!({"a": "b"})))),
        [
            "spec.task.params: must be a list of {name, value}, got a map: write params: [{name: NAME, value: VALUE}]",
            "spec.task.name: \"My_Task\" is not a valid Task name: Kubernetes names are lowercase letters, digits, '-' and '.', start and end with a letter or digit, and are at most 253 characters: name the Task that runs it (list those installed with: kubectl get tasks.stash.appscode.com)",
        ]
    );
    assert_eq!(
        lines(&run(spec(json!(7), json!(null)))),
        ["spec.task.name: must be a string, got a number: name the Task that runs it (list those installed with: kubectl get tasks.stash.appscode.com)"]
    );
}

#[test]
fn without_a_task_source_names_are_not_checked_but_warned() {
    let v = run_kind(
        StashKind::BackupConfiguration,
        spec(json!("gone"), json!(null)),
        None,
        false,
        FailurePolicy::Deny,
    );
    assert!(v.allowed());
    assert_eq!(
        v.warnings,
        ["spec.task.name: Task \"gone\" not checked: there are no Tasks to check it against (the cluster does not serve them: their CRD is not installed; or the catalog and files checked hold none)"]
    );
}

#[test]
fn a_blueprints_templated_name_is_filled_in_per_target_and_not_checked() {
    let v = run_kind(
        StashKind::BackupBlueprint,
        spec(json!("postgres-backup-${TARGET_APP_VERSION}"), json!(null)),
        None,
        true,
        FailurePolicy::Deny,
    );
    assert!(v.allowed());
    assert_eq!(
        v.warnings,
        ["spec.task.name: Task \"postgres-backup-${TARGET_APP_VERSION}\" is filled in per target when Stash creates each BackupConfiguration from this blueprint: not checked here"]
    );
    // A literal name in a blueprint is judged, and in any other kind `${` is not a name.
    assert!(!run_kind(
        StashKind::BackupBlueprint,
        spec(json!("gone"), json!(null)),
        None,
        true,
        FailurePolicy::Deny
    )
    .allowed());
    assert!(
        lines(&run(spec(json!("pg-${X}"), json!(null))))[0].contains("is not a valid Task name")
    );
}

#[test]
fn batches_name_a_task_per_member_with_its_path() {
    let v = run_kind(
        StashKind::BackupBatch,
        json!({"task": {"name": "gone"}, "members": [{"task": {"name": "pg-backup", "params": [{"name": "level", "value": "1"}]}}, {"task": {"name": "gone"}}]}),
        None,
        true,
        FailurePolicy::Deny,
    );
    assert_eq!(
        lines(&v),
        ["spec.members[1].task.name: Task \"gone\" not found: install the Stash addon that provides it (kubectl get tasks.stash.appscode.com lists those installed), or correct the name"]
    );
}

#[test]
fn an_unchanged_broken_reference_only_warns_on_update() {
    let old = spec(json!("gone"), json!([{"name": "a", "value": "1"}]));
    // Unchanged, with another field edited: allowed with the reason.
    let v = run_kind(
        StashKind::BackupConfiguration,
        old.clone(),
        Some(old.clone()),
        true,
        FailurePolicy::Deny,
    );
    assert!(v.allowed());
    assert_eq!(
        v.warnings,
        ["spec.task.name: Task \"gone\" not found; allowed because this reference is unchanged, but the task will fail until it is fixed"]
    );
    // Another broken name: denied.
    let v = run_kind(
        StashKind::BackupConfiguration,
        spec(json!("empty"), json!(null)),
        Some(old),
        true,
        FailurePolicy::Deny,
    );
    assert!(!v.allowed());
    // The same Task, its inputs changed: the Task's own problems still only warn, a variable the
    // new inputs leave unset is denied.
    let old = spec(json!("broken-steps"), json!(null));
    let v = run_kind(
        StashKind::BackupConfiguration,
        spec(json!("broken-steps"), json!([{"name": "x", "value": "1"}])),
        Some(old),
        true,
        FailurePolicy::Deny,
    );
    assert!(v.allowed(), "{v:?}");
    assert_eq!(v.warnings.len(), 3);
}

#[test]
fn tasks_or_functions_that_could_not_be_looked_up_follow_the_failure_policy() {
    let v = run(spec(json!("unreachable"), json!(null)));
    assert_eq!(
        lines(&v),
        ["spec.task.name: Task \"unreachable\" could not be verified: the Kubernetes API did not answer within 2000 ms: retry once the webhook can read Tasks"]
    );
    let v = run_kind(
        StashKind::BackupConfiguration,
        spec(json!("unreachable"), json!(null)),
        None,
        true,
        FailurePolicy::Allow,
    );
    assert!(v.allowed());
    assert_eq!(
        v.warnings,
        ["spec.task.name: Task \"unreachable\" could not be verified: the Kubernetes API did not answer within 2000 ms; allowed without verification"]
    );
}

#[test]
fn a_task_state_says_whether_and_why_it_cannot_run() {
    let f = functions();
    let state = |name: &str| match &tasks()[name] {
        Resolution::Found(t) => t.state(|n| f.get(n)).to_string(),
        _ => unreachable!(),
    };
    assert_eq!(state("pg-backup"), "can run");
    assert_eq!(state("empty"), "has no steps");
    assert_eq!(
        state("broken-steps"),
        "spec.steps[0].name: Function \"ghost\" not found"
    );
}

#[test]
fn the_denial_counts_a_task_as_one_reference_when_capped() {
    let mut v = Verdict::default();
    for i in 0..25 {
        v.denials.push(Problem {
            path: FieldPath::from(format!("spec.members[{}].task.name", i % 2).as_str()),
            what: "x".into(),
            fix: "y".into(),
        });
    }
    assert!(v.message().ends_with("... and 5 more problems in 2 more tasks, not listed (stash-webhook check -f FILE lists them all)"), "{}", v.message());
}
