"""Synthetic SMPL-style model files for tests and benchmarks (no original SMPL file involved).

The generated model is random but structurally valid: a closed genus-0 mesh (convex hull, 6890 vertices,
13776 faces), the real SMPL kinematic tree, LBS weights with at most 4 non-zeros per row summing to 1, a sparse
joint regressor whose rows sum to 1, shape and pose blend shapes. It is written in one of three styles:

* ``"official"``: a Python-2-style pickle like the files from the SMPL website. ``shapedirs`` is a
  ``chumpy.ch.Ch`` object and ``J_regressor`` a ``scipy.sparse.csc.csc_matrix``, numpy globals are spelled
  ``numpy.core.multiarray``, strings and array payloads are ``BINSTRING`` (Python 2 ``str``), protocol 2. Neither
  chumpy nor scipy is needed to write it: stand-in classes are named after the originals at pickle time.
* ``"clean"``: a chumpy-free pickle of plain ndarrays with a real ``scipy.sparse.csc_matrix`` (what smplx reads).
* ``"npz"``: an uncompressed ``.npz`` with a dense ``J_regressor``.

This module is imported by ``tests/conftest.py`` and by ``benchmarks/smpl_decoder.py``; it does not import pytest.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

NUM_VERTS = 6890
NUM_FACES = 13776
NUM_JOINTS = 24
SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]

# A made-up T-pose skeleton (metres, y up), in SMPL joint order.
_TPOSE = np.array(
    [
        [0.00, 0.00, 0.00],  # 0 pelvis
        [0.06, -0.09, 0.00],  # 1 left hip
        [-0.06, -0.09, 0.00],  # 2 right hip
        [0.00, 0.10, -0.02],  # 3 spine1
        [0.10, -0.47, 0.00],  # 4 left knee
        [-0.10, -0.47, 0.00],  # 5 right knee
        [0.00, 0.23, 0.00],  # 6 spine2
        [0.08, -0.87, -0.03],  # 7 left ankle
        [-0.08, -0.87, -0.03],  # 8 right ankle
        [0.00, 0.28, 0.02],  # 9 spine3
        [0.10, -0.92, 0.08],  # 10 left foot
        [-0.10, -0.92, 0.08],  # 11 right foot
        [0.00, 0.50, 0.00],  # 12 neck
        [0.07, 0.42, 0.00],  # 13 left collar
        [-0.07, 0.42, 0.00],  # 14 right collar
        [0.00, 0.62, 0.03],  # 15 head
        [0.18, 0.44, 0.00],  # 16 left shoulder
        [-0.18, 0.44, 0.00],  # 17 right shoulder
        [0.44, 0.44, -0.02],  # 18 left elbow
        [-0.44, 0.44, -0.02],  # 19 right elbow
        [0.70, 0.44, 0.00],  # 20 left wrist
        [-0.70, 0.44, 0.00],  # 21 right wrist
        [0.78, 0.44, 0.00],  # 22 left hand
        [-0.78, 0.44, 0.00],  # 23 right hand
    ]
)


# --------------------------------------------------------------------------------------------- model arrays
def make_smpl_arrays(
    num_betas: int = 10, seed: int = 0, num_verts: int = NUM_VERTS, num_joints: int = NUM_JOINTS
) -> dict[str, Any]:
    """The arrays of a synthetic SMPL-like model, float64 like the official file (sparse regressors as dense)."""
    from scipy.spatial import ConvexHull, cKDTree

    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(num_verts, 3))
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    hull = ConvexHull(pts)
    faces = hull.simplices.astype(np.int64)
    # orient outward: the sphere's centre is the origin, so the normal must point away from it
    a, b, c = pts[faces[:, 0]], pts[faces[:, 1]], pts[faces[:, 2]]
    inward = np.einsum("ij,ij->i", np.cross(b - a, c - a), a + b + c) < 0
    faces[inward] = faces[inward][:, ::-1]
    assert faces.shape == (2 * num_verts - 4, 3)

    # an ellipsoid 1.7 x 1.8 x 0.3 m around a T-pose skeleton
    centre = np.array([0.0, -0.15, 0.0])
    v_template = pts * np.array([0.85, 0.9, 0.15]) + centre
    parents = (SMPL_PARENTS + list(range(len(SMPL_PARENTS) - 1, num_joints - 1)))[:num_joints]
    joints = (
        _TPOSE
        if num_joints == NUM_JOINTS
        else np.concatenate([_TPOSE, rng.uniform(-0.6, 0.6, size=(num_joints - NUM_JOINTS, 3)) * [1, 1, 0.1]])
    )

    # LBS weights: a Gaussian of the distance to the 4 nearest joints, rows summing to 1
    d = np.linalg.norm(v_template[:, None, :] - joints[None, :, :], axis=2)
    near = np.argsort(d, axis=1)[:, :4]
    dn = np.take_along_axis(d, near, axis=1)
    w = np.exp(-((dn / 0.15) ** 2)) + 1e-3
    w /= w.sum(axis=1, keepdims=True)
    weights = np.zeros((num_verts, num_joints))
    np.put_along_axis(weights, near, w, axis=1)

    # joint regressor: a Dirichlet combination of the 40 vertices nearest each joint
    tree = cKDTree(v_template)
    _, nn = tree.query(joints, k=40)
    j_regressor = np.zeros((num_joints, num_verts))
    for j in range(num_joints):
        j_regressor[j, nn[j]] = rng.dirichlet(np.ones(40))

    # shape blend shapes: smooth linear fields plus noise (a few cm per unit beta)
    lin = rng.normal(scale=0.03, size=(num_betas, 3, 3))
    off = rng.normal(scale=0.01, size=(num_betas, 3))
    shapedirs = np.einsum("vk,lik->vil", v_template, lin) + off.T[None]
    shapedirs += rng.normal(scale=0.002, size=shapedirs.shape)
    posedirs = rng.normal(scale=0.004, size=(num_verts, 3, 9 * (num_joints - 1)))

    kintree = np.zeros((2, num_joints), dtype=np.int64)
    kintree[0] = parents
    kintree[0, 0] = 4294967295
    kintree[1] = np.arange(num_joints)

    return {
        "v_template": v_template,
        "shapedirs": shapedirs,
        "posedirs": posedirs,
        "J_regressor": j_regressor,
        "J_regressor_prior": j_regressor.copy(),
        "weights": weights,
        "weights_prior": weights.copy(),
        "kintree_table": kintree,
        "f": faces.astype(np.uint32),
        "J": j_regressor @ v_template,
        "vert_sym_idxs": rng.permutation(num_verts).astype(np.int64),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


# ----------------------------------------------------------------------------- stand-ins named as originals
class _Named:
    """Base for stand-ins: pickled by NEWOBJ (protocol 2) or ``copy_reg._reconstructor`` (protocols 0/1)."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class FakeCh(_Named):
    """Pickles as ``chumpy.ch.Ch`` with the array in ``x`` (as ``Ch.__getstate__`` does)."""


