"""PyTorch eager vs ONNX Runtime (CPU) latency of the exported POCO networks, side by side.

For each model: export the full-size network (random weights: speed does not depend on them), then time
PyTorch eager (``torch.inference_mode``) and an ONNX Runtime CPU session on the same inputs, alternating
runner by runner within every repetition so that machine noise hits both alike. Medians are reported,
with the ratio eager/ORT. Writes ``benchmarks/results/export_latency.{json,md}``.

    python benchmarks/export_latency.py [--models poco-cliff poco-pare poco-hmr] [--batches 1 8] [--reps 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from hpsedge.export.onnx import export_onnx
from hpsedge.models.checkpoints import build_model

RESULTS = Path(__file__).parent / "results"


def _once(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["poco-cliff", "poco-pare", "poco-hmr"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            torch.manual_seed(0)
            res = export_onnx(name, Path(tmp) / name)
            model, spec, _ = build_model(name)
            # the exported graph holds the weights of the export's model; speed does not depend on values
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = args.threads
            sess = ort.InferenceSession(str(res.onnx_path), opts, providers=["CPUExecutionProvider"])
            for batch in args.batches:
                inputs = model.example_inputs(batch=batch, seed=batch)
                feeds = {n: t.numpy() for n, t in zip(spec.input_names, inputs, strict=True)}

                def run_torch(model=model, inputs=inputs) -> None:
                    with torch.inference_mode():
                        model(*inputs)

                def run_ort(sess=sess, feeds=feeds) -> None:
                    sess.run(None, feeds)

                run_torch()
                run_ort()  # warm-up
                t_torch, t_ort = [], []
                for _ in range(args.reps):  # interleaved
                    t_torch.append(_once(run_torch))
                    t_ort.append(_once(run_ort))
                row = {
                    "model": name,
                    "batch": batch,
                    "torch_eager_ms": statistics.median(t_torch),
                    "ort_cpu_ms": statistics.median(t_ort),
                    "reps": args.reps,
                }
                row["speedup"] = row["torch_eager_ms"] / row["ort_cpu_ms"]
                rows.append(row)
                print(f"{name:11s} N={batch:<3d} torch {row['torch_eager_ms']:8.1f} ms   ort {row['ort_cpu_ms']:8.1f} ms"
                      f"   ×{row['speedup']:.2f}", flush=True)
            del sess, model
    env = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": args.threads,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "export_latency.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2) + "\n")
    lines = [
        f"PyTorch eager vs ONNX Runtime CPU, median of {args.reps} interleaved runs, {args.threads} threads "
        f"(torch {env['torch']}, onnxruntime {env['onnxruntime']}, {env['cores']} cores, {env['date']})",
        "",
        "| model | batch | PyTorch eager (ms) | ONNX Runtime CPU (ms) | speed-up |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['torch_eager_ms']:.1f} | {r['ort_cpu_ms']:.1f} | ×{r['speedup']:.2f} |"
        )
    (args.out / "export_latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
