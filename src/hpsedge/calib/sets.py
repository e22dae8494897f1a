"""Calibration sets: images or video frames + person boxes → the model's graph inputs, saved as ``.npz``.

A calibration set is made with the runtime's own :func:`hpsedge.runtime.preprocess.preprocess` and the export
folder's manifest ``preprocessing`` block, so its tensors are bit-identical to what the runtime feeds the
model for the same image and box (CLIFF's ``bbox_info`` comes from each image's real size).

Output: ``calib.npz`` with one array per graph input (``image`` [N,3,H,W], ``bbox_info`` [N,3]), all float32,
and a JSON sidecar ``calib.json`` beside it (model, inputs, selection, sources with sha256, the box of every
sample, preprocessing, seed, σ histogram for uncertainty selection).

Selection:

* ``random``: ``max_samples`` person crops drawn uniformly (seeded) from all candidates;
* ``uncertainty`` (POCO models): a pool of candidates (``4·max_samples`` by default) is run through the FP32
  graph with ONNX Runtime; each person's uncertainty score (:func:`hpsedge.runtime.confidence.official_score`)
  is binned into ``bins`` equal-width bins over the observed range, and samples are drawn round-robin across
  the bins (seeded), so that rare uncertain crops are represented as well as the common easy ones.

Videos are read with PyAV (``pip install av``), imported only when a video is given.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import HpsedgeError, InputError
from hpsedge.runtime.files import atomic_write, sha256_file
from hpsedge.runtime.io import list_images, load_box_table, read_image
from hpsedge.runtime.manifest import Manifest, dumps_strict, load_manifest
from hpsedge.runtime.preprocess import preprocess, validate_boxes

log = logging.getLogger(__name__)

SIDECAR_SCHEMA = "hpsedge.calib"
DEFAULT_MAX_SAMPLES = 512
DEFAULT_BINS = 10
POOL_FACTOR = 4
SELECTIONS = ("random", "uncertainty")

#: (description, completed, total or None)
ProgressFn = Callable[[str, int, "int | None"], None]
#: graph feeds of K persons → their uncertainty scores [K]
ScorerFn = Callable[[Mapping[str, np.ndarray]], np.ndarray]


def sidecar_path(npz: str | Path) -> Path:
    """``calib.npz`` → ``calib.json``."""
    p = Path(npz)
    return p.with_suffix(".json") if p.suffix.lower() == ".npz" else p.with_name(p.name + ".json")


# ---------------------------------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------------------------------
@dataclass
class _Source:
    name: str  # image file name, or "<video>#<frame>"
    path: Path
    hw: tuple[int, int]
    frame: int | None = None
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    whole: bool = False


@dataclass(frozen=True)
class _Candidate:
    source: int
    box: tuple[float, float, float, float]


def _image_size(path: Path) -> tuple[int, int]:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:  # pragma: no cover - pillow is in the cli extra
        raise InputError("reading image files needs Pillow", hint="pip install pillow") from exc
    try:
        with Image.open(path) as img:
            w, h = img.size
            img.verify()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(
            f"cannot read {path.name} as an image ({exc.__class__.__name__})",
            hint=f"remove it from {path.parent} or replace it with a JPEG/PNG file",
        ) from None
    return int(h), int(w)


def _load_box_table(boxes: Path) -> tuple[dict[str, np.ndarray], bool]:
    """Box file → ({key: [K,4]}, is_coco), through the runtime's one box-file reader."""
    return load_box_table(boxes)


