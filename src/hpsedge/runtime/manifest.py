"""The build-folder manifest: schema, reading and validation.

The runtime owns the schema (it is the reader); ``hpsedge.export`` writes it. A manifest is plain
JSON so that a C++ or Rust consumer can read it too. Version 1 looks like this (abridged)::

    {
      "schema": "hpsedge.manifest", "schema_version": 1,
      "model": {"name": "poco-cliff", "family": "cliff", "has_sigma": true, "variant": "full",
                "sigma_score": "pelvis", "params": 81442253},
      "checkpoint": {"file": "poco_cliff.pt", "sha256": "...", "random_init": false},
      "inputs":  [{"name": "image", "shape": ["N", 3, 224, 224], "dtype": "float32"},
                  {"name": "bbox_info", "shape": ["N", 3], "dtype": "float32"}],
      "outputs": [{"name": "pose", "shape": ["N", 24, 3, 3], "dtype": "float32"}, ...],
      "preprocessing": {"input_size": [224, 224], "mean": [...], "std": [...], "color": "RGB",
                        "bbox_scale": 1.0, "square": true, "bbox_info": true},
      "postprocessing": {"camera": "weak_perspective_crop", "crop_focal_length": 5000.0,
                         "sigma_score": "pelvis"},
      "precision": "fp32", "opset": 17, "max_batch": 16,
      "artifacts": {"onnx": {"file": "model.onnx", "sha256": "...", "bytes": 123, "precision": "fp32"}},
      "versions": {"hpsedge": "0.1.0", "torch": "...", "onnx": "...", "onnxruntime": "..."},
      "verification": {...}, "created": "2026-11-23T10:00:00Z"
    }

``artifacts`` may also hold ``"onnx_fp16"``/``"onnx_int8"`` and ``"engine"`` entries. An INT8 folder also
holds ``"onnx_int8_cpu"``: both INT8 graphs come from the same calibration ranges and say in ``"serves"``
which runners they are made for (``onnx_int8``, ``qdq_flavor`` ``"trt-s8s8"``: ``["tensorrt",
"TensorrtExecutionProvider"]``; ``onnx_int8_cpu``: ``["CPUExecutionProvider"]``); the runtime picks by it
(:func:`hpsedge.runtime.backends.ort.graph_for_provider`). The engine entry
is written by ``hpsedge.export.tensorrt.build_engine`` and read by ``hpsedge.runtime.compat``, which
checks it against the live TensorRT and GPU before TensorRT ever sees the plan::

    "engine": {
      "file": "model.fp16.engine",       # relative to the manifest's folder
      "sha256": "...", "bytes": 123,      # of the plan; checked before deserializing
      "precision": "fp16",                # label of the ONNX artifact it was built from
      "source": "model.fp16.onnx",        # that ONNX file
      "trt_version": "10.3.0.30",         # tensorrt.__version__ at build time
      "compute_capability": "8.7",        # "major.minor" of the build GPU
      "gpu_name": "Orin",                 # name of the build GPU
      "platform": "jetson",               # "jetson" | "desktop"
      "strongly_typed": true,             # precision from the graph, not builder flags
      "network_flags": ["STRONGLY_TYPED"], "builder_flags": ["GPU_FALLBACK"],  # TensorRT enum names
      "version_compatible": false,        # true: runs on the same or a newer TensorRT (needs host code)
      "exclude_lean_runtime": false,      # version-compatible plan without the embedded lean runtime
      "hardware_compat": null,            # null | "ampere+" (any sm_80+ desktop GPU; never Jetson)
      "dla_core": null,                   # null | DLA core index (Jetson only)
      "gpu_fallback": false,              # DLA builds: layers DLA cannot run go to the GPU
      "opt_level": 3, "workspace_bytes": null,
      "profile": {"min": 1, "opt": 4, "max": 16},   # person batch of the optimisation profile
      "profile_shapes": {"image": {"min": [1, 3, 256, 192], "opt": [...], "max": [...]}, ...},
      "timing_cache": "timing.cache",     # file name of the timing cache used, or null
      "on_device": true,                  # built on the machine that runs it
      "build_seconds": 95.2, "built": "2026-11-23T10:00:00Z"
    }

The compatibility check needs ``trt_version``, ``compute_capability`` and ``platform``; an entry
without them is refused with a hint to rebuild on the device.

Optional blocks written by ``export build`` and read by the runtime:

* ``"calibration"``: statistics of the FP32 model on the calibration set, used as default thresholds by
  :mod:`hpsedge.runtime.temporal`: ``{"samples": 128, "sigma_percentiles": {"50": [24 floats], "90": [...],
  "95": [...], "99": [...]}}`` (raw per-joint σ, SMPL joint order) and, for models without σ,
  ``"confidence_percentiles": {"5": float, ...}``.
* ``"build"``, ``"engine_status"``, ``"trt_check"``: what the build did, whether an engine was built (and
  why not), and the TensorRT static check per TensorRT major version.
* ``"precision_config"``/``"accuracy"``: keep-lists, exclusions, calibration method and the accuracy drop
  of the precision graph against FP32 (details in ``report.json``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpsedge.runtime.errors import ManifestError

SCHEMA = "hpsedge.manifest"
SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"

_REQUIRED = ("schema", "schema_version", "model", "inputs", "outputs", "preprocessing", "artifacts")
_FAMILIES = ("cliff", "pare", "hmr", "tokenhmr")


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output. ``shape`` uses the string ``"N"`` for the dynamic person batch."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        try:
            return cls(name=str(d["name"]), shape=tuple(d["shape"]), dtype=str(d.get("dtype", "float32")))
        except (KeyError, TypeError) as exc:
            raise ManifestError(f"manifest tensor entry {d!r} lacks a name or shape") from exc


@dataclass
class Manifest:
    """A parsed, validated manifest. ``raw`` keeps every field, including ones this version ignores."""

    path: Path | None
    raw: dict[str, Any] = field(repr=False)

    # ---- typed views --------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return str(self.raw["model"]["name"])

    @property
    def family(self) -> str:
        return str(self.raw["model"]["family"])

    @property
    def has_sigma(self) -> bool:
        return bool(self.raw["model"].get("has_sigma", False))

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec.from_dict(d) for d in self.raw["inputs"]]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec.from_dict(d) for d in self.raw["outputs"]]

    @property
    def preprocessing(self) -> dict[str, Any]:
        return dict(self.raw["preprocessing"])

    @property
    def postprocessing(self) -> dict[str, Any]:
        return dict(self.raw.get("postprocessing", {}))

    @property
    def artifacts(self) -> dict[str, dict[str, Any]]:
        return dict(self.raw["artifacts"])

    @property
    def max_batch(self) -> int | None:
        mb = self.raw.get("max_batch")
        return int(mb) if mb is not None else None

    @property
    def folder(self) -> Path | None:
        return self.path.parent if self.path is not None else None

    def artifact_path(self, key: str) -> Path:
        """Absolute path of artifact ``key`` (e.g. ``"onnx"``), relative to the manifest's folder."""
        if key not in self.artifacts:
            raise ManifestError(
                f"manifest has no '{key}' artifact (it lists: {', '.join(sorted(self.artifacts)) or 'none'})"
            )
        base = self.folder or Path(".")
        return base / self.artifacts[key]["file"]

    def to_dict(self) -> dict[str, Any]:
        return self.raw


