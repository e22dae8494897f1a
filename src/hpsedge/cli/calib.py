"""``hpsedge calib make``: a thin wrapper over :func:`hpsedge.calib.sets.make_calibration_set`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from hpsedge.cli._common import console, err_console, new_app

calib_app = new_app("Calibration sets for INT8 (made with the runtime's own preprocessing).")


@calib_app.callback()
def _calib() -> None:
    """Calibration sets for INT8 (made with the runtime's own preprocessing)."""


@calib_app.command("make")
def make_cmd(
    model_dir: Annotated[Path, typer.Option("--model-dir", "-m", help="Export folder (manifest.json + model.onnx).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .npz (a .json sidecar is written beside it).")],
    images: Annotated[Path | None, typer.Option("--images", "-i", help="A folder of images (or one image).")] = None,
    video: Annotated[Path | None, typer.Option("--video", help="A video file (read with PyAV).")] = None,
    boxes: Annotated[
        Path | None,
        typer.Option("--boxes", "-b", help='Person boxes: COCO JSON or {"img.jpg": [[x1,y1,x2,y2], ...]} '
                     '(video: keyed by frame index). Default: the whole image is one box.'),
    ] = None,
    max_samples: Annotated[int, typer.Option("--max-samples", help="Persons in the set.")] = 512,
    select: Annotated[str, typer.Option("--select", help="random | uncertainty (POCO: spread over σ).")] = "random",
    seed: Annotated[int, typer.Option("--seed", help="Random seed (selection and order).")] = 0,
    every: Annotated[int | None, typer.Option("--every", help="Video: take every Nth frame.")] = None,
    frames: Annotated[int | None, typer.Option("--frames", help="Video: take N frames spread evenly.")] = None,
    bins: Annotated[int, typer.Option("--bins", help="σ bins for --select uncertainty.")] = 10,
    threads: Annotated[int | None, typer.Option("--threads", help="ONNX Runtime threads (uncertainty scoring).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output file.")] = False,
) -> None:
    """Make a calibration set (.npz keyed by graph input name + .json sidecar) for an export folder."""
    from hpsedge.calib.sets import make_calibration_set

    with Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err_console, transient=True,
    ) as progress:
        task = progress.add_task("calib", total=None)

        def step(description: str, completed: int, total: int | None) -> None:
            progress.update(task, description=description, completed=completed, total=total)

        result = make_calibration_set(
            model_dir, out, images=images, video=video, boxes=boxes, max_samples=max_samples, select=select,
            seed=seed, every=every, frames=frames, bins=bins, force=force, threads=threads, progress=step,
        )
    meta = result.meta
    size = result.path.stat().st_size / 1e6
    sel = meta["selection"]
    console.print(
        f"[green]✓[/green] {result.count} sample(s) for {meta['model']['name']} → [bold]{result.path}[/bold] "
        f"({size:.1f} MB; {sel['method']} selection from {sel['candidates']} person box(es), seed {meta['seed']})"
    )
    if meta["source"]["whole_image_boxes"]:
        console.print("  [yellow]no --boxes: each whole image was taken as one person box[/yellow]")
    hist = sel.get("sigma_histogram")
    if hist:
        console.print(f"  σ score bins {hist['edges'][0]:.3f}…{hist['edges'][-1]:.3f}: "
                      f"candidates {hist['candidates']}, chosen {hist['chosen']}")
    console.print(f"  sidecar: {result.sidecar}")
    console.print(f"  next: hpsedge export onnx ... --precision int8 --calib {result.path}")