class FakeSelect(_Named):
    """Pickles as ``chumpy.reordering.Select``: the array is ``a.ravel()[idxs].reshape(preferred_shape)``."""


class FakeCsc(_Named):
    """Pickles as ``scipy.sparse.csc.csc_matrix`` (the old module path)."""


_RENAMES: dict[Any, tuple[str, str]] = {
    FakeCh: ("chumpy.ch", "Ch"),
    FakeSelect: ("chumpy.reordering", "Select"),
    FakeCsc: ("scipy.sparse.csc", "csc_matrix"),
}


def fake_ch(x: np.ndarray) -> FakeCh:
    """A chumpy ``Ch`` stand-in holding ``x`` plus the bookkeeping keys a real one pickles."""
    return FakeCh({"x": np.asarray(x), "_dirty_vars": set(), "_itr": None, "_parents": {}, "_cache": {}})


def fake_select(a: Any, idxs: np.ndarray, preferred_shape: tuple[int, ...]) -> FakeSelect:
    return FakeSelect(
        {"a": a, "idxs": np.asarray(idxs), "preferred_shape": tuple(preferred_shape), "_dirty_vars": set()}
    )


def fake_csc(dense: np.ndarray) -> FakeCsc:
    """A ``csc_matrix`` stand-in (column-compressed) built without scipy."""
    dense = np.asarray(dense)
    rows, cols = np.nonzero(dense.T)  # column-major order: (col, row) pairs sorted by column
    cols, rows = rows, cols
    indptr = np.zeros(dense.shape[1] + 1, dtype=np.int32)
    np.add.at(indptr, cols + 1, 1)
    indptr = np.cumsum(indptr).astype(np.int32)
    return FakeCsc(
        {
            "_shape": tuple(int(s) for s in dense.shape),
            "maxprint": 50,
            "format": "csc",
            "indices": rows.astype(np.int32),
            "indptr": indptr,
            "data": dense[rows, cols],
        }
    )


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler, so single opcodes can be overridden
    """Protocol 0-2 pickler writing what Python 2 wrote: ``str`` as ``(SHORT_)BINSTRING``, ``bytes`` likewise,
    numpy globals as ``numpy.core.multiarray``, and the stand-ins under their original module paths."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_global(self, obj: Any, name: str | None = None) -> None:
        target = _RENAMES.get(obj)
        if target is None:
            module = getattr(obj, "__module__", None) or ""
            qualname = name or getattr(obj, "__qualname__", obj.__name__)
            if module.startswith("numpy._core"):
                target = ("numpy.core" + module[len("numpy._core") :], qualname)
        if target is None:
            super().save_global(obj, name)
            return
        module, qualname = target
        self.write(pickle.GLOBAL + module.encode("ascii") + b"\n" + qualname.encode("ascii") + b"\n")
        self.memoize(obj)

    def _save_py2_str(self, data: bytes, obj: Any) -> None:
        if self.proto == 0:
            self.write(pickle.STRING + repr(data)[1:].encode("ascii") + b"\n")  # b'..' -> '..'
        elif len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    def save_str(self, obj: str) -> None:
        if obj.isascii():
            self._save_py2_str(obj.encode("ascii"), obj)
        else:
            super().save_str(obj)

    def save_bytes(self, obj: bytes) -> None:
        self._save_py2_str(bytes(obj), obj)

    dispatch[str] = save_str
    dispatch[bytes] = save_bytes


def dumps_py2(obj: Any, protocol: int = 2) -> bytes:
    """Pickle ``obj`` the way a Python 2 program with numpy 1.x, chumpy and old scipy would have."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------- writers
