"""``hpsedge val``: accuracy of build folders on an evaluation set, as the HPS papers measure it.

For every sample of an evaluation file (SPIN/PARE/POCO layout, see :mod:`hpsedge.eval.data`) and every folder:
the runtime's :class:`~hpsedge.runtime.predictor.Predictor` (numpy + ONNX Runtime or TensorRT, no torch) runs
the person box ``center ± scale·100`` cropped as the chosen protocol's official evaluation crops it
(``poco-3dpw``: POCO's ``crop_cv2`` takes the integer centre and side, while CLIFF's ``bbox_info`` keeps the
exact box; TokenHMR: the exact box; no anti-alias blur, which only the demos apply). The predicted mesh
(neutral SMPL) and the ground-truth mesh (the gendered SMPL when given and the row says ``m``/``f``, else the
neutral one) are scored by the protocol (:data:`hpsedge.eval.metrics.PROTOCOLS`: joint regressor, scored joints,
root, PVE alignment): MPJPE, PA-MPJPE and PVE in millimetres. Rows with ``has_smpl = 0`` are scored, as both
official evaluations do (POCO's loader against pose 0 and betas 0, TokenHMR's against the stored values).

Uncertainty quality, two figures named for what they are:

* per person: the official POCO score (``PersonResult.score``: CLIFF the pelvis σ, PARE/HMR the mean
  kinematically accumulated σ, clipped to [0, 0.99]) or, for TokenHMR, ``1 − token_confidence``, against PA-MPJPE:
  Pearson and Spearman correlation, the sparsification curve and the AUSE (mm). Ties in the score (e.g. several
  people at 0.99) are broken by sample order. This is hpsedge's figure, not one a paper logs.
* per joint (POCO models): the correlation POCO's trainer logs as "Uncert Error Correlation" — Pearson's r over
  every (sample, joint) pair of the rotation-matrix MSE against σ (raw, as the released configs have
  ``KINEMATIC_UNCERT: false``, and accumulated along the kinematic chain).

Per-sample results are appended to ``OUT/samples/<label>.jsonl`` as they are computed, so an interrupted run
resumes where it stopped (same data, folders and protocol; ``config.json`` says which).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import HpsedgeError, InputError
from hpsedge.eval import metrics
from hpsedge.eval.data import EvalSet, load_eval_set, load_j_regressor, resolve_images
from hpsedge.runtime import confidence, rotations
from hpsedge.runtime.files import atomic_write, sha256_file
from hpsedge.runtime.folder import Precision

log = logging.getLogger(__name__)

__all__ = ["ValConfig", "parse_target", "run_val"]

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
    #: J_regressor_h36m.npy (poco-3dpw) or SMPL_to_J19.pkl (tokenhmr-3dpw); tokenhmr-emdb uses SMPL's own
    j_regressor: Path | None = None
    smpl_male: Path | None = None
    smpl_female: Path | None = None
    max_samples: int | None = None
    protocol: str = "poco-3dpw"  #: :data:`hpsedge.eval.metrics.PROTOCOLS`
    pelvis: str | None = None  #: None: the protocol's root; "lsp-hips" swaps poco-3dpw's (no paper's protocol)
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
        return Path(base), Precision.parse(prec, f"'{s}': the precision after @").value
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


def _graph_file(pred: Any) -> str:
    """The graph or engine file the Predictor runs (its plan, from :class:`hpsedge.runtime.folder.BuildFolder`)."""
    return str(pred.plan.file)


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


def _confidence_label(rule: str) -> str:
    """``1 − <the confidence output>``: ``"1 − token confidence"`` for TokenHMR's ``token_confidence``."""
    return f"1 − {rule.replace('_', ' ')}"


def _uncertainty(person: Any, rule: str | None = None) -> tuple[float | None, str | None]:
    """A person's uncertainty and what it is: the official σ score, else 1 − the confidence (of output ``rule``)."""
    if person.score is not None:
        return float(person.score), _POCO_SCORE
    if person.confidence is not None:
        return 1.0 - float(person.confidence), _confidence_label(rule) if rule else "1 − confidence"
    return None, None


