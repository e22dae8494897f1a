"""Slim build folders (``hpsedge export slim``): only the target's files, verified, accepted by ``inspect`` and
``Predictor`` for that target and refused, in one line, for any other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from detector_synth import draw_people, make_detector
from hpsedge.errors import HpsedgeError, ManifestError
from hpsedge.inspect import inspect_path
from hpsedge.runtime.files import sha256_file
from hpsedge.runtime.predictor import Predictor
from hpsedge.slim import SlimTarget, make_slim

BOXES = [[20.0, 30.0, 90.0, 200.0], [150.0, 20.0, 230.0, 210.0]]


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny poco-pare INT8 folder with a person detector (FP32 graph, both INT8 flavours, FP16 detector)."""
    from PIL import Image

    from hpsedge.export.build import BuildConfig, export_build

    root = tmp_path_factory.mktemp("slim")
    (root / "imgs").mkdir()
    for k in range(3):
        Image.fromarray(draw_people(240, 320, [(20 + 30 * k, 30, 80 + 30 * k, 200)])).save(root / "imgs" / f"{k}.png")
    det = make_detector(root / "det.onnx", "yolo", size=(320, 320))
    return export_build(BuildConfig(model="poco-pare", out=root / "pare-int8", precision="int8", tiny=True,
                                    calib_images=root / "imgs", detector=det)).folder


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    return subprocess.run([sys.executable, "-m", "hpsedge", *args], capture_output=True, text=True, timeout=300, env=env)


def _image() -> np.ndarray:
    return draw_people(240, 320, [(20, 30, 90, 200)])


def test_a_copy_of_the_graph_alone_is_not_usable_but_a_slim_folder_is(full, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(full, copy)
    for name in ("model.onnx", "model.int8.onnx"):
        (copy / name).unlink()
    assert "problems" in inspect_path(copy)  # what the issue saw: the manifest lists files that are gone
    res = _cli("export", "slim", str(full), "--target", "ort-int8", "--out", str(tmp_path / "slim"))
    assert res.returncode == 0, res.stderr
    assert "✓ slim folder for ort-int8" in res.stdout and "model.int8.cpu.onnx" in res.stdout
    sec = inspect_path(tmp_path / "slim")
    assert "problems" not in sec, sec.get("problems")
    assert sec["slim folder"]["target"].startswith("ort-int8")
    assert sec["this machine"]["ONNX Runtime graph"].startswith("model.int8.cpu.onnx")
    assert _cli("inspect", str(tmp_path / "slim")).returncode == 0


def test_slim_folder_holds_only_the_target_and_runs_like_the_full_one(full, tmp_path):
    res = make_slim(full, tmp_path / "slim", "ort-int8")
    src = json.loads((full / "manifest.json").read_text())
    man = json.loads((res.folder / "manifest.json").read_text())
    assert set(man["artifacts"]) == {"onnx_int8_cpu", "detector_fp16", "report"}
    assert sorted(p.name for p in res.folder.iterdir()) == sorted(
        ["manifest.json", "model.int8.cpu.onnx", "detector.fp16.onnx", "report.md", "report.json"])
    for key, entry in man["artifacts"].items():  # hashes kept, files identical
        assert entry == src["artifacts"][key]
        if "sha256" in entry:
            assert sha256_file(res.folder / entry["file"]) == entry["sha256"]
    assert man["slim"]["target"] == "ort-int8"
    assert man["slim"]["source_manifest_sha256"] == sha256_file(full / "manifest.json")
    assert set(man["slim"]["dropped"]) == set(src["artifacts"]) - set(man["artifacts"])
    assert res.bytes_kept < res.bytes_source / 2
    img = _image()
    a = Predictor.load(full, device="cpu").predict(img, BOXES)
    b = Predictor.load(res.folder, device="cpu").predict(img, BOXES)
    assert Predictor.load(res.folder, device="cpu", precision="int8").backend.name == "ort"
    for pa, pb in zip(a, b, strict=True):
        np.testing.assert_array_equal(pa.pose_rotmat, pb.pose_rotmat)
    from hpsedge.runtime.pipeline import Pipeline

    pipe = Pipeline.load(res.folder, device="cpu")  # the folder's detector came along
    assert pipe.detector is not None


@pytest.mark.parametrize("kwargs, want", [({"precision": "fp32"}, "ort-fp32"), ({"precision": "fp16"}, "ort-fp16"),
                                          ({"backend": "trt"}, "trt-int8")])
def test_slim_folder_refuses_other_targets_in_one_line(full, tmp_path, kwargs, want):
    slim = make_slim(full, tmp_path / "slim", "ort-int8").folder
    with pytest.raises(ManifestError) as err:
        Predictor.load(slim, device="cpu", **kwargs)
    assert f"slim folder for ort-int8 (it holds model.int8.cpu.onnx); it cannot run {want}" in err.value.message
    assert "\n" not in err.value.message and f"--target {want}" in (err.value.hint or "")


def test_trt_target_keeps_the_tensorrt_flavour_and_is_refused_on_onnx_runtime(full, tmp_path):
    res = make_slim(full, tmp_path / "trt", SlimTarget("trt", "int8"))
    assert res.kept == {"onnx_int8": "model.int8.onnx", "trtexec": "trtexec.sh", "detector_fp16": "detector.fp16.onnx",
                        "report": "report.md"}  # no engine here (no GPU): `export build --on-device` makes it there
    sec = inspect_path(res.folder)
    assert "problems" not in sec and sec["this machine"]["runs with"].startswith("nothing here: a slim folder for trt-int8")
    with pytest.raises(ManifestError, match=r"slim folder for trt-int8 .* cannot run ort-int8"):
        Predictor.load(res.folder)  # auto → ONNX Runtime on this machine
    res = _cli("run", str(res.folder), "--image", str(Path(__file__).parents[1] / "examples" / "astronaut.jpg"),
               "--out", str(tmp_path / "run"))
    err = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert res.returncode != 0 and len(err) == 1 and "slim folder for trt-int8" in err[0], res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "run").exists()


