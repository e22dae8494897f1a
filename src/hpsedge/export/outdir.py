"""Output folders that are written whole or not at all, and never replace what the user did not ask to.

:func:`atomic_folder` is what ``hpsedge export onnx`` and ``hpsedge export build`` write through:

* a lock (``.NAME.lock`` beside the folder, ``flock``) is held for the whole build, so two builds to one
  ``--out`` cannot both "succeed"; the second stops at once with a message;
* the work happens in ``.NAME.tmp-XXXX`` beside the target; temp folders of earlier builds to the same place
  that were killed (SIGKILL, power loss) are removed first (a live build would hold the lock), and a build
  killed between the two renames of a ``--force`` replacement gets its previous folder renamed back;
* the final rename never replaces a folder that appeared while the build ran unless ``force`` was given
  (``renameat2(RENAME_NOREPLACE)`` on Linux), and ``force`` replaces only an hpsedge build folder (one with an
  hpsedge manifest) or an empty folder, never anything else;
* folders get ``0777 & ~umask`` and files ``0666 & ~umask`` (usually 0755/0644), not ``mkdtemp``'s 0700;
* on any exception (Ctrl-C and, through the CLI, SIGTERM included) the temp folder and the lock are removed
  and the target is untouched.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from hpsedge.errors import HpsedgeError
from hpsedge.runtime.manifest import MANIFEST_NAME, SCHEMA

log = logging.getLogger(__name__)

__all__ = ["atomic_folder", "check_target", "is_build_folder", "output_lock"]


def is_build_folder(path: Path) -> bool:
    """True when ``path`` is a real folder holding an hpsedge ``manifest.json`` (schema checked, small file)."""
    m = path / MANIFEST_NAME
    try:
        if path.is_symlink() or not path.is_dir() or not m.is_file() or m.stat().st_size > 16 << 20:
            return False
        data = json.loads(m.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("schema") == SCHEMA


def _is_empty_dir(path: Path) -> bool:
    try:
        return path.is_dir() and not path.is_symlink() and not any(path.iterdir())
    except OSError:
        return False


#: what ``force`` may replace by default, in words (see :func:`check_target`)
_BUILD_FOLDER = ("an hpsedge build folder (no hpsedge manifest.json)", "build folders")


def check_target(out_dir: Path, force: bool, replaceable: Callable[[Path], bool] | None = None,
                 what: tuple[str, str] = _BUILD_FOLDER) -> None:
    """Refuse to touch an existing folder (or file) unless ``force``, and with ``force`` anything that is
    not an hpsedge build folder (``replaceable``, default :func:`is_build_folder`; ``what`` names it in the
    message) or an empty folder; called before any work."""
    replaceable = replaceable or is_build_folder
    out_dir = Path(out_dir)
    exists = out_dir.exists() or out_dir.is_symlink()
    if exists and not force:
        raise HpsedgeError(f"{out_dir} already exists; not overwriting it", hint="pass --force to replace it")
    if not exists:
        return
    if out_dir.is_symlink() or not out_dir.is_dir():
        raise HpsedgeError(f"{out_dir} exists and is not a folder; refusing to replace it")
    if not (replaceable(out_dir) or _is_empty_dir(out_dir)):
        raise HpsedgeError(
            f"{out_dir} is not {what[0]} and not empty; --force only replaces {what[1]}",
            hint="choose another --out, or move that folder away yourself",
        )


@contextlib.contextmanager
def output_lock(out_dir: Path) -> Iterator[Path]:
    """Hold an exclusive lock for ``out_dir`` (``.NAME.lock`` beside it) or fail at once if another process
    holds it. The lock file is removed on release."""
    import fcntl

    lock = out_dir.parent / f".{out_dir.name}.lock"
    for _ in range(3):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise HpsedgeError(
                    f"another hpsedge build is writing to {out_dir} (lock {lock.name} is held)",
                    hint="wait for it to finish, or choose another --out",
                ) from None
            raise
        try:  # the file may have been unlinked by the previous holder between our open and flock: retry
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    else:  # pragma: no cover - three lost races in a row
        raise HpsedgeError(f"could not lock {out_dir}; try again")
    try:
        yield lock
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def _remove_stale(out_dir: Path) -> None:
    """Clean up after builds that were killed (we hold the lock, so no live build owns what is found).

    A ``--force`` build replaces a folder in two renames (old → ``.NAME.old-PID``, new → ``NAME``). Killed
    between them, the previous build exists only as ``.NAME.old-PID``: when ``NAME`` is missing, the newest
    such folder is renamed back to ``NAME`` (never deleted). Then ``.NAME.tmp-*`` folders and any remaining
    ``.NAME.old-*`` ones (whose replacement did land) are removed.
    """
    tmp_pattern = re.compile(re.escape(f".{out_dir.name}.") + r"tmp-[A-Za-z0-9_]+")
    old_pattern = re.compile(re.escape(f".{out_dir.name}.") + r"old-\d+")
    try:
        entries = [e for e in out_dir.parent.iterdir() if e.is_dir() and not e.is_symlink()]
    except OSError:
        return
    olds = [e for e in entries if old_pattern.fullmatch(e.name)]
    if olds and not (out_dir.exists() or out_dir.is_symlink()):
        newest = max(olds, key=lambda e: e.lstat().st_ctime_ns)  # renamed aside last
        try:
            _rename_noreplace(newest, out_dir)
        except OSError as exc:
            raise HpsedgeError(
                f"{out_dir} was being replaced when a build was killed; its previous contents are in "
                f"{newest.name} and could not be put back ({exc.strerror or exc})",
                hint=f"rename {newest} to {out_dir} yourself",
            ) from None
        log.warning("restored %s from %s, left by a build killed while replacing it", out_dir, newest.name)
        olds.remove(newest)
    for entry in [e for e in entries if tmp_pattern.fullmatch(e.name)] + olds:
        log.info("removing %s, left by an interrupted build", entry)
        shutil.rmtree(entry, ignore_errors=True)


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)  # not thread-safe, only where /proc is missing
    os.umask(old)
    return old


def _ordinary_permissions(root: Path) -> None:
    """Directories ``0777 & ~umask``, files ``0666 & ~umask`` (mkdtemp/mkstemp make 0700/0600)."""
    mask = _umask()
    os.chmod(root, 0o777 & ~mask)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, 0o777 & ~mask)
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p) and stat.S_ISREG(os.lstat(p).st_mode):
                os.chmod(p, 0o666 & ~mask)


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``, failing with FileExistsError if ``dst`` exists (atomic on Linux)."""
    libc_name = ctypes.util.find_library("c")
    fn = None
    if libc_name:
        with contextlib.suppress(OSError, AttributeError):
            fn = ctypes.CDLL(libc_name, use_errno=True).renameat2
    if fn is not None:
        rc = fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE)
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise FileExistsError(err, os.strerror(err), str(dst))
        if err not in (errno.EINVAL, errno.ENOSYS):  # EINVAL/ENOSYS: the filesystem lacks the flag
            raise OSError(err, os.strerror(err), str(dst))
    if dst.exists() or dst.is_symlink():  # fallback: a small window remains
        raise FileExistsError(errno.EEXIST, "exists", str(dst))
    os.rename(src, dst)


