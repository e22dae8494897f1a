"""``hpsedge export build``: checkpoint → verified ONNX → precision graph → report → TensorRT engine.

One command leaves one self-describing folder that the runtime loads and that can be copied to a Jetson::

    build/poco-cliff-fp16/
      manifest.json          schema-versioned; the runtime validates it
      model.onnx             FP32 reference graph (verified against PyTorch)
      model.fp16.onnx        the precision graph (FP16 casts / INT8 Q/DQ live in the graph)
      model.fp16.engine      when TensorRT and a GPU are present
      timing.cache           TensorRT's tactic timings, reused by later builds on the same GPU
      report.md/.json        accuracy drop vs FP32, TensorRT static check, verification

Where TensorRT or a GPU is missing, everything but the engine is built, one line says why, and the
command succeeds (the folder runs on ONNX Runtime); ``require_engine`` turns that into an error. On the
target device, ``rebuild_on_device`` builds the engine from an existing folder's graph (the usual Jetson
workflow: export on a workstation, build where it runs).
"""

from __future__ import annotations

import errno
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpsedge.errors import ExportError, HpsedgeError
from hpsedge.export.lint import LintReport, lint_graph
from hpsedge.runtime.files import atomic_write
from hpsedge.runtime.folder import DEFAULT_MAX_BATCH, BuildFolder, Precision
from hpsedge.runtime.manifest import MANIFEST_NAME, dumps_strict, validate_manifest

log = logging.getLogger(__name__)

TIMING_CACHE = "timing.cache"
REPORT_MD = "report.md"
REPORT_JSON = "report.json"
TRTEXEC_SCRIPT = "trtexec.sh"

#: progress callback (one line of text per step); the same type as hpsedge.export.onnx.ProgressFn
ProgressFn = Callable[[str], None]


def __getattr__(name: str) -> Any:
    # the exporter's names (hpsedge.export.onnx imports torch) resolve on first use, so that
    # `rebuild_on_device` (the on-device engine build) imports without torch
    if name == "ONNX_NAME":
        from hpsedge.export.onnx import ONNX_NAME

        return ONNX_NAME
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class BuildConfig:
    """Everything ``hpsedge export build`` takes (CLI flags map one to one)."""

    model: str
    out: Path
    checkpoint: Path | None = None
    precision: str = "fp16"
    calib: Path | None = None
    calib_images: Path | None = None
    calib_boxes: Path | None = None
    calib_max_samples: int = 512
    calib_select: str = "random"
    precision_options: dict[str, Any] = field(default_factory=dict)
    opset: int = 17
    min_batch: int = 1
    opt_batch: int | None = None
    #: the engine profile's largest person batch; None: DEFAULT_MAX_BATCH for a new folder, the folder's own
    #: ``max_batch`` for an on-device rebuild (:func:`rebuild_on_device`)
    max_batch: int | None = None
    workspace_mb: int | None = None
    opt_level: int = 3
    dla_core: int | None = None
    version_compatible: bool = False
    hardware_compat: str | None = None
    weak_typing: bool = False
    require_engine: bool = False
    force: bool = False
    tiny: bool = False
    unsafe_pickle: bool = False
    seed: int = 0  #: seed of the random weights when there is no checkpoint (models.checkpoints.DEFAULT_INIT_SEED)
    extra_model_args: dict[str, Any] = field(default_factory=dict)
    detector: Path | None = None  #: a person-detector ONNX to verify, convert and add (hpsedge.export.detector)
    detector_precision: str | None = None  #: default: the build's precision (FP16 for an INT8 build)
    detector_options: dict[str, Any] = field(default_factory=dict)  #: layout, person class, thresholds...


@dataclass
class BuildResult:
    folder: Path
    manifest: dict[str, Any]
    engine_built: bool
    engine_reason: str
    seconds: float
    stage_seconds: dict[str, float]


def graph_key(precision: str) -> str:
    """Manifest artifact key of the graph TensorRT consumes for ``precision`` (:attr:`Precision.graph_key`)."""
    return Precision.parse(precision).graph_key


def engine_name(precision: str) -> str:
    """File name of ``precision``'s engine (:attr:`Precision.engine_name`)."""
    return Precision.parse(precision).engine_name


