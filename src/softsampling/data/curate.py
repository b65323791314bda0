"""Simulate missing annotations: drop boxes reproducibly, and record what was dropped.

The paper's protocol (``preset="uniform"``, Wu et al., BMVC 2019, Sec. 4):
drop a fraction ``rate`` of every class's boxes, so each class loses the same
share of its instances; images with a single box are never touched, and every
image keeps at least one box. Four literature presets drop per image instead
(see :data:`PRESETS` and docs/curate.md).

Which boxes count
    Crowd (COCO ``iscrowd``) and group-of (Open Images ``IsGroupOf``) boxes are
    regions, not instances: they are never dropped, and they do not count as
    "a box of the image" for the single-box and keep-one rules. Every other box
    (VOC ``difficult`` and ``truncated`` included) is *eligible*. ``n_c`` below
    is the number of eligible boxes of class ``c``.

The uniform protocol, exactly
    1. Every box gets a seeded random priority ``u`` (``numpy.random.default_rng(seed)``,
       one float per box in input order). High priority = dropped first.
    2. Every image with at least 2 eligible boxes picks one eligible box it
       always keeps, its *protected* box (:func:`protected_boxes`: the class
       is chosen to balance how many kept boxes each class must give up, the
       box within the class by lowest priority); an image with one eligible
       box has nothing droppable. The droppable boxes are the eligible,
       unprotected boxes of images with >= 2 eligible boxes.
    3. Class ``c`` drops its ``t_c = floor(rate * n_c + 1/2)`` droppable boxes of
       highest priority (round half up). If it has fewer droppable boxes than
       ``t_c`` it drops all of them, and the summary says the target was not met.

Why the protocol is nested (same seed: the boxes dropped at 30% are a subset
of those dropped at 40%, which are a subset of those dropped at 50%)
    Steps 1 and 2 do not depend on ``rate``: the priorities, the protected box of
    every image, and hence each class's droppable set ``D_c`` and its order by
    priority are the same at every rate. Step 3 drops a *prefix* of that fixed
    order, of length ``min(t_c, |D_c|)``, and ``t_c = floor(rate * n_c + 1/2)``
    never decreases when ``rate`` grows. A shorter prefix of the same sequence
    is a subset of a longer one, for every class, so the union over classes is
    nested too. The keep-one rule cannot break this, because it acts only
    through the protected box, which is fixed before the rate is looked at:
    every image keeps its protected box at every rate.

Example:
    >>> import numpy as np
    >>> labels = np.array([1, 1, 2, 2, 2])  # class of each box
    >>> box_image = np.array([0, 0, 1, 1, 2])  # image 2 has a single box
    >>> eligible = np.ones(5, dtype=bool)
    >>> drop = choose_drops(labels, box_image, eligible, 3, rate=0.5, seed=0)
    >>> int(drop.sum()), bool(drop[4])  # one box of each class; never the lone box
    (2, False)
    >>> [int(drop[box_image == i].sum()) for i in range(3)]  # each image keeps >= 1 box
    [1, 1, 0]
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from softsampling import __version__
from softsampling.errors import SoftSamplingError
from softsampling.io import atomic_write
from softsampling.structures.records import DetectionDataset

PRESETS = ("uniform", "easy", "hard", "extreme", "keep1")
"""Curation protocols. ``uniform``: the paper's per-class rate (needs ``rate``).
The others drop per image and ignore ``rate``:
``easy`` drops one box of every image with >= 2 boxes; ``hard`` drops half of
each image's boxes, rounded down; ``extreme`` keeps one box per image (these
three as used by Co-mining, Wang et al., AAAI 2021); ``keep1`` keeps one box
per class per image (SIOD, Li et al., arXiv 2203.15353)."""

MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"
MANIFEST_SUFFIX = ".manifest.json"


# ----------------------------------------------------------------- pure core
def box_priorities(num_boxes: int, seed: int) -> np.ndarray:
    """``float64 [M]`` seeded random priorities, one per box in input order (high = dropped first)."""
    return np.random.default_rng(seed).random(num_boxes)


def drop_targets(eligible_per_class: np.ndarray, rate: float) -> np.ndarray:
    """``int64 [C]``: boxes to drop per class, ``floor(rate * n_c + 1/2)`` (round half up).

    >>> drop_targets(np.array([10, 5, 3, 1, 0]), 0.5).tolist()
    [5, 3, 2, 1, 0]
    """
    n = np.asarray(eligible_per_class, dtype=np.float64)
    # the tiny epsilon keeps products like 0.7 * 5 = 3.4999999999999996 on the intended side of .5
    return np.floor(rate * n + 0.5 + 1e-9).astype(np.int64)


def _rank_in_group(groups: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """``int64 [N]``: 0-based rank of each element within its group, highest priority first.

    Ties in priority go to the lower index. Same order as ``np.lexsort((-priority, groups))``,
    done as two stable sorts (priority, then group), which is about twice as fast.
    """
    n = len(groups)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = _stable_argsort(-priority)
    order = order[_stable_argsort(groups[order])]
    g = groups[order]
    is_start = np.empty(n, dtype=bool)
    is_start[0] = True
    np.not_equal(g[1:], g[:-1], out=is_start[1:])
    start_pos = np.maximum.accumulate(np.where(is_start, np.arange(n), 0))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - start_pos
    return rank


def _stable_argsort(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")``; non-negative integer keys below 2**16 go through
    numpy's radix sort (as ``uint16``), which is several times faster than the general one."""
    if keys.dtype.kind in "iu" and len(keys) and keys.min() >= 0 and keys.max() < 1 << 16:
        keys = keys.astype(np.uint16)
    return np.argsort(keys, kind="stable")


