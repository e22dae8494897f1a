"""Results → an MCAP file of ROS 2 messages that ``ros2 bag play`` and Foxglove open.

    from hpsedge.runtime.ros import McapWriter
    with McapWriter("people.mcap", faces=model.smpl.faces, intrinsics=model.intrinsics) as bag:
        for r in model("walk.mp4", stream=True):
            bag.write_results(r)

Topics (``prefix`` = ``/hpsedge`` by default), all stamped with the frame's time, in the camera's optical
frame ``frame_id`` (x right, y down, z forward: the frame hpsedge's translations are in):

* ``<prefix>/markers``: ``visualization_msgs/msg/MarkerArray``: a DELETEALL, then per person a ``mesh``
  (TRIANGLE_LIST, coloured by the person's confidence), a ``skeleton`` (LINE_LIST, each bone coloured by its
  joint's confidence), ``joints`` (SPHERE_LIST) and a ``label`` (TEXT_VIEW_FACING); marker id = track id
  (or the person's index in a still picture);
* ``<prefix>/people``: ``std_msgs/msg/String``, JSON: frame, stamp, model, image size and per person the
  track id, box, detector score, confidence, score, SMPL pose (72 axis-angle values), betas, translation,
  per-joint confidence and σ, and the error bound in mm when the folder has one (:func:`person_record`);
* ``<prefix>/camera_info``: ``sensor_msgs/msg/CameraInfo``, the calibrated camera, when one was given.

The message definitions are written into the file (``ros2msg`` encoding, ROS 2 Humble and later, whose
``Marker`` has the texture and mesh-file fields), as rosbag2 does, so readers without ROS decode it. The
messages are serialised here (:class:`_Cdr`: little-endian plain CDR, the mesh and skeleton points as numpy
blocks), because a generic field-by-field encoder spends seconds on a 41k-point mesh; the tests decode every
message with ``mcap-ros2-support``'s own decoder. ``mcap`` (the ``ros`` extra) is imported when a writer is
opened: the runtime itself stays numpy-only. A person without an SMPL file gets the approximate stick figure of
:mod:`hpsedge.runtime.draw` (no mesh).
"""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import HpsedgeError, InputError
from hpsedge.runtime.confidence import SMPL_PARENTS
from hpsedge.runtime.files import PartFile

__all__ = ["MSGDEFS", "McapWriter", "person_geometry", "person_record"]

_SEP = "=" * 80

