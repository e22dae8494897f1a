"""``hpsedge inspect``: a thin wrapper over :func:`hpsedge.inspect.inspect_path`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hpsedge.cli._common import console
from hpsedge.errors import HpsedgeError


def inspect_cmd(
    path: Annotated[Path, typer.Argument(help="A build/export folder, its manifest, an .onnx or an .engine file.")],
) -> None:
    """Manifest summary, graph I/O, op histogram, and whether (and how) this machine can run it."""
    from hpsedge.inspect import inspect_path

    info = inspect_path(path)
    problems = info.pop("problems", None)
    for section, rows in info.items():
        if not rows:
            continue
        table = Table(title=section, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        for key, value in rows.items():
            table.add_row(str(key), str(value))
        console.print(table)
    if problems:
        raise HpsedgeError(f"{path} is not usable: " + "; ".join(str(v) for v in problems.values()))

