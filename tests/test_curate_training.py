"""Curated files as the official POCO trainer reads them (``pocolib/dataset/base_dataset.py``).

The loader's rules are re-implemented here from its documented behaviour, independently of hpsedge's code:

* selection (``get_confident_frames``): when the file has ``var``, accumulate σ along the kinematic chain and
  keep rows with σ₀ < ``DATASET.UNCERT_THRESHOLD`` (0.3);
* crop (``crop_cv2``): the square of side ``round(scale·200)`` around ``(round(cx), round(cy))``, warped with
  VIBE's ``gen_trans_from_patch_cv`` and ``cv2.warpAffine`` (bilinear);
* keypoints (``j2d_processing``): ``transform(part + 1, center, scale, res)``, SPIN's 1-based pixel transform.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from hpsedge.cli.curate import curate_cmd
from hpsedge.curate import OUTPUT_NAME, curate
from hpsedge.errors import HpsedgeError, InputError
from hpsedge.export.onnx import export_onnx
from hpsedge.runtime.preprocess import preprocess

LOAD = {"backend": "ort", "device": "cpu"}
PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
# fractional boxes: centres and sides that round differently from how they truncate
BOXES = [[10.3, 7.6, 70.9, 88.2], [41.5, 12.5, 119.5, 90.5], [0.7, 30.2, 44.6, 60.1]]
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


# ---------------------------------------------------------------- the official loader's rules, re-implemented
def loader_selection(var: np.ndarray, threshold: float = 0.3) -> np.ndarray:
    acc = np.array(var, dtype=np.float64)
    for j in range(1, 24):
        acc[:, j] += acc[:, PARENTS[j]]
    return (acc[:, 0] < threshold).nonzero()[0]


def loader_crop(img: np.ndarray, center: np.ndarray, scale: float, res: int) -> np.ndarray:
    cx, cy = round(float(center[0])), round(float(center[1]))
    side = round(float(scale) * 200.0)
    src = np.float32([[cx, cy], [cx, cy + side * 0.5], [cx + side * 0.5, cy]])
    dst = np.float32([[res / 2, res / 2], [res / 2, res / 2 + res * 0.5], [res / 2 + res * 0.5, res / 2]])
    trans = cv2.getAffineTransform(src, dst)
    return cv2.warpAffine(img.astype(np.float32), trans, (res, res), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT)


def loader_keypoints(part: np.ndarray, center: np.ndarray, scale: float, res: int) -> np.ndarray:
    """``j2d_processing`` without its final integer truncation: crop pixels of ``part``."""
    h = 200.0 * scale
    t = np.array([[res / h, 0, res * (-center[0] / h + 0.5)], [0, res / h, res * (-center[1] / h + 0.5)]])
    pts = part[:, :2] + 1.0  # the loader adds 1 ...
    pts = pts - 1.0  # ... and transform() subtracts it again before the affine
    return pts @ t[:, :2].T + t[:, 2]


def model_crop_keypoints(joints3d: np.ndarray, cam: np.ndarray, res: int, family: str, center: np.ndarray,
                         side: float, image_hw: tuple[int, int]) -> np.ndarray:
    """The 2D keypoints the model's training loss compares with, in crop pixels, from its own camera."""
    if family == "pare":  # crop camera, f = 5000, principal point at the crop centre
        s, tx, ty = (float(v) for v in cam)
        p = joints3d + np.array([tx, ty, 2 * 5000.0 / (res * s + 1e-9)])
        xy_n = 5000.0 * p[:, :2] / p[:, 2:3] / (res / 2.0)
        return (xy_n + 1.0) * res / 2.0
    # CLIFF: full-image perspective camera, focal √(W²+H²), then into the crop of the box
    hgt, wid = image_hw
    f = float(np.hypot(hgt, wid))
    s, tx, ty = (float(v) for v in cam)
    bs = s * side + 1e-9
    t = np.array([tx + 2 * (center[0] - wid / 2) / bs, ty + 2 * (center[1] - hgt / 2) / bs, 2 * f / bs])
    p = joints3d + t
    xy = f * p[:, :2] / p[:, 2:3] + np.array([wid / 2, hgt / 2])
    return (xy - (center - side / 2)) * res / side


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module", params=["poco-pare", "poco-cliff"])
def export(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(request.param, tmp_path_factory.mktemp("curt") / request.param, tiny=True).out_dir


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("curt-data")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):
        Image.fromarray((rng.random((96, 128, 3)) * 255).astype(np.uint8)).save(images / f"im{i}.png")
    (root / "boxes.json").write_text(json.dumps({f"im{i}.png": BOXES for i in range(3)}))
    return images, root / "boxes.json"


