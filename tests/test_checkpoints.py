"""Checkpoint loading: accepted layouts, deliberate drops, clear errors, no code execution."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from hpsedge.errors import CheckpointError
from hpsedge.models.checkpoints import build_model, load_into
from hpsedge.models.zoo import ZOO

SPEC = ZOO["poco-pare"]


@pytest.fixture(scope="module")
def source() -> dict[str, torch.Tensor]:
    """A tiny poco-pare state dict with official-only extras (flow head, SMPL buffers, unused layers)."""
    torch.manual_seed(0)
    model = SPEC.build(tiny=True)
    sd = dict(model.state_dict())
    sd["flow_head.cond_layer.weight"] = torch.randn(512, 96)
    sd["flow_head.flow.mask"] = torch.ones(6, 9)
    sd["smpl.smpl.v_template"] = torch.zeros(6890, 3)
    sd["backbone.final_layer.weight"] = torch.zeros(24, 8, 1, 1)
    sd["head.temperature"] = torch.tensor(1.0)
    return sd


def _same_weights(model: torch.nn.Module, sd: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    "layout",
    ["raw", "prefixed", "state_dict", "model", "prefixed_in_state_dict", "model_then_state_dict"],
)
def test_checkpoint_layouts_load(tmp_path: Path, source: dict, layout: str) -> None:
    prefixed = {f"model.{k}": v for k, v in source.items()}
    obj = {
        "raw": source,
        "prefixed": prefixed,
        "state_dict": {"state_dict": source, "epoch": 3},
        "model": {"model": source},
        "prefixed_in_state_dict": {"state_dict": prefixed},
        "model_then_state_dict": {"model": {"state_dict": source}},
    }[layout]
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    model = SPEC.build(tiny=True)
    result = load_into(model, SPEC, path, tiny=True)
    assert _same_weights(model, source)
    assert sorted(result.dropped) == sorted(
        ["flow_head.cond_layer.weight", "flow_head.flow.mask", "smpl.smpl.v_template",
         "backbone.final_layer.weight", "head.temperature"]
    )
    assert (result.stripped_prefix == "model.") == layout.startswith("prefixed")
    assert len(result.sha256) == 64


def test_drops_are_logged_at_debug(tmp_path: Path, source: dict, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save(source, path)
    with caplog.at_level("DEBUG", logger="hpsedge"):
        load_into(SPEC.build(tiny=True), SPEC, path, tiny=True)
    assert any("dropped 5 checkpoint keys on purpose" in r.message and r.levelname == "DEBUG" for r in caplog.records)


def test_missing_key_is_named(tmp_path: Path, source: dict) -> None:
    sd = dict(source)
    del sd["uncert_head.uncert_fc2.bias"]
    torch.save(sd, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\): uncert_head.uncert_fc2.bias"):
        load_into(SPEC.build(tiny=True), SPEC, tmp_path / "c.pt", tiny=True)


def test_unexpected_key_and_shape_mismatch_are_named(tmp_path: Path, source: dict) -> None:
    sd = dict(source)
    sd["head.extra_layer.weight"] = torch.zeros(3)
    sd["head.cam_mlp.bias"] = torch.zeros(4)
    torch.save(sd, tmp_path / "c.pt")
    with pytest.raises(CheckpointError) as info:
        load_into(SPEC.build(tiny=True), SPEC, tmp_path / "c.pt", tiny=True)
    msg = info.value.message
    assert "unexpected key(s): head.extra_layer.weight" in msg
    assert "head.cam_mlp.bias (4,) vs expected (3,)" in msg


def test_wrong_model_checkpoint_says_which_model_it_fits(tmp_path: Path) -> None:
    # full-size keys and shapes of poco-pare, as meta-free zero tensors would be 130 MB: use the real
    # state dict of a full model (built once, saved once).
    torch.manual_seed(0)
    pare = ZOO["poco-pare"].build()
    torch.save(pare.state_dict(), tmp_path / "poco_pare.pt")
    with pytest.raises(CheckpointError, match="does not fit poco-cliff") as info:
        build_model("poco-cliff", checkpoint=tmp_path / "poco_pare.pt")
    assert info.value.hint == "this looks like a poco-pare checkpoint: use --model poco-pare"
    # and it loads as what it is
    _model, spec, loaded = build_model("poco-pare", checkpoint=tmp_path / "poco_pare.pt")
    assert spec.name == "poco-pare" and loaded is not None and not loaded.dropped


def test_truncated_checkpoint(tmp_path: Path, source: dict) -> None:
    path = tmp_path / "c.pt"
    torch.save(source, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_into(SPEC.build(tiny=True), SPEC, path, tiny=True)


@pytest.mark.parametrize("content", [b"", b"hello, this is not a checkpoint\n", b"\x89PNG\r\n\x1a\n" + b"0" * 64])
def test_non_checkpoint_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"empty|not a PyTorch checkpoint"):
        load_into(SPEC.build(tiny=True), SPEC, path, tiny=True)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_into(SPEC.build(tiny=True), SPEC, tmp_path / "nope.pt", tiny=True)
    with pytest.raises(CheckpointError, match="is a folder"):
        load_into(SPEC.build(tiny=True), SPEC, tmp_path, tiny=True)


def test_state_dict_of_non_tensors(tmp_path: Path) -> None:
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="holds no tensors"):
        load_into(SPEC.build(tiny=True), SPEC, tmp_path / "c.pt", tiny=True)


class _Evil:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_is_refused_without_running_it(tmp_path: Path, source: dict) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": source, "payload": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match="refusing to unpickle") as info:
        load_into(SPEC.build(tiny=True), SPEC, path, tiny=True)
    assert "--unsafe-pickle" in (info.value.hint or "")
    assert not marker.exists()


class HParams:
    """Stands for a pickled config object in a Lightning checkpoint."""

    def __init__(self) -> None:
        self.lr = 1e-4


def test_lightning_style_checkpoint_needs_opt_in(tmp_path: Path, source: dict) -> None:
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.items()}, "hyper_parameters": HParams()}, path)
    with pytest.raises(CheckpointError, match="pickled objects other than tensors") as info:
        load_into(SPEC.build(tiny=True), SPEC, path, tiny=True)
    assert "--unsafe-pickle" in (info.value.hint or "")
    model = SPEC.build(tiny=True)
    load_into(model, SPEC, path, unsafe_pickle=True, tiny=True)
    assert _same_weights(model, source)


def test_plain_model_accepts_poco_checkpoint_dropping_uncertainty(tmp_path: Path, source: dict) -> None:
    torch.save(source, tmp_path / "c.pt")
    plain = ZOO["pare"]
    model = plain.build(tiny=True)
    result = load_into(model, plain, tmp_path / "c.pt", tiny=True)
    assert any(k.startswith("uncert_head.") for k in result.dropped)


def test_no_checkpoint_warns_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="hpsedge"):
        model, _spec, loaded = build_model("poco-hmr", tiny=True)
    assert loaded is None and not model.training
    assert any("RANDOM weights" in r.message for r in caplog.records)


def test_checkpoints_are_read_with_weights_only_unless_opted_in(tmp_path: Path, source: dict,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``torch.load`` the loader makes uses torch's restricted unpickler (``weights_only=True``),
    except after ``--unsafe-pickle``; and the module never unpickles by itself (``pickle.load*``/``Unpickler``)."""
    import ast

    import hpsedge.models.checkpoints as ck

    calls: list[dict] = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(ck.torch, "load", spy)
    plain, lightning = tmp_path / "c.pt", tmp_path / "last.ckpt"
    torch.save(source, plain)
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.items()}, "hyper_parameters": HParams()}, lightning)
    load_into(SPEC.build(tiny=True), SPEC, plain, tiny=True)
    with pytest.raises(CheckpointError, match="pickled objects other than tensors"):
        load_into(SPEC.build(tiny=True), SPEC, lightning, tiny=True)
    assert len(calls) == 2 and all(c.get("weights_only") is True and "pickle_module" not in c for c in calls)
    calls.clear()
    model = SPEC.build(tiny=True)
    load_into(model, SPEC, lightning, unsafe_pickle=True, tiny=True)  # the opt-in: a full unpickle
    assert [c.get("weights_only") for c in calls] == [False] and _same_weights(model, source)
    # no direct unpickling anywhere in the module (by the syntax tree, not by a substring)
    tree = ast.parse(Path(ck.__file__).read_text())
    direct = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
              and n.value.id == "pickle" and n.attr in ("load", "loads", "Unpickler", "_Unpickler")]
    assert direct == [], f"hpsedge/models/checkpoints.py unpickles directly at line(s) {direct}"
