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

Each paper scores its own way; :data:`PROTOCOLS` holds the three this module reproduces (which joint
regressor, which joints, which root, whether PVE is root-aligned, how the crop is taken):

* ``poco-3dpw``: SPIN/PARE/POCO (``pocolib/dataset/base_dataset.py``, ``pocolib/core/trainer.py``): H36M
  regressor, 14 LSP joints, root = the regressor's pelvis (joint 0), PVE of the meshes as returned, the crop of
  ``crop_cv2`` (integer centre and side), rows without SMPL scored against the zero pose and shape.
* ``tokenhmr-3dpw``: TokenHMR (``tokenhmr/lib/utils/pose_utils.py`` ``Evaluator``, 3DPW-TEST in
  ``lib/configs/datasets_eval.yaml``): its 44 keypoints are 25 OpenPose joints + the 19 of ``SMPL_to_J19.pkl``;
  the scored ones, [25..37, 43], are J19 rows 0–12 and 18, the root (``PELVIS_IND`` 39) is J19 row 14. PVE of
  the meshes made relative to that root.
* ``tokenhmr-emdb``: TokenHMR's EMDB branch of the same ``Evaluator``: SMPL's own 24-row ``J_regressor``
  applied to the mesh, root = mean of rows 1 and 2 (the hips), all 24 joints scored, PVE root-aligned.

POCO also logs a per-*joint* uncertainty–error correlation (``trainer.py`` → ``SaveResults.accumulate_corr_vect``):
Pearson's r over every (sample, joint) pair of the rotation-matrix MSE (mean over the 3×3 entries of
(R_pred − R_gt)², :func:`rotmat_mse`) against that joint's σ after ``prepare_uncert`` (raw σ with the released
configs, ``KINEMATIC_UNCERT: false``; the σ accumulated along the kinematic chain when it is true).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

