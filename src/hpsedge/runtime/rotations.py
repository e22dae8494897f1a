"""Rotation conversions in numpy, vectorised over any leading dimensions.

Conventions used throughout this module:

* A rotation matrix ``R`` is a proper rotation (``det = +1``) acting on **column** vectors:
  ``x' = R @ x``. Batches have shape ``[..., 3, 3]``.
* An axis-angle vector ``v`` (shape ``[..., 3]``) is ``angle * unit_axis`` with the angle in **radians**
  and the right-hand rule (SMPL's ``pose`` parameters use this convention).
* A quaternion ``q`` (shape ``[..., 4]``) is stored **scalar first, (w, x, y, z)**, Hamilton convention,
  so that ``quat_to_rotmat(q) @ p`` rotates ``p`` the same way as ``q * p * q⁻¹``. Quaternions returned by
  this module are unit length with ``w >= 0``.
* The two 6D conventions are documented on :func:`rot6d_to_rotmat` (SPIN / POCO / CLIFF / PARE) and
  :func:`rot6d_to_rotmat_rows` (TokenHMR, pytorch3d). They are **not** interchangeable: for the same six
  numbers one result is the transpose of the other.

Quaternion maths (Hamilton product, log/exp maps, SLERP along the shorter arc, sign continuity) and the
projection of a matrix onto SO(3) live here too; :mod:`hpsedge.runtime.temporal` builds on them (and re-exports
them under their old import path).

Only numpy is used (this is runtime code).
"""

from __future__ import annotations

import numpy as np

from hpsedge.errors import InputError

__all__ = [
    "axis_angle_to_rotmat",
    "geodesic_angle",
    "project_to_so3",
    "quat_conj",
    "quat_continuity",
    "quat_exp",
    "quat_log",
    "quat_mul",
    "quat_normalize",
    "quat_to_rotmat",
    "rot6d_to_rotmat",
    "rot6d_to_rotmat_rows",
    "rotmat_to_axis_angle",
    "rotmat_to_quat",
    "slerp",
    "slerp_rotmat",
]

# Same epsilon as torch.nn.functional.normalize's default.
_NORMALIZE_EPS = 1e-12


def _as_float(x: np.ndarray, last: tuple[int, ...], what: str) -> np.ndarray:
    """``x`` as a float array whose trailing dimensions are ``last`` (float32 stays float32)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{what} must be numeric, got dtype {arr.dtype}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    if arr.ndim < len(last) or tuple(arr.shape[arr.ndim - len(last) :]) != last:
        want = "[..., " + ", ".join(str(d) for d in last) + "]"
        raise InputError(f"{what} must have shape {want}, got {tuple(arr.shape)}")
    return arr


def _normalize(v: np.ndarray) -> np.ndarray:
    """``v / max(‖v‖, 1e-12)`` along the last axis, like ``F.normalize(v, dim=-1)``."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, _NORMALIZE_EPS)


