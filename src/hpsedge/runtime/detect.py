"""Person detection from an ONNX detector: letterbox, run, decode, person filter, NMS, boxes in image pixels.

Numpy plus the chosen backend (ONNX Runtime by default); no torch, no OpenCV. hpsedge fetches no detector
weights; any detector ONNX in one of these **layouts** works (recognised from the graph's outputs, or forced
with ``layout=``):

* ``"yolo"`` — Ultralytics YOLOv8/YOLO11 (``yolo export format=onnx``): one output ``[1, 4+C, A]``, rows
  0–3 = cx, cy, w, h in input pixels, rows 4… = per-class scores (already sigmoid-ed), no NMS in the graph.
* ``"end2end"`` — Ultralytics end-to-end / NMS-free exports: one output ``[1, K, 6]`` = x1, y1, x2, y2,
  score, class, in input pixels.
* ``"dets_labels"`` — YOLOX/RTMDet end-to-end as mmdeploy and rtmlib ship them: ``dets [1, K, 5]`` (x1, y1,
  x2, y2, score) + ``labels [1, K]`` (integer class), in input pixels, NMS already in the graph.

**Preprocessing** is a letterbox to the graph's input size (static, or ``input_size`` for a dynamic
graph, default 640×640): scale ``r = min(H_in/h, W_in/w)``, bilinear resize (half-pixel centres, like
``cv2.INTER_LINEAR``), pad with a constant grey. The two Ultralytics layouts imply Ultralytics' own
preprocessing (``"ultralytics"``: RGB, ÷255, pad 114, image centred). ``dets_labels`` graphs differ per model
(YOLOX takes BGR 0–255 with the image at the top-left; RTMDet takes mean/std-normalised BGR), so for them the
preprocessing must be named (``preprocess="yolox"`` or a :class:`Letterbox` with explicit mean/std): this
module never guesses a normalisation.

**Person class**: Ultralytics writes the class names into the ONNX metadata (``names``, a Python dict
literal); it is parsed with :func:`ast.literal_eval` (never ``eval``) and the index named ``person`` is taken.
A model whose names hold no ``person`` is refused unless ``person_class`` is given. Without names (rtmlib,
mmdeploy) the COCO index 0 is used and the manifest records that it was a default.

**Decode + NMS**: scores below ``score_threshold`` are dropped, then class-aware non-maximum suppression
(greedy, by decreasing score, IoU > ``iou_threshold`` suppresses, only within a class) keeps at most
``max_detections`` boxes; the person boxes are mapped back through the letterbox and clipped to the image.
"""

from __future__ import annotations

import ast
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import BackendError, InputError, ManifestError

log = logging.getLogger(__name__)

LAYOUTS = ("yolo", "end2end", "dets_labels")
PREPROCESS_PRESETS = ("ultralytics", "yolox")
DEFAULT_INPUT_SIZE = (640, 640)

__all__ = [
    "LAYOUTS",
    "Detections",
    "Detector",
    "DetectorConfig",
    "Letterbox",
    "decode",
    "detect_layout",
    "letterbox",
    "nms",
    "parse_class_names",
]


# =============================================================================================== letterbox
@dataclass(frozen=True)
class Letterbox:
    """How an image becomes the detector's input. ``mean``/``std`` apply after ``scale`` (x·scale − mean)/std."""

    color: str = "RGB"  #: channel order the graph wants
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    pad_value: float = 114.0  #: pixel value (0–255) of the padding
    center: bool = True  #: pad on both sides (Ultralytics) or only right/bottom (YOLOX)

    @classmethod
    def preset(cls, name: str) -> Letterbox:
        if name == "ultralytics":
            return cls()
        if name == "yolox":
            return cls(color="BGR", scale=1.0, pad_value=114.0, center=False)
        raise InputError(f"unknown detector preprocessing '{name}' (known: {', '.join(PREPROCESS_PRESETS)})")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Letterbox:
        try:
            lb = cls(color=str(d["color"]), scale=float(d["scale"]), mean=tuple(float(v) for v in d["mean"]),  # type: ignore[arg-type]
                     std=tuple(float(v) for v in d["std"]), pad_value=float(d["pad_value"]),  # type: ignore[arg-type]
                     center=bool(d["center"]))
        except (KeyError, TypeError, ValueError):
            raise ManifestError("detector preprocessing needs color, scale, mean, std, pad_value, center") from None
        if lb.color not in ("RGB", "BGR") or len(lb.mean) != 3 or len(lb.std) != 3 or not all(s > 0 for s in lb.std):
            raise ManifestError(f"detector preprocessing is invalid: {d}")
        return lb


