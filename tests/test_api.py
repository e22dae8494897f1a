"""The one-call Python API (issue 26, "Python API"): a path, array, folder, list, video or stream in one call;
a generator for streams; results with .plot(), .save(), .to_json(); pictures and frames find the same people."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import smpl_synth
from detector_synth import draw_people, make_detector
from hpsedge.errors import InputError
from hpsedge.runtime.api import DetectedPerson, Model, Results

H, W = 360, 640
BOXES = [(60.0, 100.0, 120.0, 260.0), (400.0, 112.0, 470.0, 272.0)]


def frames(n: int = 8) -> list[np.ndarray]:
    return [draw_people(H, W, [(x1 + 6 * k, y1, x2 + 6 * k, y2) for x1, y1, x2, y2 in BOXES]) for k in range(n)]


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from PIL import Image

    from hpsedge.export.onnx import export_onnx

    root = tmp_path_factory.mktemp("api")
    out: dict[str, Any] = {
        "poco": export_onnx("poco-cliff", root / "poco", tiny=True).out_dir,
        "det": make_detector(root / "det.onnx", "yolo", size=(320, 320)),
    }
    smpl_synth.write_synthetic_smpl(root, style="npz", arrays=smpl_synth.make_smpl_arrays(num_betas=10, seed=0))
    out["smpl"] = root / "SMPL_NEUTRAL.npz"
    folder = root / "pics"
    folder.mkdir()
    for k, f in enumerate(frames(2)):
        Image.fromarray(f).save(folder / f"p{k}.png")
    out["pics"] = folder
    return out


@pytest.fixture(scope="module")
def model(assets) -> Any:
    with Model(assets["poco"], assets["smpl"], detector=assets["det"], device="cpu") as m:
        yield m


def test_one_call_for_paths_arrays_folders_and_lists(model, assets):
    img = frames(1)[0]
    [r] = model(img)
    assert isinstance(r, Results) and len(r) == 2 and r.source_kind == "array"
    assert all(isinstance(p, DetectedPerson) and p.detector_score == pytest.approx(0.9, abs=0.11) for p in r)
    np.testing.assert_allclose(r.boxes, BOXES, atol=3)
    assert all(p.vertices.shape == (6890, 3) and p.joints2d.shape == (24, 2) for p in r)
    [from_file] = model(assets["pics"] / "p0.png")  # PNG is lossless: the same pixels, the same people
    np.testing.assert_allclose(from_file.boxes, r.boxes)
    np.testing.assert_allclose(from_file[0].transl, r[0].transl)
    assert from_file.name.endswith("p0.png") and from_file.stem == "p0"
    many = model(assets["pics"])
    assert [Path(x.name).name for x in many] == ["p0.png", "p1.png"] and [len(x) for x in many] == [2, 2]
    mixed = model([assets["pics"] / "p1.png", img[..., ::-1].copy()], bgr=False)
    assert len(mixed) == 2 and mixed[1].name == "array_1"
    # OpenCV's BGR order, said once
    [bgr] = model(img[..., ::-1].copy(), bgr=True)
    np.testing.assert_allclose(bgr.boxes, r.boxes)
    # a generator for anything when asked
    gen = model(assets["pics"], stream=True)
    assert isinstance(gen, types.GeneratorType) and len(next(gen)) == 2


def test_boxes_then_detector_then_whole_picture(model, assets):
    img = frames(1)[0]
    [given] = model(img, boxes=[BOXES[1]])
    assert len(given) == 1 and given[0].detector_score is None
    np.testing.assert_allclose(given[0].box, BOXES[1])
    with Model(assets["poco"], device="cpu") as bare:  # no detector, no boxes: the whole picture is one person
        [whole] = bare(img)
        assert len(whole) == 1
        np.testing.assert_allclose(whole[0].box, [0, 0, W, H])
        with pytest.raises(InputError, match="no person detector"):
            bare("clip.mp4")
    nobody = np.full((H, W, 3), 30, np.uint8)
    assert len(model(nobody)[0]) == 0


def test_plot_save_to_json(model, tmp_path):
    [r] = model(frames(1)[0])
    pic = r.plot()
    assert pic.shape == (H, W, 3) and pic.dtype == np.uint8 and not np.array_equal(pic, r.image)
    out = r.save(tmp_path / "o.png")
    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(out)), pic)
    with pytest.raises(InputError, match="not overwriting"):
        r.save(tmp_path / "o.png")
    r.save(tmp_path / "o.png", force=True)
    doc = json.loads(r.to_json())
    assert doc["image_size"] == [W, H] and doc["model"] == "poco-cliff" and len(doc["persons"]) == 2
    assert doc["persons"][0]["detector_score"] == pytest.approx(r[0].detector_score)
    assert "vertices" not in doc["persons"][0] and "vertices" in json.loads(r.to_json(include_mesh=True))["persons"][0]


def test_video_and_streams(model, assets, tmp_path):
    pytest.importorskip("av")
    from hpsedge.runtime.video import write_video

    video = write_video(tmp_path / "walk.mp4", frames(8), fps=25)
    res = model(video)
    assert len(res) == 8 and all(r.source_kind == "video" for r in res)
    assert [[p.track_id for p in r] for r in res] == [[0, 1]] * 8
    assert res[3].time == pytest.approx(3 / 25, abs=1e-3) and res[3].stem == "walk_000003"
    assert json.loads(res[2].to_json())["frame"] == 2
    gen = model(str(video), stream=True, max_frames=3)
    assert isinstance(gen, types.GeneratorType) and [r.index for r in gen] == [0, 1, 2]
    # a second run starts new tracks (the pipeline is reset per source)
    assert [p.track_id for p in model(video, max_frames=1)[0]] == [0, 1]
    with pytest.raises(InputError, match="never ends"):
        model("rtsp://192.0.2.1/cam")
    with pytest.raises(InputError, match="never ends"):
        model(0)


def test_picture_and_source_find_the_same_people(model, assets):
    """`hpsedge run --image` and `--source` on one picture: the same boxes (the pipeline's first frame)."""
    from hpsedge.runtime.pipeline import Pipeline

    img = frames(1)[0]
    pipe = Pipeline.load(assets["poco"], detector=assets["det"], device="cpu")
    via_source = pipe(img)
    [via_image] = model(img)
    np.testing.assert_allclose(np.stack([p.box for p in via_source.people]), via_image.boxes)


def test_bad_inputs_are_one_error(model, tmp_path):
    with pytest.raises(InputError, match="H×W×3 uint8"):
        model(np.zeros((10, 10), np.uint8))
    with pytest.raises(InputError):
        model(tmp_path / "missing.png")
    with pytest.raises(InputError, match="cannot run on"):
        model({"a": 1})
    with pytest.raises(InputError, match="boxes for 1 picture"):
        model([frames(1)[0], frames(1)[0]], boxes=[BOXES])


def test_camera_reaches_the_results(assets):
    f = 700.0
    with Model(assets["poco"], detector=assets["det"], device="cpu", camera=f"{f},{f},300,170") as m:
        [r] = m(frames(1)[0])
        assert r.intrinsics is not None and json.loads(r.to_json())["camera"]["fx"] == f
        b = np.array([p.size for p in r])
        s = np.array([p.cam_crop[0] for p in r], dtype=np.float64)
        np.testing.assert_allclose([p.transl[2] for p in r], 2 * f / (s * b), rtol=1e-5)
