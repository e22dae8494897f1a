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

Soak mode (``--soak SECONDS``): one server (dynamic batching on), ``--soak-concurrency`` (64) clients sending
frames without pause for SECONDS, every ``--hostile-every``-th request of a client a hostile one (from a fixed
list: an HTTP JSON body declaring a [100000, 100000, 3] image, a gzip body, a chunked body, an oversized
Content-Length, the repository and shared-memory APIs, NaN boxes, too many boxes, a float image, a wrong
rank, garbage JSON); the RSS of the server's whole process tree (hpsedge serve, tritonserver, its Python
stubs) is sampled every ``--rss-every`` seconds. Writes ``serve_soak.{json,md}``: p50/p99 latency of the
good requests overall and per tenth of the run, hostile requests refused as expected, the RSS curve and its
growth. Every loop is bounded by the deadline; everything listens and connects on 127.0.0.1 only.

    python benchmarks/serve_load.py --folder FOLDER --soak 1800 [--soak-concurrency 64]
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


SOAK = r"""
import gzip, http.client, json, random, sys, threading, time
import numpy as np
from hpsedge.client import HpsedgeClient, ServerError

grpc_url, http_port, conc, seconds, every, people = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                                      float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
result_path = sys.argv[7]
rng = np.random.default_rng(0)
image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
w = 600 // people
boxes = np.array([[20 + i * w, 40, 20 + (i + 1) * w - 10, 460] for i in range(people)], np.float32)

def raw_http(method, path, body=b"", headers=None):
    c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=60)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()[:300].decode(errors="replace")
    finally:
        c.close()

def declared_huge():
    body = json.dumps({"inputs": [
        {"name": "image", "shape": [100000, 100000, 3], "datatype": "UINT8", "data": [1, 2, 3]},
        {"name": "boxes", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 10, 10]}]}).encode()
    return raw_http("POST", "/v2/models/hpsedge/infer", body, {"Content-Type": "application/json"})

def gzip_body():
    body = gzip.compress(b'{"inputs": []}')
    return raw_http("POST", "/v2/models/hpsedge/infer", body, {"Content-Encoding": "gzip"})

def chunked():
    c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=60)
    try:
        c.putrequest("POST", "/v2/models/hpsedge/infer")
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        c.send(b"5\r\nhello\r\n0\r\n\r\n")
        r = c.getresponse()
        return r.status, r.read()[:300].decode(errors="replace")
    finally:
        c.close()

def oversized():
    c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=60)
    try:
        c.putrequest("POST", "/v2/models/hpsedge/infer")
        c.putheader("Content-Length", str(10**12))
        c.endheaders()
        r = c.getresponse()
        return r.status, r.read()[:300].decode(errors="replace")
    finally:
        c.close()

def grpc_bad(client, im, bx):
    try:
        client.infer(im, bx)
        return 200, "accepted"
    except ServerError as exc:
        return 400, str(exc)

HOSTILE = [
    ("http-declared-30GB", lambda c: declared_huge(), 413),
    ("http-gzip", lambda c: gzip_body(), 415),
    ("http-chunked", lambda c: chunked(), 411),
    ("http-content-length-1TB", lambda c: oversized(), 413),
    ("http-repository-unload", lambda c: raw_http("POST", "/v2/repository/models/hpsedge/unload"), 404),
    ("http-shm-register", lambda c: raw_http("POST", "/v2/systemsharedmemory/region/x/register", b"{}"), 404),
    ("http-garbage-json", lambda c: raw_http("POST", "/v2/models/hpsedge/infer", b"{oops"), 400),
    ("grpc-nan-boxes", lambda c: grpc_bad(c, image, np.full((1, 4), np.nan, np.float32)), 400),
    ("grpc-too-many-boxes", lambda c: grpc_bad(c, image, np.tile(boxes[:1], (500, 1))), 400),
    ("grpc-float-image", lambda c: grpc_bad(c, image.astype(np.float32), boxes), 400),
    ("grpc-rank-4-image", lambda c: grpc_bad(c, image[None], boxes), 400),
]

clients = [HpsedgeClient(grpc_url, timeout_s=300) for _ in range(conc)]
for c in clients:
    c.output_names()
clients[0].predict(image, boxes)  # warm
lock = threading.Lock()
start = time.perf_counter()
deadline = start + seconds
good, bad, hostile = [], [], {}
print("started", flush=True)

def worker(i, c):
    k = 0
    r = random.Random(i)
    while time.perf_counter() < deadline:
        k += 1
        if every and k % every == 0:
            name, fn, want = HOSTILE[r.randrange(len(HOSTILE))]
            try:
                status, text = fn(c)
            except Exception as exc:
                status, text = -1, repr(exc)[:200]
            ok = status == want and "Traceback" not in text and "\n" not in text.strip()
            with lock:
                h = hostile.setdefault(name, {"sent": 0, "refused_as_expected": 0, "other": []})
                h["sent"] += 1
                h["refused_as_expected"] += ok
                if not ok and len(h["other"]) < 3:
                    h["other"].append([status, text[:200]])
            continue
        t0 = time.perf_counter()
        try:
            c.predict(image, boxes)
            with lock:
                good.append((t0 - start, time.perf_counter() - t0))
        except Exception as exc:
            with lock:
                bad.append((t0 - start, repr(exc)[:200]))

threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join(timeout=seconds + 600)
with open(result_path, "w") as f:  # a file, not stdout: a full pipe would block this process until killed
    json.dump({"good": good, "bad": bad[:20], "n_bad": len(bad), "hostile": hostile,
               "wall_s": time.perf_counter() - start, "stuck_threads": sum(t.is_alive() for t in threads)}, f)
print("done", flush=True)
"""


