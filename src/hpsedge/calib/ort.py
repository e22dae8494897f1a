"""ONNX Runtime (CPU) sessions for calibration, conversion checks and the accuracy report."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import BackendError, ExportError

#: protobuf cannot serialise more than 2 GiB; bigger graphs go through a temporary file with external data
_PROTO_LIMIT = (1 << 31) - (1 << 26)


def model_bytes(model: Any) -> int:
    """Approximate serialized size: protobuf without weights + weight bytes (works for > 2 GB models)."""
    total = 0
    for t in model.graph.initializer:
        total += len(t.raw_data) if t.raw_data else t.ByteSize()
    return total


def _options(threads: int | None) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - ort is a dependency of the export extra
        raise BackendError("calibration and precision checks need onnxruntime", hint="pip install onnxruntime") from exc
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    return opts


def session(path: str | Path, threads: int | None = None) -> Any:
    """A CPU session for an ONNX file (external data next to it is found by ONNX Runtime)."""
    import onnxruntime as ort

    opts = _options(threads)
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(
            f"ONNX Runtime cannot load {Path(path).name}: {str(exc).splitlines()[0][:300]}"
        ) from None


def session_from_proto(model: Any, threads: int | None = None) -> Any:
    """A CPU session for an in-memory ModelProto; graphs near 2 GB are written to a temporary folder first."""
    import onnx
    import onnxruntime as ort


    opts = _options(threads)
    if model_bytes(model) < _PROTO_LIMIT and not _has_external(model):
        try:
            return ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ExportError(f"ONNX Runtime cannot load the graph: {str(exc).splitlines()[0][:300]}") from None
    with tempfile.TemporaryDirectory(prefix="hpsedge-ort-") as tmp:
        p = Path(tmp) / "model.onnx"
        onnx.save_model(model, str(p), save_as_external_data=True, location="model.onnx.data")
        return session(p, threads)


def _has_external(model: Any) -> bool:
    from onnx.external_data_helper import uses_external_data

    return any(uses_external_data(t) for t in model.graph.initializer)


def run_batched(
    sess: Any, feeds: Mapping[str, np.ndarray], batch: int = 8, outputs: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Run ``sess`` over ``feeds`` (all of the same length N) in person batches; outputs concatenated."""
    names = list(outputs) if outputs is not None else [o.name for o in sess.get_outputs()]
    n = len(next(iter(feeds.values())))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in names}
    for s in range(0, n, batch):
        res = sess.run(names, {k: np.ascontiguousarray(v[s : s + batch]) for k, v in feeds.items()})
        for k, v in zip(names, res, strict=True):
            parts[k].append(v)
    return {k: np.concatenate(v, axis=0) for k, v in parts.items()}


def median_latency_ms(
    sessions: Mapping[str, Any], feeds: Mapping[str, np.ndarray], reps: int = 10, warmup: int = 2
) -> dict[str, float]:
    """Median wall time (ms) of one ``run`` per session, measured interleaved (a, b, a, b, ...)."""
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(warmup):
        for s in sessions.values():
            s.run(None, dict(feeds))
    for _ in range(max(1, reps)):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, dict(feeds))
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: float(np.median(v)) for k, v in times.items()}
