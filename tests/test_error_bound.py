"""Error bounds in mm (split conformal): coverage on synthetic data of known distribution, and the build-folder
artifact end to end (val run → fit → verified error_bound.json → Predictor / run JSON / serve schema / overlay)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hpsedge.errors import HpsedgeError, InputError, ManifestError
from hpsedge.eval.error_bound import (
    ErrorBoundConfig,
    conformal_quantile,
    fit_error_bound,
    fit_groups,
    split_samples,
)
from hpsedge.eval.val import ValConfig, run_val
from hpsedge.export.onnx import export_onnx
from hpsedge.runtime import error_bound as rt
from hpsedge.runtime.draw import error_bound_tag, render_overlay
from hpsedge.runtime.manifest import load_manifest, sha256_file
from hpsedge.runtime.predictor import Predictor
from hpsedge.serve.schema import output_specs, results_to_arrays

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------ known distributions
def _heteroscedastic(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """σ ~ U(0.05, 1); error = 120 mm · σ · |N(0, 1)|: the 90 % bound is 120·σ·1.645 mm."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(0.05, 1.0, n)
    return 120.0 * u * np.abs(rng.normal(size=n)), u


@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_heldout_coverage_within_two_percent(seed: int, coverage: float) -> None:
    e, u = _heteroscedastic(seed, 60000)  # held-out coverage SD ≈ 0.004: ±0.02 is 5 SD
    split, how = split_samples([f"seq/{i}.png" for i in range(e.size)], 0.2, 0.4, "sample", seed)
    assert "sample" in how and {int(v) for v in np.unique(split)} == {0, 1, 2}
    fit = fit_groups({"body": e}, {"body": u}, split, coverage)[0]
    rep = fit.report
    assert abs(rep["achieved_coverage"] - coverage) <= 0.02, rep["achieved_coverage"]
    # the σ-scaled bound adapts: every uncertainty quartile is covered near nominal, unlike a constant bound,
    # which over-covers the certain and under-covers the uncertain quartile
    assert all(abs(b["coverage"] - coverage) <= 0.04 for b in rep["by_uncertainty"]), rep["by_uncertainty"]
    const = rep["by_uncertainty_constant"]
    assert const[0]["coverage"] - coverage > 0.04 and coverage - const[-1]["coverage"] > 0.04
    assert rep["mean_bound_mm"] < rep["constant"]["bound_mm"]  # tighter on average at the same coverage
    # the scale found is proportional to σ (the true conditional quantile is 120·σ·z)
    assert fit.b > 0 and abs(fit.a) < 0.1 * fit.b
    z = {0.8: 1.2816, 0.9: 1.6449, 0.95: 1.9600}[coverage]
    true = 120.0 * 0.5 * z
    assert abs(fit.bound(np.array([0.5]))[0] - true) / true < 0.05


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coverage_per_group_and_gamma_errors(seed: int) -> None:
    """Several groups with different error laws (half-normal and gamma), each covered near nominal."""
    rng = np.random.default_rng(100 + seed)
    n = 60000  # the reliability table checks 9 levels: held-out coverage SD ≈ 0.005 at the 0.5 level
    u_arm = rng.uniform(0.1, 2.0, n)
    u_leg = rng.uniform(0.1, 2.0, n)
    errors = {"arms": 50 * u_arm * np.abs(rng.normal(size=n)), "legs": 30 + 40 * rng.gamma(2.0, u_leg)}
    split, _ = split_samples([str(i) for i in range(n)], 0.2, 0.4, "sample", seed)
    for f in fit_groups(errors, {"arms": u_arm, "legs": u_leg}, split, 0.9):
        assert abs(f.report["achieved_coverage"] - 0.9) <= 0.02, (f.name, f.report["achieved_coverage"])
        rel = {r["nominal"]: r["achieved"] for r in f.report["reliability"]}
        assert all(abs(a - lv) <= 0.02 for lv, a in rel.items()), rel


