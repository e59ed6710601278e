#!/usr/bin/env python3
"""Writes the Functions files and review bodies that benches/load.sh POSTs.

  load_bodies.py batch OUT_DIR
      OUT_DIR/batch-functions.yaml   the 20 Functions the large BackupBatch names
      OUT_DIR/backupbatch-1mib.json  a BackupBatch CREATE review of about 1 MiB: 100 members, each
                                     with preBackup and postBackup executors (the same shape as
                                     the criterion bench in benches/review.rs)

  load_bodies.py update OUT_DIR KIB...
      OUT_DIR/update-KIBkib.json     for each KIB, a BackupBatch UPDATE review of about KIB KiB as
                                     the API server sends one after `kubectl apply`: object and
                                     oldObject, each with its managedFields and last-applied
                                     annotation; every member names the Task and the hook Function
                                     of the recorded CREATE (manifests/examples/functions.yaml),
                                     and the review is allowed

  load_bodies.py scale OUT_DIR FUNCTIONS BODIES NAMES_PER_BODY
      OUT_DIR/scale-functions.yaml   FUNCTIONS Functions, fn-00000 ... (multi-document YAML)
      OUT_DIR/scale-NNNN.json        BODIES BackupBatch CREATE reviews; body i names
                                     NAMES_PER_BODY distinct Functions, fn-(i*NAMES_PER_BODY + j)
                                     modulo FUNCTIONS, so together they name every Function
"""

import json
import sys

ENGINES = [
    ("mysql", "appscode/mysql-hook:8.0.14"),
    ("postgres", "docker.io/appscode/postgres-hook:16.1"),
    ("mongodb", "ghcr.io/appscode/mongodb-hook:7.0.5"),
    ("redis", "registry.example.com:5000/stash/redis-hook:7.2"),
    ("elasticsearch", "appscode/elasticsearch-hook:8.11.1"),
]
DISTINCT = 20
MEMBERS = 100
TARGET = 1024 * 1024


def batch_function_name(k):
    k %= DISTINCT
    return f"{ENGINES[k % len(ENGINES)][0]}-hook-executor-{k:02d}"


def function_doc(name, image):
    return (
        "apiVersion: stash.appscode.com/v1beta1\nkind: Function\n"
        f"metadata:\n  name: {name}\nspec:\n  image: {image}\n"
        "  args:\n    - --host=${DB_HOST}\n    - --port=${DB_PORT}\n---\n"
    )


def hook_script(member, phase, pad):
    lines = [f'set -euo pipefail\necho "{phase} hook for member {member}"\n']
    size, table = len(lines[0]), 0
    stmt = "FLUSH TABLES WITH READ LOCK; LOCK TABLES" if phase == "preBackup" else "UNLOCK TABLES; ANALYZE TABLE"
    while size < pad:
        line = (
            f'mysql -u root --password="$MYSQL_ROOT_PASSWORD" -h mysql-{member:03d}.demo.svc '
            f'-P 3306 -e "{stmt} db_{table:04d}.events;"\n'
        )
        lines.append(line)
        size += len(line)
        table += 1
    return "".join(lines)


def hook(member, phase, function_name, pad):
    return {
        "containerName": "mysql",
        "exec": {"command": ["/bin/bash", "-c", hook_script(member, phase, pad)]},
        "executor": {
            "functionName": function_name,
            "params": {
                "DB_HOST": f"mysql-{member:03d}.demo.svc",
                "DB_PORT": "3306",
                "MODE": "read_only" if phase == "preBackup" else "read_write",
            },
        },
    }


def batch_review(members, name_of, pad, uid):
    spec = {
        "driver": "Restic",
        "repository": {"name": "gcs-repo"},
        "schedule": "*/30 * * * *",
        "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
        "members": [
            {
                "target": {
                    "ref": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": f"mysql-{i:03d}"},
                    "paths": ["/var/lib/mysql"],
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/mysql"}],
                },
                "task": {"name": "mysql-backup-8.0.14"},
                "hooks": {
                    "preBackup": hook(i, "preBackup", name_of(2 * i), pad),
                    "postBackup": hook(i, "postBackup", name_of(2 * i + 1), pad),
                },
                "runtimeSettings": {"container": {"resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}},
            }
            for i in range(members)
        ],
    }
    last_applied = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupBatch",
        "metadata": {"annotations": {}, "name": "mysql-fleet", "namespace": "demo"},
        "spec": spec,
    }
    obj = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupBatch",
        "metadata": {
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": json.dumps(last_applied, separators=(",", ":")) + "\n"
            },
            "creationTimestamp": "2026-11-24T22:40:12Z",
            "generation": 1,
            "labels": {"app.kubernetes.io/part-of": "mysql-fleet"},
            "name": "mysql-fleet",
            "namespace": "demo",
            "uid": "7c1d3a2e-0b6f-4a8e-9d51-3f2b8c6e4a10",
        },
        "spec": spec,
    }
    return batch_review_body(uid, "CREATE", obj, None)


