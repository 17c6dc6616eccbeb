#!/usr/bin/env python3
"""How zkinfer's cost grows with the model: each stage (compile, setup, prove, verify, the EVM
verifier) of an MLP family of 0.1 M, 0.3 M, 1 M and 3 M parameters, a CNN of about 1 M and a
GAN generator of about 550k parameters (the shape of the 532k one issue 18 reports), each stage in its own process with its wall time, peak resident
memory and CPU use (user + system time over wall time: 2.0 is both cores busy), and the geometry
`compile` chose (k, the linear-layer gate, columns).

    pip install onnx onnxruntime numpy && python3 benches/scale.py [--zkinfer PATH] [--filter mlp_1m,gan] [--input-visibility hashed]

Writes benches/results/scale.md (and prints it). With --ezkl it runs EZKL (the pinned version and
environment of benches/compare_ezkl.py, created on first use) on the MLP family too, on the same
models and input, each step its own process: settings calibrated for resources on that input,
setup and prove timed. A step whose resident memory passes --max-gib is stopped and reported as
such (the machine has 24 GiB). The table, both tools' rows side by side, goes to
benches/results/scale_ezkl.md instead.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benches"))
if "--ezkl" in sys.argv[1:]:
    # This script reruns in EZKL's pinned environment (compare_ezkl.py's), which has onnx and numpy too.
    import compare_ezkl

    compare_ezkl.ensure_venv()

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from make_models import mlp, save, write_input  # noqa: E402
from real_world import cnn_1m  # noqa: E402

MLPS = [
    ("mlp_100k", [784, 128, 10]),
    ("mlp_300k", [784, 384, 10]),
    ("mlp_1m", [784, 1024, 256, 10]),
    ("mlp_3m", [784, 2048, 640, 10]),
]


def gan_550k(path, seed=5):
    """A DCGAN-style generator: 1x100 noise -> Gemm 100x4704 -> BatchNorm -> Elu -> [96, 7, 7] ->
    ConvTranspose 96->48 (4x4, stride 2) -> BatchNorm -> Elu -> ConvTranspose 48->1 (4x4, stride 2)
    -> Sigmoid: a 1x28x28 image, about 550k parameters."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def tensor(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def batchnorm(x, out, channels):
        names = [tensor(f"{out}_{n}", v) for n, v in [("g", rng.uniform(0.5, 1.0, channels)), ("b", rng.uniform(-0.1, 0.1, channels)),
                                                      ("m", rng.uniform(-0.1, 0.1, channels)), ("v", rng.uniform(0.5, 1.5, channels))]]
        nodes.append(helper.make_node("BatchNormalization", [x, *names], [out]))
        return out

    w = tensor("fc_w", rng.normal(0, 0.1, size=(100, 4704)))
    b = tensor("fc_b", np.zeros(4704))
    nodes.append(helper.make_node("Gemm", ["input", w, b], ["fc"]))
    inits.append(numpy_helper.from_array(np.array([1, 96, 7, 7], dtype=np.int64), "shape"))
    nodes.append(helper.make_node("Reshape", ["fc", "shape"], ["fc4"]))
    x = batchnorm("fc4", "bn0", 96)
    nodes.append(helper.make_node("Elu", [x], ["a0"]))
    for i, (cin, cout) in enumerate([(96, 48), (48, 1)]):
        wt = tensor(f"up{i}_w", rng.normal(0, np.sqrt(1.0 / (cin * 4)), size=(cin, cout, 4, 4)))
        nodes.append(helper.make_node("ConvTranspose", [f"a{i}", wt], [f"up{i}"], kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1]))
        if i == 0:
            x = batchnorm("up0", "bn1", cout)
            nodes.append(helper.make_node("Elu", [x], ["a1"]))
        else:
            nodes.append(helper.make_node("Sigmoid", ["up1"], ["output"]))
    graph = helper.make_graph(nodes, "gan_550k", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 100])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 28, 28])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def params(path):
    return sum(int(np.prod(t.dims)) for t in onnx.load(path).graph.initializer)


