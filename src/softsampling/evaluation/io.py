"""Read and write detections; read the "one txt per image" layout.

Detections always refer to a ground-truth :class:`DetectionDataset`: a reader
maps the file's image references to dataset rows and its class references to
the dataset's category ids, and returns :class:`Detections`.

Formats (``read_detections`` picks by extension unless ``fmt`` is given):

- ``coco`` (``.json``): the COCO results format, a JSON list of
  ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``. ``image_id``
  must equal a dataset image id (COCO's integer id; for VOC and txt-layout
  datasets the file stem, or a file name).
- ``csv`` (``.csv``): header ``image,label,score,xmin,ymin,xmax,ymax`` (columns
  in any order, extra columns ignored). ``image`` is the file name relative to
  the dataset root, its base name, its stem, or the image id; ``label`` is the
  class *name*; coordinates are absolute pixels.

Both use continuous pixel coordinates (our internal ``xyxy``), so no ``+1``
conversion happens here; only the pixel-inclusive formats (VOC XML, the txt
layout) convert, see :mod:`softsampling.evaluation.voc_metric`.

What users get for bad references:

- an image the ground truth does not have: :class:`SoftSamplingError` naming the
  file and line/entry; this is nearly always a mismatched file, so guessing is
  worse than stopping;
- a class the ground truth does not have (a detector trained on more classes
  than the evaluation set, e.g. Cartucho's sample): the detections are dropped
  and counted in a note (appended to ``notes`` if given, else a ``warnings``
  warning), since no AP can be computed for a class without ground truth. If
  *no* detection matches a known class the reader stops with an error, as that
  is a wrong mapping (e.g. contiguous 0..K-1 ids instead of COCO's ids).

The txt layout (Cartucho/mAP and many tools that emit it): a folder of
ground-truth files ``<stem>.txt`` with lines ``<class> <left> <top> <right>
<bottom>`` plus an optional trailing word ``difficult``, and a folder of
detection files ``<stem>.txt`` with lines ``<class> <confidence> <left> <top>
<right> <bottom>``. Fields are separated by whitespace, so class names with
spaces are not supported (use ``_`` instead). Coordinates are read like VOC XML,
as inclusive pixel indices: ``(left, top, right, bottom)`` becomes
``(left - 1, top - 1, right, bottom)``, which makes our VOC metric equal to the
``+1`` IoU that those tools compute. Every ground-truth file is one image (an
empty file is an image without objects); a detection file without a
ground-truth file is an error; a missing detection file means no detections.
Image sizes come from ``images_dir`` when given (the image with the same stem),
otherwise from the largest box extent in that image (ground truth and
detections) — enough for evaluation, which never uses the size. Boxes are not
clipped to the image: the metric must see the numbers the file has.

Example (the real sample in shared/data)::

    notes = []
    gt, dets = read_txt_layout("../shared/data/cartucho_map_sample/ground-truth",
                               "../shared/data/cartucho_map_sample/detection-results", notes=notes)
    # gt: 85 images, 686 boxes, 30 classes; dets: 494 read, those of 6 classes
    # the ground truth lacks are dropped and described in notes
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from softsampling.data.images import image_size
from softsampling.data.records import Category, DetectionDataset
from softsampling.errors import SoftSamplingError
from softsampling.evaluation.detections import Detections
from softsampling.io import atomic_write, write_json

DETECTION_FORMATS = ("coco", "csv")
CSV_COLUMNS = ("image", "label", "score", "xmin", "ymin", "xmax", "ymax")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


# ------------------------------------------------------------------ lookups
class _ImageLookup:
    """Resolve an image reference (id, file name, base name, stem) to a dataset row."""

    def __init__(self, gt: DetectionDataset) -> None:
        self.by_id: dict[Any, int] = {}
        # Checked in this order; a key claimed by two images is ambiguous (row -1).
        self.by_name: list[dict[str, int]] = [{}, {}, {}, {}]
        for row, (iid, fname) in enumerate(zip(gt.image_ids, gt.file_names)):
            self.by_id.setdefault(iid, row)
            p = PurePosixPath(str(fname).replace("\\", "/"))
            for table, key in zip(self.by_name, (str(fname), p.name, p.stem, str(iid))):
                table[key] = row if table.get(key, row) == row else -1

    def find(self, ref: Any) -> int | None:
        """Row of ``ref``; None if unknown; -1 if it names several images."""
        if not isinstance(ref, str) and ref in self.by_id:
            return self.by_id[ref]
        key = str(ref)
        for table in self.by_name:
            if key in table:
                return table[key]
        return None


def _image_row(lookup: _ImageLookup, ref: Any, file: Path, record: str) -> int:
    row = lookup.find(ref)
    if row is None:
        raise SoftSamplingError(
            f"image {ref!r} is not in the ground truth",
            file=file,
            record=record,
            fix="check that the detections belong to this ground-truth file (image = id, file name or stem)",
        )
    if row == -1:
        raise SoftSamplingError(
            f"image {ref!r} matches several ground-truth images",
            file=file,
            record=record,
            fix="name the image by its file name relative to the dataset root",
        )
    return row


def _name_to_id(gt: DetectionDataset) -> dict[str, int]:
    table: dict[str, int] = {}
    for c in gt.categories:
        table[c.name] = c.id if table.get(c.name, c.id) == c.id else -1
    return table


def _report_unknown_labels(
    dets: Detections, unknown: dict[str, int], file: Path, notes: list[str] | None, what: str
) -> Detections:
    """Note the detections of classes absent from the ground truth (the caller left them out)."""
    n_unknown = sum(unknown.values())
    if n_unknown == 0:
        return dets
    if len(dets) == 0:
        shown = ", ".join(sorted(unknown)[:5])
        raise SoftSamplingError(
            f"none of the detections has a {what} of the ground truth (found {shown})",
            file=file,
            fix=f"use the ground truth's {what}s (COCO results need the dataset's category ids)",
        )
    listed = ", ".join(f"{k} ({v})" for k, v in sorted(unknown.items(), key=lambda kv: (-kv[1], kv[0])))
    note = (
        f"{file}: ignored {n_unknown} detection(s) of {len(unknown)} {what}(s) absent from the ground truth: {listed}"
    )
    if notes is None:
        warnings.warn(note, stacklevel=3)
    else:
        notes.append(note)
    return dets


# ------------------------------------------------------------------ readers
def read_detections(
    path: str | Path, gt: DetectionDataset, *, fmt: str | None = None, notes: list[str] | None = None
) -> Detections:
    """Read a COCO results JSON or a CSV of detections against ``gt`` (see the module docstring).

    ``fmt``: ``"coco"`` or ``"csv"``; default from the extension (``.json`` / ``.csv``).
    ``notes``: a list that receives human-readable notes (ignored classes);
    without it they are issued as warnings.
    """
    path = Path(path)
    if not path.is_file():
        raise SoftSamplingError("detections file does not exist", file=path, fix="check the --detections path")
    if fmt is None:
        fmt = {".json": "coco", ".csv": "csv"}.get(path.suffix.lower())
        if fmt is None:
            raise SoftSamplingError(
                f"cannot tell the detections format from the extension {path.suffix!r}",
                file=path,
                fix="name the file .json (COCO results) or .csv, or pass the format explicitly",
            )
    if fmt == "coco":
        return _read_coco_results(path, gt, notes)
    if fmt == "csv":
        return _read_csv(path, gt, notes)
    raise SoftSamplingError(f"unknown detections format {fmt!r}", file=path, fix=f"use one of {DETECTION_FORMATS}")


def _read_coco_results(path: Path, gt: DetectionDataset, notes: list[str] | None) -> Detections:
    try:
        entries = json.loads(read_utf8(path))
    except json.JSONDecodeError as exc:
        raise SoftSamplingError(f"not valid JSON: {exc}", file=path, record=f"line {exc.lineno}",
                                fix="write the file as a JSON list") from None
    if not isinstance(entries, list):
        raise SoftSamplingError(
            "COCO results must be a JSON list of detections",
            file=path,
            fix='write [{"image_id": ..., "category_id": ..., "bbox": [x, y, w, h], "score": ...}, ...]',
        )
    lookup = _ImageLookup(gt)
    known = {c.id for c in gt.categories}
    rows, labels, boxes, scores = [], [], [], []
    unknown: dict[str, int] = {}
    for i, e in enumerate(entries):
        record = f"entry {i}"
        try:
            image_id, category_id, bbox, score = e["image_id"], e["category_id"], e["bbox"], e["score"]
            x, y, w, h = (float(v) for v in bbox)
            score = float(score)
            category_id = int(category_id)
        except (KeyError, TypeError, ValueError) as exc:
            raise SoftSamplingError(
                f"malformed detection ({type(exc).__name__}: {exc})",
                file=path,
                record=record,
                fix="each entry needs image_id, category_id, bbox [x, y, w, h] and a numeric score",
            ) from None
        _check_numbers(path, record, score, (x, y, x + w, y + h))
        row = _image_row(lookup, image_id, path, record)
        if category_id not in known:
            unknown[str(category_id)] = unknown.get(str(category_id), 0) + 1
            continue
        rows.append(row)
        labels.append(category_id)
        boxes.append((x, y, x + w, y + h))
        scores.append(score)
    dets = _make(rows, boxes, labels, scores)
    return _report_unknown_labels(dets, unknown, path, notes, "category id")


def _read_csv(path: Path, gt: DetectionDataset, notes: list[str] | None) -> Detections:
    lookup = _ImageLookup(gt)
    names = _name_to_id(gt)
    rows, labels, boxes, scores = [], [], [], []
    unknown: dict[str, int] = {}
    with io.StringIO(read_utf8(path), newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise SoftSamplingError("empty file (no header)", file=path, fix=f"start with the header {','.join(CSV_COLUMNS)}")
        header = [h.strip() for h in header]
        missing = [c for c in CSV_COLUMNS if c not in header]
        if missing:
            raise SoftSamplingError(
                f"header lacks column(s) {', '.join(missing)}",
                file=path,
                record="line 1",
                fix=f"use the header {','.join(CSV_COLUMNS)}",
            )
        col = [header.index(c) for c in CSV_COLUMNS]
        width = max(col) + 1
        for fields in reader:
            record = f"line {reader.line_num}"
            if not fields or all(not v.strip() for v in fields):
                continue
            if len(fields) < width:
                raise SoftSamplingError(
                    f"expected {len(header)} fields, got {len(fields)}", file=path, record=record, fix="fill every column"
                )
            image, label, *numbers = (fields[c].strip() for c in col)
            try:
                score, x1, y1, x2, y2 = (float(v) for v in numbers)
            except ValueError:
                raise SoftSamplingError(
                    f"score and coordinates must be numbers, got {numbers}", file=path, record=record, fix="fix the line"
                ) from None
            _check_numbers(path, record, score, (x1, y1, x2, y2))
            row = _image_row(lookup, image, path, record)
            cid = names.get(label)
            if cid is None:
                unknown[label] = unknown.get(label, 0) + 1
                continue
            if cid == -1:
                raise SoftSamplingError(
                    f"class name {label!r} belongs to several ground-truth categories",
                    file=path,
                    record=record,
                    fix="give the ground-truth categories unique names",
                )
            rows.append(row)
            labels.append(cid)
            boxes.append((x1, y1, x2, y2))
            scores.append(score)
    dets = _make(rows, boxes, labels, scores)
    return _report_unknown_labels(dets, unknown, path, notes, "class")


def _check_numbers(file: Path, record: str, score: float, box: Iterable[float]) -> None:
    x1, y1, x2, y2 = box
    if not all(math.isfinite(v) for v in (score, x1, y1, x2, y2)):
        raise SoftSamplingError("score or coordinate is NaN or infinite", file=file, record=record, fix="fix the detection")
    if x2 < x1 or y2 < y1:
        raise SoftSamplingError(
            f"box has negative width or height: xyxy=({x1:g}, {y1:g}, {x2:g}, {y2:g})",
            file=file,
            record=record,
            fix="write boxes as xmin,ymin,xmax,ymax (COCO results: x,y,width,height)",
        )


def _make(rows: list, boxes: list, labels: list, scores: list) -> Detections:
    if not rows:
        return Detections.empty()
    return Detections(np.array(rows), np.array(boxes, dtype=np.float64), np.array(labels), np.array(scores))


# ------------------------------------------------------------------ writers
def write_detections_coco(dets: Detections, gt: DetectionDataset, path: str | Path) -> None:
    """Write ``dets`` as a COCO results JSON (atomically); ``image_id`` = the dataset's image ids.

    Coordinates are written at full precision, so reading the file back with
    :func:`read_detections` gives the same float32 boxes and scores.
    """
    out = []
    for row, label, box, score in zip(dets.image_index.tolist(), dets.labels.tolist(), dets.boxes, dets.scores):
        x1, y1, x2, y2 = (float(v) for v in box)
        image_id = gt.image_ids[row]
        out.append({
            "image_id": image_id.item() if isinstance(image_id, np.generic) else image_id,
            "category_id": int(label),
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": float(score),
        })
    write_json(path, out, indent=None)


def write_detections_csv(dets: Detections, gt: DetectionDataset, path: str | Path) -> None:
    """Write ``dets`` as CSV (header ``image,label,score,xmin,ymin,xmax,ymax``; image = file name)."""
    names = gt.category_names

    def num(v: np.floating) -> str:
        return np.format_float_positional(v, unique=True, trim="-")

    with atomic_write(path) as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for row, label, box, score in zip(dets.image_index.tolist(), dets.labels.tolist(), dets.boxes, dets.scores):
            w.writerow([gt.file_names[row], names.get(label, str(label)), num(score), *(num(v) for v in box)])


# ------------------------------------------------------------------ txt layout
def read_txt_layout(
    gt_dir: str | Path,
    det_dir: str | Path | None = None,
    images_dir: str | Path | None = None,
    *,
    notes: list[str] | None = None,
) -> tuple[DetectionDataset, Detections | None]:
    """Read the one-txt-per-image layout (see the module docstring).

    Returns the ground truth (images in stem order; categories = the ground
    truth's class names in sorted order, ids 1..K) and, if ``det_dir`` is
    given, the detections (file order within a file, files in stem order);
    detections of classes absent from the ground truth are dropped with a note.
    """
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise SoftSamplingError("ground-truth folder does not exist", file=gt_dir, fix="pass the folder of <image>.txt files")
    gt_files = sorted(gt_dir.glob("*.txt"))
    if not gt_files:
        raise SoftSamplingError("no .txt files in the ground-truth folder", file=gt_dir, fix="check the path")
    stems = [p.stem for p in gt_files]
    row_of = {s: i for i, s in enumerate(stems)}

    # Ground truth.
    box_image, box_names, gt_boxes, difficult = [], [], [], []
    for row, path in enumerate(gt_files):
        for line_no, fields in _lines(path):
            is_difficult = len(fields) == 6 and fields[5] == "difficult"
            if len(fields) != 5 and not is_difficult:
                raise SoftSamplingError(
                    f"expected '<class> <left> <top> <right> <bottom> [difficult]', got {len(fields)} fields",
                    file=path,
                    record=f"line {line_no}",
                    fix="one box per line; class names must not contain spaces",
                )
            box_image.append(row)
            box_names.append(fields[0])
            gt_boxes.append(_inclusive_box(fields[1:5], path, line_no))
            difficult.append(is_difficult)
    class_names = sorted(set(box_names))
    name_to_id = {n: i + 1 for i, n in enumerate(class_names)}

    # Detections.
    dets = None
    det_extent = np.zeros((len(stems), 2))
    if det_dir is not None:
        det_dir = Path(det_dir)
        if not det_dir.is_dir():
            raise SoftSamplingError("detections folder does not exist", file=det_dir, fix="pass the folder of <image>.txt files")
        rows, labels, boxes, scores = [], [], [], []
        unknown: dict[str, int] = {}
        for path in sorted(det_dir.glob("*.txt")):
            if path.stem not in row_of:
                raise SoftSamplingError(
                    f"no ground-truth file {path.stem}.txt for these detections",
                    file=path,
                    fix=f"add an empty {gt_dir / (path.stem + '.txt')} if the image has no objects, or remove this file",
                )
            row = row_of[path.stem]
            for line_no, fields in _lines(path):
                if len(fields) != 6:
                    raise SoftSamplingError(
                        f"expected '<class> <confidence> <left> <top> <right> <bottom>', got {len(fields)} fields",
                        file=path,
                        record=f"line {line_no}",
                        fix="one detection per line; class names must not contain spaces",
                    )
                score = _number(fields[1], path, line_no)
                box = _inclusive_box(fields[2:6], path, line_no)
                det_extent[row] = np.maximum(det_extent[row], box[2:])
                if fields[0] not in name_to_id:
                    unknown[fields[0]] = unknown.get(fields[0], 0) + 1
                    continue
                rows.append(row)
                labels.append(name_to_id[fields[0]])
                boxes.append(box)
                scores.append(score)
        dets = _report_unknown_labels(_make(rows, boxes, labels, scores), unknown, det_dir, notes, "class")

    # Image sizes and file names.
    gt_box_arr = np.array(gt_boxes, dtype=np.float64).reshape(-1, 4)
    box_image_arr = np.array(box_image, dtype=np.int64)
    if images_dir is not None:
        file_names, widths, heights = _image_sizes(Path(images_dir), gt_files)
    else:
        extent = det_extent.copy()
        np.maximum.at(extent, box_image_arr, gt_box_arr[:, 2:])
        file_names = stems
        widths = np.maximum(np.ceil(extent[:, 0]), 1).astype(np.int64)
        heights = np.maximum(np.ceil(extent[:, 1]), 1).astype(np.int64)

    gt = DetectionDataset(
        image_ids=stems,
        file_names=file_names,
        widths=widths,
        heights=heights,
        box_image=box_image_arr,
        boxes=gt_box_arr,
        labels=np.array([name_to_id[n] for n in box_names], dtype=np.int64),
        box_ids=np.arange(len(gt_boxes)),
        iscrowd=np.zeros(len(gt_boxes), dtype=bool),
        difficult=np.array(difficult, dtype=bool),
        group_of=np.zeros(len(gt_boxes), dtype=bool),
        truncated=np.zeros(len(gt_boxes), dtype=bool),
        categories=[Category(name_to_id[n], n) for n in class_names],
        image_root=None if images_dir is None else Path(images_dir),
        extra={"format": "txt", "source": str(gt_dir)},
    )
    return gt, dets


def read_utf8(path: Path) -> str:
    """The text of ``path``; a file that is not UTF-8 raises an error naming the line of the first bad byte."""
    if not path.is_file():  # a folder named *.txt, a symlink loop, a FIFO
        raise SoftSamplingError("not a regular file (a folder, a broken or looping link, or a special file)",
                                file=path, fix="remove it or replace it with a text file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SoftSamplingError(f"cannot read the file ({exc.strerror})", file=path, fix="check its permissions") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SoftSamplingError(f"file is not UTF-8 text ({exc.reason} at byte {exc.start})", file=path,
                                record=f"line {line}", fix="save the file as UTF-8") from None


def _lines(path: Path) -> Iterable[tuple[int, list[str]]]:
    for line_no, line in enumerate(read_utf8(path).splitlines(), start=1):
        fields = line.split()
        if fields:
            yield line_no, fields


def _number(text: str, path: Path, line_no: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SoftSamplingError(
            f"{text!r} is not a number", file=path, record=f"line {line_no}", fix="fix the line; class names must not contain spaces"
        ) from None
    if not math.isfinite(value):
        raise SoftSamplingError(f"{text!r} is not a finite number", file=path, record=f"line {line_no}", fix="fix the line")
    return value


def _inclusive_box(fields: list[str], path: Path, line_no: int) -> tuple[float, float, float, float]:
    """Inclusive pixel box (left, top, right, bottom) -> continuous xyxy (left-1, top-1, right, bottom)."""
    left, top, right, bottom = (_number(v, path, line_no) for v in fields)
    if right < left or bottom < top:
        raise SoftSamplingError(
            f"box has right < left or bottom < top: ({left:g}, {top:g}, {right:g}, {bottom:g})",
            file=path,
            record=f"line {line_no}",
            fix="write boxes as <left> <top> <right> <bottom>",
        )
    return (left - 1.0, top - 1.0, right, bottom)


def _image_sizes(images_dir: Path, gt_files: list[Path]) -> tuple[list[str], np.ndarray, np.ndarray]:

    if not images_dir.is_dir():
        raise SoftSamplingError("images folder does not exist", file=images_dir, fix="check the --images path")
    by_stem = {p.stem: p for p in sorted(images_dir.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS}
    names, widths, heights = [], [], []
    for gt_file in gt_files:
        image = by_stem.get(gt_file.stem)
        if image is None:
            raise SoftSamplingError(
                f"no image named {gt_file.stem}.* in {images_dir}",
                file=gt_file,
                fix="add the image or leave out the images folder (sizes then come from the boxes)",
            )
        w, h = image_size(image, file=gt_file)  # header only; refuses decompression bombs
        names.append(image.name)
        widths.append(w)
        heights.append(h)
    return names, np.array(widths, dtype=np.int64), np.array(heights, dtype=np.int64)
