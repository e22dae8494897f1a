"""TensorRT decision logic and glue, tested without TensorRT, CUDA or a GPU.

The pure parts (build planning, engine compatibility, backend choice) are called directly. The parts
that talk to TensorRT and cuda-python run against small fakes injected into ``sys.modules``: a fake
``cuda.bindings.runtime`` whose "device memory" is host memory (so copies really move bytes), and a
fake ``tensorrt`` whose engine computes simple known functions of its inputs.
"""

from __future__ import annotations

import ctypes
import enum
import hashlib
import json
import os
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from hpsedge.errors import BackendError, ExportError, InputError
from hpsedge.runtime.manifest import Manifest, load_manifest
from hpsedge.runtime.trt import api
from hpsedge.runtime.trt import cuda as cudamod
from hpsedge.runtime.trt.builder import BuildOptions, ProgressEvent, build_engine, plan_build, trt_available
from hpsedge.runtime.trt.compat import (
    check_engine_compat,
    choose_backend,
    detect_platform,
    parse_compute_capability,
    parse_trt_version,
)

ROOT = Path(__file__).resolve().parents[1]
SPECS = [("image", ["N", 3, 224, 224]), ("bbox_info", ["N", 3])]


# ==== plan_build ================================================================================
def plan(trt="10.3.0.30", platform="jetson", has_dla=False, specs=SPECS, **kw):
    return plan_build(BuildOptions(**kw), trt, platform, has_dla, specs)


def test_plan_default_10_3_jetson_is_strongly_typed():
    p = plan()
    assert p.network_flags == ["STRONGLY_TYPED"]
    assert p.builder_flags == []
    assert p.device_type == "GPU" and p.dla_core is None and p.hardware_compat_level is None
    assert p.profiles == {
        "image": ((1, 3, 224, 224), (4, 3, 224, 224), (16, 3, 224, 224)),
        "bbox_info": ((1, 3), (4, 3), (16, 3)),
    }
    assert p.strongly_typed


def test_plan_default_11_4_strongly_typed():
    p = plan("11.4.0.106", "desktop")
    assert p.network_flags == ["STRONGLY_TYPED"] and p.builder_flags == []


def test_plan_weak_typing_fp16_on_10_3_uses_builder_flag():
    p = plan(precision="fp16", weak_typing=True)
    assert p.network_flags == []
    assert p.builder_flags == ["FP16"]
    assert not p.strongly_typed


def test_plan_weak_typing_int8_on_10_x():
    p = plan("10.13.0", "desktop", precision="int8", weak_typing=True)
    assert p.builder_flags == ["INT8", "FP16"]
    assert any("deprecated" in n for n in p.notes)


def test_plan_weak_typing_on_11_is_refused():
    with pytest.raises(ExportError, match="strongly typed"):
        plan("11.4.0", "desktop", precision="fp16", weak_typing=True)


def test_plan_dla_on_desktop_is_refused():
    with pytest.raises(ExportError, match="desktop GPU"):
        plan(platform="desktop", has_dla=False, dla_core=0, precision="fp16")


def test_plan_dla_on_trt10_jetson_uses_precision_flags_and_gpu_fallback():
    # TensorRT 10: DLA is set up with the precision builder flags + GPU fallback (not strongly typed)
    p = plan(has_dla=True, dla_core=1, precision="fp16")
    assert p.device_type == "DLA" and p.dla_core == 1
    assert p.network_flags == [] and p.builder_flags == ["FP16", "GPU_FALLBACK"]
    assert not p.strongly_typed and any("11.4.1" in n for n in p.notes)
    assert p.parser_flags == []  # 10.x has no OnnxParserFlag.ADJUST_FOR_DLA (test_trt_contract)


def test_plan_dla_on_11_4_1_is_strongly_typed_and_adjusts_the_parse():
    p = plan("11.4.1", has_dla=True, dla_core=0, precision="fp16")
    assert p.device_type == "DLA" and p.network_flags == ["STRONGLY_TYPED"]
    assert p.builder_flags == ["GPU_FALLBACK"] and p.strongly_typed
    assert p.parser_flags == ["ADJUST_FOR_DLA"]  # NVIDIA's advice for DLA on 11.4.1
    assert plan("11.4.1").parser_flags == []  # GPU builds parse as before


@pytest.mark.parametrize("version", ["10.3.0.30", "10.7.0", "11.4.1", None])
def test_plan_dla_int8_is_refused(version):
    # DLA INT8 is documented only with an implicit-quantization calibrator (IInt8EntropyCalibrator2, "the required
    # calibrator for DLA"); hpsedge's INT8 graphs are Q/DQ without one, so the build is refused, not guessed at
    with pytest.raises(ExportError, match=r"^INT8 on DLA is not supported") as ei:
        plan_build(BuildOptions(precision="int8", dla_core=0), version, "jetson" if version else None, True, SPECS)
    assert "\n" not in ei.value.message and "--precision fp16" in ei.value.hint
    # the same int8 graph on the GPU of the same Jetson builds
    assert plan_build(BuildOptions(precision="int8"), version, "jetson" if version else None, True,
                      SPECS).device_type == "GPU"


@pytest.mark.parametrize(
    ("version", "match"),
    [
        ("10.8.0", r"10\.7 was the last 10\.x release"),
        ("10.16.2", r"10\.7 was the last 10\.x release"),
        ("11.0.0", r"11\.0 to 11\.3"),
        ("11.3.0", r"11\.0 to 11\.3"),
        ("11.4.0", "Windows on ARM"),
        ("11.5.0", r"through TensorRT 11\.4\.1"),
        ("12.0", r"through TensorRT 11\.4\.1"),
    ],
)
def test_plan_dla_gated_by_trt_release(version, match):
    with pytest.raises(ExportError, match=match):
        plan(version, has_dla=True, dla_core=0, precision="fp16")


def test_dla_support_table():
    from hpsedge.runtime.trt.compat import dla_strongly_typed, dla_support

    assert [dla_support(v)[0] for v in ("10.0", "10.3.0.30", "10.7.0", "10.8.0", "11.2.1", "11.4.0",
                                        "11.4.1", "11.4.1.5", "11.5.0", "11.6")] == [
        True, True, True, False, False, False, True, True, False, False]
    assert not dla_strongly_typed("10.3") and dla_strongly_typed("11.4.1")


def test_plan_dla_refusals():
    with pytest.raises(ExportError, match="no DLA cores"):
        plan(has_dla=False, dla_core=0, precision="fp16")
    with pytest.raises(ExportError, match="GPU fallback"):
        plan(has_dla=True, dla_core=0, precision="fp32", gpu_fallback=False)
    with pytest.raises(ExportError, match="strongly typed networks only"):
        plan("11.4.1", has_dla=True, dla_core=0, precision="fp16", weak_typing=True)


def test_plan_without_trt_here_skips_version_gates():
    # trtexec.sh planned on a workstation without TensorRT: DLA plans the TensorRT 10 path
    p = plan_build(BuildOptions(precision="fp16", dla_core=0), None, None, None, SPECS)
    assert p.trt_version is None and p.builder_flags == ["FP16", "GPU_FALLBACK"]
    assert any("without TensorRT" in n for n in p.notes)
    assert plan_build(BuildOptions(), None, None, None, SPECS).network_flags == ["STRONGLY_TYPED"]


def test_plan_hardware_compat():
    with pytest.raises(ExportError, match="not supported on Jetson"):
        plan(hardware_compat="ampere+")
    p = plan(platform="desktop", hardware_compat="ampere+")
    assert p.hardware_compat_level == "AMPERE_PLUS"
    with pytest.raises(ExportError, match="Ampere or newer"):
        plan_build(BuildOptions(hardware_compat="ampere+"), "10.8", "desktop", False, SPECS,
                   compute_capability="7.5")
    with pytest.raises(ExportError, match="unknown hardware"):
        plan(platform="desktop", hardware_compat="turing+")


def test_plan_version_compatible_flags():
    # the lean runtime stays in the plan: the runtime never calls IRuntime.load_runtime()
    assert plan(version_compatible=True).builder_flags == ["VERSION_COMPATIBLE"]
    assert not hasattr(BuildOptions(), "exclude_lean_runtime")


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"opt_batch": 8, "max_batch": 4}, "opt batch"),
        ({"min_batch": 0}, "min batch"),
        ({"max_batch": 0}, "max batch"),
        ({"min_batch": 5, "max_batch": 4}, "min batch"),
        ({"opt_level": 6}, "optimisation level"),
        ({"precision": "bf16"}, "unknown precision"),
        ({"workspace_bytes": 0}, "workspace"),
        ({"dla_core": -1, "precision": "fp16"}, "DLA core"),
    ],
)
def test_plan_rejects_bad_options(kw, match):
    with pytest.raises(ExportError, match=match):
        plan(has_dla=True, **kw)


def test_plan_profile_details():
    assert plan(max_batch=2).opt_batch == 2
    p = plan(min_batch=2, opt_batch=3, max_batch=8)
    assert p.profiles["bbox_info"] == ((2, 3), (3, 3), (8, 3))
    with pytest.raises(ExportError, match="only the leading batch axis"):
        plan(specs=[("image", ["N", 3, "H", 224])])
    with pytest.raises(ExportError, match="too old"):
        plan("8.6.2")
    with pytest.raises(ExportError, match="unknown platform"):
        plan(platform="windows")
    assert plan(specs=None).profiles is None
    fixed = plan(specs=[("image", [1, 3, 224, 224])])
    assert fixed.profiles == {} and any("fixed batch" in n for n in fixed.notes)


# ==== check_engine_compat =======================================================================
def entry(**kw):
    e = {"file": "model.fp16.engine", "trt_version": "10.3.0.30", "compute_capability": "8.6",
         "gpu_name": "NVIDIA GeForce RTX 3090", "platform": "desktop", "version_compatible": False,
         "hardware_compat": None, "dla_core": None}
    e.update(kw)
    return e


