"""The one owner of what a build folder holds (:mod:`hpsedge.runtime.folder`): precision names, which file runs
for a backend/provider/precision, its batch range (an engine's recorded profile), and the commands that ask it
(on-device engine build, Triton export). Torch-free folders made here with the onnx helper."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hpsedge.errors import BackendError, ExportError, HpsedgeError, InputError, ManifestError
from hpsedge.runtime.folder import DEFAULT_MAX_BATCH, BatchRange, BuildFolder, Precision
from hpsedge.runtime.manifest import sha256_file
from test_tensorrt_logic import FakeCudart, FakeTRT, _tiny_export_folder, install_cuda, install_trt

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------
# Precision: one enum, parsed once
# ---------------------------------------------------------------------------------------------------
def test_precision_parse_and_names() -> None:
    assert Precision.names() == ("fp32", "fp16", "int8")
    assert Precision.parse(" FP16 ") is Precision.FP16 and Precision.parse(Precision.INT8) is Precision.INT8
    assert Precision.FP16 == "fp16" and json.dumps({"p": Precision.FP16}) == '{"p": "fp16"}'
    assert Precision.parse_optional(None) is None and Precision.parse_optional("") is None
    assert [p.graph_key for p in Precision] == ["onnx", "onnx_fp16", "onnx_int8"]
    assert [p.engine_name for p in Precision] == ["model.fp32.engine", "model.fp16.engine", "model.int8.engine"]
    assert Precision.FP32.graph_name == "model.onnx" and Precision.INT8.graph_name == "model.int8.onnx"
    for bad in ("fp64", "int4", 16, None):
        with pytest.raises(InputError) as err:
            Precision.parse(bad)
        assert "choose from fp32, fp16, int8" in err.value.message and "\n" not in err.value.message
        assert err.value.hint


def test_cli_refuses_a_bad_precision_in_one_line(tmp_path: Path) -> None:
    """Validated at the command line before any model loads: one error line, exit 2, no traceback."""
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin", "COLUMNS": "200"}
    commands = [
        ["run", str(tmp_path / "nowhere"), "--image", "x.jpg", "--precision", "fp64"],
        ["export", "build", "--model", "nope", "--precision", "fp64"],
        ["export", "triton", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r"), "--precision", "fp64"],
        ["curate", str(tmp_path / "nowhere"), "--precision", "fp64"],
        ["bench", "--model", "poco-hmr", "--precisions", "fp32,fp64", "--out", str(tmp_path / "b")],
    ]
    for args in commands:
        res = subprocess.run([sys.executable, "-m", "hpsedge", *args], capture_output=True, text=True, env=env,
                             timeout=120)
        assert res.returncode == 2 and "Traceback" not in res.stderr, (args, res.stderr)
        # the precision is refused first: before the (missing) folder, model or other arguments are looked at
        assert re.search(r"^error: .*unknown precision 'fp64' \(choose from fp32, fp16, int8\)$", res.stderr, re.M), (
            args, res.stderr)


# ---------------------------------------------------------------------------------------------------
# BuildFolder.select
# ---------------------------------------------------------------------------------------------------
def _folder(tmp_path: Path, *, precision: str = "fp32", max_batch: int | None = 8, extra: dict | None = None,
            engine: dict | None = None) -> Path:
    """A torch-free folder: the tiny graph of test_tensorrt_logic, with real sha256s, plus artifacts ``extra``
    (copies of the graph under other names) and an engine entry."""
    folder = tmp_path / "f"
    _tiny_export_folder(folder)
    raw = json.loads((folder / "manifest.json").read_text())
    raw["precision"] = precision
    if max_batch is None:
        raw.pop("max_batch")
    else:
        raw["max_batch"] = max_batch
    graph = (folder / "model.onnx").read_bytes()
    arts = raw["artifacts"]
    arts["onnx"].update(sha256=sha256_file(folder / "model.onnx"), bytes=len(graph))
    for key, entry in (extra or {}).items():
        (folder / entry["file"]).write_bytes(graph)
        arts[key] = {**entry, "sha256": sha256_file(folder / entry["file"]), "bytes": len(graph)}
    if engine is not None:
        (folder / engine["file"]).write_bytes(b"plan")
        arts["engine"] = {**engine, "sha256": sha256_file(folder / engine["file"]), "bytes": 4}
    (folder / "manifest.json").write_text(json.dumps(raw))
    return folder


INT8 = {
    "onnx_int8": {"file": "model.int8.onnx", "precision": "int8", "qdq_flavor": "trt-s8s8",
                  "serves": ["tensorrt", "TensorrtExecutionProvider"]},
    "onnx_int8_cpu": {"file": "model.int8.cpu.onnx", "precision": "int8", "qdq_flavor": "cpu-u8s8",
                      "serves": ["CPUExecutionProvider"]},
}


def test_select_graphs_by_precision_and_provider(tmp_path: Path) -> None:
    folder = BuildFolder.open(_folder(tmp_path, precision="int8", extra=INT8))
    assert folder.precision is Precision.INT8 and folder.precisions() == (Precision.FP32, Precision.INT8)
    cpu = folder.select("ort", "CPUExecutionProvider")
    assert cpu.file == "model.int8.cpu.onnx" and cpu.precision is Precision.INT8 and cpu.flavor == "cpu-u8s8"
    assert cpu.sha256 == sha256_file(cpu.path) and cpu.batch == BatchRange(1, 8)
    assert [t.name for t in cpu.inputs] == ["image", "bbox_info"] and cpu.confidence_rule is None
    assert not cpu.has_confidence
    assert folder.select("ort", "TensorrtExecutionProvider").file == "model.int8.onnx"
    assert folder.select("ort").file == "model.int8.onnx"  # no provider: the precision's main graph
    fp32 = folder.select("ort", "CPUExecutionProvider", "fp32")
    assert fp32.file == "model.onnx" and fp32.precision is Precision.FP32  # fp32 never turns INT8
    with pytest.raises(ManifestError, match=r"no fp16 ONNX graph \(it has: fp32, int8\)"):
        folder.select("ort", None, "fp16")
    with pytest.raises(ManifestError, match="no TensorRT engine"):
        folder.select("trt")
    with pytest.raises(BackendError, match="unknown backend"):
        folder.select("onnx")
    # the file is verified against the manifest before it is handed out
    (tmp_path / "f" / "model.int8.cpu.onnx").write_bytes(b"swapped")
    with pytest.raises(ManifestError, match="does not match the manifest"):
        folder.select("ort", "CPUExecutionProvider")


def test_select_engine_batch_range_from_its_profile(tmp_path: Path) -> None:
    engine = {"file": "model.fp16.engine", "precision": "fp16", "profile": {"min": 2, "opt": 8, "max": 32}}
    folder = BuildFolder.open(_folder(tmp_path, precision="fp16", max_batch=None, engine=engine,
                                      extra={"onnx_fp16": {"file": "model.fp16.onnx", "precision": "fp16"}}))
    plan = folder.select("trt")
    assert plan.file == "model.fp16.engine" and plan.batch == BatchRange(2, 32, 8) and plan.provider is None
    assert folder.select("ort").batch == BatchRange(1, DEFAULT_MAX_BATCH)  # the manifest has no max_batch
    assert folder.select("trt", precision="fp16").precision is Precision.FP16
    with pytest.raises(BackendError, match="engine is fp16, not int8"):
        folder.select("trt", precision="int8")
    # a pinned bare file runs itself
    pinned = BuildFolder.open(tmp_path / "f" / "model.fp16.onnx")
    assert pinned.pinned == "onnx_fp16" and pinned.select("ort", "CPUExecutionProvider").file == "model.fp16.onnx"
    with pytest.raises(BackendError, match="not a TensorRT engine"):
        pinned.select("trt")
    assert BuildFolder.open(tmp_path / "f" / "model.fp16.engine").select("trt").file == "model.fp16.engine"


@pytest.mark.parametrize("profile", [{"min": 0, "max": 8}, {"min": 9, "max": 8}, {"min": 1, "max": "8"},
                                     {"min": 1, "opt": 9, "max": 8}, [1, 8]])
def test_a_hostile_engine_profile_is_refused_in_one_line(tmp_path: Path, profile: object) -> None:
    engine = {"file": "model.fp32.engine", "precision": "fp32", "profile": profile}
    folder = BuildFolder.open(_folder(tmp_path, engine=engine))
    with pytest.raises(ManifestError, match="profile") as err:
        folder.select("trt")
    assert "\n" not in err.value.message


# ---------------------------------------------------------------------------------------------------
# export build --on-device: the folder's max batch, recorded as the engine's profile
# ---------------------------------------------------------------------------------------------------
def test_on_device_build_takes_the_folders_max_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """#22: `export build --on-device` built a max-16 profile whatever the folder's max batch (8 here)."""
    from hpsedge.export.build import BuildConfig, rebuild_on_device

    folder = tmp_path / "export"
    _tiny_export_folder(folder)  # max_batch 8
    install_trt(monkeypatch, FakeTRT())
    install_cuda(monkeypatch, FakeCudart(name=b"Orin", cc=(8, 7)))
    rebuild_on_device(folder, BuildConfig(model="x", out=folder))
    entry = json.loads((folder / "manifest.json").read_text())["artifacts"]["engine"]
    assert entry["profile"]["max"] == 8 and entry["profile"]["min"] == 1
    assert entry["profile_shapes"]["image"]["max"] == [8, 3, 2, 2]
    assert "--maxShapes=image:8x3x2x2,bbox_info:8x3" in (folder / "trtexec.sh").read_text()
    # what runs the engine reads that profile back
    assert BuildFolder.open(folder).select("trt", verify=False).batch.max == 8
    # an explicit --max-batch (and --min-batch) wins, and is recorded
    rebuild_on_device(folder, BuildConfig(model="x", out=folder, max_batch=4, min_batch=2, force=True))
    plan = BuildFolder.open(folder).select("trt", verify=False)
    assert (plan.batch.min, plan.batch.max) == (2, 4)
    with pytest.raises(HpsedgeError, match="min ≤ max"):
        rebuild_on_device(folder, BuildConfig(model="x", out=folder, min_batch=9, force=True))


