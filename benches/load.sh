#!/usr/bin/env bash
# Load test on loopback: the webhook against the floor server (examples/floor_server.rs) and the Go
# peer (benches/gopeer, on the CREATE rows), over TLS, HTTP/2 and HTTP/1.1 keep-alive, with h2load;
# then a scale run with 10,000 Functions.
# Every server it starts listens on 127.0.0.1 and is killed on exit. See benches/README.md.
#
# Knobs (environment): N (requests per run, 20000), C (connections, 16), M (HTTP/2 streams per
# connection, 8), ROUNDS (runs per server and protocol, interleaved; the medians are reported, 9),
# BIG_N (requests with the 1 MiB body, 400), SCALE_FUNCTIONS (10000), SCALE_BODIES (100),
# SCALE_NAMES (Functions named per body, 100), SCALE_REPEAT (POSTs of each body, 500).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-20000}
C=${C:-16}
M=${M:-8}
ROUNDS=${ROUNDS:-9}
BIG_N=${BIG_N:-400}
SCALE_FUNCTIONS=${SCALE_FUNCTIONS:-10000}
SCALE_BODIES=${SCALE_BODIES:-100}
SCALE_NAMES=${SCALE_NAMES:-100}
SCALE_REPEAT=${SCALE_REPEAT:-500}
RUN_TIMEOUT=${RUN_TIMEOUT:-120} # seconds allowed for one h2load run
FIXTURE=tests/fixtures/reviews/backupconfiguration-create.json
PATH_QUERY='/validate?timeout=5s'

# shellcheck source=benches/common.sh
source benches/common.sh

# --- tools -------------------------------------------------------------------------------------
need_h2load
need h2load curl python3 awk

build_servers
build_gopeer

# --- certificates, Functions, bodies -------------------------------------------------------------
# `certs --service localhost` gives a certificate for DNS:localhost (and localhost.bench...), no IP
# SAN: curl checks it with --resolve localhost:PORT:127.0.0.1; h2load does not verify certificates.
"$WEBHOOK" certs --service localhost --namespace bench --out "$WORK/certs" >/dev/null
CERT=$WORK/certs/tls.crt
KEY=$WORK/certs/tls.key
python3 benches/load_bodies.py batch "$WORK"
{
    cat manifests/examples/functions.yaml
    printf '\n---\n'
    cat "$WORK/batch-functions.yaml"
} >"$WORK/functions.yaml"


# Waits (at most 10 s) until https://127.0.0.1:PORT answers, or the process has died.
wait_up() {
    local port=$1 pid=$2
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || die "server on port $port exited; see $WORK/*.log"
        curl -sk --max-time 1 -o /dev/null "https://127.0.0.1:$port/healthz" && return 0
        sleep 0.1
    done
    die "server on port $port did not come up within 10 s"
}

# POSTs FILE once with certificate verification and prints the response.
post_once() {
    local port=$1 file=$2
    curl -sS --max-time 10 --cacert "$WORK/certs/ca.crt" --resolve "localhost:$port:127.0.0.1" \
        -H 'Content-Type: application/json' --data-binary "@$file" "https://localhost:$port$PATH_QUERY"
}

start_webhook() {
    local port=$1 functions=$2 name=$3
    "$WEBHOOK" serve --listen "127.0.0.1:$port" --tls-cert "$CERT" --tls-key "$KEY" \
        --functions-file "$functions" --log warn --shutdown-grace 2s >"$WORK/$name.log" 2>&1 &
    PIDS+=("$!")
    LAST_PID=$!
    wait_up "$port" "$LAST_PID"
}

# CPU time (user + system, in clock ticks) the process PID has used so far, from /proc/PID/stat
# (fields 14 and 15, counted after the command name, which ends with the last ')').
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
TICKS_PER_S=$(getconf CLK_TCK)

