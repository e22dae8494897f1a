"""Reading (untrusted) evaluation inputs: the SPIN/PARE/POCO ``.npz`` layout and the joint regressors.

The evaluation files of the HPS literature (``3dpw_test.npz`` and friends, as SPIN, PARE, POCO and CLIFF
ship them) hold one row per person: ``imgname`` (path below the dataset's image root), ``center`` [2] and
``scale`` (box side / 200, pixels) of the person box, ground-truth SMPL ``pose`` [72] (axis-angle, global
orientation first) and ``shape`` [10], and optionally ``gender`` (``"m"``/``"f"``, or ``"n"`` for neutral as
``hpsedge curate`` writes it) and ``has_smpl``.

Only those arrays are read, and only after their ``.npy`` headers (dtype and shape, a few hundred bytes each)
say they are what they should be: a file may hold other large arrays (``S``, ``part``, ``openpose`` …) or
declare absurd shapes, and neither costs memory. Every array must have one entry per ``imgname`` row (a short
``has_smpl`` or ``gender`` is refused, not truncated). Files are read with ``allow_pickle=False``; every
problem is one :class:`~hpsedge.errors.InputError`.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from hpsedge.errors import HpsedgeError, InputError

__all__ = ["EvalSet", "load_eval_set", "load_j_regressor", "read_npz_arrays"]

NEEDED = ("imgname", "center", "scale", "pose", "shape")
OPTIONAL = ("gender", "has_smpl")
H36M_SHAPE = (17, 6890)
#: most rows an evaluation file may declare (3DPW's test split has 35,515; EMDB's about 100,000)
MAX_ROWS = 5_000_000
#: most characters of one ``imgname`` / ``gender`` entry
MAX_NAME_CHARS = 1024
#: most bytes the arrays read from one evaluation file may take, all together
MAX_BYTES = 2 << 30
#: most betas a ``shape`` row may have (the first 10 are used)
MAX_BETAS = 300


@dataclass
class EvalSet:
    """The rows of an evaluation file that will be evaluated (the first ``max_samples``, with or without SMPL)."""

    path: Path
    imgname: list[str]
    center: np.ndarray  #: [N, 2] float64 pixels
    scale: np.ndarray  #: [N] float64, box side / 200
    pose: np.ndarray  #: [N, 72] float64 axis-angle, as stored (also where has_smpl is 0)
    shape: np.ndarray  #: [N, 10] float64, as stored
    gender: list[str] | None  #: "m" / "f" / "n" (neutral) per row, or None when the file has no gender
    has_smpl: np.ndarray  #: [N] bool, the file's ``has_smpl`` (all True without one)
    rows: np.ndarray  #: [N] index of each sample in the file
    total_rows: int  #: rows in the file

    def __len__(self) -> int:
        return len(self.imgname)

    @property
    def without_smpl(self) -> int:
        """Rows (among those evaluated) whose ``has_smpl`` is 0; the official evaluations score them too."""
        return int((~self.has_smpl).sum())

    def boxes(self) -> np.ndarray:
        """[N, 4] square x1, y1, x2, y2 boxes of side ``scale·200`` around ``center``."""
        half = self.scale[:, None] * 100.0
        return np.concatenate([self.center - half, self.center + half], axis=1)


def _header(fh: IO[bytes], path: Path, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a member's ``.npy`` header, without reading its data."""
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, EOFError, SyntaxError, TypeError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: '{key}' is not a readable .npy array ({exc})") from None
    return tuple(int(d) for d in shape), np.dtype(dtype)


