use super::*;
use crate::stash::{executor_refs, SpecHooks, StashKind};
use serde_json::{json, Value};

fn refs(spec: &SpecHooks) -> Vec<ExecutorRef<'_>> {
    executor_refs(StashKind::BackupConfiguration, spec)
}

fn pre(executor: Value) -> Value {
    json!({"hooks": {"preBackup": {"exec": {"command": ["/bin/sh"]}, "executor": executor}}})
}

/// A Function that reads `outputDir` and `level` (no defaults), `PG_VERSION` (a default) and
/// `NAMESPACE` (Stash provides it).
fn pg_dump() -> Resolution {
    Resolution::found(Function::from_object(&json!({"spec": {
        "image": "postgres:${PG_VERSION:=16}",
        "args": ["--out=${outputDir}", "--level=${level}", "--ns=${NAMESPACE}"]
    }})))
}

fn lookups() -> HashMap<String, Resolution> {
    HashMap::from([
        ("pg-dump".to_owned(), pg_dump()),
        (
            "needs-cluster-id".to_owned(),
            Resolution::found(Function::from_object(
                &json!({"spec": {"image": "x", "args": ["${CLUSTER_ID}"]}}),
            )),
        ),
        ("good".to_owned(), Resolution::found(Container::Valid)),
        ("no-image".to_owned(), Resolution::found(Container::NoImage)),
        (
            "bad-image".to_owned(),
            Resolution::found(Container::from_image(Some(&json!("Mysql Hook")))),
        ),
        (
            "number-image".to_owned(),
            Resolution::found(Container::from_image(Some(&json!(7)))),
        ),
        ("ghost".to_owned(), Resolution::NotFound),
        (
            "unreachable".to_owned(),
            Resolution::Unverified("the Kubernetes API did not answer within 2000 ms".into()),
        ),
    ])
}

fn run(new: Value, old: Option<Value>, policy: FailurePolicy) -> Verdict {
    let l = lookups();
    let new = SpecHooks::from_value(&new).unwrap();
    let old = old
        .map(|old| SpecHooks::from_value(&old).unwrap())
        .unwrap_or_default();
    judge(&refs(&new), &refs(&old), |n| l.get(n), &policy.into())
}

fn denial(new: Value) -> String {
    let v = run(new, None, FailurePolicy::Deny);
    assert!(!v.allowed(), "expected a denial");
    v.message()
}

#[test]
fn allows_a_valid_executor() {
    let v = run(
        pre(json!({"functionName": "pg-dump", "params": {"outputDir": "/tmp", "level": "9"}})),
        None,
        FailurePolicy::Deny,
    );
    assert_eq!(v, Verdict::default());
}

#[test]
fn each_denial_reason_has_its_message() {
    let list = "list them with: kubectl get functions.stash.appscode.com";
    let cases = [
        (
            json!({}),
            format!("spec.hooks.preBackup.executor.functionName: is required: name the Function that runs this hook ({list})"),
        ),
        (
            json!({"functionName": ""}),
            format!("spec.hooks.preBackup.executor.functionName: must not be empty: name the Function that runs this hook ({list})"),
        ),
        (
            json!({"functionName": ["good"]}),
            format!("spec.hooks.preBackup.executor.functionName: must be a string, got a list: name the Function that runs this hook ({list})"),
        ),
        (
            json!("good"),
            "spec.hooks.preBackup.executor: must be a map, got a string: write executor: {functionName: NAME, params: {KEY: VALUE}}".to_owned(),
        ),
        (
            json!({"functionName": "My_Hook"}),
            format!("spec.hooks.preBackup.executor.functionName: \"My_Hook\" is not a valid Function name: Kubernetes names are lowercase letters, digits, '-' and '.', start and end with a letter or digit, and are at most 253 characters: name the Function that runs this hook ({list})"),
        ),
        (
            json!({"functionName": "ghost"}),
            format!("spec.hooks.preBackup.executor.functionName: Function \"ghost\" not found: create the Function, or fix the name ({list})"),
        ),
        (
            json!({"functionName": "no-image"}),
            "spec.hooks.preBackup.executor.functionName: Function \"no-image\" has no container image (its spec.image is not set): give the Function an image (kubectl edit functions.stash.appscode.com no-image), or name another Function".to_owned(),
        ),
        (
            json!({"functionName": "bad-image"}),
            "spec.hooks.preBackup.executor.functionName: Function \"bad-image\" has an invalid container image \"Mysql Hook\": it contains whitespace: fix spec.image on the Function (kubectl edit functions.stash.appscode.com bad-image)".to_owned(),
        ),
        (
            json!({"functionName": "number-image"}),
            "spec.hooks.preBackup.executor.functionName: Function \"number-image\" has an invalid container image: spec.image must be a string, got a number: fix spec.image on the Function (kubectl edit functions.stash.appscode.com number-image)".to_owned(),
        ),
        (
            json!({"functionName": "unreachable"}),
            "spec.hooks.preBackup.executor.functionName: Function \"unreachable\" could not be verified: the Kubernetes API did not answer within 2000 ms: retry once the webhook can read Functions".to_owned(),
        ),
        (
            json!({"functionName": "good", "params": {"": "x"}}),
            "spec.hooks.preBackup.executor.params[]: parameter name must not be empty: use letters, digits and '_', not starting with a digit, since the Function reads it as ${NAME}".to_owned(),
        ),
        (
            json!({"functionName": "good", "params": {"db-host": "x"}}),
            "spec.hooks.preBackup.executor.params[db-host]: parameter name \"db-host\" is invalid: use letters, digits and '_', not starting with a digit, since the Function reads it as ${NAME}".to_owned(),
        ),
        (
            json!({"functionName": "good", "params": ["a=b"]}),
            "spec.hooks.preBackup.executor.params: must be a map of parameter names to string values, got a list: write params: {KEY: VALUE}".to_owned(),
        ),
    ];
    for (executor, want) in cases {
        assert_eq!(denial(pre(executor.clone())), want, "executor {executor}");
    }
}

