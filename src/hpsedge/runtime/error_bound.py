"""Error bounds in millimetres from a model's uncertainty: apply a fitted split-conformal calibration.

A robot needs "every joint of this person's arms is within 48 mm of the truth with 90 % probability", not
a unitless σ. ``hpsedge calib error-bound`` (:mod:`hpsedge.eval.error_bound`) fits, from a ``hpsedge val``
run, one calibration per *joint group* and stores it in the build folder as ``error_bound.json`` (listed
with its sha256 in ``manifest.json``'s ``artifacts["error_bound"]``). This module reads that file (untrusted:
every field is checked) and turns each person's uncertainty into bounds. numpy only.

For group ``g`` with joints ``J_g`` the error is ``e_g = max_{j ∈ J_g} ‖p̂_j − p_j‖`` (mm; joints
root-relative with the val protocol's pelvis, so the global position/depth of the person is *not* covered).
The person's uncertainty for the group, ``u_g``, is one of (the artifact's ``uncertainty``):

* ``"sigma"``: mean of POCO's kinematically accumulated σ over the group's SMPL joints;
* ``"score"``: POCO's official per-person score (same for every group);
* ``"confidence"``: ``1 − confidence`` (TokenHMR's token confidence; same for every group).

The bound is ``B_g = q_g · f_g(u_g)`` with ``f_g(u) = max(a_g + b_g·u, floor_g)`` and ``q_g`` the split-conformal
quantile of ``e_g / f_g(u_g)`` on the calibration split, so ``P(e_g ≤ B_g) ≥ coverage`` for people drawn like
the calibration data (exchangeability; a marginal guarantee, not one per person). Models without an
uncertainty output (HMR 2.0) get no bound: :data:`NO_UNCERTAINTY` says why.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from hpsedge.errors import ManifestError

__all__ = [
    "ARTIFACT_KEY",
    "FILE_NAME",
    "GROUPS",
    "LSP14_TO_SMPL",
    "NOT_FITTED",
    "NO_UNCERTAINTY",
    "SCHEMA",
    "SMPL24_GROUPS",
    "UNCERTAINTIES",
    "ErrorBound",
    "GroupBound",
    "load_error_bound",
    "parse_error_bound",
]

SCHEMA = "hpsedge.error_bound"
SCHEMA_VERSION = 1
FILE_NAME = "error_bound.json"
ARTIFACT_KEY = "error_bound"
MAX_BYTES = 1 << 20
UNCERTAINTIES = ("sigma", "score", "confidence")
#: the SMPL joint (of 24) nearest to each of the 14 LSP joints of the val protocol (LSP order)
LSP14_TO_SMPL = (8, 5, 2, 1, 4, 7, 21, 19, 17, 16, 18, 20, 12, 15)
#: joint groups over the 14 LSP joints: "body" is the whole person (every joint within the bound)
GROUPS: dict[str, tuple[int, ...]] = {
    "body": tuple(range(14)),
    "torso": (2, 3, 8, 9, 12, 13),  # hips, shoulders, neck, head top
    "arms": (6, 7, 10, 11),  # elbows, wrists
    "legs": (0, 1, 4, 5),  # knees, ankles
}
#: the same groups over SMPL's 24 joints (TokenHMR's EMDB protocol scores all 24; σ is per SMPL joint)
SMPL24_GROUPS: dict[str, tuple[int, ...]] = {
    "body": tuple(range(24)),
    "torso": (0, 1, 2, 3, 6, 9, 12, 13, 14, 15, 16, 17),  # pelvis, hips, spine, neck, collars, head, shoulders
    "arms": (18, 19, 20, 21, 22, 23),  # elbows, wrists, hands
    "legs": (4, 5, 7, 8, 10, 11),  # knees, ankles, feet
}
NO_UNCERTAINTY = "the model has no uncertainty output (σ or token confidence), so no error bound can be fitted"
NOT_FITTED = "no error_bound.json in this build folder (fit one: hpsedge calib error-bound FOLDER --val-results VAL_OUT)"
_NAME = re.compile(r"[A-Za-z0-9_]{1,40}")  # also part of a serving tensor name


@dataclass(frozen=True)
class GroupBound:
    """One joint group's calibration: bound (mm) = ``quantile · max(a + b·u, floor)``."""

    name: str
    smpl_joints: tuple[int, ...]  #: SMPL joints whose accumulated σ make u (``"sigma"``)
    a: float
    b: float
    floor: float
    quantile: float

    def scale(self, u: np.ndarray) -> np.ndarray:
        return np.maximum(self.a + self.b * np.asarray(u, dtype=np.float64), self.floor)

    def bound(self, u: np.ndarray) -> np.ndarray:
        return self.quantile * self.scale(u)


