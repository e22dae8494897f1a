"""Hostile and careless inputs, table-driven: every case is a clean one-line error (or a documented refusal),
runs no code from a file, and changes nothing outside the output path (the case folder is hashed before and
after). CLI cases run ``hpsedge.cli.main`` in-process; API cases call the library.

Each case gets a fresh folder ``root`` (inputs are made there) and an output path ``root/out``; a payload
that would run code writes ``root/MARKER``, which must never appear.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import shutil
import signal
import stat
import sys
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hpsedge.errors import CheckpointError, HpsedgeError, InputError, ManifestError, SMPLFileError

MARKER = "MARKER"


# ------------------------------------------------------------------------------------------- payloads
class TorchScriptPayload(torch.nn.Module):
    """A TorchScript module whose ``__setstate__`` (run by ``torch.jit.load``) creates a file:
    ``torch.from_file(path, shared=True, size)`` opens it with O_CREAT and extends it."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.n = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.path, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.path = state[0]
        self.training = state[1]
        self.n = torch.from_file(state[0], True, 16).numel()


def torchscript_payload(path: Path, marker: Path) -> Path:
    torch.jit.save(torch.jit.script(TorchScriptPayload(str(marker))), str(path))
    return path


class ReducePayload:
    """A pickle payload: unpickling it with plain pickle runs ``touch MARKER``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


def test_torchscript_payload_is_real(tmp_path: Path) -> None:
    """Control: the payload used below does run code when torch loads it the unsafe way."""
    marker = tmp_path / MARKER
    ts = torchscript_payload(tmp_path / "ts.pt", marker)
    torch.jit.load(str(ts))
    assert marker.exists()
    marker.unlink()
    with pytest.warns(UserWarning):
        torch.load(ts, weights_only=False)  # what the TokenHMR loader called before this fix
    assert marker.exists()


# ------------------------------------------------------------------------------------------- harness
@dataclass
class Ctx:
    root: Path
    cliff: Path  # tiny poco-cliff export folder (read-only: copy it with ctx.model())
    pare: Path

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    def model(self, name: str = "m") -> Path:
        dst = self.root / name
        shutil.copytree(self.cliff, dst)
        return dst

    def edit_manifest(self, folder: Path, fn: Callable[[dict], Any]) -> Path:
        m = json.loads((folder / "manifest.json").read_text())
        fn(m)
        (folder / "manifest.json").write_text(json.dumps(m))
        return folder

    def image(self, name: str = "img.png", h: int = 120, w: int = 160) -> Path:
        from PIL import Image

        arr = (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(self.root / name)
        return self.root / name

    def write(self, name: str, data: bytes | str) -> Path:
        p = self.root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            p.write_text(data)
        else:
            p.write_bytes(data)
        return p


@dataclass
class Case:
    id: str
    setup: Callable[[Ctx], Any]  # CLI: returns argv; API: returns a zero-argument callable
    expect: int | type[BaseException]  # CLI exit code, or the exception type the API raises
    match: str  # regex the message must contain

    @property
    def cli(self) -> bool:
        return isinstance(self.expect, int)


def _snapshot(root: Path, exclude: Path) -> dict[str, tuple]:
    """Every entry under ``root`` except ``exclude``: type, mode and (files) sha256; FIFOs are not opened."""
    snap: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = [n for n in dirnames if d / n != exclude]
        for name in [*filenames, *dirnames]:
            p = d / name
            if p == exclude:
                continue
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if stat.S_ISREG(st.st_mode):
                snap[rel] = ("file", st.st_mode, hashlib.sha256(p.read_bytes()).hexdigest())
            elif stat.S_ISLNK(st.st_mode):
                snap[rel] = ("link", os.readlink(p))
            else:
                snap[rel] = ("other", st.st_mode)
    return snap


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from hpsedge import cli

    old_argv, old_term = sys.argv, signal.getsignal(signal.SIGTERM)
    sys.argv = ["hpsedge", *map(str, args)]
    cli._state["debug"] = False
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old_argv
        signal.signal(signal.SIGTERM, old_term)
    out, err = capsys.readouterr()
    return code, out + err


# ------------------------------------------------------------------------------------------- case makers
def _torch_zip_with(extra: str) -> bytes:
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for n in src.namelist():
            dst.writestr(n, src.read(n))
        dst.writestr(extra, b"print('hi')")
    return out.getvalue()


def _tar_bytes() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        data = pickle.dumps({"a": 1})
        info = tarfile.TarInfo("pickle")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _reduce_ckpt(ctx: Ctx, name: str) -> Path:
    p = ctx.root / name
    torch.save({"state_dict": {"w": torch.zeros(1)}, "evil": ReducePayload(ctx.marker)}, p)
    return p


def _export(model: str, ckpt: Path, ctx: Ctx, *extra: str) -> list[str]:
    return ["export", "onnx", "--model", model, "--tiny", "--checkpoint", str(ckpt), "--out", str(ctx.out), *extra]


def _tokenizer_case(ctx: Ctx) -> list[str]:
    ckpt = ctx.root / "tokenhmr.ckpt"
    torch.save({"state_dict": {"backbone.w": torch.zeros(1)}}, ckpt)
    tok = torchscript_payload(ctx.root / "tokenizer.pth", ctx.marker)
    return _export("tokenhmr", ckpt, ctx, "--tokenizer", str(tok))


def _fifo(ctx: Ctx, name: str) -> Path:
    p = ctx.root / name
    os.mkfifo(p)
    return p


def _predict(ctx: Ctx, boxes: Any, **kw: Any) -> Callable[[], Any]:
    from hpsedge.runtime.predictor import Predictor

    pred = Predictor.load(ctx.cliff, backend="ort", device="cpu")
    for k, v in kw.items():
        setattr(pred, k, v)
    img = np.zeros((120, 160, 3), np.uint8)
    return lambda: pred.predict(img, boxes)


def _load(folder: Path) -> Callable[[], Any]:
    from hpsedge.runtime.predictor import Predictor

    return lambda: Predictor.load(folder, backend="ort", device="cpu")


def _swap_file_keep_stamp(ctx: Ctx) -> Callable[[], Any]:
    """Verify once (cached), then change one byte in place and put the mtime back: still caught (ctime)."""
    from hpsedge.runtime.predictor import Predictor

    folder = ctx.model()
    Predictor.load(folder, backend="ort", device="cpu")
    onnx = folder / "model.onnx"
    st = onnx.stat()
    with open(onnx, "r+b") as f:
        f.seek(st.st_size - 1)
        last = f.read(1)
        f.seek(st.st_size - 1)
        f.write(bytes([last[0] ^ 1]))
    os.utime(onnx, ns=(st.st_atime_ns, st.st_mtime_ns))
    return _load(folder)


def _boxes_file(ctx: Ctx, text: str) -> list[str]:
    img = ctx.image()
    boxes = ctx.write("boxes.json", text)
    return ["run", str(ctx.cliff), "--image", str(img), "--boxes", str(boxes), "--out", str(ctx.out), "--no-overlay"]


def _run(ctx: Ctx, *extra: str) -> list[str]:
    img = ctx.image()
    return ["run", str(ctx.cliff), "--image", str(img), "--out", str(ctx.out), "--no-overlay", *extra]


def _bomb(ctx: Ctx) -> Callable[[], Any]:
    from PIL import Image

    from hpsedge.runtime.io import read_image

    p = ctx.root / "bomb.png"
    Image.new("1", (12000, 10000)).save(p)  # 120 Mpx, a few kB on disk
    return lambda: read_image(p)


def _npz_with_objects(ctx: Ctx) -> Callable[[], Any]:
    from hpsedge.runtime.smpl import SMPL

    p = ctx.root / "smpl.npz"
    np.savez(p, v_template=np.array([ReducePayload(ctx.marker)], dtype=object))
    return lambda: SMPL.load(p)


def _smpl_pickle_payload(ctx: Ctx) -> Callable[[], Any]:
    from hpsedge.runtime.smpl import SMPL

    p = ctx.root / "SMPL_NEUTRAL.pkl"
    p.write_bytes(pickle.dumps({"v_template": ReducePayload(ctx.marker)}, protocol=2))
    return lambda: SMPL.load(p)


def _unusable_smpl(ctx: Ctx) -> list[str]:
    p = ctx.root / "smpl_bad.npz"
    np.savez(p, v_template=np.zeros((10, 3)), f=np.zeros((4, 3), np.int32))
    return ["smpl", "check", str(p)]


def _nan_weights(ctx: Ctx) -> list[str]:
    from hpsedge.models.checkpoints import build_model

    model, _, _ = build_model("poco-hmr", tiny=True)
    sd = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save(sd, ctx.root / "nan.pt")
    return _export("poco-hmr", ctx.root / "nan.pt", ctx)


def _lock_held(ctx: Ctx) -> list[str]:
    import fcntl

    lock = ctx.root / ".out.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held by this process until the case ends: the CLI must refuse
    ctx.lock_fd = fd  # type: ignore[attr-defined]
    return ["export", "onnx", "--model", "poco-hmr", "--tiny", "--out", str(ctx.out)]


def _user_folder_force(ctx: Ctx) -> list[str]:
    ctx.out.mkdir()
    (ctx.out / "thesis.tex").write_text("years of work")
    return ["export", "onnx", "--model", "poco-hmr", "--tiny", "--out", str(ctx.out), "--force"]


def _multi_image_one_bad(ctx: Ctx) -> list[str]:
    folder = ctx.root / "imgs"
    folder.mkdir()
    ctx.image("imgs/a.png")
    (folder / "b.png").write_bytes(b"not a png")
    return ["run", str(ctx.cliff), "--image", str(folder), "--out", str(ctx.out), "--no-overlay"]


def _bracket_path(ctx: Ctx) -> list[str]:
    return ["run", str(ctx.root / "[red]x[/red]"), "--image", str(ctx.image()), "--out", str(ctx.out)]


def _unexpected(ctx: Ctx, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import hpsedge.models.registry as registry

    def boom(*a: Any, **k: Any) -> None:
        raise RuntimeError("something nobody foresaw")

    monkeypatch.setattr(registry, "registered", boom)  # `hpsedge models` reads the registry
    return ["models"]


def _manifest_case(fn: Callable[[dict], Any]) -> Callable[[Ctx], Callable[[], Any]]:
    def setup(ctx: Ctx) -> Callable[[], Any]:
        return _load(ctx.edit_manifest(ctx.model(), fn))

    return setup


def _art(**kw: Any) -> Callable[[dict], Any]:
    return lambda m: m["artifacts"]["onnx"].update(kw)


def _symlink_out(ctx: Ctx) -> Callable[[], Any]:
    folder = ctx.model()
    (folder / "model.onnx").unlink()
    os.symlink(ctx.pare / "model.onnx", folder / "model.onnx")
    return _load(folder)


def _fifo_artifact_inspect(ctx: Ctx) -> list[str]:
    folder = ctx.model()
    (folder / "model.onnx").unlink()
    os.mkfifo(folder / "model.onnx")
    return ["inspect", str(folder)]


def _dev_zero_artifact(ctx: Ctx) -> list[str]:
    folder = ctx.model()
    (folder / "model.onnx").unlink()
    os.symlink("/dev/zero", folder / "model.onnx")
    return ["inspect", str(folder)]


def _missing_artifact_inspect(ctx: Ctx) -> list[str]:
    folder = ctx.model()
    (folder / "model.onnx").unlink()
    return ["inspect", str(folder)]


def _changed_artifact_inspect(ctx: Ctx) -> list[str]:
    folder = ctx.model()
    data = bytearray((folder / "model.onnx").read_bytes())
    data[-1] ^= 1
    (folder / "model.onnx").write_bytes(bytes(data))
    return ["inspect", str(folder)]


def _swapped_graph(ctx: Ctx) -> Callable[[], Any]:
    folder = ctx.model()
    shutil.copy(ctx.pare / "model.onnx", folder / "model.onnx")
    return _load(folder)


def _renamed_output(ctx: Ctx) -> Callable[[], Any]:
    from hpsedge.runtime.manifest import sha256_file

    folder = ctx.model()

    def fn(m: dict) -> None:
        m["outputs"][0]["name"] = "pose_renamed"
        m["artifacts"]["onnx"]["sha256"] = sha256_file(folder / "model.onnx")

    return _load(ctx.edit_manifest(folder, fn))


def _load_threads(folder: Path, threads: int) -> Any:
    from hpsedge.runtime.predictor import Predictor

    return Predictor.load(folder, backend="ort", device="cpu", threads=threads)


def _video(path: Path) -> Callable[[], Any]:
    from hpsedge.runtime.video import VideoReader

    return lambda: VideoReader(path)


def _read_ckpt(path: Path) -> Callable[[], Any]:
    from hpsedge.models.checkpoints import read_checkpoint

    return lambda: read_checkpoint(path)


def _run_image(ctx: Ctx, image: Path) -> list[str]:
    return ["run", str(ctx.cliff), "--image", str(image), "--out", str(ctx.out), "--no-overlay"]


def _changed_load(ctx: Ctx) -> Callable[[], Any]:
    folder = ctx.model()
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 1
    (folder / "model.onnx").write_bytes(bytes(data))
    return _load(folder)


def _eval_npz(ctx: Ctx, extra: dict[str, np.ndarray] | None = None, declared: tuple[str, tuple[int, ...]] | None = None
              ) -> Path:
    """A small evaluation .npz (SPIN layout, 3 rows), plus arrays, plus a member that only *declares* a shape."""
    rng = np.random.default_rng(0)
    arrays = {"imgname": np.array(["a/0.png", "a/1.png", "a/2.png"]), "center": rng.uniform(50, 90, (3, 2)),
              "scale": np.full(3, 0.5), "pose": np.zeros((3, 72)), "shape": np.zeros((3, 10)), **(extra or {})}
    path = ctx.root / "eval.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if declared is None or k != declared[0]})
    if declared is not None:
        head = io.BytesIO()
        np.lib.format.write_array_header_1_0(head, {"descr": "<f8", "fortran_order": False, "shape": declared[1]})
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr(declared[0] + ".npy", head.getvalue() + b"\0" * 64)
    return path


def _val_cli(ctx: Ctx, data: Path) -> list[str]:
    (ctx.root / "imgs").mkdir(exist_ok=True)
    return ["val", str(ctx.cliff), "--data", str(data), "--images", str(ctx.root / "imgs"), "--smpl",
            str(ctx.root / "SMPL_NEUTRAL.npz"), "--j-regressor", str(ctx.root / "J_regressor_h36m.npy"),
            "--out", str(ctx.out)]


def _val_eval_set(ctx: Ctx, **kw: Any) -> Callable[[], Any]:
    from hpsedge.eval.data import load_eval_set

    path = _eval_npz(ctx, **kw)
    return lambda: load_eval_set(path)


CASES: list[Case] = [
    # ---- code execution: model files -------------------------------------------------------------
    Case("poco-ckpt-torchscript", lambda c: _export("poco-cliff", torchscript_payload(c.root / "c.pt", c.marker), c),
         2, r"TorchScript archive.*refusing"),
    Case("tokenhmr-ckpt-torchscript",
         lambda c: _export("tokenhmr", torchscript_payload(c.root / "c.ckpt", c.marker), c), 2, r"TorchScript archive"),
    Case("tokenhmr-tokenizer-torchscript", _tokenizer_case, 2, r"tokenizer\.pth is a TorchScript archive"),
    Case("poco-ckpt-torchscript-api", lambda c: _read_ckpt(torchscript_payload(c.root / "c.pt", c.marker)),
         CheckpointError, "TorchScript"),
    Case("ckpt-zip-extra-entry", lambda c: _export("poco-cliff", c.write("c.pt", _torch_zip_with("archive/extra/x.py")), c),
         2, r"not a torch\.save checkpoint \(unexpected entry"),
    Case("ckpt-zip-code-dir", lambda c: _export("tokenhmr", c.write("c.ckpt", _torch_zip_with("archive/code/m.py")), c),
         2, "TorchScript archive"),
    Case("ckpt-tar-legacy", lambda c: _export("tokenhmr", c.write("c.ckpt", _tar_bytes()), c), 2,
         "neither a pickle nor a torch.save zip"),
    Case("ckpt-garbage", lambda c: _export("poco-cliff", c.write("c.pt", os.urandom(4096)), c), 2, "not a PyTorch checkpoint"),
    Case("ckpt-empty", lambda c: _export("poco-cliff", c.write("c.pt", b""), c), 2, r"empty \(0 bytes\)"),
    Case("ckpt-folder", lambda c: _export("poco-cliff", c.root, c), 2, "is a folder"),
    Case("ckpt-fifo", lambda c: _export("poco-cliff", _fifo(c, "c.pt"), c), 2, "not a regular file"),
    Case("ckpt-reduce-poco", lambda c: _export("poco-cliff", _reduce_ckpt(c, "c.pt"), c), 2,
         "pickled objects other than tensors"),
    Case("ckpt-reduce-tokenhmr", lambda c: _export("tokenhmr", _reduce_ckpt(c, "c.ckpt"), c), 2, "does not fit tokenhmr"),
    Case("ckpt-truncated-zip", lambda c: _export("poco-cliff", c.write("c.pt", b"PK\x03\x04" + b"\0" * 64), c), 2,
         "truncated or corrupt"),
    Case("tokenizer-missing", lambda c: _export("tokenhmr", _reduce_ckpt(c, "c.ckpt"), c, "--tokenizer", "nope.pth"), 2,
         "tokenizer not found"),
    Case("smpl-pkl-reduce", _smpl_pickle_payload, SMPLFileError, "forbidden global 'posix.system'"),
    Case("smpl-npz-object-array", _npz_with_objects, SMPLFileError, "pickle"),
    Case("smpl-check-unusable", _unusable_smpl, 2, "not usable by hpsedge"),
    # ---- build folders ---------------------------------------------------------------------------
    Case("manifest-dotdot", _manifest_case(_art(file="../m/model.onnx")), ManifestError, "outside the build folder"),
    Case("manifest-absolute", _manifest_case(_art(file="/etc/passwd")), ManifestError, "outside the build folder"),
    Case("manifest-backslash", _manifest_case(_art(file="..\\model.onnx")), ManifestError, "plain relative name"),
    Case("manifest-empty-name", _manifest_case(_art(file="")), ManifestError, "plain relative name"),
    Case("manifest-name-not-string", _manifest_case(_art(file=3)), ManifestError, "plain relative name"),
    Case("artifact-symlink-out", _symlink_out, ManifestError, "outside the build folder"),
    Case("artifact-fifo-inspect", _fifo_artifact_inspect, 2, "not a regular file"),
    Case("artifact-dev-zero-inspect", _dev_zero_artifact, 2, "outside the build folder"),
    Case("artifact-missing-inspect", _missing_artifact_inspect, 2, r"is not usable: artifact 'onnx'.*missing"),
    Case("artifact-changed-inspect", _changed_artifact_inspect, 2, "does not match the sha256"),
    Case("artifact-changed-load", _changed_load, ManifestError, "sha256"),
    Case("artifact-changed-after-cache", _swap_file_keep_stamp, ManifestError, "does not match the sha256"),
    Case("artifact-swapped-graph", _swapped_graph, ManifestError, "does not match"),
    Case("graph-io-vs-manifest", _renamed_output, ManifestError, "graph outputs"),
    Case("sha256-malformed", _manifest_case(_art(sha256="xyz")), ManifestError, "64 lowercase hex"),
    Case("bytes-string", _manifest_case(_art(bytes="123")), ManifestError, "'bytes' must be a non-negative integer"),
    Case("schema-older", _manifest_case(lambda m: m.update(schema_version=0)), ManifestError, "reads versions 1 to 2"),
    Case("schema-newer", _manifest_case(lambda m: m.update(schema_version=3)), ManifestError, "reads versions 1 to 2"),
    Case("schema-string", _manifest_case(lambda m: m.update(schema_version="1")), ManifestError, "schema version '1'"),
    Case("schema-bool", _manifest_case(lambda m: m.update(schema_version=True)), ManifestError, "schema version True"),
    Case("max-batch-string", _manifest_case(lambda m: m.update(max_batch="16")), ManifestError, "'max_batch' must be"),
    Case("max-batch-huge", _manifest_case(lambda m: m.update(max_batch=10**9)), ManifestError, "'max_batch' must be"),
    Case("input-size-strings", _manifest_case(lambda m: m["preprocessing"].update(input_size=["a", 3])), ManifestError,
         "input_size"),
    Case("mean-wrong", _manifest_case(lambda m: m["preprocessing"].update(mean="x")), ManifestError, "'mean' must be"),
    Case("std-zero", _manifest_case(lambda m: m["preprocessing"].update(std=[0, 1, 1])), ManifestError, "'std'"),
    Case("inputs-not-objects", _manifest_case(lambda m: m.update(inputs=["image"])), ManifestError, "must be an object"),
    Case("shape-negative", _manifest_case(lambda m: m["inputs"][0].update(shape=["N", -3, 224, 224])), ManifestError,
         "'shape' must be"),
    Case("artifacts-list", _manifest_case(lambda m: m.update(artifacts=[])), ManifestError, "'artifacts' must be"),
    Case("has-sigma-string", _manifest_case(lambda m: m["model"].update(has_sigma="yes")), ManifestError, "has_sigma"),
    Case("manifest-nan-literal", lambda c: _load(c.write("m/manifest.json", '{"schema": NaN}').parent), ManifestError,
         "not valid JSON"),
    Case("manifest-not-json", lambda c: _load(c.write("m/manifest.json", "{oops").parent), ManifestError, "not valid JSON"),
    Case("manifest-list", lambda c: _load(c.write("m/manifest.json", "[]").parent), ManifestError, "not a JSON object"),
    Case("manifest-deep", lambda c: _load(c.write("m/manifest.json", "[" * 100000).parent), ManifestError,
         "not valid JSON"),
    Case("inspect-verification-string",
         lambda c: ["inspect", str(c.edit_manifest(c.model(), lambda m: m["verification"].update(worst_rel_error="x")))],
         2, "unexpected type or value"),
    Case("inspect-empty-onnx", lambda c: ["inspect", str(c.write("e.onnx", b""))], 2, r"empty \(0 bytes\)"),
    Case("inspect-truncated-onnx", lambda c: ["inspect", str(c.write("t.onnx", (c.cliff / "model.onnx").read_bytes()[:999]))],
         2, "not a readable ONNX model"),
    Case("inspect-garbage-onnx", lambda c: ["inspect", str(c.write("g.onnx", b"\x0a\xff" * 50))], 2, "ONNX"),
    # ---- bounded work, boxes -----------------------------------------------------------------------
    Case("box-1e30", lambda c: _predict(c, [[0, 0, 1e30, 1e30]]), InputError, "larger than the 160×120"),
    Case("box-nan", lambda c: _predict(c, [[0, 0, float("nan"), 10]]), InputError, "NaN or inf"),
    Case("box-inf", lambda c: _predict(c, [[0, 0, float("inf"), 10]]), InputError, "NaN or inf"),
    Case("box-outside", lambda c: _predict(c, [[500, 500, 600, 600]]), InputError, "entirely outside"),
    Case("box-zero-area", lambda c: _predict(c, [[10, 10, 10, 50]]), InputError, "zero or negative area"),
    Case("box-shape", lambda c: _predict(c, [[1, 2, 3]]), InputError, r"shape \[K, 4\]"),
    Case("box-count-limit", lambda c: _predict(c, np.tile([[0.0, 0, 50, 50]], (31, 1)), max_boxes=30), InputError,
         "31 person boxes for one image; the limit is 30"),
    Case("box-count-limit-cli", lambda c: [*_boxes_file(c, json.dumps({"img.png": [[0, 0, 50, 50]] * 3})), "--max-boxes", "2"],
         2, "the limit is 2"),
    Case("boxes-json-huge-float", lambda c: _boxes_file(c, '{"img.png": [[0, 0, 1e999, 5]]}'), 2, "too large for a float"),
    Case("boxes-json-huge-int", lambda c: _boxes_file(c, '{"img.png": [[0, 0, ' + "9" * 5000 + ', 5]]}'), 2,
         "not valid JSON"),
    Case("boxes-json-nan", lambda c: _boxes_file(c, '{"img.png": [[0, 0, NaN, 5]]}'), 2, "not a number JSON allows"),
    Case("boxes-json-deep", lambda c: _boxes_file(c, "[" * 100000), 2, "nests too deeply|not valid JSON"),
    Case("boxes-json-1e300", lambda c: _boxes_file(c, '{"img.png": [[0, 0, 1e300, 5]]}'), 2, "larger than the"),
    Case("boxes-coco-annotations-not-list",
         lambda c: _boxes_file(c, json.dumps({"images": [{"id": 1, "file_name": "img.png"}], "annotations": 5})), 2,
         "must be lists"),
    Case("boxes-coco-annotation-not-object",
         lambda c: _boxes_file(c, json.dumps({"images": [{"id": 1, "file_name": "img.png"}], "annotations": [3]})), 2,
         "annotation 0 is not an object"),
    Case("boxes-file-folder", lambda c: _run(c, "--boxes", str(c.root)), 2, "is a folder"),
    Case("boxes-file-fifo", lambda c: _run(c, "--boxes", str(_fifo(c, "b.json"))), 2, "not a regular file"),
    # ---- options checked before work ----------------------------------------------------------------
    Case("threads-negative", lambda c: _run(c, "--threads", "-1"), 2, "--threads must be"),
    Case("threads-negative-api", lambda c: (lambda: _load_threads(c.cliff, -2)), InputError, "threads must be"),
    Case("max-boxes-zero", lambda c: _run(c, "--max-boxes", "0"), 2, "--max-boxes must be"),
    Case("max-batch-zero", lambda c: ["export", "onnx", "--model", "poco-hmr", "--tiny", "--max-batch", "0", "--out",
                                      str(c.out)], 2, "--max-batch must be between 1 and"),
    Case("max-batch-option-huge", lambda c: ["export", "build", "--model", "poco-hmr", "--tiny", "--max-batch", "100000",
                                      "--out", str(c.out)], 2, "--max-batch must be between 1 and"),
    Case("opt-batch-over", lambda c: ["export", "build", "--model", "poco-hmr", "--tiny", "--opt-batch", "40", "--out",
                                      str(c.out)], 2, "--opt-batch 40"),
    Case("opset-too-new", lambda c: ["export", "onnx", "--model", "poco-hmr", "--tiny", "--opset", "99", "--out",
                                     str(c.out)], 2, "opset 99 is newer"),
    Case("hardware-compat-bogus", lambda c: ["export", "build", "--model", "poco-hmr", "--tiny", "--hardware-compat",
                                             "volta", "--out", str(c.out)], 2, "--hardware-compat must be"),
    Case("opt-level-bogus", lambda c: ["export", "build", "--model", "poco-hmr", "--tiny", "--opt-level", "9", "--out",
                                       str(c.out)], 2, "--opt-level must be 0 to 5"),
    Case("precision-bogus", lambda c: ["export", "build", "--model", "poco-hmr", "--tiny", "--precision", "fp64",
                                       "--out", str(c.out)], 2, "unknown precision 'fp64'"),
    Case("model-bogus", lambda c: ["export", "build", "--model", "poco-smpl", "--tiny", "--out", str(c.out)], 2,
         "unknown model 'poco-smpl'"),
    Case("run-precision-missing", lambda c: _run(c, "--precision", "int8"), 2, "has no int8 ONNX graph"),
    # ---- images ------------------------------------------------------------------------------------
    Case("image-bomb", _bomb, InputError, "decompression bomb"),
    Case("image-folder-api", lambda c: (lambda: __import__("hpsedge.runtime.io").runtime.io.read_image(c.root)),
         InputError, "is a folder"),
    Case("image-truncated", lambda c: _run_image(c, c.write("t.png", c.image("full.png").read_bytes()[:200])), 2,
         "cannot read .*t.png as an image"),
    Case("image-text", lambda c: _run_image(c, c.write("x.jpg", "hello")), 2, "cannot read .*x.jpg as an image"),
    Case("image-fifo", lambda c: _run_image(c, _fifo(c, "f.png")), 2, "not a regular file"),
    Case("multi-image-one-bad", _multi_image_one_bad, 2, r"1 of 2 image\(s\) skipped: b\.png"),
    Case("video-playlist", lambda c: _video(c.write("v.mp4", "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n"
                                                 f"file://{c.root / 'secret.txt'}\n#EXT-X-ENDLIST\n")),
         InputError, "video"),
    Case("video-folder", lambda c: _video(c.root), InputError, "not a regular file"),
    Case("video-garbage-cli", lambda c: ["run", str(c.cliff), "--video", str(c.write("g.mp4", os.urandom(2000))),
                                         "--out", str(c.out)], 2, "g.mp4"),
    # ---- outputs -----------------------------------------------------------------------------------
    Case("out-exists", lambda c: (c.out.mkdir(), ["export", "onnx", "--model", "poco-hmr", "--tiny", "--out",
                                                  str(c.out)])[1], 2, "already exists"),
    Case("force-over-user-folder", _user_folder_force, 2, "not an hpsedge build folder"),
    Case("force-over-file", lambda c: (c.out.write_text("x"), ["export", "onnx", "--model", "poco-hmr", "--tiny",
                                                              "--out", str(c.out), "--force"])[1], 2,
         "is not a folder"),
    Case("out-parent-is-file", lambda c: ["export", "onnx", "--model", "poco-hmr", "--tiny", "--out",
                                          str(c.write("f", "x") / "sub")], 2, "cannot create"),
    Case("lock-held", _lock_held, 2, "another hpsedge build is writing to"),
    Case("nan-weights", _nan_weights, 2, "outputs NaN or Inf"),
    # ---- evaluation files (hpsedge val, #24) ----------------------------------------------------------
    Case("val-has-smpl-short", lambda c: _val_cli(c, _eval_npz(c, extra={"has_smpl": np.ones(1)})), 2,
         re.escape("'has_smpl' has shape [1]; expected [3] or [3, 1]")),
    Case("val-needed-array-declares-8tb", lambda c: _val_eval_set(c, declared=("pose", (1 << 40, 72))), InputError,
         re.escape("'pose' has shape [1099511627776, 72]")),
    Case("val-imgname-declares-too-many-rows",
         lambda c: _val_cli(c, _eval_npz(c, declared=("imgname", (10**9,)))), 2, "rows; at most"),
    # ---- the error printer -------------------------------------------------------------------------
    Case("bracket-path", _bracket_path, 2, re.escape("[red]x[/red]")),
]


# ------------------------------------------------------------------------------------------- issue 24
# serving, export triton, interrupted builds, detector metadata, the manifest and its hash cache
def _synthetic_detector(ctx: Ctx, **kw: Any) -> Path:
    sys.path.insert(0, str(Path(__file__).parent))
    from detector_synth import make_detector

    return make_detector(ctx.root / "det.onnx", "yolo", **kw)


def _constant_detector(ctx: Ctx, value: float) -> Path:
    """A graph in the Ultralytics layout ([1, 4+3, 8400], names 0: person) whose output is ``value`` everywhere."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out = np.full((1, 7, 8400), value, np.float32)
    node = helper.make_node("Constant", [], ["output0"], value=numpy_helper.from_array(out, "c"))
    graph = helper.make_graph([node], "constant_detector",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 320, 320])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 7, 8400])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = model.metadata_props.add()
    meta.key, meta.value = "names", repr({0: "person", 1: "bicycle", 2: "car"})
    path = ctx.root / "det.onnx"
    onnx.save(model, str(path))
    return path


