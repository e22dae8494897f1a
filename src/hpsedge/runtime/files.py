"""The two file primitives everything else uses: an atomic write and a file hash.

``atomic_write`` never leaves a half-written file under the final name: the data goes to a temporary file
in the same folder (same file system, so the rename is atomic), is flushed to disk, gets the mode a plain
``open()`` would have given it under the umask (``mkstemp`` makes 0600), and is renamed over the target.
A failure removes the temporary file and leaves any old file untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

#: bytes, text (written as UTF-8), a buffer (``memoryview``, ``trt.IHostMemory``), or a writer callback
Payload = bytes | str | memoryview | Callable[[BinaryIO], Any]


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | Path, data: Payload | Any, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring); returns ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            elif isinstance(data, str):
                f.write(data.encode("utf-8"))
            else:
                f.write(memoryview(data).cast("B"))
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (engines and ONNX files can be gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


class PartFile:
    """A recording written as ``<name>.part`` and renamed to its name when closed, or dropped on an error.

    Subclasses set ``self.path``, ``self._part`` and ``self._closed = False`` and implement ``_finish()``
    (flush what is buffered into the part file) and ``_drop()`` (release it without finishing). As a context
    manager, an exception other than Ctrl-C drops the part file; a clean exit or Ctrl-C keeps what was written.
    """

    path: Path
    _part: Path
    _closed: bool

    def _finish(self) -> None:  # pragma: no cover - every subclass has one
        raise TypeError(f"{type(self).__name__} must define _finish()")

    def _drop(self) -> None:
        """Release the part file without finishing it (default: nothing to release)."""

    def close(self) -> Path:
        """Finish the file and move it into place."""
        if not self._closed:
            self._closed = True
            self._finish()
            self._part.replace(self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial file (an error before the end)."""
        if not self._closed:
            self._closed = True
            self._drop()
            self._part.unlink(missing_ok=True)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self.close()
        else:
            self.abort()
