#!/usr/bin/env bash
# How long protection takes to judge the DELETE of a referent in use on a real API server with a
# cluster's worth of objects: the current kube-apiserver of the end-to-end tests (with etcd, on
# 127.0.0.1, built by tests/e2e/apiserver.sh when its cache lacks it), OBJECTS KubeStash
# BackupConfigurations spread over 100 Addons, one of which (with the Function it runs) exists;
# then ROUNDS DELETEs of that Function to the release webhook's /protect, each timed, with the CPU
# the webhook spent on it. Every object is listed and judged for each DELETE: the time is the API
# server's LISTs plus the webhook's decoding and judging. See benches/README.md.
#
# Knobs (environment): OBJECTS (50000), ROUNDS (3), PROTECT_TIMEOUT (60s: long enough to see the
# whole cost; the default is 2s, see the README's troubleshooting), WEBHOOK (a binary to measure
# instead of building one), BASELINE (a second binary, measured in the same rounds, alternating).
set -euo pipefail
cd "$(dirname "$0")/.."

OBJECTS=${OBJECTS:-50000}
ROUNDS=${ROUNDS:-3}
PROTECT_TIMEOUT=${PROTECT_TIMEOUT:-60s}

# shellcheck source=benches/common.sh
source benches/common.sh
# shellcheck source=tests/e2e/apiserver.sh
source tests/e2e/apiserver.sh

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

if [[ -z ${WEBHOOK:-} ]]; then
    log "building the release webhook"
    cargo build --release --locked --bin stash-webhook >&2
    WEBHOOK=target/release/stash-webhook
fi
BINARIES=("$WEBHOOK")
[[ -n ${BASELINE:-} ]] && BINARIES+=("$BASELINE")

e2e_use_server current
e2e_build_server
e2e_start_cluster "$WORK/cluster" >/dev/null
trap 'e2e_stop_cluster; cleanup' EXIT
export KUBECONFIG=$E2E_ADMIN_KUBECONFIG
export PATH="$E2E_BIN_PATH:$PATH"

log "creating $OBJECTS KubeStash BackupConfigurations in 50 namespaces"
kubectl apply -f tests/e2e/kubestash-crds.yaml >/dev/null
kubectl wait --for condition=established --timeout=60s crd --all >/dev/null
python3 - "$WORK/objects" "$OBJECTS" <<'PY'
import json, os, sys
out, objects = sys.argv[1], int(sys.argv[2])
os.makedirs(out)
namespaces = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{n:02d}"}} for n in range(50)]
json.dump({"apiVersion": "v1", "kind": "List", "items": namespaces}, open(f"{out}/namespaces.json", "w"))
for first in range(0, objects, 1000):
    items = [{"apiVersion": "core.kubestash.com/v1alpha1", "kind": "BackupConfiguration",
              "metadata": {"name": f"obj-{o:06d}", "namespace": f"ns-{o % 50:02d}"},
              "spec": {"sessions": [{"name": "daily",
                  "addon": {"name": f"addon-{o % 100:03d}", "tasks": [{"name": "logical-backup", "params": {"databases": "app"}}]},
                  "hooks": {"preBackup": [{"name": "freeze", "hookTemplate": {"name": "freeze"}}]}}]}}
             for o in range(first, min(first + 1000, objects))]
    json.dump({"apiVersion": "v1", "kind": "List", "items": items}, open(f"{out}/objects-{first:06d}.json", "w"))
PY
kubectl create -f "$WORK/objects/namespaces.json" >/dev/null
find "$WORK/objects" -name 'objects-*.json' -print0 | xargs -0 -P 4 -n 1 kubectl create -f >/dev/null
kubectl apply -f - >/dev/null <<'YAML'
apiVersion: addons.kubestash.com/v1alpha1
kind: Function
metadata: {name: fn-042}
spec: {image: "ghcr.io/kubestash/fn:v1"}
---
apiVersion: addons.kubestash.com/v1alpha1
kind: Addon
metadata: {name: addon-042}
spec:
  backupTasks:
  - {name: logical-backup, function: fn-042, parameters: [{name: databases, required: true}]}
YAML

kubestash_function_delete "$WORK/delete.json" fn-042

"$WEBHOOK" certs --service localhost --namespace bench --out "$WORK/certs" >/dev/null
PORTS=()
SERVERS=()
for i in "${!BINARIES[@]}"; do
    port=$(free_port)
    # No audit: its passes would list the same objects beside the DELETEs.
    # Through the environment: a build from before --protect-timeout bounded protection by
    # --lookup-timeout, and ignores the variable it does not know.
    STASH_WEBHOOK_PROTECT_TIMEOUT=$PROTECT_TIMEOUT STASH_WEBHOOK_LOOKUP_TIMEOUT=$PROTECT_TIMEOUT \
        "${BINARIES[$i]}" serve --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$(free_port)" \
        --tls-cert "$WORK/certs/tls.crt" --tls-key "$WORK/certs/tls.key" --log warn --audit=false \
        >"$WORK/webhook-$i.log" 2>&1 &
    PIDS+=("$!")
    PORTS+=("$port")
    SERVERS+=("$!")
done
ready() { curl -sf --cacert "$WORK/certs/ca.crt" --resolve "localhost:$1:127.0.0.1" "https://localhost:$1/readyz" >/dev/null; }
for i in "${!BINARIES[@]}"; do
    for _ in $(seq 300); do
        ready "${PORTS[$i]}" && break
        kill -0 "${SERVERS[$i]}" 2>/dev/null || die "${BINARIES[$i]} exited: $(cat "$WORK/webhook-$i.log")"
        sleep 0.1
    done
    ready "${PORTS[$i]}" || die "${BINARIES[$i]} did not get ready: $(tail -5 "$WORK/webhook-$i.log")"
done

# One DELETE to the first server, a round: its answer and how long it took.
delete() {
    local i=$1 asked from answer seconds cpu said
    asked=$(date +%s.%N)
    from=$(cpu_ticks "${SERVERS[$i]}")
    answer=$(curl -s --cacert "$WORK/certs/ca.crt" --resolve "localhost:${PORTS[$i]}:127.0.0.1" \
        -H 'Content-Type: application/json' --data-binary "@$WORK/delete.json" "https://localhost:${PORTS[$i]}/protect?timeout=120s")
    seconds=$(awk -v a="$asked" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    cpu=$(awk -v n="$(($(cpu_ticks "${SERVERS[$i]}") - from))" -v t="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", n / t }')
    said=$(python3 -c 'import json, sys; r = json.load(sys.stdin)["response"]; print(("allowed" if r["allowed"] else "denied: " + r["status"]["message"])[:90])' <<<"$answer")
    echo "$seconds s, the webhook $cpu s of CPU ($said...)"
}

log "one DELETE each to warm up (the API server has just stored the objects)"
for i in "${!BINARIES[@]}"; do delete "$i" >/dev/null; done
echo
echo "protect: the DELETE of a KubeStash Function that $((OBJECTS / 100)) of $OBJECTS BackupConfigurations reach, on kube-apiserver $E2E_SERVER_VERSION, --protect-timeout $PROTECT_TIMEOUT"
for round in $(seq "$ROUNDS"); do
    for i in "${!BINARIES[@]}"; do
        echo "  round $round, ${BINARIES[$i]}: $(delete "$i")"
    done
done
