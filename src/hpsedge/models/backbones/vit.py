"""ViT-H/16 as HMR 2.0 and TokenHMR use it (the ViTPose layout), with the official state-dict names.

Official source: ``saidwivedi/TokenHMR: tokenhmr/lib/models/backbones/vit.py`` (the same file as
``shubham-goel/4D-Humans: hmr2/models/backbones/vit.py``), built there by ``vit()`` with image (256, 192),
patch 16, width 1280, depth 32, 16 heads, MLP ratio 4, qkv bias, drop-path 0.55 (inactive in eval).

Facts this implementation keeps (``docs``: ``shared/reference/tokenhmr.md`` §2):

* Input: the official model takes the 256×256 crop and slices columns 32..223 inside ``forward``; our
  graph input *is* that central 256×192 (the runtime crops it directly, see
  :func:`hpsedge.runtime.preprocess.crop_boxes`), so there is no slice here.
* ``patch_embed.proj`` is Conv2d(3→1280, k=16, s=16, **padding 2**): a 16×12 grid whose windows start at
  −2, so the last two rows/columns of the input are never seen.
* ``pos_embed`` [1, 193, 1280] is fixed: entry 0 (the pretraining "cls" position; there is no cls token)
  is added to every token after positions 1..192, in that order of additions. Never interpolated, so the
  input size is fixed.
* Pre-norm blocks with LayerNorm eps 1e-6, explicit softmax attention (q scaled before q·kᵀ), exact GELU.
* Output: ``last_norm`` then [B, 1280, 16, 12] (channels first, token index = 12·h + w).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

LN_EPS = 1e-6


@dataclass(frozen=True)
class ViTConfig:
    """Sizes of the ViT; :data:`VIT_H` is the official one, :data:`VIT_TINY` the test configuration."""

    embed_dim: int = 1280
    depth: int = 32
    num_heads: int = 16
    mlp_ratio: int = 4
    patch_size: int = 16
    padding: int = 2
    img_hw: tuple[int, int] = (256, 192)

    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid (Hp, Wp) of the conv with the official padding: (16, 12) for 256×192."""
        h, w = self.img_hw
        p, pad = self.patch_size, self.padding
        return (h + 2 * pad - p) // p + 1, (w + 2 * pad - p) // p + 1

    @property
    def num_positions(self) -> int:
        """Rows of ``pos_embed``: the official ``num_patches + 1`` with ``num_patches = (H//p)·(W//p)``."""
        h, w = self.img_hw
        return (h // self.patch_size) * (w // self.patch_size) + 1


VIT_H = ViTConfig()
VIT_TINY = ViTConfig(embed_dim=64, depth=2, num_heads=4)


class PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, padding: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, Hp·Wp, C], row-major over (h, w)


class Attention(nn.Module):
    """Multi-head self-attention: ``qkv`` rows are (3, heads, head_dim), head-major inside q, k and v."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, -1)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact (erf)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """``forward(image [B, 3, 256, 192]) → [B, C, 16, 12]`` (official key names under ``backbone.``)."""

    def __init__(self, cfg: ViTConfig = VIT_H) -> None:
        super().__init__()
        self.cfg = cfg
        self.out_channels = cfg.embed_dim
        self.patch_embed = PatchEmbed(3, cfg.embed_dim, cfg.patch_size, cfg.padding)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_positions, cfg.embed_dim))
        self.blocks = nn.ModuleList(Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.last_norm = nn.LayerNorm(cfg.embed_dim, eps=LN_EPS)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        hp, wp = cfg.grid
        if hp * wp + 1 != cfg.num_positions:  # pragma: no cover - only for odd custom configs
            raise ValueError(f"patch grid {hp}×{wp} does not fit {cfg.num_positions - 1} position embeddings")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        hp, wp = self.cfg.grid
        x = self.patch_embed(x)
        x = x + self.pos_embed[:, 1:] + self.pos_embed[:, :1]
        for blk in self.blocks:
            x = blk(x)
        x = self.last_norm(x)
        return x.permute(0, 2, 1).reshape(b, -1, hp, wp)


def vit_h(tiny: bool = False) -> ViT:
    """The official ViT-H/16 (``tiny``: 2 blocks of width 64, 4 heads, same input and grid)."""
    return ViT(VIT_TINY if tiny else VIT_H)
