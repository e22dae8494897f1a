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

**A calibrated camera** (:class:`CameraIntrinsics`: fx, fy, cx, cy and lens distortion, from numbers, a ROS
``camera_info`` YAML or a JSON file) replaces the assumed one. What it changes, for every model:

* the full-image translation (:func:`translation_with_intrinsics`): focal ``f = √(fx·fy)`` for the depth and
  the principal point ``(cx, cy)`` instead of the image centre, so that the root lands where the crop camera
  put it; with ``fx ≠ fy`` each axis is rescaled by ``f/fx`` and ``f/fy`` so the root still lands there;
* the box the network saw was cut from the *distorted* image; its centre is undistorted
  (:meth:`CameraIntrinsics.undistort_pixels`) and its side is scaled by the lens's local magnification there
  before the translation is computed. The crop itself is **not** rectified: the person's shape inside the box
  keeps the lens's local distortion (small away from the image corners; a fisheye edge is not handled);
* 2D joints and overlays use the real camera (:meth:`CameraIntrinsics.project`): pinhole with fx, fy, cx, cy,
  then the lens distortion, so they land on the raw (distorted) image;
* CLIFF's ``bbox_info`` (:func:`cliff_bbox_info_with_intrinsics`) takes the same ``f`` and principal point:
  the one place where the network itself sees the camera.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import InputError

