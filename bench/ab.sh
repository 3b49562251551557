#!/usr/bin/env bash
# Compares two builds of the servers in one sitting: runs bench/compare.sh
# against the "before" binaries and this tree's, alternately, ROUNDS times,
# and prints one markdown table of medians and after/before ratios (also
# written to $OUT). Alternating spreads the machine's noise over both sides.
#
# Usage: bench/ab.sh BEFORE_BIN_DIR
#   BEFORE_BIN_DIR: a target/release of the other commit, for instance
#     git worktree add ../before COMMIT
#     (cd ../before && cargo build --release -p chat-tokio -p chat-asyncstd -p chat-std)
#     bash bench/ab.sh ../before/target/release
# Environment (also see bench/compare.sh):
#   ROUNDS=3                       runs of each side
#   SERVERS="tokio asyncstd std"   servers to compare
#   SCENARIOS="fanout paced idle"  scenarios to compare
#   OUT=target/bench-ab.md         where the table is written
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

[ $# = 1 ] || { sed -n '2,17p' "$0" >&2; exit 2; }
BEFORE="$(cd "$1" && pwd)"
ROUNDS="${ROUNDS:-3}"
export SERVERS="${SERVERS:-tokio asyncstd std}"
export SCENARIOS="${SCENARIOS:-fanout paced idle}"
OUT="${OUT:-$ROOT/target/bench-ab.md}"
RUNS="$ROOT/target/bench-ab"

cargo build --release -p chat-tokio -p chat-asyncstd -p chat-std -p chat-bench
rm -rf "$RUNS"
mkdir -p "$RUNS"
for round in $(seq "$ROUNDS"); do
    for side in before after; do
        bin="${CARGO_TARGET_DIR:-$ROOT/target}/release"
        [ "$side" = before ] && bin="$BEFORE"
        echo "ab.sh: round $round of $ROUNDS: $side ($bin)" >&2
        BIN_DIR="$bin" NO_BUILD=1 OUT="$RUNS/$side-$round.md" bash bench/compare.sh >/dev/null
    done
done

# Rows of compare.sh's table as "side server scenario dps p50 p99 rss".
rows() {
    for f in "$RUNS"/*.md; do
        side="$(basename "$f" | cut -d- -f1)"
        awk -F' *\\| *' -v side="$side" '$2 != "" && $2 != "server" && $2 !~ /^-/ && NF > 13 {
            print side, $2, $3, $6, $10, $11, $14
        }' "$f"
    done
}

{
    echo "# before/after ($(date -u '+%Y-%m-%d %H:%M UTC'), $ROUNDS rounds each, medians)"
    echo
    echo "before: $BEFORE; after: $ROOT ($(git -C "$ROOT" rev-parse --short HEAD))"
    echo
    echo "| server | scenario | deliveries/s before | after | ratio | p99 (ms) before | after | RSS/conn (B) before | after | ratio |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    rows | sort -k2,2 -k3,3 -k1,1 | awk '
        # Median of the space-separated numbers in s ("-" if none).
        function median(s,   n, v, i, j, t) {
            n = split(s, v, " ")
            if (n == 0) return "-"
            for (i = 2; i <= n; i++) { t = v[i] + 0; for (j = i - 1; j >= 1 && v[j] + 0 > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
            return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
        }
        function ratio(a, b) { return (a == "-" || b == "-" || a + 0 == 0) ? "-" : sprintf("%.2f", b / a) }
        {
            key = $2 " " $3
            if (!(key in seen)) { seen[key] = 1; order[++n] = key }
            for (i = 4; i <= 7; i++) if ($i != "-") vals[$1, key, i] = vals[$1, key, i] " " $i
        }
        END {
            for (k = 1; k <= n; k++) {
                key = order[k]; split(key, sk, " ")
                for (i = 4; i <= 7; i++) { b[i] = median(vals["before", key, i]); a[i] = median(vals["after", key, i]) }
                printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", sk[1], sk[2],
                    b[4], a[4], ratio(b[4], a[4]), b[6], a[6], b[7], a[7], ratio(b[7], a[7])
            }
        }'
} | tee "$OUT"
