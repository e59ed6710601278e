//! The tests' stand-in Kubernetes API server as a process of its own, filled with Functions, Tasks
//! and objects that name them, for measuring the webhook's memory with a cluster's worth of them
//! (`benches/memory.sh`). Listens on 127.0.0.1 only.
//!
//! Usage: standin_apiserver FUNCTIONS OBJECTS KUBECONFIG_OUT [stash|kubestash]
//!
//! `kubestash` fills KubeStash's kinds instead: FUNCTIONS addons.kubestash.com Functions, 100
//! Addons and 50 HookTemplates running them, and OBJECTS BackupConfigurations, each with an addon
//! and a hook; Stash's kinds are left empty.

#[path = "../tests/support/apiserver.rs"]
mod apiserver;

use serde_json::json;

/// How many Tasks: about what Stash's addons install for the databases of a cluster.
const TASKS: usize = 100;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut number = |what: &str| -> usize {
        args.next().and_then(|a| a.parse().ok()).unwrap_or_else(|| {
            panic!("usage: standin_apiserver FUNCTIONS OBJECTS KUBECONFIG_OUT ({what})")
        })
    };
    let (functions, objects) = (number("FUNCTIONS"), number("OBJECTS"));
    let kubeconfig = std::env::args().nth(3).expect("KUBECONFIG_OUT");

    let api = apiserver::ApiServer::start().await;
    if std::env::args().nth(4).as_deref() == Some("kubestash") {
        fill_kubestash(&api, functions, objects);
        return serve(&api, &kubeconfig, &format!("{functions} KubeStash Functions, {ADDONS} Addons, {HOOK_TEMPLATES} HookTemplates, {objects} BackupConfigurations")).await;
    }
    for f in 0..functions {
        api.put_function_spec(
            &format!("fn-{f:05}"),
            json!({"image": "appscode/mysql-hook:8.0.14", "args": ["--host=${DB_HOST}", "--port=${DB_PORT:=3306}"]}),
        );
    }
    // As many Tasks as a cluster's Stash addons install, each running one of the Functions.
    for t in 0..TASKS {
        api.put_object(
            "tasks",
            None,
            &format!("task-{t:03}"),
            json!({"steps": [{"name": format!("fn-{:05}", t % functions.max(1)), "params": [{"name": "DB_HOST", "value": "db.demo.svc"}]}]}),
        );
    }
    // Objects spread over the five kinds and 50 namespaces, each with a preBackup (or
    // preRestore) executor and a Task, every Function and Task named by some.
    let kinds = [
        "backupconfigurations",
        "restoresessions",
        "backupbatches",
        "restorebatches",
        "backupblueprints",
    ];
    for o in 0..objects {
        let kind = kinds[o % kinds.len()];
        let hook = if kind.starts_with("restore") {
            "preRestore"
        } else {
            "preBackup"
        };
        let executor = json!({"functionName": format!("fn-{:05}", o % functions.max(1)), "params": {"DB_HOST": format!("db-{o}.demo.svc")}});
        let task = json!({"name": format!("task-{:03}", o % TASKS), "params": [{"name": "outputDir", "value": "/tmp/output"}]});
        let spec = if kind.ends_with("batches") {
            json!({"members": [{"target": {}, "task": task, "hooks": {hook: {"executor": executor}}}]})
        } else {
            json!({"schedule": "*/5 * * * *", "task": task, "hooks": {hook: {"exec": {"command": ["/bin/sh", "-c", "echo quiesce"]}, "executor": executor}}})
        };
        let namespace = format!("ns-{:02}", o % 50);
        let namespace = (kind != "backupblueprints").then_some(namespace.as_str());
        api.put_object(kind, namespace, &format!("obj-{o:06}"), spec);
    }
    let what = format!("{functions} Functions, {TASKS} Tasks, {objects} objects");
    serve(&api, &kubeconfig, &what).await;
}

/// How many Addons and HookTemplates in the KubeStash fill.
const ADDONS: usize = 100;
const HOOK_TEMPLATES: usize = 50;

/// KubeStash's catalog and objects: Functions, Addons whose backup task runs one of them,
/// HookTemplates in the objects' namespaces, and BackupConfigurations naming an Addon's task and a
/// HookTemplate.
fn fill_kubestash(api: &apiserver::ApiServer, functions: usize, objects: usize) {
    let function = |i: usize| format!("fn-{:05}", i % functions.max(1));
    for f in 0..functions {
        api.put_object(
            "functions.addons.kubestash.com",
            None,
            &function(f),
            json!({"image": "ghcr.io/kubestash/mysql-addon:v0.16.0", "args": ["backup", "--namespace=${namespace}", "--databases=${databases}"]}),
        );
    }
    for a in 0..ADDONS {
        api.put_object(
            "addons.addons.kubestash.com",
            None,
            &format!("addon-{a:03}"),
            json!({"backupTasks": [{"name": "logical-backup", "function": function(a), "parameters": [{"name": "databases", "required": true}]}]}),
        );
    }
    for h in 0..HOOK_TEMPLATES {
        api.put_object(
            "hooktemplates.core.kubestash.com",
            Some(&format!("ns-{h:02}")),
            "freeze",
            json!({"executor": {"type": "Function", "function": {"name": function(h)}}}),
        );
    }
    for o in 0..objects {
        api.put_object(
            "backupconfigurations.core.kubestash.com",
            Some(&format!("ns-{:02}", o % HOOK_TEMPLATES)),
            &format!("obj-{o:06}"),
            json!({"sessions": [{"name": "daily",
                "addon": {"name": format!("addon-{:03}", o % ADDONS), "tasks": [{"name": "logical-backup", "params": {"databases": format!("db-{o}")}}]},
                "hooks": {"preBackup": [{"name": "freeze", "hookTemplate": {"name": "freeze"}}]}}]}),
        );
    }
}

/// Writes the kubeconfig for the server, says it is ready, and serves until killed.
async fn serve(api: &apiserver::ApiServer, kubeconfig: &str, what: &str) {
    std::fs::write(
        kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: http://{}\nusers:\n- name: webhook\n  user: {{}}\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n    user: webhook\ncurrent-context: standin\n",
            api.addr
        ),
    )
    .expect("write the kubeconfig");
    println!("ready: {what} on http://{}", api.addr);
    std::future::pending::<()>().await;
}