def test_slim_errors(full, tmp_path):
    # an unknown target: one line, nothing written
    res = _cli("export", "slim", str(full), "--target", "ort-int9", "--out", str(tmp_path / "s"))
    assert res.returncode != 0 and res.stderr.startswith("error: unknown slim target 'ort-int9'") and not (tmp_path / "s").exists()
    # a precision the folder does not have
    with pytest.raises(ManifestError, match="no fp16 graph for ort-fp16"):
        make_slim(full, tmp_path / "s", "ort-fp16")
    # a slim folder has nothing for another target
    slim = make_slim(full, tmp_path / "slim", "ort-int8").folder
    with pytest.raises(HpsedgeError, match="already a slim folder for ort-int8"):
        make_slim(slim, tmp_path / "s2", "trt-int8")
    # never over a folder the user made, and only an hpsedge folder with --force
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    for force in (False, True):
        with pytest.raises(HpsedgeError):
            make_slim(full, mine, "ort-int8", force=force)
    assert (mine / "notes.txt").read_text() == "keep"
    with pytest.raises(HpsedgeError):
        make_slim(full, slim, "ort-int8")  # exists, no --force
    make_slim(full, slim, "ort-int8", force=True)
    # a changed source graph is refused before anything is written
    bad = tmp_path / "bad"
    import shutil

    shutil.copytree(full, bad)
    with open(bad / "model.int8.cpu.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ManifestError, match="sha256"):
        make_slim(bad, tmp_path / "s3", "ort-int8")
    assert not (tmp_path / "s3").exists()
    # a file changed in the slim folder is caught by inspect and the runtime
    with open(slim / "model.int8.cpu.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    assert "onnx_int8_cpu" in inspect_path(slim)["problems"]
    with pytest.raises(ManifestError, match="sha256"):
        Predictor.load(slim, device="cpu")


def test_slim_keeps_the_error_bound(full):
    """A folder's metric error bound (``error_bound.json``, issue 25) is runtime data: every target keeps it."""
    from hpsedge.runtime.manifest import load_manifest
    from hpsedge.slim import slim_keys

    m = load_manifest(full)
    m.raw["artifacts"]["error_bound"] = {"file": "error_bound.json", "sha256": "0" * 64, "bytes": 10}
    for target in ("ort-int8", "trt-int8"):
        assert "error_bound" in slim_keys(m, SlimTarget.parse(target))
