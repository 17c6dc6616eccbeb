"""Builds the example and test ONNX models with seeded weights, as PyTorch would export them.

    python3 -m venv .venv && .venv/bin/pip install onnx numpy && .venv/bin/python examples/make_models.py

The generated files are committed, so neither zkinfer nor its tests need Python.
"""
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures")


def linear(rng, fan_in, fan_out):
    # PyTorch's nn.Linear initialisation: uniform in ±1/sqrt(fan_in), weight stored [out, in].
    bound = 1.0 / np.sqrt(fan_in)
    w = rng.uniform(-bound, bound, size=(fan_out, fan_in)).astype(np.float32)
    b = rng.uniform(-bound, bound, size=(fan_out,)).astype(np.float32)
    return w, b


def save(model, folder, name="network.onnx"):
    os.makedirs(folder, exist_ok=True)
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(folder, name))


def save_fixture(model, name, input_seed, size):
    """tests/fixtures/<name>.onnx and <name>.input.json with `size` seeded values in [-1, 1)."""
    save(model, FIXTURES, f"{name}.onnx")
    with open(os.path.join(FIXTURES, f"{name}.input.json"), "w") as f:
        json.dump({"input_data": [np.random.default_rng(input_seed).uniform(-1, 1, size=size).round(6).tolist()]}, f)


def write_input(folder, data):
    with open(os.path.join(folder, "input.json"), "w") as f:
        json.dump({"input_data": [np.asarray(data, dtype=np.float32).reshape(-1).round(6).tolist()]}, f)


