"""`hpsedge val` end to end on synthetic data made here: ground truth = the FP32 folder's own output on the crop
POCO's evaluation takes (integer centre and side)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hpsedge.errors import HpsedgeError, InputError
from hpsedge.eval import metrics
from hpsedge.eval.val import ValConfig, run_val
from hpsedge.export.build import BuildConfig, export_build
from hpsedge.models.checkpoints import build_model
from hpsedge.runtime.predictor import Predictor
from hpsedge.runtime.smpl import SMPL

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, smpl_npz: Path) -> dict:
    """Two tiny poco-pare build folders (fp16 — which also holds the fp32 graph — and int8), images, a J-regressor
    and an evaluation file whose ground truth is the FP32 graph's own prediction."""
    root = tmp_path_factory.mktemp("val")
    rng = np.random.default_rng(0)
    img_dir = root / "images" / "seq_a"
    img_dir.mkdir(parents=True)
    names, centers, scales = [], [], []
    for i in range(3):
        yy, xx = np.mgrid[0:240, 0:320]
        base = np.stack([(xx * (i + 1) / 3) % 255, (yy * (i + 2) / 2) % 255, (xx + yy) / 2 % 255], axis=-1)
        img = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(img_dir / f"frame_{i}.png")
        for _ in range(2):
            side = rng.uniform(80, 200)
            names.append(f"seq_a/frame_{i}.png")
            centers.append([rng.uniform(60, 260), rng.uniform(60, 180)])
            scales.append(side / 200.0)
    torch.manual_seed(3)  # one set of (random) weights for both folders, so they share their FP32 graph
    model, _, _ = build_model("poco-pare", tiny=True)
    torch.save(model.state_dict(), root / "ckpt.pt")
    f16 = export_build(BuildConfig(model="poco-pare", out=root / "pare-fp16", precision="fp16", tiny=True,
                                   checkpoint=root / "ckpt.pt")).folder
    i8 = export_build(BuildConfig(model="poco-pare", out=root / "pare-int8", precision="int8", tiny=True,
                                  checkpoint=root / "ckpt.pt", calib_images=root / "images" / "seq_a",
                                  calib_max_samples=8)).folder
    jreg = np.zeros((17, 6890))
    for j in range(17):
        idx = rng.choice(6890, size=12, replace=False)
        w = rng.random(12)
        jreg[j, idx] = w / w.sum()
    np.save(root / "J_regressor_h36m.npy", jreg)
    # ground truth: the FP32 graph's own pose (axis-angle) and shape for each box, on POCO's crop_cv2 box:
    # int(round(centre)), int(round(scale·200)); the boxes here are never integers, so an unrounded crop differs
    pred = Predictor.load(f16, smpl=smpl_npz, precision="fp32", device="cpu")
    poses, shapes = [], []
    for name, c, s in zip(names, centers, scales, strict=True):
        p = pred.predict(np.asarray(Image.open(root / "images" / name).convert("RGB")), _poco_box(c, s))[0]
        poses.append(p.pose_axis_angle.reshape(72))
        shapes.append(p.betas)
    data = root / "eval.npz"
    np.savez(data, imgname=np.array(names), center=np.array(centers), scale=np.array(scales),
             pose=np.array(poses), shape=np.array(shapes), gender=np.array(["m", "f"] * 3))
    return {"root": root, "fp16": f16, "int8": i8, "data": data, "images": root / "images",
            "jreg": root / "J_regressor_h36m.npy", "smpl": smpl_npz, "n": len(names)}


def _poco_box(c: np.ndarray, s: float) -> np.ndarray:
    """POCO's crop_cv2 box, written out: integer centre, integer side."""
    cx, cy, side = round(float(c[0])), round(float(c[1])), round(float(s) * 200.0)  # Python's round: ties to even
    return np.array([[cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]])


def _exact_box(c: np.ndarray, s: float) -> np.ndarray:
    return np.array([[c[0] - s * 100, c[1] - s * 100, c[0] + s * 100, c[1] + s * 100]])


