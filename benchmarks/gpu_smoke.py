#!/usr/bin/env python3
"""What a GPU machine can prove about hpsedge's GPU path, with or without TensorRT, in one run (< 8 min).

Steps, each recorded (``ok`` / ``failed`` / ``skipped`` with the reason) in ``gpu_smoke.json`` + ``.md``:

1. **folder**: export ``--model`` to an ONNX build folder here (torch is needed; build folders are too big to
   carry to a lent GPU machine), or use ``--folder``. Random weights are seeded (``--seed``).
2. **predictor**: ``Predictor.load(folder, backend="auto")``, the backend it chose and why
   (:func:`hpsedge.runtime.trt.compat.choose_backend`), and one seeded prediction. Needs no GPU.
3. **gpu**: is a CUDA GPU visible (cuda-python, else torch)? If not, the run stops here with exit 2.
4. **cuda**: cuda-python against the real driver: device name and compute capability, driver and runtime
   CUDA versions, and a pinned → device → pinned round trip of seeded bytes on a stream, checked byte for
   byte (with its copy bandwidth). Without cuda-python this is skipped, saying which extra to install.
5. **torch**: the folder's model in PyTorch on CUDA, FP32 and FP16, median latency per batch: the reference
   a TensorRT engine has to beat. FP32 CUDA outputs are checked against ONNX Runtime (CPU) on the folder's
   graph, which also proves that the PyTorch model holds the folder's weights.
6. **tensorrt** (only where TensorRT >= 10 imports): build an engine from the folder's graph into a
   temporary folder, compare it with ONNX Runtime at batch 1, the profile's opt and max batch, time both,
   and run the on-device build + ``Predictor(backend="auto")`` end to end.

Usage::

    python benchmarks/gpu_smoke.py --model poco-pare               # exports, then the GPU steps
    python benchmarks/gpu_smoke.py --folder build/poco-cliff-fp16  # an existing folder

On a lent GPU machine that has torch but no cuda-python and no network (this project's), carry a cuda-bindings
wheel for its Python in an ignored folder and install it there first (12.x runs on any CUDA 12+ driver)::

    pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
        cuda-bindings==12.9.0 -d tmp/wheels                        # here
    pip install --no-deps tmp/wheels/cuda_bindings-*.whl && python benchmarks/gpu_smoke.py --model poco-pare

Exit codes: 0 every step that ran passed; 1 a check failed; 2 no CUDA GPU here (the CPU part, export
included, ran; the GPU steps did not).

Status: never run on a GPU. On CPU machines it runs up to the first GPU step and stops with exit 2; its
pieces are unit-tested with fakes (tests/test_tensorrt_logic.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform as _platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

try:  # running from a checkout without installing
    import hpsedge  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

EXIT_FAILED = 1
EXIT_NO_GPU = 2
EXIT_UNAVAILABLE = EXIT_NO_GPU  # older name
RESULTS = Path(__file__).resolve().parent / "results"
#: largest error relative to the output's range that counts as agreement, per graph precision (TensorRT
#: picks its own kernels, so even FP32 differs from ONNX Runtime in the last bits; INT8 is reported only)
TOLERANCE = {"fp32": 1e-3, "fp16": 3e-2, "int8": None}
#: PyTorch CUDA FP32 vs ONNX Runtime CPU FP32 on the same weights (TF32 is switched off for this check)
TORCH_TOLERANCE = 1e-3
ROUND_TRIP_BYTES = 64 << 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="zoo model to export here first (e.g. poco-pare, poco-cliff, hmr2)")
    src.add_argument("--folder", type=Path, help="an existing export folder (manifest.json + ONNX graph)")
    p.add_argument("--checkpoint", type=Path, default=None, help="official checkpoint for --model (else random)")
    p.add_argument("--tiny", action="store_true", help="the tiny variant of --model (quick; for tests)")
    p.add_argument("--out", type=Path, default=None,
                   help="where --model is exported (default: a temporary folder, deleted afterwards)")
    p.add_argument("--batches", default="1,4,16", help="batch sizes timed in PyTorch (comma-separated)")
    p.add_argument("--max-batch", type=int, default=None, help="engine profile max batch (default: the manifest's)")
    p.add_argument("--opt-batch", type=int, default=None, help="engine profile opt batch (default: min(4, max))")
    p.add_argument("--opt-level", type=int, default=3, help="TensorRT builder optimisation level 0-5")
    p.add_argument("--workspace-mb", type=int, default=None, help="TensorRT builder workspace limit in MiB")
    p.add_argument("--weak-typing", action="store_true", help="TensorRT 10 only: FP16/INT8 builder flags")
    p.add_argument("--version-compatible", action="store_true", help="build a version-compatible engine")
    p.add_argument("--iters", type=int, default=30, help="timed runs per backend and batch")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs before timing")
    p.add_argument("--seed", type=int, default=0, help="seed of weights (random) and inputs")
    p.add_argument("--device", type=int, default=0, help="CUDA device index")
    p.add_argument("--budget-s", type=float, default=480.0,
                   help="wall-clock budget: later steps are skipped (and say so) once it is spent")
    p.add_argument("--json", type=Path, default=None,
                   help="where to write the results (default: benchmarks/results/gpu_smoke.json, + .md)")
    p.add_argument("--no-predictor", action="store_true", help="skip the end-to-end TensorRT predictor step")
    args = p.parse_args(argv)
    try:
        args.batch_list = sorted({int(b) for b in str(args.batches).split(",") if b.strip()})
    except ValueError:
        p.error(f"--batches must be comma-separated integers, got {args.batches!r}")
    if not args.batch_list or min(args.batch_list) < 1:
        p.error("--batches must hold positive integers")
    return args


# ---- small helpers (unit-tested) -----------------------------------------------------------------
class Report:
    """The run's results: one entry per step with its status, figures and (when not ok) the reason."""

    def __init__(self) -> None:
        self.steps: dict[str, dict[str, Any]] = {}
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def record(self, step: str, status: str, reason: str = "", **figures: Any) -> dict[str, Any]:
        entry = {"status": status, **({"reason": reason} if reason else {}), **figures}
        self.steps[step] = entry
        shown = f": {reason}" if reason else ""
        print(f"gpu_smoke: [{step}] {status}{shown}", file=sys.stderr if status == "failed" else sys.stdout,
              flush=True)
        return entry

    @property
    def failures(self) -> list[str]:
        return [f"{k}: {v.get('reason', '')}" for k, v in self.steps.items() if v["status"] == "failed"]

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "failures": self.failures, "seconds": round(self.elapsed(), 1),
                "host": {"python": _platform.python_version(), "machine": _platform.machine()}}


