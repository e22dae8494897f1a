"""SMPL body model in numpy: safe file loading, conversion to ``.npz`` and a fast forward pass.

Files. :func:`load_smpl_data` reads an official ``SMPL_*.pkl`` / ``basicModel_*.pkl`` (a Python-2 pickle with
chumpy objects and a scipy sparse regressor, read by :mod:`hpsedge.runtime.safe_pickle` without chumpy, scipy or
any code execution), a chumpy-free "clean" pickle, or an ``.npz`` (``allow_pickle=False``), and checks that it is
SMPL (6890 vertices, 24 joints, 207 pose features) rather than SMPL-X, SMPL+H, MANO or FLAME.
:func:`convert_to_npz` writes the clean float32 ``.npz`` the runtime prefers; :func:`describe` summarises a file
(``hpsedge smpl check``).

Model. :class:`SMPL` precomputes everything at load, in float32::

    basis  [K, C·3·Vc]   K = 1 + num_betas + 207 rows: [template − posedirs·vec(I); shapedirs; posedirs],
                          columns grouped per vertex chunk c as (chunk, xyz, vertex): one GEMM gives the posed
                          rest mesh for all bodies, coeff = [1, betas, vec(R_1..R_23)] (the −I of the
                          pose feature R − I is folded into the template)
    skin   [25, C·Vc]     LBS weights transposed, plus a row of ones that carries ``transl`` exactly
    jbasis [1+num_betas, 72]  rest joints = J_regressor·(template + shapedirs·betas) without touching vertices

``forward`` is then: rest joints (tiny GEMM) → forward kinematics by pointer doubling over the kinematic tree
(4 batched 4×4 matmuls for SMPL's depth of 9) → the 3×4 skinning affines A [12·B, 25] (rows: affine column k,
row i, body b) → per vertex range: ``X = coeff @ basis`` [B, 3, V'] and ``T = A @ skin`` [4, 3, B, V'] and
v = T_0·X_0 + T_1·X_1 + T_2·X_2 + T_3 as five elementwise operations over contiguous arrays, the last one
writing straight into the [B, 6890, 3] output. Large batches go one cache-sized chunk (689 vertices) at a time,
split over a small thread pool with OpenBLAS single-threaded (numpy releases the GIL); ``return_vertices=False``
runs the same pipeline on only the vertices that the 21 vertex joints and the extra regressor need.

Agrees with smplx 0.1.28 (float32) to about 1e-6 m. Only numpy is imported.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import zipfile
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.runtime.errors import HpsedgeError, InputError, SMPLFileError

__all__ = [
    "JOINT_MAP_49",
    "NUM_JOINTS",
    "NUM_POSE_FEATURES",
    "NUM_VERTS",
    "SMPL",
    "SMPL_PARENTS",
    "VERTEX_JOINT_IDS",
    "SMPLOutput",
    "convert_to_npz",
    "describe",
    "load_smpl_data",
]

NUM_VERTS = 6890
NUM_JOINTS = 24
NUM_POSE_FEATURES = 9 * (NUM_JOINTS - 1)  # 207
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

#: The 21 vertex joints smplx appends to the 24 skeleton joints (nose, eyes, ears, feet, finger tips), in order.
VERTEX_JOINT_IDS = (
    332, 6260, 2800, 4071, 583,  # nose, right eye, left eye, right ear, left ear
    3216, 3226, 3387, 6617, 6624, 6787,  # left big toe, small toe, heel; right big toe, small toe, heel
    2746, 2319, 2445, 2556, 2673,  # left thumb, index, middle, ring, pinky tips
    6191, 5782, 5905, 6016, 6133,  # right thumb, index, middle, ring, pinky tips
)  # fmt: skip

#: SPIN / POCO 49-joint set (25 OpenPose + 24 ground-truth joints) over the 54 = 45 + 9 extra-regressor joints.
JOINT_MAP_49 = (
    24, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34,
    8, 5, 45, 46, 4, 7, 21, 19, 17, 16, 18, 20, 47, 48, 49, 50, 51, 52, 53, 24, 26, 25, 28, 27,
)  # fmt: skip

_ROOT_SENTINELS = (-1, 4294967295, 2**63 - 1)
_REQUIRED = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "f")

# Other body models, recognised so that a wrong file gets a precise message: (vertices, joints) -> name.
_KINDS_BY_VERTS = {10475: "SMPL-X", 778: "MANO", 5023: "FLAME", 3889: "SMAL"}
_KINDS_BY_JOINTS_6890 = {24: "SMPL", 52: "SMPL+H", 22: "SMPL+H (body only)"}


# =============================================================================================== file IO
def _sniff(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
    except FileNotFoundError:
        raise SMPLFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SMPLFileError(
            f"{path} is a folder; give the model file itself",
            hint="e.g. .../SMPL_NEUTRAL.pkl or SMPL_NEUTRAL.npz",
        ) from None
    except OSError as exc:
        raise SMPLFileError(f"{path}: cannot open ({exc.strerror or exc})") from None
    if not head:
        raise SMPLFileError(f"{path}: the file is empty")
    if head.startswith(b"PK"):
        return "npz"
    if head.startswith(b"\x93NUMPY"):
        raise SMPLFileError(
            f"{path}: a single .npy array, not a body model", hint="give the SMPL .pkl or .npz"
        )
    return "pkl"


def _read_npz(path: Path) -> dict[str, Any]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise SMPLFileError(
                f"{path}: the .npz holds pickled objects, which are not loaded",
                hint="re-create it with `hpsedge smpl convert`",
            ) from None
        raise SMPLFileError(
            f"{path}: corrupt .npz ({exc})", hint="download or convert the file again"
        ) from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as exc:
        raise SMPLFileError(
            f"{path}: truncated or corrupt .npz ({type(exc).__name__}: {exc})",
            hint="download or convert the file again",
        ) from None


def _read_raw(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The file's top-level dict (stand-ins converted to ndarrays) and facts about its encoding."""
    from hpsedge.runtime import safe_pickle

    fmt = _sniff(path)
    info: dict[str, Any] = {"format": fmt, "chumpy_keys": [], "sparse_keys": []}
    if fmt == "npz":
        return _read_npz(path), info
    obj = safe_pickle.restricted_load(
        path,
        safe_pickle.SMPL_GLOBALS,
        resolver=safe_pickle.smpl_resolver,
        error=SMPLFileError,
        encoding="latin1",
    )
    if not isinstance(obj, Mapping):
        raise SMPLFileError(
            f"{path}: not a body-model file (the pickle holds a {type(obj).__name__}, not a dict)"
        )
    raw: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(value, safe_pickle.ChumpyStub):
            info["chumpy_keys"].append(str(key))
        elif isinstance(value, safe_pickle.SparseStub):
            info["sparse_keys"].append(str(key))
        try:
            raw[str(key)] = safe_pickle.to_numpy(value)
        except HpsedgeError:
            raise
        except Exception as exc:
            raise SMPLFileError(f"{path}: corrupt value for {key!r} ({type(exc).__name__}: {exc})") from None
    return raw, info


