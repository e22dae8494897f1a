"""Reading images and person-box files (shared by ``hpsedge run`` and calibration).

Box files come in three shapes, all in pixels:

* simple: ``{"frame_001.jpg": [[x1, y1, x2, y2], ...], ...}`` (keys are file names, or paths relative to the
  box file or image folder);
* a bare list ``[[x1, y1, x2, y2], ...]`` when there is one image;
* COCO-style: ``{"images": [{"id", "file_name"}...], "annotations": [{"image_id", "bbox": [x, y, w, h]}...]}``
  (person annotations only when ``category_id`` is present and ``categories`` names a "person").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def check_regular_file(p: Path, what: str, max_bytes: int | None = None) -> int:
    """One :class:`InputError` unless ``p`` is a regular file (not a folder, FIFO or device) of at most
    ``max_bytes``; returns its size. The checks every read of an untrusted file starts with."""
    if p.is_dir():
        raise InputError(f"{what} {p} is a folder; pass the file itself")
    if not p.exists():
        raise InputError(f"{what} not found: {p}")
    if not p.is_file():
        raise InputError(f"{what} {p} is not a regular file (a FIFO or device); refusing to read it")
    size = p.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise InputError(f"{what} {p} is {size} bytes; the limit is {max_bytes}")
    return size


def _pillow_for(p: Path) -> Any:
    """Pillow's ``Image`` module once ``p`` is known to be a regular file (the checks every image read shares)."""
    if p.is_dir():
        raise InputError(f"{p} is a folder, not an image file")
    check_regular_file(p, "image")
    try:
        from PIL import Image
    except ImportError as exc:
        raise InputError("reading image files needs Pillow", hint="pip install pillow") from exc
    return Image


def _check_pixels(p: Path, w: int, h: int, limit: int | None) -> None:
    if limit and w * h > limit:
        raise InputError(f"{p} is {w}×{h} pixels, more than the {limit} pixel limit (a decompression bomb?)",
                         hint="downscale the image first")


def _unreadable(p: Path, exc: BaseException) -> InputError:
    return InputError(f"cannot read {p} as an image ({exc.__class__.__name__})", hint="is it a JPEG/PNG file?")


def read_image(path: str | Path) -> np.ndarray:
    """An image file as H×W×3 uint8 RGB (Pillow, imported lazily).

    Untrusted files: anything but a regular file is refused; images above Pillow's ``MAX_IMAGE_PIXELS``
    (decompression bombs) are refused before decoding; 16-bit and 32-bit integer images are scaled to 8 bits
    (not clipped), float images in [0, 1] are scaled by 255.
    """
    p = Path(path)
    image_mod = _pillow_for(p)
    try:
        with image_mod.open(p) as img:
            _check_pixels(p, *img.size, image_mod.MAX_IMAGE_PIXELS)
            return _to_rgb_uint8(img)
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"{p}: not enough memory to decode this image") from None
    except Exception as exc:  # Pillow raises OSError, ValueError, SyntaxError, struct.error, DecompressionBombError...
        raise _unreadable(p, exc) from None