def _dense_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(uniques, codes)`` as ``np.unique(values, return_inverse=True)`` gives them, for an
    integer array; counted with ``np.bincount`` instead of sorted when the value range is small.

    >>> [a.tolist() for a in _dense_codes(np.array([7, -2, 7, 3]))]
    [[-2, 3, 7], [2, 0, 2, 1]]
    """
    values = np.asarray(values)
    if len(values) == 0 or values.dtype.kind not in "iu":
        uniques, codes = np.unique(values, return_inverse=True)
        return uniques, codes.reshape(-1).astype(np.int64)
    lo, hi = int(values.min()), int(values.max())
    if hi - lo >= max(2 * len(values), 1 << 16) or hi >= 1 << 63:  # sparse ids: sorting is cheaper
        uniques, codes = np.unique(values, return_inverse=True)
        return uniques, codes.reshape(-1).astype(np.int64)
    shifted = (values.astype(np.int64) - lo) if lo else values.astype(np.int64, copy=False)
    present = np.bincount(shifted, minlength=hi - lo + 1) > 0
    code_of = np.cumsum(present) - 1
    uniques = (np.flatnonzero(present) + lo).astype(values.dtype)
    return uniques, code_of[shifted]


def _group_starts(sorted_groups: np.ndarray) -> np.ndarray:
    """``bool [N]``: True where a run of equal values begins in a sorted array (N >= 1)."""
    is_start = np.empty(len(sorted_groups), dtype=bool)
    is_start[0] = True
    np.not_equal(sorted_groups[1:], sorted_groups[:-1], out=is_start[1:])
    return is_start


def _first_true_per_group(mask: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Positions of the first True of each group, for ``group`` non-decreasing (one per group that has one)."""
    hits = np.flatnonzero(mask)
    if len(hits) == 0:
        return hits
    return hits[_group_starts(group[hits])]


