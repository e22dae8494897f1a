"""The ``hpsedge`` console script: a tiny shim in front of :mod:`hpsedge.cli`.

``pip install hpsedge`` alone installs numpy and the runtime; the command line needs the ``cli`` extra
(typer, rich). Importing :mod:`hpsedge.cli` without them would end in a traceback, so this module checks
first (standard library only) and prints one ``error:`` line instead.
"""

from __future__ import annotations

import importlib.util
import sys

#: what the command line imports at start-up (the ``cli`` extra); pillow is only needed by ``run``
CLI_MODULES = ("typer", "rich")


def missing_cli_modules() -> list[str]:
    """The CLI's start-up modules that are not installed here."""
    missing = []
    for name in CLI_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def main() -> None:
    """Run the command line, or say in one line which extra is missing."""
    missing = missing_cli_modules()
    if missing:
        sys.stderr.write(
            f"error: the hpsedge command needs the CLI extras (missing: {', '.join(missing)}): "
            "pip install 'hpsedge[cli]'\n"
        )
        sys.exit(2)
    from hpsedge.cli import main as cli_main

    cli_main()


if __name__ == "__main__":  # pragma: no cover
    main()