def _add_detector(ctx: Ctx, det: Path) -> Callable[[], Any]:
    from hpsedge.export.detector import add_detector

    def action() -> Any:
        ctx.out.mkdir()
        return add_detector(ctx.out, {"artifacts": {}}, det, "fp32")

    return action


def _build_with_detector(ctx: Ctx, det: Path) -> list[str]:
    return ["export", "build", "--model", "poco-hmr", "--tiny", "--detector", str(det), "--out", str(ctx.out)]


def _serve_port_busy(ctx: Ctx) -> list[str]:
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    ctx.busy = busy  # type: ignore[attr-defined]  # held until the case ends
    return ["serve", str(ctx.cliff), "--host", "127.0.0.1", "--http-port", str(busy.getsockname()[1])]


def _gate(header: Any) -> Callable[[], Any]:
    from hpsedge.serve.front import declared_bytes, limits_for

    limits = limits_for(8192, 64, 16, 3 * 224 * 224 * 4)
    return lambda: declared_bytes(header, limits.max_tensor_bytes)


def _gate_input(shape: Any, dtype: str = "UINT8", **extra: Any) -> dict:
    return {"inputs": [{"name": "image", "shape": shape, "datatype": dtype, **extra}]}


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


def _triton(ctx: Ctx, folder: Path, *extra: str, out: Path | None = None) -> list[str]:
    return ["export", "triton", str(folder), "--out", str(out or ctx.out), "--kind", "cpu", *extra]


def _triton_tampered(ctx: Ctx) -> list[str]:
    folder = ctx.model()
    _flip_middle_byte(folder / "model.onnx")
    return _triton(ctx, folder)


def _triton_swapped(ctx: Ctx) -> list[str]:
    folder = ctx.model()
    shutil.copy(ctx.pare / "model.onnx", folder / "model.onnx")
    return _triton(ctx, folder)


def _triton_data_file_symlink(ctx: Ctx) -> list[str]:
    """External weights listed in the manifest, the file a symlink to a secret beside the folder (the secret
    was copied into the repository, its sha256 never checked)."""
    from hpsedge.runtime.files import sha256_file

    folder = ctx.model()
    secret = ctx.write("secret.txt", "password=hunter2")
    os.symlink(secret, folder / "model.onnx.data")
    return _triton(ctx, ctx.edit_manifest(folder, _art(data_file="model.onnx.data", data_sha256=sha256_file(secret),
                                                        data_bytes=secret.stat().st_size)))


def _triton_force_over_user_folder(ctx: Ctx) -> list[str]:
    repo = ctx.root / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("# my notes on this deployment\n")
    return _triton(ctx, ctx.cliff, "--force", out=repo)


def _triton_engine_missing(ctx: Ctx) -> list[str]:
    """The manifest lists an engine whose file is missing: the ONNX model was already copied when the error
    came (a half-written repository was left)."""
    folder = ctx.model()
    ctx.edit_manifest(folder, lambda m: m["artifacts"].update(engine={"file": "model.engine", "bytes": 10}))
    return _triton(ctx, folder, "--network", "onnx")


