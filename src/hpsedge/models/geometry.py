"""Torch geometry used inside the exported graphs.

Written so that the ONNX graph holds only elementwise ops, reductions and reshapes: no Einsum, no
ScatterND (in-place indexed writes), no ``torch.cross`` (whose legacy export fails without ``dim``).
TensorRT parses such graphs without plugins.
"""

from __future__ import annotations

import torch


def _normalize(v: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``F.normalize(v, dim=-1)``: v / max(‖v‖, eps), spelled out (ReduceL2 would work too)."""
    norm = torch.sqrt((v * v).sum(dim=-1, keepdim=True))
    return v / torch.clamp(norm, min=eps)


def cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cross product over the last axis (size 3), as plain multiplies and a concat."""
    a0, a1, a2 = a[..., 0:1], a[..., 1:2], a[..., 2:3]
    b0, b1, b2 = b[..., 0:1], b[..., 1:2], b[..., 2:3]
    return torch.cat((a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0), dim=-1)


def rot6d_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """6D → rotation matrices, SPIN/POCO convention: ``[..., 6k] → [B*k, 3, 3]``.

    The 6 numbers of a joint are a 3×2 matrix read row-major, so its columns are
    a1 = (x0, x2, x4) and a2 = (x1, x3, x5). Gram-Schmidt gives b1, b2; b3 = b1 × b2; the result
    holds b1, b2, b3 as *columns*. Like the official code, the output is flattened to [-1, 3, 3].
    """
    x = x.reshape(-1, 3, 2)
    a1 = x[:, :, 0]
    a2 = x[:, :, 1]
    b1 = _normalize(a1)
    b2 = _normalize(a2 - (b1 * a2).sum(dim=-1, keepdim=True) * b1)
    b3 = cross(b1, b2)
    return torch.stack((b1, b2, b3), dim=-1)
