"""hpsedge.runtime.camera: crop/full-image translations and projections against hand derivations."""

from __future__ import annotations

import numpy as np
import pytest

from hpsedge.errors import InputError
from hpsedge.runtime.camera import (
    SCALE_EPS,
    crop_translation,
    full_image_translation,
    project_crop_to_image,
    project_full,
    weak_perspective_orig,
)
from hpsedge.runtime.preprocess import crop_matrices

# Shared hand example: image 480×640 (H×W), f = √(640² + 480²) = 800, box centre (350, 220), b = 240,
# cam (s, tx, ty) = (0.5, 0.1, −0.2).
HW = (480, 640)
CENTER = np.array([[350.0, 220.0]])
SIZE = np.array([240.0])
CAM = np.array([[0.5, 0.1, -0.2]])


def test_crop_translation_by_hand() -> None:
    # tz = 2·5000/(224·0.5 + 1e-9) = 10000/112 = 89.2857…
    t = crop_translation(CAM)
    np.testing.assert_allclose(t, [[0.1, -0.2, 10000.0 / (112.0 + 1e-9)]], rtol=1e-14)
    # TokenHMR-style crop: 256 px, f = 5000.
    np.testing.assert_allclose(crop_translation(CAM, crop_size=256)[0, 2], 10000.0 / 128.0, rtol=1e-10)


def test_full_image_translation_by_hand() -> None:
    # s·b = 120: tz = 2·800/120 = 13.333…; tx' = 0.1 + 2·(350 − 320)/120 = 0.6;
    # ty' = −0.2 + 2·(220 − 240)/120 = −0.5333…
    t = full_image_translation(CAM, CENTER, SIZE, HW)
    np.testing.assert_allclose(t, [[0.6, -0.2 - 1.0 / 3.0, 40.0 / 3.0]], rtol=1e-12)
    # Explicit focal (scalar or per person).
    np.testing.assert_allclose(full_image_translation(CAM, CENTER, SIZE, HW, focal=1000.0)[0, 2], 2000 / 120)
    np.testing.assert_allclose(
        full_image_translation(CAM, CENTER, SIZE, HW, focal=np.array([1000.0]))[0, 2], 2000 / 120
    )


def test_full_image_projection_equals_crop_weak_perspective_at_root_depth() -> None:
    rng = np.random.default_rng(0)
    k, j = 5, 17
    cam = np.stack((rng.uniform(0.3, 1.5, k), rng.uniform(-0.3, 0.3, k), rng.uniform(-0.3, 0.3, k)), 1)
    center = np.stack((rng.uniform(0, 1920, k), rng.uniform(0, 1080, k)), 1)
    size = rng.uniform(80, 900, k)
    hw = (1080, 1920)
    f = np.hypot(1080, 1920)
    t = full_image_translation(cam, center, size, hw)
    # Points at the root depth (Z = 0): projection f·(X + tx')/tz' + W/2 = cx + (b/2)·s·(X + tx) exactly.
    pts = np.concatenate((rng.uniform(-1, 1, (k, j, 2)), np.zeros((k, j, 1))), axis=2)
    px = project_full(pts, t, f, hw)
    weak = center[:, None, :] + (size[:, None, None] / 2) * cam[:, None, :1] * (
        pts[..., :2] + cam[:, None, 1:]
    )
    np.testing.assert_allclose(px, weak, rtol=1e-12, atol=1e-9)
    # The weak-perspective crop coordinate x_n = s·(X + tx) is crop pixel 112·(1 + x_n); mapped with the crop
    # matrix it lands on the same image pixel.
    m = crop_matrices(center, size, (224, 224))
    x_n = cam[:, None, :1] * (pts[..., :2] + cam[:, None, 1:])
    crop_px = 112.0 * (1.0 + x_n)
    via_crop = np.einsum("kij,knj->kni", m[:, :, :2], crop_px) + m[:, None, :, 2]
    np.testing.assert_allclose(px, via_crop, rtol=1e-12, atol=1e-9)
    # Off the root plane the difference is the perspective effect, small for a body-sized depth range.
    pts3 = pts.copy()
    pts3[..., 2] = rng.uniform(-0.2, 0.2, (k, j))
    rel = np.abs(project_full(pts3, t, f, hw) - weak) / size[:, None, None]
    assert rel.max() < 0.1