#[test]
fn reports_every_problem_one_per_line() {
    let spec = json!({"hooks": {
        "preBackup": {"executor": {"functionName": "ghost", "params": {"1st": "x", "ok": "y"}}},
        "postBackup": {"executor": {"functionName": "no-image"}}
    }});
    let msg = denial(spec);
    let lines: Vec<&str> = msg.lines().collect();
    assert_eq!(lines.len(), 3, "{msg}");
    assert!(lines[0]
        .starts_with("spec.hooks.preBackup.executor.functionName: Function \"ghost\" not found"));
    assert!(lines[1].starts_with(
        "spec.hooks.preBackup.executor.params[1st]: parameter name \"1st\" is invalid"
    ));
    assert!(lines[2].starts_with(
        "spec.hooks.postBackup.executor.functionName: Function \"no-image\" has no container image"
    ));
}

#[test]
fn unchanged_broken_references_are_warnings_on_update() {
    let spec = pre(json!({"functionName": "ghost", "params": {"bad-key": "x"}}));
    let v = run(spec.clone(), Some(spec), FailurePolicy::Deny);
    assert!(v.allowed());
    assert_eq!(
        v.warnings,
        [
            "spec.hooks.preBackup.executor.functionName: Function \"ghost\" not found; allowed because this reference is unchanged, but the hook will fail until it is fixed",
            "spec.hooks.preBackup.executor.params[bad-key]: parameter name \"bad-key\" is invalid; allowed because this reference is unchanged, but the hook will fail until it is fixed",
        ]
    );
}

#[test]
fn changed_or_new_references_are_denied_on_update() {
    let old = pre(json!({"functionName": "good"}));
    let v = run(
        pre(json!({"functionName": "ghost"})),
        Some(old.clone()),
        FailurePolicy::Deny,
    );
    assert!(!v.allowed());
    assert!(v.warnings.is_empty());

    // The same Function at another hook is a new reference there.
    let moved = json!({"hooks": {"postBackup": {"executor": {"functionName": "ghost"}}}});
    let v = run(
        moved,
        Some(pre(json!({"functionName": "ghost"}))),
        FailurePolicy::Deny,
    );
    assert_eq!(v.denials.len(), 1);
    assert_eq!(
        v.denials[0].path.as_str(),
        "spec.hooks.postBackup.executor.functionName"
    );

    // A new bad key beside an unchanged broken Function: the key is denied, the Function warned.
    let v = run(
        pre(json!({"functionName": "ghost", "params": {"new-key": "x"}})),
        Some(pre(json!({"functionName": "ghost"}))),
        FailurePolicy::Deny,
    );
    assert_eq!(v.denials.len(), 1);
    assert_eq!(
        v.denials[0].path.as_str(),
        "spec.hooks.preBackup.executor.params[new-key]"
    );
    assert_eq!(v.warnings.len(), 1);
}

#[test]
fn lookup_failures_follow_the_failure_policy() {
    let spec = pre(json!({"functionName": "unreachable"}));
    assert!(!run(spec.clone(), None, FailurePolicy::Deny).allowed());
    let v = run(spec, None, FailurePolicy::Allow);
    assert!(v.allowed());
    assert_eq!(
        v.warnings,
        ["spec.hooks.preBackup.executor.functionName: Function \"unreachable\" could not be verified: the Kubernetes API did not answer within 2000 ms; allowed without verification"]
    );
}

