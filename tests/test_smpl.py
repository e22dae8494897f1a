"""hpsedge.runtime.smpl and safe_pickle: loading official/clean/npz files safely, refusing wrong or hostile
files, and the numpy forward pass against smplx (the test oracle) on a synthetic SMPL model."""

from __future__ import annotations

import ast
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import smplx
import torch

import smpl_synth
from hpsedge.errors import CheckpointError, InputError, SMPLFileError
from hpsedge.runtime import blas, safe_pickle
from hpsedge.runtime.rotations import axis_angle_to_rotmat
from hpsedge.runtime.smpl import (
    JOINT_MAP_49,
    SMPL,
    SMPL_PARENTS,
    VERTEX_JOINT_IDS,
    convert_to_npz,
    describe,
    load_smpl_data,
)

TOL = 1e-5  # metres, float32 against smplx float32
SRC = Path(__file__).parents[1] / "src" / "hpsedge" / "runtime"


# ------------------------------------------------------------------------------------------------- oracle
@pytest.fixture(scope="module")
def smplx_model(synthetic_smpl_dir: Path) -> smplx.SMPL:
    """smplx on the chumpy-free pickle (smplx cannot read the chumpy one without chumpy installed)."""
    return smplx.SMPL(model_path=str(synthetic_smpl_dir / "SMPL_NEUTRAL_clean.pkl"))


