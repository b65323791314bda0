"""Open Images CSV: read a boxes file (plus labels, classes, sizes) into a :class:`DetectionDataset`, write it back.

Files (see docs/formats.md, "Open Images CSV")::

    boxes    ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,
             IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside   (one header line)
    labels   ImageID,Source,LabelName,Confidence   (image-level labels; Confidence 1 = present, 0 = verified absent)
    classes  LabelName,DisplayName                 (the official file has no header; both are accepted)
    sizes    ImageID,width,height                  (our own helper file; the header is required)

Conventions:
- coordinates in the file are normalised to [0, 1] and ordered XMin, XMax,
  YMin, YMax; we store ``xyxy`` float32 pixels ``(XMin*w, YMin*h, XMax*w,
  YMax*h)``, each product computed in float64 and rounded once;
- image sizes come from the sizes CSV, or else from the image files
  ``<image_root>/<ImageID>.jpg`` (header only, one file per image: slow for a
  million images). With neither, coordinates stay normalised: every image is
  ``1 x 1`` and ``ds.extra["normalized"]`` is True. Curation works on such a
  dataset; training and pixel-based evaluation need the real sizes;
- categories get ids 1..K in the classes CSV's order (``Category.name`` the
  DisplayName, ``Category.extra["LabelName"]`` the MID such as ``/m/01g317``);
  without a classes CSV, the sorted LabelNames of the boxes file, named by
  their LabelName;
- images are the ImageIDs of the boxes file in order of first appearance,
  then those that only the labels file names (images with no boxes);
  ``file_names`` are ``<ImageID>.jpg``; ``box_ids`` the 0-based data row of
  each box in the boxes file (line number = box id + 2);
- ``group_of`` is ``IsGroupOf == 1``, ``truncated`` is ``IsTruncated == 1``.

What is kept for a faithful rewrite (columnar, about 17 bytes per box):
- ``box_extra["oi_coords"]`` float64 [M, 4]: the normalised coordinates as
  read, in **xyxy order** (XMin, YMin, XMax, YMax);
- ``box_extra["oi_decimals"]`` uint8 [M, 4]: digits after the decimal point
  of each coordinate's text (``"0.012500"`` -> 6, ``"1"`` -> 0). 255 marks a
  text that is not a plain decimal (``"1e-05"``, ``".5"``); that text is kept
  verbatim in ``ds.extra["openimages"]["coord_text"][(box_id, k)]``;
- ``box_extra["oi_flags"]`` int8 [M, 5]: IsOccluded, IsTruncated, IsGroupOf,
  IsDepiction, IsInside as in the file (-1, 0 or 1);
- ``box_extra["oi_source"]`` / ``box_extra["oi_confidence"]`` uint16 [M]:
  indices into ``ds.extra["openimages"]["sources"]`` / ``["confidences"]``
  (lists of the distinct texts, e.g. ``["xclick", "activemil"]`` and ``["1"]``);
- columns beyond the 13 standard ones (Open Images V6 train has
  ``XClick1X`` ... ``XClick4Y``) as numpy bytes arrays ``box_extra[name]``;
- ``ds.extra["openimages"]["header"]``: the file's column names in order.

Image-level labels (``labels_csv``) are kept in ``ds.extra["image_labels"]``,
a dict of columns, one row per line of the file: ``image_id`` (str array),
``source`` (str array), ``label_name`` (str array), ``confidence_text`` (str
array, as written), ``confidence`` (float64), ``label`` (int64 category id,
-1 when the LabelName is not one of the dataset's categories; such rows are
kept so the file rewrites faithfully). :func:`image_level_labels` turns them
into ``(image_index, labels, positive)`` rows of the current dataset.

Round-trip guarantee: ``write_openimages(read_openimages(p), q)`` writes a
file byte-identical to ``p`` when ``p`` has ``\\n`` line endings, no byte-order
mark, ends with a newline and uses no CSV quoting. A coordinate whose float32 pixel value is
unchanged since reading is written with its original text; a changed one
(clipped, edited) and every coordinate of a dataset that did not come from
Open Images is written as ``pixel / size`` with up to 10 decimals (trailing
zeros dropped, at least one kept).

Speed: files are read in chunks of whole lines (``chunk_bytes``) and split
with vectorised numpy byte operations (:mod:`softsampling.data.csv_bytes`); no Python object is made per box.
15M boxes read in about 18 s on two shared cores (docs/benchmarks.md).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "boxes.csv").write_text(
    ...     "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,"
    ...     "IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside\\n"
    ...     "img1,xclick,/m/01g317,1,0.25,0.5,0.1,0.9,0,1,0,0,0\\n"
    ... )
    >>> _ = (folder / "sizes.csv").write_text("ImageID,width,height\\nimg1,200,100\\n")
    >>> ds = read_openimages(folder / "boxes.csv", sizes_csv=folder / "sizes.csv")
    >>> ds.image_ids, ds.boxes.tolist(), ds.truncated.tolist(), ds.categories[0].extra["LabelName"]
    (['img1'], [[50.0, 10.0, 100.0, 90.0]], [True], '/m/01g317')
    >>> write_openimages(ds, folder / "copy.csv")
    >>> (folder / "copy.csv").read_bytes() == (folder / "boxes.csv").read_bytes()
    True
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from softsampling.data.csv_bytes import (
    bytes_text,
    csv_field,
    decode_utf8,
    format_fixed,
    intern_codes,
    iter_rows,
    join_columns,
    key_rows,
    open_csv,
    parse_decimal,
    parse_flag,
    read_header,
    to_str,
)
from softsampling.data.images import check_images as _check_image_files
from softsampling.data.images import image_size, resolve_image_path
from softsampling.data.validate import POLICIES, ValidationReport, box_problems, check_unique, validate_boxes
from softsampling.errors import SoftSamplingError
from softsampling.io import atomic_write
from softsampling.parsing import ascii_float
from softsampling.structures.records import Category, DetectionDataset

BOX_COLUMNS = (
    "ImageID",
    "Source",
    "LabelName",
    "Confidence",
    "XMin",
    "XMax",
    "YMin",
    "YMax",
    "IsOccluded",
    "IsTruncated",
    "IsGroupOf",
    "IsDepiction",
    "IsInside",
)
LABEL_COLUMNS = ("ImageID", "Source", "LabelName", "Confidence")
SIZE_COLUMNS = ("ImageID", "width", "height")
CLASS_COLUMNS = ("LabelName", "DisplayName")
FLAG_COLUMNS = ("IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside")
COORD_COLUMNS_XYXY = ("XMin", "YMin", "XMax", "YMax")  # order of oi_coords / oi_decimals columns
NO_TEXT = 255  # oi_decimals value: the original text is not a plain decimal, see coord_text
NEW_DECIMALS = 10  # decimals for coordinates that have no original text
DEFAULT_CHUNK_BYTES = 1 << 23  # 8 MiB of CSV text per chunk (about 100k boxes)
DEFAULT_CHUNK_ROWS = 100_000
SOURCE_FOR_NEW = "softsampling"  # Source written for boxes that did not come from an Open Images file
LABELS_SUFFIX = "-image-labels.csv"


# ============================================================================ reading
def read_openimages(
    path: str | Path,
    *,
    classes_csv: str | Path | None = None,
    labels_csv: str | Path | None = None,
    sizes_csv: str | Path | None = None,
    image_root: str | Path | None = None,
    invalid: str = "error",
    clip_tolerance: float = 0.05,
    check_images: bool = False,
    allow_outside_root: bool = False,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> DetectionDataset:
    """Read an Open Images boxes CSV (and optional labels, classes and sizes CSVs).

    Args:
        path: the boxes CSV (header ``ImageID,Source,LabelName,...,IsInside``;
            extra columns are kept, column order is free).
        classes_csv: ``LabelName,DisplayName`` rows, header optional. Every
            LabelName of the boxes file must be listed.
        labels_csv: image-level labels ``ImageID,Source,LabelName,Confidence``.
        sizes_csv: ``ImageID,width,height`` (pixels) with that header. Every
            image must be listed; other rows are ignored.
        image_root: folder of ``<ImageID>.jpg``; sizes are read from the image
            headers when there is no ``sizes_csv``.
        invalid: bad boxes (empty, outside the image): ``"error"``, ``"clip"``
            (at most ``clip_tolerance`` of the image outside) or ``"skip"``.
            Structural problems (header, field count, non-numeric text,
            unknown LabelName, missing size) always raise.
        check_images: also check every image file under ``image_root``
            (inside the folder, exists, size equals the sizes CSV).
        allow_outside_root: accept ImageIDs whose file leaves ``image_root``.
        chunk_bytes: bytes of CSV text parsed at a time (memory vs. speed).

    Returns the dataset; ``ds.extra["validation_report"]`` holds the
    :class:`~softsampling.data.validate.ValidationReport`. Raises
    :class:`SoftSamplingError` naming the file, the line and the fix.
    """
    if invalid not in POLICIES:
        raise SoftSamplingError(f"unknown invalid-box policy {invalid!r}", fix=f"use one of {', '.join(POLICIES)}")
    path = Path(path)
    name = str(path)
    if check_images and image_root is None:
        raise SoftSamplingError("check_images needs the image folder", file=name, fix="pass image_root (--images)")

    classes = _read_classes(Path(classes_csv)) if classes_csv is not None else None
    parsed = _read_boxes(path, chunk_bytes=chunk_bytes)
    image_index: dict[bytes, int] = parsed.pop("image_index")
    categories, labels = _categories_and_labels(parsed, classes, classes_csv, name)

    image_labels = None
    if labels_csv is not None:
        image_labels = _read_image_labels(Path(labels_csv), image_index, categories, chunk_bytes=chunk_bytes)

    image_ids = [_image_id_text(k, row, parsed["box_image"], name) for row, k in enumerate(image_index)]
    if image_root is not None and not allow_outside_root:
        _check_image_ids_stay_inside(image_ids, name)
    file_names = [f"{iid}.jpg" for iid in image_ids]
    box_image = parsed["box_image"]
    n_images = len(image_ids)
    normalized = False
    if sizes_csv is not None:
        widths, heights = _read_sizes(Path(sizes_csv), image_index, chunk_bytes=chunk_bytes)
        missing = np.flatnonzero(widths == 0)
        if len(missing):
            raise SoftSamplingError(
                f"no size for ImageID {image_ids[missing[0]]!r} ({len(missing)} image(s) without a size)",
                file=str(sizes_csv),
                record=_first_use(int(missing[0]), box_image, name, labels_csv, image_labels, image_ids),
                fix="add a line 'ImageID,width,height' for every image of the boxes and labels files",
            )
    elif image_root is not None:
        widths = np.zeros(n_images, dtype=np.int64)
        heights = np.zeros(n_images, dtype=np.int64)
        for i, fname in enumerate(file_names):
            record = _first_use(i, box_image, name, labels_csv, image_labels, image_ids)
            p = resolve_image_path(image_root, fname, allow_outside_root=allow_outside_root, file=name, record=record)
            widths[i], heights[i] = image_size(p, file=name, record=record)
    else:
        widths = np.ones(n_images, dtype=np.int64)
        heights = np.ones(n_images, dtype=np.int64)
        normalized = True

    coords = parsed["coords"]  # float64 [M, 4] xyxy normalised
    boxes = _pixel_boxes(coords, widths, heights, box_image)
    flags = parsed["flags"]
    m = len(box_image)
    ds = DetectionDataset(
        image_ids=image_ids,
        file_names=file_names,
        widths=widths,
        heights=heights,
        box_image=box_image,
        boxes=boxes,
        labels=labels,
        box_ids=np.arange(m, dtype=np.int64),
        iscrowd=np.zeros(m, dtype=bool),
        difficult=np.zeros(m, dtype=bool),
        group_of=flags[:, 2] == 1,
        truncated=flags[:, 1] == 1,
        categories=categories,
        image_root=None if image_root is None else Path(image_root),
        box_extra={
            "oi_coords": coords,
            "oi_decimals": parsed["decimals"],
            "oi_flags": flags,
            "oi_source": parsed["source"],
            "oi_confidence": parsed["confidence"],
            **parsed["extra_columns"],
        },
        extra={
            "normalized": normalized,
            "openimages": {
                "header": parsed["header"],
                "sources": parsed["sources"],
                "confidences": parsed["confidences"],
                "coord_text": parsed["coord_text"],
            },
        },
    )
    if image_labels is not None:
        ds.extra["image_labels"] = image_labels
    ds, report = _validate(ds, name, invalid, clip_tolerance)
    ds.extra = {**ds.extra, "validation_report": report}
    if check_images:
        _check_image_files(
            ds,
            file=name,
            describe_image=lambda row: f"ImageID {ds.image_ids[row]!r}",
            allow_outside_root=allow_outside_root,
        )
    return ds


def image_level_labels(ds: DetectionDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The verified image-level labels of ``ds`` as rows of the *current* dataset.

    Returns ``(image_index int64 [L], labels int64 [L], positive bool [L])``
    (``positive``: Confidence >= 0.5), keeping only rows whose image is in
    ``ds`` and whose LabelName is a category. Empty arrays when the dataset
    has no image-level labels. Feed them to
    ``softsampling.evaluation.openimages_metric.ImageLabels``.
    """
    table = ds.extra.get("image_labels")
    if not table or len(table["image_id"]) == 0 or ds.num_images == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool)
    ids = np.asarray([str(i) for i in ds.image_ids])
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    pos = np.minimum(np.searchsorted(sorted_ids, table["image_id"]), len(ids) - 1)
    keep = (sorted_ids[pos] == table["image_id"]) & (table["label"] >= 0)
    return order[pos[keep]].astype(np.int64), table["label"][keep].astype(np.int64), table["confidence"][keep] >= 0.5


