"""The evaluation metrics against independent computations with known answers."""

from __future__ import annotations

from typing import Any

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
    hips = metrics.joints_from_mesh(v, reg, pelvis="lsp-hips")
    assert np.allclose(hips[0, 2] + hips[0, 3], 0.0)  # mid-hips at the origin
    with pytest.raises(ValueError):
        metrics.joints_from_mesh(v, reg, pelvis="chest")
    with pytest.raises(ValueError, match="tokenhmr-emdb"):  # the old name is refused, never silently remapped
        metrics.joints_from_mesh(v, reg, pelvis="hips")


# ----------------------------------------------------------------- the official formulas, re-implemented here
def _official_pa_torch(s1: Any, s2: Any) -> Any:
    """TokenHMR's compute_similarity_transform as its code runs it: float32, (B, 3, N) layout, torch.svd."""
    import torch

    s1, s2 = s1.float().permute(0, 2, 1), s2.float().permute(0, 2, 1)
    mu1, mu2 = s1.mean(2, keepdim=True), s2.mean(2, keepdim=True)
    x1, x2 = s1 - mu1, s2 - mu2
    var1 = (x1**2).sum(dim=(1, 2))
    k = x1 @ x2.permute(0, 2, 1)
    u, _, v = torch.svd(k)
    z = torch.eye(3).unsqueeze(0).repeat(len(k), 1, 1)
    z[:, -1, -1] *= torch.sign(torch.linalg.det(u @ v.permute(0, 2, 1)))
    r = v @ z @ u.permute(0, 2, 1)
    scale = (r @ k).diagonal(dim1=-1, dim2=-2).sum(-1) / var1
    hat = scale[:, None, None] * (r @ s1) + (mu2 - scale[:, None, None] * (r @ mu1))
    return hat.permute(0, 2, 1)


def _official_errors(pred_kp: Any, gt_kp: Any) -> tuple[np.ndarray, np.ndarray]:
    """TokenHMR's eval_pose: MPJPE and PA-MPJPE in mm."""
    import torch

    mpjpe = torch.sqrt(((pred_kp - gt_kp) ** 2).sum(-1)).mean(-1)
    re = torch.sqrt(((_official_pa_torch(pred_kp, gt_kp) - gt_kp.float()) ** 2).sum(-1)).mean(-1)
    return 1000 * mpjpe.numpy(), 1000 * re.numpy()


def _two_bodies(smpl_model: Any, seed: int) -> tuple[Any, Any]:
    """Prediction and ground truth (SMPL outputs) of 4 people: poses and shapes a little apart."""
    rng = np.random.default_rng(seed)
    pose = rng.normal(0, 0.35, size=(4, 72))
    betas = rng.normal(0, 1, size=(4, 10))
    gt = smpl_model.forward(betas, pose)
    pred = smpl_model.forward(betas + rng.normal(0, 0.3, size=betas.shape), pose + rng.normal(0, 0.15, size=pose.shape))
    return pred, gt


#: a global offset of the prediction: the root subtraction must take it out of MPJPE, not PA alone
OFFSET = np.array([0.1, -0.2, 3.0])


def _two_meshes(smpl_model: Any, seed: int) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = _two_bodies(smpl_model, seed)
    return pred.vertices.astype(np.float64) + OFFSET, gt.vertices.astype(np.float64)


def _ours(pred_v: np.ndarray, gt_v: np.ndarray, reg: np.ndarray, proto: metrics.Protocol) -> tuple[np.ndarray, ...]:
    pj, pr = metrics.protocol_joints(pred_v, reg, proto)
    gj, gr = metrics.protocol_joints(gt_v, reg, proto)
    pve = metrics.pve(pred_v - pr, gt_v - gr) if proto.pve_root_aligned else metrics.pve(pred_v, gt_v)
    return 1000 * metrics.mpjpe(pj, gj), 1000 * metrics.pa_mpjpe(pj, gj), 1000 * pve