@dataclass(frozen=True)
class ErrorBound:
    """A parsed, checked ``error_bound.json`` (see the module docstring); ``raw`` keeps every field."""

    model: str
    coverage: float
    uncertainty: str
    groups: tuple[GroupBound, ...]
    statement: str
    raw: dict[str, Any]

    def uncertainties(self, sigma_accumulated: np.ndarray | None, score: np.ndarray | None,
                      confidence: np.ndarray | None) -> np.ndarray | None:
        """Per-person, per-group uncertainty ``[K, G]``, or None when the needed output is missing."""
        if self.uncertainty == "sigma":
            if sigma_accumulated is None:
                return None
            s = np.asarray(sigma_accumulated, dtype=np.float64).reshape(-1, 24)
            return np.stack([s[:, list(g.smpl_joints)].mean(axis=1) for g in self.groups], axis=1)
        v = score if self.uncertainty == "score" else confidence
        if v is None:
            return None
        u = np.asarray(v, dtype=np.float64).reshape(-1)
        if self.uncertainty == "confidence":
            u = 1.0 - u
        return np.repeat(u[:, None], len(self.groups), axis=1)

    def bounds(self, sigma_accumulated: np.ndarray | None = None, score: np.ndarray | None = None,
               confidence: np.ndarray | None = None) -> np.ndarray | None:
        """Bounds ``[K, G]`` in mm (group order of :attr:`groups`), or None without the uncertainty."""
        u = self.uncertainties(sigma_accumulated, score, confidence)
        if u is None or not np.isfinite(u).all():
            return None
        return np.stack([g.bound(u[:, i]) for i, g in enumerate(self.groups)], axis=1)

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)


def _num(v: Any, where: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise ManifestError(f"{where} must be a finite number in [{lo}, {hi}], got {v!r}"[:300])
    return float(v)


def parse_error_bound(raw: Any, source: str = FILE_NAME) -> ErrorBound:
    """Check an ``error_bound.json`` document field by field (one-line :class:`ManifestError`)."""
    if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
        raise ManifestError(f"{source} is not an hpsedge error-bound file (schema {SCHEMA!r} expected)")
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(f"{source}: schema_version {raw.get('schema_version')!r} is not {SCHEMA_VERSION}"[:300],
                            hint="fit it again with this hpsedge")
    model = raw.get("model")
    if not isinstance(model, str) or not model or len(model) > 100:
        raise ManifestError(f"{source}: 'model' must be a model name")
    coverage = _num(raw.get("coverage"), f"{source}: 'coverage'", 0.0, 1.0)
    if not 0.0 < coverage < 1.0:
        raise ManifestError(f"{source}: 'coverage' must lie strictly between 0 and 1, got {coverage}")
    unc = raw.get("uncertainty")
    if unc not in UNCERTAINTIES:
        raise ManifestError(f"{source}: 'uncertainty' must be one of {', '.join(UNCERTAINTIES)}, got {unc!r}"[:300])
    groups_raw = raw.get("groups")
    if not isinstance(groups_raw, dict) or not 1 <= len(groups_raw) <= 64:
        raise ManifestError(f"{source}: 'groups' must map 1..64 group names to their calibration")
    groups = []
    for name, g in groups_raw.items():
        where = f"{source}: group {str(name)[:40]!r}"
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ManifestError(f"{where}: names are 1..40 letters, digits and '_'")
        if not isinstance(g, dict):
            raise ManifestError(f"{where} must be an object")
        joints = g.get("smpl_joints")
        if not (isinstance(joints, list) and joints and len(joints) <= 24
                and all(isinstance(j, int) and not isinstance(j, bool) and 0 <= j < 24 for j in joints)):
            raise ManifestError(f"{where}: 'smpl_joints' must list SMPL joint indices 0..23")
        scale = g.get("scale")
        if not isinstance(scale, dict):
            raise ManifestError(f"{where}: 'scale' must be an object with a, b, floor")
        floor = _num(scale.get("floor"), f"{where}: scale.floor", 0.0, 1e9)
        b = _num(scale.get("b"), f"{where}: scale.b", 0.0, 1e9)
        a = _num(scale.get("a"), f"{where}: scale.a", -1e9, 1e9)
        if floor <= 0:
            raise ManifestError(f"{where}: scale.floor must be positive")
        q = _num(g.get("quantile"), f"{where}: 'quantile'", 0.0, 1e9)
        groups.append(GroupBound(name, tuple(joints), a, b, floor, q))
    statement = raw.get("statement")
    if not isinstance(statement, str) or len(statement) > 1000:
        raise ManifestError(f"{source}: 'statement' must be a string (what the bound means)")
    return ErrorBound(model, coverage, str(unc), tuple(groups), statement, raw)


def load_error_bound(manifest: Any) -> ErrorBound | None:
    """The folder's verified error bound (``artifacts["error_bound"]``), or None when it has none.

    The file is checked against the manifest's size and sha256 before it is read (a changed or swapped file
    is refused), must belong to the manifest's model, and must be well formed.
    """
    if ARTIFACT_KEY not in manifest.artifacts:
        return None
    path = manifest.verified_artifact(ARTIFACT_KEY)
    if path.stat().st_size > MAX_BYTES:
        raise ManifestError(f"{path.name} is larger than {MAX_BYTES} bytes; refusing it")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ManifestError(f"{path.name} is not valid JSON ({exc.__class__.__name__})") from None
    eb = parse_error_bound(raw, path.name)
    if eb.model != manifest.model_name:
        raise ManifestError(
            f"{path.name} was fitted for {eb.model}, but this folder holds {manifest.model_name}; refusing it",
            hint="fit the error bound again from a val run of this folder",
        )
    if eb.uncertainty == "sigma" and not manifest.has_sigma:
        raise ManifestError(f"{path.name} needs σ, which {manifest.model_name} does not output")
    if eb.uncertainty == "score" and manifest.sigma_score is None:
        raise ManifestError(f"{path.name} needs a σ score, which {manifest.model_name} does not have")
    if eb.uncertainty == "confidence" and manifest.confidence_rule is None:
        raise ManifestError(f"{path.name} needs a confidence, which {manifest.model_name} does not output")
    return eb


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
