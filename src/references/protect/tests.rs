use super::*;
use crate::references::index::ObjectKey;
use crate::stash::StashKind;
use serde_json::json;

fn referent(kind: StashKind, name: &str, path: &str) -> Referent {
    Referent {
        object: ObjectKey {
            kind,
            namespace: Some("demo".into()),
            name: name.into(),
        },
        path: path.into(),
    }
}

fn referents(n: usize) -> Vec<Referent> {
    (0..n)
        .map(|i| {
            referent(
                StashKind::BackupConfiguration,
                &format!("app-{i}"),
                "spec.hooks.preBackup",
            )
        })
        .collect()
}

/// `n` objects naming a Task in `spec.task`.
fn task_referents(n: usize, prefix: &str) -> Vec<Referent> {
    (0..n)
        .map(|i| {
            referent(
                StashKind::BackupConfiguration,
                &format!("{prefix}-{i}"),
                "spec.task",
            )
        })
        .collect()
}

const ANNOTATE: &str = "change or delete them first, or annotate the Function with stash-webhook.stash.appscode.com/allow-breaking-references=true";
const ANNOTATE_TASK: &str = "change or delete them first, or annotate the Task with stash-webhook.stash.appscode.com/allow-breaking-references=true";
const ALLOWED: &str =
    "allowed by the annotation stash-webhook.stash.appscode.com/allow-breaking-references=true";

#[test]
fn deleting_a_function_in_use_is_denied_naming_its_hooks() {
    let reply = judge(
        "mysql-hook-executor",
        &Change::Delete,
        None,
        &Users::hooks(referents(3)),
        false,
    );
    assert!(!reply.allowed);
    assert_eq!(
        reply.message,
        format!("Function \"mysql-hook-executor\" is used by 3 hooks: demo/BackupConfiguration/app-0 (spec.hooks.preBackup), demo/BackupConfiguration/app-1 (spec.hooks.preBackup), demo/BackupConfiguration/app-2 (spec.hooks.preBackup): {ANNOTATE}")
    );
    let many = judge(
        "f",
        &Change::Delete,
        None,
        &Users::hooks(referents(12)),
        false,
    );
    assert!(many.message.starts_with(
        "Function \"f\" is used by 12 hooks: demo/BackupConfiguration/app-0 (spec.hooks.preBackup), "
    ));
    assert!(
        many.message
            .contains("app-9 (spec.hooks.preBackup) and 2 more: "),
        "{}",
        many.message
    );
    assert!(!many.message.contains("app-10"));
}

#[test]
fn unreferenced_or_annotated_functions_may_go() {
    assert_eq!(
        judge("f", &Change::Delete, None, &Users::default(), false),
        Reply::allow()
    );
    let reply = judge(
        "f",
        &Change::Delete,
        None,
        &Users::hooks(referents(1)),
        true,
    );
    assert!(reply.allowed);
    assert_eq!(
        reply.warnings,
        [format!("Function \"f\" is used by 1 hook: demo/BackupConfiguration/app-0 (spec.hooks.preBackup); {ALLOWED}: those hooks fail until they name a Function that can run")]
    );
}

#[test]
fn an_update_that_breaks_a_function_in_use_is_denied_other_updates_allowed() {
    let broken = Change::of(
        &Operation::Update,
        Some(&Container::Valid),
        Some(&Container::NoImage),
    );
    assert_eq!(broken, Change::Breaks(Container::NoImage));
    let reply = judge(
        "f",
        &broken,
        Some(&Container::NoImage),
        &Users::hooks(referents(1)),
        false,
    );
    assert_eq!(
        reply.message,
        format!("spec.image: this change leaves Function \"f\" unable to run (has no container image), and it is used by 1 hook: demo/BackupConfiguration/app-0 (spec.hooks.preBackup): {ANNOTATE}")
    );
    assert_eq!(
        reply.warnings,
        ["spec.image: Function \"f\" has no container image: a hook that names it fails until it has one (set spec.image to a container image)"]
    );
    let fine = Change::of(
        &Operation::Update,
        Some(&Container::Valid),
        Some(&Container::Valid),
    );
    assert_eq!(
        judge(
            "f",
            &fine,
            Some(&Container::Valid),
            &Users::hooks(referents(1)),
            false
        ),
        Reply::allow()
    );
    // Already broken before: not this change's doing.
    let still = Change::of(
        &Operation::Update,
        Some(&Container::NoImage),
        Some(&Container::NoImage),
    );
    assert!(
        judge(
            "f",
            &still,
            Some(&Container::NoImage),
            &Users::hooks(referents(1)),
            false
        )
        .allowed
    );
}

