#!/usr/bin/env bash
# make demo: synth a model about three times larger than the RAM budget, print the plan, run
# generation under it inside a memory cgroup (when one can be made), print measured vs predicted.
set -euo pipefail
BIN=${BIN:-.build/release/strata}
MODEL=.build/demo-models/tinyllama-1.1b-bf16
BUDGET_MIB=${BUDGET_MIB:-700}
BUDGET=$((BUDGET_MIB * 1024 * 1024))
OUT=.build/demo
mkdir -p "$OUT"
if [ ! -f "$MODEL/model.safetensors" ]; then
    "$BIN" synth --preset tinyllama-1.1b --dtype bf16 --seed 1 --out "$MODEL"
fi
"$BIN" inspect --model "$MODEL"
echo
"$BIN" profile --disk-path .build > /dev/null
# the planner's disk figure: the model file read as the engine streams it (on a VM a fresh
# scratch file can read faster than the model will)
"$BIN" profile --disk-file "$MODEL/model.safetensors" > "$OUT/profile.json"
IDS=$(seq -s, 100 163)   # a 64-token prompt
"$BIN" plan --model "$MODEL" --ram-budget "$BUDGET" --batch 1 --prompt-tokens 64 --output-tokens 16 \
    --out "$OUT/plan.json" --svg "$OUT/plan.svg"
echo
echo "generating under the plan, RAM budget ${BUDGET_MIB} MiB (model $(du -h "$MODEL/model.safetensors" | cut -f1) on disk):"
scripts/run-in-memcg.sh "$BUDGET" "$BIN" generate --model "$MODEL" --plan "$OUT/plan.json" --ram-budget "$BUDGET" \
    --ids "$IDS" --max-tokens 16 --temperature 0 --ignore-eos --report "$OUT/report.json"
echo "report: $OUT/report.json, plan: $OUT/plan.json, placement strip and budget curve: $OUT/plan.svg"
