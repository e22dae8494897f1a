"""Full-size TokenHMR (ViT-H, 2.75 GB FP32 graph with external data) through FP16 and INT8 with the real CLI.

Slow: each build exports the 688 M-parameter network with random weights, converts or quantizes it and writes
the accuracy report. The INT8 build calibrates on a handful of person crops (examples/astronaut.jpg). Every
build runs in its own process (``hpsedge export build``), so its peak RSS is measured as that child's.
The INT8 build is in ``test_fullsize_int8.py``, so that ``make test``'s two workers (``--dist loadfile``) run
the two builds side by side.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hpsedge.inspect import inspect_path
from hpsedge.runtime.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "astronaut.jpg"
#: the brief's bound on a full-size build's peak resident memory
MAX_RSS_GB = 12.0

pytestmark = pytest.mark.slow


def _build(tmp_path: Path, precision: str, *extra: str) -> Path:
    out = tmp_path / f"tokenhmr-{precision}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "hpsedge.cli", "export", "build", "--model", "tokenhmr", "--precision", precision,
           "--max-batch", "4", "--out", str(out), *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    assert peak_gb <= MAX_RSS_GB, f"peak RSS {peak_gb:.1f} GB"
    return out


def _check_folder(folder: Path, key: str) -> dict:
    manifest = json.loads((folder / "manifest.json").read_text())
    art = manifest["artifacts"][key]
    assert (folder / art["file"]).is_file() and (folder / art["data_file"]).is_file()  # > 2 GB: external data
    sections = inspect_path(folder)
    assert not any("MISMATCH" in str(v) or "MISSING" in str(v) for v in sections["artifacts"].values()), sections
    report = json.loads((folder / "report.json").read_text())
    fig = report["figures"]
    assert np.isfinite(fig["pose_deg"]["mean"]) and "token_confidence" in fig
    assert all(e["finite"] for e in fig["outputs"].values())
    pred = Predictor.load(folder, backend="ort", device="cpu", threads=2)
    h, w = 480, 360
    image = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    people = pred.predict(image, boxes=np.array([[40, 40, 300, 440], [10, 20, 200, 300]], dtype=np.float32))
    assert len(people) == 2 and all(np.isfinite(p.pose_rotmat).all() for p in people)
    pred.close()
    return manifest


def test_tokenhmr_fp16_full_size(tmp_path: Path) -> None:
    folder = _build(tmp_path, "fp16")
    manifest = _check_folder(folder, "onnx_fp16")
    assert manifest["precision_config"]["external_data"] is True
    assert manifest["accuracy"]["precision"] == "fp16"