def tree_rss_mb(pid: int) -> tuple[float, int]:
    """RSS (MB) of ``pid`` and all its descendants (Linux /proc), and how many processes that is."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    total, n, todo = 0, 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    n += 1
                    break
        except OSError:
            continue
        todo.extend(children.get(p, []))
    return total / 1024.0, n


def soak(args: argparse.Namespace, manifest: dict, env: dict[str, str]) -> None:
    """``--soak``: see the module docstring."""
    from _neighbours import cpu_model

    http, grpc, metrics = free_ports(3)
    log_path = args.out / "serve_soak.log.tmp"
    cmd = [str(args.serve_python), "-m", "hpsedge.cli", "serve", str(args.folder), "--host", "127.0.0.1",
           "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics), "--batching",
           "--instances", str(args.instances), "--threads", str(args.threads),
           "--max-queue-delay-us", str(args.max_queue_delay_us)]
    with log_path.open("w") as log:
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    rss: list[tuple[float, float, int]] = []
    client = None
    try:
        end = time.monotonic() + 600
        while not ready(http):
            if server.poll() is not None or time.monotonic() > end:
                sys.exit(f"error: the server did not start; see {log_path}")
            time.sleep(0.5)
        result_path = args.out / "serve_soak.client.tmp.json"
        client = subprocess.Popen(
            [str(args.serve_python), "-c", SOAK, f"127.0.0.1:{grpc}", str(http), str(args.soak_concurrency),
             str(args.soak), str(args.hostile_every), str(args.people), str(result_path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        assert client.stdout is not None
        if client.stdout.readline().strip() != "started":
            sys.exit(f"error: the soak client did not start: {client.stderr.read()[-2000:] if client.stderr else ''}")
        t0 = time.monotonic()
        load = []
        hard_end = t0 + args.soak + 900
        while client.poll() is None and time.monotonic() < hard_end:
            mb, n = tree_rss_mb(server.pid)
            rss.append((round(time.monotonic() - t0, 1), round(mb, 1), n))
            if time.monotonic() - t0 <= args.soak:
                load.append(os.getloadavg()[0])
            if server.poll() is not None:
                break
            time.sleep(args.rss_every)
        out, err = client.communicate(timeout=900)
        alive = server.poll() is None and ready(http)
    finally:
        if client is not None and client.poll() is None:
            client.kill()
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=180)
    if "done" not in out or not result_path.is_file():
        sys.exit(f"error: the soak client failed: {err[-2000:]}")
    r = json.loads(result_path.read_text())
    result_path.unlink()
    t_lat = np.array(r["good"], dtype=float).reshape(-1, 2)
    lat_ms = t_lat[:, 1] * 1000.0
    tenths = []
    for k in range(10):
        sel = (t_lat[:, 0] >= k * args.soak / 10) & (t_lat[:, 0] < (k + 1) * args.soak / 10)
        if sel.any():
            tenths.append({"tenth": k + 1, "requests": int(sel.sum()),
                           "p50_ms": round(float(np.percentile(lat_ms[sel], 50)), 1),
                           "p99_ms": round(float(np.percentile(lat_ms[sel], 99)), 1)})
    arr = np.array([(t, m) for t, m, _ in rss if t <= args.soak], dtype=float).reshape(-1, 2)  # under load only
    warm = arr[arr[:, 0] >= min(60.0, args.soak / 10)] if len(arr) else arr  # after the first minute
    half = warm[warm[:, 0] >= warm[0, 0] + (warm[-1, 0] - warm[0, 0]) / 2] if len(warm) > 2 else warm
    slope = float(np.polyfit(half[:, 0], half[:, 1], 1)[0]) * 60.0 if len(half) > 2 else float("nan")
    rate = len(lat_ms) / max(r["wall_s"], 1e-9)
    hostile_sent = sum(h["sent"] for h in r["hostile"].values())
    hostile_ok = sum(h["refused_as_expected"] for h in r["hostile"].values())
    meta = {
        "model": manifest["model"]["name"], "variant": manifest["model"].get("variant"),
        "precision": manifest.get("precision"), "folder": str(args.folder), "soak_s": args.soak,
        "concurrency": args.soak_concurrency, "hostile_every": args.hostile_every, "people_per_frame": args.people,
        "instances": args.instances, "ort_threads": args.threads, "max_queue_delay_us": args.max_queue_delay_us,
        "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "load_avg_mean_1min": round(float(np.mean(load)), 2) if load else None,
        "load_avg_max_1min": round(float(np.max(load)), 2) if load else None,
        "date": dt.date.today().isoformat(), "server_alive_at_end": alive, "server_exit_code": code,
    }
    summary = {
        "good_requests": len(lat_ms), "failed_good_requests": r["n_bad"], "failed_examples": r["bad"][:5],
        "throughput_rps": round(rate, 3),
        "p50_ms": round(float(np.percentile(lat_ms, 50)), 1) if len(lat_ms) else None,
        "p99_ms": round(float(np.percentile(lat_ms, 99)), 1) if len(lat_ms) else None,
        "hostile_sent": hostile_sent, "hostile_refused_as_expected": hostile_ok,
        "rss_mb_first": arr[0, 1] if len(arr) else None, "rss_mb_after_1min": warm[0, 1] if len(warm) else None,
        "rss_mb_end": arr[-1, 1] if len(arr) else None, "rss_mb_max": float(arr[:, 1].max()) if len(arr) else None,
        "rss_growth_mb_per_min_last_half": round(slope, 2),
        "rss_growth_mb_per_64_requests_last_half": round(slope / 60.0 / max(rate, 1e-9) * 64, 3),
        "stuck_client_threads": r["stuck_threads"],
    }
    (args.out / "serve_soak.json").write_text(json.dumps(
        {"meta": meta, "summary": summary, "tenths": tenths, "hostile": r["hostile"], "rss": rss}, indent=1) + "\n")
    md = [
        f"`hpsedge serve` soak: {meta['model']} ({meta['variant']}, {meta['precision']}), {args.soak:.0f} s, "
        f"{args.soak_concurrency} concurrent gRPC clients on 127.0.0.1 without pause, every {args.hostile_every}th "
        f"request of a client hostile; {meta['cpu']} ({meta['cpu_count']} cores, shared with other work: 1-min load "
        f"average {meta['load_avg_mean_1min']} mean, {meta['load_avg_max_1min']} max), {args.instances} instances, "
        f"ONNX Runtime {args.threads} threads ({meta['date']}).",
        "",
        "| good requests | failed | req/s | p50 (ms) | p99 (ms) | hostile sent | refused as expected | RSS after 1 min → end (MB) | RSS growth, last half |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {summary['good_requests']} | {summary['failed_good_requests']} | {summary['throughput_rps']:.2f} | "
        f"{summary['p50_ms']} | {summary['p99_ms']} | {hostile_sent} | {hostile_ok} | "
        f"{summary['rss_mb_after_1min']:.0f} → {summary['rss_mb_end']:.0f} (max {summary['rss_mb_max']:.0f}) | "
        f"{summary['rss_growth_mb_per_min_last_half']:+.2f} MB/min ({summary['rss_growth_mb_per_64_requests_last_half']:+.3f} MB per 64 requests) |",
        "",
        "p50 / p99 (ms) per tenth of the run: " + ", ".join(f"{t['p50_ms']:.0f}/{t['p99_ms']:.0f}" for t in tenths) + ".",
        f"Server alive and ready at the end: {alive}; exit status after SIGTERM: {code}.",
        "",
    ]
    (args.out / "serve_soak.md").write_text("\n".join(md))
    print("\n".join(md))


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
    ap.add_argument("--soak", type=float, default=0.0, help="soak mode: seconds of load (0: the batching comparison)")
    ap.add_argument("--soak-concurrency", type=int, default=64)
    ap.add_argument("--hostile-every", type=int, default=8, help="soak: every n-th request of a client is hostile")
    ap.add_argument("--instances", type=int, default=4, help="soak: the server's --instances")
    ap.add_argument("--rss-every", type=float, default=5.0, help="soak: seconds between RSS samples")
    args = ap.parse_args()
    if not args.serve_python.exists():
        sys.exit(f"error: no serve virtualenv at {args.serve_python} (make serve-venv)")
    manifest = json.loads((args.folder / "manifest.json").read_text())
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    args.out.mkdir(parents=True, exist_ok=True)
    if args.soak > 0:
        if not 1 <= args.soak_concurrency <= 256 or args.soak > 6 * 3600:
            sys.exit("error: --soak-concurrency must lie in 1..256 and --soak in 0..21600 s")
        soak(args, manifest, env)
        return

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
