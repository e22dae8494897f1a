"""``hpsedge inspect``: what a build folder (or a bare graph/engine) holds and whether this machine runs it.

Works on a runtime-only machine: a folder is described from its manifest (numpy-free); onnx or
onnxruntime are used, when present, only to read a bare ``.onnx`` that has no manifest beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpsedge.runtime.errors import HpsedgeError
from hpsedge.runtime.manifest import MANIFEST_NAME, Manifest, load_manifest, sha256_file


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
    model = raw["model"]
    ck = raw.get("checkpoint", {})
    summary = {
        "model": f"{model['name']} ({model.get('variant', 'full')}, family {model['family']})",
        "parameters": f"{model['params'] / 1e6:.2f} M" if "params" in model else "?",
        "checkpoint": "random weights" if ck.get("random_init") else f"{ck.get('file')} (sha256 {str(ck.get('sha256'))[:12]}…)",
        "precision": raw.get("precision", "fp32"),
        "opset": raw.get("opset"),
        "max batch": raw.get("max_batch"),
        "schema": f"{raw['schema']} v{raw['schema_version']}",
        "created": raw.get("created"),
        "versions": ", ".join(f"{k} {v}" for k, v in raw.get("versions", {}).items()),
    }
    ver = raw.get("verification")
    if ver:
        summary["verification"] = f"worst relative error {ver['worst_rel_error']:.2e} vs PyTorch (N={ver['batches']})"
    if "accuracy" in raw:
        summary["accuracy vs fp32"] = raw["accuracy"]
    for name, chk in raw.get("trt_check", {}).items():
        summary[f"TensorRT check ({name})"] = "ok" if chk["ok"] else "; ".join(chk["errors"])
    io = {f"input {t.name}": f"{_fmt_shape(t.shape)} {t.dtype}" for t in m.inputs}
    io.update({f"output {t.name}": f"{_fmt_shape(t.shape)} {t.dtype}" for t in m.outputs})
    pre = raw.get("preprocessing", {})
    io["preprocessing"] = ", ".join(f"{k}={v}" for k, v in pre.items())
    arts: dict[str, Any] = {}
    for key, art in m.artifacts.items():
        path = (m.folder or Path(".")) / art["file"]
        if not path.exists():
            arts[key] = f"{art['file']}: MISSING"
            continue
        status = ""
        if "sha256" in art:
            status = "sha256 ok" if sha256_file(path) == art["sha256"] else "sha256 MISMATCH (file changed)"
        extra = ""
        if key == "engine":
            extra = (f", TensorRT {art.get('trt_version')}, {art.get('gpu_name')} (sm {art.get('compute_capability')}), "
                     f"profile {art.get('profile')}")
        arts[key] = f"{art['file']} ({_size(path.stat().st_size)}{', ' + status if status else ''}{extra})"
    ops = raw.get("graph", {}).get("ops", {})
    return {
        "manifest": summary,
        "graph I/O": io,
        "artifacts": arts,
        "op histogram (FP32 graph)": dict(sorted(ops.items(), key=lambda kv: -kv[1])),
        "this machine": _machine(m),
    }


def _machine(m: Manifest) -> dict[str, Any]:
    """Which backend `Predictor.load(..., backend="auto")` would take here, and why."""
    from hpsedge.runtime.compat import choose_backend
    from hpsedge.runtime.predictor import _engine_probe

    available, gpu_cc, trt_version, gpu_name = _engine_probe()
    try:
        import onnxruntime

        ort_line = f"onnxruntime {onnxruntime.__version__}: {', '.join(onnxruntime.get_available_providers())}"
    except ImportError:
        ort_line = "onnxruntime not installed (pip install onnxruntime)"
    choice, reason = choose_backend(m, available, gpu_cc, trt_version, gpu_name=gpu_name)
    return {
        "GPU": f"{gpu_name} (sm {gpu_cc})" if gpu_cc else "none visible to TensorRT",
        "TensorRT": trt_version or "not installed",
        "ONNX Runtime": ort_line,
        "runs with": f"{'TensorRT' if choice == 'trt' else 'ONNX Runtime'} — {reason}",
    }


def _bare_onnx(path: Path) -> dict[str, dict[str, Any]]:
    try:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
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

    sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    io = {f"input {i.name}": f"{i.shape} {i.type}" for i in sess.get_inputs()}
    io.update({f"output {o.name}": f"{o.shape} {o.type}" for o in sess.get_outputs()})
    return {"graph I/O": io,
            "TensorRT static check": {"not run": "the op histogram and static check read the graph with the "
                                                 "`onnx` package: pip install 'hpsedge[export]' (build folders "
                                                 "carry the check's result in manifest.json / report.md)"}}


def inspect_path(path: str | Path) -> dict[str, dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        raise HpsedgeError(f"{p} does not exist")
    if p.is_dir() or p.name == MANIFEST_NAME:
        return _manifest_sections(load_manifest(p))
    if (p.parent / MANIFEST_NAME).exists():
        m = load_manifest(p.parent)
        if any(Path(a["file"]).name == p.name for a in m.artifacts.values()):
            return _manifest_sections(m)
    if p.suffix == ".onnx":
        return _bare_onnx(p)
    if p.suffix in (".engine", ".plan", ".trt"):
        return {"engine": {"file": f"{p.name} ({_size(p.stat().st_size)})",
                           "note": "a TensorRT plan without its manifest: its TensorRT version and GPU cannot be "
                                   "checked before loading; keep engines inside hpsedge build folders"}}
    raise HpsedgeError(f"{p.name}: not a build folder, manifest, .onnx or .engine file")
