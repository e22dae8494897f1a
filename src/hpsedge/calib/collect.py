"""Streaming INT8 calibration: activation ranges from one ONNX Runtime run per batch, keeping statistics only.

ONNX Runtime's own calibrators keep every intermediate output of every calibration batch until the end (a
full-size POCO build peaked at 7–8 GB, TokenHMR would not fit). Here each batch is run once with the tensors
to calibrate exposed as graph outputs, folded into per-tensor statistics and dropped:

* ``max``: running min and max;
* ``percentile``: a histogram of |x| with a fixed number of bins whose range doubles when a batch exceeds it
  (neighbouring bins are merged, so no sample is ever re-read); the threshold is the upper edge of the bin
  where the cumulative count reaches the percentile, clipped to the observed min/max as ONNX Runtime does;
* ``entropy``: ONNX Runtime's own ``HistogramCollector`` (TensorRT's KL-divergence threshold), which merges
  histograms batch by batch.

The batch size adapts to the graph: after a one-sample probe run, batches hold as many samples as fit in
:data:`ACTIVATION_BUDGET` bytes of exposed activations (a ViT-H exposes ≈ 1 GB per crop, POCO ≈ 40 MB).
Graphs with external data (> 2 GB) run from their own folder: only the small graph is rewritten, the
weights are read by ONNX Runtime from the original ``.data`` file and never copied.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.calib.graph import file_uses_external_data, float_value_types, graph_session, load_model
from hpsedge.errors import ExportError

#: bytes of exposed activations one calibration run may return (the batch size adapts to stay below)
ACTIVATION_BUDGET = 256 << 20
HIST_BINS = 2048
ENTROPY_QUANT_BINS = 255

ProgressFn = Callable[[str], None]


def calibration_tensors(model: Any, op_types: Iterable[str] | None, types: Mapping[str, int]) -> list[str]:
    """Float tensors read or written by nodes of ``op_types`` (all nodes when None), initializers excluded.

    The same selection as ONNX Runtime's ``select_tensors_to_calibrate``, so ``quantize_static`` finds a range
    for every tensor it wants to quantize.
    """
    import onnx

    wanted = set(op_types) if op_types is not None else None
    inits = {t.name for t in model.graph.initializer}
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    out: dict[str, None] = {}
    for node in model.graph.node:
        if wanted is not None and node.op_type not in wanted:
            continue
        for name in (*node.input, *node.output):
            if name and name not in inits and types.get(name) in floats:
                out[name] = None
    return list(out)


class _AbsHistogram:
    """Histogram of |x| over [0, hmax] with ``bins`` bins; hmax grows by powers of two (bins are merged)."""

    __slots__ = ("bins", "counts", "hmax")

    def __init__(self, bins: int) -> None:
        self.bins = bins
        self.counts = np.zeros(bins, dtype=np.int64)
        self.hmax = 0.0

    def add(self, a: np.ndarray, amax: float) -> None:
        if not np.isfinite(amax):
            a = a[np.isfinite(a)]
            amax = float(a.max()) if a.size else 0.0
        if amax <= 0.0:
            self.counts[0] += a.size
            return
        if self.hmax == 0.0:
            self.hmax = amax
        elif amax > self.hmax:
            factor = 2 ** math.ceil(math.log2(amax / self.hmax))
            if factor >= self.bins:
                total = self.counts.sum()
                self.counts[:] = 0
                self.counts[0] = total
            else:
                merged = self.counts.reshape(self.bins // factor, factor).sum(axis=1)
                self.counts[:] = 0
                self.counts[: merged.size] = merged
            self.hmax *= factor
        idx = np.minimum((a * (self.bins / self.hmax)).astype(np.int64), self.bins - 1)
        self.counts += np.bincount(idx, minlength=self.bins)

    def threshold(self, percentile: float) -> float:
        total = self.counts.sum()
        if total == 0 or self.hmax == 0.0:
            return 0.0
        cdf = np.cumsum(self.counts) / total
        idx = int(np.searchsorted(cdf, percentile / 100.0))
        return (min(idx, self.bins - 1) + 1) * self.hmax / self.bins


class RangeCollector:
    """Per-tensor statistics for one calibration ``method``; :meth:`ranges` gives (low, high) per tensor."""

    def __init__(self, method: str, percentile: float = 99.99, bins: int = HIST_BINS) -> None:
        if method not in ("max", "percentile", "entropy"):
            raise ExportError(f"unknown calibration method {method!r}")
        self.method = method
        self.percentile = float(percentile)
        self.bins = bins
        self.lo: dict[str, float] = {}
        self.hi: dict[str, float] = {}
        self.hist: dict[str, _AbsHistogram] = {}
        self._entropy: Any = None
        if method == "entropy":
            from onnxruntime.quantization.calibrate import HistogramCollector

            self._entropy = HistogramCollector("entropy", True, bins, ENTROPY_QUANT_BINS, self.percentile, "same")

    def update(self, name: str, value: np.ndarray) -> None:
        v = np.asarray(value)
        if v.size == 0:
            return
        v = v.reshape(-1).astype(np.float32, copy=False)
        lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
        self.lo[name] = min(self.lo.get(name, lo), lo)
        self.hi[name] = max(self.hi.get(name, hi), hi)
        if self.method == "percentile":
            h = self.hist.get(name)
            if h is None:
                h = self.hist[name] = _AbsHistogram(self.bins)
            h.add(np.abs(v), max(abs(lo), abs(hi)))
        elif self.method == "entropy":
            with contextlib.redirect_stdout(io.StringIO()):
                self._entropy.collect({name: v})

    def ranges(self) -> dict[str, tuple[float, float]]:
        out: dict[str, tuple[float, float]] = {}
        if self.method == "max":
            return {k: (self.lo[k], self.hi[k]) for k in self.lo}
        if self.method == "percentile":
            for k, h in self.hist.items():
                t = h.threshold(self.percentile)
                out[k] = (max(-t, self.lo[k]), min(t, self.hi[k]))
            return out
        with contextlib.redirect_stdout(io.StringIO()):
            res = self._entropy.compute_collection_result()
        for k, v in res.items():
            out[k] = (float(v[0]), float(v[1]))
        return out


def _nbytes(values: Iterable[np.ndarray]) -> int:
    return int(sum(np.asarray(v).nbytes for v in values))


def collect_ranges(
    src: str | Path,
    feeds: Mapping[str, np.ndarray],
    *,
    op_types: Iterable[str] | None,
    method: str,
    percentile: float = 99.99,
    prepare: Callable[[Any], Any] | None = None,
    max_batch: int = 8,
    budget: int = ACTIVATION_BUDGET,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> tuple[dict[str, tuple[float, float]], dict[str, Any]]:
    """Activation ranges (low, high) of the graph at ``src`` on ``feeds`` (arrays keyed by input name).

    ``prepare`` is applied to the loaded graph first (the quantizer's node naming / clean-up, so tensor names
    match the graph that gets quantized). Returns the ranges and a small dict of facts (tensors, batch, runs).
    """
    import onnx

    from hpsedge.calib.ort import session_from_proto

    step = progress or (lambda _m: None)
    src = Path(src)
    external = file_uses_external_data(src)
    model = onnx.load(str(src), load_external_data=False) if external else load_model(src)
    if prepare is not None:
        model = prepare(model) or model
    types = float_value_types(model)
    tensors = calibration_tensors(model, op_types, types)
    if not tensors:
        raise ExportError("no float tensors to calibrate (no quantizable node in the graph)")
    graph_outputs = {o.name for o in model.graph.output}
    for name in tensors:
        if name not in graph_outputs:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    sess = graph_session(model, src.parent, threads) if external else session_from_proto(model, threads)
    del model
    names = [o.name for o in sess.get_outputs()]
    wanted = set(tensors)
    n = len(next(iter(feeds.values())))
    col = RangeCollector(method, percentile)
    batch = 1
    s = 0
    runs = 0
    while s < n:
        res = sess.run(names, {k: np.ascontiguousarray(v[s : s + batch]) for k, v in feeds.items()})
        got = min(batch, n - s)
        for name, value in zip(names, res, strict=True):
            if name in wanted:
                col.update(name, value)
        per_sample = _nbytes(res) / max(1, got)
        del res
        s += got
        runs += 1
        step(f"calibrating ({s}/{n})")
        batch = int(max(1, min(max_batch, budget // max(1, per_sample))))
    return col.ranges(), {"tensors": len(tensors), "batch": batch, "runs": runs, "samples": n}
