"""Loading official (and our own) checkpoints safely and strictly.

Checkpoints are untrusted files. They are read with ``torch.load(weights_only=True)``, which rebuilds
tensors and plain containers and refuses any other object *without executing it*. A file that needs
more (a Lightning ``.ckpt`` with a pickled config) is refused with a message that names the opt-in
``--unsafe-pickle``; only then is it unpickled fully.

Accepted layouts (the official ``POCO.load_pretrained`` accepts the same): a raw state dict, the same
with a ``model.`` prefix (Lightning), or either wrapped in ``{"state_dict": ...}`` / ``{"model": ...}``.
Keys that the exported network does not use are dropped on purpose (see ``ModelSpec.drop_prefixes``)
and logged at debug level; everything else must match exactly, unlike the official loader, which
silently falls back to ``strict=False``.

TokenHMR needs two files: the Lightning checkpoint (``tokenhmr_model_latest.ckpt``: ``state_dict`` with
``backbone.*``, ``smpl_head.*``, ``smpl.*`` and ``initialized``) and the tokenizer (``tokenizer.pth``: ``net``,
the tokenizer's state dict, and ``hparams``, a pickled yacs ``CfgNode``). Both are read by
:func:`read_inert` without executing code and without the official classes: only PyTorch's tensor-rebuild
functions (the set ``torch.load(weights_only=True)`` allows) and numpy's array reconstruction resolve to
real objects; every other pickled global becomes an inert stand-in (:class:`InertObject`) that is never
called. See :func:`load_tokenhmr`.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from hpsedge.errors import CheckpointError
from hpsedge.models.zoo import ModelSpec, expected_state_shapes
from hpsedge.runtime.manifest import sha256_file

#: the seed of a model's random initialisation when no checkpoint is given (``export onnx|build --seed``)
DEFAULT_INIT_SEED = 0

log = logging.getLogger(__name__)

_WRAPPERS = ("state_dict", "model")
_MAX_LISTED = 3


@dataclass
class LoadedCheckpoint:
    """What :func:`load_into` did: the file's hash and which keys it dropped on purpose."""

    path: Path
    sha256: str
    dropped: list[str] = field(default_factory=list)
    stripped_prefix: str | None = None
    wrapper: str | None = None
    #: pickled globals replaced by inert stand-ins while reading (TokenHMR files), e.g. "yacs.config.CfgNode"
    stand_ins: list[str] = field(default_factory=list)
    #: TokenHMR: the tokenizer file loaded beside the model checkpoint
    tokenizer: LoadedCheckpoint | None = None
    #: the spec's second weights file (``ModelSpec.aux_option``) of a ``"torch"``-reader model, if loaded
    aux: LoadedCheckpoint | None = None


# ---------------------------------------------------------------------------------------------------
# inert unpickling
# ---------------------------------------------------------------------------------------------------
class InertObject(dict):
    """Stand-in for a pickled class or function that is not a tensor-rebuild function.

    It records what the pickle asked for and does nothing else: "calling" it (pickle's REDUCE/NEWOBJ)
    makes an instance holding the arguments in ``pickle_args``; ``SETITEMS``/``APPENDS`` fill it as a
    dict/list would; ``BUILD`` stores the state in ``pickle_state``. Subclasses are made per global
    (:func:`_stand_in`), with the global's dotted name in ``pickle_global``. Being a dict, a stand-in for a
    dict subclass such as yacs' ``CfgNode`` can be read like the original (``hparams["ARCH"]["NB_CODE"]``).
    """

    pickle_global = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> InertObject:
        obj = dict.__new__(cls)
        obj.pickle_args = args
        obj.pickle_items: list[Any] = []
        obj.pickle_state = None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # never dict.__init__(args): args are data
        pass

    def __setstate__(self, state: Any) -> None:
        self.pickle_state = state

    def append(self, item: Any) -> None:
        self.pickle_items.append(item)

    def extend(self, items: Any) -> None:
        self.pickle_items.extend(items)

    def __reduce__(self) -> Any:  # pragma: no cover - stand-ins are not meant to be pickled again
        raise TypeError(f"inert stand-in for {self.pickle_global} cannot be pickled")

    def __repr__(self) -> str:
        return f"<inert {self.pickle_global} {dict.__repr__(self)}>"


