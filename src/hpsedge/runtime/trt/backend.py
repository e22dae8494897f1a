"""TensorRT backend: runs a serialized engine (``model.<precision>.engine``) with the named-tensor API
of TensorRT 10 and 11 (``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``).

``tensorrt`` and cuda-python are imported inside the constructor, never at module import, so the
runtime imports (and its other backends run) on machines without them. The engine's compatibility
with this TensorRT and GPU is checked from the manifest entry (:mod:`hpsedge.runtime.trt.compat`) before
TensorRT reads the plan.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import BackendError, HpsedgeError, InputError
from hpsedge.runtime.backends.base import Backend
from hpsedge.runtime.trt.compat import check_engine_compat, detect_platform, sm_name

log = logging.getLogger("hpsedge.runtime.trt")

TRT_INSTALL_HINT = ("install TensorRT >= 10 (JetPack 6.1+ ships it; on desktops `pip install tensorrt` "
                    "from NVIDIA's index), or use backend='ort'")

# nvinfer1::ILogger::Severity values
_SEVERITY_NAMES = {0: "INTERNAL_ERROR", 1: "ERROR", 2: "WARNING", 3: "INFO", 4: "VERBOSE"}
_PY_LEVELS = {0: logging.ERROR, 1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG}


def import_tensorrt(error_cls: type[HpsedgeError] = BackendError) -> Any:
    """Import ``tensorrt`` (>= 10) or raise ``error_cls`` with an install hint."""
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError as exc:
        raise error_cls(f"TensorRT is not installed ({exc})", hint=TRT_INSTALL_HINT) from exc
    from hpsedge.runtime.trt.compat import parse_trt_version

    version = str(getattr(trt, "__version__", "0"))
    if parse_trt_version(version)[0] < 10:
        raise error_cls(f"TensorRT {version} is too old: hpsedge needs TensorRT 10 or newer",
                        hint="upgrade TensorRT (JetPack 6.1+ on Jetson)")
    return trt


def create_trt_object(factory: Any, *args: Any, logger: Any, what: str,
                      error_cls: type[HpsedgeError] = BackendError) -> Any:
    """``factory(*args)`` for TensorRT's ``Builder`` / ``Runtime`` / ``OnnxParser``, or one ``error_cls``.

    The real bindings (10.x and 11.x) never return None from these constructors: when the C++ factory
    returns nullptr (no usable GPU or driver, a CUDA/TensorRT mismatch, out of memory) pybind11 raises
    ``TypeError: pybind11::init(): factory function returned nullptr``. That becomes one error carrying
    TensorRT's own log lines."""
    try:
        obj = factory(*args)
    except TypeError as exc:
        logged = logger.summary() if hasattr(logger, "summary") else ""
        raise error_cls(f"TensorRT could not create {what}: {logged or ' '.join(str(exc).split())}",
                        hint="check the GPU and driver with `nvidia-smi`, and that this TensorRT was built for "
                             "the installed CUDA") from exc
    if obj is None:
        raise error_cls(f"TensorRT could not create {what}: {logger.summary() or 'no reason logged'}")
    return obj


def _severity_code(severity: Any) -> int:
    try:
        return int(severity)
    except (TypeError, ValueError):
        name = str(getattr(severity, "name", severity)).upper().rsplit(".", 1)[-1]
        return {v: k for k, v in _SEVERITY_NAMES.items()}.get(name, 3)


