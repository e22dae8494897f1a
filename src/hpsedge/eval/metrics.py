"""Error and uncertainty-quality metrics of the HPS literature, in numpy (no torch, no scipy).

Joint sets and conventions follow the evaluation code of SPIN / PARE / POCO (``pocolib/utils/eval_utils.py``):
14 LSP joints regressed from the mesh with the Human3.6M regressor (``J_regressor_h36m.npy``, [17, 6890]),
made root-relative, then

* MPJPE: mean over joints of the Euclidean distance (per sample);
* PA-MPJPE: the same after a *similarity* Procrustes alignment (rotation, uniform scale, translation) of the
  prediction onto the ground truth, solved in closed form with an SVD and a reflection fix (det R = +1);
* PVE: mean over the 6890 vertices of the Euclidean distance.

Uncertainty quality (the point of POCO): Pearson and Spearman correlation between a per-person uncertainty
score and its error, and the *sparsification* curve: remove the most uncertain fraction ``x`` of the samples,
take the mean error of the rest. The *oracle* removes the samples with the largest errors first; the area
between the two curves over ``x ∈ [0, 1)`` is the AUSE (Ilg et al., ECCV 2018), in the error's unit.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "H36M_TO_J14",
    "LSP14_NAMES",
    "PELVIS_MODES",
    "ause",
    "joints_from_mesh",
    "mpjpe",
    "pa_mpjpe",
    "pearson",
    "pve",
    "rankdata",
    "resample_curve",
    "root",
    "root_relative",
    "similarity_align",
    "sparsification",
    "spearman",
]

#: the 14 LSP joints among the 17 Human3.6M-regressor joints (SPIN/PARE/POCO ``constants.H36M_TO_J14``)
H36M_TO_J14 = (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10)
LSP14_NAMES = (
    "right ankle", "right knee", "right hip", "left hip", "left knee", "left ankle", "right wrist",
    "right elbow", "right shoulder", "left shoulder", "left elbow", "left wrist", "neck", "head top",
)  # fmt: skip
#: pelvis conventions: ``"h36m"`` the regressor's own pelvis joint (index 0 of the 17, what SPIN, PARE and
#: POCO's code subtract), ``"hips"`` the mid-point of the two LSP hips (TokenHMR's EMDB evaluation)
PELVIS_MODES = ("h36m", "hips")


def joints_from_mesh(vertices: np.ndarray, j_regressor: np.ndarray, pelvis: str = "h36m") -> np.ndarray:
    """Vertices [B, 6890, 3] → root-relative 14 LSP joints [B, 14, 3] (float64).

    ``j_regressor`` is the [17, 6890] H36M regressor; ``pelvis`` one of :data:`PELVIS_MODES`.
    """
    v = np.asarray(vertices, dtype=np.float64)
    j17 = np.einsum("jv,bvc->bjc", np.asarray(j_regressor, dtype=np.float64), v, optimize=True)
    j14 = j17[:, list(H36M_TO_J14)]
    return j14 - root(j17, j14, pelvis)


def root(j17: np.ndarray, j14: np.ndarray, pelvis: str) -> np.ndarray:
    """The [B, 1, 3] root that :func:`joints_from_mesh` subtracts."""
    if pelvis == "h36m":
        return j17[:, [0]]
    if pelvis == "hips":
        return 0.5 * (j14[:, [2]] + j14[:, [3]])
    raise ValueError(f"pelvis must be one of {PELVIS_MODES}, not {pelvis!r}")


def root_relative(points: np.ndarray, root_point: np.ndarray) -> np.ndarray:
    return np.asarray(points, dtype=np.float64) - np.asarray(root_point, dtype=np.float64)


def mpjpe(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Mean per-joint position error per sample: [B, J, 3] × 2 → [B] (unit of the input)."""
    d = np.asarray(pred, dtype=np.float64) - np.asarray(gt, dtype=np.float64)
    return np.sqrt((d * d).sum(-1)).mean(-1)


def pve(pred_vertices: np.ndarray, gt_vertices: np.ndarray) -> np.ndarray:
    """Per-vertex error per sample (mean Euclidean distance over the mesh): [B, V, 3] × 2 → [B]."""
    return mpjpe(pred_vertices, gt_vertices)


