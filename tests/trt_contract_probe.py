"""Run inside a subprocess by tests/test_trt_contract.py, with the real TensorRT bindings importable as
``tensorrt_bindings`` (stub libnvinfer & co. on LD_LIBRARY_PATH), or the real cuda-bindings on sys.path.

Prints one JSON object: ``{"problems": [...], "checked": N, ...}``. Every entry of
:mod:`hpsedge.runtime.trt.api` is checked against the live module, and the hpsedge glue that touches the
module (logger, progress monitor, constructors, build planning) is exercised against it.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

_SIG = re.compile(r"^(?:\d+\. )?(\w+)\(self(?:: [^,)]+)?(.*)\) ->")


def overloads(func: Any, name: str) -> list[tuple[str, ...]]:
    """Parameter names after ``self`` of each pybind11 overload, read from the docstring signatures."""
    sigs = []
    for line in (func.__doc__ or "").splitlines():
        m = _SIG.match(line.strip())
        if not m or m.group(1) != name:
            continue
        rest = m.group(2).lstrip(", ").strip()
        params = []
        depth = 0
        cur = ""
        for ch in rest:  # split on top-level commas only (types like list[Dims], defaults like <X: 0>)
            depth += ch in "[(<"
            depth -= ch in "])>"
            if ch == "," and depth == 0:
                params.append(cur)
                cur = ""
            else:
                cur += ch
        if cur.strip():
            params.append(cur)
        sigs.append(tuple(p.split(":")[0].strip() for p in params))
    return sigs


def resolve(root: Any, dotted: str) -> Any:
    obj = root
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def check_trt() -> dict[str, Any]:
    import numpy as np
    import tensorrt_bindings as trt

    sys.modules["tensorrt"] = trt  # hpsedge imports `tensorrt`; the bindings wheel installs `tensorrt_bindings`
    from hpsedge.errors import BackendError, ExportError
    from hpsedge.runtime.trt import api
    from hpsedge.runtime.trt.backend import create_trt_object, import_tensorrt, make_logger
    from hpsedge.runtime.trt.builder import BuildOptions, make_progress_monitor, plan_build
    from hpsedge.runtime.trt.compat import parse_trt_version

    problems: list[str] = []
    checked = 0
    major = parse_trt_version(trt.__version__)[0]

    for attr in api.TRT_MODULE_ATTRS:
        checked += 1
        if not hasattr(trt, attr):
            problems.append(f"module attribute {attr} missing")
    for enum_name, members in api.TRT_ENUMS[major].items():
        try:
            enum = resolve(trt, enum_name)
        except AttributeError:
            problems.append(f"enum {enum_name} missing")
            continue
        for member, value in members.items():
            checked += 1
            got = getattr(enum, member, None)
            if got is None:
                problems.append(f"{enum_name}.{member} missing")
            elif int(got) != value:
                problems.append(f"{enum_name}.{member} is {int(got)}, api.py says {value}")
    for enum_name, members in api.TRT_REMOVED.get(major, {}).items():
        enum = resolve(trt, enum_name)
        for member in members:
            checked += 1
            if hasattr(enum, member):
                problems.append(f"{enum_name}.{member} exists, api.py says it is gone in {major}.x")
    for dotted, params in api.TRT_CALLS.items():
        checked += 1
        cls_name, member = dotted.split(".")
        cls = getattr(trt, cls_name, None)
        if cls is None:
            problems.append(f"class {cls_name} missing")
            continue
        attr = cls.__dict__.get(member) if member in cls.__dict__ else getattr(cls, member, None)
        if attr is None:
            problems.append(f"{dotted} missing")
        elif params is None:
            if not isinstance(attr, property):
                problems.append(f"{dotted} is not a property ({type(attr).__name__})")
        else:
            sigs = overloads(attr, member)
            if tuple(params) not in sigs:
                problems.append(f"{dotted}: no overload takes {params}; the bindings have {sigs}")

    # ---- the glue, live -----------------------------------------------------------------------
    checked += 1
    if import_tensorrt(BackendError) is not trt:
        problems.append("import_tensorrt did not return the bindings")
    for dt, want in (("FLOAT", np.float32), ("HALF", np.float16)):
        checked += 1
        if np.dtype(trt.nptype(getattr(trt.DataType, dt))) != np.dtype(want):
            problems.append(f"nptype(DataType.{dt}) is not {want}")
    logger = make_logger(trt)
    logger.log(trt.ILogger.Severity.ERROR, "probe error")
    logger.log(trt.ILogger.Severity.INFO, "probe info")
    checked += 1
    if logger.errors() != ["probe error"]:
        problems.append(f"make_logger on the real ILogger kept {logger.messages}")
    events = []
    monitor = make_progress_monitor(trt, events.append)
    checked += 1
    if not isinstance(monitor, trt.IProgressMonitor):
        problems.append("make_progress_monitor did not subclass trt.IProgressMonitor")
    monitor.phase_start("build", None, 2)
    monitor.step_complete("build", 0)
    monitor.phase_finish("build")
    checked += 1
    if [e.kind for e in events] != ["start", "step", "finish"]:
        problems.append(f"progress monitor events {events}")

    # the real constructors raise TypeError when the factory returns nullptr (stub libnvinfer returns NULL)
    raised = {}
    for what, factory, args, err in (("a builder", trt.Builder, (logger,), ExportError),
                                     ("a runtime", trt.Runtime, (logger,), BackendError)):
        checked += 1
        try:
            factory(*args)
        except TypeError as exc:
            raised[what] = str(exc)
            if api.TRT_NULL_FACTORY_ERROR not in str(exc):
                problems.append(f"{what}: TypeError without '{api.TRT_NULL_FACTORY_ERROR}': {exc}")
        else:
            problems.append(f"{what}: the constructor did not raise with a NULL factory")
        try:
            create_trt_object(factory, *args, logger=logger, what=what, error_cls=err)
        except err as exc:
            if f"could not create {what}" not in exc.message:
                problems.append(f"create_trt_object message: {exc.message}")
        except TypeError as exc:
            problems.append(f"create_trt_object let TypeError escape: {exc}")

    # build_engine and TensorRTBackend against the real bindings: one hpsedge error, never a TypeError
    import tempfile
    import types
    from pathlib import Path

    import hpsedge.runtime.trt.builder as builder_mod
    from hpsedge.runtime.trt.backend import TensorRTBackend

    builder_mod._gpu_info = lambda device=0: ("NVIDIA Probe GPU", "8.6")  # no GPU here
    ok = (0,)
    fake_rt = types.SimpleNamespace(
        cudaSetDevice=lambda d: ok, cudaGetDeviceCount=lambda: (0, 1),
        cudaGetDeviceProperties=lambda d: (0, types.SimpleNamespace(name=b"NVIDIA Probe GPU", major=8, minor=6)))
    sys.modules["cuda.bindings.runtime"] = fake_rt  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, plan_path = Path(tmp) / "m.onnx", Path(tmp) / "m.engine"
        onnx_path.write_bytes(b"not parsed: the builder fails first")
        plan_path.write_bytes(b"not deserialized: the runtime fails first")
        for name, call, err in (
            ("build_engine", lambda: builder_mod.build_engine(onnx_path, plan_path, BuildOptions(),
                                                              platform="desktop"), ExportError),
            ("TensorRTBackend", lambda: TensorRTBackend(plan_path, None, 0, platform="desktop"), BackendError),
        ):
            checked += 1
            try:
                call()
            except err as exc:
                raised[name] = exc.message
                if "\n" in exc.message or "could not create" not in exc.message:
                    problems.append(f"{name}: unexpected error text {exc.message!r}")
            except Exception as exc:  # the defect: TypeError escaping as a traceback
                problems.append(f"{name}: {type(exc).__name__} escaped: {exc}")
            else:
                problems.append(f"{name}: no error with NULL TensorRT factories")

    # every flag a build plan can name exists in this TensorRT (plans made for this major)
    version = trt.__version__ if major == 10 else "11.4.1"  # 11.4.0 has no Jetson DLA
    plans = [BuildOptions(), BuildOptions(version_compatible=True)]
    plans.append(BuildOptions(precision="fp16", dla_core=0))
    desktop = [BuildOptions(hardware_compat="ampere+")]
    if major == 10:
        plans += [BuildOptions(precision="fp16", weak_typing=True), BuildOptions(precision="int8", weak_typing=True)]
    dla_version = "10.7.0" if major == 10 else version
    for opts in plans + desktop:
        plat = "desktop" if opts in desktop else "jetson"
        v = dla_version if opts.dla_core is not None else version
        p = plan_build(opts, v, plat, True, [("image", ["N", 3, 8, 8])])
        for enum_name, names in (("NetworkDefinitionCreationFlag", p.network_flags), ("BuilderFlag", p.builder_flags),
                                 ("OnnxParserFlag", p.parser_flags),
                                 ("HardwareCompatibilityLevel", [p.hardware_compat_level] if p.hardware_compat_level
                                  else [])):
            for name in names:
                checked += 1
                if not hasattr(getattr(trt, enum_name), name):
                    problems.append(f"plan for {opts} names {enum_name}.{name}, which TensorRT {trt.__version__} lacks")
                if name not in api.TRT_ENUMS[major][enum_name]:
                    problems.append(f"plan names {enum_name}.{name}, which api.TRT_ENUMS[{major}] does not list")
    return {"problems": problems, "checked": checked, "version": trt.__version__, "raised": raised}


def check_cuda() -> dict[str, Any]:
    import importlib

    from hpsedge.errors import BackendError
    from hpsedge.runtime.trt import api
    from hpsedge.runtime.trt import cuda as cudamod

    rt = importlib.import_module("cuda.bindings.runtime")
    problems: list[str] = []
    checked = 0
    for fn in api.CUDA_CALLS:
        checked += 1
        if not callable(getattr(rt, fn, None)):
            problems.append(f"cuda.bindings.runtime.{fn} missing")
    for enum_name, members in api.CUDA_ENUMS.items():
        enum = getattr(rt, enum_name)
        for member, value in members.items():
            checked += 1
            got = getattr(enum, member, None)
            if got is None or int(got) != value:
                problems.append(f"{enum_name}.{member} is {got!r}, api.py says {value}")
    prop = rt.cudaDeviceProp()
    for field in api.CUDA_DEVICE_PROP_FIELDS:
        checked += 1
        if not hasattr(prop, field):
            problems.append(f"cudaDeviceProp has no {field}")
    checked += 1
    if not isinstance(prop.name, (bytes, bytearray)):
        problems.append(f"cudaDeviceProp.name is {type(prop.name).__name__}, the code decodes bytes")
    major = int(rt.cudaRuntimeGetVersion()[1]) // 1000
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        get_cuda_native_handle = None
    checked += 1
    if (get_cuda_native_handle is not None) != (major >= api.CUDA_NATIVE_HANDLE_FROM_MAJOR):
        problems.append(f"get_cuda_native_handle present: {get_cuda_native_handle is not None} on {major}.x")
    stream = rt.cudaStream_t(4242)
    checked += 1
    if cudamod.native_handle(stream) != 4242:
        problems.append("native_handle(cudaStream_t(4242)) is not 4242")
    driver, runtime = cudamod.driver_versions(rt)
    result: dict[str, Any] = {"driver": driver, "runtime": runtime}
    if not driver:  # no NVIDIA driver here (CI): every call must come back as one BackendError with a hint
        try:
            cudamod.device_info(0, cudart=rt)
        except BackendError as exc:
            result["error"], result["hint"] = exc.message, exc.hint
        else:
            problems.append("device_info succeeded without a driver")
    return {"problems": problems, "checked": checked, **result}


if __name__ == "__main__":
    out = check_trt() if sys.argv[1] == "trt" else check_cuda()
    print(json.dumps(out))
