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
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

import hpsedge
from hpsedge.calib.cli import calib_app
from hpsedge.console import make_console, make_log_handler
from hpsedge.curate.cli import curate_cmd
from hpsedge.runtime.errors import HpsedgeError
from hpsedge.runtime.manifest import dumps_strict

log = logging.getLogger("hpsedge")
console = make_console()
err_console = make_console(stderr=True)

app = typer.Typer(
    name="hpsedge",
    help="Export confidence-aware 3D human pose-and-shape regressors to ONNX Runtime and TensorRT.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # click's plain help: flags as flags, literal [brackets], defaults shown
)
export_app = typer.Typer(
    help="Export a zoo model: `onnx` (verified graph + manifest) or `build` (the whole chain to an engine).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
smpl_app = typer.Typer(help="Inspect and convert SMPL body-model files.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(export_app, name="export")
app.add_typer(smpl_app, name="smpl")
app.add_typer(calib_app, name="calib")
app.command("curate")(curate_cmd)

_state = {"debug": False}

#: modules of the export side (pip install 'hpsedge[export]'); a command that needs one of them and
#: finds it missing says so in one line instead of a traceback
EXPORT_MODULES = frozenset({"torch", "onnx", "onnxscript", "smplx"})


@contextlib.contextmanager
def _export_side(what: str) -> Iterator[None]:
    """Turn a missing export-side module (torch, onnx) inside the block into one clean error line."""
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in EXPORT_MODULES:
            raise
        raise HpsedgeError(f"{what} needs the export extras (no module '{top}' here): "
                           "pip install 'hpsedge[export]'") from exc


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
    handler = make_log_handler(err_console)
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
        disable=not err_console.is_terminal,  # in a log it would only leave a blank line
    ) as progress:
        task = progress.add_task(title, total=None)

        def step(message: str) -> None:
            progress.update(task, description=f"{title}: {message}")
            log.debug("%s: %s", title, message)

        yield step


def _accuracy_line(acc: dict) -> str:
    """manifest["accuracy"] in one readable line."""
    parts = [f"pose Δ mean {acc['pose_deg_mean']:.3g}° / p95 {acc['pose_deg_p95']:.3g}°"]
    if acc.get("sigma_rank_corr") is not None:
        parts.append(f"σ rank corr {acc['sigma_rank_corr']:.3f}")
    if acc.get("mpjpe_mm") is not None:
        parts.append(f"MPJPE Δ {acc['mpjpe_mm']:.2f} mm")
    lat = acc.get("latency_ms") or {}
    if lat:
        p = acc["precision"]
        parts.append(f"ORT CPU N={lat['batch']}: fp32 {lat['fp32']:.1f} ms, {p} {lat[p]:.1f} ms")
    verdict = "within thresholds" if acc.get("passed") else "OVER THRESHOLDS"
    return f"{acc['precision']} vs fp32 on {acc['persons']} person(s): " + ", ".join(parts) + f" ({verdict}; report.md)"


def _fmt_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _precision_options(
    calib: Path | None,
    method: str | None,
    keep_fp32: list[str] | None,
    exclude_int8: list[str] | None,
    max_drop_deg: float | None,
    min_sigma_rank_corr: float | None,
    smpl: Path | None,
    flavor: str | None = None,
) -> dict[str, object]:
    """Only the options the user set, so apply_precision's own defaults hold otherwise."""
    opts = {
        "flavor": flavor,
        "calib": calib,
        "method": method,
        "keep_fp32": keep_fp32 or None,
        "exclude_int8": exclude_int8 or None,
        "max_drop_deg": max_drop_deg,
        "min_sigma_rank_corr": min_sigma_rank_corr,
        "smpl": smpl,
    }
    return {k: v for k, v in opts.items() if v is not None}


# -------------------------------------------------------------------------------------------------
@app.command("models")
def models_cmd() -> None:
    """List the model zoo: input size, inputs, outputs, parameter count (static metadata: no torch needed)."""
    with _export_side("`hpsedge models`"):
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
    precision: Annotated[str, typer.Option(help="fp32 | fp16 | int8: also write model.<precision>.onnx.")] = "fp32",
    calib: Annotated[Path | None, typer.Option(help="Calibration set (.npz from `hpsedge calib make`) for int8.")] = None,
    calib_method: Annotated[
        str | None, typer.Option(help="INT8 calibration: max | entropy | percentile [default: percentile].")
    ] = None,
    keep_fp32: Annotated[
        list[str] | None, typer.Option("--keep-fp32", help="FP16: node-name pattern kept in FP32 (repeatable).")
    ] = None,
    exclude_int8: Annotated[
        list[str] | None, typer.Option("--exclude-int8", help="INT8: node-name pattern left unquantized (repeatable).")
    ] = None,
    max_drop_deg: Annotated[
        float | None,
        typer.Option("--max-drop-deg", help="Fail if the mean pose error vs FP32 exceeds this "
                     "[default: no failure; report.md checks 1° fp16, 5° int8]."),
    ] = None,
    min_sigma_rank_corr: Annotated[
        float | None,
        typer.Option("--min-sigma-rank-corr", help="Fail if σ's rank correlation vs FP32 is lower "
                     "[default: no failure; report.md checks 0.95 fp16, 0.8 int8]."),
    ] = None,
    smpl: Annotated[Path | None, typer.Option(help="SMPL file: adds MPJPE/vertex error (mm) to the report.")] = None,
    int8_flavor: Annotated[
        str | None,
        typer.Option("--int8-flavor", help="INT8 Q/DQ graphs: both [default: TensorRT s8s8 + ONNX Runtime CPU, "
                     "same ranges] | trt | ort."),
    ] = None,
    tokenizer: Annotated[
        Path | None, typer.Option("--tokenizer", help="TokenHMR: tokenizer.pth (decoder + codebook).")
    ] = None,
    token_probs: Annotated[
        bool, typer.Option("--token-probs", help="TokenHMR: also output the [N,160,2048] token probabilities.")
    ] = False,
    tiny: Annotated[bool, typer.Option("--tiny", hidden=True, help="Tiny test configuration.")] = False,
) -> None:
    """Export MODEL to OUT/model.onnx with a manifest, verified against PyTorch with ONNX Runtime."""
    with _export_side("`hpsedge export onnx`"):
        from hpsedge.export.onnx import export_onnx

    out_dir = out or Path("build") / model
    with _progress(f"export {model}") as step, _export_side("`hpsedge export onnx`"):
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
            precision_options=_precision_options(
                calib, calib_method, keep_fp32, exclude_int8, max_drop_deg, min_sigma_rank_corr, smpl, int8_flavor
            ),
            tokenizer=tokenizer,
            token_probs=token_probs,
            progress=step,
        )
    m = result.manifest
    ver = m["verification"]
    art = m["artifacts"]["onnx"]
    size = _fmt_bytes(art["bytes"] + art.get("data_bytes", 0)) + (
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
            console.print(f"  {art['precision']}: {result.out_dir / art['file']} ({_fmt_bytes(art['bytes'])})")
    if "accuracy" in m:
        console.print("  " + _accuracy_line(m["accuracy"]))
    if m["checkpoint"].get("random_init"):
        console.print("  [yellow]random weights (no --checkpoint): outputs are meaningless[/yellow]")
    console.print(f"  manifest: {result.out_dir / 'manifest.json'}")


@export_app.command("build")
def export_build_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="Zoo model name (see `hpsedge models`).")] = "poco-cliff",
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", "-c", help="Official or hpsedge checkpoint.")] = None,
    precision: Annotated[str, typer.Option(help="fp32 | fp16 | int8 (baked into the graph).")] = "fp16",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Build folder [default: build/MODEL-PRECISION].")] = None,
    calib: Annotated[Path | None, typer.Option(help="INT8 calibration set (.npz from `hpsedge calib make`).")] = None,
    calib_images: Annotated[
        Path | None, typer.Option("--calib-images", help="INT8 without --calib: make the set from these images.")
    ] = None,
    calib_boxes: Annotated[Path | None, typer.Option("--calib-boxes", help="Person boxes for --calib-images.")] = None,
    calib_method: Annotated[
        str | None, typer.Option(help="INT8 calibration: max | entropy | percentile [default: percentile].")
    ] = None,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Largest person batch (engine profile max).")] = 16,
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
    max_drop_deg: Annotated[
        float | None,
        typer.Option("--max-drop-deg", help="Fail above this pose error (degrees) "
                     "[default: no failure; report.md checks 1° fp16, 5° int8]."),
    ] = None,
    min_sigma_rank_corr: Annotated[
        float | None,
        typer.Option("--min-sigma-rank-corr", help="Fail below this σ rank correlation "
                     "[default: no failure; report.md checks 0.95 fp16, 0.8 int8]."),
    ] = None,
    smpl: Annotated[Path | None, typer.Option(help="SMPL file: MPJPE/vertex error in the report.")] = None,
    int8_flavor: Annotated[
        str | None, typer.Option("--int8-flavor", help="INT8 Q/DQ graphs: both [default: TensorRT s8s8 + ONNX Runtime CPU, same ranges] | trt | ort.")
    ] = None,
    tokenizer: Annotated[Path | None, typer.Option("--tokenizer", help="TokenHMR: tokenizer.pth.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing folder / engine.")] = False,
    unsafe_pickle: Annotated[bool, typer.Option("--unsafe-pickle", help="Trust a pickled checkpoint.")] = False,
    tiny: Annotated[bool, typer.Option("--tiny", hidden=True, help="Tiny test configuration.")] = False,
    detector: Annotated[
        Path | None, typer.Option("--detector", help="Person-detector ONNX to verify, convert and add to the folder.")
    ] = None,
    detector_precision: Annotated[
        str | None, typer.Option("--detector-precision", help="fp32 | fp16 | int8 (default: the build's; INT8 → fp16).")
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
        precision_options=_precision_options(
            None, calib_method, None, None, max_drop_deg, min_sigma_rank_corr, smpl, int8_flavor
        ),
        extra_model_args={"tokenizer": tokenizer} if tokenizer else {},
        max_batch=max_batch, opt_batch=opt_batch, workspace_mb=workspace_mb, opt_level=opt_level, dla_core=dla,
        version_compatible=version_compatible, hardware_compat=hardware_compat, weak_typing=weak_typing,
        require_engine=require_engine, force=force, tiny=tiny, unsafe_pickle=unsafe_pickle,
        detector=detector, detector_precision=detector_precision,
        detector_options={"layout": detector_layout, "person_class": detector_person_class,
                          "preprocess": detector_preprocess, "score_threshold": detector_score,
                          "iou_threshold": detector_iou},
    )
    if detector is None and detector_precision is not None:
        raise HpsedgeError("--detector-precision goes with --detector")
    title = f"build {on_device.name if on_device else model} ({precision})"
    with _progress(title) as step:
        def trt_step(event: object) -> None:
            kind, phase = getattr(event, "kind", ""), getattr(event, "phase", "")
            if kind == "step":
                step(f"TensorRT {phase} {getattr(event, 'step', 0)}/{getattr(event, 'total', 0)}")
            elif kind == "start":
                step(f"TensorRT {phase}")

        if on_device:
            result = rebuild_on_device(on_device, cfg, progress=step, trt_progress=trt_step)
        else:
            with _export_side("`hpsedge export build` (without --on-device)"):
                result = export_build(cfg, progress=step, trt_progress=trt_step)
    m = result.manifest
    console.print(f"[green]✓[/green] {m['model']['name']} ({m.get('precision', 'fp32')}) → [bold]{result.folder}[/bold] "
                  f"in {result.seconds:.1f} s")
    for key, art in m["artifacts"].items():
        path = result.folder / art["file"]
        size = _fmt_bytes(path.stat().st_size) if path.exists() else "?"
        console.print(f"  {key:10s} {art['file']} ({size})")
    if "accuracy" in m:
        console.print("  " + _accuracy_line(m["accuracy"]))
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
    precision: Annotated[str | None, typer.Option(help="ONNX graph: fp32 | fp16 | int8 (default: the folder's).")] = None,
    network: Annotated[str, typer.Option(help="What the hpsedge model calls: auto (TensorRT if an engine) | onnx | trt.")] = "auto",
    kind: Annotated[str, typer.Option(help="Instance group of the network models: gpu | cpu.")] = "gpu",
    count: Annotated[int, typer.Option(help="Network model instances (per GPU for gpu).")] = 1,
    preferred_batch_size: Annotated[
        list[int] | None, typer.Option("--preferred-batch-size", help="Dynamic batcher's preferred size (repeatable).")
    ] = None,
    max_queue_delay_us: Annotated[int, typer.Option(help="Dynamic batcher's maximum queue delay (µs).")] = 2000,
    max_persons: Annotated[int, typer.Option(help="Most boxes one request may carry.")] = 64,
    smpl: Annotated[Path | None, typer.Option("--smpl", help="SMPL model: the hpsedge model returns joints and vertices.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty --out folder.")] = False,
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


