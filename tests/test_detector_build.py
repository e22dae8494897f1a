"""A person detector in the build folder: verify, copy, FP16/INT8 with box drift vs FP32, manifest, inspect, run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detector_synth import draw_people, make_detector
from hpsedge.errors import HpsedgeError, InputError
from hpsedge.export.detector import add_detector, box_drift
from hpsedge.runtime.detect import DetectorConfig


@pytest.fixture(scope="module")
def calib_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    folder = tmp_path_factory.mktemp("calib_images")
    rng = np.random.default_rng(0)
    for k in range(6):
        x, y = int(rng.integers(20, 400)), int(rng.integers(20, 200))
        img = draw_people(480, 640, [(x, y, x + 80, y + 220), (x + 150, y + 10, x + 230, y + 240)])
        Image.fromarray(img).save(folder / f"c{k}.png")
    return folder


@pytest.mark.parametrize("layout", ["yolo", "end2end", "dets_labels"])
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_detector_survives_fp16_and_int8(tmp_path, calib_images, layout, precision):
    det = make_detector(tmp_path / "det.onnx", layout, size=(320, 320))
    folder = tmp_path / "f"
    folder.mkdir()
    manifest: dict[str, Any] = {"artifacts": {}}
    opts = {"preprocess": "ultralytics"} if layout == "dets_labels" else {}
    section = add_detector(folder, manifest, det, precision, calib_images, opts)
    drift = section["drift"]
    assert drift["boxes_fp32"] == 12 and drift["matched"] == 12
    assert drift["min_iou"] >= 0.9 and drift["missing"] == drift["extra"] == 0
    block = manifest["detector"]
    assert block["layout"] == layout and block["precision"] == precision
    assert set(manifest["artifacts"]) == {"detector", f"detector_{precision}"}
    assert all(chk["ok"] for chk in block["trt_check"].values())
    DetectorConfig.from_dict(block)  # the runtime reads what export wrote
    if precision == "int8":
        text = (folder / f"detector.{precision}.onnx").read_bytes()
        assert b"QuantizeLinear" in text


def test_box_drift_counts_missing_and_extra():
    ref = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float), np.array([0.9, 0.8]))]
    got = [(np.array([[0, 0, 10, 11], [50, 50, 60, 60]], float), np.array([0.85, 0.5]))]
    d = box_drift(ref, got)
    assert d["matched"] == 1 and d["missing"] == 1 and d["extra"] == 1
    assert d["min_iou"] == pytest.approx(100 / 110, abs=1e-4) and d["max_score_change"] == pytest.approx(0.05)


def test_bad_detectors_are_refused(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    with pytest.raises(InputError, match="known layout"):
        add_detector(folder, {"artifacts": {}}, make_detector(tmp_path / "x.onnx", "not_a_detector"), "fp32")
    with pytest.raises(InputError, match="no 'person' class"):
        add_detector(folder, {"artifacts": {}}, make_detector(tmp_path / "c.onnx", "yolo", names={0: "car"},
                                                              num_classes=3), "fp32")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(InputError, match="not a valid ONNX"):
        add_detector(folder, {"artifacts": {}}, junk, "fp32")
    with pytest.raises(HpsedgeError, match="INT8 detector needs calibration images"):
        add_detector(folder, {"artifacts": {}}, make_detector(tmp_path / "d.onnx", "yolo"), "int8")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "hpsedge", *args], capture_output=True, text=True, timeout=600, env=env)


def test_cli_build_with_detector_inspect_and_run(tmp_path, calib_images):
    pytest.importorskip("av")
    from hpsedge.runtime.video import write_video

    det = make_detector(tmp_path / "det.onnx", "yolo", size=(320, 320))
    out = tmp_path / "b"
    # not a detector: one error line, no folder
    bad = make_detector(tmp_path / "bad.onnx", "not_a_detector")
    res = _cli("export", "build", "--model", "poco-cliff", "--tiny", "--precision", "fp32", "--detector", str(bad),
               "--out", str(out))
    assert res.returncode != 0 and "not a person detector" in res.stderr and "Traceback" not in res.stderr
    assert not out.exists()
    res = _cli("export", "build", "--model", "poco-cliff", "--tiny", "--precision", "fp16", "--detector", str(det),
               "--calib-images", str(calib_images), "--out", str(out))
    assert res.returncode == 0, res.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["detector"]["precision"] == "fp16" and "detector_fp16" in m["artifacts"]
    report = (out / "report.md").read_text()
    assert "## Person detector" in report and "Boxes of the fp16 detector against FP32 (6 images, 12 FP32 boxes)" in report
    assert m["detector"]["verification"]["drift"]["min_iou"] >= 0.9 and "| ok |" in report
    res = _cli("inspect", str(out))
    assert res.returncode == 0 and "person detector" in res.stdout and "yolo" in res.stdout, res.stderr
    # the folder's own detector drives `run --source`
    frames = [draw_people(360, 640, [(60 + 10 * k, 100, 120 + 10 * k, 260)]) for k in range(8)]
    video = write_video(tmp_path / "one.mp4", frames, fps=25)
    res = _cli("run", str(out), "--source", str(video), "--jsonl", "-")
    assert res.returncode == 0, res.stderr
    recs = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(recs) == 8 and all([p["track_id"] for p in r["people"]] == [0] for r in recs)


def test_on_device_rebuild_builds_both_engines(tmp_path, monkeypatch):
    """--on-device builds the regressor's and the detector's engine (TensorRT faked: the decisions and the manifest
    wiring are what is checked here; the real builder is covered by tests/test_tensorrt_logic.py)."""
    import hpsedge.runtime.trt.builder as trt_mod
    from hpsedge.export.build import BuildConfig, rebuild_on_device
    from hpsedge.export.onnx import export_onnx, write_manifest
    from hpsedge.runtime.manifest import load_manifest

    folder = export_onnx("poco-cliff", tmp_path / "f", tiny=True).out_dir
    raw = load_manifest(folder).raw
    add_detector(folder, raw, make_detector(tmp_path / "det.onnx", "yolo", size=(320, 320)), "fp16")
    write_manifest(folder, raw)
    calls: list[tuple[str, Any]] = []

    def fake_build(onnx_path, engine_path, options, progress=None, *, input_specs=None, **_kw):
        calls.append((Path(onnx_path).name, (options.min_batch, options.max_batch, options.precision, input_specs)))
        Path(engine_path).write_bytes(b"plan")
        return {"file": Path(engine_path).name, "precision": options.precision, "trt_version": "10.3.0",
                "compute_capability": "8.7", "platform": "jetson"}

    monkeypatch.setattr(trt_mod, "trt_available", lambda device=0: (True, "fake TensorRT"))
    monkeypatch.setattr(trt_mod, "build_engine", fake_build)
    res = rebuild_on_device(folder, BuildConfig(model="poco-cliff", out=folder))
    assert res.engine_built
    assert [c[0] for c in calls] == ["model.onnx", "detector.fp16.onnx"]
    assert calls[1][1] == (1, 1, "fp16", [("images", [1, 3, 320, 320])])
    m = json.loads((folder / "manifest.json").read_text())
    assert m["artifacts"]["detector_engine"]["file"] == "detector.fp16.engine"
    assert m["artifacts"]["detector_engine"]["on_device"] is True


def test_detector_runs_on_tensorrt_next_to_a_tensorrt_regressor(tmp_path, monkeypatch):
    """With the regressor on TensorRT and a detector engine built from the chosen graph, the Pipeline runs the
    detector through TensorRTBackend (faked here by ONNX Runtime on the same graph); otherwise on ONNX Runtime."""
    import hpsedge.runtime.trt.backend as trt_backend
    from hpsedge.export.onnx import export_onnx, write_manifest
    from hpsedge.runtime.backends.ort import OrtBackend
    from hpsedge.runtime.manifest import load_manifest
    from hpsedge.runtime.pipeline import Pipeline, detector_engine_entry
    from hpsedge.runtime.predictor import Predictor

    folder = export_onnx("poco-cliff", tmp_path / "f", tiny=True).out_dir
    raw = load_manifest(folder).raw
    add_detector(folder, raw, make_detector(tmp_path / "det.onnx", "yolo", size=(320, 320)), "fp16")
    (folder / "detector.fp16.engine").write_bytes(b"plan")
    raw["artifacts"]["detector_engine"] = {"file": "detector.fp16.engine", "source": "detector.fp16.onnx",
                                           "precision": "fp16"}
    write_manifest(folder, raw)
    m = load_manifest(folder)
    assert detector_engine_entry(m, "trt", "detector_fp16") is not None
    assert detector_engine_entry(m, "ort", "detector_fp16") is None
    assert detector_engine_entry(m, "trt", "detector") is None  # engine built from another graph

    opened: list[str] = []

    class FakeTRT(OrtBackend):
        name = "trt"

        def __init__(self, path, entry, device=0):
            opened.append(Path(path).name)
            super().__init__(Path(path).with_name(entry["source"]), device="cpu", warmup=False)

    real_load = Predictor.load

    def load_as_trt(*a, **k):
        p = real_load(*a, **k)
        p.backend.name = "trt"
        return p

    monkeypatch.setattr(trt_backend, "TensorRTBackend", FakeTRT)
    monkeypatch.setattr(Predictor, "load", staticmethod(load_as_trt))
    pipe = Pipeline.load(folder)
    assert opened == ["detector.fp16.engine"]
    res = pipe(draw_people(360, 640, [(60, 100, 120, 260), (300, 90, 370, 280)]))
    assert [p.track_id for p in res.people] == [0, 1]
