"""Overlay pictures: the projected mesh (or a skeleton) over the image, coloured by confidence.

Drawing uses Pillow, imported lazily (it comes with the ``cli`` extra); the geometry is numpy.

* **One camera per model.** Everything is drawn with the pinhole camera each result carries
  (``view_focal``, ``view_center``, ``view_transl``): the camera its reported ``joints2d`` use, so the
  picture and the JSON agree (CLIFF/TokenHMR: the full-image camera; PARE/HMR: the crop camera mapped
  into the image, as POCO's demo maps its 2D joints). The skeleton is the reported ``joints2d`` themselves.
* **Colours.** Red (0) → yellow (0.5) → green (1). The mesh (painter's algorithm, Lambert-shaded) takes
  the person's confidence; bones and joints take POCO's per-joint confidence (``joint_confidence``: 1 −
  the σ accumulated along the kinematic chain, clipped), so uncertain limbs show as such. A badge near the
  box gives the person's confidence, and a legend says what the colours mean and which rule made them.
* **Error bound.** With a fitted ``error_bound.json`` the badge adds ``≤ X mm @ 90%``: with that probability
  every joint of the person is within X mm of the truth (root-relative; :mod:`hpsedge.runtime.error_bound`),
  and the legend says so.
* People whose root is at or behind the camera are drawn as a grey box marked "behind camera".
* ``side_view`` adds a panel seen from the side (depth to the right, metres), where depth errors show.

Without an SMPL file the pose is drawn as a stick figure whose bone lengths are a fixed, approximate
adult skeleton (written by hand; it is not SMPL data): good enough to see the pose, not a measurement.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import HpsedgeError
from hpsedge.runtime.confidence import SMPL_PARENTS

#: hand-made approximate rest positions (metres, SMPL axes: +x body-left, +y up, +z forward), pelvis first
APPROX_REST_JOINTS = np.array(
    [
        [0.00, -0.22, 0.02], [0.06, -0.31, 0.02], [-0.06, -0.31, 0.02], [0.00, -0.11, 0.00],
        [0.10, -0.69, 0.02], [-0.10, -0.69, 0.02], [0.00, 0.02, 0.03], [0.08, -1.09, -0.02],
        [-0.08, -1.09, -0.02], [0.00, 0.08, 0.03], [0.12, -1.14, 0.10], [-0.12, -1.14, 0.10],
        [0.00, 0.29, 0.00], [0.07, 0.20, 0.01], [-0.07, 0.20, 0.01], [0.00, 0.40, 0.04],
        [0.17, 0.23, 0.00], [-0.17, 0.23, 0.00], [0.43, 0.23, -0.02], [-0.43, 0.23, -0.02],
        [0.68, 0.23, 0.00], [-0.68, 0.23, 0.00], [0.76, 0.22, -0.01], [-0.76, 0.22, -0.01],
    ],
    dtype=np.float64,
)


def approx_skeleton(pose_rotmat: np.ndarray) -> np.ndarray:
    """Forward kinematics of the approximate skeleton: [K,24,3,3] local rotations → [K,24,3] joints."""
    rot = np.asarray(pose_rotmat, dtype=np.float64)
    k = rot.shape[0]
    glob = np.empty_like(rot)
    pos = np.empty((k, 24, 3))
    glob[:, 0] = rot[:, 0]
    pos[:, 0] = APPROX_REST_JOINTS[0]
    for j in range(1, 24):
        p = SMPL_PARENTS[j]
        glob[:, j] = glob[:, p] @ rot[:, j]
        pos[:, j] = pos[:, p] + glob[:, p] @ (APPROX_REST_JOINTS[j] - APPROX_REST_JOINTS[p])
    return pos


def confidence_color(conf: float | None) -> tuple[int, int, int]:
    """Red (0) → yellow (0.5) → green (1); grey when the model gives no confidence."""
    if conf is None or not np.isfinite(conf):
        return (170, 170, 170)
    c = float(np.clip(conf, 0.0, 1.0))
    if c < 0.5:
        return (230, round(60 + 2 * c * 170), 40)
    return (round(230 - (c - 0.5) * 2 * 190), 230, 40)


def _pil() -> Any:
    try:
        from PIL import Image, ImageDraw
    except ImportError as exc:
        raise HpsedgeError("drawing overlays needs Pillow", hint="pip install 'hpsedge[cli]' (or pillow)") from exc
    return Image, ImageDraw


_FONTS: dict[int, tuple[Any, bool]] = {}


def _font(size: int) -> tuple[Any, bool]:
    """(a font of ``size`` px, whether it has Greek letters): DejaVu Sans where installed, else Pillow's own."""
    if size not in _FONTS:
        from PIL import ImageFont

        try:
            _FONTS[size] = (ImageFont.truetype("DejaVuSans.ttf", size), True)
        except OSError:
            _FONTS[size] = (ImageFont.load_default(size=size), False)
    return _FONTS[size]


