//! The tests' stand-in Kubernetes API server as a process of its own, filled with Functions, Tasks
//! and objects that name them, for measuring the webhook's memory with a cluster's worth of them
//! (`benches/memory.sh`). Listens on 127.0.0.1 only.
//!
//! Usage: standin_apiserver FUNCTIONS OBJECTS KUBECONFIG_OUT

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
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: http://{}\nusers:\n- name: webhook\n  user: {{}}\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n    user: webhook\ncurrent-context: standin\n",
            api.addr
        ),
    )
    .expect("write the kubeconfig");
    println!(
        "ready: {functions} Functions, {TASKS} Tasks, {objects} objects on http://{}",
        api.addr
    );
    std::future::pending::<()>().await;
}
