"""`hpsedge serve` on the real Triton server that PyTriton bundles, in the serve virtualenv (numpy<2).

The server runs as `hpsedge serve` in a subprocess on free 127.0.0.1 ports; the client (`hpsedge.client`, on
tritonclient) runs in the same virtualenv in another subprocess; responses are compared here with the
in-process Predictor. CI runs it (`make test` builds `.venv-serve`); about a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from hpsedge.runtime.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]

CLIENT = r"""
import json, sys, threading
import numpy as np
from hpsedge.client import HpsedgeClient, ServerError

mode, grpc_url, http_url, src, dst = sys.argv[1:6]
data = np.load(src)
out, errors = {}, {}
if mode == "check":
    c = HpsedgeClient(grpc_url)
    assert c.ready()
    for key in ("f1", "f3"):
        people = c.predict(data[key + "_image"], data[key + "_boxes"])
        for name in people[0]:
            out[f"{key}/{name}"] = np.stack([p[name] for p in people])
    h = HpsedgeClient(http_url)  # the HTTP endpoint answers the same
    people = h.predict(data["f3_image"], data["f3_boxes"])
    out["f3_http/transl"] = np.stack([p["transl"] for p in people])
    assert c.predict(data["f1_image"], np.zeros((0, 4))) == []
    img = data["f1_image"]
    bad = {
        "dtype": (img.astype(np.float32), data["f1_boxes"]),
        "shape": (img, np.zeros((1, 5), np.float32)),
        "rank": (img[None], data["f1_boxes"]),
        "boxes_dtype": (img, data["f1_boxes"].astype(np.float64)),
        "nan": (img, np.full((1, 4), np.nan, np.float32)),
        "too_many": (img, np.tile(data["f1_boxes"], (9, 1))),
        "outside": (img, np.float32([[5000, 5000, 6000, 6000]])),
    }
    for name, (im, bx) in bad.items():
        try:
            c.infer(im, bx)
            errors[name] = None
        except ServerError as exc:
            errors[name] = str(exc)
        errors[name + "_ready_after"] = c.ready()
    people = c.predict(data["f1_image"], data["f1_boxes"])  # still serving
    out["after/transl"] = np.stack([p["transl"] for p in people])
