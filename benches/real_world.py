#!/usr/bin/env python3
"""Real-world-shaped exports through `zkinfer run`: k, prove time, peak memory and the max error
of the proven outputs against onnxruntime (the ONNX reference), one row per model, and the time
`zkinfer calibrate` takes on the CNNs.

    pip install onnx onnxruntime numpy && python3 benches/real_world.py [--zkinfer PATH] [--filter A,B] [--no-calibration | --calibration-only]

Models: the op-family fixtures that stand for real exports (a scikit-learn random forest and a
gradient-boosted model compiled to hummingbird's GEMM strategy, an LSTM, a bidirectional GRU
beside a reverse RNN, a self-attention block with LayerNorm, a one-block GPT on token ids), and
two CNNs built here with random weights at a 32x32 RGB input: MobileNet-style (depthwise
separable convolutions, BatchNorm, ReLU6) and ResNet-style (basic blocks with BatchNorm and
identity or strided 1x1 shortcuts); plus a 3x64x64 CNN of about 45k parameters for calibration
(the face-age model of issue 17's report) and a 3x32x32 CNN of about 1.1M parameters. Writes benches/results/real_world.md.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def conv(nodes, inits, rng, x, out, cin, cout, k=3, stride=1, group=1, bn=True, act="Relu"):
    """A convolution (He-initialised), BatchNorm with random statistics, and an activation."""
    w = rng.normal(0, np.sqrt(2.0 / (cin // group * k * k)), size=(cout, cin // group, k, k)).astype(np.float32)
    inits.append(numpy_helper.from_array(w, f"{out}_w"))
    pad = k // 2
    nodes.append(helper.make_node("Conv", [x, f"{out}_w"], [f"{out}_c"], kernel_shape=[k, k], strides=[stride, stride],
                                  pads=[pad] * 4, group=group))
    y = f"{out}_c"
    if bn:
        for name, value in [("g", rng.uniform(0.5, 1.0, cout)), ("b", rng.uniform(-0.1, 0.1, cout)),
                            ("m", rng.uniform(-0.1, 0.1, cout)), ("v", rng.uniform(0.5, 1.5, cout))]:
            inits.append(numpy_helper.from_array(value.astype(np.float32), f"{out}_{name}"))
        nodes.append(helper.make_node("BatchNormalization", [y, f"{out}_g", f"{out}_b", f"{out}_m", f"{out}_v"], [f"{out}_bn"]))
        y = f"{out}_bn"
    if act == "Relu":
        nodes.append(helper.make_node("Relu", [y], [out]))
    elif act == "Relu6":
        inits += [numpy_helper.from_array(np.float32(0), f"{out}_lo"), numpy_helper.from_array(np.float32(6), f"{out}_hi")]
        nodes.append(helper.make_node("Clip", [y, f"{out}_lo", f"{out}_hi"], [out]))
    else:
        nodes.append(helper.make_node("Identity", [y], [out]))
    return out


def head(nodes, inits, rng, x, channels, classes):
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"]))
    inits += [numpy_helper.from_array(rng.normal(0, 0.3, size=(classes, channels)).astype(np.float32), "fc_w"),
              numpy_helper.from_array(np.zeros(classes, dtype=np.float32), "fc_b")]
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["output"], transB=1))


def save(path, name, nodes, inits, input_shape, classes):
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def mobilenet_style(path, seed=1):
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    x = conv(nodes, inits, rng, "input", "stem", 3, 8, stride=2, act="Relu6")
    for i, (cin, cout, stride) in enumerate([(8, 16, 1), (16, 16, 2), (16, 24, 2)]):
        x = conv(nodes, inits, rng, x, f"dw{i}", cin, cin, stride=stride, group=cin, act="Relu6")
        x = conv(nodes, inits, rng, x, f"pw{i}", cin, cout, k=1, act="Relu6")
    head(nodes, inits, rng, x, 24, 10)
    save(path, "mobilenet_style", nodes, inits, [1, 3, 32, 32], 10)


def resnet_style(path, seed=2):
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    x = conv(nodes, inits, rng, "input", "stem", 3, 8, stride=2)
    for i, (cin, cout, stride) in enumerate([(8, 8, 1), (8, 16, 2)]):
        h = conv(nodes, inits, rng, x, f"b{i}a", cin, cout, stride=stride)
        h = conv(nodes, inits, rng, h, f"b{i}b", cout, cout, act=None)
        short = x if (cin, stride) == (cout, 1) else conv(nodes, inits, rng, x, f"b{i}s", cin, cout, k=1, stride=stride, act=None)
        nodes.append(helper.make_node("Add", [h, short], [f"b{i}_sum"]))
        nodes.append(helper.make_node("Relu", [f"b{i}_sum"], [f"b{i}"]))
        x = f"b{i}"
    head(nodes, inits, rng, x, 16, 10)
    save(path, "resnet_style", nodes, inits, [1, 3, 32, 32], 10)


def face_age_like(path, seed=3):
    """3x64x64 in, four convolutions with pooling, about 45k parameters."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    x = "input"
    for i, (cin, cout) in enumerate([(3, 16), (16, 32), (32, 48), (48, 48)]):
        x = conv(nodes, inits, rng, x, f"c{i}", cin, cout, bn=False)
        nodes.append(helper.make_node("MaxPool", [x], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]))
        x = f"p{i}"
    head(nodes, inits, rng, x, 48, 1)
    save(path, "face_age_like", nodes, inits, [1, 3, 64, 64], 1)


