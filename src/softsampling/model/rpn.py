"""The paper's RPN ablation: train the RPN on the *full* annotations.

The paper found the RPN hardly suffers from missing labels (it samples ~256
anchors out of many thousands). To test that on your data, targets carry the
uncurated boxes as ``rpn_boxes``/``rpn_labels`` (see ``engine/data.py``) and
:func:`train_rpn_on_full_annotations` makes the detector's RPN use them, while
the RoI head still sees the curated ``boxes``.
"""

from __future__ import annotations

from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.rpn import RegionProposalNetwork


class FullAnnotationRPN(RegionProposalNetwork):
    """A torchvision RPN that trains on ``target["rpn_boxes"]`` when targets carry them."""

    def forward(self, images, features, targets=None):  # type: ignore[override]
        if targets is not None and all("rpn_boxes" in t for t in targets):
            targets = [{"boxes": t["rpn_boxes"], "labels": t["rpn_labels"]} for t in targets]
        return super().forward(images, features, targets)


def train_rpn_on_full_annotations(detector: GeneralizedRCNN) -> GeneralizedRCNN:
    """Switch ``detector.rpn`` to :class:`FullAnnotationRPN` in place (same weights and settings); returns it."""
    if not isinstance(detector.rpn, RegionProposalNetwork):
        raise TypeError(f"expected a torchvision RegionProposalNetwork, got {type(detector.rpn).__name__}")
    # Same module, same state: only the forward changes, so re-classing keeps every weight and setting.
    detector.rpn.__class__ = FullAnnotationRPN
    return detector
