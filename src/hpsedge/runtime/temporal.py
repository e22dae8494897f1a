"""Per-track temporal processing of runtime results: uncertainty-gated inpainting and SO(3) smoothing.

A *track* is one person's results over the frames of a video (:class:`Track`): local joint rotations
``rotmat [T,24,3,3]``, ``betas [T,10]``, full-image translation ``transl [T,3]`` and the uncertainty the
model gives: POCO's per-joint ``sigma [T,24]`` (raw, as the network outputs it) and/or a per-frame
``confidence [T]`` in [0, 1] (TokenHMR's token confidence works as one). Two steps run on it, in order:

**1. Inpainting** (:func:`inpaint`). Every sample of the track belongs to one *frame stream* (betas,
translation and all rotations) and to 24 *joint streams* (one local rotation each).

* A sample is *uncertain for the frame stream* when its frame uncertainty exceeds ``frame_threshold``.
  Frame uncertainty is the raw pelvis σ₀ when σ is given (the official pseudo-GT rule: POCO keeps training
  frames with σ₀ < 0.3, ``get_confident_frames``) and ``1 − confidence`` otherwise.
* It is *uncertain for joint stream j* when it is uncertain for the frame stream, or when its raw σ_j
  exceeds ``joint_threshold[j]`` (per-joint gating; needs σ and a joint threshold).
* Each run of consecutive uncertain samples of a stream is replaced from the nearest confident samples of
  that stream before and after it: rotations by SLERP (shortest arc of unit quaternions, so the
  ``q``/``−q`` sign ambiguity is harmless), betas and translation linearly, with the weight taken from the
  frame indices (``w = (t − t₀)/(t₁ − t₀)``, so tracks that skip frames interpolate in time). A run at
  either end of the track holds the nearest confident value.
* A run longer than ``max_gap`` samples, or a stream with no confident sample at all, is left alone and
  *flagged* (the arrays ``flagged_frames``/``flagged_joints``). Run lengths count samples of the track,
  not video frames: frames where the track is absent are not samples.

**2. Smoothing** (:class:`OneEuroSO3`, :class:`OneEuroVector`). A One-Euro filter (Casiez et al. 2012)
whose state for each joint is a unit quaternion. Each step takes the innovation in the tangent space at
the previous filtered rotation, ``e = log(q̂ₖ₋₁⁻¹ ⊗ qₖ)`` (a rotation vector, radians), estimates the
angular speed from it, sets the cut-off ``fc = min_cutoff + beta·‖ω̂‖`` (Hz) and moves the estimate by
``q̂ₖ = q̂ₖ₋₁ ⊗ exp(α·e)``, ``α = r/(r + 1)``, ``r = 2π·fc·Δt``. The result is renormalised, so every output
is an exact rotation (the official ``smooth_pose.py`` filters the nine matrix entries independently and
never re-orthonormalises). Translation and betas use the same filter on vectors. With
``sigma_weighted=True`` the innovation of an uncertain sample is scaled by
``g = clip((threshold / u)², min_gain, 1)`` (``u`` its σ_j or frame uncertainty, the threshold the one
that gates it), an inverse-variance style weight: uncertain samples are pulled further towards the
filter's prediction ("uncertain frames move more"). Inpainted samples count as confident (g = 1).

**Batch and streaming.** :func:`process` runs both steps on a whole :class:`Track`;
:class:`TemporalFilter` does the same one frame at a time (``push`` → finished frames, ``flush`` at the
end). Both give the same result at the end of a sequence (a test checks it). Lag of the streaming API:
the One-Euro filter is causal and adds no sample delay (its output for frame k is returned by the push
of frame k; like any low-pass filter it trails fast motion, see ``benchmarks/temporal.py``); inpainting
must wait for the next confident sample, so with inpainting on a frame is returned at most
``max_gap`` pushes after its own push (:attr:`TemporalFilter.max_lag`), or by ``flush``.

**Thresholds from the manifest.** :meth:`TemporalConfig.from_manifest` reads calibration statistics
written into the build folder's ``manifest.json`` under ``"calibration"``::

    "calibration": {
      "sigma_percentiles": {          # raw σ (network output, not accumulated), SMPL joint order
        "50": [24 floats], "90": [24 floats], "95": [24 floats], "99": [24 floats]
      },
      "confidence_percentiles": {     # optional: per-person confidence (1 − official score)
        "1": float, "5": float, "10": float, "50": float
      }
    }

Keys are percentiles as strings (``"95"``, ``"95.0"`` and ``"p95"`` are all accepted). With
``percentile=95`` the frame threshold is the 95th percentile of pelvis σ₀ (``sigma_percentiles["95"][0]``)
and the joint thresholds are the 95th percentiles of each σ_j: on data like the calibration set about
5 % of samples are inpainted. A model without σ uses ``1 − confidence_percentiles["5"]``. Without these
statistics the frame threshold is 0.3 (the official rule) and joint gating is off.

Everything here is numpy (runtime code). The quaternion maths (``quat_*``, ``slerp``, ``project_to_so3``) lives in
:mod:`hpsedge.runtime.rotations` and is re-exported from here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from hpsedge.errors import InputError
from hpsedge.runtime.rotations import (  # the quaternion maths lives there; re-exported here as before
    project_to_so3,
    quat_conj,
    quat_continuity,
    quat_exp,
    quat_log,
    quat_mul,
    quat_normalize,
    quat_to_rotmat,
    rotmat_to_axis_angle,
    rotmat_to_quat,
    slerp,
    slerp_rotmat,
)

__all__ = [
    "DEFAULT_FRAME_THRESHOLD",
    "FrameOutput",
    "OneEuroParams",
    "OneEuroSO3",
    "OneEuroVector",
    "TemporalConfig",
    "TemporalFilter",
    "TemporalResult",
    "Track",
    "inpaint",
    "process",
    "project_to_so3",
    "quat_continuity",
    "quat_exp",
    "quat_log",
    "quat_mul",
    "slerp",
    "slerp_rotmat",
    "smooth",
    "thresholds_from_manifest",
]

NUM_JOINTS = 24
#: Official pseudo-GT rule: a frame is confident when its pelvis σ₀ < 0.3 (``DATASET.UNCERT_THRESHOLD``).
DEFAULT_FRAME_THRESHOLD = 0.3


# ============================================================================================ config
@dataclass(frozen=True)
class OneEuroParams:
    """One-Euro filter parameters. ``min_cutoff`` and ``d_cutoff`` in Hz; ``beta`` in Hz per unit/s
    (per rad/s for rotations, per m/s for translation)."""

    min_cutoff: float
    beta: float
    d_cutoff: float = 1.0


@dataclass(frozen=True)
class TemporalConfig:
    """Options of :func:`process` / :class:`TemporalFilter` (see the module docstring for the method).

    Attributes:
        inpaint: replace uncertain samples (step 1).
        smooth: run the One-Euro filter (step 2).
        frame_threshold: frame uncertainty (raw pelvis σ₀, or 1 − confidence) above which a whole sample is
            inpainted; None turns frame gating off.
        joint_threshold: raw σ_j above which joint j's rotation alone is inpainted: a float (all joints) or 24
            floats; None turns joint gating off.
        max_gap: longest run of uncertain samples (per stream) that is filled; longer runs are flagged.
        fps: frames per second of the video (frame index / fps = time for the filter).
        rotation, translation, betas: One-Euro parameters of each stream.
        sigma_weighted: scale the innovation of uncertain samples by ``clip((threshold/u)², min_gain, 1)``.
        min_gain: floor of that weight.
        threshold_source: where the thresholds came from (recorded in outputs).
    """

    inpaint: bool = True
    smooth: bool = True
    frame_threshold: float | None = DEFAULT_FRAME_THRESHOLD
    joint_threshold: float | tuple[float, ...] | None = None
    max_gap: int = 15
    fps: float = 30.0
    rotation: OneEuroParams = OneEuroParams(min_cutoff=1.0, beta=5.0)
    translation: OneEuroParams = OneEuroParams(min_cutoff=1.0, beta=5.0)
    betas: OneEuroParams = OneEuroParams(min_cutoff=0.3, beta=0.0)
    sigma_weighted: bool = True
    min_gain: float = 0.1
    threshold_source: str = "default"

    def __post_init__(self) -> None:
        if self.max_gap < 0:
            raise InputError(f"max_gap must be >= 0, got {self.max_gap}")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise InputError(f"fps must be a positive number, got {self.fps}")
        if not 0.0 < self.min_gain <= 1.0:
            raise InputError(f"min_gain must be in (0, 1], got {self.min_gain}")
        for name in ("rotation", "translation", "betas"):
            p = getattr(self, name)
            if p.min_cutoff <= 0 or p.beta < 0 or p.d_cutoff <= 0:
                raise InputError(f"{name} filter: min_cutoff and d_cutoff must be > 0 and beta >= 0, got {p}")
        if self.joint_threshold is not None and not isinstance(self.joint_threshold, (int, float)):
            jt = tuple(float(v) for v in self.joint_threshold)
            if len(jt) != NUM_JOINTS:
                raise InputError(f"joint_threshold must be one float or {NUM_JOINTS}, got {len(jt)} values")
            object.__setattr__(self, "joint_threshold", jt)

    def joint_thresholds(self) -> np.ndarray | None:
        """``[24]`` joint thresholds, or None when joint gating is off."""
        if self.joint_threshold is None:
            return None
        return np.broadcast_to(np.asarray(self.joint_threshold, dtype=np.float64), (NUM_JOINTS,)).copy()

    @classmethod
    def from_manifest(cls, manifest: Any, percentile: float = 95.0, **overrides: Any) -> TemporalConfig:
        """Thresholds from ``manifest["calibration"]`` (see the module docstring) when it has them, else
        the defaults; ``overrides`` (any field) win over both. ``manifest``: a
        :class:`~hpsedge.runtime.manifest.Manifest`, its raw dict, or None."""
        found = thresholds_from_manifest(manifest, percentile)
        values: dict[str, Any] = {}
        if found is not None:
            values.update(found)
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            v = getattr(self, name)
            out[name] = v.__dict__.copy() if isinstance(v, OneEuroParams) else (list(v) if isinstance(v, tuple) else v)
        return out


def _percentile_entry(table: Mapping[str, Any], percentile: float) -> Any:
    for key, value in table.items():
        k = str(key).lower().lstrip("p")
        try:
            if abs(float(k) - percentile) < 1e-9:
                return value
        except ValueError:
            continue
    return None


def thresholds_from_manifest(manifest: Any, percentile: float = 95.0) -> dict[str, Any] | None:
    """``{"frame_threshold", "joint_threshold", "threshold_source"}`` from the manifest's calibration
    statistics at ``percentile``, or None when the manifest has none (see the module docstring)."""
    if manifest is None:
        return None
    raw = manifest.raw if hasattr(manifest, "raw") else manifest
    calib = raw.get("calibration") if isinstance(raw, Mapping) else None
    if not isinstance(calib, Mapping):
        return None
    sig = calib.get("sigma_percentiles")
    if isinstance(sig, Mapping):
        entry = _percentile_entry(sig, percentile)
        if entry is not None:
            arr = np.asarray(entry, dtype=np.float64).reshape(-1)
            if arr.shape != (NUM_JOINTS,) or not np.isfinite(arr).all():
                raise InputError(
                    f"manifest calibration.sigma_percentiles[{percentile:g}] must hold {NUM_JOINTS} numbers, "
                    f"got shape {arr.shape}"
                )
            return {
                "frame_threshold": float(arr[0]),
                "joint_threshold": tuple(float(v) for v in arr),
                "threshold_source": f"manifest calibration: sigma p{percentile:g}",
            }
    conf = calib.get("confidence_percentiles")
    if isinstance(conf, Mapping):
        entry = _percentile_entry(conf, 100.0 - percentile)
        if entry is not None:
            return {
                "frame_threshold": 1.0 - float(entry),
                "joint_threshold": None,
                "threshold_source": f"manifest calibration: confidence p{100.0 - percentile:g}",
            }
    return None


# ============================================================================================= input
@dataclass
class Track:
    """One person's results over time. ``frames`` strictly increasing (video frame indices)."""

    frames: np.ndarray  #: [T] int
    rotmat: np.ndarray  #: [T, 24, 3, 3] local joint rotations (global orientation first)
    betas: np.ndarray  #: [T, B]
    transl: np.ndarray  #: [T, 3]
    sigma: np.ndarray | None = None  #: [T, 24] raw per-joint σ (POCO)
    confidence: np.ndarray | None = None  #: [T] per-frame confidence in [0, 1]

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames).astype(np.int64).reshape(-1)
        t = len(self.frames)
        self.rotmat = _check(self.rotmat, (t, NUM_JOINTS, 3, 3), "rotmat")
        self.betas = np.asarray(self.betas, dtype=np.float64)
        if self.betas.ndim != 2 or self.betas.shape[0] != t:
            raise InputError(f"betas must be [T={t}, B], got shape {self.betas.shape}")
        _finite(self.betas, "betas")
        self.transl = _check(self.transl, (t, 3), "transl")
        if self.sigma is not None:
            self.sigma = _check(self.sigma, (t, NUM_JOINTS), "sigma")
        if self.confidence is not None:
            self.confidence = _check(self.confidence, (t,), "confidence")
        if t > 1 and not (np.diff(self.frames) > 0).all():
            raise InputError("track frames must be strictly increasing (one result per frame)")

    def __len__(self) -> int:
        return len(self.frames)

    @classmethod
    def from_results(cls, frames: Sequence[int], results: Sequence[Any]) -> Track:
        """From runtime :class:`~hpsedge.runtime.predictor.PersonResult` objects (one per frame)."""
        if len(frames) != len(results):
            raise InputError(f"{len(frames)} frame indices for {len(results)} results")
        if not results:
            return cls(np.zeros(0, np.int64), np.zeros((0, NUM_JOINTS, 3, 3)), np.zeros((0, 10)), np.zeros((0, 3)))
        has_sigma = all(r.sigma is not None for r in results)
        has_conf = all(r.confidence is not None for r in results)
        return cls(
            frames=np.asarray(frames),
            rotmat=np.stack([r.pose_rotmat for r in results]),
            betas=np.stack([r.betas for r in results]),
            transl=np.stack([r.transl for r in results]),
            sigma=np.stack([r.sigma for r in results]) if has_sigma else None,
            confidence=np.array([r.confidence for r in results], dtype=np.float64) if has_conf else None,
        )

    def frame_uncertainty(self) -> np.ndarray | None:
        """``[T]``: raw pelvis σ₀ when σ is known, else ``1 − confidence``, else None."""
        if self.sigma is not None:
            return self.sigma[:, 0].copy()
        if self.confidence is not None:
            return 1.0 - self.confidence
        return None


