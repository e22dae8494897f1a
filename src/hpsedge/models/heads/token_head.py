"""TokenHMR's head (``SMPLTokenDecoderHead``) with the official module names under ``smpl_head.``.

Official sources (``saidwivedi/TokenHMR``): ``tokenhmr/lib/models/heads/token_head.py``,
``heads/token_classifier.py``, ``heads/modules.py``, ``components/pose_transformer.py``; facts in
``shared/reference/tokenhmr.md`` §3.

* ``transformer``: a cross-attention transformer decoder with **one** query token of width 1024 built from
  a zero input: ``to_token_embedding(0) + pos_embedding`` = ``to_token_embedding.bias + pos_embedding``,
  computed here without the zero tensor (exactly the same value; it keeps batch-size-dependent
  ``ConstantOfShape``/``If`` nodes out of the traced graph). 6 layers of pre-norm self-attention (to_qkv
  without bias, 8 heads × 64), cross-attention to the 192 image tokens (to_q/to_kv without bias; k = first
  half of to_kv, v = second half) and a GELU feed-forward (1024→1024→1024); LayerNorm eps 1e-5.
* read-outs from the token: ``decpose_grot`` (6D), ``decpose_hands`` (2×6D, SMPL joints 22 and 23),
  ``decshape`` (+ ``init_betas``), ``deccam`` (+ ``init_cam``).
* ``decpose``: the PCT-style token classifier: Linear(1024→160·64) → LayerNorm → ReLU, four Mixer layers
  (``out = x + y + z``, both residuals), Linear(64→64) → LayerNorm → ReLU, then ``class_pred_layer``
  (64→2048) → logits [B, 160, 2048]. The softmax, the codebook mixture and the decoder live in the
  network (:mod:`hpsedge.models.tokenhmr`); officially a plain-Python ``Proxy`` held them outside the
  module tree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TokenHeadConfig:
    dim: int = 1024
    depth: int = 6
    heads: int = 8
    dim_head: int = 64
    mlp_dim: int = 1024
    context_dim: int = 1280
    token_num: int = 160
    token_class_num: int = 2048
    hidden_dim: int = 64  # mixer width (TokenClassfier.hidden_dim)
    hidden_inter_dim: int = 256  # channel-MLP width
    token_inter_dim: int = 64  # token-MLP width
    num_blocks: int = 4  # mixer layers


TOKEN_HEAD_RELEASE = TokenHeadConfig()
TOKEN_HEAD_TINY = TokenHeadConfig(
    dim=64, depth=1, heads=2, dim_head=16, mlp_dim=64, context_dim=64, token_class_num=64, hidden_dim=16,
    hidden_inter_dim=32, token_inter_dim=16, num_blocks=2,
)  # fmt: skip

NPOSE = 24 * 6


# --------------------------------------------------------------------------------- transformer decoder
def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """``b n (h d) -> b h n d``."""
    b, n, _ = t.shape
    return t.reshape(b, n, heads, -1).transpose(1, 2)


def _merge_heads(t: torch.Tensor) -> torch.Tensor:
    """``b h n d -> b n (h d)``."""
    b, h, n, d = t.shape
    return t.transpose(1, 2).reshape(b, n, h * d)


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        y = self.norm(x)
        return self.fn(y) if context is None else self.fn(y, context)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head**-0.5
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (_split_heads(t, self.heads) for t in self.to_qkv(x).chunk(3, dim=-1))
        attn = (torch.matmul(q, k.transpose(-1, -2)) * self.scale).softmax(dim=-1)
        return self.to_out(_merge_heads(torch.matmul(attn, v)))


class CrossAttention(nn.Module):
    def __init__(self, dim: int, context_dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head**-0.5
        self.to_kv = nn.Linear(context_dim, inner * 2, bias=False)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        k, v = self.to_kv(context).chunk(2, dim=-1)
        q = _split_heads(self.to_q(x), self.heads)
        k, v = _split_heads(k, self.heads), _split_heads(v, self.heads)
        attn = (torch.matmul(q, k.transpose(-1, -2)) * self.scale).softmax(dim=-1)
        return self.to_out(_merge_heads(torch.matmul(attn, v)))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformerCrossAttn(nn.Module):
    def __init__(self, cfg: TokenHeadConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PreNorm(cfg.dim, SelfAttention(cfg.dim, cfg.heads, cfg.dim_head)),
                    PreNorm(cfg.dim, CrossAttention(cfg.dim, cfg.context_dim, cfg.heads, cfg.dim_head)),
                    PreNorm(cfg.dim, FeedForward(cfg.dim, cfg.mlp_dim)),
                ]
            )
            for _ in range(cfg.depth)
        )

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        for self_attn, cross_attn, ff in self.layers:  # type: ignore[misc]
            x = self_attn(x) + x
            x = cross_attn(x, context) + x
            x = ff(x) + x
        return x


class TransformerDecoder(nn.Module):
    """One constant query token (zero input → ``to_token_embedding`` → + ``pos_embedding``) decoding the image."""

    def __init__(self, cfg: TokenHeadConfig) -> None:
        super().__init__()
        self.to_token_embedding = nn.Linear(1, cfg.dim)
        self.pos_embedding = nn.Parameter(torch.randn(1, 1, cfg.dim))
        self.transformer = TransformerCrossAttn(cfg)

    def query(self) -> torch.Tensor:
        """``to_token_embedding(zeros(B, 1, 1)) + pos_embedding`` = bias + position: [1, 1, dim], the same for all."""
        return self.to_token_embedding.bias.reshape(1, 1, -1) + self.pos_embedding

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        # The query stays [1, 1, dim] until the first cross-attention broadcasts it over the batch: no
        # batch-sized zero tensor, no Expand.
        return self.transformer(self.query(), context)


# ------------------------------------------------------------------------------------ token classifier
class FCBlock(nn.Module):
    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.ff = nn.Sequential(nn.Linear(dim, out_dim), nn.LayerNorm(out_dim), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff(x)


class MLPBlock(nn.Module):
    def __init__(self, dim: int, inter_dim: int) -> None:
        super().__init__()
        self.ff = nn.Sequential(nn.Linear(dim, inter_dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(inter_dim, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff(x)


class MixerLayer(nn.Module):
    """``out = x + y + z`` with y = token-MLP(LN1(x)ᵀ)ᵀ and z = channel-MLP(LN2(x + y)) (PCT's variant)."""

    def __init__(self, hidden_dim: int, hidden_inter_dim: int, token_dim: int, token_inter_dim: int) -> None:
        super().__init__()
        self.layernorm1 = nn.LayerNorm(hidden_dim)
        self.MLP_token = MLPBlock(token_dim, token_inter_dim)
        self.layernorm2 = nn.LayerNorm(hidden_dim)
        self.MLP_channel = MLPBlock(hidden_dim, hidden_inter_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.MLP_token(self.layernorm1(x).transpose(2, 1)).transpose(2, 1)
        z = self.MLP_channel(self.layernorm2(x + y))
        return x + y + z


class TokenClassifier(nn.Module):
    """``TokenClassfier`` without its tokenizer proxy: token feature [B, dim] → logits [B, T, K]."""

    def __init__(self, cfg: TokenHeadConfig) -> None:
        super().__init__()
        self.token_num = cfg.token_num
        self.mixer_trans = FCBlock(cfg.dim, cfg.token_num * cfg.hidden_dim)
        self.mixer_head = nn.ModuleList(
            MixerLayer(cfg.hidden_dim, cfg.hidden_inter_dim, cfg.token_num, cfg.token_inter_dim) for _ in range(cfg.num_blocks)
        )
        self.mixer_norm_layer = FCBlock(cfg.hidden_dim, cfg.hidden_dim)
        self.class_pred_layer = nn.Linear(cfg.hidden_dim, cfg.token_class_num)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.mixer_trans(x).reshape(x.shape[0], self.token_num, -1)
        for layer in self.mixer_head:
            feat = layer(feat)
        return self.class_pred_layer(self.mixer_norm_layer(feat))


# ------------------------------------------------------------------------------------------------- head
def upright_identity_pose_6d_rows() -> torch.Tensor:
    """[1, 144] mean pose for a random-init model, in TokenHMR's **row** 6D convention.

    Root diag(1, −1, −1) (SMPL's y-up body upright in a y-down image; rows (1,0,0), (0,−1,0)) and identity
    body joints (rows (1,0,0), (0,1,0)). A real checkpoint carries the official buffer (the SPIN
    ``smpl_mean_params.npz`` pose, which TokenHMR reads with the row convention all the same).
    """
    root = torch.tensor([1.0, 0.0, 0.0, 0.0, -1.0, 0.0])
    body = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]).repeat(23)
    return torch.cat([root, body]).unsqueeze(0)


