"""The Predictor: image + person boxes → per-person SMPL parameters, mesh, joints and confidence.

    from hpsedge.runtime import Predictor
    pred = Predictor.load("build/poco-cliff", smpl="SMPL_NEUTRAL.npz")
    for person in pred.predict(rgb_image, boxes_xyxy):
        print(person.confidence, person.transl, person.joints2d.shape)

The people of a frame run in batches of the manifest's ``max_batch`` (at most ``Predictor.max_boxes`` per
image), so memory does not grow with the number of boxes. Everything
here is numpy; the backend (ONNX Runtime or TensorRT) is imported lazily when the Predictor is loaded.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import BackendError, InputError
from hpsedge.runtime import camera, confidence, error_bound, rotations
from hpsedge.runtime.backends.base import Backend
from hpsedge.runtime.folder import DEFAULT_MAX_BATCH, BatchRange, BuildFolder, Plan, Precision
from hpsedge.runtime.manifest import Manifest
from hpsedge.runtime.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CropMeta,
    as_rgb_uint8,
    crop_images,
    normalize,
    preprocess,
    validate_boxes,
)

log = logging.getLogger(__name__)

BACKENDS = ("auto", "ort", "trt")
#: default per-image person-box limit of :meth:`Predictor.predict`
DEFAULT_MAX_BOXES = 1000


@dataclass
class PersonResult:
    """One person's result. Arrays are float32 numpy unless noted; units are metres and pixels.

    Coordinates: ``vertices``/``joints3d`` are in the SMPL body frame (no translation), as the official
    models return them; ``transl`` moves them into the camera frame of the *full image*, whose pinhole
    camera has focal length ``focal`` and its principal point at the image centre. POCO models use
    CLIFF's focal √(W²+H²) px; TokenHMR uses HMR 2.0's ``5000/256 · max(W, H)`` px (its ``cam_crop_to_full``
    and renderer), and its ``joints2d`` are the projection with that camera.
    """

    box: np.ndarray  #: [4] x1, y1, x2, y2 (pixels), as given
    center: np.ndarray  #: [2] crop centre (pixels)
    size: float  #: side of the square crop box (pixels)
    pose_rotmat: np.ndarray  #: [24, 3, 3] global orientation + 23 body joints (SMPL order)
    pose_axis_angle: np.ndarray  #: [24, 3] the same as axis-angle (radians); flatten for the 72-d vector
    betas: np.ndarray  #: [10] shape coefficients
    cam_crop: np.ndarray  #: [3] weak-perspective (s, tx, ty) in the crop, as the network outputs it
    transl: np.ndarray  #: [3] full-image camera translation (CLIFF formula)
    focal: float  #: full-image focal length (pixels)
    sigma: np.ndarray | None = None  #: [24] POCO's per-joint uncertainty, as the network outputs it
    sigma_accumulated: np.ndarray | None = None  #: [24] σ summed along each root→joint chain (official)
    score: float | None = None  #: official per-person uncertainty (CLIFF: pelvis; PARE/HMR: mean), [0, 0.99]
    #: in [0, 1], by the manifest's ``postprocessing.confidence`` rule. POCO: 1 − score
    #: (:func:`hpsedge.runtime.confidence.confidence`); TokenHMR: the graph's ``token_confidence``, 1 − mean
    #: normalised entropy of the token distributions (no score); None for models without an uncertainty
    #: output (HMR 2.0, the plain regressors): hpsedge does not invent one
    confidence: float | None = None
    joint_confidence: np.ndarray | None = None  #: [24] 1 − clip(accumulated σ, 0, 1)
    vertices: np.ndarray | None = None  #: [6890, 3] with an SMPL file
    joints3d: np.ndarray | None = None  #: [24, 3] SMPL skeleton joints (forward kinematics)
    joints45: np.ndarray | None = None  #: [45, 3] 24 + 21 vertex joints (smplx order)
    joints49: np.ndarray | None = None  #: [49, 3] SPIN/POCO set (needs J_regressor_extra)
    joints2d: np.ndarray | None = None  #: [24, 2] skeleton joints projected into the image (pixels)
    #: the pinhole camera ``joints2d`` are projected with, and overlays draw with (one camera per model):
    #: ``pixel = view_focal · (P + view_transl)_xy / (P + view_transl)_z + view_center`` for body-frame points P.
    #: CLIFF/TokenHMR: the full-image camera (``transl``, ``focal``, image centre); PARE/HMR: the crop camera
    #: (f = 5000·size/crop_size px, principal point at the box centre, POCO's crop translation).
    view_focal: float | None = None
    view_center: np.ndarray | None = None  #: [2] principal point (pixels)
    view_transl: np.ndarray | None = None  #: [3]
    #: the body's root is at or behind that camera (z ≤ 0): nothing of it can be drawn (untrained weights,
    #: a bad box); ``joints2d`` are then meaningless
    behind_camera: bool = False
    #: [49, 2] the 49-joint set projected with the same camera as ``joints2d`` (pixels; needs J_regressor_extra)
    joints49_2d: np.ndarray | None = None
    #: joint group → bound (mm): with probability ≥ ``error_bound_coverage`` every joint of the group is within
    #: it of the truth, root-relative (:mod:`hpsedge.runtime.error_bound`; "body" = the whole person). None
    #: when the folder has no fitted ``error_bound.json`` or the model has no uncertainty (see the reason)
    error_bound_mm: dict[str, float] | None = None
    error_bound_coverage: float | None = None  #: the coverage the bounds hold at (e.g. 0.9)
    error_bound_reason: str | None = None  #: why there is no bound (None when there is one)
    #: the user's calibrated camera, when one was given: ``transl`` is in it, and ``joints2d``/overlays use
    #: its fx, fy, principal point and lens distortion (:func:`hpsedge.runtime.camera.project_view`);
    #: ``focal``/``view_focal`` are then √(fx·fy). Not repeated in :meth:`to_dict` (one per image)
    intrinsics: camera.CameraIntrinsics | None = None

    def to_dict(self, include_mesh: bool = False) -> dict[str, Any]:
        """JSON-ready dict (lists and floats); the mesh is left out unless asked for (it is 6890×3)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if (f.name == "vertices" and not include_mesh) or f.name == "intrinsics":
                continue
            if isinstance(v, np.ndarray):
                v = np.round(v.astype(np.float64), 6).tolist()
            elif isinstance(v, (np.floating, float)):
                v = float(v)
            out[f.name] = v
        return out


