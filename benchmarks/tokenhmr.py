"""TokenHMR on the CPU: PyTorch eager vs ONNX Runtime latency at batch 1, and what the ViT-H costs per crop.

Exports the full-size network (random weights: speed does not depend on them; 2.75 GB of FP32 weights, so
the graph is ``model.onnx`` + ``model.onnx.data``), then times, interleaved repetition by repetition:

* PyTorch eager (``torch.inference_mode``): the whole network, the ViT-H backbone alone, and the rest (token
  head + soft codebook decoding + tokenizer decoder + 6D → matrices) on precomputed image tokens;
* ONNX Runtime (CPU execution provider) on the exported graph; its per-node profile splits the time into
  the backbone's nodes (``/backbone/…``) and the rest.

Medians are reported. Writes ``benchmarks/results/tokenhmr.{json,md}``.

    python benchmarks/tokenhmr.py [--reps 5] [--threads N] [--export DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from hpsedge.export.onnx import export_onnx
from hpsedge.models.checkpoints import build_model

RESULTS = Path(__file__).parent / "results"


def _ms(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000.0


def _ort_backbone_share(path: Path, feeds: dict, threads: int, runs: int = 2) -> tuple[float, float]:
    """(backbone ms, total node ms) per run from ONNX Runtime's node profile (after one warm-up run)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.enable_profiling = True
    opts.profile_file_prefix = str(path.parent / "ort_profile")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    for _ in range(runs + 1):
        sess.run(None, feeds)
    prof = json.loads(Path(sess.end_profiling()).read_text())
    nodes = [e for e in prof if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    per_run: list[tuple[float, float]] = []
    # events come in run order; split them into the runs by the number of kernel events per run
    n_per_run = len(nodes) // (runs + 1)
    for r in range(1, runs + 1):
        chunk = nodes[r * n_per_run : (r + 1) * n_per_run]
        bb = sum(e["dur"] for e in chunk if e["name"].startswith("/backbone/")) / 1000.0
        per_run.append((bb, sum(e["dur"] for e in chunk) / 1000.0))
    return statistics.median(b for b, _ in per_run), statistics.median(t for _, t in per_run)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--export", type=Path, default=None, help="reuse this export folder (else a temporary one)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.export
        export_s = None
        if folder is None or not (folder / "model.onnx").exists():
            folder = folder or Path(tmp) / "tokenhmr"
            torch.manual_seed(0)
            t = time.perf_counter()
            export_onnx("tokenhmr", folder, force=True)
            export_s = time.perf_counter() - t
        manifest = json.loads((folder / "manifest.json").read_text())
        model, _, _ = build_model("tokenhmr")  # speed does not depend on the weights' values
        (image,) = model.example_inputs(batch=1, seed=1)
        with torch.inference_mode():
            feats = model.backbone(image)

        def run_full() -> None:
            with torch.inference_mode():
                model(image)

        def run_vit() -> None:
            with torch.inference_mode():
                model.backbone(image)

        def run_rest() -> None:
            with torch.inference_mode():
                grot, hands, _betas, _cam, logits = model.smpl_head(feats)
                probs = logits.softmax(-1)
                body = model.tokenizer(probs).reshape(1, -1)
                pose6d = torch.cat([grot, body, hands], -1) + model.smpl_head.init_body_pose
                model.rot6d(pose6d.reshape(1, 24, 6))
                model.token_confidence(logits)

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        # no busy-waiting between runs: spinning ORT threads would slow the PyTorch runs interleaved with them
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        t = time.perf_counter()
        sess = ort.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])
        session_s = time.perf_counter() - t
        feeds = {"image": image.numpy()}

        def run_ort(sess: ort.InferenceSession = sess) -> None:
            sess.run(None, feeds)

        for fn in (run_full, run_vit, run_rest, run_ort):
            fn()  # warm-up
        times: dict[str, list[float]] = {"torch_full": [], "torch_vit": [], "torch_rest": [], "ort_full": []}
        for _ in range(args.reps):
            times["torch_full"].append(_ms(run_full))
            times["torch_vit"].append(_ms(run_vit))
            times["torch_rest"].append(_ms(run_rest))
            times["ort_full"].append(_ms(run_ort))
        del run_ort, sess  # free the session before the profiling one is made
        ort_bb, ort_nodes = _ort_backbone_share(folder / "model.onnx", feeds, args.threads)
        med = {k: statistics.median(v) for k, v in times.items()}
        best = {k: min(v) for k, v in times.items()}
        art = manifest["artifacts"]["onnx"]
        result = {
            "model": "tokenhmr (full size, random weights)",
            "batch": 1,
            "reps": args.reps,
            "threads": args.threads,
            "median_ms": med,
            "min_ms": best,
            "all_ms": times,
            "ort_profile_ms": {"backbone_nodes": ort_bb, "all_nodes": ort_nodes, "rest_nodes": ort_nodes - ort_bb},
            "vit_share": {"torch": med["torch_vit"] / med["torch_full"], "ort": ort_bb / ort_nodes},
            "speedup_ort_vs_torch": med["torch_full"] / med["ort_full"],
            "export_seconds": export_s,
            "ort_session_seconds": session_s,
            "onnx_bytes": art["bytes"],
            "onnx_data_bytes": art.get("data_bytes"),
            "params": manifest["model"]["params"],
            "verification_worst_rel_error": manifest["verification"]["worst_rel_error"],
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor()},
            "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__, "numpy": np.__version__},
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tokenhmr.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# TokenHMR CPU latency (batch 1, one 256×192 crop)",
        "",
        f"{args.threads} threads, median and best of {args.reps} interleaved repetitions; torch {torch.__version__}, "
        f"onnxruntime {ort.__version__}; {os.cpu_count()} CPU cores. Random weights (speed does not depend on them).",
        "",
        "| runner | whole network (median / best) | ViT-H backbone | token head + tokenizer decoder |",
        "|---|---|---|---|",
        f"| PyTorch eager | {med['torch_full']:.0f} / {best['torch_full']:.0f} ms | {med['torch_vit']:.0f} / "
        f"{best['torch_vit']:.0f} ms | {med['torch_rest']:.0f} / {best['torch_rest']:.0f} ms |",
        f"| ONNX Runtime CPU | {med['ort_full']:.0f} / {best['ort_full']:.0f} ms | ≈{med['ort_full'] * ort_bb / ort_nodes:.0f} ms | "
        f"≈{med['ort_full'] * (1 - ort_bb / ort_nodes):.0f} ms |",
        "",
        "ONNX Runtime's split comes from its per-node profile (the share of kernel time in `/backbone/…` nodes) "
        "applied to the measured median.",
        "",
        f"- ViT share of the time: {100 * result['vit_share']['torch']:.1f} % (PyTorch), {100 * result['vit_share']['ort']:.1f} % (ONNX Runtime).",
        f"- ONNX Runtime vs eager: {result['speedup_ort_vs_torch']:.2f}× (medians), "
        f"{best['torch_full'] / best['ort_full']:.2f}× (best runs).",
        f"- Load average while measuring (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; other jobs on the "
        "machine widen the spread, which the best runs are least affected by.",
        f"- Graph: `model.onnx` {art['bytes'] / 1e6:.2f} MB + `model.onnx.data` {(art.get('data_bytes') or 0) / 1e9:.2f} GB; "
        f"{manifest['model']['params'] / 1e6:.1f} M parameters; parity vs PyTorch (worst relative error) "
        f"{manifest['verification']['worst_rel_error']:.1e}.",
        f"- ONNX Runtime session creation: {session_s:.1f} s"
        + (f"; export (trace, external data, verification): {export_s:.0f} s." if export_s else "."),
        f"- Peak resident memory of this script: {result['peak_rss_gb']:.1f} GB.",
        "",
    ]
    (args.out / "tokenhmr.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
