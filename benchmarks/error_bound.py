"""Reliability of hpsedge's error bounds (split conformal), on two honest data sources, with pictures.

1. ``synthetic``: data of a known law, no model: σ ~ U(0.05, 1), error = 120 mm · σ · |N(0, 1)|
   (heteroscedastic; the true 90 % bound is 197 mm · σ). 20 000 samples, split 20 % fit / 40 % calibration /
   40 % held out, seeds 0–4. Shows the coverage guarantee and what scaling by σ buys over a constant bound.
2. ``val``: a real ``hpsedge val`` run and ``fit_error_bound`` on it: a tiny poco-pare folder with **random
   weights** (``export_onnx(..., tiny=True, seed=0)``), the synthetic SMPL model of the tests, and an evaluation file
   made here whose ground truth is the folder's own prediction plus seeded noise (pose 0.15 rad per axis,
   betas 0.5) on 12 image folders ("sequences"; the split keeps sequences apart). Random weights make σ
   carry no information about the error, so only the marginal coverage is meaningful there.

Writes ``benchmarks/results/error_bound/`` : ``results.json``, ``results.md``, ``synthetic_reliability.png``,
``synthetic_by_uncertainty.png``, ``val_reliability.png``, ``val_error_bound.json``.

    python benchmarks/error_bound.py [--out DIR] [--samples 20000] [--val-samples 480]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from _neighbours import cpu_model  # noqa: E402
from hpsedge.eval.error_bound import (  # noqa: E402
    RELIABILITY_LEVELS,
    ErrorBoundConfig,
    coverage_by_uncertainty_chart,
    fit_error_bound,
    fit_groups,
    reliability_chart,
    split_samples,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "error_bound")
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--val-samples", type=int, default=480)
    ap.add_argument("--split-seeds", type=int, default=20, help="val: refit with this many split seeds")
    ap.add_argument("--keep", type=Path, help="val: work in this folder and keep it (default: a temporary one)")
    return ap.parse_args(argv)


def synthetic(n: int, seeds: list[int]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fit on the known law for each seed; returns seed 0's document (for the pictures) and a table."""
    rows, first = [], None
    for seed in seeds:
        rng = np.random.default_rng(seed)
        u = rng.uniform(0.05, 1.0, n)
        e = 120.0 * u * np.abs(rng.normal(size=n))
        split, how = split_samples([f"{i}" for i in range(n)], 0.2, 0.4, "sample", seed)  # own salted stream
        for cov in (0.8, 0.9, 0.95):
            f = fit_groups({"body": e}, {"body": u}, split, cov)[0]
            rows.append({"seed": seed, "nominal": cov, "achieved": f.report["achieved_coverage"],
                         "mean_bound_mm": f.report["mean_bound_mm"],
                         "constant_achieved": f.report["constant"]["achieved_coverage"],
                         "constant_bound_mm": f.report["constant"]["bound_mm"],
                         "worst_quartile": min(b["coverage"] for b in f.report["by_uncertainty"]),
                         "constant_worst_quartile": min(b["coverage"] for b in f.report["by_uncertainty_constant"])})
            if first is None and cov == 0.9:
                first = {"model": "synthetic: error = 120 mm · σ · |N(0,1)|", "coverage": cov, "uncertainty": "sigma",
                         "split": how, "groups": {"body": {**f.report, "a": f.a, "b": f.b, "quantile": f.quantile}}}
    assert first is not None
    return first, rows


