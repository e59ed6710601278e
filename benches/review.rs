//! The review path without the network: decode, judge, encode, and all three together, for
//! (a) the recorded BackupConfiguration CREATE and (b) a ~1 MiB BackupBatch with 100 members,
//! each with preBackup and postBackup executors naming 20 distinct Functions.
//!
//! Run: `cargo bench --bench review -- --warm-up-time 1 --measurement-time 3`
//! (`cargo test --all-targets` runs each benchmark once, as a test).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};
use stash_webhook::functions::FileSource;
use stash_webhook::metrics::Metrics;
use stash_webhook::review;
use stash_webhook::rules::FailurePolicy;
use stash_webhook::validator::Validator;

/// A review recorded from a kube-apiserver: one preBackup executor naming `mysql-hook-executor`.
const CREATE: &str = include_str!("../tests/fixtures/reviews/backupconfiguration-create.json");

/// The API server's `?timeout=5s`, as the server passes it on.
const API_SERVER_TIMEOUT: Option<Duration> = Some(Duration::from_secs(5));

/// Target size of the large BackupBatch review body.
const BATCH_BODY_BYTES: usize = 1024 * 1024;
const BATCH_MEMBERS: usize = 100;
const DISTINCT_FUNCTIONS: usize = 20;

const ENGINES: [(&str, &str); 5] = [
    ("mysql", "appscode/mysql-hook:8.0.14"),
    ("postgres", "docker.io/appscode/postgres-hook:16.1"),
    ("mongodb", "ghcr.io/appscode/mongodb-hook:7.0.5"),
    ("redis", "registry.example.com:5000/stash/redis-hook:7.2"),
    ("elasticsearch", "appscode/elasticsearch-hook:8.11.1"),
];

fn function_name(k: usize) -> String {
    let k = k % DISTINCT_FUNCTIONS;
    format!("{}-hook-executor-{k:02}", ENGINES[k % ENGINES.len()].0)
}

/// The 20 Functions the BackupBatch names, as a multi-document YAML Functions file.
fn batch_functions_yaml() -> String {
    (0..DISTINCT_FUNCTIONS)
        .map(|k| {
            format!(
                "apiVersion: stash.appscode.com/v1beta1\nkind: Function\nmetadata:\n  name: {}\nspec:\n  image: {}\n  args:\n    - --host=${{DB_HOST}}\n    - --port=${{DB_PORT}}\n---\n",
                function_name(k),
                ENGINES[k % ENGINES.len()].1
            )
        })
        .collect()
}

/// A hook script of at least `pad` bytes: the statements a real quiesce/resume hook runs.
fn hook_script(member: usize, phase: &str, pad: usize) -> String {
    let mut script = format!("set -euo pipefail\necho \"{phase} hook for member {member}\"\n");
    let mut table = 0;
    while script.len() < pad {
        script.push_str(&format!(
            "mysql -u root --password=\"$MYSQL_ROOT_PASSWORD\" -h mysql-{member:03}.demo.svc -P 3306 -e \"{} db_{table:04}.events;\"\n",
            if phase == "preBackup" { "FLUSH TABLES WITH READ LOCK; LOCK TABLES" } else { "UNLOCK TABLES; ANALYZE TABLE" }
        ));
        table += 1;
    }
    script
}

fn hook(member: usize, phase: &str, function: usize, pad: usize) -> Value {
    json!({
        "containerName": "mysql",
        "exec": {"command": ["/bin/bash", "-c", hook_script(member, phase, pad)]},
        "executor": {
            "functionName": function_name(function),
            "params": {
                "DB_HOST": format!("mysql-{member:03}.demo.svc"),
                "DB_PORT": "3306",
                "MODE": if phase == "preBackup" { "read_only" } else { "read_write" },
            }
        }
    })
}

fn batch_spec(pad: usize) -> Value {
    let members: Vec<Value> = (0..BATCH_MEMBERS)
        .map(|i| {
            json!({
                "target": {
                    "ref": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": format!("mysql-{i:03}")},
                    "paths": ["/var/lib/mysql"],
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/mysql"}]
                },
                "task": {"name": "mysql-backup-8.0.14"},
                "hooks": {
                    "preBackup": hook(i, "preBackup", 2 * i, pad),
                    "postBackup": hook(i, "postBackup", 2 * i + 1, pad)
                },
                "runtimeSettings": {"container": {"resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}}
            })
        })
        .collect();
    json!({
        "driver": "Restic",
        "repository": {"name": "gcs-repo"},
        "schedule": "*/30 * * * *",
        "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": true},
        "members": members
    })
}

/// A BackupBatch CREATE review as `kubectl apply` sends it (the spec appears twice: once as the
/// object, once inside the last-applied-configuration annotation).
fn batch_review_with(pad: usize) -> Vec<u8> {
    let spec = batch_spec(pad);
    let last_applied = json!({
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupBatch",
        "metadata": {"annotations": {}, "name": "mysql-fleet", "namespace": "demo"},
        "spec": spec
    });
    let object = json!({
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupBatch",
        "metadata": {
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied.to_string() + "\n"},
            "creationTimestamp": "2026-11-24T22:40:12Z",
            "generation": 1,
            "labels": {"app.kubernetes.io/part-of": "mysql-fleet"},
            "name": "mysql-fleet",
            "namespace": "demo",
            "uid": "7c1d3a2e-0b6f-4a8e-9d51-3f2b8c6e4a10"
        },
        "spec": spec
    });
    let gvk = json!({"group": "stash.appscode.com", "version": "v1beta1", "kind": "BackupBatch"});
    let gvr =
        json!({"group": "stash.appscode.com", "version": "v1beta1", "resource": "backupbatches"});
    serde_json::to_vec(&json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "5e0b8f7a-1c2d-4e3f-8a9b-0c1d2e3f4a5b",
            "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": "mysql-fleet",
            "namespace": "demo",
            "operation": "CREATE",
            "userInfo": {"username": "admin", "groups": ["system:masters", "system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-client-side-apply"}
        }
    }))
    .expect("a json! value always serializes")
}

