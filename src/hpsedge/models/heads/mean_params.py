"""Mean SMPL parameters that the IEF heads start from.

The official heads read ``smpl_mean_params.npz`` (SPIN) at construction and keep the values as buffers
``head.init_pose [1,144]``, ``head.init_shape [1,10]``, ``head.init_cam [1,3]``; a checkpoint carries them.
Without a checkpoint we use an identity body pose (T-pose), zero shape and camera (0.9, 0, 0); the
global orientation is a half turn about x, which puts SMPL's y-up body upright in an image whose y axis
points down (the official SPIN mean has the same root turn). A randomly initialised model thus starts
from a neutral upright body facing the camera.
"""

from __future__ import annotations

import torch
from torch import nn

NUM_JOINTS = 24
NPOSE = NUM_JOINTS * 6  # 6D rotation per joint


def identity_pose_6d() -> torch.Tensor:
    """[1, 144]: root = diag(1, −1, −1) (6D [1,0,0,−1,0,0]), every body joint the identity [1,0,0,1,0,0].

    The 6 numbers are the first two columns of the rotation as a 3×2 matrix read row-major.
    """
    root = torch.tensor([1.0, 0.0, 0.0, -1.0, 0.0, 0.0])
    body = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]).repeat(NUM_JOINTS - 1)
    return torch.cat([root, body]).unsqueeze(0)


def register_mean_params(module: nn.Module) -> None:
    """Register the three ``init_*`` buffers on ``module`` in the official order."""
    module.register_buffer("init_pose", identity_pose_6d())
    module.register_buffer("init_shape", torch.zeros(1, 10))
    module.register_buffer("init_cam", torch.tensor([[0.9, 0.0, 0.0]]))