def _lowest_in_group(groups: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """Indices (ascending) of the lowest-priority element of each group, ties to the lower index.

    The elements with ``_rank_in_group(groups, -priority) == 0``, found with one
    stable sort of the groups and a per-group minimum instead of a sort by priority.
    """
    if len(groups) == 0:
        return np.zeros(0, dtype=np.int64)
    order = _stable_argsort(groups)
    is_start = _group_starts(groups[order])
    group = np.cumsum(is_start) - 1
    pri = priority[order]
    lowest = np.minimum.reduceat(pri, np.flatnonzero(is_start))
    return np.sort(order[_first_true_per_group(pri == lowest[group], group)])


def _top_in_group(groups: np.ndarray, priority: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``bool [N]``: ``_rank_in_group(groups, priority) < counts[groups]``, i.e. the ``counts[g]``
    elements of highest priority in each group ``g`` (ties to the lower index).

    ``groups`` are small non-negative ints (class rows). Each group is selected with
    ``np.partition`` (linear time) instead of sorting every element by priority.
    """
    out = np.zeros(len(groups), dtype=bool)
    if len(groups) == 0:
        return out
    order = _stable_argsort(groups)  # index order within each group
    bounds = np.searchsorted(groups[order], np.arange(int(groups.max()) + 2))
    for g in range(len(bounds) - 1):
        lo, hi = int(bounds[g]), int(bounds[g + 1])
        t = min(int(counts[g]), hi - lo)
        if t <= 0:
            continue
        members = order[lo:hi]
        if t == hi - lo:
            out[members] = True
            continue
        pri = priority[members]
        threshold = np.partition(pri, len(pri) - t)[len(pri) - t]  # the t-th highest priority
        above = pri > threshold
        at = np.flatnonzero(pri == threshold)[: t - int(above.sum())]  # ties: lower index first
        out[members[above]] = True
        out[members[at]] = True
    return out


def _check_inputs(labels: np.ndarray, box_image: np.ndarray, eligible: np.ndarray, num_images: int) -> None:
    m = len(labels)
    if box_image.shape != (m,) or eligible.shape != (m,):
        raise ValueError(
            f"labels, box_image and eligible must all have shape ({m},); got {box_image.shape} and {eligible.shape}"
        )
    if m and (box_image.min() < 0 or box_image.max() >= num_images):
        raise ValueError(f"box_image must index 0..{num_images - 1}")


def check_protocol(rate: float | None, preset: str) -> None:
    """Raise :class:`SoftSamplingError` unless ``preset`` is known and ``rate`` fits it.

    ``uniform`` needs a rate in [0, 1]; the per-image presets take none (``rate=None``).
    """
    if preset not in PRESETS:
        raise SoftSamplingError(f"unknown preset {preset!r}", fix=f"use one of {', '.join(PRESETS)}")
    if preset == "uniform":
        if rate is None or not (0.0 <= float(rate) <= 1.0) or math.isnan(float(rate)):
            raise SoftSamplingError(
                f"drop rate must be a number in [0, 1], got {rate!r}",
                fix="pass e.g. --drop-rate 0.3 (30% of each class's boxes)",
            )
    elif rate is not None:
        raise SoftSamplingError(
            f"preset {preset!r} fixes how many boxes each image loses, so it takes no drop rate",
            fix="leave out --drop-rate, or use --preset uniform",
        )


def protected_boxes(
    labels: np.ndarray,
    box_image: np.ndarray,
    eligible: np.ndarray,
    num_images: int,
    priority: np.ndarray,
    *,
    rounds: int = 64,
) -> np.ndarray:
    """``bool [M]``: the one eligible box that each image with >= 2 eligible boxes always keeps.

    Which class an image keeps matters: a kept box can no longer be dropped, so
    a class kept in many images may fall short of its target. The choice
    balances that. ``m_c`` counts class ``c``'s eligible boxes in images with
    >= 2 eligible boxes, ``p_c`` the images that keep a box of ``c`` so far;
    with targets rounded half up, ``c`` can meet any rate below
    ``(m_c - p_c + 1/2) / n_c``. Its *headroom* is that bound after keeping one
    more box, ``(m_c - p_c - 1/2) / n_c``. Images are visited in a fixed order
    (those with a single class first: they have no choice; then by number of
    classes and image row), in ``rounds`` batches; each image keeps a box of
    the class present in it with the most headroom at the start of its batch,
    ties going to the lowest priority. Within that class, the image keeps the box of
    lowest priority. Nothing here depends on the drop rate, which is what makes
    the uniform protocol nested.
    """
    m = len(box_image)
    out = np.zeros(m, dtype=bool)
    idx = np.flatnonzero(eligible)
    if len(idx) == 0:
        return out
    img = box_image[idx]
    _, cls = _dense_codes(labels[idx])
    pri = priority[idx]
    k = int(cls.max()) + 1
    n_in_image = np.bincount(img, minlength=num_images)
    multi = n_in_image[img] >= 2
    n_c = np.bincount(cls, minlength=k).astype(np.float64)
    m_c = np.bincount(cls[multi], minlength=k).astype(np.float64)

    # candidates: the lowest-priority box of each (image, class) pair in multi-box images
    sub = np.flatnonzero(multi)
    cand = sub[_lowest_in_group(img[sub] * k + cls[sub], pri[sub])]
    c_img, c_cls, c_pri = img[cand], cls[cand], pri[cand]
    classes_in_image = np.bincount(c_img, minlength=num_images)

    # visiting order: single-class images (batch 0), then the rest in `rounds` batches
    images = np.flatnonzero(classes_in_image >= 1)
    images = images[_stable_argsort(classes_in_image[images])]  # by number of classes, then image row
    batch_of_image = np.zeros(num_images, dtype=np.int64)
    choice = images[classes_in_image[images] >= 2]
    batch_of_image[choice] = 1 + (np.arange(len(choice)) * rounds) // max(len(choice), 1)
    c_batch = batch_of_image[c_img]
    order = _stable_argsort(c_img)  # by batch, then image, then box index (= np.lexsort((c_img, c_batch)))
    order = order[_stable_argsort(c_batch[order])]
    c_img, c_cls, c_pri, cand, c_batch = c_img[order], c_cls[order], c_pri[order], cand[order], c_batch[order]
    bounds = np.searchsorted(c_batch, np.arange(rounds + 2))

    kept_per_class = np.zeros(k, dtype=np.float64)
    for b in range(rounds + 1):
        lo, hi = bounds[b], bounds[b + 1]
        if lo == hi:
            continue
        headroom = (m_c - kept_per_class - 0.5) / np.maximum(n_c, 1.0)  # after keeping one more box
        bi, bc, bp = c_img[lo:hi], c_cls[lo:hi], c_pri[lo:hi]
        # per image (a run of equal `bi`): the class with the most headroom, then the lowest priority,
        # then the first in order -- what np.lexsort((bp, -headroom[bc], bi)) puts first, without sorting
        is_start = _group_starts(bi)
        starts = np.flatnonzero(is_start)
        group = np.cumsum(is_start) - 1
        room = headroom[bc]
        best_room = room == np.maximum.reduceat(room, starts)[group]
        pri_if_best = np.where(best_room, bp, np.inf)
        best = best_room & (bp == np.minimum.reduceat(pri_if_best, starts)[group])
        chosen = _first_true_per_group(best, group)
        kept_per_class += np.bincount(bc[chosen], minlength=k)
        out[idx[cand[lo:hi][chosen]]] = True
    return out


def choose_drops(
    labels: np.ndarray,
    box_image: np.ndarray,
    eligible: np.ndarray,
    num_images: int,
    *,
    rate: float | None,
    seed: int,
    preset: str = "uniform",
) -> np.ndarray:
    """Which boxes to drop: ``bool [M]``, True = dropped. Pure, vectorised, seeded.

    Args:
        labels: ``int [M]`` class id of each box (any integers).
        box_image: ``int [M]`` image row of each box, in ``0..num_images-1``.
        eligible: ``bool [M]`` False for boxes that must never be dropped
            (crowd / group-of); they do not count for the per-image rules.
        num_images: number of images ``I``.
        rate: fraction of each class's eligible boxes to drop (``uniform`` only;
            must be None for the other presets).
        seed: any non-negative int; same inputs and seed give the same mask.
        preset: one of :data:`PRESETS`; the module docstring gives the rules.

    Only eligible boxes are ever True. For every preset, an image with ``k >= 1``
    eligible boxes keeps at least one of them.

    >>> labels = np.array([1, 1, 1, 2])
    >>> box_image = np.array([0, 0, 0, 0])
    >>> ok = np.ones(4, dtype=bool)
    >>> choose_drops(labels, box_image, ok, 1, rate=None, seed=3, preset="extreme").sum()
    np.int64(3)
    >>> choose_drops(labels, box_image, ok, 1, rate=None, seed=3, preset="keep1").sum()  # 2 of class 1
    np.int64(2)
    """
    return _choose_drops(labels, box_image, eligible, num_images, rate=rate, seed=seed, preset=preset)[0]


def _choose_drops(
    labels: np.ndarray,
    box_image: np.ndarray,
    eligible: np.ndarray,
    num_images: int,
    *,
    rate: float | None,
    seed: int,
    preset: str,
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`choose_drops`, also returning the :func:`protected_boxes` mask it used (``uniform``
    only, else None), so that :func:`curate` can summarise without computing it again."""
    labels = np.asarray(labels, dtype=np.int64)
    box_image = np.asarray(box_image, dtype=np.int64)
    eligible = np.asarray(eligible, dtype=bool)
    _check_inputs(labels, box_image, eligible, num_images)
    check_protocol(rate, preset)
    m = len(labels)
    priority = box_priorities(m, seed)
    drop = np.zeros(m, dtype=bool)
    idx = np.flatnonzero(eligible)  # only eligible boxes take part from here on
    if len(idx) == 0:
        return drop, (np.zeros(m, dtype=bool) if preset == "uniform" else None)
    img = box_image[idx]
    pri = priority[idx]
    n_in_image = np.bincount(img, minlength=num_images)[img]  # eligible boxes of the box's image

    if preset == "uniform":
        classes, cls = _dense_codes(labels[idx])
        targets = drop_targets(np.bincount(cls, minlength=len(classes)), float(rate))  # type: ignore[arg-type]
        protected_all = protected_boxes(labels, box_image, eligible, num_images, priority)
        droppable = (n_in_image >= 2) & ~protected_all[idx]
        d = np.flatnonzero(droppable)
        drop[idx[d[_top_in_group(cls[d], pri[d], targets)]]] = True  # each class's t_c highest priorities
        return drop, protected_all

    if preset == "keep1":
        _, cls = _dense_codes(labels[idx])
        groups = img * (int(cls.max()) + 1) + cls  # one group per (image, class)
        _, group, group_size = np.unique(groups, return_inverse=True, return_counts=True)
        rank = _rank_in_group(group, pri)
        drop[idx[rank < group_size[group] - 1]] = True
        return drop, None

    rank = _rank_in_group(img, pri)  # 0 = highest priority in the image
    if preset == "easy":
        n_drop = np.where(n_in_image >= 2, 1, 0)
    elif preset == "hard":
        n_drop = n_in_image // 2
    else:  # extreme
        n_drop = n_in_image - 1
    drop[idx[rank < n_drop]] = True
    return drop, None


# ---------------------------------------------------------------- on datasets
@dataclass(frozen=True)
class ClassSummary:
    """One row of the curation summary. ``target`` is None for the per-image presets."""

    id: int
    name: str
    boxes: int  # all boxes of the class before curation (crowd / group-of included)
    eligible: int  # boxes that could count for dropping (n_c)
    target: int | None  # round-half-up(rate * n_c) for ``uniform``
    dropped: int
    note: str = ""  # why the target was not met, if it was not

    @property
    def after(self) -> int:
        return self.boxes - self.dropped

    @property
    def achieved_rate(self) -> float:
        """Dropped share of the class's eligible boxes (0 when it has none)."""
        return self.dropped / self.eligible if self.eligible else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "boxes": self.boxes,
            "eligible": self.eligible,
            "target": self.target,
            "dropped": self.dropped,
            "after": self.after,
            "achieved_rate": round(self.achieved_rate, 6),
            "note": self.note,
        }