def _gram_schmidt(a1: np.ndarray, a2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    b1 = _normalize(a1)
    b2 = _normalize(a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1)
    b3 = np.cross(b1, b2)
    return b1, b2, b3


def rot6d_to_rotmat(x: np.ndarray) -> np.ndarray:
    """6D → rotation matrix, **SPIN/POCO column convention** (used by POCO-CLIFF/-PARE/-HMR).

    The six numbers ``x0..x5`` of one joint are read as a 3×2 matrix in row-major order, so its two columns
    are ``a1 = (x0, x2, x4)`` and ``a2 = (x1, x3, x5)``. Gram-Schmidt gives ``b1 = a1/‖a1‖``,
    ``b2 = normalize(a2 − (b1·a2) b1)`` (norms floored at 1e-12, like ``F.normalize``), ``b3 = b1 × b2``,
    and the result has ``b1, b2, b3`` as its **columns**. Equivalently the 6D vector of a rotation ``R`` is
    ``R[:, :2].reshape(6)`` = (R00, R01, R10, R11, R20, R21).

    Args:
        x: ``[..., 6]``.

    Returns:
        ``[..., 3, 3]`` rotation matrices (same float dtype as ``x``; integers become float64).
    """
    x = _as_float(x, (6,), "6D rotation")
    b1, b2, b3 = _gram_schmidt(x[..., 0::2], x[..., 1::2])
    return np.stack((b1, b2, b3), axis=-1)


def rot6d_to_rotmat_rows(x: np.ndarray) -> np.ndarray:
    """6D → rotation matrix, **row convention** of TokenHMR (identical to pytorch3d ``rotation_6d_to_matrix``).

    ``a1 = (x0, x1, x2)``, ``a2 = (x3, x4, x5)``; the same Gram-Schmidt as :func:`rot6d_to_rotmat`, but the
    result has ``b1, b2, b3`` as its **rows**. Equivalently the 6D vector of ``R`` is its first two rows,
    ``R[:2, :].reshape(6)``. (``saidwivedi/TokenHMR: tokenhmr/lib/utils/geometry.py``: reshape to [2, 3],
    transpose, normalise the columns, then ``torch.stack(..., dim=-2)``.)

    Args:
        x: ``[..., 6]``.

    Returns:
        ``[..., 3, 3]`` rotation matrices.
    """
    x = _as_float(x, (6,), "6D rotation")
    b1, b2, b3 = _gram_schmidt(x[..., 0:3], x[..., 3:6])
    return np.stack((b1, b2, b3), axis=-2)


def _skew(v: np.ndarray) -> np.ndarray:
    """``[..., 3] → [..., 3, 3]`` cross-product matrix: ``_skew(v) @ p == v × p``."""
    z = np.zeros_like(v[..., 0])
    x, y, w = v[..., 0], v[..., 1], v[..., 2]
    return np.stack(
        (np.stack((z, -w, y), -1), np.stack((w, z, -x), -1), np.stack((-y, x, z), -1)),
        axis=-2,
    )


def axis_angle_to_rotmat(v: np.ndarray) -> np.ndarray:
    """Axis-angle (radians, right-hand rule) → rotation matrix, by Rodrigues' formula.

    ``R = I + (sin θ/θ)·[v]× + ((1 − cos θ)/θ²)·[v]×²`` with ``θ = ‖v‖``. The coefficients are evaluated
    without cancellation (``(1 − cos θ)/θ² = ½·sinc²(θ/2)``), so the result is exact at ``θ = 0``
    (the identity) and accurate for tiny angles.

    Args:
        v: ``[..., 3]``.

    Returns:
        ``[..., 3, 3]``.
    """
    v = _as_float(v, (3,), "axis-angle")
    theta = np.linalg.norm(v, axis=-1)
    # np.sinc(t) = sin(πt)/(πt), exact 1 at t = 0.
    a = np.sinc(theta / np.pi)
    half = np.sinc(theta / (2.0 * np.pi))
    b = 0.5 * half * half
    k = _skew(v)
    eye = np.eye(3, dtype=v.dtype)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def quat_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Quaternion (w, x, y, z) → rotation matrix. ``q`` is normalised first (a zero quaternion gives NaN).

    Args:
        q: ``[..., 4]``, scalar first.

    Returns:
        ``[..., 3, 3]``.
    """
    q = _as_float(q, (4,), "quaternion")
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    rows = (
        np.stack((1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy)), -1),
        np.stack((2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx)), -1),
        np.stack((2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy)), -1),
    )
    return np.stack(rows, axis=-2)


def rotmat_to_quat(r: np.ndarray) -> np.ndarray:
    """Rotation matrix → unit quaternion (w, x, y, z) with ``w >= 0``.

    Shepperd's method: of the four candidate formulas the one with the largest denominator
    (``max(1 + tr, 1 + 2R00 − tr, 1 + 2R11 − tr, 1 + 2R22 − tr)``) is used, so it is stable for every
    rotation, including angles near π. The input should be a rotation matrix; a slightly non-orthogonal
    one yields the quaternion of a nearby rotation.

    Args:
        r: ``[..., 3, 3]``.

    Returns:
        ``[..., 4]``.
    """
    r = _as_float(r, (3, 3), "rotation matrix")
    r00, r01, r02 = r[..., 0, 0], r[..., 0, 1], r[..., 0, 2]
    r10, r11, r12 = r[..., 1, 0], r[..., 1, 1], r[..., 1, 2]
    r20, r21, r22 = r[..., 2, 0], r[..., 2, 1], r[..., 2, 2]
    tr = r00 + r11 + r22
    # Each candidate is (4·q_i) · q, computed from the element that is largest in that candidate.
    cands = np.stack(
        (
            np.stack((1 + tr, r21 - r12, r02 - r20, r10 - r01), -1),
            np.stack((r21 - r12, 1 + r00 - r11 - r22, r01 + r10, r02 + r20), -1),
            np.stack((r02 - r20, r01 + r10, 1 - r00 + r11 - r22, r12 + r21), -1),
            np.stack((r10 - r01, r02 + r20, r12 + r21, 1 - r00 - r11 + r22), -1),
        ),
        axis=-2,
    )  # [..., 4, 4]
    diag = np.stack((1 + tr, 1 + r00 - r11 - r22, 1 - r00 + r11 - r22, 1 - r00 - r11 + r22), -1)
    best = np.argmax(diag, axis=-1)
    q = np.take_along_axis(cands, best[..., None, None], axis=-2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def rotmat_to_axis_angle(r: np.ndarray) -> np.ndarray:
    """Rotation matrix → axis-angle ``[..., 3]`` with the angle in ``[0, π]`` (radians).

    Goes through :func:`rotmat_to_quat` (stable near π) and uses ``θ = 2·atan2(‖(x,y,z)‖, w)``; near ``θ = 0``
    the factor ``θ/sin(θ/2)`` is replaced by its limit ``2/w``, so the identity maps to exactly zero. At
    ``θ = π`` the sign of the axis is arbitrary (both are the same rotation).

    Args:
        r: ``[..., 3, 3]``.

    Returns:
        ``[..., 3]``.
    """
    q = rotmat_to_quat(r)
    w = q[..., 0]
    xyz = q[..., 1:]
    n = np.linalg.norm(xyz, axis=-1)
    small = n < 1e-8
    safe_n = np.where(small, 1.0, n)
    factor = np.where(small, 2.0 / np.where(small, w, 1.0), 2.0 * np.arctan2(n, w) / safe_n)
    return xyz * factor[..., None]


def geodesic_angle(r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Angle in radians, in ``[0, π]``, of the relative rotation ``R1ᵀ·R2`` (broadcast over leading dims).

    Computed as ``2·atan2(‖(x, y, z)‖, |w|)`` of the quaternion of ``R1ᵀ·R2`` (:func:`rotmat_to_quat`), which,
    unlike ``arccos((tr − 1)/2)``, keeps full precision near 0 and near π.
    """
    r1 = _as_float(r1, (3, 3), "rotation matrix")
    r2 = _as_float(r2, (3, 3), "rotation matrix")
    q = rotmat_to_quat(np.swapaxes(r1, -1, -2) @ r2)
    return 2.0 * np.arctan2(np.linalg.norm(q[..., 1:], axis=-1), np.abs(q[..., 0]))


# ================================================ quaternion maths (w, x, y, z), SLERP, projection to SO(3)
def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a ⊗ b`` of quaternions ``[..., 4]`` (scalar first); broadcasts."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b, dtype=np.float64), -1, 0)
    return np.stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        axis=-1,
    )


