"""Evaluation-file reading: only the arrays val needs are read, after their headers are checked (#24)."""

from __future__ import annotations

import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from hpsedge.errors import InputError
from hpsedge.eval.data import load_eval_set, load_j_regressor

N = 3


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"imgname": np.array([f"a/{i}.png" for i in range(N)]), "center": rng.uniform(50, 100, (N, 2)),
            "scale": rng.uniform(0.5, 1.0, N), "pose": rng.normal(size=(N, 72)), "shape": rng.normal(size=(N, 10))}


def _member_header_only(zf: zipfile.ZipFile, name: str, shape: tuple[int, ...], dtype: str = "<f8") -> None:
    """A member whose .npy header declares ``shape`` but holds (almost) no data: what a hostile file can do."""
    buf = __import__("io").BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    zf.writestr(name + ".npy", buf.getvalue() + b"\0" * 64)


def _member_zeros(zf: zipfile.ZipFile, name: str, nbytes: int) -> None:
    """A compressed member of ``nbytes`` zero bytes (float64), streamed: a small file that inflates to a lot."""
    with zf.open(name + ".npy", "w", force_zip64=True) as fh:
        import io

        head = io.BytesIO()
        np.lib.format.write_array_header_1_0(head, {"descr": "<f8", "fortran_order": False, "shape": (nbytes // 8,)})
        fh.write(head.getvalue())
        block = b"\0" * (1 << 20)
        for _ in range(nbytes // len(block)):
            fh.write(block)


def test_unneeded_arrays_are_never_read(tmp_path: Path) -> None:
    """A 256 MB all-zero 'S' (a few hundred kB compressed) and a member declaring 8 TB: neither is loaded."""
    path = tmp_path / "eval.npz"
    np.savez(path, **_arrays())
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        _member_zeros(zf, "S", 256 << 20)
        _member_header_only(zf, "openpose", (1 << 40,))
    assert path.stat().st_size < 2 << 20  # the file itself is small
    tracemalloc.start()
    try:
        data = load_eval_set(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(data) == N and data.pose.shape == (N, 72)
    assert peak < 16 << 20, peak  # numpy's allocations are traced: nothing near the 256 MB member


def test_needed_arrays_with_absurd_or_inconsistent_shapes_are_refused_before_loading(tmp_path: Path) -> None:
    base = _arrays()
    for key, shape, needle in (("pose", (1 << 40, 72), "'pose' has shape"), ("center", (N, 3), "'center' has shape"),
                               ("imgname", (10_000_000,), "rows; at most")):
        path = tmp_path / f"{key}.npz"
        np.savez(path, **{k: v for k, v in base.items() if k != key})
        with zipfile.ZipFile(path, "a") as zf:
            _member_header_only(zf, key, shape, "<U8" if key == "imgname" else "<f8")
        with pytest.raises(InputError, match=needle):
            load_eval_set(path)
    # a needed array whose data ends early (its header is fine)
    path = tmp_path / "trunc.npz"
    np.savez(path, **{k: v for k, v in base.items() if k != "pose"})
    with zipfile.ZipFile(path, "a") as zf:
        _member_header_only(zf, "pose", (N, 72))
    with pytest.raises(InputError, match="'pose'"):
        load_eval_set(path)


def test_row_counts_must_agree(tmp_path: Path) -> None:
    """has_smpl (or gender) shorter than imgname: refused, never truncated to the rows it covers."""
    for key, value in (("has_smpl", np.ones(1)), ("gender", np.array(["m", "f"])), ("has_smpl", np.ones(N + 2))):
        path = tmp_path / f"{key}.npz"
        np.savez(path, **_arrays(), **{key: value})
        with pytest.raises(InputError, match=f"'{key}' has shape"):
            load_eval_set(path)
    path = tmp_path / "ok.npz"
    np.savez(path, **_arrays(), has_smpl=np.array([[1.0], [0.0], [1.0]]), gender=np.array(["m", "n", "f"]))
    data = load_eval_set(path, max_samples=2)
    assert data.has_smpl.tolist() == [True, False] and data.without_smpl == 1 and data.gender == ["m", "n"]
    assert data.total_rows == N and data.rows.tolist() == [0, 1]


def test_objects_and_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "obj.npz"
    a = _arrays()
    a["imgname"] = a["imgname"].astype(object)
    np.savez(path, **a)
    with pytest.raises(InputError, match="Python objects"):
        load_eval_set(path)
    a = _arrays()
    a["gender"] = np.array(["m", "x", "f"])
    np.savez(path, **a)
    with pytest.raises(InputError, match="'gender' holds"):
        load_eval_set(path)
    (tmp_path / "not.npz").write_bytes(b"hello")
    with pytest.raises(InputError, match=r"not a readable \.npz"):
        load_eval_set(tmp_path / "not.npz")


def test_j19_regressor_from_a_pickle_or_npy(tmp_path: Path) -> None:
    import pickle

    reg = np.random.default_rng(1).dirichlet(np.ones(6890), size=19)
    (tmp_path / "j19.pkl").write_bytes(pickle.dumps(reg, protocol=2))
    np.save(tmp_path / "j19.npy", reg)
    assert np.array_equal(load_j_regressor(tmp_path / "j19.pkl", 19), reg)
    assert np.array_equal(load_j_regressor(tmp_path / "j19.npy", 19), reg)
    with pytest.raises(InputError, match=r"expected the Human3\.6M") as err:
        load_j_regressor(tmp_path / "j19.npy", 17)
    assert "tokenhmr-3dpw" in str(err.value.hint)
    (tmp_path / "evil.pkl").write_bytes(b"cos\nsystem\n(S'echo hi'\ntR.")
    with pytest.raises(InputError):
        load_j_regressor(tmp_path / "evil.pkl", 19)
