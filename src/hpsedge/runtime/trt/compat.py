"""Can this machine run that TensorRT engine? Decided from the manifest, before TensorRT sees the plan.

A TensorRT plan only loads on the TensorRT build and GPU it was made for, unless it was built
*version compatible* (runs on the same or a newer TensorRT) or with a *hardware compatibility level*
(``"ampere+"``: any Ampere-or-newer desktop GPU; not supported on Jetson). Asking TensorRT to
deserialize a foreign plan gives cryptic log lines ("Version tag does not match", "magicTag"), so the
runtime checks the manifest's engine entry first and says what to do instead.

Everything here is plain Python (no numpy, no TensorRT, no CUDA) so it can be unit-tested anywhere:
the caller passes the live TensorRT version and GPU compute capability in.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpsedge.errors import BackendError

log = logging.getLogger("hpsedge.runtime")

PLATFORMS = ("jetson", "desktop")
HARDWARE_COMPAT_LEVELS = ("ampere+",)

#: compute capabilities that only exist on Jetson (Tegra) modules: Nano, TX2, Xavier, Orin, Thor
#: (Thor is sm_101 with CUDA 12.8/12.9 and sm_110 from CUDA 13)
JETSON_COMPUTE_CAPABILITIES = frozenset({(5, 3), (6, 2), (7, 2), (8, 7), (10, 1), (11, 0)})
_JETSON_NAME_HINTS = ("orin", "xavier", "thor", "tegra")
TEGRA_RELEASE_FILE = "/etc/nv_tegra_release"

#: cross-major combinations that TensorRT supports for version-compatible plans (engine, runtime)
_CROSS_MAJOR_OK = frozenset({(8, 9), (8, 10), (9, 10), (10, 11)})

_ENGINE_REQUIRED = ("trt_version", "compute_capability", "platform")


# ---- parsing ---------------------------------------------------------------------------------
def parse_trt_version(version: str) -> tuple[int, ...]:
    """``"10.3.0.30"`` -> ``(10, 3, 0, 30)``; ``"11.4"`` -> ``(11, 4)``. A local suffix is ignored."""
    m = re.match(r"^\s*v?(\d+(?:\.\d+)*)", str(version))
    if not m:
        raise BackendError(f"cannot read TensorRT version {version!r}",
                           hint="expected something like '10.3.0.30'")
    return tuple(int(p) for p in m.group(1).split("."))


def parse_compute_capability(cc: str) -> tuple[int, int]:
    """``"8.7"`` (or ``"sm_87"``, ``"sm_120"``) -> ``(8, 7)``."""
    s = str(cc).strip().lower()
    m = re.fullmatch(r"(\d+)\.(\d+)", s)
    if m:
        return int(m.group(1)), int(m.group(2))
    m = re.fullmatch(r"(?:sm_?|compute_?)?(\d+)(\d)", s)
    if m and s.startswith(("sm", "compute")):
        return int(m.group(1)), int(m.group(2))
    raise BackendError(f"cannot read compute capability {cc!r}", hint="expected 'major.minor', e.g. '8.7'")


def sm_name(cc: str | tuple[int, int]) -> str:
    """``"8.7"`` -> ``"sm_87"``."""
    major, minor = parse_compute_capability(cc) if isinstance(cc, str) else cc
    return f"sm_{major}{minor}"


def format_version(v: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in v)


def platform_from_compute_capability(cc: str) -> str:
    """Best guess of the platform from the compute capability alone (``"jetson"`` or ``"desktop"``)."""
    return "jetson" if parse_compute_capability(cc) in JETSON_COMPUTE_CAPABILITIES else "desktop"


def detect_platform(gpu_name: str | None = None, tegra_release: str | Path = TEGRA_RELEASE_FILE) -> str:
    """``"jetson"`` when ``/etc/nv_tegra_release`` exists or the GPU is named Orin/Xavier/Thor; else
    ``"desktop"``."""
    try:
        if Path(tegra_release).exists():
            return "jetson"
    except OSError:
        pass
    if gpu_name and any(h in gpu_name.lower() for h in _JETSON_NAME_HINTS):
        return "jetson"
    return "desktop"


# ---- DLA, by TensorRT release -------------------------------------------------------------------
# Facts from NVIDIA's documentation (this code has not run against a real TensorRT or DLA):
# * "TensorRT 10.7 was the last 10.x release that supported DLA"; DLA was unavailable in 11.0 through 11.3;
#   11.4.0 supported DLA only on Windows on ARM (beta, no GPU fallback, batch 1). Sources:
#   docs.nvidia.com/deeplearning/tensorrt/11.4.1/inference-library/work-with-dla.html and
#   .../11.3.0/api/migration/tensorrt-10x-to-11x-jetson.html.
# * 11.4.1 restores DLA on Jetson AGX Orin with JetPack 7.2.2 or later (not Thor, not DriveOS); "GPU fallback
#   behaves as it did in TensorRT 10.x"; "DLA builds on NVIDIA Jetson AGX Orin use strongly typed networks.
#   Precision is determined by network tensor types instead of the former per-precision builder flags".
#   Source: docs.nvidia.com/deeplearning/tensorrt/latest/getting-started/release-notes-11/11.4.1.html.
# * On TensorRT 10 a DLA build is set up with the precision builder flags (FP16 / INT8) and GPU_FALLBACK;
#   strongly typed DLA builds are documented only from 11.4.1, so 10.x DLA plans are weakly typed.
# * TensorRT 11.5.0 does not support JetPack: "NVIDIA Jetson AGX Orin has DLA on NVIDIA JetPack 7.2.2 or
#   later, but through TensorRT 11.4.1 rather than 11.5.0" (docs.nvidia.com/deeplearning/tensorrt/11.5.0/
#   inference-library/dla-onnx-parser.html). So Jetson DLA is 10.0-10.7 and 11.4.x from 11.4.1; nothing newer
#   is claimed until NVIDIA documents it.
# * DLA INT8: the TensorRT 10 API reference calls IInt8EntropyCalibrator2 "the required calibrator for DLA";
#   hpsedge quantizes with explicit Q/DQ nodes and no calibrator, and NVIDIA documents no Q/DQ INT8 path on
#   DLA for 10.x, while the 11.4.1 DLA pages describe FP16 (AutoCast --target_dla). So DLA builds are FP16
#   (or FP32 with GPU fallback) only; INT8 on DLA is refused rather than built on a guess.
DLA_LAST_10X = (10, 7)
DLA_RETURNS = (11, 4, 1)
DLA_LAST_11X = (11, 4)
#: graph precisions hpsedge builds for DLA (see above: no INT8 without a calibrator)
DLA_PRECISIONS = ("fp32", "fp16")


def dla_support(trt_version: str) -> tuple[bool, str]:
    """Whether TensorRT ``trt_version`` can build DLA engines on a Jetson, and a one-line reason."""
    v = _padded(parse_trt_version(trt_version), 3)
    shown = format_version(parse_trt_version(trt_version))
    if v[0] < 10:
        return False, f"TensorRT {shown} is older than hpsedge supports (10+)"
    if v[0] == 10:
        if v[:2] <= DLA_LAST_10X:
            return True, f"TensorRT {shown} supports DLA (10.x up to 10.7) with precision builder flags"
        return False, (f"TensorRT {shown} has no DLA: 10.7 was the last 10.x release with DLA "
                       "(NVIDIA, Working with DLA)")
    if v < (11, 4, 0):
        return False, f"TensorRT {shown} has no DLA (11.0 to 11.3 dropped it)"
    if v < DLA_RETURNS:
        return False, f"TensorRT {shown} supports DLA only on Windows on ARM; Jetson DLA returns in 11.4.1"
    if v[:2] > DLA_LAST_11X:
        return False, (f"TensorRT {shown} has no Jetson DLA: JetPack's DLA is supported through TensorRT 11.4.1 "
                       "(11.5 does not support JetPack)")
    return True, f"TensorRT {shown} supports DLA on Jetson AGX Orin (JetPack 7.2.2+), strongly typed"


def dla_strongly_typed(trt_version: str) -> bool:
    """True where a DLA build is strongly typed (11.4.1+), False where it uses precision builder flags (10.x)."""
    return parse_trt_version(trt_version)[0] >= 11


def _padded(v: tuple[int, ...], n: int = 3) -> tuple[int, ...]:
    return tuple(v[:n]) + (0,) * max(0, n - len(v))


def same_trt_build(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Same major.minor.patch, and the same build number where both versions carry one."""
    if _padded(a) != _padded(b):
        return False
    return not (len(a) > 3 and len(b) > 3 and a[3] != b[3])


def _rebuild_hint(folder: str | Path | None) -> str:
    return f"rebuild on this machine with `hpsedge export build --on-device {folder or 'FOLDER'}`"


def _describe(cc: tuple[int, int], name: str | None, platform: str | None) -> str:
    extra = ", ".join(x for x in (name, platform) if x)
    return f"{sm_name(cc)} ({extra})" if extra else sm_name(cc)


# ---- the check ---------------------------------------------------------------------------------
def check_engine_compat(
    engine_entry: Mapping[str, Any],
    trt_version: str,
    compute_capability: str,
    platform: str,
    *,
    gpu_name: str | None = None,
    folder: str | Path | None = None,
) -> None:
    """Raise :class:`BackendError` saying why the engine described by ``engine_entry`` cannot run
    with this TensorRT (``trt_version``) on this GPU (``compute_capability`` ``"major.minor"``,
    ``platform`` ``"jetson"``/``"desktop"``); return None when it can.

    ``gpu_name`` (this GPU) and ``folder`` (the build folder, for the rebuild command) only make the
    message more specific.
    """
    hint = _rebuild_hint(folder)
    if not isinstance(engine_entry, Mapping):
        raise BackendError("the manifest's engine entry is not an object", hint=hint)
    missing = [k for k in _ENGINE_REQUIRED if engine_entry.get(k) in (None, "")]
    if missing:
        raise BackendError(
            f"the manifest's engine entry lacks {', '.join(missing)}, so its compatibility cannot be checked",
            hint=hint,
        )
    try:
        eng_v = parse_trt_version(str(engine_entry["trt_version"]))
        eng_cc = parse_compute_capability(str(engine_entry["compute_capability"]))
    except BackendError as exc:
        raise BackendError(f"the manifest's engine entry is unreadable ({exc.message})", hint=hint) from exc
    eng_platform = str(engine_entry["platform"])
    if eng_platform not in PLATFORMS:
        raise BackendError(f"the manifest's engine entry has an unknown platform {eng_platform!r}", hint=hint)
    if platform not in PLATFORMS:
        raise BackendError(f"unknown platform {platform!r} (expected one of {', '.join(PLATFORMS)})")
    run_v = parse_trt_version(trt_version)
    run_cc = parse_compute_capability(compute_capability)

    hw = engine_entry.get("hardware_compat")
    hw = None if hw in (None, "", "none") else str(hw)
    if hw is not None and hw not in HARDWARE_COMPAT_LEVELS:
        raise BackendError(f"the engine was built with an unknown hardware compatibility level {hw!r}", hint=hint)

    # 1. the GPU
    if hw == "ampere+":
        if platform == "jetson":
            raise BackendError(
                "the engine was built with hardware compatibility 'ampere+', which TensorRT does not support "
                "on Jetson", hint=hint)
        if run_cc < (8, 0):
            raise BackendError(
                f"the engine needs an Ampere or newer GPU (hardware compatibility 'ampere+'), "
                f"this GPU is {_describe(run_cc, gpu_name, None)}", hint=hint)
    elif eng_cc != run_cc or eng_platform != platform:
        show_platform = eng_platform != platform
        built = _describe(eng_cc, engine_entry.get("gpu_name"), eng_platform if show_platform else None)
        here = _describe(run_cc, gpu_name, platform if show_platform else None)
        raise BackendError(f"engine built for {built}, this GPU is {here}", hint=hint)

    # 2. the TensorRT version
    ev, rv = format_version(eng_v), format_version(run_v)
    if engine_entry.get("version_compatible"):
        if _padded(run_v, 4) < _padded(eng_v, 4):
            raise BackendError(
                f"the engine (version compatible) was built with TensorRT {ev}, this machine has the older "
                f"TensorRT {rv}; such engines only run on the same or a newer TensorRT",
                hint=f"{hint}, or upgrade TensorRT")
        if run_v[0] != eng_v[0] and (eng_v[0], run_v[0]) not in _CROSS_MAJOR_OK:
            raise BackendError(
                f"the engine (version compatible) was built with TensorRT {ev}; TensorRT {rv} cannot run "
                f"TensorRT {eng_v[0]} engines", hint=hint)
    elif not same_trt_build(eng_v, run_v):
        raise BackendError(
            f"engine built with TensorRT {ev}, this machine has TensorRT {rv} (plans need the exact version)",
            hint=f"{hint}, or build with --version-compatible to run on newer TensorRT releases")

    # 3. the lean runtime: the runtime never calls IRuntime.load_runtime(), so an engine built with
    #    EXCLUDE_LEAN_RUNTIME (a field only older builds could write) cannot load here
    if engine_entry.get("exclude_lean_runtime"):
        raise BackendError("the engine was built without TensorRT's lean runtime, which hpsedge does not load "
                           "separately", hint=hint)

    # 4. DLA
    dla = engine_entry.get("dla_core")
    if dla is not None and platform != "jetson":
        raise BackendError(f"the engine runs on DLA core {dla}, and this machine has no DLA", hint=hint)


# ---- backend="auto" ----------------------------------------------------------------------------
def _artifacts(manifest: Any) -> dict[str, Any]:
    if isinstance(manifest, Mapping):
        return dict(manifest.get("artifacts") or {})
    return dict(getattr(manifest, "artifacts", {}) or {})


def choose_backend(
    manifest: Any,
    available: Mapping[str, bool],
    gpu_cc: str | None,
    trt_version: str | None,
    *,
    platform: str | None = None,
    gpu_name: str | None = None,
) -> tuple[str, str]:
    """Pick the backend for ``backend="auto"``: ``("trt", reason)`` when the manifest has an engine that
    runs on this GPU with this TensorRT, else ``("ort", reason)``. The reason is also logged.

    ``manifest`` is a :class:`~hpsedge.runtime.manifest.Manifest` or its raw dict; ``available`` says
    what imports here (``{"trt": ..., "cuda_ep": ..., "trt_ep": ...}``; ``"trt"`` means TensorRT *and*
    cuda-python); ``gpu_cc`` is this GPU's ``"major.minor"`` (None: no GPU). ``platform`` defaults to a
    guess from ``gpu_cc``.
    """
    choice, reason = _choose(manifest, available, gpu_cc, trt_version, platform, gpu_name)
    if choice == "ort":
        if available.get("trt_ep"):
            reason += "; ONNX Runtime can use its TensorRT execution provider"
        elif available.get("cuda_ep"):
            reason += "; ONNX Runtime will use CUDA"
        else:
            reason += "; ONNX Runtime will run on the CPU"
    log.info("backend auto -> %s: %s", choice, reason)
    return choice, reason


