#!/usr/bin/env bash
# Runs compare.sh's slow scenario (5 never-readers of 100) and its baseline
# N times, alternating, each on a fresh server, and prints each run's
# deliveries/s, lost lines and p99, for the median of each and their ratio.
# Usage, from the repository root after `cargo build --release --workspace`:
#   bash bench/limits/slow_repeat.sh [SERVER_BINARY] [N]
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bin=${1:-target/release/chat-tokio}; n=${2:-5}
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for i in $(seq "$n"); do
  for mode in baseline slow; do
    "$bin" --listen 127.0.0.1:0 --max-clients 20000 > "$out" 2>/dev/null & pid=$!
    for _ in $(seq 50); do grep -q listening "$out" && break; sleep 0.1; done
    addr=$(awk '/listening/{print $3}' "$out")
    if [ $mode = slow ]; then
      r=$(target/release/chat-bench slow -q --addr "$addr" -n 100 -s 10 -m 5000 -b 512 --slow 5 --window 100 --quiet-secs 5 2>/dev/null)
    else
      r=$(target/release/chat-bench fanout -q --addr "$addr" -n 100 -s 10 -m 5000 -b 512 --window 100 --quiet-secs 5 2>/dev/null)
    fi
    kill $pid; wait $pid 2>/dev/null
    echo "$i $mode $(echo "$r" | tr ' ' '\n' | grep -E '^(p99_us|lost|deliveries_per_sec|slow_dropped)=' | tr '\n' ' ')"
  done
done
