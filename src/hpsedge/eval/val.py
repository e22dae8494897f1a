"""``hpsedge val``: accuracy of build folders on an evaluation set, as the HPS papers measure it.

For every sample of an evaluation file (SPIN/PARE/POCO layout, see :mod:`hpsedge.eval.data`) and every folder:
the runtime's :class:`~hpsedge.runtime.predictor.Predictor` (numpy + ONNX Runtime or TensorRT, no torch) runs
the person box ``center ± scale·100``; the predicted mesh (neutral SMPL) and the ground-truth mesh (the
gendered SMPL when given, else the neutral one) give the 14 LSP joints through the H36M regressor, made
root-relative (:data:`hpsedge.eval.metrics.PELVIS_MODES`), and MPJPE, PA-MPJPE and PVE in millimetres.

Uncertainty quality: each person's uncertainty is the official POCO score (``PersonResult.score``: CLIFF the
pelvis σ, PARE/HMR the mean kinematically accumulated σ, clipped to [0, 0.99]) or, for TokenHMR,
``1 − token_confidence``; its Pearson and Spearman correlation with PA-MPJPE, the sparsification curve and the
AUSE (mm) are reported. Ties in the score (e.g. several people at 0.99) are broken by sample order.

Per-sample results are appended to ``OUT/samples/<label>.jsonl`` as they are computed, so an interrupted run
resumes where it stopped (same data, folders and protocol; ``config.json`` says which).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import HpsedgeError, InputError
from hpsedge.eval import metrics
from hpsedge.eval.data import EvalSet, load_eval_set, load_j_regressor, resolve_images
from hpsedge.runtime.files import atomic_write, sha256_file

log = logging.getLogger(__name__)

__all__ = ["ValConfig", "parse_target", "run_val"]

PRECISIONS = ("fp32", "fp16", "int8")
OUR_FILES = ("config.json", "results.json", "results.md", "sparsification.png", "errors_pa_mpjpe.png",
             "errors_mpjpe.png")  # fmt: skip


@dataclass
class ValConfig:
    """What ``hpsedge val`` takes (CLI flags map one to one)."""

    folders: Sequence[str | Path]  #: build folders; ``DIR@fp32`` picks one precision graph of a folder
    data: Path
    images: Path
    smpl: Path
    out: Path
    j_regressor: Path
    smpl_male: Path | None = None
    smpl_female: Path | None = None
    max_samples: int | None = None
    pelvis: str = "h36m"
    backend: str = "auto"
    device: str = "auto"
    threads: int | None = None
    force: bool = False
    plots: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Target:
    label: str
    folder: Path
    precision: str | None


def parse_target(spec: str | Path) -> tuple[Path, str | None]:
    """``DIR`` or ``DIR@PRECISION`` → (folder, precision or None for the folder's own)."""
    s = str(spec)
    if "@" in s and not Path(s).exists():
        base, _, prec = s.rpartition("@")
        if prec not in PRECISIONS:
            raise InputError(f"'{s}': unknown precision '{prec}' after @ (choose from {', '.join(PRECISIONS)})")
        return Path(base), prec
    return Path(s), None


def _targets(specs: Sequence[str | Path]) -> list[Target]:
    if not specs:
        raise InputError("give at least one build folder")
    out: list[Target] = []
    seen: dict[str, int] = {}
    for spec in specs:
        folder, prec = parse_target(spec)
        label = folder.name + (f"@{prec}" if prec else "")
        if label in seen:
            seen[label] += 1
            label = f"{label}#{seen[label]}"
        else:
            seen[label] = 1
        out.append(Target(label, folder, prec))
    return out


def _graph_file(pred: Any, precision: str | None) -> str:
    """The graph file the Predictor runs (backend attribute when it has one, else the manifest's choice)."""
    session = getattr(pred.backend, "session", None)  # ONNX Runtime keeps the path it loaded (private attribute)
    model_path = getattr(session, "_model_path", None)
    if isinstance(model_path, (str, os.PathLike)):
        return Path(model_path).name
    for attr in ("path", "graph_path", "onnx_path", "engine_path"):
        p = getattr(pred.backend, attr, None) or getattr(pred, attr, None)
        if p:
            return Path(str(p)).name
    arts = pred.manifest.artifacts
    if pred.backend.name == "trt" and "engine" in arts:
        return str(arts["engine"]["file"])
    own = precision or str(pred.manifest.raw.get("precision", "fp32"))
    key = "onnx" if own == "fp32" or f"onnx_{own}" not in arts else f"onnx_{own}"
    return str(arts[key]["file"])


def _read_samples(path: Path) -> dict[int, dict[str, Any]]:
    """Per-sample records already written; a torn last line (interrupted write) is cut off."""
    done: dict[int, dict[str, Any]] = {}
    if not path.exists():
        return done
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        cut = raw.rfind(b"\n") + 1
        with open(path, "r+b") as f:
            f.truncate(cut)
        raw = raw[:cut]
    for line in raw.decode("utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
            done[int(rec["row"])] = rec
        except (ValueError, KeyError, TypeError):
            log.warning("%s: skipping an unreadable line", path)
    return done


def _prepare_out(cfg: ValConfig, config: dict[str, Any]) -> None:
    """Create OUT, or resume a run with the same configuration; anything else needs --force."""
    out = cfg.out
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder")
    cfg_path = out / "config.json"
    if out.exists() and any(out.iterdir()):
        same = False
        if cfg_path.is_file():
            try:
                same = json.loads(cfg_path.read_text(encoding="utf-8")) == config
            except (OSError, ValueError):
                same = False
        if not same and not cfg.force:
            raise InputError(
                f"{out} holds results of another run (other data, folders or protocol); not overwriting them",
                hint="pass --force to replace them, or choose another --out",
            )
        if not same:  # --force: drop only what val writes
            for name in OUR_FILES:
                (out / name).unlink(missing_ok=True)
            samples = out / "samples"
            if samples.is_dir():
                for f in samples.glob("*.jsonl"):
                    f.unlink()
    (out / "samples").mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")


def _load_smpl_models(cfg: ValConfig, data: EvalSet) -> tuple[Any, dict[str, Any], str]:
    from hpsedge.runtime.smpl import SMPL

    neutral = SMPL.load(cfg.smpl)
    if (cfg.smpl_male is None) != (cfg.smpl_female is None):
        raise InputError("give both --smpl-male and --smpl-female (or neither)")
    gendered: dict[str, Any] = {}
    if cfg.smpl_male is not None and cfg.smpl_female is not None:
        if data.gender is None:
            note = "ground truth: neutral SMPL (gendered models given, but the evaluation file has no 'gender')"
        else:
            gendered = {"m": SMPL.load(cfg.smpl_male), "f": SMPL.load(cfg.smpl_female)}
            note = "ground truth: gendered SMPL per sample (male/female files given); predictions: neutral SMPL"
    elif data.gender is not None:
        note = ("ground truth: NEUTRAL SMPL although the file has genders (pass --smpl-male/--smpl-female for the "
                "official 3DPW protocol); predictions: neutral SMPL")
    else:
        note = "ground truth and predictions: neutral SMPL"
    return neutral, gendered, note


_POCO_SCORE = "POCO score (official per-person uncertainty)"
_TOKEN = "1 − token confidence"


def _uncertainty(person: Any) -> tuple[float | None, str | None]:
    if person.score is not None:
        return float(person.score), _POCO_SCORE
    if person.confidence is not None:
        return 1.0 - float(person.confidence), _TOKEN
    return None, None


def run_val(cfg: ValConfig, progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Evaluate ``cfg.folders`` on ``cfg.data`` (see the module docstring); returns the results document."""
    from hpsedge.runtime.io import read_image
    from hpsedge.runtime.predictor import Predictor

    t_start = time.perf_counter()
    if cfg.pelvis not in metrics.PELVIS_MODES:
        raise InputError(f"unknown --pelvis '{cfg.pelvis}' (choose from {', '.join(metrics.PELVIS_MODES)})")
    if cfg.max_samples is not None and cfg.max_samples < 1:
        raise InputError("--max-samples must be at least 1")
    targets = _targets(cfg.folders)
    data = load_eval_set(cfg.data, cfg.max_samples)
    jreg = load_j_regressor(cfg.j_regressor)
    paths = resolve_images(cfg.images, data.imgname)
    neutral, gendered, smpl_note = _load_smpl_models(cfg, data)

    predictors: dict[str, Any] = {}
    uncert_kind: dict[str, str | None] = {}
    described: list[dict[str, Any]] = []
    for t in targets:
        try:
            pred = Predictor.load(t.folder, backend=cfg.backend, device=cfg.device, smpl=neutral,
                                  threads=cfg.threads, precision=t.precision)
        except BaseException:
            for loaded in predictors.values():
                loaded.close()
            raise
        predictors[t.label] = pred
        uncert_kind[t.label] = _uncertainty_kind(pred)
        described.append({
            "label": t.label,
            "folder": str(t.folder.resolve()),
            "model": pred.manifest.model_name,
            "precision": t.precision or str(pred.manifest.raw.get("precision", "fp32")),
            "graph": _graph_file(pred, t.precision),
            "backend": f"{pred.backend.name} ({pred.backend.device})",
        })
    config = {
        "data": str(cfg.data.resolve()),
        "data_sha256": sha256_file(cfg.data),
        "j_regressor_sha256": sha256_file(cfg.j_regressor),
        "smpl": [str(Path(p).resolve()) if p else None for p in (cfg.smpl, cfg.smpl_male, cfg.smpl_female)],
        "pelvis": cfg.pelvis,
        "folders": [{k: d[k] for k in ("label", "folder", "precision", "graph")} for d in described],
    }
    _prepare_out(cfg, config)
    files = {t.label: cfg.out / "samples" / f"{_safe(t.label)}.jsonl" for t in targets}
    done = {label: _read_samples(path) for label, path in files.items()}
    resumed = {label: sum(1 for r in data.rows if int(r) in d) for label, d in done.items()}
    n = len(data)
    pve_aligned = cfg.pelvis == "hips"  # TokenHMR's code aligns meshes at the pelvis; POCO's compares them as is
    boxes = data.boxes()
    handles = {label: open(path, "a", encoding="utf-8") for label, path in files.items()}  # noqa: SIM115
    try:
        for i in range(n):
            row = int(data.rows[i])
            todo = [t for t in targets if row not in done[t.label]]
            if not todo:
                if progress:
                    progress(i + 1, n, "resumed")
                continue
            image = read_image(paths[i])
            box = boxes[i : i + 1]
            body = gendered.get(data.gender[i]) if (gendered and data.gender) else None
            gt = (body or neutral).forward(data.shape[i : i + 1], data.pose[i : i + 1])
            gt_v = gt.vertices.astype(np.float64)
            gt_j, gt_root = _joints(gt_v, jreg, cfg.pelvis)
            for t in todo:
                people = predictors[t.label].predict(image, box)
                if len(people) != 1 or people[0].vertices is None:
                    raise HpsedgeError(f"{t.label}: no prediction for sample {row} ({data.imgname[i]})")
                p = people[0]
                pv = p.vertices[None].astype(np.float64)
                pj, p_root = _joints(pv, jreg, cfg.pelvis)
                unc, _kind = _uncertainty(p)
                pve = metrics.pve(pv - p_root, gt_v - gt_root)[0] if pve_aligned else metrics.pve(pv, gt_v)[0]
                rec = {
                    "row": row,
                    "imgname": data.imgname[i],
                    "mpjpe": 1000.0 * float(metrics.mpjpe(pj, gt_j)[0]),
                    "pa_mpjpe": 1000.0 * float(metrics.pa_mpjpe(pj, gt_j)[0]),
                    "pve": 1000.0 * float(pve),
                    "uncertainty": unc,
                    "confidence": None if p.confidence is None else float(p.confidence),
                }
                done[t.label][row] = rec
                handles[t.label].write(json.dumps(rec) + "\n")
                handles[t.label].flush()
            if progress:
                progress(i + 1, n, data.imgname[i])
    finally:
        for h in handles.values():
            h.close()
        for pred in predictors.values():
            pred.close()

    rows = [int(r) for r in data.rows]
    per = {label: [done[label][r] for r in rows] for label in done}
    summary = {label: _summarise(recs, uncert_kind.get(label)) for label, recs in per.items()}
    doc = {
        "command": "val",
        "data": str(cfg.data),
        "samples": n,
        "rows_in_file": data.total_rows,
        "skipped_without_smpl": data.skipped_no_smpl,
        "protocol": {
            "joints": "14 LSP joints from the H36M regressor (J_regressor_h36m, H36M_TO_J14)",
            "pelvis": {"h36m": "regressed H36M pelvis (joint 0), as SPIN/PARE/POCO's evaluation code",
                       "hips": "mid-point of the LSP hips"}[cfg.pelvis],
            "pve": "root-aligned meshes" if pve_aligned else "meshes as the models return them (POCO's vert_error)",
            "pa": "similarity Procrustes (rotation, scale, translation) of the prediction onto the ground truth",
            "smpl": smpl_note,
            "units": "mm",
        },
        "folders": described,
        "resumed_samples": resumed,
        "results": summary,
        "seconds": round(time.perf_counter() - t_start, 2),
    }
    _write_reports(cfg, doc, per)
    return doc


def _uncertainty_kind(pred: Any) -> str | None:
    """What a folder's per-person uncertainty is (see :func:`_uncertainty`)."""
    if pred.has_sigma:
        return _POCO_SCORE
    rule = pred.manifest.confidence_rule  # the manifest's rule, as the runtime reads it
    return None if rule is None else _TOKEN


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in label)


def _joints(vertices: np.ndarray, jreg: np.ndarray, pelvis: str) -> tuple[np.ndarray, np.ndarray]:
    j17 = np.einsum("jv,bvc->bjc", jreg, vertices, optimize=True)
    j14 = j17[:, list(metrics.H36M_TO_J14)]
    r = metrics.root(j17, j14, pelvis)
    return j14 - r, r


def _stats(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(values.mean()), "median": float(np.median(values)), "p90": float(np.percentile(values, 90))}


def _summarise(recs: list[dict[str, Any]], uncert_kind: str | None) -> dict[str, Any]:
    err = {k: np.array([r[k] for r in recs], dtype=np.float64) for k in ("mpjpe", "pa_mpjpe", "pve")}
    out: dict[str, Any] = {k: _stats(v) for k, v in err.items()}
    out["samples"] = len(recs)
    unc = [r.get("uncertainty") for r in recs]
    if recs and all(u is not None for u in unc):
        u = np.array(unc, dtype=np.float64)
        sp = metrics.sparsification(err["pa_mpjpe"], u)
        out["uncertainty"] = {
            "score": uncert_kind,
            "pearson_pa_mpjpe": metrics.pearson(u, err["pa_mpjpe"]),
            "spearman_pa_mpjpe": metrics.spearman(u, err["pa_mpjpe"]),
            "pearson_mpjpe": metrics.pearson(u, err["mpjpe"]),
            "spearman_mpjpe": metrics.spearman(u, err["mpjpe"]),
            "ause_pa_mpjpe": metrics.ause(err["pa_mpjpe"], u),
            "sparsification": metrics.resample_curve(sp, 20),
        }
    else:
        out["uncertainty"] = None
    return out


def _f(v: float | None, nd: int = 1) -> str:
    return "–" if v is None else f"{v:.{nd}f}"


def markdown(doc: dict[str, Any]) -> str:
    """The results table (one row per folder, all on the same samples)."""
    proto = doc["protocol"]
    lines = [
        f"# hpsedge val: {Path(doc['data']).name}, {doc['samples']} samples",
        "",
        f"Protocol: {proto['joints']}; pelvis: {proto['pelvis']}; PVE: {proto['pve']}; PA: {proto['pa']}. "
        f"{proto['smpl'][0].upper() + proto['smpl'][1:]}. All errors in mm; every folder ran the same samples.",
        "",
        "| folder | model | precision | graph | backend | MPJPE | PA-MPJPE | PVE | uncertainty | Pearson r (PA) | "
        "Spearman ρ (PA) | AUSE (PA, mm) |",
        "| --- | --- | --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for f in doc["folders"]:
        r = doc["results"][f["label"]]
        u = r.get("uncertainty") or {}
        lines.append(
            f"| {f['label']} | {f['model']} | {f['precision']} | {f['graph']} | {f['backend']} | "
            f"{r['mpjpe']['mean']:.2f} | {r['pa_mpjpe']['mean']:.2f} | {r['pve']['mean']:.2f} | {u.get('score') or '–'} | "
            f"{_f(u.get('pearson_pa_mpjpe'), 3)} | {_f(u.get('spearman_pa_mpjpe'), 3)} | {_f(u.get('ause_pa_mpjpe'), 2)} |"
        )
    if doc.get("skipped_without_smpl"):
        lines += ["", f"{doc['skipped_without_smpl']} row(s) of the file have no SMPL ground truth and were left out."]
    lines += ["", "Means; `results.json` also holds medians, 90th percentiles and the sparsification curves, and "
              "`samples/*.jsonl` every sample's errors.", ""]
    return "\n".join(lines)


def _write_reports(cfg: ValConfig, doc: dict[str, Any], per: dict[str, list[dict[str, Any]]]) -> None:
    from hpsedge.eval.plots import Series, histogram_chart, line_chart

    out = cfg.out
    atomic_write(out / "results.json", json.dumps(doc, indent=1) + "\n")
    atomic_write(out / "results.md", markdown(doc))
    if not cfg.plots:
        return
    series = []
    for i, (label, res) in enumerate(doc["results"].items()):
        u = res.get("uncertainty")
        if not u:
            continue
        sp = u["sparsification"]
        color = _color(i)
        series.append(Series(f"{label}", sp["fraction"], sp["curve"], color=color))
        series.append(Series(f"{label} oracle", sp["fraction"], sp["oracle"], dashed=True, color=color))
    if series:
        line_chart(out / "sparsification.png", series, "Sparsification: PA-MPJPE of the samples kept",
                   "fraction removed (most uncertain first; dashed: oracle)", "PA-MPJPE (mm)")
    for key, name in (("pa_mpjpe", "PA-MPJPE"), ("mpjpe", "MPJPE")):
        histogram_chart(out / f"errors_{key}.png", {k: [r[key] for r in v] for k, v in per.items()},
                        f"{name} per sample", f"{name} (mm)")


def _color(i: int) -> tuple[int, int, int]:
    from hpsedge.eval.plots import PALETTE

    return PALETTE[i % len(PALETTE)]