def cnn_1m(path, seed=4):
    """3x32x32 in, five convolutions with BatchNorm and ReLU (3-32-64-128-256-320 channels, the last
    four strided or at 4x4), global pooling and a dense head: about 1M parameters."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    x = "input"
    for i, (cin, cout, stride) in enumerate([(3, 32, 1), (32, 64, 2), (64, 128, 2), (128, 256, 2), (256, 320, 1)]):
        x = conv(nodes, inits, rng, x, f"c{i}", cin, cout, stride=stride)
    head(nodes, inits, rng, x, 320, 10)
    save(path, "cnn_1m", nodes, inits, [1, 3, 32, 32], 10)


def params(path):
    return sum(int(np.prod(t.dims)) for t in onnx.load(path).graph.initializer)


def ort_outputs(path, data):
    session = ort.InferenceSession(str(path))
    feeds = {}
    for spec, values in zip(session.get_inputs(), data):
        dtype = np.int64 if "int64" in spec.type else np.float32
        shape = [d if isinstance(d, int) else -1 for d in spec.shape]
        feeds[spec.name] = np.asarray(values, dtype=dtype).reshape(shape)
    return np.concatenate([o.ravel() for o in session.run(None, feeds)])


def timed_run(cmd, cwd):
    """Runs `cmd` under /usr/bin/time: its output, wall seconds and peak memory (GiB)."""
    start = time.time()
    stats = Path(cwd) / "time.txt"
    out = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(stats), *cmd], cwd=cwd, capture_output=True, text=True)
    peak = int(stats.read_text().strip().splitlines()[-1]) / 1024 / 1024 if stats.exists() else float("nan")
    return out, time.time() - start, peak


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--zkinfer", default=str(ROOT / "target" / "debug" / "zkinfer"))
    parser.add_argument("--filter", default="", help="comma-separated parts of the model names to run (default: all)")
    parser.add_argument("--no-calibration", action="store_true", help="skip the calibration timings")
    parser.add_argument("--calibration-only", action="store_true", help="only the calibration timings")
    args = parser.parse_args()
    wanted = lambda name: not args.filter or any(f and f in name for f in args.filter.split(","))
    work = Path(tempfile.mkdtemp(prefix="zkinfer-real-world-"))
    mobilenet_style(work / "mobilenet_style.onnx")
    resnet_style(work / "resnet_style.onnx")
    face_age_like(work / "face_age_like.onnx")
    cnn_1m(work / "cnn_1m.onnx")
    rng = np.random.default_rng(9)
    for name, shape in [("mobilenet_style", 3 * 32 * 32), ("resnet_style", 3 * 32 * 32), ("face_age_like", 3 * 64 * 64), ("cnn_1m", 3 * 32 * 32)]:
        with open(work / f"{name}.input.json", "w") as f:
            json.dump({"input_data": [rng.uniform(0, 1, size=shape).round(4).tolist()]}, f)
    models = [
        ("random forest (scikit-learn, GEMM strategy)", FIXTURES / "tree_forest.onnx", []),
        ("gradient boosting (scikit-learn, GEMM strategy)", FIXTURES / "tree_boosting.onnx", []),
        ("LSTM (4 steps, hidden 4)", FIXTURES / "lstm_sequence.onnx", ["--lookup-range", "-8,8"]),
        ("bidirectional GRU + reverse RNN", FIXTURES / "gru_rnn_sequence.onnx", ["--lookup-range", "-8,8"]),
        ("self-attention block + LayerNorm", FIXTURES / "attention_block.onnx", ["--lookup-range", "-8,8"]),
        ("one-block GPT on token ids", FIXTURES / "tiny_gpt.onnx", ["--lookup-range", "-16,16"]),
        # An image of 3,072 public values would make a verifier over EIP-170's size: the input is
        # hashed, as an image's owner would have it.
        ("MobileNet-style CNN, 3x32x32", work / "mobilenet_style.onnx", ["--input-visibility", "hashed"]),
        ("ResNet-style CNN, 3x32x32", work / "resnet_style.onnx", ["--input-visibility", "hashed"]),
    ]
    rows = ["| model | params | k | advice cells | prove (s) | peak (GiB) | max error vs onnxruntime | verified (native, EVM) |",
            "|---|---|---|---|---|---|---|---|"]
    for label, model, options in models:
        if args.calibration_only or not wanted(label):
            continue
        data_path = model.with_suffix(".input.json") if model.parent == work else FIXTURES / f"{model.stem}.input.json"
        data = json.load(open(data_path))["input_data"]
        out_dir = work / f"out_{model.stem}"
        out, seconds, peak = timed_run([args.zkinfer, "run", "-M", str(model), "-D", str(data_path), "--dir", str(out_dir), *options], work)
        if out.returncode != 0:
            rows.append(f"| {label} | {params(model)} | failed: {out.stderr.strip().splitlines()[-1]} | | | | | |")
            continue
        report = json.load(open(out_dir / "report.json"))
        proven = np.concatenate([np.asarray(o, dtype=np.float64).ravel() for o in report["outputs"]])
        error = float(np.max(np.abs(proven - ort_outputs(model, data))))
        rows.append(f"| {label} | {params(model)} | {report['k']} | {report['advice_cells']} | {report['prove_seconds']:.1f} | "
                    f"{peak:.2f} | {error:.4f} | {report['verified']}, {report['evm_verified']} |")
        print(rows[-1], flush=True)
    calibration = ["", "| calibrate (resources target, 4 samples) | params | seconds | chosen scales | peak (GiB) |", "|---|---|---|---|---|"]
    for name in ["mobilenet_style", "resnet_style", "face_age_like", "cnn_1m"]:
        if args.no_calibration or not wanted(name):
            continue
        model = work / f"{name}.onnx"
        base = json.load(open(work / f"{name}.input.json"))["input_data"][0]
        samples = [v * (0.5 + ((s * 31 + j * 17) % 101) / 100) for s in range(4) for j, v in enumerate(base)]
        cal_dir = work / f"cal_{name}"
        cal_dir.mkdir(exist_ok=True)
        with open(cal_dir / "samples.json", "w") as f:
            json.dump({"input_data": [samples]}, f)
        out, seconds, peak = timed_run([args.zkinfer, "calibrate", "-M", str(model), "-D", "samples.json"], cal_dir)
        if out.returncode != 0:
            calibration.append(f"| {name} | {params(model)} | failed: {out.stderr.strip().splitlines()[-1]} | | |")
            continue
        settings = json.load(open(cal_dir / "settings.json"))
        calibration.append(f"| {name} | {params(model)} | {seconds:.1f} | {settings['input_scale']}/{settings['param_scale']}, "
                           f"{settings['activation_bits']} bits | {peak:.2f} |")
        print(calibration[-1], flush=True)
    text = "\n".join((calibration[1:] if args.calibration_only else rows + calibration)) + "\n"
    results = ROOT / "benches" / "results"
    results.mkdir(exist_ok=True)
    # A calibration-only run keeps the proving table of the last full run.
    name, flags = ("real_world_calibration.md", " --calibration-only") if args.calibration_only else ("real_world.md", "")
    (results / name).write_text(f"Measured {time.strftime('%Y-%m-%d')} with `python3 benches/real_world.py{flags}`:\n\n{text}")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
