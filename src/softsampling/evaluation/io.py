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

Example (Cartucho/mAP's real sample, shipped with the tests)::

    notes = []
    gt, dets = read_txt_layout("tests/data/cartucho/ground-truth", "tests/data/cartucho/detection-results", notes=notes)
    # gt: 85 images, 686 boxes, 30 classes; dets: 494 read, those of 8 classes
    # the ground truth lacks are dropped and described in notes
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from softsampling.data.images import image_size
from softsampling.errors import SoftSamplingError
from softsampling.io import atomic_write, check_input_dir, check_input_file, write_json
from softsampling.parsing import ascii_float, parse_json, read_utf8
from softsampling.structures.detections import Detections
from softsampling.structures.records import Category, DetectionDataset

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
        for row, (iid, fname) in enumerate(zip(gt.image_ids, gt.file_names, strict=True)):
            self.by_id.setdefault(iid, row)
            p = PurePosixPath(str(fname).replace("\\", "/"))
            for table, key in zip(self.by_name, (str(fname), p.name, p.stem, str(iid)), strict=True):
                table[key] = row if table.get(key, row) == row else -1

    def find_name(self, name: str) -> int | None:
        """Row of the image whose file name (relative path, base name or stem) is ``name``; -1 if several."""
        for table in self.by_name[:3]:
            if name in table:
                return table[name]
        return None

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
    path = check_input_file(path, option="--detections", what="detections file")
    if fmt is None:
        fmt = {".json": "coco", ".csv": "csv"}.get(path.suffix.lower())
        if fmt is None:
            raise SoftSamplingError(
                f"cannot tell the detections format from the extension {path.suffix!r}",
                file=path,
                fix="name the file .json (COCO results) or .csv, or pass the format explicitly",
            )
    if fmt in ("coco", "csv"):
        dets = _read_coco_results(path, gt, notes) if fmt == "coco" else _read_csv(path, gt, notes)
        check_same_units(gt, dets, path)
        return dets
    raise SoftSamplingError(f"unknown detections format {fmt!r}", file=path, fix=f"use one of {DETECTION_FORMATS}")


def _read_coco_results(path: Path, gt: DetectionDataset, notes: list[str] | None) -> Detections:
    entries = parse_json(path.read_bytes(), file=path, fix="write the file as a JSON list")
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
        if not isinstance(e, dict):
            raise SoftSamplingError(
                f"entry is a JSON {type(e).__name__}, not an object",
                file=path,
                record=record,
                fix='each entry is {"image_id" or "file_name", "category_id", "bbox", "score"}',
            )
        missing = [k for k in ("category_id", "bbox", "score") if k not in e]
        if "image_id" not in e and "file_name" not in e:
            missing.insert(0, "image_id or file_name")
        if missing:
            raise SoftSamplingError(
                f"malformed detection: missing {', '.join(map(repr, missing))}",
                file=path,
                record=record,
                fix="each entry needs image_id (or file_name), category_id, bbox [x, y, w, h] and a numeric score",
            )
        category_id = _json_int(e["category_id"], "category_id", path, record)
        bbox = e["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_json_number(v) for v in bbox):
            raise SoftSamplingError(
                f"'bbox' must be a list of 4 numbers [x, y, w, h], got {_short(bbox)}",
                file=path,
                record=record,
                fix="write bbox as [x, y, width, height] in pixels",
            )
        if not _is_json_number(e["score"]):
            raise SoftSamplingError(
                f"'score' must be a number, got {_short(e['score'])}",
                file=path,
                record=record,
                fix="write the detection's confidence as a number",
            )
        x, y, w, h = (float(v) for v in bbox)
        score = float(e["score"])
        _check_numbers(path, record, score, (x, y, x + w, y + h))
        row = _coco_entry_row(lookup, gt, e, path, record)
        if category_id not in known:
            unknown[str(category_id)] = unknown.get(str(category_id), 0) + 1
            continue
        rows.append(row)
        labels.append(category_id)
        boxes.append((x, y, x + w, y + h))
        scores.append(score)
    dets = _make(rows, boxes, labels, scores)
    return _report_unknown_labels(dets, unknown, path, notes, "category id")


def _is_json_number(value: Any) -> bool:
    """A JSON number: int or float, not a bool (``true`` is not 1) and not a string."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_int(value: Any, key: str, file: Path, record: str) -> int:
    """An integer id; ``9.7``, ``"9"`` and ``true`` are refused rather than coerced (``9.0`` is 9)."""
    if _is_json_number(value) and math.isfinite(value) and value == int(value) and abs(value) < 2**63:
        return int(value)
    raise SoftSamplingError(
        f"{key!r} must be a whole number, got {_short(value)}",
        file=file,
        record=record,
        fix=f"write {key} as the ground truth's integer id",
    )


def _coco_entry_row(lookup: _ImageLookup, gt: DetectionDataset, entry: dict[str, Any], file: Path, record: str) -> int:
    """The ground-truth row of a COCO results entry: by ``file_name`` when present, else by ``image_id``.

    With both, they must name the same image: ``predict`` once wrote 0-based
    list positions as ``image_id``, and matching by the id alone scored
    detections against the wrong images.
    """
    image_id = entry.get("image_id")
    if image_id is not None and not (isinstance(image_id, str) or _is_json_number(image_id)):
        raise SoftSamplingError(
            f"'image_id' must be a number or a string, got {_short(image_id)}",
            file=file,
            record=record,
            fix="write the ground truth's image id",
        )
    if isinstance(image_id, float):
        image_id = _json_int(image_id, "image_id", file, record)
    if "file_name" not in entry:
        return _image_row(lookup, image_id, file, record)
    name = entry["file_name"]
    if not isinstance(name, str) or not name:
        raise SoftSamplingError(
            f"'file_name' must be a non-empty string, got {_short(name)}",
            file=file,
            record=record,
            fix="write the image's file name",
        )
    row = lookup.find_name(name.replace("\\", "/"))
    if row is None:
        raise SoftSamplingError(
            f"image file {name!r} is not in the ground truth",
            file=file,
            record=record,
            fix="check that the detections belong to this ground-truth file",
        )
    if row == -1:
        raise SoftSamplingError(
            f"file name {name!r} matches several ground-truth images",
            file=file,
            record=record,
            fix="write file_name relative to the dataset's image folder",
        )
    if image_id is not None and lookup.find(image_id) != row:
        raise SoftSamplingError(
            f"image_id {image_id!r} and file_name {name!r} name different ground-truth images "
            f"({name!r} has image id {gt.image_ids[row]!r})",
            file=file,
            record=record,
            fix="drop image_id and match by file_name, or write the ground truth's ids (older `predict` "
            "versions wrote list positions as image_id)",
        )
    return row


def _read_csv(path: Path, gt: DetectionDataset, notes: list[str] | None) -> Detections:
    lookup = _ImageLookup(gt)
    names = _name_to_id(gt)
    rows, labels, boxes, scores = [], [], [], []
    unknown: dict[str, int] = {}
    with io.StringIO(read_utf8(path), newline="") as f:
        reader = _csv_rows(f, path)
        first = next(reader, None)
        header = None if first is None else first[1]
        if header is None:
            raise SoftSamplingError(
                "empty file (no header)", file=path, fix=f"start with the header {','.join(CSV_COLUMNS)}"
            )
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
        for line_no, fields in reader:
            record = f"line {line_no}"
            if not fields or all(not v.strip() for v in fields):
                continue
            if len(fields) < width:
                raise SoftSamplingError(
                    f"expected {len(header)} fields, got {len(fields)}",
                    file=path,
                    record=record,
                    fix="fill every column",
                )
            image, label, *numbers = (fields[c].strip() for c in col)
            values = [v for v in map(ascii_float, numbers) if v is not None]
            if len(values) != len(numbers):
                raise SoftSamplingError(
                    f"score and coordinates must be numbers, got {numbers}",
                    file=path,
                    record=record,
                    fix="fix the line",
                )
            score, x1, y1, x2, y2 = values
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


def _csv_rows(f: io.StringIO, path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of each CSV row; a quote left open or a value spanning lines is an error.

    Python's csv module reads an unterminated quote to the end of the file as
    one value, which turned a whole file into one detection.
    """
    reader = csv.reader(f, strict=True)
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise SoftSamplingError(
                f"bad CSV quoting ({exc})",
                file=path,
                record=f"line {start}",
                fix='close every quoted value on its line ("text"), doubling quotes inside it',
            ) from None
        if reader.line_num != start:
            raise SoftSamplingError(
                f"a quoted value runs from line {start} to line {reader.line_num}",
                file=path,
                record=f"line {start}",
                fix="close the quote on the same line; values may not contain line breaks",
            )
        yield start, fields
        start = reader.line_num + 1


def check_same_units(gt: DetectionDataset, dets: Detections, file: str | Path) -> None:
    """Refuse to compare boxes in different units: normalised [0, 1] against pixels, either way round.

    An Open Images ground truth read without image sizes stays normalised
    (``gt.extra["normalized"]``); ``predict`` and most detectors write pixels.
    IoU between the two is about 0, so the metric would print 0.0 for every
    class without a word. The same holds for normalised detections against
    pixel ground truth: every detection box inside [0, 1] while the ground
    truth's boxes reach beyond 2 pixels.
    """
    if len(dets) == 0:
        return
    det_max = float(np.abs(dets.boxes).max())
    if gt.extra.get("normalized"):
        if det_max > 1.0 + 1e-3:
            raise SoftSamplingError(
                f"the ground truth is in normalised coordinates (no image sizes were given) but the detections are "
                f"in pixels (coordinates up to {det_max:g}); comparing them would score about 0",
                file=file,
                fix="give the ground truth its image sizes: evaluate --sizes CSV (ImageID,width,height) or "
                "--images DIR (read_openimages: sizes_csv= or image_root=)",
            )
        return
    gt_max = float(np.abs(gt.boxes).max()) if gt.num_boxes else 0.0
    if det_max <= 1.0 and gt_max > 2.0:
        raise SoftSamplingError(
            f"every detection box lies within [0, 1] while the ground-truth boxes are in pixels (up to {gt_max:g}): "
            "the detections look normalised; comparing them would score about 0",
            file=file,
            fix="write detection coordinates in pixels (multiply by the image width and height)",
        )


def _check_numbers(file: Path, record: str, score: float, box: Iterable[float]) -> None:
    x1, y1, x2, y2 = box
    if not all(math.isfinite(v) for v in (score, x1, y1, x2, y2)):
        raise SoftSamplingError(
            "score or coordinate is NaN or infinite", file=file, record=record, fix="fix the detection"
        )
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
    for row, label, box, score in zip(
        dets.image_index.tolist(), dets.labels.tolist(), dets.boxes, dets.scores, strict=True
    ):
        x1, y1, x2, y2 = (float(v) for v in box)
        image_id = gt.image_ids[row]
        out.append(
            {
                "image_id": image_id.item() if isinstance(image_id, np.generic) else image_id,
                "category_id": int(label),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(score),
            }
        )
    write_json(path, out, indent=None)


def write_detections_csv(dets: Detections, gt: DetectionDataset, path: str | Path) -> None:
    """Write ``dets`` as CSV (header ``image,label,score,xmin,ymin,xmax,ymax``; image = file name)."""
    names = gt.category_names

    def num(v: np.floating) -> str:
        return np.format_float_positional(v, unique=True, trim="-")

    with atomic_write(path) as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for row, label, box, score in zip(
            dets.image_index.tolist(), dets.labels.tolist(), dets.boxes, dets.scores, strict=True
        ):
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
    gt_dir = check_input_dir(gt_dir, option="--gt", what="folder of ground-truth <image>.txt files")
    gt_files = sorted(gt_dir.glob("*.txt"))
    for path in gt_files:  # before any is opened: a FIFO would block, a folder or a symlink loop would fail
        check_input_file(path, option="--gt", what="ground-truth txt file", allow_empty=True)
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
        det_dir = check_input_dir(det_dir, option="--detections", what="folder of detection <image>.txt files")
        det_files = sorted(det_dir.glob("*.txt"))
        for path in det_files:
            check_input_file(path, option="--detections", what="detections txt file", allow_empty=True)
        rows, labels, boxes, scores = [], [], [], []
        unknown: dict[str, int] = {}
        for path in det_files:
            if path.stem not in row_of:
                raise SoftSamplingError(
                    f"no ground-truth file {path.stem}.txt for these detections",
                    file=path,
                    fix=f"add an empty {gt_dir / (path.stem + '.txt')} if the image has no objects, "
                    "or remove this file",
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
    if dets is not None and det_dir is not None:  # dets are read only from a det_dir
        check_same_units(gt, dets, det_dir)
    return gt, dets


def _lines(path: Path) -> Iterable[tuple[int, list[str]]]:
    for line_no, line in enumerate(read_utf8(path).splitlines(), start=1):
        fields = line.split()
        if fields:
            yield line_no, fields


def _number(text: str, path: Path, line_no: int) -> float:
    value = ascii_float(text)
    if value is None:
        raise SoftSamplingError(
            f"{text!r} is not a number",
            file=path,
            record=f"line {line_no}",
            fix="fix the line; class names must not contain spaces",
        )
    if not math.isfinite(value):
        raise SoftSamplingError(
            f"{text!r} is not a finite number", file=path, record=f"line {line_no}", fix="fix the line"
        )
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

    check_input_dir(images_dir, option="--images", what="image folder")
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
        check_input_file(image, option="--images", what="image")
        w, h = image_size(image, file=gt_file)  # header only; refuses decompression bombs
        names.append(image.name)
        widths.append(w)
        heights.append(h)
    return names, np.array(widths, dtype=np.int64), np.array(heights, dtype=np.int64)
