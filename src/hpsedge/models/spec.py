"""What a model is to hpsedge: :class:`ModelSpec` (and :class:`TensorDecl`), and the table that
:func:`register_model` fills.

Torch-free (standard library only). The registrations live in :mod:`hpsedge.models.specs`, which builds on
this module; :mod:`hpsedge.models.registry` imports both and answers look-ups, so no module imports one that
imports it back.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hpsedge.errors import HpsedgeError

DEFAULT_MODEL = "poco-cliff"

#: FP16 keeps these op types in FP32 everywhere: softmax and normalisation reductions
FP16_KEEP_OPS: tuple[str, ...] = (
    "op:Softmax", "op:LogSoftmax", "op:ReduceMean", "op:ReduceSum", "op:ReduceSumSquare", "op:ReduceL2",
    "op:LpNormalization", "op:LayerNormalization", "op:InstanceNormalization", "op:Pow", "op:Sqrt", "op:Exp",
)  # fmt: skip
#: what a model without its own lists gets (a graph of an unregistered family included)
GENERIC_FP16_KEEP: tuple[str, ...] = ("@output-tail", *FP16_KEEP_OPS)
GENERIC_INT8_EXCLUDE: tuple[str, ...] = ("@output-tail",)


@dataclass(frozen=True)
class TensorDecl:
    """One graph tensor: ``shape`` leaves out the leading person axis ``N`` (the only dynamic one).

    ``rule``, for an extra input: how the runtime makes it from the image and the person boxes, one of
    :data:`hpsedge.runtime.preprocess.INPUT_RULES` (``"cliff_bbox_info"``, ``"image_hw"``, ...); it goes to the
    manifest's ``preprocessing.extra_inputs``, so a new family's inputs need no runtime code."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    rule: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": ["N", *self.shape], "dtype": self.dtype}


#: the graph contract every regressor shares
POSE_OUTPUTS: tuple[TensorDecl, ...] = (
    TensorDecl("pose", (24, 3, 3)),
    TensorDecl("betas", (10,)),
    TensorDecl("cam", (3,)),
)


