"""``hpsedge inspect``: what a build folder (or a bare graph/engine) holds and whether this machine runs it.

Works on a runtime-only machine: a folder is described from its manifest (numpy-free); onnx or
onnxruntime are used, when present, only to read a bare ``.onnx`` that has no manifest beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpsedge.errors import HpsedgeError, ManifestError
from hpsedge.runtime.folder import BuildFolder
from hpsedge.runtime.manifest import MANIFEST_NAME, Manifest, load_manifest


def _fmt_shape(shape: Any) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _manifest_sections(m: Manifest) -> dict[str, dict[str, Any]]:
    raw = m.raw
    folder = BuildFolder(m)
    model = raw["model"]
    ck = raw.get("checkpoint", {})
    summary = {
        "model": f"{model['name']} ({model.get('variant', 'full')}, family {model['family']})",
        "parameters": f"{model['params'] / 1e6:.2f} M" if "params" in model else "?",
        "checkpoint": "random weights" if ck.get("random_init") else f"{ck.get('file')} (sha256 {str(ck.get('sha256'))[:12]}…)",
        "precision": folder.precision.value,
        "opset": raw.get("opset"),
        "max batch": folder.max_batch,
        "schema": f"{raw['schema']} v{raw['schema_version']}",
        "created": raw.get("created"),
        "versions": ", ".join(f"{k} {v}" for k, v in raw.get("versions", {}).items()),
    }
    ver = raw.get("verification")
    if ver:
        summary["verification"] = f"worst relative error {ver['worst_rel_error']:.2e} vs PyTorch (N={ver['batches']})"
    if "accuracy" in raw:
        acc = raw["accuracy"]
        verdict = "within thresholds" if acc.get("passed") else "OVER THRESHOLDS"
        summary["accuracy vs fp32"] = f"{verdict} (table below; {acc.get('report', 'report.json')})"
    for name, chk in raw.get("trt_check", {}).items():
        summary[f"TensorRT check ({name})"] = "ok" if chk["ok"] else "; ".join(chk["errors"])
    io = {f"input {t.name}": f"{_fmt_shape(t.shape)} {t.dtype}" for t in m.inputs}
    io.update({f"output {t.name}": f"{_fmt_shape(t.shape)} {t.dtype}" for t in m.outputs})
    pre = raw.get("preprocessing", {})
    io["preprocessing"] = ", ".join(f"{k}={v}" for k, v in pre.items())
    arts: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for key, art in m.artifacts.items():
        try:
            path = m.artifact_path(key)  # plain names inside the folder, regular files only
        except ManifestError as exc:
            arts[key] = f"{art['file']}: REFUSED"
            problems[key] = exc.message
            continue
        if not path.exists():
            arts[key] = f"{art['file']}: MISSING"
            if key != "report":
                problems[key] = (f"artifact '{key}' ({art['file']}) is missing (a copy holding only the graph it "
                                 "runs: make it with `hpsedge export slim DIR --target BACKEND-PRECISION --out SLIM`)")
            continue
        status = ""
        if "sha256" in art:
            try:
                m.verified_artifact(key)
                status = "sha256 ok"
            except ManifestError as exc:
                status = "sha256 MISMATCH (file changed)" if "sha256" in exc.message else "MISMATCH"
                problems[key] = exc.message
        extra = ""
        if key == "engine":
            try:
                batch = folder.engine_batch()
                profile = f"batch {batch.min}..{batch.max}" + (f" (opt {batch.opt})" if batch and batch.opt else "")
            except ManifestError as exc:
                profile = "profile REFUSED"
                problems["engine profile"] = exc.message
            extra = (f", TensorRT {art.get('trt_version')}, {art.get('gpu_name')} (sm {art.get('compute_capability')}), "
                     f"{profile}")
        if art.get("serves"):  # INT8 flavours: which runner takes which graph
            extra += f", INT8 {art.get('qdq_flavor')} for {' / '.join(art['serves'])}"
        arts[key] = f"{art['file']} ({_size(path.stat().st_size)}{', ' + status if status else ''}{extra})"
    ops = raw.get("graph", {}).get("ops", {})
    if not isinstance(ops, dict):
        ops = {}
    if not any(k == "onnx" or k.startswith("onnx_") or k == "engine" for k in m.artifacts):
        problems["graph"] = "the manifest lists no ONNX graph or engine"
    det = raw.get("detector")
    detector: dict[str, Any] = {}
    if isinstance(det, dict):
        detector = {
            "layout": det.get("layout"), "precision": det.get("precision"),
            "input": f"{det.get('input_name')} {det.get('input_size')}",
            "person class": f"{det.get('person_class')} ({det.get('person_class_source')})",
            "thresholds": f"score {det.get('score_threshold')}, NMS IoU {det.get('iou_threshold')}, "
                          f"max {det.get('max_detections')}",
            "preprocessing": ", ".join(f"{k}={v}" for k, v in (det.get("preprocess") or {}).items()),
            "source": f"{det.get('source_file')} (sha256 {str(det.get('sha256_source'))[:12]}…)",
        }
        drift = (det.get("verification") or {}).get("drift")
        if drift:
            detector[f"{det.get('precision')} vs fp32"] = (f"mean IoU {drift.get('mean_iou')}, worst {drift.get('min_iou')}, "
                                                          f"missing {drift.get('missing')}, extra {drift.get('extra')}")
        for name, chk in (det.get("trt_check") or {}).items():
            detector[f"TensorRT check ({name})"] = "ok" if chk.get("ok") else "; ".join(chk.get("errors", []))
    slim = raw.get("slim")
    slim_sec: dict[str, Any] = {}
    if isinstance(slim, dict):
        slim_sec = {
            "target": f"{slim.get('target')} (runs only there; other backends and precisions are refused)",
            "source manifest": f"sha256 {str(slim.get('source_manifest_sha256'))[:12]}…",
            "dropped": ", ".join(str(f) for f in (slim.get("dropped") or {}).values()) or "nothing",
        }
    out = {
        "manifest": summary,
        **({"slim folder": slim_sec} if slim_sec else {}),
        **({f"accuracy vs fp32 ({raw['accuracy'].get('precision', '?')})": _accuracy_rows(raw["accuracy"])}
           if isinstance(raw.get("accuracy"), dict) else {}),
        "graph I/O": io,
        "person detector": detector,
        "artifacts": arts,
        "op histogram (FP32 graph)": dict(sorted(ops.items(), key=lambda kv: -kv[1]))
        if all(isinstance(v, int) for v in ops.values()) else {},
        "this machine": _machine(m),
    }
    if problems:
        out["problems"] = problems
    return out


def _checked_sections(m: Manifest) -> dict[str, dict[str, Any]]:
    """:func:`_manifest_sections`, with an odd optional field (a string where a number belongs) reported as
    one ManifestError line instead of a traceback."""
    try:
        return _manifest_sections(m)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ManifestError(f"{m.path}: a manifest field has an unexpected type or value ({type(exc).__name__}: "
                            f"{str(exc)[:120]})", hint="re-export the folder") from None


def _num(v: Any, unit: str = "") -> str:
    """A figure with 3 significant digits (exponent form when tiny), or "–"."""
    if v is None:
        return "–"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.2e}{unit}"
    return f"{v:.3g}{unit}"


#: manifest["accuracy"] keys (written by hpsedge.calib.report.summary) → row label and unit
_ACCURACY_ROWS = {
    "inputs": ("inputs", ""),
    "persons": ("persons", ""),
    "pose_deg_mean": ("pose error, mean", "°"),
    "pose_deg_p95": ("pose error, p95", "°"),
    "pose_deg_worst_joint": ("pose error, worst joint (mean)", "°"),
    "worst_joint": ("worst joint", ""),
    "betas_abs_max": ("betas, max |Δ|", ""),
    "cam_abs_max": ("camera, max |Δ|", ""),
    "sigma_abs_max": ("σ, max |Δ|", ""),
    "sigma_rank_corr": ("σ score rank correlation", "corr"),
    "token_agreement": ("token agreement", "corr"),
    "mpjpe_mm": ("MPJPE Δ", " mm"),
    "vertex_error_mm": ("vertex error Δ", " mm"),
}


def _accuracy_rows(acc: dict[str, Any]) -> dict[str, str]:
    """manifest["accuracy"] (the short form of report.json) as labelled rows, one figure each."""
    rows: dict[str, str] = {"precision": f"{acc.get('precision', '?')} vs fp32"}
    for key, (label, unit) in _ACCURACY_ROWS.items():
        if key in acc:
            corr = unit == "corr" and isinstance(acc[key], int | float) and not isinstance(acc[key], bool)
            rows[label] = f"{acc[key]:.3f}" if corr else _num(acc[key], "" if unit == "corr" else unit)
    lat = acc.get("latency_ms")
    if isinstance(lat, dict):
        rows[f"latency, ONNX Runtime CPU, N={lat.get('batch')}"] = ", ".join(
            f"{k} {_num(v, ' ms')}" for k, v in lat.items() if k != "batch")
    th = acc.get("thresholds")
    if isinstance(th, dict):
        rows["thresholds"] = ", ".join(f"{k} {_num(v)}" for k, v in th.items())
    rows["verdict"] = "within thresholds" if acc.get("passed") else "OVER THRESHOLDS"
    known = {"precision", "latency_ms", "thresholds", "passed", "report", *_ACCURACY_ROWS}
    rows.update({k: _num(v) for k, v in acc.items() if k not in known})
    rows["report"] = str(acc.get("report", "report.json")) + " (report.md beside it)"
    return rows


def _machine(m: Manifest) -> dict[str, Any]:
    """Which backend `Predictor.load(..., backend="auto")` would take here, and why."""
    from hpsedge.runtime.predictor import _engine_probe
    from hpsedge.runtime.trt.compat import choose_backend

    available, gpu_cc, trt_version, gpu_name = _engine_probe()
    try:
        import onnxruntime

        ort_line = f"onnxruntime {onnxruntime.__version__}: {', '.join(onnxruntime.get_available_providers())}"
    except ImportError:
        ort_line = "onnxruntime not installed (pip install onnxruntime)"
    choice, reason = choose_backend(m, available, gpu_cc, trt_version, gpu_name=gpu_name)
    slim = m.raw.get("slim")
    if isinstance(slim, dict) and slim.get("backend") != choice:
        need = "TensorRT and a GPU" if slim.get("backend") == "trt" else "ONNX Runtime"
        reason = (f"nothing here: a slim folder for {slim.get('target')} needs {need}; this machine would take "
                  f"{'TensorRT' if choice == 'trt' else 'ONNX Runtime'} ({reason})")
    out = {
        "GPU": f"{gpu_name} (sm {gpu_cc})" if gpu_cc else "none visible to TensorRT",
        "TensorRT": trt_version or "not installed",
        "ONNX Runtime": ort_line,
        "runs with": (reason if reason.startswith("nothing here")
                      else f"{'TensorRT' if choice == 'trt' else 'ONNX Runtime'} — {reason}"),
    }
    if choice != "trt" and not (isinstance(slim, dict) and slim.get("backend") != choice):
        try:
            from hpsedge.runtime.backends.ort import first_provider

            provider = first_provider("auto")
            plan = BuildFolder(m).select("ort", provider, verify=False)  # the artifacts section verifies
            out["ONNX Runtime graph"] = f"{plan.file} on {provider} (batch {plan.batch.min}..{plan.batch.max})"
        except HpsedgeError:
            pass
    else:
        try:
            plan = BuildFolder(m).select("trt", verify=False)
            out["TensorRT engine"] = f"{plan.file} ({plan.precision}, batch {plan.batch.min}..{plan.batch.max})"
        except HpsedgeError:
            pass
    return out


def _bare_onnx(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        raise HpsedgeError(f"{path} is not a regular file")
    if path.stat().st_size == 0:
        raise HpsedgeError(f"{path} is empty (0 bytes): not an ONNX model")
    try:
        import onnx

        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # DecodeError on truncated/garbage protobuf
            raise HpsedgeError(f"{path} is not a readable ONNX model ({type(exc).__name__})",
                               hint="the file may be truncated; copy or export it again") from None
        if not proto.graph.node or not proto.graph.output:
            raise HpsedgeError(f"{path} holds no graph (no nodes or no outputs): not a usable ONNX model")
        from hpsedge.export.lint import check_trt_support, op_histogram

        def dims(vi: Any) -> str:
            return _fmt_shape([d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim])

        io = {f"input {i.name}": dims(i) for i in proto.graph.input}
        io.update({f"output {o.name}": dims(o) for o in proto.graph.output})
        lint = {f"TensorRT {r.trt_major}": "ok" if r.ok else "; ".join(r.errors) for r in
                (check_trt_support(proto, 10), check_trt_support(proto, 11))}
        return {"graph I/O": io, "op histogram": op_histogram(proto), "TensorRT static check": lint,
                "this machine": {"runs with": "ONNX Runtime (no manifest: use `hpsedge run` on an export folder)"}}
    except ImportError:
        pass
    import onnxruntime

    try:
        sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise HpsedgeError(f"ONNX Runtime cannot load {path}: {first}") from None
    io = {f"input {i.name}": f"{i.shape} {i.type}" for i in sess.get_inputs()}
    io.update({f"output {o.name}": f"{o.shape} {o.type}" for o in sess.get_outputs()})
    return {"graph I/O": io,
            "TensorRT static check": {"not run": "the op histogram and static check read the graph with the "
                                                 "`onnx` package: pip install 'hpsedge[export]' (build folders "
                                                 "carry the check's result in manifest.json / report.md)"}}


def inspect_path(path: str | Path) -> dict[str, dict[str, Any]]:
    """Sections of what ``path`` holds; a ``"problems"`` section (artifact name → why) is present when what
    it describes cannot be used (missing, refused or changed artifacts), and the CLI then exits non-zero."""
    p = Path(path)
    if not p.exists():
        raise HpsedgeError(f"{p} does not exist")
    if p.is_dir() or p.name == MANIFEST_NAME:
        return _checked_sections(load_manifest(p))
    if (p.parent / MANIFEST_NAME).exists():
        m = load_manifest(p.parent)
        if any(Path(a["file"]).name == p.name for a in m.artifacts.values()):
            return _checked_sections(m)
    if not p.is_file():
        raise HpsedgeError(f"{p} is not a regular file (a FIFO or device); refusing to read it")
    if p.suffix == ".onnx":
        return _bare_onnx(p)
    if p.suffix in (".engine", ".plan", ".trt"):
        return {"engine": {"file": f"{p.name} ({_size(p.stat().st_size)})",
                           "note": "a TensorRT plan without its manifest: its TensorRT version and GPU cannot be "
                                   "checked before loading; keep engines inside hpsedge build folders"}}
    raise HpsedgeError(f"{p.name}: not a build folder, manifest, .onnx or .engine file")
