"""HMR 2.0 against the official 4D-Humans code, its column 6D convention and its Lightning checkpoint.

The generic checks (key parity, ONNX parity and dynamic batch, FP16/INT8, build folder, runtime without a
confidence) come from tests/test_registry.py; this file holds what only HMR 2.0 has.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from hmr2_seeded import CONFIGS, fill_seeded, seeded_image
from hpsedge.errors import CheckpointError
from hpsedge.models.backbones.vit import ViTConfig
from hpsedge.models.checkpoints import build_model
from hpsedge.models.heads.token_head import TokenHeadConfig
from hpsedge.models.hmr2 import HMR2Network, rot6d_to_rotmat_columns
from hpsedge.models.registry import get_spec
from hpsedge.models.tokenhmr import rot6d_to_rotmat_rows

REFERENCE = Path(__file__).parent / "data" / "hmr2_official_reference.npz"
SPEC = get_spec("hmr2")


def _network(config: str) -> HMR2Network:
    cfg = CONFIGS[config]
    vit = ViTConfig(**cfg["vit"])
    head = TokenHeadConfig(**cfg["head"])
    return HMR2Network(SPEC, vit_cfg=vit, head_cfg=head).eval()


def _parity(config: str) -> dict[str, float]:
    ref = np.load(REFERENCE)
    model = _network(config)
    fill_seeded(model)
    with torch.no_grad():
        out = model.forward_dict(seeded_image(CONFIGS[config]["batch"]))
    rel = {}
    for name in ("pose", "betas", "cam"):
        want = ref[f"{config}/{name}"]
        got = out[name].numpy()
        assert got.shape == want.shape
        rel[name] = float(np.abs(got - want).max() / np.abs(want).max())
    feats = out["features"]
    rel["features_absmean"] = abs(float(feats.abs().mean()) - float(ref[f"{config}/features_absmean"])) / float(
        ref[f"{config}/features_absmean"]
    )
    return rel


@pytest.mark.parametrize("config", ["tiny", "reduced"])
def test_parity_with_official_code(config: str) -> None:
    """Official ViT + SMPLTransformerDecoderHead (seeded per-key weights) vs ours: ≤ 1e-3 relative (we get ~1e-6)."""
    rel = _parity(config)
    assert max(rel.values()) <= 1e-3, rel


@pytest.mark.slow
def test_parity_with_official_code_full_size() -> None:
    """The released sizes (ViT-H/16 × 32 blocks, 670 M parameters, ~2.7 GB in float32)."""
    rel = _parity("full")
    assert max(rel.values()) <= 1e-3, rel


def test_column_convention_is_the_transpose_of_tokenhmr_rows() -> None:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(5, 24, 6)).astype(np.float32))
    cols = rot6d_to_rotmat_columns(x)
    torch.testing.assert_close(cols, rot6d_to_rotmat_rows(x).transpose(-1, -2))
    # the 6D numbers of R are its first two COLUMNS: R → (R[:,0], R[:,1]) → R
    from scipy.spatial.transform import Rotation

    r = torch.from_numpy(Rotation.random(7, random_state=1).as_matrix().astype(np.float32))
    six = torch.cat([r[:, :, 0], r[:, :, 1]], dim=-1)
    torch.testing.assert_close(rot6d_to_rotmat_columns(six), r, atol=1e-6, rtol=1e-6)


def test_random_init_is_upright_identity_pose() -> None:
    model = HMR2Network(SPEC, tiny=True).eval()
    with torch.no_grad():
        for p in (model.smpl_head.decpose, model.smpl_head.decshape, model.smpl_head.deccam):
            p.weight.zero_()
            p.bias.zero_()
        pose, betas, cam = model(*model.example_inputs(batch=2))
    torch.testing.assert_close(pose[:, 0], torch.diag(torch.tensor([1.0, -1.0, -1.0])).expand(2, 3, 3))
    torch.testing.assert_close(pose[:, 1:], torch.eye(3).expand(2, 23, 3, 3))
    assert betas.abs().max() == 0 and torch.equal(cam, torch.tensor([[0.9, 0.0, 0.0]] * 2))


class OfficialHparams(dict):
    """Stands for the pickled config objects a Lightning checkpoint carries (never to be executed)."""


def _official_ckpt(path: Path, model: HMR2Network) -> dict[str, torch.Tensor]:
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    extra = {
        "initialized": torch.tensor(True),
        "discriminator.D_conv1.weight": torch.zeros(32, 9, 1, 1),
        "smpl.betas": torch.zeros(1, 10),
    }
    torch.save({"state_dict": {**extra, **sd}, "hyper_parameters": OfficialHparams(MODEL={"IMAGE_SIZE": 256}),
                "epoch": 35}, path)
    return sd


def test_official_lightning_checkpoint_loads_by_key_inertly(tmp_path: Path) -> None:
    torch.manual_seed(3)
    src = HMR2Network(SPEC, tiny=True)
    fill_seeded(src)
    sd = _official_ckpt(tmp_path / "hmr2.ckpt", src)
    model, spec, loaded = build_model("hmr2", checkpoint=tmp_path / "hmr2.ckpt", tiny=True)
    assert spec is SPEC and loaded is not None
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    assert sorted(loaded.dropped) == ["discriminator.D_conv1.weight", "initialized", "smpl.betas"]
    assert any(name.endswith("OfficialHparams") for name in loaded.stand_ins)  # read as data, never run
    # a TokenHMR checkpoint is not an HMR 2.0 one: one clear error naming the keys
    bad = {k.replace("decpose.", "decpose_grot."): v for k, v in sd.items()}
    torch.save({"state_dict": bad}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match=r"does not fit hmr2.*epoch=35-step=1000000.ckpt"):
        build_model("hmr2", checkpoint=tmp_path / "other.ckpt", tiny=True)


def test_runtime_says_it_reports_no_confidence(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from hpsedge.export.onnx import export_onnx
    from hpsedge.runtime.predictor import Predictor

    folder = export_onnx("hmr2", tmp_path / "hmr2", tiny=True).out_dir
    with caplog.at_level(logging.INFO, logger="hpsedge.runtime.predictor"):
        pred = Predictor.load(folder, backend="ort", device="cpu")
    assert pred.confidence_rule is None and "no uncertainty output" in caplog.text
    (person,) = pred.predict(np.zeros((200, 150, 3), np.uint8))
    assert person.confidence is None and person.score is None and person.sigma is None
    assert pred.manifest.postprocessing["rotation_6d"] == "columns" and pred.manifest.full_focal == "max_side"
