"""End to end: export → Predictor (ONNX Runtime) → SMPL, against PyTorch + smplx computed independently."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import smplx
import torch

from hpsedge.export.onnx import export_onnx
from hpsedge.models.checkpoints import build_model
from hpsedge.runtime.io import read_image
from hpsedge.runtime.predictor import Predictor
from hpsedge.runtime.preprocess import preprocess

EXAMPLE = Path(__file__).parents[1] / "examples" / "astronaut.jpg"
BOXES = np.array([[110.0, 15.0, 420.0, 512.0], [20.0, 300.0, 180.0, 500.0]])
JOINT_MAP = [24, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34,
             8, 5, 45, 46, 4, 7, 21, 19, 17, 16, 18, 20, 47, 48, 49, 50, 51, 52, 53, 24, 26, 25, 28, 27]


def _export(name: str, root: Path, seed: int) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(seed)
    model, _, _ = build_model(name, tiny=True)
    # move the random camera/shape away from the mean so the test exercises real translations
    with torch.no_grad():
        for p in model.head.parameters():
            p.mul_(3.0)
    torch.save(model.state_dict(), root / f"{name}.pt")
    folder = export_onnx(name, root / name, tiny=True, checkpoint=root / f"{name}.pt").out_dir
    return folder, model.eval()


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, torch.nn.Module]]:
    root = tmp_path_factory.mktemp("e2e")
    return {"poco-cliff": _export("poco-cliff", root, 1), "poco-pare": _export("poco-pare", root, 2)}


def _smplx_reference(clean_pkl: Path, pose: np.ndarray, betas: np.ndarray, extra: np.ndarray):
    body = smplx.SMPL(model_path=str(clean_pkl), num_betas=10)
    with torch.no_grad():
        out = body(
            betas=torch.from_numpy(betas).float(),
            global_orient=torch.from_numpy(pose[:, :1]).float(),
            body_pose=torch.from_numpy(pose[:, 1:]).float(),
            pose2rot=False,
        )
    verts = out.vertices.numpy().astype(np.float64)
    joints45 = out.joints.numpy().astype(np.float64)
    j54 = np.concatenate([joints45, np.einsum("jv,bvc->bjc", extra, verts)], axis=1)
    return verts, joints45, j54[:, JOINT_MAP]


@pytest.mark.parametrize("name", ["poco-cliff", "poco-pare"])
def test_predictor_equals_pytorch_plus_smplx(exports, synthetic_smpl_dir: Path, name: str) -> None:
    folder, model = exports[name]
    extra_path = synthetic_smpl_dir / "J_regressor_extra.npy"
    pred = Predictor.load(folder, backend="ort", device="cpu", smpl=synthetic_smpl_dir / "SMPL_NEUTRAL.pkl",
                          j_regressor_extra=extra_path)
    image = read_image(EXAMPLE)
    people = pred.predict(image, BOXES)

    # reference: PyTorch on the same crops, then smplx, then the official camera formulas written out here
    feeds, _ = preprocess(image, BOXES, pred.manifest.preprocessing)
    with torch.no_grad():
        args = [torch.from_numpy(feeds["image"])]
        if "bbox_info" in feeds:
            args.append(torch.from_numpy(feeds["bbox_info"]))
        pose, betas, cam, _sigma = (t.numpy() for t in model(*args))
    verts, joints45, joints49 = _smplx_reference(synthetic_smpl_dir / "SMPL_NEUTRAL_clean.pkl", pose, betas,
                                                 np.load(extra_path))
    h, w = image.shape[:2]
    f = np.sqrt(h * h + w * w)
    for i, p in enumerate(people):
        x1, y1, x2, y2 = BOXES[i]
        cx, cy, b = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1)
        s, tx, ty = cam[i].astype(np.float64)
        transl = np.array([tx + 2 * (cx - w / 2) / (s * b), ty + 2 * (cy - h / 2) / (s * b), 2 * f / (b * s)])
        np.testing.assert_allclose(p.transl, transl, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(p.vertices, verts[i], atol=1e-4)
        np.testing.assert_allclose(p.joints45, joints45[i], atol=1e-4)
        np.testing.assert_allclose(p.joints3d, joints45[i, :24], atol=1e-4)
        np.testing.assert_allclose(p.joints49, joints49[i], atol=1e-4)
        j = joints45[i, :24]
        if name == "poco-cliff":  # full-image perspective camera, principal point at the image centre
            pc = j + transl
            uv = np.stack([f * pc[:, 0] / pc[:, 2] + w / 2, f * pc[:, 1] / pc[:, 2] + h / 2], axis=1)
        else:  # crop camera (f=5000, 224 px crop) mapped into the image: x_px = cx + x_n·b/2
            pc = j + np.array([tx, ty, 2 * 5000.0 / (224 * s + 1e-9)])
            xn = 5000.0 * pc[:, :2] / pc[:, 2:3] / 112.0
            uv = np.array([cx, cy]) + xn * b / 2
        # pixels: 1e-4 relative to the image size (a 512-px image → 0.05 px)
        np.testing.assert_allclose(p.joints2d, uv, atol=1e-4 * max(h, w))


def test_smpl_runtime_imports_no_scipy_or_smplx(exports, synthetic_smpl_dir: Path) -> None:
    code = f"""
