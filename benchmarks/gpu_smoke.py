#!/usr/bin/env python3
"""The one command that proves the GPU path: build a TensorRT engine from a build folder, compare it with
ONNX Runtime (CPU) on the same seeded inputs at batch 1, the profile's opt batch and its max batch, time
both per batch, and (for an hpsedge build folder) run the runtime's own path end to end: the on-device
build (`hpsedge export build --on-device`) into a copy of the folder, `Predictor.load(backend="auto")`
choosing TensorRT, and its predictions against ONNX Runtime's.

Usage (on a machine with a CUDA GPU, TensorRT >= 10 and cuda-python)::

    hpsedge export build --model poco-cliff --precision fp16 --out build/poco-cliff-fp16
    python benchmarks/gpu_smoke.py build/poco-cliff-fp16

Prints errors per output and median latencies and writes them to benchmarks/results/gpu_smoke.{json,md}
(or --json PATH). Exit codes: 0 all within tolerance, 1 a check failed (errors above the precision's
tolerance, TensorRT not chosen, a build error), 2 TensorRT, cuda-python or a GPU is missing here.

Nothing in this script has run on a GPU yet (no GPU machine was available to the project so far).
"""

from __future__ import annotations

import argparse
import json
import platform as _platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:  # running from a checkout without installing
    import hpsedge  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

EXIT_UNAVAILABLE = 2
EXIT_FAILED = 1
RESULTS = Path(__file__).resolve().parent / "results"
#: largest error relative to the output's range that counts as agreement, per graph precision (TensorRT
#: picks its own kernels, so even FP32 differs from ONNX Runtime in the last bits; INT8 is reported only)
TOLERANCE = {"fp32": 1e-3, "fp16": 3e-2, "int8": None}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("folder", type=Path, help="export folder holding manifest.json and the ONNX file(s)")
    p.add_argument("--artifact", default=None,
                   help="which ONNX artifact of the manifest to build (onnx, onnx_fp16, onnx_int8); "
                        "default: the folder's own precision graph")
    p.add_argument("--max-batch", type=int, default=None, help="profile max batch (default: the manifest's)")
    p.add_argument("--opt-batch", type=int, default=None, help="profile opt batch (default: min(4, max))")
    p.add_argument("--opt-level", type=int, default=3, help="builder optimisation level 0-5")
    p.add_argument("--workspace-mb", type=int, default=None, help="builder workspace limit in MiB")
    p.add_argument("--timing-cache", type=Path, default=None, help="timing cache file to load and update")
    p.add_argument("--weak-typing", action="store_true", help="TensorRT 10 only: FP16/INT8 builder flags")
    p.add_argument("--version-compatible", action="store_true", help="build a version-compatible engine")
    p.add_argument("--in-place", action="store_true",
                   help="write the engine into FOLDER (default: a temporary folder, deleted afterwards)")
    p.add_argument("--iters", type=int, default=50, help="timed runs per backend and batch")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs before timing")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--device", type=int, default=0, help="CUDA device index")
    p.add_argument("--json", type=Path, default=None,
                   help="where to write the results (default: benchmarks/results/gpu_smoke.json, + .md)")
    p.add_argument("--no-predictor", action="store_true",
                   help="skip the end-to-end step (on-device build into a copy + Predictor backend=auto)")
    return p.parse_args(argv)


def unavailable(reason: str) -> int:
    print(f"gpu_smoke: cannot run here: {reason}", file=sys.stderr)
    return EXIT_UNAVAILABLE


class _PlainOrt:
    """Stand-in with the Backend interface when hpsedge.runtime.backends.ort is not there yet."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        feeds = {k: v for k, v in feeds.items() if k in self.input_names}
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds), strict=True))

    def close(self) -> None:
        pass


def make_ort(path: Path) -> Any:
    """hpsedge's OrtBackend pinned to the CPU, or a plain InferenceSession when it is not available."""
    import inspect

    try:
        from hpsedge.runtime.backends.ort import OrtBackend  # type: ignore[import-not-found]
    except ImportError:
        return _PlainOrt(path)
    params = inspect.signature(OrtBackend).parameters
    if "device" in params:
        return OrtBackend(path, device="cpu", threads=None)
    if "providers" in params:
        return OrtBackend(path, providers=["CPUExecutionProvider"], threads=None)
    return _PlainOrt(path)


def random_feeds(inputs: list[Any], batch: int, seed: int) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in inputs:
        shape = tuple(batch if isinstance(d, str) else int(d) for d in spec.shape)
        scale = 1.0 if spec.name == "image" else 0.3
        feeds[spec.name] = (rng.standard_normal(shape) * scale).astype(spec.dtype)
    return feeds


def compare(ref: dict[str, Any], got: dict[str, Any]) -> dict[str, dict[str, float]]:
    """max_abs, max_rel (elementwise, floored), max_rel_range (vs the output's range), finite: the project's one
    comparison helper (also used by export verification and the accuracy report)."""
    from hpsedge.runtime.compare import output_errors

    return output_errors(ref, got)


