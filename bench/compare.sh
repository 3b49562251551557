#!/usr/bin/env bash
# Compare the chat servers (and the Go article's server as a baseline) with
# chat-bench, and print one markdown table (also written to $OUT).
#
# Usage: bench/compare.sh
# Environment:
#   SERVERS="go tokio asyncstd std"  servers to run, in this order
#   QUICK=1                           tiny numbers: a smoke test of a few seconds
#   OUT=target/bench-results.md       where the table is written
#   SERVER_ARGS="--max-clients 20000" extra flags for our servers
#   BENCH_TIMEOUT=120                 chat-bench --timeout-secs for each case
#   SEEDS_DIR=../shared/seeds         where the Go article lives
#   NO_BUILD=1                        skip `cargo build --release --workspace`
#   SCENARIOS="fanout fanout-tls paced paced-tls scale idle idle-tls slow fanout-nowindow slow-25 burst"
#                                     scenarios to run (always in this order)
#   BIN_DIR=target/release            where chat-tokio and the others are (for
#                                     comparing two builds with one chat-bench)
# target/ is $CARGO_TARGET_DIR when that is set.
# Each server is started once, runs all scenarios, and is stopped (SIGTERM,
# then SIGKILL); the memory, slow, nowindow and burst cases restart it.
# The *-tls scenarios are their plain twin over TLS, for our servers only:
# when one is wanted, our servers also listen for TLS with a certificate
# they make at startup (--tls-listen 127.0.0.1:0 --tls-self-signed), and
# chat-bench --tls connects there (accepting that certificate unchecked).
# Raw chat-bench output goes to target/bench-logs/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
. bench/lib.sh

SERVERS="${SERVERS:-go tokio asyncstd std}"
QUICK="${QUICK:-0}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="${OUT:-$TARGET/bench-results.md}"
SERVER_ARGS="${SERVER_ARGS:---max-clients 20000}"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-120}"
SEEDS_DIR="${SEEDS_DIR:-$ROOT/../shared/seeds}"
GO_PORT=12345
SCENARIOS="${SCENARIOS:-fanout fanout-tls paced paced-tls scale idle idle-tls slow fanout-nowindow slow-25 burst}"
BIN_DIR="${BIN_DIR:-$TARGET/release}"
BENCH="$TARGET/release/chat-bench"
LOGS="$TARGET/bench-logs"

WORK="$(mktemp -d)"
SERVER_PID=""
ADDR=""
TLS_ADDR=""
ROWS="$WORK/rows.tsv"
: >"$ROWS"

log() { echo "compare.sh: $*" >&2; }

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    stop_pid "$SERVER_PID"
    SERVER_PID=""
}

cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build -----------------------------------------------------------------
if [ "${NO_BUILD:-0}" != 1 ]; then
    if ! cargo build --release --workspace; then
        log "workspace build failed; building chat-bench alone and using whatever servers exist"
        cargo build --release -p chat-bench
    fi
fi
[ -x "$BENCH" ] || { log "missing $BENCH"; exit 1; }
mkdir -p "$LOGS" "$(dirname "$OUT")"

# Builds the server of "Build a Tiny Chat Server in Go" from the article's
# code blocks. The blocks lack the package clause, the imports and the
# global client manager; those are added here, in a temp dir only.
build_go() {
    if ! command -v go >/dev/null; then
        log "go is not installed: skipping the Go baseline (apt-get install golang-go)"
        return 1
    fi
    local article
    article="$(grep -l 'type ClientMgr struct' "$SEEDS_DIR"/*.txt 2>/dev/null | head -n1 || true)"
    if [ -z "$article" ]; then
        log "Go article not found in $SEEDS_DIR: skipping the Go baseline"
        return 1
    fi
    mkdir -p "$WORK/go"
    {
        printf 'package main\n\nimport (\n'
        printf '\t"%s"\n' bufio fmt math/rand net os strings sync
        printf ')\n\nvar clientMgr = NewClientMgr()\n\n'
        awk '/^```go/ { f = 1; next } /^```/ { if (f) print ""; f = 0; next } f' "$article"
    } >"$WORK/go/main.go"
    if ! (cd "$WORK/go" && GO111MODULE=off go build -o go-chat main.go); then
        log "building the Go server failed: skipping the Go baseline"
        return 1
    fi
}

