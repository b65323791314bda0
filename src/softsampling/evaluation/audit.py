"""Find a dataset's missing annotations: rank unannotated detections, estimate what is missing, merge reviews.

Pure numpy functions behind ``softsampling audit`` and ``softsampling audit-merge``
(see docs/audit.md). The flow:

1. :func:`unannotated` — a *candidate* is a detection on a training image whose
   best IoU with the image's annotated boxes is below ``iou`` (any class by
   default: a detection on an annotated object of another class is a class
   confusion, not a missing box; ``same_class=True`` compares with boxes of its
   own class only).
2. A :class:`Calibration` maps (class, detector score) to the probability that
   the detection is a real object:

   - :func:`fit_validation_calibration`: per class, isotonic regression of the
     VOC true-positive flag on the score, on a validation split whose
     annotations are complete (the detector's local precision at that score);
   - :func:`fit_unlabeled_calibration` (no validation split): positive-unlabelled
     learning (Elkan and Noto, KDD 2008). ``g(s)`` = isotonic P(matched | s) on
     the training detections, ``c`` = the mean of ``g`` over matched detections
     (the annotators' recall of what the detector finds); an unmatched
     detection is real with probability ``(1 - c) / c * g / (1 - g)``. Assumes
     the missing boxes are missing at random, and trusts scores the detector
     learnt on these very images: weaker than a validation split.

   Both fit on score bins (``bins`` equal-width bins over the scores' range),
   so fitting and applying are ``O(D)`` array operations.
3. :func:`rank_candidates` — the candidates of one or several detection sets
   (runs or seeds predicting the same images), each scored by its calibrated
   probability. With ``R > 1`` sets a candidate's score is the mean over the
   sets of the best probability each gives the same object (same image and
   class, IoU >= ``agreement_iou``; 0 when a set misses it), and only the best
   candidate of each such group is kept.
4. :func:`summarize` — per class: annotated boxes, expected missing instances
   ``M = sum p / r`` (``r`` the detector's recall on the validation split, 1
   without one) with a normal interval from the Poisson-binomial variance
   ``sum p (1 - p) / r^2``, and the estimated annotation recall
   ``n / (n + M)``. Objects the detector never finds are counted only through
   ``r``.
5. :func:`merge_boxes` — a dataset with accepted candidates added as
   ordinary annotations, in any format the format writers support.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from softsampling.evaluation.voc_metric import box_iou_pairs, match_detections
from softsampling.structures.detections import Detections
from softsampling.structures.records import DetectionDataset

DEFAULT_BINS = 200
_CHUNK = 1 << 20  # detections per chunk of the overlap test


def default_threads() -> int:
    """Threads for the overlap test: ``OMP_NUM_THREADS`` when set, else the CPUs this process may use."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdecimal() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def class_rows(category_ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """int64 [D]: the row of each label in the sorted ``category_ids``, -1 for a label not among them.

    A lookup table when the ids are small (the usual case), else a binary search.

    >>> class_rows(np.array([1, 5, 9]), np.array([5, 1, 7, 9])).tolist()
    [1, 0, -1, 2]
    """
    labels = np.asarray(labels, dtype=np.int64)
    if not len(category_ids):
        return np.full(len(labels), -1, dtype=np.int64)
    low, high = int(category_ids[0]), int(category_ids[-1])
    if low >= 0 and high < 1 << 22:
        lut = np.full(high + 2, -1, dtype=np.int64)
        lut[category_ids] = np.arange(len(category_ids))
        return lut[np.clip(labels, 0, high + 1)]
    row = np.minimum(np.searchsorted(category_ids, labels), len(category_ids) - 1)
    return np.where(category_ids[row] == labels, row, -1)


# ------------------------------------------------------------------ candidates
def unannotated(
    gt: DetectionDataset, dets: Detections, *, iou: float = 0.5, same_class: bool = False, threads: int | None = None
) -> np.ndarray:
    """bool [D]: detections whose IoU with every annotated box of their image is ``< iou``.

    Every annotated box counts (difficult, crowd and group-of boxes too); with
    ``same_class`` only boxes of the detection's class. Vectorised over the
    (detection, box of its image) pairs in slots: slot ``j`` compares every
    detection whose image has more than ``j`` boxes with its ``j``-th box, so
    the work is the number of pairs, in float32, with no division. Detections
    go in chunks of 1M over ``threads`` threads (default :func:`default_threads`).

    >>> from softsampling.structures.records import Category
    >>> gt = DetectionDataset.from_lists(
    ...     images=[{"id": 1, "file_name": "a.png", "width": 50, "height": 50}],
    ...     boxes=[{"image_index": 0, "bbox": [0, 0, 10, 10], "label": 1}],
    ...     categories=[Category(1, "a")],
    ... )
    >>> unannotated(gt, Detections([0, 0], [[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1], [0.9, 0.8]), iou=0.5).tolist()
    [False, True]
    """
    n = len(dets)
    if len(dets) and (dets.image_index.min() < 0 or dets.image_index.max() >= gt.num_images):
        raise ValueError("detections refer to image rows the dataset does not have")
    if same_class:
        class_ids, gt_cls = np.unique(gt.labels, return_inverse=True)
        key = gt.box_image * max(len(class_ids), 1) + gt_cls
        order = np.argsort(key, kind="stable")
        det_cls = np.searchsorted(class_ids, dets.labels)
        det_cls_ok = det_cls < len(class_ids)
        det_cls_ok[det_cls_ok] = class_ids[det_cls[det_cls_ok]] == dets.labels[det_cls_ok]
        det_key = dets.image_index * max(len(class_ids), 1) + np.minimum(det_cls, max(len(class_ids) - 1, 0))
        start = np.searchsorted(key[order], det_key, side="left")
        count = np.where(det_cls_ok, np.searchsorted(key[order], det_key, side="right") - start, 0)
    else:
        order = np.argsort(gt.box_image, kind="stable")
        per_image = np.bincount(gt.box_image, minlength=gt.num_images)
        offsets = np.concatenate([[0], np.cumsum(per_image)[:-1]])
        start = offsets[dets.image_index]
        count = per_image[dets.image_index]
    # columns, contiguous float32: gathers of 1-D columns are the cheapest; areas pre-multiplied by iou
    t = np.float32(iou)
    g_cols = [np.ascontiguousarray(gt.boxes[order, k], dtype=np.float32) for k in range(4)]
    g_area = (g_cols[2] - g_cols[0]) * (g_cols[3] - g_cols[1]) * t
    covered = np.zeros(n, dtype=bool)

    def chunk(lo: int, hi: int) -> None:
        """Mark ``covered[lo:hi]``; chunks bound the temporaries and run in parallel (numpy releases the GIL)."""
        d_cols = [np.ascontiguousarray(dets.boxes[lo:hi, k], dtype=np.float32) for k in range(4)]
        d_area = (d_cols[2] - d_cols[0]) * (d_cols[3] - d_cols[1]) * t
        first, cnt, done = start[lo:hi], count[lo:hi], covered[lo:hi]
        active = np.flatnonzero(cnt > 0)
        j = 0
        while active.size:
            whole = active.size == hi - lo  # slot 0 when every image has boxes: no gather
            d = d_cols if whole else [c[active] for c in d_cols]
            g = first + j if whole else first[active] + j
            gx1, gy1, gx2, gy2 = (c[g] for c in g_cols)
            iw = np.minimum(d[2], gx2)
            iw -= np.maximum(d[0], gx1)
            ih = np.minimum(d[3], gy2)
            ih -= np.maximum(d[1], gy1)
            np.maximum(iw, 0, out=iw)
            np.maximum(ih, 0, out=ih)
            iw *= ih  # the intersection
            # IoU >= t  <=>  inter * (1 + t) >= t * (area + gt_area), with a positive intersection
            hit = (iw * np.float32(1 + iou) >= (d_area if whole else d_area[active]) + g_area[g]) & (iw > 0)
            done[active[hit]] = True
            j += 1
            active = active[(cnt[active] > j) & ~done[active]]

    bounds = [(lo, min(lo + _CHUNK, n)) for lo in range(0, n, _CHUNK)]
    workers = min(len(bounds), threads if threads is not None else default_threads())
    if workers <= 1:
        for lo, hi in bounds:
            chunk(lo, hi)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda b: chunk(*b), bounds))
    return ~covered


# ------------------------------------------------------------------ calibration
def isotonic_increasing(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-decreasing fit of ``values`` (pool adjacent violators).

    Points with zero weight take the value of the nearest fitted point before
    them (after them at the start); all-zero weights give zeros.

    >>> isotonic_increasing(np.array([0.0, 1.0, 0.5, 1.0]), np.array([1.0, 1.0, 1.0, 1.0])).tolist()
    [0.0, 0.75, 0.75, 1.0]
    """
    values = np.asarray(values, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    out = np.zeros(len(values))
    used = np.flatnonzero(weights > 0)
    if used.size == 0:
        return out
    means: list[float] = []
    sums: list[float] = []
    sizes: list[int] = []
    for v, w in zip(values[used].tolist(), weights[used].tolist(), strict=True):
        means.append(v)
        sums.append(w)
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            w2, w1 = sums.pop(), sums[-1]
            m2, m1 = means.pop(), means[-1]
            means[-1] = (m1 * w1 + m2 * w2) / (w1 + w2)
            sums[-1] = w1 + w2
            size = sizes.pop()
            sizes[-1] += size
    fitted = np.repeat(np.array(means), np.array(sizes))
    # zero-weight points: carry the last fitted value forward, the first one backward
    position = np.searchsorted(used, np.arange(len(values)), side="right") - 1
    out = fitted[np.maximum(position, 0)]
    return out


@dataclass
class Calibration:
    """Per class, detector score -> probability that an unannotated detection is a real object.

    ``table`` float64 [K, bins]: the probability in each equal-width score bin
    over ``[low, high]`` for class ``category_ids[k]``; ``method`` says how it
    was fitted (``validation``, ``unlabeled`` or ``identity``);
    ``detector_recall``: per category id, the share of validation boxes the
    detector finds at any score (``None`` without a validation split);
    ``label_frequency``: per category id, ``c`` of the unlabelled fit.
    """

    category_ids: np.ndarray
    low: float
    high: float
    table: np.ndarray
    method: str
    detector_recall: dict[int, float] | None = None
    label_frequency: dict[int, float] | None = None

    def bin_of(self, scores: np.ndarray) -> np.ndarray:
        """int64 [D]: the score bin of each score (clipped into the table)."""
        bins = self.table.shape[1]
        width = (self.high - self.low) or 1.0
        index = np.floor((np.asarray(scores, dtype=np.float64) - self.low) / width * bins)
        return np.clip(index, 0, bins - 1).astype(np.int64)

    def __call__(self, labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """float64 [D]: calibrated probabilities; a class outside the table keeps its raw score clipped to [0, 1]."""
        labels = np.asarray(labels, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float64)
        row = class_rows(self.category_ids, labels)
        known = row >= 0
        out = np.clip(scores, 0.0, 1.0)
        if self.method != "identity" and known.any():
            out[known] = self.table[row[known], self.bin_of(scores[known])]
        return out

    def probabilities(self, dets: Detections) -> np.ndarray:
        """float64 [D]: the calibrated probability of each detection of ``dets``."""
        return self(dets.labels, dets.scores)

    def to_json(self) -> dict[str, Any]:
        """A JSON summary (method and, per class, recall / label frequency), not the table."""
        doc: dict[str, Any] = {
            "method": self.method,
            "bins": int(self.table.shape[1]),
            "score_range": [self.low, self.high],
        }
        if self.detector_recall is not None:
            doc["detector_recall"] = {str(k): round(v, 6) for k, v in self.detector_recall.items()}
        if self.label_frequency is not None:
            doc["label_frequency"] = {str(k): round(v, 6) for k, v in self.label_frequency.items()}
        return doc


@dataclass
class FoldCalibration:
    """Cross-fitting: each detection is calibrated by the calibration of its image's fold.

    ``fold_of_image`` int64 [I] (see :func:`fold_assignment`); ``folds[k]``
    calibrates the predictions of the model that held fold ``k`` out.
    """

    fold_of_image: np.ndarray
    folds: list[Calibration]

    @property
    def method(self) -> str:
        return self.folds[0].method

    @property
    def detector_recall(self) -> dict[int, float] | None:
        """Per class, the mean over the folds' models (None without a validation split)."""
        recalls = [c.detector_recall for c in self.folds]
        if any(r is None for r in recalls):
            return None
        return {k: float(np.mean([r[k] for r in recalls if r is not None])) for k in recalls[0] or {}}

    def probabilities(self, dets: Detections) -> np.ndarray:
        """float64 [D]: each detection calibrated by its image's fold's calibration."""
        fold = self.fold_of_image[dets.image_index]
        out = np.zeros(len(dets))
        for k, cal in enumerate(self.folds):
            sel = np.flatnonzero(fold == k)
            out[sel] = cal(dets.labels[sel], dets.scores[sel])
        return out

    def to_json(self) -> dict[str, Any]:
        return {"method": f"{self.method} (cross-fitted)", "folds": [c.to_json() for c in self.folds]}


def fold_assignment(num_images: int, folds: int, seed: int) -> np.ndarray:
    """int64 [I]: the fold (0 .. folds-1) of each image row, a seeded shuffle dealt round-robin.

    Every image is in exactly one fold; fold sizes differ by at most one; the
    same (``num_images``, ``folds``, ``seed``) always gives the same split.

    >>> fold_assignment(5, 2, seed=0).tolist()
    [1, 0, 0, 0, 1]
    """
    if folds < 2 or folds > num_images:
        raise ValueError(f"folds must lie in [2, {num_images}] (one image at least per fold), got {folds}")
    order = np.random.default_rng(seed).permutation(num_images)
    fold = np.empty(num_images, dtype=np.int64)
    fold[order] = np.arange(num_images) % folds
    return fold


def identity_calibration(category_ids: list[int] | np.ndarray) -> Calibration:
    """The raw detector score, clipped to [0, 1], taken as the probability (no calibration data; not binned)."""
    ids = np.unique(np.asarray(category_ids, dtype=np.int64))
    grid = (np.arange(DEFAULT_BINS) + 0.5) / DEFAULT_BINS
    return Calibration(ids, 0.0, 1.0, np.tile(grid, (len(ids), 1)), "identity")


def _score_range(*score_arrays: np.ndarray) -> tuple[float, float]:
    parts = [np.asarray(s, dtype=np.float64) for s in score_arrays if len(s)]
    if not parts:
        return 0.0, 1.0
    low = min(0.0, min(float(p.min()) for p in parts))
    high = max(1.0, max(float(p.max()) for p in parts))
    return low, high


def _binned_isotonic(
    category_ids: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    positive: np.ndarray,
    low: float,
    high: float,
    bins: int,
    weights: np.ndarray | None = None,
) -> tuple[Calibration, np.ndarray, np.ndarray]:
    """Per-class isotonic P(positive | score) on score bins; also the per-bin totals and positives [K, bins]."""
    cal = Calibration(category_ids, low, high, np.zeros((len(category_ids), bins)), "")
    row = class_rows(category_ids, labels)
    ok = row >= 0
    if weights is not None:
        ok &= weights > 0
    key = row[ok] * bins + cal.bin_of(scores[ok])
    total = np.bincount(key, minlength=len(category_ids) * bins).reshape(-1, bins).astype(np.float64)
    pos = np.bincount(key, weights=positive[ok].astype(np.float64), minlength=len(category_ids) * bins).reshape(
        -1, bins
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(total > 0, pos / np.maximum(total, 1), 0.0)
    for k in range(len(category_ids)):
        cal.table[k] = isotonic_increasing(rate[k], total[k])
    return cal, total, pos


def fit_validation_calibration(
    val_gt: DetectionDataset,
    val_dets: Detections,
    category_ids: list[int] | np.ndarray,
    *,
    iou: float = 0.5,
    bins: int = DEFAULT_BINS,
    score_range: tuple[float, float] | None = None,
) -> Calibration:
    """Per class, isotonic P(true positive | score) on a fully annotated validation split.

    True positives are flagged as the VOC metric does (greedy by score, IoU
    ``>= iou``, each box once; detections on difficult boxes are left out). A
    class without validation detections keeps the identity (raw score).
    ``detector_recall`` is, per class, matched boxes / boxes (1.0 for a class
    without validation boxes, so that it does not inflate the estimate).
    """
    ids = np.unique(np.asarray(category_ids, dtype=np.int64))
    low, high = score_range if score_range is not None else _score_range(val_dets.scores)
    matches = match_detections(val_gt, val_dets, iou=iou)
    keep = ~matches.ignored
    cal, total, pos = _binned_isotonic(
        ids, val_dets.labels, val_dets.scores, matches.tp, low, high, bins, weights=keep.astype(np.float64)
    )
    centres = low + (np.arange(bins) + 0.5) / bins * (high - low)
    for k in range(len(ids)):
        if total[k].sum() == 0:
            cal.table[k] = np.clip(centres, 0.0, 1.0)
    cal.method = "validation"
    recall = {}
    for k, cid in enumerate(ids.tolist()):
        n = matches.num_gt.get(cid, 0)
        recall[cid] = float(pos[k].sum() / n) if n else 1.0
    cal.detector_recall = recall
    return cal


def fit_unlabeled_calibration(
    gt: DetectionDataset,
    dets: Detections,
    category_ids: list[int] | np.ndarray,
    *,
    iou: float = 0.5,
    same_class: bool = False,
    bins: int = DEFAULT_BINS,
    score_range: tuple[float, float] | None = None,
    candidate: np.ndarray | None = None,
) -> Calibration:
    """Positive-unlabelled calibration on the audited detections themselves (no validation split).

    A detection is *labelled* when it overlaps an annotated box (the complement
    of :func:`unannotated` with the same ``iou`` and ``same_class``; pass that
    mask as ``candidate`` to reuse it). ``g`` = per-class isotonic
    P(labelled | score); ``c`` = mean of ``g`` over labelled detections; the
    table holds ``P(real | score, unlabelled) = (1 - c) / c * g / (1 - g)``,
    clipped to [0, 1]. A class without labelled detections keeps the identity.
    """
    ids = np.unique(np.asarray(category_ids, dtype=np.int64))
    low, high = score_range if score_range is not None else _score_range(dets.scores)
    if candidate is None:
        candidate = unannotated(gt, dets, iou=iou, same_class=same_class)
    cal, total, pos = _binned_isotonic(ids, dets.labels, dets.scores, ~candidate, low, high, bins)
    centres = low + (np.arange(bins) + 0.5) / bins * (high - low)
    frequency = {}
    for k, cid in enumerate(ids.tolist()):
        g = cal.table[k]
        n_pos = pos[k].sum()
        if n_pos == 0:
            cal.table[k] = np.clip(centres, 0.0, 1.0)
            frequency[cid] = 1.0
            continue
        c = float((g * pos[k]).sum() / n_pos)
        frequency[cid] = c
        with np.errstate(divide="ignore", invalid="ignore"):
            p = (1.0 - c) / c * g / (1.0 - g)
        cal.table[k] = np.clip(np.nan_to_num(p, nan=1.0, posinf=1.0), 0.0, 1.0)
    cal.method = "unlabeled"
    cal.label_frequency = frequency
    return cal


# ------------------------------------------------------------------ ranking
@dataclass
class Candidates:
    """``N`` candidate missing boxes (best first after :func:`rank`).

    ``image_index`` int64 [N] (rows of the audited dataset), ``boxes`` float32
    [N, 4] xyxy, ``labels`` int64 [N] (category ids), ``score`` float64 [N]
    (the ranking score: the calibrated probability, averaged over detection
    sets), ``detector_score`` float32 [N] (the raw score of the kept
    detection), ``support`` int64 [N] (how many detection sets found it),
    ``source`` int64 [N] (which set the kept detection came from).
    """

    image_index: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    score: np.ndarray
    detector_score: np.ndarray
    support: np.ndarray
    source: np.ndarray

    def __len__(self) -> int:
        return len(self.score)


def _same_group_pairs(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs ``(i, j)``, ``i != j``, with ``key[i] == key[j]`` (vectorised)."""
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    start = np.searchsorted(sorted_key, sorted_key, side="left")
    count = np.searchsorted(sorted_key, sorted_key, side="right") - start
    n_pairs = int(count.sum())
    if n_pairs == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    first = np.repeat(np.arange(len(key)), count)
    within = np.arange(n_pairs) - np.repeat(np.cumsum(count) - count, count)
    second = start[first] + within
    keep = first != second
    return order[first[keep]], order[second[keep]]


def score_candidates(
    gt: DetectionDataset,
    detection_sets: list[Detections],
    calibrations: list[Calibration | FoldCalibration],
    *,
    iou: float = 0.5,
    same_class: bool = False,
    agreement_iou: float = 0.5,
    masks: list[np.ndarray] | None = None,
) -> Candidates:
    """The candidates of one or more detection sets on ``gt``'s images with their scores, in input order.

    ``calibrations[r]`` calibrates ``detection_sets[r]``; ``masks[r]`` may give
    :func:`unannotated` of set ``r`` if already computed. See the module
    docstring for how several sets combine; :func:`rank` sorts the result.
    """
    if len(detection_sets) != len(calibrations) or not detection_sets:
        raise ValueError("give one calibration per detection set, and at least one set")
    parts = []
    for r, (dets, cal) in enumerate(zip(detection_sets, calibrations, strict=True)):
        mask = masks[r] if masks is not None else unannotated(gt, dets, iou=iou, same_class=same_class)
        cand = dets.select(mask)
        parts.append((cand, cal.probabilities(cand), np.full(len(cand), r, dtype=np.int64)))
    if len(parts) == 1:
        cand, prob, source = parts[0]
        return Candidates(
            cand.image_index, cand.boxes, cand.labels, prob, cand.scores, np.ones(len(prob), dtype=np.int64), source
        )
    image_index = np.concatenate([c.image_index for c, _, _ in parts])
    boxes = np.concatenate([c.boxes for c, _, _ in parts]).reshape(-1, 4)
    labels = np.concatenate([c.labels for c, _, _ in parts])
    raw = np.concatenate([c.scores for c, _, _ in parts])
    prob = np.concatenate([p for _, p, _ in parts])
    source = np.concatenate([s for _, _, s in parts])
    n_sets = len(detection_sets)
    keep = np.ones(len(prob), dtype=bool)
    score = prob.copy()
    support = np.ones(len(prob), dtype=np.int64)
    if len(prob):
        _, label_rank = np.unique(labels, return_inverse=True)
        key = image_index * (int(label_rank.max()) + 1) + label_rank
        i, j = _same_group_pairs(key)
        other = source[i] != source[j]
        i, j = i[other], j[other]
        close = box_iou_pairs(boxes[i], boxes[j]) >= agreement_iou
        i, j = i[close], j[close]
        best = np.zeros((len(prob), n_sets))
        best[np.arange(len(prob)), source] = prob
        np.maximum.at(best, (i, source[j]), prob[j])
        score = best.mean(axis=1)
        present = best > 0
        present[np.arange(len(prob)), source] = True  # its own set found it, even at probability 0
        support = present.sum(axis=1)
        # keep only the best of each group: drop i when an overlapping j of another set ranks higher
        beaten = (score[j] > score[i]) | ((score[j] == score[i]) & ((raw[j] > raw[i]) | ((raw[j] == raw[i]) & (j < i))))
        keep[i[beaten]] = False
    return Candidates(image_index[keep], boxes[keep], labels[keep], score[keep], raw[keep], support[keep], source[keep])


def rank(candidates: Candidates, limit: int | None = None) -> Candidates:
    """``candidates`` best first (score, then raw detector score, then input order); only the best ``limit``.

    With ``limit`` the order is found with a partition plus a sort of the top
    ``limit``, so ranking 100M candidates for a top 100,000 costs ``O(N)``.
    """
    n = len(candidates)
    index = np.arange(n)
    if limit is not None and limit < n:
        # everything strictly better than the limit-th score, plus ties at it (sorted below)
        cut = np.partition(-candidates.score, limit - 1)[limit - 1]
        index = np.flatnonzero(-candidates.score <= cut)
    order = index[np.lexsort((index, -candidates.detector_score[index].astype(np.float64), -candidates.score[index]))]
    if limit is not None:
        order = order[:limit]
    c = candidates
    return Candidates(
        c.image_index[order],
        c.boxes[order].astype(np.float32),
        c.labels[order],
        c.score[order],
        c.detector_score[order].astype(np.float32),
        c.support[order],
        c.source[order],
    )


def rank_candidates(
    gt: DetectionDataset,
    detection_sets: list[Detections],
    calibrations: list[Calibration | FoldCalibration],
    *,
    iou: float = 0.5,
    same_class: bool = False,
    agreement_iou: float = 0.5,
    limit: int | None = None,
) -> Candidates:
    """:func:`score_candidates` then :func:`rank`: the candidates, best first."""
    return rank(
        score_candidates(gt, detection_sets, calibrations, iou=iou, same_class=same_class, agreement_iou=agreement_iou),
        limit,
    )


# ------------------------------------------------------------------ summary
@dataclass
class ClassSummary:
    """One class's audit figures (see :func:`summarize`)."""

    category_id: int
    name: str
    annotated: int
    candidates: int
    expected_missing: float
    missing_low: float
    missing_high: float
    annotation_recall: float | None
    recall_low: float | None
    recall_high: float | None
    detector_recall: float

    def to_json(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else round(float(v), 4)

        return {
            "category_id": self.category_id,
            "name": self.name,
            "annotated": self.annotated,
            "candidates": self.candidates,
            "expected_missing": r(self.expected_missing),
            "missing_interval": [r(self.missing_low), r(self.missing_high)],
            "annotation_recall": r(self.annotation_recall),
            "annotation_recall_interval": [r(self.recall_low), r(self.recall_high)],
            "detector_recall": r(self.detector_recall),
        }


def summarize(
    gt: DetectionDataset, candidates: Candidates, *, detector_recall: dict[int, float] | None = None, z: float = 1.96
) -> list[ClassSummary]:
    """Per category of ``gt`` (and a final ``all`` row, id 0): annotated boxes and the estimated missing ones.

    ``M = sum(p) / r`` over the class's candidates with ``r`` the detector's
    recall (1 when ``detector_recall`` lacks the class), interval
    ``M +- z * sqrt(sum p (1 - p)) / r`` clipped at 0; annotation recall
    ``n / (n + M)`` with the interval's ends mapped the same way. A class whose
    detector recall is 0 (it finds none of the validation boxes) gets ``nan``
    (``null`` in JSON, ``unknown`` in the table), and so does the ``all`` row.

    >>> from softsampling.structures.records import Category
    >>> gt = DetectionDataset.from_lists(
    ...     images=[{"id": 1, "file_name": "a.png", "width": 9, "height": 9}],
    ...     boxes=[{"image_index": 0, "bbox": [0, 0, 2, 2], "label": 1}],
    ...     categories=[Category(1, "a")],
    ... )
    >>> c = Candidates(
    ...     np.zeros(2, np.int64),
    ...     np.zeros((2, 4)),
    ...     np.array([1, 1]),
    ...     np.array([1.0, 0.5]),
    ...     np.zeros(2),
    ...     np.ones(2, np.int64),
    ...     np.zeros(2, np.int64),
    ... )
    >>> s = summarize(gt, c)[0]
    >>> s.expected_missing, round(s.annotation_recall, 3)
    (1.5, 0.4)
    """
    ids = np.array(sorted({c.id for c in gt.categories}), dtype=np.int64)

    def per_class(labels: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        row = class_rows(ids, labels)
        ok = row >= 0
        return np.bincount(row[ok], weights=None if weights is None else weights[ok], minlength=len(ids))

    p = candidates.score.astype(np.float64)
    counts, sums, variances = (
        per_class(candidates.labels),
        per_class(candidates.labels, p),
        per_class(candidates.labels, p * (1 - p)),
    )
    annotated = per_class(gt.labels)
    rows = []
    total_n, total_count, total_m, total_var = 0, 0, 0.0, 0.0  # m and var: nan if any class is unknown
    for cat in gt.categories:
        k = int(np.searchsorted(ids, cat.id))
        r = (detector_recall or {}).get(cat.id, 1.0)
        n, count = int(annotated[k]), int(counts[k])
        # a detector that finds none of the class's validation boxes cannot estimate what is missing
        m, var = (float(sums[k]) / r, float(variances[k]) / r**2) if r > 0 else (float("nan"), float("nan"))
        rows.append(_class_row(cat.id, cat.name, n, count, m, var, z, r))
        total_n, total_count, total_m, total_var = total_n + n, total_count + count, total_m + m, total_var + var
    rows.append(_class_row(0, "all", total_n, total_count, total_m, total_var, z, float("nan")))
    return rows


def _class_row(cid: int, name: str, n: int, count: int, m: float, var: float, z: float, r: float) -> ClassSummary:
    half = z * math.sqrt(max(var, 0.0)) if math.isfinite(var) else float("nan")
    low, high = (max(0.0, m - half), m + half) if math.isfinite(m) else (float("nan"), float("nan"))

    def recall(missing: float) -> float | None:
        return n / (n + missing) if math.isfinite(missing) and n + missing > 0 else None

    return ClassSummary(
        cid, name, n, count, m, low, high, recall(m), recall(high), recall(low), r if math.isfinite(r) else float("nan")
    )


def format_summary(rows: list[ClassSummary]) -> str:
    """The printed table: one line per class, the ``all`` row last."""
    head = (
        f"{'class':<16} {'annotated':>9} {'candidates':>10} {'est. missing':>12} {'95% interval':>17} "
        f"{'annot. recall':>13} {'det. recall':>11}"
    )
    lines = [head, "-" * len(head)]
    for s in rows:
        interval = f"[{s.missing_low:.1f}, {s.missing_high:.1f}]"
        rec = "-" if s.annotation_recall is None else f"{100 * s.annotation_recall:.1f}%"
        det = "-" if not math.isfinite(s.detector_recall) else f"{100 * s.detector_recall:.1f}%"
        missing = f"{s.expected_missing:.1f}" if math.isfinite(s.expected_missing) else "unknown"
        if not math.isfinite(s.expected_missing):
            interval = "-"
        lines.append(
            f"{s.name[:16]:<16} {s.annotated:>9} {s.candidates:>10} {missing:>12} {interval:>17} {rec:>13} {det:>11}"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------ output
def _json_id(value: Any) -> Any:
    return int(value) if isinstance(value, (int, np.integer)) else str(value)


def candidates_to_json(gt: DetectionDataset, candidates: Candidates) -> list[dict[str, Any]]:
    """COCO results entries, best first: ``image_id``, ``file_name``, ``category_id``, ``bbox`` [x, y, w, h],
    ``score`` (the ranking score), ``rank`` (1 = best, the candidate's id in decisions), ``detector_score``,
    ``support``."""
    out = []
    boxes = candidates.boxes.astype(np.float64)
    for k in range(len(candidates)):
        x1, y1, x2, y2 = boxes[k].tolist()
        row = int(candidates.image_index[k])
        out.append(
            {
                "image_id": _json_id(gt.image_ids[row]),
                "file_name": gt.file_names[row],
                "category_id": int(candidates.labels[k]),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(candidates.score[k]),
                "rank": k + 1,
                "detector_score": float(candidates.detector_score[k]),
                "support": int(candidates.support[k]),
            }
        )
    return out


# ------------------------------------------------------------------ merge
@dataclass(frozen=True)
class Addition:
    """One accepted candidate to add: image row, xyxy box, category id, and its candidate rank."""

    image_index: int
    box: tuple[float, float, float, float]
    label: int
    rank: int


def merge_boxes(ds: DetectionDataset, additions: list[Addition]) -> tuple[DetectionDataset, np.ndarray]:
    """``ds`` with ``additions`` appended as ordinary boxes (no flags), and their new box ids.

    New ids continue after the largest existing one. Format extras of the
    boxes (``box_extra``) are extended so that each writer writes the new boxes
    as it writes boxes it created itself (COCO: ``bbox`` and ``area``; VOC:
    a plain ``<object>``; Open Images: Source ``softsampling``, Confidence 1,
    unknown occlusion/depiction/inside flags).
    """
    n = len(additions)
    start = int(ds.box_ids.max()) + 1 if ds.num_boxes else 1
    new_ids = np.arange(start, start + n, dtype=np.int64)
    boxes = np.array([a.box for a in additions], dtype=np.float32).reshape(n, 4)
    image = np.array([a.image_index for a in additions], dtype=np.int64)
    labels = np.array([a.label for a in additions], dtype=np.int64)
    false = np.zeros(n, dtype=bool)
    extra = dict(ds.extra)
    box_extra = {key: _extend_column(key, col, ds, image, boxes, extra) for key, col in ds.box_extra.items()}
    merged = dataclasses.replace(
        ds,
        box_image=np.concatenate([ds.box_image, image]),
        boxes=np.concatenate([ds.boxes, boxes]),
        labels=np.concatenate([ds.labels, labels]),
        box_ids=np.concatenate([ds.box_ids, new_ids]),
        iscrowd=np.concatenate([ds.iscrowd, false]),
        difficult=np.concatenate([ds.difficult, false]),
        group_of=np.concatenate([ds.group_of, false]),
        truncated=np.concatenate([ds.truncated, false]),
        box_extra=box_extra,
        extra=extra,
    )
    return merged, new_ids


def _extend_column(
    key: str, column: Any, ds: DetectionDataset, image: np.ndarray, boxes: np.ndarray, extra: dict[str, Any]
) -> Any:
    """``column`` of ``box_extra`` with one entry per new box (see :func:`merge_boxes`)."""
    n = len(boxes)
    xywh = [[float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2 in boxes.astype(np.float64)]
    if key == "coco_bbox":
        return list(column) + xywh
    if key == "coco_fields":
        return list(column) + [{"area": b[2] * b[3]} for b in xywh]
    if key == "voc_fields":
        return list(column) + [
            [["name", ""], ["pose", "Unspecified"], ["truncated", ""], ["difficult", ""], ["bndbox", []]]
            for _ in range(n)
        ]
    if key in ("oi_source", "oi_confidence") and "openimages" in extra:
        oi = dict(extra["openimages"])
        vocab_key, text = ("sources", "softsampling") if key == "oi_source" else ("confidences", "1")
        vocab = list(oi.get(vocab_key, []))
        if text not in vocab:
            vocab.append(text)
        oi[vocab_key] = vocab
        extra["openimages"] = oi
        return np.concatenate([column, np.full(n, vocab.index(text), dtype=column.dtype)])
    if key == "oi_flags":
        return np.concatenate([column, np.tile(np.array([-1, 0, 0, -1, -1], dtype=column.dtype), (n, 1))])
    if key == "oi_coords":
        return np.concatenate([column, np.full((n, 4), np.nan)])  # no original text: the writer formats pixel / size
    if key == "oi_decimals":
        from softsampling.data.openimages import NO_TEXT

        return np.concatenate([column, np.full((n, *column.shape[1:]), NO_TEXT, dtype=column.dtype)])
    if isinstance(column, np.ndarray):
        fill = b"" if column.dtype.kind == "S" else ("" if column.dtype.kind == "U" else 0)
        return np.concatenate([column, np.full((n, *column.shape[1:]), fill, dtype=column.dtype)])
    return list(column) + [None] * n


# ------------------------------------------------------------------ quality against known missing boxes
@dataclass
class RankingQuality:
    """How well a ranking finds known missing boxes (e.g. a curation manifest's dropped boxes)."""

    average_precision: float
    recall_at_k: float
    k: int
    true_positives: int
    missing: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def ranking_quality(
    missing: DetectionDataset, image_index: np.ndarray, boxes: np.ndarray, labels: np.ndarray, *, iou: float = 0.5
) -> RankingQuality:
    """AP and recall at K = #missing of a ranking (rows best first) against the boxes truly ``missing``.

    A ranked box is a true positive when it has the class of a missing box of
    its image and IoU ``>= iou``; each missing box counts once, taken by the
    best-ranked box (the VOC metric's greedy rule). AP is all-point
    interpolated over the ranking, with every missing box as a positive
    (a box the ranking never lists lowers the recall).

    >>> from softsampling.structures.records import Category
    >>> miss = DetectionDataset.from_lists(
    ...     images=[{"id": 1, "file_name": "a.png", "width": 50, "height": 50}],
    ...     boxes=[{"image_index": 0, "bbox": [0, 0, 10, 10], "label": 1}],
    ...     categories=[Category(1, "a")],
    ... )
    >>> q = ranking_quality(miss, np.array([0, 0]), np.array([[30, 30, 40, 40], [0, 0, 10, 10]]), np.array([1, 1]))
    >>> q.average_precision, q.recall_at_k
    (0.5, 0.0)
    """
    n = len(labels)
    ranks = np.arange(n)
    dets = Detections(image_index, boxes, labels, (n - ranks).astype(np.float64) / max(n, 1))
    tp = match_detections(missing, dets, iou=iou).tp if n else np.zeros(0, dtype=bool)
    total = missing.num_boxes
    if total == 0:
        return RankingQuality(float("nan"), float("nan"), 0, 0, 0)
    hits = np.cumsum(tp)
    precision = hits / (ranks + 1)
    # all-point interpolation: precision made non-increasing from the right, summed over recall steps
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if n else precision
    ap = float(np.sum(envelope[tp]) / total)
    k = total
    return RankingQuality(ap, float(hits[min(k, n) - 1] / total) if n else 0.0, k, int(tp.sum()), total)
