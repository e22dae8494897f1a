"""Results → a Rerun recording (``.rrd``): meshes coloured by confidence, skeletons, the camera and the picture.

    from hpsedge.runtime.rerun_log import RerunLog
    with RerunLog("people.rrd") as log:
        for r in model("walk.mp4", stream=True):
            log.log_results(r)
    # then: rerun people.rrd

Entities (OpenCV camera convention, ``ViewCoordinates.RDF``: x right, y down, z forward; metres):

* ``world/camera``: ``Pinhole`` (the calibrated camera, or each frame's full-image camera: focal, image centre);
  ``world/camera/image``: the picture (JPEG-compressed, ``images=True``);
* ``world/camera/image/people/<id>``: ``LineStrips2D`` of the reported 2D skeleton (pixels);
* ``world/people/<id>/mesh``: ``Mesh3D`` with every vertex in the person's confidence colour (red 0 → yellow
  0.5 → green 1, grey without a confidence: the overlay's colours); its triangles are logged once, static,
  and each frame updates the vertex positions and colours;
* ``world/people/<id>/skeleton``: ``LineStrips3D`` (one strip per bone, coloured by its joint's confidence);
  ``world/people/<id>/joints``: ``Points3D``;
* ``people/<id>/confidence``: ``Scalars`` (a time series per person).

``<id>`` is the track id (videos, streams) or the person's index (still pictures). People who leave are
cleared. Timelines: ``frame`` (sequence) and ``time`` (seconds, when the source has timestamps).
``rerun-sdk`` (the ``rerun`` extra) is imported when a log is opened: the runtime stays numpy-only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import HpsedgeError, InputError
from hpsedge.runtime.confidence import SMPL_PARENTS
from hpsedge.runtime.files import PartFile
from hpsedge.runtime.ros import person_geometry

__all__ = ["RerunLog"]


def _rr() -> Any:
    try:
        import rerun as rr
    except ImportError:
        raise HpsedgeError("logging to Rerun needs the rerun-sdk package",
                           hint="pip install 'hpsedge[rerun]' (from a clone: pip install '.[rerun]')") from None
    return rr


def _rgba(conf: float | None) -> int:
    """The overlay's confidence colour packed as Rerun's 0xRRGGBBAA (packed colours convert ~300× faster
    than RGB rows for a 6890-vertex mesh)."""
    from hpsedge.runtime.draw import confidence_color

    r, g, b = confidence_color(conf)
    return (r << 24) | (g << 16) | (b << 8) | 0xFF


class RerunLog(PartFile):
    """A Rerun recording written to an ``.rrd`` file (see the module docstring). Written as ``<name>.part``
    and renamed when closed; an existing file is not replaced unless ``force``."""

    def __init__(self, path: str | Path, *, faces: np.ndarray | None = None, intrinsics: Any | None = None,
                 images: bool = True, application_id: str = "hpsedge", force: bool = False) -> None:
        rr = _rr()
        self.path = Path(path)
        if self.path.exists() and not force:
            raise InputError(f"{self.path} exists; not overwriting it", hint="pass --force, or choose another path")
        if not self.path.parent.is_dir():
            raise InputError(f"folder {self.path.parent} does not exist")
        if self.path.suffix != ".rrd":
            raise InputError(f"{self.path}: a Rerun recording is an .rrd file")
        self._part = self.path.with_name(self.path.stem + ".part.rrd")
        self.rr = rr
        self.rec = rr.RecordingStream(application_id)
        self.rec.save(str(self._part))
        self.rec.log("world/camera", rr.ViewCoordinates.RDF, static=True)
        self.faces = None if faces is None else np.asarray(faces, dtype=np.uint32)
        self.intrinsics = intrinsics
        self.images = images
        self._shown: set[int] = set()
        self._faces_logged: set[int] = set()
        self._static_camera = False
        self._closed = False

    def log_results(self, results: Any) -> None:
        """One :class:`hpsedge.runtime.api.Results` (a picture or a frame)."""
        if self.faces is None and results.faces is not None:
            self.faces = np.asarray(results.faces, dtype=np.uint32)
        if self.intrinsics is None:
            self.intrinsics = results.intrinsics
        self.log(results.people, image=results.image, index=results.index, time_s=results.time)

    def log(self, people: list[Any], *, image: np.ndarray | None = None, image_hw: tuple[int, int] | None = None,
            index: int, time_s: float | None = None) -> None:
        """The entities of one frame."""
        if self._closed:
            raise HpsedgeError("this Rerun log is closed")
        rr, rec = self.rr, self.rec
        hw = image.shape[:2] if image is not None else image_hw
        if hw is None:
            raise InputError("give the image or its size (image_hw)")
        h, w = int(hw[0]), int(hw[1])
        rec.set_time("frame", sequence=int(index))
        if time_s is not None:
            rec.set_time("time", duration=float(time_s))
        self._log_camera(people, h, w)
        if image is not None and self.images:
            rec.log("world/camera/image", rr.Image(np.ascontiguousarray(image)).compress(jpeg_quality=85))
        seen: set[int] = set()
        bones = [(SMPL_PARENTS[j], j) for j in range(1, 24)]
        bone_idx = np.array(bones)  # [23, 2] parent, child
        for i, p in enumerate(people):
            tid = getattr(p, "track_id", None)
            pid = int(tid) if tid is not None and tid >= 0 else i
            if getattr(p, "behind_camera", False):
                continue
            joints, verts = person_geometry(p)
            if not np.isfinite(joints).all():
                continue
            seen.add(pid)
            colour = _rgba(p.confidence)
            jc = p.joint_confidence
            bone_cols = np.array([_rgba(None if jc is None else float(jc[j])) for _, j in bones], dtype=np.uint32)
            if verts is not None and self.faces is not None:
                mesh = f"world/people/{pid}/mesh"
                if pid not in self._faces_logged:  # the triangles never change: once, static (¾ of a mesh's bytes)
                    rec.log(mesh, rr.Mesh3D.from_fields(triangle_indices=self.faces), static=True)
                    self._faces_logged.add(pid)
                rec.log(mesh, rr.Mesh3D.from_fields(vertex_positions=verts.astype(np.float32),
                                                    vertex_colors=np.full(len(verts), colour, dtype=np.uint32)))
            # one [23, 2, 3] array: a list of 23 small arrays converts ~1000× slower
            rec.log(f"world/people/{pid}/skeleton", rr.LineStrips3D(
                joints[bone_idx].astype(np.float32), colors=bone_cols, radii=0.01))
            rec.log(f"world/people/{pid}/joints", rr.Points3D(joints.astype(np.float32), colors=np.uint32(colour), radii=0.02))
            if p.joints2d is not None and np.isfinite(p.joints2d).all():
                j2 = np.asarray(p.joints2d, np.float32)
                rec.log(f"world/camera/image/people/{pid}", rr.LineStrips2D(j2[bone_idx], colors=bone_cols))
            if p.confidence is not None:
                rec.log(f"people/{pid}/confidence", rr.Scalars(float(p.confidence)))
        for gone in self._shown - seen:
            rec.log(f"world/people/{gone}", rr.Clear(recursive=True))
            rec.log(f"world/camera/image/people/{gone}", rr.Clear(recursive=True))
        self._shown = seen

    def _log_camera(self, people: list[Any], h: int, w: int) -> None:
        rr = self.rr
        if self.intrinsics is not None:
            if not self._static_camera:
                k = self.intrinsics
                self.rec.log("world/camera", rr.Pinhole(focal_length=[k.fx, k.fy], principal_point=[k.cx, k.cy],
                                                        resolution=[w, h]), static=True)
                self._static_camera = True
            return
        # the models' own full-image camera: focal from the results (the same for everyone in a frame)
        focal = next((float(p.focal) for p in people), None)
        if focal is None:
            from hpsedge.runtime.preprocess import focal_length

            focal = focal_length((h, w))
        self.rec.log("world/camera", rr.Pinhole(focal_length=focal, principal_point=[w / 2.0, h / 2.0],
                                                resolution=[w, h]))

    def _finish(self) -> None:
        self.rec.flush()
        self.rec.disconnect()

    def _drop(self) -> None:
        self.rec.disconnect()