def _max_batch(cfg: BuildConfig) -> int:
    return cfg.max_batch if cfg.max_batch is not None else DEFAULT_MAX_BATCH


def _trt_options(cfg: BuildConfig, folder: Path) -> Any:
    from hpsedge.runtime.trt.builder import BuildOptions

    return BuildOptions(
        precision=cfg.precision,
        min_batch=cfg.min_batch,
        opt_batch=cfg.opt_batch,
        max_batch=_max_batch(cfg),
        workspace_bytes=cfg.workspace_mb * (1 << 20) if cfg.workspace_mb else None,
        opt_level=cfg.opt_level,
        timing_cache=folder / TIMING_CACHE,
        dla_core=cfg.dla_core,
        version_compatible=cfg.version_compatible,
        hardware_compat=cfg.hardware_compat,
        weak_typing=cfg.weak_typing,
    )


def installed_trt_major() -> int | None:
    """TensorRT's major version when it imports here (no GPU needed), else None."""
    try:
        import tensorrt
    except Exception:
        return None
    try:
        return int(str(tensorrt.__version__).split(".")[0])
    except ValueError:
        return None


def _engine_step(
    cfg: BuildConfig, folder: Path, manifest: dict[str, Any], step: ProgressFn, trt_progress: Callable | None,
    *, on_device: bool = False,
) -> tuple[bool, str]:
    """Build the engine into ``folder`` if TensorRT and a GPU are here; return (built, reason)."""
    from hpsedge.runtime.trt.builder import build_engine, trt_available

    ok, reason = trt_available()
    if not ok:
        manifest["engine_status"] = {"built": False, "reason": reason}
        if cfg.require_engine:
            hint = ("an on-device build needs TensorRT >= 10 and cuda-python here (pip install 'hpsedge[trt]'; "
                    f"TensorRT itself comes with JetPack), or run {TRTEXEC_SCRIPT} in the folder"
                    if on_device else "drop --require-engine to build the rest")
            raise ExportError(f"no TensorRT engine could be built: {reason}", hint=hint)
        return False, reason
    key = graph_key(cfg.precision)
    graph = folder / manifest["artifacts"][key]["file"]
    step(f"building the TensorRT engine from {graph.name}")
    entry = build_engine(
        graph, folder / engine_name(cfg.precision), _trt_options(cfg, folder), progress=trt_progress,
        input_specs=[(t["name"], t["shape"]) for t in manifest["inputs"]],
    )
    entry.setdefault("source", manifest["artifacts"][key]["file"])
    # the profile the engine was built with: what runs it (Predictor, Triton) takes its batch range from here
    entry.setdefault("profile", {"min": cfg.min_batch, "opt": cfg.opt_batch, "max": _max_batch(cfg)})
    manifest["artifacts"]["engine"] = entry
    manifest["engine_status"] = {"built": True, "reason": f"TensorRT {entry.get('trt_version')} on {entry.get('gpu_name')}"}
    return True, manifest["engine_status"]["reason"]


def _detector_engine(cfg: BuildConfig, folder: Path, manifest: dict[str, Any], step: ProgressFn,
                     trt_progress: Callable | None) -> None:
    """The person detector's engine (batch 1, its graph's static input), beside the regressor's.

    Written against TensorRT 10.x/11.x like the regressor's engine; not run against a real TensorRT here."""
    from hpsedge.export.detector import detector_engine_name, detector_key
    from hpsedge.runtime.trt.builder import BuildOptions, build_engine

    det = manifest["detector"]
    precision = str(det.get("precision", "fp32"))
    graph = folder / manifest["artifacts"][detector_key(precision)]["file"]
    h, w = det["input_size"]
    step(f"building the detector's TensorRT engine from {graph.name}")
    opts = BuildOptions(precision=precision, min_batch=1, opt_batch=1, max_batch=1,
                        workspace_bytes=cfg.workspace_mb * (1 << 20) if cfg.workspace_mb else None,
                        opt_level=cfg.opt_level, timing_cache=folder / TIMING_CACHE, dla_core=cfg.dla_core,
                        version_compatible=cfg.version_compatible, hardware_compat=cfg.hardware_compat,
                        weak_typing=cfg.weak_typing)
    entry = build_engine(graph, folder / detector_engine_name(precision), opts, progress=trt_progress,
                         input_specs=[(det["input_name"], [1, 3, int(h), int(w)])])
    manifest["artifacts"]["detector_engine"] = entry


