""":func:`run_images`: a Predictor over image files, writing per-image JSON, meshes and overlays.

This is what ``hpsedge run --image`` does, as a library function: one image or a folder, person boxes per
image (or the whole image as one person), one ``<stem>.json`` per image (strict JSON), ``<stem>.npz``
with meshes and joints when the predictor has an SMPL model, ``<stem>_overlay.png`` and, for a folder,
``contact_sheet.png``. A bad image in a folder is skipped and named; the others still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import HpsedgeError
from hpsedge.runtime.manifest import dumps_strict

log = logging.getLogger("hpsedge")

#: a folder's contact sheet shows at most this many overlays, as thumbnails this wide (pixels)
CONTACT_SHEET_MAX = 64
CONTACT_SHEET_THUMB = 360


@dataclass
class ImagesSummary:
    """What :func:`run_images` did."""

    images: int
    persons: int
    behind_camera: int
    done: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: the results of the last image (the CLI prints them for a single image)
    last_results: list[Any] = field(default_factory=list)
    contact_sheet: Path | None = None


def _save_png(path: Path, pic: np.ndarray) -> None:
    from PIL import Image  # present: render_overlay needed it

    Image.fromarray(pic).save(path)


def _thumbnail(pic: np.ndarray, width: int) -> np.ndarray:
    """``pic`` scaled to ``width`` pixels wide (kept small: a folder can hold thousands of images)."""
    from PIL import Image

    im = Image.fromarray(pic)
    return np.asarray(im.resize((width, max(1, round(im.height * width / im.width)))))


def check_images(images: Sequence[Path]) -> None:
    """Refuse, before any model loads, inputs that cannot be run: a single file that is not an image, or a
    folder in which no file is (headers only, no decoding). A folder with some unreadable files passes: those
    are skipped and named by :func:`run_images`."""
    from hpsedge.runtime.io import probe_image

    bad: list[str] = []
    for path in images:
        try:
            probe_image(path)
        except HpsedgeError as exc:
            if len(images) == 1:
                raise
            bad.append(exc.message)
            continue
        return  # one readable image is enough to go on
    if bad:
        raise HpsedgeError(f"none of the {len(images)} files is a readable image (first: {bad[0]})")


def run_images(
    predictor: Any,
    images: Sequence[Path],
    out: Path,
    boxes: Sequence[np.ndarray | None] | None = None,
    *,
    overlay: bool = True,
    side_view: bool = False,
    progress: Callable[[int, int], None] | None = None,
    detector: Any | None = None,
    on_image: Callable[[int, np.ndarray, list[Any]], None] | None = None,
) -> ImagesSummary:
    """Run ``predictor`` on ``images`` and write into ``out``. Each image's people come from its boxes, else
    ``detector`` (the folder's person detector: ``hpsedge run --source`` finds the same people), else the
    whole image (:func:`hpsedge.runtime.api.people_boxes`). ``on_image(index, rgb, results)`` is called after
    each image (the ``--mcap``/``--rerun`` outputs).

    ``out`` must exist. A single image's error is raised; in a folder, bad images are skipped, named in
    the summary, and an :class:`HpsedgeError` naming them is raised after the others were written.
    """
    from hpsedge.runtime.api import people_boxes
    from hpsedge.runtime.draw import contact_sheet, legend_for, render_overlay
    from hpsedge.runtime.io import read_image

    per_image = list(boxes) if boxes is not None else [None] * len(images)
    faces = predictor.smpl.faces if predictor.smpl is not None else None
    legend = legend_for(predictor.manifest)
    sheet: list[tuple[str, np.ndarray]] = []
    summary = ImagesSummary(images=len(images), persons=0, behind_camera=0)
    for i, (path, bxs) in enumerate(zip(images, per_image, strict=True)):
        try:
            rgb = read_image(path)
            bxs, scores = people_boxes(detector, rgb, bxs)
            results = predictor.predict(rgb, bxs) if len(bxs) else []
        except HpsedgeError as exc:
            if len(images) == 1:
                raise
            summary.skipped.append((path.name, exc.message))
            log.warning("skipped %s: %s", path.name, exc.message)
            if progress:
                progress(i + 1, len(images))
            continue
        summary.persons += len(results)
        summary.behind_camera += sum(bool(r.behind_camera) for r in results)
        summary.done.append(path.name)
        summary.last_results = results
        doc = {
            "image": path.name,
            "image_size": [int(rgb.shape[1]), int(rgb.shape[0])],
            "model": predictor.manifest.model_name,
            "backend": f"{predictor.backend.name} ({predictor.backend.device})",
            "persons": [r.to_dict() for r in results],
        }
        if scores is not None:
            for person, score in zip(doc["persons"], scores, strict=True):
                person["detector_score"] = round(float(score), 4)
        if getattr(predictor, "intrinsics", None) is not None:
            doc["camera"] = predictor.intrinsics.to_dict()
        if on_image is not None:
            on_image(i, rgb, results)
        (out / f"{path.stem}.json").write_text(dumps_strict(doc, indent=1) + "\n", encoding="utf-8")
        if results and predictor.smpl is not None:
            np.savez_compressed(
                out / f"{path.stem}.npz",
                vertices=np.stack([r.vertices for r in results]),
                joints3d=np.stack([r.joints3d for r in results]),
                joints2d=np.stack([r.joints2d for r in results]),
                transl=np.stack([r.transl for r in results]),
                faces=faces,
            )
        if overlay:
            pic = render_overlay(rgb, results, faces, legend=legend, side_view=side_view)
            _save_png(out / f"{path.stem}_overlay.png", pic)
            if len(images) > 1 and len(sheet) < CONTACT_SHEET_MAX:
                sheet.append((path.name, _thumbnail(pic, CONTACT_SHEET_THUMB)))
        if progress:
            progress(i + 1, len(images))
    if sheet:
        summary.contact_sheet = out / "contact_sheet.png"
        _save_png(summary.contact_sheet, contact_sheet(sheet, thumb_width=CONTACT_SHEET_THUMB))
    if summary.skipped:
        shown = "; ".join(f"{n} ({m})" for n, m in summary.skipped[:3]) + (" …" if len(summary.skipped) > 3 else "")
        raise HpsedgeError(
            f"{len(summary.skipped)} of {len(images)} image(s) skipped: {shown}; the outputs of the other "
            f"{len(summary.done)} are in {out}",
            hint="fix or remove the skipped images and run again for them",
        )
    return summary
