"""``hpsedge run``: thin wrappers over :func:`hpsedge.runtime.images.run_images` (``--image``),
:func:`hpsedge.runtime.video.run_video` (``--video``) and :func:`hpsedge.runtime.pipeline.run_source`
(``--source``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from hpsedge.cli._common import (
    BackendOpt,
    DeviceOpt,
    JRegressorExtraOpt,
    SmplMeshOpt,
    ThreadsOpt,
    console,
    err_console,
    parse_precision,
    refuse_existing_output,
)
from hpsedge.errors import HpsedgeError
from hpsedge.runtime.images import CONTACT_SHEET_MAX


def run_cmd(
    export_dir: Annotated[Path, typer.Argument(help="Export folder (with manifest.json), or its .onnx/.engine.")],
    image: Annotated[Path | None, typer.Option("--image", "-i", help="An image file or a folder of images.")] = None,
    video: Annotated[
        Path | None,
        typer.Option("--video", help="A video: per-track .npz (raw + inpainted/smoothed), overlay .mp4, summary.json."),
    ] = None,
    tracks: Annotated[
        Path | None,
        typer.Option("--tracks", help="Person tracks for --video: MOT text (frame,id,x,y,w,h; 1-based) or JSON. "
                                      "Default: the whole frame is one person."),
    ] = None,
    smooth: Annotated[bool, typer.Option("--smooth/--no-smooth", help="--video: One-Euro smoothing on SO(3).")] = True,
    inpaint: Annotated[
        bool, typer.Option("--inpaint/--no-inpaint", help="--video: replace uncertain frames/joints from confident ones.")
    ] = True,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for JSON, meshes and overlays.")] = Path(
        "hpsedge-out"
    ),
    boxes: Annotated[
        Path | None,
        typer.Option("--boxes", "-b", help='Person boxes JSON: {"img.jpg": [[x1,y1,x2,y2], ...]} or COCO-style.'),
    ] = None,
    smpl: SmplMeshOpt = None,
    j_regressor_extra: JRegressorExtraOpt = None,
    backend: BackendOpt = "auto",
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    precision: Annotated[str | None, typer.Option(
        help="fp32 | fp16 | int8 graph of the folder [default: the folder's own precision, from its manifest]; "
        "an INT8 folder runs its CPU Q/DQ graph on the CPU provider and its TensorRT graph on TensorRT; an engine "
        "of another precision is not used.", callback=parse_precision)] = None,
    overlay: Annotated[bool, typer.Option("--overlay/--no-overlay", help="Write an overlay PNG per image.")] = True,
    side_view: Annotated[
        bool, typer.Option("--side-view", help="--image: add a second overlay panel seen from the side (depth to the right).")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty output folder.")] = False,
    source: Annotated[
        str | None,
        typer.Option("--source", "-s", help="Frames: an image, a folder, a video, an rtsp/http stream, or a camera "
                                            "(/dev/video0 or 0). Detect, track and stream people."),
    ] = None,
    jsonl: Annotated[
        str | None, typer.Option("--jsonl", help="--source: one JSON line per frame to this file, or '-' for stdout.")
    ] = None,
    detector: Annotated[
        Path | None, typer.Option("--detector", help="--source/--image: a person-detector ONNX (default: the folder's).")
    ] = None,
    overlay_video: Annotated[
        Path | None, typer.Option("--overlay-video", help="--source: write an overlay .mp4 here.")
    ] = None,
    max_frames: Annotated[int | None, typer.Option("--max-frames", help="--source: stop after N frames.")] = None,
    detect_every: Annotated[int, typer.Option(
        "--detect-every", min=1, help="--source: run the detector on every K-th frame; the tracker carries the boxes "
                                      "in between (new tracks get it on every frame).")] = 1,
    max_boxes: Annotated[
        int, typer.Option("--max-boxes", help="Most person boxes per image (more is an error).")
    ] = 1000,
    camera: Annotated[
        Path | None, typer.Option("--camera", help="The calibrated camera: a ROS camera_info YAML, or JSON "
                                                   "{fx, fy, cx, cy, distortion}. Default: each model's assumed camera.")
    ] = None,
    intrinsics: Annotated[
        str | None, typer.Option("--intrinsics", help="The calibrated camera as numbers: fx,fy,cx,cy[,k1,k2,p1,p2[,k3]] "
                                                      "(pixels; plumb_bob distortion).")
    ] = None,
    mcap: Annotated[
        Path | None, typer.Option("--mcap", help="--source/--image: write ROS 2 messages (markers, SMPL JSON, "
                                                 "camera_info) to this .mcap file.")
    ] = None,
    rerun: Annotated[
        Path | None, typer.Option("--rerun", help="--source/--image: write a Rerun recording (.rrd) here.")
    ] = None,
) -> None:
    """Run an export folder on images: per-person JSON (+ .npz meshes) and an overlay PNG per image
    (a folder of images also gets contact_sheet.png). People come from --boxes, else the folder's person
    detector (or --detector), else the whole image.

    With --source: detect (the folder's detector), track and stream people frame by frame (--jsonl)."""
    import numpy as np
    from rich.progress import BarColumn, MofNCompleteColumn

    from hpsedge.runtime.images import check_images, run_images
    from hpsedge.runtime.io import boxes_for, list_images, load_boxes, stems_unique
    from hpsedge.runtime.predictor import Predictor

    cam = _camera(camera, intrinsics)  # a bad camera file fails before any model loads
    for p in (mcap, rerun):
        _check_new_file(p, force)
    if mcap is not None and mcap.suffix.lower() != ".mcap":
        raise HpsedgeError(f"--mcap {mcap}: use an .mcap name")
    if rerun is not None and rerun.suffix.lower() != ".rrd":
        raise HpsedgeError(f"--rerun {rerun}: use an .rrd name")
    if source is not None:
        if image is not None or video is not None or tracks is not None:
            raise HpsedgeError("--source replaces --image/--video/--tracks; give one of them")
        _run_source(export_dir, source, jsonl, detector, overlay_video, boxes, smpl, j_regressor_extra, backend,
                    device, threads, precision, force, max_frames, cam, mcap, rerun, detect_every)
        return
    if jsonl is not None or overlay_video is not None:
        raise HpsedgeError("--jsonl and --overlay-video go with --source")
    if video is not None and (detector is not None or mcap is not None or rerun is not None):
        raise HpsedgeError("--detector, --mcap and --rerun go with --source or --image",
                           hint="for a video with the detector, tracks and ROS/Rerun output: --source video.mp4")
    if (image is None) == (video is None):
        raise HpsedgeError("give --image (a file or folder) or --video, one of the two")
    if threads is not None and threads < 0:
        raise HpsedgeError(f"--threads must be 0 (ONNX Runtime's default) or more, got {threads}")
    if max_boxes < 1:
        raise HpsedgeError(f"--max-boxes must be at least 1, got {max_boxes}")
    if tracks is not None and video is None:
        raise HpsedgeError("--tracks goes with --video")
    if video is not None:
        from hpsedge.runtime.video import run_video

        refuse_existing_output(out, force)
        predictor = Predictor.load(
            export_dir, backend=backend, device=device, smpl=smpl, j_regressor_extra=j_regressor_extra,
            threads=threads, precision=precision, intrinsics=cam,
        )
        with Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[fps]}"), TimeElapsedColumn(), console=err_console, transient=True,
        ) as progress:
            task = progress.add_task("predict", total=None, fps="")

            def on_progress(stage: str, done: int, total: int, fps: float) -> None:
                progress.update(task, description=stage, completed=done, total=total, fps=f"{fps:.1f} frames/s")

            summary = run_video(predictor, video, tracks, out, smooth=smooth, inpaint=inpaint, overlay=overlay,
                                progress=on_progress)
        filled = sum(t["inpainted_frames"] for t in summary["tracks"].values())
        console.print(
            f"[green]✓[/green] {summary['frames']} frames, {len(summary['tracks'])} track(s), {filled} frame(s) "
            f"inpainted → [bold]{out}[/bold] ({summary['frames_per_second']:.1f} frames/s on "
            f"{predictor.backend.name}: {predictor.backend.device})"
        )
        return

    images = list_images(image)
    if not stems_unique(images):
        raise HpsedgeError("two input images share a file stem; outputs would collide", hint="rename them")
    per_image = boxes_for(images, load_boxes(boxes), str(boxes)) if boxes else None
    refuse_existing_output(out, force)
    check_images(images)  # a non-image is refused before the model loads
    from hpsedge.runtime.api import Model, RobotOutputs

    # the same people as --source: the folder's detector (or --detector) unless boxes are given
    model = Model(export_dir, smpl, camera=cam, detector=detector if boxes is None else None, backend=backend,
                  device=device, threads=threads, precision=precision, j_regressor_extra=j_regressor_extra,
                  max_boxes=max_boxes)
    predictor = model.predictor
    if boxes is None:
        console.print("[yellow]no --boxes: people found by the person detector[/yellow]" if model.detector is not None
                      else "[yellow]no --boxes and no person detector: each whole image is taken as one person "
                           "box[/yellow]")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HpsedgeError(f"cannot create the output folder {out} ({exc.strerror or exc})") from None
    outs = RobotOutputs(mcap, rerun, faces=model.smpl.faces if model.smpl is not None else None, intrinsics=cam,
                        model=model.name, force=force) if (mcap or rerun) else None
    try:
        with Progress(
            SpinnerColumn(), TextColumn("[bold]run"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err_console, transient=True, disable=len(images) == 1 or not err_console.is_terminal,
        ) as progress:
            task = progress.add_task("run", total=len(images))
            done = run_images(predictor, images, out, per_image, overlay=overlay, side_view=side_view,
                              progress=lambda i, n: progress.update(task, completed=i, total=n),
                              detector=model.detector if boxes is None else None,
                              on_image=None if outs is None else lambda i, rgb, res: outs.write(rgb, res, i, None))
    except BaseException:
        if outs is not None:
            outs.close()  # what was written so far is kept, as the JSON files are
        raise
    if outs is not None:
        outs.close()
    console.print(
        f"[green]✓[/green] {len(images)} image(s), {done.persons} person(s) → [bold]{escape(str(out))}[/bold] "
        f"({predictor.manifest.model_name} on {predictor.backend.name}: {predictor.backend.device})"
    )
    for r in done.last_results[:5] if len(images) == 1 else []:
        conf = "-" if r.confidence is None else f"{r.confidence:.2f}"
        console.print(f"  person at {np.round(r.box).astype(int).tolist()}: confidence {conf}, "
                      f"translation {np.round(r.transl.astype(float), 2).tolist()} m"
                      + (" [yellow](behind the camera: not visible)[/yellow]" if r.behind_camera else ""))
    if done.behind_camera and len(images) > 1:
        console.print(f"  [yellow]{done.behind_camera} person(s) behind the camera: not visible[/yellow] "
                      '(root at or behind the camera; "behind_camera": true in their JSON)')
    for p in outs.paths if outs is not None else []:
        console.print(f"  {'ROS 2 messages' if p.suffix == '.mcap' else 'Rerun recording'}: {escape(str(p))}")
    if done.contact_sheet is not None:
        shown = len(images) if len(images) <= CONTACT_SHEET_MAX else CONTACT_SHEET_MAX
        more = f", the first {shown} of {len(images)} images" if shown < len(images) else ""
        console.print(f"  contact sheet{more}: {escape(str(done.contact_sheet))}")


def _camera(camera: Path | None, intrinsics: str | None) -> object | None:
    """``--camera FILE`` or ``--intrinsics fx,fy,cx,cy[,…]`` → a CameraIntrinsics (or None)."""
    from hpsedge.runtime.camera import CameraIntrinsics

    if camera is not None and intrinsics is not None:
        raise HpsedgeError("give the camera once: --camera FILE or --intrinsics fx,fy,cx,cy")
    if camera is not None:
        return CameraIntrinsics.load(camera)
    return CameraIntrinsics.from_string(intrinsics) if intrinsics is not None else None


def _check_new_file(p: Path | None, force: bool) -> None:
    if p is None:
        return
    if p.exists() and not force:
        raise HpsedgeError(f"{p} exists; not overwriting it", hint="pass --force, or choose another path")
    if not p.parent.is_dir():
        raise HpsedgeError(f"folder {p.parent} does not exist")


def _run_source(export_dir: Path, source: str, jsonl: str | None, detector: Path | None, overlay_video: Path | None,
                boxes: Path | None, smpl: Path | None, j_regressor_extra: Path | None, backend: str, device: str,
                threads: int | None, precision: str | None, force: bool, max_frames: int | None,
                cam: object | None = None, mcap: Path | None = None, rerun: Path | None = None,
                detect_every: int = 1) -> None:
    """``hpsedge run --source``: the streaming Pipeline over a source, JSON lines out."""
    from hpsedge.runtime.io import boxes_for, load_boxes
    from hpsedge.runtime.pipeline import Pipeline, run_source
    from hpsedge.runtime.sources import SourceStopped, open_source

    outs = [p for p in (Path(jsonl) if jsonl not in (None, "-") else None, overlay_video) if p is not None]
    for p in outs:
        if p.exists() and not force:
            raise HpsedgeError(f"{p} exists; not overwriting it", hint="pass --force, or choose another path")
        if not p.parent.is_dir():
            raise HpsedgeError(f"folder {p.parent} does not exist")
    if overlay_video is not None and overlay_video.suffix.lower() not in (".mp4", ".mkv", ".mov"):
        raise HpsedgeError(f"--overlay-video {overlay_video}: use an .mp4 (or .mkv/.mov) name")
    from hpsedge.runtime.sources import source_kind

    # files (an image, a folder, a video) are opened — and refused when unreadable — before the model loads;
    # live streams and cameras after it, so their frames do not queue up while it loads
    early = source_kind(str(source)) in ("image", "folder", "video")
    src = open_source(source) if early else None
    if src is not None and src.kind in ("image", "folder"):
        from hpsedge.runtime.images import check_images
        from hpsedge.runtime.io import list_images

        try:
            check_images(list_images(Path(source)))
        except BaseException:
            src.close()
            raise
    try:
        pipe = Pipeline.load(export_dir, smpl=smpl, detector=detector, backend=backend, device=device,
                             threads=threads, precision=precision, need_detector=boxes is None,
                             j_regressor_extra=j_regressor_extra, intrinsics=cam, detect_every=detect_every)
    except BaseException:
        if src is not None:
            src.close()
        raise
    if src is None:
        src = open_source(source)
    per_frame = None
    if boxes is not None:
        if src.kind not in ("image", "folder"):
            src.close()
            raise HpsedgeError("--boxes with --source needs an image or a folder of images",
                               hint="for videos give --video with --tracks")
        from hpsedge.runtime.io import list_images

        per_frame = boxes_for(list_images(Path(source)), load_boxes(boxes), str(boxes))
    stream = sys.stdout if jsonl == "-" else None
    handle = None
    if jsonl not in (None, "-"):
        handle = open(jsonl, "w", encoding="utf-8")  # noqa: SIM115 (closed below, also on errors)
        stream = handle
    say = err_console if jsonl == "-" else console
    if jsonl is None and overlay_video is None and mcap is None and rerun is None:
        say.print("[yellow]no --jsonl, --overlay-video, --mcap or --rerun: only a summary will be printed[/yellow]")
    outs = None
    if mcap is not None or rerun is not None:
        from hpsedge.runtime.api import RobotOutputs

        outs = RobotOutputs(mcap, rerun, faces=pipe.smpl.faces if pipe.smpl is not None else None,
                            intrinsics=pipe.predictor.intrinsics, model=pipe.predictor.manifest.model_name, force=force)
    on_frame = None if outs is None else (lambda frame, res: outs.write(frame.rgb, res.people, frame.index, frame.time))
    try:
        with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), TextColumn("{task.fields[fps]}"),
                      TimeElapsedColumn(), console=err_console, transient=True,
                      disable=not err_console.is_terminal) as progress:
            task = progress.add_task(f"run {src.kind}", total=None, fps="")

            def on_progress(done: int, fps: float) -> None:
                progress.update(task, description=f"run {src.kind}: frame {done}", fps=f"{fps:.1f} frames/s")

            try:
                summary = run_source(pipe, src, jsonl=stream, overlay=overlay_video, boxes=per_frame,
                                     progress=on_progress, max_frames=max_frames, on_frame=on_frame)
            except SourceStopped as exc:
                done = getattr(exc, "summary", {}).get("frames", 0)
                raise HpsedgeError(exc.message + f"; {done} frame(s) written", hint=exc.hint) from None
    finally:
        if handle is not None:
            handle.close()
        if outs is not None:
            outs.close()  # the frames so far are kept, as in the JSONL and the overlay
    ms = summary["stage_ms_per_frame"]
    say.print(
        f"[green]✓[/green] {summary['frames']} frame(s), {len(summary['tracks'])} track(s), {summary['people']} "
        f"person-frame(s) from {summary['kind']} {summary['source']}"
        + (" (interrupted)" if summary["interrupted"] else "")
        + f", {summary['frames_per_second']:.1f} frames/s; ms/frame: "
        + ", ".join(f"{k} {v:.1f}" for k, v in ms.items()),
        highlight=False,
    )
    if summary["overlay"]:
        say.print(f"  overlay: {summary['overlay']}")
    for p in outs.paths if outs is not None else []:
        say.print(f"  {'ROS 2 messages' if p.suffix == '.mcap' else 'Rerun recording'}: {p}")
