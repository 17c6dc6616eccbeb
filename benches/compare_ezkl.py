#!/usr/bin/env python3
"""zkinfer and EZKL side by side: the same models, inputs, calibration samples and machine.

    python3 benches/compare_ezkl.py [--models mlp_small,lenet_like] [--runs 3] [--modes default,hashed]

On a fresh machine it creates a virtual environment under ~/.cache/zkinfer/bench-venv with the
pinned `ezkl`, `onnx` and `onnxruntime` from PyPI, rebuilds the example models with their seeded
weights (examples/make_models.py), builds zkinfer, starts one anvil (the project's pinned one, with
Prague rules), and runs every step of both tools for each model, alternating the tools step by step
so that machine noise hits both alike:

    gen-settings, calibrate (target resources, the same samples), compile, SRS (cached, not timed),
    setup, prove (median of --runs), verify, create-evm-verifier, EVM verification on anvil.

Each timed step runs in its own process; its peak resident memory comes from the kernel (wait4), read
by GNU time around the step where it is installed: a process forked straight from this script
starts with the script's own peak as its maximum (Linux carries it across fork and exec), which
would put a floor of this script's size, ~60-200 MiB, under every small step.
Verification gas is the gas of one transaction to the deployed verifier on the same anvil, for both
tools. Output error is against onnxruntime on the same input. Results go to
benches/results/latest.json and a Markdown table (benches/results/latest.md, also printed).
EZKL's SRS is generated with its own (insecure, development) `gen_srs`; EZKL finds solc through
svm under $HOME/.svm, so its steps run with HOME set to a private folder holding the project's
solc-js adapter under the version EZKL asks for (0.8.20); nothing outside ~/.cache/zkinfer changes.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "zkinfer")
VENV = os.path.join(CACHE, "bench-venv")
EZKL_HOME = os.path.join(CACHE, "bench-ezkl-home")
EZKL_SRS = os.path.join(CACHE, "bench-ezkl-srs")
PINS = ["ezkl==23.0.5", "onnx==1.17.0", "onnxruntime==1.31.1", "numpy==2.1.3"]
EZKL_SOLC_VERSION = "0.8.20"
MODELS = ["mlp_small", "mlp_mnist", "cnn_small", "lenet_like", "sigmoid_mlp"]
MODES = {"default": "public", "hashed": "hashed"}  # input visibility; params fixed, output public
CALIBRATION_SAMPLES = 8


def venv_python():
    return os.path.join(VENV, "bin", "python")


def ensure_venv():
    """Creates the benchmark environment once; re-runs this script inside it."""
    marker = os.path.join(VENV, "pins.txt")
    if not (os.path.exists(marker) and open(marker).read().split() == PINS):
        print(f"creating {VENV} with {' '.join(PINS)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([venv_python(), "-m", "pip", "install", "--quiet", *PINS], check=True)
        with open(marker, "w") as f:
            f.write("\n".join(PINS))
    if os.path.realpath(sys.prefix) != os.path.realpath(VENV):
        os.execv(venv_python(), [venv_python(), *sys.argv])


# GNU time, whose own child starts from its small peak, not from this script's.
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def run(cmd, cwd, env=None, label=None):
    """Runs `cmd`; returns (seconds, peak RSS in MiB, stdout). Raises with the output on failure."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
            tempfile.NamedTemporaryFile("r") as rss:
        timed = [GNU_TIME, "-f", "%M", "-o", rss.name, *cmd] if GNU_TIME else cmd
        start = time.perf_counter()
        proc = subprocess.Popen(timed, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
        # time writes the peak in KiB on its last line (after a note when the step failed).
        lines = rss.read().split()
        peak_kib = int(lines[-1]) if GNU_TIME and lines and lines[-1].isdigit() else usage.ru_maxrss
    if proc.returncode != 0:
        raise RuntimeError(f"{label or cmd[0]} failed ({proc.returncode}):\n{stdout[-2000:]}\n{stderr[-4000:]}")
    return seconds, peak_kib / 1024, stdout


# One EZKL call in a fresh process: its async calls get an event loop, its result comes back as JSON.
EZKL_STEP = r"""
import asyncio, inspect, json, sys
import ezkl
spec = json.loads(sys.argv[1])
async def main():
    kwargs = dict(spec.get("kwargs", {}))
    if "run_args" in spec:
        run_args = ezkl.PyRunArgs()
        for key, value in spec["run_args"].items():
            setattr(run_args, key, value)
        kwargs["py_run_args"] = run_args
    result = getattr(ezkl, spec["fn"])(*spec.get("args", []), **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result
result = asyncio.run(main())
if result is False:
    sys.exit(f"ezkl.{spec['fn']} returned False")
print(json.dumps(result if isinstance(result, (bool, int, float, str, list, dict, type(None))) else str(result)), flush=True)
# Skip the interpreter's teardown: EZKL's EVM calls can crash in it after returning.
import os
os._exit(0)
"""


class Ezkl:
    name = "ezkl"

    def __init__(self, work):
        self.work = work
        self.env = dict(os.environ, HOME=EZKL_HOME)

    @staticmethod
    def command(fn, *args, run_args=None, **kwargs):
        """The process that runs `ezkl.fn(*args, **kwargs)` (EZKL_STEP)."""
        spec = {"fn": fn, "args": list(args), "kwargs": kwargs}
        if run_args is not None:
            spec["run_args"] = run_args
        return [venv_python(), "-c", EZKL_STEP, json.dumps(spec)]

    def call(self, fn, *args, run_args=None, **kwargs):
        seconds, peak, stdout = run(self.command(fn, *args, run_args=run_args, **kwargs), self.work, self.env, f"ezkl.{fn}")
        return seconds, peak, json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else None

    def settings(self, model, samples, input_visibility):
        self.call("gen_settings", model, "settings.json",
                  run_args={"input_visibility": input_visibility, "param_visibility": "fixed", "output_visibility": "public"})
        self.call("calibrate_settings", samples, model, "settings.json", "resources")
        self.call("compile_circuit", model, "network.ezkl", "settings.json")
        settings = json.load(open(os.path.join(self.work, "settings.json")))
        self.k = settings["run_args"]["logrows"]
        self.scale = settings["run_args"]["input_scale"]
        os.makedirs(EZKL_SRS, exist_ok=True)
        self.srs = os.path.join(EZKL_SRS, f"k{self.k}.srs")
        if not os.path.exists(self.srs):
            print(f"  ezkl gen_srs k={self.k} (cached in {EZKL_SRS})", flush=True)
            self.call("gen_srs", self.srs + ".tmp", self.k)
            os.replace(self.srs + ".tmp", self.srs)
        return self.k

    def setup(self, data):
        self.call("gen_witness", data, "network.ezkl", "witness.json", None, None)
        seconds, peak, _ = self.call("setup", "network.ezkl", "vk.key", "pk.key", self.srs, None, False)
        return seconds, peak

    def prove(self):
        seconds, peak, _ = self.call("prove", "witness.json", "network.ezkl", "pk.key", "proof.json", self.srs)
        return seconds, peak

    def verify(self):
        self.call("verify", "proof.json", "settings.json", "vk.key", self.srs, False)

    def outputs(self):
        witness = json.load(open(os.path.join(self.work, "witness.json")))
        return [float(v) for out in witness["pretty_elements"]["rescaled_outputs"] for v in out]

    def proof_bytes(self):
        proof = json.load(open(os.path.join(self.work, "proof.json")))
        hex_proof = proof.get("hex_proof") or ""
        return len(bytes.fromhex(hex_proof[2:])) if hex_proof else len(proof["proof"])

    def evm(self, chain):
        self.call("create_evm_verifier", "vk.key", "settings.json", "Verifier.sol", "abi.json", self.srs, False)
        self.call("deploy_evm", addr_path="addr.txt", sol_code_path="Verifier.sol", rpc_url=chain.url,
                  contract_type="verifier", optimizer_runs=1, private_key=None)
        address = open(os.path.join(self.work, "addr.txt")).read().strip()
        self.call("verify_evm", addr_verifier=address, proof_path="proof.json", rpc_url=chain.url, vka_path=None)
        self.call("encode_evm_calldata", "proof.json", "calldata.bin", None)
        with open(os.path.join(self.work, "calldata.bin"), "rb") as f:
            gas = chain.transact(address, f.read())
        return chain.code_size(address), gas


class Zkinfer:
    name = "zkinfer"

    def __init__(self, work, binary):
        self.work = work
        self.binary = binary

    def call(self, *args):
        return run([self.binary, *args], self.work, label=f"zkinfer {args[0]}")

    def settings(self, model, samples, input_visibility):
        self.call("gen-settings", "-M", model, "--input-visibility", input_visibility)
        self.call("calibrate", "-M", model, "-D", samples, "--target", "resources")
        _, _, stdout = self.call("compile", "-M", model)
        # "wrote model.compiled: k = 15, ..."
        self.k = int(stdout.split("k = ")[1].split(",")[0])
        self.scale = json.load(open(os.path.join(self.work, "settings.json")))["input_scale"]
        self.call("gen-srs", "--logrows", str(self.k))
        return self.k

    def setup(self, data):
        self.data = data
        seconds, peak, _ = self.call("setup")
        return seconds, peak

    def prove(self):
        seconds, peak, _ = self.call("prove", "-D", self.data)
        return seconds, peak

    def verify(self):
        self.call("verify")

    def outputs(self):
        witness = json.load(open(os.path.join(self.work, "witness.json")))
        return [v / 2 ** self.scale for out in witness["outputs"] for v in out]

    def proof_bytes(self):
        proof = json.load(open(os.path.join(self.work, "proof.json")))
        return len(bytes.fromhex(proof["proof"].removeprefix("0x")))

    def evm(self, chain):
        self.call("create-evm-verifier")
        _, _, stdout = self.call("verify-evm", "--rpc-url", chain.url)
        gas = int(stdout.rsplit("gas used", 1)[1].split()[0])
        verifier = json.load(open(os.path.join(self.work, "Verifier.json")))
        runtime = verifier["runtime"]
        return len(bytes.fromhex(runtime.removeprefix("0x"))), gas


class Anvil:
    """One anvil from the project's npm toolchain, with Prague rules for both tools."""

    def __init__(self):
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ROOT, check=True)
        binary = os.path.join(ROOT, "node_modules", "@foundry-rs", "anvil-linux-amd64", "bin", "anvil")
        if not os.path.exists(binary):
            binary = os.path.join(ROOT, "node_modules", ".bin", "anvil")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([binary, "--port", str(port), "--hardfork", "prague", "--silent",
                                      "--gas-limit", "100000000", "--code-size-limit", "1000000"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                self.account = self.rpc("eth_accounts")[0]
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("anvil did not start")

    def rpc(self, method, *params):
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        answer = json.load(urllib.request.urlopen(request, timeout=120))
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def transact(self, to, data):
        tx = self.rpc("eth_sendTransaction", {"from": self.account, "to": to, "data": "0x" + data.hex(), "gas": hex(30_000_000)})
        receipt = None
        for _ in range(600):
            receipt = self.rpc("eth_getTransactionReceipt", tx)
            if receipt:
                break
            time.sleep(0.1)
        if not receipt:
            raise RuntimeError(f"no receipt for {tx}")
        if int(receipt["status"], 16) != 1:
            raise RuntimeError(f"the verifier at {to} reverted")
        return int(receipt["gasUsed"], 16)

    def code_size(self, address):
        return (len(self.rpc("eth_getCode", address, "latest")) - 2) // 2

    def stop(self):
        self.proc.terminate()


def onnx_outputs(model, data):
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(model)
    values = json.load(open(data))["input_data"]
    feeds = {}
    for meta, flat in zip(session.get_inputs(), values):
        shape = [d if isinstance(d, int) else 1 for d in meta.shape]
        feeds[meta.name] = np.asarray(flat, dtype=np.float32).reshape(shape)
    return [float(v) for out in session.run(None, feeds) for v in np.asarray(out).reshape(-1)]


def calibration_samples(data, path):
    """The input plus deterministic variations of it (each value scaled within [0.5, 1.5])."""
    values = json.load(open(data))["input_data"]
    samples = [[] for _ in values]
    for s in range(CALIBRATION_SAMPLES):
        for i, flat in enumerate(values):
            samples[i].extend(v * (1.0 if s == 0 else 0.5 + ((s * 31 + j * 17) % 101) / 100) for j, v in enumerate(flat))
    with open(path, "w") as f:
        json.dump({"input_data": samples}, f)


def bench_model(model_name, mode, runs, chain, binary, out_dir):
    source = os.path.join(ROOT, "examples", model_name)
    tools = []
    for cls in (Ezkl, Zkinfer):
        work = os.path.join(out_dir, model_name, mode, cls.name)
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        shutil.copy(os.path.join(source, "network.onnx"), work)
        shutil.copy(os.path.join(source, "input.json"), work)
        calibration_samples(os.path.join(work, "input.json"), os.path.join(work, "samples.json"))
        tools.append(Ezkl(work) if cls is Ezkl else Zkinfer(work, binary))
    rows = {tool.name: {"model": model_name, "tool": tool.name, "input": MODES[mode]} for tool in tools}
    expected = onnx_outputs(os.path.join(source, "network.onnx"), os.path.join(source, "input.json"))
    for tool in tools:
        rows[tool.name]["k"] = tool.settings("network.onnx", "samples.json", MODES[mode])
    for tool in tools:
        rows[tool.name]["setup_s"], rows[tool.name]["setup_peak_mib"] = tool.setup("input.json")
    proves = {tool.name: [] for tool in tools}
    for _ in range(runs):
        for tool in tools:
            proves[tool.name].append(tool.prove())
    for tool in tools:
        row = rows[tool.name]
        row["prove_s"] = statistics.median(s for s, _ in proves[tool.name])
        row["prove_runs_s"] = [round(s, 3) for s, _ in proves[tool.name]]
        row["prove_peak_mib"] = max(p for _, p in proves[tool.name])
        tool.verify()
        row["proof_bytes"] = tool.proof_bytes()
        row["verifier_bytes"], row["gas"] = tool.evm(chain)
        got = tool.outputs()
        if len(got) != len(expected):
            raise RuntimeError(f"{tool.name} gave {len(got)} outputs, onnxruntime {len(expected)}")
        row["max_abs_error"] = max(abs(a - b) for a, b in zip(got, expected))
        print(f"  {tool.name:8} k={row['k']} setup {row['setup_s']:.2f} s, prove {row['prove_s']:.2f} s, "
              f"{row['prove_peak_mib']:.0f} MiB, proof {row['proof_bytes']} B, verifier {row['verifier_bytes']} B, "
              f"gas {row['gas']}, err {row['max_abs_error']:.5f}", flush=True)
    return rows


def ratio(a, b):
    return a / b if b else float("nan")


def table(results):
    lines = ["| model | input | tool | k | setup s | prove s | prove peak MiB | proof B | verifier B | gas | max abs err |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for name in ("ezkl", "zkinfer"):
            t = r[name]
            lines.append(f"| {t['model']} | {t['input']} | {name} | {t['k']} | {t['setup_s']:.2f} | {t['prove_s']:.2f} | "
                         f"{t['prove_peak_mib']:.0f} | {t['proof_bytes']} | {t['verifier_bytes']} | {t['gas']} | {t['max_abs_error']:.5f} |")
        z, e = r["zkinfer"], r["ezkl"]
        lines.append(f"| {z['model']} | {z['input']} | **zkinfer/EZKL** | | {ratio(z['setup_s'], e['setup_s']):.2f} | "
                     f"**{ratio(z['prove_s'], e['prove_s']):.2f}** | **{ratio(z['prove_peak_mib'], e['prove_peak_mib']):.2f}** | "
                     f"{ratio(z['proof_bytes'], e['proof_bytes']):.2f} | {ratio(z['verifier_bytes'], e['verifier_bytes']):.2f} | "
                     f"**{ratio(z['gas'], e['gas']):.2f}** | |")
    summary = []
    for input_mode in sorted({r["zkinfer"]["input"] for r in results}):
        subset = [r for r in results if r["zkinfer"]["input"] == input_mode]
        for key, label in (("prove_s", "prove time"), ("prove_peak_mib", "peak memory"), ("gas", "gas")):
            ratios = [ratio(r["zkinfer"][key], r["ezkl"][key]) for r in subset]
            geo = statistics.geometric_mean(ratios)
            summary.append(f"{input_mode} input, {label}: geometric mean {geo:.2f}x, worst {max(ratios):.2f}x")
    return "\n".join(lines), summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--modes", default="default,hashed", help="default (public input) and/or hashed input")
    parser.add_argument("--runs", type=int, default=3, help="prove runs per tool (median reported)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benches", "results"))
    parser.add_argument("--work", default=os.path.join(CACHE, "bench-work"))
    args = parser.parse_args()
    ensure_venv()

    # The solc-js adapter where EZKL's svm looks for the version it wants.
    svm = os.path.join(EZKL_HOME, ".svm", EZKL_SOLC_VERSION)
    os.makedirs(svm, exist_ok=True)
    link = os.path.join(svm, f"solc-{EZKL_SOLC_VERSION}")
    if not os.path.exists(link):
        os.symlink(shutil.which("solc") or os.path.join(ROOT, "tools", "solc"), link)

    subprocess.run([venv_python(), os.path.join(ROOT, "examples", "make_models.py")], check=True, stdout=subprocess.DEVNULL)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(CACHE, "target"))
    subprocess.run(["cargo", "build", "--quiet"], cwd=ROOT, check=True, env=dict(os.environ, CARGO_TARGET_DIR=target))
    binary = os.path.join(target, "debug", "zkinfer")
    chain = Anvil()
    results = []
    try:
        for mode in args.modes.split(","):
            for model in args.models.split(","):
                print(f"{model} ({MODES[mode]} input)", flush=True)
                results.append(bench_model(model, mode, args.runs, chain, binary, args.work))
    finally:
        chain.stop()
    markdown, summary = table(results)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    machine = f"{os.cpu_count()} cores, {platform.machine()}, {platform.system()}"
    report = {"date": now, "machine": machine, "ezkl": PINS[0], "runs": args.runs,
              "command": "python3 benches/compare_ezkl.py " + " ".join(sys.argv[1:]), "results": results, "summary": summary}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "latest.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(args.out, "latest.md"), "w") as f:
        f.write(f"Measured {now} on {machine}; prove time is the median of {args.runs} runs.\n\n{markdown}\n\n")
        f.write("\n".join(f"- {s}" for s in summary) + "\n")
    print(markdown)
    print("\n".join(summary))


if __name__ == "__main__":
    main()
