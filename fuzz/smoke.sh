#!/usr/bin/env bash
# Fuzz smoke run, called from .ci/run: every target for a short while
# (FUZZ_SMOKE_SECONDS, default 40: seven targets in under five minutes, no
# more than four took at 60 s) starting from its committed seeds and
# regression inputs. Exits non-zero on any crash, leak or timeout; the input
# is left under fuzz/artifacts/TARGET/ (see docs/fuzzing.md for what next).
#
# The committed corpus is read only: new inputs go to a temporary directory
# given as the first corpus, which is the only one libFuzzer writes to.
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${FUZZ_SMOKE_SECONDS:-40}"
targets=(framing server policies nick sanitize cluster_entry cluster)

# libFuzzer needs nightly (-Zsanitizer). Say so loudly rather than pass.
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz smoke SKIPPED: no nightly toolchain"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz smoke: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

failed=()
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target"
    echo "fuzz smoke: $target for ${seconds}s"
    if ! cargo +nightly fuzz run "$target" \
        "$scratch/$target" "fuzz/seeds/$target" "fuzz/regressions/$target" \
        -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1; then
        failed+=("$target")
        echo "fuzz smoke: $target FAILED; input in fuzz/artifacts/$target/"
    fi
done

if ((${#failed[@]})); then
    echo "fuzz smoke FAILED: ${failed[*]}"
    exit 1
fi
echo "fuzz smoke passed: ${targets[*]}, ${seconds}s each"
