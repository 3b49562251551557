#!/usr/bin/env bash
# CI smoke of the load generator, so it cannot rot: a few clients and a few
# lines through chat-tokio (debug build), checked for loss, duplicates and
# order, the same over TLS, plus one idle broadcast and a small burst to
# paced readers from two source addresses; then bench/cluster.sh's fanout
# and paced over two chat-tokio nodes sharing a redis-server, failing on
# any line lost or client dropped. Benchmarks proper are bench/compare.sh
# and bench/cluster.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -q -p chat-bench -p chat-tokio
bin="${CARGO_TARGET_DIR:-target}/debug"
out="$(mktemp)"
"$bin"/chat-tokio --listen 127.0.0.1:0 --tls-listen 127.0.0.1:0 --tls-self-signed >"$out" 2>/dev/null &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 100); do
    # The TLS listener's line comes last.
    grep -q '^listening on .* (tls)$' "$out" && break
    sleep 0.1
done
addr="$(sed -n 's/^listening on \([^ ]*\)$/\1/p' "$out")"
tls_addr="$(sed -n 's/^listening on \([^ ]*\) (tls)$/\1/p' "$out")"
[ -n "$addr" ] && [ -n "$tls_addr" ] || { echo "bench smoke: chat-tokio did not start" >&2; exit 1; }

"$bin"/chat-bench fanout -q --addr "$addr" -n 5 -s 2 -m 200 -b 64 --timeout-secs 60
"$bin"/chat-bench fanout -q --tls --addr "$tls_addr" -n 5 -s 2 -m 200 -b 64 --timeout-secs 60
"$bin"/chat-bench fanout -q --addr "$addr" -n 5 -s 2 -m 50 -b 64 --rate 100 --timeout-secs 60
"$bin"/chat-bench idle -q --addr "$addr" -n 50 --pid "$pid" --timeout-secs 60
"$bin"/chat-bench burst -q --addr "$addr" --senders 2 --sender-ips 127.0.0.1,127.0.0.2 \
    --readers 3 --lines 20 --size 1000 --timeout-secs 60

# redis-server is optional here, but not in CI (CI set), where skipping
# would let the cluster's tooling rot unseen.
if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    cluster_out="$(mktemp)"
    SERVERS=tokio NODES=2 QUICK=1 STRICT=1 NO_BUILD=1 BIN_DIR="$bin" BENCH="$bin/chat-bench" \
        OUT="$cluster_out" bash bench/cluster.sh || { rm -f "$cluster_out"; exit 1; }
    rm -f "$cluster_out"
elif [ -n "${CI:-}" ]; then
    echo "bench smoke: redis-server (and redis-cli) missing; CI must have them (apt-get install redis-server)" >&2
    exit 1
else
    echo "bench smoke: skipping the 2-node run: redis-server is not installed" >&2
fi