def labels_path_for(boxes_path: str | Path) -> Path:
    """Where :func:`write_openimages` puts the image-level labels by default: ``<stem>-image-labels.csv`` beside."""
    boxes_path = Path(boxes_path)
    return boxes_path.with_name(boxes_path.stem + LABELS_SUFFIX)


# ---------------------------------------------------------------------------- boxes file
def _read_boxes(path: Path, *, chunk_bytes: int) -> dict[str, Any]:
    """Parse the boxes CSV chunk by chunk into columns (see the module docstring for their meaning)."""
    name = str(path)
    image_index: dict[bytes, int] = {}
    label_vocab: dict[bytes, int] = {}
    source_vocab: dict[bytes, int] = {}
    conf_vocab: dict[bytes, int] = {}
    coord_text: dict[tuple[int, int], str] = {}
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("box_image", "label_code", "source", "confidence", "coords", "decimals", "flags")
    }
    with open_csv(path) as f:
        header = read_header(f, path, BOX_COLUMNS, what="Open Images boxes")
        extra_names = [c for c in header if c not in BOX_COLUMNS]
        extra_parts: dict[str, list[np.ndarray]] = {c: [] for c in extra_names}
        for first_row, cols in iter_rows(f, header, file=name, chunk_bytes=chunk_bytes):
            parts["box_image"].append(key_rows(cols["ImageID"], image_index))
            parts["label_code"].append(intern_codes(cols["LabelName"], label_vocab))
            parts["source"].append(intern_codes(cols["Source"], source_vocab).astype(np.uint16))
            parts["confidence"].append(intern_codes(cols["Confidence"], conf_vocab).astype(np.uint16))
            n = len(cols["ImageID"])
            coords = np.empty((n, 4), dtype=np.float64)
            decimals = np.empty((n, 4), dtype=np.uint8)
            for k, col in enumerate(COORD_COLUMNS_XYXY):
                value, dec, odd = parse_decimal(cols[col])
                for i in np.flatnonzero(odd):  # rare: texts that are not plain decimals
                    text = decode_utf8(cols[col][i], name, col, line=first_row + i + 2)
                    value[i] = _float_or_error(text, col, name, first_row + i + 2)
                    coord_text[(first_row + int(i), k)] = text
                coords[:, k] = value
                decimals[:, k] = np.where(odd, NO_TEXT, dec)
            parts["coords"].append(coords)
            parts["decimals"].append(decimals)
            flags = np.empty((n, 5), dtype=np.int8)
            for k, col in enumerate(FLAG_COLUMNS):
                flags[:, k] = parse_flag(cols[col], col, name, first_row)
            parts["flags"].append(flags)
            for c in extra_names:
                extra_parts[c].append(cols[c])
    out: dict[str, Any] = {k: _concat(v, k) for k, v in parts.items()}
    out["image_index"] = image_index
    out["label_vocab"] = label_vocab
    out["sources"] = [decode_utf8(s, name, "Source") for s in source_vocab]
    out["confidences"] = [decode_utf8(s, name, "Confidence") for s in conf_vocab]
    out["coord_text"] = coord_text
    out["header"] = header
    out["extra_columns"] = {c: _concat_bytes(v) for c, v in extra_parts.items()}
    return out