def median_ms(fn: Callable[[], Any], iters: int, warmup: int, sync: Callable[[], Any] | None = None) -> float:
    """Median wall time of ``fn()`` in ms; ``sync`` (e.g. ``torch.cuda.synchronize``) closes each run."""
    for _ in range(warmup):
        fn()
    if sync is not None:
        sync()
    times = []
    for _ in range(max(1, iters)):
        t = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def compare(ref: dict[str, Any], got: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """max_abs, max_rel, max_rel_range, finite per output: the project's one comparison helper."""
    from hpsedge.runtime.compare import output_errors

    return output_errors(ref, got)


def worst(errors: dict[str, dict[str, Any]]) -> float:
    return max((float(e["max_rel_range"]) for e in errors.values()), default=0.0)


def cuda_round_trip(cuda: Any, nbytes: int, seed: int) -> dict[str, Any]:
    """Seeded bytes pinned → device → pinned on one stream; raises AssertionError if a byte differs."""
    import numpy as np

    src, dst = cuda.malloc_host(nbytes), cuda.malloc_host(nbytes)
    dev = cuda.malloc(nbytes)
    stream = cuda.stream()
    try:
        data = np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8)
        np.copyto(src.view(np.uint8, (nbytes,)), data)
        dst.view(np.uint8, (nbytes,))[:] = 0
        t = time.perf_counter()
        cuda.memcpy_htod_async(dev.ptr, src.ptr, nbytes, stream)
        cuda.memcpy_dtoh_async(dst.ptr, dev.ptr, nbytes, stream)
        stream.synchronize()
        seconds = time.perf_counter() - t
        back = dst.view(np.uint8, (nbytes,))
        bad = int(np.count_nonzero(back != data))
        assert bad == 0, f"{bad} of {nbytes} bytes differ after the round trip"
        return {"bytes": nbytes, "GBps_both_ways": round(2 * nbytes / seconds / 1e9, 2)}
    finally:
        for buf in (dev, src, dst):
            buf.free()
        stream.destroy()


