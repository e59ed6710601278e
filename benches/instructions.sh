#!/usr/bin/env bash
# Instructions per request, webhook and floor, counted by callgrind: the same figure whatever else
# the machine is doing, for comparing two builds where load.sh's timings are too noisy. Each
# server runs under valgrind on 127.0.0.1; after a warm-up its counters are zeroed, N requests of
# one body are sent with h2load, and the count is dumped. The TLS handshakes of the measured
# run's C connections are included in both. See benches/README.md.
#
# Knobs (environment): N (requests, 20000), C (connections, 16), M (HTTP/2 streams per
# connection, 8), PROTO (h2 or h1, h2), FIXTURE (the body, the recorded 3 KB CREATE), UPDATE_KIB
# (when set, the body is instead a BackupBatch UPDATE of about that many KiB, from
# load_bodies.py), LOG (the webhook's --log filter, warn), KEEP (a directory to copy the dumps
# into, as floor.out, webhook.out and gopeer.out, for callgrind_annotate), WEBHOOK and FLOOR
# (binaries to measure instead of building them, both or neither), PEER (0 to leave out the Go
# peer, benches/gopeer, measured beside them otherwise; GOPEER, its binary instead of building),
# CATALOG (the webhook's --functions-file, manifests/examples/functions.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-20000}
C=${C:-16}
M=${M:-8}
PROTO=${PROTO:-h2}
FIXTURE=${FIXTURE:-tests/fixtures/reviews/backupconfiguration-create.json}
CATALOG=${CATALOG:-manifests/examples/functions.yaml}
LOG=${LOG:-warn}
KEEP=${KEEP:-}
UPDATE_KIB=${UPDATE_KIB:-}
PEER=${PEER:-1}
PATH_QUERY='/validate?timeout=5s'

# shellcheck source=benches/common.sh
source benches/common.sh

if [[ -n $UPDATE_KIB ]]; then
    python3 benches/load_bodies.py update "$WORK" "$UPDATE_KIB"
    FIXTURE=$WORK/update-${UPDATE_KIB}kib.json
fi

need_h2load
need valgrind callgrind_control h2load curl python3 awk

build_servers
if [[ $PEER != 0 ]]; then build_gopeer; fi
"$WEBHOOK" certs --service localhost --namespace bench --out "$WORK/certs" >/dev/null
CERT=$WORK/certs/tls.crt
KEY=$WORK/certs/tls.key

load() {
    local port=$1 n=$2 c=$3
    local args=(-n "$n" -c "$c" -m "$M" -d "$FIXTURE" -H 'Content-Type: application/json')
    if [[ $PROTO == h1 ]]; then args+=(--h1 -m 1); fi
    timeout 600 h2load "${args[@]}" "https://127.0.0.1:$port$PATH_QUERY" >"$WORK/h2load.txt" 2>&1 ||
        { cat "$WORK/h2load.txt" >&2; die "h2load failed or timed out"; }
    grep -q "status codes: $n 2xx" "$WORK/h2load.txt" ||
        { cat "$WORK/h2load.txt" >&2; die "expected $n 2xx answers"; }
}

# count NAME COMMAND...: prints the instructions per request of the server COMMAND runs.
count() {
    local name=$1 port
    shift
    port=$(free_port)
    valgrind --tool=callgrind --dump-instr=no --collect-jumps=no --callgrind-out-file="$WORK/$name.%p" "$@" --listen "127.0.0.1:$port" \
        >"$WORK/$name.log" 2>&1 &
    local pid=$!
    # Stopped here: this runs in a command substitution, whose PIDS the exit trap does not see.
    trap 'kill "$pid" 2>/dev/null || true' EXIT
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || die "$name exited; see its log: $(tail -3 "$WORK/$name.log")"
        curl -sk --max-time 2 -o /dev/null "https://127.0.0.1:$port/healthz" && break
        sleep 0.2
    done
    log "$name: warm-up, then $N requests under callgrind"
    load "$port" 200 4
    callgrind_control --zero "$pid" >/dev/null 2>&1
    load "$port" "$N" "$C"
    callgrind_control --dump=measured "$pid" >/dev/null 2>&1
    # The dump is written by the server; wait for the file that names the trigger.
    local dump=""
    for _ in $(seq 100); do
        dump=$(grep -l '^desc: Trigger: .*measured' "$WORK/$name".* 2>/dev/null | head -1) || true
        [[ -n $dump ]] && break
        sleep 0.1
    done
    [[ -n $dump ]] || die "no callgrind dump from $name"
    if [[ -n $KEEP ]]; then mkdir -p "$KEEP" && cp "$dump" "$KEEP/$name.out"; fi
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    awk -v n="$N" '/^(summary|totals):/ { t = $2 } END { printf "%.0f\n", t / n }' "$dump"
}

floor=$(count floor "$FLOOR" --cert "$CERT" --key "$KEY")
webhook=$(count webhook "$WEBHOOK" serve --tls-cert "$CERT" --tls-key "$KEY" \
    --functions-file "$CATALOG" --log "$LOG")
if [[ $PEER != 0 ]]; then
    # callgrind fails an assertion on the signal of Go's asynchronous preemption: without it the
    # scheduler preempts goroutines at function calls only.
    gopeer=$(GODEBUG=asyncpreemptoff=1 count gopeer "$GOPEER" --cert "$CERT" --key "$KEY")
fi
printf 'instructions per request (%s, %s, %d bytes, %d requests, -c %d, --log %s, callgrind)\n' \
    "$PROTO" "$(basename "$FIXTURE")" "$(wc -c <"$FIXTURE")" "$N" "$C" "$LOG"
# NAME COUNT: the count, its ratio to the floor's, and the review's own work (the difference).
row() {
    printf '  %-8s %10d (%.2fx)  own work %10d\n' "$1" "$2" \
        "$(awk -v w="$2" -v f="$floor" 'BEGIN { print w / f }')" "$(($2 - floor))"
}
printf '  %-8s %10d\n' floor "$floor"
row webhook "$webhook"
if [[ $PEER != 0 ]]; then row 'Go peer' "$gopeer"; fi
