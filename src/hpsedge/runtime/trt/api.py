"""The TensorRT and cuda-python surface that :mod:`hpsedge.runtime.trt` uses, written down once.

Plain data, no imports. Two users:

* ``tests/test_trt_contract.py`` imports the *real* TensorRT Python bindings (``tensorrt-cu12-bindings``
  10.13.0.35, the JetPack 6 era, and 11.4.0.106) against stub ``libnvinfer``/``libnvonnxparser``/
  ``libnvinfer_plugin`` libraries and asserts every class, method signature, property, enum member and
  enum value listed here; it checks the cuda-python names against the real ``cuda-bindings`` wheels too.
* ``tests/test_tensorrt_logic.py`` builds its fake ``tensorrt`` and ``cuda.bindings.runtime`` modules from
  the same tables, so the fakes cannot drift from what the real modules expose.

When ``builder.py``, ``backend.py`` or ``cuda.py`` start using another TensorRT or CUDA name, add it here:
the contract test then checks it against the real bindings.
"""

from __future__ import annotations

#: TensorRT versions the contract test checks (PyPI ``tensorrt-cu12-bindings``): the 10.x line JetPack 6
#: era code is written for, and the current 11.x
CONTRACT_TRT_VERSIONS = ("10.13.0.35", "11.4.0.106")

#: module-level names used (``trt.nptype`` comes from the package's ``__init__.py``)
TRT_MODULE_ATTRS = ("__version__", "nptype", "Builder", "Runtime", "OnnxParser", "ILogger", "IProgressMonitor")

#: enum -> {member: value} per TensorRT major, only the members the code uses. The values matter where the
#: code shifts by them (``1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)``: 1 on 10.x, 0 on 11.x).
_SEVERITY = {"INTERNAL_ERROR": 0, "ERROR": 1, "WARNING": 2, "INFO": 3, "VERBOSE": 4}
_COMMON = {
    "MemoryPoolType": {"WORKSPACE": 0},
    "HardwareCompatibilityLevel": {"NONE": 0, "AMPERE_PLUS": 1},
    "DeviceType": {"GPU": 0, "DLA": 1},
    "TensorIOMode": {"NONE": 0, "INPUT": 1, "OUTPUT": 2},
    "DataType": {"FLOAT": 0, "HALF": 1},
    "ILogger.Severity": _SEVERITY,
}
TRT_ENUMS: dict[int, dict[str, dict[str, int]]] = {
    10: {
        **_COMMON,
        "NetworkDefinitionCreationFlag": {"STRONGLY_TYPED": 1},
        "BuilderFlag": {"FP16": 0, "INT8": 1, "GPU_FALLBACK": 3, "VERSION_COMPATIBLE": 13},
        "OnnxParserFlag": {},
    },
    11: {
        **_COMMON,
        "NetworkDefinitionCreationFlag": {"STRONGLY_TYPED": 0},
        "BuilderFlag": {"GPU_FALLBACK": 3, "VERSION_COMPATIBLE": 12},
        "OnnxParserFlag": {"ADJUST_FOR_DLA": 4},
    },
}

#: members that must be *absent* (the code relies on their absence: weak typing refused on 11.x)
TRT_REMOVED: dict[int, dict[str, tuple[str, ...]]] = {
    10: {"OnnxParserFlag": ("ADJUST_FOR_DLA",)},
    11: {"BuilderFlag": ("FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS"),
         "NetworkDefinitionCreationFlag": ("EXPLICIT_BATCH",)},
}

