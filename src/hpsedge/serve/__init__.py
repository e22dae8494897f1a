"""Serving on NVIDIA Triton Inference Server.

* :mod:`hpsedge.serve.schema`: the request/response schema of the ``hpsedge`` model (shared by the model
  repository of ``hpsedge export triton`` and by ``hpsedge serve``, so one client talks to both);
* :mod:`hpsedge.serve.triton_python`: the Python-backend model of the repository (BLS to the network model);
* :mod:`hpsedge.serve.server`: ``hpsedge serve`` on PyTriton (extra ``serve``).

Importing this package imports numpy only; Triton, PyTriton and tritonclient are imported where used.
"""
