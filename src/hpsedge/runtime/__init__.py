"""The thin runtime: numpy plus the backend the user picks (imported lazily).

    from hpsedge.runtime import Predictor
    predictor = Predictor.load("build/poco-cliff", smpl="SMPL_NEUTRAL.npz")
    people = predictor.predict(rgb_image, boxes_xyxy)

This package never imports torch, onnx or smplx (``tests/test_runtime_imports.py`` guards it); ONNX Runtime
or TensorRT (+ cuda-python) are imported only when a Predictor is loaded with that backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpsedge.errors import HpsedgeError

if TYPE_CHECKING:
    from hpsedge.runtime.predictor import PersonResult, Predictor
    from hpsedge.runtime.smpl import SMPL

__all__ = ["SMPL", "HpsedgeError", "PersonResult", "Predictor"]


def __getattr__(name: str) -> Any:
    # lazy, so that `import hpsedge.runtime` costs nothing until the runtime is used
    if name in ("Predictor", "PersonResult"):
        from hpsedge.runtime import predictor

        return getattr(predictor, name)
    if name == "SMPL":
        from hpsedge.runtime.smpl import SMPL

        return SMPL
    raise AttributeError(f"module 'hpsedge.runtime' has no attribute {name!r}")