def _stand_in(module: str, name: str) -> type[InertObject]:
    return type(name, (InertObject,), {"pickle_global": f"{module}.{name}", "__module__": "hpsedge.inert"})


def _allowed_globals() -> dict[str, Any]:
    """Globals that resolve to the real object (dotted name → object): torch's weights-only allowlist and
    numpy's array rebuild, plus the plain-Python pickle helpers of the runtime's core allowlist.

    Every entry only rebuilds data (tensors, storages, dtypes, sizes, ordered dicts, sets, bytes, numpy
    arrays); nothing here can run a shell command, open a file or import a module.
    """
    from hpsedge.runtime.safe_pickle import NUMPY_GLOBALS, PY2_COMPAT_GLOBALS

    allowed: dict[str, Any] = {}
    try:
        from torch import _weights_only_unpickler

        allowed.update(_weights_only_unpickler._get_allowed_globals())
    except Exception:  # pragma: no cover - private torch API moved: fall back to the essentials
        import torch._utils as tu

        allowed.update({f"torch._utils.{n}": getattr(tu, n) for n in ("_rebuild_tensor_v2", "_rebuild_tensor", "_rebuild_parameter")})
        allowed.update({"collections.OrderedDict": OrderedDict, "torch.Size": torch.Size, "torch.device": torch.device})
    # Tensor subclasses are rebuilt by calling a pickled function: not allowed (the stand-in records it).
    allowed.pop("torch._tensor._rebuild_from_type_v2", None)
    # numpy arrays and the protocol-0..2 helpers (``_codecs.encode`` limited to text codecs) from the core
    allowed.update({f"{m}.{n}": obj for (m, n), obj in {**NUMPY_GLOBALS, **PY2_COMPAT_GLOBALS}.items()})
    allowed.update({"builtins.frozenset": frozenset, "builtins.complex": complex, "builtins.slice": slice,
                    "builtins.bytearray": bytearray})
    return allowed


def _inert_pickle_module(record: list[str]) -> Any:
    """A ``pickle_module`` for ``torch.load`` whose unpickler never resolves a non-allowed global.

    Built on the runtime's restricted-unpickler core (:func:`hpsedge.runtime.safe_pickle.pickle_module`):
    ``torch.load`` wraps ``find_class`` (storage classes are mapped by torch itself first) and feeds tensor
    data through its own ``persistent_load``; every other global the pickle names resolves through the
    allowlist or becomes a stand-in. Names replaced by stand-ins are appended to ``record``.
    """
    from hpsedge.runtime.safe_pickle import pickle_module

    def resolver(module: str, name: str) -> Any:
        key = f"{module}.{name}"
        if key not in record:
            record.append(key)
        return _stand_in(module, name)

    allowed = {tuple(k.rsplit(".", 1)): v for k, v in _allowed_globals().items()}
    return pickle_module(allowed, resolver=resolver, error=CheckpointError, what="checkpoint")


def read_inert(path: str | Path, unsafe_pickle: bool = False) -> tuple[Any, list[str]]:
    """Read a checkpoint whose pickle holds non-tensor objects, without executing any of them.

    Returns ``(object, stand-ins)``: the unpickled object (tensors are real, other objects are
    :class:`InertObject` stand-ins) and the dotted names that were replaced. With ``unsafe_pickle`` the file
    is unpickled fully (the official classes must then be importable; only for trusted files).
    """
    record: list[str] = []
    if unsafe_pickle:
        return read_checkpoint(path, unsafe_pickle=True), record
    obj = read_checkpoint(path, pickle_module=_inert_pickle_module(record))
    if record:
        log.info("%s: %d pickled object type(s) read as inert stand-ins: %s", Path(path).name, len(record), ", ".join(record))
    return obj, record