#[test]
fn each_name_is_resolved_once() {
    let spec = json!({"hooks": {
        "preBackup": {"executor": {"functionName": "a"}},
        "postBackup": {"executor": {"functionName": "a"}}
    }});
    let spec = SpecHooks::from_value(&spec).unwrap();
    assert_eq!(names_to_resolve(&refs(&spec)), ["a"]);
}

#[test]
fn parameter_names_are_shell_variable_names() {
    for ok in ["a", "A_1", "_x", "outputDir"] {
        assert!(valid_param_name(ok), "{ok}");
    }
    for bad in ["", "1a", "a-b", "a.b", "a b", "${a}", "é"] {
        assert!(!valid_param_name(bad), "{bad}");
    }
}

#[test]
fn function_names_must_be_object_names() {
    for (name, valid) in [
        ("mysql-hook-executor", true),
        ("a", true),
        ("a.b-c.d9", true),
        ("9to5", true),
        ("", false),
        ("-a", false),
        ("a-", false),
        ("a..b", false),
        (".a", false),
        ("A", false),
        ("a_b", false),
        ("a b", false),
        ("é", false),
    ] {
        assert_eq!(valid_object_name(name), valid, "{name:?}");
    }
    assert!(valid_object_name(&"a".repeat(253)));
    assert!(!valid_object_name(&"a".repeat(254)));
}

#[test]
fn a_name_that_cannot_exist_is_not_looked_up_and_is_echoed_cut() {
    let long = "x".repeat(100_000);
    let spec = SpecHooks::from_value(&pre(json!({"functionName": long}))).unwrap();
    assert!(names_to_resolve(&refs(&spec)).is_empty());
    let message = denial(pre(json!({"functionName": "X".repeat(300)})));
    assert!(
        message.starts_with(&format!(
            "spec.hooks.preBackup.executor.functionName: \"{}... (300 characters)\" is not a valid Function name",
            "X".repeat(100)
        )),
        "{message}"
    );
    assert!(message.len() < 500, "{}", message.len());
}

#[test]
fn long_denials_list_twenty_problems_then_count_the_rest() {
    // A BackupBatch with 30 members, each with two broken hooks.
    let member = json!({"hooks": {
        "preBackup": {"executor": {"functionName": "ghost"}},
        "postBackup": {"executor": {"functionName": "no-image"}}
    }});
    let spec = json!({"members": vec![member; 30]});
    let l = lookups();
    let spec = SpecHooks::from_value(&spec).unwrap();
    let verdict = judge(
        &executor_refs(StashKind::BackupBatch, &spec),
        &[],
        |n| l.get(n),
        &FailurePolicy::Deny.into(),
    );
    assert_eq!(verdict.denials.len(), 60);
    let message = verdict.message();
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines.len(), 21);
    assert!(
        lines[19].starts_with(
            "spec.members[9].hooks.postBackup.executor.functionName: Function \"no-image\""
        ),
        "{}",
        lines[19]
    );
    assert_eq!(
        lines[20],
        "... and 40 more problems in 40 more hooks, not listed (stash-webhook check -f FILE lists them all)"
    );
}

#[test]
fn long_warning_lists_are_capped_too() {
    let verdict = Verdict {
        denials: Vec::new(),
        warnings: (0..25).map(|i| format!("w{i}")).collect(),
    };
    let warnings = verdict.capped_warnings();
    assert_eq!(warnings.len(), 21);
    assert_eq!(warnings[19], "w19");
    assert_eq!(
        warnings[20],
        "... and 5 more warnings, not listed (stash-webhook check -f FILE lists them all)"
    );
    let few = Verdict {
        denials: Vec::new(),
        warnings: vec!["w".into(); 20],
    };
    assert_eq!(few.capped_warnings(), vec!["w".to_owned(); 20]);
}

#[test]
fn values_echoed_in_messages_are_cut_to_a_readable_length() {
    assert_eq!(shown("short"), "short");
    assert_eq!(shown(&"é".repeat(100)), "é".repeat(100));
    assert_eq!(
        shown(&"é".repeat(101)),
        format!("{}... (101 characters)", "é".repeat(100))
    );
}

#[test]
fn variables_the_function_reads_without_a_value_are_denied_one_line_each() {
    assert_eq!(
        denial(pre(json!({"functionName": "pg-dump", "params": {"level": "9"}}))),
        "spec.hooks.preBackup.executor.params: Function \"pg-dump\" reads ${outputDir}, which this hook does not set and Stash does not provide: add params.outputDir, or give it a default in the Function (${outputDir:=...})"
    );
    assert_eq!(
        denial(pre(json!({"functionName": "pg-dump"}))),
        "spec.hooks.preBackup.executor.params: Function \"pg-dump\" reads ${outputDir}, which this hook does not set and Stash does not provide: add params.outputDir, or give it a default in the Function (${outputDir:=...})\n\
         spec.hooks.preBackup.executor.params: Function \"pg-dump\" reads ${level}, which this hook does not set and Stash does not provide: add params.level, or give it a default in the Function (${level:=...})"
    );
}

