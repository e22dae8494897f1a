"""The ``hpsedge`` model of a Triton repository (Python backend; written by ``hpsedge export triton``).

Its ``model.py`` imports :class:`TritonPythonModel` from here, so the Triton container needs
``pip install hpsedge`` (numpy only). Each request is one frame: ``image`` + ``boxes`` → the runtime's
preprocessing → one BLS request with the K crops to the network model named by the config parameter
``network_model`` (whose dynamic batcher merges crops of concurrent frames) → the runtime's
post-processing. Bad requests get an error response; the model stays up.

Not run inside a real ``tritonserver`` container here (no Docker, no GPU): the tests drive this class with a
stand-in ``triton_python_backend_utils`` whose BLS call runs the network on ONNX Runtime.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import HpsedgeError
from hpsedge.runtime.manifest import load_manifest
from hpsedge.serve.frames import FrameService
from hpsedge.serve.schema import MAX_PERSONS

log = logging.getLogger(__name__)


def _pb_utils() -> Any:
    import triton_python_backend_utils as pb_utils  # provided by Triton's Python backend

    return pb_utils


def _error(pb: Any, message: str, code: str) -> Any:
    """A one-line ``TritonError`` with a status code where this Python backend has codes (23.x+)."""
    value = getattr(pb.TritonError, code, None)
    text = " ".join(str(message).split())[:500]
    return pb.TritonError(text) if value is None else pb.TritonError(text, value)


class TritonPythonModel:
    """Triton Python-backend entry point (``initialize`` / ``execute`` / ``finalize``)."""

    def initialize(self, args: dict[str, str]) -> None:
        pb = _pb_utils()
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
        version_dir = Path(args["model_repository"]) / str(args["model_version"])
        manifest = load_manifest(version_dir / "manifest.json")
        smpl = None
        if params.get("smpl"):
            from hpsedge.runtime.smpl import SMPL

            name = Path(params["smpl"]).name  # a plain file in the version folder, nothing else
            smpl = SMPL.load(version_dir / name)
        self.network_model = params["network_model"]
        self.output_names = [s.name for s in manifest.outputs]

        # A BLS response keeps each output where the network model produced it: a tensorrt_plan (or
        # onnxruntime on a GPU) model answers with GPU tensors, on which as_numpy() fails. Ask for CPU
        # memory (python_backend's documented `preferred_memory`), and check that it was honoured.
        cpu = pb.PreferredMemory(pb.TRITONSERVER_MEMORY_CPU, 0)

        def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            request = pb.InferenceRequest(
                model_name=self.network_model,
                requested_output_names=self.output_names,
                inputs=[pb.Tensor(name, arr) for name, arr in feeds.items()],
                preferred_memory=cpu,
            )
            response = request.exec()
            if response.has_error():
                raise RuntimeError(f"network model {self.network_model}: {response.error().message()}")
            out = {}
            for n in self.output_names:
                tensor = pb.get_output_tensor_by_name(response, n)
                if tensor is None:
                    raise RuntimeError(f"network model {self.network_model} returned no output {n!r}")
                if not tensor.is_cpu():
                    raise RuntimeError(f"network model {self.network_model} returned {n!r} in GPU memory "
                                       "although CPU memory was asked for")
                out[n] = tensor.as_numpy()
            return out

        self.service = FrameService(
            manifest, run, smpl=smpl, max_persons=int(params.get("max_persons") or MAX_PERSONS),
            device=f"Triton model {self.network_model}", max_batch=int(params.get("network_max_batch") or 0) or None,
        )
        log.info("hpsedge model ready: %s → %s", manifest.model_name, self.network_model)

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = _pb_utils()
        responses = []
        for request in requests:
            try:
                image = pb.get_input_tensor_by_name(request, "image").as_numpy()
                boxes = pb.get_input_tensor_by_name(request, "boxes").as_numpy()
                out = self.service(image, boxes)
                responses.append(pb.InferenceResponse(output_tensors=[pb.Tensor(k, v) for k, v in out.items()]))
            except HpsedgeError as exc:  # the caller's mistake: its reason, an argument error (HTTP 400)
                responses.append(pb.InferenceResponse(output_tensors=[], error=_error(pb, exc.message, "INVALID_ARG")))
            except Exception as exc:  # keep serving; the client sees one line, no paths or code
                log.exception("hpsedge request failed")
                text = f"internal error ({type(exc).__name__}); see the server log"
                responses.append(pb.InferenceResponse(output_tensors=[], error=_error(pb, text, "INTERNAL")))
        return responses

    def finalize(self) -> None:
        self.service = None  # type: ignore[assignment]