def test_tokenhmr_emdb_protocol_matches_its_evaluator(smpl_model: Any, smpl_arrays: dict) -> None:
    """TokenHMR's Evaluator, EMDB branch, written out in torch: SMPL's own J_regressor on the mesh, root = mean of
    joints 1 and 2, all 24 joints, PVE of the root-aligned meshes."""
    import torch

    pred_v, gt_v = _two_meshes(smpl_model, 7)
    jreg = np.asarray(smpl_arrays["J_regressor"], dtype=np.float64)
    assert jreg.shape == (24, 6890)
    reg_t = torch.from_numpy(jreg).float()  # the official code: J_regressor.float()
    gv, pv = torch.from_numpy(gt_v).float(), torch.from_numpy(pred_v).float()
    gk, pk = reg_t @ gv, reg_t @ pv
    g_pel, p_pel = (gk[:, [1]] + gk[:, [2]]) / 2.0, (pk[:, [1]] + pk[:, [2]]) / 2.0
    gk, pk, gv, pv = gk - g_pel, pk - p_pel, gv - g_pel, pv - p_pel
    want_mpjpe, want_re = _official_errors(pk[:, list(range(24))], gk[:, list(range(24))])
    want_pve = 1000 * torch.sqrt(((pv - gv) ** 2).sum(-1)).mean(-1).numpy()
    mpjpe, pa, pve = _ours(pred_v, gt_v, jreg, metrics.PROTOCOLS["tokenhmr-emdb"])
    # the official code runs in float32: agreement to float32 rounding of metre-scale coordinates
    assert np.allclose(mpjpe, want_mpjpe, atol=2e-3) and np.allclose(pve, want_pve, atol=2e-3)
    assert np.allclose(pa, want_re, atol=2e-3)
    assert (mpjpe > 10).all()  # a real error, not a trivially zero case
    # the H36M regressor's LSP hips (the old `--pelvis hips`) is something else on the same meshes
    h36m = np.zeros((17, 6890))
    rng = np.random.default_rng(8)
    for j in range(17):
        idx = rng.choice(6890, size=10, replace=False)
        h36m[j, idx] = rng.dirichlet(np.ones(10))
    other = _ours(pred_v, gt_v, h36m, metrics.get_protocol("poco-3dpw", "lsp-hips"))[0]
    assert not np.allclose(other, mpjpe, rtol=0.05)


def _tokenhmr_44(vertices: np.ndarray, j45: np.ndarray, j19: np.ndarray) -> np.ndarray:
    """TokenHMR's 44 keypoints: 25 OpenPose joints picked from smplx's 45 (its smpl_to_openpose map), then J19."""
    op25 = [24, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34]
    return np.concatenate([j45[:, op25], np.einsum("jv,bvc->bjc", j19, vertices)], axis=1)


def test_tokenhmr_3dpw_protocol_matches_its_evaluator(smpl_model: Any) -> None:
    """TokenHMR's Evaluator, 3DPW-TEST: 44 keypoints, pelvis index 39, KEYPOINT_LIST [25..37, 43], PVE of meshes
    minus that pelvis; here with a synthetic SMPL_to_J19 regressor."""
    import torch

    rng = np.random.default_rng(9)
    j19 = np.zeros((19, 6890))
    for j in range(19):
        idx = rng.choice(6890, size=15, replace=False)
        j19[j, idx] = rng.dirichlet(np.ones(15))
    pred, gt = _two_bodies(smpl_model, 10)
    pred_v, gt_v = pred.vertices.astype(np.float64) + OFFSET, gt.vertices.astype(np.float64)
    # the model's 44 keypoints: its 45 smplx joints (the runtime's joints45) → 25 OpenPose, then J19 of the mesh
    kp_p = torch.from_numpy(_tokenhmr_44(pred_v, pred.joints45.astype(np.float64) + OFFSET, j19)).float()
    kp_g = torch.from_numpy(_tokenhmr_44(gt_v, gt.joints45.astype(np.float64), j19)).float()
    pel_p, pel_g = kp_p[:, [39]], kp_g[:, [39]]
    keep = [25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 43]
    want_mpjpe, want_re = _official_errors((kp_p - pel_p)[:, keep], (kp_g - pel_g)[:, keep])
    pv, gv = torch.from_numpy(pred_v).float() - pel_p, torch.from_numpy(gt_v).float() - pel_g
    want_pve = 1000 * torch.sqrt(((pv - gv) ** 2).sum(-1)).mean(-1).numpy()
    mpjpe, pa, pve = _ours(pred_v, gt_v, j19, metrics.PROTOCOLS["tokenhmr-3dpw"])
    assert np.allclose(mpjpe, want_mpjpe, atol=2e-3) and np.allclose(pa, want_re, atol=2e-3)
    assert np.allclose(pve, want_pve, atol=2e-3)
    assert (mpjpe > 10).all()