@dataclass(frozen=True)
class ModelSpec:
    """Everything hpsedge needs to know about one named model (see the module docstring)."""

    name: str
    family: str  # a label for people and manifests; no code branches on it
    description: str
    network: str  # "module:Class" of the PyTorch network, imported by build()
    backbone: str = ""
    input_size: tuple[int, int] = (224, 224)  # (H, W) of the graph's ``image``
    extra_inputs: tuple[TensorDecl, ...] = ()
    outputs: tuple[TensorDecl, ...] = POSE_OUTPUTS
    #: outputs a user may add at export time; ``extra_outputs`` holds the chosen ones (in that order)
    optional_outputs: tuple[TensorDecl, ...] = ()
    extra_outputs: tuple[str, ...] = ()
    preprocess: Mapping[str, Any] = field(default_factory=dict, compare=False)
    postprocess: Mapping[str, Any] = field(default_factory=dict, compare=False)
    #: architecture options read by the network class (backbone, head, POCO's uncertainty head, ...)
    arch: Mapping[str, Any] = field(default_factory=dict, compare=False)
    official_checkpoint: str | None = None  # the file name the official release uses, for messages
    checkpoint_reader: str = "torch"  # "torch" (weights_only) | "inert" (Lightning .ckpt, inert unpickler)
    drop_prefixes: tuple[str, ...] = ()  # official state-dict key prefixes dropped on purpose
    drop_keys: tuple[str, ...] = ()
    #: key prefixes that come from a second file, given with the CLI option ``aux_option``
    aux_prefixes: tuple[str, ...] = ()
    aux_option: str | None = None
    #: golden key lists in tests/data/keys: (file, prefix our keys carry for that file's keys, JSON entry)
    golden_keys: tuple[tuple[str, str, str], ...] = ()
    fp16_keep: tuple[str, ...] = GENERIC_FP16_KEEP
    int8_exclude: tuple[str, ...] = GENERIC_INT8_EXCLUDE
    tolerance: float = 1e-3  # ONNX Runtime vs PyTorch, relative (export verification)
    params: int | None = None  # full-size parameter count of the network (static; a test checks it)

    # ---- graph contract ---------------------------------------------------------------------------
    @property
    def has_sigma(self) -> bool:
        return any(o.name == "sigma" for o in self.outputs)

    @property
    def sigma_score(self) -> str | None:
        return self.postprocess.get("sigma_score")

    @property
    def uncertainty(self) -> Any:
        return self.arch.get("uncertainty")

    @property
    def input_names(self) -> list[str]:
        return ["image", *(t.name for t in self.extra_inputs)]

    def _chosen_outputs(self) -> list[TensorDecl]:
        optional = {t.name: t for t in self.optional_outputs}
        unknown = [n for n in self.extra_outputs if n not in optional]
        if unknown:
            raise HpsedgeError(f"{self.name} has no optional output {unknown[0]!r}")
        return [*self.outputs, *(optional[n] for n in self.extra_outputs)]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self._chosen_outputs()]

    def input_specs(self) -> list[dict[str, Any]]:
        h, w = self.input_size
        return [TensorDecl("image", (3, h, w)).to_dict(), *(t.to_dict() for t in self.extra_inputs)]

    def output_specs(self) -> list[dict[str, Any]]:
        return [t.to_dict() for t in self._chosen_outputs()]

    def with_outputs(self, *names: str) -> ModelSpec:
        """This spec with optional outputs ``names`` added to the graph (unknown names: one-line error)."""
        spec = dataclasses.replace(self, extra_outputs=tuple(names))
        spec._chosen_outputs()
        return spec

    # ---- manifest blocks --------------------------------------------------------------------------
    def preprocessing(self) -> dict[str, Any]:
        """The manifest's ``preprocessing`` block (what :mod:`hpsedge.runtime.preprocess` reads)."""
        block = {"input_size": list(self.input_size)}
        block.update(_plain(self.preprocess))
        block.setdefault("bbox_info", any(t.name == "bbox_info" for t in self.extra_inputs))
        ruled = {t.name: t.rule for t in self.extra_inputs if t.rule is not None and t.name != "bbox_info"}
        if ruled:  # CLIFF's bbox_info keeps its schema-1 flag; other extra inputs name their rule
            block["extra_inputs"] = ruled
        return block

    def postprocessing(self) -> dict[str, Any]:
        """The manifest's ``postprocessing`` block (camera, confidence and σ rules, joint sets)."""
        return _plain(self.postprocess)

    # ---- network ----------------------------------------------------------------------------------
    def network_class(self) -> Any:
        """The PyTorch class named by ``network`` (imports torch)."""
        module, _, attr = self.network.partition(":")
        return getattr(importlib.import_module(module), attr)

    def build(self, tiny: bool = False) -> Any:
        """Construct the network (random weights, mean-parameter buffers); ``tiny`` for fast tests."""
        return self.network_class()(self, tiny=tiny)


def _plain(value: Any) -> Any:
    """A JSON-ready deep copy (tuples → lists, mappings → dicts)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------------------
_REGISTRY: dict[str, ModelSpec] = {}


def register_model(fn: Callable[[], ModelSpec | tuple[ModelSpec, ...]]) -> Callable[[], Any]:
    """Decorator: ``fn()`` returns a spec (or several, e.g. a family's variants); each is registered by name.

    A name registered twice is a programming error (two modules claiming one model name).
    """
    made = fn()
    for spec in made if isinstance(made, tuple) else (made,):
        if not isinstance(spec, ModelSpec):  # pragma: no cover - programming error
            raise TypeError(f"{fn.__name__} returned {type(spec).__name__}, not a ModelSpec")
        if spec.name in _REGISTRY:
            raise ValueError(f"model '{spec.name}' is registered twice")
        _REGISTRY[spec.name] = spec
    return fn


def unregister_model(name: str) -> ModelSpec | None:
    """Remove ``name`` from the registry (a family registered for a while, e.g. by a test); returns its spec."""
    return _REGISTRY.pop(str(name).strip().lower(), None)
