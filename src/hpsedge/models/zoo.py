"""The model zoo (needs torch): the registry's names plus what only a built network can tell.

The specs and the registry are torch-free (:mod:`hpsedge.models.registry`, registrations in
:mod:`hpsedge.models.specs`); this module re-exports them under their old names (``ZOO``, ``get_spec``,
``ModelSpec``) and adds :func:`count_parameters` and :func:`expected_state_shapes`, which build the network
on the meta device. The exporter writes a spec's facts into the manifest, so the runtime never needs this
module (or torch).
"""

from __future__ import annotations

import torch

from hpsedge.models.poco import HPSNetwork
from hpsedge.models.registry import DEFAULT_MODEL, ZOO, ModelSpec, get_spec, registered
from hpsedge.models.specs import IMAGENET_MEAN, IMAGENET_STD, vitdet_postprocessing, vitdet_preprocessing

__all__ = [
    "DEFAULT_MODEL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ZOO",
    "HPSNetwork",
    "ModelSpec",
    "count_parameters",
    "expected_state_shapes",
    "get_spec",
    "registered",
    "vitdet_postprocessing",
    "vitdet_preprocessing",
]


def count_parameters(spec: ModelSpec, tiny: bool = False) -> int:
    """Parameter count of the exported network, computed without allocating weights (meta device)."""
    with torch.device("meta"):
        model = spec.build(tiny=tiny)
    return sum(p.numel() for p in model.parameters())


def expected_state_shapes(spec: ModelSpec, tiny: bool = False) -> dict[str, tuple[int, ...]]:
    """Our state-dict keys and shapes for ``spec`` (meta device: no memory, fast)."""
    with torch.device("meta"):
        model = spec.build(tiny=tiny)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
