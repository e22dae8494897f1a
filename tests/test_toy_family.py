"""A family described by its spec alone (#22): ``tests/toy_family.py``'s network and spec, registered here for
this module only, flow through ``export build`` (two weights files), the Predictor (its extra input made by the
runtime's rule, its own confidence output), ``val``, ``curate`` and the Triton export. No file in ``src``
names it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import ClassVar

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

import toy_family
from hpsedge.errors import CheckpointError
from hpsedge.export.build import BuildConfig, export_build
from hpsedge.models.registry import get_spec, register_model, registered, unregister_model
from hpsedge.runtime.folder import BuildFolder
from hpsedge.runtime.manifest import load_manifest
from hpsedge.runtime.predictor import Predictor
from hpsedge.runtime.preprocess import preprocess

ROOT = Path(__file__).resolve().parents[1]
BOXES = np.array([[40.0, 20.0, 160.0, 230.0], [150.0, 60.0, 300.0, 200.0], [10.0, 10.0, 90.0, 120.0]], np.float32)


def _image(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 3) % 255, (yy * 2) % 255, (xx + yy) % 255], axis=-1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The toy family registered (and removed afterwards), its two weights files and an FP16 build folder."""
    register_model(toy_family.toy_spec)
    try:
        root = tmp_path_factory.mktemp("toy")
        spec = get_spec(toy_family.NAME)
        torch.manual_seed(7)
        model = spec.build(tiny=True).eval()
        sd = model.state_dict()
        torch.save({k: v for k, v in sd.items() if not k.startswith("refiner.")}, root / "toy.pt")
        torch.save({k[len("refiner."):]: v for k, v in sd.items() if k.startswith("refiner.")}, root / "refiner.pt")
        folder = export_build(BuildConfig(
            model=toy_family.NAME, out=root / "toy-fp16", precision="fp16", checkpoint=root / "toy.pt",
            extra_model_args={"refiner": root / "refiner.pt"}, precision_options={"latency_reps": 1},
        )).folder
        yield {"root": root, "spec": spec, "model": model, "folder": folder}
    finally:
        unregister_model(toy_family.NAME)
    assert toy_family.NAME not in registered()


def _torch_outputs(model: torch.nn.Module, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        outs = model(*(torch.from_numpy(feeds[n]) for n in model.spec.input_names))
    return {n: o.numpy() for n, o in zip(model.spec.output_names, outs, strict=True)}


def test_export_build_reads_both_weights_files(toy: dict) -> None:
    m = load_manifest(toy["folder"])
    ck = m.raw["checkpoint"]
    assert ck["file"] == "toy.pt" and ck["refiner"]["file"] == "refiner.pt" and not ck["random_init"]
    assert [t.name for t in m.inputs] == ["image", "frame_hw"] and m.confidence_rule == toy_family.CONFIDENCE
    assert m.preprocessing["extra_inputs"] == {"frame_hw": "image_hw"}
    # the FP32 graph holds the refiner's weights from the second file: same outputs as the PyTorch model
    feeds = {n: t.numpy() for n, t in zip(toy["spec"].input_names, toy["model"].example_inputs(4, seed=5), strict=True)}
    sess = ort.InferenceSession(str(toy["folder"] / "model.onnx"), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))
    for name, want in _torch_outputs(toy["model"], feeds).items():
        np.testing.assert_allclose(got[name], want, atol=1e-5, err_msg=name)
    # the family's second file is required, and named by the spec's option
    with pytest.raises(CheckpointError, match="pass it as --refiner"):
        export_build(BuildConfig(model=toy_family.NAME, out=toy["root"] / "no-refiner", checkpoint=toy["root"] / "toy.pt"))
    with pytest.raises(CheckpointError, match=r"--tokenizer is only for models with a tokenizer file \(tokenhmr\), not toy-conf"):
        export_build(BuildConfig(model=toy_family.NAME, out=toy["root"] / "x", checkpoint=toy["root"] / "toy.pt",
                                 extra_model_args={"tokenizer": toy["root"] / "refiner.pt"}))


@pytest.mark.parametrize("precision", [None, "fp32"])
def test_predictor_runs_the_family_by_its_manifest(toy: dict, smpl_npz: Path, precision: str | None) -> None:
    img = _image()
    pred = Predictor.load(toy["folder"], backend="ort", device="cpu", smpl=smpl_npz, precision=precision)
    assert pred.plan is not None and pred.plan.has_confidence and pred.plan.confidence_rule == "toy_conf"
    assert pred.plan.file == ("model.fp16.onnx" if precision is None else "model.onnx")
    people = pred.predict(img, BOXES)
    # the runtime made the extra input by the spec's rule (the frame's height and width)
    feeds, _ = preprocess(img, BOXES, pred.manifest.preprocessing)
    np.testing.assert_array_equal(feeds["frame_hw"], np.tile([240.0, 320.0], (3, 1)))
    want = _torch_outputs(toy["model"], feeds)
    tol = 2e-2 if precision is None else 1e-5
    for i, p in enumerate(people):
        assert p.confidence == pytest.approx(float(want["toy_conf"][i]), abs=tol)
        assert p.score is None and p.sigma is None  # no σ: nothing invented
        np.testing.assert_allclose(p.pose_rotmat, want["pose"][i], atol=5 * tol)
        assert p.joints2d.shape == (24, 2) and p.joints45 is None  # joint sets as the spec declared


