"""POCO's per-joint uncertainty σ → scores and confidences, in numpy.

Input everywhere: ``sigma [K, 24]``, the network's ``var_pose`` (sigmoid outputs in (0, 1), one scale σ per
SMPL joint rotation, SMPL joint order 0 = pelvis/global orientation … 23 = right hand). ``K = 0`` is allowed.

The official demo (``saidwivedi/POCO: pocolib/utils/poco_utils.py``, ``pocolib/core/tester.py``) never turns σ
into a confidence; it reports an *uncertainty score* in [0, 0.99] (:func:`official_score`). This module
defines ``confidence = 1 − official score`` (:func:`confidence`) and a per-joint variant
(:func:`joint_confidence`).
"""

from __future__ import annotations

import numpy as np

from hpsedge.errors import InputError

__all__ = [
    "CLIFF_THRESHOLD",
    "PARE_THRESHOLD",
    "SCORE_MAX",
    "SIGMA_RULES",
    "SMPL_PARENTS",
    "accumulate_sigma",
    "confidence",
    "joint_confidence",
    "official_score",
    "sigma_rule",
    "token_confidence",
]

#: Parent of each SMPL joint (−1 for the root). Every parent index is smaller than its child's.
SMPL_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
)  # fmt: skip

#: ``get_global_uncert``'s ``sensitivity_threshold`` (PARE rule) and twice it (CLIFF rule).
PARE_THRESHOLD = 0.4
CLIFF_THRESHOLD = 0.8
#: The demo clips the score to [0, SCORE_MAX].
SCORE_MAX = 0.99

#: the σ score rules a manifest may declare (``postprocessing.sigma_score``), see :func:`official_score`
SIGMA_RULES = ("pelvis", "mean")
#: manifests of schema 1 and older callers name the POCO family instead of the rule
_RULE_ALIASES = {"cliff": "pelvis", "pare": "mean", "hmr": "mean"}


def _sigma(sigma: np.ndarray) -> np.ndarray:
    """Validated copy of ``sigma`` as a float array ``[K, 24]`` (float32 stays float32, like the demo)."""
    s = np.asarray(sigma)
    if s.dtype.kind not in "fiu":
        raise InputError(f"sigma must be numeric, got dtype {s.dtype}")
    s = np.array(s, dtype=s.dtype if s.dtype.kind == "f" else np.float64)
    if s.ndim != 2 or s.shape[1] != len(SMPL_PARENTS):
        raise InputError(f"sigma must be [K, 24] (one value per SMPL joint), got shape {tuple(s.shape)}")
    if not np.isfinite(s).all():
        raise InputError("sigma contains NaN or inf", "check the model output / inputs for NaN")
    return s


def accumulate_sigma(sigma: np.ndarray) -> np.ndarray:
    """Kinematic accumulation (``get_kinematic_uncert``): ``σ_j += σ_parent(j)`` for j = 1..23 in index order.

    Because parents precede children, each joint ends up with the sum of the raw σ along its root→joint
    chain (values can exceed 1). The root is unchanged. Returns a new ``[K, 24]`` array.
    """
    s = _sigma(sigma)
    for j in range(1, len(SMPL_PARENTS)):
        s[:, j] += s[:, SMPL_PARENTS[j]]
    return s


def sigma_rule(rule: str | None) -> str:
    """The σ score rule ``rule`` names (``"pelvis"`` | ``"mean"``; the POCO family names are accepted)."""
    r = str(rule).lower()
    r = _RULE_ALIASES.get(r, r)
    if r not in SIGMA_RULES:
        raise InputError(
            f"no σ score rule {rule!r}; the rules are {', '.join(SIGMA_RULES)} "
            f"(POCO-CLIFF: pelvis, POCO-PARE/HMR: mean)",
            "models without an uncertainty head (TokenHMR, HMR 2.0) have no σ score",
        )
    return r


