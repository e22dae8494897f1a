"""Restricted unpickling: read pickled files (SMPL models, TokenHMR checkpoints) without running their code.

This is hpsedge's one unpickler core: SMPL files use :func:`load_smpl_pickle`, and ``hpsedge.models.checkpoints``
reads TokenHMR's ``.ckpt``/``tokenizer.pth`` through :func:`pickle_module` (handed to ``torch.load``).

A pickle names the callables it needs by ``module`` + ``name`` (the GLOBAL opcodes), and ``pickle.load`` imports
and calls whatever is named, ``os.system`` included. :class:`RestrictedUnpickler` resolves every name through an
allowlist instead; anything else aborts the load with an :class:`~hpsedge.errors.HpsedgeError` subclass
naming the refused global, before anything is called.

Official SMPL files (``basicModel_*.pkl`` / ``SMPL_*.pkl``) are Python-2 pickles holding numpy arrays, a
``chumpy.ch.Ch`` object (``shapedirs``) and a ``scipy.sparse.csc_matrix`` (``J_regressor``). :func:`load_smpl_pickle`
reads them with neither chumpy nor scipy: chumpy classes become :class:`ChumpyStub` (the array is in the state's
``x``), scipy sparse matrices become :class:`SparseStub` (densified with numpy), and :func:`to_numpy` turns both
into plain ``ndarray``s.

Public API::

    load_smpl_pickle(path) -> dict                  # official or clean SMPL-family pickle, stubs -> ndarrays
    restricted_load(path_or_file, allowed, *, resolver=None, error=SMPLFileError, encoding="latin1",
                    persistent_load=None, what="pickle") -> object
    RestrictedUnpickler(file, allowed, *, resolver=None, error=SMPLFileError, encoding="latin1",
                        persistent_load=None, what="pickle")
    pickle_module(allowed, *, resolver=None, error=SMPLFileError, what="pickle")  # for torch.load(pickle_module=)
    NUMPY_GLOBALS, PY2_COMPAT_GLOBALS, SMPL_GLOBALS       # allowlists: {(module, name): object}
    smpl_resolver(module, name) -> object | None           # chumpy.* / scipy.sparse.* stand-ins
    to_numpy(obj) -> object                                # stubs -> ndarrays, recursively in dicts/lists/tuples

This module imports neither scipy nor chumpy.
"""

from __future__ import annotations

import _codecs
import copyreg
import io
import os
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from hpsedge.errors import HpsedgeError, SMPLFileError

__all__ = [
    "NUMPY_GLOBALS",
    "PY2_COMPAT_GLOBALS",
    "SMPL_GLOBALS",
    "ChumpyStub",
    "RestrictedUnpickler",
    "SparseStub",
    "load_smpl_pickle",
    "pickle_module",
    "restricted_load",
    "smpl_resolver",
    "to_numpy",
]

Resolver = Callable[[str, str], Any]


# ----------------------------------------------------------------------------------------------- allowlists
def _numpy_multiarray() -> Any:
    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    return multiarray