__all__ = [
    "DISTORTION_MODELS",
    "SCALE_EPS",
    "CameraIntrinsics",
    "as_intrinsics",
    "cliff_bbox_info_with_intrinsics",
    "crop_translation",
    "full_image_translation",
    "parse_camera_info_yaml",
    "project_crop_to_image",
    "project_full",
    "project_pinhole",
    "project_view",
    "translation_with_intrinsics",
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


# ============================================================================================ calibrated camera
#: distortion models understood (the names ROS ``sensor_msgs/distortion_models`` uses) and their coefficients:
#: plumb_bob (k1, k2, p1, p2[, k3]) and rational_polynomial (k1, k2, p1, p2, k3, k4, k5, k6) as OpenCV's
#: ``projectPoints``; equidistant (k1, k2, k3, k4) as OpenCV's ``fisheye`` model
DISTORTION_MODELS = {"plumb_bob": (4, 5), "rational_polynomial": (8,), "equidistant": (4,)}
#: the undistortion's fixed-point iterations, and the residual (normalised units) it must reach
UNDISTORT_ITERATIONS = 50
UNDISTORT_TOLERANCE = 1e-9
#: largest camera file read (a camera_info YAML is a few hundred bytes)
MAX_CAMERA_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class CameraIntrinsics:
    """A calibrated pinhole camera with lens distortion, in pixels of the image it was calibrated at.

    ``pixel = (fx·x_d + cx, fy·y_d + cy)`` where ``(x_d, y_d)`` is the distorted normalised point of
    ``(X/Z, Y/Z)`` by ``model`` and ``distortion`` (empty or all zero: none). ``width``/``height`` (when known,
    e.g. from a camera_info file) must match the images it is used with.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    distortion: tuple[float, ...] = ()
    model: str = "plumb_bob"
    width: int | None = None
    height: int | None = None
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        vals = (self.fx, self.fy, self.cx, self.cy, *self.distortion)
        try:
            ok = all(math.isfinite(float(v)) for v in vals)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError("camera intrinsics must be finite numbers (fx, fy, cx, cy, distortion)")
        if not (self.fx > 0 and self.fy > 0):
            raise InputError(f"camera focal lengths must be positive, got fx={self.fx}, fy={self.fy}")
        if self.model not in DISTORTION_MODELS:
            raise InputError(f"distortion model {self.model!r} is not supported",
                             hint=f"use one of: {', '.join(DISTORTION_MODELS)}")
        n = len(self.distortion)
        if n and n not in DISTORTION_MODELS[self.model]:
            raise InputError(f"{self.model} takes {' or '.join(map(str, DISTORTION_MODELS[self.model]))} "
                             f"distortion coefficients, got {n}")
        for side in (self.width, self.height):
            if side is not None and (not isinstance(side, int) or side <= 0):
                raise InputError(f"camera image size must be positive integers, got {self.width}×{self.height}")

    # ------------------------------------------------------------------------------------ construction
    @classmethod
    def from_string(cls, text: str) -> CameraIntrinsics:
        """``"fx,fy,cx,cy"`` or ``"fx,fy,cx,cy,k1,k2,p1,p2[,k3]"`` (plumb_bob)."""
        parts = [p.strip() for p in str(text).split(",")]
        try:
            nums = [float(p) for p in parts]
        except ValueError:
            raise InputError(f"intrinsics {text!r} must be numbers: fx,fy,cx,cy[,k1,k2,p1,p2[,k3]]") from None
        if len(nums) not in (4, 8, 9):
            raise InputError(f"intrinsics take 4 numbers (fx,fy,cx,cy), or 8/9 with plumb_bob distortion; "
                             f"got {len(nums)}")
        return cls(nums[0], nums[1], nums[2], nums[3], tuple(nums[4:]), "plumb_bob")

    @classmethod
    def load(cls, path: str | Path) -> CameraIntrinsics:
        """A camera file: a ROS ``camera_info`` YAML (``.yaml``/``.yml``, as ``camera_calibration`` and
        ``camera_info_manager`` write it) or JSON (``{"fx", "fy", "cx", "cy", "distortion", "distortion_model",
        "width", "height"}``, or a ``sensor_msgs/CameraInfo`` as JSON with ``k``, ``d``, ``width``, ``height``)."""
        from hpsedge.runtime.io import check_regular_file

        p = Path(path)
        check_regular_file(p, "camera file", MAX_CAMERA_FILE_BYTES)
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError(f"camera file {p} is not UTF-8 text") from None
        if p.suffix.lower() == ".json":
            from hpsedge.runtime.io import loads_strict

            return cls.from_mapping(loads_strict(text, str(p), "camera file"), str(p))
        return cls.from_mapping(parse_camera_info_yaml(text, str(p)), str(p))

    @classmethod
    def from_mapping(cls, data: Any, source: str = "camera") -> CameraIntrinsics:
        """A parsed camera file (see :meth:`load`)."""
        if not isinstance(data, dict):
            raise InputError(f"{source}: a camera file holds a mapping")

        def num(v: Any, what: str) -> float:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise InputError(f"{source}: {what} must be a number, got {v!r}"[:200])
            return float(v)

        def nums(v: Any, what: str, n: int | None = None) -> list[float]:
            if isinstance(v, dict) and "data" in v:  # camera_info YAML: {rows, cols, data}
                v = v["data"]
            if not isinstance(v, list) or (n is not None and len(v) != n):
                raise InputError(f"{source}: {what} must be a list of {n if n else 'some'} numbers")
            return [num(x, what) for x in v]

        def size(key: str) -> int | None:
            v = data.get(key)
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, int):
                raise InputError(f"{source}: {key} must be an integer")
            return v

        if "camera_matrix" in data or "k" in data or "K" in data:  # ROS camera_info (YAML, or the message as JSON)
            k = nums(data.get("camera_matrix", data.get("k", data.get("K"))), "camera_matrix", 9)
            if k[0] == 0.0:
                raise InputError(f"{source}: camera_matrix is zero: the camera is not calibrated")
            if k[1] != 0.0 or k[3] != 0.0 or k[6:] != [0.0, 0.0, 1.0]:
                raise InputError(f"{source}: camera_matrix must be [fx, 0, cx, 0, fy, cy, 0, 0, 1] (no skew)")
            dist = data.get("distortion_coefficients", data.get("d", data.get("D", [])))
            model = data.get("distortion_model", "plumb_bob")
            width, height = size("image_width") or size("width"), size("image_height") or size("height")
            fx, fy, cx, cy = k[0], k[4], k[2], k[5]
        else:
            missing = [key for key in ("fx", "fy", "cx", "cy") if key not in data]
            if missing:
                raise InputError(f"{source}: no camera found (missing {', '.join(missing)})",
                                 hint="give fx, fy, cx, cy (and distortion), or a ROS camera_info YAML")
            fx, fy, cx, cy = (num(data[key], key) for key in ("fx", "fy", "cx", "cy"))
            dist = data.get("distortion", [])
            model = data.get("distortion_model", "plumb_bob")
            width, height = size("width"), size("height")
        if not isinstance(model, str):
            raise InputError(f"{source}: distortion_model must be a name")
        d = nums(dist, "distortion") if dist not in (None, []) else []
        name = data.get("camera_name") if isinstance(data.get("camera_name"), str) else None
        return cls(fx, fy, cx, cy, tuple(d), model, width, height, name)

    # ------------------------------------------------------------------------------------------ facts
    @property
    def f(self) -> float:
        """The one focal length a square-pixel crop camera can take: ``√(fx·fy)`` pixels."""
        return float(math.sqrt(self.fx * self.fy))

    @property
    def has_distortion(self) -> bool:
        return any(v != 0.0 for v in self.distortion)

    @property
    def matrix(self) -> np.ndarray:
        """``K`` [3, 3]."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def check_image(self, image_hw: Sequence[int]) -> None:
        """An :class:`InputError` when the camera was calibrated at another image size than ``(H, W)``."""
        h, w = (int(v) for v in image_hw)
        if self.width is not None and self.height is not None and (self.width, self.height) != (w, h):
            raise InputError(f"the camera was calibrated at {self.width}×{self.height} but the image is {w}×{h}",
                             hint="give the camera_info of this resolution (intrinsics scale with the image)")

    def to_dict(self) -> dict[str, Any]:
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "distortion_model": self.model,
                "distortion": list(self.distortion), "width": self.width, "height": self.height}

    # ------------------------------------------------------------------------------------------ lens
    def _coeffs(self, n: int) -> list[float]:
        return [*self.distortion, *([0.0] * n)][:n]

    def distort(self, xy: np.ndarray) -> np.ndarray:
        """Normalised ideal points ``[..., 2]`` (X/Z, Y/Z) → distorted normalised points."""
        p = np.asarray(xy, dtype=np.float64)
        if not self.has_distortion:
            return p.copy()
        x, y = p[..., 0], p[..., 1]
        r2 = x * x + y * y
        if self.model == "equidistant":
            k1, k2, k3, k4 = self._coeffs(4)
            r = np.sqrt(r2)
            th = np.arctan(r)
            th2 = th * th
            thd = th * (1 + k1 * th2 + k2 * th2**2 + k3 * th2**3 + k4 * th2**4)
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = np.where(r > 1e-12, thd / r, 1.0)
            return np.stack((x * scale, y * scale), axis=-1)
        k1, k2, p1, p2, k3, k4, k5, k6 = self._coeffs(8)
        radial = (1 + k1 * r2 + k2 * r2**2 + k3 * r2**3) / (1 + k4 * r2 + k5 * r2**2 + k6 * r2**3)
        xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        return np.stack((xd, yd), axis=-1)

    def undistort_normalized(self, xy_d: np.ndarray) -> np.ndarray:
        """Distorted normalised points → ideal normalised points (fixed-point iteration, as OpenCV's
        ``undistortPoints``; equidistant: Newton on θ). Points where it does not converge are NaN."""
        d = np.asarray(xy_d, dtype=np.float64)
        if not self.has_distortion:
            return d.copy()
        if self.model == "equidistant":
            k1, k2, k3, k4 = self._coeffs(4)
            thd = np.sqrt(d[..., 0] ** 2 + d[..., 1] ** 2)
            th = thd.copy()
            for _ in range(UNDISTORT_ITERATIONS):
                t2 = th * th
                g = th * (1 + k1 * t2 + k2 * t2**2 + k3 * t2**3 + k4 * t2**4) - thd
                dg = 1 + 3 * k1 * t2 + 5 * k2 * t2**2 + 7 * k3 * t2**3 + 9 * k4 * t2**4
                th = th - g / np.where(np.abs(dg) < 1e-12, 1e-12, dg)
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = np.where(thd > 1e-12, np.tan(th) / thd, 1.0)
            out = d * scale[..., None]
        else:
            k1, k2, p1, p2, k3, k4, k5, k6 = self._coeffs(8)
            out = d.copy()
            with np.errstate(all="ignore"):
                for _ in range(UNDISTORT_ITERATIONS):
                    x, y = out[..., 0], out[..., 1]
                    r2 = x * x + y * y
                    icdist = (1 + k4 * r2 + k5 * r2**2 + k6 * r2**3) / (1 + k1 * r2 + k2 * r2**2 + k3 * r2**3)
                    dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
                    dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
                    out = np.stack(((d[..., 0] - dx) * icdist, (d[..., 1] - dy) * icdist), axis=-1)
        with np.errstate(all="ignore"):
            err = np.abs(self.distort(out) - d).max(axis=-1)
        return np.where((err <= 1e-6)[..., None], out, np.nan)

    def undistort_pixels(self, px: np.ndarray) -> np.ndarray:
        """Pixels of the raw (distorted) image ``[..., 2]`` → where an ideal pinhole with the same K puts them."""
        p = np.asarray(px, dtype=np.float64)
        if not self.has_distortion:
            return p.copy()
        n = np.stack(((p[..., 0] - self.cx) / self.fx, (p[..., 1] - self.cy) / self.fy), axis=-1)
        u = self.undistort_normalized(n)
        return np.stack((u[..., 0] * self.fx + self.cx, u[..., 1] * self.fy + self.cy), axis=-1)

    def project(self, points: np.ndarray) -> np.ndarray:
        """Camera-frame points ``[..., 3]`` (metres, z forward) → raw image pixels ``[..., 2]`` (with distortion).
        Points at or behind the camera give meaningless (possibly inf) values."""
        p = np.asarray(points, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            n = p[..., :2] / p[..., 2:3]
            d = self.distort(n)
        return np.stack((d[..., 0] * self.fx + self.cx, d[..., 1] * self.fy + self.cy), axis=-1)

    def ideal_boxes(self, center: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Crop boxes (``center [K, 2]``, side ``size [K]``, raw pixels) → their centre and side in the ideal
        pinhole image: the centre undistorted, the side scaled by the lens's local magnification there (the
        geometric mean of the undistorted widths of the box's horizontal and vertical mid-lines)."""
        c = np.asarray(center, dtype=np.float64).reshape(-1, 2)
        b = np.asarray(size, dtype=np.float64).reshape(-1)
        if not self.has_distortion:
            return c.copy(), b.copy()
        half = b / 2.0
        pts = np.stack((c, c - np.stack((half, 0 * half), 1), c + np.stack((half, 0 * half), 1),
                        c - np.stack((0 * half, half), 1), c + np.stack((0 * half, half), 1)), axis=1)
        u = self.undistort_pixels(pts)
        bad = ~np.isfinite(u).all(axis=(1, 2))
        if bad.any():
            raise InputError(f"{int(bad.sum())} person box(es) lie where the lens model cannot be inverted "
                             "(beyond its valid field of view)", hint="check the distortion coefficients")
        wx = np.abs(u[:, 2, 0] - u[:, 1, 0])
        wy = np.abs(u[:, 4, 1] - u[:, 3, 1])
        return u[:, 0], np.sqrt(wx * wy)

    def camera_info(self, image_hw: Sequence[int] | None = None) -> dict[str, Any]:
        """The fields of a ``sensor_msgs/msg/CameraInfo`` (no header) for images of size ``(H, W)``."""
        if image_hw is not None:
            h, w = (int(v) for v in image_hw)
        else:
            h, w = self.height or 0, self.width or 0
        k = [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]
        p = [self.fx, 0.0, self.cx, 0.0, 0.0, self.fy, self.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        return {"height": h, "width": w, "distortion_model": self.model, "d": [float(v) for v in self.distortion],
                "k": k, "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], "p": p}


def as_intrinsics(value: Any) -> CameraIntrinsics | None:
    """``None``, a :class:`CameraIntrinsics`, a camera file path, an ``"fx,fy,cx,cy[,…]"`` string, a mapping
    (see :meth:`CameraIntrinsics.from_mapping`) or a 3×3 ``K`` matrix → :class:`CameraIntrinsics` or None."""
    if value is None or isinstance(value, CameraIntrinsics):
        return value
    if isinstance(value, dict):
        return CameraIntrinsics.from_mapping(value)
    if isinstance(value, Path) or (isinstance(value, str) and not re.fullmatch(r"[\s0-9eE.+\-,]+", value)):
        return CameraIntrinsics.load(value)
    if isinstance(value, str):
        return CameraIntrinsics.from_string(value)
    k = np.asarray(value, dtype=np.float64)
    if k.shape == (3, 3):
        return CameraIntrinsics.from_mapping({"k": k.reshape(-1).tolist()}, "K matrix")
    raise InputError(f"cannot read a camera from {type(value).__name__}",
                     hint="give CameraIntrinsics, a camera_info YAML/JSON path, 'fx,fy,cx,cy' or a 3×3 K")


def translation_with_intrinsics(cam: np.ndarray, center: np.ndarray, size: np.ndarray,
                                intrinsics: CameraIntrinsics) -> np.ndarray:
    """The full-image translation ``[K, 3]`` in a calibrated camera (the module docstring's first bullets).

    ``center``/``size`` are the crop boxes in raw pixels; they are first mapped into the ideal pinhole image
    (:meth:`CameraIntrinsics.ideal_boxes`). With ``f = √(fx·fy)`` and ``sb = s·b``:
    ``tz = 2f/sb``, ``tx' = (f/fx)·(tx + 2(cx_box − cx)/sb)``, ``ty' = (f/fy)·(ty + 2(cy_box − cy)/sb)``:
    the body's root then projects exactly where the crop's weak-perspective camera put it. For
    ``fx = fy = √(W²+H²)`` and ``(cx, cy) = (W/2, H/2)`` this is :func:`full_image_translation`.
    """
    c = _cam(cam)
    ctr, b = _center_size(center, size, c.shape[0])
    ctr, b = intrinsics.ideal_boxes(ctr, b)
    f = intrinsics.f
    sb = _safe_scale(c[:, 0]) * b
    tz = 2.0 * f / sb
    tx = f / intrinsics.fx * (c[:, 1] + 2.0 * (ctr[:, 0] - intrinsics.cx) / sb)
    ty = f / intrinsics.fy * (c[:, 2] + 2.0 * (ctr[:, 1] - intrinsics.cy) / sb)
    return np.stack((tx, ty, tz), axis=1)


def cliff_bbox_info_with_intrinsics(center: np.ndarray, size: np.ndarray,
                                    intrinsics: CameraIntrinsics) -> np.ndarray:
    """CLIFF's ``bbox_info`` ``[K, 3]`` float32 with a calibrated camera: the formula of
    :func:`hpsedge.runtime.preprocess.cliff_bbox_info` with ``f = √(fx·fy)``, offsets from the principal point
    and the box mapped into the ideal pinhole image (:meth:`CameraIntrinsics.ideal_boxes`)."""
    ctr, b = intrinsics.ideal_boxes(center, size)
    f = intrinsics.f
    info = np.stack(((ctr[:, 0] - intrinsics.cx) / f * 2.8, (ctr[:, 1] - intrinsics.cy) / f * 2.8,
                     (b - 0.24 * f) / (0.06 * f)), axis=1)
    return info.astype(np.float32)


def project_view(points: np.ndarray, transl: np.ndarray, focal: float | np.ndarray, center: np.ndarray,
                 intrinsics: CameraIntrinsics | None = None) -> np.ndarray:
    """``[K, J, 3]`` body-frame points → pixels with a result's drawing camera: its ``intrinsics`` when the
    user gave a camera (fx, fy, principal point, distortion), else the pinhole ``focal``/``center``."""
    if intrinsics is None:
        return project_pinhole(points, transl, focal, center)
    p = np.asarray(points, dtype=np.float64)
    t = np.asarray(transl, dtype=np.float64).reshape(-1, 1, 3)
    return intrinsics.project(p + t)


# --------------------------------------------------------------------------------- camera_info YAML, strictly
_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:(?:\s+(.*))?$")
_NUM = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _scalar(text: str, where: str) -> Any:
    t = text.strip()
    if not t or t in ("~", "null"):
        return None
    if t[0] in "\"'":
        if len(t) < 2 or t[-1] != t[0]:
            raise InputError(f"{where}: unterminated quoted string")
        return t[1:-1]
    if _NUM.match(t):
        v = float(t)
        if not math.isfinite(v):
            raise InputError(f"{where}: number {t[:30]} is too large")
        return int(t) if re.fullmatch(r"[+-]?\d+", t) else v
    if t[0] in "&*!{|>-%@`":
        raise InputError(f"{where}: YAML feature not accepted in a camera file ({t[:20]!r})",
                         hint="a camera_info YAML holds plain keys, numbers, names and [lists]")
    if t in ("true", "false"):
        return t == "true"
    if re.fullmatch(r"[A-Za-z0-9_./ \-]+", t):
        return t
    raise InputError(f"{where}: cannot read {t[:30]!r}")


def parse_camera_info_yaml(text: str, source: str = "camera_info") -> dict[str, Any]:
    """The strict YAML subset of a ROS ``camera_info`` file → a dict (no YAML library, no tags, no code).

    Accepted: ``key: value`` at the top level, one level of nested ``key: value`` under ``key:``, scalars
    (numbers, plain or quoted names, true/false) and flow lists of numbers ``[a, b, …]`` (which may span
    lines), ``#`` comments. Anything else (anchors, tags, block lists, deeper nesting, repeated keys) is one
    :class:`InputError`.
    """
    out: dict[str, Any] = {}
    parent: dict[str, Any] | None = None
    pending: tuple[dict[str, Any], str, str, int] | None = None  # an open [list: (target, key, text, line)
    for n, raw in enumerate(text.splitlines(), 1):
        where = f"{source} line {n}"
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if pending is not None:
            target, key, acc, start = pending
            acc += " " + line.strip()
            if "]" in acc:
                target[key] = _flow_list(acc, f"{source} line {start}")
                pending = None
            else:
                pending = (target, key, acc, start)
            continue
        if not line.strip() or line.strip() in ("---", "..."):
            continue
        if line.lstrip().startswith("%"):
            raise InputError(f"{where}: YAML directives are not accepted ({line.strip()[:20]!r})",
                             hint="OpenCV FileStorage files are not camera_info files; write fx,fy,cx,cy as JSON")
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise InputError(f"{where}: tabs in indentation are not YAML")
        indent = len(line) - len(line.lstrip())
        m = _KEY.match(line.strip())
        if m is None:
            raise InputError(f"{where}: expected 'key: value', got {line.strip()[:40]!r}")
        key, value = m.group(1), (m.group(2) or "").strip()
        if indent == 0:
            target = out
            parent = None
        elif parent is not None:
            target = parent
        else:
            raise InputError(f"{where}: indented line without a parent key")
        if key in target:
            raise InputError(f"{where}: key {key!r} appears twice")
        if value == "":
            if indent != 0:
                raise InputError(f"{where}: nesting deeper than one level is not a camera_info file")
            parent = target[key] = {}
        elif value.startswith("["):
            if "]" in value:
                target[key] = _flow_list(value, where)
            else:
                pending = (target, key, value, n)
        else:
            target[key] = _scalar(value, where)
    if pending is not None:
        raise InputError(f"{source} line {pending[3]}: list not closed with ']'")
    return out


def _flow_list(text: str, where: str) -> list[Any]:
    t = text.strip()
    if not (t.startswith("[") and t.endswith("]")) or t.count("[") != 1 or t.count("]") != 1:
        raise InputError(f"{where}: a list must be one flat [a, b, ...]")
    body = t[1:-1].strip()
    if not body:
        return []
    items = [_scalar(v, where) for v in body.split(",")]
    if len(items) > 64:
        raise InputError(f"{where}: a list of {len(items)} values is not a camera matrix")
    return items

