#!/usr/bin/env bash
# Instructions per request, webhook and floor, counted by valgrind's callgrind: unlike times on a
# shared machine, the counts repeat from run to run. Each server runs under callgrind on loopback
# TLS and answers N HTTP/2 POSTs of the recorded 3 KiB review (h2load, -c 4 -m 8); the totals
# include start-up and shutdown. See benches/README.md.
#
# Knobs (environment): N (requests, 4000); PROTO (h2, or h1 for HTTP/1.1 keep-alive).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-4000}
PROTO=${PROTO:-h2}
case "$PROTO" in
h2) LOAD_FLAGS=(-c 4 -m 8) ;;
h1) LOAD_FLAGS=(--h1 -c 4) ;;
*)
    echo "instructions.sh: PROTO must be h2 or h1" >&2
    exit 2
    ;;
esac
FIXTURE=tests/fixtures/reviews/backupconfiguration-create.json
GRACE_TENTHS=100
# shellcheck source=benches/common.sh
source benches/common.sh

for tool in valgrind callgrind_annotate h2load python3; do
    command -v "$tool" >/dev/null || {
        echo "instructions.sh: $tool is required (valgrind; nghttp2-client for h2load)" >&2
        exit 1
    }
done

cargo build --release --locked --bin stash-webhook --example floor_server >&2
WEBHOOK=target/release/stash-webhook
FLOOR=target/release/examples/floor_server
"$WEBHOOK" certs --service localhost --namespace bench --out "$WORK/certs" >/dev/null

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Runs "$@" (a server listening on $port) under callgrind, drives N requests, stops it, and prints
# the instructions per request, with the review functions' share for the webhook.
count() {
    local name=$1 port=$2
    shift 2
    valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.out" "$@" >"$WORK/$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    for _ in $(seq 300); do
        if h2load -n 1 "https://127.0.0.1:$port/healthz" 2>/dev/null | grep -q '1 succeeded'; then
            break
        fi
        sleep 0.1
    done
    h2load -n "$N" "${LOAD_FLAGS[@]}" -d "$FIXTURE" -H 'content-type: application/json' \
        "https://127.0.0.1:$port/validate?timeout=5s" | grep -E '^status codes' >&2
    # TERM, not INT: a background job of a script ignores SIGINT.
    kill -TERM "$pid"
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    local total
    total=$(callgrind_annotate "$WORK/$name.out" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    printf '%-8s %8d instructions per request\n' "$name" $((total / N))
    if [ "$name" = webhook ]; then
        callgrind_annotate --inclusive=yes "$WORK/$name.out" |
            awk -v n="$N" '
                /review::decode \[/ { gsub(",", "", $1); printf "  of which review::decode          %8d\n", $1 / n }
                /scan::Scanner::skip_at \[/ { gsub(",", "", $1); printf "    skipping unread values        %8d\n", $1 / n }
                /Validator::review::\{\{closure\}\} \[/ { gsub(",", "", $1); printf "  of which Validator::review      %8d\n", $1 / n }
                /review::encode \[/ { gsub(",", "", $1); printf "  of which review::encode          %8d\n", $1 / n }'
    fi
}

port=$(free_port)
count floor "$port" "$FLOOR" --listen "127.0.0.1:$port" --cert "$WORK/certs/tls.crt" --key "$WORK/certs/tls.key"
port=$(free_port)
count webhook "$port" "$WEBHOOK" serve --listen "127.0.0.1:$port" --tls-cert "$WORK/certs/tls.crt" \
    --tls-key "$WORK/certs/tls.key" --functions-file manifests/examples/functions.yaml --log warn
