"""Pseudo-label curation: run an export over an image set with person boxes, keep the confident people.

The job (:func:`curate`):

1. **Plan.** The image set is the images named by the boxes: a COCO-style or ``{"img.jpg": [[x1,y1,x2,y2]…]}``
   boxes file (:func:`hpsedge.runtime.io.parse_boxes`), or a folder of per-image JSON files (``<stem>.json``
   beside nothing else, each a list of boxes or ``{"boxes": [...]}``). Names resolve against the images
   folder (as relative paths, else by unique file name); every name must resolve, so a boxes file made for
   another image set fails at once. Items are sorted by their relative path and cut into shards of
   ``shard_size`` images.
2. **Predict.** Each shard runs through a :class:`~hpsedge.runtime.predictor.Predictor` and is written as
   ``<out>/shards/shard-NNNNN.npz`` holding *every* person (kept or not) with σ, so the rule can change
   without re-running the model. Shards are written atomically (temporary file, then rename) and shards
   already on disk are skipped: an interrupted job restarts where it stopped. ``<out>/job.json`` records
   what the shards were made from (model artifact hash, image list and boxes hash, shard size); a
   different job in the same folder is refused (``force=True`` starts over). With ``ray`` the shards are
   computed on Ray Data (:mod:`hpsedge.curate.ray_runner`): same shards, same bytes of arrays.
3. **Merge.** The shards are read in order and the rule (:mod:`hpsedge.curate.rules`, official default
   ``pelvis_sigma<0.3``) picks the people written to ``<out>/pseudo_labels.npz``, plus ``summary.json``
   and ``sigma_hist.png``.

``pseudo_labels.npz`` follows the SPIN / EFT / POCO training layout (``pocolib/dataset/base_dataset.py``
reads it; every array has the person axis first, because that loader indexes all of them with the selected
rows):

* ``imgname`` [N] str: image path relative to the images folder.
* ``center`` [N,2], ``scale`` [N]: the square crop box, centre (px) and side/200, the side being
  ``max(w, h)·bbox_scale`` as the runtime crops it. With ``round_boxes`` (the default) both are the integers
  the trainer's ``crop_cv2`` rounds them to (centre and side), and the prediction was made on that very crop.
* ``pose`` [N,72] (axis-angle, global orientation first), ``shape`` [N,10], ``has_smpl`` [N] (1).
* ``part`` [N,24,3]: the 24 SPIN-order keypoints (the last 24 of the 49-joint set) of the prediction in
  original-image pixels, 0-based (the loader adds 1 before its 1-based ``transform``), projected with the
  model's own camera; visibility 1 for joints inside the image, else 0. Needs the SMPL model and
  ``J_regressor_extra.npy``; ``part=False`` writes zeros (no 2D supervision).
* ``gender`` [N] str: ``'n'`` (the prediction comes from the neutral body model). POCO's loader turns
  every value but ``'m'`` into 1 (female), which only its gendered 3DPW evaluation reads.
* ``person_id`` [N] int32: box index within its image.
* ``sigma`` [N,24]: POCO's raw σ under a key the official loader does not read, so the rows the trainer uses
  are exactly the rows the rule kept. ``var`` [N,24] (the same values) only with ``write_var=True``: the
  official loader then re-selects rows itself, keeping σ₀ < ``DATASET.UNCERT_THRESHOLD`` (0.3 by default);
  the summary counts the kept rows that threshold would drop (``trainer.rows_the_trainer_threshold_would_drop``)
  and warns, in ``summary.json`` too, when it would drop some, or all of them (``strict`` then fails: the
  official ``MixedDataset`` takes ``index % len(dataset)`` of an empty dataset).
* hpsedge extras: ``bbox`` [N,4] (x1,y1,x2,y2 as given), ``score`` [N] (POCO), ``confidence`` [N].

A model without σ (TokenHMR) writes no ``sigma``/``var`` and needs a ``confidence``/``score`` rule or ``all``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.curate.rules import Rule, metric_values, parse_rule
from hpsedge.curate.shards import (
    SHARD_DIR,
    Item,
    ProgressFn,
    process_items,
    shard_path,
    shard_to_bytes,
)
from hpsedge.errors import HpsedgeError, InputError
from hpsedge.runtime.files import atomic_write, sha256_file
from hpsedge.runtime.io import IMAGE_SUFFIXES, load_boxes
from hpsedge.runtime.manifest import dumps_strict

log = logging.getLogger(__name__)

__all__ = ["OUTPUT_NAME", "curate", "merge_shards", "plan_items", "process_items"]

OUTPUT_NAME = "pseudo_labels.npz"
#: ``DATASET.UNCERT_THRESHOLD`` of the official POCO trainer (``pocolib/core/config.py``)
TRAINER_UNCERT_THRESHOLD = 0.3
#: summary["trainer"] key: kept rows whose pelvis σ is not below the trainer threshold (--trainer-threshold)
TRAINER_DROP_KEY = "rows_the_trainer_threshold_would_drop"
#: its name before it was renamed (it counts for any threshold, not only the default); readers accept both
LEGACY_TRAINER_DROP_KEY = "rows_the_default_threshold_would_drop"

JOB_FILE = "job.json"
#: the 24 SPIN "ground-truth" keypoints are the last 24 of the 49-joint set


# ================================================================================================ plan
def _list_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _boxes_from_dir(root: Path, images: list[Path], box_dir: Path) -> list[Item]:
    items: list[Item] = []
    missing: list[str] = []
    for img in images:
        rel = img.relative_to(root)
        cand = [box_dir / rel.with_suffix(".json"), box_dir / f"{img.stem}.json"]
        path = next((c for c in cand if c.is_file()), None)
        if path is None:
            missing.append(rel.as_posix())
            continue
        items.append((rel.as_posix(), load_boxes(path, per_image=True)[""]))
    if missing:
        raise InputError(
            f"{box_dir} has no boxes file for {len(missing)} of {len(images)} images: {', '.join(missing[:3])}"
            + (" …" if len(missing) > 3 else ""),
            hint="per-image boxes are <image stem>.json files, one per image",
        )
    return items


def plan_items(images: str | Path, boxes: str | Path) -> list[Item]:
    """The (relative image path, boxes) work list, sorted; raises InputError on an empty or mismatched set."""
    root = Path(images)
    if not root.is_dir():
        raise InputError(f"images folder not found: {root}", hint="pass the folder that holds the images")
    box_path = Path(boxes)
    if box_path.is_dir():
        files = _list_images(root)
        if not files:
            raise InputError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        items = _boxes_from_dir(root, files, box_path)
    else:
        table = load_boxes(box_path)
        if not table:
            raise InputError(f"{box_path} names no images: the image set is empty")
        if set(table) == {""}:
            raise InputError(f"{box_path} holds a bare list of boxes; curation needs boxes keyed by image name",
                             hint='{"img.jpg": [[x1, y1, x2, y2]], ...} or COCO-style')
        files = _list_images(root)
        if not files:
            raise InputError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        by_name: dict[str, list[Path]] = {}
        for f in files:
            by_name.setdefault(f.name, []).append(f)
        items = []
        missing: list[str] = []
        for key, bxs in table.items():
            direct = root / key
            if direct.is_file():
                items.append((direct.relative_to(root).as_posix(), bxs))
                continue
            hits = by_name.get(Path(key).name, [])
            if len(hits) == 1:
                items.append((hits[0].relative_to(root).as_posix(), bxs))
            else:
                missing.append(key if not hits else f"{key} (ambiguous: {len(hits)} files of that name)")
        if missing:
            raise InputError(
                f"{box_path} does not match {root}: {len(missing)} of its {len(table)} images are not there: "
                + ", ".join(missing[:3]) + (" …" if len(missing) > 3 else ""),
                hint="is this the boxes file of this image set? names resolve relative to the images folder",
            )
    if not items:
        raise InputError("the image set is empty: no images with boxes")
    names = [n for n, _ in items]
    if len(set(names)) != len(names):
        raise InputError(f"{boxes} lists the same image twice")
    return sorted(items, key=lambda it: it[0])


def _fingerprint(items: Sequence[Item], model: dict[str, Any], shard_size: int,
                 options: dict[str, Any] | None = None) -> dict[str, Any]:
    h = hashlib.sha256()
    for name, bxs in items:
        h.update(name.encode())
        h.update(np.asarray(bxs, dtype=np.float64).tobytes())
    fp = {"model": model, "images": len(items), "items_sha256": h.hexdigest(), "shard_size": int(shard_size)}
    if options:
        fp["options"] = options
    return fp


# ================================================================================================ merge
def trainer_drop(trainer: dict[str, Any]) -> int | None:
    """``summary["trainer"]``'s count of kept rows the trainer threshold drops, under its current or its old name."""
    value = trainer.get(TRAINER_DROP_KEY, trainer.get(LEGACY_TRAINER_DROP_KEY))
    return None if value is None else int(value)