_EMPTY = {
    "box_image": (np.int64, ()),
    "label_code": (np.int64, ()),
    "source": (np.uint16, ()),
    "confidence": (np.uint16, ()),
    "coords": (np.float64, (4,)),
    "decimals": (np.uint8, (4,)),
    "flags": (np.int8, (5,)),
}


def _concat(parts: list[np.ndarray], key: str) -> np.ndarray:
    if not parts:
        dtype, shape = _EMPTY[key]
        return np.zeros((0, *shape), dtype=dtype)
    if len(parts) == 1:
        return parts[0]
    out = np.concatenate(parts)
    parts.clear()
    return out


def _concat_bytes(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype="S1")
    width = max(p.dtype.itemsize for p in parts)
    return np.concatenate([p.astype(f"S{width}") for p in parts])


def _categories_and_labels(
    parsed: dict[str, Any], classes: list[tuple[str, str]] | None, classes_csv: str | Path | None, name: str
) -> tuple[list[Category], np.ndarray]:
    """Category list and the category id of every box (from the per-file LabelName codes)."""
    vocab: dict[bytes, int] = parsed.pop("label_vocab")
    codes = parsed.pop("label_code")
    names = [decode_utf8(k, name, "LabelName") for k in vocab]
    if classes is None:
        ordered = sorted(names)
        categories = [Category(i + 1, ln, {"LabelName": ln}) for i, ln in enumerate(ordered)]
    else:
        categories = [Category(i + 1, display, {"LabelName": ln}) for i, (ln, display) in enumerate(classes)]
    id_of = {c.extra["LabelName"]: c.id for c in categories}
    lut = np.zeros(len(names), dtype=np.int64)
    for code, ln in enumerate(names):
        if ln not in id_of:
            row = int(np.flatnonzero(codes == code)[0])
            raise SoftSamplingError(
                f"LabelName {ln!r} is not in the classes file {str(classes_csv)!r}",
                file=name,
                record=f"line {row + 2}",
                fix="use the classes file that belongs to these boxes (e.g. class-descriptions-boxable.csv), "
                "or add the class to it",
            )
        lut[code] = id_of[ln]
    return categories, lut[codes] if len(codes) else np.zeros(0, dtype=np.int64)


def _pixel_boxes(coords: np.ndarray, widths: np.ndarray, heights: np.ndarray, box_image: np.ndarray) -> np.ndarray:
    """float32 [M, 4] xyxy pixels from normalised xyxy coordinates: each product in float64, rounded once."""
    out = np.empty(coords.shape, dtype=np.float32)
    step = 2_000_000
    for s in range(0, len(coords), step):
        img = box_image[s : s + step]
        w = widths[img].astype(np.float64)
        h = heights[img].astype(np.float64)
        c = coords[s : s + step]
        with np.errstate(over="ignore", invalid="ignore"):  # huge values become inf, which validation reports
            out[s : s + step, 0] = c[:, 0] * w
            out[s : s + step, 1] = c[:, 1] * h
            out[s : s + step, 2] = c[:, 2] * w
            out[s : s + step, 3] = c[:, 3] * h
    return out


def _validate(
    ds: DetectionDataset, name: str, invalid: str, clip_tolerance: float
) -> tuple[DetectionDataset, ValidationReport]:
    """validate_boxes, after a chunked check that skips it (and its full-size temporaries) when all boxes are fine."""
    step = 2_000_000
    any_bad = False
    for s in range(0, ds.num_boxes, step):
        img = ds.box_image[s : s + step]
        code, _ = box_problems(ds.boxes[s : s + step], ds.widths[img], ds.heights[img], clip_tolerance)
        if code.any():
            any_bad = True
            break
    if not any_bad:
        return ds, ValidationReport()
    read_ids = ds.box_ids
    return validate_boxes(
        ds, lambda row: (name, f"line {int(read_ids[row]) + 2}"), policy=invalid, clip_tolerance=clip_tolerance
    )


