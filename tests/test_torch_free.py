"""The device side stands alone: a fresh virtualenv with only ``pip install '.[ort,cli]'`` (no torch, no
onnx) runs every device-side command on a build folder made by the full environment.

This test creates that virtualenv (``python -m venv``; pip's cache makes the second run quick), proves
torch and onnx are absent in it, then runs the ``hpsedge`` console script there. Commands that truly need
the export side must answer with one ``error:`` line naming the extra, and a bare install (no typer/rich)
must do the same for the whole command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpsedge.export.build import BuildConfig, export_build

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "examples" / "astronaut.jpg"
EXPORT_ONLY = ("torch", "onnx", "smplx", "scipy", "cv2", "onnxscript")


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({"PYTHONNOUSERSITE": "1", "COLUMNS": "200", "NO_COLOR": "1"})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with hpsedge[ort,cli] installed from this checkout (not editable)."""
    env_dir = tmp_path_factory.mktemp("torchfree") / "venv"
    res = _run([sys.executable, "-m", "venv", str(env_dir)])
    assert res.returncode == 0, res.stderr
    py = env_dir / "bin" / "python"
    res = _run([str(py), "-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check",
                f"{ROOT}[ort,cli]"], cwd=tmp_path_factory.getbasetemp())
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return env_dir


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An FP16 build folder made by the full (torch) environment, tiny config."""
    out = tmp_path_factory.mktemp("tfbuild") / "poco-cliff-fp16"
    export_build(BuildConfig(model="poco-cliff", out=out, precision="fp16", tiny=True, max_batch=4))
    return out


def hps(venv: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return _run([str(venv / "bin" / "hpsedge"), *map(str, args)], cwd=cwd)


def _one_error_line(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    err = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert err[0].startswith("error:"), res.stderr
    for needle in needles:
        assert needle in err[0], err[0]


def test_torch_and_onnx_are_absent(venv: Path) -> None:
    code = ("import importlib.util as u, json; "
            f"print(json.dumps({{m: u.find_spec(m) is not None for m in {EXPORT_ONLY!r}}}))")
    res = _run([str(venv / "bin" / "python"), "-c", code])
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == dict.fromkeys(EXPORT_ONLY, False)
    # the TensorRT core and the on-device build import without torch
    res = _run([str(venv / "bin" / "python"), "-c",
                "import sys, hpsedge.runtime.trt.builder, hpsedge.export.build, hpsedge.cli; "
                "assert 'torch' not in sys.modules and 'onnx' not in sys.modules"])
    assert res.returncode == 0, res.stderr


def test_device_commands_run_without_torch(venv: Path, folder: Path, smpl_pkl: Path, tmp_path: Path) -> None:
    res = hps(venv, "--help")
    assert res.returncode == 0 and "export" in res.stdout, res.stderr

    res = hps(venv, "inspect", folder)
    assert res.returncode == 0, res.stderr
    assert "model.fp16.onnx" in res.stdout and "trtexec.sh" in res.stdout and "ONNX Runtime" in res.stdout

    # the on-device engine build reaches TensorRT (absent here) and says so in one line, no traceback
    res = hps(venv, "export", "build", "--on-device", folder)
    _one_error_line(res, "no TensorRT engine could be built", "TensorRT is not installed")
    assert "hpsedge[trt]" in res.stderr and "trtexec.sh" in res.stderr

    npz = tmp_path / "SMPL_NEUTRAL.npz"
    res = hps(venv, "smpl", "convert", smpl_pkl, npz)
    assert res.returncode == 0 and npz.is_file(), res.stderr
    res = hps(venv, "smpl", "check", npz)
    assert res.returncode == 0 and "6890" in res.stdout, res.stdout + res.stderr

    out = tmp_path / "run"
    res = hps(venv, "run", folder, "--image", IMAGE, "--smpl", npz, "--out", out)
    assert res.returncode == 0, res.stderr
    doc = json.loads((out / "astronaut.json").read_text())
    assert len(doc["persons"]) == 1 and doc["backend"] == "ort (CPUExecutionProvider)"
    assert (out / "astronaut_overlay.png").is_file() and (out / "astronaut.npz").is_file()

    calib = tmp_path / "calib.npz"
    res = hps(venv, "calib", "make", "--model-dir", folder, "--out", calib, "--images", IMAGE.parent)
    assert res.returncode == 0 and calib.is_file(), res.stderr

    res = hps(venv, "models")
    if (ROOT / "src" / "hpsedge" / "models" / "registry.py").exists():
        # the zoo's static metadata (hpsedge.models.registry) lists the models without torch
        assert res.returncode == 0, res.stderr
        for name in ("poco-cliff", "poco-pare", "hmr"):
            assert name in res.stdout
    else:  # the zoo is still defined with torch modules: at least one clean line naming the extra
        _one_error_line(res, "`hpsedge models` needs the export extras", "pip install 'hpsedge[export]'")


def test_export_side_commands_say_which_extra(venv: Path, tmp_path: Path) -> None:
    res = hps(venv, "export", "onnx", "--tiny", "--out", tmp_path / "x")
    _one_error_line(res, "needs the export extras", "pip install 'hpsedge[export]'")
    res = hps(venv, "export", "build", "--tiny", "--out", tmp_path / "y")
    _one_error_line(res, "needs the export extras", "pip install 'hpsedge[export]'")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_bare_install_prints_one_line(venv: Path) -> None:
    """`pip install hpsedge` alone has no typer/rich: the console script says so in one line (runs last)."""
    py = venv / "bin" / "python"
    res = _run([str(py), "-m", "pip", "uninstall", "--quiet", "-y", "typer", "rich"])
    assert res.returncode == 0, res.stderr
    for cmd in ([str(venv / "bin" / "hpsedge")], [str(venv / "bin" / "hpsedge"), "run", "x"], [str(py), "-m", "hpsedge"]):
        res = _run(cmd)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert res.stderr.strip().splitlines() == [
            "error: the hpsedge command needs the CLI extras (missing: typer, rich): pip install 'hpsedge[cli]'"
        ]


# ---- fast checks in this environment (no virtualenv): modules hidden with sys.modules[name] = None ------
def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)


def test_entry_shim_without_typer() -> None:
    res = _python("import sys; sys.modules['typer'] = None; sys.argv = ['hpsedge', '--help']\n"
                  "from hpsedge._entry import main; main()")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip() == ("error: the hpsedge command needs the CLI extras (missing: typer): "
                                  "pip install 'hpsedge[cli]'")


def test_export_commands_without_torch_say_which_extra(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['torch'] = None; sys.argv = ['hpsedge', 'export', 'onnx', '--tiny', "
            f"'--out', {str(tmp_path / 'o')!r}]\nfrom hpsedge._entry import main; main()")
    res = _python(code)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip() == ("error: `hpsedge export onnx` needs the export extras (no module 'torch' here): "
                                  "pip install 'hpsedge[export]'")
    assert not (tmp_path / "o").exists()