#[test]
fn parameters_the_function_never_reads_are_warnings_naming_the_closest() {
    let v = run(
        pre(
            json!({"functionName": "pg-dump", "params": {"outptDir": "/tmp", "outputDir": "/tmp", "level": "9"}}),
        ),
        None,
        FailurePolicy::Deny,
    );
    assert!(v.allowed());
    assert_eq!(
        v.warnings,
        ["spec.hooks.preBackup.executor.params[outptDir]: Function \"pg-dump\" does not read ${outptDir} (it reads outputDir, level, NAMESPACE, PG_VERSION): check the name"]
    );
}

#[test]
fn variables_the_operator_says_stash_provides_need_no_parameter() {
    let l = lookups();
    let spec = SpecHooks::from_value(&pre(json!({"functionName": "needs-cluster-id"}))).unwrap();
    let strict = judge(&refs(&spec), &[], |n| l.get(n), &FailurePolicy::Deny.into());
    assert_eq!(
        strict.message(),
        "spec.hooks.preBackup.executor.params: Function \"needs-cluster-id\" reads ${CLUSTER_ID}, which this hook does not set and Stash does not provide: add params.CLUSTER_ID, or give it a default in the Function (${CLUSTER_ID:=...})"
    );
    let policy = Policy {
        extra_variables: vec!["CLUSTER_ID".into()],
        ..Policy::default()
    };
    assert_eq!(
        judge(&refs(&spec), &[], |n| l.get(n), &policy),
        Verdict::default()
    );
}

#[test]
fn members_of_a_batch_are_checked_for_parameters_too() {
    let l = lookups();
    let spec = SpecHooks::from_value(&json!({"members": [
        {"hooks": {"preBackup": {"executor": {"functionName": "pg-dump", "params": {"outputDir": "/a", "level": "1"}}}}},
        {"hooks": {"postBackup": {"executor": {"functionName": "pg-dump", "params": {"outputDir": "/b"}}}}}
    ]}))
    .unwrap();
    let v = judge(
        &executor_refs(StashKind::BackupBatch, &spec),
        &[],
        |n| l.get(n),
        &FailurePolicy::Deny.into(),
    );
    assert_eq!(
        v.message(),
        "spec.members[1].hooks.postBackup.executor.params: Function \"pg-dump\" reads ${level}, which this hook does not set and Stash does not provide: add params.level, or give it a default in the Function (${level:=...})"
    );
}

#[test]
fn an_unchanged_executor_missing_a_parameter_is_a_warning_on_update() {
    let old = pre(json!({"functionName": "pg-dump", "params": {"level": "9"}}));
    let kept = run(old.clone(), Some(old.clone()), FailurePolicy::Deny);
    assert!(kept.allowed());
    assert_eq!(
        kept.warnings,
        ["spec.hooks.preBackup.executor.params: Function \"pg-dump\" reads ${outputDir}, which this hook does not set and Stash does not provide; allowed because this reference is unchanged, but the hook will fail until it is fixed"]
    );
    // Changing which parameters it sets, but still not outputDir, is judged as new.
    let changed =
        pre(json!({"functionName": "pg-dump", "params": {"level": "9", "format": "tar"}}));
    assert!(!run(changed, Some(old), FailurePolicy::Deny).allowed());
}

#[test]
fn a_function_whose_text_stash_cannot_substitute_is_denied() {
    let broken = Resolution::found(Function::from_object(
        &json!({"spec": {"image": "busybox", "args": ["--out=${outputDir:-/tmp", "ok"]}}),
    ));
    let spec = SpecHooks::from_value(&pre(json!({"functionName": "broken"}))).unwrap();
    let v = judge(&refs(&spec), &[], |_| Some(&broken), &Policy::default());
    assert_eq!(
        v.denials.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["spec.hooks.preBackup.executor.functionName: Function \"broken\" has a ${ that Stash cannot substitute, at \"${outputDir:-/tmp\", so Stash fails it with \"bad substitution\": fix the reference in the Function (kubectl edit functions.stash.appscode.com broken): write ${NAME}, or ${NAME:=default}, or $${ for a literal ${"]
    );
    // Text that only looks like a reference is fine.
    let fine = Resolution::found(Function::from_object(
        &json!({"spec": {"image": "busybox", "args": ["$${HOME}", "$PATH", "${outputDir:-/tmp}"]}}),
    ));
    assert!(judge(&refs(&spec), &[], |_| Some(&fine), &Policy::default()).allowed());
}