def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def official_payload(arrays: dict[str, Any]) -> dict[str, Any]:
    """The dict of an official-style file: shapedirs as chumpy ``Ch``, regressors as old-scipy csc."""
    out = dict(arrays)
    out["shapedirs"] = fake_ch(arrays["shapedirs"])
    out["J_regressor"] = fake_csc(arrays["J_regressor"])
    out["J_regressor_prior"] = fake_csc(arrays["J_regressor_prior"])
    return out


def write_synthetic_smpl(
    folder: str | os.PathLike,
    num_betas: int = 10,
    style: str = "official",
    seed: int = 0,
    name: str | None = None,
    arrays: dict[str, Any] | None = None,
) -> Path:
    """Write a synthetic SMPL model into ``folder``; returns the file path.

    ``style``: ``"official"`` (chumpy/old-scipy Python-2 pickle, ``SMPL_NEUTRAL.pkl``), ``"clean"`` (plain
    ndarrays plus a real scipy csc matrix, ``SMPL_NEUTRAL_clean.pkl``) or ``"npz"`` (``SMPL_NEUTRAL.npz``).
    Pass ``arrays`` (from :func:`make_smpl_arrays`) to write the same model in several styles.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if arrays is None:
        arrays = make_smpl_arrays(num_betas=num_betas, seed=seed)
    if style == "official":
        path = folder / (name or "SMPL_NEUTRAL.pkl")
        _atomic_write(path, dumps_py2(official_payload(arrays), protocol=2))
    elif style == "clean":
        import scipy.sparse

        path = folder / (name or "SMPL_NEUTRAL_clean.pkl")
        payload = dict(arrays)
        payload["J_regressor"] = scipy.sparse.csc_matrix(arrays["J_regressor"])
        payload["J_regressor_prior"] = scipy.sparse.csc_matrix(arrays["J_regressor_prior"])
        _atomic_write(path, pickle.dumps(payload, protocol=2))
    elif style == "npz":
        path = folder / (name or "SMPL_NEUTRAL.npz")
        with open(path, "wb") as fh:
            np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})
    else:
        raise ValueError(f"unknown style {style!r}")
    return path


def write_j_regressor_extra(path: str | os.PathLike, seed: int = 0, num_verts: int = NUM_VERTS) -> Path:
    """A SPIN-style ``J_regressor_extra.npy``: float64 [9, 6890], each row a sparse convex combination (sum 1)."""
    rng = np.random.default_rng(seed + 1000)
    reg = np.zeros((9, num_verts))
    for j in range(9):
        idx = rng.choice(num_verts, size=int(rng.integers(8, 40)), replace=False)
        reg[j, idx] = rng.dirichlet(np.ones(len(idx)))
    path = Path(path)
    np.save(path, reg)
    return path


def write_wrong_kind(folder: str | os.PathLike, kind: str, seed: int = 0) -> Path:
    """A structurally plausible but wrong body model: ``"smplx"`` (10475 verts, 55 joints, npz like the
    official SMPL-X), ``"smplh"`` (6890 verts, 52 joints, clean pickle) or ``"mano"`` (778 verts, 16 joints,
    official-style pickle with chumpy objects)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    nv, nj = {"smplx": (10475, 55), "smplh": (6890, 52), "mano": (778, 16)}[kind]
    nf = 2 * nv - 4
    arrays: dict[str, Any] = {
        "v_template": rng.normal(size=(nv, 3)) * 0.3,
        "shapedirs": rng.normal(scale=0.01, size=(nv, 3, 10)),
        "posedirs": rng.normal(scale=0.004, size=(nv, 3, 9 * (nj - 1))),
        "J_regressor": np.full((nj, nv), 1.0 / nv),
        "weights": np.full((nv, nj), 1.0 / nj),
        "kintree_table": np.stack([np.r_[4294967295, np.arange(nj - 1)], np.arange(nj)]).astype(np.int64),
        "f": rng.integers(0, nv, size=(nf, 3)).astype(np.uint32),
    }
    if kind == "smplx":
        arrays["lmk_faces_idx"] = np.arange(51, dtype=np.int64)
        path = folder / "SMPLX_NEUTRAL.npz"
        np.savez(path, **arrays)
    elif kind == "smplh":
        arrays["hands_componentsl"] = rng.normal(size=(45, 45))
        path = folder / "SMPLH_NEUTRAL.pkl"
        _atomic_write(path, pickle.dumps(arrays, protocol=2))
    else:
        arrays["hands_components"] = rng.normal(size=(45, 45))
        arrays["hands_mean"] = np.zeros(45)
        arrays["shapedirs"] = fake_ch(arrays["shapedirs"])
        arrays["J_regressor"] = fake_csc(arrays["J_regressor"])
        # MANO stores its template as a chumpy Select over a bigger array
        arrays["v_template"] = fake_select(fake_ch(arrays["v_template"].ravel()), np.arange(nv * 3), (nv, 3))
        path = folder / "MANO_RIGHT.pkl"
        _atomic_write(path, dumps_py2(arrays, protocol=2))
    return path


