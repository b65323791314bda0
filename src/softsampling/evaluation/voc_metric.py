"""PASCAL VOC detection metric: per-class AP and mAP, exactly as the devkit computes it.

Reference: the official VOC devkit (MATLAB ``VOCevaldet.m`` and ``VOCap.m``,
VOC2012 release), which py-faster-rcnn's ``voc_eval.py`` and the Cartucho/mAP
tool port to Python. Rules, per class:

1. Detections of the class are sorted by score, highest first. Ties keep the
   input order (a stable sort, as MATLAB's ``sort``): the detection that comes
   first in :class:`Detections` is processed first.
2. Each detection is compared with *every* ground-truth box of its class in its
   image (difficult ones included) and takes the one with the largest IoU (on
   an IoU tie, the box that comes first in the dataset). Boxes must overlap
   with positive width and height to count at all.
3. If that IoU is ``>= iou_threshold`` (the MATLAB devkit's ``>=``;
   py-faster-rcnn uses ``>``, which differs only when the IoU equals the
   threshold exactly):
   - the box is ``difficult``: the detection is ignored (neither TP nor FP);
   - the box is not yet matched: true positive, the box is now matched;
   - the box is already matched: false positive (a duplicate). The devkit does
     *not* fall back to the second-best box.
   Otherwise the detection is a false positive.
4. Precision/recall over the ranked list; recall is divided by the number of
   non-difficult ground-truth boxes ``num_gt``.
   - ``voc07`` (``use_07_metric=True``): 11-point interpolated AP, the mean over
     ``t in {0, 0.1, ..., 1}`` of the best precision at recall ``>= t``. The
     points are ``np.arange(0, 1.1, 0.1)``, as in py-faster-rcnn's
     ``voc_eval.py``, detectron2 and mmdetection: its 0.3, 0.6 and 0.7 are a
     hair larger than the decimals (0.30000000000000004, ...), so a recall of
     exactly 3/10, 6/10 or 7/10 does not reach them.
   - ``voc07_exact`` (``use_07_metric=True, exact_tenths=True``): the same at
     the exact decimals ``k / 10``. It differs from ``voc07`` only when a
     class's recall equals 0.3, 0.6 or 0.7 exactly (e.g. 3 of 10 boxes found),
     and then it is higher.
   - ``voc`` (VOC2010+): area under the precision envelope (precision made
     monotone non-increasing in recall), summed where the recall changes.
5. ``mAP`` is the mean AP over classes with at least one non-difficult box.

Pixel convention. The devkit stores 1-based *inclusive* pixel indices and adds
1 to every width and height (``iw = min(x2) - max(x1) + 1``). Our boxes are
continuous ``xyxy`` pixel coordinates; the VOC and txt-layout readers map an
inclusive box ``(xmin, ymin, xmax, ymax)`` to ``(xmin - 1, ymin - 1, xmax,
ymax)``, the pixels it covers. On those boxes the plain continuous IoU computed
here equals the devkit's ``+1`` IoU on the file's numbers, bit for bit for
integer coordinates, so the ``+1`` lives in the reader and never twice.
Detections given as continuous coordinates (COCO results JSON, our CSV, model
output) need no conversion.

Speed. Rule 2 picks a detection's box regardless of what is already matched,
so matching needs no sequential loop: a detection is a TP exactly when its IoU
passes, its box is not difficult, and no higher-ranked detection picked the
same box. Everything below is numpy over (detection, box) pairs of the same
image and class; Python loops run over classes and thresholds only.

Example (one image, one "cat"; a duplicate and a miss):
    >>> import numpy as np
    >>> from softsampling.structures.records import Category, DetectionDataset
    >>> from softsampling.structures.detections import Detections
    >>> gt = DetectionDataset.from_lists(
    ...     images=[{"id": "a", "file_name": "a.jpg", "width": 100, "height": 100}],
    ...     boxes=[
    ...         {"image_index": 0, "bbox": [0, 0, 10, 10], "label": 1},
    ...         {"image_index": 0, "bbox": [50, 50, 60, 60], "label": 1},
    ...     ],
    ...     categories=[Category(1, "cat")],
    ... )
    >>> dets = Detections(image_index=[0, 0], boxes=[[0, 0, 10, 10], [1, 0, 10, 10]], labels=[1, 1], scores=[0.9, 0.8])
    >>> r = voc_ap(gt, dets)
    >>> r["mAP"], r["per_class"][1]["num_gt"], r["per_class"][1]["num_det"]
    (0.5, 2, 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from softsampling.errors import SoftSamplingError
from softsampling.structures.detections import Detections
from softsampling.structures.records import DetectionDataset

# Largest number of (detection, box) pairs held in memory at once.
_PAIR_CHUNK = 4_000_000
# The 11 recall points of voc07: py-faster-rcnn's, detectron2's and mmdetection's np.arange(0, 1.1, 0.1).
ELEVEN_POINTS = np.arange(0.0, 1.1, 0.1)
# The 11 recall points of voc07_exact: the decimals k / 10.
ELEVEN_POINTS_EXACT = np.array([k / 10 for k in range(11)])


def voc_ap(
    gt: DetectionDataset,
    dets: Detections,
    *,
    iou_thresholds: Sequence[float] = (0.5,),
    use_07_metric: bool = False,
    exact_tenths: bool = False,
) -> dict[str, Any]:
    """VOC AP per class and mAP at one or more IoU thresholds (see the module docstring).

    Args:
        gt: ground truth; ``difficult`` boxes are ignored as the devkit does.
        dets: detections; ``image_index`` are row indices of ``gt``, ``labels``
            its category ids.
        iou_thresholds: each in ``[0, 1]``; all are computed in one call.
        use_07_metric: 11-point interpolated AP (VOC2007) instead of the area
            under the precision envelope (VOC2010+), at the recall points of
            py-faster-rcnn, detectron2 and mmdetection (:data:`ELEVEN_POINTS`).
        exact_tenths: with ``use_07_metric``, sample at the exact decimals
            ``k / 10`` instead (:data:`ELEVEN_POINTS_EXACT`, metric ``voc07_exact``).

    Returns:
        ``{"metric": "voc"|"voc07"|"voc07_exact", "iou_thresholds": [t, ...],
        "mAP": mAP at the first threshold, "mAP_per_iou": [mAP per threshold],
        "per_class": {category_id: {"name", "ap", "ap_per_iou", "num_gt", "num_det"}}}``.
        ``num_gt`` counts non-difficult boxes, ``num_det`` all detections of the
        class. Classes without non-difficult boxes get ``ap = None`` and are left
        out of the mean. All numbers are plain Python ``float``/``int``.
    """
    return voc_ap_sweep(
        gt, dets, None, iou_thresholds=iou_thresholds, use_07_metric=use_07_metric, exact_tenths=exact_tenths
    )[0]


def voc_ap_sweep(
    gt: DetectionDataset,
    dets: Detections,
    score_thresholds: Sequence[float] | None,
    *,
    iou_thresholds: Sequence[float] = (0.5,),
    use_07_metric: bool = False,
    exact_tenths: bool = False,
) -> list[dict[str, Any]]:
    """``[voc_ap(gt, dets.above(s), ...) for s in score_thresholds]``, matching the detections once.

    A score threshold keeps a prefix of each class's ranking, and matching a
    detection depends only on the detections ranked above it, so every
    threshold reuses the full set's matches. ``None``: one result, all detections.
    """
    if exact_tenths and not use_07_metric:
        raise SoftSamplingError("exact_tenths applies to the 11-point AP only", fix="pass use_07_metric=True too")
    thresholds = [float(t) for t in iou_thresholds]
    if not thresholds or any(not 0.0 <= t <= 1.0 for t in thresholds):
        raise SoftSamplingError(f"IoU thresholds must lie in [0, 1], got {thresholds}", fix="pass e.g. --iou 0.5,0.75")
    _check_image_index(gt, dets)

    class_ids = _class_ids(gt, dets)
    gt_cls = np.searchsorted(class_ids, gt.labels)
    det_cls = np.searchsorted(class_ids, dets.labels)
    num_classes = len(class_ids)
    num_gt = np.bincount(gt_cls[~gt.difficult], minlength=num_classes)

    # Rank detections: by class, then score descending, then input order (stable).
    order = np.lexsort((np.arange(len(dets)), -dets.scores.astype(np.float64), det_cls))
    sorted_cls = det_cls[order]
    best_iou, best_box = _best_overlaps(gt, gt_cls, dets, det_cls, order, num_classes)
    class_start = np.searchsorted(sorted_cls, np.arange(num_classes + 1))

    has_gt = num_gt > 0
    if not has_gt.any():
        raise SoftSamplingError(
            "the ground truth has no non-difficult boxes, so VOC mAP is undefined",
            fix="evaluate on a split that has annotated objects",
        )
    in_gt = np.isin(class_ids, _class_ids(gt, Detections.empty()))
    assigned = [_assign(best_iou, best_box, gt.difficult, threshold) for threshold in thresholds]
    results = []
    for score in [None] if score_thresholds is None else score_thresholds:
        kept = np.ones(len(dets), dtype=bool) if score is None else dets.scores >= float(score)  # as dets.above
        kept_ranked = kept[order]
        ap = np.full((len(thresholds), num_classes), np.nan)
        for ti, (tp, ignored) in enumerate(assigned):
            for c in range(num_classes):
                if num_gt[c] == 0:
                    continue
                lo, hi = class_start[c], class_start[c + 1]
                keep = ~ignored[lo:hi] & kept_ranked[lo:hi]
                ap[ti, c] = average_precision(
                    tp[lo:hi][keep], int(num_gt[c]), use_07_metric=use_07_metric, exact_tenths=exact_tenths
                )
        num_det = np.bincount(det_cls[kept], minlength=num_classes)
        listed = in_gt | (num_det > 0)  # the classes _class_ids(gt, dets.above(score)) would list
        results.append(
            _voc_result(
                gt,
                class_ids[listed],
                ap[:, listed],
                num_gt[listed],
                num_det[listed],
                thresholds,
                use_07_metric,
                exact_tenths,
            )
        )
    return results


def _voc_result(
    gt: DetectionDataset,
    class_ids: np.ndarray,
    ap: np.ndarray,
    num_gt: np.ndarray,
    num_det: np.ndarray,
    thresholds: list[float],
    use_07_metric: bool,
    exact_tenths: bool,
) -> dict[str, Any]:
    has_gt = num_gt > 0
    maps = [float(np.mean(ap[ti, has_gt])) for ti in range(len(thresholds))]
    names = gt.category_names
    per_class = {}
    for c, cid in enumerate(class_ids.tolist()):
        per_iou = [float(a) for a in ap[:, c]] if has_gt[c] else [None] * len(thresholds)
        per_class[cid] = {
            "name": names.get(cid, str(cid)),
            "ap": per_iou[0],
            "ap_per_iou": per_iou,
            "num_gt": int(num_gt[c]),
            "num_det": int(num_det[c]),
        }
    return {
        "metric": ("voc07_exact" if exact_tenths else "voc07") if use_07_metric else "voc",
        "iou_thresholds": thresholds,
        "mAP": maps[0],
        "mAP_per_iou": maps,
        "per_class": per_class,
    }


def average_precision(tp: np.ndarray, num_gt: int, *, use_07_metric: bool = False, exact_tenths: bool = False) -> float:
    """AP of one class from its ranked detections.

    ``tp``: bool [n], true positive flags in rank order (ignored detections
    already removed; every other detection is a false positive). ``num_gt`` > 0.
    ``use_07_metric``: 11-point AP at :data:`ELEVEN_POINTS`, or at
    :data:`ELEVEN_POINTS_EXACT` with ``exact_tenths``.

    >>> round(average_precision(np.array([True, False, True]), 4), 6)  # (P, R): (1, .25) (.5, .25) (.667, .5)
    0.416667
    >>> round(average_precision(np.array([True, False, True]), 4, use_07_metric=True), 6)
    0.454545
    """
    tp_cum = np.cumsum(tp, dtype=np.float64)
    fp_cum = np.cumsum(~np.asarray(tp, dtype=bool), dtype=np.float64)
    recall = tp_cum / num_gt
    precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
    if use_07_metric:
        # Sum first, divide once: eleven 1/11 terms would add up to 1.0000000000000002.
        points = ELEVEN_POINTS_EXACT if exact_tenths else ELEVEN_POINTS
        best = [precision[recall >= t].max() if (recall >= t).any() else 0.0 for t in points]
        return float(sum(best) / 11)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def box_iou_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of row ``i`` of ``a`` with row ``i`` of ``b`` (both [P, 4] xyxy), float64 [P].

    Pairs that do not overlap with positive width *and* height get ``-inf``
    (the devkit skips them), so any threshold in [0, 1] rejects them.
    """
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    overlap = (iw > 0) & (ih > 0)
    inter = iw * ih
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.where(overlap, iou, -np.inf)


