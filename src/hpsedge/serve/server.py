"""``hpsedge serve DIR``: a build folder on a real Triton Inference Server, through PyTriton.

PyTriton (``pip install "hpsedge[serve]"``, ideally in its own environment: it pins ``numpy<2``) ships the
``tritonserver`` binary and its Python backend. Two models are bound:

* ``<name>_onnx``: the network on ONNX Runtime, with Triton's dynamic batcher (``max_batch_size`` = the
  manifest's ``max_batch``) merging person crops of concurrent requests; ``batching=False`` turns the
  dynamic batcher off (each frame's crops run alone);
* ``hpsedge``: one frame per request (``image`` + ``boxes``), ``instances`` copies in parallel, each running
  the runtime's pre/post-processing (:class:`hpsedge.serve.frames.FrameService`) and sending its crops to the
  network model over localhost gRPC — the same schema and the same split as the ``hpsedge`` Python-backend
  model of ``hpsedge export triton``, so :mod:`hpsedge.client` works with both.

Triton serves gRPC, ``/v2/health/{live,ready}`` and Prometheus metrics; HTTP goes through
:mod:`hpsedge.serve.front`, a gate that bounds every request's declared sizes before tritonserver allocates
anything (``http=False``: gRPC only, no HTTP port at all). Ports are checked before anything starts. SIGINT
and SIGTERM stop the server: tritonserver finishes in-flight requests (up to ``exit_timeout_s``), then
:func:`serve` returns 0; a tritonserver that dies on its own makes :func:`serve` raise (a non-zero exit).
Failed requests get one line (the reason), never a Python traceback.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import BackendError, HpsedgeError
from hpsedge.serve.schema import MAX_PERSONS, MAX_SIDE, MODEL_NAME, input_specs, model_prefix, output_specs

log = logging.getLogger(__name__)


@dataclass
class ServeConfig:
    """Options of :func:`serve` (ports 0 are not allowed: Triton needs fixed ports).

    ``http=False`` serves gRPC only (no HTTP port is opened; ``http_port`` is ignored). ``max_side`` bounds
    an image's sides (pixels), and with ``max_persons`` the bytes an HTTP request may declare.
    """

    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    batching: bool = True
    max_queue_delay_us: int = 2000
    preferred_batch_sizes: Sequence[int] = ()
    instances: int = 4
    max_persons: int = MAX_PERSONS
    device: str = "cpu"
    threads: int | None = None
    precision: str | None = None
    exit_timeout_s: int = 30
    log_verbose: int = 0
    http: bool = True
    max_side: int = MAX_SIDE


# ------------------------------------------------------------------------------------- libpython
def _stub_path() -> Path | None:
    try:
        import pytriton
    except ImportError:
        return None
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = Path(pytriton.__file__).parent / "tritonserver" / "python_backend_stubs" / ver / "triton_python_backend_stub"
    return stub if stub.exists() else None


def _ldd_resolves(binary: Path, soname: str, env: dict[str, str]) -> str | None:
    """Where the dynamic loader finds ``soname`` for ``binary`` under ``env`` (None: not found / no ldd)."""
    try:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == soname and "=>" in parts:
            target = parts[parts.index("=>") + 1]
            return None if target == "not" else target
    return None


def fix_libpython(env: dict[str, str] | None = None) -> str | None:
    """Make PyTriton's Python-backend stub load *this* interpreter's ``libpython``.

    The stub is linked against ``libpython3.X.so.1.0`` and takes the first one the loader finds; with a
    pyenv/conda/uv interpreter that is often the distribution's copy (``/lib/x86_64-linux-gnu``), a
    different build than the one running hpsedge, and the stub then fails or crashes at start. When
    ``ldd`` shows the stub resolving another file than ``sysconfig``'s ``LIBDIR/INSTSONAME``, that
    ``LIBDIR`` is put first on ``LD_LIBRARY_PATH`` (of ``env``, default ``os.environ``, which tritonserver
    inherits). Returns a line saying what was done, or None when nothing was needed.
    """
    env = os.environ if env is None else env
    libdir = sysconfig.get_config_var("LIBDIR")
    soname = sysconfig.get_config_var("INSTSONAME")
    if not libdir or not soname or not (Path(libdir) / soname).is_file():
        return None  # a static interpreter: nothing of ours to point at
    ours = (Path(libdir) / soname).resolve()
    stub = _stub_path()
    if stub is not None:
        found = _ldd_resolves(stub, soname, dict(env))
        if found is not None and Path(found).resolve() == ours:
            return None
        where = found or "nothing"
    else:
        where = "unknown (no stub found)"
    current = env.get("LD_LIBRARY_PATH", "")
    env["LD_LIBRARY_PATH"] = f"{libdir}:{current}" if current else str(libdir)
    return f"Python-backend stub would load {where} instead of {ours}; put {libdir} first on LD_LIBRARY_PATH"


# -------------------------------------------------------------------------------- PyTriton handshake
HANDSHAKE_TIMEOUT_S = 30.0
_HANDSHAKE_DEFAULT = b"timeout_s: float = 1.0) -> dict:"


def patch_pytriton_handshake(timeout_s: float = HANDSHAKE_TIMEOUT_S) -> bool:
    """Give PyTriton's config handshake more than its fixed 1 s (both ends), or say why not.

    Each bound model's stub (a process started by tritonserver) and this process exchange their config over a
    Unix socket, each side waiting 1 s (``get_config_from_handshake_server``'s default). On a loaded machine
    (2 cores, load 15+, several instances starting at once) one side misses it and the model fails to load.
    Here the stub's copy of ``communication.py`` (sent with the model files) and this process's call get
    ``timeout_s`` instead. Written against nvidia-pytriton 0.5–0.7; with another layout nothing is patched
    (returns False) and :func:`serve` still retries a failed start.
    """
    try:
        import pytriton.models.model as pm
    except ImportError:
        return False
    if getattr(pm, "_hpsedge_patched", False):
        return True
    original_files = getattr(pm.Model, "get_proxy_model_files", None)
    original_call = getattr(pm, "get_config_from_handshake_server", None)
    if original_files is None or original_call is None:
        return False
    new_default = f"timeout_s: float = {float(timeout_s)}) -> dict:".encode()

    def get_proxy_model_files(self: Any) -> dict[str, bytes]:
        files = original_files(self)
        return {k: (v.replace(_HANDSHAKE_DEFAULT, new_default) if k.endswith("/communication.py") else v)
                for k, v in files.items()}

    def get_config(socket_path: Any, timeout_s: float = float(timeout_s)) -> dict:
        return original_call(socket_path, timeout_s=timeout_s)

    pm.Model.get_proxy_model_files = get_proxy_model_files
    pm.get_config_from_handshake_server = get_config
    pm._hpsedge_patched = True
    return True


# ----------------------------------------------------------------------------- one-line errors
_EXECUTE_RAISES = (
    b"                if triton_responses_or_error is not None and isinstance(triton_responses_or_error, Exception):\n"
    b"                    raise triton_responses_or_error\n"
)
_EXECUTE_ANSWERS = (
    b"                if triton_responses_or_error is not None and isinstance(triton_responses_or_error, Exception):\n"
    b"                    return _hpsedge_error_responses(triton_requests, triton_responses_or_error)\n"
)
_ERROR_RESPONSES = b'''

def _hpsedge_error_responses(requests, error):
    """(added by hpsedge) One error response per request: the reason in one line, never a traceback."""
    import re as _re

    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    found = [m.group(1) for m in (_re.match(r"^(?:[\\w.]+\\.)?\\w*(?:Error|Exception): (.+)$", ln) for ln in lines) if m]
    msg = (found[-1] if found else (lines[-1] if lines else "request failed"))[:500]
    code = getattr(pb_utils.TritonError, "INTERNAL" if msg.startswith("internal error") else "INVALID_ARG", None)
    error = pb_utils.TritonError(msg) if code is None else pb_utils.TritonError(msg, code)
    return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
'''


def patch_pytriton_errors() -> bool:
    """Make a failed request's response one line instead of two Python tracebacks, or say why not (False).

    PyTriton's stub (``model.py``, copied into tritonserver's model folder) re-raises a failed request's error
    from ``execute``, and the Python backend then answers with the stub's traceback wrapped around the
    server-side traceback. Here the stub's copy instead answers each request of the failed batch with an
    error response holding the last ``SomeError: reason`` line. Written against nvidia-pytriton 0.7.
    """
    try:
        import pytriton.models.model as pm
    except ImportError:
        return False
    if getattr(pm, "_hpsedge_errors_patched", False):
        return True
    original_files = getattr(pm.Model, "get_proxy_model_files", None)
    if original_files is None:
        return False
    probe = (Path(pm.__file__).parent.parent / "proxy" / "model.py")
    try:
        if _EXECUTE_RAISES not in probe.read_bytes():
            return False
    except OSError:
        return False

    def get_proxy_model_files(self: Any) -> dict[str, bytes]:
        files = original_files(self)
        return {k: (v.replace(_EXECUTE_RAISES, _EXECUTE_ANSWERS) + _ERROR_RESPONSES
                    if k.endswith("/model.py") and _EXECUTE_RAISES in v else v)
                for k, v in files.items()}

    pm.Model.get_proxy_model_files = get_proxy_model_files
    pm._hpsedge_errors_patched = True
    return True


class RequestFailedError(Exception):
    """What a bound model raises for a failed request: PyTriton formats it, the patched stub keeps the last
    line (``RequestFailedError: <reason>``) and the client gets ``<reason>`` (HTTP 400, gRPC INVALID_ARGUMENT;
    500 / INTERNAL for ``internal error``)."""


def _one_line(exc: BaseException) -> RequestFailedError:
    """A request's failure as a one-line error: the user's mistake as is; anything else logged here with
    its traceback and sent as ``internal error`` (no paths, no code)."""
    if isinstance(exc, HpsedgeError):
        text = exc.message
    else:
        log.error("request failed", exc_info=exc)
        text = f"internal error ({type(exc).__name__}); see the server log"
    return RequestFailedError(" ".join(str(text).split())[:500] or "request failed")


# ------------------------------------------------------------------------------------------ ports
def check_ports(host: str, ports: dict[str, int]) -> None:
    """Refuse, naming it, a port that is out of range, repeated, or already taken on ``host``.

    tritonserver reports a busy port only after its models loaded (minutes on a loaded machine) and without
    the number; binding each port here first (with ``SO_REUSEADDR``, as tritonserver does) fails in
    milliseconds. Another process can still take a port between this check and tritonserver's bind.
    """
    for role, port in ports.items():
        if not 1 <= int(port) <= 65535:
            raise HpsedgeError(f"{role} port {port} is not in 1..65535")
    seen: dict[int, str] = {}
    for role, port in ports.items():
        if port in seen:
            raise HpsedgeError(f"the {seen[port]} and {role} ports are both {port}; they must differ")
        seen[port] = role
    bind_host = host or "0.0.0.0"
    for role, port in ports.items():
        try:
            infos = socket.getaddrinfo(bind_host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise HpsedgeError(f"cannot listen on host {host!r}: {exc.strerror}") from None
        family, _, _, _, addr = infos[0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(addr)
                s.listen(1)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise HpsedgeError(f"{role} port {port} on {host} is already in use",
                                       hint=f"stop what listens there, or pick another --{role.lower()}-port") from None
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise HpsedgeError(f"cannot listen on {host}: no such address on this machine") from None
                if exc.errno == errno.EACCES:
                    raise HpsedgeError(f"{role} port {port} on {host}: permission denied",
                                       hint="ports below 1024 need privileges; pick a port ≥ 1024") from None
                raise HpsedgeError(f"{role} port {port} on {host}: {exc.strerror}") from None


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------ models
def _np_dtype(name: str) -> Any:
    return np.dtype(name).type


class _NetworkClient:
    """Thread-local gRPC client from an ``hpsedge`` instance to the network model.

    While the server shuts down, Triton unloads the network model as soon as *it* has nothing in flight,
    while frames already accepted by the ``hpsedge`` model may still need it; those crops then run on
    ``fallback`` (the same ONNX Runtime session, in this process), so every accepted request is answered.
    """

    def __init__(self, url: str, model: str, output_names: list[str], fallback: Any) -> None:
        self.url, self.model, self.output_names, self.fallback = url, model, output_names, fallback
        self._local = threading.local()

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = grpcclient.InferenceServerClient(self.url)
        inputs = []
        for name, arr in feeds.items():
            t = grpcclient.InferInput(name, list(arr.shape), "FP32")
            t.set_data_from_numpy(arr)
            inputs.append(t)
        outputs = [grpcclient.InferRequestedOutput(n) for n in self.output_names]
        try:
            res = client.infer(self.model, inputs, outputs=outputs)
        except InferenceServerException as exc:
            status = str(exc.status() or "")
            if not any(s in status for s in ("NOT_FOUND", "UNAVAILABLE", "CANCELLED")):
                raise
            log.info("network model unavailable (%s): running this frame's crops in-process", status)
            return self.fallback(feeds)
        return {n: res.as_numpy(n) for n in self.output_names}


def build_server(folder: str | Path, cfg: ServeConfig, smpl: str | Path | None = None,
                 j_regressor_extra: str | Path | None = None) -> tuple[Any, dict[str, Any]]:
    """Load everything and bind both models to a (not yet started) ``pytriton.triton.Triton``.

    Returns the Triton object and a summary dict (model names, ports, batching). User errors (a bad folder,
    a missing extra) raise :class:`HpsedgeError` before any server starts; options and ports first.
    """
    if cfg.instances < 1 or cfg.max_persons < 1 or cfg.max_queue_delay_us < 0:
        raise HpsedgeError("--instances and --max-persons must be ≥ 1, --max-queue-delay-us ≥ 0")
    if not 16 <= cfg.max_side <= 32768:
        raise HpsedgeError(f"the largest image side must lie in 16..32768 pixels, got {cfg.max_side}")
    ports = {"HTTP": cfg.http_port, "gRPC": cfg.grpc_port, "metrics": cfg.metrics_port}
    if not cfg.http:
        del ports["HTTP"]
    check_ports(cfg.host, ports)

    try:
        from pytriton.decorators import batch
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig
    except ImportError as exc:
        raise BackendError(
            f"PyTriton is not installed ({exc.name})",
            hint='pip install "hpsedge[serve,ort,cli]" in its own virtualenv (PyTriton pins numpy<2)',
        ) from None
    from hpsedge.runtime.predictor import Predictor
    from hpsedge.runtime.smpl import SMPL
    from hpsedge.serve.frames import FrameService

    # the network runs in this process on ONNX Runtime (the Predictor's loader checks the folder)
    net = Predictor.load(folder, backend="ort", device=cfg.device, threads=cfg.threads, precision=cfg.precision)
    manifest = net.manifest
    max_batch = net.batch.max  # the plan's batch range (hpsedge.runtime.folder)
    if any(not 1 <= int(b) <= max_batch for b in cfg.preferred_batch_sizes):
        raise HpsedgeError(f"preferred batch sizes must lie in 1..{max_batch} (the folder's max_batch)")
    body = SMPL.load(smpl, j_regressor_extra=j_regressor_extra) if smpl is not None else None
    network_name = f"{model_prefix(manifest, None)}_onnx"
    out_names = [s.name for s in manifest.outputs]
    lock = threading.Lock()  # one ORT run at a time: the session uses every core already

    def run_network(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with lock:
            res = net.backend.run({k: v.astype(np.float32, copy=False) for k, v in feeds.items()})
        return {k: np.ascontiguousarray(res[k], dtype=np.float32) for k in out_names}

    @batch
    def network(**feeds: np.ndarray) -> dict[str, np.ndarray]:
        try:
            return run_network(feeds)
        except Exception as exc:
            raise _one_line(exc) from None

    local = "127.0.0.1" if cfg.host in ("0.0.0.0", "::", "") else cfg.host
    specs = output_specs(manifest, body is not None)

    def make_instance() -> Any:
        service = FrameService(
            manifest, _NetworkClient(f"{local}:{cfg.grpc_port}", network_name, out_names, run_network), smpl=body,
            max_persons=cfg.max_persons, device=f"Triton model {network_name}", max_side=cfg.max_side,
            max_batch=max_batch,
        )

        def infer(requests: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
            try:
                return [service(r["image"], r["boxes"]) for r in requests]
            except Exception as exc:
                raise _one_line(exc) from None

        return infer

    libpython = fix_libpython()
    if libpython:
        log.warning("%s", libpython)
    if not patch_pytriton_handshake():
        log.info("PyTriton's handshake timeout left at its default (unknown PyTriton layout)")
    if not patch_pytriton_errors():
        log.warning("failed requests are answered with PyTriton's tracebacks (unknown PyTriton layout)")
    # tritonserver's own HTTP server only on a private loopback port, behind the gate (see serve.front)
    upstream_http = _free_loopback_port() if cfg.http else None
    triton = Triton(
        config=TritonConfig(
            allow_http=cfg.http, http_address="127.0.0.1" if cfg.http else None, http_port=upstream_http,
            grpc_address=cfg.host, grpc_port=cfg.grpc_port,
            metrics_address=cfg.host, metrics_port=cfg.metrics_port, allow_metrics=True,
            exit_timeout_secs=cfg.exit_timeout_s, log_verbose=cfg.log_verbose or None,
        )
    )
    batcher = DynamicBatcher(
        max_queue_delay_microseconds=cfg.max_queue_delay_us,
        preferred_batch_size=[int(b) for b in cfg.preferred_batch_sizes] or None,
    ) if cfg.batching else None
    triton.bind(
        model_name=network_name,
        infer_func=network,
        inputs=[Tensor(name=s.name, dtype=_np_dtype(s.dtype), shape=tuple(s.shape[1:])) for s in manifest.inputs],
        outputs=[Tensor(name=s.name, dtype=_np_dtype(s.dtype), shape=tuple(s.shape[1:])) for s in manifest.outputs],
        config=ModelConfig(batching=True, max_batch_size=max_batch, batcher=batcher),
        strict=True,
    )
    triton.bind(
        model_name=MODEL_NAME,
        infer_func=[make_instance() for _ in range(cfg.instances)],
        inputs=[Tensor(name=s["name"], dtype=_np_dtype(s["dtype"]), shape=tuple(s["shape"])) for s in input_specs()],
        outputs=[Tensor(name=s["name"], dtype=np.float32, shape=tuple(s["shape"])) for s in specs],
        config=ModelConfig(batching=False),
        strict=True,
    )
    front = None
    if cfg.http:
        from hpsedge.serve.front import HttpFront, limits_for

        row_bytes = sum(4 * int(np.prod([int(d) for d in s.shape[1:]])) for s in manifest.inputs)
        limits = limits_for(cfg.max_side, cfg.max_persons, max_batch, row_bytes)
        front = HttpFront(cfg.host, cfg.http_port, int(upstream_http or 0), limits)  # binds now, serves later
    summary = {
        "model": manifest.model_name, "network_model": network_name, "max_batch": max_batch,
        "batching": cfg.batching, "instances": cfg.instances, "host": cfg.host,
        "http": cfg.http_port if cfg.http else None, "grpc": cfg.grpc_port, "metrics": cfg.metrics_port,
        "outputs": [s["name"] for s in specs], "libpython_fix": libpython, "front": front,
        "max_request_bytes": front.limits.max_body_bytes if front else None,
    }
    return triton, summary


def _triton_exit_code(triton: Any) -> int | None:
    """tritonserver's exit status once it stopped (best effort: a private attribute of PyTriton 0.7)."""
    try:
        cmd = triton._triton_server._tritonserver_running_cmd
        return int(cmd.process.exit_code) if cmd is not None else None
    except Exception:
        return None


