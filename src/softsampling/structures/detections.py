"""Detections: the columnar counterpart of a dataset's boxes, plus a score.

Detections refer to images by *row index* of the ground-truth
:class:`~softsampling.structures.records.DetectionDataset` they are evaluated
against, and to classes by that dataset's category ids. Readers that map file
names / image ids / class names to those indices live in ``evaluation/io.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Detections:
    """``D`` detections. ``boxes`` float32 [D, 4] xyxy pixels, ``scores`` float32 [D],
    ``labels`` int64 [D] (category ids of the ground-truth dataset), ``image_index`` int64 [D]."""

    image_index: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        self.image_index = np.asarray(self.image_index, dtype=np.int64).reshape(-1)
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        n = len(self.scores)
        if not (len(self.image_index) == len(self.boxes) == len(self.labels) == n):
            raise ValueError("Detections columns must all have the same length")

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, keep: np.ndarray) -> Detections:
        """Subset by a boolean mask or index array."""
        return Detections(self.image_index[keep], self.boxes[keep], self.labels[keep], self.scores[keep])

    def above(self, threshold: float) -> Detections:
        """Only detections with ``score >= threshold`` (the paper's score-threshold sweep)."""
        return self.select(self.scores >= threshold)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros(0), np.zeros((0, 4)), np.zeros(0), np.zeros(0))
