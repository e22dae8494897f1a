"""``hpsedge smpl convert|check``: thin wrappers over :func:`hpsedge.runtime.smpl.convert_to_npz` and
:func:`hpsedge.runtime.smpl.describe`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hpsedge.cli._common import console, fmt_bytes, new_app
from hpsedge.errors import HpsedgeError

smpl_app = new_app("Inspect and convert SMPL body-model files.")


@smpl_app.command("convert")
def smpl_convert_cmd(
    src: Annotated[Path, typer.Argument(help="Official SMPL_*.pkl (chumpy objects are fine).")],
    dst: Annotated[Path, typer.Argument(help="Output .npz (float32, dense regressor).")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output file.")] = False,
) -> None:
    """Convert an SMPL .pkl into a clean float32 .npz (no pickle needed to read it back)."""
    from hpsedge.runtime.smpl import convert_to_npz

    path = convert_to_npz(src, dst, force=force)
    console.print(f"[green]✓[/green] wrote {path} ({fmt_bytes(path.stat().st_size)})")


@smpl_app.command("check")
def smpl_check_cmd(path: Annotated[Path, typer.Argument(help="SMPL .pkl or .npz")]) -> None:
    """Say what an SMPL file holds (kind, sizes, dtypes) and whether hpsedge can use it."""
    from hpsedge.runtime.smpl import describe

    info = describe(path)
    table = Table(title=str(path), show_header=False)
    for key, value in info.items():
        table.add_row(str(key), str(value))
    console.print(table)
    if not info.get("usable", True):
        raise HpsedgeError(f"{path} is not usable by hpsedge: {info.get('problem')}")

