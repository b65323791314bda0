"""Model builders: small CPU models for the digit benchmark and the paper's ResNet-50-FPN.

:func:`build_digits_model` and :func:`build_paper_model` return a plain
torchvision ``FasterRCNN``; :func:`build_digits_retinanet`,
:func:`build_digits_fcos` and :func:`build_one_stage_model` a plain ``RetinaNet``
or ``FCOS``. Install a strategy with :func:`softsampling.model.use_strategy`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet, fcos_resnet50_fpn, retinanet_resnet50_fpn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import DeformConv2d, FrozenBatchNorm2d

from softsampling.errors import SoftSamplingError
from softsampling.model.roi_align import FastBackwardRoIAlign
from softsampling.model.roi_heads import use_strategy
from softsampling.model.soft_nms import SoftNMS
from softsampling.model.weights import BACKBONE_ENUMS, load_detector_weights, read_detector_weights, read_state_dict

PAPER_MODEL_NAMES = {1: "resnet50_fpn", 2: "resnet50_fpn_v2"}  # model.name of each build_paper_model version
# RetinaNet and FCOS (the strategy goes into their head: docs/strategies.md); builders below
ONE_STAGE_MODEL_NAMES = ("digits_retinanet", "digits_fcos", "retinanet_resnet50_fpn", "fcos_resnet50_fpn")
MODEL_NAMES: tuple[str, ...] = ("digits", *PAPER_MODEL_NAMES.values(), *ONE_STAGE_MODEL_NAMES)  # every model.name

RESNET50_WEIGHTS_HINT = (
    "pass a torchvision weights name such as ResNet50_Weights.IMAGENET1K_V2 (torchvision downloads it once into its "
    "cache), or the path of an existing ImageNet ResNet-50 state_dict"
)


# --------------------------------------------------------------------------- digits
class DigitsBackbone(nn.Sequential):
    """Six 3x3 conv-BN-ReLU layers, stride 8: float [B, 3, H, W] -> [B, out_channels, H/8, W/8]."""

    def __init__(self, widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        layers: list[nn.Module] = []
        in_channels = 3
        for width in widths:
            for stride in (2, 1):
                layers += [
                    nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                in_channels = width
        super().__init__(*layers)
        self.out_channels = in_channels


def build_digits_model(
    num_classes: int = 11,
    *,
    image_size: int = 128,
    widths: tuple[int, int, int] = (16, 32, 64),
    anchor_sizes: tuple[int, ...] = (16, 24, 32, 48),
    aspect_ratios: tuple[float, ...] = (1.0, 1.5),
    pooled_size: int = 5,
    sampling_ratio: int = 1,
    representation_size: int = 128,
    **faster_rcnn_kwargs: Any,
) -> FasterRCNN:
    """A small, fast Faster R-CNN for 128 px scenes of MNIST digits (14-40 px).

    Backbone: six conv layers, one feature map at stride 8 (16x16 for 128 px),
    no pretrained weights. Anchors 16-48 px, square and 1.5x taller than wide
    (torchvision's aspect ratio is h/w). Images are not resized
    (``min_size = max_size = image_size``). RPN keeps 300 -> 100 proposals in
    training and testing; the box head pools 5x5 and has a 128-d two-layer MLP;
    128 RoIs per image are sampled in ``balanced`` mode.

    Args:
        num_classes: including background (10 digits + background = 11).
        image_size: side of the (square) scenes.
        widths: channels of the three stride-2 stages.
        anchor_sizes, aspect_ratios: one anchor per (size, ratio) per location.
        pooled_size: RoIAlign output side.
        sampling_ratio: RoIAlign bilinear samples per bin side (1: the RoIs span only a few
            stride-8 cells; the RoIAlign backward, vectorised on the CPU by
            :class:`~softsampling.model.roi_align.FastBackwardRoIAlign`, scales with it).
        representation_size: box-head MLP width.
        **faster_rcnn_kwargs: any other ``FasterRCNN`` argument, overriding the
            defaults here (e.g. ``rpn_post_nms_top_n_train=6000`` for hard negatives).

    Example:
        >>> model = build_digits_model().eval()
        >>> with torch.no_grad():
        ...     out = model([torch.rand(3, 128, 128)])
        >>> sorted(out[0])
        ['boxes', 'labels', 'scores']
    """
    backbone = DigitsBackbone(widths)
    anchors = AnchorGenerator(sizes=(tuple(anchor_sizes),), aspect_ratios=(tuple(aspect_ratios),))
    roi_pool = FastBackwardRoIAlign(featmap_names=["0"], output_size=pooled_size, sampling_ratio=sampling_ratio)
    box_head = TwoMLPHead(backbone.out_channels * pooled_size**2, representation_size)
    settings: dict[str, Any] = {
        "min_size": image_size,
        "max_size": image_size,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "rpn_pre_nms_top_n_train": 300,
        "rpn_post_nms_top_n_train": 100,
        "rpn_pre_nms_top_n_test": 300,
        "rpn_post_nms_top_n_test": 100,
        "rpn_batch_size_per_image": 128,
        "box_batch_size_per_image": 128,
        "box_detections_per_img": 50,
    }
    settings.update(faster_rcnn_kwargs)
    return FasterRCNN(
        backbone,
        rpn_anchor_generator=anchors,
        box_roi_pool=roi_pool,
        box_head=box_head,
        box_predictor=FastRCNNPredictor(representation_size, num_classes),
        **settings,
    )


def _digits_transform(image_size: int) -> dict[str, Any]:
    return {
        "min_size": image_size,
        "max_size": image_size,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "detections_per_img": 50,
        "score_thresh": 0.05,
    }


#: ``head_norm`` of :func:`build_digits_retinanet`: the norm layer after each of the head's 3x3 convs
HEAD_NORMS: dict[str, Callable[[int], nn.Module] | None] = {
    "none": None,  # torchvision's RetinaNetHead as in retinanet_resnet50_fpn
    "group": partial(nn.GroupNorm, 16),  # as retinanet_resnet50_fpn_v2 (there 32 groups of 256 channels)
}


def build_digits_retinanet(
    num_classes: int = 11,
    *,
    image_size: int = 128,
    widths: tuple[int, int, int] = (16, 32, 64),
    anchor_sizes: tuple[int, ...] = (16, 24, 32, 48),
    aspect_ratios: tuple[float, ...] = (1.0, 1.5),
    head_norm: str = "group",
    **retinanet_kwargs: Any,
) -> RetinaNet:
    """A small RetinaNet for the digit scenes: :class:`DigitsBackbone` (one stride-8 map) and the digit anchors.

    torchvision's ``RetinaNetHead`` (four 3x3 convs per branch at the backbone's
    width) with GroupNorm after each conv (``head_norm="group"``, as torchvision's
    ``retinanet_resnet50_fpn_v2``; ``"none"``: as ``retinanet_resnet50_fpn``, which
    this small model does not train with: the std-0.01 convs of 64 channels shrink the
    signal about 6x each), anchors as in :func:`build_digits_model`, images not
    resized, score threshold 0.05, 50 detections per image. ``num_classes`` includes
    background (class ids are the focal loss's columns, as in torchvision).

    Example:
        >>> model = build_digits_retinanet().eval()
        >>> with torch.no_grad():
        ...     out = model([torch.rand(3, 128, 128)])
        >>> sorted(out[0])
        ['boxes', 'labels', 'scores']
    """
    if head_norm not in HEAD_NORMS:
        raise ValueError(f"head_norm must be one of {', '.join(HEAD_NORMS)}, got {head_norm!r}")
    backbone = DigitsBackbone(widths)
    anchors = AnchorGenerator(sizes=(tuple(anchor_sizes),), aspect_ratios=(tuple(aspect_ratios),))
    head = RetinaNetHead(
        backbone.out_channels,
        anchors.num_anchors_per_location()[0],
        num_classes,
        norm_layer=HEAD_NORMS[head_norm],
    )
    settings = {**_digits_transform(image_size), **retinanet_kwargs}
    return RetinaNet(backbone, num_classes, anchor_generator=anchors, head=head, **settings)


def build_digits_fcos(
    num_classes: int = 11,
    *,
    image_size: int = 128,
    widths: tuple[int, int, int] = (16, 32, 64),
    **fcos_kwargs: Any,
) -> FCOS:
    """A small FCOS for the digit scenes: :class:`DigitsBackbone` (one stride-8 map, 16x16 locations at 128 px).

    One location "anchor" of 8 px (the stride) per cell, as torchvision's FCOS
    expects; with a single level every object size trains on it (torchvision
    opens the scale range of the first and last level). torchvision's ``FCOSHead``
    (GroupNorm of 32 groups: ``widths[-1]`` must be a multiple of 32), images not
    resized, score threshold 0.05, 50 detections per image.
    """
    backbone = DigitsBackbone(widths)
    anchors = AnchorGenerator(sizes=((8,),), aspect_ratios=((1.0,),))
    settings = {**_digits_transform(image_size), **fcos_kwargs}
    return FCOS(backbone, num_classes, anchor_generator=anchors, **settings)


ONE_STAGE_BUILDERS = dict(
    zip(
        ONE_STAGE_MODEL_NAMES,
        (build_digits_retinanet, build_digits_fcos, retinanet_resnet50_fpn, fcos_resnet50_fpn),
        strict=True,
    )
)


def build_one_stage_model(name: str, num_classes: int, **kwargs: Any) -> RetinaNet | FCOS:
    """A one-stage detector by ``model.name``: the digit models above, or torchvision's ResNet-50-FPN builders.

    ``retinanet_resnet50_fpn`` and ``fcos_resnet50_fpn`` are torchvision's own,
    built without any weights (batch norm trains, all stages train); ``kwargs``
    go to the builder (``min_size``, ``score_thresh``, ...).

    Raises:
        SoftSamplingError: unknown name.
    """
    if name not in ONE_STAGE_BUILDERS:
        raise SoftSamplingError(f"unknown one-stage model {name!r}", fix=f"use {', '.join(ONE_STAGE_BUILDERS)}")
    builder = ONE_STAGE_BUILDERS[name]
    if name.endswith("resnet50_fpn"):
        return builder(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)
    return builder(num_classes, **kwargs)


# --------------------------------------------------------------------------- paper
class DeformableConv3x3(nn.Module):
    """A 3x3 ``DeformConv2d`` with its own offset-predicting conv, initialised to zero offsets.

    Built from an existing ``nn.Conv2d`` (weights copied), so right after the
    swap it computes exactly what the plain conv did.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        kh, kw = conv.kernel_size
        self.offset = nn.Conv2d(
            conv.in_channels,
            2 * kh * kw,
            (kh, kw),
            stride=_pair(conv.stride),
            padding=conv.padding if isinstance(conv.padding, str) else _pair(conv.padding),
            dilation=_pair(conv.dilation),
            bias=True,
        )
        nn.init.zeros_(self.offset.weight)
        assert self.offset.bias is not None  # bias=True
        nn.init.zeros_(self.offset.bias)
        self.conv = DeformConv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
        )
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight)
            if conv.bias is not None:
                self.conv.bias.copy_(conv.bias)
        self.conv.weight.requires_grad_(conv.weight.requires_grad)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x, self.offset(x))