def similarity_align(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``source`` [B, N, 3] moved by the similarity transform (s·R, t) that best fits it onto ``target``.

    Umeyama's closed form: centre both sets, K = Xsᵀ·Xt, K = U·S·Vᵀ, R = V·diag(1, 1, sign det(V·Uᵀ))·Uᵀ,
    s = tr(R·K) / ‖Xs‖², t = μt − s·R·μs. A degenerate source (all points equal) maps to the target's mean.
    """
    s1 = np.asarray(source, dtype=np.float64)
    s2 = np.asarray(target, dtype=np.float64)
    if s1.shape != s2.shape or s1.ndim != 3 or s1.shape[-1] != 3:
        raise ValueError(f"similarity_align needs two [B, N, 3] arrays, got {s1.shape} and {s2.shape}")
    mu1 = s1.mean(axis=1, keepdims=True)
    mu2 = s2.mean(axis=1, keepdims=True)
    x1, x2 = s1 - mu1, s2 - mu2
    var1 = (x1 * x1).sum(axis=(1, 2))
    k = np.einsum("bni,bnj->bij", x1, x2)  # [B, 3, 3]
    u, _, vh = np.linalg.svd(k)
    v = np.swapaxes(vh, 1, 2)
    z = np.tile(np.eye(3), (len(k), 1, 1))
    z[:, 2, 2] = np.sign(np.linalg.det(v @ np.swapaxes(u, 1, 2)))
    z[:, 2, 2][z[:, 2, 2] == 0] = 1.0
    r = v @ z @ np.swapaxes(u, 1, 2)
    trace = np.einsum("bii->b", r @ k)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(var1 > 0, trace / np.where(var1 > 0, var1, 1.0), 0.0)
    t = mu2 - scale[:, None, None] * np.einsum("bij,bnj->bni", r, mu1)
    return scale[:, None, None] * np.einsum("bij,bnj->bni", r, s1) + t


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """MPJPE after similarity Procrustes alignment of ``pred`` onto ``gt``: [B, J, 3] × 2 → [B]."""
    return mpjpe(similarity_align(pred, gt), gt)


# ------------------------------------------------------------------------------------- correlation
def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson's r; None when fewer than 2 samples or either variable is constant."""
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"pearson needs equal lengths, got {a.size} and {b.size}")
    if a.size < 2:
        return None
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    if den == 0 or not np.isfinite(den):
        return None
    return float(np.clip((a * b).sum() / den, -1.0, 1.0))


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (scipy's ``rankdata(method="average")``)."""
    a = np.asarray(x, dtype=np.float64).ravel()
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    # boundaries of runs of equal values
    new = np.r_[True, sorted_a[1:] != sorted_a[:-1]]
    run_id = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], a.size]
    avg = (starts + ends - 1) / 2.0 + 1.0
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = avg[run_id]
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's ρ: Pearson's r of the (tie-averaged) ranks."""
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"spearman needs equal lengths, got {a.size} and {b.size}")
    if a.size < 2:
        return None
    return pearson(rankdata(a), rankdata(b))


# ---------------------------------------------------------------------------------- sparsification
def _remaining_means(errors_in_removal_order: np.ndarray) -> np.ndarray:
    """curve[k] = mean of the errors left after removing the first k (k = 0..n−1)."""
    e = errors_in_removal_order
    n = e.size
    tail_sums = np.cumsum(e[::-1])[::-1]  # sum of e[k:]
    return tail_sums / (n - np.arange(n))


def sparsification(errors: np.ndarray, uncertainty: np.ndarray) -> dict[str, np.ndarray]:
    """Sparsification curve of ``uncertainty`` and the oracle curve for ``errors``, one point per sample.

    Returns ``fraction`` [n] (k/n removed), ``curve`` [n] (mean error of the rest, removing the most uncertain
    first; ties broken by sample order) and ``oracle`` [n] (removing the largest errors first).
    """
    e = np.asarray(errors, dtype=np.float64).ravel()
    u = np.asarray(uncertainty, dtype=np.float64).ravel()
    if e.shape != u.shape:
        raise ValueError(f"sparsification needs one uncertainty per error, got {u.size} and {e.size}")
    if e.size == 0:
        return {"fraction": np.zeros(0), "curve": np.zeros(0), "oracle": np.zeros(0)}
    if not (np.isfinite(e).all() and np.isfinite(u).all()):
        raise ValueError("sparsification needs finite errors and uncertainties")
    by_u = np.argsort(-u, kind="mergesort")
    by_e = np.argsort(-e, kind="mergesort")
    return {
        "fraction": np.arange(e.size) / e.size,
        "curve": _remaining_means(e[by_u]),
        "oracle": _remaining_means(e[by_e]),
    }


def ause(errors: np.ndarray, uncertainty: np.ndarray) -> float | None:
    """Area between the sparsification and oracle curves over the removed fraction ∈ [0, 1) (error unit).

    0 for a score that ranks the samples exactly as their errors do; larger is worse. None without samples.
    """
    sp = sparsification(errors, uncertainty)
    if sp["curve"].size == 0:
        return None
    return float(np.mean(sp["curve"] - sp["oracle"]))


def resample_curve(sp: dict[str, np.ndarray], points: int = 20) -> dict[str, list[float]]:
    """The curves at ``points`` evenly spaced removed fractions 0, 1/points, … (for JSON and plots)."""
    n = sp["curve"].size
    if n == 0:
        return {"fraction": [], "curve": [], "oracle": []}
    fr = np.arange(points) / points
    k = np.minimum((fr * n).astype(int), n - 1)
    return {
        "fraction": [round(float(f), 4) for f in fr],
        "curve": [float(v) for v in sp["curve"][k]],
        "oracle": [float(v) for v in sp["oracle"][k]],
    }
