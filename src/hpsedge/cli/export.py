"""``hpsedge export onnx|build|triton|slim``: thin wrappers over :func:`hpsedge.export.onnx.export_onnx`,
:func:`hpsedge.export.build.export_build` / :func:`~hpsedge.export.build.rebuild_on_device` and
:func:`hpsedge.export.triton.export_triton`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hpsedge.cli._common import (
    CalibMethodOpt,
    CheckpointOpt,
    Int8FlavorOpt,
    MaxDropDegOpt,
    MinSigmaRankCorrOpt,
    ModelOpt,
    ReportSmplOpt,
    TinyOpt,
    TokenizerOpt,
    UnsafePickleOpt,
    accuracy_line,
    console,
    export_side,
    fmt_bytes,
    new_app,
    parse_precision,
    precision_options,
    progress_steps,
)
from hpsedge.errors import HpsedgeError
from hpsedge.runtime.folder import DEFAULT_MAX_BATCH

export_app = new_app("Export a zoo model: `onnx` (verified graph + manifest), `build` (the whole chain to an engine), "
                     "`slim` (a copy of a build folder with only what one target runs) "
                     "or `triton` (a Triton model repository from a build folder).")

MaxBatchOpt = Annotated[int, typer.Option("--max-batch", help="Largest person batch (engine profile max).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the random weights when there is no --checkpoint.")]


@export_app.command("onnx")
def export_onnx_cmd(
    model: ModelOpt = "poco-cliff",
    checkpoint: CheckpointOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder [default: build/MODEL].")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    max_batch: MaxBatchOpt = DEFAULT_MAX_BATCH,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output folder.")] = False,
    unsafe_pickle: UnsafePickleOpt = False,
    precision: Annotated[str, typer.Option(help="fp32 | fp16 | int8: also write model.<precision>.onnx.",
                                           callback=parse_precision)] = "fp32",
    calib: Annotated[Path | None, typer.Option(help="Calibration set (.npz from `hpsedge calib make`) for int8.")] = None,
    calib_method: CalibMethodOpt = None,
    keep_fp32: Annotated[
        list[str] | None, typer.Option("--keep-fp32", help="FP16: node-name pattern kept in FP32 (repeatable).")
    ] = None,
    exclude_int8: Annotated[
        list[str] | None, typer.Option("--exclude-int8", help="INT8: node-name pattern left unquantized (repeatable).")
    ] = None,
    max_drop_deg: MaxDropDegOpt = None,
    min_sigma_rank_corr: MinSigmaRankCorrOpt = None,
    smpl: ReportSmplOpt = None,
    int8_flavor: Int8FlavorOpt = None,
    tokenizer: TokenizerOpt = None,
    token_probs: Annotated[
        bool, typer.Option("--token-probs", help="TokenHMR: also output the [N,160,2048] token probabilities.")
    ] = False,
    tiny: TinyOpt = False,
    seed: SeedOpt = 0,
) -> None:
    """Export MODEL to OUT/model.onnx with a manifest, verified against PyTorch with ONNX Runtime."""
    with export_side("`hpsedge export onnx`"):
        from hpsedge.export.onnx import export_onnx

    out_dir = out or Path("build") / model
    with progress_steps(f"export {model}") as step, export_side("`hpsedge export onnx`"):
        result = export_onnx(
            model,
            out_dir,
            checkpoint=checkpoint,
            opset=opset,
            max_batch=max_batch,
            force=force,
            tiny=tiny,
            unsafe_pickle=unsafe_pickle,
            precision=precision,
            precision_options=precision_options(
                calib, calib_method, keep_fp32, exclude_int8, max_drop_deg, min_sigma_rank_corr, smpl, int8_flavor
            ),
            tokenizer=tokenizer,
            token_probs=token_probs,
            progress=step,
            seed=seed,
        )
    m = result.manifest
    ver = m["verification"]
    art = m["artifacts"]["onnx"]
    size = fmt_bytes(art["bytes"] + art.get("data_bytes", 0)) + (
        f", weights in {art['data_file']}" if art.get("data_file") else ""
    )
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
    for key, art in m["artifacts"].items():
        if key.startswith("onnx_"):
            console.print(f"  {art['precision']}: {result.out_dir / art['file']} ({fmt_bytes(art['bytes'])})")
    if "accuracy" in m:
        console.print("  " + accuracy_line(m["accuracy"]))
    if m["checkpoint"].get("random_init"):
        console.print("  [yellow]random weights (no --checkpoint): outputs are meaningless[/yellow]")
    console.print(f"  manifest: {result.out_dir / 'manifest.json'}")


def _aux_args(model: str, aux: Path | None) -> dict[str, Path]:
    """``--aux FILE`` under the name the model's spec gives its second weights file (``ModelSpec.aux_option``)."""
    if aux is None:
        return {}
    from hpsedge.models.registry import get_spec

    option = get_spec(model).aux_option
    if option is None:
        raise HpsedgeError(f"{model} has one weights file; --aux is for models with a second one",
                           hint="drop --aux (`hpsedge models` lists what each model reads)")
    return {option: aux}


