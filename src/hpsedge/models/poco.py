"""POCO's networks (CLIFF, PARE and HMR heads + POCO's uncertainty head) and the plain regressors.

One class for the family; which backbone and head it builds comes from the spec's ``arch`` options
(registered in :mod:`hpsedge.models.specs`): ``backbone`` (``hrnet_w48_cls`` | ``hrnet_w32_pose`` |
``resnet50``), ``head`` (``cliff`` | ``hmr`` | ``pare``) and ``uncertainty`` ((input type, hidden sizes) of
POCO's σ head, or None for the plain regressor).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from hpsedge.models.backbones import hrnet_w32_pose, hrnet_w48_cls, resnet50
from hpsedge.models.heads import CliffHead, HMRHead, PareHead, PocoUncertaintyHead

if TYPE_CHECKING:
    from hpsedge.models.registry import ModelSpec

_BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "hrnet_w48_cls": hrnet_w48_cls,
    "hrnet_w32_pose": hrnet_w32_pose,
    "resnet50": resnet50,
}
#: the IEF heads (PARE's takes sizes for its tiny configuration, see HPSNetwork)
_HEADS: dict[str, Callable[[int], nn.Module]] = {"cliff": CliffHead, "hmr": HMRHead}


class HPSNetwork(nn.Module):
    """backbone → regression head → (POCO) uncertainty head, with the official top-level names.

    ``forward(image[, bbox_info])`` returns the graph contract as a tuple:
    ``pose [N,24,3,3]``, ``betas [N,10]``, ``cam [N,3]`` and, for POCO models, ``sigma [N,24]``.
    The flow head of POCO is training-only and is not part of this module.
    """

    def __init__(self, spec: ModelSpec, tiny: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.tiny = tiny
        self.takes_bbox_info = "bbox_info" in spec.input_names
        self.backbone = _BACKBONES[str(spec.arch["backbone"])](tiny=tiny)
        feat = int(self.backbone.out_channels)
        head = str(spec.arch["head"])
        if head == "pare":
            pare = PareHead(feat, deconv_filters=(16, 16) if tiny else (128, 128), smpl_features=8 if tiny else 64)
            self.head: nn.Module = pare
            uncert_dim = pare.output_channels
        else:
            self.head = _HEADS[head](feat)
            uncert_dim = feat
        self.uncert_head: nn.Module | None = None
        if spec.arch.get("uncertainty") is not None:
            inp_type, hidden = spec.arch["uncertainty"]
            if tiny:
                hidden = tuple(max(8, h // 8) for h in hidden)
            self.uncert_head = PocoUncertaintyHead(uncert_dim, hidden, inp_type)

    def forward_dict(self, image: torch.Tensor, bbox_info: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The official-style output dict (for debugging and comparisons with the official code)."""
        feats = self.backbone(image)
        if self.takes_bbox_info:
            if bbox_info is None:
                raise ValueError(f"{self.spec.name} needs bbox_info")
            out = self.head(feats, bbox_info)
        else:
            out = self.head(feats)
        if self.uncert_head is not None:
            out["var_pose"] = self.uncert_head(out["uncert_feat"], out["pred_pose"])
        return out

    def forward(self, image: torch.Tensor, bbox_info: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        out = self.forward_dict(image, bbox_info)
        result = (out["pred_pose"], out["pred_shape"], out["pred_cam"])
        if self.uncert_head is not None:
            result = (*result, out["var_pose"])
        return result

    def example_inputs(self, batch: int = 1, seed: int | None = 0) -> tuple[torch.Tensor, ...]:
        """Random inputs of the right shapes (normalised-image-like values; plausible bbox_info)."""
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        h, w = self.spec.input_size
        image = torch.randn(batch, 3, h, w, generator=g)
        if not self.takes_bbox_info:
            return (image,)
        bbox_info = torch.randn(batch, 3, generator=g) * torch.tensor([0.3, 0.3, 1.0])
        return image, bbox_info
