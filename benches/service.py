#!/usr/bin/env python3
"""The proving service measured: throughput and latency with 1 and 2 workers, its overhead over
a bare `zkinfer prove` of the same model, and the memory a warm model takes.

    python3 benches/service.py [--example mlp_small] [--jobs 60] [--sequential 10]

Needs only the standard library and a built zkinfer (cargo build; $CARGO_TARGET_DIR as .ci/run).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/zkinfer/target"))
BIN = os.path.join(TARGET, "debug", "zkinfer")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def request(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def serve(model_dir, workers, db):
    args = [BIN, "serve", "--db", db, "--listen", "127.0.0.1:0", "--no-auth", "--workers", str(workers),
            "--model", f"m={model_dir}"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=model_dir)
    for line in proc.stdout:
        if line.startswith("zkinfer serve: listening on "):
            url = line.split()[4]
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, url
    raise SystemExit("zkinfer serve did not start")


def follow(url, job_id):
    """Follows the job's server-sent events to its end (no polling); returns the job."""
    with urllib.request.urlopen(f"{url}/v1/jobs/{job_id}/events") as stream:
        ended = None
        for raw in stream:
            line = raw.decode().rstrip("\n")
            if line in ("event: done", "event: failed"):
                ended = line
            elif ended and line.startswith("data: "):
                job = json.loads(line[6:])
                if job["state"] == "failed":
                    raise SystemExit(f"job failed: {job['error']}")
                return job
    raise SystemExit("the event stream ended early")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--example", default="mlp_small")
    ap.add_argument("--jobs", type=int, default=60)
    ap.add_argument("--sequential", type=int, default=10)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="zkinfer-service-bench-")
    model_dir = os.path.join(work, "model")
    os.makedirs(model_dir)
    ex = os.path.join(ROOT, "examples", a.example)
    subprocess.run([BIN, "run", "-M", os.path.join(ex, "network.onnx"), "-D", os.path.join(ex, "input.json"),
                    "--dir", model_dir], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    body = json.load(open(os.path.join(ex, "input.json")))

    # A bare `zkinfer prove`, each a whole process (keys read from disk every time).
    bare = []
    for _ in range(a.sequential):
        start = time.perf_counter()
        subprocess.run([BIN, "prove"], cwd=model_dir, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        bare.append(time.perf_counter() - start)
    rows = []
    for workers in (1, 2):
        db = f"sqlite://{work}/jobs-{workers}.sqlite"
        proc, url = serve(model_dir, workers, db)
        idle = rss_mib(proc.pid)
        # Sequential: one job at a time, latency as a client sees it (POST to done).
        sequential, prove_s = [], []
        for _ in range(a.sequential):
            start = time.perf_counter()
            job = request("POST", f"{url}/v1/models/m/proofs", body)["job"]
            done = follow(url, job["id"])
            sequential.append(time.perf_counter() - start)
            prove_s.append(done["result"]["timings"]["prove_s"])
        warm = rss_mib(proc.pid)
        # Throughput: every job queued at once by 10 clients.
        ids, lock = [], threading.Lock()

        def client(n):
            for _ in range(n):
                job = request("POST", f"{url}/v1/models/m/proofs", body)["job"]
                with lock:
                    ids.append(job["id"])

        start = time.perf_counter()
        threads = [threading.Thread(target=client, args=(a.jobs // 10,)) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        jobs = [follow(url, i) for i in ids]
        elapsed = time.perf_counter() - start
        latency = [(j["finished_at"] - j["created_at"]) / 1000 for j in jobs]
        peak = rss_mib(proc.pid)
        proc.terminate()
        proc.wait()
        rows.append({
            "workers": workers,
            "throughput_per_min": len(jobs) / elapsed * 60,
            "p50_s": pct(latency, 50),
            "p95_s": pct(latency, 95),
            "sequential_p50_s": pct(sequential, 50),
            "prove_p50_s": pct(prove_s, 50),
            "idle_rss_mib": idle,
            "warm_rss_mib": warm,
            "loaded_rss_mib": peak,
        })
    bare_p50 = statistics.median(bare)
    print(f"model {a.example}; bare `zkinfer prove` p50 {bare_p50:.3f} s over {a.sequential} processes")
    print("| workers | proofs/min | p50 s | p95 s | one at a time p50 s | vs bare prove | prove_s p50 | RSS idle / warm / after load, MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['throughput_per_min']:.1f} | {r['p50_s']:.2f} | {r['p95_s']:.2f} | "
              f"{r['sequential_p50_s']:.3f} | {r['sequential_p50_s'] / bare_p50:.2f}x | {r['prove_p50_s']:.3f} | "
              f"{r['idle_rss_mib']:.0f} / {r['warm_rss_mib']:.0f} / {r['loaded_rss_mib']:.0f} |")
    json.dump({"bare_prove_p50_s": bare_p50, "rows": rows}, sys.stderr)


if __name__ == "__main__":
    main()
