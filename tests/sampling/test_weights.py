"""Gompertz weight curves: hand-computed values and invariants."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softsampling.sampling import gompertz_weight, median_thresholds, score_weight


def gompertz_by_hand(x: float, a: float = 0.25, b: float = 50.0, c: float = 20.0) -> float:
    return a + (1 - a) * math.exp(-b * math.exp(-c * x))


@pytest.mark.parametrize("o", [0.0, 0.1, 0.2, 0.3, 0.5, 1.0])
def test_gompertz_matches_paper_formula(o: float) -> None:
    got = gompertz_weight(torch.tensor([o])).item()
    assert got == pytest.approx(gompertz_by_hand(o), abs=1e-6)


def test_gompertz_paper_shape() -> None:
    w = gompertz_weight(torch.tensor([0.0, 0.2, 0.5]))
    # weight ~a far from every annotation, ~1 for hard negatives near 0.5
    assert w[0].item() == pytest.approx(0.25, abs=1e-9)
    assert w[1].item() == pytest.approx(0.5501527, abs=1e-6)
    assert w[2].item() == pytest.approx(0.9982994, abs=1e-6)


def test_gompertz_parameters_and_dtype() -> None:
    w = gompertz_weight(torch.tensor([0.1], dtype=torch.float64), a=0.5, b=10.0, c=5.0)
    assert w.dtype == torch.float64
    assert w.item() == pytest.approx(gompertz_by_hand(0.1, 0.5, 10.0, 5.0), rel=1e-12)
    assert gompertz_weight(torch.tensor([0, 1])).dtype == torch.float32


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30),
    st.floats(0.0, 1.0),
    st.floats(0.0, 100.0),
    st.floats(0.0, 50.0),
)
def test_gompertz_in_range_and_monotone(overlaps: list[float], a: float, b: float, c: float) -> None:
    o = torch.tensor(sorted(overlaps), dtype=torch.float64)
    w = gompertz_weight(o, a, b, c)
    assert bool((w >= a - 1e-12).all()) and bool((w <= 1 + 1e-12).all())
    assert bool((w[1:] >= w[:-1] - 1e-12).all())


def test_score_weight_formula() -> None:
    s = torch.tensor([0.1, 0.5, 0.9])
    t = torch.tensor([0.5, 0.5, 0.3])
    got = score_weight(s, t)
    want = [gompertz_by_hand(tt - ss) for ss, tt in zip(s.tolist(), t.tolist(), strict=True)]
    assert got.tolist() == pytest.approx(want, abs=1e-6)
    # scalar threshold broadcasts; far above T -> a, far below T -> ~1
    w = score_weight(torch.tensor([1.0, 0.0]), 0.6)
    assert w.tolist() == pytest.approx([0.25, 0.99977], abs=1e-5)
    assert w[1].item() == pytest.approx(gompertz_by_hand(0.6), abs=1e-7)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=20), st.floats(0.0, 1.0))
def test_score_weight_non_increasing_in_score(scores: list[float], threshold: float) -> None:
    s = torch.tensor(sorted(scores), dtype=torch.float64)
    w = score_weight(s, threshold)
    assert bool((w[1:] <= w[:-1] + 1e-12).all())
    assert bool((w >= 0.25 - 1e-12).all()) and bool((w <= 1.0 + 1e-12).all())


def test_median_thresholds() -> None:
    scores = torch.tensor([0.2, 0.9, 0.6, 0.3, 0.4, 0.8])
    labels = torch.tensor([1, 1, 1, 2, 2, 1])
    t = median_thresholds(scores, labels, num_classes=4, default=0.7)
    # class 1: median of 0.2, 0.6, 0.8, 0.9 = 0.7; class 2: 0.35; class 3 and background: default
    assert t.tolist() == pytest.approx([0.7, 0.7, 0.35, 0.7])
    with pytest.raises(ValueError, match="1..3"):
        median_thresholds(scores, torch.tensor([0, 1, 1, 1, 1, 1]), num_classes=4)
