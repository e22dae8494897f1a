"""What verifying a build folder's artifacts costs: sha256 cold and warm, and the cached warm start.

The runtime checks the sha256 of every artifact it loads (``Manifest.verified_artifact``) and remembers a
verified file by (device, inode, size, mtime_ns, ctime_ns), in the process and in a small JSON cache in the
user's cache folder. This script measures, on one build folder's graph (+ external data):

* ``cold``: sha256 with the file's pages evicted first (``posix_fadvise(DONTNEED)``: read from disk);
* ``warm``: sha256 with the file in the page cache (CPU-bound hashing);
* ``cached (process)``: ``verified_artifact`` again in the same process (a ``stat`` per file);
* ``cached (file)``: ``verified_artifact`` in a fresh process that finds the JSON cache;
* ``session``: ONNX Runtime ``InferenceSession`` creation for the same graph (context; skipped with
  ``--no-session``, e.g. for the 2.75 GB TokenHMR graph, whose session needs more memory than this machine
  can spare).

Medians of ``--reps`` runs, interleaved (warm hash, process-cache, file-cache, session in each round). Writes
``benchmarks/results/artifact_hash.{json,md}``.

    python benchmarks/artifact_hash.py --folder build/tokenhmr [--key onnx] [--reps 3] [--no-session]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
sys.path.insert(0, str(ROOT / "src"))

from hpsedge.runtime import manifest as mf  # noqa: E402


def _files(m: mf.Manifest, key: str) -> list[Path]:
    path = m.artifact_path(key)
    entry = m.artifacts[key]
    return [path] + ([path.parent / entry["data_file"]] if entry.get("data_file") else [])


def _evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _hash_all(files: list[Path]) -> float:
    t = time.perf_counter()
    for f in files:
        mf.sha256_file(f)
    return time.perf_counter() - t


def _fresh_process_verify(folder: Path, key: str, cache: Path) -> float:
    code = (
        "import sys, time; sys.path.insert(0, {!r})\n"
        "from hpsedge.runtime.manifest import load_manifest\n"
        "m = load_manifest({!r}); t = time.perf_counter(); m.verified_artifact({!r})\n"
        "print(time.perf_counter() - t)\n".format(str(ROOT / "src"), str(folder), key)
    )
    env = {**os.environ, "HPSEDGE_HASH_CACHE": str(cache)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _session_seconds(path: Path) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    t = time.perf_counter()
    ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, required=True, help="a build folder (manifest.json + graph)")
    ap.add_argument("--key", default="onnx", help="artifact key to verify (default: onnx)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-session", action="store_true", help="skip the ONNX Runtime session timing")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold (evicted) run")
    ap.add_argument("--name", default="artifact_hash", help="results file stem")
    args = ap.parse_args()

    m = mf.load_manifest(args.folder)
    files = _files(m, args.key)
    total = sum(f.stat().st_size for f in files)
    res: dict[str, object] = {
        "folder": str(args.folder), "model": m.model_name, "artifact": args.key,
        "files": [f.name for f in files], "bytes": total, "machine": platform.platform(),
        "cpus": os.cpu_count(), "load_avg_start": os.getloadavg(),
    }
    if not args.no_cold:
        for f in files:
            _evict(f)
        res["cold_s"] = _hash_all(files)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "verified.json"
        os.environ["HPSEDGE_HASH_CACHE"] = str(cache)
        t = time.perf_counter()
        m.verified_artifact(args.key)  # first verification: hashes and fills both caches
        res["first_verify_s"] = time.perf_counter() - t
        warm, proc, filec, sess = [], [], [], []
        for _ in range(args.reps):
            warm.append(_hash_all(files))
            t = time.perf_counter()
            m.verified_artifact(args.key)
            proc.append(time.perf_counter() - t)
            filec.append(_fresh_process_verify(args.folder, args.key, cache))
            if not args.no_session:
                sess.append(_session_seconds(files[0]))
    res["warm_s"] = statistics.median(warm)
    res["cached_process_s"] = statistics.median(proc)
    res["cached_file_s"] = statistics.median(filec)
    res["warm_GB_per_s"] = total / res["warm_s"] / 1e9
    if sess:
        res["session_s"] = statistics.median(sess)
        res["warm_hash_over_session"] = res["warm_s"] / res["session_s"]
    res["load_avg_end"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(res, indent=1) + "\n")
    gb = total / 1e9
    lines = [
        f"# Artifact verification cost: {m.model_name} `{args.key}` ({gb:.2f} GB in {len(files)} file(s))",
        "",
        f"Command: `python benchmarks/artifact_hash.py --folder {args.folder} --key {args.key} --reps {args.reps}"
        + (" --no-session" if args.no_session else "") + "`",
        f"Machine: {res['machine']}, {res['cpus']} CPUs, load average {res['load_avg_start'][0]:.1f} at start "
        f"(shared machine: absolute times are inflated, the ratios are what matters).",
        "",
        "| step | seconds |",
        "|---|---:|",
    ]
    if "cold_s" in res:
        lines.append(f"| sha256, cold (pages evicted, read from disk) | {res['cold_s']:.2f} |")
    lines += [
        f"| sha256, warm (page cache), median | {res['warm_s']:.2f} ({res['warm_GB_per_s']:.2f} GB/s) |",
        f"| first `verified_artifact` (hash + cache fill) | {res['first_verify_s']:.2f} |",
        f"| `verified_artifact` again, same process (stat only) | {res['cached_process_s'] * 1e3:.3f} ms |",
        f"| `verified_artifact` in a fresh process (JSON cache) | {res['cached_file_s'] * 1e3:.2f} ms |",
    ]
    if "session_s" in res:
        lines.append(f"| ONNX Runtime session creation (context) | {res['session_s']:.2f} |")
        lines.append(f"| warm hash / session creation | {res['warm_hash_over_session']:.2f} |")
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