def _cfg(s: dict, out: Path, **kw: object) -> ValConfig:
    base = {"folders": [f"{s['fp16']}@fp32", str(s["fp16"]), str(s["int8"])], "data": s["data"],
            "images": s["images"], "smpl": s["smpl"], "out": out, "j_regressor": s["jreg"], "device": "cpu"}
    base.update(kw)
    return ValConfig(**base)  # type: ignore[arg-type]


def test_fp32_scores_zero_and_the_others_their_drift(setup: dict, tmp_path: Path) -> None:
    s = setup
    doc = run_val(_cfg(s, tmp_path / "out", folders=[*_cfg(s, tmp_path).folders, f"{s['int8']}@fp32"]))
    labels = [f["label"] for f in doc["folders"]]
    assert labels == ["pare-fp16@fp32", "pare-fp16", "pare-int8", "pare-int8@fp32"]
    # the graph ONNX Runtime's CPU provider actually ran: an INT8 folder's CPU flavour (#17)
    assert [f["graph"] for f in doc["folders"]] == ["model.onnx", "model.fp16.onnx", "model.int8.cpu.onnx",
                                                     "model.onnx"]
    res = doc["results"]
    assert all(res[k]["samples"] == s["n"] for k in labels)  # every folder on the same samples
    for label in ("pare-fp16@fp32", "pare-int8@fp32"):  # the same FP32 graph, in either folder
        for key in ("mpjpe", "pa_mpjpe", "pve"):
            assert res[label][key]["mean"] < 1e-3, (label, key, res[label][key])  # mm: the axis-angle round trip
    # FP16 and INT8 drift from their FP32 graph; INT8 (8-bit weights and activations) the most
    assert 0 < res["pare-fp16"]["mpjpe"]["mean"] < res["pare-int8"]["mpjpe"]["mean"]
    # independent check of the INT8 drift: the runtime's INT8 mesh vs the ground-truth mesh, metrics by hand
    jreg = np.load(s["jreg"])
    model = SMPL.load(s["smpl"])
    data = np.load(s["data"])
    pred = Predictor.load(s["int8"], smpl=model, device="cpu")
    errs = []
    for i in range(s["n"]):
        box = _poco_box(data["center"][i], data["scale"][i])
        img = np.asarray(Image.open(s["images"] / str(data["imgname"][i])).convert("RGB"))
        pv = pred.predict(img, box)[0].vertices[None].astype(np.float64)
        gv = model.forward(data["shape"][i : i + 1], data["pose"][i : i + 1]).vertices.astype(np.float64)
        pj = (jreg @ pv[0])[None]
        gj = (jreg @ gv[0])[None]
        p14 = pj[:, list(metrics.H36M_TO_J14)] - pj[:, [0]]
        g14 = gj[:, list(metrics.H36M_TO_J14)] - gj[:, [0]]
        errs.append(1000 * np.linalg.norm(p14 - g14, axis=-1).mean())
    assert res["pare-int8"]["mpjpe"]["mean"] == pytest.approx(np.mean(errs), rel=1e-4)
    # POCO models: the score correlates with the error in some way, and the curves are there
    u = res["pare-int8"]["uncertainty"]
    assert u["score"].startswith("POCO score") and len(u["sparsification"]["curve"]) == 20
    assert u["ause_pa_mpjpe"] >= -1e-9
    # reports
    out = tmp_path / "out"
    md = (out / "results.md").read_text()
    for label in labels:
        assert f"| {label} |" in md
    assert "NEUTRAL SMPL although the file has genders" in md
    for png in ("sparsification.png", "errors_pa_mpjpe.png", "errors_mpjpe.png"):
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.size[0] > 100
    assert len((out / "samples" / "pare-int8.jsonl").read_text().splitlines()) == s["n"]


