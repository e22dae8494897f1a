"""PARE head as POCO configures it (``pare_head`` with all defaults; part-segmentation attention).

Two 3×3 conv branches over the 480×56×56 HRNet-W32 features: a part branch whose 25-channel output
(background + 24 parts) becomes 24 softmax attention maps, and an SMPL-feature branch that the maps pool
into one feature per joint. Pose comes from a per-joint locally connected layer, shape and camera from
linear layers over the pooled 64-d features. No IEF, no mean-parameter residual.

The official head also holds ``temperature`` (a softargmax buffer that this configuration never reads);
we leave it out and the checkpoint loader drops it.
"""

from __future__ import annotations

import torch
from torch import nn

from hpsedge.models.geometry import rot6d_to_rotmat
from hpsedge.models.heads.mean_params import NUM_JOINTS, register_mean_params

BN_MOMENTUM = 0.1


def _conv_branch(in_channels: int, filters: tuple[int, ...]) -> nn.Sequential:
    """[Conv3×3 (no bias), BN, ReLU] × len(filters), stride 1 (the official ``_make_conv_layer``)."""
    layers: list[nn.Module] = []
    for planes in filters:
        layers += [
            nn.Conv2d(in_channels, planes, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(planes, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
        ]
        in_channels = planes
    return nn.Sequential(*layers)


class LocallyConnected1x1(nn.Module):
    """The official ``LocallyConnected2d`` at kernel 1 over a [B, C, J, 1] map: one C→O linear map per joint.

    The weight keeps the official shape [1, O, C, J, 1, 1] so checkpoints load unchanged; the forward is a
    batched matmul over joints (out[b, j, o] = Σ_c W[o, c, j] · x[b, c, j]) instead of unfold + 6-D broadcast.
    """

    def __init__(self, in_channels: int, out_channels: int, num_joints: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, num_joints, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, J] → [B, J, O]."""
        w = self.weight[0, :, :, :, 0, 0].permute(2, 1, 0)  # [J, C, O]
        return torch.matmul(x.permute(2, 0, 1), w).permute(1, 0, 2)  # [J,B,C]@[J,C,O] → [B,J,O]


def keypoint_attention(features: torch.Tensor, attention_logits: torch.Tensor) -> torch.Tensor:
    """Softmax each of the J maps over its H·W pixels and pool features: [B,C,H,W] × [B,J,H,W] → [B,C,J]."""
    b, j, h, w = attention_logits.shape
    weights = torch.softmax(attention_logits.reshape(b, j, h * w), dim=-1)
    feats = features.reshape(b, -1, h * w)
    return torch.matmul(weights, feats.transpose(2, 1)).transpose(2, 1)


class PareHead(nn.Module):
    """POCO-PARE head. ``uncert_feat`` is the per-joint feature flattened channel-major ([B, 128·24])."""

    def __init__(
        self,
        num_features: int = 480,
        deconv_filters: tuple[int, ...] = (128, 128),
        smpl_features: int = 64,
    ) -> None:
        super().__init__()
        register_mean_params(self)  # present in official checkpoints, unused by this head
        self.keypoint_deconv_layers = _conv_branch(num_features, deconv_filters)
        self.smpl_deconv_layers = _conv_branch(num_features, deconv_filters)
        self.keypoint_final_layer = nn.Conv2d(deconv_filters[-1], NUM_JOINTS + 1, kernel_size=1)
        self.smpl_final_layer = nn.Conv2d(deconv_filters[-1], smpl_features, kernel_size=1)
        self.shape_mlp = nn.Linear(NUM_JOINTS * smpl_features, 10)
        self.cam_mlp = nn.Linear(NUM_JOINTS * smpl_features, 3)
        self.pose_mlp = LocallyConnected1x1(deconv_filters[-1], 6, NUM_JOINTS)
        self.output_channels = NUM_JOINTS * deconv_filters[-1]

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = features.shape[0]
        part_feats = self.keypoint_deconv_layers(features)
        segm = self.keypoint_final_layer(part_feats)  # [B, 25, 56, 56], channel 0 = background
        attention = segm[:, 1:]
        smpl_feats = self.smpl_deconv_layers(features)
        cam_shape = self.smpl_final_layer(smpl_feats)
        point_local = keypoint_attention(smpl_feats, attention)  # [B, 128, 24]
        cam_shape = keypoint_attention(cam_shape, attention)  # [B, 64, 24]
        cam_shape = cam_shape.flatten(1)  # channel-major: index c·24 + j
        pose6d = self.pose_mlp(point_local)  # [B, 24, 6]
        rotmat = rot6d_to_rotmat(pose6d).reshape(batch, 24, 3, 3)
        return {
            "pred_pose": rotmat,
            "pred_pose6d": pose6d,
            "pred_shape": self.shape_mlp(cam_shape),
            "pred_cam": self.cam_mlp(cam_shape),
            "pred_segm_mask": segm,
            "uncert_feat": point_local.reshape(batch, -1),
        }
