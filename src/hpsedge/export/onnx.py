"""``hpsedge export onnx``: PyTorch model → verified ONNX graph + manifest, written atomically.

Steps: build the zoo model (checkpoint or random weights) → trace it to ONNX with a dynamic person batch
→ ``onnx.checker`` → op-set check (no Einsum/ScatterND) → run the graph in ONNX Runtime (CPU) against
PyTorch on fresh random inputs at N=1 and N=3 → write ``manifest.json``. Everything is written to a
temporary folder beside the target and renamed at the end, so an interrupted export leaves nothing
half-written, and an existing folder is only replaced with ``force``.

Large graphs (TokenHMR: 2.75 GB of FP32 weights, over protobuf's 2 GiB limit) are written as
``model.onnx`` (the graph, ~1 MB) + ``model.onnx.data`` (every initializer of 1 KiB or more, each at a
4 KiB-aligned offset) whenever the weights exceed ``external_data_threshold`` bytes. The manifest's
``artifacts.onnx`` entry then also lists ``data_file``, ``data_sha256`` and ``data_bytes``. ONNX Runtime,
``onnx.load`` and ``onnx.checker`` (given the path) find the data file beside the graph by itself.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
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
from hpsedge.errors import ExportError, HpsedgeError
from hpsedge.export.lint import FORBIDDEN_OPS, forbidden_ops, op_histogram
from hpsedge.export.outdir import atomic_folder, check_target
from hpsedge.models.checkpoints import DEFAULT_INIT_SEED, build_model
from hpsedge.models.registry import ModelSpec
from hpsedge.runtime.folder import DEFAULT_MAX_BATCH as _DEFAULT_MAX_BATCH
from hpsedge.runtime.folder import MAX_BATCH_LIMIT as _MAX_BATCH_LIMIT
from hpsedge.runtime.folder import Precision
from hpsedge.runtime.manifest import (
    MANIFEST_NAME,
    SCHEMA,
    SCHEMA_VERSION,
    dumps_strict,
    sha256_file,
    validate_manifest,
)

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
DEFAULT_MAX_BATCH = _DEFAULT_MAX_BATCH  # the folder owner's default (hpsedge.runtime.folder)
DEFAULT_TOLERANCE = 1e-3
VERIFY_BATCHES = (1, 3)
ONNX_NAME = "model.onnx"
DATA_SUFFIX = ".data"
PRECISIONS = Precision.names()  # the one list (hpsedge.runtime.folder.Precision)
#: weights above this many bytes go to an external data file (protobuf caps one file at 2 GiB)
EXTERNAL_DATA_THRESHOLD = 1_800_000_000
#: initializers smaller than this stay inside the graph file when external data is written
EXTERNAL_TENSOR_MIN_BYTES = 1024
_ALIGN = 4096

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
#: largest --max-batch / newest opset accepted (validated before any work)
MAX_BATCH_LIMIT = _MAX_BATCH_LIMIT
MAX_OPSET = 21


def check_input_file(path: Path | str | None, option: str) -> None:
    """An input file option must name an existing regular file (checked before the minutes of work)."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise HpsedgeError(f"{option} {p} is a folder; pass the file itself")
    if not p.exists():
        raise HpsedgeError(f"{option.lstrip('-').replace('-', ' ')} not found: {p}")
    if not p.is_file():
        raise HpsedgeError(f"{option} {p} is not a regular file (a FIFO or device)")


# check_target / atomic_folder live in hpsedge.export.outdir (lock, --force rules, stale temp folders,
# permissions); imported above and re-exported here for existing callers.


# ---------------------------------------------------------------------------------------------------
# export and verification
# ---------------------------------------------------------------------------------------------------
def trace_to_onnx(model: torch.nn.Module, path: Path, opset: int = DEFAULT_OPSET) -> None:
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


def _tensor_bytes(t: Any) -> int:
    """Bytes of an initializer's data, inline or external, without loading external data."""
    from onnx import external_data_helper as edh

    if edh.uses_external_data(t):
        info = edh.ExternalDataInfo(t)
        return int(info.length or 0)
    if t.HasField("raw_data"):
        return len(t.raw_data)
    from onnx import numpy_helper

    return int(numpy_helper.to_array(t).nbytes) if t.dims else 0