def _shape(raw: Mapping[str, Any], key: str) -> tuple[int, ...] | None:
    value = raw.get(key)
    if value is None:
        return None
    return tuple(np.shape(value))


def _kind(raw: Mapping[str, Any]) -> tuple[str, int | None, int | None]:
    """(kind, vertices, joints) guessed from the arrays: "SMPL", "SMPL+H", "SMPL-X", "MANO", "FLAME" or "unknown"."""
    vt = _shape(raw, "v_template")
    nv = vt[0] if vt and len(vt) == 2 else None
    nj = None
    for key, axis in (("J_regressor", 0), ("weights", 1), ("kintree_table", 1)):
        s = _shape(raw, key)
        if s is not None and len(s) == 2:
            nj = s[axis]
            break
    if nv is None:
        if "hands_components" in raw or "hands_componentsl" in raw:
            return "MANO", nv, nj
        return "unknown", nv, nj
    if nv in _KINDS_BY_VERTS:
        return _KINDS_BY_VERTS[nv], nv, nj
    if nv == NUM_VERTS:
        if nj in _KINDS_BY_JOINTS_6890:
            return _KINDS_BY_JOINTS_6890[nj], nv, nj
        if "hands_componentsl" in raw or "hands_componentsr" in raw:
            return "SMPL+H", nv, nj
    return "unknown", nv, nj


def _wrong_kind_message(path: Path, kind: str, nv: int | None, nj: int | None) -> SMPLFileError:
    if kind == "unknown":
        return SMPLFileError(
            f"{path}: not an SMPL model (found {nv} vertices and {nj} joints; SMPL has {NUM_VERTS} and {NUM_JOINTS})"
        )
    return SMPLFileError(
        f"{path} looks like an {kind} model ({nv} vertices, {nj} joints), not SMPL "
        f"({NUM_VERTS} vertices, {NUM_JOINTS} joints)",
        hint="use the SMPL body model (SMPL_NEUTRAL/MALE/FEMALE from smpl.is.tue.mpg.de)",
    )


def _as_float_array(path: Path, raw: Mapping[str, Any], key: str) -> np.ndarray:
    arr = np.asarray(raw[key])
    if arr.dtype.kind not in "fiu":
        raise SMPLFileError(f"{path}: {key!r} is not numeric (dtype {arr.dtype})")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise SMPLFileError(f"{path}: {key!r} contains NaN or infinite values (corrupt file)")
    return arr


def _parents_from(path: Path, raw: Mapping[str, Any]) -> np.ndarray:
    if "kintree_table" in raw:
        kt = np.asarray(raw["kintree_table"])
        if kt.ndim != 2 or kt.shape != (2, NUM_JOINTS) or kt.dtype.kind not in "iuf":
            raise SMPLFileError(f"{path}: kintree_table has shape {kt.shape}, expected (2, {NUM_JOINTS})")
        par = kt[0]
    elif "parents" in raw:
        par = np.asarray(raw["parents"])
        if par.shape != (NUM_JOINTS,) or par.dtype.kind not in "iuf":
            raise SMPLFileError(f"{path}: parents has shape {par.shape}, expected ({NUM_JOINTS},)")
    else:
        raise SMPLFileError(f"{path}: missing the kinematic tree ('kintree_table')")
    out = np.empty(NUM_JOINTS, dtype=np.int32)
    for i, p in enumerate(par.tolist()):
        p = int(p)
        if i == 0:
            if p not in _ROOT_SENTINELS and p != 0:
                raise SMPLFileError(
                    f"{path}: the root joint has parent {p}; expected none (4294967295 or -1)"
                )
            out[0] = -1
        elif not 0 <= p < NUM_JOINTS or p == i:
            raise SMPLFileError(f"{path}: joint {i} has invalid parent {p}")
        else:
            out[i] = p
    for i in range(1, NUM_JOINTS):  # every chain must reach the root without a cycle
        j, steps = i, 0
        while j != 0:
            j = int(out[j])
            steps += 1
            if steps > NUM_JOINTS:
                raise SMPLFileError(f"{path}: the kinematic tree has a cycle through joint {i}")
    return out