def gpu_present(device: int) -> tuple[bool, str]:
    """Whether a CUDA GPU is usable here, asked of cuda-python, else torch, else ``nvidia-smi``."""
    from hpsedge.errors import BackendError
    from hpsedge.runtime.trt.cuda import device_info

    try:
        name, cc = device_info(device)
        return True, f"{name} (compute {cc})"
    except BackendError as exc:
        reason = exc.message if "not installed" not in exc.message else ""
    try:
        import torch

        if torch.cuda.is_available() and device < torch.cuda.device_count():
            cc = ".".join(map(str, torch.cuda.get_device_capability(device)))
            return True, f"{torch.cuda.get_device_name(device)} (compute {cc}, via torch)"
        return False, reason or "no CUDA GPU visible to torch"
    except ImportError:
        return False, reason or "neither cuda-python nor torch can see a GPU (none installed)"


@contextlib.contextmanager
def folder_for(args: argparse.Namespace, report: Report) -> Iterator[Path]:
    """The export folder: ``--folder`` as is, or ``--model`` exported (seeded) into ``--out`` or a temp dir."""
    if args.folder is not None:
        report.record("folder", "ok", folder=str(args.folder), exported=False)
        yield args.folder
        return

    from hpsedge.export.onnx import export_onnx

    with tempfile.TemporaryDirectory(prefix="hpsedge-smoke-") as tmp:
        out = args.out or Path(tmp) / args.model
        t = time.perf_counter()
        # the random weights come from args.seed (export_onnx seeds them); the PyTorch reference uses it again
        res = export_onnx(args.model, out, checkpoint=args.checkpoint, tiny=args.tiny,
                          max_batch=max(args.max_batch or 0, *args.batch_list), force=args.out is not None,
                          seed=args.seed)
        report.record("folder", "ok", folder=str(res.out_dir), exported=True, model=args.model, tiny=args.tiny,
                      export_s=round(time.perf_counter() - t, 1))
        yield res.out_dir


# ---- the steps ---------------------------------------------------------------------------------------
def step_cuda(args: argparse.Namespace, report: Report) -> None:
    from hpsedge.errors import BackendError
    from hpsedge.runtime.trt import cuda as cudamod

    try:
        rt = cudamod.load_cudart()
    except BackendError as exc:
        report.record("cuda", "skipped", f"{exc.message} ({exc.hint})")
        return
    driver, runtime = cudamod.driver_versions(rt)
    versions = {"driver_cuda": cudamod._cuda_version(driver) if driver else None,
                "cuda_python_cuda": cudamod._cuda_version(runtime) if runtime else None}
    try:
        cuda = cudamod.CudaRuntime(args.device, cudart=rt)
        name, cc = cuda.device_info()
        trip = cuda_round_trip(cuda, ROUND_TRIP_BYTES, args.seed)
    except (BackendError, AssertionError) as exc:
        msg = exc.message if isinstance(exc, BackendError) else str(exc)
        hint = f" (hint: {exc.hint})" if isinstance(exc, BackendError) and exc.hint else ""
        report.record("cuda", "failed", msg + hint, **versions)
        return
    report.record("cuda", "ok", gpu=name, compute_capability=cc, **versions, round_trip=trip)


def step_predictor(args: argparse.Namespace, report: Report, folder: Path) -> None:
    import numpy as np

    from hpsedge.errors import HpsedgeError
    from hpsedge.runtime.manifest import load_manifest
    from hpsedge.runtime.predictor import Predictor, _engine_probe
    from hpsedge.runtime.trt.compat import choose_backend

    try:
        manifest = load_manifest(folder)
        available, gpu_cc, trt_version, gpu_name = _engine_probe()
        expected, reason = choose_backend(manifest, available, gpu_cc, trt_version, gpu_name=gpu_name)
        pred = Predictor.load(folder, backend="auto")
        rng = np.random.default_rng(args.seed)
        image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        people = pred.predict(image, [[60, 40, 300, 460], [340, 30, 600, 470]])
    except HpsedgeError as exc:
        report.record("predictor", "failed", exc.message)
        return
    figures = {"backend": pred.backend.name, "device": pred.backend.device, "why": reason,
               "available": available, "persons": len(people)}
    if pred.backend.name != expected:
        report.record("predictor", "failed", f"backend='auto' loaded {pred.backend.name}, choose_backend said "
                                             f"{expected}", **figures)
    elif len(people) != 2 or not all(np.isfinite(np.asarray(p.pose_rotmat)).all() for p in people):
        report.record("predictor", "failed", "the prediction is not two finite people", **figures)
    else:
        report.record("predictor", "ok", f"backend='auto' chose {pred.backend.name}: {reason}", **figures)