def finalize_onnx(src: Path, dst: Path, threshold: int = EXTERNAL_DATA_THRESHOLD) -> Path | None:
    """Move the traced graph ``src`` (and any per-tensor files the exporter wrote beside it) to ``dst``.

    When the weights exceed ``threshold`` bytes, or the exporter already had to write them externally
    (the TorchScript exporter does so, one file per tensor, above 2 GiB), every initializer of at least
    :data:`EXTERNAL_TENSOR_MIN_BYTES` goes into one file ``dst.name + ".data"`` beside ``dst``, each at a
    4 KiB-aligned offset, copied tensor by tensor (the weights are never all in memory). Returns the data
    file's path, or None when the graph is self-contained.
    """
    import onnx
    from onnx import external_data_helper as edh
    from onnx import numpy_helper

    proto = onnx.load(str(src), load_external_data=False)
    tensors = list(edh._get_all_tensors(proto))
    already = any(edh.uses_external_data(t) for t in tensors)
    total = sum(_tensor_bytes(t) for t in tensors)
    if not already and total <= threshold:
        del proto
        if src != dst:
            os.replace(src, dst)
        return None
    data_name = dst.name + DATA_SUFFIX
    data_path = dst.parent / data_name
    offset = 0
    with open(data_path, "wb") as out:
        for t in tensors:
            if edh.uses_external_data(t):
                info = edh.ExternalDataInfo(t)
                chunks = _read_external(src.parent / info.location, int(info.offset or 0), info.length)
            elif _tensor_bytes(t) >= EXTERNAL_TENSOR_MIN_BYTES:
                raw = t.raw_data if t.HasField("raw_data") else numpy_helper.to_array(t).tobytes()
                chunks = iter((raw,))
            else:
                continue
            pad = (-offset) % _ALIGN
            out.write(b"\0" * pad)
            offset += pad
            length = 0
            for chunk in chunks:
                out.write(chunk)
                length += len(chunk)
            for field_name in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"):
                t.ClearField(field_name)
            del t.external_data[:]
            for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(length))):
                entry = t.external_data.add()
                entry.key, entry.value = key, value
            t.data_location = onnx.TensorProto.EXTERNAL
            offset += length
    onnx.save(proto, str(dst))
    return data_path


def _read_external(path: Path, offset: int, length: int | None, chunk: int = 1 << 24) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(offset)
        left = length if length else None
        while left is None or left > 0:
            b = f.read(chunk if left is None else min(chunk, left))
            if not b:
                break
            if left is not None:
                left -= len(b)
            yield b