def write_trtexec(cfg: BuildConfig, folder: Path, manifest: dict[str, Any]) -> Path:
    """``trtexec.sh``: the stock trtexec command for this folder's engine, from the same build plan.

    With an engine built here the plan carries this machine's TensorRT and platform (what build_engine
    planned); otherwise the target is unknown and the version checks are left to it."""
    from hpsedge.runtime.trt.builder import plan_build, write_trtexec_script

    engine = manifest["artifacts"].get("engine") or {}
    plan = plan_build(
        _trt_options(cfg, folder), engine.get("trt_version"), engine.get("platform"), None,
        [(t["name"], t["shape"]) for t in manifest["inputs"]],
    )
    graph = manifest["artifacts"][graph_key(cfg.precision)]["file"]
    path = write_trtexec_script(folder, plan, graph, engine_name(cfg.precision), name=TRTEXEC_SCRIPT)
    manifest["artifacts"]["trtexec"] = {"file": TRTEXEC_SCRIPT}
    return path


def _write_reports(folder: Path, manifest: dict[str, Any], lint: list[LintReport], stage_seconds: dict[str, float]) -> None:
    """Merge the build's own sections into report.md/report.json (the precision step may have begun them)."""
    report_json = folder / REPORT_JSON
    data = json.loads(report_json.read_text()) if report_json.exists() else {}
    data["verification"] = manifest.get("verification")
    data["trt_check"] = [r.to_dict() for r in lint]
    data["engine"] = manifest.get("engine_status")
    data["build_seconds"] = stage_seconds
    report_json.write_text(dumps_strict(data, indent=2) + "\n", encoding="utf-8")
    md_path = folder / REPORT_MD
    head = md_path.read_text() if md_path.exists() else ""
    m = manifest["model"]
    ver = manifest.get("verification", {})
    lines = [
        f"# hpsedge build report: {m['name']} ({manifest.get('precision', 'fp32')})",
        "",
        f"- checkpoint: {manifest['checkpoint'].get('file', 'none (random weights)')}",
        f"- FP32 graph vs PyTorch (ONNX Runtime CPU, N={ver.get('batches')}): worst relative error "
        f"{ver.get('worst_rel_error', float('nan')):.2e}",
        f"- engine: {'built' if manifest.get('engine_status', {}).get('built') else 'not built'} — "
        f"{manifest.get('engine_status', {}).get('reason', '')}",
        "- stage times: " + ", ".join(f"{k} {v:.1f} s" for k, v in stage_seconds.items()),
        "",
    ]
    body = "\n".join(lines)
    if head:
        body += "\n## Accuracy vs FP32\n\n" + head.strip() + "\n"
    body += "\n## TensorRT static check\n\n" + "\n".join(r.to_markdown() for r in lint)
    md_path.write_text(body, encoding="utf-8")
    manifest["artifacts"]["report"] = {"file": REPORT_MD}
    manifest["trt_check"] = {f"trt{r.trt_major}": {"ok": r.ok, "errors": r.errors} for r in lint}


def _make_calibration(cfg: BuildConfig, folder: Path, manifest: dict[str, Any], step: ProgressFn) -> Path:
    """INT8 without --calib: build a calibration set from --calib-images with the runtime's preprocessing."""
    if cfg.calib is not None:
        return cfg.calib
    if cfg.calib_images is None:
        raise HpsedgeError(
            "INT8 needs calibration data",
            hint="pass --calib calib.npz (from `hpsedge calib make`) or --calib-images DIR [--calib-boxes JSON]",
        )
    from hpsedge.calib.sets import make_calibration_set
    from hpsedge.export.onnx import write_manifest

    step(f"calibration set from {cfg.calib_images}")
    write_manifest(folder, manifest)  # the calibration code reads the FP32 folder like any export folder
    out = folder / "calib.npz"
    make_calibration_set(
        folder, images=cfg.calib_images, boxes=cfg.calib_boxes, out=out,
        max_samples=cfg.calib_max_samples, select=cfg.calib_select,
    )
    manifest["artifacts"]["calib"] = {"file": out.name}
    return out