def torch_reference(args: argparse.Namespace, manifest: Any) -> Any:
    """The folder's model in PyTorch (eval), with the weights the export used (same seed, same checkpoint)."""

    from hpsedge.models.checkpoints import build_model

    name = args.model or manifest.model_name
    tiny = args.tiny if args.model else manifest.raw.get("model", {}).get("variant") == "tiny"
    model, _spec, _loaded = build_model(name, checkpoint=args.checkpoint, tiny=tiny, seed=args.seed)
    return model.eval()


def step_torch(args: argparse.Namespace, report: Report, folder: Path) -> None:
    try:
        import torch
    except ImportError:
        report.record("torch", "skipped", "torch is not installed")
        return
    if not torch.cuda.is_available():
        report.record("torch", "skipped", "torch sees no CUDA GPU")
        return
    from hpsedge.runtime.manifest import load_manifest

    manifest = load_manifest(folder)
    model = torch_reference(args, manifest)
    spec = model.spec
    dev = torch.device("cuda", args.device)
    torch.backends.cuda.matmul.allow_tf32 = False  # FP32 means FP32 for the agreement check
    torch.backends.cudnn.allow_tf32 = False
    ort = make_ort(manifest.artifact_path("onnx"))
    rows: dict[str, dict[str, Any]] = {}
    failed = []
    with torch.no_grad():
        fp32 = model.to(dev)
        for batch in args.batch_list:
            if report.elapsed() > args.budget_s:
                rows[str(batch)] = {"skipped": "time budget spent"}
                continue
            inputs = model.example_inputs(batch=batch, seed=args.seed + batch)
            ref = ort.run({n: t.numpy() for n, t in zip(spec.input_names, inputs, strict=True)})
            gpu_in = [t.to(dev) for t in inputs]
            out32 = dict(zip(spec.output_names, (t.float().cpu().numpy() for t in fp32(*gpu_in)), strict=True))
            err = worst(compare(ref, out32))
            if err > TORCH_TOLERANCE:
                failed.append(f"batch {batch}: PyTorch CUDA FP32 differs from ONNX Runtime by {err:.2e} of range")
            ms32 = median_ms(lambda m=fp32, x=gpu_in: m(*x), args.iters, args.warmup, torch.cuda.synchronize)
            rows[str(batch)] = {"fp32_ms": round(ms32, 3), "fp32_vs_ort": err}
        fp16 = fp32.half()  # the same module, now in FP16 (FP32 is done)
        for batch in args.batch_list:
            if "skipped" in rows[str(batch)] or report.elapsed() > args.budget_s:
                rows[str(batch)].setdefault("fp16", "skipped: time budget spent")
                continue
            inputs = [t.to(dev).half() for t in model.example_inputs(batch=batch, seed=args.seed + batch)]
            try:
                ms16 = median_ms(lambda m=fp16, x=inputs: m(*x), args.iters, args.warmup, torch.cuda.synchronize)
            except RuntimeError as exc:  # an op without a half kernel: reported, not a failure of the GPU path
                rows[str(batch)]["fp16_error"] = " ".join(str(exc).split())[:200]
                continue
            rows[str(batch)]["fp16_ms"] = round(ms16, 3)
    figures = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(args.device), "batches": rows}
    if failed:
        report.record("torch", "failed", "; ".join(failed), **figures)
    else:
        report.record("torch", "ok", **figures)