def make_logger(trt: Any, min_severity: str = "WARNING") -> Any:
    """A ``trt.ILogger`` that keeps every message at or above ``min_severity`` (``"ERROR"``,
    ``"WARNING"``, ``"INFO"``, ``"VERBOSE"``) in ``.messages`` and forwards it to Python logging.

    TensorRT reports why a build or deserialization failed only through its logger; ``.errors()`` and
    ``.summary()`` turn the captured lines into an error message.
    """
    threshold = {v: k for k, v in _SEVERITY_NAMES.items()}[min_severity.upper()]

    class CapturingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[tuple[str, str]] = []

        def log(self, severity: Any, msg: str) -> None:
            code = _severity_code(severity)
            if code > threshold:
                return
            self.messages.append((_SEVERITY_NAMES.get(code, "INFO"), str(msg)))
            log.log(_PY_LEVELS.get(code, logging.INFO), "TensorRT: %s", msg)

        def errors(self) -> list[str]:
            return [m for s, m in self.messages if s in ("ERROR", "INTERNAL_ERROR")]

        def summary(self, limit: int = 3) -> str:
            """The last ``limit`` errors (else warnings) as one line; '' when nothing was logged."""
            lines = self.errors() or [m for s, m in self.messages if s == "WARNING"]
            lines = [" ".join(m.split()) for m in lines[-limit:]]
            return " | ".join(lines)

        def clear(self) -> None:
            self.messages.clear()

    return CapturingLogger()


@dataclass
class _TensorInfo:
    name: str
    is_input: bool
    dtype: np.dtype
    shape: tuple[int, ...]  # the engine's shape, -1 for the dynamic batch axis

    @property
    def dynamic_batch(self) -> bool:
        return bool(self.shape) and self.shape[0] == -1

    def shape_for(self, batch: int) -> tuple[int, ...]:
        return (batch, *self.shape[1:]) if self.dynamic_batch else self.shape


def _np_dtype(trt: Any, dtype: Any, name: str) -> np.dtype:
    try:
        return np.dtype(trt.nptype(dtype))
    except Exception as exc:
        raise BackendError(f"engine tensor {name!r} has type {dtype}, which numpy cannot hold",
                           hint="export with float32 graph inputs/outputs (keep_io_types)") from exc


def _next_capacity(n: int, current: int, max_batch: int | None) -> int:
    grown = max(n, 2 * current)
    return min(grown, max_batch) if max_batch else grown