def mlp(name, sizes, input_shape, seed, flatten=False, activation="Relu"):
    """Gemm (transB=1) layers with an activation between them, like torch.nn.Sequential."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    current = "input"
    if flatten:
        nodes.append(helper.make_node("Flatten", [current], ["flat"], name="/Flatten", axis=1))
        current = "flat"
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        w, b = linear(rng, fan_in, fan_out)
        inits += [numpy_helper.from_array(w, f"fc{i}.weight"), numpy_helper.from_array(b, f"fc{i}.bias")]
        out = "output" if i == len(sizes) - 2 else f"/fc{i}/Gemm_output_0"
        nodes.append(helper.make_node("Gemm", [current, f"fc{i}.weight", f"fc{i}.bias"], [out], name=f"/fc{i}/Gemm", alpha=1.0, beta=1.0, transB=1))
        current = out
        if i < len(sizes) - 2:
            act = f"/act{i}/{activation}_output_0"
            nodes.append(helper.make_node(activation, [current], [act], name=f"/act{i}/{activation}"))
            current = act
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch_size"] + list(input_shape[1:]))],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch_size", sizes[-1]])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="zkinfer-examples", ir_version=8)


def cnn(name, input_shape, layers, seed):
    """A convolutional network as PyTorch exports it: `layers` are ("conv", out, kernel, attrs),
    ("bn",), ("relu",), ("avgpool"|"maxpool", kernel, attrs), ("globalavgpool",),
    ("globalmaxpool",), ("flatten",) and ("gemm", out)."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    current, shape = "input", list(input_shape)
    spatial = lambda s: s[2:]
    for i, layer in enumerate(layers):
        kind, out = layer[0], f"/l{i}/{layer[0]}_output_0"
        if i == len(layers) - 1:
            out = "output"
        if kind == "conv":
            channels, kernel, attrs = layer[1], layer[2], dict(layer[3]) if len(layer) > 3 else {}
            group = attrs.get("group", 1)
            kernel = [kernel] * len(spatial(shape)) if isinstance(kernel, int) else kernel
            # PyTorch writes every attribute out; some importers (EZKL) require them.
            d = len(kernel)
            attrs.setdefault("strides", [1] * d)
            attrs.setdefault("dilations", [1] * d)
            attrs.setdefault("group", 1)
            if "auto_pad" not in attrs:
                attrs.setdefault("pads", [0] * 2 * d)
            fan_in = shape[1] // group * int(np.prod(kernel))
            bound = 1.0 / np.sqrt(fan_in)
            w = rng.uniform(-bound, bound, size=[channels, shape[1] // group] + kernel).astype(np.float32)
            b = rng.uniform(-bound, bound, size=(channels,)).astype(np.float32)
            inits += [numpy_helper.from_array(w, f"conv{i}.weight"), numpy_helper.from_array(b, f"conv{i}.bias")]
            nodes.append(helper.make_node("Conv", [current, f"conv{i}.weight", f"conv{i}.bias"], [out], name=f"/conv{i}/Conv", kernel_shape=kernel, **attrs))
            shape = [shape[0], channels] + conv_output(spatial(shape), kernel, attrs)
        elif kind == "bn":
            c = shape[1]
            params = [rng.uniform(0.5, 1.5, c), rng.uniform(-0.2, 0.2, c), rng.uniform(-0.2, 0.2, c), rng.uniform(0.5, 1.5, c)]
            names = [f"bn{i}.{n}" for n in ("weight", "bias", "running_mean", "running_var")]
            inits += [numpy_helper.from_array(p.astype(np.float32), n) for p, n in zip(params, names)]
            nodes.append(helper.make_node("BatchNormalization", [current] + names, [out], name=f"/bn{i}/BatchNormalization", epsilon=1e-5))
        elif kind == "relu":
            nodes.append(helper.make_node("Relu", [current], [out], name=f"/relu{i}/Relu"))
        elif kind in ("avgpool", "maxpool"):
            kernel, attrs = layer[1], dict(layer[2]) if len(layer) > 2 else {}
            kernel = [kernel] * len(spatial(shape)) if isinstance(kernel, int) else kernel
            attrs.setdefault("strides", kernel)
            if "auto_pad" not in attrs:
                attrs.setdefault("pads", [0] * 2 * len(kernel))
            op = "AveragePool" if kind == "avgpool" else "MaxPool"
            nodes.append(helper.make_node(op, [current], [out], name=f"/pool{i}/{op}", kernel_shape=kernel, **attrs))
            shape = shape[:2] + conv_output(spatial(shape), kernel, attrs)
        elif kind in ("globalavgpool", "globalmaxpool"):
            op = "GlobalAveragePool" if kind == "globalavgpool" else "GlobalMaxPool"
            nodes.append(helper.make_node(op, [current], [out], name=f"/pool{i}/{op}"))
            shape = shape[:2] + [1] * len(spatial(shape))
        elif kind == "flatten":
            nodes.append(helper.make_node("Flatten", [current], [out], name=f"/flatten{i}/Flatten", axis=1))
            shape = [shape[0], int(np.prod(shape[1:]))]
        elif kind == "gemm":
            w, b = linear(rng, shape[1], layer[1])
            inits += [numpy_helper.from_array(w, f"fc{i}.weight"), numpy_helper.from_array(b, f"fc{i}.bias")]
            nodes.append(helper.make_node("Gemm", [current, f"fc{i}.weight", f"fc{i}.bias"], [out], name=f"/fc{i}/Gemm", alpha=1.0, beta=1.0, transB=1))
            shape = [shape[0], layer[1]]
        else:
            raise ValueError(kind)
        current = out
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch_size"] + list(input_shape[1:]))],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch_size"] + shape[1:])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="zkinfer-examples", ir_version=8)