@dataclass
class CurationResult:
    """What :func:`curate` returns: the curated dataset and how it came about."""

    dataset: DetectionDataset  # the input with the dropped boxes removed (images unchanged)
    dropped: np.ndarray  # bool [M] over the *input's* boxes
    classes: list[ClassSummary]
    rate: float | None
    seed: int
    preset: str

    @property
    def unmet(self) -> list[ClassSummary]:
        """Classes whose target could not be met (``uniform`` only)."""
        return [c for c in self.classes if c.target is not None and c.dropped < c.target]

    def totals(self) -> dict[str, int]:
        boxes = sum(c.boxes for c in self.classes)
        dropped = sum(c.dropped for c in self.classes)
        return {
            "images": self.dataset.num_images,
            "boxes_before": boxes,
            "eligible": sum(c.eligible for c in self.classes),
            "dropped": dropped,
            "boxes_after": boxes - dropped,
        }


def eligible_boxes(ds: DetectionDataset) -> np.ndarray:
    """``bool [M]``: boxes that may be dropped (not crowd, not group-of)."""
    return ~(ds.iscrowd | ds.group_of)


def curate(ds: DetectionDataset, *, rate: float | None, seed: int, preset: str = "uniform") -> CurationResult:
    """Drop boxes of ``ds`` by :func:`choose_drops`; return the curated dataset and a per-class summary.

    >>> from softsampling.structures.records import Category
    >>> ds = DetectionDataset.from_lists(
    ...     images=[{"id": i, "file_name": f"{i}.jpg", "width": 10, "height": 10} for i in range(2)],
    ...     boxes=[{"image_index": i // 2, "bbox": [0, 0, 5, 5], "label": 1} for i in range(4)],
    ...     categories=[Category(1, "cat")],
    ... )
    >>> res = curate(ds, rate=0.5, seed=0)
    >>> res.dataset.num_boxes, res.classes[0].dropped, res.dataset.boxes_per_image().tolist()
    (2, 2, [1, 1])
    """
    eligible = eligible_boxes(ds)
    drop, protected = _choose_drops(
        ds.labels, ds.box_image, eligible, ds.num_images, rate=rate, seed=seed, preset=preset
    )
    return CurationResult(
        dataset=ds.select_boxes(~drop),
        dropped=drop,
        classes=_summarise(ds, eligible, drop, protected, rate, preset),
        rate=None if rate is None else float(rate),
        seed=int(seed),
        preset=preset,
    )


