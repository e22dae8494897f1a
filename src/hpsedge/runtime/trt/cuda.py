"""A tiny wrapper over cuda-python's runtime API: device buffers, pinned host buffers, a stream, async
copies and synchronisation; just what the TensorRT backend needs.

cuda-python returns a tuple ``(err, value...)`` from (nearly) every call, so each call goes through
:func:`call`, which turns a non-zero error into a :class:`BackendError` naming the call.

Facts this follows (checked against the real cuda-python wheels on a host without an NVIDIA driver;
not yet run against a real GPU):

* ``cuda.bindings.runtime`` exists from cuda-python 12.6.x; the legacy ``cuda.cudart`` module is gone in
  cuda-bindings 13.x. Both are tried, newest first, so an older hand-installed 12.x still works.
* cuda-python 12.6.2 (yanked on PyPI) *raises* ``RuntimeError`` ("Failed to dlopen libcuda.so.1",
  'Function "cuInit" not found') from every call when the driver is missing; 12.9 and 13.x return
  ``cudaErrorInsufficientDriver`` instead. :func:`call` turns both into one :class:`BackendError`.
* cuda-python follows the CUDA major of its runtime: 13.x needs a driver for CUDA 13 (r580+), so JetPack 6
  (CUDA 12.6) and CUDA 12 drivers need cuda-python 12.x (``pip install 'hpsedge[trt-cu12]'``); desktops
  with a CUDA 13 driver use ``hpsedge[trt]``. :func:`driver_hint` says which from the two versions.
* ``int(cuda_obj)`` to get a handle's address is deprecated ("subject to future removal") in favour of
  ``cuda.bindings.utils.get_cuda_native_handle`` (cuda-bindings "Tips and Tricks");
  :func:`native_handle` uses it where it exists. (``getPtr()`` is *not* the handle: it is a pointer to it.)
* The error enum (``cudaError_t``) is not assumed to be an ``IntEnum``: codes are read from ``.value``
  first and compared as plain ints.

Nothing is imported until a function here is called.
"""

from __future__ import annotations

import ctypes
import importlib
from typing import Any

import numpy as np

from hpsedge.errors import BackendError

_MODULES = ("cuda.bindings.runtime", "cuda.cudart")

_HINTS = {
    "cudaErrorInsufficientDriver": "update the NVIDIA driver (or JetPack) to one that supports this CUDA "
                                   "runtime, or install a cuda-python matching the driver",
    "cudaErrorNoDevice": "no CUDA GPU is visible: check `nvidia-smi` and CUDA_VISIBLE_DEVICES",
    "cudaErrorInvalidDevice": "the GPU index is out of range: check CUDA_VISIBLE_DEVICES and the device argument",
    "cudaErrorMemoryAllocation": "out of GPU memory: use a smaller batch or free the GPU",
    "cudaErrorDevicesUnavailable": "the GPU is busy or in exclusive mode: stop the other process",
}


#: the install extra that matches each CUDA major (pyproject.toml)
CUDA_EXTRAS = {12: "hpsedge[trt-cu12]", 13: "hpsedge[trt]"}


INSTALL_HINT = ("pip install 'hpsedge[trt]' with a CUDA 13 driver (r580+, JetPack 7), "
                "'hpsedge[trt-cu12]' with JetPack 6 or a CUDA 12 driver (see `nvidia-smi`)")


def _cuda_version(code: int) -> str:
    """CUDA's integer version (12060) as text ("12.6")."""
    return f"{code // 1000}.{(code % 1000) // 10}"


def driver_versions(rt: Any) -> tuple[int | None, int | None]:
    """``(driver, runtime)`` CUDA versions as integers (``12060``); ``None`` where it cannot be read.
    A driver version of 0 means no driver was found."""
    out: list[int | None] = []
    for fn in ("cudaDriverGetVersion", "cudaRuntimeGetVersion"):
        try:
            res = getattr(rt, fn)()
            out.append(int(res[1]) if _code(res[0]) == 0 else None)
        except Exception:  # cuda-python 12.6.x raises without a driver
            out.append(None)
    return out[0], out[1]


