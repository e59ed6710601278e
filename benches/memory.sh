#!/usr/bin/env bash
# The webhook's memory with a cluster's worth of Functions, Tasks and objects naming them: the
# stand-in API server (examples/standin_apiserver.rs) serves FUNCTIONS Functions, 100 Tasks and
# OBJECTS objects of the five hook kinds, each with an executor and a Task, on 127.0.0.1; the
# release webhook lists and watches them all (Function and Task caches, reference index), then
# judges reviews; its peak RSS is reported. See benches/README.md.
# FAMILY=kubestash fills KubeStash's kinds instead: FUNCTIONS addons.kubestash.com Functions, 100
# Addons, 50 HookTemplates and OBJECTS BackupConfigurations naming them; the figure is taken once
# the audit has listed and judged them all, and after protection has judged the DELETE of a
# Function in use (which lists and judges them all again).
#
# Knobs (environment): FUNCTIONS (10000), OBJECTS (50000), REVIEWS (2000), FAMILY (stash),
# WEBHOOK (a binary to measure instead of building one: keep the builds being compared outside
# target/, where cargo would take a binary copied in for its own).
set -euo pipefail
cd "$(dirname "$0")/.."

FUNCTIONS=${FUNCTIONS:-10000}
OBJECTS=${OBJECTS:-50000}
REVIEWS=${REVIEWS:-2000}
FAMILY=${FAMILY:-stash}
[[ $FAMILY == stash || $FAMILY == kubestash ]] || { echo "FAMILY is stash or kubestash" >&2; exit 2; }

# shellcheck source=benches/common.sh
source benches/common.sh

