"""torchvision integration: the strategy-aware RoI head, one-stage heads, model builders, Soft-NMS."""

from softsampling.model.builders import (
    DeformableConv3x3,
    DigitsBackbone,
    build_digits_fcos,
    build_digits_model,
    build_digits_retinanet,
    build_one_stage_model,
    build_paper_model,
    load_backbone_weights,
    make_conv5_deformable,
)
from softsampling.model.one_stage import SoftSamplingFCOSHead, SoftSamplingRetinaNetHead, is_one_stage
from softsampling.model.roi_heads import (
    PriorScorer,
    SampledRoIs,
    SoftSamplingRoIHeads,
    train_rpn_on_full_annotations,
    use_strategy,
)
from softsampling.model.soft_nms import SoftNMS, batched_soft_nms, soft_nms

__all__ = [
    "DeformableConv3x3",
    "DigitsBackbone",
    "PriorScorer",
    "SampledRoIs",
    "SoftNMS",
    "SoftSamplingFCOSHead",
    "SoftSamplingRetinaNetHead",
    "SoftSamplingRoIHeads",
    "batched_soft_nms",
    "build_digits_fcos",
    "build_digits_model",
    "build_digits_retinanet",
    "build_one_stage_model",
    "is_one_stage",
    "build_paper_model",
    "load_backbone_weights",
    "make_conv5_deformable",
    "soft_nms",
    "train_rpn_on_full_annotations",
    "use_strategy",
]
