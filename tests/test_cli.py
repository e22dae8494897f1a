"""The `hpsedge` command line: help, version, models, export, clean errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import hpsedge


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hpsedge", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_help_and_version() -> None:
    res = run("--help")
    assert res.returncode == 0
    for cmd in ("models", "export", "smpl"):
        assert cmd in res.stdout
    res = run("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"hpsedge {hpsedge.__version__}"
    res = run("export", "onnx", "--help")
    assert res.returncode == 0 and "--checkpoint" in res.stdout and "--force" in res.stdout


def test_models_lists_the_zoo() -> None:
    res = run("models")
    assert res.returncode == 0
    for name in ("poco-cliff", "poco-pare", "poco-hmr", "cliff", "pare", "hmr"):
        assert name in res.stdout
    assert "224×224" in res.stdout and "79.39 M" in res.stdout and "bbox_info" in res.stdout


def test_export_then_refuse_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    res = run("export", "onnx", "--model", "poco-pare", "--tiny", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "worst relative error" in res.stdout and "RANDOM weights" in res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    stamp = manifest["created"]
    res = run("export", "onnx", "--model", "poco-pare", "--tiny", "--out", str(out))
    assert res.returncode == 2
    assert "already exists" in res.stderr and "--force" in res.stderr
    assert "Traceback" not in res.stderr
    assert json.loads((out / "manifest.json").read_text())["created"] == stamp
    res = run("export", "onnx", "--model", "poco-pare", "--tiny", "--out", str(out), "--force")
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "onnx", "--model", "poco-clif"], "did you mean 'poco-cliff'"),
        (["export", "onnx", "--model", "poco-hmr", "--tiny", "--checkpoint", "missing.pt"], "checkpoint not found"),
    ],
)
def test_user_errors_are_one_line_without_traceback(tmp_path: Path, args: list[str], message: str) -> None:
    res = run(*args, "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists()


def test_corrupt_checkpoint_via_cli(tmp_path: Path) -> None:
    bad = tmp_path / "poco_cliff.pt"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    res = run("export", "onnx", "--model", "poco-cliff", "--checkpoint", str(bad), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "poco_cliff.pt" in res.stderr


def test_smpl_convert_and_check(synthetic_smpl_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "SMPL_NEUTRAL.npz"
    res = run("smpl", "convert", str(synthetic_smpl_dir / "SMPL_NEUTRAL.pkl"), str(out))
    assert res.returncode == 0, res.stderr
    assert out.exists() and "wrote" in res.stdout
    res = run("smpl", "convert", str(synthetic_smpl_dir / "SMPL_NEUTRAL.pkl"), str(out))
    assert res.returncode == 2 and "--force" in res.stderr and "Traceback" not in res.stderr
    res = run("smpl", "check", str(out))
    assert res.returncode == 0, res.stderr
    assert "6890" in res.stdout
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"\x80\x02}q\x00")  # a pickle cut short
    res = run("smpl", "check", str(bad))
    assert res.returncode == 2 and "Traceback" not in res.stderr
