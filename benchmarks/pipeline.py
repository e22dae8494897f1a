"""Frames to tracked people: per-frame latency of the streaming Pipeline split into its stages, and frames/s.

Stages, timed inside the same loop (``Pipeline.__call__``): detector (letterbox + graph + decode + NMS; it runs on
every frame, but the people's boxes handed to the tracker are the ground truth, because the synthetic detector
finds at most one box per colour channel), tracking
(SORT), regressor (crops + graph + camera/σ postprocessing), filtering (One-Euro per track), SMPL (mesh + joints +
projection). 1280×720 frames with 1 and 4 synthetic people (bright rectangles moving across the frame), ONNX Runtime
CPU, median per stage over the frames after a warm-up. Also times the detector's decode + NMS alone on a
[1, 84, 8400] Ultralytics-layout output (the issue's ≤ 2 ms budget).

The detector: ``--detector DET.onnx`` (e.g. a YOLO11n export) or, by default, the synthetic detector graph of
the tests (tests/detector_synth.py; cheap compute — a real detector costs more, see the README). The regressor:
``--folder`` or a fresh export of ``--model`` (random weights; timing does not depend on them). Writes
``benchmarks/results/pipeline.{json,md}``.

    python benchmarks/pipeline.py [--model poco-cliff] [--detector yolo11n.onnx] [--frames 40] [--threads 2]
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


def people_boxes(k: int, n: int, t: int) -> list[tuple[float, float, float, float]]:
    """n people 140×360 px walking across a 1280×720 frame, alternating directions."""
    out = []
    for i in range(n):
        x = (80 + 300 * i + (9 if i % 2 == 0 else -9) * t) % 1100
        out.append((x, 150 + 40 * i, x + 140, 510 + 40 * i))
    return out


def decode_nms_ms(reps: int) -> dict[str, float]:
    """Decode + NMS of a YOLO [1, 84, 8400] output with ~60 candidate boxes over the threshold."""
    from hpsedge.runtime.detect import decode

    rng = np.random.default_rng(0)
    out = np.zeros((1, 84, 8400), np.float32)
    out[0, 0] = rng.uniform(0, 640, 8400)
    out[0, 1] = rng.uniform(0, 640, 8400)
    out[0, 2:4] = rng.uniform(20, 200, (2, 8400))
    out[0, 4:] = rng.uniform(0, 0.2, (80, 8400))
    hot = rng.choice(8400, 60, replace=False)
    out[0, 4, hot] = rng.uniform(0.3, 0.95, 60)  # people, overlapping clusters
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        decode({"output0": out}, "yolo", 0, 0.25, 0.45)
        times.append((time.perf_counter() - t) * 1000)
    times_all = []
    for _ in range(reps):
        t = time.perf_counter()
        decode({"output0": out}, "yolo", 0, 0.25, 0.45, all_classes=True)
        times_all.append((time.perf_counter() - t) * 1000)
    return {"person_only_ms": statistics.median(times), "all_classes_ms": statistics.median(times_all)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="poco-cliff")
    ap.add_argument("--folder", type=Path, help="an existing export folder (skips the export)")
    ap.add_argument("--detector", type=Path, help="a detector ONNX (default: the synthetic test detector, 640×640)")
    ap.add_argument("--also-detector", type=Path,
                    help="a second detector ONNX timed on the same frames in the same loop (e.g. a random-weight "
                         "YOLO11n export, which finds nobody: its cost is real, its boxes are not)")
    ap.add_argument("--also-person-class", type=int, default=None, help="person class of --also-detector")
    ap.add_argument("--people", nargs="+", type=int, default=[1, 4])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--tiny", action="store_true", help="tiny model config (smoke test only)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    from hpsedge.runtime.pipeline import STAGES, Pipeline
    from hpsedge.runtime.tracking import SortTracker

    sys.path.insert(0, str(ROOT / "tests"))
    from detector_synth import draw_people, make_detector
    from smpl_synth import write_synthetic_smpl

    nms = decode_nms_ms(200)
    print(f"decode + NMS, [1,84,8400]: person class {nms['person_only_ms']:.2f} ms, all classes "
          f"{nms['all_classes_ms']:.2f} ms", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder
        if folder is None:
            from hpsedge.export.onnx import export_onnx

            folder = export_onnx(args.model, Path(tmp) / args.model, tiny=args.tiny).out_dir
        det = args.detector or make_detector(Path(tmp) / "det.onnx", "yolo", size=(640, 640))
        smpl_path = write_synthetic_smpl(Path(tmp) / "smpl", style="npz")
        rows = []
        extra = None
        if args.also_detector is not None:
            from hpsedge.runtime.detect import Detector

            extra = Detector.load(args.also_detector, device="cpu", threads=args.threads,
                                  person_class=args.also_person_class)
        for n in args.people:
            pipe = Pipeline.load(folder, smpl=smpl_path, detector=det, backend="ort", device="cpu",
                                 threads=args.threads, tracker=SortTracker(min_hits=1))
            per_stage: dict[str, list[float]] = {s: [] for s in STAGES}
            totals, found, extra_ms = [], [], []
            for t in range(args.warmup + args.frames):
                gt = people_boxes(t, n, t)
                frame = draw_people(720, 1280, gt, channels=[i % 2 for i in range(n)])
                # the detector runs on every frame (timed as the detector stage), but the synthetic detector finds
                # one box per colour channel, so the people's boxes come from the ground truth (with its scores)
                t0 = time.perf_counter()
                found_det = pipe.detector(frame)
                t_det = time.perf_counter() - t0
                res = pipe(frame, boxes=np.asarray(gt), scores=np.full(n, 0.9))
                res.seconds["detector"] = t_det
                dt = (time.perf_counter() - t0) * 1000
                del found_det
                if extra is not None:
                    t1 = time.perf_counter()
                    extra(frame)
                    if t >= args.warmup:
                        extra_ms.append((time.perf_counter() - t1) * 1000)
                if t >= args.warmup:
                    totals.append(dt)
                    found.append(len(res.people))
                    for s in STAGES:
                        per_stage[s].append(res.seconds[s] * 1000)
            row = {"people": n, "people_found_median": statistics.median(found),
                   **{f"{s}_ms": statistics.median(v) for s, v in per_stage.items()},
                   "total_ms": statistics.median(totals), "fps": 1000.0 / statistics.median(totals)}
            if extra_ms:
                row["also_detector_ms"] = statistics.median(extra_ms)
                with_it = [tot - d + e for tot, d, e in zip(totals, per_stage["detector"], extra_ms, strict=True)]
                row["total_with_also_detector_ms"] = statistics.median(with_it)
                row["fps_with_also_detector"] = 1000.0 / statistics.median(with_it)
            rows.append(row)
            print(f"{n} people: " + ", ".join(f"{s} {row[f'{s}_ms']:.1f}" for s in STAGES)
                  + f" | total {row['total_ms']:.1f} ms = {row['fps']:.1f} frames/s", flush=True)
            model = pipe.predictor.manifest.model_name
            variant = pipe.predictor.manifest.raw["model"].get("variant")
            det_cfg = pipe.detector.config
            pipe.close()
    env = {"model": model, "variant": variant, "backend": "onnxruntime CPU", "threads": args.threads,
           "cores": os.cpu_count(), "cpu": platform.machine(), "frames": args.frames, "warmup": args.warmup,
           "detector": args.detector.name if args.detector else "synthetic test detector (tests/detector_synth.py)",
           "also_detector": args.also_detector.name if args.also_detector else None,
           "detector_input": list(det_cfg.input_size), "date": time.strftime("%Y-%m-%d"),
           "load": os.getloadavg()[0], "smpl": "synthetic SMPL (6890 vertices, 10 betas)"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pipeline.json").write_text(json.dumps({"env": env, "decode_nms": nms, "rows": rows}, indent=2) + "\n")
    lines = [
        f"Pipeline per frame, {env['model']} ({env['variant']}), detector: {env['detector']} at "
        f"{env['detector_input'][1]}×{env['detector_input'][0]}, ONNX Runtime CPU, {args.threads} threads, 1280×720 "
        f"frames, median of {args.frames} frames after {args.warmup} warm-up ({env['date']}, load average "
        f"{env['load']:.1f} on {env['cores']} cores: shared machine)",
        "",
        "| people | detector (ms) | tracking (ms) | regressor (ms) | filtering (ms) | SMPL (ms) | total (ms) | frames/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['people']} | {r['detector_ms']:.1f} | {r['tracking_ms']:.2f} | {r['regressor_ms']:.1f} | "
                     f"{r['filtering_ms']:.1f} | {r['smpl_ms']:.1f} | {r['total_ms']:.1f} | {r['fps']:.2f} |")
    if any("also_detector_ms" in r for r in rows):
        lines += ["", f"With {env['also_detector']} as the detector (timed on the same frames in the same loop; its "
                  "detector stage replaces the synthetic one):", "",
                  "| people | detector (ms) | total (ms) | frames/s |", "|---:|---:|---:|---:|"]
        lines += [f"| {r['people']} | {r['also_detector_ms']:.1f} | {r['total_with_also_detector_ms']:.1f} | "
                  f"{r['fps_with_also_detector']:.2f} |" for r in rows if "also_detector_ms" in r]
    lines += ["", f"Detector decode + NMS alone on a [1, 84, 8400] output (Ultralytics layout, 60 candidates): "
              f"{nms['person_only_ms']:.2f} ms (person class), {nms['all_classes_ms']:.2f} ms (all 80 classes)."]
    (args.out / "pipeline.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