#[test]
fn a_function_without_a_usable_image_is_created_with_a_warning() {
    let reply = judge(
        "f",
        &Change::of(&Operation::Create, None, Some(&Container::NoImage)),
        Some(&Container::NoImage),
        &Users::default(),
        false,
    );
    assert!(reply.allowed);
    assert_eq!(reply.warnings.len(), 1);
    assert!(reply.warnings[0].starts_with("spec.image: Function \"f\" has no container image"));
}

/// Who uses `f` through Task `t` (its step 0), named by two objects, one of them a batch member.
fn through_task() -> TaskUsers {
    TaskUsers {
        task: "t".into(),
        steps: vec![0],
        objects: vec![
            referent(StashKind::BackupConfiguration, "a", "spec.task"),
            referent(StashKind::BackupBatch, "b", "spec.members[2].task"),
        ],
    }
}

#[test]
fn a_function_used_only_through_a_task_step_is_denied_naming_the_task_and_its_objects() {
    let users = Users {
        hooks: Vec::new(),
        tasks: vec![through_task()],
    };
    let reply = judge("f", &Change::Delete, None, &users, false);
    assert!(!reply.allowed);
    assert_eq!(
        reply.message,
        format!("Function \"f\" is used by Task \"t\" (spec.steps[0]), named by 2 objects: demo/BackupConfiguration/a (spec.task), demo/BackupBatch/b (spec.members[2].task): {ANNOTATE}")
    );
    let annotated = judge("f", &Change::Delete, None, &users, true);
    assert!(annotated.allowed);
    assert_eq!(
        annotated.warnings,
        [format!("Function \"f\" is used by Task \"t\" (spec.steps[0]), named by 2 objects: demo/BackupConfiguration/a (spec.task), demo/BackupBatch/b (spec.members[2].task); {ALLOWED}: those Tasks fail until their steps name a Function that can run")]
    );
}

#[test]
fn a_function_used_by_hooks_and_tasks_names_both() {
    let mut second = through_task();
    second.task = "u".into();
    second.steps = vec![1, 3];
    second.objects = task_referents(1, "c");
    let users = Users {
        hooks: referents(1),
        tasks: vec![through_task(), second],
    };
    let broken = Change::Breaks(Container::NoImage);
    let reply = judge("f", &broken, Some(&Container::NoImage), &users, false);
    assert_eq!(
        reply.message,
        format!("spec.image: this change leaves Function \"f\" unable to run (has no container image), and it is used by 1 hook: demo/BackupConfiguration/app-0 (spec.hooks.preBackup) and by Task \"t\" (spec.steps[0]), named by 2 objects: demo/BackupConfiguration/a (spec.task), demo/BackupBatch/b (spec.members[2].task) and by Task \"u\" (spec.steps[1], spec.steps[3]), named by 1 object: demo/BackupConfiguration/c-0 (spec.task): {ANNOTATE}")
    );
    let annotated = judge("f", &broken, Some(&Container::NoImage), &users, true);
    assert!(annotated.warnings[1].ends_with(&format!(
        "; {ALLOWED}: those hooks and Tasks fail until they name a Function that can run"
    )));
}

