//! `stash-webhook check`, run as a CI pipeline runs it: real files from `tests/fixtures/check/`,
//! standard input, directories, exit codes, and the exact lines it prints.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

mod support;

const DIR: &str = "tests/fixtures/check";

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stash-webhook"))
        .arg("check")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

const TYPO: &str = "tests/fixtures/check/denied.yaml: BackupConfiguration demo/typo: spec.hooks.preBackup.executor.functionName: Function \"mysql-hook-exector\" not found: create the Function, or fix the name (list them with: kubectl get functions.stash.appscode.com)";
const NO_IMAGE: &str = "tests/fixtures/check/denied.yaml: BackupBatch demo/batch: spec.members[0].hooks.postBackup.executor.functionName: Function \"no-image-fn\" has no container image (its spec.image is not set): give the Function an image (kubectl edit functions.stash.appscode.com no-image-fn), or name another Function";
const UNREAD_PARAM: &str = "tests/fixtures/check/denied.yaml: BackupBatch demo/batch: warning: spec.members[0].hooks.postBackup.executor.params[level]: Function \"no-image-fn\" does not read ${level} (it reads no variables): check the name";

#[test]
fn allowed_inputs_exit_0_and_count_what_was_skipped() {
    let output = check(&["-f", &format!("{DIR}/valid")]);
    assert_eq!(
        stdout(&output),
        "1 object judged, 0 denied, 0 warned, 2 skipped\n"
    );
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn warnings_alone_still_exit_0() {
    let output = check(&[
        "-f",
        &format!("{DIR}/warned.yaml"),
        "--functions-file",
        &format!("{DIR}/valid/functions.yaml"),
    ]);
    assert_eq!(
        stdout(&output),
        "tests/fixtures/check/warned.yaml: BackupConfiguration demo/warned: warning: spec.hooks.postBackup.executor.params[hots]: Function \"mysql-hook-executor\" does not read ${hots} (it reads host, port): check the name\n\
         1 object judged, 0 denied, 1 warned, 0 skipped\n"
    );
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn denials_exit_1_with_one_line_per_problem() {
    let output = check(&["-f", &format!("{DIR}/denied.yaml")]);
    assert_eq!(
        stdout(&output),
        format!(
            "{TYPO}\n{NO_IMAGE}\n{UNREAD_PARAM}\n3 objects judged, 2 denied, 0 warned, 1 skipped\n"
        )
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn standard_input_is_read_for_a_dash() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stash-webhook"))
        .args(["check", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let text = std::fs::read_to_string(format!("{DIR}/denied.yaml")).unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let want = format!(
        "{TYPO}\n{NO_IMAGE}\n{UNREAD_PARAM}\n3 objects judged, 2 denied, 0 warned, 1 skipped\n"
    )
    .replace("tests/fixtures/check/denied.yaml", "<stdin>");
    assert_eq!(stdout(&output), want);
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn directories_are_read_recursively_only_with_r() {
    let blueprint = "tests/fixtures/check/tree/blueprint.yaml: BackupBlueprint blueprint: spec.hooks.preBackup.executor.functionName: Function \"ghost\" not found: create the Function, or fix the name (list them with: kubectl get functions.stash.appscode.com)";
    let restore = "tests/fixtures/check/tree/nested/restoresession.json: RestoreSession demo/restore: spec.hooks.preRestore.executor.functionName: Function \"ghost\" not found: create the Function, or fix the name (list them with: kubectl get functions.stash.appscode.com)";
    let flat = check(&["-f", &format!("{DIR}/tree")]);
    assert_eq!(
        stdout(&flat),
        format!("{blueprint}\n1 object judged, 1 denied, 0 warned, 0 skipped\n")
    );
    let deep = check(&["-R", "-f", &format!("{DIR}/tree")]);
    assert_eq!(
        stdout(&deep),
        format!("{blueprint}\n{restore}\n2 objects judged, 2 denied, 0 warned, 0 skipped\n")
    );
    assert_eq!(deep.status.code(), Some(1));
}

#[test]
fn a_malformed_file_is_named_and_the_others_still_judged() {
    let output = check(&[
        "-f",
        &format!("{DIR}/malformed.yaml"),
        "-f",
        &format!("{DIR}/denied.yaml"),
    ]);
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("tests/fixtures/check/malformed.yaml: error: document 1 is not valid YAML or JSON: did not find expected ',' or '}'"),
        "{text}"
    );
    assert_eq!(lines[1..4], [TYPO, NO_IMAGE, UNREAD_PARAM]);
    assert_eq!(
        lines[4],
        "3 objects judged, 2 denied, 0 warned, 1 skipped, 1 unreadable"
    );
    assert_eq!(output.status.code(), Some(2));

    let missing = check(&["-f", "no/such/file.yaml"]);
    assert!(
        stdout(&missing)
            .starts_with("no/such/file.yaml: error: cannot read: No such file or directory"),
        "{}",
        stdout(&missing)
    );
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn json_output_has_the_same_content() {
    let output = check(&["-o", "json", "-f", &format!("{DIR}/denied.yaml")]);
    let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["judged"], 3);
    assert_eq!(json["denied"], 2);
    assert_eq!(json["warned"], 0);
    assert_eq!(json["skipped"], 1);
    assert_eq!(json["errors"], serde_json::json!([]));
    let batch = &json["objects"][1];
    assert_eq!(batch["kind"], "BackupBatch");
    assert_eq!(batch["namespace"], "demo");
    assert_eq!(batch["name"], "batch");
    assert_eq!(
        batch["denials"][0],
        NO_IMAGE.split_once("demo/batch: ").unwrap().1
    );
    assert_eq!(
        batch["warnings"][0],
        UNREAD_PARAM.split_once("warning: ").unwrap().1
    );
    assert_eq!(json["objects"][2]["denials"], serde_json::json!([]));
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn bad_flags_exit_2() {
    assert_eq!(check(&[]).status.code(), Some(2), "no -f");
    assert_eq!(
        check(&["-f", "x", "-o", "yaml"]).status.code(),
        Some(2),
        "an unknown output"
    );
}

const NOT_CHECKED: &str = "there are no Tasks to check it against (the cluster does not serve them: their CRD is not installed; or the catalog and files checked hold none)";

#[test]
fn without_any_task_given_task_names_are_warned_as_not_checked() {
    let output = check(&["-f", &format!("{DIR}/tasks/objects.yaml")]);
    let file = "tests/fixtures/check/tasks/objects.yaml";
    assert_eq!(
        stdout(&output),
        format!(
            "{file}: BackupConfiguration demo/db-backup: warning: spec.task.name: Task \"pg-backup-16\" not checked: {NOT_CHECKED}\n\
             {file}: BackupConfiguration demo/db-typo: warning: spec.task.name: Task \"pg-backup-61\" not checked: {NOT_CHECKED}\n\
             {file}: RestoreSession demo/db-restore: warning: spec.task.name: Task \"pg-restore-16\" not checked: {NOT_CHECKED}\n\
             3 objects judged, 0 denied, 3 warned, 0 skipped\n"
        )
    );
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn tasks_from_the_catalog_or_the_inputs_are_judged_with_their_steps_functions() {
    let file = "tests/fixtures/check/tasks/objects.yaml";
    let expected = format!(
        "{file}: BackupConfiguration demo/db-typo: spec.task.name: Task \"pg-backup-61\" not found: install the Stash addon that provides it (kubectl get tasks.stash.appscode.com lists those installed), or correct the name\n\
         {file}: RestoreSession demo/db-restore: spec.task.params: Function \"pg-restore\" (Task \"pg-restore-16\", spec.steps[0]) reads ${{outputDir}}, which neither that step's params nor spec.task.params set and Stash does not provide: add {{name: outputDir, value: ...}} to spec.task.params, or give it a default in the Function (${{outputDir:=...}})\n"
    );
    let catalog = check(&["-f", file, "--functions-file", &format!("{DIR}/addon.yaml")]);
    assert_eq!(
        stdout(&catalog),
        format!("{expected}3 objects judged, 2 denied, 0 warned, 0 skipped\n")
    );
    assert_eq!(catalog.status.code(), Some(1));
    // The same files given as inputs: the Tasks and Functions count, and are skipped.
    let together = check(&["-f", file, "-f", &format!("{DIR}/addon.yaml")]);
    assert_eq!(
        stdout(&together),
        format!("{expected}3 objects judged, 2 denied, 0 warned, 4 skipped\n")
    );
}

/// `check --cluster` lists every referent kind from the cluster (the stand-in API server here):
/// Stash's and KubeStash's, each name judged as admission judges it.
#[tokio::test]
async fn check_cluster_judges_both_families_against_the_cluster() {
    let api = support::apiserver::ApiServer::start().await;
    api.put_function("mysql-hook-executor", Some("appscode/mysql-hook:8.0.14"));
    api.put_object(
        "addons.addons.kubestash.com",
        None,
        "workload-addon",
        serde_json::json!({"backupTasks": [{"name": "logical-backup", "function": "workload-backup"}]}),
    );
    api.put_object(
        "functions.addons.kubestash.com",
        None,
        "workload-backup",
        serde_json::json!({"image": "ghcr.io/kubestash/workload:v0.28.0"}),
    );
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: s\n  cluster: {{server: \"http://{}\"}}\n\
             users:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context: {{cluster: s, user: u}}\ncurrent-context: c\n",
            api.addr
        ),
    )
    .unwrap();
    let objects = dir.path().join("objects.yaml");
    std::fs::write(
        &objects,
        "apiVersion: stash.appscode.com/v1beta1\nkind: BackupConfiguration\nmetadata: {name: ok, namespace: demo}\n\
         spec: {hooks: {preBackup: {executor: {functionName: mysql-hook-executor, params: {a: b}}}}}\n---\n\
         apiVersion: core.kubestash.com/v1alpha1\nkind: BackupConfiguration\nmetadata: {name: typo, namespace: demo}\n\
         spec: {sessions: [{addon: {name: workload-addon, tasks: [{name: logical-bakup}]}}]}\n",
    )
    .unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_stash-webhook"))
            .args(["check", "--cluster", "-f"])
            .arg(&objects)
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = stdout(&output);
    assert!(
        text.ends_with(": BackupConfiguration.core.kubestash.com demo/typo: spec.sessions[0].addon.tasks[0].name: Addon \"workload-addon\" has no backup task \"logical-bakup\": name one of Addon \"workload-addon\"'s backup tasks (it has logical-backup)\n\
         2 objects judged, 1 denied, 0 warned, 0 skipped\n"),
        "{text}"
    );
    assert_eq!(output.status.code(), Some(1));
}
