"""Static checks of exported graphs: which ops they hold and whether TensorRT can parse them as is."""

from __future__ import annotations

from collections import Counter
from typing import Any

#: ops we never want in a graph that TensorRT will consume: Einsum is only partly supported, and
#: ScatterND (from in-place indexed writes) needs a plugin on older versions and is slow everywhere.
FORBIDDEN_OPS: frozenset[str] = frozenset({"Einsum", "ScatterND"})


def op_histogram(model: Any) -> dict[str, int]:
    """Count node op types in an ``onnx.ModelProto`` (sub-graphs included), sorted by name."""
    counts: Counter[str] = Counter()

    def visit(graph: Any) -> None:
        for node in graph.node:
            counts[node.op_type if not node.domain or node.domain == "ai.onnx" else f"{node.domain}::{node.op_type}"] += 1
            for attr in node.attribute:
                if attr.g is not None and len(attr.g.node):
                    visit(attr.g)
                for g in attr.graphs:
                    visit(g)

    visit(model.graph)
    return dict(sorted(counts.items()))


def forbidden_ops(model: Any, forbidden: frozenset[str] = FORBIDDEN_OPS) -> list[str]:
    """The forbidden op types present in ``model`` (empty when the graph is clean)."""
    return sorted(set(op_histogram(model)) & forbidden)
