"""`hpsedge run` refuses inputs it cannot run before it loads the model (issue 26, Messages)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpsedge.errors import HpsedgeError
from hpsedge.runtime.images import check_images
from hpsedge.runtime.io import probe_image

ROOT = Path(__file__).parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "hpsedge", *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture()
def broken_model(tmp_path: Path) -> Path:
    """A folder whose manifest cannot load: an error about it means the model was loaded first."""
    d = tmp_path / "model"
    d.mkdir()
    (d / "manifest.json").write_text("{not json")
    return d


@pytest.mark.parametrize("option", ["--image", "--source"])
def test_a_non_image_is_refused_before_the_model_loads(tmp_path, broken_model, option):
    notes = tmp_path / "notes.jpg"
    notes.write_text("these are my notes, not a picture\n")
    res = _cli("run", str(broken_model), option, str(notes), "--out", str(tmp_path / "out"))
    err = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert res.returncode != 0 and len(err) == 1, res.stderr
    assert "cannot read" in err[0] and "notes.jpg" in err[0] and "as an image" in err[0], err[0]
    assert "manifest" not in err[0]


def test_a_folder_needs_one_readable_image(tmp_path, broken_model):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG not really")
    (folder / "b.jpg").write_text("text")
    with pytest.raises(HpsedgeError, match="none of the 2 files is a readable image"):
        check_images(sorted(folder.iterdir()))
    res = _cli("run", str(broken_model), "--image", str(folder), "--out", str(tmp_path / "out"))
    assert res.returncode != 0 and "none of the 2 files" in res.stderr and "manifest" not in res.stderr
    Image.new("RGB", (8, 6)).save(folder / "c.png")
    check_images(sorted(folder.iterdir()))  # one readable image: the others are skipped later, by name
    assert probe_image(folder / "c.png") == (8, 6)
    # with a readable image, the model's own error comes next
    res = _cli("run", str(broken_model), "--image", str(folder / "c.png"), "--out", str(tmp_path / "out"))
    assert res.returncode != 0 and "manifest" in res.stderr