def run_val(cfg: ValConfig, progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Evaluate ``cfg.folders`` on ``cfg.data`` (see the module docstring); returns the results document."""
    from hpsedge.runtime.io import read_image
    from hpsedge.runtime.predictor import Predictor

    t_start = time.perf_counter()
    try:
        proto = metrics.get_protocol(cfg.protocol, cfg.pelvis)
    except ValueError as exc:
        raise InputError(str(exc).replace("protocol ", "--protocol ").replace("pelvis ", "--pelvis "),
                         hint=f"protocols: {', '.join(metrics.PROTOCOLS)}") from None
    if cfg.max_samples is not None and cfg.max_samples < 1:
        raise InputError("--max-samples must be at least 1")
    if proto.regressor_rows is None and cfg.j_regressor is not None:
        raise InputError(f"--protocol {proto.name} regresses joints with the SMPL file's own J_regressor; "
                         "--j-regressor is not used", hint="leave out --j-regressor")
    if proto.regressor_rows is not None and cfg.j_regressor is None:
        want = "J_regressor_h36m.npy" if proto.regressor == "h36m" else "SMPL_to_J19.pkl (TokenHMR's data)"
        raise InputError(f"--protocol {proto.name} needs --j-regressor {want}")
    targets = _targets(cfg.folders)
    data = load_eval_set(cfg.data, cfg.max_samples)
    paths = resolve_images(cfg.images, data.imgname)
    neutral, gendered, smpl_note = _load_smpl_models(cfg, data)
    if cfg.j_regressor is not None:
        jreg = load_j_regressor(cfg.j_regressor, proto.regressor_rows or 17)
    else:  # TokenHMR's EMDB code: the neutral SMPL's J_regressor (smplx.SMPL(MODEL_PATH).J_regressor)
        jreg = np.asarray(neutral.j_regressor, dtype=np.float64)

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
            "precision": pred.plan.precision.value,
            "graph": _graph_file(pred),
            "backend": f"{pred.backend.name} ({pred.backend.device})",
        })
    config = {
        "data": str(cfg.data.resolve()),
        "data_sha256": sha256_file(cfg.data),
        "j_regressor_sha256": None if cfg.j_regressor is None else sha256_file(cfg.j_regressor),
        "smpl": [str(Path(p).resolve()) if p else None for p in (cfg.smpl, cfg.smpl_male, cfg.smpl_female)],
        "protocol": proto.name,
        "folders": [{k: d[k] for k in ("label", "folder", "precision", "graph")} for d in described],
    }
    _prepare_out(cfg, config)
    files = {t.label: cfg.out / "samples" / f"{_safe(t.label)}.jsonl" for t in targets}
    done = {label: _read_samples(path) for label, path in files.items()}
    resumed = {label: sum(1 for r in data.rows if int(r) in d) for label, d in done.items()}
    n = len(data)
    side = data.scale * 200.0
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
            body = gendered.get(data.gender[i]) if (gendered and data.gender) else None  # 'n': neutral
            gt_pose, gt_shape = ground_truth(data, i, proto)
            gt = (body or neutral).forward(gt_shape, gt_pose)
            gt_v = gt.vertices.astype(np.float64)
            gt_j, gt_root = metrics.protocol_joints(gt_v, jreg, proto)
            gt_rot = rotations.axis_angle_to_rotmat(gt_pose.reshape(1, 24, 3))
            for t in todo:
                p = predict_sample(predictors[t.label], image, data.center[i], float(side[i]), proto)
                if p.vertices is None:
                    raise HpsedgeError(f"{t.label}: no prediction for sample {row} ({data.imgname[i]})")
                pv = p.vertices[None].astype(np.float64)
                pj, p_root = metrics.protocol_joints(pv, jreg, proto)
                unc, _kind = _uncertainty(p)
                if proto.pve_root_aligned:
                    pve = metrics.pve(pv - p_root, gt_v - gt_root)[0]
                else:
                    pve = metrics.pve(pv, gt_v)[0]
                rec = {
                    "row": row,
                    "imgname": data.imgname[i],
                    "has_smpl": bool(data.has_smpl[i]),
                    "mpjpe": 1000.0 * float(metrics.mpjpe(pj, gt_j)[0]),
                    "pa_mpjpe": 1000.0 * float(metrics.pa_mpjpe(pj, gt_j)[0]),
                    "pve": 1000.0 * float(pve),
                    "uncertainty": unc,
                    "confidence": None if p.confidence is None else float(p.confidence),
                    "rotmat_mse": [float(v) for v in metrics.rotmat_mse(p.pose_rotmat[None], gt_rot)[0]],
                    "sigma": None if p.sigma is None else [float(v) for v in p.sigma],
                    # for `hpsedge calib error-bound` (hpsedge.eval.error_bound): per-joint root-relative errors
                    # (mm, the protocol's joint order) and POCO's score
                    "joint_errors": [round(1000.0 * float(v), 4) for v in np.linalg.norm(pj - gt_j, axis=-1)[0]],
                    "score": None if p.score is None else float(p.score),
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
        "rows_without_smpl": data.without_smpl,
        "protocol": {
            "name": proto.name,
            "official_code": proto.source,
            "joints": proto.joints_text,
            "pelvis": proto.root_text,
            "pve": "root-aligned meshes" if proto.pve_root_aligned else "meshes as the models return them (POCO's vert_error)",
            "pa": "similarity Procrustes (rotation, scale, translation) of the prediction onto the ground truth",
            "crop": ("integer centre and side (POCO's crop_cv2); CLIFF's bbox_info from the exact box"
                     if proto.round_crop else "the exact box (TokenHMR's get_example), no anti-alias blur"),
            "without_smpl": ("rows with has_smpl = 0 scored against pose 0, betas 0 (POCO's loader)"
                             if proto.zero_gt_without_smpl else "rows with has_smpl = 0 scored against their stored values"),
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
    rule = pred.plan.confidence_rule if pred.plan is not None else pred.manifest.confidence_rule
    return None if rule is None else _confidence_label(rule)


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in label)


def ground_truth(data: EvalSet, i: int, proto: metrics.Protocol) -> tuple[np.ndarray, np.ndarray]:
    """Row ``i``'s ground-truth (pose [1, 72], betas [1, 10]); POCO's loader zeroes both where has_smpl is 0."""
    if proto.zero_gt_without_smpl and not data.has_smpl[i]:
        return np.zeros((1, 72)), np.zeros((1, 10))
    return data.pose[i : i + 1], data.shape[i : i + 1]


def crop_box(center: np.ndarray, side: float, proto: metrics.Protocol) -> np.ndarray:
    """[1, 4] box that is cropped: POCO's ``crop_cv2`` rounds centre and side to integers (``int(round(·))``,
    ties to even as Python's ``round``); TokenHMR crops the exact box."""
    c = np.asarray(center, dtype=np.float64).reshape(2)
    s = float(side)
    if proto.round_crop:
        c = np.array([float(round(c[0])), float(round(c[1]))])
        s = float(round(s))
    return np.array([[c[0] - s / 2.0, c[1] - s / 2.0, c[0] + s / 2.0, c[1] + s / 2.0]])


def predict_sample(pred: Any, image: np.ndarray, center: np.ndarray, side: float, proto: metrics.Protocol) -> Any:
    """One person as the protocol's official evaluation feeds the model: the crop of :func:`crop_box`, CLIFF's
    ``bbox_info`` from the exact box (POCO's ``calculate_bbox_info(center, scale)``), no anti-alias blur."""
    from hpsedge.runtime.preprocess import cliff_bbox_info, preprocess

    box = crop_box(center, side, proto)
    feeds, meta = preprocess(image, box, pred.preprocessing)
    if "bbox_info" in feeds:
        feeds["bbox_info"] = cliff_bbox_info(np.asarray(center, dtype=np.float64).reshape(1, 2),
                                             np.array([float(side)]), meta.image_hw)
    people = pred.postprocess(pred.run_batched(feeds), meta, box)
    if len(people) != 1:
        raise HpsedgeError(f"expected one prediction for the box {box[0].tolist()}, got {len(people)}")
    return people[0]


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
    out["per_joint_uncertainty"] = _per_joint(recs)
    return out


def _per_joint(recs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """POCO's logged per-joint correlation (``trainer.py`` → ``accumulate_corr_vect``): Pearson's r over every
    (sample, joint) pair of the rotation-matrix MSE against σ, raw and kinematically accumulated."""
    if not recs or any(r.get("sigma") is None or r.get("rotmat_mse") is None for r in recs):
        return None
    sigma = np.array([r["sigma"] for r in recs], dtype=np.float64)
    mse = np.array([r["rotmat_mse"] for r in recs], dtype=np.float64)
    return {
        "definition": "Pearson r over (sample, joint) pairs: rotation-matrix MSE (mean over the 3x3 entries) vs σ "
                      "(POCO trainer.py, logged as 'Uncert Error Correlation')",
        "pairs": int(mse.size),
        "pearson_rotmat_mse_sigma": metrics.pearson(mse.ravel(), sigma.ravel()),
        "pearson_rotmat_mse_accumulated_sigma": metrics.pearson(
            mse.ravel(), confidence.accumulate_sigma(sigma.astype(np.float32)).astype(np.float64).ravel()),
    }


def _f(v: float | None, nd: int = 1) -> str:
    return "–" if v is None else f"{v:.{nd}f}"


def markdown(doc: dict[str, Any]) -> str:
    """The results table (one row per folder, all on the same samples)."""
    proto = doc["protocol"]
    lines = [
        f"# hpsedge val: {Path(doc['data']).name}, {doc['samples']} samples",
        "",
        f"Protocol `{proto.get('name', 'poco-3dpw')}`: {proto['joints']}; root: {proto['pelvis']}; PVE: {proto['pve']}; "
        f"PA: {proto['pa']}; crop: {proto.get('crop', '–')}. "
        f"{proto['smpl'][0].upper() + proto['smpl'][1:]}. All errors in mm; every folder ran the same samples.",
        "",
        "| folder | model | precision | graph | backend | MPJPE | PA-MPJPE | PVE | per-person uncertainty | "
        "Pearson r (PA) | Spearman ρ (PA) | AUSE (PA, mm) | per-joint r, rotmat MSE vs σ (POCO's logged) | "
        "per-joint r vs accumulated σ |",
        "| --- | --- | --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for f in doc["folders"]:
        r = doc["results"][f["label"]]
        u = r.get("uncertainty") or {}
        pj = r.get("per_joint_uncertainty") or {}
        lines.append(
            f"| {f['label']} | {f['model']} | {f['precision']} | {f['graph']} | {f['backend']} | "
            f"{r['mpjpe']['mean']:.2f} | {r['pa_mpjpe']['mean']:.2f} | {r['pve']['mean']:.2f} | {u.get('score') or '–'} | "
            f"{_f(u.get('pearson_pa_mpjpe'), 3)} | {_f(u.get('spearman_pa_mpjpe'), 3)} | {_f(u.get('ause_pa_mpjpe'), 2)} | "
            f"{_f(pj.get('pearson_rotmat_mse_sigma'), 3)} | {_f(pj.get('pearson_rotmat_mse_accumulated_sigma'), 3)} |"
        )
    if doc.get("rows_without_smpl"):
        lines += ["", f"{doc['rows_without_smpl']} row(s) have has_smpl = 0 and were scored as the official code "
                      f"does ({proto.get('without_smpl', '')}); `samples/*.jsonl` marks them."]
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