# KiB from /proc/PID/status: FIELD is VmHWM (peak RSS) or VmRSS.
proc_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# "p50 p99" in ms of the request durations (µs, one per line) in FILE
percentiles() {
    sort -n "$1" | awk '
        { d[NR] = $1 }
        END {
            i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
            i99 = int(NR * 0.99 + 0.999999); if (i99 > NR) i99 = NR
            printf "%.3f %.3f\n", d[i50] / 1000, d[i99] / 1000
        }'
}

# The last run's request durations (µs, one per line), from h2load's --log-file, whose lines are
# "start(us) status duration(us)".
DURATIONS=$WORK/durations

# run_h2load OUT PROTO PORT BODY N C M [EXPECT [PID]]: one h2load run in which every answer must be
# of status class EXPECT (2xx unless given); writes "req/s p50_ms p99_ms cpu_us" to OUT, cpu_us
# being the CPU time the server PID used per request during the run (0 without PID), and the
# run's request durations to DURATIONS.
run_h2load() {
    local out=$1 proto=$2 port=$3 body=$4 n=$5 c=$6 m=$7 expect=${8:-2xx} pid=${9:-}
    local text=$WORK/h2load.txt reqlog=$WORK/h2load.reqs
    local args=(-n "$n" -c "$c" -m "$m" -d "$body" -H 'Content-Type: application/json' --log-file "$reqlog")
    if [[ $proto == h1 ]]; then args+=(--h1); fi
    rm -f "$reqlog"
    local ticks_before=0 ticks_after=0
    if [[ -n $pid ]]; then ticks_before=$(cpu_ticks "$pid"); fi
    timeout "$RUN_TIMEOUT" h2load "${args[@]}" "https://127.0.0.1:$port$PATH_QUERY" >"$text" 2>&1 ||
        { cat "$text" >&2; die "h2load failed or timed out ($proto, port $port)"; }
    local ok
    # "status codes: 20000 2xx, 0 3xx, 0 4xx, 0 5xx"
    ok=$(awk -v e="$expect" '/^status codes:/ { for (i = 3; i < NF; i += 2) { c = $(i + 1); sub(",", "", c); if (c == e) print $i } }' "$text")
    [[ $ok == "$n" ]] || { cat "$text" >&2; die "expected $n $expect answers, got ${ok:-none} ($proto, port $port)"; }
    if [[ -n $pid ]]; then ticks_after=$(cpu_ticks "$pid"); fi
    local rps cpu_us
    rps=$(awk '/^finished in/ { print $4 }' "$text")
    cpu_us=$(awk -v t=$((ticks_after - ticks_before)) -v hz="$TICKS_PER_S" -v n="$n" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')
    cut -f3 "$reqlog" >"$DURATIONS"
    echo "$rps $(percentiles "$DURATIONS") $cpu_us" >"$out"
}

# median of the Nth field of the lines of FILE
median() { awk -v f="$2" '{ print $f }' "$1" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

ROWS=$WORK/rows
RATIOS=$WORK/ratios
: >"$ROWS"
: >"$RATIOS"
# compare LABEL PROTO BODY N C M ROUNDS [WEBHOOK_EXPECT [PEER]]: interleaved rounds of the floor,
# the webhook and, when PEER is "peer", the Go peer; appends rows and ratios. The floor and the
# peer always answer 2xx; the webhook answers WEBHOOK_EXPECT (2xx unless given).
compare() {
    local label=$1 proto=$2 body=$3 n=$4 c=$5 m=$6 rounds=$7 webhook_expect=${8:-2xx} peer=${9:-}
    local servers=(floor webhook) server port expect pid r i order
    if [[ $peer == peer ]]; then servers+=(gopeer); fi
    log "$label: warm-up"
    for server in "${servers[@]}"; do
        port=$FLOOR_PORT expect=2xx
        if [[ $server == webhook ]]; then port=$WEBHOOK_PORT expect=$webhook_expect; fi
        if [[ $server == gopeer ]]; then port=$PEER_PORT; fi
        run_h2load "$WORK/warm" "$proto" "$port" "$body" "$((c * m * 4))" "$c" "$m" "$expect"
        : >"$WORK/$server.runs"
        : >"$WORK/$server.lat"
    done
    for r in $(seq "$rounds"); do
        # Each round's runs are back to back, and which goes first turns with the rounds, so a
        # change in the machine's other load between them falls on each server as often.
        order=()
        for i in "${!servers[@]}"; do order+=("${servers[$(((i + r) % ${#servers[@]}))]}"); done
        for server in "${order[@]}"; do
            case $server in
            floor) port=$FLOOR_PORT expect=2xx pid=$FLOOR_PID ;;
            webhook) port=$WEBHOOK_PORT expect=$webhook_expect pid=$WEBHOOK_PID ;;
            gopeer) port=$PEER_PORT expect=2xx pid=$PEER_PID ;;
            esac
            log "$label: $server, round $r/$rounds (-n $n -c $c -m $m)"
            run_h2load "$WORK/one" "$proto" "$port" "$body" "$n" "$c" "$m" "$expect" "$pid"
            cat "$WORK/one" >>"$WORK/$server.runs"
            cat "$DURATIONS" >>"$WORK/$server.lat"
        done
    done
    # A server's p50 and p99 are those of all its requests in all rounds: a one-second run's p99
    # turns on whether the machine stalled during that second, and the rounds, interleaved, see
    # the same stalls.
    local lat floor_lat webhook_lat peer_lat=""
    for server in "${servers[@]}"; do
        lat=$(percentiles "$WORK/$server.lat")
        case $server in
        floor) floor_lat=$lat ;;
        webhook) webhook_lat=$lat ;;
        gopeer) peer_lat=$lat ;;
        esac
        printf '%s|%s|%s|%s|%s|%s\n' "$label" "$server" "$(median "$WORK/$server.runs" 1)" \
            "${lat% *}" "${lat#* }" "$(median "$WORK/$server.runs" 4)" >>"$ROWS"
    done
    # Each round's ratios, webhook over floor: throughput, p99, CPU per request; and the webhook's
    # throughput over the Go peer's.
    if [[ $peer == peer ]]; then
        paste -d' ' "$WORK/floor.runs" "$WORK/webhook.runs" "$WORK/gopeer.runs"
    else
        paste -d' ' "$WORK/floor.runs" "$WORK/webhook.runs"
    fi | awk '{ printf "%.4f %.4f %.4f %s\n", $5 / $1, $7 / $3, ($4 > 0 ? $8 / $4 : 0), (NF > 8 ? sprintf("%.4f", $5 / $9) : "-") }' >"$WORK/pairs"
    local over_peer=- peer_p99=-
    if [[ $peer == peer ]]; then
        over_peer=$(median "$WORK/pairs" 4)
        peer_p99=$(awk -v p="${peer_lat#* }" -v f="${floor_lat#* }" 'BEGIN { printf "%.4f", p / f }')
    fi
    printf '%s|%s|%s|%s|%s|%s|%s\n' "$label" "$(median "$WORK/pairs" 1)" \
        "$(awk -v w="${webhook_lat#* }" -v f="${floor_lat#* }" 'BEGIN { printf "%.4f", w / f }')" \
        "$(median "$WORK/pairs" 3)" "$(awk '{ t = t sprintf(" %.2f/%.2f", $1, $2) } END { print substr(t, 2) }' "$WORK/pairs")" \
        "$over_peer" "$peer_p99" >>"$RATIOS"
}