def _summarise(
    ds: DetectionDataset,
    eligible: np.ndarray,
    drop: np.ndarray,
    protected: np.ndarray | None,
    rate: float | None,
    preset: str,
) -> list[ClassSummary]:
    """Per-class rows; ``protected`` is the :func:`protected_boxes` mask (``uniform`` only)."""
    present, codes = _dense_codes(ds.labels)
    ids = np.array(sorted({c.id for c in ds.categories} | set(present.tolist())), dtype=np.int64)
    names = ds.category_names
    cls = np.searchsorted(ids, present)[codes]  # class row of each box
    k = len(ids)
    boxes = np.bincount(cls, minlength=k)
    n_elig = np.bincount(cls[eligible], minlength=k)
    dropped = np.bincount(cls[drop], minlength=k)
    targets: np.ndarray | None = None
    alone = n_protected = None
    if preset == "uniform":
        targets = drop_targets(n_elig, float(rate))  # type: ignore[arg-type]
        n_in_image = np.bincount(ds.box_image[eligible], minlength=ds.num_images)[ds.box_image]
        alone = np.bincount(cls[eligible & (n_in_image == 1)], minlength=k)
        assert protected is not None
        n_protected = np.bincount(cls[protected & (n_in_image >= 2)], minlength=k)
    rows = []
    for i, cid in enumerate(ids.tolist()):
        note = ""
        target = None if targets is None else int(targets[i])
        if target is not None and dropped[i] < target:
            assert alone is not None and n_protected is not None
            note = (
                f"target {target} not reachable: {int(alone[i])} of {int(n_elig[i])} boxes are alone in "
                f"their image and {int(n_protected[i])} are the box their image keeps"
            )
        rows.append(
            ClassSummary(
                id=int(cid),
                name=names.get(cid, str(cid)),
                boxes=int(boxes[i]),
                eligible=int(n_elig[i]),
                target=target,
                dropped=int(dropped[i]),
                note=note,
            )
        )
    return rows


