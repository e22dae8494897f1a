"""The model registry: one :class:`ModelSpec` per model name, registered with :func:`register_model`.

This module is **torch-free** (standard library only): a robot install without torch can list the models
(``hpsedge models``) from the static metadata here. A spec names its PyTorch network as a
``"module:Class"`` string that :meth:`ModelSpec.build` imports only when a network is built.

A spec declares everything generic code asks about a model (the shape of Optimum's per-architecture export
configs, registered timm-style):

* graph contract: ``input_size`` (the ``image`` input), ``extra_inputs`` (CLIFF's ``bbox_info``), ``outputs``
  and ``optional_outputs`` (chosen at export time, e.g. TokenHMR's ``token_probs``);
* the manifest's ``preprocessing`` block (crop, normalisation, colour order) and ``postprocessing`` block
  (camera convention and projection, 6D convention, confidence rule, σ score rule, joint sets): the runtime
  reads these from the manifest and never the family name;
* official checkpoint: file name, reader (``"torch"``: ``torch.load(weights_only=True)``; ``"inert"``: the
  inert unpickler for Lightning ``.ckpt`` files with pickled configs), dropped key prefixes/keys, keys that
  come from a second file (``aux_prefixes``, ``aux_option``), and the golden key lists that tests compare with;
* precision: the FP16 keep-list and the INT8 exclusions (rules of :mod:`hpsedge.calib.graph`);
* verification: the ONNX-vs-PyTorch tolerance; ``params``, the full-size parameter count (checked by a test).

Registrations live in :mod:`hpsedge.models.specs` (one decorated function per family); adding a model is
its network module plus one registration there.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping

# the zoo's registrations (hpsedge.models.specs) fill spec.py's table when imported; spec.py imports
# neither module, so there is no cycle
from hpsedge.errors import HpsedgeError
from hpsedge.models import specs as _zoo  # noqa: F401
from hpsedge.models.spec import (
    _REGISTRY,
    DEFAULT_MODEL,
    FP16_KEEP_OPS,
    GENERIC_FP16_KEEP,
    GENERIC_INT8_EXCLUDE,
    POSE_OUTPUTS,
    ModelSpec,
    TensorDecl,
    register_model,
    unregister_model,
)

__all__ = [
    "DEFAULT_MODEL",
    "FP16_KEEP_OPS",
    "GENERIC_FP16_KEEP",
    "GENERIC_INT8_EXCLUDE",
    "POSE_OUTPUTS",
    "ZOO",
    "ModelSpec",
    "TensorDecl",
    "get_spec",
    "lookup",
    "register_model",
    "registered",
    "unregister_model",
]


def registered() -> dict[str, ModelSpec]:
    """Every registered model, in registration order (a copy)."""
    return dict(_REGISTRY)


def lookup(name: str) -> ModelSpec | None:
    """The spec registered as ``name``, or None (for code that has a fallback, e.g. a foreign build folder)."""
    return _REGISTRY.get(str(name).strip().lower())


def get_spec(name: str) -> ModelSpec:
    """Look a model up by name; an unknown name gets a one-line error listing the registry."""
    spec = lookup(name)
    if spec is None:
        known = list(registered())
        close = difflib.get_close_matches(str(name).strip().lower(), known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else "run `hpsedge models` for the list"
        raise HpsedgeError(f"unknown model '{name}' (known: {', '.join(known)})", hint=hint)
    return spec


class _RegistryView(Mapping[str, ModelSpec]):
    """``ZOO``: a read-only, lazily loaded view of the registry (the old name → spec dict)."""

    def __getitem__(self, key: str) -> ModelSpec:
            return _REGISTRY[key]

    def __iter__(self) -> Iterator[str]:
            return iter(list(_REGISTRY))

    def __len__(self) -> int:
            return len(_REGISTRY)


ZOO: Mapping[str, ModelSpec] = _RegistryView()
