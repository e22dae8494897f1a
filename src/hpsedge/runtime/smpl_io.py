"""SMPL model files: safe loading, validation, conversion to ``.npz`` and a summary for ``hpsedge smpl check``.

:func:`load_smpl_data` reads an official ``SMPL_*.pkl`` / ``basicModel_*.pkl`` (a Python-2 pickle with chumpy
objects and a scipy sparse regressor, read by :mod:`hpsedge.runtime.safe_pickle` without chumpy, scipy or any
code execution), a chumpy-free "clean" pickle, or an ``.npz`` (``allow_pickle=False``), and checks that it is
SMPL (6890 vertices, 24 joints, 207 pose features) rather than SMPL-X, SMPL+H, MANO or FLAME.
:func:`convert_to_npz` writes the clean float32 ``.npz`` the runtime prefers; :func:`describe` summarises a file.
The body model itself is :mod:`hpsedge.runtime.smpl_core`; :mod:`hpsedge.runtime.smpl` re-exports both.
Only numpy is imported.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import HpsedgeError, SMPLFileError
from hpsedge.runtime.files import atomic_write

__all__ = [
    "JOINT_MAP_49",
    "NUM_JOINTS",
    "NUM_POSE_FEATURES",
    "NUM_VERTS",
    "SMPL_PARENTS",
    "VERTEX_JOINT_IDS",
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
    return atomic_write(dst, lambda fh: np.savez(fh, **arrays))


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


def _as_file_like(model: Mapping[str, Any]) -> dict[str, Any]:
    """Accept the dict of :func:`load_smpl_data` (``faces``/``parents``) as well as file-style keys."""
    raw = dict(model)
    if "f" not in raw and "faces" in raw:
        raw["f"] = raw["faces"]
    return raw
