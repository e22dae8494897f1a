"""The evaluation metrics against independent computations with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from hpsedge.eval import metrics


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    k = axis / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def test_rotated_scaled_shifted_copy_has_pa_mpjpe_zero_and_known_mpjpe() -> None:
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(1, 14, 3))
    r = _rotation(np.array([0.3, -1.0, 0.5]), 0.7)
    pred = 1.7 * gt @ r.T + np.array([0.2, -0.1, 0.4])
    assert metrics.pa_mpjpe(pred, gt)[0] == pytest.approx(0.0, abs=1e-9)
    # MPJPE is the plain mean distance, computed here joint by joint
    want = np.mean([np.linalg.norm(pred[0, j] - gt[0, j]) for j in range(14)])
    assert metrics.mpjpe(pred, gt)[0] == pytest.approx(want, rel=1e-12)


def test_pure_translation_has_mpjpe_equal_to_the_shift() -> None:
    gt = np.random.default_rng(1).normal(size=(2, 5, 3))
    shift = np.array([3.0, 4.0, 0.0])  # |shift| = 5
    assert np.allclose(metrics.mpjpe(gt + shift, gt), 5.0)
    assert np.allclose(metrics.pa_mpjpe(gt + shift, gt), 0.0, atol=1e-12)


def test_mirror_image_is_not_aligned_by_a_reflection() -> None:
    """det R = +1: a mirrored copy cannot be aligned exactly, so PA-MPJPE stays > 0."""
    gt = np.random.default_rng(2).normal(size=(1, 10, 3))
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    assert metrics.pa_mpjpe(mirrored, gt)[0] > 0.1


def test_hand_computed_small_case() -> None:
    # two joints; prediction off by (1,0,0) on the first and (0,2,0) on the second → MPJPE (1 + 2) / 2
    gt = np.zeros((1, 2, 3))
    pred = np.array([[[1.0, 0, 0], [0, 2.0, 0]]])
    assert metrics.mpjpe(pred, gt)[0] == pytest.approx(1.5)
    # Procrustes of a 2-point set onto a degenerate target (both at the origin): scale → 0, error 0
    assert metrics.pa_mpjpe(pred, gt)[0] == pytest.approx(0.0, abs=1e-12)
    # a segment of length 2 onto a segment of length 4 along another axis: exact similarity fit
    a = np.array([[[0.0, 0, 0], [2.0, 0, 0]]])
    b = np.array([[[1.0, 1, 1], [1.0, 5, 1]]])
    assert np.allclose(metrics.similarity_align(a, b), b)


def test_procrustes_matches_an_independent_umeyama() -> None:
    """Against a straightforward per-sample implementation written out here (3×N convention)."""
    rng = np.random.default_rng(3)
    s1, s2 = rng.normal(size=(4, 14, 3)), rng.normal(size=(4, 14, 3))
    for b in range(4):
        x, y = s1[b].T, s2[b].T
        mx, my = x.mean(1, keepdims=True), y.mean(1, keepdims=True)
        cov = (y - my) @ (x - mx).T / x.shape[1]
        u, d, vt = np.linalg.svd(cov)
        s = np.eye(3)
        if np.linalg.det(u) * np.linalg.det(vt) < 0:
            s[2, 2] = -1
        r = u @ s @ vt
        c = np.trace(np.diag(d) @ s) / ((x - mx) ** 2).sum(0).mean()
        want = (c * r @ x + (my - c * r @ mx)).T
        assert np.allclose(metrics.similarity_align(s1[b : b + 1], s2[b : b + 1])[0], want, atol=1e-10)


def test_pve_and_joints_from_mesh() -> None:
    v = np.random.default_rng(4).normal(size=(1, 6890, 3))
    assert metrics.pve(v + np.array([0, 0, 0.002]), v)[0] == pytest.approx(0.002)
    reg = np.zeros((17, 6890))
    for j in range(17):
        reg[j, j] = 1.0
    j14 = metrics.joints_from_mesh(v, reg, pelvis="h36m")
    assert np.allclose(j14[0, 0], v[0, 6] - v[0, 0])  # LSP right ankle = H36M joint 6, minus the pelvis joint 0
    hips = metrics.joints_from_mesh(v, reg, pelvis="hips")
    assert np.allclose(hips[0, 2] + hips[0, 3], 0.0)  # mid-hips at the origin
    with pytest.raises(ValueError):
        metrics.joints_from_mesh(v, reg, pelvis="chest")


def test_correlations() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert metrics.pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert metrics.pearson(x, -x) == pytest.approx(-1.0)
    assert metrics.spearman(x, x**3) == pytest.approx(1.0)  # monotone, not linear
    assert metrics.pearson(x, x**3) < 1.0
    assert metrics.pearson(x, np.ones(5)) is None and metrics.spearman([1.0], [2.0]) is None
    # hand-computed: ranks with a tie (scipy's average method)
    assert metrics.rankdata([10, 20, 20, 30]).tolist() == [1.0, 2.5, 2.5, 4.0]
    # Pearson by hand: x = [1, 2, 3], y = [1, 3, 2] → r = 0.5
    assert metrics.pearson([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert metrics.pearson(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1])


def test_perfectly_ranked_score_equals_the_oracle() -> None:
    e = np.random.default_rng(6).gamma(2.0, 30.0, size=200)
    sp = metrics.sparsification(e, np.log(e))  # any increasing function of the error ranks perfectly
    assert np.allclose(sp["curve"], sp["oracle"])
    assert metrics.ause(e, e * 3 + 1) == pytest.approx(0.0, abs=1e-12)
    assert sp["curve"][0] == pytest.approx(e.mean())
    # the worst score (inverted) lies above the oracle
    assert metrics.ause(e, -e) > 0


def test_sparsification_hand_computed() -> None:
    e = np.array([1.0, 2.0, 3.0, 4.0])
    u = np.array([0.1, 0.4, 0.3, 0.2])  # removal order: e=2, 3, 4, 1
    sp = metrics.sparsification(e, u)
    assert np.allclose(sp["curve"], [2.5, 8 / 3, 2.5, 1.0])
    assert np.allclose(sp["oracle"], [2.5, 2.0, 1.5, 1.0])
    assert np.allclose(sp["fraction"], [0, 0.25, 0.5, 0.75])
    assert metrics.ause(e, u) == pytest.approx((0 + 2 / 3 + 1 + 0) / 4)
    with pytest.raises(ValueError):
        metrics.sparsification(e, u[:3])


def test_val_and_bench_import_no_torch() -> None:
    """The evaluation path is the runtime's: numpy + the backend, never torch/onnx/smplx."""
    import subprocess
    import sys

    code = (
        "import sys; import hpsedge.eval.val, hpsedge.eval.bench, hpsedge.eval.metrics, hpsedge.eval.plots; "
        "bad = [m for m in ('torch', 'onnx', 'smplx', 'scipy') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
