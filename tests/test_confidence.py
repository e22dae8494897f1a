"""hpsedge.runtime.confidence: kinematic accumulation and the demo's score rules, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from hpsedge.errors import InputError
from hpsedge.runtime.confidence import (
    SMPL_PARENTS,
    accumulate_sigma,
    confidence,
    joint_confidence,
    official_score,
)

# Chain length (number of joints from the root to j, both included) for each SMPL joint.
DEPTH = [1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 5, 5, 6, 6, 6, 7, 7, 8, 8, 9, 9]


def test_parents_are_topological() -> None:
    assert len(SMPL_PARENTS) == 24 and SMPL_PARENTS[0] == -1
    assert all(0 <= p < j for j, p in enumerate(SMPL_PARENTS) if j)


def test_accumulate_constant_sigma() -> None:
    sigma = np.full((2, 24), 0.1)
    acc = accumulate_sigma(sigma)
    np.testing.assert_allclose(acc, np.tile(0.1 * np.array(DEPTH, float), (2, 1)), rtol=1e-12)
    np.testing.assert_array_equal(sigma, 0.1)  # input untouched


def test_accumulate_one_hot() -> None:
    # σ = 0.5 on joint 3 (spine1) only: it reaches 3 and all its descendants
    # (6 spine2, 9 spine3, 12 neck, 13/14 collars, 15 head, 16..23 arms and hands).
    sigma = np.zeros((1, 24), np.float32)
    sigma[0, 3] = 0.5
    acc = accumulate_sigma(sigma)
    assert acc.dtype == np.float32
    expected = np.zeros(24)
    expected[[3, 6, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23]] = 0.5
    np.testing.assert_array_equal(acc[0], expected)


def test_official_score_cliff() -> None:
    sigma = np.full((4, 24), 0.05)
    sigma[:, 0] = [0.3, 0.8, 0.81, 0.995]
    # CLIFF: score = σ₀; σ₀ > 0.8 → the row becomes 1.0 → 1.0, clipped to 0.99. Exactly 0.8 stays.
    np.testing.assert_allclose(official_score(sigma, "cliff"), [0.3, 0.8, 0.99, 0.99])
    np.testing.assert_allclose(confidence(sigma, "CLIFF"), [0.7, 0.2, 0.01, 0.01])
    # float32 input (what the model returns) compares in float32: float32(0.8) is not > 0.8.
    s32 = sigma.astype(np.float32)
    np.testing.assert_allclose(official_score(s32, "cliff"), [0.3, 0.8, 0.99, 0.99], rtol=1e-6)


def test_official_score_pare_and_hmr() -> None:
    # σ = 0.1 everywhere: mean of the accumulated values = 0.1·ΣDEPTH/24 = 0.1·119/24 = 0.495833…
    base = np.full((1, 24), 0.1)
    assert sum(DEPTH) == 119
    np.testing.assert_allclose(official_score(base, "pare"), [11.9 / 24], rtol=1e-12)
    np.testing.assert_allclose(confidence(base, "pare"), [1 - 11.9 / 24], rtol=1e-12)
    # Without accumulation: the plain mean.
    np.testing.assert_allclose(official_score(base, "pare", kinematic=False), [0.1], rtol=1e-12)
    # σ₀ > 0.4 → row set to 1.0 → 1.0 → clipped 0.99.
    hi = base.copy()
    hi[0, 0] = 0.41
    np.testing.assert_allclose(official_score(hi, "pare"), [0.99])
    # σ = 0.3 (σ₀ ≤ 0.4): accumulated mean 0.3·119/24 = 1.4875 → clipped to 0.99.
    np.testing.assert_allclose(official_score(np.full((1, 24), 0.3), "pare"), [0.99])
    # HMR uses the PARE rule.
    for s in (base, hi):
        np.testing.assert_array_equal(official_score(s, "hmr"), official_score(s, "pare"))


def test_joint_confidence() -> None:
    sigma = np.full((1, 24), 0.15)
    jc = joint_confidence(sigma)
    np.testing.assert_allclose(jc[0], 1 - np.clip(0.15 * np.array(DEPTH), 0, 1), rtol=1e-12)
    assert jc.min() == 0.0  # chains of 7+ joints saturate
    np.testing.assert_allclose(joint_confidence(sigma, kinematic=False), 0.85)


def test_empty_batch() -> None:
    empty = np.zeros((0, 24), np.float32)
    assert official_score(empty, "cliff").shape == (0,)
    assert confidence(empty, "pare").shape == (0,)
    assert joint_confidence(empty).shape == (0, 24)


def test_bad_sigma() -> None:
    with pytest.raises(InputError, match=r"\[K, 24\]"):
        accumulate_sigma(np.zeros((2, 23)))
    bad = np.zeros((1, 24))
    bad[0, 5] = np.nan
    with pytest.raises(InputError, match="NaN"):
        confidence(bad, "cliff")
    with pytest.raises(InputError, match="tokenhmr"):
        official_score(np.zeros((1, 24)), "tokenhmr")
