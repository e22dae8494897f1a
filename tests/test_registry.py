"""Driven by the model registry: every registered model gets the same checks, no hard-coded model list.

Per model (tiny configurations): static metadata = the built network, key parity with its golden key lists,
an ONNX export verified against PyTorch with a dynamic person batch, FP16 and INT8 graphs with the spec's
keep-list/exclusions, a build folder, and the runtime on that folder with the manifest's rules. Plus: the
registry is torch-free, and a build folder of a family the runtime has never heard of still runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from conftest import TEST_SEED
from hpsedge.calib.graph import ACTIVATION_MATMUL, select_nodes
from hpsedge.errors import ManifestError
from hpsedge.export import onnx as export_mod
from hpsedge.export.build import BuildConfig, export_build
from hpsedge.export.precision import apply_precision, default_exclude_int8, default_keep_fp32
from hpsedge.models.registry import ModelSpec, get_spec, registered
from hpsedge.models.zoo import count_parameters, expected_state_shapes
from hpsedge.runtime import camera
from hpsedge.runtime.confidence import official_score
from hpsedge.runtime.manifest import SCHEMA_VERSION, load_manifest
from hpsedge.runtime.predictor import Predictor
from smpl_synth import write_synthetic_smpl

KEYS = Path(__file__).parent / "data" / "keys"
MODELS = list(registered())
WITH_KEYS = [n for n, s in registered().items() if s.golden_keys]


# ---------------------------------------------------------------------------------------------------
# static metadata and key parity (meta device: no weights allocated, full size)
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_static_metadata_matches_the_network(name: str) -> None:
    spec = get_spec(name)
    assert spec.params == count_parameters(spec), "ModelSpec.params is stale"
    with torch.device("meta"):
        model = spec.build()
    assert model.spec is spec and len(spec.output_names) >= 3 and spec.output_names[:3] == ["pose", "betas", "cam"]
    assert {"input_size", "mean", "std", "color", "bbox_info"} <= set(spec.preprocessing())
    post = spec.postprocessing()
    assert post["confidence"] in (None, "sigma", *spec.output_names)
    assert (post["confidence"] == "sigma") == spec.has_sigma
    assert default_keep_fp32(name) == list(spec.fp16_keep) and default_exclude_int8(name) == list(spec.int8_exclude)


def test_every_official_checkpoint_has_golden_keys() -> None:
    for name, spec in registered().items():
        assert spec.official_checkpoint is None or spec.golden_keys, name
        for file, _prefix, _entry in spec.golden_keys:
            assert (KEYS / file).exists(), file


def _golden(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Our expected keys from the spec's golden lists: official keys minus the spec's deliberate drops."""
    kept: dict[str, tuple[int, ...]] = {}
    for file, prefix, entry in spec.golden_keys:
        for key, value in json.loads((KEYS / file).read_text())[entry].items():
            ours = prefix + key
            if ours.startswith(spec.drop_prefixes) or ours in spec.drop_keys:
                continue
            kept[ours] = tuple(value["shape"] if isinstance(value, dict) else value)
    return kept


@pytest.mark.parametrize("name", WITH_KEYS)
def test_key_parity_with_golden_lists(name: str) -> None:
    spec = get_spec(name)
    ours = expected_state_shapes(spec)
    kept = _golden(spec)
    assert sorted(ours) == sorted(kept), "key names differ"
    assert ours == kept, "shapes differ"
    main_file = [k for k in kept if not k.startswith(spec.aux_prefixes)] if spec.aux_prefixes else list(kept)
    assert [k for k in ours if k in set(main_file)] == main_file, "registration order differs"


def test_registry_is_torch_free() -> None:
    """`hpsedge models` on a robot: the registry and every spec load with torch and onnx unimportable."""
    code = (
        "import sys\n"
        "class B:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'onnx', 'smplx'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, B())\n"
        "from hpsedge.models.registry import registered\n"
        "specs = registered()\n"
        "print(len(specs), sum(s.params for s in specs.values()), specs['poco-cliff'].preprocessing()['input_size'])\n"
    )
    src = str(Path(__file__).resolve().parent.parent / "src")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": src},
                         timeout=120)
    assert out.returncode == 0, out.stderr
    n, total, _size = out.stdout.split(maxsplit=2)
    assert int(n) == len(MODELS) and int(total) == sum(s.params for s in registered().values())


# ---------------------------------------------------------------------------------------------------
# ONNX, precision, build folder and runtime for every model (tiny)
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exports(tiny_export) -> dict[str, Path]:
    """The session's shared tiny exports of every registered model (read-only: tests copy them)."""
    return {n: tiny_export(n) for n in MODELS}