def test_parsers():
    assert parse_trt_version("10.3.0.30") == (10, 3, 0, 30)
    assert parse_trt_version("11.4.0.106+cuda13") == (11, 4, 0, 106)
    assert parse_compute_capability("8.7") == (8, 7)
    assert parse_compute_capability("sm_87") == (8, 7)
    assert parse_compute_capability("sm_120") == (12, 0)
    with pytest.raises(BackendError):
        parse_trt_version("abc")
    with pytest.raises(BackendError):
        parse_compute_capability("87")


def test_compat_ok_same_machine():
    check_engine_compat(entry(), "10.3.0.30", "8.6", "desktop")
    check_engine_compat(entry(trt_version="10.3.0"), "10.3.0.30", "8.6", "desktop")


def test_compat_compute_capability_mismatch_message():
    with pytest.raises(BackendError) as ei:
        check_engine_compat(entry(), "10.3.0.30", "8.7", "jetson", gpu_name="Orin", folder="build/poco")
    text = str(ei.value)
    assert "sm_86" in text and "RTX 3090" in text
    assert "sm_87" in text and "Orin" in text
    assert "hpsedge export build --on-device build/poco" in text
    assert ei.value.hint and "rebuild" in ei.value.hint


def test_compat_trt_version_mismatch():
    with pytest.raises(BackendError, match=r"TensorRT 10\.3\.0\.30.*TensorRT 10\.8\.0\.43"):
        check_engine_compat(entry(), "10.8.0.43", "8.6", "desktop")
    with pytest.raises(BackendError, match="exact"):
        check_engine_compat(entry(), "10.3.0.26", "8.6", "desktop")


def test_compat_version_compatible_engines():
    vc = entry(version_compatible=True)
    check_engine_compat(vc, "10.8.0.43", "8.6", "desktop")  # newer minor
    check_engine_compat(vc, "11.4.0.106", "8.6", "desktop")  # 10 -> 11 is supported
    with pytest.raises(BackendError, match="older"):
        check_engine_compat(entry(version_compatible=True, trt_version="10.8.0"), "10.3.0.30", "8.6", "desktop")
    with pytest.raises(BackendError, match="cannot run TensorRT 8 engines"):
        check_engine_compat(entry(version_compatible=True, trt_version="8.6.1"), "11.4.0", "8.6", "desktop")
    with pytest.raises(BackendError, match="sm_86"):  # version compatibility does not cover the GPU
        check_engine_compat(vc, "10.8.0", "8.9", "desktop")


def test_compat_hardware_compat():
    hw = entry(hardware_compat="ampere+")
    check_engine_compat(hw, "10.3.0.30", "8.9", "desktop")
    check_engine_compat(hw, "10.3.0.30", "12.0", "desktop")
    with pytest.raises(BackendError, match="Jetson"):
        check_engine_compat(hw, "10.3.0.30", "8.7", "jetson")
    with pytest.raises(BackendError, match="Ampere or newer"):
        check_engine_compat(hw, "10.3.0.30", "7.5", "desktop", gpu_name="Tesla T4")


def test_compat_missing_or_bad_fields():
    e = entry()
    del e["compute_capability"]
    del e["trt_version"]
    with pytest.raises(BackendError, match="lacks trt_version, compute_capability") as ei:
        check_engine_compat(e, "10.3.0.30", "8.6", "desktop")
    assert "rebuild" in ei.value.hint
    with pytest.raises(BackendError, match="unreadable"):
        check_engine_compat(entry(trt_version="ten"), "10.3.0.30", "8.6", "desktop")
    with pytest.raises(BackendError, match="platform"):
        check_engine_compat(entry(platform="mars"), "10.3.0.30", "8.6", "desktop")


def test_compat_dla_engine_needs_jetson():
    dla = entry(platform="jetson", compute_capability="8.7", dla_core=0, gpu_name="Orin")
    check_engine_compat(dla, "10.3.0.30", "8.7", "jetson")


# ==== choose_backend ============================================================================
ALL = {"trt": True, "cuda_ep": True, "trt_ep": False}


def raw_manifest(engine=None):
    arts = {"onnx": {"file": "model.onnx"}}
    if engine is not None:
        arts["engine"] = engine
    return {"artifacts": arts}


def test_choose_no_engine_is_ort():
    choice, reason = choose_backend(raw_manifest(), ALL, "8.6", "10.3.0.30")
    assert choice == "ort" and "no TensorRT engine" in reason and "CUDA" in reason


def test_choose_compatible_engine_is_trt():
    choice, reason = choose_backend(raw_manifest(entry()), ALL, "8.6", "10.3.0.30", platform="desktop")
    assert choice == "trt" and "sm_86" in reason


def test_choose_falls_back_with_reasons():
    m = raw_manifest(entry())
    choice, reason = choose_backend(m, {"trt": False, "cuda_ep": False}, "8.6", "10.3.0.30")
    assert choice == "ort" and "not importable" in reason and "CPU" in reason
    assert choose_backend(m, ALL, None, "10.3.0.30")[1].startswith("an engine exists but no CUDA GPU")
    assert "version is unknown" in choose_backend(m, ALL, "8.6", None)[1]
    choice, reason = choose_backend(m, ALL, "8.7", "10.3.0.30", gpu_name="Orin")
    assert choice == "ort" and "sm_86" in reason and "sm_87" in reason
    choice, reason = choose_backend(m, {"trt": True, "trt_ep": True}, "8.6", "10.8.0")
    assert choice == "ort" and "TensorRT 10.8.0" in reason and "execution provider" in reason


def test_choose_infers_jetson_from_cc():
    jet = entry(platform="jetson", compute_capability="8.7", gpu_name="Orin")
    assert choose_backend(raw_manifest(jet), ALL, "8.7", "10.3.0.30")[0] == "trt"


def test_choose_missing_engine_file(tmp_path):
    m = Manifest(path=tmp_path / "manifest.json", raw=raw_manifest(entry()))
    choice, reason = choose_backend(m, ALL, "8.6", "10.3.0.30", platform="desktop")
    assert choice == "ort" and "missing" in reason
    (tmp_path / "model.fp16.engine").write_bytes(b"x")
    assert choose_backend(m, ALL, "8.6", "10.3.0.30", platform="desktop")[0] == "trt"


def test_detect_platform(tmp_path):
    rel = tmp_path / "nv_tegra_release"
    assert detect_platform("NVIDIA GeForce RTX 3090", tegra_release=rel) == "desktop"
    assert detect_platform("Orin", tegra_release=rel) == "jetson"
    assert detect_platform("NVIDIA Thor", tegra_release=rel) == "jetson"
    rel.write_text("# R36 (release), REVISION: 4.3")
    assert detect_platform(None, tegra_release=rel) == "jetson"


# ==== fake cuda-python ==========================================================================
CudaErr = enum.IntEnum("cudaError_t", api.CUDA_ENUMS["cudaError_t"])  # cuda-bindings' enum is an IntEnum too
NULL_FACTORY = f"pybind11::init(): {api.TRT_NULL_FACTORY_ERROR}"  # what the real TensorRT constructors raise


class FakeCudart:
    """Mimics ``cuda.bindings.runtime`` (the calls in ``api.CUDA_CALLS``): every call returns ``(err, *values)``;
    device memory is host memory here, so async copies are real ``memmove`` s.

    ``no_driver``: ``"code"`` behaves like cuda-bindings 12.9/13.x on a host without a driver (every call returns
    cudaErrorInsufficientDriver, the driver version reads 0); ``"raise"`` like cuda-python 12.6.2, which raises
    ``RuntimeError`` from every call instead (both checked on the real wheels). ``driver``/``runtime`` are the
    CUDA versions the two version calls report."""

    cudaError_t = CudaErr
    cudaMemcpyKind = enum.IntEnum("cudaMemcpyKind", api.CUDA_ENUMS["cudaMemcpyKind"])

    def __init__(self, name=b"NVIDIA GeForce RTX 3090\0\0\0", cc=(8, 6), count=1, *, no_driver=None,
                 driver=12080, runtime=12090):
        self.name, self.cc, self.count = name, cc, count
        self.no_driver, self.driver, self.runtime = no_driver, driver, runtime
        self.device_mem: dict[int, np.ndarray] = {}
        self.host_mem: dict[int, np.ndarray] = {}
        self.calls: list[str] = []
        self.fail: dict[str, CudaErr] = {}

    def _ok(self, fn, *values):
        self.calls.append(fn)
        if self.no_driver == "raise":
            raise RuntimeError("Failed to dlopen libcuda.so.1" if fn == "cudaGetDeviceCount"
                               else 'Function "cuInit" not found')
        if self.no_driver == "code":
            return (CudaErr.cudaErrorInsufficientDriver, *([None] * len(values)))
        if fn in self.fail:
            return (self.fail[fn], *([None] * len(values)))
        return (CudaErr.cudaSuccess, *values)

    def _alloc(self, store, fn, size):
        arr = np.zeros(max(int(size), 1), np.uint8)
        store[arr.ctypes.data] = arr
        return self._ok(fn, arr.ctypes.data)

    def cudaSetDevice(self, device):
        return self._ok("cudaSetDevice")

    def cudaGetDeviceCount(self):
        return self._ok("cudaGetDeviceCount", self.count)

    def cudaGetDeviceProperties(self, device):
        return self._ok("cudaGetDeviceProperties",
                        SimpleNamespace(name=self.name, major=self.cc[0], minor=self.cc[1]))

    def cudaMalloc(self, size):
        return self._alloc(self.device_mem, "cudaMalloc", size)

    def cudaMallocHost(self, size):
        return self._alloc(self.host_mem, "cudaMallocHost", size)

    def cudaFree(self, devPtr):
        self.device_mem.pop(devPtr)
        return self._ok("cudaFree")

    def cudaFreeHost(self, ptr):
        self.host_mem.pop(ptr)
        return self._ok("cudaFreeHost")

    def cudaStreamCreate(self):
        return self._ok("cudaStreamCreate", 1234)

    def cudaStreamSynchronize(self, stream):
        return self._ok("cudaStreamSynchronize")

    def cudaStreamDestroy(self, stream):
        return self._ok("cudaStreamDestroy")

    def cudaDeviceSynchronize(self):
        return self._ok("cudaDeviceSynchronize")

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):
        ctypes.memmove(dst, src, count)
        return self._ok(f"cudaMemcpyAsync:{int(kind)}")

    def cudaGetErrorName(self, error):
        return (CudaErr.cudaSuccess, f"cudaErrorCode{int(error)}".encode())

    def cudaGetErrorString(self, error):
        return (CudaErr.cudaSuccess, b"something went wrong")

    def cudaDriverGetVersion(self):
        if self.no_driver == "raise":
            raise RuntimeError('Function "cuDriverGetVersion" not found')
        return (CudaErr.cudaSuccess, 0 if self.no_driver else self.driver)

    def cudaRuntimeGetVersion(self):
        return (CudaErr.cudaSuccess, self.runtime)


