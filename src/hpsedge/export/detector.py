"""A person detector in the build folder (``hpsedge export build ... --detector det.onnx``).

Steps, all before the folder is renamed into place (so a failure leaves nothing half-written):

1. **verify**: the ONNX checker (full check), the layout and person class as the runtime reads them
   (:func:`hpsedge.runtime.detect.inspect_graph`), and a run on the calibration images (``--calib-images``;
   without them, on two synthetic frames — said in the report);
2. **copy** the graph into the folder as ``detector.onnx`` with its sha256, layout, input size, person class,
   thresholds and preprocessing in the manifest's ``detector`` block;
3. **precision** with the regressor's machinery: FP16 (:func:`hpsedge.export.precision.convert_fp16`, FP32 I/O) or
   INT8 (:func:`hpsedge.calib.quantize.quantize_int8`, calibrated on the letterboxed calibration images; the
   output tail — the last compute layer on each path to an output — stays in float);
4. **drift**: boxes of the precision graph against FP32 on the same images (matched one to one by IoU; the
   report gives mean and worst IoU and missing/extra boxes), in ``report.md``/``report.json``;
5. the **TensorRT static check** (:mod:`hpsedge.export.lint`) of the graph TensorRT would parse; the engine is
   built by ``export build`` next to the regressor's when TensorRT and a GPU are present.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import ExportError, HpsedgeError, InputError
from hpsedge.runtime.manifest import sha256_file

log = logging.getLogger(__name__)

DETECTOR_ONNX = "detector.onnx"
MAX_CALIB_IMAGES = 64
MAX_DETECTOR_BYTES = 2 << 30

__all__ = ["DETECTOR_ONNX", "add_detector", "box_drift", "detector_engine_name", "detector_key"]


def detector_key(precision: str) -> str:
    return "detector" if precision == "fp32" else f"detector_{precision}"


def detector_engine_name(precision: str) -> str:
    return f"detector.{precision}.engine"


def _images(calib_images: Path | None, limit: int) -> tuple[list[np.ndarray], str]:
    from hpsedge.runtime.io import list_images, read_image

    if calib_images is None:
        rng = np.random.default_rng(0)
        synth = [np.full((480, 640, 3), 114, np.uint8), rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)]
        return synth, "2 synthetic frames (no --calib-images)"
    paths = list_images(calib_images)[:limit]
    return [read_image(p) for p in paths], f"{len(paths)} calibration image(s) from {calib_images}"


def _session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc.__class__.__name__
        raise InputError(f"ONNX Runtime cannot load the detector {path.name}: {first}") from None


def _detect_all(path: Path, cfg: Any, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    from hpsedge.runtime.detect import Detector

    det = Detector.load(path, config=cfg, device="cpu")
    return [(d.boxes, d.scores) for d in (det(img) for img in images)]


def box_drift(ref: list[tuple[np.ndarray, np.ndarray]], got: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Per image, match the boxes of ``got`` to ``ref`` one to one (maximum total IoU); mean/worst IoU of the
    matches, boxes missing (in ref, unmatched or IoU < 0.5) and extra, and the largest score change."""
    from hpsedge.runtime.tracking import assign_max, iou_matrix

    ious: list[float] = []
    missing = extra = 0
    dscore = 0.0
    for (rb, rs), (gb, gs) in zip(ref, got, strict=True):
        iou = iou_matrix(rb, gb)
        pairs = [(i, j) for i, j in assign_max(iou) if iou[i, j] >= 0.5] if iou.size else []
        ious += [float(iou[i, j]) for i, j in pairs]
        dscore = max([dscore, *(abs(float(rs[i]) - float(gs[j])) for i, j in pairs)])
        missing += len(rb) - len(pairs)
        extra += len(gb) - len(pairs)
    return {
        "images": len(ref), "boxes_fp32": int(sum(len(r[0]) for r in ref)), "matched": len(ious),
        "mean_iou": round(float(np.mean(ious)), 4) if ious else None,
        "min_iou": round(float(np.min(ious)), 4) if ious else None,
        "missing": int(missing), "extra": int(extra), "max_score_change": round(dscore, 4),
    }


#: largest magnitude a person detector's float output may reach (boxes are input pixels, scores ≤ 1, logits small)
MAX_OUTPUT_MAGNITUDE = 1e6


