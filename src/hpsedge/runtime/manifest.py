"""The build-folder manifest: schema, reading and validation.

The runtime owns the schema (it is the reader); ``hpsedge.export`` writes it. A manifest is plain
JSON so that a C++ or Rust consumer can read it too. Version 2 looks like this (abridged)::

    {
      "schema": "hpsedge.manifest", "schema_version": 2,
      "model": {"name": "poco-cliff", "family": "cliff", "has_sigma": true, "variant": "full",
                "sigma_score": "pelvis", "params": 81442253},
      "checkpoint": {"file": "poco_cliff.pt", "sha256": "...", "random_init": false},
      "inputs":  [{"name": "image", "shape": ["N", 3, 224, 224], "dtype": "float32"},
                  {"name": "bbox_info", "shape": ["N", 3], "dtype": "float32"}],
      "outputs": [{"name": "pose", "shape": ["N", 24, 3, 3], "dtype": "float32"}, ...],
      "preprocessing": {"input_size": [224, 224], "mean": [...], "std": [...], "color": "RGB",
                        "bbox_scale": 1.0, "square": true, "bbox_info": true},
      "postprocessing": {"camera": "weak_perspective_crop", "crop_focal_length": 5000.0,
                         "projection": "full_image", "full_focal": "diagonal",
                         "sigma_score": "pelvis", "confidence": "sigma",
                         "joint_sets": ["smpl24", "smpl45", "spin49"]},
      "precision": "fp32", "opset": 17, "max_batch": 16,
      "artifacts": {"onnx": {"file": "model.onnx", "sha256": "...", "bytes": 123, "precision": "fp32"}},
      "versions": {"hpsedge": "0.1.0", "torch": "...", "onnx": "...", "onnxruntime": "..."},
      "verification": {...}, "created": "2026-11-23T10:00:00Z"
    }

The runtime takes everything model-specific from ``preprocessing`` (crop, normalisation) and
``postprocessing`` (the rules below), never from ``model.family``, which is a label: a folder of a model
family this runtime has never heard of runs as long as its rules are ones it implements.

* ``projection``: ``"full_image"`` (2D joints = pinhole projection of ``joints + transl`` with the full-image
  camera) or ``"crop"`` (the crop camera, ``crop_focal_length``, mapped from the crop to the image);
* ``full_focal``: ``"diagonal"`` (√(W²+H²), CLIFF) or ``"max_side"`` (``crop_focal_length / crop_size ·
  max(W, H)``, HMR 2.0's ``cam_crop_to_full``);
* ``confidence``: ``"sigma"`` (1 − the σ score), the name of a graph output that holds a per-person
  confidence in [0, 1] (TokenHMR: ``"token_confidence"``), or null: the model has no uncertainty output and
  results carry no confidence (HMR 2.0, the plain regressors);
* ``sigma_score``: ``"pelvis"`` | ``"mean"`` (:func:`hpsedge.runtime.confidence.official_score`) or null;
* ``joint_sets``: which of ``smpl24``, ``smpl45``, ``spin49`` results carry (with an SMPL file).

Version 1 folders (no ``projection``/``confidence``/``joint_sets``) still load: projection is
``full_image`` when the model takes ``bbox_info``, else ``crop``; confidence is ``"sigma"`` when the model has σ.

``artifacts`` may also hold ``"onnx_fp16"``/``"onnx_int8"`` and ``"engine"`` entries. The engine entry
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
#: version 2: the runtime reads the model's rules from ``postprocessing`` (``projection``, ``full_focal``,
#: ``confidence``, ``sigma_score``, ``joint_sets``) and no longer knows model families, so ``model.family`` is
#: a free label. Version 1 folders still load: missing rules are inferred from the rest of the manifest.
SCHEMA_VERSION = 2
#: the oldest schema version this runtime reads
MIN_SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"

_REQUIRED = ("schema", "schema_version", "model", "inputs", "outputs", "preprocessing", "artifacts")
#: ``postprocessing`` rules and the values this runtime implements
PROJECTIONS = ("full_image", "crop")
FULL_FOCALS = ("diagonal", "max_side")
SIGMA_SCORES = ("pelvis", "mean")
#: joint sets an SMPL file gives: SMPL's 24 (FK), smplx's 45, SPIN/POCO's 49 (needs J_regressor_extra)
JOINT_SETS = ("smpl24", "smpl45", "spin49")


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

    # ---- the model's rules (postprocessing); schema-1 folders get them inferred, never from the family --
    @property
    def sigma_score(self) -> str | None:
        """σ → per-person score rule (``"pelvis"`` | ``"mean"``), or None for a model without σ."""
        rule = self.postprocessing.get("sigma_score", self.raw["model"].get("sigma_score"))
        return None if rule is None else str(rule)

    @property
    def confidence_rule(self) -> str | None:
        """Where the per-person confidence comes from: ``"sigma"`` (1 − the σ score), the name of a graph
        output holding it (``"token_confidence"``), or None: the model has no uncertainty output and the
        runtime reports no confidence. Schema 1 without the field: ``"sigma"`` when the model has σ."""
        post = self.postprocessing
        sigma_ok = self.has_sigma and self.sigma_score is not None and any(o.name == "sigma" for o in self.outputs)
        if "confidence" in post:
            rule = post["confidence"]
            if rule is None or (rule == "sigma" and not sigma_ok):  # no σ output or rule: no confidence
                return None
            return str(rule)
        return "sigma" if sigma_ok else None

    @property
    def projection(self) -> str:
        """2D joints: ``"full_image"`` (pinhole camera of the whole image with ``transl``) or ``"crop"`` (the
        crop camera, mapped to the image). Schema 1 without the field: full image for models fed
        ``bbox_info`` (CLIFF), else crop."""
        proj = self.postprocessing.get("projection")
        if proj is None:
            return "full_image" if self.preprocessing.get("bbox_info") else "crop"
        return str(proj)

    @property
    def full_focal(self) -> str:
        """Full-image focal length: ``"diagonal"`` (√(W²+H²), CLIFF) or ``"max_side"`` (5000/256·max(W, H))."""
        return str(self.postprocessing.get("full_focal") or "diagonal")

    @property
    def joint_sets(self) -> tuple[str, ...]:
        """The joint sets the model's results carry with an SMPL file (default: all)."""
        sets = self.postprocessing.get("joint_sets")
        return JOINT_SETS if sets is None else tuple(str(s) for s in sets)

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
    if not isinstance(version, int) or isinstance(version, bool) or not MIN_SCHEMA_VERSION <= version <= SCHEMA_VERSION:
        raise ManifestError(
            f"{source} has schema version {version!r}; this hpsedge reads {MIN_SCHEMA_VERSION} to {SCHEMA_VERSION}",
            hint="upgrade hpsedge on this machine, or re-export with the installed version",
        )
    model = raw["model"]
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not isinstance(model.get("family"), str):
        raise ManifestError(f"{source}: 'model' needs 'name' and 'family' (strings)")
    for key in ("inputs", "outputs"):
        if not isinstance(raw[key], list) or not raw[key]:
            raise ManifestError(f"{source}: '{key}' must be a non-empty list")
        for d in raw[key]:
            TensorSpec.from_dict(d)
    pre = raw["preprocessing"]
    if not isinstance(pre, dict) or "input_size" not in pre:
        raise ManifestError(f"{source}: 'preprocessing' needs 'input_size' [H, W]")
    _validate_rules(raw, source)
    if not isinstance(raw["artifacts"], dict):
        raise ManifestError(f"{source}: 'artifacts' must be an object")
    for key, art in raw["artifacts"].items():
        if not isinstance(art, dict) or "file" not in art:
            raise ManifestError(f"{source}: artifact '{key}' has no 'file'")


