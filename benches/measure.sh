#!/usr/bin/env bash
# Measures each example end to end with `zkinfer run`, for each visibility mode: k, setup and
# prove time, peak memory of the whole run (GNU time), proof size, verifier size, verification
# gas and output error.
#   bash benches/measure.sh [OUT_DIR]          (needs /usr/bin/time: apt-get install time)
#   EXAMPLES="mlp_mnist" MODES="public/fixed/public hashed/hashed/public" bash benches/measure.sh
# A mode is input/params/output visibility (public, private, fixed for params, hashed).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zkinfer/target}"
cargo build --quiet
bin="$CARGO_TARGET_DIR/debug/zkinfer"
out="${1:-$(mktemp -d)}"
examples="${EXAMPLES:-mlp_small mlp_mnist}"
modes="${MODES:-public/fixed/public}"
mkdir -p "$out"
printf '| model | input/params/output | k | advice cols | advice cells | instances | setup s | prove s | peak MiB | proof B | verifier B | gas | max err |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for example in $examples; do
    for mode in $modes; do
        IFS=/ read -r input params output <<< "$mode"
        name="$example-$input-$params-$output"
        dir="$out/$name"
        /usr/bin/time -v "$bin" run -M "examples/$example/network.onnx" -D "examples/$example/input.json" --dir "$dir" \
            --input-visibility "$input" --param-visibility "$params" --output-visibility "$output" \
            > "$out/$name.stdout" 2> "$out/$name.time"
        peak_kib=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$out/$name.time")
        python3 - "$dir/report.json" "$example" "$mode" "$peak_kib" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"| {sys.argv[2]} | {sys.argv[3]} | {r['k']} | {r['advice_columns']} | {r['advice_cells']} | {r['num_instances']} | "
      f"{r['setup_seconds']:.2f} | {r['prove_seconds']:.2f} | {int(sys.argv[4]) / 1024:.0f} | {r['proof_bytes']} | "
      f"{r['verifier_runtime_bytes']} | {r['evm_gas']} | {r['max_abs_error']:.4f} |")
PY
    done
done
