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

Graph inputs besides ``image`` are made by rules too: ``preprocessing.bbox_info: true`` (CLIFF's
``bbox_info``), and ``preprocessing.extra_inputs`` mapping any other input's name to a rule of
:data:`INPUT_RULE_WIDTHS` (``"cliff_bbox_info"`` [N, 3], ``"image_hw"`` [N, 2]: the frame's height and width).

Version 1 folders (no ``projection``/``confidence``/``joint_sets``) still load: projection is
``full_image`` when the model takes ``bbox_info``, else ``crop``; confidence is ``"sigma"`` when the model has σ.

``artifacts`` may also hold ``"onnx_fp16"``/``"onnx_int8"`` and ``"engine"`` entries. ``"error_bound"`` names
``error_bound.json``, error bounds in mm fitted by ``hpsedge calib error-bound`` (read, verified, by
:mod:`hpsedge.runtime.error_bound`). An INT8 folder also
holds ``"onnx_int8_cpu"``: both INT8 graphs come from the same calibration ranges and say in ``"serves"``
which runners they are made for (``onnx_int8``, ``qdq_flavor`` ``"trt-s8s8"``: ``["tensorrt",
"TensorrtExecutionProvider"]``; ``onnx_int8_cpu``: ``["CPUExecutionProvider"]``); the runtime picks by it
(:meth:`hpsedge.runtime.folder.BuildFolder.select`). The engine entry
is written by ``hpsedge.runtime.trt.builder.build_engine`` and read by ``hpsedge.runtime.trt.compat``, which
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

import json
import math
import os
import re
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from hpsedge.errors import ManifestError
from hpsedge.runtime.files import atomic_write, sha256_file
from hpsedge.runtime.precisions import MAX_BATCH_LIMIT, Precision

SCHEMA = "hpsedge.manifest"
#: version 2: the runtime reads the model's rules from ``postprocessing`` (``projection``, ``full_focal``,
#: ``confidence``, ``sigma_score``, ``joint_sets``) and no longer knows model families, so ``model.family`` is
#: a free label. Version 1 folders still load: missing rules are inferred from the rest of the manifest.
SCHEMA_VERSION = 2
#: the oldest schema version this runtime reads
MIN_SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
MANIFEST_MAX_BYTES = 16 << 20

_REQUIRED = ("schema", "schema_version", "model", "inputs", "outputs", "preprocessing", "artifacts")
#: ``postprocessing`` rules and the values this runtime implements
PROJECTIONS = ("full_image", "crop")
FULL_FOCALS = ("diagonal", "max_side")
SIGMA_SCORES = ("pelvis", "mean")
#: joint sets an SMPL file gives: SMPL's 24 (FK), smplx's 45, SPIN/POCO's 49 (needs J_regressor_extra)
JOINT_SETS = ("smpl24", "smpl45", "spin49")
#: ``preprocessing.extra_inputs`` rules this runtime implements (:data:`hpsedge.runtime.preprocess.INPUT_RULES`)
#: and the width of the ``[N, width]`` input each makes
INPUT_RULE_WIDTHS = {"cliff_bbox_info": 3, "image_hw": 2}


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
    #: artifact key -> [(path, stamp)] of the files :meth:`verified_artifact` checked (see :meth:`check_unchanged`)
    _verified: dict[str, list[tuple[Path, tuple[int, ...]]]] = field(default_factory=dict, repr=False, compare=False)

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
        return safe_artifact_path(base, self.artifacts[key]["file"], what=f"artifact '{key}'")

    def verified_artifact(self, key: str) -> Path:
        """:meth:`artifact_path`, after checking the file (and its external-data file) against the manifest's
        ``bytes`` and ``sha256`` (:func:`verify_file`; cached per file, so warm starts do not rehash)."""
        path = self.artifact_path(key)
        entry = self.artifacts[key]
        checked = [(path, verify_file(path, entry.get("sha256"), entry.get("bytes"), what=f"artifact '{key}'"))]
        if entry.get("data_file"):
            data = safe_artifact_path(path.parent, entry["data_file"], what=f"artifact '{key}' data file")
            what = f"artifact '{key}' data file"
            checked.append((data, verify_file(data, entry.get("data_sha256"), entry.get("data_bytes"), what=what)))
        self._verified[key] = checked
        return path

    def check_unchanged(self, key: str) -> None:
        """After a loader opened what :meth:`verified_artifact` checked: refuse if any of those files is no
        longer the one verified (another inode, size, mtime or ctime).

        Closes the gap between verifying a path and a library (ONNX Runtime) opening it again: a file swapped
        in between, even swapped back after loading (a rename changes the ctime), is caught here.
        """
        for path, stamp in self._verified.get(key, ()):
            try:
                now = _stamp(os.stat(path))
            except OSError:
                now = None
            if now != stamp:
                raise ManifestError(
                    f"{path.name} changed while it was being loaded (after its sha256 was checked); refusing it",
                    hint="something is writing to the build folder; load it again once it is left alone",
                )

    def to_dict(self) -> dict[str, Any]:
        return self.raw


_DTYPES = ("float32", "float16", "int64", "int32", "int8", "uint8", "bool")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _check_tensor(d: Any, where: str) -> None:
    if not isinstance(d, dict):
        raise ManifestError(f"{where} must be an object with 'name' and 'shape', got {type(d).__name__}")
    name, shape = d.get("name"), d.get("shape")
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{where}: 'name' must be a non-empty string, got {name!r}"[:300])
    if not isinstance(shape, list) or not shape or not all(
        (_is_int(x) and 0 < x < 1 << 31) or x == "N" for x in shape
    ):
        raise ManifestError(f"{where} '{name}': 'shape' must be a list of positive integers and \"N\", got {shape!r}"[:300])
    if "dtype" in d and d["dtype"] not in _DTYPES:
        raise ManifestError(f"{where} '{name}': unknown dtype {d['dtype']!r} (known: {', '.join(_DTYPES)})"[:300])


def _check_artifact(key: str, art: Any, source: str) -> None:
    where = f"{source}: artifact '{key}'"
    if not isinstance(art, dict) or "file" not in art:
        raise ManifestError(f"{where} has no 'file'")
    check_artifact_name(art["file"], where)
    if art.get("data_file") is not None:
        check_artifact_name(art["data_file"], f"{where} data_file")
    for field_ in ("sha256", "data_sha256"):
        if art.get(field_) is not None and not (isinstance(art[field_], str) and _SHA256.fullmatch(art[field_])):
            raise ManifestError(f"{where}: '{field_}' must be 64 lowercase hex digits, got {art[field_]!r}"[:300])
    for field_ in ("bytes", "data_bytes"):
        if art.get(field_) is not None and not (_is_int(art[field_]) and art[field_] >= 0):
            raise ManifestError(f"{where}: '{field_}' must be a non-negative integer, got {art[field_]!r}"[:300])
    serves = art.get("serves")  # absent or null: made for no runner in particular
    if serves is not None and not (
        isinstance(serves, list) and len(serves) <= 16 and all(isinstance(x, str) and 0 < len(x) <= 64 for x in serves)
    ):
        raise ManifestError(f"{where}: 'serves' must be a list of runner names, got {serves!r}"[:300])


def validate_manifest(raw: Any, source: str = "manifest") -> None:
    """Raise :class:`ManifestError` naming the first problem, or return None.

    A build folder is untrusted input: every field the runtime reads is type-checked here (a string where a
    number belongs is a one-line error, not a traceback later), the schema version must be one
    this hpsedge reads (:data:`MIN_SCHEMA_VERSION` to :data:`SCHEMA_VERSION`; older and newer are refused), and artifact names must be plain relative names.
    """
    if not isinstance(raw, dict):
        raise ManifestError(f"{source} is not a JSON object")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise ManifestError(
            f"{source} lacks required field(s): {', '.join(missing)}",
            hint="re-export the folder with `hpsedge export onnx` or `hpsedge export build`",
        )
    if raw["schema"] != SCHEMA:
        raise ManifestError(f"{source} is not an hpsedge manifest (schema {raw['schema']!r})"[:300])
    version = raw["schema_version"]
    if not _is_int(version) or not MIN_SCHEMA_VERSION <= version <= SCHEMA_VERSION:
        newer = _is_int(version) and version > SCHEMA_VERSION
        raise ManifestError(
            f"{source} has schema version {version!r}; this hpsedge reads versions {MIN_SCHEMA_VERSION} to "
            f"{SCHEMA_VERSION}"[:300],
            hint="upgrade hpsedge on this machine" if newer else "re-export the folder with the installed hpsedge",
        )
    model = raw["model"]
    if not isinstance(model, dict) or "name" not in model or "family" not in model:
        raise ManifestError(f"{source}: 'model' needs 'name' and 'family'")
    if not isinstance(model["name"], str) or not isinstance(model["family"], str):
        raise ManifestError(f"{source}: model 'name' and 'family' must be strings")
    # the family is a label: the runtime reads the model's rules (postprocessing), never its family
    if "has_sigma" in model and not isinstance(model["has_sigma"], bool):
        raise ManifestError(f"{source}: model 'has_sigma' must be true or false, got {model['has_sigma']!r}"[:300])
    if "params" in model and not _is_int(model["params"]):
        raise ManifestError(f"{source}: model 'params' must be an integer, got {model['params']!r}"[:300])
    for key in ("inputs", "outputs"):
        if not isinstance(raw[key], list) or not raw[key]:
            raise ManifestError(f"{source}: '{key}' must be a non-empty list")
        for i, d in enumerate(raw[key]):
            _check_tensor(d, f"{source}: {key}[{i}]")
        names = [d["name"] for d in raw[key]]
        if len(set(names)) != len(names):
            raise ManifestError(f"{source}: '{key}' names a tensor twice ({', '.join(names)})"[:300])
    pre = raw["preprocessing"]
    if not isinstance(pre, dict) or "input_size" not in pre:
        raise ManifestError(f"{source}: 'preprocessing' needs 'input_size' [H, W]")
    size = pre["input_size"]
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) and 0 < v <= 8192 for v in size)):
        raise ManifestError(f"{source}: preprocessing 'input_size' must be [H, W] positive integers, got {size!r}"[:300])
    for key in ("mean", "std"):
        v = pre.get(key)
        if v is not None and not (isinstance(v, list) and len(v) == 3 and all(_is_num(x) for x in v)):
            raise ManifestError(f"{source}: preprocessing '{key}' must be 3 numbers, got {v!r}"[:300])
    if pre.get("std") is not None and any(x == 0 for x in pre["std"]):
        raise ManifestError(f"{source}: preprocessing 'std' must not be 0")
    for key in ("bbox_scale", "square_side"):
        v = pre.get(key)
        if v is not None and not (_is_num(v) and v > 0):
            raise ManifestError(f"{source}: preprocessing '{key}' must be a positive number, got {v!r}"[:300])
    if "color" in pre and str(pre["color"]).upper() not in ("RGB", "BGR"):
        raise ManifestError(f"{source}: preprocessing 'color' must be RGB or BGR, got {pre['color']!r}"[:300])
    _validate_extra_inputs(raw, pre, source)
    post = raw.get("postprocessing", {})
    if not isinstance(post, dict):
        raise ManifestError(f"{source}: 'postprocessing' must be an object")
    for key in ("crop_focal_length", "crop_size"):
        v = post.get(key)
        if v is not None and not (_is_num(v) and v > 0):
            raise ManifestError(f"{source}: postprocessing '{key}' must be a positive number, got {v!r}"[:300])
    mb = raw.get("max_batch")
    if mb is not None and not (_is_int(mb) and 1 <= mb <= MAX_BATCH_LIMIT):
        raise ManifestError(f"{source}: 'max_batch' must be an integer in 1..{MAX_BATCH_LIMIT}, got {mb!r}"[:300])
    if raw.get("precision") is not None and raw["precision"] not in Precision.names():
        raise ManifestError(f"{source}: unknown precision {raw['precision']!r} ({', '.join(Precision.names())})"[:300])
    if "opset" in raw and raw["opset"] is not None and not _is_int(raw["opset"]):
        raise ManifestError(f"{source}: 'opset' must be an integer, got {raw['opset']!r}"[:300])
    for key in ("checkpoint", "verification", "versions", "calibration"):
        if raw.get(key) is not None and not isinstance(raw[key], dict):
            raise ManifestError(f"{source}: '{key}' must be an object")
    _validate_rules(raw, source)
    if not isinstance(raw["artifacts"], dict):
        raise ManifestError(f"{source}: 'artifacts' must be an object")
    for key, art in raw["artifacts"].items():
        _check_artifact(str(key), art, source)