@dataclass(frozen=True)
class LetterboxMeta:
    """Where the image went: input = image·(sx, sy) + (left, top)."""

    image_hw: tuple[int, int]
    input_hw: tuple[int, int]
    sx: float
    sy: float
    left: int
    top: int

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes [K,4] x1,y1,x2,y2 in input pixels → image pixels, clipped to the image."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
        b[:, [0, 2]] = (b[:, [0, 2]] - self.left) / self.sx
        b[:, [1, 3]] = (b[:, [1, 3]] - self.top) / self.sy
        h, w = self.image_hw
        b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
        b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
        return b

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
        b[:, [0, 2]] = b[:, [0, 2]] * self.sx + self.left
        b[:, [1, 3]] = b[:, [1, 3]] * self.sy + self.top
        return b


def _resize_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """H×W×C uint8 → out_h×out_w×C float32, bilinear with half-pixel centres (cv2.INTER_LINEAR's mapping).

    The float reference :func:`resize_bilinear_u8` is checked against (tests); the letterbox uses the latter."""
    h, w = img.shape[:2]
    if (h, w) == (out_h, out_w):
        return img.astype(np.float32)

    def taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(n_out, dtype=np.float32) + 0.5) * (n_in / n_out) - 0.5
        src = np.clip(src, 0.0, n_in - 1)
        i0 = np.floor(src).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (src - i0).astype(np.float32)

    y0, y1, fy = taps(h, out_h)
    x0, x1, fx = taps(w, out_w)
    # gather the four neighbours in uint8 (output-sized), blend in float32
    r0, r1 = img[y0], img[y1]
    fx3 = fx[None, :, None]
    top = r0[:, x0].astype(np.float32)
    top += (r0[:, x1] - top) * fx3
    bot = r1[:, x0].astype(np.float32)
    bot += (r1[:, x1] - bot) * fx3
    top += (bot - top) * fy[:, None, None]
    return top


_FRAC_BITS = 11  #: fixed-point weights of the non-integer-factor pass (OpenCV's INTER_LINEAR uses 11 bits too)