import sys, numpy as np
from hpsedge.runtime import Predictor
p = Predictor.load({str(exports['poco-cliff'][0])!r}, device="cpu", smpl={str(synthetic_smpl_dir / 'SMPL_NEUTRAL.pkl')!r})
r = p.predict(np.zeros((200, 200, 3), np.uint8), [[10, 10, 190, 190]])
assert r[0].vertices.shape == (6890, 3)
print("HEAVY:", sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'smplx', 'scipy', 'chumpy')))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "HEAVY: []" in res.stdout


def test_cli_run_with_smpl_writes_meshes_and_overlay(exports, synthetic_smpl_dir: Path, tmp_path: Path) -> None:
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"astronaut.jpg": BOXES.tolist()}))
    out = tmp_path / "out"
    res = subprocess.run(
        [sys.executable, "-m", "hpsedge", "run", str(exports["poco-cliff"][0]), "--image", str(EXAMPLE),
         "--boxes", str(boxes), "--smpl", str(synthetic_smpl_dir / "SMPL_NEUTRAL.npz"), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    data = np.load(out / "astronaut.npz")
    assert data["vertices"].shape == (2, 6890, 3) and data["faces"].shape == (13776, 3)
    assert data["joints2d"].shape == (2, 24, 2)
    doc = json.loads((out / "astronaut.json").read_text())
    assert len(doc["persons"][0]["joints2d"]) == 24 and "vertices" not in doc["persons"][0]
    assert (out / "astronaut_overlay.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("kind", "match"),
    [("smplx", "SMPL-X"), ("mano", "MANO")],
)
def test_wrong_smpl_kind_via_cli(exports, tmp_path: Path, kind: str, match: str) -> None:
    import smpl_synth

    bad = smpl_synth.write_wrong_kind(tmp_path, kind)
    res = subprocess.run(
        [sys.executable, "-m", "hpsedge", "run", str(exports["poco-cliff"][0]), "--image", str(EXAMPLE),
         "--smpl", str(bad), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 2 and match in res.stderr and "Traceback" not in res.stderr


def test_truncated_and_forbidden_smpl_via_cli(exports, synthetic_smpl_dir: Path, tmp_path: Path) -> None:
    import smpl_synth

    trunc = smpl_synth.truncate_copy(synthetic_smpl_dir / "SMPL_NEUTRAL.pkl", tmp_path / "SMPL_trunc.pkl")
    marker = tmp_path / "marker"
    evil = smpl_synth.write_forbidden_pickle(tmp_path / "evil.pkl", marker)
    for path, match in ((trunc, "truncated"), (evil, "forbidden")):
        res = subprocess.run(
            [sys.executable, "-m", "hpsedge", "run", str(exports["poco-cliff"][0]), "--image", str(EXAMPLE),
             "--smpl", str(path), "--out", str(tmp_path / f"o-{path.stem}")],
            capture_output=True, text=True, timeout=120,
        )
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert match in res.stderr.lower(), res.stderr
    assert not marker.exists()