def test_resume_max_samples_and_refusal(setup: dict, tmp_path: Path) -> None:
    s = setup
    out = tmp_path / "out"
    first = run_val(_cfg(s, out, folders=[str(s["int8"])], max_samples=4, plots=False))
    assert first["samples"] == 4 and first["resumed_samples"] == {"pare-int8": 0}
    # interrupted mid-write: two whole lines and a torn third one
    f = out / "samples" / "pare-int8.jsonl"
    lines = f.read_text().splitlines()
    f.write_text("\n".join(lines[:2]) + "\n" + lines[2][:15])
    again = run_val(_cfg(s, out, folders=[str(s["int8"])], plots=False))  # all 6 now
    assert again["resumed_samples"] == {"pare-int8": 2} and again["samples"] == s["n"]
    assert again["results"]["pare-int8"]["samples"] == s["n"]
    assert len(f.read_text().splitlines()) == s["n"]
    full = run_val(_cfg(s, tmp_path / "fresh", folders=[str(s["int8"])], plots=False))
    assert again["results"]["pare-int8"]["mpjpe"]["mean"] == pytest.approx(full["results"]["pare-int8"]["mpjpe"]["mean"])
    # another configuration into the same folder: refused without --force, replaced with it
    with pytest.raises(InputError, match="another run"):
        run_val(_cfg(s, out, folders=[str(s["int8"])], pelvis="lsp-hips", plots=False))
    hips = run_val(_cfg(s, out, folders=[str(s["int8"])], pelvis="lsp-hips", plots=False, force=True))
    assert hips["resumed_samples"] == {"pare-int8": 0} and "no paper's protocol" in hips["protocol"]["pelvis"]
    # the old name is refused: it never was TokenHMR's EMDB protocol
    with pytest.raises(InputError, match="tokenhmr-emdb"):
        run_val(_cfg(s, out, folders=[str(s["int8"])], pelvis="hips", plots=False, force=True))


def test_gendered_ground_truth(setup: dict, tmp_path: Path) -> None:
    s = setup
    doc = run_val(_cfg(s, tmp_path / "g", folders=[f"{s['fp16']}@fp32"], smpl_male=s["smpl"], smpl_female=s["smpl"],
                       max_samples=2, plots=False))
    assert "gendered SMPL" in doc["protocol"]["smpl"]
    with pytest.raises(InputError, match="both"):
        run_val(_cfg(s, tmp_path / "g2", smpl_male=s["smpl"]))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hpsedge.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def _bad_run(s: dict, tmp_path: Path, **over: str) -> subprocess.CompletedProcess[str]:
    opts = {"--data": str(s["data"]), "--images": str(s["images"]), "--smpl": str(s["smpl"]),
            "--j-regressor": str(s["jreg"]), "--out": str(tmp_path / "o")}
    opts.update(over)
    return _cli("val", str(s["int8"]), *[x for kv in opts.items() for x in kv])


def _one_error(res: subprocess.CompletedProcess[str], needle: str) -> None:
    assert res.returncode == 2, res.stderr
    errs = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errs) == 1 and needle in errs[0], res.stderr
    assert "Traceback" not in res.stderr