def quat_conj(q: np.ndarray) -> np.ndarray:
    """Conjugate (= inverse for unit quaternions) ``[..., 4]``."""
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def quat_log(q: np.ndarray) -> np.ndarray:
    """Unit quaternion → rotation vector ``[..., 3]`` (axis·angle, radians, angle in [0, π]).

    ``q`` and ``−q`` give the same result (the shorter of the two arcs): this is the log map of SO(3).
    """
    q = np.asarray(q, dtype=np.float64)
    q = np.where(q[..., :1] < 0.0, -q, q)
    w = q[..., 0]
    xyz = q[..., 1:]
    n = np.linalg.norm(xyz, axis=-1)
    small = n < 1e-10
    # θ/sin(θ/2)·(θ = 2·atan2(n, w)); its limit at n → 0 is 2/w
    factor = np.where(small, 2.0 / np.where(small, w, 1.0), 2.0 * np.arctan2(n, w) / np.where(small, 1.0, n))
    return xyz * factor[..., None]


def quat_exp(v: np.ndarray) -> np.ndarray:
    """Rotation vector ``[..., 3]`` → unit quaternion ``[..., 4]`` (exact at 0)."""
    v = np.asarray(v, dtype=np.float64)
    theta = np.linalg.norm(v, axis=-1)
    # sin(θ/2)/θ = ½·sinc(θ/(2π)) with numpy's normalised sinc; exact ½ at θ = 0
    s = 0.5 * np.sinc(theta / (2.0 * np.pi))
    return np.concatenate((np.cos(0.5 * theta)[..., None], v * s[..., None]), axis=-1)


