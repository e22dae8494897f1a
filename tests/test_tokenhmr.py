"""TokenHMR network: official key names/shapes, architecture facts, 6D conventions, token confidence."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hpsedge.models.backbones.vit import VIT_H
from hpsedge.models.tokenhmr import rot6d_to_rotmat_rows, token_confidence
from hpsedge.models.tokenizer import (
    TOKENIZER_RELEASE,
    IndexResize,
    nearest_indices,
    tokenizer_config_from_shapes,
)
from hpsedge.models.zoo import ZOO, count_parameters, expected_state_shapes
from hpsedge.runtime import confidence as rt_confidence
from hpsedge.runtime import rotations

KEYS = Path(__file__).parent / "data" / "keys"
SPEC = ZOO["tokenhmr"]


def _golden() -> dict:
    return json.loads((KEYS / "tokenhmr_release_state_dict.json").read_text())


def _golden_net() -> dict:
    return json.loads((KEYS / "tokenhmr_tokenizer_pth_net.json").read_text())


# ------------------------------------------------------------------------------------------ key parity
def test_state_dict_equals_official_minus_deliberate_drops() -> None:
    """backbone.*/smpl_head.* = the Lightning state dict's; tokenizer.* = tokenizer.pth's net, same order."""
    golden = _golden()["state_dict"]
    net = _golden_net()["net"]
    kept = {k: tuple(v["shape"]) for k, v in golden.items() if not (k.startswith(SPEC.drop_prefixes) or k in SPEC.drop_keys)}
    kept.update({f"tokenizer.{k}": tuple(v) for k, v in net.items() if not f"tokenizer.{k}".startswith(SPEC.drop_prefixes)})
    ours = expected_state_shapes(SPEC)
    assert list(ours) == list(kept), "key names or registration order differ"
    assert ours == kept
    dropped = sorted({k.split(".")[0] for k in golden if k not in kept})
    assert dropped == ["initialized", "smpl"]
    assert sorted({k.split(".")[0] for k in net if f"tokenizer.{k}" not in kept}) == ["encoder"]
    assert len([k for k in ours if k.startswith("tokenizer.")]) == 23  # 22 decoder tensors + codebook


def test_buffer_vs_parameter_kinds_match_official() -> None:
    golden = _golden()["state_dict"]
    with torch.device("meta"):
        model = SPEC.build()
    params = {k for k, _ in model.named_parameters()}
    buffers = {k for k, _ in model.named_buffers()}
    for key in expected_state_shapes(SPEC):
        if key in golden:
            assert (golden[key]["kind"] == "param") == (key in params), key
    assert "tokenizer.quantizer.codebook" in buffers  # a buffer in QuantizeEMAReset too
    # the resize indices are non-persistent: graph constants, not checkpoint keys
    assert {k for k in buffers if k.endswith(".index")} and not any(k.endswith(".index") for k in expected_state_shapes(SPEC))


def test_parameter_counts_match_official() -> None:
    g = _golden()
    top = g["num_params_by_top"]
    assert count_parameters(SPEC) == top["backbone"] + top["smpl_head"] + g["tokenizer_decoder_params"] == 687_636_837
    with torch.device("meta"):
        model = SPEC.build()
    assert sum(p.numel() for p in model.backbone.parameters()) == 630_912_000
    assert sum(b.numel() for k, b in model.state_dict().items() if k.startswith("smpl_head.init_")) == 157


def test_architecture_facts() -> None:
    with torch.device("meta"):
        model = SPEC.build()
    conv = model.backbone.patch_embed.proj
    assert (conv.kernel_size, conv.stride, conv.padding) == ((16, 16), (16, 16), (2, 2))
    assert VIT_H.grid == (16, 12) and VIT_H.num_positions == 193
    assert model.backbone.blocks[0].norm1.eps == 1e-6 and model.backbone.last_norm.eps == 1e-6
    assert model.smpl_head.transformer.transformer.layers[0][0].norm.eps == 1e-5
    assert model.backbone.blocks[0].mlp.act.approximate == "none"  # exact GELU
    assert TOKENIZER_RELEASE.num_tokens == 160 and TOKENIZER_RELEASE.resize_sizes == [125, 90, 55, 21]
    dec = model.tokenizer.decoder.decoder
    assert [dec[i].n_out for i in (2, 5, 8, 11)] == [125, 90, 55, 21]
    res = dec[14][0].model
    assert res[0].conv1.dilation == (3,) and res[0].conv1.padding == (3,) and res[1].conv1.dilation == (1,)


def test_tokenizer_hyperparameters_from_shapes() -> None:
    net = {k: tuple(v) for k, v in _golden_net()["net"].items()}
    cfg = tokenizer_config_from_shapes(net)
    assert cfg == TOKENIZER_RELEASE
    assert cfg.num_tokens == 160


def test_forward_shapes_and_rotations_tiny() -> None:
    torch.manual_seed(0)
    model = SPEC.build(tiny=True).eval()
    with torch.no_grad():
        out = model(*model.example_inputs(batch=3))
        full = model.forward_dict(*model.example_inputs(batch=3))
    assert [tuple(t.shape) for t in out] == [(3, 24, 3, 3), (3, 10), (3, 3), (3,)]
    rot = out[0]
    assert torch.allclose(rot @ rot.transpose(-1, -2), torch.eye(3).expand_as(rot), atol=1e-5)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(3, 24), atol=1e-5)
    assert full["features"].shape == (3, 64, 16, 12)
    assert full["token_probs"].shape == (3, 160, 64)
    assert torch.allclose(full["token_probs"].sum(-1), torch.ones(3, 160), atol=1e-5)


def test_pose_assembly_order_hands_are_joints_22_and_23() -> None:
    """24 = [global | 21 tokenizer joints | 2 hand read-outs] + mean, as SMPLTokenDecoderHead composes it."""
    torch.manual_seed(1)
    model = SPEC.build(tiny=True).eval()
    with torch.no_grad():
        out = model.forward_dict(*model.example_inputs(batch=2))
        head = model.smpl_head
        (image,) = model.example_inputs(batch=2)
        grot, hands, _, _, logits = head(model.backbone(image))
        body = model.tokenizer(logits.softmax(-1)).reshape(2, -1)
    init = head.init_body_pose
    assert torch.allclose(out["pose6d"][:, :6], grot + init[:, :6], atol=1e-6)
    assert torch.allclose(out["pose6d"][:, 6:132], body + init[:, 6:132], atol=1e-6)
    assert torch.allclose(out["pose6d"][:, 132:], hands + init[:, 132:], atol=1e-6)
    ref = rotations.rot6d_to_rotmat_rows(out["pose6d"].reshape(2, 24, 6).numpy())
    np.testing.assert_allclose(out["pose"].numpy(), ref, atol=1e-5)


def test_query_token_equals_embedding_of_zero_input() -> None:
    """The constant query = official to_token_embedding(zeros) + pos_embedding."""
    torch.manual_seed(2)
    dec = SPEC.build(tiny=True).smpl_head.transformer
    with torch.no_grad():
        official = dec.to_token_embedding(torch.zeros(4, 1, 1)) + dec.pos_embedding
        ours = dec.query().expand(4, -1, -1)
    assert torch.equal(official, ours)


def test_random_init_mean_pose_is_upright_t_pose_in_row_convention() -> None:
    rot = rot6d_to_rotmat_rows(SPEC.build(tiny=True).smpl_head.init_body_pose.reshape(24, 6))
    assert torch.allclose(rot[0], torch.diag(torch.tensor([1.0, -1.0, -1.0])))
    assert torch.allclose(rot[1:], torch.eye(3).expand(23, 3, 3))


# ------------------------------------------------------------------------------------ resize as gather
def test_resize_indices_equal_official_maps_and_nn_upsample() -> None:
    maps = json.loads((KEYS / "tokenhmr_tokenizer_upsample_index_maps.json").read_text())["maps"]
    assert set(maps) == {"160->125", "125->90", "90->55", "55->21"}
    for key, expected in maps.items():
        n_in, n_out = (int(v) for v in key.split("->"))
        assert nearest_indices(n_in, n_out) == expected
        assert expected == [(i * n_in) // n_out for i in range(n_out)]  # ⌊i·in/out⌋ in exact arithmetic
        x = torch.randn(2, 5, n_in)
        assert torch.equal(IndexResize(n_in, n_out)(x), torch.nn.Upsample(size=n_out)(x))


def test_onnxruntime_float32_resize_rule_differs_at_125_to_90() -> None:
    """Why the gather: ORT's float32 dst/(out/in) lands below the integer at outputs 18, 36, 72 (reference §5)."""
    ort_rule = [int(np.floor(np.float32(i) / (np.float32(90) / np.float32(125)))) for i in range(90)]
    torch_rule = nearest_indices(125, 90)
    diff = [i for i in range(90) if ort_rule[i] != torch_rule[i]]
    assert diff == [18, 36, 72]


