"""Shared pytest fixtures. Add new fixtures below, one section per area."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import smpl_synth


# ------------------------------------------------------------------------------------- synthetic SMPL model
@pytest.fixture(scope="session")
def smpl_arrays() -> dict[str, Any]:
    """The arrays of the session's synthetic SMPL model (float64, 10 betas, seed 0; see tests/smpl_synth.py)."""
    return smpl_synth.make_smpl_arrays(num_betas=10, seed=0)


@pytest.fixture(scope="session")
def synthetic_smpl_dir(tmp_path_factory: pytest.TempPathFactory, smpl_arrays: dict[str, Any]) -> Path:
    """A folder with one synthetic SMPL model written several ways (about 140 MB, made once per session):

    * ``SMPL_NEUTRAL.pkl``: official style (Python-2 pickle, chumpy ``Ch`` shapedirs, old-scipy csc regressor);
    * ``SMPL_NEUTRAL_clean.pkl``: chumpy-free pickle with a real scipy csc regressor (what smplx can read);
    * ``SMPL_NEUTRAL.npz``: the same arrays in an ``.npz`` (float64, dense regressor);
    * ``J_regressor_extra.npy``: a SPIN-style [9, 6890] float64 extra regressor.
    """
    folder = tmp_path_factory.mktemp("smpl")
    for style in ("official", "clean", "npz"):
        smpl_synth.write_synthetic_smpl(folder, style=style, arrays=smpl_arrays)
    smpl_synth.write_j_regressor_extra(folder / "J_regressor_extra.npy", seed=0)
    return folder


@pytest.fixture(scope="session")
def smpl_pkl(synthetic_smpl_dir: Path) -> Path:
    """The official-style synthetic ``SMPL_NEUTRAL.pkl``."""
    return synthetic_smpl_dir / "SMPL_NEUTRAL.pkl"


@pytest.fixture(scope="session")
def smpl_npz(synthetic_smpl_dir: Path) -> Path:
    """The synthetic model as ``SMPL_NEUTRAL.npz``."""
    return synthetic_smpl_dir / "SMPL_NEUTRAL.npz"


@pytest.fixture(scope="session")
def j_regressor_extra_path(synthetic_smpl_dir: Path) -> Path:
    """The synthetic SPIN-style ``J_regressor_extra.npy``."""
    return synthetic_smpl_dir / "J_regressor_extra.npy"


@pytest.fixture(scope="session")
def smpl_model(smpl_pkl: Path, j_regressor_extra_path: Path) -> Any:
    """``hpsedge.runtime.smpl.SMPL`` on the official-style file, with the extra regressor (joints49)."""
    from hpsedge.runtime.smpl import SMPL

    return SMPL.load(smpl_pkl, j_regressor_extra=j_regressor_extra_path)


# ------------------------------------------------------------------------------ serving (#13): the serve venv
@pytest.fixture(scope="session")
def serve_python() -> Path:
    """Python of the separate virtualenv with ``hpsedge[serve,ort,cli]`` (PyTriton pins numpy<2).

    ``make test`` builds it (``make serve-venv``: ``.venv-serve``); ``HPSEDGE_SERVE_PYTHON`` points elsewhere.
    Missing, the serving tests FAIL (CI must run them); ``HPSEDGE_SKIP_SERVE=1`` skips them locally.
    """
    import os

    env = os.environ.get("HPSEDGE_SERVE_PYTHON")
    path = Path(env) if env else Path(__file__).resolve().parents[1] / ".venv-serve" / "bin" / "python"
    if path.exists():
        return path
    if os.environ.get("HPSEDGE_SKIP_SERVE") == "1":
        pytest.skip("HPSEDGE_SKIP_SERVE=1: serving tests skipped")
    pytest.fail(f"no serve virtualenv at {path}: run `make serve-venv` (or set HPSEDGE_SERVE_PYTHON)")
