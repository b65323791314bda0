"""Score-threshold sweep: mAP after discarding detections below each threshold.

The paper's Fig. 2: a detector trained with missing labels keeps its ranking
but lowers its scores, so its mAP falls faster than a fully supervised one's as
the threshold rises. :func:`score_threshold_sweep` computes one such curve with
any metric; :func:`plot_sweep` draws several curves into one PNG. The VOC,
COCO and Open Images metrics match the detections once for the whole curve
(see :func:`sweep_results`), so a 10-threshold sweep costs little more than
one evaluation.

Example:
    >>> from functools import partial
    >>> from softsampling.structures.records import Category, DetectionDataset
    >>> from softsampling.structures.detections import Detections
    >>> from softsampling.evaluation.voc_metric import voc_ap
    >>> gt = DetectionDataset.from_lists(
    ...     images=[{"id": 0, "file_name": "a.jpg", "width": 50, "height": 50}],
    ...     boxes=[
    ...         {"image_index": 0, "bbox": [0, 0, 10, 10], "label": 1},
    ...         {"image_index": 0, "bbox": [20, 20, 30, 30], "label": 1},
    ...     ],
    ...     categories=[Category(1, "cat")],
    ... )
    >>> dets = Detections([0, 0], [[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1], [0.9, 0.3])
    >>> score_threshold_sweep(gt, dets, [0.0, 0.5, 0.95], voc_ap)
    [(0.0, 1.0), (0.5, 0.5), (0.95, 0.0)]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from softsampling.errors import SoftSamplingError
from softsampling.io import atomic_write
from softsampling.structures.detections import Detections
from softsampling.structures.records import DetectionDataset

MAX_THRESHOLDS = 1001  # 0:1:0.001 still fits; each threshold re-runs the metric, so 0:1:1e-7 would be 10 million runs
MetricFn = Callable[[DetectionDataset, Detections], Mapping[str, Any]]


def score_threshold_sweep(
    gt: DetectionDataset,
    dets: Detections,
    thresholds: Sequence[float],
    metric_fn: MetricFn,
) -> list[tuple[float, float]]:
    """``[(threshold, mAP), ...]``: ``metric_fn(gt, dets.above(threshold))["mAP"]`` per threshold.

    Detections with ``score >= threshold`` are kept. ``metric_fn`` is any
    metric returning a dict with ``"mAP"`` (bind options with
    ``functools.partial``, e.g. ``partial(voc_ap, use_07_metric=True)``).
    """
    results = sweep_results(gt, dets, thresholds, metric_fn)
    return [(float(t), float(r["mAP"])) for t, r in zip(thresholds, results, strict=True)]


def sweep_results(
    gt: DetectionDataset,
    dets: Detections,
    thresholds: Sequence[float],
    metric_fn: MetricFn,
) -> Sequence[Mapping[str, Any]]:
    """``[metric_fn(gt, dets.above(t)) for t in thresholds]``, the full result per threshold.

    The package's metrics (:func:`voc_ap`, :func:`coco_metric`,
    :func:`openimages_metric`, plain or as a ``functools.partial`` with
    keyword options) match the detections once and re-score each threshold
    from those matches, with the same numbers as evaluating each threshold
    from scratch: a threshold keeps a prefix of every ranking, and each
    metric matches a detection using only the detections ranked above it.
    Any other callable is called once per threshold.
    """
    func, keywords = metric_fn, {}
    if isinstance(metric_fn, partial) and not metric_fn.args:
        func, keywords = metric_fn.func, dict(metric_fn.keywords)
    sweep_fn = _sweeps().get(func)
    if sweep_fn is None:
        return [metric_fn(gt, dets.above(float(t))) for t in thresholds]
    return sweep_fn(gt, dets, [float(t) for t in thresholds], **keywords)


def _sweeps() -> dict[Callable[..., Any], Callable[..., list[dict[str, Any]]]]:
    """Each metric of the package -> its threshold sweep (same keyword options, thresholds third)."""
    from softsampling.evaluation.coco_metric import coco_metric, coco_metric_sweep
    from softsampling.evaluation.openimages_metric import openimages_metric, openimages_metric_sweep
    from softsampling.evaluation.voc_metric import voc_ap, voc_ap_sweep

    return {voc_ap: voc_ap_sweep, coco_metric: coco_metric_sweep, openimages_metric: openimages_metric_sweep}


def parse_thresholds(text: str) -> list[float]:
    """Parse ``"start:stop:step"`` (stop included) or a comma list ``"0,0.5,0.9"``.

    >>> parse_thresholds("0:0.3:0.1")
    [0.0, 0.1, 0.2, 0.3]
    >>> parse_thresholds("0.5, 0.7")
    [0.5, 0.7]
    """
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if not all(np.isfinite((start, stop, step))) or step <= 0 or stop < start:
                raise ValueError
            span = (stop - start) / step  # inf when the step underflows: counted as too many below
            n = int(np.floor(span + 1e-9)) + 1 if span < 1e12 else 10**12
            values = None
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
            if not all(np.isfinite(values)):
                raise ValueError
            n = len(values)
    except ValueError:
        raise SoftSamplingError(
            f"cannot read score thresholds {text!r}",
            fix="write start:stop:step with step > 0 (e.g. 0:0.9:0.1) or a comma list (e.g. 0,0.5,0.9)",
        ) from None
    if n > MAX_THRESHOLDS:
        raise SoftSamplingError(
            f"score thresholds {text!r} give {n} thresholds, more than {MAX_THRESHOLDS} (each is a full evaluation)",
            fix="use a larger step, e.g. 0:1:0.01 (101 thresholds)",
        )
    if values is not None:
        return values
    return [round(start + k * step, 10) for k in range(n)]


def plot_sweep(curves: Mapping[str, Sequence[tuple[float, float]]], path: str | Path, title: str) -> None:
    """Draw ``{label: [(threshold, mAP), ...]}`` as lines (mAP in %) into a PNG at ``path`` (atomically)."""
    # A bare Figure draws with the Agg canvas and touches no global pyplot state.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.subplots()
    for label, curve in curves.items():
        ax.plot([t for t, _ in curve], [100.0 * m for _, m in curve], marker="o", markersize=3, label=label)
    ax.set_xlabel("detection score threshold")
    ax.set_ylabel("mAP (%)")
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend()
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
