"""Shared pytest fixtures. Add new fixtures below, one section per area.

Determinism: every random draw in the tests is seeded. :data:`TEST_SEED` (0, or ``HPSEDGE_TEST_SEED=N``) seeds
the random weights of the shared tiny exports (:func:`tiny_export`), and an autouse fixture re-seeds Python's,
numpy's legacy and torch's global generators before every test, so a test gives the same result alone, in the
whole suite or on any pytest-xdist worker. Tests that assert a property of random weights (e.g. the INT8 drift
tests) use :data:`TEST_SEED`, so ``HPSEDGE_TEST_SEED=1 pytest ...`` re-runs them on other weights.

Parallel runs: ``make test`` runs ``pytest -n 2 --dist loadfile``: each test file stays on one worker (its module
fixtures are built once, its tests run in order), and :func:`pytest_collection_modifyitems` puts the longest files
first. Tests that start servers take free ports from the OS and write only under ``tmp_path``, so two workers
never collide.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import smpl_synth

#: the seed of every random draw the tests make (weights, calibration draws, synthetic inputs)
TEST_SEED = int(os.environ.get("HPSEDGE_TEST_SEED", "0"))


# ------------------------------------------------------------------------------------------ determinism
@pytest.fixture(autouse=True)
def _seeded_global_rngs() -> None:
    """Every test starts from the same global RNG state, whichever worker runs it and after whichever test."""
    random.seed(TEST_SEED)
    np.random.seed(TEST_SEED)
    torch = sys.modules.get("torch")  # not imported here: the torch-free tests must not pull it in
    if torch is not None:
        torch.manual_seed(TEST_SEED)


@pytest.fixture(scope="session")
def test_seed() -> int:
    """:data:`TEST_SEED` as a fixture (``HPSEDGE_TEST_SEED`` overrides it)."""
    return TEST_SEED


# --------------------------------------------------------------------------------- xdist scheduling
#: test files by expected length, longest first (the full-size ViT-H builds and exports take minutes each); `make
#: test` runs ``-n 2 --dist loadfile --no-loadscope-reorder``, which hands whole files to the workers in the order
#: their first test was collected, so these start first and the short files fill in around them
LONGEST_FIRST = (
    "test_fullsize_int8.py",
    "test_fullsize_precision.py",
    "test_tokenhmr_export.py",
    "test_hmr2.py",
    "test_export_onnx.py",
    "test_torch_free.py",
    "test_build.py",
    "test_precision.py",
    "test_registry.py",
    "test_cli.py",
)
#: files that start servers with drain deadlines: last, beside the short files rather than a full-size build (a
#: drain test missed its 90 s deadline once next to the full-size HMR 2.0 parity test)
LAST = ("test_serve.py", "test_triton_export.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files of :data:`LONGEST_FIRST` first, in that order; the order of the tests within a file is kept.

    (pytest-xdist's ``--dist loadgroup`` would allow finer groups, but with pytest 9 it cannot rename the
    node ids it groups by, so ``make test`` groups by file.)"""
    def rank(item: pytest.Item) -> int:
        name = Path(str(item.fspath)).name
        if name in LAST:
            return len(LONGEST_FIRST) + 1 + LAST.index(name)
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


# ----------------------------------------------------------------------------- shared tiny exports
@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``tiny_export("poco-pare")``: the folder ``export_onnx(name, tiny=True, seed=TEST_SEED)`` writes
    (``manifest.json`` + ``model.onnx``, FP32, random weights), made once per session and worker.

    Shared by every test that asks for it: treat it as read-only (``shutil.copytree`` it to edit or to add a
    precision). The same seed gives the same graph, so every worker's copy is identical.
    """
    root = tmp_path_factory.mktemp("tiny-exports")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            from hpsedge.export.onnx import export_onnx

            made[name] = export_onnx(name, root / name, tiny=True, seed=TEST_SEED).out_dir
        return made[name]

    return get


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