def read_npz_arrays(path: str | Path, wanted: dict[str, tuple[tuple[int | None, ...], ...]],
                    max_bytes: int = MAX_BYTES) -> dict[str, np.ndarray]:
    """Read the arrays ``wanted`` names from an ``.npz``, checking each header before its data is read.

    ``wanted`` maps a key to the shapes it may have (``None``: any size on that axis); keys the file lacks
    are left out of the result, keys it has but ``wanted`` does not name are never read. A shape outside
    the allowed ones, an object dtype, or more than ``max_bytes`` in all is one :class:`InputError`.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"evaluation file not found: {p}")
    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(f"{p} is not a readable .npz: {exc}") from None
    with zf:
        members = {n[:-4] if n.endswith(".npy") else n: n for n in zf.namelist()}
        found: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        total = 0
        for key, shapes in wanted.items():
            if key not in members:
                continue
            with zf.open(members[key]) as fh:
                shape, dtype = _header(fh, p, key)
            if dtype.hasobject:
                raise InputError(
                    f"{p} holds Python objects (pickled arrays) in '{key}'; refused",
                    hint="store imgname/gender as fixed-width string arrays (np.array(names, dtype=str))",
                )
            if not any(len(shape) == len(want) and all(w is None or w == d for w, d in zip(want, shape, strict=True))
                       for want in shapes):
                allowed = " or ".join("[" + ", ".join("N" if w is None else str(w) for w in want) + "]"
                                      for want in shapes)
                raise InputError(f"{p}: '{key}' has shape {list(shape)}; expected {allowed}")
            total += int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            if total > max_bytes:
                raise InputError(f"{p}: the arrays needed for evaluation would take more than "
                                 f"{max_bytes / 2**30:.1f} GiB ('{key}' has shape {list(shape)}); refused")
            found[key] = (shape, dtype)
        out: dict[str, np.ndarray] = {}
        for key in found:
            try:
                with zf.open(members[key]) as fh:
                    out[key] = np.lib.format.read_array(fh, allow_pickle=False)
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise InputError(f"{p}: '{key}' cannot be read ({exc})", hint="the file is truncated or corrupt") from None
            if out[key].shape != found[key][0]:  # a member whose data ends early
                raise InputError(f"{p}: '{key}' is truncated")
    return out


def _numeric(path: Path, data: dict[str, np.ndarray], key: str, kinds: str = "fiu") -> np.ndarray:
    arr = data[key]
    if arr.dtype.kind not in kinds:
        raise InputError(f"{path}: '{key}' must be numeric, got dtype {arr.dtype}")
    out = arr.astype(np.float64)
    if not np.isfinite(out).all():
        raise InputError(f"{path}: '{key}' holds NaN or infinite values")
    return out


def _strings(path: Path, arr: np.ndarray, key: str) -> np.ndarray:
    if arr.dtype.kind not in "US" or arr.dtype.itemsize > 4 * MAX_NAME_CHARS:
        raise InputError(f"{path}: '{key}' must be a 1-D array of strings (at most {MAX_NAME_CHARS} characters), "
                         f"got dtype {arr.dtype}")
    return arr


def _members(path: Path) -> tuple[list[str], int]:
    """The file's array names and its row count: the length ``imgname``'s header declares (at most
    :data:`MAX_ROWS`; -1 without ``imgname``)."""
    try:
        with zipfile.ZipFile(path) as zf:
            keys = sorted(n[:-4] if n.endswith(".npy") else n for n in zf.namelist())
            if "imgname.npy" not in zf.namelist():
                return keys, -1
            with zf.open("imgname.npy") as fh:
                shape, dtype = _header(fh, path, "imgname")
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(f"{path} is not a readable .npz: {exc}") from None
    if len(shape) != 1:
        raise InputError(f"{path}: 'imgname' must be a 1-D array of strings, got dtype {dtype}, shape {list(shape)}")
    if shape[0] > MAX_ROWS:
        raise InputError(f"{path}: 'imgname' declares {shape[0]} rows; at most {MAX_ROWS} are read")
    return keys, shape[0]


def load_eval_set(path: str | Path, max_samples: int | None = None) -> EvalSet:
    """Read and check an evaluation ``.npz`` (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"evaluation file not found: {p}")
    keys, n = _members(p)
    missing = [k for k in NEEDED if k not in keys]
    if missing:
        raise InputError(
            f"{p} lacks the key(s) {', '.join(missing)} (has: {', '.join(keys) or 'nothing'})",
            hint="an evaluation file in the SPIN/PARE/POCO layout needs imgname, center, scale, pose (72) and shape (10)",
        )
    wanted: dict[str, tuple[tuple[int | None, ...], ...]] = {
        "imgname": ((n,),), "center": ((n, 2),), "scale": ((n,), (n, 1)),
        "pose": ((n, 72),), "shape": ((n, None),), "gender": ((n,),),
        "has_smpl": ((n,), (n, 1)),
    }
    data = read_npz_arrays(p, wanted)
    names = _strings(p, data["imgname"], "imgname")
    if not 10 <= data["shape"].shape[1] <= MAX_BETAS:
        raise InputError(f"{p}: 'shape' has shape {list(data['shape'].shape)}; expected [{n}, 10] (up to {MAX_BETAS})")
    center = _numeric(p, data, "center")
    scale = _numeric(p, data, "scale").reshape(n)
    pose = _numeric(p, data, "pose")
    shape = _numeric(p, {"shape": data["shape"][:, :10]}, "shape")
    if (scale <= 0).any():
        raise InputError(f"{p}: 'scale' must be positive (box side / 200); row {int(np.argmax(scale <= 0))} is not")
    gender = None
    if "gender" in data:
        g = data["gender"]
        if g.dtype.kind in "US":
            _strings(p, g, "gender")
            gender = [str(v.decode(errors="replace") if isinstance(v, bytes) else v).strip().lower()[:1] for v in g]
        elif g.dtype.kind in "iu":  # SPIN's convention in memory: 0 male, 1 female
            gender = ["m" if int(v) == 0 else "f" for v in g]
        else:
            raise InputError(f"{p}: 'gender' must hold 'm'/'f'/'n' strings, got dtype {g.dtype}")
        bad = sorted({v for v in gender if v not in ("m", "f", "n")})
        if bad:
            raise InputError(f"{p}: 'gender' holds {bad[:3]}; expected 'm', 'f' or 'n' (neutral)")
    has_smpl = np.ones(n, dtype=bool)
    if "has_smpl" in data:
        has_smpl = _numeric(p, data, "has_smpl", kinds="fiub").reshape(n) != 0  # POCO: `if self.has_smpl[index]`
    rows = np.arange(n)
    if max_samples is not None:
        rows = rows[: max(0, int(max_samples))]
    if rows.size == 0:
        raise InputError(f"{p} has no samples to evaluate (rows: {n})")
    return EvalSet(
        path=p,
        imgname=[names[i].decode(errors="replace") if isinstance(names[i], bytes) else str(names[i]) for i in rows],
        center=center[rows],
        scale=scale[rows],
        pose=pose[rows],
        shape=shape[rows],
        gender=None if gender is None else [gender[i] for i in rows],
        has_smpl=has_smpl[rows],
        rows=rows,
        total_rows=n,
    )


