#!/usr/bin/env bash
# The webhook's memory with a cluster's worth of Functions and objects naming them: the stand-in
# API server (examples/standin_apiserver.rs) serves FUNCTIONS Functions and OBJECTS objects of the
# five hook kinds on 127.0.0.1; the release webhook lists and watches them all (Function cache and
# reference index), then judges reviews; its peak RSS is reported. See benches/README.md.
#
# Knobs (environment): FUNCTIONS (10000), OBJECTS (50000), REVIEWS (2000).
set -euo pipefail
cd "$(dirname "$0")/.."

FUNCTIONS=${FUNCTIONS:-10000}
OBJECTS=${OBJECTS:-50000}
REVIEWS=${REVIEWS:-2000}

# shellcheck source=benches/common.sh
source benches/common.sh

proc_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
metric() { curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

log "building release binaries"
cargo build --release --locked --bin stash-webhook --example standin_apiserver >&2
WEBHOOK=target/release/stash-webhook

log "starting the stand-in API server with $FUNCTIONS Functions and $OBJECTS objects"
target/release/examples/standin_apiserver "$FUNCTIONS" "$OBJECTS" "$WORK/kubeconfig" >"$WORK/standin.log" 2>&1 &
PIDS+=("$!")
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

for _ in $(seq 1200); do
    [[ $(metric stash_webhook_reference_index_synced) == 1 && $(metric 'stash_webhook_cache_size{resource="functions"}') == "$FUNCTIONS" ]] && break
    kill -0 "$WEBHOOK_PID" 2>/dev/null || die "the webhook exited: $(cat "$WORK/webhook.log")"
    sleep 0.1
done
[[ $(metric stash_webhook_reference_index_synced) == 1 ]] || die "the reference index did not sync within 120 s"
synced=$(date +%s.%N)
INDEXED=$(metric stash_webhook_reference_index_objects)
HWM_SYNCED=$(proc_kib "$WEBHOOK_PID" VmHWM)

# Reviews naming Functions from the cache, so the judging path is in the figure too.
python3 - "$WORK/review.json" <<'PY'
import json, sys
review = json.load(open("tests/fixtures/reviews/backupconfiguration-create.json"))
review["request"]["object"]["spec"]["hooks"]["preBackup"]["executor"] = {
    "functionName": "fn-00042", "params": {"DB_HOST": "db.demo.svc"}}
# The stand-in serves Functions, not Tasks: a Task named would be denied as not found.
del review["request"]["object"]["spec"]["task"]
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
HWM=$(proc_kib "$WEBHOOK_PID" VmHWM)
RSS=$(proc_kib "$WEBHOOK_PID" VmRSS)

echo
echo "memory: $FUNCTIONS Functions, $OBJECTS objects of the five hook kinds ($INDEXED indexed), $REVIEWS reviews"
printf '  listed and synced in:              %.1f s\n' "$(awk -v a="$started" -v b="$synced" 'BEGIN { print b - a }')"
echo "  peak RSS once synced:               $(mib "$HWM_SYNCED") MiB"
echo "  peak RSS after the reviews:         $(mib "$HWM") MiB (target < 64 MiB: $(awk -v k="$HWM" 'BEGIN { print (k < 65536 ? "ok" : "MISS") }'))"
echo "  RSS at the end:                     $(mib "$RSS") MiB"
