"""hpsedge.runtime.temporal: SLERP and quaternion maths, gated inpainting, SO(3) One-Euro, streaming = batch."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hpsedge.errors import InputError
from hpsedge.runtime.predictor import PersonResult
from hpsedge.runtime.rotations import axis_angle_to_rotmat, geodesic_angle, quat_to_rotmat, rotmat_to_quat
from hpsedge.runtime.temporal import (
    DEFAULT_FRAME_THRESHOLD,
    OneEuroParams,
    TemporalConfig,
    TemporalFilter,
    TemporalResult,
    Track,
    inpaint,
    process,
    project_to_so3,
    quat_continuity,
    quat_exp,
    quat_log,
    slerp,
    slerp_rotmat,
    smooth,
    thresholds_from_manifest,
)


def rz(deg: float) -> np.ndarray:
    return axis_angle_to_rotmat(np.array([0.0, 0.0, np.radians(deg)]))


def assert_rotations(r: np.ndarray, atol: float = 1e-9) -> None:
    eye = np.broadcast_to(np.eye(3), r.shape)
    np.testing.assert_allclose(np.swapaxes(r, -1, -2) @ r, eye, atol=atol)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=atol)


def same_rotation(q1: np.ndarray, q2: np.ndarray, atol: float = 1e-12) -> bool:
    return bool(np.allclose(np.abs(np.sum(q1 * q2, axis=-1)), 1.0, atol=atol))


def smooth_motion(n: int, seed: int = 0) -> np.ndarray:
    """[n, 24, 3, 3] smooth joint rotations at 30 fps."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None, None] / 30.0
    freq = rng.uniform(0.1, 0.8, (1, 24, 3))
    phase = rng.uniform(0, 2 * np.pi, (1, 24, 3))
    return axis_angle_to_rotmat(0.6 * np.sin(2 * np.pi * freq * t + phase))


def make_track(n: int = 40, seed: int = 0, sigma: float = 0.1, frames: np.ndarray | None = None) -> Track:
    rng = np.random.default_rng(seed)
    return Track(
        frames=np.arange(n) if frames is None else frames,
        rotmat=smooth_motion(n, seed),
        betas=np.tile(rng.normal(size=10), (n, 1)) + np.arange(n)[:, None] * 0.01,
        transl=np.stack([np.linspace(0, 1, n), np.zeros(n), np.full(n, 4.0)], axis=1),
        sigma=np.full((n, 24), sigma),
    )


# ============================================================================================ SLERP maths
def test_slerp_endpoints_and_midpoint() -> None:
    q0 = rotmat_to_quat(rz(0.0))
    q1 = rotmat_to_quat(rz(90.0))
    assert same_rotation(slerp(q0, q1, 0.0), q0)
    assert same_rotation(slerp(q0, q1, 1.0), q1)
    np.testing.assert_allclose(quat_to_rotmat(slerp(q0, q1, 0.5)), rz(45.0), atol=1e-12)
    ts = np.linspace(0, 1, 7)
    angles = np.degrees(geodesic_angle(rz(0.0), quat_to_rotmat(slerp(q0[None], q1[None], ts))))
    np.testing.assert_allclose(angles, 90.0 * ts, atol=1e-9)  # constant angular speed
    np.testing.assert_allclose(slerp_rotmat(rz(10.0), rz(70.0), 0.25), rz(25.0), atol=1e-12)


def test_slerp_takes_the_short_arc_whatever_the_quaternion_signs() -> None:
    q0 = rotmat_to_quat(rz(170.0))
    q1 = rotmat_to_quat(rz(-170.0))  # 20° away through 180°, not 340° back through 0°
    for a, b in ((q0, q1), (q0, -q1), (-q0, q1), (-q0, -q1)):
        mid = quat_to_rotmat(slerp(a, b, 0.5))
        assert np.degrees(geodesic_angle(mid, rz(180.0))) < 1e-9
    # nearly equal inputs stay accurate
    tiny = rotmat_to_quat(rz(1e-7))
    np.testing.assert_allclose(quat_to_rotmat(slerp(rotmat_to_quat(np.eye(3)), tiny, 0.5)), rz(5e-8), atol=1e-15)


