"""Bounded load test of `hpsedge serve` on localhost: throughput and p50/p99 latency vs concurrency,
Triton's dynamic batching on and off.

Two servers run side by side on 127.0.0.1 (one with `--batching`, one with `--no-batching`), each in the
serve virtualenv (PyTriton pins numpy<2); for each concurrency the two are measured alternately
(interleaved rounds), each round a fixed number of requests under a time limit. A request is one
640×480 frame with ``--people`` boxes, sent with `hpsedge.client` over gRPC from concurrent threads (each
its own connection). Writes ``benchmarks/results/serve_load.{json,md}``.

    python benchmarks/serve_load.py --folder build/poco-pare-int8 [--requests 48] [--time-limit 120] \
        [--concurrency 1 2 4 8] [--rounds 2] [--serve-python .venv-serve/bin/python]

Build the folder first, e.g. `hpsedge export build --model poco-pare --precision int8 --int8-flavor ort`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"

LOAD = r"""
import json, sys, threading, time
import numpy as np
from hpsedge.client import HpsedgeClient

url, conc, n, limit, people = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
rng = np.random.default_rng(0)
image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
w = 600 // people
boxes = np.array([[20 + i * w, 40, 20 + (i + 1) * w - 10, 460] for i in range(people)], np.float32)
clients = [HpsedgeClient(url) for _ in range(conc)]
for c in clients:
    c.predict(image, boxes)  # connect + warm
lat, errors = [], []
lock = threading.Lock()
counter = iter(range(n))
start = time.perf_counter()
deadline = start + limit

def worker(c):
    while time.perf_counter() < deadline:
        with lock:
            if next(counter, None) is None:
                return
        t = time.perf_counter()
        try:
            c.predict(image, boxes)
            with lock:
                lat.append(time.perf_counter() - t)
        except Exception as exc:
            with lock:
                errors.append(repr(exc))

threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
for t in threads:
    t.start()
for t in threads:
    t.join()
wall = time.perf_counter() - start
print(json.dumps({"done": len(lat), "errors": errors[:3], "n_errors": len(errors), "wall_s": wall, "lat_s": lat,
                  "timed_out": len(lat) + len(errors) < n}))
