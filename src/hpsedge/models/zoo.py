"""The model zoo: named models, what each one takes and gives, and how to build it.

Each :class:`ModelSpec` is the single source of truth for a model name: its architecture pieces, graph
inputs and outputs, preprocessing, and the per-person score rule of its uncertainty. The exporter
writes these facts into the manifest, so the runtime never needs this module (or torch).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hpsedge.models.backbones import hrnet_w32_pose, hrnet_w48_cls, resnet50
from hpsedge.models.heads import CliffHead, HMRHead, PareHead, PocoUncertaintyHead
from hpsedge.runtime.errors import HpsedgeError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "hrnet_w48_cls": hrnet_w48_cls,
    "hrnet_w32_pose": hrnet_w32_pose,
    "resnet50": resnet50,
}


@dataclass(frozen=True)
class ModelSpec:
    """Everything hpsedge needs to know about one named model."""

    name: str
    family: str  # "cliff" | "pare" | "hmr" | "tokenhmr"
    backbone: str
    description: str
    uncertainty: tuple[str, tuple[int, ...]] | None  # (input type, hidden sizes) of POCO's head
    sigma_score: str | None  # official per-person score: "pelvis" (CLIFF) or "mean" (PARE; HMR by analogy)
    official_checkpoint: str | None  # the file name the official release uses, for messages
    input_size: tuple[int, int] = (224, 224)  # (H, W)
    #: state-dict key prefixes in official checkpoints that we drop on purpose
    drop_prefixes: tuple[str, ...] = field(default=("flow_head.", "smpl."))
    drop_keys: tuple[str, ...] = field(default=("init_pose", "init_shape", "init_cam"))
    #: key prefixes that come from a second file (TokenHMR's ``tokenizer.pth``), not the main checkpoint
    aux_prefixes: tuple[str, ...] = ()
    #: optional graph outputs chosen at export time (TokenHMR: ``("token_probs",)``)
    extra_outputs: tuple[str, ...] = ()

    @property
    def has_sigma(self) -> bool:
        return self.uncertainty is not None

    @property
    def input_names(self) -> list[str]:
        return ["image", "bbox_info"] if self.family == "cliff" else ["image"]

    @property
    def output_names(self) -> list[str]:
        if self.family == "tokenhmr":
            return ["pose", "betas", "cam", "token_confidence", *self.extra_outputs]
        return ["pose", "betas", "cam", "sigma"] if self.has_sigma else ["pose", "betas", "cam"]

    def input_specs(self) -> list[dict[str, Any]]:
        h, w = self.input_size
        specs = [{"name": "image", "shape": ["N", 3, h, w], "dtype": "float32"}]
        if self.family == "cliff":
            specs.append({"name": "bbox_info", "shape": ["N", 3], "dtype": "float32"})
        return specs

    def output_specs(self) -> list[dict[str, Any]]:
        specs = [
            {"name": "pose", "shape": ["N", 24, 3, 3], "dtype": "float32"},
            {"name": "betas", "shape": ["N", 10], "dtype": "float32"},
            {"name": "cam", "shape": ["N", 3], "dtype": "float32"},
        ]
        if self.has_sigma:
            specs.append({"name": "sigma", "shape": ["N", 24], "dtype": "float32"})
        if self.family == "tokenhmr":
            specs.append({"name": "token_confidence", "shape": ["N"], "dtype": "float32"})
            if "token_probs" in self.extra_outputs:
                from hpsedge.models.tokenizer import TOKENIZER_RELEASE

                t, k = TOKENIZER_RELEASE.num_tokens, TOKENIZER_RELEASE.nb_code
                specs.append({"name": "token_probs", "shape": ["N", t, k], "dtype": "float32"})
        return specs

    def preprocessing(self) -> dict[str, Any]:
        """The manifest's ``preprocessing`` block (what the runtime's ``preprocess`` reads)."""
        if self.family == "tokenhmr":
            return tokenhmr_preprocessing(self.input_size)
        return {
            "input_size": list(self.input_size),
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "color": "RGB",
            "square": True,
            "bbox_scale": 1.0,
            "bbox_info": self.family == "cliff",
        }

    def postprocessing(self) -> dict[str, Any]:
        if self.family == "tokenhmr":
            return tokenhmr_postprocessing()
        return {
            "camera": "weak_perspective_crop",
            "crop_focal_length": 5000.0,
            "rotation": "rotmat",
            "sigma_score": self.sigma_score,
            "kinematic_sigma": True,
        }

    def build(self, tiny: bool = False) -> nn.Module:
        """Construct the network (random weights, mean-parameter buffers); ``tiny`` for fast tests."""
        if self.family == "tokenhmr":
            from hpsedge.models.tokenhmr import TokenHMRNetwork

            return TokenHMRNetwork(self, tiny=tiny)
        return HPSNetwork(self, tiny=tiny)


def tokenhmr_preprocessing(input_size: tuple[int, int]) -> dict[str, Any]:
    """TokenHMR's crop as the official ``ViTDetDataset`` makes it, expressed for the runtime's ``preprocess``.

    Official (``tokenhmr/lib/datasets/vitdet_dataset.py``, ``utils.py``): the box is grown to 3:4 (w:h) by
    ``expand_to_aspect_ratio(.., [192, 256])`` with no extra padding; its side ``S = max(h, 4w/3)`` is the
    square that ``cv2.warpAffine`` (bilinear, constant 0 border) maps onto 256×256 with the box centre at
    (128, 128); RGB; ``(x − 255·mean)/(255·std)`` on 0..255 values (ImageNet mean/std); the ViT then keeps
    columns 32..223. The runtime crops exactly that central 256×192 (``square: true`` grows the box to the
    crop's 3:4 aspect, see :func:`hpsedge.runtime.preprocess.crop_boxes`) and normalises as
    ``(x/255 − mean)/std`` (equal to the official arithmetic up to float32 rounding).

    ``antialias``: for boxes larger than 1.1·2·256 = 563.2 px the official code first blurs the whole image
    with ``skimage.filters.gaussian``, σ = (S/512 − 1)/2 per spatial axis. Recorded here for consumers; the
    hpsedge runtime crop does not apply it (see the README's TokenHMR notes).
    """
    return {
        "input_size": list(input_size),
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


def tokenhmr_postprocessing() -> dict[str, Any]:
    """HMR 2.0 / TokenHMR camera conventions (``tokenhmr/lib/models/tokenhmr.py``, ``utils/renderer.py``, ``demo.py``).

    * crop camera: ``cam = (s, tx, ty)`` for the 256-px square crop, focal 5000 px, principal point at the
      crop centre: ``t_crop = (tx, ty, 2·5000/(256·s))``;
    * full image (``cam_crop_to_full``): focal ``f = 5000/256 · max(W, H)``, principal point at the image
      centre, ``tz = 2f/(S·s)``, ``tx' = tx + 2(cx − W/2)/(S·s)``, ``ty' = ty + 2(cy − H/2)/(S·s)`` with S the
      square box side; 2D joints are the pinhole projection of ``joints + t`` with that camera.
    * confidence: the graph's ``token_confidence`` (no σ).
    """
    return {
        "camera": "weak_perspective_crop",
        "crop_focal_length": 5000.0,
        "crop_size": 256,
        "full_focal": "max_side",
        "projection": "full_image",
        "rotation": "rotmat",
        "rotation_6d": "rows",
        "sigma_score": None,
        "kinematic_sigma": False,
        "confidence": "token_confidence",
    }


class HPSNetwork(nn.Module):
    """backbone → regression head → (POCO) uncertainty head, with the official top-level names.

    ``forward(image[, bbox_info])`` returns the graph contract as a tuple:
    ``pose [N,24,3,3]``, ``betas [N,10]``, ``cam [N,3]`` and, for POCO models, ``sigma [N,24]``.
    The flow head of POCO is training-only and is not part of this module.
    """

    def __init__(self, spec: ModelSpec, tiny: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.tiny = tiny
        self.backbone = _BACKBONES[spec.backbone](tiny=tiny)
        feat = int(self.backbone.out_channels)
        if spec.family == "cliff":
            self.head: nn.Module = CliffHead(feat)
            uncert_dim = feat
        elif spec.family == "hmr":
            self.head = HMRHead(feat)
            uncert_dim = feat
        elif spec.family == "pare":
            pare = PareHead(feat, deconv_filters=(16, 16) if tiny else (128, 128), smpl_features=8 if tiny else 64)
            self.head = pare
            uncert_dim = pare.output_channels
        else:  # pragma: no cover - guarded by the zoo
            raise ValueError(spec.family)
        self.uncert_head: nn.Module | None = None
        if spec.uncertainty is not None:
            inp_type, hidden = spec.uncertainty
            if tiny:
                hidden = tuple(max(8, h // 8) for h in hidden)
            self.uncert_head = PocoUncertaintyHead(uncert_dim, hidden, inp_type)

    def forward_dict(self, image: torch.Tensor, bbox_info: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The official-style output dict (for debugging and comparisons with the official code)."""
        feats = self.backbone(image)
        if self.spec.family == "cliff":
            if bbox_info is None:
                raise ValueError(f"{self.spec.name} needs bbox_info")
            out = self.head(feats, bbox_info)
        else:
            out = self.head(feats)
        if self.uncert_head is not None:
            out["var_pose"] = self.uncert_head(out["uncert_feat"], out["pred_pose"])
        return out

    def forward(self, image: torch.Tensor, bbox_info: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        out = self.forward_dict(image, bbox_info)
        result = (out["pred_pose"], out["pred_shape"], out["pred_cam"])
        if self.uncert_head is not None:
            result = (*result, out["var_pose"])
        return result

    def example_inputs(self, batch: int = 1, seed: int | None = 0) -> tuple[torch.Tensor, ...]:
        """Random inputs of the right shapes (normalised-image-like values; plausible bbox_info)."""
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        h, w = self.spec.input_size
        image = torch.randn(batch, 3, h, w, generator=g)
        if self.spec.family != "cliff":
            return (image,)
        bbox_info = torch.randn(batch, 3, generator=g) * torch.tensor([0.3, 0.3, 1.0])
        return image, bbox_info


_POCO_CLIFF_UNCERT = ("feat-pose-net", (216,))
_POCO_PARE_UNCERT = ("feat-pose", (512,))

_SPECS: list[ModelSpec] = [
    ModelSpec(
        name="poco-cliff",
        family="cliff",
        backbone="hrnet_w48_cls",
        description="POCO-CLIFF: HRNet-W48 (cls) + CLIFF IEF head + POCO uncertainty (feat-pose-net, 216)",
        uncertainty=_POCO_CLIFF_UNCERT,
        sigma_score="pelvis",
        official_checkpoint="poco_cliff.pt",
        drop_prefixes=("flow_head.", "smpl.", "backbone.classifier."),
    ),
    ModelSpec(
        name="poco-pare",
        family="pare",
        backbone="hrnet_w32_pose",
        description="POCO-PARE: HRNet-W32 (pose) + PARE part-attention head + POCO uncertainty (feat-pose, 512)",
        uncertainty=_POCO_PARE_UNCERT,
        sigma_score="mean",
        official_checkpoint="poco_pare.pt",
        drop_prefixes=("flow_head.", "smpl.", "backbone.final_layer."),
        drop_keys=("init_pose", "init_shape", "init_cam", "head.temperature"),
    ),
    ModelSpec(
        name="poco-hmr",
        family="hmr",
        backbone="resnet50",
        description="POCO-HMR: ResNet-50 + HMR IEF head + POCO uncertainty (feat-pose, 512); no official weights",
        uncertainty=_POCO_PARE_UNCERT,
        sigma_score="mean",
        official_checkpoint=None,
    ),
    ModelSpec(
        name="tokenhmr",
        family="tokenhmr",
        backbone="vit_h",
        description="TokenHMR: ViT-H/16 + token head (160 tokens × 2048 codes) + VQ tokenizer decoder; token confidence",
        uncertainty=None,
        sigma_score=None,
        official_checkpoint="tokenhmr_model_latest.ckpt",
        input_size=(256, 192),
        drop_prefixes=("smpl.", "discriminator.", "tokenizer.encoder."),
        drop_keys=("initialized",),
        aux_prefixes=("tokenizer.",),
    ),
]

def _plain(spec: ModelSpec, name: str) -> ModelSpec:
    """The regressor of a POCO model without its uncertainty head (a POCO checkpoint loads; σ head dropped)."""
    return dataclasses.replace(
        spec,
        name=name,
        description=f"{name.upper()} regressor of {spec.name.upper()} without the uncertainty head",
        uncertainty=None,
        sigma_score=None,
        official_checkpoint=None,
        drop_prefixes=(*spec.drop_prefixes, "uncert_head."),
    )


_POCO = {s.name: s for s in _SPECS}
# inserted right after the three POCO models, before anything registered later
_SPECS[3:3] = [_plain(_POCO["poco-cliff"], "cliff"), _plain(_POCO["poco-pare"], "pare"), _plain(_POCO["poco-hmr"], "hmr")]
ZOO: dict[str, ModelSpec] = {s.name: s for s in _SPECS}
DEFAULT_MODEL = "poco-cliff"


def get_spec(name: str) -> ModelSpec:
    """Look a model up by name; an unknown name gets a one-line error listing the zoo."""
    key = name.strip().lower()
    if key not in ZOO:
        import difflib

        close = difflib.get_close_matches(key, list(ZOO), n=1)
        hint = f"did you mean '{close[0]}'?" if close else "run `hpsedge models` for the list"
        raise HpsedgeError(f"unknown model '{name}' (known: {', '.join(ZOO)})", hint=hint)
    return ZOO[key]


def count_parameters(spec: ModelSpec, tiny: bool = False) -> int:
    """Parameter count of the exported network, computed without allocating weights (meta device)."""
    with torch.device("meta"):
        model = spec.build(tiny=tiny)
    return sum(p.numel() for p in model.parameters())


def expected_state_shapes(spec: ModelSpec, tiny: bool = False) -> dict[str, tuple[int, ...]]:
    """Our state-dict keys and shapes for ``spec`` (meta device: no memory, fast)."""
    with torch.device("meta"):
        model = spec.build(tiny=tiny)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