def test_quaternion_sign_continuity() -> None:
    qs = rotmat_to_quat(np.stack([rz(a) for a in np.linspace(0, 340, 18)]))  # w >= 0 flips sign past 180°
    flipped = qs * np.where(np.arange(18) % 3 == 0, -1.0, 1.0)[:, None]
    cont = quat_continuity(flipped)
    assert (np.sum(cont[1:] * cont[:-1], axis=-1) >= 0).all()
    np.testing.assert_allclose(quat_to_rotmat(cont), quat_to_rotmat(qs), atol=1e-12)  # same rotations
    both = quat_continuity(np.stack([flipped, -flipped], axis=1), axis=0)  # along the first axis only
    assert (np.sum(both[1:] * both[:-1], axis=-1) >= 0).all()


def test_log_exp_round_trip_and_projection() -> None:
    rng = np.random.default_rng(1)
    d = rng.normal(size=(100, 3))
    v = d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(0, 3.1, (100, 1))  # angles below π
    v = np.concatenate([v, np.zeros((1, 3)), np.full((1, 3), 1e-12)])
    np.testing.assert_allclose(quat_log(quat_exp(v)), v, atol=1e-10)
    q = quat_exp(v)
    np.testing.assert_allclose(quat_log(-q), quat_log(q), atol=1e-12)  # ±q: the same rotation vector
    r = quat_to_rotmat(rng.normal(size=(50, 4)))
    assert_rotations(project_to_so3(r + rng.normal(0, 0.05, r.shape)))
    np.testing.assert_allclose(project_to_so3(r), r, atol=1e-12)
    reflection = np.diag([1.0, 1.0, -1.0])
    assert_rotations(project_to_so3(reflection))


# =========================================================================================== inpainting
def test_single_uncertain_frame_is_slerped_and_lerped() -> None:
    tr = make_track(10)
    tr.rotmat[4] = axis_angle_to_rotmat(np.full((24, 3), 1.0))  # garbage pose
    tr.transl[4] = [9.0, 9.0, 9.0]
    tr.sigma[4, 0] = 0.8  # pelvis σ over the default 0.3: the whole frame
    res = inpaint(tr, TemporalConfig())
    assert res.inpainted_frames.tolist() == [k == 4 for k in range(10)]
    assert res.inpainted_joints[4].all() and not res.inpainted_joints[[3, 5]].any()
    np.testing.assert_allclose(res.rotmat[4], slerp_rotmat(tr.rotmat[3], tr.rotmat[5], 0.5), atol=1e-12)
    np.testing.assert_allclose(res.transl[4], 0.5 * (tr.transl[3] + tr.transl[5]), atol=1e-12)
    np.testing.assert_allclose(res.betas[4], 0.5 * (tr.betas[3] + tr.betas[5]), atol=1e-12)
    np.testing.assert_array_equal(res.rotmat[[0, 3, 5, 9]], tr.rotmat[[0, 3, 5, 9]])  # confident: untouched
    assert not res.flagged_frames.any()
    assert_rotations(res.rotmat)


def test_interpolation_weights_follow_frame_indices() -> None:
    frames = np.array([0, 1, 2, 10, 12])  # the person is missing between 2 and 10
    tr = make_track(5, frames=frames)
    tr.sigma[3, 0] = 0.9
    res = inpaint(tr)
    w = (10 - 2) / (12 - 2)
    np.testing.assert_allclose(res.rotmat[3], slerp_rotmat(tr.rotmat[2], tr.rotmat[4], w), atol=1e-12)
    np.testing.assert_allclose(res.transl[3], tr.transl[2] + w * (tr.transl[4] - tr.transl[2]), atol=1e-12)


def test_sequence_ends_hold_the_nearest_confident_value() -> None:
    tr = make_track(12)
    tr.sigma[:3, 0] = 0.9
    tr.sigma[-2:, 0] = 0.9
    res = inpaint(tr)
    for k in range(3):
        np.testing.assert_allclose(res.rotmat[k], tr.rotmat[3], atol=1e-12)
        np.testing.assert_allclose(res.transl[k], tr.transl[3])
    for k in (10, 11):
        np.testing.assert_allclose(res.rotmat[k], tr.rotmat[9], atol=1e-12)
        np.testing.assert_allclose(res.betas[k], tr.betas[9])
    assert res.inpainted_frames.sum() == 5


