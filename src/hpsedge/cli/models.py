"""``hpsedge models``: the model zoo (static metadata from the registry; no torch needed)."""

from __future__ import annotations

from rich.table import Table

from hpsedge.cli._common import console, export_side


def models_cmd() -> None:
    """List the model zoo: input size, inputs, outputs, parameter count (static metadata: no torch needed)."""
    with export_side("`hpsedge models`"):
        from hpsedge.models.registry import registered

    table = Table(title="hpsedge model zoo")
    for col in ("model", "family", "input", "extra", "params"):
        table.add_column(col, no_wrap=True)
    table.add_column("outputs")
    table.add_column("checkpoint", overflow="fold")
    for name, spec in registered().items():
        h, w = spec.input_size
        extra = ", ".join(n for n in spec.input_names if n != "image") or "-"
        table.add_row(
            name,
            spec.family,
            f"{h}×{w}",
            extra,
            f"{spec.params / 1e6:.2f} M" if spec.params else "?",
            ", ".join(spec.output_names),
            spec.official_checkpoint or "-",
        )
    console.print(table)
