"""One way to compare two runs of a graph, output by output (numpy only: usable on the device side).

Shared by the export's verification against PyTorch (:mod:`hpsedge.export.onnx`), the precision accuracy
report (:mod:`hpsedge.calib.report`) and ``benchmarks/gpu_smoke.py`` (TensorRT vs ONNX Runtime), so the
three speak of the same figures:

* ``max_abs``: max |got − ref|;
* ``max_rel_range``: ``max_abs`` / max |ref| (relative to the output's range; what export verification's
  tolerance applies to);
* ``max_rel``: elementwise |got − ref| / max(|ref|, ``floor``) (the floor keeps near-zero references from
  exploding the ratio);
* ``finite``: whether ``got`` is free of NaN/inf.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: elementwise relative errors divide by max(|ref|, REL_FLOOR)
REL_FLOOR = 1e-3


def output_errors(
    ref: Mapping[str, Any], got: Mapping[str, Any], *, rel_floor: float = REL_FLOOR
) -> dict[str, dict[str, Any]]:
    """Per output of ``ref``: the figures above. Raises ValueError on a missing output or a shape mismatch."""
    out: dict[str, dict[str, Any]] = {}
    for name, r in ref.items():
        if name not in got:
            raise ValueError(f"output '{name}' is missing from the compared run")
        r64 = np.asarray(r, dtype=np.float64)
        g64 = np.asarray(got[name], dtype=np.float64)
        if r64.shape != g64.shape:
            raise ValueError(f"output '{name}' has shape {list(g64.shape)}, the reference {list(r64.shape)}")
        finite = bool(np.isfinite(g64).all())
        diff = np.abs(r64 - g64)
        max_abs = float(diff.max(initial=0.0))
        scale = float(np.abs(r64).max(initial=0.0))
        out[name] = {
            "max_abs": max_abs,
            "max_rel_range": max_abs / max(scale, 1e-12) if r64.size else 0.0,
            "max_rel": float((diff / np.maximum(np.abs(r64), rel_floor)).max(initial=0.0)),
            "finite": finite,
        }
    return out
