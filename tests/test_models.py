"""The POCO networks: key names/shapes against the official lists, forward contract, geometry."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from hpsedge.errors import HpsedgeError
from hpsedge.models.geometry import cross, rot6d_to_rotmat
from hpsedge.models.zoo import ZOO, count_parameters, expected_state_shapes, get_spec

KEYS = Path(__file__).parent / "data" / "keys"
GOLDEN = {
    "poco-cliff": "poco_cliff_hrnet_w48_cls.json",
    "poco-pare": "poco_pare_hrnet_w32.json",
    "poco-hmr": "poco_hmr_resnet50_featpose_example.json",
}


def _golden(name: str) -> dict[str, dict]:
    return json.loads((KEYS / GOLDEN[name]).read_text())["state_dict"]


@pytest.mark.parametrize("name", list(GOLDEN))
def test_state_dict_equals_official_minus_deliberate_drops(name: str) -> None:
    spec = ZOO[name]
    golden = _golden(name)
    kept = {k: tuple(v["shape"]) for k, v in golden.items() if not (k.startswith(spec.drop_prefixes) or k in spec.drop_keys)}
    ours = expected_state_shapes(spec)
    assert list(ours) == list(kept), "key names or registration order differ"
    assert ours == kept
    dropped = sorted({".".join(k.split(".")[:2]) for k in golden if k not in kept})
    expected_drops = {
        "poco-cliff": ["backbone.classifier", "flow_head.cond_layer", "flow_head.flow", "smpl.smpl"],
        "poco-pare": ["backbone.final_layer", "flow_head.cond_layer", "flow_head.flow", "head.temperature", "smpl.smpl"],
        "poco-hmr": ["flow_head.cond_layer", "flow_head.flow", "smpl.smpl"],
    }[name]
    assert dropped == expected_drops


@pytest.mark.parametrize("name", list(GOLDEN))
def test_buffer_vs_parameter_kinds_match_official(name: str) -> None:
    spec = ZOO[name]
    golden = _golden(name)
    with torch.device("meta"):
        model = spec.build()
    params = {k for k, _ in model.named_parameters()}
    for key in expected_state_shapes(spec):
        assert (golden[key]["kind"] == "param") == (key in params), key


def test_parameter_counts_match_official_minus_unused_parts() -> None:
    cliff = json.loads((KEYS / GOLDEN["poco-cliff"]).read_text())["num_params_by_top"]
    # backbone + head + uncert_head, minus the unused W48 classifier (2048·1000 + 1000)
    assert count_parameters(ZOO["poco-cliff"]) == cliff["backbone"] + cliff["head"] + cliff["uncert_head"] - 2_049_000
    pare = json.loads((KEYS / GOLDEN["poco-pare"]).read_text())["num_params_by_top"]
    # minus the unused W32 final_layer (24·32 + 24)
    assert count_parameters(ZOO["poco-pare"]) == pare["backbone"] + pare["head"] + pare["uncert_head"] - 792


@pytest.mark.parametrize("name", list(ZOO))
def test_forward_contract_tiny(name: str) -> None:
    spec = ZOO[name]
    torch.manual_seed(0)
    model = spec.build(tiny=True).eval()
    with torch.no_grad():
        out = model(*model.example_inputs(batch=3))
    assert [tuple(t.shape) for t in out[:3]] == [(3, 24, 3, 3), (3, 10), (3, 3)]
    assert len(out) == len(spec.output_names)  # + sigma (POCO) or token_confidence (TokenHMR)
    rot = out[0]
    eye = torch.eye(3).expand_as(rot)
    assert torch.allclose(rot @ rot.transpose(-1, -2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(3, 24), atol=1e-5)
    if spec.has_sigma:
        sigma = out[3]
        assert sigma.shape == (3, 24) and bool(((sigma > 0) & (sigma < 1)).all())


def test_cliff_needs_bbox_info_and_uses_it() -> None:
    model = ZOO["poco-cliff"].build(tiny=True).eval()
    image, bbox_info = model.example_inputs(batch=2)
    with torch.no_grad():
        a = model(image, bbox_info)
        b = model(image, bbox_info + 1.0)
    assert not torch.allclose(a[2], b[2])
    with pytest.raises(ValueError, match="bbox_info"):
        model(image)


def test_mean_parameters_are_upright_t_pose_and_default_camera() -> None:
    head = ZOO["poco-cliff"].build(tiny=True).head
    rot = rot6d_to_rotmat(head.init_pose)
    assert torch.allclose(rot[1:], torch.eye(3).expand(23, 3, 3))  # body: T-pose
    assert torch.allclose(rot[0], torch.diag(torch.tensor([1.0, -1.0, -1.0])))  # root: upright in the image
    assert torch.allclose(head.init_cam, torch.tensor([[0.9, 0.0, 0.0]]))
    assert head.init_shape.abs().sum() == 0


def test_unknown_model_name_suggests_closest() -> None:
    with pytest.raises(HpsedgeError, match="unknown model 'poco-clif'") as info:
        get_spec("poco-clif")
    assert "poco-cliff" in (info.value.hint or "")


# ----------------------------------------------------------------------------------------- geometry
def test_rot6d_identity_and_hand_made_rotation() -> None:
    # 6 numbers = 3×2 matrix row-major; columns a1=(x0,x2,x4), a2=(x1,x3,x5)
    assert torch.allclose(rot6d_to_rotmat(torch.tensor([[1.0, 0, 0, 1, 0, 0]])), torch.eye(3)[None])
    # 90° about z: R = [[0,-1,0],[1,0,0],[0,0,1]]; its first two columns are (0,1,0) and (-1,0,0)
    x = torch.tensor([[0.0, -1.0, 1.0, 0.0, 0.0, 0.0]])
    expected = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    assert torch.allclose(rot6d_to_rotmat(x), expected, atol=1e-7)


def test_rot6d_gram_schmidt_of_unnormalised_columns() -> None:
    # a1 = (2,0,0) → b1 = x̂; a2 = (1,3,0) → minus its x̂ part → (0,3,0) → ŷ; b3 = ẑ
    x = torch.tensor([[2.0, 1.0, 0.0, 3.0, 0.0, 0.0]])
    assert torch.allclose(rot6d_to_rotmat(x), torch.eye(3)[None], atol=1e-7)
    # a2 tilted 45° in the x-y plane; a1 along (1,1,0)/√2 → b1=(1,1,0)/√2, b2 ⟂ b1 in that plane
    s = 1 / math.sqrt(2)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0, 0.0]])  # a1=(1,1,0), a2=(0,1,0)
    r = rot6d_to_rotmat(x)[0]
    assert torch.allclose(r[:, 0], torch.tensor([s, s, 0.0]), atol=1e-6)
    assert torch.allclose(r[:, 1], torch.tensor([-s, s, 0.0]), atol=1e-6)
    assert torch.allclose(r[:, 2], torch.tensor([0.0, 0.0, 1.0]), atol=1e-6)


def test_rot6d_matches_reference_formulation() -> None:
    torch.manual_seed(3)
    x = torch.randn(50, 6)
    a = x.view(-1, 3, 2)
    b1 = torch.nn.functional.normalize(a[:, :, 0])
    a2 = a[:, :, 1]
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1)
    ref = torch.stack((b1, b2, torch.linalg.cross(b1, b2, dim=-1)), dim=-1)
    assert torch.allclose(rot6d_to_rotmat(x), ref, atol=1e-6)


def test_cross_product() -> None:
    torch.manual_seed(1)
    a, b = torch.randn(10, 3), torch.randn(10, 3)
    assert torch.allclose(cross(a, b), torch.linalg.cross(a, b), atol=1e-6)