@app.command("serve")
def serve_cmd(
    export_dir: Annotated[Path, typer.Argument(help="A build folder (with manifest.json).")],
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    grpc_port: Annotated[int, typer.Option(help="gRPC port.")] = 8001,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port (/metrics).")] = 8002,
    batching: Annotated[bool, typer.Option("--batching/--no-batching", help="Triton's dynamic batcher on the network.")] = True,
    max_queue_delay_us: Annotated[int, typer.Option(help="Dynamic batcher's maximum queue delay (µs).")] = 2000,
    instances: Annotated[int, typer.Option(help="Frames pre/post-processed in parallel.")] = 4,
    max_persons: Annotated[int, typer.Option(help="Most boxes one request may carry.")] = 64,
    smpl: Annotated[Path | None, typer.Option("--smpl", help="SMPL model: responses get joints and vertices.")] = None,
    device: Annotated[str, typer.Option(help="ONNX Runtime device: cpu | cuda | tensorrt | auto.")] = "cpu",
    threads: Annotated[int | None, typer.Option(help="ONNX Runtime threads.")] = None,
    precision: Annotated[str | None, typer.Option(help="fp32 | fp16 | int8 graph of the folder.")] = None,
    log_verbose: Annotated[int, typer.Option(help="tritonserver's verbose log level (0: off).")] = 0,
) -> None:
    """Serve a build folder on Triton Inference Server (PyTriton): HTTP, gRPC, health, metrics."""
    from hpsedge.serve.server import ServeConfig, serve

    cfg = ServeConfig(
        host=host, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port, batching=batching,
        max_queue_delay_us=max_queue_delay_us, instances=instances, max_persons=max_persons, device=device,
        threads=threads, precision=precision, log_verbose=log_verbose,
    )

    def ready(summary: dict) -> None:
        console.print(
            f"[green]✓[/green] serving {summary['model']} ({summary['network_model']}, dynamic batching "
            f"{'on' if summary['batching'] else 'off'}, max batch {summary['max_batch']}) on {summary['host']}: "
            f"HTTP {summary['http']}, gRPC {summary['grpc']}, metrics {summary['metrics']}; Ctrl+C stops",
            highlight=False,
        )

    raise typer.Exit(serve(export_dir, cfg, smpl=smpl, on_ready=ready))


