"""One shard of curation work: run a predictor over image items and return the training arrays.

Both runners use this module: the local one (:mod:`hpsedge.curate.core`) and Ray Data
(:mod:`hpsedge.curate.ray_runner`), so a shard's bytes are the same whichever ran it.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import InputError
from hpsedge.runtime.io import read_image

SPIN_PART_SLICE = slice(25, 49)
SHARD_DIR = "shards"
#: progress(done images, total images, images per second)
ProgressFn = Callable[[int, int, float], None]
Item = tuple[str, np.ndarray]  # (image path relative to the root, boxes [K, 4])


def trainer_boxes(boxes: np.ndarray, bbox_scale: float = 1.0) -> np.ndarray:
    """The boxes whose crop is the one POCO's trainer takes from the rounded ``center``/``scale``.

    ``crop_cv2`` (``pocolib/utils/image_utils.py``) crops a square of side ``round(scale·200)`` centred at
    ``(round(cx), round(cy))`` (Python/numpy rounding: halves to even). The runtime crops the square of side
    ``max(w, h)·bbox_scale`` around the box centre, so the returned boxes are the squares of side
    ``round(size)/bbox_scale`` around the rounded centre. Sides round to at least 1 px.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    center = np.rint(np.stack(((b[:, 0] + b[:, 2]) / 2.0, (b[:, 1] + b[:, 3]) / 2.0), axis=1))
    side = np.maximum(np.rint(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) * bbox_scale), 1.0)
    half = side / bbox_scale / 2.0
    return np.stack((center[:, 0] - half, center[:, 1] - half, center[:, 0] + half, center[:, 1] + half), axis=1)


def spin_part(joints49_2d: np.ndarray | None, image_hw: tuple[int, int]) -> np.ndarray:
    """``part`` [24, 3] of one person: SPIN-order pixels (0-based) and visibility (1 inside the image)."""
    part = np.zeros((24, 3), dtype=np.float32)
    if joints49_2d is None:
        return part
    xy = np.asarray(joints49_2d, dtype=np.float64)[SPIN_PART_SLICE]
    h, w = image_hw
    ok = np.isfinite(xy).all(axis=1) & (np.abs(xy) < 1e7).all(axis=1)
    inside = ok & (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)
    part[ok, :2] = xy[ok]
    part[:, 2] = inside
    return part


# ============================================================================================== predict
_FIELDS = {  # key: (trailing shape, dtype)
    "image_index": ((), np.int64), "person_id": ((), np.int32), "center": ((2,), np.float32),
    "scale": ((), np.float32), "pose": ((72,), np.float32), "shape": ((10,), np.float32),
    "var": ((24,), np.float32), "bbox": ((4,), np.float32), "score": ((), np.float32),
    "confidence": ((), np.float32), "cam": ((3,), np.float32), "transl": ((3,), np.float32),
    "part": ((24, 3), np.float32),
}


def _one_blas_thread() -> Any:
    """numpy's BLAS single-threaded for the block: the SMPL maths (``part``) then rounds the same way in a
    Ray actor (one CPU, one BLAS thread) as in a local run, so both write identical files."""
    from hpsedge.runtime import smpl as smpl_mod

    guard = getattr(smpl_mod, "_blas_single_thread", None)
    return guard() if guard is not None else contextlib.nullcontext()


def process_items(predictor: Any, root: str | Path, items: Sequence[Item], first_index: int = 0,
                  round_boxes: bool = False) -> dict[str, np.ndarray]:
    """Run the predictor over ``items``; every person's arrays (person axis first) plus ``skipped``.

    An image that cannot be read is skipped and listed in ``skipped`` (``"name: reason"``), not fatal: one bad
    file should not stop a million-image job. With ``round_boxes`` each person is predicted on the crop the
    trainer will take (:func:`trainer_boxes`); ``bbox`` keeps the box as given. ``part`` holds the SPIN
    keypoints when the predictor has an SMPL model with ``J_regressor_extra`` (else zeros).
    """
    root = Path(root)
    rows: dict[str, list[Any]] = {k: [] for k in _FIELDS}
    names: list[str] = []
    skipped: list[str] = []
    has_sigma = bool(getattr(predictor, "has_sigma", True))
    for n, (name, bxs) in enumerate(items):
        try:
            rgb = read_image(root / name)
        except InputError as exc:
            skipped.append(f"{name}: {exc.message}")
            continue
        crop_boxes = bxs
        if round_boxes and len(bxs):
            prep = getattr(predictor, "preprocessing", None) or {}
            crop_boxes = trainer_boxes(bxs, float(prep.get("bbox_scale", 1.0)))
        with _one_blas_thread():
            people = predictor.predict(rgb, crop_boxes) if len(bxs) else []
        for pid, r in enumerate(people):
            names.append(name)
            rows["image_index"].append(first_index + n)
            rows["person_id"].append(pid)
            center, size = np.asarray(r.center, np.float64), float(r.size)
            if round_boxes:  # exact integers, as crop_cv2 will round them (undo float noise of the box maths)
                center, size = np.rint(center), float(np.rint(size))
            rows["center"].append(center)
            rows["scale"].append(size / 200.0)
            rows["pose"].append(np.asarray(r.pose_axis_angle).reshape(72))
            rows["shape"].append(np.asarray(r.betas)[:10])
            rows["var"].append(r.sigma if r.sigma is not None else np.full(24, np.nan))
            rows["bbox"].append(np.asarray(bxs[pid], dtype=np.float32))
            rows["score"].append(np.nan if r.score is None else r.score)
            rows["confidence"].append(np.nan if r.confidence is None else r.confidence)
            rows["cam"].append(r.cam_crop)
            rows["transl"].append(r.transl)
            rows["part"].append(spin_part(getattr(r, "joints49_2d", None), rgb.shape[:2]))
    out: dict[str, np.ndarray] = {"imgname": np.array(names, dtype=str)}
    for key, (shape, dtype) in _FIELDS.items():
        out[key] = np.array(rows[key], dtype=dtype).reshape((len(names), *shape))
    if not has_sigma:
        out.pop("var")
    out["skipped"] = np.array(skipped, dtype=str)
    return out


def shard_to_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def shard_path(out: Path, index: int) -> Path:
    return out / SHARD_DIR / f"shard-{index:05d}.npz"