CASES += [
    Case("triton-tampered-graph", _triton_tampered, 2, "does not match the sha256"),
    Case("triton-swapped-graph", _triton_swapped, 2, "does not match"),
    Case("triton-data-file-symlink-out", _triton_data_file_symlink, 2, "outside the build folder"),
    Case("triton-force-over-user-folder", _triton_force_over_user_folder, 2,
         "not a Triton repository written by hpsedge"),
    Case("triton-engine-missing", _triton_engine_missing, 2, "missing"),
    Case("serve-port-busy", _serve_port_busy, 2, r"HTTP port \d+ on 127\.0\.0\.1 is already in use"),
    Case("serve-gate-declared-30GB", lambda c: _gate(_gate_input([100000, 100000, 3])), Exception,
         "this server's limit"),
    Case("serve-gate-huge-rank", lambda c: _gate(_gate_input([2] * 64)), Exception, "at most 8 integers"),
    Case("serve-gate-negative-dim", lambda c: _gate(_gate_input([-5, 3])), Exception, "integers ≥ 0"),
    Case("serve-gate-bool-dim", lambda c: _gate(_gate_input([True, 3])), Exception, "integers ≥ 0"),
    Case("serve-gate-float-dim", lambda c: _gate(_gate_input([1e9, 3])), Exception, "integers ≥ 0"),
    Case("serve-gate-bytes", lambda c: _gate(_gate_input([1], "BYTES")), Exception, "is not taken"),
    Case("serve-gate-shared-memory", lambda c: _gate(_gate_input([1], parameters={"shared_memory_region": "r"})),
         Exception, "shared-memory"),
    Case("serve-gate-many-inputs", lambda c: _gate({"inputs": [{"name": "x", "shape": [1], "datatype": "UINT8"}] * 17}),
         Exception, "at most 16"),
    Case("serve-gate-not-object", lambda c: _gate([1, 2]), Exception, "must be a JSON object"),
    Case("detector-names-minus-one-person",
         lambda c: _add_detector(c, _synthetic_detector(c, names={-1: "person", 0: "bicycle", 2: "car"})),
         InputError, r"class indices 0\.\."),
    Case("detector-names-minus-one-person-cli",
         lambda c: _build_with_detector(c, _synthetic_detector(c, names={-1: "person", 0: "bicycle", 2: "car"})),
         2, r"class indices 0\.\."),
    Case("detector-person-class-negative-manifest",
         lambda c: (lambda: __import__("hpsedge.runtime.detect").runtime.detect.DetectorConfig(
             layout="yolo", input_name="images", input_size=(320, 320), person_class=-1).check()),
         InputError, r"person class must lie in 0\.\."),
    Case("detector-outputs-all-nan", lambda c: _add_detector(c, _constant_detector(c, float("nan"))), InputError,
         "holds 58800 NaN/Inf"),
    Case("detector-outputs-1e30", lambda c: _add_detector(c, _constant_detector(c, 1e30)), InputError,
         "reaches 1e\\+30"),
    Case("detector-outputs-nan-cli", lambda c: _build_with_detector(c, _constant_detector(c, float("nan"))), 2,
         "NaN/Inf value"),
    Case("manifest-serves-not-list", _manifest_case(_art(serves=5)), ManifestError, "'serves' must be a list"),
    Case("manifest-serves-not-strings", _manifest_case(_art(serves=[None])), ManifestError, "'serves' must be a list"),
]


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def models(tiny_export) -> tuple[Path, Path]:
    """The session's shared tiny poco-cliff and poco-pare exports (read-only; cases copy them to edit)."""
    return tiny_export("poco-cliff"), tiny_export("poco-pare")