"""


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def ready(http: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/models/hpsedge/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def batch_sizes(metrics: int, model: str) -> tuple[int, int]:
    """(network executions, crops inferred) so far, from Prometheus: crops/executions = mean batch size."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as r:
        text = r.read().decode()
    def total(metric: str) -> int:
        return sum(int(float(ln.rsplit(" ", 1)[1])) for ln in text.splitlines()
                   if ln.startswith(f'{metric}{{model="{model}"'))
    return total("nv_inference_exec_count"), total("nv_inference_count")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, required=True, help="build folder (poco-pare INT8 for the README figures)")
    ap.add_argument("--requests", type=int, default=48, help="requests per (server, concurrency, round)")
    ap.add_argument("--time-limit", type=float, default=120.0, help="seconds per (server, concurrency, round)")
    ap.add_argument("--concurrency", nargs="+", type=int, default=[1, 2, 4, 8])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--people", type=int, default=1, help="boxes per frame")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads of each server")
    ap.add_argument("--max-queue-delay-us", type=int, default=5000)
    ap.add_argument("--serve-python", type=Path, default=ROOT / ".venv-serve" / "bin" / "python")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if not args.serve_python.exists():
        sys.exit(f"error: no serve virtualenv at {args.serve_python} (make serve-venv)")
    manifest = json.loads((args.folder / "manifest.json").read_text())
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    args.out.mkdir(parents=True, exist_ok=True)

    servers = {}
    for mode in ("on", "off"):
        http, grpc, metrics = free_ports(3)
        log = (args.out / f"serve_load_{mode}.log.tmp").open("w")
        cmd = [str(args.serve_python), "-m", "hpsedge.cli", "serve", str(args.folder), "--host", "127.0.0.1",
               "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
               "--batching" if mode == "on" else "--no-batching", "--instances", str(max(args.concurrency)),
               "--threads", str(args.threads), "--max-queue-delay-us", str(args.max_queue_delay_us)]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        servers[mode] = {"proc": proc, "http": http, "grpc": grpc, "metrics": metrics}
    try:
        for mode, s in servers.items():
            end = time.monotonic() + 300
            while not ready(s["http"]):
                if s["proc"].poll() is not None or time.monotonic() > end:
                    sys.exit(f"error: server ({mode}) did not start; see {args.out}/serve_load_{mode}.log.tmp")
                time.sleep(0.5)
        network = f"{manifest['model']['name']}_onnx"
        raw: dict[str, dict[int, list[dict]]] = {"on": {}, "off": {}}
        for rnd in range(args.rounds):
            for c in args.concurrency:
                for mode in (("on", "off") if rnd % 2 == 0 else ("off", "on")):  # interleaved, order alternating
                    s = servers[mode]
                    before = batch_sizes(s["metrics"], network)
                    res = subprocess.run(
                        [str(args.serve_python), "-c", LOAD, f"127.0.0.1:{s['grpc']}", str(c), str(args.requests),
                         str(args.time_limit), str(args.people)],
                        capture_output=True, text=True, env=env, timeout=args.time_limit + 120,
                    )
                    if res.returncode != 0:
                        sys.exit(f"error: load client failed: {res.stderr[-2000:]}")
                    r = json.loads(res.stdout.strip().splitlines()[-1])
                    after = batch_sizes(s["metrics"], network)
                    r["exec"], r["crops"] = after[0] - before[0], after[1] - before[1]
                    raw[mode].setdefault(c, []).append(r)
                    print(f"round {rnd} batching {mode} c={c}: {r['done']} ok in {r['wall_s']:.1f} s"
                          f" ({r['done'] / r['wall_s']:.2f} req/s), mean network batch "
                          f"{r['crops'] / max(r['exec'], 1):.2f}", flush=True)
    finally:
        for s in servers.values():
            s["proc"].send_signal(signal.SIGTERM)
        codes = {m: s["proc"].wait(timeout=120) for m, s in servers.items()}

    rows = []
    for mode in ("on", "off"):
        for c in args.concurrency:
            runs = raw[mode][c]
            lat = np.array([x for r in runs for x in r["lat_s"]]) * 1000.0
            done = sum(r["done"] for r in runs)
            wall = sum(r["wall_s"] for r in runs)
            rows.append({
                "batching": mode, "concurrency": c, "requests": done, "errors": sum(r["n_errors"] for r in runs),
                "timed_out": any(r["timed_out"] for r in runs), "wall_s": round(wall, 2),
                "throughput_rps": round(done / wall, 3), "p50_ms": round(float(np.percentile(lat, 50)), 1),
                "p99_ms": round(float(np.percentile(lat, 99)), 1),
                "mean_network_batch": round(sum(r["crops"] for r in runs) / max(sum(r["exec"] for r in runs), 1), 2),
                "per_round_rps": [round(r["done"] / r["wall_s"], 3) for r in runs],
            })
    by = {(r["batching"], r["concurrency"]): r for r in rows}
    c_hi, c_lo = max(args.concurrency), min(args.concurrency)
    ratio = {m: round(by[(m, c_hi)]["throughput_rps"] / by[(m, c_lo)]["throughput_rps"], 2) for m in ("on", "off")}
    meta = {
        "model": manifest["model"]["name"], "variant": manifest["model"].get("variant"),
        "precision": manifest.get("precision"), "folder": str(args.folder), "people_per_frame": args.people,
        "requests_per_round": args.requests, "rounds": args.rounds, "time_limit_s": args.time_limit,
        "ort_threads": args.threads, "max_queue_delay_us": args.max_queue_delay_us,
        "max_batch": manifest.get("max_batch"), "cpu_count": os.cpu_count(), "load_avg_end": os.getloadavg(),
        "machine": platform.platform(), "date": dt.date.today().isoformat(), "server_exit_codes": codes,
        f"throughput_ratio_c{c_hi}_vs_c{c_lo}": ratio,
    }
    (args.out / "serve_load.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    md = [
        f"`hpsedge serve` load test: {meta['model']} ({meta['variant']}, {meta['precision']}) on this CPU "
        f"({meta['cpu_count']} cores, shared; load average at the end {meta['load_avg_end'][0]:.1f}), "
        f"{args.people} person per 640×480 frame, gRPC on 127.0.0.1, {args.rounds} interleaved rounds × "
        f"{args.requests} requests per cell, ONNX Runtime {args.threads} threads, max queue delay "
        f"{args.max_queue_delay_us} µs ({meta['date']}).",
        "",
        "| dynamic batching | concurrency | requests | throughput (req/s) | p50 (ms) | p99 (ms) | mean network batch |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        note = (" (time limit)" if r["timed_out"] else "") + (f", {r['errors']} errors" if r["errors"] else "")
        md.append(f"| {r['batching']} | {r['concurrency']} | {r['requests']}{note} | {r['throughput_rps']:.2f} | "
                  f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['mean_network_batch']:.2f} |")
    md += ["", f"Throughput at concurrency {c_hi} ÷ concurrency {c_lo}: batching on ×{ratio['on']}, "
               f"batching off ×{ratio['off']}.", ""]
    (args.out / "serve_load.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
