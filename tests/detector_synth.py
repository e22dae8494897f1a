"""Synthetic person detectors as real ONNX graphs (onnx.helper), in the three layouts hpsedge reads.

The graph finds bright rectangles: two 1×1 convolutions (identity weights, so INT8 has something to quantize)
then, per colour channel, a threshold, row/column profiles (ReduceMax) and the first/last bright index
(ArgMax, ``select_last_index``) give one box per channel. Channel 0 (red) and channel 1 (green) are
people (class 0), channel 2 (blue) is a "car" (class 2). Each channel's box also appears shifted by
(2, 1) px with 0.7× the score (NMS must remove it), and a constant low-score person box (score 0.2 at
[10, 100, 60, 150] input px) tests the score threshold. So a frame drawn with a red and a green rectangle
(added, so overlaps keep both) holds two people whose boxes are known exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NAMES = {0: "person", 1: "bicycle", 2: "car"}
CHANNEL_SCORES = (0.9, 0.8, 0.85)
CHANNEL_CLASSES = (0, 0, 2)
NOISE_BOX = (10.0, 100.0, 60.0, 150.0)
NOISE_SCORE = 0.2


def _const(name: str, arr: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(arr), name + "_v"))


def make_detector(path: str | Path, layout: str = "yolo", size: tuple[int, int] | None = (320, 320),
                  threshold: float = 0.5, anchors: int = 8400, names: dict[int, str] | None = NAMES,
                  num_classes: int = 3, opset: int = 17) -> Path:
    """Write a synthetic detector ONNX. ``size=None``: dynamic H, W. ``threshold`` in graph-input units
    (0.5 for ÷255 inputs, 127.5 for raw 0–255)."""
    h, w = (size if size is not None else ("H", "W"))
    n: list[onnx.NodeProto] = []
    inits = [
        numpy_helper.from_array(np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1), "conv0_w"),
        numpy_helper.from_array(np.zeros(3, np.float32), "conv0_b"),
        numpy_helper.from_array(np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1), "conv1_w"),
        numpy_helper.from_array(np.zeros(3, np.float32), "conv1_b"),
    ]
    n.append(helper.make_node("Conv", ["images", "conv0_w", "conv0_b"], ["feat0"], name="stem0"))
    n.append(helper.make_node("Conv", ["feat0", "conv1_w", "conv1_b"], ["feat"], name="stem1"))
    n.append(_const("thr", np.array(threshold, np.float32)))
    n.append(helper.make_node("Greater", ["feat", "thr"], ["mask_b"]))
    n.append(helper.make_node("Cast", ["mask_b"], ["mask"], to=TensorProto.FLOAT))
    n.append(helper.make_node("ReduceMax", ["mask"], ["colp"], axes=[2], keepdims=0))  # [1,3,W]
    n.append(helper.make_node("ReduceMax", ["mask"], ["rowp"], axes=[3], keepdims=0))  # [1,3,H]
    n.append(helper.make_node("ReduceMax", ["colp"], ["present"], axes=[2], keepdims=0))  # [1,3]
    for prof, lo, hi in (("colp", "x1", "x2"), ("rowp", "y1", "y2")):
        n.append(helper.make_node("ArgMax", [prof], [lo + "_i"], axis=2, keepdims=0))
        n.append(helper.make_node("ArgMax", [prof], [hi + "_i"], axis=2, keepdims=0, select_last_index=1))
        n.append(helper.make_node("Cast", [lo + "_i"], [lo + "_f"], to=TensorProto.FLOAT))
        n.append(helper.make_node("Cast", [hi + "_i"], [hi + "_m"], to=TensorProto.FLOAT))
        n.append(_const(hi + "_one", np.array(1.0, np.float32)))
        n.append(helper.make_node("Add", [hi + "_m", hi + "_one"], [hi + "_f"]))
    # per channel box [3, 4] and score [3]
    n.append(_const("shape31", np.array([3, 1], np.int64)))
    for c in ("x1", "y1", "x2", "y2"):
        n.append(helper.make_node("Reshape", [c + "_f", "shape31"], [c + "_c"]))
    n.append(helper.make_node("Concat", ["x1_c", "y1_c", "x2_c", "y2_c"], ["box3"], axis=1))
    n.append(_const("cscore", np.array(CHANNEL_SCORES, np.float32).reshape(1, 3)))
    n.append(helper.make_node("Mul", ["present", "cscore"], ["score13"]))
    n.append(helper.make_node("Reshape", ["score13", "shape31"], ["score3"]))
    # duplicates (shifted, weaker) and the low-score noise box
    n.append(_const("shift", np.array([[2.0, 1.0, 2.0, 1.0]], np.float32)))
    n.append(helper.make_node("Add", ["box3", "shift"], ["box3d"]))
    n.append(_const("weak", np.array(0.7, np.float32)))
    n.append(helper.make_node("Mul", ["score3", "weak"], ["score3d"]))
    n.append(_const("noise_box", np.array([NOISE_BOX], np.float32)))
    n.append(_const("noise_score", np.array([[NOISE_SCORE]], np.float32)))
    n.append(helper.make_node("Concat", ["box3", "box3d", "noise_box"], ["boxes"], axis=0))  # [7,4]
    n.append(helper.make_node("Concat", ["score3", "score3d", "noise_score"], ["scores"], axis=0))  # [7,1]
    cls = np.array(list(CHANNEL_CLASSES) * 2 + [0], np.int64)
    m = len(cls)
    outputs: list[onnx.ValueInfoProto] = []
    if layout == "yolo":
        onehot = np.zeros((m, num_classes), np.float32)
        onehot[np.arange(m), cls] = 1.0
        n.append(_const("onehot", onehot))
        n.append(helper.make_node("Mul", ["onehot", "scores"], ["cls_scores"]))
        n.append(_const("to_cxcywh", np.array([[0.5, 0, -1, 0], [0, 0.5, 0, -1], [0.5, 0, 1, 0], [0, 0.5, 0, 1]], np.float32)))
        n.append(helper.make_node("MatMul", ["boxes", "to_cxcywh"], ["cxcywh"]))
        n.append(helper.make_node("Concat", ["cxcywh", "cls_scores"], ["rows"], axis=1))
        n.append(_const("zeros", np.zeros((anchors - m, 4 + num_classes), np.float32)))
        n.append(helper.make_node("Concat", ["zeros", "rows"], ["rows_all"], axis=0))
        n.append(helper.make_node("Transpose", ["rows_all"], ["rows_t"], perm=[1, 0]))
        n.append(_const("ax0", np.array([0], np.int64)))
        n.append(helper.make_node("Unsqueeze", ["rows_t", "ax0"], ["output0"]))
        outputs.append(helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + num_classes, anchors]))
    elif layout == "end2end":
        n.append(_const("clsf", cls.astype(np.float32).reshape(m, 1)))
        n.append(helper.make_node("Concat", ["boxes", "scores", "clsf"], ["rows"], axis=1))
        n.append(_const("zeros", np.zeros((300 - m, 6), np.float32)))
        n.append(helper.make_node("Concat", ["rows", "zeros"], ["rows_all"], axis=0))
        n.append(_const("ax0", np.array([0], np.int64)))
        n.append(helper.make_node("Unsqueeze", ["rows_all", "ax0"], ["output0"]))
        outputs.append(helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 300, 6]))
    elif layout == "dets_labels":
        k = 100
        n.append(helper.make_node("Concat", ["boxes", "scores"], ["rows"], axis=1))
        n.append(_const("zeros", np.zeros((k - m, 5), np.float32)))
        n.append(helper.make_node("Concat", ["rows", "zeros"], ["rows_all"], axis=0))
        n.append(_const("ax0", np.array([0], np.int64)))
        n.append(helper.make_node("Unsqueeze", ["rows_all", "ax0"], ["dets"]))
        lab = np.zeros((1, k), np.int64)
        lab[0, :m] = cls
        n.append(_const("labels", lab))
        outputs.append(helper.make_tensor_value_info("dets", TensorProto.FLOAT, [1, k, 5]))
        outputs.append(helper.make_tensor_value_info("labels", TensorProto.INT64, [1, k]))
    elif layout == "not_a_detector":
        n.append(helper.make_node("Identity", ["present"], ["logits"]))
        outputs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3]))
    else:
        raise ValueError(layout)
    graph = helper.make_graph(n, "synthetic_detector",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, h, w])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="hpsedge-tests")
    model.ir_version = 8
    if names is not None:
        meta = model.metadata_props.add()
        meta.key, meta.value = "names", repr(names)
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def draw_people(h: int, w: int, boxes: list[tuple[float, float, float, float]], channels: list[int] | None = None,
                background: int = 30) -> np.ndarray:
    """An RGB uint8 frame with each box a bright rectangle in its own channel (added: overlaps keep both)."""
    img = np.full((h, w, 3), background, np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        c = channels[i] if channels is not None else i
        img[int(y1) : int(y2), int(x1) : int(x2), c] = 255
    return img