def quat_normalize(q: np.ndarray) -> np.ndarray:
    """``q / ‖q‖`` along the last axis."""
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions along the **shorter** arc.

    ``slerp(q0, q1, 0) = q0``, ``slerp(q0, q1, 1) = ±q1`` (the sign of ``q1`` is flipped when ``q0·q1 < 0``, which
    is the same rotation), and the rotation angle from ``q0`` grows linearly with ``t``. Computed as
    ``q0 ⊗ exp(t·log(q0⁻¹ ⊗ q1))``, which stays accurate when ``q0 ≈ q1``. Shapes broadcast: ``q [..., 4]``,
    ``t [...]``.
    """
    q0 = np.asarray(q0, dtype=np.float64)
    q1 = np.asarray(q1, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    rel = quat_mul(quat_conj(q0), q1)  # quat_log picks the short arc of ±rel
    return quat_normalize(quat_mul(q0, quat_exp(t[..., None] * quat_log(rel))))


def slerp_rotmat(r0: np.ndarray, r1: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Geodesic interpolation of rotation matrices ``[..., 3, 3]`` (SLERP of their quaternions)."""
    return quat_to_rotmat(slerp(rotmat_to_quat(np.asarray(r0, dtype=np.float64)),
                                rotmat_to_quat(np.asarray(r1, dtype=np.float64)), t))


def quat_continuity(q: np.ndarray, axis: int = 0) -> np.ndarray:
    """Flip signs along ``axis`` so that consecutive quaternions have a non-negative dot product.

    ``q`` and ``−q`` are the same rotation; methods that treat quaternions as vectors (averaging, linear
    filtering, plotting) need this continuity. Returns a new array.
    """
    q = np.moveaxis(np.array(q, dtype=np.float64), axis, 0)
    if q.shape[0] > 1:
        dots = np.sum(q[1:] * q[:-1], axis=-1)
        flips = np.cumsum(dots < 0.0, axis=0) % 2  # odd number of flips so far → negate
        q[1:] = np.where(flips[..., None] == 1, -q[1:], q[1:])
    return np.moveaxis(q, 0, axis)


def project_to_so3(m: np.ndarray) -> np.ndarray:
    """Nearest rotation (Frobenius norm) to each matrix ``[..., 3, 3]``: ``U·diag(1, 1, det(UVᵀ))·Vᵀ``."""
    m = np.asarray(m, dtype=np.float64)
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    d = np.where(d == 0, 1.0, d)
    u = u.copy()
    u[..., :, 2] *= d[..., None]
    return u @ vt