#: entries of a ``torch.save`` zip (under one top-level folder); anything else (TorchScript's ``code/`` and
#: ``constants.pkl``, extra files) means the archive is not a plain pickled checkpoint
_TORCH_ZIP_ENTRY = re.compile(
    r"[^/]+/(data\.pkl|byteorder|version|\.format_version|\.storage_alignment|data/\d+|\.data/version"
    r"|\.data/serialization_id)"
)
_PICKLE_PROTO = b"\x80"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def check_checkpoint_format(fh: IO[bytes], label: str) -> str:
    """Refuse any file that is not a plain pickle or a ``torch.save`` zip, *before* torch reads it.

    ``torch.load`` hands a TorchScript archive (a zip with ``constants.pkl`` and ``code/``) to
    ``torch.jit.load``, which compiles and runs the archive's code (its ``__setstate__`` methods run on
    load), and reads legacy tar checkpoints through extra code paths. Only two layouts pass: a pickle
    (first byte PROTO, protocol 2-5) and a zip whose entries are exactly those ``torch.save`` writes, with
    one ``data.pkl``. Returns ``"pickle"`` or ``"zip"``; ``fh`` is left at offset 0.
    """
    fh.seek(0)
    head = fh.read(4)
    fh.seek(0)
    if head[:1] == _PICKLE_PROTO and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if head not in _ZIP_MAGIC:
        raise CheckpointError(
            f"{label} is not a PyTorch checkpoint (neither a pickle nor a torch.save zip archive)",
            hint="pass the .pt/.pth/.ckpt file written by torch.save",
        )
    try:
        with zipfile.ZipFile(fh) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(
            f"{label} is truncated or corrupt ({_short(str(exc))})", hint="download or copy the checkpoint again"
        ) from None
    finally:
        fh.seek(0)
    if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
        raise CheckpointError(
            f"{label} is a TorchScript archive, not a checkpoint; refusing to load it (loading it would run its code)",
            hint="pass the checkpoint written by torch.save (a state dict), not a torch.jit.save'd model",
        )
    odd = [n for n in names if not _TORCH_ZIP_ENTRY.fullmatch(n)]
    roots = {n.split("/", 1)[0] for n in names}
    if odd or len(roots) != 1 or sum(n.endswith("/data.pkl") for n in names) != 1:
        what = f"unexpected entry '{odd[0]}'" if odd else "not exactly one data.pkl"
        raise CheckpointError(
            f"{label} is a zip archive but not a torch.save checkpoint ({what}); refusing to load it",
            hint="pass the checkpoint written by torch.save",
        )
    return "zip"


