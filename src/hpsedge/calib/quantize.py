"""INT8 post-training quantization into an explicit Q/DQ ONNX graph (ONNX Runtime ``quantize_static``).

Flavours, recorded in the manifest as ``qdq_flavor``; an INT8 build folder carries two of them, made from
the **same** activation ranges (:func:`quantize_int8_flavors`):

* ``"trt-s8s8"`` (``model.int8.onnx``; what TensorRT 10/11 strongly typed builds want): symmetric INT8
  activations (per tensor, zero point 0) and symmetric per-channel INT8 weights, Q/DQ **only on the inputs of
  Conv/ConvTranspose/Gemm/MatMul**, biases left in FP32, every other op (LayerNorm, Softmax, GELU, residual
  adds) in FP32, as TensorRT's transformer recipes do. Attention's activation×activation MatMuls stay in
  float unless asked for (the ``@activation-matmul`` rule of :mod:`hpsedge.calib.graph`).
* the ONNX Runtime CPU flavour (``model.int8.cpu.onnx``), picked per graph by :func:`choose_cpu_flavor`:
  ``"ort-u8s8"`` (ONNX Runtime's own static recipe: asymmetric UINT8 activations, per-channel INT8 weights,
  INT32 biases, Q/DQ around every op type ONNX Runtime can quantize) for convolutional networks, and
  ``"ort-dynamic-s8"`` (INT8 MatMul/Gemm weights, activations quantized at run time) for transformers;
  ``"ort-u8s8-compute"`` (static u8s8 on Conv/Gemm/MatMul only) is there to be measured against them.
  None of these is of use to TensorRT, and the TensorRT flavour is slow on ONNX Runtime CPU, which runs its
  Q/DQ as float ops.

Calibration (``method``): ``max`` (min/max of every calibrated tensor), ``entropy`` (TensorRT's KL-divergence
threshold on a 2048-bin histogram with 255 quantized levels) or ``percentile`` (``percentile`` % of |x|,
99.99 by default). The ranges are computed by :mod:`hpsedge.calib.collect` (batches streamed, statistics
kept, activations dropped) and handed to ``quantize_static`` through its calibration cache: ``quantize_static`` itself builds its entropy calibrator with 128 bins and
128 quantized bins, which leaves a single candidate threshold, so its "entropy" equals min/max.

Excluded nodes (``exclude``, rules of :mod:`hpsedge.calib.graph`) are neither quantized nor fed by a
DequantizeLinear: after ``quantize_static`` a small pass rewires any consumer that must stay in float
(excluded nodes; in the TRT flavour every non-compute node) back to the un-quantized tensor.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.calib.graph import (
    COMPUTE_OPS,
    file_uses_external_data,
    load_model,
    name_unnamed_nodes,
    op_counts,
    select_nodes,
)
from hpsedge.calib.ort import model_bytes
from hpsedge.errors import ExportError, InputError

log = logging.getLogger(__name__)

METHODS = ("max", "entropy", "percentile")
FLAVORS = {"trt": "trt-s8s8", "ort": "ort-u8s8", "ort-compute": "ort-u8s8-compute", "ort-dynamic": "ort-dynamic-s8"}
#: percentile (99.99 %) gave the smallest pose drop on the tiny and full POCO graphs (the precision benchmark of
#: round one, since replaced by `hpsedge bench`; its figures are in the README)
DEFAULT_METHOD = "percentile"
DEFAULT_FLAVOR = "trt"
DEFAULT_PERCENTILE = 99.99
ENTROPY_BINS = 2048
ENTROPY_QUANT_BINS = 255
#: activation tensors fed to the calibrator per ONNX Runtime run
CALIB_BATCH = 8

def default_exclusions(model: str) -> list[str]:
    """The INT8 exclusions the registry declares for model ``model`` (``ModelSpec.int8_exclude``; heads stay
    in FP32), or the generic ``@output-tail`` for an unregistered one."""
    from hpsedge.models import registry

    spec = registry.lookup(model)
    return list(spec.int8_exclude if spec is not None else registry.GENERIC_INT8_EXCLUDE)


#: the CPU flavour for graphs whose weights sit mostly in MatMul/Gemm (transformers) and for the others
#: (convolutional networks); chosen by measurement on ONNX Runtime CPU: full-size TokenHMR, dynamic 3.2× FP32
#: at 1 person, 2.2× at 4, least drift (benchmarks/tokenhmr_precision.py); POCO, static u8s8 2.3–3.3×
#: (benchmarks/int8_folder.py)
CPU_FLAVOR_MATMUL = "ort-dynamic"
CPU_FLAVOR_CONV = "ort"


def weight_bytes_by_op(path: str | Path, exclude: Iterable[str] = ()) -> dict[str, int]:
    """Bytes of constant weights read by each op type, nodes selected by the ``exclude`` rules left out
    (from the graph structure; weights are not loaded)."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    name_unnamed_nodes(m)
    skip = {x for v in select_nodes(m, list(exclude)).values() for x in v}
    size = {onnx.TensorProto.FLOAT: 4, onnx.TensorProto.FLOAT16: 2}
    nbytes = {t.name: int(np.prod(t.dims)) * size.get(t.data_type, 1) for t in m.graph.initializer}
    out: dict[str, int] = {}
    for n in m.graph.node:
        if n.name in skip:
            continue
        for x in n.input:
            if x in nbytes:
                out[n.op_type] = out.get(n.op_type, 0) + nbytes[x]
    return out