def _text(text: str, greek: bool) -> str:
    if greek:
        return text
    text = text.replace("σ₀", "sigma0").replace("σ", "sigma").replace("−", "-")
    return text.replace("≤", "<=").replace("≥", ">=").replace("·", "|")


def text_size(image_hw: Sequence[int]) -> int:
    """Label height in pixels for an image: about 1/40 of its shorter side, at least 12."""
    return max(12, round(min(int(image_hw[0]), int(image_hw[1])) / 40))


def _shade(color: tuple[int, int, int], intensity: np.ndarray) -> np.ndarray:
    return (np.asarray(color, dtype=np.float64)[None, :] * intensity[:, None]).clip(0, 255).astype(np.uint8)


def draw_mesh(draw: Any, verts_cam: np.ndarray, faces: np.ndarray, verts2d: np.ndarray, color: tuple[int, int, int]) -> None:
    """Paint one mesh: back-face culled, far-to-near, Lambert-shaded towards the camera."""
    tri3 = verts_cam[faces]  # [F,3,3] camera frame (z forward, away from the camera)
    normals = np.cross(tri3[:, 1] - tri3[:, 0], tri3[:, 2] - tri3[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    view = -tri3.mean(axis=1)
    view /= np.linalg.norm(view, axis=1, keepdims=True) + 1e-12
    facing = (normals * view).sum(axis=1)
    # the synthetic/official winding may face either way: keep the side that faces the camera most
    if (facing > 0).sum() < (facing < 0).sum():
        facing = -facing
    keep = np.nonzero((facing > 0) & np.isfinite(verts2d[faces]).all(axis=(1, 2)))[0]
    order = keep[np.argsort(-tri3[keep, :, 2].mean(axis=1))]
    shades = _shade(color, 0.35 + 0.65 * facing[order])
    tri2 = verts2d[faces[order]]
    for pts, rgb in zip(tri2, shades, strict=True):
        draw.polygon([tuple(p) for p in pts.tolist()], fill=tuple(int(v) for v in rgb))


def _label(draw: Any, xy: tuple[float, float], text: str, fill: tuple[int, int, int], size: int = 12) -> None:
    """Text on a dark box, readable over any image."""
    font, greek = _font(size)
    text = _text(text, greek)
    x0, y0, x1, y1 = draw.textbbox(xy, text, font=font)
    pad = max(2, size // 6)
    draw.rectangle([x0 - pad, y0 - pad, x1 + pad, y1 + pad], fill=(0, 0, 0))
    draw.text(xy, text, fill=fill, font=font)


def _finite(p: np.ndarray) -> bool:
    return bool(np.isfinite(p).all() and (np.abs(p) < 1e6).all())


def draw_skeleton(draw: Any, joints2d: np.ndarray, color: tuple[int, int, int] | Sequence[tuple[int, int, int]],
                  width: int = 3) -> None:
    """Bones and joints; ``color`` is one colour or one per joint (a bone takes its child joint's colour).

    Each joint is a filled disc centred on its 2D position, drawn last, so the pixel at a joint is its colour.
    """
    colors = [color] * 24 if isinstance(color[0], int) else list(color)  # type: ignore[index]
    for j in range(1, 24):
        a, b = joints2d[SMPL_PARENTS[j]], joints2d[j]
        if _finite(a) and _finite(b):
            draw.line([tuple(a.tolist()), tuple(b.tolist())], fill=colors[j], width=width)
    r = max(2, width)
    for j in range(24):
        if _finite(joints2d[j]):
            x, y = joints2d[j].tolist()
            draw.ellipse([x - r - 1, y - r - 1, x + r + 1, y + r + 1], fill=(20, 20, 20))
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colors[j])


def draw_colorbar(draw: Any, width: int, height: int, label: str, size: int = 12, rule: str | None = None) -> None:
    """A vertical bar at the right edge: 1 (top, green) to 0 (bottom, red), its meaning and the rule."""
    bar_h = max(60, int(height * 0.35))
    bar_w = max(8, size)
    font, greek = _font(size)
    x0 = width - bar_w - 4 * size
    y0 = size
    for i in range(bar_h):
        c = 1.0 - i / max(bar_h - 1, 1)
        draw.line([(x0, y0 + i), (x0 + bar_w, y0 + i)], fill=confidence_color(c))
    draw.rectangle([x0, y0, x0 + bar_w, y0 + bar_h], outline=(255, 255, 255))
    _label(draw, (x0 + bar_w + size // 2, y0 - size // 2), "1.0", (255, 255, 255), size)
    _label(draw, (x0 + bar_w + size // 2, y0 + bar_h - size // 2), "0.0", (255, 255, 255), size)
    lines = [label] + (rule.split("\n") if rule else [])
    y = y0 + bar_h + size
    longest = max(draw.textlength(_text(line, greek), font=font) for line in lines)
    small = size if longest <= width * 0.45 else max(9, int(size * width * 0.45 / longest))
    font, greek = _font(small)
    for line in lines:
        w_text = draw.textlength(_text(line, greek), font=font)
        _label(draw, (max(4.0, width - w_text - size), y), line, (255, 255, 255), small)
        y += int(small * 1.5)


def _person_joints2d(r: Any) -> np.ndarray | None:
    """The 2D skeleton to draw: the reported ``joints2d``, else the approximate skeleton in the same camera."""
    if r.joints2d is not None:
        return np.asarray(r.joints2d, dtype=np.float64)
    if r.view_transl is None:
        return None
    joints = approx_skeleton(r.pose_rotmat[None])
    from hpsedge.runtime.camera import project_view

    return project_view(joints, np.asarray(r.view_transl)[None], r.view_focal, np.asarray(r.view_center),
                        getattr(r, "intrinsics", None))[0]


def _joint_colors(r: Any) -> list[tuple[int, int, int]]:
    jc = getattr(r, "joint_confidence", None)
    if jc is None:
        return [confidence_color(r.confidence)] * 24
    return [confidence_color(float(c)) for c in np.asarray(jc).reshape(24)]


def render_overlay(image_rgb: np.ndarray, results: Sequence[Any], faces: np.ndarray | None = None, *,
                   legend: str | None = None, side_view: bool = False,
                   track_ids: Sequence[int] | None = None) -> np.ndarray:
    """The overlay picture as an [H,W,3] uint8 array (see the module docstring).

    ``legend``: the rule behind the colours (e.g. "POCO-CLIFF: 1 − pelvis σ₀"), shown under the colour bar.
    ``side_view``: append a panel seen from the side (same height), for depth.
    ``track_ids``: one per result, written before its confidence (``#3 confidence 0.87``); by default a
    result's own ``track_id`` (the streaming pipeline's people carry one).
    """
    image_mod, draw_mod = _pil()
    img = image_mod.fromarray(np.ascontiguousarray(image_rgb)).convert("RGB")
    layer = img.copy()
    draw = draw_mod.Draw(layer)
    h, w = image_rgb.shape[:2]
    size = text_size((h, w))
    width = max(2, size // 4)
    visible = [r for r in results if not getattr(r, "behind_camera", False) and getattr(r, "view_transl", None) is not None]
    # nearest person last, so it is painted on top
    for r in sorted(visible, key=lambda r: -float(r.view_transl[2])):
        if r.vertices is not None and faces is not None:
            from hpsedge.runtime.camera import project_view

            verts_cam = r.vertices.astype(np.float64) + np.asarray(r.view_transl, np.float64)
            verts2d = project_view(r.vertices[None], np.asarray(r.view_transl)[None], r.view_focal,
                                   np.asarray(r.view_center), getattr(r, "intrinsics", None))[0]
            draw_mesh(draw, verts_cam, faces, verts2d, confidence_color(r.confidence))
    blended = image_mod.blend(img, layer, 0.85)
    draw = draw_mod.Draw(blended)
    for r in sorted(visible, key=lambda r: -float(r.view_transl[2])):
        j2d = _person_joints2d(r)
        if j2d is not None:
            draw_skeleton(draw, j2d, _joint_colors(r), width=width)
    ids = list(track_ids) if track_ids is not None else [getattr(r, "track_id", None) for r in results]
    for r, tid in zip(results, ids, strict=True):
        behind = getattr(r, "behind_camera", False)
        color = (150, 150, 150) if behind else confidence_color(r.confidence)
        x1, y1, x2, y2 = (float(v) for v in r.box)
        draw.rectangle([x1, y1, x2, y2], outline=color, width=max(2, width // 2))
        tag = person_tag(r, tid)
        _label(draw, (x1 + size // 3, max(0.0, y1 - 1.6 * size) if y1 > 2 * size else y1 + size // 3), tag, color, size)
    covs = sorted({float(c) for r in results if (c := getattr(r, "error_bound_coverage", None)) is not None})
    if covs:
        legend = (legend + "\n" if legend else "") + "mm: every joint within it (root-relative), p ≥ " + \
            "/".join(f"{c:.0%}" for c in covs)
    if any(r.confidence is not None for r in results) or legend:
        draw_colorbar(draw, w, h, "confidence", size, legend)
    if results and all(r.vertices is None for r in results) and visible:
        _label(draw, (size // 2, h - 2 * size), "skeleton with approximate bone lengths; pass --smpl for the mesh",
               (255, 255, 255), size)
    out = np.asarray(blended)
    if side_view:
        out = np.concatenate([out, render_side_view(results, (h, max(w // 2, 4 * size * 4)), faces)], axis=1)
    return out


def error_bound_tag(r: Any) -> str | None:
    """The badge text of a person's error bound: ``"≤ 84 mm @ 90%"`` (the ``body`` group: every joint), or None."""
    mm = getattr(r, "error_bound_mm", None)
    cov = getattr(r, "error_bound_coverage", None)
    if not mm or cov is None:
        return None
    value = mm.get("body", max(mm.values()))
    return f"≤ {value:.0f} mm @ {cov:.0%}" if np.isfinite(value) else None


def render_side_view(results: Sequence[Any], panel_hw: Sequence[int], faces: np.ndarray | None = None) -> np.ndarray:
    """The people seen from their right (orthographic): depth from the camera runs to the right, in metres.

    Points are in each result's drawing camera (``view_transl``); the camera sits at the left edge (z = 0),
    a grid line marks every metre of depth. Depth mistakes that the front view hides show here.
    """
    image_mod, draw_mod = _pil()
    h, w = int(panel_hw[0]), int(panel_hw[1])
    panel = image_mod.new("RGB", (w, h), (28, 28, 32))
    draw = draw_mod.Draw(panel)
    size = text_size((h, w))
    people = []
    for r in results:
        if getattr(r, "behind_camera", False) or getattr(r, "view_transl", None) is None:
            continue
        t = np.asarray(r.view_transl, np.float64)
        pts = (np.asarray(r.joints3d, np.float64) if r.joints3d is not None else approx_skeleton(r.pose_rotmat[None])[0]) + t
        verts = None if r.vertices is None else np.asarray(r.vertices, np.float64) + t
        if np.isfinite(pts).all():
            people.append((r, pts, verts))
    _label(draw, (size // 2, size // 2), "side view (depth → right, m)", (255, 255, 255), size)
    if not people:
        _label(draw, (size // 2, h // 2), "nobody in front of the camera", (200, 200, 200), size)
        return np.asarray(panel)
    allp = np.concatenate([p for _, p, v in people] + [v for _, _, v in people if v is not None])
    zmax = float(np.max(allp[:, 2])) * 1.1 + 0.5
    ymin, ymax = float(allp[:, 1].min()) - 0.2, float(allp[:, 1].max()) + 0.2
    margin = 2 * size
    scale = min((w - 2 * margin) / max(zmax, 1e-6), (h - 3 * margin) / max(ymax - ymin, 1e-6))
    y_mid = (ymin + ymax) / 2

    def to_px(p: np.ndarray) -> np.ndarray:
        return np.stack((margin + p[:, 2] * scale, h / 2 + (p[:, 1] - y_mid) * scale + margin / 2), axis=1)

    step = max(1, int(np.ceil(zmax / 10)))
    for z in range(0, int(zmax) + 1, step):
        x = margin + z * scale
        draw.line([(x, 2 * margin), (x, h - margin)], fill=(70, 70, 80), width=1)
        _label(draw, (x + 2, h - margin), f"{z} m", (200, 200, 200), max(10, size * 3 // 4))
    draw.polygon([(margin - size, h / 2 - size / 2), (margin, h / 2), (margin - size, h / 2 + size / 2)],
                 fill=(240, 240, 240))  # the camera, looking right
    for r, pts, verts in sorted(people, key=lambda q: -float(q[1][0, 0])):
        color = confidence_color(r.confidence)
        if verts is not None:
            for x, y in to_px(verts[:: max(1, len(verts) // 1500)]).tolist():
                draw.point((x, y), fill=color)
        draw_skeleton(draw, to_px(pts), _joint_colors(r), width=max(2, size // 5))
    return np.asarray(panel)


def contact_sheet(items: Sequence[tuple[str, np.ndarray]], columns: int = 4, thumb_width: int = 360) -> np.ndarray:
    """Thumbnails of ``(name, picture)`` pairs in a grid with their names: one PNG for a folder of images."""
    image_mod, draw_mod = _pil()
    if not items:
        raise HpsedgeError("a contact sheet needs at least one picture")
    cols = max(1, min(columns, len(items)))
    thumbs = []
    for name, pic in items:
        im = image_mod.fromarray(np.ascontiguousarray(pic)).convert("RGB")
        ratio = thumb_width / im.width
        thumbs.append((name, im.resize((thumb_width, max(1, round(im.height * ratio))))))
    size = 14
    cell_h = max(t.height for _, t in thumbs) + 2 * size
    rows = -(-len(thumbs) // cols)
    sheet = image_mod.new("RGB", (cols * (thumb_width + 8) + 8, rows * (cell_h + 8) + 8), (255, 255, 255))
    draw = draw_mod.Draw(sheet)
    font, greek = _font(size)
    for n, (name, t) in enumerate(thumbs):
        x = 8 + (n % cols) * (thumb_width + 8)
        y = 8 + (n // cols) * (cell_h + 8)
        sheet.paste(t, (x, y))
        draw.text((x, y + t.height + 2), _text(name, greek), fill=(0, 0, 0), font=font)
    return np.asarray(sheet)


def person_tag(r: Any, track_id: int | None = None) -> str:
    """The text beside a person's box: its track id when it has one (``#3``: videos, ``--source``), then its
    confidence (or why there is none) and its error bound when it has one."""
    tid = getattr(r, "track_id", None) if track_id is None else track_id
    head = f"#{int(tid)} " if tid is not None and int(tid) >= 0 else ""
    if getattr(r, "behind_camera", False):
        return head + "behind camera: not visible"
    tag = head + ("no confidence" if r.confidence is None else f"confidence {r.confidence:.2f}")
    bound = error_bound_tag(r)  # the metric error bound, when the folder has one (issue 25)
    return f"{tag} · {bound}" if bound else tag


def save_overlay(path: str | Path, image_rgb: np.ndarray, results: Sequence[Any], faces: np.ndarray | None = None,
                 **kwargs: Any) -> Path:
    image_mod, _ = _pil()
    out = Path(path)
    image_mod.fromarray(render_overlay(image_rgb, results, faces, **kwargs)).save(out)
    return out


def legend_text(model_name: str, postprocessing: dict[str, Any], has_sigma: bool, has_token_confidence: bool) -> str:
    """Lines (``\\n``-separated) saying which rule produced the colours (read from the manifest, not from
    family names)."""
    rule = postprocessing.get("sigma_score")
    if has_sigma and rule == "pelvis":
        person = "1 − pelvis σ₀; 0.01 when σ₀ > 0.8"
    elif has_sigma:
        person = "1 − mean accumulated σ; 0.01 when σ₀ > 0.4"
    elif has_token_confidence:
        return f"{model_name}\nperson: 1 − mean token entropy"
    else:
        return f"{model_name}\nno confidence output"
    return f"{model_name}\nperson: {person}\njoints: 1 − accumulated σ"


def legend_for(manifest: Any) -> str:
    """:func:`legend_text` for a loaded :class:`~hpsedge.runtime.manifest.Manifest` (its model, rule and outputs)."""
    return legend_text(manifest.model_name, manifest.postprocessing, manifest.has_sigma,
                       any(t.name == "token_confidence" for t in manifest.outputs))
