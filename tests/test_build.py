"""`hpsedge export build` and `hpsedge inspect`: folder contents, manifest, atomicity, TensorRT checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hpsedge.errors import ExportError, HpsedgeError
from hpsedge.export import build as build_mod
from hpsedge.export.build import BuildConfig, export_build, rebuild_on_device
from hpsedge.export.lint import check_trt_support
from hpsedge.runtime.manifest import load_manifest, sha256_file
from hpsedge.runtime.predictor import Predictor

EXAMPLE = Path(__file__).parents[1] / "examples" / "astronaut.jpg"


def _cfg(tmp_path: Path, **kw: object) -> BuildConfig:
    base = {"model": "poco-hmr", "out": tmp_path / "build", "precision": "fp32", "tiny": True}
    base.update(kw)
    return BuildConfig(**base)  # type: ignore[arg-type]


def test_fp32_build_folder_without_tensorrt(tmp_path: Path) -> None:
    res = export_build(_cfg(tmp_path, max_batch=8, opt_batch=2))
    names = sorted(p.name for p in res.folder.iterdir())
    assert names == ["manifest.json", "model.onnx", "report.json", "report.md", "trtexec.sh"]
    script = (res.folder / "trtexec.sh").read_text()  # the stock trtexec command for the same build plan
    assert "--onnx=model.onnx" in script and "--saveEngine=model.fp32.engine" in script
    assert "--optShapes=image:2x3x" in script and "--maxShapes=image:8x3x" in script and "--stronglyTyped" in script
    m = load_manifest(res.folder)
    raw = m.raw
    assert raw["artifacts"]["onnx"]["sha256"] == sha256_file(res.folder / "model.onnx")
    assert raw["engine_status"]["built"] is False and "TensorRT" in raw["engine_status"]["reason"]
    assert not res.engine_built
    assert raw["build"]["profile"] == {"min": 1, "opt": 2, "max": 8} and raw["max_batch"] == 8
    assert raw["trt_check"] == {"trt10": {"ok": True, "errors": []}, "trt11": {"ok": True, "errors": []}}
    report = (res.folder / "report.md").read_text()
    assert "TensorRT static check" in report and "not built" in report
    # the folder runs on the embedded default
    pred = Predictor.load(res.folder, device="cpu")
    assert pred.backend.name == "ort"


def test_require_engine_fails_cleanly_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no TensorRT engine could be built"):
        export_build(_cfg(tmp_path, require_engine=True))
    assert list(tmp_path.iterdir()) == []


def test_exception_mid_build_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated crash in the TensorRT step")

    monkeypatch.setattr(build_mod, "_engine_step", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        export_build(_cfg(tmp_path))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("exc", "match"), [
    (MemoryError(), "out of memory while"),
    (OSError(28, "No space left on device", "model.onnx.data"), "no space left on the disk while"),
    (RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : std::bad_alloc"), "out of memory while"),
])
def test_out_of_memory_or_disk_is_one_clean_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  exc: BaseException, match: str, capsys: pytest.CaptureFixture) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise exc

    monkeypatch.setattr(build_mod, "_engine_step", boom)
    with pytest.raises(ExportError, match=match):
        export_build(_cfg(tmp_path))
    assert list(tmp_path.iterdir()) == []
    from hpsedge import cli

    monkeypatch.setattr(sys, "argv", ["hpsedge", "export", "build", "--model", "poco-hmr", "--tiny", "--precision",
                                      "fp32", "--out", str(tmp_path / "cli")])
    with pytest.raises(SystemExit) as done:
        cli.main()
    err = capsys.readouterr().err
    assert done.value.code == 2 and "Traceback" not in err
    assert sum(ln.startswith("error: ") for ln in err.splitlines()) == 1
    assert match.split(" while")[0] in err


def test_force_semantics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "build"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(HpsedgeError, match="already exists"):
        export_build(_cfg(tmp_path))
    assert (out / "mine.txt").read_text() == "keep me"
    # --force replaces only an hpsedge build folder or an empty folder, never a folder of the user's files
    with pytest.raises(HpsedgeError, match="not an hpsedge build folder"):
        export_build(_cfg(tmp_path, force=True))
    assert (out / "mine.txt").read_text() == "keep me"
    (out / "mine.txt").unlink()
    first = export_build(_cfg(tmp_path, force=True))
    assert (out / "manifest.json").exists()
    stamp = first.manifest["created"]
    # a failing forced rebuild keeps the previous folder intact
    monkeypatch.setattr(build_mod, "lint_graph", lambda *a, **k: (_ for _ in ()).throw(ExportError("boom")))
    with pytest.raises(ExportError):
        export_build(_cfg(tmp_path, force=True))
    assert json.loads((out / "manifest.json").read_text())["created"] == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build"]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"precision": "bf8"}, "unknown precision"),
        ({"max_batch": 0}, "batch profile"),
        ({"opt_batch": 40}, "--opt-batch 40"),
        ({"precision": "int8"}, "INT8 needs calibration data"),
        ({"model": "poco-smpl"}, "unknown model"),
    ],
)
def test_bad_build_options(tmp_path: Path, kw: dict, match: str) -> None:
    with pytest.raises(HpsedgeError, match=match):
        export_build(_cfg(tmp_path, **kw))
    assert list(tmp_path.iterdir()) == []


def test_on_device_requires_tensorrt(tmp_path: Path) -> None:
    res = export_build(_cfg(tmp_path))
    before = (res.folder / "manifest.json").read_text()
    with pytest.raises(ExportError, match="no TensorRT engine could be built"):
        rebuild_on_device(res.folder, _cfg(tmp_path))
    assert (res.folder / "manifest.json").read_text() == before


# ------------------------------------------------------------------------------------ static check
def _graph(nodes: list, inits: list | None = None, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=inits or [],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_op_support_check_catches_planted_unsupported_op() -> None:
    ok = _graph([helper.make_node("Relu", ["x"], ["y"])])
    assert check_trt_support(ok, 10).ok
    bad = _graph([helper.make_node("MatMulInteger", ["x", "x"], ["y"])])
    report = check_trt_support(bad, 10)
    assert not report.ok and "MatMulInteger" in report.errors[0]
    custom = _graph([helper.make_node("MyPlugin", ["x"], ["y"], domain="com.example")])
    assert "com.example::MyPlugin" in check_trt_support(custom, 11).errors[0]
    assert "Einsum" in " ".join(check_trt_support(_graph([helper.make_node("Einsum", ["x"], ["y"], equation="ij->ij")]), 10).errors)
    assert "opset 21" in check_trt_support(_graph([helper.make_node("Relu", ["x"], ["y"])], opset=21), 10).errors[0]


def test_op_support_check_catches_asymmetric_qdq() -> None:
    import numpy as np

    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zp_u8 = numpy_helper.from_array(np.array(128, np.uint8), "zp")
    q = helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q0")
    dq = helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"], name="dq0")
    report = check_trt_support(_graph([q, dq], [scale, zp_u8]), 10)
    assert not report.ok and "UINT8" in report.errors[0]
    zp_s8 = numpy_helper.from_array(np.array(0, np.int8), "zp")
    assert check_trt_support(_graph([q, dq], [scale, zp_s8]), 10).ok
    zp_nz = numpy_helper.from_array(np.array(3, np.int8), "zp")
    assert "non-zero zero point" in check_trt_support(_graph([q, dq], [scale, zp_nz]), 10).errors[0]


def test_resize_restrictions() -> None:
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="cubic")
    s = numpy_helper.from_array(__import__("numpy").array([1.0, 1.0], "float32"), "s")
    assert "mode=cubic" in check_trt_support(_graph([node], [s]), 10).errors[0]


def test_build_reports_a_failed_static_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = build_mod.lint_graph

    def planted(path: Path, majors: tuple[int, ...]):  # the graph gains an op TensorRT lacks
        proto = onnx.load(str(path))
        proto.graph.node.append(helper.make_node("Unique", ["image"], ["u"], name="planted_unique"))
        onnx.save(proto, str(path))
        return real(path, majors)

    monkeypatch.setattr(build_mod, "lint_graph", planted)
    res = export_build(_cfg(tmp_path))
    assert res.manifest["trt_check"]["trt10"]["ok"] is False
    assert "Unique" in res.manifest["trt_check"]["trt10"]["errors"][0]
    assert "FAILS" in (res.folder / "report.md").read_text()


# ----------------------------------------------------------------------------------- CLI / inspect
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hpsedge", *args], capture_output=True, text=True, timeout=300)


def test_cli_build_inspect_run(tmp_path: Path) -> None:
    out = tmp_path / "b"
    res = _cli("export", "build", "--model", "poco-cliff", "--precision", "fp32", "--tiny", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "no TensorRT engine built" in res.stdout
    res = _cli("inspect", str(out))
    assert res.returncode == 0, res.stderr
    for text in ("poco-cliff", "bbox_info", "sha256 ok", "Conv", "ONNX Runtime", "TensorRT check (trt10)"):
        assert text in res.stdout, text
    res = _cli("inspect", str(out / "model.onnx"))
    assert res.returncode == 0 and "poco-cliff" in res.stdout
    # a tampered graph is reported
    data = (out / "model.onnx").read_bytes()
    (out / "model.onnx").write_bytes(data[:-10] + b"0123456789")
    res = _cli("inspect", str(out))
    assert "MISMATCH" in res.stdout
    res = _cli("inspect", str(tmp_path / "nothing"))
    assert res.returncode == 2 and "does not exist" in res.stderr


def test_inspect_bare_onnx_without_manifest(tmp_path: Path) -> None:
    path = tmp_path / "lonely.onnx"
    onnx.save(_graph([helper.make_node("Relu", ["x"], ["y"])]), str(path))
    res = _cli("inspect", str(path))
    assert res.returncode == 0, res.stderr
    assert "Relu" in res.stdout and "input x" in res.stdout


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_precision_build_folders(tmp_path: Path, precision: str) -> None:
    kw: dict = {"model": "poco-cliff", "precision": precision}
    if precision == "int8":
        kw["calib_images"] = EXAMPLE.parent  # the calibration set is made by the build itself
    res = export_build(_cfg(tmp_path, **kw))
    names = sorted(p.name for p in res.folder.iterdir())
    expected = ["manifest.json", "model.onnx", f"model.{precision}.onnx", "report.json", "report.md", "trtexec.sh"]
    if precision == "int8":  # both Q/DQ flavours: TensorRT (model.int8.onnx) and ONNX Runtime CPU
        expected += ["calib.json", "calib.npz", "model.int8.cpu.onnx"]
    assert names == sorted(expected)
    m = load_manifest(res.folder)
    art = m.artifacts[f"onnx_{precision}"]
    assert art["sha256"] == sha256_file(res.folder / art["file"]) and art["precision"] == precision
    assert m.raw["precision"] == precision and m.raw["accuracy"]["passed"] is True
    assert m.raw["trt_check"]["trt10"]["ok"], m.raw["trt_check"]
    assert f"--onnx=model.{precision}.onnx" in (res.folder / "trtexec.sh").read_text()
    report = (res.folder / "report.md").read_text()
    assert "Accuracy vs FP32" in report and "TensorRT static check" in report
    if precision == "int8":
        cal = m.raw["calibration"]
        assert cal["samples"] >= 1 and len(cal["sigma_percentiles"]["95"]) == 24
    # the precision graph runs in ONNX Runtime through the runtime
    pred = Predictor.load(res.folder, device="cpu", precision=precision)
    assert len(pred.predict(__import__("numpy").zeros((240, 320, 3), "uint8"), [[10, 10, 200, 230]])) == 1


def test_tokenhmr_fp16_report_has_token_agreement(tmp_path: Path) -> None:
    from hpsedge.export.onnx import export_onnx

    res = export_onnx("tokenhmr", tmp_path / "tok", tiny=True, precision="fp16", token_probs=True)
    acc = res.manifest["accuracy"]
    assert acc["precision"] == "fp16" and 0.0 <= acc["token_agreement"] <= 1.0
    assert "token agreement" in (res.out_dir / "report.md").read_text()
    keep = res.manifest["precision_config"]
    assert "/tokenizer/MatMul" in json.dumps(keep) and "op:LayerNormalization" in json.dumps(keep)


def test_dla_int8_is_refused_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`export build --dla 0 --precision int8` stops at the option check, not after an export and calibration."""
    def no_export(*_a: object, **_k: object) -> None:
        raise AssertionError("the export started")

    monkeypatch.setattr("hpsedge.export.onnx.export_onnx", no_export)
    with pytest.raises(ExportError, match=r"^INT8 on DLA is not supported"):
        export_build(_cfg(tmp_path, precision="int8", dla_core=0))
    assert list(tmp_path.iterdir()) == []
