"""The thin runtime: numpy plus the backend the user picks (imported lazily).

This package must never import torch, onnx or smplx (``tests/test_runtime_imports.py`` guards it).
"""

from hpsedge.runtime.errors import HpsedgeError

__all__ = ["HpsedgeError"]