# ---------------------------------------------------------------------------- other files
def _read_classes(path: Path) -> list[tuple[str, str]]:
    """``[(LabelName, DisplayName)]`` in file order; a first line ``LabelName,DisplayName`` is a header."""
    name = str(path)
    if not path.exists():
        raise SoftSamplingError("classes file does not exist", file=name, fix="check the path of the classes CSV")
    with open(path, newline="", encoding="utf-8-sig") as f:
        try:
            rows = list(csv.reader(f, strict=True))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise SoftSamplingError(
                f"not a valid CSV file ({exc})", file=name, fix="give a UTF-8 CSV with lines LabelName,DisplayName"
            ) from None
    out: list[tuple[str, str]] = []
    for i, row in enumerate(rows):
        if i == 0 and [c.strip() for c in row] == list(CLASS_COLUMNS):
            continue
        if not row:
            continue
        if len(row) != 2:
            raise SoftSamplingError(
                f"line has {len(row)} field(s), expected 2 (LabelName,DisplayName)",
                file=name,
                record=f"line {i + 1}",
                fix="every line must be LabelName,DisplayName, e.g. /m/01g317,Person; quote names that contain commas",
            )
        out.append((row[0], row[1]))
    check_unique([ln for ln, _ in out], what="LabelName", file=name)
    return out


def _read_image_labels(
    path: Path, image_index: dict[bytes, int], categories: list[Category], *, chunk_bytes: int
) -> dict[str, np.ndarray]:
    """Columns of the image-level labels file; adds images that have labels but no boxes to ``image_index``."""
    name = str(path)
    id_of = {c.extra.get("LabelName", c.name): c.id for c in categories}
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("image_id", "source", "label_name", "confidence_text", "confidence", "label")
    }
    with open_csv(path) as f:
        header = read_header(f, path, LABEL_COLUMNS, what="Open Images image-level labels")
        for first_row, cols in iter_rows(f, header, file=name, chunk_bytes=chunk_bytes):
            key_rows(cols["ImageID"], image_index)
            value, _, odd = parse_decimal(cols["Confidence"])
            for i in np.flatnonzero(odd):
                text = decode_utf8(cols["Confidence"][i], name, "Confidence", line=first_row + i + 2)
                value[i] = _float_or_error(text, "Confidence", name, first_row + i + 2)
            label_names = to_str(cols["LabelName"], name, "LabelName", first_row)
            parts["image_id"].append(to_str(cols["ImageID"], name, "ImageID", first_row))
            parts["source"].append(to_str(cols["Source"], name, "Source", first_row))
            parts["label_name"].append(label_names)
            parts["confidence_text"].append(to_str(cols["Confidence"], name, "Confidence", first_row))
            parts["confidence"].append(value)
            uniq, inv = np.unique(label_names, return_inverse=True)
            parts["label"].append(
                np.array([id_of.get(str(u), -1) for u in uniq], dtype=np.int64)[inv]
                if len(uniq)
                else np.zeros(0, np.int64)
            )
    out: dict[str, np.ndarray] = {}
    for k, v in parts.items():
        if not v:
            out[k] = np.zeros(0, dtype=np.float64 if k == "confidence" else np.int64 if k == "label" else "U1")
        else:
            out[k] = np.concatenate(v)
    return out