def install_cuda(monkeypatch, fake=None, module="cuda.bindings.runtime"):
    fake = fake or FakeCudart()
    monkeypatch.setitem(sys.modules, module, fake)
    return fake


def test_cuda_check_unwraps_tuples():
    assert cudamod.check((CudaErr.cudaSuccess, 5), "f") == 5
    assert cudamod.check((CudaErr.cudaSuccess,), "f") is None
    assert cudamod.check((0, 1, 2), "f") == (1, 2)


def test_cuda_errors_name_the_call():
    fake = FakeCudart()
    with pytest.raises(BackendError, match=r"cudaMalloc failed \(cudaErrorMemoryAllocation") as ei:
        cudamod.check((CudaErr.cudaErrorMemoryAllocation, None), "cudaMalloc", fake)
    assert "out of GPU memory" in ei.value.hint
    with pytest.raises(BackendError, match=r"cudaStreamCreate failed \(cudaErrorCode999: something went wrong"):
        cudamod.check((999, None), "cudaStreamCreate", fake)  # plain int code: name looked up


def test_cuda_runtime_with_fake_module(monkeypatch):
    fake = install_cuda(monkeypatch)
    cu = cudamod.CudaRuntime(0)
    assert cu.device_info() == ("NVIDIA GeForce RTX 3090", "8.6")
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    dev, host_in, host_out = cu.malloc(data.nbytes), cu.malloc_host(data.nbytes), cu.malloc_host(data.nbytes)
    s = cu.stream()
    assert s.handle == 1234
    np.copyto(host_in.view(np.float32, (3, 4)), data)
    cu.memcpy_htod_async(dev.ptr, host_in.ptr, data.nbytes, s)
    cu.memcpy_dtoh_async(host_out.ptr, dev.ptr, data.nbytes, s)
    s.synchronize()
    np.testing.assert_array_equal(host_out.view(np.float32, (3, 4)), data)
    with pytest.raises(BackendError, match="too small"):
        host_in.view(np.float32, (4, 4))
    for b in (dev, host_in, host_out):
        b.free()
        b.free()  # idempotent
    s.destroy()
    assert not fake.device_mem and not fake.host_mem

    fake.fail["cudaMalloc"] = CudaErr.cudaErrorMemoryAllocation
    with pytest.raises(BackendError, match="CUDA call cudaMalloc failed"):
        cu.malloc(16)


def test_cuda_device_info_errors(monkeypatch):
    with pytest.raises(BackendError, match="no CUDA GPU"):
        cudamod.device_info(0, cudart=FakeCudart(count=0))
    with pytest.raises(BackendError, match="GPU 3 does not exist"):
        cudamod.device_info(3, cudart=FakeCudart(count=1))
    fake = FakeCudart()
    fake.fail["cudaGetDeviceCount"] = CudaErr.cudaErrorInsufficientDriver
    with pytest.raises(BackendError, match="cudaGetDeviceCount failed") as ei:
        cudamod.device_info(0, cudart=fake)
    assert "driver" in ei.value.hint


def test_load_cudart_fallback_and_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", None)  # cuda-bindings 13 absent
    legacy = install_cuda(monkeypatch, module="cuda.cudart")
    assert cudamod.load_cudart() is legacy
    monkeypatch.setitem(sys.modules, "cuda.cudart", None)
    with pytest.raises(BackendError, match="cuda-python is not installed") as ei:
        cudamod.load_cudart()
    assert ei.value.hint == cudamod.INSTALL_HINT and "hpsedge[trt-cu12]" in ei.value.hint


# ==== fake tensorrt =============================================================================
Severity = enum.IntEnum("Severity", api.TRT_ENUMS[10]["ILogger.Severity"])


class FakeTRT:
    """State behind a fake ``tensorrt`` module; ``module()`` builds the module object.

    Its enums are the members (and real values) ``api.TRT_ENUMS`` lists for the version's major, so 11.x has
    ``STRONGLY_TYPED == 0`` and no ``BuilderFlag.FP16/INT8``; its classes carry the real names and the
    signatures ``api.TRT_CALLS`` lists (test_fake_trt_matches_the_contract). ``null_factories`` names the
    constructors ("Builder", "Runtime", "OnnxParser") whose C++ factory returns nullptr: like the real
    bindings they then raise ``TypeError``, they never return None."""

    def __init__(self, version="10.3.0.30", *, plan=b"FAKE-PLAN", max_batch=8, deserialize_ok=True,
                 parse_ok=True, build_ok=True, num_dla=0, cache_ok=True, static_batch=None, null_factories=()):
        self.version, self.plan, self.max_batch = version, plan, max_batch
        self.deserialize_ok, self.parse_ok, self.build_ok = deserialize_ok, parse_ok, build_ok
        self.num_dla, self.cache_ok = num_dla, cache_ok
        self.static_batch = static_batch
        self.null_factories = tuple(null_factories)
        self.calls: list[tuple] = []
        self.runtime = None
        self.config = None

    def module(self):
        st = self
        m = types.ModuleType("tensorrt")
        m.__version__ = st.version

        enums = api.TRT_ENUMS[min(max(int(st.version.split(".")[0]), 10), 11)]  # 8.x: only __version__ is read

        def make_enum(name):
            return enum.IntEnum(name.rsplit(".", 1)[-1], enums[name]) if enums[name] else type(name, (), {})

        def factory(name):
            st.calls.append((name,))
            if name in st.null_factories:
                raise TypeError(NULL_FACTORY)

        class ILogger:
            Severity = make_enum("ILogger.Severity")

            def __init__(self):
                pass

            def log(self, severity, msg):
                pass

        class IProgressMonitor:
            def __init__(self):
                pass

            def phase_start(self, phase_name, parent_phase, num_steps):
                pass

            def step_complete(self, phase_name, step):
                return True

            def phase_finish(self, phase_name):
                pass

        m.ILogger, m.IProgressMonitor = ILogger, IProgressMonitor
        for name in enums:
            if "." not in name:
                setattr(m, name, make_enum(name))
        m.nptype = lambda dt: {m.DataType.FLOAT: np.float32, m.DataType.HALF: np.float16}[dt]

        class ITimingCache:
            def __init__(self, data):
                self.data = bytes(data)

            def serialize(self):
                return b"CACHE|" + self.data

        class IBuilderConfig:
            def __init__(self):
                self.flags, self.profiles, self.pool = [], [], {}
                self.builder_optimization_level = 3
                self.progress_monitor = None
                self.hardware_compatibility_level = None
                self.default_device_type = m.DeviceType.GPU
                self.DLA_core = -1
                self.timing_cache = None

            def set_memory_pool_limit(self, pool, pool_size):
                self.pool[pool] = pool_size

            def set_flag(self, flag):
                self.flags.append(flag.name)

            def add_optimization_profile(self, profile):
                self.profiles.append(profile)
                return len(self.profiles) - 1

            def create_timing_cache(self, serialized_timing_cache):
                st.calls.append(("create_timing_cache", bytes(serialized_timing_cache)))
                return ITimingCache(serialized_timing_cache)

            def set_timing_cache(self, cache, ignore_mismatch):
                assert ignore_mismatch is False
                ok = st.cache_ok or cache.data == b""
                if ok:
                    self.timing_cache = cache
                return ok

        class IOptimizationProfile:
            def __init__(self):
                self.shapes = {}

            def set_shape(self, input, min, opt, max):
                self.shapes[input] = (tuple(min), tuple(opt), tuple(max))

        class ITensor:
            def __init__(self, name, shape):
                self.name, self.shape = name, shape

        class INetworkDefinition:
            def __init__(self, flags):
                self.flags = flags
                self.inputs = [ITensor("image", (-1, 3, 2, 2)), ITensor("bbox_info", (-1, 3))]

            @property
            def num_inputs(self):
                return len(self.inputs)

            def get_input(self, index):
                return self.inputs[index]

        class OnnxParser:
            def __init__(self, network, logger):
                factory("OnnxParser")
                self.network, self.logger = network, logger
                self.errors = [] if st.parse_ok else ["In node 3 (Pad): UNSUPPORTED_NODE", "second  error"]

            def set_flag(self, flag):
                st.calls.append(("parser_set_flag", flag.name))

            def parse_from_file(self, model):
                st.calls.append(("parse_from_file", model))
                assert isinstance(model, str)
                return st.parse_ok

            def parse(self, data):
                raise AssertionError("parse(bytes) breaks external data; use parse_from_file")

            @property
            def num_errors(self):
                return len(self.errors)

            def get_error(self, index):
                return self.errors[index]

        class Builder:
            def __init__(self, logger):
                factory("Builder")
                self.logger = logger
                self.num_DLA_cores = st.num_dla

            def create_network(self, flags=0):
                st.calls.append(("create_network", flags))
                return INetworkDefinition(flags)

            def create_builder_config(self):
                st.config = IBuilderConfig()
                return st.config

            def create_optimization_profile(self):
                return IOptimizationProfile()

            def build_serialized_network(self, network, config):
                st.calls.append(("build_serialized_network",))
                mon = config.progress_monitor
                if mon is not None:
                    mon.phase_start("Building engine", None, 2)
                    for i in range(2):
                        if not mon.step_complete("Building engine", i):
                            mon.phase_finish("Building engine")
                            return None
                    mon.phase_finish("Building engine")
                if not st.build_ok:
                    self.logger.log(Severity.ERROR, "Internal Error: out of memory while building tactic")
                    return None
                return bytearray(st.plan)

        class IExecutionContext:
            def __init__(self, engine):
                self.engine = engine
                self.shapes, self.addresses = {}, {}
                self.address_sets = 0

            def set_input_shape(self, name, shape):
                self.shapes[name] = tuple(shape)
                return True

            def set_tensor_address(self, name, memory):
                self.addresses[name] = memory
                self.address_sets += 1
                return True

            def _batch(self):
                return self.shapes["image"][0] if st.static_batch is None else st.static_batch

            def get_tensor_shape(self, name):
                n = self._batch()
                return {"cam": (n, 3), "betas": (n, 2)}[name]

            def _array(self, name, shape):
                count = int(np.prod(shape))
                buf = (ctypes.c_float * count).from_address(self.addresses[name])
                return np.frombuffer(buf, np.float32).reshape(shape)

            def execute_async_v3(self, stream_handle):
                assert stream_handle == 1234
                n = self._batch()
                image = self._array("image", (n, 3, 2, 2))
                bbox = self._array("bbox_info", (n, 3))
                self._array("cam", (n, 3))[:] = image.mean(axis=(2, 3)) + bbox
                self._array("betas", (n, 2))[:] = 2 * image[:, :2, 0, 0]
                return True

        class ICudaEngine:
            io = (("image", "INPUT", (-1, 3, 2, 2)), ("bbox_info", "INPUT", (-1, 3)),
                  ("cam", "OUTPUT", (-1, 3)), ("betas", "OUTPUT", (-1, 2)))

            num_io_tensors = 4

            def get_tensor_name(self, index):
                return self.io[index][0]

            def _find(self, name):
                return next(t for t in self.io if t[0] == name)

            def get_tensor_mode(self, name):
                return m.TensorIOMode[self._find(name)[1]]

            def get_tensor_dtype(self, name):
                return m.DataType.FLOAT

            def get_tensor_shape(self, name):
                shape = self._find(name)[2]
                return shape if st.static_batch is None else (st.static_batch, *shape[1:])

            def get_tensor_profile_shape(self, name, profile_index):
                assert profile_index == 0
                rest = self._find(name)[2][1:]
                return [(1, *rest), (4, *rest), (st.max_batch, *rest)]

            def create_execution_context(self, strategy=0):
                st.context = IExecutionContext(self)
                return st.context

        class Runtime:
            def __init__(self, logger):
                factory("Runtime")
                self.logger = logger
                self.engine_host_code_allowed = False
                st.runtime = self

            def deserialize_cuda_engine(self, serialized_engine):
                st.calls.append(("deserialize_cuda_engine", bytes(serialized_engine)))
                if not st.deserialize_ok:
                    self.logger.log(Severity.ERROR, "IRuntime::deserializeCudaEngine: Version tag does not "
                                                    "match. Current Version: 213, Serialized Engine Version: 232")
                    return None
                return ICudaEngine()

        m.Builder, m.OnnxParser, m.Runtime = Builder, OnnxParser, Runtime
        for cls in (IBuilderConfig, IOptimizationProfile, INetworkDefinition, ITensor, ITimingCache, ICudaEngine,
                    IExecutionContext):
            setattr(m, cls.__name__, cls)
        return m


