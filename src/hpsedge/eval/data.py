"""Reading (untrusted) evaluation inputs: the SPIN/PARE/POCO ``.npz`` layout and the H36M joint regressor.

The evaluation files of the HPS literature (``3dpw_test.npz`` and friends, as SPIN, PARE, POCO and CLIFF
ship them) hold one row per person: ``imgname`` (path below the dataset's image root), ``center`` [2] and
``scale`` (box side / 200, pixels) of the person box, ground-truth SMPL ``pose`` [72] (axis-angle, global
orientation first) and ``shape`` [10], and optionally ``gender`` (``"m"``/``"f"``) and ``has_smpl``.
Files are read with ``allow_pickle=False``; every problem is one :class:`~hpsedge.errors.InputError`.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpsedge.errors import InputError

__all__ = ["EvalSet", "load_eval_set", "load_j_regressor"]

NEEDED = ("imgname", "center", "scale", "pose", "shape")
H36M_SHAPE = (17, 6890)


@dataclass
class EvalSet:
    """The rows of an evaluation file that will be evaluated (``has_smpl`` rows only, first ``max_samples``)."""

    path: Path
    imgname: list[str]
    center: np.ndarray  #: [N, 2] float64 pixels
    scale: np.ndarray  #: [N] float64, box side / 200
    pose: np.ndarray  #: [N, 72] float64 axis-angle
    shape: np.ndarray  #: [N, 10] float64
    gender: list[str] | None  #: "m" / "f" per row, or None when the file has no gender
    rows: np.ndarray  #: [N] index of each sample in the file
    total_rows: int  #: rows in the file
    skipped_no_smpl: int  #: rows left out because ``has_smpl`` is 0

    def __len__(self) -> int:
        return len(self.imgname)

    def boxes(self) -> np.ndarray:
        """[N, 4] square x1, y1, x2, y2 boxes of side ``scale·200`` around ``center``."""
        half = self.scale[:, None] * 100.0
        return np.concatenate([self.center - half, self.center + half], axis=1)


def _npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError(f"evaluation file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(
                f"{path} holds Python objects (pickled arrays); refused",
                hint="store imgname/gender as fixed-width string arrays (np.array(names, dtype=str))",
            ) from None
        raise InputError(f"{path} is not a readable .npz: {exc}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{path} is not a readable .npz: {exc}") from None


def _numeric(path: Path, data: dict[str, np.ndarray], key: str, shape: tuple[int | None, ...]) -> np.ndarray:
    arr = data[key]
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{path}: '{key}' must be numeric, got dtype {arr.dtype}")
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape, strict=True)):
        want = "[" + ", ".join("N" if s is None else str(s) for s in shape) + "]"
        raise InputError(f"{path}: '{key}' has shape {list(arr.shape)}; expected {want}")
    return arr.astype(np.float64)


def load_eval_set(path: str | Path, max_samples: int | None = None) -> EvalSet:
    """Read and check an evaluation ``.npz`` (see the module docstring)."""
    p = Path(path)
    data = _npz(p)
    missing = [k for k in NEEDED if k not in data]
    if missing:
        raise InputError(
            f"{p} lacks the key(s) {', '.join(missing)} (has: {', '.join(sorted(data)) or 'nothing'})",
            hint="an evaluation file in the SPIN/PARE/POCO layout needs imgname, center, scale, pose (72) and shape (10)",
        )
    names = data["imgname"]
    if names.dtype.kind not in "US" or names.ndim != 1:
        raise InputError(f"{p}: 'imgname' must be a 1-D array of strings, got dtype {names.dtype}, shape {list(names.shape)}")
    n = len(names)
    center = _numeric(p, data, "center", (n, 2))
    scale = _numeric(p, data, "scale", (n,))
    pose = _numeric(p, data, "pose", (n, 72))
    if data["shape"].ndim == 2 and data["shape"].shape[1] > 10:
        data["shape"] = data["shape"][:, :10]
    shape = _numeric(p, data, "shape", (n, 10))
    for key, arr in (("center", center), ("scale", scale), ("pose", pose), ("shape", shape)):
        if not np.isfinite(arr).all():
            raise InputError(f"{p}: '{key}' holds NaN or infinite values")
    if (scale <= 0).any():
        raise InputError(f"{p}: 'scale' must be positive (box side / 200); row {int(np.argmax(scale <= 0))} is not")
    gender = None
    if "gender" in data:
        g = data["gender"]
        if g.ndim != 1 or len(g) != n:
            raise InputError(f"{p}: 'gender' has shape {list(g.shape)}; expected [{n}]")
        if g.dtype.kind in "US":
            gender = [str(v.decode() if isinstance(v, bytes) else v).strip().lower()[:1] for v in g]
        elif g.dtype.kind in "iu":  # SPIN's convention in memory: 0 male, 1 female
            gender = ["m" if int(v) == 0 else "f" for v in g]
        else:
            raise InputError(f"{p}: 'gender' must hold 'm'/'f' strings, got dtype {g.dtype}")
        bad = sorted({v for v in gender if v not in ("m", "f")})
        if bad:
            raise InputError(f"{p}: 'gender' holds {bad[:3]}; expected 'm' or 'f'")
    keep = np.ones(n, dtype=bool)
    if "has_smpl" in data:
        keep = np.asarray(data["has_smpl"]).reshape(-1)[:n] > 0
    rows = np.flatnonzero(keep)
    if max_samples is not None:
        rows = rows[: max(0, int(max_samples))]
    if rows.size == 0:
        raise InputError(f"{p} has no samples to evaluate (rows: {n}, with SMPL ground truth: {int(keep.sum())})")
    return EvalSet(
        path=p,
        imgname=[str(names[i]) for i in rows],
        center=center[rows],
        scale=scale[rows],
        pose=pose[rows],
        shape=shape[rows],
        gender=None if gender is None else [gender[i] for i in rows],
        rows=rows,
        total_rows=n,
        skipped_no_smpl=int(n - keep.sum()),
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


def load_j_regressor(path: str | Path) -> np.ndarray:
    """``J_regressor_h36m.npy``: a finite float [17, 6890] array (``allow_pickle=False``)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"J-regressor not found: {p}")
    try:
        arr = np.load(p, allow_pickle=False)
    except ValueError as exc:
        raise InputError(f"{p} is not a plain .npy array ({exc})") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"{p} is not a readable .npy file: {exc}") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise InputError(f"{p}: the J-regressor must be a numeric array")
    if arr.shape != H36M_SHAPE:
        raise InputError(
            f"{p}: J-regressor has shape {list(arr.shape)}; expected the Human3.6M regressor {list(H36M_SHAPE)}",
            hint="pass J_regressor_h36m.npy (17 joints × 6890 vertices), not J_regressor_extra or SMPL's own",
        )
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise InputError(f"{p}: the J-regressor holds NaN or infinite values")
    return arr