@pytest.fixture(autouse=True)
def _no_user_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the persistent hash cache out of the user's home during tests (the in-process one stays)."""
    monkeypatch.setenv("HPSEDGE_HASH_CACHE", "off")


def test_catalogue_size() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, models: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = Ctx(root=tmp_path / "case", cliff=models[0], pare=models[1])
    ctx.root.mkdir()
    monkeypatch.chdir(ctx.root)
    action = case.setup(ctx)
    before = _snapshot(ctx.root, ctx.out)
    try:
        if case.cli:
            code, text = run_cli(action, capsys)
            assert code == case.expect, text
            assert re.search(case.match, text), text
            assert "Traceback" not in text
            errors = [line for line in text.splitlines() if line.startswith("error:")]
            assert len(errors) == 1, text
        else:
            with pytest.raises(case.expect, match=case.match) as info:
                action()
            if isinstance(info.value, HpsedgeError):
                assert "\n" not in info.value.message
    finally:
        if hasattr(ctx, "lock_fd"):
            os.close(ctx.lock_fd)
        if hasattr(ctx, "busy"):
            ctx.busy.close()
    assert not ctx.marker.exists(), "a payload ran"
    after = _snapshot(ctx.root, ctx.out)
    assert after == before, "something outside the output was created or changed"


