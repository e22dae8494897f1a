"""`hpsedge run` for a robot (issue 26): --image uses the folder's detector as --source does (one input option,
one behaviour), --camera/--intrinsics, and the --mcap/--rerun outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import smpl_synth
from detector_synth import draw_people, make_detector

H, W = 360, 640
BOXES = [(60, 100, 120, 260), (420, 110, 480, 270)]
CAMERA_INFO = """image_width: 640
image_height: 360
camera_name: front
camera_matrix:
  rows: 3
  cols: 3
  data: [500.0, 0.0, 322.0, 0.0, 498.0, 181.0, 0.0, 0.0, 1.0]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [-0.1, 0.02, 0.0, 0.0, 0.0]
"""


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "hpsedge", *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from PIL import Image

    root = tmp_path_factory.mktemp("runrobot")
    det = make_detector(root / "det.onnx", "yolo", size=(320, 320))
    folder = root / "poco-det"
    res = _cli("export", "build", "--model", "poco-cliff", "--tiny", "--precision", "fp32", "--detector", str(det),
               "--out", str(folder))
    assert res.returncode == 0, res.stderr
    smpl_synth.write_synthetic_smpl(root, style="npz", arrays=smpl_synth.make_smpl_arrays(num_betas=10, seed=0))
    pic = root / "two.png"
    Image.fromarray(draw_people(H, W, BOXES)).save(pic)
    cam = root / "front.yaml"
    cam.write_text(CAMERA_INFO)
    return {"folder": folder, "pic": pic, "smpl": root / "SMPL_NEUTRAL.npz", "camera": cam}


def test_image_uses_the_folders_detector_like_source(assets, tmp_path):
    out = tmp_path / "img"
    res = _cli("run", str(assets["folder"]), "--image", str(assets["pic"]), "--out", str(out), "--no-overlay")
    assert res.returncode == 0, res.stderr
    doc = json.loads((out / "two.json").read_text())
    src = _cli("run", str(assets["folder"]), "--source", str(assets["pic"]), "--jsonl", "-")
    assert src.returncode == 0, src.stderr
    [frame] = [json.loads(x) for x in src.stdout.splitlines()]
    assert len(doc["persons"]) == len(frame["people"]) == 2
    np.testing.assert_allclose([p["box"] for p in doc["persons"]], [p["box"] for p in frame["people"]], atol=0.01)
    np.testing.assert_allclose([p["box"] for p in doc["persons"]], BOXES, atol=3)
    assert all(p["detector_score"] > 0.5 for p in doc["persons"])
    # given boxes still win over the detector
    (tmp_path / "b.json").write_text(json.dumps({"two.png": [list(BOXES[0])]}))
    res = _cli("run", str(assets["folder"]), "--image", str(assets["pic"]), "--boxes", str(tmp_path / "b.json"),
               "--out", str(tmp_path / "img2"), "--no-overlay")
    assert res.returncode == 0, res.stderr
    assert len(json.loads((tmp_path / "img2" / "two.json").read_text())["persons"]) == 1


def test_camera_and_robot_outputs(assets, tmp_path):
    pytest.importorskip("mcap_ros2")
    pytest.importorskip("rerun")
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    bag, rrd, out = tmp_path / "p.mcap", tmp_path / "p.rrd", tmp_path / "img"
    res = _cli("run", str(assets["folder"]), "--image", str(assets["pic"]), "--smpl", str(assets["smpl"]),
               "--camera", str(assets["camera"]), "--mcap", str(bag), "--rerun", str(rrd), "--out", str(out),
               "--no-overlay")
    assert res.returncode == 0, res.stderr
    doc = json.loads((out / "two.json").read_text())
    assert doc["camera"]["fx"] == 500.0 and doc["camera"]["distortion"] == [-0.1, 0.02, 0.0, 0.0, 0.0]
    assert all(p["focal"] == pytest.approx(np.sqrt(500 * 498)) for p in doc["persons"])
    with open(bag, "rb") as fh:
        msgs = list(make_reader(fh, decoder_factories=[DecoderFactory()]).iter_decoded_messages())
    topics = {ch.topic: m for _s, ch, _r, m in msgs}
    assert set(topics) == {"/hpsedge/markers", "/hpsedge/people", "/hpsedge/camera_info"}
    assert list(topics["/hpsedge/camera_info"].k) == [500.0, 0.0, 322.0, 0.0, 498.0, 181.0, 0.0, 0.0, 1.0]
    people = json.loads(topics["/hpsedge/people"].data)["people"]
    np.testing.assert_allclose([p["transl"] for p in people], [p["transl"] for p in doc["persons"]], atol=1e-4)
    assert rrd.stat().st_size > 0 and not (tmp_path / "p.part.rrd").exists()
    # --source with the same camera and outputs; existing files are kept without --force
    res = _cli("run", str(assets["folder"]), "--source", str(assets["pic"]), "--intrinsics", "500,498,322,181",
               "--mcap", str(bag))
    assert res.returncode != 0 and "not overwriting" in res.stderr and "Traceback" not in res.stderr
    res = _cli("run", str(assets["folder"]), "--source", str(assets["pic"]), "--intrinsics", "500,498,322,181",
               "--mcap", str(tmp_path / "s.mcap"), "--jsonl", "-")
    assert res.returncode == 0, res.stderr
    [frame] = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(frame["people"]) == 2 and (tmp_path / "s.mcap").is_file()


@pytest.mark.parametrize("args,message", [
    (["--intrinsics", "1,2,3"], "intrinsics take 4 numbers"),
    (["--intrinsics", "500,500,320,180", "--camera", "x.yaml"], "give the camera once"),
    (["--camera", "missing.yaml"], "camera file not found"),
    (["--mcap", "out.txt"], "use an .mcap name"),
])
def test_camera_and_output_errors_are_one_line(assets, tmp_path, args, message):
    res = _cli("run", str(assets["folder"]), "--image", str(assets["pic"]), "--out", str(tmp_path / "o"), *args)
    assert res.returncode != 0 and message in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists()


def test_camera_of_another_resolution_is_refused(assets, tmp_path):
    small = tmp_path / "small.yaml"
    small.write_text(CAMERA_INFO.replace("image_width: 640", "image_width: 1280"))
    res = _cli("run", str(assets["folder"]), "--image", str(assets["pic"]), "--camera", str(small),
               "--out", str(tmp_path / "o"))
    assert res.returncode != 0 and "calibrated at 1280×360" in res.stderr and "Traceback" not in res.stderr