def test_gaps_longer_than_the_limit_are_left_alone_and_flagged() -> None:
    tr = make_track(30)
    tr.sigma[2:6, 0] = 0.9  # 4 samples: filled with max_gap 4
    tr.sigma[10:15, 0] = 0.9  # 5 samples: too long
    res = inpaint(tr, TemporalConfig(max_gap=4))
    assert res.inpainted_frames[2:6].all() and not res.flagged_frames[2:6].any()
    assert res.flagged_frames[10:15].all() and not res.inpainted_frames[10:15].any()
    np.testing.assert_array_equal(res.rotmat[10:15], tr.rotmat[10:15])
    assert res.flagged_frames.sum() == 5 and res.inpainted_frames.sum() == 4
    # nothing confident at all: nothing to fill from
    bad = make_track(5, sigma=0.9)
    res = inpaint(bad)
    assert res.flagged_frames.all() and not res.inpainted_frames.any()
    np.testing.assert_array_equal(res.rotmat, bad.rotmat)


def test_per_joint_gating_replaces_only_that_joint() -> None:
    tr = make_track(10)
    tr.rotmat[5, 18] = rz(120.0)  # one elbow off
    tr.sigma[5, 18] = 0.7
    res = inpaint(tr, TemporalConfig(joint_threshold=0.5))
    assert res.inpainted_joints.sum() == 1 and res.inpainted_joints[5, 18]
    assert not res.inpainted_frames.any()
    np.testing.assert_allclose(res.rotmat[5, 18], slerp_rotmat(tr.rotmat[4, 18], tr.rotmat[6, 18], 0.5), atol=1e-12)
    others = np.ones(24, bool)
    others[18] = False
    np.testing.assert_array_equal(res.rotmat[5, others], tr.rotmat[5, others])
    np.testing.assert_array_equal(res.transl, tr.transl)
    # per-joint thresholds as 24 values; joint gating off by default
    thr = np.full(24, 0.9)
    thr[18] = 0.5
    assert inpaint(tr, TemporalConfig(joint_threshold=tuple(thr))).inpainted_joints.sum() == 1
    assert inpaint(tr).inpainted_joints.sum() == 0


def test_confidence_only_tracks_gate_on_one_minus_confidence() -> None:
    tr = make_track(8)
    tr = Track(tr.frames, tr.rotmat, tr.betas, tr.transl, confidence=np.full(8, 0.9))
    tr.confidence[3] = 0.2  # TokenHMR-style per-frame confidence
    res = inpaint(tr)
    assert res.inpainted_frames.tolist() == [k == 3 for k in range(8)]
    np.testing.assert_allclose(res.frame_uncertainty, 1.0 - tr.confidence)
    plain = Track(tr.frames, tr.rotmat, tr.betas, tr.transl)  # no uncertainty: nothing gated
    assert not inpaint(plain).inpainted_frames.any()


# ============================================================================================= smoothing
def test_smoothing_reduces_jitter_and_keeps_rotations_orthonormal() -> None:
    rng = np.random.default_rng(3)
    n = 120
    truth = np.broadcast_to(axis_angle_to_rotmat(rng.normal(size=(24, 3)) * 0.5), (n, 24, 3, 3))
    noisy = truth @ axis_angle_to_rotmat(rng.normal(0, np.radians(3.0), (n, 24, 3)))
    tr = Track(np.arange(n), noisy, np.zeros((n, 10)), rng.normal(0, 0.01, (n, 3)) + np.array([0.0, 0.0, 4.0]))
    res = process(tr, TemporalConfig(inpaint=False))
    assert_rotations(res.rotmat)
    raw_err = np.degrees(geodesic_angle(noisy[30:], truth[30:])).mean()
    err = np.degrees(geodesic_angle(res.rotmat[30:], truth[30:])).mean()
    assert err < 0.6 * raw_err
    assert np.std(res.transl[30:, 0]) < 0.5 * np.std(tr.transl[30:, 0])


