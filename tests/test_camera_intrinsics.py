"""A calibrated camera (issue 26, "Camera"): fx, fy, cx, cy and lens distortion from numbers, a ROS camera_info
YAML or JSON; the full-image translation, 2D projection and CLIFF's bbox_info in that camera."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hpsedge.errors import InputError
from hpsedge.runtime import camera
from hpsedge.runtime.camera import CameraIntrinsics, as_intrinsics, parse_camera_info_yaml
from hpsedge.runtime.preprocess import cliff_bbox_info

CAMERA_INFO = """\
# written as ROS camera_calibration writes it
image_width: 640
image_height: 480
camera_name: head_camera
camera_matrix:
  rows: 3
  cols: 3
  data: [612.5, 0, 331.25, 0, 608.75, 236.5, 0, 0, 1]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [-0.21, 0.045,
         0.0012, -0.0007, 0.0]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1, 0, 0, 0, 1, 0, 0, 0, 1]
projection_matrix:
  rows: 3
  cols: 4
  data: [612.5, 0, 331.25, 0, 0, 608.75, 236.5, 0, 0, 0, 1, 0]
"""


def test_camera_info_yaml_matches_a_yaml_library(tmp_path):
    yaml = pytest.importorskip("yaml")
    assert parse_camera_info_yaml(CAMERA_INFO) == yaml.safe_load(CAMERA_INFO)
    p = tmp_path / "head.yaml"
    p.write_text(CAMERA_INFO)
    cam = CameraIntrinsics.load(p)
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (612.5, 608.75, 331.25, 236.5)
    assert cam.distortion == (-0.21, 0.045, 0.0012, -0.0007, 0.0) and cam.model == "plumb_bob"
    assert (cam.width, cam.height, cam.name) == (640, 480, "head_camera")
    # the same camera as numbers, as JSON, and as the CameraInfo message's own fields
    assert as_intrinsics("612.5,608.75,331.25,236.5,-0.21,0.045,0.0012,-0.0007,0") == CameraIntrinsics(
        612.5, 608.75, 331.25, 236.5, (-0.21, 0.045, 0.0012, -0.0007, 0.0))
    j = tmp_path / "cam.json"
    j.write_text('{"fx": 612.5, "fy": 608.75, "cx": 331.25, "cy": 236.5, "width": 640, "height": 480,'
                 ' "distortion": [-0.21, 0.045, 0.0012, -0.0007, 0.0]}')
    assert as_intrinsics(str(j)) == cam
    assert CameraIntrinsics.from_mapping(cam.camera_info()) == cam


@pytest.mark.parametrize("text", [
    "a: &x 1\nb: *x\n",                                     # anchors/aliases
    "camera_matrix: !!python/object/apply:os.system [ls]\n",  # tags
    "data:\n  - 1\n  - 2\n",                                # block lists
    "a:\n  b:\n    c: 1\n",                                 # deeper nesting
    "a: 1\na: 2\n",                                         # repeated keys
    "%YAML:1.0\ncamera_matrix: !!opencv-matrix\n",          # OpenCV FileStorage
    "data: [1, 2,\n",                                       # unclosed list
    "data: [1, [2]]\n",                                     # nested list
    "fx: 1e999\n",                                          # overflow
])
def test_camera_info_yaml_refuses_anything_else(text):
    with pytest.raises(InputError):
        parse_camera_info_yaml(text)


@pytest.mark.parametrize("bad", ["1,2,3", "a,b,c,d", "0,1,2,3", "1,1,1,1,0.1", "nan,1,1,1"])
def test_bad_numbers_are_one_error(bad):
    with pytest.raises(InputError):
        CameraIntrinsics.from_string(bad)


def test_uncalibrated_or_skewed_matrix_is_refused():
    with pytest.raises(InputError, match="not calibrated"):
        CameraIntrinsics.from_mapping({"k": [0.0] * 9})
    with pytest.raises(InputError, match="skew"):
        CameraIntrinsics.from_mapping({"k": [500, 3, 320, 0, 500, 240, 0, 0, 1]})
    with pytest.raises(InputError, match="not supported"):
        CameraIntrinsics(500, 500, 320, 240, (0.1,) * 5, "kannala_brandt")


@pytest.mark.parametrize("model,coeffs", [
    ("plumb_bob", (-0.28, 0.09, 0.0011, -0.0006, -0.012)),
    ("rational_polynomial", (0.4, -0.05, 0.001, 0.0008, 0.002, 0.75, 0.02, 0.001)),
    ("equidistant", (0.05, -0.01, 0.004, -0.001)),
])
def test_lens_model_against_opencv(model, coeffs):
    cv2 = pytest.importorskip("cv2")
    cam = CameraIntrinsics(605.0, 598.0, 318.0, 247.0, coeffs, model)
    rng = np.random.default_rng(0)
    pts = np.column_stack((rng.uniform(-1.2, 1.2, 200), rng.uniform(-0.9, 0.9, 200), rng.uniform(2.0, 5.0, 200)))
    k = cam.matrix
    if model == "equidistant":
        ref, _ = cv2.fisheye.projectPoints(pts[None], np.zeros(3), np.zeros(3), k, np.asarray(coeffs))
    else:
        ref, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), k, np.asarray(coeffs))
    px = cam.project(pts)
    np.testing.assert_allclose(px, ref.reshape(-1, 2), atol=1e-6)
    # undistortion inverts it: back to the ideal pinhole pixels
    ideal = pts[:, :2] / pts[:, 2:] * [cam.fx, cam.fy] + [cam.cx, cam.cy]
    np.testing.assert_allclose(cam.undistort_pixels(px), ideal, atol=1e-5)


def _weak_perspective_root(cam: np.ndarray, center: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Where the crop camera puts the body origin, in pixels: centre + (b/2)·s·(tx, ty)."""
    return center + (size * cam[:, 0] / 2)[:, None] * cam[:, 1:]


