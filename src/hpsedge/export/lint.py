"""Static checks of exported graphs: which ops they hold and whether TensorRT can parse them as is.

The support tables are the ONNX-TensorRT parser's operator matrix (op names of the default domain; see
the sources below). On top of what the parser accepts, hpsedge forbids Einsum (only partly supported)
and ScatterND (in-place writes; slow) by policy, and checks the restrictions that bite precision graphs:
Q/DQ zero points must be zero and INT8 (UINT8 exists only as a network input/output type in TensorRT),
Resize modes, and the opset range.

Needs the ``onnx`` package (the graph is read as a ``ModelProto``): the check runs on the export side and
its result is stored in the folder's manifest and report.md, so a runtime-only machine never needs onnx.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: ops we never want in a graph that TensorRT will consume: Einsum is only partly supported, and
#: ScatterND (from in-place indexed writes) needs care on older versions and is slow everywhere.
FORBIDDEN_OPS: frozenset[str] = frozenset({"Einsum", "ScatterND"})

# TensorRT 10: the rows marked "Y" in onnx/onnx-tensorrt docs/operators.md at commit
# 96e781103cfc4adf4a6bb557e94bac8e693f6f4c (branch 10.1-GA, "ONNX-TensorRT 10.1 GA release", 2024-06-17),
# read with git from the repository snapshot: "TensorRT 10.0 supports operators in the inclusive range of
# opset 9 to opset 20". Later 10.x parsers add ops (e.g. Attention in the 10.14 GA parser update); the 10.1
# table is kept because JetPack 6 ships TensorRT 10.3, the 10.x release hpsedge most often meets.
_TRT10_SUPPORTED = """
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike Ceil
Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND
Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU
HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization
LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow
PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1
ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu
Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape
Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan
Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
"""
# TensorRT 11: NOT read from operators.md. The onnx/onnx-tensorrt snapshot available to this project has no
# 11.x branch (its newest branches are 10.1-GA and main at 7ecb49a435bd881b9ac4011450315192885e5cc3, May 2024)
# and the code index holds only older versions of docs/operators.md. What could be verified comes from
# NVIDIA's pages: the ONNX Opset Guide for TensorRT 11.x (docs.nvidia.com/deeplearning/tensorrt/latest/
# reference/onnx-opset-guide.html: opsets 9 to 25; the 11.5 GA parser update "Added support for ONNX opset
# 25"), and the parser changes in the release notes since 10.1: Attention (10.14 GA parser update), Swish
# (11.0), DFT (11.2, through the FFT plugin). The 11 table is the 10.1 table plus those three; no removal
# is documented. Replace it with the 11.x operators.md once that file can be read.
_TRT11_ADDED = "Attention Swish DFT"

#: TensorRT major version → ONNX ops its parser supports (default domain)
TRT_SUPPORTED_OPS: dict[int, frozenset[str]] = {
    10: frozenset(_TRT10_SUPPORTED.split()),
    11: frozenset(_TRT10_SUPPORTED.split()) | frozenset(_TRT11_ADDED.split()),
}
#: TensorRT major version → supported opset range of the default domain
TRT_OPSET_RANGE: dict[int, tuple[int, int]] = {10: (9, 20), 11: (9, 25)}
#: where each table comes from (shown in report.md)
TRT_TABLE_SOURCES: dict[int, str] = {
    10: "onnx/onnx-tensorrt docs/operators.md @ 96e781103cfc (10.1-GA), opsets 9-20",
    11: "10.1 table + Attention, Swish, DFT (NVIDIA release notes); opsets 9-25 (ONNX Opset Guide, 11.x); "
        "not yet checked against the 11.x operators.md",
}
#: the first TensorRT 11 release whose parser takes opset 25 (11.5 GA parser update)
_OPSET25_FROM = "11.5"

_RESIZE_MODES = {"nearest", "linear"}
_RESIZE_COORD = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
_ONNX_UINT8, _ONNX_DOUBLE = 2, 11  # TensorProto data types


def op_histogram(model: Any) -> dict[str, int]:
    """Count node op types in an ``onnx.ModelProto`` (sub-graphs included), sorted by name."""
    counts: Counter[str] = Counter()
    for node in _nodes(model.graph):
        counts[_op_name(node)] += 1
    return dict(sorted(counts.items()))


def forbidden_ops(model: Any, forbidden: frozenset[str] = FORBIDDEN_OPS) -> list[str]:
    """The forbidden op types present in ``model`` (empty when the graph is clean)."""
    return sorted(set(op_histogram(model)) & forbidden)


def _op_name(node: Any) -> str:
    return node.op_type if not node.domain or node.domain == "ai.onnx" else f"{node.domain}::{node.op_type}"


def _nodes(graph: Any) -> list[Any]:
    out = []
    for node in graph.node:
        out.append(node)
        for attr in node.attribute:
            if attr.HasField("g"):
                out.extend(_nodes(attr.g))
            for g in attr.graphs:
                out.extend(_nodes(g))
    return out


@dataclass
class Finding:
    level: str  # "error" | "warning"
    message: str


@dataclass
class LintReport:
    """What the static TensorRT check found; ``ok`` when there is no error."""

    trt_major: int
    ops: dict[str, int]
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.level == "error" for f in self.findings)

    @property
    def errors(self) -> list[str]:
        return [f.message for f in self.findings if f.level == "error"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "trt_major": self.trt_major,
            "ok": self.ok,
            "findings": [{"level": f.level, "message": f.message} for f in self.findings],
            "ops": self.ops,
        }

    def to_markdown(self, title: str = "TensorRT static check") -> str:
        verdict = "passes" if self.ok else "FAILS"
        lines = [f"### {title} (TensorRT {self.trt_major}.x parser): {verdict}", ""]
        if self.trt_major in TRT_TABLE_SOURCES:
            lines += [f"Support table: {TRT_TABLE_SOURCES[self.trt_major]}.", ""]
        if self.findings:
            lines += [f"- **{f.level}**: {f.message}" for f in self.findings]
        else:
            lines.append("- every op is supported by the parser; no Einsum/ScatterND; Q/DQ and types are as TensorRT needs")
        lines += ["", "| op | count |", "|---|---:|"]
        lines += [f"| {op} | {n} |" for op, n in self.ops.items()]
        return "\n".join(lines) + "\n"


def _attr(node: Any, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            if a.type == a.STRING:
                return a.s.decode()
            if a.type == a.INT:
                return a.i
            return a
    return default


def _zero_point_problem(node: Any, inits: dict[str, Any]) -> str | None:
    """Q/DQ zero point must be an INT8 zero (TensorRT: symmetric quantization only)."""
    if len(node.input) < 3 or not node.input[2]:
        return None
    name = node.input[2]
    init = inits.get(name)
    if init is None:
        return None
    if init.data_type == _ONNX_UINT8:
        return f"{node.op_type} '{node.name}' quantizes to UINT8 (asymmetric); TensorRT needs symmetric INT8"
    from onnx import numpy_helper

    if numpy_helper.to_array(init).any():
        return f"{node.op_type} '{node.name}' has a non-zero zero point; TensorRT needs symmetric quantization"
    return None


def check_trt_support(model: Any, trt_major: int = 10, forbidden: frozenset[str] = FORBIDDEN_OPS) -> LintReport:
    """Check an ``onnx.ModelProto`` against what TensorRT ``trt_major``'s ONNX parser accepts."""
    if trt_major not in TRT_SUPPORTED_OPS:
        raise ValueError(f"no support table for TensorRT {trt_major} (known: {sorted(TRT_SUPPORTED_OPS)})")
    supported = TRT_SUPPORTED_OPS[trt_major]
    report = LintReport(trt_major=trt_major, ops=op_histogram(model))
    lo, hi = TRT_OPSET_RANGE[trt_major]
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and not lo <= imp.version <= hi:
            report.findings.append(Finding("error", f"opset {imp.version} is outside TensorRT {trt_major}'s range {lo}–{hi}"))
        elif imp.domain in ("", "ai.onnx") and trt_major == 11 and imp.version == 25:
            report.findings.append(Finding("warning", f"opset 25 needs TensorRT {_OPSET25_FROM} or newer"))
    unsupported = sorted(op for op in report.ops if "::" in op or op not in supported)
    if unsupported:
        report.findings.append(Finding("error", f"ops the TensorRT {trt_major} parser does not support: {', '.join(unsupported)}"))
    policy = sorted(set(report.ops) & forbidden)
    if policy:
        report.findings.append(Finding("error", f"ops hpsedge keeps out of TensorRT graphs: {', '.join(policy)}"))
    inits = {i.name: i for i in model.graph.initializer}
    for node in _nodes(model.graph):
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            problem = _zero_point_problem(node, inits)
            if problem:
                report.findings.append(Finding("error", problem))
        elif node.op_type == "Resize":
            mode = _attr(node, "mode", "nearest")
            coord = _attr(node, "coordinate_transformation_mode", "half_pixel")
            if mode not in _RESIZE_MODES or coord not in _RESIZE_COORD:
                report.findings.append(Finding("error", f"Resize '{node.name}' uses mode={mode}, coordinates={coord}"))
            if _attr(node, "antialias", 0):
                report.findings.append(Finding("error", f"Resize '{node.name}' uses antialiasing"))
    doubles = [i.name for i in model.graph.initializer if i.data_type == _ONNX_DOUBLE]
    if doubles:
        report.findings.append(
            Finding("warning", f"{len(doubles)} float64 initializer(s) (e.g. {doubles[0]}): TensorRT casts them to float32")
        )
    for vi in list(model.graph.input) + list(model.graph.output):
        if vi.type.tensor_type.elem_type == _ONNX_DOUBLE:
            report.findings.append(Finding("error", f"graph I/O '{vi.name}' is float64; TensorRT does not take it"))
    return report


def lint_graph(path: Path, trt_majors: tuple[int, ...]) -> list[LintReport]:
    """The static TensorRT check of the graph at ``path`` for each TensorRT major version."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return [check_trt_support(proto, major) for major in trt_majors]
