"""Errors that reach the user (package level: the export side, the runtime and the CLI share them).

Every failure that a user can cause (a wrong file, a bad argument, a machine that cannot run an
artifact) is raised as :class:`HpsedgeError` with a one-line message and, where there is one, a fix.
The CLI prints ``error: <message>`` (plus ``hint: <fix>``) and exits non-zero without a traceback.

Standard library only: the runtime, the CLI entry shim and the export side all import it.
:mod:`hpsedge.errors` re-exports everything here for code written against the old path.
"""

from __future__ import annotations


class HpsedgeError(Exception):
    """A user-facing error: a one-line ``message`` and an optional ``hint`` saying how to fix it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class CheckpointError(HpsedgeError):
    """A checkpoint file that cannot be loaded into the requested model."""


class ManifestError(HpsedgeError):
    """A missing, corrupt or incompatible ``manifest.json``."""


class SMPLFileError(HpsedgeError):
    """A body-model file that is not an SMPL model, is truncated, or holds forbidden objects."""


class InputError(HpsedgeError):
    """Bad runtime input: image, boxes, tensors with NaN, and the like."""


class BackendError(HpsedgeError):
    """A backend that is missing or cannot run the artifact on this machine."""


class ExportError(HpsedgeError):
    """An export or verification step that failed."""