def test_full_image_translation_in_a_known_camera():
    """fx ≠ fy, principal point off-centre, no distortion: the root projects where the crop camera put it,
    the depth is 2f/(s·b) with f = √(fx·fy), and the default camera is the special case of the CLIFF formula."""
    rng = np.random.default_rng(1)
    k = 6
    cam = np.column_stack((rng.uniform(0.6, 1.2, k), rng.uniform(-0.2, 0.2, k), rng.uniform(-0.3, 0.3, k)))
    center = np.column_stack((rng.uniform(100, 1800, k), rng.uniform(100, 1000, k)))
    size = rng.uniform(150, 700, k)
    intr = CameraIntrinsics(1410.0, 1380.0, 975.0, 531.0)
    t = camera.translation_with_intrinsics(cam, center, size, intr)
    np.testing.assert_allclose(t[:, 2], 2 * np.sqrt(1410.0 * 1380.0) / (cam[:, 0] * size))
    root = intr.project(t)  # the body origin (0, 0, 0) + t
    np.testing.assert_allclose(root, _weak_perspective_root(cam, center, size), atol=1e-9)
    # a body: joints2d in the camera = K·(P + t); through project_view as results use it
    body = rng.normal(0, 0.3, (k, 24, 3))
    proj = camera.project_view(body, t, intr.f, np.array([intr.cx, intr.cy]), intr)
    pc = body + t[:, None]
    np.testing.assert_allclose(proj, np.stack((1410 * pc[..., 0] / pc[..., 2] + 975, 1380 * pc[..., 1] / pc[..., 2] + 531), -1))
    # CLIFF's assumed camera is one case of it
    h, w = 1080, 1920
    diag = CameraIntrinsics(np.hypot(h, w), np.hypot(h, w), w / 2, h / 2)
    np.testing.assert_allclose(camera.translation_with_intrinsics(cam, center, size, diag),
                               camera.full_image_translation(cam, center, size, (h, w)), rtol=1e-12)
    np.testing.assert_allclose(camera.cliff_bbox_info_with_intrinsics(center, size, diag),
                               cliff_bbox_info(center, size, (h, w)), rtol=1e-6)


def test_distorted_box_centre_is_undistorted():
    """A person centred in its box (tx = ty = 0) has its root on the box centre in the raw image, with a strong
    barrel lens: the translation points at the undistorted centre, and projecting back re-applies the lens."""
    intr = CameraIntrinsics(600.0, 600.0, 320.0, 240.0, (-0.3, 0.1, 0.0, 0.0, 0.0))
    center = np.array([[40.0, 60.0], [600.0, 420.0], [320.0, 240.0]])
    size = np.array([120.0, 160.0, 200.0])
    cam = np.array([[0.9, 0.0, 0.0]] * 3)
    t = camera.translation_with_intrinsics(cam, center, size, intr)
    np.testing.assert_allclose(intr.project(t), center, atol=1e-6)
    plain = camera.translation_with_intrinsics(cam, center, size, CameraIntrinsics(600.0, 600.0, 320.0, 240.0))
    # barrel distortion squeezes the corners: the ideal ray is further out and the person larger → nearer
    assert np.abs(t[0, :2] / t[0, 2]).min() > np.abs(plain[0, :2] / plain[0, 2]).min()
    assert t[0, 2] < plain[0, 2] and abs(t[2, 2] - plain[2, 2]) / plain[2, 2] < 0.05