def read_checkpoint(path: str | Path, unsafe_pickle: bool = False, pickle_module: Any | None = None) -> Any:
    """Read a checkpoint file into Python objects, refusing anything beyond tensors unless asked.

    The file is opened once; its format is checked (:func:`check_checkpoint_format`) and the same open
    file is handed to ``torch.load``, so nothing can swap it in between. ``pickle_module`` (internal): read
    with that unpickler instead (see :func:`read_inert`).
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.is_dir():
        raise CheckpointError(f"{p} is a folder; pass the checkpoint file itself (e.g. {p}/best_model.pt)")
    if not p.is_file():
        raise CheckpointError(f"{p} is not a regular file (a device, FIFO or socket)")
    try:
        fh = open(p, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot open ({exc.strerror or exc})") from None
    with fh:
        if os.fstat(fh.fileno()).st_size == 0:
            raise CheckpointError(f"{p} is empty (0 bytes)")
        check_checkpoint_format(fh, str(p))
        return _torch_load(fh, p, unsafe_pickle, pickle_module)


def _torch_load(fh: IO[bytes], p: Path, unsafe_pickle: bool, pickle_module: Any | None) -> Any:
    try:
        if pickle_module is not None:
            return torch.load(fh, map_location="cpu", weights_only=False, pickle_module=pickle_module)
        return torch.load(fh, map_location="cpu", weights_only=not unsafe_pickle)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "GLOBAL" in text or "global" in text.split("WeightsUnpickler error:")[-1]:
            culprit = _unsafe_global(text)
            raise CheckpointError(
                f"{p} contains pickled objects other than tensors{culprit}; refusing to unpickle them",
                hint="if you trust this file (e.g. a Lightning .ckpt you made yourself), pass --unsafe-pickle",
            ) from None
        raise CheckpointError(f"{p} is not a PyTorch checkpoint ({_short(text)})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        text = str(exc)
        corrupt = isinstance(exc, (EOFError, zipfile.BadZipFile)) or (isinstance(exc, OSError) and exc.errno == 22)
        if "zip archive" in text or "central directory" in text or corrupt:
            raise CheckpointError(
                f"{p} is truncated or corrupt ({_short(text)})", hint="download or copy the checkpoint again"
            ) from None
        raise CheckpointError(f"{p} could not be read as a PyTorch checkpoint ({_short(text)})") from None
    except MemoryError:
        raise CheckpointError(f"{p} is corrupt (it asks for more memory than is available)") from None
    except Exception as exc:  # garbage bytes make the unpickler fail in arbitrary ways
        raise CheckpointError(
            f"{p} is not a PyTorch checkpoint ({exc.__class__.__name__}: {_short(str(exc))})"
        ) from None


def extract_state_dict(obj: Any, source: str = "checkpoint") -> tuple[dict[str, torch.Tensor], str | None]:
    """Unwrap ``{"model": ...}`` / ``{"state_dict": ...}`` and return a flat name → tensor dict."""
    wrappers: list[str] = []
    for _ in range(2):  # the official loader unwraps 'model' then 'state_dict'; accept either nesting
        key = next((k for k in _WRAPPERS if isinstance(obj, Mapping) and isinstance(obj.get(k), Mapping)), None)
        if key is None:
            break
        obj = obj[key]
        wrappers.append(key)
    wrapper = ".".join(wrappers) or None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source} holds a {type(obj).__name__}, not a state dict")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        keys = ", ".join(list(map(str, obj))[:_MAX_LISTED])
        raise CheckpointError(f"{source} holds no tensors (top-level keys: {keys or 'none'})")
    return tensors, wrapper


def strip_prefix(sd: dict[str, torch.Tensor], prefix: str = "model.") -> tuple[dict[str, torch.Tensor], str | None]:
    """Remove a Lightning-style prefix when every key carries it."""
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}, prefix
    return sd, None


def _partition(spec: ModelSpec, sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    kept: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for k, v in sd.items():
        if k.startswith(spec.drop_prefixes) or k in spec.drop_keys:
            dropped.append(k)
        else:
            kept[k] = v
    return kept, dropped


def match_report(spec: ModelSpec, sd: Mapping[str, torch.Tensor], tiny: bool = False) -> tuple[list, list, list]:
    """(missing, unexpected, shape mismatches) of ``sd`` against ``spec``'s network, after the drops."""
    expected = expected_state_shapes(spec, tiny=tiny)
    kept, _ = _partition(spec, dict(sd))
    missing = [k for k in expected if k not in kept]
    unexpected = [k for k in kept if k not in expected]
    mismatched = [
        (k, tuple(kept[k].shape), expected[k]) for k in expected if k in kept and tuple(kept[k].shape) != expected[k]
    ]
    return missing, unexpected, mismatched


def guess_model(sd: Mapping[str, torch.Tensor]) -> str | None:
    """The first zoo model (POCO models first) whose keys and shapes ``sd`` fits at full size, if any.

    Keys that come from a second file (``ModelSpec.aux_prefixes``: TokenHMR's tokenizer) may be absent.
    """
    from hpsedge.models.registry import registered

    for name, spec in registered().items():
        missing, unexpected, mismatched = match_report(spec, sd)
        missing = [k for k in missing if not (spec.aux_prefixes and k.startswith(spec.aux_prefixes))]
        if not (missing or unexpected or mismatched):
            return name
    return None


