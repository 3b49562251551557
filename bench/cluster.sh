#!/usr/bin/env bash
# One room over several servers and Redis (docs/design/cluster.md): for each
# server, in one sitting, the fanout and paced cases of bench/compare.sh
# with the clients spread over 1, 2 and 3 nodes sharing a fresh redis-server,
# interleaved with the same server alone, without Redis (0 nodes), so that
# the ratios are measured side by side. Prints one markdown table and a bar
# plot of deliveries/s against the number of nodes (also written to $OUT).
#
# Usage: bench/cluster.sh
# Environment:
#   SERVERS="tokio asyncstd std"  servers to run, in this order
#   NODES="0 1 2 3"               node counts; 0: one server without --redis
#   SCENARIOS="fanout paced"      cases to run
#   ROUNDS=1                      runs of every case; with more, the table has
#                                 medians (lost: the sum) and the rounds are
#                                 interleaved as the node counts are
#   QUICK=1                       tiny numbers: a smoke test of a few seconds
#   STRICT=1                      exit 1 if any run was not clean: a line lost,
#                                 duplicated, reordered or echoed, a client
#                                 disconnected, or chat-bench failed
#   OUT=target/bench-cluster.md   where the table is written
#   SERVER_ARGS="--max-clients 20000" extra flags for every node
#   BENCH_TIMEOUT=120             chat-bench --timeout-secs for each case
#   NO_BUILD=1                    skip `cargo build --release --workspace`
#   BIN_DIR=target/release        where chat-tokio and the others are
#   BENCH=target/release/chat-bench
# target/ is $CARGO_TARGET_DIR when that is set.
# Every run gets fresh nodes (--listen 127.0.0.1:0, --node node1...) on an
# emptied Redis (FLUSHALL), stopped after it with SIGTERM, then SIGKILL.
# chat-bench spreads the clients over the nodes in turn, senders and
# readers alike. Redis CPU per line: used_cpu_sys + used_cpu_user of
# `INFO cpu` after the run minus before, over the lines published (senders
# times lines each); it includes the clients' joins and leaves and the
# nodes' beats during the run. Raw output goes to target/bench-logs/cluster.*.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=bench/lib.sh
. bench/lib.sh

SERVERS="${SERVERS:-tokio asyncstd std}"
NODES="${NODES:-0 1 2 3}"
SCENARIOS="${SCENARIOS:-fanout paced}"
ROUNDS="${ROUNDS:-1}"
QUICK="${QUICK:-0}"
STRICT="${STRICT:-0}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="${OUT:-$TARGET/bench-cluster.md}"
SERVER_ARGS="${SERVER_ARGS:---max-clients 20000}"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-120}"
[ "$QUICK" = 1 ] && BENCH_TIMEOUT="${BENCH_TIMEOUT_QUICK:-30}"
BIN_DIR="${BIN_DIR:-$TARGET/release}"
BENCH="${BENCH:-$TARGET/release/chat-bench}"
LOGS="$TARGET/bench-logs"

WORK="$(mktemp -d)"
REDIS_PID=""
REDIS_PORT=""
NODE_PIDS=()
ADDRS=()
ROWS="$WORK/rows.tsv"
: >"$ROWS"

log() { echo "cluster.sh: $*" >&2; }

stop_nodes() {
    local pid
    for pid in "${NODE_PIDS[@]}"; do stop_pid "$pid"; done
    NODE_PIDS=() ADDRS=()
}