@contextlib.contextmanager
def atomic_folder(out_dir: Path, force: bool, replaceable: Callable[[Path], bool] | None = None,
                  what: tuple[str, str] = _BUILD_FOLDER) -> Iterator[Path]:
    """Yield a temporary folder next to ``out_dir``; on success it becomes ``out_dir`` in one rename.

    See the module docstring for the lock, the stale-folder cleanup, the ``force`` rules and permissions;
    ``replaceable``/``what``: see :func:`check_target` (other kinds of hpsedge output, e.g. a Triton repository).
    """
    out_dir = Path(out_dir)
    check_target(out_dir, force, replaceable, what)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HpsedgeError(f"cannot create {out_dir.parent} ({exc.strerror or exc})") from None
    if not os.access(out_dir.parent, os.W_OK | os.X_OK):
        raise HpsedgeError(f"{out_dir.parent} is not writable; cannot create {out_dir.name} there")
    with output_lock(out_dir):
        _remove_stale(out_dir)
        check_target(out_dir, force, replaceable, what)  # a folder restored just now counts as existing
        existed = out_dir.exists() or out_dir.is_symlink()
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
        try:
            yield tmp
            _ordinary_permissions(tmp)
            if out_dir.exists() or out_dir.is_symlink():
                if not force:
                    raise HpsedgeError(
                        f"{out_dir} appeared while the build ran; not replacing it (the new build is discarded)",
                        hint="pass --force to replace it, or choose another --out",
                    )
                check_target(out_dir, force, replaceable, what)  # still a build folder or empty?
                # move the old folder aside first, so a failure keeps one of the two
                old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
                os.replace(out_dir, old)
                os.replace(tmp, out_dir)
                shutil.rmtree(old, ignore_errors=True)
                if not existed:
                    log.warning("%s appeared while the build ran and was replaced (--force)", out_dir)
            else:
                try:
                    _rename_noreplace(tmp, out_dir)
                except FileExistsError:
                    raise HpsedgeError(
                        f"{out_dir} appeared while the build ran; not replacing it (the new build is discarded)",
                        hint="choose another --out",
                    ) from None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