def _match_boxes(files: Sequence[Path], table: dict[str, np.ndarray], boxes: Path, coco: bool) -> dict[int, np.ndarray]:
    """Image index → boxes; every box-file image must be found (warn when only some are)."""
    if set(table) == {""}:
        if len(files) != 1:
            raise InputError(f"{boxes} holds a bare list of boxes but {len(files)} images were given",
                             hint='key the boxes by file name: {"img.jpg": [[x1, y1, x2, y2]]}')
        return {0: table[""]}
    by_path = {str(f): i for i, f in enumerate(files)}
    by_name: dict[str, int] = {}
    for i, f in enumerate(files):
        by_name.setdefault(f.name, i)
    out: dict[int, np.ndarray] = {}
    missing = []
    for key, b in table.items():
        i = by_path.get(key)
        if i is None:
            i = by_name.get(Path(key).name)
        if i is None:
            missing.append(key)
            continue
        out[i] = np.concatenate([out[i], b]) if i in out else b
    kind = "COCO file" if coco else "boxes file"
    if not out:
        raise InputError(
            f"none of the {len(table)} images named in the {kind} {boxes.name} is in {files[0].parent}"
            f" (e.g. {', '.join(sorted(table)[:2])})",
            hint="point --images at the folder that holds those files (matched by path or file name)",
        )
    if missing:
        log.warning("%d image(s) of %s are not in the image folder and were skipped (e.g. %s)",
                    len(missing), boxes.name, missing[0])
    unused = len(files) - len(out)
    if unused:
        log.warning("%d image(s) have no entry in %s and were skipped", unused, boxes.name)
    return out


def _check_boxes(src: _Source) -> None:
    try:
        src.boxes = validate_boxes(src.boxes, src.hw)
    except InputError as exc:
        raise InputError(f"{src.name}: {exc.message}", hint=exc.hint or "fix the boxes file") from None


def _image_sources(images: Path, boxes: Path | None) -> list[_Source]:
    files = list_images(images)
    table: dict[int, np.ndarray] | None = None
    if boxes is not None:
        raw, coco = _load_box_table(boxes)
        table = _match_boxes(files, raw, boxes, coco)
    else:
        log.info("no --boxes: each whole image is taken as one person box")
    sources = []
    for i, f in enumerate(files):
        if table is not None and i not in table:
            continue
        hw = _image_size(f)
        if table is None:
            b = np.array([[0.0, 0.0, float(hw[1]), float(hw[0])]])
            src = _Source(name=f.name, path=f, hw=hw, boxes=b, whole=True)
        else:
            src = _Source(name=f.name, path=f, hw=hw, boxes=table[i])
        _check_boxes(src)
        sources.append(src)
    return sources


def _open_video(path: Path) -> Any:
    try:
        import av
    except ImportError as exc:
        raise InputError("reading videos needs PyAV", hint="pip install av") from exc
    if not path.is_file():
        raise InputError(f"video not found: {path}")
    try:
        from hpsedge.runtime.video import SAFE_OPEN_OPTIONS

        container = av.open(str(path), container_options=dict(SAFE_OPEN_OPTIONS))
        if not container.streams.video:
            container.close()
            raise InputError(f"{path.name} has no video stream")
        return container
    except InputError:
        raise
    except Exception as exc:  # av.error.* (InvalidDataError, ...)
        raise InputError(f"cannot read {path.name} as a video ({exc.__class__.__name__})") from None


def _video_frame_count(path: Path) -> tuple[int, tuple[int, int]]:
    container = _open_video(path)
    try:
        stream = container.streams.video[0]
        hw = (int(stream.codec_context.height), int(stream.codec_context.width))
        n = int(stream.frames or 0)
        if n <= 0:
            n = sum(1 for p in container.demux(stream) if p.size)
    finally:
        container.close()
    return n, hw


def _iter_video_frames(path: Path, wanted: set[int]) -> Iterator[tuple[int, np.ndarray]]:
    if not wanted:
        return
    last = max(wanted)
    container = _open_video(path)
    try:
        stream = container.streams.video[0]
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                yield i, frame.to_ndarray(format="rgb24")
            if i >= last:
                break
    finally:
        container.close()


_FRAME_KEY = re.compile(r"(\d+)(\.\w+)?$")


