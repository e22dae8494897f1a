"""``hpsedge export onnx``: PyTorch model → verified ONNX graph + manifest, written atomically.

Steps: build the zoo model (checkpoint or random weights) → trace it to ONNX with a dynamic person batch
→ ``onnx.checker`` → op-set check (no Einsum/ScatterND) → run the graph in ONNX Runtime (CPU) against
PyTorch on fresh random inputs at N=1 and N=3 → write ``manifest.json``. Everything is written to a
temporary folder beside the target and renamed at the end, so an interrupted export leaves nothing
half-written, and an existing folder is only replaced with ``force``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

import hpsedge
from hpsedge.export.lint import FORBIDDEN_OPS, forbidden_ops, op_histogram
from hpsedge.models.checkpoints import build_model
from hpsedge.models.zoo import HPSNetwork, ModelSpec
from hpsedge.runtime.errors import ExportError, HpsedgeError
from hpsedge.runtime.manifest import MANIFEST_NAME, SCHEMA, SCHEMA_VERSION, sha256_file, validate_manifest

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
DEFAULT_MAX_BATCH = 16
DEFAULT_TOLERANCE = 1e-3
VERIFY_BATCHES = (1, 3)
ONNX_NAME = "model.onnx"
PRECISIONS = ("fp32", "fp16", "int8")

#: called with (step description) as the export advances; the CLI drives a progress display with it
ProgressFn = Callable[[str], None]


@dataclass
class ExportResult:
    out_dir: Path
    onnx_path: Path
    manifest: dict[str, Any]
    seconds: float

    @property
    def worst_rel_error(self) -> float:
        return float(self.manifest["verification"]["worst_rel_error"])


# ---------------------------------------------------------------------------------------------------
# atomic output folder
# ---------------------------------------------------------------------------------------------------
def check_target(out_dir: Path, force: bool) -> None:
    """Refuse to touch an existing folder (or file) unless ``force``; called before any work."""
    if out_dir.exists() and not force:
        raise HpsedgeError(f"{out_dir} already exists; not overwriting it", hint="pass --force to replace it")
    if out_dir.exists() and not out_dir.is_dir():
        raise HpsedgeError(f"{out_dir} exists and is not a folder; refusing to replace it")


@contextlib.contextmanager
def atomic_folder(out_dir: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary folder next to ``out_dir``; on success it replaces ``out_dir`` in one rename.

    On any exception (Ctrl-C included) the temporary folder is removed and ``out_dir`` is untouched.
    """
    check_target(out_dir, force)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield tmp
        if out_dir.exists():  # force: move the old folder aside first, so a failure keeps one of the two
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# export and verification
# ---------------------------------------------------------------------------------------------------
def trace_to_onnx(model: HPSNetwork, path: Path, opset: int = DEFAULT_OPSET) -> None:
    """Trace ``model`` with the TorchScript-based exporter (dynamic batch axis ``N``).

    The legacy tracer is used on purpose: it honours opset 17 (the dynamo exporter emits 18 at least),
    bakes Python-side indices in, and unrolls the fixed IEF loops.
    """
    spec = model.spec
    inputs = model.example_inputs(batch=2, seed=1234)
    dynamic = {name: {0: "N"} for name in spec.input_names + spec.output_names}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            inputs,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=spec.input_names,
            output_names=spec.output_names,
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )


def ort_session(path: Path, threads: int | None = None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def compare_outputs(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per output: max absolute error and the relative error max|a−b| / max|ref|."""
    figures = {}
    for name, r in ref.items():
        g = got[name]
        if g.shape != r.shape:
            raise ExportError(f"output '{name}' has shape {g.shape} in ONNX Runtime but {r.shape} in PyTorch")
        abs_err = float(np.max(np.abs(g.astype(np.float64) - r.astype(np.float64)))) if r.size else 0.0
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        figures[name] = {"max_abs": abs_err, "rel": abs_err / max(scale, 1e-8)}
    return figures


def verify_onnx(
    model: HPSNetwork,
    onnx_path: Path,
    batches: tuple[int, ...] = VERIFY_BATCHES,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 20241,
) -> dict[str, Any]:
    """Run the ONNX graph in ONNX Runtime (CPU) and PyTorch on fresh random inputs; compare.

    Raises :class:`ExportError` when the worst relative error exceeds ``tolerance``.
    """
    spec = model.spec
    sess = ort_session(onnx_path)
    per_batch: dict[str, Any] = {}
    worst = 0.0
    for i, n in enumerate(batches):
        inputs = model.example_inputs(batch=n, seed=seed + i)
        with torch.no_grad():
            ref = dict(zip(spec.output_names, (t.numpy() for t in model(*inputs)), strict=True))
        feeds = {name: t.numpy() for name, t in zip(spec.input_names, inputs, strict=True)}
        got = dict(zip(spec.output_names, sess.run(spec.output_names, feeds), strict=True))
        figs = compare_outputs(ref, got)
        per_batch[str(n)] = figs
        worst = max([worst, *(f["rel"] for f in figs.values())])
    result = {
        "reference": f"torch {torch.__version__} eager (CPU)",
        "runner": "onnxruntime CPUExecutionProvider",
        "batches": list(batches),
        "tolerance_rel": tolerance,
        "worst_rel_error": worst,
        "per_batch": per_batch,
        "passed": worst <= tolerance,
    }
    if worst > tolerance:
        bad = [
            f"{name} at N={n}: rel {f['rel']:.2e}" for n, figs in per_batch.items() for name, f in figs.items() if f["rel"] > tolerance
        ]
        raise ExportError(
            f"ONNX Runtime disagrees with PyTorch beyond {tolerance:g} (relative): " + ", ".join(bad[:4]),
            hint="this is a bug in the exporter or an op the runtime computes differently; please report it",
        )
    return result


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {
        "hpsedge": hpsedge.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def build_manifest(
    spec: ModelSpec,
    *,
    tiny: bool,
    params: int,
    checkpoint: dict[str, Any],
    opset: int,
    max_batch: int,
    artifacts: dict[str, Any],
    verification: dict[str, Any],
    ops: dict[str, int],
) -> dict[str, Any]:
    manifest = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "model": {
            "name": spec.name,
            "family": spec.family,
            "has_sigma": spec.has_sigma,
            "variant": "tiny" if tiny else "full",
            "backbone": spec.backbone,
            "sigma_score": spec.sigma_score,
            "params": params,
            "description": spec.description,
        },
        "checkpoint": checkpoint,
        "inputs": spec.input_specs(),
        "outputs": spec.output_specs(),
        "preprocessing": spec.preprocessing(),
        "postprocessing": spec.postprocessing(),
        "precision": "fp32",
        "opset": opset,
        "max_batch": max_batch,
        "artifacts": artifacts,
        "graph": {"ops": ops},
        "versions": _versions(),
        "verification": verification,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    validate_manifest(manifest, source="generated manifest")
    return manifest


def write_export(
    folder: Path,
    model: HPSNetwork,
    loaded: Any,
    *,
    tiny: bool,
    opset: int = DEFAULT_OPSET,
    max_batch: int = DEFAULT_MAX_BATCH,
    tolerance: float = DEFAULT_TOLERANCE,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Trace, check and verify ``model`` into ``folder/model.onnx``; return the manifest (not yet written).

    ``folder`` is a scratch folder owned by the caller (see :func:`atomic_folder`); ``loaded`` is the
    :class:`~hpsedge.models.checkpoints.LoadedCheckpoint` or None for random weights.
    """
    step = progress or (lambda _msg: None)
    spec = model.spec
    onnx_path = folder / ONNX_NAME
    step(f"tracing to ONNX (opset {opset})")
    trace_to_onnx(model, onnx_path, opset=opset)
    step("checking the graph")
    import onnx

    proto = onnx.load(str(onnx_path))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported graph is not valid ONNX: {str(exc).splitlines()[0]}") from None
    bad = forbidden_ops(proto)
    if bad:
        raise ExportError(
            f"the graph contains {', '.join(bad)}, which TensorRT cannot parse without plugins",
            hint=f"ops {sorted(FORBIDDEN_OPS)} must be rewritten in the model code",
        )
    ops = op_histogram(proto)
    del proto
    step("verifying with ONNX Runtime")
    verification = verify_onnx(model, onnx_path, tolerance=tolerance)
    ckpt_info: dict[str, Any] = {"random_init": loaded is None}
    if loaded is not None:
        ckpt_info.update({"file": loaded.path.name, "sha256": loaded.sha256, "dropped_keys": len(loaded.dropped)})
    artifacts = {
        "onnx": {
            "file": ONNX_NAME,
            "sha256": sha256_file(onnx_path),
            "bytes": onnx_path.stat().st_size,
            "precision": "fp32",
        }
    }
    return build_manifest(
        spec,
        tiny=tiny,
        params=sum(p.numel() for p in model.parameters()),
        checkpoint=ckpt_info,
        opset=opset,
        max_batch=max_batch,
        artifacts=artifacts,
        verification=verification,
        ops=ops,
    )


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    validate_manifest(manifest, source="generated manifest")
    path = folder / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path


def export_onnx(
    model_name: str,
    out_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    max_batch: int = DEFAULT_MAX_BATCH,
    force: bool = False,
    tiny: bool = False,
    unsafe_pickle: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
    precision: str = "fp32",
    precision_options: dict[str, Any] | None = None,
    progress: ProgressFn | None = None,
) -> ExportResult:
    """Export zoo model ``model_name`` to ``out_dir/model.onnx`` with a manifest; verify it first.

    With ``precision`` "fp16" or "int8", ``model.<precision>.onnx`` and the accuracy-drop report are
    written too (:func:`hpsedge.export.precision.apply_precision`, with ``precision_options``).
    """
    step = progress or (lambda _msg: None)
    out = Path(out_dir)
    if opset < 13:
        raise HpsedgeError(f"opset {opset} is too old; use 13 or newer (17 is the default)")
    if max_batch < 1:
        raise HpsedgeError(f"--max-batch must be at least 1 (got {max_batch})")
    if precision not in PRECISIONS:
        raise HpsedgeError(f"unknown precision '{precision}' (choose from {', '.join(PRECISIONS)})")
    check_target(out, force)
    t0 = time.perf_counter()
    step("building the model")
    model, spec, loaded = build_model(model_name, checkpoint=checkpoint, unsafe_pickle=unsafe_pickle, tiny=tiny)
    with atomic_folder(out, force) as tmp:
        manifest = write_export(
            tmp, model, loaded, tiny=tiny, opset=opset, max_batch=max_batch, tolerance=tolerance, progress=step
        )
        if precision != "fp32":
            from hpsedge.export.precision import apply_precision

            step(f"{precision} graph and accuracy report")
            apply_precision(tmp, manifest, precision, progress=step, **(precision_options or {}))
        write_manifest(tmp, manifest)
        step("writing the folder")
    seconds = time.perf_counter() - t0
    log.info("exported %s to %s in %.1f s", spec.name, out, seconds)
    return ExportResult(out_dir=out, onnx_path=out / ONNX_NAME, manifest=manifest, seconds=seconds)