def _validate(path: Path, raw: Mapping[str, Any], num_betas: int | None) -> dict[str, np.ndarray]:
    kind, nv, nj = _kind(raw)
    if kind != "SMPL":
        if kind == "unknown" and "v_template" not in raw:
            missing = [k for k in _REQUIRED if k not in raw]
            raise SMPLFileError(
                f"{path}: not a body-model file (missing {', '.join(missing)})",
                hint="give the SMPL_*.pkl from smpl.is.tue.mpg.de or an .npz made by `hpsedge smpl convert`",
            )
        raise _wrong_kind_message(path, kind, nv, nj)
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise SMPLFileError(
            f"{path}: missing {', '.join(repr(k) for k in missing)} (truncated or not an SMPL file)"
        )
    V, J = NUM_VERTS, NUM_JOINTS
    v_template = _as_float_array(path, raw, "v_template")
    shapedirs = _as_float_array(path, raw, "shapedirs")
    posedirs = _as_float_array(path, raw, "posedirs")
    j_regressor = _as_float_array(path, raw, "J_regressor")
    weights = _as_float_array(path, raw, "weights")
    if v_template.shape != (V, 3):
        raise SMPLFileError(f"{path}: v_template has shape {v_template.shape}, expected ({V}, 3)")
    if shapedirs.ndim == 2 and shapedirs.shape[0] == 3 * V:
        shapedirs = shapedirs.reshape(V, 3, -1)
    if shapedirs.ndim != 3 or shapedirs.shape[:2] != (V, 3) or shapedirs.shape[2] < 1:
        raise SMPLFileError(f"{path}: shapedirs has shape {shapedirs.shape}, expected ({V}, 3, num_betas)")
    if posedirs.shape == (3 * V, NUM_POSE_FEATURES):
        posedirs = posedirs.reshape(V, 3, NUM_POSE_FEATURES)
    if posedirs.shape != (V, 3, NUM_POSE_FEATURES):
        raise SMPLFileError(
            f"{path}: posedirs has shape {posedirs.shape}, expected ({V}, 3, {NUM_POSE_FEATURES})"
        )
    if j_regressor.shape != (J, V):
        raise SMPLFileError(f"{path}: J_regressor has shape {j_regressor.shape}, expected ({J}, {V})")
    if weights.shape != (V, J):
        raise SMPLFileError(f"{path}: weights has shape {weights.shape}, expected ({V}, {J})")
    faces = np.asarray(raw["f"])
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype.kind not in "iu":
        raise SMPLFileError(
            f"{path}: faces 'f' have shape {faces.shape} and dtype {faces.dtype}, expected (F, 3) integers"
        )
    faces64 = faces.astype(np.int64)
    if faces64.size and (faces64.min() < 0 or faces64.max() >= V):
        raise SMPLFileError(f"{path}: faces index vertices outside 0..{V - 1} (corrupt file)")
    parents = _parents_from(path, raw)

    have = shapedirs.shape[2]
    if num_betas is not None:
        if num_betas < 1:
            raise SMPLFileError(f"num_betas must be at least 1, got {num_betas}")
        if num_betas > have:
            raise SMPLFileError(
                f"{path} has {have} shape components; cannot use num_betas={num_betas}",
                hint=f"use num_betas <= {have} (the SMPL 1.1 files have 300)",
            )
        shapedirs = shapedirs[:, :, :num_betas]
    return {
        "v_template": v_template,
        "shapedirs": shapedirs,
        "posedirs": posedirs,
        "J_regressor": j_regressor,
        "weights": weights,
        "faces": faces64.astype(np.int32),
        "parents": parents,
    }


def load_smpl_data(path: str | os.PathLike[str], num_betas: int | None = None) -> dict[str, np.ndarray]:
    """Read and validate an SMPL model file (official/clean ``.pkl`` or ``.npz``).

    Returns plain arrays in the file's float precision: ``v_template`` [6890,3], ``shapedirs`` [6890,3,NB]
    (all the file has, or the first ``num_betas``), ``posedirs`` [6890,3,207], ``J_regressor`` [24,6890]
    (dense), ``weights`` [6890,24], ``faces`` int32 [13776,3] and ``parents`` int32 [24] (root −1).

    Raises :class:`SMPLFileError` for a missing, truncated or corrupt file, a pickle naming any global
    other than numpy arrays / chumpy / scipy sparse (nothing is executed), or another body model
    (SMPL-X, SMPL+H, MANO, FLAME), saying which it looks like.
    """
    p = Path(path)
    raw, _ = _read_raw(p)
    return _validate(p, raw, num_betas)


