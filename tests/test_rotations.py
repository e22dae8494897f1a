"""hpsedge.runtime.rotations: hand-made cases, round trips, edge angles (0 and π)."""

from __future__ import annotations

import numpy as np
import pytest

from hpsedge.errors import InputError
from hpsedge.runtime.rotations import (
    axis_angle_to_rotmat,
    geodesic_angle,
    quat_to_rotmat,
    rot6d_to_rotmat,
    rot6d_to_rotmat_rows,
    rotmat_to_axis_angle,
    rotmat_to_quat,
)

# Rotation by +90° about x (right-hand rule): y → z, z → −y.
RX90 = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
# Rotation by +90° about z: x → y, y → −x.
RZ90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def random_rotations(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, 4))
    return quat_to_rotmat(q)


def assert_rotation(r: np.ndarray, atol: float = 1e-12) -> None:
    eye = np.broadcast_to(np.eye(3), r.shape)
    np.testing.assert_allclose(np.swapaxes(r, -1, -2) @ r, eye, atol=atol)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=atol)


# ---- 6D ----------------------------------------------------------------------------------------


def test_rot6d_identity_pattern_both_conventions() -> None:
    # The identity's 6D vector differs between the two conventions.
    spin = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    rows = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    # columns: a1 = (x0, x2, x4) = (1, 0, 0), a2 = (x1, x3, x5) = (0, 1, 0) -> I
    np.testing.assert_array_equal(rot6d_to_rotmat(spin), np.eye(3))
    # rows: a1 = (x0, x1, x2) = (1, 0, 0), a2 = (x3, x4, x5) = (0, 1, 0) -> I
    np.testing.assert_array_equal(rot6d_to_rotmat_rows(rows), np.eye(3))
    # SPIN's identity pattern read with the row convention is degenerate: a1 = a2 = (1, 0, 0), so
    # b2 = normalize(0) = 0 (F.normalize's eps floor) and b3 = 0, exactly like the torch code.
    np.testing.assert_array_equal(rot6d_to_rotmat_rows(spin), [[1, 0, 0], [0, 0, 0], [0, 0, 0]])


def test_rot6d_hand_made_90deg_conventions_are_transposes() -> None:
    # x = (1, 0, 0, 0, 0, 1) gives the same two Gram-Schmidt inputs in both conventions:
    #   column convention: a1 = (x0, x2, x4) = (1, 0, 0), a2 = (x1, x3, x5) = (0, 0, 1)
    #   row convention:    a1 = (x0, x1, x2) = (1, 0, 0), a2 = (x3, x4, x5) = (0, 0, 1)
    # b3 = b1 × b2 = (0, −1, 0). Stacked as columns: Rx(+90°); stacked as rows: Rx(−90°) = Rx(+90°)ᵀ.
    x = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    r_col = rot6d_to_rotmat(x)
    r_row = rot6d_to_rotmat_rows(x)
    np.testing.assert_array_equal(r_col, RX90)
    np.testing.assert_array_equal(r_row, RX90.T)
    assert not np.allclose(r_col, r_row)
    np.testing.assert_allclose(r_col, axis_angle_to_rotmat(np.array([np.pi / 2, 0, 0])), atol=1e-15)


def test_rot6d_90deg_about_z_from_its_own_6d() -> None:
    # SPIN 6D of R is R[:, :2] read row-major = (R00, R01, R10, R11, R20, R21) = (0, −1, 1, 0, 0, 0).
    np.testing.assert_array_equal(rot6d_to_rotmat(np.array([0.0, -1.0, 1.0, 0.0, 0.0, 0.0])), RZ90)
    # TokenHMR 6D of R is its first two rows = (0, −1, 0, 1, 0, 0).
    np.testing.assert_array_equal(rot6d_to_rotmat_rows(np.array([0.0, -1.0, 0.0, 1.0, 0.0, 0.0])), RZ90)


