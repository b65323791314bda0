"""The in-memory record of a detection dataset, shared by every format.

A :class:`DetectionDataset` is *columnar*: one row per image in the image
columns, one row per box in the box columns, with ``box_image`` pointing each
box at its image row. Columns are numpy arrays, so curation and evaluation are
vectorised and a 15M-box Open Images file fits in memory comfortably.

Conventions (see docs/DESIGN in shared/):
- boxes are ``float32`` ``[M, 4]`` ``xyxy`` in absolute pixels, whatever the
  file format stores; converters live in the format readers/writers;
- ``labels`` are the dataset's own category ids (COCO's non-contiguous ids are
  kept as they are; VOC and Open Images get ids 1..K in class order);
- ``box_ids`` are stable annotation ids: COCO's ``id``; for VOC and Open
  Images the 0-based position of the box in the input (file order), which the
  same input always reproduces;
- ``image_ids`` are COCO's integer id, VOC's file stem, Open Images' ImageID.

Format-specific fields that have no common meaning (COCO segmentation, Open
Images ``Source``/``IsDepiction``, VOC ``pose``) travel in ``box_extra`` /
``image_extra`` (column name -> array or list, one entry per row) and
``extra`` (dataset-level), so a writer can reproduce its input.

Example:
    >>> import numpy as np
    >>> ds = DetectionDataset.from_lists(
    ...     images=[{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
    ...     boxes=[{"image_index": 0, "bbox": [2, 3, 20, 30], "label": 1}],
    ...     categories=[Category(1, "cat")],
    ... )
    >>> ds.num_images, ds.num_boxes, ds.boxes_of(0).tolist()
    (1, 1, [[2.0, 3.0, 20.0, 30.0]])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FLAG_NAMES = ("iscrowd", "difficult", "group_of", "truncated")


@dataclass(frozen=True)
class Category:
    """One class: its id in the dataset, its display name, and format extras (e.g. COCO supercategory)."""

    id: int
    name: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DetectionDataset:
    """Images and their boxes, column by column. See the module docstring."""

    # image columns, length I
    image_ids: list[Any]
    file_names: list[str]
    widths: np.ndarray  # int64 [I]
    heights: np.ndarray  # int64 [I]
    # box columns, length M
    box_image: np.ndarray  # int64 [M], row index into the image columns
    boxes: np.ndarray  # float32 [M, 4], xyxy absolute pixels
    labels: np.ndarray  # int64 [M], category id
    box_ids: np.ndarray  # int64 [M], stable annotation id
    iscrowd: np.ndarray  # bool [M]
    difficult: np.ndarray  # bool [M]
    group_of: np.ndarray  # bool [M]
    truncated: np.ndarray  # bool [M]
    categories: list[Category]
    image_root: Path | None = None
    box_extra: dict[str, Any] = field(default_factory=dict)
    image_extra: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.widths = np.asarray(self.widths, dtype=np.int64)
        self.heights = np.asarray(self.heights, dtype=np.int64)
        self.box_image = np.asarray(self.box_image, dtype=np.int64)
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.box_ids = np.asarray(self.box_ids, dtype=np.int64)
        for name in FLAG_NAMES:
            setattr(self, name, np.asarray(getattr(self, name), dtype=bool))
        n_img, n_box = len(self.image_ids), len(self.boxes)
        for name in ("file_names", "widths", "heights"):
            if len(getattr(self, name)) != n_img:
                raise ValueError(f"image column {name} has {len(getattr(self, name))} rows, expected {n_img}")
        for name in ("box_image", "labels", "box_ids", *FLAG_NAMES):
            if len(getattr(self, name)) != n_box:
                raise ValueError(f"box column {name} has {len(getattr(self, name))} rows, expected {n_box}")
        for name, col in self.box_extra.items():
            if len(col) != n_box:
                raise ValueError(f"box_extra column {name} has {len(col)} rows, expected {n_box}")
        for name, col in self.image_extra.items():
            if len(col) != n_img:
                raise ValueError(f"image_extra column {name} has {len(col)} rows, expected {n_img}")
        self._offsets: np.ndarray | None = None
        self._order: np.ndarray | None = None

    # ------------------------------------------------------------------ sizes
    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    @property
    def num_boxes(self) -> int:
        return len(self.boxes)

    @property
    def category_names(self) -> dict[int, str]:
        """Category id -> display name."""
        return {c.id: c.name for c in self.categories}

    # -------------------------------------------------------------- per image
    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        if self._offsets is None or self._order is None:
            order = np.argsort(self.box_image, kind="stable")
            counts = np.bincount(self.box_image, minlength=self.num_images)
            self._order = order
            self._offsets = np.concatenate([[0], np.cumsum(counts)])
        return self._order, self._offsets

    def box_indices_of(self, image_index: int) -> np.ndarray:
        """Rows of the box columns that belong to image row ``image_index``, in input order."""
        order, offsets = self._index()
        return order[offsets[image_index] : offsets[image_index + 1]]

    def boxes_of(self, image_index: int) -> np.ndarray:
        """``float32 [n, 4]`` xyxy boxes of one image."""
        boxes: np.ndarray = self.boxes[self.box_indices_of(image_index)]
        return boxes

    def image_path(self, image_index: int) -> Path:
        """Absolute-or-relative path of one image: ``image_root / file_name``."""
        root = self.image_root if self.image_root is not None else Path(".")
        return root / self.file_names[image_index]

    def boxes_per_image(self) -> np.ndarray:
        """``int64 [I]``: number of boxes in each image."""
        return np.bincount(self.box_image, minlength=self.num_images)

    # ---------------------------------------------------------------- editing
    def select_boxes(self, keep: np.ndarray) -> DetectionDataset:
        """A new dataset with only the boxes where ``keep`` (bool [M]) is true; images unchanged."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (self.num_boxes,):
            raise ValueError(f"keep mask has shape {keep.shape}, expected ({self.num_boxes},)")
        return dataclasses.replace(
            self,
            box_image=self.box_image[keep],
            boxes=self.boxes[keep],
            labels=self.labels[keep],
            box_ids=self.box_ids[keep],
            iscrowd=self.iscrowd[keep],
            difficult=self.difficult[keep],
            group_of=self.group_of[keep],
            truncated=self.truncated[keep],
            box_extra={k: _take(v, keep) for k, v in self.box_extra.items()},
        )

    def select_images(self, keep: np.ndarray) -> DetectionDataset:
        """A new dataset with only the images where ``keep`` (bool [I]) is true, and their boxes."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (self.num_images,):
            raise ValueError(f"keep mask has shape {keep.shape}, expected ({self.num_images},)")
        new_index = np.full(self.num_images, -1, dtype=np.int64)
        new_index[keep] = np.arange(int(keep.sum()))
        box_keep = keep[self.box_image]
        sub = self.select_boxes(box_keep)
        idx = np.flatnonzero(keep)
        return dataclasses.replace(
            sub,
            image_ids=[self.image_ids[i] for i in idx],
            file_names=[self.file_names[i] for i in idx],
            widths=self.widths[keep],
            heights=self.heights[keep],
            box_image=new_index[sub.box_image],
            image_extra={k: _take(v, keep) for k, v in self.image_extra.items()},
        )

    # ------------------------------------------------------------ construction
    @classmethod
    def from_lists(
        cls,
        *,
        images: Sequence[dict[str, Any]],
        boxes: Sequence[dict[str, Any]],
        categories: Sequence[Category],
        image_root: str | Path | None = None,
    ) -> DetectionDataset:
        """Build from plain dicts (handy in tests and small scripts).

        ``images``: dicts with ``id``, ``file_name``, ``width``, ``height``.
        ``boxes``: dicts with ``image_index``, ``bbox`` (xyxy), ``label``, and
        optionally ``id`` (default: position) and the flags in ``FLAG_NAMES``.
        """
        m = len(boxes)

        def flag(name: str) -> np.ndarray:
            return np.array([bool(b.get(name, False)) for b in boxes], dtype=bool)

        return cls(
            image_ids=[im["id"] for im in images],
            file_names=[str(im["file_name"]) for im in images],
            widths=np.array([im["width"] for im in images], dtype=np.int64),
            heights=np.array([im["height"] for im in images], dtype=np.int64),
            box_image=np.array([b["image_index"] for b in boxes], dtype=np.int64),
            boxes=np.array([b["bbox"] for b in boxes], dtype=np.float32).reshape(m, 4),
            labels=np.array([b["label"] for b in boxes], dtype=np.int64),
            box_ids=np.array([b.get("id", i) for i, b in enumerate(boxes)], dtype=np.int64),
            iscrowd=flag("iscrowd"),
            difficult=flag("difficult"),
            group_of=flag("group_of"),
            truncated=flag("truncated"),
            categories=list(categories),
            image_root=None if image_root is None else Path(image_root),
        )

    def equals(self, other: DetectionDataset) -> bool:
        """Same images, boxes, labels, ids, flags and categories (extras and root not compared)."""
        return (
            self.image_ids == other.image_ids
            and self.file_names == other.file_names
            and np.array_equal(self.widths, other.widths)
            and np.array_equal(self.heights, other.heights)
            and np.array_equal(self.box_image, other.box_image)
            and np.array_equal(self.boxes, other.boxes)
            and np.array_equal(self.labels, other.labels)
            and np.array_equal(self.box_ids, other.box_ids)
            and all(np.array_equal(getattr(self, f), getattr(other, f)) for f in FLAG_NAMES)
            and [(c.id, c.name) for c in self.categories] == [(c.id, c.name) for c in other.categories]
        )


def _take(column: Any, mask: np.ndarray) -> Any:
    if isinstance(column, np.ndarray):
        return column[mask]
    return [v for v, k in zip(column, mask, strict=True) if k]