def _numpy_frombuffer() -> Any:
    try:
        from numpy._core.numeric import _frombuffer
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]
    return _frombuffer


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of ``bytes`` use it, limited to the text codecs they name."""
    if encoding.lower().replace("_", "-") not in {
        "latin1",
        "latin-1",
        "iso-8859-1",
        "iso8859-1",
        "utf-8",
        "utf8",
        "ascii",
    }:
        raise pickle.UnpicklingError(f"_codecs.encode with codec {encoding!r} is not allowed")
    if not isinstance(obj, str):
        raise pickle.UnpicklingError("_codecs.encode on a non-string is not allowed")
    return _codecs.encode(obj, encoding, errors)


def _build_numpy_globals() -> dict[tuple[str, str], Any]:
    ma = _numpy_multiarray()
    frombuffer = _numpy_frombuffer()
    out: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    # numpy 2 moved numpy.core to numpy._core; old pickles name the former, new ones the latter.
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(mod, "_reconstruct")] = ma._reconstruct
        out[(mod, "scalar")] = ma.scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        out[(mod, "_frombuffer")] = frombuffer
    return out


#: numpy array, dtype and scalar reconstruction (both the ``numpy.core`` and ``numpy._core`` spellings).
NUMPY_GLOBALS: dict[tuple[str, str], Any] = _build_numpy_globals()

#: What pickles of plain Python objects need at protocols 0-2, in Python 2 and Python 3 spelling.
PY2_COMPAT_GLOBALS: dict[tuple[str, str], Any] = {
    ("_codecs", "encode"): _latin1_encode,
    ("copy_reg", "_reconstructor"): copyreg._reconstructor,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
}

#: Everything an SMPL-family pickle needs besides the chumpy / scipy stand-ins from :func:`smpl_resolver`.
SMPL_GLOBALS: dict[tuple[str, str], Any] = {**NUMPY_GLOBALS, **PY2_COMPAT_GLOBALS}


# -------------------------------------------------------------------------------------------- stand-ins
class _Stub:
    """An inert object the unpickler can create (``NEWOBJ`` / ``copy_reg._reconstructor``) and fill (``BUILD``)."""

    _origin = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> _Stub:
        return object.__new__(cls)

    def __init__(
        self, *args: Any, **kwargs: Any
    ) -> None:  # called by copyreg._reconstructor for base=object only
        pass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
            state = {**(state[0] or {}), **(state[1] or {})}  # (dict, slotstate)
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(
                f"unexpected state of type {type(state).__name__} for {self._origin}"
            )
        self.__dict__["_state"] = state

    @property
    def state(self) -> dict[str, Any]:
        return self.__dict__.get("_state", {})

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {self._origin}>"


class ChumpyStub(_Stub):
    """Stand-in for any ``chumpy`` class. ``Ch`` keeps its value in ``x``; ``reordering.Select`` is
    ``a.ravel()[idxs].reshape(preferred_shape)``."""

    def to_numpy(self) -> np.ndarray:
        st = self.state
        if "x" in st:
            return np.asarray(to_numpy(st["x"]))
        if "a" in st and "idxs" in st:  # chumpy.reordering.Select
            a = np.asarray(to_numpy(st["a"]))
            arr = a.ravel()[np.asarray(to_numpy(st["idxs"])).ravel()]
            shape = st.get("preferred_shape")
            return arr.reshape(tuple(shape)) if shape is not None else arr
        raise SMPLFileError(
            f"cannot read the chumpy object {self._origin} (it stores no value): only Ch and Select are supported",
            hint="convert the file with smplx's tools/clean_ch.py, or load it with chumpy installed and re-save it",
        )


class SparseStub(_Stub):
    """Stand-in for ``scipy.sparse`` csc/csr/coo matrices, densified with numpy."""

    def to_numpy(self) -> np.ndarray:
        st = self.state
        shape = st.get("_shape", st.get("shape"))
        if shape is None:
            raise SMPLFileError(f"sparse matrix {self._origin} without a shape")
        shape = tuple(int(s) for s in shape)
        data = np.asarray(to_numpy(st.get("data")))
        out = np.zeros(shape, dtype=data.dtype if data.size else np.float64)
        fmt = self._origin.rsplit(".", 1)[-1][:3]
        if fmt == "coo":
            if "coords" in st:  # scipy >= 1.13
                row, col = (np.asarray(to_numpy(c), dtype=np.int64) for c in st["coords"])
            else:
                row = np.asarray(to_numpy(st.get("row")), dtype=np.int64)
                col = np.asarray(to_numpy(st.get("col")), dtype=np.int64)
            np.add.at(out, (row, col), data)
            return out
        indices = np.asarray(to_numpy(st.get("indices")), dtype=np.int64)
        indptr = np.asarray(to_numpy(st.get("indptr")), dtype=np.int64)
        major = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        if fmt == "csc":  # columns are compressed: indices are row numbers
            np.add.at(out, (indices, major), data)
        else:  # csr
            np.add.at(out, (major, indices), data)
        return out


_SPARSE_MODULES = {
    "scipy.sparse",
    "scipy.sparse.csc",
    "scipy.sparse.csr",
    "scipy.sparse.coo",
    "scipy.sparse._csc",
    "scipy.sparse._csr",
    "scipy.sparse._coo",
}
_SPARSE_NAMES = {"csc_matrix", "csr_matrix", "coo_matrix", "csc_array", "csr_array", "coo_array"}
_stub_cache: dict[tuple[str, str], type] = {}


def smpl_resolver(module: str, name: str) -> Any:
    """Stand-in classes for ``chumpy.*`` and ``scipy.sparse`` csc/csr/coo; ``None`` for everything else."""
    key = (module, name)
    if key in _stub_cache:
        return _stub_cache[key]
    if module == "chumpy" or module.startswith("chumpy."):
        base: type = ChumpyStub
    elif module in _SPARSE_MODULES and name in _SPARSE_NAMES:
        base = SparseStub
    else:
        return None
    cls = type(name, (base,), {"_origin": f"{module}.{name}", "__module__": __name__})
    _stub_cache[key] = cls
    return cls


def to_numpy(obj: Any) -> Any:
    """Replace stand-ins by ndarrays, recursively through dicts, lists and tuples."""
    if isinstance(obj, (ChumpyStub, SparseStub)):
        return obj.to_numpy()
    if isinstance(obj, dict):
        return {k: to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_numpy(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_numpy(v) for v in obj)
    return obj


# ------------------------------------------------------------------------------------------- unpickler
class RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` that resolves globals only through ``allowed`` (``{(module, name): object}``)
    and then ``resolver(module, name)`` (return ``None`` to refuse). A refused global raises ``error``."""

    def __init__(
        self,
        file: IO[bytes],
        allowed: Mapping[tuple[str, str], Any],
        *,
        resolver: Resolver | None = None,
        error: type[HpsedgeError] = SMPLFileError,
        encoding: str = "latin1",
        persistent_load: Callable[[Any], Any] | None = None,
        what: str = "pickle",
    ) -> None:
        super().__init__(file, encoding=encoding, fix_imports=False)
        self._allowed = allowed
        self._resolver = resolver
        self._error = error
        self._what = what
        # An instance attribute, not a method: the C unpickler reads ``persistent_load`` through a data
        # descriptor, so a later assignment (``torch.load`` makes one) must not be shadowed by a class method.
        self.persistent_load = persistent_load or self._refuse_persistent_id

    def find_class(self, module: str, name: str) -> Any:
        obj = self._allowed.get((module, name))
        if obj is None and self._resolver is not None:
            obj = self._resolver(module, name)
        if obj is None:
            raise self._error(
                f"{self._what} refers to the forbidden global '{module}.{name}'; refusing to load it "
                "(loading it with plain pickle would run that code)",
                hint="only use model files from a source you trust; nothing from this file was executed",
            )
        return obj

    def _refuse_persistent_id(self, pid: Any) -> Any:
        raise self._error(f"{self._what} uses persistent ids, which this loader does not accept")


