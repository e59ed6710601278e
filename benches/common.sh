# shellcheck shell=bash
# Sourced by the benchmark scripts: a scratch directory and the processes a script starts, both
# cleaned up however the script ends, and the helpers they share.
#
# Sets WORK (a fresh temporary directory) and PIDS (append every background process to it). On
# exit, each process gets SIGTERM, then up to GRACE_TENTHS tenths of a second (default 50), then
# SIGKILL.

WORK=$(mktemp -d)
PIDS=()
GRACE_TENTHS=${GRACE_TENTHS:-50}
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq "$GRACE_TENTHS"); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '== %s\n' "$*" >&2; }
die() {
    printf '%s: %s\n' "$(basename "$0")" "$*" >&2
    exit 1
}

# A TCP port on 127.0.0.1 that is free now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Installs h2load (Debian's nghttp2-client) when it is missing.
need_h2load() {
    if ! command -v h2load >/dev/null; then
        log "installing h2load (nghttp2-client)"
        apt-get install -y nghttp2-client >/dev/null ||
            { apt-get update >/dev/null && apt-get install -y nghttp2-client >/dev/null; }
    fi
}

# Fails unless every command named is on PATH.
need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool is required"
    done
}

# Builds the release webhook and the floor server (examples/floor_server.rs); sets WEBHOOK and
# FLOOR to their paths. When both are set in the environment (binaries of another build, to
# compare), nothing is built and those are used.
# shellcheck disable=SC2034 # WEBHOOK and FLOOR are the sourcing script's
build_servers() {
    if [[ -n ${WEBHOOK:-} && -n ${FLOOR:-} ]]; then
        log "using $WEBHOOK and $FLOOR as they are"
        return
    fi
    log "building release binaries"
    cargo build --release --locked --bin stash-webhook --example floor_server >&2
    WEBHOOK=target/release/stash-webhook
    FLOOR=target/release/examples/floor_server
}

# Builds the Go peer (benches/gopeer: the same rules on Go's standard library alone) with the
# machine's Go; sets GOPEER to its path. GOPEER set in the environment is used as it is.
# shellcheck disable=SC2034 # GOPEER is the sourcing script's
build_gopeer() {
    if [[ -n ${GOPEER:-} ]]; then
        log "using $GOPEER as it is"
        return
    fi
    need go
    log "building the Go peer with $(go version)"
    (cd benches/gopeer && GOFLAGS=-mod=mod go build -o "$WORK/gopeer" .) >&2
    GOPEER=$WORK/gopeer
}

# Writes to FILE the AdmissionReview of the DELETE of the KubeStash Function NAME, as the API
# server sends it to /protect. Usage: kubestash_function_delete FILE NAME
kubestash_function_delete() {
    python3 - "$1" "$2" <<'PY'
import json, sys
out, name = sys.argv[1], sys.argv[2]
review = json.load(open("tests/fixtures/reviews/function-delete.json"))
request = review["request"]
for field in ("kind", "requestKind"):
    request[field] = {"group": "addons.kubestash.com", "version": "v1alpha1", "kind": "Function"}
for field in ("resource", "requestResource"):
    request[field] = {"group": "addons.kubestash.com", "version": "v1alpha1", "resource": "functions"}
request["name"] = name
request["oldObject"] = {"apiVersion": "addons.kubestash.com/v1alpha1", "kind": "Function",
    "metadata": {"name": name}, "spec": {"image": "ghcr.io/kubestash/fn:v1"}}
json.dump(review, open(out, "w"))
PY
}