def make_conv5_deformable(resnet: nn.Module) -> int:
    """Replace the 3x3 convs of ``resnet.layer4`` (conv5) by :class:`DeformableConv3x3`; return how many."""
    count = 0
    for block in resnet.get_submodule("layer4").children():
        conv = block.get_submodule("conv2")
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"layer4's conv2 is a {type(conv).__name__}, not an nn.Conv2d (already deformable?)")
        block.conv2 = DeformableConv3x3(conv)
        count += 1
    return count


def _pair(value: tuple[int, ...]) -> tuple[int, int]:
    """A 2-d conv's (height, width) setting, as the pair nn.Conv2d's signature names."""
    h, w = value
    return h, w


def load_backbone_weights(resnet: nn.Module, source: str | Path) -> None:
    """Load ImageNet ResNet-50 weights into ``resnet``: a torchvision weights name or a local ``state_dict`` file.

    A name (``ResNet50_Weights.IMAGENET1K_V2``) resolves through torchvision's
    weights API and cache (see :mod:`softsampling.model.weights`). The ``fc``
    classifier is left out; every other key must match.

    Raises:
        SoftSamplingError: unknown name, failed download, missing or unreadable file,
            or not ResNet-50 weights.
    """
    _apply_backbone_state(resnet, *_read_backbone_state(source))


