#!/usr/bin/env python3
"""Aggregation measurements, as a user runs the commands.

N = 2 and 4 application proofs aggregated at once, N = 8 as a tree of pairs (three layers, then
the top proof made EVM-ready in one and in four advice columns), and one recursion layer over a
single proof (then EVM-ready in four columns and in one). For every aggregation: k, advice
columns, keygen and prove seconds, peak memory of the `aggregate` process, proof size; for the
ones made for the EVM also the verifier's runtime size and the gas of verifying on the
in-process EVM. Writes benches/results/aggregate.json and a Markdown table (printed too).

    python3 benches/aggregate.py            # all
    python3 benches/aggregate.py 2 recursion # some: any of 2, 4, 8, recursion

Rows measured now replace the rows of the same groups in benches/results/aggregate.json; the
others are kept. ZKINFER_BENCH_WORK=DIR works in DIR and keeps it (proofs, keys) afterwards.
Only the standard library; the zkinfer binary is built with `cargo build` (the dev profile
optimises everything). Runs take tens of minutes on two cores.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/zkinfer/target"))
ZKINFER = TARGET / "debug" / "zkinfer"
MODELS = [
    ("credit", ROOT / "examples/credit_score/network.onnx", ROOT / "examples/credit_score/input.json"),
    ("matmul", ROOT / "tests/fixtures/matmul_add.onnx", ROOT / "tests/fixtures/matmul_add.input.json"),
]


class Failed(Exception):
    pass


def run(args, cwd):
    """Runs zkinfer under /usr/bin/time; returns stdout and the peak resident memory (MiB)."""
    with tempfile.NamedTemporaryFile("r") as t:
        p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", t.name, str(ZKINFER), *args],
                           cwd=cwd, capture_output=True, text=True,
                           env={"ZKINFER_TOOLCHAIN_DIR": str(ROOT), **os.environ})
        peak = int(t.read().strip().splitlines()[-1]) / 1024
        if p.returncode != 0:
            raise Failed(f"zkinfer {' '.join(args)} failed (exit {p.returncode}, peak {peak:.0f} MiB): "
                         f"{(p.stderr.strip().splitlines() or ['killed'])[-1]}")
        return p.stdout, peak


def prove_inputs(work, n):
    """n Poseidon-transcript proofs, alternating the two models, each on its own input."""
    proofs = []
    for i in range(n):
        name, model, inp = MODELS[i % 2]
        d = work / f"{name}"
        if not (d / "pk.bin").exists():
            d.mkdir(parents=True, exist_ok=True)
            shutil.copy(model, d / "network.onnx")
            for step in (["gen-settings"], ["compile"], ["setup"]):
                run(step, d)
        data = json.loads(Path(inp).read_text())
        data["input_data"] = [[round(v * (1 - 0.05 * i), 4) for v in row] for row in data["input_data"]]
        (d / f"input{i}.json").write_text(json.dumps(data))
        run(["prove", "--for-aggregation", "-D", f"input{i}.json", "--proof", f"proof{i}.json",
             "--witness", f"witness{i}.json"], d)
        proofs.append(d / f"proof{i}.json")
    return proofs


# The verifying key of each aggregation proof made here (an application proof's is beside it).
VK_OF = {}


def vk_of(proof):
    return VK_OF.get(str(proof), str(Path(proof).parent / "vk.bin"))


def aggregate(work, proofs, out, for_aggregation, label, keys=None, group=None, extra=()):
    args = ["aggregate", "-P", *map(str, proofs), "--vk", *map(vk_of, proofs), "-O", out]
    args += ["--for-aggregation"] if for_aggregation else []
    args += list(extra)
    args += ["--keys", keys] if keys else []
    start = time.time()
    stdout, peak = run(args, work)
    m = re.search(r"k = (\d+), (\d+) advice columns, (\d+) public instances; (?:keys generated in ([\d.]+) s|keys reused), proved in ([\d.]+) s", stdout)
    proof = json.loads((work / out / "proof.json").read_text())
    keys_dir = keys or out
    VK_OF[str(work / out / "proof.json")] = str(work / keys_dir / "vk.bin")
    row = {
        "group": group, "aggregation": label, "k": int(m[1]), "advice_columns": int(m[2]), "public_instances": int(m[3]),
        "keygen_s": float(m[4]) if m[4] else None, "prove_s": float(m[5]), "peak_mib": round(peak),
        "wall_s": round(time.time() - start, 1), "proof_bytes": (len(proof["proof"]) - 2) // 2,
    }
    if not for_aggregation:
        run(["create-evm-verifier", "--vk", f"{keys_dir}/vk.bin", "--sol", f"{out}/Verifier.sol"], work)
        verifier = json.loads((work / out / "Verifier.json").read_text())
        row["verifier_bytes"] = len(verifier["runtime"].removeprefix("0x")) // 2
        stdout, _ = run(["verify-evm", "--proof", f"{out}/proof.json", "--verifier", f"{out}/Verifier.json"], work)
        row["gas"] = int(re.search(r"gas used (\d+)", stdout)[1])
    print(json.dumps(row), flush=True)
    return row


def tree(work, proofs, group):
    """Aggregates pairs, layer by layer, until one proof remains (Poseidon transcript throughout),
    then makes it EVM-ready twice: in the default four advice columns, and in one column (the
    least gas; k grows instead)."""
    rows, layer, level = [], proofs, 1
    while len(layer) > 1:
        nxt = []
        for j in range(0, len(layer), 2):
            out = f"tree-l{level}-{j // 2}"
            label = f"layer {level}: 2 proofs, for the next layer"
            rows.append(aggregate(work, layer[j:j + 2], out, True, label, f"tree-l{level}-keys", group))
            nxt.append(work / out / "proof.json")
        layer, level = nxt, level + 1
    top = layer[0]
    rows.append(aggregate(work, [top], "tree-evm1", False, f"the {len(proofs)}-proof tree's top, for the EVM in 1 column",
                          group=group, extra=["--max-advice-columns", "1"]))
    rows.append(aggregate(work, [top], "tree-evm4", False, f"the {len(proofs)}-proof tree's top, for the EVM in 4 columns",
                          group=group))
    return rows


def main():
    wanted = sys.argv[1:] or ["2", "4", "8", "recursion"]
    subprocess.run(["cargo", "build", "--quiet"], cwd=ROOT, check=True, env={**os.environ, "CARGO_TARGET_DIR": str(TARGET)})
    keep = os.environ.get("ZKINFER_BENCH_WORK")
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="zkinfer-aggregate-"))
    work.mkdir(parents=True, exist_ok=True)
    proofs = prove_inputs(work, 8 if "8" in wanted else 4)
    rows = []
    for name, measure in [
        ("2", lambda: [aggregate(work, proofs[:2], "direct2", False, "2 proofs at once, for the EVM", group="2")]),
        ("4", lambda: [aggregate(work, proofs[:4], "direct4", False, "4 proofs at once, for the EVM", group="4")]),
        ("8", lambda: tree(work, proofs[:8], "8")),
        ("recursion", lambda: [
            aggregate(work, proofs[:1], "rec1", True, "1 proof, for a next layer", group="recursion"),
            aggregate(work, [work / "rec1/proof.json"], "rec2", False, "that aggregation proof again, for the EVM",
                      group="recursion"),
            aggregate(work, [work / "rec1/proof.json"], "rec2-one", False,
                      "that aggregation proof again, for the EVM in 1 column", group="recursion",
                      extra=["--max-advice-columns", "1"]),
        ]),
    ]:
        if name in wanted:
            try:
                rows += measure()
            except Failed as e:
                print(e, flush=True)
                rows.append({"group": name, "aggregation": f"{name}: failed", "error": str(e)})

    out = ROOT / "benches/results"
    out.mkdir(parents=True, exist_ok=True)
    kept = []
    if (out / "aggregate.json").exists():
        kept = [r for r in json.loads((out / "aggregate.json").read_text())["rows"] if r.get("group") not in wanted]
    rows = kept + rows
    result = {"measured": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} cores", "rows": rows}
    (out / "aggregate.json").write_text(json.dumps(result, indent=2) + "\n")
    head = "| aggregation | k | advice columns | keygen | prove | peak memory | proof | verifier | gas |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['aggregation']}: {r['error']} | | | | | | | | |")
            continue
        keygen = f"{r['keygen_s']:.0f} s" if r["keygen_s"] is not None else "reused"
        lines.append(f"| {r['aggregation']} | {r['k']} | {r['advice_columns']} | {keygen} | {r['prove_s']:.0f} s | "
                     f"{r['peak_mib'] / 1024:.1f} GiB | {r['proof_bytes']:,} B | "
                     f"{format(r['verifier_bytes'], ',') + ' B' if 'verifier_bytes' in r else ''} | "
                     f"{format(r['gas'], ',') if 'gas' in r else ''} |")
    table = "\n".join(lines) + "\n"
    (out / "aggregate.md").write_text(table)
    print(table)
    if not keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