def choose_cpu_flavor(path: str | Path, exclude: Iterable[str] = (), matmul: str = CPU_FLAVOR_MATMUL,
                      conv: str = CPU_FLAVOR_CONV) -> str:
    """The ONNX Runtime CPU flavour for the graph at ``path``, by a generic op-type rule: ``matmul`` when the
    weights INT8 will quantize (nodes not excluded) sit more in MatMul/Gemm than in Conv/ConvTranspose (a
    transformer), else ``conv`` (a convolutional network).

    A model spec can pass its own choice instead (``cpu_flavor`` of :func:`hpsedge.export.precision.apply_precision`).
    """
    w = weight_bytes_by_op(path, exclude)
    mm = w.get("MatMul", 0) + w.get("Gemm", 0)
    cv = w.get("Conv", 0) + w.get("ConvTranspose", 0)
    return matmul if mm > cv else conv


ProgressFn = Callable[[str], None]


@functools.lru_cache(maxsize=1)
def _has_cache() -> bool:
    """quantize_static takes precomputed ranges through ``calibration_cache_path`` (onnxruntime >= 1.27);
    older versions get them as TensorQuantOverrides (rmin/rmax per tensor)."""
    import inspect

    from onnxruntime.quantization import quantize_static

    return "calibration_cache_path" in inspect.signature(quantize_static).parameters


@dataclass
class QuantResult:
    path: Path
    method: str
    flavor: str
    excluded_nodes: list[str]
    quantized_nodes: list[str]
    qdq: dict[str, int]
    calib_samples: int
    seconds: float
    external_data: bool

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "qdq_flavor": self.flavor,
            "quantized_nodes": len(self.quantized_nodes),
            "excluded_nodes": len(self.excluded_nodes),
            "qdq_nodes": self.qdq,
            "calib_samples": self.calib_samples,
            "seconds": round(self.seconds, 2),
            "external_data": self.external_data,
        }


class _Reader:
    """``CalibrationDataReader`` over dict-of-arrays calibration data, in person batches."""

    def __init__(self, feeds: Mapping[str, np.ndarray], batch: int, progress: ProgressFn | None = None) -> None:
        self.feeds = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in feeds.items()}
        self.n = len(next(iter(self.feeds.values())))
        self.batch = max(1, batch)
        self.i = 0
        self.progress = progress

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= self.n:
            return None
        s = self.i
        self.i += self.batch
        if self.progress:
            self.progress(f"calibrating ({min(self.i, self.n)}/{self.n})")
        return {k: v[s : s + self.batch] for k, v in self.feeds.items()}

    def __iter__(self) -> _Reader:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        r = self.get_next()
        if r is None:
            raise StopIteration
        return r

    def __len__(self) -> int:
        return (self.n + self.batch - 1) // self.batch

    def rewind(self) -> None:
        self.i = 0