class SMPLTokenDecoderHead(nn.Module):
    """Image tokens [B, C, 16, 12] → (6D pose residuals, betas, cam, token logits).

    ``forward`` returns ``(grot [B,6], hands [B,12], betas [B,10], cam [B,3], logits [B,T,K])``: betas and
    cam already include the mean; the pose parts are residuals that the network adds to ``init_body_pose``
    after inserting the tokenizer's 21 body joints (official order: global, body, hands).
    """

    def __init__(self, cfg: TokenHeadConfig = TOKEN_HEAD_RELEASE) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("init_body_pose", upright_identity_pose_6d_rows())
        self.register_buffer("init_betas", torch.zeros(1, 10))
        self.register_buffer("init_cam", torch.tensor([[0.9, 0.0, 0.0]]))
        self.transformer = TransformerDecoder(cfg)
        self.decpose_grot = nn.Linear(cfg.dim, 6)
        self.decshape = nn.Linear(cfg.dim, 10)
        self.deccam = nn.Linear(cfg.dim, 3)
        self.decpose_hands = nn.Linear(cfg.dim, 12)
        self.decpose = TokenClassifier(cfg)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, ...]:
        context = feats.flatten(2).transpose(1, 2)  # b c h w -> b (h w) c
        token = self.transformer(context)[:, 0]  # [B, dim]
        grot = self.decpose_grot(token)
        logits = self.decpose(token)
        hands = self.decpose_hands(token)
        betas = self.decshape(token) + self.init_betas  # broadcast over the batch, as expand(B, -1)
        cam = self.deccam(token) + self.init_cam
        return grot, hands, betas, cam, logits