def _video_sources(video: Path, boxes: Path | None, every: int | None, frames: int | None, default_frames: int) -> list[_Source]:
    total, hw = _video_frame_count(video)
    if total == 0:
        raise InputError(f"{video.name} holds no frames")
    if every is not None and frames is not None:
        raise InputError("give either --every N or --frames N, not both")
    if every is not None:
        if every < 1:
            raise InputError(f"--every must be at least 1 (got {every})")
        idx = list(range(0, total, every))
    else:
        n = frames if frames is not None else default_frames
        if n < 1:
            raise InputError(f"--frames must be at least 1 (got {n})")
        idx = sorted({round(v) for v in np.linspace(0, total - 1, min(n, total))})
    table: dict[int, np.ndarray] | None = None
    same: np.ndarray | None = None
    if boxes is not None:
        raw, _ = _load_box_table(boxes)
        if set(raw) == {""}:
            same = raw[""]
        else:
            table = {}
            for key, b in raw.items():
                m = _FRAME_KEY.search(Path(key).stem + Path(key).suffix) or _FRAME_KEY.search(key)
                if m is None:
                    raise InputError(f"{boxes.name}: key {key!r} names no frame number",
                                     hint='for a video, key the boxes by frame index: {"0": [[x1, y1, x2, y2]]}')
                table[int(m.group(1))] = b
    else:
        log.info("no --boxes: each whole frame is taken as one person box")
    sources = []
    for i in idx:
        if table is not None and i not in table:
            continue
        if table is not None:
            b, whole = table[i], False
        elif same is not None:
            b, whole = same, False
        else:
            b, whole = np.array([[0.0, 0.0, float(hw[1]), float(hw[0])]]), True
        src = _Source(name=f"{video.name}#{i}", path=video, hw=hw, frame=i, boxes=b, whole=whole)
        _check_boxes(src)
        sources.append(src)
    if not sources:
        raise InputError(f"no frame of {video.name} among the chosen ones has boxes in {boxes}")
    return sources


