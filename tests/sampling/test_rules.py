"""Every rule of the table: shapes, edge cases, composition, and the pseudo-box helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from softsampling.sampling import (
    RULES,
    STRATEGIES,
    assign,
    merge_flip_detections,
    resolve_strategy,
    select_pseudo_boxes,
    weighted_fastrcnn_loss,
)
from softsampling.sampling.rules import describe_strategies

GT = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
GT_LABELS = torch.tensor([1])
EMPTY, EMPTY_LABELS = torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)
PROPOSALS = torch.tensor(
    [
        [0.0, 0.0, 10.0, 10.0],  # 0: foreground of GT (IoU 1)
        [0.0, 0.0, 10.0, 4.0],  # 1: background, IoU 0.4
        [50.0, 50.0, 60.0, 60.0],  # 2: background, IoU 0, on the pseudo box
        [50.0, 50.0, 60.0, 57.0],  # 3: background, IoU 0, IoU 0.7 with the pseudo box
        [80.0, 0.0, 90.0, 10.0],  # 4: background, IoU 0, nothing there
    ]
)
PSEUDO = {
    "pseudo_boxes": torch.tensor([[50.0, 50.0, 60.0, 60.0]]),
    "pseudo_labels": torch.tensor([2]),
    "pseudo_scores": torch.tensor([0.8]),
}
NO_PSEUDO = {"pseudo_boxes": EMPTY, "pseudo_labels": EMPTY_LABELS, "pseudo_scores": torch.zeros(0)}


def inputs_for(rule: str, n: int) -> dict:
    """Inputs a rule needs, neutral (no effect) values."""
    return {
        "score_soft": {"proposal_scores": torch.full((n, 3), 1 / 3), "thresholds": torch.full((3,), 0.0)},
        "upper_bound": {"dropped_boxes": EMPTY},
        "pseudo_label": NO_PSEUDO,
        "objectness_mining": {"objectness": torch.zeros(n)},
    }.get(rule, {})


def test_table_is_complete_and_every_rule_is_tested_here() -> None:
    source = Path(__file__).read_text()
    assert set(STRATEGIES) == {"baseline", *RULES}
    for name, spec in RULES.items():
        assert f"def test_{name}" in source, f"rule {name} has no test_{name}_* in this file"
        assert spec.summary and spec.source
        resolved = resolve_strategy(name).params  # defaults are valid
        assert all(resolved[k] == v for k, v in {**spec.params, **spec.options}.items())
        assert name in describe_strategies()


@pytest.mark.parametrize("rule", list(RULES))
def test_every_rule_shapes_and_edge_cases(rule: str) -> None:
    # no proposals
    a = assign(rule, EMPTY, GT, GT_LABELS, **inputs_for(rule, 0))
    assert [t.shape for t in a] == [torch.Size([0])] * 5
    # no annotations: nothing is foreground
    a = assign(rule, PROPOSALS, EMPTY, EMPTY_LABELS, **inputs_for(rule, 5))
    assert [t.shape for t in a] == [torch.Size([5])] * 5
    assert (a.labels <= 0).all() and (a.matched_gt == -1).all() and (a.overlaps == 0).all()
    assert ((a.weights == 0) == (a.labels == -1)).all()
    # everything ignored by the matcher (the whole [0, fg_iou) band): the rule keeps it ignored, weight 0
    a = assign(rule, PROPOSALS[1:], GT, GT_LABELS, bg_iou=0.0, **inputs_for(rule, 4))
    assert a.labels.tolist() == [-1] * 4 and a.weights.tolist() == [0.0] * 4


def test_hard_negative_ignores_far_background() -> None:
    a = assign("hard_negative", PROPOSALS, GT, GT_LABELS, min_overlap=0.3)
    assert a.labels.tolist() == [1, 0, -1, -1, -1]


def test_overlap_soft_weights_background_only() -> None:
    a = assign("overlap_soft", PROPOSALS, GT, GT_LABELS)
    assert a.weights[0] == 1.0 and a.weights[2:].tolist() == pytest.approx([0.25] * 3)


def test_score_soft_weights_with_prior_scores() -> None:
    scores = torch.tensor([[0.0, 1.0, 0.0]] * 5)
    a = assign("score_soft", PROPOSALS, GT, GT_LABELS, proposal_scores=scores, thresholds=torch.tensor([0.5, 0.5, 0.5]))
    assert a.weights[0] == 1.0 and a.weights[1:].tolist() == pytest.approx([0.25] * 4)


def test_upper_bound_ignores_rois_on_dropped_boxes() -> None:
    a = assign("upper_bound", PROPOSALS, GT, GT_LABELS, dropped_boxes=PSEUDO["pseudo_boxes"])
    assert a.labels.tolist() == [1, 0, -1, -1, 0]


def test_pseudo_label_makes_foreground_with_teacher_confidence() -> None:
    a = assign("pseudo_label", PROPOSALS, GT, GT_LABELS, **PSEUDO)
    assert a.labels.tolist() == [1, 0, 2, 2, 0]
    assert a.weights.tolist() == pytest.approx([1.0, 1.0, 0.8, 0.8, 1.0])
    assert a.matched_gt.tolist() == [0, -1, 1, 1, -1]  # G + j: pseudo box 0 of an image with 1 annotation
    assert a.overlaps[2:].tolist() == [0.0, 0.0, 0.0]  # o stays the IoU with annotated boxes
    one = assign("pseudo_label", PROPOSALS, GT, GT_LABELS, pseudo_weight="one", **PSEUDO)
    assert one.weights.tolist() == [1.0] * 5
    # stricter fg_iou: the 0.7 RoI is no longer a match
    assert assign("pseudo_label", PROPOSALS, GT, GT_LABELS, fg_iou=0.8, **PSEUDO).labels.tolist() == [1, 0, 2, 0, 0]
    # no annotations at all: pseudo boxes alone
    a = assign("pseudo_label", PROPOSALS, EMPTY, EMPTY_LABELS, **PSEUDO)
    assert a.labels.tolist() == [0, 0, 2, 2, 0] and a.matched_gt.tolist() == [-1, -1, 0, 0, -1]


def test_pseudo_label_overlapping_an_annotation_never_overrides_it() -> None:
    pseudo = {
        "pseudo_boxes": torch.tensor([[0.0, 0.0, 10.0, 9.0]]),
        "pseudo_labels": torch.tensor([2]),
        "pseudo_scores": torch.tensor([0.9]),
    }
    a = assign("pseudo_label", PROPOSALS, GT, GT_LABELS, **pseudo)
    assert a.labels[0] == 1 and a.matched_gt[0] == 0  # annotated foreground wins
    # RoI 1 (IoU 0.4 with GT, 0.44 with the pseudo box) stays background: below fg_iou for both
    assert a.labels.tolist() == [1, 0, 0, 0, 0]
    # with a pseudo box closer than the annotation, a non-foreground RoI takes it
    b = assign(
        "pseudo_label",
        torch.tensor([[0.0, 0.0, 10.0, 4.0]]),
        GT,
        GT_LABELS,
        pseudo_boxes=torch.tensor([[0.0, 0.0, 10.0, 5.0]]),
        pseudo_labels=torch.tensor([2]),
        pseudo_scores=torch.tensor([0.6]),
    )
    assert b.labels.tolist() == [2] and b.weights.tolist() == pytest.approx([0.6])


def test_pseudo_label_errors() -> None:
    with pytest.raises(ValueError, match="needs pseudo_boxes"):
        assign("pseudo_label", PROPOSALS, GT, GT_LABELS)
    with pytest.raises(ValueError, match="one entry per pseudo box"):
        assign(
            "pseudo_label",
            PROPOSALS,
            GT,
            GT_LABELS,
            pseudo_boxes=PSEUDO["pseudo_boxes"],
            pseudo_labels=torch.tensor([1, 2]),
            pseudo_scores=torch.tensor([0.5]),
        )
    with pytest.raises(ValueError, match="pseudo_weight"):
        resolve_strategy("pseudo_label", {"pseudo_weight": "half"})


def test_objectness_mining_ignores_object_like_background_after_warmup() -> None:
    objectness = torch.tensor([0.99, 0.95, 0.9, 0.5, 0.85])
    a = assign("objectness_mining", PROPOSALS, GT, GT_LABELS, objectness=objectness)
    # RoI 0 is foreground; RoI 1 overlaps the annotation by 0.4 > 0.2; RoI 3 is below tau
    assert a.labels.tolist() == [1, 0, -1, 0, -1] and a.weights.tolist() == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert assign("objectness_mining", PROPOSALS, GT, GT_LABELS, objectness=objectness, tau=0.9).labels.tolist() == [
        1,
        0,
        -1,
        0,
        0,
    ]
    # warm-up: the first 20% of iterations train as baseline
    early = assign("objectness_mining", PROPOSALS, GT, GT_LABELS, objectness=objectness, iteration=19, iterations=100)
    late = assign("objectness_mining", PROPOSALS, GT, GT_LABELS, objectness=objectness, iteration=20, iterations=100)
    assert early.labels.tolist() == [1, 0, 0, 0, 0] and late.labels.tolist() == [1, 0, -1, 0, -1]
    with pytest.raises(ValueError, match="needs objectness"):
        assign("objectness_mining", PROPOSALS, GT, GT_LABELS)
    with pytest.raises(ValueError, match="one entry per RoI"):
        assign("objectness_mining", PROPOSALS, GT, GT_LABELS, objectness=torch.zeros(3))
    with pytest.raises(ValueError, match="tau must be"):
        resolve_strategy("objectness_mining", {"tau": 1.5})


def test_brl_marks_far_background_only() -> None:
    a = assign("brl", PROPOSALS, GT, GT_LABELS)  # overlaps 1, 0.4, 0, 0, 0
    assert a.recalibrate.tolist() == [False, False, True, True, True]
    assert a.labels.tolist() == [1, 0, 0, 0, 0] and a.weights.tolist() == [1.0] * 5  # labels, weights unchanged
    b = assign("brl", PROPOSALS, GT, GT_LABELS, brl_iou=0.5)
    assert b.recalibrate.tolist() == [False, True, True, True, True]
    with pytest.raises(ValueError, match="brl_iou must be a number in"):
        resolve_strategy("brl", {"brl_iou": 0.7})
    with pytest.raises(ValueError, match="brl_beta must be a number >= 0"):
        resolve_strategy("brl", {"brl_beta": -1})
    with pytest.raises(ValueError, match="rule 'brl' of strategy 'overlap_soft\\+brl' needs a one-stage detector"):
        resolve_strategy(["overlap_soft", "brl"]).check_detector("two_stage")
    resolve_strategy(["overlap_soft", "brl"]).check_detector("one_stage")


def test_compositions_apply_rules_in_order() -> None:
    a = assign(["overlap_soft", "pseudo_label"], PROPOSALS, GT, GT_LABELS, **PSEUDO)
    assert a.labels.tolist() == [1, 0, 2, 2, 0]
    assert a.weights[2:].tolist() == pytest.approx([0.8, 0.8, 0.25])  # pseudo: confidence; far bg: w(0)
    b = assign(["pseudo_label", "overlap_soft"], PROPOSALS, GT, GT_LABELS, **PSEUDO)
    assert torch.equal(a.labels, b.labels) and torch.allclose(a.weights, b.weights)
    # hard negatives first ignore the far RoIs; pseudo labels then take the ones on the pseudo box back
    c = assign(["hard_negative", "pseudo_label"], PROPOSALS, GT, GT_LABELS, min_overlap=0.3, **PSEUDO)
    assert c.labels.tolist() == [1, 0, 2, 2, -1]
    composition = resolve_strategy(["overlap_soft", "pseudo_label", "objectness_mining"], {"a": 0.5})
    assert composition.name == "overlap_soft+pseudo_label+objectness_mining"
    assert composition.params["a"] == 0.5 and composition.params["tau"] == 0.8
    assert composition.needs == {"pseudo_boxes", "pseudo_labels", "pseudo_scores", "objectness"}
    assert resolve_strategy([]).name == "baseline" and resolve_strategy(["baseline", "overlap_soft"]).rules == (
        "overlap_soft",
    )


def test_composition_errors() -> None:
    with pytest.raises(ValueError, match="unknown rule 'focal'"):
        resolve_strategy(["overlap_soft", "focal"])
    with pytest.raises(ValueError, match="appears twice"):
        resolve_strategy(["overlap_soft", "overlap_soft"])
    with pytest.raises(ValueError, match="must come last"):
        resolve_strategy(["score_soft", "pseudo_label"])
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['tau'\]"):
        resolve_strategy(["overlap_soft", "pseudo_label"], {"tau": 0.5})
    with pytest.raises(ValueError, match="name or a list"):
        resolve_strategy(3)  # type: ignore[arg-type]
    assert resolve_strategy(["overlap_soft", "score_soft"]).after_sampling  # last: fine


def test_pseudo_labelled_foreground_weight_reaches_the_gradient() -> None:
    a = assign("pseudo_label", PROPOSALS, GT, GT_LABELS, **PSEUDO)
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    grads = []
    for weights in (a.weights, torch.ones(5)):
        x = logits.clone().requires_grad_(True)
        loss, _ = weighted_fastrcnn_loss(x, torch.zeros(5, 12), a.labels, torch.zeros(5, 4), weights)
        loss.backward()
        grads.append(x.grad)
    assert a.labels[2] == 2 and a.weights[2] == pytest.approx(0.8)
    assert torch.allclose(grads[0][2], 0.8 * grads[1][2])  # the pseudo RoI's gradient is scaled by its weight
    assert torch.allclose(grads[0][0], grads[1][0])


def test_regress_mask_leaves_pseudo_rois_out_of_box_loss() -> None:
    labels = torch.tensor([1, 2])
    targets = torch.ones(2, 4)
    deltas = torch.zeros(2, 12, requires_grad=True)
    _, box_all = weighted_fastrcnn_loss(torch.zeros(2, 3), deltas, labels, targets, torch.ones(2))
    _, box_one = weighted_fastrcnn_loss(
        torch.zeros(2, 3), deltas, labels, targets, torch.ones(2), regress=torch.tensor([True, False])
    )
    assert box_one.item() == pytest.approx(box_all.item() / 2)


def test_merge_flip_detections_pairs_and_halves_unpaired() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [30.0, 30.0, 40.0, 40.0]])
    flipped = torch.tensor([[0.0, 0.0, 10.0, 12.0], [60.0, 60.0, 70.0, 70.0], [0.0, 0.0, 10.0, 10.0]])
    b, lab, s = merge_flip_detections(
        boxes,
        torch.tensor([1, 1]),
        torch.tensor([0.9, 0.4]),
        flipped,
        torch.tensor([1, 1, 2]),
        torch.tensor([0.7, 0.6, 0.8]),
    )
    assert b.tolist() == [
        [0.0, 0.0, 10.0, 11.0],
        [30.0, 30.0, 40.0, 40.0],
        [60.0, 60.0, 70.0, 70.0],
        [0.0, 0.0, 10.0, 10.0],
    ]
    assert lab.tolist() == [1, 1, 1, 2]  # the class-2 box does not pair with a class-1 one
    assert s.tolist() == pytest.approx([0.8, 0.2, 0.3, 0.4])
    b, lab, s = merge_flip_detections(EMPTY, EMPTY_LABELS, torch.zeros(0), EMPTY, EMPTY_LABELS, torch.zeros(0))
    assert b.shape == (0, 4) and lab.shape == s.shape == (0,)


def test_select_pseudo_boxes_drops_duplicates_of_annotations() -> None:
    gt = torch.tensor([[0.0, 0.0, 40.0, 40.0]])
    dets = torch.tensor(
        [
            [0.0, 0.0, 40.0, 36.0],  # IoU 0.9 with the annotation: duplicate
            [5.0, 5.0, 15.0, 15.0],  # inside the annotation, same class: duplicate
            [5.0, 5.0, 15.0, 15.0],  # inside, other class: kept
            [60.0, 60.0, 70.0, 70.0],  # elsewhere, above threshold: kept
            [80.0, 80.0, 90.0, 90.0],  # elsewhere, below threshold
        ]
    )
    keep = select_pseudo_boxes(
        dets,
        torch.tensor([1, 1, 2, 1, 2]),
        torch.tensor([0.9, 0.9, 0.9, 0.6, 0.5]),
        torch.tensor([0.0, 0.5, 0.55]),
        gt,
        torch.tensor([1]),
    )
    assert keep.tolist() == [False, False, True, True, False]
    keep = select_pseudo_boxes(
        dets,
        torch.tensor([1, 1, 2, 1, 2]),
        torch.tensor([0.9, 0.9, 0.9, 0.6, 0.5]),
        torch.tensor([0.0, 0.5, 0.55]),
        EMPTY,
        EMPTY_LABELS,
    )
    assert keep.tolist() == [True, True, True, True, False]