# --- webhook vs floor ----------------------------------------------------------------------------
FLOOR_PORT=$(free_port)
"$FLOOR" --listen "127.0.0.1:$FLOOR_PORT" --cert "$CERT" --key "$KEY" >"$WORK/floor.log" 2>&1 &
PIDS+=("$!")
FLOOR_PID=$!
wait_up "$FLOOR_PORT" "$FLOOR_PID"
WEBHOOK_PORT=$(free_port)
start_webhook "$WEBHOOK_PORT" "$WORK/functions.yaml" webhook
WEBHOOK_PID=$LAST_PID
PEER_PORT=$(free_port)
"$GOPEER" --listen "127.0.0.1:$PEER_PORT" --cert "$CERT" --key "$KEY" >"$WORK/gopeer.log" 2>&1 &
PIDS+=("$!")
PEER_PID=$!
wait_up "$PEER_PORT" "$PEER_PID"

answer=$(post_once "$WEBHOOK_PORT" "$FIXTURE")
[[ $answer == *'"allowed":true'* ]] || die "the webhook did not allow the recorded review: $answer"
answer=$(post_once "$WEBHOOK_PORT" "$WORK/backupbatch-1mib.json")
[[ $answer == *'"allowed":true'* ]] || die "the webhook did not allow the 1 MiB BackupBatch: $answer"
post_once "$FLOOR_PORT" "$FIXTURE" >/dev/null
[[ $(post_once "$PEER_PORT" "$FIXTURE") == "$(post_once "$WEBHOOK_PORT" "$FIXTURE")" ]] ||
    die "the Go peer's answer to the recorded review is not the webhook's"

