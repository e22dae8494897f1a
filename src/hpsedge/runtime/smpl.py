"""SMPL body model in numpy: safe file loading, conversion to ``.npz`` and a fast forward pass.

This module is the public face of three others (import from here; the names stay where they always were):

* :mod:`hpsedge.runtime.smpl_io` — files: :func:`load_smpl_data` (official/clean ``.pkl`` through the
  allow-list unpickler, ``.npz`` without pickles; SMPL-X/SMPL+H/MANO/FLAME files are named, not loaded),
  :func:`convert_to_npz` and :func:`describe` (``hpsedge smpl convert|check``), and the SMPL constants;
* :mod:`hpsedge.runtime.smpl_core` — the body model :class:`SMPL` (everything precomputed at load, float32)
  and :class:`SMPLOutput`;
* :mod:`hpsedge.runtime.blas` — thread control: OpenBLAS held at one thread during a decode (so its workers
  never spin against the next ONNX Runtime call) and the decoder's own blocking helper threads.

Only numpy is imported.
"""

from __future__ import annotations

from hpsedge.runtime.blas import find_openblas as _find_openblas  # noqa: F401  (old private names)
from hpsedge.runtime.blas import single_threaded_blas as _blas_single_thread  # noqa: F401  (hpsedge.curate)
from hpsedge.runtime.smpl_core import SMPL, SMPLOutput
from hpsedge.runtime.smpl_io import (
    JOINT_MAP_49,
    NUM_JOINTS,
    NUM_POSE_FEATURES,
    NUM_VERTS,
    SMPL_PARENTS,
    VERTEX_JOINT_IDS,
    convert_to_npz,
    describe,
    load_smpl_data,
)

# pickles and reprs keep naming the public module these classes have always lived in
SMPL.__module__ = SMPLOutput.__module__ = __name__

__all__ = [
    "JOINT_MAP_49",
    "NUM_JOINTS",
    "NUM_POSE_FEATURES",
    "NUM_VERTS",
    "SMPL",
    "SMPL_PARENTS",
    "VERTEX_JOINT_IDS",
    "SMPLOutput",
    "convert_to_npz",
    "describe",
    "load_smpl_data",
]
