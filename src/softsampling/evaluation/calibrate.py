"""Per-class score thresholds: pick each class's operating point on a validation split.

A detector's raw scores are not comparable across classes, and a detector
trained with missing labels scores lower overall (the paper's Fig. 2). Before
deployment one therefore picks, per class, the score threshold that gives the
best precision/recall trade-off on held-out annotated images.

Steps:

1. :func:`match_detections` flags every detection as a true positive or not,
   with the VOC devkit's greedy rule (see :mod:`softsampling.evaluation.voc_metric`:
   rank by score, best-IoU box, ``IoU >= iou``, each box matched once,
   detections on ``difficult`` boxes ignored). Greedy matching in score order
   commutes with thresholding: a detection's flag depends only on detections
   ranked above it, and a threshold keeps a prefix of the ranking, so the
   flags computed once on all detections hold for every threshold.
2. :func:`choose_threshold` (one class) scans every distinct score ``s`` as a
   candidate threshold, keeping detections with ``score >= s``, and returns
   the best candidate under a criterion:

   - ``"f1"``: maximise ``F1 = 2 TP / (TP + FP + num_gt)``; on a tie the
     highest threshold (fewest detections) wins.
   - ``"precision=P"``: the lowest threshold (highest recall) whose precision
     is ``>= P``.
   - ``"recall=R"``: the highest threshold (fewest detections) whose recall
     is ``>= R``.

   The threshold returned is a detection score itself, so applying it with
   ``>=`` reproduces the chosen operating point exactly (tied scores are kept
   or dropped together). It returns ``None`` when no candidate qualifies: the
   class has no ground truth or no detections, F1 is 0 everywhere (no true
   positive), or the precision/recall target is out of reach.
3. :func:`calibrate_thresholds` does this for every class and records
   precision/recall/F1 before (at a fixed ``default_threshold``) and after.
   A class for which :func:`choose_threshold` returns ``None`` keeps
   ``default_threshold``, and its ``note`` says why: the validation data says
   nothing useful about it, so calibration leaves it as it was.

Counting conventions: precision is 0 when nothing is kept, recall is 0 when
the class has no ground truth, and F1 is 0 when both are 0.

Example (one class, two boxes; the 0.6 detection is a false positive):
    >>> import numpy as np
    >>> scores = np.array([0.9, 0.6, 0.4], dtype=np.float32)
    >>> tp = np.array([True, False, True])
    >>> round(choose_threshold(scores, tp, num_gt=2), 6)  # F1: 0.667, 0.5, 0.8
    0.4
    >>> round(choose_threshold(scores, tp, num_gt=2, criterion="precision=0.9"), 6)
    0.9
    >>> choose_threshold(scores, tp, num_gt=0) is None
    True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from softsampling.errors import SoftSamplingError

# The VOC metric's matching, so that calibration and mAP agree on what a true positive is.
from softsampling.evaluation.voc_metric import DetectionMatches, match_detections  # noqa: F401 (re-exported)
from softsampling.structures.detections import Detections
from softsampling.structures.records import DetectionDataset

CRITERIA_HELP = (
    "f1 (maximise F1), precision=P (highest recall with precision >= P), recall=R (fewest detections with recall >= R)"
)


# ------------------------------------------------------------ threshold choice
def parse_criterion(text: str) -> tuple[str, float | None]:
    """``"f1"`` -> ``("f1", None)``; ``"precision=0.9"`` -> ``("precision", 0.9)``; same for ``recall``.

    >>> parse_criterion("f1"), parse_criterion("recall=0.8")
    (('f1', None), ('recall', 0.8))
    """
    name, _, value = text.strip().partition("=")
    name = name.strip().lower()
    if name == "f1" and not value:
        return "f1", None
    if name in ("precision", "recall") and value:
        try:
            target = float(value)
        except ValueError:
            target = -1.0
        if 0.0 < target <= 1.0:
            return name, target
    raise SoftSamplingError(f"unknown criterion {text!r}", fix=f"use one of: {CRITERIA_HELP}; targets in (0, 1]")


def choose_threshold(scores: np.ndarray, tp: np.ndarray, num_gt: int, criterion: str = "f1") -> float | None:
    """The score threshold of one class that is best under ``criterion`` (see the module docstring).

    Args:
        scores: float [n], the class's detection scores (ignored detections removed).
        tp: bool [n], true positive flags (from :func:`match_detections`).
        num_gt: number of (non-difficult) ground-truth boxes of the class.
        criterion: ``"f1"``, ``"precision=P"`` or ``"recall=R"``.

    Returns:
        One of ``scores`` (as a Python float); keeping ``scores >= threshold``
        gives the chosen operating point. ``None`` when no threshold qualifies.
    """
    kind, target = parse_criterion(criterion)
    scores = np.asarray(scores).reshape(-1)
    tp = np.asarray(tp, dtype=bool).reshape(-1)
    if len(scores) != len(tp):
        raise ValueError(f"scores and tp differ in length: {len(scores)} vs {len(tp)}")
    if len(scores) == 0 or num_gt <= 0:
        return None

    # Operating points: keep every detection down to the end of a group of equal scores.
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    ranked = scores[order]
    tp_cum = np.cumsum(tp[order])
    fp_cum = np.cumsum(~tp[order])
    ends = np.append(np.flatnonzero(ranked[1:] != ranked[:-1]), len(ranked) - 1)
    n_tp = tp_cum[ends].astype(np.float64)
    n_fp = fp_cum[ends].astype(np.float64)
    thresholds = ranked[ends]  # descending
    precision = n_tp / (n_tp + n_fp)  # n_tp + n_fp >= 1 at every point
    recall = n_tp / num_gt

    if kind == "f1":
        f1 = 2 * n_tp / (n_tp + n_fp + num_gt)
        best = int(np.argmax(f1))  # first maximum = highest threshold among ties
        return float(thresholds[best]) if f1[best] > 0 else None
    if kind == "precision":
        ok = np.flatnonzero((precision >= target) & (n_tp > 0))
        return float(thresholds[ok[-1]]) if ok.size else None  # lowest qualifying threshold
    ok = np.flatnonzero(recall >= target)
    return float(thresholds[ok[0]]) if ok.size else None  # highest qualifying threshold


@dataclass
class OperatingPoint:
    """Counts and rates of one class when keeping detections with ``score >= threshold``."""

    threshold: float
    num_det: int  # kept detections (ignored ones excluded)
    tp: int
    fp: int
    num_gt: int
    precision: float
    recall: float
    f1: float


def operating_point(scores: np.ndarray, tp: np.ndarray, num_gt: int, threshold: float) -> OperatingPoint:
    """Precision, recall and F1 of one class at ``threshold`` (conventions in the module docstring).

    >>> operating_point(np.array([0.9, 0.6, 0.4]), np.array([True, False, True]), 2, 0.5)
    OperatingPoint(threshold=0.5, num_det=2, tp=1, fp=1, num_gt=2, precision=0.5, recall=0.5, f1=0.5)
    """
    keep = np.asarray(scores) >= threshold
    n_tp = int(np.count_nonzero(np.asarray(tp, dtype=bool) & keep))
    n_fp = int(np.count_nonzero(keep)) - n_tp
    precision = n_tp / (n_tp + n_fp) if n_tp + n_fp else 0.0
    recall = n_tp / num_gt if num_gt else 0.0
    f1 = 2 * n_tp / (n_tp + n_fp + num_gt) if n_tp else 0.0
    return OperatingPoint(float(threshold), n_tp + n_fp, n_tp, n_fp, int(num_gt), precision, recall, f1)


# ------------------------------------------------------------------ all classes
@dataclass
class ClassCalibration:
    """One class's result: the threshold to use and the operating points before and after."""

    category_id: int
    name: str
    threshold: float
    before: OperatingPoint
    after: OperatingPoint
    note: str | None  # why the default was kept; None when calibrated

    def to_json(self) -> dict[str, Any]:
        return {
            "category_id": self.category_id,
            "threshold": self.threshold,
            "note": self.note,
            "before": asdict(self.before),
            "after": asdict(self.after),
        }


