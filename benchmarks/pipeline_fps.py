"""Frames → tracked people per second: today's pipeline against the frame-rate shortcuts, side by side in one run.

Configurations, each adding one shortcut to the one before (cumulative), timed in interleaved rounds (one
stretch of ``--frames`` frames per configuration per round, after ``--warmup`` frames of its own):

1. **today**: the detector (FP32 at 640×640) on every frame, the float letterbox resize of before
   (``_resize_bilinear`` + float canvas, as in git history), one stage after the other, ONNX Runtime
   ``--threads`` threads for both graphs;
2. **+ integer resize**: :func:`hpsedge.runtime.detect.resize_bilinear_u8` and the table look-up letterbox;
3. **+ stages in threads**: :meth:`Pipeline.stream` (decode + detect + track | regressor | filter + SMPL,
   each in its own thread), 1 ONNX Runtime thread per graph;
4. **+ detector every k frames** (``--every``; the tracker carries the boxes, new tracks get it every frame);
5. **+ INT8 detector at a smaller input** (``--fast-size``, quantized here from ``--fast-detector``, a
   dynamic-input export, with the machinery of ``export build --detector-precision int8``);
6. **+ 2 regressor workers**: two frames regressed at once, 1 ONNX Runtime thread each (all shortcuts);
7. for reference, all the shortcuts but one stage after the other, ``--threads`` threads per graph.

The regressor is the INT8 build folder ``--folder`` (``hpsedge export build --model poco-pare --precision int8``;
ONNX Runtime CPU runs its CPU flavour), no SMPL mesh unless ``--smpl``. The frames are 1280×720 synthetic frames
with ``--people`` people walking (bright rectangles), held in memory (no video decoding). Random-weight
detectors find nobody, so the detector runs for real (its full cost: letterbox, graph, decode, NMS) and the
boxes handed on are the frame's ground truth (``GroundTruth`` below); the tracker, carrying, crops and
regressor then run as they would.

The detectors: Ultralytics exports with random weights (``pip install ultralytics``, ``YOLO_OFFLINE=1``)::

    YOLO("yolov8n.yaml").export(format="onnx", imgsz=640)                 # → --detector (fixed 640×640)
    YOLO("yolov8n.yaml").export(format="onnx", imgsz=640, dynamic=True)   # → --fast-detector

Writes ``benchmarks/results/pipeline_fps.{json,md}``: frames/s per configuration (median over rounds), its
ratio to today (median of the per-round ratios), the stage times, load average before/after, the CPU model and
the CPU time other processes took while each stretch ran (a shared machine: read the ratios).

    python benchmarks/pipeline_fps.py --folder build/poco-pare-int8 --detector yolov8n.onnx \\
        --fast-detector yolov8n-dynamic.onnx [--people 1] [--frames 24] [--rounds 3] [--every 3] [--fast-size 320]
    python benchmarks/pipeline_fps.py --letterbox-only [REPS]      # the letterbox alone, before vs now
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "tests"))

from _neighbours import Neighbours, cpu_model  # noqa: E402


def people_boxes(t: int, n: int) -> list[tuple[float, float, float, float]]:
    """n people 140×360 px walking across a 1280×720 frame, alternating directions (6 px per frame)."""
    out = []
    for i in range(n):
        x = (80 + 300 * i + (6 if i % 2 == 0 else -6) * t) % 1100
        out.append((float(x), 150.0 + 40 * i, float(x) + 140, 510.0 + 40 * i))
    return out


def old_letterbox(image: np.ndarray, input_hw: tuple[int, int], spec: Any = None) -> tuple[np.ndarray, Any]:
    """The letterbox as it was before the integer resize (float resize, float canvas, three float passes)."""
    from hpsedge.runtime.detect import Letterbox, LetterboxMeta, _resize_bilinear

    spec = spec or Letterbox()
    img = np.asarray(image)
    h, w = img.shape[:2]
    ih, iw = int(input_hw[0]), int(input_hw[1])
    r = min(ih / h, iw / w)
    nh, nw = max(1, min(ih, round(h * r))), max(1, min(iw, round(w * r)))
    top, left = (round((ih - nh) / 2 - 0.1), round((iw - nw) / 2 - 0.1)) if spec.center else (0, 0)
    canvas = np.full((ih, iw, 3), spec.pad_value, dtype=np.float32)
    canvas[top : top + nh, left : left + nw] = _resize_bilinear(img, nh, nw)
    if spec.color == "BGR":
        canvas = canvas[..., ::-1]
    x = canvas * np.float32(spec.scale)
    if any(spec.mean) or any(s != 1.0 for s in spec.std):
        x = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    tensor = np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)
    return tensor, LetterboxMeta((h, w), (ih, iw), nw / w, nh / h, left, top)


class GroundTruth:
    """Wraps a real detector: runs it in full (its cost), then hands on the frame's ground-truth boxes
    (random-weight detectors find nobody). Frames are recognised by their data pointer."""

    def __init__(self, detector: Any, truth: dict[int, np.ndarray], old_resize: bool) -> None:
        self.inner, self.truth, self.old_resize = detector, truth, old_resize
        self.config, self.backend = detector.config, detector.backend

    def __call__(self, rgb: np.ndarray) -> Any:
        from hpsedge.runtime.detect import Detections

        if self.old_resize:
            x, meta = old_letterbox(rgb, self.config.input_size, self.config.preprocess)
            self.inner.postprocess(self.inner.run({self.config.input_name: x}), meta)
        else:
            self.inner(rgb)
        boxes = self.truth[rgb.__array_interface__["data"][0]]
        return Detections(boxes.copy(), np.full(len(boxes), 0.9), np.zeros(len(boxes), np.int64))


def quantize_detector(src: Path, dst: Path, size: int, frames: list[np.ndarray]) -> Path:
    """INT8 (ONNX Runtime CPU flavour) of a dynamic-input detector, calibrated on letterboxed frames at
    ``size``, its output tail left in float — what ``export build --detector-precision int8`` does."""
    from hpsedge.calib.graph import OUTPUT_TAIL
    from hpsedge.calib.quantize import quantize_int8
    from hpsedge.runtime.detect import letterbox

    feeds = np.concatenate([letterbox(f, (size, size))[0] for f in frames])
    try:
        quantize_int8(src, dst, {"images": feeds}, flavor="ort", batch=1, exclude=[OUTPUT_TAIL])
    except ValueError:  # a constant activation on these frames: max calibration, as export build falls back
        quantize_int8(src, dst, {"images": feeds}, flavor="ort", batch=1, exclude=[OUTPUT_TAIL], method="max")
    return dst


def letterbox_only(out: Path, reps: int) -> None:
    """The letterbox alone, before (float resize + float passes) and now (integer resize + table look-up),
    interleaved, medians: 1280×720 and 1920×1080 frames to 640×640 and 320×320."""
    from hpsedge.runtime.detect import letterbox

    rng = np.random.default_rng(0)
    rows = []
    load0 = os.getloadavg()
    for hw in ((720, 1280), (1080, 1920)):
        img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        for size in (640, 320):
            t_old, t_new = [], []
            for _ in range(reps):
                for fn, acc in ((old_letterbox, t_old), (letterbox, t_new)):
                    t = time.perf_counter()
                    fn(img, (size, size))
                    acc.append((time.perf_counter() - t) * 1000)
            a, b = statistics.median(t_old), statistics.median(t_new)
            rows.append({"frame": f"{hw[1]}×{hw[0]}", "input": f"{size}×{size}", "before_ms": a, "now_ms": b, "ratio": a / b})
    load1 = os.getloadavg()
    lines = [f"Detector letterbox alone, before (float resize, float canvas) and now (integer resize, table look-up), "
             f"{reps} interleaved calls each, medians; {cpu_model()}, {os.cpu_count()} cores, load average "
             f"{load0[0]:.2f} before, {load1[0]:.2f} after ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).", "",
             "| frame | detector input | before (ms) | now (ms) | before / now |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['frame']} | {r['input']} | {r['before_ms']:.2f} | {r['now_ms']:.2f} | {r['ratio']:.1f}× |" for r in rows]
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline_fps_letterbox.json").write_text(json.dumps({"load": [load0, load1], "rows": rows}, indent=2) + "\n")
    (out / "pipeline_fps_letterbox.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    if "--letterbox-only" in sys.argv:
        i = sys.argv.index("--letterbox-only")
        out = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else RESULTS
        letterbox_only(out, int(sys.argv[i + 1]) if len(sys.argv) > i + 1 and sys.argv[i + 1].isdigit() else 30)
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, required=True, help="the regressor's build folder (poco-pare INT8)")
    ap.add_argument("--detector", type=Path, help="today's detector ONNX (YOLOv8n, fixed 640×640)")
    ap.add_argument("--fast-detector", type=Path, help="the same detector with dynamic input (quantized here)")
    ap.add_argument("--person-class", type=int, default=0)
    ap.add_argument("--fast-size", type=int, default=320)
    ap.add_argument("--every", type=int, default=3)
    ap.add_argument("--people", type=int, default=1)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ONNX Runtime threads, sequential")
    ap.add_argument("--smpl", type=Path, help="an SMPL .npz (mesh + joints per person); default: none")
    ap.add_argument("--only", help="comma-separated configuration numbers to run (1 = today; default: all)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    from detector_synth import draw_people, make_detector
    from hpsedge.runtime.pipeline import STAGES, Pipeline
    from hpsedge.runtime.tracking import SortTracker

    n_frames = args.warmup + args.frames
    frames, truth = [], {}
    for t in range(n_frames):
        gt = people_boxes(t, args.people)
        f = draw_people(720, 1280, gt, channels=[i % 2 for i in range(args.people)])
        frames.append(f)
        truth[f.__array_interface__["data"][0]] = np.asarray(gt, np.float64)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        det_path = args.detector or make_detector(Path(tmp) / "det640.onnx", "yolo", size=(640, 640))
        fast_src = args.fast_detector or make_detector(Path(tmp) / "dyn.onnx", "yolo", size=None)
        print(f"quantizing {fast_src.name} to INT8 at {args.fast_size}×{args.fast_size}", flush=True)
        fast_path = quantize_detector(fast_src, Path(tmp) / "det_int8.onnx", args.fast_size, frames[:: max(1, n_frames // 8)])
        opts = {"person_class": args.person_class}

        def make(old_resize: bool, threads: int, det: Path, size: tuple[int, int] | None, every: int) -> Pipeline:
            pipe = Pipeline.load(args.folder, smpl=args.smpl, detector=det, backend="ort", device="cpu",
                                 threads=threads, detector_threads=threads, tracker=SortTracker(min_hits=1),
                                 detect_every=every, **opts, **({"input_size": size, "layout": "yolo"} if size else {}))
            pipe.detector = GroundTruth(pipe.detector, truth, old_resize)  # type: ignore[assignment]
            return pipe

        seq = args.threads
        small = (args.fast_size, args.fast_size)
        fast = dict(old_resize=False, threads=1, det=fast_path, size=small, every=args.every)
        configs: list[tuple[str, dict[str, Any], int]] = [  # (name, pipeline, regressor workers; 0 = sequential)
            ("today: FP32 detector 640 every frame, float resize, sequential", dict(old_resize=True, threads=seq, det=det_path, size=None, every=1), 0),
            ("+ integer resize", dict(old_resize=False, threads=seq, det=det_path, size=None, every=1), 0),
            ("+ stages in threads (1 ONNX Runtime thread per graph)", dict(old_resize=False, threads=1, det=det_path, size=None, every=1), 1),
            (f"+ detector every {args.every} frames (tracker carries)", dict(old_resize=False, threads=1, det=det_path, size=None, every=args.every), 1),
            (f"+ INT8 detector at {args.fast_size}×{args.fast_size}", fast, 1),
            ("+ 2 regressor workers (all shortcuts)", fast, 2),
            (f"all shortcuts but sequential, {seq} threads per graph", {**fast, "threads": seq}, 0),
        ]
        if args.only:
            keep = sorted({int(x) for x in args.only.split(",")} | {1})  # today's is the ratios' reference
            configs = [configs[i - 1] for i in keep]
        pipes = [make(**kw) for _, kw, _ in configs]
        fps: list[list[float]] = [[] for _ in configs]
        neigh: list[list[float]] = [[] for _ in configs]
        stage_ms: list[dict[str, list[float]]] = [{s: [] for s in STAGES} for _ in configs]
        detector_share: list[list[float]] = [[] for _ in configs]
        for rnd in range(args.rounds):
            for c, ((name, _kw, workers), pipe) in enumerate(zip(configs, pipes, strict=True)):
                pipe.reset()
                it = pipe.stream(frames, threads=workers > 0, regressor_workers=max(1, workers))
                for _ in range(args.warmup):
                    next(it)
                ran = 0
                with Neighbours() as nb:
                    t0 = time.perf_counter()
                    for _, res in it:
                        ran += res.detector_ran
                        for s in STAGES:
                            stage_ms[c][s].append(res.seconds[s] * 1000)
                    wall = time.perf_counter() - t0
                fps[c].append(args.frames / wall)
                neigh[c].append(nb.fraction)
                detector_share[c].append(ran / args.frames)
                print(f"round {rnd + 1}: {name}: {fps[c][-1]:.2f} frames/s (neighbours {nb.fraction:.2f} cores)", flush=True)
        for p in pipes:
            p.close()
    load_after = os.getloadavg()
    ratios = [[f / b for f, b in zip(fps[c], fps[0], strict=True)] for c in range(len(configs))]
    rows = []
    for c, (name, kw, workers) in enumerate(configs):
        rows.append({
            "config": name, "threads_per_graph": kw["threads"], "regressor_workers": workers, "detect_every": kw["every"],
            "detector_input": list(kw["size"]) if kw["size"] else [640, 640],
            "frames_per_s": statistics.median(fps[c]), "fps_rounds": fps[c], "vs_today": statistics.median(ratios[c]),
            "detector_ran_share": statistics.median(detector_share[c]),
            "stage_ms_mean": {s: statistics.fmean(v) for s, v in stage_ms[c].items()},
            "neighbours_cores": statistics.median(neigh[c]),
        })
    env = {"cpu": cpu_model(), "cores": os.cpu_count(), "load_before": [round(v, 2) for v in load_before],
           "load_after": [round(v, 2) for v in load_after], "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "folder": str(args.folder), "detector": str(args.detector or "synthetic (tests/detector_synth.py)"),
           "fast_detector": str(args.fast_detector or "synthetic dynamic (tests/detector_synth.py)"),
           "people": args.people, "frames": args.frames, "warmup": args.warmup, "rounds": args.rounds,
           "smpl": str(args.smpl) if args.smpl else None, "sequential_threads": seq}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pipeline_fps.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2) + "\n")
    lines = [
        f"Frames → tracked people, {args.people} person(s), 1280×720 synthetic frames, regressor {Path(args.folder).name} "
        f"(ONNX Runtime CPU), detector {Path(env['detector']).name}; {args.rounds} interleaved rounds × {args.frames} frames "
        f"per configuration (after {args.warmup} warm-up), {env['date']}, {env['cpu']}, {env['cores']} cores, load average "
        f"{' '.join(f'{v:.2f}' for v in load_before)} before, {' '.join(f'{v:.2f}' for v in load_after)} after "
        "(a shared machine: the ratios come from interleaved rounds). Stage times are means per frame in ms "
        "(with threads the detector overlaps the rest, so they do not add up to the frame time).",
        "",
        "| configuration | frames/s (median) | × today | detector ran on | detector | tracking | regressor | filtering | SMPL | neighbours (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        st = r["stage_ms_mean"]
        lines.append(f"| {r['config']} | {r['frames_per_s']:.2f} | {r['vs_today']:.2f}× | {100 * r['detector_ran_share']:.0f} % | "
                     f"{st['detector']:.1f} | {st['tracking']:.2f} | {st['regressor']:.1f} | {st['filtering']:.2f} | "
                     f"{st['smpl']:.2f} | {r['neighbours_cores']:.2f} |")
    (args.out / "pipeline_fps.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
