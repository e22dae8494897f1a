"""The ``hpsedge`` command line (typer).

Heavy imports (torch, onnx) happen inside the commands that need them, so ``hpsedge --help`` is quick and
``hpsedge run`` works on a machine that has only the runtime installed. User errors
(:class:`HpsedgeError`) are printed as one ``error:`` line plus a ``hint:`` and exit with code 2; no
traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

import hpsedge
from hpsedge.runtime.errors import HpsedgeError

log = logging.getLogger("hpsedge")
console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    name="hpsedge",
    help="Export confidence-aware 3D human pose-and-shape regressors to ONNX Runtime and TensorRT.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
export_app = typer.Typer(help="Export a zoo model: `onnx` (verified ONNX graph + manifest).", no_args_is_help=True)
smpl_app = typer.Typer(help="Inspect and convert SMPL body-model files.", no_args_is_help=True)
app.add_typer(export_app, name="export")
app.add_typer(smpl_app, name="smpl")

_state = {"debug": False}


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"hpsedge {hpsedge.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output (-vv: debug).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    level = logging.WARNING if quiet else (logging.INFO if verbose <= 1 else logging.DEBUG)
    if verbose >= 2:
        level = logging.DEBUG
    handler = RichHandler(console=err_console, show_time=False, show_path=False, markup=False)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    _state["debug"] = debug


@contextlib.contextmanager
def _progress(title: str) -> Iterator[callable]:
    """A one-line spinner whose text follows the steps of a long job."""
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task(title, total=None)

        def step(message: str) -> None:
            progress.update(task, description=f"{title}: {message}")
            log.debug("%s: %s", title, message)

        yield step


def _fmt_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


# -------------------------------------------------------------------------------------------------
@app.command("models")
def models_cmd() -> None:
    """List the model zoo: input size, inputs, outputs, parameter count."""
    from hpsedge.models.zoo import ZOO, count_parameters

    table = Table(title="hpsedge model zoo")
    for col in ("model", "family", "input", "extra inputs", "outputs", "params", "official checkpoint"):
        table.add_column(col)
    for name, spec in ZOO.items():
        h, w = spec.input_size
        extra = ", ".join(n for n in spec.input_names if n != "image") or "-"
        table.add_row(
            name,
            spec.family,
            f"{h}×{w}",
            extra,
            ", ".join(spec.output_names),
            f"{count_parameters(spec) / 1e6:.2f} M",
            spec.official_checkpoint or "-",
        )
    console.print(table)


@export_app.command("onnx")
def export_onnx_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="Zoo model name (see `hpsedge models`).")] = "poco-cliff",
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", "-c", help="Official or hpsedge checkpoint (.pt/.pth/.ckpt).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder [default: build/MODEL].")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Largest person batch the engine will take.")] = 16,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output folder.")] = False,
    unsafe_pickle: Annotated[
        bool,
        typer.Option("--unsafe-pickle", help="Allow full unpickling of a checkpoint you trust (can run code)."),
    ] = False,
    tiny: Annotated[bool, typer.Option("--tiny", hidden=True, help="Tiny test configuration.")] = False,
) -> None:
    """Export MODEL to OUT/model.onnx with a manifest, verified against PyTorch with ONNX Runtime."""
    from hpsedge.export.onnx import export_onnx

    out_dir = out or Path("build") / model
    with _progress(f"export {model}") as step:
        result = export_onnx(
            model,
            out_dir,
            checkpoint=checkpoint,
            opset=opset,
            max_batch=max_batch,
            force=force,
            tiny=tiny,
            unsafe_pickle=unsafe_pickle,
            progress=step,
        )
    m = result.manifest
    ver = m["verification"]
    size = _fmt_bytes(m["artifacts"]["onnx"]["bytes"])
    console.print(
        f"[green]✓[/green] {m['model']['name']} → [bold]{result.onnx_path}[/bold] ({size}, opset {m['opset']}, "
        f"{m['model']['params'] / 1e6:.1f} M params) in {result.seconds:.1f} s"
    )
    console.print(
        f"  parity vs PyTorch (ONNX Runtime CPU, N={'/'.join(map(str, ver['batches']))}): "
        f"worst relative error {ver['worst_rel_error']:.2e} (limit {ver['tolerance_rel']:g})"
    )
    for n, figs in ver["per_batch"].items():
        console.print("   N=" + n + ": " + ", ".join(f"{k} {v['max_abs']:.1e}" for k, v in figs.items()) + " (max abs)")
    if m["checkpoint"].get("random_init"):
        console.print("  [yellow]random weights (no --checkpoint): outputs are meaningless[/yellow]")
    console.print(f"  manifest: {result.out_dir / 'manifest.json'}")


# -------------------------------------------------------------------------------------------------
def main() -> None:
    """Console entry point: run the app, turning user errors into one clean line."""
    try:
        app()
    except HpsedgeError as exc:
        if _state["debug"]:
            raise
        err_console.print(f"[bold red]error:[/bold red] {exc.message}", highlight=False, soft_wrap=True)
        if exc.hint:
            err_console.print(f"[bold]hint:[/bold] {exc.hint}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
