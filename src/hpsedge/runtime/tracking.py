"""Person tracks for video: MOT-style text, JSON, and a greedy IoU tracker for boxes without ids.

**MOT text** (MOTChallenge ``gt.txt``/``det.txt`` layout): one box per line,
``frame, track_id, x, y, w, h[, score, ...]``, commas or whitespace between fields, ``#`` starts a comment.
Frames are **1-based** as in MOTChallenge (pass ``frame_base=0`` for 0-based files); ``x, y`` is the top-left
corner and ``w, h`` the size, in pixels. A ``track_id`` of −1 (MOT detection files) means "no id".

**JSON**: a list of records, or ``{"frame_base": 0, "tracks": [records]}``, each record
``{"frame": int, "track_id": int (optional), "bbox": [x, y, w, h]}`` (or ``"xyxy": [x1, y1, x2, y2]``).
JSON frames are **0-based** unless ``frame_base`` says otherwise.

**Without ids** (every id −1 or missing) the boxes are linked by :func:`link_iou`, a greedy IoU tracker:
frame by frame, each detection is matched to the live track whose last box overlaps it most (pairs taken in
order of decreasing IoU, IoU ≥ ``iou_threshold``); unmatched detections start new tracks; a track unseen for
more than ``max_age`` frames ends. Its limits: no motion model (fast motion or low frame rates that leave
no overlap between consecutive boxes split a track), no appearance model (people who cross or overlap can
swap ids), no re-identification (a person who leaves for more than ``max_age`` frames comes back with a new
id), and greedy (not globally optimal) matching. For crowded or long videos use a real tracker and pass its
output as MOT text.

Frames inside hpsedge are always 0-based video frame indices.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.runtime.errors import InputError

__all__ = ["Tracks", "iou_matrix", "link_iou", "read_tracks", "whole_frame_tracks"]


@dataclass
class Tracks:
    """Boxes of every track in every frame: parallel arrays, sorted by (frame, track_id)."""

    frame: np.ndarray  #: [M] int, 0-based video frame
    track_id: np.ndarray  #: [M] int ≥ 0
    boxes: np.ndarray  #: [M, 4] x1, y1, x2, y2 (pixels)
    score: np.ndarray  #: [M] detection score (1 when the file has none)
    source: str = ""
    frame_base: int = 0  #: how the source file numbers frames (messages quote its numbers)

    def __post_init__(self) -> None:
        order = np.lexsort((self.track_id, self.frame))
        self.frame = np.asarray(self.frame, dtype=np.int64)[order]
        self.track_id = np.asarray(self.track_id, dtype=np.int64)[order]
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)[order]
        self.score = np.asarray(self.score, dtype=np.float64)[order]

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def ids(self) -> list[int]:
        return sorted({int(i) for i in self.track_id})

    @property
    def last_frame(self) -> int:
        return int(self.frame.max()) if len(self.frame) else -1

    def in_frame(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """(track ids [K], boxes [K, 4]) present in ``frame``."""
        lo, hi = np.searchsorted(self.frame, [frame, frame + 1])
        return self.track_id[lo:hi], self.boxes[lo:hi]

    def check_frames(self, num_frames: int, video: str = "the video") -> None:
        """Every track frame must exist in a video of ``num_frames`` frames (else a clear InputError)."""
        if len(self.frame) and self.last_frame >= num_frames:
            bad = self.frame >= num_frames
            first = int(np.argmax(bad))
            b = self.frame_base
            raise InputError(
                f"{self.source or 'tracks'}: {int(bad.sum())} box(es) refer to frames past the end of {video} "
                f"({num_frames} frames, numbered {b}..{num_frames - 1 + b} in this file); first: frame "
                f"{int(self.frame[first]) + b} of track {int(self.track_id[first])}",
                hint="are the tracks for this video? MOT text is 1-based, JSON 0-based unless it sets frame_base",
            )


def whole_frame_tracks(num_frames: int, width: int, height: int) -> Tracks:
    """One track (id 0) whose box is the whole frame in every frame: the default without a tracks file."""
    n = int(num_frames)
    return Tracks(np.arange(n), np.zeros(n, np.int64), np.tile([0.0, 0.0, float(width), float(height)], (n, 1)),
                  np.ones(n), source="whole frame")


# ================================================================================================ reading
_SPLIT = re.compile(r"[,\s]+")


def _parse_mot(text: str, source: str) -> tuple[list[int], list[int], list[list[float]], list[float]]:
    frames: list[int] = []
    ids: list[int] = []
    boxes: list[list[float]] = []
    scores: list[float] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p for p in _SPLIT.split(line) if p]
        if len(parts) < 6:
            raise InputError(f"{source}:{lineno}: expected 'frame, track_id, x, y, w, h[, score, ...]', got {raw.strip()!r}")
        try:
            vals = [float(p) for p in parts[:7]]
        except ValueError:
            raise InputError(f"{source}:{lineno}: non-numeric field in {raw.strip()!r}") from None
        if not all(np.isfinite(vals)):
            raise InputError(f"{source}:{lineno}: NaN or inf in {raw.strip()!r}")
        f, tid = vals[0], vals[1]
        if f != int(f) or tid != int(tid):
            raise InputError(f"{source}:{lineno}: frame and track_id must be integers, got {parts[0]!r}, {parts[1]!r}")
        x, y, w, h = vals[2:6]
        if w <= 0 or h <= 0:
            raise InputError(f"{source}:{lineno}: box width and height must be > 0, got w={w:g}, h={h:g}")
        frames.append(int(f))
        ids.append(int(tid))
        boxes.append([x, y, x + w, y + h])
        scores.append(vals[6] if len(vals) > 6 else 1.0)
    return frames, ids, boxes, scores


def _parse_json(data: Any, source: str) -> tuple[list[int], list[int], list[list[float]], list[float], int]:
    frame_base = 0
    records = data
    if isinstance(data, dict):
        if "tracks" not in data:
            raise InputError(f"{source}: a JSON object must hold a 'tracks' list (and optionally 'frame_base')")
        records = data["tracks"]
        frame_base = data.get("frame_base", 0)
        if frame_base not in (0, 1):
            raise InputError(f"{source}: frame_base must be 0 or 1, got {frame_base!r}")
    if not isinstance(records, list):
        raise InputError(f"{source}: tracks must be a JSON list of {{'frame', 'track_id', 'bbox'}} records")
    frames: list[int] = []
    ids: list[int] = []
    boxes: list[list[float]] = []
    scores: list[float] = []
    for i, rec in enumerate(records):
        where = f"{source}: record {i}"
        if not isinstance(rec, dict) or "frame" not in rec:
            raise InputError(f"{where}: needs 'frame' and 'bbox' [x, y, w, h] (or 'xyxy')")
        try:
            f = rec["frame"]
            tid = rec.get("track_id", -1)
            if isinstance(f, bool) or isinstance(tid, bool) or int(f) != f or int(tid) != tid:
                raise ValueError
            if "bbox" in rec:
                x, y, w, h = (float(v) for v in rec["bbox"])
                box = [x, y, x + w, y + h]
            elif "xyxy" in rec:
                box = [float(v) for v in rec["xyxy"]]
                if len(box) != 4:
                    raise ValueError
            else:
                raise InputError(f"{where}: needs 'bbox' [x, y, w, h] or 'xyxy' [x1, y1, x2, y2]")
            score = float(rec.get("score", 1.0))
        except (TypeError, ValueError):
            raise InputError(f"{where}: 'frame'/'track_id' must be integers and the box 4 numbers") from None
        if not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
            raise InputError(f"{where}: box {box} is empty or not finite")
        frames.append(int(f))
        ids.append(int(tid))
        boxes.append(box)
        scores.append(score)
    return frames, ids, boxes, scores, int(frame_base)


def read_tracks(
    path: str | Path,
    num_frames: int | None = None,
    frame_base: int | None = None,
    iou_threshold: float = 0.3,
    max_age: int = 5,
) -> Tracks:
    """Read a MOT-style text file or a JSON tracks file (by content: JSON if it parses as JSON).

    Args:
        num_frames: frames in the video; boxes past the end raise :class:`InputError`.
        frame_base: override the file's frame base (MOT text 1, JSON 0 or its ``frame_base``).
        iou_threshold, max_age: for :func:`link_iou` when the file has no track ids.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"tracks file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{p} is not a text file (MOT text or JSON expected)") from None
    stripped = text.lstrip()
    if stripped[:1] in ("[", "{"):
        from hpsedge.runtime.io import loads_strict

        data = loads_strict(text, str(p), "tracks file")
        frames, ids, boxes, scores, base = _parse_json(data, str(p))
    else:
        frames, ids, boxes, scores = _parse_mot(text, str(p))
        base = 1
    if frame_base is not None:
        base = int(frame_base)
    if not frames:
        raise InputError(f"{p} holds no boxes")
    f = np.asarray(frames, dtype=np.int64) - base
    if (f < 0).any():
        i = int(np.argmax(f < 0))
        raise InputError(f"{p}: frame {frames[i]} is before the first frame (frames are {base}-based here)",
                         hint="pass frame_base=0 for 0-based MOT files")
    tid = np.asarray(ids, dtype=np.int64)
    b = np.asarray(boxes, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if (tid < 0).all():
        tid = link_iou(f, b, iou_threshold=iou_threshold, max_age=max_age)
    elif (tid < 0).any():
        raise InputError(f"{p}: some boxes have track ids and some do not (-1); give all or none")
    else:
        seen: dict[tuple[int, int], int] = {}
        for i, key in enumerate(zip(f.tolist(), tid.tolist(), strict=True)):
            if key in seen:
                raise InputError(f"{p}: track {key[1]} has two boxes in frame {key[0] + base}")
            seen[key] = i
    tracks = Tracks(f, tid, b, s, source=str(p), frame_base=base)
    if num_frames is not None:
        tracks.check_frames(num_frames)
    return tracks


# ============================================================================================ IoU tracker
def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair of boxes ``a [N,4]``, ``b [M,4]`` (x1, y1, x2, y2) → ``[N, M]``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def link_iou(frames: np.ndarray, boxes: np.ndarray, iou_threshold: float = 0.3, max_age: int = 5) -> np.ndarray:
    """Greedy IoU tracker (see the module docstring for its limits): track ids ``[M]`` for detections
    ``frames [M]`` (0-based), ``boxes [M, 4]`` x1, y1, x2, y2. Ids are 0, 1, 2… in order of first appearance."""
    frames = np.asarray(frames, dtype=np.int64)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ids = np.full(len(frames), -1, dtype=np.int64)
    by_frame: dict[int, list[int]] = defaultdict(list)
    for i, f in enumerate(frames.tolist()):
        by_frame[f].append(i)
    live: dict[int, tuple[int, np.ndarray]] = {}  # id -> (last frame, last box)
    next_id = 0
    for f in sorted(by_frame):
        det = by_frame[f]
        live = {k: v for k, v in live.items() if f - v[0] <= max_age}
        tids = list(live)
        if tids:
            iou = iou_matrix(boxes[det], np.stack([live[t][1] for t in tids]))
            pairs = sorted(((iou[i, j], i, j) for i in range(len(det)) for j in range(len(tids))), key=lambda p: -p[0])
            used_d: set[int] = set()
            used_t: set[int] = set()
            for v, i, j in pairs:
                if v < iou_threshold:
                    break
                if i in used_d or j in used_t:
                    continue
                used_d.add(i)
                used_t.add(j)
                ids[det[i]] = tids[j]
        for d in det:
            if ids[d] < 0:
                ids[d] = next_id
                next_id += 1
            live[int(ids[d])] = (f, boxes[d])
    return ids
