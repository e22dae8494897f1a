"""HMR 2.0 (4D-Humans) as one exportable network: ViT-H/16 → SMPL transformer-decoder head → 24 rotations.

Official source: ``shubham-goel/4D-Humans`` at ``6ec7965`` (``hmr2/models/hmr2.py``, ``backbones/vit.py``,
``heads/smpl_head.py``, ``components/pose_transformer.py``, ``utils/geometry.py``), released configuration
``hmr_vit_transformer.yaml``; facts in ``shared/reference/hmr2.md``. Registered as ``hmr2`` in
:mod:`hpsedge.models.specs` (crop and camera: HMR 2.0's ViTDet crop and ``cam_crop_to_full``, which TokenHMR
inherited).

State dict (official names, ``HMR2.state_dict()`` of the Lightning checkpoint minus ``discriminator.*``,
``smpl.*`` and ``initialized``, which are training-only or rebuilt from the SMPL file):

* ``backbone.*``: the ViTPose-H/16 of :mod:`hpsedge.models.backbones.vit` (identical to TokenHMR's), fed the
  central 256×192 of the 256×256 crop (the official ``x[:, :, :, 32:-32]``; the runtime crops it directly);
* ``smpl_head.*``: ``SMPLTransformerDecoderHead``: buffers ``init_body_pose`` [1,144], ``init_betas`` [1,10],
  ``init_cam`` [1,3] (the checkpoint's values), ``transformer.*`` (the same cross-attention decoder as
  TokenHMR's: one query token = ``to_token_embedding(0) + pos_embedding``, 6 layers, context = the 192
  backbone tokens without norm or positional encoding) and the read-outs ``decpose`` [144,1024],
  ``decshape`` [10,1024], ``deccam`` [3,1024]. One IEF iteration: ``x = dec(token) + init_x``.

``forward(image [N, 3, 256, 192])`` returns ``pose`` [N, 24, 3, 3] (global orientation + 23 body joints from
the 6D numbers in HMR 2.0's **column** convention, :func:`rot6d_to_rotmat_columns`), ``betas`` [N, 10] and
``cam`` [N, 3] (weak perspective (s, tx, ty) in the 256-px crop). No uncertainty output: the manifest
declares no confidence rule, and the runtime reports none.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
from torch import nn

from hpsedge.models.backbones.vit import VIT_H, VIT_TINY, ViT, ViTConfig
from hpsedge.models.heads.token_head import TokenHeadConfig, TransformerDecoder, upright_identity_pose_6d_rows
from hpsedge.models.tokenhmr import rot6d_to_rotmat_rows

if TYPE_CHECKING:
    from hpsedge.models.registry import ModelSpec

#: the released head (``TRANSFORMER_DECODER``: depth 6, 8 heads × 64, mlp 1024, context 1280; dim 1024)
HMR2_HEAD_RELEASE = TokenHeadConfig(dim=1024, depth=6, heads=8, dim_head=64, mlp_dim=1024, context_dim=1280)
#: the test configuration (with :data:`~hpsedge.models.backbones.vit.VIT_TINY`)
HMR2_HEAD_TINY = TokenHeadConfig(dim=64, depth=1, heads=2, dim_head=16, mlp_dim=64, context_dim=64)
NPOSE = 24 * 6


def rot6d_to_rotmat_columns(x: torch.Tensor) -> torch.Tensor:
    """6D → rotation matrices in HMR 2.0's **column** convention (``hmr2/utils/geometry.py``).

    ``[..., 6] → [..., 3, 3]``: a1 = (x0, x1, x2), a2 = (x3, x4, x5); b1 = a1/‖a1‖,
    b2 = normalise(a2 − (b1·a2) b1), b3 = b1 × b2; **columns** b1, b2, b3 (``stack(.., dim=-1)``), i.e. the
    transpose of TokenHMR's rows. The official ``torch.cross`` has no ``dim`` (a TorchScript-export hazard);
    this one crosses over the last axis, which is what the official call does for its [B·24, 3] input.
    """
    return rot6d_to_rotmat_rows(x).transpose(-1, -2)


class Rot6dColumns(nn.Module):
    """:func:`rot6d_to_rotmat_columns` as a module, so its ONNX nodes carry the scope name ``/rot6d/``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rot6d_to_rotmat_columns(x)


class SMPLTransformerDecoderHead(nn.Module):
    """Image tokens [B, C, 16, 12] → (6D pose [B, 144], betas [B, 10], cam [B, 3]), each + its ``init_*``."""

    def __init__(self, cfg: TokenHeadConfig = HMR2_HEAD_RELEASE) -> None:
        super().__init__()
        self.cfg = cfg
        # random-init values (upright identity pose, zero shape, camera (0.9, 0, 0)); a checkpoint carries the
        # official ones. The upright root diag(1, −1, −1) is symmetric, so rows and columns read alike.
        self.register_buffer("init_body_pose", upright_identity_pose_6d_rows())
        self.register_buffer("init_betas", torch.zeros(1, 10))
        self.register_buffer("init_cam", torch.tensor([[0.9, 0.0, 0.0]]))
        self.transformer = TransformerDecoder(cfg)
        self.decpose = nn.Linear(cfg.dim, NPOSE)
        self.decshape = nn.Linear(cfg.dim, 10)
        self.deccam = nn.Linear(cfg.dim, 3)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        context = feats.flatten(2).transpose(1, 2)  # b c h w -> b (h w) c
        token = self.transformer(context)[:, 0]  # [B, dim]
        pose6d = self.decpose(token) + self.init_body_pose  # broadcast over the batch, as expand(B, -1)
        betas = self.decshape(token) + self.init_betas
        cam = self.deccam(token) + self.init_cam
        return pose6d, betas, cam


class HMR2Network(nn.Module):
    """backbone (ViT-H) → smpl_head (transformer decoder) → 6D → rotation matrices (columns).

    ``vit_cfg``/``head_cfg`` override the sizes (tests build reduced-depth configurations of the official
    widths); the default is the release configuration, or the tiny one with ``tiny``.
    """

    def __init__(
        self,
        spec: ModelSpec,
        tiny: bool = False,
        vit_cfg: ViTConfig | None = None,
        head_cfg: TokenHeadConfig | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.tiny = tiny
        vit_cfg = vit_cfg or (VIT_TINY if tiny else VIT_H)
        head_cfg = head_cfg or (HMR2_HEAD_TINY if tiny else HMR2_HEAD_RELEASE)
        if head_cfg.context_dim != vit_cfg.embed_dim:
            head_cfg = dataclasses.replace(head_cfg, context_dim=vit_cfg.embed_dim)
        self.backbone = ViT(vit_cfg)
        self.smpl_head = SMPLTransformerDecoderHead(head_cfg)
        self.rot6d = Rot6dColumns()

    def forward_dict(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Intermediate results by name (for comparisons with the official code)."""
        b = image.shape[0]
        feats = self.backbone(image)
        pose6d, betas, cam = self.smpl_head(feats)
        pose = self.rot6d(pose6d.reshape(b, 24, 6))
        return {"features": feats, "pose6d": pose6d, "pose": pose, "betas": betas, "cam": cam}

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.forward_dict(image)
        return tuple(out[name] for name in self.spec.output_names)

    def example_inputs(self, batch: int = 1, seed: int | None = 0) -> tuple[torch.Tensor, ...]:
        """A random normalised-image-like input [batch, 3, 256, 192]."""
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        h, w = self.spec.input_size
        return (torch.randn(batch, 3, h, w, generator=g),)
