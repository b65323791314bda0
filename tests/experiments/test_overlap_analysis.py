"""Fig. 3 analysis: Gompertz fit, overlap binning, background selection, RPN proposals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from softsampling.experiments.overlap_analysis import (
    background_overlaps,
    box_iou,
    fit_gompertz,
    gompertz,
    overlap_curve,
    rpn_proposals,
)
from softsampling.sampling import gompertz_weight


def test_numpy_gompertz_equals_the_training_weight():
    o = np.linspace(0, 1, 41)
    for a, b, c in [(0.25, 50.0, 20.0), (0.6, 3.0, 7.5)]:
        expected = gompertz_weight(torch.tensor(o, dtype=torch.float64), a, b, c).numpy()
        np.testing.assert_allclose(gompertz(o, a, b, c), expected, rtol=1e-12)
    assert gompertz(np.array([0.0]), 0.25, 50.0, 20.0)[0] == pytest.approx(0.25 + 0.75 * np.exp(-50))


@pytest.mark.parametrize("abc", [(0.25, 50.0, 20.0), (0.7, 10.0, 12.0), (0.4, 200.0, 30.0)])
def test_fit_recovers_exact_curve(abc):
    o = np.linspace(0.0, 0.5, 21)
    a, b, c = fit_gompertz(o, gompertz(o, *abc))
    np.testing.assert_allclose([a, b, c], abc, rtol=1e-3)


def test_fit_recovers_parameters_from_sampled_proposals():
    """Binomial counts per overlap bin, as the analysis measures them, from a known P(background | o)."""
    rng = np.random.default_rng(0)
    true = (0.45, 40.0, 18.0)
    centers = np.arange(0.0125, 0.5, 0.025)
    counts = np.full(len(centers), 20_000)
    counts[:4] = 200_000  # most background proposals lie far from the annotations
    right = rng.binomial(counts, gompertz(centers, *true))
    a, b, c = fit_gompertz(centers, right / counts, counts)
    assert a == pytest.approx(true[0], abs=0.01)
    assert c == pytest.approx(true[2], rel=0.1)
    assert b == pytest.approx(true[1], rel=0.3)
    grid = np.linspace(0, 0.5, 101)
    assert np.max(np.abs(gompertz(grid, a, b, c) - gompertz(grid, *true))) < 0.01


def test_fit_needs_three_bins():
    from softsampling.errors import SoftSamplingError

    with pytest.raises(SoftSamplingError, match="at least 3"):
        fit_gompertz(np.array([0.1, 0.2, 0.3]), np.array([0.5, np.nan, 0.7]))


def test_box_iou_hand_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 1.0, 0.0]])
    assert box_iou(a, np.zeros((0, 4))).shape == (1, 0)


def test_background_overlaps_selects_and_flags():
    annotated = np.array([[0, 0, 10, 10]], dtype=np.float32)
    dropped = np.array([[20, 0, 30, 10]], dtype=np.float32)
    props = np.array(
        [
            [0, 0, 10, 10],  # IoU 1 with annotated: foreground, excluded
            [5, 0, 15, 10],  # IoU 1/3 with annotated: background, not on dropped
            [21, 0, 30, 10],  # IoU 0.9 with dropped, 0 with annotated: background on a dropped object
            [25, 0, 35, 10],  # IoU 1/3 with dropped: below 0.5, not counted as on it
        ],
        dtype=np.float32,
    )
    o, d = background_overlaps(props, annotated, dropped)
    np.testing.assert_allclose(o, [1 / 3, 0.0, 0.0], rtol=1e-6)
    assert d.tolist() == [False, True, False]
    # an image whose annotations were all kept, and one with no annotations at all
    o2, d2 = background_overlaps(props, np.zeros((0, 4)), np.zeros((0, 4)))
    assert o2.tolist() == [0.0] * 4 and d2.tolist() == [False] * 4


def test_overlap_curve_bins_and_probabilities():
    o = np.array([0.0, 0.02, 0.04, 0.06, 0.49, 0.5])
    d = np.array([True, False, True, False, False, True])
    c = overlap_curve(o, d, edges=(0.0, 0.05, 0.1, 0.5))
    assert c["count"] == [3, 1, 0 + 2]  # 0.49 and 0.5 (last bin closed) in [0.1, 0.5]
    assert c["dropped"] == [2, 0, 1]
    assert c["p_dropped"] == [pytest.approx(2 / 3), 0.0, 0.5]
    empty = overlap_curve(np.zeros(0), np.zeros(0, bool), edges=(0.0, 0.25, 0.5))
    assert empty["count"] == [0, 0] and empty["p_dropped"] == [None, None]


def test_rpn_proposals_of_the_digit_model_are_in_image_pixels():
    from softsampling.model import build_digits_model

    torch.manual_seed(0)
    model = build_digits_model(num_classes=11)
    images = [torch.randint(0, 255, (3, 128, 128), dtype=torch.uint8) for _ in range(2)]
    props = rpn_proposals(model, images)
    assert len(props) == 2
    for p in props:
        assert p.dtype == np.float32 and p.ndim == 2 and p.shape[1] == 4
        assert 0 < len(p) <= model.rpn._post_nms_top_n["testing"]
        assert (p[:, 0] >= 0).all() and (p[:, 2] <= 128).all() and (p[:, 2] > p[:, 0]).all()