def _finite(a: np.ndarray, what: str) -> None:
    if not np.isfinite(a).all():
        raise InputError(f"{what} holds NaN or inf values")


def _check(a: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.shape != shape:
        raise InputError(f"{what} must have shape {list(shape)}, got {list(arr.shape)}")
    _finite(arr, what)
    return arr


def _masks(cfg: TemporalConfig, u_frame: np.ndarray | None, sigma: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(frame-stream bad [T], joint-stream bad [T, 24]) from the uncertainties and thresholds."""
    n = len(u_frame) if u_frame is not None else (len(sigma) if sigma is not None else 0)
    bad_f = np.zeros(n, dtype=bool)
    if cfg.inpaint and cfg.frame_threshold is not None and u_frame is not None:
        bad_f = u_frame > cfg.frame_threshold
    bad_j = np.repeat(bad_f[..., None], NUM_JOINTS, axis=-1)
    jt = cfg.joint_thresholds()
    if cfg.inpaint and jt is not None and sigma is not None:
        bad_j |= sigma > jt
    return bad_f, bad_j


def _gains(cfg: TemporalConfig, u_frame: np.ndarray | None, sigma: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """σ-weights (frame [...], joints [..., 24]) in [min_gain, 1]; ones when weighting is off/impossible."""
    shape = u_frame.shape if u_frame is not None else (sigma.shape[:-1] if sigma is not None else ())
    g_f = np.ones(shape)
    if cfg.sigma_weighted and cfg.frame_threshold is not None and u_frame is not None:
        g_f = _gain(u_frame, cfg.frame_threshold, cfg.min_gain)
    jt = cfg.joint_thresholds()
    if cfg.sigma_weighted and jt is not None and sigma is not None:
        g_j = _gain(sigma, jt, cfg.min_gain)
    else:
        g_j = np.repeat(np.asarray(g_f)[..., None], NUM_JOINTS, axis=-1)
    return g_f, g_j


def _gain(u: np.ndarray, thr: np.ndarray | float, floor: float) -> np.ndarray:
    u = np.asarray(u, dtype=np.float64)
    thr = np.asarray(thr, dtype=np.float64)
    with np.errstate(divide="ignore"):
        g = np.where(u > thr, (thr / np.maximum(u, 1e-12)) ** 2, 1.0)
    return np.clip(g, floor, 1.0)


# ========================================================================================== inpainting
@dataclass
class TemporalResult:
    """Result of :func:`process`/:func:`inpaint`, or of a :class:`TemporalFilter` run (stacked)."""

    frames: np.ndarray  #: [T]
    rotmat: np.ndarray  #: [T, 24, 3, 3] processed rotations (exact rotations, float64)
    betas: np.ndarray  #: [T, B]
    transl: np.ndarray  #: [T, 3]
    inpainted_frames: np.ndarray  #: [T] bool: the whole sample (all rotations, betas, transl) was replaced
    inpainted_joints: np.ndarray  #: [T, 24] bool: this joint's rotation was replaced
    flagged_frames: np.ndarray  #: [T] bool: uncertain, but left alone (run > max_gap or nothing to fill from)
    flagged_joints: np.ndarray  #: [T, 24] bool
    frame_uncertainty: np.ndarray | None = None  #: [T] the gated quantity (σ₀ or 1 − confidence)
    config: TemporalConfig = field(default_factory=TemporalConfig)
    quat: np.ndarray | None = field(default=None, repr=False)  #: [T, 24, 4] unit quaternions of ``rotmat``

    @property
    def pose_axis_angle(self) -> np.ndarray:
        """[T, 24, 3] axis-angle of :attr:`rotmat`."""
        return rotmat_to_axis_angle(self.rotmat)

    def summary(self) -> dict[str, Any]:
        return {
            "samples": len(self.frames),
            "inpainted_frames": int(self.inpainted_frames.sum()),
            "inpainted_joints": int(self.inpainted_joints.sum()),
            "frames_with_inpainted_joints": int(self.inpainted_joints.any(axis=1).sum()),
            "flagged_frames": int(self.flagged_frames.sum()),
            "flagged_joints": int(self.flagged_joints.sum()),
        }

    @classmethod
    def from_outputs(cls, outputs: Sequence[FrameOutput], config: TemporalConfig) -> TemporalResult:
        """Stack streaming outputs (:meth:`TemporalFilter.push`/``flush``) into one result."""
        if not outputs:
            z = np.zeros(0, dtype=bool)
            return cls(np.zeros(0, np.int64), np.zeros((0, NUM_JOINTS, 3, 3)), np.zeros((0, 10)), np.zeros((0, 3)),
                       z, np.zeros((0, NUM_JOINTS), bool), z.copy(), np.zeros((0, NUM_JOINTS), bool), None, config)
        u = [o.frame_uncertainty for o in outputs]
        return cls(
            frames=np.array([o.frame for o in outputs], dtype=np.int64),
            rotmat=np.stack([o.rotmat for o in outputs]),
            betas=np.stack([o.betas for o in outputs]),
            transl=np.stack([o.transl for o in outputs]),
            inpainted_frames=np.array([o.inpainted_frame for o in outputs]),
            inpainted_joints=np.stack([o.inpainted_joints for o in outputs]),
            flagged_frames=np.array([o.flagged_frame for o in outputs]),
            flagged_joints=np.stack([o.flagged_joints for o in outputs]),
            frame_uncertainty=None if any(v is None for v in u) else np.array(u, dtype=np.float64),
            config=config,
        )


def _plan(bad: np.ndarray, times: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fill plan for bad masks ``[T, ...]`` (every trailing column is an independent stream).

    Returns ``(filled, flagged, lo, hi, w)``, each ``[T, ...]``: a filled sample becomes
    ``interp(x[lo], x[hi], w)``; lo = hi (w = 0) holds a value at a sequence end.
    """
    n = bad.shape[0]
    idx = np.arange(n).reshape((n,) + (1,) * (bad.ndim - 1))
    idx = np.broadcast_to(idx, bad.shape)
    prev_good = np.maximum.accumulate(np.where(bad, -1, idx), axis=0) if n else idx.copy()
    next_good = np.flip(np.minimum.accumulate(np.flip(np.where(bad, n, idx), 0), axis=0), 0) if n else idx.copy()
    run = next_good - prev_good - 1  # length of the run of bad samples holding each bad sample
    fillable = (prev_good >= 0) | (next_good < n)
    filled = bad & fillable & (run <= max_gap)
    flagged = bad & ~filled
    lo = np.where(prev_good >= 0, prev_good, next_good)
    hi = np.where(next_good < n, next_good, prev_good)
    lo = np.where(filled, lo, idx)
    hi = np.where(filled, hi, idx)
    tl = np.take(times, lo)
    th = np.take(times, hi)
    span = th - tl
    w = np.where(filled & (span > 0), (np.take(times, idx) - tl) / np.where(span > 0, span, 1.0), 0.0)
    return filled, flagged, lo, hi, w


def _lerp(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    return a + (b - a) * w


def inpaint(track: Track, config: TemporalConfig | None = None) -> TemporalResult:
    """Step 1 only (no smoothing): uncertain samples replaced from their confident neighbours."""
    cfg = config or TemporalConfig()
    return _inpaint(track, replace(cfg, smooth=False))


def _inpaint(track: Track, cfg: TemporalConfig) -> TemporalResult:
    n = len(track)
    u_frame = track.frame_uncertainty()
    if u_frame is None:  # nothing to gate on
        bad_f, bad_j = np.zeros(n, dtype=bool), np.zeros((n, NUM_JOINTS), dtype=bool)
    else:
        bad_f, bad_j = _masks(cfg, u_frame, track.sigma)
    times = track.frames.astype(np.float64)
    quat = rotmat_to_quat(track.rotmat)  # [T, 24, 4]
    betas = track.betas.copy()
    transl = track.transl.copy()
    filled_f, flagged_f, lo, hi, w = _plan(bad_f, times, cfg.max_gap)
    if filled_f.any():
        i = np.nonzero(filled_f)[0]
        betas[i] = _lerp(track.betas[lo[i]], track.betas[hi[i]], w[i, None])
        transl[i] = _lerp(track.transl[lo[i]], track.transl[hi[i]], w[i, None])
    filled_j, flagged_j, lo_j, hi_j, w_j = _plan(bad_j, times, cfg.max_gap)
    rot = track.rotmat.copy()
    qout = quat.copy()
    if filled_j.any():
        ti, ji = np.nonzero(filled_j)
        q = slerp(quat[lo_j[ti, ji], ji], quat[hi_j[ti, ji], ji], w_j[ti, ji])
        qout[ti, ji] = q
        rot[ti, ji] = quat_to_rotmat(q)
    return TemporalResult(
        frames=track.frames.copy(),
        rotmat=rot,
        betas=betas,
        transl=transl,
        inpainted_frames=filled_f,
        inpainted_joints=filled_j,
        flagged_frames=flagged_f,
        flagged_joints=flagged_j,
        frame_uncertainty=u_frame,
        config=cfg,
        quat=qout,
    )


# ============================================================================================ smoothing
def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray:
    r = 2.0 * np.pi * np.asarray(cutoff, dtype=np.float64) * dt
    return r / (r + 1.0)


class OneEuroVector:
    """One-Euro filter on vectors ``[..., D]`` (one cut-off per vector, from the norm of its speed)."""

    def __init__(self, params: OneEuroParams) -> None:
        self.p = params
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None

    def reset(self) -> None:
        self.x = self.dx = None

    def step(self, x: np.ndarray, dt: float, gain: np.ndarray | float = 1.0) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.x is None or self.dx is None:
            self.x, self.dx = x.copy(), np.zeros_like(x)
            return self.x.copy()
        e = (x - self.x) * np.asarray(gain, dtype=np.float64)[..., None]
        self.dx = self.dx + _alpha(self.p.d_cutoff, dt) * (e / dt - self.dx)
        fc = self.p.min_cutoff + self.p.beta * np.linalg.norm(self.dx, axis=-1)
        self.x = self.x + _alpha(fc, dt)[..., None] * e
        return self.x.copy()


class OneEuroSO3:
    """One-Euro filter on rotations ``[..., 4]`` unit quaternions, in the tangent space at the estimate.

    ``e = log(q̂⁻¹ ⊗ q)``; ``ω̂ ← ω̂ + α_d·(g·e/Δt − ω̂)``; ``fc = min_cutoff + beta·‖ω̂‖``;
    ``q̂ ← normalize(q̂ ⊗ exp(α(fc)·g·e))``. Outputs are unit quaternions (exact rotations).
    """

    def __init__(self, params: OneEuroParams) -> None:
        self.p = params
        self.q: np.ndarray | None = None
        self.w: np.ndarray | None = None

    def reset(self) -> None:
        self.q = self.w = None

    def step(self, q: np.ndarray, dt: float, gain: np.ndarray | float = 1.0) -> np.ndarray:
        q = np.asarray(q, dtype=np.float64)
        if self.q is None or self.w is None:
            self.q = np.where(q[..., :1] < 0, -q, q)
            self.w = np.zeros((*q.shape[:-1], 3))
            return self.q.copy()
        e = quat_log(quat_mul(quat_conj(self.q), q)) * np.asarray(gain, dtype=np.float64)[..., None]
        self.w = self.w + _alpha(self.p.d_cutoff, dt) * (e / dt - self.w)
        fc = self.p.min_cutoff + self.p.beta * np.linalg.norm(self.w, axis=-1)
        self.q = quat_normalize(quat_mul(self.q, quat_exp(_alpha(fc, dt)[..., None] * e)))
        return self.q.copy()


class _Smoother:
    """The three filters of one track, stepped sample by sample (shared by batch and streaming)."""

    def __init__(self, cfg: TemporalConfig) -> None:
        self.cfg = cfg
        self.rot = OneEuroSO3(cfg.rotation)
        self.tr = OneEuroVector(cfg.translation)
        self.be = OneEuroVector(cfg.betas)
        self.t_prev: float | None = None

    def step(self, t: float, quat: np.ndarray, betas: np.ndarray, transl: np.ndarray,
             g_frame: float, g_joint: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dt = 1.0 / self.cfg.fps if self.t_prev is None else (t - self.t_prev) / self.cfg.fps
        self.t_prev = t
        q = self.rot.step(quat, dt, g_joint)
        b = self.be.step(betas[None], dt, np.array([g_frame]))[0]
        x = self.tr.step(transl[None], dt, np.array([g_frame]))[0]
        return q, b, x


def smooth(result: TemporalResult, sigma: np.ndarray | None = None) -> TemporalResult:
    """Step 2 on an inpainted (or raw) result; ``sigma [T, 24]`` enables σ-weighting of uncertain samples."""
    cfg = result.config
    n = len(result.frames)
    if n == 0:
        return result
    g_f, g_j = _gains(cfg, result.frame_uncertainty, sigma)
    g_f = np.broadcast_to(g_f, (n,)).copy()
    g_j = np.broadcast_to(g_j, (n, NUM_JOINTS)).copy()
    g_f[result.inpainted_frames] = 1.0
    g_j[result.inpainted_joints] = 1.0
    sm = _Smoother(cfg)
    quat = result.quat if result.quat is not None else rotmat_to_quat(result.rotmat)
    qs = np.empty_like(quat)
    betas = np.empty_like(result.betas)
    transl = np.empty_like(result.transl)
    for k in range(n):
        qs[k], betas[k], transl[k] = sm.step(float(result.frames[k]), quat[k], result.betas[k], result.transl[k],
                                             float(g_f[k]), g_j[k])
    return replace(result, rotmat=quat_to_rotmat(qs), betas=betas, transl=transl, quat=qs)


def process(track: Track, config: TemporalConfig | None = None) -> TemporalResult:
    """Batch API: inpainting (if ``config.inpaint``) then smoothing (if ``config.smooth``) of a whole track."""
    cfg = config or TemporalConfig()
    res = _inpaint(track, cfg)
    if cfg.smooth:
        res = smooth(res, track.sigma)
    return res


# ============================================================================================ streaming
@dataclass
class FrameOutput:
    """One finished frame of a :class:`TemporalFilter`."""

    frame: int
    rotmat: np.ndarray  #: [24, 3, 3] processed
    betas: np.ndarray
    transl: np.ndarray
    inpainted_frame: bool
    inpainted_joints: np.ndarray  #: [24] bool
    flagged_frame: bool
    flagged_joints: np.ndarray  #: [24] bool
    frame_uncertainty: float | None
    raw_rotmat: np.ndarray  #: [24, 3, 3] as pushed
    raw_betas: np.ndarray
    raw_transl: np.ndarray
    pushed_at: int = 0  #: index of the push that finished this frame (lag = pushed_at − own push index)


@dataclass
class _Rec:
    index: int
    t: float
    rot: np.ndarray  # [24, 3, 3] raw
    quat: np.ndarray  # [24, 4] raw
    betas: np.ndarray
    transl: np.ndarray
    u: float | None
    sigma: np.ndarray | None
    bad_f: bool
    bad_j: np.ndarray
    out_quat: np.ndarray
    out_betas: np.ndarray
    out_transl: np.ndarray
    done_f: bool = False
    done_j: np.ndarray = field(default_factory=lambda: np.zeros(NUM_JOINTS, dtype=bool))
    filled_f: bool = False
    filled_j: np.ndarray = field(default_factory=lambda: np.zeros(NUM_JOINTS, dtype=bool))
    flagged_f: bool = False
    flagged_j: np.ndarray = field(default_factory=lambda: np.zeros(NUM_JOINTS, dtype=bool))


class TemporalFilter:
    """Streaming API: ``push`` one frame's result, get back the frames that are finished.

        filt = TemporalFilter(TemporalConfig(fps=30))
        for k, person in enumerate(stream):
            for out in filt.push_result(k, person):
                robot.send(out.frame, out.rotmat, out.transl)
        for out in filt.flush():       # end of the sequence
            ...

    Frames come out in order. Without inpainting every push returns its own frame. With inpainting a
    confident frame that follows uncertain ones returns them (filled) and itself; an uncertain frame waits
    for the next confident one, at most :attr:`max_lag` pushes. ``flush`` finishes the rest (sequence end:
    hold the last confident value). Concatenating everything equals :func:`process` on the whole track.
    """

    def __init__(self, config: TemporalConfig | None = None) -> None:
        self.cfg = config or TemporalConfig()
        self._reset()

    def _reset(self) -> None:
        self._smoother = _Smoother(self.cfg)
        self._buf: list[_Rec] = []
        self._count = 0
        self._t_last: float | None = None
        self._nbetas: int | None = None
        # frame stream (betas, transl)
        self._anchor_f: _Rec | None = None
        self._pend_f = 0
        self._long_f = False
        # joint streams
        self._anchor_j: list[_Rec | None] = [None] * NUM_JOINTS
        self._pend_j = np.zeros(NUM_JOINTS, dtype=np.int64)
        self._long_j = np.zeros(NUM_JOINTS, dtype=bool)
        self._gating: bool | None = None

    @property
    def max_lag(self) -> int:
        """Most pushes a frame can wait before it is returned (``max_gap`` with inpainting, else 0)."""
        return self.cfg.max_gap if self.cfg.inpaint else 0

    def push_result(self, frame: int, result: Any) -> list[FrameOutput]:
        """Push a :class:`~hpsedge.runtime.predictor.PersonResult`."""
        return self.push(frame, result.pose_rotmat, result.betas, result.transl, sigma=result.sigma,
                         confidence=result.confidence)

    def push(self, frame: int, rotmat: np.ndarray, betas: np.ndarray, transl: np.ndarray,
             sigma: np.ndarray | None = None, confidence: float | None = None) -> list[FrameOutput]:
        """Push one frame (``rotmat [24,3,3]``, ``betas [B]``, ``transl [3]``, ``sigma [24]`` and/or
        ``confidence``); returns the frames finished by this push, in order."""
        rot = _check(rotmat, (NUM_JOINTS, 3, 3), "rotmat")
        b = np.asarray(betas, dtype=np.float64).reshape(-1)
        _finite(b, "betas")
        if self._nbetas is None:
            self._nbetas = len(b)
        elif len(b) != self._nbetas:
            raise InputError(f"betas changed length from {self._nbetas} to {len(b)} within a track")
        x = _check(transl, (3,), "transl")
        s = None if sigma is None else _check(sigma, (NUM_JOINTS,), "sigma")
        t = float(frame)
        if self._t_last is not None and t <= self._t_last:
            raise InputError(f"frame {frame} pushed after frame {int(self._t_last)}; frames must increase")
        gating = s is not None or confidence is not None
        if self._gating is None:
            self._gating = gating
        elif gating != self._gating:
            raise InputError("every frame of a track must carry the same uncertainty (σ and/or confidence)")
        self._t_last = t
        u = float(s[0]) if s is not None else (None if confidence is None else 1.0 - float(confidence))
        u_arr = None if u is None else np.array([u])
        bad_f, bad_j = _masks(self.cfg, u_arr, None if s is None else s[None])
        if u is None:
            bad_f = np.zeros(1, dtype=bool)
            bad_j = np.zeros((1, NUM_JOINTS), dtype=bool)
        q = rotmat_to_quat(rot)
        rec = _Rec(self._count, t, rot, q, b, x, u, s, bool(bad_f[0]), bad_j[0].copy(), q.copy(), b.copy(), x.copy())
        self._count += 1
        self._buf.append(rec)
        self._update_frame_stream(rec)
        self._update_joint_streams(rec)
        return self._emit(rec.index)

    def flush(self) -> list[FrameOutput]:
        """End of sequence: finish every waiting frame (hold the last confident value) and reset."""
        pend = self._buf[len(self._buf) - self._pend_f :] if self._pend_f else []
        if pend and not self._long_f:
            for r in pend:
                if self._anchor_f is not None:
                    self._fill_f(r, self._anchor_f, self._anchor_f)
                else:
                    r.flagged_f, r.done_f = True, True
        groups: list[tuple[_Rec, int, _Rec, _Rec]] = []
        for j in range(NUM_JOINTS):
            c = int(self._pend_j[j])
            if not c or self._long_j[j]:
                continue
            anchor = self._anchor_j[j]
            for r in self._buf[len(self._buf) - c :]:
                if anchor is not None:
                    groups.append((r, j, anchor, anchor))
                else:
                    r.flagged_j[j], r.done_j[j] = True, True
        self._fill_j(groups)
        for r in self._buf:
            r.done_f = True
            r.done_j[:] = True
        out = self._emit(self._count - 1)
        self._reset()
        return out

    # ---------------------------------------------------------------------------------- internals
    def _fill_f(self, r: _Rec, lo: _Rec, hi: _Rec) -> None:
        span = hi.t - lo.t
        w = (r.t - lo.t) / span if span > 0 else 0.0
        r.out_betas = _lerp(lo.betas, hi.betas, np.float64(w))
        r.out_transl = _lerp(lo.transl, hi.transl, np.float64(w))
        r.filled_f = r.done_f = True

    def _fill_j(self, groups: list[tuple[_Rec, int, _Rec, _Rec]]) -> None:
        if not groups:
            return
        q0 = np.stack([g[2].quat[g[1]] for g in groups])
        q1 = np.stack([g[3].quat[g[1]] for g in groups])
        tl = np.array([g[2].t for g in groups])
        th = np.array([g[3].t for g in groups])
        tr = np.array([g[0].t for g in groups])
        span = th - tl
        w = np.where(span > 0, (tr - tl) / np.where(span > 0, span, 1.0), 0.0)
        q = slerp(q0, q1, w)
        for (r, jj, _, _), qq in zip(groups, q, strict=True):
            r.out_quat[jj] = qq
            r.filled_j[jj] = r.done_j[jj] = True

    def _update_frame_stream(self, rec: _Rec) -> None:
        if not rec.bad_f:
            if self._pend_f and not self._long_f:
                for r in self._buf[-1 - self._pend_f : -1]:
                    self._fill_f(r, rec if self._anchor_f is None else self._anchor_f, rec)
            self._pend_f, self._long_f = 0, False
            self._anchor_f = rec
            rec.done_f = True
            return
        if self._long_f:
            rec.flagged_f = rec.done_f = True
            return
        self._pend_f += 1
        if self._pend_f > self.cfg.max_gap:
            self._long_f = True
            for r in self._buf[-self._pend_f :]:
                r.flagged_f = r.done_f = True

    def _update_joint_streams(self, rec: _Rec) -> None:
        groups: list[tuple[_Rec, int, _Rec, _Rec]] = []
        for j in range(NUM_JOINTS):
            c = int(self._pend_j[j])
            if not rec.bad_j[j]:
                if c and not self._long_j[j]:
                    anchor = self._anchor_j[j]
                    anchor = rec if anchor is None else anchor
                    groups.extend((r, j, anchor, rec) for r in self._buf[-1 - c : -1])
                self._pend_j[j], self._long_j[j] = 0, False
                self._anchor_j[j] = rec
                rec.done_j[j] = True
            elif self._long_j[j]:
                rec.flagged_j[j] = rec.done_j[j] = True
            else:
                self._pend_j[j] = c + 1
                if c + 1 > self.cfg.max_gap:
                    self._long_j[j] = True
                    for r in self._buf[-(c + 1) :]:
                        r.flagged_j[j] = r.done_j[j] = True
        self._fill_j(groups)

    def _emit(self, push_index: int) -> list[FrameOutput]:
        out: list[FrameOutput] = []
        while self._buf and self._buf[0].done_f and self._buf[0].done_j.all():
            r = self._buf.pop(0)
            q, b, x = r.out_quat, r.out_betas, r.out_transl
            if self.cfg.smooth:
                g_f, g_j = _gains(self.cfg, None if r.u is None else np.float64(r.u), r.sigma)
                g_f = 1.0 if r.filled_f else float(g_f)
                g_j = np.where(r.filled_j, 1.0, np.broadcast_to(g_j, (NUM_JOINTS,)))
                q, b, x = self._smoother.step(r.t, q, b, x, g_f, g_j)
                rot = quat_to_rotmat(q)
            else:
                rot = r.rot.copy()
                if r.filled_j.any():
                    rot[r.filled_j] = quat_to_rotmat(q[r.filled_j])
            out.append(
                FrameOutput(
                    frame=int(r.t), rotmat=rot, betas=b, transl=x,
                    inpainted_frame=r.filled_f, inpainted_joints=r.filled_j.copy(),
                    flagged_frame=r.flagged_f, flagged_joints=r.flagged_j.copy(), frame_uncertainty=r.u,
                    raw_rotmat=r.rot, raw_betas=r.betas, raw_transl=r.transl,
                    pushed_at=push_index,
                )
            )
        return out
