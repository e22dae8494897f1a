"""ResNet-50 in the torchvision module layout, without ``avgpool``/``fc`` (POCO-HMR's backbone).

State-dict keys: ``conv1``, ``bn1``, ``layer1..4.{k}.{conv1,bn1,conv2,bn2,conv3,bn3,downsample.0,downsample.1}``.
The Bottleneck keeps its stride on ``conv2`` (ResNet v1.5), as torchvision does. No pretrained weights are ever
downloaded; weights come from a POCO checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from hpsedge.models.backbones.blocks import Bottleneck

__all__ = ["ResNet", "ResNetBottleneck", "resnet50"]


#: the shared block (:mod:`hpsedge.models.backbones.blocks`); the old name stays importable
ResNetBottleneck = Bottleneck


class ResNet(nn.Module):
    """Bottleneck ResNet trunk: ``[B,3,H,W]`` → ``[B, 32·base_width, H/32, W/32]``.

    Args:
        layers: number of Bottlenecks in ``layer1..4`` (ResNet-50: 3, 4, 6, 3).
        base_width: stem width and ``layer1`` planes; later stages double it (ResNet-50: 64).
    """

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), base_width: int = 64) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError("expected 4 layer counts")
        self.conv1 = nn.Conv2d(3, base_width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._inplanes = base_width
        self.layer1 = self._make_layer(base_width, layers[0], stride=1)
        self.layer2 = self._make_layer(base_width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(base_width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(base_width * 8, layers[3], stride=2)
        self.out_channels = base_width * 8 * ResNetBottleneck.expansion

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        out_ch = planes * ResNetBottleneck.expansion
        downsample: nn.Module | None = None
        if stride != 1 or self._inplanes != out_ch:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, out_ch, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_ch),
            )
        layers: list[nn.Module] = [ResNetBottleneck(self._inplanes, planes, stride, downsample)]
        self._inplanes = out_ch
        layers.extend(ResNetBottleneck(out_ch, planes) for _ in range(1, blocks))
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def resnet50(tiny: bool = False) -> ResNet:
    """ResNet-50 trunk: ``[B,3,224,224]`` → ``[B,2048,7,7]``; ``tiny=True``: base width 8, one block per stage."""
    if tiny:
        return ResNet(layers=(1, 1, 1, 1), base_width=8)
    return ResNet()