compare "h2   3 KiB CREATE" h2 "$FIXTURE" "$N" "$C" "$M" "$ROUNDS" 2xx peer
# The same size of body, refused right after it is read (a JSON array, not an AdmissionReview:
# 400 at its first byte): the server's own cost (TLS, HTTP, routing, body limits, metrics)
# without decoding and judging a review.
python3 -c 'import sys; sys.stdout.write("[" + " " * (int(sys.argv[1]) - 2) + "]")' \
    "$(wc -c <"$FIXTURE")" >"$WORK/refused.json"
compare "h2   3 KiB refused (400)" h2 "$WORK/refused.json" "$N" "$C" "$M" "$ROUNDS" 4xx
compare "h1.1 3 KiB CREATE" h1 "$FIXTURE" "$N" "$C" 1 "$ROUNDS" 2xx peer
HWM_SMALL=$(proc_kib "$WEBHOOK_PID" VmHWM)
compare "h2   1 MiB BackupBatch" h2 "$WORK/backupbatch-1mib.json" "$BIG_N" 4 2 1
HWM_BIG=$(proc_kib "$WEBHOOK_PID" VmHWM)
FLOOR_HWM=$(proc_kib "$FLOOR_PID" VmHWM)

# --- scale: 10,000 Functions ---------------------------------------------------------------------
# h2load POSTs one body per run, so the scale run is SCALE_BODIES distinct bodies, each POSTed
# SCALE_REPEAT times over HTTP/2. Body i is a BackupBatch naming SCALE_NAMES distinct Functions
# (fn-(i*SCALE_NAMES) ...), so with the defaults the 100 bodies name all 10,000 Functions and the
# run is 50,000 reviews and 5,000,000 lookups.
log "scale: generating $SCALE_FUNCTIONS Functions and $SCALE_BODIES review bodies"
python3 benches/load_bodies.py scale "$WORK" "$SCALE_FUNCTIONS" "$SCALE_BODIES" "$SCALE_NAMES"
SCALE_PORT=$(free_port)
start_webhook "$SCALE_PORT" "$WORK/scale-functions.yaml" scale
SCALE_PID=$LAST_PID
SCALE_HWM_IDLE=$(proc_kib "$SCALE_PID" VmHWM)
answer=$(post_once "$SCALE_PORT" "$WORK/scale-0000.json")
[[ $answer == *'"allowed":true'* ]] || die "the scale webhook did not allow scale-0000.json: $answer"
SCALE_BODY_BYTES=$(wc -c <"$WORK/scale-0000.json")
scale_start=$(date +%s.%N)
for i in $(seq 0 $((SCALE_BODIES - 1))); do
    run_h2load "$WORK/one" h2 "$SCALE_PORT" "$(printf '%s/scale-%04d.json' "$WORK" "$i")" "$SCALE_REPEAT" 4 8
    cat "$WORK/one" >>"$WORK/scale.runs"
    if ((i % 20 == 19)); then log "scale: $((i + 1))/$SCALE_BODIES bodies"; fi
