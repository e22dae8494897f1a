"""Video in and out (PyAV, imported lazily) and :func:`run_video`: a Predictor over a video, per track.

PyAV (``pip install av``, the ``video`` extra) wraps FFmpeg's libraries and ships them in its wheels, so
nothing else needs installing. Frames are read as H×W×3 uint8 RGB; overlays are written as H.264
(``libx264``, yuv420p, CRF 20) ``.mp4``, or MPEG-4 Part 2 when the FFmpeg build has no libx264. Odd frame
sizes are padded by one black pixel (yuv420p needs even sizes).

``run_video`` writes into ``out_dir``:

* ``track_<id>.npz`` per track (keys below), raw and processed streams side by side;
* ``<video stem>_overlay.mp4``: the processed pose of every person over the video, coloured by the raw
  confidence (red → green, as :mod:`hpsedge.runtime.draw`), with a magenta outline and an ``inpainted``
  label on frames whose pose (or some joints) were inpainted, and an ``uncertain, not filled`` label where
  an uncertain run was too long to fill;
* ``summary.json``: frames, tracks, counts of inpainted/flagged samples, settings, timings.

``track_<id>.npz`` keys (T = frames the track appears in; float32 unless noted):
``frames`` [T] int64 (0-based video frames), ``boxes`` [T,4] (x1,y1,x2,y2), ``focal`` [T], ``cam_crop`` [T,3];
raw network results ``raw_pose_rotmat`` [T,24,3,3], ``raw_pose`` [T,72] (axis-angle), ``raw_betas`` [T,10],
``raw_transl`` [T,3]; uncertainty ``sigma`` [T,24] (POCO), ``score`` [T] and ``confidence`` [T] (when the
model has them), ``frame_uncertainty`` [T] (the gated value: σ₀ or 1 − confidence); processed results
``pose_rotmat``, ``pose``, ``betas``, ``transl`` (same shapes); masks (bool) ``inpainted_frames`` [T],
``inpainted_joints`` [T,24], ``flagged_frames`` [T], ``flagged_joints`` [T,24]; ``fps`` (scalar) and
``thresholds`` (JSON string of the temporal settings).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import HpsedgeError, InputError
from hpsedge.runtime.manifest import dumps_strict
from hpsedge.runtime.temporal import TemporalConfig, TemporalResult, Track, process
from hpsedge.runtime.tracking import Tracks, read_tracks, whole_frame_tracks

log = logging.getLogger(__name__)

__all__ = ["ProgressFn", "VideoInfo", "VideoReader", "VideoWriter", "probe_video", "run_video", "write_video"]

#: ``progress(stage, done, total, frames_per_second)``; stage is "predict" or "overlay".
ProgressFn = Callable[[str, int, int, float], None]

INPAINT_COLOR = (220, 40, 220)
FLAG_COLOR = (255, 255, 255)


def _av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise InputError("reading and writing video needs PyAV", hint="pip install 'hpsedge[video]' (or: pip install av)") from exc
    return av


def _open_error(path: Path, exc: Exception) -> InputError:
    return InputError(f"cannot read {path} as a video ({exc.__class__.__name__}: {exc})",
                      hint="is it a video file (mp4, mkv, avi, mov…) that FFmpeg can decode?")


@dataclass(frozen=True)
class VideoInfo:
    path: str
    num_frames: int  #: frames in the video stream (counted from its packets when the header does not say)
    fps: float
    width: int
    height: int
    codec: str


#: FFmpeg options for opening an untrusted local video: only the local-file protocol and common video
#: containers (no playlists such as HLS/concat that would make FFmpeg open other files or URLs)
SAFE_OPEN_OPTIONS: dict[str, str] = {
    "protocol_whitelist": "file",
    "format_whitelist": "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,flv,gif,mjpeg,h264,hevc,mpeg,"
                        "mpegvideo,m4v,asf,ogg,image2,image2pipe,png_pipe,jpeg_pipe,bmp_pipe,webp_pipe,tiff_pipe",
}

class VideoReader:
    """Iterate over a video's frames as (index, H×W×3 uint8 RGB). A context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise InputError(f"{self.path} is not a regular file (a folder, FIFO or device)")
        if not self.path.is_file():
            raise InputError(f"video not found: {self.path}")
        av = _av()
        try:
            self._container = av.open(str(self.path), mode="r", container_options=dict(SAFE_OPEN_OPTIONS))
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise _open_error(self.path, exc) from None
        if not self._container.streams.video:
            self._container.close()
            raise InputError(f"{self.path} has no video stream")
        self._stream = self._container.streams.video[0]

    @property
    def fps(self) -> float:
        rate = self._stream.average_rate or self._stream.base_rate or self._stream.guessed_rate
        return float(rate) if rate else 30.0

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        av = _av()
        k = 0
        try:
            for frame in self._container.decode(self._stream):
                yield k, frame.to_ndarray(format="rgb24")
                k += 1
        except av.FFmpegError as exc:
            raise InputError(f"{self.path}: decoding failed after {k} frames ({exc})", hint="the file may be truncated") from None

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def probe_video(path: str | Path) -> VideoInfo:
    """Frame count, rate and size of a video, without decoding it (packets are counted if needed)."""
    av = _av()
    with VideoReader(path) as reader:
        st = reader._stream
        n = int(st.frames or 0)
        if n <= 0:
            try:
                n = sum(1 for p in reader._container.demux(st) if p.size)
            except av.FFmpegError as exc:
                raise _open_error(reader.path, exc) from None
        cc = st.codec_context
        if not cc.width or not cc.height:
            raise InputError(f"{path}: the video stream has no frame size")
        return VideoInfo(str(path), n, reader.fps, int(cc.width), int(cc.height), str(cc.name))