def calibrate_thresholds(
    gt: DetectionDataset,
    dets: Detections,
    category_ids: list[int] | None = None,
    *,
    iou: float = 0.5,
    criterion: str = "f1",
    default_threshold: float = 0.05,
) -> list[ClassCalibration]:
    """Choose a threshold for each class of ``category_ids`` (default: the dataset's categories).

    ``dets`` refer to rows and category ids of ``gt``. A class whose threshold
    cannot be chosen keeps ``default_threshold``; ``before`` is always measured
    at ``default_threshold``. For ``"f1"``, ``after.f1 >= before.f1``.
    """
    parse_criterion(criterion)  # fail before any work
    matches = match_detections(gt, dets, iou)
    names = gt.category_names
    ids = [c.id for c in gt.categories] if category_ids is None else list(category_ids)
    counted = ~matches.ignored
    results = []
    for cid in ids:
        mine = counted & (dets.labels == cid)
        scores, tp = dets.scores[mine], matches.tp[mine]
        num_gt = matches.num_gt.get(int(cid), 0)
        chosen = choose_threshold(scores, tp, num_gt, criterion)
        note = None
        if chosen is None:
            note = _why_not(len(scores), num_gt, int(tp.sum()), criterion)
        threshold = float(default_threshold) if chosen is None else chosen
        results.append(
            ClassCalibration(
                int(cid),
                names.get(int(cid), str(cid)),
                threshold,
                before=operating_point(scores, tp, num_gt, default_threshold),
                after=operating_point(scores, tp, num_gt, threshold),
                note=note,
            )
        )
    return results