@pytest.fixture(scope="module")
def smpl_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_smpl(tmp_path_factory.mktemp("registry-smpl"), style="npz")


def _image(h: int = 240, w: int = 320) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([(xx * 3) % 255, (yy * 2) % 255, (xx + yy) % 255], axis=-1).astype(np.uint8)


BOXES = np.array([[40.0, 20.0, 160.0, 230.0], [150.0, 60.0, 300.0, 200.0]], dtype=np.float32)


@pytest.mark.parametrize("name", MODELS)
def test_onnx_parity_and_dynamic_batch(exports: dict[str, Path], name: str, tmp_path: Path) -> None:
    folder = exports[name]
    spec = get_spec(name)
    m = load_manifest(folder)
    assert m.raw["schema_version"] == SCHEMA_VERSION
    assert [t.name for t in m.inputs] == spec.input_names and [t.name for t in m.outputs] == spec.output_names
    ver = m.raw["verification"]
    assert ver["passed"] and ver["worst_rel_error"] <= spec.tolerance
    proto = onnx.load(str(folder / "model.onnx"))
    assert [i.name for i in proto.graph.input] == spec.input_names
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    # a batch the trace never saw (it used N=2), person by person against PyTorch
    torch.manual_seed(TEST_SEED)
    model = spec.build(tiny=True).eval()
    path = tmp_path / f"{name}-parity.onnx"  # not beside the shared export (read-only)
    export_mod.trace_to_onnx(model, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = model.example_inputs(batch=5, seed=3)
    with torch.no_grad():
        ref = [t.numpy() for t in model(*inputs)]
    got = sess.run(None, {n: t.numpy() for n, t in zip(spec.input_names, inputs, strict=True)})
    for r, g in zip(ref, got, strict=True):
        assert g.shape == r.shape and g.shape[0] == 5
        np.testing.assert_allclose(g, r, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("name", MODELS)
def test_precision_graphs_follow_the_spec(exports: dict[str, Path], name: str, tmp_path: Path) -> None:
    spec = get_spec(name)
    folder = tmp_path / name
    shutil.copytree(exports[name], folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    apply_precision(folder, manifest, "fp16", latency_reps=1, report_samples=4)
    assert manifest["precision_config"]["keep_fp32"] == list(spec.fp16_keep)
    fp16 = onnx.load(str(folder / "model.fp16.onnx"))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in fp16.graph.initializer)
    # the output tail (and whatever else the spec keeps) has no FP16 compute
    kept = select_nodes(onnx.load(str(folder / "model.onnx")), list(spec.fp16_keep))
    assert kept, "the keep-list selects nothing"
    sess = ort.InferenceSession(str(folder / "model.fp16.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == spec.output_names
    report = json.loads((folder / "report.json").read_text())
    assert report["precision"] == "fp16" and np.isfinite(report["figures"]["pose_deg"]["max"])


@pytest.mark.parametrize("name", MODELS)
def test_build_folder_and_runtime_follow_the_manifest(exports: dict[str, Path], smpl_file: Path, name: str,
                                                      tmp_path: Path) -> None:
    """An INT8 build folder (calibrated on synthetic crops made by the runtime's own preprocessing), run."""
    spec = get_spec(name)
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(_image()).save(images / "a.png")
    (tmp_path / "boxes.json").write_text(json.dumps({"a.png": BOXES.tolist() * 3}))
    res = export_build(BuildConfig(model=name, out=tmp_path / "build", precision="int8", tiny=True,
                                   calib_images=images, calib_boxes=tmp_path / "boxes.json", calib_max_samples=6,
                                   precision_options={"latency_reps": 1}))
    folder = res.folder
    m = load_manifest(folder)
    assert m.postprocessing == spec.postprocessing() and m.preprocessing == spec.preprocessing()
    # the spec's exclusions, plus the generic rule that keeps activation×activation MatMuls in float (#16)
    expected = list(spec.int8_exclude)
    if ACTIVATION_MATMUL not in expected:
        expected.append(ACTIVATION_MATMUL)
    assert m.raw["precision"] == "int8" and m.raw["precision_config"]["exclude_int8"] == expected
    pred = Predictor.load(folder, backend="ort", device="cpu", smpl=smpl_file)
    people = pred.predict(_image(), BOXES)
    assert len(people) == 2
    rule = spec.postprocessing()["confidence"]
    for p in people:
        assert p.pose_rotmat.shape == (24, 3, 3) and p.joints2d.shape == (24, 2) and np.isfinite(p.joints2d).all()
        if rule is None:  # no uncertainty output: no confidence is invented
            assert p.confidence is None and p.score is None
        else:
            assert 0.0 <= p.confidence <= 1.0
        assert (p.sigma is not None) == spec.has_sigma
        assert (p.joints45 is not None) == ("smpl45" in m.joint_sets)


# ---------------------------------------------------------------------------------------------------
# a family the runtime has never heard of; old manifests
# ---------------------------------------------------------------------------------------------------
def _rewrite(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    raw = json.loads((dst / "manifest.json").read_text())
    edit(raw)
    (dst / "manifest.json").write_text(json.dumps(raw))
    return dst


def test_unknown_family_runs_by_its_declared_rules(exports: dict[str, Path], smpl_file: Path, tmp_path: Path) -> None:
    """poco-hmr's graph relabelled as a family nobody registered, with rules that differ from POCO-HMR's."""

    def edit(raw: dict) -> None:
        raw["model"].update(name="acme-net", family="acme")
        raw["postprocessing"].update(projection="full_image", full_focal="max_side", crop_size=224,
                                     sigma_score="pelvis", confidence="sigma", joint_sets=["smpl24"])

    folder = _rewrite(exports["poco-hmr"], tmp_path / "acme", edit)
    pred = Predictor.load(folder, backend="ort", device="cpu", smpl=smpl_file)
    img = _image()
    people = pred.predict(img, BOXES)
    base = Predictor.load(exports["poco-hmr"], backend="ort", device="cpu", smpl=smpl_file).predict(img, BOXES)
    h, w = img.shape[:2]
    for p, b in zip(people, base, strict=True):
        np.testing.assert_allclose(p.pose_rotmat, b.pose_rotmat, atol=1e-6)
        # confidence by the declared pelvis rule, not POCO-HMR's mean rule
        assert p.score == pytest.approx(float(official_score(b.sigma[None], "pelvis")[0]), abs=1e-6)
        assert p.confidence == pytest.approx(1.0 - p.score, abs=1e-6)
        # camera: the declared full-image projection with focal 5000/224·max(W, H)
        assert p.focal == pytest.approx(5000.0 / 224.0 * max(h, w))
        want = camera.project_full(p.joints3d[None], p.transl[None], p.focal, (h, w))[0]
        np.testing.assert_allclose(p.joints2d, want, atol=1e-3)
        assert p.joints45 is None and p.joints49 is None
    # a rule this runtime does not implement is refused by name, not run
    bad = _rewrite(exports["poco-hmr"], tmp_path / "bad", lambda r: r["postprocessing"].update(projection="fisheye"))
    with pytest.raises(ManifestError, match="projection 'fisheye'"):
        load_manifest(bad)
    bad2 = _rewrite(exports["pare"], tmp_path / "bad2", lambda r: r["postprocessing"].update(confidence="vibes"))
    with pytest.raises(ManifestError, match="confidence 'vibes' is neither 'sigma' nor one of the graph outputs"):
        load_manifest(bad2)
    # a σ rule without a σ output gives no confidence rather than an invented one
    no_sigma = _rewrite(exports["pare"], tmp_path / "ns", lambda r: r["postprocessing"].update(confidence="sigma"))
    assert load_manifest(no_sigma).confidence_rule is None


@pytest.mark.parametrize("name", ["poco-cliff", "poco-pare", "tokenhmr"])
def test_schema_1_manifests_still_run_the_same(exports: dict[str, Path], smpl_file: Path, name: str,
                                              tmp_path: Path) -> None:
    """A folder written before the registry (schema 1: no projection/confidence/joint_sets rules) gives the
    same results: the rules are inferred from the rest of the manifest."""

    v1_keys = {"camera", "crop_focal_length", "rotation", "sigma_score", "kinematic_sigma"}  # POCO's v1 block
    if name == "tokenhmr":  # TokenHMR's v1 block declared its camera and confidence already
        v1_keys |= {"crop_size", "full_focal", "projection", "rotation_6d", "confidence"}

    def edit(raw: dict) -> None:
        raw["schema_version"] = 1
        raw["postprocessing"] = {k: v for k, v in raw["postprocessing"].items() if k in v1_keys}

    old = _rewrite(exports[name], tmp_path / "v1", edit)
    img = _image()
    new_people = Predictor.load(exports[name], backend="ort", device="cpu", smpl=smpl_file).predict(img, BOXES)
    old_people = Predictor.load(old, backend="ort", device="cpu", smpl=smpl_file).predict(img, BOXES)
    for a, b in zip(new_people, old_people, strict=True):
        np.testing.assert_allclose(a.joints2d, b.joints2d, atol=1e-5)
        assert a.focal == b.focal and a.confidence == pytest.approx(b.confidence)
        assert (a.joints49 is None) == (b.joints49 is None)