class VideoWriter:
    """Write RGB frames to an ``.mp4`` (H.264, or MPEG-4 without libx264). A context manager."""

    def __init__(self, path: str | Path, fps: float, width: int, height: int, crf: int = 20) -> None:
        av = _av()
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self._w, self._h = self.width + self.width % 2, self.height + self.height % 2
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        from fractions import Fraction

        try:
            self._container = av.open(str(self.path), mode="w")
            self._stream = self._container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise HpsedgeError(f"cannot write video {self.path} ({exc})") from None
        self._stream.width, self._stream.height = self._w, self._h
        self._stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            self._stream.options = {"crf": str(crf), "preset": "veryfast"}
        else:
            self._stream.bit_rate = 4_000_000
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        av = _av()
        img = np.asarray(rgb, dtype=np.uint8)
        if img.shape != (self.height, self.width, 3):
            raise InputError(f"frame of shape {img.shape} for a {self.width}×{self.height} video")
        if (self._w, self._h) != (self.width, self.height):
            pad = np.zeros((self._h, self._w, 3), np.uint8)
            pad[: self.height, : self.width] = img
            img = pad
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float = 30.0) -> Path:
    """Write RGB frames (all the same size) to a video file; returns the path."""
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise InputError("no frames to write")
    h, w = np.asarray(first).shape[:2]
    with VideoWriter(path, fps, w, h) as vw:
        vw.write(first)
        for f in it:
            vw.write(f)
    return Path(path)


# ============================================================================================ run_video
def _compact(r: Any) -> Any:
    """A PersonResult without the heavy mesh arrays (kept per frame for the whole video)."""
    return replace(r, vertices=None, joints3d=None, joints45=None, joints49=None, joints2d=None, joints49_2d=None)


def _track_npz(path: Path, tid: int, frames: list[int], raws: list[Any], res: TemporalResult, fps: float) -> None:
    from hpsedge.runtime.rotations import rotmat_to_axis_angle

    f32 = np.float32
    raw_rot = np.stack([r.pose_rotmat for r in raws]).astype(f32)
    arrays: dict[str, Any] = {
        "frames": np.asarray(frames, dtype=np.int64),
        "boxes": np.stack([r.box for r in raws]).astype(f32),
        "focal": np.array([r.focal for r in raws], dtype=f32),
        "cam_crop": np.stack([r.cam_crop for r in raws]).astype(f32),
        "raw_pose_rotmat": raw_rot,
        "raw_pose": rotmat_to_axis_angle(raw_rot).reshape(len(raws), 72).astype(f32),
        "raw_betas": np.stack([r.betas for r in raws]).astype(f32),
        "raw_transl": np.stack([r.transl for r in raws]).astype(f32),
        "pose_rotmat": res.rotmat.astype(f32),
        "pose": res.pose_axis_angle.reshape(len(raws), 72).astype(f32),
        "betas": res.betas.astype(f32),
        "transl": res.transl.astype(f32),
        "inpainted_frames": res.inpainted_frames,
        "inpainted_joints": res.inpainted_joints,
        "flagged_frames": res.flagged_frames,
        "flagged_joints": res.flagged_joints,
        "fps": np.float32(fps),
        "track_id": np.int64(tid),
        "thresholds": json.dumps(res.config.to_dict()),
    }
    if all(r.sigma is not None for r in raws):
        arrays["sigma"] = np.stack([r.sigma for r in raws]).astype(f32)
    if all(r.score is not None for r in raws):
        arrays["score"] = np.array([r.score for r in raws], dtype=f32)
    if all(r.confidence is not None for r in raws):
        arrays["confidence"] = np.array([r.confidence for r in raws], dtype=f32)
    if res.frame_uncertainty is not None:
        arrays["frame_uncertainty"] = res.frame_uncertainty.astype(f32)
    np.savez_compressed(path, **arrays)


