"""TokenHMR as one exportable network: ViT-H → token head → soft codebook decoding → 24 rotations.

State-dict groups (official names): ``backbone.*`` and ``smpl_head.*`` exactly as in the official
Lightning checkpoint (``TokenHMR.state_dict()`` minus ``smpl.*`` and ``initialized``), and ``tokenizer.*``
= ``tokenizer.pth["net"]`` minus ``encoder.*`` (``tokenizer.decoder.decoder.*``, ``tokenizer.quantizer.codebook``).

``forward(image [N, 3, 256, 192])`` returns, in this order (``ModelSpec.output_names``):

* ``pose`` [N, 24, 3, 3]: rotation matrices of the 24 SMPL joints. As ``SMPLTokenDecoderHead.forward``
  composes them: 6D [global (6) ‖ 21 body joints from the tokenizer (126) ‖ the hand read-out (12) for
  joints 22 (L_Hand) and 23 (R_Hand)] + ``init_body_pose``, converted with the **row** convention
  (:func:`rot6d_to_rotmat_rows`);
* ``betas`` [N, 10], ``cam`` [N, 3] (weak perspective (s, tx, ty) in the 256-px crop);
* ``token_confidence`` [N] (hpsedge's, see :func:`token_confidence`);
* ``token_probs`` [N, 160, 2048] only when the spec asks for it (``extra_outputs``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from hpsedge.models.backbones.vit import vit_h
from hpsedge.models.geometry import cross
from hpsedge.models.heads.token_head import TOKEN_HEAD_RELEASE, TOKEN_HEAD_TINY, SMPLTokenDecoderHead
from hpsedge.models.tokenizer import TOKENIZER_RELEASE, TOKENIZER_TINY, TokenDecoder

if TYPE_CHECKING:
    from hpsedge.models.registry import ModelSpec

#: ``F.normalize``'s default, as the official ``rot6d_to_rotmat``. It underflows in FP16 (smallest normal
#: 6.1e-5): the precision step must keep the ``rot6d`` module's nodes in FP32.
ROT6D_EPS = 1e-12


def _normalize(v: torch.Tensor, eps: float = ROT6D_EPS) -> torch.Tensor:
    """``v / max(‖v‖, eps)`` over the last axis (``F.normalize``; exported as Mul/ReduceSum/Sqrt/Clip/Div)."""
    norm = torch.sqrt((v * v).sum(dim=-1, keepdim=True))
    return v / torch.clamp(norm, min=eps)


def rot6d_to_rotmat_rows(x: torch.Tensor) -> torch.Tensor:
    """6D → rotation matrices in TokenHMR's **row** convention (= pytorch3d ``rotation_6d_to_matrix``).

    ``[..., 6] → [..., 3, 3]``: a1 = (x0, x1, x2), a2 = (x3, x4, x5); b1 = a1/‖a1‖,
    b2 = normalise(a2 − (b1·a2) b1), b3 = b1 × b2; **rows** b1, b2, b3. So the 6D vector of R is its first
    two rows. (SPIN/POCO's :func:`hpsedge.models.geometry.rot6d_to_rotmat` reads the same numbers as two
    interleaved columns; HMR 2.0's stacks b1, b2, b3 as columns, giving Rᵀ of this.) No Einsum/ScatterND.
    """
    a1 = x[..., 0:3]
    a2 = x[..., 3:6]
    b1 = _normalize(a1)
    b2 = _normalize(a2 - (b1 * a2).sum(dim=-1, keepdim=True) * b1)
    b3 = cross(b1, b2)
    return torch.stack((b1, b2, b3), dim=-2)


class Rot6dRows(nn.Module):
    """:func:`rot6d_to_rotmat_rows` as a module, so its ONNX nodes carry the scope name ``/rot6d/``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rot6d_to_rotmat_rows(x)


def token_confidence(logits: torch.Tensor) -> torch.Tensor:
    """hpsedge's per-person confidence from the token logits [N, T, K]: ``1 − mean_t H(p_t) / log K``.

    ``p_t = softmax(logits_t)`` is the distribution over the K codes of token t and
    ``H(p) = −Σ_k p_k log p_k`` its entropy (natural log), so ``H / log K`` ∈ [0, 1] is 0 for a one-hot and 1
    for a uniform distribution. The result is in [0, 1] (clamped against rounding): 1 when every token is
    certain of its code, 0 when every token is maximally undecided. Computed with ``log_softmax`` (no
    log of 0). It measures how peaked the classifier is, not how right it is: what a value means in
    error terms needs trained weights and a calibration set.
    """
    logp = torch.log_softmax(logits, dim=-1)
    entropy = -(logp.exp() * logp).sum(dim=-1)  # [N, T]
    norm = entropy.mean(dim=-1) / math.log(logits.shape[-1])
    return torch.clamp(1.0 - norm, 0.0, 1.0)


class TokenConfidence(nn.Module):
    """:func:`token_confidence` as a module (ONNX scope ``/token_confidence/``)."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return token_confidence(logits)


class TokenHMRNetwork(nn.Module):
    """backbone (ViT-H) → smpl_head (token head) → tokenizer (soft decoding) → pose assembly."""

    def __init__(self, spec: ModelSpec, tiny: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.tiny = tiny
        self.backbone = vit_h(tiny=tiny)
        head_cfg = TOKEN_HEAD_TINY if tiny else TOKEN_HEAD_RELEASE
        tok_cfg = TOKENIZER_TINY if tiny else TOKENIZER_RELEASE
        if head_cfg.context_dim != self.backbone.out_channels or head_cfg.token_num != tok_cfg.num_tokens:
            raise ValueError("inconsistent TokenHMR configuration")  # pragma: no cover
        if head_cfg.token_class_num != tok_cfg.nb_code:
            raise ValueError("head classes and codebook size differ")  # pragma: no cover
        self.smpl_head = SMPLTokenDecoderHead(head_cfg)
        self.tokenizer = TokenDecoder(tok_cfg)
        self.rot6d = Rot6dRows()
        self.token_confidence = TokenConfidence()
        self.with_token_probs = "token_probs" in spec.output_names

    def forward_dict(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """All intermediate results by name (for comparisons with the official code and for tests)."""
        b = image.shape[0]
        feats = self.backbone(image)
        grot, hands, betas, cam, logits = self.smpl_head(feats)
        probs = logits.softmax(dim=-1)
        body6d = self.tokenizer(probs).reshape(b, -1)  # [B, 126]
        pose6d = torch.cat([grot, body6d, hands], dim=-1) + self.smpl_head.init_body_pose
        pose = self.rot6d(pose6d.reshape(b, 24, 6))
        return {
            "features": feats,
            "logits": logits,
            "token_probs": probs,
            "pose6d": pose6d,
            "pose": pose,
            "betas": betas,
            "cam": cam,
            "token_confidence": self.token_confidence(logits),
        }

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.forward_dict(image)
        return tuple(out[name] for name in self.spec.output_names)

    def output_specs(self) -> list[dict[str, object]]:
        """The manifest's output entries for this instance (the tiny configuration has fewer codes)."""
        specs = [s for s in self.spec.output_specs() if s["name"] != "token_probs"]
        if self.with_token_probs:
            cfg = self.tokenizer.cfg
            specs.append({"name": "token_probs", "shape": ["N", cfg.num_tokens, cfg.nb_code], "dtype": "float32"})
        return specs

    def example_inputs(self, batch: int = 1, seed: int | None = 0) -> tuple[torch.Tensor, ...]:
        """A random normalised-image-like input [batch, 3, 256, 192]."""
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        h, w = self.spec.input_size
        return (torch.randn(batch, 3, h, w, generator=g),)
