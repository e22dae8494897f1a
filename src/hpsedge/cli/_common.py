"""What the command modules share: consoles, the debug switch, progress, error printing, shared options.

Every command module is a thin typer wrapper over a library function; this module holds only what is
about presenting results and reading options, never the work itself.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from hpsedge.console import make_console
from hpsedge.errors import HpsedgeError

log = logging.getLogger("hpsedge")
console = make_console()
err_console = make_console(stderr=True)

#: set by the app callback (``--debug``): errors re-raise with their traceback
_state = {"debug": False}

#: modules of the export side (pip install 'hpsedge[export]'); a command that needs one of them and
#: finds it missing says so in one line instead of a traceback
EXPORT_MODULES = frozenset({"torch", "onnx", "onnxscript", "smplx"})


def parse_precision(value: str | None) -> str | None:
    """Callback of every ``--precision`` option: the one list of names (:class:`hpsedge.runtime.folder.Precision`),
    checked while the command line is read, before any model or folder loads (one ``error:`` line)."""
    from hpsedge.runtime.folder import Precision

    return None if value is None else Precision.parse(value).value


def parse_precisions(values: list[str] | None) -> list[str] | None:
    """Callback of ``--precisions fp32,fp16``: each name checked as :func:`parse_precision` does."""
    from hpsedge.runtime.folder import Precision

    if values is None:
        return None
    return [Precision.parse(v, "--precisions").value for item in values for v in str(item).split(",") if v.strip()]


def new_app(help_text: str) -> typer.Typer:
    """A typer (sub-)app with the project's settings: plain click help (``[[x1,y1,...]]`` stays literal)."""
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=None)


@contextlib.contextmanager
def export_side(what: str) -> Iterator[None]:
    """Turn a missing export-side module (torch, onnx) inside the block into one clean error line."""
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in EXPORT_MODULES:
            raise
        raise HpsedgeError(f"{what} needs the export extras (no module '{top}' here): "
                           "pip install 'hpsedge[export]'") from exc


@contextlib.contextmanager
def progress_steps(title: str) -> Iterator[Callable[[str], None]]:
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


def fmt_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def print_error(message: str, hint: str | None = None) -> None:
    """``error: …`` / ``hint: …`` as plain text: a path with ``[`` or ``pip install 'hpsedge[export]'`` is
    printed as written (no rich markup interpretation), on one line each."""
    from rich.text import Text

    one_line = " ".join(str(message).split())
    err_console.print(Text.assemble(("error:", "bold red"), " ", one_line), highlight=False, soft_wrap=True)
    if hint:
        err_console.print(Text.assemble(("hint:", "bold"), " ", " ".join(str(hint).split())), highlight=False,
                          soft_wrap=True)


def csv(values: list[str] | None, default: tuple[str, ...]) -> list[str]:
    """Repeatable and/or comma-separated option values (``--batch 1,8 --batch 16``)."""
    out = [v.strip() for item in (values or []) for v in item.split(",") if v.strip()]
    return out or list(default)


def refuse_existing_output(out: Path, force: bool) -> None:
    """One line when ``out`` is a file, or a non-empty folder and ``--force`` was not given."""
    if out.exists() and not out.is_dir():
        raise HpsedgeError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise HpsedgeError(f"{out} is not empty; not overwriting it", hint="pass --force, or choose another --out")


# ----------------------------------------------------------------- options shared by several commands
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Zoo model name (see `hpsedge models`).")]
CheckpointOpt = Annotated[
    Path | None, typer.Option("--checkpoint", "-c", help="Official or hpsedge checkpoint (.pt/.pth/.ckpt).")
]
TokenizerOpt = Annotated[Path | None, typer.Option("--tokenizer", help="TokenHMR: tokenizer.pth (decoder + codebook).")]
CalibMethodOpt = Annotated[
    str | None, typer.Option("--calib-method", help="INT8 calibration: max | entropy | percentile [default: percentile].")
]
MaxDropDegOpt = Annotated[
    float | None,
    typer.Option("--max-drop-deg", help="Fail if the mean pose error vs FP32 exceeds this (degrees) "
                 "[default: no failure; report.md checks 1° fp16, 5° int8]."),
]
MinSigmaRankCorrOpt = Annotated[
    float | None,
    typer.Option("--min-sigma-rank-corr", help="Fail if σ's rank correlation vs FP32 is lower "
                 "[default: no failure; report.md checks 0.95 fp16, 0.8 int8]."),
]
ReportSmplOpt = Annotated[Path | None, typer.Option("--smpl", help="SMPL file: adds MPJPE/vertex error (mm) to the report.")]
Int8FlavorOpt = Annotated[
    str | None,
    typer.Option("--int8-flavor", help="INT8 Q/DQ graphs: both [default: TensorRT s8s8 + ONNX Runtime CPU, "
                 "same ranges] | trt | ort."),
]
UnsafePickleOpt = Annotated[
    bool, typer.Option("--unsafe-pickle", help="Allow full unpickling of a checkpoint you trust (can run code).")
]
TinyOpt = Annotated[bool, typer.Option("--tiny", hidden=True, help="Tiny test configuration.")]
BackendOpt = Annotated[str, typer.Option("--backend", help="auto | ort | trt")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | tensorrt (ONNX Runtime), or a GPU index.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="ONNX Runtime threads [default: one per core].")]
SmplMeshOpt = Annotated[Path | None, typer.Option("--smpl", help="SMPL model (.npz or official .pkl) for meshes.")]
JRegressorExtraOpt = Annotated[
    Path | None, typer.Option("--j-regressor-extra", help="J_regressor_extra.npy for the 49-joint set.")
]


def precision_options(
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


def accuracy_line(acc: dict) -> str:
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
