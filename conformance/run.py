#!/usr/bin/env python3
"""Conformance of zkinfer against the PyTorch-exported models that the `onnx` package ships
(onnx/backend/test/data/pytorch-converted and pytorch-operator): every model goes through
gen-settings, calibrate (on the suite's input), compile, setup, prove and verify, and the
dequantized outputs are compared with the suite's expected outputs.

    python3 conformance/run.py [--filter TEXT] [--json FILE] [--zkinfer PATH]

It creates (once) a virtual environment with the pinned `onnx` and `numpy` under
~/.cache/zkinfer/conformance-venv and re-runs itself there. Prints a table (model, supported or
the refusing operator, verified, max abs error, pass/fail) and a final count line.

A model passes when its proof verifies and every output is within the tolerance of the suite's:
|zkinfer - expected| <= TOLERANCE * max(1, max |expected|). Models that are not inference
(a training loss) are listed as out of scope with the reason.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ONNX_VERSION = "1.17.0"
NUMPY_VERSION = "2.1.3"
TOLERANCE = 0.05
# Models whose input is larger than this many values are reported as too large for a 24 GiB
# machine instead of run (pooling a 1000x1000 image with 60x80 windows is millions of comparisons).
MAX_INPUT_VALUES = 100_000
ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("ZKINFER_CONFORMANCE_VENV", Path.home() / ".cache/zkinfer/conformance-venv"))
SUITES = ["pytorch-converted", "pytorch-operator"]
OUT_OF_SCOPE = {
    "test_PoissonNLLLLoss_no_reduce": "a training loss, not inference",
}


def ensure_venv():
    """Re-runs this script inside the virtual environment, creating it first if needed."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not python.exists() or subprocess.run([python, "-c", f"import onnx, numpy; assert onnx.__version__ == '{ONNX_VERSION}'"],
                                            capture_output=True).returncode != 0:
        print(f"creating {VENV} with onnx {ONNX_VERSION}", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", f"onnx=={ONNX_VERSION}", f"numpy=={NUMPY_VERSION}"], check=True)
    os.execv(str(python), [str(python), __file__, *sys.argv[1:]])


def zkinfer_binary(given):
    if given:
        return Path(given)
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/zkinfer/target"))
    subprocess.run(["cargo", "build", "--quiet"], cwd=ROOT, check=True, env={**os.environ, "CARGO_TARGET_DIR": str(target)})
    return target / "debug" / "zkinfer"


def load(pb):
    import onnx
    from onnx import numpy_helper
    tensor = onnx.TensorProto()
    tensor.ParseFromString(pb.read_bytes())
    return numpy_helper.to_array(tensor)


def error_line(stderr):
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    return lines[-1][len("error:"):].strip() if lines else (stderr.strip().splitlines() or ["failed"])[-1]


def run_model(zkinfer, model_dir, work):
    """One model through the pipeline; returns its row."""
    import numpy as np
    row = {"model": model_dir.name, "suite": model_dir.parent.name}
    if model_dir.name in OUT_OF_SCOPE:
        return {**row, "status": "out of scope", "reason": OUT_OF_SCOPE[model_dir.name]}
    data = model_dir / "test_data_set_0"
    inputs = [load(p) for p in sorted(data.glob("input_*.pb"), key=lambda p: int(p.stem.split("_")[1]))]
    expected = [load(p) for p in sorted(data.glob("output_*.pb"), key=lambda p: int(p.stem.split("_")[1]))]
    size = sum(int(np.asarray(x).size) for x in inputs)
    if size > MAX_INPUT_VALUES:
        return {**row, "status": "too large", "reason": f"input of {size} values (over {MAX_INPUT_VALUES}): not run"}
    (work / "input.json").write_text(json.dumps({"input_data": [np.asarray(x, dtype=np.float64).reshape(-1).tolist() for x in inputs]}))
    os.symlink(model_dir / "model.onnx", work / "network.onnx")
    start = time.time()
    # The suite's input is the calibration sample: scales and range fitted to it, as a user would.
    for stage in (["gen-settings"], ["calibrate"], ["compile"], ["setup"], ["prove"], ["verify"]):
        p = subprocess.run([str(zkinfer), *stage], cwd=work, capture_output=True, text=True)
        if p.returncode != 0:
            message = error_line(p.stderr)
            refused = re.search(r"uses operator (\S+), which zkinfer does not support", message)
            if refused:
                return {**row, "status": "refused", "op": refused[1], "reason": message}
            return {**row, "status": "error", "stage": stage[0], "reason": message, "verified": False}
    proof = json.loads((work / "proof.json").read_text())
    outputs = proof["outputs"]
    errors = []
    for got, want in zip(outputs, expected):
        want = np.asarray(want, dtype=np.float64).reshape(-1)
        got = np.asarray(got, dtype=np.float64)
        if got.shape != want.shape:
            return {**row, "status": "error", "reason": f"output of {got.size} values, expected {want.size}", "verified": True}
        bound = TOLERANCE * max(1.0, float(np.abs(want).max(initial=0.0)))
        errors.append((float(np.abs(got - want).max(initial=0.0)), bound))
    max_error = max((e for e, _ in errors), default=0.0)
    passed = len(outputs) == len(expected) and all(e <= b for e, b in errors)
    return {**row, "status": "pass" if passed else "fail", "verified": True, "max_abs_error": max_error,
            "k": json.loads((work / "model.compiled").read_text())["shape"]["k"], "seconds": round(time.time() - start, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--filter", default="", help="only models whose name contains this")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--zkinfer", help="the zkinfer binary (default: build it with cargo)")
    parser.add_argument("--from", dest="start", default="", help="start at this model name (sorted order)")
    args = parser.parse_args()
    ensure_venv()
    import onnx
    zkinfer = zkinfer_binary(args.zkinfer)
    base = Path(onnx.__file__).parent / "backend" / "test" / "data"
    models = sorted(d for suite in SUITES for d in (base / suite).iterdir() if d.is_dir() and args.filter in d.name)
    models = [d for d in models if d.name >= args.start]
    rows = []
    print(f"{'model':48} {'status':28} {'verified':8} {'max abs error':>13}  result", flush=True)
    for model_dir in models:
        with tempfile.TemporaryDirectory() as work:
            row = run_model(zkinfer, model_dir, Path(work))
        rows.append(row)
        status = {"refused": f"refused: {row.get('op')}", "error": f"error in {row.get('stage', '?')}"}.get(row["status"], "supported")
        if row["status"] in ("out of scope", "too large"):
            status = row["status"]
        verified = {True: "yes", False: "no"}.get(row.get("verified"), "-")
        error = f"{row['max_abs_error']:.4f}" if "max_abs_error" in row else "-"
        result = {"pass": "PASS", "fail": "FAIL", "out of scope": row.get("reason", ""), "too large": row.get("reason", "")}.get(row["status"], "FAIL: " + row.get("reason", ""))
        print(f"{row['model']:48} {status:28} {verified:8} {error:>13}  {result}", flush=True)
    in_scope = [r for r in rows if r["status"] != "out of scope"]
    passed = sum(r["status"] == "pass" for r in in_scope)
    refused = sum(r["status"] == "refused" for r in in_scope)
    too_large = sum(r["status"] == "too large" for r in in_scope)
    print(f"\n{passed} of {len(in_scope)} inference models pass (tolerance {TOLERANCE} x max(1, max |expected|)); "
          f"{refused} refused by an unsupported operator; {too_large} too large to run here; {len(rows) - len(in_scope)} out of scope; onnx {onnx.__version__}")
    if args.json:
        Path(args.json).write_text(json.dumps({"onnx": onnx.__version__, "tolerance": TOLERANCE, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