@app.command("inspect")
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


# -------------------------------------------------------------------------------------------------
@app.command("run")
def run_cmd(
    export_dir: Annotated[Path, typer.Argument(help="Export folder (with manifest.json), or its .onnx/.engine.")],
    image: Annotated[Path | None, typer.Option("--image", "-i", help="An image file or a folder of images.")] = None,
    video: Annotated[
        Path | None,
        typer.Option("--video", help="A video: per-track .npz (raw + inpainted/smoothed), overlay .mp4, summary.json."),
    ] = None,
    tracks: Annotated[
        Path | None,
        typer.Option("--tracks", help="Person tracks for --video: MOT text (frame,id,x,y,w,h; 1-based) or JSON. "
                                      "Default: the whole frame is one person."),
    ] = None,
    smooth: Annotated[bool, typer.Option("--smooth/--no-smooth", help="--video: One-Euro smoothing on SO(3).")] = True,
    inpaint: Annotated[
        bool, typer.Option("--inpaint/--no-inpaint", help="--video: replace uncertain frames/joints from confident ones.")
    ] = True,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for JSON, meshes and overlays.")] = Path(
        "hpsedge-out"
    ),
    boxes: Annotated[
        Path | None,
        typer.Option("--boxes", "-b", help='Person boxes JSON: {"img.jpg": [[x1,y1,x2,y2], ...]} or COCO-style.'),
    ] = None,
    smpl: Annotated[Path | None, typer.Option("--smpl", help="SMPL model (.npz or official .pkl) for meshes.")] = None,
    j_regressor_extra: Annotated[
        Path | None, typer.Option("--j-regressor-extra", help="J_regressor_extra.npy for the 49-joint set.")
    ] = None,
    backend: Annotated[str, typer.Option(help="auto | ort | trt")] = "auto",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | tensorrt (ONNX Runtime), or a GPU index.")] = "auto",
    threads: Annotated[int | None, typer.Option(help="ONNX Runtime threads [default: one per core].")] = None,
    precision: Annotated[str | None, typer.Option(
        help="fp32 | fp16 | int8 graph of the folder [default: the folder's own precision, from its manifest]; "
        "an INT8 folder runs its CPU Q/DQ graph on the CPU provider and its TensorRT graph on TensorRT.")] = None,
    overlay: Annotated[bool, typer.Option("--overlay/--no-overlay", help="Write an overlay PNG per image.")] = True,
    side_view: Annotated[
        bool, typer.Option("--side-view", help="--image: add a second overlay panel seen from the side (depth to the right).")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty output folder.")] = False,
    source: Annotated[
        str | None,
        typer.Option("--source", "-s", help="Frames: an image, a folder, a video, an rtsp/http stream, or a camera "
                                            "(/dev/video0 or 0). Detect, track and stream people."),
    ] = None,
    jsonl: Annotated[
        str | None, typer.Option("--jsonl", help="--source: one JSON line per frame to this file, or '-' for stdout.")
    ] = None,
    detector: Annotated[
        Path | None, typer.Option("--detector", help="--source: a person-detector ONNX (default: the folder's).")
    ] = None,
    overlay_video: Annotated[
        Path | None, typer.Option("--overlay-video", help="--source: write an overlay .mp4 here.")
    ] = None,
    max_frames: Annotated[int | None, typer.Option("--max-frames", help="--source: stop after N frames.")] = None,
    max_boxes: Annotated[
        int, typer.Option("--max-boxes", help="Most person boxes per image (more is an error).")
    ] = 1000,
) -> None:
    """Run an export folder on images: per-person JSON (+ .npz meshes) and an overlay PNG per image
    (a folder of images also gets contact_sheet.png).

    With --source: detect (the folder's detector), track and stream people frame by frame (--jsonl)."""
    import numpy as np
    from rich.progress import BarColumn, MofNCompleteColumn

    from hpsedge.runtime.draw import contact_sheet, legend_for, render_overlay
    from hpsedge.runtime.io import boxes_for, list_images, load_boxes, read_image, stems_unique
    from hpsedge.runtime.predictor import Predictor

    if source is not None:
        if image is not None or video is not None or tracks is not None:
            raise HpsedgeError("--source replaces --image/--video/--tracks; give one of them")
        _run_source(export_dir, source, jsonl, detector, overlay_video, boxes, smpl, j_regressor_extra, backend,
                    device, threads, precision, force, max_frames)
        return
    if jsonl is not None or detector is not None or overlay_video is not None:
        raise HpsedgeError("--jsonl, --detector and --overlay-video go with --source")
    if (image is None) == (video is None):
        raise HpsedgeError("give --image (a file or folder) or --video, one of the two")
    if threads is not None and threads < 0:
        raise HpsedgeError(f"--threads must be 0 (ONNX Runtime's default) or more, got {threads}")
    if max_boxes < 1:
        raise HpsedgeError(f"--max-boxes must be at least 1, got {max_boxes}")
    if tracks is not None and video is None:
        raise HpsedgeError("--tracks goes with --video")
    if video is not None:
        from hpsedge.runtime.video import run_video

        if out.exists() and not out.is_dir():
            raise HpsedgeError(f"{out} exists and is not a folder")
        if out.exists() and any(out.iterdir()) and not force:
            raise HpsedgeError(f"{out} is not empty; not overwriting it", hint="pass --force, or choose another --out")
        predictor = Predictor.load(
            export_dir, backend=backend, device=device, smpl=smpl, j_regressor_extra=j_regressor_extra,
            threads=threads, precision=precision,
        )
        with Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[fps]}"), TimeElapsedColumn(), console=err_console, transient=True,
        ) as progress:
            task = progress.add_task("predict", total=None, fps="")

            def on_progress(stage: str, done: int, total: int, fps: float) -> None:
                progress.update(task, description=stage, completed=done, total=total, fps=f"{fps:.1f} frames/s")

            summary = run_video(predictor, video, tracks, out, smooth=smooth, inpaint=inpaint, overlay=overlay,
                                progress=on_progress)
        filled = sum(t["inpainted_frames"] for t in summary["tracks"].values())
        console.print(
            f"[green]✓[/green] {summary['frames']} frames, {len(summary['tracks'])} track(s), {filled} frame(s) "
            f"inpainted → [bold]{out}[/bold] ({summary['frames_per_second']:.1f} frames/s on "
            f"{predictor.backend.name}: {predictor.backend.device})"
        )
        return

    images = list_images(image)
    if not stems_unique(images):
        raise HpsedgeError("two input images share a file stem; outputs would collide", hint="rename them")
    per_image = boxes_for(images, load_boxes(boxes), str(boxes)) if boxes else [None] * len(images)
    if boxes is None:
        console.print("[yellow]no --boxes: each whole image is taken as one person box[/yellow]")
    if out.exists() and not out.is_dir():
        raise HpsedgeError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise HpsedgeError(f"{out} is not empty; not overwriting it", hint="pass --force, or choose another --out")
    predictor = Predictor.load(
        export_dir, backend=backend, device=device, smpl=smpl, j_regressor_extra=j_regressor_extra,
        threads=threads, precision=precision,
    )
    predictor.max_boxes = max_boxes
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HpsedgeError(f"cannot create the output folder {out} ({exc.strerror or exc})") from None
    faces = predictor.smpl.faces if predictor.smpl is not None else None
    manifest = predictor.manifest
    legend = legend_for(manifest)
    sheet: list[tuple[str, np.ndarray]] = []  # contact-sheet thumbnails of a folder's overlays
    total = behind = 0
    done: list[str] = []
    skipped: list[tuple[str, str]] = []  # a bad image is skipped and reported, the others still run
    with Progress(
        SpinnerColumn(), TextColumn("[bold]run"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True, disable=len(images) == 1 or not err_console.is_terminal,
    ) as progress:
        task = progress.add_task("run", total=len(images))
        results = []
        for path, bxs in zip(images, per_image, strict=True):
            try:
                rgb = read_image(path)
                if bxs is None:  # said once above, not once per image
                    bxs = np.array([[0.0, 0.0, float(rgb.shape[1]), float(rgb.shape[0])]], dtype=np.float32)
                results = predictor.predict(rgb, bxs)
            except HpsedgeError as exc:
                if len(images) == 1:
                    raise
                skipped.append((path.name, exc.message))
                log.warning("skipped %s: %s", path.name, exc.message)
                progress.advance(task)
                continue
            total += len(results)
            behind += sum(bool(r.behind_camera) for r in results)
            done.append(path.name)
            doc = {
                "image": path.name,
                "image_size": [int(rgb.shape[1]), int(rgb.shape[0])],
                "model": predictor.manifest.model_name,
                "backend": f"{predictor.backend.name} ({predictor.backend.device})",
                "persons": [r.to_dict() for r in results],
            }
            (out / f"{path.stem}.json").write_text(dumps_strict(doc, indent=1) + "\n", encoding="utf-8")
            if results and predictor.smpl is not None:
                np.savez_compressed(
                    out / f"{path.stem}.npz",
                    vertices=np.stack([r.vertices for r in results]),
                    joints3d=np.stack([r.joints3d for r in results]),
                    joints2d=np.stack([r.joints2d for r in results]),
                    transl=np.stack([r.transl for r in results]),
                    faces=faces,
                )
            if overlay:
                pic = render_overlay(rgb, results, faces, legend=legend, side_view=side_view)
                _save_png(out / f"{path.stem}_overlay.png", pic)
                if len(images) > 1 and len(sheet) < CONTACT_SHEET_MAX:
                    sheet.append((path.name, _thumbnail(pic, CONTACT_SHEET_THUMB)))
            progress.advance(task)
    if sheet:
        _save_png(out / "contact_sheet.png", contact_sheet(sheet, thumb_width=CONTACT_SHEET_THUMB))
    if skipped:
        shown = "; ".join(f"{n} ({m})" for n, m in skipped[:3]) + (" …" if len(skipped) > 3 else "")
        raise HpsedgeError(
            f"{len(skipped)} of {len(images)} image(s) skipped: {shown}; the outputs of the other {len(done)} "
            f"are in {out}",
            hint="fix or remove the skipped images and run again for them",
        )
    console.print(
        f"[green]✓[/green] {len(images)} image(s), {total} person(s) → [bold]{escape(str(out))}[/bold] "
        f"({predictor.manifest.model_name} on {predictor.backend.name}: {predictor.backend.device})"
    )
    for r in results[:5] if len(images) == 1 else []:
        conf = "-" if r.confidence is None else f"{r.confidence:.2f}"
        console.print(f"  person at {np.round(r.box).astype(int).tolist()}: confidence {conf}, "
                      f"translation {np.round(r.transl.astype(float), 2).tolist()} m"
                      + (" [yellow](behind the camera: not visible)[/yellow]" if r.behind_camera else ""))
    if behind and len(images) > 1:
        console.print(f"  [yellow]{behind} person(s) behind the camera: not visible[/yellow] "
                      '(root at or behind the camera; "behind_camera": true in their JSON)')
    if sheet:
        more = f", the first {len(sheet)} of {len(images)} images" if len(sheet) < len(images) else ""
        console.print(f"  contact sheet{more}: {escape(str(out / 'contact_sheet.png'))}")


#: a folder's contact sheet shows at most this many overlays, as thumbnails this wide (pixels)
CONTACT_SHEET_MAX = 64
CONTACT_SHEET_THUMB = 360


def _save_png(path: Path, pic: object) -> None:
    from PIL import Image  # present: render_overlay needed it

    Image.fromarray(pic).save(path)


def _thumbnail(pic: object, width: int) -> object:
    """``pic`` scaled to ``width`` pixels wide (kept small: a folder can hold thousands of images)."""
    import numpy as np
    from PIL import Image

    im = Image.fromarray(pic)
    return np.asarray(im.resize((width, max(1, round(im.height * width / im.width)))))


def _run_source(export_dir: Path, source: str, jsonl: str | None, detector: Path | None, overlay_video: Path | None,
                boxes: Path | None, smpl: Path | None, j_regressor_extra: Path | None, backend: str, device: str,
                threads: int | None, precision: str | None, force: bool, max_frames: int | None) -> None:
    """``hpsedge run --source``: the streaming Pipeline over a source, JSON lines out."""
    from hpsedge.runtime.io import boxes_for, load_boxes
    from hpsedge.runtime.pipeline import Pipeline, run_source
    from hpsedge.runtime.sources import SourceStopped, open_source

    outs = [p for p in (Path(jsonl) if jsonl not in (None, "-") else None, overlay_video) if p is not None]
    for p in outs:
        if p.exists() and not force:
            raise HpsedgeError(f"{p} exists; not overwriting it", hint="pass --force, or choose another path")
        if not p.parent.is_dir():
            raise HpsedgeError(f"folder {p.parent} does not exist")
    if overlay_video is not None and overlay_video.suffix.lower() not in (".mp4", ".mkv", ".mov"):
        raise HpsedgeError(f"--overlay-video {overlay_video}: use an .mp4 (or .mkv/.mov) name")
    pipe = Pipeline.load(export_dir, smpl=smpl, detector=detector, backend=backend, device=device, threads=threads,
                         precision=precision, need_detector=boxes is None, j_regressor_extra=j_regressor_extra)
    src = open_source(source)
    per_frame = None
    if boxes is not None:
        if src.kind not in ("image", "folder"):
            src.close()
            raise HpsedgeError("--boxes with --source needs an image or a folder of images",
                               hint="for videos give --video with --tracks")
        from hpsedge.runtime.io import list_images

        per_frame = boxes_for(list_images(Path(source)), load_boxes(boxes), str(boxes))
    stream = sys.stdout if jsonl == "-" else None
    handle = None
    if jsonl not in (None, "-"):
        handle = open(jsonl, "w", encoding="utf-8")  # noqa: SIM115 (closed below, also on errors)
        stream = handle
    say = err_console if jsonl == "-" else console
    if jsonl is None and overlay_video is None:
        say.print("[yellow]no --jsonl or --overlay-video: only a summary will be printed[/yellow]")
    try:
        with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), TextColumn("{task.fields[fps]}"),
                      TimeElapsedColumn(), console=err_console, transient=True,
                      disable=not err_console.is_terminal) as progress:
            task = progress.add_task(f"run {src.kind}", total=None, fps="")

            def on_progress(done: int, fps: float) -> None:
                progress.update(task, description=f"run {src.kind}: frame {done}", fps=f"{fps:.1f} frames/s")

            try:
                summary = run_source(pipe, src, jsonl=stream, overlay=overlay_video, boxes=per_frame,
                                     progress=on_progress, max_frames=max_frames)
            except SourceStopped as exc:
                done = getattr(exc, "summary", {}).get("frames", 0)
                raise HpsedgeError(exc.message + f"; {done} frame(s) written", hint=exc.hint) from None
    finally:
        if handle is not None:
            handle.close()
    ms = summary["stage_ms_per_frame"]
    say.print(
        f"[green]✓[/green] {summary['frames']} frame(s), {len(summary['tracks'])} track(s), {summary['people']} "
        f"person-frame(s) from {summary['kind']} {summary['source']}"
        + (" (interrupted)" if summary["interrupted"] else "")
        + f", {summary['frames_per_second']:.1f} frames/s; ms/frame: "
        + ", ".join(f"{k} {v:.1f}" for k, v in ms.items()),
        highlight=False,
    )
    if summary["overlay"]:
        say.print(f"  overlay: {summary['overlay']}")


