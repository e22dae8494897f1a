"""Full-size TokenHMR INT8 build with the real CLI (see ``test_fullsize_precision.py``, which holds the FP16 build
and the helpers; a file of its own so that pytest-xdist runs the two long builds on different workers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from test_fullsize_precision import PHOTO, _build, _check_folder

pytestmark = pytest.mark.slow


def test_tokenhmr_int8_full_size(tmp_path: Path) -> None:
    images = tmp_path / "calib"
    images.mkdir()
    (images / PHOTO.name).write_bytes(PHOTO.read_bytes())
    boxes = tmp_path / "boxes.json"  # a few person crops are enough to exercise calibration at full size
    boxes.write_text(json.dumps({PHOTO.name: [[60, 20, 400, 500], [120, 40, 360, 480], [30, 0, 450, 510],
                                              [150, 100, 330, 400], [90, 60, 380, 470]]}))
    folder = _build(tmp_path, "int8", "--calib-images", str(images), "--calib-boxes", str(boxes))
    manifest = _check_folder(folder, "onnx_int8")
    arts = manifest["artifacts"]
    assert arts["onnx_int8"]["qdq_flavor"] == "trt-s8s8" and "TensorrtExecutionProvider" in arts["onnx_int8"]["serves"]
    assert "onnx_int8_cpu" in arts and "CPUExecutionProvider" in arts["onnx_int8_cpu"]["serves"]
    report = json.loads((folder / "report.json").read_text())
    assert np.isfinite(report["cpu_flavour"]["figures"]["pose_deg"]["mean"])