def pickle_module(
    allowed: Mapping[tuple[str, str], Any],
    *,
    resolver: Resolver | None = None,
    error: type[HpsedgeError] = SMPLFileError,
    what: str = "pickle",
) -> Any:
    """A ``pickle``-like module (``Unpickler`` and ``load``) built on :class:`RestrictedUnpickler`.

    For loaders that take a ``pickle_module`` (``torch.load``): they construct ``Unpickler(file, **kwargs)``,
    may wrap ``find_class`` (torch maps its storage classes first) and set ``persistent_load`` (torch feeds
    tensor data through it); every other global still goes through ``allowed`` and ``resolver``.
    """

    class Unpickler(RestrictedUnpickler):
        def __init__(self, file: IO[bytes], *, encoding: str = "latin1", **_ignored: Any) -> None:
            super().__init__(file, allowed, resolver=resolver, error=error, encoding=encoding, what=what)

    def load(file: IO[bytes], **kwargs: Any) -> Any:
        return Unpickler(file, **kwargs).load()

    import types

    return types.SimpleNamespace(__name__="hpsedge_restricted_pickle", Unpickler=Unpickler, load=load)


def restricted_load(
    source: str | os.PathLike[str] | IO[bytes] | bytes,
    allowed: Mapping[tuple[str, str], Any],
    *,
    resolver: Resolver | None = None,
    error: type[HpsedgeError] = SMPLFileError,
    encoding: str = "latin1",
    persistent_load: Callable[[Any], Any] | None = None,
    what: str | None = None,
) -> Any:
    """Unpickle ``source`` (a path, a binary file object or bytes) allowing only the given globals.

    Every failure (missing file, truncated or corrupt data, a forbidden global) raises ``error`` with a
    one-line message; ``what`` names the file in messages (default: the path).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _load_stream(
            io.BytesIO(source), allowed, resolver, error, encoding, persistent_load, what or "pickle"
        )
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = what or str(path)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise error(f"{label}: no such file") from None
        except OSError as exc:
            raise error(f"{label}: cannot open ({exc.strerror or exc})") from None
        with fh:
            return _load_stream(fh, allowed, resolver, error, encoding, persistent_load, label)
    return _load_stream(source, allowed, resolver, error, encoding, persistent_load, what or "pickle")


def _load_stream(
    fh: IO[bytes],
    allowed: Mapping[tuple[str, str], Any],
    resolver: Resolver | None,
    error: type[HpsedgeError],
    encoding: str,
    persistent_load: Callable[[Any], Any] | None,
    label: str,
) -> Any:
    unpickler = RestrictedUnpickler(
        fh,
        allowed,
        resolver=resolver,
        error=error,
        encoding=encoding,
        persistent_load=persistent_load,
        what=label,
    )
    try:
        return unpickler.load()
    except HpsedgeError:
        raise
    except EOFError:
        raise error(
            f"{label}: the pickle ends early (truncated file?)", hint="download or copy the file again"
        ) from None
    except pickle.UnpicklingError as exc:
        if "truncated" in str(exc):
            raise error(
                f"{label}: the pickle ends early (truncated file?)", hint="download or copy the file again"
            ) from None
        raise error(
            f"{label}: not a valid pickle or corrupt ({exc})", hint="download or copy the file again"
        ) from None
    except MemoryError:
        raise error(f"{label}: corrupt pickle (asks for more memory than available)") from None
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        UnicodeDecodeError,
        OverflowError,
    ) as exc:
        raise error(f"{label}: corrupt or unsupported pickle ({type(exc).__name__}: {exc})") from None


def load_smpl_pickle(source: str | os.PathLike[str] | IO[bytes] | bytes, *, what: str | None = None) -> Any:
    """Load an SMPL-family ``.pkl`` (official Python-2 file with chumpy/scipy objects, or a clean one).

    Returns the unpickled object with every chumpy / sparse stand-in replaced by a plain ``ndarray``.
    """
    obj = restricted_load(
        source, SMPL_GLOBALS, resolver=smpl_resolver, error=SMPLFileError, encoding="latin1", what=what
    )
    try:
        return to_numpy(obj)
    except HpsedgeError:
        raise
    except Exception as exc:  # malformed stand-in state (bad indices, shapes ...)
        label = what or (str(source) if isinstance(source, (str, os.PathLike)) else "pickle")
        raise SMPLFileError(f"{label}: corrupt chumpy/sparse object ({type(exc).__name__}: {exc})") from None