# ------------------------------------------------------------------------------- through a real ONNX model
@pytest.fixture(scope="module")
def cliff_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hpsedge.export.onnx import export_onnx

    return export_onnx("poco-cliff", tmp_path_factory.mktemp("cam") / "poco", tiny=True).out_dir


def test_cliff_bbox_info_and_results_use_the_given_camera(cliff_folder, smpl_model):
    from hpsedge.runtime.predictor import Predictor

    rng = np.random.default_rng(2)
    img = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    boxes = np.array([[100.0, 80.0, 260.0, 400.0], [380.0, 120.0, 520.0, 430.0]])
    default = Predictor.load(cliff_folder, backend="ort", device="cpu", smpl=smpl_model)
    feeds0, meta = default.prepare(img, boxes)
    f = 1234.0
    pred = Predictor.load(cliff_folder, backend="ort", device="cpu", smpl=smpl_model,
                          intrinsics=CameraIntrinsics(f, f, 300.0, 250.0, width=640, height=480))
    feeds, meta = pred.prepare(img, boxes)
    c, b = meta.center, meta.size
    want = np.stack(((c[:, 0] - 300.0) / f * 2.8, (c[:, 1] - 250.0) / f * 2.8, (b - 0.24 * f) / (0.06 * f)), 1)
    np.testing.assert_allclose(feeds["bbox_info"], want, rtol=1e-6)
    assert not np.allclose(feeds0["bbox_info"], feeds["bbox_info"])  # the default camera's f = 800 differs
    np.testing.assert_array_equal(feeds0["image"], feeds["image"])
    people = pred.predict(img, boxes)
    s = np.array([p.cam_crop[0] for p in people], dtype=np.float64)
    np.testing.assert_allclose([p.transl[2] for p in people], 2 * f / (s * b), rtol=1e-5)
    for p in people:
        assert p.focal == f and p.intrinsics is pred.intrinsics
        pc = p.joints3d.astype(np.float64) + p.transl
        np.testing.assert_allclose(p.joints2d, f * pc[:, :2] / pc[:, 2:] + [300.0, 250.0], rtol=1e-4, atol=1e-2)
        assert "intrinsics" not in p.to_dict()
    # the graph really sees the camera: other bbox_info, other outputs
    assert not np.allclose(default.predict(img, boxes)[0].pose_rotmat, people[0].pose_rotmat)
    with pytest.raises(InputError, match="calibrated at 640×480"):
        pred.predict(np.zeros((240, 320, 3), np.uint8), boxes / 2)


def test_video_mode_uses_the_camera(cliff_folder, smpl_model, tmp_path):
    """`hpsedge run --video` (run_video): the per-track translations are the calibrated camera's, and the
    overlay pass draws with it (through project_view)."""
    pytest.importorskip("av")
    from hpsedge.runtime.predictor import Predictor
    from hpsedge.runtime.video import VideoReader, run_video, write_video

    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(3)]
    video = write_video(tmp_path / "v.mp4", frames, fps=10)
    intr = CameraIntrinsics(400.0, 390.0, 150.0, 125.0, width=320, height=240)
    pred = Predictor.load(cliff_folder, backend="ort", device="cpu", smpl=smpl_model, intrinsics=intr)
    summary = run_video(pred, video, None, tmp_path / "out", smooth=False, inpaint=False, overlay=True)
    assert summary["frames"] == 3 and (tmp_path / "out" / "v_overlay.mp4").is_file()
    [track_file] = (tmp_path / "out").glob("track_*.npz")
    track = np.load(track_file)
    with VideoReader(video) as reader:
        decoded = [rgb for _, rgb in reader]
    want = [pred.predict(rgb)[0].transl for rgb in decoded]
    np.testing.assert_allclose(track["raw_transl"], want, rtol=1e-5)
    s = np.asarray([pred.predict(rgb)[0].cam_crop[0] for rgb in decoded], np.float64)
    np.testing.assert_allclose(track["raw_transl"][:, 2], 2 * intr.f / (s * 320.0), rtol=1e-5)
