"""Deterministic HMR 2.0 weights and inputs, the same for hpsedge's network and the official classes.

``tests/data/hmr2_official_reference.npz`` holds the outputs of the OFFICIAL 4D-Humans ViT +
``SMPLTransformerDecoderHead`` (commit ``6ec7965``, run outside this repository) with the weights of
:func:`seeded_state_dict` (generated per key from the key name, so any implementation with the official key
names and shapes gets the same tensors) on :func:`seeded_image`. ``tests/test_hmr2.py`` rebuilds hpsedge's
network with the same weights and compares.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping

import torch

SEED = 20_240_611
IMAGE_SEED = 7

#: the configurations of the reference file: sizes of the official ViT and head (release = the released model)
CONFIGS: dict[str, dict] = {
    "tiny": {
        "vit": {"embed_dim": 64, "depth": 2, "num_heads": 4},
        "head": {"dim": 64, "depth": 1, "heads": 2, "dim_head": 16, "mlp_dim": 64, "context_dim": 64},
        "batch": 3,
    },
    # the official widths (ViT-H/16, the released head) with 2 of the ViT's 32 blocks
    "reduced": {
        "vit": {"embed_dim": 1280, "depth": 2, "num_heads": 16},
        "head": {"dim": 1024, "depth": 6, "heads": 8, "dim_head": 64, "mlp_dim": 1024, "context_dim": 1280},
        "batch": 2,
    },
    "full": {
        "vit": {"embed_dim": 1280, "depth": 32, "num_heads": 16},
        "head": {"dim": 1024, "depth": 6, "heads": 8, "dim_head": 64, "mlp_dim": 1024, "context_dim": 1280},
        "batch": 2,
    },
}


def seeded_tensor(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The value of state-dict entry ``key``: N(0, 1) from a generator seeded by the key name, scaled by role.

    LayerNorm weights 1 + 0.1·n, biases and position embeddings 0.02·n, ``init_cam`` (0.9, 0, 0) + 0.05·n,
    ``init_body_pose``/``init_betas`` 0.5·n, other weights n/√fan_in (keeps activations O(1) over depth).
    """
    g = torch.Generator().manual_seed(SEED + zlib.crc32(key.encode()))
    t = torch.randn(shape, generator=g)
    if key.endswith("init_cam"):
        return torch.tensor([[0.9, 0.0, 0.0]]) + 0.05 * t
    if key.endswith(("init_body_pose", "init_betas")):
        return 0.5 * t
    if "norm" in key.rsplit(".", 2)[-2] and key.endswith(".weight"):
        return 1.0 + 0.1 * t
    if key.endswith((".bias", "pos_embed", "pos_embedding")):
        return 0.02 * t
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
    return t / math.sqrt(fan_in)


def seeded_state_dict(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {k: seeded_tensor(k, tuple(s)) for k, s in shapes.items()}


def fill_seeded(model: torch.nn.Module) -> None:
    """Overwrite every parameter and buffer of ``model`` in place with :func:`seeded_tensor` (no second copy)."""
    with torch.no_grad():
        for key, t in model.state_dict(keep_vars=True).items():
            t.copy_(seeded_tensor(key, tuple(t.shape)))


def seeded_image(batch: int) -> torch.Tensor:
    """The normalised-image-like input [batch, 3, 256, 192] the reference was computed on."""
    return torch.randn(batch, 3, 256, 192, generator=torch.Generator().manual_seed(IMAGE_SEED))