def install_trt(monkeypatch, fake=None):
    fake = fake or FakeTRT()
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module())
    return fake


def engine_file(tmp_path, plan=b"FAKE-PLAN", **kw):
    path = tmp_path / "model.fp32.engine"
    path.write_bytes(plan)
    e = entry(sha256=hashlib.sha256(plan).hexdigest(), bytes=len(plan), file=path.name, **kw)
    return path, e


def feeds(n, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.standard_normal((n, 3, 2, 2)).astype(np.float32),
            "bbox_info": rng.standard_normal((n, 3)).astype(np.float32)}


# ==== TensorRTBackend ===========================================================================
def make_backend(tmp_path, monkeypatch, trt=None, cuda=None, entry_kw=None, **kw):
    from hpsedge.runtime.trt.backend import TensorRTBackend

    fake_trt = install_trt(monkeypatch, trt)
    fake_cuda = install_cuda(monkeypatch, cuda)
    path, e = engine_file(tmp_path, **(entry_kw or {}))
    return TensorRTBackend(path, e, 0, platform="desktop", **kw), fake_trt, fake_cuda


def test_backend_runs_and_returns_numpy(tmp_path, monkeypatch):
    be, _, fake_cuda = make_backend(tmp_path, monkeypatch)
    assert be.input_names == ["image", "bbox_info"] and be.output_names == ["cam", "betas"]
    assert be.max_batch == 8
    assert be.device == "TensorRT 10.3.0.30 on NVIDIA GeForce RTX 3090 (sm_86)"
    f = feeds(3)
    out = be.run(f)
    np.testing.assert_allclose(out["cam"], f["image"].mean(axis=(2, 3)) + f["bbox_info"], rtol=1e-6)
    np.testing.assert_allclose(out["betas"], 2 * f["image"][:, :2, 0, 0], rtol=1e-6)
    assert out["cam"].dtype == np.float32 and out["cam"].flags.owndata
    empty = be.run(feeds(0))
    assert empty["cam"].shape == (0, 3)
    be.close()
    assert not fake_cuda.device_mem and not fake_cuda.host_mem
    assert "cudaStreamDestroy" in fake_cuda.calls
    with pytest.raises(BackendError, match="closed"):
        be.run(f)


def test_backend_buffers_regrow_only_when_batch_grows(tmp_path, monkeypatch):
    be, fake_trt, fake_cuda = make_backend(tmp_path, monkeypatch)
    history = []
    for n in (2, 1, 2, 3, 4, 1, 5, 8, 7):
        out = be.run(feeds(n, seed=n))
        assert out["cam"].shape == (n, 3)
        history.append((n, be.capacity, be.allocations))
    assert history == [(2, 2, 1), (1, 2, 1), (2, 2, 1), (3, 4, 2), (4, 4, 2), (1, 4, 2), (5, 8, 3),
                       (8, 8, 3), (7, 8, 3)]
    # 4 tensors x (device + pinned host) per allocation round, old ones freed
    assert fake_cuda.calls.count("cudaMalloc") == 3 * 4 and fake_cuda.calls.count("cudaMallocHost") == 3 * 4
    assert len(fake_cuda.device_mem) == 4 and len(fake_cuda.host_mem) == 4
    assert fake_trt.context.address_sets == 3 * 4
    with pytest.raises(InputError, match="exceeds the engine's maximum of 8"):
        be.run(feeds(9))
    be.close()


def test_backend_static_batch_engine_pads(tmp_path, monkeypatch):
    be, fake_trt, _ = make_backend(tmp_path, monkeypatch, trt=FakeTRT(static_batch=4))
    assert be.max_batch == 4
    f = feeds(3)
    out = be.run(f)
    assert out["cam"].shape == (3, 3)
    np.testing.assert_allclose(out["cam"], f["image"].mean(axis=(2, 3)) + f["bbox_info"], rtol=1e-6)
    assert fake_trt.context.shapes == {}  # no set_input_shape on a static engine
    with pytest.raises(InputError, match="maximum of 4"):
        be.run(feeds(5))
    be.close()


def test_backend_checks_compat_before_deserializing(tmp_path, monkeypatch):
    fake_trt = FakeTRT()
    with pytest.raises(BackendError, match="engine built for sm_86"):
        make_backend(tmp_path, monkeypatch, trt=fake_trt, cuda=FakeCudart(name=b"Orin", cc=(8, 7)))
    assert not [c for c in fake_trt.calls if c[0] == "deserialize_cuda_engine"]
    fake_trt = FakeTRT(version="10.8.0.43")
    with pytest.raises(BackendError, match=r"TensorRT 10\.8\.0\.43"):
        make_backend(tmp_path, monkeypatch, trt=fake_trt)
    assert not fake_trt.calls


def test_backend_deserialize_failure_includes_logger_text(tmp_path, monkeypatch):
    with pytest.raises(BackendError, match="Version tag does not match") as ei:
        make_backend(tmp_path, monkeypatch, trt=FakeTRT(deserialize_ok=False))
    assert "could not load model.fp32.engine" in ei.value.message
    assert "--on-device" in ei.value.hint


def test_backend_version_compatible_needs_host_code_opt_in(tmp_path, monkeypatch):
    with pytest.raises(BackendError, match="version-compatible") as ei:
        make_backend(tmp_path, monkeypatch, entry_kw={"version_compatible": True})
    assert "allow_host_code=True" in ei.value.hint
    be, fake_trt, _ = make_backend(tmp_path, monkeypatch, entry_kw={"version_compatible": True},
                                   allow_host_code=True)
    assert fake_trt.runtime.engine_host_code_allowed is True
    be.close()


def test_backend_rejects_modified_plan_and_bad_inputs(tmp_path, monkeypatch):
    from hpsedge.runtime.trt.backend import TensorRTBackend

    install_trt(monkeypatch)
    install_cuda(monkeypatch)
    path, e = engine_file(tmp_path)
    path.write_bytes(b"FAKE-PLAX")
    with pytest.raises(BackendError, match="sha256"):
        TensorRTBackend(path, e, platform="desktop")
    path.write_bytes(b"FAKE-PLAN")
    be = TensorRTBackend(path, e, platform="desktop")
    with pytest.raises(InputError, match="missing input"):
        be.run({"image": feeds(1)["image"]})
    with pytest.raises(InputError, match="shape"):
        be.run({"image": np.zeros((1, 3, 4, 4), np.float32), "bbox_info": np.zeros((1, 3), np.float32)})
    with pytest.raises(InputError, match="batch size"):
        be.run({"image": np.zeros((2, 3, 2, 2), np.float32), "bbox_info": np.zeros((1, 3), np.float32)})
    be.close()
    # no manifest entry: still loads (with a warning), TensorRT does its own checks
    TensorRTBackend(path, None, platform="desktop").close()


