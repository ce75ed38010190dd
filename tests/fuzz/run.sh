#!/usr/bin/env bash
# Runs each libFuzzer harness of BUILD_DIR/bin (python utils/build.py --fuzz) for SECONDS on its
# seed corpus and fails on any finding: a crash, a sanitizer report, a leak, an input slower than
# 10 s, or more than 2 GB of memory. New inputs go to a scratch directory, never into the
# committed corpus; a finding is left as crash-*/leak-*/timeout-*/oom-* in ARTIFACTS for
# tests/fuzz/corpus/<harness>/regress-*. Prints each harness's executions and time.
#
#     tests/fuzz/run.sh [BUILD_DIR [SECONDS [ARTIFACTS]]]
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-build-fuzz}/bin
seconds=${2:-60}
artifacts=${3:-logs/fuzz-artifacts}
mkdir -p "$artifacts"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

status=0
for harness in model tokenizer sampler chat; do
    mkdir -p "$scratch/$harness"
    log="$artifacts/fuzz_$harness.log"
    start=$(date +%s)
    rc=0
    "$bin/fuzz_$harness" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/${harness}-" \
        "$scratch/$harness" "tests/fuzz/corpus/$harness" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "fuzz_$harness: ${execs:-?} executions in $(( $(date +%s) - start )) s, exit code $rc"
    if [ "$rc" != 0 ]; then
        echo "fuzz_$harness found a problem (log: $log):" >&2
        grep -E -A12 'ERROR|runtime error|invariant violated|ALARM' "$log" | head -40 >&2 || tail -20 "$log" >&2
        status=1
    fi
done
exit "$status"