# ------------------------------------------------------------------------------------------- beyond the table
def test_unexpected_exception_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    ctx = Ctx(root=tmp_path, cliff=tmp_path, pare=tmp_path)
    code, text = run_cli(_unexpected(ctx, monkeypatch), capsys)
    assert code == 1
    assert "error: unexpected RuntimeError: something nobody foresaw" in text
    assert "run with --debug for the traceback" in text and "Traceback" not in text
    with pytest.raises(RuntimeError):
        run_cli(["--debug", "models"], capsys)


def test_error_printer_keeps_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    from hpsedge.cli import _print_error

    _print_error("needs onnx", "pip install 'hpsedge[export]'")
    err = capsys.readouterr().err
    assert "error: needs onnx" in err and "hint: pip install 'hpsedge[export]'" in err


def test_force_replaces_build_and_empty_folders(models: tuple[Path, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    code, text = run_cli(["export", "onnx", "--model", "poco-hmr", "--tiny", "--out", str(out), "--force"], capsys)
    assert code == 0, text
    code, text = run_cli(["export", "onnx", "--model", "poco-hmr", "--tiny", "--out", str(out), "--force"], capsys)
    assert code == 0, text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no lock, temp or old folder left
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((out / "model.onnx").stat().st_mode) == 0o666 & ~mask


def test_stale_temp_folders_are_removed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / ".out.tmp-abc123"
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"\0" * 1000)
    other = tmp_path / ".other.tmp-abc123"  # another output's: left alone
    other.mkdir()
    code, text = run_cli(["export", "onnx", "--model", "poco-hmr", "--tiny", "--out", str(tmp_path / "out")], capsys)
    assert code == 0, text
    assert not stale.exists() and other.exists()


def test_folder_appearing_during_build_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hpsedge.export import onnx as export_mod

    out = tmp_path / "out"
    real = export_mod.write_manifest

    def sneaky(folder: Path, manifest: dict) -> Path:
        out.mkdir()
        (out / "precious.txt").write_text("mine")
        return real(folder, manifest)

    monkeypatch.setattr(export_mod, "write_manifest", sneaky)
    with pytest.raises(HpsedgeError, match="appeared while the build ran"):
        export_mod.export_onnx("poco-hmr", out, tiny=True)
    assert (out / "precious.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_sixteen_bit_images_are_scaled(tmp_path: Path) -> None:
    from PIL import Image

    from hpsedge.runtime.io import read_image

    arr = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    rgb = read_image(tmp_path / "g16.png")
    assert rgb.dtype == np.uint8 and rgb[0, :, 0].tolist() == [0, 1, 128, 255]


def test_json_written_is_strict() -> None:
    from hpsedge.runtime.manifest import dumps_strict

    text = dumps_strict({"a": float("nan"), "b": [np.float32("inf"), 1.5], "c": np.int64(3)})
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "c": 3}
    assert "NaN" not in text and "Infinity" not in text


def test_many_boxes_run_in_chunks(models: tuple[Path, Path]) -> None:
    """More boxes than max_batch: the backend is called in chunks no larger than max_batch."""
    from hpsedge.runtime.predictor import Predictor

    pred = Predictor.load(models[0], backend="ort", device="cpu")
    sizes: list[int] = []
    real = pred.backend.run
    pred.backend.run = lambda feeds: (sizes.append(len(feeds["image"])), real(feeds))[1]  # type: ignore[method-assign]
    boxes = np.tile([[10.0, 10, 90, 110]], (40, 1))
    res = pred.predict(np.zeros((120, 160, 3), np.uint8), boxes)
    assert len(res) == 40 and max(sizes) <= pred.manifest.max_batch and sum(sizes) == 40


def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path) -> None:
    """SIGTERM during a build: exit 130, no output, no temp folder, no lock left behind."""
    import subprocess
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "hpsedge", "export", "onnx", "--model", "poco-hmr", "--tiny", "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not any(p.name.startswith(".out.tmp-") for p in tmp_path.iterdir()):
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the export finished before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode in (1, 130), err  # click turns the KeyboardInterrupt into "Aborted!" (1)
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------- issue 24, beyond the table
def test_manifest_serves_null_loads(models: tuple[Path, Path], tmp_path: Path) -> None:
    """``serves: null`` means "made for no runner in particular": the folder loads (it crashed the loader)."""
    from hpsedge.runtime.predictor import Predictor

    ctx = Ctx(root=tmp_path, cliff=models[0], pare=models[1])
    folder = ctx.edit_manifest(ctx.model(), _art(serves=None))
    pred = Predictor.load(folder, backend="ort", device="cpu")
    assert pred.predict(np.zeros((120, 160, 3), np.uint8), [[10, 10, 100, 110]])


