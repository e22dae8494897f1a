"""Compatibility path: the errors now live in :mod:`hpsedge.errors` (same classes, re-exported)."""

from hpsedge.errors import (
    BackendError,
    CheckpointError,
    ExportError,
    HpsedgeError,
    InputError,
    ManifestError,
    SMPLFileError,
)

__all__ = [
    "BackendError",
    "CheckpointError",
    "ExportError",
    "HpsedgeError",
    "InputError",
    "ManifestError",
    "SMPLFileError",
]
