"""TokenHMR's pose-tokenizer decoder and codebook (the part of ``tokenizer.pth`` used at inference).

Official source: ``saidwivedi/TokenHMR: tokenization/models/vanilla_pose_vqvae.py`` (``DecodeTokens`` →
``PoseSPDecoderV1``), ``quantize_cnn.py`` (``QuantizeEMAReset.dequantize_logits``) and ``resnet.py``
(``Resnet1D``/``ResConv1DBlock``). Module names follow ``tokenizer.pth["net"]`` minus the encoder:
``decoder.decoder.*`` and ``quantizer.codebook``; the network registers this module as ``tokenizer``.

Inference (``shared/reference/tokenhmr.md`` §3.4):

1. soft decoding: token probabilities P [B, T, K] @ codebook [K, D] → [B, T, D] (a dense mixture of all
   codes, never an argmax), permuted to [B, D, T];
2. Conv1d(D→W, k3p1), ReLU;
3. four nearest-neighbour "upsamples" that actually shrink the token axis, T=160 → 125 → 90 → 55 → 21, each
   followed by Conv1d(W→W, k3p1), ReLU. They are :class:`IndexResize` modules here: a gather over the
   fixed source indices ``nn.Upsample(size=n)`` uses, because ONNX ``Resize`` in ONNX Runtime picks other
   indices at 125→90 (pose error ≈ 2e-3);
4. ``Resnet1D`` (dilations 3 then 1; ReLU→conv k3→ReLU→conv k1 + skip) and a Conv1d(W→W, k3p1);
5. Conv1d(W→6, k3p1) → [B, 6, 21] → [B, 21, 6]: 6D rotations of SMPL joints 1..21 (no root, no hands).

The decoder has no normalisation and no dropout, so train/eval mode does not change it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NUM_BODY_JOINTS = 21


@dataclass(frozen=True)
class TokenizerConfig:
    """``hparams.ARCH`` values that shape the decoder (defaults: the released tokenizer)."""

    nb_code: int = 2048
    code_dim: int = 256
    width: int = 512
    depth: int = 2
    dilation_rate: int = 3
    down_t: int = 1
    token_size_mul: int = 4
    token_size_div: int = 4

    @property
    def num_tokens(self) -> int:
        """⌊21/10⌋·10 · 2^TOKEN_SIZE_MUL / 2^DOWN_T (160 for the release; official code: a float 160.0)."""
        return int(((NUM_BODY_JOINTS // 10) * 10) * (2**self.token_size_mul) / (2**self.down_t))

    @property
    def resize_sizes(self) -> list[int]:
        """Target lengths of the resize steps: ``np.linspace(21, T, div, endpoint=False, dtype=int)[::-1]``."""
        sizes = np.linspace(NUM_BODY_JOINTS, float(self.num_tokens), self.token_size_div, endpoint=False, dtype=int)
        return [int(s) for s in sizes[::-1]]


TOKENIZER_RELEASE = TokenizerConfig()
#: Narrow test configuration; the token count (160) and hence the four resize steps stay the official ones.
TOKENIZER_TINY = TokenizerConfig(nb_code=64, code_dim=16, width=32)


def nearest_indices(n_in: int, n_out: int) -> list[int]:
    """Source index of each output position of ``nn.Upsample(size=n_out, mode="nearest")`` along one axis.

    Computed by running PyTorch's own nearest interpolation on ``arange(n_in)`` (float32 arithmetic, the
    legacy ``floor(dst · in/out)`` rule), so the gather reproduces ``nn.Upsample`` bit for bit.
    """
    src = torch.arange(n_in, dtype=torch.float32, device="cpu").reshape(1, 1, n_in)
    out = F.interpolate(src, size=n_out, mode="nearest")
    return [int(v) for v in out.reshape(-1).tolist()]


class IndexResize(nn.Module):
    """``nn.Upsample(size=n_out)`` (nearest) on [B, C, L] as ``index_select`` over constant indices.

    The indices are a non-persistent buffer: not in the state dict (the official module has no tensors
    either) but an ONNX ``Gather`` initializer in the graph.
    """

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.n_in, self.n_out = n_in, n_out
        self.register_buffer("index", torch.tensor(nearest_indices(n_in, n_out), dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(2, self.index)

    def extra_repr(self) -> str:
        return f"{self.n_in} -> {self.n_out}"


class ResConv1DBlock(nn.Module):
    """ReLU → Conv1d(k3, dilation d, padding d) → ReLU → Conv1d(k1) → + input (``norm=False``)."""

    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.activation1 = nn.ReLU()
        self.activation2 = nn.ReLU()
        self.conv1 = nn.Conv1d(width, width, 3, 1, dilation, dilation)
        self.conv2 = nn.Conv1d(width, width, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.activation2(self.conv1(self.activation1(x)))) + x


class Resnet1D(nn.Module):
    """Blocks with dilations ``rate**i`` for i < depth, in reverse order (3, 1 for the release)."""

    def __init__(self, width: int, depth: int, rate: int) -> None:
        super().__init__()
        blocks = [ResConv1DBlock(width, rate**i) for i in range(depth)][::-1]
        self.model = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PoseDecoder(nn.Module):
    """``PoseSPDecoderV1`` for ``rot6d``: [B, D, T] code features → [B, 21, 6]."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        w = cfg.width
        layers: list[nn.Module] = [nn.Conv1d(cfg.code_dim, w, 3, 1, 1), nn.ReLU()]
        length = cfg.num_tokens
        for size in cfg.resize_sizes:
            layers += [IndexResize(length, size), nn.Conv1d(w, w, 3, 1, 1), nn.ReLU()]
            length = size
        if length != NUM_BODY_JOINTS:  # pragma: no cover - only for odd custom configs
            raise ValueError(f"decoder ends at length {length}, not {NUM_BODY_JOINTS} joints")
        for _ in range(cfg.down_t):
            layers.append(nn.Sequential(Resnet1D(w, cfg.depth, cfg.dilation_rate), nn.Conv1d(w, w, 3, 1, 1)))
        layers.append(nn.Conv1d(w, 6, 3, 1, 1))
        self.decoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(x).permute(0, 2, 1)


