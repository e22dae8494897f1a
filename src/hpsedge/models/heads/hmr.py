"""HMR and CLIFF iterative-error-feedback (IEF) heads (POCO's ``hmr_head`` and ``cliff_head``).

Three fixed iterations starting from the mean parameters; dropout layers are identity in eval mode and
no activations sit between the linear layers (exactly as in the official code). The loops unroll when
traced, so the exported graph has no control flow.
"""

from __future__ import annotations

import torch
from torch import nn

from hpsedge.models.geometry import rot6d_to_rotmat
from hpsedge.models.heads.mean_params import NPOSE, register_mean_params

N_ITER = 3


class _IEFHead(nn.Module):
    """Shared IEF regressor; ``extra_dim`` is 3 for CLIFF (bbox_info), 0 for HMR."""

    def __init__(self, num_features: int, extra_dim: int, hidden: int = 1024) -> None:
        super().__init__()
        register_mean_params(self)
        self.num_features = num_features
        self.extra_dim = extra_dim
        self.fc1 = nn.Linear(num_features + extra_dim + NPOSE + 13, hidden)
        self.drop1 = nn.Dropout()
        self.fc2 = nn.Linear(hidden, hidden)
        self.drop2 = nn.Dropout()
        self.decpose = nn.Linear(hidden, NPOSE)
        self.decshape = nn.Linear(hidden, 10)
        self.deccam = nn.Linear(hidden, 3)
        # as the official heads: small initial updates around the mean parameters
        nn.init.xavier_uniform_(self.decpose.weight, gain=0.01)
        nn.init.xavier_uniform_(self.decshape.weight, gain=0.01)
        nn.init.xavier_uniform_(self.deccam.weight, gain=0.01)

    @staticmethod
    def pool(features: torch.Tensor) -> torch.Tensor:
        # The official HMR head uses AvgPool2d(7) on a 7×7 map; a mean over H, W is the same there
        # and does not tie the graph to one input size.
        return features.mean(dim=(2, 3)) if features.dim() == 4 else features

    def _iterate(self, xf: torch.Tensor, extra: torch.Tensor | None) -> dict[str, torch.Tensor]:
        batch = xf.shape[0]
        pred_pose = self.init_pose.expand(batch, -1)
        pred_shape = self.init_shape.expand(batch, -1)
        pred_cam = self.init_cam.expand(batch, -1)
        parts = [xf] if extra is None else [xf, extra]
        for _ in range(N_ITER):
            xc = torch.cat([*parts, pred_pose, pred_shape, pred_cam], dim=1)
            xc = self.drop2(self.fc2(self.drop1(self.fc1(xc))))
            pred_pose = self.decpose(xc) + pred_pose
            pred_shape = self.decshape(xc) + pred_shape
            pred_cam = self.deccam(xc) + pred_cam
        rotmat = rot6d_to_rotmat(pred_pose).reshape(batch, 24, 3, 3)
        return {
            "pred_pose": rotmat,
            "pred_pose_6d": pred_pose,
            "pred_shape": pred_shape,
            "pred_cam": pred_cam,
            "uncert_feat": xf,
        }


class HMRHead(_IEFHead):
    """POCO-HMR head: pooled backbone feature (2048) + [pose 144, shape 10, cam 3] → 2205 inputs."""

    def __init__(self, num_features: int = 2048) -> None:
        super().__init__(num_features, extra_dim=0)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._iterate(self.pool(features), None)


class CliffHead(_IEFHead):
    """POCO-CLIFF head: input order [feat 2048, bbox_info 3, pose 144, shape 10, cam 3] → 2208."""

    def __init__(self, num_features: int = 2048) -> None:
        super().__init__(num_features, extra_dim=3)

    def forward(self, features: torch.Tensor, bbox_info: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._iterate(self.pool(features), bbox_info)
