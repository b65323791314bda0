"""The COCO detection metric, with pycocotools' numbers.

Three backends compute it. The default, ``"numpy"``, is a vectorised
re-implementation of ``COCOeval`` (``_CocoMatches``: ``evaluate`` as a greedy
match of all (image, class) groups at once, rank by rank, of only the
detections that reach IoU 0.5 with some box; ``accumulate`` from the true
positives alone; ``summarize`` as pycocotools indexes it) that repeats
pycocotools' float operations, so the numbers are equal (tested to 1e-12
against pycocotools). ``"pycocotools"`` hands COCO dictionaries built *in
memory* to ``pycocotools.cocoeval.COCOeval`` (the reference, tested equal to
pycocotools run on the original JSON files); ``"faster-coco-eval"`` hands them
to that package's C++ ``COCOeval_faster``.

What the metric sees, and why it matters (all backends):

- boxes are converted from our ``xyxy`` float32 pixels to COCO ``[x, y, w, h]``
  (``w = x2 - x1`` computed in float64);
- a ground-truth box read by the COCO reader and left unchanged is passed
  with its original ``bbox`` list (``gt.box_extra["coco_bbox"]``), so IoUs are
  bit-identical to pycocotools on the file;
- ground-truth ``area`` decides the small / medium / large buckets (APs, APm,
  APl, ARs, ARm, ARl). COCO's own files store the *segmentation* area there,
  not the box area. The original value is used when the dataset carries it
  (``gt.box_extra["area"]``, an array, or the ``area`` key the COCO reader
  keeps in ``gt.box_extra["coco_fields"]``); otherwise the box area ``w * h``
  is used. That is what non-COCO data means anyway, but a COCO file stripped
  of ``area`` would move some boxes between size buckets;
- ``iscrowd`` boxes are passed as crowd regions: pycocotools matches
  detections to them with intersection-over-detection-area and ignores those
  detections, and crowds never count as missed objects;
- detection areas are box areas (pycocotools ``loadRes`` computes them).

Example:
    >>> import numpy as np
    >>> from softsampling.structures.records import Category, DetectionDataset
    >>> from softsampling.structures.detections import Detections
    >>> gt = DetectionDataset.from_lists(
    ...     images=[{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
    ...     boxes=[{"image_index": 0, "bbox": [10, 10, 60, 60], "label": 3}],
    ...     categories=[Category(3, "car")],
    ... )
    >>> dets = Detections(image_index=[0], boxes=[[10, 10, 60, 60]], labels=[3], scores=[0.9])
    >>> result = coco_metric(gt, dets)
    >>> round(result["AP"], 6), round(result["AP50"], 6), round(result["per_class"][3]["ap"], 6)
    (1.0, 1.0, 1.0)
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from softsampling.errors import SoftSamplingError
from softsampling.structures.detections import Detections
from softsampling.structures.records import DetectionDataset

COCO_BACKENDS = ("numpy", "faster-coco-eval", "pycocotools")
_SWEEP_CHUNK = 16  # score thresholds accumulated together (memory: ~8 MB of curves each for 80 classes)

# pycocotools' default parameters (``Params.setDetParams``), built the same way so they are bit-identical.
_IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
_REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
_AREA_RNG = np.array([[0**2, 1e5**2], [0**2, 32**2], [32**2, 96**2], [96**2, 1e5**2]], dtype=np.float64)
_AREA_LBL = ("all", "small", "medium", "large")

#: The 12 numbers of ``COCOeval.summarize()``, in its order (names for the default max_dets).
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def coco_stat_names(max_dets: tuple[int, int, int] = (1, 10, 100)) -> tuple[str, ...]:
    """Names of the 12 summary numbers; the recall names follow ``max_dets``.

    >>> coco_stat_names((1, 10, 100))[6:9]
    ('AR1', 'AR10', 'AR100')
    >>> coco_stat_names((1, 5, 20))[6:9]
    ('AR1', 'AR5', 'AR20')
    """
    a, b, c = max_dets
    return ("AP", "AP50", "AP75", "APs", "APm", "APl", f"AR{a}", f"AR{b}", f"AR{c}", "ARs", "ARm", "ARl")


def coco_image_ids(gt: DetectionDataset) -> list[int]:
    """The integer COCO ``image_id`` used for each image row.

    COCO datasets keep their integer ids; any other dataset (VOC stems, Open
    Images ImageIDs) gets ``row index + 1``, so a results JSON written for
    those datasets must use the same numbering.
    """
    ids = gt.image_ids
    if all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in ids) and len(set(ids)) == len(ids):
        return [int(i) for i in ids]
    return list(range(1, len(ids) + 1))


def coco_ground_truth(gt: DetectionDataset) -> dict[str, Any]:
    """Our dataset as a COCO instances dictionary (``images``, ``annotations``, ``categories``).

    Boxes become ``[x, y, w, h]`` (the original COCO list where the box is
    unchanged); ``area`` is the stored COCO area when present (see the module
    docstring) else the box area; ``iscrowd`` is the
    dataset's flag; annotation ``id`` is ``box_ids + 1`` if any id is 0
    (pycocotools treats id 0 as "unmatched") else ``box_ids``.
    """
    image_ids = coco_image_ids(gt)
    xywh = _ground_truth_xywh(gt)
    area = _ground_truth_area(gt, xywh)
    ann_ids = gt.box_ids.astype(np.int64)
    if len(ann_ids) and (ann_ids.min() <= 0 or len(np.unique(ann_ids)) != len(ann_ids)):
        ann_ids = np.arange(1, len(ann_ids) + 1)
    annotations = [
        {
            "id": int(ann_ids[j]),
            "image_id": image_ids[int(gt.box_image[j])],
            "category_id": int(gt.labels[j]),
            "bbox": [float(v) for v in xywh[j]],
            "area": float(area[j]),
            "iscrowd": int(gt.iscrowd[j]),
        }
        for j in range(gt.num_boxes)
    ]
    images = [
        {"id": image_ids[i], "file_name": gt.file_names[i], "width": int(gt.widths[i]), "height": int(gt.heights[i])}
        for i in range(gt.num_images)
    ]
    categories = [{"id": int(c.id), "name": c.name} for c in gt.categories]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_results(gt: DetectionDataset, dets: Detections) -> list[dict[str, Any]]:
    """Detections as a COCO results list (``image_id, category_id, bbox [x, y, w, h], score``)."""
    check_detections(gt, dets)
    image_ids = coco_image_ids(gt)
    xywh = _xyxy_to_xywh(dets.boxes)
    return [
        {
            "image_id": image_ids[int(dets.image_index[d])],
            "category_id": int(dets.labels[d]),
            "bbox": [float(v) for v in xywh[d]],
            "score": float(dets.scores[d]),
        }
        for d in range(len(dets))
    ]


def coco_metric(
    gt: DetectionDataset,
    dets: Detections,
    *,
    iou_type: str = "bbox",
    max_dets: tuple[int, int, int] = (1, 10, 100),
    backend: str = "numpy",
    verbose: bool = False,
) -> dict[str, Any]:
    """COCO box AP/AR of ``dets`` against ``gt``, with pycocotools' ``COCOeval`` numbers.

    Args:
        gt: ground truth; every image row is evaluated (images without boxes
            too, as in COCO), every category in ``gt.categories`` is a class.
        dets: detections; ``image_index`` are rows of ``gt``, ``labels`` are
            category ids of ``gt``.
        iou_type: only ``"bbox"`` (detections carry no masks).
        max_dets: the three per-image detection limits of COCOeval
            (``AP50`` to ``APl`` and the per-class AP use the last one,
            ``AR1/AR10/AR100`` one each; ``AP`` and ``mAP``, as in
            pycocotools' ``summarize``, use 100 and are ``-1.0`` when 100
            is not one of them). COCOeval sorts them first, and so do we.
        backend: ``"numpy"`` (default: this module's vectorised re-implementation
            of ``COCOeval``, see the module docstring), ``"faster-coco-eval"``
            (its C++ ``COCOeval_faster``, if installed) or ``"pycocotools"``
            (the reference itself). All three give the same numbers.
        verbose: print the library's own progress and summary table
            (``pycocotools`` and ``faster-coco-eval`` backends).

    Returns:
        A dict of plain Python numbers::

            {"metric": "coco", "mAP": AP@[.5:.95],
             "AP": ..., "AP50": ..., "AP75": ..., "APs": ..., "APm": ..., "APl": ...,
             "AR1": ..., "AR10": ..., "AR100": ..., "ARs": ..., "ARm": ..., "ARl": ...,
             "per_class": {category_id: {"name", "ap", "ap50", "num_gt", "num_det"}}}

        The 12 summary numbers are ``COCOeval.stats`` by name (recall names
        follow ``max_dets``; ``-1.0`` where pycocotools finds no ground
        truth, e.g. no small objects). Per class, ``ap`` is AP@[.5:.95] and
        ``ap50`` AP@.5 (all areas, last ``max_dets``): the mean of
        ``eval["precision"]`` over IoU thresholds and recall points, ``None``
        for a category without ground truth; their mean over categories is
        ``AP``. ``num_gt`` counts non-crowd boxes, ``num_det`` detections.
    """
    _check_options(iou_type, max_dets, backend)
    max_dets = _sorted_max_dets(max_dets)
    if backend == "numpy":
        return coco_metric_sweep(gt, dets, None, max_dets=max_dets)[0]
    check_detections(gt, dets)
    evaluator = _library_evaluator(gt, dets, max_dets=max_dets, backend=backend, verbose=verbose)
    return _result(
        gt,
        dets.labels,
        np.asarray(evaluator.stats, dtype=np.float64),
        evaluator.eval["precision"],
        [int(c) for c in evaluator.params.catIds],
        max_dets,
    )


def coco_metric_sweep(
    gt: DetectionDataset,
    dets: Detections,
    thresholds: Sequence[float] | None,
    *,
    iou_type: str = "bbox",
    max_dets: tuple[int, int, int] = (1, 10, 100),
    backend: str = "numpy",
    verbose: bool = False,
) -> list[dict[str, Any]]:
    """``[coco_metric(gt, dets.above(t)) for t in thresholds]``, matching the detections only once.

    COCOeval matches each image's detections of a class greedily in score
    order, so the detections kept by a score threshold (a prefix of that
    order) are matched exactly as in the full set; and it accumulates each
    class's detections in score order, so a threshold keeps a prefix of that
    list too, whose running counts and precisions are those of the full list.
    The numpy backend therefore matches once and accumulates once; per
    threshold it only cuts each precision/recall curve where that class's
    kept detections end (see ``_CocoMatches.accumulate``). ``thresholds=None``
    means one evaluation of all detections. The other backends evaluate each
    threshold from scratch.
    """
    _check_options(iou_type, max_dets, backend)
    check_detections(gt, dets)
    if backend != "numpy":
        return [
            coco_metric(
                gt, dets if t is None else dets.above(float(t)), max_dets=max_dets, backend=backend, verbose=verbose
            )
            for t in ([None] if thresholds is None else thresholds)
        ]
    max_dets = _sorted_max_dets(max_dets)
    matches = _CocoMatches.build(gt, dets, max_dets)
    # the same test as Detections.above
    keeps = [None if t is None else dets.scores >= float(t) for t in ([None] if thresholds is None else thresholds)]
    results = []
    for keep, (precision, recall) in zip(keeps, matches.accumulate(keeps), strict=True):
        stats = _summarize(precision, recall, max_dets)
        labels = dets.labels if keep is None else dets.labels[keep]
        results.append(_result(gt, labels, stats, precision, matches.cat_ids.tolist(), max_dets))
    return results


def _sorted_max_dets(max_dets: Sequence[int]) -> tuple[int, int, int]:
    """The three limits in increasing order, as COCOeval.evaluate() sorts them (:func:`_check_options` counted them)."""
    low, mid, high = sorted(int(m) for m in max_dets)
    return low, mid, high


def _check_options(iou_type: str, max_dets: Sequence[int], backend: str) -> None:
    if iou_type != "bbox":
        raise SoftSamplingError(
            f"COCO metric iou_type {iou_type!r} is not supported",
            fix="use iou_type='bbox' (detections here are boxes, without masks)",
        )
    if len(max_dets) != 3 or any(int(m) < 1 for m in max_dets):
        raise SoftSamplingError(
            f"max_dets must be three positive integers, got {tuple(max_dets)!r}", fix="e.g. max_dets=(1, 10, 100)"
        )
    if backend not in COCO_BACKENDS:
        raise SoftSamplingError(f"unknown COCO backend {backend!r}", fix=f"use one of {', '.join(COCO_BACKENDS)}")


def _library_evaluator(
    gt: DetectionDataset, dets: Detections, *, max_dets: Sequence[int], backend: str, verbose: bool
) -> Any:
    """A finished (evaluated, accumulated, summarized) ``COCOeval`` of pycocotools or faster-coco-eval."""
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    else:
        try:
            from faster_coco_eval import COCO
            from faster_coco_eval import COCOeval_faster as COCOeval
        except ImportError:
            raise SoftSamplingError(
                "the faster-coco-eval package is not installed",
                fix="pip install faster-coco-eval, or use the numpy backend",
            ) from None

    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        coco_gt = COCO()
        coco_gt.dataset = coco_ground_truth(gt)
        coco_gt.createIndex()
        results = coco_results(gt, dets)
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:  # loadRes cannot take an empty list; an empty result set is valid for COCOeval
            coco_dt = COCO()
            coco_dt.dataset = {
                "images": coco_gt.dataset["images"],
                "categories": coco_gt.dataset["categories"],
                "annotations": [],
            }
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.params.maxDets = [int(m) for m in max_dets]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def _result(
    gt: DetectionDataset,
    det_labels: np.ndarray,
    stats: np.ndarray,
    precision: np.ndarray,
    cat_ids: list[int],
    max_dets: tuple[int, int, int],
) -> dict[str, Any]:
    """The result dict from COCOeval's ``stats`` and ``eval["precision"]`` [T, R, K, A, M];
    ``det_labels``: the category id of each evaluated detection."""
    out: dict[str, Any] = {"metric": "coco", "mAP": float(stats[0])}
    out.update(zip(coco_stat_names(max_dets), (float(s) for s in stats), strict=True))
    iou50 = int(np.argmin(np.abs(_IOU_THRS - 0.5)))
    column = {cid: k for k, cid in enumerate(cat_ids)}
    names = gt.category_names
    non_crowd = ~gt.iscrowd
    label, count = np.unique(det_labels, return_counts=True)
    num_det = dict(zip(label.tolist(), count.tolist(), strict=True))
    per_class: dict[int, dict[str, Any]] = {}
    for c in gt.categories:
        k = column[int(c.id)]
        per_class[int(c.id)] = {
            "name": names[c.id],
            "ap": _mean_valid(precision[:, :, k, 0, -1]),
            "ap50": _mean_valid(precision[iou50, :, k, 0, -1]),
            "num_gt": int(np.sum(non_crowd & (gt.labels == c.id))),
            "num_det": num_det.get(int(c.id), 0),
        }
    out["per_class"] = per_class
    return out


# ----------------------------------------------------------------------------- numpy COCOeval
class _CocoMatches:
    """COCOeval's ``evaluate()`` result as arrays, ready for any number of ``accumulate`` calls.

    Detections (the best ``max_dets[-1]`` of each image and class, by score) are held in the
    order ``accumulate`` ranks them: by category, score descending, image (sorted COCO id),
    then rank in the image. Most of them match nothing at any IoU threshold; only the
    *candidates* (best IoU >= 0.5 with some box) carry ``matched`` and ``matched_ignored``,
    bool ``[A, T, C]`` (area range, IoU threshold, candidate). ``out_of_range`` bool [A, D]:
    the detection's area is outside the range (ignored there when it matches nothing).
    ``num_positive`` int [K, A]: boxes not ignored (pycocotools' ``npig``).
    """

    def __init__(self, **arrays: Any) -> None:
        self.cat_ids: np.ndarray = arrays["cat_ids"]
        self.det_index: np.ndarray = arrays["det_index"]  # [D] row in the input detections
        self.cat_start: np.ndarray = arrays["cat_start"]  # [K + 1] where each category starts in the order
        self.rank: np.ndarray = arrays["rank"]  # [D] rank in its image and category
        self.out_of_range: np.ndarray = arrays["out_of_range"]
        self.cand: np.ndarray = arrays["cand"]  # [C] positions of the candidates, increasing
        self.matched: np.ndarray = arrays["matched"]
        self.matched_ignored: np.ndarray = arrays["matched_ignored"]
        self.num_positive: np.ndarray = arrays["num_positive"]
        self.max_dets: tuple[int, ...] = arrays["max_dets"]

    @classmethod
    def build(cls, gt: DetectionDataset, dets: Detections, max_dets: tuple[int, ...]) -> _CocoMatches:
        cat_ids = np.unique(np.array([c.id for c in gt.categories], dtype=np.int64))
        num_cats, num_areas = max(len(cat_ids), 1), len(_AREA_RNG)
        image_ids = np.array(coco_image_ids(gt), dtype=np.int64)
        image_pos = np.argsort(np.argsort(image_ids, kind="stable"), kind="stable")  # row -> position in sorted ids

        # ground truth, grouped by (image, category) key, dataset order inside a group
        g_xywh = _ground_truth_xywh(gt)
        g_area = _ground_truth_area(gt, g_xywh)
        g_key = image_pos[gt.box_image] * num_cats + np.searchsorted(cat_ids, gt.labels)
        g_order = np.argsort(g_key, kind="stable")
        g_key, g_xywh, g_area, g_crowd = g_key[g_order], g_xywh[g_order], g_area[g_order], gt.iscrowd[g_order]
        # ignored per area range: crowd, or area outside the range
        g_ignored = g_crowd[None, :] | (g_area[None, :] < _AREA_RNG[:, :1]) | (g_area[None, :] > _AREA_RNG[:, 1:])
        num_positive = np.stack(
            [np.bincount(g_key[~g_ignored[a]] % num_cats, minlength=len(cat_ids)) for a in range(num_areas)], axis=1
        )

        # detections: by key, score descending, input order; the best max_dets[-1] per key
        d_key = image_pos[dets.image_index] * num_cats + np.searchsorted(cat_ids, dets.labels)
        d_score = dets.scores.astype(np.float64)
        order = np.lexsort((np.arange(len(dets)), -d_score, d_key))
        d_key = d_key[order]
        rank = np.arange(len(order)) - np.searchsorted(d_key, d_key, side="left")
        keep = rank < max_dets[-1]
        order, d_key, rank = order[keep], d_key[keep], rank[keep]
        d_xywh = _xyxy_to_xywh(dets.boxes[order])
        cand, matched, matched_ignored = _greedy_match(d_key, d_xywh, g_key, g_xywh, g_crowd, g_ignored)

        # accumulate's order: category, score descending, image position, rank in the image
        d_cat = d_key % num_cats
        acc = np.lexsort((rank, d_key // num_cats, -d_score[order], d_cat))
        position = np.empty(len(acc), dtype=np.int64)
        position[acc] = np.arange(len(acc))
        by_position = np.argsort(position[cand])
        d_area = d_xywh[acc, 2] * d_xywh[acc, 3]
        return cls(
            cat_ids=cat_ids,
            det_index=order[acc],
            rank=rank[acc],
            cat_start=np.searchsorted(d_cat[acc], np.arange(len(cat_ids) + 1)),
            out_of_range=(d_area[None, :] < _AREA_RNG[:, :1]) | (d_area[None, :] > _AREA_RNG[:, 1:]),
            cand=position[cand][by_position],
            matched=matched[:, :, by_position],
            matched_ignored=matched_ignored[:, :, by_position],
            num_positive=num_positive,
            max_dets=max_dets,
        )

    def accumulate(self, keeps: Sequence[np.ndarray | None]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """COCOeval's ``eval["precision"]`` [T, R, K, A, M] and ``eval["recall"]`` [T, K, A, M], per entry of ``keeps``.

        Each ``keeps`` entry (bool over the input detections, ``None`` for all) evaluates only
        those detections, and must be what a score threshold keeps: a prefix of every image's
        ranking (whose matches are unchanged) and of every category's list in this order.

        Same numbers as pycocotools without its [T, D] cumulative sums: precision only
        matters at true positives (between two, it falls), so for the ``j``-th true positive
        of a row, with ``c`` the detections counted (not ignored) up to it, precision is
        ``j / (c + eps)``; recall ``j / npig`` is the same for every row, so the recall
        points fall at the same ``j`` whatever the detections. Cutting a category's list
        after its first ``p`` detections changes neither ``j`` nor ``c`` of the true positives
        before ``p`` (the rank in an image, hence maxDets, is unchanged too: the image's
        detections after ``p`` score lower, so they ranked after), so the true positives and
        their precisions are computed once for all detections; each entry only drops the true
        positives at or after its cut and takes the precision envelope of what is left.
        """
        num_thrs, num_cats = len(_IOU_THRS), len(self.cat_ids)
        num_areas, num_max = len(_AREA_RNG), len(self.max_dets)
        num_det = len(self.det_index)
        # [M, D]: the detection takes part in the row when all are kept (within the row's maxDets)
        take = self.rank[None, :] < np.array(self.max_dets)[:, None]
        # running count of detections counted as if they matched nothing, [M, A, 1 + D]
        plain = np.zeros((num_max, num_areas, num_det + 1), dtype=np.int64)
        np.cumsum((take[:, None, :] & ~self.out_of_range[None, :, :]).astype(np.int64), axis=2, out=plain[:, :, 1:])
        cand_cat = np.searchsorted(self.cat_start, self.cand, side="right") - 1
        cand_take = take[:, self.cand][:, None, None, :]  # [M, 1, 1, C]
        num_cand = len(self.cand)

        def row_of(m: np.ndarray, a: np.ndarray, t: np.ndarray, c: np.ndarray) -> np.ndarray:
            return ((m * num_areas + a) * num_thrs + t) * num_cats + cand_cat[c]

        # true positives, in row order (m, a, t, category), detection order inside a row
        m_i, a_i, t_i, c_i = _nonzero(self.matched & ~self.matched_ignored & cand_take)
        row = row_of(m_i, a_i, t_i, c_i)
        j = np.arange(1, len(row) + 1) - np.searchsorted(row, row, side="left")  # rank among the row's TPs
        # counted detections up to each TP: the plain count, corrected for matched candidates
        # (counted unless their box is ignored, whatever their own area)
        oor_cand = self.out_of_range[:, self.cand][:, None, :]
        delta = (np.where(self.matched, ~self.matched_ignored, ~oor_cand).astype(np.int8) - ~oor_cand) * cand_take
        dm, da, dt, dc = _nonzero(delta)
        d_key = row_of(dm, da, dt, dc) * (num_cand + 1) + dc
        d_cum = np.concatenate([[0], np.cumsum(delta[dm, da, dt, dc], dtype=np.int64)])
        correction = (
            d_cum[np.searchsorted(d_key, row * (num_cand + 1) + c_i, side="right")]
            - d_cum[np.searchsorted(d_key, row * (num_cand + 1), side="left")]
        )
        counted = plain[m_i, a_i, self.cand[c_i] + 1] - plain[m_i, a_i, self.cat_start[cand_cat[c_i]]] + correction
        tp, fp = j.astype(np.float64), (counted - j).astype(np.float64)
        pr = tp / (fp + tp + np.spacing(1))
        position = self.cand[c_i]  # of each TP's detection; increasing inside a row
        tp_key = row * (num_det + 1) + position
        rows = np.arange(num_max * num_areas * num_thrs * num_cats)
        row_start = np.searchsorted(row, rows, side="left")
        by_class = np.argsort(cand_cat[c_i] * num_areas + a_i, kind="stable")
        bounds = np.searchsorted((cand_cat[c_i] * num_areas + a_i)[by_class], np.arange(num_cats * num_areas + 1))

        for first_entry in range(0, len(keeps), _SWEEP_CHUNK):
            chunk = keeps[first_entry : first_entry + _SWEEP_CHUNK]
            cut = np.stack([self._cut(keep) for keep in chunk])  # [S, K]: first position not kept
            num_sets = len(chunk)
            # TPs kept per row: those before the row category's cut (a prefix of the row's TPs)
            n_tp = (
                np.searchsorted(tp_key, rows * (num_det + 1) + cut[:, rows % num_cats], side="left") - row_start
            ).reshape(num_sets, num_max, num_areas, num_thrs, num_cats)
            precision = -np.ones((num_sets, num_thrs, len(_REC_THRS), num_cats, num_areas, num_max))
            recall = -np.ones((num_sets, num_thrs, num_cats, num_areas, num_max))
            for k in range(num_cats):
                for a in range(num_areas):
                    npig = int(self.num_positive[k, a])
                    if npig == 0:
                        continue
                    sel = by_class[bounds[k * num_areas + a] : bounds[k * num_areas + a + 1]]
                    kept_pr = np.where(position[sel][None, :] < cut[:, k, None], pr[sel][None, :], 0.0)  # [S, n]
                    envelope = np.zeros((num_sets, num_max, num_thrs, npig))
                    envelope[:, m_i[sel], t_i[sel], j[sel] - 1] = kept_pr
                    envelope = np.maximum.accumulate(envelope[..., ::-1], axis=3)[..., ::-1]
                    # recall point r is reached at the first j with j / npig >= r
                    first = np.searchsorted(np.arange(1, npig + 1) / npig, _REC_THRS, side="left")
                    q = np.where(first < npig, envelope[..., np.minimum(first, npig - 1)], 0.0)  # [S, M, T, R]
                    precision[:, :, :, k, a, :] = q.transpose(0, 2, 3, 1)
                    recall[:, :, k, a, :] = (n_tp[:, :, a, :, k] / npig).transpose(0, 2, 1)
            for s in range(num_sets):
                yield precision[s], recall[s]

    def _cut(self, keep: np.ndarray | None) -> np.ndarray:
        """[K]: the position (in this order) where each category's kept detections end."""
        if keep is None:
            return self.cat_start[1:]
        kept = np.concatenate([[0], np.cumsum(keep[self.det_index], dtype=np.int64)])
        count = kept[self.cat_start[1:]] - kept[self.cat_start[:-1]]
        cut = self.cat_start[:-1] + count
        if np.any(kept[cut] - kept[self.cat_start[:-1]] != count):
            raise ValueError("accumulate() takes score-threshold selections: a prefix of each category's list")
        return cut


def _nonzero(array: np.ndarray) -> tuple[np.ndarray, ...]:
    """``np.nonzero`` of an n-d array, in the same order (a flat search is much faster)."""
    return np.unravel_index(np.flatnonzero(array), array.shape)


def _greedy_match(
    d_key: np.ndarray,
    d_xywh: np.ndarray,
    g_key: np.ndarray,
    g_xywh: np.ndarray,
    g_crowd: np.ndarray,
    g_ignored: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COCOeval's greedy matching (``evaluateImg``) of all (image, category) groups at once.

    ``d_key`` sorted, each group's detections in rank order; ``g_key`` sorted. Returns the
    candidates (detections whose best IoU reaches the lowest threshold; no other can match),
    and ``matched`` and ``matched_ignored`` bool [A, T, C]: the candidate matched a box, and
    that box is ignored in area range ``A``. Rule, per detection in rank order, per threshold and
    area range: among boxes not yet matched (crowds may match again) with IoU >= threshold,
    take the last one with the highest IoU among the non-ignored boxes, or if there is none,
    among the ignored ones.
    """
    num_areas, num_thrs, n = g_ignored.shape[0], len(_IOU_THRS), len(d_key)
    if n == 0 or len(g_key) == 0:
        return (
            np.zeros(0, dtype=np.int64),
            np.zeros((num_areas, num_thrs, 0), dtype=bool),
            np.zeros((num_areas, num_thrs, 0), dtype=bool),
        )
    thr = np.minimum(_IOU_THRS, 1 - 1e-10)
    # all (detection, box) pairs of a group, grouped by detection
    start = np.searchsorted(g_key, d_key, side="left")
    count = np.searchsorted(g_key, d_key, side="right") - start
    pair_det = np.repeat(np.arange(n), count)
    pair_gt = start[pair_det] + (np.arange(len(pair_det)) - np.repeat(np.cumsum(count) - count, count))
    iou = _bbox_iou(d_xywh[pair_det], g_xywh[pair_gt], g_crowd[pair_gt])
    # only detections reaching the lowest threshold with some box can match
    best = np.full(n, -1.0)
    np.maximum.at(best, pair_det, iou)
    candidate = best >= thr.min()
    pairs = np.flatnonzero(candidate[pair_det])
    pair_det, pair_gt, iou = pair_det[pairs], pair_gt[pairs], iou[pairs]
    # rank among the candidates of the group: one vectorised step per rank
    cand = np.flatnonzero(candidate)
    cand_rank = np.arange(len(cand)) - np.searchsorted(d_key[cand], d_key[cand], side="left")
    rank_of_det = np.zeros(n, dtype=np.int64)
    rank_of_det[cand] = cand_rank
    slot = np.zeros(n, dtype=np.int64)  # detection -> its column among the candidates
    slot[cand] = np.arange(len(cand))
    matched = np.zeros((num_areas, num_thrs, len(cand)), dtype=bool)
    matched_ignored = np.zeros((num_areas, num_thrs, len(cand)), dtype=bool)
    by_rank = np.argsort(rank_of_det[pair_det], kind="stable")
    pair_det, pair_gt, iou = pair_det[by_rank], pair_gt[by_rank], iou[by_rank]
    rank_start = np.searchsorted(rank_of_det[pair_det], np.arange(int(cand_rank.max(initial=-1)) + 2))
    box_taken = np.zeros((num_areas, num_thrs, len(g_key)), dtype=bool)
    for r in range(len(rank_start) - 1):
        p = slice(rank_start[r], rank_start[r + 1])
        det, box, v = pair_det[p], pair_gt[p], iou[p]
        seg = np.flatnonzero(np.concatenate([[True], det[1:] != det[:-1]]))
        seg_len = np.diff(np.append(seg, len(det)))
        eligible = (v[None, None, :] >= thr[None, :, None]) & ~(box_taken[:, :, box] & ~g_crowd[box])
        box_ig = g_ignored[:, None, box]  # [A, 1, P]
        choice = np.full((num_areas, num_thrs, len(seg)), -1, dtype=np.int64)
        for stage in (~box_ig, box_ig):  # non-ignored boxes first, ignored ones only if none matched
            ok = eligible & stage
            value = np.where(ok, v, -1.0)
            seg_max = np.maximum.reduceat(value, seg, axis=2)
            at_max = ok & (value == np.repeat(seg_max, seg_len, axis=2))
            last = np.maximum.reduceat(np.where(at_max, np.arange(len(det)), -1), seg, axis=2)
            choice = np.where(choice >= 0, choice, last)
        a_idx, t_idx, s_idx = np.nonzero(choice >= 0)
        chosen = choice[a_idx, t_idx, s_idx]
        matched[a_idx, t_idx, slot[det[seg[s_idx]]]] = True
        matched_ignored[a_idx, t_idx, slot[det[seg[s_idx]]]] = g_ignored[a_idx, box[chosen]]
        box_taken[a_idx, t_idx, box[chosen]] = True
    return cand, matched, matched_ignored


def _bbox_iou(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """pycocotools' ``bbIou`` for rows of ``[x, y, w, h]`` float64 pairs (crowd: intersection over the
    detection's area); the same operations in the same order, so the same doubles."""
    w = np.minimum(d[:, 2] + d[:, 0], g[:, 2] + g[:, 0]) - np.maximum(d[:, 0], g[:, 0])
    h = np.minimum(d[:, 3] + d[:, 1], g[:, 3] + g[:, 1]) - np.maximum(d[:, 1], g[:, 1])
    overlap = (w > 0) & (h > 0)
    inter = w * h
    d_area = d[:, 2] * d[:, 3]
    union = np.where(crowd, d_area, d_area + g[:, 2] * g[:, 3] - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(overlap, inter / union, 0.0)


def _summarize(precision: np.ndarray, recall: np.ndarray, max_dets: tuple[int, ...]) -> np.ndarray:
    """``COCOeval.summarize()``'s 12 numbers, indexed the way it indexes them."""

    def one(ap: bool, iou_thr: float | None = None, area: str = "all", max_det: int = max_dets[2]) -> float:
        aind = [i for i, lbl in enumerate(_AREA_LBL) if lbl == area]
        mind = [i for i, m in enumerate(max_dets) if m == max_det]
        if ap:
            s = precision
            if iou_thr is not None:
                s = s[np.where(iou_thr == _IOU_THRS)[0]]
            s = s[:, :, :, aind, mind]
        else:
            s = recall
            if iou_thr is not None:
                s = s[np.where(iou_thr == _IOU_THRS)[0]]
            s = s[:, :, aind, mind]
        return -1.0 if len(s[s > -1]) == 0 else float(np.mean(s[s > -1]))

    return np.array(
        [
            one(True, max_det=100),  # pycocotools' summarize() hard-codes 100 here: -1 when 100 is not in max_dets
            one(True, 0.5),
            one(True, 0.75),
            one(True, area="small"),
            one(True, area="medium"),
            one(True, area="large"),
            one(False, max_det=max_dets[0]),
            one(False, max_det=max_dets[1]),
            one(False, max_det=max_dets[2]),
            one(False, area="small"),
            one(False, area="medium"),
            one(False, area="large"),
        ]
    )


# ----------------------------------------------------------------------------- helpers
def _xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """float64 ``[N, 4]`` ``[x, y, w, h]`` from ``xyxy`` (widths computed in float64)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def _ground_truth_xywh(gt: DetectionDataset) -> np.ndarray:
    """``[x, y, w, h]`` per box: the COCO reader's original list where ``xyxy`` still matches it."""
    xywh = _xyxy_to_xywh(gt.boxes)
    original = gt.box_extra.get("coco_bbox")
    if original is not None and gt.num_boxes:
        from softsampling.data.coco import xywh_to_xyxy

        original_xywh = np.array(original, dtype=np.float64).reshape(-1, 4)
        unchanged = (xywh_to_xyxy(original_xywh) == gt.boxes).all(axis=1)
        xywh[unchanged] = original_xywh[unchanged]
    return xywh


def _ground_truth_area(gt: DetectionDataset, xywh: np.ndarray) -> np.ndarray:
    """COCO ``area`` per box: a stored value if there is one, else ``w * h``."""
    area = xywh[:, 2] * xywh[:, 3]
    if "area" in gt.box_extra:
        return np.asarray(gt.box_extra["area"], dtype=np.float64).reshape(-1)
    fields = gt.box_extra.get("coco_fields")
    if fields is not None:
        for j, f in enumerate(fields):
            value = f.get("area") if isinstance(f, dict) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                area[j] = float(value)
    return area


def _mean_valid(values: np.ndarray) -> float | None:
    """Mean of the entries > -1 (pycocotools marks "no ground truth" with -1); None if none."""
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else None


def check_detections(gt: DetectionDataset, dets: Detections) -> None:
    """Raise :class:`SoftSamplingError` unless every detection names an image row and a category of ``gt``."""
    if len(dets) == 0:
        return
    bad_image = (dets.image_index < 0) | (dets.image_index >= gt.num_images)
    if bad_image.any():
        d = int(np.flatnonzero(bad_image)[0])
        raise SoftSamplingError(
            f"detection refers to image row {int(dets.image_index[d])}, but the ground truth has "
            f"{gt.num_images} images",
            record=f"detection {d}",
            fix="read the detections against the same ground-truth file",
        )
    known = np.array([c.id for c in gt.categories], dtype=np.int64)
    bad_label = ~np.isin(dets.labels, known)
    if bad_label.any():
        d = int(np.flatnonzero(bad_label)[0])
        raise SoftSamplingError(
            f"detection has category id {int(dets.labels[d])}, which the ground truth does not define",
            record=f"detection {d}",
            fix="map detection classes to the ground truth's category ids",
        )
