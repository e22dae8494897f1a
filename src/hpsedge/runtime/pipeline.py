"""The streaming Pipeline: camera frame → tracked people with SMPL parameters, mesh, joints and confidence.

    from hpsedge.runtime.pipeline import Pipeline
    pipe = Pipeline.load("build/poco-cliff-fp16", smpl="SMPL_NEUTRAL.npz")   # folder with a detector
    for frame in camera:
        for person in pipe(frame).people:
            print(person.track_id, person.box, person.detector_score, person.transl)

Per frame, in order: **detect** (the build folder's person detector, :mod:`hpsedge.runtime.detect`; or boxes
the caller gives), **track** (:class:`~hpsedge.runtime.tracking.SortTracker`: Kalman on the box, Hungarian on
IoU; only confirmed tracks go on), **regress** (the folder's model, all people in one batch), **filter** (one
:class:`~hpsedge.runtime.temporal.TemporalFilter` per track: σ-weighted One-Euro smoothing on SO(3), translation
and betas), **SMPL** (mesh and joints from the filtered parameters, projected with the model's camera).

Lag: the streaming pipeline runs the temporal filter with smoothing only, so every call returns its own
frame (zero frames of lag). Inpainting waits for the next confident frame (up to ``max_gap`` frames), so it
is a batch step (``hpsedge run --video``) and off here. Each person carries the raw network values too
(``raw_pose_axis_angle``, ``raw_betas``, ``raw_transl``). A track's filter is dropped when the tracker ends the
track. Both the Python API and ``hpsedge run --source`` use this object.

Frame rate: :meth:`Pipeline.stream` runs a sequence of frames as three stages in threads (decode + detect +
track | regressor, on one or more workers | filter + SMPL, in order) with the same results as frame by frame;
``detect_every=k`` runs the detector on every k-th frame only and lets the tracker carry the boxes between
(:meth:`~hpsedge.runtime.tracking.SortTracker.carry`; a new track gets the detector on every frame until it
has been seen :attr:`Pipeline.WARM_HITS` times).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import InputError, ManifestError
from hpsedge.runtime import rotations
from hpsedge.runtime.detect import Detections, Detector, DetectorConfig
from hpsedge.runtime.predictor import PersonResult, Predictor
from hpsedge.runtime.temporal import TemporalConfig, TemporalFilter
from hpsedge.runtime.tracking import SortTracker

log = logging.getLogger(__name__)

__all__ = ["STAGES", "FrameResult", "Pipeline", "TrackedPerson", "detector_artifact", "detector_engine_entry"]

STAGES = ("detector", "tracking", "regressor", "filtering", "smpl")


@dataclass
class TrackedPerson(PersonResult):
    """A :class:`PersonResult` (pose, betas, transl filtered; mesh and joints from them) plus its track."""

    track_id: int = -1
    detector_score: float | None = None  #: the detector's score for this box (None for given boxes)
    raw_pose_axis_angle: np.ndarray | None = None  #: [24, 3] the network's pose before filtering
    raw_betas: np.ndarray | None = None
    raw_transl: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        """The compact per-person record of ``--jsonl`` (no mesh)."""
        def r(a: Any, nd: int = 5) -> Any:
            return None if a is None else np.round(np.asarray(a, dtype=np.float64), nd).tolist()

        return {
            "track_id": int(self.track_id),
            "box": r(self.box, 2),
            "detector_score": None if self.detector_score is None else round(float(self.detector_score), 4),
            "confidence": None if self.confidence is None else round(float(self.confidence), 4),
            "pose_axis_angle": r(self.pose_axis_angle.reshape(-1)),
            "betas": r(self.betas),
            "transl": r(self.transl),
            "joints3d": r(self.joints3d),
            "joints2d": r(self.joints2d, 2),
        }


@dataclass
class FrameResult:
    """One call of the pipeline: its people and where the time went (seconds per stage)."""

    index: int
    people: list[TrackedPerson]
    detections: int  #: boxes the detector (or caller) gave, before tracking
    seconds: dict[str, float] = field(default_factory=dict)
    #: False on a frame the detector skipped (``detect_every`` > 1): its boxes are the tracker's predictions
    detector_ran: bool = True

    def to_json(self, time_s: float | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"frame": self.index}
        if time_s is not None:
            out["time"] = round(float(time_s), 6)
        out["people"] = [p.to_json() for p in self.people]
        return out


def detector_artifact(manifest: Any, precision: str | None = None) -> str | None:
    """Manifest artifact key of the detector graph (``detector``, ``detector_fp16``…), or None without one."""
    arts = manifest.artifacts
    block = manifest.raw.get("detector")
    if block is None:
        return None
    want = precision or (block.get("precision") if isinstance(block, dict) else None) or "fp32"
    key = "detector" if want == "fp32" else f"detector_{want}"
    if key not in arts:
        raise ManifestError(f"this folder has no {want} detector (it has: "
                            f"{', '.join(k for k in arts if k.startswith('detector')) or 'none'})")
    return key


def detector_engine_entry(manifest: Any, regressor_backend: str, key: str) -> dict[str, Any] | None:
    """The ``detector_engine`` artifact to run the detector with, or None for ONNX Runtime: only when the
    regressor runs on TensorRT and the engine was built from the detector graph ``key`` that is asked for."""
    if regressor_backend != "trt":
        return None
    entry = manifest.artifacts.get("detector_engine")
    if not isinstance(entry, dict):
        return None
    graph = manifest.artifacts.get(key, {}).get("file")
    return entry if entry.get("source") == graph else None


@dataclass
class _Work:
    """One frame between the stages of :meth:`Pipeline.stream`."""

    index: int
    rgb: np.ndarray
    tracked: list[Any]
    detections: int
    has_scores: bool
    detector_ran: bool
    live: set[int]
    seconds: dict[str, float]
    raws: list[Any] = field(default_factory=list)
    meta: Any = None
    item: Any = None


class Pipeline:
    """Stateful: call it once per frame, in order. Build it with :meth:`load`."""

    def __init__(self, predictor: Predictor, detector: Detector | None, smpl: Any | None = None,
                 tracker: SortTracker | None = None, temporal: TemporalConfig | None = None,
                 smooth: bool = True, detect_every: int = 1) -> None:
        if not isinstance(detect_every, int) or detect_every < 1:
            raise InputError(f"detect_every must be an integer ≥ 1, got {detect_every!r}")
        self.predictor = predictor
        self.detector = detector
        self.smpl = smpl
        self.tracker = tracker or SortTracker()
        base = temporal or TemporalConfig.from_manifest(predictor.manifest)
        self.temporal = replace(base, inpaint=False, smooth=smooth)
        self._filters: dict[int, TemporalFilter] = {}
        self._count = 0
        #: run the detector on every k-th frame; the tracker carries the boxes in between (SortTracker.carry)
        self.detect_every = detect_every

    @classmethod
    def load(cls, folder: str | Path, smpl: str | Path | Any | None = None, *, detector: str | Path | None = None,
             detector_precision: str | None = None, backend: str = "auto", device: str = "auto",
             threads: int | None = None, precision: str | None = None, fps: float = 30.0,
             tracker: SortTracker | None = None, smooth: bool = True, need_detector: bool = True,
             j_regressor_extra: str | Path | None = None, intrinsics: Any | None = None, detect_every: int = 1,
             detector_threads: int | None = None, **detector_options: Any) -> Pipeline:
        """Load a build folder (and its detector, or ``detector`` = a detector ONNX with ``detector_options``
        for :func:`hpsedge.runtime.detect.inspect_graph`). ``fps``: the frame rate the filter assumes;
        ``intrinsics``: the calibrated camera (see :meth:`Predictor.load`).

        ``detect_every``: run the detector on every k-th frame only (the tracker carries the boxes between).
        ``threads`` / ``detector_threads``: ONNX Runtime intra-op threads of the regressor / the detector
        (default: ``threads``); with :meth:`stream`'s stages running at once, 1 each fills 2 cores."""
        pred = Predictor.load(folder, backend=backend, device=device, smpl=None, threads=threads, precision=precision,
                              intrinsics=intrinsics)
        dthreads = threads if detector_threads is None else detector_threads
        det: Detector | None = None
        if detector is not None:
            det = Detector.load(detector, device=device if device in ("cpu", "cuda", "auto", "tensorrt") else "auto",
                                threads=dthreads, **detector_options)
        else:
            key = detector_artifact(pred.manifest, detector_precision)
            if key is not None:
                from hpsedge.runtime.predictor import _check_artifact_size

                cfg = DetectorConfig.from_dict(pred.manifest.raw["detector"])
                engine = detector_engine_entry(pred.manifest, pred.backend.name, key)
                if engine is not None:
                    # the regressor runs on TensorRT and the folder has the detector's engine of this precision
                    # (written against TensorRT 10/11; not run against a real TensorRT in this project's CI)
                    from hpsedge.runtime.trt.backend import TensorRTBackend

                    gpu = int(device) if str(device).isdigit() else 0
                    det = Detector(TensorRTBackend(pred.manifest.artifact_path("detector_engine"), engine, device=gpu), cfg)
                else:
                    path = pred.manifest.artifact_path(key)
                    _check_artifact_size(pred.manifest, key, path)
                    det = Detector.load(path, config=cfg, threads=dthreads)
            elif need_detector:
                raise ManifestError(f"{folder} has no person detector",
                                    hint="add one with `hpsedge export build ... --detector det.onnx`, pass "
                                         "--detector det.onnx, or give --boxes")
        body = None
        if smpl is not None:
            from hpsedge.runtime.predictor import _load_smpl

            body = _load_smpl(smpl, j_regressor_extra)
        temporal = TemporalConfig.from_manifest(pred.manifest, fps=fps)
        return cls(pred, det, body, tracker=tracker, temporal=temporal, smooth=smooth, detect_every=detect_every)

    def set_fps(self, fps: float) -> None:
        """The frame rate the temporal filter assumes (a source's nominal rate); applies to new tracks."""
        if fps and fps > 0:
            self.temporal = replace(self.temporal, fps=float(fps))

    def reset(self) -> None:
        """Forget every track (a new video)."""
        self.tracker.reset()
        self._filters.clear()
        self._count = 0

    @staticmethod
    def _check_frame(image: Any) -> np.ndarray:
        rgb = np.asarray(image)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise InputError(f"frames must be H×W×3 uint8 RGB, got {rgb.dtype} {rgb.shape}")
        return rgb

    #: a track detected fewer times than this gets the detector on every frame (its velocity is not known yet)
    WARM_HITS = 3

    def wants_detection(self, index: int) -> bool:
        """Whether the detector runs on frame ``index``, from the tracker's state after the frame before: on
        every ``detect_every``-th frame, and on every frame while a live track has been detected fewer than
        :attr:`WARM_HITS` times (a new track's Kalman filter has no velocity yet to carry its box with)."""
        if self.detect_every == 1 or index % self.detect_every == 0:
            return True
        return any(t.misses == 0 and t.hits < self.WARM_HITS for t in getattr(self.tracker, "tracks", []))

    def _detect(self, rgb: np.ndarray, run: bool) -> Detections | None:
        """The detector's people, or None on a frame it skips. One caller at a time (the detector stage)."""
        if self.detector is None:
            raise InputError("this pipeline has no detector; pass boxes")
        return self.detector(rgb) if run else None

    def __call__(self, image: np.ndarray, boxes: Any | None = None, scores: Any | None = None) -> FrameResult:
        """One RGB frame (H×W×3 uint8) → its tracked people. ``boxes`` [K,4] skip the detector."""
        rgb = self._check_frame(image)
        index = self._count
        self._count += 1
        return self._finish(self._regress(self._track(rgb, index, boxes, scores)))

    # ------------------------------------------------------------------------- the three stages of a frame
    def _track(self, rgb: np.ndarray, index: int, boxes: Any | None, scores: Any | None) -> _Work:
        """Stage 1, in frame order: the detector (when :meth:`wants_detection`, unless ``boxes`` are given)
        and the tracker (``update`` with detections, ``carry`` on a skipped frame)."""
        sec = dict.fromkeys(STAGES, 0.0)
        t0 = time.perf_counter()
        found = self._detect(rgb, self.wants_detection(index)) if boxes is None else None
        t1 = time.perf_counter()
        sec["detector"] = t1 - t0
        ran = boxes is not None or found is not None
        if not ran:  # a frame the detector skipped: the tracker carries the boxes
            h, w = rgb.shape[:2]
            tracked = []
            for tb in self.tracker.carry():
                b = tb.box.copy()
                b[[0, 2]] = b[[0, 2]].clip(0, w)
                b[[1, 3]] = b[[1, 3]].clip(0, h)
                if np.isfinite(b).all() and b[2] - b[0] >= 2 and b[3] - b[1] >= 2:
                    tb.box = b
                    tracked.append(tb)
            dboxes = np.stack([tb.box for tb in tracked]) if tracked else np.zeros((0, 4))
            dscores: np.ndarray | None = np.asarray([tb.score for tb in tracked])
        else:
            if boxes is None:
                assert found is not None
                dboxes, dscores = found.boxes, found.scores
            else:
                dboxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
                dscores = None if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
            tracked = [tb for tb in self.tracker.update(dboxes, dscores) if tb.track_id >= 0]
        live = {tr.id for tr in self.tracker.tracks if tr.confirmed}
        sec["tracking"] = time.perf_counter() - t1
        return _Work(index, rgb, tracked, len(dboxes), dscores is not None, ran, live, sec)

    def _regress(self, work: _Work) -> _Work:
        """Stage 2, any order, several at once: crops, regressor graph, camera/σ postprocessing (stateless:
        ONNX Runtime sessions take concurrent runs)."""
        t = time.perf_counter()
        if work.tracked:
            pboxes = np.stack([tb.box for tb in work.tracked])
            pred = self.predictor
            feeds, work.meta = pred.prepare(work.rgb, pboxes)
            work.raws = pred.postprocess(pred.run_batched(feeds), work.meta, pboxes)
        work.seconds["regressor"] = time.perf_counter() - t
        return work

    def _finish(self, work: _Work) -> FrameResult:
        """Stage 3, in frame order: the temporal filter per track, SMPL, the people."""
        for tid in [k for k in self._filters if k not in work.live]:
            del self._filters[tid]
        sec, tracked, raws, index = work.seconds, work.tracked, work.raws, work.index
        if not tracked:
            return FrameResult(index, [], work.detections, sec, work.detector_ran)
        t3 = time.perf_counter()
        rot = np.stack([r.pose_rotmat for r in raws]).astype(np.float64)
        betas = np.stack([r.betas for r in raws]).astype(np.float64)
        transl = np.stack([r.transl for r in raws]).astype(np.float64)
        for i, (tb, r) in enumerate(zip(tracked, raws, strict=True)):
            filt = self._filters.get(tb.track_id)
            if filt is None:
                filt = self._filters[tb.track_id] = TemporalFilter(self.temporal)
            done = filt.push(index, r.pose_rotmat, r.betas, r.transl, sigma=r.sigma, confidence=r.confidence)
            # inpainting is off: each push returns its own frame
            out = done[-1]
            rot[i], betas[i], transl[i] = out.rotmat, out.betas, out.transl
        t4 = time.perf_counter()
        sec["filtering"] = t4 - t3
        rot32 = rot.astype(np.float32)
        aa = rotations.rotmat_to_axis_angle(rot32).astype(np.float32)
        body = j2d = None
        if self.smpl is not None:
            body = self.smpl.forward(betas.astype(np.float32), rot32, return_vertices=True)
            cam = np.stack([r.cam_crop for r in raws])
            j2d = self.predictor.project(body.joints, cam, transl.astype(np.float32), work.meta)
        people: list[TrackedPerson] = []
        base_names = [f.name for f in fields(PersonResult)]
        for i, (tb, r) in enumerate(zip(tracked, raws, strict=True)):
            values = {n: getattr(r, n) for n in base_names}
            values.update(pose_rotmat=rot32[i], pose_axis_angle=aa[i], betas=betas[i].astype(np.float32),
                          transl=transl[i].astype(np.float32))
            if body is not None and j2d is not None:
                values.update(vertices=body.vertices[i], joints3d=body.joints[i], joints45=body.joints45[i],
                              joints49=None if body.joints49 is None else body.joints49[i], joints2d=j2d[i])
            people.append(TrackedPerson(**values, track_id=tb.track_id,
                                        detector_score=tb.score if work.has_scores else None,
                                        raw_pose_axis_angle=r.pose_axis_angle, raw_betas=r.betas, raw_transl=r.transl))
        sec["smpl"] = time.perf_counter() - t4
        people.sort(key=lambda p: p.track_id)
        return FrameResult(index, people, work.detections, sec, work.detector_ran)

    def stream(self, frames: Iterable[Any], boxes: Callable[[Any], Any] | None = None, threads: bool = True,
               regressor_workers: int = 1, queue_size: int = 2) -> Iterator[tuple[Any, FrameResult]]:
        """Run a sequence of frames as a pipeline of threads; yields ``(item, FrameResult)`` in frame order,
        the same results as calling the pipeline frame by frame (``threads=False`` does exactly that).

        ``frames`` yields RGB arrays or objects with an ``.rgb`` array (a :class:`~hpsedge.runtime.sources.Frame`);
        ``boxes(item)`` → that frame's boxes, or None for the detector. Three stages, joined by bounded queues
        (``queue_size`` frames each, so a slow stage holds the others back instead of piling frames up):

        1. one thread pulls the frames (decoding a video), runs the detector and the tracker, in order;
        2. ``regressor_workers`` threads run crops + regressor on whole frames, several frames at once when
           there are several workers (ONNX Runtime releases the GIL and takes concurrent runs on one session;
           give the predictor 1 intra-op thread per worker);
        3. the caller's thread puts them back in order and runs the temporal filter and SMPL.

        An error in any stage is raised here after the frames before it (a Ctrl-C in the source ends the stream
        where it happened); closing the generator early stops the threads.
        """
        def prepare(item: Any) -> tuple[np.ndarray, Any]:
            rgb = self._check_frame(item.rgb if hasattr(item, "rgb") else item)
            return rgb, (boxes(item) if boxes is not None else None)

        if not threads:
            for item in frames:
                rgb, given = prepare(item)
                yield item, self(rgb, boxes=given)
            return
        if regressor_workers < 1 or queue_size < 1:
            raise InputError("regressor_workers and queue_size must be ≥ 1")
        tracked_q: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        done_q: queue.Queue[Any] = queue.Queue(maxsize=queue_size + regressor_workers)
        stop = threading.Event()
        start = self._count

        def put(q: queue.Queue[Any], x: Any) -> bool:
            while not stop.is_set():
                try:
                    q.put(x, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def get(q: queue.Queue[Any]) -> Any:
            while not stop.is_set():
                try:
                    return q.get(timeout=0.1)
                except queue.Empty:
                    continue
            return None

        def track_stage() -> None:
            index = start
            try:
                for item in frames:
                    rgb, given = prepare(item)
                    work = self._track(rgb, index, given, None)
                    work.item = item
                    if not put(tracked_q, ("ok", work)):
                        return
                    index += 1
            except BaseException as exc:  # raised by the caller once the frames before it are out
                put(done_q, ("error", (index, exc)))
            finally:
                for _ in range(regressor_workers):
                    put(tracked_q, ("end", None))

        def regress_stage() -> None:
            while True:
                msg = get(tracked_q)
                if msg is None:
                    return
                kind, work = msg
                if kind == "end":
                    put(done_q, ("end", None))
                    return
                try:
                    out = ("ok", self._regress(work))
                except BaseException as exc:
                    out = ("error", (work.index, exc))
                if not put(done_q, out):
                    return

        workers = [threading.Thread(target=track_stage, name="hpsedge-detector", daemon=True)]
        workers += [threading.Thread(target=regress_stage, name=f"hpsedge-regressor-{i}", daemon=True)
                    for i in range(regressor_workers)]
        for th in workers:
            th.start()
        pending: dict[int, _Work] = {}
        nxt, ended = start, 0
        failure: tuple[int, BaseException] | None = None  # the earliest frame that failed, and why
        try:
            while True:
                while nxt in pending:
                    work = pending.pop(nxt)
                    nxt += 1
                    self._count = nxt
                    yield work.item, self._finish(work)
                if failure is not None and (nxt >= failure[0] or (ended == regressor_workers and not pending)):
                    raise failure[1]
                if ended == regressor_workers and not pending:
                    return
                kind, payload = done_q.get()
                if kind == "error":
                    if failure is None or payload[0] < failure[0]:
                        failure = payload
                    continue
                if kind == "end":
                    ended += 1
                    continue
                pending[payload.index] = payload
        finally:
            stop.set()
            for th in workers:  # a source stuck in a read (a stalled stream) must not hang the caller forever
                th.join(timeout=10.0)


    def close(self) -> None:
        self.predictor.close()
        if self.detector is not None:
            self.detector.backend.close()


# ============================================================================================ run a source
def run_source(pipeline: Pipeline, source: Any, jsonl: Any | None = None, overlay: str | Path | None = None,
               boxes: list[np.ndarray] | None = None, progress: Any | None = None,
               max_frames: int | None = None, on_frame: Any | None = None, threads: bool = True,
               regressor_workers: int = 1) -> dict[str, Any]:
    """Run ``pipeline`` over an opened :class:`~hpsedge.runtime.sources.Source`.

    Args:
        jsonl: a text stream (``sys.stdout``, an open file) that gets one JSON line per frame, flushed at once.
        overlay: an ``.mp4`` path for the overlay video (written as ``<stem>.part.mp4`` and renamed when done).
        boxes: per-frame person boxes (skips the detector), indexed by frame.
        progress: called as ``progress(frames_done, frames_per_second)``.
        max_frames: stop after this many frames.
        on_frame: called as ``on_frame(frame, result)`` after each frame (the ``--mcap``/``--rerun`` outputs).
        threads: run the stages in threads (:meth:`Pipeline.stream`), ``regressor_workers`` regressor threads.

    Ctrl-C (KeyboardInterrupt) ends the run like the end of the source: everything so far is written, the
    summary says ``interrupted``. A source that stops with an error (:class:`SourceStopped`) is re-raised
    after the outputs are closed: the JSONL holds only whole lines, the overlay is a valid video.
    """
    import json

    from hpsedge.runtime.sources import SourceStopped

    writer = None
    part: Path | None = None
    faces = pipeline.smpl.faces if pipeline.smpl is not None else None
    frames = people = 0
    ids: set[int] = set()
    stage_sum = dict.fromkeys(STAGES, 0.0)
    interrupted = False
    stopped: SourceStopped | None = None
    pipeline.set_fps(getattr(source, "fps", 0.0))
    t0 = time.perf_counter()
    def frame_boxes(frame: Any) -> np.ndarray | None:
        if boxes is None:
            return None
        return boxes[frame.index] if frame.index < len(boxes) else np.zeros((0, 4))

    items = iter(source) if max_frames is None else itertools.islice(source, max(0, int(max_frames)))
    try:
        for frame, res in pipeline.stream(items, boxes=frame_boxes, threads=threads, regressor_workers=regressor_workers):
            frames += 1
            people += len(res.people)
            ids.update(p.track_id for p in res.people)
            for k, v in res.seconds.items():
                stage_sum[k] += v
            if on_frame is not None:
                on_frame(frame, res)
            if jsonl is not None:
                jsonl.write(json.dumps(res.to_json(frame.time), separators=(",", ":")) + "\n")
                jsonl.flush()
            if overlay is not None:
                from hpsedge.runtime.draw import render_overlay
                from hpsedge.runtime.video import VideoWriter

                if writer is None:
                    final = Path(overlay)
                    part = final.with_name(final.stem + ".part" + (final.suffix or ".mp4"))
                    h, w = frame.rgb.shape[:2]
                    writer = VideoWriter(part, source.fps, w, h)
                writer.write(np.ascontiguousarray(render_overlay(frame.rgb, res.people, faces)))
            if progress is not None:
                progress(frames, frames / max(time.perf_counter() - t0, 1e-9))
    except KeyboardInterrupt:
        interrupted = True
    except SourceStopped as exc:
        stopped = exc
    finally:
        if writer is not None and part is not None:
            writer.close()
            part.replace(Path(overlay))  # type: ignore[arg-type]
        source.close()
    elapsed = time.perf_counter() - t0
    summary = {
        "source": source.name, "kind": source.kind, "frames": frames, "people": people, "tracks": sorted(ids),
        "interrupted": interrupted, "seconds": round(elapsed, 3),
        "frames_per_second": round(frames / max(elapsed, 1e-9), 2),
        "stage_ms_per_frame": {k: round(1000 * v / max(frames, 1), 3) for k, v in stage_sum.items()},
        "overlay": str(overlay) if overlay is not None and frames else None,
    }
    if stopped is not None:
        stopped.summary = summary  # type: ignore[attr-defined]
        raise stopped
    return summary