proc_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
metric() { curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

if [[ -n ${WEBHOOK:-} ]]; then
    log "building the stand-in; measuring $WEBHOOK as it is"
    cargo build --release --locked --example standin_apiserver >&2
else
    log "building release binaries"
    cargo build --release --locked --bin stash-webhook --example standin_apiserver >&2
    WEBHOOK=target/release/stash-webhook
fi

log "starting the stand-in API server with $FUNCTIONS Functions and $OBJECTS objects"
target/release/examples/standin_apiserver "$FUNCTIONS" "$OBJECTS" "$WORK/kubeconfig" "$FAMILY" >"$WORK/standin.log" 2>&1 &
PIDS+=("$!")
STANDIN_PID=$!
for _ in $(seq 600); do
    grep -q '^ready' "$WORK/standin.log" 2>/dev/null && break
    sleep 0.1
done
grep -q '^ready' "$WORK/standin.log" || die "the stand-in did not come up: $(cat "$WORK/standin.log")"

"$WEBHOOK" certs --service localhost --namespace bench --out "$WORK/certs" >/dev/null
PORT=$(free_port)
METRICS_PORT=$(free_port)
started=$(date +%s.%N)
KUBECONFIG="$WORK/kubeconfig" "$WEBHOOK" serve --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$METRICS_PORT" \
    --tls-cert "$WORK/certs/tls.crt" --tls-key "$WORK/certs/tls.key" --log warn >"$WORK/webhook.log" 2>&1 &
PIDS+=("$!")
WEBHOOK_PID=$!

if [[ $FAMILY == stash ]]; then
    functions_metric='stash_webhook_cache_size{resource="functions"}'
    # Set by every pass of the audit, once it has judged the Stash objects.
    pass_metric='stash_webhook_broken_references{kind="BackupConfiguration",reason="ExecutorFunctionNotFound"}'
else
    functions_metric='stash_webhook_cache_size{resource="functions.addons.kubestash.com"}'
    pass_metric='stash_webhook_broken_references{kind="BackupConfiguration.core.kubestash.com",reason="AddonNotFound"}'
fi
for _ in $(seq 1200); do
    [[ $(metric stash_webhook_reference_index_synced) == 1 && $(metric "$functions_metric") == "$FUNCTIONS" && -n $(metric "$pass_metric") ]] && break
    kill -0 "$WEBHOOK_PID" 2>/dev/null || die "the webhook exited: $(cat "$WORK/webhook.log")"
    sleep 0.1
done
[[ $(metric stash_webhook_reference_index_synced) == 1 ]] || die "the reference index did not sync within 120 s"
[[ -n $(metric "$pass_metric") ]] || die "the audit did not finish a pass within 120 s: $(tail -5 "$WORK/webhook.log")"
synced=$(date +%s.%N)
INDEXED=$(metric stash_webhook_reference_index_objects)
HWM_SYNCED=$(proc_kib "$WEBHOOK_PID" VmHWM)

# Reviews naming Functions from the cache, so the judging path is in the figure too.
python3 - "$WORK/review.json" "$FAMILY" <<'PY'
import json, sys
review = json.load(open("tests/fixtures/reviews/backupconfiguration-create.json"))
if sys.argv[2] == "stash":
    review["request"]["object"]["spec"]["hooks"]["preBackup"]["executor"] = {
        "functionName": "fn-00042", "params": {"DB_HOST": "db.demo.svc"}}
    review["request"]["object"]["spec"]["task"] = {"name": "task-042"}
else:
    review["request"]["kind"] = {"group": "core.kubestash.com", "version": "v1alpha1", "kind": "BackupConfiguration"}
    review["request"]["namespace"] = "ns-07"
    review["request"]["object"] = {"spec": {"sessions": [{"name": "daily",
        "addon": {"name": "addon-042", "tasks": [{"name": "logical-backup", "params": {"databases": "app"}}]},
        "hooks": {"preBackup": [{"name": "freeze", "hookTemplate": {"name": "freeze"}}]}}]}}
json.dump(review, open(sys.argv[1], "w"))
PY
for _ in $(seq "$REVIEWS"); do
    printf 'url = "https://localhost:%s/validate?timeout=5s"\noutput = "/dev/null"\n' "$PORT"
done >"$WORK/urls"
if ((REVIEWS > 0)); then
    curl -s --no-progress-meter --parallel --parallel-max 8 --cacert "$WORK/certs/ca.crt" \
        --resolve "localhost:$PORT:127.0.0.1" -H 'Content-Type: application/json' \
        --data-binary "@$WORK/review.json" -K "$WORK/urls"
fi
allowed=$(curl -s --cacert "$WORK/certs/ca.crt" --resolve "localhost:$PORT:127.0.0.1" \
    -H 'Content-Type: application/json' --data-binary "@$WORK/review.json" "https://localhost:$PORT/validate?timeout=5s")
[[ $allowed == *'"allowed":true'* ]] || die "the review was not allowed: $allowed"
PROTECT_SECONDS=
if [[ $FAMILY == kubestash ]]; then
    # Deleting a Function that an Addon in use runs: protection lists every object live and
    # judges it as listed, within --protect-timeout (5 s).
    kubestash_function_delete "$WORK/delete.json" fn-00042
    # The audit's first pass writes an Event for each broken reference it found; the DELETE is
    # timed once the stand-in is idle again, so the figure is protection's own.
    for _ in $(seq 120); do
        idle_from=$(cpu_ticks "$STANDIN_PID")
        sleep 0.5
        (($(cpu_ticks "$STANDIN_PID") - idle_from < 3)) && break
    done
    asked=$(date +%s.%N)
    webhook_from=$(cpu_ticks "$WEBHOOK_PID")
    standin_from=$(cpu_ticks "$STANDIN_PID")
    denied=$(curl -s --cacert "$WORK/certs/ca.crt" --resolve "localhost:$PORT:127.0.0.1" \
        -H 'Content-Type: application/json' --data-binary "@$WORK/delete.json" "https://localhost:$PORT/protect?timeout=10s")
    PROTECT_SECONDS=$(awk -v a="$asked" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    tick=$(getconf CLK_TCK)
    PROTECT_CPU=$(awk -v w="$(($(cpu_ticks "$WEBHOOK_PID") - webhook_from))" -v s="$(($(cpu_ticks "$STANDIN_PID") - standin_from))" -v t="$tick" \
        'BEGIN { printf "the webhook %.2f s of CPU, the stand-in %.2f s", w / t, s / t }')
    [[ $denied == *'"allowed":false'* ]] || die "deleting a Function in use was not denied: $denied"
    PROTECT_ANSWER=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["response"]["status"]["message"][:160])' <<<"$denied")
fi
HWM=$(proc_kib "$WEBHOOK_PID" VmHWM)
RSS=$(proc_kib "$WEBHOOK_PID" VmRSS)

echo
if [[ $FAMILY == stash ]]; then
    echo "memory: $FUNCTIONS Functions, 100 Tasks, $OBJECTS objects of the five hook kinds ($INDEXED indexed), $REVIEWS reviews"
else
    echo "memory: $FUNCTIONS KubeStash Functions, 100 Addons, 50 HookTemplates, $OBJECTS KubeStash BackupConfigurations (audited by LISTs), $REVIEWS reviews"
fi
printf '  listed and synced in:              %.1f s\n' "$(awk -v a="$started" -v b="$synced" 'BEGIN { print b - a }')"
echo "  peak RSS once synced:               $(mib "$HWM_SYNCED") MiB"
echo "  peak RSS after the reviews:         $(mib "$HWM") MiB (target < 64 MiB: $(awk -v k="$HWM" 'BEGIN { print (k < 65536 ? "ok" : "MISS") }'))"
echo "  RSS at the end:                     $(mib "$RSS") MiB"
if [[ -n $PROTECT_SECONDS ]]; then
    echo "  a Function in use deleted:          denied in $PROTECT_SECONDS s ($PROTECT_CPU): $PROTECT_ANSWER..."
fi