def _cache_env(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    import hpsedge.runtime.manifest as mf

    monkeypatch.setenv("HPSEDGE_HASH_CACHE", str(cache))
    monkeypatch.setattr(mf, "_VERIFIED", {})  # only the persistent cache, as in a fresh process


def test_hash_cache_never_writes_through_a_planted_symlink(models: tuple[Path, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache's temporary file had a predictable name (``.verified.json.<pid>.tmp``) and was opened
    following symlinks: a symlink planted there made a load overwrite the file it pointed to."""
    from hpsedge.runtime.predictor import Predictor

    ctx = Ctx(root=tmp_path, cliff=models[0], pare=models[1])
    folder = ctx.model()
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir(mode=0o700)
    cache = cache_dir / "verified.json"
    victim = ctx.write("victim.txt", "precious")
    os.symlink(victim, cache_dir / f".verified.json.{os.getpid()}.tmp")
    _cache_env(monkeypatch, cache)
    Predictor.load(folder, backend="ort", device="cpu")
    assert victim.read_text() == "precious"
    assert cache.is_file() and not cache.is_symlink()
    assert str(os.path.realpath(folder / "model.onnx")) in json.loads(cache.read_text())
    assert not stat.S_IMODE(cache.stat().st_mode) & 0o022  # nobody else may write it


@pytest.mark.parametrize("how", ["file-writable-by-others", "folder-writable-by-others", "file-is-a-symlink"])
def test_hash_cache_others_can_write_is_not_trusted(how: str, models: tuple[Path, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache entry forged for a tampered graph (its inode, size, mtime, ctime and the manifest's sha256) in
    a cache file that others can write (or reach through a symlink) must not pass it as verified."""
    from hpsedge.runtime.predictor import Predictor

    ctx = Ctx(root=tmp_path, cliff=models[0], pare=models[1])
    folder = ctx.model()
    onnx = folder / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 1
    onnx.write_bytes(bytes(data))
    st = os.stat(onnx)
    want = json.loads((folder / "manifest.json").read_text())["artifacts"]["onnx"]["sha256"]
    forged = json.dumps({os.path.realpath(onnx): [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                                                  st.st_ctime_ns, want]})
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    os.chmod(cache_dir, 0o777 if how == "folder-writable-by-others" else 0o700)
    cache = cache_dir / "verified.json"
    if how == "file-is-a-symlink":
        elsewhere = ctx.write("elsewhere.json", forged)
        os.chmod(elsewhere, 0o600)
        os.symlink(elsewhere, cache)
    else:
        cache.write_text(forged)
        os.chmod(cache, 0o666 if how == "file-writable-by-others" else 0o600)
    _cache_env(monkeypatch, cache)
    with pytest.raises(ManifestError, match="does not match the sha256"):
        Predictor.load(folder, backend="ort", device="cpu")


def test_graph_swapped_between_verify_and_load_is_refused(models: tuple[Path, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The sha256 was checked on the path, then ONNX Runtime opened the path again: a graph renamed into
    place in between ran under the manifest's name."""
    import hpsedge.runtime.predictor as predictor_mod

    ctx = Ctx(root=tmp_path, cliff=models[0], pare=models[1])
    folder = ctx.model()
    onnx = folder / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 1  # a weight changed: still a valid graph with the same inputs and outputs
    evil = ctx.write("evil.onnx", bytes(data))
    real_make = predictor_mod._make_ort

    def swap_then_load(*args: Any, **kw: Any) -> Any:
        os.replace(evil, onnx)  # after verification, before ONNX Runtime opens it
        return real_make(*args, **kw)

    monkeypatch.setattr(predictor_mod, "_make_ort", swap_then_load)
    with pytest.raises(ManifestError, match="changed while it was being loaded"):
        predictor_mod.Predictor.load(folder, backend="ort", device="cpu")


KILL_BETWEEN_RENAMES = r"""
import os, signal, sys
from pathlib import Path
import hpsedge.export.outdir as od

out = Path(sys.argv[1])
real_replace = os.replace

def replace(src, dst):
    real_replace(src, dst)
    if Path(src) == out:  # the old folder was moved aside: die before the new one is renamed in
        os.kill(os.getpid(), signal.SIGKILL)

os.replace = replace
with od.atomic_folder(out, force=True) as tmp:
    (tmp / "manifest.json").write_text('{"schema": "hpsedge.manifest", "new": true}')
"""


def test_build_killed_between_its_two_renames_is_recovered(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``export build --force`` killed after moving the old build aside and before renaming the new one in:
    the next build restored nothing and deleted ``.out.old-PID`` as stale (the user's build was lost)."""
    import subprocess

    from hpsedge.runtime.manifest import SCHEMA

    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"schema": SCHEMA, "mine": "the old build"}))
    (out / "model.onnx").write_bytes(b"weights of the old build")
    before = _snapshot(out, tmp_path / "nothing")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    res = subprocess.run([sys.executable, "-c", KILL_BETWEEN_RENAMES, str(out)], env=env, capture_output=True,
                         timeout=120)
    assert res.returncode == -signal.SIGKILL, res.stderr.decode()[-2000:]
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.old-")]
    # the next build (without --force) finds the old build back in place, refuses to replace it, leaves no debris
    code, text = run_cli(["export", "onnx", "--model", "poco-hmr", "--tiny", "--out", str(out)], capsys)
    assert code == 2 and "already exists" in text and "Traceback" not in text, text
    assert _snapshot(out, tmp_path / "nothing") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_export_triton_error_leaves_no_repository(models: tuple[Path, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """An error after the first model was copied left a half-written repository behind."""
    ctx = Ctx(root=tmp_path, cliff=models[0], pare=models[1])
    code, text = run_cli(_triton_engine_missing(ctx), capsys)
    assert code == 2 and "missing" in text, text
    assert not ctx.out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp folder or lock left


def test_export_triton_force_replaces_only_an_unchanged_hpsedge_repository(
    models: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = Ctx(root=tmp_path, cliff=models[0], pare=models[1])
    code, text = run_cli(_triton(ctx, ctx.cliff), capsys)
    assert code == 0, text
    assert (ctx.out / ".hpsedge-triton.json").is_file()
    code, text = run_cli(_triton(ctx, ctx.cliff), capsys)  # no --force: refused
    assert code == 2 and "not empty" in text, text
    code, text = run_cli(_triton(ctx, ctx.cliff, "--force"), capsys)  # ours, unchanged: replaced
    assert code == 0, text
    readme = ctx.out / "README.md"
    readme.write_text(readme.read_text() + "\nmy notes\n")  # the user edits it: no longer only ours
    code, text = run_cli(_triton(ctx, ctx.cliff, "--force"), capsys)
    assert code == 2 and "not a Triton repository written by hpsedge" in text, text
    assert readme.read_text().endswith("my notes\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
