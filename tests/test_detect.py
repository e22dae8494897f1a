"""Person detector: layouts from real ONNX graphs, letterbox, decode, NMS against a reference, thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from detector_synth import NOISE_BOX, draw_people, make_detector
from hpsedge.errors import InputError
from hpsedge.runtime.detect import (
    Detector,
    Letterbox,
    decode,
    detect_layout,
    letterbox,
    nms,
    parse_class_names,
    person_class_from_names,
)
from hpsedge.runtime.tracking import iou_matrix

PEOPLE = [(100, 200, 300, 600), (250, 150, 450, 650)]
CAR = (800, 100, 900, 200)


def _frame(h: int = 720, w: int = 1280) -> np.ndarray:
    return draw_people(h, w, [*PEOPLE, CAR])


def _reference_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, thr: float) -> list[int]:
    """Textbook greedy NMS, pair by pair, per class (tests only)."""
    def iou(a: np.ndarray, b: np.ndarray) -> float:
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep: list[int] = []
    for i in order:
        if all(classes[i] != classes[k] or iou(boxes[i], boxes[k]) <= thr for k in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("layout", ["yolo", "end2end", "dets_labels"])
@pytest.mark.parametrize("size", [(320, 320), (256, 384), None], ids=["static", "static-rect", "dynamic"])
def test_boxes_land_on_rectangles(tmp_path, layout, size):
    path = make_detector(tmp_path / "det.onnx", layout, size=size)
    det = Detector.load(path, preprocess="ultralytics" if layout == "dets_labels" else None)
    assert det.config.layout == layout
    assert det.config.person_class == 0 and det.config.person_class_source == "metadata"
    found = det(_frame())
    assert len(found) == 2, found  # the car (class 2), the shifted duplicates and the low-score box are gone
    iou = iou_matrix(np.asarray(PEOPLE, float), found.boxes)
    assert iou.max(1).min() >= 0.9, iou
    assert set(found.classes.tolist()) == {0}
    assert found.scores == pytest.approx([0.9, 0.8], abs=1e-5)


def test_layout_detected_from_outputs_and_overridable(tmp_path):
    assert detect_layout([("output0", [1, 84, 8400])]) == "yolo"
    assert detect_layout([("output0", [1, 6, 8400])]) == "yolo"  # two classes: still anchors > channels
    assert detect_layout([("output0", [1, 300, 6])]) == "end2end"
    assert detect_layout([("output0", [1, "num_dets", 6])]) == "end2end"
    assert detect_layout([("dets", [1, "K", 5]), ("labels", [1, "K"])]) == "dets_labels"
    for outs in ([("logits", [1, 1000])], [("a", [1, 84, 8400]), ("b", [1, 3])], [("x", [1, "C", "A"])]):
        with pytest.raises(InputError, match="not a person detector in a known layout"):
            detect_layout(outs)
    path = make_detector(tmp_path / "bad.onnx", "not_a_detector")
    with pytest.raises(InputError, match="known layout"):
        Detector.load(path)
    # a forced layout that does not fit the outputs is one clear error, not a traceback
    e2e = make_detector(tmp_path / "e2e.onnx", "end2end")
    with pytest.raises(InputError, match="do not fit the 'dets_labels' layout"):
        Detector.load(e2e, layout="dets_labels", preprocess="ultralytics")
    with pytest.raises(InputError, match="unknown detector layout"):
        Detector.load(e2e, layout="ssd")
    assert Detector.load(e2e, layout="end2end").config.layout == "end2end"


def test_person_class_from_metadata_never_evaluated(tmp_path):
    assert parse_class_names("{0: 'person', 1: 'car'}") == {0: "person", 1: "car"}
    assert parse_class_names("['bg', 'person']") == {0: "bg", 1: "person"}
    assert person_class_from_names({0: "bg", 1: "Person"}) == (1, "metadata")
    for evil in ("__import__('os').system('true')", "{0: print('x')}", "{0: 1}", "7"):
        with pytest.raises(InputError):
            parse_class_names(evil)
    with pytest.raises(InputError, match="no 'person' class"):
        person_class_from_names({0: "cat", 1: "dog"})
    assert person_class_from_names({0: "cat"}, override=0) == (0, "option")
    assert person_class_from_names(None)[0] == 0
    # a detector without a person class is refused with one clear line, or run with --detector-person-class
    path = make_detector(tmp_path / "cars.onnx", "yolo", names={0: "cat", 1: "dog", 2: "car"})
    with pytest.raises(InputError, match="no 'person' class"):
        Detector.load(path)
    assert len(Detector.load(path, person_class=0)(_frame())) == 2


def test_dets_labels_needs_named_preprocessing(tmp_path):
    path = make_detector(tmp_path / "yolox.onnx", "dets_labels", names=None, threshold=127.5)
    with pytest.raises(InputError, match="preprocessing named"):
        Detector.load(path)
    det = Detector.load(path, preprocess="yolox")  # BGR 0–255, top-left: the graph thresholds at 127.5
    assert det.config.person_class_source.startswith("default")
    # the graph sees BGR: its person channels 0, 1 are blue and green of the RGB frame, the car is red
    found = det(draw_people(720, 1280, [*PEOPLE, CAR], channels=[2, 1, 0]))
    assert len(found) == 2
    assert iou_matrix(np.asarray(PEOPLE, float), found.boxes).max(1).min() >= 0.9


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("hw", [(720, 1280), (1280, 720), (333, 517), (640, 640)])
def test_letterbox_maps_back_exactly(hw, center):
    img = np.zeros((*hw, 3), np.uint8)
    spec = Letterbox(center=center)
    x, meta = letterbox(img, (640, 640), spec)
    assert x.shape == (1, 3, 640, 640) and x.dtype == np.float32
    h, w = hw
    boxes = np.array([[0, 0, w, h], [10.5, 20.25, 100, 200], [w / 3, h / 4, w / 2, h / 2]])
    back = meta.to_image(meta.to_input(boxes))
    np.testing.assert_allclose(back, boxes, atol=1e-9)
    # the image fills the input up to the padding, which is grey 114 (÷255) on both sides or none
    inb = meta.to_input(np.array([[0, 0, w, h]]))[0]
    assert min(inb[2] - inb[0], 640) == pytest.approx(640, abs=1) or inb[3] - inb[1] == pytest.approx(640, abs=1)
    if meta.top > 0:
        assert x[0, :, 0, :] == pytest.approx(114 / 255)
    if center and meta.left > 0:
        assert abs(meta.left - (640 - (inb[2] - inb[0]) - meta.left)) <= 1


def test_letterbox_resize_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (360, 500, 3), dtype=np.uint8)
    x, meta = letterbox(img, (320, 320))
    nh, nw = round(360 * meta.sy), round(500 * meta.sx)
    ref = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    got = x[0].transpose(1, 2, 0)[meta.top : meta.top + nh, meta.left : meta.left + nw]
    assert np.abs(got - ref).max() <= 1.5 / 255  # cv2 rounds to uint8 and uses fixed-point weights


def test_nms_equals_reference():
    rng = np.random.default_rng(1)
    for trial in range(30):
        k = int(rng.integers(0, 60))
        xy = rng.uniform(0, 300, (k, 2))
        wh = rng.uniform(5, 120, (k, 2))
        boxes = np.concatenate([xy, xy + wh], 1)
        scores = rng.uniform(0, 1, k).round(2)  # ties on purpose
        classes = rng.integers(0, 3, k)
        thr = float(rng.choice([0.3, 0.45, 0.7]))
        assert nms(boxes, scores, thr, classes).tolist() == _reference_nms(boxes, scores, classes, thr), trial
        assert nms(boxes, scores, thr).tolist() == _reference_nms(boxes, scores, np.zeros(k), thr), trial


def test_thresholds(tmp_path):
    path = make_detector(tmp_path / "det.onnx", "yolo", size=(320, 320))
    frame = _frame()
    low = Detector.load(path, score_threshold=0.1)(frame)
    assert len(low) == 3  # + the constant 0.2 box
    nb = NOISE_BOX
    assert iou_matrix(low.boxes, Detector.load(path).preprocess(frame)[1].to_image(np.array([nb]))).max() > 0.99
    assert len(Detector.load(path, score_threshold=0.85)(frame)) == 1
    # IoU threshold 0.99: the shifted duplicates survive NMS
    assert len(Detector.load(path, iou_threshold=0.99)(frame)) == 4
    assert len(Detector.load(path, max_detections=1)(frame)) == 1
    with pytest.raises(InputError, match="score threshold"):
        Detector.load(path, score_threshold=1.5)
    # all classes through decode (the car is class 2)
    det = Detector.load(path)
    feeds, _ = det.preprocess(frame)
    _, _, cls = decode(det.run(feeds), "yolo", 0, 0.25, 0.45, all_classes=True)
    assert sorted(cls.tolist()) == [0, 0, 2]


def test_no_people_and_bad_images(tmp_path):
    det = Detector.load(make_detector(tmp_path / "det.onnx", "yolo"))
    assert len(det(np.full((100, 200, 3), 30, np.uint8))) == 0
    for bad in (np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), np.zeros((0, 5, 3), np.uint8)):
        with pytest.raises(InputError):
            det(bad)
    with pytest.raises(InputError, match="not found"):
        Detector.load(tmp_path / "missing.onnx")


@pytest.mark.parametrize("hw, out", [((720, 1280), (360, 640)), ((1080, 1920), (360, 640)), ((720, 1280), (180, 320)),
                                     ((720, 1280), (234, 416)), ((333, 517), (206, 320)), ((90, 64), (300, 200))])
def test_integer_resize_is_the_rounded_bilinear(hw, out):
    """The letterbox's integer resize: exactly the float bilinear rounded to whole grey levels where each side
    shrinks by an integer factor (strided slices), within one level (11-bit weights) elsewhere; and equal to
    OpenCV's INTER_LINEAR on the integer-factor sizes."""
    from hpsedge.runtime.detect import _resize_bilinear, resize_bilinear_u8

    img = np.random.default_rng(3).integers(0, 256, (*hw, 3), dtype=np.uint8)
    got = resize_bilinear_u8(img, *out)
    assert got.dtype == np.uint8 and got.shape == (*out, 3)
    ref = _resize_bilinear(img, *out)
    exact = hw[0] % out[0] == 0 and hw[1] % out[1] == 0
    diff = np.abs(got.astype(np.float64) - np.floor(ref + 0.5))
    assert diff.max() == 0 if exact else diff.max() <= 1
    assert np.abs(got - ref).max() <= (0.5 if exact else 0.6)
    cv2 = pytest.importorskip("cv2")
    if exact:
        assert np.array_equal(got, cv2.resize(img, out[::-1], interpolation=cv2.INTER_LINEAR))