cleanup() {
    stop_nodes
    [ -z "$REDIS_PID" ] || stop_pid "$REDIS_PID"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in redis-server redis-cli; do
    command -v "$tool" >/dev/null || { log "$tool is not installed (apt-get install redis-server)"; exit 1; }
done

# --- build -----------------------------------------------------------------
if [ "${NO_BUILD:-0}" != 1 ]; then
    cargo build --release --workspace
fi
[ -x "$BENCH" ] || { log "missing $BENCH"; exit 1; }
mkdir -p "$LOGS" "$(dirname "$OUT")"

rcli() { redis-cli -p "$REDIS_PORT" "$@"; }

# Starts redis-server on a free loopback port, without persistence; sets
# REDIS_PID and REDIS_PORT. A port free when probed may be taken before
# Redis binds it: then Redis exits and another port is tried.
start_redis() {
    local try port
    for try in 1 2 3; do
        port=$((20000 + RANDOM % 30000))
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
        redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize no >"$LOGS/cluster.redis.log" 2>&1 &
        REDIS_PID=$! REDIS_PORT=$port
        for _ in $(seq 100); do
            [ "$(rcli PING 2>/dev/null)" = PONG ] && return 0
            kill -0 "$REDIS_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
        log "redis-server did not start on port $port (try $try)"
    done
    REDIS_PID=""
    return 1
}

# Redis CPU time so far, in seconds.
redis_cpu() {
    rcli INFO cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/ { t += $2 } END { printf "%.6f", t }'
}

# Whether a client at $1 (HOST:PORT) gets into the room: a node turns
# clients away (`* error: room unavailable`) until its link to Redis is up.
room_open() {
    local line=""
    { exec 3<>"/dev/tcp/${1%:*}/${1##*:}"; } 2>/dev/null || return 1
    IFS= read -r -t 5 line <&3 || true
    exec 3>&-
    [ -n "$line" ] && [[ "$line" != "* error:"* ]]
}

# start_nodes SERVER COUNT LABEL: COUNT nodes of SERVER on the emptied Redis
# (COUNT 0: one server without --redis), each serving; sets NODE_PIDS and
# ADDRS. Their stderr goes to $LOGS/cluster.LABEL.nodeI.log.
start_nodes() {
    local name="$1" count="$2" label="$3" bin="$BIN_DIR/chat-$1" i out addr
    [ -x "$bin" ] || { log "$bin not found: skipping $name"; return 1; }
    rcli FLUSHALL >/dev/null
    for i in $(seq "$((count > 0 ? count : 1))"); do
        local redis=()
        [ "$count" = 0 ] || redis=(--redis "redis://127.0.0.1:$REDIS_PORT/" --node "node$i")
        out="$WORK/node$i.out"
        # shellcheck disable=SC2086 # SERVER_ARGS is a list of flags
        "$bin" --listen 127.0.0.1:0 "${redis[@]}" $SERVER_ARGS >"$out" \
            2>"$LOGS/cluster.$label.node$i.log" &
        NODE_PIDS+=($!)
        addr=""
        for _ in $(seq 100); do
            addr="$(sed -n 's/^listening on \([^ ]*\)$/\1/p' "$out" | head -n1)"
            [ -z "$addr" ] || break
            kill -0 "${NODE_PIDS[-1]}" 2>/dev/null || break
            sleep 0.1
        done
        [ -n "$addr" ] || { log "$name node$i did not start; see $LOGS/cluster.$label.node$i.log"; return 1; }
        ADDRS+=("$addr")
    done
    for addr in "${ADDRS[@]}"; do
        for _ in $(seq 100); do
            room_open "$addr" && continue 2
            sleep 0.1
        done
        log "$name at $addr did not let a client into the room"
        return 1
    done
}

# run_case SERVER NODES ROUND SCENARIO: one run on fresh nodes; records a row.
run_case() {
    local s="$1" n="$2" round="$3" sc="$4" label="$1.$4.$2-nodes.r$3" args=()
    case "$sc" in
        fanout) args=(-m "$(fanout_lines "$s" "$FANOUT_N")" --window "$WINDOW") ;;
        paced) args=(-m "$PACED_M" --rate "$PACED_RATE") ;;
        *) log "unknown scenario $sc"; return 1 ;;
    esac
    local logf="$LOGS/cluster.$label.log" result="" cpu0="" cpu1="" note="" v
    log "$s, $n nodes, round $round: $sc (${args[*]})"
    if start_nodes "$s" "$n" "$label"; then
        [ "$n" = 0 ] || cpu0="$(redis_cpu)"
        result="$(timeout --kill-after=5 $((BENCH_TIMEOUT + 60)) "$BENCH" fanout -q \
            --addr "$(IFS=,; echo "${ADDRS[*]}")" --timeout-secs "$BENCH_TIMEOUT" \
            -n "$FANOUT_N" -s "$FANOUT_S" -b 64 "${args[@]}" \
            2>"$logf" | grep '^RESULT ' || true)" || true
        [ "$n" = 0 ] || cpu1="$(redis_cpu)"
    else
        echo "chat-bench not run: the nodes did not start" >"$logf"
    fi
    stop_nodes
    local cpu_line="-"
    if [ -z "$result" ]; then
        note="error: $(tail -n1 "$logf" | tr '\t|' '  ')"
    else
        [ "$(kv "$result" ok)" = 1 ] || note="lines lost/dup/reordered"
        v="$(kv "$result" reader_disconnects)"
        [ "$v" = 0 ] || note="$note; clients dropped: $v/$(kv "$result" clients)"
        v="$(kv "$result" echoed)"
        [ "$v" = 0 ] || note="$note; echoed to their sender: $v"
        v="$(sed -n 's/^stopped early: //p' "$logf" | head -n1)"
        [ -z "$v" ] || note="$note; stopped: $v"
        if [ -n "$cpu0" ] && [ -n "$cpu1" ]; then
            cpu_line="$(awk -v a="$cpu0" -v b="$cpu1" -v l="$(($(kv "$result" senders) * $(kv "$result" lines)))" \
                'BEGIN { printf "%.2f", (b - a) * 1e6 / (l > 0 ? l : 1) }')"
        fi
    fi
    # Warnings once serving (a link down, a node lost, a client dropped as
    # too slow) are worth a look whatever the counts say; those of startup
    # (chat-std lowering --max-clients) are not about the run.
    v="$(awk 'FNR == 1 { on = 0 } / listening / { on = 1 } on && / (WARN|ERROR) / { c++ }
        END { print c + 0 }' "$LOGS/cluster.$label".node*.log 2>/dev/null || echo 0)"
    [ "$v" = 0 ] || note="$note; node log warnings: $v"
    note="${note#; }"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$s" "$n" "$sc" "$round" "$(kv "$result" clients)" "$(kv "$result" senders)" \
        "$(kv "$result" deliveries_per_sec)" "$(kv "$result" lost)" "$(kv "$result" p50_us)" \
        "$(kv "$result" p99_us)" "$(kv "$result" arrival_p99_us)" "$cpu_line" "$note" >>"$ROWS"
    # Let sockets of the previous run close before the next one.
    sleep 1
}