@smpl_app.command("convert")
def smpl_convert_cmd(
    src: Annotated[Path, typer.Argument(help="Official SMPL_*.pkl (chumpy objects are fine).")],
    dst: Annotated[Path, typer.Argument(help="Output .npz (float32, dense regressor).")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output file.")] = False,
) -> None:
    """Convert an SMPL .pkl into a clean float32 .npz (no pickle needed to read it back)."""
    from hpsedge.runtime.smpl import convert_to_npz

    path = convert_to_npz(src, dst, force=force)
    console.print(f"[green]✓[/green] wrote {path} ({_fmt_bytes(path.stat().st_size)})")


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


# -------------------------------------------------------------------------------------------------
def _print_error(message: str, hint: str | None = None) -> None:
    """``error: …`` / ``hint: …`` as plain text: a path with ``[`` or ``pip install 'hpsedge[export]'`` is
    printed as written (no rich markup interpretation), on one line each."""
    from rich.text import Text

    one_line = " ".join(str(message).split())
    err_console.print(Text.assemble(("error:", "bold red"), " ", one_line), highlight=False, soft_wrap=True)
    if hint:
        err_console.print(Text.assemble(("hint:", "bold"), " ", " ".join(str(hint).split())), highlight=False,
                          soft_wrap=True)


def _csv(values: list[str] | None, default: tuple[str, ...]) -> list[str]:
    """Repeatable and/or comma-separated option values (``--batch 1,8 --batch 16``)."""
    out = [v.strip() for item in (values or []) for v in item.split(",") if v.strip()]
    return out or list(default)


@app.command("val")
def val_cmd(
    folders: Annotated[list[str], typer.Argument(help="Build folders (DIR, or DIR@fp32|fp16|int8 for one graph).")],
    data: Annotated[Path, typer.Option("--data", help="Evaluation .npz (SPIN/PARE/POCO layout, e.g. 3dpw_test.npz).")],
    images: Annotated[Path, typer.Option("--images", help="Image root the file's imgname paths start from.")],
    smpl: Annotated[Path, typer.Option("--smpl", help="Neutral SMPL (.npz or official .pkl).")],
    j_regressor: Annotated[Path, typer.Option("--j-regressor", help="J_regressor_h36m.npy [17, 6890].")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (results, per-sample files, plots).")],
    smpl_male: Annotated[Path | None, typer.Option("--smpl-male", help="Male SMPL for gendered ground truth.")] = None,
    smpl_female: Annotated[Path | None, typer.Option("--smpl-female", help="Female SMPL for gendered ground truth.")] = None,
    max_samples: Annotated[int | None, typer.Option("--max-samples", help="Evaluate the first N samples only.")] = None,
    pelvis: Annotated[str, typer.Option(help="Root joint: h36m (SPIN/PARE/POCO code) | hips (mid-hips).")] = "h36m",
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
                    backend=backend, device=device, threads=threads, force=force)
    with Progress(SpinnerColumn(), TextColumn("[bold]val"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        task = progress.add_task("val", total=None)
        doc = run_val(cfg, progress=lambda done, total, _name: progress.update(task, completed=done, total=total))
    table = Table(title=f"hpsedge val: {doc['samples']} samples (mm)")
    table.add_column("folder", overflow="fold")
    for col in ("MPJPE", "PA-MPJPE", "PVE", "ρ (σ, PA)", "AUSE"):
        table.add_column(col, no_wrap=True, justify="right")
    for f in doc["folders"]:
        r = doc["results"][f["label"]]
        u = r.get("uncertainty") or {}
        rho, ause = u.get("spearman_pa_mpjpe"), u.get("ause_pa_mpjpe")
        table.add_row(f["label"], f"{r['mpjpe']['mean']:.2f}", f"{r['pa_mpjpe']['mean']:.2f}",
                      f"{r['pve']['mean']:.2f}", "-" if rho is None else f"{rho:.3f}", "-" if ause is None else f"{ause:.2f}")
    console.print(table)
    resumed = sum(doc["resumed_samples"].values())
    console.print(f"  {doc['protocol']['smpl']}")
    console.print(f"[green]✓[/green] results → [bold]{out}[/bold] (results.md, results.json, samples/, plots)"
                  + (f"; {resumed} sample result(s) reused from an earlier run" if resumed else ""))


@app.command("bench")
def bench_cmd(
    folders: Annotated[list[str] | None, typer.Argument(help="Build folders (DIR or DIR@precision).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Zoo model: build/reuse one folder per precision.")] = None,
    precisions: Annotated[list[str] | None, typer.Option("--precisions", help="With --model: fp32,fp16,int8.")] = None,
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
        batches = [int(b) for b in _csv(batch, ("1", "8", "16"))]
    except ValueError:
        raise HpsedgeError("--batch takes integers, e.g. --batch 1,8,16") from None
    cfg = BenchConfig(out=out, folders=folders or [], model=model, precisions=_csv(precisions, ("fp32", "fp16", "int8")),
                      backends=_csv(backends, ("ort", "trt")), batches=batches, builds=builds, smpl=smpl, image=image,
                      reps=reps, warmup=warmup, device=device, threads=threads, checkpoint=checkpoint,
                      calib_images=calib_images, calib_boxes=calib_boxes, note=note, force=force, tiny=tiny)
    with _progress("bench") as step:
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


# -------------------------------------------------------------------------------------------------
def main() -> None:
    """Console entry point: run the app, turning user errors into one clean line.

    A last-resort handler turns any other exception into one ``error:`` line too (exit code 1), with a
    pointer to ``--debug`` for the traceback; ``--debug`` re-raises everything.
    """
    import signal

    def _sigterm(signum: int, frame: object) -> None:  # handled like Ctrl-C: temp folders are cleaned up
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError, OSError):  # not the main thread / platform without SIGTERM
        signal.signal(signal.SIGTERM, _sigterm)
    if "--debug" in sys.argv[1:]:
        _state["debug"] = True
    try:
        app()
    except HpsedgeError as exc:
        if _state["debug"]:
            raise
        _print_error(exc.message, exc.hint)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False, highlight=False)
        sys.exit(130)
    except SystemExit:
        raise
    except OSError as exc:  # unwritable output, full disk, a folder where a file belongs ...
        if _state["debug"]:
            raise
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        _print_error(f"cannot access{where}: {exc.strerror or exc}",
                     "check the path, its permissions and the free space; run with --debug for the traceback")
        sys.exit(1)
    except MemoryError:
        if _state["debug"]:
            raise
        _print_error("out of memory", "use fewer boxes per image, a smaller --max-batch, or a machine with more RAM")
        sys.exit(1)
    except Exception as exc:  # last resort: never a traceback for the user
        if _state["debug"]:
            raise
        text = str(exc).strip().splitlines()
        detail = f": {text[0][:300]}" if text else ""
        _print_error(f"unexpected {type(exc).__name__}{detail}", "run with --debug for the traceback")
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
