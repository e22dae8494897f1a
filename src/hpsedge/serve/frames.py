"""One frame's request → response, with the network running elsewhere (a Triton model).

:class:`FrameService` is what both serving paths run: the Python-backend model of the Triton repository
(the network is called by BLS) and ``hpsedge serve`` (the network is a PyTriton model called over gRPC).
It is the runtime's own :class:`~hpsedge.runtime.predictor.Predictor` with a backend that forwards the
crops, so pre- and post-processing are the runtime's, not a copy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hpsedge.runtime.backends.base import Backend
from hpsedge.runtime.manifest import Manifest
from hpsedge.runtime.predictor import Predictor
from hpsedge.serve.schema import MAX_PERSONS, MAX_SIDE, check_request, output_specs, results_to_arrays

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class RemoteBackend(Backend):
    """A :class:`Backend` whose ``run`` is a function (a BLS call, a gRPC request)."""

    name = "triton"

    def __init__(self, manifest: Manifest, run: RunFn, device: str, max_batch: int | None) -> None:
        self._run = run
        self.device = device
        self.input_names = [s.name for s in manifest.inputs]
        self.output_names = [s.name for s in manifest.outputs]
        self.max_batch = max_batch

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._run({n: np.ascontiguousarray(feeds[n], dtype=np.float32) for n in self.input_names})


class FrameService:
    """``image`` + ``boxes`` → the ``hpsedge`` model's response tensors (see :mod:`hpsedge.serve.schema`)."""

    def __init__(
        self, manifest: Manifest, run: RunFn, smpl: Any | None = None, max_persons: int = MAX_PERSONS,
        device: str = "triton", max_side: int = MAX_SIDE, max_batch: int | None = None,
    ) -> None:
        # the network model's largest batch (a TensorRT plan's profile may differ from the manifest's max_batch)
        backend = RemoteBackend(manifest, run, device, max_batch or manifest.max_batch)
        self.predictor = Predictor(manifest, backend, smpl)
        self.specs = output_specs(manifest, smpl is not None)
        self.max_persons = int(max_persons)
        self.max_side = int(max_side)

    def __call__(self, image: Any, boxes: Any) -> dict[str, np.ndarray]:
        image, boxes = check_request(image, boxes, self.max_persons, self.max_side)
        results = self.predictor.predict(image, boxes)
        return results_to_arrays(results, self.specs)