@pytest.mark.parametrize(("n", "coverage"), [(19, 0.9), (10, 0.9), (40, 0.8)])
def test_finite_sample_quantile_is_exact(n: int, coverage: float) -> None:
    """With n calibration scores the coverage is k/(n+1), k = ⌈(n+1)·coverage⌉ (a plain empirical quantile
    such as np.quantile's would under-cover for small n)."""
    rng = np.random.default_rng(7)
    trials = 20000
    x = rng.normal(size=(trials, n + 1))
    hits = np.array([x[t, n] <= conformal_quantile(x[t, :n], coverage) for t in range(trials)])
    k = int(np.ceil((n + 1) * coverage - 1e-9))
    assert abs(hits.mean() - k / (n + 1)) < 0.006
    assert hits.mean() >= coverage - 0.006


def test_too_few_calibration_samples_refused() -> None:
    with pytest.raises(InputError, match="at least 9"):
        conformal_quantile(np.arange(8.0), 0.9)
    assert conformal_quantile(np.arange(9.0), 0.9) == 8.0


def test_split_by_sequence_keeps_sequences_apart() -> None:
    names = [f"seq{s}/frame_{i}.png" for s in range(10) for i in range(30)]
    split, how = split_samples(names, 0.2, 0.4, "auto", 3)
    assert "sequence" in how
    for s in range(10):
        assert len(set(split[s * 30 : (s + 1) * 30].tolist())) == 1
    assert set(split.tolist()) == {0, 1, 2}
    with pytest.raises(InputError, match="3 image folders"):
        split_samples(["a/1.png", "a/2.png", "b/1.png"], 0.2, 0.4, "sequence")


