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
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException
    raw = grpcclient.InferenceServerClient(grpc_url)
    tensors = []
    for name, arr, wire in (("image", img, "UINT8"), ("boxes", np.full((1, 4), np.nan, np.float32), "FP32")):
        t = grpcclient.InferInput(name, list(arr.shape), wire)
        t.set_data_from_numpy(arr)
        tensors.append(t)
    try:
        raw.infer("hpsedge", tensors)
    except InferenceServerException as exc:
        errors["nan_raw_grpc"] = [str(exc.status()), exc.message()]
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
    assert all("Traceback" not in str(v) for k, v in errors.items() if not k.endswith("_ready_after"))
    # what the wire carries (before the client shortens anything): the reason, one line, an argument error
    assert errors["nan_raw_grpc"] == ["StatusCode.INVALID_ARGUMENT", "boxes hold NaN or inf values"], errors


def raw_http(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None,
             raw_head: bytes | None = None) -> tuple[int, bytes]:
    """One HTTP request on its own connection (``raw_head``: sent as is, for malformed framing)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        if raw_head is not None:
            conn.connect()
            assert conn.sock is not None
            conn.sock.sendall(raw_head + body)
            resp = http.client.HTTPResponse(conn.sock)
            resp.begin()
        else:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _infer_json(image_shape: list, data: list, boxes: list | None = None, **extra: object) -> bytes:
    return json.dumps({"inputs": [
        {"name": "image", "shape": image_shape, "datatype": "UINT8", "data": data, **extra},
        {"name": "boxes", "shape": [1, 4], "datatype": "FP32", "data": boxes or [0, 0, 10, 10]},
    ]}).encode()


#: (id, request kwargs for raw_http, expected status, text the one-line JSON error must contain)
HOSTILE_HTTP = [
    ("declared-30GB-image", dict(method="POST", path="/v2/models/hpsedge/infer",
                                 body=_infer_json([100000, 100000, 3], [1, 2, 3])), 413, "this server's limit"),
    ("declared-network-batch", dict(method="POST", path="/v2/models/poco-pare_onnx/infer", body=json.dumps(
        {"inputs": [{"name": "image", "shape": [16, 3, 100000, 100000], "datatype": "FP32", "data": [0]}]}).encode()),
     413, "this server's limit"),
    ("negative-dim", dict(method="POST", path="/v2/models/hpsedge/infer", body=_infer_json([-1, 2, 3], [1])), 400,
     "integers ≥ 0"),
    ("bytes-dtype", dict(method="POST", path="/v2/models/hpsedge/infer", body=json.dumps(
        {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}).encode()), 400,
     "is not taken"),
    ("garbage-json", dict(method="POST", path="/v2/models/hpsedge/infer", body=b"{oops"), 400, "not valid JSON"),
    ("deep-json", dict(method="POST", path="/v2/models/hpsedge/infer", body=b"[" * 100000), 400, "not valid JSON"),
    ("gzip-body", dict(method="POST", path="/v2/models/hpsedge/infer", body=b"\x1f\x8b",
                       headers={"Content-Encoding": "gzip"}), 415, "uncompressed"),
    ("content-length-1TB", dict(method="POST", path="", raw_head=(
        b"POST /v2/models/hpsedge/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n")),
     413, "at most"),
    ("chunked", dict(method="POST", path="", raw_head=(
        b"POST /v2/models/hpsedge/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"),
                     body=b"5\r\nhello\r\n0\r\n\r\n"), 411, "Content-Length"),
    ("header-length-past-body", dict(method="POST", path="/v2/models/hpsedge/infer", body=b"{}",
                                     headers={"Inference-Header-Content-Length": "999"}), 400, "larger than the body"),
    ("shared-memory-input", dict(method="POST", path="/v2/models/hpsedge/infer", body=_infer_json(
        [2, 2, 3], [], parameters={"shared_memory_region": "x", "shared_memory_byte_size": 12})), 400,
     "shared-memory"),
    ("repository-unload", dict(method="POST", path="/v2/repository/models/hpsedge/unload"), 404, "no such endpoint"),
    ("shm-register", dict(method="POST", path="/v2/systemsharedmemory/region/x/register", body=b"{}"), 404,
     "no such endpoint"),
    ("logging", dict(method="GET", path="/v2/logging"), 404, "no such endpoint"),
    ("nan-string-box", dict(method="POST", path="/v2/models/hpsedge/infer",
                            body=_infer_json([2, 2, 3], list(range(12)), boxes=["NaN", 0, 1, 1])), 500,
     "Unable to parse 'data'"),  # tritonserver's own refusal (JSON has no NaN), one line
    ("inf-box", dict(method="POST", path="/v2/models/hpsedge/infer",
                     body=_infer_json([2, 2, 3], list(range(12)), boxes=[0, 0, 1e39, 1])), 400,
     "boxes hold NaN or inf values"),  # 1e39 overflows float32: our check, as a 400
    ("image-side-over-max", dict(method="POST", path="/v2/models/hpsedge/infer",
                                 body=_infer_json([1, 9000, 3], [0] * 27000)), 400, "sides must lie in 1..8192"),
]


def check_hostile_http(port: int) -> None:
    """Each hostile request: its status and one JSON line ``{"error": ...}`` with the reason, no traceback."""
    for name, kw, status, text in HOSTILE_HTTP:
        got, body = raw_http(port, **kw)  # type: ignore[arg-type]
        msg = json.loads(body)["error"]
        assert got == status, (name, got, body[:500])
        assert "\n" not in msg and "Traceback" not in msg and "File \"" not in msg, (name, msg)
        if text is not None:
            assert text in msg, (name, msg)


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
        check_hostile_http(server.http)
        assert http_ok(f"http://127.0.0.1:{server.http}/v2/models/hpsedge/ready") and server.proc.poll() is None
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


def _children(pid: int) -> dict[int, str]:
    """Descendants of ``pid`` (Linux /proc): pid -> command name."""
    kids: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                head, tail = (d / "stat").read_text().rsplit(")", 1)
                kids.setdefault(int(tail.split()[1]), []).append(int(d.name))
                names[int(d.name)] = head.split("(", 1)[1]
            except (OSError, IndexError, ValueError):
                continue
    out, todo = {}, list(kids.get(pid, []))
    while todo:
        p = todo.pop()
        out[p] = names.get(p, "")
        todo += kids.get(p, [])
    return out


def test_serve_grpc_only_and_a_dead_tritonserver_is_a_failed_exit(
    tiny_pare: Path, tmp_path: Path, serve_python: Path
) -> None:
    """--no-http opens no HTTP port and serves gRPC; when tritonserver dies (here SIGKILL; the 30 GB request
    aborted it the same way), `hpsedge serve` exits non-zero with one error line (it exited 0, so a supervisor
    restarting on failure left the service down)."""
    _, data = make_frames(tmp_path)
    server = Server(serve_python, tiny_pare, tmp_path / "serve.log", "--no-http", "--instances", "1")
    try:
        end = time.monotonic() + 240
        while "Ctrl+C stops" not in server.tail():
            if server.proc.poll() is not None or time.monotonic() > end:
                pytest.fail(f"hpsedge serve --no-http did not start:\n{server.tail()}")
            time.sleep(0.5)
        assert "no HTTP" in server.tail()
        with socket.socket() as s, pytest.raises(OSError):
            s.settimeout(5)
            s.connect(("127.0.0.1", server.http))  # nothing listens there
        code = (
            "import sys, numpy as np\n"
            "from hpsedge.client import HpsedgeClient\n"
            "d = np.load(sys.argv[2])\n"
            "c = HpsedgeClient(sys.argv[1])\n"
            "assert c.ready()\n"
            "print(len(c.predict(d['f3_image'], d['f3_boxes'])))\n"
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        res = subprocess.run([str(serve_python), "-c", code, f"127.0.0.1:{server.grpc}", str(data)],
                             capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 0 and res.stdout.strip() == "3", res.stderr[-2000:] + server.tail()
        tritons = [p for p, name in _children(server.proc.pid).items() if name == "tritonserver"]
        assert len(tritons) == 1, _children(server.proc.pid)
        os.kill(tritons[0], signal.SIGKILL)
        rc = server.proc.wait(timeout=120)
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
    text = server.tail()
    assert rc != 0, text
    errors = [ln for ln in text.splitlines() if ln.startswith("error:")]
    assert errors == ["error: tritonserver stopped on its own (exit status -9); nothing is being served"], text
    assert "Traceback" not in text.split("Ctrl+C stops", 1)[1]


def test_serve_busy_port_fails_at_once_and_names_it(tiny_pare: Path, tmp_path: Path, serve_python: Path) -> None:
    """A port already taken is reported before anything loads (it took 365 s, then an error naming no port)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        res = subprocess.run([str(serve_python), "-m", "hpsedge.cli", "serve", str(tiny_pare), "--host", "127.0.0.1",
                              "--grpc-port", str(port), "--http-port", str(free_ports(1)[0])],
                             capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2, res.stderr
    assert f"error: gRPC port {port} on 127.0.0.1 is already in use" in res.stderr
    assert "Traceback" not in res.stderr and "tritonserver" not in (res.stdout + res.stderr).lower()