# --------------------------------------------------------------------------------------- 6D conventions
def _rot_z(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_x(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


@pytest.mark.parametrize("r", [np.eye(3), _rot_z(90), _rot_x(30) @ _rot_z(-120), np.diag([1.0, -1.0, -1.0])])
def test_row_convention_against_hand_made_rotations(r: np.ndarray) -> None:
    six_rows = r[:2, :].reshape(6)  # TokenHMR: the first two ROWS
    got = rot6d_to_rotmat_rows(torch.tensor(six_rows, dtype=torch.float32)[None]).numpy()[0]
    np.testing.assert_allclose(got, r, atol=1e-6)
    np.testing.assert_allclose(rotations.rot6d_to_rotmat_rows(six_rows), r, atol=1e-12)
    # the SPIN/POCO column convention reads its own vector (first two columns, interleaved) ...
    six_cols = r[:, :2].reshape(6)
    np.testing.assert_allclose(rotations.rot6d_to_rotmat(six_cols), r, atol=1e-12)
    from hpsedge.models.geometry import rot6d_to_rotmat

    np.testing.assert_allclose(rot6d_to_rotmat(torch.tensor(six_cols, dtype=torch.float32)[None]).numpy()[0], r, atol=1e-6)


def test_row_convention_hand_made_90_degrees_about_z() -> None:
    # R = [[0,-1,0],[1,0,0],[0,0,1]]: rows (0,-1,0) and (1,0,0)
    x = torch.tensor([[0.0, -1.0, 0.0, 1.0, 0.0, 0.0]])
    expected = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    assert torch.allclose(rot6d_to_rotmat_rows(x), expected, atol=1e-7)
    # the same six numbers as columns (HMR 2.0's stacking) give the transpose: conventions are not interchangeable
    assert torch.allclose(rot6d_to_rotmat_rows(x).transpose(-1, -2), expected.transpose(-1, -2))
    assert not np.allclose(rotations.rot6d_to_rotmat(x.numpy()), expected.numpy(), atol=1e-3)


def test_row_convention_gram_schmidt_of_unnormalised_rows() -> None:
    x = torch.tensor([[2.0, 0.0, 0.0, 1.0, 3.0, 0.0]])  # a1=(2,0,0) → x̂; a2=(1,3,0) → ŷ
    assert torch.allclose(rot6d_to_rotmat_rows(x), torch.eye(3)[None], atol=1e-7)
    torch.manual_seed(3)
    v = torch.randn(50, 6)
    a1, a2 = v[:, :3], v[:, 3:]
    b1 = torch.nn.functional.normalize(a1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1)
    ref = torch.stack((b1, b2, torch.linalg.cross(b1, b2, dim=-1)), dim=-2)  # pytorch3d rotation_6d_to_matrix
    assert torch.allclose(rot6d_to_rotmat_rows(v), ref, atol=1e-6)


# ------------------------------------------------------------------------------------ token confidence
def test_token_confidence_extremes_and_monotonicity() -> None:
    k = 2048
    uniform = torch.zeros(2, 160, k)
    onehot = torch.full((2, 160, k), -1e4)
    onehot[..., 7] = 0.0
    assert torch.allclose(token_confidence(uniform), torch.zeros(2), atol=1e-6)
    assert torch.allclose(token_confidence(onehot), torch.ones(2), atol=1e-6)
    torch.manual_seed(4)
    logits = torch.randn(1, 160, k)
    temps = [4.0, 1.0, 0.25, 0.05]
    conf = [float(token_confidence(logits / t)) for t in temps]
    assert conf == sorted(conf) and conf[0] < 0.01 and conf[-1] > 0.5  # sharper → more confident
    # half the tokens certain, half uniform → 1/2
    mixed = torch.cat([onehot[:1, :80], uniform[:1, :80]], dim=1)
    assert float(token_confidence(mixed)) == pytest.approx(0.5, abs=1e-5)
    # the numpy twin in the runtime agrees
    probs = torch.softmax(logits / 0.25, -1).numpy()
    assert rt_confidence.token_confidence(probs)[0] == pytest.approx(conf[2], abs=1e-5)


def _blob_prototypes(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    protos = torch.zeros(n, 3, h, w)
    for c in range(n):
        for _ in range(4):
            cx, cy = torch.rand(2, generator=g) * 1.6 - 0.8
            protos[c] += torch.randn(3, 1, 1, generator=g) * torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.05)
    return protos


def test_token_confidence_falls_when_the_crop_is_occluded_by_noise() -> None:
    """A meaningful construction with a tiny model (random weights alone give near-uniform tokens, conf ≈ 0).

    Six synthetic "bodies" (blob images) each map to their own 160 target codes. The token head is
    trained on clean, jittered views for a few seconds (backbone frozen), so its token distributions
    depend on what it sees. On held-out views, noise patches covering 25 % and 50 % of the crop must
    lower the confidence step by step, as the classification accuracy falls. This can fail: a confidence
    that ignores the distributions' spread, or a head that is confident whatever it sees, would not pass.
    It says nothing about calibration, which needs the released weights and labelled data.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many tiny ops: one thread is several times faster on a busy 2-core machine
    try:
        _occlusion_experiment()
    finally:
        torch.set_num_threads(threads)


def _occlusion_experiment() -> None:
    torch.manual_seed(0)
    model = SPEC.build(tiny=True).eval()
    h, w = SPEC.input_size
    n_cls, k, t = 6, model.tokenizer.cfg.nb_code, 160
    protos = _blob_prototypes(n_cls, h, w, seed=1)
    targets = torch.stack([(torch.arange(t) * 5 + c * 11) % k for c in range(n_cls)])

    def views(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        c = torch.arange(n) % n_cls
        x = protos[c] * (1 + 0.1 * torch.randn(n, 1, 1, 1, generator=g)) + 0.1 * torch.randn(n, 3, h, w, generator=g)
        return x, c

    def occlude(x: torch.Tensor, frac: float, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        x = x.clone()
        ph, pw = int(h * frac**0.5), int(w * frac**0.5)
        for i in range(x.shape[0]):
            y0 = int(torch.randint(0, h - ph + 1, (1,), generator=g))
            x0 = int(torch.randint(0, w - pw + 1, (1,), generator=g))
            x[i, :, y0 : y0 + ph, x0 : x0 + pw] = torch.randn(3, ph, pw, generator=g)
        return x

    x_train, c_train = views(36, seed=2)
    with torch.no_grad():
        feats = model.backbone(x_train)
    opt = torch.optim.Adam(model.smpl_head.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(3)
    for _ in range(80):
        idx = torch.randint(0, 36, (12,), generator=g)
        logits = model.smpl_head(feats[idx])[-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, k), targets[c_train[idx]].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x_test, c_test = views(12, seed=99)
    conf, acc = [], []
    with torch.no_grad():
        for frac in (0.0, 0.25, 0.5):
            x = occlude(x_test, frac, seed=5) if frac else x_test
            out = model.forward_dict(x)
            conf.append(float(out["token_confidence"].mean()))
            acc.append(float((out["logits"].argmax(-1) == targets[c_test]).float().mean()))
    assert acc[0] > 0.9, f"the construction did not train (clean token accuracy {acc[0]:.2f})"
    assert acc[0] > acc[1] > acc[2]
    assert conf[0] > conf[1] > conf[2], conf
    assert conf[0] - conf[2] > 0.08, conf
