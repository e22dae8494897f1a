"""hpsedge: confidence-aware 3D human pose-and-shape regressors on edge GPUs.

The import is light on purpose: ``import hpsedge`` pulls in nothing but the standard library.
Heavy parts live in sub-packages (``hpsedge.models`` and ``hpsedge.export`` need torch;
``hpsedge.runtime`` needs numpy alone).
"""

from hpsedge._version import __version__

__all__ = ["Model", "Results", "__version__"]


def __getattr__(name: str) -> object:
    # ``from hpsedge import Model`` (the one-call API, :mod:`hpsedge.runtime.api`), imported only when asked for
    if name in ("Model", "Results"):
        from hpsedge.runtime import api

        return getattr(api, name)
    raise AttributeError(f"module 'hpsedge' has no attribute {name!r}")