class _Evil:
    """Pickles as ``os.system(command)``: loading it with a plain ``pickle.load`` runs the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


def write_forbidden_pickle(
    path: str | os.PathLike, marker: str | os.PathLike, via: str = "os.system"
) -> Path:
    """A pickle that would create ``marker`` when loaded unsafely. ``via``: ``"os.system"`` (shell ``touch``)
    or ``"builtins.eval"`` (``open(marker, 'w')``). The payload sits inside an otherwise SMPL-looking dict."""
    marker = os.fspath(marker)
    if via == "os.system":
        evil: Any = _Evil(f"touch '{marker}'")
    elif via == "builtins.eval":

        class _EvalEvil:
            def __reduce__(self) -> tuple[Any, ...]:
                return (eval, (f"open({marker!r}, 'w').close()",))

        evil = _EvalEvil()
    else:
        raise ValueError(via)
    payload = {"v_template": np.zeros((4, 3)), "bs_style": evil, "f": np.zeros((4, 3), dtype=np.uint32)}
    path = Path(path)
    _atomic_write(path, pickle.dumps(payload, protocol=2))
    return path


def truncate_copy(src: str | os.PathLike, dst: str | os.PathLike, fraction: float = 0.5) -> Path:
    """Copy the first ``fraction`` of ``src`` to ``dst`` (a truncated download)."""
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst
