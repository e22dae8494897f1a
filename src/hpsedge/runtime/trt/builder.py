"""The TensorRT engine builder behind ``hpsedge export build`` (TensorRT 10 and 11).

Two steps, so the decisions can be tested without TensorRT:

* :func:`plan_build` (pure) turns :class:`BuildOptions` plus the facts of the machine (TensorRT
  version, Jetson or desktop, DLA present, graph inputs) into a :class:`BuildPlan` that names every
  network flag, builder flag and profile shape, or raises :class:`ExportError` saying why the request
  cannot work here;
* :func:`build_engine` applies that plan with the real TensorRT API and writes the engine atomically,
  returning the manifest's ``artifacts["engine"]`` entry.

Precision lives in the ONNX graph (FP16 casts, INT8 Q/DQ), so networks are built *strongly typed* by
default: the only mode TensorRT 11 has, and what TensorRT 10 (JetPack 6) does with
``NetworkDefinitionCreationFlag.STRONGLY_TYPED``. The old weakly typed path (``BuilderFlag.FP16`` /
``INT8`` on an FP32 or Q/DQ graph) is available on TensorRT 10 only, on explicit request, and is what
a TensorRT 10 DLA build uses (see :func:`~hpsedge.runtime.trt.compat.dla_support`).

:func:`trtexec_args` turns the same :class:`BuildPlan` into the stock ``trtexec`` command, written into
every build folder as ``trtexec.sh`` for machines that have TensorRT but not its Python bindings.

Written against the documented TensorRT 10.x/11.x Python API; it has not run against a real TensorRT yet.
"""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hpsedge.errors import BackendError, ExportError
from hpsedge.runtime.files import atomic_write
from hpsedge.runtime.folder import DEFAULT_MAX_BATCH, Precision
from hpsedge.runtime.trt.compat import (
    DLA_PRECISIONS,
    PLATFORMS,
    detect_platform,
    dla_support,
    format_version,
    parse_compute_capability,
    parse_trt_version,
)

__all__ = [
    "BuildOptions",
    "BuildPlan",
    "ProgressEvent",
    "build_engine",
    "detect_platform",
    "plan_build",
    "trt_available",
    "trtexec_args",
    "trtexec_script",
]

log = logging.getLogger("hpsedge.export.trt")

PRECISIONS = Precision.names()  # the one list (hpsedge.runtime.folder.Precision)
HARDWARE_COMPAT = {"ampere+": "AMPERE_PLUS"}
BATCH_AXIS = "N"

InputSpec = tuple[str, Sequence[int | str]]


@dataclass
class BuildOptions:
    """What the user asked for. ``precision`` labels the ONNX file being built (its casts / Q/DQ nodes
    decide the engine's precision in a strongly typed build); ``opt_batch`` None means
    ``min(4, max_batch)``; ``workspace_bytes`` None keeps TensorRT's default (all device memory)."""

    precision: str = "fp32"
    min_batch: int = 1
    opt_batch: int | None = None
    max_batch: int = DEFAULT_MAX_BATCH
    workspace_bytes: int | None = None
    opt_level: int = 3
    timing_cache: str | Path | None = None
    dla_core: int | None = None
    gpu_fallback: bool = True
    # Version-compatible engines keep TensorRT's lean runtime inside the plan. Excluding it
    # (BuilderFlag.EXCLUDE_LEAN_RUNTIME) would need IRuntime.load_runtime() on the target, which the hpsedge
    # runtime never calls, so that option is deliberately not offered.
    version_compatible: bool = False
    hardware_compat: str | None = None  # None or "ampere+"
    weak_typing: bool = False  # TensorRT 10 only: FP16/INT8 builder flags instead of graph types
    on_device: bool = False  # the build runs on the deployment machine itself (recorded only)


@dataclass
class BuildPlan:
    """Everything :func:`build_engine` will set, by name (strings, so tests can assert them)."""

    trt_version: str | None  # None: planned without TensorRT here (trtexec.sh for another machine)
    platform: str | None  # None: the target platform is not known
    precision: str
    network_flags: list[str]
    builder_flags: list[str]
    parser_flags: list[str]  # trt.OnnxParserFlag member names
    hardware_compat_level: str | None  # a trt.HardwareCompatibilityLevel member name
    device_type: str  # "GPU" or "DLA"
    dla_core: int | None
    opt_level: int
    workspace_bytes: int | None
    timing_cache: str | None
    min_batch: int
    opt_batch: int
    max_batch: int
    #: input name -> (min, opt, max) shapes; None until the graph's inputs are known
    profiles: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def strongly_typed(self) -> bool:
        if "STRONGLY_TYPED" in self.network_flags:
            return True
        return self.trt_version is not None and parse_trt_version(self.trt_version)[0] >= 11

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProgressEvent:
    """One report from TensorRT's builder: ``kind`` is ``"start"`` (``total`` steps), ``"step"``
    (``step`` steps of ``total`` done) or ``"finish"``; ``parent`` names the enclosing phase."""

    kind: str
    phase: str
    parent: str | None = None
    step: int = 0
    total: int = 0


ProgressCallback = Callable[[ProgressEvent], "bool | None"]


# ---- planning (pure) ---------------------------------------------------------------------------
def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ExportError(f"{name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ExportError(f"{name} must be {rng}, got {value}")
    return value


def plan_profiles(
    input_specs: Sequence[InputSpec], min_batch: int, opt_batch: int, max_batch: int
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """Per dynamic input, the (min, opt, max) shapes with the batch axis ``"N"`` (or -1) filled in.
    Inputs without a dynamic axis need no profile and are left out."""
    if not input_specs:
        raise ExportError("the graph has no inputs to build a profile for")
    profiles = {}
    for name, shape in input_specs:
        dims = list(shape)
        dyn = [i for i, d in enumerate(dims) if isinstance(d, str) or d == -1]
        if not dyn:
            continue
        if dyn != [0]:
            raise ExportError(f"input {name!r} has shape {dims}: only the leading batch axis may be dynamic",
                              hint="re-export with N as the only dynamic axis")
        rest = dims[1:]
        if any(not isinstance(d, int) or d <= 0 for d in rest):
            raise ExportError(f"input {name!r} has an invalid shape {dims}")
        profiles[str(name)] = ((min_batch, *rest), (opt_batch, *rest), (max_batch, *rest))
    return profiles


def plan_build(
    options: BuildOptions,
    trt_version: str | None,
    platform: str | None,
    has_dla: bool | None,
    input_specs: Sequence[InputSpec] | None,
    *,
    compute_capability: str | None = None,
) -> BuildPlan:
    """Decide how to build, or raise :class:`ExportError` saying why ``options`` cannot work with this
    TensorRT (``trt_version``) on this ``platform`` (``"jetson"``/``"desktop"``). ``input_specs`` are the
    graph inputs as ``(name, shape)`` with ``"N"`` for the batch axis; None defers the profile shapes
    until the ONNX file is parsed. ``compute_capability`` (the build GPU) enables one more check.

    ``trt_version``/``platform``/``has_dla`` None mean "not known here" (planning ``trtexec.sh`` on a
    machine without TensorRT): the checks that need them are left to the target and noted."""
    o = options
    v = parse_trt_version(trt_version) if trt_version is not None else None
    major = v[0] if v is not None else None
    notes: list[str] = []
    if major is not None and major < 10:
        raise ExportError(f"TensorRT {trt_version} is too old: hpsedge builds with TensorRT 10 or newer",
                          hint="upgrade TensorRT (JetPack 6.1+ ships 10.3)")
    if platform is not None and platform not in PLATFORMS:
        raise ExportError(f"unknown platform {platform!r} (expected one of {', '.join(PLATFORMS)})")
    if o.precision not in PRECISIONS:
        raise ExportError(f"unknown precision {o.precision!r} (expected one of {', '.join(PRECISIONS)})")
    if v is None:
        notes.append("planned without TensorRT here: version checks happen on the machine that builds the engine")

    # batch profile
    min_b = _check_int("min batch", o.min_batch, 1)
    max_b = _check_int("max batch", o.max_batch, 1)
    opt_b = min(4, max_b) if o.opt_batch is None else _check_int("opt batch", o.opt_batch, 1)
    if min_b > max_b:
        raise ExportError(f"min batch {min_b} is larger than max batch {max_b}")
    if not min_b <= opt_b <= max_b:
        raise ExportError(f"opt batch {opt_b} must lie between min batch {min_b} and max batch {max_b}")
    opt_level = _check_int("optimisation level", o.opt_level, 0, 5)
    if o.workspace_bytes is not None:
        _check_int("workspace bytes", o.workspace_bytes, 1)

    # DLA (Jetson AGX/NX Orin and Xavier only); decided first because it decides the typing on TensorRT 10
    device_type = "GPU"
    dla_weak = False
    parser_flags: list[str] = []
    if o.dla_core is not None:
        core = _check_int("DLA core", o.dla_core, 0)
        if platform == "desktop":
            raise ExportError(f"DLA core {core} requested, but this is a desktop GPU: DLA exists only on "
                              f"Jetson AGX/NX modules", hint="drop --dla")
        if trt_version is not None:
            ok, why = dla_support(trt_version)
            if not ok:
                raise ExportError(why, hint="use TensorRT 10.0-10.7 (JetPack 6) or 11.4.1 (JetPack 7.2.2+ on "
                                            "AGX Orin), or drop --dla")
        if o.precision not in DLA_PRECISIONS:
            raise ExportError(
                f"{o.precision.upper()} on DLA is not supported: TensorRT documents DLA INT8 only with a "
                f"calibrator (IInt8EntropyCalibrator2), and hpsedge's INT8 graphs carry Q/DQ nodes instead",
                hint="build model.fp16.onnx for DLA (--precision fp16), or run the int8 engine on the GPU "
                     "(drop --dla)")
        if has_dla is False:
            raise ExportError("this Jetson has no DLA cores (Orin Nano and Thor have none)", hint="drop --dla")
        if o.precision == "fp32":
            if not o.gpu_fallback:
                raise ExportError("DLA runs FP16/INT8 only: an fp32 build cannot run on DLA without GPU fallback",
                                  hint="build model.fp16.onnx or model.int8.onnx, or allow GPU fallback")
            notes.append("DLA runs FP16/INT8 only: an fp32 graph will run on the GPU almost entirely")
        device_type = "DLA"
        # TensorRT 10 sets DLA up with the precision builder flags (weakly typed); strongly typed DLA
        # builds are documented only from 11.4.1 (see hpsedge.runtime.trt.compat). With the version
        # unknown (trtexec.sh written elsewhere) the 10.x path is planned: JetPack 6 is where DLA is common.
        dla_weak = major is None or major == 10
        if dla_weak and not o.weak_typing:
            notes.append("DLA on TensorRT 10 uses the precision builder flags (FP16/INT8), not a strongly "
                         "typed network; strongly typed DLA builds need TensorRT 11.4.1+")
        if major is not None and major >= 11:
            parser_flags.append("ADJUST_FOR_DLA")  # NVIDIA's advice for strongly typed DLA builds (11.4.1)
        if not o.gpu_fallback:  # GPU_FALLBACK itself is added after the precision flags below
            notes.append("without GPU fallback, any layer DLA cannot run fails the build")
        if o.version_compatible:
            notes.append("DLA together with version compatibility is untested here")
    elif not o.gpu_fallback:
        notes.append("gpu_fallback only matters with a DLA core; ignored")

    # typing: the network creation flag, or TensorRT 10's precision builder flags
    network_flags: list[str] = []
    builder_flags: list[str] = []
    if o.weak_typing or dla_weak:
        if major is not None and major >= 11:
            raise ExportError(
                f"TensorRT {trt_version} builds strongly typed networks only: weak typing (FP16/INT8 builder "
                f"flags) was removed in TensorRT 11",
                hint="bake the precision into the ONNX file (model.fp16.onnx / model.int8.onnx) and drop "
                     "--weak-typing")
        builder_flags += {"fp32": [], "fp16": ["FP16"], "int8": ["INT8", "FP16"]}[o.precision]
        if o.precision == "int8":
            notes.append("weak typing with int8 expects Q/DQ nodes in the graph (no calibrator is used)")
        if v is not None and v[:2] >= (10, 12):
            notes.append(f"weak typing is deprecated since TensorRT 10.12 (this is {trt_version})")
    else:
        network_flags.append("STRONGLY_TYPED")
    if device_type == "DLA" and o.gpu_fallback:
        builder_flags.append("GPU_FALLBACK")

    # portability (no EXCLUDE_LEAN_RUNTIME: see BuildOptions)
    if o.version_compatible:
        builder_flags.append("VERSION_COMPATIBLE")
    hw_level = None
    hw = None if o.hardware_compat in (None, "", "none") else str(o.hardware_compat)
    if hw is not None:
        if hw not in HARDWARE_COMPAT:
            raise ExportError(f"unknown hardware compatibility level {hw!r} (expected 'ampere+')")
        if platform == "jetson":
            raise ExportError("hardware compatibility 'ampere+' is not supported on Jetson (JetPack)",
                              hint="build without --hardware-compat on the Jetson that will run the engine")
        if compute_capability is not None and parse_compute_capability(compute_capability) < (8, 0):
            raise ExportError(f"hardware compatibility 'ampere+' needs an Ampere or newer build GPU, this one "
                              f"is compute {compute_capability}", hint="build on an sm_80+ GPU")
        hw_level = HARDWARE_COMPAT[hw]
        notes.append("'ampere+' engines limit shared memory and skip cuDNN/cuBLAS tactics: they may be slower")
    if o.on_device and (o.version_compatible or hw_level):
        notes.append("an on-device build with portability flags: the engine may be slower than needed")

    profiles = None
    if input_specs is not None:
        profiles = plan_profiles(input_specs, min_b, opt_b, max_b)
        if not profiles:
            notes.append("the graph has a fixed batch: the profile cannot change it (re-export with a dynamic N)")

    return BuildPlan(
        trt_version=format_version(v) if v is not None else None, platform=platform, precision=o.precision,
        network_flags=network_flags, builder_flags=builder_flags, parser_flags=parser_flags,
        hardware_compat_level=hw_level,
        device_type=device_type, dla_core=o.dla_core, opt_level=opt_level, workspace_bytes=o.workspace_bytes,
        timing_cache=str(o.timing_cache) if o.timing_cache is not None else None,
        min_batch=min_b, opt_batch=opt_b, max_batch=max_b, profiles=profiles, notes=notes,
    )


# ---- the same plan as a stock trtexec command ------------------------------------------------------
#: trtexec's names for the plan's builder flags (trtexec --help, TensorRT 10.x; --fp16/--int8 are gone in
#: TensorRT 11, where --stronglyTyped is accepted as a no-op)
TRTEXEC_FLAGS = {
    "FP16": "--fp16",
    "INT8": "--int8",
    "GPU_FALLBACK": "--allowGPUFallback",
    "VERSION_COMPATIBLE": "--versionCompatible",
}
TRTEXEC_HW_LEVELS = {"AMPERE_PLUS": "ampere+"}
_TRTEXEC_NAME = re.compile(r"[A-Za-z0-9_./-]+")


def _shape_spec(profiles: dict[str, tuple[tuple[int, ...], ...]], which: int) -> str:
    return ",".join(f"{name}:{'x'.join(str(d) for d in shapes[which])}" for name, shapes in profiles.items())


def _mem_spec(nbytes: int) -> str:
    # trtexec --memPoolSize takes MiB without a suffix; K/B suffixes for sizes that are not whole MiB
    if nbytes % (1 << 20) == 0:
        return str(nbytes >> 20)
    return f"{-(-nbytes // 1024)}K"


def trtexec_args(plan: BuildPlan, onnx_file: str, engine_file: str, *, trtexec: str = "trtexec") -> list[str]:
    """The stock ``trtexec`` command line that builds what :func:`build_engine` builds from ``plan``.

    ONNX file, batch profile (``--minShapes/--optShapes/--maxShapes``), typing (``--stronglyTyped`` or the
    TensorRT 10 precision flags), timing cache, DLA core with GPU fallback, version/hardware compatibility,
    workspace and optimisation level; ``--skipInference`` stops after the build. Paths are used as given
    (relative to the folder the command runs in)."""
    if plan.profiles is None:
        raise ExportError("the build plan has no batch profile yet (the graph's inputs are unknown)")
    bad = [n for n in plan.profiles if not _TRTEXEC_NAME.fullmatch(n)]
    if bad:  # names come from a manifest (untrusted) and go into trtexec's name:shape lists
        raise ExportError(f"input name {bad[0]!r} cannot be written into a trtexec shape list",
                          hint="re-export with plain input names (letters, digits, _ . - /)")
    args = [trtexec, f"--onnx={onnx_file}", f"--saveEngine={engine_file}"]
    if plan.profiles:
        args += [f"--minShapes={_shape_spec(plan.profiles, 0)}", f"--optShapes={_shape_spec(plan.profiles, 1)}",
                 f"--maxShapes={_shape_spec(plan.profiles, 2)}"]
    if "STRONGLY_TYPED" in plan.network_flags:
        args.append("--stronglyTyped")
    for flag in plan.builder_flags:
        if flag not in TRTEXEC_FLAGS:
            raise ExportError(f"no trtexec option known for builder flag {flag}")
        args.append(TRTEXEC_FLAGS[flag])
    if plan.device_type == "DLA":
        args.append(f"--useDLACore={int(plan.dla_core or 0)}")
    if plan.hardware_compat_level:
        args.append(f"--hardwareCompatibilityLevel={TRTEXEC_HW_LEVELS[plan.hardware_compat_level]}")
    if plan.timing_cache:
        args.append(f"--timingCacheFile={Path(plan.timing_cache).name}")
    if plan.workspace_bytes is not None:
        args.append(f"--memPoolSize=workspace:{_mem_spec(int(plan.workspace_bytes))}")
    args += [f"--builderOptimizationLevel={plan.opt_level}", "--skipInference"]
    return args


def trtexec_script(plan: BuildPlan, onnx_file: str, engine_file: str) -> str:
    """``trtexec.sh``: :func:`trtexec_args` as a POSIX shell script that runs inside the build folder."""
    import shlex

    args = trtexec_args(plan, onnx_file, engine_file, trtexec="TRTEXEC_PLACEHOLDER")
    target = f"TensorRT {plan.trt_version}" if plan.trt_version else "TensorRT 10.x (no TensorRT where it was written)"
    lines = [
        "#!/bin/sh",
        "# Written by hpsedge: the stock trtexec command that builds the same engine as",
        "#   hpsedge export build --on-device <this folder>",
        "# (both come from one build plan), for machines with TensorRT but without its Python bindings.",
        "# Run it on the machine that will run the engine:  sh trtexec.sh",
        "# (JetPack: TRTEXEC=/usr/src/tensorrt/bin/trtexec sh trtexec.sh)",
        f"# Planned for: {target}; platform {plan.platform or 'not known'}; graph precision {plan.precision}.",
    ]
    if any(f in plan.builder_flags for f in ("FP16", "INT8")):
        lines.append("# --fp16/--int8 are TensorRT 10 options (removed in 11); on 11.x build with --stronglyTyped.")
    lines += [f"# note: {n}" for n in plan.notes]
    if plan.parser_flags:
        lines.append(f"# note: the Python build also sets the ONNX parser flag(s) {', '.join(plan.parser_flags)}; "
                     "this command runs the parser without them.")
    lines += [
        "# The engine this writes is not listed in manifest.json, so `hpsedge run` keeps using ONNX Runtime;",
        "# use it with trtexec --loadEngine, Triton, or hpsedge.runtime.trt.backend.TensorRTBackend(path).",
        "set -e",
        'cd "$(dirname "$0")"',
        'exec "${TRTEXEC:-trtexec}" \\',
    ]
    rest = [shlex.quote(a) for a in args[1:]]
    lines += [f"  {a} \\" for a in rest[:-1]] + [f"  {rest[-1]}"]
    return "\n".join(lines) + "\n"


def write_trtexec_script(folder: str | Path, plan: BuildPlan, onnx_file: str, engine_file: str,
                         name: str = "trtexec.sh") -> Path:
    """Write :func:`trtexec_script` to ``folder/name`` atomically (executable); return its path."""
    path = Path(folder) / name
    _atomic_write(path, trtexec_script(plan, onnx_file, engine_file).encode())
    path.chmod(0o755)
    return path


# ---- machine facts -----------------------------------------------------------------------------
def trt_available(device: int = 0) -> tuple[bool, str]:
    """Whether an engine can be built and run here: TensorRT >= 10, cuda-python and a CUDA GPU.
    Returns ``(ok, reason)``; the reason names what is missing or what was found."""
    from hpsedge.runtime.trt.backend import import_tensorrt

    try:
        trt = import_tensorrt(ExportError)
    except ExportError as exc:
        return False, exc.message
    try:
        name, cc = _gpu_info(device)
    except ExportError as exc:
        return False, exc.message
    return True, f"TensorRT {trt.__version__} with {name} (compute {cc})"


def _gpu_info(device: int = 0) -> tuple[str, str]:
    """(name, "major.minor") via cuda-python, else ``nvidia-smi``."""
    from hpsedge.runtime.trt.cuda import device_info

    try:
        return device_info(device)
    except BackendError as exc:
        first = exc
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader", f"--id={device}"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout.strip().splitlines()
        name, cc = (s.strip() for s in out[0].rsplit(",", 1))
        parse_compute_capability(cc)
        return name, cc
    except (OSError, subprocess.SubprocessError, ValueError, IndexError, BackendError):
        raise ExportError(first.message, hint=first.hint) from first


# ---- TensorRT glue -----------------------------------------------------------------------------
def make_progress_monitor(trt: Any, callback: ProgressCallback) -> Any:
    """A ``trt.IProgressMonitor`` forwarding phases and steps to ``callback(ProgressEvent)``; a callback
    returning False at a step cancels the build. Callback exceptions are logged, never raised into
    TensorRT."""

    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.totals: dict[str, int] = {}
            self.cancelled = False

        def _emit(self, event: ProgressEvent) -> bool:
            try:
                return callback(event) is not False
            except Exception as exc:  # never let Python exceptions cross into TensorRT
                log.warning("progress callback failed: %s", exc)
                return True

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.totals[phase_name] = int(num_steps)
            self._emit(ProgressEvent("start", phase_name, parent_phase, 0, int(num_steps)))

        def step_complete(self, phase_name: str, step: int) -> bool:
            keep_going = self._emit(ProgressEvent("step", phase_name, None, int(step) + 1,
                                                  self.totals.get(phase_name, 0)))
            if not keep_going:
                self.cancelled = True
            return keep_going

        def phase_finish(self, phase_name: str) -> None:
            total = self.totals.pop(phase_name, 0)
            self._emit(ProgressEvent("finish", phase_name, None, total, total))

    return _Monitor()


def _enum(container: Any, name: str, what: str) -> Any:
    member = getattr(container, name, None)
    if member is None:
        raise ExportError(f"this TensorRT has no {what} {name}", hint="upgrade TensorRT or drop the option")
    return member


def _network_inputs(network: Any) -> list[InputSpec]:
    specs: list[InputSpec] = []
    for i in range(network.num_inputs):
        t = network.get_input(i)
        dims = [int(d) for d in t.shape]
        specs.append((t.name, [BATCH_AXIS if (j == 0 and d == -1) else d for j, d in enumerate(dims)]))
    return specs


def _atomic_write(path: Path, data: Any) -> str:
    """Write ``data`` (bytes or a buffer such as ``trt.IHostMemory``) to ``path`` atomically; returns the
    sha256 of what was written."""
    view = memoryview(data).cast("B")
    atomic_write(path, view)
    return hashlib.sha256(view).hexdigest()


def _summary(logger: Any, fallback: str) -> str:
    return logger.summary() or fallback


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    options: BuildOptions,
    progress: ProgressCallback | None = None,
    *,
    input_specs: Sequence[InputSpec] | None = None,
    device: int = 0,
    platform: str | None = None,
) -> dict[str, Any]:
    """Build a TensorRT engine from ``onnx_path`` (parsed from the file, so external ``.onnx.data``
    weights resolve) and write it atomically to ``engine_path``; return the manifest engine entry
    (``file`` is the engine's name, relative to the manifest's folder).

    ``progress`` receives :class:`ProgressEvent` s from TensorRT's builder (return False to cancel).
    ``input_specs`` (from the manifest) lets the options be checked before the ONNX file is parsed;
    without it the profile is planned from the parsed graph's inputs.
    """
    from hpsedge.runtime.trt.backend import create_trt_object, import_tensorrt, make_logger

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise ExportError(f"ONNX file {onnx_path} does not exist", hint="run `hpsedge export onnx` first")
    trt = import_tensorrt(ExportError)
    trt_version = str(trt.__version__)
    gpu_name, cc = _gpu_info(device)
    plat = platform or detect_platform(gpu_name)
    logger = make_logger(trt)
    builder = create_trt_object(trt.Builder, logger, logger=logger, what="a builder", error_cls=ExportError)
    has_dla = int(getattr(builder, "num_DLA_cores", 0) or 0) > 0
    plan = plan_build(options, trt_version, plat, has_dla, input_specs, compute_capability=cc)
    for note in plan.notes:
        log.warning("%s", note)
    t0 = time.perf_counter()

    # network and parser
    flags = 0
    for name in plan.network_flags:
        member = getattr(trt.NetworkDefinitionCreationFlag, name, None)
        if member is None:  # e.g. STRONGLY_TYPED once TensorRT drops the (then implied) flag
            log.info("TensorRT %s has no network flag %s; strong typing is implied", trt_version, name)
            continue
        flags |= 1 << int(member)
    network = builder.create_network(flags)
    if network is None:
        raise ExportError(f"TensorRT could not create a network: {_summary(logger, 'no reason logged')}")
    parser = create_trt_object(trt.OnnxParser, network, logger, logger=logger, what="an ONNX parser",
                               error_cls=ExportError)
    for name in plan.parser_flags:
        parser.set_flag(_enum(trt.OnnxParserFlag, name, "ONNX parser flag"))
    if not parser.parse_from_file(str(onnx_path)):
        errors = [" ".join(str(parser.get_error(i)).split()) for i in range(parser.num_errors)]
        shown = "; ".join(errors[:3]) or _summary(logger, "no reason given")
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        raise ExportError(f"TensorRT could not parse {onnx_path.name}: {shown}{more}",
                          hint="see the TensorRT static check in the folder's report.md (`hpsedge inspect FOLDER`), "
                               "or re-export at another opset")

    graph_inputs = _network_inputs(network)
    if plan.profiles is None:
        plan.profiles = plan_profiles(graph_inputs, plan.min_batch, plan.opt_batch, plan.max_batch)
    else:
        unknown = sorted(set(plan.profiles) - {n for n, _ in graph_inputs})
        uncovered = sorted(n for n, shape in graph_inputs if BATCH_AXIS in shape and n not in plan.profiles)
        if unknown or uncovered:
            what = (f"the manifest's input(s) {', '.join(unknown)} are not inputs of {onnx_path.name}" if unknown
                    else f"{onnx_path.name} has dynamic input(s) {', '.join(uncovered)} the manifest does not list")
            raise ExportError(what, hint="re-export the folder so manifest and graph agree")

    # builder config
    config = builder.create_builder_config()
    if plan.workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(plan.workspace_bytes))
    config.builder_optimization_level = plan.opt_level
    for name in plan.builder_flags:
        config.set_flag(_enum(trt.BuilderFlag, name, "builder flag"))
    if plan.hardware_compat_level:
        config.hardware_compatibility_level = _enum(trt.HardwareCompatibilityLevel, plan.hardware_compat_level,
                                                    "hardware compatibility level")
    if plan.device_type == "DLA":
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(plan.dla_core or 0)

    fixed_batch = None
    if plan.profiles:
        profile = builder.create_optimization_profile()
        for name, (mn, opt, mx) in plan.profiles.items():
            profile.set_shape(name, mn, opt, mx)
        if config.add_optimization_profile(profile) < 0:
            raise ExportError(f"TensorRT rejected the batch profile {plan.min_batch}/{plan.opt_batch}/"
                              f"{plan.max_batch}: {_summary(logger, 'no reason logged')}")
    else:
        fixed_batch = int(graph_inputs[0][1][0]) if graph_inputs and graph_inputs[0][1] else 1

    # timing cache
    cache = None
    cache_path = Path(plan.timing_cache) if plan.timing_cache else None
    if cache_path is not None:
        previous = cache_path.read_bytes() if cache_path.is_file() else b""
        cache = config.create_timing_cache(previous)
        if not config.set_timing_cache(cache, ignore_mismatch=False):
            log.warning("timing cache %s was made on another GPU or TensorRT version; starting a new one",
                        cache_path)
            cache = config.create_timing_cache(b"")
            config.set_timing_cache(cache, ignore_mismatch=False)

    monitor = None
    if progress is not None:
        monitor = make_progress_monitor(trt, progress)
        config.progress_monitor = monitor

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        if monitor is not None and monitor.cancelled:
            raise ExportError("the TensorRT build was cancelled")
        raise ExportError(f"TensorRT could not build {onnx_path.name}: {_summary(logger, 'no reason logged')}",
                          hint="see the TensorRT log above; a lower --max-batch or a larger --workspace-mb may help")
    build_seconds = time.perf_counter() - t0

    if cache is not None and cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(cache_path, cache.serialize())
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    digest = _atomic_write(engine_path, serialized)
    size = engine_path.stat().st_size
    del serialized, config, parser, network, builder

    if plan.profiles:
        profile_entry = {"min": plan.min_batch, "opt": plan.opt_batch, "max": plan.max_batch}
    else:
        profile_entry = {"min": fixed_batch, "opt": fixed_batch, "max": fixed_batch}
    return {
        "file": engine_path.name,
        "sha256": digest,
        "bytes": size,
        "precision": plan.precision,
        "source": onnx_path.name,
        "trt_version": trt_version,
        "compute_capability": cc,
        "gpu_name": gpu_name,
        "platform": plat,
        "strongly_typed": plan.strongly_typed,
        "network_flags": list(plan.network_flags),
        "builder_flags": list(plan.builder_flags),
        "parser_flags": list(plan.parser_flags),
        "version_compatible": bool(options.version_compatible),
        "hardware_compat": options.hardware_compat if plan.hardware_compat_level else None,
        "dla_core": plan.dla_core,
        "gpu_fallback": plan.device_type == "DLA" and "GPU_FALLBACK" in plan.builder_flags,
        "opt_level": plan.opt_level,
        "workspace_bytes": plan.workspace_bytes,
        "profile": profile_entry,
        "profile_shapes": {name: {"min": list(mn), "opt": list(op), "max": list(mx)}
                           for name, (mn, op, mx) in (plan.profiles or {}).items()},
        "timing_cache": cache_path.name if cache_path is not None else None,
        "on_device": bool(options.on_device),
        "build_seconds": round(build_seconds, 2),
        "built": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