def test_poco_3dpw_protocol_is_the_h36m_one() -> None:
    """POCO: J_regressor_h36m on the mesh, pelvis = joint 0 subtracted, then H36M_TO_J14; PVE of raw meshes."""
    rng = np.random.default_rng(11)
    reg = rng.dirichlet(np.ones(6890), size=17)
    pv, gv = rng.normal(size=(2, 6890, 3)), rng.normal(size=(2, 6890, 3))
    j_p, j_g = reg @ pv, reg @ gv  # (2, 17, 3) by broadcasting
    want = np.linalg.norm((j_p[:, list(metrics.H36M_TO_J14)] - j_p[:, [0]]) - (j_g[:, list(metrics.H36M_TO_J14)]
                                                                               - j_g[:, [0]]), axis=-1).mean(-1)
    mpjpe, _, pve = _ours(pv, gv, reg, metrics.PROTOCOLS["poco-3dpw"])
    assert np.allclose(mpjpe, 1000 * want) and np.allclose(pve, 1000 * np.linalg.norm(pv - gv, axis=-1).mean(-1))


def test_protocol_selection_errors() -> None:
    assert metrics.get_protocol("tokenhmr-emdb").root == (1, 2)
    with pytest.raises(ValueError, match="unknown protocol"):
        metrics.get_protocol("spin")
    with pytest.raises(ValueError, match="H36M regressor only"):
        metrics.get_protocol("tokenhmr-3dpw", "lsp-hips")


def test_rotmat_mse_matches_poco_calculate_distance_pose() -> None:
    """POCO: MSELoss(reduction='none')(pred_rotmat, batch_rodrigues(gt)).mean(-1).mean(-1), written out in torch."""
    import torch

    from hpsedge.runtime.rotations import axis_angle_to_rotmat

    rng = np.random.default_rng(12)
    gt_aa = rng.normal(0, 0.6, size=(3, 24, 3))
    pred = axis_angle_to_rotmat(gt_aa + rng.normal(0, 0.2, size=gt_aa.shape))
    # Rodrigues by hand in torch (the quaternion route of batch_rodrigues gives the same matrix)
    aa = torch.from_numpy(gt_aa.reshape(-1, 3))
    angle = aa.norm(dim=1, keepdim=True)
    k = aa / angle
    kx = torch.zeros(len(aa), 3, 3, dtype=torch.float64)
    kx[:, 0, 1], kx[:, 0, 2], kx[:, 1, 0] = -k[:, 2], k[:, 1], k[:, 2]
    kx[:, 1, 2], kx[:, 2, 0], kx[:, 2, 1] = -k[:, 0], -k[:, 1], k[:, 0]
    rot = torch.eye(3, dtype=torch.float64) + torch.sin(angle)[..., None] * kx + (1 - torch.cos(angle))[..., None] * kx @ kx
    want = torch.nn.MSELoss(reduction="none")(torch.from_numpy(pred), rot.view(3, 24, 3, 3)).mean(-1).mean(-1)
    assert np.allclose(metrics.rotmat_mse(pred, rot.view(3, 24, 3, 3).numpy()), want.numpy(), atol=1e-12)


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
