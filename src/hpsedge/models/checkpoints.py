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
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hpsedge.models.zoo import ZOO, ModelSpec, expected_state_shapes
from hpsedge.runtime.errors import CheckpointError
from hpsedge.runtime.manifest import sha256_file

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


def read_checkpoint(path: str | Path, unsafe_pickle: bool = False) -> Any:
    """Read a checkpoint file into Python objects, refusing anything beyond tensors unless asked."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.is_dir():
        raise CheckpointError(f"{p} is a folder; pass the checkpoint file itself (e.g. {p}/best_model.pt)")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p} is empty (0 bytes)")
    try:
        return torch.load(p, map_location="cpu", weights_only=not unsafe_pickle)
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
        if "zip archive" in text or "central directory" in text or isinstance(exc, (EOFError, zipfile.BadZipFile)):
            raise CheckpointError(
                f"{p} is truncated or corrupt ({_short(text)})", hint="download or copy the checkpoint again"
            ) from None
        raise CheckpointError(f"{p} could not be read as a PyTorch checkpoint ({_short(text)})") from None
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
    """The first zoo model (POCO models first) whose keys and shapes ``sd`` fits at full size, if any."""
    for name, spec in ZOO.items():
        missing, unexpected, mismatched = match_report(spec, sd)
        if not (missing or unexpected or mismatched):
            return name
    return None


def _fmt(keys: list[Any]) -> str:
    shown = ", ".join(str(k) for k in keys[:_MAX_LISTED])
    more = len(keys) - _MAX_LISTED
    return shown + (f" (+{more} more)" if more > 0 else "")


def load_into(
    model: nn.Module,
    spec: ModelSpec,
    path: str | Path,
    unsafe_pickle: bool = False,
    tiny: bool = False,
) -> LoadedCheckpoint:
    """Load the checkpoint at ``path`` into ``model`` strictly, or raise :class:`CheckpointError`."""
    p = Path(path)
    obj = read_checkpoint(p, unsafe_pickle=unsafe_pickle)
    sd, wrapper = extract_state_dict(obj, source=str(p))
    sd, prefix = strip_prefix(sd)
    kept, dropped = _partition(spec, sd)
    missing, unexpected, mismatched = match_report(spec, sd, tiny=tiny)
    if missing or unexpected or mismatched:
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
            hint = "is this a checkpoint of an official POCO model (or of one exported by hpsedge)?"
        raise CheckpointError(f"{p} does not fit {spec.name}: " + "; ".join(problems), hint=hint)
    target = model.state_dict()
    converted = {k: v.to(dtype=target[k].dtype) for k, v in kept.items()}
    model.load_state_dict(converted, strict=True)
    if dropped:
        groups = sorted({".".join(k.split(".")[:2]) for k in dropped})
        log.debug("dropped %d checkpoint keys on purpose (not used at inference): %s", len(dropped), ", ".join(groups))
    log.info("loaded %s into %s (%d tensors%s)", p.name, spec.name, len(kept), f", prefix '{prefix}' removed" if prefix else "")
    return LoadedCheckpoint(path=p, sha256=sha256_file(p), dropped=dropped, stripped_prefix=prefix, wrapper=wrapper)


def build_model(
    name: str,
    checkpoint: str | Path | None = None,
    unsafe_pickle: bool = False,
    tiny: bool = False,
) -> tuple[nn.Module, ModelSpec, LoadedCheckpoint | None]:
    """Build zoo model ``name`` in eval mode, with ``checkpoint`` loaded or random weights (warned)."""
    from hpsedge.models.zoo import get_spec

    spec = get_spec(name)
    model = spec.build(tiny=tiny)
    loaded = None
    if checkpoint is not None:
        loaded = load_into(model, spec, checkpoint, unsafe_pickle=unsafe_pickle, tiny=tiny)
    else:
        log.warning(
            "NO CHECKPOINT: %s has RANDOM weights; its outputs are meaningless (upright T-pose, camera "
            "(0.9, 0, 0)). Pass --checkpoint %s for real results.",
            spec.name,
            spec.official_checkpoint or "PATH",
        )
    return model.eval(), spec, loaded


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
