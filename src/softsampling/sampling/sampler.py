"""Sampling: which of the assigned RoIs of one image train in this step.

Two modes:

- ``balanced`` (torchvision's ``BalancedPositiveNegativeSampler``): at most
  ``batch_size_per_image`` RoIs (512), of which at most ``positive_fraction``
  (25%) foreground, filled up with background; chosen uniformly at random
  among the non-ignored RoIs. With ``generator=None`` it draws from the global
  torch RNG with exactly the calls torchvision makes, so a seeded run samples
  the same RoIs as stock torchvision.
- ``all``: every non-ignored RoI, as the authors' public code does (all 300
  post-NMS proposals plus the ground-truth boxes).

Hard-negative mining as in the paper ("generate 6000 proposals, keep the top
300 that overlap an annotation by more than the threshold") is
:func:`keep_first_candidates` applied to the RPN proposals, which torchvision's
RPN returns ordered by objectness, before sampling.
"""

from __future__ import annotations

import torch
from torch import Tensor

SAMPLING_MODES: tuple[str, ...] = ("balanced", "all")


def sample_rois(
    labels: Tensor,
    mode: str = "balanced",
    *,
    batch_size_per_image: int = 512,
    positive_fraction: float = 0.25,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Indices of the RoIs of one image that train in this step.

    Args:
        labels: int64 [N], as from :func:`~softsampling.sampling.assign`:
            ``> 0`` foreground, ``0`` background, ``-1`` ignored (never sampled).
        mode: ``balanced`` or ``all`` (see the module docstring).
        batch_size_per_image, positive_fraction: ``balanced`` mode only.
        generator: torch RNG for ``balanced`` mode; ``None`` uses the global RNG.

    Returns:
        int64 [S] indices into ``labels``, sorted ascending.

    Example:
        >>> labels = torch.tensor([1, 0, 0, -1, 2, 0])
        >>> sample_rois(labels, "all").tolist()
        [0, 1, 2, 4, 5]
        >>> sample_rois(
        ...     labels, batch_size_per_image=4, positive_fraction=0.25, generator=torch.Generator().manual_seed(0)
        ... ).numel()
        4
    """
    if mode not in SAMPLING_MODES:
        raise ValueError(f"unknown sampling mode {mode!r}; choose one of {', '.join(SAMPLING_MODES)}")
    if mode == "all":
        return torch.where(labels >= 0)[0]
    if batch_size_per_image < 1 or not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(
            f"balanced sampling needs batch_size_per_image >= 1 and positive_fraction in [0, 1], "
            f"got {batch_size_per_image} and {positive_fraction}"
        )
    positive = torch.where(labels >= 1)[0]
    negative = torch.where(labels == 0)[0]
    num_pos = min(positive.numel(), int(batch_size_per_image * positive_fraction))
    num_neg = min(negative.numel(), batch_size_per_image - num_pos)
    # Same draws, in the same order, as torchvision's sampler (positives first).
    pos_pick = torch.randperm(positive.numel(), generator=generator, device=_rng_device(labels, generator))
    neg_pick = torch.randperm(negative.numel(), generator=generator, device=_rng_device(labels, generator))
    chosen = torch.cat([positive[pos_pick[:num_pos].to(labels.device)], negative[neg_pick[:num_neg].to(labels.device)]])
    return chosen.sort().values


def _rng_device(labels: Tensor, generator: torch.Generator | None) -> torch.device:
    return labels.device if generator is None else generator.device


def keep_first_candidates(labels: Tensor, k: int) -> Tensor:
    """Keep only the first ``k`` non-ignored RoIs; mark the later ones ignored (-1).

    With RoIs ordered by RPN objectness and labels from the ``hard_negative``
    strategy (background below ``min_overlap`` already ignored), this is the
    paper's "keep the top 300 that overlap an annotation by more than the
    threshold" out of 6000 proposals.

    Args:
        labels: int64 [N] (``-1`` ignored).
        k: how many candidates to keep (>= 0).

    Returns:
        int64 [N], a new tensor.

    Example:
        >>> keep_first_candidates(torch.tensor([0, -1, 3, 0, 0]), 2).tolist()
        [0, -1, 3, -1, -1]
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    candidate = labels >= 0
    rank = torch.cumsum(candidate.to(torch.int64), dim=0)
    return torch.where(candidate & (rank > k), torch.full_like(labels, -1), labels)
