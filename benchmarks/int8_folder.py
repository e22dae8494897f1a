"""INT8 build folders on this CPU: build memory and speed against FP32, the way a user gets them.

For each model, runs the real CLI (``hpsedge export build --precision fp32`` and ``--precision int8`` with
calibration crops) under ``/usr/bin/time -v`` (peak RSS and wall time of the whole build), then loads both
folders with :class:`hpsedge.runtime.predictor.Predictor` on ONNX Runtime's CPU provider, which picks the
INT8 folder's CPU flavour by itself, and times the model (``backend.run``) at 1 and 8 people, interleaved,
medians.

Calibration crops: ``examples/astronaut.jpg`` and two synthetic images, random person boxes (seeded).

Writes ``benchmarks/results/int8_folder.{json,md}``.

    python benchmarks/int8_folder.py [--models poco-cliff poco-pare] [--reps 7] [--threads 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
PHOTO = ROOT / "examples" / "astronaut.jpg"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["poco-cliff", "poco-pare"])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--crops", type=int, default=14, help="person boxes per calibration image (3 images)")
    ap.add_argument("--keep", type=Path, help="build into this folder and keep it (default: a temporary one)")
    ap.add_argument("--reuse", action="store_true", help="reuse folders already in --keep (no builds)")
    ap.add_argument("--out", type=Path, default=RESULTS / "int8_folder")
    return ap.parse_args(argv)


def calibration_images(root: Path, per_image: int) -> tuple[Path, Path]:
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(PHOTO, folder / PHOTO.name)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:240, 0:320]
    for i in range(2):
        base = np.stack([(xx * (i + 1)) % 255, (yy * 2) % 255, (xx + yy) % 255], axis=-1)
        Image.fromarray(np.clip(base + rng.normal(0, 15, base.shape), 0, 255).astype(np.uint8)).save(folder / f"s{i}.png")
    table = {}
    for f in sorted(folder.iterdir()):
        w, h = Image.open(f).size
        boxes = []
        for _ in range(per_image):
            side = rng.uniform(0.3, 0.6) * min(w, h)
            x1, y1 = rng.uniform(0, w - 0.6 * side), rng.uniform(0, h - side)
            boxes.append([x1, y1, x1 + 0.6 * side, y1 + side])
        table[f.name] = boxes
    boxes_json = root / "boxes.json"
    boxes_json.write_text(json.dumps(table))
    return folder, boxes_json


def timed_build(model: str, precision: str, out: Path, extra: list[str]) -> dict[str, Any]:
    """Run ``hpsedge export build`` under /usr/bin/time -v; peak RSS (GB) and wall time (s)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "hpsedge.cli", "export", "build", "--model", model,
           "--precision", precision, "--out", str(out), "--force", *extra]
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"build failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    return {"command": " ".join(cmd[2:]), "peak_rss_gb": int(rss.group(1)) / 2**20 if rss else None,
            "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.load_start = os.getloadavg()
    from hpsedge.runtime.predictor import Predictor

    t0 = time.perf_counter()
    tmp = None
    root = args.keep
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="hpsedge-int8-bench-")
        root = Path(tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    images, boxes = calibration_images(root / "calib", args.crops)
    results: dict[str, Any] = {}
    for model in args.models:
        folders = {p: root / f"{model}-{p}" for p in ("fp32", "int8")}
        builds = {}
        if not args.reuse:
            builds["fp32"] = timed_build(model, "fp32", folders["fp32"], [])
            builds["int8"] = timed_build(model, "int8", folders["int8"],
                                         ["--calib-images", str(images), "--calib-boxes", str(boxes)])
        preds = {p: Predictor.load(f, backend="ort", device="cpu", threads=args.threads) for p, f in folders.items()}
        graph_files = {p: Path(getattr(pr.backend, "path", "")).name for p, pr in preds.items()}
        size = preds["fp32"].manifest.inputs[0].shape
        feeds = {b: {"image": np.random.default_rng(b).standard_normal((b, *size[1:])).astype(np.float32)}
                 | ({"bbox_info": np.zeros((b, 3), np.float32)} if len(preds["fp32"].manifest.inputs) > 1 else {})
                 for b in args.batches}
        for pr in preds.values():
            for b in args.batches:
                pr.backend.run(feeds[b])
        times: dict[str, dict[int, list[float]]] = {p: {b: [] for b in args.batches} for p in preds}
        for _ in range(args.reps):
            for b in args.batches:
                for p, pr in preds.items():
                    t = time.perf_counter()
                    pr.backend.run(feeds[b])
                    times[p][b].append((time.perf_counter() - t) * 1e3)
        med = {p: {b: float(np.median(v)) for b, v in per.items()} for p, per in times.items()}
        manifest = json.loads((folders["int8"] / "manifest.json").read_text())
        results[model] = {
            "builds": builds,
            "median_ms": {p: {str(b): v for b, v in per.items()} for p, per in med.items()},
            "speedup": {str(b): med["fp32"][b] / med["int8"][b] for b in args.batches},
            "int8_graph_on_cpu": graph_files.get("int8") or manifest["artifacts"].get("onnx_int8_cpu", {}).get("file"),
            "int8_artifacts": {k: {"file": a["file"], "qdq_flavor": a.get("qdq_flavor"), "serves": a.get("serves")}
                               for k, a in manifest["artifacts"].items() if k.startswith("onnx_int8")},
            "accuracy": manifest.get("accuracy"),
        }
        for pr in preds.values():
            pr.close()
        _write(args, results, t0)  # after each model, so a long run leaves its figures so far
    _write(args, results, t0)
    if tmp is not None:
        tmp.cleanup()
    return 0


def _cpu() -> str:
    sys.path.insert(0, str(Path(__file__).parent))
    from _neighbours import cpu_model

    return cpu_model()


def _write(args: argparse.Namespace, results: dict[str, Any], t0: float) -> None:
    out = {
        "benchmark": "int8_folder",
        "threads": args.threads,
        "reps": args.reps,
        "load_avg": os.getloadavg(),
        "load_avg_start": getattr(args, "load_start", None),
        "cpu": _cpu(),
        "models": results,
        "seconds": time.perf_counter() - t0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(out, args.batches))
    print(markdown(out, args.batches), flush=True)


def markdown(r: dict[str, Any], batches: list[int]) -> str:
    lines = [
        "# INT8 folders vs FP32 folders on this CPU (ONNX Runtime CPU provider)",
        "",
        f"{r['threads']} threads; model time (`backend.run`), medians of {r['reps']} interleaved runs; the INT8 "
        "folder is loaded like any folder and the runtime picks its CPU Q/DQ graph. Load average at the end "
        f"{', '.join(f'{x:.1f}' for x in r['load_avg'])}"
        + (f" (at the start {', '.join(f'{x:.1f}' for x in r['load_avg_start'])})" if r.get("load_avg_start") else "")
        + f", {r.get('cpu', '?')}, {os.cpu_count()} cores (shared machine: read the ratios). Random weights.",
        "",
        "| model | " + " | ".join(f"FP32 ms ×{b} | INT8 ms ×{b} | speed-up ×{b}" for b in batches)
        + " | build peak RSS FP32 / INT8 (GB) | build wall FP32 / INT8 (s) |",
        "| --- | " + " | ".join("--- | --- | ---" for _ in batches) + " | --- | --- |",
    ]
    for model, m in r["models"].items():
        cells = []
        for b in batches:
            cells.append(f"{m['median_ms']['fp32'][str(b)]:.1f} | {m['median_ms']['int8'][str(b)]:.1f} | "
                         f"**{m['speedup'][str(b)]:.2f}×**")
        bd = m["builds"]
        rss = (f"{bd['fp32']['peak_rss_gb']:.2f} / {bd['int8']['peak_rss_gb']:.2f}" if bd else "–")
        wall = (f"{bd['fp32']['wall_s']:.0f} / {bd['int8']['wall_s']:.0f}" if bd else "–")
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {rss} | {wall} |")
    lines += ["", "INT8 graphs in each folder (same calibration ranges):", ""]
    for model, m in r["models"].items():
        for k, a in m["int8_artifacts"].items():
            lines.append(f"- {model} `{k}`: {a['file']} ({a['qdq_flavor']}) serves {', '.join(a['serves'] or [])}")
    lines += ["", f"Total run time {r['seconds']:.0f} s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
