"""Image + person boxes → model inputs, in numpy alone.

Coordinate conventions (they match POCO's demo, ``saidwivedi/POCO: pocolib/utils/vibe_image_utils.py``
``get_single_image_crop_demo`` → ``generate_patch_image_cv`` → ``cv2.warpAffine``):

* Pixel ``(col, row)`` of an image has its **centre at the integer coordinate** ``(x, y) = (col, row)``;
  ``x`` grows to the right and ``y`` downwards (OpenCV convention). All box and centre values are in
  **source-image pixels** (float).
* Boxes come in as ``[K, 4]`` ``(x1, y1, x2, y2)``. A box's ``center`` is ``((x1+x2)/2, (y1+y2)/2)``;
  POCO's ``size`` (``b`` in CLIFF, ``scale·200`` in the official code) is ``max(x2−x1, y2−y1)·bbox_scale``,
  the side of the square box that is cropped.
* The crop maps the box centre to crop coordinate ``(W_out/2, H_out/2)`` (e.g. 112, not 111.5, for 224) and
  the box width ``box_w`` to ``W_out`` crop pixels: ``x_src = cx + (x_crop − W_out/2)·box_w/W_out``, the
  same for ``y`` with ``box_h/H_out``. So the box's top-left corner lands on crop coordinate ``(0, 0)``.
* Sampling is bilinear with a constant 0 border (``INTER_LINEAR``, ``BORDER_CONSTANT``): source pixels
  outside the image count as 0.

Decision: the crop is done in numpy (no native dependency in the runtime) with exact float bilinear
weights, then rounded half up to uint8 like OpenCV. OpenCV 4.x (what POCO ran with) rounds the source
coordinate to 1/32 pixel and uses 15-bit integer weights for uint8; OpenCV 5 samples float images at the
exact coordinate. So the two agree to float rounding (float32 images) and within 1 gray level (uint8) when
the source coordinates lie on the 1/32 grid, and otherwise differ by at most the local gradient times
1/64 px. ``tests/test_preprocess.py`` checks both cases against ``cv2.warpAffine``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hpsedge.errors import InputError, ManifestError
from hpsedge.runtime.manifest import INPUT_RULE_WIDTHS

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CropMeta",
    "as_rgb_uint8",
    "cliff_bbox_info",
    "crop_boxes",
    "crop_images",
    "crop_matrices",
    "focal_length",
    "normalize",
    "preprocess",
    "square_boxes",
    "validate_boxes",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------------


def as_rgb_uint8(image: Any, bgr: bool = False) -> np.ndarray:
    """Validate an ``H×W×3`` uint8 image and return it as a C-contiguous RGB array.

    Args:
        image: an ``[H, W, 3]`` uint8 array (anything ``np.asarray`` accepts, e.g. a PIL RGB image).
        bgr: ``True`` if the channels are in BGR order (``cv2.imread``); they are flipped to RGB.

    Raises:
        InputError: wrong dtype (e.g. float images in [0, 1]), wrong number of dimensions or channels,
            or an empty image. The message names what was received.
    """
    try:
        arr = np.asarray(image)
    except Exception as exc:  # pragma: no cover - exotic objects
        raise InputError(f"image of type {type(image).__name__} cannot be read as an array") from exc
    if arr.dtype != np.uint8:
        raise InputError(
            f"image must be uint8 H×W×3, got dtype {arr.dtype} with shape {tuple(arr.shape)}",
            "convert with (img * 255).round().astype(np.uint8) if it is float in [0, 1]",
        )
    if arr.ndim != 3 or arr.shape[2] != 3:
        hint = "drop the alpha channel: img[..., :3]" if arr.ndim == 3 and arr.shape[2] == 4 else None
        if arr.ndim == 2:
            hint = "grayscale images need 3 channels: np.repeat(img[..., None], 3, axis=2)"
        raise InputError(f"image must be H×W×3 uint8, got shape {tuple(arr.shape)}", hint)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"image is empty: shape {tuple(arr.shape)}")
    if bgr:
        arr = arr[..., ::-1]
    return np.ascontiguousarray(arr)


def _image_hw(image_hw: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in image_hw)
    except (TypeError, ValueError) as exc:
        raise InputError(f"image_hw must be (height, width), got {image_hw!r}") from exc
    if h <= 0 or w <= 0:
        raise InputError(f"image_hw must be positive, got {(h, w)}")
    return h, w


def validate_boxes(boxes: Any, image_hw: Sequence[int]) -> np.ndarray:
    """Check person boxes and return them as a float64 ``[K, 4]`` array of ``(x1, y1, x2, y2)`` pixels.

    ``K = 0`` (e.g. ``[]``) is allowed and gives shape ``(0, 4)``. A box may stick out of the image, but must
    overlap it (``x2 > 0``, ``x1 < W``, ``y2 > 0``, ``y1 < H``).

    Raises:
        InputError: not ``[K, 4]``, non-numeric, NaN/inf, ``x2 <= x1`` or ``y2 <= y1``, or a box entirely
            outside the image. The message names the first offending box by index.
    """
    h, w = _image_hw(image_hw)
    try:
        arr = np.array(boxes, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"boxes must be numbers in a [K, 4] array (x1, y1, x2, y2): {exc}") from exc
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        hint = "wrap a single box as [[x1, y1, x2, y2]]" if arr.shape == (4,) else None
        raise InputError(f"boxes must have shape [K, 4] (x1, y1, x2, y2), got {tuple(arr.shape)}", hint)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"box {i} has NaN or inf coordinates: {arr[i].tolist()}")
    x1, y1, x2, y2 = arr.T
    bad = (x2 <= x1) | (y2 <= y1)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(
            f"box {i} has zero or negative area: (x1, y1, x2, y2) = {arr[i].tolist()}",
            "boxes are (x1, y1, x2, y2) corners, not (x, y, w, h)",
        )
    bad = (x2 <= 0) | (x1 >= w) | (y2 <= 0) | (y1 >= h)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(
            f"box {i} {arr[i].tolist()} lies entirely outside the {w}×{h} (W×H) image",
        )
    bad = np.maximum(x2 - x1, y2 - y1) > MAX_BOX_SCALE * max(h, w)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(
            f"box {i} {arr[i].tolist()} is more than {MAX_BOX_SCALE:g}× larger than the {w}×{h} (W×H) image",
            "boxes are pixel corners (x1, y1, x2, y2) of this image; were they scaled or normalised?",
        )
    return arr


#: a box side may be at most this many times the image's larger side (a 1e30 box is an error, not a crop)
MAX_BOX_SCALE = 8.0


# ---------------------------------------------------------------------------------------------------
# boxes → crop geometry
# ---------------------------------------------------------------------------------------------------


def _check_scale(scale: float) -> float:
    s = float(scale)
    if not np.isfinite(s) or s <= 0:
        raise InputError(f"bbox scale must be a positive number, got {scale!r}")
    return s


def square_boxes(boxes: np.ndarray, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """POCO's square boxes: ``center [K, 2] = ((x1+x2)/2, (y1+y2)/2)``, ``size [K] = max(w, h)·scale``.

    POCO's demo uses ``scale = 1.0`` (no enlargement). ``size`` is in source pixels (= official
    ``scale·200``). ``boxes`` should come from :func:`validate_boxes`.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = _check_scale(scale)
    center = np.stack(((b[:, 0] + b[:, 2]) / 2.0, (b[:, 1] + b[:, 3]) / 2.0), axis=1)
    size = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) * s
    return center, size


