"""COCO "instances" JSON: read into a :class:`DetectionDataset`, write it back faithfully.

Layout (see docs/formats.md)::

    <root>/annotations/instances_train2017.json    <root>/annotations/train.json
    <root>/images/train2017/*.jpg          or      <root>/images/train/*.png

Conventions:
- COCO ``bbox`` is ``[x, y, w, h]`` in pixels; we store ``xyxy`` float32 with
  ``x2 = x + w`` computed in float64 and rounded once to float32;
- category ids are kept as they are (COCO's 1..90 with gaps);
- ``image_ids`` are the images' ``id``, ``box_ids`` the annotations' ``id``;
- ``iscrowd`` becomes the ``iscrowd`` flag (missing means 0). The non-standard
  keys ``difficult``, ``truncated`` and ``group_of`` (0/1), if present, become
  those flags, so a VOC dataset converted to COCO keeps its difficult flags;
- everything else is kept for writing: top-level keys (``info``,
  ``licenses``, ...) in ``ds.extra``; other image keys in
  ``ds.image_extra["coco_fields"]``; other annotation keys (``segmentation``,
  ``area``, ...) in ``ds.box_extra["coco_fields"]``; the annotation's original
  ``bbox`` list in ``ds.box_extra["coco_bbox"]``; other category keys
  (``supercategory``) in ``Category.extra``.

Round-trip guarantee: ``write_coco(read_coco(p), q)`` writes a JSON document
equal to ``p``'s as a Python object (``json.load(p) == json.load(q)``) when the
input gives every annotation an ``iscrowd``. Only key order inside records and
whitespace differ. A box whose float32 ``xyxy`` still equals what was read is
written with its original ``bbox`` list; a changed box (clipped, edited) is
written with the shortest decimals that read back to exactly the same float32
box. Output is deterministic: the same dataset gives byte-identical files.

Example:
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> doc = {
    ...     "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}],
    ...     "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "bbox": [10.5, 20, 30, 40.25], "iscrowd": 0}],
    ...     "categories": [{"id": 3, "name": "car", "supercategory": "vehicle"}],
    ... }
    >>> _ = (folder / "train.json").write_text(json.dumps(doc))
    >>> ds = read_coco(folder / "train.json")
    >>> ds.boxes.tolist(), ds.labels.tolist(), ds.box_ids.tolist()
    ([[10.5, 20.0, 40.5, 60.25]], [3], [7])
    >>> write_coco(ds, folder / "copy.json")
    >>> json.loads((folder / "copy.json").read_text()) == doc
    True
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from softsampling.data.images import DEFAULT_MAX_PIXELS
from softsampling.data.images import check_images as _check_image_files
from softsampling.data.validate import POLICIES, check_unique, validate_boxes
from softsampling.errors import SoftSamplingError
from softsampling.io import atomic_write
from softsampling.parsing import parse_json
from softsampling.structures.records import Category, DetectionDataset

CORE_KEYS = ("images", "annotations", "categories")
IMAGE_KEYS = ("id", "file_name", "width", "height")
ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox", "iscrowd")
CATEGORY_KEYS = ("id", "name")
# optional, non-standard 0/1 keys that map onto DetectionDataset flags
FLAG_KEYS = ("difficult", "truncated", "group_of")


# --------------------------------------------------------------------- reading
def read_coco(
    path: str | Path,
    *,
    image_root: str | Path | None = None,
    check_images: bool = False,
    invalid: str = "error",
    clip_tolerance: float = 0.05,
    allow_outside_root: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DetectionDataset:
    """Read a COCO instances JSON file.

    Args:
        path: the JSON file.
        image_root: folder that ``file_name`` is relative to. Default: the
            first existing folder of :func:`default_image_root`.
        check_images: also check every image file (inside ``image_root``,
            exists, real size equals ``width``/``height``); reads headers only.
        invalid: what to do with bad boxes: ``"error"``, ``"clip"`` (boxes
            at most ``clip_tolerance`` of the image size outside it) or
            ``"skip"``. Structural problems (bad JSON, missing keys, unknown
            ids, duplicates) always raise.
        allow_outside_root: with ``check_images``, accept file names that
            leave ``image_root`` (absolute, ``..``, symlinks out).
        max_pixels: with ``check_images``, refuse larger images.

    Returns the dataset; ``ds.extra["validation_report"]`` holds the
    :class:`~softsampling.data.validate.ValidationReport` (clipped/skipped counts).
    Raises :class:`SoftSamplingError` naming the file and the record for any problem.
    """
    if invalid not in POLICIES:
        raise SoftSamplingError(f"unknown invalid-box policy {invalid!r}", fix=f"use one of {', '.join(POLICIES)}")
    path = Path(path)
    name = str(path)
    doc = _load_json(path)
    if not isinstance(doc, dict):
        raise SoftSamplingError(
            f"top level is a JSON {_json_type(doc)}, expected an object with keys images, annotations, categories",
            file=name,
            fix="give the COCO instances JSON file (e.g. annotations/instances_train2017.json)",
        )
    for key in CORE_KEYS:
        if key not in doc:
            raise SoftSamplingError(
                f"missing top-level key {key!r}",
                file=name,
                fix="a COCO instances file needs images, annotations and categories",
            )
        if not isinstance(doc[key], list):
            raise SoftSamplingError(f"top-level {key!r} is a JSON {_json_type(doc[key])}, expected a list", file=name)

    categories = _read_categories(doc["categories"], name)
    cat_ids = {c.id for c in categories}

    image_ids: list[int] = []
    file_names: list[str] = []
    widths: list[int] = []
    heights: list[int] = []
    image_fields: list[dict[str, Any]] = []
    for i, im in enumerate(doc["images"]):
        where = f"images[{i}]"
        _require_object(im, name, where)
        iid = _get(im, "id", "int", name, where)
        where = f"image id {iid} (images[{i}])"
        file_name = _get(im, "file_name", "str", name, where)
        w = _get(im, "width", "size", name, where)
        h = _get(im, "height", "size", name, where)
        if w <= 0 or h <= 0:
            raise SoftSamplingError(
                f"image size must be positive, got width={w}, height={h}",
                file=name,
                record=where,
                fix="correct width/height (the image's size in pixels)",
            )
        image_ids.append(iid)
        file_names.append(file_name)
        widths.append(w)
        heights.append(h)
        image_fields.append({k: v for k, v in im.items() if k not in IMAGE_KEYS})
    check_unique(image_ids, what="image id", file=name)
    row_of_image = {iid: row for row, iid in enumerate(image_ids)}

    anns = doc["annotations"]
    box_ids: list[int] = []
    box_image: list[int] = []
    labels: list[int] = []
    bboxes: list[list[float]] = []
    iscrowd: list[bool] = []
    flags: dict[str, list[bool]] = {k: [] for k in FLAG_KEYS}
    flag_keys_seen: set[str] = set()
    box_fields: list[dict[str, Any]] = []
    for i, a in enumerate(anns):
        where = f"annotations[{i}]"
        _require_object(a, name, where)
        aid = _get(a, "id", "int", name, where)
        where = f"annotation id {aid}"
        image_id = _get(a, "image_id", "int", name, where)
        if image_id not in row_of_image:
            raise SoftSamplingError(
                f"image_id {image_id} is not the id of any entry in 'images'",
                file=name,
                record=where,
                fix="add the image to 'images' or remove the annotation",
            )
        category_id = _get(a, "category_id", "int", name, where)
        if category_id not in cat_ids:
            raise SoftSamplingError(
                f"category_id {category_id} is not the id of any entry in 'categories'",
                file=name,
                record=where,
                fix="add the category to 'categories' or correct category_id",
            )
        bbox = _get(a, "bbox", "bbox", name, where)
        box_ids.append(aid)
        box_image.append(row_of_image[image_id])
        labels.append(category_id)
        bboxes.append(bbox)
        iscrowd.append(_get_flag(a, "iscrowd", name, where))
        for key in FLAG_KEYS:
            if key in a:
                flag_keys_seen.add(key)
            flags[key].append(_get_flag(a, key, name, where))
        box_fields.append({k: v for k, v in a.items() if k not in ANNOTATION_KEYS and k not in FLAG_KEYS})
    check_unique(box_ids, what="annotation id", file=name)

    xywh = np.array(bboxes, dtype=np.float64).reshape(-1, 4)
    root = Path(image_root) if image_root is not None else default_image_root(path)
    ds = DetectionDataset(
        image_ids=image_ids,
        file_names=file_names,
        widths=np.array(widths, dtype=np.int64),
        heights=np.array(heights, dtype=np.int64),
        box_image=np.array(box_image, dtype=np.int64),
        boxes=xywh_to_xyxy(xywh),
        labels=np.array(labels, dtype=np.int64),
        box_ids=np.array(box_ids, dtype=np.int64),
        iscrowd=np.array(iscrowd, dtype=bool),
        difficult=np.array(flags["difficult"], dtype=bool),
        group_of=np.array(flags["group_of"], dtype=bool),
        truncated=np.array(flags["truncated"], dtype=bool),
        categories=categories,
        image_root=root,
        box_extra={"coco_fields": box_fields, "coco_bbox": bboxes},
        image_extra={"coco_fields": image_fields},
        extra={
            "coco_key_order": list(doc.keys()),
            "coco_top_level": {k: v for k, v in doc.items() if k not in CORE_KEYS},
            "coco_flag_keys": sorted(flag_keys_seen),
        },
    )
    read_ids = ds.box_ids
    ds, report = validate_boxes(
        ds, lambda row: (name, f"annotation id {int(read_ids[row])}"), policy=invalid, clip_tolerance=clip_tolerance
    )
    ds.extra = {**ds.extra, "validation_report": report}
    if check_images:
        _check_image_files(
            ds,
            file=name,
            describe_image=lambda row: f"image id {ds.image_ids[row]}",
            allow_outside_root=allow_outside_root,
            max_pixels=max_pixels,
        )
    return ds


def default_image_root(json_path: str | Path) -> Path:
    """Guess the image folder of a COCO JSON file: the first candidate that is an existing folder.

    With ``stem`` the file name without ``.json`` and ``name`` the stem
    without a leading ``instances_`` (``instances_train2017`` -> ``train2017``),
    the candidates are, relative to the JSON's folder ``d``:

    1. ``d/../images/<stem>``, ``d/../images/<name>``  (coco128, our digit benchmark)
    2. ``d/../<stem>``, ``d/../<name>``                 (the official COCO download)
    3. ``d/images/<stem>``, ``d/images/<name>``, ``d/images``
    4. the same with ``_suffix`` parts cut from the end of ``name`` (a curated
       ``train_drop50.json`` finds the images of ``train.json``);
    5. ``d`` itself (also the answer when nothing else exists).
    """
    json_path = Path(json_path)
    d = json_path.parent
    stem = json_path.stem
    name = stem[len("instances_") :] if stem.startswith("instances_") else stem
    candidates = [
        d.parent / "images" / stem,
        d.parent / "images" / name,
        d.parent / stem,
        d.parent / name,
        d / "images" / stem,
        d / "images" / name,
        d / "images",
    ]
    parts = name.split("_")
    for k in range(len(parts) - 1, 0, -1):
        shorter = "_".join(parts[:k])
        candidates += [d.parent / "images" / shorter, d.parent / shorter, d / "images" / shorter]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return d


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    """``float64 [M, 4]`` COCO ``[x, y, w, h]`` -> ``float32 [M, 4]`` ``xyxy``.

    ``x2 = x + w`` is computed in float64 and rounded once to float32.

    >>> xywh_to_xyxy(np.array([[1.5, 2.0, 10.0, 4.0]])).tolist()
    [[1.5, 2.0, 11.5, 6.0]]
    """
    xywh = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    x, y, w, h = xywh.T
    with np.errstate(over="ignore", invalid="ignore"):  # huge values become inf, which validation reports
        return np.stack([x, y, x + w, y + h], axis=1).astype(np.float32)


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise SoftSamplingError(
            "COCO JSON file not found" if not path.exists() else "expected a COCO JSON file, got a folder",
            file=path,
            fix="give the path of the annotations .json file",
        )
    return parse_json(path.read_bytes(), file=path)


def _read_categories(items: list[Any], name: str) -> list[Category]:
    categories = []
    for i, c in enumerate(items):
        where = f"categories[{i}]"
        _require_object(c, name, where)
        cid = _get(c, "id", "int", name, where)
        cname = _get(c, "name", "str", name, f"category id {cid} ({where})")
        categories.append(Category(cid, cname, {k: v for k, v in c.items() if k not in CATEGORY_KEYS}))
    check_unique([c.id for c in categories], what="category id", file=name)
    return categories


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {dict: "object", list: "array", str: "string", type(None): "null"}.get(type(value), type(value).__name__)


def _require_object(value: Any, file: str, where: str) -> None:
    if not isinstance(value, dict):
        raise SoftSamplingError(f"expected a JSON object, got a {_json_type(value)}", file=file, record=where)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


MAX_SIDE = 2**31 - 1  # image width and height: int32, far above any real image


def _get(obj: dict[str, Any], key: str, kind: str, file: str, where: str) -> Any:
    """Return ``obj[key]`` checked against ``kind`` ('int', 'size', 'str', 'bbox'); raise naming the record."""
    if key not in obj:
        raise SoftSamplingError(
            f"missing required key {key!r}", file=file, record=where, fix=f"add {key!r} to the record"
        )
    v = obj[key]
    if kind == "int" and isinstance(v, int) and not isinstance(v, bool):
        if not -(2**63) <= v < 2**63:
            raise SoftSamplingError(
                f"{key!r} is {v}, which does not fit in a 64-bit integer",
                file=file,
                record=where,
                fix=f"give {key!r} a value below 2**63",
            )
        return v
    if kind == "size" and _is_number(v) and math.isfinite(v) and v == int(v):
        if v > MAX_SIDE:
            raise SoftSamplingError(
                f"{key!r} is {v}; image sides must be at most {MAX_SIDE:,} pixels",
                file=file,
                record=where,
                fix=f"correct {key!r}",
            )
        return int(v)
    if kind == "str" and isinstance(v, str) and v:
        if not v.isascii():
            try:
                v.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise SoftSamplingError(
                    f"{key!r} holds a lone surrogate ({v[exc.start]!r}), which is not valid Unicode text",
                    file=file,
                    record=where,
                    fix=f"correct the \\u escape in {key!r}",
                ) from None
        return v
    if kind == "bbox" and isinstance(v, list) and len(v) == 4 and all(_is_number(x) for x in v):
        return v
    expected = {
        "int": "an integer",
        "size": "a whole number of pixels",
        "str": "a non-empty string",
        "bbox": "a list of 4 numbers [x, y, width, height]",
    }[kind]
    raise SoftSamplingError(
        f"{key!r} is {json.dumps(v)[:80]}, expected {expected}", file=file, record=where, fix=f"correct {key!r}"
    )


def _get_flag(obj: dict[str, Any], key: str, file: str, where: str) -> bool:
    v = obj.get(key, 0)
    if v in (0, 1) and (isinstance(v, (int, bool))):
        return bool(v)
    raise SoftSamplingError(
        f"{key!r} is {json.dumps(v)[:80]}, expected 0 or 1", file=file, record=where, fix=f"set {key!r} to 0 or 1"
    )


# --------------------------------------------------------------------- writing
def write_coco(ds: DetectionDataset, path: str | Path) -> None:
    """Write ``ds`` as a COCO instances JSON file (atomically; deterministic bytes).

    The layout is one record per line (see :func:`dumps_coco`). Image ids that
    are not all integers (e.g. VOC file stems) are written as 1..I in row
    order. Annotation ids are ``ds.box_ids`` as they are; note that
    pycocotools' evaluation treats an annotation id of 0 as "unmatched", so
    give ground truth ids >= 1 before evaluating with it.
    """
    text = dumps_coco(coco_dict(ds), file=path)
    with atomic_write(path) as f:
        f.write(text)


def coco_dict(ds: DetectionDataset) -> dict[str, Any]:
    """The COCO JSON document of ``ds`` as a Python dict (what :func:`write_coco` writes)."""
    ints = all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in ds.image_ids)
    out_image_ids = [int(i) for i in ds.image_ids] if ints else list(range(1, ds.num_images + 1))
    image_fields = ds.image_extra.get("coco_fields")
    images = []
    for row in range(ds.num_images):
        record = {
            "id": out_image_ids[row],
            "file_name": ds.file_names[row],
            "width": int(ds.widths[row]),
            "height": int(ds.heights[row]),
        }
        if image_fields is not None:
            record.update((k, v) for k, v in image_fields[row].items() if k not in record)
        images.append(record)

    bboxes = _bbox_lists(ds)
    box_fields = ds.box_extra.get("coco_fields")
    flag_keys = [k for k in FLAG_KEYS if k in ds.extra.get("coco_flag_keys", ()) or getattr(ds, k).any()]
    annotations = []
    for row in range(ds.num_boxes):
        record = {
            "id": int(ds.box_ids[row]),
            "image_id": out_image_ids[int(ds.box_image[row])],
            "category_id": int(ds.labels[row]),
            "bbox": bboxes[row],
            "iscrowd": int(ds.iscrowd[row]),
        }
        for key in flag_keys:
            record[key] = int(getattr(ds, key)[row])
        if box_fields is not None:
            record.update((k, v) for k, v in box_fields[row].items() if k not in record)
        annotations.append(record)

    categories = []
    for c in ds.categories:
        record = {"id": int(c.id), "name": c.name}
        record.update((k, v) for k, v in c.extra.items() if k not in record)
        categories.append(record)

    core = {"images": images, "annotations": annotations, "categories": categories}
    top_level = ds.extra.get("coco_top_level", {})
    order = list(ds.extra.get("coco_key_order", ()))
    order += [k for k in (*top_level, *CORE_KEYS) if k not in order]
    return {k: core[k] if k in core else top_level[k] for k in order if k in core or k in top_level}


def _bbox_lists(ds: DetectionDataset) -> list[list[float]]:
    """COCO ``[x, y, w, h]`` per box: the original list if the box is unchanged, else shortest exact decimals."""
    finite = np.isfinite(ds.boxes).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise SoftSamplingError(
            f"box has a NaN or infinite coordinate: {ds.boxes[row].tolist()}",
            record=f"annotation id {int(ds.box_ids[row])}",
            fix="remove or fix the box before writing",
        )
    original = ds.box_extra.get("coco_bbox")
    if original is None or not ds.num_boxes:
        return shortest_xywh_array(ds.boxes).tolist()
    unchanged = (xywh_to_xyxy(np.array(original, dtype=np.float64)) == ds.boxes).all(axis=1)
    computed = shortest_xywh_array(ds.boxes[~unchanged]).tolist()
    changed_rows = iter(computed)
    return [original[row] if unchanged[row] else next(changed_rows) for row in range(ds.num_boxes)]


def shortest_xywh_array(boxes: np.ndarray) -> np.ndarray:
    """COCO ``[x, y, w, h]`` (``float64 [M, 4]``) with the fewest decimals that read back as exactly ``boxes``.

    "Read back" means :func:`xywh_to_xyxy` of the result equals ``boxes``.

    ``boxes`` is ``float32 [M, 4]`` ``xyxy``. Pure and vectorised: for each
    coordinate it tries 0, 1, ..., 12 decimals and keeps the first that reads
    back exactly; where none does (extreme magnitudes) it falls back to the
    exact float64 values of the float32 ends. Used for boxes that were changed
    after reading (clipped, edited) or never came from a COCO file.

    >>> shortest_xywh_array(np.array([[61.87, 276.25, 358.29, 379.43]], dtype=np.float32)).tolist()
    [[61.87, 276.25, 296.42, 103.18]]
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    out = np.empty(boxes.shape, dtype=np.float64)
    for lo_col, hi_col in ((0, 2), (1, 3)):
        out[:, lo_col], out[:, hi_col] = _shortest_start_size(boxes[:, lo_col], boxes[:, hi_col])
    return out


