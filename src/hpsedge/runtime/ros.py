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
  per-joint confidence and σ (:func:`person_record`);
* ``<prefix>/camera_info``: ``sensor_msgs/msg/CameraInfo``, the calibrated camera, when one was given.

The message definitions are written into the file (``ros2msg`` encoding, ROS 2 Humble and later, whose
``Marker`` has the texture and mesh-file fields), as rosbag2 does, so readers without ROS decode it.
``mcap`` and ``mcap-ros2-support`` (the ``ros`` extra) are imported when a writer is opened: the runtime
itself stays numpy-only. A person without an SMPL file gets the approximate stick figure of
:mod:`hpsedge.runtime.draw` (no mesh).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import HpsedgeError, InputError
from hpsedge.runtime.confidence import SMPL_PARENTS

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


def _colour(conf: float | None, alpha: float = 1.0) -> dict[str, float]:
    from hpsedge.runtime.draw import confidence_color

    r, g, b = confidence_color(conf)
    return {"r": r / 255.0, "g": g / 255.0, "b": b / 255.0, "a": float(alpha)}


def _r(a: Any, nd: int = 5) -> Any:
    return None if a is None else np.round(np.asarray(a, dtype=np.float64), nd).tolist()


def person_record(p: Any, index: int) -> dict[str, Any]:
    """The per-person JSON of the ``people`` topic (SMPL parameters, translation and confidence)."""
    tid = getattr(p, "track_id", None)
    score = getattr(p, "detector_score", None)
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
    }


class McapWriter:
    """An MCAP file of ROS 2 messages (see the module docstring). Written as ``<name>.part`` and renamed when
    closed; an existing file is not replaced unless ``force``."""

    def __init__(self, path: str | Path, *, faces: np.ndarray | None = None, intrinsics: Any | None = None,
                 frame_id: str = "camera_optical_frame", prefix: str = "/hpsedge", mesh: bool = True,
                 start_ns: int | None = None, model: str = "", force: bool = False) -> None:
        try:
            from mcap_ros2.writer import Writer
        except ImportError:
            raise HpsedgeError("writing MCAP needs the mcap and mcap-ros2-support packages",
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
        self._schemas = {n: self._writer.register_msgdef(n, MSGDEFS[n]) for n in MSGDEFS}
        self.faces = None if faces is None else np.asarray(faces, dtype=np.int64)
        self.intrinsics = intrinsics
        self.frame_id, self.prefix, self.mesh, self.model = frame_id, prefix, mesh, model
        self.start_ns = time.time_ns() if start_ns is None else int(start_ns)
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
        header = {"stamp": {"sec": ns // 1_000_000_000, "nanosec": ns % 1_000_000_000}, "frame_id": self.frame_id}
        markers: list[dict[str, Any]] = [{"header": header, "ns": "", "id": 0, "type": 0, "action": _DELETEALL}]
        for i, p in enumerate(people):
            if getattr(p, "behind_camera", False):
                continue
            markers += self._person_markers(p, i, header)
        self._put(f"{self.prefix}/markers", "visualization_msgs/msg/MarkerArray", {"markers": markers}, ns)
        from hpsedge.runtime.manifest import dumps_strict

        doc = {"frame": int(index), "stamp": ns / 1e9, "frame_id": self.frame_id, "model": self.model,
               "image_size": [int(image_hw[1]), int(image_hw[0])],
               "people": [person_record(p, i) for i, p in enumerate(people)]}
        self._put(f"{self.prefix}/people", "std_msgs/msg/String", {"data": dumps_strict(doc)}, ns)
        if self.intrinsics is not None:
            info = {"header": header, **self.intrinsics.camera_info(image_hw), "binning_x": 0, "binning_y": 0,
                    "roi": {"x_offset": 0, "y_offset": 0, "height": 0, "width": 0, "do_rectify": False}}
            self._put(f"{self.prefix}/camera_info", "sensor_msgs/msg/CameraInfo", info, ns)

    def _person_markers(self, p: Any, index: int, header: dict[str, Any]) -> list[dict[str, Any]]:
        joints, verts = person_geometry(p)
        if not np.isfinite(joints).all():
            return []
        tid = getattr(p, "track_id", None)
        mid = int(tid) if tid is not None and tid >= 0 else index
        base = {"header": header, "id": mid, "action": 0, "pose": {"position": {"x": 0.0, "y": 0.0, "z": 0.0},
                "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}}, "frame_locked": False}

        def pts(a: np.ndarray) -> list[dict[str, float]]:
            return [{"x": float(x), "y": float(y), "z": float(z)} for x, y, z in a]

        jc = p.joint_confidence
        bones = [(SMPL_PARENTS[j], j) for j in range(1, 24)]
        bone_pts = joints[np.array(bones).reshape(-1)]
        bone_cols = [_colour(None if jc is None else float(jc[j])) for _, j in bones for _ in (0, 1)]
        out = [
            {**base, "ns": "skeleton", "type": _MARKER_LIST["LINE_LIST"], "scale": {"x": 0.02, "y": 0.0, "z": 0.0},
             "color": _colour(p.confidence), "points": pts(bone_pts), "colors": bone_cols},
            {**base, "ns": "joints", "type": _MARKER_LIST["SPHERE_LIST"], "scale": {"x": 0.04, "y": 0.04, "z": 0.04},
             "color": _colour(p.confidence), "points": pts(joints),
             "colors": [_colour(None if jc is None else float(c)) for c in (jc if jc is not None else [None] * 24)]},
        ]
        if self.mesh and verts is not None and self.faces is not None and np.isfinite(verts).all():
            out.append({**base, "ns": "mesh", "type": _MARKER_LIST["TRIANGLE_LIST"],
                        "scale": {"x": 1.0, "y": 1.0, "z": 1.0}, "color": _colour(p.confidence, 0.85),
                        "points": pts(verts[self.faces.reshape(-1)])})
        conf = "no confidence" if p.confidence is None else f"{p.confidence:.2f}"
        head = joints[15]
        out.append({**base, "ns": "label", "type": _MARKER_LIST["TEXT_VIEW_FACING"],
                    "pose": {**base["pose"], "position": {"x": float(head[0]), "y": float(head[1]) - 0.25,
                                                          "z": float(head[2])}},
                    "scale": {"x": 0.0, "y": 0.0, "z": 0.12}, "color": _colour(p.confidence),
                    "text": f"{mid}: {conf}"})
        return out

    def _put(self, topic: str, schema: str, msg: dict[str, Any], ns: int) -> None:
        self._writer.write_message(topic, self._schemas[schema], msg, log_time=ns, publish_time=ns, sequence=self._seq)
        self._seq += 1
        self.messages += 1

    def close(self) -> Path:
        """Finish the file and move it into place."""
        if not self._closed:
            self._closed = True
            self._writer.finish()
            self._fh.close()
            self._part.replace(self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial file (an error before the end)."""
        if not self._closed:
            self._closed = True
            self._fh.close()
            self._part.unlink(missing_ok=True)

    def __enter__(self) -> McapWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self.close()
        else:
            self.abort()