def ort_session(path: Path, threads: int | None = None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def compare_outputs(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per output: max absolute error and the relative error max|a−b| / max|ref|
    (:func:`hpsedge.runtime.compare.output_errors`, the comparison the accuracy report and the GPU smoke test use)."""
    from hpsedge.runtime.compare import output_errors

    try:
        errors = output_errors(ref, got)
    except ValueError as exc:
        raise ExportError(f"ONNX Runtime vs PyTorch: {exc}") from None
    return {name: {"max_abs": e["max_abs"], "rel": e["max_rel_range"]} for name, e in errors.items()}


def verify_onnx(
    model: torch.nn.Module,
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
        for runner, outs in (("PyTorch", ref), ("ONNX Runtime", got)):
            bad = [name for name, arr in outs.items() if not np.isfinite(arr).all()]
            if bad:  # NaN compares as "no error": all-NaN weights would otherwise pass
                raise ExportError(
                    f"{runner} outputs NaN or Inf for {', '.join(bad)} at N={n}; the model cannot be verified",
                    hint="the checkpoint's weights hold NaN/Inf, or it does not belong to this model",
                )
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
    outputs: list[dict[str, Any]] | None = None,
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
        "outputs": outputs if outputs is not None else spec.output_specs(),
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
    model: torch.nn.Module,
    loaded: Any,
    *,
    tiny: bool,
    opset: int = DEFAULT_OPSET,
    max_batch: int = DEFAULT_MAX_BATCH,
    tolerance: float = DEFAULT_TOLERANCE,
    progress: ProgressFn | None = None,
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD,
    init_seed: int | None = None,
) -> dict[str, Any]:
    """Trace, check and verify ``model`` into ``folder/model.onnx``; return the manifest (not yet written).

    ``folder`` is a scratch folder owned by the caller (see :func:`atomic_folder`); ``loaded`` is the
    :class:`~hpsedge.models.checkpoints.LoadedCheckpoint` or None for random weights (then ``init_seed``, the
    seed they were drawn with, is recorded as the manifest's ``checkpoint.init_seed``). Weights over
    ``external_data_threshold`` bytes go to ``folder/model.onnx.data`` (see :func:`finalize_onnx`).
    """
    step = progress or (lambda _msg: None)
    spec = model.spec
    onnx_path = folder / ONNX_NAME
    step(f"tracing to ONNX (opset {opset})")
    trace_dir = folder / ".trace"
    trace_dir.mkdir()
    try:
        trace_to_onnx(model, trace_dir / ONNX_NAME, opset=opset)
        data_path = finalize_onnx(trace_dir / ONNX_NAME, onnx_path, threshold=external_data_threshold)
    finally:
        shutil.rmtree(trace_dir, ignore_errors=True)
    step("checking the graph")
    import onnx

    try:
        # by path, so that a graph with external data is checked without loading the weights
        onnx.checker.check_model(str(onnx_path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported graph is not valid ONNX: {str(exc).splitlines()[0]}") from None
    proto = onnx.load(str(onnx_path), load_external_data=False)
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
    if loaded is None and init_seed is not None:
        ckpt_info["init_seed"] = int(init_seed)
    if loaded is not None:
        ckpt_info.update({"file": loaded.path.name, "sha256": loaded.sha256, "dropped_keys": len(loaded.dropped)})
        if getattr(loaded, "stand_ins", None):  # pickled objects read as inert data, never executed
            ckpt_info["inert_objects"] = list(loaded.stand_ins)
        aux = getattr(loaded, "aux", None)
        if aux is not None:  # the spec's second weights file, under the option name it gives it
            ckpt_info[str(spec.aux_option or "aux")] = {"file": aux.path.name, "sha256": aux.sha256}
        tok = getattr(loaded, "tokenizer", None)
        if tok is not None:
            ckpt_info["tokenizer"] = {"file": tok.path.name, "sha256": tok.sha256, "dropped_keys": len(tok.dropped)}
            if tok.stand_ins:
                ckpt_info["tokenizer"]["inert_objects"] = list(tok.stand_ins)
    onnx_entry: dict[str, Any] = {
        "file": ONNX_NAME,
        "sha256": sha256_file(onnx_path),
        "bytes": onnx_path.stat().st_size,
        "precision": "fp32",
    }
    if data_path is not None:
        onnx_entry.update(
            {"data_file": data_path.name, "data_sha256": sha256_file(data_path), "data_bytes": data_path.stat().st_size}
        )
    out_specs = model.output_specs() if hasattr(model, "output_specs") else None
    return build_manifest(
        spec,
        tiny=tiny,
        params=sum(p.numel() for p in model.parameters()),
        checkpoint=ckpt_info,
        opset=opset,
        max_batch=max_batch,
        artifacts={"onnx": onnx_entry},
        verification=verification,
        ops=ops,
        outputs=out_specs,
    )


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    validate_manifest(manifest, source="generated manifest")
    path = folder / MANIFEST_NAME
    path.write_text(dumps_strict(manifest, indent=2) + "\n", encoding="utf-8")
    return path


def export_onnx(
    model_name: str,
    out_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    tokenizer: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    max_batch: int = DEFAULT_MAX_BATCH,
    force: bool = False,
    tiny: bool = False,
    unsafe_pickle: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
    precision: str = "fp32",
    precision_options: dict[str, Any] | None = None,
    token_probs: bool = False,
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD,
    progress: ProgressFn | None = None,
    seed: int = DEFAULT_INIT_SEED,
) -> ExportResult:
    """Export zoo model ``model_name`` to ``out_dir/model.onnx`` with a manifest; verify it first.

    With ``precision`` "fp16" or "int8", ``model.<precision>.onnx`` and the accuracy-drop report are
    written too (:func:`hpsedge.export.precision.apply_precision`, with ``precision_options``).
    TokenHMR: ``tokenizer`` is ``tokenizer.pth`` (with ``checkpoint`` = the official ``.ckpt``);
    ``token_probs`` adds the [N, 160, 2048] token probabilities as a graph output. Weights over
    ``external_data_threshold`` bytes are written to ``model.onnx.data`` (0 forces it). Without a checkpoint
    the random weights are drawn with ``seed`` (the same graph on every run).
    """
    step = progress or (lambda _msg: None)
    out = Path(out_dir)
    if opset < 13:
        raise HpsedgeError(f"opset {opset} is too old; use 13 or newer (17 is the default)")
    if opset > MAX_OPSET:
        raise HpsedgeError(f"opset {opset} is newer than this exporter writes (13 to {MAX_OPSET}; 17 is the default)")
    if not 1 <= max_batch <= MAX_BATCH_LIMIT:
        raise HpsedgeError(f"--max-batch must be between 1 and {MAX_BATCH_LIMIT} (got {max_batch})")
    check_input_file(checkpoint, "--checkpoint")
    check_input_file(tokenizer, "--tokenizer")
    precision = Precision.parse(precision).value
    if precision != "fp32":
        from hpsedge.export.precision import check_precision_args

        check_precision_args(precision, (precision_options or {}).get("calib"))
    from hpsedge.models.zoo import get_spec

    spec = get_spec(model_name)
    if token_probs:
        if "token_probs" not in {t.name for t in spec.optional_outputs}:
            raise HpsedgeError(f"--token-probs is only for TokenHMR models (those with token probabilities), not {spec.name}")
        spec = spec.with_outputs("token_probs")
    check_target(out, force)
    t0 = time.perf_counter()
    step("building the model")
    model, spec, loaded = build_model(
        model_name, checkpoint=checkpoint, unsafe_pickle=unsafe_pickle, tiny=tiny, tokenizer=tokenizer, spec=spec,
        seed=seed,
    )
    with atomic_folder(out, force) as tmp:
        manifest = write_export(
            tmp,
            model,
            loaded,
            tiny=tiny,
            opset=opset,
            max_batch=max_batch,
            tolerance=tolerance,
            progress=step,
            external_data_threshold=external_data_threshold,
            init_seed=seed,
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
