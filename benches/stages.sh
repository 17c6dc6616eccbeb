#!/usr/bin/env bash
# Times compile, setup and prove of one example, each stage its own process (GNU time: wall
# seconds, peak memory and CPU use, 200% being both cores busy), for each configuration; for circuits whose direct verifier may be
# over EIP-170 (`zkinfer run` stops there), e.g. hashed params with the Poseidon gate.
#   bash benches/stages.sh [OUT_DIR]          (needs /usr/bin/time: apt-get install time)
#   EXAMPLE=mlp_mnist CONFIGS="fixed:off hashed:on hashed:off" bash benches/stages.sh
# A configuration is PARAM_VISIBILITY:POSEIDON_GATE.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zkinfer/target}"
cargo build --quiet
bin="$CARGO_TARGET_DIR/debug/zkinfer"
out="${1:-$(mktemp -d)}"
example="${EXAMPLE:-mlp_mnist}"
configs="${CONFIGS:-fixed:off hashed:on hashed:off}"
printf '| %s params | Poseidon gate | k | advice cells | compile s | setup s, MiB, CPU | prove s, MiB, CPU |\n|---|---|---|---|---|---|---|\n' "$example"
for config in $configs; do
    IFS=: read -r params gate <<< "$config"
    dir="$out/$example-$params-$gate"
    mkdir -p "$dir"
    cp "examples/$example/network.onnx" "examples/$example/input.json" "$dir/"
    stage() {
        local name="$1"
        shift
        (cd "$dir" && /usr/bin/time -f "%e %M %P" -o "$name.time" "$bin" "$@" > "$name.log" 2>&1)
    }
    stage settings gen-settings --param-visibility "$params" --poseidon-gate "$gate"
    stage compile compile
    stage setup setup
    stage prove prove
    python3 - "$dir" "$params" "$gate" <<'PY'
import json, sys
d, params, gate = sys.argv[1:]
shape = json.load(open(f"{d}/model.compiled"))["shape"]
t = {s: open(f"{d}/{s}.time").read().split() for s in ("compile", "setup", "prove")}
used = "ours" if shape.get("poseidon") else "halo2-base's"
cell = lambda s: f"{float(t[s][0]):.1f}, {int(t[s][1]) / 1024:.0f}, {t[s][2]}"
print(f"| {params} | {gate} ({used}) | {shape['k']} | {shape['advice_cells']} | {float(t['compile'][0]):.1f} | "
      f"{cell('setup')} | {cell('prove')} |")
PY
done