def fleet_member(i):
    def hook(phase, read_only):
        return {
            "exec": {
                "command": [
                    "/bin/sh",
                    "-c",
                    f"mysql -u root --password=$MYSQL_ROOT_PASSWORD -h mysql-{i:03d}.demo.svc -p 3306 "
                    f'-e "SET GLOBAL super_read_only = {read_only};"',
                ]
            },
            "executor": {"functionName": "mysql-hook-executor", "params": {"a": phase, "c": "d"}},
        }

    return {
        "hooks": {"postBackup": hook("post", "OFF"), "preBackup": hook("pre", "ON")},
        "runtimeSettings": {"container": {"resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}},
        "target": {
            "paths": ["/var/lib/mysql"],
            "ref": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": f"mysql-{i:03d}"},
            "volumeMounts": [{"mountPath": "/var/lib/mysql", "name": "data"}],
        },
        "task": {"name": "mysql-backup-8.0.14"},
    }


def fleet_object(members, schedule, generation, time):
    """A BackupBatch as the API server stores it after `kubectl apply`: keys sorted, as Go writes
    an unstructured object, with the last-applied annotation and the managedFields."""
    spec = {
        "driver": "Restic",
        "members": [fleet_member(i) for i in range(members)],
        "repository": {"name": "gcs-repo"},
        "retentionPolicy": {"keepLast": 5, "name": "keep-last-5", "prune": True},
        "schedule": schedule,
    }
    last_applied = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupBatch",
        "metadata": {"annotations": {}, "name": "mysql-fleet", "namespace": "demo"},
        "spec": spec,
    }
    spec_fields = {".": {}, **{f"f:{k}": {} for k in spec}}
    spec_fields["f:repository"] = {".": {}, "f:name": {}}
    spec_fields["f:retentionPolicy"] = {".": {}, "f:keepLast": {}, "f:name": {}, "f:prune": {}}
    managed = [
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}},
                "f:spec": spec_fields,
            },
            "manager": "kubectl-client-side-apply",
            "operation": "Update",
            "time": time,
        },
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:status": {".": {}, "f:conditions": {}, "f:memberConditions": {}, "f:phase": {}}},
            "manager": "stash",
            "operation": "Update",
            "subresource": "status",
            "time": time,
        },
    ]
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupBatch",
        "metadata": {
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
                    last_applied, separators=(",", ":"), sort_keys=True
                )
                + "\n"
            },
            "creationTimestamp": "2026-11-24T22:40:12Z",
            "generation": generation,
            "managedFields": managed,
            "name": "mysql-fleet",
            "namespace": "demo",
            "resourceVersion": str(48213 + generation),
            "uid": "7c1d3a2e-0b6f-4a8e-9d51-3f2b8c6e4a10",
        },
        "spec": spec,
    }


def update_review(members):
    """A BackupBatch UPDATE of MEMBERS members that changes the schedule."""
    return batch_review_body(
        "9a3c1f0e-7d2b-4c8a-b1e5-6f0d2a9c3b74",
        "UPDATE",
        fleet_object(members, "*/15 * * * *", 2, "2026-11-25T09:12:44Z"),
        fleet_object(members, "*/30 * * * *", 1, "2026-11-24T22:40:12Z"),
    )


def batch_review_body(uid, operation, obj, old):
    """The AdmissionReview the API server sends for OPERATION on the BackupBatch mysql-fleet."""
    gvk = {"group": "stash.appscode.com", "version": "v1beta1", "kind": "BackupBatch"}
    gvr = {"group": "stash.appscode.com", "version": "v1beta1", "resource": "backupbatches"}
    options = "CreateOptions" if operation == "CREATE" else "UpdateOptions"
    review = {
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": uid,
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": "mysql-fleet",
            "namespace": "demo",
            "operation": operation,
            "userInfo": {"username": "admin", "groups": ["system:masters", "system:authenticated"]},
            "object": obj,
            "oldObject": old,
            "dryRun": False,
            "options": {"kind": options, "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-client-side-apply"},
        },
    }
    return json.dumps(review, separators=(",", ":")).encode()


def update(out, sizes):
    one = len(update_review(1))
    per_member = len(update_review(2)) - one
    for kib in sizes:
        members = max(1, round((kib * 1024 - one) / per_member) + 1)
        body = update_review(members)
        assert 0.95 < len(body) / (kib * 1024) < 1.05, (kib, len(body))
        write(f"{out}/update-{kib}kib.json", body)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def batch(out):
    write(
        f"{out}/batch-functions.yaml",
        "".join(function_doc(batch_function_name(k), ENGINES[k % len(ENGINES)][1]) for k in range(DISTINCT)),
    )
    uid = "5e0b8f7a-1c2d-4e3f-8a9b-0c1d2e3f4a5b"
    small = len(batch_review(MEMBERS, batch_function_name, 0, uid))
    per_pad = (len(batch_review(MEMBERS, batch_function_name, 1000, uid)) - small) / 1000
    body = batch_review(MEMBERS, batch_function_name, int((TARGET - small) / per_pad), uid)
    assert 0.95 < len(body) / TARGET < 1.05, len(body)
    write(f"{out}/backupbatch-1mib.json", body)


def scale(out, functions, bodies, names_per_body):
    write(
        f"{out}/scale-functions.yaml",
        "".join(function_doc(f"fn-{k:05d}", ENGINES[k % len(ENGINES)][1]) for k in range(functions)),
    )
    members = (names_per_body + 1) // 2
    for i in range(bodies):
        base = i * names_per_body
        body = batch_review(
            members,
            lambda j, base=base: f"fn-{(base + j % names_per_body) % functions:05d}",
            0,
            f"00000000-0000-4000-8000-{i:012d}",
        )
        write(f"{out}/scale-{i:04d}.json", body)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "batch":
        batch(sys.argv[2])
    elif len(sys.argv) >= 4 and sys.argv[1] == "update":
        update(sys.argv[2], [int(a) for a in sys.argv[3:]])
    elif len(sys.argv) == 6 and sys.argv[1] == "scale":
        scale(sys.argv[2], *(int(a) for a in sys.argv[3:]))
    else:
        sys.exit(__doc__)