def test_rot6d_round_trips_and_gram_schmidt() -> None:
    r = random_rotations(50)
    np.testing.assert_allclose(rot6d_to_rotmat(r[:, :, :2].reshape(-1, 6)), r, atol=1e-12)
    np.testing.assert_allclose(rot6d_to_rotmat_rows(r[:, :2, :].reshape(-1, 6)), r, atol=1e-12)
    # Unnormalised, non-orthogonal input: the result is still a rotation, with b1 ∥ a1.
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 7, 6)).astype(np.float32)
    rc = rot6d_to_rotmat(x)
    rr = rot6d_to_rotmat_rows(x)
    assert rc.shape == rr.shape == (4, 7, 3, 3) and rc.dtype == np.float32
    assert_rotation(rc.astype(np.float64), atol=1e-5)
    assert_rotation(rr.astype(np.float64), atol=1e-5)
    a1 = x[..., 0::2] / np.linalg.norm(x[..., 0::2], axis=-1, keepdims=True)
    np.testing.assert_allclose(rc[..., :, 0], a1, atol=1e-6)
    np.testing.assert_allclose(
        rr[..., 0, :], x[..., :3] / np.linalg.norm(x[..., :3], axis=-1)[..., None], atol=1e-6
    )


def test_rot6d_zero_input_is_finite() -> None:
    # F.normalize floors the norm at 1e-12, so a zero vector gives zeros, not NaN.
    assert np.isfinite(rot6d_to_rotmat(np.zeros(6))).all()
    assert np.isfinite(rot6d_to_rotmat_rows(np.zeros(6))).all()


def test_rot6d_bad_shape() -> None:
    with pytest.raises(InputError, match=r"\[\.\.\., 6\]"):
        rot6d_to_rotmat(np.zeros((3, 5)))


# ---- axis-angle ----------------------------------------------------------------------------------


def test_axis_angle_hand_made() -> None:
    np.testing.assert_array_equal(axis_angle_to_rotmat(np.zeros(3)), np.eye(3))
    np.testing.assert_allclose(axis_angle_to_rotmat(np.array([0, 0, np.pi / 2])), RZ90, atol=1e-15)
    np.testing.assert_allclose(
        axis_angle_to_rotmat(np.array([np.pi, 0, 0])), np.diag([1.0, -1.0, -1.0]), atol=1e-15
    )
    np.testing.assert_array_equal(rotmat_to_axis_angle(np.eye(3)), np.zeros(3))
    np.testing.assert_allclose(rotmat_to_axis_angle(RX90), [np.pi / 2, 0, 0], atol=1e-15)


