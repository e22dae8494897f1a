"""Predictor and `hpsedge run`: results vs PyTorch, batching, and every bad input named clearly."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hpsedge.errors import BackendError, InputError, ManifestError
from hpsedge.export.onnx import export_onnx
from hpsedge.models.checkpoints import build_model
from hpsedge.runtime import camera, confidence, rotations
from hpsedge.runtime.manifest import sha256_file
from hpsedge.runtime.predictor import Predictor
from hpsedge.runtime.preprocess import preprocess
from test_tensorrt_logic import FakeCudart, FakeTRT, install_cuda, install_trt

EXAMPLE = Path(__file__).parents[1] / "examples" / "astronaut.jpg"


@pytest.fixture(scope="module")
def cliff(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A tiny poco-cliff export from a saved checkpoint, plus the same model in PyTorch."""
    root = tmp_path_factory.mktemp("pred")
    torch.manual_seed(11)
    model, _, _ = build_model("poco-cliff", tiny=True)
    torch.save(model.state_dict(), root / "ckpt.pt")
    folder = export_onnx("poco-cliff", root / "poco-cliff", tiny=True, checkpoint=root / "ckpt.pt").out_dir
    return folder, model


@pytest.fixture(scope="module")
def pare(tiny_export) -> Path:
    return tiny_export("poco-pare")


