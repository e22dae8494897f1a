"""Everything TensorRT, in one place (none of it imports torch; TensorRT and cuda-python load lazily).

* :mod:`~hpsedge.runtime.trt.compat`: versions, platforms, what each TensorRT release supports (DLA),
  and whether an engine from a manifest can run here; plain Python.
* :mod:`~hpsedge.runtime.trt.builder`: the build plan (pure), the engine build with the TensorRT API, and
  the equivalent stock ``trtexec`` command; the export side (``hpsedge.export.build``) and the on-device
  build (``hpsedge export build --on-device``) both use it, so it lives with the runtime.
* :mod:`~hpsedge.runtime.trt.cuda`: the cuda-python wrapper (device/pinned buffers, a stream).
* :mod:`~hpsedge.runtime.trt.backend`: the runtime backend that runs an engine.

The old paths (``hpsedge.runtime.trt.builder``, ``hpsedge.runtime.trt.compat``,
``hpsedge.runtime.trt.backend``, ``hpsedge.runtime.trt.cuda``) are aliases of these modules.

None of this has run against a real TensorRT or GPU yet: it is written against the documented
TensorRT 10.x/11.x and cuda-python APIs and unit-tested with fake modules (tests/test_tensorrt_logic.py).
"""
