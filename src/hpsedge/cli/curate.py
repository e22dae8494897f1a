"""``hpsedge curate``: a thin wrapper over :func:`hpsedge.curate.curate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hpsedge.cli._common import parse_precision


def curate_cmd(
    export_dir: Annotated[Path, typer.Argument(help="Export folder of a POCO model (with manifest.json).")],
    images: Annotated[Path, typer.Option("--images", "-i", help="Folder of images (searched recursively).")],
    boxes: Annotated[
        Path,
        typer.Option("--boxes", "-b", help='Boxes: COCO-style JSON, {"img.jpg": [[x1,y1,x2,y2], ...]}, or a folder '
                                           "of per-image <stem>.json files."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (an unfinished job there is resumed).")] = Path(
        "hpsedge-curate"
    ),
    rule: Annotated[
        str,
        typer.Option(help="Who is kept: 'pelvis_sigma<0.3' (official), mean_sigma / max_sigma / score / confidence "
                          "clauses joined by 'and', or 'all'."),
    ] = "pelvis_sigma<0.3",
    ray: Annotated[bool, typer.Option("--ray", help="Run on Ray Data (a local Ray unless --ray-address).")] = False,
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", metavar="ADDRESS",
                     help="Ray cluster to join, e.g. ray://HOST:10001 (implies --ray)."),
    ] = None,
    actors: Annotated[int | None, typer.Option(help="Ray actor pool size (default: one per CPU).")] = None,
    shard_size: Annotated[int, typer.Option(help="Images per shard (unit of restart and of Ray work).")] = 256,
    backend: Annotated[str, typer.Option(help="auto | ort | trt")] = "auto",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | tensorrt (ONNX Runtime), or a GPU index.")] = "auto",
    threads: Annotated[int | None, typer.Option(help="ONNX Runtime threads (per Ray actor: 1 by default).")] = None,
    precision: Annotated[str | None, typer.Option(help="fp32 | fp16 | int8 graph of the folder [default: the "
                                                  "folder's own].", callback=parse_precision)] = None,
    force: Annotated[bool, typer.Option("--force", help="Discard shards of an earlier job in --out.")] = False,
    smpl: Annotated[Path | None, typer.Option(help="SMPL model (.npz/.pkl) for `part`, the 2D keypoints.")] = None,
    j_regressor_extra: Annotated[
        Path | None, typer.Option(help="J_regressor_extra.npy (SPIN's 9 extra joints) for `part`.")
    ] = None,
    part: Annotated[
        bool, typer.Option("--part/--no-part", help="Write the 24 SPIN keypoints of each prediction as `part` "
                                                     "(needs --smpl and --j-regressor-extra); --no-part: zeros.")
    ] = True,
    round_boxes: Annotated[
        bool, typer.Option("--round-boxes/--no-round-boxes",
                           help="Predict on the integer crop (centre, side) that POCO's trainer takes.")
    ] = True,
    var: Annotated[
        bool, typer.Option("--var", help="Also write σ as `var`: the official loader then keeps only people with "
                                         "pelvis σ < its DATASET.UNCERT_THRESHOLD (0.3).")
    ] = False,
    trainer_threshold: Annotated[
        float, typer.Option(help="The trainer's DATASET.UNCERT_THRESHOLD, for the summary's count of dropped rows.")
    ] = 0.3,
    strict: Annotated[bool, typer.Option("--strict", help="Exit non-zero when nobody is kept.")] = False,
) -> None:
    """Curate pseudo-labels: keep confident people, write a SPIN/EFT/POCO training .npz + summary."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hpsedge.cli._common import err_console
    from hpsedge.curate.core import OUTPUT_NAME, curate

    with Progress(
        TextColumn("[bold]curate"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(), console=err_console, transient=True,
    ) as bar:
        task = bar.add_task("curate", total=None, rate="")

        def progress(done: int, total: int, rate: float) -> None:
            bar.update(task, completed=done, total=total, rate=f"{rate:.1f} img/s")

        summary = curate(
            export_dir, images, boxes, out, rule=rule, backend=backend, device=device, threads=threads,
            precision=precision, shard_size=shard_size, ray=ray_address or ("local" if ray else None),
            num_actors=actors, force=force, progress=progress, smpl=smpl, j_regressor_extra=j_regressor_extra,
            part=part, round_boxes=round_boxes, write_var=var, trainer_threshold=trainer_threshold, strict=strict,
        )
    for warning in summary.get("warnings", []):
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(
        f"✓ kept {summary['kept']} of {summary['people']} people ({100 * summary['kept_fraction']:.1f} %) from "
        f"{summary['images']} images by rule '{summary['rule']}' → {out / OUTPUT_NAME} "
        f"(summary.json, sigma_hist.png; {summary['engine']}, {summary['seconds']:.1f} s)"
    )
