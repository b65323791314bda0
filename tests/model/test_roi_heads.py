"""SoftSamplingRoIHeads inside real torchvision detectors."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torchvision.models.detection import (
    fasterrcnn_mobilenet_v3_large_fpn,
    fasterrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn,
)
from torchvision.models.detection.image_list import ImageList

from softsampling.model import PriorScorer, SoftNMS, SoftSamplingRoIHeads, build_digits_model, use_strategy
from softsampling.sampling import STRATEGIES, assign

TINY = {
    "min_size": 64,
    "max_size": 64,
    "rpn_pre_nms_top_n_train": 40,
    "rpn_post_nms_top_n_train": 20,
    "rpn_pre_nms_top_n_test": 40,
    "rpn_post_nms_top_n_test": 20,
}


def batch(num_images: int = 2, size: int = 64, num_classes: int = 3, masks: bool = False, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, size, size, generator=gen) for _ in range(num_images)]
    targets = []
    for _ in range(num_images):
        xy = torch.rand(3, 2, generator=gen) * (size / 2)
        boxes = torch.cat([xy, xy + 12 + torch.rand(3, 2, generator=gen) * (size / 3)], dim=1)
        target = {
            "boxes": boxes,
            "labels": torch.randint(1, num_classes, (3,), generator=gen),
            "dropped_boxes": torch.tensor([[2.0, 2.0, 30.0, 30.0]]),
            "group_of": torch.tensor([False, True, False]),
        }
        if masks:
            mask = torch.zeros(3, size, size, dtype=torch.uint8)
            for k, (x1, y1, x2, y2) in enumerate(boxes.round().int().tolist()):
                mask[k, y1:y2, x1:x2] = 1
            target["masks"] = mask
        targets.append(target)
    return images, targets


def train_step(model, images, targets) -> dict[str, torch.Tensor]:
    model.train()
    losses = model(images, targets)
    sum(losses.values()).backward()
    return losses


def test_baseline_head_equals_torchvision_head() -> None:
    stock = build_digits_model(num_classes=4)
    ours = use_strategy(copy.deepcopy(stock), "baseline")
    images, targets = batch(2, 128, 4)
    targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]  # no group-of flags
    torch.manual_seed(7)
    want = train_step(stock, images, targets)
    torch.manual_seed(7)
    got = train_step(ours, images, targets)
    assert set(got) == set(want)
    for key in want:
        assert torch.allclose(got[key], want[key], rtol=1e-6, atol=1e-7), key
    stock_grad = stock.roi_heads.box_predictor.cls_score.weight.grad
    assert torch.allclose(ours.roi_heads.box_predictor.cls_score.weight.grad, stock_grad, atol=1e-7)
    # with group-of flags, our head ignores the background RoIs inside the group-of box
    flagged = [{**t, "group_of": torch.ones(3, dtype=torch.bool)} for t in targets]
    torch.manual_seed(7)
    assert not torch.allclose(train_step(ours, images, flagged)["loss_classifier"], want["loss_classifier"])


@pytest.fixture(scope="module")
def mobilenet():
    torch.manual_seed(0)
    return fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=3, **TINY)


def test_use_strategy_keeps_modules_and_settings(mobilenet) -> None:
    old = mobilenet.roi_heads
    keys = set(mobilenet.state_dict())
    model = use_strategy(mobilenet, "overlap_soft", sampling="all", a=0.3)
    head = model.roi_heads
    assert model is mobilenet and isinstance(head, SoftSamplingRoIHeads)
    assert head.box_roi_pool is old.box_roi_pool and head.box_head is old.box_head
    assert head.box_predictor is old.box_predictor
    assert set(model.state_dict()) == keys  # same weights, nothing added
    assert head.proposal_matcher.high_threshold == old.proposal_matcher.high_threshold
    assert head.fg_bg_sampler.batch_size_per_image == old.fg_bg_sampler.batch_size_per_image
    assert (head.score_thresh, head.nms_thresh, head.detections_per_img) == (
        old.score_thresh,
        old.nms_thresh,
        old.detections_per_img,
    )
    assert head.strategy_params == {"a": 0.3}


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s not in ("score_soft", "pseudo_label", "brl")])
def test_every_strategy_trains_mobilenet(mobilenet, strategy: str) -> None:
    use_strategy(mobilenet, strategy, sampling="all")
    mobilenet.zero_grad()
    losses = train_step(mobilenet, *batch(1))
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(math.isfinite(v.item()) for v in losses.values())
    assert mobilenet.roi_heads.box_predictor.cls_score.weight.grad.abs().sum() > 0
    if strategy == "baseline":  # inference does not depend on the strategy
        mobilenet.eval()
        with torch.no_grad():
            out = mobilenet(batch()[0])
        assert len(out) == 2 and set(out[0]) == {"boxes", "labels", "scores"}


def test_resnet50_fpn_builder() -> None:
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3, **TINY)
    use_strategy(model, "overlap_soft", batch_size_per_image=32)
    losses = train_step(model, *batch(1))
    assert math.isfinite(losses["loss_classifier"].item())
    assert model.roi_heads.box_head.fc6.weight.grad is not None


def test_maskrcnn_box_branch() -> None:
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3, **TINY)
    mask_head = model.roi_heads.mask_head
    use_strategy(model, "upper_bound", sampling="all")
    assert model.roi_heads.mask_head is mask_head and model.roi_heads.has_mask()
    losses = train_step(model, *batch(1, masks=True))
    assert "loss_mask" in losses and math.isfinite(losses["loss_mask"].item())
    assert model.roi_heads.mask_predictor.mask_fcn_logits.weight.grad.abs().sum() > 0


# ------------------------------------------------------- the head's sampling step
def digits_head(strategy: str, **kwargs) -> SoftSamplingRoIHeads:
    model = use_strategy(build_digits_model(num_classes=4), strategy, **kwargs)
    return model.roi_heads.train()


GT = {"boxes": torch.tensor([[10.0, 10.0, 40.0, 40.0], [60.0, 60.0, 120.0, 120.0]]), "labels": torch.tensor([1, 2])}
PROPOSALS = torch.tensor(
    [
        [10.0, 10.0, 40.0, 40.0],  # fg 1
        [10.0, 10.0, 40.0, 22.0],  # IoU 0.4 bg
        [70.0, 70.0, 80.0, 80.0],  # inside box 2 (IoU 0.028)
        [100.0, 0.0, 120.0, 20.0],  # far: IoU 0
        [10.0, 10.0, 40.0, 16.0],  # IoU 0.2
    ]
)


def test_select_weighted_samples_overlap_soft_all() -> None:
    head = digits_head("overlap_soft", sampling="all")
    sampled = head.select_weighted_samples([PROPOSALS], [GT], [(128, 128)])
    # the two ground-truth boxes are appended as proposals
    assert sampled.proposals[0].shape == (7, 4)
    assert sampled.labels[0].tolist() == [1, 0, 0, 0, 0, 1, 2]
    want = assign("overlap_soft", torch.cat([PROPOSALS, GT["boxes"]]), GT["boxes"], GT["labels"]).weights
    assert torch.equal(sampled.weights[0], want)
    assert sampled.matched_idxs[0].tolist() == [0, 0, 0, 0, 0, 0, 1]
    assert sampled.regression_targets[0][0].abs().max().item() == pytest.approx(0.0, abs=1e-6)


def test_group_of_upper_bound_and_topk_in_head() -> None:
    target = {**GT, "group_of": torch.tensor([False, True]), "dropped_boxes": torch.tensor([[100.0, 0.0, 120.0, 20.0]])}
    head = digits_head("upper_bound", sampling="all")
    sampled = head.select_weighted_samples([PROPOSALS], [target], [(128, 128)])
    # proposal 2 lies inside the group-of box, proposal 3 is a dropped box: both ignored
    assert torch.equal(sampled.proposals[0], torch.cat([PROPOSALS[[0, 1, 4]], GT["boxes"]]))
    with pytest.raises(ValueError, match="dropped_boxes"):
        head.select_weighted_samples([PROPOSALS], [GT], [(128, 128)])

    head = digits_head("hard_negative", sampling="all", min_overlap=0.1, hard_negative_topk=2)
    sampled = head.select_weighted_samples([PROPOSALS], [GT], [(128, 128)])
    # candidates in objectness order: 0 (fg), 1 (0.4), 4 (0.2); top 2 kept, plus the appended GT boxes
    assert torch.equal(sampled.proposals[0], torch.cat([PROPOSALS[[0, 1]], GT["boxes"]]))


def test_score_soft_uses_prior_scores() -> None:
    torch.manual_seed(0)
    prior = build_digits_model(num_classes=4)
    thresholds = torch.tensor([0.5, 0.3, 0.2, 0.25])
    model = use_strategy(
        build_digits_model(num_classes=4), "score_soft", sampling="all", prior=prior, thresholds=thresholds
    )
    images, targets = batch(2, 128, 4)
    losses = train_step(model, images, targets)  # end to end through the transform hook
    assert math.isfinite(losses["loss_classifier"].item())
    assert not prior.training and all(not p.requires_grad for p in prior.parameters())

    head = model.roi_heads
    image_list = ImageList(torch.rand(1, 3, 128, 128), [(128, 128)])
    head.capture_images(model.transform, None, (image_list, None))
    sampled = head.select_weighted_samples([PROPOSALS], [GT], [(128, 128)])
    scores = PriorScorer(prior).score_proposals(image_list.tensors, [(128, 128)], sampled.proposals)[0]
    want = assign(
        "score_soft", sampled.proposals[0], GT["boxes"], GT["labels"], proposal_scores=scores, thresholds=thresholds
    ).weights
    assert torch.allclose(sampled.weights[0], want)
    assert sampled.weights[0][sampled.labels[0] == 0].lt(1.0).any()


def test_soft_nms_postprocess() -> None:
    head = digits_head("baseline", soft_nms=SoftNMS(method="gaussian", sigma=0.5)).eval()
    proposals = [torch.tensor([[10.0, 10.0, 40.0, 40.0], [10.0, 10.0, 40.0, 40.0], [80.0, 80.0, 100.0, 100.0]])]
    logits = torch.tensor([[0.0, 5.0, 0.0, 0.0], [0.0, 4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0]])
    box_regression = torch.zeros(3, 16)
    boxes, scores, labels = head.postprocess_detections(logits, box_regression, proposals, [(128, 128)])
    p = logits.softmax(1)
    # the duplicate survives with score * exp(-1 / sigma) instead of being deleted
    assert scores[0].tolist() == pytest.approx(
        sorted([p[0, 1].item(), p[2, 3].item(), p[1, 1].item() * math.exp(-2.0)], reverse=True), rel=1e-5
    )
    assert sorted(labels[0].tolist()) == [1, 1, 3]
    assert (head.nms_thresh, head.detections_per_img) == (0.5, 50)  # restored
    head.soft_nms = None
    _, hard_scores, _ = head.postprocess_detections(logits, box_regression, proposals, [(128, 128)])
    assert hard_scores[0].numel() == 2


def test_errors_and_reinstall() -> None:
    model = build_digits_model(num_classes=4)
    with pytest.raises(ValueError, match="unknown strategy"):
        use_strategy(model, "focal")
    with pytest.raises(ValueError, match="prior"):
        use_strategy(model, "score_soft", thresholds=torch.zeros(4))
    with pytest.raises(ValueError, match="unknown parameter"):
        use_strategy(model, "baseline", min_overlap=0.2)
    with pytest.raises(ValueError, match="two-stage"):
        use_strategy(torch.nn.Linear(2, 2), "baseline")
    use_strategy(
        model,
        "score_soft",
        prior=build_digits_model(num_classes=4),
        thresholds=torch.zeros(4),
        soft_nms=SoftNMS(method="linear"),
    )
    assert len(model.transform._forward_hooks) == 1
    use_strategy(model, "overlap_soft")
    assert len(model.transform._forward_hooks) == 0  # the prior's hook is gone
    assert model.roi_heads.soft_nms == SoftNMS(method="linear")  # inference settings kept


def test_train_rpn_on_full_annotations() -> None:
    from softsampling.model import train_rpn_on_full_annotations

    images, targets = batch(2, 128, 4)
    curated = [{"boxes": t["boxes"][:2], "labels": t["labels"][:2], "dropped_boxes": t["boxes"][2:]} for t in targets]
    full = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
    model = build_digits_model(num_classes=4).train()
    image_list, full_t = model.transform(images, full)
    _, curated_t = model.transform(images, curated)
    features = {"0": model.backbone(image_list.tensors)}
    torch.manual_seed(3)
    _, on_full = model.rpn(image_list, features, full_t)
    torch.manual_seed(3)
    _, on_curated = model.rpn(image_list, features, curated_t)
    train_rpn_on_full_annotations(model)
    torch.manual_seed(3)
    _, hooked = model.rpn(image_list, features, curated_t)
    assert torch.allclose(hooked["loss_objectness"], on_full["loss_objectness"])
    assert not torch.allclose(on_curated["loss_objectness"], on_full["loss_objectness"])
    train_rpn_on_full_annotations(model)  # idempotent: one hook
    assert len(model.rpn._forward_pre_hooks) == 1


# ------------------------------------------------------- pseudo labels and objectness mining in the head
PSEUDO_TARGET = {
    **GT,
    "pseudo_boxes": torch.tensor([[100.0, 0.0, 120.0, 20.0]]),
    "pseudo_labels": torch.tensor([3]),
    "pseudo_scores": torch.tensor([0.7]),
}


def test_pseudo_label_head_trains_pseudo_rois_without_box_regression_by_default() -> None:
    head = digits_head(["overlap_soft", "pseudo_label"], sampling="all")
    sampled = head.select_weighted_samples([PROPOSALS], [PSEUDO_TARGET], [(128, 128)])
    far = torch.where((sampled.proposals[0] == PROPOSALS[3]).all(dim=1))[0]
    assert sampled.labels[0][far].tolist() == [3] and sampled.weights[0][far].tolist() == pytest.approx([0.7])
    assert sampled.regress[0][far].tolist() == [False]
    assert sampled.regress[0].tolist() == (sampled.labels[0] > 0).logical_and(sampled.matched_idxs[0] < 2).tolist()
    head = digits_head("pseudo_label", sampling="all", pseudo_regress=True)
    sampled = head.select_weighted_samples([PROPOSALS], [PSEUDO_TARGET], [(128, 128)])
    far = torch.where((sampled.proposals[0] == PROPOSALS[3]).all(dim=1))[0]
    assert sampled.regress[0][far].tolist() == [True]
    assert torch.allclose(sampled.regression_targets[0][far], torch.zeros(1, 4), atol=1e-5)  # the RoI is the box
    with pytest.raises(ValueError, match="pseudo_boxes"):
        head.select_weighted_samples([PROPOSALS], [GT], [(128, 128)])


def test_pseudo_label_end_to_end_with_resize_and_rpn_option() -> None:
    model = build_digits_model(num_classes=4, min_size=256, max_size=256)  # images are upscaled x2
    use_strategy(model, "pseudo_label", pseudo_rpn=True)
    images, targets = batch(2, 128, 4)
    seen = {}
    model.rpn.register_forward_pre_hook(lambda m, args: seen.update(rpn=args[2]))
    model.roi_heads.register_forward_pre_hook(lambda m, args: seen.update(head=args[3]))
    targets = [{**t, **{k: v for k, v in PSEUDO_TARGET.items() if k.startswith("pseudo")}} for t in targets]
    losses = train_step(model, images, targets)
    assert math.isfinite(losses["loss_classifier"].item())
    assert seen["head"][0]["pseudo_boxes"].tolist() == [[200.0, 0.0, 240.0, 40.0]]  # rescaled with the image
    assert seen["rpn"][0]["boxes"].shape[0] == targets[0]["boxes"].shape[0] + 1  # the RPN sees the pseudo box
    assert targets[0]["pseudo_boxes"].tolist() == [[100.0, 0.0, 120.0, 20.0]]  # caller's targets untouched


def test_objectness_mining_head_reads_the_rpn_objectness() -> None:
    model = use_strategy(
        build_digits_model(num_classes=4), "objectness_mining", sampling="all", tau=0.0, mining_iou=0.2
    )
    assert type(model.rpn).__name__ == "ObjectnessRecordingRPN"
    assert set(model.state_dict()) == set(build_digits_model(num_classes=4).state_dict())
    images, targets = batch(2, 128, 4)
    model.roi_heads.set_progress(5, 10)
    head = model.roi_heads
    losses = train_step(model, images, targets)
    assert math.isfinite(losses["loss_classifier"].item())
    assert head.objectness.scores is None  # the record is consumed by the step that produced it
    # tau = 0: every background RoI with o <= 0.2 is ignored; foreground and o = 0.4 train
    head.objectness.scores = [torch.ones(PROPOSALS.shape[0])]
    sampled = head.select_weighted_samples([PROPOSALS], [GT], [(128, 128)])
    assert torch.equal(sampled.proposals[0], torch.cat([PROPOSALS[[0, 1]], GT["boxes"]]))
    head.set_progress(0, 10)  # warm-up: baseline
    head.objectness.scores = [torch.ones(PROPOSALS.shape[0])]
    assert head.select_weighted_samples([PROPOSALS], [GT], [(128, 128)]).proposals[0].shape[0] == 7
    with pytest.raises(ValueError, match="objectness"):
        head.select_weighted_samples([PROPOSALS], [GT], [(128, 128)])
    use_strategy(model, "baseline")
    assert model.rpn.objectness_record is None