@export_app.command("build")
def export_build_cmd(
    model: ModelOpt = "poco-cliff",
    checkpoint: CheckpointOpt = None,
    precision: Annotated[str, typer.Option(help="fp32 | fp16 | int8 (baked into the graph; --on-device: the "
                                                "folder's).", callback=parse_precision)] = "fp16",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Build folder [default: build/MODEL-PRECISION].")] = None,
    calib: Annotated[Path | None, typer.Option(help="INT8 calibration set (.npz from `hpsedge calib make`).")] = None,
    calib_images: Annotated[
        Path | None, typer.Option("--calib-images", help="INT8 without --calib: make the set from these images.")
    ] = None,
    calib_boxes: Annotated[Path | None, typer.Option("--calib-boxes", help="Person boxes for --calib-images.")] = None,
    calib_method: CalibMethodOpt = None,
    max_batch: Annotated[int | None, typer.Option(
        "--max-batch", help=f"Largest person batch (engine profile max) [default: {DEFAULT_MAX_BATCH}; with "
        "--on-device: the folder's max batch].")] = None,
    min_batch: Annotated[int, typer.Option(
        "--min-batch", help="Smallest person batch of the engine profile (Triton needs 1).")] = 1,
    opt_batch: Annotated[
        int | None, typer.Option("--opt-batch", help="Batch TensorRT tunes for [default: min(4, max batch)].")
    ] = None,
    workspace_mb: Annotated[
        int | None,
        typer.Option("--workspace-mb", help="TensorRT workspace limit (MiB) [default: TensorRT's, all GPU memory]."),
    ] = None,
    opt_level: Annotated[int, typer.Option("--opt-level", help="TensorRT builder optimisation level 0–5.")] = 3,
    dla: Annotated[int | None, typer.Option("--dla", help="Jetson DLA core (GPU fallback on).")] = None,
    version_compatible: Annotated[
        bool, typer.Option("--version-compatible", help="Engine that newer TensorRT versions can run.")
    ] = False,
    hardware_compat: Annotated[
        str | None, typer.Option("--hardware-compat", help="'ampere+': one engine for Ampere and newer (desktop).")
    ] = None,
    weak_typing: Annotated[
        bool, typer.Option("--weak-typing", help="TensorRT 10 only: precision from builder flags (legacy path).")
    ] = False,
    on_device: Annotated[
        Path | None, typer.Option("--on-device", help="Build the engine of an existing FOLDER on this machine.")
    ] = None,
    require_engine: Annotated[
        bool, typer.Option("--require-engine", help="Fail when no TensorRT engine can be built here.")
    ] = False,
    max_drop_deg: MaxDropDegOpt = None,
    min_sigma_rank_corr: MinSigmaRankCorrOpt = None,
    smpl: ReportSmplOpt = None,
    int8_flavor: Int8FlavorOpt = None,
    tokenizer: TokenizerOpt = None,
    aux: Annotated[Path | None, typer.Option(
        "--aux", help="The model's second weights file, the one its spec names (`hpsedge models`; TokenHMR: "
        "tokenizer.pth, also --tokenizer).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing folder / engine.")] = False,
    unsafe_pickle: UnsafePickleOpt = False,
    tiny: TinyOpt = False,
    seed: SeedOpt = 0,
    detector: Annotated[
        Path | None, typer.Option("--detector", help="Person-detector ONNX to verify, convert and add to the folder.")
    ] = None,
    detector_precision: Annotated[
        str | None, typer.Option("--detector-precision", help="fp32 | fp16 | int8 (default: the build's; INT8 → fp16).",
                                 callback=parse_precision)
    ] = None,
    detector_layout: Annotated[
        str | None, typer.Option("--detector-layout", help="yolo | end2end | dets_labels (default: from its outputs).")
    ] = None,
    detector_person_class: Annotated[
        int | None, typer.Option("--detector-person-class", help="Class index of 'person' (default: from its names).")
    ] = None,
    detector_preprocess: Annotated[
        str | None, typer.Option("--detector-preprocess", help="ultralytics | yolox (needed for dets_labels graphs).")
    ] = None,
    detector_score: Annotated[float, typer.Option("--detector-score", help="Detector score threshold.")] = 0.25,
    detector_iou: Annotated[float, typer.Option("--detector-iou", help="Detector NMS IoU threshold.")] = 0.45,
) -> None:
    """The whole chain: export, verify, precision, accuracy report, TensorRT engine, in one folder."""
    from hpsedge.export.build import BuildConfig, export_build, rebuild_on_device

    cfg = BuildConfig(
        model=model, out=out or Path("build") / f"{model}-{precision}", checkpoint=checkpoint, precision=precision,
        calib=calib, calib_images=calib_images, calib_boxes=calib_boxes,
        precision_options=precision_options(
            None, calib_method, None, None, max_drop_deg, min_sigma_rank_corr, smpl, int8_flavor
        ),
        extra_model_args={**({"tokenizer": tokenizer} if tokenizer else {}), **_aux_args(model, aux)},
        max_batch=max_batch, min_batch=min_batch, opt_batch=opt_batch, workspace_mb=workspace_mb, opt_level=opt_level, dla_core=dla,
        version_compatible=version_compatible, hardware_compat=hardware_compat, weak_typing=weak_typing,
        require_engine=require_engine, force=force, tiny=tiny, unsafe_pickle=unsafe_pickle, seed=seed,
        detector=detector, detector_precision=detector_precision,
        detector_options={"layout": detector_layout, "person_class": detector_person_class,
                          "preprocess": detector_preprocess, "score_threshold": detector_score,
                          "iou_threshold": detector_iou},
    )
    if detector is None and detector_precision is not None:
        raise HpsedgeError("--detector-precision goes with --detector")
    title = f"build {on_device.name if on_device else model} ({precision})"
    with progress_steps(title) as step:
        def trt_step(event: object) -> None:
            kind, phase = getattr(event, "kind", ""), getattr(event, "phase", "")
            if kind == "step":
                step(f"TensorRT {phase} {getattr(event, 'step', 0)}/{getattr(event, 'total', 0)}")
            elif kind == "start":
                step(f"TensorRT {phase}")

        if on_device:
            result = rebuild_on_device(on_device, cfg, progress=step, trt_progress=trt_step)
        else:
            with export_side("`hpsedge export build` (without --on-device)"):
                result = export_build(cfg, progress=step, trt_progress=trt_step)
    m = result.manifest
    console.print(f"[green]✓[/green] {m['model']['name']} ({m.get('precision', 'fp32')}) → [bold]{result.folder}[/bold] "
                  f"in {result.seconds:.1f} s")
    for key, art in m["artifacts"].items():
        path = result.folder / art["file"]
        size = fmt_bytes(path.stat().st_size) if path.exists() else "?"
        console.print(f"  {key:10s} {art['file']} ({size})")
    if "accuracy" in m:
        console.print("  " + accuracy_line(m["accuracy"]))
    checks = m.get("trt_check", {})
    for name, chk in checks.items():
        console.print(f"  TensorRT static check ({name}): " + ("ok" if chk["ok"] else "; ".join(chk["errors"])))
    if result.engine_built:
        console.print(f"  engine: {result.engine_reason}")
    else:
        console.print(f"[yellow]  no TensorRT engine built: {result.engine_reason}[/yellow] "
                      "(the folder runs on ONNX Runtime; build the engine on the target with --on-device)")
    console.print(f"  next: hpsedge run {result.folder} --image photo.jpg   |   hpsedge inspect {result.folder}")


