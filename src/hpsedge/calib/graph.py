"""ONNX graph helpers shared by the FP16 and INT8 passes: node selection rules, the output tail, loading
graphs with external data, and running a graph with every intermediate activation exposed.

Node selection rules (``keep_fp32`` for FP16, ``exclude_int8`` for INT8) are plain strings:

* ``"op:Softmax"``: every node of that op type;
* ``"@output-tail"``: the *output tail*: walking back from each graph output through nodes that are not
  Conv/ConvTranspose/Gemm/MatMul, every node met plus the first such compute node on each path, i.e. the
  final regressors (CLIFF's ``decpose``/``decshape``/``deccam``, PARE's ``pose_mlp``/``shape_mlp``/``cam_mlp``,
  POCO's last σ layer) and everything after them (IEF residual adds, 6D→rotation Gram-Schmidt, sigmoid).
  ``Shape`` nodes end a walk (a shape does not depend on precision);
* ``"@activation-matmul"``: every MatMul whose two operands are both activations (no constant weight):
  attention's ``Q·Kᵀ`` and ``softmax·V`` in a transformer, PARE's part-attention pooling;
* anything else: a regular expression searched in the node name. The PyTorch exporter names nodes after
  the module path (``/head/decpose/Gemm``, ``/uncert_head/Sigmoid``), so ``/uncert_head/`` selects POCO's
  σ head and ``^/head/`` the whole regression head.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.calib.ort import session, session_from_proto
from hpsedge.errors import ExportError

COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
OUTPUT_TAIL = "@output-tail"
ACTIVATION_MATMUL = "@activation-matmul"


def load_model(path: str | Path, with_data: bool = True) -> Any:
    """``onnx.load`` with a clear error; external data (``model.onnx.data``) is resolved next to the file."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ExportError(f"no ONNX graph at {p}")
    try:
        return onnx.load(str(p), load_external_data=with_data)
    except Exception as exc:  # protobuf / missing external data
        raise ExportError(f"cannot read {p} as ONNX ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from None


def has_external_data(model: Any) -> bool:
    from onnx.external_data_helper import uses_external_data

    return any(uses_external_data(t) for t in model.graph.initializer)


def output_tail(model: Any) -> set[str]:
    """Names of the nodes in the output tail (see the module docstring)."""
    graph = model.graph
    producer: dict[str, Any] = {}
    for node in graph.node:
        for out in node.output:
            producer[out] = node
    seen: set[str] = set()
    stack = [o.name for o in graph.output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in COMPUTE_OPS or node.op_type == "Shape":
            continue
        stack.extend(i for i in node.input if i)
    return seen


def select_nodes(model: Any, rules: Iterable[str]) -> dict[str, list[str]]:
    """Node names selected by each rule (rule → names, graph order). Unnamed nodes cannot be selected."""
    names = [n.name for n in model.graph.node]
    ops = {n.name: n.op_type for n in model.graph.node}
    tail: set[str] | None = None
    out: dict[str, list[str]] = {}
    for rule in rules:
        if rule == ACTIVATION_MATMUL:
            consts = {t.name for t in model.graph.initializer}
            consts |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
            out[rule] = [n.name for n in model.graph.node
                         if n.op_type == "MatMul" and not any(x in consts for x in n.input)]
        elif rule == OUTPUT_TAIL:
            if tail is None:
                tail = output_tail(model)
            out[rule] = [n for n in names if n in tail]
        elif rule.startswith("op:"):
            op = rule[3:]
            out[rule] = [n for n in names if ops[n] == op]
        else:
            try:
                rx = re.compile(rule)
            except re.error as exc:
                raise ExportError(f"node pattern {rule!r} is not a valid regular expression ({exc})") from None
            out[rule] = [n for n in names if n and rx.search(n)]
    return out


def selected(model: Any, rules: Iterable[str]) -> set[str]:
    return {n for names in select_nodes(model, rules).values() for n in names if n}


def name_unnamed_nodes(model: Any) -> None:
    """Give every unnamed node a unique name (selection and exclusion work by name)."""
    used = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)


def inferred_graph(src: Any) -> Any:
    """Shape-inferred copy of a graph **without its weights** (any size).

    ``src`` is a path or a ModelProto. A path goes through ``onnx.shape_inference.infer_shapes_path`` (C++ reads
    the file, never the external ``.data``); a ModelProto is first stripped of its weight bytes (dims and types
    are all inference needs), so nothing ever serialises a > 2 GB protobuf.
    """
    import tempfile

    import onnx

    if isinstance(src, (str, Path)):
        with tempfile.TemporaryDirectory(prefix="hpsedge-infer-") as tmp:
            out = Path(tmp) / "inferred.onnx"
            onnx.shape_inference.infer_shapes_path(str(src), str(out))
            return onnx.load(str(out), load_external_data=False)
    return onnx.shape_inference.infer_shapes(weightless_copy(src))


def weightless_copy(model: Any, keep_below: int = 1024) -> Any:
    """A copy of ``model`` whose initializers larger than ``keep_below`` bytes carry no data (dims/type only).

    Good for anything that reads structure (shape inference, node selection); small constants are kept
    because shape inference reads them (Reshape targets, Slice bounds).
    """
    import onnx

    m = onnx.ModelProto()
    m.ir_version = model.ir_version
    m.opset_import.extend(model.opset_import)
    m.producer_name = model.producer_name
    g = m.graph
    g.name = model.graph.name
    g.node.extend(model.graph.node)
    g.input.extend(model.graph.input)
    g.output.extend(model.graph.output)
    g.value_info.extend(model.graph.value_info)
    for t in model.graph.initializer:
        if len(t.raw_data) > keep_below or t.ByteSize() > keep_below + 256:
            e = onnx.TensorProto(name=t.name, data_type=t.data_type, dims=t.dims)
            e.data_location = onnx.TensorProto.EXTERNAL
            e.external_data.add(key="location", value="__weightless__")
            g.initializer.append(e)
        else:
            g.initializer.append(t)
    return m


def float_value_types(model: Any) -> dict[str, int]:
    """elem_type of every tensor that shape inference can type (inputs, outputs, intermediates).

    ``model``: a ModelProto or a path; graphs above 2 GB are handled (see :func:`inferred_graph`).
    """
    inferred = inferred_graph(model)
    types: dict[str, int] = {}
    for vi in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    return types


def graph_session(model: Any, weights_dir: str | Path, threads: int | None = None) -> Any:
    """A CPU session for a *weightless* ModelProto whose external initializers live in ``weights_dir``.

    The (small) graph is written into ``weights_dir`` under a temporary name, so ONNX Runtime resolves the
    external data file there; the weights are never loaded into Python or copied.
    """
    import os
    import tempfile

    import onnx


    fd, name = tempfile.mkstemp(prefix=".hpsedge-graph-", suffix=".onnx", dir=weights_dir)
    os.close(fd)
    try:
        onnx.save_model(model, name)
        return session(name, threads)
    finally:
        os.unlink(name)


def expose_float_outputs(model: Any, path: str | Path | None = None) -> dict[str, str]:
    """Add every float node output of ``model`` (in place) as a graph output; returns tensor → node name."""
    import onnx

    types = float_value_types(path if path is not None else model)
    existing = {o.name for o in model.graph.output}
    tensor_node: dict[str, str] = {}
    for node in model.graph.node:
        for out in node.output:
            if out and types.get(out) == onnx.TensorProto.FLOAT:
                tensor_node[out] = node.name
                if out not in existing:
                    model.graph.output.append(onnx.helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None))
    return tensor_node


