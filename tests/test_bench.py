"""`hpsedge bench` on tiny folders: interleaved rows, stages that add up to the total, TensorRT marked absent.

Timings are never asserted (shared machine); only the structure and the consistency of the figures are.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hpsedge.errors import InputError
from hpsedge.eval.bench import STAGES, BenchConfig, middle_calls, run_bench
from hpsedge.export.onnx import export_onnx

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny poco-cliff export that holds both an FP32 and an FP16 graph."""
    return export_onnx("poco-cliff", tmp_path_factory.mktemp("bench") / "cliff", tiny=True, precision="fp16").out_dir


def test_middle_calls() -> None:
    assert sorted(middle_calls(np.array([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0])).tolist()) == [0, 3, 4, 7]
    assert middle_calls(np.array([3.0])).tolist() == [0]
    assert sorted(middle_calls(np.array([3.0, 1.0, 2.0])).tolist()) == [0, 1, 2]


def test_bench_rows_stages_and_absent_tensorrt(folder: Path, tmp_path: Path, smpl_npz: Path) -> None:
    out = tmp_path / "b"
    doc = run_bench(BenchConfig(out=out, folders=[f"{folder}@fp32", f"{folder}@fp16"], batches=[1, 3], reps=3,
                                smpl=smpl_npz, device="cpu"))
    rows = doc["rows"]
    assert [(r["precision"], r["batch"]) for r in rows] == [("fp32", 1), ("fp32", 3), ("fp16", 1), ("fp16", 3)]
    assert [r["graph"] for r in rows] == ["model.onnx", "model.onnx", "model.fp16.onnx", "model.fp16.onnx"]
    for r in rows:
        ms = r["ms"]
        assert all(ms[k] >= 0 for k in STAGES) and ms["smpl"] > 0 and r["smpl"]
        assert ms["total"] == pytest.approx(sum(ms[k] for k in STAGES), rel=1e-9)  # stages add up to the total
        assert all(r["median_ms"]["total"] >= r["median_ms"][k] for k in STAGES)
        assert r["calls"] == 3 and r["people_per_s"] == pytest.approx(1000 * r["batch"] / ms["total"])
        assert r["bytes"] == (folder / r["graph"]).stat().st_size
    assert rows[2]["accuracy"]["pose_deg_mean"] >= 0  # the fp16 graph's build report
    assert rows[0]["accuracy"] is None
    # no GPU here: the TensorRT rows are marked absent with a reason, not measured
    assert [(a["precision"], a["backend"]) for a in doc["absent"]] == [("fp32", "trt"), ("fp16", "trt")]
    assert all(a["reason"] for a in doc["absent"])
    md = (out / "bench.md").read_text()
    assert md.count("| absent: ") == 2 and "| poco-cliff | fp16 | ort | model.fp16.onnx" in md
    with Image.open(out / "bench.png") as im:
        assert im.format == "PNG"
    with pytest.raises(InputError, match="not overwriting"):
        run_bench(BenchConfig(out=out, folders=[str(folder)], batches=[1], reps=1))


def test_bench_builds_what_is_missing(tmp_path: Path) -> None:
    cfg = BenchConfig(out=tmp_path / "b", model="poco-hmr", precisions=["fp32"], backends=["ort"], batches=[2],
                      reps=1, warmup=0, tiny=True, device="cpu")
    first = run_bench(cfg)
    assert (tmp_path / "b" / "builds" / "poco-hmr-fp32" / "manifest.json").is_file()
    assert first["rows"][0]["built_now"] is True and first["absent"] == []
    cfg.force = True
    again = run_bench(cfg)  # the folder is reused, not rebuilt
    assert again["rows"][0]["built_now"] is False


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--batch", "1,x"], "--batch takes integers"),
        (["--precisions", "fp64"], "unknown precision"),
        (["--backends", "cuda"], "unknown backend"),
        ([], "give build folders or --model"),
    ],
)
def test_bench_cli_errors(args: list[str], needle: str, tmp_path: Path) -> None:
    extra = ["--model", "poco-hmr"] if args else []
    res = subprocess.run([sys.executable, "-m", "hpsedge.cli", "bench", *extra, *args, "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 2
    errs = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errs) == 1 and needle in errs[0], res.stderr