def format_summary(result: CurationResult) -> str:
    """The per-class table printed by ``softsampling curate`` (classes with no boxes are left out)."""
    rows = [c for c in result.classes if c.boxes]
    width = max([len("class")] + [len(c.name) for c in rows])
    head = f"{'class':<{width}}  {'before':>8}  {'after':>8}  {'dropped':>8}  {'target':>8}  {'rate':>6}"
    lines = [head, "-" * len(head)]
    for c in rows:
        target = "-" if c.target is None else str(c.target)
        flag = "  *" if c.note else ""
        lines.append(
            f"{c.name:<{width}}  {c.boxes:>8}  {c.after:>8}  {c.dropped:>8}  {target:>8}  {c.achieved_rate:>6.1%}{flag}"
        )
    t = result.totals()
    total_target = "-" if result.preset != "uniform" else str(sum(c.target or 0 for c in rows))
    rate = t["dropped"] / t["eligible"] if t["eligible"] else 0.0
    lines.append("-" * len(head))
    lines.append(
        f"{'total':<{width}}  {t['boxes_before']:>8}  {t['boxes_after']:>8}  {t['dropped']:>8}  "
        f"{total_target:>8}  {rate:>6.1%}"
    )
    lines.append("(rate = dropped / eligible boxes; crowd and group-of boxes are never dropped)")
    unmet = result.unmet
    if unmet:
        lines.append(f"* {len(unmet)} class(es) could not lose their full share without leaving an image empty:")
        lines.extend(f"  {c.name}: dropped {c.dropped}, {c.note}" for c in unmet)
    return "\n".join(lines)


