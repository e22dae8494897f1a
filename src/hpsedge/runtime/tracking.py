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

import itertools
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import InputError

__all__ = ["SortTracker", "TrackedBox", "Tracks", "assign_greedy", "assign_max", "identity_switches", "iou_matrix",
           "link_iou", "read_tracks", "whole_frame_tracks"]


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


# ============================================================================================ SORT tracker
def assign_max(score: np.ndarray) -> list[tuple[int, int]]:
    """Maximum-weight assignment of rows to columns (Hungarian algorithm with potentials, O(n²m)),
    for a score matrix ``[N, M]``; returns the (row, col) pairs of an optimal assignment of min(N, M) pairs.
    Plain numpy/Python so that the runtime needs no scipy."""
    s = np.asarray(score, dtype=np.float64)
    if s.size == 0:
        return []
    transposed = s.shape[0] > s.shape[1]
    cost = -(s.T if transposed else s)  # rows ≤ cols, minimise
    n, m = cost.shape
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, dtype=np.int64)  # p[j]: row (1-based) matched to column j
    way = np.zeros(m + 1, dtype=np.int64)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            cur = cost[i0 - 1] - u[i0] - v[1:]
            free = ~used[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            cand = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(cand)) + 1
            delta = cand[j1 - 1]
            u[p[used]] += delta
            v[used] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    pairs = [(int(p[j]) - 1, j - 1) for j in range(1, m + 1) if p[j] != 0]
    return sorted((c, r) for r, c in pairs) if transposed else sorted(pairs)