def _mismatch_error(
    source: str,
    spec: ModelSpec,
    sd: Mapping[str, torch.Tensor],
    missing: list[str],
    unexpected: list[str],
    mismatched: list[tuple[str, Any, Any]],
    fallback_hint: str,
) -> CheckpointError:
    """One error naming the first offending keys and, when the keys fit another zoo model, which."""
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_fmt(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_fmt(unexpected)}")
    if mismatched:
        problems.append(
            f"{len(mismatched)} shape mismatch(es): "
            + _fmt([f"{k} {tuple(a)} vs expected {tuple(b)}" for k, a, b in mismatched])
        )
    other = guess_model(sd)
    if other == spec.name:  # only possible for the tiny test configuration
        hint = f"this is a full-size {other} checkpoint; build the full model"
    elif other:
        hint = f"this looks like a {other} checkpoint: use --model {other}"
    else:
        hint = fallback_hint
    return CheckpointError(f"{source} does not fit {spec.name}: " + "; ".join(problems), hint=hint)


def _fmt(keys: list[Any]) -> str:
    shown = ", ".join(str(k) for k in keys[:_MAX_LISTED])
    more = len(keys) - _MAX_LISTED
    return shown + (f" (+{more} more)" if more > 0 else "")


def _read_aux(spec: ModelSpec, path: str | Path, unsafe_pickle: bool) -> tuple[dict[str, torch.Tensor], LoadedCheckpoint]:
    """The spec's second weights file: a state dict whose keys are those under ``spec.aux_prefixes[0]``
    (with or without that prefix), returned with the prefix on."""
    p = Path(path)
    if not spec.aux_prefixes:
        raise CheckpointError(f"{spec.name} declares a second weights file but no key prefix for it (aux_prefixes)")
    obj = read_checkpoint(p, unsafe_pickle=unsafe_pickle)
    sd, wrapper = extract_state_dict(obj, source=str(p))
    prefix = spec.aux_prefixes[0]
    out = {k if k.startswith(spec.aux_prefixes) else prefix + k: v for k, v in sd.items()}
    return out, LoadedCheckpoint(path=p, sha256=sha256_file(p), wrapper=wrapper)


def load_into(
    model: nn.Module,
    spec: ModelSpec,
    path: str | Path,
    unsafe_pickle: bool = False,
    tiny: bool = False,
    aux: str | Path | None = None,
) -> LoadedCheckpoint:
    """Load the checkpoint at ``path`` into ``model`` strictly, or raise :class:`CheckpointError`.

    ``aux``: the spec's second weights file (``ModelSpec.aux_option``), whose tensors fill the keys under
    ``ModelSpec.aux_prefixes`` (they replace any the main file has)."""
    p = Path(path)
    obj = read_checkpoint(p, unsafe_pickle=unsafe_pickle)
    sd, wrapper = extract_state_dict(obj, source=str(p))
    sd, prefix = strip_prefix(sd)
    aux_loaded = None
    if aux is not None:
        aux_sd, aux_loaded = _read_aux(spec, aux, unsafe_pickle)
        sd = {**{k: v for k, v in sd.items() if not k.startswith(spec.aux_prefixes)}, **aux_sd}
    kept, dropped = _partition(spec, sd)
    missing, unexpected, mismatched = match_report(spec, sd, tiny=tiny)
    if missing and aux is None and spec.aux_option and all(k.startswith(spec.aux_prefixes) for k in missing):
        raise CheckpointError(f"{p.name} lacks the {', '.join(spec.aux_prefixes)}* weights, which come from a second "
                              f"file for {spec.name}", hint=f"pass it as --{spec.aux_option}")
    if missing or unexpected or mismatched:
        raise _mismatch_error(
            str(p), spec, sd, missing, unexpected, mismatched,
            "is this a checkpoint of an official POCO model (or of one exported by hpsedge)?",
        )
    target = model.state_dict()
    converted = {k: v.to(dtype=target[k].dtype) for k, v in kept.items()}
    model.load_state_dict(converted, strict=True)
    if dropped:
        groups = sorted({".".join(k.split(".")[:2]) for k in dropped})
        log.debug("dropped %d checkpoint keys on purpose (not used at inference): %s", len(dropped), ", ".join(groups))
    log.info("loaded %s into %s (%d tensors%s)", p.name, spec.name, len(kept), f", prefix '{prefix}' removed" if prefix else "")
    return LoadedCheckpoint(path=p, sha256=sha256_file(p), dropped=dropped, stripped_prefix=prefix, wrapper=wrapper,
                            aux=aux_loaded)


