"""Build folder → NVIDIA Triton Inference Server model repository.

``hpsedge export triton DIR --out REPO`` writes::

    REPO/
      README.md                      the tritonserver command line and what each model does
      <name>_onnx/config.pbtxt       the network on ONNX Runtime (platform onnxruntime_onnx)
      <name>_onnx/1/model.onnx       (+ model.onnx.data when the graph has external weights)
      <name>_trt/config.pbtxt        the network on TensorRT (platform tensorrt_plan), only with an engine
      <name>_trt/1/model.plan
      hpsedge/config.pbtxt           Python backend: image (uint8 H×W×3) + boxes (float32 K×4) → people
      hpsedge/1/model.py             a two-line shim into hpsedge.serve.triton_python (pip install hpsedge)
      hpsedge/1/manifest.json        the build folder's manifest (preprocessing, postprocessing, I/O)
      hpsedge/1/smpl.npz|.pkl        only with --smpl: meshes, 3D and 2D joints

The network models batch dynamically (``max_batch_size``: the ONNX model takes the manifest's ``max_batch``,
the TensorRT model its engine's profile maximum, both from :class:`hpsedge.runtime.folder.BuildFolder`; an
engine whose profile starts above batch 1 is refused, since Triton sends batches from 1; preferred sizes and
the maximum queue delay are options) and run as instance groups on the GPU by default. The ``hpsedge``
model does the runtime's own pre- and post-processing (:class:`hpsedge.runtime.Predictor` with a BLS
backend), so a frame with K people becomes one request of K crops to the network model, where the dynamic
batcher merges crops of concurrent frames. Its request/response schema (:mod:`hpsedge.serve.schema`) is that
of ``hpsedge serve``, so :mod:`hpsedge.client` talks to both.

``config.pbtxt`` files are written as protobuf text format of Triton's ``ModelConfig`` (model_config.proto);
the tests parse every one with the schema ``tritonclient`` ships. Nothing here imports Triton.

The build folder is untrusted: every file copied is the runtime's verified artifact (name inside the folder,
size and sha256 from the manifest; a ``data_file`` symlink leaving the folder is refused), and each copy is
hashed again as it is written, so the repository holds exactly what the manifest lists. The repository is
written in a temporary folder beside ``out`` and renamed into place (:func:`hpsedge.export.outdir.atomic_folder`):
an error leaves nothing half-written. ``.hpsedge-triton.json`` in the repository lists every file written
(size, mtime); ``force`` replaces only such a repository, unchanged since, or an empty folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpsedge.errors import ExportError, ManifestError
from hpsedge.export.outdir import atomic_folder
from hpsedge.runtime.folder import BuildFolder, Precision
from hpsedge.runtime.manifest import Manifest, TensorSpec, safe_artifact_path
from hpsedge.serve.schema import MODEL_NAME, TRITON_NAME_RE, input_specs, model_prefix, output_specs

log = logging.getLogger(__name__)

#: manifest dtype → Triton TYPE_* (model_config.proto DataType)
TRITON_DTYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "float64": "TYPE_FP64",
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "int8": "TYPE_INT8",
    "uint8": "TYPE_UINT8",
    "bool": "TYPE_BOOL",
}
KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}
_NAME_RE = TRITON_NAME_RE
_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

#: the Python-backend model's model.py: the logic lives in the installed package (no generated code)
MODEL_PY = '''"""Triton Python backend entry point for hpsedge (needs `pip install hpsedge` in Triton's Python)."""

from hpsedge.serve.triton_python import TritonPythonModel  # noqa: F401
'''


@dataclass
class TritonExport:
    """What :func:`export_triton` wrote."""

    out_dir: Path
    models: dict[str, Path] = field(default_factory=dict)  #: model name → its folder
    network_model: str = ""  #: the model the ``hpsedge`` model calls
    readme: Path | None = None


# ------------------------------------------------------------------------------------------ pbtxt
def _q(s: str) -> str:
    """A protobuf text-format string literal."""
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _tensor_block(spec: TensorSpec | dict[str, Any], drop_batch: bool) -> str:
    if isinstance(spec, TensorSpec):
        name, shape, dtype = spec.name, list(spec.shape), spec.dtype
    else:
        name, shape, dtype = spec["name"], list(spec["shape"]), spec["dtype"]
    if dtype not in TRITON_DTYPES:
        raise ManifestError(f"tensor '{name}' has dtype {dtype!r}, which Triton has no type for")
    if drop_batch:
        if not shape or shape[0] != "N":
            raise ManifestError(f"tensor '{name}' has no leading person batch 'N' (shape {shape})")
        shape = shape[1:]
    dims = []
    for d in shape:
        if d == "N" or d == -1:
            dims.append(-1)
        elif isinstance(d, int) and not isinstance(d, bool) and d > 0:
            dims.append(d)
        else:
            raise ManifestError(f"tensor '{name}' has a dimension {d!r} that is neither a size nor 'N'")
    if not _NAME_RE.match(str(name)):
        raise ManifestError(f"tensor name {name!r} is not a plain identifier")
    return (
        f"  {{\n    name: {_q(name)}\n    data_type: {TRITON_DTYPES[dtype]}\n"
        f"    dims: [ {', '.join(str(d) for d in dims)} ]\n  }}"
    )


def _io(key: str, specs: Sequence[Any], drop_batch: bool) -> str:
    return f"{key} [\n" + ",\n".join(_tensor_block(s, drop_batch) for s in specs) + "\n]\n"


def network_config(
    name: str,
    platform: str,
    manifest: Manifest,
    max_batch: int,
    preferred_batch_sizes: Sequence[int] | None,
    max_queue_delay_us: int,
    kind: str,
    count: int,
    gpus: Sequence[int] | None = None,
    dynamic_batching: bool = True,
    default_model_filename: str | None = None,
) -> str:
    """``config.pbtxt`` text of a network model (``onnxruntime_onnx`` or ``tensorrt_plan``)."""
    text = f"name: {_q(name)}\nplatform: {_q(platform)}\nmax_batch_size: {int(max_batch)}\n"
    if default_model_filename:
        text += f"default_model_filename: {_q(default_model_filename)}\n"
    text += _io("input", manifest.inputs, drop_batch=True)
    text += _io("output", manifest.outputs, drop_batch=True)
    if dynamic_batching:
        text += "dynamic_batching {\n"
        for b in preferred_batch_sizes or []:
            text += f"  preferred_batch_size: {int(b)}\n"
        text += f"  max_queue_delay_microseconds: {int(max_queue_delay_us)}\n}}\n"
    text += f"instance_group [\n  {{\n    count: {int(count)}\n    kind: {KINDS[kind]}\n"
    if gpus and kind == "gpu":
        text += f"    gpus: [ {', '.join(str(int(g)) for g in gpus)} ]\n"
    text += "  }\n]\n"
    return text


def hpsedge_config(network_model: str, outputs: Sequence[dict[str, Any]], count: int, params: dict[str, str]) -> str:
    """``config.pbtxt`` of the Python-backend ``hpsedge`` model (no batching: one frame per request)."""
    text = f'name: {_q(MODEL_NAME)}\nbackend: "python"\nmax_batch_size: 0\n'
    text += _io("input", input_specs(), drop_batch=False)
    text += _io("output", outputs, drop_batch=False)
    text += f"instance_group [\n  {{\n    count: {int(count)}\n    kind: KIND_CPU\n  }}\n]\n"
    for key, value in {"network_model": network_model, **params}.items():
        text += f"parameters {{\n  key: {_q(key)}\n  value: {{ string_value: {_q(value)} }}\n}}\n"
    return text


# ------------------------------------------------------------------------------------------ writing
MARKER = ".hpsedge-triton.json"
_MARKER_SCHEMA = "hpsedge.triton-repository"


def _listing(root: Path) -> dict[str, list[int]] | None:
    """Every file under ``root`` but the marker: relative path → [size, mtime_ns]; None if anything there is
    not a regular file (a symlink, a FIFO)."""
    files: dict[str, list[int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in [*filenames, *dirnames]:
            full = os.path.join(dirpath, n)
            st = os.lstat(full)
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                return None
            rel = os.path.relpath(full, root)
            if rel != MARKER:
                files[rel] = [st.st_size, st.st_mtime_ns]
    return files


def is_triton_repository(path: Path) -> bool:
    """True for a repository :func:`export_triton` wrote and nobody changed since (what ``--force`` may
    replace): its marker lists exactly the files there, with the same sizes and modification times."""
    marker = path / MARKER
    try:
        if path.is_symlink() or not path.is_dir() or marker.is_symlink() or not marker.is_file():
            return False
        if marker.stat().st_size > 4 << 20:
            return False
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or data.get("schema") != _MARKER_SCHEMA or not isinstance(data.get("files"), dict):
        return False
    try:
        return _listing(path) == data["files"]
    except OSError:
        return False


def _copy_checked(src: Path, dst: Path, sha256: str | None) -> None:
    """Copy ``src`` (a verified artifact) to a new file ``dst``, hashing what is written: a file changed or
    swapped after verification is caught here, so the repository holds exactly what the manifest lists."""
    h = hashlib.sha256()
    with open(src, "rb") as fi, open(dst, "xb") as fo:
        for block in iter(lambda: fi.read(1 << 20), b""):
            h.update(block)
            fo.write(block)
    if sha256 and h.hexdigest() != sha256:
        raise ManifestError(
            f"{src.name} changed while it was copied (its sha256 no longer matches the manifest); nothing was written",
            hint="something is writing to the build folder; export again once it is left alone",
        )


# ------------------------------------------------------------------------------------------ export
def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise ExportError(f"{out} is not empty; not overwriting it", hint="pass --force, or choose another --out")


def _plain_file(manifest: Manifest, key: str) -> Path:
    """The artifact's path, refusing names that would leave the build folder (hostile manifests), after the
    runtime's checks (:meth:`Manifest.verified_artifact`: size and sha256, its ``data_file`` too)."""
    name = str(manifest.artifacts[key]["file"])
    if not _FILE_RE.match(name) or name in (".", ".."):
        raise ManifestError(f"artifact '{key}' names the file {name!r}; only plain file names inside the folder are read")
    path = manifest.artifact_path(key)
    if not path.is_file():
        raise ManifestError(f"{path} is missing (listed in the manifest as '{key}')", hint="re-export the folder")
    return manifest.verified_artifact(key)


def export_triton(
    folder: str | Path,
    out: str | Path,
    *,
    name: str | None = None,
    precision: str | None = None,
    network: str = "auto",
    kind: str = "gpu",
    count: int = 1,
    gpus: Sequence[int] | None = None,
    preferred_batch_sizes: Sequence[int] | None = None,
    max_queue_delay_us: int = 2000,
    max_persons: int = 64,
    hpsedge_count: int = 2,
    smpl: str | Path | None = None,
    force: bool = False,
) -> TritonExport:
    """Write a Triton model repository for a build folder (see the module docstring for the layout).

    Args:
        folder: a folder written by ``hpsedge export onnx|build``.
        out: the repository folder (must be empty or absent unless ``force``).
        name: model-name prefix (default: the manifest's model name).
        precision: which ONNX graph (``fp32``/``fp16``/``int8``); default: the folder's own.
        network: which network model the ``hpsedge`` model calls: ``auto`` (TensorRT when the folder has an
            engine), ``onnx`` or ``trt``.
        kind/count/gpus: instance group of the network models (``gpu`` or ``cpu``).
        preferred_batch_sizes: dynamic batcher's preferred sizes (default: none, i.e. as large as possible).
        max_queue_delay_us: how long the batcher may hold a crop to fill a batch.
        max_persons: most boxes one request may carry (larger requests are refused).
        hpsedge_count: instances of the Python model (frames pre/post-processed in parallel).
        smpl: an SMPL ``.npz``/``.pkl``: the ``hpsedge`` model then returns joints and vertices too.
        force: replace ``out`` when it is a repository hpsedge wrote and nobody changed since (see the module
            docstring); never anything else.
    """
    owner = BuildFolder.open(folder)
    manifest = owner.manifest
    wanted = Precision.parse_optional(precision)
    out = Path(out)
    _check_out(out, force)
    if kind not in KINDS:
        raise ExportError(f"unknown instance kind {kind!r} (choose from {', '.join(KINDS)})")
    if network not in ("auto", "onnx", "trt"):
        raise ExportError(f"unknown network {network!r} (choose from auto, onnx, trt)")
    if count < 1 or hpsedge_count < 1 or max_persons < 1 or max_queue_delay_us < 0:
        raise ExportError("instance counts and --max-persons must be ≥ 1, the queue delay ≥ 0")
    if manifest.max_batch is None:
        raise ManifestError("the manifest has no max_batch; Triton's max_batch_size needs one", hint="re-export")
    # what each network model runs, and the batch range it takes, from the folder's owner (hpsedge.runtime.folder)
    onnx_plan = owner.select("ort", None, wanted, verify=False)  # _plain_file verifies what is copied
    trt_plan = None
    if network == "trt" and not owner.has_engine:
        raise ManifestError("this folder has no TensorRT engine", hint="build one with `hpsedge export build`")
    if owner.has_engine:
        trt_plan = owner.select("trt", verify=False)
        if wanted is not None and trt_plan.precision is not wanted:
            if network == "trt":
                raise ExportError(f"the folder's TensorRT engine is {trt_plan.precision}, not {wanted}",
                                  hint=f"drop --precision, or use --network onnx for the {wanted} graph")
            log.warning("not writing the TensorRT model: its engine is %s and %s was asked for",
                        trt_plan.precision, wanted)
            trt_plan = None
    if trt_plan is not None and trt_plan.batch.min > 1:
        # Triton's dynamic batcher sends any batch from 1 up: a profile starting above 1 fails per request
        why = (f"the engine's batch profile starts at {trt_plan.batch.min} (min {trt_plan.batch.min}, max "
               f"{trt_plan.batch.max}); Triton sends batches from 1, which such an engine refuses")
        if network != "onnx":
            raise ExportError(why, hint="rebuild the engine with --min-batch 1 (`hpsedge export build --on-device "
                                        "FOLDER --force --min-batch 1`), or pass --network onnx")
        log.warning("not writing the TensorRT model: %s", why)
        trt_plan = None
    has_engine = trt_plan is not None
    limits = [onnx_plan.batch.max] + ([trt_plan.batch.max] if trt_plan is not None else [])
    prefs = sorted({int(b) for b in preferred_batch_sizes or []})
    if any(b < 1 or b > min(limits) for b in prefs):
        raise ExportError(f"preferred batch sizes must lie in 1..{min(limits)} (the largest batch every network "
                          "model takes)")
    smpl_path = Path(smpl) if smpl is not None else None
    if smpl_path is not None:
        from hpsedge.runtime.smpl import SMPL

        SMPL.load(smpl_path)  # refuse a bad file now, not inside the server
    prefix = model_prefix(manifest, name)

    onnx_key = onnx_plan.key
    onnx_src = _plain_file(manifest, onnx_key)
    data_name = manifest.artifacts[onnx_key].get("data_file")
    data_src = None
    if data_name:
        if not _FILE_RE.match(str(data_name)):
            raise ManifestError(f"artifact '{onnx_key}' names an external-data file {data_name!r}; refused")
        data_src = safe_artifact_path(onnx_src.parent, str(data_name), what=f"artifact '{onnx_key}' data file")
        if not data_src.is_file():
            raise ManifestError(f"{data_src} is missing (external weights of {onnx_src.name})", hint="re-export")

    result = TritonExport(out_dir=out)
    replace = force or (out.is_dir() and not out.is_symlink() and not any(out.iterdir()))
    what = ("a Triton repository written by hpsedge and unchanged since (no .hpsedge-triton.json, or its files "
            "differ)", "such repositories")
    with atomic_folder(out, replace, replaceable=is_triton_repository, what=what) as repo:
        _write_repository(repo, result, manifest, onnx_key, onnx_src, data_src, prefix, has_engine, network,
                          smpl_path, onnx_plan.batch.max, trt_plan.batch.max if trt_plan is not None else None,
                          dict(preferred_batch_sizes=prefs,
                                          max_queue_delay_us=max_queue_delay_us, kind=kind, count=count, gpus=gpus),
                          max_persons, hpsedge_count)
    result.models = {k: out / v.name for k, v in result.models.items()}
    result.readme = out / "README.md"
    log.info("Triton repository %s: %s", out, ", ".join(result.models))
    return result


def _write_repository(repo: Path, result: TritonExport, manifest: Manifest, onnx_key: str, onnx_src: Path,
                      data_src: Path | None, prefix: str, has_engine: bool, network: str, smpl_path: Path | None,
                      onnx_batch: int, trt_batch: int | None, batching: dict[str, Any], max_persons: int,
                      hpsedge_count: int) -> None:
    """Everything :func:`export_triton` writes, into ``repo`` (a fresh temporary folder), marker last."""
    common = dict(manifest=manifest, **batching)
    arts = manifest.artifacts
    onnx_name = f"{prefix}_onnx"
    mdir = repo / onnx_name
    (mdir / "1").mkdir(parents=True, exist_ok=True)
    filename = None
    if data_src is not None:
        # ONNX Runtime finds external weights by the name stored in the graph: keep both file names
        _copy_checked(onnx_src, mdir / "1" / onnx_src.name, arts[onnx_key].get("sha256"))
        _copy_checked(data_src, mdir / "1" / data_src.name, arts[onnx_key].get("data_sha256"))
        filename = onnx_src.name if onnx_src.name != "model.onnx" else None
    else:
        _copy_checked(onnx_src, mdir / "1" / "model.onnx", arts[onnx_key].get("sha256"))
    (mdir / "config.pbtxt").write_text(
        network_config(onnx_name, "onnxruntime_onnx", max_batch=onnx_batch, default_model_filename=filename, **common),
        encoding="utf-8"
    )
    result.models[onnx_name] = mdir

    trt_name = None
    if has_engine:
        trt_name = f"{prefix}_trt"
        tdir = repo / trt_name
        (tdir / "1").mkdir(parents=True, exist_ok=True)
        _copy_checked(_plain_file(manifest, "engine"), tdir / "1" / "model.plan", arts["engine"].get("sha256"))
        # max_batch_size is the engine's profile maximum (an on-device build may differ from the manifest's)
        (tdir / "config.pbtxt").write_text(
            network_config(trt_name, "tensorrt_plan", max_batch=int(trt_batch or onnx_batch), **common),
            encoding="utf-8")
        result.models[trt_name] = tdir
    chosen = trt_name if (network == "trt" or (network == "auto" and has_engine)) else onnx_name
    result.network_model = str(chosen)

    hdir = repo / MODEL_NAME
    (hdir / "1").mkdir(parents=True, exist_ok=True)
    (hdir / "1" / "model.py").write_text(MODEL_PY, encoding="utf-8")
    (hdir / "1" / "manifest.json").write_text(json.dumps(manifest.raw, indent=1) + "\n", encoding="utf-8")
    if "error_bound" in manifest.artifacts:  # the runtime verifies it against the manifest in the version folder
        shutil.copyfile(manifest.verified_artifact("error_bound"), hdir / "1" / manifest.artifacts["error_bound"]["file"])
    # the largest batch the called network model takes (its max_batch_size), so frames are split to fit it
    chosen_batch = trt_batch if (trt_batch is not None and chosen == trt_name) else onnx_batch
    params = {"max_persons": str(int(max_persons)), "network_max_batch": str(int(chosen_batch))}
    if smpl_path is not None:
        smpl_name = "smpl" + smpl_path.suffix.lower()
        shutil.copyfile(smpl_path, hdir / "1" / smpl_name)
        params["smpl"] = smpl_name
    outs = output_specs(manifest, smpl_path is not None)
    (hdir / "config.pbtxt").write_text(hpsedge_config(str(chosen), outs, hpsedge_count, params), encoding="utf-8")
    result.models[MODEL_NAME] = hdir

    (repo / "README.md").write_text(_readme(manifest, result, batching["kind"], has_engine), encoding="utf-8")
    listing = _listing(repo) or {}
    (repo / MARKER).write_text(json.dumps({"schema": _MARKER_SCHEMA, "files": listing}, indent=1) + "\n",
                               encoding="utf-8")


#: tritonserver refuses a version-compatible TensorRT plan unless its TensorRT backend is told to accept one
VERSION_COMPATIBLE_FLAG = "--backend-config=tensorrt,version-compatible=true"


def _readme(manifest: Manifest, res: TritonExport, kind: str, has_engine: bool) -> str:
    gpu_flag = "--gpus all " if kind == "gpu" else ""
    vc = has_engine and bool(manifest.artifacts["engine"].get("version_compatible"))
    server = f"tritonserver --model-repository=/models{' ' + VERSION_COMPATIBLE_FLAG if vc else ''}"
    lines = [
        f"# Triton model repository for {manifest.model_name}",
        "",
        "Written by `hpsedge export triton`. Models:",
        "",
    ]
    for name, path in res.models.items():
        what = {
            MODEL_NAME: f"Python backend: `image` (uint8 H×W×3) + `boxes` (float32 K×4, x1,y1,x2,y2 pixels) → per "
            f"person SMPL parameters, translation, σ, confidence (+ joints/vertices with an SMPL file); calls "
            f"`{res.network_model}` (BLS).",
        }.get(name, "the network, dynamic batching over person crops")
        lines.append(f"- `{name}` ({path.name}/): {what}")
    lines += [
        "",
        "Serve it with the Triton container (its Python needs hpsedge's numpy runtime for the `hpsedge` model):",
        "",
        "```bash",
        f"docker run --rm {gpu_flag}-p 8000:8000 -p 8001:8001 -p 8002:8002 -v $PWD:/models \\",
        "  nvcr.io/nvidia/tritonserver:<yy.mm>-py3 \\",
        f"  bash -c 'pip install hpsedge && {server}'",
        "```",
        "",
        f"or, on a machine with tritonserver installed: `{server.replace('/models', '$PWD')}` "
        "(HTTP 8000, gRPC 8001, Prometheus metrics 8002/metrics).",
        "",
        "Query it with `hpsedge.client` (`HpsedgeClient(\"localhost:8001\").predict(image, boxes)`), the same client "
        "that talks to `hpsedge serve`.",
    ]
    if has_engine:
        eng = manifest.artifacts["engine"]
        lines += [
            "",
            f"The TensorRT plan was built with TensorRT {eng.get('trt_version', '?')} for compute capability "
            f"{eng.get('compute_capability', '?')} ({eng.get('gpu_name', '?')}); it loads only in a Triton release "
            "with that TensorRT version, on that GPU class. Otherwise point the `hpsedge` model's `network_model` "
            "parameter at the ONNX model.",
        ]
        if vc:
            lines += [
                "",
                f"The plan is version compatible (it also runs on newer TensorRT releases): Triton loads it only with "
                f"`{VERSION_COMPATIBLE_FLAG}` on the tritonserver command line (as above); the plan embeds TensorRT's "
                "lean runtime, host code that runs in the server, so serve only plans you built.",
            ]
    lines.append("")
    return "\n".join(lines)
