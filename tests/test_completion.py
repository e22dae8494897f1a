"""Shell completion is on (issue 26): `--show-completion` prints a script for the `hpsedge` command (also under
`python -m hpsedge`), and the completion protocol completes commands and options."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "hpsedge", *args], capture_output=True, text=True, timeout=120, env=full)


def test_show_completion_names_the_hpsedge_command():
    # the shell is detected from the parent processes; typer's switch lets the test name it
    res = _run("--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert res.returncode == 0, res.stderr
    assert "complete -o default -F _hpsedge_completion hpsedge" in res.stdout
    assert "_HPSEDGE_COMPLETE=complete_bash" in res.stdout
    assert "--install-completion" in _run("--help").stdout


def test_completion_completes_commands_and_options():
    def complete(words: str, cword: int) -> list[str]:
        res = _run(env={"_HPSEDGE_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)})
        assert res.returncode == 0, res.stderr
        return res.stdout.split()

    assert complete("hpsedge exp", 1) == ["export"]
    assert complete("hpsedge export sl", 2) == ["slim"]
    assert "--target" in complete("hpsedge export slim DIR --ta", 4)