def _engine_probe() -> tuple[dict[str, bool], str | None, str | None, str | None]:
    """What this machine offers: (available backends, GPU cc, TensorRT version, GPU name). Cheap, lazy."""
    available = {"trt": False, "cuda_ep": False, "trt_ep": False}
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        provs = onnxruntime.get_available_providers()
        available["cuda_ep"] = "CUDAExecutionProvider" in provs
        available["trt_ep"] = "TensorrtExecutionProvider" in provs
    trt_version = gpu_cc = gpu_name = None
    if importlib.util.find_spec("tensorrt") is not None and importlib.util.find_spec("cuda") is not None:
        try:
            import tensorrt

            from hpsedge.runtime.trt.cuda import device_info

            trt_version = str(tensorrt.__version__)
            gpu_name, gpu_cc = device_info()
            available["trt"] = True
        except Exception as exc:  # no driver, no GPU: fall back to ONNX Runtime
            log.info("TensorRT present but unusable here: %s", exc)
    return available, gpu_cc, trt_version, gpu_name


def resolve_folder(path: str | Path) -> tuple[Manifest, str | None]:
    """Accept an export folder, its manifest, or a bare ``.onnx``/``.engine`` with a manifest beside it:
    (manifest, the artifact key a bare file names, or None). See :meth:`BuildFolder.open`."""
    folder = BuildFolder.open(path)
    return folder.manifest, folder.pinned