def _annotate(image: np.ndarray, people: list[tuple[Any, bool, int, bool]]) -> np.ndarray:
    """Mark inpainted / flagged people on an overlay frame (Pillow)."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(image)
    draw = ImageDraw.Draw(img)
    for r, frame_filled, n_joints, flagged in people:
        x1, y1, x2, y2 = (float(v) for v in r.box)
        if frame_filled or n_joints:
            draw.rectangle([x1 - 3, y1 - 3, x2 + 3, y2 + 3], outline=INPAINT_COLOR, width=3)
            text = "inpainted" if frame_filled else f"inpainted: {n_joints} joint{'s' if n_joints > 1 else ''}"
            _tag(draw, (x1 + 4, y2 - 16), text, INPAINT_COLOR)
        elif flagged:
            _tag(draw, (x1 + 4, y2 - 16), "uncertain, not filled", FLAG_COLOR)
    return np.asarray(img)


def _tag(draw: Any, xy: tuple[float, float], text: str, fill: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = draw.textbbox(xy, text)
    draw.rectangle([x0 - 2, y0 - 2, x1 + 2, y1 + 2], fill=(0, 0, 0))
    draw.text(xy, text, fill=fill)


def run_video(
    predictor: Any,
    video_path: str | Path,
    tracks: Tracks | str | Path | None,
    out_dir: str | Path,
    *,
    smooth: bool = True,
    inpaint: bool = True,
    overlay: bool = True,
    progress: ProgressFn | None = None,
    config: TemporalConfig | None = None,
) -> dict[str, Any]:
    """Run ``predictor`` over every tracked person of a video, then inpaint/smooth each track.

    Args:
        predictor: a loaded :class:`~hpsedge.runtime.predictor.Predictor`.
        video_path: the video (anything FFmpeg reads).
        tracks: a :class:`~hpsedge.runtime.tracking.Tracks`, a MOT-text/JSON tracks file, or None (one person,
            the whole frame, in every frame).
        out_dir: output folder (created).
        smooth, inpaint: the two temporal steps (:mod:`hpsedge.runtime.temporal`).
        overlay: write ``<stem>_overlay.mp4`` (a second decoding pass).
        progress: called per frame as ``progress(stage, done, total, frames_per_second)``.
        config: temporal settings; default :meth:`TemporalConfig.from_manifest` on the predictor's manifest
            (calibrated thresholds when present) at the video's frame rate.

    Returns:
        The summary (also written to ``summary.json``).
    """
    video_path = Path(video_path)
    out = Path(out_dir)
    info = probe_video(video_path)
    if info.num_frames == 0:
        raise InputError(f"{video_path} holds no frames")
    if tracks is None:
        trk = whole_frame_tracks(info.num_frames, info.width, info.height)
    elif isinstance(tracks, Tracks):
        trk = tracks
        trk.check_frames(info.num_frames, str(video_path))
    else:
        trk = read_tracks(tracks, num_frames=info.num_frames)
        trk.check_frames(info.num_frames, str(video_path))
    if config is None:
        cfg = TemporalConfig.from_manifest(getattr(predictor, "manifest", None), fps=info.fps,
                                           smooth=smooth, inpaint=inpaint)
    else:
        cfg = replace(config, smooth=smooth, inpaint=inpaint)
    out.mkdir(parents=True, exist_ok=True)

    # ---- pass 1: predict every tracked person
    per_track: dict[int, tuple[list[int], list[Any]]] = {}
    t0 = time.perf_counter()
    decoded = 0
    people = 0
    with VideoReader(video_path) as reader:
        for k, rgb in reader:
            decoded = k + 1
            ids, boxes = trk.in_frame(k)
            if len(ids):
                results = predictor.predict(rgb, boxes)
                people += len(results)
                for tid, r in zip(ids.tolist(), results, strict=True):
                    fr, rs = per_track.setdefault(int(tid), ([], []))
                    fr.append(k)
                    rs.append(_compact(r))
            if progress is not None:
                progress("predict", decoded, info.num_frames, decoded / max(time.perf_counter() - t0, 1e-9))
    t_predict = time.perf_counter() - t0
    if decoded < info.num_frames:
        log.warning("%s: decoded %d frames, its header says %d", video_path, decoded, info.num_frames)
        trk.check_frames(decoded, str(video_path))

    # ---- temporal processing per track
    t1 = time.perf_counter()
    processed: dict[int, TemporalResult] = {}
    files: list[str] = []
    track_summary: dict[str, Any] = {}
    for tid, (frames, raws) in sorted(per_track.items()):
        res = process(Track.from_results(frames, raws), cfg)
        processed[tid] = res
        path = out / f"track_{tid:04d}.npz"
        _track_npz(path, tid, frames, raws, res, info.fps)
        files.append(path.name)
        conf = [r.confidence for r in raws if r.confidence is not None]
        track_summary[str(tid)] = {
            "first_frame": int(frames[0]), "last_frame": int(frames[-1]), **res.summary(),
            "mean_confidence": float(np.mean(conf)) if conf else None,
        }
    t_temporal = time.perf_counter() - t1

    # ---- pass 2: overlay
    t_overlay = 0.0
    if overlay:
        t2 = time.perf_counter()
        path = out / f"{video_path.stem}_overlay.mp4"
        _write_overlay(predictor, video_path, path, info, per_track, processed, progress)
        files.append(path.name)
        t_overlay = time.perf_counter() - t2

    summary = {
        "video": str(video_path),
        "frames": decoded,
        "fps": info.fps,
        "size": [info.width, info.height],
        "model": getattr(getattr(predictor, "manifest", None), "model_name", None),
        "tracks_source": trk.source,
        "tracks": track_summary,
        "people": people,
        "smooth": cfg.smooth,
        "inpaint": cfg.inpaint,
        "temporal": cfg.to_dict(),
        "seconds": {"predict": round(t_predict, 3), "temporal": round(t_temporal, 3), "overlay": round(t_overlay, 3)},
        "frames_per_second": round(decoded / max(t_predict, 1e-9), 2),
        "files": [*files, "summary.json"],
    }
    (out / "summary.json").write_text(dumps_strict(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def _write_overlay(predictor: Any, video_path: Path, path: Path, info: VideoInfo,
                   per_track: dict[int, tuple[list[int], list[Any]]], processed: dict[int, TemporalResult],
                   progress: ProgressFn | None) -> None:
    from hpsedge.runtime import camera
    from hpsedge.runtime.draw import legend_for, render_overlay

    smpl = getattr(predictor, "smpl", None)
    faces = smpl.faces if smpl is not None else None
    legend = legend_for(predictor.manifest) if getattr(predictor, "manifest", None) is not None else None
    # frame -> [(track id, index in track)]
    index: dict[int, list[tuple[int, int]]] = {}
    for tid, (frames, _) in per_track.items():
        for i, f in enumerate(frames):
            index.setdefault(f, []).append((tid, i))
    t0 = time.perf_counter()
    with VideoReader(video_path) as reader, VideoWriter(path, info.fps, info.width, info.height) as writer:
        for k, rgb in reader:
            shown: list[Any] = []
            marks: list[tuple[Any, bool, int, bool]] = []
            for tid, i in index.get(k, []):
                raw = per_track[tid][1][i]
                res = processed[tid]
                transl = res.transl[i].astype(np.float32)
                view_t = raw.view_transl
                if view_t is not None and np.allclose(view_t, raw.transl):  # full-image camera: follow the filter
                    view_t = transl
                person = replace(raw, pose_rotmat=res.rotmat[i].astype(np.float32),
                                 betas=res.betas[i].astype(np.float32), transl=transl, view_transl=view_t)
                shown.append(person)
                marks.append((person, bool(res.inpainted_frames[i]), int(res.inpainted_joints[i].sum()),
                              bool(res.flagged_frames[i] or res.flagged_joints[i].any())))
            if shown and smpl is not None:
                body = smpl.forward(np.stack([p.betas for p in shown]), np.stack([p.pose_rotmat for p in shown]))
                # the camera each result reports its joints2d with (crop camera for PARE/HMR), as `hpsedge run`
                j2d = camera.project_view(body.joints, np.stack([p.view_transl for p in shown]),
                                          np.array([p.view_focal for p in shown]),
                                          np.stack([p.view_center for p in shown]), shown[0].intrinsics)
                shown = [replace(p, vertices=body.vertices[n], joints3d=body.joints[n], joints2d=j2d[n].astype(np.float32))
                         for n, p in enumerate(shown)]
                marks = [(shown[n], *m[1:]) for n, m in enumerate(marks)]
            frame = render_overlay(rgb, shown, faces, legend=legend, track_ids=[tid for tid, _ in index.get(k, [])])
            if marks:
                frame = _annotate(np.ascontiguousarray(frame), marks)
            writer.write(frame)
            if progress is not None:
                progress("overlay", k + 1, info.num_frames, (k + 1) / max(time.perf_counter() - t0, 1e-9))
