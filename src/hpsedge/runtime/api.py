"""The one-call Python API: any input → :class:`Results` with ``.plot()``, ``.save()``, ``.to_json()``.

    from hpsedge import Model
    model = Model("build/poco-cliff", smpl="SMPL_NEUTRAL.npz", camera="head_camera.yaml")
    results = model("street.jpg")                 # a path, an array, a folder or a list of them → list
    results[0].save("street_overlay.png")         # the overlay picture (also .plot() → RGB array)
    print(results[0].to_json())
    for r in model("rtsp://robot/cam", stream=True):   # videos, streams, cameras → a generator
        for person in r.people:
            print(person.track_id, person.confidence, person.transl)

**One input, one behaviour.** The people in a picture come from, in this order: the ``boxes`` given; else
the folder's person detector (or ``detector=``); else the whole picture as one person box. Still pictures
(files, arrays, folders, lists of them) are independent: each is detected and regressed on its own, with no
tracking or smoothing. Videos, streams and cameras run the streaming
:class:`~hpsedge.runtime.pipeline.Pipeline` (detect → track → regress → filter → SMPL): people carry track
ids and the temporal filter's smoothing. ``hpsedge run --image`` and ``--source`` give the same people on the
same picture.

``stream=False`` (the default) returns a list; a camera or network stream never ends, so it needs
``stream=True`` (a generator; a video's list holds every frame in memory, so prefer ``stream=True`` there too).
Numpy and the chosen backend only, as the rest of :mod:`hpsedge.runtime`; Pillow is needed to read image
files and to draw, PyAV for videos, streams and cameras.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import InputError
from hpsedge.runtime.camera import CameraIntrinsics, as_intrinsics
from hpsedge.runtime.predictor import DEFAULT_MAX_BOXES, PersonResult, Predictor

log = logging.getLogger(__name__)

__all__ = ["DetectedPerson", "Model", "Results", "RobotOutputs", "people_boxes"]

_STILL = ("image", "folder", "array")


@dataclass
class DetectedPerson(PersonResult):
    """A person of a still picture: a :class:`PersonResult` plus the detector's score for its box (None when
    the box was given or the whole picture was taken)."""

    detector_score: float | None = None


@dataclass
class Results:
    """One picture or frame and its people (``PersonResult`` for pictures, ``TrackedPerson`` with track ids for
    videos and streams). Iterating it, ``len()`` and indexing go over ``people``."""

    image: np.ndarray  #: H×W×3 uint8 RGB, the picture as given
    people: list[PersonResult]
    name: str  #: file name, source name, or ``array``/``array_<i>``
    index: int = 0  #: position in the input (frame number for videos and streams)
    time: float | None = None  #: seconds: the frame's timestamp (videos, streams, cameras)
    source_kind: str = "image"  #: image | folder | array | video | stream | camera
    model: str = ""
    backend: str = ""
    speed: dict[str, float] = field(default_factory=dict)  #: milliseconds per stage for this picture
    faces: np.ndarray | None = field(default=None, repr=False)  #: SMPL triangles, when an SMPL file was given
    legend: str | None = field(default=None, repr=False)
    intrinsics: CameraIntrinsics | None = None  #: the calibrated camera, when one was given

    def __len__(self) -> int:
        return len(self.people)

    def __iter__(self) -> Iterator[PersonResult]:
        return iter(self.people)

    def __getitem__(self, i: int) -> PersonResult:
        return self.people[i]

    @property
    def image_hw(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])

    @property
    def boxes(self) -> np.ndarray:
        """``[K, 4]`` x1, y1, x2, y2 of the people (pixels)."""
        return np.stack([p.box for p in self.people]) if self.people else np.zeros((0, 4), np.float32)

    # ------------------------------------------------------------------------------------------ output
    def plot(self, side_view: bool = False) -> np.ndarray:
        """The overlay picture (H×W×3 uint8 RGB): mesh (or skeleton) in each person's camera, coloured by
        confidence (see :mod:`hpsedge.runtime.draw`). Needs Pillow."""
        from hpsedge.runtime.draw import render_overlay

        return render_overlay(self.image, self.people, self.faces, legend=self.legend, side_view=side_view)

    def save(self, path: str | Path | None = None, *, side_view: bool = False, force: bool = False) -> Path:
        """Write :meth:`plot` as a PNG (default ``<name stem>_overlay.png`` in the working folder). An existing
        file is not replaced unless ``force``."""
        from hpsedge.runtime.draw import _pil

        out = Path(path) if path is not None else Path(f"{self.stem}_overlay.png")
        if out.exists() and not force:
            raise InputError(f"{out} exists; not overwriting it", hint="pass force=True, or choose another path")
        if not out.parent.is_dir():
            raise InputError(f"folder {out.parent} does not exist")
        image_mod, _ = _pil()
        image_mod.fromarray(self.plot(side_view=side_view)).save(out, format="PNG")
        return out

    @property
    def stem(self) -> str:
        if self.source_kind in ("image", "folder"):
            return Path(self.name).stem
        return f"{Path(self.name).stem or 'frame'}_{self.index:06d}"

    def to_dict(self, include_mesh: bool = False) -> dict[str, Any]:
        """The JSON document of ``hpsedge run --image`` (one per picture), plus frame, time and camera."""
        doc: dict[str, Any] = {
            "image": self.name,
            "image_size": [int(self.image.shape[1]), int(self.image.shape[0])],
            "model": self.model,
            "backend": self.backend,
        }
        if self.source_kind not in _STILL:
            doc["frame"] = int(self.index)
            doc["time"] = None if self.time is None else round(float(self.time), 6)
        if self.intrinsics is not None:
            doc["camera"] = self.intrinsics.to_dict()
        doc["persons"] = [p.to_dict(include_mesh=include_mesh) for p in self.people]
        return doc

    def to_json(self, include_mesh: bool = False, indent: int | None = None) -> str:
        """:meth:`to_dict` as strict JSON text (no NaN: a non-finite value is an error, not invalid JSON)."""
        from hpsedge.runtime.manifest import dumps_strict

        return dumps_strict(self.to_dict(include_mesh=include_mesh), indent=indent)


def people_boxes(detector: Any | None, rgb: np.ndarray, boxes: Any | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The person boxes of one still picture and their detector scores: ``boxes`` as given (scores None); else
    the detector's (an empty ``[0, 4]`` when it finds nobody); else the whole picture as one box. The rule
    behind both ``Model`` and ``hpsedge run --image``."""
    if boxes is not None:
        return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), None
    if detector is not None:
        found = detector(rgb)
        return np.asarray(found.boxes, dtype=np.float64).reshape(-1, 4), np.asarray(found.scores, dtype=np.float64)
    h, w = rgb.shape[:2]
    return np.array([[0.0, 0.0, float(w), float(h)]]), None


