"""``hpsedge calib make`` (:func:`hpsedge.calib.sets.make_calibration_set`) and ``hpsedge calib error-bound``
(:func:`hpsedge.eval.error_bound.fit_error_bound`): thin wrappers."""

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

calib_app = new_app("Calibration sets for INT8, and error bounds in mm fitted from a val run.")


@calib_app.callback()
def _calib() -> None:
    """Calibration sets for INT8 (made with the runtime's own preprocessing), and error bounds in mm."""


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


@calib_app.command("error-bound")
def error_bound_cmd(
    folder: Annotated[Path, typer.Argument(help="Build folder to store error_bound.json in (its manifest lists it).")],
    val_results: Annotated[
        Path, typer.Option("--val-results", help="The --out folder of a `hpsedge val` run of this folder.")
    ],
    coverage: Annotated[float, typer.Option("--coverage", help="Nominal coverage of the bounds (a probability).")] = 0.9,
    label: Annotated[
        str | None, typer.Option("--label", help="Which folder of the val run [default: the one at FOLDER].")
    ] = None,
    uncertainty: Annotated[str | None, typer.Option(
        "--uncertainty", help="sigma | score | confidence [default: sigma for POCO, confidence for TokenHMR].")] = None,
    groups: Annotated[
        str, typer.Option("--groups", help="parts (body, torso, arms, legs) | joints (body + each joint).")
    ] = "parts",
    holdout: Annotated[float, typer.Option("--holdout", help="Share of the samples held out to measure coverage.")] = 0.4,
    fit_fraction: Annotated[
        float, typer.Option("--fit-fraction", help="Share of the samples that fit the uncertainty scale.")
    ] = 0.2,
    split: Annotated[str, typer.Option("--split", help="auto | sequence (image folder) | sample.")] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split.")] = 0,
    plot: Annotated[Path | None, typer.Option("--plot", help="Also write the reliability diagram (PNG) here.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an error_bound.json hpsedge wrote before.")] = False,
) -> None:
    """Fit error bounds in mm (split conformal) from a val run and store them in the build folder."""
    from hpsedge.eval.error_bound import ErrorBoundConfig, fit_error_bound

    cfg = ErrorBoundConfig(coverage=coverage, uncertainty=uncertainty, groups=groups, fit_fraction=fit_fraction,
                           holdout_fraction=holdout, split=split, seed=seed, force=force)
    doc = fit_error_bound(folder, val_results, cfg, label=label, plot=plot)
    for name, g in doc["groups"].items():
        console.print(f"{name}: held-out coverage {g['achieved_coverage']:.3f} (nominal {doc['coverage']:.2f}, "
                      f"{g['n_holdout']} samples), mean bound {g['mean_bound_mm']:.1f} mm")
    console.print(f"wrote {doc['written']} (split {doc['split']['how']}; uncertainty: {doc['uncertainty']})")