start_redis || { log "could not start redis-server"; exit 1; }
log "redis-server on port $REDIS_PORT (pid $REDIS_PID)"
for round in $(seq "$ROUNDS"); do
    for s in $SERVERS; do
        for sc in $SCENARIOS; do
            for n in $NODES; do run_case "$s" "$n" "$round" "$sc"; done
        done
    done
done

# --- table and plot ----------------------------------------------------------
# One line per (server, scenario, nodes), in the order first run: medians of
# the rounds (lost summed, notes of every round), ratio to the server alone.
awk -F'\t' -v OFS='\t' '
    function median(list,   v, n, i, j, t) {
        n = split(list, v, " ")
        for (i = 2; i <= n; i++)
            for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
        if (n == 0) return "-"
        return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    function add(k, f, x) { if (x != "-") vals[k, f] = vals[k, f] (vals[k, f] == "" ? "" : " ") x }
    {
        k = $1 SUBSEP $3 SUBSEP $2
        if (!(k in seen)) { seen[k] = 1; order[++n] = k; row[k] = $1 OFS $2 OFS $3 OFS $5 OFS $6 }
        for (f = 7; f <= 12; f++) if (f != 8) add(k, f, $f)
        lost[k] = ($8 == "-" || lost[k] == "-") ? "-" : lost[k] + $8
        if ($13 != "") notes[k] = notes[k] (notes[k] == "" ? "" : "; ") (rounds > 1 ? "round " $4 ": " : "") $13
    }
    END {
        for (i = 1; i <= n; i++) {
            k = order[i]
            print row[k], median(vals[k, 7]), lost[k], median(vals[k, 9]), median(vals[k, 10]),
                median(vals[k, 11]), median(vals[k, 12]), notes[k]
        }
    }' rounds="$ROUNDS" "$ROWS" >"$WORK/table.tsv"

{
    echo "# one room over several nodes ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $ROUNDS round(s)$([ "$QUICK" = 1 ] && echo ", QUICK=1"))"
    echo
    echo "| server | nodes | scenario | N | S | deliveries/s | vs alone | lost | p50 (ms) | p99 (ms) | p99 arrival (ms) | Redis CPU/line (µs) | notes |"
    echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    awk -F'\t' '
        function ms(v) { return v == "-" ? "-" : sprintf("%.2f", v / 1000) }
        { r[NR] = $0; if ($2 == 0) alone[$1, $3] = $6 }
        END {
            for (i = 1; i <= NR; i++) {
                split(r[i], f, "\t")
                ratio = "-"
                if (((f[1], f[3]) in alone) && alone[f[1], f[3]] + 0 > 0 && f[6] != "-")
                    ratio = sprintf("%.2fx", f[6] / alone[f[1], f[3]])
                printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                    f[1], f[2] == 0 ? "0 (no Redis)" : f[2], f[3], f[4], f[5],
                    f[6] == "-" ? "-" : sprintf("%.0f", f[6]), ratio, f[7], ms(f[8]), ms(f[9]),
                    ms(f[10]), f[11], f[12]
            }
        }' "$WORK/table.tsv"
    echo
    echo "Clients spread over the nodes in turn, senders and readers alike; every broadcast goes through"
    echo "Redis (published by its sender's node, read back by every node). fanout: closed loop, at most"
    echo "$WINDOW lines in flight per sender; paced: $PACED_RATE lines/s per sender, latency from the scheduled"
    echo "send time. 64-byte lines. \"vs alone\": deliveries/s over the same server's without Redis"
    echo "(0 nodes). Redis CPU/line: Redis's CPU time during the run over the lines published."
    echo
    echo '```text'
    echo "fanout deliveries/s against nodes (0: one server without Redis)"
    awk -F'\t' '
        $3 == "fanout" && $6 != "-" { r[++n] = $0; if ($6 + 0 > max) max = $6 + 0 }
        END {
            for (i = 1; i <= n; i++) {
                split(r[i], f, "\t")
                if (f[1] != last) { print f[1]; last = f[1] }
                w = max > 0 ? int(f[6] * 50 / max + 0.5) : 0
                bar = ""
                for (j = 0; j < w; j++) bar = bar "#"
                printf "  %s |%-50s %.2f M/s\n", f[2], bar, f[6] / 1e6
            }
        }' "$WORK/table.tsv"
    echo '```'
} | tee "$OUT"
log "table written to $OUT; raw logs in $LOGS/cluster.*"

if [ "$STRICT" = 1 ] && awk -F'\t' '$13 != "" { bad = 1 } END { exit !bad }' "$ROWS"; then
    log "STRICT=1: a run was not clean (see the notes)"
    exit 1
fi
