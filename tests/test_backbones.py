"""Backbones: exact state-dict layout of the official POCO backbones, parameter counts and output shapes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from hpsedge.models.backbones import hrnet_w32_pose, hrnet_w48_cls, resnet50

KEYS_DIR = Path(__file__).parent / "data" / "keys"

# (constructor, golden file, prefix of the golden backbone keys we deliberately do not build,
#  golden backbone parameter count (official module, unused parts included), output shape at B=1, tiny at B=2)
CASES = {
    "hrnet_w48_cls": (hrnet_w48_cls, "poco_cliff_hrnet_w48_cls", "backbone.classifier.", 77_469_864, (1, 2048), (2, 128)),
    "hrnet_w32": (hrnet_w32_pose, "poco_pare_hrnet_w32", "backbone.final_layer.", 31_409_752, (1, 480, 56, 56), (2, 120, 56, 56)),
    "resnet50": (resnet50, "poco_hmr_resnet50_featpose_example", None, 23_508_032, (1, 2048, 7, 7), (2, 256, 7, 7)),
}


def _golden(name: str) -> tuple[dict[str, dict], dict[str, dict]]:
    """(kept, dropped) golden ``backbone.*`` entries, in registration order."""
    _, fname, drop, *_ = CASES[name]
    sd = json.loads((KEYS_DIR / f"{fname}.json").read_text())["state_dict"]
    backbone = {k: v for k, v in sd.items() if k.startswith("backbone.")}
    kept = {k: v for k, v in backbone.items() if drop is None or not k.startswith(drop)}
    dropped = {k: v for k, v in backbone.items() if k not in kept}
    return kept, dropped


def _numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


_MODELS: dict[tuple[str, bool], torch.nn.Module] = {}


def _model(name: str, tiny: bool = False) -> torch.nn.Module:
    """Build once per session (the full HRNet-W48 takes about a second to construct)."""
    key = (name, tiny)
    if key not in _MODELS:
        ctor: Callable[..., torch.nn.Module] = CASES[name][0]
        torch.manual_seed(0)
        _MODELS[key] = ctor(tiny=tiny).eval()
    return _MODELS[key]


def _ours(model: torch.nn.Module) -> dict[str, dict]:
    params = {n for n, _ in model.named_parameters()}
    return {
        f"backbone.{k}": {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch."), "kind": "param" if k in params else "buffer"}
        for k, v in model.state_dict().items()
    }


@pytest.mark.parametrize("name", list(CASES))
def test_state_dict_matches_official_layout(name: str) -> None:
    kept, dropped = _golden(name)
    ours = _ours(_model(name))
    # Same names in the same registration order ...
    assert list(ours) == list(kept)
    # ... with the same shapes, dtypes and param/buffer kinds.
    for k, g in kept.items():
        assert ours[k] == {"shape": g["shape"], "dtype": g["dtype"], "kind": g["kind"]}, k
    if CASES[name][2] is None:
        assert not dropped
    else:
        assert dropped, "the golden file should contain the deliberately dropped keys"


@pytest.mark.parametrize("name", list(CASES))
def test_parameter_count(name: str) -> None:
    kept, dropped = _golden(name)
    official_total = CASES[name][3]
    golden_params = sum(_numel(v["shape"]) for v in {**kept, **dropped}.values() if v["kind"] == "param")
    assert golden_params == official_total
    dropped_params = sum(_numel(v["shape"]) for v in dropped.values() if v["kind"] == "param")
    ours = sum(p.numel() for p in _model(name).parameters())
    assert ours == official_total - dropped_params


def test_dropped_parts_are_the_unused_heads() -> None:
    # classifier = Linear(2048, 1000); final_layer = Conv2d(32, 24, 1) with bias.
    _, dropped = _golden("hrnet_w48_cls")
    assert {k: v["shape"] for k, v in dropped.items()} == {
        "backbone.classifier.weight": [1000, 2048],
        "backbone.classifier.bias": [1000],
    }
    _, dropped = _golden("hrnet_w32")
    assert {k: v["shape"] for k, v in dropped.items()} == {
        "backbone.final_layer.weight": [24, 32, 1, 1],
        "backbone.final_layer.bias": [24],
    }


@pytest.mark.parametrize("name", list(CASES))
def test_full_output_shape(name: str) -> None:
    model = _model(name)
    expected = CASES[name][4]
    torch.manual_seed(0)
    with torch.no_grad():
        y = model(torch.randn(1, 3, 224, 224))
    assert tuple(y.shape) == expected
    assert model.out_channels == expected[1]
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", list(CASES))
def test_tiny_output_shape_and_key_pattern(name: str) -> None:
    tiny = _model(name, tiny=True)
    expected = CASES[name][5]
    torch.manual_seed(0)
    with torch.no_grad():
        y = tiny(torch.randn(2, 3, 224, 224))
    assert tuple(y.shape) == expected
    assert tiny.out_channels == expected[1]
    assert torch.isfinite(y).all()
    # Same topology with fewer modules/blocks: every tiny key names a module that exists in the full model.
    tiny_keys = list(tiny.state_dict())
    full_keys = list(_model(name).state_dict())
    assert set(tiny_keys) <= set(full_keys)
    assert [k for k in full_keys if k in set(tiny_keys)] == tiny_keys
    assert {k.split(".")[0] for k in tiny_keys} == {k.split(".")[0] for k in full_keys}


def test_batch_consistency_tiny() -> None:
    """Eval-mode BN: each sample's output does not depend on the rest of the batch."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    for name in CASES:
        model = _model(name, tiny=True)
        with torch.no_grad():
            both = model(x)
            first = model(x[:1])
        torch.testing.assert_close(both[:1], first, rtol=1e-5, atol=1e-5)


def test_cls_pool_is_a_mean() -> None:
    """The cls head pools with a mean over H, W, so it also runs at other input sizes."""
    model = _model("hrnet_w48_cls", tiny=True)
    with torch.no_grad():
        y = model(torch.randn(1, 3, 256, 192))
    assert tuple(y.shape) == (1, 128)


def test_bad_mode_rejected() -> None:
    from hpsedge.models.backbones import HighResolutionNet

    with pytest.raises(ValueError):
        HighResolutionNet(mode="seg")  # type: ignore[arg-type]