class Quantizer(nn.Module):
    """The codebook [K, D] as the official ``QuantizeEMAReset`` buffer ``codebook``."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        # The official buffer starts at zeros and is learned; random codes make a random-init model
        # produce non-trivial poses.
        self.register_buffer("codebook", torch.randn(cfg.nb_code, cfg.code_dim) * 0.5)

    def dequantize_logits(self, probs: torch.Tensor) -> torch.Tensor:
        """Soft decoding: [B, T, K] probabilities @ [K, D] codes → [B, T, D]."""
        return torch.matmul(probs, self.codebook)


class TokenDecoder(nn.Module):
    """``DecodeTokens``: token probabilities [B, T, K] → body-joint 6D [B, 21, 6]."""

    def __init__(self, cfg: TokenizerConfig = TOKENIZER_RELEASE) -> None:
        super().__init__()
        self.cfg = cfg
        self.decoder = PoseDecoder(cfg)
        self.quantizer = Quantizer(cfg)

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        feats = self.quantizer.dequantize_logits(probs)
        return self.decoder(feats.permute(0, 2, 1))


def tokenizer_config_from_shapes(shapes: dict[str, tuple[int, ...]]) -> TokenizerConfig:
    """Infer the decoder's hyper-parameters from the shapes of a ``tokenizer.pth`` ``net`` state dict.

    Code count and width from ``quantizer.codebook`` [K, D]; decoder width from ``decoder.decoder.0``
    [W, D, 3]; the number of resize steps (TOKEN_SIZE_DIV) from the conv indices before the residual
    stage; DOWN_T and DEPTH from the residual stage's keys. TOKEN_SIZE_MUL (the token count) leaves no trace in
    the decoder's tensors; it is the release value unless the head's token count says otherwise (checked by
    the caller against ``smpl_head.decpose.mixer_head.0.MLP_token.ff.0.weight``).
    """
    k, d = shapes["quantizer.codebook"]
    w = shapes["decoder.decoder.0.weight"][0]
    top = sorted({int(key.split(".")[2]) for key in shapes if key.startswith("decoder.decoder.")})
    res_stages = sorted({int(key.split(".")[2]) for key in shapes if key.startswith("decoder.decoder.") and ".model." in key})
    div = len([i for i in top if i > 0 and (not res_stages or i < res_stages[0])])
    depth = len({key.split(".")[5] for key in shapes if key.startswith("decoder.decoder.") and ".model." in key})
    return TokenizerConfig(
        nb_code=int(k),
        code_dim=int(d),
        width=int(w),
        depth=max(depth, 1),
        dilation_rate=TOKENIZER_RELEASE.dilation_rate,
        down_t=len(res_stages),
        token_size_mul=TOKENIZER_RELEASE.token_size_mul,
        token_size_div=div,
    )
