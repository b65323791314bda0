"""Boxes a target carries beside ``boxes`` (dropped boxes for the upper bound, pseudo boxes), kept in step
with torchvision's resize. Shared by the two-stage head (roi_heads) and the one-stage heads (one_stage)."""

from __future__ import annotations

import torch
from torch import nn

EXTRA_BOX_KEYS = ("dropped_boxes", "pseudo_boxes")


def rescale_extra_boxes(module: nn.Module, inputs: tuple, output: tuple) -> None:
    """Forward hook on the transform: resize ``dropped_boxes``/``pseudo_boxes`` as it resized ``boxes``."""
    images, targets = inputs[0], inputs[1] if len(inputs) > 1 else None
    image_list, new_targets = output
    if targets is None or new_targets is None:
        return
    for image, size, target in zip(images, image_list.image_sizes, new_targets, strict=True):
        h, w = image.shape[-2:]
        if (h, w) == tuple(size):
            continue
        scale = torch.tensor([size[1] / w, size[0] / h, size[1] / w, size[0] / h])
        for key in EXTRA_BOX_KEYS:
            if key in target and target[key].shape[0]:
                target[key] = target[key] * scale.to(target[key])
