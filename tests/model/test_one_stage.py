"""Strategies inside torchvision's one-stage detectors (RetinaNet, FCOS): weights, gradients, BRL, parity."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torchvision.models.detection import fcos_resnet50_fpn, retinanet_resnet50_fpn

from softsampling.model import (
    SoftSamplingFCOSHead,
    SoftSamplingRetinaNetHead,
    build_digits_fcos,
    build_digits_model,
    build_digits_retinanet,
    use_strategy,
)
from softsampling.sampling import gompertz_weight, weighted_focal_loss

GT = torch.tensor([[0.0, 0.0, 20.0, 20.0]])
# hand-made anchors and their IoU with GT
ANCHORS = torch.tensor(
    [
        [0.0, 0.0, 20.0, 20.0],  # IoU 1: foreground
        [0.0, 0.0, 20.0, 10.0],  # IoU 0.5 (matcher: foreground, >= 0.5)
        [0.0, 0.0, 20.0, 8.0],  # IoU 0.4: between thresholds (0.4 <= o < 0.5): ignored
        [10.0, 0.0, 30.0, 20.0],  # IoU 1/3: background
        [15.0, 15.0, 35.0, 35.0],  # IoU 25/775: background, < 0.1 (a BRL confusion anchor)
        [60.0, 60.0, 80.0, 80.0],  # IoU 0: background
    ]
)
IOU = torch.tensor([1.0, 0.5, 0.4, 1 / 3, 25 / 775, 0.0])
TARGET = {"boxes": GT, "labels": torch.tensor([3])}


def retinanet_matches(model, anchors: torch.Tensor, target: dict) -> torch.Tensor:
    from torchvision.ops import box_iou

    return model.proposal_matcher(box_iou(target["boxes"], anchors))


def test_retinanet_weights_are_the_rules_formula_on_hand_made_anchors() -> None:
    model = use_strategy(build_digits_retinanet(num_classes=5), "overlap_soft")
    matched = retinanet_matches(model, ANCHORS, TARGET)
    assert matched.tolist() == [0, 0, -2, -1, -1, -1]  # torchvision's matcher: fg 0.5, bg 0.4
    (state,) = model.head.assign_anchors([TARGET], [ANCHORS], [matched])
    assert state.labels.tolist() == [3, 3, -1, 0, 0, 0]
    assert torch.allclose(state.overlaps, IOU)
    want = gompertz_weight(IOU)
    assert state.weights[:2].tolist() == [1.0, 1.0] and state.weights[2] == 0.0
    assert torch.allclose(state.weights[3:], want[3:])
    assert state.weights[5].item() == pytest.approx(0.25)

    hard = use_strategy(model, "hard_negative", min_overlap=0.2).head
    assert hard.assign_anchors([TARGET], [ANCHORS], [matched])[0].labels.tolist() == [3, 3, -1, 0, -1, -1]
    dropped = {**TARGET, "dropped_boxes": torch.tensor([[60.0, 60.0, 80.0, 82.0]])}
    upper = use_strategy(model, "upper_bound").head
    assert upper.assign_anchors([dropped], [ANCHORS], [matched])[0].labels.tolist() == [3, 3, -1, 0, 0, -1]
    pseudo = {
        **TARGET,
        "pseudo_boxes": torch.tensor([[60.0, 60.0, 80.0, 80.0]]),
        "pseudo_labels": torch.tensor([2]),
        "pseudo_scores": torch.tensor([0.7]),
    }
    state = use_strategy(model, "pseudo_label").head.assign_anchors([pseudo], [ANCHORS], [matched])[0]
    assert state.labels.tolist() == [3, 3, -1, 0, 0, 2] and state.weights[5].item() == pytest.approx(0.7)
    brl = use_strategy(model, "brl").head.assign_anchors([TARGET], [ANCHORS], [matched])[0]
    assert brl.recalibrate.tolist() == [False, False, False, False, True, True]


def test_fcos_overlap_is_the_centred_box_iou_and_weights_follow_it() -> None:
    model = use_strategy(build_digits_fcos(num_classes=5), "overlap_soft")
    gt = torch.tensor([[0.0, 0.0, 40.0, 20.0]])  # 40 x 20, centre (20, 10)
    centres = torch.tensor([[20.0, 10.0], [30.0, 10.0], [20.0, 25.0], [60.0, 10.0], [100.0, 100.0]])
    anchors = torch.cat([centres - 4, centres + 4], dim=1)  # torchvision's FCOS anchors: stride squares
    target = {"boxes": gt, "labels": torch.tensor([1])}
    matched = torch.tensor([0, -1, -1, -1, -1])
    (state,) = model.head.assign_anchors([target], [anchors], [matched])
    # i = (40 - |dx|) (20 - |dy|), o = i / (2 * 800 - i)
    inter = torch.tensor([800.0, 30 * 20, 40 * 5, 0.0, 0.0])
    want_overlap = inter / (1600 - inter)
    assert torch.allclose(state.overlaps, want_overlap)
    assert state.labels.tolist() == [1, 0, 0, 0, 0]
    assert torch.allclose(state.weights[1:], gompertz_weight(want_overlap[1:]))


def head_losses(model, logits: torch.Tensor, target: dict, anchors: torch.Tensor, matched: torch.Tensor) -> dict:
    outputs = {"cls_logits": logits, "bbox_regression": torch.zeros(1, anchors.shape[0], 4)}
    return model.head.compute_loss([target], outputs, [anchors], [matched])


def test_each_negative_anchors_weight_reaches_the_gradient() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(1, ANCHORS.shape[0], 5, generator=gen)
    model = build_digits_retinanet(num_classes=5)
    matched = retinanet_matches(model, ANCHORS, TARGET)
    grads = {}
    for strategy in ("baseline", "overlap_soft"):
        x = logits.clone().requires_grad_(True)
        head_losses(use_strategy(model, strategy), x, TARGET, ANCHORS, matched)["classification"].backward()
        grads[strategy] = x.grad[0]
    weights = model.head.assign_anchors([TARGET], [ANCHORS], [matched])[0].weights
    for i in (3, 4, 5):  # background anchors: gradient scaled by exactly w(o)
        assert torch.allclose(grads["overlap_soft"][i], weights[i] * grads["baseline"][i], atol=1e-7)
        assert weights[i] < 1
    assert torch.equal(grads["overlap_soft"][:2], grads["baseline"][:2])  # foreground: weight 1
    assert (grads["baseline"][2] == 0).all()  # ignored


def test_brl_equals_its_formula_and_focal_loss_elsewhere() -> None:
    alpha, gamma, beta = 0.25, 2.0, 1.0
    probs = torch.tensor([[0.2, 0.5, 0.9], [0.2, 0.5, 0.9], [0.2, 0.7, 0.95]])
    logits = torch.log(probs / (1 - probs))
    labels = torch.tensor([0, 0, 2])
    confusion = torch.tensor([True, False, True])  # anchor 2 is foreground: never recalibrated
    got = weighted_focal_loss(logits, labels, torch.ones(3), confusion, beta=beta)

    def negative(p: float) -> float:
        return -(1 - alpha) * p**gamma * math.log(1 - p)

    def mirrored(p: float) -> float:
        return -(1 - alpha) * beta * (1 - p) ** gamma * math.log(p)

    def positive(p: float) -> float:
        return -alpha * (1 - p) ** gamma * math.log(p)

    want = (
        negative(0.2)
        + mirrored(0.5)
        + mirrored(0.9)  # confusion anchor: p >= 0.5 mirrored
        + negative(0.2)
        + negative(0.5)
        + negative(0.9)  # not a confusion anchor: focal
        + negative(0.2)
        + negative(0.7)
        + positive(0.95)
    )  # foreground anchor: focal
    assert got.item() == pytest.approx(want, rel=1e-5)
    # p < 0.5 everywhere, or no anchor marked: exactly the focal loss
    low = logits.clamp(max=-0.1)
    assert torch.equal(
        weighted_focal_loss(low, labels, torch.ones(3), confusion), weighted_focal_loss(low, labels, torch.ones(3))
    )
    # beta scales the mirrored terms only
    half = weighted_focal_loss(logits, labels, torch.ones(3), confusion, beta=0.5)
    assert (got - half).item() == pytest.approx(0.5 * (mirrored(0.5) + mirrored(0.9)), rel=1e-5)


def test_brl_inside_retinanet_recalibrates_confident_far_anchors() -> None:
    model = build_digits_retinanet(num_classes=5)
    matched = retinanet_matches(model, ANCHORS, TARGET)
    logits = torch.full((1, ANCHORS.shape[0], 5), -3.0)
    logits[0, 5, 2] = 3.0  # a confident detection far from every annotation (o = 0)
    base = head_losses(use_strategy(model, "baseline"), logits, TARGET, ANCHORS, matched)["classification"]
    brl = head_losses(use_strategy(model, "brl"), logits, TARGET, ANCHORS, matched)["classification"]
    p = torch.sigmoid(torch.tensor(3.0))
    num_fg = 2
    change = (0.75 * (1 - p) ** 2 * -torch.log(p)) - (0.75 * p**2 * -torch.log(1 - p))
    assert (brl - base).item() == pytest.approx(change.item() / num_fg, rel=1e-5)


def test_retinanet_batch_loss_is_the_mean_of_each_images_own_loss() -> None:
    """The head's one focal-loss call over the batch keeps torchvision's per-image normalisation (BRL too)."""
    torch.manual_seed(0)
    model = build_digits_retinanet(num_classes=5)
    gen = torch.Generator().manual_seed(3)
    _, targets = random_batch(gen)  # 3, 1 and 0 boxes: different foreground counts
    anchors = [ANCHORS.repeat(4, 1) * 2 + 4 * k for k in range(3)]
    logits = torch.randn(3, anchors[0].shape[0], 5, generator=gen) * 3  # some background p >= 0.5
    for strategy in ("overlap_soft", "brl"):
        use_strategy(model, strategy)
        matched = [
            retinanet_matches(model, a, t) if t["boxes"].numel() else torch.full((a.shape[0],), -1)
            for a, t in zip(anchors, targets, strict=True)
        ]
        batch = head_losses_batch(model, logits, targets, anchors, matched)["classification"]
        alone = [
            head_losses(model, logits[i : i + 1], targets[i], anchors[i], matched[i])["classification"]
            for i in range(3)
        ]
        assert batch.item() == pytest.approx(sum(x.item() for x in alone) / 3, rel=1e-6), strategy
        assert len({round(x.item(), 4) for x in alone}) == 3  # the images differ, so a wrong weighting would show


def head_losses_batch(model, logits, targets, anchors, matched) -> dict:
    outputs = {"cls_logits": logits, "bbox_regression": torch.zeros(*logits.shape[:2], 4)}
    return model.head.compute_loss(targets, outputs, anchors, matched)


def random_batch(gen: torch.Generator, size: int = 128) -> tuple[list, list]:
    images = [torch.rand(3, size, size, generator=gen) for _ in range(3)]
    targets = []
    for n in (3, 1, 0):  # an image without annotations too
        xy = torch.rand(n, 2, generator=gen) * size * 0.6
        wh = 10 + torch.rand(n, 2, generator=gen) * size * 0.3
        targets.append({"boxes": torch.cat([xy, xy + wh], dim=1), "labels": torch.randint(1, 5, (n,), generator=gen)})
    return images, targets


@pytest.mark.parametrize("builder", [build_digits_retinanet, build_digits_fcos])
def test_baseline_equals_torchvision_stock_loss(builder) -> None:
    torch.manual_seed(0)
    stock = builder(num_classes=5).train()
    ours = use_strategy(copy.deepcopy(stock), "baseline")
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):
        images, targets = random_batch(gen)
        theirs, mine = stock(images, targets), ours(images, targets)
        assert theirs.keys() == mine.keys()
        for key in theirs:
            if builder is build_digits_retinanet and key == "classification":
                # one focal-loss call over the batch instead of torchvision's per-image loop: same terms, summed
                # in another order, so equal to float32 rounding
                torch.testing.assert_close(mine[key], theirs[key], rtol=1e-6, atol=0.0)
            else:
                assert torch.equal(theirs[key], mine[key]), key


@pytest.mark.slow  # ~6 s each on one CPU core: torchvision's ResNet-50-FPN models, built without weights
@pytest.mark.parametrize(
    "builder, head", [(retinanet_resnet50_fpn, SoftSamplingRetinaNetHead), (fcos_resnet50_fpn, SoftSamplingFCOSHead)]
)
def test_torchvision_resnet50_one_stage_models_train_two_steps(builder, head) -> None:
    torch.manual_seed(0)
    model = builder(weights=None, weights_backbone=None, num_classes=5, min_size=96, max_size=96)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    use_strategy(model, ["overlap_soft", "brl"])
    assert type(model.head) is head and model.state_dict().keys() == state.keys()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001)
    images, targets = random_batch(torch.Generator().manual_seed(2), size=96)
    for _ in range(2):
        losses = model(images, targets)
        assert all(torch.isfinite(v) for v in losses.values())
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        assert sorted(model(images[:1])[0]) == ["boxes", "labels", "scores"]


def test_rules_and_arguments_for_the_other_kind_of_detector_are_refused() -> None:
    with pytest.raises(ValueError, match="rule 'brl' of strategy 'brl' needs a one-stage detector"):
        use_strategy(build_digits_model(), "brl")
    with pytest.raises(ValueError, match="needs a two-stage detector"):
        use_strategy(build_digits_retinanet(), "objectness_mining")
    with pytest.raises(ValueError, match="batch_size_per_image apply to two-stage detectors only"):
        use_strategy(build_digits_fcos(), "baseline", batch_size_per_image=64)
    with pytest.raises(ValueError, match="normalization 'weight_sum' does not apply"):
        use_strategy(build_digits_fcos(), "baseline", normalization="weight_sum")
    with pytest.raises(ValueError, match="pseudo_rpn applies to two-stage"):
        use_strategy(build_digits_fcos(), "pseudo_label", pseudo_rpn=True)


def test_dropped_and_pseudo_boxes_are_rescaled_with_the_image() -> None:
    """The transform resizes boxes; dropped/pseudo boxes follow (the two-stage head's hook)."""
    model = use_strategy(build_digits_retinanet(num_classes=5, image_size=64), "upper_bound")
    seen = {}
    original = model.head.assign_anchors

    def spy(targets, anchors, matched):
        seen["dropped"] = targets[0]["dropped_boxes"].clone()
        return original(targets, anchors, matched)

    model.head.assign_anchors = spy
    model(
        [torch.rand(3, 128, 128)],
        [
            {
                "boxes": torch.tensor([[0.0, 0.0, 40.0, 40.0]]),
                "labels": torch.tensor([1]),
                "dropped_boxes": torch.tensor([[64.0, 64.0, 128.0, 128.0]]),
            }
        ],
    )
    assert seen["dropped"].tolist() == [[32.0, 32.0, 64.0, 64.0]]


def test_retinanet_rules_reuse_the_iou_its_matcher_computed() -> None:
    from softsampling.sampling.boxes import max_iou

    torch.manual_seed(0)
    model = use_strategy(build_digits_retinanet(num_classes=5), "overlap_soft").train()
    calls: list[int] = []

    def counting(anchors: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(boxes.shape[0])
        return max_iou(anchors, boxes)

    model.head.overlap = counting
    seen: dict = {}
    assign = model.head.assign_anchors

    def spy(targets, anchors, matched):
        seen.update(targets=targets, anchors=anchors, matched=matched, states=assign(targets, anchors, matched))
        return seen["states"]

    model.head.assign_anchors = spy
    images, targets = random_batch(torch.Generator().manual_seed(2))  # 3, 1 and 0 boxes
    model(images, targets)
    assert calls == [0]  # only the image without boxes asked; the others reused the matcher's IoU
    again = assign(seen["targets"], seen["anchors"], seen["matched"])  # called directly: nothing recorded
    assert calls == [0, 3, 1, 0]
    for reused, computed in zip(seen["states"], again, strict=True):
        assert torch.equal(reused.overlaps, computed.overlaps) and torch.equal(reused.weights, computed.weights)
        assert torch.equal(reused.labels, computed.labels)
    assert any((s.weights < 1).any() for s in again)
    # records left by an interrupted step are not read for a batch they do not fit
    model.proposal_matcher.recorded.append((torch.zeros(7), torch.zeros(7, dtype=torch.int64)))
    assign(seen["targets"], seen["anchors"], seen["matched"])
    assert calls[4:] == [3, 1, 0] and model.proposal_matcher.recorded == []
