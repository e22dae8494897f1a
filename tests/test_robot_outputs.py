"""ROS 2 (MCAP) and Rerun outputs (issue 26, "Their tools"), read back message by message with those
libraries' own readers: mcap_ros2's decoder and rerun's RrdReader."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest

import smpl_synth
from detector_synth import draw_people, make_detector
from hpsedge.errors import InputError
from hpsedge.runtime.api import Model
from hpsedge.runtime.camera import CameraIntrinsics
from hpsedge.runtime.confidence import SMPL_PARENTS
from hpsedge.runtime.draw import confidence_color

H, W = 360, 640
CAM = CameraIntrinsics(520.0, 515.0, 330.0, 175.0, (-0.05, 0.01, 0.0, 0.0, 0.0), width=W, height=H)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Any], Any]:
    pytest.importorskip("av")
    from hpsedge.export.onnx import export_onnx
    from hpsedge.runtime.video import write_video

    root = tmp_path_factory.mktemp("robot")
    folder = export_onnx("poco-cliff", root / "poco", tiny=True).out_dir
    det = make_detector(root / "det.onnx", "yolo", size=(320, 320))
    smpl_synth.write_synthetic_smpl(root, style="npz", arrays=smpl_synth.make_smpl_arrays(num_betas=10, seed=0))
    frames = [draw_people(H, W, [(60 + 8 * k, 100, 120 + 8 * k, 260), (420, 110, 480, 270)]) for k in range(4)]
    video = write_video(root / "v.mp4", frames, fps=20)
    model = Model(folder, root / "SMPL_NEUTRAL.npz", detector=det, device="cpu", camera=CAM)
    res = model(video)
    assert [len(r) for r in res] == [2] * 4
    return res, model


def test_mcap_reads_back_message_by_message(results, tmp_path):
    pytest.importorskip("mcap_ros2")
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    from hpsedge.runtime.ros import McapWriter

    res, model = results
    path = tmp_path / "people.mcap"
    start = 1_700_000_000_000_000_000
    with McapWriter(path, faces=model.smpl.faces, intrinsics=model.intrinsics, start_ns=start, model="poco-cliff") as bag:
        for r in res:
            bag.write_results(r)
    assert not (tmp_path / "people.mcap.part").exists()
    with open(path, "rb") as fh:
        summary = make_reader(fh).get_summary()
    assert {c.topic: c.message_encoding for c in summary.channels.values()} == {
        "/hpsedge/markers": "cdr", "/hpsedge/people": "cdr", "/hpsedge/camera_info": "cdr"}
    assert {s.name for s in summary.schemas.values()} == {
        "visualization_msgs/msg/MarkerArray", "std_msgs/msg/String", "sensor_msgs/msg/CameraInfo"}
    assert all(s.encoding == "ros2msg" for s in summary.schemas.values())
    with open(path, "rb") as fh:
        msgs = list(make_reader(fh, decoder_factories=[DecoderFactory()]).iter_decoded_messages(log_time_order=True))
    assert len(msgs) == 3 * len(res)
    faces = model.smpl.faces
    for _schema, channel, record, msg in msgs:
        frame = round((record.log_time - start) / 1e9 * 20)
        r = res[frame]
        assert record.log_time == start + round(r.time * 1e9)
        stamp_ns = None
        if channel.topic == "/hpsedge/markers":
            stamp_ns = msg.markers[0].header.stamp.sec * 10**9 + msg.markers[0].header.stamp.nanosec
            assert msg.markers[0].action == 3  # DELETEALL first: people who left disappear
            by = {(mk.ns, mk.id): mk for mk in msg.markers[1:]}
            assert {k[0] for k in by} == {"mesh", "skeleton", "joints", "label"}
            for p in r.people:
                mesh = by[("mesh", p.track_id)]
                assert mesh.type == 11 and len(mesh.points) == 3 * len(faces)
                verts = p.vertices.astype(np.float64) + p.transl
                got = np.array([[q.x, q.y, q.z] for q in mesh.points[:30]])
                np.testing.assert_allclose(got, verts[faces.reshape(-1)[:30]], rtol=1e-6)
                want = np.array(confidence_color(p.confidence)) / 255
                np.testing.assert_allclose([mesh.color.r, mesh.color.g, mesh.color.b], want, atol=1e-6)
                bones = by[("skeleton", p.track_id)]
                assert bones.type == 5 and len(bones.points) == 46 and len(bones.colors) == 46
                j = p.joints3d.astype(np.float64) + p.transl
                np.testing.assert_allclose([bones.points[1].x, bones.points[1].y, bones.points[1].z], j[1], rtol=1e-6)
                np.testing.assert_allclose([bones.points[0].x, bones.points[0].y], j[SMPL_PARENTS[1], :2], rtol=1e-6)
                assert bones.colors[3].g == pytest.approx(confidence_color(float(p.joint_confidence[2]))[1] / 255)
                assert by[("label", p.track_id)].text.startswith(f"{p.track_id}: ")
                assert mesh.header.frame_id == "camera_optical_frame"
        elif channel.topic == "/hpsedge/people":
            doc = json.loads(msg.data)
            assert doc["frame"] == r.index and len(doc["people"]) == 2
            for p, q in zip(r.people, doc["people"], strict=True):
                assert q["track_id"] == p.track_id and q["confidence"] == pytest.approx(p.confidence, abs=1e-4)
                np.testing.assert_allclose(q["pose_axis_angle"], p.pose_axis_angle.reshape(-1), atol=1e-5)
                np.testing.assert_allclose(q["betas"], p.betas, atol=1e-5)
                np.testing.assert_allclose(q["transl"], p.transl, atol=1e-5)
        else:
            assert channel.topic == "/hpsedge/camera_info"
            assert (msg.width, msg.height, msg.distortion_model) == (W, H, "plumb_bob")
            np.testing.assert_allclose(msg.k, [520, 0, 330, 0, 515, 175, 0, 0, 1])
            np.testing.assert_allclose(msg.d, CAM.distortion)
            stamp_ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        if stamp_ns is not None:
            assert stamp_ns == record.log_time
    # nothing is overwritten without force; a failure leaves no file
    with pytest.raises(InputError, match="not overwriting"):
        McapWriter(path)
    bad = tmp_path / "bad.mcap"
    with pytest.raises(RuntimeError), McapWriter(bad):
        raise RuntimeError("boom")
    assert not bad.exists() and not (tmp_path / "bad.mcap.part").exists()


def _packed(rgb: tuple[int, int, int]) -> int:
    r, g, b = rgb
    return (r << 24) | (g << 16) | (b << 8) | 0xFF


def test_rerun_recording_reads_back(results, tmp_path):
    pytest.importorskip("rerun")
    chunk_mod = pytest.importorskip("rerun.chunk")

    from hpsedge.runtime.rerun_log import RerunLog

    res, model = results
    path = tmp_path / "people.rrd"
    with RerunLog(path) as log:
        for r in res:
            log.log_results(r)
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    for ch in chunk_mod.RrdReader(path).stream():
        rb = ch.to_record_batch()
        cols = {n: rb.column(n).to_pylist() for n in rb.schema.names}
        frames = cols.get("frame", [None] * rb.num_rows)
        for i in range(rb.num_rows):
            rows.setdefault(ch.entity_path, {}).setdefault(frames[i], {}).update(
                {n: v[i] for n, v in cols.items() if v[i] is not None})
    for r in res:
        for p in r.people:
            mesh = rows[f"/world/people/{p.track_id}/mesh"][r.index]
            verts = np.asarray(mesh["Mesh3D:vertex_positions"])
            np.testing.assert_allclose(verts, p.vertices + p.transl, rtol=1e-5, atol=1e-6)
            assert set(mesh["Mesh3D:vertex_colors"]) == {_packed(confidence_color(p.confidence))}
            # the triangles once, static; positions and colours per frame
            np.testing.assert_array_equal(rows[f"/world/people/{p.track_id}/mesh"][None]["Mesh3D:triangle_indices"],
                                          model.smpl.faces)
            assert "Mesh3D:triangle_indices" not in mesh
            conf = rows[f"/people/{p.track_id}/confidence"][r.index]["Scalars:scalars"]
            assert conf == [pytest.approx(p.confidence)]
            joints = rows[f"/world/people/{p.track_id}/joints"][r.index]["Points3D:positions"]
            np.testing.assert_allclose(joints, p.joints3d + p.transl, rtol=1e-5, atol=1e-6)
        img = rows["/world/camera/image"][r.index]
        assert img["EncodedImage:media_type"] == ["image/jpeg"]
        from PIL import Image

        decoded = np.asarray(Image.open(io.BytesIO(bytes(img["EncodedImage:blob"][0]))))
        assert decoded.shape == (H, W, 3) and np.abs(decoded.astype(int) - r.image).mean() < 8
        strips = rows[f"/world/camera/image/people/{r.people[0].track_id}"][r.index]["LineStrips2D:strips"]
        np.testing.assert_allclose(strips[0], r.people[0].joints2d[[0, 1]], rtol=1e-5)
    cam = rows["/world/camera"][None]
    assert any(k.startswith("Pinhole:") for k in cam)
    k = np.asarray(cam["Pinhole:image_from_camera"], dtype=np.float64).reshape(3, 3)
    # rerun stores the 3×3 matrix column-major
    np.testing.assert_allclose(k.T, CAM.matrix)
    with pytest.raises(InputError, match="not overwriting"):
        RerunLog(path)


def test_outputs_and_api_import_no_optional_package():
    """The runtime stays numpy-only: mcap, rerun (and yaml) load only when a writer is opened."""
    import subprocess
    import sys

    code = ("import sys, hpsedge.runtime.ros, hpsedge.runtime.rerun_log, hpsedge.runtime.api, hpsedge.runtime.camera;"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'mcap', 'mcap_ros2', 'rerun', 'yaml', 'torch', 'PIL'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_people_who_leave_are_cleared_and_no_smpl_gives_a_stick_figure(results, tmp_path):
    pytest.importorskip("mcap_ros2")
    chunk_mod = pytest.importorskip("rerun.chunk")
    from dataclasses import replace

    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    from hpsedge.runtime.rerun_log import RerunLog
    from hpsedge.runtime.ros import McapWriter

    res, _ = results
    bare = [replace(p, vertices=None, joints3d=None, joints2d=None) for p in res[0].people]
    path, rrd = tmp_path / "s.mcap", tmp_path / "s.rrd"
    with McapWriter(path, start_ns=0) as bag, RerunLog(rrd, images=False) as log:
        for k, people in enumerate([bare, bare[:1]]):
            bag.write(people, image_hw=(H, W), time_s=k / 10, index=k)
            log.log(people, image_hw=(H, W), index=k, time_s=k / 10)
    with open(path, "rb") as fh:
        arrays = [m for _s, ch, _r, m in make_reader(fh, decoder_factories=[DecoderFactory()]).iter_decoded_messages()
                  if ch.topic == "/hpsedge/markers"]
    assert [sorted({mk.ns for mk in a.markers[1:]}) for a in arrays] == [["joints", "label", "skeleton"]] * 2
    assert [len(a.markers) for a in arrays] == [1 + 2 * 3, 1 + 3]  # the second frame: one person, no mesh
    cleared = [ch for ch in chunk_mod.RrdReader(rrd).stream()
               if ch.entity_path == f"/world/people/{bare[1].track_id}"]
    assert cleared and any("Clear:is_recursive" in c.to_record_batch().schema.names for c in cleared)