def _read_backbone_state(source: str | Path) -> tuple[dict[str, Tensor], str]:
    return read_state_dict(source, allowed=BACKBONE_ENUMS, what="ImageNet backbone weights", hint=RESNET50_WEIGHTS_HINT)


def _apply_backbone_state(resnet: nn.Module, state: dict[str, Tensor], where: str) -> None:
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        result = resnet.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise SoftSamplingError(
            f"not ResNet-50 weights: {str(error).splitlines()[-1].strip()}", file=where, fix=RESNET50_WEIGHTS_HINT
        ) from error
    missing = [k for k in result.missing_keys if not k.startswith("fc.")]
    if missing or result.unexpected_keys:
        raise SoftSamplingError(
            f"not ResNet-50 weights: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]})",
            file=where,
            fix=RESNET50_WEIGHTS_HINT,
        )


def _v2_parts(norm_layer: type[nn.Module], trainable_layers: int) -> tuple[nn.Module, dict[str, Any]]:
    """torchvision's ``fasterrcnn_resnet50_fpn_v2`` architecture: batch-norm FPN, 2-conv RPN head, 4-conv box head."""
    from torchvision.models import resnet50
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, RPNHead, _default_anchorgen

    backbone = _resnet_fpn_extractor(
        resnet50(weights=None, norm_layer=norm_layer), trainable_layers, norm_layer=nn.BatchNorm2d
    )
    anchors = _default_anchorgen()
    parts = {
        "rpn_anchor_generator": anchors,
        "rpn_head": RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0], conv_depth=2),
        "box_head": FastRCNNConvFCHead(
            (backbone.out_channels, 7, 7), [256, 256, 256, 256], [1024], norm_layer=nn.BatchNorm2d
        ),
    }
    return backbone, parts


