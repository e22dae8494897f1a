"""Fit error bounds in millimetres from a ``hpsedge val`` run: split-conformal calibration of uncertainty to error.

Input: a val run's per-sample records (``OUT/samples/<label>.jsonl``: per-joint errors ``joint_errors`` in mm,
root-relative with the run's pelvis, and the model's uncertainty: POCO's raw σ ``sigma`` [24] and ``score``,
TokenHMR's ``confidence``). For every joint group ``g`` (:data:`hpsedge.runtime.error_bound.GROUPS`; or one
group per joint) the group error is ``e_g`` = the largest error among the group's joints and the uncertainty
``u_g`` as :mod:`hpsedge.runtime.error_bound` computes it at run time. Then, with the samples split three ways
(seeded; by sequence when the image names have enough folders, so frames of one video never sit on both
sides):

1. **fit** split: the scale ``f_g(u) = max(a + b·u, floor)``: least squares of ``e_g`` on ``u_g`` with
   ``b ≥ 0``, ``floor`` = 5 % of the mean error (a positive scale for the most certain people);
2. **calibration** split (n samples): conformity scores ``s = e_g / f_g(u_g)`` and their finite-sample
   conformal quantile ``q_g`` = the ⌈(n+1)(1−α)⌉-th smallest score (the empirical quantile at level
   ⌈(n+1)(1−α)⌉/n; refused when that exceeds n: too few samples for the coverage asked);
3. **held-out** split: the achieved coverage ``mean(e_g ≤ q_g·f_g(u_g))`` is measured and reported, with a
   reliability table (nominal vs achieved for a range of levels) and the coverage per uncertainty quartile; a
   constant bound (same quantile rule, ``f ≡ 1``) is reported beside it as the baseline.

Because ``f`` is fixed before the calibration scores are looked at, the guarantee ``P(e ≤ bound) ≥ 1−α``
holds for exchangeable samples whatever ``f`` is; ``f`` only makes the bound adapt to the uncertainty. The
result is written into the build folder as ``error_bound.json`` (listed with its sha256 in ``manifest.json``,
the manifest replaced atomically); the runtime reads it (:func:`hpsedge.runtime.error_bound.load_error_bound`).
numpy and the runtime only (no torch).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from hpsedge.errors import HpsedgeError, InputError, ManifestError
from hpsedge.runtime import error_bound as rt
from hpsedge.runtime.confidence import accumulate_sigma
from hpsedge.runtime.files import atomic_write, sha256_file
from hpsedge.runtime.manifest import MANIFEST_NAME, dumps_strict, load_manifest, safe_artifact_path

log = logging.getLogger(__name__)

__all__ = [
    "RELIABILITY_LEVELS",
    "ErrorBoundConfig",
    "conformal_quantile",
    "coverage_by_uncertainty_chart",
    "fit_error_bound",
    "fit_groups",
    "fit_scale",
    "load_val_samples",
    "reliability_chart",
    "split_samples",
    "write_error_bound",
]

RELIABILITY_LEVELS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99)
LSP14_NAMES = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
               "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "neck", "head_top")  # fmt: skip
SPLITS = ("auto", "sequence", "sample")
GROUPINGS = ("parts", "joints")
_FLOOR_FRACTION = 0.05
_SPLIT_SALT = 0xC0F0


@dataclass
class ErrorBoundConfig:
    """What ``hpsedge calib error-bound`` takes (CLI flags map one to one)."""

    coverage: float = 0.9  #: nominal coverage 1 − α
    uncertainty: str | None = None  #: "sigma" | "score" | "confidence"; None: σ when the model has it
    groups: str = "parts"  #: "parts" (body, torso, arms, legs) or "joints" (body + each joint)
    fit_fraction: float = 0.2  #: share of the samples that fit the scale f
    holdout_fraction: float = 0.4  #: share kept aside to measure the achieved coverage
    split: str = "auto"  #: "sequence" (by image folder), "sample", "auto" (sequence when ≥ 6 folders)
    seed: int = 0
    force: bool = False  #: replace an error_bound.json hpsedge wrote before


# ------------------------------------------------------------------------------------ the statistics
def conformal_quantile(scores: np.ndarray, coverage: float) -> float:
    """The split-conformal quantile: the ⌈(n+1)·coverage⌉-th smallest of ``n`` scores.

    For a new score exchangeable with these, ``P(new ≤ q) ≥ coverage`` (and ``< coverage + 1/(n+1)`` without
    ties). Raises :class:`InputError` when ⌈(n+1)·coverage⌉ > n (the bound would be infinite).
    """
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    n = s.size
    if not 0.0 < coverage < 1.0:
        raise InputError(f"coverage must lie strictly between 0 and 1, got {coverage}")
    k = math.ceil((n + 1) * coverage - 1e-9)
    if k > n or n == 0:
        need = math.ceil(coverage / (1.0 - coverage) - 1e-9)
        raise InputError(
            f"{n} calibration samples cannot give {coverage:.1%} coverage (the conformal quantile needs at least {need})",
            hint="use more samples, a lower --coverage or a smaller --holdout",
        )
    return float(s[k - 1])


def fit_scale(errors: np.ndarray, uncertainty: np.ndarray) -> tuple[float, float, float]:
    """``(a, b, floor)`` of ``f(u) = max(a + b·u, floor)``: least squares with ``b ≥ 0``; floor = 5 % of the mean error."""
    e = np.asarray(errors, dtype=np.float64).ravel()
    u = np.asarray(uncertainty, dtype=np.float64).ravel()
    if e.size == 0:
        raise InputError("no samples to fit the scale on (--fit-fraction too small)")
    floor = max(_FLOOR_FRACTION * float(e.mean()), 1e-6)
    var = float(((u - u.mean()) ** 2).mean())
    b = float(((u - u.mean()) * (e - e.mean())).mean() / var) if var > 0 else 0.0
    if not math.isfinite(b) or b < 0:
        b = 0.0
    a = float(e.mean() - b * u.mean())
    return a, b, floor


@dataclass
class GroupFit:
    name: str
    smpl_joints: tuple[int, ...]
    a: float
    b: float
    floor: float
    quantile: float
    report: dict[str, Any]

    def bound(self, u: np.ndarray) -> np.ndarray:
        return self.quantile * np.maximum(self.a + self.b * np.asarray(u, dtype=np.float64), self.floor)


def _coverage_by_bins(e: np.ndarray, u: np.ndarray, bound: np.ndarray, bins: int = 4) -> list[dict[str, Any]]:
    """Achieved coverage within uncertainty quantile bins (ties kept together by rank)."""
    if e.size < bins:
        return []
    order = np.argsort(u, kind="mergesort")
    out = []
    for part in np.array_split(order, bins):
        out.append({"u_min": float(u[part].min()), "u_max": float(u[part].max()), "n": int(part.size),
                    "coverage": float(np.mean(e[part] <= bound[part])), "mean_bound_mm": float(bound[part].mean())})
    return out


def fit_groups(errors: dict[str, np.ndarray], uncertainty: dict[str, np.ndarray], split: np.ndarray,
               coverage: float, smpl_joints: dict[str, tuple[int, ...]] | None = None,
               levels: Sequence[float] = RELIABILITY_LEVELS) -> list[GroupFit]:
    """Split-conformal fit per group (module docstring). ``split``: 0 fit, 1 calibration, 2 held out."""
    split = np.asarray(split)
    fits = []
    for name, e_all in errors.items():
        e_all = np.asarray(e_all, dtype=np.float64)
        u_all = np.asarray(uncertainty[name], dtype=np.float64)
        if e_all.shape != u_all.shape or e_all.shape != split.shape:
            raise InputError(f"group {name}: errors, uncertainties and split differ in length")
        if not (np.isfinite(e_all).all() and np.isfinite(u_all).all()):
            raise InputError(f"group {name}: errors or uncertainties hold NaN or inf")
        fit, cal, hold = (split == 0), (split == 1), (split == 2)
        a, b, floor = fit_scale(e_all[fit], u_all[fit])
        f_cal = np.maximum(a + b * u_all[cal], floor)
        f_hold = np.maximum(a + b * u_all[hold], floor)
        q = conformal_quantile(e_all[cal] / f_cal, coverage)
        q_const = conformal_quantile(e_all[cal], coverage)
        e_h, u_h = e_all[hold], u_all[hold]
        bound_h = q * f_hold
        reliability = []
        for lv in levels:
            try:
                ql = conformal_quantile(e_all[cal] / f_cal, lv)
                qc = conformal_quantile(e_all[cal], lv)
            except InputError:
                continue
            reliability.append({
                "nominal": float(lv),
                "achieved": float(np.mean(e_h <= ql * f_hold)) if e_h.size else None,
                "achieved_constant": float(np.mean(e_h <= qc)) if e_h.size else None,
            })
        report = {
            "n_fit": int(fit.sum()), "n_calibration": int(cal.sum()), "n_holdout": int(hold.sum()),
            "achieved_coverage": float(np.mean(e_h <= bound_h)) if e_h.size else None,
            "mean_bound_mm": float(bound_h.mean()) if e_h.size else None,
            "median_error_mm": float(np.median(e_all)),
            "constant": {"bound_mm": q_const,
                         "achieved_coverage": float(np.mean(e_h <= q_const)) if e_h.size else None},
            "by_uncertainty": _coverage_by_bins(e_h, u_h, bound_h),
            "by_uncertainty_constant": _coverage_by_bins(e_h, u_h, np.full(e_h.shape, q_const)),
            "reliability": reliability,
        }
        joints = (smpl_joints or {}).get(name, tuple(range(24)))
        fits.append(GroupFit(name, tuple(joints), a, b, floor, q, report))
    return fits


def split_samples(names: Sequence[str], fit_fraction: float, holdout_fraction: float, by: str = "auto",
                  seed: int = 0) -> tuple[np.ndarray, str]:
    """0 (fit) / 1 (calibration) / 2 (held out) per sample, and how the split was made.

    ``"sequence"`` keeps every image folder (``imgname``'s parent: a 3DPW/EMDB sequence) on one side, so
    frames of one video never calibrate and test each other; ``"auto"`` uses it when there are ≥ 6 folders.
    """
    if by not in SPLITS:
        raise InputError(f"unknown split '{by}' (choose from {', '.join(SPLITS)})")
    if not (0 < fit_fraction < 1 and 0 < holdout_fraction < 1 and fit_fraction + holdout_fraction < 1):
        raise InputError("--fit-fraction and --holdout must be in (0, 1) and leave samples to calibrate on")
    n = len(names)
    rng = np.random.default_rng([_SPLIT_SALT, seed])  # its own stream: never the one a user drew data with
    seqs = [str(PurePosixPath(str(nm).replace("\\", "/")).parent) for nm in names]
    uniq = sorted(set(seqs))
    use_seq = by == "sequence" or (by == "auto" and len(uniq) >= 6)
    if use_seq and len(uniq) < 3:
        raise InputError(f"a split by sequence needs at least 3 image folders; the val data has {len(uniq)}",
                         hint="use --split sample")
    out = np.empty(n, dtype=np.int64)
    if use_seq:
        perm = rng.permutation(len(uniq))
        sizes = np.array([seqs.count(uniq[i]) for i in perm], dtype=np.float64)
        starts = (np.cumsum(sizes) - sizes) / n  # share of samples before each sequence
        part = np.where(starts < fit_fraction, 0, np.where(starts < 1.0 - holdout_fraction, 1, 2))
        part[0], part[-1] = 0, 2
        if not (part == 1).any():
            part[1] = 1
        of = {uniq[i]: int(p) for i, p in zip(perm, part, strict=True)}
        out[:] = [of[s] for s in seqs]
        how = f"by sequence (image folder): {len(uniq)} sequences, seed {seed}"
    else:
        perm = rng.permutation(n)
        n_fit, n_hold = round(fit_fraction * n), round(holdout_fraction * n)
        out[perm[:n_fit]] = 0
        out[perm[n_fit : n - n_hold]] = 1
        out[perm[n - n_hold :]] = 2
        how = f"by sample (random, seed {seed})" + (f"; only {len(uniq)} image folder(s)" if by == "auto" else "")
    return out, how


# ------------------------------------------------------------------------------------ val run input
def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in label)


def _pick_entry(doc: dict[str, Any], folder: Path, label: str | None, own_precision: str) -> dict[str, Any]:
    entries = [f for f in doc.get("folders") or [] if isinstance(f, dict) and isinstance(f.get("label"), str)]
    if label is not None:
        hit = [f for f in entries if f["label"] == label]
        if not hit:
            raise InputError(f"the val run has no folder labelled '{label}' (it has: "
                             f"{', '.join(f['label'] for f in entries) or 'none'})"[:300])
        return hit[0]
    real = os.path.realpath(folder)
    hit = [f for f in entries if isinstance(f.get("folder"), str) and os.path.realpath(f["folder"]) == real]
    if not hit:
        raise InputError(f"the val run did not evaluate {folder} (it evaluated: "
                         f"{', '.join(str(f.get('folder')) for f in entries) or 'nothing'})"[:300],
                         hint="run hpsedge val on this folder first, or name the run's folder with --label")
    own = [f for f in hit if f.get("precision") == own_precision]
    if len(hit) > 1 and len(own) != 1:
        raise InputError(f"the val run holds {folder} several times ({', '.join(f['label'] for f in hit)})",
                         hint="choose one with --label")
    return (own or hit)[0]


def load_val_samples(val_out: Path, folder: Path, label: str | None = None,
                     own_precision: str = "fp32") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The val run's entry for ``folder`` (or ``label``) and its per-sample records (read only)."""
    from hpsedge.runtime.io import read_json_file

    val_out = Path(val_out)
    results = val_out / "results.json"
    if not results.is_file():
        raise InputError(f"{val_out} holds no results.json", hint="point --val-results at the --out of hpsedge val")
    doc = read_json_file(results, "val results", max_bytes=64 << 20)
    if not isinstance(doc, dict) or doc.get("command") != "val":
        raise InputError(f"{results} is not written by hpsedge val")
    entry = _pick_entry(doc, folder, label, own_precision)
    path = val_out / "samples" / f"{_safe(entry['label'])}.jsonl"
    if not path.is_file() or path.is_symlink():
        raise InputError(f"{path} is missing (the val run's per-sample records)")
    if path.stat().st_size > 1 << 30:
        raise InputError(f"{path} is larger than 1 GiB")
    recs = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                rec = json.loads(line, parse_constant=_no_constant)
            except ValueError:
                log.warning("%s: skipping an unreadable line", path)
                continue
            if isinstance(rec, dict):
                recs.append(rec)
    if not recs:
        raise InputError(f"{path} holds no samples")
    entry = dict(entry, protocol=doc.get("protocol") or {})
    return entry, recs


def _matrix(recs: list[dict[str, Any]], key: str, width: int | None, what: str) -> np.ndarray:
    rows = [r.get(key) for r in recs]
    if any(not isinstance(v, list) for v in rows):
        raise InputError(f"the val records hold no '{key}' ({what})",
                         hint="run hpsedge val again with this hpsedge (--force): older runs did not store it")
    try:
        arr = np.array(rows, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"the val records' '{key}' are not lists of numbers of one length") from None
    if arr.ndim != 2 or (width is not None and arr.shape[1] != width) or not np.isfinite(arr).all():
        raise InputError(f"the val records' '{key}' must be finite [{width or 'J'}] lists")
    return arr


def _vector(recs: list[dict[str, Any]], key: str, what: str) -> np.ndarray:
    vals = [r.get(key) for r in recs]
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in vals):
        raise InputError(f"the val records hold no '{key}' ({what}) for every sample")
    arr = np.array(vals, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise InputError(f"the val records' '{key}' hold NaN or inf")
    return arr


def group_table(n_joints: int, grouping: str, protocol: str | None = None) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Group name → (joints of the val protocol, SMPL joints for σ). The 14 LSP joints (``poco-3dpw``; also
    ``tokenhmr-3dpw``, whose 14 keypoints follow the LSP order with the head for the head top) map to SMPL
    joints; SMPL's own 24 (``tokenhmr-emdb``) are SMPL joints; any other set gets one group, ``body``."""
    if grouping not in GROUPINGS:
        raise InputError(f"unknown grouping '{grouping}' (choose from {', '.join(GROUPINGS)})")
    if n_joints == 24 and (protocol or "").startswith("tokenhmr-emdb"):
        if grouping == "parts":
            return {g: (js, js) for g, js in rt.SMPL24_GROUPS.items()}
        table = {"body": (tuple(range(24)), tuple(range(24)))}
        table.update({f"smpl_{j:02d}": ((j,), (j,)) for j in range(24)})
        return table
    if n_joints != len(rt.LSP14_TO_SMPL):
        return {"body": (tuple(range(n_joints)), tuple(range(24)))}
    table = {"body": (rt.GROUPS["body"], tuple(sorted(rt.LSP14_TO_SMPL)))}
    if grouping == "parts":
        for name, js in rt.GROUPS.items():
            table[name] = (js, tuple(sorted({rt.LSP14_TO_SMPL[j] for j in js})))
    else:
        for j, name in enumerate(LSP14_NAMES):
            table[name] = ((j,), (rt.LSP14_TO_SMPL[j],))
    return table


def _uncertainty_source(manifest: Any, recs: list[dict[str, Any]], asked: str | None) -> str:
    if not manifest.has_sigma and manifest.confidence_rule is None:
        raise InputError(f"{manifest.model_name}: {rt.NO_UNCERTAINTY}")
    if asked is not None:
        if asked not in rt.UNCERTAINTIES:
            raise InputError(f"unknown --uncertainty '{asked}' (choose from {', '.join(rt.UNCERTAINTIES)})")
        if asked in ("sigma", "score") and not manifest.has_sigma:
            raise InputError(f"{manifest.model_name} has no σ; use --uncertainty confidence")
        if asked == "confidence" and manifest.confidence_rule is None:
            raise InputError(f"{manifest.model_name} has no confidence output")
        return asked
    return "sigma" if manifest.has_sigma else "confidence"


def fit_error_bound(folder: str | Path, val_out: str | Path, cfg: ErrorBoundConfig | None = None,
                    label: str | None = None, plot: str | Path | None = None, write: bool = True) -> dict[str, Any]:
    """Fit the error bound of build folder ``folder`` from val run ``val_out``; write it into the folder.

    Returns the ``error_bound.json`` document (with ``"written"``: its path, when ``write``). ``plot``: also
    draw the reliability diagram there (PNG).
    """
    cfg = cfg or ErrorBoundConfig()
    folder = Path(folder)
    manifest = load_manifest(folder)
    if not manifest.has_sigma and manifest.confidence_rule is None:  # HMR 2.0: before reading anything else
        raise InputError(f"{manifest.model_name}: {rt.NO_UNCERTAINTY}")
    if not 0.0 < cfg.coverage < 1.0:
        raise InputError(f"--coverage must lie strictly between 0 and 1, got {cfg.coverage}")
    own = str(manifest.raw.get("precision", "fp32"))
    entry, recs = load_val_samples(Path(val_out), folder, label, own)
    if entry.get("model") not in (None, manifest.model_name):
        raise InputError(f"the val run's '{entry['label']}' is {entry.get('model')}, but {folder} holds "
                         f"{manifest.model_name}"[:300])
    graphs = {str(a.get("file")) for a in manifest.artifacts.values()}
    if entry.get("graph") is not None and str(entry["graph"]) not in graphs:
        raise InputError(f"the val run's '{entry['label']}' ran {entry['graph']}, which {folder} does not hold"[:300])
    source = _uncertainty_source(manifest, recs, cfg.uncertainty)
    joint_err = _matrix(recs, "joint_errors", None, "per-joint errors in mm")
    protocol = (entry.get("protocol") or {}).get("name")
    table = group_table(joint_err.shape[1], cfg.groups, protocol if isinstance(protocol, str) else None)
    if source == "sigma":
        acc = accumulate_sigma(_matrix(recs, "sigma", 24, "POCO's σ"))
        unc = {g: acc[:, list(sj)].mean(axis=1) for g, (_, sj) in table.items()}
    else:
        v = _vector(recs, "score", "POCO's score") if source == "score" else \
            1.0 - _vector(recs, "confidence", "the model's confidence")
        unc = {g: v for g in table}
    errors = {g: joint_err[:, list(js)].max(axis=1) for g, (js, _) in table.items()}
    names = [str(r.get("imgname", "")) for r in recs]
    split, how = split_samples(names, cfg.fit_fraction, cfg.holdout_fraction, cfg.split, cfg.seed)
    fits = fit_groups(errors, unc, split, cfg.coverage, {g: sj for g, (_, sj) in table.items()})
    doc = _document(manifest.model_name, cfg, source, fits, how, entry, Path(val_out))
    if plot is not None:
        reliability_chart(Path(plot), doc)
    if write:
        doc["written"] = str(write_error_bound(folder, doc, cfg.force))
    return doc


def _document(model: str, cfg: ErrorBoundConfig, source: str, fits: list[GroupFit], how: str,
              entry: dict[str, Any], val_out: Path) -> dict[str, Any]:
    proto = entry.get("protocol") or {}
    pelvis = proto.get("pelvis") or "the val run's pelvis"
    joints = proto.get("joints") or "the val protocol's joints"
    unc_text = {"sigma": "mean kinematically accumulated POCO σ over the group's SMPL joints",
                "score": "POCO's official per-person score", "confidence": "1 − the model's confidence"}[source]
    return {
        "schema": rt.SCHEMA,
        "schema_version": rt.SCHEMA_VERSION,
        "model": model,
        "coverage": float(cfg.coverage),
        "uncertainty": source,
        "uncertainty_definition": unc_text,
        "statement": (f"with probability ≥ {cfg.coverage:.0%} (marginally, over people like the calibration data), "
                      f"every joint of a group lies within error_bound_mm[group] of its true 3D position, both "
                      f"root-relative ({pelvis}); global translation and depth are not covered")[:1000],
        "error": f"largest Euclidean error (mm) among the group's joints, root-relative; joints: {joints}"[:500],
        "protocol": proto.get("name"),
        "method": "split conformal: f(u) = max(a + b·u, floor) fit on the fit split; quantile "
                  "⌈(n+1)(1−α)⌉-th smallest of error/f(u) on the calibration split; coverage on the held-out split",
        "split": {"how": how, "fit_fraction": cfg.fit_fraction, "holdout_fraction": cfg.holdout_fraction,
                  "seed": cfg.seed},
        "groups": {
            f.name: {"smpl_joints": list(f.smpl_joints),
                     "scale": {"a": f.a, "b": f.b, "floor": f.floor}, "quantile": f.quantile, **f.report}
            for f in fits
        },
        "source": {"val_results": str(val_out.resolve()), "label": entry.get("label"),
                   "folder": entry.get("folder"), "precision": entry.get("precision"), "graph": entry.get("graph")},
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


# ------------------------------------------------------------------------------------ the artifact
def _is_ours(path: Path, listed: bool) -> bool:
    """A file hpsedge wrote: listed in the manifest as the error bound, or an error-bound document."""
    if listed:
        return True
    try:
        if path.is_symlink() or path.stat().st_size > rt.MAX_BYTES:
            return False
        return json.loads(path.read_text(encoding="utf-8")).get("schema") == rt.SCHEMA
    except (OSError, ValueError, AttributeError):
        return False


def write_error_bound(folder: str | Path, doc: dict[str, Any], force: bool = False) -> Path:
    """Write ``error_bound.json`` into the build folder and list it (sha256, bytes) in ``manifest.json``.

    Both files are replaced atomically, under the folder's build lock. A file of that name that hpsedge did
    not write is never replaced; one it wrote needs ``force``.
    """
    from hpsedge.export.outdir import output_lock

    folder = Path(folder)
    rt.parse_error_bound(doc, "the fitted error bound")  # what the runtime will accept
    with output_lock(folder):
        manifest = load_manifest(folder)  # re-read under the lock
        target = safe_artifact_path(folder, rt.FILE_NAME, what="error bound")
        listed = manifest.artifacts.get(rt.ARTIFACT_KEY, {}).get("file") == rt.FILE_NAME
        if target.exists() or target.is_symlink():
            if not _is_ours(target, listed):
                raise HpsedgeError(f"{target} exists and was not written by hpsedge; not replacing it",
                                   hint="move it away first")
            if not force:
                raise HpsedgeError(f"{target} holds an error bound already", hint="pass --force to replace it")
        body = dumps_strict({k: v for k, v in doc.items() if k != "written"}, indent=1, ensure_ascii=False) + "\n"
        atomic_write(target, body)
        raw = json.loads(json.dumps(manifest.raw))
        old = raw["artifacts"].get(rt.ARTIFACT_KEY)
        if old is not None and old.get("file") != rt.FILE_NAME:
            raise ManifestError(f"the manifest's error_bound artifact names {old.get('file')!r}, not {rt.FILE_NAME}")
        raw["artifacts"][rt.ARTIFACT_KEY] = {
            "file": rt.FILE_NAME, "sha256": sha256_file(target), "bytes": target.stat().st_size,
            "coverage": doc["coverage"], "uncertainty": doc["uncertainty"],
        }
        mpath = folder / MANIFEST_NAME
        atomic_write(mpath, dumps_strict(raw, indent=2) + "\n")
    log.info("error bound written: %s (coverage %.2f)", target, doc["coverage"])
    return target


# ------------------------------------------------------------------------------------ pictures
def reliability_chart(path: Path, doc: dict[str, Any], title: str | None = None) -> Path:
    """Nominal vs achieved held-out coverage per group (solid: σ-scaled bound; dashed: constant bound)."""
    from hpsedge.eval.plots import PALETTE, Series, line_chart

    series = []
    for i, (name, g) in enumerate(doc["groups"].items()):
        rel = [r for r in g["reliability"] if r["achieved"] is not None]
        if not rel:
            continue
        color = PALETTE[i % len(PALETTE)]
        x = [r["nominal"] for r in rel]
        series.append(Series(f"{name} ({doc['uncertainty']}-scaled)", x, [r["achieved"] for r in rel], color=color))
        if i == 0:
            series.append(Series(f"{name} (constant)", x, [r["achieved_constant"] for r in rel], dashed=True,
                                 color=(120, 120, 120)))
    if series:
        lo = min(series[0].x)
        series.append(Series("ideal", [lo, 1.0], [lo, 1.0], dashed=True, color=(0, 0, 0)))
    return line_chart(path, series, title or f"Reliability of the error bound: {doc['model']}",
                      "nominal coverage", "achieved coverage (held-out split)")


def coverage_by_uncertainty_chart(path: Path, doc: dict[str, Any], group: str = "body",
                                  title: str | None = None) -> Path:
    """Held-out coverage per uncertainty quartile of ``group`` at the nominal level: σ-scaled vs constant bound."""
    from hpsedge.eval.plots import Series, line_chart

    g = doc["groups"][group]
    bins, const = g["by_uncertainty"], g["by_uncertainty_constant"]
    x = [float(i + 1) for i in range(len(bins))]
    cov = float(doc["coverage"])
    series = [
        Series(f"{doc['uncertainty']}-scaled bound", x, [b["coverage"] for b in bins], color=(31, 119, 180)),
        Series("constant bound", x, [b["coverage"] for b in const], color=(214, 39, 40)),
        Series(f"nominal {cov:.0%}", [x[0], x[-1]], [cov, cov], dashed=True, color=(0, 0, 0)),
    ]
    return line_chart(path, series, title or f"Coverage by uncertainty quartile ({group}): {doc['model']}",
                      "uncertainty quartile (1 = most certain)", "achieved coverage (held-out split)")