# ------------------------------------------------------------------------------------- artifact files
def check_artifact_name(name: Any, what: str = "artifact") -> str:
    """``name`` must be a plain relative path inside the build folder: no absolute path, no ``..``, no
    drive or backslash tricks, no empty or NUL-containing name. Returns it."""
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name:
        raise ManifestError(f"{what}: file name must be a plain relative name, got {name!r}"[:300])
    pure = PurePosixPath(name)
    if pure.is_absolute() or name.startswith("~") or any(part in ("..", "") for part in name.split("/")) or ":" in pure.parts[0]:
        raise ManifestError(
            f"{what}: file name {name!r} points outside the build folder (artifacts must be plain file names "
            "inside it); refusing it"[:300],
            hint="artifact names in manifest.json are plain names relative to its folder; re-export the folder",
        )
    return name


def safe_artifact_path(folder: str | Path, name: Any, what: str = "artifact") -> Path:
    """``folder / name`` after :func:`check_artifact_name`, refusing a symlink that resolves outside
    ``folder`` and anything that exists but is not a regular file (a FIFO or ``/dev/zero`` would hang a
    reader). A missing file is returned as is (callers say it is missing)."""
    check_artifact_name(name, what)
    base = Path(folder)
    path = base / name
    real_base = os.path.realpath(base)
    real = os.path.realpath(path)
    if os.path.commonpath([real_base, real]) != real_base:
        raise ManifestError(
            f"{what}: {name} resolves to {real}, outside the build folder; refusing it"[:300],
            hint="copy the file into the folder instead of linking to it",
        )
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise ManifestError(f"{what}: cannot read {name} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ManifestError(f"{what}: {name} is not a regular file (a folder, FIFO or device); refusing it"[:300])
    return path


#: verified files: real path -> (dev, inode, size, mtime_ns, ctime_ns, sha256); see :func:`verify_file`
_VERIFIED: dict[str, tuple[int, int, int, int, int, str]] = {}
_VERIFIED_LOCK = threading.Lock()
_CACHE_ENV = "HPSEDGE_HASH_CACHE"
_CACHE_MAX = 512


def hash_cache_file() -> Path | None:
    """The persistent hash cache: ``$HPSEDGE_HASH_CACHE``, or ``$XDG_CACHE_HOME/hpsedge/verified.json``
    (``~/.cache/...``); ``HPSEDGE_HASH_CACHE=off`` turns it off (the in-process cache stays)."""
    env = os.environ.get(_CACHE_ENV)
    if env is not None:
        return None if env.strip().lower() in ("", "0", "off", "no", "false") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hpsedge" / "verified.json"


def _stamp(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _private_dir(folder: Path) -> bool:
    """A real folder (not a symlink) owned by this user that nobody else may write to."""
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _read_cache_file(path: Path) -> dict[str, list[Any]]:
    """The persistent cache, if it can be trusted: a regular file (never followed through a symlink) owned by
    this user, writable by nobody else, in a folder likewise. Anyone who can write it could mark a tampered
    file as verified, so a cache that others can write is ignored (it costs a rehash, nothing else)."""
    if not _private_dir(path.parent):
        return {}
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return {}
    try:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022
                or st.st_size > 1 << 20):
            return {}
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = json.loads(f.read(1 << 20).decode("utf-8"))
    except (OSError, ValueError):
        return {}
    finally:
        os.close(fd)
    return data if isinstance(data, dict) else {}


def _cached_digest(real: str, stamp: tuple[int, ...]) -> str | None:
    with _VERIFIED_LOCK:
        hit = _VERIFIED.get(real)
    if hit is not None and hit[:5] == stamp:
        return hit[5]
    cache = hash_cache_file()
    if cache is None:
        return None
    entry = _read_cache_file(cache).get(real)
    if isinstance(entry, list) and len(entry) == 6 and tuple(entry[:5]) == stamp and isinstance(entry[5], str):
        with _VERIFIED_LOCK:
            _VERIFIED[real] = (*stamp, entry[5])  # type: ignore[assignment]
        return entry[5]
    return None


def _remember(real: str, stamp: tuple[int, ...], digest: str) -> None:
    with _VERIFIED_LOCK:
        _VERIFIED[real] = (*stamp, digest)  # type: ignore[assignment]
    cache = hash_cache_file()
    if cache is None:
        return
    try:  # best effort: a read-only home or a full disk only costs a rehash next time
        cache.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private_dir(cache.parent):
            return  # a folder others can write to (or a symlink): never write there
        data = _read_cache_file(cache)
        data[real] = [*stamp, digest]
        if len(data) > _CACHE_MAX:
            data = dict(list(data.items())[-_CACHE_MAX:])
        atomic_write(cache, json.dumps(data), fsync=False)  # a fresh O_EXCL temp name: never through a symlink
    except OSError:
        pass


def verify_file(path: str | Path, sha256: str | None, size: int | None = None,
                what: str = "artifact") -> tuple[int, ...]:
    """Check a build-folder file against the manifest's ``size`` and ``sha256`` (one-line ManifestError).

    The sha256 of a verified file is remembered with its (device, inode, size, mtime_ns, ctime_ns): in this
    process and in a small JSON cache in the user's cache folder (:func:`hash_cache_file`), so a warm start
    does not rehash gigabytes. Any write to the file changes its ctime (which no user can set back), so a
    changed file is always rehashed. Without a ``sha256`` (older folders) only the size is checked.
    Returns the file's stamp, for :meth:`Manifest.check_unchanged` after a loader opened it.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise ManifestError(f"{what}: {p} is missing", hint="re-export the folder") from None
    except OSError as exc:
        raise ManifestError(f"{what}: cannot read {p} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ManifestError(f"{what}: {p} is not a regular file; refusing it")
    if size is not None and st.st_size != size:
        raise ManifestError(
            f"{p.name} does not match the manifest: {st.st_size} bytes on disk, {size} listed",
            hint="the file was replaced or truncated; re-export the folder",
        )
    stamp = _stamp(st)
    if not sha256:
        return stamp
    real = os.path.realpath(p)
    digest = _cached_digest(real, stamp)
    if digest is None:
        digest = sha256_file(p)
        if _stamp(os.stat(p)) != stamp:
            raise ManifestError(f"{p.name} changed while it was being verified; try again")
        if digest == sha256:
            _remember(real, stamp, digest)
    if digest != sha256:
        raise ManifestError(
            f"{p.name} does not match the sha256 in the manifest (the file was changed or swapped)",
            hint="re-export the folder, or copy it again from where it was built",
        )
    return stamp


def _validate_extra_inputs(raw: dict[str, Any], pre: dict[str, Any], source: str) -> None:
    """``preprocessing.extra_inputs``: each names a graph input ``[N, width]`` and a rule this runtime implements."""
    block = pre.get("extra_inputs")
    if block is None:
        return
    if not isinstance(block, dict):
        raise ManifestError(f"{source}: preprocessing 'extra_inputs' must map input names to rules")
    shapes = {d["name"]: d["shape"] for d in raw["inputs"]}
    for name, rule in block.items():
        if name == "image" or name not in shapes:
            raise ManifestError(f"{source}: preprocessing extra input {name!r} is not an extra graph input "
                                f"({', '.join(n for n in shapes if n != 'image') or 'none'})"[:300])
        if rule not in INPUT_RULE_WIDTHS:
            raise ManifestError(
                f"{source}: preprocessing extra input {name!r}: rule {rule!r} is not one this hpsedge implements "
                f"({', '.join(INPUT_RULE_WIDTHS)})"[:300], hint="upgrade hpsedge on this machine")
        if shapes[name] != ["N", INPUT_RULE_WIDTHS[rule]]:
            raise ManifestError(f"{source}: input {name!r} has shape {shapes[name]}, but rule {rule!r} makes "
                                f"[N, {INPUT_RULE_WIDTHS[rule]}]"[:300])


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
    if not p.is_file():
        raise ManifestError(f"{p} is not a regular file")
    if p.stat().st_size > MANIFEST_MAX_BYTES:
        raise ManifestError(f"{p} is {p.stat().st_size} bytes; a manifest is at most {MANIFEST_MAX_BYTES}")
    try:
        raw = json.loads(p.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise ManifestError(f"{p} is not valid JSON ({exc.__class__.__name__}: {first})",
                            hint="re-export the folder; the manifest looks corrupt") from None
    validate_manifest(raw, source=str(p))
    return Manifest(path=p.resolve(), raw=raw)


def strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, ±inf) replaced by ``None`` (JSON ``null``), recursively;
    numpy scalars become Python numbers. JSON has no NaN: ``json.dumps`` would write a bare ``NaN`` that
    strict readers (browsers, Go, Rust) refuse."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if not isinstance(obj, (str, bytes, int)) and hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:
        return strict_json(obj.item())
    return obj


def dumps_strict(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`strict_json` ``(obj)`` with ``allow_nan=False``: always strict JSON."""
    default = kwargs.pop("default", None)
    if default is not None:
        obj = json.loads(json.dumps(obj, default=default))  # resolve custom types first
    return json.dumps(strict_json(obj), allow_nan=False, **kwargs)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