def build_paper_model(
    num_classes: int,
    *,
    backbone_weights: str | Path | None = None,
    weights: str | Path | None = None,
    version: int = 1,
    frozen_batch_norm: bool | None = None,
    deformable_conv5: bool = False,
    soft_nms: SoftNMS | str | None = None,
    trainable_layers: int | None = None,
    **faster_rcnn_kwargs: Any,
) -> FasterRCNN:
    """The paper's detector: Faster R-CNN, ResNet-50-FPN, optional deformable conv5 and Soft-NMS.

    Args:
        num_classes: including background (VOC: 21).
        backbone_weights: ImageNet ResNet-50 weights: a torchvision name
            (``ResNet50_Weights.IMAGENET1K_V2``) or a local ``state_dict`` file.
            With weights, batch norm is frozen and 3 stages train
            (torchvision's fine-tuning default); without, batch norm trains and
            all 5 stages train.
        weights: the whole detector's weights, a torchvision name
            (``FasterRCNN_ResNet50_FPN_Weights.COCO_V1`` for ``version=1``,
            ``FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1`` for ``version=2``) or
            a local file; the box predictor stays freshly initialised for
            ``num_classes`` (see :func:`~softsampling.model.weights.load_detector_weights`;
            its report is kept as ``model.weights_report``). Batch norm is frozen
            and 3 stages train, as with ``backbone_weights``.
        version: 1: torchvision's ``fasterrcnn_resnet50_fpn`` (the paper's);
            2: ``fasterrcnn_resnet50_fpn_v2`` (batch-norm FPN and heads, 4-conv box head).
        frozen_batch_norm: build the fine-tuning layout (frozen backbone batch norm)
            without loading weights, e.g. to load a trained run's ``model.pt``;
            default: whether any weights are given.
        deformable_conv5: replace the 3x3 convs of conv5 (layer4) with
            deformable convolutions (offsets start at zero).
        soft_nms: ``"gaussian"``, ``"linear"`` or a :class:`SoftNMS` for
            inference (installs a baseline :class:`SoftSamplingRoIHeads`;
            a later ``use_strategy`` keeps it); ``None``: torchvision's hard NMS.
        trainable_layers: override the number of trainable ResNet stages (0-5).
        **faster_rcnn_kwargs: other ``FasterRCNN`` arguments (``min_size``, ``rpn_post_nms_top_n_train``...).

    Raises:
        SoftSamplingError: ``backbone_weights`` or ``weights`` missing, unknown or not fitting.
    """
    if version not in (1, 2):
        raise SoftSamplingError(f"unknown ResNet-50-FPN version {version!r}", fix="use 1 or 2")
    pretrained = backbone_weights is not None or weights is not None
    # read (and for names, download) the weights before the slow model construction, so bad input fails fast
    backbone_state = _read_backbone_state(backbone_weights) if backbone_weights is not None else None
    detector_state = (
        read_detector_weights(weights, model_name=PAPER_MODEL_NAMES[version]) if weights is not None else None
    )
    frozen = pretrained if frozen_batch_norm is None else frozen_batch_norm
    norm_layer = FrozenBatchNorm2d if frozen else nn.BatchNorm2d
    layers = trainable_layers if trainable_layers is not None else (3 if pretrained else 5)
    if version == 1:
        backbone = resnet_fpn_backbone(
            backbone_name="resnet50", weights=None, norm_layer=norm_layer, trainable_layers=layers
        )
        parts: dict[str, Any] = {}
    else:
        backbone, parts = _v2_parts(norm_layer, layers)
    if backbone_state is not None:
        _apply_backbone_state(backbone.body, *backbone_state)  # body holds conv1..layer4 under ResNet's names
    model = FasterRCNN(backbone, num_classes=num_classes, **{**parts, **faster_rcnn_kwargs})
    model.weights_report = None
    if detector_state is not None:  # before conv5 turns deformable, so conv5 keys keep torchvision's names
        model.weights_report = load_detector_weights(model, detector_state, model_name=PAPER_MODEL_NAMES[version])
    if deformable_conv5:
        make_conv5_deformable(backbone.body)
    if soft_nms is not None:
        config = soft_nms if isinstance(soft_nms, SoftNMS) else SoftNMS(method=str(soft_nms))
        use_strategy(model, "baseline", soft_nms=config)
    return model
