"""Calibration sets: bit-exact tensors, box sources, selection by σ, bad inputs, the `calib make` command."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from hpsedge.calib.sets import (
    load_calibration_set,
    make_calibration_set,
    select_random,
    select_uncertainty,
    sidecar_path,
)
from hpsedge.cli.calib import calib_app
from hpsedge.errors import HpsedgeError, InputError
from hpsedge.export.onnx import export_onnx
from hpsedge.runtime.io import read_image
from hpsedge.runtime.manifest import load_manifest
from hpsedge.runtime.preprocess import preprocess

PHOTO = Path(__file__).resolve().parent.parent / "examples" / "astronaut.jpg"


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("calib-exports")
    return {n: export_onnx(n, root / n, tiny=True).out_dir for n in ("poco-cliff", "poco-pare")}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example photo plus two synthetic images of other sizes, and a simple boxes file beside them."""
    root = tmp_path_factory.mktemp("photos")
    folder = root / "images"
    folder.mkdir()
    shutil.copy(PHOTO, folder / "astronaut.jpg")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((300, 200, 3)) * 255).astype(np.uint8)).save(folder / "noise.png")
    Image.fromarray(np.full((90, 160, 3), (30, 120, 200), np.uint8)).save(folder / "flat.png")
    boxes = {
        "astronaut.jpg": [[140.0, 20.5, 380.25, 500.0], [-30.0, 300.0, 120.0, 530.0], [10, 10, 60, 40]],
        "noise.png": [[20.0, 30.0, 180.0, 290.0]],
        "flat.png": [[5.5, 5.5, 150.0, 80.0], [100, 0, 170, 95]],
    }
    (root / "boxes.json").write_text(json.dumps(boxes))
    return folder


def _samples(meta: dict, folder: Path) -> list[tuple[Path, np.ndarray]]:
    files = [folder / f["name"] for f in meta["files"]]
    return [(files[s["file"]], np.array([s["box"]], dtype=np.float64)) for s in meta["samples"]]


# ---------------------------------------------------------------------------------------------------
# tensors
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["poco-cliff", "poco-pare"])
def test_tensors_equal_runtime_preprocessing(exports: dict[str, Path], photos: Path, tmp_path: Path, name: str) -> None:
    out = tmp_path / "calib.npz"
    res = make_calibration_set(exports[name], out, images=photos, boxes=photos.parent / "boxes.json", max_samples=512)
    assert res.count == 6 and res.meta["selection"]["candidates"] == 6
    data = np.load(out)
    spec = load_manifest(exports[name]).preprocessing
    assert sorted(data.files) == (["bbox_info", "image"] if name == "poco-cliff" else ["image"])
    for i, (path, box) in enumerate(_samples(res.meta, photos)):
        feeds, _ = preprocess(read_image(path), box, spec)
        for key, arr in feeds.items():
            assert data[key].dtype == np.float32
            assert np.array_equal(data[key][i], arr[0]), f"{key} of sample {i} ({path.name}) differs"
    if name == "poco-cliff":  # bbox_info uses each image's own size: the three images give different values
        assert len({tuple(np.round(r, 4)) for r in data["bbox_info"]}) == 6


