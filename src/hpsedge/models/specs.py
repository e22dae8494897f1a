"""Model registrations: one :func:`~hpsedge.models.registry.register_model` function per model family.

Torch-free: each spec names its network as ``"module:Class"`` (imported only to build it). What a field means
is documented on :class:`~hpsedge.models.registry.ModelSpec`; the official facts behind the values are in the
network modules' docstrings and ``shared/reference/*.md``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hpsedge.models.spec import FP16_KEEP_OPS, ModelSpec, TensorDecl, register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: joint sets the runtime can give with an SMPL file: SMPL's 24 (FK), smplx's 45, SPIN/POCO's 49
SMPL_JOINT_SETS = ("smpl24", "smpl45", "spin49")


# ---------------------------------------------------------------------------------------------------
# POCO (CLIFF, PARE, HMR heads with POCO's uncertainty head) and the plain regressors
# ---------------------------------------------------------------------------------------------------
def _poco_preprocessing() -> dict[str, Any]:
    """Square box crop (bbox_scale 1), ImageNet mean/std on RGB in [0, 1]."""
    return {
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "color": "RGB",
        "square": True,
        "bbox_scale": 1.0,
    }


def _poco_postprocessing(sigma_score: str | None, projection: str) -> dict[str, Any]:
    """POCO's cameras and σ rule.

    * ``projection``: ``"full_image"`` for CLIFF (its full-image perspective camera, focal √(W²+H²):
      ``full_focal: "diagonal"``), ``"crop"`` for PARE/HMR (the crop camera, f = 5000, mapped to the image);
    * ``sigma_score``: ``"pelvis"`` (CLIFF) or ``"mean"`` (PARE; HMR by analogy), see
      :func:`hpsedge.runtime.confidence.official_score`; ``confidence: "sigma"`` = 1 − that score;
      ``None`` for the plain regressors (no σ, no confidence).
    """
    return {
        "camera": "weak_perspective_crop",
        "crop_focal_length": 5000.0,
        "full_focal": "diagonal",
        "projection": projection,
        "rotation": "rotmat",
        "sigma_score": sigma_score,
        "kinematic_sigma": sigma_score is not None,
        "confidence": "sigma" if sigma_score is not None else None,
        "joint_sets": list(SMPL_JOINT_SETS),
    }


_SIGMA = TensorDecl("sigma", (24,))
_BBOX_INFO = TensorDecl("bbox_info", (3,))
_POCO_NETWORK = "hpsedge.models.poco:HPSNetwork"


def _poco(
    name: str, head: str, backbone: str, uncertainty: tuple[str, tuple[int, ...]], sigma_score: str, **kw: Any
) -> ModelSpec:
    extra = (_BBOX_INFO,) if head == "cliff" else ()
    return ModelSpec(
        name=name,
        family=head,
        network=_POCO_NETWORK,
        backbone=backbone,
        input_size=(224, 224),
        extra_inputs=extra,
        outputs=(*ModelSpec.__dataclass_fields__["outputs"].default, _SIGMA),
        preprocess=_poco_preprocessing(),
        postprocess=_poco_postprocessing(sigma_score, "full_image" if head == "cliff" else "crop"),
        arch={"backbone": backbone, "head": head, "uncertainty": uncertainty},
        drop_prefixes=kw.pop("drop_prefixes", ("flow_head.", "smpl.")),
        drop_keys=kw.pop("drop_keys", ("init_pose", "init_shape", "init_cam")),
        **kw,
    )


def _plain(spec: ModelSpec, name: str, params: int) -> ModelSpec:
    """The regressor of a POCO model without its uncertainty head (a POCO checkpoint loads; σ head dropped)."""
    return dataclasses.replace(
        spec,
        name=name,
        description=f"{name.upper()} regressor of {spec.name.upper()} without the uncertainty head",
        outputs=tuple(t for t in spec.outputs if t.name != "sigma"),
        postprocess=_poco_postprocessing(None, spec.postprocess["projection"]),
        arch={**spec.arch, "uncertainty": None},
        official_checkpoint=None,
        drop_prefixes=(*spec.drop_prefixes, "uncert_head."),
        golden_keys=(),
        params=params,
    )


@register_model
def poco() -> tuple[ModelSpec, ...]:
    """POCO-CLIFF, POCO-PARE, POCO-HMR, then the plain CLIFF, PARE and HMR regressors."""
    cliff = _poco(
        "poco-cliff", "cliff", "hrnet_w48_cls", ("feat-pose-net", (216,)), "pelvis",
        description="POCO-CLIFF: HRNet-W48 (cls) + CLIFF IEF head + POCO uncertainty (feat-pose-net, 216)",
        official_checkpoint="poco_cliff.pt",
        drop_prefixes=("flow_head.", "smpl.", "backbone.classifier."),
        golden_keys=(("poco_cliff_hrnet_w48_cls.json", "", "state_dict"),),
        # the IEF regressor (~0.1 % of the FLOPs) and the σ head stay FP32 / unquantized
        fp16_keep=("^/head/", "/uncert_head/", "@output-tail", *FP16_KEEP_OPS),
        int8_exclude=("^/head/", "/uncert_head/", "@output-tail"),
        params=79_393_253,
    )  # fmt: skip
    pare = _poco(
        "poco-pare", "pare", "hrnet_w32_pose", ("feat-pose", (512,)), "mean",
        description="POCO-PARE: HRNet-W32 (pose) + PARE part-attention head + POCO uncertainty (feat-pose, 512)",
        official_checkpoint="poco_pare.pt",
        drop_prefixes=("flow_head.", "smpl.", "backbone.final_layer."),
        drop_keys=("init_pose", "init_shape", "init_cam", "head.temperature"),
        golden_keys=(("poco_pare_hrnet_w32.json", "", "state_dict"),),
        # regressors + 6D→rotation (output tail), part-attention pooling and the σ head; the head's
        # convolutional branches (most of its FLOPs) run in FP16 and are quantized
        fp16_keep=("/uncert_head/", "@output-tail", "^/head/MatMul", *FP16_KEEP_OPS),
        int8_exclude=("^/head/(pose_mlp|shape_mlp|cam_mlp)/", "^/head/MatMul", "/uncert_head/", "@output-tail"),
        params=34_556_990,
    )  # fmt: skip
    hmr = _poco(
        "poco-hmr", "hmr", "resnet50", ("feat-pose", (512,)), "mean",
        description="POCO-HMR: ResNet-50 + HMR IEF head + POCO uncertainty (feat-pose, 512); no official weights",
        golden_keys=(("poco_hmr_resnet50_featpose_example.json", "", "state_dict"),),
        fp16_keep=("^/head/", "/uncert_head/", "@output-tail", *FP16_KEEP_OPS),
        int8_exclude=("^/head/", "/uncert_head/", "@output-tail"),
        params=28_149_493,
    )  # fmt: skip
    return (
        cliff, pare, hmr,
        _plain(cliff, "cliff", 78_893_405), _plain(pare, "pare", 32_860_710), _plain(hmr, "hmr", 26_977_501),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# HMR 2.0's crop and camera (TokenHMR inherited them)
# ---------------------------------------------------------------------------------------------------
def vitdet_preprocessing() -> dict[str, Any]:
    """HMR 2.0's / TokenHMR's crop as the official ``ViTDetDataset`` makes it, for the runtime's ``preprocess``.

    Official (``hmr2/datasets/vitdet_dataset.py``, copied by TokenHMR): the box is grown to 3:4 (w:h) by
    ``expand_to_aspect_ratio(.., [192, 256])`` with no extra padding; its side ``S = max(h, 4w/3)`` is the
    square that ``cv2.warpAffine`` (bilinear, constant 0 border) maps onto 256×256 with the box centre at
    (128, 128); RGB; ``(x − 255·mean)/(255·std)`` on 0..255 values (ImageNet mean/std); the ViT then keeps
    columns 32..223. The runtime crops exactly that central 256×192 (``square: true`` grows the box to the
    crop's 3:4 aspect, see :func:`hpsedge.runtime.preprocess.crop_boxes`) and normalises as
    ``(x/255 − mean)/std`` (equal to the official arithmetic up to float32 rounding).

    ``antialias``: for boxes larger than 1.1·2·256 = 563.2 px the official code first blurs the whole image
    with ``skimage.filters.gaussian``, σ = (S/512 − 1)/2 per spatial axis (the runtime applies it:
    :func:`hpsedge.runtime.predictor.antialias_crops`).
    """
    return {
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "color": "RGB",
        "square": True,
        "bbox_scale": 1.0,
        "bbox_info": False,
        "crop": "tokenhmr_vitdet",
        "square_side": 256,
        "antialias": {"kind": "gaussian", "min_box": 563.2, "sigma": "(S/512 - 1)/2"},
    }


def vitdet_postprocessing(rotation_6d: str, confidence: str | None, **extra: Any) -> dict[str, Any]:
    """HMR 2.0's camera conventions (``hmr2/models/hmr2.py``, ``utils/renderer.py``, ``demo.py``; TokenHMR's too).

    * crop camera: ``cam = (s, tx, ty)`` for the 256-px square crop, focal 5000 px, principal point at the
      crop centre: ``t_crop = (tx, ty, 2·5000/(256·s))``;
    * full image (``cam_crop_to_full``): focal ``f = 5000/256 · max(W, H)``, principal point at the image
      centre, ``tz = 2f/(S·s)``, ``tx' = tx + 2(cx − W/2)/(S·s)``, ``ty' = ty + 2(cy − H/2)/(S·s)`` with S the
      square box side; 2D joints are the pinhole projection of ``joints + t`` with that camera.
    * ``rotation_6d``: how the network read its 6D numbers (documentation; the graph outputs matrices);
    * ``confidence``: the name of a graph output holding a per-person confidence in [0, 1], or None.
    """
    return {
        "camera": "weak_perspective_crop",
        "crop_focal_length": 5000.0,
        "crop_size": 256,
        "full_focal": "max_side",
        "projection": "full_image",
        "rotation": "rotmat",
        "rotation_6d": rotation_6d,
        "sigma_score": None,
        "kinematic_sigma": False,
        "confidence": confidence,
        "joint_sets": list(SMPL_JOINT_SETS),
        **extra,
    }


# ---------------------------------------------------------------------------------------------------
# TokenHMR
# ---------------------------------------------------------------------------------------------------
@register_model
def tokenhmr() -> ModelSpec:
    """TokenHMR: ViT-H/16 + token head + the VQ tokenizer's decoder (``models/tokenhmr.py``)."""
    return ModelSpec(
        name="tokenhmr",
        family="tokenhmr",
        description="TokenHMR: ViT-H/16 + token head (160 tokens × 2048 codes) + VQ tokenizer decoder; token confidence",
        network="hpsedge.models.tokenhmr:TokenHMRNetwork",
        backbone="vit_h",
        input_size=(256, 192),
        outputs=(*ModelSpec.__dataclass_fields__["outputs"].default, TensorDecl("token_confidence", ())),
        optional_outputs=(TensorDecl("token_probs", (160, 2048)),),
        preprocess=vitdet_preprocessing(),
        postprocess=vitdet_postprocessing("rows", "token_confidence"),
        official_checkpoint="tokenhmr_model_latest.ckpt",
        checkpoint_reader="inert",
        drop_prefixes=("smpl.", "discriminator.", "tokenizer.encoder."),
        drop_keys=("initialized",),
        aux_prefixes=("tokenizer.",),
        aux_option="tokenizer",
        golden_keys=(
            ("tokenhmr_release_state_dict.json", "", "state_dict"),
            ("tokenhmr_tokenizer_pth_net.json", "tokenizer.", "net"),
        ),
        # LayerNorm/softmax (in FP16_KEEP_OPS), the codebook mixture, 6D→rotation (eps 1e-12) and the
        # token-confidence entropy stay FP32; the ViT's matmuls run in FP16
        fp16_keep=("@output-tail", "/rot6d/", "/token_confidence/", "/tokenizer/MatMul", *FP16_KEEP_OPS),
        int8_exclude=("@output-tail",),
        params=687_636_837,
    )