# ----------------------------------------------------------------- internals
def _class_ids(gt: DetectionDataset, dets: Detections) -> np.ndarray:
    """Sorted category ids: the dataset's categories plus any label seen in boxes or detections."""
    ids = np.array([c.id for c in gt.categories], dtype=np.int64)
    return np.unique(np.concatenate([ids, gt.labels, dets.labels]))


def _check_image_index(gt: DetectionDataset, dets: Detections) -> None:
    if len(dets) and (dets.image_index.min() < 0 or dets.image_index.max() >= gt.num_images):
        bad = int(np.flatnonzero((dets.image_index < 0) | (dets.image_index >= gt.num_images))[0])
        raise SoftSamplingError(
            f"detection {bad} refers to image row {int(dets.image_index[bad])}, "
            f"but the ground truth has {gt.num_images} images",
            fix="read detections with softsampling.evaluation.io against the same ground truth",
        )


def _best_overlaps(
    gt: DetectionDataset,
    gt_cls: np.ndarray,
    dets: Detections,
    det_cls: np.ndarray,
    order: np.ndarray,
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """For each ranked detection ``order[k]``: its best IoU and the box row achieving it.

    Returns ``best_iou`` float64 [D] (``-inf`` when nothing overlaps) and
    ``best_box`` int64 [D] (gt row, -1 when nothing overlaps), both in rank order.
    """
    # Group gt boxes by (image, class), keeping dataset order inside a group.
    gt_key = gt.box_image * num_classes + gt_cls
    gt_order = np.argsort(gt_key, kind="stable")
    gt_key_sorted = gt_key[gt_order]
    det_key = dets.image_index[order] * num_classes + det_cls[order]
    start = np.searchsorted(gt_key_sorted, det_key, side="left")
    count = np.searchsorted(gt_key_sorted, det_key, side="right") - start

    n = len(order)
    best_iou = np.full(n, -np.inf)
    best_box = np.full(n, -1, dtype=np.int64)
    det_boxes = dets.boxes[order]
    pair_end = np.cumsum(count)
    lo = 0
    while lo < n:
        # Take detections until the chunk holds _PAIR_CHUNK pairs (at least one detection).
        base = pair_end[lo - 1] if lo else 0
        hi = max(lo + 1, int(np.searchsorted(pair_end, base + _PAIR_CHUNK, side="right")))
        _best_overlaps_chunk(gt, gt_order, det_boxes, start, count, lo, hi, best_iou, best_box)
        lo = hi
    return best_iou, best_box


def _best_overlaps_chunk(gt, gt_order, det_boxes, start, count, lo, hi, best_iou, best_box) -> None:
    cnt = count[lo:hi]
    n_pairs = int(cnt.sum())
    if n_pairs == 0:
        return
    pair_det = np.repeat(np.arange(lo, hi), cnt)  # rank position of the detection
    first_pair = np.cumsum(cnt) - cnt  # offset of each detection's first pair
    within = np.arange(n_pairs) - np.repeat(first_pair, cnt)
    pair_gt = gt_order[start[pair_det] + within]
    iou = box_iou_pairs(det_boxes[pair_det], gt.boxes[pair_gt])
    has = cnt > 0
    seg_max = np.maximum.reduceat(iou, first_pair[has])
    det_max = np.full(hi - lo, -np.inf)
    det_max[has] = seg_max
    # First pair (= first box in dataset order) reaching the maximum, among overlapping pairs.
    hit = np.flatnonzero((iou == det_max[pair_det - lo]) & (iou > -np.inf))
    if hit.size == 0:
        return
    hit_det = pair_det[hit]
    first = np.concatenate([[True], hit_det[1:] != hit_det[:-1]])
    best_iou[hit_det[first]] = iou[hit[first]]
    best_box[hit_det[first]] = pair_gt[hit[first]]


def _assign(
    best_iou: np.ndarray, best_box: np.ndarray, difficult: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """TP flags and ignored flags (matched a difficult box), in rank order."""
    matched = (best_iou >= threshold) & (best_box >= 0)
    ignored = np.zeros_like(matched)
    ignored[matched] = difficult[best_box[matched]]
    claim = np.flatnonzero(matched & ~ignored)
    tp = np.zeros_like(matched)
    # The first (highest-ranked) detection claiming a box gets it; later ones are duplicates.
    _, first = np.unique(best_box[claim], return_index=True)
    tp[claim[first]] = True
    return tp, ignored


# ------------------------------------------------------------------ matching
class DetectionMatches(NamedTuple):
    """Outcome of matching ``D`` detections against the ground truth.

    ``tp``: bool [D], true positive (input order). ``ignored``: bool [D], the
    detection matched a ``difficult`` box (neither TP nor FP). Every other
    detection is a false positive. ``num_gt``: category id -> number of
    non-difficult ground-truth boxes (every category of the dataset, and any
    label seen in boxes or detections).
    """

    tp: np.ndarray
    ignored: np.ndarray
    num_gt: dict[int, int]


def match_detections(gt: DetectionDataset, dets: Detections, iou: float = 0.5) -> DetectionMatches:
    """Flag each detection TP / FP / ignored with the VOC devkit's greedy rule at IoU ``>= iou``.

    Same rule and tie-breaking as :func:`softsampling.evaluation.voc_metric.voc_ap`
    (same code path): within each class, detections are ranked by
    score (ties in input order) and each takes its best-IoU box; the first
    detection to take a non-difficult box is a TP, later ones are duplicates (FP).

    >>> from softsampling.structures.records import Category
    >>> gt = DetectionDataset.from_lists(
    ...     images=[{"id": 0, "file_name": "a.png", "width": 50, "height": 50}],
    ...     boxes=[{"image_index": 0, "bbox": [0, 0, 10, 10], "label": 1}],
    ...     categories=[Category(1, "cat"), Category(2, "dog")],
    ... )
    >>> m = match_detections(
    ...     gt, Detections([0, 0, 0], [[1, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], [1, 1, 2], [0.5, 0.8, 0.9])
    ... )
    >>> m.tp.tolist(), m.num_gt
    ([False, True, False], {1: 1, 2: 0})
    """
    if not 0.0 <= iou <= 1.0:
        raise SoftSamplingError(f"IoU threshold must lie in [0, 1], got {iou}", fix="pass e.g. --iou 0.5")
    _check_image_index(gt, dets)
    class_ids = _class_ids(gt, dets)
    gt_cls = np.searchsorted(class_ids, gt.labels)
    det_cls = np.searchsorted(class_ids, dets.labels)
    num_gt = np.bincount(gt_cls[~gt.difficult], minlength=len(class_ids))

    # Rank order of voc_ap: by class, then score descending, then input order.
    order = np.lexsort((np.arange(len(dets)), -dets.scores.astype(np.float64), det_cls))
    best_iou, best_box = _best_overlaps(gt, gt_cls, dets, det_cls, order, len(class_ids))
    tp_ranked, ignored_ranked = _assign(best_iou, best_box, gt.difficult, float(iou))
    tp = np.zeros(len(dets), dtype=bool)
    ignored = np.zeros(len(dets), dtype=bool)
    tp[order] = tp_ranked
    ignored[order] = ignored_ranked
    return DetectionMatches(tp, ignored, {int(c): int(n) for c, n in zip(class_ids, num_gt, strict=True)})