def build_model(
    name: str,
    checkpoint: str | Path | None = None,
    unsafe_pickle: bool = False,
    tiny: bool = False,
    tokenizer: str | Path | None = None,
    spec: ModelSpec | None = None,
    seed: int = DEFAULT_INIT_SEED,
    **aux_files: str | Path | None,
) -> tuple[nn.Module, ModelSpec, LoadedCheckpoint | None]:
    """Build zoo model ``name`` in eval mode, with ``checkpoint`` loaded or random weights (warned).

    ``tokenizer``: TokenHMR's ``tokenizer.pth`` (the decoder and codebook), needed with an official
    TokenHMR checkpoint. ``spec``: a variant of the zoo entry (e.g. with extra outputs) to build instead.
    ``seed``: the random initialisation is drawn from ``torch.manual_seed(seed)`` (the global torch RNG is
    restored afterwards), so a model without a checkpoint is the same on every run and machine with the same
    torch version (torch's CPU generator and its init functions are deterministic); with a checkpoint it only
    fixes tensors the checkpoint does not hold.
    ``aux_files``: the spec's second weights file, by the name its spec gives it (``ModelSpec.aux_option``,
    e.g. ``refiner=path``); its tensors fill the keys under ``ModelSpec.aux_prefixes``.
    """
    from hpsedge.models.zoo import get_spec

    spec = spec or get_spec(name)
    given = {k: v for k, v in {**aux_files, "tokenizer": tokenizer}.items() if v is not None}
    for option in given:
        if option != spec.aux_option:
            from hpsedge.models.registry import registered

            owners = [n for n, s in registered().items() if s.aux_option == option]
            what = f"its second weights file is --{spec.aux_option}" if spec.aux_option else "it has one weights file"
            raise CheckpointError(f"--{option} is only for models with a {option} file ({', '.join(owners) or 'none'}), "
                                  f"not {spec.name}", hint=what)
    aux = given.get(spec.aux_option) if spec.aux_option else None
    tokenizer = None
    if aux is not None and spec.checkpoint_reader == "inert":  # TokenHMR's tokenizer.pth, read its own way
        tokenizer, aux = aux, None
    if aux is not None and checkpoint is None:
        raise CheckpointError(f"--{spec.aux_option} alone is not enough: the other weights are in the model checkpoint",
                              hint=f"pass --checkpoint {spec.official_checkpoint or 'FILE'} as well")
    if tokenizer is not None and checkpoint is None:
        raise CheckpointError(
            "a tokenizer alone is not enough: the ViT and token head weights are in the model checkpoint",
            hint=f"pass --checkpoint {spec.official_checkpoint} as well",
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = spec.build(tiny=tiny)
    loaded = None
    if checkpoint is not None and spec.checkpoint_reader == "inert":  # Lightning .ckpt (TokenHMR, HMR 2.0)
        loaded = load_tokenhmr(model, spec, checkpoint, tokenizer, unsafe_pickle=unsafe_pickle, tiny=tiny)
    elif checkpoint is not None:
        loaded = load_into(model, spec, checkpoint, unsafe_pickle=unsafe_pickle, tiny=tiny, aux=aux)
    else:
        log.warning(
            "NO CHECKPOINT: %s has RANDOM weights; its outputs are meaningless: pose, shape, camera and "
            "confidence come from untrained layers, so the body can be contorted, tiny, far away or behind the "
            "camera (overlays then say 'behind camera'). Pass --checkpoint %s for real results.",
            spec.name,
            spec.official_checkpoint or "PATH",
        )
    return model.eval(), spec, loaded


# ---------------------------------------------------------------------------------------------------
# TokenHMR: model checkpoint + tokenizer
# ---------------------------------------------------------------------------------------------------
_TOKENIZER_PREFIX = "tokenizer."


def _is_tokenizer_file(obj: Any) -> bool:
    return isinstance(obj, Mapping) and isinstance(obj.get("net"), Mapping) and "state_dict" not in obj


def _tokenizer_arch(shapes: Mapping[str, tuple[int, ...]]) -> str:
    """One-line description of a tokenizer's decoder from its tensor shapes (``tokenizer.``-prefixed keys)."""
    from hpsedge.models.tokenizer import tokenizer_config_from_shapes

    plain = {k[len(_TOKENIZER_PREFIX):]: v for k, v in shapes.items() if k.startswith(_TOKENIZER_PREFIX)}
    try:
        cfg = tokenizer_config_from_shapes(plain)
    except (KeyError, IndexError, ValueError):
        return "an unrecognised decoder layout"
    return (
        f"{cfg.nb_code} codes × {cfg.code_dim}, decoder width {cfg.width}, {cfg.token_size_div} resize steps, "
        f"{cfg.down_t} residual stage(s) of depth {cfg.depth}"
    )


def _check_token_arch(p: Path, spec: ModelSpec, sd: Mapping[str, torch.Tensor], tiny: bool) -> None:
    """Architecture hyper-parameters read from the tensor shapes, compared with ours (clear message first)."""
    expected = expected_state_shapes(spec, tiny=tiny)
    got = {k: tuple(v.shape) for k, v in sd.items() if k.startswith(_TOKENIZER_PREFIX) and not k.startswith(spec.drop_prefixes)}
    want = {k: v for k, v in expected.items() if k.startswith(_TOKENIZER_PREFIX)}
    if got and got != want and _tokenizer_arch(got) != _tokenizer_arch(want):
        raise CheckpointError(
            f"{p} holds a tokenizer with {_tokenizer_arch(got)}; hpsedge's {spec.name} is built for "
            f"{_tokenizer_arch(want)} (the released TokenHMR tokenizer)",
            hint="use the tokenizer.pth that came with the TokenHMR checkpoint (data.zip)",
        )
    tok_key = "smpl_head.decpose.mixer_head.0.MLP_token.ff.0.weight"
    cls_key = "smpl_head.decpose.class_pred_layer.weight"
    for key, what, idx in ((tok_key, "tokens", 1), (cls_key, "code classes", 0)):
        if key in sd and key in expected and tuple(sd[key].shape)[idx] != expected[key][idx]:
            raise CheckpointError(
                f"{p}: the token head predicts {tuple(sd[key].shape)[idx]} {what}; hpsedge's {spec.name} "
                f"expects {expected[key][idx]}",
                hint="is this a TokenHMR checkpoint of the released architecture?",
            )


def load_tokenhmr(
    model: nn.Module,
    spec: ModelSpec,
    checkpoint: str | Path,
    tokenizer: str | Path | None = None,
    unsafe_pickle: bool = False,
    tiny: bool = False,
) -> LoadedCheckpoint:
    """Load TokenHMR's model checkpoint and tokenizer into ``model`` strictly, or raise :class:`CheckpointError`.

    Used for every spec with ``checkpoint_reader == "inert"`` (Lightning ``.ckpt`` files); drops come from the spec.

    * ``checkpoint``: the official Lightning ``.ckpt`` (``state_dict`` → ``backbone.*``, ``smpl_head.*``; an
      optional ``model.`` prefix is removed) or an hpsedge checkpoint (a full state dict of this network,
      ``tokenizer.*`` included, in which case ``tokenizer`` may be omitted).
    * ``tokenizer``: ``tokenizer.pth``; ``net``'s ``decoder.*`` and ``quantizer.codebook`` become
      ``tokenizer.*`` (keys containing ``body_model`` are skipped, as the official loader does).
    * Dropped on purpose: ``smpl.*`` (SMPL buffers), ``initialized``, ``discriminator.*``, the tokenizer's
      ``encoder.*``; optimiser state and hyper-parameters are outside ``state_dict`` and never read.
    * Both files are read with :func:`read_inert` (no code runs; ``unsafe_pickle`` unpickles fully).
    """
    p = Path(checkpoint)
    obj, stand_ins = read_inert(p, unsafe_pickle=unsafe_pickle)
    if _is_tokenizer_file(obj):
        raise CheckpointError(
            f"{p} is a TokenHMR tokenizer (it has 'net' and 'hparams'), not the model checkpoint",
            hint=f"pass it as --tokenizer and the model as --checkpoint {spec.official_checkpoint}",
        )
    sd, wrapper = extract_state_dict(obj, source=str(p))
    sd, prefix = strip_prefix(sd)
    tok_loaded = None
    if tokenizer is not None:
        tp = Path(tokenizer)
        tobj, t_stand_ins = read_inert(tp, unsafe_pickle=unsafe_pickle)
        if not _is_tokenizer_file(tobj):
            looks_like_model = isinstance(tobj, Mapping) and isinstance(tobj.get("state_dict"), Mapping)
            raise CheckpointError(
                f"{tp} is not a TokenHMR tokenizer file (expected a dict with 'net' and 'hparams'"
                + (", found a model checkpoint's 'state_dict')" if looks_like_model else ")"),
                hint="pass tokenizer.pth (from TokenHMR's data.zip) as --tokenizer",
            )
        net = {str(k): v for k, v in tobj["net"].items() if isinstance(v, torch.Tensor) and "body_model" not in str(k)}
        if not net:
            raise CheckpointError(f"{tp}: 'net' holds no tensors")
        replaced = sorted(k for k in sd if k.startswith(_TOKENIZER_PREFIX))
        if replaced:
            log.info("the tokenizer in %s replaces %d tokenizer.* tensors of %s", tp.name, len(replaced), p.name)
            sd = {k: v for k, v in sd.items() if not k.startswith(_TOKENIZER_PREFIX)}
        tsd = {_TOKENIZER_PREFIX + k: v for k, v in net.items()}
        _check_token_arch(tp, spec, tsd, tiny)
        _t_kept, t_dropped = _partition(spec, tsd)
        tok_loaded = LoadedCheckpoint(path=tp, sha256=sha256_file(tp), dropped=t_dropped, stand_ins=t_stand_ins)
        sd = {**sd, **tsd}
    _check_token_arch(p, spec, sd, tiny)
    kept, dropped = _partition(spec, sd)
    missing, unexpected, mismatched = match_report(spec, sd, tiny=tiny)
    if missing and tokenizer is None and all(k.startswith(_TOKENIZER_PREFIX) for k in missing):
        raise CheckpointError(
            f"{p} has the ViT and token head but not the tokenizer decoder ({len(missing)} tokenizer.* tensors)",
            hint="pass TokenHMR's tokenizer.pth with --tokenizer",
        )
    if missing or unexpected or mismatched:
        raise _mismatch_error(
            f"{p} + {tokenizer}" if tokenizer is not None else str(p), spec, sd, missing, unexpected, mismatched,
            f"is this the official {spec.official_checkpoint or spec.name + ' checkpoint'}"
            + (f" (with its {spec.aux_option} file as --{spec.aux_option})" if spec.aux_option else "") + "?",
        )
    target = model.state_dict()
    model.load_state_dict({k: v.to(dtype=target[k].dtype) for k, v in kept.items()}, strict=True)
    main_dropped = [k for k in dropped if not (tok_loaded and k in tok_loaded.dropped)]
    if dropped:
        groups = sorted({".".join(k.split(".")[:2]) for k in dropped})
        log.debug("dropped %d checkpoint keys on purpose (not used at inference): %s", len(dropped), ", ".join(groups))
    log.info("loaded %s%s into %s (%d tensors)", p.name, f" + {Path(tokenizer).name}" if tokenizer else "", spec.name, len(kept))
    return LoadedCheckpoint(
        path=p,
        sha256=sha256_file(p),
        dropped=main_dropped,
        stripped_prefix=prefix,
        wrapper=wrapper,
        stand_ins=stand_ins,
        tokenizer=tok_loaded,
    )


def _unsafe_global(text: str) -> str:
    """Pull the offending global's name out of torch's weights-only error, when it names one."""
    for marker in ("Unsupported global: GLOBAL ", "GLOBAL "):
        if marker in text:
            name = text.split(marker, 1)[1].split()[0].rstrip(".,")
            return f" (e.g. {name})"
    return ""


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
