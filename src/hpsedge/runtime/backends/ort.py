"""ONNX Runtime backend: the embedded default (CPU here; CUDA or TensorRT execution providers on GPUs).

ONNX Runtime falls back to the CPU silently when a GPU provider cannot start, so the provider actually
taken is read back from the session (``session.get_providers()``) and logged; asking explicitly for a
GPU device that is not there is an error, not a silent slowdown.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import BackendError, ManifestError
from hpsedge.runtime.backends.base import Backend
from hpsedge.runtime.folder import graph_for_provider  # noqa: F401 - the owner decides; re-exported here

log = logging.getLogger(__name__)

#: device name → provider preference (first available wins)
DEVICE_PROVIDERS: dict[str, tuple[str, ...]] = {
    "auto": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "cpu": ("CPUExecutionProvider",),
}


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendError(
            "ONNX Runtime is not installed",
            hint="pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA/TensorRT providers)",
        ) from exc
    return onnxruntime


def choose_providers(device: str, available: Sequence[str]) -> list[str]:
    """Providers to request for ``device`` given what this ONNX Runtime build offers (pure, testable)."""
    key = device.lower()
    if key not in DEVICE_PROVIDERS:
        raise BackendError(f"unknown device '{device}' for ONNX Runtime (choose from {', '.join(DEVICE_PROVIDERS)})")
    wanted = DEVICE_PROVIDERS[key]
    chosen = [p for p in wanted if p in available]
    if key in ("cuda", "tensorrt") and wanted[0] not in available:
        raise BackendError(
            f"device '{device}' asked for, but this ONNX Runtime has no {wanted[0]} "
            f"(available: {', '.join(available)})",
            hint="install onnxruntime-gpu on a machine with CUDA, or use --device cpu",
        )
    return chosen or ["CPUExecutionProvider"]


def provider_options(provider: str, cache_dir: Path | None, max_batch: int | None, inputs: Sequence[Any]) -> dict:
    """TensorRT EP options: engine/timing caches beside the model and a batch profile (no rebuilds)."""
    if provider != "TensorrtExecutionProvider":
        return {}
    opts: dict[str, Any] = {}
    if cache_dir is not None:
        opts.update(
            trt_engine_cache_enable=True,
            trt_engine_cache_path=str(cache_dir),
            trt_timing_cache_enable=True,
            trt_timing_cache_path=str(cache_dir),
        )
    if max_batch:
        def shapes(n: int) -> str:
            return ",".join(
                f"{spec.name}:" + "x".join(str(n if d == "N" else d) for d in spec.shape) for spec in inputs
            )

        opts.update(trt_profile_min_shapes=shapes(1), trt_profile_opt_shapes=shapes(1), trt_profile_max_shapes=shapes(max_batch))
    return opts


def first_provider(device: str) -> str:
    """The provider a session for ``device`` asks for first on this machine."""
    ort = import_onnxruntime()
    return choose_providers(device, ort.get_available_providers())[0]


class OrtBackend(Backend):
    """An ``onnxruntime.InferenceSession`` behind the :class:`Backend` interface.

    Args:
        path: the ``.onnx`` file (external ``.onnx.data`` beside it is found by ONNX Runtime).
        device: ``"auto"`` (TensorRT EP > CUDA EP > CPU), ``"cpu"``, ``"cuda"`` or ``"tensorrt"``.
        threads: intra-op threads (None: ONNX Runtime's default, one per core).
        inputs/outputs: the manifest's tensor specs; when given, the graph is checked against them.
        max_batch: the person batch the TensorRT EP profile covers.
        warmup: run one batch of zeros at load, so the first real call is not the slow one.
    """

    name = "ort"

    def __init__(
        self,
        path: str | Path,
        device: str = "auto",
        threads: int | None = None,
        inputs: Sequence[Any] | None = None,
        outputs: Sequence[Any] | None = None,
        max_batch: int | None = None,
        warmup: bool = True,
    ) -> None:
        ort = import_onnxruntime()
        p = Path(path)
        if not p.is_file():
            raise ManifestError(f"ONNX file not found: {p}", hint="re-export the folder, or check the manifest's artifacts")
        providers = choose_providers(device, ort.get_available_providers())
        self.path = p  #: the graph this session runs (an INT8 folder holds one per Q/DQ flavour)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        with_opts = [(pr, provider_options(pr, p.parent, max_batch, inputs or [])) for pr in providers]
        try:
            self.session = ort.InferenceSession(str(p), sess_options=opts, providers=with_opts)
        except Exception as exc:  # InvalidProtobuf, InvalidGraph, Fail, NoSuchFile...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise BackendError(
                f"ONNX Runtime cannot load {p.name}: {first[:200]}",
                hint="the file may be truncated or not an ONNX model; re-export the folder",
            ) from None
        taken = self.session.get_providers()
        self.device = taken[0]
        if taken[0] != providers[0]:
            log.warning("ONNX Runtime fell back from %s to %s", providers[0], taken[0])
        log.info("ONNX Runtime %s: %s (threads: %s)", ort.__version__, " > ".join(taken), threads or "default")
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        # every provider takes at most the manifest's max_batch people per call (the Predictor splits)
        self.max_batch = max_batch
        if inputs is not None or outputs is not None:
            self._check_against(inputs or [], outputs or [], p)
        if warmup:
            self.run(self._zeros(1))

    def _check_against(self, inputs: Sequence[Any], outputs: Sequence[Any], path: Path) -> None:
        """The graph must have the manifest's names and static dims; else the folder is inconsistent."""
        graph = {i.name: i.shape for i in self.session.get_inputs()}
        graph.update({o.name: o.shape for o in self.session.get_outputs()})
        for kind, specs, names in (("input", inputs, self.input_names), ("output", outputs, self.output_names)):
            want = [s.name for s in specs]
            if want and sorted(want) != sorted(names):
                raise ManifestError(
                    f"{path.name} does not match the manifest: graph {kind}s {names}, manifest says {want}",
                    hint="the ONNX file was replaced or the manifest edited; re-export the folder",
                )
            for s in specs:
                got = graph[s.name]
                static_ok = len(got) == len(s.shape) and all(
                    d == "N" or not isinstance(g, int) or g == d for d, g in zip(s.shape, got, strict=True)
                )
                if not static_ok:
                    raise ManifestError(
                        f"{path.name} does not match the manifest: {kind} '{s.name}' is {list(got)} in the graph, "
                        f"{list(s.shape)} in the manifest",
                        hint="re-export the folder",
                    )
        self._input_shapes = {i.name: i.shape for i in self.session.get_inputs()}

    def _zeros(self, n: int) -> dict[str, np.ndarray]:
        feeds = {}
        for i in self.session.get_inputs():
            shape = [n if not isinstance(d, int) else d for d in i.shape]
            feeds[i.name] = np.zeros(shape, dtype=np.float32)
        return feeds

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise BackendError(f"missing graph input(s): {', '.join(missing)}")
        outs = self.session.run(self.output_names, {n: feeds[n] for n in self.input_names})
        return dict(zip(self.output_names, outs, strict=True))

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
