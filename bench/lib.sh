# Shared by bench/compare.sh and bench/cluster.sh (sourced, not run): the
# sizes of the fanout and paced cases, so that both run the same load,
# stopping a server, and reading chat-bench's RESULT line. Expects `log`.

# Closed-loop senders keep at most this many lines in flight (see
# chat-bench --window): unbounded, they outrun the readers on 2 shared cores
# and a server with a per-client queue limit (ours: --max-queue, 1 MiB)
# rightly drops the readers as too slow. S*WINDOW*line stays under 1 MiB.
WINDOW="${WINDOW:-500}"

# fanout: FANOUT_N clients, FANOUT_S of them sending 64-byte lines in closed
# loop, total_deliveries in all; paced: the same clients, PACED_M lines each
# at PACED_RATE lines/s per sender. Closed-loop runs should last a few
# seconds.
if [ "${QUICK:-0}" = 1 ]; then
    FANOUT_N=10 FANOUT_S=2 PACED_M=50 PACED_RATE=50
else
    FANOUT_N=100 FANOUT_S=10 PACED_M=500 PACED_RATE=100
fi

# Total deliveries of a closed-loop run for server $1: the Go server is ~30x
# slower than ours, so it gets fewer lines (rates stay comparable).
total_deliveries() {
    if [ "${QUICK:-0}" = 1 ]; then echo 20000
    elif [ "$1" = go ]; then echo 2000000
    else echo 20000000
    fi
}

# Lines per sender of a closed-loop fanout of $2 clients for server $1.
fanout_lines() {
    echo $(($(total_deliveries "$1") / (FANOUT_S * ($2 - 1))))
}

# Stops process $1: SIGTERM, then SIGKILL if it is still there after 5 s.
stop_pid() {
    local pid="$1"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "server $pid ignored SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}

# Value of key $2 in RESULT line $1 ("-" if absent).
kv() {
    local v
    v="$(tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -n1)"
    echo "${v:--}"
}