def val_run(work: Path, n: int) -> tuple[dict[str, Any], Path, Path]:
    """A real val run of a tiny random-weight poco-pare folder, then fit_error_bound (see the docstring)."""
    from PIL import Image

    from hpsedge.eval.val import ValConfig, run_val
    from hpsedge.export.onnx import export_onnx
    from hpsedge.runtime.predictor import Predictor
    from smpl_synth import write_synthetic_smpl

    rng = np.random.default_rng(0)

    smpl = write_synthetic_smpl(work, style="npz")
    folder = export_onnx("poco-pare", work / "poco-pare", tiny=True, seed=0).out_dir  # random weights, seed 0
    names, centers, scales = [], [], []
    per_seq = n // 12
    for s in range(12):
        (work / "images" / f"seq{s:02d}").mkdir(parents=True)
        for i in range(4):
            img = np.clip(rng.normal(120, 50, (240, 320, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(work / "images" / f"seq{s:02d}" / f"f{i}.png")
        for k in range(per_seq):
            names.append(f"seq{s:02d}/f{k % 4}.png")
            centers.append([rng.uniform(90, 230), rng.uniform(80, 160)])
            scales.append(rng.uniform(0.6, 1.0))
    jreg = np.zeros((17, 6890))
    for j in range(17):
        idx = rng.choice(6890, size=12, replace=False)
        jreg[j, idx] = rng.random(12)
        jreg[j] /= jreg[j].sum()
    np.save(work / "jreg.npy", jreg)
    pred = Predictor.load(folder, smpl=smpl, device="cpu")
    poses, shapes = [], []
    for name, c, s in zip(names, centers, scales, strict=True):
        box = np.array([[c[0] - s * 100, c[1] - s * 100, c[0] + s * 100, c[1] + s * 100]])
        p = pred.predict(np.asarray(Image.open(work / "images" / name).convert("RGB")), box)[0]
        poses.append(p.pose_axis_angle.reshape(72) + rng.normal(0, 0.15, 72))
        shapes.append(p.betas + rng.normal(0, 0.5, 10))
    pred.close()
    np.savez(work / "eval.npz", imgname=np.array(names), center=np.array(centers), scale=np.array(scales),
             pose=np.array(poses), shape=np.array(shapes))
    run_val(ValConfig(folders=[folder], data=work / "eval.npz", images=work / "images", smpl=smpl,
                      out=work / "val", j_regressor=work / "jreg.npy", device="cpu", plots=False))
    return fit_error_bound(folder, work / "val", ErrorBoundConfig(coverage=0.9, split="sequence")), folder, work / "val"


def split_sweep(folder: Path, val_out: Path, seeds: int) -> dict[str, Any]:
    """Held-out coverage of the val run's bound over many split seeds (sequence and sample splits), nominal 0.9."""
    out: dict[str, Any] = {}
    for how in ("sequence", "sample"):
        cov: dict[str, list[float]] = {}
        for seed in range(seeds):
            doc = fit_error_bound(folder, val_out, ErrorBoundConfig(coverage=0.9, split=how, seed=seed), write=False)
            for g, v in doc["groups"].items():
                cov.setdefault(g, []).append(v["achieved_coverage"])
        out[how] = {g: {"mean": float(np.mean(c)), "min": float(np.min(c)), "max": float(np.max(c)),
                        "sd": float(np.std(c))} for g, c in cov.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    syn, rows = synthetic(args.samples, args.seeds)
    reliability_chart(args.out / "synthetic_reliability.png", syn,
                      "Error-bound reliability, synthetic data (error = 120 mm x sigma x |N(0,1)|)")
    coverage_by_uncertainty_chart(args.out / "synthetic_by_uncertainty.png", syn, "body",
                                  "Coverage per sigma quartile at 90 %, synthetic data")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        val_doc, folder, val_out = val_run(work, args.val_samples)
        sweep = split_sweep(folder, val_out, args.split_seeds)
    val_doc.pop("written", None)
    reliability_chart(args.out / "val_reliability.png", val_doc,
                      "Error-bound reliability: hpsedge val, tiny poco-pare (random weights)")
    (args.out / "val_error_bound.json").write_text(json.dumps(val_doc, indent=1, ensure_ascii=False) + "\n")
    try:
        import os

        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    doc = {"synthetic": {"samples": args.samples, "rows": rows, "seed0_reliability": syn["groups"]["body"]["reliability"]},
           "val": {g: {k: v[k] for k in ("n_fit", "n_calibration", "n_holdout", "achieved_coverage", "mean_bound_mm",
                                          "constant", "reliability")} for g, v in val_doc["groups"].items()},
           "val_split": val_doc["split"], "val_split_sweep": {"seeds": args.split_seeds, **sweep}, "cpu": cpu_model(), "loadavg": list(load),
           "seconds": round(time.perf_counter() - t0, 1), "levels": list(RELIABILITY_LEVELS)}
    (args.out / "results.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    (args.out / "results.md").write_text(markdown(doc), encoding="utf-8")
    print(markdown(doc))
    return 0


def markdown(doc: dict[str, Any]) -> str:
    lines = ["## Synthetic (error = 120 mm · σ · |N(0,1)|), held-out coverage", "",
             "| seed | nominal | achieved (σ-scaled) | mean bound mm | worst σ-quartile | achieved (constant) | "
             "constant bound mm | worst σ-quartile (constant) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in doc["synthetic"]["rows"]:
        lines.append(f"| {r['seed']} | {r['nominal']:.2f} | {r['achieved']:.4f} | {r['mean_bound_mm']:.1f} | "
                     f"{r['worst_quartile']:.3f} | {r['constant_achieved']:.4f} | {r['constant_bound_mm']:.1f} | "
                     f"{r['constant_worst_quartile']:.3f} |")
    lines += ["", f"## hpsedge val run (tiny poco-pare, random weights), nominal 0.90; split {doc['val_split']['how']}",
              "", "| group | fit / calibration / held out | achieved | mean bound mm | constant: achieved | constant bound mm |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    for g, v in doc["val"].items():
        lines.append(f"| {g} | {v['n_fit']} / {v['n_calibration']} / {v['n_holdout']} | {v['achieved_coverage']:.3f} | "
                     f"{v['mean_bound_mm']:.1f} | {v['constant']['achieved_coverage']:.3f} | {v['constant']['bound_mm']:.1f} |")
    sw = doc["val_split_sweep"]
    lines += ["", f"Same val run, refit with {sw['seeds']} split seeds (nominal 0.90): held-out coverage mean [min, max]", "",
              "| group | by sequence | by sample |", "| --- | --- | --- |"]
    for g in sw["sequence"]:
        a, b = sw["sequence"][g], sw["sample"][g]
        lines.append(f"| {g} | {a['mean']:.3f} [{a['min']:.3f}, {a['max']:.3f}] | {b['mean']:.3f} [{b['min']:.3f}, {b['max']:.3f}] |")
    lines += ["", f"CPU: {doc['cpu']}; load average {', '.join(f'{x:.2f}' for x in doc['loadavg'])}; "
              f"{doc['seconds']} s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