def _image(h: int = 360, w: int = 480, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


BOXES = np.array([[40, 30, 200, 330], [250, 60, 420, 350], [0, 0, 479, 359]], dtype=np.float64)


def test_results_equal_pytorch_model(cliff: tuple[Path, torch.nn.Module]) -> None:
    folder, model = cliff
    pred = Predictor.load(folder, backend="ort", device="cpu")
    img = _image()
    people = pred.predict(img, BOXES)
    assert len(people) == 3
    feeds, meta = preprocess(img, BOXES, pred.manifest.preprocessing)
    with torch.no_grad():
        pose, betas, cam, sigma = (t.numpy() for t in model(torch.from_numpy(feeds["image"]), torch.from_numpy(feeds["bbox_info"])))
    transl = camera.full_image_translation(cam, meta.center, meta.size, meta.image_hw)
    for i, p in enumerate(people):
        np.testing.assert_allclose(p.pose_rotmat, pose[i], atol=1e-4)
        np.testing.assert_allclose(p.betas, betas[i], atol=1e-4)
        np.testing.assert_allclose(p.cam_crop, cam[i], atol=1e-4)
        np.testing.assert_allclose(p.sigma, sigma[i], atol=1e-5)
        np.testing.assert_allclose(p.transl, transl[i], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(rotations.axis_angle_to_rotmat(p.pose_axis_angle), p.pose_rotmat, atol=1e-5)
        assert p.confidence == pytest.approx(float(confidence.confidence(sigma[i : i + 1], "cliff")[0]), abs=1e-5)
        assert p.score == pytest.approx(1.0 - p.confidence, abs=1e-6)
        assert p.vertices is None and p.joints2d is None  # no SMPL file given
        json.dumps(p.to_dict())


def test_batch_split_matches_one_batch(cliff: tuple[Path, torch.nn.Module]) -> None:
    folder, _ = cliff
    pred = Predictor.load(folder, backend="ort", device="cpu")
    img = _image(seed=3)
    whole = pred.predict(img, BOXES)
    pred.backend.max_batch = 2  # as a TensorRT engine with a max-batch-2 profile would
    calls = []
    run = pred.backend.run
    pred.backend.run = lambda feeds: calls.append(len(feeds["image"])) or run(feeds)
    split = pred.predict(img, BOXES)
    assert calls == [2, 1]
    for a, b in zip(whole, split, strict=True):
        np.testing.assert_allclose(a.pose_rotmat, b.pose_rotmat, atol=1e-5)


def test_no_people_and_whole_image_default(cliff: tuple[Path, torch.nn.Module]) -> None:
    pred = Predictor.load(cliff[0], backend="ort", device="cpu")
    assert pred.predict(_image(), np.zeros((0, 4))) == []
    (person,) = pred.predict(_image(), None)
    np.testing.assert_allclose(person.box, [0, 0, 480, 360])


def test_bgr_flag_flips_channels(cliff: tuple[Path, torch.nn.Module]) -> None:
    pred = Predictor.load(cliff[0], backend="ort", device="cpu")
    img = _image(seed=5)
    a = pred.predict(img, BOXES[:1])[0]
    b = pred.predict(np.ascontiguousarray(img[..., ::-1]), BOXES[:1], bgr=True)[0]
    np.testing.assert_allclose(a.pose_rotmat, b.pose_rotmat, atol=1e-6)


def test_pare_uses_mean_score_rule(pare: Path) -> None:
    pred = Predictor.load(pare, backend="ort", device="cpu")
    (p,) = pred.predict(_image(), BOXES[:1])
    acc = confidence.accumulate_sigma(p.sigma[None])[0]
    expected = 1.0 if p.sigma[0] > 0.4 else min(acc.mean(), 0.99)
    assert p.score == pytest.approx(min(expected, 0.99), abs=1e-5)


def test_loads_from_onnx_path_and_manifest_path(cliff: tuple[Path, torch.nn.Module]) -> None:
    folder, _ = cliff
    for path in (folder / "model.onnx", folder / "manifest.json"):
        assert Predictor.load(path, device="cpu").manifest.model_name == "poco-cliff"


# --------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("image", "boxes", "match"),
    [
        (np.zeros((100, 100), np.uint8), [[0, 0, 50, 50]], "H×W×3"),
        (np.zeros((100, 100, 3), np.float32), [[0, 0, 50, 50]], "uint8"),
        (np.zeros((100, 100, 4), np.uint8), [[0, 0, 50, 50]], "3"),
        (np.zeros((100, 100, 3), np.uint8), [[0, 0, float("nan"), 50]], "NaN"),
        (np.zeros((100, 100, 3), np.uint8), [[10, 10, 10, 50]], "area"),
        (np.zeros((100, 100, 3), np.uint8), [[200, 200, 300, 300]], "outside"),
        (np.zeros((100, 100, 3), np.uint8), [[0, 0, 50]], r"\[K, 4\]"),
    ],
)
def test_bad_runtime_input(cliff: tuple[Path, torch.nn.Module], image: np.ndarray, boxes: list, match: str) -> None:
    pred = Predictor.load(cliff[0], backend="ort", device="cpu")
    with pytest.raises(InputError, match=match):
        pred.predict(image, boxes)


def _copy(folder: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(folder, dst)
    return dst


def test_missing_and_corrupt_manifest(cliff: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    folder = _copy(cliff[0], tmp_path)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        Predictor.load(folder)
    (folder / "manifest.json").write_text(json.dumps({"schema": "hpsedge.manifest", "schema_version": 1}))
    with pytest.raises(ManifestError, match="lacks required field"):
        Predictor.load(folder)
    (folder / "manifest.json").unlink()
    with pytest.raises(ManifestError, match="no manifest"):
        Predictor.load(folder)
    with pytest.raises(ManifestError, match="does not exist"):
        Predictor.load(tmp_path / "nowhere")


def test_newer_schema_is_refused(cliff: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    folder = _copy(cliff[0], tmp_path)
    m = json.loads((folder / "manifest.json").read_text())
    m["schema_version"] = 99
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="schema version 99") as info:
        Predictor.load(folder)
    assert "upgrade hpsedge" in (info.value.hint or "")


def test_onnx_that_does_not_match_manifest(cliff: tuple[Path, torch.nn.Module], pare: Path, tmp_path: Path) -> None:
    folder = _copy(cliff[0], tmp_path)
    shutil.copy(pare / "model.onnx", folder / "model.onnx")  # another model's graph
    with pytest.raises(ManifestError, match="does not match the manifest"):
        Predictor.load(folder)
    # size and sha256 checks bypassed (a manifest edited to match): the graph's I/O is checked too
    m = json.loads((folder / "manifest.json").read_text())
    m["artifacts"]["onnx"]["bytes"] = (folder / "model.onnx").stat().st_size
    m["artifacts"]["onnx"]["sha256"] = sha256_file(folder / "model.onnx")
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="graph inputs"):
        Predictor.load(folder)


def test_truncated_onnx(cliff: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    folder = _copy(cliff[0], tmp_path)
    data = (folder / "model.onnx").read_bytes()
    (folder / "model.onnx").write_bytes(data[: len(data) // 3])
    with pytest.raises(ManifestError, match="bytes on disk"):
        Predictor.load(folder)
    m = json.loads((folder / "manifest.json").read_text())
    m["artifacts"]["onnx"]["bytes"] = len(data) // 3
    m["artifacts"]["onnx"]["sha256"] = sha256_file(folder / "model.onnx")  # a manifest edited to match
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BackendError, match=r"ONNX Runtime cannot load model\.onnx"):
        Predictor.load(folder)


def test_unknown_backend_and_device(cliff: tuple[Path, torch.nn.Module]) -> None:
    with pytest.raises(BackendError, match="unknown backend"):
        Predictor.load(cliff[0], backend="tflite")
    with pytest.raises(BackendError, match="unknown device"):
        Predictor.load(cliff[0], device="tpu")
    with pytest.raises(BackendError, match="CUDAExecutionProvider"):
        Predictor.load(cliff[0], device="cuda")  # this machine's ONNX Runtime is CPU-only


def _with_engine(folder: Path, tmp_path: Path, **entry: object) -> Path:
    dst = _copy(folder, tmp_path)
    plan = b"FAKE-PLAN"
    (dst / "model.fp32.engine").write_bytes(plan)
    m = json.loads((dst / "manifest.json").read_text())
    m["artifacts"]["engine"] = {
        "file": "model.fp32.engine", "sha256": hashlib.sha256(plan).hexdigest(), "bytes": len(plan),
        "precision": "fp32", "trt_version": "10.3.0.30", "compute_capability": "8.6",
        "gpu_name": "NVIDIA GeForce RTX 3090", "platform": "desktop", **entry,
    }
    (dst / "manifest.json").write_text(json.dumps(m))
    return dst


def test_engine_for_another_gpu(cliff: tuple[Path, torch.nn.Module], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _with_engine(cliff[0], tmp_path)
    fake = install_trt(monkeypatch, FakeTRT())
    install_cuda(monkeypatch, FakeCudart(name=b"Orin", cc=(8, 7)))
    with pytest.raises(BackendError, match="engine built for sm_86") as info:
        Predictor.load(folder, backend="trt")
    assert "--on-device" in (info.value.hint or "")
    assert not [c for c in fake.calls if c[0] == "deserialize_cuda_engine"]


def test_engine_for_another_tensorrt(cliff: tuple[Path, torch.nn.Module], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _with_engine(cliff[0], tmp_path)
    install_trt(monkeypatch, FakeTRT(version="10.8.0.43"))
    install_cuda(monkeypatch, FakeCudart())
    with pytest.raises(BackendError, match="TensorRT"):
        Predictor.load(folder, backend="trt")


def _visible_trt(monkeypatch: pytest.MonkeyPatch, gpu: FakeCudart) -> FakeTRT:
    """Fake TensorRT 10.3 and cuda-python that the runtime's probe (``importlib.util.find_spec``) finds."""
    import importlib.machinery
    import types

    fake = install_trt(monkeypatch, FakeTRT())
    sys.modules["tensorrt"].__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    cuda_pkg = types.ModuleType("cuda")
    cuda_pkg.__spec__ = importlib.machinery.ModuleSpec("cuda", None, is_package=True)
    monkeypatch.setitem(sys.modules, "cuda", cuda_pkg)
    install_cuda(monkeypatch, gpu)
    return fake


def test_auto_falls_back_to_ort_when_engine_cannot_run(cliff: tuple[Path, torch.nn.Module], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """TensorRT and a GPU are visible, but the folder's engine was built for another GPU (sm_86, this is an
    Orin, sm_87): ``auto`` must pick ONNX Runtime for that reason and never open the engine."""
    folder = _with_engine(cliff[0], tmp_path)
    fake = _visible_trt(monkeypatch, FakeCudart(name=b"Orin", cc=(8, 7)))
    with caplog.at_level("INFO", logger="hpsedge"):
        pred = Predictor.load(folder, backend="auto", device="cpu")
    assert pred.backend.name == "ort"
    reasons = [r.getMessage() for r in caplog.records if "backend auto ->" in r.getMessage()]
    assert reasons and "backend auto -> ort: the engine cannot run here" in reasons[-1] and "sm_86" in reasons[-1]
    assert not [c for c in fake.calls if c[0] == "deserialize_cuda_engine"]
    people = pred.predict(_image(), BOXES)  # and the fallback really runs
    assert len(people) == len(BOXES) and all(np.isfinite(p.pose_rotmat).all() for p in people)


def test_auto_picks_a_matching_engine(cliff: tuple[Path, torch.nn.Module], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The control for the fallback test: the same folder on the GPU and TensorRT it was built for runs
    the engine (so the fallback above is the compatibility check at work, not a missing TensorRT)."""
    folder = _with_engine(cliff[0], tmp_path)
    fake = _visible_trt(monkeypatch, FakeCudart())  # RTX 3090, sm_86, as the engine entry says
    pred = Predictor.load(folder, backend="auto", device="cpu")
    assert pred.backend.name == "trt"
    assert ("deserialize_cuda_engine", b"FAKE-PLAN") in fake.calls


def test_trt_backend_without_tensorrt_is_a_clear_error(cliff: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    folder = _with_engine(cliff[0], tmp_path)
    res = subprocess.run(
        [sys.executable, "-m", "hpsedge", "run", str(folder), "--image", str(EXAMPLE), "--backend", "trt",
         "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "TensorRT" in res.stderr


# --------------------------------------------------------------------------------------------- CLI
def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hpsedge", *args], capture_output=True, text=True, timeout=300)


def test_cli_run_writes_json_and_overlay(cliff: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    out = tmp_path / "out"
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"astronaut.jpg": [[100, 20, 420, 512], [10, 10, 90, 90]]}))
    res = _run("run", str(cliff[0]), "--image", str(EXAMPLE), "--boxes", str(boxes), "--out", str(out))
    assert res.returncode == 0, res.stderr
    doc = json.loads((out / "astronaut.json").read_text())
    assert doc["model"] == "poco-cliff" and len(doc["persons"]) == 2
    assert 0.0 <= doc["persons"][0]["confidence"] <= 1.0 and len(doc["persons"][0]["sigma"]) == 24
    from PIL import Image

    with Image.open(out / "astronaut_overlay.png") as im:
        assert im.size == (512, 512)
    # the output folder is not overwritten without --force
    res = _run("run", str(cliff[0]), "--image", str(EXAMPLE), "--out", str(out))
    assert res.returncode == 2 and "not empty" in res.stderr and "Traceback" not in res.stderr
    res = _run("run", str(cliff[0]), "--image", str(EXAMPLE), "--out", str(out), "--force")
    assert res.returncode == 0 and "whole image" in res.stdout


def test_cli_run_folder_and_bad_inputs(cliff: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(3):
        shutil.copy(EXAMPLE, imgs / f"frame{i}.jpg")
    res = _run("run", str(cliff[0]), "--image", str(imgs), "--out", str(tmp_path / "o1"))
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "o1").glob("*.json")) == ["frame0.json", "frame1.json", "frame2.json"]
    (imgs / "broken.png").write_bytes(b"not a png")
    cases = [
        (["--image", str(imgs)], "cannot read"),
        (["--image", str(tmp_path / "missing.jpg")], "no such image"),
        (["--image", str(EXAMPLE), "--boxes", str(tmp_path / "nope.json")], "boxes file not found"),
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    cases.append((["--image", str(empty)], "holds no images"))
    bad_boxes = tmp_path / "bad.json"
    bad_boxes.write_text(json.dumps({"astronaut.jpg": [[10, 10, 10, 90]]}))
    cases.append((["--image", str(EXAMPLE), "--boxes", str(bad_boxes)], "zero"))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"someone_else.jpg": [[10, 10, 50, 90]]}))
    cases.append((["--image", str(EXAMPLE), "--boxes", str(other)], "no boxes for 1 image"))
    for i, (args, message) in enumerate(cases):
        res = _run("run", str(cliff[0]), *args, "--out", str(tmp_path / f"bad{i}"))
        assert res.returncode == 2, (args, res.stderr)
        assert message in res.stderr, (message, res.stderr)
        assert "Traceback" not in res.stderr
