#!/usr/bin/env python3
"""GPU smoke test: build a TensorRT engine from an export folder, then compare it with ONNX Runtime (CPU)
on the same seeded random inputs at batch 1 and at the maximum batch.

Usage (on a machine with a CUDA GPU, TensorRT >= 10 and cuda-python)::

    python benchmarks/gpu_smoke.py build/poco-cliff --max-batch 8 --json gpu_smoke.json

Prints max abs / rel errors per output and median latencies, and writes them as JSON. Exits with code
2 and a one-line reason when TensorRT, cuda-python or a GPU is missing.
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("folder", type=Path, help="export folder holding manifest.json and the ONNX file(s)")
    p.add_argument("--artifact", default="onnx",
                   help="which ONNX artifact of the manifest to build (onnx, onnx_fp16, onnx_int8)")
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
                   help="where to write the results (default: FOLDER/gpu_smoke.json)")
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
    from hpsedge.export.tensorrt import BuildOptions, build_engine, trt_available
    from hpsedge.runtime.errors import HpsedgeError

    ok, reason = trt_available(args.device)
    if not ok:
        return unavailable(reason)
    print(f"gpu_smoke: {reason}")

    from hpsedge.runtime.backends.tensorrt import TensorRTBackend
    from hpsedge.runtime.manifest import load_manifest

    try:
        manifest = load_manifest(args.folder)
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
    except HpsedgeError as exc:
        print(f"gpu_smoke: error: {exc}", file=sys.stderr)
        return 1

    results["engine"] = entry
    results["host"] = {"python": _platform.python_version(), "machine": _platform.machine()}
    out = args.json or (args.folder / "gpu_smoke.json")
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"gpu_smoke: wrote {out}")
    return 0


def run_comparison(args: argparse.Namespace, manifest: Any, onnx_path: Path, engine_path: Path,
                   entry: dict[str, Any], trt_cls: Any) -> dict[str, Any]:
    trt_backend = trt_cls(engine_path, entry, args.device, allow_host_code=args.version_compatible)
    ort_backend = make_ort(onnx_path)
    results: dict[str, Any] = {"folder": str(args.folder), "artifact": args.artifact,
                               "trt_device": trt_backend.device, "batches": {}}
    try:
        batches = sorted({1, int(trt_backend.max_batch or 1)})
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
