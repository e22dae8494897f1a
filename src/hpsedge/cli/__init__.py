"""The ``hpsedge`` command line (typer): one module per command group, each a thin wrapper over a library
function (see the README's Python section).

Heavy imports (torch, onnx) happen inside the commands that need them, so ``hpsedge --help`` is quick and
``hpsedge run`` works on a machine that has only the runtime installed. User errors
(:class:`HpsedgeError`) are printed as one ``error:`` line plus a ``hint:`` and exit with code 2; no
traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Annotated

import typer

import hpsedge
from hpsedge.cli._common import _state, console, err_console, print_error
from hpsedge.cli.calib import calib_app
from hpsedge.cli.curate import curate_cmd
from hpsedge.cli.eval import bench_cmd, val_cmd
from hpsedge.cli.export import export_app
from hpsedge.cli.inspect import inspect_cmd
from hpsedge.cli.models import models_cmd
from hpsedge.cli.run import run_cmd
from hpsedge.cli.serve import serve_cmd
from hpsedge.cli.smpl import smpl_app
from hpsedge.console import make_log_handler
from hpsedge.errors import HpsedgeError

#: kept under its old name for callers of the single-module CLI
_print_error = print_error

app = typer.Typer(
    name="hpsedge",
    help="Export confidence-aware 3D human pose-and-shape regressors to ONNX Runtime and TensorRT.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion [bash|zsh|fish|powershell], --show-completion
    rich_markup_mode=None,  # click's plain help: flags as flags, literal [brackets], defaults shown
)
app.command("models")(models_cmd)
app.add_typer(export_app, name="export")
app.command("serve")(serve_cmd)
app.command("inspect")(inspect_cmd)
app.command("run")(run_cmd)
app.add_typer(smpl_app, name="smpl")
app.add_typer(calib_app, name="calib")
app.command("curate")(curate_cmd)
app.command("val")(val_cmd)
app.command("bench")(bench_cmd)


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
    handler = make_log_handler(err_console)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    _state["debug"] = debug


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
        app(prog_name="hpsedge")  # also under `python -m hpsedge`: completion keys on the name
    except HpsedgeError as exc:
        if _state["debug"]:
            raise
        print_error(exc.message, exc.hint)
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
        print_error(f"cannot access{where}: {exc.strerror or exc}",
                     "check the path, its permissions and the free space; run with --debug for the traceback")
        sys.exit(1)
    except MemoryError:
        if _state["debug"]:
            raise
        print_error("out of memory", "use fewer boxes per image, a smaller --max-batch, or a machine with more RAM")
        sys.exit(1)
    except Exception as exc:  # last resort: never a traceback for the user
        if _state["debug"]:
            raise
        text = str(exc).strip().splitlines()
        detail = f": {text[0][:300]}" if text else ""
        print_error(f"unexpected {type(exc).__name__}{detail}", "run with --debug for the traceback")
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