def _gender_from_name(name: str) -> str | None:
    n = name.lower()
    if "neutral" in n or "_neu" in n:
        return "neutral"
    if "female" in n or "_f_" in n or n.startswith("f_"):
        return "female"
    if "male" in n or "_m_" in n or n.startswith("m_"):
        return "male"
    return None


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What an SMPL-family file holds, for ``hpsedge smpl check``.

    Keys: ``path``, ``format`` ("npz", "pkl (official: chumpy objects)", "pkl (chumpy-free, scipy sparse
    regressor)" or "pkl (plain arrays)"), ``chumpy_keys`` / ``sparse_keys`` (which keys held such objects), ``kind``
    ("SMPL", "SMPL+H", "SMPL-X", "MANO", "FLAME" or "unknown"), ``usable`` (bool: hpsedge can load it),
    ``problem`` (why not, or None), ``vertices``, ``faces``, ``joints``, ``betas``, ``pose_features``,
    ``gender`` (from the file name, or None), ``dtypes`` ({key: dtype}), ``size_bytes``, ``keys``.
    Raises :class:`SMPLFileError` only when the file cannot be read at all (missing, truncated, forbidden).
    """
    p = Path(path)
    raw, info = _read_raw(p)
    kind, nv, nj = _kind(raw)
    problem = None
    try:
        _validate(p, raw, None)
    except SMPLFileError as exc:
        problem = exc.message
    fmt = info["format"]
    if fmt == "pkl":
        if info["chumpy_keys"]:
            fmt = "pkl (official: chumpy objects)"
        elif info["sparse_keys"]:
            fmt = "pkl (chumpy-free, scipy sparse regressor)"
        else:
            fmt = "pkl (plain arrays)"
    dtypes = {}
    for key in sorted(raw):
        value = raw[key]
        if isinstance(value, np.ndarray):
            dtypes[key] = f"{value.dtype} {list(value.shape)}"
        elif value is not None:
            dtypes[key] = type(value).__name__
    sd, pd_, f = _shape(raw, "shapedirs"), _shape(raw, "posedirs"), _shape(raw, "f")
    return {
        "path": str(p),
        "format": fmt,
        "kind": kind,
        "usable": problem is None,
        "problem": problem,
        "vertices": nv,
        "faces": f[0] if f else None,
        "joints": nj,
        "betas": sd[-1] if sd and len(sd) >= 2 else None,
        "pose_features": pd_[-1] if pd_ and len(pd_) >= 2 else None,
        "gender": _gender_from_name(p.name),
        "chumpy_keys": info["chumpy_keys"],
        "sparse_keys": info["sparse_keys"],
        "dtypes": dtypes,
        "size_bytes": p.stat().st_size,
        "keys": sorted(raw),
    }


def convert_to_npz(
    in_path: str | os.PathLike[str], out_path: str | os.PathLike[str], force: bool = False
) -> Path:
    """Convert an SMPL ``.pkl`` (or ``.npz``) into a clean float32 ``.npz`` readable with ``allow_pickle=False``.

    Keys written: ``v_template``, ``shapedirs`` (all betas), ``posedirs``, ``J_regressor`` (dense), ``weights``
    (float32), ``f`` (int32), ``kintree_table`` (int32, root −1) and ``parents`` (int32). Refuses to replace an
    existing ``out_path`` unless ``force``; the file is written to a temporary name and renamed, so a crash never
    leaves a half-written model behind. Returns the output path.
    """
    src, dst = Path(in_path), Path(out_path)
    if dst.suffix != ".npz":
        raise SMPLFileError(f"{dst}: the output file must end in .npz")
    if dst.exists() and not force:
        raise SMPLFileError(
            f"{dst} already exists; not overwriting it", hint="pass force=True (--force) to replace it"
        )
    if dst.is_dir():
        raise SMPLFileError(f"{dst} is a folder")
    data = load_smpl_data(src)
    parents = data["parents"].astype(np.int32)
    arrays = {
        "v_template": data["v_template"].astype(np.float32),
        "shapedirs": data["shapedirs"].astype(np.float32),
        "posedirs": data["posedirs"].astype(np.float32),
        "J_regressor": data["J_regressor"].astype(np.float32),
        "weights": data["weights"].astype(np.float32),
        "f": data["faces"].astype(np.int32),
        "kintree_table": np.stack([parents, np.arange(NUM_JOINTS, dtype=np.int32)]),
        "parents": parents,
    }
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return dst


# ================================================================================================ model
@dataclass(frozen=True)
class SMPLOutput:
    """Result of :meth:`SMPL.forward` (float32, metres, ``transl`` included)."""

    vertices: np.ndarray | None  #: [B, 6890, 3]; None when ``return_vertices=False``
    joints: np.ndarray  #: [B, 24, 3] skeleton joints from forward kinematics
    joints45: np.ndarray  #: [B, 45, 3] the 24 joints + 21 vertex joints (smplx order)
    joints49: np.ndarray | None  #: [B, 49, 3] SPIN/POCO set; needs a 9-row ``J_regressor_extra``
    joints_extra: np.ndarray | None = None  #: [B, K, 3] the extra regressor applied to the posed mesh


def _load_extra_regressor(value: Any) -> np.ndarray:
    """A [K, 6890] regressor from an array, a ``.npy`` file or a pickled array (HMR2's ``SMPL_to_J19.pkl``)."""
    if isinstance(value, (str, os.PathLike)):
        p = Path(value)
        where = str(p)
        try:
            with open(p, "rb") as fh:
                head = fh.read(6)
        except FileNotFoundError:
            raise SMPLFileError(f"{p}: no such file (joint regressor)") from None
        except OSError as exc:
            raise SMPLFileError(f"{p}: cannot open ({exc.strerror or exc})") from None
        if head.startswith(b"PK"):
            raise SMPLFileError(
                f"{p}: expected a .npy (or pickled) [K, {NUM_VERTS}] regressor, got an .npz archive"
            )
        if head == b"\x93NUMPY":
            try:
                arr = np.load(p, allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise SMPLFileError(
                    f"{p}: cannot read the joint regressor ({exc})", hint="download it again"
                ) from None
        else:
            from hpsedge.runtime import safe_pickle

            arr = safe_pickle.load_smpl_pickle(p)
    else:
        arr, where = value, "J_regressor_extra"
    try:
        arr = np.asarray(arr)
    except Exception:
        arr = np.asarray(None)
    if arr.dtype.kind not in "fiu" or arr.ndim != 2 or arr.shape[1] != NUM_VERTS or arr.shape[0] < 1:
        raise SMPLFileError(
            f"{where}: expected a [K, {NUM_VERTS}] numeric joint regressor, got {arr.dtype} {tuple(arr.shape)}"
        )
    if not np.all(np.isfinite(arr)):
        raise SMPLFileError(f"{where}: the joint regressor contains NaN or infinite values")
    return arr.astype(np.float64)


def _pick_chunk(n: int, lo: int = 256, hi: int = 768) -> int:
    """A vertex-chunk length in [lo, hi] dividing ``n`` if there is one (6890 → 689), else ``hi``."""
    best = None
    for c in range(hi, lo - 1, -1):
        if n % c == 0:
            best = c
            break
    return best if best is not None else min(hi, n)


_POOL_LOCK = threading.Lock()
_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(n: int) -> ThreadPoolExecutor:
    with _POOL_LOCK:
        pool = _POOLS.get(n)
        if pool is None:
            pool = _POOLS[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="hpsedge-smpl")
        return pool


_BLAS_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's pool threads and may have inherited a held lock: start afresh."""
    global _POOL_LOCK, _BLAS_LOCK
    _POOLS.clear()
    _POOL_LOCK = threading.Lock()
    _BLAS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
# [(set_num_threads, get_num_threads)] once probed, or [None] where numpy's BLAS is not a findable OpenBLAS
_BLAS: list[Any] = []


def _find_openblas() -> Any:
    """ctypes handles (set, get) of the OpenBLAS that numpy loaded, or None (not Linux, MKL, not found)."""
    if _BLAS:
        return _BLAS[0]
    found = None
    try:
        import ctypes

        with open("/proc/self/maps") as fh:
            libs = {ln.split()[-1] for ln in fh if "openblas" in ln.lower() and "/" in ln}
        libs = sorted(
            libs, key=lambda p: ("numpy" not in p, p)
        )  # numpy's own first (scipy may bundle another)
        for lib_path in libs:
            lib = ctypes.CDLL(lib_path)
            for prefix, suffix in (
                ("scipy_openblas", "64_"),
                ("scipy_openblas", ""),
                ("openblas", "64_"),
                ("openblas", ""),
            ):
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    setter.argtypes, setter.restype, getter.restype = [ctypes.c_int], None, ctypes.c_int
                    found = (setter, getter)
                    break
            if found:
                break
    except Exception:  # pragma: no cover - any platform oddity: just do not touch BLAS threads
        found = None
    _BLAS.append(found)
    return found


class _blas_single_thread:
    """Run OpenBLAS single-threaded inside the block (our own threads split the work instead); restores the
    previous count. A no-op where numpy's BLAS is not an OpenBLAS we can find."""

    def __enter__(self) -> None:
        _BLAS_LOCK.acquire()
        self._prev = None
        blas = _find_openblas()
        if blas is not None:
            prev = blas[1]()
            if prev > 1:
                blas[0](1)
                self._prev = prev

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._prev is not None:
                _find_openblas()[0](self._prev)
        finally:
            _BLAS_LOCK.release()


class SMPL:
    """The SMPL body model, numpy float32, all constants precomputed at load.

    ``SMPL(model, num_betas=10, j_regressor_extra=None, *, threads=None, thread_mode="auto")`` where ``model`` is
    a path (official or clean ``.pkl``, ``.npz``) or the dict from :func:`load_smpl_data`; ``num_betas=None``
    keeps all the file has. ``j_regressor_extra``: None, a path (``J_regressor_extra.npy``, or a pickled array)
    or a [K, 6890] array; with K = 9 (SPIN's file) the output includes ``joints49``.

    Threads: ``threads`` (default 2 on a machine with 2+ cores, else 1) is the size of this module's pool.
    ``thread_mode="auto"``: batches of ``parallel_min_batch`` (8) or more are split over the pool with numpy's
    OpenBLAS made single-threaded for the call; smaller ones run in the calling thread and let BLAS thread the
    big GEMV (fastest on an idle machine). ``"ours"``: the pool for every batch; slower at B=1 on an idle
    machine (thread wake-ups) but it never wakes BLAS's spinning threads, so it coexists far better with other
    thread pools in the process (torch, ONNX Runtime). ``"blas"``: never the pool. ``threads=1`` disables it.

    Attributes: ``faces`` int32 [13776, 3], ``parents`` int32 [24] (root −1), ``num_betas``, ``v_template``
    float32 [6890, 3], ``j_regressor`` / ``weights`` float32, ``j_regressor_extra`` float32 [K, 6890] or None.
    """

    #: batches at least this big are skinned one cache-sized vertex chunk at a time (and, in thread_mode
    #: "auto", split over this object's threads)
    parallel_min_batch = 8

    def __init__(
        self,
        model: str | os.PathLike[str] | Mapping[str, Any],
        num_betas: int | None = 10,
        j_regressor_extra: str | os.PathLike[str] | np.ndarray | None = None,
        *,
        threads: int | None = None,
        thread_mode: str = "auto",
        chunk_vertices: int | None = None,
    ) -> None:
        if thread_mode not in ("auto", "ours", "blas"):
            raise ValueError(f"thread_mode must be 'auto', 'ours' or 'blas', not {thread_mode!r}")
        self.thread_mode = thread_mode
        if isinstance(model, (str, os.PathLike)):
            data = load_smpl_data(model, num_betas)
        elif isinstance(model, Mapping):
            data = _validate(Path("<model dict>"), _as_file_like(model), num_betas)
        else:
            raise SMPLFileError(
                f"SMPL(...) takes a file path or the dict of load_smpl_data, not {type(model).__name__}"
            )
        self._setup(data, j_regressor_extra, threads, chunk_vertices)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        num_betas: int | None = 10,
        j_regressor_extra: str | os.PathLike[str] | np.ndarray | None = None,
        **kwargs: Any,
    ) -> SMPL:
        """Load an SMPL model file (see the class docstring)."""
        return cls(path, num_betas=num_betas, j_regressor_extra=j_regressor_extra, **kwargs)

    # ------------------------------------------------------------------------------------------ setup
    def _setup(self, data: dict[str, np.ndarray], extra: Any, threads: int | None, chunk: int | None) -> None:
        V, J = NUM_VERTS, NUM_JOINTS
        f64 = np.float64
        v_template = data["v_template"].astype(f64)
        shapedirs = data["shapedirs"].astype(f64)  # [V, 3, NB]
        posedirs = data["posedirs"].astype(f64)  # [V, 3, 207]
        j_reg = data["J_regressor"].astype(f64)  # [24, V]
        weights = data["weights"].astype(f64)  # [V, 24]
        nb = shapedirs.shape[2]
        self.num_betas = nb
        self.faces = np.ascontiguousarray(data["faces"], dtype=np.int32)
        self.parents = np.ascontiguousarray(data["parents"], dtype=np.int32)
        self.v_template = v_template.astype(np.float32)
        self.j_regressor = j_reg.astype(np.float32)
        self.weights = weights.astype(np.float32)

        # combined basis rows: [template with the −I folded in; shapedirs; posedirs], as [K, V, 3]
        eye_feat = np.tile(np.eye(3).ravel(), J - 1)  # vec(I) for joints 1..23
        template = v_template - posedirs @ eye_feat
        K = 1 + nb + NUM_POSE_FEATURES
        self._K = K
        rows = np.empty((K, V, 3), dtype=f64)
        rows[0] = template
        rows[1 : 1 + nb] = shapedirs.transpose(2, 0, 1)
        rows[1 + nb :] = posedirs.transpose(2, 0, 1)

        # basis columns ordered (xyz, vertex), V padded up to a whole number of cache-sized vertex chunks: a GEMM
        # against the column block of chunk c and coordinate k needs no copy (BLAS takes the row stride)
        vc = int(chunk) if chunk else _pick_chunk(V)
        nch = -(-V // vc)
        vpad = nch * vc
        self._vc, self._nch, self._vpad = vc, nch, vpad
        basis = np.zeros((K, 3, vpad), dtype=np.float32)
        basis[:, :, :V] = rows.transpose(0, 2, 1)
        self._basis = basis.reshape(K, 3 * vpad)
        self._basis3 = basis  # [K, 3, Vpad] view of the same memory
        skin = np.zeros((J + 1, vpad), dtype=f64)
        skin[:J, :V] = weights.T
        skin[J, :V] = 1.0  # carries transl through the blend exactly
        self._skin = skin.astype(np.float32)

        # rest joints: J_regressor · (template + shapedirs · betas), as [1 + NB, 72]
        jb = np.empty((1 + nb, J, 3), dtype=f64)
        jb[0] = j_reg @ v_template
        jb[1:] = np.einsum("jv,vkl->ljk", j_reg, shapedirs)
        self._jbasis = jb.reshape(1 + nb, J * 3).astype(np.float32)

        # forward kinematics by pointer doubling: P_i <- P_anc(i) · P_i, anc <- anc(anc); index J is the identity
        anc = np.where(self.parents < 0, J, self.parents).astype(np.intp)
        anc = np.append(anc, J)
        steps = []
        while np.any(anc[:J] != J):
            steps.append(anc.copy())
            anc = anc[anc]
        self._fk_steps = steps
        depth = np.zeros(J, dtype=int)
        for j in range(
            1, J
        ):  # parents come before children in SMPL's order; the loop below does not rely on it
            p, d = int(self.parents[j]), 1
            while p > 0:
                p, d = int(self.parents[p]), d + 1
            depth[j] = d
        self._fk_levels = [
            (np.nonzero(depth == d)[0], self.parents[depth == d].astype(np.intp))
            for d in range(1, depth.max() + 1)
        ]
        base = np.zeros((J + 1, 4, 4), dtype=np.float32)
        base[:] = np.eye(4, dtype=np.float32)
        self._fk_base = base
        self._bone_parents = self.parents[1:].astype(np.intp)

        # extra regressor and the vertex subset for the joints-only path
        self.j_regressor_extra: np.ndarray | None = None
        ids = np.asarray(VERTEX_JOINT_IDS, dtype=np.intp)
        subset = set(ids.tolist())
        if extra is not None:
            reg = _load_extra_regressor(extra)
            self.j_regressor_extra = reg.astype(np.float32)
            subset |= set(np.nonzero(np.any(reg != 0, axis=0))[0].tolist())
        sub = np.array(sorted(subset), dtype=np.intp)
        self._sub = sub
        self._sub_vjoint = np.searchsorted(sub, ids)  # positions of the 21 vertex joints within the subset
        self._sub_basis = np.ascontiguousarray(
            rows[:, sub].transpose(0, 2, 1).reshape(K, 3 * len(sub)), dtype=np.float32
        )
        self._sub_skin = np.ascontiguousarray(skin[:, sub], dtype=np.float32)
        if self.j_regressor_extra is not None:
            self._extra_sub = np.ascontiguousarray(self.j_regressor_extra[:, sub])
        self._joint_map = np.asarray(JOINT_MAP_49, dtype=np.intp)
        self._vertex_joint_ids = ids

        if threads is None:
            threads = 2 if (os.cpu_count() or 1) >= 2 else 1
        self.threads = max(1, int(threads))

    # --------------------------------------------------------------------------------------- inputs
    def _inputs(self, betas: Any, pose: Any, transl: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if pose is None:
            raise InputError(
                "SMPL.forward needs a pose: [B,24,3,3] rotation matrices or [B,24,3] / [B,72] axis-angle"
            )
        pose = np.asarray(pose)
        if pose.dtype.kind not in "fiu":
            raise InputError(f"pose must be numeric, got dtype {pose.dtype}")
        if pose.ndim == 4 and pose.shape[1:] == (NUM_JOINTS, 3, 3):
            rot = pose.astype(np.float32, copy=False)
            is_rotmat = True
        elif (pose.ndim == 3 and pose.shape[1:] == (NUM_JOINTS, 3)) or (
            pose.ndim == 2 and pose.shape[1] == 3 * NUM_JOINTS
        ):
            rot = pose.reshape(-1, NUM_JOINTS, 3)
            is_rotmat = False
        else:
            raise InputError(
                f"pose has shape {tuple(pose.shape)}; expected [B,24,3,3] rotation matrices or [B,24,3] / [B,72] "
                "axis-angle (add a batch axis for one body)"
            )
        B = rot.shape[0]
        if not np.isfinite(rot).all():
            raise InputError("pose contains NaN or infinite values")
        if not is_rotmat:
            from hpsedge.runtime.rotations import axis_angle_to_rotmat

            rot = axis_angle_to_rotmat(rot.astype(np.float64)).astype(np.float32)

        if betas is None:
            b = np.zeros((B, 0), dtype=np.float32)
        else:
            b = np.asarray(betas)
            if b.dtype.kind not in "fiu":
                raise InputError(f"betas must be numeric, got dtype {b.dtype}")
            if b.ndim == 1:
                b = b[None]
            if b.ndim != 2:
                raise InputError(f"betas has shape {tuple(np.shape(betas))}; expected [B, num_betas]")
            if b.shape[1] > self.num_betas:
                raise InputError(
                    f"betas has {b.shape[1]} coefficients but the model was loaded with num_betas={self.num_betas}",
                    hint=f"load it with SMPL.load(path, num_betas={b.shape[1]}) if the file has that many",
                )
            if b.shape[0] != B:
                if b.shape[0] == 1:
                    b = np.broadcast_to(b, (B, b.shape[1]))
                else:
                    raise InputError(f"betas has batch {b.shape[0]} but pose has batch {B}")
            if not np.isfinite(b).all():
                raise InputError("betas contains NaN or infinite values")
        if transl is not None:
            t = np.asarray(transl)
            if t.dtype.kind not in "fiu":
                raise InputError(f"transl must be numeric, got dtype {t.dtype}")
            if t.ndim == 1 and t.shape == (3,):
                t = t[None]
            if t.ndim != 2 or t.shape[1] != 3:
                raise InputError(f"transl has shape {tuple(t.shape)}; expected [B, 3]")
            if t.shape[0] != B:
                if t.shape[0] == 1:
                    t = np.broadcast_to(t, (B, 3))
                else:
                    raise InputError(f"transl has batch {t.shape[0]} but pose has batch {B}")
            if not np.isfinite(t).all():
                raise InputError("transl contains NaN or infinite values")
            transl = t.astype(np.float32, copy=False)
        return b, rot, transl

    # -------------------------------------------------------------------------------------- forward
    def forward(
        self,
        betas: np.ndarray | None,
        pose: np.ndarray,
        transl: np.ndarray | None = None,
        return_vertices: bool = True,
    ) -> SMPLOutput:
        """Pose and shape the body.

        Args:
            betas: [B, n] with n <= ``num_betas`` (missing coefficients are 0), or None for the mean shape.
                A batch of 1 is broadcast to the pose batch.
            pose: [B, 24, 3, 3] rotation matrices (global orientation first), or axis-angle [B, 24, 3] / [B, 72].
            transl: None or [B, 3], added to vertices and every joint.
            return_vertices: False skips the full mesh and computes only the vertices the joints need.
        """
        betas_, rot, transl_ = self._inputs(betas, pose, transl)
        B = rot.shape[0]
        nb, K = self.num_betas, self._K
        n_extra = 0 if self.j_regressor_extra is None else self.j_regressor_extra.shape[0]
        if B == 0:
            return self._empty(return_vertices, n_extra)

        # coefficients [B, K] = [1, betas, vec(R_1..R_23)]
        coeff = np.empty((B, K), dtype=np.float32)
        coeff[:, 0] = 1.0
        nbi = betas_.shape[1]
        coeff[:, 1 : 1 + nbi] = betas_
        if nbi < nb:
            coeff[:, 1 + nbi : 1 + nb] = 0.0
        coeff[:, 1 + nb :] = rot[:, 1:].reshape(B, NUM_POSE_FEATURES)

        if not return_vertices:
            joints, a2 = self._kinematics(coeff, rot, transl_)
            sub = self._skin_subset(coeff, a2, B)  # [B, S, 3]
            verts, vjoints = None, sub[:, self._sub_vjoint]
        else:
            verts, joints = self._mesh(coeff, rot, transl_)
            sub = verts[:, self._sub] if self.j_regressor_extra is not None else None
            vjoints = verts[:, self._vertex_joint_ids]
        joints45 = np.concatenate([joints, vjoints], axis=1)
        joints49 = extra = None
        if self.j_regressor_extra is not None:
            extra = np.matmul(self._extra_sub, sub)  # [B, K, 3]
            if n_extra == 9:
                joints49 = np.concatenate([joints45, extra], axis=1)[:, self._joint_map]
        return SMPLOutput(
            vertices=verts, joints=joints, joints45=joints45, joints49=joints49, joints_extra=extra
        )

    __call__ = forward

    def _kinematics(
        self, coeff: np.ndarray, rot: np.ndarray, transl: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posed skeleton joints [B, 24, 3] (transl included) and the skinning affines [12·B, 25]."""
        B, J, nb = rot.shape[0], NUM_JOINTS, self.num_betas
        # rest joints [B, 24, 3]
        rest = (coeff[:, : 1 + nb] @ self._jbasis).reshape(B, J, 3)

        # forward kinematics: local [R | bone] as 4x4, composed by pointer doubling or level by level
        m = np.empty((B, J + 1, 4, 4), dtype=np.float32)
        m[:] = self._fk_base
        m[:, :J, :3, :3] = rot
        m[:, :J, :3, 3] = rest
        m[:, 1:J, :3, 3] -= rest[:, self._bone_parents]
        if rot.shape[0] < self.parallel_min_batch:  # few bodies: fewest numpy calls (4 steps for SMPL)
            for anc in self._fk_steps:
                m = m[:, anc] @ m
        else:  # many bodies: fewest 4x4 products (one per joint, level by level: 8 levels for SMPL)
            for idx, par in self._fk_levels:
                m[:, idx] = m[:, par] @ m[:, idx]
        g = m[:, :J]  # [B, 24, 4, 4] global transforms
        joints = g[:, :, :3, 3]  # posed skeleton joints

        # skinning affines A [4, 3, B, 25], rows (k, i, b) = column k, row i of body b's 3x4 affine, per joint:
        # [R_g | t_g − R_g·J_rest], and a 25th "joint" [0 | transl] whose weight is exactly 1 for every vertex
        a = np.empty((4, 3, B, J + 1), dtype=np.float32)
        a[:, :, :, :J] = g[:, :, :3, :].transpose(3, 2, 0, 1)
        a[3, :, :, :J] -= (g[:, :, :3, :3] @ rest[..., None])[..., 0].transpose(2, 0, 1)
        a[:3, :, :, J] = 0.0
        if transl is not None:
            a[3, :, :, J] = transl.T
            joints = joints + transl[:, None, :]
        else:
            a[3, :, :, J] = 0.0
            joints = np.ascontiguousarray(joints)
        return joints, a.reshape(12 * B, J + 1)

    def _mesh(
        self, coeff: np.ndarray, rot: np.ndarray, transl: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vertices [B, 6890, 3] and skeleton joints [B, 24, 3].

        The vertex chunks are split into one contiguous range per thread. Helper threads start on the posed rest
        mesh (the big GEMM, which needs only ``coeff``) at once, while this thread runs the kinematics; then every
        thread blends and applies the affines for its range. BLAS runs single-threaded meanwhile, so the threads
        never wait on (or spin against) BLAS's own pool. Batches of ``parallel_min_batch`` or more go one
        cache-sized chunk at a time.
        """
        batch, nch, vpad = rot.shape[0], self._nch, self._vpad
        out = np.empty((batch, vpad, 3), dtype=np.float32)
        chunked = batch >= self.parallel_min_batch
        mode = self.thread_mode
        ours = mode == "ours" or (mode == "auto" and chunked)
        if self.threads == 1 or nch == 1 or not ours or _find_openblas() is None:
            joints, a2 = self._kinematics(coeff, rot, transl)  # BLAS parallelises the GEMMs itself
            self._skin_range(coeff, lambda: a2, out, 0, nch, chunked)
        else:
            nt = min(self.threads, nch)
            bounds = np.linspace(0, nch, nt + 1).round().astype(int).tolist()
            with _blas_single_thread():
                affines: Future[np.ndarray] = Future()
                pool = _pool(nt)
                futures = [
                    pool.submit(
                        self._skin_range, coeff, affines.result, out, bounds[i], bounds[i + 1], chunked
                    )
                    for i in range(1, nt)
                ]
                try:
                    joints, a2 = self._kinematics(coeff, rot, transl)  # while the helpers start their GEMMs
                    affines.set_result(a2)
                    self._skin_range(coeff, lambda: a2, out, bounds[0], bounds[1], chunked)
                finally:
                    if not affines.done():
                        affines.set_exception(RuntimeError("SMPL kinematics failed"))
                    for fut in futures:
                        fut.exception()  # wait for the helpers either way: they write into `out`
                for fut in futures:
                    fut.result()
        if vpad != NUM_VERTS:
            out = np.ascontiguousarray(out[:, :NUM_VERTS])
        return out, joints

    def _empty(self, return_vertices: bool, n_extra: int) -> SMPLOutput:
        z = np.zeros
        return SMPLOutput(
            vertices=z((0, NUM_VERTS, 3), np.float32) if return_vertices else None,
            joints=z((0, NUM_JOINTS, 3), np.float32),
            joints45=z((0, 45, 3), np.float32),
            joints49=z((0, 49, 3), np.float32) if n_extra == 9 else None,
            joints_extra=z((0, n_extra, 3), np.float32) if n_extra else None,
        )

    # ------------------------------------------------------------------------------------- skinning
    def _skin_subset(self, coeff: np.ndarray, a2: np.ndarray, B: int) -> np.ndarray:
        """Posed vertices of the joints subset: [B, S, 3]."""
        s = len(self._sub)
        x = (coeff @ self._sub_basis).reshape(B, 3, s).transpose(1, 0, 2)  # [3(k), B, S]
        t = (a2 @ self._sub_skin).reshape(4, 3, B, s)  # [k, i, B, S]
        v = (t[:3] * x[:, None]).sum(axis=0)
        v += t[3]
        return v.transpose(1, 2, 0)

    def _skin_range(
        self,
        coeff: np.ndarray,
        get_affines: Callable[[], np.ndarray],
        out: np.ndarray,
        c0: int,
        c1: int,
        chunked: bool,
    ) -> None:
        """Vertices of chunks [c0, c1) into ``out`` [B, Vpad, 3]; ``get_affines()`` gives [12·B, 25] and is
        called once, after the first posed-rest-mesh GEMM (so that GEMM overlaps the kinematics).

        Small batches: the whole range at once. Large batches (``chunked``): one cache-sized chunk at a time.
        Every elementwise operand is contiguous along the vertices: X [3, B, n], T [4, 3, B, n].
        """
        B, vc = coeff.shape[0], self._vc
        step = 1 if chunked else c1 - c0
        a2 = None
        for c in range(c0, c1, step):
            v0, v1 = c * vc, min(c + step, c1) * vc
            if v0 == 0 and v1 == self._vpad:
                x = (coeff @ self._basis).reshape(B, 3, v1).transpose(1, 0, 2)  # posed rest mesh [3, B, n]
            else:
                x = np.matmul(coeff, self._basis3[:, :, v0:v1].transpose(1, 0, 2))  # [3, B, n]
            if a2 is None:
                a2 = get_affines()
            t = (a2 @ self._skin[:, v0:v1]).reshape(4, 3, B, v1 - v0)  # blended affines, column k first
            acc = np.multiply(t[0], x[0])
            tmp = np.multiply(t[1], x[1])
            acc += tmp
            np.multiply(t[2], x[2], out=tmp)
            acc += tmp
            np.add(acc, t[3], out=out[:, v0:v1].transpose(2, 0, 1))


def _as_file_like(model: Mapping[str, Any]) -> dict[str, Any]:
    """Accept the dict of :func:`load_smpl_data` (``faces``/``parents``) as well as file-style keys."""
    raw = dict(model)
    if "f" not in raw and "faces" in raw:
        raw["f"] = raw["faces"]
    return raw
