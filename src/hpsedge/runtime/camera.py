"""Weak-perspective crop cameras → translations and 2D projections, in numpy.

Conventions:

* ``cam`` is the network's ``pred_cam`` ``[K, 3] = (s, tx, ty)``: a weak-perspective camera in the
  **normalised crop** (crop coordinates in ``[−1, 1]``, ``x_n = s·(X + tx)``, ``y_n = s·(Y + ty)``).
* 3D points are in metres in the camera-aligned SMPL frame (x right, y down, z forward, OpenCV style), as
  the models output them; translations are added to them: ``P_cam = P + t``.
* 2D points are pixels ``(x, y)``, x to the right, y downwards.
* ``center [K, 2]`` and ``size [K]`` are :class:`hpsedge.runtime.preprocess.CropMeta`'s: the box centre in
  source pixels and the side ``b`` (pixels) of the square box that was cropped (POCO's ``scale·200``).
* ``image_hw`` is ``(H, W)`` of the source image.

The official code divides by the scale ``s`` unguarded. :func:`full_image_translation` and
:func:`weak_perspective_orig` replace ``|s| < 1e-9`` by ``±1e-9`` with the sign of ``s`` (``s = 0`` becomes
``+1e-9``), so a degenerate camera gives a huge but finite depth instead of inf/NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hpsedge.errors import InputError

__all__ = [
    "SCALE_EPS",
    "crop_translation",
    "full_image_translation",
    "project_crop_to_image",
    "project_full",
    "project_pinhole",
    "weak_perspective_orig",
]

#: Smallest |s| used in divisions (see the module docstring).
SCALE_EPS = 1e-9


def _cam(cam: np.ndarray) -> np.ndarray:
    c = np.asarray(cam, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != 3:
        raise InputError(f"cam must be [K, 3] (s, tx, ty), got shape {tuple(c.shape)}")
    return c


def _safe_scale(s: np.ndarray) -> np.ndarray:
    """``s`` with ``|s| < SCALE_EPS`` replaced by ``±SCALE_EPS`` (sign of ``s``; 0 → +)."""
    return np.where(np.abs(s) < SCALE_EPS, np.where(s < 0, -SCALE_EPS, SCALE_EPS), s)


def _center_size(center: np.ndarray, size: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(center, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(size, dtype=np.float64).reshape(-1)
    if c.shape[0] != k or b.shape[0] != k:
        raise InputError(f"center {c.shape} and size {b.shape} must have one row per person ({k})")
    return c, b


def _hw(image_hw: Sequence[int]) -> tuple[float, float]:
    h, w = (float(v) for v in image_hw)
    if not (h > 0 and w > 0):
        raise InputError(f"image_hw must be positive (H, W), got {tuple(image_hw)}")
    return h, w


def crop_translation(cam: np.ndarray, crop_size: float = 224.0, focal: float = 5000.0) -> np.ndarray:
    """The crop camera's translation ``[K, 3]``, exactly as POCO's ``smpl_head``.

    ``t = (tx, ty, 2·focal/(crop_size·s + 1e-9))``: a perspective camera with focal length ``focal``
    pixels and the principal point at the crop centre that reproduces the weak-perspective camera at the
    root depth. (The official ``+1e-9`` is kept as is; it is not a sign-aware guard.)
    """
    c = _cam(cam)
    tz = 2.0 * focal / (crop_size * c[:, 0] + 1e-9)
    return np.stack((c[:, 1], c[:, 2], tz), axis=1)


def full_image_translation(
    cam: np.ndarray,
    center: np.ndarray,
    size: np.ndarray,
    image_hw: Sequence[int],
    focal: float | np.ndarray | None = None,
) -> np.ndarray:
    """CLIFF's full-image translation ``[K, 3]`` (POCO ``smplcam_head``, ``convert_pare_to_full_img_cam``).

    With ``b = size`` and ``f = √(W² + H²)`` unless given (scalar or ``[K]``), for a camera with focal ``f``
    and the principal point at the image centre ``(W/2, H/2)``:
    ``tz = 2f/(b·s)``, ``tx' = tx + 2(cx − W/2)/(s·b)``, ``ty' = ty + 2(cy − H/2)/(s·b)``.
    A point at the root depth then projects to ``cx + (b/2)·s·(X + tx)``: the crop's weak-perspective
    projection mapped to the image. ``s`` is guarded as described in the module docstring.
    """
    c = _cam(cam)
    ctr, b = _center_size(center, size, c.shape[0])
    h, w = _hw(image_hw)
    f = np.sqrt(h * h + w * w) if focal is None else np.asarray(focal, dtype=np.float64)
    sb = _safe_scale(c[:, 0]) * b
    tz = 2.0 * f / sb
    tx = c[:, 1] + 2.0 * (ctr[:, 0] - w / 2.0) / sb
    ty = c[:, 2] + 2.0 * (ctr[:, 1] - h / 2.0) / sb
    return np.stack((tx, ty, np.broadcast_to(tz, tx.shape)), axis=1)


def weak_perspective_orig(
    cam: np.ndarray, center: np.ndarray, size: np.ndarray, image_hw: Sequence[int]
) -> np.ndarray:
    """Crop camera → weak-perspective camera of the whole image ``[K, 4] = (sx, sy, tx, ty)``.

    VIBE/POCO's ``convert_crop_cam_to_orig_img`` (used by the demo's renderer, CLIFF included), with
    ``h = size``: ``sx = s·h/W``, ``sy = s·h/H``, ``tx' = tx + (cx − W/2)/(W/2)/sx``,
    ``ty' = ty + (cy − H/2)/(H/2)/sy``. Image NDC ``x_ndc = sx·(X + tx')`` (``[−1, 1]`` across the width),
    ``y_ndc = sy·(Y + ty')``. ``s`` is guarded as described in the module docstring.
    """
    c = _cam(cam)
    ctr, b = _center_size(center, size, c.shape[0])
    h, w = _hw(image_hw)
    s = _safe_scale(c[:, 0])
    sx = s * b / w
    sy = s * b / h
    tx = c[:, 1] + (ctr[:, 0] - w / 2.0) / (w / 2.0) / sx
    ty = c[:, 2] + (ctr[:, 1] - h / 2.0) / (h / 2.0) / sy
    return np.stack((sx, sy, tx, ty), axis=1)


def project_full(
    points: np.ndarray,
    transl: np.ndarray,
    focal: float | np.ndarray,
    image_hw: Sequence[int],
) -> np.ndarray:
    """Pinhole projection into the full image: ``[K, J, 3]`` points → ``[K, J, 2]`` pixels.

    ``K_cam = [[f, 0, W/2], [0, f, H/2], [0, 0, 1]]``, ``P = points + transl``,
    ``(x, y) = (f·Px/Pz + W/2, f·Py/Pz + H/2)``. ``focal`` is a scalar or ``[K]``. Points at or behind the
    camera (``Pz <= 0``) give meaningless (possibly inf) values; no clipping is done.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 3 or p.shape[2] != 3:
        raise InputError(f"points must be [K, J, 3], got shape {tuple(p.shape)}")
    t = np.asarray(transl, dtype=np.float64)
    if t.shape != (p.shape[0], 3):
        raise InputError(f"transl must be [K, 3] matching points {tuple(p.shape)}, got {tuple(t.shape)}")
    h, w = _hw(image_hw)
    f = np.asarray(focal, dtype=np.float64).reshape(-1, 1)
    if f.shape[0] not in (1, p.shape[0]):
        raise InputError(f"focal must be a scalar or [K] with K={p.shape[0]}, got {f.shape[0]} values")
    pc = p + t[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = f * pc[..., 0] / pc[..., 2] + w / 2.0
        y = f * pc[..., 1] / pc[..., 2] + h / 2.0
    return np.stack((x, y), axis=-1)


def project_pinhole(
    points: np.ndarray, transl: np.ndarray, focal: float | np.ndarray, center: np.ndarray
) -> np.ndarray:
    """``[K, J, 3]`` body-frame points → ``[K, J, 2]`` pixels with per-person pinholes.

    ``(x, y) = focal·(P + t)_xy / (P + t)_z + center``; ``transl`` [K, 3], ``focal`` scalar or [K],
    ``center`` [2] or [K, 2]. Points at or behind the camera give meaningless (possibly inf) values.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 3 or p.shape[2] != 3:
        raise InputError(f"points must be [K, J, 3], got shape {tuple(p.shape)}")
    t = np.asarray(transl, dtype=np.float64).reshape(-1, 3)
    if t.shape[0] != p.shape[0]:
        raise InputError(f"transl must be [K, 3] matching points {tuple(p.shape)}, got {tuple(t.shape)}")
    f = np.broadcast_to(np.asarray(focal, dtype=np.float64).reshape(-1), (p.shape[0],))
    c = np.broadcast_to(np.asarray(center, dtype=np.float64).reshape(-1, 2), (p.shape[0], 2))
    pc = p + t[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        xy = f[:, None, None] * pc[..., :2] / pc[..., 2:3]
    return xy + c[:, None, :]


def project_crop_to_image(
    points: np.ndarray,
    cam: np.ndarray,
    center: np.ndarray,
    size: np.ndarray,
    crop_size: float = 224.0,
    focal: float = 5000.0,
) -> np.ndarray:
    """PARE/HMR 2D joints: crop-camera projection, then the crop → image mapping. ``[K, J, 2]`` pixels.

    1. ``P = points + crop_translation(cam)``; ``x_n = focal·Px/Pz/(crop_size/2)`` (principal point 0), i.e.
       POCO's ``smpl_joints2d`` in normalised crop coordinates ``[−1, 1]``.
    2. ``x_px = cx + x_n·size/2``, ``y_px = cy + y_n·size/2`` (the demo's
       ``convert_crop_coords_to_orig_img``; consistent with :func:`~hpsedge.runtime.preprocess.crop_matrices`).

    Use this only for crop-camera models. CLIFF's joints are already in pixels (:func:`project_full` with
    :func:`full_image_translation`); the official video demo wrongly maps them again, which is not copied.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 3 or p.shape[2] != 3:
        raise InputError(f"points must be [K, J, 3], got shape {tuple(p.shape)}")
    c = _cam(cam)
    if c.shape[0] != p.shape[0]:
        raise InputError(f"cam has {c.shape[0]} rows but points has {p.shape[0]}")
    ctr, b = _center_size(center, size, p.shape[0])
    pc = p + crop_translation(c, crop_size, focal)[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        xy_n = focal * pc[..., :2] / pc[..., 2:3] / (crop_size / 2.0)
    return ctr[:, None, :] + xy_n * (b[:, None, None] / 2.0)