def conv_output(spatial, kernel, attrs):
    d = len(spatial)
    strides = attrs.get("strides", [1] * d)
    pads = attrs.get("pads", [0] * 2 * d)
    dilations = attrs.get("dilations", [1] * d)
    return [(spatial[a] + pads[a] + pads[a + d] - dilations[a] * (kernel[a] - 1) - 1) // strides[a] + 1 for a in range(d)]


def ops_mix(seed):
    """Element-wise arithmetic, comparisons, reductions and data movement, with the shape
    arithmetic PyTorch exports around a flatten (Shape, Gather, Unsqueeze, Concat)."""
    rng = np.random.default_rng(seed)
    c = lambda name, value: numpy_helper.from_array(np.asarray(value, dtype=np.float32 if np.asarray(value).dtype.kind == "f" else np.int64), name)
    inits = [
        c("offset", rng.uniform(-0.3, 0.3, 4).astype(np.float32)), c("half", np.float32(0.5)), c("two", np.float32(2.0)),
        c("lo", np.float32(-0.2)), c("hi", np.float32(0.3)), c("quarter", np.float32(0.25)),
        c("slope", rng.uniform(-0.5, 0.5, 11).astype(np.float32)), c("bias", rng.uniform(-0.2, 0.2, 11).astype(np.float32)),
        c("starts", [1]), c("ends", [4]), c("axes3", [3]), c("pads", [0, 0, 1, 0, 0, 0, 0, 1]), c("axes1", [1]),
        c("gather_idx", [0, 2, 4]), c("zero", 0), c("axes0", [0]), c("minus_one", [-1]), c("split", [11, 11]),
    ]
    n = lambda op, inputs, outputs, **kw: helper.make_node(op, inputs, outputs, name=f"/{outputs[0]}/{op}", **kw)
    nodes = [
        n("Transpose", ["input"], ["t"], perm=[0, 1, 3, 2]),
        n("Slice", ["t", "starts", "ends", "axes3"], ["s"]),
        n("Pad", ["s", "pads"], ["p"], mode="constant"),
        n("Sub", ["p", "offset"], ["sub"]),
        n("Mul", ["sub", "half"], ["mul"]),
        n("Div", ["mul", "two"], ["d"]),
        n("Mul", ["d", "d"], ["sq"]),
        n("Clip", ["sq", "lo", "hi"], ["cl"]),
        n("Sub", ["d", "cl"], ["diff"]),
        n("LeakyRelu", ["diff"], ["lr"], alpha=0.1),
        n("Max", ["lr", "d"], ["mx"]),
        n("Min", ["mx", "quarter"], ["mn"]),
        n("ReduceMean", ["mn"], ["r"], axes=[3], keepdims=0),
        n("ReduceSum", ["mn", "axes1"], ["rs"], keepdims=1),
        n("Gather", ["rs", "gather_idx"], ["g"], axis=2),
        n("Squeeze", ["g", "axes1"], ["sqz"]),
        n("Unsqueeze", ["r", "axes1"], ["u"]),
        n("Shape", ["sqz"], ["shape"]),
        n("Gather", ["shape", "zero"], ["batch"], axis=0),
        n("Unsqueeze", ["batch", "axes0"], ["batch1"]),
        n("Concat", ["batch1", "minus_one"], ["target"], axis=0),
        n("Reshape", ["sqz", "target"], ["f1"]),
        n("Flatten", ["u"], ["f2"], axis=1),
        n("Concat", ["f1", "f2"], ["cat"], axis=1),
        n("Split", ["cat", "split"], ["sp1", "sp2"], axis=1),
        n("Tanh", ["sp1"], ["th"]),
        n("PRelu", ["sp2", "slope"], ["pr"]),
        n("Sum", ["th", "pr", "bias"], ["output"]),
    ]
    return graph_model("ops_mix", nodes, inits, [1, 2, 4, 4], [1, 11])


def node(op, inputs, outputs, **attrs):
    """A node named as PyTorch names them: /<output>/<op>."""
    return helper.make_node(op, inputs, outputs, name=f"/{outputs[0]}/{op}", **attrs)


def graph_model(name, nodes, inits, input_shape, output_shape):
    """A model from a tensor named input to a tensor named output."""
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, output_shape)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="zkinfer-examples", ir_version=8)


def neg_abs_tile(seed):
    """Neg, Abs and Tile between two linear layers."""
    rng = np.random.default_rng(seed)
    w1, b1 = linear(rng, 6, 4)
    w2, b2 = linear(rng, 8, 3)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
             numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(b2, "b2"),
             numpy_helper.from_array(np.asarray([1, 2], dtype=np.int64), "repeats")]
    n = node
    nodes = [
        n("Gemm", ["input", "w1", "b1"], ["h"], transB=1),
        n("Neg", ["h"], ["neg"]),
        n("Abs", ["neg"], ["abs"]),
        n("Tile", ["abs", "repeats"], ["tiled"]),
        n("Gemm", ["tiled", "w2", "b2"], ["output"], transB=1),
    ]
    return graph_model("neg_abs_tile", nodes, inits, [1, 6], [1, 3])