#: "Class.member" -> the parameter names after ``self`` of one overload the code calls, or None for a
#: property (read or assigned). Calls with keywords (``ignore_mismatch=``) depend on these names.
TRT_CALLS: dict[str, tuple[str, ...] | None] = {
    "ILogger.__init__": (),
    "ILogger.log": ("severity", "msg"),
    "IProgressMonitor.__init__": (),
    "IProgressMonitor.phase_start": ("phase_name", "parent_phase", "num_steps"),
    "IProgressMonitor.step_complete": ("phase_name", "step"),
    "IProgressMonitor.phase_finish": ("phase_name",),
    "Builder.__init__": ("logger",),
    "Builder.num_DLA_cores": None,
    "Builder.create_network": ("flags",),
    "Builder.create_builder_config": (),
    "Builder.create_optimization_profile": (),
    "Builder.build_serialized_network": ("network", "config"),
    "INetworkDefinition.num_inputs": None,
    "INetworkDefinition.get_input": ("index",),
    "ITensor.name": None,
    "ITensor.shape": None,
    "OnnxParser.__init__": ("network", "logger"),
    "OnnxParser.set_flag": ("flag",),
    "OnnxParser.parse_from_file": ("model",),
    "OnnxParser.num_errors": None,
    "OnnxParser.get_error": ("index",),
    "IBuilderConfig.set_memory_pool_limit": ("pool", "pool_size"),
    "IBuilderConfig.builder_optimization_level": None,
    "IBuilderConfig.set_flag": ("flag",),
    "IBuilderConfig.hardware_compatibility_level": None,
    "IBuilderConfig.default_device_type": None,
    "IBuilderConfig.DLA_core": None,
    "IBuilderConfig.add_optimization_profile": ("profile",),
    "IBuilderConfig.create_timing_cache": ("serialized_timing_cache",),
    "IBuilderConfig.set_timing_cache": ("cache", "ignore_mismatch"),
    "IBuilderConfig.progress_monitor": None,
    "IOptimizationProfile.set_shape": ("input", "min", "opt", "max"),
    "ITimingCache.serialize": (),
    "Runtime.__init__": ("logger",),
    "Runtime.engine_host_code_allowed": None,
    "Runtime.deserialize_cuda_engine": ("serialized_engine",),
    "ICudaEngine.num_io_tensors": None,
    "ICudaEngine.get_tensor_name": ("index",),
    "ICudaEngine.get_tensor_mode": ("name",),
    "ICudaEngine.get_tensor_dtype": ("name",),
    "ICudaEngine.get_tensor_shape": ("name",),
    "ICudaEngine.get_tensor_profile_shape": ("name", "profile_index"),
    "ICudaEngine.create_execution_context": ("strategy",),
    "IExecutionContext.set_input_shape": ("name", "shape"),
    "IExecutionContext.set_tensor_address": ("name", "memory"),
    "IExecutionContext.get_tensor_shape": ("name",),
    "IExecutionContext.execute_async_v3": ("stream_handle",),
}

#: what pybind11 raises when a TensorRT factory (``createInferBuilder`` ...) returns nullptr
TRT_NULL_FACTORY_ERROR = "factory function returned nullptr"

#: cuda-python runtime functions :mod:`hpsedge.runtime.trt.cuda` calls; each returns ``(err, *values)``
CUDA_CALLS = (
    "cudaSetDevice", "cudaGetDeviceCount", "cudaGetDeviceProperties", "cudaMalloc", "cudaMallocHost",
    "cudaFree", "cudaFreeHost", "cudaStreamCreate", "cudaStreamSynchronize", "cudaStreamDestroy",
    "cudaMemcpyAsync", "cudaDeviceSynchronize", "cudaGetErrorName", "cudaGetErrorString",
    "cudaDriverGetVersion", "cudaRuntimeGetVersion",
)
#: cuda-python enums used -> members (values as in CUDA's headers)
CUDA_ENUMS: dict[str, dict[str, int]] = {
    "cudaError_t": {"cudaSuccess": 0, "cudaErrorInvalidDevice": 101, "cudaErrorMemoryAllocation": 2,
                    "cudaErrorInsufficientDriver": 35, "cudaErrorNoDevice": 100, "cudaErrorDevicesUnavailable": 46},
    "cudaMemcpyKind": {"cudaMemcpyHostToDevice": 1, "cudaMemcpyDeviceToHost": 2},
}
#: fields of ``cudaDeviceProp`` read by :func:`hpsedge.runtime.trt.cuda.device_info` (``name`` is bytes)
CUDA_DEVICE_PROP_FIELDS = ("name", "major", "minor")
#: ``cuda.bindings.utils.get_cuda_native_handle`` (preferred to the deprecated ``int(handle)``) exists from this
#: cuda-bindings major on; older ones fall back to ``int()``
CUDA_NATIVE_HANDLE_FROM_MAJOR = 13
#: cuda-python versions the contract test checks: the last 12.x line (JetPack 6 / CUDA 12 drivers, the
#: ``trt-cu12`` extra) and 13.x (CUDA 13 drivers, the ``trt`` extra)
CONTRACT_CUDA_BINDINGS = ("12.9.0", "13.0.0")
#: the cuda-python release (the old ``[trt]`` floor, yanked on PyPI) whose calls *raise* RuntimeError without
#: a driver instead of returning an error code; the contract test checks that hpsedge still gives one error
CONTRACT_CUDA_PYTHON_RAISING = "12.6.2"
