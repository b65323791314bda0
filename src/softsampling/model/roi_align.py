"""RoIAlign with a vectorised CPU backward pass, for the small digit models.

torchvision's CPU ``roi_align`` backward loops over RoIs, channels and bins one
element at a time; in the digit model's training step it was a third of the
step's time (25 ms of 85 ms at batch 8, 128 RoIs per image, 64 channels, 5x5
bins: ``bench/train_step_speed.py``). :class:`FastBackwardRoIAlign` keeps
torchvision's forward (same outputs, bit for bit) and computes the gradient
with one ``index_add_`` over precomputed bilinear weights. The math is that of
torchvision's kernel (``aligned=False``, a fixed ``sampling_ratio``); only the
order of the floating-point sums differs.

It is used on the CPU for a single feature map with a fixed sampling ratio;
everything else (CUDA, FPN levels, adaptive sampling) goes to torchvision.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import _convert_to_roi_format, _filter_input, _setup_scales


def _steps(count: int, size: Tensor) -> Tensor:
    """``[K, count]``: ``i * size`` for bin i of each RoI."""
    return torch.arange(count, dtype=size.dtype, device=size.device) * size[:, None]


def bilinear_taps(
    rois: Tensor, spatial_scale: float, pooled: tuple[int, int], sampling_ratio: int, height: int, width: int
) -> tuple[Tensor, Tensor]:
    """Where RoIAlign (``aligned=False``) reads the feature map, and with what weight.

    Args:
        rois: ``[K, 5]`` rows of (batch index, x1, y1, x2, y2) in image pixels.
        spatial_scale: feature-map pixels per image pixel.
        pooled: output bins (height, width).
        sampling_ratio: bilinear samples per bin side (> 0).
        height, width: feature-map size.

    Returns:
        ``(index, weight)``, both ``[K, PH * PW, T]`` with ``T = 4 * sampling_ratio**2``
        taps per bin: the flat position ``b * H * W + y * W + x`` of each tap and
        its weight, already divided by the number of samples per bin. A sample
        more than one pixel outside the map has weight 0, as in torchvision.
    """
    ph, pw = pooled
    g = sampling_ratio
    dtype = rois.dtype
    batch = rois[:, 0].long()
    x1, y1 = rois[:, 1] * spatial_scale, rois[:, 2] * spatial_scale
    roi_w = (rois[:, 3] * spatial_scale - x1).clamp(min=1.0)
    roi_h = (rois[:, 4] * spatial_scale - y1).clamp(min=1.0)
    bin_h, bin_w = roi_h / ph, roi_w / pw
    # sample coordinates as torchvision's kernel computes them: [K, PH, G] and [K, PW, G]
    grid = torch.arange(g, dtype=dtype, device=rois.device) + 0.5
    y = y1[:, None, None] + _steps(ph, bin_h)[:, :, None] + grid * bin_h[:, None, None] / g
    x = x1[:, None, None] + _steps(pw, bin_w)[:, :, None] + grid * bin_w[:, None, None] / g

    def axis(v: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        valid = (v >= -1.0) & (v <= size)
        v = v.clamp(min=0.0)
        low = v.long()
        top = low >= size - 1
        low = torch.where(top, size - 1, low)
        high = torch.where(top, size - 1, low + 1)
        v = torch.where(top, low.to(dtype), v)
        frac = v - low.to(dtype)
        return low, high, 1.0 - frac, frac, valid

    y_lo, y_hi, y_wlo, y_whi, y_ok = axis(y, height)  # [K, PH, G]
    x_lo, x_hi, x_wlo, x_whi, x_ok = axis(x, width)  # [K, PW, G]
    # taps of sample (iy, ix) in bin (i, j): [K, PH, PW, G, G] for each of the 4 corners
    ok = (y_ok[:, :, None, :, None] & x_ok[:, None, :, None, :]).to(dtype) / (g * g)
    base = (batch * height * width)[:, None, None, None, None]
    index = []
    weight = []
    for yy, wy in ((y_lo, y_wlo), (y_hi, y_whi)):
        for xx, wx in ((x_lo, x_wlo), (x_hi, x_whi)):
            index.append(base + yy[:, :, None, :, None] * width + xx[:, None, :, None, :])
            weight.append(wy[:, :, None, :, None] * wx[:, None, :, None, :] * ok)
    k = rois.shape[0]
    return (
        torch.stack(index, -1).reshape(k, ph * pw, 4 * g * g),
        torch.stack(weight, -1).reshape(k, ph * pw, 4 * g * g),
    )


class _RoIAlignFastBackward(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, features: Tensor, rois: Tensor, spatial_scale: float, pooled: tuple[int, int], sampling_ratio: int
    ) -> Tensor:
        ctx.save_for_backward(rois)
        ctx.spatial_scale, ctx.pooled, ctx.sampling_ratio = spatial_scale, pooled, sampling_ratio
        ctx.features_shape = features.shape
        return roi_align(features, rois, pooled, spatial_scale, sampling_ratio, aligned=False)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        (rois,) = ctx.saved_tensors
        n, c, h, w = ctx.features_shape
        index, weight = bilinear_taps(rois, ctx.spatial_scale, ctx.pooled, ctx.sampling_ratio, h, w)
        k, bins, taps = index.shape
        # tap t of bin b receives grad_out[:, :, b] times its weight; one index_add_ per tap keeps the
        # temporaries at [K * bins, C]
        per_bin = grad_out.reshape(k, c, bins).transpose(1, 2).reshape(k * bins, c)
        weight = weight.to(grad_out.dtype)
        grad = grad_out.new_zeros(n * h * w, c)
        for t in range(taps):
            grad.index_add_(0, index[:, :, t].reshape(-1), per_bin * weight[:, :, t].reshape(-1, 1))
        return grad.reshape(n, h, w, c).permute(0, 3, 1, 2).contiguous(), None, None, None, None


def roi_align_fast_backward(
    features: Tensor, rois: Tensor, pooled: tuple[int, int], spatial_scale: float, sampling_ratio: int
) -> Tensor:
    """``torchvision.ops.roi_align(..., aligned=False)`` with the vectorised backward above."""
    return _RoIAlignFastBackward.apply(features, rois, spatial_scale, pooled, sampling_ratio)


class FastBackwardRoIAlign(MultiScaleRoIAlign):
    """``MultiScaleRoIAlign`` that uses :func:`roi_align_fast_backward` on the CPU for one feature map.

    Same constructor, outputs and (parameter-free) state as torchvision's module;
    any other case falls back to it.
    """

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        x_filtered = _filter_input(x, self.featmap_names)
        if len(x_filtered) != 1 or x_filtered[0].device.type != "cpu" or self.sampling_ratio <= 0:
            return super().forward(x, boxes, image_shapes)
        scales: list[float] | None = self.scales  # type: ignore[has-type]  # untyped in torchvision
        if scales is None or self.map_levels is None:  # type: ignore[has-type]
            scales, self.map_levels = _setup_scales(
                x_filtered, image_shapes, self.canonical_scale, self.canonical_level
            )
            self.scales = scales
        rois = _convert_to_roi_format(boxes)
        pooled = (int(self.output_size[0]), int(self.output_size[1]))
        return roi_align_fast_backward(x_filtered[0], rois, pooled, scales[0], self.sampling_ratio)
