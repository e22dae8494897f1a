"""Slim build folders: only what one target — a backend and a precision — runs (``hpsedge export slim``).

A full INT8 folder holds the FP32 reference graph, both INT8 flavours, reports and calibration data; a robot
that runs one of them needs one graph. :func:`make_slim` writes a folder holding only the artifacts of that
target — the regressor graph (and, for TensorRT, the engine built from it, when there is one), the person
detector the folder's pipeline would run, its ``error_bound.json`` when it has one, ``report.md`` and
``trtexec.sh`` for TensorRT — and a manifest that
lists only them, with the same sha256 and sizes, plus a ``slim`` block::

    "slim": {"target": "ort-int8", "backend": "ort", "precision": "int8",
             "source_manifest_sha256": "…", "dropped": {"onnx": "model.onnx", …}}

Every copied file is verified against the source manifest before it is copied and the written folder is
verified again (names, sizes, sha256) before it is renamed into place (:func:`hpsedge.export.outdir.atomic_folder`:
whole or nothing, ``force`` replaces only an hpsedge folder). :class:`~hpsedge.runtime.predictor.Predictor` and
``hpsedge inspect`` accept a slim folder for its target and refuse any other backend or precision with one
line (:func:`check_slim_target`). Torch-free: it runs on the robot too.

Targets: ``ort-fp32|ort-fp16|ort-int8`` (ONNX Runtime's CPU provider: an INT8 folder's CPU flavour
``model.int8.cpu.onnx``) and ``trt-fp32|trt-fp16|trt-int8`` (TensorRT: the graph its engine is built from —
the TensorRT flavour for INT8 — plus the engine when the folder has one built from that graph; without one,
``hpsedge export build --on-device SLIM`` builds it on the target). The TensorRT targets were checked here
only on folders without an engine (no GPU on this project's machines).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpsedge.errors import HpsedgeError, ManifestError
from hpsedge.runtime.files import sha256_file
from hpsedge.runtime.folder import SLIM_BACKENDS as BACKENDS
from hpsedge.runtime.folder import SLIM_PRECISIONS as PRECISIONS
from hpsedge.runtime.folder import Precision, SlimTarget, check_slim_target, graph_for_provider
from hpsedge.runtime.manifest import MANIFEST_NAME, Manifest, dumps_strict, load_manifest

__all__ = ["BACKENDS", "PRECISIONS", "SlimResult", "SlimTarget", "check_slim_target", "make_slim", "slim_keys"]

#: the runner each backend's graph is chosen for (the ``serves`` entries of INT8 flavours)
_PROVIDER = {"ort": "CPUExecutionProvider", "trt": "tensorrt"}


@dataclass
class SlimResult:
    folder: Path
    target: SlimTarget
    kept: dict[str, str]  #: artifact key → file
    dropped: dict[str, str]
    bytes_kept: int
    bytes_source: int
    manifest: dict[str, Any] = field(repr=False, default_factory=dict)


def _graph_key(m: Manifest, target: SlimTarget) -> str:
    """The regressor graph ``target`` runs, chosen the way the runtime chooses it."""
    arts = m.artifacts
    key = Precision(target.precision).graph_key
    if key not in arts:
        # a slim folder keeps one flavour under its own key (e.g. onnx_int8_cpu only)
        same = sorted(k for k, a in arts.items() if k.startswith("onnx") and a.get("precision") == target.precision)
        if not same:
            have = sorted({str(a.get("precision")) for k, a in arts.items() if k.startswith("onnx")})
            raise ManifestError(f"this folder has no {target.precision} graph for {target.name} "
                                f"(its graphs: {', '.join(have) or 'none'})",
                                hint=f"build one with `hpsedge export build --precision {target.precision}`")
        key = same[0]
    chosen = graph_for_provider(arts, key, _PROVIDER[target.backend])
    serves = arts[chosen].get("serves")
    if serves and _PROVIDER[target.backend] not in serves:
        raise ManifestError(f"this folder's {target.precision} graph {arts[chosen]['file']} is made for "
                            f"{', '.join(serves)}, not for {target.name}")
    return chosen


def slim_keys(m: Manifest, target: SlimTarget) -> list[str]:
    """The artifact keys a slim folder for ``target`` keeps (regressor graph, engine, detector, reports)."""
    from hpsedge.runtime.pipeline import detector_artifact, detector_engine_entry

    arts = m.artifacts
    graph = _graph_key(m, target)
    keep = [graph]
    if target.backend == "trt":
        engine = arts.get("engine")
        if isinstance(engine, dict) and engine.get("source") == arts[graph]["file"]:
            keep.append("engine")
            cache = engine.get("timing_cache")
            keep += [k for k, a in arts.items() if cache and a.get("file") == cache and k not in keep]
        keep += [k for k in ("trtexec",) if k in arts]
    det = detector_artifact(m)
    if det is not None:
        keep.append(det)
        if detector_engine_entry(m, "trt" if target.backend == "trt" else "ort", det) is not None:
            keep.append("detector_engine")
    # the metric error bound (error_bound.json) is runtime data of the folder, whatever graph runs
    keep += [k for k in ("error_bound", "report") if k in arts]
    return keep


def make_slim(src: str | Path, out: str | Path, target: str | SlimTarget, force: bool = False) -> SlimResult:
    """Write a slim copy of the build folder ``src`` for ``target`` (``"ort-int8"``, ``"trt-fp16"``…) to
    ``out``: the target's artifacts, verified, and a manifest listing only them (see the module docstring)."""
    from hpsedge.export.outdir import atomic_folder

    tgt = target if isinstance(target, SlimTarget) else SlimTarget.parse(target)
    src_dir = Path(src)
    m = load_manifest(src_dir)
    folder = m.path.parent if m.path is not None else src_dir
    out_dir = Path(out)
    if out_dir.resolve() == folder.resolve():
        raise HpsedgeError(f"the slim folder cannot replace its source {folder}", hint="choose another --out")
    old = m.raw.get("slim")
    if isinstance(old, dict) and (old.get("backend"), old.get("precision")) != (tgt.backend, tgt.precision):
        raise HpsedgeError(f"{folder} is already a slim folder for {old.get('target')}; it has nothing for {tgt.name}",
                           hint="make the slim folder from the full build folder")
    keys = slim_keys(m, tgt)
    arts = m.artifacts
    files: list[tuple[Path, str]] = []
    for key in keys:
        entry = arts[key]
        path = m.verified_artifact(key) if "sha256" in entry else m.artifact_path(key)
        if not path.is_file():
            raise ManifestError(f"artifact '{key}' ({entry['file']}) is missing from {folder}")
        files.append((path, entry["file"]))
        if entry.get("data_file"):
            files.append((path.parent / entry["data_file"], entry["data_file"]))
    extra = [n for n in ("report.json",) if "report" in keys and (folder / n).is_file()]
    raw = json.loads(json.dumps(m.raw))
    dropped = {k: a["file"] for k, a in arts.items() if k not in keys}
    raw["artifacts"] = {k: arts[k] for k in keys}
    raw["slim"] = {"target": tgt.name, "backend": tgt.backend, "precision": tgt.precision,
                   "source_manifest_sha256": sha256_file(folder / MANIFEST_NAME), "dropped": dropped}
    with atomic_folder(out_dir, force) as tmp:
        for path, name in files:
            shutil.copyfile(path, tmp / name)
        for name in extra:
            shutil.copyfile(folder / name, tmp / name)
        (tmp / MANIFEST_NAME).write_text(dumps_strict(raw, indent=2) + "\n", encoding="utf-8")
        written = load_manifest(tmp)  # the schema reader and every file again, before the rename
        for key, entry in written.artifacts.items():
            if "sha256" in entry:
                written.verified_artifact(key)
            elif not written.artifact_path(key).is_file():
                raise ManifestError(f"slim folder: artifact '{key}' was not written")
    kept = {k: arts[k]["file"] for k in keys}
    size = sum((out_dir / f).stat().st_size for f in {*kept.values(), *extra, MANIFEST_NAME})
    size += sum((out_dir / a["data_file"]).stat().st_size for k, a in arts.items() if k in keys and a.get("data_file"))
    src_size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return SlimResult(out_dir, tgt, kept, dropped, size, src_size, raw)