# .msg texts of the ROS 2 interfaces used (fields only, in their interface order)
_DEFS = {
    "builtin_interfaces/msg/Time": "int32 sec\nuint32 nanosec",
    "builtin_interfaces/msg/Duration": "int32 sec\nuint32 nanosec",
    "std_msgs/msg/Header": "builtin_interfaces/Time stamp\nstring frame_id",
    "std_msgs/msg/ColorRGBA": "float32 r\nfloat32 g\nfloat32 b\nfloat32 a",
    "std_msgs/msg/String": "string data",
    "geometry_msgs/msg/Point": "float64 x\nfloat64 y\nfloat64 z",
    "geometry_msgs/msg/Vector3": "float64 x\nfloat64 y\nfloat64 z",
    "geometry_msgs/msg/Quaternion": "float64 x 0\nfloat64 y 0\nfloat64 z 0\nfloat64 w 1",
    "geometry_msgs/msg/Pose": "Point position\nQuaternion orientation",
    "sensor_msgs/msg/CompressedImage": "std_msgs/Header header\nstring format\nuint8[] data",
    "sensor_msgs/msg/RegionOfInterest": "uint32 x_offset\nuint32 y_offset\nuint32 height\nuint32 width\nbool do_rectify",
    "sensor_msgs/msg/CameraInfo": (
        "std_msgs/Header header\nuint32 height\nuint32 width\nstring distortion_model\nfloat64[] d\n"
        "float64[9] k\nfloat64[9] r\nfloat64[12] p\nuint32 binning_x\nuint32 binning_y\nRegionOfInterest roi"),
    "visualization_msgs/msg/UVCoordinate": "float64 u\nfloat64 v",
    "visualization_msgs/msg/MeshFile": "string filename\nuint8[] data",
    "visualization_msgs/msg/Marker": (
        "int32 ARROW=0\nint32 CUBE=1\nint32 SPHERE=2\nint32 CYLINDER=3\nint32 LINE_STRIP=4\nint32 LINE_LIST=5\n"
        "int32 CUBE_LIST=6\nint32 SPHERE_LIST=7\nint32 POINTS=8\nint32 TEXT_VIEW_FACING=9\nint32 MESH_RESOURCE=10\n"
        "int32 TRIANGLE_LIST=11\nint32 ARROW_STRIP=12\nint32 ADD=0\nint32 MODIFY=0\nint32 DELETE=2\nint32 DELETEALL=3\n"
        "std_msgs/Header header\nstring ns\nint32 id\nint32 type\nint32 action\ngeometry_msgs/Pose pose\n"
        "geometry_msgs/Vector3 scale\nstd_msgs/ColorRGBA color\nbuiltin_interfaces/Duration lifetime\n"
        "bool frame_locked\ngeometry_msgs/Point[] points\nstd_msgs/ColorRGBA[] colors\nstring texture_resource\n"
        "sensor_msgs/CompressedImage texture\nUVCoordinate[] uv_coordinates\nstring text\nstring mesh_resource\n"
        "MeshFile mesh_file\nbool mesh_use_embedded_materials"),
    "visualization_msgs/msg/MarkerArray": "Marker[] markers",
}
_DEPS = {
    "std_msgs/msg/Header": ["builtin_interfaces/msg/Time"],
    "geometry_msgs/msg/Pose": ["geometry_msgs/msg/Point", "geometry_msgs/msg/Quaternion"],
    "sensor_msgs/msg/CompressedImage": ["std_msgs/msg/Header"],
    "sensor_msgs/msg/CameraInfo": ["std_msgs/msg/Header", "sensor_msgs/msg/RegionOfInterest"],
    "visualization_msgs/msg/Marker": [
        "std_msgs/msg/Header", "geometry_msgs/msg/Pose", "geometry_msgs/msg/Vector3", "std_msgs/msg/ColorRGBA",
        "builtin_interfaces/msg/Duration", "geometry_msgs/msg/Point", "sensor_msgs/msg/CompressedImage",
        "visualization_msgs/msg/UVCoordinate", "visualization_msgs/msg/MeshFile"],
    "visualization_msgs/msg/MarkerArray": ["visualization_msgs/msg/Marker"],
}


def _complete(name: str) -> str:
    """The complete ``ros2msg`` definition of ``name``: its own text, then every dependency once, each after
    a line of 80 ``=`` and ``MSG: <type>`` (rosbag2's message-definition encoding)."""
    order: list[str] = []

    def walk(n: str) -> None:
        for d in _DEPS.get(n, []):
            if d not in order:
                order.append(d)
                walk(d)

    walk(name)
    return _DEFS[name] + "".join(f"\n{_SEP}\nMSG: {d}\n{_DEFS[d]}" for d in order)


#: complete definitions of the three message types written
MSGDEFS = {n: _complete(n) for n in ("visualization_msgs/msg/MarkerArray", "std_msgs/msg/String",
                                      "sensor_msgs/msg/CameraInfo")}

_MARKER_LIST = {"LINE_LIST": 5, "SPHERE_LIST": 7, "TEXT_VIEW_FACING": 9, "TRIANGLE_LIST": 11}
_DELETEALL = 3