# ------------------------------------------------------------------------------------------------ tests
def test_trainer_uses_exactly_the_curated_rows_and_their_crops(export: Path, dataset: tuple[Path, Path],
                                                               tmp_path: Path, smpl_npz: Path,
                                                               j_regressor_extra_path: Path) -> None:
    images, boxes = dataset
    files = {"smpl": smpl_npz, "j_regressor_extra": j_regressor_extra_path}
    everyone = curate(export, images, boxes, tmp_path / "all", rule="all", **files, **LOAD)
    z_all = np.load(tmp_path / "all" / OUTPUT_NAME)
    s0 = np.sort(z_all["sigma"][:, 0])
    thr = float((s0[3] + s0[4]) / 2)  # a rule that keeps the 4 people with the smallest pelvis σ
    rule = f"pelvis_sigma>{thr!r}"  # ... and a rule the trainer's own threshold would contradict
    summary = curate(export, images, boxes, tmp_path / "sel", rule=rule, **files, **LOAD)
    z = np.load(tmp_path / "sel" / OUTPUT_NAME)
    n = len(z["imgname"])
    assert n == everyone["people"] - 4 == summary["kept"]
    # default: σ under a key the loader ignores → no re-selection: the loader uses every curated row
    assert "var" not in z.files and summary["trainer"]["rows_the_trainer_uses"] == n
    assert summary["trainer"]["rows_the_trainer_threshold_would_drop"] == int((z["sigma"][:, 0] >= 0.3).sum())

    # --var: the loader re-selects; the summary predicts exactly how many rows it keeps
    with_var = curate(export, images, boxes, tmp_path / "var", rule=rule, write_var=True, **files, **LOAD)
    zv = np.load(tmp_path / "var" / OUTPUT_NAME)
    assert with_var["trainer"]["rows_the_trainer_uses"] == len(loader_selection(zv["var"]))
    # the official rule with --var (its threshold = the trainer's): the loader's own selection keeps every row
    official = curate(export, images, boxes, tmp_path / "off", rule=f"pelvis_sigma<{thr!r}", write_var=True,
                      trainer_threshold=thr, **files, **LOAD)
    zo = np.load(tmp_path / "off" / OUTPUT_NAME)
    assert len(loader_selection(zo["var"], thr)) == len(zo["imgname"]) == official["kept"] == 4
    assert official["trainer"]["rows_the_trainer_threshold_would_drop"] == 0

    # crops: the trainer's crop of the rounded centre/side is the crop the prediction was made on
    from hpsedge.runtime.predictor import Predictor

    pred = Predictor.load(export, smpl=smpl_npz, j_regressor_extra=j_regressor_extra_path, **LOAD)
    family = "pare" if "pare" in export.name else "cliff"
    res = int(pred.preprocessing["input_size"][1])
    for i in range(len(z_all["imgname"])):
        center, scale = z_all["center"][i], float(z_all["scale"][i])
        assert np.array_equal(center, np.rint(center)) and abs(scale * 200 - round(scale * 200)) < 1e-4
        rgb = np.asarray(Image.open(images / str(z_all["imgname"][i])).convert("RGB"))
        side = scale * 200.0
        box = np.array([[center[0] - side / 2, center[1] - side / 2, center[0] + side / 2, center[1] + side / 2]])
        feeds, _ = preprocess(rgb, box, pred.preprocessing)
        ours = (feeds["image"][0].transpose(1, 2, 0) * STD + MEAN) * 255.0
        theirs = loader_crop(rgb, center, scale, res)
        assert np.abs(ours - theirs).max() < 1.01  # same crop, up to uint8 rounding

        # part → the loader's keypoint transform → the model's own 2D keypoints in that crop (< 0.5 px)
        person = pred.predict(rgb, box)[0]
        kp = loader_keypoints(z_all["part"][i], center, scale, res)
        model_kp = model_crop_keypoints(person.joints49[25:], person.cam_crop, res, family, center, side,
                                        rgb.shape[:2])
        finite = np.isfinite(model_kp).all(axis=1) & (np.abs(model_kp) < 1e6).all(axis=1)
        assert finite.any()
        np.testing.assert_allclose(kp[finite], model_kp[finite], atol=0.5)
        inside = ((z_all["part"][i, :, :2] >= 0).all(axis=1) & (z_all["part"][i, :, 0] <= 127)
                  & (z_all["part"][i, :, 1] <= 95))
        np.testing.assert_array_equal(z_all["part"][i, :, 2], (inside & finite).astype(np.float32))