# ---------------------------------------------------------------------------------------------------
# HMR 2.0 (4D-Humans)
# ---------------------------------------------------------------------------------------------------
@register_model
def hmr2() -> ModelSpec:
    """HMR 2.0: ViT-H/16 + SMPL transformer-decoder head (``models/hmr2.py``); no uncertainty output."""
    return ModelSpec(
        name="hmr2",
        family="hmr2",
        description="HMR 2.0 (4D-Humans): ViT-H/16 + SMPL transformer-decoder head; no uncertainty output",
        network="hpsedge.models.hmr2:HMR2Network",
        backbone="vit_h",
        input_size=(256, 192),
        preprocess=vitdet_preprocessing(),
        postprocess=vitdet_postprocessing("columns", None),
        official_checkpoint="epoch=35-step=1000000.ckpt",
        checkpoint_reader="inert",
        # discriminator.* is training-only; smpl.* (body-model buffers) and initialized are rebuilt/unused
        drop_prefixes=("smpl.", "discriminator."),
        drop_keys=("initialized",),
        golden_keys=(("hmr2_release_state_dict.json", "", "state_dict"),),
        # LayerNorm/softmax (FP16_KEEP_OPS) and 6D→rotation (eps 1e-12) stay FP32; the ViT's matmuls run in FP16
        fp16_keep=("@output-tail", "/rot6d/", *FP16_KEEP_OPS),
        int8_exclude=("@output-tail",),
        params=670_459_037,
    )
