"""The vectorised RoIAlign backward gives torchvision's outputs and gradients."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align

from softsampling.model import build_digits_model
from softsampling.model.roi_align import FastBackwardRoIAlign, bilinear_taps, roi_align_fast_backward


def random_rois(num: int, num_images: int, *, extent: float, seed: int, tiny: bool = False) -> torch.Tensor:
    """RoIs in image pixels, some reaching past the image (and past the one-pixel margin), some tiny."""
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(num, 2, generator=gen, dtype=torch.float64) * (extent + 40) - 20
    wh = torch.rand(num, 2, generator=gen, dtype=torch.float64) * extent * (0.02 if tiny else 0.6)
    batch = torch.randint(0, num_images, (num, 1), generator=gen).double()
    return torch.cat([batch, xy, xy + wh], 1)


@pytest.mark.parametrize("sampling_ratio", [1, 2, 3])
@pytest.mark.parametrize("pooled", [(5, 5), (2, 3), (7, 4)])
@pytest.mark.parametrize("tiny", [False, True])
def test_forward_identical_and_gradient_equal_to_torchvision(sampling_ratio, pooled, tiny):
    gen = torch.Generator().manual_seed(sampling_ratio)
    features = torch.randn(3, 4, 9, 11, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = random_rois(50, 3, extent=88, seed=10 * sampling_ratio + pooled[0], tiny=tiny)
    ours = roi_align_fast_backward(features, rois, pooled, 1 / 8, sampling_ratio)
    theirs = roi_align(features, rois, pooled, 1 / 8, sampling_ratio, aligned=False)
    assert torch.equal(ours, theirs)
    upstream = torch.randn(theirs.shape, generator=gen, dtype=torch.float64)
    (grad_ours,) = torch.autograd.grad(ours, features, upstream)
    (grad_theirs,) = torch.autograd.grad(theirs, features, upstream)
    assert grad_theirs.abs().sum() > 0
    torch.testing.assert_close(grad_ours, grad_theirs, rtol=0, atol=1e-12)


def test_gradcheck_against_finite_differences():
    features = torch.randn(2, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 3.0, 5.0, 30.0, 41.0], [1, -6.0, -6.0, 12.0, 70.0], [1, 50.0, 40.0, 60.0, 47.0]]).double()
    assert torch.autograd.gradcheck(lambda f: roi_align_fast_backward(f, rois, (3, 2), 1 / 8, 2), (features,))


def test_taps_weights_sum_to_one_inside_and_zero_far_outside():
    rois = torch.tensor([[0, 8.0, 8.0, 40.0, 56.0], [0, 200.0, 200.0, 260.0, 260.0]])
    index, weight = bilinear_taps(rois, 1 / 8, (5, 5), 2, 16, 16)
    assert index.shape == weight.shape == (2, 25, 16)
    torch.testing.assert_close(weight[0].sum(1), torch.ones(25))  # 4 samples x 4 taps, each sample sums to 1/4
    assert weight[1].abs().sum() == 0  # every sample is more than a pixel outside the 16x16 map
    assert int(index.min()) >= 0 and int(index.max()) < 16 * 16


def test_no_rois_gives_empty_output_and_zero_gradient():
    features = torch.randn(2, 3, 8, 8, requires_grad=True)
    out = roi_align_fast_backward(features, torch.zeros(0, 5), (5, 5), 1 / 8, 1)
    assert out.shape == (0, 3, 5, 5)
    (grad,) = torch.autograd.grad(out.sum(), features, allow_unused=True)
    assert grad is None or grad.abs().sum() == 0


def test_module_matches_torchvision_module_and_falls_back_for_several_levels():
    gen = torch.Generator().manual_seed(3)
    images = [(128, 128), (128, 128)]
    boxes = [
        torch.tensor([[4.0, 8.0, 60.0, 90.0], [70.0, 10.0, 120.0, 50.0]]),
        torch.tensor([[0.0, 0.0, 128.0, 128.0]]),
    ]
    feat = torch.randn(2, 8, 16, 16, generator=gen, requires_grad=True)
    ours = FastBackwardRoIAlign(featmap_names=["0"], output_size=5, sampling_ratio=1)
    theirs = MultiScaleRoIAlign(featmap_names=["0"], output_size=5, sampling_ratio=1)
    a = ours(OrderedDict([("0", feat)]), boxes, images)
    b = theirs(OrderedDict([("0", feat)]), boxes, images)
    assert torch.equal(a, b)
    ga = torch.autograd.grad(a.square().sum(), feat)[0]
    gb = torch.autograd.grad(b.square().sum(), feat)[0]
    torch.testing.assert_close(ga, gb)
    # two levels: torchvision's own path, same result as its module
    levels = OrderedDict([("0", feat), ("1", torch.randn(2, 8, 8, 8, generator=gen))])
    ours2 = FastBackwardRoIAlign(featmap_names=["0", "1"], output_size=5, sampling_ratio=1)
    theirs2 = MultiScaleRoIAlign(featmap_names=["0", "1"], output_size=5, sampling_ratio=1)
    assert torch.equal(ours2(levels, boxes, images), theirs2(levels, boxes, images))


def test_digits_model_uses_it():
    model = build_digits_model()
    assert isinstance(model.roi_heads.box_roi_pool, FastBackwardRoIAlign)