def choose_plan(path: str | Path, backend: str = "auto", device: str = "auto",
                precision: str | Precision | None = None) -> tuple[BuildFolder, Plan]:
    """What :meth:`Predictor.load` will run for these arguments, without loading it: the folder and its
    :class:`~hpsedge.runtime.folder.Plan` (graph or engine, verified; batch range; I/O; confidence rule).

    ``backend="auto"`` takes the engine when it runs on this machine's TensorRT and GPU (and is of the asked
    ``precision``), else ONNX Runtime; an ONNX plan is the graph made for ``device``'s first provider.
    """
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    wanted = Precision.parse_optional(precision)
    folder = BuildFolder.open(path)
    if folder.pinned == "engine":
        backend = "trt"
    elif folder.pinned is not None and backend == "auto":
        backend = "ort"
    chosen = backend
    if backend == "auto":
        if wanted is not None and folder.has_engine and folder.engine_precision is not wanted:
            chosen = "ort"  # the engine is of another precision: run the asked-for graph
            log.info("backend auto -> ort: the engine is %s and %s was asked for", folder.engine_precision, wanted)
        else:
            from hpsedge.runtime.trt.compat import choose_backend

            available, gpu_cc, trt_version, gpu_name = _engine_probe()
            chosen, _reason = choose_backend(folder.manifest, available, gpu_cc, trt_version, gpu_name=gpu_name)
    if "slim" in folder.manifest.raw:  # a slim folder runs only its target (hpsedge.slim)
        from hpsedge.runtime.folder import check_slim_target

        check_slim_target(folder.manifest, chosen, None if wanted is None else wanted.value)
    if chosen == "trt":
        # the TensorRT backend checks the plan's hash and its TensorRT/GPU against the entry before deserializing
        return folder, folder.select("trt", precision=wanted, verify=False)
    provider = None
    if folder.pinned is None:
        from hpsedge.runtime.backends.ort import first_provider

        provider = first_provider(device)
    return folder, folder.select("ort", provider, wanted)