def calibration_statistics(folder: Path, manifest: dict[str, Any], calib: Path, limit: int = 128) -> dict[str, Any]:
    """Per-joint σ percentiles (or confidence percentiles) of the FP32 graph on the calibration set.

    The runtime's temporal filters take their default thresholds from these (``manifest["calibration"]``).
    """
    import numpy as np
    import onnxruntime as ort

    data = np.load(calib)
    names = [t["name"] for t in manifest["inputs"]]
    feeds = {n: np.ascontiguousarray(data[n][:limit]) for n in names}
    sess = ort.InferenceSession(str(folder / manifest["artifacts"]["onnx"]["file"]), providers=["CPUExecutionProvider"])
    outputs = {o.name for o in sess.get_outputs()}
    # the manifest's confidence rule names what holds the uncertainty: σ, or a graph output with a confidence
    rule = (manifest.get("postprocessing") or {}).get("confidence")
    key = "sigma" if "sigma" in outputs else (rule if rule in outputs else None)
    n = len(next(iter(feeds.values())))
    stats: dict[str, Any] = {"samples": int(n), "calib_file": calib.name}
    if key is None or n == 0:
        return stats
    values = np.concatenate([sess.run([key], {k: v[i : i + 8] for k, v in feeds.items()})[0] for i in range(0, n, 8)])
    if key == "sigma":
        stats["sigma_percentiles"] = {str(q): np.percentile(values, q, axis=0).round(6).tolist() for q in (50, 90, 95, 99)}
    else:
        stats["confidence_percentiles"] = {str(q): float(np.percentile(values, q)) for q in (1, 5, 10, 50)}
    return stats


HARDWARE_COMPAT = (None, "none", "ampere+")


def check_batch_options(cfg: BuildConfig) -> None:
    """The batch profile: 1 ≤ min ≤ opt ≤ max ≤ MAX_BATCH_LIMIT (one-line errors)."""
    from hpsedge.runtime.folder import MAX_BATCH_LIMIT

    mx = _max_batch(cfg)
    if not 1 <= mx <= MAX_BATCH_LIMIT:
        raise HpsedgeError(f"batch profile: --max-batch must be between 1 and {MAX_BATCH_LIMIT} (got {mx})")
    if not 1 <= cfg.min_batch <= mx:
        raise HpsedgeError(f"batch profile needs 1 ≤ min ≤ max (got min {cfg.min_batch}, max {mx})")
    if cfg.opt_batch is not None and not cfg.min_batch <= cfg.opt_batch <= mx:
        raise HpsedgeError(f"--opt-batch {cfg.opt_batch} must lie within [{cfg.min_batch}, {mx}]")


def check_build_options(cfg: BuildConfig) -> None:
    """Every option in range before any work (one-line errors): model name, precision, batch profile,
    opset, TensorRT knobs, and that the input files exist."""
    from hpsedge.export.onnx import MAX_OPSET, check_input_file
    from hpsedge.models.zoo import get_spec

    get_spec(cfg.model)
    Precision.parse(cfg.precision)
    check_batch_options(cfg)
    if not 13 <= cfg.opset <= MAX_OPSET:
        raise HpsedgeError(f"opset must be between 13 and {MAX_OPSET} (got {cfg.opset})")
    if cfg.workspace_mb is not None and cfg.workspace_mb < 1:
        raise HpsedgeError(f"--workspace-mb must be at least 1 (got {cfg.workspace_mb})")
    if not 0 <= cfg.opt_level <= 5:
        raise HpsedgeError(f"--opt-level must be 0 to 5 (got {cfg.opt_level})")
    if cfg.dla_core is not None and cfg.dla_core < 0:
        raise HpsedgeError(f"--dla must be a core index ≥ 0 (got {cfg.dla_core})")
    if cfg.hardware_compat not in HARDWARE_COMPAT:
        raise HpsedgeError(f"--hardware-compat must be 'ampere+' or 'none' (got {cfg.hardware_compat!r})")
    if cfg.hardware_compat == "ampere+" and cfg.dla_core is not None:
        raise HpsedgeError("--hardware-compat ampere+ is for desktop GPUs; it cannot go with --dla (Jetson)")
    if cfg.dla_core is not None:  # what DLA refuses whatever the device (INT8 without a calibrator), before any work
        from hpsedge.runtime.trt.builder import plan_build

        plan_build(_trt_options(cfg, Path(cfg.out)), None, None, None, None)
    check_input_file(cfg.checkpoint, "--checkpoint")
    check_input_file(cfg.calib, "--calib")
    check_input_file(cfg.calib_boxes, "--calib-boxes")
    for key, value in cfg.extra_model_args.items():
        if isinstance(value, (str, Path)):
            check_input_file(value, f"--{key}")