def median_ms(backend: Any, feeds: dict[str, Any], iters: int, warmup: int) -> float:
    for _ in range(warmup):
        backend.run(feeds)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        backend.run(feeds)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def print_progress(event: Any) -> None:
    if event.kind == "start" and event.parent is None:
        print(f"  [build] {event.phase} ({event.total} steps)", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from hpsedge.errors import HpsedgeError
    from hpsedge.runtime.trt.builder import BuildOptions, build_engine, trt_available

    ok, reason = trt_available(args.device)
    if not ok:
        return unavailable(reason)
    print(f"gpu_smoke: {reason}")

    from hpsedge.runtime.manifest import load_manifest
    from hpsedge.runtime.trt.backend import TensorRTBackend

    try:
        manifest = load_manifest(args.folder)
        if args.artifact is None:
            own = str(manifest.raw.get("precision", "fp32"))
            args.artifact = "onnx" if own == "fp32" else f"onnx_{own}"
        onnx_path = manifest.artifact_path(args.artifact)
        precision = str(manifest.artifacts[args.artifact].get("precision", "fp32"))
        max_batch = args.max_batch or manifest.max_batch or 16
        options = BuildOptions(
            precision=precision, max_batch=max_batch,
            opt_batch=args.opt_batch, opt_level=args.opt_level,
            workspace_bytes=args.workspace_mb * (1 << 20) if args.workspace_mb else None,
            timing_cache=args.timing_cache, weak_typing=args.weak_typing,
            version_compatible=args.version_compatible, on_device=True,
        )
        specs = [(s.name, list(s.shape)) for s in manifest.inputs]
        with tempfile.TemporaryDirectory(prefix="hpsedge-smoke-") as tmp:
            out_dir = args.folder if args.in_place else Path(tmp)
            engine_path = out_dir / f"model.{precision}.engine"
            print(f"gpu_smoke: building {onnx_path.name} -> {engine_path}")
            entry = build_engine(onnx_path, engine_path, options, progress=print_progress,
                                 input_specs=specs, device=args.device)
            print(f"gpu_smoke: built in {entry['build_seconds']} s, {entry['bytes'] / 1e6:.1f} MB")
            results = run_comparison(args, manifest, onnx_path, engine_path, entry, TensorRTBackend)
        if not args.no_predictor and "preprocessing" in manifest.raw:
            results["predictor"] = run_predictor(args, manifest, max_batch)
    except HpsedgeError as exc:
        print(f"gpu_smoke: error: {exc}", file=sys.stderr)
        return EXIT_FAILED

    results["engine"] = entry
    results["host"] = {"python": _platform.python_version(), "machine": _platform.machine()}
    failures = verdict(results, precision)
    results["failures"] = failures
    out = args.json or (RESULTS / "gpu_smoke.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(results, precision), encoding="utf-8")
    print(f"gpu_smoke: wrote {out} and {out.with_suffix('.md').name}")
    for f in failures:
        print(f"gpu_smoke: FAILED: {f}", file=sys.stderr)
    return EXIT_FAILED if failures else 0


def verdict(results: dict[str, Any], precision: str) -> list[str]:
    """The checks that failed: TensorRT vs ONNX Runtime above the precision's tolerance, non-finite
    outputs, and (end to end) TensorRT not chosen by backend="auto"."""
    tol = TOLERANCE.get(precision)
    failures = []
    for batch, b in results["batches"].items():
        for name, e in b["errors"].items():
            if not e["finite"]:
                failures.append(f"batch {batch}: {name} has non-finite values")
            elif tol is not None and e["max_rel_range"] > tol:
                failures.append(f"batch {batch}: {name} differs from ONNX Runtime by {e['max_rel_range']:.2e} "
                                f"of its range (tolerance {tol:g} for {precision})")
    pred = results.get("predictor")
    if pred is not None and pred.get("backend") != "trt":
        failures.append(f"Predictor backend='auto' chose {pred.get('backend')}: {pred.get('reason')}")
    return failures


def markdown(results: dict[str, Any], precision: str) -> str:
    eng = results.get("engine", {})
    lines = [
        "# GPU smoke test (benchmarks/gpu_smoke.py)", "",
        f"- engine: {eng.get('file')} from {eng.get('source')} ({precision}), TensorRT {eng.get('trt_version')} on "
        f"{eng.get('gpu_name')} (sm {eng.get('compute_capability')}), built in {eng.get('build_seconds')} s",
        f"- verdict: {'PASS' if not results.get('failures') else 'FAIL: ' + '; '.join(results['failures'])}", "",
        "| batch | TensorRT ms (median) | ONNX Runtime CPU ms (median) | worst error / range |",
        "|---:|---:|---:|---:|",
    ]
    for batch, b in results["batches"].items():
        worst = max((e["max_rel_range"] for e in b["errors"].values()), default=0.0)
        lines.append(f"| {batch} | {b['trt_ms']:.2f} | {b['ort_cpu_ms']:.2f} | {worst:.2e} |")
    pred = results.get("predictor")
    if pred:
        lines += ["", f"- Predictor(backend='auto'): {pred.get('backend')} ({pred.get('reason')}); "
                      f"pose Δ vs ONNX Runtime: max {pred.get('pose_deg_max', float('nan')):.3g}°"]
    return "\n".join(lines) + "\n"


def run_predictor(args: argparse.Namespace, manifest: Any, max_batch: int) -> dict[str, Any]:
    """The runtime's own path: `hpsedge export build --on-device` into a copy of the folder, then
    Predictor.load(backend="auto") (which must pick TensorRT) against Predictor(backend="ort")."""
    import shutil

    import numpy as np

    from hpsedge.export.build import BuildConfig, rebuild_on_device
    from hpsedge.runtime.predictor import Predictor
    from hpsedge.runtime.rotations import geodesic_angle

    with tempfile.TemporaryDirectory(prefix="hpsedge-smoke-e2e-") as tmp:
        copy = Path(tmp) / args.folder.name
        shutil.copytree(args.folder, copy, ignore=shutil.ignore_patterns("*.engine"))
        manifest_path = copy / "manifest.json"
        raw = json.loads(manifest_path.read_text())
        raw["artifacts"].pop("engine", None)
        manifest_path.write_text(json.dumps(raw, indent=2))
        cfg = BuildConfig(model=manifest.model_name, out=copy, max_batch=max_batch, opt_level=args.opt_level,
                          workspace_mb=args.workspace_mb, weak_typing=args.weak_typing)
        t = time.perf_counter()
        rebuild_on_device(copy, cfg)
        build_s = time.perf_counter() - t
        auto = Predictor.load(copy, backend="auto")
        ort = Predictor.load(copy, backend="ort", device="cpu")
        rng = np.random.default_rng(args.seed)
        image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        boxes = [[40 + 60 * i, 60, 240 + 60 * i, 420] for i in range(min(4, max_batch))]
        got, ref = auto.predict(image, boxes), ort.predict(image, boxes)
        deg = [float(np.degrees(geodesic_angle(np.asarray(g.pose_rotmat), np.asarray(r.pose_rotmat))).max())
               for g, r in zip(got, ref, strict=True)]
        times = []
        for _ in range(max(3, args.iters // 5)):
            t = time.perf_counter()
            auto.predict(image, boxes)
            times.append((time.perf_counter() - t) * 1e3)
        out = {"backend": auto.backend.name, "device": auto.backend.device, "on_device_build_s": round(build_s, 2),
               "reason": "engine from the on-device build", "persons": len(boxes),
               "pose_deg_max": max(deg, default=0.0), "predict_ms_median": statistics.median(times)}
        print(f"predictor: backend {out['backend']} ({out['device']}), {len(boxes)} persons, "
              f"pose Δ vs ORT max {out['pose_deg_max']:.3g}°, predict {out['predict_ms_median']:.1f} ms")
        return out


def run_comparison(args: argparse.Namespace, manifest: Any, onnx_path: Path, engine_path: Path,
                   entry: dict[str, Any], trt_cls: Any) -> dict[str, Any]:
    trt_backend = trt_cls(engine_path, entry, args.device, allow_host_code=args.version_compatible)
    ort_backend = make_ort(onnx_path)
    results: dict[str, Any] = {"folder": str(args.folder), "artifact": args.artifact,
                               "trt_device": trt_backend.device, "batches": {}}
    try:
        max_b = int(trt_backend.max_batch or 1)
        batches = sorted({1, int(entry.get("profile", {}).get("opt") or 1), max_b} - {0})
        batches = [b for b in batches if b <= max_b]
        for batch in batches:
            feeds = random_feeds(manifest.inputs, batch, args.seed + batch)
            ref = ort_backend.run(feeds)
            got = trt_backend.run(feeds)
            errors = compare(ref, got)
            trt_ms = median_ms(trt_backend, feeds, args.iters, args.warmup)
            ort_ms = median_ms(ort_backend, feeds, max(3, args.iters // 10), 1)
            results["batches"][str(batch)] = {"errors": errors, "trt_ms": trt_ms, "ort_cpu_ms": ort_ms}
            print(f"batch {batch}: TensorRT {trt_ms:.2f} ms, ORT CPU {ort_ms:.2f} ms (median)")
            for name, e in errors.items():
                print(f"  {name:>10}: max abs {e['max_abs']:.3e}  max rel {e['max_rel']:.3e}  "
                      f"rel-to-range {e['max_rel_range']:.3e}{'' if e['finite'] else '  NON-FINITE'}")
    finally:
        trt_backend.close()
        ort_backend.close()
    return results


if __name__ == "__main__":
    sys.exit(main())