class Model:
    """A build folder ready to run on anything (see the module docstring). Close it, or use ``with``."""

    def __init__(self, folder: str | Path, smpl: str | Path | Any | None = None, *,
                 camera: Any | None = None, detector: str | Path | None = None, backend: str = "auto",
                 device: str = "auto", threads: int | None = None, precision: str | None = None,
                 j_regressor_extra: str | Path | None = None, smooth: bool = True,
                 max_boxes: int = DEFAULT_MAX_BOXES, **detector_options: Any) -> None:
        """
        Args:
            folder: a build folder (``hpsedge export onnx|build``), its manifest or its graph.
            smpl: an SMPL ``.npz``/``.pkl`` for meshes and joints (without it: parameters, camera, confidence).
            camera: the calibrated camera the pictures come from (``CameraIntrinsics``, a ROS camera_info YAML
                or JSON path, ``"fx,fy,cx,cy[,k1,k2,p1,p2,k3]"``; :func:`~hpsedge.runtime.camera.as_intrinsics`).
            detector: a person-detector ONNX (default: the folder's own, when it has one).
            smooth: the temporal filter's smoothing for videos and streams.
            max_boxes: most people per picture.
        """
        from hpsedge.runtime.pipeline import Pipeline
        from hpsedge.runtime.predictor import _load_smpl

        intr = as_intrinsics(camera)
        self._pipeline = Pipeline.load(folder, smpl=None, detector=detector, backend=backend, device=device,
                                       threads=threads, precision=precision, smooth=smooth, need_detector=False,
                                       intrinsics=intr, **detector_options)
        body = _load_smpl(smpl, j_regressor_extra) if smpl is not None else None
        self._pipeline.smpl = body
        self._pipeline.predictor.max_boxes = max_boxes
        # the still-picture predictor: the same loaded graph, with SMPL attached (the pipeline's runs SMPL itself
        # after the filter)
        self.predictor: Predictor = copy.copy(self._pipeline.predictor)
        self.predictor.smpl = body
        self.detector = self._pipeline.detector
        self.smpl = body
        from hpsedge.runtime.draw import legend_for

        self.legend = legend_for(self.predictor.manifest)

    # ------------------------------------------------------------------------------------------ facts
    @property
    def intrinsics(self) -> CameraIntrinsics | None:
        return self.predictor.intrinsics

    @property
    def name(self) -> str:
        return self.predictor.manifest.model_name

    def _backend_label(self) -> str:
        b = self.predictor.backend
        return f"{b.name} ({b.device})"

    # ------------------------------------------------------------------------------------------ run
    def __call__(self, source: Any, *, boxes: Any | None = None, stream: bool = False, bgr: bool = False,
                 max_frames: int | None = None) -> list[Results] | Iterator[Results]:
        """Run ``source``: an image path, an H×W×3 uint8 array (RGB; ``bgr=True`` for OpenCV's order), a Pillow
        image, a folder of images, a list of those, a video file, an rtsp/http stream, or a camera (``0``,
        ``"/dev/video0"``).

        ``boxes``: person boxes instead of the detector: ``[K, 4]`` for one picture, a list of those (one per
        picture or frame), or a boxes file (JSON keyed by image file name, as ``hpsedge run --boxes``).
        """
        kind, items = self._classify(source)
        if kind in ("stream", "camera") and not stream:
            raise InputError(f"a {kind} never ends: a list of its results cannot be returned",
                             hint="pass stream=True and iterate over the results")
        if max_frames is not None and max_frames < 1:
            raise InputError(f"max_frames must be at least 1, got {max_frames}")
        gen = self._frames(source, boxes, max_frames, bgr) if kind in ("video", "stream", "camera") \
            else self._stills(items, boxes, bgr, max_frames)
        return gen if stream else list(gen)

    predict = __call__

    def _classify(self, source: Any) -> tuple[str, list[Any]]:
        from hpsedge.runtime.sources import source_kind

        if isinstance(source, np.ndarray) or _is_pil(source):
            return "array", [source]
        if isinstance(source, (list, tuple)):
            if not source:
                raise InputError("an empty list of pictures")
            for s in source:
                if not (isinstance(s, np.ndarray) or _is_pil(s)) and source_kind(_as_src(s)) not in ("image",):
                    raise InputError(f"a list holds pictures (paths or arrays); {str(s)[:80]!r} is not one",
                                     hint="run videos, folders and streams one call each")
            return "list", list(source)
        if not isinstance(source, (str, Path, int)):
            raise InputError(f"cannot run on a {type(source).__name__}",
                             hint="give a path, a folder, an H×W×3 uint8 array, a list of them, a video, a URL or a camera")
        kind = source_kind(_as_src(source))
        if kind in ("image", "folder"):
            from hpsedge.runtime.io import list_images

            return kind, list(list_images(Path(str(source))))
        return kind, []

    def _stills(self, items: list[Any], boxes: Any | None, bgr: bool, max_frames: int | None) -> Iterator[Results]:
        import time

        from hpsedge.runtime.io import read_image

        per = _boxes_per_item(items, boxes)
        for i, item in enumerate(items):
            if max_frames is not None and i >= max_frames:
                return
            if isinstance(item, (str, Path)):
                rgb, name, kind = read_image(item), str(item), "image"
            else:
                rgb = _as_rgb(item, bgr)
                name, kind = ("array" if len(items) == 1 else f"array_{i}"), "array"
            t0 = time.perf_counter()
            bxs, scores = people_boxes(self.detector, rgb, per[i])
            t1 = time.perf_counter()
            people = self.predictor.predict(rgb, bxs) if len(bxs) else []
            t2 = time.perf_counter()
            out = [DetectedPerson(**{f: getattr(p, f) for f in p.__dataclass_fields__},
                                  detector_score=None if scores is None else float(scores[n]))
                   for n, p in enumerate(people)]
            yield self._results(rgb, out, name, i, None, kind,
                                {"detector": 1000 * (t1 - t0), "regressor+smpl": 1000 * (t2 - t1)})

    def _frames(self, source: Any, boxes: Any | None, max_frames: int | None, bgr: bool) -> Iterator[Results]:
        from hpsedge.runtime.sources import open_source

        per = None
        if boxes is not None:
            if isinstance(boxes, (str, Path)):
                raise InputError("a boxes file goes with pictures; for a video give a list of [K, 4] per frame")
            per = list(boxes)
        if self.detector is None and per is None:
            raise InputError(f"{self.name}'s folder has no person detector, and no boxes were given",
                             hint="pass detector='det.onnx', boxes=[...] per frame, or build the folder with "
                                  "--detector")
        src = open_source(source if not isinstance(source, Path) else str(source))
        pipe = self._pipeline
        pipe.reset()
        pipe.set_fps(src.fps)
        try:
            for n, frame in enumerate(src):
                if max_frames is not None and n >= max_frames:
                    return
                rgb = frame.rgb[..., ::-1].copy() if bgr else frame.rgb
                bx = None if per is None else (per[frame.index] if frame.index < len(per) else np.zeros((0, 4)))
                res = pipe(rgb, boxes=bx)
                yield self._results(rgb, list(res.people), src.name, frame.index, frame.time, src.kind,
                                    {k: 1000 * v for k, v in res.seconds.items()})
        finally:
            src.close()

    def _results(self, rgb: np.ndarray, people: list[Any], name: str, index: int, time_s: float | None,
                 kind: str, speed: dict[str, float]) -> Results:
        return Results(rgb, people, name, index, time_s, kind, self.name, self._backend_label(), speed,
                       self.smpl.faces if self.smpl is not None else None, self.legend, self.intrinsics)

    def close(self) -> None:
        self._pipeline.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _is_pil(x: Any) -> bool:
    return hasattr(x, "convert") and hasattr(x, "size") and hasattr(x, "mode")


