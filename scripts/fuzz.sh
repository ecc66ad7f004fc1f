#!/usr/bin/env bash
# make fuzz: each libFuzzer target of Fuzz/ for FUZZ_SECONDS (default 60) from its committed seeds
# (Fuzz/corpus/<target>), with a working corpus and crash artifacts under .build/fuzz/<target>/.
# Prints executions per target and exits non-zero when any target crashed, trapped or hung.
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=${1:-${FUZZ_SECONDS:-60}}
TARGETS=${FUZZ_TARGETS:-"fuzz-safetensors fuzz-config fuzz-tokenizer fuzz-gguf fuzz-jinja fuzz-chat fuzz-json fuzz-placement fuzz-prompts"}
BIN=Fuzz/.build/release
total=0
failed=0
printf "%-18s %12s %10s %8s  %s\n" target executions exec/s crashes result
for t in $TARGETS; do
    work=.build/fuzz/$t
    mkdir -p "$work/corpus"
    log=$work/last.log
    "$BIN/$t" -max_total_time="$SECONDS_PER" -timeout=10 -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 \
        -artifact_prefix="$work/" "$work/corpus" "Fuzz/corpus/$t" >"$log" 2>&1
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    rate=$(grep -o 'exec/s: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    crashes=$(ls "$work"/crash-* "$work"/timeout-* "$work"/oom-* 2>/dev/null | wc -l)
    result=ok
    if [ $rc -ne 0 ] || [ "$crashes" -gt 0 ]; then result="FAILED (exit $rc; see $log)"; failed=1; fi
    total=$((total + ${runs:-0}))
    printf "%-18s %12s %10s %8s  %s\n" "$t" "${runs:-0}" "${rate:-0}" "$crashes" "$result"
done
echo "total executions: $total"
exit $failed