def _close(triton: Any, front: Any) -> None:
    if front is not None:
        front.stop()
    triton.stop()


def serve(folder: str | Path, cfg: ServeConfig | None = None, smpl: str | Path | None = None,
          j_regressor_extra: str | Path | None = None, on_ready: Any | None = None) -> int:
    """Serve until SIGINT/SIGTERM; returns 0 after a clean stop (in-flight requests finish first).

    Raises :class:`BackendError` (a non-zero exit of ``hpsedge serve``) when tritonserver does not start or
    stops on its own, so a supervisor that restarts on failure restarts it.
    """
    cfg = cfg or ServeConfig()
    asked_to_stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        asked_to_stop.set()
        raise KeyboardInterrupt  # Triton.serve() stops the server on KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for attempt in range(1, 4):
            triton, summary = build_server(folder, cfg, smpl=smpl, j_regressor_extra=j_regressor_extra)
            front = summary.pop("front")
            try:
                triton.run()  # start tritonserver, load both models, wait until they are ready
                break
            except KeyboardInterrupt:
                _close(triton, front)
                return 0
            except Exception as exc:
                _close(triton, front)
                # a start can fail on a loaded machine (PyTriton's stub handshake, see patch_pytriton_handshake);
                # starting afresh works. A user error was refused earlier, by build_server.
                first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
                if attempt < 3:
                    log.warning("Triton did not start (%s); retrying (%d/3)", first[:200], attempt + 1)
                    continue
                raise BackendError(f"Triton did not start: {first[:300]}", hint="rerun with --log-verbose 1") from None
        try:
            if front is not None:
                front.start()
            if on_ready is not None:
                on_ready(summary)
            triton.serve()  # returns when tritonserver or a model stops
        except KeyboardInterrupt:
            asked_to_stop.set()
        finally:
            if asked_to_stop.is_set():
                log.info("stopping")
            _close(triton, front)
        if not asked_to_stop.is_set():
            code = _triton_exit_code(triton)
            how = f" (exit status {code})" if code is not None else ""
            raise BackendError(f"tritonserver stopped on its own{how}; nothing is being served",
                               hint="see the server log above; restart hpsedge serve")
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