# ---------------------------------------------------------------------------------------------------
# export triton: the plan's batch range for the tensorrt_plan model (#23 defect 5)
# ---------------------------------------------------------------------------------------------------
def _max_batch_size(config: Path) -> int:
    return int(re.search(r"^max_batch_size: (\d+)$", config.read_text(), re.M).group(1))


def test_triton_plan_model_takes_the_engines_profile(tmp_path: Path) -> None:
    """#23.5: the tensorrt_plan model's max_batch_size came from the manifest (8), not the engine (32)."""
    from hpsedge.export.triton import export_triton

    engine = {"file": "model.fp32.engine", "precision": "fp32", "trt_version": "10.3.0.30",
              "compute_capability": "8.7", "platform": "jetson", "profile": {"min": 1, "opt": 4, "max": 32}}
    src = _folder(tmp_path, engine=engine)
    res = export_triton(src, tmp_path / "repo", name="tiny")
    assert _max_batch_size(res.models["tiny_trt"] / "config.pbtxt") == 32
    assert _max_batch_size(res.models["tiny_onnx"] / "config.pbtxt") == 8
    assert res.network_model == "tiny_trt"
    # the hpsedge model splits frames to what the network model it calls takes
    assert 'key: "network_max_batch"\n  value: { string_value: "32" }' in (res.models["hpsedge"] / "config.pbtxt").read_text()
    with pytest.raises(ExportError, match=r"preferred batch sizes must lie in 1\.\.8"):
        export_triton(src, tmp_path / "repo2", name="tiny", preferred_batch_sizes=[16])


def test_triton_refuses_an_engine_whose_profile_starts_above_one(tmp_path: Path) -> None:
    from hpsedge.export.triton import export_triton

    engine = {"file": "model.fp32.engine", "precision": "fp32", "trt_version": "10.3.0.30",
              "compute_capability": "8.7", "platform": "jetson", "profile": {"min": 2, "opt": 4, "max": 8}}
    src = _folder(tmp_path, engine=engine)
    for network in ("auto", "trt"):
        with pytest.raises(ExportError, match="profile starts at 2") as err:
            export_triton(src, tmp_path / f"repo-{network}", name="tiny", network=network)
        assert "--min-batch 1" in (err.value.hint or "")
    res = export_triton(src, tmp_path / "repo-onnx", name="tiny", network="onnx")  # honest: no plan model
    assert set(res.models) == {"tiny_onnx", "hpsedge"} and res.network_model == "tiny_onnx"
