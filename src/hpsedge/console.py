"""The command line's rich consoles and log handler, built in one place so they read well both in a
terminal and in a log file or CI job.

In a terminal, rich sizes output to the window as usual. When the output is not a terminal (a pipe, a
file, CI), rich would fall back to 80 columns and break suggested commands, paths and table rows across
lines, so that they can no longer be copied or grepped. There the consoles never soft-wrap printed text
and are :data:`LOG_WIDTH` columns wide (tables take only the width their content needs), and log
records are written one plain line each, without rich's padded columns.
"""

from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.logging import RichHandler

#: columns used when the output is not a terminal: wide enough that no line of ours is broken
LOG_WIDTH = 400


def make_console(stderr: bool = False) -> Console:
    """A console for stdout (or stderr) that does not wrap lines when the output is not a terminal."""
    console = Console(stderr=stderr, soft_wrap=True)
    if not console.is_terminal:
        console.width = LOG_WIDTH
    return console


class _PlainHandler(logging.StreamHandler):
    """One line per record on whatever ``sys.stderr`` (or ``sys.stdout``) is when the record is written, as
    rich's console does (a stream captured once would outlive a test runner's or a caller's redirection)."""

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)-8s %(message)s"))

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr if self._stderr else sys.stdout

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def make_log_handler(console: Console) -> logging.Handler:
    """Rich log rendering in a terminal; elsewhere one ``LEVEL message`` line per record, never wrapped."""
    if console.is_terminal:
        return RichHandler(console=console, show_time=False, show_path=False, markup=False)
    return _PlainHandler(stderr=console.stderr)