def check_raw_outputs(session: Any, cfg: Any, images: list[np.ndarray], name: str) -> None:
    """Refuse a detector whose float outputs hold NaN/Inf or absurd values on these images.

    The decoder drops NaN scores and clips boxes, so a broken graph (all NaN: no boxes; all 1e30: a box over
    the whole frame) would otherwise pass the build check and ship.
    """
    from hpsedge.runtime.detect import letterbox

    outs_meta = session.get_outputs()
    for i, img in enumerate(images):
        outs = session.run(None, {cfg.input_name: letterbox(img, cfg.input_size, cfg.preprocess)[0]})
        for meta, arr in zip(outs_meta, outs, strict=False):
            a = np.asarray(arr)
            if a.dtype.kind != "f" or a.size == 0:
                continue
            if not np.isfinite(a).all():
                bad = int(np.count_nonzero(~np.isfinite(a)))
                raise InputError(
                    f"{name}: output '{meta.name}' holds {bad} NaN/Inf value(s) of {a.size} on verification image "
                    f"{i + 1}; refusing a detector that does not compute",
                    hint="re-export the detector (check its weights and opset)",
                )
            top = float(np.abs(a).max())
            if top > MAX_OUTPUT_MAGNITUDE:
                raise InputError(
                    f"{name}: output '{meta.name}' reaches {top:.3g} on verification image {i + 1} (a person "
                    f"detector's boxes and scores stay below {MAX_OUTPUT_MAGNITUDE:.0e}); refusing it",
                    hint="re-export the detector (check its weights and opset)",
                )