def _read_sizes(path: Path, image_index: dict[bytes, int], *, chunk_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(widths, heights)`` int64 [I] for the images of ``image_index``; 0 where the file has no line."""
    name = str(path)
    n = len(image_index)
    widths = np.zeros(n, dtype=np.int64)
    heights = np.zeros(n, dtype=np.int64)
    with open_csv(path) as f:
        header = read_header(f, path, SIZE_COLUMNS, what="image sizes")
        for first_row, cols in iter_rows(f, header, file=name, chunk_bytes=chunk_bytes):
            rows = np.array([image_index.get(k, -1) for k in cols["ImageID"].tolist()], dtype=np.int64)
            sizes = []
            for col in ("width", "height"):
                value, dec, odd = parse_decimal(cols[col])
                bad = odd | (dec != 0) | ~(value > 0)
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    raise SoftSamplingError(
                        f"{col} must be a positive whole number of pixels, got {bytes_text(cols[col][i])!r}",
                        file=name,
                        record=f"line {first_row + i + 2}",
                        fix="write the image size in pixels, e.g. 1024",
                    )
                sizes.append(value.astype(np.int64))
            known = rows >= 0
            r = rows[known]
            w, h = sizes[0][known], sizes[1][known]
            seen = widths[r] > 0
            dup_rows = np.unique(r, return_counts=True)[1] > 1 if len(r) else np.zeros(0, bool)
            if seen.any() or dup_rows.any():
                ids = cols["ImageID"][known]
                first = int(np.flatnonzero(seen)[0]) if seen.any() else _first_duplicate(r)
                raise SoftSamplingError(
                    f"ImageID {bytes_text(ids[first])!r} has a second size line",
                    file=name,
                    record=f"line {first_row + int(np.flatnonzero(known)[first]) + 2}",
                    fix="keep one line per ImageID",
                )
            widths[r], heights[r] = w, h
    return widths, heights


def _first_duplicate(values: np.ndarray) -> int:
    seen: set[int] = set()
    for i, v in enumerate(values.tolist()):
        if v in seen:
            return i
        seen.add(v)
    return 0


def _first_use(
    row: int, box_image: np.ndarray, name: str, labels_csv: Any, image_labels: Any, image_ids: list[str]
) -> str:
    """Where image row ``row`` first appears: a line of the boxes file, else of the labels file."""
    hits = np.flatnonzero(box_image == row)
    if len(hits):
        return f"ImageID {image_ids[row]!r} (first on line {int(hits[0]) + 2} of {name})"
    if image_labels is not None:
        hits = np.flatnonzero(image_labels["image_id"] == image_ids[row])
        if len(hits):
            return f"ImageID {image_ids[row]!r} (first on line {int(hits[0]) + 2} of {labels_csv})"
    return f"ImageID {image_ids[row]!r}"


def _check_image_ids_stay_inside(image_ids: list[str], name: str) -> None:
    """ImageIDs become file names under image_root: refuse separators and '..' (path traversal)."""
    for iid in image_ids:
        if "/" in iid or "\\" in iid or iid.startswith(".."):
            raise SoftSamplingError(
                f"ImageID {iid!r} is not a plain file stem; its image file would leave the image folder",
                file=name,
                record=f"ImageID {iid!r}",
                fix="use Open Images ImageIDs (hex strings), or pass allow_outside_root=True (--allow-outside-root)",
            )


# ============================================================================ column parsers
def _float_or_error(text: str, col: str, file: str, line: int) -> float:
    value = ascii_float(text)  # not float(): it reads full-width digits and "1_0"
    if value is None:
        raise SoftSamplingError(
            f"{col} is not a number: {text!r}",
            file=file,
            record=f"line {line}",
            fix=f"write {col} as a number between 0 and 1 (a fraction of the image size), e.g. 0.25",
        )
    return value


def _image_id_text(raw: bytes, row: int, box_image: np.ndarray, file: str) -> str:
    """ImageID ``raw`` of image row ``row`` as text; if it is not UTF-8, the error names its first line."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        hits = np.flatnonzero(box_image == row)
        return decode_utf8(raw, file, "ImageID", line=int(hits[0]) + 2 if len(hits) else None)


# ============================================================================ writing
def write_openimages(
    ds: DetectionDataset,
    path: str | Path,
    *,
    labels_path: str | Path | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> None:
    """Write ``ds`` as an Open Images boxes CSV (atomically), and its image-level labels if it has them.

    The boxes file has the header the dataset was read with (default: the 13
    standard columns). Boxes from an Open Images file keep their original
    texts where unchanged (see the module docstring). For other datasets:
    coordinates are ``pixel / image size``; Source is ``softsampling``,
    Confidence ``1``, LabelName the category's ``extra["LabelName"]`` or its
    name, IsGroupOf ``group_of or iscrowd``, IsTruncated ``truncated``, and
    IsOccluded/IsDepiction/IsInside ``-1`` (unknown).

    Image-level labels (``ds.extra["image_labels"]``) go to ``labels_path``,
    default :func:`labels_path_for` (``<stem>-image-labels.csv`` beside the
    boxes), keeping only rows of images that are still in ``ds``.
    """
    path = Path(path)
    oi = ds.extra.get("openimages") or {}
    header = list(oi.get("header") or BOX_COLUMNS)
    missing = [c for c in header if c not in BOX_COLUMNS and c not in ds.box_extra]
    if missing:
        header = [c for c in header if c not in missing]
    name = str(path)
    image_text = _image_id_texts(ds, name)
    label_text, label_row = _label_texts(ds, name)
    with atomic_write(path, "wb") as f:
        f.write((",".join(header) + "\n").encode("utf-8"))
        for s in range(0, ds.num_boxes, max(int(chunk_rows), 1)):
            rows = np.arange(s, min(s + chunk_rows, ds.num_boxes))
            cols = _box_columns(ds, rows, image_text, label_text, label_row, oi)
            f.write(join_columns([cols[c] if c in cols else ds.box_extra[c][rows] for c in header]))
    table = ds.extra.get("image_labels")
    if table is not None:
        _write_image_labels(ds, table, Path(labels_path) if labels_path is not None else labels_path_for(path))


def _box_columns(
    ds: DetectionDataset,
    rows: np.ndarray,
    image_text: np.ndarray,
    label_text: np.ndarray,
    label_row: np.ndarray,
    oi: dict[str, Any],
) -> dict[str, np.ndarray]:
    """The 13 standard columns of box rows ``rows`` as numpy bytes arrays."""
    n = len(rows)
    img = ds.box_image[rows]
    cols: dict[str, np.ndarray] = {
        "ImageID": image_text[img],
        "LabelName": label_text[label_row[rows]],
    }
    for key, vocab_key, default in (("oi_source", "sources", SOURCE_FOR_NEW), ("oi_confidence", "confidences", "1")):
        if key in ds.box_extra and vocab_key in oi:
            vocab = np.array([csv_field(v) for v in oi[vocab_key]] or [b""], dtype="S")
            cols["Source" if key == "oi_source" else "Confidence"] = vocab[ds.box_extra[key][rows]]
        else:
            cols["Source" if key == "oi_source" else "Confidence"] = np.full(
                n, default.encode(), dtype=f"S{len(default)}"
            )
    group_of = ds.group_of[rows] | ds.iscrowd[rows]
    if "oi_flags" in ds.box_extra:  # the file's -1/0/1, unless the dataset's boolean now disagrees
        flags = ds.box_extra["oi_flags"][rows].astype(np.int8)
        for k, now in ((1, ds.truncated[rows]), (2, group_of)):
            flags[:, k] = np.where((flags[:, k] == 1) == now, flags[:, k], now.astype(np.int8))
    else:  # occlusion, depiction and inside unknown (-1)
        flags = np.full((n, 5), -1, dtype=np.int8)
        flags[:, 1] = ds.truncated[rows]
        flags[:, 2] = group_of
    flag_text = np.array([b"-1", b"0", b"1"])
    for k, col in enumerate(FLAG_COLUMNS):
        cols[col] = flag_text[flags[:, k] + 1]
    # coordinates: original text where the pixel value is unchanged, else pixel / size
    sizes = np.stack([ds.widths[img], ds.heights[img], ds.widths[img], ds.heights[img]], axis=1).astype(np.float64)
    boxes = ds.boxes[rows]
    new_value = boxes.astype(np.float64) / sizes
    if "oi_coords" in ds.box_extra and "oi_decimals" in ds.box_extra:
        orig = ds.box_extra["oi_coords"][rows]
        dec = ds.box_extra["oi_decimals"][rows]
        same = (orig * sizes).astype(np.float32) == boxes
    else:
        orig = new_value
        dec = np.full((n, 4), NO_TEXT, dtype=np.uint8)
        same = np.zeros((n, 4), dtype=bool)
    coord_text = oi.get("coord_text") or {}
    box_ids = ds.box_ids[rows]
    for k, col in enumerate(COORD_COLUMNS_XYXY):
        keep = same[:, k] & (dec[:, k] != NO_TEXT)
        if keep.all():
            text = format_fixed(orig[:, k], dec[:, k])
        else:
            text = _format_new(new_value[:, k])
            if keep.any():
                text = text.astype(f"S{max(text.dtype.itemsize, 24)}")
                text[keep] = format_fixed(orig[keep, k], dec[keep, k])
        verbatim = np.flatnonzero(same[:, k] & (dec[:, k] == NO_TEXT))
        if len(verbatim):
            texts = [coord_text.get((int(box_ids[i]), k)) for i in verbatim]
            if any(t is not None for t in texts):
                width = max([text.dtype.itemsize] + [len(t.encode()) for t in texts if t is not None])
                text = text.astype(f"S{width}")
                for i, t in zip(verbatim, texts, strict=True):
                    if t is not None:
                        text[i] = t.encode()
        cols[col] = text
    return cols


def _format_new(values: np.ndarray) -> np.ndarray:
    """Texts for computed coordinates: 10 decimals, trailing zeros dropped (at least one kept)."""
    n = len(values)
    plain = np.isfinite(values) & (np.abs(values) < 1e5)
    safe = np.where(plain, values, 0.0)
    mant = np.rint(np.abs(safe) * 10.0**NEW_DECIMALS).astype(np.int64)
    strip = np.zeros(n, dtype=np.int64)
    for t in range(1, NEW_DECIMALS):
        strip += mant % 10**t == 0
    decimals = NEW_DECIMALS - strip
    rounded = mant / 10.0**NEW_DECIMALS
    text = format_fixed(np.where(np.signbit(safe), -rounded, rounded), decimals)
    if not plain.all():
        text = text.astype("S32")
        for i in np.flatnonzero(~plain):
            text[i] = repr(float(values[i])).encode()
    return text


def _image_id_texts(ds: DetectionDataset, file: str) -> np.ndarray:
    """ImageID text of every image row, as an ``S`` array."""
    texts = [str(i) for i in ds.image_ids]
    try:
        arr = np.array(texts, dtype="S") if texts else np.zeros(0, dtype="S1")
        plain = not any(("," in t or '"' in t or "\n" in t or "\r" in t) for t in texts)
    except UnicodeEncodeError:
        plain = False
    if plain:
        return arr
    return np.array([csv_field(t) for t in texts], dtype="S")


def _label_texts(ds: DetectionDataset, file: str) -> tuple[np.ndarray, np.ndarray]:
    """``(texts S [K], row of each box in texts)`` for the LabelName column."""
    cats = ds.categories
    texts = np.array([csv_field(str(c.extra.get("LabelName", c.name))) for c in cats] or [b""], dtype="S")
    ids = np.array([c.id for c in cats], dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    pos = np.searchsorted(ids[order], ds.labels)
    pos = np.minimum(pos, max(len(ids) - 1, 0))
    known = ids[order][pos] == ds.labels if len(ids) else np.zeros(ds.num_boxes, bool)
    if not known.all():
        i = int(np.flatnonzero(~known)[0])
        raise SoftSamplingError(
            f"box label {int(ds.labels[i])} is not the id of any category",
            file=file,
            record=f"box id {int(ds.box_ids[i])}",
            fix="add the category to the dataset before writing",
        )
    return texts, order[pos]


def _write_image_labels(ds: DetectionDataset, table: dict[str, np.ndarray], path: Path) -> None:
    """Rows of ``table`` whose image is still in ``ds``, in their original order and texts."""
    ids = np.asarray([str(i) for i in ds.image_ids])
    keep = np.isin(table["image_id"], ids)
    text = table.get("confidence_text")
    if text is None:
        text = np.array([f"{c:g}" for c in table["confidence"]])
    cols = [table["image_id"][keep], table["source"][keep], table["label_name"][keep], text[keep]]
    with atomic_write(path, "wb") as f:
        f.write((",".join(LABEL_COLUMNS) + "\n").encode())
        for s in range(0, int(keep.sum()), DEFAULT_CHUNK_ROWS):
            part = []
            for c in cols:
                b = np.char.encode(c[s : s + DEFAULT_CHUNK_ROWS], "utf-8")
                if any((np.char.find(b, x) >= 0).any() for x in (b",", b'"', b"\n", b"\r")):
                    b = np.array([csv_field(str(v)) for v in c[s : s + DEFAULT_CHUNK_ROWS]], dtype="S")
                part.append(b)
            f.write(join_columns(part))
