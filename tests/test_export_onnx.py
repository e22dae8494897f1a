"""`hpsedge export onnx`: graph validity, parity with PyTorch, dynamic batch, op set, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from hpsedge.errors import ExportError, HpsedgeError
from hpsedge.export import onnx as export_mod
from hpsedge.export.lint import forbidden_ops, op_histogram
from hpsedge.export.onnx import export_onnx, verify_onnx
from hpsedge.models.zoo import ZOO
from hpsedge.runtime.manifest import load_manifest, sha256_file


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    out = {}
    for name in ("poco-cliff", "poco-pare", "poco-hmr", "pare"):
        out[name] = export_onnx(name, root / name, tiny=True).out_dir
    return out


@pytest.mark.parametrize("name", ["poco-cliff", "poco-pare", "poco-hmr", "pare"])
def test_export_writes_valid_graph_and_manifest(exported: dict[str, Path], name: str) -> None:
    folder = exported[name]
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "model.onnx"]
    proto = onnx.load(str(folder / "model.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    m = load_manifest(folder)
    spec = ZOO[name]
    assert m.model_name == name and m.family == spec.family and m.has_sigma == spec.has_sigma
    assert [i.name for i in proto.graph.input] == spec.input_names
    assert [o.name for o in proto.graph.output] == spec.output_names
    assert [t.name for t in m.inputs] == spec.input_names
    assert m.raw["artifacts"]["onnx"]["sha256"] == sha256_file(folder / "model.onnx")
    assert m.raw["opset"] == 17 and m.raw["max_batch"] == 16
    assert m.raw["checkpoint"]["random_init"] is True
    ver = m.raw["verification"]
    assert ver["passed"] and ver["batches"] == [1, 3] and ver["worst_rel_error"] < 1e-3
    assert set(ver["per_batch"]["3"]) == set(spec.output_names)
    # the batch axis is symbolic, everything else fixed
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 3, 224, 224]


@pytest.mark.parametrize("name", ["poco-cliff", "poco-pare", "poco-hmr", "pare"])
def test_no_einsum_or_scatternd(exported: dict[str, Path], name: str) -> None:
    proto = onnx.load(str(exported[name] / "model.onnx"))
    ops = op_histogram(proto)
    assert "Einsum" not in ops and "ScatterND" not in ops
    assert forbidden_ops(proto) == []
    assert ops.get("Conv", 0) > 0


@pytest.mark.parametrize("name", ["poco-cliff", "poco-pare"])
@pytest.mark.parametrize("batch", [1, 5, 16])
def test_dynamic_batch_parity(exported: dict[str, Path], name: str, batch: int) -> None:
    """Batch sizes the trace never saw (it used N=2) give PyTorch's answers, person by person."""
    spec = ZOO[name]
    torch.manual_seed(0)
    model = spec.build(tiny=True).eval()
    path = exported[name].parent / f"{name}-b{batch}.onnx"
    export_mod.trace_to_onnx(model, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = model.example_inputs(batch=batch, seed=batch)
    with torch.no_grad():
        ref = [t.numpy() for t in model(*inputs)]
    got = sess.run(None, {n: t.numpy() for n, t in zip(spec.input_names, inputs, strict=True)})
    for r, g in zip(ref, got, strict=True):
        assert g.shape[0] == batch
        np.testing.assert_allclose(g, r, atol=1e-4, rtol=1e-3)
    # batch independence: person 0 alone gives the same answer as inside the batch
    single = sess.run(None, {n: t.numpy()[:1] for n, t in zip(spec.input_names, inputs, strict=True)})
    for s, g in zip(single, got, strict=True):
        np.testing.assert_allclose(s[0], g[0], atol=1e-5)


def test_forbidden_op_check_catches_planted_einsum() -> None:
    node = helper.make_node("Einsum", ["a", "b"], ["c"], equation="bi,bi->b")
    graph = helper.make_graph(
        [node],
        "planted",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3]), helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert forbidden_ops(model) == ["Einsum"]


