"""What the command line prints when its output is not a terminal (a log, CI): nothing a user copies —
a suggested command, a path, an error line — is split across lines; ``--help`` shows flags as flags,
defaults, and bracketed text literally; ``hpsedge run`` on a folder writes side-view overlays and a contact
sheet, flags people behind the camera, and says "no --boxes" once."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).parents[1] / "examples" / "astronaut.jpg"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with both streams captured through pipes (not a terminal) and no COLUMNS hint."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE")}
    return subprocess.run([sys.executable, "-m", "hpsedge", *args], capture_output=True, text=True, timeout=300,
                          env=env)


def _long_dir(root: Path, name: str) -> Path:
    """A folder whose path is far longer than 80 characters."""
    path = root / ("a_rather_long_folder_name_for_the_logs_" * 2) / ("and_one_more_level_" * 3) / name
    assert len(str(path)) > 150
    return path


def _line_with(text: str, *needles: str) -> str:
    """The one line of ``text`` holding every needle (fails when they are split over lines)."""
    lines = [line for line in text.splitlines() if all(n in line for n in needles)]
    assert lines, f"no single line holds {needles!r} in:\n{text}"
    return lines[0]


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A tiny poco-cliff build folder at a long path, made by the CLI (its output is kept)."""
    folder = _long_dir(tmp_path_factory.mktemp("msg"), "poco-cliff-fp32")
    res = _cli("export", "build", "--model", "poco-cliff", "--precision", "fp32", "--tiny", "--out", str(folder))
    assert res.returncode == 0, res.stderr
    return folder, res


@pytest.fixture()
def two_images(tmp_path: Path) -> Path:
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "a.jpg")
    with Image.open(EXAMPLE) as im:
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((300, 400)).save(folder / "b.png")
    return folder


# ------------------------------------------------------------------------------------------------ help
@pytest.mark.parametrize("command", [["run"], ["export", "onnx"], ["export", "build"], ["calib", "make"],
                                     ["curate"], ["smpl", "convert"], ["inspect"], ["export", "triton"],
                                     ["serve"], ["val"], ["bench"]])
def test_help_is_plain_with_flags_defaults_and_literal_brackets(command: list[str]) -> None:
    res = _cli(*command, "--help")
    assert res.returncode == 0, res.stderr
    assert "<bool>" not in res.stdout and "╭" not in res.stdout, res.stdout  # click's plain help, flags as flags
    if command == ["run"]:
        assert '{"img.jpg": [[x1,y1,x2,y2]' in " ".join(res.stdout.split())
        assert "[default: hpsedge-out]" in res.stdout and "[default: auto]" in res.stdout
        assert "--side-view" in res.stdout
        assert "--force " in res.stdout or res.stdout.rstrip().endswith("--force")


def test_every_typer_app_uses_plain_help() -> None:
    """rich_markup_mode=None on every (sub-)app: with rich markup, [[x1,y1,...]] would be eaten as a tag."""
    from hpsedge.cli import app

    apps, seen = [app], 0
    while apps:
        current = apps.pop()
        assert current.rich_markup_mode is None, current.info.name
        seen += 1
        apps.extend(group.typer_instance for group in current.registered_groups)
    assert seen >= 4  # hpsedge, export, smpl, calib