def validate_manifest(raw: Any, source: str = "manifest") -> None:
    """Raise :class:`ManifestError` naming the first problem, or return None."""
    if not isinstance(raw, dict):
        raise ManifestError(f"{source} is not a JSON object")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise ManifestError(
            f"{source} lacks required field(s): {', '.join(missing)}",
            hint="re-export the folder with `hpsedge export onnx` or `hpsedge export build`",
        )
    if raw["schema"] != SCHEMA:
        raise ManifestError(f"{source} is not an hpsedge manifest (schema {raw['schema']!r})")
    version = raw["schema_version"]
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ManifestError(
            f"{source} has schema version {version!r}; this hpsedge reads up to {SCHEMA_VERSION}",
            hint="upgrade hpsedge on this machine, or re-export with the installed version",
        )
    model = raw["model"]
    if not isinstance(model, dict) or "name" not in model or "family" not in model:
        raise ManifestError(f"{source}: 'model' needs 'name' and 'family'")
    if model["family"] not in _FAMILIES:
        raise ManifestError(f"{source}: unknown model family {model['family']!r} (known: {', '.join(_FAMILIES)})")
    for key in ("inputs", "outputs"):
        if not isinstance(raw[key], list) or not raw[key]:
            raise ManifestError(f"{source}: '{key}' must be a non-empty list")
        for d in raw[key]:
            TensorSpec.from_dict(d)
    pre = raw["preprocessing"]
    if not isinstance(pre, dict) or "input_size" not in pre:
        raise ManifestError(f"{source}: 'preprocessing' needs 'input_size' [H, W]")
    if not isinstance(raw["artifacts"], dict):
        raise ManifestError(f"{source}: 'artifacts' must be an object")
    for key, art in raw["artifacts"].items():
        if not isinstance(art, dict) or "file" not in art:
            raise ManifestError(f"{source}: artifact '{key}' has no 'file'")


def load_manifest(path: str | Path) -> Manifest:
    """Read ``manifest.json`` from a folder or a file path and validate it."""
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST_NAME
    if not p.exists():
        raise ManifestError(
            f"no manifest at {p}",
            hint="point at a folder written by `hpsedge export onnx|build`, or pass the manifest path",
        )
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{p} is not valid JSON ({exc.__class__.__name__}: {exc})",
                            hint="re-export the folder; the manifest looks corrupt") from exc
    validate_manifest(raw, source=str(p))
    return Manifest(path=p.resolve(), raw=raw)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (engines and ONNX files can be gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()