def test_project_full_by_hand() -> None:
    # P = (0.5, −0.25, 0) + (0, 0, 10) → (f·0.05 + W/2, f·(−0.025) + H/2) with f = 800.
    px = project_full(np.array([[[0.5, -0.25, 0.0]]]), np.array([[0.0, 0.0, 10.0]]), 800.0, HW)
    np.testing.assert_allclose(px, [[[360.0, 220.0]]])
    px2 = project_full(np.zeros((2, 1, 3)), np.array([[1.0, 0, 10], [1.0, 0, 10]]), np.array([100, 200]), HW)
    np.testing.assert_allclose(px2[:, 0, 0], [330.0, 340.0])


def test_weak_perspective_orig_by_hand_and_consistent() -> None:
    # sx = 0.5·240/640 = 0.1875, sy = 0.5·240/480 = 0.25,
    # tx' = 0.1 + (30/320)/0.1875 = 0.6, ty' = −0.2 + (−20/240)/0.25 = −0.5333…
    wp = weak_perspective_orig(CAM, CENTER, SIZE, HW)
    np.testing.assert_allclose(wp, [[0.1875, 0.25, 0.6, -0.2 - 1.0 / 3.0]], rtol=1e-12)
    # NDC → pixels (x = W/2·(1 + x_ndc)) equals the crop's weak-perspective mapping cx + (b/2)·s·(X + tx).
    xy = np.array([0.3, -0.7])
    sx, sy, tx, ty = wp[0]
    px = np.array([320 * (1 + sx * (xy[0] + tx)), 240 * (1 + sy * (xy[1] + ty))])
    np.testing.assert_allclose(px, CENTER[0] + 120 * 0.5 * (xy + CAM[0, 1:]), rtol=1e-12)


def test_pare_2d_mapping() -> None:
    rng = np.random.default_rng(1)
    pts = rng.uniform(-0.8, 0.8, (2, 9, 3))
    cam = np.array([[0.9, 0.05, 0.1], [1.2, -0.1, 0.0]])
    center = np.array([[350.0, 220.0], [100.0, 400.0]])
    size = np.array([240.0, 130.0])
    out = project_crop_to_image(pts, cam, center, size)
    # By hand: t = (tx, ty, 2·5000/(224 s)); x_n = 5000·(X + tx)/(Z + tz)/112; pixel = c + x_n·b/2.
    tz = 10000.0 / (224.0 * cam[:, 0] + 1e-9)
    p = pts + np.stack((cam[:, 1], cam[:, 2], tz), 1)[:, None, :]
    x_n = 5000.0 * p[..., :2] / p[..., 2:] / 112.0
    np.testing.assert_allclose(out, center[:, None] + x_n * size[:, None, None] / 2, rtol=1e-12)
    # Demo's convert_crop_coords_to_orig_img: cx − h/2 + (x_n + 1)·112·h/224.
    demo = center[:, None] - size[:, None, None] / 2 + (x_n + 1) * 112 * size[:, None, None] / 224
    np.testing.assert_allclose(out, demo, rtol=1e-12)
    # At the root depth it agrees with the CLIFF full-image camera (up to the official +1e-9).
    flat = pts.copy()
    flat[..., 2] = 0
    full = project_full(flat, full_image_translation(cam, center, size, HW), 800.0, HW)
    np.testing.assert_allclose(project_crop_to_image(flat, cam, center, size), full, rtol=1e-9)


def test_scale_guard() -> None:
    cam = np.array([[0.0, 0.1, 0.2], [-1e-15, 0.0, 0.0], [1e-15, 0.0, 0.0]])
    c = np.repeat(CENTER, 3, 0)
    b = np.repeat(SIZE, 3)
    t = full_image_translation(cam, c, b, HW)
    assert np.isfinite(t).all()
    np.testing.assert_allclose(
        t[:, 2], [1600 / (SCALE_EPS * 240), -1600 / (SCALE_EPS * 240), 1600 / (SCALE_EPS * 240)]
    )
    assert np.isfinite(weak_perspective_orig(cam, c, b, HW)).all()


def test_camera_bad_shapes() -> None:
    with pytest.raises(InputError, match=r"\[K, 3\]"):
        crop_translation(np.zeros((2, 4)))
    with pytest.raises(InputError, match="one row per person"):
        full_image_translation(np.zeros((2, 3)), CENTER, SIZE, HW)
    with pytest.raises(InputError, match=r"\[K, J, 3\]"):
        project_full(np.zeros((1, 3)), np.zeros((1, 3)), 1.0, HW)
