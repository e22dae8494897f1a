"""The runtime is thin: loading and running a Predictor never imports torch, onnx or smplx."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hpsedge.export.onnx import export_onnx

RUNTIME = Path(__file__).parents[1] / "src" / "hpsedge" / "runtime"
FORBIDDEN = ("torch", "onnx", "smplx", "scipy", "cv2", "tensorrt", "cuda")


def test_runtime_sources_import_nothing_heavy_at_module_level() -> None:
    """Static guard: no module-level import of a heavy package anywhere in hpsedge/runtime."""
    for path in RUNTIME.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in FORBIDDEN and not name.startswith("hpsedge.models") and not name.startswith(
                    "hpsedge.export"
                ), f"{path.name} imports {name} at module level"


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx("poco-cliff", tmp_path_factory.mktemp("rt") / "poco-cliff", tiny=True).out_dir


def test_predictor_end_to_end_imports_only_numpy_and_onnxruntime(tiny_export: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import hpsedge.runtime
        from hpsedge.runtime import Predictor
        p = Predictor.load({str(tiny_export)!r}, backend="ort", device="cpu")
        img = np.zeros((240, 320, 3), np.uint8)
        res = p.predict(img, [[10, 10, 200, 230]])
        assert len(res) == 1 and res[0].confidence is not None
        from hpsedge.runtime import draw, io, camera, confidence, rotations  # noqa
        from hpsedge.runtime.trt import compat  # noqa
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {FORBIDDEN!r})
        print("HEAVY:", heavy)
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "HEAVY: []" in res.stdout, res.stdout


def test_bare_import_is_light() -> None:
    code = "import sys, hpsedge.runtime; print(sorted(m for m in sys.modules if m.startswith(('numpy', 'onnxruntime'))))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr
