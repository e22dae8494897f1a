"""TokenHMR checkpoints: the official two-file layout, inert unpickling (no code runs), drops, clear errors."""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from hpsedge.errors import CheckpointError
from hpsedge.models.checkpoints import InertObject, build_model, read_inert
from hpsedge.models.zoo import ZOO

SPEC = ZOO["tokenhmr"]


class _Marker:
    """Unpickling this runs a shell command that creates a marker file (if anything executes it)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def fake_yacs() -> Iterator[type]:
    """A stand-in ``yacs.config.CfgNode`` (a dict subclass, like the real one) that exists only while saving.

    Its ``__setstate__`` and ``__init__`` would create files: if the loader ever called them, the tests see it.
    """
    pkg, mod = types.ModuleType("yacs"), types.ModuleType("yacs.config")

    class CfgNode(dict):
        touched: Path | None = None

        def __setstate__(self, state: dict) -> None:  # pragma: no cover - must never run on load
            Path(str(state.get("__marker__"))).write_text("setstate ran")

    CfgNode.__module__ = "yacs.config"
    CfgNode.__qualname__ = "CfgNode"
    mod.CfgNode = CfgNode  # type: ignore[attr-defined]
    pkg.config = mod  # type: ignore[attr-defined]
    old = {k: sys.modules.get(k) for k in ("yacs", "yacs.config")}
    sys.modules["yacs"], sys.modules["yacs.config"] = pkg, mod
    try:
        yield CfgNode
    finally:
        for k, v in old.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def _official_files(folder: Path, cfgnode: type, marker: Path, seed: int = 0) -> tuple[Path, Path, dict]:
    """A tiny TokenHMR written in the official layout: a Lightning-style .ckpt and a tokenizer.pth."""
    torch.manual_seed(seed)
    sd = SPEC.build(tiny=True).state_dict()
    model_sd = {k: v for k, v in sd.items() if not k.startswith("tokenizer.")}
    model_sd["initialized"] = torch.tensor(False)
    model_sd["smpl.v_template"] = torch.zeros(6890, 3)
    model_sd["smpl.faces_tensor"] = torch.zeros(13776, 3, dtype=torch.long)
    ckpt = {
        "state_dict": model_sd,
        "epoch": 3,
        "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-5}]}],
        "hyper_parameters": {"payload": _Marker(marker)},
    }
    ckpt_path = folder / "tokenhmr_model_latest.ckpt"
    torch.save(ckpt, ckpt_path)
    hparams = cfgnode()
    hparams["ARCH"] = cfgnode(CODE_DIM=16, NB_CODE=64, WIDTH=32, TOKEN_SIZE_DIV=4, NUM_TOKENS=10)
    hparams.__dict__["__marker__"] = str(marker)
    net = {k[len("tokenizer."):]: v for k, v in sd.items() if k.startswith("tokenizer.")}
    net = {"encoder.encoder.0.weight": torch.randn(32, 6, 3), "encoder.encoder.0.bias": torch.randn(32), **net}
    tok_path = folder / "tokenizer.pth"
    torch.save({"net": net, "hparams": hparams}, tok_path)
    return ckpt_path, tok_path, sd


def _same(model: torch.nn.Module, sd: dict) -> bool:
    return all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())


def test_official_layout_loads_without_running_code(tmp_path: Path, fake_yacs: type) -> None:
    marker = tmp_path / "pwned"
    ckpt, tok, sd = _official_files(tmp_path, fake_yacs, marker)
    del sys.modules["yacs.config"], sys.modules["yacs"]  # the official config classes are not installed
    model, _spec, loaded = build_model("tokenhmr", checkpoint=ckpt, tokenizer=tok, tiny=True)
    assert not marker.exists(), "a pickled object was executed"
    assert _same(model, sd) and not model.training
    assert loaded is not None and loaded.tokenizer is not None
    assert sorted(loaded.dropped) == ["initialized", "smpl.faces_tensor", "smpl.v_template"]
    assert sorted(loaded.tokenizer.dropped) == ["tokenizer.encoder.encoder.0.bias", "tokenizer.encoder.encoder.0.weight"]
    assert "posix.system" in loaded.stand_ins or "os.system" in loaded.stand_ins
    assert loaded.tokenizer.stand_ins == ["yacs.config.CfgNode"]
    assert len(loaded.sha256) == 64 and len(loaded.tokenizer.sha256) == 64


def test_hparams_is_readable_as_inert_data(tmp_path: Path, fake_yacs: type) -> None:
    marker = tmp_path / "pwned"
    _, tok, _ = _official_files(tmp_path, fake_yacs, marker)
    del sys.modules["yacs.config"], sys.modules["yacs"]
    obj, names = read_inert(tok)
    hp = obj["hparams"]
    assert isinstance(hp, InertObject) and hp.pickle_global == "yacs.config.CfgNode"
    assert hp["ARCH"]["NB_CODE"] == 64 and hp["ARCH"]["NUM_TOKENS"] == 10
    assert hp.pickle_state == {"__marker__": str(marker)}  # recorded, never applied
    assert names == ["yacs.config.CfgNode"] and not marker.exists()


def test_reduce_payload_does_not_run_even_at_top_level(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save(_Marker(marker), path)
    obj, names = read_inert(path)
    assert isinstance(obj, InertObject) and obj.pickle_args == (f"touch {marker}",)
    assert names and names[0].endswith(".system") and not marker.exists()
    with pytest.raises(CheckpointError, match="holds no tensors"):
        build_model("tokenhmr", checkpoint=path, tiny=True)
    assert not marker.exists()


def test_official_checkpoint_without_tokenizer_names_the_option(tmp_path: Path, fake_yacs: type) -> None:
    ckpt, _, _ = _official_files(tmp_path, fake_yacs, tmp_path / "m")
    with pytest.raises(CheckpointError, match="not the tokenizer decoder") as info:
        build_model("tokenhmr", checkpoint=ckpt, tiny=True)
    assert "--tokenizer" in (info.value.hint or "")


def test_files_swapped_are_recognised(tmp_path: Path, fake_yacs: type) -> None:
    ckpt, tok, _ = _official_files(tmp_path, fake_yacs, tmp_path / "m")
    with pytest.raises(CheckpointError, match="is a TokenHMR tokenizer") as info:
        build_model("tokenhmr", checkpoint=tok, tokenizer=ckpt, tiny=True)
    assert "--tokenizer" in (info.value.hint or "")
    with pytest.raises(CheckpointError, match=r"not a TokenHMR tokenizer file.*model checkpoint"):
        build_model("tokenhmr", checkpoint=ckpt, tokenizer=ckpt, tiny=True)


def test_tokenizer_alone_or_for_other_models_is_refused(tmp_path: Path, fake_yacs: type) -> None:
    _, tok, _ = _official_files(tmp_path, fake_yacs, tmp_path / "m")
    with pytest.raises(CheckpointError, match="tokenizer alone"):
        build_model("tokenhmr", tokenizer=tok, tiny=True)
    with pytest.raises(CheckpointError, match="only for models with a tokenizer file"):
        build_model("poco-hmr", checkpoint=tok, tokenizer=tok, tiny=True)


def test_missing_and_mismatched_keys_are_named(tmp_path: Path, fake_yacs: type) -> None:
    ckpt, tok, _sd = _official_files(tmp_path, fake_yacs, tmp_path / "m")
    obj = torch.load(ckpt, weights_only=False)
    del obj["state_dict"]["smpl_head.deccam.bias"]
    obj["state_dict"]["backbone.last_norm.bias"] = torch.zeros(7)
    obj["state_dict"]["smpl_head.extra.weight"] = torch.zeros(2)
    obj["hyper_parameters"] = {}
    torch.save(obj, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError) as info:
        build_model("tokenhmr", checkpoint=tmp_path / "bad.ckpt", tokenizer=tok, tiny=True)
    msg = info.value.message
    assert "1 missing key(s): smpl_head.deccam.bias" in msg
    assert "unexpected key(s): smpl_head.extra.weight" in msg
    assert "backbone.last_norm.bias (7,) vs expected (64,)" in msg


def test_tokenizer_of_another_architecture_is_described(tmp_path: Path, fake_yacs: type) -> None:
    ckpt, tok, _ = _official_files(tmp_path, fake_yacs, tmp_path / "m")
    obj = torch.load(tok, weights_only=False)
    obj["net"]["quantizer.codebook"] = torch.zeros(512, 16)
    torch.save(obj, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"512 codes × 16.*built for 64 codes × 16"):
        build_model("tokenhmr", checkpoint=ckpt, tokenizer=tmp_path / "other.pth", tiny=True)


def test_full_size_file_for_tiny_build_and_poco_file_for_tokenhmr(tmp_path: Path) -> None:
    torch.manual_seed(0)
    pare = ZOO["poco-hmr"].build(tiny=True).state_dict()
    torch.save(pare, tmp_path / "poco.pt")
    with pytest.raises(CheckpointError, match="does not fit tokenhmr"):
        build_model("tokenhmr", checkpoint=tmp_path / "poco.pt", tiny=True)


def test_hpsedge_checkpoint_with_tokenizer_keys_needs_no_second_file(tmp_path: Path) -> None:
    torch.manual_seed(7)
    model = SPEC.build(tiny=True)
    torch.save(model.state_dict(), tmp_path / "mine.pt")
    loaded_model, _, loaded = build_model("tokenhmr", checkpoint=tmp_path / "mine.pt", tiny=True)
    assert _same(loaded_model, model.state_dict()) and loaded is not None and loaded.tokenizer is None


def test_lightning_model_prefix_is_stripped(tmp_path: Path, fake_yacs: type) -> None:
    ckpt, tok, sd = _official_files(tmp_path, fake_yacs, tmp_path / "m")
    obj = torch.load(ckpt, weights_only=False)
    obj["state_dict"] = {f"model.{k}": v for k, v in obj["state_dict"].items()}
    obj["hyper_parameters"] = {}
    torch.save(obj, tmp_path / "prefixed.ckpt")
    model, _, loaded = build_model("tokenhmr", checkpoint=tmp_path / "prefixed.ckpt", tokenizer=tok, tiny=True)
    assert loaded is not None and loaded.stripped_prefix == "model." and _same(model, sd)


def test_truncated_tokenizer(tmp_path: Path, fake_yacs: type) -> None:
    ckpt, tok, _ = _official_files(tmp_path, fake_yacs, tmp_path / "m")
    data = tok.read_bytes()
    tok.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        build_model("tokenhmr", checkpoint=ckpt, tokenizer=tok, tiny=True)


def test_allowlist_is_within_torch_weights_only_set_plus_numpy() -> None:
    """Everything the inert unpickler resolves for real only rebuilds data (no os/subprocess/builtins.eval)."""
    from hpsedge.models import checkpoints

    allowed = checkpoints._allowed_globals()
    bad = [k for k in allowed if k.split(".")[0] in {"os", "posix", "subprocess", "sys", "importlib", "shutil"}]
    assert not bad
    assert not any(k.startswith("builtins.") and k.split(".")[1] in {"eval", "exec", "getattr", "__import__", "open"} for k in allowed)
    assert "torch._utils._rebuild_tensor_v2" in allowed and "torch._tensor._rebuild_from_type_v2" not in allowed