else:  # "drain": 6 concurrent 3-person requests, then report what came back
    results = [None] * 6
    clients = [HpsedgeClient(grpc_url) for _ in range(6)]
    for c in clients:
        c.output_names()  # metadata fetched now: the threads send their frame at once

    def one(i):
        try:
            results[i] = len(clients[i].predict(data["f3_image"], data["f3_boxes"]))
        except Exception as exc:
            results[i] = repr(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    print("sent", flush=True)
    for t in threads:
        t.join()
    errors["drain"] = results
np.savez(dst, **out)
print(json.dumps(errors))
"""


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def tiny_pare(tiny_export) -> Path:
    return tiny_export("poco-pare")


def make_frames(tmp_path: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], Path]:
    """Two frames, with 1 and 3 people, and the .npz the client script reads."""
    rng = np.random.default_rng(0)
    frames = {
        "f1": (rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), np.array([[40, 20, 180, 230]], np.float32)),
        "f3": (rng.integers(0, 255, (360, 480, 3), dtype=np.uint8),
               np.array([[10, 10, 150, 340], [170, 40, 300, 350], [320, 5, 470, 300]], np.float32)),
    }
    data = tmp_path / "frames.npz"
    np.savez(data, **{f"{k}_{n}": v for k, (im, bx) in frames.items() for n, v in (("image", im), ("boxes", bx))})
    return frames, data


def check_responses(path: Path, frames: dict[str, tuple[np.ndarray, np.ndarray]], ref: Predictor) -> None:
    """The client's responses (gRPC and HTTP) = the in-process Predictor's results."""
    got = np.load(path)
    for key, (im, bx) in frames.items():
        people = ref.predict(im, bx)
        for name in ("pose_rotmat", "pose_axis_angle", "betas", "cam_crop", "transl", "sigma", "sigma_accumulated",
                     "joint_confidence", "confidence", "score", "focal", "center", "size"):
            want = np.array([getattr(p, name) for p in people], np.float32)
            np.testing.assert_allclose(got[f"{key}/{name}"], want, rtol=0, atol=1e-5, err_msg=f"{key} {name}")
        for name in ("joints3d", "vertices", "joints2d"):  # metres / pixels, through SMPL in float32
            want = np.array([getattr(p, name) for p in people], np.float32)
            np.testing.assert_allclose(got[f"{key}/{name}"], want, rtol=1e-5, atol=1e-5, err_msg=f"{key} {name}")
    np.testing.assert_allclose(got["f3_http/transl"], got["f3/transl"], atol=1e-6)
    np.testing.assert_allclose(got["after/transl"], got["f1/transl"], atol=1e-6)


def check_errors(errors: dict) -> None:
    """Malformed requests: one clean line each, and the server kept serving."""
    assert "UINT8" in errors["dtype"] and "unexpected shape" in errors["shape"]
    assert "unexpected shape" in errors["rank"] and "FP32" in errors["boxes_dtype"]
    assert errors["nan"] == "boxes hold NaN or inf values"
    assert errors["too_many"] == "9 boxes in one request; this server takes at most 8"
    assert "outside" in errors["outside"]
    assert all(errors[k] for k in errors if k.endswith("_ready_after"))
    assert all("Traceback" not in errors[k] for k in errors if not k.endswith("_ready_after"))


class Server:
    def __init__(self, python: Path, folder: Path, log: Path, *args: str) -> None:
        self.http, self.grpc, self.metrics = free_ports(3)
        self.log = log
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        cmd = [str(python), "-m", "hpsedge.cli", "serve", str(folder), "--host", "127.0.0.1",
               "--http-port", str(self.http), "--grpc-port", str(self.grpc), "--metrics-port", str(self.metrics), *args]
        self.proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 180.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                pytest.fail(f"hpsedge serve exited with {self.proc.returncode}:\n{self.tail()}")
            if http_ok(f"http://127.0.0.1:{self.http}/v2/models/hpsedge/ready"):
                return
            time.sleep(0.5)
        self.proc.kill()
        pytest.fail(f"hpsedge serve not ready after {timeout} s:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90.0) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"hpsedge serve did not stop within {timeout} s after signal {sig}:\n{self.tail()}")


def network_done(server: Server) -> int:
    """Successful requests of the network model so far (Prometheus counter)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return 0
    return sum(int(float(ln.rsplit(" ", 1)[1])) for ln in text.splitlines()
               if ln.startswith('nv_inference_request_success{model="poco-pare_onnx"'))


def run_client(python: Path, mode: str, server: Server, data: Path, dst: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(
        [str(python), "-c", CLIENT, mode, f"127.0.0.1:{server.grpc}", f"http://127.0.0.1:{server.http}",
         str(data), str(dst)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def test_serve_matches_predictor_rejects_bad_requests_and_stops_cleanly(
    tiny_pare: Path, tmp_path: Path, serve_python: Path, smpl_npz: Path
) -> None:
    frames, data = make_frames(tmp_path)

    server = Server(serve_python, tiny_pare, tmp_path / "serve.log", "--smpl", str(smpl_npz), "--max-persons", "8",
                    "--instances", "2")
    try:
        server.wait_ready()
        assert http_ok(f"http://127.0.0.1:{server.http}/v2/health/live")
        assert http_ok(f"http://127.0.0.1:{server.http}/v2/health/ready")
        proc = run_client(serve_python, "check", server, data, tmp_path / "out.npz")
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:] + "\n--- server ---\n" + server.tail()
        errors = json.loads(stdout.strip().splitlines()[-1])
        with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert 'nv_inference_request_success{model="hpsedge"' in metrics
        assert 'nv_inference_request_failure{model="hpsedge"' in metrics
    finally:
        rc = server.stop(signal.SIGTERM) if server.proc.poll() is None else server.proc.returncode
    assert rc == 0, server.tail()
    assert not http_ok(f"http://127.0.0.1:{server.http}/v2/health/live")

    check_responses(tmp_path / "out.npz", frames, Predictor.load(tiny_pare, backend="ort", device="cpu", smpl=smpl_npz))
    check_errors(errors)

def test_serve_sigint_drains_in_flight_requests(tiny_pare: Path, tmp_path: Path, serve_python: Path) -> None:
    rng = np.random.default_rng(1)
    data = tmp_path / "frames.npz"
    np.savez(data, f3_image=rng.integers(0, 255, (360, 480, 3), dtype=np.uint8),
             f3_boxes=np.array([[10, 10, 150, 340], [170, 40, 300, 350], [320, 5, 470, 300]], np.float32))
    server = Server(serve_python, tiny_pare, tmp_path / "serve.log", "--no-batching")
    try:
        server.wait_ready()
        proc = run_client(serve_python, "drain", server, data, tmp_path / "out.npz")
        assert proc.stdout is not None and proc.stdout.readline().strip() == "sent"
        # stop once the network has run a crop: the six frames are then inside the server, not yet answered
        end = time.monotonic() + 120
        while time.monotonic() < end and network_done(server) < 1:
            time.sleep(0.05)
        assert network_done(server) < 18, "all requests finished before the signal; nothing was in flight"
    finally:
        rc = server.stop(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=120)
    assert rc == 0, server.tail()
    results = json.loads(stdout.strip().splitlines()[-1])["drain"]
    assert results == [3] * 6, f"{results}\n--- server ---\n{server.tail()}"


def test_serve_cli_errors_are_one_line(tmp_path: Path, serve_python: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    res = subprocess.run([str(serve_python), "-m", "hpsedge.cli", "serve", str(tmp_path / "missing")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2 and "error:" in res.stderr and "Traceback" not in res.stderr
    # without PyTriton (the dev venv): a clean error with the install hint
    res = subprocess.run([sys.executable, "-c", "import pytriton"], capture_output=True)
    if res.returncode != 0:
        res = subprocess.run([sys.executable, "-m", "hpsedge.cli", "serve", str(tmp_path)], capture_output=True,
                             text=True, env=env, timeout=120)
        assert res.returncode == 2 and "hpsedge[serve" in res.stderr, res.stderr


def test_libpython_fix_makes_the_stub_load_this_interpreter(serve_python: Path) -> None:
    """Where the stub would load another libpython (pyenv here: Debian's), the fix points it at ours; a
    second call then finds nothing to do. Where it already loads ours, nothing is changed."""
    code = (
        "import json, os, sysconfig\n"
        "from hpsedge.serve.server import fix_libpython, _stub_path\n"
        "env = {k: v for k, v in os.environ.items() if k != 'LD_LIBRARY_PATH'}\n"
        "first = fix_libpython(env)\n"
        "second = fix_libpython(dict(env))\n"
        "print(json.dumps({'first': first, 'second': second, 'ld': env.get('LD_LIBRARY_PATH'),\n"
        "                  'libdir': sysconfig.get_config_var('LIBDIR'), 'stub': str(_stub_path())}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    res = subprocess.run([str(serve_python), "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout.strip().splitlines()[-1])
    assert r["stub"] != "None"
    if r["first"] is not None:
        assert r["ld"].split(":")[0] == r["libdir"]
        assert r["second"] is None, r
    else:
        assert r["ld"] is None


def test_pytriton_handshake_patch_applies_to_the_installed_pytriton(serve_python: Path) -> None:
    """The 1 s handshake of PyTriton's stubs is lengthened on both ends (fails loudly if PyTriton changes)."""
    code = (
        "import pytriton.models.model as pm\n"
        "from hpsedge.serve.server import patch_pytriton_handshake\n"
        "assert patch_pytriton_handshake(30.0)\n"
        "class M(pm.Model):\n"
        "    def __init__(self): self.model_version = 1\n"
        "files = M().get_proxy_model_files()\n"
        "src = files['file:1/communication.py']\n"
        "assert b'timeout_s: float = 30.0) -> dict:' in src and b'timeout_s: float = 1.0)' not in src\n"
        "import inspect\n"
        "assert inspect.signature(pm.get_config_from_handshake_server).parameters['timeout_s'].default == 30.0\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    res = subprocess.run([str(serve_python), "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