class TensorRTBackend(Backend):
    """Run a TensorRT engine on GPU ``device``.

    ``engine_entry`` is the manifest's ``artifacts["engine"]`` dict; with it the plan is checked against
    this TensorRT and GPU (and its sha256) before deserialization. Version-compatible plans embed host
    code (the lean runtime) and are refused unless ``allow_host_code=True``: only pass that for plans
    you trust. ``platform`` overrides :func:`~hpsedge.runtime.trt.compat.detect_platform`; ``folder`` only
    improves the rebuild hint.
    """

    name = "trt"

    def __init__(
        self,
        engine_path: str | Path,
        engine_entry: dict[str, Any] | None = None,
        device: int = 0,
        *,
        allow_host_code: bool = False,
        platform: str | None = None,
        folder: str | Path | None = None,
        verify_hash: bool = True,
    ) -> None:
        from hpsedge.runtime.trt.cuda import CudaRuntime

        self._closed = False
        self._buffers: dict[str, Any] = {}
        self._host: dict[str, Any] = {}
        self._stream: Any = None
        self._context: Any = None
        self._engine: Any = None
        self._runtime: Any = None
        self.capacity = 0
        self.allocations = 0  # how many times the I/O buffers were (re)allocated

        path = Path(engine_path)
        folder = folder if folder is not None else path.parent
        trt = import_tensorrt(BackendError)
        self._trt = trt
        self._cuda = CudaRuntime(device)
        gpu_name, cc = self._cuda.device_info()
        plat = platform or detect_platform(gpu_name)
        trt_version = str(trt.__version__)

        # 1. compatibility, from the manifest, before TensorRT touches the plan
        version_compatible = bool(engine_entry and engine_entry.get("version_compatible"))
        if engine_entry is not None:
            check_engine_compat(engine_entry, trt_version, cc, plat, gpu_name=gpu_name, folder=folder)
        else:
            log.warning("no manifest entry for %s: its TensorRT version and GPU cannot be checked first", path)
        if version_compatible and not allow_host_code:
            raise BackendError(
                f"{path.name} is a version-compatible engine, which embeds host code (TensorRT's lean runtime)",
                hint="pass allow_host_code=True if you trust this file, or rebuild without --version-compatible")

        # 2. the plan
        if not path.is_file():
            raise BackendError(f"engine file {path} does not exist",
                               hint=f"build it with `hpsedge export build --on-device {folder}`")
        plan = path.read_bytes()
        if engine_entry is not None:
            self._verify_plan(plan, path, engine_entry, folder, verify_hash)

        # 3. deserialize
        self._logger = make_logger(trt)
        self._runtime = create_trt_object(trt.Runtime, self._logger, logger=self._logger,
                                          what="a runtime", error_cls=BackendError)
        if allow_host_code:
            self._runtime.engine_host_code_allowed = True
        engine = self._runtime.deserialize_cuda_engine(plan)
        del plan
        if engine is None:
            detail = self._logger.summary() or "no reason logged"
            raise BackendError(f"TensorRT {trt_version} could not load {path.name}: {detail}",
                               hint=f"rebuild on this machine with `hpsedge export build --on-device {folder}`")
        self._engine = engine
        self._context = engine.create_execution_context()
        if self._context is None:
            raise BackendError(f"TensorRT could not create an execution context for {path.name}: "
                               f"{self._logger.summary() or 'no reason logged'}",
                               hint="free GPU memory (other engines, processes) and retry")

        # 4. I/O tensors
        self._inputs: list[_TensorInfo] = []
        self._outputs: list[_TensorInfo] = []
        max_batch: int | None = None
        for i in range(engine.num_io_tensors):
            tname = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(tname) == trt.TensorIOMode.INPUT
            info = _TensorInfo(tname, is_input, _np_dtype(trt, engine.get_tensor_dtype(tname), tname),
                               tuple(int(d) for d in engine.get_tensor_shape(tname)))
            if any(d < 0 for d in info.shape[1:]):
                raise BackendError(f"engine tensor {tname!r} has dynamic axes besides the batch: {info.shape}",
                                   hint="re-export with N as the only dynamic axis")
            if is_input:
                if info.dynamic_batch:
                    _, _, mx = engine.get_tensor_profile_shape(tname, 0)
                    mb = int(mx[0])
                else:
                    mb = info.shape[0] if info.shape else 1
                max_batch = mb if max_batch is None else min(max_batch, mb)
                self._inputs.append(info)
            else:
                self._outputs.append(info)
        self.input_names = [t.name for t in self._inputs]
        self.output_names = [t.name for t in self._outputs]
        self.max_batch = max_batch
        self._static_batch = not any(t.dynamic_batch for t in self._inputs)
        self._stream = self._cuda.stream()
        self.trt_version = trt_version
        self.device = f"TensorRT {trt_version} on {gpu_name} ({sm_name(cc)})"

    # ---- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _verify_plan(plan: bytes, path: Path, entry: dict[str, Any], folder: Any, verify_hash: bool) -> None:
        hint = f"the engine file changed since the manifest was written; rebuild with " \
               f"`hpsedge export build --on-device {folder}`"
        expected = entry.get("bytes")
        if expected is not None and int(expected) != len(plan):
            raise BackendError(f"{path.name} has {len(plan)} bytes, the manifest says {expected}", hint=hint)
        digest = entry.get("sha256")
        if verify_hash and digest and hashlib.sha256(plan).hexdigest() != digest:
            raise BackendError(f"{path.name} does not match the sha256 in the manifest", hint=hint)

    def _free_buffers(self) -> None:
        for buf in (*self._buffers.values(), *self._host.values()):
            try:
                buf.free()
            except BackendError as exc:  # keep freeing the rest
                log.warning("while freeing TensorRT buffers: %s", exc)
        self._buffers.clear()
        self._host.clear()

    def _ensure_capacity(self, batch: int) -> None:
        """(Re)allocate device and pinned host buffers only when ``batch`` exceeds the capacity."""
        if batch <= self.capacity:
            return
        cap = batch if self._static_batch else _next_capacity(batch, self.capacity, self.max_batch)
        self._free_buffers()
        for t in (*self._inputs, *self._outputs):
            nbytes = max(1, int(np.prod(t.shape_for(cap), dtype=np.int64)) * t.dtype.itemsize)
            self._buffers[t.name] = self._cuda.malloc(nbytes)
            self._host[t.name] = self._cuda.malloc_host(nbytes)
            if not self._context.set_tensor_address(t.name, self._buffers[t.name].ptr):
                raise BackendError(f"TensorRT refused the address of tensor {t.name!r}: {self._logger.summary()}")
        self.capacity = cap
        self.allocations += 1

    def _prepare(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        if self._closed:
            raise BackendError("this TensorRT backend was closed")
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise InputError(f"missing input(s) {', '.join(missing)} (the engine takes {', '.join(self.input_names)})")
        arrays: dict[str, np.ndarray] = {}
        batch: int | None = None
        for t in self._inputs:
            a = np.ascontiguousarray(feeds[t.name], dtype=t.dtype)
            want = t.shape[1:]
            if a.ndim != len(t.shape) or any(w not in (-1, g) for w, g in zip(want, a.shape[1:], strict=True)):
                shown = ["N" if d == -1 else d for d in t.shape]
                raise InputError(f"input {t.name!r} has shape {tuple(a.shape)}, the engine expects {shown}")
            if batch is None:
                batch = a.shape[0]
            elif a.shape[0] != batch:
                raise InputError(f"inputs disagree on the batch size ({batch} vs {a.shape[0]} for {t.name!r})")
            arrays[t.name] = a
        return arrays, int(batch or 0)

    # ---- Backend API --------------------------------------------------------------------------
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays, n = self._prepare(feeds)
        if n == 0:
            return {t.name: np.zeros((0, *t.shape[1:]), t.dtype) for t in self._outputs}
        if self.max_batch is not None and n > self.max_batch:
            raise InputError(f"batch of {n} exceeds the engine's maximum of {self.max_batch}",
                             hint="split the batch, or rebuild with a larger --max-batch")
        run_n = n
        if self._static_batch and self.max_batch and n < self.max_batch:
            run_n = self.max_batch  # a fixed-batch engine: pad with zeros, slice the outputs
            arrays = {k: np.concatenate([a, np.zeros((run_n - n, *a.shape[1:]), a.dtype)])
                      for k, a in arrays.items()}
        self._ensure_capacity(run_n)
        ctx, cuda, stream = self._context, self._cuda, self._stream
        for t in self._inputs:
            a = arrays[t.name]
            if t.dynamic_batch and not ctx.set_input_shape(t.name, tuple(a.shape)):
                raise BackendError(f"TensorRT rejected shape {tuple(a.shape)} for {t.name!r}: "
                                   f"{self._logger.summary()}")
            host = self._host[t.name].view(t.dtype, a.shape)
            np.copyto(host, a)
            cuda.memcpy_htod_async(self._buffers[t.name].ptr, self._host[t.name].ptr, a.nbytes, stream)
        out_shapes = {}
        for t in self._outputs:
            shape = tuple(int(d) for d in ctx.get_tensor_shape(t.name))
            if any(d < 0 for d in shape):
                raise BackendError(f"TensorRT could not infer the shape of output {t.name!r}: {shape}")
            out_shapes[t.name] = shape
        self._logger.clear()
        if not ctx.execute_async_v3(stream.handle):
            raise BackendError(f"TensorRT execution failed: {self._logger.summary() or 'no reason logged'}")
        for t in self._outputs:
            nbytes = int(np.prod(out_shapes[t.name], dtype=np.int64)) * t.dtype.itemsize
            cuda.memcpy_dtoh_async(self._host[t.name].ptr, self._buffers[t.name].ptr, nbytes, stream)
        stream.synchronize()
        return {t.name: self._host[t.name].view(t.dtype, out_shapes[t.name])[:n].copy() for t in self._outputs}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._stream is not None:
                self._stream.synchronize()
        except BackendError as exc:
            log.warning("while closing TensorRT backend: %s", exc)
        self._free_buffers()
        if self._stream is not None:
            try:
                self._stream.destroy()
            except BackendError as exc:
                log.warning("while closing TensorRT backend: %s", exc)
            self._stream = None
        # release in dependency order: context, engine, runtime
        self._context = None
        self._engine = None
        self._runtime = None

    def __del__(self) -> None:
        try:
            if getattr(self, "_cuda", None) is not None:
                self.close()
        except Exception:
            pass