def _load_pixels(sources: Sequence[_Source], wanted: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    """(source index, RGB uint8) for the wanted sources, in order; video frames in one decoding pass."""
    order = sorted(set(wanted))
    video = [i for i in order if sources[i].frame is not None]
    still = [i for i in order if sources[i].frame is None]
    for i in still:
        rgb = read_image(sources[i].path)
        if rgb.shape[:2] != sources[i].hw:  # pragma: no cover - a file changed under us
            raise InputError(f"{sources[i].name} changed size while being read")
        yield i, rgb
    if video:
        by_frame = {sources[i].frame: i for i in video}
        found = set()
        for frame, rgb in _iter_video_frames(sources[video[0]].path, set(by_frame)):
            found.add(frame)
            yield by_frame[frame], rgb
        lost = set(by_frame) - found
        if lost:
            raise InputError(f"{sources[video[0]].path.name}: frame(s) {sorted(lost)[:5]} could not be decoded")


# ---------------------------------------------------------------------------------------------------
# selection
# ---------------------------------------------------------------------------------------------------
def select_random(n: int, k: int, seed: int) -> np.ndarray:
    """``min(k, n)`` distinct indices of ``range(n)``, uniformly at random (seeded)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(k, n), replace=False)) if n else np.zeros(0, dtype=np.int64)


def score_bins(scores: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bin edges ``[bins + 1]`` over the range of ``scores`` (a tiny range gets a unit-free pad)."""
    s = np.asarray(scores, dtype=np.float64)
    lo, hi = float(s.min()), float(s.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5e-6, hi + 0.5e-6
    return np.linspace(lo, hi, bins + 1)


def select_uncertainty(scores: np.ndarray, k: int, seed: int, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Pick ``min(k, n)`` indices spread evenly across equal-width bins of ``scores`` (seeded).

    Each round takes one not-yet-chosen sample (at random) from every bin that still has one, so every bin
    gets ``k / bins`` samples or all it has, and the remaining quota goes to the fuller bins.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    n = s.size
    if n == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    if not np.isfinite(s).all():
        raise InputError("uncertainty scores contain NaN or inf")
    k = min(k, n)
    rng = np.random.default_rng(seed)
    edges = score_bins(s, bins)
    which = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)
    queues = [list(rng.permutation(np.flatnonzero(which == b))) for b in range(bins)]
    chosen: list[int] = []
    while len(chosen) < k:
        live = [q for q in queues if q]
        order = rng.permutation(len(live))  # which bins give first when the quota ends mid-round
        for j in order:
            if len(chosen) >= k:
                break
            chosen.append(int(live[j].pop()))
    return np.sort(np.asarray(chosen, dtype=np.int64))


def sigma_histogram(scores: np.ndarray, chosen: np.ndarray, bins: int) -> dict[str, Any]:
    edges = score_bins(scores, bins)
    return {
        "score": "official_score (hpsedge.runtime.confidence)",
        "edges": [float(e) for e in edges],
        "candidates": np.histogram(scores, edges)[0].astype(int).tolist(),
        "chosen": np.histogram(np.asarray(scores)[chosen], edges)[0].astype(int).tolist(),
    }


def onnx_scorer(manifest: Manifest, threads: int | None = None, batch: int = 16) -> ScorerFn:
    """Per-person uncertainty score from the export folder's FP32 graph (ONNX Runtime CPU)."""
    from hpsedge.calib.ort import run_batched, session
    from hpsedge.runtime.confidence import official_score

    if not manifest.has_sigma or "sigma" not in [o.name for o in manifest.outputs]:
        raise InputError(
            f"{manifest.model_name} has no σ output, so there is nothing to select by",
            hint="uncertainty selection is for POCO models; use --select random",
        )
    sess = session(manifest.artifact_path("onnx"), threads)
    rule = manifest.sigma_score

    def score(feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        out = run_batched(sess, feeds, batch=batch, outputs=["sigma"])
        return official_score(out["sigma"], rule).astype(np.float64)

    return score


# ---------------------------------------------------------------------------------------------------
# the set
# ---------------------------------------------------------------------------------------------------
@dataclass
class CalibrationSet:
    path: Path
    sidecar: Path
    meta: dict[str, Any]

    @property
    def count(self) -> int:
        return int(self.meta["count"])


def _preprocess_candidates(
    sources: Sequence[_Source],
    cands: Sequence[_Candidate],
    spec: Mapping[str, Any],
    progress: ProgressFn,
    what: str,
) -> Iterator[tuple[list[int], dict[str, np.ndarray]]]:
    """Yield (candidate positions, feeds) one source at a time."""
    by_source: dict[int, list[int]] = {}
    for pos, c in enumerate(cands):
        by_source.setdefault(c.source, []).append(pos)
    done = 0
    for si, rgb in _load_pixels(sources, list(by_source)):
        pos = by_source[si]
        boxes = np.array([cands[p].box for p in pos], dtype=np.float64)
        feeds, _ = preprocess(rgb, boxes, spec)
        done += len(pos)
        progress(what, done, len(cands))
        yield pos, feeds


def make_calibration_set(
    model_dir: str | Path,
    out: str | Path,
    *,
    images: str | Path | None = None,
    video: str | Path | None = None,
    boxes: str | Path | None = None,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    select: str = "random",
    seed: int = 0,
    every: int | None = None,
    frames: int | None = None,
    pool: int | None = None,
    bins: int = DEFAULT_BINS,
    force: bool = False,
    scorer: ScorerFn | None = None,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> CalibrationSet:
    """Make a calibration set for the export folder ``model_dir`` and write ``out`` (.npz) + its sidecar.

    Args:
        images / video: a folder of images (or one image), or a video file: exactly one of them.
        boxes: COCO-style or simple JSON person boxes (see :mod:`hpsedge.runtime.io`); for a video, keys are
            frame indices (or a bare list for every frame). Without it each whole image is one box.
        max_samples: size of the set (fewer when there are fewer person boxes).
        select: ``"random"`` or ``"uncertainty"`` (POCO models).
        every / frames: video frames: every Nth frame, or N frames spread evenly (default: as many as the
            selection needs).
        pool: candidates scored for uncertainty selection (default ``4·max_samples``).
        scorer: override of the uncertainty scorer (feeds → per-person score), e.g. for tests.
    """
    report = progress or (lambda _d, _c, _t: None)
    out = Path(out)
    if out.suffix.lower() != ".npz":
        raise InputError(f"the calibration set is written as .npz; got {out.name}", hint="use --out calib.npz")
    side = sidecar_path(out)
    for p in (out, side):
        if p.exists() and not force:
            raise HpsedgeError(f"{p} already exists; not overwriting it", hint="pass --force to replace it")
    if (images is None) == (video is None):
        raise InputError("give either --images DIR or --video FILE (one of them)")
    if max_samples < 1:
        raise InputError(f"--max-samples must be at least 1 (got {max_samples})")
    if select not in SELECTIONS:
        raise InputError(f"unknown selection {select!r} (choose from {', '.join(SELECTIONS)})")
    if bins < 1:
        raise InputError(f"bins must be at least 1 (got {bins})")
    manifest = load_manifest(model_dir)
    spec = manifest.preprocessing
    pool_n = pool if pool is not None else (POOL_FACTOR * max_samples if select == "uncertainty" else max_samples)
    if select == "uncertainty" and scorer is None:
        scorer = onnx_scorer(manifest, threads)

    report("reading sources", 0, None)
    boxes_p = Path(boxes) if boxes is not None else None
    if images is not None:
        sources = _image_sources(Path(images), boxes_p)
        kind, src_path = "images", Path(images)
    else:
        sources = _video_sources(Path(video), boxes_p, every, frames, default_frames=pool_n)  # type: ignore[arg-type]
        kind, src_path = "video", Path(video)  # type: ignore[arg-type]
    cands = [
        _Candidate(i, tuple(float(v) for v in box))  # type: ignore[arg-type]
        for i, s in enumerate(sources)
        for box in s.boxes
    ]
    if not cands:
        raise InputError(f"no person boxes in {src_path}" + (f" with {boxes_p.name}" if boxes_p else ""),
                         hint="the boxes file lists no persons for these images")
    whole = any(s.whole for s in sources)

    selection: dict[str, Any] = {"method": select, "seed": seed, "candidates": len(cands)}
    if select == "random":
        chosen = [cands[i] for i in select_random(len(cands), max_samples, seed)]
    else:
        assert scorer is not None
        pool_idx = select_random(len(cands), pool_n, seed)
        pool_c = [cands[i] for i in pool_idx]
        scores = np.zeros(len(pool_c), dtype=np.float64)
        for pos, feeds in _preprocess_candidates(sources, pool_c, spec, report, "scoring σ"):
            s = np.asarray(scorer(feeds), dtype=np.float64).reshape(-1)
            if s.shape[0] != len(pos):
                raise HpsedgeError(f"the scorer returned {s.shape[0]} scores for {len(pos)} persons")
            scores[pos] = s
        pick = select_uncertainty(scores, max_samples, seed, bins)
        chosen = [pool_c[i] for i in pick]
        selection.update(pool=len(pool_c), bins=bins, sigma_histogram=sigma_histogram(scores, pick, bins))

    # final order: shuffled (seeded), so any prefix or held-out split is a fair sample
    order = np.random.default_rng(seed + 1).permutation(len(chosen))
    chosen = [chosen[i] for i in order]
    arrays: dict[str, np.ndarray] = {}
    names = [t.name for t in manifest.inputs]
    for pos, feeds in _preprocess_candidates(sources, chosen, spec, report, "preprocessing"):
        missing = [n for n in names if n not in feeds]
        if missing:
            raise HpsedgeError(f"the manifest's preprocessing gives no {missing} input(s) for {manifest.model_name}")
        for n in names:
            if n not in arrays:
                arrays[n] = np.empty((len(chosen), *feeds[n].shape[1:]), dtype=np.float32)
            arrays[n][pos] = feeds[n]

    used_sources = sorted({c.source for c in chosen})
    file_index: dict[Path, int] = {}
    files: list[dict[str, Any]] = []
    for si in used_sources:
        p = sources[si].path
        if p not in file_index:
            file_index[p] = len(files)
            files.append({"name": p.name, "sha256": sha256_file(p), "size_hw": list(sources[si].hw)})
    samples = [
        {"file": file_index[sources[c.source].path], **({"frame": sources[c.source].frame} if kind == "video" else {}),
         "box": [round(v, 4) for v in c.box]}
        for c in chosen
    ]
    meta: dict[str, Any] = {
        "schema": SIDECAR_SCHEMA,
        "schema_version": 1,
        "model": {k: manifest.raw["model"].get(k) for k in ("name", "family", "variant", "has_sigma")},
        "onnx_sha256": manifest.artifacts.get("onnx", {}).get("sha256"),
        "inputs": {n: [int(d) for d in arrays[n].shape[1:]] for n in names},
        "input_size": list(spec["input_size"]),
        "count": len(chosen),
        "selection": selection,
        "source": {
            "kind": kind,
            "path": str(src_path),
            "boxes": str(boxes_p) if boxes_p else None,
            "boxes_sha256": sha256_file(boxes_p) if boxes_p else None,
            "whole_image_boxes": whole,
            **({"every": every, "frames": frames if frames is not None else (None if every else pool_n)}
               if kind == "video" else {}),
        },
        "files": files,
        "samples": samples,
        "preprocessing": spec,
        "seed": seed,
        "npz": {"file": out.name},
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: np.savez(f, **arrays))
    meta["npz"]["sha256"] = sha256_file(out)
    atomic_write(side, dumps_strict(meta, indent=1) + "\n")
    return CalibrationSet(path=out, sidecar=side, meta=meta)




# ---------------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------------
def load_calibration_set(path: str | Path, manifest: Manifest | Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Read ``calib.npz``; with a manifest, check input names, shapes and dtype, and the sidecar's preprocessing."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"calibration set not found: {p}", hint="make one with `hpsedge calib make`")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:
        raise InputError(f"{p.name} is not a calibration .npz ({exc.__class__.__name__})",
                         hint="make one with `hpsedge calib make`") from None
    if not arrays:
        raise InputError(f"{p.name} holds no arrays")
    if manifest is None:
        return arrays
    raw = manifest.raw if isinstance(manifest, Manifest) else dict(manifest)
    name = raw["model"]["name"]
    specs = {d["name"]: d for d in raw["inputs"]}
    if set(arrays) != set(specs):
        raise InputError(
            f"{p.name} holds inputs {sorted(arrays)} but {name} takes {sorted(specs)}",
            hint=f"make a calibration set for this model: hpsedge calib make --model-dir <{name} export folder>",
        )
    n = None
    for key, d in specs.items():
        arr = arrays[key]
        want = list(d["shape"])
        ok = arr.ndim == len(want) and all(isinstance(w, str) or int(w) == s for w, s in zip(want, arr.shape, strict=False))
        if not ok:
            raise InputError(
                f"{p.name}: input '{key}' has shape {list(arr.shape)} but {name} wants {want}",
                hint="the set was made for another model or input size; make it again for this model",
            )
        if arr.dtype != np.float32:
            raise InputError(f"{p.name}: input '{key}' is {arr.dtype}, expected float32")
        if n is not None and arr.shape[0] != n:
            raise InputError(f"{p.name}: inputs hold different sample counts ({n} and {arr.shape[0]})")
        n = arr.shape[0]
        if not np.isfinite(arr).all():
            raise InputError(f"{p.name}: input '{key}' contains NaN or inf")
    if not n:
        raise InputError(f"{p.name} holds no samples")
    side = sidecar_path(p)
    if side.is_file():
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            log.warning("ignoring unreadable calibration sidecar %s", side)
            meta = {}
        pre = meta.get("preprocessing")
        if pre is not None and _norm(pre) != _norm(raw.get("preprocessing", {})):
            raise InputError(
                f"{p.name} was made with other preprocessing than {name} uses "
                f"(made for {meta.get('model', {}).get('name', '?')})",
                hint="make the calibration set again with --model-dir pointing at this export",
            )
    return arrays


def _norm(d: Mapping[str, Any]) -> str:
    return json.dumps(d, sort_keys=True)
