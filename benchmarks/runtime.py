"""Where the runtime's time goes: preprocessing, the model, postprocessing (with SMPL), per person batch.

Exports a full-size model (random weights; timing does not depend on them) unless ``--folder`` is given,
builds a synthetic SMPL file in the official layout (tests/smpl_synth.py), and times
``Predictor.predict`` split into its three stages on a 1280×720 frame with K people, median of repeated
runs. Writes ``benchmarks/results/runtime.{json,md}``.

    python benchmarks/runtime.py [--model poco-cliff] [--batches 1 4 8 16] [--reps 9] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


def _ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="poco-cliff")
    ap.add_argument("--folder", type=Path, help="an existing export folder (skips the export)")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 4, 8, 16])
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    from hpsedge.runtime.predictor import Predictor
    from hpsedge.runtime.preprocess import preprocess

    sys.path.insert(0, str(ROOT / "tests"))
    from smpl_synth import write_j_regressor_extra, write_synthetic_smpl

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder
        if folder is None:
            from hpsedge.export.onnx import export_onnx

            folder = export_onnx(args.model, Path(tmp) / args.model).out_dir
        smpl_path = write_synthetic_smpl(Path(tmp) / "smpl", style="npz")
        extra = write_j_regressor_extra(Path(tmp) / "J_regressor_extra.npy")
        pred = Predictor.load(folder, backend="ort", device="cpu", threads=args.threads, smpl=smpl_path,
                              j_regressor_extra=extra)
        rng = np.random.default_rng(0)
        image = (rng.random((720, 1280, 3)) * 255).astype(np.uint8)
        rows = []
        for k in args.batches:
            x1 = rng.uniform(0, 1000, k)
            y1 = rng.uniform(0, 300, k)
            boxes = np.stack([x1, y1, x1 + rng.uniform(120, 270, k), y1 + rng.uniform(250, 410, k)], axis=1)
            feeds, meta = preprocess(image, boxes, pred.preprocessing)
            outputs = pred.run_batched(feeds)
            pre = _ms(lambda boxes=boxes: preprocess(image, boxes, pred.preprocessing), args.reps)
            model = _ms(lambda feeds=feeds: pred.run_batched(feeds), args.reps)
            post = _ms(lambda o=outputs, m=meta, b=boxes: pred.postprocess(o, m, b), args.reps)
            total = _ms(lambda boxes=boxes: pred.predict(image, boxes), args.reps)
            row = {"batch": k, "pre_ms": pre, "model_ms": model, "post_ms": post, "total_ms": total,
                   "per_person_ms": total / k}
            rows.append(row)
            print(f"K={k:<3d} pre {pre:7.1f}  model {model:8.1f}  post {post:7.1f}  total {total:8.1f} ms", flush=True)
        manifest = pred.manifest
    env = {"model": manifest.model_name, "variant": manifest.raw["model"].get("variant"), "backend": "onnxruntime CPU",
           "threads": args.threads, "cores": os.cpu_count(), "cpu": platform.machine(), "reps": args.reps,
           "date": time.strftime("%Y-%m-%d"), "smpl": "synthetic SMPL (6890 vertices, 10 betas), vertices + 49 joints"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runtime.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2) + "\n")
    lines = [
        f"Predictor stages, {env['model']} ({env['variant']}), ONNX Runtime CPU, {args.threads} threads, 1280×720 frame, "
        f"median of {args.reps} ({env['date']}); post = camera, σ→confidence, SMPL vertices + joints, 2D projection",
        "",
        "| people K | preprocess (ms) | model (ms) | postprocess (ms) | total (ms) | per person (ms) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['batch']} | {r['pre_ms']:.1f} | {r['model_ms']:.1f} | {r['post_ms']:.1f} | "
                     f"{r['total_ms']:.1f} | {r['per_person_ms']:.1f} |")
    (args.out / "runtime.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
