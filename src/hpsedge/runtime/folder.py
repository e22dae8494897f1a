"""One owner for what a build folder holds: the verified manifest, asked once, answering everyone.

    from hpsedge.runtime.folder import BuildFolder, Precision

    folder = BuildFolder.open("build/poco-cliff-fp16")      # manifest read and validated
    plan = folder.select("ort", "CPUExecutionProvider")       # the folder's own precision
    plan.path, plan.sha256, plan.batch.max, plan.confidence_rule

A :class:`Plan` says, for one backend / provider / precision, which file runs (checked against the
manifest's size and sha256 before it is returned), the person-batch range it takes (the engine's optimisation
profile when the plan is an engine, else ``1..max_batch`` of the manifest), its inputs and outputs, and the
confidence rule. The Predictor, ``export build --on-device``, ``export triton``, ``curate``, ``val``,
``bench``, ``inspect`` and ``serve`` ask it instead of re-deriving artifact keys, file names and batch
limits; :class:`Precision` is the one list of precision names, parsed once (:meth:`Precision.parse`).

Numpy-free and torch-free (standard library + the manifest reader), so a robot can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpsedge.errors import BackendError, HpsedgeError, ManifestError
from hpsedge.runtime.manifest import MANIFEST_NAME, Manifest, TensorSpec, load_manifest
from hpsedge.runtime.precisions import BACKENDS, DEFAULT_MAX_BATCH, MAX_BATCH_LIMIT, Precision

__all__ = [
    "BACKENDS",
    "DEFAULT_MAX_BATCH",
    "MAX_BATCH_LIMIT",
    "BatchRange",
    "BuildFolder",
    "Plan",
    "Precision",
    "SlimTarget",
    "check_slim_target",
]

@dataclass(frozen=True)
class BatchRange:
    """The person batch a plan takes: ``min ≤ N ≤ max`` (``opt``: the size TensorRT tuned for, if known)."""

    min: int
    max: int
    opt: int | None = None

    def to_dict(self) -> dict[str, int | None]:
        return {"min": self.min, "opt": self.opt, "max": self.max}


@dataclass(frozen=True)
class Plan:
    """What runs for one (backend, provider, precision) of a build folder (:meth:`BuildFolder.select`)."""

    folder: Path
    backend: str  #: ``"ort"`` or ``"trt"``
    provider: str | None  #: the ONNX Runtime provider it was chosen for (None: not provider-specific)
    precision: Precision
    key: str  #: the manifest artifact key (``"onnx_int8_cpu"``, ``"engine"``, ...)
    path: Path  #: the graph or engine file, verified against the manifest
    sha256: str | None  #: its sha256 as the manifest lists it (verified)
    data_path: Path | None  #: external weights of an ONNX graph (verified), else None
    batch: BatchRange
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    confidence_rule: str | None  #: ``"sigma"``, a graph output's name, or None (no confidence)
    entry: dict[str, Any]  #: the manifest's artifact entry (engine: TensorRT version, GPU, profile...)

    @property
    def file(self) -> str:
        """The file's name inside the folder (what reports and summaries print)."""
        return self.path.name

    @property
    def has_confidence(self) -> bool:
        """Whether results carry a confidence (the manifest's rule; models without an uncertainty output don't)."""
        return self.confidence_rule is not None

    @property
    def flavor(self) -> str | None:
        """INT8 graphs: the Q/DQ flavour (``"trt-s8s8"``, ...), else None."""
        value = self.entry.get("qdq_flavor")
        return None if value is None else str(value)

    def describe(self) -> str:
        """One line for logs: ``model.fp16.onnx (fp16, ort on CPUExecutionProvider, batch 1..16)``."""
        where = f"{self.backend} on {self.provider}" if self.provider else self.backend
        return f"{self.file} ({self.precision.value}, {where}, batch {self.batch.min}..{self.batch.max})"