# ------------------------------------------------------------------------------ the artifact, end to end
N_SAMPLES = 36


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, smpl_npz: Path) -> dict:
    """A tiny poco-pare folder, a val run of it on 36 boxes whose ground truth is its own prediction with
    seeded pose and shape noise, and a tiny HMR 2.0 folder (no uncertainty)."""
    root = tmp_path_factory.mktemp("eb")
    rng = np.random.default_rng(0)
    import torch

    torch.manual_seed(0)  # the random weights of both tiny folders
    folder = export_onnx("poco-pare", root / "poco-pare", tiny=True).out_dir
    hmr2 = export_onnx("hmr2", root / "hmr2", tiny=True).out_dir
    (root / "images" / "seq").mkdir(parents=True)
    names, centers, scales = [], [], []
    for i in range(4):
        img = rng.integers(0, 255, (200, 240, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "images" / "seq" / f"f{i}.png")
        for _ in range(N_SAMPLES // 4):
            names.append(f"seq/f{i}.png")
            centers.append([rng.uniform(70, 170), rng.uniform(70, 130)])
            scales.append(rng.uniform(0.5, 0.9))
    jreg = np.zeros((17, 6890))
    for j in range(17):
        idx = rng.choice(6890, size=12, replace=False)
        jreg[j, idx] = rng.random(12)
        jreg[j] /= jreg[j].sum()
    np.save(root / "jreg.npy", jreg)
    pred = Predictor.load(folder, smpl=smpl_npz, device="cpu")
    poses, shapes = [], []
    for name, c, s in zip(names, centers, scales, strict=True):
        box = np.array([[c[0] - s * 100, c[1] - s * 100, c[0] + s * 100, c[1] + s * 100]])
        p = pred.predict(np.asarray(Image.open(root / "images" / name).convert("RGB")), box)[0]
        poses.append(p.pose_axis_angle.reshape(72) + rng.normal(0, 0.15, 72))
        shapes.append(p.betas + rng.normal(0, 0.5, 10))
    pred.close()
    np.savez(root / "eval.npz", imgname=np.array(names), center=np.array(centers), scale=np.array(scales),
             pose=np.array(poses), shape=np.array(shapes))
    val_out = root / "val"
    run_val(ValConfig(folders=[folder], data=root / "eval.npz", images=root / "images", smpl=smpl_npz,
                      out=val_out, j_regressor=root / "jreg.npy", device="cpu", plots=False))
    return {"root": root, "folder": folder, "hmr2": hmr2, "val": val_out, "smpl": smpl_npz,
            "image": root / "images" / "seq" / "f0.png"}


def _fresh(setup: dict, tmp_path: Path) -> Path:
    dst = tmp_path / "poco-pare"
    shutil.copytree(setup["folder"], dst)
    return dst


def test_val_records_hold_per_joint_errors_and_sigma(setup: dict) -> None:
    rec = json.loads((setup["val"] / "samples" / "poco-pare.jsonl").read_text().splitlines()[0])
    assert len(rec["joint_errors"]) == 14 and len(rec["sigma"]) == 24 and rec["score"] is not None
    assert abs(np.mean(rec["joint_errors"]) - rec["mpjpe"]) < 1e-2  # MPJPE is their mean


def test_fit_writes_a_verified_artifact_the_runtime_reports(setup: dict, tmp_path: Path) -> None:
    folder = _fresh(setup, tmp_path)
    before = load_manifest(folder).raw
    doc = fit_error_bound(folder, setup["val"], ErrorBoundConfig(coverage=0.8, split="sample"),
                          label="poco-pare", plot=tmp_path / "rel.png")
    assert Path(doc["written"]) == folder / rt.FILE_NAME
    assert (tmp_path / "rel.png").stat().st_size > 1000
    assert set(doc["groups"]) == {"body", "torso", "arms", "legs"}
    body = doc["groups"]["body"]
    assert body["n_fit"] + body["n_calibration"] + body["n_holdout"] == N_SAMPLES
    assert 0.0 <= body["achieved_coverage"] <= 1.0
    m = load_manifest(folder)
    entry = m.artifacts["error_bound"]
    assert entry["sha256"] == sha256_file(folder / rt.FILE_NAME) and entry["coverage"] == 0.8
    assert {k: v for k, v in m.raw.items() if k != "artifacts"} == {k: v for k, v in before.items() if k != "artifacts"}
    assert not list(folder.glob(".*.tmp"))

    pred = Predictor.load(folder, smpl=setup["smpl"], device="cpu")
    rgb = np.asarray(Image.open(setup["image"]).convert("RGB"))
    people = pred.predict(rgb, np.array([[40, 20, 200, 190], [10, 10, 120, 150]], dtype=np.float32))
    eb = rt.load_error_bound(m)
    assert eb is not None
    for p in people:
        assert p.error_bound_coverage == 0.8 and p.error_bound_reason is None
        assert set(p.error_bound_mm or {}) == {"body", "torso", "arms", "legs"}
        # the bound is quantile · f(mean accumulated σ of the group's SMPL joints), as fitted
        g = doc["groups"]["arms"]
        u = float(np.mean(p.sigma_accumulated[g["smpl_joints"]].astype(np.float64)))
        want = g["quantile"] * max(g["scale"]["a"] + g["scale"]["b"] * u, g["scale"]["floor"])
        assert p.error_bound_mm["arms"] == pytest.approx(want, rel=1e-6)
        assert p.to_dict()["error_bound_mm"]["body"] == pytest.approx(p.error_bound_mm["body"])
    # serving: one tensor per group plus the coverage
    specs = output_specs(pred.manifest, with_smpl=True)
    names = [s["name"] for s in specs]
    assert {"error_bound_mm_body", "error_bound_mm_arms", "error_bound_coverage"} <= set(names)
    arrays = results_to_arrays(people, specs)
    assert arrays["error_bound_mm_legs"].shape == (2,)
    assert arrays["error_bound_mm_legs"][1] == pytest.approx(people[1].error_bound_mm["legs"], rel=1e-6)
    assert np.all(arrays["error_bound_coverage"] == np.float32(0.8))
    # the overlay's badge says it in mm, and the picture differs from one without the bound
    tag = error_bound_tag(people[0])
    assert tag == f"≤ {people[0].error_bound_mm['body']:.0f} mm @ 80%"
    plain = [type(p)(**{**p.__dict__, "error_bound_mm": None, "error_bound_coverage": None}) for p in people]
    assert not np.array_equal(render_overlay(rgb, people), render_overlay(rgb, plain))
    # the MCAP people topic carries it too
    from hpsedge.runtime.ros import person_record

    rec = person_record(people[1], 1)
    assert rec["error_bound_coverage"] == 0.8 and rec["error_bound_reason"] is None
    assert rec["error_bound_mm"]["legs"] == pytest.approx(people[1].error_bound_mm["legs"], abs=0.05)
    assert person_record(plain[0], 0)["error_bound_mm"] is None
    pred.close()


def test_tampered_artifact_is_refused(setup: dict, tmp_path: Path) -> None:
    folder = _fresh(setup, tmp_path)
    fit_error_bound(folder, setup["val"], ErrorBoundConfig(coverage=0.8, split="sample"), label="poco-pare")
    path = folder / rt.FILE_NAME
    text = path.read_text(encoding="utf-8")
    doc = json.loads(text)
    at = text.index('"quantile": ') + len('"quantile": ')
    digit = text[at]
    assert digit.isdigit()
    # a different (false) promise of the same length: only the sha256 can tell
    path.write_text(text[:at] + str((int(digit) + 1) % 10) + text[at + 1 :], encoding="utf-8")
    with pytest.raises(ManifestError, match=r"error_bound\.json does not match the sha256"):
        Predictor.load(folder, device="cpu")
    path.write_text(text, encoding="utf-8")
    Predictor.load(folder, device="cpu").close()  # the original passes again
    # a well-formed file of another model is refused even when the manifest lists its hash
    m = json.loads((folder / "manifest.json").read_text())
    doc["groups"]["body"]["quantile"] *= 2.0
    doc["model"] = "poco-cliff"
    path.write_text(json.dumps(doc))
    m["artifacts"]["error_bound"].update(sha256=sha256_file(path), bytes=path.stat().st_size)
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="fitted for poco-cliff"):
        Predictor.load(folder, device="cpu")


def test_never_overwrites_a_user_file_and_force_replaces_ours(setup: dict, tmp_path: Path) -> None:
    folder = _fresh(setup, tmp_path)
    cfg = ErrorBoundConfig(coverage=0.8, split="sample")
    (folder / rt.FILE_NAME).write_text("my notes\n")
    for force in (False, True):
        with pytest.raises(HpsedgeError, match="not written by hpsedge"):
            fit_error_bound(folder, setup["val"], ErrorBoundConfig(coverage=0.8, split="sample", force=force),
                            label="poco-pare")
    assert (folder / rt.FILE_NAME).read_text() == "my notes\n"
    assert "error_bound" not in load_manifest(folder).artifacts
    (folder / rt.FILE_NAME).unlink()
    fit_error_bound(folder, setup["val"], cfg, label="poco-pare")
    with pytest.raises(HpsedgeError, match="--force"):
        fit_error_bound(folder, setup["val"], ErrorBoundConfig(coverage=0.7, split="sample"), label="poco-pare")
    fit_error_bound(folder, setup["val"], ErrorBoundConfig(coverage=0.7, split="sample", force=True), label="poco-pare")
    assert load_manifest(folder).artifacts["error_bound"]["coverage"] == 0.7


def test_without_the_artifact_and_without_uncertainty(setup: dict, tmp_path: Path) -> None:
    rgb = np.asarray(Image.open(setup["image"]).convert("RGB"))
    box = np.array([[40, 20, 200, 190]], dtype=np.float32)
    pred = Predictor.load(setup["folder"], device="cpu")
    p = pred.predict(rgb, box)[0]
    assert p.error_bound_mm is None and p.error_bound_reason == rt.NOT_FITTED
    assert not any(s["name"].startswith("error_bound") for s in output_specs(pred.manifest, False))
    pred.close()
    pred = Predictor.load(setup["hmr2"], device="cpu")
    p = pred.predict(rgb, box)[0]
    assert p.error_bound_mm is None and p.error_bound_coverage is None and p.error_bound_reason == rt.NO_UNCERTAINTY
    pred.close()
    with pytest.raises(InputError, match="no uncertainty output"):
        fit_error_bound(setup["hmr2"], setup["val"])
    assert not (setup["hmr2"] / rt.FILE_NAME).exists()


def test_run_json_reports_the_bound(setup: dict, tmp_path: Path) -> None:
    folder = _fresh(setup, tmp_path)
    fit_error_bound(folder, setup["val"], ErrorBoundConfig(coverage=0.9, split="sample"), label="poco-pare")
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "hpsedge.cli", "run", str(folder), "--image", str(setup["image"]),
                          "--out", str(out), "--device", "cpu", "--no-overlay"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    person = json.loads((out / "f0.json").read_text())["persons"][0]
    assert person["error_bound_coverage"] == 0.9 and person["error_bound_mm"]["body"] > 0
    assert person["error_bound_reason"] is None


def test_modules_import_without_torch() -> None:
    code = ("import sys, hpsedge.eval.error_bound, hpsedge.runtime.error_bound, hpsedge.export.outdir; "
            "assert 'torch' not in sys.modules and 'onnx' not in sys.modules, sorted(sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr


def test_triton_repository_carries_the_bound(setup: dict, tmp_path: Path) -> None:
    """The repository's ``hpsedge`` model verifies error_bound.json against its own copy of the manifest."""
    from hpsedge.export.triton import export_triton
    from hpsedge.serve.frames import FrameService

    folder = _fresh(setup, tmp_path)
    fit_error_bound(folder, setup["val"], ErrorBoundConfig(coverage=0.9, split="sample"), label="poco-pare")
    repo = export_triton(folder, tmp_path / "repo", kind="cpu")
    version = Path(repo.models["hpsedge"]) / "1"
    assert (version / rt.FILE_NAME).read_bytes() == (folder / rt.FILE_NAME).read_bytes()
    assert "error_bound_mm_body" in (Path(repo.models["hpsedge"]) / "config.pbtxt").read_text()
    manifest = load_manifest(version / "manifest.json")
    net = Predictor.load(folder, device="cpu")
    service = FrameService(manifest, net.backend.run)
    rgb = np.asarray(Image.open(setup["image"]).convert("RGB"))
    out = service(rgb, np.array([[40, 20, 200, 190]], dtype=np.float32))
    direct = net.predict(rgb, np.array([[40, 20, 200, 190]], dtype=np.float32))[0]
    assert out["error_bound_mm_arms"][0] == pytest.approx(direct.error_bound_mm["arms"], rel=1e-6)
    net.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hpsedge.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def _one_error(res: subprocess.CompletedProcess[str], needle: str) -> None:
    assert res.returncode == 2, res.stderr
    errs = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errs) == 1 and needle in errs[0], res.stderr
    assert "Traceback" not in res.stderr


def test_cli_fits_and_refuses_with_one_error_line(setup: dict, tmp_path: Path) -> None:
    folder = _fresh(setup, tmp_path)
    val = str(setup["val"])
    res = _cli("calib", "error-bound", str(folder), "--val-results", val, "--label", "poco-pare", "--coverage", "0.8",
               "--split", "sample", "--plot", str(tmp_path / "rel.png"))
    assert res.returncode == 0, res.stderr
    assert "body: held-out coverage" in res.stdout and (folder / rt.FILE_NAME).is_file()
    assert (tmp_path / "rel.png").is_file()
    _one_error(_cli("calib", "error-bound", str(setup["hmr2"]), "--val-results", val), "no uncertainty output")
    _one_error(_cli("calib", "error-bound", str(folder), "--val-results", val, "--label", "poco-pare"), "already")
    _one_error(_cli("calib", "error-bound", str(folder), "--val-results", val, "--label", "poco-pare",
                    "--coverage", "1.5", "--force"), "coverage")
    _one_error(_cli("calib", "error-bound", str(folder), "--val-results", str(tmp_path)), "results.json")
    # 36 samples: 14 calibrate, too few for 95 %
    _one_error(_cli("calib", "error-bound", str(folder), "--val-results", val, "--label", "poco-pare",
                    "--coverage", "0.95", "--split", "sample", "--force"), "calibration samples")


_SERVE_CLIENT = """
import json, sys
import numpy as np
from hpsedge.client import HpsedgeClient
d = np.load(sys.argv[2])
with HpsedgeClient(sys.argv[1]) as c:
    people = c.predict(d["image"], d["boxes"])
print(json.dumps([{k: float(v) for k, v in p.items() if k.startswith("error_bound")} for p in people]))
"""


def test_real_triton_server_returns_the_bound(setup: dict, tmp_path: Path, serve_python: Path) -> None:
    """`hpsedge serve` (PyTriton, a real Triton server) on a folder with the bound: one tensor per group."""
    import os
    import signal

    from test_serve import Server

    folder = _fresh(setup, tmp_path)
    fit_error_bound(folder, setup["val"], ErrorBoundConfig(coverage=0.9, split="sample"), label="poco-pare")
    rgb = np.asarray(Image.open(setup["image"]).convert("RGB"))
    boxes = np.array([[40, 20, 200, 190], [10, 10, 120, 150]], dtype=np.float32)
    np.savez(tmp_path / "req.npz", image=rgb, boxes=boxes)
    server = Server(serve_python, folder, tmp_path / "serve.log")
    try:
        server.wait_ready()
        res = subprocess.run([str(serve_python), "-c", _SERVE_CLIENT, f"127.0.0.1:{server.grpc}",
                              str(tmp_path / "req.npz")], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        assert res.returncode == 0, res.stderr[-3000:] + server.tail()
    finally:
        server.stop(signal.SIGTERM)
    got = json.loads(res.stdout.strip().splitlines()[-1])
    pred = Predictor.load(folder, device="cpu")
    want = pred.predict(rgb, boxes)
    pred.close()
    assert len(got) == 2
    for g, w in zip(got, want, strict=True):
        assert set(g) == {"error_bound_mm_body", "error_bound_mm_torso", "error_bound_mm_arms", "error_bound_mm_legs",
                          "error_bound_coverage"}
        assert g["error_bound_coverage"] == pytest.approx(0.9)
        assert g["error_bound_mm_arms"] == pytest.approx(w.error_bound_mm["arms"], rel=1e-5)


def test_per_joint_groups_and_score_uncertainty(setup: dict) -> None:
    """--groups joints: body + one group per LSP joint, each with its SMPL joint; --uncertainty score: the POCO score."""
    doc = fit_error_bound(setup["folder"], setup["val"], ErrorBoundConfig(coverage=0.8, groups="joints",
                          uncertainty="score", split="sample"), write=False)
    assert "written" not in doc and not (setup["folder"] / rt.FILE_NAME).exists()
    assert len(doc["groups"]) == 15 and doc["groups"]["left_wrist"]["smpl_joints"] == [20]
    eb = rt.parse_error_bound(doc)
    assert eb.uncertainty == "score"
    u = eb.uncertainties(None, np.array([0.3]), None)
    assert u is not None and u.shape == (1, 15) and np.all(u == 0.3)
    with pytest.raises(InputError, match="unknown grouping"):
        fit_error_bound(setup["folder"], setup["val"], ErrorBoundConfig(groups="fingers"), write=False)
    with pytest.raises(InputError, match="unknown --uncertainty"):
        fit_error_bound(setup["folder"], setup["val"], ErrorBoundConfig(uncertainty="entropy"), write=False)


def test_group_tables_follow_the_protocol_joint_set() -> None:
    from hpsedge.eval.error_bound import group_table

    lsp = group_table(14, "parts", "poco-3dpw")
    assert lsp["arms"] == ((6, 7, 10, 11), (18, 19, 20, 21))  # LSP elbows/wrists → SMPL elbows/wrists
    emdb = group_table(24, "parts", "tokenhmr-emdb")
    assert set(emdb) == {"body", "torso", "arms", "legs"} and emdb["legs"][0] == emdb["legs"][1] == (4, 5, 7, 8, 10, 11)
    assert sorted(j for g in ("torso", "arms", "legs") for j in emdb[g][0]) == list(range(24))  # a partition
    assert sorted(j for g in ("torso", "arms", "legs") for j in lsp[g][0]) == list(range(14))
    assert len(group_table(24, "joints", "tokenhmr-emdb")) == 25
    assert set(group_table(17, "parts", "other")) == {"body"}
