"""Accuracy-drop report: a precision graph (FP16 / INT8) against the FP32 graph, both run in ONNX Runtime CPU.

Figures (all against FP32 on the same inputs; per person ``i`` and SMPL joint ``j``):

* pose: geodesic angle of ``R_fp32(i,j)ᵀ·R(i,j)`` in degrees: mean, median, p95, max over all (i, j), the
  per-joint means and the *worst joint* (largest per-joint mean). ``max_drop_deg`` limits the worst joint's
  mean, so a drop concentrated on one joint (typically the root orientation) fails as well as a general one,
  while a single outlier crop does not;
* betas and camera: mean and max absolute difference;
* σ (POCO models): mean and max absolute difference, and the Spearman rank correlation of the per-person
  uncertainty score (:func:`hpsedge.runtime.confidence.official_score`): does the precision graph still rank
  people by confidence the same way? ``min_sigma_rank_corr`` limits it;
* with an SMPL file: MPJPE (24 SMPL joints) and mean vertex error in mm between the two decoded bodies (same
  frame, no alignment, no translation), through :class:`hpsedge.runtime.smpl.SMPL`;
* every output: max abs / relative error (:func:`hpsedge.runtime.compare.output_errors`, shared with export
  verification and the GPU smoke test);
* ONNX Runtime CPU latency of both graphs: median of interleaved runs at one batch size.

Written as ``report.json`` and ``report.md``. With random weights the figures only show how the numerics
behave, not what a trained network loses.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.calib.ort import median_latency_ms, run_batched, session
from hpsedge.errors import ExportError
from hpsedge.runtime.compare import output_errors
from hpsedge.runtime.confidence import official_score
from hpsedge.runtime.manifest import dumps_strict
from hpsedge.runtime.rotations import geodesic_angle

REPORT_JSON = "report.json"
REPORT_MD = "report.md"

SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle", "right_ankle",
    "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand",
)  # fmt: skip

#: thresholds the report checks itself against when the caller sets none (the export does not fail on them)
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "fp16": {"max_drop_deg": 1.0, "min_sigma_rank_corr": 0.95},
    "int8": {"max_drop_deg": 5.0, "min_sigma_rank_corr": 0.8},
}


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rank correlation (average ranks for ties) in numpy; None when fewer than 2 values.

    Two constant vectors count as perfectly correlated (1.0); a constant vector against a varying one as 0.0.
    """
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"spearman needs equal lengths, got {x.shape} and {y.shape}")
    if x.size < 2:
        return None
    rx, ry = _average_ranks(x), _average_ranks(y)
    sx, sy = rx.std(), ry.std()
    if sx == 0 and sy == 0:
        return 1.0
    if sx == 0 or sy == 0:
        return 0.0
    return float(np.clip(np.mean((rx - rx.mean()) * (ry - ry.mean())) / (sx * sy), -1.0, 1.0))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    starts = ends - counts
    return ((starts + ends - 1) / 2.0)[inv.reshape(-1)]


def _stats(v: np.ndarray) -> dict[str, float]:
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    if v.size == 0:
        return {"mean": 0.0, "max": 0.0}
    return {"mean": float(v.mean()), "max": float(v.max())}


def compare_outputs(
    ref: Mapping[str, np.ndarray],
    got: Mapping[str, np.ndarray],
    *,
    family: str,
    smpl: Any | None = None,
) -> dict[str, Any]:
    """The accuracy figures of ``got`` against ``ref`` (dicts of graph outputs)."""
    out: dict[str, Any] = {"persons": len(ref["pose"])}
    ang = np.degrees(geodesic_angle(ref["pose"].astype(np.float64), got["pose"].astype(np.float64)))  # [N, 24]
    per_joint = ang.mean(axis=0)
    worst = int(np.argmax(per_joint))
    out["pose_deg"] = {
        "mean": float(ang.mean()),
        "median": float(np.median(ang)),
        "p95": float(np.percentile(ang, 95)),
        "max": float(ang.max()),
        "worst_joint": SMPL_JOINT_NAMES[worst] if ang.shape[1] == 24 else str(worst),
        "worst_joint_index": worst,
        "worst_joint_mean": float(per_joint[worst]),
        "per_joint_mean": [round(float(v), 5) for v in per_joint],
    }
    for key in ("betas", "cam"):
        if key in ref:
            out[key] = _stats(np.abs(ref[key].astype(np.float64) - got[key].astype(np.float64)))
    if "sigma" in ref:
        s_ref, s_got = ref["sigma"].astype(np.float32), got["sigma"].astype(np.float32)
        score_ref = official_score(s_ref, family)
        score_got = official_score(s_got, family)
        corr = spearman(score_ref, score_got)
        out["sigma"] = {
            **_stats(np.abs(s_ref.astype(np.float64) - s_got)),
            "score_abs_diff": _stats(np.abs(score_ref.astype(np.float64) - score_got)),
            "score_rank_corr": corr,
            "score_range_fp32": [float(score_ref.min()), float(score_ref.max())],
        }
    if "token_confidence" in ref:
        out["token_confidence"] = _stats(
            np.abs(ref["token_confidence"].astype(np.float64) - got["token_confidence"].astype(np.float64))
        )
    if "token_probs" in ref:  # TokenHMR exported with --token-probs: do both graphs pick the same codes?
        agree = ref["token_probs"].argmax(axis=-1) == got["token_probs"].argmax(axis=-1)
        out["token_agreement"] = float(agree.mean())
    if smpl is not None:
        a = smpl.forward(ref["betas"], ref["pose"], return_vertices=True)
        b = smpl.forward(got["betas"], got["pose"], return_vertices=True)
        jerr = np.linalg.norm(a.joints.astype(np.float64) - b.joints, axis=-1) * 1000.0
        verr = np.linalg.norm(a.vertices.astype(np.float64) - b.vertices, axis=-1) * 1000.0
        out["mpjpe_mm"] = _stats(jerr.mean(axis=1)) | {"p95": float(np.percentile(jerr.mean(axis=1), 95))}
        out["vertex_error_mm"] = _stats(verr.mean(axis=1)) | {"p95": float(np.percentile(verr.mean(axis=1), 95))}
    return out