done
scale_end=$(date +%s.%N)
SCALE_HWM=$(proc_kib "$SCALE_PID" VmHWM)
SCALE_RSS=$(proc_kib "$SCALE_PID" VmRSS)
SCALE_REVIEWS=$((SCALE_BODIES * SCALE_REPEAT))

# --- report --------------------------------------------------------------------------------------
echo
echo "webhook vs floor and the Go peer (loopback TLS; $ROUNDS interleaved rounds, 1 for the 1 MiB body;"
echo "req/s and CPU: the median of the rounds; p50 and p99: of all the rounds' requests together)"
printf '%-24s %-8s %10s %9s %9s %11s\n' scenario server 'req/s' 'p50 ms' 'p99 ms' 'CPU us/req'
awk -F'|' '{ printf "%-24s %-8s %10.0f %9.3f %9.3f %11.1f\n", $1, $2, $3, $4, $5, $6 }' "$ROWS"
echo
echo "ratios, webhook / floor: throughput and CPU, the median of the rounds' own ratios (each round's"
echo "runs back to back); p99, of the p99s of all the rounds' requests; webhook / Go peer: throughput,"
echo "the median of the rounds' ratios (targets: throughput >= 0.70 of the floor's, p99 <= 2.00x the"
echo "floor's, throughput >= 2.3x the Go peer's)"
awk -F'|' '{
        t = $2; l = $3
        c = ($4 > 0 ? sprintf("%.2fx", $4) : "-")
        printf "%-24s throughput %.2f %-4s  p99 %.2fx %-4s  CPU per request %s\n", $1, t, (t >= 0.7 ? "ok" : "MISS"), l, (l <= 2.0 ? "ok" : "MISS"), c
        if ($6 != "-") printf "%-24s   over the Go peer: throughput %.2fx %-4s  (the Go peer p99 %.2fx the floor'"'"'s)\n", "", $6, ($6 >= 2.3 ? "ok" : "MISS"), $7
        printf "%-24s   each round, throughput/p99: %s\n", "", $5
    }' "$RATIOS"
echo "(targets apply to the CREATE rows; the refused row is the server without the review, the"
echo " 1 MiB row what decoding a large object costs; CPU us/req is the server's user + system time"
echo " per request, h2load's own not included)"
echo
echo "peak RSS (VmHWM)"
echo "  webhook after the 3 KiB runs:        $(mib "$HWM_SMALL") MiB"
echo "  webhook after the 1 MiB runs:        $(mib "$HWM_BIG") MiB"
echo "  floor server:                        $(mib "$FLOOR_HWM") MiB"
echo
echo "scale run: $SCALE_FUNCTIONS Functions; $SCALE_REVIEWS reviews = $SCALE_BODIES bodies x $SCALE_REPEAT POSTs (h2, -c 4 -m 8),"
echo "  each body a BackupBatch of $SCALE_BODY_BYTES bytes naming $SCALE_NAMES distinct Functions"
awk -v s="$scale_start" -v e="$scale_end" -v n="$SCALE_REVIEWS" 'BEGIN { printf "  wall time %.1f s (%.0f reviews/s, h2load start-up included)\n", e - s, n / (e - s) }'
echo "  per-run median p50 $(median "$WORK/scale.runs" 2) ms, p99 $(median "$WORK/scale.runs" 3) ms"
echo "  peak RSS after loading the Functions: $(mib "$SCALE_HWM_IDLE") MiB"
awk -v k="$SCALE_HWM" 'BEGIN { m = k / 1024; printf "  peak RSS after the run:               %.1f MiB (target < 64 MiB: %s)\n", m, (m < 64 ? "ok" : "MISS") }'
echo "  RSS at the end:                       $(mib "$SCALE_RSS") MiB"