def test_export_fails_when_graph_has_forbidden_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model whose forward uses einsum is refused (and leaves nothing behind)."""
    from hpsedge.models import geometry

    def einsum_normalize(v: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
        return v / torch.clamp(torch.sqrt(torch.einsum("bi,bi->b", v, v)).unsqueeze(-1), min=eps)

    monkeypatch.setattr(geometry, "_normalize", einsum_normalize)
    with pytest.raises(ExportError, match="Einsum"):
        export_onnx("poco-hmr", tmp_path / "out", tiny=True)
    assert list(tmp_path.iterdir()) == []


def test_verification_threshold_is_enforced(exported: dict[str, Path]) -> None:
    model = ZOO["poco-hmr"].build(tiny=True).eval()
    path = exported["poco-hmr"].parent / "hmr-fresh.onnx"
    export_mod.trace_to_onnx(model, path)
    figures = verify_onnx(model, path)
    assert figures["worst_rel_error"] < 1e-5
    # a different model's weights disagree: the check must fail loudly
    other = ZOO["poco-hmr"].build(tiny=True).eval()
    with pytest.raises(ExportError, match="disagrees with PyTorch"):
        verify_onnx(other, path)


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("user data")
    with pytest.raises(HpsedgeError, match="already exists") as info:
        export_onnx("poco-hmr", out, tiny=True)
    assert "--force" in (info.value.hint or "")
    assert (out / "notes.txt").read_text() == "user data"
    # --force replaces only an hpsedge build folder or an empty folder, never a folder of the user's files
    with pytest.raises(HpsedgeError, match="not an hpsedge build folder"):
        export_onnx("poco-hmr", out, tiny=True, force=True)
    assert (out / "notes.txt").read_text() == "user data"
    (out / "notes.txt").unlink()
    export_onnx("poco-hmr", out, tiny=True, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx"]
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # no temporary leftovers


def test_interrupted_export_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(export_mod, "verify_onnx", boom)
    with pytest.raises(KeyboardInterrupt):
        export_onnx("poco-hmr", tmp_path / "out", tiny=True)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_forced_export_keeps_the_old_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    export_onnx("poco-hmr", out, tiny=True)
    before = json.loads((out / "manifest.json").read_text())["created"]
    monkeypatch.setattr(export_mod, "verify_onnx", lambda *a, **k: (_ for _ in ()).throw(ExportError("boom")))
    with pytest.raises(ExportError):
        export_onnx("poco-hmr", out, tiny=True, force=True)
    assert json.loads((out / "manifest.json").read_text())["created"] == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_bad_options() -> None:
    with pytest.raises(HpsedgeError, match="opset"):
        export_onnx("poco-hmr", "unused", opset=9, tiny=True)
    with pytest.raises(HpsedgeError, match="max-batch"):
        export_onnx("poco-hmr", "unused", max_batch=0, tiny=True)
    with pytest.raises(HpsedgeError, match="unknown model"):
        export_onnx("poco-smpl", "unused", tiny=True)


def test_checkpoint_hash_recorded(tmp_path: Path) -> None:
    torch.manual_seed(5)
    model = ZOO["poco-hmr"].build(tiny=True)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "mine.pt")
    res = export_onnx("poco-hmr", tmp_path / "out", tiny=True, checkpoint=tmp_path / "mine.pt")
    ck = res.manifest["checkpoint"]
    assert ck == {"random_init": False, "file": "mine.pt", "sha256": sha256_file(tmp_path / "mine.pt"), "dropped_keys": 0}
    # and the exported graph holds those weights: compare with the saved model
    sess = ort.InferenceSession(str(res.onnx_path), providers=["CPUExecutionProvider"])
    (image,) = model.example_inputs(batch=2, seed=9)
    with torch.no_grad():
        ref = model.eval()(image)[0].numpy()
    np.testing.assert_allclose(sess.run(["pose"], {"image": image.numpy()})[0], ref, atol=1e-5)


@pytest.mark.slow
def test_full_size_poco_cliff_export(tmp_path: Path) -> None:
    res = export_onnx("poco-cliff", tmp_path / "poco-cliff")
    assert res.manifest["model"]["variant"] == "full"
    assert res.worst_rel_error < 1e-3
    assert res.manifest["model"]["params"] == 79_393_253
    assert res.onnx_path.stat().st_size > 300e6


def test_random_weights_are_seeded(tmp_path: Path) -> None:
    """Without a checkpoint the weights come from ``seed``: the same seed gives the same graph weights on every
    run (what `make demo` relies on), another seed other weights; the seed is recorded; torch's global RNG is
    left as it was."""
    from onnx import numpy_helper

    def weights(folder: Path) -> dict[str, np.ndarray]:
        return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(folder / "model.onnx")).graph.initializer}

    state = torch.random.get_rng_state()
    a = export_onnx("poco-hmr", tmp_path / "a", tiny=True, seed=5)
    b = export_onnx("poco-hmr", tmp_path / "b", tiny=True, seed=5)
    c = export_onnx("poco-hmr", tmp_path / "c", tiny=True, seed=6)
    assert torch.equal(torch.random.get_rng_state(), state)
    wa, wb, wc = weights(a.out_dir), weights(b.out_dir), weights(c.out_dir)
    assert wa.keys() == wb.keys() == wc.keys()
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert not all(np.array_equal(wa[k], wc[k]) for k in wa)
    assert a.manifest["checkpoint"] == {"random_init": True, "init_seed": 5}
    assert c.manifest["checkpoint"]["init_seed"] == 6
