"""Precision names and batch limits: the leaf that the manifest reader (:mod:`hpsedge.runtime.manifest`) and
the folder owner (:mod:`hpsedge.runtime.folder`, which re-exports everything here) both build on."""

from __future__ import annotations

import enum
from typing import Any

from hpsedge.errors import HpsedgeError, InputError

#: the person batch a folder is exported for when nobody says otherwise (engine profile max, Triton's
#: max_batch_size, the Predictor's chunk size)
DEFAULT_MAX_BATCH = 16
#: the largest person batch any hpsedge command accepts
MAX_BATCH_LIMIT = 4096
#: what :meth:`BuildFolder.select` runs: ONNX Runtime or a TensorRT engine
BACKENDS = ("ort", "trt")


class Precision(str, enum.Enum):
    """The precision of a graph or engine: the one list of names every command uses.

    Being a ``str`` enum, ``Precision.FP16 == "fp16"`` and it writes to JSON as ``"fp16"``.
    """

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """``("fp32", "fp16", "int8")``."""
        return tuple(p.value for p in cls)

    @classmethod
    def parse(cls, text: Any, what: str = "--precision", error: type[HpsedgeError] = InputError) -> Precision:
        """``text`` (any case, surrounding space ignored) → a Precision, or one ``error:`` line (``error``,
        InputError by default) naming ``what`` and the choices. Call it where the user's text comes in, before
        any model loads."""
        if isinstance(text, cls):
            return text
        value = str(text).strip().lower() if isinstance(text, str) else None
        for p in cls:
            if value == p.value:
                return p
        shown = text if isinstance(text, str) else type(text).__name__
        raise error(f"{what}: unknown precision {str(shown)[:40]!r} (choose from {', '.join(cls.names())})",
                    hint="fp32 is the reference graph; fp16 and int8 need a folder built with that precision")

    @classmethod
    def parse_optional(cls, text: Any, what: str = "--precision") -> Precision | None:
        """:meth:`parse`, with None (or an empty string) meaning "the folder's own precision"."""
        if text is None or (isinstance(text, str) and not text.strip()):
            return None
        return cls.parse(text, what)

    @property
    def graph_key(self) -> str:
        """Manifest artifact key of this precision's ONNX graph (``"onnx"``, ``"onnx_fp16"``, ``"onnx_int8"``)."""
        return "onnx" if self is Precision.FP32 else f"onnx_{self.value}"

    @property
    def graph_name(self) -> str:
        """File name export gives this precision's graph (``model.onnx``, ``model.fp16.onnx``)."""
        return "model.onnx" if self is Precision.FP32 else f"model.{self.value}.onnx"

    @property
    def engine_name(self) -> str:
        """File name of the engine built from this precision's graph (``model.fp16.engine``)."""
        return f"model.{self.value}.engine"