def test_bad_inputs_give_one_error_line(setup: dict, tmp_path: Path) -> None:
    s = setup
    d = dict(np.load(s["data"]))
    del d["pose"]
    np.savez(tmp_path / "nopose.npz", **d)
    _one_error(_bad_run(s, tmp_path, **{"--data": str(tmp_path / "nopose.npz")}), "lacks the key(s) pose")
    d = dict(np.load(s["data"]))
    d["imgname"] = np.array([*d["imgname"][:-1], "seq_a/gone.png"])
    np.savez(tmp_path / "missing.npz", **d)
    _one_error(_bad_run(s, tmp_path, **{"--data": str(tmp_path / "missing.npz")}), "image(s) are missing")
    np.savez(tmp_path / "smplx.npz", v_template=np.zeros((10475, 3)), J_regressor=np.zeros((55, 10475)),
             f=np.zeros((20908, 3), np.int32))
    _one_error(_bad_run(s, tmp_path, **{"--smpl": str(tmp_path / "smplx.npz")}), "SMPL-X")
    np.save(tmp_path / "jreg24.npy", np.zeros((24, 6890)))
    _one_error(_bad_run(s, tmp_path, **{"--j-regressor": str(tmp_path / "jreg24.npy")}), "expected the Human3.6M")
    _one_error(_bad_run(s, tmp_path, **{"--pelvis": "hips"}), "tokenhmr-emdb")  # never TokenHMR's protocol
    _one_error(_bad_run(s, tmp_path, **{"--protocol": "spin"}), "unknown --protocol")
    _one_error(_bad_run(s, tmp_path, **{"--protocol": "tokenhmr-emdb"}), "--j-regressor is not used")
    # the CLI runs TokenHMR's EMDB protocol without a J-regressor file (SMPL's own)
    res = _cli("val", str(s["int8"]), "--data", str(s["data"]), "--images", str(s["images"]), "--smpl", str(s["smpl"]),
               "--protocol", "tokenhmr-emdb", "--max-samples", "2", "--out", str(tmp_path / "emdb"), "--device", "cpu")
    assert res.returncode == 0, res.stderr
    assert "protocol tokenhmr-emdb" in res.stdout and (tmp_path / "emdb" / "results.json").is_file()


def test_hostile_paths_and_values(setup: dict, tmp_path: Path) -> None:
    s = setup
    d = dict(np.load(s["data"]))
    d["imgname"] = np.array(["../eval.npz"] * len(d["imgname"]))
    np.savez(tmp_path / "escape.npz", **d)
    with pytest.raises(InputError, match="outside the image root"):
        run_val(_cfg(s, tmp_path / "x", data=tmp_path / "escape.npz"))
    d = dict(np.load(s["data"]))
    d["imgname"] = d["imgname"].astype(object)
    np.savez(tmp_path / "objects.npz", **d)
    with pytest.raises(InputError, match="Python objects"):
        run_val(_cfg(s, tmp_path / "x", data=tmp_path / "objects.npz"))
    d = dict(np.load(s["data"]))
    d["scale"] = -d["scale"]
    np.savez(tmp_path / "neg.npz", **d)
    with pytest.raises(InputError, match="positive"):
        run_val(_cfg(s, tmp_path / "x", data=tmp_path / "neg.npz"))
    with pytest.raises(HpsedgeError):
        run_val(_cfg(s, tmp_path / "x", folders=[f"{s['int8']}@fp64"]))


def test_uncertainty_source() -> None:
    """POCO: the official score; TokenHMR: 1 − token confidence; plain regressors: none."""
    from types import SimpleNamespace

    from hpsedge.eval.val import _uncertainty

    assert _uncertainty(SimpleNamespace(score=0.3, confidence=0.7))[0] == 0.3
    value, kind = _uncertainty(SimpleNamespace(score=None, confidence=0.8), "token_confidence")
    assert value == pytest.approx(0.2) and "token confidence" in str(kind)
    assert _uncertainty(SimpleNamespace(score=None, confidence=None)) == (None, None)


def _rodrigues(aa: np.ndarray) -> np.ndarray:
    """[N, 3] axis-angle → [N, 3, 3], written out (Rodrigues' formula)."""
    out = []
    for v in aa:
        a = np.linalg.norm(v)
        if a < 1e-12:
            out.append(np.eye(3))
            continue
        k = v / a
        kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        out.append(np.eye(3) + np.sin(a) * kx + (1 - np.cos(a)) * kx @ kx)
    return np.array(out)