def crop_boxes(
    boxes: np.ndarray, out_hw: Sequence[int], scale: float = 1.0, keep_aspect: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes → ``(center [K, 2], box_wh [K, 2])``: the source rectangle that fills an ``out_hw`` crop.

    With ``keep_aspect`` (the manifest's ``square: true``) the scaled box is grown, never shrunk, to the
    crop's aspect ratio ``W_out/H_out``: for a square crop this is POCO's square of side ``max(w, h)·scale``;
    for ``out_hw = (256, 192)`` it is ``(3S/4, S)`` with ``S = max(h, 4w/3)·scale``, exactly the central
    256×192 of TokenHMR's 256×256 crop of the square box of side ``S``. Without ``keep_aspect`` the scaled
    box is stretched to the crop.
    """
    oh, ow = _image_hw(out_hw)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = _check_scale(scale)
    center = np.stack(((b[:, 0] + b[:, 2]) / 2.0, (b[:, 1] + b[:, 3]) / 2.0), axis=1)
    w = (b[:, 2] - b[:, 0]) * s
    h = (b[:, 3] - b[:, 1]) * s
    if keep_aspect:
        if oh == ow:
            w = h = np.maximum(w, h)
        else:
            aspect = ow / oh
            w, h = np.maximum(w, h * aspect), np.maximum(h, w / aspect)
    return center, np.stack((w, h), axis=1)


def crop_matrices(center: np.ndarray, box_wh: np.ndarray, out_hw: Sequence[int]) -> np.ndarray:
    """Affine matrices ``[K, 2, 3]`` (float64) mapping **crop** pixel coordinates to **source** coordinates.

    ``[x_src, y_src] = M @ [x_crop, y_crop, 1]`` with
    ``M = [[bw/W_out, 0, cx − bw/2], [0, bh/H_out, cy − bh/2]]``, i.e. the box centre goes to crop
    coordinate ``(W_out/2, H_out/2)`` and the box's top-left corner to ``(0, 0)``. This is the inverse of the
    matrix POCO's ``gen_trans_from_patch_cv`` builds (``scale=1, rot=0``), up to its float32 rounding of the
    three point pairs; pass ``M`` to ``cv2.warpAffine`` with ``WARP_INVERSE_MAP`` to reproduce it.

    Args:
        center: ``[K, 2]`` box centres ``(cx, cy)`` in source pixels.
        box_wh: ``[K]`` square side (POCO's ``size``) or ``[K, 2]`` ``(box_w, box_h)`` in source pixels.
        out_hw: crop ``(H_out, W_out)``.
    """
    oh, ow = _image_hw(out_hw)
    c = np.asarray(center, dtype=np.float64).reshape(-1, 2)
    wh = np.asarray(box_wh, dtype=np.float64)
    if wh.ndim == 1:
        wh = np.stack((wh, wh), axis=1)
    if wh.shape != c.shape:
        raise InputError(f"box_wh must be [K] or [K, 2] matching center {c.shape}, got {wh.shape}")
    if not (np.isfinite(wh).all() and (wh > 0).all() and np.isfinite(c).all()):
        raise InputError("crop boxes need finite centres and positive finite sizes")
    m = np.zeros((c.shape[0], 2, 3), dtype=np.float64)
    m[:, 0, 0] = wh[:, 0] / ow
    m[:, 0, 2] = c[:, 0] - wh[:, 0] / 2.0
    m[:, 1, 1] = wh[:, 1] / oh
    m[:, 1, 2] = c[:, 1] - wh[:, 1] / 2.0
    return m


# ---------------------------------------------------------------------------------------------------
# bilinear crop
# ---------------------------------------------------------------------------------------------------


def _pair_taps(coord: np.ndarray, n: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps along one axis of length ``n >= 2`` as a pair of adjacent pixels ``(p, p + 1)``.

    ``p = clip(floor(coord), 0, n − 2)``; ``w_lo``/``w_hi`` are the weights of pixels ``p`` and ``p + 1``.
    Where a tap of ``floor(coord)`` or ``floor(coord) + 1`` falls outside ``[0, n)`` its weight goes nowhere,
    which is the zero border; a coordinate farther out than one pixel gets two zero weights.
    """
    # Beyond [−2, n + 1] both taps are outside anyway; clipping keeps the int conversion safe.
    coord = np.clip(coord, -2.0, n + 1.0)
    fl = np.floor(coord)
    frac = coord - fl
    i0 = fl.astype(np.intp)
    p = np.clip(i0, 0, n - 2)
    w_lo = np.where(i0 == p, 1.0 - frac, 0.0) + np.where(i0 + 1 == p, frac, 0.0)
    w_hi = np.where(i0 == p + 1, 1.0 - frac, 0.0) + np.where(i0 + 1 == p + 1, frac, 0.0)
    return p, w_lo.astype(dtype), w_hi.astype(dtype)


def crop_images(
    image: np.ndarray,
    matrices: np.ndarray,
    out_hw: Sequence[int],
    out_dtype: type | np.dtype = np.uint8,
) -> np.ndarray:
    """Bilinear affine crops with a zero border, vectorised over persons: ``[K, H_out, W_out, C]``.

    Output pixel ``(x, y)`` of crop ``k`` samples the source at ``matrices[k] @ [x, y, 1]`` (crop → source,
    see :func:`crop_matrices`; pixel centres at integer coordinates). Neighbours outside the image count as
    0, like ``cv2.warpAffine(..., flags=INTER_LINEAR | WARP_INVERSE_MAP, borderMode=BORDER_CONSTANT)``.
    Matrices without rotation/shear take a separable fast path; any other affine works too (slower).

    Args:
        image: ``[H, W, C]`` uint8 or float array (use :func:`as_rgb_uint8` first for camera images).
        matrices: ``[K, 2, 3]`` crop → source.
        out_hw: ``(H_out, W_out)``.
        out_dtype: ``np.uint8`` (values rounded half up and clipped to [0, 255], like OpenCV) or a float
            dtype (the exact bilinear value, same scale as the input, no rounding). Arithmetic is float32
            unless the image or ``out_dtype`` is float64.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[0] == 0 or img.shape[1] == 0 or img.dtype.kind not in "uif":
        raise InputError(f"crop_images needs an [H, W, C] numeric image, got {img.dtype} {tuple(img.shape)}")
    oh, ow = _image_hw(out_hw)
    m = np.asarray(matrices, dtype=np.float64)
    if m.ndim != 3 or m.shape[1:] != (2, 3):
        raise InputError(f"matrices must be [K, 2, 3], got {tuple(m.shape)}")
    out_dt = np.dtype(out_dtype)
    if out_dt != np.uint8 and out_dt.kind != "f":
        raise InputError(f"out_dtype must be uint8 or a float dtype, got {out_dt}")
    work = np.float64 if np.float64 in (img.dtype, out_dt) else np.float32
    k_n = m.shape[0]
    h, w, c = img.shape
    if k_n == 0:
        return np.zeros((0, oh, ow, c), dtype=out_dt)
    if not np.isfinite(m).all():
        raise InputError("crop matrices contain NaN or inf")
    if h < 2 or w < 2:  # pair taps need two pixels per axis; zero padding is the zero border anyway
        img = np.pad(img, ((0, max(0, 2 - h)), (0, max(0, 2 - w)), (0, 0)))
        h, w = img.shape[:2]
    flat = np.ascontiguousarray(img).reshape(h * w, c)
    # One index array (top-left pixel of each 2×2 neighbourhood) serves all four corners: the other three
    # are the same indices into the views flat[1:], flat[w:] and flat[w + 1:].
    corners = ((flat, 0, 0), (flat[1:], 0, 1), (flat[w:], 1, 0), (flat[w + 1 :], 1, 1))
    cols = np.arange(ow, dtype=np.float64)
    rows = np.arange(oh, dtype=np.float64)

    if not (m[:, 0, 1].any() or m[:, 1, 0].any()):
        # Separable: x depends on the output column only, y on the output row only.
        px, wx_lo, wx_hi = _pair_taps(m[:, 0, 0, None] * cols + m[:, 0, 2, None], w, work)  # [K, Wo]
        py, wy_lo, wy_hi = _pair_taps(m[:, 1, 1, None] * rows + m[:, 1, 2, None], h, work)  # [K, Ho]
        # Column weights repeated per channel so every product runs over a contiguous [K, Ho, Wo·C] block.
        wx = (np.repeat(wx_lo, c, axis=1)[:, None, :], np.repeat(wx_hi, c, axis=1)[:, None, :])
        wy = (wy_lo[:, :, None], wy_hi[:, :, None])
        shape = (k_n, oh, ow * c)
        idx = ((py * w)[:, :, None] + px[:, None, :]).reshape(-1)
        # Large buffers are allocated once per call and reused (fresh allocations cost page faults).
        direct = img.dtype == work
        raw = None if direct else np.empty((idx.size, c), dtype=img.dtype)
        out = np.empty(shape, dtype=work)
        acc = np.empty(shape, dtype=work)
        tmp = np.empty(shape, dtype=work)

        def gather(src: np.ndarray, dst: np.ndarray) -> None:
            # mode="clip" lets take write straight into `out=` (indices are in range by construction).
            if direct:
                np.take(src, idx, axis=0, out=dst.reshape(-1, c), mode="clip")
            else:
                np.take(src, idx, axis=0, out=raw, mode="clip")
                np.copyto(dst, raw.reshape(shape))

        # Top row pair into `out`, bottom row pair into `acc`: (left·wx_lo + right·wx_hi)·wy.
        for dst, (left, dy, _), (right, _, _) in ((out, *corners[:2]), (acc, *corners[2:])):
            gather(left, dst)
            dst *= wx[0]
            gather(right, tmp)
            tmp *= wx[1]
            dst += tmp
            dst *= wy[dy]
        out += acc
        out = out.reshape(k_n, oh, ow, c)
    else:
        # General affine: coordinates and weights per output pixel.
        xs = m[:, 0, 0, None, None] * cols + m[:, 0, 1, None, None] * rows[:, None] + m[:, 0, 2, None, None]
        ys = m[:, 1, 0, None, None] * cols + m[:, 1, 1, None, None] * rows[:, None] + m[:, 1, 2, None, None]
        px, wx_lo, wx_hi = _pair_taps(xs, w, work)  # [K, Ho, Wo]
        py, wy_lo, wy_hi = _pair_taps(ys, h, work)
        idx = (py * w + px).reshape(-1)
        wx = (wx_lo, wx_hi)
        wy = (wy_lo, wy_hi)
        out = np.zeros((k_n, oh, ow, c), dtype=work)
        for src, dy, dx in corners:
            vals = np.take(src, idx, axis=0, mode="clip").reshape(out.shape).astype(work)
            out += vals * (wy[dy] * wx[dx])[..., None]

    if out_dt == np.uint8:
        # Round half up like OpenCV. A convex combination of uint8 values stays in [0, 255] (a float32
        # excess of one ulp floors back to 255), so only other input dtypes need clipping.
        out += 0.5
        np.floor(out, out=out)
        if img.dtype != np.uint8:
            np.clip(out, 0, 255, out=out)
    return out.astype(out_dt, copy=False)


# ---------------------------------------------------------------------------------------------------
# normalisation and CLIFF conditioning
# ---------------------------------------------------------------------------------------------------


def normalize(
    crops: np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """``[K, H, W, C]`` crops (0–255, uint8 or float) → ``[K, C, H, W]`` float32 ``((x/255) − mean)/std``.

    The arithmetic is float32 in torchvision's order (``ToTensor``'s /255, then ``Normalize``'s
    ``(x − mean)/std``), so a uint8 crop gives bit-identical values to the official pipeline. ``mean`` and
    ``std`` are per channel, in the crops' channel order (RGB for POCO).
    """
    x = np.asarray(crops)
    if x.ndim != 4:
        raise InputError(f"crops must be [K, H, W, C], got shape {tuple(x.shape)}")
    c = x.shape[3]
    mu = np.asarray(mean, dtype=np.float32).reshape(-1)
    sd = np.asarray(std, dtype=np.float32).reshape(-1)
    if mu.shape != (c,) or sd.shape != (c,):
        raise InputError(f"mean and std need {c} values (one per channel), got {mu.size} and {sd.size}")
    if not (sd > 0).all():
        raise InputError(f"std must be positive, got {sd.tolist()}")
    xf = np.ascontiguousarray(np.moveaxis(x, 3, 1)).astype(np.float32)  # transpose the small dtype first
    xf /= np.float32(255.0)
    xf -= mu[:, None, None]
    xf /= sd[:, None, None]
    return xf


def focal_length(image_hw: Sequence[int]) -> float:
    """CLIFF's full-image focal length in pixels: the image diagonal ``√(H² + W²)``."""
    h, w = _image_hw(image_hw)
    return float(np.sqrt(float(h) ** 2 + float(w) ** 2))


def cliff_bbox_info(center: np.ndarray, size: np.ndarray, image_hw: Sequence[int]) -> np.ndarray:
    """CLIFF's bbox conditioning ``[K, 3]`` float32 (``pocolib/utils/image_utils.py: calculate_bbox_info``).

    With ``f = √(W² + H²)`` and ``b = size`` (the square box side in pixels):
    ``[(cx − W/2)/f·2.8, (cy − H/2)/f·2.8, (b − 0.24·f)/(0.06·f)]``, computed in float64 then cast.
    """
    h, w = _image_hw(image_hw)
    f = focal_length((h, w))
    c = np.asarray(center, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(size, dtype=np.float64).reshape(-1)
    if b.shape[0] != c.shape[0]:
        raise InputError(f"center has {c.shape[0]} rows but size has {b.shape[0]}")
    info = np.stack(
        (
            (c[:, 0] - w / 2.0) / f * 2.8,
            (c[:, 1] - h / 2.0) / f * 2.8,
            (b - 0.24 * f) / (0.06 * f),
        ),
        axis=1,
    )
    return info.astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# the one entry point
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CropMeta:
    """What post-processing needs to map model outputs back to the image.

    Attributes:
        center: ``[K, 2]`` float64 box centres ``(cx, cy)`` in source pixels.
        size: ``[K]`` float64 ``max(box_w, box_h)`` in source pixels. For a square crop this is the side of
            the cropped square box: POCO's ``b = scale·200`` (CLIFF bbox_info, full-image camera, 2D mapping),
            TokenHMR's ``bbox_size``. It already includes ``bbox_scale``.
        box_wh: ``[K, 2]`` float64 ``(box_w, box_h)`` of the source rectangle mapped onto the crop.
        image_hw: ``(H, W)`` of the source image.
        focal: CLIFF focal length ``√(H² + W²)`` in pixels.
        matrices: ``[K, 2, 3]`` float64 crop → source affines (:func:`crop_matrices`).
        out_hw: ``(H_out, W_out)`` of the crops.
    """

    center: np.ndarray
    size: np.ndarray
    box_wh: np.ndarray
    image_hw: tuple[int, int]
    focal: float
    matrices: np.ndarray
    out_hw: tuple[int, int]

    @property
    def num_persons(self) -> int:
        return int(self.center.shape[0])


def image_hw_input(center: np.ndarray, size: np.ndarray, image_hw: Sequence[int]) -> np.ndarray:
    """``[K, 2]`` float32: the full image's height and width in pixels, once per person (for models that
    condition on the frame size, e.g. to reason about the full-image camera)."""
    k = int(np.shape(center)[0])
    return np.tile(np.asarray([float(image_hw[0]), float(image_hw[1])], dtype=np.float32), (k, 1))


#: how the runtime makes an extra graph input from the crops: rule name → (width of the [K, width] input,
#: function(center [K, 2], square box side [K], image (H, W)) → [K, width] float32). A manifest names the
#: rule per input in ``preprocessing.extra_inputs``; a family picks one in its spec (``TensorDecl.rule``).
INPUT_RULES: dict[str, tuple[int, Any]] = {
    "cliff_bbox_info": (INPUT_RULE_WIDTHS["cliff_bbox_info"], cliff_bbox_info),
    "image_hw": (INPUT_RULE_WIDTHS["image_hw"], image_hw_input),
}
assert set(INPUT_RULES) == set(INPUT_RULE_WIDTHS), "every schema rule has its function"


def extra_input_rules(spec: Mapping[str, Any]) -> dict[str, str]:
    """``preprocessing.extra_inputs`` (input name → rule), checked against :data:`INPUT_RULES`."""
    block = spec.get("extra_inputs") if isinstance(spec, Mapping) else None
    if block is None:
        return {}
    if not isinstance(block, Mapping):
        raise ManifestError(f"preprocessing 'extra_inputs' must map input names to rules, got {block!r}"[:300])
    for name, rule in block.items():
        if not isinstance(name, str) or rule not in INPUT_RULES:
            raise ManifestError(
                f"preprocessing extra input {name!r}: rule {rule!r} is not one this hpsedge implements "
                f"({', '.join(INPUT_RULES)})"[:300], hint="upgrade hpsedge on this machine")
    return {str(k): str(v) for k, v in block.items()}


def _spec_value(spec: Mapping[str, Any], key: str, default: Any) -> Any:
    return spec[key] if key in spec and spec[key] is not None else default


def preprocess(
    image: Any, boxes: Any, spec: Mapping[str, Any], bgr: bool = False
) -> tuple[dict[str, np.ndarray], CropMeta]:
    """Image + boxes → ``(feeds, meta)``; pure and deterministic (no state, no randomness).

    Args:
        image: ``[H, W, 3]`` uint8, RGB (or BGR with ``bgr=True``).
        boxes: ``[K, 4]`` ``(x1, y1, x2, y2)`` pixels; ``K = 0`` gives empty feeds.
        spec: the manifest's ``preprocessing`` dict: ``input_size`` ``[H, W]`` (required), ``mean``/``std``
            (ImageNet by default), ``color`` (``"RGB"`` default, or ``"BGR"``: the model's channel order),
            ``bbox_scale`` (1.0), ``square`` (True: grow boxes to the crop's aspect ratio, see
            :func:`crop_boxes`), ``bbox_info`` (False; True for CLIFF models).
        bgr: the channel order of ``image``.

    Returns:
        ``feeds``: ``{"image": [K, 3, H, W] float32}`` plus ``"bbox_info": [K, 3] float32`` when the spec asks
        for it; ``meta``: :class:`CropMeta`.
    """
    if not isinstance(spec, Mapping) or "input_size" not in spec:
        raise ManifestError("preprocessing spec needs 'input_size' [H, W]")
    try:
        out_hw = _image_hw(spec["input_size"])
    except InputError as exc:
        raise ManifestError(f"preprocessing 'input_size' must be [H, W], got {spec['input_size']!r}") from exc
    color = str(_spec_value(spec, "color", "RGB")).upper()
    if color not in ("RGB", "BGR"):
        raise ManifestError(f"preprocessing 'color' must be 'RGB' or 'BGR', got {color!r}")
    mean = _spec_value(spec, "mean", IMAGENET_MEAN)
    std = _spec_value(spec, "std", IMAGENET_STD)
    scale = float(_spec_value(spec, "bbox_scale", 1.0))
    keep_aspect = bool(_spec_value(spec, "square", True))
    want_info = bool(_spec_value(spec, "bbox_info", False))

    rgb = as_rgb_uint8(image, bgr=bgr)
    image_hw = (int(rgb.shape[0]), int(rgb.shape[1]))
    b = validate_boxes(boxes, image_hw)
    center, box_wh = crop_boxes(b, out_hw, scale=scale, keep_aspect=keep_aspect)
    size = box_wh.max(axis=1) if box_wh.shape[0] else np.zeros((0,), dtype=np.float64)
    matrices = crop_matrices(center, box_wh, out_hw)
    crops = crop_images(rgb, matrices, out_hw, out_dtype=np.uint8)
    if color == "BGR":
        crops = crops[..., ::-1]
    feeds: dict[str, np.ndarray] = {"image": normalize(crops, mean, std)}
    if want_info:
        feeds["bbox_info"] = cliff_bbox_info(center, size, image_hw)
    for name, rule in extra_input_rules(spec).items():
        feeds[name] = INPUT_RULES[rule][1](center, size, image_hw)
    meta = CropMeta(
        center=center,
        size=size,
        box_wh=box_wh,
        image_hw=image_hw,
        focal=focal_length(image_hw),
        matrices=matrices,
        out_hw=out_hw,
    )
    return feeds, meta