def step_tensorrt(args: argparse.Namespace, report: Report, folder: Path) -> None:
    from hpsedge.errors import HpsedgeError
    from hpsedge.runtime.manifest import load_manifest
    from hpsedge.runtime.trt.backend import TensorRTBackend
    from hpsedge.runtime.trt.builder import BuildOptions, build_engine, trt_available

    ok, reason = trt_available(args.device)
    if not ok:
        report.record("tensorrt", "skipped", reason)
        return
    try:
        manifest = load_manifest(folder)
        own = str(manifest.raw.get("precision", "fp32"))
        artifact = "onnx" if own == "fp32" else f"onnx_{own}"
        onnx_path = manifest.artifact_path(artifact)
        max_batch = args.max_batch or manifest.max_batch or 16
        options = BuildOptions(
            precision=own, max_batch=max_batch, opt_batch=args.opt_batch, opt_level=args.opt_level,
            workspace_bytes=args.workspace_mb * (1 << 20) if args.workspace_mb else None,
            weak_typing=args.weak_typing, version_compatible=args.version_compatible, on_device=True)
        specs = [(s.name, list(s.shape)) for s in manifest.inputs]
        with tempfile.TemporaryDirectory(prefix="hpsedge-smoke-trt-") as tmp:
            engine_path = Path(tmp) / f"model.{own}.engine"
            entry = build_engine(onnx_path, engine_path, options, progress=print_progress, input_specs=specs,
                                 device=args.device)
            results = run_comparison(args, manifest, onnx_path, engine_path, entry, TensorRTBackend)
        if not args.no_predictor and report.elapsed() < args.budget_s:
            results["predictor"] = run_predictor(args, folder, manifest, max_batch)
    except HpsedgeError as exc:
        report.record("tensorrt", "failed", exc.message)
        return
    results["engine"] = entry
    failures = verdict(results, own)
    report.record("tensorrt", "failed" if failures else "ok", "; ".join(failures), available=reason, **results)


# ---- TensorRT helpers (as before: engine vs ONNX Runtime, end to end) ------------------------------------
class _PlainOrt:
    """ONNX Runtime on the CPU with the Backend interface (run / close)."""

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
    """ONNX Runtime pinned to the CPU provider (the reference every GPU result is compared with)."""
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


def print_progress(event: Any) -> None:
    if event.kind == "start" and event.parent is None:
        print(f"  [build] {event.phase} ({event.total} steps)", flush=True)