def test_one_euro_so3_handles_large_rotations_and_sign_flips() -> None:
    angles = np.linspace(0, 720, 200)  # two full turns: quaternion w changes sign repeatedly
    rot = np.stack([np.broadcast_to(rz(a), (24, 3, 3)) for a in angles])
    tr = Track(np.arange(200), rot, np.zeros((200, 10)), np.zeros((200, 3)))
    cfg = TemporalConfig(inpaint=False, rotation=OneEuroParams(min_cutoff=5.0, beta=5.0))
    res = process(tr, cfg)
    assert_rotations(res.rotmat)
    err = np.degrees(geodesic_angle(res.rotmat, rot))
    assert err.max() < 6.0  # follows through ±180° instead of unwinding


def test_sigma_weighting_moves_uncertain_frames_more() -> None:
    tr = make_track(40)
    truth = tr.rotmat.copy()
    tr.rotmat[20] = truth[20] @ axis_angle_to_rotmat(np.full((24, 3), 0.4))  # outlier ...
    tr.sigma[20] = 0.9  # ... that σ reveals
    cfg = TemporalConfig(inpaint=False, joint_threshold=0.4)
    weighted = process(tr, cfg)
    plain = process(tr, replace(cfg, sigma_weighted=False))
    e_w = geodesic_angle(weighted.rotmat[20], truth[20]).mean()
    e_p = geodesic_angle(plain.rotmat[20], truth[20]).mean()
    moved_w = geodesic_angle(weighted.rotmat[20], tr.rotmat[20]).mean()
    moved_p = geodesic_angle(plain.rotmat[20], tr.rotmat[20]).mean()
    assert moved_w > moved_p and e_w < e_p
    # smoothing the inpainted result: inpainted samples count as confident
    res = smooth(inpaint(tr, cfg), tr.sigma)
    assert_rotations(res.rotmat)


# ============================================================================================ streaming
def _stream(tr: Track, cfg: TemporalConfig) -> tuple[TemporalResult, list[int]]:
    filt = TemporalFilter(cfg)
    outs = []
    waits = []
    for k in range(len(tr)):
        got = filt.push(int(tr.frames[k]), tr.rotmat[k], tr.betas[k], tr.transl[k],
                        sigma=None if tr.sigma is None else tr.sigma[k],
                        confidence=None if tr.confidence is None else tr.confidence[k])
        waits += [k - int(np.searchsorted(tr.frames, o.frame)) for o in got]
        outs += got
    outs += filt.flush()
    return TemporalResult.from_outputs(outs, cfg), waits


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("smooth_on", [True, False])
def test_streaming_equals_batch_at_the_end_of_a_sequence(seed: int, smooth_on: bool) -> None:
    rng = np.random.default_rng(seed)
    n = 150
    frames = np.cumsum(rng.integers(1, 3, n))  # the track skips some frames
    tr = make_track(n, seed=seed, frames=frames)
    tr.rotmat = tr.rotmat @ axis_angle_to_rotmat(rng.normal(0, 0.05, (n, 24, 3)))
    tr.sigma = rng.uniform(0.05, 0.25, (n, 24))
    tr.sigma[rng.random(n) < 0.08, 0] = 0.8  # isolated bad frames
    for start in rng.integers(0, n - 12, 6):  # bursts, some longer than max_gap
        length = int(rng.integers(2, 10))
        joints = rng.choice(24, 5, replace=False)
        tr.sigma[start : start + length, joints] = 0.9
    tr.sigma[:2, 0] = 0.8  # uncertain start
    tr.sigma[-3:, 3] = 0.9  # uncertain end (one joint)
    cfg = TemporalConfig(joint_threshold=0.5, max_gap=6, smooth=smooth_on)
    batch = process(tr, cfg)
    streamed, waits = _stream(tr, cfg)
    np.testing.assert_array_equal(streamed.frames, batch.frames)
    for key in ("inpainted_frames", "inpainted_joints", "flagged_frames", "flagged_joints"):
        np.testing.assert_array_equal(getattr(streamed, key), getattr(batch, key), err_msg=key)
    np.testing.assert_allclose(streamed.rotmat, batch.rotmat, atol=1e-12)
    np.testing.assert_allclose(streamed.transl, batch.transl, atol=1e-12)
    np.testing.assert_allclose(streamed.betas, batch.betas, atol=1e-12)
    assert batch.inpainted_joints.any() and batch.flagged_joints.any()
    assert max(waits) <= cfg.max_gap == TemporalFilter(cfg).max_lag