def test_per_joint_correlation_is_poco_logged_one(setup: dict, tmp_path: Path) -> None:
    """Per joint (POCO trainer.py): Pearson r of rotation-matrix MSE vs σ over (sample, joint) pairs, next to the
    per-person score vs PA-MPJPE; both computed here by hand from the runtime's own outputs."""
    s = setup
    doc = run_val(_cfg(s, tmp_path / "pj", folders=[str(s["int8"])], plots=False))
    res = doc["results"]["pare-int8"]
    data = np.load(s["data"])
    pred = Predictor.load(s["int8"], smpl=s["smpl"], device="cpu")
    mse, sig = [], []
    for i in range(s["n"]):
        img = np.asarray(Image.open(s["images"] / str(data["imgname"][i])).convert("RGB"))
        p = pred.predict(img, _poco_box(data["center"][i], data["scale"][i]))[0]
        gt = _rodrigues(data["pose"][i].reshape(24, 3))
        mse.append(((p.pose_rotmat.astype(np.float64) - gt) ** 2).mean(axis=(1, 2)))
        sig.append(p.sigma.astype(np.float64))
    mse_a, sig_a = np.array(mse), np.array(sig)
    acc = sig_a.copy()
    parents = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
    for j in range(1, 24):
        acc[:, j] += acc[:, parents[j]]
    pj = res["per_joint_uncertainty"]
    assert pj["pairs"] == 24 * s["n"]
    assert pj["pearson_rotmat_mse_sigma"] == pytest.approx(np.corrcoef(mse_a.ravel(), sig_a.ravel())[0, 1], abs=1e-6)
    assert pj["pearson_rotmat_mse_accumulated_sigma"] == pytest.approx(
        np.corrcoef(mse_a.ravel(), acc.ravel())[0, 1], abs=1e-6)
    assert "per_person" not in pj and res["uncertainty"]["score"].startswith("POCO score")
    md = (tmp_path / "pj" / "results.md").read_text()
    assert "per-joint r, rotmat MSE vs σ (POCO's logged)" in md and "per-person uncertainty" in md


def test_rows_without_smpl_are_scored_and_short_arrays_refused(setup: dict, tmp_path: Path) -> None:
    """has_smpl = 0 rows are evaluated (POCO's loader: against pose 0, betas 0); a has_smpl shorter than imgname
    is one error, not a silent truncation; curate's gender 'n' is the neutral body."""
    s = setup
    d = dict(np.load(s["data"]))
    d["has_smpl"] = np.array([1, 0, 1, 1, 1, 1], dtype=np.float64)
    d["gender"] = np.array(["m", "n", "n", "f", "n", "m"])
    np.savez(tmp_path / "part.npz", **d)
    doc = run_val(_cfg(s, tmp_path / "o", folders=[f"{s['fp16']}@fp32"], data=tmp_path / "part.npz", plots=False,
                       smpl_male=s["smpl"], smpl_female=s["smpl"]))
    assert doc["samples"] == s["n"] and doc["rows_without_smpl"] == 1
    recs = [json.loads(line) for line in (tmp_path / "o" / "samples" / "pare-fp16@fp32.jsonl").read_text().splitlines()]
    assert [r["has_smpl"] for r in recs] == [True, False, True, True, True, True]
    # the row without SMPL: the FP32 prediction against the zero-pose, zero-shape mesh, by hand
    jreg = np.load(s["jreg"])
    model = SMPL.load(s["smpl"])
    pred = Predictor.load(s["fp16"], smpl=model, precision="fp32", device="cpu")
    img = np.asarray(Image.open(s["images"] / str(d["imgname"][1])).convert("RGB"))
    pv = pred.predict(img, _poco_box(d["center"][1], d["scale"][1]))[0].vertices.astype(np.float64)
    gv = model.forward(np.zeros((1, 10)), np.zeros((1, 72))).vertices[0].astype(np.float64)
    pj, gj = jreg @ pv, jreg @ gv
    want = 1000 * np.linalg.norm((pj[list(metrics.H36M_TO_J14)] - pj[0]) - (gj[list(metrics.H36M_TO_J14)] - gj[0]),
                                 axis=-1).mean()
    assert recs[1]["mpjpe"] == pytest.approx(want, rel=1e-4) and recs[1]["mpjpe"] > 1.0
    assert max(r["mpjpe"] for i, r in enumerate(recs) if i != 1) < 1e-3  # the others: their own ground truth
    # short has_smpl: refused with one line through the CLI
    d["has_smpl"] = np.array([1, 1])
    np.savez(tmp_path / "short.npz", **d)
    _one_error(_bad_run(s, tmp_path, **{"--data": str(tmp_path / "short.npz")}), "'has_smpl' has shape [2]")