def export_build(
    cfg: BuildConfig, progress: ProgressFn | None = None, trt_progress: Callable | None = None
) -> BuildResult:
    """Run the whole chain into ``cfg.out`` atomically (see the module docstring).

    Running out of memory or disk space (a full-size ViT-H build needs several GB of each) ends in one
    :class:`ExportError` naming the step, never a traceback; the partial folder is removed as for any failure.
    """
    last = ["starting"]

    def tracked(msg: str) -> None:
        last[0] = msg
        if progress is not None:
            progress(msg)

    try:
        return _export_build(cfg, tracked, trt_progress)
    except MemoryError:
        raise ExportError(f"out of memory while {last[0]}",
                          hint="close other programs, or build on a machine with more RAM (see the README's "
                          "build memory figures)") from None
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise ExportError(f"no space left on the disk while {last[0]} ({exc.filename or cfg.out})",
                          hint="free disk space (a full-size TokenHMR build writes ≈ 7 GB) or choose another --out") from None
    except Exception as exc:  # ONNX Runtime reports allocation failures as its own RuntimeException
        text = str(exc)
        if "bad_alloc" in text or "Failed to allocate memory" in text:
            raise ExportError(f"out of memory while {last[0]} (ONNX Runtime could not allocate)",
                              hint="close other programs, or build on a machine with more RAM") from None
        raise


def _export_build(
    cfg: BuildConfig, progress: ProgressFn | None = None, trt_progress: Callable | None = None
) -> BuildResult:
    """The chain itself (see :func:`export_build`)."""
    from dataclasses import replace

    from hpsedge.export.onnx import atomic_folder, check_target, write_export, write_manifest
    from hpsedge.models.checkpoints import build_model

    step = progress or (lambda _msg: None)
    check_build_options(cfg)
    cfg = replace(cfg, precision=Precision.parse(cfg.precision).value, max_batch=_max_batch(cfg))
    if cfg.precision == "int8" and cfg.calib is None and cfg.calib_images is None:
        raise HpsedgeError(
            "INT8 needs calibration data",
            hint="pass --calib calib.npz (from `hpsedge calib make`) or --calib-images DIR [--calib-boxes JSON]",
        )
    if cfg.detector is not None and not Path(cfg.detector).is_file():
        raise HpsedgeError(f"detector file not found: {cfg.detector}")
    check_target(cfg.out, cfg.force)
    t0 = time.perf_counter()
    stages: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        try:
            return fn()
        finally:
            stages[name] = time.perf_counter() - t

    step("building the model")
    model, _spec, loaded = timed(
        "model",
        lambda: build_model(cfg.model, checkpoint=cfg.checkpoint, unsafe_pickle=cfg.unsafe_pickle, tiny=cfg.tiny,
                            seed=cfg.seed, **cfg.extra_model_args),
    )
    with atomic_folder(cfg.out, cfg.force) as tmp:
        t = time.perf_counter()
        manifest = write_export(tmp, model, loaded, tiny=cfg.tiny, opset=cfg.opset, max_batch=cfg.max_batch, progress=step,
                                init_seed=cfg.seed)
        stages["export+verify"] = time.perf_counter() - t
        del model  # free the PyTorch weights before the precision and engine steps
        if cfg.precision != "fp32":
            from hpsedge.export.precision import apply_precision

            calib = timed("calibration", lambda: _make_calibration(cfg, tmp, manifest, step)) if cfg.precision == "int8" else None
            opts = dict(cfg.precision_options)
            if calib is not None:
                opts["calib"] = calib
            step(f"{cfg.precision} graph and accuracy report")
            timed("precision", lambda: apply_precision(tmp, manifest, cfg.precision, progress=step, **opts))
            if calib is not None:
                step("calibration statistics")
                manifest["calibration"] = timed("calib-stats", lambda: calibration_statistics(tmp, manifest, Path(calib)))
        step("TensorRT static check")
        installed = installed_trt_major()
        majors = (installed,) if installed in (10, 11) else (10, 11)
        det_section = None
        if cfg.detector is not None:
            from hpsedge.export.detector import add_detector

            det_precision = cfg.detector_precision or ("fp16" if cfg.precision == "int8" else cfg.precision)
            det_section = timed("detector", lambda: add_detector(
                tmp, manifest, cfg.detector, det_precision, cfg.calib_images, cfg.detector_options,
                cfg.precision_options.get("flavor"), majors, step))
        graph = tmp / manifest["artifacts"][graph_key(cfg.precision)]["file"]
        lint = timed("trt-check", lambda: lint_graph(graph, majors))
        if not all(r.ok for r in lint):
            log.warning("TensorRT static check: %s", "; ".join(e for r in lint for e in r.errors))
        built, reason = timed("engine", lambda: _engine_step(cfg, tmp, manifest, step, trt_progress))
        if built and cfg.detector is not None:
            timed("detector-engine", lambda: _detector_engine(cfg, tmp, manifest, step, trt_progress))
        write_trtexec(cfg, tmp, manifest)
        manifest["build"] = {
            "command": "export build",
            "precision": cfg.precision,
            "profile": {"min": cfg.min_batch, "opt": cfg.opt_batch, "max": cfg.max_batch},
            "seconds": {k: round(v, 2) for k, v in stages.items()},
        }
        _write_reports(tmp, manifest, lint, stages)
        if det_section is not None:
            from hpsedge.export.detector import write_detector_report

            write_detector_report(tmp, det_section)
        write_manifest(tmp, manifest)
        step("writing the folder")
    return BuildResult(cfg.out, manifest, built, reason, time.perf_counter() - t0, stages)