@export_app.command("triton")
def export_triton_cmd(
    export_dir: Annotated[Path, typer.Argument(help="A build folder (with manifest.json).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The model repository folder to write.")],
    name: Annotated[str | None, typer.Option(help="Model-name prefix (default: the manifest's model name).")] = None,
    precision: Annotated[str | None, typer.Option(help="ONNX graph: fp32 | fp16 | int8 (default: the folder's).",
                                                  callback=parse_precision)] = None,
    network: Annotated[str, typer.Option(help="What the hpsedge model calls: auto (TensorRT if an engine) | onnx | trt.")] = "auto",
    kind: Annotated[str, typer.Option(help="Instance group of the network models: gpu | cpu.")] = "gpu",
    count: Annotated[int, typer.Option(help="Network model instances (per GPU for gpu).")] = 1,
    preferred_batch_size: Annotated[
        list[int] | None, typer.Option("--preferred-batch-size", help="Dynamic batcher's preferred size (repeatable).")
    ] = None,
    max_queue_delay_us: Annotated[int, typer.Option(help="Dynamic batcher's maximum queue delay (µs).")] = 2000,
    max_persons: Annotated[int, typer.Option(help="Most boxes one request may carry.")] = 64,
    smpl: Annotated[Path | None, typer.Option("--smpl", help="SMPL model: the hpsedge model returns joints and vertices.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it is a repository hpsedge wrote and nobody changed since.")] = False,
) -> None:
    """Write an NVIDIA Triton model repository (network + the hpsedge pre/post-processing model)."""
    from hpsedge.export.triton import export_triton

    res = export_triton(
        export_dir, out, name=name, precision=precision, network=network, kind=kind, count=count,
        preferred_batch_sizes=preferred_batch_size, max_queue_delay_us=max_queue_delay_us, max_persons=max_persons,
        smpl=smpl, force=force,
    )
    console.print(f"[green]✓[/green] Triton repository → [bold]{res.out_dir}[/bold]: {', '.join(res.models)} "
                  f"(hpsedge calls {res.network_model}); see {res.readme}")



@export_app.command("slim")
def export_slim_cmd(
    export_dir: Annotated[Path, typer.Argument(help="A build folder (with manifest.json).")],
    target: Annotated[str, typer.Option("--target", "-t", help="What the robot runs: ort-fp32|ort-fp16|ort-int8 "
                                                                "(ONNX Runtime CPU) or trt-fp32|trt-fp16|trt-int8.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The slim folder to write.")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing hpsedge folder at --out.")] = False,
) -> None:
    """Copy a build folder with only what one target runs (verified; the manifest lists only those files)."""
    from hpsedge.slim import SlimTarget, make_slim

    tgt = SlimTarget.parse(target)  # a typo is one error line before any file is read
    res = make_slim(export_dir, out, tgt, force=force)
    console.print(f"[green]✓[/green] slim folder for {res.target.name} → [bold]{res.folder}[/bold]: "
                  f"{', '.join(res.kept.values())} ({fmt_bytes(res.bytes_kept)} of {fmt_bytes(res.bytes_source)}); "
                  f"next: hpsedge inspect {res.folder}")
