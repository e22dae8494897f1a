"""`hpsedge val` end to end on synthetic data made here: ground truth = the FP32 folder's own output."""

from __future__ import annotations

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
    # ground truth: the FP32 graph's own pose (axis-angle) and shape for each box
    pred = Predictor.load(f16, smpl=smpl_npz, precision="fp32", device="cpu")
    poses, shapes = [], []
    for name, c, s in zip(names, centers, scales, strict=True):
        box = np.array([[c[0] - s * 100, c[1] - s * 100, c[0] + s * 100, c[1] + s * 100]])
        p = pred.predict(np.asarray(Image.open(root / "images" / name).convert("RGB")), box)[0]
        poses.append(p.pose_axis_angle.reshape(72))
        shapes.append(p.betas)
    data = root / "eval.npz"
    np.savez(data, imgname=np.array(names), center=np.array(centers), scale=np.array(scales),
             pose=np.array(poses), shape=np.array(shapes), gender=np.array(["m", "f"] * 3))
    return {"root": root, "fp16": f16, "int8": i8, "data": data, "images": root / "images",
            "jreg": root / "J_regressor_h36m.npy", "smpl": smpl_npz, "n": len(names)}


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
        c, sc = data["center"][i], data["scale"][i]
        box = np.array([[c[0] - sc * 100, c[1] - sc * 100, c[0] + sc * 100, c[1] + sc * 100]])
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
        run_val(_cfg(s, out, folders=[str(s["int8"])], pelvis="hips", plots=False))
    hips = run_val(_cfg(s, out, folders=[str(s["int8"])], pelvis="hips", plots=False, force=True))
    assert hips["resumed_samples"] == {"pare-int8": 0} and "mid-point" in hips["protocol"]["pelvis"]


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
    value, kind = _uncertainty(SimpleNamespace(score=None, confidence=0.8))
    assert value == pytest.approx(0.2) and "token confidence" in str(kind)
    assert _uncertainty(SimpleNamespace(score=None, confidence=None)) == (None, None)