def _shortest_start_size(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One axis of :func:`shortest_xywh_array`: the shortest ``start``, ``size`` that read back as ``lo``, ``hi``."""
    start, _ = _fewest_decimals(lo.astype(np.float64), lambda c, i: c.astype(np.float32) == lo[i])
    size, failed = _fewest_decimals(
        hi.astype(np.float64) - start, lambda c, i: (start[i] + c).astype(np.float32) == hi[i]
    )
    start[failed] = lo[failed].astype(np.float64)  # exact fallback
    size[failed] = hi[failed].astype(np.float64) - start[failed]
    return start, size


def _fewest_decimals(values: np.ndarray, reads_back: Any, max_digits: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Per element, ``round(values, d)`` for the smallest ``d`` where ``reads_back(candidates, rows)`` holds.

    Returns ``(chosen, rows_where_no_d_worked)``; those rows keep ``values``.
    ``np.round`` divides an integer by ``10**d``, so the result is the double
    nearest the decimal and prints with at most ``d`` decimals.
    """
    chosen = values.copy()
    rows = np.arange(len(values))
    for digits in range(max_digits + 1):
        if rows.size == 0:
            break
        candidates = np.round(values[rows], digits)
        ok = reads_back(candidates, rows)
        chosen[rows[ok]] = candidates[ok]
        rows = rows[~ok]
    return chosen, rows


def shortest_xywh(box: np.ndarray) -> list[float]:
    """One float32 ``xyxy`` box as the shortest exact COCO ``[x, y, w, h]`` (see :func:`shortest_xywh_array`).

    >>> shortest_xywh(np.array([61.87, 276.25, 358.29, 379.43], dtype=np.float32))
    [61.87, 276.25, 296.42, 103.18]
    """
    return shortest_xywh_array(np.asarray(box).reshape(1, 4))[0].tolist()


def dumps_coco(doc: dict[str, Any], *, file: str | Path | None = None) -> str:
    """Serialise a COCO document: top-level keys on their own lines, one list item per line.

    Compact enough for large files, readable and diff-friendly; deterministic.
    NaN/Infinity are refused (they are not JSON).

    >>> print(dumps_coco({"images": [{"id": 1}, {"id": 2}], "annotations": [], "info": {"year": 2017}}))
    {
      "images": [
        {"id": 1},
        {"id": 2}
      ],
      "annotations": [],
      "info": {"year": 2017}
    }
    <BLANKLINE>
    """

    def compact(value: Any) -> str:
        try:
            return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), allow_nan=False)
        except ValueError as exc:
            raise SoftSamplingError(
                f"cannot write a NaN or infinite number as JSON ({exc})",
                file=file,
                fix="replace NaN/Infinity values (e.g. in 'area') before writing",
            ) from None

    lines = ["{"]
    items = list(doc.items())
    for n, (key, value) in enumerate(items):
        comma = "," if n < len(items) - 1 else ""
        head = f"  {json.dumps(key, ensure_ascii=False)}: "
        if isinstance(value, list) and value:
            lines.append(head + "[")
            lines.extend(f"    {compact(item)}{',' if m < len(value) - 1 else ''}" for m, item in enumerate(value))
            lines.append(f"  ]{comma}")
        else:
            lines.append(head + compact(value) + comma)
    lines.append("}")
    return "\n".join(lines) + "\n"