def test_backend_missing_dependencies(tmp_path, monkeypatch):
    from hpsedge.runtime.trt.backend import TensorRTBackend

    path, e = engine_file(tmp_path)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendError, match="TensorRT is not installed") as ei:
        TensorRTBackend(path, e)
    assert "backend='ort'" in ei.value.hint
    install_trt(monkeypatch, FakeTRT(version="8.6.2"))
    with pytest.raises(BackendError, match="too old"):
        TensorRTBackend(path, e)
    install_trt(monkeypatch)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", None)
    monkeypatch.setitem(sys.modules, "cuda.cudart", None)
    with pytest.raises(BackendError, match="cuda-python") as ei:
        TensorRTBackend(path, e)
    assert ei.value.hint == cudamod.INSTALL_HINT and "hpsedge[trt-cu12]" in ei.value.hint


def test_logger_captures_messages(monkeypatch):
    from hpsedge.runtime.trt.backend import make_logger

    trt = install_trt(monkeypatch).module()
    lg = make_logger(trt)
    lg.log(Severity.INFO, "chatty")
    lg.log(Severity.WARNING, "careful")
    assert lg.summary() == "careful"
    lg.log(Severity.ERROR, "broken\n  badly")
    lg.log(Severity.INTERNAL_ERROR, "worse")
    assert lg.errors() == ["broken\n  badly", "worse"]
    assert lg.summary() == "broken badly | worse"


# ==== build_engine ==============================================================================
def onnx_file(tmp_path):
    p = tmp_path / "model.onnx"
    p.write_bytes(b"not really onnx")
    return p


def test_build_engine_call_sequence(tmp_path, monkeypatch):
    fake = install_trt(monkeypatch)
    install_cuda(monkeypatch)
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"OLD")
    events: list[ProgressEvent] = []
    opts = BuildOptions(precision="fp16", max_batch=8, opt_batch=2, workspace_bytes=1 << 30, opt_level=2,
                        timing_cache=cache)
    out = tmp_path / "out" / "model.fp16.engine"
    e = build_engine(onnx_file(tmp_path), out, opts, progress=events.append, platform="desktop")

    names = [c[0] for c in fake.calls]
    assert names.index("parse_from_file") < names.index("build_serialized_network")
    assert ("parse_from_file", str(tmp_path / "model.onnx")) in fake.calls
    assert ("create_network", 1 << 1) in fake.calls  # STRONGLY_TYPED
    assert ("create_timing_cache", b"OLD") in fake.calls
    cfg = fake.config
    assert cfg.flags == [] and cfg.builder_optimization_level == 2
    assert list(cfg.pool.values()) == [1 << 30]
    assert cfg.profiles[0].shapes == {"image": ((1, 3, 2, 2), (2, 3, 2, 2), (8, 3, 2, 2)),
                                      "bbox_info": ((1, 3), (2, 3), (8, 3))}
    assert cache.read_bytes() == b"CACHE|OLD"  # saved after the build
    assert out.read_bytes() == b"FAKE-PLAN"
    assert [p.name for p in out.parent.iterdir()] == ["model.fp16.engine"]  # no temp file left
    assert [(ev.kind, ev.step, ev.total) for ev in events] == [("start", 0, 2), ("step", 1, 2), ("step", 2, 2),
                                                               ("finish", 2, 2)]
    assert e["file"] == "model.fp16.engine" and e["bytes"] == 9
    assert e["sha256"] == hashlib.sha256(b"FAKE-PLAN").hexdigest()
    assert e["trt_version"] == "10.3.0.30" and e["compute_capability"] == "8.6"
    assert e["gpu_name"] == "NVIDIA GeForce RTX 3090" and e["platform"] == "desktop"
    assert e["profile"] == {"min": 1, "opt": 2, "max": 8}
    assert e["network_flags"] == ["STRONGLY_TYPED"] and e["strongly_typed"] is True
    assert e["version_compatible"] is False and e["hardware_compat"] is None and e["dla_core"] is None
    json.dumps(e)
    # the entry it wrote is accepted by the runtime's compatibility check on the same machine
    check_engine_compat(e, "10.3.0.30", "8.6", "desktop")


def test_build_engine_none_plan_raises_with_logger_text(tmp_path, monkeypatch):
    install_trt(monkeypatch, FakeTRT(build_ok=False))
    install_cuda(monkeypatch)
    out = tmp_path / "model.engine"
    with pytest.raises(ExportError, match="out of memory while building tactic"):
        build_engine(onnx_file(tmp_path), out, BuildOptions(), platform="desktop")
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_build_engine_parse_errors(tmp_path, monkeypatch):
    install_trt(monkeypatch, FakeTRT(parse_ok=False))
    install_cuda(monkeypatch)
    with pytest.raises(ExportError, match=r"could not parse model\.onnx: In node 3 \(Pad\).*; second error"):
        build_engine(onnx_file(tmp_path), tmp_path / "m.engine", BuildOptions(), platform="desktop")


def test_build_engine_weak_typing_and_portability_flags(tmp_path, monkeypatch):
    fake = install_trt(monkeypatch)
    install_cuda(monkeypatch)
    opts = BuildOptions(precision="fp16", weak_typing=True, version_compatible=True, hardware_compat="ampere+")
    e = build_engine(onnx_file(tmp_path), tmp_path / "m.engine", opts, platform="desktop",
                     input_specs=[("image", ["N", 3, 2, 2]), ("bbox_info", ["N", 3])])
    assert ("create_network", 0) in fake.calls
    assert fake.config.flags == ["FP16", "VERSION_COMPATIBLE"]
    assert fake.config.hardware_compatibility_level.name == "AMPERE_PLUS"
    assert e["builder_flags"] == ["FP16", "VERSION_COMPATIBLE"] and e["strongly_typed"] is False
    assert e["version_compatible"] is True and e["hardware_compat"] == "ampere+"


def test_build_engine_refusals_before_parsing(tmp_path, monkeypatch):
    fake = install_trt(monkeypatch, FakeTRT(version="11.4.0.106"))
    install_cuda(monkeypatch)
    with pytest.raises(ExportError, match="strongly typed networks only"):
        build_engine(onnx_file(tmp_path), tmp_path / "m.engine", BuildOptions(weak_typing=True), platform="desktop")
    with pytest.raises(ExportError, match="desktop GPU"):
        build_engine(onnx_file(tmp_path), tmp_path / "m.engine", BuildOptions(dla_core=0, precision="fp16"),
                     platform="desktop")
    assert not [c for c in fake.calls if c[0] == "parse_from_file"]
    with pytest.raises(ExportError, match="does not exist"):
        build_engine(tmp_path / "absent.onnx", tmp_path / "m.engine", BuildOptions())
    with pytest.raises(ExportError, match="not inputs of"):
        build_engine(onnx_file(tmp_path), tmp_path / "m.engine", BuildOptions(), platform="desktop",
                     input_specs=[("pixels", ["N", 3, 2, 2])])


def test_build_engine_dla_on_jetson(tmp_path, monkeypatch):
    fake = install_trt(monkeypatch, FakeTRT(num_dla=2))
    install_cuda(monkeypatch, FakeCudart(name=b"Orin", cc=(8, 7)))
    e = build_engine(onnx_file(tmp_path), tmp_path / "m.engine",
                     BuildOptions(precision="fp16", dla_core=1), platform="jetson")
    assert fake.config.default_device_type.name == "DLA" and fake.config.DLA_core == 1
    # TensorRT 10.x (the fake reports 10.3): precision builder flags, weakly typed network
    assert fake.config.flags == ["FP16", "GPU_FALLBACK"]
    assert ("create_network", 0) in fake.calls
    assert e["dla_core"] == 1 and e["gpu_fallback"] is True and e["platform"] == "jetson"
    assert e["strongly_typed"] is False and e["builder_flags"] == ["FP16", "GPU_FALLBACK"]


def test_build_engine_timing_cache_mismatch_starts_fresh(tmp_path, monkeypatch):
    fake = install_trt(monkeypatch, FakeTRT(cache_ok=False))
    install_cuda(monkeypatch)
    cache = tmp_path / "tc.bin"
    cache.write_bytes(b"FROM-ANOTHER-GPU")
    build_engine(onnx_file(tmp_path), tmp_path / "m.engine", BuildOptions(timing_cache=cache), platform="desktop")
    assert [c[1] for c in fake.calls if c[0] == "create_timing_cache"] == [b"FROM-ANOTHER-GPU", b""]
    assert cache.read_bytes() == b"CACHE|"


def test_build_engine_cancel_from_progress(tmp_path, monkeypatch):
    install_trt(monkeypatch)
    install_cuda(monkeypatch)

    def cb(ev):
        return ev.kind != "step"

    with pytest.raises(ExportError, match="cancelled"):
        build_engine(onnx_file(tmp_path), tmp_path / "m.engine", BuildOptions(), progress=cb, platform="desktop")


def test_trt_available(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    ok, reason = trt_available()
    assert not ok and "TensorRT is not installed" in reason
    install_trt(monkeypatch)
    install_cuda(monkeypatch)
    ok, reason = trt_available()
    assert ok and "10.3.0.30" in reason and "8.6" in reason


# ==== import hygiene and the smoke script ========================================================
def _stub_dir(tmp_path: Path) -> Path:
    """Modules named tensorrt / cuda that fail loudly if anything imports them."""
    d = tmp_path / "stubs"
    (d / "cuda").mkdir(parents=True, exist_ok=True)
    (d / "tensorrt.py").write_text("raise ImportError('stub: tensorrt imported')\n")
    (d / "cuda" / "__init__.py").write_text("raise ImportError('stub: cuda imported')\n")
    return d


def _env(tmp_path: Path) -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(_stub_dir(tmp_path)), str(ROOT / "src")])
    return env


def test_modules_import_without_tensorrt_or_cuda(tmp_path):
    code = (
        "import sys\n"
        "import hpsedge.runtime.trt.backend, hpsedge.runtime.trt.cuda, hpsedge.runtime.trt.compat\n"
        "import hpsedge.runtime.trt.builder, hpsedge.runtime.trt.api\n"
        "bad = [m for m in ('tensorrt', 'cuda', 'cuda.bindings', 'torch', 'onnx') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _load_smoke():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_smoke", ROOT / "benchmarks" / "gpu_smoke.py")
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    return smoke