def _why_not(num_det: int, num_gt: int, num_tp: int, criterion: str) -> str:
    if num_gt == 0:
        return "no ground truth in this split; default threshold kept"
    if num_det == 0:
        return "no detections in this split; default threshold kept"
    if num_tp == 0:
        return "no true positive at any threshold; default threshold kept"
    return f"{criterion} is not reachable at any threshold; default threshold kept"


def format_calibration(results: list[ClassCalibration]) -> str:
    """Plain-text table: per class #GT, then threshold / precision / recall / F1 before and after.

    The last row is the mean over classes with ground truth (macro average).
    """
    head = (
        f"{'class':<16} {'#GT':>5} | {'before: thr':>11} {'P':>6} {'R':>6} {'F1':>6} | "
        f"{'after: thr':>10} {'P':>6} {'R':>6} {'F1':>6}  note"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        b, a = r.before, r.after
        lines.append(
            f"{r.name[:16]:<16} {b.num_gt:>5} | {b.threshold:>11.4f} {_pct(b.precision)} {_pct(b.recall)} "
            f"{_pct(b.f1)} | {a.threshold:>10.4f} {_pct(a.precision)} {_pct(a.recall)} {_pct(a.f1)}  "
            f"{r.note or ''}".rstrip()
        )
    with_gt = [r for r in results if r.before.num_gt > 0]
    if with_gt:

        def mean(attr: str, when: str) -> str:
            return _pct(float(np.mean([getattr(getattr(r, when), attr) for r in with_gt])))

        lines.append("-" * len(head))
        lines.append(
            f"{'mean':<16} {sum(r.before.num_gt for r in with_gt):>5} | {'':>11} {mean('precision', 'before')} "
            f"{mean('recall', 'before')} {mean('f1', 'before')} | {'':>10} {mean('precision', 'after')} "
            f"{mean('recall', 'after')} {mean('f1', 'after')}"
        )
    return "\n".join(lines)


def _pct(value: float) -> str:
    return f"{100.0 * value:6.1f}"