def test_tokenhmr_protocols_end_to_end(setup: dict, tmp_path: Path) -> None:
    """--protocol tokenhmr-emdb / tokenhmr-3dpw: exact crop, SMPL's own regressor (EMDB) or J19 (3DPW), root-aligned
    PVE; the figures against a computation written out here."""
    s = setup
    model = SMPL.load(s["smpl"])
    rng = np.random.default_rng(21)
    j19 = np.zeros((19, 6890))
    for j in range(19):
        idx = rng.choice(6890, size=10, replace=False)
        j19[j, idx] = rng.dirichlet(np.ones(10))
    import pickle

    (tmp_path / "SMPL_to_J19.pkl").write_bytes(pickle.dumps(j19, protocol=2))
    emdb = run_val(_cfg(s, tmp_path / "emdb", folders=[str(s["int8"])], protocol="tokenhmr-emdb", j_regressor=None,
                        max_samples=3, plots=False))
    pw = run_val(_cfg(s, tmp_path / "3dpw", folders=[str(s["int8"])], protocol="tokenhmr-3dpw",
                      j_regressor=tmp_path / "SMPL_to_J19.pkl", max_samples=3, plots=False))
    assert emdb["protocol"]["name"] == "tokenhmr-emdb" and pw["protocol"]["name"] == "tokenhmr-3dpw"
    data = np.load(s["data"])
    pred = Predictor.load(s["int8"], smpl=model, device="cpu")
    want: dict[str, list[tuple[float, float]]] = {"emdb": [], "3dpw": []}
    for i in range(3):
        img = np.asarray(Image.open(s["images"] / str(data["imgname"][i])).convert("RGB"))
        pv = pred.predict(img, _exact_box(data["center"][i], data["scale"][i]))[0].vertices.astype(np.float64)
        gv = model.forward(data["shape"][i : i + 1], data["pose"][i : i + 1]).vertices[0].astype(np.float64)
        jr = model.j_regressor.astype(np.float64)
        pk, gk = jr @ pv, jr @ gv
        pr, gr = (pk[1] + pk[2]) / 2, (gk[1] + gk[2]) / 2
        want["emdb"].append((1000 * np.linalg.norm((pk - pr) - (gk - gr), axis=-1).mean(),
                             1000 * np.linalg.norm((pv - pr) - (gv - gr), axis=-1).mean()))
        pk, gk = j19 @ pv, j19 @ gv
        keep = [*range(13), 18]
        want["3dpw"].append((1000 * np.linalg.norm((pk[keep] - pk[14]) - (gk[keep] - gk[14]), axis=-1).mean(),
                             1000 * np.linalg.norm((pv - pk[14]) - (gv - gk[14]), axis=-1).mean()))
    for key, doc in (("emdb", emdb), ("3dpw", pw)):
        r = doc["results"]["pare-int8"]
        assert r["mpjpe"]["mean"] == pytest.approx(np.mean([w[0] for w in want[key]]), rel=1e-4), key
        assert r["pve"]["mean"] == pytest.approx(np.mean([w[1] for w in want[key]]), rel=1e-4), key
    # a J-regressor with the EMDB protocol, or none with a regressor protocol: one error each
    with pytest.raises(InputError, match="not used"):
        run_val(_cfg(s, tmp_path / "x", protocol="tokenhmr-emdb"))
    with pytest.raises(InputError, match="SMPL_to_J19"):
        run_val(_cfg(s, tmp_path / "x", protocol="tokenhmr-3dpw", j_regressor=None))
    with pytest.raises(InputError, match="SMPL_to_J19"):  # the H36M file where J19 belongs
        run_val(_cfg(s, tmp_path / "x", protocol="tokenhmr-3dpw"))