def lookup_ops(seed):
    """The functions proven by table lookup, side by side between two linear layers."""
    rng = np.random.default_rng(seed)
    w1, b1 = linear(rng, 6, 6)
    w2, b2 = linear(rng, 60, 4)
    inits = [numpy_helper.from_array(w1 * 3, "w1"), numpy_helper.from_array(b1, "b1"),
             numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(b2, "b2"),
             numpy_helper.from_array(np.float32(3.0), "three"), numpy_helper.from_array(np.float32(0.5), "half"),
             numpy_helper.from_array(np.float32(0.7071068), "inv_sqrt2"), numpy_helper.from_array(np.float32(1.0), "one")]
    n = node
    nodes = [
        n("Gemm", ["input", "w1", "b1"], ["h"], transB=1),
        n("Exp", ["h"], ["exp"]),
        n("Softplus", ["h"], ["softplus"]),
        n("Softsign", ["h"], ["softsign"]),
        n("Elu", ["h"], ["elu"], alpha=0.8),
        n("Selu", ["h"], ["selu"]),
        n("Pow", ["h", "three"], ["cube"]),
        n("Abs", ["h"], ["abs"]),
        n("Sqrt", ["abs"], ["sqrt"]),
        n("Add", ["sqrt", "half"], ["shifted"]),
        n("Log", ["shifted"], ["log"]),
        # GELU as PyTorch exports it before opset 20: x · (1 + erf(x / √2)) / 2.
        n("Mul", ["h", "inv_sqrt2"], ["scaled"]),
        n("Erf", ["scaled"], ["erf"]),
        n("Add", ["erf", "one"], ["erf1"]),
        n("Mul", ["h", "erf1"], ["gelu2"]),
        n("Mul", ["gelu2", "half"], ["gelu"]),
        n("Concat", ["exp", "softplus", "softsign", "elu", "selu", "cube", "sqrt", "log", "erf", "gelu"], ["cat"], axis=1),
        n("Gemm", ["cat", "w2", "b2"], ["output"], transB=1),
    ]
    return graph_model("lookup_ops", nodes, inits, [1, 6], [1, 4])


def softmax_ops(seed):
    """Softmax (last axis), LogSoftmax (a middle axis), ReduceMax, ReduceMin, a Div of two
    computed tensors, and attention-like products of computed matrices (MatMul, Gemm)."""
    rng = np.random.default_rng(seed)
    w1, b1 = linear(rng, 8, 8)
    w2, b2 = linear(rng, 32, 3)
    shape = lambda name, dims: numpy_helper.from_array(np.asarray(dims, dtype=np.int64), name)
    inits = [numpy_helper.from_array(w1 * 3, "w1"), numpy_helper.from_array(b1, "b1"),
             numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(b2, "b2"),
             shape("shape3", [1, 2, 4]), shape("shape2", [2, 4]), shape("row", [1, 4]),
             numpy_helper.from_array(np.float32(1.0), "one")]
    n = node
    nodes = [
        n("Gemm", ["input", "w1", "b1"], ["h"], transB=1),
        n("Reshape", ["h", "shape3"], ["r"]),
        n("Softmax", ["r"], ["softmax"], axis=-1),
        n("LogSoftmax", ["r"], ["logsoftmax"], axis=1),
        n("ReduceMax", ["r"], ["max"], axes=[2], keepdims=1),
        n("ReduceMin", ["r"], ["min"], axes=[2], keepdims=1),
        n("Sub", ["max", "min"], ["spread"]),
        n("Add", ["spread", "one"], ["denominator"]),
        n("Div", ["r", "denominator"], ["ratio"]),
        n("Concat", ["softmax", "logsoftmax", "ratio"], ["cat1"], axis=2),
        n("Flatten", ["cat1"], ["flat1"], axis=1),
        n("Reshape", ["h", "shape2"], ["a"]),
        n("Transpose", ["a"], ["at"], perm=[1, 0]),
        n("MatMul", ["a", "at"], ["scores"]),
        n("Softmax", ["scores"], ["attention"], axis=-1),
        n("Reshape", ["attention", "row"], ["flat2"]),
        n("Gemm", ["a", "a"], ["gram"], transB=1, alpha=0.5),
        n("Reshape", ["gram", "row"], ["flat3"]),
        n("Concat", ["flat1", "flat2", "flat3"], ["cat"], axis=1),
        n("Gemm", ["cat", "w2", "b2"], ["output"], transB=1),
    ]
    return graph_model("softmax_ops", nodes, inits, [1, 8], [1, 3])


