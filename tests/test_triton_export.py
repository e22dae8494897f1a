"""`hpsedge export triton`: the model repository, its config.pbtxt files (parsed with tritonclient's
model-config protobuf schema, in the serve virtualenv) and the Python-backend `hpsedge` model, driven through
a stand-in `triton_python_backend_utils` whose BLS call runs the repository's network on ONNX Runtime."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from hpsedge.errors import HpsedgeError
from hpsedge.export.triton import export_triton
from hpsedge.runtime.manifest import load_manifest
from hpsedge.runtime.predictor import Predictor
from hpsedge.serve.schema import output_specs

ROOT = Path(__file__).resolve().parents[1]

PARSE = r"""
import json, sys
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2
out = {}
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        cfg = text_format.Parse(f.read(), model_config_pb2.ModelConfig())
    out[path] = json_format.MessageToDict(cfg, preserving_proto_field_name=True)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def tiny_pare(tiny_export) -> Path:
    return tiny_export("poco-pare")


def parse_configs(python: Path, paths: list[Path]) -> dict[str, dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    res = subprocess.run([str(python), "-c", PARSE, *map(str, paths)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return {Path(k).parent.name: v for k, v in json.loads(res.stdout).items()}


def test_repository_configs_parse_and_match_the_manifest(tiny_pare: Path, tmp_path: Path, serve_python: Path) -> None:
    # a fake engine artifact: the repository then also has a tensorrt_plan model, which `hpsedge` calls
    folder = tmp_path / "with-engine"
    shutil.copytree(tiny_pare, folder)
    (folder / "model.fp16.engine").write_bytes(b"not a real plan")
    raw = json.loads((folder / "manifest.json").read_text())
    raw["artifacts"]["engine"] = {"file": "model.fp16.engine", "trt_version": "10.3.0", "compute_capability": "8.7",
                                  "gpu_name": "Orin", "platform": "jetson"}
    (folder / "manifest.json").write_text(json.dumps(raw))
    manifest = load_manifest(folder)

    res = export_triton(folder, tmp_path / "repo", preferred_batch_sizes=[4, 8], max_queue_delay_us=500)
    assert set(res.models) == {"poco-pare_onnx", "poco-pare_trt", "hpsedge"}
    assert res.network_model == "poco-pare_trt"
    assert (res.models["poco-pare_onnx"] / "1" / "model.onnx").read_bytes() == (tiny_pare / "model.onnx").read_bytes()
    assert (res.models["poco-pare_trt"] / "1" / "model.plan").read_bytes() == b"not a real plan"
    assert "tritonserver --model-repository" in res.readme.read_text()

    cfgs = parse_configs(serve_python, sorted((tmp_path / "repo").glob("*/config.pbtxt")))
    for name, platform in (("poco-pare_onnx", "onnxruntime_onnx"), ("poco-pare_trt", "tensorrt_plan")):
        c = cfgs[name]
        assert c["name"] == name and c["platform"] == platform
        assert int(c["max_batch_size"]) == manifest.max_batch == 16
        assert [(t["name"], t["data_type"], [int(d) for d in t["dims"]]) for t in c["input"]] == [
            (s.name, "TYPE_FP32", list(s.shape[1:])) for s in manifest.inputs
        ]
        assert [(t["name"], [int(d) for d in t["dims"]]) for t in c["output"]] == [
            (s.name, list(s.shape[1:])) for s in manifest.outputs
        ]
        assert [int(b) for b in c["dynamic_batching"]["preferred_batch_size"]] == [4, 8]
        assert int(c["dynamic_batching"]["max_queue_delay_microseconds"]) == 500
        assert c["instance_group"] == [{"count": 1, "kind": "KIND_GPU"}]
    h = cfgs["hpsedge"]
    assert h["backend"] == "python" and int(h.get("max_batch_size", 0)) == 0
    assert [(t["name"], t["data_type"], [int(d) for d in t["dims"]]) for t in h["input"]] == [
        ("image", "TYPE_UINT8", [-1, -1, 3]), ("boxes", "TYPE_FP32", [-1, 4])
    ]
    want = output_specs(manifest, with_smpl=False)
    assert [(t["name"], [int(d) for d in t["dims"]]) for t in h["output"]] == [(s["name"], s["shape"]) for s in want]
    assert {"sigma", "confidence", "transl", "betas"} <= {t["name"] for t in h["output"]}
    assert h["parameters"]["network_model"]["string_value"] == "poco-pare_trt"
    assert h["parameters"]["max_persons"]["string_value"] == "64"

    # CPU instances, ONNX network, no engine
    res = export_triton(tiny_pare, tmp_path / "repo-cpu", kind="cpu", count=2, network="onnx")
    cfgs = parse_configs(serve_python, sorted((tmp_path / "repo-cpu").glob("*/config.pbtxt")))
    assert set(cfgs) == {"poco-pare_onnx", "hpsedge"}
    assert cfgs["poco-pare_onnx"]["instance_group"] == [{"count": 2, "kind": "KIND_CPU"}]
    assert "preferred_batch_size" not in cfgs["poco-pare_onnx"]["dynamic_batching"]


def test_export_refuses_bad_input(tiny_pare: Path, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(HpsedgeError, match="not empty"):
        export_triton(tiny_pare, out)
    assert (out / "mine.txt").read_text() == "keep me"
    with pytest.raises(HpsedgeError, match="no TensorRT engine"):
        export_triton(tiny_pare, tmp_path / "r1", network="trt")
    with pytest.raises(HpsedgeError, match="preferred batch"):
        export_triton(tiny_pare, tmp_path / "r2", preferred_batch_sizes=[32])
    with pytest.raises(HpsedgeError, match="cannot name a Triton model"):
        export_triton(tiny_pare, tmp_path / "r3", name="../evil")
    # a hostile manifest whose artifact points outside the folder
    evil = tmp_path / "evil"
    shutil.copytree(tiny_pare, evil)
    raw = json.loads((evil / "manifest.json").read_text())
    raw["artifacts"]["onnx"]["file"] = "../poco-pare/model.onnx"
    (evil / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(HpsedgeError, match="plain file names"):
        export_triton(evil, tmp_path / "r4")


def test_cli_export_triton(tiny_pare: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "hpsedge.cli", "export", "triton", str(tiny_pare), "--out", str(tmp_path / "r"),
           "--kind", "cpu", "--preferred-batch-size", "4"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "r" / "hpsedge" / "1" / "model.py").exists()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2 and "error:" in res.stderr and "Traceback" not in res.stderr


# --------------------------------------------------------------------- the Python-backend model, BLS faked
def fake_pb_utils(repo: Path) -> types.ModuleType:
    """A stand-in for Triton's `triton_python_backend_utils`: BLS requests run the repository's network model
    (its config and ONNX file) on ONNX Runtime, enforcing the config's max_batch_size."""
    import onnxruntime as ort

    pb = types.ModuleType("triton_python_backend_utils")
    sessions: dict[str, Any] = {}

    # memory types as in tritonserver.h; a BLS response keeps outputs where the network model made them (GPU
    # for a tensorrt_plan model) unless the request asks for CPU with `preferred_memory`, as the real backend does
    pb.TRITONSERVER_MEMORY_CPU, pb.TRITONSERVER_MEMORY_CPU_PINNED, pb.TRITONSERVER_MEMORY_GPU = 0, 1, 2

    class PreferredMemory:
        def __init__(self, preferred_memory_type: int, preferred_device_id: int = 0) -> None:
            self.preferred_memory_type, self.preferred_device_id = preferred_memory_type, preferred_device_id

    class Tensor:
        def __init__(self, name: str, arr: np.ndarray, memory_type: int = 0) -> None:
            self._name, self._arr, self._memory = name, np.asarray(arr), memory_type

        def name(self) -> str:
            return self._name

        def is_cpu(self) -> bool:
            return self._memory in (pb.TRITONSERVER_MEMORY_CPU, pb.TRITONSERVER_MEMORY_CPU_PINNED)

        def as_numpy(self) -> np.ndarray:
            if not self.is_cpu():
                raise RuntimeError("Tensor is stored in GPU and cannot be converted to NumPy.")
            return self._arr

    class TritonError:
        def __init__(self, msg: str) -> None:
            self._msg = msg

        def message(self) -> str:
            return self._msg

    class InferenceResponse:
        def __init__(self, output_tensors: list[Tensor], error: TritonError | None = None) -> None:
            self.output_tensors, self.error_ = output_tensors, error

        def has_error(self) -> bool:
            return self.error_ is not None

        def error(self) -> TritonError | None:
            return self.error_

    class InferenceRequest:
        calls: ClassVar[list[int]] = []

        def __init__(self, model_name: str, requested_output_names: list[str], inputs: list[Tensor],
                     preferred_memory: PreferredMemory | None = None) -> None:
            self.model_name, self.outputs, self.inputs = model_name, requested_output_names, inputs
            cpu = preferred_memory is not None and preferred_memory.preferred_memory_type == pb.TRITONSERVER_MEMORY_CPU
            self.memory = pb.TRITONSERVER_MEMORY_CPU if cpu else pb.TRITONSERVER_MEMORY_GPU

        def exec(self) -> InferenceResponse:
            if self.model_name not in sessions:
                sessions[self.model_name] = ort.InferenceSession(
                    str(repo / self.model_name / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
                )
            feeds = {t.name(): t.as_numpy() for t in self.inputs}
            n = next(iter(feeds.values())).shape[0]
            InferenceRequest.calls.append(n)
            if n > 16:
                return InferenceResponse([], TritonError("batch larger than max_batch_size"))
            outs = sessions[self.model_name].run(self.outputs, feeds)
            return InferenceResponse([Tensor(k, v, self.memory) for k, v in zip(self.outputs, outs, strict=True)])

    def get_input_tensor_by_name(request: Any, name: str) -> Tensor | None:
        return request.get(name)

    def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
        return next((t for t in response.output_tensors if t.name() == name), None)

    pb.Tensor, pb.TritonError, pb.InferenceResponse, pb.InferenceRequest = Tensor, TritonError, InferenceResponse, InferenceRequest
    pb.PreferredMemory = PreferredMemory
    pb.get_input_tensor_by_name, pb.get_output_tensor_by_name = get_input_tensor_by_name, get_output_tensor_by_name
    return pb


def frames(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    img1 = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    img3 = rng.integers(0, 255, (360, 480, 3), dtype=np.uint8)
    return [
        (img1, np.array([[40, 20, 180, 230]], np.float32)),
        (img3, np.array([[10, 10, 150, 340], [170, 40, 300, 350], [320, 5, 470, 300]], np.float32)),
    ]


@pytest.mark.parametrize("with_smpl", [False, True])
def test_python_backend_model_matches_predictor(
    tiny_pare: Path, tmp_path: Path, smpl_npz: Path, monkeypatch: pytest.MonkeyPatch, with_smpl: bool
) -> None:
    repo = tmp_path / "repo"
    export_triton(tiny_pare, repo, kind="cpu", smpl=smpl_npz if with_smpl else None, max_persons=20)
    pb = fake_pb_utils(repo)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    # the repository's own model.py, loaded as Triton would
    ns: dict[str, Any] = {}
    exec(compile((repo / "hpsedge" / "1" / "model.py").read_text(), "model.py", "exec"), ns)
    model = ns["TritonPythonModel"]()
    config = (repo / "hpsedge" / "config.pbtxt").read_text()
    params = {"network_model": {"string_value": "poco-pare_onnx"}, "max_persons": {"string_value": "20"}}
    if with_smpl:
        assert "smpl.npz" in config
        params["smpl"] = {"string_value": "smpl.npz"}
    model.initialize({"model_config": json.dumps({"parameters": params}),
                      "model_repository": str(repo / "hpsedge"), "model_version": "1"})

    ref = Predictor.load(tiny_pare, backend="ort", device="cpu", smpl=smpl_npz if with_smpl else None)
    rng = np.random.default_rng(0)
    reqs = [{"image": pb.Tensor("image", im), "boxes": pb.Tensor("boxes", bx)} for im, bx in frames(rng)]
    img = reqs[0]["image"].as_numpy()
    bad = [
        {"image": pb.Tensor("image", img.astype(np.float32)), "boxes": reqs[0]["boxes"]},
        {"image": pb.Tensor("image", img), "boxes": pb.Tensor("boxes", np.full((1, 4), np.nan, np.float32))},
        {"image": pb.Tensor("image", img), "boxes": pb.Tensor("boxes", np.tile(np.float32([[1, 1, 50, 50]]), (21, 1)))},
        {"image": pb.Tensor("image", img), "boxes": pb.Tensor("boxes", np.float32([[500, 500, 600, 600]]))},
    ]
    big = {"image": pb.Tensor("image", img), "boxes": pb.Tensor("boxes", np.tile(np.float32([[40, 20, 180, 230]]), (20, 1)))}
    responses = model.execute([*reqs, *bad, big])
    for (im, bx), resp in zip(frames(np.random.default_rng(0)), responses[:2], strict=True):
        assert not resp.has_error()
        out = {t.name(): t.as_numpy() for t in resp.output_tensors}
        people = ref.predict(im, bx)
        assert out["transl"].shape == (len(bx), 3)
        for name in ("pose_rotmat", "betas", "transl", "sigma", "confidence", "cam_crop", "joint_confidence"):
            want = np.array([getattr(p, name) for p in people], np.float32)
            np.testing.assert_allclose(out[name], want, atol=1e-5, err_msg=name)
        if with_smpl:
            for name in ("joints2d", "joints3d", "vertices"):
                want = np.array([getattr(p, name) for p in people], np.float32)
                np.testing.assert_allclose(out[name], want, atol=1e-4, err_msg=name)
        else:
            assert "vertices" not in out
    msgs = [r.error().message() for r in responses[2:6]]
    assert all(r.has_error() for r in responses[2:6])
    assert "uint8" in msgs[0] and "NaN" in msgs[1] and "at most 20" in msgs[2] and "outside" in msgs[3]
    # 20 people in one frame: split into network batches within max_batch_size (16)
    assert not responses[6].has_error()
    assert pb.InferenceRequest.calls[-2:] == [16, 4]
    model.finalize()


# ------------------------------------------------------------- the repository on a real tritonserver binary
#: test-only stand-in for the onnxruntime_onnx network model (PyTriton's tritonserver has only the Python
#: backend): the same config (I/O, max_batch_size, dynamic batching), run by ONNX Runtime in Python
STANDIN = r'''
import json
from pathlib import Path
import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb

class TritonPythonModel:
    def initialize(self, args):
        cfg = json.loads(args["model_config"])
        self.inputs = [i["name"] for i in cfg["input"]]
        self.outputs = [o["name"] for o in cfg["output"]]
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def execute(self, requests):
        feeds = [{n: pb.get_input_tensor_by_name(r, n).as_numpy() for n in self.inputs} for r in requests]
        sizes = [next(iter(f.values())).shape[0] for f in feeds]
        batch = {n: np.concatenate([f[n] for f in feeds]) for n in self.inputs}
        outs = dict(zip(self.outputs, self.session.run(self.outputs, batch)))
        responses, start = [], 0
        for k in sizes:
            responses.append(pb.InferenceResponse([pb.Tensor(n, outs[n][start:start + k]) for n in self.outputs]))
            start += k
        return responses
'''


def test_repository_on_real_tritonserver(
    tiny_pare: Path, tmp_path: Path, serve_python: Path, smpl_npz: Path
) -> None:
    """The repository's `hpsedge` model (config, model.py, BLS) on the tritonserver binary PyTriton bundles;
    only the network model is a stand-in (same config, Python backend instead of onnxruntime)."""
    from test_serve import CLIENT, check_errors, check_responses, free_ports, http_ok, make_frames

    repo = tmp_path / "repo"
    export_triton(tiny_pare, repo, kind="cpu", smpl=smpl_npz, max_persons=8, max_queue_delay_us=1000)
    net = repo / "poco-pare_onnx"
    cfg = (net / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in cfg
    (net / "config.pbtxt").write_text(cfg.replace('platform: "onnxruntime_onnx"', 'backend: "python"'))
    (net / "1" / "model.py").write_text(STANDIN)

    # the server as PyTriton lays it out: bin/, backends/python/ + the stub for this Python version
    probe = ("import json, sysconfig, pytriton, pathlib\n"
             "from hpsedge.serve.server import _stub_path\n"
             "p = pathlib.Path(pytriton.__file__).parent\n"
             "print(json.dumps({'ts': str(p / 'tritonserver'), 'libs': str(p.parent / 'nvidia_pytriton.libs'),\n"
             "  'stub': str(_stub_path()), 'libdir': sysconfig.get_config_var('LIBDIR'),\n"
             "  'site': sysconfig.get_paths()['purelib'], 'bin': sysconfig.get_paths()['scripts']}))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    res = subprocess.run([str(serve_python), "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    server_dir = tmp_path / "tritonserver"
    shutil.copytree(Path(info["ts"]) / "bin", server_dir / "bin")
    shutil.copytree(Path(info["ts"]) / "backends", server_dir / "backends")
    shutil.copy(info["stub"], server_dir / "backends" / "python" / "triton_python_backend_stub")
    http, grpc, metrics = free_ports(3)
    senv = {
        **os.environ,
        "LD_LIBRARY_PATH": f"{info['libdir']}:{info['libs']}",  # this interpreter's libpython first
        "PYTHONPATH": f"{ROOT / 'src'}:{info['site']}",
        "PATH": f"{info['bin']}:{os.environ['PATH']}",
    }
    log = tmp_path / "tritonserver.log"
    proc = subprocess.Popen(
        [str(server_dir / "bin" / "tritonserver"), "--model-repository", str(repo),
         "--backend-directory", str(server_dir / "backends"), "--http-address", "127.0.0.1",
         "--grpc-address", "127.0.0.1", "--metrics-address", "127.0.0.1", "--http-port", str(http),
         "--grpc-port", str(grpc), "--metrics-port", str(metrics), "--exit-timeout-secs", "20"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=senv,
        # the Python-backend stub ignores PYTHONPATH; its sys.path starts with '' (this folder), so the
        # stub imports this checkout's hpsedge, not the one the serve virtualenv's editable install points at
        cwd=str(ROOT / "src"),
    )
    try:
        end = time.monotonic() + 180
        while not http_ok(f"http://127.0.0.1:{http}/v2/models/hpsedge/ready"):
            assert proc.poll() is None and time.monotonic() < end, log.read_text(errors="replace")[-4000:]
            time.sleep(0.5)
        frames, data = make_frames(tmp_path)
        res = subprocess.run(
            [str(serve_python), "-c", CLIENT, "check", f"127.0.0.1:{grpc}", f"http://127.0.0.1:{http}", str(data),
             str(tmp_path / "out.npz")], capture_output=True, text=True, env=env, timeout=300,
        )
        assert res.returncode == 0, res.stderr[-3000:] + "\n--- server ---\n" + log.read_text(errors="replace")[-3000:]
        errors = json.loads(res.stdout.strip().splitlines()[-1])
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=90)
    assert rc == 0, log.read_text(errors="replace")[-3000:]
    check_responses(tmp_path / "out.npz", frames, Predictor.load(tiny_pare, backend="ort", device="cpu", smpl=smpl_npz))
    check_errors(errors)