# ------------------------------------------------------------------ manifest
def sha256_of_input(path: str | Path, *, suffixes: tuple[str, ...] = (".xml", ".txt", ".json", ".csv")) -> str:
    """Hex sha256 of a file's bytes; for a directory, of its annotation files in sorted order.

    For a directory, every file under it whose suffix is in ``suffixes`` is fed
    as ``relative/posix/path``, a NUL byte, its sha256 in hex and a newline, in
    sorted path order (images are skipped, symlinked folders are not entered,
    a ``manifest.json`` is left out); so renaming, editing, adding or removing
    an annotation file all change the hash.
    """
    path = Path(path)
    if path.is_file():
        return _sha256_file(path)
    h = hashlib.sha256()
    files = []
    for folder, _, names in os.walk(path):  # does not descend into symlinked folders (JPEGImages links)
        for name in names:
            p = Path(folder) / name
            if p.suffix.lower() in suffixes and name != MANIFEST_NAME and p.is_file():
                files.append((p.relative_to(path).as_posix(), p))
    files.sort()
    for rel, p in files:
        h.update(f"{rel}\0{_sha256_file(p)}\n".encode())
    return h.hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_path_for(curated_path: str | Path, *, is_dir: bool | None = None) -> Path:
    """Where the manifest of a curated output lives: ``DIR/manifest.json`` for a directory output
    (VOC), else the output's name with its suffix replaced by ``.manifest.json``.
    ``is_dir`` says which, for an output not written yet (default: look at the disk).

    >>> manifest_path_for("out/train_30.json", is_dir=False).as_posix()
    'out/train_30.manifest.json'
    >>> manifest_path_for("out/voc_30", is_dir=True).as_posix()
    'out/voc_30/manifest.json'
    """
    p = Path(curated_path)
    if is_dir is None:
        is_dir = p.is_dir()
    if is_dir:
        return p / MANIFEST_NAME
    return p.with_name(p.stem + MANIFEST_SUFFIX)


def find_manifest(curated_path: str | Path) -> Path | None:
    """The manifest beside a curated file or inside a curated directory, or None if there is none."""
    p = manifest_path_for(curated_path)
    return p if p.is_file() else None


def short_decimals(values: np.ndarray, max_decimals: int = 12) -> np.ndarray:
    """``float64`` copy of float32 ``values``, each rounded to the fewest decimals (up to
    ``max_decimals``) that still give back the same float32, so JSON shows ``12.3``, not
    ``12.300000190734863``. Values that need more decimals are kept exact.

    >>> short_decimals(np.array([12.3, 0.5, 1 / 3], dtype=np.float32)).tolist()
    [12.3, 0.5, 0.33333334]
    """
    x32 = np.asarray(values, dtype=np.float32)
    shape = x32.shape
    x32 = x32.reshape(-1)
    exact = x32.astype(np.float64)
    out = exact.copy()
    todo = np.isfinite(exact)
    for d in range(max_decimals + 1):
        if not todo.any():
            break
        cand = np.round(exact[todo], d)
        ok = cand.astype(np.float32) == x32[todo]
        where = np.flatnonzero(todo)[ok]
        out[where] = cand[ok]
        todo[where] = False
    return out.reshape(shape)