def probe_image(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file from its header, without decoding it: the checks of
    :func:`read_image` that need no pixels (a regular file, a format Pillow knows, the pixel limit), so that
    a command can refuse a non-image before it loads a model."""
    p = Path(path)
    image_mod = _pillow_for(p)
    try:
        with image_mod.open(p) as img:
            w, h = img.size
    except Exception as exc:  # UnidentifiedImageError, OSError, DecompressionBombError...
        raise _unreadable(p, exc) from None
    _check_pixels(p, w, h, image_mod.MAX_IMAGE_PIXELS)
    return int(w), int(h)


def _to_rgb_uint8(img: Any) -> np.ndarray:
    """A Pillow image as RGB uint8; high-bit-depth modes are scaled, not clipped."""
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img)
        if mode == "F":
            arr = arr.astype(np.float64)
            arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
            scale = 255.0 if arr.size and arr.max() <= 1.0 else 255.0 / 65535.0
        else:
            scale = 255.0 / 65535.0
        gray = np.clip(np.rint(arr.astype(np.float64) * scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def list_images(path: str | Path) -> list[Path]:
    """One image file, or the image files of a folder (sorted); an empty folder is an error."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.exists() and not p.is_dir():
        raise InputError(f"{p} is not a regular file (a FIFO or device); refusing to read it")
    if not p.is_dir():
        raise InputError(f"no such image or folder: {p}")
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{p} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _as_boxes(value: Any, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{where}: boxes must be numbers [[x1, y1, x2, y2], ...]") from None
    if not np.isfinite(arr).all():
        raise InputError(f"{where}: boxes hold NaN, inf or numbers too large for a float")
    if arr.size == 0:
        return np.zeros((0, 4))
    if arr.ndim == 1 and arr.shape[0] == 4:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InputError(f"{where}: boxes must be [[x1, y1, x2, y2], ...], got shape {arr.shape}")
    return arr


def _person_category_ids(data: dict[str, Any], source: str) -> set[int] | None:
    cats = data.get("categories")
    if not cats:
        return None
    try:
        ids = {int(c["id"]) for c in cats if str(c.get("name", "")).lower() == "person"}
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        raise InputError(f"{source}: COCO 'categories' entries need an 'id' and a 'name'") from None
    return ids or None


def parse_boxes(data: Any, source: str = "boxes file") -> dict[str, np.ndarray]:
    """Box-file content → {image name: [K,4] x1,y1,x2,y2}. A bare list is keyed by ``""``."""
    if isinstance(data, list):
        return {"": _as_boxes(data, source)}
    if not isinstance(data, dict):
        raise InputError(f"{source} must hold a JSON object or list")
    if "images" in data and "annotations" in data:
        if not isinstance(data["images"], list) or not isinstance(data["annotations"], list):
            raise InputError(f"{source}: COCO 'images' and 'annotations' must be lists")
        try:
            names = {int(im["id"]): str(im["file_name"]) for im in data["images"]}
        except (KeyError, TypeError, ValueError, OverflowError):
            raise InputError(f"{source}: COCO 'images' entries need 'id' and 'file_name'") from None
        person_ids = _person_category_ids(data, source)
        out: dict[str, list[list[float]]] = {n: [] for n in names.values()}
        for i, ann in enumerate(data["annotations"]):
            if not isinstance(ann, dict):
                raise InputError(f"{source}: annotation {i} is not an object")
            try:
                if person_ids is not None and int(ann.get("category_id", -1)) not in person_ids:
                    continue
                name = names[int(ann["image_id"])]
                x, y, w, h = (float(v) for v in ann["bbox"])
            except KeyError:
                raise InputError(f"{source}: annotation {i} refers to image_id {ann.get('image_id')!r}, "
                                 "which is not in 'images'") from None
            except (TypeError, ValueError, OverflowError):
                raise InputError(f"{source}: annotation {i} has no valid 'bbox' [x, y, w, h] or ids") from None
            out[name].append([x, y, x + w, y + h])
        return {n: _as_boxes(b, f"{source} ({n})") for n, b in out.items()}
    return {str(k): _as_boxes(v, f"{source} ({k})") for k, v in data.items()}


#: largest box file read (COCO's largest annotation files are ~0.5 GB)
MAX_BOX_FILE_BYTES = 1 << 30


def _finite_float(text: str) -> float:
    v = float(text)
    if not np.isfinite(v):
        raise ValueError(f"number {text[:40]} is too large for a float")
    return v


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def read_json_file(path: str | Path, what: str = "JSON file", max_bytes: int = MAX_BOX_FILE_BYTES) -> Any:
    """An untrusted JSON file: a regular file, at most ``max_bytes``, strict JSON (no NaN/Infinity, no number
    that overflows a float, no integer longer than Python allows); every failure is one :class:`InputError`."""
    p = Path(path)
    check_regular_file(p, what, max_bytes)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{p} is not UTF-8 text (is it a {what}?)") from None
    except OSError as exc:
        raise InputError(f"cannot read {p} ({exc.strerror or exc})") from None
    return loads_strict(text, str(p), what)


def loads_strict(text: str, source: str = "JSON", what: str = "JSON file") -> Any:
    """``json.loads`` for untrusted text: NaN/Infinity, numbers that overflow a float, integers longer than
    Python allows and absurd nesting are one :class:`InputError` each."""
    try:
        return json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)
    except RecursionError:
        raise InputError(f"{source} nests too deeply to be a {what}") from None
    except ValueError as exc:  # JSONDecodeError, huge integers, non-finite numbers
        first = (str(exc).splitlines() or [""])[0][:160]
        raise InputError(f"{source} is not valid JSON ({first})") from None


def load_box_table(path: str | Path) -> tuple[dict[str, np.ndarray], bool]:
    """A box file → ({image key: [K,4]}, whether it is COCO-style). The one reader of box files (``run``,
    calibration, curation)."""
    data = read_json_file(path, "boxes file")
    coco = isinstance(data, dict) and "images" in data and "annotations" in data
    return parse_boxes(data, source=str(path)), coco


def load_boxes(path: str | Path, per_image: bool = False) -> dict[str, np.ndarray]:
    """A box file → {image key: [K,4]}. ``per_image``: one image's own file (a list of boxes or
    ``{"boxes": [...]}``), keyed by ``""``."""
    if not per_image:
        return load_box_table(path)[0]
    data = read_json_file(path, "boxes file")
    if isinstance(data, dict) and "boxes" in data:
        data = data["boxes"]
    if not isinstance(data, list):
        raise InputError(f"{path}: a per-image boxes file holds a list [[x1, y1, x2, y2], ...] or {{'boxes': [...]}}")
    return parse_boxes(data, str(path))


def boxes_for(images: Sequence[Path], table: dict[str, np.ndarray], source: str = "boxes file") -> list[np.ndarray]:
    """Match every image to its boxes by path, then by file name; every image must be found."""
    if set(table) == {""}:
        if len(images) != 1:
            raise InputError(f"{source} holds a bare list of boxes but {len(images)} images were given",
                             hint='key the boxes by file name: {"img.jpg": [[x1, y1, x2, y2]]}')
        return [table[""]]
    by_name: dict[str, np.ndarray] = {}
    for key, boxes in table.items():
        by_name.setdefault(Path(key).name, boxes)
    out = []
    missing: list[str] = []
    for img in images:
        hit = table.get(str(img)) if str(img) in table else by_name.get(img.name)
        if hit is None:
            missing.append(img.name)
        else:
            out.append(hit)
    if missing:
        raise InputError(
            f"{source} has no boxes for {len(missing)} image(s): {', '.join(missing[:3])}"
            + (" …" if len(missing) > 3 else ""),
            hint="its keys must be the image file names",
        )
    return out


def stems_unique(paths: Iterable[Path]) -> bool:
    names = [p.stem for p in paths]
    return len(names) == len(set(names))