def _choose(manifest: Any, available: Mapping[str, bool], gpu_cc: str | None, trt_version: str | None,
            platform: str | None, gpu_name: str | None) -> tuple[str, str]:
    engine = _artifacts(manifest).get("engine")
    if not engine:
        return "ort", "the folder has no TensorRT engine"
    folder = getattr(manifest, "folder", None)
    if folder is not None and engine.get("file"):
        path = Path(folder) / str(engine["file"])
        if not path.exists():
            return "ort", f"the manifest lists engine {engine['file']} but the file is missing"
    if not available.get("trt"):
        return "ort", "an engine exists but TensorRT (with cuda-python) is not importable here"
    if not gpu_cc:
        return "ort", "an engine exists but no CUDA GPU is visible"
    if not trt_version:
        return "ort", "an engine exists but the TensorRT version is unknown"
    try:
        plat = platform or platform_from_compute_capability(gpu_cc)
        check_engine_compat(engine, trt_version, gpu_cc, plat, gpu_name=gpu_name, folder=folder)
    except BackendError as exc:
        return "ort", f"the engine cannot run here: {exc.message}"
    return "trt", (f"engine built for {sm_name(str(engine['compute_capability']))} with TensorRT "
                   f"{engine['trt_version']} matches this GPU and TensorRT {trt_version}")
