"""``hpsedge val`` and ``hpsedge bench``: thin wrappers over :func:`hpsedge.eval.val.run_val` and
:func:`hpsedge.eval.bench.run_bench`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from hpsedge.cli._common import console, csv, err_console, parse_precisions, progress_steps
from hpsedge.errors import HpsedgeError
from hpsedge.runtime.folder import Precision


def val_cmd(
    folders: Annotated[list[str], typer.Argument(help="Build folders (DIR, or DIR@fp32|fp16|int8 for one graph).")],
    data: Annotated[Path, typer.Option("--data", help="Evaluation .npz (SPIN/PARE/POCO layout, e.g. 3dpw_test.npz).")],
    images: Annotated[Path, typer.Option("--images", help="Image root the file's imgname paths start from.")],
    smpl: Annotated[Path, typer.Option("--smpl", help="Neutral SMPL (.npz or official .pkl).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (results, per-sample files, plots).")],
    protocol: Annotated[str, typer.Option(
        "--protocol", help="Whose scoring: poco-3dpw (H36M regressor, 14 LSP joints, pelvis joint 0, rounded crop) | "
                           "tokenhmr-3dpw (SMPL_to_J19 joints [25..37, 43] of 44, pelvis 39) | tokenhmr-emdb "
                           "(SMPL's own 24 joints, mid-hips root).")] = "poco-3dpw",
    j_regressor: Annotated[Path | None, typer.Option(
        "--j-regressor", help="J_regressor_h36m.npy [17, 6890] (poco-3dpw) or SMPL_to_J19.pkl [19, 6890] "
                              "(tokenhmr-3dpw); tokenhmr-emdb uses the SMPL file's own.")] = None,
    smpl_male: Annotated[Path | None, typer.Option("--smpl-male", help="Male SMPL for gendered ground truth.")] = None,
    smpl_female: Annotated[Path | None, typer.Option("--smpl-female", help="Female SMPL for gendered ground truth.")] = None,
    max_samples: Annotated[int | None, typer.Option("--max-samples", help="Evaluate the first N samples only.")] = None,
    pelvis: Annotated[str | None, typer.Option(
        help="Override poco-3dpw's root: lsp-hips (mid-point of the H36M regressor's LSP hips; no paper's protocol, "
             "and not TokenHMR's EMDB one: use --protocol tokenhmr-emdb).")] = None,
    backend: Annotated[str, typer.Option(help="auto | ort | trt")] = "auto",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | tensorrt (ONNX Runtime), or a GPU index.")] = "auto",
    threads: Annotated[int | None, typer.Option(help="ONNX Runtime threads.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace another run's results in --out.")] = False,
) -> None:
    """Accuracy (MPJPE, PA-MPJPE, PVE in mm) and uncertainty quality of build folders on an evaluation set."""
    from rich.progress import BarColumn, MofNCompleteColumn

    from hpsedge.eval.val import ValConfig, run_val

    cfg = ValConfig(folders=folders, data=data, images=images, smpl=smpl, out=out, j_regressor=j_regressor,
                    smpl_male=smpl_male, smpl_female=smpl_female, max_samples=max_samples, pelvis=pelvis,
                    protocol=protocol, backend=backend, device=device, threads=threads, force=force)
    with Progress(SpinnerColumn(), TextColumn("[bold]val"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        task = progress.add_task("val", total=None)
        doc = run_val(cfg, progress=lambda done, total, _name: progress.update(task, completed=done, total=total))
    table = Table(title=f"hpsedge val: {doc['samples']} samples (mm)")
    table.add_column("folder", overflow="fold")
    for col in ("MPJPE", "PA-MPJPE", "PVE", "ρ person (score, PA)", "AUSE", "r joint (rotmat MSE, σ)"):
        table.add_column(col, no_wrap=True, justify="right")
    for f in doc["folders"]:
        r = doc["results"][f["label"]]
        u = r.get("uncertainty") or {}
        rho, ause = u.get("spearman_pa_mpjpe"), u.get("ause_pa_mpjpe")
        rj = (r.get("per_joint_uncertainty") or {}).get("pearson_rotmat_mse_sigma")
        table.add_row(f["label"], f"{r['mpjpe']['mean']:.2f}", f"{r['pa_mpjpe']['mean']:.2f}",
                      f"{r['pve']['mean']:.2f}", "-" if rho is None else f"{rho:.3f}", "-" if ause is None else f"{ause:.2f}",
                      "-" if rj is None else f"{rj:.3f}")
    console.print(table)
    resumed = sum(doc["resumed_samples"].values())
    console.print(f"  protocol {doc['protocol']['name']}: {doc['protocol']['joints']}; root: {doc['protocol']['pelvis']}")
    console.print(f"  {doc['protocol']['smpl']}")
    console.print(f"[green]✓[/green] results → [bold]{out}[/bold] (results.md, results.json, samples/, plots)"
                  + (f"; {resumed} sample result(s) reused from an earlier run" if resumed else ""))



def bench_cmd(
    folders: Annotated[list[str] | None, typer.Argument(help="Build folders (DIR or DIR@precision).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Zoo model: build/reuse one folder per precision.")] = None,
    precisions: Annotated[list[str] | None, typer.Option("--precisions", help="With --model: fp32,fp16,int8.",
                                                         callback=parse_precisions)] = None,
    backends: Annotated[list[str] | None, typer.Option("--backends", help="ort,trt")] = None,
    batch: Annotated[list[str] | None, typer.Option("--batch", help="Person batch sizes, e.g. 1,8,16.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for bench.json/.md/.png.")] = Path("bench-out"),
    builds: Annotated[Path | None, typer.Option("--builds", help="Where --model folders live [default: OUT/builds].")] = None,
    smpl: Annotated[Path | None, typer.Option("--smpl", help="SMPL file: time the body model too.")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="Frame to crop from [default: synthetic 1280×720].")] = None,
    reps: Annotated[int, typer.Option(help="Timed rounds (medians over them).")] = 7,
    warmup: Annotated[int, typer.Option(help="Rounds dropped first.")] = 1,
    device: Annotated[str, typer.Option(help="ONNX Runtime device: auto | cpu | cuda | tensorrt.")] = "auto",
    threads: Annotated[int | None, typer.Option(help="ONNX Runtime threads.")] = None,
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", "-c", help="Checkpoint for --model builds.")] = None,
    calib_images: Annotated[Path | None, typer.Option("--calib-images", help="INT8 builds: calibration images.")] = None,
    calib_boxes: Annotated[Path | None, typer.Option("--calib-boxes", help="Person boxes for --calib-images.")] = None,
    note: Annotated[str | None, typer.Option("--note", help="Text for the report (e.g. the machine's load).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace bench files already in --out.")] = False,
    tiny: Annotated[bool, typer.Option("--tiny", hidden=True, help="Tiny test configuration.")] = False,
) -> None:
    """Speed of precisions × backends × batch sizes (stages and totals in one loop), with build-report accuracy."""
    from hpsedge.eval.bench import BenchConfig, run_bench

    try:
        batches = [int(b) for b in csv(batch, ("1", "8", "16"))]
    except ValueError:
        raise HpsedgeError("--batch takes integers, e.g. --batch 1,8,16") from None
    cfg = BenchConfig(out=out, folders=folders or [], model=model, precisions=csv(precisions, Precision.names()),
                      backends=csv(backends, ("ort", "trt")), batches=batches, builds=builds, smpl=smpl, image=image,
                      reps=reps, warmup=warmup, device=device, threads=threads, checkpoint=checkpoint,
                      calib_images=calib_images, calib_boxes=calib_boxes, note=note, force=force, tiny=tiny)
    with progress_steps("bench") as step:
        doc = run_bench(cfg, progress=step)
    table = Table(title="hpsedge bench (ms per call, medians)")
    for col in ("model", "precision", "backend", "batch", "model ms", "total ms", "people/s"):
        table.add_column(col, no_wrap=True)
    for r in doc["rows"]:
        table.add_row(r["model"], r["precision"], r["backend"], str(r["batch"]), f"{r['ms']['model']:.1f}",
                      f"{r['ms']['total']:.1f}", f"{r['people_per_s']:.1f}")
    console.print(table)
    for a in doc["absent"]:
        console.print(f"  [yellow]{a['target']} on {a['backend']}: absent ({a['reason']})[/yellow]")
    console.print(f"[green]✓[/green] {len(doc['rows'])} row(s) → [bold]{out}[/bold] (bench.md, bench.json, bench.png)")