class _Cdr:
    """A little-endian plain-CDR (XCDR1) buffer, as ROS 2's rmw serialises messages: a 4-byte encapsulation
    header, then each primitive aligned to its own size from the end of that header; strings as a uint32 length
    (with the NUL) and the bytes and a NUL; sequences as a uint32 count then the elements; fixed arrays bare."""

    def __init__(self) -> None:
        self.buf = bytearray(b"\x00\x01\x00\x00")

    def _align(self, n: int) -> None:
        self.buf += b"\x00" * ((-(len(self.buf) - 4)) % n)

    def _put(self, fmt: str, size: int, v: Any) -> None:
        self._align(size)
        self.buf += struct.pack("<" + fmt, v)

    def bool(self, v: bool) -> None:
        self.buf.append(1 if v else 0)

    def i32(self, v: int) -> None:
        self._put("i", 4, int(v))

    def u32(self, v: int) -> None:
        self._put("I", 4, int(v))

    def string(self, text: str) -> None:
        b = text.encode("utf-8")
        self.u32(len(b) + 1)
        self.buf += b + b"\x00"

    def f64s(self, values: Any) -> None:
        """A fixed-size float64 array (or consecutive float64 fields)."""
        a = np.ascontiguousarray(values, dtype="<f8").reshape(-1)
        if a.size:
            self._align(8)
            self.buf += a.tobytes()

    def f32s(self, values: Any) -> None:
        a = np.ascontiguousarray(values, dtype="<f4").reshape(-1)
        if a.size:
            self._align(4)
            self.buf += a.tobytes()

    def seq_f64(self, rows: Any, width: int = 1) -> None:
        """A sequence of ``width`` float64s each (1: float64[]; 3: Point[])."""
        a = np.asarray(rows, dtype=np.float64).reshape(-1, width)
        self.u32(a.shape[0])
        self.f64s(a)

    def seq_f32(self, rows: Any, width: int) -> None:
        a = np.asarray(rows, dtype=np.float32).reshape(-1, width)
        self.u32(a.shape[0])
        self.f32s(a)

    def time(self, ns: int) -> None:
        self.i32(ns // 1_000_000_000)
        self.u32(ns % 1_000_000_000)

    def header(self, ns: int, frame_id: str) -> None:
        self.time(ns)
        self.string(frame_id)

    def marker(self, m: dict[str, Any], ns: int, frame_id: str) -> None:
        """One ``visualization_msgs/msg/Marker`` from :meth:`McapWriter._person_markers`' dict."""
        self.header(ns, frame_id)
        self.string(m.get("ns", ""))
        self.i32(m.get("id", 0))
        self.i32(m.get("type", 0))
        self.i32(m.get("action", 0))
        self.f64s([*m.get("position", (0.0, 0.0, 0.0)), 0.0, 0.0, 0.0, 1.0])  # pose: position, orientation
        self.f64s(m.get("scale", (0.0, 0.0, 0.0)))
        self.f32s(m.get("color", (0.0, 0.0, 0.0, 0.0)))
        self.time(0)  # lifetime: forever (the next array's DELETEALL removes it)
        self.bool(False)  # frame_locked
        self.seq_f64(m.get("points", np.zeros((0, 3))), 3)
        self.seq_f32(m.get("colors", np.zeros((0, 4))), 4)
        self.string("")  # texture_resource
        self.header(0, "")  # texture: CompressedImage header, format, data
        self.string("")
        self.u32(0)
        self.u32(0)  # uv_coordinates
        self.string(m.get("text", ""))
        self.string("")  # mesh_resource
        self.string("")  # mesh_file: filename, data
        self.u32(0)
        self.bool(False)  # mesh_use_embedded_materials


def person_geometry(p: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """A result's 24 joints and (with SMPL) 6890 vertices in the camera frame (metres): body-frame points plus
    its full-image translation ``transl`` (every model's; PARE/HMR's crop camera only draws overlays). Without
    SMPL joints: the approximate stick figure of :func:`hpsedge.runtime.draw.approx_skeleton`."""
    t = np.asarray(p.transl, np.float64)
    if p.joints3d is not None:
        joints = np.asarray(p.joints3d, np.float64)
    else:
        from hpsedge.runtime.draw import approx_skeleton

        joints = approx_skeleton(np.asarray(p.pose_rotmat)[None])[0]
    verts = None if p.vertices is None else np.asarray(p.vertices, np.float64) + t
    return joints + t, verts


def _colour(conf: float | None, alpha: float = 1.0) -> tuple[float, float, float, float]:
    """RGBA in [0, 1]: the overlay's confidence colour (red 0 → yellow 0.5 → green 1, grey for None)."""
    from hpsedge.runtime.draw import confidence_color

    r, g, b = confidence_color(conf)
    return (r / 255.0, g / 255.0, b / 255.0, float(alpha))


def _r(a: Any, nd: int = 5) -> Any:
    return None if a is None else np.round(np.asarray(a, dtype=np.float64), nd).tolist()


def person_record(p: Any, index: int) -> dict[str, Any]:
    """The per-person JSON of the ``people`` topic (SMPL parameters, translation and confidence)."""
    tid = getattr(p, "track_id", None)
    score = getattr(p, "detector_score", None)
    bound = getattr(p, "error_bound_mm", None)
    return {
        "id": int(tid) if tid is not None and tid >= 0 else index,
        "track_id": None if tid is None or tid < 0 else int(tid),
        "box": _r(p.box, 2),
        "detector_score": None if score is None else round(float(score), 4),
        "confidence": None if p.confidence is None else round(float(p.confidence), 4),
        "score": None if p.score is None else round(float(p.score), 4),
        "pose_axis_angle": _r(np.asarray(p.pose_axis_angle).reshape(-1)),
        "betas": _r(p.betas),
        "transl": _r(p.transl),
        "joint_confidence": _r(p.joint_confidence, 4),
        "sigma": _r(p.sigma, 5),
        "behind_camera": bool(getattr(p, "behind_camera", False)),
        # metric confidence (hpsedge calib error-bound): joint group → mm at the stated coverage, or the reason
        "error_bound_mm": None if bound is None else {g: round(float(v), 1) for g, v in bound.items()},
        "error_bound_coverage": getattr(p, "error_bound_coverage", None),
        "error_bound_reason": getattr(p, "error_bound_reason", None),
    }


class McapWriter(PartFile):
    """An MCAP file of ROS 2 messages (see the module docstring). Written as ``<name>.part`` and renamed when
    closed; an existing file is not replaced unless ``force``."""

    def __init__(self, path: str | Path, *, faces: np.ndarray | None = None, intrinsics: Any | None = None,
                 frame_id: str = "camera_optical_frame", prefix: str = "/hpsedge", mesh: bool = True,
                 start_ns: int | None = None, model: str = "", force: bool = False) -> None:
        try:
            from mcap.writer import Writer
        except ImportError:
            raise HpsedgeError("writing MCAP needs the mcap package",
                               hint="pip install 'hpsedge[ros]' (from a clone: pip install '.[ros]')") from None
        self.path = Path(path)
        if self.path.exists() and not force:
            raise InputError(f"{self.path} exists; not overwriting it", hint="pass --force, or choose another path")
        if not self.path.parent.is_dir():
            raise InputError(f"folder {self.path.parent} does not exist")
        if not prefix.startswith("/") or prefix.endswith("/"):
            raise InputError(f"topic prefix must start with '/' and not end with one, got {prefix!r}")
        self._part = self.path.with_name(self.path.name + ".part")
        self._fh = open(self._part, "wb")  # noqa: SIM115 (closed in close())
        self._writer = Writer(self._fh)
        from hpsedge._version import __version__

        self._writer.start(profile="ros2", library=f"hpsedge {__version__}")
        self.faces = None if faces is None else np.asarray(faces, dtype=np.int64)
        self.intrinsics = intrinsics
        self.frame_id, self.prefix, self.mesh, self.model = frame_id, prefix, mesh, model
        self.start_ns = time.time_ns() if start_ns is None else int(start_ns)
        self._channels: dict[str, int] = {}
        self.messages = 0
        self._seq = 0
        self._closed = False

    @property
    def topics(self) -> dict[str, str]:
        """Topic → ROS 2 type of what this writer writes."""
        out = {f"{self.prefix}/markers": "visualization_msgs/msg/MarkerArray",
               f"{self.prefix}/people": "std_msgs/msg/String"}
        if self.intrinsics is not None:
            out[f"{self.prefix}/camera_info"] = "sensor_msgs/msg/CameraInfo"
        return out

    def write_results(self, results: Any) -> None:
        """One :class:`hpsedge.runtime.api.Results` (a picture or a frame)."""
        if self.faces is None and results.faces is not None:
            self.faces = np.asarray(results.faces, dtype=np.int64)
        if self.intrinsics is None:
            self.intrinsics = results.intrinsics
        t = results.time if results.time is not None else results.index / 30.0
        self.write(results.people, image_hw=results.image_hw, time_s=t, index=results.index)

    def write(self, people: list[Any], *, image_hw: tuple[int, int], time_s: float, index: int) -> None:
        """The messages of one frame at ``start_ns + time_s`` (seconds)."""
        if self._closed:
            raise HpsedgeError("this MCAP writer is closed")
        ns = self.start_ns + round(float(time_s) * 1e9)
        markers: list[dict[str, Any]] = [{"action": _DELETEALL}]
        for i, p in enumerate(people):
            if not getattr(p, "behind_camera", False):
                markers += self._person_markers(p, i)
        buf = _Cdr()
        buf.u32(len(markers))
        for m in markers:
            buf.marker(m, ns, self.frame_id)
        self._put(f"{self.prefix}/markers", "visualization_msgs/msg/MarkerArray", buf, ns)
        from hpsedge.runtime.manifest import dumps_strict

        doc = {"frame": int(index), "stamp": ns / 1e9, "frame_id": self.frame_id, "model": self.model,
               "image_size": [int(image_hw[1]), int(image_hw[0])],
               "people": [person_record(p, i) for i, p in enumerate(people)]}
        buf = _Cdr()
        buf.string(dumps_strict(doc))
        self._put(f"{self.prefix}/people", "std_msgs/msg/String", buf, ns)
        if self.intrinsics is not None:
            info = self.intrinsics.camera_info(image_hw)
            buf = _Cdr()
            buf.header(ns, self.frame_id)
            buf.u32(info["height"])
            buf.u32(info["width"])
            buf.string(info["distortion_model"])
            buf.seq_f64(info["d"])
            buf.f64s(info["k"])
            buf.f64s(info["r"])
            buf.f64s(info["p"])
            for _ in range(6):  # binning_x, binning_y, roi x_offset, y_offset, height, width
                buf.u32(0)
            buf.bool(False)  # roi.do_rectify
            self._put(f"{self.prefix}/camera_info", "sensor_msgs/msg/CameraInfo", buf, ns)

    def _person_markers(self, p: Any, index: int) -> list[dict[str, Any]]:
        joints, verts = person_geometry(p)
        if not np.isfinite(joints).all():
            return []
        tid = getattr(p, "track_id", None)
        mid = int(tid) if tid is not None and tid >= 0 else index
        jc = p.joint_confidence
        joint_cols = np.array([_colour(None if jc is None else float(jc[j])) for j in range(24)])
        child = np.arange(1, 24)
        parent = np.asarray(SMPL_PARENTS)[1:]
        bones = np.stack((parent, child), axis=1).reshape(-1)  # LINE_LIST: parent, child per bone
        out = [
            {"ns": "skeleton", "id": mid, "type": _MARKER_LIST["LINE_LIST"], "scale": (0.02, 0.0, 0.0),
             "color": _colour(p.confidence), "points": joints[bones], "colors": joint_cols[np.repeat(child, 2)]},
            {"ns": "joints", "id": mid, "type": _MARKER_LIST["SPHERE_LIST"], "scale": (0.04, 0.04, 0.04),
             "color": _colour(p.confidence), "points": joints, "colors": joint_cols},
        ]
        if self.mesh and verts is not None and self.faces is not None and np.isfinite(verts).all():
            out.append({"ns": "mesh", "id": mid, "type": _MARKER_LIST["TRIANGLE_LIST"], "scale": (1.0, 1.0, 1.0),
                        "color": _colour(p.confidence, 0.85), "points": verts[self.faces.reshape(-1)]})
        conf = "no confidence" if p.confidence is None else f"{p.confidence:.2f}"
        head = joints[15]
        out.append({"ns": "label", "id": mid, "type": _MARKER_LIST["TEXT_VIEW_FACING"],
                    "position": (float(head[0]), float(head[1]) - 0.25, float(head[2])), "scale": (0.0, 0.0, 0.12),
                    "color": _colour(p.confidence), "text": f"{mid}: {conf}"})
        return out

    def _put(self, topic: str, schema: str, buf: _Cdr, ns: int) -> None:
        cid = self._channels.get(topic)
        if cid is None:
            sid = self._writer.register_schema(name=schema, encoding="ros2msg", data=MSGDEFS[schema].encode())
            cid = self._channels[topic] = self._writer.register_channel(topic=topic, message_encoding="cdr",
                                                                        schema_id=sid)
        self._writer.add_message(channel_id=cid, log_time=ns, data=bytes(buf.buf), publish_time=ns, sequence=self._seq)
        self._seq += 1
        self.messages += 1

    def _finish(self) -> None:
        self._writer.finish()
        self._fh.close()

    def _drop(self) -> None:
        self._fh.close()