def _int_in(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


class BuildFolder:
    """A build folder, opened through its verified manifest (:meth:`open`)."""

    def __init__(self, manifest: Manifest, pinned: str | None = None) -> None:
        self.manifest = manifest
        #: the artifact key a bare ``.onnx``/``.engine`` path named (None: the folder itself was given)
        self.pinned = pinned
        self.precision = self._own_precision()

    # ---- opening -----------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path) -> BuildFolder:
        """A folder, its ``manifest.json``, or a bare ``.onnx``/``.engine`` listed by the manifest beside it
        (the file is then pinned: :meth:`select` runs it). The manifest is validated here."""
        p = Path(path)
        if not p.exists():
            raise ManifestError(f"{p} does not exist", hint="pass a folder written by `hpsedge export onnx|build`")
        if p.is_dir() or p.name == MANIFEST_NAME:
            return cls(load_manifest(p))
        manifest = load_manifest(p.parent)
        for key, art in manifest.artifacts.items():
            if Path(str(art["file"])).name == p.name:
                return cls(manifest, pinned=key)
        raise ManifestError(
            f"{p.name} is not listed in {p.parent / MANIFEST_NAME} (it lists: "
            f"{', '.join(str(a['file']) for a in manifest.artifacts.values())})"[:400]
        )

    # ---- what the folder holds ---------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self.manifest.folder or Path(".")

    @property
    def model_name(self) -> str:
        return self.manifest.model_name

    @property
    def confidence_rule(self) -> str | None:
        return self.manifest.confidence_rule

    @property
    def max_batch(self) -> int:
        """The folder's person batch (the manifest's ``max_batch``; :data:`DEFAULT_MAX_BATCH` if it has none)."""
        return self.manifest.max_batch or DEFAULT_MAX_BATCH

    def _own_precision(self) -> Precision:
        raw = self.manifest.raw.get("precision")
        return Precision.FP32 if raw is None else Precision.parse(raw, "manifest 'precision'")

    def precisions(self) -> tuple[Precision, ...]:
        """The precisions this folder has an ONNX graph for."""
        return tuple(p for p in Precision if p.graph_key in self.manifest.artifacts)

    @property
    def has_engine(self) -> bool:
        return "engine" in self.manifest.artifacts

    @property
    def engine_precision(self) -> Precision | None:
        """The precision of the folder's engine (None without one): its entry's label, else the folder's."""
        entry = self.manifest.artifacts.get("engine")
        if entry is None:
            return None
        label = entry.get("precision")
        return self.precision if label is None else Precision.parse(label, "engine 'precision'")

    def engine_batch(self) -> BatchRange | None:
        """The engine's optimisation profile as the build recorded it (None without an engine). An engine
        entry without a profile (older folders) is taken to cover ``1..max_batch``."""
        entry = self.manifest.artifacts.get("engine")
        if entry is None:
            return None
        prof = entry.get("profile")
        if prof is None:
            return BatchRange(1, self.max_batch)
        if not isinstance(prof, dict):
            raise ManifestError(f"engine 'profile' must be an object with min/opt/max, got {prof!r}"[:300])
        mn, opt, mx = prof.get("min"), prof.get("opt"), prof.get("max")
        if not (_int_in(mn, 1, MAX_BATCH_LIMIT) and _int_in(mx, 1, MAX_BATCH_LIMIT) and mn <= mx):
            raise ManifestError(f"engine 'profile' {prof!r} is not a batch range 1 ≤ min ≤ max ≤ {MAX_BATCH_LIMIT}"[:300],
                                hint="rebuild the engine with `hpsedge export build --on-device`")
        if opt is not None and not (_int_in(opt, mn, mx)):
            raise ManifestError(f"engine 'profile' opt {opt!r} lies outside min..max ({mn}..{mx})"[:300],
                                hint="rebuild the engine with `hpsedge export build --on-device`")
        return BatchRange(int(mn), int(mx), None if opt is None else int(opt))

    def graph_key(self, precision: Precision | str | None = None) -> str:
        """The artifact key of ``precision``'s graph (default: the folder's own precision; a folder whose own
        precision graph is missing, e.g. an FP32 export, falls back to ``onnx``). A precision the folder has no
        graph for is one ManifestError with the command that makes it."""
        p = None if precision is None else Precision.parse(precision)
        if "slim" in self.manifest.raw and p in (None, self.precision):
            # a slim folder (hpsedge.slim) keeps one graph of its precision, under the key it was made as
            arts = self.manifest.artifacts
            return next((k for k, a in arts.items() if k.startswith("onnx") and a.get("precision") == self.precision),
                        "onnx")
        if p is None:
            key = self.precision.graph_key
            return key if key in self.manifest.artifacts else "onnx"
        if p.graph_key not in self.manifest.artifacts:
            raise ManifestError(f"this folder has no {p.value} ONNX graph (it has: "
                                f"{', '.join(x.value for x in self.precisions()) or 'none'})",
                                hint=f"build it with `hpsedge export build --precision {p.value}`")
        return p.graph_key

    # ---- the plan ----------------------------------------------------------------------------------
    def select(self, backend: str = "ort", provider: str | None = None,
               precision: Precision | str | None = None, *, verify: bool = True) -> Plan:
        """What runs for ``backend`` (``"ort"``/``"trt"``), ONNX Runtime ``provider`` (it picks among an INT8
        folder's flavours by their ``serves`` list; None: the precision's main graph) and ``precision``
        (default: the folder's own). The file is checked against the manifest (size, sha256, external data)
        unless ``verify=False`` (for describing a folder whose files may be missing)."""
        if backend not in BACKENDS:
            raise BackendError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
        wanted = None if precision is None else Precision.parse(precision)
        if backend == "trt":
            key = self._engine_key(wanted)
            batch = self.engine_batch()
            assert batch is not None
            prec = self.engine_precision or self.precision
            provider = None
        else:
            key = self._graph_for(wanted, provider)
            batch = BatchRange(1, self.max_batch)
            label = self.manifest.artifacts[key].get("precision")
            prec = Precision.parse(label, f"artifact '{key}' precision") if label else (wanted or self.precision)
        entry = dict(self.manifest.artifacts[key])
        path = self.manifest.verified_artifact(key) if verify else self.manifest.artifact_path(key)
        data_path = None
        if entry.get("data_file"):
            from hpsedge.runtime.manifest import safe_artifact_path

            data_path = safe_artifact_path(path.parent, entry["data_file"], what=f"artifact '{key}' data file")
        return Plan(
            folder=self.path, backend=backend, provider=provider, precision=prec, key=key, path=path,
            sha256=entry.get("sha256"), data_path=data_path, batch=batch, inputs=tuple(self.manifest.inputs),
            outputs=tuple(self.manifest.outputs), confidence_rule=self.manifest.confidence_rule, entry=entry,
        )

    def _engine_key(self, wanted: Precision | None) -> str:
        if self.pinned is not None and self.pinned != "engine":
            raise BackendError(f"{self.manifest.artifacts[self.pinned]['file']} is an ONNX graph, not a TensorRT "
                               "engine", hint="pass the folder or its .engine file, or use --backend ort")
        if not self.has_engine:
            raise ManifestError("this folder has no TensorRT engine",
                                hint="build one with `hpsedge export build --on-device FOLDER`, or use --backend ort")
        have = self.engine_precision
        if wanted is not None and have is not None and wanted is not have:
            raise BackendError(
                f"this folder's TensorRT engine is {have.value}, not {wanted.value}",
                hint=f"drop --precision {wanted.value} (or use {have.value}), or run the {wanted.value} graph "
                     "with --backend ort",
            )
        return "engine"

    def _graph_for(self, wanted: Precision | None, provider: str | None) -> str:
        if self.pinned is not None:
            if self.pinned == "engine" or not self.pinned.startswith("onnx"):
                raise BackendError(f"{self.manifest.artifacts[self.pinned]['file']} is not an ONNX graph",
                                   hint="pass the folder or one of its .onnx files")
            label = self.manifest.artifacts[self.pinned].get("precision")
            if wanted is not None and label is not None and label != wanted.value:
                raise ManifestError(f"{self.manifest.artifacts[self.pinned]['file']} is {label}, not {wanted.value}",
                                    hint="pass the folder and --precision, or drop --precision")
            return self.pinned
        key = self.graph_key(wanted)
        if provider is None:
            return key
        return graph_for_provider(self.manifest.artifacts, key, provider)


def graph_for_provider(artifacts: dict[str, dict[str, Any]], key: str, provider: str) -> str:
    """The artifact of ``key``'s precision made for ``provider`` (pure, testable).

    An INT8 folder holds two graphs from the same calibration ranges: ``onnx_int8`` (TensorRT flavour,
    symmetric s8s8; what engines and ONNX Runtime's TensorRT provider take) and ``onnx_int8_cpu`` (the ONNX
    Runtime CPU flavour). Each lists the runners it is made for in ``serves``; the first ONNX artifact of the
    same precision (``key`` itself first) that serves ``provider`` wins, else ``key``.
    """
    prec = (artifacts.get(key) or {}).get("precision")
    family = [key, *sorted(k for k, a in artifacts.items()
                           if k != key and k.startswith("onnx") and prec is not None and a.get("precision") == prec)]
    for k in family:
        if provider in ((artifacts.get(k) or {}).get("serves") or ()):
            return k
    return key


# ------------------------------------------------------------------------ slim folders (hpsedge.slim)
#: what a slim folder can be made for: a backend and a precision
SLIM_BACKENDS = BACKENDS
SLIM_PRECISIONS = Precision.names()


@dataclass(frozen=True)
class SlimTarget:
    """What a slim folder runs: a backend (``ort`` = ONNX Runtime CPU, ``trt`` = TensorRT) and a precision."""

    backend: str
    precision: str

    @property
    def name(self) -> str:
        return f"{self.backend}-{self.precision}"

    @classmethod
    def parse(cls, text: str) -> SlimTarget:
        parts = str(text).strip().lower().split("-")
        if len(parts) != 2 or parts[0] not in SLIM_BACKENDS or parts[1] not in SLIM_PRECISIONS:
            known = ", ".join(f"{b}-{p}" for b in SLIM_BACKENDS for p in SLIM_PRECISIONS)
            raise HpsedgeError(f"unknown slim target '{text}' (known: {known})")
        return cls(parts[0], parts[1])


def check_slim_target(m: Manifest, backend: str, precision: str | None) -> None:
    """Refuse, in one line, running a slim folder with another backend or precision than it was made for.

    ``backend`` is the backend chosen (``"ort"``/``"trt"``), ``precision`` the one asked for (None: the
    folder's own). No-op for full folders."""
    slim = m.raw.get("slim")
    if not isinstance(slim, dict):
        return
    want = SlimTarget(str(slim.get("backend")), str(slim.get("precision")))
    got = SlimTarget(backend, precision or want.precision)
    if got != want:
        graph = next((a["file"] for k, a in m.artifacts.items() if k.startswith("onnx")), "?")
        raise ManifestError(
            f"{m.path.parent if m.path else 'this folder'} is a slim folder for {want.name} (it holds {graph}); "
            f"it cannot run {got.name}",
            hint=f"run it with backend {want.backend!r} at {want.precision}, or make a slim folder for {got.name} "
                 f"from the full folder: hpsedge export slim FULL_DIR --target {got.name} --out DIR",
        )