def test_val_reports_the_family_confidence(toy: dict, smpl_npz: Path, tmp_path: Path) -> None:
    from hpsedge.eval.val import ValConfig, run_val

    images = tmp_path / "images"
    images.mkdir()
    names, centers, scales = [], [], []
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(_image(seed=i)).save(images / f"f{i}.png")
        for _ in range(2):
            names.append(f"f{i}.png")
            centers.append([rng.uniform(80, 240), rng.uniform(80, 160)])
            scales.append(rng.uniform(0.5, 0.9))
    pred = Predictor.load(toy["folder"], backend="ort", device="cpu", smpl=smpl_npz, precision="fp32")
    poses, shapes = [], []
    for name, c, s in zip(names, centers, scales, strict=True):
        box = np.array([[c[0] - s * 100, c[1] - s * 100, c[0] + s * 100, c[1] + s * 100]])
        p = pred.predict(np.asarray(Image.open(images / name).convert("RGB")), box)[0]
        poses.append(p.pose_axis_angle.reshape(72))
        shapes.append(p.betas)
    np.savez(tmp_path / "eval.npz", imgname=np.array(names), center=np.array(centers), scale=np.array(scales),
             pose=np.array(poses), shape=np.array(shapes))
    jreg = np.zeros((17, 6890))
    for j in range(17):
        jreg[j, rng.choice(6890, size=10, replace=False)] = 0.1
    np.save(tmp_path / "jreg.npy", jreg)
    doc = run_val(ValConfig(folders=[f"{toy['folder']}@fp32", str(toy["folder"])], data=tmp_path / "eval.npz",
                            images=images, smpl=smpl_npz, out=tmp_path / "val", j_regressor=tmp_path / "jreg.npy",
                            device="cpu", plots=False))
    text = json.dumps(doc, ensure_ascii=False)
    assert "1 − toy conf" in text  # the family's own confidence output is its uncertainty
    fp32 = next(f for f in doc["folders"] if f["label"].endswith("@fp32"))
    assert fp32["graph"] == "model.onnx" and fp32["precision"] == "fp32"
    assert (tmp_path / "val" / "results.md").is_file()


