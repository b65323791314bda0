"""The Open Images challenge detection metric (AP at IoU 0.5 with verified labels and group-of boxes).

Reference followed
------------------
The TensorFlow Object Detection API's Open Images challenge evaluation, which
the challenge page (storage.googleapis.com/openimages/web/evaluation.html)
points to: ``metrics/oid_challenge_evaluation.py`` running
``utils/object_detection_evaluation.OpenImagesChallengeEvaluator`` (alias
``OpenImagesDetectionChallengeEvaluator``: ``group_of_weight=1``) on top of
``utils/per_image_evaluation.PerImageEvaluation`` and ``utils/metrics``, with
the ground truth first expanded by
``dataset_tools/oid_hierarchical_labels_expansion.py``. Re-implemented here
in vectorised numpy (no Python loop over detections), rule by rule:

1. **Verified classes.** A class is *verified* in an image when the image has
   a positive or a negative image-level label for it, or a ground-truth box of
   it. Detections of classes not verified in their image are dropped before
   anything else (they are neither true nor false positives).
2. **Invalid detections** (``x2 <= x1`` or ``y2 <= y1``) are dropped. Per
   image and class, detections are sorted by descending score and only the
   first 10,000 are kept (the reference's NMS step with IoU threshold 1.0,
   i.e. no suppression).
3. **Non-group-of boxes first.** Each detection looks only at the
   non-group-of box of its class and image with the highest IoU (first in box
   order on ties). If that IoU is ``>= iou`` and the box is not taken yet, the
   detection is a true positive and takes the box; otherwise it stays a false
   positive (VOC-style: it does *not* fall back to the next-best box).
   IoU uses continuous coordinates (no +1).
4. **Group-of boxes.** Every detection that is not a true positive after
   step 3 looks at the group-of box of its class with the highest
   intersection-over-*detection*-area (IoA). If that IoA is ``>= iou`` (the
   reference uses the same threshold for IoA), the detection is *ignored*;
   each group-of box that absorbed at least one detection then counts once as
   a true positive, with the highest score among its detections (the
   reference keeps it only if that score is > 0). A group-of box that absorbs
   nothing is one missed object.
5. **AP per class.** Number of positives = non-group-of boxes + group-of
   boxes of the class (``difficult`` flags are not used, as in the
   reference). All scored entries of the class over the whole dataset are
   sorted by descending score; ``precision = TP / (TP + FP)``,
   ``recall = TP / positives``; precision is made monotone from the right
   (after appending ``(recall 1, precision 0)`` and prepending
   ``(recall 0, precision 0)``) and AP is the sum of
   ``(recall step) x (monotone precision)`` over the points where recall
   changes (``metrics.compute_average_precision``). A class with positives but
   no entries has AP 0; a class without positives has AP ``nan``.
6. **mAP** is the mean AP over classes that have at least one positive.
7. **Hierarchy** (optional, the official ``bbox_labels_600_hierarchy.json``
   layout ``{"LabelName": ..., "Subcategory": [...]}``): ground-truth boxes
   are copied to every ancestor class; positive image-level labels are
   expanded to ancestors, negative ones to descendants (no "animal" means no
   "dog"). The root node (the virtual "Entity") is skipped. Detections are
   *not* expanded, as in the reference: a detector must output the parent
   classes itself; pass ``expand_detections=True`` to copy each detection to
   its ancestors (what FiftyOne calls ``expand_pred_hierarchy``).

Known, deliberate differences from the reference:

- a class reachable by several paths in the hierarchy gets each ground-truth
  box copied *once* per ancestor (the reference's expansion script can list an
  ancestor twice when a whole subtree appears under two parents, which
  duplicates boxes);
- ties in score are broken by input order (the reference's
  ``np.argsort(scores)[::-1]`` leaves tie order to numpy's unstable sort);
- hierarchy classes that are not categories of the dataset are traversed
  (their descendants still get the ancestors above them) but get no boxes.

Example (one image; class 1 verified by its box, class 2 verified absent,
class 3 not verified):

    >>> import numpy as np
    >>> from softsampling.structures.records import Category, DetectionDataset
    >>> from softsampling.structures.detections import Detections
    >>> gt = DetectionDataset.from_lists(
    ...     images=[{"id": "img0", "file_name": "img0.jpg", "width": 100, "height": 100}],
    ...     boxes=[{"image_index": 0, "bbox": [0, 0, 50, 50], "label": 1}],
    ...     categories=[Category(1, "Dog"), Category(2, "Cat"), Category(3, "Car")],
    ... )
    >>> dets = Detections(
    ...     image_index=[0, 0, 0],
    ...     boxes=[[0, 0, 50, 50], [0, 0, 9, 9], [5, 5, 9, 9]],
    ...     labels=[1, 2, 3],
    ...     scores=[0.9, 0.8, 0.7],
    ... )
    >>> r = openimages_metric(gt, dets, image_labels={0: ({1}, {2})})
    >>> r["mAP"], r["per_class"][1]["ap"], r["per_class"][2]["ap"]
    (1.0, 1.0, None)
    >>> [r["per_class"][c]["num_det"] for c in (1, 2, 3)]
    [1, 1, 0]
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from softsampling.errors import SoftSamplingError
from softsampling.evaluation.coco_metric import check_detections
from softsampling.io import check_input_file
from softsampling.structures.detections import Detections
from softsampling.structures.records import Category, DetectionDataset

#: Per image and class, only this many top-scoring detections are evaluated (the reference's NMS cap).
MAX_DETECTIONS_PER_IMAGE_AND_CLASS = 10_000


# ============================================================================ image-level labels
@dataclass
class ImageLabels:
    """Verified image-level labels, one row per (image, class) verdict.

    ``image_index`` int64 [L]: image rows of the ground truth; ``labels``
    int64 [L]: category ids; ``positive`` bool [L]: True = the class is in the
    image (Open Images ``Confidence`` 1), False = verified absent (``Confidence`` 0).

    >>> labels = ImageLabels.from_sets({0: ({1, 2}, {5}), 3: (set(), {1})})
    >>> labels.image_index.tolist(), labels.labels.tolist(), labels.positive.tolist()
    ([0, 0, 0, 3], [1, 2, 5, 1], [True, True, False, False])
    """

    image_index: np.ndarray
    labels: np.ndarray
    positive: np.ndarray

    def __post_init__(self) -> None:
        self.image_index = np.asarray(self.image_index, dtype=np.int64).reshape(-1)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.positive = np.asarray(self.positive, dtype=bool).reshape(-1)
        if not (len(self.image_index) == len(self.labels) == len(self.positive)):
            raise ValueError("ImageLabels columns must all have the same length")

    @classmethod
    def from_sets(cls, mapping: Mapping[int, tuple[Iterable[int], Iterable[int]]]) -> ImageLabels:
        """From ``{image_row: (positive category ids, negative category ids)}``."""
        rows: list[tuple[int, int, bool]] = []
        for image, (pos, neg) in sorted(mapping.items()):
            rows += [(int(image), int(c), True) for c in sorted(pos)]
            rows += [(int(image), int(c), False) for c in sorted(neg)]
        if not rows:
            return cls(np.zeros(0), np.zeros(0), np.zeros(0))
        image_index, labels, positive = zip(*rows, strict=True)
        return cls(np.array(image_index), np.array(labels), np.array(positive))

    @classmethod
    def from_dataset(cls, ds: DetectionDataset) -> ImageLabels:
        """The image-level labels the Open Images reader kept (``read_openimages(..., labels_csv=...)``).

        Rows whose image is not in ``ds`` or whose LabelName is not one of its
        categories are left out; ``positive`` is ``Confidence >= 0.5``. Empty
        when the dataset has no image-level labels.
        """
        from softsampling.data.openimages import image_level_labels

        return cls(*image_level_labels(ds))

    @classmethod
    def empty(cls) -> ImageLabels:
        return cls(np.zeros(0), np.zeros(0), np.zeros(0))


ImageLabelsLike = ImageLabels | Mapping[int, tuple[Iterable[int], Iterable[int]]]


def as_image_labels(image_labels: ImageLabelsLike) -> ImageLabels:
    """Accept an :class:`ImageLabels` or a ``{row: (positive ids, negative ids)}`` mapping."""
    if isinstance(image_labels, ImageLabels):
        return image_labels
    return ImageLabels.from_sets(image_labels)


# ============================================================================ class hierarchy
@dataclass(frozen=True)
class ClassHierarchy:
    """Ancestors and descendants of each category id (only ids of the dataset's categories).

    Build it with :func:`load_hierarchy` from the official JSON.
    """

    ancestors: dict[int, frozenset[int]]
    descendants: dict[int, frozenset[int]]


def load_hierarchy(source: str | Path | Mapping[str, Any], categories: Sequence[Category]) -> ClassHierarchy:
    """Read an Open Images class hierarchy (``{"LabelName": ..., "Subcategory": [...]}``).

    ``source`` is the parsed JSON or a path to it. Hierarchy nodes are matched
    to ``categories`` by their Open Images label name (the MID, e.g.
    ``/m/0bt9lr``): ``Category.extra["LabelName"]`` as the Open Images reader
    sets it (or ``extra["label_name"]``), else ``Category.name``. The root
    node is skipped, as in the reference.

    >>> cats = [Category(1, "/m/animal"), Category(2, "/m/dog"), Category(3, "/m/cat")]
    >>> tree = {
    ...     "LabelName": "/m/root",
    ...     "Subcategory": [
    ...         {"LabelName": "/m/animal", "Subcategory": [{"LabelName": "/m/dog"}, {"LabelName": "/m/cat"}]}
    ...     ],
    ... }
    >>> h = load_hierarchy(tree, cats)
    >>> sorted(h.ancestors[2]), sorted(h.descendants[1]), sorted(h.ancestors[1])
    ([1], [2, 3], [])
    """
    if isinstance(source, Mapping):
        tree: Any = source
        where: str | None = None
    else:
        where = str(source)
        check_input_file(source, option="--hierarchy", what="class hierarchy JSON file")
        try:
            tree = json.loads(Path(source).read_text())
        except FileNotFoundError:
            raise SoftSamplingError(
                "hierarchy file does not exist", file=where, fix="pass the path of bbox_labels_600_hierarchy.json"
            ) from None
        except json.JSONDecodeError as e:
            raise SoftSamplingError(
                f"hierarchy file is not valid JSON ({e.msg}, line {e.lineno})",
                file=where,
                fix="pass the official hierarchy JSON file",
            ) from None
    if not isinstance(tree, Mapping) or "LabelName" not in tree:
        raise SoftSamplingError(
            "hierarchy has no top-level 'LabelName'",
            file=where,
            fix='expected {"LabelName": ..., "Subcategory": [...]}',
        )

    id_of = {_label_name(c): int(c.id) for c in categories}
    ancestors: dict[int, set[int]] = {int(c.id): set() for c in categories}
    descendants: dict[int, set[int]] = {int(c.id): set() for c in categories}

    # depth-first walk; `path` holds the label names above the current node (root excluded)
    stack: list[tuple[Mapping[str, Any], tuple[str, ...]]] = [
        (child, ()) for child in reversed(_subcategories(tree, where))
    ]
    while stack:
        node, path = stack.pop()
        name = str(node["LabelName"]) if "LabelName" in node else None
        if name is None:
            raise SoftSamplingError(
                "hierarchy node without 'LabelName'",
                file=where,
                record=f"under {path}",
                fix="every node needs a LabelName",
            )
        if name in path:
            raise SoftSamplingError(
                f"hierarchy has a cycle through {name!r}", file=where, fix="the hierarchy must be a tree or a DAG"
            )
        if name in id_of:
            cid = id_of[name]
            for above in path:
                if above in id_of:
                    ancestors[cid].add(id_of[above])
                    descendants[id_of[above]].add(cid)
        stack.extend((child, path + (name,)) for child in reversed(_subcategories(node, where)))
    return ClassHierarchy(
        ancestors={k: frozenset(v) for k, v in ancestors.items()},
        descendants={k: frozenset(v) for k, v in descendants.items()},
    )


def _label_name(category: Category) -> str:
    """The Open Images MID of a category: ``extra["LabelName"]`` (the reader's key), ``extra["label_name"]``,
    else its name."""
    for key in ("LabelName", "label_name"):
        if key in category.extra:
            return str(category.extra[key])
    return category.name


def _subcategories(node: Mapping[str, Any], where: str | None) -> list[Mapping[str, Any]]:
    subs = node.get("Subcategory", [])
    if not isinstance(subs, list) or not all(isinstance(s, Mapping) for s in subs):
        raise SoftSamplingError(
            f"'Subcategory' of {node.get('LabelName')!r} is not a list of nodes",
            file=where,
            fix="use the official hierarchy JSON layout",
        )
    return subs


# ============================================================================ the metric
def openimages_metric(
    gt: DetectionDataset,
    dets: Detections,
    *,
    image_labels: ImageLabelsLike,
    iou: float = 0.5,
    hierarchy: ClassHierarchy | str | Path | Mapping[str, Any] | None = None,
    expand_detections: bool = False,
) -> dict[str, Any]:
    """Open Images challenge AP of ``dets`` against ``gt`` (rules in the module docstring).

    Args:
        gt: ground truth; ``group_of`` flags mark group-of boxes, ``labels``
            are category ids; every category in ``gt.categories`` is a class.
        dets: detections (``image_index`` = rows of ``gt``, ``labels`` =
            category ids of ``gt``).
        image_labels: verified image-level labels, an :class:`ImageLabels`
            (``ImageLabels.from_dataset(gt)`` for a dataset read with
            ``read_openimages(..., labels_csv=...)``) or
            ``{image_row: (positive ids, negative ids)}``.
        iou: IoU threshold for non-group-of boxes, and IoA threshold for
            group-of boxes (0.5 in the challenge).
        hierarchy: ``None``, a :class:`ClassHierarchy`, or the official
            hierarchy JSON (parsed or a path) to expand the ground truth with.
        expand_detections: also copy every detection to its ancestor classes.

    Returns:
        A dict of plain Python numbers::

            {
                "metric": "openimages",
                "iou_thresholds": [iou],
                "mAP": float,
                "per_class": {category_id: {"name", "ap", "num_gt", "num_det", "num_tp"}},
            }

        ``ap`` is ``None`` for a class without positives (left out of the
        mean); ``num_gt`` counts positives after hierarchy expansion (a
        group-of box counts once); ``num_det`` counts the detections
        evaluated (verified class, valid box), including those absorbed by
        group-of boxes; ``num_tp`` the true positives (matched boxes plus
        hit group-of boxes).

    Raises:
        SoftSamplingError: bad category ids or image rows, a bad threshold or
            hierarchy file, or ground truth without any box (mAP undefined).
    """
    return openimages_metric_sweep(
        gt, dets, None, image_labels=image_labels, iou=iou, hierarchy=hierarchy, expand_detections=expand_detections
    )[0]


def openimages_metric_sweep(
    gt: DetectionDataset,
    dets: Detections,
    score_thresholds: Sequence[float] | None,
    *,
    image_labels: ImageLabelsLike,
    iou: float = 0.5,
    hierarchy: ClassHierarchy | str | Path | Mapping[str, Any] | None = None,
    expand_detections: bool = False,
) -> list[dict[str, Any]]:
    """``[openimages_metric(gt, dets.above(s), ...) for s in score_thresholds]``, matching once.

    Every rule keeps the outcome of a detection when lower-scored detections
    are dropped (the cap and the matches go by descending score; a group-of
    box scores the best of its detections), so one threshold's entries are
    the full set's entries with ``score >= s``. ``None``: one result, all detections.
    """
    check_detections(gt, dets)
    if not 0.0 < iou <= 1.0:
        raise SoftSamplingError(f"IoU threshold must be in (0, 1], got {iou}", fix="use e.g. --iou 0.5")
    labels = as_image_labels(image_labels)
    cat_ids = np.array([int(c.id) for c in gt.categories], dtype=np.int64)
    if len(labels.labels):
        unknown = ~np.isin(labels.labels, cat_ids)
        if unknown.any():
            r = int(np.flatnonzero(unknown)[0])
            raise SoftSamplingError(
                f"image-level label has category id {int(labels.labels[r])}, which the ground truth does not define",
                record=f"image row {int(labels.image_index[r])}",
                fix="map image-level labels to the ground truth's category ids",
            )
    num_classes = len(cat_ids)
    if num_classes == 0:
        raise SoftSamplingError("the ground truth defines no categories", fix="read a dataset with categories")

    # --- everything below works with class *indices* 0..K-1
    to_index = _IdToIndex(cat_ids)

    g_image, g_class, g_boxes, g_group = gt.box_image, to_index(gt.labels), gt.boxes.astype(np.float64), gt.group_of
    l_image, l_class, l_positive = labels.image_index, to_index(labels.labels), labels.positive
    d_image, d_class = dets.image_index, to_index(dets.labels)
    d_boxes, d_scores = dets.boxes.astype(np.float64), dets.scores.astype(np.float64)

    if hierarchy is not None:
        h = hierarchy if isinstance(hierarchy, ClassHierarchy) else load_hierarchy(hierarchy, gt.categories)
        known = set(cat_ids.tolist())

        def related(table: Mapping[int, frozenset[int]]) -> tuple[np.ndarray, np.ndarray]:
            return _class_csr(
                [to_index(np.array(sorted(known & set(table.get(int(c), ()))), dtype=np.int64)) for c in cat_ids]
            )

        up, down = related(h.ancestors), related(h.descendants)
        rows, g_class = _expand(g_class, up)
        g_image, g_boxes, g_group = g_image[rows], g_boxes[rows], g_group[rows]
        pos, neg = np.flatnonzero(l_positive), np.flatnonzero(~l_positive)
        pos_rows, pos_class = _expand(l_class[pos], up)
        neg_rows, neg_class = _expand(l_class[neg], down)
        l_image = np.concatenate([l_image[pos][pos_rows], l_image[neg][neg_rows]])
        l_class = np.concatenate([pos_class, neg_class])
        if expand_detections:
            rows, d_class = _expand(d_class, up)
            d_image, d_boxes, d_scores = d_image[rows], d_boxes[rows], d_scores[rows]

    # --- rule 1: keep detections of classes verified in their image
    verified = np.unique(np.concatenate([l_image * num_classes + l_class, g_image * num_classes + g_class]))
    d_key = d_image * num_classes + d_class
    keep = np.isin(d_key, verified)
    # --- rule 2: valid boxes only; per (image, class) by descending score, at most 10,000
    keep &= (d_boxes[:, 0] < d_boxes[:, 2]) & (d_boxes[:, 1] < d_boxes[:, 3])
    idx = np.flatnonzero(keep)
    idx = idx[np.lexsort((idx, -d_scores[idx], d_key[idx]))]  # by key, then score desc, then input order
    d_key, d_class, d_boxes, d_scores = d_key[idx], d_class[idx], d_boxes[idx], d_scores[idx]
    first_of_key = np.searchsorted(d_key, d_key, side="left")
    capped = (np.arange(len(d_key)) - first_of_key) < MAX_DETECTIONS_PER_IMAGE_AND_CLASS
    d_key, d_class, d_boxes, d_scores = d_key[capped], d_class[capped], d_boxes[capped], d_scores[capped]
    n_det = len(d_key)
    g_key = g_image * num_classes + g_class

    # --- rule 3: non-group-of boxes, best-IoU box per detection, first detection per box wins
    plain = np.flatnonzero(~g_group)
    best_iou, best_plain = _best_match(d_key, d_boxes, g_key[plain], g_boxes[plain], overlap="iou")
    is_tp = np.zeros(n_det, dtype=bool)
    candidates = np.flatnonzero(best_iou >= iou)  # in (key, score desc) order
    _, first = np.unique(best_plain[candidates], return_index=True)
    is_tp[candidates[first]] = True

    # --- rule 4: remaining detections inside a group-of box are ignored; each such box is one TP
    group = np.flatnonzero(g_group)
    rest = np.flatnonzero(~is_tp)
    best_ioa, best_group = _best_match(d_key[rest], d_boxes[rest], g_key[group], g_boxes[group], overlap="ioa")
    absorbed = best_ioa >= iou
    is_ignored = np.zeros(n_det, dtype=bool)
    is_ignored[rest[absorbed]] = True
    group_score = np.zeros(len(group), dtype=np.float64)
    np.maximum.at(group_score, best_group[absorbed], d_scores[rest[absorbed]])
    group_hit = group_score > 0  # the reference's `scores_group_of > 0` selection
    # --- scored entries of every class: non-ignored detections, then one entry per hit group-of box
    scored = ~is_ignored
    e_class = np.concatenate([d_class[scored], g_class[group[group_hit]]])
    e_score = np.concatenate([d_scores[scored], group_score[group_hit]])
    e_tp = np.concatenate([is_tp[scored], np.ones(int(group_hit.sum()), dtype=bool)])

    # --- rules 5 and 6: AP per class, mean over classes with positives
    num_gt = np.bincount(g_class, minlength=num_classes)
    if not (num_gt > 0).any():
        raise SoftSamplingError(
            "the ground truth has no boxes, so Open Images mAP is undefined",
            fix="evaluate on a split that has annotated objects",
        )
    by_class = np.lexsort((np.arange(len(e_score)), -e_score, e_class))
    bounds = np.searchsorted(e_class[by_class], np.arange(num_classes + 1), side="left")
    # scores are float32 values: compare them as Detections.above does
    e_score32, d_score32 = e_score.astype(np.float32), d_scores.astype(np.float32)
    names = gt.category_names
    results = []
    for threshold in [None] if score_thresholds is None else score_thresholds:
        e_kept = np.ones(len(e_score), dtype=bool) if threshold is None else e_score32 >= float(threshold)
        d_kept = np.ones(n_det, dtype=bool) if threshold is None else d_score32 >= float(threshold)
        ap = np.full(num_classes, np.nan)
        for k in np.flatnonzero(num_gt > 0):
            ranked = by_class[bounds[k] : bounds[k + 1]]
            tp_sorted = e_tp[ranked[e_kept[ranked]]]
            precision, recall = precision_recall(tp_sorted, int(num_gt[k]))
            ap[k] = average_precision(precision, recall)
        mean_ap = float(np.mean(ap[num_gt > 0]))
        num_det = np.bincount(d_class[d_kept], minlength=num_classes)
        num_tp = np.bincount(e_class[e_tp & e_kept], minlength=num_classes)
        per_class = {
            int(c): {
                "name": names[int(c)],
                "ap": float(ap[k]) if num_gt[k] > 0 else None,
                "num_gt": int(num_gt[k]),
                "num_det": int(num_det[k]),
                "num_tp": int(num_tp[k]),
            }
            for k, c in enumerate(cat_ids)
        }
        results.append({"metric": "openimages", "iou_thresholds": [float(iou)], "mAP": mean_ap, "per_class": per_class})
    return results


# ============================================================================ pure math
def precision_recall(tp_sorted: np.ndarray, num_positives: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each entry of a score-sorted TP/FP list.

    >>> p, r = precision_recall(np.array([True, False, True]), 4)
    >>> p.tolist(), r.tolist()
    ([1.0, 0.5, 0.6666666666666666], [0.25, 0.25, 0.5])
    """
    tp = np.cumsum(np.asarray(tp_sorted, dtype=np.float64))
    fp = np.cumsum(1.0 - np.asarray(tp_sorted, dtype=np.float64))
    return tp / (tp + fp), tp / float(num_positives)


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the monotone precision envelope (the reference's ``compute_average_precision``).

    Pads ``(recall 0, precision 0)`` in front and ``(recall 1, precision 0)``
    behind, makes precision non-increasing from the right, and sums
    ``(r[i] - r[i-1]) * p[i]`` where recall changes. Empty input gives 0.

    >>> average_precision(np.array([1.0, 0.5, 2 / 3]), np.array([0.25, 0.25, 0.5]))
    0.41666666666666663
    """
    if precision.size == 0:
        return 0.0
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    changes = np.flatnonzero(r[1:] != r[:-1]) + 1
    return float(np.sum((r[changes] - r[changes - 1]) * p[changes]))


# ============================================================================ vectorised helpers
class _IdToIndex:
    """Category id -> position in ``cat_ids`` (vectorised)."""

    def __init__(self, cat_ids: np.ndarray) -> None:
        self._sorter = np.argsort(cat_ids, kind="stable")
        self._sorted = cat_ids[self._sorter]

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size == 0:
            return np.zeros(0, dtype=np.int64)
        return self._sorter[np.searchsorted(self._sorted, ids)]


def _class_csr(per_class: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Lists of class indices per class as (offsets [K+1], flat values)."""
    lengths = np.array([len(v) for v in per_class], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.concatenate(per_class).astype(np.int64) if len(per_class) else np.zeros(0, dtype=np.int64)
    return offsets, flat


def _expand(classes: np.ndarray, csr: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each row plus one copy per related class, copies right after their row.

    Returns ``(source row of every output row, class of every output row)``.

    >>> csr = _class_csr([np.array([2]), np.array([]), np.array([])])  # class 0 -> also 2
    >>> [a.tolist() for a in _expand(np.array([1, 0, 2]), csr)]
    [[0, 1, 1, 2], [1, 0, 2, 2]]
    """
    offsets, flat = csr
    classes = np.asarray(classes, dtype=np.int64)
    n_extra = offsets[classes + 1] - offsets[classes]
    per_row = 1 + n_extra
    rows = np.repeat(np.arange(len(classes)), per_row)
    position = np.arange(len(rows)) - np.repeat(np.cumsum(per_row) - per_row, per_row)  # 0 = the row itself
    out_class = classes[rows].copy()
    is_copy = position > 0
    out_class[is_copy] = flat[offsets[classes[rows[is_copy]]] + position[is_copy] - 1]
    return rows, out_class


def _best_match(
    d_key: np.ndarray, d_boxes: np.ndarray, g_key: np.ndarray, g_boxes: np.ndarray, *, overlap: str
) -> tuple[np.ndarray, np.ndarray]:
    """For each detection, the best overlap with a box of the same key, and that box's index.

    ``overlap`` is ``"iou"`` or ``"ioa"`` (intersection over the detection's
    area). Ties go to the first box in ``g_key`` order. Detections with no box
    of their key get overlap ``-1`` and index ``-1``.
    """
    n = len(d_key)
    best = np.full(n, -1.0)
    best_index = np.full(n, -1, dtype=np.int64)
    if n == 0 or len(g_key) == 0:
        return best, best_index
    g_order = np.argsort(g_key, kind="stable")
    g_sorted = g_key[g_order]
    start = np.searchsorted(g_sorted, d_key, side="left")
    count = np.searchsorted(g_sorted, d_key, side="right") - start
    has = np.flatnonzero(count > 0)
    if has.size == 0:
        return best, best_index
    # all (detection, box) pairs of equal key, grouped by detection, boxes in input order
    pair_det = np.repeat(has, count[has])
    seg_start = np.concatenate([[0], np.cumsum(count[has])[:-1]])
    local = np.arange(len(pair_det)) - np.repeat(seg_start, count[has])
    pair_box = g_order[start[pair_det] + local]
    values = _pair_overlap(d_boxes[pair_det], g_boxes[pair_box], overlap)
    seg_max = np.maximum.reduceat(values, seg_start)
    is_max = values == np.repeat(seg_max, count[has])
    first_max = np.minimum.reduceat(np.where(is_max, local, np.iinfo(np.int64).max), seg_start)
    best[has] = seg_max
    best_index[has] = pair_box[seg_start + first_max]
    return best, best_index


def _pair_overlap(det: np.ndarray, box: np.ndarray, overlap: str) -> np.ndarray:
    """Row-wise IoU or IoA (over ``det``'s area) of ``[P, 4]`` xyxy boxes, continuous coordinates."""
    iw = np.maximum(0.0, np.minimum(det[:, 2], box[:, 2]) - np.maximum(det[:, 0], box[:, 0]))
    ih = np.maximum(0.0, np.minimum(det[:, 3], box[:, 3]) - np.maximum(det[:, 1], box[:, 1]))
    inter = ih * iw
    det_area = (det[:, 3] - det[:, 1]) * (det[:, 2] - det[:, 0])
    if overlap == "ioa":
        return inter / det_area
    box_area = (box[:, 3] - box[:, 1]) * (box[:, 2] - box[:, 0])
    return inter / (det_area + box_area - inter)
