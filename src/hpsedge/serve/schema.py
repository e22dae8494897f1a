"""The ``hpsedge`` model's request and response tensors, and the checks every request goes through.

Request: ``image`` uint8 ``[H, W, 3]`` (RGB) and ``boxes`` float32 ``[K, 4]`` (x1, y1, x2, y2 pixels).
Response: one row per box, in the order given (``K ≥ 1``: empty requests are refused, see
:func:`check_request`). Which outputs exist depends on
the model: σ outputs for POCO models, ``confidence`` for every model with σ or TokenHMR's token confidence,
and ``joints2d``/``joints3d``/``vertices`` only when the server has an SMPL file. A build folder with a fitted
error bound (``error_bound.json``, :mod:`hpsedge.runtime.error_bound`) adds ``error_bound_mm_<group>`` ``[K]`` per
joint group (``body`` = the whole person; mm: every joint of the group within it, root-relative) and
``error_bound_coverage`` ``[K]`` (the probability they hold at); models without uncertainty never have them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from hpsedge.errors import InputError, ManifestError

#: name of the pre/post-processing model (in the repository and in `hpsedge serve`)
MODEL_NAME = "hpsedge"
#: default limits of one request
MAX_PERSONS = 64
MAX_SIDE = 8192


def input_specs() -> list[dict[str, Any]]:
    return [
        {"name": "image", "shape": [-1, -1, 3], "dtype": "uint8"},
        {"name": "boxes", "shape": [-1, 4], "dtype": "float32"},
    ]


def _dims(outputs: Sequence[Any], name: str, default: list[int]) -> list[int]:
    for o in outputs:
        if o.name == name:
            return [int(d) for d in o.shape[1:]]
    return default


def output_specs(manifest: Any, with_smpl: bool) -> list[dict[str, Any]]:
    """Response tensors for a manifest (``[-1, ...]``: one row per person). Names are PersonResult fields."""
    outs = manifest.outputs
    names = {o.name for o in outs}
    n_joints = _dims(outs, "pose", [24, 3, 3])[0]
    specs: list[dict[str, Any]] = [
        {"name": "pose_rotmat", "shape": [-1, n_joints, 3, 3]},
        {"name": "pose_axis_angle", "shape": [-1, n_joints, 3]},
        {"name": "betas", "shape": [-1, *_dims(outs, "betas", [10])]},
        {"name": "cam_crop", "shape": [-1, 3]},
        {"name": "transl", "shape": [-1, 3]},
        {"name": "focal", "shape": [-1]},
        {"name": "center", "shape": [-1, 2]},
        {"name": "size", "shape": [-1]},
    ]
    has_sigma = bool(manifest.has_sigma) and "sigma" in names
    # the manifest's confidence rule says whether results carry a confidence (never the family or a guess)
    if hasattr(manifest, "confidence_rule"):
        has_confidence = manifest.confidence_rule is not None
    else:
        has_confidence = has_sigma or "token_confidence" in names
    if has_confidence:
        specs.append({"name": "confidence", "shape": [-1]})
    if has_sigma:
        n_sigma = _dims(outs, "sigma", [24])[0]
        specs += [
            {"name": "sigma", "shape": [-1, n_sigma]},
            {"name": "sigma_accumulated", "shape": [-1, n_sigma]},
            {"name": "score", "shape": [-1]},
            {"name": "joint_confidence", "shape": [-1, n_sigma]},
        ]
    specs += _error_bound_specs(manifest)
    if with_smpl:
        specs += [
            {"name": "joints2d", "shape": [-1, 24, 2]},
            {"name": "joints3d", "shape": [-1, 24, 3]},
            {"name": "vertices", "shape": [-1, 6890, 3]},
        ]
    for s in specs:
        s["dtype"] = "float32"
    return specs


def _error_bound_specs(manifest: Any) -> list[dict[str, Any]]:
    """One ``[K]`` tensor per joint group of the folder's verified error bound, and its coverage."""
    from hpsedge.runtime.error_bound import ARTIFACT_KEY, load_error_bound

    if ARTIFACT_KEY not in getattr(manifest, "artifacts", {}):
        return []
    eb = load_error_bound(manifest)
    if eb is None:
        return []
    specs: list[dict[str, Any]] = [
        {"name": f"error_bound_mm_{g}", "shape": [-1], "field": "error_bound_mm", "key": g} for g in eb.group_names
    ]
    return [*specs, {"name": "error_bound_coverage", "shape": [-1]}]


def check_request(image: Any, boxes: Any, max_persons: int = MAX_PERSONS, max_side: int = MAX_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """Validate one request's tensors (before any work); raise :class:`InputError` with a one-line reason.

    The box values themselves (NaN, empty, outside the image) are checked by the runtime's preprocessing.
    """
    image = np.asarray(image)
    boxes = np.asarray(boxes)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"image must be uint8 [H, W, 3], got {image.dtype} {list(image.shape)}")
    if min(image.shape[:2]) < 1 or max(image.shape[:2]) > max_side:
        raise InputError(f"image sides must lie in 1..{max_side} pixels, got {list(image.shape[:2])}")
    if boxes.dtype != np.float32 or boxes.ndim != 2 or boxes.shape[1] != 4:
        raise InputError(f"boxes must be float32 [K, 4] (x1, y1, x2, y2), got {boxes.dtype} {list(boxes.shape)}")
    if boxes.shape[0] == 0:
        # PyTriton cannot carry empty tensors, so neither server takes them (the client answers [] itself)
        raise InputError("boxes is empty; send at least one box (a frame without people needs no request)")
    if boxes.shape[0] > max_persons:
        raise InputError(f"{boxes.shape[0]} boxes in one request; this server takes at most {max_persons}")
    if not np.isfinite(boxes).all():
        raise InputError("boxes hold NaN or inf values")
    return image, boxes


def results_to_arrays(results: Sequence[Any], specs: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """PersonResults → the response tensors (float32, one row per person)."""
    out: dict[str, np.ndarray] = {}
    for s in specs:
        rows = [getattr(r, s.get("field", s["name"])) for r in results]
        if "key" in s:  # one entry of a dict field (error_bound_mm per group)
            rows = [None if v is None else v.get(s["key"]) for v in rows]
        if any(v is None for v in rows):
            raise InputError(f"the model returned no '{s['name']}'")  # a server set up inconsistently
        tail = [int(d) for d in s["shape"][1:]]
        arr = np.asarray(rows, dtype=np.float32).reshape([len(rows), *tail]) if rows else np.zeros([0, *tail], np.float32)
        out[s["name"]] = np.ascontiguousarray(arr)
    return out


#: a Triton model name is a folder name in the repository
TRITON_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def model_prefix(manifest: Any, name: str | None) -> str:
    """Triton model-name prefix: ``name`` or the manifest's model name; a plain identifier (it is a folder)."""
    prefix = name if name is not None else manifest.model_name
    if not TRITON_NAME_RE.match(prefix) or prefix == MODEL_NAME:
        raise ManifestError(
            f"model name {prefix!r} cannot name a Triton model folder",
            hint="pass --name with letters, digits, '_', '-', '.' (not 'hpsedge')",
        )
    return prefix