def _validate_rules(raw: dict[str, Any], source: str) -> None:
    """The ``postprocessing`` rules must be ones this runtime implements (it knows rules, not families)."""
    post = raw.get("postprocessing", {})
    if not isinstance(post, dict):
        raise ManifestError(f"{source}: 'postprocessing' must be an object")
    outputs = {d.get("name") for d in raw["outputs"] if isinstance(d, dict)}
    checks = (("projection", PROJECTIONS), ("full_focal", FULL_FOCALS), ("sigma_score", SIGMA_SCORES))
    for key, allowed in checks:
        value = post.get(key)
        if value is not None and value not in allowed:
            raise ManifestError(
                f"{source}: postprocessing.{key} {value!r} is not one this hpsedge implements ({', '.join(allowed)})",
                hint="upgrade hpsedge on this machine",
            )
    rule = post.get("confidence")
    if rule is not None and rule != "sigma" and rule not in outputs:
        raise ManifestError(
            f"{source}: postprocessing.confidence {rule!r} is neither 'sigma' nor one of the graph outputs "
            f"({', '.join(sorted(str(o) for o in outputs))})"
        )
    sets = post.get("joint_sets")
    if sets is not None and (not isinstance(sets, list) or any(s not in JOINT_SETS for s in sets)):
        raise ManifestError(f"{source}: postprocessing.joint_sets must list some of {', '.join(JOINT_SETS)}")


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