def merge_shards(out: str | Path, num_shards: int, rule: Rule, meta: dict[str, Any], *, write_var: bool = False,
                 part: bool = True, trainer_threshold: float = TRAINER_UNCERT_THRESHOLD) -> dict[str, Any]:
    """Read the shards in order, apply ``rule``, write the training npz, summary and histogram.

    ``write_var``: also write σ as ``var``, which the official loader re-selects on (σ₀ < its
    ``UNCERT_THRESHOLD``; ``trainer_threshold`` is that value, for the summary's count of rows it would drop).
    ``part=False`` writes zero keypoints with visibility 0.
    """
    out = Path(out)
    parts = []
    for i in range(num_shards):
        with np.load(shard_path(out, i), allow_pickle=False) as z:
            parts.append({k: z[k] for k in z.files})
    keys = [k for k in parts[0] if k != "skipped"]
    allp = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    skipped = [str(s) for p in parts for s in p["skipped"].tolist()]
    sigma = allp.get("var")
    score, conf = allp["score"], allp["confidence"]
    conf_known = bool(np.isfinite(conf).all())
    score_known = bool(np.isfinite(score).all())
    keep = rule.apply(sigma, conf if conf_known else None) if rule.clauses else np.ones(len(conf), bool)
    n = int(keep.sum())
    train: dict[str, np.ndarray] = {
        "imgname": allp["imgname"][keep],
        "center": allp["center"][keep],
        "scale": allp["scale"][keep],
        "pose": allp["pose"][keep],
        "shape": allp["shape"][keep],
    }
    trainer: dict[str, Any] = {"var_written": bool(write_var and sigma is not None),
                               "uncert_threshold": float(trainer_threshold)}
    if sigma is not None:
        kept_sigma = sigma[keep]
        train["sigma"] = kept_sigma
        # get_confident_frames: accumulate along the chain (σ₀ unchanged), keep σ₀ < threshold
        drop = int((~(kept_sigma[:, 0] < trainer_threshold)).sum())
        trainer[TRAINER_DROP_KEY] = drop
        if write_var:
            train["var"] = kept_sigma
            trainer["rows_the_trainer_uses"] = n - drop
        else:
            trainer["rows_the_trainer_uses"] = n
    else:
        trainer["rows_the_trainer_uses"] = n
    train["has_smpl"] = np.ones(n, dtype=np.float32)
    part_arr = allp["part"][keep] if "part" in allp else np.zeros((n, 24, 3), np.float32)
    train["part"] = part_arr if part else np.zeros((n, 24, 3), dtype=np.float32)
    train["gender"] = np.full(n, "n")
    train["person_id"] = allp["person_id"][keep]
    train["bbox"] = allp["bbox"][keep]
    if score_known:
        train["score"] = score[keep]
    if conf_known:
        train["confidence"] = conf[keep]
    npz_path = out / OUTPUT_NAME
    buf = io.BytesIO()
    np.savez(buf, **train)
    atomic_write(npz_path, buf.getvalue())

    # histogram of the pelvis σ (or of the confidence for models without σ)
    if sigma is not None:
        hist_metric = "pelvis_sigma"
        values = metric_values("pelvis_sigma", sigma, None)
    else:
        hist_metric = "confidence"
        values = conf if conf_known else np.zeros(0)
    edges = np.linspace(0.0, 1.0, 21)
    counts_all = np.histogram(np.clip(values, 0, 1), edges)[0]
    counts_kept = np.histogram(np.clip(values[keep] if len(values) else values, 0, 1), edges)[0]
    threshold = next((v for m, _, v in rule.clauses if m == hist_metric), None)
    png = out / "sigma_hist.png"
    _histogram_png(png, edges, counts_all, counts_kept, hist_metric, threshold, rule.text)

    total = len(conf)
    summary = {
        **meta,
        "rule": rule.text,
        "images": meta.get("images"),
        "images_skipped": len(skipped),
        "skipped": skipped[:100],
        "people": total,
        "kept": n,
        "kept_fraction": round(n / total, 6) if total else 0.0,
        "trainer": trainer,
        "part": {"written": bool(part), "visible_fraction": round(float(train["part"][..., 2].mean()), 6) if n else 0.0},
        "histogram": {"metric": hist_metric, "edges": edges.round(4).tolist(), "all": counts_all.tolist(),
                      "kept": counts_kept.tolist()},
        "files": [OUTPUT_NAME, "summary.json", png.name, f"{SHARD_DIR}/"],
        "warnings": [],
    }
    if n == 0:
        msg = (f"no person passed the rule '{rule.text}' ({total} people in {meta.get('images')} images): "
               f"{OUTPUT_NAME} has no rows, and a training loader fed with it fails")
        summary["warnings"].append(msg)
        log.warning(msg)
    elif trainer["rows_the_trainer_uses"] == 0:
        msg = (f"with --var the official loader keeps none of the {n} rows: every kept person has pelvis σ >= "
               f"{trainer_threshold:g} (its DATASET.UNCERT_THRESHOLD), so its dataset is empty and training fails "
               f"(MixedDataset takes index % len(dataset)); raise that threshold or leave out --var")
        summary["warnings"].append(msg)
        log.warning(msg)
    elif trainer["var_written"] and trainer.get(TRAINER_DROP_KEY):
        msg = (f"the official loader keeps {trainer['rows_the_trainer_uses']} of these {n} rows (pelvis σ < "
               f"{trainer_threshold:g}, its DATASET.UNCERT_THRESHOLD, because --var wrote `var`)")
        summary["warnings"].append(msg)
        log.warning(msg)
    (out / "summary.json").write_text(dumps_strict(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def _histogram_png(path: Path, edges: np.ndarray, all_counts: np.ndarray, kept: np.ndarray, metric: str,
                   threshold: float | None, rule: str) -> None:
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        log.warning("Pillow is not installed: no histogram PNG (pip install pillow)")
        return
    w, h = 640, 400
    left, right, top, bottom = 60, 20, 40, 50
    from hpsedge.runtime.draw import _font, _text

    img = Image.new("RGB", (w, h), (255, 255, 255))
    d = ImageDraw.Draw(img)
    font, greek = _font(12)
    pw, ph = w - left - right, h - top - bottom
    peak = max(int(all_counts.max()) if len(all_counts) else 0, 1)
    nb = len(all_counts)
    bw = pw / nb
    for i in range(nb):
        x0 = left + i * bw
        for counts, color in ((all_counts, (190, 190, 190)), (kept, (60, 170, 90))):
            hh = ph * counts[i] / peak
            if counts[i]:
                d.rectangle([x0 + 1, top + ph - hh, x0 + bw - 1, top + ph], fill=color)
    d.line([(left, top), (left, top + ph), (left + pw, top + ph)], fill=(0, 0, 0), width=1)
    for v in np.linspace(0, 1, 6):
        x = left + v * pw
        d.line([(x, top + ph), (x, top + ph + 4)], fill=(0, 0, 0))
        d.text((x - 8, top + ph + 6), f"{v:.1f}", fill=(0, 0, 0), font=font)
    for frac in (0.0, 0.5, 1.0):
        y = top + ph - frac * ph
        d.text((4, y - 6), f"{round(frac * peak)}", fill=(0, 0, 0), font=font)
    if threshold is not None and 0 <= threshold <= 1:
        x = left + threshold * pw
        d.line([(x, top), (x, top + ph)], fill=(220, 40, 40), width=2)
        d.text((x + 4, top + 2), f"{threshold:g}", fill=(220, 40, 40), font=font)
    label = _text("pelvis σ₀ (raw, joint 0)" if metric == "pelvis_sigma" else metric, greek)
    d.text((left, 10), f"{label}: all (grey) and kept (green) by rule {_text(rule, greek)}", fill=(0, 0, 0), font=font)
    d.text((left + pw // 2 - d.textlength(label, font=font) / 2, h - 22), label, fill=(0, 0, 0), font=font)
    d.text((4, top - 16), "people", fill=(0, 0, 0), font=font)
    img.save(path)


# ================================================================================================ curate
def _model_info(export_dir: Path, precision: str | None, backend: str = "auto", device: str = "auto") -> dict[str, Any]:
    """What the job runs, as the Predictor will (:func:`hpsedge.runtime.predictor.choose_plan`): the graph or
    engine file, its verified sha256 and precision."""
    from hpsedge.runtime.predictor import choose_plan

    folder, plan = choose_plan(export_dir, backend, device, precision)
    return {"name": folder.model_name, "artifact": plan.file, "sha256": plan.sha256,
            "precision": plan.precision.value, "has_sigma": folder.manifest.has_sigma}


def curate(
    export_dir: str | Path,
    images: str | Path,
    boxes: str | Path,
    out: str | Path,
    *,
    rule: str | Rule = "pelvis_sigma<0.3",
    backend: str = "auto",
    device: str = "auto",
    threads: int | None = None,
    precision: str | None = None,
    shard_size: int = 256,
    ray: str | None = None,
    num_actors: int | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
    smpl: str | Path | None = None,
    j_regressor_extra: str | Path | None = None,
    part: bool = True,
    round_boxes: bool = True,
    write_var: bool = False,
    trainer_threshold: float = TRAINER_UNCERT_THRESHOLD,
    strict: bool = False,
) -> dict[str, Any]:
    """Curate pseudo-labels (see the module docstring). Returns the summary (also in ``summary.json``).

    Args:
        export_dir: export folder (``manifest.json`` + graph) of a POCO model.
        images: folder of images (searched recursively).
        boxes: COCO-style / ``{"img.jpg": [[x1,y1,x2,y2]…]}`` boxes file, or a folder of per-image JSON.
        out: output folder (created; an unfinished job there is resumed).
        rule: selection rule (:func:`hpsedge.curate.rules.parse_rule`), recorded in the outputs.
        backend, device, threads, precision: as :meth:`Predictor.load`.
        shard_size: images per shard (the unit of restart and of Ray work).
        ray: None for one process; ``"local"`` (or ``"auto"``) for Ray on this machine (an already running
            ``ray.init`` is reused), or a cluster address such as ``"ray://head:10001"``.
        num_actors: Ray actor pool size (default: one per CPU of the cluster).
        force: delete the shards of an earlier job in ``out`` and start over.
        progress: ``progress(done images, total images, images per second)``.
        smpl, j_regressor_extra: the SMPL model and ``J_regressor_extra.npy``; ``part`` needs both.
        part: write the 24 SPIN keypoints of the prediction (else zeros: no 2D supervision).
        round_boxes: predict on the integer crop the official trainer takes (:func:`trainer_boxes`).
        write_var: also write σ as ``var`` (the official loader then re-selects rows by σ₀).
        trainer_threshold: the trainer's ``DATASET.UNCERT_THRESHOLD``, for the summary's count.
        strict: raise :class:`HpsedgeError` (after writing the outputs) when nobody is kept, or when ``var`` is
            written and the official loader would keep nobody (σ₀ of every kept person >= ``trainer_threshold``).
    """
    t0 = time.perf_counter()
    parsed = parse_rule(rule)
    if shard_size < 1:
        raise InputError(f"shard_size must be >= 1, got {shard_size}")
    if not (np.isfinite(trainer_threshold) and trainer_threshold > 0):
        raise InputError(f"trainer threshold must be a positive number, got {trainer_threshold}")
    if part and (smpl is None or j_regressor_extra is None):
        raise InputError(
            "`part` (the 2D keypoints the trainer supervises 2D joints and the camera with) needs the SMPL model "
            "and J_regressor_extra.npy",
            hint="pass --smpl SMPL_NEUTRAL.npz --j-regressor-extra J_regressor_extra.npy, or --no-part for zero "
                 "keypoints (no 2D supervision)",
        )
    for label, path in (("SMPL file", smpl), ("J_regressor_extra file", j_regressor_extra)):
        if path is not None and not Path(path).is_file():
            raise InputError(f"{label} not found: {path}")
    export_dir = Path(export_dir)
    model = _model_info(export_dir, precision, backend, device)
    if parsed.needs_sigma and not model["has_sigma"]:
        raise InputError(f"rule '{parsed.text}' needs σ, but {model['name']} has no uncertainty head",
                         hint="use a poco-* export, or a 'confidence'/'score' rule, or --rule all")
    root = Path(images)
    items = plan_items(root, boxes)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder")
    options: dict[str, Any] = {"round_boxes": bool(round_boxes)}
    if part:
        options["smpl_sha256"] = sha256_file(smpl)  # type: ignore[arg-type]
        options["j_regressor_extra_sha256"] = sha256_file(j_regressor_extra)  # type: ignore[arg-type]
    fp = _fingerprint(items, model, shard_size, options)
    job_file = out / JOB_FILE
    if force and (out / SHARD_DIR).exists():
        shutil.rmtree(out / SHARD_DIR)
    if job_file.exists() and (out / SHARD_DIR).exists():
        try:
            old = json.loads(job_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            old = None
        if old != fp:
            raise HpsedgeError(f"{out} holds shards of a different curation job (model, images, boxes or shard size)",
                               hint="pass --force to start over, or choose another --out")
    (out / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    job_file.write_text(json.dumps(fp, indent=1) + "\n", encoding="utf-8")

    shards = [items[i : i + shard_size] for i in range(0, len(items), shard_size)]
    todo = [i for i in range(len(shards)) if not shard_path(out, i).exists()]
    reused = len(shards) - len(todo)
    if reused:
        log.info("%d of %d shards already written; resuming", reused, len(shards))
    load_kwargs: dict[str, Any] = {"backend": backend, "device": device, "threads": threads, "precision": precision}
    if part:
        load_kwargs.update(smpl=str(Path(smpl).resolve()), j_regressor_extra=str(Path(j_regressor_extra).resolve()))
    if todo:
        if ray is None:
            _run_local(export_dir, load_kwargs, root, shards, todo, shard_size, out, progress, round_boxes)
        else:
            from hpsedge.curate.ray_runner import run_ray

            run_ray(ray, export_dir, load_kwargs, root, shards, todo, shard_size, out, num_actors, progress,
                    round_boxes=round_boxes)
    meta = {
        "model": model["name"],
        "graph": model["artifact"],
        "graph_sha256": model["sha256"],
        "precision": model["precision"],
        "export_dir": str(export_dir),
        "images_root": str(root),
        "boxes": str(boxes),
        "images": len(items),
        "shards": len(shards),
        "shards_reused": reused,
        "engine": "local" if ray is None else f"ray ({ray})",
        "round_boxes": bool(round_boxes),
    }
    summary = merge_shards(out, len(shards), parsed, meta, write_var=write_var, part=part,
                           trainer_threshold=trainer_threshold)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    (out / "summary.json").write_text(dumps_strict(summary, indent=1) + "\n", encoding="utf-8")
    if strict and summary["kept"] == 0:
        raise HpsedgeError(summary["warnings"][0], hint="loosen --rule, or check the images and boxes")
    if strict and summary["trainer"]["rows_the_trainer_uses"] == 0:
        raise HpsedgeError(summary["warnings"][0],
                           hint="raise --trainer-threshold (and DATASET.UNCERT_THRESHOLD) or leave out --var")
    return summary


def _run_local(export_dir: Path, load_kwargs: dict[str, Any], root: Path, shards: list[list[Item]], todo: list[int],
               shard_size: int, out: Path, progress: ProgressFn | None, round_boxes: bool = False) -> None:
    from hpsedge.runtime.predictor import Predictor

    predictor = Predictor.load(export_dir, **load_kwargs)
    total = sum(len(shards[i]) for i in todo)
    done = 0
    t0 = time.perf_counter()
    try:
        for i in todo:
            arrays = process_items(predictor, root, shards[i], first_index=i * shard_size, round_boxes=round_boxes)
            atomic_write(shard_path(out, i), shard_to_bytes(arrays))
            done += len(shards[i])
            if progress is not None:
                progress(done, total, done / max(time.perf_counter() - t0, 1e-9))
    finally:
        predictor.close()
