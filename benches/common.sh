# Sourced by the benchmark scripts: a scratch directory and the processes a script starts, both
# cleaned up however the script ends.
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