def decoder_ops(seed):
    """A decoder's operators: transposed convolutions (strides, pads, output padding, groups,
    dilations) and instance normalization."""
    rng = np.random.default_rng(seed)
    w1 = rng.uniform(-0.5, 0.5, size=(2, 3, 3, 3)).astype(np.float32)
    b1 = rng.uniform(-0.2, 0.2, size=3).astype(np.float32)
    w2 = rng.uniform(-0.5, 0.5, size=(3, 1, 2, 2)).astype(np.float32)
    w3, b3 = linear(rng, 3 * 10 * 10, 4)
    shape = numpy_helper.from_array(np.asarray([1, 300], dtype=np.int64), "flat_shape")
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"), numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array(w3, "w3"), numpy_helper.from_array(b3, "b3"), shape]
    n = node
    nodes = [
        # 3×3 -> (3-1)·2 + 1 + 2 + 1 - 2 = 6×6 with 3 channels.
        n("ConvTranspose", ["input", "w1", "b1"], ["up"], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1],
          kernel_shape=[3, 3]),
        n("InstanceNormalization", ["up", "gamma", "beta"], ["norm"], epsilon=1e-3),
        n("Relu", ["norm"], ["relu"]),
        # Depthwise, dilated: 6×6 -> (6-1)·1 + (2-1)·2 + 1 = 8×8, then padded to 10×10.
        n("ConvTranspose", ["relu", "w2"], ["depthwise"], group=3, dilations=[2, 2], strides=[1, 1],
          pads=[0, 0, 0, 0], output_padding=[0, 0], kernel_shape=[2, 2]),
        n("Pad", ["depthwise", "pads"], ["padded"], mode="constant"),
        n("Reshape", ["padded", "flat_shape"], ["flat"]),
        n("Gemm", ["flat", "w3", "b3"], ["output"], transB=1),
    ]
    inits.append(numpy_helper.from_array(np.asarray([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64), "pads"))
    inits.append(numpy_helper.from_array(np.asarray([0.5, 1.0, 1.5], dtype=np.float32), "gamma"))
    inits.append(numpy_helper.from_array(np.asarray([0.1, 0.0, -0.1], dtype=np.float32), "beta"))
    return graph_model("decoder_ops", nodes, inits, [1, 2, 3, 3], [1, 4])


def matmul_add(seed):
    """x @ W + b then Relu then a Reshape: the other way exporters write a linear layer."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(-0.5, 0.5, size=(8, 6)).astype(np.float32)
    b = rng.uniform(-0.5, 0.5, size=(6,)).astype(np.float32)
    shape = np.array([1, 2, 3], dtype=np.int64)
    nodes = [
        helper.make_node("MatMul", ["input", "W"], ["mm"], name="/MatMul"),
        helper.make_node("Add", ["mm", "b"], ["add"], name="/Add"),
        helper.make_node("Relu", ["add"], ["relu"], name="/Relu"),
        helper.make_node("Identity", ["relu"], ["ident"], name="/Identity"),
        helper.make_node("Constant", [], ["shape"], name="/Constant", value=numpy_helper.from_array(shape)),
        helper.make_node("Reshape", ["ident", "shape"], ["output"], name="/Reshape"),
    ]
    graph = helper.make_graph(
        nodes, "matmul_add",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 2, 3])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def credit_score(seed):
    """A small credit-scoring network trained (numpy, full-batch gradient descent) on synthetic
    applicants: 8 standardised features -> 16 -> Relu -> 8 -> Relu -> 1 -> Sigmoid, the
    probability that the applicant repays."""
    rng = np.random.default_rng(seed)
    features = ["income", "debt_to_income", "credit_history_years", "late_payments_12m",
                "open_accounts", "credit_utilisation", "employment_years", "requested_amount"]
    n = 4000
    x = rng.standard_normal((n, len(features))).astype(np.float32)
    # The synthetic ground truth: income, history and employment help; debt, late payments,
    # utilisation and a large request hurt.
    rule = np.array([1.2, -1.5, 0.8, -1.8, 0.2, -1.0, 0.6, -0.7], dtype=np.float32)
    logits = x @ rule + 0.4 * np.tanh(x[:, 0] * x[:, 5]) + 0.3 * rng.standard_normal(n)
    y = (logits > 0).astype(np.float32)[:, None]
    sizes = [8, 16, 8, 1]
    layers = [linear(rng, a, b) for a, b in zip(sizes, sizes[1:])]
    lr = 0.5
    for _ in range(600):
        acts, h = [x], x
        for i, (w, b) in enumerate(layers):
            h = h @ w.T + b
            if i < len(layers) - 1:
                h = np.maximum(h, 0)
            acts.append(h)
        p = 1 / (1 + np.exp(-h))
        grad = (p - y) / n
        for i in reversed(range(len(layers))):
            w, b = layers[i]
            gw, gb = grad.T @ acts[i], grad.sum(0)
            grad = (grad @ w) * (acts[i] > 0) if i > 0 else None
            layers[i] = ((w - lr * gw).astype(np.float32), (b - lr * gb).astype(np.float32))
    accuracy = float(((p > 0.5) == (y > 0.5)).mean())

    nodes, inits, current = [], [], "applicant"
    for i, (w, b) in enumerate(layers):
        inits += [numpy_helper.from_array(w, f"fc{i}.weight"), numpy_helper.from_array(b, f"fc{i}.bias")]
        out = f"/fc{i}/Gemm_output_0"
        nodes.append(helper.make_node("Gemm", [current, f"fc{i}.weight", f"fc{i}.bias"], [out], name=f"/fc{i}/Gemm", transB=1))
        current = out
        if i < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [current], [f"/act{i}/Relu_output_0"], name=f"/act{i}/Relu"))
            current = f"/act{i}/Relu_output_0"
    nodes.append(helper.make_node("Sigmoid", [current], ["repay_probability"], name="/Sigmoid"))
    graph = helper.make_graph(
        nodes, "credit_score",
        [helper.make_tensor_value_info("applicant", TensorProto.FLOAT, ["batch_size", len(features)])],
        [helper.make_tensor_value_info("repay_probability", TensorProto.FLOAT, ["batch_size", 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="zkinfer-examples", ir_version=8)
    # A borderline applicant (the candidate whose probability is nearest 0.8), so that the score
    # shows the sigmoid's resolution rather than saturating at 0 or 1.
    candidates = rng.standard_normal((256, len(features))).astype(np.float32).round(2)
    h = candidates
    for i, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
    scores = 1 / (1 + np.exp(-h[:, 0]))
    applicant = candidates[int(np.argmin(np.abs(scores - 0.8)))]
    return model, applicant, accuracy


def main():
    rng = np.random.default_rng(7)
    small = os.path.join(HERE, "mlp_small")
    save(mlp("mlp_small", [16, 32, 8], [1, 16], seed=1), small)
    write_input(small, rng.uniform(-1, 1, size=16))

    mnist = os.path.join(HERE, "mlp_mnist")
    save(mlp("mlp_mnist", [784, 128, 10], [1, 1, 28, 28], seed=2, flatten=True), mnist)
    # A centred blob, like a handwritten stroke, scaled to [0, 1].
    yy, xx = np.mgrid[0:28, 0:28]
    image = np.exp(-(((yy - 14) / 6.0) ** 2 + ((xx - 13) / 3.0) ** 2))
    write_input(mnist, image)

    save(matmul_add(seed=3), FIXTURES, "matmul_add.onnx")
    with open(os.path.join(FIXTURES, "matmul_add.input.json"), "w") as f:
        json.dump({"input_data": [rng.uniform(-1, 1, size=8).round(6).tolist()]}, f)
    sigmoid = mlp("sigmoid_mlp", [8, 8, 2], [1, 8], seed=4, activation="Sigmoid")
    sigmoid_input = np.random.default_rng(12).uniform(-1, 1, size=8).round(6)
    save(sigmoid, FIXTURES, "sigmoid_mlp.onnx")
    with open(os.path.join(FIXTURES, "sigmoid_mlp.input.json"), "w") as f:
        json.dump({"input_data": [sigmoid_input.tolist()]}, f)
    sigmoid_example = os.path.join(HERE, "sigmoid_mlp")
    os.makedirs(sigmoid_example, exist_ok=True)
    save(sigmoid, sigmoid_example)
    write_input(sigmoid_example, sigmoid_input)
    save_fixture(mlp("tanh_mlp", [8, 8, 2], [1, 8], seed=6, activation="Tanh"), "tanh_mlp", 16, 8)
    save(mlp("hardmax_mlp", [8, 8, 2], [1, 8], seed=6, activation="Hardmax"), FIXTURES, "hardmax_mlp.onnx")
    save_fixture(ops_mix(seed=17), "ops_mix", 18, 32)
    save_fixture(neg_abs_tile(seed=19), "neg_abs_tile", 20, 6)
    save_fixture(lookup_ops(seed=21), "lookup_ops", 22, 6)
    save_fixture(softmax_ops(seed=23), "softmax_ops", 24, 8)
    save_fixture(decoder_ops(seed=25), "decoder_ops", 26, 18)

    # A "proprietary" scoring model: 12 private features -> 24 -> 12 -> 3 class scores.
    private = os.path.join(HERE, "private_model")
    save(mlp("private_model", [12, 24, 12, 3], [1, 12], seed=5), private)
    write_input(private, np.random.default_rng(11).uniform(-1, 1, size=12))

    # The convolutional examples: a small CNN and a LeNet-like one, on a digit-like image.
    cnn_small = os.path.join(HERE, "cnn_small")
    save(cnn("cnn_small", [1, 1, 8, 8], [("conv", 4, 3), ("relu",), ("flatten",), ("gemm", 10)], seed=8), cnn_small)
    write_input(cnn_small, image[::3, ::3][1:9, 1:9])
    lenet = os.path.join(HERE, "lenet_like")
    layers = [("conv", 6, 5), ("relu",), ("avgpool", 2), ("conv", 16, 5), ("relu",), ("avgpool", 2), ("flatten",),
              ("gemm", 120), ("relu",), ("gemm", 84), ("relu",), ("gemm", 10)]
    save(cnn("lenet_like", [1, 1, 28, 28], layers, seed=9), lenet)
    write_input(lenet, image)

    # Fixtures for the operators' geometry: strides, pads, dilations, groups, BatchNorm, pooling
    # with padding, global pooling, and a 1-D network.
    conv2d = [("conv", 8, 3, {"strides": [2, 2], "pads": [1, 1, 1, 1], "group": 2}), ("bn",), ("relu",),
              ("maxpool", 2, {"strides": [1, 1], "pads": [0, 0, 1, 1]}),
              ("conv", 8, 3, {"group": 8, "dilations": [2, 2], "pads": [2, 2, 2, 2]}),
              ("avgpool", 3, {"strides": [2, 2], "pads": [1, 1, 1, 1]}), ("bn",), ("globalmaxpool",), ("flatten",), ("gemm", 3)]
    save(cnn("conv2d_ops", [1, 4, 9, 9], conv2d, seed=10), FIXTURES, "conv2d_ops.onnx")
    with open(os.path.join(FIXTURES, "conv2d_ops.input.json"), "w") as f:
        json.dump({"input_data": [np.random.default_rng(14).uniform(-1, 1, size=4 * 81).round(6).tolist()]}, f)
    conv1d = [("conv", 4, 5, {"strides": [2]}), ("relu",),
              ("avgpool", 3, {"strides": [2], "pads": [1, 1], "count_include_pad": 1}), ("globalavgpool",), ("flatten",), ("gemm", 2)]
    save(cnn("conv1d_ops", [1, 2, 16], conv1d, seed=11), FIXTURES, "conv1d_ops.onnx")
    with open(os.path.join(FIXTURES, "conv1d_ops.input.json"), "w") as f:
        json.dump({"input_data": [np.random.default_rng(15).uniform(-1, 1, size=32).round(6).tolist()]}, f)

    credit = os.path.join(HERE, "credit_score")
    model, applicant, accuracy = credit_score(seed=13)
    save(model, credit)
    write_input(credit, applicant)
    print(f"credit_score: training accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