# --------------------------------------------------------------------------------------- no wrapping
def test_build_suggests_commands_on_one_line(build: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    folder, res = build
    _line_with(res.stdout, "✓", str(folder))
    _line_with(res.stdout, "next:", f"hpsedge run {folder} --image photo.jpg", f"hpsedge inspect {folder}")
    _line_with(res.stdout, "no TensorRT engine built", "--on-device")


def test_run_paths_and_errors_stay_on_one_line(build: tuple[Path, subprocess.CompletedProcess[str]],
                                               tmp_path: Path) -> None:
    folder, _ = build
    out = _long_dir(tmp_path, "out")
    res = _cli("run", str(folder), "--image", str(EXAMPLE), "--out", str(out))
    assert res.returncode == 0, res.stderr
    _line_with(res.stdout, "✓", "1 image(s)", str(out), "poco-cliff")
    _line_with(res.stdout, "person at", "confidence", "translation")
    # log records are one plain line each, not rich's padded 80-column blocks
    assert not any(line.endswith("  ") for line in res.stderr.splitlines()), res.stderr
    # an error about a long path: one `error:` line holding the whole path, and its hint
    res = _cli("run", str(folder), "--image", str(EXAMPLE), "--out", str(out))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    _line_with(res.stderr, "error:", str(out), "not empty")
    _line_with(res.stderr, "hint:", "--force")
    missing = _long_dir(tmp_path, "missing_photo.jpg")
    res = _cli("run", str(folder), "--image", str(missing), "--out", str(tmp_path / "o2"))
    assert res.returncode == 2
    _line_with(res.stderr, "error:", str(missing))


def test_inspect_prints_the_accuracy_block_as_a_table(build: tuple[Path, subprocess.CompletedProcess[str]],
                                                     tmp_path: Path) -> None:
    folder = tmp_path / "with-accuracy"
    shutil.copytree(build[0], folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["accuracy"] = {  # the short form hpsedge.calib.report.summary writes
        "precision": "fp16", "inputs": "seeded random inputs (N=16, seed 0)", "persons": 16,
        "pose_deg_mean": 0.0123, "pose_deg_p95": 0.0456, "pose_deg_worst_joint": 0.0789, "worst_joint": "left_wrist",
        "betas_abs_max": 1.5e-4, "cam_abs_max": 2e-4, "passed": True,
        "thresholds": {"max_drop_deg": 1.0, "min_sigma_rank_corr": 0.95}, "report": "report.json",
        "sigma_abs_max": 3e-4, "sigma_rank_corr": 0.99876, "latency_ms": {"batch": 1, "fp32": 49.14, "fp16": 70.47},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    res = _cli("inspect", str(folder))
    assert res.returncode == 0, res.stderr
    assert "{'" not in res.stdout and "'pose_deg_mean'" not in res.stdout, res.stdout
    _line_with(res.stdout, "accuracy vs fp32 (fp16)")
    _line_with(res.stdout, "pose error, mean", "0.0123°")
    _line_with(res.stdout, "worst joint", "left_wrist")
    _line_with(res.stdout, "σ score rank correlation", "0.999")
    _line_with(res.stdout, "latency", "fp32 49.1 ms, fp16 70.5 ms")
    _line_with(res.stdout, "verdict", "within thresholds")
    # every table row on one line: the longest value is not folded
    _line_with(res.stdout, "preprocessing", "input_size=", "bbox_info=True")


# ----------------------------------------------------------------------------- run: folder, side view
def test_run_folder_side_view_contact_sheet_and_one_no_boxes_message(
    build: tuple[Path, subprocess.CompletedProcess[str]], two_images: Path, tmp_path: Path
) -> None:
    from PIL import Image

    out = tmp_path / "out"
    res = _cli("run", str(build[0]), "--image", str(two_images), "--side-view", "--out", str(out))
    assert res.returncode == 0, res.stderr
    both = res.stdout + res.stderr
    assert both.count("whole image") == 1 and "no boxes given" not in both, both
    for name in ("a.jpg", "b.png"):
        with Image.open(two_images / name) as src, Image.open(out / f"{Path(name).stem}_overlay.png") as ov:
            w, h = src.size
            assert ov.size[1] == h and ov.size[0] > w * 1.3, (name, ov.size, src.size)
            panel = np.asarray(ov.convert("RGB"))[:, w:]
            # the second panel is the side view's dark background, not a copy of the photo
            assert (np.abs(panel.astype(int) - (28, 28, 32)).sum(axis=2) < 10).mean() > 0.6
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.size[0] >= 2 * 300 and sheet.size[1] > 100
    _line_with(res.stdout, "contact sheet", str(out / "contact_sheet.png"))
    # a single image gets no contact sheet
    res = _cli("run", str(build[0]), "--image", str(EXAMPLE), "--out", str(tmp_path / "one"))
    assert res.returncode == 0 and not (tmp_path / "one" / "contact_sheet.png").exists()


def test_people_behind_the_camera_are_flagged_in_the_summary(
    build: tuple[Path, subprocess.CompletedProcess[str]], two_images: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process (the predictor is patched so that everyone lands behind the camera)."""
    from typer.testing import CliRunner

    from hpsedge.cli import app
    from hpsedge.runtime.predictor import Predictor

    predict = Predictor.predict

    def behind(self: Predictor, *args: object, **kwargs: object) -> list:
        return [dataclasses.replace(r, behind_camera=True) for r in predict(self, *args, **kwargs)]

    monkeypatch.setattr(Predictor, "predict", behind)
    runner = CliRunner()
    res = runner.invoke(app, ["run", str(build[0]), "--image", str(EXAMPLE), "--out", str(tmp_path / "one")])
    assert res.exit_code == 0, res.output
    _line_with(res.output, "person at", "behind the camera: not visible")
    doc = json.loads((tmp_path / "one" / "astronaut.json").read_text())
    assert doc["persons"][0]["behind_camera"] is True
    res = runner.invoke(app, ["run", str(build[0]), "--image", str(two_images), "--out", str(tmp_path / "two")])
    assert res.exit_code == 0, res.output
    _line_with(res.output, "2 person(s) behind the camera: not visible")


def test_the_legend_comes_from_the_manifest(build: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """`hpsedge run` and the video overlay name the model and the rule that made the colours."""
    from hpsedge.runtime.draw import legend_for
    from hpsedge.runtime.manifest import load_manifest

    legend = legend_for(load_manifest(build[0]))
    assert legend.splitlines()[0] == "poco-cliff" and "pelvis σ₀" in legend and "accumulated σ" in legend
