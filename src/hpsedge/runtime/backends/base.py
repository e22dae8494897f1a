"""The small interface every runtime backend implements (ONNX Runtime, TensorRT).

A backend takes named float32 numpy arrays for the graph inputs (batch first) and returns named numpy
arrays for the graph outputs. It knows nothing about images, boxes or SMPL: that is the Predictor's job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Backend(ABC):
    """A loaded graph that can run a batch. Subclasses set the attributes in ``__init__``."""

    #: short name used in logs and manifests ("ort", "trt")
    name: str = "?"
    #: what actually runs it, e.g. "CPUExecutionProvider" or "TensorRT 10.3 on Orin (sm_87)"
    device: str = "?"
    input_names: list[str]
    output_names: list[str]
    #: the largest person batch one call accepts (None: unbounded); the Predictor splits above it
    max_batch: int | None = None

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch. ``feeds`` holds every input in ``input_names``; returns every output."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release device memory and sessions (optional)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} on {self.device}>"
