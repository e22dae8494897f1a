"""Tracks (MOT text, JSON, greedy IoU linking), video IO (PyAV) and run_video end to end on a tiny export."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hpsedge.errors import InputError
from hpsedge.export.onnx import export_onnx
from hpsedge.runtime.predictor import Predictor
from hpsedge.runtime.temporal import TemporalConfig
from hpsedge.runtime.tracking import iou_matrix, link_iou, read_tracks, whole_frame_tracks

W, H, N = 160, 120, 12


# ============================================================================================== tracks
def test_mot_text_is_one_based_and_tolerant_of_spacing(tmp_path: Path) -> None:
    p = tmp_path / "gt.txt"
    p.write_text("# frame, id, x, y, w, h, conf\n1,1,10,20,30,40,0.9,-1,-1,-1\n1, 2, 50,20,30,40\n\n2 1 12 20 30 40 1\n")
    t = read_tracks(p, num_frames=5)
    assert t.frame.tolist() == [0, 0, 1] and t.track_id.tolist() == [1, 2, 1]
    np.testing.assert_allclose(t.boxes[0], [10, 20, 40, 60])
    np.testing.assert_allclose(t.score, [0.9, 1.0, 1.0])
    ids, boxes = t.in_frame(0)
    assert ids.tolist() == [1, 2] and boxes.shape == (2, 4)
    assert t.in_frame(3)[0].size == 0 and t.ids == [1, 2]
    assert read_tracks(p, frame_base=0).frame.tolist() == [1, 1, 2]


def test_json_tracks(tmp_path: Path) -> None:
    p = tmp_path / "t.json"
    p.write_text(json.dumps([{"frame": 0, "track_id": 3, "bbox": [0, 0, 10, 20]},
                             {"frame": 1, "track_id": 3, "xyxy": [1, 1, 11, 21], "score": 0.5}]))
    t = read_tracks(p)
    assert t.frame.tolist() == [0, 1] and t.track_id.tolist() == [3, 3]
    np.testing.assert_allclose(t.boxes, [[0, 0, 10, 20], [1, 1, 11, 21]])
    p.write_text(json.dumps({"frame_base": 1, "tracks": [{"frame": 1, "track_id": 0, "bbox": [0, 0, 5, 5]}]}))
    assert read_tracks(p).frame.tolist() == [0]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("1,1,10,20,30\n", r":1: expected 'frame, track_id"),
        ("1,1,10,20,30,40\n2,1,a,20,30,40\n", r":2: non-numeric"),
        ("1,1,10,20,0,40\n", r"width and height must be > 0"),
        ("1.5,1,10,20,30,40\n", r"must be integers"),
        ("1,1,10,20,30,40\n1,1,12,20,30,40\n", r"track 1 has two boxes in frame 1"),
        ("1,1,10,20,30,40\n1,-1,12,20,30,40\n", r"some boxes have track ids"),
        ("0,1,10,20,30,40\n", r"before the first frame"),
        ("", r"holds no boxes"),
        ('[{"frame": 0, "track_id": 1}]', r"needs 'bbox'"),
        ('[{"frame": 0, "bbox": [0, 0, -1, 5]}]', r"empty or not finite"),
        ('{"tracks": 3}', r"must be a JSON list"),
        ('[{"frame": 0, "bbox": [0, 0, 1, 5]', r"not valid JSON"),
    ],
)
def test_malformed_track_files_are_refused(tmp_path: Path, content: str, match: str) -> None:
    p = tmp_path / "tracks.txt"
    p.write_text(content)
    with pytest.raises(InputError, match=match):
        read_tracks(p)


def test_tracks_past_the_end_of_the_video(tmp_path: Path) -> None:
    p = tmp_path / "gt.txt"
    p.write_text("1,1,10,20,30,40\n12,1,10,20,30,40\n13,1,10,20,30,40\n14,1,10,20,30,40\n")
    with pytest.raises(InputError, match=r"2 box\(es\) refer to frames past the end .*12 frames, numbered 1..12.*first: frame 13"):
        read_tracks(p, num_frames=12)
    read_tracks(p, num_frames=14)
    with pytest.raises(InputError, match="not found"):
        read_tracks(tmp_path / "missing.txt")


def test_iou_matrix() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(iou_matrix(a, b)[0], [1.0, 50 / 150, 0.0])


def test_greedy_iou_tracker_links_boxes_without_ids(tmp_path: Path) -> None:
    frames, boxes, truth = [], [], []
    for f in range(10):
        for pid, x0 in ((0, 10.0), (1, 100.0)):
            if pid == 1 and f in (4, 5):
                continue  # person 1 missed for two frames: within max_age
            x = x0 + (3.0 * f if pid == 0 else -2.0 * f)
            frames.append(f)
            boxes.append([x, 10, x + 40, 90])
            truth.append(pid)
    order = np.random.default_rng(0).permutation(len(frames))  # file order does not matter
    ids = link_iou(np.array(frames)[order], np.array(boxes)[order])
    got = dict(zip(order.tolist(), ids.tolist(), strict=True))
    assert [got[i] for i in range(len(frames))] == truth
    # a gap longer than max_age starts a new track; the tracker runs when a file has no ids
    p = tmp_path / "det.txt"
    p.write_text("1,-1,10,10,40,80\n2,-1,12,10,40,80\n9,-1,14,10,40,80\n")
    assert read_tracks(p, max_age=5).track_id.tolist() == [0, 0, 1]
    assert read_tracks(p, max_age=10).track_id.tolist() == [0, 0, 0]


def test_whole_frame_tracks() -> None:
    t = whole_frame_tracks(3, 64, 48)
    assert t.frame.tolist() == [0, 1, 2] and t.ids == [0]
    np.testing.assert_allclose(t.boxes[1], [0, 0, 64, 48])


# ================================================================================================ video
@pytest.fixture(scope="module")
def av() -> Any:
    import av

    return av


def _frames(n: int = N, w: int = W, h: int = H) -> list[np.ndarray]:
    out = []
    yy, xx = np.mgrid[0:h, 0:w]
    for k in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 0] = (xx * 255 // max(w - 1, 1)).astype(np.uint8)
        img[..., 1] = (yy * 255 // max(h - 1, 1)).astype(np.uint8)
        img[..., 2] = 20 * k % 255
        out.append(img)
    return out


@pytest.fixture(scope="module")
def video(av: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hpsedge.runtime.video import write_video

    return write_video(tmp_path_factory.mktemp("vid") / "clip.mp4", _frames(), fps=25.0)


def test_write_probe_and_read_back(video: Path, tmp_path: Path) -> None:
    from hpsedge.runtime.video import VideoReader, probe_video, write_video

    info = probe_video(video)
    assert (info.num_frames, info.width, info.height) == (N, W, H)
    assert info.fps == pytest.approx(25.0)
    with VideoReader(video) as reader:
        got = [f for _, f in reader]
    assert len(got) == N and got[0].shape == (H, W, 3) and got[0].dtype == np.uint8
    src = _frames()
    for a, b in zip(got, src, strict=True):  # lossy, but close
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 6.0
    odd = write_video(tmp_path / "odd.mp4", _frames(3, 33, 21), fps=10)  # odd sizes are padded
    assert probe_video(odd).num_frames == 3


def test_unreadable_video_gives_a_clear_error(av: Any, tmp_path: Path) -> None:
    from hpsedge.runtime.video import VideoReader, probe_video

    bad = tmp_path / "bad.mp4"
    bad.write_text("this is not a video\n" * 20)
    with pytest.raises(InputError, match=r"cannot read .*bad.mp4 as a video"):
        probe_video(bad)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="as a video"):
        VideoReader(empty)
    with pytest.raises(InputError, match="video not found"):
        probe_video(tmp_path / "nope.mp4")
    png = tmp_path / "still.png"
    from PIL import Image

    Image.fromarray(_frames(1)[0]).save(png)
    assert probe_video(png).num_frames == 1  # FFmpeg reads a still image as a one-frame video


def test_missing_pyav_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from hpsedge.runtime.video import VideoReader

    p = tmp_path / "x.mp4"
    p.write_bytes(b"0")
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(InputError, match="needs PyAV") as exc:
        VideoReader(p)
    assert "hpsedge[video]" in (exc.value.hint or "")


# ============================================================================================ run_video
@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    folder = export_onnx("poco-cliff", tmp_path_factory.mktemp("exp") / "poco-cliff", tiny=True).out_dir
    return Predictor.load(folder, backend="ort", device="cpu")


class ControlledSigma:
    """The real predictor, with σ of chosen (frame, box index) pairs set by the test."""

    def __init__(self, inner: Predictor, bad: set[tuple[int, int]]) -> None:
        self.inner, self.bad, self.frame = inner, bad, -1
        self.manifest, self.smpl = inner.manifest, inner.smpl

    def predict(self, image: np.ndarray, boxes: Any) -> list[Any]:
        self.frame += 1  # run_video calls predict once per frame that has boxes, in order
        out = []
        for i, r in enumerate(self.inner.predict(image, boxes)):
            sigma = np.full(24, 0.1, np.float32)
            if (self.frame, i) in self.bad:
                sigma[0] = 0.9
            out.append(replace(r, sigma=sigma, confidence=1.0 - float(sigma[0]), score=float(sigma[0])))
        return out


def _mot(path: Path, frames: int = N) -> Path:
    lines = [f"{f + 1},7,{10 + 2 * f},10,50,90,1\n{f + 1},9,100,20,50,90,1" for f in range(frames)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_run_video_writes_tracks_overlay_and_summary(predictor: Predictor, video: Path, tmp_path: Path) -> None:
    from hpsedge.runtime.video import VideoReader, probe_video, run_video

    calls: list[tuple[str, int, int, float]] = []
    wrapped = ControlledSigma(predictor, bad={(4, 0), (5, 0)})  # track 7, frames 4 and 5
    out = tmp_path / "out"
    summary = run_video(wrapped, video, _mot(tmp_path / "gt.txt"), out, progress=lambda *a: calls.append(a))
    assert sorted(summary["tracks"]) == ["7", "9"] and summary["frames"] == N and summary["people"] == 2 * N
    assert summary["tracks"]["7"]["inpainted_frames"] == 2 and summary["tracks"]["9"]["inpainted_frames"] == 0
    assert (out / "summary.json").is_file() and json.loads((out / "summary.json").read_text())["frames"] == N

    z = np.load(out / "track_0007.npz")
    assert z["frames"].tolist() == list(range(N))
    assert z["inpainted_frames"].tolist() == [k in (4, 5) for k in range(N)]
    for key, shape in (("raw_pose_rotmat", (N, 24, 3, 3)), ("pose", (N, 72)), ("raw_pose", (N, 72)), ("betas", (N, 10)),
                       ("transl", (N, 3)), ("sigma", (N, 24)), ("inpainted_joints", (N, 24)), ("boxes", (N, 4))):
        assert z[key].shape == shape, key
    np.testing.assert_allclose(z["boxes"][3], [16, 10, 66, 100])
    rot = z["pose_rotmat"].astype(np.float64)
    np.testing.assert_allclose(np.swapaxes(rot, -1, -2) @ rot, np.broadcast_to(np.eye(3), rot.shape), atol=1e-5)
    cfg = json.loads(str(z["thresholds"]))
    assert cfg["frame_threshold"] == 0.3 and cfg["fps"] == pytest.approx(25.0)

    overlay = out / "clip_overlay.mp4"
    info = probe_video(overlay)
    assert (info.num_frames, info.width, info.height) == (N, W, H)
    magenta = []
    with VideoReader(overlay) as reader:
        for _, f in reader:
            d = np.abs(f.astype(int) - np.array([220, 40, 220])).sum(axis=-1)
            magenta.append(int((d < 90).sum()))
    assert magenta[4] > 100 and magenta[5] > 100 and magenta[0] < 20  # inpainted frames are outlined

    stages = {c[0] for c in calls}
    assert stages == {"predict", "overlay"} and calls[-1][1] == calls[-1][2] == N and all(c[3] > 0 for c in calls)


def test_run_video_options_and_default_track(predictor: Predictor, video: Path, tmp_path: Path) -> None:
    from hpsedge.runtime.video import run_video

    wrapped = ControlledSigma(predictor, bad={(4, 0)})
    s = run_video(wrapped, video, None, tmp_path / "o", inpaint=False, smooth=False, overlay=False)
    assert list(s["tracks"]) == ["0"] and s["tracks"]["0"]["inpainted_frames"] == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["summary.json", "track_0000.npz"]
    z = np.load(tmp_path / "o" / "track_0000.npz")
    np.testing.assert_array_equal(z["pose_rotmat"], z["raw_pose_rotmat"])  # neither step ran
    np.testing.assert_allclose(z["boxes"][0], [0, 0, W, H])
    cfg = TemporalConfig(max_gap=0)  # an explicit config: a one-frame gap is too long now
    s = run_video(ControlledSigma(predictor, bad={(4, 0)}), video, None, tmp_path / "p", overlay=False, config=cfg)
    assert s["tracks"]["0"]["flagged_frames"] == 1 and s["tracks"]["0"]["inpainted_frames"] == 0


def test_run_video_refuses_tracks_past_the_end(predictor: Predictor, video: Path, tmp_path: Path) -> None:
    from hpsedge.runtime.video import run_video

    with pytest.raises(InputError, match=r"past the end .*12 frames"):
        run_video(predictor, video, _mot(tmp_path / "long.txt", frames=N + 3), tmp_path / "o")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(InputError, match="as a video"):
        run_video(predictor, bad, None, tmp_path / "o2")
