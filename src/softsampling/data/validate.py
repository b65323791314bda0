"""Box validation shared by every reader.

Readers build a :class:`DetectionDataset`, then call :func:`validate_boxes`
with a function that names a box row the way the user's file does (COCO
annotation id, CSV line, XML object). Problems are vectorised checks, so a
15M-box file validates in seconds.

Policies (the CLI's ``--invalid {error,clip,skip}``):
- ``error`` (default): the first bad box raises :class:`SoftSamplingError`
  naming file, record and fix;
- ``clip``: boxes that stick out of the image by at most ``clip_tolerance``
  of the image size are clipped to it (and counted); anything else still errors;
- ``skip``: bad boxes are dropped and reported (count and the first few ids).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from softsampling.errors import SoftSamplingError
from softsampling.structures.records import DetectionDataset

POLICIES = ("error", "clip", "skip")

# (file, record) naming a box row for the user, e.g. ("train.json", "annotation id 17")
Describe = Callable[[int], tuple[str, str]]


@dataclass
class ValidationReport:
    """What validation changed: counts for the summary line, first few records for the user."""

    clipped: int = 0
    skipped: int = 0
    examples: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = []
        if self.clipped:
            parts.append(f"clipped {self.clipped} box(es) to the image")
        if self.skipped:
            parts.append(f"skipped {self.skipped} invalid box(es)")
        if not parts:
            return "all boxes valid"
        shown = "; ".join(self.examples[:5])
        return ", ".join(parts) + (f" (e.g. {shown})" if shown else "")


def box_problems(
    boxes: np.ndarray, widths: np.ndarray, heights: np.ndarray, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(problem_code, clippable)`` per box.

    ``problem_code`` int8 [M]: 0 ok, 1 non-finite, 2 empty (x2<=x1 or y2<=y1),
    3 outside the image. ``clippable`` bool [M]: outside the image by at most
    ``tol`` of the image size and non-empty after clipping.
    """
    b = boxes.astype(np.float64)
    w = widths.astype(np.float64)
    h = heights.astype(np.float64)
    code = np.zeros(len(b), dtype=np.int8)
    finite = np.isfinite(b).all(axis=1)
    code[~finite] = 1
    bf = np.where(np.isfinite(b), b, 0.0)
    empty = finite & ((bf[:, 2] <= bf[:, 0]) | (bf[:, 3] <= bf[:, 1]))
    code[empty] = 2
    outside = (bf[:, 0] < 0) | (bf[:, 1] < 0) | (bf[:, 2] > w) | (bf[:, 3] > h)
    out = finite & ~empty & outside
    code[out] = 3
    slack_x, slack_y = tol * w, tol * h
    near = (bf[:, 0] >= -slack_x) & (bf[:, 1] >= -slack_y) & (bf[:, 2] <= w + slack_x) & (bf[:, 3] <= h + slack_y)
    cx1, cx2 = np.clip(bf[:, 0], 0, w), np.clip(bf[:, 2], 0, w)
    cy1, cy2 = np.clip(bf[:, 1], 0, h), np.clip(bf[:, 3], 0, h)
    clippable = out & near & (cx2 > cx1) & (cy2 > cy1)
    return code, clippable


_MESSAGES = {
    1: ("box has a NaN or infinite coordinate", "correct the coordinates or pass --invalid skip"),
    2: ("box is empty (x2 <= x1 or y2 <= y1)", "correct the coordinates or pass --invalid skip"),
    3: (
        "box lies outside the image",
        "correct the box or image size, pass --invalid clip for slightly-outside boxes, or --invalid skip",
    ),
}


def validate_boxes(
    ds: DetectionDataset,
    describe: Describe,
    *,
    policy: str = "error",
    clip_tolerance: float = 0.05,
    report: ValidationReport | None = None,
) -> tuple[DetectionDataset, ValidationReport]:
    """Check every box of ``ds`` against its image; apply ``policy``. Returns the (possibly fixed) dataset."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; expected one of {POLICIES}")
    report = report or ValidationReport()
    if ds.num_boxes == 0:
        return ds, report
    w = ds.widths[ds.box_image]
    h = ds.heights[ds.box_image]
    code, clippable = box_problems(ds.boxes, w, h, clip_tolerance)
    bad = code != 0
    if not bad.any():
        return ds, report
    if policy == "clip":
        fix = bad & clippable
        if fix.any():
            boxes = ds.boxes.copy()
            boxes[fix, 0] = np.clip(boxes[fix, 0], 0, w[fix])
            boxes[fix, 2] = np.clip(boxes[fix, 2], 0, w[fix])
            boxes[fix, 1] = np.clip(boxes[fix, 1], 0, h[fix])
            boxes[fix, 3] = np.clip(boxes[fix, 3], 0, h[fix])
            ds = dataclasses.replace(ds, boxes=boxes)
            report.clipped += int(fix.sum())
            report.examples.extend(": ".join(describe(int(i))) for i in np.flatnonzero(fix)[:5])
        bad = bad & ~fix
    if not bad.any():
        return ds, report
    if policy == "skip":
        report.skipped += int(bad.sum())
        report.examples.extend(": ".join(describe(int(i))) for i in np.flatnonzero(bad)[:5])
        return ds.select_boxes(~bad), report
    first = int(np.flatnonzero(bad)[0])
    file, record = describe(first)
    problem, fix_text = _MESSAGES[int(code[first])]
    x1, y1, x2, y2 = (float(v) for v in ds.boxes[first])
    im = int(ds.box_image[first])
    detail = f"{problem}: xyxy=({x1:g}, {y1:g}, {x2:g}, {y2:g}), image {ds.widths[im]}x{ds.heights[im]}"
    n_bad = int(bad.sum())
    if n_bad > 1:
        detail += f" ({n_bad - 1} more bad box(es) in this dataset)"
    raise SoftSamplingError(detail, file=file, record=record, fix=fix_text)


def add_invalid_options(parser, *, what: str = "boxes") -> None:
    """Add ``--invalid {error,clip,skip}`` and its alias ``--skip-invalid`` to an argparse parser or group."""
    parser.add_argument(
        "--invalid",
        choices=POLICIES,
        default="error",
        help=f"bad {what} (NaN, empty, outside the image): error (default), clip slightly-outside "
        "ones to the image, or skip them",
    )
    parser.add_argument(
        "--skip-invalid",
        dest="invalid",
        action="store_const",
        const="skip",
        help="same as --invalid skip: drop the bad ones and print how many and which",
    )


def check_unique(values: list, *, what: str, file: str) -> None:
    """Raise if ``values`` has a duplicate, naming the first repeated one."""
    seen: set = set()
    for i, v in enumerate(values):
        if v in seen:
            raise SoftSamplingError(
                f"duplicate {what} {v!r} (entry {i})", file=file, fix=f"give every {what} a unique value"
            )
        seen.add(v)
