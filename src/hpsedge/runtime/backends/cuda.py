"""Moved to :mod:`hpsedge.runtime.trt.cuda` (TensorRT code lives in :mod:`hpsedge.runtime.trt`).

This path stays importable for existing code: it *is* that module (an alias in ``sys.modules``), so
attributes, monkeypatching and ``isinstance`` checks behave exactly as before.
"""

import sys

from hpsedge.runtime.trt import cuda as _impl

sys.modules[__name__] = _impl