def test_axis_angle_round_trip_generic_batched() -> None:
    rng = np.random.default_rng(1)
    axis = rng.normal(size=(2, 5, 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    angle = rng.uniform(0.0, np.pi * 0.999, size=(2, 5, 1))
    v = axis * angle
    r = axis_angle_to_rotmat(v)
    assert r.shape == (2, 5, 3, 3)
    assert_rotation(r)
    np.testing.assert_allclose(rotmat_to_axis_angle(r), v, atol=1e-12)


@pytest.mark.parametrize("angle", [0.0, 1e-12, 1e-9, 1e-6, 1e-4, 1e-2])
def test_axis_angle_round_trip_near_zero(angle: float) -> None:
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    v = axis * angle
    r = axis_angle_to_rotmat(v)
    # First order: R ≈ I + [v]×, accurate to angle².
    np.testing.assert_allclose(r[2, 1] - r[1, 2], 2 * np.sin(angle) * axis[0], rtol=1e-12, atol=1e-300)
    back = rotmat_to_axis_angle(r)
    np.testing.assert_allclose(back, v, rtol=1e-9, atol=1e-300)


@pytest.mark.parametrize("delta", [1e-2, 1e-5, 1e-8, 1e-12, 0.0])
def test_axis_angle_round_trip_near_pi(delta: float) -> None:
    axis = np.array([2.0, -1.0, 0.5]) / np.linalg.norm([2.0, -1.0, 0.5])
    v = axis * (np.pi - delta)
    r = axis_angle_to_rotmat(v)
    back = rotmat_to_axis_angle(r)
    assert np.linalg.norm(back) <= np.pi + 1e-12
    # The rotation is recovered (at exactly π the axis sign is arbitrary).
    np.testing.assert_allclose(axis_angle_to_rotmat(back), r, atol=1e-9)
    if delta >= 1e-8:
        np.testing.assert_allclose(back, v, atol=1e-7)
    else:
        assert min(np.abs(back - v).max(), np.abs(back + v).max()) < 1e-6


# ---- quaternions -----------------------------------------------------------------------------------


def test_quaternion_conventions() -> None:
    # (w, x, y, z) = (cos 45°, 0, 0, sin 45°) is +90° about z.
    q = np.array([np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)])
    np.testing.assert_allclose(quat_to_rotmat(q), RZ90, atol=1e-15)
    np.testing.assert_allclose(rotmat_to_quat(RZ90), q, atol=1e-15)
    np.testing.assert_array_equal(rotmat_to_quat(np.eye(3)), [1.0, 0.0, 0.0, 0.0])
    # Unnormalised input is normalised; −q is the same rotation.
    np.testing.assert_allclose(quat_to_rotmat(-3.0 * q), RZ90, atol=1e-15)


def test_quaternion_round_trip_including_pi() -> None:
    r = np.concatenate(
        [random_rotations(200, seed=5), np.diag([1.0, -1.0, -1.0])[None], np.diag([-1.0, 1.0, -1.0])[None]]
    )
    q = rotmat_to_quat(r)
    assert (q[:, 0] >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-15)
    np.testing.assert_allclose(quat_to_rotmat(q), r, atol=1e-12)


# ---- geodesic distance -------------------------------------------------------------------------


def test_geodesic_angle() -> None:
    rz = lambda a: axis_angle_to_rotmat(np.array([0.0, 0.0, a]))  # noqa: E731
    assert geodesic_angle(np.eye(3), np.eye(3)) == 0.0
    np.testing.assert_allclose(geodesic_angle(np.eye(3), RZ90), np.pi / 2, atol=1e-15)
    np.testing.assert_allclose(geodesic_angle(rz(0.3), rz(-0.4)), 0.7, atol=1e-14)
    # Full precision for tiny angles and near π, where arccos((tr − 1)/2) loses it.
    np.testing.assert_allclose(geodesic_angle(np.eye(3), rz(1e-9)), 1e-9, rtol=1e-6)
    np.testing.assert_allclose(geodesic_angle(np.eye(3), rz(np.pi - 1e-9)), np.pi - 1e-9, atol=1e-12)
    # Broadcasting over leading dims.
    r = random_rotations(6).reshape(2, 3, 3, 3)
    assert geodesic_angle(r, np.eye(3)).shape == (2, 3)
    np.testing.assert_allclose(
        geodesic_angle(r, np.eye(3)), np.linalg.norm(rotmat_to_axis_angle(r), axis=-1), atol=1e-12
    )


def test_quaternion_maths_moved_here_is_still_importable_from_temporal() -> None:
    """The split of temporal.py: the quaternion helpers live in rotations and temporal re-exports the same objects."""
    from hpsedge.runtime import rotations, temporal

    for name in ("quat_mul", "quat_log", "quat_exp", "slerp", "slerp_rotmat", "quat_continuity", "project_to_so3"):
        assert getattr(temporal, name) is getattr(rotations, name), name
        assert name in rotations.__all__ and name in temporal.__all__
    q = rotmat_to_quat(random_rotations(5, seed=3))
    np.testing.assert_allclose(rotations.quat_mul(q, rotations.quat_conj(q)), [[1, 0, 0, 0]] * 5, atol=1e-12)
