"""Overlays agree with the numbers: per-joint colours, one camera per model, people behind the camera."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hpsedge.export.onnx import export_onnx
from hpsedge.runtime import confidence
from hpsedge.runtime.camera import project_pinhole
from hpsedge.runtime.draw import (
    confidence_color,
    contact_sheet,
    legend_text,
    render_overlay,
    render_side_view,
)
from hpsedge.runtime.predictor import PersonResult, Predictor
from hpsedge.runtime.preprocess import preprocess

LOAD = {"backend": "ort", "device": "cpu"}


def _person(joints2d: np.ndarray, sigma: np.ndarray | None, z: float = 5.0, box: tuple = (40, 40, 360, 280)) -> PersonResult:
    eye = np.broadcast_to(np.eye(3, dtype=np.float32), (24, 3, 3)).copy()
    jc = None if sigma is None else confidence.joint_confidence(sigma[None])[0]
    conf = None if sigma is None else float(confidence.confidence(sigma[None], "cliff")[0])
    return PersonResult(
        box=np.array(box, np.float32), center=np.zeros(2, np.float32), size=200.0, pose_rotmat=eye,
        pose_axis_angle=np.zeros((24, 3), np.float32), betas=np.zeros(10, np.float32),
        cam_crop=np.array([0.9, 0, 0], np.float32), transl=np.array([0, 0, z], np.float32), focal=500.0,
        sigma=sigma, confidence=conf, joint_confidence=jc, joints2d=joints2d.astype(np.float32), view_focal=500.0,
        view_center=np.array([200.0, 150.0], np.float32), view_transl=np.array([0, 0, z], np.float32),
        behind_camera=z <= 0,
    )


def test_joint_colours_follow_per_joint_confidence() -> None:
    """Known σ → each joint's pixel has the colour map's colour of 1 − accumulated σ at that joint."""
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.0, 0.12, 24).astype(np.float32)  # accumulated values spread over [0, 1]
    grid = np.stack(np.meshgrid(np.arange(6), np.arange(4)), -1).reshape(-1, 2)[:24]
    joints2d = 60.0 + grid * np.array([42.0, 50.0])  # left of the legend  # well apart: no bone covers another joint's centre
    person = _person(joints2d, sigma)
    img = render_overlay(np.full((300, 400, 3), 90, np.uint8), [person], legend="test rule")
    expected = [confidence_color(float(c)) for c in person.joint_confidence]
    assert len({c for c in expected}) > 5  # the test means something: many different colours
    for j, (x, y) in enumerate(np.round(joints2d).astype(int)):
        assert tuple(int(v) for v in img[y, x]) == expected[j], f"joint {j}"


def test_behind_the_camera_is_not_drawn_and_flagged() -> None:
    joints2d = np.tile([[200.0, 150.0]], (24, 1))
    person = _person(joints2d, np.full(24, 0.01, np.float32), z=-3.0)
    img = render_overlay(np.full((300, 400, 3), 90, np.uint8), [person])
    assert tuple(img[150, 200]) == (90, 90, 90)  # no skeleton where the joints would be
    assert person.to_dict()["behind_camera"] is True


@pytest.fixture(scope="module", params=["poco-cliff", "poco-pare", "poco-hmr", "tokenhmr"])
def predictor(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, smpl_npz: Path) -> Predictor:
    out = export_onnx(request.param, tmp_path_factory.mktemp("ov") / request.param, tiny=True).out_dir
    return Predictor.load(out, smpl=smpl_npz, **LOAD)


def test_drawing_camera_equals_the_reported_joints2d(predictor: Predictor) -> None:
    """The camera the overlay draws the mesh with reprojects the reported joints2d to < 1 px."""
    rng = np.random.default_rng(1)
    rgb = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
    people = predictor.predict(rgb, np.array([[20, 30, 150, 230], [160, 10, 300, 220]], float))
    for p in people:
        again = project_pinhole(p.joints3d[None], p.view_transl[None], p.view_focal, p.view_center)[0]
        ok = np.isfinite(again).all(axis=1) & (np.abs(again) < 1e5).all(axis=1)
        assert ok.any()
        np.testing.assert_allclose(again[ok], p.joints2d[ok], atol=1.0)
        assert p.behind_camera == (not p.view_transl[2] > 1e-6)
    # the picture is drawn from exactly those numbers (the skeleton is joints2d; no second camera)
    img = render_overlay(rgb, people, predictor.smpl.faces, side_view=True)
    assert img.shape == (240, 320 + max(160, 4 * 12 * 4), 3)


def test_pare_person_behind_the_camera_is_flagged(tmp_path: Path) -> None:
    out = export_onnx("poco-pare", tmp_path / "pare", tiny=True).out_dir
    pred = Predictor.load(out, **LOAD)
    rgb = np.zeros((100, 120, 3), np.uint8)
    boxes = np.array([[10, 10, 60, 90], [50, 10, 110, 90]], float)
    _, meta = preprocess(rgb, boxes, pred.preprocessing)
    outputs = {
        "pose": np.broadcast_to(np.eye(3, dtype=np.float32), (2, 24, 3, 3)).copy(),
        "betas": np.zeros((2, 10), np.float32),
        "cam": np.array([[0.9, 0, 0], [-0.5, 0, 0]], np.float32),  # s < 0: the crop camera puts it behind
        "sigma": np.full((2, 24), 0.05, np.float32),
    }
    front, back = pred.postprocess(outputs, meta, boxes)
    assert not front.behind_camera and back.behind_camera


def test_side_view_contact_sheet_and_legend() -> None:
    joints2d = np.tile([[200.0, 150.0]], (24, 1))
    people = [_person(joints2d, np.full(24, 0.02, np.float32), z=z) for z in (3.0, 6.0)]
    people[0].joints3d = np.zeros((24, 3), np.float32)
    panel = render_side_view(people, (300, 200))
    assert panel.shape == (300, 200, 3) and panel.std() > 0
    sheet = contact_sheet([("a.jpg", np.zeros((50, 80, 3), np.uint8)), ("b.jpg", np.zeros((80, 50, 3), np.uint8))],
                          columns=2, thumb_width=100)
    assert sheet.shape[1] == 2 * 108 + 8
    assert "pelvis σ₀" in legend_text("poco-cliff", {"sigma_score": "pelvis"}, True, False)
    assert "mean accumulated σ" in legend_text("poco-pare", {"sigma_score": "mean"}, True, False)
    assert "token entropy" in legend_text("tokenhmr", {}, False, True)
    assert "no confidence" in legend_text("hmr2", {}, False, False)


def test_legend_says_what_happens_above_the_threshold() -> None:
    """Above the threshold the score is set to 1 and clipped to 0.99, so the confidence is 0.01: the legend
    must say that, not "(1 if σ₀ > 0.8)", which reads as a confidence of 1."""
    cliff = legend_text("poco-cliff", {"sigma_score": "pelvis"}, True, False)
    pare = legend_text("poco-pare", {"sigma_score": "mean"}, True, False)
    assert "person: 1 − pelvis σ₀; 0.01 when σ₀ > 0.8" in cliff and "(1 if" not in cliff
    assert "person: 1 − mean accumulated σ; 0.01 when σ₀ > 0.4" in pare and "(1 if" not in pare
    sigma = np.full((1, 24), 0.05, np.float32)
    sigma[0, 0] = 0.81
    assert float(confidence.confidence(sigma, "cliff")[0]) == pytest.approx(0.01)


def test_overlay_writes_track_ids() -> None:
    from hpsedge.runtime.draw import person_tag

    joints2d = np.tile([[200.0, 150.0]], (24, 1))
    person = _person(joints2d, np.full(24, 0.02, np.float32))
    assert person_tag(person).startswith("confidence ")
    assert person_tag(person, 7).startswith("#7 confidence ")
    img = np.zeros((300, 400, 3), np.uint8)
    a = render_overlay(img, [person])
    b = render_overlay(img, [person], track_ids=[7])
    c = render_overlay(img, [person], track_ids=[12])
    assert not np.array_equal(a, b) and not np.array_equal(b, c)