def assign_greedy(score: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Greedy assignment: pairs by decreasing score, each row and column at most once, score ≥ threshold."""
    s = np.asarray(score, dtype=np.float64)
    pairs: list[tuple[int, int]] = []
    if s.size == 0:
        return pairs
    used_r: set[int] = set()
    used_c: set[int] = set()
    for flat in np.argsort(-s, axis=None, kind="stable"):
        r, c = divmod(int(flat), s.shape[1])
        if s[r, c] < threshold:
            break
        if r in used_r or c in used_c:
            continue
        used_r.add(r)
        used_c.add(c)
        pairs.append((r, c))
    return sorted(pairs)


def _xyxy_to_z(b: np.ndarray) -> np.ndarray:
    w, h = b[2] - b[0], b[3] - b[1]
    return np.array([b[0] + w / 2, b[1] + h / 2, w, h], dtype=np.float64)


class _KalmanBox:
    """Constant-velocity Kalman filter on (cx, cy, w, h): state [cx, cy, w, h, vcx, vcy, vw, vh]."""

    _F = np.eye(8) + np.eye(8, k=4)
    _H = np.eye(4, 8)

    def __init__(self, box: np.ndarray, pos_std: float, vel_std: float, meas_std: float) -> None:
        z = _xyxy_to_z(box)
        self.x = np.concatenate([z, np.zeros(4)])
        self.pos_std, self.vel_std, self.meas_std = pos_std, vel_std, meas_std
        scale = max(z[2], z[3], 1.0)
        self.P = np.diag(np.r_[np.full(4, 2 * pos_std * scale), np.full(4, 10 * vel_std * scale)] ** 2)

    def _q(self) -> np.ndarray:
        scale = max(self.x[2], self.x[3], 1.0)
        return np.diag(np.r_[np.full(4, self.pos_std * scale), np.full(4, self.vel_std * scale)] ** 2)

    def predict(self) -> np.ndarray:
        self.x = self._F @ self.x
        self.x[2:4] = np.maximum(self.x[2:4], 1.0)
        self.P = self._F @ self.P @ self._F.T + self._q()
        return self.box

    def update(self, box: np.ndarray) -> None:
        z = _xyxy_to_z(box)
        scale = max(self.x[2], self.x[3], 1.0)
        r = np.eye(4) * (self.meas_std * scale) ** 2
        s = self._H @ self.P @ self._H.T + r
        k = self.P @ self._H.T @ np.linalg.inv(s)
        self.x = self.x + k @ (z - self._H @ self.x)
        self.P = (np.eye(8) - k @ self._H) @ self.P

    @property
    def box(self) -> np.ndarray:
        cx, cy, w, h = self.x[:4]
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


@dataclass
class _SortTrack:
    id: int
    kf: _KalmanBox
    hits: int = 1
    streak: int = 1
    misses: int = 0
    age: int = 1
    confirmed: bool = False
    score: float = 1.0  #: the score of its last detection


@dataclass
class TrackedBox:
    """One detection of the current frame with its track (``track_id`` −1 while the track is tentative)."""

    track_id: int
    box: np.ndarray  #: [4] the detection's box (x1, y1, x2, y2), not the filtered one
    score: float
    det_index: int  #: index into the detections given to :meth:`SortTracker.update`
    filtered_box: np.ndarray  #: [4] the Kalman estimate after this frame's update


class SortTracker:
    """A SORT-style tracker (Bewley et al. 2016): a constant-velocity Kalman filter per track on the box
    centre and size, association of detections to the predicted boxes by IoU (Hungarian, or greedy), track
    birth after ``min_hits`` consecutive detections (immediately during the first ``min_hits`` frames, as
    SORT does) and death after ``max_age`` frames without a detection. Use it frame by frame::

        tracker = SortTracker()
        for frame in video:
            for t in tracker.update(boxes, scores):   # boxes [K,4] x1,y1,x2,y2
                print(t.track_id, t.box)

    Against the greedy :func:`link_iou` it keeps ids through crossings where the people move at different
    velocities, and through short misses (up to ``max_age`` frames), because it matches predicted boxes,
    not last-seen ones. It has no appearance model: two people who stop while overlapping and then leave in
    unexpected directions can still swap. Ids are 0, 1, 2… in order of confirmation.
    """

    def __init__(self, iou_threshold: float = 0.3, max_age: int = 15, min_hits: int = 3,
                 association: str = "hungarian", pos_std: float = 0.05, vel_std: float = 0.0125,
                 meas_std: float = 0.05) -> None:
        if association not in ("hungarian", "greedy"):
            raise InputError(f"unknown association '{association}' (hungarian | greedy)")
        if not 0.0 <= iou_threshold <= 1.0 or max_age < 0 or min_hits < 1:
            raise InputError("tracker needs 0 ≤ iou_threshold ≤ 1, max_age ≥ 0, min_hits ≥ 1")
        self.iou_threshold = float(iou_threshold)
        self.max_age = int(max_age)
        self.min_hits = int(min_hits)
        self.association = association
        self._stds = (pos_std, vel_std, meas_std)
        self.reset()

    def reset(self) -> None:
        self.tracks: list[_SortTrack] = []
        self.frame_count = 0
        self._next_id = 0

    def settings(self) -> dict[str, Any]:
        return {"kind": "sort", "iou_threshold": self.iou_threshold, "max_age": self.max_age,
                "min_hits": self.min_hits, "association": self.association}

    def update(self, boxes: Any, scores: Any | None = None) -> list[TrackedBox]:
        """One frame's detections ``boxes [K,4]`` (x1, y1, x2, y2) → their tracks, in detection order."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if not np.isfinite(b).all():
            raise InputError("tracker boxes hold NaN or inf")
        s = np.ones(len(b)) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        self.frame_count += 1
        predicted = np.stack([t.kf.predict() for t in self.tracks]) if self.tracks else np.zeros((0, 4))
        for t in self.tracks:
            t.age += 1
        iou = iou_matrix(b, predicted)
        if self.association == "hungarian":
            pairs = [(d, k) for d, k in assign_max(iou) if iou[d, k] >= self.iou_threshold]
        else:
            pairs = assign_greedy(iou, self.iou_threshold)
        matched_t = {k for _, k in pairs}
        det_track: dict[int, _SortTrack] = {}
        for d, k in pairs:
            t = self.tracks[k]
            t.kf.update(b[d])
            t.score = float(s[d])
            t.hits += 1
            t.streak = t.streak + 1 if t.misses == 0 else 1
            t.misses = 0
            det_track[d] = t
        for k, t in enumerate(self.tracks):
            if k not in matched_t:
                t.misses += 1
                t.streak = 0
        for d in range(len(b)):
            if d not in det_track:
                t = _SortTrack(-1, _KalmanBox(b[d], *self._stds), score=float(s[d]))
                self.tracks.append(t)
                det_track[d] = t
        self.tracks = [t for t in self.tracks if t.misses <= self.max_age]
        out: list[TrackedBox] = []
        for d in range(len(b)):
            t = det_track[d]
            if not t.confirmed and (t.streak >= self.min_hits or self.frame_count <= self.min_hits):
                t.confirmed = True
                t.id = self._next_id
                self._next_id += 1
            out.append(TrackedBox(t.id if t.confirmed else -1, b[d].copy(), float(s[d]), d, t.kf.box))
        return out

    def carry(self) -> list[TrackedBox]:
        """A frame without detections because the detector was skipped (it runs every k frames): each track's
        Kalman filter moves one frame ahead — no detection ran, so no miss is counted and no track ends — and
        the confirmed tracks that were detected on the last detector frame come out with their predicted boxes
        (``box`` = ``filtered_box``, ``det_index`` −1, the last detection's score), in id order."""
        out: list[TrackedBox] = []
        for t in self.tracks:
            box = t.kf.predict()
            if t.confirmed and t.misses == 0:
                out.append(TrackedBox(t.id, box.copy(), t.score, -1, box.copy()))
        return sorted(out, key=lambda tb: tb.track_id)


def identity_switches(assigned: list[list[int]]) -> int:
    """Identity switches of ground-truth objects: ``assigned[g]`` is the track id given to object g in each
    frame (−1: not reported). A switch is a change of id between two consecutive reported frames."""
    switches = 0
    for ids in assigned:
        seen = [i for i in ids if i >= 0]
        switches += sum(1 for a, b in itertools.pairwise(seen) if a != b)
    return switches