def intermediate_absmax(
    model: Any, feeds: Iterator[Mapping[str, np.ndarray]], threads: int | None = None, path: str | Path | None = None
) -> dict[str, float]:
    """Run ``model`` with every float node output exposed; node name → max |activation| over all feeds.

    NaN/inf activations count as ``inf``. Used to find nodes whose FP32 activations leave the FP16 range.
    With ``path`` (the file ``model`` was read from, weights external or not) the graph is run from that
    file's folder without copying the weights; node names must match the file's (``prepare_model`` only
    names nodes and folds constant identities, which keeps every node output of the file).
    """
    import onnx

    if path is not None and file_uses_external_data(path):
        m = onnx.load(str(path), load_external_data=False)
        name_unnamed_nodes(m)
        tensor_node = expose_float_outputs(m, path)
        sess = graph_session(m, Path(path).parent, threads)
        del m
    else:

        m = onnx.ModelProto()
        m.CopyFrom(model)
        tensor_node = expose_float_outputs(m)
        sess = session_from_proto(m, threads=threads)
        del m
    names = [o.name for o in sess.get_outputs()]
    peak: dict[str, float] = {}
    for feed in feeds:
        results = sess.run(names, dict(feed))
        for name, value in zip(names, results, strict=True):
            node = tensor_node.get(name)
            if node is None or value.size == 0:
                continue
            v = np.asarray(value)
            a = float(np.max(np.abs(v))) if np.isfinite(v).all() else float("inf")
            peak[node] = max(peak.get(node, 0.0), a)
        del results
    return peak


def op_counts(model: Any, names: Sequence[str] | None = None) -> dict[str, int]:
    counts: dict[str, int] = {}
    wanted = set(names) if names is not None else None
    for n in model.graph.node:
        if wanted is None or n.name in wanted:
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items()))


def topo_sort(model: Any) -> None:
    """Sort the graph's nodes topologically in place, keeping the original order where it is free."""
    g = model.graph
    nodes = list(g.node)
    available = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    producer_of = {o: idx for idx, n in enumerate(nodes) for o in n.output}
    waiting: dict[int, set[str]] = {}
    consumers: dict[str, list[int]] = {}
    for idx, n in enumerate(nodes):
        need = {x for x in n.input if x not in available and x in producer_of}
        waiting[idx] = need
        for x in need:
            consumers.setdefault(x, []).append(idx)
    import heapq

    ready = [idx for idx, need in waiting.items() if not need]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        idx = heapq.heappop(ready)
        order.append(idx)
        for o in nodes[idx].output:
            for c in consumers.get(o, []):
                w = waiting[c]
                if o in w:
                    w.discard(o)
                    if not w:
                        heapq.heappush(ready, c)
    if len(order) != len(nodes):
        raise ExportError("the graph has a cycle; cannot order its nodes")
    del g.node[:]
    g.node.extend(nodes[i] for i in order)


def file_uses_external_data(path: str | Path) -> bool:
    """Whether the ONNX file keeps its weights in a separate file (``model.onnx.data``)."""
    import onnx

    return has_external_data(onnx.load(str(path), load_external_data=False))
