"""Precision in the graph: FP16 (casts + FP16 weights) and INT8 (explicit Q/DQ), plus the accuracy-drop report.

TensorRT 11 builds only strongly typed networks (and TensorRT 10 builds them too), so the precision is written
into the ONNX graph and everything here can be checked with ONNX Runtime on a CPU.

FP16 (``model.fp16.onnx``): ONNX Runtime's float16 converter (``onnxruntime.transformers.float16``, the
maintained copy of onnxconverter-common's, shipped inside the ``onnxruntime`` wheel) with FP32 graph inputs and
outputs and a node block list: the model's keep-list (``ModelSpec.fp16_keep`` in the registry, rules of
:mod:`hpsedge.calib.graph`), nodes reading initializers beyond the FP16 range, and every node whose FP32
activations exceed :data:`FP16_DATA_MAX` on the calibration (or random) inputs, together with the consumers of
those activations. The converter's Cast chains between neighbouring FP32 nodes (``fp32→fp16→fp32``, which
would round an FP32 tensor through FP16) and duplicate casts are folded afterwards, and the result must pass
strict ONNX shape inference with a type for every tensor.

INT8: :func:`hpsedge.calib.quantize.quantize_int8_flavors` from a calibration set (``hpsedge calib make``),
heads excluded by default; one calibration pass gives both ``model.int8.onnx`` (TensorRT flavour) and
``model.int8.cpu.onnx`` (ONNX Runtime CPU flavour, chosen per graph by a generic op-type rule), each with its
own accuracy figures in the report and its ``serves`` list in the manifest.

Graphs above 2 GB (TokenHMR's ViT-H) go through every step: structure-only loads, shape inference on the
file or the weightless structure, range checks and calibration run from the graph's own folder.

Entry point: :func:`apply_precision`, called inside the export's temporary folder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.calib import quantize as q8
from hpsedge.calib.graph import (
    ACTIVATION_MATMUL,
    file_uses_external_data,
    has_external_data,
    inferred_graph,
    intermediate_absmax,
    op_counts,
    select_nodes,
    topo_sort,
)
from hpsedge.calib.ort import model_bytes
from hpsedge.calib.report import accuracy_report, check_thresholds, summary, write_report
from hpsedge.errors import ExportError, InputError
from hpsedge.models import registry
from hpsedge.runtime.folder import Precision
from hpsedge.runtime.manifest import sha256_file, validate_manifest

log = logging.getLogger(__name__)

PRECISIONS = Precision.names()  # the one list (hpsedge.runtime.folder.Precision)
#: the INT8 folder's second graph: the ONNX Runtime CPU flavour (manifest key / file name)
CPU_INT8_KEY = "onnx_int8_cpu"
CPU_INT8_NAME = "model.int8.cpu.onnx"
ProgressFn = Callable[[str], None]

#: FP16 keeps these op types in FP32 everywhere: softmax and normalisation reductions (each spec's keep-list
#: includes them; the per-model lists live in the model registry, ``ModelSpec.fp16_keep``)
FP16_KEEP_OPS = registry.FP16_KEEP_OPS
#: activations above this (|x|, FP32 run) keep their node and its consumers in FP32 (FP16 max is 65504;
#: the margin covers inputs the check did not see)
FP16_DATA_MAX = 8192.0
FP16_MAX = 65504.0
#: samples used for the FP16 range check / the report (at most)
RANGE_SAMPLES = 32
REPORT_SAMPLES = 64
RANDOM_SAMPLES = 16
#: range-check crops for graphs above 2 GB without a calibration set
RANGE_SAMPLES_LARGE = 4
#: interleaved latency repetitions in the report (graphs above 2 GB: fewer)
LATENCY_REPS = 10
LATENCY_REPS_LARGE = 3


def default_keep_fp32(model: str) -> list[str]:
    """The FP16 keep-list the registry declares for model ``model`` (generic rules for an unregistered one)."""
    spec = registry.lookup(model)
    return list(spec.fp16_keep if spec is not None else registry.GENERIC_FP16_KEEP)


def default_exclude_int8(model: str) -> list[str]:
    return q8.default_exclusions(model)


# ---------------------------------------------------------------------------------------------------
# graph clean-up and checks
# ---------------------------------------------------------------------------------------------------
def _tensor_types(model: Any) -> dict[str, int]:
    types: dict[str, int] = {}
    g = model.graph
    for vi in (*g.input, *g.output, *g.value_info):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for t in g.initializer:
        types[t.name] = t.data_type
    for n in g.node:
        if n.op_type == "Cast":
            types[n.output[0]] = next(a.i for a in n.attribute if a.name == "to")
        elif n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    types[n.output[0]] = a.t.data_type
    return types


def _cast_to(node: Any) -> int:
    return next(a.i for a in node.attribute if a.name == "to")


def fold_casts(model: Any) -> dict[str, int]:
    """Remove cast round trips (``Cast(Cast(x))`` back to x's type), casts to x's own type and duplicate casts.

    A round trip through a narrower type is dropped on purpose: it sits between two nodes that are both kept
    in FP32, and rounding their tensor through FP16 is what the keep-list is there to avoid.
    """
    g = model.graph
    outputs = {o.name for o in g.output}
    inputs = {i.name for i in g.input}
    stats = {"round_trips": 0, "no_ops": 0, "duplicates": 0, "dead": 0}

    def replace_uses(old: str, new: str) -> None:
        for n in g.node:
            for i, x in enumerate(n.input):
                if x == old:
                    n.input[i] = new

    changed = True
    while changed:
        changed = False
        types = _tensor_types(model)
        producer = {o: n for n in g.node for o in n.output}
        seen: dict[tuple[str, int], Any] = {}
        for node in list(g.node):
            if node.op_type != "Cast":
                continue
            src = node.input[0]
            to = _cast_to(node)
            target = None
            prev = producer.get(src)
            if types.get(src) == to:
                target, key = src, "no_ops"
            elif prev is not None and prev.op_type == "Cast" and types.get(prev.input[0]) == to:
                target, key = prev.input[0], "round_trips"
            elif (src, to) in seen:
                target, key = seen[(src, to)].output[0], "duplicates"
            else:
                seen[(src, to)] = node
                continue
            out = node.output[0]
            if out in outputs:
                if target in inputs or target in outputs:
                    continue  # keep a Cast that carries a graph output written elsewhere (rare; harmless)
                # the graph output takes the target's place: rename target → out everywhere
                for n in g.node:
                    for i, x in enumerate(n.output):
                        if x == target:
                            n.output[i] = out
                    for i, x in enumerate(n.input):
                        if x == target:
                            n.input[i] = out
                for vi in g.value_info:
                    if vi.name == target:
                        vi.name = out + "_hpsedge_renamed"
            else:
                replace_uses(out, target)
            g.node.remove(node)
            stats[key] += 1
            changed = True
            break
    # dead casts
    while True:
        used = {x for n in g.node for x in n.input} | outputs
        dead = [n for n in g.node if n.op_type == "Cast" and n.output[0] not in used]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
            stats["dead"] += 1
    names = {x for n in g.node for x in (*n.input, *n.output)} | inputs | outputs
    keep_vi = [vi for vi in g.value_info if vi.name in names]
    del g.value_info[:]
    g.value_info.extend(keep_vi)
    return stats


def cast_round_trips(model: Any) -> int:
    """Number of ``Cast(Cast(x))`` pairs that return to x's type (0 in a clean graph)."""
    types = _tensor_types(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    count = 0
    for n in model.graph.node:
        if n.op_type == "Cast":
            prev = producer.get(n.input[0])
            if prev is not None and prev.op_type == "Cast" and types.get(prev.input[0]) == _cast_to(n):
                count += 1
    return count


def check_strongly_typed(model: Any, path: Path | None = None) -> dict[str, Any]:
    """Strict ONNX shape/type inference; every node output must get an element type. Raises ExportError."""
    import onnx

    try:
        if path is not None and (has_external_data(model) or model_bytes(model) > (1 << 30)):
            out = path.with_name(path.stem + ".inferred.onnx")
            onnx.shape_inference.infer_shapes_path(str(path), str(out), check_type=True, strict_mode=True)
            inferred = onnx.load(str(out), load_external_data=False)
            out.unlink()
        else:
            inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:
        raise ExportError(f"the converted graph fails strict type inference: {str(exc).splitlines()[0][:300]}") from None
    types = _tensor_types(inferred)
    untyped = [o for n in inferred.graph.node for o in n.output if o and not types.get(o)]
    if untyped:
        raise ExportError(f"{len(untyped)} tensor(s) of the converted graph have no inferred type (e.g. {untyped[0]})")
    loops = cast_round_trips(inferred)
    if loops:
        raise ExportError(f"the converted graph still has {loops} Cast round trip(s)")
    return {"typed_tensors": len(types), "cast_round_trips": 0}


# ---------------------------------------------------------------------------------------------------
# FP16
# ---------------------------------------------------------------------------------------------------
def _consumers(model: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n in model.graph.node:
        for x in n.input:
            out.setdefault(x, []).append(n.name)
    return out


def big_initializer_nodes(model: Any, limit: float = FP16_MAX) -> list[str]:
    """Nodes reading a float initializer with values beyond the FP16 range (the converter would clamp them)."""
    import onnx
    from onnx import numpy_helper

    big = set()
    for t in model.graph.initializer:
        if t.data_type == onnx.TensorProto.FLOAT and t.raw_data is not None:
            a = numpy_helper.to_array(t)
            if a.size and float(np.max(np.abs(a))) > limit:
                big.add(t.name)
    return [n.name for n in model.graph.node if any(x in big for x in n.input)]


def convert_fp16(
    src: str | Path,
    dst: str | Path,
    *,
    keep_fp32: Iterable[str],
    range_feeds: Sequence[Mapping[str, np.ndarray]] = (),
    data_max: float = FP16_DATA_MAX,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """FP32 graph ``src`` → FP16 graph ``dst`` with FP32 I/O; returns what was kept in FP32 and why."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    step = progress or (lambda _m: None)
    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    ext_file = file_uses_external_data(src)
    # a graph with external weights is read as structure first: the range check runs from the file, and the
    # weights are loaded only for the conversion itself (one copy in memory at a time)
    model = q8.prepare_model(q8.onnx_load_structure(src, ext_file))
    external = ext_file or model_bytes(model) > (1 << 31) - (1 << 26)
    rules = list(keep_fp32)
    by_rule = select_nodes(model, rules)
    block = {x for v in by_rule.values() for x in v}
    overflow: dict[str, float] = {}
    if range_feeds:
        step("checking FP32 activation ranges")
        peaks = intermediate_absmax(model, iter(range_feeds), path=src if ext_file else None)
        over = {k: v for k, v in peaks.items() if not v <= data_max}
        cons = _consumers(model)
        outs = {n.name: list(n.output) for n in model.graph.node}
        for name, peak in over.items():
            overflow[name] = float(peak)
            block.add(name)
            for o in outs.get(name, []):
                block.update(cons.get(o, []))
    if ext_file:
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, str(src.parent))
    big_init = big_initializer_nodes(model)
    block.update(big_init)
    step(f"converting to FP16 ({len(block)} nodes kept in FP32)")
    if external:
        # types for the converter from shape inference on the weightless structure (no > 2 GB protobuf)
        inferred = inferred_graph(model)
        have = {vi.name for vi in model.graph.value_info}
        model.graph.value_info.extend(vi for vi in inferred.graph.value_info if vi.name not in have)
        del inferred
        m16 = convert_float_to_float16(model, keep_io_types=True, node_block_list=sorted(block),
                                       disable_shape_infer=True)
    else:
        m16 = convert_float_to_float16(model, keep_io_types=True, node_block_list=sorted(block))
    del model
    topo_sort(m16)
    folded = fold_casts(m16)
    m16.producer_name = "hpsedge"
    q8.save_model(m16, dst, external)
    typing = check_strongly_typed(m16, dst)
    try:  # a path lets the checker handle graphs above 2 GB (it never builds one protobuf of the weights)
        onnx.checker.check_model(str(dst) if external else m16, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the FP16 graph is not valid ONNX: {str(exc).splitlines()[0]}") from None
    ops = op_counts(m16)
    return {
        "converter": "onnxruntime.transformers.float16.convert_float_to_float16 (keep_io_types)",
        "keep_fp32": rules,
        "kept_by_rule": {k: len(v) for k, v in by_rule.items()},
        "kept_nodes": len(block),
        "big_initializer_nodes": big_init,
        "overflow_nodes": dict(sorted(overflow.items(), key=lambda kv: -kv[1])[:50]),
        "overflow_node_count": len(overflow),
        "data_max": data_max,
        "range_check_samples": int(sum(len(next(iter(f.values()))) for f in range_feeds)),
        "casts": ops.get("Cast", 0),
        "folded_casts": folded,
        "typing": typing,
        "external_data": external,
        "seconds": round(time.perf_counter() - t0, 2),
    }


# ---------------------------------------------------------------------------------------------------
# inputs for checks and reports
# ---------------------------------------------------------------------------------------------------
def random_feeds(manifest: Mapping[str, Any], n: int = RANDOM_SAMPLES, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random inputs shaped like the manifest's: normalised-image-like values, plausible bbox_info."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for d in manifest["inputs"]:
        shape = [n if isinstance(s, str) else int(s) for s in d["shape"]]
        a = rng.standard_normal(shape).astype(np.float32)
        if d["name"] == "bbox_info":
            a *= np.array([0.3, 0.3, 1.0], dtype=np.float32)
        feeds[d["name"]] = a
    return feeds


def _take(feeds: Mapping[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v[idx]) for k, v in feeds.items()}


def _chunks(feeds: Mapping[str, np.ndarray], size: int) -> list[dict[str, np.ndarray]]:
    n = len(next(iter(feeds.values())))
    return [{k: v[s : s + size] for k, v in feeds.items()} for s in range(0, n, size)]


# ---------------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------------
def apply_precision(
    folder: Path,
    manifest: dict[str, Any],
    precision: str,
    *,
    calib: Path | None = None,
    method: str = q8.DEFAULT_METHOD,
    keep_fp32: list[str] | None = None,
    exclude_int8: list[str] | None = None,
    max_drop_deg: float | None = None,
    min_sigma_rank_corr: float | None = None,
    smpl: Path | None = None,
    progress: ProgressFn | None = None,
    flavor: str = "both",
    cpu_flavor: str = "auto",
    quantize_activation_matmul: bool = False,
    percentile: float = q8.DEFAULT_PERCENTILE,
    data_max: float = FP16_DATA_MAX,
    latency_batch: int = 1,
    latency_reps: int | None = None,
    report_samples: int = REPORT_SAMPLES,
    threads: int | None = None,
) -> dict[str, Any]:
    """Write ``model.<precision>.onnx``, ``report.json`` and ``report.md`` into ``folder``; update ``manifest``.

    ``folder`` holds the FP32 ``model.onnx`` named by ``manifest["artifacts"]["onnx"]``. Returns the report
    (``{}`` for ``"fp32"``, which changes nothing). Raises :class:`ExportError` when an enforced threshold
    (``max_drop_deg``: the worst joint's mean geodesic error in degrees; ``min_sigma_rank_corr``: Spearman ρ
    of the per-person σ score) is not met, and for INT8 without a calibration set.
    """
    step = progress or (lambda _m: None)
    precision = Precision.parse(precision, "precision", error=ExportError).value
    if precision == "fp32":
        manifest["precision"] = "fp32"
        return {}
    folder = Path(folder)
    fp32 = folder / manifest["artifacts"]["onnx"]["file"]
    model_name = str(manifest["model"]["name"])
    # the σ score rule the report compares (None: no σ); accepted by calib.report as its "family" argument
    sigma_rule = manifest.get("postprocessing", {}).get("sigma_score") or manifest["model"].get("sigma_score")
    random_weights = bool(manifest.get("checkpoint", {}).get("random_init", False))
    if precision == "int8" and calib is None:
        raise ExportError(
            "INT8 needs a calibration set",
            hint="make one with `hpsedge calib make --model-dir <fp32 export> --images DIR --out calib.npz` "
            "and pass --calib calib.npz",
        )
    data: dict[str, np.ndarray] | None = None
    calib_info: dict[str, Any] | None = None
    if calib is not None:
        from hpsedge.calib.sets import load_calibration_set

        data = load_calibration_set(calib, manifest)
        calib_info = {"file": Path(calib).name, "sha256": sha256_file(calib), "samples": len(data["image"])}
    out = folder / Precision(precision).graph_name
    config: dict[str, Any] = {"precision": precision, "source": fp32.name}

    if precision == "fp16":
        rules = list(keep_fp32) if keep_fp32 is not None else default_keep_fp32(model_name)
        if data is not None:
            n = len(data["image"])
            range_src = _take(data, np.arange(min(n, RANGE_SAMPLES)))
            report_feeds = _take(data, np.arange(min(n, report_samples)))
            source = f"calibration set {calib_info['file']} (first {len(report_feeds['image'])} samples)"  # type: ignore[index]
        else:
            # a graph above 2 GB (ViT-H) runs its range check on fewer random crops: each exposes ≈ 1 GB of
            # activations and takes seconds on a CPU
            big = file_uses_external_data(fp32)
            range_src = random_feeds(manifest, RANGE_SAMPLES_LARGE if big else RANDOM_SAMPLES, seed=1)
            report_feeds = random_feeds(manifest, RANDOM_SAMPLES, seed=0)
            source = f"seeded random inputs (N={RANDOM_SAMPLES}, seed 0)"
        info = convert_fp16(fp32, out, keep_fp32=rules, range_feeds=_chunks(range_src, 1 if file_uses_external_data(fp32) else 4), data_max=data_max,
                            progress=step)
        config.update(info)
        art_extra: dict[str, Any] = {}
    else:
        assert data is not None and calib_info is not None
        rules = list(exclude_int8) if exclude_int8 is not None else default_exclude_int8(model_name)
        n = len(data["image"])
        perm = np.random.default_rng(0).permutation(n)
        hold = min(report_samples, max(1, n // 5)) if n >= 5 else 0
        if hold:
            cal_idx, test_idx = np.sort(perm[hold:]), np.sort(perm[:hold])
            source = f"{hold} held-out samples of calibration set {calib_info['file']} (calibrated on the other {n - hold})"
        else:
            cal_idx = test_idx = np.arange(n)
            source = f"the {n} calibration samples of {calib_info['file']} (too few to hold any out)"
            log.warning("calibration set has only %d samples; the report reuses them (none held out)", n)
        calib_info.update(calibrated_on=len(cal_idx), held_out=int(hold))
        if not quantize_activation_matmul and ACTIVATION_MATMUL not in rules:
            rules.append(ACTIVATION_MATMUL)
        cpu = q8.choose_cpu_flavor(fp32, rules) if cpu_flavor == "auto" else cpu_flavor
        if flavor in ("both", "trt"):
            targets = {"trt": out}
            if flavor == "both":
                targets[cpu] = folder / CPU_INT8_NAME
        else:
            targets = {flavor: out}
        results = q8.quantize_int8_flavors(fp32, targets, _take(data, cal_idx), method=method, exclude=rules,
                                           percentile=percentile, progress=step)
        res = results[next(iter(targets))]
        report_feeds = _take(data, test_idx)
        config.update(
            quantizer="onnxruntime.quantization.quantize_static (QDQ)",
            method=method,
            percentile=percentile if method == "percentile" else None,
            qdq_flavor=res.flavor,
            exclude_int8=rules,
            excluded_nodes=len(res.excluded_nodes),
            quantized_nodes=len(res.quantized_nodes),
            qdq_nodes=res.qdq,
            external_data=res.external_data,
            seconds=round(max(r.seconds for r in results.values()), 2),
        )
        if len(results) > 1:
            config["flavours"] = {r.flavor: {"file": r.path.name, "quantized_nodes": len(r.quantized_nodes),
                                             "qdq_nodes": r.qdq, "method": r.method} for r in results.values()}
        art_extra = {"qdq_flavor": res.flavor, "calibration": method, "serves": _serves(res.flavor)}
    if calib_info is not None:
        config["calib"] = calib_info

    if latency_reps is None:  # the report's latency is a hint (benchmarks/ measure); a ViT-H run takes seconds
        latency_reps = LATENCY_REPS_LARGE if file_uses_external_data(fp32) else LATENCY_REPS
    step("measuring the accuracy drop")
    report = accuracy_report(
        fp32, out, report_feeds, precision=precision, family=sigma_rule, source=source, smpl=smpl,
        max_drop_deg=max_drop_deg, min_sigma_rank_corr=min_sigma_rank_corr, latency_batch=latency_batch,
        latency_reps=latency_reps, threads=threads,
        extra={"model": manifest["model"].get("name"), "random_weights": random_weights, "config": config},
    )
    cpu_results = cpu_report = None
    if precision == "int8" and len(results) > 1:
        cpu_results = results[cpu]
        step("measuring the CPU flavour's accuracy drop")
        cpu_report = accuracy_report(
            fp32, cpu_results.path, report_feeds, precision=precision, family=sigma_rule, source=source, smpl=smpl,
            max_drop_deg=max_drop_deg, min_sigma_rank_corr=min_sigma_rank_corr, latency_batch=latency_batch,
            latency_reps=latency_reps, threads=threads, extra={"qdq_flavor": cpu_results.flavor},
        )
        report["cpu_flavour"] = cpu_report
    write_report(folder, report)

    entry = _artifact_entry(out, fp32, precision) | art_extra
    manifest.setdefault("artifacts", {})[Precision(precision).graph_key] = entry
    if cpu_results is not None:
        manifest["artifacts"][CPU_INT8_KEY] = _artifact_entry(cpu_results.path, fp32, precision) | {
            "qdq_flavor": cpu_results.flavor, "calibration": cpu_results.method, "serves": _serves(cpu_results.flavor),
        }
    manifest["precision"] = precision
    manifest["precision_config"] = dict(config)
    manifest["accuracy"] = summary(report)
    validate_manifest(manifest, source="updated manifest")

    enforced = check_thresholds(report["figures"], max_drop_deg, min_sigma_rank_corr)
    if cpu_report is not None:
        enforced += [f"CPU flavour: {f}" for f in check_thresholds(cpu_report["figures"], max_drop_deg,
                                                                     min_sigma_rank_corr)]
    if enforced:
        raise ExportError(
            f"{precision} accuracy drop too large: " + "; ".join(enforced),
            hint="see report.md; keep more nodes in FP32 / exclude more from INT8, try another calibration "
            "method or a larger calibration set, or relax the threshold",
        )
    if not report["thresholds"]["passed"]:
        log.warning("%s is outside the report's default thresholds: %s", precision,
                    "; ".join(report["thresholds"]["failures"]))
    return report


def _artifact_entry(path: Path, fp32: Path, precision: str) -> dict[str, Any]:
    import onnx

    entry: dict[str, Any] = {
        "file": path.name,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "precision": precision,
        "source": fp32.name,
    }
    data_file = path.with_name(path.name + ".data")
    if data_file.exists():
        entry.update(data_file=data_file.name, data_sha256=sha256_file(data_file), data_bytes=data_file.stat().st_size)
    entry["ops"] = op_counts(onnx.load(str(path), load_external_data=False))
    return entry


def _serves(qdq_flavor: str) -> list[str]:
    """Runners a Q/DQ flavour is made for (the manifest's ``serves``; the runtime picks by it)."""
    return ["tensorrt", "TensorrtExecutionProvider"] if qdq_flavor.startswith("trt") else ["CPUExecutionProvider"]


def check_precision_args(precision: str, calib: Path | None) -> None:
    """Early CLI-side validation (before any export work)."""
    p = Precision.parse(precision).value
    if p == "int8" and calib is None:
        raise InputError(
            "--precision int8 needs --calib calib.npz",
            hint="make one with `hpsedge calib make --model-dir <fp32 export> --images DIR --out calib.npz`",
        )
    if calib is not None and not Path(calib).is_file():
        raise InputError(f"calibration set not found: {calib}")