def add_detector(folder: Path, manifest: dict[str, Any], detector: Path, precision: str,
                 calib_images: Path | None = None, options: dict[str, Any] | None = None,
                 int8_flavor: str | None = None, trt_majors: tuple[int, ...] = (10, 11),
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Verify, copy and precision-convert ``detector`` into ``folder``; fill ``manifest["detector"]`` and its
    artifacts. Returns the report section (also kept under ``manifest["detector"]["drift"]``)."""
    import onnx

    from hpsedge.export.lint import lint_graph
    from hpsedge.runtime.detect import inspect_graph, letterbox

    step = progress or (lambda _m: None)
    from hpsedge.runtime.folder import Precision

    precision = Precision.parse(precision, "--detector-precision").value
    src = Path(detector)
    if not src.is_file():
        raise InputError(f"detector file not found: {src}")
    if src.stat().st_size > MAX_DETECTOR_BYTES:
        raise InputError(f"{src} is larger than 2 GiB; not a person detector hpsedge takes")
    if precision == "int8" and calib_images is None:
        raise HpsedgeError("an INT8 detector needs calibration images", hint="pass --calib-images DIR")
    step(f"checking the detector {src.name}")
    try:
        onnx.checker.check_model(str(src), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc.__class__.__name__
        raise InputError(f"{src.name} is not a valid ONNX model: {first}") from None
    session = _session(src)
    cfg = inspect_graph(session, **(options or {}))
    images, images_note = _images(calib_images, MAX_CALIB_IMAGES)
    step(f"checking the detector's raw outputs on {images_note}")
    check_raw_outputs(session, cfg, images, src.name)
    del session
    dst = folder / DETECTOR_ONNX
    shutil.copyfile(src, dst)
    step(f"running the detector on {images_note}")
    ref = _detect_all(dst, cfg, images)
    arts = manifest["artifacts"]
    arts["detector"] = {"file": DETECTOR_ONNX, "sha256": sha256_file(dst), "bytes": dst.stat().st_size,
                        "precision": "fp32"}
    section: dict[str, Any] = {"source": src.name, "precision": precision, "layout": cfg.layout,
                               "verified_on": images_note, "boxes_per_image_fp32": [len(r[0]) for r in ref]}
    graph = dst
    if precision != "fp32":
        out = folder / f"detector.{precision}.onnx"
        feeds = np.concatenate([letterbox(img, cfg.input_size, cfg.preprocess)[0] for img in images])
        if precision == "fp16":
            from hpsedge.export.precision import convert_fp16

            step("detector: FP16 graph")
            info = convert_fp16(dst, out, keep_fp32=[], range_feeds=[{cfg.input_name: feeds[i : i + 1]} for i in range(min(8, len(feeds)))])
            section["conversion"] = {k: info[k] for k in ("converter", "kept_nodes", "overflow_node_count", "casts")}
        else:
            from hpsedge.calib.graph import OUTPUT_TAIL
            from hpsedge.calib.quantize import quantize_int8

            step(f"detector: INT8 graph calibrated on {len(feeds)} letterboxed image(s)")
            kwargs = {"flavor": int8_flavor} if int8_flavor else {}
            # the output tail (the last compute layer on every path to an output: box decode, class scores)
            # stays in float, as the regressors' heads do: INT8 box coordinates would cost pixels
            try:
                res = quantize_int8(dst, out, {cfg.input_name: feeds}, batch=1, exclude=[OUTPUT_TAIL], **kwargs)
                note = None
            except ValueError as exc:
                # ONNX Runtime's histogram calibrators fail on a constant activation ("Too many bins for data
                # range"), e.g. a detector whose scores are all equal on these images: fall back to min/max
                note = f"percentile calibration failed ({str(exc).splitlines()[0][:120]}); used max calibration"
                log.warning("detector INT8: %s", note)
                res = quantize_int8(dst, out, {cfg.input_name: feeds}, batch=1, exclude=[OUTPUT_TAIL], method="max",
                                    **kwargs)
            section["conversion"] = {"calibration_images": len(feeds), **res.summary(),
                                     **({"note": note} if note else {})}
        arts[detector_key(precision)] = {"file": out.name, "sha256": sha256_file(out), "bytes": out.stat().st_size,
                                         "precision": precision}
        step(f"detector: {precision} boxes against FP32")
        section["drift"] = box_drift(ref, _detect_all(out, cfg, images))
        graph = out
    lint = lint_graph(graph, trt_majors)
    block = cfg.to_dict()
    block.update(precision=precision, source_file=src.name, sha256_source=sha256_file(src),
                 trt_check={f"trt{r.trt_major}": {"ok": r.ok, "errors": r.errors} for r in lint},
                 verification=section)
    manifest["detector"] = block
    section["trt_check_markdown"] = "\n".join(r.to_markdown(f"TensorRT static check of {graph.name}") for r in lint)
    return section


def write_detector_report(folder: Path, section: dict[str, Any]) -> None:
    """Append the detector section to report.md and report.json (after the build wrote them)."""
    md = folder / "report.md"
    js = folder / "report.json"
    data = json.loads(js.read_text()) if js.exists() else {}
    data["detector"] = {k: v for k, v in section.items() if k != "trt_check_markdown"}
    js.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    lines = ["", "## Person detector", "",
             f"- {section['source']} → layout `{section['layout']}`, precision {section['precision']}",
             f"- verified on {section['verified_on']}: FP32 boxes per image {section['boxes_per_image_fp32'][:16]}"
             + (" …" if len(section["boxes_per_image_fp32"]) > 16 else "")]
    d = section.get("drift")
    if d:
        worst = "–" if d["min_iou"] is None else f"{d['min_iou']:.3f}"
        mean = "–" if d["mean_iou"] is None else f"{d['mean_iou']:.3f}"
        if d["boxes_fp32"] == 0:
            verdict = "n/a: the FP32 detector found no person on these images"
        else:
            verdict = "ok" if (d["min_iou"] is not None and d["min_iou"] >= 0.9 and d["missing"] == 0
                               and d["extra"] == 0) else "CHECK"
        lines += [
            "", f"Boxes of the {section['precision']} detector against FP32 ({d['images']} images, "
            f"{d['boxes_fp32']} FP32 boxes):", "",
            "| matched | mean IoU | worst IoU | missing | extra | max score change | IoU ≥ 0.9 |",
            "|---:|---:|---:|---:|---:|---:|---|",
            f"| {d['matched']} | {mean} | {worst} | {d['missing']} | {d['extra']} | {d['max_score_change']:.4f} | {verdict} |",
        ]
    lines += ["", section.get("trt_check_markdown", "")]
    with open(md, "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def check_detector_args(precision: str | None, detector: Path | None) -> None:
    if detector is None and precision is not None:
        raise ExportError("--detector-precision goes with --detector")
