"""Label assignment per strategy, with hand-made boxes and property tests."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.ops import box_iou

from softsampling.sampling import STRATEGIES, Assignment, assign, gompertz_weight, score_weight

GT = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
GT_LABELS = torch.tensor([3, 5])
# IoU with GT[0]:  1.0        0.5              0.4             0.15              0     | with GT[1]: 0.5
PROPOSALS = torch.tensor(
    [
        [0.0, 0.0, 10.0, 10.0],
        [0.0, 0.0, 10.0, 5.0],
        [0.0, 0.0, 10.0, 4.0],
        [0.0, 0.0, 10.0, 1.5],
        [50.0, 50.0, 60.0, 60.0],
        [20.0, 20.0, 30.0, 25.0],
    ]
)
OVERLAPS = [1.0, 0.5, 0.4, 0.15, 0.0, 0.5]
EMPTY = torch.zeros((0, 4))
EMPTY_LABELS = torch.zeros(0, dtype=torch.int64)


def G(x: float) -> float:
    return 0.25 + 0.75 * math.exp(-50.0 * math.exp(-20.0 * x))


def test_baseline() -> None:
    a = assign("baseline", PROPOSALS, GT, GT_LABELS)
    assert isinstance(a, Assignment)
    assert a.labels.tolist() == [3, 3, 0, 0, 0, 5]
    assert a.weights.tolist() == [1.0] * 6
    assert a.overlaps.tolist() == pytest.approx(OVERLAPS)
    assert a.matched_gt.tolist() == [0, 0, -1, -1, -1, 1]
    assert (a.labels.dtype, a.weights.dtype, a.overlaps.dtype, a.matched_gt.dtype) == (
        torch.int64,
        torch.float32,
        torch.float32,
        torch.int64,
    )


def test_fg_iou_and_ignore_band() -> None:
    a = assign("baseline", PROPOSALS, GT, GT_LABELS, fg_iou=0.6)
    assert a.labels.tolist() == [3, 0, 0, 0, 0, 0]
    a = assign("baseline", PROPOSALS, GT, GT_LABELS, bg_iou=0.3)
    # 0.4 lies in [bg_iou, fg_iou): ignored, weight 0
    assert a.labels.tolist() == [3, 3, -1, 0, 0, 5]
    assert a.weights.tolist() == [1.0, 1.0, 0.0, 1.0, 1.0, 1.0]


def test_hard_negative() -> None:
    a = assign("hard_negative", PROPOSALS, GT, GT_LABELS, min_overlap=0.2)
    assert a.labels.tolist() == [3, 3, 0, -1, -1, 5]
    assert a.weights.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    a = assign("hard_negative", PROPOSALS, GT, GT_LABELS, min_overlap=0.1)
    assert a.labels.tolist() == [3, 3, 0, 0, -1, 5]
    assert assign("hard_negative", PROPOSALS, GT, GT_LABELS).labels.tolist() == [3, 3, 0, 0, -1, 5]  # default 0.1


def test_overlap_soft() -> None:
    a = assign("overlap_soft", PROPOSALS, GT, GT_LABELS)
    assert a.labels.tolist() == [3, 3, 0, 0, 0, 5]
    assert a.weights.tolist() == pytest.approx([1.0, 1.0, G(0.4), G(0.15), G(0.0), 1.0], abs=1e-6)
    custom = assign("overlap_soft", PROPOSALS, GT, GT_LABELS, a=0.5, b=10.0, c=5.0)
    assert custom.weights[3].item() == pytest.approx(0.5 + 0.5 * math.exp(-10 * math.exp(-5 * 0.15)), abs=1e-6)


def test_score_soft() -> None:
    # C = 6 columns (background + classes 1..5)
    scores = torch.tensor(
        [
            [0.1, 0.0, 0.0, 0.9, 0.0, 0.0],
            [0.1, 0.0, 0.0, 0.9, 0.0, 0.0],
            [0.2, 0.7, 0.1, 0.0, 0.0, 0.0],  # top class 1 (0.7)
            [0.9, 0.0, 0.05, 0.0, 0.0, 0.05],  # tie 0.05 between classes 2 and 5 -> first (2)
            [0.5, 0.0, 0.0, 0.0, 0.3, 0.2],  # top class 4 (0.3)
            [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
        ]
    )
    thresholds = torch.tensor([0.0, 0.6, 0.5, 0.4, 0.35, 0.2])
    a = assign("score_soft", PROPOSALS, GT, GT_LABELS, proposal_scores=scores, thresholds=thresholds)
    assert a.labels.tolist() == [3, 3, 0, 0, 0, 5]
    want = [1.0, 1.0, G(0.6 - 0.7), G(0.5 - 0.05), G(0.35 - 0.3), 1.0]
    assert a.weights.tolist() == pytest.approx(want, abs=1e-6)
    # identical labels to baseline; only background weights differ
    assert torch.equal(a.labels, assign("baseline", PROPOSALS, GT, GT_LABELS).labels)


def test_score_soft_requires_inputs() -> None:
    scores = torch.full((6, 6), 1 / 6)
    with pytest.raises(ValueError, match="thresholds"):
        assign("score_soft", PROPOSALS, GT, GT_LABELS, proposal_scores=scores)
    with pytest.raises(ValueError, match="proposal_scores"):
        assign("score_soft", PROPOSALS, GT, GT_LABELS, thresholds=torch.zeros(6))
    with pytest.raises(ValueError, match="one entry per class"):
        assign("score_soft", PROPOSALS, GT, GT_LABELS, proposal_scores=scores, thresholds=torch.zeros(5))
    with pytest.raises(ValueError, match=r"\[N=6"):
        assign("score_soft", PROPOSALS, GT, GT_LABELS, proposal_scores=scores[:5], thresholds=torch.zeros(6))


def test_upper_bound() -> None:
    dropped = torch.tensor([[40.0, 40.0, 50.0, 50.0], [0.0, 0.0, 10.0, 6.0]])
    proposals = torch.tensor(
        [
            [40.0, 40.0, 50.0, 50.0],  # IoU 1 with a dropped box: ignored
            [40.0, 40.0, 50.0, 45.0],  # IoU 0.5 with a dropped box: ignored
            [40.0, 40.0, 50.0, 44.0],  # IoU 0.4: background, as baseline
            [0.0, 0.0, 10.0, 10.0],  # annotated IoU 1.0 > dropped 0.6: stays foreground
            [0.0, 0.0, 10.0, 5.5],  # annotated 0.55 < dropped 0.9167: would match the dropped box -> ignored
            [60.0, 60.0, 70.0, 70.0],  # far from everything: background
        ]
    )
    a = assign("upper_bound", proposals, GT, GT_LABELS, dropped_boxes=dropped)
    assert a.labels.tolist() == [-1, -1, 0, 3, -1, 0]
    assert a.weights.tolist() == [0.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    assert a.matched_gt.tolist() == [-1, -1, -1, 0, -1, -1]
    # overlaps only count annotated boxes
    assert a.overlaps.tolist() == pytest.approx([0.0, 0.0, 0.0, 1.0, 0.55, 0.0])
    # no dropped boxes: exactly baseline
    b = assign("upper_bound", PROPOSALS, GT, GT_LABELS, dropped_boxes=EMPTY)
    assert torch.equal(b.labels, assign("baseline", PROPOSALS, GT, GT_LABELS).labels)
    with pytest.raises(ValueError, match="dropped_boxes"):
        assign("upper_bound", PROPOSALS, GT, GT_LABELS)


def test_group_of_ignores_background_inside() -> None:
    gt = torch.tensor([[0.0, 0.0, 100.0, 100.0], [200.0, 200.0, 210.0, 210.0]])
    labels = torch.tensor([2, 4])
    proposals = torch.tensor(
        [
            [10.0, 10.0, 20.0, 20.0],  # fully inside the group-of box: ignored
            [90.0, 10.0, 110.0, 20.0],  # 50% inside: background
            [-0.5, 10.0, 9.5, 20.0],  # 95% inside: ignored
            [-1.5, 10.0, 8.5, 20.0],  # 85% inside: background
            [0.0, 0.0, 100.0, 100.0],  # the group-of box itself: foreground of its class
            [200.0, 200.0, 210.0, 210.0],  # ordinary annotated box: foreground
        ]
    )
    group_of = torch.tensor([True, False])
    for strategy in ("baseline", "overlap_soft"):
        a = assign(strategy, proposals, gt, labels, group_of=group_of)
        assert a.labels.tolist() == [-1, 0, -1, 0, 2, 4], strategy
        assert a.weights[0].item() == 0.0 and a.weights[2].item() == 0.0
    assert assign("baseline", proposals, gt, labels).labels.tolist() == [0, 0, 0, 0, 2, 4]
    assert assign("baseline", proposals, gt, labels, group_of=group_of, group_of_threshold=0.99).labels.tolist() == [
        -1,
        0,
        0,
        0,
        2,
        4,
    ]


def _extra(strategy: str, n: int, c: int = 4) -> dict:
    if strategy == "score_soft":
        scores = torch.softmax(torch.arange(n * c, dtype=torch.float32).reshape(n, c) % 5, dim=1)
        return {"proposal_scores": scores, "thresholds": torch.full((c,), 0.3)}
    if strategy == "upper_bound":
        return {"dropped_boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]])}
    if strategy == "pseudo_label":  # no pseudo box: same as baseline
        return {
            "pseudo_boxes": torch.zeros(0, 4),
            "pseudo_labels": torch.zeros(0, dtype=torch.int64),
            "pseudo_scores": torch.zeros(0),
        }
    if strategy == "objectness_mining":  # nothing the RPN finds object-like
        return {"objectness": torch.zeros(n)}
    return {}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_image_without_annotations(strategy: str) -> None:
    a = assign(strategy, PROPOSALS, EMPTY, EMPTY_LABELS, **_extra(strategy, 6))
    assert a.overlaps.tolist() == [0.0] * 6
    assert a.matched_gt.tolist() == [-1] * 6
    if strategy == "hard_negative":
        assert a.labels.tolist() == [-1] * 6  # nothing overlaps an annotation
    elif strategy == "upper_bound":
        assert a.labels.tolist() == [-1, -1, 0, 0, 0, 0]  # IoU 1 and 0.5 with the dropped box
    else:
        assert a.labels.tolist() == [0] * 6
    if strategy == "overlap_soft":
        assert a.weights.tolist() == pytest.approx([0.25] * 6)
    if strategy == "score_soft":
        scores = _extra(strategy, 6)["proposal_scores"]
        top = scores[:, 1:].max(dim=1).values
        assert a.weights.tolist() == pytest.approx(score_weight(top, 0.3).tolist(), abs=1e-6)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_no_proposals(strategy: str) -> None:
    a = assign(strategy, EMPTY, GT, GT_LABELS, **_extra(strategy, 0))
    assert [t.shape for t in a] == [torch.Size([0])] * 5


def test_errors() -> None:
    with pytest.raises(ValueError, match="unknown strategy 'soft'.*baseline"):
        assign("soft", PROPOSALS, GT, GT_LABELS)
    with pytest.raises(ValueError, match="unknown parameter.*min_overlap"):
        assign("overlap_soft", PROPOSALS, GT, GT_LABELS, min_overlap=0.1)
    with pytest.raises(ValueError, match=r"shape \[N, 4\]"):
        assign("baseline", PROPOSALS[:, :3], GT, GT_LABELS)
    with pytest.raises(ValueError, match="gt_labels has 1"):
        assign("baseline", PROPOSALS, GT, GT_LABELS[:1])
    with pytest.raises(ValueError, match=">= 1"):
        assign("baseline", PROPOSALS, GT, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="bg_iou"):
        assign("baseline", PROPOSALS, GT, GT_LABELS, bg_iou=0.7)
    with pytest.raises(ValueError, match="group_of has 1"):
        assign("baseline", PROPOSALS, GT, GT_LABELS, group_of=torch.tensor([True]))


# ----------------------------------------------------------------- properties
coord = st.floats(0.0, 60.0, allow_nan=False, width=32)
size = st.floats(1.0, 40.0, allow_nan=False, width=32)
box = st.tuples(coord, coord, size, size).map(lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(box, min_size=1, max_size=25),
    st.lists(box, min_size=0, max_size=5),
    st.sampled_from([0.4, 0.5, 0.7]),
)
def test_properties(proposal_list: list, gt_list: list, fg_iou: float) -> None:
    proposals = torch.tensor(proposal_list)
    gt = torch.tensor(gt_list).reshape(-1, 4)
    labels = torch.arange(1, gt.shape[0] + 1)
    base = assign("baseline", proposals, gt, labels, fg_iou=fg_iou)
    iou = box_iou(proposals, gt) if gt.shape[0] else torch.zeros(proposals.shape[0], 0)
    expected_overlaps = iou.max(dim=1).values if gt.shape[0] else torch.zeros(proposals.shape[0])
    assert torch.allclose(base.overlaps, expected_overlaps)
    # labels consistent with IoU: foreground exactly at overlap >= fg_iou, labelled by the best box
    assert torch.equal(base.labels > 0, base.overlaps >= fg_iou)
    fg = base.labels > 0
    assert torch.equal(base.labels[fg], labels[base.matched_gt[fg]])
    assert torch.allclose(iou[fg, base.matched_gt[fg]], base.overlaps[fg]) if bool(fg.any()) else True
    assert bool((base.matched_gt[~fg] == -1).all())

    soft = assign("overlap_soft", proposals, gt, labels, fg_iou=fg_iou)
    assert torch.equal(soft.labels, base.labels)
    assert bool((soft.weights >= 0.25).all()) and bool((soft.weights <= 1.0).all())
    assert bool((soft.weights[fg] == 1.0).all())
    bg = ~fg
    assert torch.allclose(soft.weights[bg], gompertz_weight(soft.overlaps[bg]))
    order = torch.argsort(soft.overlaps[bg])
    w_sorted = soft.weights[bg][order]
    assert bool((w_sorted[1:] >= w_sorted[:-1]).all())

    hard = assign("hard_negative", proposals, gt, labels, fg_iou=fg_iou, min_overlap=0.2)
    assert torch.equal(hard.labels == -1, bg & (base.overlaps < 0.2))

    # assignment is per RoI: a subset of proposals gets the subset of answers
    subset = torch.arange(0, proposals.shape[0], 2)
    part = assign("overlap_soft", proposals[subset], gt, labels, fg_iou=fg_iou)
    for full_field, part_field in zip(soft, part, strict=True):
        assert torch.equal(full_field[subset], part_field)
