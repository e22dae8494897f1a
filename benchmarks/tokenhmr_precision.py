"""Full-size TokenHMR on ONNX Runtime CPU: FP32 vs FP16 vs each INT8 flavour, at 1 and 4 people.

Takes graphs already built (``hpsedge export build`` folders, or files written by
:func:`hpsedge.calib.quantize.quantize_int8_flavors`) and measures, side by side in one process:

* latency: every graph at every batch size, interleaved repetition by repetition (a, b, c, a, b, c, ...),
  median and ratio against FP32;
* file size (graph + external data);
* drift against FP32 on the same crops (calibration crops held out from calibration when ``--calib`` is
  given, else seeded random inputs): pose geodesic error (°), betas/camera |Δ|, token-confidence |Δ|;
* optionally the peak RSS of the builds, parsed from ``/usr/bin/time -v`` logs (``--rss LABEL=LOG``).

Writes ``benchmarks/results/tokenhmr_precision.{json,md}``.

    python benchmarks/tokenhmr_precision.py --fp32 build/th-fp32/model.onnx \\
        --graph fp16=build/th-fp16/model.fp16.onnx --graph int8-trt=build/th-int8/trt.onnx ... \\
        [--calib build/th-calib16.npz] [--batches 1 4] [--reps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from hpsedge.calib.report import compare_outputs
from hpsedge.runtime.compare import output_errors

RESULTS = Path(__file__).parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fp32", type=Path, required=True, help="the FP32 model.onnx (reference)")
    ap.add_argument("--graph", action="append", default=[], help="LABEL=PATH of a graph to compare (repeatable)")
    ap.add_argument("--calib", type=Path, help="calibration .npz: drift on its crops (else random inputs)")
    ap.add_argument("--drift-samples", type=int, default=8)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rss", action="append", default=[], help="LABEL=LOG: peak RSS from a /usr/bin/time -v log")
    ap.add_argument("--note", default="", help="free text for the markdown (load, how the graphs were made)")
    ap.add_argument("--out", type=Path, default=RESULTS / "tokenhmr_precision")
    return ap.parse_args(argv)


def session(path: Path, threads: int) -> Any:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def size_bytes(path: Path) -> int:
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def peak_rss_gb(log: Path) -> dict[str, float | None]:
    text = log.read_text(errors="replace")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    secs = None
    if wall:
        parts = [float(x) for x in wall.group(1).split(":")]
        secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    return {"peak_rss_gb": int(rss.group(1)) / 2**20 if rss else None, "wall_s": secs}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    graphs = {"fp32": args.fp32}
    for g in args.graph:
        label, path = g.split("=", 1)
        graphs[label] = Path(path)
    sessions = {k: session(p, args.threads) for k, p in graphs.items()}
    names = [o.name for o in sessions["fp32"].get_outputs()]

    # drift on crops
    if args.calib:
        data = np.load(args.calib)["image"]
        crops = data[-args.drift_samples :]
        source = f"last {len(crops)} crops of {args.calib.name}"
    else:
        crops = np.random.default_rng(0).standard_normal((args.drift_samples, 3, 256, 192)).astype(np.float32)
        source = f"{len(crops)} seeded random inputs"
    ref = {k: np.concatenate([sessions["fp32"].run([k], {"image": crops[i : i + 1]})[0] for i in range(len(crops))])
           for k in names}
    drift: dict[str, Any] = {}
    for label, sess in sessions.items():
        if label == "fp32":
            continue
        got = {k: np.concatenate([sess.run([k], {"image": crops[i : i + 1]})[0] for i in range(len(crops))])
               for k in names}
        fig = compare_outputs(ref, got, family="tokenhmr")
        fig["outputs"] = output_errors(ref, got)
        drift[label] = fig

    # latency, interleaved
    feeds = {b: {"image": np.ascontiguousarray(np.resize(crops, (b, *crops.shape[1:])))} for b in args.batches}
    for sess in sessions.values():
        for b in args.batches:
            sess.run(None, feeds[b])  # warm-up
    times: dict[str, dict[int, list[float]]] = {k: {b: [] for b in args.batches} for k in sessions}
    for _ in range(args.reps):
        for b in args.batches:
            for label, sess in sessions.items():
                t = time.perf_counter()
                sess.run(None, feeds[b])
                times[label][b].append((time.perf_counter() - t) * 1e3)
    med = {k: {b: float(np.median(v)) for b, v in per.items()} for k, per in times.items()}
    rss = {}
    for r in args.rss:
        label, log = r.split("=", 1)
        rss[label] = peak_rss_gb(Path(log))

    rows = []
    for label, path in graphs.items():
        row: dict[str, Any] = {"graph": label, "file": str(path), "mb": size_bytes(path) / 1e6}
        for b in args.batches:
            row[f"ms_b{b}"] = med[label][b]
            row[f"speedup_b{b}"] = med["fp32"][b] / med[label][b]
        if label in drift:
            f = drift[label]
            row.update(pose_deg_mean=f["pose_deg"]["mean"], pose_deg_p95=f["pose_deg"]["p95"],
                       pose_deg_max=f["pose_deg"]["max"], worst_joint_deg=f["pose_deg"]["worst_joint_mean"],
                       betas_abs_max=f.get("betas", {}).get("max"), cam_abs_max=f.get("cam", {}).get("max"),
                       token_conf_abs_max=f.get("token_confidence", {}).get("max"))
        rows.append(row)
    result = {
        "benchmark": "tokenhmr_precision",
        "onnxruntime": ort.__version__,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "reps": args.reps,
        "drift_inputs": source,
        "rows": rows,
        "times_ms": {k: {str(b): v for b, v in per.items()} for k, per in times.items()},
        "build_rss": rss,
        "drift": drift,
        "note": args.note,
        "seconds": time.perf_counter() - t_start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result, args.batches))
    print(markdown(result, args.batches))
    return 0


def _f(v: Any, nd: int = 3) -> str:
    return "–" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def markdown(r: dict[str, Any], batches: list[int]) -> str:
    lines = [
        "# TokenHMR (full size, ViT-H) on ONNX Runtime CPU: FP32 vs FP16 vs INT8 flavours",
        "",
        f"ONNX Runtime {r['onnxruntime']}, CPU provider, {r['threads']} threads on {r['cores']} cores; medians of "
        f"{r['reps']} interleaved runs; load average at the end {', '.join(f'{x:.1f}' for x in r['load_avg'])} "
        "(shared machine: read the ratios). Random weights: drift figures show the numerics, not a trained "
        f"model's loss. Drift inputs: {r['drift_inputs']}.",
        "",
        "| graph | MB | " + " | ".join(f"ms ×{b} (vs fp32)" for b in batches)
        + " | pose ° mean | pose ° p95 | worst joint ° | token conf. max abs Δ | betas max abs Δ |",
        "| --- | --- | " + " | ".join("---" for _ in batches) + " | --- | --- | --- | --- | --- |",
    ]
    for row in r["rows"]:
        lat = " | ".join(f"{row[f'ms_b{b}']:.0f} ({row[f'speedup_b{b}']:.2f}×)" for b in batches)
        lines.append(f"| {row['graph']} | {row['mb']:.0f} | {lat} | {_f(row.get('pose_deg_mean'))} | "
                     f"{_f(row.get('pose_deg_p95'))} | {_f(row.get('worst_joint_deg'))} | "
                     f"{_f(row.get('token_conf_abs_max'), 5)} | {_f(row.get('betas_abs_max'), 4)} |")
    if r["build_rss"]:
        lines += ["", "| build | peak RSS (GB) | wall (s) |", "| --- | --- | --- |"]
        for label, v in r["build_rss"].items():
            lines.append(f"| {label} | {_f(v['peak_rss_gb'], 2)} | {_f(v['wall_s'], 0)} |")
    if r.get("note"):
        lines += ["", r["note"]]
    lines += ["", f"Total run time {r['seconds']:.0f} s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