def check_thresholds(figures: Mapping[str, Any], max_drop_deg: float | None, min_sigma_rank_corr: float | None) -> list[str]:
    """Human-readable failures (empty when within limits)."""
    failures = []
    if max_drop_deg is not None:
        worst = figures["pose_deg"]["worst_joint_mean"]
        if not worst <= max_drop_deg:
            failures.append(
                f"pose drop {worst:.3f}° (mean over persons of joint '{figures['pose_deg']['worst_joint']}') "
                f"exceeds {max_drop_deg:g}°"
            )
    if min_sigma_rank_corr is not None and "sigma" in figures:
        corr = figures["sigma"]["score_rank_corr"]
        if corr is not None and not corr >= min_sigma_rank_corr:
            failures.append(f"σ score rank correlation {corr:.3f} is below {min_sigma_rank_corr:g}")
    return failures


def _latency_feeds(feeds: Mapping[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    n = len(next(iter(feeds.values())))
    idx = np.arange(batch) % n
    return {k: np.ascontiguousarray(v[idx]) for k, v in feeds.items()}


def accuracy_report(
    fp32_path: str | Path,
    test_path: str | Path,
    feeds: Mapping[str, np.ndarray],
    *,
    precision: str,
    family: str,
    source: str,
    smpl: str | Path | None = None,
    max_drop_deg: float | None = None,
    min_sigma_rank_corr: float | None = None,
    latency_batch: int = 1,
    latency_reps: int = 10,
    threads: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run both graphs on ``feeds`` and compare; returns the report dict (not written, not raised)."""
    ref_sess = session(fp32_path, threads)
    test_sess = session(test_path, threads)
    names = [o.name for o in ref_sess.get_outputs()]
    ref = run_batched(ref_sess, feeds, outputs=names)
    got = run_batched(test_sess, feeds, outputs=names)
    errors = output_errors(ref, got)  # the comparison export verification and the GPU smoke test use too
    for k, e in errors.items():
        if not e["finite"]:
            raise ExportError(f"the {precision} graph produced NaN/inf in output '{k}'",
                              hint="keep more nodes in FP32 (--keep-fp32) or check the calibration set")
    body = None
    if smpl is not None:
        from hpsedge.runtime.smpl import SMPL

        body = SMPL.load(smpl)
    figures = compare_outputs(ref, got, family=family, smpl=body)
    figures["outputs"] = errors
    lat = {}
    if latency_reps > 0:
        lat_feeds = _latency_feeds(feeds, latency_batch)
        ms = median_latency_ms({"fp32": ref_sess, precision: test_sess}, lat_feeds, reps=latency_reps)
        lat = {
            "runner": "onnxruntime CPUExecutionProvider",
            "batch": latency_batch,
            "reps": latency_reps,
            "fp32_ms": ms["fp32"],
            f"{precision}_ms": ms[precision],
            "speedup": ms["fp32"] / ms[precision] if ms[precision] > 0 else math.nan,
        }
    defaults = DEFAULT_THRESHOLDS.get(precision, {"max_drop_deg": 1.0, "min_sigma_rank_corr": 0.9})
    enforced = {"max_drop_deg": max_drop_deg, "min_sigma_rank_corr": min_sigma_rank_corr}
    effective = {k: (v if v is not None else defaults[k]) for k, v in enforced.items()}
    failures = check_thresholds(figures, effective["max_drop_deg"], effective["min_sigma_rank_corr"])
    return {
        "precision": precision,
        "reference": "fp32",
        "graphs": {"fp32": Path(fp32_path).name, precision: Path(test_path).name},
        "inputs": source,
        "figures": figures,
        "latency": lat,
        "thresholds": {
            "values": effective,
            "enforced": {k: v is not None for k, v in enforced.items()},
            "passed": not failures,
            "failures": failures,
        },
        **dict(extra or {}),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The short form stored in ``manifest["accuracy"]``."""
    f = report["figures"]
    s: dict[str, Any] = {
        "precision": report["precision"],
        "inputs": report["inputs"],
        "persons": f["persons"],
        "pose_deg_mean": f["pose_deg"]["mean"],
        "pose_deg_p95": f["pose_deg"]["p95"],
        "pose_deg_worst_joint": f["pose_deg"]["worst_joint_mean"],
        "worst_joint": f["pose_deg"]["worst_joint"],
        "betas_abs_max": f.get("betas", {}).get("max"),
        "cam_abs_max": f.get("cam", {}).get("max"),
        "passed": report["thresholds"]["passed"],
        "thresholds": report["thresholds"]["values"],
        "report": REPORT_JSON,
    }
    if "sigma" in f:
        s["sigma_abs_max"] = f["sigma"]["max"]
        s["sigma_rank_corr"] = f["sigma"]["score_rank_corr"]
    if "token_agreement" in f:
        s["token_agreement"] = f["token_agreement"]
    if "mpjpe_mm" in f:
        s["mpjpe_mm"] = f["mpjpe_mm"]["mean"]
        s["vertex_error_mm"] = f["vertex_error_mm"]["mean"]
    lat = report.get("latency") or {}
    if lat:
        p = report["precision"]
        s["latency_ms"] = {"batch": lat["batch"], "fp32": lat["fp32_ms"], p: lat[f"{p}_ms"]}
    return s


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if v != 0 and (abs(v) < 10 ** (-nd) or abs(v) >= 1e5):
            return f"{v:.2e}"
        return f"{v:.{nd}f}"
    return str(v)


def to_markdown(report: Mapping[str, Any], title: str | None = None) -> str:
    p = report["precision"]
    f = report["figures"]
    th = report["thresholds"]
    lines = [
        f"# {title or 'Accuracy drop'}: {p} vs fp32",
        "",
        f"- graphs: `{report['graphs'][p]}` against `{report['graphs']['fp32']}` (ONNX Runtime CPU)",
        f"- inputs: {report['inputs']} ({f['persons']} persons)",
        f"- result: **{'within' if th['passed'] else 'OUTSIDE'} thresholds** (max drop {th['values']['max_drop_deg']:g}° "
        f"on the worst joint's mean; min σ rank correlation {th['values']['min_sigma_rank_corr']:g})",
    ]
    for fail in th["failures"]:
        lines.append(f"  - {fail}")
    pd = f["pose_deg"]
    lines += [
        "",
        "| figure | mean | p95 | max |",
        "| --- | --- | --- | --- |",
        f"| pose geodesic error (°) | {_fmt(pd['mean'])} | {_fmt(pd['p95'])} | {_fmt(pd['max'])} |",
        f"| worst joint: {pd['worst_joint']} (°) | {_fmt(pd['worst_joint_mean'])} | | |",
    ]
    for key, label in (("betas", "betas |Δ|"), ("cam", "camera |Δ|")):
        if key in f:
            lines.append(f"| {label} | {_fmt(f[key]['mean'], 5)} | | {_fmt(f[key]['max'], 5)} |")
    if "sigma" in f:
        s = f["sigma"]
        lines.append(f"| σ |Δ| | {_fmt(s['mean'], 5)} | | {_fmt(s['max'], 5)} |")
        lines.append(f"| σ score Spearman ρ | {_fmt(s['score_rank_corr'], 4)} | | |")
    if "token_confidence" in f:
        t = f["token_confidence"]
        lines.append(f"| token confidence |Δ| | {_fmt(t['mean'], 5)} | | {_fmt(t['max'], 5)} |")
    if "token_agreement" in f:
        lines.append(f"| token agreement (same argmax code) | {_fmt(f['token_agreement'], 4)} | | |")
    for key, label in (("mpjpe_mm", "MPJPE (mm)"), ("vertex_error_mm", "vertex error (mm)")):
        if key in f:
            lines.append(f"| {label} | {_fmt(f[key]['mean'])} | {_fmt(f[key]['p95'])} | {_fmt(f[key]['max'])} |")
    lat = report.get("latency") or {}
    if lat:
        lines += [
            "",
            f"Latency (ONNX Runtime CPU, batch {lat['batch']}, median of {lat['reps']} interleaved runs): "
            f"fp32 {lat['fp32_ms']:.2f} ms, {p} {lat[f'{p}_ms']:.2f} ms ({lat['speedup']:.2f}×).",
        ]
    cfg = report.get("config")
    if cfg:
        lines += ["", "Configuration:", "", "```json", json.dumps(cfg, indent=1), "```"]
    lines += ["", "With random weights these figures only show how the numerics behave, not what a trained model loses.", ""]
    return "\n".join(lines)


def write_report(folder: str | Path, report: Mapping[str, Any]) -> tuple[Path, Path]:
    folder = Path(folder)
    j = folder / REPORT_JSON
    m = folder / REPORT_MD
    j.write_text(dumps_strict(report, indent=2, default=_json_default) + "\n", encoding="utf-8")
    m.write_text(to_markdown(report), encoding="utf-8")
    return j, m


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)