def fold_initializer_identities(model: Any) -> int:
    """Replace ``Identity(initializer)`` nodes by a copy of the initializer under the output name.

    The TorchScript exporter shares equal constants (often zero conv biases) through Identity nodes, which
    ONNX Runtime's quantizer cannot see through ("Expected bias ... to be an initializer").
    """
    inits = {t.name: t for t in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    keep = []
    folded = 0
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in outputs:
            t = type(inits[node.input[0]])()
            t.CopyFrom(inits[node.input[0]])
            t.name = node.output[0]
            model.graph.initializer.append(t)
            folded += 1
        else:
            keep.append(node)
    if folded:
        del model.graph.node[:]
        model.graph.node.extend(keep)
    return folded


def prepare_model(model: Any) -> Any:
    """In-place clean-up before quantization or FP16 conversion: names for all nodes, no Identity(const)."""
    name_unnamed_nodes(model)
    fold_initializer_identities(model)
    return model


def restrict_qdq(model: Any, float_consumers: Callable[[Any], bool]) -> int:
    """Rewire consumers of activation DequantizeLinear outputs for which ``float_consumers(node)`` is true
    back to the float tensor, and drop Q/DQ pairs nobody reads any more. Returns the number of rewired inputs.

    Handles ONNX Runtime's renaming of quantized graph outputs (the producer writes ``X_QuantizeInput`` and the
    DequantizeLinear writes ``X``): such outputs are given back to the float producer.
    """
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    graph_outputs = {o.name for o in graph.output}
    producer = {o: n for n in graph.node for o in n.output}

    def rename_everywhere(old: str, new: str) -> None:
        for n in graph.node:
            for i, x in enumerate(n.input):
                if x == old:
                    n.input[i] = new
            for i, x in enumerate(n.output):
                if x == old:
                    n.output[i] = new

    # 1. graph outputs written by a DequantizeLinear go back to the float producer
    for dq in [n for n in graph.node if n.op_type == "DequantizeLinear"]:
        out = dq.output[0]
        q = producer.get(dq.input[0])
        if out in graph_outputs and q is not None and q.op_type == "QuantizeLinear":
            src = q.input[0]
            tmp = out + "_hpsedge_dq"
            for n in graph.node:
                if n is not dq:
                    for i, x in enumerate(n.input):
                        if x == out:
                            n.input[i] = tmp
            dq.output[0] = tmp
            rename_everywhere(src, out)
    producer = {o: n for n in graph.node for o in n.output}

    # 2. rewire float consumers
    rewired = 0
    for dq in [n for n in graph.node if n.op_type == "DequantizeLinear"]:
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] in inits:
            continue  # a weight (constant) DQ, or a pre-quantized input
        src, out = q.input[0], dq.output[0]
        for n in graph.node:
            if n is dq or n.op_type in ("QuantizeLinear", "DequantizeLinear") or not float_consumers(n):
                continue
            for i, x in enumerate(n.input):
                if x == out:
                    n.input[i] = src
                    rewired += 1

    # 3. drop dead Q/DQ nodes (repeat: a dead DQ can make its Q dead)
    changed = True
    while changed:
        used = {x for n in graph.node for x in n.input} | graph_outputs
        keep = [n for n in graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear") or n.output[0] in used]
        changed = len(keep) != len(graph.node)
        if changed:
            del graph.node[:]
            graph.node.extend(keep)
    used = {x for n in graph.node for x in n.input}
    keep_init = [t for t in graph.initializer if t.name in used or t.name in graph_outputs]
    if len(keep_init) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(keep_init)
    return rewired


def qdq_inputs(model: Any) -> dict[str, list[int]]:
    """Node name → indices of its inputs that come from a DequantizeLinear."""
    dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    out: dict[str, list[int]] = {}
    for n in model.graph.node:
        idx = [i for i, x in enumerate(n.input) if x in dq_out]
        if idx:
            out[n.name] = idx
    return out


def check_calibration_feeds(feeds: Mapping[str, np.ndarray], model: Any) -> int:
    """Calibration arrays must match the graph's inputs (names, ranks, fixed dims); returns N."""
    import onnx

    inits = {t.name for t in model.graph.initializer}
    wanted = [i for i in model.graph.input if i.name not in inits]
    names = {i.name for i in wanted}
    if set(feeds) != names:
        raise InputError(
            f"calibration data has inputs {sorted(feeds)} but the graph takes {sorted(names)}",
            hint="make the calibration set for this model with `hpsedge calib make --model-dir ...`",
        )
    n = None
    for vi in wanted:
        arr = feeds[vi.name]
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        # a graph with a fixed batch of 1 (a person detector) is calibrated one sample at a time (batch=1)
        fixed = [None if i == 0 and d == 1 else d for i, d in enumerate(dims)]
        if arr.ndim != len(dims) or any(d is not None and d != s for d, s in zip(fixed, arr.shape, strict=True)):
            raise InputError(
                f"calibration input '{vi.name}' has shape {list(arr.shape)}; the graph wants "
                f"{['N' if d is None else d for d in dims]}",
                hint="the calibration set was made for another model or input size",
            )
        if vi.type.tensor_type.elem_type != onnx.TensorProto.FLOAT or arr.dtype != np.float32:
            raise InputError(f"calibration input '{vi.name}' must be float32, got {arr.dtype}")
        if n is not None and arr.shape[0] != n:
            raise InputError("calibration inputs have different sample counts")
        n = arr.shape[0]
    if not n:
        raise InputError("the calibration set is empty")
    return int(n)


def quantize_int8(
    src: str | Path,
    dst: str | Path,
    calib: Mapping[str, np.ndarray],
    *,
    method: str = DEFAULT_METHOD,
    exclude: Iterable[str] = (),
    flavor: str = DEFAULT_FLAVOR,
    percentile: float = DEFAULT_PERCENTILE,
    batch: int = CALIB_BATCH,
    progress: ProgressFn | None = None,
) -> QuantResult:
    """Quantize the FP32 graph ``src`` into ``dst`` (explicit Q/DQ) from calibration arrays keyed by input name."""
    return quantize_int8_flavors(src, {flavor: dst}, calib, method=method, exclude=exclude, percentile=percentile,
                                 batch=batch, progress=progress)[flavor]


def _op_types(flavor: str) -> list[str] | None:
    """Op types a flavour quantizes (None: every op type ONNX Runtime's QDQ quantizer knows)."""
    return None if flavor == "ort" else sorted(COMPUTE_OPS)


def quantize_int8_flavors(
    src: str | Path,
    outputs: Mapping[str, str | Path],
    calib: Mapping[str, np.ndarray] | None,
    *,
    method: str = DEFAULT_METHOD,
    exclude: Iterable[str] = (),
    percentile: float = DEFAULT_PERCENTILE,
    batch: int = CALIB_BATCH,
    progress: ProgressFn | None = None,
) -> dict[str, QuantResult]:
    """Quantize ``src`` once per flavour (``outputs``: flavour → file), all from **one** set of activation ranges.

    Flavours: ``trt`` (symmetric s8s8 on Conv/Gemm/MatMul inputs), ``ort`` (ONNX Runtime's u8s8 CPU recipe,
    every quantizable op), ``ort-compute`` (u8s8 on Conv/Gemm/MatMul only), ``ort-dynamic`` (weights of
    MatMul/Gemm in INT8, activations quantized at run time: no calibration). The calibration batches are
    streamed (:mod:`hpsedge.calib.collect`): memory holds statistics, not activations.
    """
    from hpsedge.calib.collect import collect_ranges

    step = progress or (lambda _m: None)
    if method not in METHODS:
        raise ExportError(f"unknown calibration method {method!r} (choose from {', '.join(METHODS)})")
    for flavor in outputs:
        if flavor not in FLAVORS:
            raise ExportError(f"unknown INT8 flavour {flavor!r} (choose from {', '.join(FLAVORS)})")
    t0 = time.perf_counter()
    src = Path(src)
    external = file_uses_external_data(src)
    model = prepare_model(onnx_load_structure(src, external))
    if not external and model_bytes(model) > (1 << 31) - (1 << 26):
        external = True
    static = [f for f in outputs if f != "ort-dynamic"]
    n = check_calibration_feeds(calib, model) if static else (len(next(iter(calib.values()))) if calib else 0)
    rules = list(exclude)
    excluded_set = {x for v in select_nodes(model, rules).values() for x in v}
    # a MatMul with a constant weight of rank > 2 (PARE's per-joint pose MLP) gets per-channel scales of a shape
    # ONNX Runtime's integer MatMul rejects ("b zero point is not valid"): keep such nodes in float
    dims = {t.name: len(t.dims) for t in model.graph.initializer}
    batched = sorted(nd.name for nd in model.graph.node
                     if nd.op_type == "MatMul" and dims.get(nd.input[1], 0) > 2 and nd.name not in excluded_set)
    if batched:
        log.info("kept in float (batched MatMul, weight rank > 2): %s", ", ".join(batched))
        excluded_set.update(batched)
    excluded = sorted(excluded_set)
    candidates = [nd.name for nd in model.graph.node if nd.op_type in COMPUTE_OPS and nd.name not in excluded_set]
    if not candidates:
        raise ExportError("every Conv/Gemm/MatMul is excluded from INT8; nothing to quantize",
                          hint="loosen --exclude-int8")
    first = Path(next(iter(outputs.values())))
    results: dict[str, QuantResult] = {}
    with tempfile.TemporaryDirectory(prefix="hpsedge-int8-", dir=first.parent) as tmp_s:
        tmp = Path(tmp_s)
        # the prepared graph (named nodes, no Identity(constant)) is written beside its weights: with external
        # data only the small graph is rewritten, the weights stay in the source's .data file
        prepared = _write_prepared(model, src, tmp, external)
        try:
            del model
            ranges: dict[str, tuple[float, float]] = {}
            facts: dict[str, Any] = {}
            if static:
                assert calib is not None
                union: set[str] | None = set()
                for f in static:
                    ops = _op_types(f)
                    union = None if ops is None or union is None else union | set(ops)
                step(f"calibrating ({method}) on {n} samples")
                ranges, facts = collect_ranges(prepared, calib, op_types=union, method=method, percentile=percentile,
                                               max_batch=batch, progress=step)
                log.info("calibration: %d tensors, %d runs (batch %d)", facts["tensors"], facts["runs"], facts["batch"])
            for flavor, dst in outputs.items():
                step(f"INT8 graph, {FLAVORS[flavor]} flavour")
                q_path = tmp / f"q-{flavor}.onnx"
                if flavor == "ort-dynamic":
                    _quantize_dynamic(prepared, q_path, excluded, external)
                else:
                    _quantize_static(prepared, q_path, ranges, flavor, excluded, external, tmp, calib)
                results[flavor] = _finish(q_path, Path(dst), flavor, excluded_set, excluded, method, n, t0, external)
        finally:
            if prepared.parent != tmp:  # the graph written beside the source weights
                prepared.unlink(missing_ok=True)
    return results


def onnx_load_structure(src: Path, external: bool) -> Any:
    """The graph at ``src``: without weights when they are external (structure is all the passes read)."""
    import onnx

    return onnx.load(str(src), load_external_data=False) if external else load_model(src)


def _write_prepared(model: Any, src: Path, tmp: Path, external: bool) -> Path:
    import onnx

    if external and file_uses_external_data(src):
        p = src.with_name(f".{tmp.name}-prepared.onnx")  # beside the .data file its initializers point to
        onnx.save_model(model, str(p))
        return p
    p = tmp / "prepared.onnx"
    onnx.save_model(model, str(p), save_as_external_data=external, location="prepared.onnx.data" if external else None)
    return p


def _quantize_static(prepared: Path, out: Path, ranges: Mapping[str, tuple[float, float]], flavor: str,
                     excluded: list[str], external: bool, tmp: Path,
                     calib: Mapping[str, np.ndarray] | None = None) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    trt = flavor == "trt"
    extra: dict[str, Any] = {"ActivationSymmetric": trt, "WeightSymmetric": True, "QuantizeBias": not trt}
    if _has_cache():
        # our ranges reach quantize_static through its calibration cache (onnxruntime >= 1.27)
        from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

        cache = tmp / "ranges.json"
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, {
            k: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for k, (lo, hi) in ranges.items()
        }), cache)
        cache_kw: dict[str, Any] = {"calibration_cache_path": cache, "calibrate_method": CalibrationMethod.MinMax}
        reader = None
    else:
        # older onnxruntime: a quick min/max pass satisfies quantize_static, our ranges override it
        extra["TensorQuantOverrides"] = {
            k: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}] for k, (lo, hi) in ranges.items()
        }
        cache_kw = {"calibrate_method": CalibrationMethod.MinMax}
        reader = _Reader(calib, CALIB_BATCH) if calib is not None else None
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # quantize_static logs "consider pre-processing" at WARNING
    try:
        quantize_static(
            prepared, out, reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=_op_types(flavor),
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QInt8 if trt else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            use_external_data_format=external,
            extra_options=extra,
            **cache_kw,
        )
    except MemoryError:
        raise
    except Exception as exc:
        raise ExportError(f"INT8 quantization failed: {exc.__class__.__name__}: {str(exc).splitlines()[0][:300]}") from None
    finally:
        root.setLevel(level)


