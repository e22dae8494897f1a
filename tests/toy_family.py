"""A model family that exists only in the tests: a tiny network and its spec, nothing else.

It has what no registered family combines: its own confidence output (``toy_conf``, a sigmoid), a second
weights file (the ``refiner.*`` tensors, given as ``refiner=PATH``) and an extra input (``frame_hw``, the
image's height and width, made by the runtime's ``image_hw`` rule). ``tests/test_toy_family.py`` registers the
spec for its module only and sends it through export build, the Predictor, val and the Triton export; nothing
in ``src`` names it.
"""

from __future__ import annotations

import torch
from torch import nn

from hpsedge.models.registry import POSE_OUTPUTS, ModelSpec, TensorDecl

NAME = "toy-conf"
CONFIDENCE = "toy_conf"


def rot6d_rows(x: torch.Tensor) -> torch.Tensor:
    """[..., 6] (a 3×2 matrix read row-major) → [..., 3, 3] rotation: Gram-Schmidt, third column = cross."""
    m = x.reshape(*x.shape[:-1], 3, 2)
    a1, a2 = m[..., 0], m[..., 1]
    b1 = a1 / torch.sqrt((a1 * a1).sum(-1, keepdim=True) + 1e-8)
    b2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = b2 / torch.sqrt((b2 * b2).sum(-1, keepdim=True) + 1e-8)
    # the cross product written out (no torch.cross: an export hazard)
    b3 = torch.stack([b1[..., 1] * b2[..., 2] - b1[..., 2] * b2[..., 1],
                      b1[..., 2] * b2[..., 0] - b1[..., 0] * b2[..., 2],
                      b1[..., 0] * b2[..., 1] - b1[..., 1] * b2[..., 0]], dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


class ToyNetwork(nn.Module):
    """image [N,3,32,32] + frame_hw [N,2] → pose, betas, cam, toy_conf (outputs in the spec's order)."""

    def __init__(self, spec: ModelSpec, tiny: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.head = nn.Linear(8 + 2, 24 * 6 + 10 + 3)
        self.refiner = nn.Sequential(nn.Linear(8 + 2, 8), nn.ReLU(), nn.Linear(8, 1))  # the second weights file
        self.register_buffer("init_cam", torch.tensor([[0.9, 0.0, 0.0]]))

    def forward(self, image: torch.Tensor, frame_hw: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = torch.relu(self.stem(image)).mean(dim=(2, 3))
        x = torch.cat([feats, frame_hw / 1000.0], dim=1)
        y = self.head(x)
        out = {
            "pose": rot6d_rows(y[:, :144].reshape(-1, 24, 6)),
            "betas": y[:, 144:154],
            "cam": y[:, 154:157] + self.init_cam,
            CONFIDENCE: torch.sigmoid(self.refiner(x)).reshape(-1),
        }
        return tuple(out[n] for n in self.spec.output_names)

    def example_inputs(self, batch: int = 1, seed: int | None = 0) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        h, w = self.spec.input_size
        image = torch.randn(batch, 3, h, w, generator=g)
        frame_hw = 200.0 + 1800.0 * torch.rand(batch, 2, generator=g)
        return image, frame_hw


def toy_spec() -> ModelSpec:
    """The family's whole description (registered by the test with ``register_model``)."""
    return ModelSpec(
        name=NAME,
        family="toy",
        description="test-only family: its own confidence output, a second weights file, an extra input",
        network="toy_family:ToyNetwork",
        input_size=(32, 32),
        extra_inputs=(TensorDecl("frame_hw", (2,), rule="image_hw"),),
        outputs=(*POSE_OUTPUTS, TensorDecl(CONFIDENCE, ())),
        preprocess={"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "color": "RGB", "square": True,
                    "bbox_scale": 1.1},
        postprocess={"camera": "weak_perspective_crop", "crop_focal_length": 5000.0, "full_focal": "diagonal",
                     "projection": "crop", "rotation": "rotmat", "sigma_score": None, "confidence": CONFIDENCE,
                     "joint_sets": ["smpl24"]},
        aux_prefixes=("refiner.",),
        aux_option="refiner",
        tolerance=1e-4,
    )