def resolve_images(root: str | Path, names: list[str]) -> list[Path]:
    """Each ``imgname`` below ``root``; names that escape ``root`` or files that are missing are one error."""
    base = Path(root)
    if not base.is_dir():
        raise InputError(f"image root not found: {base}", hint="--images is the folder the imgname paths start from")
    base_r = base.resolve()
    out: list[Path] = []
    missing: list[str] = []
    for name in names:
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise InputError(f"imgname '{name}' points outside the image root {base}")
        full = (base / rel).resolve()
        if not full.is_relative_to(base_r):
            raise InputError(f"imgname '{name}' points outside the image root {base} (through a link)")
        if not full.is_file():
            missing.append(name)
        out.append(full)
    if missing:
        uniq = sorted(set(missing))
        raise InputError(
            f"{len(uniq)} of {len(set(names))} image(s) are missing under {base} (first: {uniq[0]})",
            hint="--images must be the dataset root that the evaluation file's imgname paths are relative to",
        )
    return out


def load_j_regressor(path: str | Path, rows: int = 17) -> np.ndarray:
    """A finite float [rows, 6890] joint regressor: ``J_regressor_h36m.npy`` (17 rows, ``.npy`` only) or
    TokenHMR's ``SMPL_to_J19.pkl`` (19 rows; a ``.npy`` or the pickled array, read with the allow-list unpickler)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"J-regressor not found: {p}")
    if rows == 17:
        try:
            arr = np.load(p, allow_pickle=False, mmap_mode="r")
        except ValueError as exc:
            raise InputError(f"{p} is not a plain .npy array ({exc})") from None
        except (OSError, EOFError) as exc:
            raise InputError(f"{p} is not a readable .npy file: {exc}") from None
    else:
        from hpsedge.runtime.smpl_io import _load_extra_regressor

        try:
            arr = _load_extra_regressor(p)
        except HpsedgeError as exc:
            raise InputError(exc.message, hint=exc.hint) from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise InputError(f"{p}: the J-regressor must be a numeric array")
    want = (rows, H36M_SHAPE[1])
    if arr.shape != want:
        kind = "the Human3.6M regressor" if rows == 17 else "TokenHMR's SMPL_to_J19 regressor"
        name = "J_regressor_h36m.npy (17 joints" if rows == 17 else "SMPL_to_J19.pkl (19 joints"
        hint = f"pass {name} × 6890 vertices) for this protocol"
        if arr.shape == (19, H36M_SHAPE[1]):
            hint = "this looks like TokenHMR's SMPL_to_J19 regressor: it goes with --protocol tokenhmr-3dpw"
        elif arr.shape == H36M_SHAPE:
            hint = "this looks like J_regressor_h36m: it goes with --protocol poco-3dpw"
        raise InputError(f"{p}: J-regressor has shape {list(arr.shape)}; expected {kind} {list(want)}", hint=hint)
    arr = np.asarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise InputError(f"{p}: the J-regressor holds NaN or infinite values")
    return arr