#[test]
fn a_function_with_many_users_names_ten_objects_and_five_tasks_and_counts_the_rest() {
    let tasks: Vec<TaskUsers> = (0..7)
        .map(|i| TaskUsers {
            task: format!("t{i}"),
            steps: vec![0],
            objects: task_referents(3, &format!("o{i}")),
        })
        .collect();
    let users = Users {
        hooks: referents(8),
        tasks,
    };
    let reply = judge("f", &Change::Delete, None, &users, false);
    // Eight hooks, then two of Task t0's objects; t1..t4 counted; t5 and t6 summed up.
    let hooks: Vec<String> = referents(8).iter().map(ToString::to_string).collect();
    assert_eq!(
        reply.message,
        format!(
            "Function \"f\" is used by 8 hooks: {} and by Task \"t0\" (spec.steps[0]), named by 3 objects: demo/BackupConfiguration/o0-0 (spec.task), demo/BackupConfiguration/o0-1 (spec.task) and 1 more and by Task \"t1\" (spec.steps[0]), named by 3 objects and by Task \"t2\" (spec.steps[0]), named by 3 objects and by Task \"t3\" (spec.steps[0]), named by 3 objects and by Task \"t4\" (spec.steps[0]), named by 3 objects and by 2 more Tasks, named by 6 objects: {ANNOTATE}",
            hooks.join(", ")
        )
    );
}

#[test]
fn users_are_the_hooks_and_the_objects_of_the_tasks_naming_the_function() {
    let listed = Listed {
        hooks: referents(1),
        tasks: BTreeMap::from([
            ("t".to_owned(), through_task().objects),
            ("unrelated".to_owned(), task_referents(1, "x")),
        ]),
    };
    let naming = BTreeMap::from([("t".to_owned(), vec![0]), ("unused".to_owned(), vec![2])]);
    let users = Users::of(listed, &naming);
    assert_eq!(users.hooks, referents(1));
    assert_eq!(
        users.tasks,
        [through_task()],
        "a Task no object names uses nothing"
    );
}

fn task(steps: serde_json::Value) -> Task {
    Task {
        steps: Task::from_steps(Some(&steps)),
        variables: Vec::new(),
    }
}

fn functions() -> HashMap<String, Resolution<Function>> {
    HashMap::from([
        ("ok".to_owned(), Resolution::found(Container::Valid)),
        ("no-image".to_owned(), Resolution::found(Container::NoImage)),
        ("gone".to_owned(), Resolution::NotFound),
        ("unknown".to_owned(), Resolution::Unverified("down".into())),
    ])
}

const LIST: &str = "list them with: kubectl get functions.stash.appscode.com";

#[test]
fn a_task_without_steps_or_with_broken_steps_is_written_with_a_warning_per_problem() {
    let f = functions();
    let lookup = |n: &str| f.get(n);
    assert_eq!(
        task_warnings("t", &task(json!([])), lookup),
        ["spec.steps: Task \"t\" has no steps: an object that names it fails until it has some (Stash refuses to run a Task without steps: \"empty steps/containers\")"]
    );
    assert_eq!(
        task_warnings(
            "t",
            &task(json!([{"name": "ok"}, {"name": "gone"}, {"name": "no-image"}, {"params": []}, {"name": "Bad_Name"}, {"name": "unknown"}])),
            lookup
        ),
        [
            format!("spec.steps[1].name: Function \"gone\" not found: an object that names Task \"t\" fails until this step can run: create the Function, or name another one in the step ({LIST})"),
            "spec.steps[2].name: Function \"no-image\" has no container image (its spec.image is not set): an object that names Task \"t\" fails until this step can run: give the Function an image (kubectl edit functions.stash.appscode.com no-image), or name another Function".to_owned(),
            format!("spec.steps[3].name: names no Function: an object that names Task \"t\" fails until this step can run: name the Function this step runs ({LIST})"),
            format!("spec.steps[4].name: \"Bad_Name\" is not a valid Function name: an object that names Task \"t\" fails until this step can run: name the Function this step runs ({LIST})"),
        ]
    );
    assert!(task_warnings(
        "t",
        &task(json!([{"name": "ok"}, {"name": "unknown"}])),
        lookup
    )
    .is_empty());
}