def official_score(sigma: np.ndarray, rule: str, kinematic: bool = True) -> np.ndarray:
    """The demo's per-person uncertainty score ``[K]`` in ``[0, 0.99]`` (higher = less certain).

    1. σ is accumulated along the kinematic tree (:func:`accumulate_sigma`); on by default in the demo
       (``kinematic=False`` is ``--no_kinematic_uncert``).
    2. ``get_global_uncert`` with ``sensitivity_threshold = 0.4``, by the manifest's ``sigma_score`` rule
       (``rule``; the family names ``"cliff"``, ``"pare"``, ``"hmr"`` stand for their rules):

       * ``"pelvis"`` (CLIFF): score = σ₀ (pelvis / global orientation; accumulation leaves it unchanged), except that
         a row with σ₀ > 0.8 is set to 1.0 entirely, so the score becomes 1.0.
       * ``"mean"`` (PARE): score = mean of the 24 (accumulated) values, except that a row with σ₀ > 0.4 is set to
         1.0, so the score becomes 1.0.
       * HMR: the official code has no branch for it (``UnboundLocalError``); hpsedge declares the
         ``"mean"`` rule for it.
    3. The demo clips to ``[0, 0.99]``.

    The thresholds compare raw σ₀ with ``>`` (a value of exactly 0.8 / 0.4 keeps its own score).
    """
    pelvis_rule = sigma_rule(rule) == "pelvis"
    s = accumulate_sigma(sigma) if kinematic else _sigma(sigma)
    root = s[:, 0]
    if pelvis_rule:
        score = np.where(root > CLIFF_THRESHOLD, 1.0, root)
    else:
        score = np.where(root > PARE_THRESHOLD, 1.0, s.mean(axis=1))
    return np.clip(score, 0.0, SCORE_MAX).astype(s.dtype, copy=False)


def confidence(sigma: np.ndarray, rule: str, kinematic: bool = True) -> np.ndarray:
    """Per-person confidence ``[K]`` in ``[0.01, 1]``: exactly ``1 − official_score(sigma, rule, kinematic)``.

    So for CLIFF it is ``1 − σ₀`` when σ₀ ≤ 0.8 and 0.01 otherwise; for PARE/HMR it is ``1 − mean_j(σ̃_j)``
    (σ̃ = kinematically accumulated σ) clipped below at 0.01, and 0.01 when σ₀ > 0.4. Higher = more
    confident. This is hpsedge's definition; POCO itself reports only the score.
    """
    return 1.0 - official_score(sigma, rule, kinematic)


def joint_confidence(sigma: np.ndarray, kinematic: bool = True) -> np.ndarray:
    """Per-joint confidence ``[K, 24]`` in ``[0, 1]``: ``1 − clip(σ̃_j, 0, 1)``.

    ``σ̃`` is the kinematically accumulated σ (:func:`accumulate_sigma`; raw σ with ``kinematic=False``), so a
    joint is never more confident than its ancestors. No threshold rule is applied.
    """
    s = accumulate_sigma(sigma) if kinematic else _sigma(sigma)
    return 1.0 - np.clip(s, 0.0, 1.0)


def token_confidence(token_probs: np.ndarray) -> np.ndarray:
    """TokenHMR's per-person confidence ``[K]`` from its token probabilities ``[K, T, C]`` (numpy twin of the graph's).

    ``1 − mean_t H(p_t) / log C`` with ``H(p) = −Σ_c p_c log p_c`` (0·log 0 = 0), clipped to [0, 1]: 1 when every
    one of the T = 160 tokens puts all its mass on one of the C = 2048 codes, 0 when every token is uniform.
    The exported graph computes the same from the logits as its ``token_confidence`` output; this function
    serves graphs exported with ``token_probs``. It measures how decided the token classifier is;
    what a value means in pose error needs trained weights and a calibration set.
    """
    p = np.asarray(token_probs, dtype=np.float64)
    if p.ndim != 3 or p.shape[2] < 2:
        raise InputError(f"token_probs must be [K, T, C] with C >= 2, got shape {tuple(p.shape)}")
    if not np.isfinite(p).all():
        raise InputError("token_probs contains NaN or inf")
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    entropy = -plogp.sum(axis=2)
    return np.clip(1.0 - entropy.mean(axis=1) / np.log(p.shape[2]), 0.0, 1.0)