def driver_hint(rt: Any) -> str:
    """What to do when this cuda-python and the driver do not fit: which extra to install, from the
    driver's and cuda-python's CUDA versions."""
    driver, runtime = driver_versions(rt)
    if not driver:
        return ("no NVIDIA driver was found (libcuda.so.1): install the driver (JetPack on Jetson) and check "
                "`nvidia-smi`")
    if runtime and driver // 1000 < runtime // 1000:
        extra = CUDA_EXTRAS.get(driver // 1000, f"cuda-python {driver // 1000}.x")
        return (f"this cuda-python is built for CUDA {_cuda_version(runtime)}, the driver supports CUDA "
                f"{_cuda_version(driver)}: pip install '{extra}' (cuda-python {driver // 1000}.x), or update the "
                f"driver (CUDA 13 needs r580+)")
    return (f"the driver supports CUDA {_cuda_version(driver)}"
            + (f", cuda-python is built for CUDA {_cuda_version(runtime)}" if runtime else "")
            + ": update the driver (JetPack on Jetson), or install the cuda-python that matches it "
              "(hpsedge[trt-cu12] for CUDA 12, hpsedge[trt] for CUDA 13)")


def load_cudart() -> Any:
    """Import cuda-python's runtime module (``cuda.bindings.runtime``, else the legacy ``cuda.cudart``)."""
    broken = []
    for name in _MODULES:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and not name.startswith(exc.name):  # a dependency of cuda-python is missing
                broken.append(f"{name}: {exc}")
            continue
        except (ImportError, OSError) as exc:  # installed but broken (missing libcudart, ABI mismatch)
            broken.append(f"{name}: {exc}")
    if broken:
        raise BackendError(f"cuda-python is installed but does not import ({broken[0]})",
                           hint=f"reinstall the extra matching the driver: {INSTALL_HINT}")
    raise BackendError(
        "cuda-python is not installed (the TensorRT backend needs it for GPU buffers)",
        hint=INSTALL_HINT,
    )


def _code(err: Any) -> int:
    """The integer code of a cuda-python error, whether an ``IntEnum``, a plain ``Enum`` or an int."""
    value = getattr(err, "value", err)
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def native_handle(obj: Any) -> int:
    """The address behind a cuda-python handle object (e.g. ``cudaStream_t``) as a Python int.

    Uses ``cuda.bindings.utils.get_cuda_native_handle`` where cuda-bindings has it; ``int(obj)``, which
    cuda-bindings deprecates, only as the fallback for older releases.
    """
    if isinstance(obj, int):
        return obj
    try:
        from cuda.bindings.utils import get_cuda_native_handle  # type: ignore[import-not-found]
    except (ImportError, AttributeError):
        get_cuda_native_handle = None
    if get_cuda_native_handle is not None:
        return int(get_cuda_native_handle(obj))
    return int(obj)


def _decode(s: Any) -> str:
    if isinstance(s, (bytes, bytearray)):
        return bytes(s).split(b"\0", 1)[0].decode("utf-8", "replace")
    return str(s)


def _error_name(rt: Any, err: Any) -> str:
    name = getattr(err, "name", None)
    if isinstance(name, str) and name:
        return name
    try:
        res = rt.cudaGetErrorName(err)
        if _code(res[0]) == 0:
            return _decode(res[1])
    except Exception:
        pass
    return f"error {_code(err)}"


def _error_text(rt: Any, err: Any) -> str | None:
    try:
        res = rt.cudaGetErrorString(err)
        if _code(res[0]) == 0:
            return _decode(res[1])
    except Exception:
        pass
    return None


def check(result: Any, call: str, rt: Any = None) -> Any:
    """Unwrap a cuda-python result ``(err, *values)``: raise :class:`BackendError` naming ``call`` when
    ``err`` is not success; return None, the single value, or the tuple of values."""
    if isinstance(result, tuple):
        err, values = (result[0], result[1:]) if result else (0, ())
    else:
        err, values = result, ()
    if _code(err) != 0:
        name = _error_name(rt, err)
        text = _error_text(rt, err) if rt is not None else None
        detail = f"{name}: {text}" if text and text != name else name
        if name == "cudaErrorInsufficientDriver" and rt is not None:
            hint = driver_hint(rt)
        else:
            hint = _HINTS.get(name, "check the GPU with `nvidia-smi`")
        raise BackendError(f"CUDA call {call} failed ({detail})", hint=hint)
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def call(rt: Any, fn: str, *args: Any) -> Any:
    """``rt.<fn>(*args)`` unwrapped by :func:`check`; a ``RuntimeError`` from cuda-python itself (12.6.x
    without a usable driver) becomes a :class:`BackendError` too."""
    func = getattr(rt, fn, None)
    if func is None:
        raise BackendError(f"this cuda-python has no {fn}", hint=INSTALL_HINT)
    try:
        result = func(*args)
    except RuntimeError as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise BackendError(f"CUDA call {fn} failed (cuda-python: {text})", hint=driver_hint(rt)) from exc
    return check(result, fn, rt)


class DeviceBuffer:
    """``nbytes`` of GPU memory at integer address ``ptr``."""

    def __init__(self, cuda: CudaRuntime, nbytes: int) -> None:
        self._cuda = cuda
        self.nbytes = int(nbytes)
        self.ptr = int(cuda.call("cudaMalloc", self.nbytes))

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            self._cuda.call("cudaFree", ptr)


class HostBuffer:
    """``nbytes`` of page-locked (pinned) host memory, viewable as a numpy array without copying."""

    def __init__(self, cuda: CudaRuntime, nbytes: int) -> None:
        self._cuda = cuda
        self.nbytes = int(nbytes)
        self.ptr = int(cuda.call("cudaMallocHost", self.nbytes))
        self._raw = np.frombuffer((ctypes.c_char * self.nbytes).from_address(self.ptr), dtype=np.uint8)

    def view(self, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        """A numpy view of the first ``prod(shape)`` elements (valid until :meth:`free`)."""
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        if count * dt.itemsize > self.nbytes:
            raise BackendError(f"pinned buffer of {self.nbytes} bytes is too small for {shape} {dt}")
        return self._raw[: count * dt.itemsize].view(dt).reshape(shape)

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            self._raw = np.empty(0, np.uint8)
            self._cuda.call("cudaFreeHost", ptr)


class Stream:
    """A CUDA stream; ``handle`` is the integer TensorRT's ``execute_async_v3`` takes."""

    def __init__(self, cuda: CudaRuntime) -> None:
        self._cuda = cuda
        self._stream = cuda.call("cudaStreamCreate")
        self.handle = native_handle(self._stream)

    def synchronize(self) -> None:
        self._cuda.call("cudaStreamSynchronize", self._stream)

    def destroy(self) -> None:
        if self._stream is not None:
            s, self._stream = self._stream, None
            self._cuda.call("cudaStreamDestroy", s)


class CudaRuntime:
    """cuda-python's runtime API bound to one device. ``cudart`` injects a module (tests)."""

    def __init__(self, device: int = 0, cudart: Any = None) -> None:
        self.rt = cudart if cudart is not None else load_cudart()
        self.device = int(device)
        self.call("cudaSetDevice", self.device)

    def call(self, fn: str, *args: Any) -> Any:
        """Call ``cudart.<fn>(*args)`` and :func:`check` its result (see :func:`call`)."""
        return call(self.rt, fn, *args)

    def device_info(self) -> tuple[str, str]:
        return device_info(self.device, cudart=self.rt)

    def malloc(self, nbytes: int) -> DeviceBuffer:
        return DeviceBuffer(self, nbytes)

    def malloc_host(self, nbytes: int) -> HostBuffer:
        return HostBuffer(self, nbytes)

    def stream(self) -> Stream:
        return Stream(self)

    def memcpy_htod_async(self, dst: int, src: int, nbytes: int, stream: Stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.call("cudaMemcpyAsync", dst, src, int(nbytes), kind, stream._stream)

    def memcpy_dtoh_async(self, dst: int, src: int, nbytes: int, stream: Stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.call("cudaMemcpyAsync", dst, src, int(nbytes), kind, stream._stream)

    def synchronize(self, stream: Stream | None = None) -> None:
        if stream is None:
            self.call("cudaDeviceSynchronize")
        else:
            stream.synchronize()


def device_info(device: int = 0, cudart: Any = None) -> tuple[str, str]:
    """``(gpu name, "major.minor")`` of CUDA device ``device``, e.g. ``("Orin", "8.7")``."""
    rt = cudart if cudart is not None else load_cudart()
    count = call(rt, "cudaGetDeviceCount")
    if not count:
        raise BackendError("no CUDA GPU is visible", hint=_HINTS["cudaErrorNoDevice"])
    if not 0 <= int(device) < int(count):
        raise BackendError(f"GPU {device} does not exist (this machine has {count})",
                           hint=_HINTS["cudaErrorInvalidDevice"])
    prop = call(rt, "cudaGetDeviceProperties", int(device))
    return _decode(prop.name).strip(), f"{int(prop.major)}.{int(prop.minor)}"
