"""Fig. 3: how likely is a "background" proposal to sit on a missing object, given its overlap?

Take a curated training set (some boxes dropped, listed in its manifest) and a
trained detector. Its RPN proposes regions for a subset of the training
images. A proposal is *background* for training when its overlap ``o`` (max
IoU with any annotated box, any class) is below the foreground threshold 0.5.
It actually lies on a dropped object when its IoU with some dropped box is
>= 0.5. Binning background proposals by ``o`` gives the measured curve

    p(o) = P(on a dropped object | background, overlap o).

Overlap soft sampling weighs a background RoI by the Gompertz curve
``w(o) = a + (1 - a) exp(-b exp(-c o))``. The weight should be low where the
background label is likely wrong, so the natural target for ``w`` is the
probability that the background label is *right*:

    w*(o) = 1 - p(o) = P(truly background | overlap o).

Weighting each background RoI's loss by ``w*(o)`` scales its expected wrong
gradient (it pushes a real object towards background) down to the fraction
of RoIs at that overlap that deserve it. :func:`fit_gompertz` fits ``a, b,
c`` to ``w*`` by least squares weighted by the number of proposals per bin
(the binomial variance of ``p`` shrinks as ``1/n``). The fitted ``a`` is the
probability that a proposal far from every annotation is true background;
the paper's ``a = 0.25`` is deliberately more aggressive than this, because
in the paper's data far-away background RoIs are also plentiful and easy, so
down-weighting them costs little. Report both and choose per dataset.

Example (the fit recovers a known curve):
    >>> o = np.linspace(0, 0.5, 26)
    >>> a, b, c = fit_gompertz(o, gompertz(o, 0.6, 30.0, 15.0))
    >>> round(a, 3), round(b, 1), round(c, 2)
    (0.6, 30.0, 15.0)
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from softsampling.errors import SoftSamplingError

if TYPE_CHECKING:
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

PAPER_ABC = (0.25, 50.0, 20.0)
DEFAULT_EDGES = tuple(round(0.05 * i, 2) for i in range(11))  # 0, 0.05, ..., 0.5


def gompertz(o: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """``a + (1 - a) * exp(-b * exp(-c * o))`` in numpy (same as :func:`softsampling.sampling.gompertz_weight`)."""
    o = np.asarray(o, dtype=np.float64)
    return a + (1.0 - a) * np.exp(-b * np.exp(-c * o))


def fit_gompertz(o: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float, float]:
    """Weighted least-squares fit of ``gompertz(o, a, b, c)`` to ``target``; returns ``(a, b, c)``.

    Bounds: ``0 <= a <= 1``, ``1e-3 <= b <= 1e6``, ``0 <= c <= 500``. ``b`` is
    fitted on a log scale, and several starting points are tried (the curve
    is flat in some directions), keeping the best.
    """
    from scipy.optimize import least_squares

    o = np.asarray(o, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = np.isfinite(y) & (w > 0)
    if keep.sum() < 3:
        raise SoftSamplingError(
            f"only {int(keep.sum())} overlap bins have proposals; at least 3 are needed to fit a, b, c",
            fix="analyse more images (--images) or use a model that proposes more regions",
        )
    o, y, sw = o[keep], y[keep], np.sqrt(w[keep] / w[keep].max())

    def residual(p: np.ndarray) -> np.ndarray:
        return sw * (gompertz(o, p[0], np.exp(p[1]), p[2]) - y)

    best = None
    for a0 in (0.25, 0.5, 0.9):
        for b0 in (5.0, 50.0, 500.0):
            for c0 in (5.0, 20.0, 60.0):
                r = least_squares(
                    residual,
                    x0=[a0, np.log(b0), c0],
                    bounds=([0.0, np.log(1e-3), 0.0], [1.0, np.log(1e6), 500.0]),
                    xtol=1e-12,
                    ftol=1e-12,
                    gtol=1e-12,
                )
                if best is None or r.cost < best.cost:
                    best = r
    assert best is not None
    return float(best.x[0]), float(np.exp(best.x[1])), float(best.x[2])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``float64 [N, M]`` IoU of xyxy boxes (continuous coordinates, no +1); zeros when either side is empty."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def background_overlaps(
    proposals: np.ndarray, annotated: np.ndarray, dropped: np.ndarray, *, fg_iou: float = 0.5, dropped_iou: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """For one image: ``(o, on_dropped)`` of its background proposals.

    ``o`` float64 [K]: max IoU with the annotated boxes (0 without any);
    ``on_dropped`` bool [K]: IoU >= ``dropped_iou`` with some dropped box.
    Background = ``o < fg_iou``.

    >>> props = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 4, 10]], dtype=float)
    >>> o, d = background_overlaps(props, annotated=np.array([[0, 0, 10, 10]]), dropped=np.array([[20, 20, 30, 30]]))
    >>> o.tolist(), d.tolist()  # the first proposal is foreground; the second sits on the dropped box
    ([0.0, 0.4], [True, False])
    """
    o = box_iou(proposals, annotated).max(axis=1) if len(annotated) else np.zeros(len(proposals))
    d = (box_iou(proposals, dropped).max(axis=1) >= dropped_iou) if len(dropped) else np.zeros(len(proposals), bool)
    bg = o < fg_iou
    return o[bg], d[bg]


def overlap_curve(o: np.ndarray, on_dropped: np.ndarray, edges: tuple[float, ...] = DEFAULT_EDGES) -> dict[str, list]:
    """Bin background proposals by overlap: counts, dropped counts and ``P(dropped | bin)`` (``None`` if empty).

    Bins are ``[e_i, e_{i+1})``, the last one closed.

    >>> c = overlap_curve(np.array([0.0, 0.01, 0.3]), np.array([True, False, False]), edges=(0.0, 0.1, 0.5))
    >>> c["count"], c["dropped"], c["p_dropped"]
    ([2, 1], [1, 0], [0.5, 0.0])
    """
    e = np.asarray(edges, dtype=np.float64)
    idx = np.clip(np.searchsorted(e, o, side="right") - 1, 0, len(e) - 2)
    inside = (o >= e[0]) & (o <= e[-1])
    count = np.bincount(idx[inside], minlength=len(e) - 1)
    dropped = np.bincount(idx[inside], weights=on_dropped[inside].astype(np.float64), minlength=len(e) - 1)
    p = [float(d / n) if n else None for d, n in zip(dropped, count, strict=True)]
    return {
        "edges": [float(x) for x in e],
        "centers": [float(x) for x in (e[:-1] + e[1:]) / 2],
        "count": [int(n) for n in count],
        "dropped": [int(d) for d in dropped],
        "p_dropped": p,
    }


@torch.no_grad()
def rpn_proposals(model: GeneralizedRCNN, images: list[torch.Tensor]) -> list[np.ndarray]:
    """Post-NMS RPN proposals (``float32 [P, 4]`` xyxy in original image pixels) of a torchvision two-stage detector.

    ``images``: ``uint8 [3, H, W]``. Uses the detector's own ``transform``,
    ``backbone`` and ``rpn`` in eval mode (the test-time proposal counts).
    """
    from torchvision.models.detection.transform import resize_boxes

    model.eval()
    device = next(model.parameters()).device
    batch = [im.to(device).float().div(255.0) for im in images]
    sizes = [tuple(im.shape[-2:]) for im in batch]
    image_list, _ = model.transform(batch)
    features = model.backbone(image_list.tensors)
    if isinstance(features, torch.Tensor):
        features = OrderedDict([("0", features)])
    proposals, _ = model.rpn(image_list, features)
    return [
        resize_boxes(p, image_list.image_sizes[i], sizes[i]).cpu().numpy().astype(np.float32)
        for i, p in enumerate(proposals)
    ]


@dataclass
class OverlapAnalysis:
    """Result of :func:`analyze_overlap` (JSON-ready via :meth:`to_json`)."""

    curve: dict[str, list]
    fitted: tuple[float, float, float] | None
    paper: tuple[float, float, float]
    images: int
    proposals: int
    background: int
    on_dropped: int

    def to_json(self) -> dict[str, Any]:
        fit = None if self.fitted is None else dict(zip("abc", self.fitted, strict=True))
        return {
            "target": "w*(o) = 1 - P(proposal on a dropped object | background, overlap o)",
            "images": self.images,
            "proposals": self.proposals,
            "background_proposals": self.background,
            "background_on_dropped": self.on_dropped,
            "curve": self.curve,
            "fitted": fit,
            "paper": dict(zip("abc", self.paper, strict=True)),
        }


def analyze_overlap(
    ds: Any,
    dropped: dict[int, np.ndarray],
    model: torch.nn.Module,
    *,
    images: int = 200,
    seed: int = 0,
    batch_size: int = 8,
    edges: tuple[float, ...] = DEFAULT_EDGES,
) -> OverlapAnalysis:
    """Measure ``P(dropped | overlap)`` on ``images`` seeded-random images of the curated dataset ``ds``.

    ``dropped``: image row -> ``float32 [K, 4]`` dropped boxes (see
    :func:`softsampling.engine.data.dropped_by_image`). The curve is fitted
    when at least 3 bins have proposals (else ``fitted`` is ``None``).
    """
    from softsampling.engine.data import load_image

    n = min(images, ds.num_images)
    rows = np.sort(np.random.default_rng(seed).permutation(ds.num_images)[:n])
    all_o, all_d, total = [], [], 0
    for start in range(0, n, batch_size):
        chunk = rows[start : start + batch_size].tolist()
        props = rpn_proposals(model, [load_image(ds.image_path(r)) for r in chunk])
        for r, p in zip(chunk, props, strict=True):
            total += len(p)
            keep = ~(ds.iscrowd[ds.box_indices_of(r)])
            o, d = background_overlaps(p, ds.boxes_of(r)[keep], dropped.get(r, np.zeros((0, 4), np.float32)))
            all_o.append(o)
            all_d.append(d)
    o = np.concatenate(all_o) if all_o else np.zeros(0)
    d = np.concatenate(all_d) if all_d else np.zeros(0, bool)
    curve = overlap_curve(o, d, edges)
    centers = np.array(curve["centers"])
    target = np.array([np.nan if p is None else 1.0 - p for p in curve["p_dropped"]])
    counts = np.array(curve["count"], dtype=np.float64)
    fitted = fit_gompertz(centers, target, counts) if (counts > 0).sum() >= 3 else None
    return OverlapAnalysis(
        curve=curve,
        fitted=fitted,
        paper=PAPER_ABC,
        images=n,
        proposals=total,
        background=int(len(o)),
        on_dropped=int(d.sum()),
    )
