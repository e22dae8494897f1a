"""3,000 person boxes on one image: a clean refusal past the box limit, and the peak memory when allowed.

Each measurement runs in a fresh child process (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is the
child's own peak RSS):

* ``refuse``: ``Predictor.predict`` with K boxes and the default limit (``Predictor.max_boxes``): the
  ``InputError`` message and the peak RSS of load + refusal;
* ``load``: the Predictor loaded and warmed up, nothing predicted (the baseline);
* ``run``: the limit raised to K (``--run-boxes``, default K): every box runs, in chunks of the manifest's ``max_batch`` (preprocessing,
  the graph and postprocessing per chunk), and the peak RSS is compared with 1.5 GB.

Uses ``--folder`` (a poco-pare build folder; default: a full-size poco-pare export with random weights made
once into a temporary folder: timing and memory do not depend on the weights). Writes
``benchmarks/results/many_boxes.{json,md}``.

    python benchmarks/many_boxes.py [--folder build/poco-pare] [--boxes 3000] [--run-boxes N] [--threads 2] [--smpl]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {src!r}); sys.path.insert(0, {tests!r})
import numpy as np
from hpsedge.errors import InputError
from hpsedge.runtime.predictor import Predictor
mode, folder, k, threads, smpl = {mode!r}, {folder!r}, {k}, {threads}, {smpl!r}
pred = Predictor.load(folder, backend="ort", device="cpu", threads=threads, smpl=smpl or None)
rng = np.random.default_rng(0)
img = (rng.random((720, 1280, 3)) * 255).astype(np.uint8)
xy = rng.uniform([0, 0], [1100, 500], size=(k, 2))
wh = rng.uniform([60, 150], [180, 220], size=(k, 2))
boxes = np.concatenate([xy, xy + wh], axis=1)
out = {{"mode": mode, "boxes": k, "max_boxes": pred.max_boxes, "max_batch": pred.manifest.max_batch}}
t = time.perf_counter()
if mode == "refuse":
    try:
        pred.predict(img, boxes)
        out["refused"] = False
    except InputError as exc:
        out["refused"] = True
        out["message"] = exc.message
elif mode == "run":
    pred.max_boxes = k
    res = pred.predict(img, boxes)
    out["persons"] = len(res)
out["seconds"] = time.perf_counter() - t
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print(json.dumps(out))
"""


def _child(mode: str, folder: Path, k: int, threads: int, smpl: str | None) -> dict:
    code = CHILD.format(src=str(ROOT / "src"), tests=str(ROOT / "tests"), mode=mode, folder=str(folder), k=k,
                        threads=threads, smpl=smpl)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=None)
    ap.add_argument("--boxes", type=int, default=3000)
    ap.add_argument("--run-boxes", type=int, default=None,
                    help="boxes for the 'run' child (default: --boxes); fewer on a slow machine")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--smpl", action="store_true", help="also decode meshes (synthetic SMPL file)")
    ap.add_argument("--name", default="many_boxes", help="results file stem")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT / "tests"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder
        if folder is None:
            from hpsedge.export.onnx import export_onnx

            folder = export_onnx("poco-pare", Path(tmp) / "poco-pare").out_dir
        smpl = None
        if args.smpl:
            import smpl_synth

            smpl = str(smpl_synth.write_synthetic_smpl(Path(tmp), style="npz"))
        start_load = os.getloadavg()
        run_k = args.run_boxes or args.boxes
        rows = [_child(mode, folder, k, args.threads, smpl)
                for mode, k in (("load", args.boxes), ("refuse", args.boxes), ("run", run_k))]
    res = {"folder": str(args.folder or "poco-pare (full size, random weights)"), "boxes": args.boxes,
           "threads": args.threads, "smpl": bool(args.smpl), "machine": platform.platform(),
           "cpus": os.cpu_count(), "load_avg_start": start_load, "load_avg_end": os.getloadavg(), "rows": rows,
           "run_under_1_5_GB": rows[2]["peak_rss_mb"] < 1536}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(res, indent=1) + "\n")
    lines = [
        f"# {args.boxes} person boxes on one 1280×720 image (poco-pare, ONNX Runtime CPU, {args.threads} threads"
        + (", with SMPL meshes)" if args.smpl else ", no SMPL meshes)"),
        "",
        f"Command: `python benchmarks/many_boxes.py --boxes {args.boxes} --threads {args.threads}"
        + (" --smpl" if args.smpl else "") + (f" --run-boxes {args.run_boxes}" if args.run_boxes else "")
        + (f" --folder {args.folder}" if args.folder else "") + "`",
        f"Machine: {res['machine']}, {res['cpus']} CPUs, load average {start_load[0]:.1f} at start (shared).",
        "",
        "| child process | result | seconds | peak RSS (MB) |",
        "|---|---|---:|---:|",
    ]
    for r in rows:
        what = {"load": "Predictor loaded, nothing run",
                "refuse": f"default limit {r['max_boxes']}: " + (f"refused ({r.get('message')})" if r.get("refused")
                                                                  else "NOT refused"),
                "run": f"limit raised: {r.get('persons')} persons in chunks of {r['max_batch']}"}[r["mode"]]
        lines.append(f"| {r['mode']} | {what} | {r['seconds']:.2f} | {r['peak_rss_mb']:.0f} |")
    lines += ["", f"Peak RSS of the run ({rows[2].get('persons')} persons) below 1.5 GB: "
              f"{'yes' if res['run_under_1_5_GB'] else 'NO'}."]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t0:.0f} s)")
