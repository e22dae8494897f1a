"""Frame sources for ``hpsedge run --source``: an image, a folder of images, a video file, a network stream
(RTSP/HTTP/… through PyAV) or a camera (a V4L2 device path such as ``/dev/video0``, or its index ``0``).

:func:`open_source` returns a :class:`Source`; iterating it yields :class:`Frame` objects (index, timestamp in
seconds, H×W×3 uint8 RGB). Files and folders end; streams and cameras run until they stop or the caller
stops (Ctrl-C). Errors are one clear :class:`InputError`: a path that does not exist, a camera that is not
there, a stream that cannot be reached (``timeout`` seconds), and a stream or file that stops mid-way
(:class:`SourceStopped`, raised after the frames read so far were yielded, so that a caller can finish
what it has).

Timestamps: the frame's presentation time from the container when it has one (video files, most streams,
V4L2), else the index divided by the nominal rate (images: ``fps`` as given, default 30).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["Frame", "Source", "SourceStopped", "open_source", "source_kind"]

_URL = re.compile(r"^(rtsp|rtsps|rtmp|rtmps|http|https|udp|tcp|srt)://", re.IGNORECASE)
_IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class SourceStopped(InputError):
    """A stream or video that ended with an error after some frames (the frames before it were delivered)."""


@dataclass
class Frame:
    index: int  #: 0-based, in delivery order
    time: float  #: seconds (presentation time, or index / fps)
    rgb: np.ndarray  #: H×W×3 uint8


def source_kind(src: str | int | Path) -> str:
    """``"camera"``, ``"stream"``, ``"folder"``, ``"image"`` or ``"video"`` for a ``--source`` value."""
    s = str(src)
    if isinstance(src, int) or s.isdigit() or s.startswith("/dev/video"):
        return "camera"
    if _URL.match(s):
        return "stream"
    p = Path(s)
    if p.is_dir():
        return "folder"
    if p.suffix.lower() in _IMAGE_EXT:
        return "image"
    return "video"


def _redact(url: str) -> str:
    """A URL for messages: user:password@ removed."""
    return re.sub(r"(://)[^/@]*@", r"\1***@", url)


class Source:
    """An iterable of :class:`Frame`; close it (or use ``with``) to release the device or connection."""

    def __init__(self, kind: str, name: str, fps: float, frames: Iterator[Frame], closer: Any = None,
                 size: tuple[int, int] | None = None, live: bool = False) -> None:
        self.kind, self.name, self.fps = kind, name, fps
        self.size = size  #: (width, height) when known before the first frame
        self.live = live  #: a camera or stream: runs until stopped
        self._frames = frames
        self._closer = closer

    def __iter__(self) -> Iterator[Frame]:
        return self._frames

    def close(self) -> None:
        if self._closer is not None:
            try:
                self._closer()
            except Exception:  # closing a dead connection must not hide the real error
                log.debug("closing %s failed", self.name, exc_info=True)
            self._closer = None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _av() -> Any:
    from hpsedge.runtime.video import _av as load

    return load()


def _images(paths: list[Path], fps: float) -> Iterator[Frame]:
    from hpsedge.runtime.io import read_image

    for k, p in enumerate(paths):
        yield Frame(k, k / fps, read_image(p))


def _container_frames(container: Any, name: str, fps: float, live: bool) -> Iterator[Frame]:
    av = _av()
    stream = container.streams.video[0]
    k = 0
    try:
        for frame in container.decode(stream):
            t = frame.time
            yield Frame(k, float(t) if t is not None else k / fps, frame.to_ndarray(format="rgb24"))
            k += 1
    except (av.FFmpegError, OSError) as exc:
        what = "stream" if live else "video"
        why = _redact(str(exc))
        raise SourceStopped(f"{what} {name} stopped after {k} frame(s) ({exc.__class__.__name__}: {why})",
                            hint="the connection dropped or the file is truncated; the frames before it were processed") from None


def _open_container(target: str, name: str, kind: str, timeout: float, fmt: str | None = None,
                    options: dict[str, str] | None = None) -> Any:
    av = _av()
    try:
        # a local file is untrusted: file protocol and common containers only (no playlist opening other files)
        from hpsedge.runtime.video import SAFE_OPEN_OPTIONS

        safe = dict(SAFE_OPEN_OPTIONS) if kind not in ("stream", "camera") else None
        container = av.open(target, mode="r", format=fmt, options=options or {}, container_options=safe,
                            timeout=timeout)
    except (av.FFmpegError, OSError, ValueError) as exc:
        if kind == "stream":
            why = _redact(str(exc))
            raise InputError(f"cannot reach stream {name} ({exc.__class__.__name__}: {why})",
                             hint=f"check the address, the network and credentials (waited {timeout:g} s)") from None
        if kind == "camera":
            raise InputError(f"cannot open camera {name} ({exc.__class__.__name__}: {exc})",
                             hint="is it in use by another program, and may this user read it (group 'video')?") from None
        raise InputError(f"cannot read {name} as a video ({exc.__class__.__name__}: {exc})",
                         hint="is it a video file (mp4, mkv, avi, mov…) that FFmpeg can decode?") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{name} has no video stream")
    return container


def open_source(src: str | int | Path, fps: float | None = None, timeout: float = 10.0,
                camera_size: tuple[int, int] | None = None) -> Source:
    """Open ``src`` (see the module docstring). ``fps`` is the rate for images (and a camera request);
    ``timeout`` the seconds to wait for a stream or camera; ``camera_size`` an optional (width, height)."""
    kind = source_kind(src)
    s = str(src)
    if kind in ("image", "folder"):
        from hpsedge.runtime.io import list_images

        paths = list_images(Path(s))
        rate = float(fps or 30.0)
        return Source(kind, s, rate, _images(paths, rate))
    if kind == "camera":
        device = f"/dev/video{s}" if s.isdigit() else s
        if not Path(device).exists():
            raise InputError(f"no camera at {device}", hint="list cameras with `ls /dev/video*` (V4L2, Linux)")
        opts: dict[str, str] = {}
        if fps:
            opts["framerate"] = f"{fps:g}"
        if camera_size:
            opts["video_size"] = f"{camera_size[0]}x{camera_size[1]}"
        container = _open_container(device, device, kind, timeout, fmt="v4l2", options=opts)
        name = device
    elif kind == "stream":
        name = _redact(s)
        opts = {"rtsp_transport": "tcp"} if s.lower().startswith("rtsp") else {}
        container = _open_container(s, name, kind, timeout, options=opts)
    else:
        p = Path(s)
        if not p.is_file():
            raise InputError(f"source not found: {p}", hint="give an image, a folder, a video, a stream URL or a camera")
        name = str(p)
        container = _open_container(str(p), name, kind, timeout)
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.base_rate or stream.guessed_rate
    nominal = float(rate) if rate else float(fps or 30.0)
    cc = stream.codec_context
    size = (int(cc.width), int(cc.height)) if cc.width and cc.height else None
    live = kind in ("stream", "camera")
    return Source(kind, name, nominal, _container_frames(container, name, nominal, live), container.close, size, live)