def columns(shape):
    """Advice and fixed columns of every kind, as `CircuitShape::advice_columns` and
    `fixed_columns` count them."""
    config, sets, gate = shape["config"], shape.get("lookup_sets", 0), shape.get("linear")
    base, lookup = sum(config["num_advice_per_phase"]), sum(config["num_lookup_advice_per_phase"])
    advice = base + lookup + 2 * sets + (gate["inputs"] + gate["outputs"] if gate else 0)
    fixed = config["num_fixed"] + base + (2 if lookup else 0) + (3 + sets if sets else 0) + \
        (1 + gate["inputs"] * gate["outputs"] if gate else 0) + 1
    return advice, fixed


def stage(cmd, cwd, env=None, max_gib=None):
    """Runs one stage in its own process: (completed process, wall s, peak GiB, CPU use). With
    `max_gib`, the process is killed once its resident memory passes it (exit code -9)."""
    start = time.time()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
        while True:
            pid, status, usage = os.wait4(proc.pid, 0 if max_gib is None else os.WNOHANG)
            if pid:
                break
            if resident_gib(proc.pid) > max_gib:
                proc.kill()
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.time() - start
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())
    return done, wall, usage.ru_maxrss / 1024 / 1024, (usage.ru_utime + usage.ru_stime) / max(wall, 1e-9)


