"""Residual blocks shared by the backbones (one definition, the official module names).

``Bottleneck`` is the ResNet v1.5 block of torchvision, which both POCO-HMR's ResNet-50 and the HRNets'
``layer1``/``incre_modules`` use: 1x1 → 3x3 (carries the stride) → 1x1 (×4 channels), residual, BatchNorm
with eps 1e-5 and momentum 0.1 (PyTorch's defaults, HRNet's ``BN_MOMENTUM``). State-dict keys:
``conv1``, ``bn1``, ``conv2``, ``bn2``, ``conv3``, ``bn3`` and ``downsample.{0,1}``.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["BN_EPS", "BN_MOMENTUM", "Bottleneck", "bn2d"]

BN_EPS = 1e-5
BN_MOMENTUM = 0.1


def bn2d(channels: int) -> nn.BatchNorm2d:
    """BatchNorm2d with the official eps/momentum (equal to PyTorch's defaults)."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class Bottleneck(nn.Module):
    """1x1 → 3x3 (carries the stride) → 1x1 bottleneck with a residual connection (expansion 4)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = bn2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = bn2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = bn2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)