#[test]
fn a_task_change_breaks_it_only_when_it_could_run_before() {
    let f = functions();
    let state = |steps| task(steps).state(|n: &str| f.get(n));
    let runs = state(json!([{"name": "ok"}]));
    let empty = state(json!([]));
    let gone = state(json!([{"name": "ok"}, {"name": "gone"}]));
    assert_eq!(
        TaskChange::of(&Operation::Update, Some(&runs), Some(&empty)),
        TaskChange::Breaks(TaskState::NoSteps)
    );
    assert_eq!(
        TaskChange::of(&Operation::Update, Some(&runs), Some(&gone)),
        TaskChange::Breaks(TaskState::BrokenStep {
            step: 1,
            what: "Function \"gone\" not found".into()
        })
    );
    assert_eq!(
        TaskChange::of(&Operation::Update, Some(&empty), Some(&gone)),
        TaskChange::Other,
        "already broken before"
    );
    assert_eq!(
        TaskChange::of(&Operation::Update, Some(&runs), Some(&runs)),
        TaskChange::Other
    );
    assert_eq!(
        TaskChange::of(&Operation::Create, None, Some(&empty)),
        TaskChange::Other
    );
    assert_eq!(
        TaskChange::of(&Operation::Delete, None, None),
        TaskChange::Delete
    );
}

#[test]
fn deleting_a_task_in_use_is_denied_naming_its_objects_unless_annotated() {
    let users = through_task().objects;
    let reply = judge_task("t", &TaskChange::Delete, Vec::new(), &users, false);
    assert!(!reply.allowed);
    assert_eq!(
        reply.message,
        format!("Task \"t\" is used by 2 objects: demo/BackupConfiguration/a (spec.task), demo/BackupBatch/b (spec.members[2].task): {ANNOTATE_TASK}")
    );
    let annotated = judge_task("t", &TaskChange::Delete, Vec::new(), &users, true);
    assert!(annotated.allowed);
    assert_eq!(
        annotated.warnings,
        [format!("Task \"t\" is used by 2 objects: demo/BackupConfiguration/a (spec.task), demo/BackupBatch/b (spec.members[2].task); {ALLOWED}: those objects fail until they name a Task that can run")]
    );
    assert_eq!(
        judge_task("t", &TaskChange::Delete, Vec::new(), &[], false),
        Reply::allow()
    );
    let many = judge_task(
        "t",
        &TaskChange::Delete,
        Vec::new(),
        &task_referents(13, "o"),
        false,
    );
    assert!(
        many.message.starts_with(
            "Task \"t\" is used by 13 objects: demo/BackupConfiguration/o-0 (spec.task), "
        ) && many.message.contains("o-9 (spec.task) and 3 more: ")
            && !many.message.contains("o-10"),
        "{}",
        many.message
    );
}

#[test]
fn an_update_that_breaks_a_task_in_use_is_denied_with_the_step_first() {
    let users = task_referents(1, "a");
    let warning = "spec.steps[1].name: Function \"gone\" not found: ...".to_owned();
    let broken = TaskChange::Breaks(TaskState::BrokenStep {
        step: 1,
        what: "Function \"gone\" not found".into(),
    });
    let reply = judge_task("t", &broken, vec![warning.clone()], &users, false);
    assert_eq!(
        reply.message,
        format!("spec.steps[1].name: this change leaves Task \"t\" unable to run (Function \"gone\" not found), and it is used by 1 object: demo/BackupConfiguration/a-0 (spec.task): {ANNOTATE_TASK}")
    );
    assert_eq!(reply.warnings, [warning]);
    let emptied = TaskChange::Breaks(TaskState::NoSteps);
    assert_eq!(
        judge_task("t", &emptied, Vec::new(), &users, false).message,
        format!("spec.steps: this change leaves Task \"t\" unable to run (it has no steps), and it is used by 1 object: demo/BackupConfiguration/a-0 (spec.task): {ANNOTATE_TASK}")
    );
    let annotated = judge_task("t", &emptied, Vec::new(), &users, true);
    assert!(annotated.allowed);
    assert_eq!(
        annotated.warnings,
        [format!("spec.steps: this change leaves Task \"t\" unable to run (it has no steps), and it is used by 1 object: demo/BackupConfiguration/a-0 (spec.task); {ALLOWED}: those objects fail until they name a Task that can run")]
    );
    // Not in use: allowed, with what is wrong as a warning.
    let unused = judge_task("t", &emptied, vec!["w".into()], &[], false);
    assert!(unused.allowed);
    assert_eq!(unused.warnings, ["w"]);
}
