"""A thin client for the ``hpsedge`` model, on ``tritonclient`` (``pip install "hpsedge[client]"``).

It talks to ``hpsedge serve`` and to a Triton server running a repository from ``hpsedge export triton``
(same model, same schema)::

    from hpsedge.client import HpsedgeClient
    client = HpsedgeClient("localhost:8001")            # gRPC; "http://localhost:8000" for HTTP
    people = client.predict(rgb_uint8_image, [[x1, y1, x2, y2], ...])
    people[0]["confidence"], people[0]["transl"], people[0].get("joints2d")

Server-side errors (bad dtype or shape, NaN boxes, too many boxes) raise :class:`ServerError` with the
server's message; the connection stays usable.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from hpsedge.errors import HpsedgeError
from hpsedge.serve.schema import MODEL_NAME

#: numpy dtype → Triton wire type of the request tensors
_WIRE = {np.dtype(np.uint8): "UINT8", np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64",
         np.dtype(np.int64): "INT64", np.dtype(np.int32): "INT32", np.dtype(np.float16): "FP16"}


class ServerError(HpsedgeError):
    """The server refused or failed a request (the message is the server's, shortened to its last line)."""


_EXC_LINE = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception)): (.+)$")


def _short(message: str) -> str:
    """One line from a server error: Triton's own message, or the last ``SomeError: text`` of a traceback
    (PyTriton returns the Python traceback of the failed request)."""
    lines = [ln.strip() for ln in str(message).strip().splitlines() if ln.strip()]
    if not lines:
        return "unknown server error"
    if len(lines) == 1:
        return lines[0]
    found = [m.group(2) for ln in lines if (m := _EXC_LINE.match(ln))]
    return found[-1] if found else lines[0]


class HpsedgeClient:
    """Send frames + boxes to an ``hpsedge`` model over gRPC (``host:port``) or HTTP (``http://host:port``)."""

    def __init__(self, url: str = "localhost:8001", model: str = MODEL_NAME, timeout_s: float = 60.0) -> None:
        self.http = url.startswith("http://")
        self.model = model
        self.timeout_s = timeout_s
        try:
            if self.http:
                import tritonclient.http as tc
            else:
                import tritonclient.grpc as tc
        except ImportError as exc:
            raise HpsedgeError(f"tritonclient is not installed ({exc.name})",
                               hint='pip install "hpsedge[client]"') from None
        self._tc = tc
        self._client = tc.InferenceServerClient(url.removeprefix("http://"))
        self._outputs: list[str] | None = None

    def ready(self) -> bool:
        """Server live and the ``hpsedge`` model ready."""
        try:
            return bool(self._client.is_server_ready() and self._client.is_model_ready(self.model))
        except Exception:
            return False

    def output_names(self) -> list[str]:
        """The model's response tensors (from its metadata: they depend on the model and the SMPL file)."""
        if self._outputs is None:
            meta = self._client.get_model_metadata(self.model)
            outs = meta["outputs"] if isinstance(meta, dict) else meta.outputs
            self._outputs = [o["name"] if isinstance(o, dict) else o.name for o in outs]
        return self._outputs

    def infer(self, image: Any, boxes: Any) -> dict[str, np.ndarray]:
        """One raw request: ``image`` and ``boxes`` are sent as given (dtype included); returns the tensors."""
        tensors = []
        for name, value in (("image", image), ("boxes", boxes)):
            arr = np.ascontiguousarray(value)
            if arr.dtype not in _WIRE:
                raise HpsedgeError(f"{name} has dtype {arr.dtype}, which cannot be sent")
            t = self._tc.InferInput(name, list(arr.shape), _WIRE[arr.dtype])
            t.set_data_from_numpy(arr)
            tensors.append(t)
        names = self.output_names()
        wanted = [self._tc.InferRequestedOutput(n) for n in names]
        try:
            kw = {"client_timeout": self.timeout_s} if not self.http else {}
            res = self._client.infer(self.model, tensors, outputs=wanted, **kw)
        except self._tc.InferenceServerException as exc:  # type: ignore[attr-defined]
            raise ServerError(_short(exc.message() if callable(getattr(exc, "message", None)) else str(exc))) from None
        return {n: res.as_numpy(n) for n in names}

    def predict(self, image: Any, boxes: Any) -> list[dict[str, np.ndarray]]:
        """RGB uint8 ``[H, W, 3]`` + ``[K, 4]`` boxes (x1, y1, x2, y2) → one dict of arrays per person."""
        img = np.asarray(image)
        if img.dtype != np.uint8:
            raise HpsedgeError(f"image must be uint8 H×W×3, got {img.dtype}")
        arr = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if arr.shape[0] == 0:
            return []  # nothing to send (and servers refuse empty tensors)
        out = self.infer(img, arr)
        k = next(iter(out.values())).shape[0] if out else 0
        return [{n: v[i] for n, v in out.items()} for i in range(k)]

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HpsedgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