def test_unrounded_boxes_and_no_part(export: Path, dataset: tuple[Path, Path], tmp_path: Path) -> None:
    images, boxes = dataset
    s = curate(export, images, boxes, tmp_path / "o", rule="all", part=False, round_boxes=False, **LOAD)
    z = np.load(tmp_path / "o" / OUTPUT_NAME)
    assert not z["part"].any() and s["part"]["written"] is False and s["round_boxes"] is False
    b = np.array(BOXES)
    np.testing.assert_allclose(z["center"][:3], (b[:, :2] + b[:, 2:]) / 2, atol=1e-5)  # as given, not rounded
    with pytest.raises(InputError, match="needs the SMPL model and J_regressor_extra"):
        curate(export, images, boxes, tmp_path / "p", rule="all", **LOAD)


def test_nobody_kept_warns_and_strict_fails(export: Path, dataset: tuple[Path, Path], tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    images, boxes = dataset
    s = curate(export, images, boxes, tmp_path / "o", rule="pelvis_sigma<0", part=False, **LOAD)
    assert s["kept"] == 0 and s["warnings"] and "no person passed the rule" in s["warnings"][0]
    assert "no person passed the rule" in caplog.text
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["warnings"] == s["warnings"]
    with pytest.raises(HpsedgeError, match="no person passed the rule"):
        curate(export, images, boxes, tmp_path / "o", rule="pelvis_sigma<0", part=False, strict=True, **LOAD)

    app = typer.Typer()
    app.command("curate")(curate_cmd)
    app.command("noop")(lambda: None)
    args = ["curate", str(export), "-i", str(images), "-b", str(boxes), "-o", str(tmp_path / "c"), "--rule",
            "pelvis_sigma<0", "--no-part", "--backend", "ort", "--device", "cpu"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and "warning: no person passed the rule" in res.output
    res = CliRunner().invoke(app, [*args, "--strict"])
    assert res.exit_code != 0 and isinstance(res.exception, HpsedgeError)


def test_var_that_leaves_the_trainer_nobody_warns_in_the_summary_and_strict_fails(
        export: Path, dataset: tuple[Path, Path], tmp_path: Path) -> None:
    """People kept, but with --var every one has σ₀ >= the trainer threshold: the official loader's dataset is empty
    (MixedDataset then takes index % 0). summary.json says so; --strict exits non-zero with one error line."""
    import subprocess
    import sys

    images, boxes = dataset
    s = curate(export, images, boxes, tmp_path / "o", rule="all", part=False, write_var=True,
               trainer_threshold=1e-9, **LOAD)
    assert s["kept"] == s["people"] > 0 and s["trainer"]["rows_the_trainer_uses"] == 0
    on_disk = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert len(on_disk["warnings"]) == 1 and "keeps none of the" in on_disk["warnings"][0]
    from hpsedge.curate.core import trainer_drop

    assert trainer_drop(s["trainer"]) == s["kept"]
    # the old key name is still understood by readers of older summary.json files
    assert trainer_drop({"rows_the_default_threshold_would_drop": 3}) == 3 and trainer_drop({}) is None
    with pytest.raises(HpsedgeError, match="keeps none of the"):
        curate(export, images, boxes, tmp_path / "o", rule="all", part=False, write_var=True, trainer_threshold=1e-9,
               strict=True, **LOAD)
    # a threshold that drops only some: a warning naming how many the loader keeps, in the summary too
    sig0 = np.sort(np.load(tmp_path / "o" / OUTPUT_NAME)["var"][:, 0])
    some = curate(export, images, boxes, tmp_path / "p", rule="all", part=False, write_var=True,
                  trainer_threshold=float((sig0[1] + sig0[2]) / 2), strict=True, **LOAD)
    assert some["trainer"]["rows_the_trainer_uses"] == 2 and "keeps 2 of these" in some["warnings"][0]
    res = subprocess.run([sys.executable, "-m", "hpsedge", "curate", str(export), "-i", str(images), "-b", str(boxes),
                          "-o", str(tmp_path / "c"), "--rule", "all", "--no-part", "--var", "--trainer-threshold",
                          "1e-9", "--strict", "--backend", "ort", "--device", "cpu"],
                         capture_output=True, text=True, timeout=300)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.returncode != 0 and len(errors) == 1 and "keeps none of the" in errors[0], res.stderr
    assert "Traceback" not in res.stderr


def test_gender_is_neutral_in_the_loaders_convention(export: Path, dataset: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    images, boxes = dataset
    curate(export, images, boxes, tmp_path / "o", rule="all", part=False, **LOAD)
    z = np.load(tmp_path / "o" / OUTPUT_NAME)
    assert set(z["gender"].tolist()) == {"n"}
    # POCO's loader: 0 if 'm' else 1 — a neutral row is never read as male
    assert [0 if str(g) == "m" else 1 for g in z["gender"]] == [1] * len(z["gender"])