def test_triton_repository_carries_the_family(toy: dict, tmp_path: Path, serve_python: Path) -> None:
    from hpsedge.export.triton import export_triton

    res = export_triton(toy["folder"], tmp_path / "repo", kind="cpu")
    code = (
        "import json, sys\n"
        "from google.protobuf import json_format, text_format\n"
        "from tritonclient.grpc import model_config_pb2\n"
        "out = {p: json_format.MessageToDict(text_format.Parse(open(p).read(), model_config_pb2.ModelConfig()),"
        " preserving_proto_field_name=True) for p in sys.argv[1:]}\n"
        "print(json.dumps(out))\n"
    )
    paths = [str(res.models[n] / "config.pbtxt") for n in res.models]
    run = subprocess.run([str(serve_python), "-c", code, *paths], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    cfgs = {Path(k).parent.name: v for k, v in json.loads(run.stdout).items()}
    net = cfgs["toy-conf_onnx"]
    assert {i["name"]: i["dims"] for i in net["input"]} == {"image": ["3", "32", "32"], "frame_hw": ["2"]}
    assert "toy_conf" in {o["name"] for o in net["output"]}
    assert int(net["max_batch_size"]) == BuildFolder.open(toy["folder"]).select("ort").batch.max
    outs = {o["name"] for o in cfgs["hpsedge"]["output"]}
    assert "confidence" in outs and "sigma" not in outs
    assert (res.models["toy-conf_onnx"] / "1" / "model.onnx").read_bytes() == (toy["folder"] / "model.fp16.onnx").read_bytes()


# ---------------------------------------------------------------------------------------------------
# #22's bugs, on this folder: every command asks the folder's owner (hpsedge.runtime.folder)
# ---------------------------------------------------------------------------------------------------
def _with_engine(folder: Path, dst: Path, precision: str = "fp16", profile: dict | None = None) -> Path:
    """A copy of ``folder`` with an engine entry (not a real plan: nothing here deserializes it)."""
    import hashlib
    import shutil

    shutil.copytree(folder, dst)
    plan = b"not a real plan"
    (dst / f"model.{precision}.engine").write_bytes(plan)
    raw = json.loads((dst / "manifest.json").read_text())
    raw["artifacts"]["engine"] = {
        "file": f"model.{precision}.engine", "sha256": hashlib.sha256(plan).hexdigest(), "bytes": len(plan),
        "precision": precision, "trt_version": "10.3.0.30", "compute_capability": "8.7", "platform": "jetson",
        "gpu_name": "Orin", "profile": profile or {"min": 1, "opt": 4, "max": 16},
    }
    (dst / "manifest.json").write_text(json.dumps(raw))
    return dst


def test_curate_summary_names_the_graph_it_ran(toy: dict, tmp_path: Path) -> None:
    """#22: curate's job file and summary named the FP32 graph and hash for an FP16 folder."""
    from hpsedge.curate.core import curate

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(_image()).save(images / "a.png")
    (tmp_path / "boxes.json").write_text(json.dumps({"a.png": BOXES.tolist()}))
    summary = curate(toy["folder"], images, tmp_path / "boxes.json", tmp_path / "out", rule="all", backend="ort",
                     device="cpu", part=False)
    m = load_manifest(toy["folder"])
    fp16 = m.artifacts["onnx_fp16"]
    job = json.loads((tmp_path / "out" / "job.json").read_text())
    assert job["model"]["artifact"] == fp16["file"] == "model.fp16.onnx" and job["model"]["sha256"] == fp16["sha256"]
    assert summary["graph"] == "model.fp16.onnx" and summary["graph_sha256"] == fp16["sha256"]
    assert summary["precision"] == "fp16" and summary["people"] == len(BOXES)
    # --precision fp32 names (and runs) the FP32 graph
    s32 = curate(toy["folder"], images, tmp_path / "boxes.json", tmp_path / "out32", rule="all", backend="ort",
                 device="cpu", part=False, precision="fp32")
    assert s32["graph"] == "model.onnx" and s32["graph_sha256"] == m.artifacts["onnx"]["sha256"]


class _RecordingTRT:
    """Stands in for the TensorRT backend (no TensorRT here): records which engine it was asked to load."""

    loaded: ClassVar[list[str]] = []

    def __init__(self, path: Path, entry: dict, device: int = 0) -> None:
        type(self).loaded.append(Path(path).name)
        self.name, self.device, self.max_batch = "trt", "fake TensorRT", 16
        self.input_names, self.output_names = ["image", "frame_hw"], ["pose", "betas", "cam", "toy_conf"]

    def close(self) -> None:
        pass


def test_run_precision_is_honoured_with_an_engine(toy: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """#22: `hpsedge run --precision` was ignored on TensorRT: the folder's engine ran whatever was asked."""
    import hpsedge.runtime.predictor as predictor_mod
    import hpsedge.runtime.trt.backend as trt_backend
    import hpsedge.runtime.trt.compat as trt_compat
    from hpsedge.errors import BackendError

    folder = _with_engine(toy["folder"], tmp_path / "eng")
    _RecordingTRT.loaded = []
    monkeypatch.setattr(trt_backend, "TensorRTBackend", _RecordingTRT)
    # a machine where the engine would run: auto picks TensorRT unless the precision rules it out
    monkeypatch.setattr(predictor_mod, "_engine_probe", lambda: ({"trt": True}, "8.7", "10.3.0.30", "Orin"))
    monkeypatch.setattr(trt_compat, "choose_backend", lambda *a, **k: ("trt", "fake: the engine runs here"))
    # explicit TensorRT and another precision: one error line, not the fp16 engine under the fp32 name
    with pytest.raises(BackendError, match="engine is fp16, not fp32"):
        Predictor.load(folder, backend="trt", precision="fp32")
    assert _RecordingTRT.loaded == []
    # auto with another precision: that precision's graph on ONNX Runtime
    pred = Predictor.load(folder, backend="auto", device="cpu", precision="fp32")
    assert pred.backend.name == "ort" and pred.plan.file == "model.onnx" and _RecordingTRT.loaded == []
    # the engine's own precision (or none asked) runs the engine
    for asked in ("fp16", None):
        pred = Predictor.load(folder, backend="auto", device="cpu", precision=asked)
        assert pred.plan.backend == "trt" and pred.plan.file == "model.fp16.engine"
    assert _RecordingTRT.loaded == ["model.fp16.engine", "model.fp16.engine"]


def test_cli_export_build_takes_the_second_file_by_the_spec(toy: dict, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`hpsedge export build --aux FILE`: the second weights file under the name the spec gives it."""
    import sys

    from hpsedge import cli

    out = tmp_path / "cli-build"
    monkeypatch.setattr(sys, "argv", ["hpsedge", "export", "build", "--model", toy_family.NAME, "--precision", "fp32",
                                      "--checkpoint", str(toy["root"] / "toy.pt"), "--aux", str(toy["root"] / "refiner.pt"),
                                      "--out", str(out)])
    with pytest.raises(SystemExit) as ok:
        cli.main()
    assert ok.value.code in (0, None)
    assert load_manifest(out).raw["checkpoint"]["refiner"]["sha256"] == load_manifest(toy["folder"]).raw["checkpoint"]["refiner"]["sha256"]
    monkeypatch.setattr(sys, "argv", ["hpsedge", "export", "build", "--model", "poco-hmr", "--tiny", "--aux",
                                      str(toy["root"] / "refiner.pt"), "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit) as done:
        cli.main()
    err = capsys.readouterr().err
    assert done.value.code == 2 and "error: poco-hmr has one weights file; --aux is for models with a second one" in err