def resident_gib(pid):
    """The resident memory of a running process, from /proc (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            kib = next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
    except OSError:
        return 0.0
    return kib / 1024 / 1024


def ezkl_stages(work, max_gib):
    """EZKL's steps for one model (compare_ezkl.py's, in its environment), each step stopped past
    `max_gib`: settings calibrated on the input, then setup and prove; the table's cells after the
    name. Raises `Stopped` with the step that failed or was stopped."""

    class Watched(compare_ezkl.Ezkl):
        def call(self, fn, *args, run_args=None, **kwargs):
            done, wall, gib, cpu = stage(self.command(fn, *args, run_args=run_args, **kwargs), self.work, self.env, max_gib)
            if done.returncode == -9:
                raise Stopped(f"{fn} stopped at {max_gib:g} GiB after {wall:.0f} s")
            if done.returncode != 0:
                raise Stopped(f"{fn} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
            self.cpu = cpu
            return wall, gib * 1024, None

    ezkl = Watched(work)
    (work / "samples.json").write_text(json.dumps({"input_data": json.load(open(work / "input.json"))["input_data"]}))
    cells = [str(ezkl.settings("network.onnx", "samples.json", "public"))]
    for seconds, mib in [ezkl.setup("input.json"), ezkl.prove()]:
        cells.append(f"{seconds:.1f}, {mib / 1024:.2f}, {ezkl.cpu:.1f}")
    cells.append(f"{(work / 'pk.key').stat().st_size / 1e6:.0f}")
    return cells


class Stopped(Exception):
    """An EZKL step that failed or was stopped for memory."""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--zkinfer", default=str(ROOT / "target" / "debug" / "zkinfer"))
    parser.add_argument("--filter", default="", help="comma-separated parts of the model names to run (default: all)")
    parser.add_argument("--input-visibility", default="public")
    parser.add_argument("--ezkl", action="store_true", help="run EZKL on the MLP family too (see above)")
    parser.add_argument("--max-gib", type=float, default=20.0, help="with --ezkl: stop an EZKL step past this resident memory")
    args = parser.parse_args()
    wanted = lambda name: not args.filter or any(f and f in name for f in args.filter.split(","))
    work = Path(tempfile.mkdtemp(prefix="zkinfer-scale-"))
    yy, xx = np.mgrid[0:28, 0:28]
    image = np.exp(-(((yy - 14) / 6.0) ** 2 + ((xx - 13) / 3.0) ** 2))
    models = []
    for name, sizes in MLPS:
        save(mlp(name, sizes, [1, 1, 28, 28], seed=31, flatten=True), work / name)
        write_input(work / name, image)
        models.append(name)
    (work / "cnn_1m").mkdir()
    cnn_1m(work / "cnn_1m" / "network.onnx")
    write_input(work / "cnn_1m", np.random.default_rng(9).uniform(0, 1, size=3 * 32 * 32))
    models.append("cnn_1m")
    (work / "gan_550k").mkdir()
    gan_550k(work / "gan_550k" / "network.onnx")
    write_input(work / "gan_550k", np.random.default_rng(10).normal(0, 1, size=100))
    models.append("gan_550k")

    rows = ["| model | params | k | linear gate | advice / fixed columns | compile s, GiB | setup s, GiB, CPU | "
            "prove s, GiB, CPU | pk MB | verifier B | gas |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in models:
        if not wanted(name):
            continue
        d = work / name
        z = args.zkinfer
        gen, *_ = stage([z, "gen-settings", "-M", "network.onnx", "-O", "settings.json", "--input-visibility", args.input_visibility,
                         "--lookup-range", "-8,8"], d)
        cells = [name, f"{params(d / 'network.onnx'):,}"]
        if gen.returncode != 0:
            rows.append(f"| {' | '.join(cells)} | gen-settings failed: {gen.stderr.strip().splitlines()[-1]} |")
            continue
        compiled, c_s, c_gib, _ = stage([z, "compile", "-M", "network.onnx", "-S", "settings.json", "--compiled", "model.compiled"], d)
        if compiled.returncode != 0:
            rows.append(f"| {' | '.join(cells)} | compile failed: {compiled.stderr.strip().splitlines()[-1]} |")
            print(rows[-1], flush=True)
            continue
        shape = json.load(open(d / "model.compiled"))["shape"]
        gate = shape.get("linear")
        gate = f"{gate['inputs']}x{gate['outputs']}" if gate else "none"
        setup, s_s, s_gib, s_cpu = stage([z, "setup", "--compiled", "model.compiled"], d)
        results = [str(shape["k"]), gate, "", f"{c_s:.1f}, {c_gib:.2f}"]
        if setup.returncode != 0:
            rows.append(f"| {' | '.join(cells + results)} | setup failed ({s_gib:.2f} GiB): {setup.stderr.strip().splitlines()[-1]} |")
            print(rows[-1], flush=True)
            continue
        proved, p_s, p_gib, p_cpu = stage([z, "prove", "--compiled", "model.compiled", "-D", "input.json"], d)
        if proved.returncode != 0:
            rows.append(f"| {' | '.join(cells + results)} | {s_s:.1f}, {s_gib:.2f}, {s_cpu:.1f} | prove failed ({p_gib:.2f} GiB): "
                        f"{proved.stderr.strip().splitlines()[-1]} |")
            print(rows[-1], flush=True)
            continue
        stage([z, "verify"], d)
        verifier, *_ = stage([z, "create-evm-verifier"], d)
        size, gas = "over EIP-170 (aggregate)", ""
        if verifier.returncode == 0:
            size = str(len(json.load(open(d / "Verifier.json"))["runtime"]) // 2 - 1)
            evm, *_ = stage([z, "verify-evm"], d)
            gas = next((w for line in evm.stdout.splitlines() if "gas" in line for w in line.replace(",", " ").split() if w.isdigit()), "")
        results[2] = "{} / {}".format(*columns(shape))
        pk_mb = (d / "pk.bin").stat().st_size / 1e6
        rows.append(f"| {' | '.join(cells + results)} | {s_s:.1f}, {s_gib:.2f}, {s_cpu:.1f} | {p_s:.1f}, {p_gib:.2f}, {p_cpu:.1f} | "
                    f"{pk_mb:.0f} | {size} | {gas} |")
        print(rows[-1], flush=True)
        if args.ezkl and name in dict(MLPS):
            ezkl_dir = d / "ezkl"
            ezkl_dir.mkdir()
            for f in ["network.onnx", "input.json"]:
                (ezkl_dir / f).write_bytes((d / f).read_bytes())
            try:
                e = ezkl_stages(ezkl_dir, args.max_gib)
                rows.append(f"| {name} (EZKL) | {cells[1]} | {e[0]} | | | | {e[1]} | {e[2]} | {e[3]} | | |")
            except Stopped as stopped:
                rows.append(f"| {name} (EZKL) | {cells[1]} | {stopped} |")
            print(rows[-1], flush=True)
    text = "\n".join(rows) + "\n"
    results = ROOT / "benches" / "results"
    results.mkdir(exist_ok=True)
    flags = "" if args.input_visibility == "public" else f" --input-visibility {args.input_visibility}"
    name = "scale.md" if not flags else f"scale_{args.input_visibility}.md"
    if args.ezkl:
        flags += " --ezkl"
        name = name.replace(".md", "_ezkl.md")
    (results / name).write_text(f"Measured {time.strftime('%Y-%m-%d')} with `python3 benches/scale.py{flags}` "
                                f"(input {args.input_visibility}, params fixed, output public; lookup range -8,8):\n\n{text}")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