def test_gpu_smoke_help(tmp_path):
    script = str(ROOT / "benchmarks" / "gpu_smoke.py")
    r = subprocess.run([sys.executable, script, "--help"], env=_env(tmp_path), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "usage" in r.stdout and "--model" in r.stdout and "--folder" in r.stdout and "--budget-s" in r.stdout
    r = subprocess.run([sys.executable, script, "--model", "poco-pare", "--batches", "1,x"], env=_env(tmp_path),
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--batches must be comma-separated integers" in r.stderr


@pytest.fixture(scope="module")
def smoke_folder(tmp_path_factory):
    """gpu_smoke's CPU part run for real: export --model poco-pare --tiny (seeded), backend="auto" on it, then
    the stop at the GPU gate (exit 2, the JSON saying so). Returns (folder, results)."""
    smoke = _load_smoke()
    tmp = tmp_path_factory.mktemp("smoke")
    out = tmp / "gs.json"
    smoke.gpu_present = lambda device: (False, "no CUDA GPU (hidden by the test)")
    rc = smoke.main(["--model", "poco-pare", "--tiny", "--out", str(tmp / "poco-pare"), "--json", str(out),
                     "--seed", "3"])
    return tmp / "poco-pare", rc, json.loads(out.read_text()), out.with_suffix(".md").read_text()


def test_gpu_smoke_runs_its_cpu_part_and_stops_at_the_gpu(smoke_folder):
    folder, rc, res, md = smoke_folder
    assert rc == 2  # EXIT_NO_GPU
    steps = res["steps"]
    assert steps["folder"]["status"] == "ok" and steps["folder"]["exported"] is True
    assert (folder / "manifest.json").is_file() and (folder / "model.onnx").is_file()
    pred = steps["predictor"]
    assert pred["status"] == "ok" and pred["backend"] == "ort" and pred["persons"] == 2
    assert pred["why"].startswith("the folder has no TensorRT engine")
    assert steps["gpu"] == {"status": "skipped", "reason": "no CUDA GPU (hidden by the test)"}
    assert not {"cuda", "torch", "tensorrt"} & set(steps) and res["failures"] == []
    assert "NOT RUN on a GPU" in md and "PASS" not in md


def test_gpu_smoke_torch_reference_holds_the_folders_weights(smoke_folder):
    """The PyTorch reference (same seed) computes what the exported graph computes: the check the GPU step makes
    on CUDA, made here on the CPU."""
    import torch

    folder, *_ = smoke_folder
    smoke = _load_smoke()
    args = smoke.parse_args(["--folder", str(folder), "--seed", "3"])
    manifest = load_manifest(folder)
    model = smoke.torch_reference(args, manifest)
    inputs = model.example_inputs(batch=3, seed=7)
    with torch.no_grad():
        got = dict(zip(model.spec.output_names, (t.numpy() for t in model(*inputs)), strict=True))
    ref = smoke.make_ort(manifest.artifact_path("onnx")).run(
        {n: t.numpy() for n, t in zip(model.spec.input_names, inputs, strict=True)})
    assert smoke.worst(smoke.compare(ref, got)) < smoke.TORCH_TOLERANCE
    # another seed gives other random weights: the agreement above is not trivial
    other = smoke.torch_reference(smoke.parse_args(["--folder", str(folder), "--seed", "4"]), manifest)
    with torch.no_grad():
        moved = dict(zip(model.spec.output_names, (t.numpy() for t in other(*inputs)), strict=True))
    assert smoke.worst(smoke.compare(ref, moved)) > 100 * smoke.TORCH_TOLERANCE


def test_gpu_smoke_cuda_step_round_trip_with_fake_driver(monkeypatch):
    smoke = _load_smoke()
    install_cuda(monkeypatch, FakeCudart(driver=12080, runtime=12090))
    report = smoke.Report()
    smoke.step_cuda(smoke.parse_args(["--folder", "x"]), report)
    c = report.steps["cuda"]
    assert c["status"] == "ok" and c["gpu"] == "NVIDIA GeForce RTX 3090" and c["compute_capability"] == "8.6"
    assert c["driver_cuda"] == "12.8" and c["cuda_python_cuda"] == "12.9"
    assert c["round_trip"]["bytes"] == smoke.ROUND_TRIP_BYTES


def test_gpu_smoke_round_trip_detects_a_corrupt_copy(monkeypatch):
    smoke = _load_smoke()

    class Corrupting(FakeCudart):
        def cudaMemcpyAsync(self, dst, src, count, kind, stream):
            res = super().cudaMemcpyAsync(dst, src, count, kind, stream)
            if int(kind) == 2:
                ctypes.memset(dst + 5, 0xFF ^ ctypes.c_ubyte.from_address(dst + 5).value, 1)
            return res

    cu = cudamod.CudaRuntime(0, cudart=Corrupting())
    with pytest.raises(AssertionError, match="1 of 4096 bytes differ"):
        smoke.cuda_round_trip(cu, 4096, seed=0)
    assert smoke.cuda_round_trip(cudamod.CudaRuntime(0, cudart=FakeCudart()), 4096, seed=0)["bytes"] == 4096


def test_gpu_smoke_cuda_step_without_cuda_python_or_driver(monkeypatch):
    smoke = _load_smoke()
    args = smoke.parse_args(["--folder", "x"])
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", None)
    monkeypatch.setitem(sys.modules, "cuda.cudart", None)
    report = smoke.Report()
    smoke.step_cuda(args, report)
    assert report.steps["cuda"]["status"] == "skipped" and "hpsedge[trt-cu12]" in report.steps["cuda"]["reason"]
    install_cuda(monkeypatch, FakeCudart(no_driver="raise"))
    smoke.step_cuda(args, report)
    assert report.steps["cuda"]["status"] == "failed" and "no NVIDIA driver" in report.steps["cuda"]["reason"]
    assert smoke.gpu_present(0)[0] in (True, False)  # never raises, whatever is installed


def test_gpu_smoke_torch_step_skips_without_cuda(smoke_folder):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: the step runs for real in benchmarks/gpu_smoke.py")
    folder, *_ = smoke_folder
    smoke = _load_smoke()
    report = smoke.Report()
    smoke.step_torch(smoke.parse_args(["--folder", str(folder)]), report, folder)
    assert report.steps["torch"] == {"status": "skipped", "reason": "torch sees no CUDA GPU"}


def _tiny_export_folder(folder: Path) -> None:
    """An export folder whose ONNX graph computes what the fake engine computes."""
    import onnx
    from onnx import TensorProto, helper

    f32 = TensorProto.FLOAT
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("Add", ["m", "bbox_info"], ["cam"]),
        helper.make_node("Slice", ["image", "starts", "ends", "axes"], ["s"]),
        helper.make_node("Flatten", ["s"], ["sf"], axis=1),
        helper.make_node("Mul", ["sf", "two"], ["betas"]),
    ]
    inits = [
        helper.make_tensor("starts", TensorProto.INT64, [3], [0, 0, 0]),
        helper.make_tensor("ends", TensorProto.INT64, [3], [2, 1, 1]),
        helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3]),
        helper.make_tensor("two", f32, [], [2.0]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("image", f32, ["N", 3, 2, 2]),
         helper.make_tensor_value_info("bbox_info", f32, ["N", 3])],
        [helper.make_tensor_value_info("cam", f32, ["N", 3]),
         helper.make_tensor_value_info("betas", f32, ["N", 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))
    manifest = {
        "schema": "hpsedge.manifest", "schema_version": 1,
        "model": {"name": "tiny", "family": "cliff"},
        "inputs": [{"name": "image", "shape": ["N", 3, 2, 2]}, {"name": "bbox_info", "shape": ["N", 3]}],
        "outputs": [{"name": "cam", "shape": ["N", 3]}, {"name": "betas", "shape": ["N", 2]}],
        "preprocessing": {"input_size": [2, 2]},
        "precision": "fp32", "max_batch": 8,
        "artifacts": {"onnx": {"file": "model.onnx", "precision": "fp32"}},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_gpu_smoke_tensorrt_step_with_fakes(tmp_path, monkeypatch):
    """The TensorRT step against the fake TensorRT/CUDA and real ONNX Runtime on a graph that computes what
    the fake engine computes."""
    folder = tmp_path / "export"
    _tiny_export_folder(folder)
    install_trt(monkeypatch)
    install_cuda(monkeypatch)
    smoke = _load_smoke()
    args = smoke.parse_args(["--folder", str(folder), "--iters", "2", "--warmup", "0", "--no-predictor"])
    report = smoke.Report()
    smoke.step_tensorrt(args, report, folder)
    t = report.steps["tensorrt"]
    assert t["status"] == "ok", t
    assert set(t["batches"]) == {"1", "4", "8"}  # batch 1, the profile's opt and max
    for b in t["batches"].values():
        assert b["trt_ms"] >= 0 and b["ort_cpu_ms"] >= 0
        for e in b["errors"].values():
            assert e["max_abs"] < 1e-5 and e["finite"]
    assert t["engine"]["file"] == "model.fp32.engine" and not (folder / "model.fp32.engine").exists()
    md = smoke.markdown({**report.to_dict(), "steps": {"gpu": {"status": "ok"}, **report.steps}})
    assert "PASS" in md and "| 8 |" in md
    # a disagreement beyond the precision's tolerance fails the step
    monkeypatch.setitem(smoke.TOLERANCE, "fp32", -1.0)
    smoke.step_tensorrt(args, report, folder)
    assert report.steps["tensorrt"]["status"] == "failed" and "differs from ONNX Runtime" in report.failures[0]
    # the fake TensorRT with a NULL builder: one failed step, not a traceback
    install_trt(monkeypatch, FakeTRT(null_factories=("Builder",)))
    smoke.step_tensorrt(args, report, folder)
    assert report.steps["tensorrt"]["reason"].startswith("TensorRT could not create a builder")


# ==== cuda-python facts: native handles, non-IntEnum errors ======================================
class PlainErr(enum.Enum):  # cuda-bindings' error enum is not assumed to be an IntEnum
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2


class Handle:
    """A cuda-python style handle object: ``int()`` works but is deprecated."""

    def __init__(self, addr):
        self.addr = addr

    def __int__(self):
        return self.addr


def test_check_with_plain_enum_errors():
    assert cudamod.check((PlainErr.cudaSuccess, 7), "f") == 7
    with pytest.raises(BackendError, match="cudaErrorMemoryAllocation"):
        cudamod.check((PlainErr.cudaErrorMemoryAllocation, None), "cudaMalloc")


def test_native_handle_prefers_get_cuda_native_handle(monkeypatch):
    import types

    monkeypatch.setitem(sys.modules, "cuda", None)  # no cuda-bindings: the int() fallback
    assert cudamod.native_handle(Handle(77)) == 77 and cudamod.native_handle(5) == 5
    utils = types.ModuleType("cuda.bindings.utils")
    seen = []
    utils.get_cuda_native_handle = lambda obj: seen.append(obj) or 4242
    pkg, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    pkg.bindings, bindings.utils = bindings, utils
    monkeypatch.setitem(sys.modules, "cuda", pkg)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.utils", utils)
    h = Handle(77)
    assert cudamod.native_handle(h) == 4242 and seen == [h]


def test_compat_refuses_engine_without_lean_runtime():
    with pytest.raises(BackendError, match="lean runtime"):
        check_engine_compat(entry(version_compatible=True, exclude_lean_runtime=True), "10.3.0.30", "8.6", "desktop")


# ==== trtexec.sh: the same plan as a stock trtexec command =======================================
def _trtexec(p, onnx="model.fp16.onnx", engine="model.fp16.engine"):
    from hpsedge.runtime.trt.builder import trtexec_args

    args = trtexec_args(p, onnx, engine)
    assert args[0] == "trtexec" and len(args) == len(set(args))
    return args[1:]


def test_trtexec_default_plan_flags():
    p = plan(precision="fp16", timing_cache="/x/timing.cache")
    assert _trtexec(p) == [
        "--onnx=model.fp16.onnx", "--saveEngine=model.fp16.engine",
        "--minShapes=image:1x3x224x224,bbox_info:1x3",
        "--optShapes=image:4x3x224x224,bbox_info:4x3",
        "--maxShapes=image:16x3x224x224,bbox_info:16x3",
        "--stronglyTyped", "--timingCacheFile=timing.cache", "--builderOptimizationLevel=3", "--skipInference",
    ]


def test_trtexec_every_plan_option_maps_to_its_flag():
    p = plan("10.3.0.30", "desktop", min_batch=2, opt_batch=3, max_batch=8, workspace_bytes=1536 << 20,
             opt_level=1, version_compatible=True, hardware_compat="ampere+")
    args = _trtexec(p)
    assert "--minShapes=image:2x3x224x224,bbox_info:2x3" in args
    assert "--optShapes=image:3x3x224x224,bbox_info:3x3" in args
    assert "--maxShapes=image:8x3x224x224,bbox_info:8x3" in args
    assert "--stronglyTyped" in args and "--versionCompatible" in args
    assert "--hardwareCompatibilityLevel=ampere+" in args
    assert "--memPoolSize=workspace:1536" in args and "--builderOptimizationLevel=1" in args
    assert not any(a.startswith("--timingCacheFile") for a in args)  # no cache in this plan
    assert not any(a in ("--fp16", "--int8", "--allowGPUFallback") or a.startswith("--useDLACore") for a in args)


def test_trtexec_weak_typing_and_dla_on_trt10():
    args = _trtexec(plan(has_dla=True, dla_core=1, precision="fp16"), "model.fp16.onnx", "model.fp16.engine")
    assert "--stronglyTyped" not in args and "--int8" not in args
    assert {"--fp16", "--allowGPUFallback", "--useDLACore=1"} <= set(args)
    assert "--onnx=model.fp16.onnx" in args and "--saveEngine=model.fp16.engine" in args
    args = _trtexec(plan(precision="int8", weak_typing=True), "model.int8.onnx", "model.int8.engine")
    assert {"--int8", "--fp16"} <= set(args) and "--useDLACore=1" not in args
    args = _trtexec(plan(precision="fp16", weak_typing=True))
    assert "--fp16" in args and "--int8" not in args and "--stronglyTyped" not in args


def test_trtexec_dla_on_11_4_1_is_strongly_typed():
    args = _trtexec(plan("11.4.1", has_dla=True, dla_core=0, precision="fp16"))
    assert "--stronglyTyped" in args and "--fp16" not in args
    assert "--useDLACore=0" in args and "--allowGPUFallback" in args


def test_trtexec_workspace_not_whole_mib_and_bad_names():
    from hpsedge.runtime.trt.builder import trtexec_args

    assert "--memPoolSize=workspace:1025K" in _trtexec(plan(workspace_bytes=(1 << 20) + 1))
    with pytest.raises(ExportError, match="cannot be written"):
        trtexec_args(plan(specs=[("im;rm -rf /", ["N", 3])]), "m.onnx", "m.engine")
    with pytest.raises(ExportError, match="no batch profile"):
        trtexec_args(plan(specs=None), "m.onnx", "m.engine")


def test_trtexec_script_is_valid_shell(tmp_path):
    """The script runs (with a stand-in trtexec that prints its argv) and passes exactly trtexec_args."""
    from hpsedge.runtime.trt.builder import trtexec_args, write_trtexec_script

    p = plan(has_dla=True, dla_core=0, precision="fp16", timing_cache="timing.cache")
    script = write_trtexec_script(tmp_path, p, "model.fp16.onnx", "model.fp16.engine")
    assert os.access(script, os.X_OK) and "--fp16/--int8 are TensorRT 10 options" in script.read_text()
    fake = tmp_path / "fake-trtexec"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    fake.chmod(0o755)
    res = subprocess.run(["sh", str(script)], capture_output=True, text=True, env={**os.environ, "TRTEXEC": str(fake)},
                         cwd="/", check=True)
    assert res.stdout.splitlines() == trtexec_args(p, "model.fp16.onnx", "model.fp16.engine")[1:]


# ==== static check: TensorRT 10 vs 11 tables ======================================================
def _one_op_graph(op, opset=17, n_inputs=1, **attrs):
    from onnx import TensorProto, helper

    node = helper.make_node(op, ["x"] * n_inputs, ["y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("op", ["Swish", "DFT", "Attention"])
def test_ops_added_after_10_1_fail_on_10_pass_on_11(op):
    from hpsedge.export.lint import check_trt_support

    model = _one_op_graph(op, opset=20)
    r10, r11 = check_trt_support(model, 10), check_trt_support(model, 11)
    assert not r10.ok and op in r10.errors[0]
    assert r11.ok, r11.errors


def test_ops_unsupported_by_both_and_opset_ranges():
    from hpsedge.export.lint import TRT_OPSET_RANGE, TRT_SUPPORTED_OPS, check_trt_support

    for op in ("MatMulInteger", "Col2Im", "Unique"):  # "N" in the 10.1 matrix, not added since
        assert not check_trt_support(_one_op_graph(op), 11).ok
    assert TRT_OPSET_RANGE == {10: (9, 20), 11: (9, 25)}
    assert TRT_SUPPORTED_OPS[10] < TRT_SUPPORTED_OPS[11] and len(TRT_SUPPORTED_OPS[10]) == 150
    relu21 = _one_op_graph("Relu", opset=21)
    assert not check_trt_support(relu21, 10).ok and check_trt_support(relu21, 11).ok
    r25 = check_trt_support(_one_op_graph("Relu", opset=25), 11)
    assert r25.ok and any("11.5" in f.message for f in r25.findings)
    assert not check_trt_support(_one_op_graph("Relu", opset=26), 11).ok
    assert "96e781103cfc" in check_trt_support(relu21, 10).to_markdown()


def test_on_device_rebuild_writes_engine_and_matching_trtexec(tmp_path, monkeypatch):
    """`export build --on-device` on a (fake) Jetson with DLA: the engine entry and trtexec.sh come from one plan."""
    from hpsedge.export.build import BuildConfig, rebuild_on_device

    folder = tmp_path / "export"
    _tiny_export_folder(folder)
    fake = install_trt(monkeypatch, FakeTRT(num_dla=2))
    install_cuda(monkeypatch, FakeCudart(name=b"Orin", cc=(8, 7)))
    res = rebuild_on_device(folder, BuildConfig(model="x", out=folder, precision="fp16", dla_core=1, max_batch=8))
    entry = json.loads((folder / "manifest.json").read_text())["artifacts"]["engine"]
    assert res.engine_built and entry["platform"] == "jetson" and entry["on_device"] is True
    # the folder is fp32 (its manifest decides): TensorRT 10 DLA = no precision flag + GPU fallback
    assert entry["builder_flags"] == fake.config.flags == ["GPU_FALLBACK"] and entry["dla_core"] == 1
    script = (folder / "trtexec.sh").read_text()
    for flag in ("--onnx=model.onnx", "--saveEngine=model.fp32.engine", "--useDLACore=1", "--allowGPUFallback",
                 "--maxShapes=image:8x3x2x2,bbox_info:8x3", "--timingCacheFile=timing.cache",
                 "Planned for: TensorRT 10.3.0.30; platform jetson"):
        assert flag in script, flag
    assert "--stronglyTyped" not in script


# ==== the fakes follow the real modules (runtime/trt/api.py, checked live by test_trt_contract.py) ===============
@pytest.mark.parametrize("version", ["10.3.0.30", "11.4.0.106"])
def test_fake_trt_matches_the_contract(version):
    import inspect

    m = FakeTRT(version).module()
    major = int(version.split(".")[0])
    for attr in api.TRT_MODULE_ATTRS:
        assert hasattr(m, attr), attr
    for dotted, params in api.TRT_CALLS.items():
        cls_name, member = dotted.split(".")
        cls = getattr(m, cls_name)
        if params is None:  # properties are plain attributes in the fakes
            continue
        sig = inspect.signature(getattr(cls, member))
        assert tuple(sig.parameters)[1:] == params, dotted
    for enum_name, members in api.TRT_ENUMS[major].items():
        obj = m
        for part in enum_name.split("."):
            obj = getattr(obj, part)
        assert {k: int(getattr(obj, k)) for k in members} == members
    for enum_name, members in api.TRT_REMOVED.get(major, {}).items():
        assert not any(hasattr(getattr(m, enum_name), k) for k in members)
    # the facts that matter most: 11.x shifts by 0, and has no precision builder flags
    assert int(m.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == (1 if major == 10 else 0)
    assert hasattr(m.BuilderFlag, "FP16") is (major == 10)


def test_fake_cudart_matches_the_contract():
    fake = FakeCudart()
    assert all(callable(getattr(fake, fn, None)) for fn in api.CUDA_CALLS)
    assert {k: int(v) for k, v in fake.cudaError_t.__members__.items()} == api.CUDA_ENUMS["cudaError_t"]


def test_build_engine_on_11_x_shifts_by_the_real_strongly_typed_value(tmp_path, monkeypatch):
    fake = install_trt(monkeypatch, FakeTRT("11.4.0.106"))
    install_cuda(monkeypatch)
    e = build_engine(onnx_file(tmp_path), tmp_path / "m.engine", BuildOptions(), platform="desktop")
    assert ("create_network", 1 << 0) in fake.calls and e["network_flags"] == ["STRONGLY_TYPED"]
    with pytest.raises(ExportError, match="strongly typed networks only"):
        build_engine(onnx_file(tmp_path), tmp_path / "m.engine", BuildOptions(precision="fp16", weak_typing=True),
                     platform="desktop")


# ==== defect: the real constructors raise TypeError (factory returned nullptr), never return None ==========
@pytest.mark.parametrize("which", ["Builder", "OnnxParser"])
def test_build_engine_null_factory_is_one_export_error(tmp_path, monkeypatch, which):
    install_trt(monkeypatch, FakeTRT(null_factories=(which,)))
    install_cuda(monkeypatch)
    what = {"Builder": "a builder", "OnnxParser": "an ONNX parser"}[which]
    with pytest.raises(ExportError, match=f"^TensorRT could not create {what}: .*factory function returned nullptr"):
        build_engine(onnx_file(tmp_path), tmp_path / "m.engine", BuildOptions(), platform="desktop")
    assert not (tmp_path / "m.engine").exists()


def test_backend_null_runtime_is_one_backend_error(tmp_path, monkeypatch):
    with pytest.raises(BackendError, match=r"^TensorRT could not create a runtime") as ei:
        make_backend(tmp_path, monkeypatch, trt=FakeTRT(null_factories=("Runtime",)))
    assert "nvidia-smi" in ei.value.hint


# ==== defect: cuda-python 12.6.2 raises RuntimeError from every call without a driver ======================
def _no_nvidia_smi(monkeypatch, tmp_path):
    empty = tmp_path / "empty-path"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))  # builder._gpu_info's nvidia-smi fallback finds nothing


def test_cuda_python_that_raises_gives_one_backend_error(tmp_path, monkeypatch):
    fake = install_cuda(monkeypatch, FakeCudart(no_driver="raise"))
    with pytest.raises(BackendError, match=r"^CUDA call cudaGetDeviceCount failed \(cuda-python: Failed to dlopen "
                                           r"libcuda\.so\.1\)") as ei:
        cudamod.device_info(0, cudart=fake)
    assert "no NVIDIA driver" in ei.value.hint
    with pytest.raises(BackendError, match="cudaSetDevice failed"):
        cudamod.CudaRuntime(0)
    _no_nvidia_smi(monkeypatch, tmp_path)
    install_trt(monkeypatch)
    ok, reason = trt_available()
    assert not ok and "cudaGetDeviceCount failed" in reason
    with pytest.raises(ExportError, match="cudaGetDeviceCount failed"):
        build_engine(onnx_file(tmp_path), tmp_path / "m.engine", BuildOptions(), platform="desktop")
    with pytest.raises(BackendError, match="cudaSetDevice failed"):
        make_backend(tmp_path, monkeypatch, cuda=FakeCudart(no_driver="raise"))


def test_cuda_python_without_driver_returning_codes(tmp_path, monkeypatch):
    fake = FakeCudart(no_driver="code")
    with pytest.raises(BackendError, match=r"cudaGetDeviceCount failed \(cudaErrorInsufficientDriver") as ei:
        cudamod.device_info(0, cudart=fake)
    assert "no NVIDIA driver" in ei.value.hint


# ==== defect: cuda-python 13.x on a CUDA 12 driver (JetPack 6): the error names the extra to install ========
def test_insufficient_driver_names_the_matching_extra():
    fake = FakeCudart(driver=12060, runtime=13000)
    fake.fail["cudaGetDeviceCount"] = CudaErr.cudaErrorInsufficientDriver
    with pytest.raises(BackendError, match="cudaErrorInsufficientDriver") as ei:
        cudamod.device_info(0, cudart=fake)
    assert "CUDA 13.0" in ei.value.hint and "CUDA 12.6" in ei.value.hint
    assert "pip install 'hpsedge[trt-cu12]'" in ei.value.hint
    # a driver older than a 12.x cuda-python's minor version: update the driver (same major)
    fake = FakeCudart(driver=12020, runtime=12090)
    fake.fail["cudaGetDeviceCount"] = CudaErr.cudaErrorInsufficientDriver
    with pytest.raises(BackendError) as ei:
        cudamod.device_info(0, cudart=fake)
    assert "supports CUDA 12.2" in ei.value.hint and "update the driver" in ei.value.hint


def test_pyproject_trt_extras_pick_one_cuda_major():
    import tomllib
    from packaging.requirements import Requirement

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def cuda_spec(extra):
        reqs = [Requirement(r) for r in extras[extra] if Requirement(r).name == "cuda-python"]
        assert len(reqs) == 1, extra
        return reqs[0].specifier

    desktop, cu12 = cuda_spec("trt"), cuda_spec("trt-cu12")
    # hpsedge[trt]: CUDA 13 drivers (r580+); hpsedge[trt-cu12]: JetPack 6 (CUDA 12.6) and CUDA 12 drivers
    assert desktop.contains("13.0.0") and desktop.contains("13.4.4")
    assert not desktop.contains("12.9.0") and not desktop.contains("14.0.0")
    assert cu12.contains("12.9.0") and cu12.contains("12.6.2.post1")
    assert not cu12.contains("13.0.0")
    assert not cu12.contains("12.6.2")  # yanked, and it raises instead of returning error codes
    assert not cu12.contains("12.6.0")  # no cuda.bindings before 12.6.x's split


def test_build_engine_dla_on_11_4_1_sets_adjust_for_dla(tmp_path, monkeypatch):
    fake = install_trt(monkeypatch, FakeTRT("11.4.1.5", num_dla=2))
    install_cuda(monkeypatch, FakeCudart(name=b"Orin", cc=(8, 7)))
    e = build_engine(onnx_file(tmp_path), tmp_path / "m.engine", BuildOptions(precision="fp16", dla_core=0),
                     platform="jetson")
    assert ("parser_set_flag", "ADJUST_FOR_DLA") in fake.calls
    names = [c[0] for c in fake.calls]
    assert names.index("parser_set_flag") < names.index("parse_from_file")
    assert fake.config.flags == ["GPU_FALLBACK"] and e["parser_flags"] == ["ADJUST_FOR_DLA"]
    with pytest.raises(ExportError, match="INT8 on DLA is not supported"):
        build_engine(onnx_file(tmp_path), tmp_path / "m.engine", BuildOptions(precision="int8", dla_core=0),
                     platform="jetson")


def test_triton_readme_names_the_version_compatible_flag(smoke_folder, tmp_path):
    """A version-compatible plan needs `--backend-config=tensorrt,version-compatible=true` on tritonserver."""
    import shutil

    from hpsedge.export.triton import export_triton

    folder, *_ = smoke_folder
    for vc in (True, False):
        copy = tmp_path / f"vc-{vc}"
        shutil.copytree(folder, copy)
        (copy / "model.fp32.engine").write_bytes(b"not a real plan")
        raw = json.loads((copy / "manifest.json").read_text())
        raw["artifacts"]["engine"] = {"file": "model.fp32.engine", "trt_version": "10.3.0", "compute_capability": "8.7",
                                      "gpu_name": "Orin", "platform": "jetson", "version_compatible": vc}
        (copy / "manifest.json").write_text(json.dumps(raw))
        text = export_triton(copy, tmp_path / f"repo-{vc}").readme.read_text()
        flag = "--backend-config=tensorrt,version-compatible=true"
        assert (f"tritonserver --model-repository=/models {flag}'" in text) is vc
        assert (f"tritonserver --model-repository=$PWD {flag}`" in text) is vc
        assert "tritonserver --model-repository" in text


# ==== DLA refusals through `export build --on-device` (issue #22: "DLA refusal untested") ====================
@pytest.mark.parametrize(
    ("version", "precision", "match"),
    [
        ("10.8.0.43", "fp16", r"10\.7 was the last 10\.x release with DLA"),
        ("11.5.0.1", "fp16", r"through TensorRT 11\.4\.1"),
        ("10.3.0.30", "int8", r"INT8 on DLA is not supported"),
        ("11.4.1.5", "int8", r"INT8 on DLA is not supported"),
    ],
)
def test_on_device_dla_refusals_leave_the_folder_untouched(tmp_path, monkeypatch, version, precision, match):
    from hpsedge.export.build import BuildConfig, rebuild_on_device

    folder = tmp_path / "export"
    _tiny_export_folder(folder)
    if precision != "fp32":  # the folder's manifest names its precision and the graph for it
        raw = json.loads((folder / "manifest.json").read_text())
        raw["precision"] = precision
        raw["artifacts"][f"onnx_{precision}"] = {"file": "model.onnx", "precision": precision}
        (folder / "manifest.json").write_text(json.dumps(raw))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    fake = install_trt(monkeypatch, FakeTRT(version, num_dla=2))
    install_cuda(monkeypatch, FakeCudart(name=b"Orin", cc=(8, 7)))
    with pytest.raises(ExportError, match=match) as ei:
        rebuild_on_device(folder, BuildConfig(model="x", out=folder, dla_core=0, max_batch=8))
    assert "\n" not in ei.value.message and "--dla" in ei.value.hint
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no engine, manifest as it was
    assert not [c for c in fake.calls if c[0] in ("parse_from_file", "build_serialized_network")]
