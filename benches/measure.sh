#!/usr/bin/env bash
# Measures each example end to end with `zkinfer run`: k, setup and prove time, peak memory of
# the whole run (GNU time), proof size, verifier size and verification gas.
#   bash benches/measure.sh            (needs /usr/bin/time: apt-get install time)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zkinfer/target}"
cargo build --quiet
bin="$CARGO_TARGET_DIR/debug/zkinfer"
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
printf '| model | k | advice cols | instances | setup s | prove s | peak MiB | proof B | verifier B | gas | max err |\n|---|---|---|---|---|---|---|---|---|---|---|\n'
for example in mlp_small mlp_mnist; do
    dir="$out/$example"
    /usr/bin/time -v "$bin" run -M "examples/$example/network.onnx" -D "examples/$example/input.json" --dir "$dir" \
        > "$out/$example.stdout" 2> "$out/$example.time"
    peak_kib=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$out/$example.time")
    python3 - "$dir/report.json" "$example" "$peak_kib" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"| {sys.argv[2]} | {r['k']} | {r['advice_columns']} | {r['num_instances']} | {r['setup_seconds']:.2f} | {r['prove_seconds']:.2f} | "
      f"{int(sys.argv[3]) / 1024:.0f} | {r['proof_bytes']} | {r['verifier_runtime_bytes']} | {r['evm_gas']} | {r['max_abs_error']:.4f} |")
PY
done