def _axis_pass(a: np.ndarray, bits: int, axis: int, n_out: int) -> tuple[np.ndarray, int]:
    """One separable bilinear pass (half-pixel centres) along ``axis`` on integers holding value·2^bits.

    An integer factor ``s = n_in / n_out`` puts every output sample on a pixel (odd s) or half-way between two
    (even s): strided slices, exact. Otherwise two taps with 11-bit weights (int32)."""
    n_in = a.shape[axis]
    if n_in == n_out:
        return a, bits

    def take(sl: slice | np.ndarray) -> np.ndarray:
        return a[sl] if axis == 0 else a[:, sl]

    if n_in % n_out == 0:
        s = n_in // n_out
        if s % 2:
            return take(slice((s - 1) // 2, None, s)), bits
        lo = take(slice(s // 2 - 1, None, s)).astype(np.uint16 if a.dtype == np.uint8 else a.dtype)
        lo += take(slice(s // 2, None, s))
        return lo, bits + 1
    src = np.clip((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
    i0 = np.floor(src).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = np.rint((src - i0) * (1 << _FRAC_BITS)).astype(np.int32)
    shape = (-1, 1, 1) if axis == 0 else (1, -1, 1)
    out = take(i0).astype(np.int32)
    out *= ((1 << _FRAC_BITS) - w1).reshape(shape)
    hi = take(i1).astype(np.int32)
    hi *= w1.reshape(shape)
    out += hi
    return out, bits + _FRAC_BITS


def resize_bilinear_u8(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """H×W×C uint8 → out_h×out_w×C uint8, bilinear with half-pixel centres (cv2.INTER_LINEAR's mapping), in
    integer arithmetic, rounded to nearest.

    Exact (the true bilinear value, rounded) when each side shrinks by an integer factor — 1280×720 → 640×360,
    1920×1080 → 640×360, 1280×720 → 320×180 — through strided slices; otherwise 11-bit fixed-point weights,
    within one grey level of the float result. It is what the letterbox runs: several times faster than
    :func:`_resize_bilinear` plus float conversion, and, like Ultralytics' own preprocessing (OpenCV into
    uint8), the detector sees whole grey levels."""
    h, w = img.shape[:2]
    if (h, w) == (out_h, out_w):
        return img
    a, bits = _axis_pass(img, 0, 0, out_h)
    a, bits = _axis_pass(a, bits, 1, out_w)
    if bits == 0:
        return np.ascontiguousarray(a)
    a = a.astype(np.int32) if a.dtype == np.uint16 and bits > 7 else a
    a += 1 << (bits - 1)
    a >>= bits
    return a.astype(np.uint8)


def letterbox(image: np.ndarray, input_hw: tuple[int, int], spec: Letterbox | None = None) -> tuple[np.ndarray, LetterboxMeta]:
    """RGB uint8 H×W×3 → the graph input ``[1, 3, H_in, W_in]`` float32 and the mapping back.

    The image is resized into a uint8 canvas (:func:`resize_bilinear_u8`) and turned into the float tensor by
    one table look-up per channel (scale, mean, std folded into the table)."""
    spec = spec or Letterbox()
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or min(img.shape[:2]) < 1:
        raise InputError(f"detector input must be an H×W×3 uint8 RGB image, got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    ih, iw = int(input_hw[0]), int(input_hw[1])
    r = min(ih / h, iw / w)
    nh, nw = max(1, min(ih, round(h * r))), max(1, min(iw, round(w * r)))
    if spec.center:
        top, left = round((ih - nh) / 2 - 0.1), round((iw - nw) / 2 - 0.1)
    else:
        top = left = 0
    meta = LetterboxMeta((h, w), (ih, iw), nw / w, nh / h, left, top)
    pad = float(spec.pad_value)
    levels = np.arange(256, dtype=np.float32)
    order = (2, 1, 0) if spec.color == "BGR" else (0, 1, 2)
    tensor = np.empty((1, 3, ih, iw), np.float32)
    if pad.is_integer() and 0 <= pad <= 255:
        canvas = np.full((ih, iw, 3), int(pad), dtype=np.uint8)
        canvas[top : top + nh, left : left + nw] = resize_bilinear_u8(img, nh, nw)
        for c, src in enumerate(order):
            lut = (levels * np.float32(spec.scale) - np.float32(spec.mean[c])) / np.float32(spec.std[c])
            np.take(lut, canvas[..., src], out=tensor[0, c])
        return tensor, meta
    # a fractional pad value: the float canvas
    canvas_f = np.full((ih, iw, 3), pad, dtype=np.float32)
    canvas_f[top : top + nh, left : left + nw] = resize_bilinear_u8(img, nh, nw)
    for c, src in enumerate(order):
        tensor[0, c] = (canvas_f[..., src] * np.float32(spec.scale) - np.float32(spec.mean[c])) / np.float32(spec.std[c])
    return tensor, meta


# =============================================================================================== layout
def _dim(d: Any) -> int | None:
    return int(d) if isinstance(d, (int, np.integer)) and int(d) > 0 else None


def detect_layout(outputs: list[tuple[str, list[Any]]]) -> str:
    """The layout of a graph from its outputs ``[(name, shape)]`` (shape entries int or symbolic).

    Raises :class:`InputError` when the outputs match no known layout (the message lists them)."""
    shapes = {n: list(s) for n, s in outputs}
    desc = ", ".join(f"{n} {s}" for n, s in outputs)
    if len(outputs) == 1:
        _, s = outputs[0]
        if len(s) == 3:
            d1, d2 = _dim(s[1]), _dim(s[2])
            if d2 == 6 and (d1 is None or d1 > 6):
                return "end2end"
            if d1 is not None and d1 >= 5 and (d2 is None or d2 > d1):
                return "yolo"
    if len(outputs) == 2:
        r3 = [n for n, s in shapes.items() if len(s) == 3 and _dim(s[2]) == 5]
        r2 = [n for n, s in shapes.items() if len(s) == 2]
        if len(r3) == 1 and len(r2) == 1:
            return "dets_labels"
    raise InputError(
        f"not a person detector in a known layout (outputs: {desc})",
        hint="known: Ultralytics [1,4+C,A] ('yolo'), [1,K,6] ('end2end'), dets [1,K,5] + labels [1,K] "
             "('dets_labels'); force one with --detector-layout",
    )


def check_layout(layout: str, outputs: list[tuple[str, list[Any]]]) -> None:
    """A forced layout must at least fit the graph's output ranks and counts."""
    ranks = sorted(len(s) for _, s in outputs)
    want = {"yolo": [3], "end2end": [3], "dets_labels": [2, 3]}.get(layout)
    if want is None:
        raise InputError(f"unknown detector layout '{layout}' (known: {', '.join(LAYOUTS)})")
    last = [_dim(s[-1]) for _, s in outputs if len(s) == 3]
    fits = ranks == want and (layout != "end2end" or last[0] in (None, 6)) and (layout != "dets_labels" or last[0] in (None, 5))
    if not fits:
        desc = ", ".join(f"{n} {s}" for n, s in outputs)
        raise InputError(f"the detector's outputs ({desc}) do not fit the '{layout}' layout",
                         hint="leave --detector-layout out to recognise the layout from the outputs")


#: most classes a detector's metadata may name
MAX_CLASSES = 100_000


def parse_class_names(text: str | None) -> dict[int, str] | None:
    """Ultralytics' ``names`` metadata (a dict literal ``{0: 'person', ...}``) → dict, or None when absent.

    Parsed with :func:`ast.literal_eval` (literals only, no code runs); anything else is an error."""
    if text is None:
        return None
    if len(text) > 1_000_000:
        raise InputError("detector metadata 'names' is implausibly large")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise InputError("detector metadata 'names' is not a Python literal dict of class names") from None
    if isinstance(value, list):
        value = dict(enumerate(value))
    if not isinstance(value, dict) or not all(
        type(k) is int and 0 <= k < MAX_CLASSES and isinstance(v, str) for k, v in value.items()
    ):
        # a negative index would pick a box row instead of a class row (-1: boxes scored by their height)
        raise InputError(f"detector metadata 'names' must map class indices 0..{MAX_CLASSES - 1} to names")
    return {int(k): str(v) for k, v in value.items()}


def person_class_from_names(names: dict[int, str] | None, override: int | None = None) -> tuple[int, str]:
    """(person class index, where it came from): option > metadata ``person`` > COCO default 0."""
    if override is not None:
        if override < 0:
            raise InputError(f"person class must be ≥ 0, got {override}")
        return int(override), "option"
    if names is None:
        return 0, "default (COCO index 0; the graph has no class names)"
    hits = [k for k, v in names.items() if v.strip().lower() == "person"]
    if not hits:
        shown = ", ".join(f"{k}: {v!r}" for k, v in list(names.items())[:6])
        raise InputError(
            f"the detector has no 'person' class (its classes: {shown}{', …' if len(names) > 6 else ''})",
            hint="use a detector trained on people (COCO), or name the class index with --detector-person-class",
        )
    return int(min(hits)), "metadata"


# =============================================================================================== decode + NMS
@dataclass
class Detections:
    """People found in one image: boxes in image pixels (x1, y1, x2, y2), scores, class indices."""

    boxes: np.ndarray  #: [K, 4] float64
    scores: np.ndarray  #: [K]
    classes: np.ndarray  #: [K] int64

    def __len__(self) -> int:
        return len(self.scores)


def _area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, classes: np.ndarray | None = None,
        max_keep: int | None = None) -> np.ndarray:
    """Greedy class-aware NMS: indices kept, by decreasing score (ties: lower index first).

    Class awareness uses the usual offset trick: boxes of class c are shifted by c·(max coordinate + 1), so
    boxes of different classes never overlap."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(s) == 0:
        return np.zeros(0, dtype=np.int64)
    if classes is not None:
        c = np.asarray(classes, dtype=np.float64).reshape(-1)
        b = b + (c * (np.abs(b).max() + 1.0))[:, None]
    order = np.argsort(-s, kind="stable")
    area = _area(b)
    keep: list[int] = []
    limit = len(s) if max_keep is None else int(max_keep)
    while order.size and len(keep) < limit:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        if not rest.size:
            break
        xx1 = np.maximum(b[i, 0], b[rest, 0])
        yy1 = np.maximum(b[i, 1], b[rest, 1])
        xx2 = np.minimum(b[i, 2], b[rest, 2])
        yy2 = np.minimum(b[i, 3], b[rest, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        union = area[i] + area[rest] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def decode(outputs: dict[str, np.ndarray], layout: str, person_class: int, score_threshold: float,
           iou_threshold: float, max_detections: int = 100, output_names: list[str] | None = None,
           all_classes: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Graph outputs → (boxes [K,4] x1y1x2y2 in input pixels, scores [K], classes [K]), person class only
    (all classes with ``all_classes``), after the score threshold and class-aware NMS."""
    names = output_names or list(outputs)
    if layout == "yolo":
        out = np.asarray(outputs[names[0]])
        if out.ndim != 3 or out.shape[0] != 1 or out.shape[1] < 5:
            raise InputError(f"detector output {names[0]} has shape {list(out.shape)}; the 'yolo' layout is [1, 4+C, A]")
        pred = out[0]
        ncls = pred.shape[0] - 4
        if not all_classes and not 0 <= person_class < ncls:
            raise InputError(f"person class {person_class} but the detector has classes 0..{ncls - 1}")
        if all_classes:
            sc = pred[4:].max(0)
            m = sc > score_threshold
            cls = pred[4:, m].argmax(0).astype(np.int64)  # only for the anchors over the threshold
        else:
            sc = pred[4 + person_class]
            m = sc > score_threshold
            cls = np.full(int(m.sum()), person_class, dtype=np.int64)
        cxcywh = pred[:4, m].T.astype(np.float64)
        sc = sc[m].astype(np.float64)
        boxes = np.empty_like(cxcywh)
        boxes[:, :2] = cxcywh[:, :2] - cxcywh[:, 2:] / 2
        boxes[:, 2:] = cxcywh[:, :2] + cxcywh[:, 2:] / 2
    elif layout == "end2end":
        out = np.asarray(outputs[names[0]])
        if out.ndim != 3 or out.shape[0] != 1 or out.shape[2] != 6:
            raise InputError(f"detector output {names[0]} has shape {list(out.shape)}; the 'end2end' layout is [1, K, 6]")
        boxes, sc, cls = out[0, :, :4].astype(np.float64), out[0, :, 4].astype(np.float64), out[0, :, 5].round().astype(np.int64)
    elif layout == "dets_labels":
        dets = next((np.asarray(outputs[n]) for n in names if np.asarray(outputs[n]).ndim == 3), None)
        labels = next((np.asarray(outputs[n]) for n in names if np.asarray(outputs[n]).ndim == 2), None)
        if dets is None or labels is None or dets.shape[-1] != 5 or labels.shape[:2] != dets.shape[:2] or dets.shape[0] != 1:
            raise InputError("the 'dets_labels' layout needs dets [1, K, 5] and labels [1, K]")
        boxes, sc, cls = dets[0, :, :4].astype(np.float64), dets[0, :, 4].astype(np.float64), labels[0].round().astype(np.int64)
    else:
        raise InputError(f"unknown detector layout '{layout}' (known: {', '.join(LAYOUTS)})")
    keep = sc > score_threshold
    if not all_classes:
        keep &= cls == person_class
    keep &= np.isfinite(boxes).all(1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, sc, cls = boxes[keep], sc[keep], cls[keep]
    # NMS also for graphs that did their own (cheap; catches exports with a loose in-graph IoU)
    idx = nms(boxes, sc, iou_threshold, cls, max_keep=max_detections)
    return boxes[idx], sc[idx], cls[idx]


# =============================================================================================== detector
@dataclass
class DetectorConfig:
    """What the manifest's ``detector`` block holds (and :meth:`Detector.load` takes as options)."""

    layout: str
    input_name: str
    input_size: tuple[int, int]  #: [H, W] the letterbox targets
    person_class: int = 0
    person_class_source: str = "default"
    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_detections: int = 100
    preprocess: Letterbox = field(default_factory=Letterbox)
    output_names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layout": self.layout, "input_name": self.input_name, "input_size": list(self.input_size),
            "person_class": self.person_class, "person_class_source": self.person_class_source,
            "score_threshold": self.score_threshold, "iou_threshold": self.iou_threshold,
            "max_detections": self.max_detections, "preprocess": self.preprocess.to_dict(),
            "output_names": list(self.output_names),
        }

    @classmethod
    def from_dict(cls, d: Any) -> DetectorConfig:
        if not isinstance(d, dict):
            raise ManifestError("manifest 'detector' block must be an object")
        try:
            cfg = cls(
                layout=str(d["layout"]), input_name=str(d["input_name"]),
                input_size=(int(d["input_size"][0]), int(d["input_size"][1])),
                person_class=int(d.get("person_class", 0)), person_class_source=str(d.get("person_class_source", "")),
                score_threshold=float(d.get("score_threshold", 0.25)), iou_threshold=float(d.get("iou_threshold", 0.45)),
                max_detections=int(d.get("max_detections", 100)),
                preprocess=Letterbox.from_dict(d["preprocess"]), output_names=[str(n) for n in d.get("output_names", [])],
            )
        except (KeyError, TypeError, ValueError, IndexError):
            raise ManifestError("manifest 'detector' block lacks layout, input_name, input_size or preprocess") from None
        cfg.check()
        return cfg

    def check(self) -> None:
        if self.layout not in LAYOUTS:
            raise InputError(f"unknown detector layout '{self.layout}' (known: {', '.join(LAYOUTS)})")
        if not 0.0 <= self.score_threshold < 1.0:
            raise InputError(f"detector score threshold must be in [0, 1), got {self.score_threshold}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise InputError(f"detector IoU threshold must be in (0, 1], got {self.iou_threshold}")
        if self.max_detections < 1:
            raise InputError(f"max detections must be ≥ 1, got {self.max_detections}")
        if not 0 <= self.person_class < MAX_CLASSES:
            raise InputError(f"detector person class must lie in 0..{MAX_CLASSES - 1}, got {self.person_class}")
        if min(self.input_size) < 32 or max(self.input_size) > 4096:
            raise InputError(f"detector input size {list(self.input_size)} is out of range (32–4096)")


def inspect_graph(session: Any, layout: str | None = None, person_class: int | None = None,
                  preprocess: str | Letterbox | None = None, input_size: tuple[int, int] | None = None,
                  score_threshold: float = 0.25, iou_threshold: float = 0.45, max_detections: int = 100) -> DetectorConfig:
    """A :class:`DetectorConfig` for an ONNX Runtime session: layout from the outputs (or ``layout``),
    input size from the graph (or ``input_size`` for dynamic graphs), person class from the metadata."""
    ins = session.get_inputs()
    if len(ins) != 1:
        raise InputError(f"a detector graph takes one image input; this one takes {[i.name for i in ins]}")
    shape = list(ins[0].shape)
    if len(shape) != 4 or (_dim(shape[1]) not in (None, 3)):
        raise InputError(f"detector input '{ins[0].name}' has shape {shape}; expected [1, 3, H, W]")
    outs = [(o.name, list(o.shape)) for o in session.get_outputs()]
    found = layout or detect_layout(outs)
    check_layout(found, outs)
    gh, gw = _dim(shape[2]), _dim(shape[3])
    if gh and gw:
        if input_size is not None and tuple(input_size) != (gh, gw):
            raise InputError(f"detector input is fixed at {gh}×{gw}; --detector-size {list(input_size)} does not match")
        size = (gh, gw)
    else:
        size = tuple(input_size) if input_size else DEFAULT_INPUT_SIZE  # type: ignore[assignment]
    meta = session.get_modelmeta().custom_metadata_map or {}
    if isinstance(preprocess, Letterbox):
        pre = preprocess
    elif preprocess is not None:
        pre = Letterbox.preset(preprocess)
    elif found in ("yolo", "end2end"):
        pre = Letterbox.preset("ultralytics")
    else:
        raise InputError(
            "a 'dets_labels' detector (YOLOX/RTMDet) needs its preprocessing named",
            hint="pass --detector-preprocess yolox (BGR 0–255, pad 114, top-left) or ultralytics (RGB ÷255, centred); "
                 "check the model's documentation",
        )
    names = parse_class_names(meta.get("names"))
    pc, src = person_class_from_names(names, person_class)
    cfg = DetectorConfig(found, ins[0].name, (int(size[0]), int(size[1])), pc, src, float(score_threshold),
                         float(iou_threshold), int(max_detections), pre, [o[0] for o in outs])
    cfg.check()
    return cfg


class Detector:
    """A person detector: ``detector(rgb) → Detections`` in image pixels. Build it with :meth:`load`."""

    def __init__(self, backend: Any, config: DetectorConfig) -> None:
        self.backend = backend
        self.config = config

    @classmethod
    def load(cls, path: str | Path, config: DetectorConfig | None = None, device: str = "auto",
             threads: int | None = None, **options: Any) -> Detector:
        """Load a detector ONNX. ``config`` (from a manifest) or ``options`` for :func:`inspect_graph`."""
        from hpsedge.runtime.backends.ort import OrtBackend

        p = Path(path)
        if not p.is_file():
            raise InputError(f"detector file not found: {p}")
        backend = OrtBackend(p, device=device, threads=threads, warmup=False)
        if config is None:
            config = inspect_graph(backend.session, **options)
        elif sorted(backend.output_names) != sorted(config.output_names) and config.output_names:
            raise ManifestError(f"{p.name}: outputs {backend.output_names} differ from the manifest's {config.output_names}")
        det = cls(backend, config)
        det(np.zeros((config.input_size[0], config.input_size[1], 3), np.uint8))  # warm-up, and a shape check
        return det

    def preprocess(self, image: np.ndarray) -> tuple[dict[str, np.ndarray], LetterboxMeta]:
        x, meta = letterbox(image, self.config.input_size, self.config.preprocess)
        return {self.config.input_name: x}, meta

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return self.backend.run(feeds)
        except Exception as exc:
            if isinstance(exc, (InputError, BackendError)):
                raise
            raise BackendError(f"the detector failed to run: {str(exc).splitlines()[0][:200] if str(exc) else exc}") from None

    def postprocess(self, outputs: dict[str, np.ndarray], meta: LetterboxMeta) -> Detections:
        c = self.config
        boxes, scores, classes = decode(outputs, c.layout, c.person_class, c.score_threshold, c.iou_threshold,
                                        c.max_detections, self.backend.output_names)
        img_boxes = meta.to_image(boxes)
        ok = (img_boxes[:, 2] - img_boxes[:, 0] >= 1.0) & (img_boxes[:, 3] - img_boxes[:, 1] >= 1.0)
        return Detections(img_boxes[ok], scores[ok], classes[ok])

    def __call__(self, image: np.ndarray) -> Detections:
        feeds, meta = self.preprocess(image)
        return self.postprocess(self.run(feeds), meta)
