"""POCO's uncertainty head (``poco_head``, ``UNCERT_LAYER=diff_branch``, sigmoid activations, SIGMA_DIM=1).

Two input styles, both conditioned on the image feature and the current pose estimate (rotation
matrices flattened row-major, 216 values):

* ``feat-pose-net`` (POCO-CLIFF): feature → Linear → sigmoid and pose → Linear → sigmoid, concatenated
  [feat, pose], then the layer stack.
* ``feat-pose`` (POCO-PARE, POCO-HMR): the layer stack over concat [feature, pose].

Every linear layer is followed by a sigmoid (also the hidden ones, as in the official code); dropout is
identity at inference. Output: σ [B, 24], one value per SMPL joint, in (0, 1).
"""

from __future__ import annotations

import torch
from torch import nn

POSE_DIM = 24 * 9


class PocoUncertaintyHead(nn.Module):
    def __init__(self, feat_dim: int, hidden: tuple[int, ...], inp_type: str = "feat-pose") -> None:
        super().__init__()
        if inp_type not in ("feat-pose", "feat-pose-net"):
            raise ValueError(f"unsupported uncertainty input type {inp_type!r}")
        self.inp_type = inp_type
        sizes = [*list(hidden), 24]
        if inp_type == "feat-pose-net":
            self.uncert_fc_poseNet = nn.Linear(POSE_DIM, hidden[0])
            self.uncert_fc_featNet = nn.Linear(feat_dim, hidden[0])
            in_dim = 2 * hidden[0]
            sizes = sizes[1:]
        else:
            in_dim = feat_dim + POSE_DIM
        self.num_layers = len(sizes)
        for i, out_dim in enumerate(sizes, start=1):
            setattr(self, f"uncert_fc{i}", nn.Linear(in_dim, out_dim))
            in_dim = out_dim

    def forward(self, uncert_feat: torch.Tensor, rotmat: torch.Tensor) -> torch.Tensor:
        pose = rotmat.reshape(rotmat.shape[0], -1)
        if self.inp_type == "feat-pose-net":
            x = torch.cat(
                [torch.sigmoid(self.uncert_fc_featNet(uncert_feat)), torch.sigmoid(self.uncert_fc_poseNet(pose))],
                dim=1,
            )
        else:
            x = torch.cat([uncert_feat, pose], dim=1)
        for i in range(1, self.num_layers + 1):
            x = torch.sigmoid(getattr(self, f"uncert_fc{i}")(x))
        return x