def _json_id(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def write_manifest(
    path: str | Path,
    original: DetectionDataset,
    result: CurationResult,
    *,
    input_path: str | Path,
    input_format: str,
    input_sha256: str,
    options: dict[str, Any] | None = None,
) -> None:
    """Write the manifest JSON atomically. Deterministic: no timestamps, no absolute output paths.

    Layout: metadata at the top (one key per line), one line per class in
    ``classes``, and the dropped boxes as parallel columns in ``dropped`` (one
    line per column) so a 7M-box manifest stays compact; ``dropped.boxes`` are
    ``xyxy`` absolute pixels, written as the shortest decimals that give back
    the same float32.
    """
    idx = np.flatnonzero(result.dropped)
    names = original.category_names
    labels = original.labels[idx]
    image_rows = original.box_image[idx]
    boxes = short_decimals(original.boxes[idx])
    meta: dict[str, Any] = {
        "softsampling_manifest": MANIFEST_VERSION,
        "tool_version": __version__,
        "input": str(input_path),
        "input_format": input_format,
        "input_sha256": input_sha256,
        "options": dict(sorted((options or {}).items())),
        "preset": result.preset,
        "rate": result.rate,
        "seed": result.seed,
        "counts": result.totals(),
    }
    columns: dict[str, list[Any]] = {
        "box_ids": original.box_ids[idx].tolist(),
        "image_ids": [_json_id(original.image_ids[i]) for i in image_rows.tolist()],
        "file_names": [original.file_names[i] for i in image_rows.tolist()],
        "labels": labels.tolist(),
        "class_names": [names.get(v, str(v)) for v in labels.tolist()],
        "boxes": boxes.tolist(),
    }

    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    lines = ["{"]
    lines += [f"  {dump(k)}: {dump(v)}," for k, v in meta.items()]
    lines.append('  "classes": [')
    cls_lines = [f"    {dump(c.to_json())}" for c in result.classes]
    lines.append(",\n".join(cls_lines))
    lines.append("  ],")
    lines.append('  "dropped": {')
    lines.append(",\n".join(f"    {dump(k)}: {dump(v)}" for k, v in columns.items()))
    lines.append("  }")
    lines.append("}")
    with atomic_write(path) as f:
        f.write("\n".join(line for line in lines if line) + "\n")


@dataclass
class Manifest:
    """A curation manifest, read back. The dropped boxes are numpy columns of length ``D``."""

    path: Path
    version: int
    tool_version: str
    input: str
    input_format: str
    input_sha256: str
    options: dict[str, Any]
    preset: str
    rate: float | None
    seed: int
    counts: dict[str, int]
    classes: list[dict[str, Any]]
    box_ids: np.ndarray  # int64 [D], the original annotation ids
    image_ids: np.ndarray  # [D], int64 for COCO, str for VOC / Open Images
    file_names: np.ndarray  # str [D]
    labels: np.ndarray  # int64 [D]
    class_names: np.ndarray  # str [D]
    boxes: np.ndarray  # float32 [D, 4], xyxy absolute pixels
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_dropped(self) -> int:
        return len(self.box_ids)


def read_manifest(path: str | Path) -> Manifest:
    """Read a manifest written by ``softsampling curate``; a curated file or folder finds its own.

    Raises :class:`SoftSamplingError` naming the file if it is missing or not a manifest.
    """
    path = Path(path)
    if not path.name.endswith(MANIFEST_NAME):
        found = find_manifest(path)
        if found is None:
            raise SoftSamplingError(
                "no curation manifest found",
                file=manifest_path_for(path),
                fix="pass the manifest itself, or the output of `softsampling curate`",
            )
        path = found
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SoftSamplingError("manifest does not exist", file=path, fix="check the path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SoftSamplingError(
            f"manifest is not valid JSON ({exc})", file=path, fix="re-run `softsampling curate` to write it again"
        ) from None
    if not isinstance(data, dict) or data.get("softsampling_manifest") != MANIFEST_VERSION:
        raise SoftSamplingError(
            f"not a softsampling curation manifest (version {MANIFEST_VERSION})",
            file=path,
            fix="pass the manifest.json written by `softsampling curate`",
        )
    try:
        d = data["dropped"]
        image_ids = np.asarray(d["image_ids"])
        if len(image_ids) == 0:
            image_ids = np.zeros(0, dtype=np.int64)
        return Manifest(
            path=path,
            version=int(data["softsampling_manifest"]),
            tool_version=str(data["tool_version"]),
            input=str(data["input"]),
            input_format=str(data["input_format"]),
            input_sha256=str(data["input_sha256"]),
            options=dict(data["options"]),
            preset=str(data["preset"]),
            rate=None if data["rate"] is None else float(data["rate"]),
            seed=int(data["seed"]),
            counts=dict(data["counts"]),
            classes=list(data["classes"]),
            box_ids=np.asarray(d["box_ids"], dtype=np.int64),
            image_ids=image_ids,
            file_names=np.asarray(d["file_names"], dtype=str),
            labels=np.asarray(d["labels"], dtype=np.int64),
            class_names=np.asarray(d["class_names"], dtype=str),
            boxes=np.asarray(d["boxes"], dtype=np.float32).reshape(-1, 4),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SoftSamplingError(
            f"manifest is incomplete or malformed ({exc!r})",
            file=path,
            fix="re-run `softsampling curate` to write it again",
        ) from None
