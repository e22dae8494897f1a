"""HRNet backbones with the exact module layout (state-dict keys) of POCO's two HRNet variants.

- ``mode="cls"``: POCO's ``hrnet_w48_cls`` (HRNet classification net, pooled feature ``[B, 2048]``), used by
  POCO-CLIFF.
- ``mode="pose"``: POCO's ``hrnet_w32`` (pose HRNet with ``DOWNSAMPLE=False, USE_CONV=True``): the three coarser
  branches are upsampled to the finest resolution and concatenated, ``[B, 480, H/4, W/4]``; used by POCO-PARE.

Module names and registration order reproduce the official state-dict keys one for one, including the ``None``
entries of the transition and fuse ``ModuleList``s that keep the indices. The two modules that exist in the
official code but are never called are not built: ``classifier`` (cls) and ``final_layer`` (pose); checkpoint
keys under them must be dropped before loading.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from hpsedge.models.backbones.blocks import Bottleneck, bn2d

__all__ = ["BasicBlock", "Bottleneck", "HighResolutionModule", "HighResolutionNet", "hrnet_w32_pose", "hrnet_w48_cls"]

# The official code uses momentum 0.1 (its BN_MOMENTUM, also PyTorch's default) and the default eps 1e-5:
# BN_MOMENTUM and bn2d come from blocks.py, with the Bottleneck the ResNet shares.

HRNetMode = Literal["cls", "pose"]


def _bn(channels: int) -> nn.BatchNorm2d:
    return bn2d(channels)


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=bias)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (expansion 1)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = _bn(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = _bn(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


BlockType = type[BasicBlock] | type[Bottleneck]


def _make_layer(block: BlockType, inplanes: int, planes: int, num_blocks: int, stride: int = 1) -> nn.Sequential:
    """A run of ``num_blocks`` blocks; the first one gets a [1x1 conv, BN] downsample when the shape changes."""
    downsample: nn.Module | None = None
    out_ch = planes * block.expansion
    if stride != 1 or inplanes != out_ch:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, out_ch, kernel_size=1, stride=stride, bias=False),
            _bn(out_ch),
        )
    layers: list[nn.Module] = [block(inplanes, planes, stride, downsample)]
    layers.extend(block(out_ch, planes) for _ in range(1, num_blocks))
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """One multi-resolution module: parallel BasicBlock branches, then an all-to-all fusion.

    ``fuse_layers[i][j]`` maps branch j to the resolution and width of branch i:
    - j > i: [1x1 conv C_j→C_i, BN, nearest upsample ×2^(j−i)]
    - j == i: ``None`` (identity)
    - j < i: (i−j) stride-2 3x3 convs; the intermediate ones are [conv C_j→C_j, BN, ReLU], the last one
      [conv C_j→C_i, BN].
    Output i is ReLU of the sum over j.
    """

    def __init__(self, channels: Sequence[int], num_blocks: int) -> None:
        super().__init__()
        if len(channels) < 2:
            raise ValueError("HighResolutionModule needs at least two branches")
        self.num_branches = len(channels)
        self.branches = nn.ModuleList(_make_layer(BasicBlock, c, c, num_blocks) for c in channels)
        fuse_layers: list[nn.ModuleList] = []
        for i, c_i in enumerate(channels):
            row: list[nn.Module | None] = []
            for j, c_j in enumerate(channels):
                if j > i:
                    row.append(
                        nn.Sequential(
                            nn.Conv2d(c_j, c_i, kernel_size=1, stride=1, padding=0, bias=False),
                            _bn(c_i),
                            nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
                        )
                    )
                elif j == i:
                    row.append(None)
                else:
                    steps: list[nn.Module] = []
                    for k in range(i - j):
                        if k == i - j - 1:
                            steps.append(nn.Sequential(_conv3x3(c_j, c_i, stride=2), _bn(c_i)))
                        else:
                            steps.append(nn.Sequential(_conv3x3(c_j, c_j, stride=2), _bn(c_j), nn.ReLU(inplace=False)))
                    row.append(nn.Sequential(*steps))
            fuse_layers.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse_layers)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        out: list[Tensor] = []
        for i, row in enumerate(self.fuse_layers):
            y: Tensor | None = None
            for j, x in enumerate(xs):
                term = x if j == i else row[j](x)
                y = term if y is None else y + term
            assert y is not None
            out.append(self.relu(y))
        return out


class HighResolutionNet(nn.Module):
    """HRNet with either POCO's classification head (``mode="cls"``) or its upsample-and-concat neck (``"pose"``).

    Args:
        mode: ``"cls"`` → pooled ``[B, final_channels]``; ``"pose"`` → ``[B, sum(widths), H/4, W/4]``.
        widths: channels of the four branches (stage k uses the first k of them).
        num_modules: HighResolutionModules in stages 2, 3, 4.
        num_blocks: BasicBlocks per branch in every module.
        stem_channels: output channels of the two stride-2 stem convolutions.
        layer1_planes: Bottleneck planes of ``layer1`` (its output has 4× as many channels).
        layer1_blocks: number of Bottlenecks in ``layer1``.
        head_channels: cls only; Bottleneck planes of ``incre_modules`` per branch (outputs are 4× these).
        final_channels: cls only; output channels of ``final_layer`` (the pooled feature size).
    """

    def __init__(
        self,
        mode: HRNetMode = "cls",
        widths: Sequence[int] = (48, 96, 192, 384),
        num_modules: Sequence[int] = (1, 4, 3),
        num_blocks: int = 4,
        stem_channels: int = 64,
        layer1_planes: int = 64,
        layer1_blocks: int = 4,
        head_channels: Sequence[int] = (32, 64, 128, 256),
        final_channels: int = 2048,
    ) -> None:
        super().__init__()
        if mode not in ("cls", "pose"):
            raise ValueError(f"mode must be 'cls' or 'pose', got {mode!r}")
        if len(widths) != 4 or len(num_modules) != 3 or len(head_channels) != 4:
            raise ValueError("expected 4 widths, 3 module counts and 4 head channel counts")
        self.mode: HRNetMode = mode
        widths = list(widths)

        # Stem: two stride-2 3x3 convolutions (H/4).
        self.conv1 = _conv3x3(3, stem_channels, stride=2)
        self.bn1 = _bn(stem_channels)
        self.conv2 = _conv3x3(stem_channels, stem_channels, stride=2)
        self.bn2 = _bn(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _make_layer(Bottleneck, stem_channels, layer1_planes, layer1_blocks)
        layer1_out = layer1_planes * Bottleneck.expansion

        self.transition1 = self._make_transition([layer1_out], widths[:2])
        self.stage2 = nn.Sequential(*(HighResolutionModule(widths[:2], num_blocks) for _ in range(num_modules[0])))
        self.transition2 = self._make_transition(widths[:2], widths[:3])
        self.stage3 = nn.Sequential(*(HighResolutionModule(widths[:3], num_blocks) for _ in range(num_modules[1])))
        self.transition3 = self._make_transition(widths[:3], widths[:4])
        self.stage4 = nn.Sequential(*(HighResolutionModule(widths, num_blocks) for _ in range(num_modules[2])))

        if mode == "cls":
            incre = [_make_layer(Bottleneck, c, h, 1) for c, h in zip(widths, head_channels, strict=True)]
            self.incre_modules = nn.ModuleList(incre)
            head_out = [h * Bottleneck.expansion for h in head_channels]
            self.downsamp_modules = nn.ModuleList(
                nn.Sequential(_conv3x3(c_in, c_out, stride=2, bias=True), _bn(c_out), nn.ReLU(inplace=True))
                for c_in, c_out in itertools.pairwise(head_out)
            )
            self.final_layer = nn.Sequential(
                nn.Conv2d(head_out[-1], final_channels, kernel_size=1, stride=1, padding=0, bias=True),
                _bn(final_channels),
                nn.ReLU(inplace=True),
            )
            self.out_channels = final_channels
        else:
            # Branch k (k = 1, 2, 3) is brought back to the finest resolution by k repetitions of
            # [bilinear ×2 (align_corners=True), 3x3 conv, BN, ReLU]: conv/BN at indices 4r+1 / 4r+2.
            self.upsample_stage_2 = self._make_upsample(widths[1], 1)
            self.upsample_stage_3 = self._make_upsample(widths[2], 2)
            self.upsample_stage_4 = self._make_upsample(widths[3], 3)
            self.out_channels = sum(widths)

    @staticmethod
    def _make_transition(pre: Sequence[int], cur: Sequence[int]) -> nn.ModuleList:
        """Adapt existing branches (``None`` when the width is unchanged) and spawn new ones from the last branch."""
        layers: list[nn.Module | None] = []
        for i, c_out in enumerate(cur):
            if i < len(pre):
                if pre[i] != c_out:
                    layers.append(nn.Sequential(_conv3x3(pre[i], c_out), _bn(c_out), nn.ReLU(inplace=True)))
                else:
                    layers.append(None)
            else:
                steps: list[nn.Module] = []
                n_steps = i + 1 - len(pre)
                for k in range(n_steps):
                    c_k = c_out if k == n_steps - 1 else pre[-1]
                    steps.append(nn.Sequential(_conv3x3(pre[-1], c_k, stride=2), _bn(c_k), nn.ReLU(inplace=True)))
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    @staticmethod
    def _make_upsample(channels: int, repeats: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        for _ in range(repeats):
            layers += [
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                _conv3x3(channels, channels),
                _bn(channels),
                nn.ReLU(inplace=True),
            ]
        return nn.Sequential(*layers)

    @staticmethod
    def _apply_transition(transition: nn.ModuleList, ys: list[Tensor]) -> list[Tensor]:
        # As in the official forward, every non-None transition is fed from the last (coarsest) branch. With
        # one width list shared by all stages, non-None entries only occur at new branch indices, so this is
        # equivalent to feeding branch i from ys[i] where it exists.
        return [ys[i] if t is None else t(ys[-1]) for i, t in enumerate(transition)]

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)

        ys = self._apply_transition(self.transition1, [x])
        ys = self.stage2(ys)
        ys = self.stage3(self._apply_transition(self.transition2, ys))
        ys = self.stage4(self._apply_transition(self.transition3, ys))

        if self.mode == "cls":
            y = self.incre_modules[0](ys[0])
            for i, down in enumerate(self.downsamp_modules):
                y = self.incre_modules[i + 1](ys[i + 1]) + down(y)
            y = self.final_layer(y)
            # Global average pool written as a mean so it does not depend on the traced spatial shape.
            return y.mean(dim=(2, 3))

        return torch.cat(
            [ys[0], self.upsample_stage_2(ys[1]), self.upsample_stage_3(ys[2]), self.upsample_stage_4(ys[3])],
            dim=1,
        )


def hrnet_w48_cls(tiny: bool = False) -> HighResolutionNet:
    """POCO's ``hrnet_w48_cls`` (POCO-CLIFF backbone): ``[B,3,224,224]`` → ``[B,2048]``.

    ``tiny=True`` keeps the topology and key pattern with small widths (output ``[B,128]``) for fast tests.
    """
    if tiny:
        return HighResolutionNet(
            "cls",
            widths=(8, 16, 32, 64),
            num_modules=(1, 1, 1),
            num_blocks=1,
            stem_channels=16,
            layer1_planes=16,
            layer1_blocks=1,
            head_channels=(4, 8, 16, 32),
            final_channels=128,
        )
    return HighResolutionNet("cls")


def hrnet_w32_pose(tiny: bool = False) -> HighResolutionNet:
    """POCO's ``hrnet_w32`` (POCO-PARE backbone): ``[B,3,224,224]`` → ``[B,480,56,56]``.

    ``tiny=True`` keeps the topology and key pattern with small widths (output ``[B,120,56,56]``).
    """
    if tiny:
        return HighResolutionNet(
            "pose",
            widths=(8, 16, 32, 64),
            num_modules=(1, 1, 1),
            num_blocks=1,
            stem_channels=16,
            layer1_planes=16,
            layer1_blocks=1,
        )
    return HighResolutionNet("pose", widths=(32, 64, 128, 256))
