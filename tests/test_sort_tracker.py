"""SORT-style tracker: optimal assignment without scipy, identity switches through a crossing, birth/death."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hpsedge.errors import InputError
from hpsedge.runtime.tracking import SortTracker, assign_greedy, assign_max, identity_switches, link_iou


def _brute_best(s: np.ndarray) -> float:
    n, m = s.shape
    if n <= m:
        return max(sum(s[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
    return max(sum(s[p[j], j] for j in range(m)) for p in itertools.permutations(range(n), m))


def test_assign_max_is_optimal():
    rng = np.random.default_rng(0)
    for _ in range(60):
        n, m = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        s = rng.uniform(0, 1, (n, m)).round(1)
        pairs = assign_max(s)
        assert len(pairs) == min(n, m)
        assert len({r for r, _ in pairs}) == len(pairs) == len({c for _, c in pairs})
        assert sum(s[r, c] for r, c in pairs) == pytest.approx(_brute_best(s))
    assert assign_max(np.zeros((0, 3))) == []
    # greedy is not optimal: it takes 0.9 first and leaves 0.1
    s = np.array([[0.9, 0.8], [0.7, 0.1]])
    assert assign_greedy(s, 0.0) == [(0, 0), (1, 1)]
    assert assign_max(s) == [(0, 1), (1, 0)]


def crossing(frames: int = 40, miss: tuple[int, ...] = ()) -> tuple[list[np.ndarray], list[list[int]]]:
    """Two 60×160 boxes crossing horizontally (A → right, B → left) at slightly different heights.
    Returns per-frame detections (shuffled order) and which ground-truth object each detection is."""
    rng = np.random.default_rng(3)
    dets, gts = [], []
    for k in range(frames):
        a = np.array([100 + 12 * k, 200, 160 + 12 * k, 360], float)
        b = np.array([580 - 12 * k, 215, 640 - 12 * k, 375], float)
        boxes, who = [], []
        for g, box in enumerate((a, b)):
            if g == 1 and k in miss:  # B hidden behind A
                continue
            boxes.append(box + rng.normal(0, 1.0, 4))
            who.append(g)
        order = rng.permutation(len(boxes))
        dets.append(np.asarray(boxes)[order])
        gts.append([who[i] for i in order])
    return dets, gts


def _switches_sort(tracker: SortTracker, dets: list[np.ndarray], gts: list[list[int]]) -> tuple[int, set[int]]:
    assigned: list[list[int]] = [[], []]
    for boxes, who in zip(dets, gts, strict=True):
        for t in tracker.update(boxes):
            assigned[who[t.det_index]].append(t.track_id)
    return identity_switches(assigned), {i for ids in assigned for i in ids if i >= 0}


@pytest.mark.parametrize("association", ["hungarian", "greedy"])
def test_crossing_keeps_identities(association):
    dets, gts = crossing(miss=(19, 20, 21))  # B missed for 3 frames right at the crossing
    switches, ids = _switches_sort(SortTracker(association=association, min_hits=1), dets, gts)
    assert switches == 0
    assert ids == {0, 1}


def test_greedy_iou_linker_switches_where_sort_does_not():
    """The motion model is what keeps the ids: the last-box IoU linker loses one of them in this crossing."""
    dets, gts = crossing(miss=(19, 20, 21))
    frames = np.concatenate([[k] * len(d) for k, d in enumerate(dets)])
    ids = link_iou(frames, np.concatenate(dets), iou_threshold=0.3, max_age=5)
    who = [g for gg in gts for g in gg]
    assigned = [[int(i) for i, w in zip(ids, who, strict=True) if w == g] for g in (0, 1)]
    sort_switches, _ = _switches_sort(SortTracker(min_hits=1), dets, gts)
    assert identity_switches(assigned) > sort_switches == 0


def test_birth_and_death():
    tr = SortTracker(min_hits=3, max_age=2)
    box = np.array([[100, 100, 160, 260]], float)
    for _ in range(3):  # the first min_hits frames report at once (as SORT does)
        assert tr.update(box)[0].track_id == 0
    # a new person appearing later is tentative for min_hits − 1 frames
    other = np.array([[400, 100, 460, 260]], float)
    ids = [tr.update(np.concatenate([box, other]))[1].track_id for _ in range(3)]
    assert ids == [-1, -1, 1]
    # both vanish for max_age frames: still alive; one more: dead, and a return is a new track
    for _ in range(2):
        assert tr.update(np.zeros((0, 4))) == []
    assert tr.update(box)[0].track_id == 0
    for _ in range(3):
        tr.update(np.zeros((0, 4)))
    assert tr.update(box)[0].track_id == -1  # reborn, tentative
    assert not [t for t in tr.tracks if t.id == 1]
    with pytest.raises(InputError):
        SortTracker(association="magic")
    with pytest.raises(InputError):
        tr.update(np.array([[0, 0, np.nan, 1]]))
