"""The five paper strategies, now rule compositions, give exactly the Assignment of the old code.

The reference is a frozen copy of the old ``assign`` (tests/sampling/frozen_assign_v1.py).
"""

from __future__ import annotations

import pytest
import torch

from softsampling.sampling import assign, image_context, resolve_strategy
from tests.sampling import frozen_assign_v1 as old

PAPER_STRATEGIES = ("baseline", "hard_negative", "overlap_soft", "score_soft", "upper_bound")


def random_boxes(gen: torch.Generator, n: int, size: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen) * size
    wh = 2.0 + torch.rand(n, 2, generator=gen) * size / 2
    return torch.cat([xy, xy + wh], dim=1)


def random_case(seed: int) -> tuple[dict, dict]:
    """Inputs (near-duplicates included so every band of IoU occurs) and parameters."""
    gen = torch.Generator().manual_seed(seed)
    num_gt = int(torch.randint(0, 6, (1,), generator=gen))
    gt = random_boxes(gen, num_gt)
    jitter = gt.repeat(4, 1) + torch.randn(4 * num_gt, 4, generator=gen) * 4
    proposals = torch.cat([random_boxes(gen, int(torch.randint(0, 40, (1,), generator=gen))), jitter])
    num_classes = 5
    inputs = {
        "proposals": proposals,
        "gt_boxes": gt,
        "gt_labels": torch.randint(1, num_classes, (num_gt,), generator=gen),
        "group_of": torch.rand(num_gt, generator=gen) < 0.3 if seed % 2 else None,
        "dropped_boxes": torch.cat([random_boxes(gen, 2), proposals[:1] + 1.0]),
        "proposal_scores": torch.softmax(torch.randn(proposals.shape[0], num_classes, generator=gen) * 3, dim=1),
    }
    fg = [0.5, 0.4, 0.7][seed % 3]
    params = {
        "fg_iou": fg,
        "bg_iou": [None, fg * 0.6][seed % 2],
        "group_of_threshold": [0.9, 0.6][seed % 2],
        "min_overlap": fg * float(torch.rand(1, generator=gen)),
        "a": float(torch.rand(1, generator=gen)),
        "b": 50.0 * float(torch.rand(1, generator=gen)),
        "c": 20.0 * float(torch.rand(1, generator=gen)),
        "thresholds": torch.rand(num_classes, generator=gen),
    }
    return inputs, params


def params_for(strategy: str, params: dict) -> dict:
    keys = {
        "baseline": (),
        "hard_negative": ("min_overlap",),
        "overlap_soft": ("a", "b", "c"),
        "score_soft": ("a", "b", "c", "thresholds"),
        "upper_bound": (),
    }[strategy]
    return {k: v for k, v in params.items() if k in ("fg_iou", "bg_iou", "group_of_threshold", *keys)}


@pytest.mark.parametrize("strategy", PAPER_STRATEGIES)
def test_same_assignment_as_the_old_code(strategy: str) -> None:
    for seed in range(40):
        check_case(strategy, seed)


def check_case(strategy: str, seed: int) -> None:
    inputs, all_params = random_case(seed)
    params = params_for(strategy, all_params)
    want = old.assign(
        strategy,
        inputs["proposals"],
        inputs["gt_boxes"],
        inputs["gt_labels"],
        dropped_boxes=inputs["dropped_boxes"],
        proposal_scores=inputs["proposal_scores"],
        group_of=inputs["group_of"],
        **params,
    )
    thresholds = params.pop("thresholds", None)
    got = assign(
        strategy,
        inputs["proposals"],
        inputs["gt_boxes"],
        inputs["gt_labels"],
        dropped_boxes=inputs["dropped_boxes"],
        proposal_scores=inputs["proposal_scores"],
        thresholds=thresholds,
        group_of=inputs["group_of"],
        **params,
    )
    for name in ("labels", "weights", "overlaps", "matched_gt"):
        assert torch.equal(getattr(got, name), getattr(want, name)), (name, strategy, seed)
    assert got.weights.dtype == want.weights.dtype and got.labels.dtype == want.labels.dtype

    # resolved once, applied in two stages as the RoI head does (after-sampling rules on a subset)
    composition = resolve_strategy(strategy, params)
    ctx = image_context(
        inputs["proposals"],
        inputs["gt_boxes"],
        inputs["gt_labels"],
        group_of=inputs["group_of"],
        dropped_boxes=inputs["dropped_boxes"],
        prior_scores=inputs["proposal_scores"],
        thresholds=thresholds,
    )
    staged = composition.assign_after_sampling(composition.assign_before_sampling(ctx), ctx)
    for name in ("labels", "weights", "overlaps", "matched_gt"):  # the old code had no recalibrate field
        assert torch.equal(getattr(staged, name), getattr(want, name)), (name, strategy, seed)


def test_the_cases_cover_every_label_kind() -> None:
    """The random cases above are not vacuous: foreground, background and ignored RoIs all occur."""
    seen = set()
    for seed in range(40):
        inputs, params = random_case(seed)
        a = old.assign(
            "hard_negative",
            inputs["proposals"],
            inputs["gt_boxes"],
            inputs["gt_labels"],
            **params_for("hard_negative", params),
        )
        seen.update({"fg" if v > 0 else "bg" if v == 0 else "ignored" for v in a.labels.tolist()})
    assert seen == {"fg", "bg", "ignored"}
