"""Backbones with the exact state-dict layout of the official POCO backbones."""

from hpsedge.models.backbones.hrnet import HighResolutionNet, hrnet_w32_pose, hrnet_w48_cls
from hpsedge.models.backbones.resnet import ResNet, resnet50

__all__ = ["HighResolutionNet", "ResNet", "hrnet_w32_pose", "hrnet_w48_cls", "resnet50"]