def _quantize_dynamic(prepared: Path, out: Path, excluded: list[str], external: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        quantize_dynamic(prepared, out, op_types_to_quantize=["MatMul", "Gemm"], per_channel=False,
                         reduce_range=False, weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                         use_external_data_format=external)
    except MemoryError:
        raise
    except Exception as exc:
        raise ExportError(f"dynamic INT8 quantization failed: {exc.__class__.__name__}: "
                          f"{str(exc).splitlines()[0][:300]}") from None
    finally:
        root.setLevel(level)


def _finish(q_path: Path, dst: Path, flavor: str, excluded_set: set[str], excluded: list[str], method: str, n: int,
            t0: float, external: bool) -> QuantResult:
    """Restrict the Q/DQ placement to the flavour's rules and move the graph (and its weights) to ``dst``."""
    import onnx

    q = onnx.load(str(q_path), load_external_data=False)
    if flavor == "trt":
        restrict_qdq(q, lambda nd: nd.op_type not in COMPUTE_OPS or nd.name in excluded_set)
    elif flavor != "ort-dynamic":
        restrict_qdq(q, lambda nd: nd.name in excluded_set)
    bad = sorted(set(qdq_inputs(q)) & excluded_set)
    if bad:  # pragma: no cover - guarded by restrict_qdq
        raise ExportError(f"excluded nodes still read quantized tensors: {', '.join(bad[:5])}")
    if flavor == "ort-dynamic":
        quantized = sorted(nd.name for nd in q.graph.node if nd.op_type in ("MatMulInteger", "DynamicQuantizeMatMul",
                                                                             "MatMulIntegerToFloat"))
    else:
        qd = set(qdq_inputs(q))
        quantized = sorted(nd.name for nd in q.graph.node if nd.op_type in COMPUTE_OPS and nd.name in qd)
    counts = op_counts(q)
    qdq = {"QuantizeLinear": counts.get("QuantizeLinear", 0), "DequantizeLinear": counts.get("DequantizeLinear", 0)}
    if not quantized:
        raise ExportError("the quantizer inserted no Q/DQ nodes (is every Conv/Gemm/MatMul excluded?)")
    q.producer_name = "hpsedge"
    move_model(q, q_path, dst)
    return QuantResult(
        path=dst, method="dynamic" if flavor == "ort-dynamic" else method, flavor=FLAVORS[flavor],
        excluded_nodes=excluded, quantized_nodes=quantized, qdq=qdq, calib_samples=0 if flavor == "ort-dynamic" else n,
        seconds=time.perf_counter() - t0, external_data=_uses_external(q),
    )


def _uses_external(model: Any) -> bool:
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    return any(uses_external_data(t) for t in _get_all_tensors(model))


def move_model(model: Any, src_path: Path, dst: Path) -> None:
    """Save the structure ``model`` (loaded from ``src_path`` without its weights) as ``dst``.

    External weights are moved, not re-serialised: the ``.data`` file is renamed to ``<dst>.data`` and the
    initializers' locations rewritten. A graph with inline weights is loaded and saved normally.
    """
    import os

    import onnx
    from onnx.external_data_helper import _get_all_tensors

    # every tensor: initializers and Constant-node attributes (savers move large ones out too)
    ext = [t for t in _get_all_tensors(model) if t.data_location == onnx.TensorProto.EXTERNAL]
    locs = {e.value for t in ext for e in t.external_data if e.key == "location"}
    if not ext:
        onnx.save_model(model, str(dst))
        return
    if len(locs) != 1:
        # several data files: load everything and save as one (rare; small graphs)
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, str(src_path.parent))
        save_model(model, dst, True)
        return
    data_src = src_path.parent / next(iter(locs))
    data_dst = dst.with_name(dst.name + ".data")
    os.replace(data_src, data_dst)
    _default_mode(data_dst)
    for t in ext:
        for e in t.external_data:
            if e.key == "location":
                e.value = data_dst.name
    onnx.save_model(model, str(dst))


def save_model(model: Any, path: Path, external: bool) -> None:
    """Save ``model``; with ``external`` the weights go to ``<name>.data`` beside it (graphs > 2 GB)."""
    import onnx

    if external:
        data = path.with_name(path.name + ".data")
        if data.exists():
            data.unlink()
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=1024)
        _default_mode(data)
    else:
        onnx.save_model(model, str(path))


def _default_mode(path: Path) -> None:
    """Give a weights file the mode a plain new file gets (onnx writes external data as 0600), so a build
    folder copied to the device or shared stays readable like its graph."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