def test_streaming_without_inpainting_returns_every_frame_at_once() -> None:
    tr = make_track(20)
    tr.sigma[5, 0] = 0.9
    filt = TemporalFilter(TemporalConfig(inpaint=False))
    assert filt.max_lag == 0
    for k in range(20):
        out = filt.push(k, tr.rotmat[k], tr.betas[k], tr.transl[k], sigma=tr.sigma[k])
        assert [o.frame for o in out] == [k]
    assert filt.flush() == []


def test_streaming_holds_uncertain_frames_until_a_confident_one() -> None:
    tr = make_track(6)
    tr.sigma[1:3, 0] = 0.9
    filt = TemporalFilter(TemporalConfig(smooth=False))
    got = [[o.frame for o in filt.push(k, tr.rotmat[k], tr.betas[k], tr.transl[k], sigma=tr.sigma[k])] for k in range(4)]
    assert got == [[0], [], [], [1, 2, 3]]


def test_streaming_accepts_person_results_and_checks_input() -> None:
    tr = make_track(3)
    filt = TemporalFilter()
    r = PersonResult(box=np.zeros(4), center=np.zeros(2), size=100.0, pose_rotmat=tr.rotmat[0].astype(np.float32),
                     pose_axis_angle=np.zeros((24, 3)), betas=tr.betas[0], cam_crop=np.zeros(3), transl=tr.transl[0],
                     focal=500.0, sigma=tr.sigma[0], confidence=0.9)
    assert len(filt.push_result(0, r)) == 1
    with pytest.raises(InputError, match="must increase"):
        filt.push(0, tr.rotmat[1], tr.betas[1], tr.transl[1], sigma=tr.sigma[1])
    with pytest.raises(InputError, match="rotmat"):
        filt.push(1, np.eye(3), tr.betas[1], tr.transl[1], sigma=tr.sigma[1])
    with pytest.raises(InputError, match="same uncertainty"):
        filt.push(1, tr.rotmat[1], tr.betas[1], tr.transl[1])
    track = Track.from_results([0, 1], [r, replace(r, confidence=0.5)])
    assert track.sigma is not None and track.confidence is not None


# ========================================================================================= config/input
def test_thresholds_from_the_manifest_calibration() -> None:
    joint = np.linspace(0.1, 0.5, 24)
    manifest = {"calibration": {"sigma_percentiles": {"50": (joint / 2).tolist(), "p95": joint.tolist()}}}
    cfg = TemporalConfig.from_manifest(manifest)
    assert cfg.frame_threshold == pytest.approx(0.1)
    np.testing.assert_allclose(cfg.joint_thresholds(), joint)
    assert "p95" in cfg.threshold_source
    assert TemporalConfig.from_manifest(manifest, percentile=50).frame_threshold == pytest.approx(0.05)
    assert TemporalConfig.from_manifest(manifest, frame_threshold=0.2).frame_threshold == 0.2  # overrides win
    conf = {"calibration": {"confidence_percentiles": {"5": 0.6}}}
    assert TemporalConfig.from_manifest(conf).frame_threshold == pytest.approx(0.4)
    assert thresholds_from_manifest({"model": {}}) is None and thresholds_from_manifest(None) is None
    default = TemporalConfig.from_manifest({"model": {}})
    assert default.frame_threshold == DEFAULT_FRAME_THRESHOLD and default.joint_threshold is None
    with pytest.raises(InputError, match="24 numbers"):
        TemporalConfig.from_manifest({"calibration": {"sigma_percentiles": {"95": [0.1, 0.2]}}})


def test_bad_input_is_reported() -> None:
    tr = make_track(5)
    with pytest.raises(InputError, match="strictly increasing"):
        Track(np.array([0, 2, 1, 3, 4]), tr.rotmat, tr.betas, tr.transl)
    with pytest.raises(InputError, match="sigma must have shape"):
        Track(tr.frames, tr.rotmat, tr.betas, tr.transl, sigma=np.zeros((5, 23)))
    nan = tr.transl.copy()
    nan[2, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        Track(tr.frames, tr.rotmat, tr.betas, nan)
    with pytest.raises(InputError, match="max_gap"):
        TemporalConfig(max_gap=-1)
    with pytest.raises(InputError, match="24"):
        TemporalConfig(joint_threshold=(0.1, 0.2))
    empty = process(Track.from_results([], []))
    assert len(empty.frames) == 0