/// The BackupBatch review, its hook scripts sized so the body is about [`BATCH_BODY_BYTES`].
fn batch_review() -> Vec<u8> {
    let (small, probe) = (batch_review_with(0).len(), 1000);
    let per_pad = (batch_review_with(probe).len() - small) as f64 / probe as f64;
    let pad = ((BATCH_BODY_BYTES.saturating_sub(small)) as f64 / per_pad) as usize;
    let body = batch_review_with(pad);
    let ratio = body.len() as f64 / BATCH_BODY_BYTES as f64;
    assert!(
        (0.95..1.05).contains(&ratio),
        "BackupBatch review is {} bytes, wanted about {BATCH_BODY_BYTES}",
        body.len()
    );
    body
}

/// A validator on a catalog, as `serve --functions-file` builds it (Tasks judged when it has any).
fn validator(functions_yaml: &str) -> Validator {
    let source = Arc::new(
        FileSource::from_text(functions_yaml, Path::new("bench.yaml"), Metrics::default())
            .expect("the bench's Functions parse"),
    );
    let validator = Validator::new(source.clone(), FailurePolicy::Deny, Duration::from_secs(2));
    if source.tasks_len() > 0 {
        return validator.with_tasks(source);
    }
    validator
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

/// Decode, review and encode, as the `/validate` handler does between reading the body and
/// writing the answer.
async fn whole_path(validator: &Validator, body: &[u8]) -> Vec<u8> {
    let (version, request) = review::decode(body).expect("the body is a review");
    let outcome = validator.review(&request, API_SERVER_TIMEOUT).await;
    review::encode(version, &request.uid, outcome.reply).expect("the answer encodes")
}

fn bench_case(c: &mut Criterion, name: &str, body: &[u8], validator: &Validator) {
    let rt = runtime();
    let (version, request) = review::decode(body).expect("the body is a review");
    let outcome = rt.block_on(validator.review(&request, API_SERVER_TIMEOUT));
    assert!(
        outcome.reply.allowed,
        "{name}: expected an allowed review, got {:?}",
        outcome.reply.message
    );
    assert!(outcome.judged, "{name}: expected a judged review");
    let reply = outcome.reply;

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("parse_only", |b| {
        b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(body)).expect("parses"))
    });
    group.bench_function("decode", |b| {
        b.iter(|| review::decode(black_box(body)).expect("decodes"))
    });
    group.bench_function("judge", |b| {
        b.to_async(&rt)
            .iter(|| validator.review(black_box(&request), API_SERVER_TIMEOUT))
    });
    group.bench_function("encode", |b| {
        b.iter(|| {
            review::encode(
                black_box(version),
                black_box(&request.uid),
                black_box(reply.clone()),
            )
            .expect("encodes")
        })
    });
    group.bench_function("whole", |b| {
        b.to_async(&rt)
            .iter(|| whole_path(validator, black_box(body)))
    });
    group.finish();
}

fn backupconfiguration_create(c: &mut Criterion) {
    let validator = validator(stash_webhook::EXAMPLE_FUNCTIONS);
    bench_case(
        c,
        "backupconfiguration_create",
        CREATE.as_bytes(),
        &validator,
    );
}

fn backupbatch_1mib(c: &mut Criterion) {
    let body = batch_review();
    let validator = validator(&batch_functions_yaml());
    let (_, request) = review::decode(&body).expect("the body is a review");
    let object = request
        .object
        .as_ref()
        .expect("a CREATE carries its object");
    assert_eq!(object.spec.members.len(), BATCH_MEMBERS);
    assert_eq!(validator.source().len(), DISTINCT_FUNCTIONS);
    bench_case(c, "backupbatch_1mib", &body, &validator);
}

criterion_group!(benches, backupconfiguration_create, backupbatch_1mib);
criterion_main!(benches);
