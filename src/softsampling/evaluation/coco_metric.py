"""The COCO detection metric, computed by pycocotools itself.

We do not re-derive COCO's AP: :func:`coco_metric` converts our columnar
ground truth and detections into COCO dictionaries *in memory* and hands them
to ``pycocotools.cocoeval.COCOeval``, so the numbers are pycocotools' numbers
(tested to equal pycocotools run on the original JSON files, to 1e-12).

What is passed to pycocotools, and why it matters:

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

Faster alternatives: ``faster-coco-eval`` re-implements COCOeval in C++ and
aims at identical numbers; it is not a dependency here (pycocotools on 5,000
images x 100 detections takes tens of seconds, acceptable for an evaluation).

Example:
    >>> import numpy as np
    >>> from softsampling.data.records import Category, DetectionDataset
    >>> from softsampling.evaluation.detections import Detections
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
from typing import Any

import numpy as np

from softsampling.data.records import DetectionDataset
from softsampling.errors import SoftSamplingError
from softsampling.evaluation.detections import Detections

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
    verbose: bool = False,
) -> dict[str, Any]:
    """COCO box AP/AR of ``dets`` against ``gt``, computed by pycocotools' ``COCOeval``.

    Args:
        gt: ground truth; every image row is evaluated (images without boxes
            too, as in COCO), every category in ``gt.categories`` is a class.
        dets: detections; ``image_index`` are rows of ``gt``, ``labels`` are
            category ids of ``gt``.
        iou_type: only ``"bbox"`` (detections carry no masks).
        max_dets: the three per-image detection limits of COCOeval
            (``AP`` uses the last one; ``AR1/AR10/AR100`` one each).
        verbose: print pycocotools' own progress and summary table.

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
    if iou_type != "bbox":
        raise SoftSamplingError(
            f"COCO metric iou_type {iou_type!r} is not supported",
            fix="use iou_type='bbox' (detections here are boxes, without masks)",
        )
    if len(max_dets) != 3 or any(int(m) < 1 for m in max_dets):
        raise SoftSamplingError(
            f"max_dets must be three positive integers, got {tuple(max_dets)!r}", fix="e.g. max_dets=(1, 10, 100)"
        )
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

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
            coco_dt.dataset = {"images": coco_gt.dataset["images"], "categories": coco_gt.dataset["categories"],
                               "annotations": []}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.params.maxDets = [int(m) for m in max_dets]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()

    stats = [float(s) for s in evaluator.stats]
    out: dict[str, Any] = {"metric": "coco", "mAP": stats[0]}
    out.update(zip(coco_stat_names(tuple(max_dets)), stats))
    # precision: [T iou thresholds, R recall points, K categories, A area ranges, M max_dets]; -1 = no gt
    precision = evaluator.eval["precision"]
    iou50 = int(np.argmin(np.abs(evaluator.params.iouThrs - 0.5)))
    column = {int(cid): k for k, cid in enumerate(evaluator.params.catIds)}
    names = gt.category_names
    non_crowd = ~gt.iscrowd
    per_class: dict[int, dict[str, Any]] = {}
    for c in gt.categories:
        k = column[int(c.id)]
        per_class[int(c.id)] = {
            "name": names[c.id],
            "ap": _mean_valid(precision[:, :, k, 0, -1]),
            "ap50": _mean_valid(precision[iou50, :, k, 0, -1]),
            "num_gt": int(np.sum(non_crowd & (gt.labels == c.id))),
            "num_det": int(np.sum(dets.labels == c.id)),
        }
    out["per_class"] = per_class
    return out


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