def verdict(results: dict[str, Any], precision: str) -> list[str]:
    """The TensorRT checks that failed: engine vs ONNX Runtime above the precision's tolerance, non-finite
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


def run_predictor(args: argparse.Namespace, folder: Path, manifest: Any, max_batch: int) -> dict[str, Any]:
    """`hpsedge export build --on-device` into a copy of the folder, then Predictor.load(backend="auto")
    (which must pick TensorRT) against Predictor(backend="ort")."""
    import shutil

    import numpy as np

    from hpsedge.export.build import BuildConfig, rebuild_on_device
    from hpsedge.runtime.predictor import Predictor
    from hpsedge.runtime.rotations import geodesic_angle

    with tempfile.TemporaryDirectory(prefix="hpsedge-smoke-e2e-") as tmp:
        copy = Path(tmp) / folder.name
        shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("*.engine"))
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
        ms = median_ms(lambda: auto.predict(image, boxes), max(3, args.iters // 5), 1)
        return {"backend": auto.backend.name, "device": auto.backend.device, "on_device_build_s": round(build_s, 2),
                "reason": "engine from the on-device build", "persons": len(boxes),
                "pose_deg_max": max(deg, default=0.0), "predict_ms_median": ms}


def run_comparison(args: argparse.Namespace, manifest: Any, onnx_path: Path, engine_path: Path,
                   entry: dict[str, Any], trt_cls: Any) -> dict[str, Any]:
    trt_backend = trt_cls(engine_path, entry, args.device, allow_host_code=args.version_compatible)
    ort_backend = make_ort(onnx_path)
    results: dict[str, Any] = {"trt_device": trt_backend.device, "batches": {}}
    try:
        max_b = int(trt_backend.max_batch or 1)
        batches = sorted({1, int(entry.get("profile", {}).get("opt") or 1), max_b} - {0})
        for batch in [b for b in batches if b <= max_b]:
            feeds = random_feeds(manifest.inputs, batch, args.seed + batch)
            errors = compare(ort_backend.run(feeds), trt_backend.run(feeds))
            trt_ms = median_ms(lambda f=feeds: trt_backend.run(f), args.iters, args.warmup)
            ort_ms = median_ms(lambda f=feeds: ort_backend.run(f), max(3, args.iters // 10), 1)
            results["batches"][str(batch)] = {"errors": errors, "trt_ms": trt_ms, "ort_cpu_ms": ort_ms}
            print(f"batch {batch}: TensorRT {trt_ms:.2f} ms, ORT CPU {ort_ms:.2f} ms (median), worst error "
                  f"{worst(errors):.2e} of range")
    finally:
        trt_backend.close()
        ort_backend.close()
    return results


# ---- output ----------------------------------------------------------------------------------------------
def markdown(data: dict[str, Any]) -> str:
    steps = data["steps"]
    if data["failures"]:
        verdict = "FAIL: " + "; ".join(data["failures"])
    elif steps.get("gpu", {}).get("status") != "ok":
        verdict = "NOT RUN on a GPU: the CPU part passed, the GPU steps need a CUDA GPU"
    else:
        verdict = "PASS"
    lines = ["# GPU smoke test (benchmarks/gpu_smoke.py)", "", f"- verdict: {verdict}",
             f"- {data['seconds']} s on Python {data['host']['python']} ({data['host']['machine']})", ""]
    for name, s in steps.items():
        lines.append(f"- **{name}**: {s['status']}{': ' + s['reason'] if s.get('reason') else ''}")
    cuda = steps.get("cuda", {})
    if cuda.get("status") == "ok":
        lines.append(f"  - {cuda['gpu']} (sm {cuda['compute_capability']}), driver CUDA {cuda['driver_cuda']}, "
                     f"cuda-python CUDA {cuda['cuda_python_cuda']}, pinned round trip "
                     f"{cuda['round_trip']['GBps_both_ways']} GB/s")
    tor = steps.get("torch", {})
    if tor.get("batches"):
        lines += ["", f"PyTorch {tor['torch']} on {tor['gpu']} (the reference a TensorRT engine has to beat):", "",
                  "| batch | FP32 ms (median) | FP16 ms (median) | FP32 vs ONNX Runtime (of range) |",
                  "|---:|---:|---:|---:|"]
        for b, r in tor["batches"].items():
            lines.append(f"| {b} | {r.get('fp32_ms', '–')} | {r.get('fp16_ms', '–')} | "
                         f"{r['fp32_vs_ort']:.1e} |" if "fp32_vs_ort" in r else f"| {b} | – | – | skipped |")
    trt = steps.get("tensorrt", {})
    if trt.get("batches"):
        eng = trt.get("engine", {})
        lines += ["", f"TensorRT {eng.get('trt_version')} engine {eng.get('file')} ({eng.get('precision')}), "
                      f"built in {eng.get('build_seconds')} s:", "",
                  "| batch | TensorRT ms | ONNX Runtime CPU ms | worst error / range |", "|---:|---:|---:|---:|"]
        for b, r in trt["batches"].items():
            lines.append(f"| {b} | {r['trt_ms']:.2f} | {r['ort_cpu_ms']:.2f} | {worst(r['errors']):.2e} |")
    return "\n".join(lines) + "\n"


def write(data: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(data), encoding="utf-8")
    print(f"gpu_smoke: wrote {out} and {out.with_suffix('.md').name}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from hpsedge.errors import HpsedgeError

    report = Report()
    out = args.json or (RESULTS / "gpu_smoke.json")
    try:
        with folder_for(args, report) as folder:
            step_predictor(args, report, folder)  # needs no GPU: shows backend="auto" and why
            ok, where = gpu_present(args.device)
            if not ok:
                report.record("gpu", "skipped", where)
                write(report.to_dict(), out)
                print(f"gpu_smoke: no CUDA GPU here ({where}): the CPU part ran (folder {folder}); the GPU "
                      "steps need a GPU machine", file=sys.stderr)
                return EXIT_NO_GPU
            report.record("gpu", "ok", where)
            for name, step in (("cuda", step_cuda), ("torch", step_torch), ("tensorrt", step_tensorrt)):
                if report.elapsed() > args.budget_s:
                    report.record(name, "skipped", f"time budget of {args.budget_s:.0f} s spent")
                    continue
                if name == "cuda":
                    step(args, report)
                else:
                    step(args, report, folder)
    except HpsedgeError as exc:
        report.record("folder" if "folder" not in report.steps else "run", "failed", exc.message)
        print(f"gpu_smoke: error: {exc.message}", file=sys.stderr)
    write(report.to_dict(), out)
    for f in report.failures:
        print(f"gpu_smoke: FAILED: {f}", file=sys.stderr)
    return EXIT_FAILED if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
