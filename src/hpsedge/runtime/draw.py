"""Overlay pictures: the projected mesh (or a skeleton) over the image, coloured by confidence.

Drawing uses Pillow, imported lazily (it comes with the ``cli`` extra); the geometry is numpy. Each person
is painted in one colour from a red (low confidence) → yellow → green (high confidence) ramp, shaded by
the mesh normals, far triangles first (painter's algorithm), and a colour bar explains the ramp.
Without an SMPL file the pose is drawn as a stick figure whose bone lengths are a fixed, approximate
adult skeleton (written by hand; it is not SMPL data): good enough to see the pose, not a measurement.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.runtime.confidence import SMPL_PARENTS
from hpsedge.runtime.errors import HpsedgeError

#: hand-made approximate rest positions (metres, SMPL axes: +x body-left, +y up, +z forward), pelvis first
APPROX_REST_JOINTS = np.array(
    [
        [0.00, -0.22, 0.02], [0.06, -0.31, 0.02], [-0.06, -0.31, 0.02], [0.00, -0.11, 0.00],
        [0.10, -0.69, 0.02], [-0.10, -0.69, 0.02], [0.00, 0.02, 0.03], [0.08, -1.09, -0.02],
        [-0.08, -1.09, -0.02], [0.00, 0.08, 0.03], [0.12, -1.14, 0.10], [-0.12, -1.14, 0.10],
        [0.00, 0.29, 0.00], [0.07, 0.20, 0.01], [-0.07, 0.20, 0.01], [0.00, 0.40, 0.04],
        [0.17, 0.23, 0.00], [-0.17, 0.23, 0.00], [0.43, 0.23, -0.02], [-0.43, 0.23, -0.02],
        [0.68, 0.23, 0.00], [-0.68, 0.23, 0.00], [0.76, 0.22, -0.01], [-0.76, 0.22, -0.01],
    ],
    dtype=np.float64,
)


def approx_skeleton(pose_rotmat: np.ndarray) -> np.ndarray:
    """Forward kinematics of the approximate skeleton: [K,24,3,3] local rotations → [K,24,3] joints."""
    rot = np.asarray(pose_rotmat, dtype=np.float64)
    k = rot.shape[0]
    glob = np.empty_like(rot)
    pos = np.empty((k, 24, 3))
    glob[:, 0] = rot[:, 0]
    pos[:, 0] = APPROX_REST_JOINTS[0]
    for j in range(1, 24):
        p = SMPL_PARENTS[j]
        glob[:, j] = glob[:, p] @ rot[:, j]
        pos[:, j] = pos[:, p] + glob[:, p] @ (APPROX_REST_JOINTS[j] - APPROX_REST_JOINTS[p])
    return pos


def confidence_color(conf: float | None) -> tuple[int, int, int]:
    """Red (0) → yellow (0.5) → green (1); grey when the model gives no confidence."""
    if conf is None or not np.isfinite(conf):
        return (170, 170, 170)
    c = float(np.clip(conf, 0.0, 1.0))
    if c < 0.5:
        return (230, round(60 + 2 * c * 170), 40)
    return (round(230 - (c - 0.5) * 2 * 190), 230, 40)


def _pil() -> Any:
    try:
        from PIL import Image, ImageDraw
    except ImportError as exc:
        raise HpsedgeError("drawing overlays needs Pillow", hint="pip install 'hpsedge[cli]' (or pillow)") from exc
    return Image, ImageDraw


def _shade(color: tuple[int, int, int], intensity: np.ndarray) -> np.ndarray:
    return (np.asarray(color, dtype=np.float64)[None, :] * intensity[:, None]).clip(0, 255).astype(np.uint8)


def draw_mesh(draw: Any, verts_cam: np.ndarray, faces: np.ndarray, verts2d: np.ndarray, color: tuple[int, int, int]) -> None:
    """Paint one mesh: back-face culled, far-to-near, Lambert-shaded towards the camera."""
    tri3 = verts_cam[faces]  # [F,3,3] camera frame (z forward, away from the camera)
    normals = np.cross(tri3[:, 1] - tri3[:, 0], tri3[:, 2] - tri3[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    view = -tri3.mean(axis=1)
    view /= np.linalg.norm(view, axis=1, keepdims=True) + 1e-12
    facing = (normals * view).sum(axis=1)
    # the synthetic/official winding may face either way: keep the side that faces the camera most
    if (facing > 0).sum() < (facing < 0).sum():
        facing = -facing
    keep = np.nonzero(facing > 0)[0]
    order = keep[np.argsort(-tri3[keep, :, 2].mean(axis=1))]
    shades = _shade(color, 0.35 + 0.65 * facing[order])
    tri2 = verts2d[faces[order]]
    for pts, rgb in zip(tri2, shades, strict=True):
        draw.polygon([tuple(p) for p in pts.tolist()], fill=tuple(int(v) for v in rgb))


def _label(draw: Any, xy: tuple[float, float], text: str, fill: tuple[int, int, int]) -> None:
    """Text on a dark box, readable over any image."""
    x0, y0, x1, y1 = draw.textbbox(xy, text)
    draw.rectangle([x0 - 2, y0 - 2, x1 + 2, y1 + 2], fill=(0, 0, 0))
    draw.text(xy, text, fill=fill)


def draw_skeleton(draw: Any, joints2d: np.ndarray, color: tuple[int, int, int], width: int = 3) -> None:
    for j in range(1, 24):
        a, b = joints2d[SMPL_PARENTS[j]], joints2d[j]
        if np.isfinite(a).all() and np.isfinite(b).all():
            draw.line([tuple(a.tolist()), tuple(b.tolist())], fill=color, width=width)
    r = max(2, width)
    for x, y in joints2d[np.isfinite(joints2d).all(axis=1)].tolist():
        draw.ellipse([x - r, y - r, x + r, y + r], fill=color, outline=(20, 20, 20))


def draw_colorbar(draw: Any, width: int, height: int, label: str) -> None:
    """A vertical bar at the right edge: confidence 1 (top, green) to 0 (bottom, red)."""
    bar_h = max(60, int(height * 0.4))
    bar_w = max(8, width // 60)
    x0 = width - bar_w - 48
    y0 = 12
    for i in range(bar_h):
        c = 1.0 - i / max(bar_h - 1, 1)
        draw.line([(x0, y0 + i), (x0 + bar_w, y0 + i)], fill=confidence_color(c))
    draw.rectangle([x0, y0, x0 + bar_w, y0 + bar_h], outline=(255, 255, 255))
    _label(draw, (x0 + bar_w + 4, y0 - 4), "1.0", (255, 255, 255))
    _label(draw, (x0 + bar_w + 4, y0 + bar_h - 8), "0.0", (255, 255, 255))
    _label(draw, (x0 - 16, y0 + bar_h + 6), label, (255, 255, 255))


def render_overlay(image_rgb: np.ndarray, results: Sequence[Any], faces: np.ndarray | None = None) -> np.ndarray:
    """The overlay picture as an [H,W,3] uint8 array (see :func:`save_overlay`)."""
    image_mod, draw_mod = _pil()
    img = image_mod.fromarray(np.ascontiguousarray(image_rgb)).convert("RGB")
    layer = img.copy()
    draw = draw_mod.Draw(layer)
    h, w = image_rgb.shape[:2]
    # nearest person last, so it is painted on top
    order = sorted(range(len(results)), key=lambda i: -float(results[i].transl[2]))
    for i in order:
        r = results[i]
        color = confidence_color(r.confidence)
        if r.vertices is not None and faces is not None and r.joints2d is not None:
            verts_cam = r.vertices.astype(np.float64) + r.transl.astype(np.float64)
            verts2d = _project_full(verts_cam, r.focal, w, h)  # the full-image camera every result shares
            draw_mesh(draw, verts_cam, faces, verts2d, color)
        else:
            joints = approx_skeleton(r.pose_rotmat[None])[0] + r.transl.astype(np.float64)
            draw_skeleton(draw, _project_full(joints, r.focal, w, h), color)
        x1, y1, x2, y2 = (float(v) for v in r.box)
        draw.rectangle([x1, y1, x2, y2], outline=color, width=2)
        tag = "no σ" if r.confidence is None else f"conf {r.confidence:.2f}"
        _label(draw, (x1 + 4, y1 + 4), tag, color)
    blended = image_mod.blend(img, layer, 0.85)
    draw = draw_mod.Draw(blended)
    draw_colorbar(draw, w, h, "confidence")
    if results and all(r.vertices is None for r in results):
        _label(draw, (8, h - 16), "skeleton with approximate bone lengths; pass --smpl for the mesh", (255, 255, 255))
    return np.asarray(blended)


def _project_full(points: np.ndarray, focal: float, w: int, h: int) -> np.ndarray:
    z = np.where(np.abs(points[:, 2]) < 1e-6, 1e-6, points[:, 2])
    return np.stack((focal * points[:, 0] / z + w / 2.0, focal * points[:, 1] / z + h / 2.0), axis=1)


def save_overlay(path: str | Path, image_rgb: np.ndarray, results: Sequence[Any], faces: np.ndarray | None = None) -> Path:
    image_mod, _ = _pil()
    out = Path(path)
    image_mod.fromarray(render_overlay(image_rgb, results, faces)).save(out)
    return out