def _random_inputs(B: int, seed: int, sigma: float = 0.6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    betas = rng.normal(size=(B, 10)).astype(np.float32)
    aa = (rng.normal(size=(B, 24, 3)) * sigma).astype(np.float32)
    if B:
        aa[0, 5] = 0.0  # an exact zero rotation
    transl = rng.normal(scale=1.5, size=(B, 3)).astype(np.float32)
    return betas, aa, transl


def _smplx_forward(
    model: smplx.SMPL, betas: np.ndarray, rotmats: np.ndarray, transl: np.ndarray | None, extra: np.ndarray
) -> dict[str, np.ndarray]:
    """smplx with rotation matrices (pose2rot=False), plus SPIN's extra joints and JOINT_MAP done here."""
    B = len(betas)
    r = torch.from_numpy(rotmats)
    kwargs: dict[str, Any] = {}
    if transl is not None:
        kwargs["transl"] = torch.from_numpy(transl)
    with torch.inference_mode():
        out = model(
            betas=torch.from_numpy(betas),
            global_orient=r[:, :1],
            body_pose=r[:, 1:],
            pose2rot=False,
            **kwargs,
        )
    verts = out.vertices.numpy()
    joints45 = out.joints.numpy()
    assert verts.shape == (B, 6890, 3) and joints45.shape == (B, 45, 3)
    extra_j = np.einsum("kv,bvc->bkc", extra.astype(np.float32), verts)
    joints49 = np.concatenate([joints45, extra_j], axis=1)[:, list(JOINT_MAP_49)]
    return {"vertices": verts, "joints45": joints45, "joints49": joints49, "extra": extra_j}


# --------------------------------------------------------------------------------------- loading files
def test_official_clean_and_npz_files_give_identical_arrays(
    synthetic_smpl_dir: Path, smpl_arrays: dict
) -> None:
    official = load_smpl_data(synthetic_smpl_dir / "SMPL_NEUTRAL.pkl")
    clean = load_smpl_data(synthetic_smpl_dir / "SMPL_NEUTRAL_clean.pkl")
    npz = load_smpl_data(synthetic_smpl_dir / "SMPL_NEUTRAL.npz")
    for data in (official, clean, npz):
        assert set(data) == {
            "v_template",
            "shapedirs",
            "posedirs",
            "J_regressor",
            "weights",
            "faces",
            "parents",
        }
        assert np.array_equal(data["v_template"], smpl_arrays["v_template"])
        assert np.array_equal(data["shapedirs"], smpl_arrays["shapedirs"])
        assert np.array_equal(data["posedirs"], smpl_arrays["posedirs"])
        assert np.array_equal(data["J_regressor"], smpl_arrays["J_regressor"])  # sparse csc densified exactly
        assert np.array_equal(data["weights"], smpl_arrays["weights"])
        assert data["faces"].dtype == np.int32 and np.array_equal(
            data["faces"], smpl_arrays["f"].astype(np.int64)
        )
        assert data["parents"].dtype == np.int32 and data["parents"].tolist() == list(SMPL_PARENTS)
        assert data["shapedirs"].shape == (6890, 3, 10)
    assert load_smpl_data(synthetic_smpl_dir / "SMPL_NEUTRAL.pkl", num_betas=4)["shapedirs"].shape == (
        6890,
        3,
        4,
    )


def test_official_file_loads_without_chumpy_or_scipy(smpl_pkl: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["scipy"] = None  # any import of scipy now fails
        sys.modules["chumpy"] = None
        from hpsedge.runtime.smpl import SMPL, load_smpl_data
        d = load_smpl_data({str(smpl_pkl)!r})
        m = SMPL(d)
        print("HEAVY:", sorted(k for k in sys.modules if k.split(".")[0] in ("scipy", "chumpy", "torch", "smplx")
                               and sys.modules[k] is not None))
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC.parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    assert "HEAVY: []" in res.stdout


@pytest.mark.parametrize("protocol", [0, 1, 2])
def test_safe_pickle_reads_python2_chumpy_and_sparse_objects_at_every_protocol(protocol: int) -> None:
    rng = np.random.default_rng(protocol)
    dense = np.where(rng.random((5, 7)) < 0.3, rng.normal(size=(5, 7)), 0.0)
    base = rng.normal(size=12)
    payload = {
        "ch": smpl_synth.fake_ch(rng.normal(size=(4, 3, 2))),
        "sel": smpl_synth.fake_select(smpl_synth.fake_ch(base), np.array([5, 1, 7, 0, 2, 3]), (3, 2)),
        "csc": smpl_synth.fake_csc(dense),
        "u32": np.arange(6, dtype=np.uint32).reshape(2, 3),
        "kt": np.array([[4294967295, 0, 1], [0, 1, 2]], dtype=np.int64),
        "style": "lrotmin",
        "scalar": np.float64(2.5),
    }
    blob = smpl_synth.dumps_py2(payload, protocol=protocol)
    with pytest.raises((ModuleNotFoundError, UnicodeDecodeError)):  # what a plain pickle.load does here
        pickle.loads(blob)
    out = safe_pickle.load_smpl_pickle(blob)
    assert np.array_equal(out["ch"], payload["ch"].x)
    assert np.array_equal(out["sel"], base[[5, 1, 7, 0, 2, 3]].reshape(3, 2))
    assert np.array_equal(out["csc"], dense)
    assert out["u32"].dtype == np.uint32 and np.array_equal(out["u32"], payload["u32"])
    assert out["kt"][0, 0] == 4294967295
    assert out["style"] == "lrotmin" and out["scalar"] == 2.5


def test_safe_pickle_reads_modern_scipy_sparse_and_numpy_pickles() -> None:
    import scipy.sparse

    dense = np.array([[0.0, 1.5, 0.0], [2.0, 0.0, 3.0]])
    for protocol in (2, 4, 5):
        blob = pickle.dumps(
            {
                "csc": scipy.sparse.csc_matrix(dense),
                "csr": scipy.sparse.csr_matrix(dense),
                "coo": scipy.sparse.coo_matrix(dense),
                "arr": np.arange(5, dtype=np.float32),
                "ids": {1, 2},
            },
            protocol=protocol,
        )
        out = safe_pickle.load_smpl_pickle(blob)
        for key in ("csc", "csr", "coo"):
            assert np.array_equal(out[key], dense), (protocol, key)
        assert out["arr"].dtype == np.float32 and out["ids"] == {1, 2}


@pytest.mark.parametrize("via", ["os.system", "builtins.eval"])
def test_forbidden_global_is_refused_and_never_run(tmp_path: Path, via: str) -> None:
    marker = tmp_path / "pwned"
    evil = smpl_synth.write_forbidden_pickle(tmp_path / "SMPL_NEUTRAL.pkl", marker, via=via)
    with pytest.raises(SMPLFileError) as exc:
        load_smpl_data(evil)
    msg = str(exc.value)
    assert "forbidden global" in msg and ("system'" in msg if via == "os.system" else "eval'" in msg), msg
    with pytest.raises(SMPLFileError):
        SMPL.load(evil)
    with pytest.raises(SMPLFileError):
        describe(evil)
    assert not marker.exists()
    # the payload is real: a plain pickle.load (in a child process) does run it
    control = tmp_path / "control"
    smpl_synth.write_forbidden_pickle(tmp_path / "control.pkl", control, via=via)
    subprocess.run(
        [sys.executable, "-c", f"import pickle; pickle.load(open({str(tmp_path / 'control.pkl')!r}, 'rb'))"],
        capture_output=True,
        timeout=60,
    )
    assert control.exists()


def test_restricted_load_takes_a_caller_allowlist_and_error_class(tmp_path: Path) -> None:
    blob = pickle.dumps({"w": np.ones(3, dtype=np.float32)}, protocol=2)
    out = safe_pickle.restricted_load(blob, safe_pickle.NUMPY_GLOBALS | safe_pickle.PY2_COMPAT_GLOBALS)
    assert np.array_equal(out["w"], np.ones(3))
    # the same data with an allowlist that lacks numpy: refused, with the caller's error class and file name
    path = tmp_path / "ckpt.pkl"
    path.write_bytes(blob)
    with pytest.raises(CheckpointError, match=r"ckpt\.pkl.*forbidden global 'numpy"):
        safe_pickle.restricted_load(path, {}, error=CheckpointError)
    with pytest.raises(CheckpointError, match="no such file"):
        safe_pickle.restricted_load(tmp_path / "missing.pkl", {}, error=CheckpointError)


def test_truncated_and_empty_files_are_reported(tmp_path: Path, smpl_pkl: Path, smpl_npz: Path) -> None:
    for src, frac in ((smpl_pkl, 0.5), (smpl_pkl, 0.001), (smpl_npz, 0.6)):
        bad = smpl_synth.truncate_copy(src, tmp_path / f"cut_{frac}{src.suffix}", frac)
        with pytest.raises(SMPLFileError, match="truncated"):
            load_smpl_data(bad)
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    with pytest.raises(SMPLFileError, match="empty"):
        load_smpl_data(empty)
    with pytest.raises(SMPLFileError, match="no such file"):
        load_smpl_data(tmp_path / "nope.pkl")
    with pytest.raises(SMPLFileError, match="folder"):
        load_smpl_data(tmp_path)
    not_a_dict = tmp_path / "list.pkl"
    not_a_dict.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(SMPLFileError, match="not a body-model file"):
        load_smpl_data(not_a_dict)


@pytest.mark.parametrize(("kind", "label"), [("smplx", "SMPL-X"), ("mano", "MANO"), ("smplh", "SMPL+H")])
def test_other_body_models_are_named(tmp_path: Path, kind: str, label: str) -> None:
    path = smpl_synth.write_wrong_kind(tmp_path, kind)
    with pytest.raises(SMPLFileError) as exc:
        load_smpl_data(path)
    assert f"looks like an {label} model" in str(exc.value)
    info = describe(path)
    assert info["kind"] == label and info["usable"] is False and label in info["problem"]


def test_describe_reports_kind_sizes_dtypes_and_gender(synthetic_smpl_dir: Path, tmp_path: Path) -> None:
    info = describe(synthetic_smpl_dir / "SMPL_NEUTRAL.pkl")
    assert info["kind"] == "SMPL" and info["usable"] is True and info["problem"] is None
    assert (info["vertices"], info["faces"], info["joints"], info["betas"], info["pose_features"]) == (
        6890,
        13776,
        24,
        10,
        207,
    )
    assert info["format"].startswith("pkl (official") and info["chumpy_keys"] == ["shapedirs"]
    assert "J_regressor" in info["sparse_keys"]
    assert info["gender"] == "neutral" and info["dtypes"]["f"].startswith("uint32")
    assert describe(synthetic_smpl_dir / "SMPL_NEUTRAL_clean.pkl")["format"].startswith("pkl (chumpy-free")
    assert describe(synthetic_smpl_dir / "SMPL_NEUTRAL.npz")["format"] == "npz"
    for name, gender in (
        ("basicModel_f_lbs_10_207_0_v1.0.0.pkl", "female"),
        ("SMPL_MALE.pkl", "male"),
        ("model.pkl", None),
    ):
        link = tmp_path / name
        link.symlink_to(synthetic_smpl_dir / "SMPL_NEUTRAL.pkl")
        assert describe(link)["gender"] == gender


def test_convert_to_npz_round_trip_and_refusal_to_overwrite(
    tmp_path: Path, smpl_pkl: Path, smpl_model: SMPL
) -> None:
    out = tmp_path / "sub" / "SMPL_NEUTRAL.npz"
    assert convert_to_npz(smpl_pkl, out) == out
    with np.load(out, allow_pickle=False) as z:
        assert z["v_template"].dtype == np.float32 and z["posedirs"].dtype == np.float32
        assert z["J_regressor"].shape == (24, 6890) and z["J_regressor"].dtype == np.float32
        assert z["f"].dtype == np.int32 and z["parents"].dtype == np.int32 and z["parents"][0] == -1
        assert z["kintree_table"].dtype == np.int32 and z["kintree_table"][0, 0] == -1
    assert sorted(p.name for p in out.parent.iterdir()) == ["SMPL_NEUTRAL.npz"]  # no temp file left

    before = out.read_bytes()
    with pytest.raises(SMPLFileError, match="already exists") as exc:
        convert_to_npz(smpl_pkl, out)
    assert "force" in str(exc.value)
    assert out.read_bytes() == before
    convert_to_npz(smpl_pkl, out, force=True)

    m_npz = SMPL.load(out, j_regressor_extra=smpl_model.j_regressor_extra)
    np.testing.assert_array_equal(m_npz.faces, smpl_model.faces)
    betas, aa, transl = _random_inputs(4, seed=3)
    a, b = smpl_model.forward(betas, aa, transl), m_npz.forward(betas, aa, transl)
    np.testing.assert_allclose(a.vertices, b.vertices, atol=2e-6, rtol=0)
    np.testing.assert_allclose(a.joints49, b.joints49, atol=2e-6, rtol=0)
    with pytest.raises(SMPLFileError, match=r"\.npz"):
        convert_to_npz(smpl_pkl, tmp_path / "x.pkl")


def test_num_betas(tmp_path: Path, smpl_pkl: Path) -> None:
    path = smpl_synth.write_synthetic_smpl(tmp_path, num_betas=16, style="npz", seed=1)
    assert SMPL.load(path, num_betas=None).num_betas == 16
    assert SMPL.load(path).num_betas == 10
    five = SMPL.load(smpl_pkl, num_betas=5)
    assert five.num_betas == 5
    with pytest.raises(SMPLFileError, match="10 shape components"):
        SMPL.load(smpl_pkl, num_betas=11)
    betas, aa, _ = _random_inputs(2, seed=4)
    with pytest.raises(InputError, match="num_betas=5"):
        five.forward(betas, aa)
    full = SMPL.load(smpl_pkl, num_betas=None)
    padded = betas.copy()
    padded[:, 5:] = 0
    np.testing.assert_allclose(
        five.forward(betas[:, :5], aa).vertices, full.forward(padded, aa).vertices, atol=1e-6
    )
    # fewer betas than the model has are zero-padded; None is the mean shape
    np.testing.assert_array_equal(
        full.forward(betas[:, :3], aa).vertices,
        full.forward(np.pad(betas[:, :3], ((0, 0), (0, 7))), aa).vertices,
    )
    np.testing.assert_array_equal(
        full.forward(None, aa).vertices, full.forward(np.zeros((2, 10)), aa).vertices
    )


# ------------------------------------------------------------------------------------- forward vs smplx
@pytest.mark.parametrize("B", [1, 8, 64])
@pytest.mark.parametrize("pose_form", ["rotmat", "axis_angle", "axis_angle_flat"])
@pytest.mark.parametrize("with_transl", [True, False])
def test_forward_matches_smplx(
    smpl_model: SMPL, smplx_model: smplx.SMPL, B: int, pose_form: str, with_transl: bool
) -> None:
    betas, aa, transl = _random_inputs(B, seed=B + 7 * with_transl, sigma=1.0 if B == 8 else 0.6)
    rotmats = axis_angle_to_rotmat(aa.astype(np.float64)).astype(np.float32)
    pose = {"rotmat": rotmats, "axis_angle": aa, "axis_angle_flat": aa.reshape(B, 72)}[pose_form]
    t = transl if with_transl else None
    ref = _smplx_forward(smplx_model, betas, rotmats, t, smpl_model.j_regressor_extra)
    out = smpl_model.forward(betas, pose, t)
    assert out.vertices.shape == (B, 6890, 3) and out.vertices.dtype == np.float32
    assert (
        out.joints.shape == (B, 24, 3)
        and out.joints45.shape == (B, 45, 3)
        and out.joints49.shape == (B, 49, 3)
    )
    assert out.vertices.flags.c_contiguous
    np.testing.assert_allclose(out.vertices, ref["vertices"], atol=TOL, rtol=0)
    np.testing.assert_allclose(out.joints45, ref["joints45"], atol=TOL, rtol=0)
    np.testing.assert_allclose(out.joints, ref["joints45"][:, :24], atol=TOL, rtol=0)
    np.testing.assert_allclose(out.joints49, ref["joints49"], atol=TOL, rtol=0)
    np.testing.assert_array_equal(out.joints45[:, 24:], out.vertices[:, list(VERTEX_JOINT_IDS)])

    fast = smpl_model.forward(betas, pose, t, return_vertices=False)
    assert fast.vertices is None
    for name in ("joints", "joints45", "joints49", "joints_extra"):
        np.testing.assert_allclose(getattr(fast, name), getattr(out, name), atol=1e-6, rtol=0, err_msg=name)


def test_extreme_poses_and_large_translation(smpl_model: SMPL, smplx_model: smplx.SMPL) -> None:
    betas, aa, transl = _random_inputs(6, seed=11, sigma=2.5)
    betas *= 2.0
    transl *= 3.0
    rotmats = axis_angle_to_rotmat(aa.astype(np.float64)).astype(np.float32)
    ref = _smplx_forward(smplx_model, betas, rotmats, transl, smpl_model.j_regressor_extra)
    out = smpl_model.forward(betas, rotmats, transl)
    np.testing.assert_allclose(out.vertices, ref["vertices"], atol=TOL, rtol=0)
    np.testing.assert_allclose(out.joints49, ref["joints49"], atol=TOL, rtol=0)


def test_code_paths_agree(smpl_pkl: Path, smpl_model: SMPL, j_regressor_extra_path: Path) -> None:
    """Whole-range pass (small B) and cache-sized chunks (large B), each serial or split over threads, and a
    chunk size that needs padding, all give the same mesh."""
    betas, aa, transl = _random_inputs(12, seed=5)
    base = smpl_model.forward(betas, aa, transl).vertices  # 12 >= parallel_min_batch: chunked, threaded
    variants = {
        "threads=1": SMPL.load(smpl_pkl, threads=1),
        "blas": SMPL.load(smpl_pkl, thread_mode="blas"),
        "ours": SMPL.load(smpl_pkl, thread_mode="ours"),
        "3 threads": SMPL.load(smpl_pkl, threads=3),
        "padded": SMPL.load(smpl_pkl, chunk_vertices=700, j_regressor_extra=j_regressor_extra_path),
    }
    assert variants["padded"]._vpad > 6890
    for name, model in variants.items():
        for B in (1, 3, 12):
            for whole in (False, True):
                model.parallel_min_batch = 10**6 if whole else 8
                out = model.forward(betas[:B], aa[:B], transl[:B])
                assert out.vertices.shape == (B, 6890, 3) and out.vertices.flags.c_contiguous
                np.testing.assert_allclose(out.vertices, base[:B], atol=5e-6, rtol=0, err_msg=f"{name} B={B}")
    with pytest.raises(ValueError, match="thread_mode"):
        SMPL.load(smpl_pkl, thread_mode="fast")


def test_model_from_dict_and_attributes(smpl_pkl: Path, smpl_model: SMPL, smpl_arrays: dict) -> None:
    m = SMPL(load_smpl_data(smpl_pkl))
    assert m.faces.dtype == np.int32 and m.faces.shape == (13776, 3)
    assert np.array_equal(m.faces, smpl_arrays["f"].astype(np.int32))
    assert m.parents.dtype == np.int32 and m.parents.tolist() == list(SMPL_PARENTS)
    assert m.num_betas == 10 and m.j_regressor_extra is None
    betas, aa, _ = _random_inputs(2, seed=6)
    out = m.forward(betas, aa)
    assert out.joints49 is None and out.joints_extra is None
    np.testing.assert_array_equal(out.vertices, smpl_model.forward(betas, aa).vertices)


def test_other_extra_regressors(smpl_pkl: Path, smpl_model: SMPL) -> None:
    rng = np.random.default_rng(8)
    reg = rng.random((19, 6890))
    reg /= reg.sum(axis=1, keepdims=True)  # dense: the joints-only path then runs over every vertex
    m = SMPL.load(smpl_pkl, j_regressor_extra=reg)
    betas, aa, transl = _random_inputs(3, seed=9)
    out = m.forward(betas, aa, transl)
    assert out.joints49 is None and out.joints_extra.shape == (3, 19, 3)
    expect = np.einsum("kv,bvc->bkc", reg, out.vertices.astype(np.float64))
    np.testing.assert_allclose(out.joints_extra, expect, atol=1e-5)
    np.testing.assert_allclose(
        m.forward(betas, aa, transl, return_vertices=False).joints_extra, out.joints_extra, atol=1e-6
    )
    with pytest.raises(SMPLFileError, match=r"\[K, 6890\]"):
        SMPL.load(smpl_pkl, j_regressor_extra=np.ones((9, 100)))


def test_extra_regressor_files(tmp_path: Path, smpl_pkl: Path, smpl_model: SMPL) -> None:
    """.npy (SPIN), a pickled array (HMR2's SMPL_to_J19.pkl style); hostile or wrong files are refused."""
    reg = smpl_model.j_regressor_extra.astype(np.float64)
    pkl = tmp_path / "SMPL_to_J9.pkl"
    pkl.write_bytes(pickle.dumps(reg, protocol=2))
    npy = tmp_path / "J_regressor_extra_fortran.npy"
    np.save(npy, np.asfortranarray(reg))
    betas, aa, transl = _random_inputs(2, seed=12)
    expect = smpl_model.forward(betas, aa, transl).joints49
    for path in (pkl, npy):
        out = SMPL.load(smpl_pkl, j_regressor_extra=path).forward(betas, aa, transl)
        np.testing.assert_allclose(out.joints49, expect, atol=1e-6)
    marker = tmp_path / "pwned"
    evil = smpl_synth.write_forbidden_pickle(tmp_path / "J19.pkl", marker)
    with pytest.raises(SMPLFileError, match="forbidden global"):
        SMPL.load(smpl_pkl, j_regressor_extra=evil)
    assert not marker.exists()
    with pytest.raises(SMPLFileError, match="no such file"):
        SMPL.load(smpl_pkl, j_regressor_extra=tmp_path / "missing.npy")
    with pytest.raises(SMPLFileError, match=r"\.npz"):
        SMPL.load(
            smpl_pkl,
            j_regressor_extra=smpl_synth.write_synthetic_smpl(tmp_path, style="npz", arrays={"a": reg}),
        )


def test_forked_child_can_still_decode(smpl_model: SMPL) -> None:
    """The module's thread pool does not survive a fork; a forked child (multiprocessing workers) must not hang."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    betas, aa, transl = _random_inputs(16, seed=13)
    expect = smpl_model.forward(betas, aa, transl).vertices  # creates the pool in this process
    pid = os.fork()
    if pid == 0:  # child: exit code 0 only if the threaded path works
        code = 1
        try:
            got = smpl_model.forward(betas, aa, transl).vertices
            code = 0 if np.allclose(got, expect, atol=1e-6) else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("SMPL.forward hung in a forked child")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0


def _other_threads_cpu_ns(exclude: set[int]) -> int | None:
    """CPU time (ns) used so far by this process's threads other than ``exclude`` (Linux schedstat), or None."""
    total = 0
    try:
        for task in Path("/proc/self/task").iterdir():
            if int(task.name) in exclude:
                continue
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except FileNotFoundError:  # the thread ended meanwhile
                continue
    except OSError:
        return None
    return total


def test_decoder_never_wakes_openblas_threads(smpl_pkl: Path) -> None:
    """The root cause of the predict() stall: after the decoder, OpenBLAS's workers spun for ~0.1 s and took the
    cores from the next ONNX Runtime call. Now the decoder holds OpenBLAS at one thread (its own helpers do the
    splitting), so OpenBLAS's workers use no CPU at all; thread_mode="blas" (the old way) is the control."""
    if blas.blas_threads() is None or blas.blas_threads() < 2:
        pytest.skip("numpy's BLAS is not a multi-threaded OpenBLAS here")
    if _other_threads_cpu_ns(set()) is None or not Path(f"/proc/self/task/{threading.get_native_id()}/schedstat").exists():
        pytest.skip("no per-thread CPU accounting (/proc/self/task/*/schedstat)")
    ours, old = SMPL.load(smpl_pkl), SMPL.load(smpl_pkl, thread_mode="blas")
    assert ours.threads >= 1
    threads_before = blas.blas_threads()

    def busy_elsewhere(model: SMPL) -> int:
        for B in (1, 4):  # warm up: helper threads exist, allocations done
            betas, aa, transl = _random_inputs(B, seed=B)
            model.forward(betas, aa, transl)
        time.sleep(0.5)  # anything still spinning from before goes to sleep
        helpers = {t.native_id for t in blas.worker_pool(model.threads)._threads} if model.threads > 1 else set()
        exclude = {threading.get_native_id()} | {h for h in helpers if h is not None}
        before = _other_threads_cpu_ns(exclude)
        for _ in range(30):
            for B in (1, 4):
                betas, aa, transl = _random_inputs(B, seed=B)
                model.forward(betas, aa, transl)
        return _other_threads_cpu_ns(exclude) - before

    used_ours = busy_elsewhere(ours)
    used_old = busy_elsewhere(old)
    assert blas.blas_threads() == threads_before  # the count is restored after every call
    assert used_old > 2e6, f"control: OpenBLAS threads used only {used_old / 1e6:.2f} ms with thread_mode='blas'"
    assert used_ours < max(1e6, 0.05 * used_old), (
        f"OpenBLAS (or other) threads used {used_ours / 1e6:.2f} ms during the decoder calls "
        f"(control, thread_mode='blas': {used_old / 1e6:.2f} ms)"
    )


def test_single_threaded_blas_nests_across_threads() -> None:
    n0 = blas.blas_threads()
    if n0 is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS this module can find")
    seen: list[int | None] = []
    inside = threading.Barrier(2)

    def hold() -> None:
        with blas.single_threaded_blas():
            inside.wait()
            seen.append(blas.blas_threads())
            inside.wait()

    with blas.single_threaded_blas():
        t = threading.Thread(target=hold)
        t.start()
        inside.wait()
        with blas.single_threaded_blas():
            seen.append(blas.blas_threads())
        inside.wait()
        t.join()
        seen.append(blas.blas_threads())  # the other thread left; this one is still inside
    assert seen == [1, 1, 1]
    assert blas.blas_threads() == n0


def test_worker_pool_never_waits_for_a_busy_helper_and_reraises() -> None:
    pool = blas.WorkerPool(1)
    release = threading.Event()
    stuck = pool.start(lambda i, private: release.wait(10), 2)  # the helper claims one task and blocks on it
    time.sleep(0.05)
    done: list[int] = []
    pool.run(done.append, 6)  # the caller runs every task itself: the helper is busy
    assert sorted(done) == list(range(6))
    release.set()
    stuck.work()
    stuck.finish()

    def fail(i: int) -> None:
        if i == 3:
            raise ValueError("task 3")

    with pytest.raises(ValueError, match="task 3"):
        pool.run(fail, 8)
    pool.close()


def test_stealable_job_runs_a_late_helpers_task_itself_and_drops_its_commit() -> None:
    """A helper kept off the CPU must not stall the caller: after the grace period the caller runs the helper's
    task itself, and the helper's result, committed late, is dropped (never written after finish())."""
    pool = blas.WorkerPool(1)
    release = threading.Event()
    written: list[tuple[int, str]] = []

    def task(i: int, private: bool) -> Any:
        if private:
            release.wait(10)  # the helper is "descheduled"
            return lambda: written.append((i, "helper"))
        written.append((i, "caller"))
        return None

    job = pool.start(task, 3, stealable=True)
    time.sleep(0.05)  # the helper has claimed task 0
    t0 = time.perf_counter()
    job.work()
    job.finish(grace=0.01)
    assert time.perf_counter() - t0 < 5
    assert sorted(written) == [(0, "caller"), (1, "caller"), (2, "caller")]
    release.set()
    time.sleep(0.05)
    assert len(written) == 3  # the late commit was dropped
    pool.close()


def test_concurrent_decoders_share_the_pool(smpl_model: SMPL) -> None:
    """Two threads decoding at once (e.g. two video streams) get the same meshes as one at a time."""
    inputs = [_random_inputs(B, seed=20 + B) for B in (1, 4, 9)]
    expect = [smpl_model.forward(*x).vertices for x in inputs]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(5):
                for x, e in zip(inputs, expect, strict=True):
                    np.testing.assert_array_equal(smpl_model.forward(*x).vertices, e)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_empty_batch(smpl_model: SMPL) -> None:
    for pose in (np.zeros((0, 24, 3, 3)), np.zeros((0, 24, 3)), np.zeros((0, 72))):
        out = smpl_model.forward(np.zeros((0, 10)), pose, np.zeros((0, 3)))
        assert out.vertices.shape == (0, 6890, 3) and out.joints.shape == (0, 24, 3)
        assert out.joints45.shape == (0, 45, 3) and out.joints49.shape == (0, 49, 3)
        assert smpl_model.forward(None, pose, return_vertices=False).vertices is None


def test_bad_inputs_are_named(smpl_model: SMPL) -> None:
    betas, aa, transl = _random_inputs(2, seed=10)
    bad_pose = [np.zeros((2, 23, 3)), np.zeros((24, 3, 3)), np.zeros((2, 24, 3, 2)), np.zeros((2, 70)), None]
    for pose in bad_pose:
        with pytest.raises(InputError, match="pose"):
            smpl_model.forward(betas, pose)
    nan = aa.copy()
    nan[1, 3, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        smpl_model.forward(betas, nan)
    b = betas.copy()
    b[0, 0] = np.inf
    with pytest.raises(InputError, match="betas contains NaN"):
        smpl_model.forward(b, aa)
    with pytest.raises(InputError, match="transl contains NaN"):
        smpl_model.forward(betas, aa, np.full((2, 3), np.nan))
    with pytest.raises(InputError, match="batch"):
        smpl_model.forward(np.zeros((3, 10)), aa)
    with pytest.raises(InputError, match="transl"):
        smpl_model.forward(betas, aa, np.zeros((2, 2)))
    with pytest.raises(InputError, match="numeric"):
        smpl_model.forward(betas, np.full((2, 72), "x"))
    # a batch of one shape (or translation) is broadcast to the pose batch
    one = smpl_model.forward(betas[:1], aa, transl[:1])
    two = smpl_model.forward(np.repeat(betas[:1], 2, 0), aa, np.repeat(transl[:1], 2, 0))
    np.testing.assert_array_equal(one.vertices, two.vertices)


def test_runtime_smpl_files_never_import_heavy_packages() -> None:
    """smpl.py (and the modules it is split into) must not import torch/onnx/smplx/scipy anywhere; safe_pickle.py
    neither scipy nor chumpy."""
    heavy = {"torch", "onnx", "smplx", "scipy", "chumpy"}
    for name, banned in (
        ("smpl.py", heavy),
        ("smpl_io.py", heavy),
        ("smpl_core.py", heavy),
        ("blas.py", heavy | {"threadpoolctl"}),
        ("safe_pickle.py", {"torch", "smplx", "scipy", "chumpy"}),
    ):
        tree = ast.parse((SRC / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            assert not {m.split(".")[0] for m in mods} & banned, f"{name} imports {mods}"
