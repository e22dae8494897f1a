"""``hpsedge bench``: speed of precisions × backends × batch sizes, stage by stage, side by side.

Targets are build folders (``DIR`` runs the folder's own precision graph, ``DIR@fp32`` another graph of it) or
a zoo model (``--model NAME``), whose folders ``BUILDS/NAME-<precision>`` are built with
:func:`hpsedge.export.build.export_build` when missing (INT8 calibrated on synthetic images unless
``--calib-images`` is given). Every target × backend is loaded once through the runtime's
:class:`~hpsedge.runtime.predictor.Predictor`; then all (target, backend, batch) combinations are timed
**interleaved** (one call of each per round, ``warmup`` rounds dropped), so machine noise hits all alike.

One call is the Predictor's own pipeline on one frame with ``batch`` person boxes, timed stage by stage on one
clock: preprocess (crop + normalise), model (the backend, split into engine-sized chunks), SMPL (the numpy body
model inside postprocessing, when ``--smpl`` is given) and postprocess (the rest: rotations, camera, confidence,
2D projection, results). A call's total is the sum of its stages, so every median total is at least every median
stage. Reported: medians and interquartile range per stage and total, ms per call, ms per person, people per
second, the graph file that ran and its size, and the accuracy figures of the folder's build report. A backend
that cannot run here (TensorRT without a GPU) gives a row marked absent with the reason, never a number.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import HpsedgeError, InputError
from hpsedge.eval.val import _graph_file, parse_target
from hpsedge.runtime.files import atomic_write
from hpsedge.runtime.folder import BuildFolder, Precision

log = logging.getLogger(__name__)

__all__ = ["STAGES", "BenchConfig", "run_bench"]

STAGES = ("preprocess", "model", "smpl", "postprocess")
BACKENDS = ("ort", "trt")
OUR_FILES = ("bench.json", "bench.md", "bench.png")


@dataclass
class BenchConfig:
    """What ``hpsedge bench`` takes (CLI flags map one to one)."""

    out: Path
    folders: Sequence[str | Path] = ()
    model: str | None = None
    precisions: Sequence[str] = Precision.names()
    backends: Sequence[str] = BACKENDS
    batches: Sequence[int] = (1, 8, 16)
    builds: Path | None = None  #: where --model folders live / are built (default OUT/builds)
    smpl: Path | None = None
    image: Path | None = None  #: frame to crop people from (default: a synthetic 1280×720 frame)
    reps: int = 7
    warmup: int = 1
    device: str = "auto"
    threads: int | None = None
    checkpoint: Path | None = None
    calib_images: Path | None = None
    calib_boxes: Path | None = None
    calib_samples: int = 32
    tiny: bool = False
    force: bool = False
    note: str | None = None  #: free text for the report (e.g. the machine's load)
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Target:
    label: str
    folder: Path
    precision: str
    built: bool = False


class _TimedSMPL:
    """Wraps the Predictor's SMPL model and accumulates the time spent in ``forward``."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.seconds = 0.0

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return self._model.forward(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t

    __call__ = forward

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def _check(cfg: BenchConfig) -> None:
    if not cfg.folders and not cfg.model:
        raise InputError("give build folders or --model NAME")
    cfg.precisions = [Precision.parse(p, "--precisions").value for p in cfg.precisions]
    bad = [b for b in cfg.backends if b not in BACKENDS]
    if bad:
        raise InputError(f"unknown backend(s) {', '.join(bad)} (choose from {', '.join(BACKENDS)})")
    if not cfg.batches or any(int(b) < 1 for b in cfg.batches):
        raise InputError("--batch takes positive batch sizes, e.g. 1,8,16")
    if cfg.reps < 1 or cfg.warmup < 0:
        raise InputError("--reps must be ≥ 1 and --warmup ≥ 0")
    if cfg.out.exists() and not cfg.out.is_dir():
        raise InputError(f"{cfg.out} exists and is not a folder")
    existing = [n for n in OUR_FILES if (cfg.out / n).exists()]
    if existing and not cfg.force:
        raise InputError(f"{cfg.out} already holds {', '.join(existing)}; not overwriting them",
                         hint="pass --force, or choose another --out")


def _synthetic_images(folder: Path, seed: int) -> tuple[Path, Path]:
    """A few image-like synthetic pictures with random person boxes (for INT8 calibration without data)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:360, 0:480]
    table = {}
    for i in range(4):
        base = np.stack([(xx * (i + 1) / 8) % 255, (yy * (i + 2) / 6) % 255, (xx + yy) / 4 % 255], axis=-1)
        img = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"synthetic_{i}.png")
        boxes = []
        for _ in range(12):
            side = rng.uniform(0.3, 0.7) * 360
            x1, y1 = rng.uniform(0, 480 - side * 0.6), rng.uniform(0, 360 - side)
            boxes.append([x1, y1, x1 + side * 0.6, y1 + side])
        table[f"synthetic_{i}.png"] = boxes
    boxes_path = folder.parent / f"{folder.name}-boxes.json"
    boxes_path.write_text(json.dumps(table), encoding="utf-8")
    return folder, boxes_path


def _build_missing(cfg: BenchConfig, progress: Callable[[str], None]) -> list[_Target]:
    """``--model``: each precision's folder under BUILDS, built when it is not there yet."""
    from hpsedge.runtime.manifest import MANIFEST_NAME

    builds = cfg.builds or cfg.out / "builds"
    targets = []
    for p in cfg.precisions:
        folder = builds / f"{cfg.model}-{p}"
        built = False
        if not (folder / MANIFEST_NAME).is_file():
            from hpsedge.export.build import BuildConfig, export_build

            calib_images, calib_boxes = cfg.calib_images, cfg.calib_boxes
            if p == "int8" and calib_images is None:
                calib_images, calib_boxes = _synthetic_images(builds / "calib-images", cfg.seed)
            progress(f"building {folder.name}")
            export_build(
                BuildConfig(
                    model=str(cfg.model), out=folder, checkpoint=cfg.checkpoint, precision=p,
                    calib_images=calib_images if p == "int8" else None,
                    calib_boxes=calib_boxes if p == "int8" else None,
                    calib_max_samples=cfg.calib_samples, tiny=cfg.tiny,
                ),
                progress=lambda msg, name=folder.name: progress(f"building {name}: {msg}"),
            )
            built = True
        targets.append(_Target(folder.name, folder, p, built))
    return targets


def _folder_targets(cfg: BenchConfig) -> list[_Target]:
    targets = []
    for spec in cfg.folders:
        folder, prec = parse_target(spec)
        if prec is None:
            prec = BuildFolder.open(folder).precision.value
        label = folder.name if folder.name.endswith(prec) else f"{folder.name}@{prec}"
        targets.append(_Target(label, folder, prec))
    return targets


def _frame(cfg: BenchConfig) -> np.ndarray:
    if cfg.image is not None:
        from hpsedge.runtime.io import read_image

        return read_image(cfg.image)
    rng = np.random.default_rng(cfg.seed)
    yy, xx = np.mgrid[0:720, 0:1280]
    base = np.stack([(xx / 5) % 255, (yy / 3) % 255, (xx + yy) / 8 % 255], axis=-1)
    return np.clip(base + rng.normal(0, 15, base.shape), 0, 255).astype(np.uint8)


def _boxes(image_hw: tuple[int, int], n: int, seed: int) -> np.ndarray:
    h, w = image_hw
    rng = np.random.default_rng(seed + n)
    side = rng.uniform(0.25, 0.6, n) * h
    x1 = rng.uniform(0, w - 0.5 * side)
    y1 = rng.uniform(0, h - side)
    return np.stack([x1, y1, np.minimum(w, x1 + 0.5 * side), np.minimum(h, y1 + side)], axis=1)


def timed_predict(pred: Any, image: np.ndarray, boxes: np.ndarray) -> tuple[list[Any], dict[str, float]]:
    """``Predictor.predict`` split into its stages on one clock: ({stage: ms, "total": ms})."""
    from hpsedge.runtime.predictor import antialias_crops
    from hpsedge.runtime.preprocess import preprocess

    smpl = pred.smpl if isinstance(pred.smpl, _TimedSMPL) else None
    if smpl is not None:
        smpl.seconds = 0.0
    t0 = time.perf_counter()
    feeds, meta = preprocess(image, boxes, pred.preprocessing)
    antialias_crops(image, feeds, meta, pred.preprocessing)
    t1 = time.perf_counter()
    outputs = pred.run_batched(feeds)
    t2 = time.perf_counter()
    people = pred.postprocess(outputs, meta, boxes)
    t3 = time.perf_counter()
    s = smpl.seconds if smpl is not None else 0.0
    ms = {
        "preprocess": (t1 - t0) * 1e3,
        "model": (t2 - t1) * 1e3,
        "smpl": s * 1e3,
        "postprocess": (t3 - t2 - s) * 1e3,
        "total": (t3 - t0) * 1e3,
    }
    return people, ms


def middle_calls(totals: np.ndarray) -> np.ndarray:
    """Indices of the middle half of the calls ranked by total time (at least one: the median call).

    The table averages every stage and the total over the *same* calls, so the stages add up to the total
    exactly (a median per stage would not: medians do not add), while the slowest and fastest quarter of the
    calls (other jobs on the machine, cache effects) are left out.
    """
    n = len(totals)
    order = np.argsort(totals, kind="mergesort")
    drop = n // 4
    return order[drop : n - drop] if n - 2 * drop > 0 else order[n // 2 : n // 2 + 1]


def _file_bytes(folder: Path, graph: str) -> int:
    p = folder / graph
    size = p.stat().st_size if p.is_file() else 0
    data = folder / f"{graph}.data"
    return size + (data.stat().st_size if data.is_file() else 0)


def _accuracy(manifest: dict[str, Any], precision: str) -> dict[str, Any] | None:
    acc = manifest.get("accuracy")
    if not isinstance(acc, dict) or acc.get("precision") != precision:
        return None
    keep = ("persons", "pose_deg_mean", "pose_deg_p95", "sigma_rank_corr", "mpjpe_mm", "token_agreement", "passed")
    return {k: acc[k] for k in keep if k in acc}


def _env(cfg: BenchConfig) -> dict[str, Any]:
    import numpy

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": cfg.threads,
        "reps": cfg.reps,
        "warmup": cfg.warmup,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover - the ort extra is missing
        env["onnxruntime"] = None
    if cfg.note:
        env["note"] = cfg.note
    return env


def _trt_missing() -> str | None:
    """Why TensorRT cannot run on this machine, or None when it can (the runtime's own probe)."""
    from hpsedge.runtime.predictor import _engine_probe

    available, _cc, version, _name = _engine_probe()
    if available.get("trt"):
        return None
    if version is None:
        return "TensorRT is not usable here (no tensorrt + cuda-python, or no GPU)"
    return f"TensorRT {version} is installed but no GPU is usable"


def run_bench(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build what is missing, time every combination interleaved, write bench.{json,md,png} into ``cfg.out``."""
    from hpsedge.runtime.predictor import Predictor

    step = progress or (lambda _msg: None)
    _check(cfg)
    t_start = time.perf_counter()
    targets = _folder_targets(cfg) if cfg.folders else []
    if cfg.model:
        targets += _build_missing(cfg, step)
    smpl = None
    if cfg.smpl is not None:
        from hpsedge.runtime.smpl import SMPL

        smpl = SMPL.load(cfg.smpl)
    image = _frame(cfg)
    hw = (int(image.shape[0]), int(image.shape[1]))
    boxes = {int(b): _boxes(hw, int(b), cfg.seed) for b in cfg.batches}

    loaded: list[dict[str, Any]] = []
    absent: list[dict[str, Any]] = []
    trt_missing = _trt_missing() if "trt" in cfg.backends else None
    for t in targets:
        for backend in cfg.backends:
            if backend == "trt" and trt_missing:
                absent.append({"target": t.label, "precision": t.precision, "backend": backend, "reason": trt_missing})
                continue
            if backend == "trt":
                try:  # the folder's owner says whether an engine of this precision is there
                    BuildFolder.open(t.folder).select("trt", precision=t.precision, verify=False)
                except HpsedgeError as exc:
                    absent.append({"target": t.label, "precision": t.precision, "backend": backend,
                                   "reason": exc.message})
                    continue
            step(f"loading {t.label} on {backend}")
            device = cfg.device if backend == "ort" else ("0" if cfg.device in ("auto", "cpu", "cuda") else cfg.device)
            try:
                pred = Predictor.load(t.folder, backend=backend, device=device, smpl=smpl, threads=cfg.threads,
                                      precision=t.precision)
            except HpsedgeError as exc:
                if backend == "ort":
                    raise
                absent.append({"target": t.label, "precision": t.precision, "backend": backend,
                               "reason": exc.message})
                continue
            except (ImportError, OSError, RuntimeError) as exc:  # TensorRT / CUDA missing or unusable here
                if backend == "ort":
                    raise
                absent.append({"target": t.label, "precision": t.precision, "backend": backend,
                               "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"})
                continue
            if pred.smpl is not None:
                pred.smpl = _TimedSMPL(pred.smpl)
            graph = _graph_file(pred)
            loaded.append({"target": t, "backend": backend, "pred": pred, "graph": graph,
                           "device": pred.backend.device})

    combos = [(i, int(b)) for i in range(len(loaded)) for b in cfg.batches]
    times: dict[tuple[int, int], list[dict[str, float]]] = {c: [] for c in combos}
    rounds = cfg.warmup + cfg.reps
    load_before = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    try:
        for r in range(rounds):
            step(f"round {r + 1}/{rounds}" + (" (warm-up)" if r < cfg.warmup else ""))
            for i, b in combos:
                _, ms = timed_predict(loaded[i]["pred"], image, boxes[b])
                if r >= cfg.warmup:
                    times[(i, b)].append(ms)
    finally:
        for entry in loaded:
            entry["pred"].close()

    rows = []
    for i, b in combos:
        entry = loaded[i]
        t: _Target = entry["target"]
        series = {k: np.array([m[k] for m in times[(i, b)]]) for k in (*STAGES, "total")}
        mid = middle_calls(series["total"])
        ms = {k: float(v[mid].mean()) for k, v in series.items()}
        med = {k: float(np.median(v)) for k, v in series.items()}
        iqr = {k: [float(np.percentile(v, 25)), float(np.percentile(v, 75))] for k, v in series.items()}
        manifest = entry["pred"].manifest.raw
        rows.append({
            "target": t.label,
            "model": entry["pred"].manifest.model_name,
            "precision": t.precision,
            "backend": entry["backend"],
            "device": entry["device"],
            "graph": entry["graph"],
            "bytes": _file_bytes(t.folder, entry["graph"]),
            "batch": b,
            "ms": ms,
            "median_ms": med,
            "iqr_ms": iqr,
            "calls": len(series["total"]),
            "ms_per_person": ms["total"] / b,
            "people_per_s": 1000.0 * b / ms["total"] if ms["total"] > 0 else None,
            "smpl": smpl is not None,
            "accuracy": _accuracy(manifest, t.precision),
            "built_now": t.built,
        })
    env = _env(cfg)
    if load_before is not None:  # around the timed rounds (the builds come before)
        env["load_before"] = load_before
        env["load_after"] = [round(v, 2) for v in os.getloadavg()]
    env["image_hw"] = list(hw)
    env["seconds"] = round(time.perf_counter() - t_start, 1)
    doc = {"command": "bench", "env": env, "rows": rows, "absent": absent,
           "stages": list(STAGES), "batches": [int(b) for b in cfg.batches]}
    _write(cfg, doc)
    return doc


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f}" if n >= 1e7 else f"{n / 1e6:.1f}"


def _acc_cell(acc: dict[str, Any] | None) -> str:
    if not acc:
        return "–"
    parts = []
    if acc.get("pose_deg_mean") is not None:
        parts.append(f"pose Δ {acc['pose_deg_mean']:.3f}°")
    if acc.get("mpjpe_mm") is not None:
        parts.append(f"MPJPE Δ {acc['mpjpe_mm']:.2f} mm")
    if acc.get("sigma_rank_corr") is not None:
        parts.append(f"σ ρ {acc['sigma_rank_corr']:.3f}")
    if acc.get("token_agreement") is not None:
        parts.append(f"tokens {acc['token_agreement']:.3f}")
    if acc.get("passed") is False:
        parts.append("over the build's thresholds")
    return ", ".join(parts) or "–"


def markdown(doc: dict[str, Any]) -> str:
    env = doc["env"]
    rows = doc["rows"]
    ref: dict[tuple[str, str, int], float] = {}
    for r in rows:  # speed-up against the FP32 row of the same model, backend and batch
        if r["precision"] == "fp32":
            ref.setdefault((r["model"], r["backend"], r["batch"]), r["ms"]["total"])
    load = ""
    if env.get("load_before"):
        load = (f" Load average (1/5/15 min) {env['load_before']} before the timed rounds, {env.get('load_after')} "
                "after.")
    lines = [
        f"hpsedge bench, {env['date']}: {env['reps']} interleaved rounds ({env['warmup']} warm-up "
        f"dropped), interquartile means, onnxruntime {env.get('onnxruntime')}, {env['cores']} cores, threads {env['threads'] or 'default'}, "
        f"{env['image_hw'][1]}×{env['image_hw'][0]} frame.{load}"
        + (f" {env['note']}" if env.get("note") else ""),
        "",
        "| model | precision | backend | graph (MB) | batch | preprocess | model | SMPL | postprocess | total (IQR) | "
        "ms/person | people/s | vs fp32 | build report (vs FP32) |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        ms, iqr = r["ms"], r["iqr_ms"]["total"]
        base = ref.get((r["model"], r["backend"], r["batch"]))
        speed = f"{base / ms['total']:.2f}×" if base and ms["total"] > 0 else "–"
        smpl = f"{ms['smpl']:.1f}" if r["smpl"] else "–"
        lines.append(
            f"| {r['model']} | {r['precision']} | {r['backend']} | {r['graph']} ({_mb(r['bytes'])}) | {r['batch']} | "
            f"{ms['preprocess']:.1f} | {ms['model']:.1f} | {smpl} | {ms['postprocess']:.1f} | "
            f"{ms['total']:.1f} ({iqr[0]:.0f}–{iqr[1]:.0f}) | {r['ms_per_person']:.1f} | {r['people_per_s']:.1f} | "
            f"{speed} | {_acc_cell(r['accuracy'])} |"
        )
    for a in doc["absent"]:
        lines.append(f"| {a['target']} | {a['precision']} | {a['backend']} | absent: {a['reason']} | | | | | | | | | | |")
    lines += [
        "",
        "Times in ms per call (one frame, `batch` people). Each call is timed stage by stage on one clock and its "
        "total is the sum of its stages; every figure is the mean over the same calls, the middle half of them "
        "ranked by total (the interquartile mean), so the stages add up to the total. IQR: the spread of the "
        "totals (25th–75th percentile). SMPL: the numpy body "
        "model (vertices + joints) inside postprocessing; postprocess: the rest (rotations, camera, confidence, 2D "
        "projection). Build report: the folder's own accuracy figures against its FP32 graph (calibration crops).",
        "",
    ]
    return "\n".join(lines)


def _write(cfg: BenchConfig, doc: dict[str, Any]) -> None:
    from hpsedge.eval.plots import stacked_bar_chart

    cfg.out.mkdir(parents=True, exist_ok=True)
    atomic_write(cfg.out / "bench.json", json.dumps(doc, indent=1) + "\n")
    atomic_write(cfg.out / "bench.md", markdown(doc))
    bars = [(f"{r['precision']} {r['backend']} b{r['batch']}",
             {k: r["ms"][k] / r["batch"] for k in STAGES}, r["ms_per_person"]) for r in doc["rows"]]
    models = sorted({r["model"] for r in doc["rows"]})
    stacked_bar_chart(cfg.out / "bench.png", bars, STAGES,
                      f"hpsedge bench: {', '.join(models)} - ms per person, stages stacked", "ms per person")