class Predictor:
    """Loaded model + pre/post-processing. Build it with :meth:`load`."""

    def __init__(self, manifest: Manifest, backend: Backend, smpl: Any | None = None) -> None:
        self.manifest = manifest
        self.backend = backend
        self.smpl = smpl
        self.family = manifest.family  # a label only: every rule below comes from the manifest
        self.has_sigma = manifest.has_sigma and "sigma" in backend.output_names
        self.preprocessing = manifest.preprocessing
        self.postprocessing = manifest.postprocessing
        self.sigma_score = manifest.sigma_score
        #: "sigma", a graph output's name, or None (no uncertainty output: results carry no confidence)
        self.confidence_rule = manifest.confidence_rule
        self.projection = manifest.projection
        self.joint_sets = manifest.joint_sets
        if self.confidence_rule is None:
            log.info("%s has no uncertainty output: results carry no confidence (None)", manifest.model_name)
        #: the folder's verified, fitted error bound (None: see :attr:`error_bound_reason`)
        self.error_bound = error_bound.load_error_bound(manifest)
        self.error_bound_reason: str | None = None
        if self.error_bound is None:
            no_unc = self.confidence_rule is None and not self.has_sigma
            self.error_bound_reason = error_bound.NO_UNCERTAINTY if no_unc else error_bound.NOT_FITTED
        # side of the square crop the camera refers to (TokenHMR: 256, of which the graph sees 256×192)
        self.crop_size = float(self.postprocessing.get("crop_size") or self.preprocessing["input_size"][1])
        #: what :meth:`load` chose to run (:meth:`hpsedge.runtime.folder.BuildFolder.select`); None when the
        #: Predictor was built around a backend directly (serving's remote network)
        self.plan: Plan | None = None
        #: the user's calibrated camera (None: the model's assumed one); see :mod:`hpsedge.runtime.camera`
        self.intrinsics: camera.CameraIntrinsics | None = None

    @property
    def batch(self) -> BatchRange:
        """The person batch one backend call takes: the plan's (an engine's profile), else the backend's
        limit or the manifest's ``max_batch``."""
        if self.plan is not None:
            return self.plan.batch
        return BatchRange(1, self.backend.max_batch or self.manifest.max_batch or DEFAULT_MAX_BATCH)

    # ------------------------------------------------------------------------------------------ load
    @classmethod
    def load(
        cls,
        path: str | Path,
        backend: str = "auto",
        device: str = "auto",
        smpl: str | Path | Any | None = None,
        j_regressor_extra: str | Path | np.ndarray | None = None,
        threads: int | None = None,
        precision: str | None = None,
        intrinsics: Any | None = None,
    ) -> Predictor:
        """Load an export folder (or a bare ``.onnx``/``.engine`` with its manifest beside it).

        Args:
            backend: ``"auto"`` (TensorRT when a compatible engine exists, else ONNX Runtime), ``"ort"``
                or ``"trt"``.
            device: ONNX Runtime device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"tensorrt"``; for TensorRT a
                CUDA device index (``"0"``).
            smpl: SMPL ``.npz``/``.pkl`` (or a loaded :class:`hpsedge.runtime.smpl.SMPL`) for meshes,
                3D and 2D joints. Without it, results hold parameters, camera and confidence only.
            j_regressor_extra: ``J_regressor_extra.npy`` for the 49-joint SPIN/POCO set.
            threads: ONNX Runtime intra-op threads.
            precision: which precision to run (``"fp32"``, ``"fp16"``, ``"int8"``); default: the folder's
                own precision (``manifest["precision"]``). An engine of another precision is passed over by
                ``"auto"`` (its graph runs on ONNX Runtime) and refused by ``"trt"``. What runs is
                :func:`choose_plan`'s answer, kept as :attr:`plan`.
            intrinsics: the calibrated camera the images come from (anything
                :func:`hpsedge.runtime.camera.as_intrinsics` reads: ``CameraIntrinsics``, a camera_info
                YAML/JSON path, ``"fx,fy,cx,cy"``); default: each model's assumed camera.
        """
        cam_k = camera.as_intrinsics(intrinsics)  # a bad camera file fails before the model loads
        if backend not in BACKENDS:
            raise BackendError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
        if threads is not None and (not isinstance(threads, int) or threads < 0):
            raise InputError(f"threads must be an integer ≥ 0 (0: ONNX Runtime's default), got {threads!r}")
        folder, plan = choose_plan(path, backend, device, precision)
        manifest = folder.manifest
        if plan.backend == "trt":
            from hpsedge.runtime.trt.backend import TensorRTBackend

            engine: Backend = TensorRTBackend(plan.path, plan.entry, device=int(device) if device.isdigit() else 0)
        else:
            if plan.flavor:
                log.info("running %s (%s flavour) for %s", plan.file, plan.flavor, plan.provider)
            engine = _make_ort(manifest, plan, device, threads)
            manifest.check_unchanged(plan.key)  # what ONNX Runtime opened is what was verified
        model = _load_smpl(smpl, j_regressor_extra) if smpl is not None else None
        log.info("loaded %s (%s) on %s", manifest.model_name, plan.describe(), engine.device)
        pred = cls(manifest, engine, model)
        pred.plan = plan
        pred.intrinsics = cam_k
        return pred

    # --------------------------------------------------------------------------------------- predict
    #: most person boxes one :meth:`predict` call accepts (work and memory stay bounded); set per instance
    max_boxes: int = DEFAULT_MAX_BOXES

    def predict(self, image: Any, boxes: Any | None = None, bgr: bool = False) -> list[PersonResult]:
        """Run every person box of one image. ``boxes``: [K,4] x1,y1,x2,y2 pixels (None: whole image).

        At most :attr:`max_boxes` boxes (an :class:`InputError` beyond); they run in chunks of the backend's
        ``max_batch`` (the manifest's), crops and outputs included, so memory does not grow with K.
        """
        if boxes is not None:
            n = int(np.shape(boxes)[0]) if np.ndim(boxes) >= 1 else 0
            if n > self.max_boxes:
                raise InputError(
                    f"{n} person boxes for one image; the limit is {self.max_boxes}",
                    hint="filter the detections (score, size, NMS), or raise the limit (--max-boxes / "
                    "Predictor.max_boxes)",
                )
            step = self.batch.max
            if n > step:
                arr = validate_boxes(boxes, as_rgb_uint8(image, bgr=bgr).shape[:2])  # indices of all K
                out: list[PersonResult] = []
                for i in range(0, n, step):
                    out += self._predict_one(image, arr[i : i + step], bgr)
                return out
        return self._predict_one(image, boxes, bgr)

    def _predict_one(self, image: Any, boxes: Any | None, bgr: bool) -> list[PersonResult]:
        if boxes is None:
            arr = np.asarray(image)
            if arr.ndim < 2:
                raise InputError(f"image must be H×W×3 uint8, got shape {arr.shape}")
            log.debug("no boxes given: the whole image is one person box")
            boxes = np.array([[0.0, 0.0, float(arr.shape[1]), float(arr.shape[0])]], dtype=np.float32)
        feeds, meta = self.prepare(image, boxes, bgr=bgr)
        if meta.num_persons == 0:
            return []
        outputs = self.run_batched(feeds)
        return self.postprocess(outputs, meta, np.asarray(boxes, dtype=np.float64).reshape(-1, 4))

    def prepare(self, image: Any, boxes: Any, bgr: bool = False) -> tuple[dict[str, np.ndarray], CropMeta]:
        """Image + boxes → graph feeds and crop metadata: crops (TokenHMR's anti-aliasing included) and, with a
        calibrated camera, CLIFF's ``bbox_info`` from its focal length and principal point."""
        feeds, meta = preprocess(image, boxes, self.preprocessing, bgr=bgr)
        if meta.num_persons == 0:
            return feeds, meta
        antialias_crops(image, feeds, meta, self.preprocessing, bgr=bgr)
        if self.intrinsics is not None:
            self.intrinsics.check_image(meta.image_hw)
            if "bbox_info" in feeds:
                feeds["bbox_info"] = camera.cliff_bbox_info_with_intrinsics(meta.center, meta.size, self.intrinsics)
        return feeds, meta

    def run_batched(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph over all people, in chunks no larger than the backend's max batch."""
        for name, arr in feeds.items():
            if not np.isfinite(arr).all():
                raise InputError(f"graph input '{name}' holds NaN or inf values; check the image and boxes")
        k = next(iter(feeds.values())).shape[0]
        batch = self.batch
        step = min(batch.max, self.backend.max_batch or batch.max)
        parts = [self._run_padded({n: a[i : i + step] for n, a in feeds.items()}, batch.min)
                 for i in range(0, k, step)]
        return {name: np.concatenate([p[name] for p in parts], axis=0) for name in parts[0]}

    def _run_padded(self, feeds: dict[str, np.ndarray], min_batch: int) -> dict[str, np.ndarray]:
        """One backend call; a chunk smaller than the plan's minimum batch (an engine profile with min > 1)
        is padded by repeating its last person, and the padding is cut from the outputs."""
        n = next(iter(feeds.values())).shape[0]
        if n == 0 or n >= min_batch:
            return self.backend.run(feeds)
        idx = np.concatenate([np.arange(n), np.full(min_batch - n, n - 1)])
        out = self.backend.run({name: a[idx] for name, a in feeds.items()})
        return {name: a[:n] for name, a in out.items()}

    def postprocess(self, out: dict[str, np.ndarray], meta: CropMeta, boxes: np.ndarray) -> list[PersonResult]:
        k = meta.num_persons
        pose = out["pose"].astype(np.float32)
        betas = out["betas"].astype(np.float32)
        cam = out["cam"].astype(np.float32)
        aa = rotations.rotmat_to_axis_angle(pose).astype(np.float32)
        focal = self.full_focal(meta)
        if self.intrinsics is not None:
            transl = camera.translation_with_intrinsics(cam, meta.center, meta.size, self.intrinsics).astype(np.float32)
        else:
            transl = camera.full_image_translation(cam, meta.center, meta.size, meta.image_hw, focal).astype(np.float32)
        sigma = out.get("sigma") if self.has_sigma else None
        acc = score = conf = jconf = None
        rule = self.confidence_rule
        if rule is not None and rule != "sigma" and rule in out:  # a graph output holds the confidence
            conf = np.clip(out[rule].astype(np.float32).reshape(-1), 0.0, 1.0)
        if sigma is not None:
            sigma = sigma.astype(np.float32)
            acc = confidence.accumulate_sigma(sigma)
            jconf = confidence.joint_confidence(sigma)
            if self.sigma_score is not None:  # the manifest's σ score rule (pelvis | mean)
                score = confidence.official_score(sigma, self.sigma_score)
                if rule == "sigma":
                    conf = (1.0 - score).astype(np.float32)
        view_f, view_c, view_t = self.view_cameras(cam, transl, meta)
        behind = ~(np.isfinite(view_t).all(axis=1) & (view_t[:, 2] > 1e-6))
        body = None
        joints2d = joints49_2d = None
        if self.smpl is not None:
            body = self.smpl.forward(betas, pose, return_vertices=True)
            joints2d = self.project(body.joints, cam, transl, meta)
            if body.joints49 is not None:
                joints49_2d = self.project(body.joints49, cam, transl, meta)

        def pick(arr: np.ndarray | None, i: int) -> np.ndarray | None:
            return None if arr is None else arr[i]

        eb, eb_reason = self.error_bound, self.error_bound_reason
        bounds = None if eb is None else eb.bounds(acc, score, conf)
        if eb is not None and bounds is None:
            eb_reason = f"this run gave no {eb.uncertainty} output, which the error bound needs"

        results = []
        for i in range(k):
            results.append(
                PersonResult(
                    box=boxes[i].astype(np.float32),
                    center=meta.center[i].astype(np.float32),
                    size=float(meta.size[i]),
                    pose_rotmat=pose[i],
                    pose_axis_angle=aa[i],
                    betas=betas[i],
                    cam_crop=cam[i],
                    transl=transl[i],
                    focal=focal,
                    sigma=pick(sigma, i),
                    sigma_accumulated=pick(acc, i),
                    score=None if score is None else float(score[i]),
                    confidence=None if conf is None else float(conf[i]),
                    joint_confidence=pick(jconf, i),
                    vertices=None if body is None else body.vertices[i],
                    joints3d=None if body is None else body.joints[i],
                    joints45=None if body is None or "smpl45" not in self.joint_sets else body.joints45[i],
                    joints49=None
                    if body is None or body.joints49 is None or "spin49" not in self.joint_sets
                    else body.joints49[i],
                    joints2d=pick(joints2d, i),
                    joints49_2d=pick(joints49_2d, i),
                    view_focal=float(view_f[i]),
                    view_center=view_c[i].astype(np.float32),
                    view_transl=view_t[i].astype(np.float32),
                    behind_camera=bool(behind[i]),
                    error_bound_mm=None if bounds is None or eb is None
                    else {n: float(b) for n, b in zip(eb.group_names, bounds[i], strict=True)},
                    error_bound_coverage=None if bounds is None or eb is None else eb.coverage,
                    error_bound_reason=eb_reason,
                    intrinsics=self.intrinsics,
                )
            )
        return results

    def full_focal(self, meta: CropMeta) -> float:
        """Focal length (pixels) of the full-image camera that ``transl`` refers to.

        ``postprocessing.full_focal == "max_side"`` (TokenHMR, HMR 2.0's demo): ``crop_focal_length /
        crop_size · max(W, H)`` = 5000/256 · max(W, H); otherwise CLIFF's √(W² + H²) (``meta.focal``).
        With a calibrated camera: its √(fx·fy), for every model.
        """
        if self.intrinsics is not None:
            return self.intrinsics.f
        if self.manifest.full_focal == "max_side":
            crop_focal = float(self.postprocessing.get("crop_focal_length", 5000.0))
            return crop_focal / self.crop_size * float(max(meta.image_hw))
        return float(meta.focal)

    def view_cameras(self, cam: np.ndarray, transl: np.ndarray, meta: CropMeta) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each person's pinhole camera by the manifest's ``projection`` rule: ``(focal [K], center [K,2],
        transl [K,3])``, pixels = ``focal·(P+t)_xy/(P+t)_z + center``.

        ``"full_image"``: the full-image perspective camera (``transl``, :meth:`full_focal`): CLIFF's (focal
        √(W²+H²), as POCO-CLIFF's smplcam head) or HMR 2.0's ``cam_crop_to_full`` (focal
        5000/256 · max(W, H); HMR 2.0 and TokenHMR, the camera their demos render the mesh with).
        ``"crop"`` (PARE/HMR): the crop camera (f=5000, POCO's ``crop_translation``) mapped from the crop to the image, as
        POCO's demo maps its 2D joints: focal ``5000·size/crop_size`` px, principal point at the box centre
        (:func:`hpsedge.runtime.camera.project_crop_to_image`, written as one pinhole).
        """
        k = meta.num_persons
        h, w = meta.image_hw
        if self.intrinsics is not None:  # the user's camera, whatever the model's own projection rule
            i = self.intrinsics
            return (np.full(k, i.f), np.tile([i.cx, i.cy], (k, 1)), np.asarray(transl, dtype=np.float64).reshape(k, 3))
        if self.projection == "full_image":
            focal = self.full_focal(meta)
            return (np.full(k, float(focal)), np.tile([w / 2.0, h / 2.0], (k, 1)),
                    np.asarray(transl, dtype=np.float64).reshape(k, 3))
        crop_focal = float(self.postprocessing.get("crop_focal_length", 5000.0))
        t = camera.crop_translation(cam, self.crop_size, crop_focal)
        focal = crop_focal * np.asarray(meta.size, dtype=np.float64) / self.crop_size
        return focal, np.asarray(meta.center, dtype=np.float64), t

    def project(self, points: np.ndarray, cam: np.ndarray, transl: np.ndarray, meta: CropMeta) -> np.ndarray:
        """3D points [K,J,3] in the body frame → image pixels, with the manifest's camera (:meth:`view_cameras`)."""
        focal, center, t = self.view_cameras(cam, transl, meta)
        return camera.project_view(points, t, focal, center, self.intrinsics).astype(np.float32)

    def close(self) -> None:
        self.backend.close()


def gaussian_blur(image: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """``[H, W, C]`` → float64 Gaussian blur over the two spatial axes, edges replicated.

    The filter ``skimage.filters.gaussian(img, sigma, channel_axis=2, preserve_range=True)`` applies
    (``scipy.ndimage.gaussian_filter`` with ``mode="nearest"``, ``truncate=4``): separable, kernel radius
    ``int(truncate·σ + 0.5)``, weights ``exp(−x²/2σ²)`` normalised to sum 1.
    """
    x = np.asarray(image, dtype=np.float64)
    radius = int(truncate * float(sigma) + 0.5)
    if radius < 1:
        return x.copy()
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (taps / float(sigma)) ** 2)
    w /= w.sum()
    for axis in (0, 1):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (radius, radius)
        xp = np.pad(x, pad, mode="edge")
        n = x.shape[axis]
        out = np.zeros_like(x)
        for i, wi in enumerate(w):
            out += wi * np.take(xp, np.arange(i, i + n), axis=axis)
        x = out
    return x


def antialias_crops(image: Any, feeds: dict[str, np.ndarray], meta: CropMeta, spec: dict[str, Any], bgr: bool = False) -> int:
    """TokenHMR's anti-aliasing for large boxes, in place on ``feeds["image"]``; returns how many crops changed.

    The official ``ViTDetDataset`` blurs the whole image before cropping when the square box side
    ``S > 1.1 · 2 · 256`` (563.2 px): ``skimage.filters.gaussian`` with σ = (S/512 − 1)/2 on the spatial
    axes, then crops the *float* result (no rounding to uint8). Only for manifests whose preprocessing
    declares ``antialias: {"kind": "gaussian", "min_box": ...}``. Each such person's crop is redone from a
    blurred window of the image that covers the crop's source rectangle (the blur's edge handling is
    that of the whole image, and samples outside the image stay 0).
    """
    aa = spec.get("antialias")
    if not isinstance(aa, dict) or aa.get("kind") != "gaussian" or meta.num_persons == 0:
        return 0
    side = float(spec.get("square_side") or max(meta.out_hw))
    min_box = float(aa.get("min_box", 1.1 * 2.0 * side))
    todo = np.nonzero(meta.size > min_box)[0]
    if todo.size == 0:
        return 0
    rgb = as_rgb_uint8(image, bgr=bgr)
    h, w = rgb.shape[:2]
    for i in todo:
        sigma = (float(meta.size[i]) / (2.0 * side) - 1.0) / 2.0
        margin = int(4.0 * sigma + 0.5) + 2
        m = meta.matrices[i]
        oh, ow = meta.out_hw
        xs = m[0, 0] * np.array([0.0, ow - 1.0]) + m[0, 2]
        ys = m[1, 1] * np.array([0.0, oh - 1.0]) + m[1, 2]
        x0, x1 = max(0, int(np.floor(xs.min())) - margin), min(w, int(np.ceil(xs.max())) + margin + 1)
        y0, y1 = max(0, int(np.floor(ys.min())) - margin), min(h, int(np.ceil(ys.max())) + margin + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        # blur the window with the whole image's edge rule: pad the window from real pixels first
        py0, py1 = max(0, y0 - margin), min(h, y1 + margin)
        px0, px1 = max(0, x0 - margin), min(w, x1 + margin)
        blurred = gaussian_blur(rgb[py0:py1, px0:px1], sigma)[y0 - py0 : y1 - py0, x0 - px0 : x1 - px0]
        mw = m.copy()
        mw[0, 2] -= x0
        mw[1, 2] -= y0
        # the window spans every source pixel the crop samples, so samples beyond it are outside the image
        crop = crop_images(blurred, mw[None], meta.out_hw, out_dtype=np.float32)
        if str(spec.get("color", "RGB")).upper() == "BGR":
            crop = crop[..., ::-1]
        feeds["image"][i] = normalize(crop, spec.get("mean") or IMAGENET_MEAN, spec.get("std") or IMAGENET_STD)[0]
    return int(todo.size)


def _check_artifact_size(manifest: Manifest, key: str, path: Path) -> None:
    """The artifact (and its external ``data_file``) must match the manifest's size and sha256: a build
    folder is untrusted, and a swapped graph must not run under the manifest's name. The hash of a verified
    file is cached by (inode, size, mtime, ctime), so warm starts cost a ``stat``."""
    manifest.verified_artifact(key)  # names, sizes and sha256 (cached per file), external data included


def _make_ort(manifest: Manifest, plan: Plan, device: str, threads: int | None) -> Backend:
    from hpsedge.runtime.backends.ort import OrtBackend

    return OrtBackend(
        plan.path,
        device=device,
        threads=threads,
        inputs=list(plan.inputs),
        outputs=list(plan.outputs),
        max_batch=plan.batch.max,
    )


def _load_smpl(smpl: Any, j_regressor_extra: Any) -> Any:
    from hpsedge.runtime.smpl import SMPL

    if isinstance(smpl, SMPL):
        return smpl
    return SMPL.load(smpl, j_regressor_extra=j_regressor_extra)