def _as_src(s: Any) -> str | int:
    return s if isinstance(s, int) else str(s)


def _as_rgb(item: Any, bgr: bool) -> np.ndarray:
    if _is_pil(item):
        return np.asarray(item.convert("RGB"), dtype=np.uint8).copy()
    arr = np.asarray(item)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise InputError(f"an array picture must be H×W×3 uint8, got {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr[..., ::-1]) if bgr else arr


def _boxes_per_item(items: Sequence[Any], boxes: Any | None) -> list[Any | None]:
    """``boxes`` spread over the pictures: None; one [K, 4] for one picture; a list, one per picture; or a
    boxes file keyed by image file name."""
    if boxes is None:
        return [None] * len(items)
    if isinstance(boxes, (str, Path)):
        from hpsedge.runtime.io import boxes_for, load_boxes

        paths = [p for p in items if isinstance(p, (str, Path))]
        if len(paths) != len(items):
            raise InputError("a boxes file matches image files by name; arrays need boxes as [K, 4] lists")
        return list(boxes_for([Path(p) for p in paths], load_boxes(boxes), str(boxes)))
    arr = None
    try:
        arr = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None  # ragged: one list per picture
    if arr is not None and arr.ndim == 2 and arr.shape[1] == 4 and len(items) == 1:
        return [arr]
    if arr is not None and arr.ndim == 1 and arr.shape == (4,) and len(items) == 1:
        return [arr[None]]
    per = list(boxes) if isinstance(boxes, Iterable) else []
    if len(per) != len(items):
        raise InputError(f"boxes for {len(per)} picture(s) but {len(items)} picture(s) given",
                         hint="give one [K, 4] list per picture, or a boxes file")
    return per



class RobotOutputs:
    """The ``--mcap`` and ``--rerun`` outputs of ``hpsedge run`` together: one :meth:`write` per picture or
    frame; :meth:`close` finishes both (or :meth:`abort` drops their partial files)."""

    def __init__(self, mcap: str | Path | None = None, rerun: str | Path | None = None, *,
                 faces: np.ndarray | None = None, intrinsics: CameraIntrinsics | None = None, model: str = "",
                 force: bool = False) -> None:
        self.mcap = self.rerun = None
        try:
            if mcap is not None:
                from hpsedge.runtime.ros import McapWriter

                self.mcap = McapWriter(mcap, faces=faces, intrinsics=intrinsics, model=model, force=force)
            if rerun is not None:
                from hpsedge.runtime.rerun_log import RerunLog

                self.rerun = RerunLog(rerun, faces=faces, intrinsics=intrinsics, force=force)
        except BaseException:
            self.abort()
            raise

    @property
    def paths(self) -> list[Path]:
        return [w.path for w in (self.mcap, self.rerun) if w is not None]

    def write(self, rgb: np.ndarray, people: list[Any], index: int, time_s: float | None) -> None:
        if self.mcap is not None:
            self.mcap.write(people, image_hw=rgb.shape[:2], time_s=time_s if time_s is not None else index / 30.0,
                            index=index)
        if self.rerun is not None:
            self.rerun.log(people, image=rgb, index=index, time_s=time_s)

    def close(self) -> None:
        for w in (self.mcap, self.rerun):
            if w is not None:
                w.close()

    def abort(self) -> None:
        for w in (self.mcap, self.rerun):
            if w is not None:
                w.abort()