def test_sidecar_contents(exports: dict[str, Path], photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.npz"
    res = make_calibration_set(exports["poco-cliff"], out, images=photos, boxes=photos.parent / "boxes.json",
                               max_samples=4, seed=3)
    meta = json.loads(sidecar_path(out).read_text())
    assert meta == json.loads(json.dumps(res.meta))
    assert meta["model"]["name"] == "poco-cliff" and meta["count"] == 4 and meta["seed"] == 3
    assert meta["inputs"] == {"image": [3, 224, 224], "bbox_info": [3]}
    assert meta["input_size"] == [224, 224]
    assert meta["selection"]["method"] == "random" and meta["selection"]["candidates"] == 6
    assert meta["preprocessing"] == load_manifest(exports["poco-cliff"]).preprocessing
    for f in meta["files"]:
        import hashlib

        assert f["sha256"] == hashlib.sha256((photos / f["name"]).read_bytes()).hexdigest()
    assert meta["npz"]["file"] == "c.npz" and len(meta["npz"]["sha256"]) == 64
    assert meta["source"]["boxes"].endswith("boxes.json") and not meta["source"]["whole_image_boxes"]
    # the same seed gives the same set; another seed another one
    again = make_calibration_set(exports["poco-cliff"], tmp_path / "d.npz", images=photos,
                                 boxes=photos.parent / "boxes.json", max_samples=4, seed=3)
    assert again.meta["samples"] == meta["samples"]
    assert np.array_equal(np.load(out)["image"], np.load(tmp_path / "d.npz")["image"])


def test_whole_image_without_boxes(exports: dict[str, Path], photos: Path, tmp_path: Path,
                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="hpsedge"):
        res = make_calibration_set(exports["poco-cliff"], tmp_path / "w.npz", images=photos)
    assert "whole image" in caplog.text
    assert res.count == 3 and res.meta["source"]["whole_image_boxes"] is True
    for path, box in _samples(res.meta, photos):
        h, w = read_image(path).shape[:2]
        assert box.tolist() == [[0.0, 0.0, float(w), float(h)]]


def test_coco_boxes(exports: dict[str, Path], photos: Path, tmp_path: Path) -> None:
    coco = {
        "images": [{"id": 1, "file_name": "val/astronaut.jpg"}, {"id": 2, "file_name": "flat.png"},
                   {"id": 3, "file_name": "noise.png"}],
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
        "annotations": [
            {"image_id": 1, "category_id": 1, "bbox": [150, 30, 200, 400]},
            {"image_id": 1, "category_id": 18, "bbox": [0, 0, 50, 50]},
            {"image_id": 2, "category_id": 1, "bbox": [10, 10, 60, 70]},
        ],
    }
    p = tmp_path / "coco.json"
    p.write_text(json.dumps(coco))
    res = make_calibration_set(exports["poco-pare"], tmp_path / "coco-calib.npz", images=photos, boxes=p)
    got = sorted((photos / res.meta["files"][s["file"]]["name"]).name + str(s["box"]) for s in res.meta["samples"])
    assert got == ["astronaut.jpg[150.0, 30.0, 350.0, 430.0]", "flat.png[10.0, 10.0, 70.0, 80.0]"]


# ---------------------------------------------------------------------------------------------------
# selection
# ---------------------------------------------------------------------------------------------------
def _skewed_scores(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    easy = rng.beta(2, 30, size=950) * 0.3  # most people are certain: scores near 0.05
    hard = rng.uniform(0.3, 1.0, size=50)  # a few uncertain ones spread over the rest of the range
    return rng.permutation(np.concatenate([easy, hard]))


def _coverage(scores: np.ndarray, idx: np.ndarray, bins: int = 10) -> tuple[int, int]:
    edges = np.linspace(scores.min(), scores.max(), bins + 1)
    hist = np.histogram(scores[idx], edges)[0]
    return int((hist > 0).sum()), int((scores[idx] > 0.3).sum())


def test_uncertainty_selection_covers_sigma_range_better_than_random() -> None:
    scores = _skewed_scores()
    k = 100
    u_bins, u_tail = _coverage(scores, select_uncertainty(scores, k, seed=0))
    assert len(np.unique(select_uncertainty(scores, k, seed=0))) == k
    for seed in range(5):
        r = select_random(len(scores), k, seed)
        r_bins, r_tail = _coverage(scores, r)
        # random follows the skew (about 5 of 100 in the tail); binned selection fills every occupied bin
        assert u_bins > r_bins, (u_bins, r_bins)
        assert u_tail >= 3 * max(r_tail, 1), (u_tail, r_tail)
    assert u_bins == int((np.histogram(scores, 10)[0] > 0).sum())
    # deterministic, and a different seed changes the pick within bins
    assert np.array_equal(select_uncertainty(scores, k, 0), select_uncertainty(scores, k, 0))
    assert not np.array_equal(select_uncertainty(scores, k, 0), select_uncertainty(scores, k, 1))


def test_uncertainty_selection_small_cases() -> None:
    assert select_uncertainty(np.array([]), 5, 0).size == 0
    assert select_uncertainty(np.full(4, 0.3), 10, 0).tolist() == [0, 1, 2, 3]
    assert sorted(select_uncertainty(np.array([0.0, 0.0, 0.0, 1.0]), 2, 0).tolist())[-1] == 3
    with pytest.raises(InputError):
        select_uncertainty(np.array([0.1, np.nan]), 1, 0)


def test_uncertainty_selection_end_to_end(exports: dict[str, Path], tmp_path: Path) -> None:
    """A stub σ scorer (mean crop intensity) over images skewed on purpose: 27 dark, 3 bright."""
    folder = tmp_path / "skewed"
    folder.mkdir()
    levels = [10 + i for i in range(27)] + [150, 195, 240]  # bins of width 23: 0-1 dark, 6, 8, 9 bright
    for i, v in enumerate(levels):
        Image.fromarray(np.full((64, 48, 3), v, np.uint8)).save(folder / f"img_{i:02d}.png")

    def scorer(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return feeds["image"].reshape(len(feeds["image"]), -1).mean(axis=1)

    def bright(res) -> int:
        return sum(int(res.meta["files"][s["file"]]["name"][4:6]) >= 27 for s in res.meta["samples"])

    u = make_calibration_set(exports["poco-pare"], tmp_path / "u.npz", images=folder, max_samples=6,
                             select="uncertainty", scorer=scorer, seed=0, pool=30)
    r = make_calibration_set(exports["poco-pare"], tmp_path / "r.npz", images=folder, max_samples=6,
                             select="random", seed=0)
    assert bright(u) == 3 and bright(r) < 3
    hist = u.meta["selection"]["sigma_histogram"]
    assert sum(hist["candidates"]) == 30 and sum(hist["chosen"]) == 6
    assert sum(c > 0 for c in hist["chosen"]) == sum(c > 0 for c in hist["candidates"])  # every occupied bin
    assert json.loads(sidecar_path(tmp_path / "u.npz").read_text())["selection"]["sigma_histogram"] == hist


def test_uncertainty_with_the_model(exports: dict[str, Path], photos: Path, tmp_path: Path) -> None:
    res = make_calibration_set(exports["poco-cliff"], tmp_path / "m.npz", images=photos,
                               boxes=photos.parent / "boxes.json", max_samples=4, select="uncertainty")
    hist = res.meta["selection"]["sigma_histogram"]
    assert res.count == 4 and sum(hist["chosen"]) == 4 and sum(hist["candidates"]) == 6
    # a model without σ cannot be selected by it
    plain = tmp_path / "plain"
    shutil.copytree(exports["poco-pare"], plain)
    m = json.loads((plain / "manifest.json").read_text())
    m["model"]["has_sigma"] = False
    m["outputs"] = [o for o in m["outputs"] if o["name"] != "sigma"]
    (plain / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="no σ output"):
        make_calibration_set(plain, tmp_path / "x.npz", images=photos, select="uncertainty")


# ---------------------------------------------------------------------------------------------------
# video
# ---------------------------------------------------------------------------------------------------
def _write_video(path: Path, n: int = 20) -> None:
    av = pytest.importorskip("av")
    c = av.open(str(path), mode="w")
    s = c.add_stream("mpeg4", rate=10)
    s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
    for i in range(n):
        frame = np.zeros((64, 96, 3), np.uint8)
        frame[:, : 4 * i + 4] = 200
        for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()


def test_video_frames(exports: dict[str, Path], tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    _write_video(video)
    res = make_calibration_set(exports["poco-cliff"], tmp_path / "v.npz", video=video, frames=5)
    assert sorted(s["frame"] for s in res.meta["samples"]) == [0, 5, 10, 14, 19]
    assert res.meta["source"]["kind"] == "video" and res.meta["files"][0]["name"] == "clip.mp4"
    res2 = make_calibration_set(exports["poco-cliff"], tmp_path / "e.npz", video=video, every=7,
                                boxes=_json(tmp_path / "vb.json", {"0": [[0, 0, 50, 60]], "14": [[10, 5, 90, 60]]}))
    assert sorted((s["frame"], tuple(s["box"])) for s in res2.meta["samples"]) == [
        (0, (0.0, 0.0, 50.0, 60.0)), (14, (10.0, 5.0, 90.0, 60.0))]
    # the tensors are the runtime's preprocessing of the decoded frame
    import av

    with av.open(str(video)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    data = np.load(tmp_path / "e.npz")
    spec = load_manifest(exports["poco-cliff"]).preprocessing
    for i, s in enumerate(res2.meta["samples"]):
        feeds, _ = preprocess(frames[s["frame"]], [s["box"]], spec)
        assert np.array_equal(data["image"][i], feeds["image"][0])
        assert np.array_equal(data["bbox_info"][i], feeds["bbox_info"][0])
    with pytest.raises(InputError, match="not both"):
        make_calibration_set(exports["poco-cliff"], tmp_path / "z.npz", video=video, every=2, frames=3)


def _json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


# ---------------------------------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------------------------------
def test_empty_folder(exports: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no images"):
        make_calibration_set(exports["poco-cliff"], tmp_path / "c.npz", images=tmp_path / "empty")


def test_unreadable_image(exports: dict[str, Path], photos: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    shutil.copytree(photos, folder)
    (folder / "broken.jpg").write_bytes(b"this is not a JPEG file at all")
    with pytest.raises(InputError, match=r"broken\.jpg"):
        make_calibration_set(exports["poco-cliff"], tmp_path / "c.npz", images=folder)


def test_box_outside_image(exports: dict[str, Path], photos: Path, tmp_path: Path) -> None:
    boxes = _json(tmp_path / "b.json", {"flat.png": [[10, 10, 50, 50], [500, 500, 600, 600]]})
    with pytest.raises(InputError, match=r"flat\.png: .*box 1"):
        make_calibration_set(exports["poco-cliff"], tmp_path / "c.npz", images=photos, boxes=boxes)


def test_coco_without_matching_images(exports: dict[str, Path], photos: Path, tmp_path: Path) -> None:
    coco = _json(tmp_path / "coco.json", {
        "images": [{"id": 7, "file_name": "000000397133.jpg"}],
        "annotations": [{"image_id": 7, "category_id": 1, "bbox": [1, 2, 30, 40]}],
        "categories": [{"id": 1, "name": "person"}],
    })
    with pytest.raises(InputError, match="none of the 1 images named in the COCO file"):
        make_calibration_set(exports["poco-cliff"], tmp_path / "c.npz", images=photos, boxes=coco)


def test_no_people(exports: dict[str, Path], photos: Path, tmp_path: Path) -> None:
    boxes = _json(tmp_path / "b.json", {"flat.png": [], "noise.png": []})
    with pytest.raises(InputError, match="no person boxes"):
        make_calibration_set(exports["poco-cliff"], tmp_path / "c.npz", images=photos, boxes=boxes)


def test_argument_errors(exports: dict[str, Path], photos: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="either --images"):
        make_calibration_set(exports["poco-cliff"], tmp_path / "c.npz")
    with pytest.raises(InputError, match="unknown selection"):
        make_calibration_set(exports["poco-cliff"], tmp_path / "c.npz", images=photos, select="best")
    with pytest.raises(InputError, match=r"\.npz"):
        make_calibration_set(exports["poco-cliff"], tmp_path / "c.bin", images=photos)


def test_refuses_to_overwrite(exports: dict[str, Path], photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.npz"
    make_calibration_set(exports["poco-cliff"], out, images=photos, max_samples=1)
    with pytest.raises(HpsedgeError, match="already exists"):
        make_calibration_set(exports["poco-cliff"], out, images=photos, max_samples=1)
    assert make_calibration_set(exports["poco-cliff"], out, images=photos, max_samples=2, force=True).count == 2


def test_load_checks_names_and_shapes(exports: dict[str, Path], photos: Path, tmp_path: Path) -> None:
    cliff = load_manifest(exports["poco-cliff"])
    pare = load_manifest(exports["poco-pare"])
    made = make_calibration_set(exports["poco-pare"], tmp_path / "pare.npz", images=photos, max_samples=2)
    assert load_calibration_set(made.path, pare)["image"].shape == (2, 3, 224, 224)
    with pytest.raises(InputError, match=r"holds inputs \['image'\] but poco-cliff takes \['bbox_info', 'image'\]"):
        load_calibration_set(made.path, cliff)
    bad = tmp_path / "small.npz"
    np.savez(bad, image=np.zeros((2, 3, 128, 128), np.float32), bbox_info=np.zeros((2, 3), np.float32))
    with pytest.raises(InputError, match=r"'image' has shape \[2, 3, 128, 128\] but poco-cliff wants \['N', 3, 224, 224\]"):
        load_calibration_set(bad, cliff)
    np.savez(bad, image=np.zeros((2, 3, 224, 224), np.float64))
    with pytest.raises(InputError, match="float32"):
        load_calibration_set(bad, pare)
    np.savez(bad, image=np.zeros((2, 3, 224, 224), np.float32), bbox_info=np.zeros((3, 3), np.float32))
    with pytest.raises(InputError, match="different sample counts"):
        load_calibration_set(bad, cliff)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(InputError, match="not a calibration"):
        load_calibration_set(tmp_path / "junk.npz", pare)
    with pytest.raises(InputError, match="not found"):
        load_calibration_set(tmp_path / "missing.npz", pare)
    # a sidecar with other preprocessing is refused
    side = json.loads(sidecar_path(made.path).read_text())
    side["preprocessing"]["input_size"] = [256, 192]
    sidecar_path(made.path).write_text(json.dumps(side))
    with pytest.raises(InputError, match="other preprocessing"):
        load_calibration_set(made.path, pare)


# ---------------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------------
def test_cli_make(exports: dict[str, Path], photos: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "calib.npz"
    args = ["make", "--model-dir", str(exports["poco-cliff"]), "--images", str(photos), "--out", str(out),
            "--max-samples", "3", "--boxes", str(photos.parent / "boxes.json")]
    res = runner.invoke(calib_app, args)
    assert res.exit_code == 0, res.output
    assert "3 sample(s)" in res.output and out.exists() and sidecar_path(out).exists()
    res = runner.invoke(calib_app, args)
    assert res.exit_code != 0 and isinstance(res.exception, HpsedgeError)
    assert "already exists" in str(res.exception)
    res = runner.invoke(calib_app, [*args, "--force", "--select", "uncertainty", "--seed", "2"])
    assert res.exit_code == 0, res.output
    assert "σ score bins" in res.output
    res = runner.invoke(calib_app, ["make", "--model-dir", str(exports["poco-cliff"]), "--images",
                                    str(photos), "--out", str(tmp_path / "w.npz")])
    assert res.exit_code == 0 and "whole image" in res.output