__all__ = [
    "H36M_TO_J14",
    "LSP14_NAMES",
    "PELVIS_MODES",
    "PROTOCOLS",
    "TOKENHMR_J19_JOINTS",
    "TOKENHMR_J19_PELVIS",
    "Protocol",
    "ause",
    "get_protocol",
    "joints_from_mesh",
    "mpjpe",
    "pa_mpjpe",
    "pearson",
    "protocol_joints",
    "pve",
    "rankdata",
    "resample_curve",
    "root",
    "root_relative",
    "rotmat_mse",
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
#: root conventions of the H36M regressor's 14 joints (``--pelvis``): ``"h36m"`` the regressor's own pelvis joint
#: (index 0 of the 17, what SPIN, PARE and POCO's code subtract), ``"lsp-hips"`` the mid-point of the two LSP hips
#: (H36M rows 4 and 1). ``lsp-hips`` is no paper's protocol: TokenHMR's EMDB protocol (hips of SMPL's own 24-joint
#: regressor, all 24 joints) is ``tokenhmr-emdb``; the two differ by hundreds of mm on the same predictions.
PELVIS_MODES = ("h36m", "lsp-hips")

#: TokenHMR's 3DPW keypoints [25..37, 43] of its 44 (25 OpenPose + 19 J19) as rows of ``SMPL_to_J19.pkl``
TOKENHMR_J19_JOINTS = (*range(13), 18)
#: TokenHMR's ``PELVIS_IND`` 39 as a row of ``SMPL_to_J19.pkl``
TOKENHMR_J19_PELVIS = 14
#: the SMPL joint regressor's rows of the hips (left, right), whose mid-point is TokenHMR's EMDB root
SMPL_HIPS = (1, 2)


@dataclass(frozen=True)
class Protocol:
    """One paper's way of scoring a mesh against the ground truth (see the module docstring)."""

    name: str
    regressor: str  #: "h36m" ([17, 6890] file), "j19" ([19, 6890] file) or "smpl" (the SMPL file's own [24, 6890])
    joints: tuple[int, ...]  #: rows of the regressed joints that are scored
    root: tuple[int, ...]  #: rows averaged into the root subtracted from joints (and, if ``pve_root_aligned``, meshes)
    pve_root_aligned: bool  #: PVE of root-relative meshes (TokenHMR) or of the meshes as returned (POCO)
    round_crop: bool  #: crop the integer centre and side (POCO's ``crop_cv2``); bbox_info keeps the exact box
    zero_gt_without_smpl: bool  #: rows with has_smpl = 0 are scored against pose 0, betas 0 (POCO's loader)
    source: str  #: where the official code is
    joints_text: str
    root_text: str

    @property
    def regressor_rows(self) -> int | None:
        return {"h36m": 17, "j19": 19, "smpl": None}[self.regressor]


PROTOCOLS: dict[str, Protocol] = {
    "poco-3dpw": Protocol(
        "poco-3dpw", "h36m", H36M_TO_J14, (0,), pve_root_aligned=False, round_crop=True, zero_gt_without_smpl=True,
        source="saidwivedi/POCO pocolib/core/trainer.py validation_step, pocolib/dataset/base_dataset.py",
        joints_text="14 LSP joints from the H36M regressor (J_regressor_h36m, H36M_TO_J14)",
        root_text="regressed H36M pelvis (joint 0), as SPIN/PARE/POCO's evaluation code",
    ),
    "tokenhmr-3dpw": Protocol(
        "tokenhmr-3dpw", "j19", TOKENHMR_J19_JOINTS, (TOKENHMR_J19_PELVIS,), pve_root_aligned=True, round_crop=False,
        zero_gt_without_smpl=False,
        source="saidwivedi/TokenHMR tokenhmr/lib/utils/pose_utils.py Evaluator, lib/configs/datasets_eval.yaml 3DPW-TEST",
        joints_text="TokenHMR's 3DPW keypoints [25..37, 43] of its 44: rows 0-12 and 18 of SMPL_to_J19",
        root_text="PELVIS_IND 39 (row 14 of SMPL_to_J19)",
    ),
    "tokenhmr-emdb": Protocol(
        "tokenhmr-emdb", "smpl", tuple(range(24)), SMPL_HIPS, pve_root_aligned=True, round_crop=False,
        zero_gt_without_smpl=False,
        source="saidwivedi/TokenHMR tokenhmr/lib/utils/pose_utils.py Evaluator (EMDB branch)",
        joints_text="all 24 joints of SMPL's own J_regressor applied to the mesh",
        root_text="mid-point of SMPL joints 1 and 2 (the hips)",
    ),
}


def get_protocol(name: str, pelvis: str | None = None) -> Protocol:
    """A protocol by name; ``pelvis="lsp-hips"`` swaps the root of ``poco-3dpw`` (no paper's protocol)."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r} (choose from {', '.join(PROTOCOLS)})")
    proto = PROTOCOLS[name]
    if pelvis is None or (pelvis == "h36m" and proto.regressor == "h36m"):
        return proto
    if pelvis == "hips":
        raise ValueError("'hips' was the mid-point of the H36M regressor's LSP hips, not TokenHMR's EMDB protocol: "
                         "use the protocol tokenhmr-emdb, or pelvis 'lsp-hips' for the old figures")
    if pelvis not in PELVIS_MODES:
        raise ValueError(f"pelvis must be one of {PELVIS_MODES}, not {pelvis!r}")
    if proto.regressor != "h36m":
        raise ValueError(f"pelvis {pelvis!r} applies to the H36M regressor only; protocol {name} has its own root")
    return replace(proto, name=f"{name}+lsp-hips", root=(H36M_TO_J14[2], H36M_TO_J14[3]),
                   pve_root_aligned=True, root_text="mid-point of the H36M regressor's LSP hips (no paper's protocol)")


def regress(vertices: np.ndarray, regressor: np.ndarray) -> np.ndarray:
    """[B, V, 3] vertices × [J, V] regressor → [B, J, 3] joints (float64)."""
    v = np.asarray(vertices, dtype=np.float64)
    return np.einsum("jv,bvc->bjc", np.asarray(regressor, dtype=np.float64), v, optimize=True)


def protocol_joints(vertices: np.ndarray, regressor: np.ndarray, proto: Protocol) -> tuple[np.ndarray, np.ndarray]:
    """Vertices [B, V, 3] → (scored joints relative to the root [B, K, 3], root [B, 1, 3]) by ``proto``."""
    j = regress(vertices, regressor)
    r = j[:, list(proto.root)].mean(axis=1, keepdims=True)
    return j[:, list(proto.joints)] - r, r


def joints_from_mesh(vertices: np.ndarray, j_regressor: np.ndarray, pelvis: str = "h36m") -> np.ndarray:
    """Vertices [B, 6890, 3] → root-relative 14 LSP joints [B, 14, 3] (float64), the H36M regressor's way.

    ``j_regressor`` is the [17, 6890] H36M regressor; ``pelvis`` one of :data:`PELVIS_MODES`.
    """
    return protocol_joints(vertices, j_regressor, get_protocol("poco-3dpw", pelvis))[0]


def root(j17: np.ndarray, j14: np.ndarray, pelvis: str) -> np.ndarray:
    """The [B, 1, 3] root of the H36M regressor's 14 joints under ``pelvis`` (see :data:`PELVIS_MODES`)."""
    if pelvis == "h36m":
        return j17[:, [0]]
    if pelvis == "lsp-hips":
        return 0.5 * (j14[:, [2]] + j14[:, [3]])
    raise ValueError(f"pelvis must be one of {PELVIS_MODES}, not {pelvis!r}")


def rotmat_mse(pred_rotmat: np.ndarray, gt_rotmat: np.ndarray) -> np.ndarray:
    """Per-joint rotation-matrix MSE: mean over the 3×3 entries of (R_pred − R_gt)², [B, J, 3, 3] × 2 → [B, J].

    POCO's ``calculate_distance_pose`` (``MSELoss(reduction='none')`` then the mean over the last two axes), the
    error side of its logged per-joint uncertainty–error correlation.
    """
    d = np.asarray(pred_rotmat, dtype=np.float64) - np.asarray(gt_rotmat, dtype=np.float64)
    return (d * d).mean(axis=(-2, -1))


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