def rebuild_on_device(folder: Path, cfg: BuildConfig, progress: ProgressFn | None = None,
                      trt_progress: Callable | None = None) -> BuildResult:
    """Build (or rebuild) the engine of an existing folder on this machine, from the folder's graph.

    The folder's manifest picks the graph (its ``precision``) and, unless ``cfg.max_batch`` is given, the
    profile's largest batch (its ``max_batch``); the engine entry records the profile it was built with
    (``profile``: min/opt/max), which is what runs it reads. The engine and the manifest are replaced
    atomically, each by a rename, so an interrupted rebuild leaves the previous state.
    """
    step = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    owner = BuildFolder.open(folder)
    folder = owner.path
    manifest = owner.manifest.raw
    precision = owner.precision
    key = owner.graph_key(precision)  # one ManifestError when the folder lacks its own precision's graph
    owner.manifest.verified_artifact(key)  # the graph TensorRT will parse is the one the manifest lists
    if owner.has_engine and not cfg.force:
        raise HpsedgeError(f"{folder} already has an engine ({manifest['artifacts']['engine']['file']})",
                           hint="pass --force to rebuild it")
    # the folder decides the precision and, unless --max-batch was given, the batch profile's maximum
    rebuild = BuildConfig(**{**cfg.__dict__, "precision": precision.value, "require_engine": True,
                             "max_batch": cfg.max_batch if cfg.max_batch is not None else owner.max_batch})
    check_batch_options(rebuild)
    from hpsedge.export.outdir import output_lock

    with output_lock(Path(folder)):  # the same lock as `export build` to this folder
        built, reason = _engine_step(rebuild, folder, manifest, step, trt_progress, on_device=True)
        manifest["artifacts"]["engine"]["on_device"] = True
        if isinstance(manifest.get("detector"), dict):
            _detector_engine(rebuild, folder, manifest, step, trt_progress)
            manifest["artifacts"]["detector_engine"]["on_device"] = True
        write_trtexec(rebuild, folder, manifest)
        validate_manifest(manifest, source="rebuilt manifest")
        atomic_write(folder / MANIFEST_NAME, dumps_strict(manifest, indent=2) + "\n")
    return BuildResult(folder, manifest, built, reason, time.perf_counter() - t0, {"engine": time.perf_counter() - t0})


__all__ = ["BuildConfig", "BuildResult", "export_build", "graph_key", "lint_graph", "rebuild_on_device"]