# Waits until something accepts on 127.0.0.1:$1.
wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# Whether a TLS scenario is in $SCENARIOS.
tls_wanted() {
    case " $SCENARIOS " in *"-tls "*) return 0 ;; *) return 1 ;; esac
}

# Starts server $1, with flags $2... added to $SERVER_ARGS (the Go server
# takes none), and a TLS listener if tls_wanted; sets SERVER_PID, ADDR and
# TLS_ADDR (empty without TLS).
start_server() {
    local name="$1"
    shift
    if [ "$name" = go ]; then
        [ -x "$WORK/go/go-chat" ] || build_go || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$GO_PORT") 2>/dev/null; then
            log "port $GO_PORT is already in use: skipping the Go baseline"
            return 1
        fi
        # It prints every message; that cost is part of the baseline.
        "$WORK/go/go-chat" >/dev/null 2>&1 &
        SERVER_PID=$!
        ADDR="127.0.0.1:$GO_PORT"
        TLS_ADDR=""
        wait_port "$GO_PORT" || { log "the Go server did not start"; stop_server; return 1; }
        return 0
    fi
    local bin="$BIN_DIR/chat-$name"
    if [ ! -x "$bin" ]; then
        log "$bin not found: skipping $name"
        return 1
    fi
    local tls=()
    if tls_wanted; then tls=(--tls-listen 127.0.0.1:0 --tls-self-signed); fi
    # shellcheck disable=SC2086 # SERVER_ARGS is a list of flags
    "$bin" --listen 127.0.0.1:0 "${tls[@]}" $SERVER_ARGS "$@" >"$WORK/$name.out" \
        2>"$LOGS/$name.server.log" &
    SERVER_PID=$!
    ADDR="" TLS_ADDR=""
    # With --tls-self-signed a fingerprint line comes first, then
    # "listening on ADDR" and "listening on ADDR (tls)".
    for _ in $(seq 100); do
        ADDR="$(sed -n 's/.*listening on \([^ ]*\)$/\1/p' "$WORK/$name.out" | head -n1)"
        TLS_ADDR="$(sed -n 's/.*listening on \([^ ]*\) (tls)$/\1/p' "$WORK/$name.out" | head -n1)"
        if [ -n "$ADDR" ] && { [ ${#tls[@]} = 0 ] || [ -n "$TLS_ADDR" ]; }; then break; fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$ADDR" ]; then
        log "$name did not print 'listening on ADDR'; see $LOGS/$name.server.log"
        stop_server
        return 1
    fi
    if [ ${#tls[@]} != 0 ] && [ -z "$TLS_ADDR" ]; then
        log "$name did not print 'listening on ADDR (tls)': its TLS rows will be errors"
    fi
}

# run_case SERVER LABEL SUBCOMMAND ARGS...: runs chat-bench, records a row.
# A label with "-tls" in it runs over TLS, against the TLS listener.
run_case() {
    local server="$1" label="$2" sub="$3"
    shift 3
    local logf="$LOGS/$server.$label.log" rc=0 result="" addr="$ADDR" tls=()
    case "$label" in *-tls*) addr="$TLS_ADDR" tls=(--tls) ;; esac
    log "$server: $label ($sub ${tls[*]} $*)"
    if [ -z "$addr" ]; then
        echo "chat-bench not run: the server has no TLS listener" >"$logf"
    else
        result="$(timeout --kill-after=5 $((BENCH_TIMEOUT + 60)) "$BENCH" "$sub" -q "${tls[@]}" \
            --addr "$addr" --pid "$SERVER_PID" --timeout-secs "$BENCH_TIMEOUT" "$@" \
            2>"$logf" | grep '^RESULT ' || true)" || true
    fi
    # Exit status of chat-bench itself is not kept by the pipeline above;
    # the RESULT line's ok= says the same, and a missing line is an error.
    local note=""
    if [ -z "$result" ]; then
        note="error: $(tail -n1 "$logf" | tr '\t|' '  ')"
        rc=2
    else
        if [ "$sub" = burst ]; then
            # ok=0 there means a reader dropped or with a gap, said below.
            note="readers dropped: $(kv "$result" reader_disconnects)/$(kv "$result" clients)"
            note="$note, with a gap: $(kv "$result" gap_readers)"
            note="$note; lines per reader min/median/max $(kv "$result" reader_lines_min)"
            note="$note/$(kv "$result" reader_lines_median)/$(kv "$result" reader_lines_max)"
            note="$note of $(($(kv "$result" senders) * $(kv "$result" lines)))"
        else
            [ "$(kv "$result" ok)" = 1 ] || note="lines lost/dup/reordered"
            local dropped
            dropped="$(kv "$result" reader_disconnects)"
            [ "$dropped" = 0 ] || note="$note; readers dropped: $dropped/$(kv "$result" clients)"
        fi
        local stop
        stop="$(sed -n 's/^stopped early: //p' "$logf" | head -n1)"
        [ -z "$stop" ] || note="$note; stopped: $stop"
        if [ "$sub" = slow ]; then
            note="$note; slow clients disconnected: $(kv "$result" slow_disconnected)/$(kv "$result" slow)"
        fi
        note="${note#; }"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$server" "$label" "$(kv "$result" clients)" "$(kv "$result" senders)" \
        "$(kv "$result" deliveries_per_sec)" "$(kv "$result" lost)" \
        "$(kv "$result" p50_us)" "$(kv "$result" p99_us)" "$(kv "$result" p999_us)" \
        "$(kv "$result" rss_per_conn_bytes)" "$rc" "$note" \
        "$(kv "$result" arrival_p99_us)" >>"$ROWS"
    # Let sockets of the previous case close before the next one.
    sleep 1
}

# At most this many lines in flight per sender in the slow cases (WINDOW,
# from bench/lib.sh, for the others).
SLOW_WINDOW="${SLOW_WINDOW:-100}"

# Scenario sizes beyond fanout and paced (bench/lib.sh). slow-25: SLOW25_N readers and SLOW25_K never-reading clients, a quarter of
# all. burst: BURST_PER_IP senders from each of 1 and of 8 addresses, each
# writing 50 lines of 4000 B at once, BURST_R readers at 100 KiB/s, for at
# most BURST_SECS after the burst.
if [ "$QUICK" = 1 ]; then
    BENCH_TIMEOUT="${BENCH_TIMEOUT_QUICK:-30}"
    SCALE_NS="10 50"
    IDLE_N=200 SLOW_N=10 SLOW_S=2 SLOW_M=3000 SLOW_K=2 SLOW25_N=9 SLOW25_K=3
    BURST_PER_IP=2 BURST_R=4 BURST_SECS=3
else
    SCALE_NS="10 100 1000 5000"
    IDLE_N=10000 SLOW_N=100 SLOW_S=10 SLOW_M=5000 SLOW_K=5 SLOW25_N=75 SLOW25_K=25
    BURST_PER_IP=16 BURST_R=20 BURST_SECS=20
fi

# Whether scenario $1 is in $SCENARIOS.
wanted() {
    case " $SCENARIOS " in *" $1 "*) return 0 ;; *) return 1 ;; esac
}

# twins SERVER SCENARIO SUFFIX FRESH SUBCOMMAND ARGS...: the case
# SCENARIO$SUFFIX if wanted, then SCENARIO-tls$SUFFIX, the same over TLS, if
# wanted and SERVER is ours; with FRESH=1 each on a restarted server.
twins() {
    local s="$1" scenario="$2" suffix="$3" fresh="$4" tls
    shift 4
    for tls in "" -tls; do
        wanted "$scenario$tls" || continue
        if [ -n "$tls" ] && [ "$s" = go ]; then continue; fi
        if [ "$fresh" = 1 ]; then restart_server "$s" || return 1; fi
        run_case "$s" "$scenario$tls$suffix" "$@"
    done
}

run_server() {
    local s="$1" m n
    m="$(fanout_lines "$s" "$FANOUT_N")"
    twins "$s" fanout "" 0 fanout -n "$FANOUT_N" -s "$FANOUT_S" -m "$m" -b 64 --window "$WINDOW"
    twins "$s" paced "" 0 fanout -n "$FANOUT_N" -s "$FANOUT_S" -m "$PACED_M" -b 64 --rate "$PACED_RATE"
    if wanted scale; then
        for n in $SCALE_NS; do
            m="$(fanout_lines "$s" "$n")"
            [ "$m" -ge 20 ] || m=20
            run_case "$s" "scale-$n" fanout -n "$n" -s "$FANOUT_S" -m "$m" -b 64 --window "$WINDOW"
        done
    fi
    # The memory scenarios get a fresh server each: RSS left over from the
    # large fan-outs above would be counted against them.
    twins "$s" idle "-$IDLE_N" 1 idle -n "$IDLE_N" || return 0
    if wanted slow; then
        restart_server "$s" || return 0
        # The same load as slow without the never-reading clients, for its p99.
        run_case "$s" slow-baseline fanout -n "$SLOW_N" -s "$SLOW_S" -m "$SLOW_M" -b 512 \
            --window "$SLOW_WINDOW" --quiet-secs 5
        restart_server "$s" || return 0
        # Last: the Go server stalls for good once a client stops reading.
        run_case "$s" slow slow -n "$SLOW_N" -s "$SLOW_S" -m "$SLOW_M" -b 512 --slow "$SLOW_K" \
            --window "$SLOW_WINDOW" --quiet-secs 5
    fi
    # Beyond the targets: what happens past the limits. Each on a fresh
    # server (the Go server is stuck after slow).
    if wanted fanout-nowindow; then
        # fanout without --window: senders as fast as the server reads them.
        restart_server "$s" || return 0
        m="$(fanout_lines "$s" "$FANOUT_N")"
        run_case "$s" fanout-nowindow fanout -n "$FANOUT_N" -s "$FANOUT_S" -m "$m" -b 64 --window 0
    fi
    if wanted slow-25; then
        restart_server "$s" || return 0
        run_case "$s" slow-25-baseline fanout -n "$SLOW25_N" -s "$SLOW_S" -m "$SLOW_M" -b 512 \
            --window "$SLOW_WINDOW" --quiet-secs 5
        restart_server "$s" || return 0
        run_case "$s" slow-25 slow -n "$SLOW25_N" -s "$SLOW_S" -m "$SLOW_M" -b 512 \
            --slow "$SLOW25_K" --window "$SLOW_WINDOW" --quiet-secs 5
    fi
    if wanted burst; then
        # With the address policies on for loopback, as on a public port.
        local ips i
        for n in 1 8; do
            ips="127.0.0.1"
            for i in $(seq 2 "$n"); do ips="$ips,127.0.0.$i"; done
            restart_server "$s" --limit-loopback || return 0
            run_case "$s" "burst-$n" burst --senders $((BURST_PER_IP * n)) --sender-ips "$ips" \
                --readers "$BURST_R" --read-rate 102400 --lines 50 --size 4000 \
                --duration "$BURST_SECS"
        done
    fi
}

# Stops the server and starts server $1 again, with flags $2...
restart_server() {
    stop_server
    start_server "$@"
}

for s in $SERVERS; do
    if start_server "$s"; then
        log "$s listening on $ADDR${TLS_ADDR:+ and $TLS_ADDR (tls)} (pid $SERVER_PID)"
        run_server "$s"
        stop_server
    fi
done

# --- table -----------------------------------------------------------------
{
    echo "# chat server comparison ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores$([ "$QUICK" = 1 ] && echo ", QUICK=1"))"
    echo
    echo "| server | scenario | N | S | deliveries/s | ratio vs Go | TLS vs plain | lost | p50 (ms) | p99 (ms) | p99.9 (ms) | p99 arrival (ms) | RSS/conn (B) | notes |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    awk -F'\t' '
        function ms(v) { return v == "-" ? "-" : sprintf("%.2f", v / 1000) }
        # A TLS row against its plain twin (same server, label without
        # "-tls"): paced, the p99 difference; idle, the RSS/conn
        # difference; otherwise the deliveries/s ratio.
        function vs_plain(f,   p, d) {
            if (f[2] !~ /-tls/) return "-"
            p = f[2]; sub(/-tls/, "", p); p = f[1] SUBSEP p
            if (!(p in dps)) return "-"
            if (f[2] ~ /^paced/) {
                if (f[8] == "-" || p99[p] == "-") return "-"
                d = (f[8] - p99[p]) / 1000
                return sprintf("p99 %s%.2f ms", d >= 0 ? "+" : "", d)
            }
            if (f[2] ~ /^idle/) {
                if (f[10] == "-" || rss[p] == "-") return "-"
                d = f[10] - rss[p]
                return sprintf("%s%d B", d >= 0 ? "+" : "", d)
            }
            if (f[5] == "-" || dps[p] + 0 <= 0) return "-"
            return sprintf("%.2fx", f[5] / dps[p])
        }
        {
            row[NR] = $0
            if ($1 == "go") go[$2] = $5
            dps[$1, $2] = $5; p99[$1, $2] = $8; rss[$1, $2] = $10
        }
        END {
            for (i = 1; i <= NR; i++) {
                split(row[i], f, "\t")
                d = f[5]; ratio = "-"
                if (f[2] ~ /^idle/) d = "-"
                else if ((f[2] in go) && go[f[2]] + 0 > 0 && d != "-")
                    ratio = sprintf("%.2f", d / go[f[2]])
                printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                    f[1], f[2], f[3], f[4], d, ratio, vs_plain(f), f[6], ms(f[7]), ms(f[8]), ms(f[9]),
                    ms(f[13]), f[10], f[12]
            }
        }' "$ROWS"
    echo
    echo "fanout/scale: closed loop, at most $WINDOW lines in flight per sender (latency is then"
    echo "mostly queueing); paced: $PACED_RATE lines/s per sender, latency from the scheduled send time."
    echo "Latency until a client read the line; \"arrival\": until it reached the client's socket (kernel"
    echo "receive timestamp), without the time the load generator took to get to reading it."
    echo "64-byte lines except slow (512 B) and burst (4000 B). The Go server prints every message to stdout (/dev/null here)."
    echo "fanout-nowindow: fanout without a window. slow-25: $SLOW25_K never-reading clients beside $SLOW25_N readers"
    echo "(slow-25-baseline: the readers alone). burst-1/burst-8: the servers with --limit-loopback; $BURST_PER_IP senders"
    echo "from each of 1/8 addresses write 50 lines of 4000 B at once while $BURST_R readers read at 100 KiB/s"
    echo "(SO_RCVBUF 64 KiB), for at most $BURST_SECS s; lost: lines not read by then."
    echo "*-tls: the same case over TLS (our servers' self-signed certificate, no session resumption),"
    echo "handshakes done before the clock starts. \"TLS vs plain\": fanout-tls, its deliveries/s over"
    echo "fanout's (target: at least 0.5x); paced-tls, its p99 minus paced's (target: within 1 ms); idle-tls,"
    echo "its RSS/conn minus idle's. Arrival over TLS: when the ciphertext completing the line's records"
    echo "reached the socket."
} | tee "$OUT"
log "table written to $OUT; raw logs in $LOGS"
