"""Everything TensorRT, in one place (none of it imports torch; TensorRT and cuda-python load lazily).

* :mod:`~hpsedge.runtime.trt.compat`: versions, platforms, what each TensorRT release supports (DLA),
  and whether an engine from a manifest can run here; plain Python.
* :mod:`~hpsedge.runtime.trt.builder`: the build plan (pure), the engine build with the TensorRT API, and
  the equivalent stock ``trtexec`` command; the export side (``hpsedge.export.build``) and the on-device
  build (``hpsedge export build --on-device``) both use it, so it lives with the runtime.
* :mod:`~hpsedge.runtime.trt.cuda`: the cuda-python wrapper (device/pinned buffers, a stream).
* :mod:`~hpsedge.runtime.trt.backend`: the runtime backend that runs an engine.

* :mod:`~hpsedge.runtime.trt.api`: the TensorRT and cuda-python names all of the above use, as plain data;
  ``tests/test_trt_contract.py`` checks it against the real bindings wheels (TensorRT 10.13 and 11.4 with stub
  libraries, cuda-bindings 12.9 and 13.0), and the fakes in ``tests/test_tensorrt_logic.py`` are built from it.

None of this has run against a real TensorRT engine or a GPU yet: the API surface is checked against the real
Python bindings (imported without TensorRT's libraries) and the logic against fakes built from that surface.
"""
