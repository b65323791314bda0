"""Pascal VOC: read a ``VOCdevkit/VOC20xx`` folder into a :class:`DetectionDataset`, write one back.

Layout (see docs/formats.md)::

    VOC2007/
      Annotations/000005.xml         one XML file per image
      ImageSets/Main/trainval.txt    one image stem per line: the split
      JPEGImages/000005.jpg

Conventions:
- VOC coordinates are 1-based and pixel-inclusive: a box covering pixel
  columns 0..9 of the image (10 pixels) is written ``xmin=1, xmax=10``. Our
  boxes are 0-based continuous ``xyxy``, so reading maps
  ``(xmin, ymin, xmax, ymax) -> (xmin - 1, ymin - 1, xmax, ymax)`` and writing
  maps back exactly (``x1 + 1, y1 + 1, x2, y2``); width ``x2 - x1`` equals
  VOC's ``xmax - xmin + 1``;
- categories: the 20 VOC classes in the standard order with ids 1..20 when
  every object name is a VOC class; otherwise the sorted names found, ids
  1..K; or ``class_names`` in the order given;
- ``image_ids`` are the file stems (``"000005"``); ``box_ids`` are 0..M-1 in
  (split-file order, object order in the XML);
- ``difficult`` and ``truncated`` become flags (missing means 0);
- every other element is kept for writing, as a tree of ``[tag, text]`` /
  ``[tag, [children]]`` nodes: per image in ``ds.image_extra["voc_fields"]``
  (``folder``, ``source``, ``owner``, ``size/depth``, ``segmented``, ...; a
  ``["object", None]`` node marks where the objects go) and per object in
  ``ds.box_extra["voc_fields"]`` (``pose``, ``occluded``, ``part``, ...).
  A rewrite is semantically identical: same elements, same order, same text
  (leading/trailing whitespace of text and XML attributes are not kept).

XML is parsed with defusedxml and any DTD is refused, so entity-expansion
("billion laughs") and external-entity files fail at once with a clear error.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> voc = Path(tempfile.mkdtemp()) / "VOC2007"
    >>> (voc / "Annotations").mkdir(parents=True)
    >>> (voc / "ImageSets" / "Main").mkdir(parents=True)
    >>> _ = (voc / "ImageSets/Main/trainval.txt").write_text("000001\\n")
    >>> _ = (voc / "Annotations/000001.xml").write_text(
    ...     "<annotation><filename>000001.jpg</filename><size><width>50</width><height>40</height>"
    ...     "<depth>3</depth></size><object><name>dog</name><difficult>1</difficult>"
    ...     "<bndbox><xmin>1</xmin><ymin>5</ymin><xmax>10</xmax><ymax>40</ymax></bndbox></object></annotation>"
    ... )
    >>> ds = read_voc(voc)
    >>> ds.boxes.tolist(), ds.labels.tolist(), ds.difficult.tolist(), ds.image_ids
    ([[0.0, 4.0, 10.0, 40.0]], [12], [True], ['000001'])
"""

from __future__ import annotations

import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from softsampling.data.images import DEFAULT_MAX_PIXELS
from softsampling.data.images import check_images as _check_image_files
from softsampling.data.validate import POLICIES, validate_boxes
from softsampling.errors import SoftSamplingError
from softsampling.io import give_usual_permissions, replace_dir
from softsampling.parsing import parse_xml
from softsampling.structures.records import Category, DetectionDataset

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
COORDS = ("xmin", "ymin", "xmax", "ymax")
# a node of the kept XML tree: [tag, text] or [tag, [child nodes]]; ["object", None] marks the objects' place
Node = list


# --------------------------------------------------------------------- reading
def read_voc(
    path: str | Path,
    *,
    split: str = "trainval",
    image_root: str | Path | None = None,
    check_images: bool = False,
    invalid: str = "error",
    clip_tolerance: float = 0.05,
    allow_outside_root: bool = False,
    class_names: list[str] | tuple[str, ...] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DetectionDataset:
    """Read the images of one split of a VOC folder.

    Args:
        path: a ``VOC20xx`` folder, or a ``VOCdevkit`` folder holding exactly one.
        split: name of the image list ``ImageSets/Main/<split>.txt``.
        image_root: folder that ``<filename>`` is relative to; default ``<path>/JPEGImages``.
        check_images: also check every image file under ``image_root`` (inside
            it, exists, real size equals ``<size>``); reads headers only.
        invalid: bad boxes: ``"error"``, ``"clip"`` or ``"skip"`` (see
            :func:`~softsampling.data.validate.validate_boxes`).
        allow_outside_root: with ``check_images``, accept ``filename`` values
            that leave ``JPEGImages``.
        class_names: the classes in id order (ids 1..K); an object with another
            name is an error. Default: see the module docstring.
        max_pixels: with ``check_images``, refuse larger images.

    Returns the dataset; ``ds.extra["validation_report"]`` holds what clip/skip changed.
    """
    if invalid not in POLICIES:
        raise SoftSamplingError(f"unknown invalid-box policy {invalid!r}", fix=f"use one of {', '.join(POLICIES)}")
    voc = find_voc_folder(Path(path))
    stems = _read_split(voc, split)

    image_ids: list[str] = []
    file_names: list[str] = []
    widths: list[int] = []
    heights: list[int] = []
    image_fields: list[list[Node]] = []
    xml_files: list[str] = []
    box_image: list[int] = []
    names: list[str] = []
    coords: list[list[float]] = []
    difficult: list[bool] = []
    truncated: list[bool] = []
    box_fields: list[list[Node]] = []
    ordinals: list[int] = []
    for row, stem in enumerate(stems):
        xml_file = voc / "Annotations" / f"{stem}.xml"
        root = _parse_xml(xml_file)
        xml_files.append(str(xml_file))
        fields: list[Node] = []
        file_name = f"{stem}.jpg"
        size: tuple[int, int] | None = None
        n_objects = 0
        for child in root:
            if child.tag == "object":
                n_objects += 1
                if n_objects == 1:
                    fields.append(["object", None])
                obj = _read_object(child, xml_file, n_objects)
                box_image.append(row)
                names.append(obj["name"])
                coords.append(obj["coords"])
                difficult.append(obj["difficult"])
                truncated.append(obj["truncated"])
                box_fields.append(obj["fields"])
                ordinals.append(n_objects)
                continue
            fields.append(_to_node(child))
            if child.tag == "filename":
                file_name = _text(child)
                if not file_name:
                    raise SoftSamplingError("<filename> is empty", file=xml_file, fix="give the image's file name")
            elif child.tag == "size":
                size = (_int_child(child, "width", xml_file, "<size>"), _int_child(child, "height", xml_file, "<size>"))
        if size is None:
            raise SoftSamplingError(
                "missing <size> (width/height of the image)",
                file=xml_file,
                fix="add <size><width>W</width><height>H</height><depth>3</depth></size>",
            )
        if size[0] <= 0 or size[1] <= 0:
            raise SoftSamplingError(
                f"image size must be positive, got width={size[0]}, height={size[1]}",
                file=xml_file,
                record="<size>",
                fix="correct <width>/<height>",
            )
        image_ids.append(stem)
        file_names.append(file_name)
        widths.append(size[0])
        heights.append(size[1])
        image_fields.append(fields)

    categories = _categories(names, class_names, xml_files, box_image, ordinals)
    id_of = {c.name: c.id for c in categories}
    xyxy = np.array(coords, dtype=np.float64).reshape(-1, 4)
    xyxy[:, :2] -= 1.0  # 1-based pixel-inclusive -> 0-based continuous
    m = len(names)
    ds = DetectionDataset(
        image_ids=image_ids,
        file_names=file_names,
        widths=np.array(widths, dtype=np.int64),
        heights=np.array(heights, dtype=np.int64),
        box_image=np.array(box_image, dtype=np.int64),
        boxes=xyxy.astype(np.float32),
        labels=np.array([id_of[n] for n in names], dtype=np.int64),
        box_ids=np.arange(m, dtype=np.int64),
        iscrowd=np.zeros(m, dtype=bool),
        difficult=np.array(difficult, dtype=bool),
        group_of=np.zeros(m, dtype=bool),
        truncated=np.array(truncated, dtype=bool),
        categories=categories,
        image_root=Path(image_root) if image_root is not None else voc / "JPEGImages",
        box_extra={"voc_fields": box_fields},
        image_extra={"voc_fields": image_fields},
    )

    def describe(row: int) -> tuple[str, str]:
        return xml_files[box_image[row]], f"object {ordinals[row]} ({names[row]!r})"

    ds, report = validate_boxes(ds, describe, policy=invalid, clip_tolerance=clip_tolerance)
    ds.extra = {**ds.extra, "validation_report": report}
    if check_images:
        _check_image_files(
            ds,
            file=voc / "Annotations",
            describe_image=lambda row: f"{ds.image_ids[row]}.xml",
            allow_outside_root=allow_outside_root,
            max_pixels=max_pixels,
        )
    return ds


def find_voc_folder(path: Path) -> Path:
    """``path`` itself if it has ``Annotations/``, else its only sub-folder that has one (``VOCdevkit/VOC2007``)."""
    if not path.is_dir():
        problem = "VOC dataset folder not found" if not path.exists() else "expected a folder, got a file"
        raise SoftSamplingError(
            problem, file=path, fix="give the VOC20xx folder (the one holding Annotations/ and JPEGImages/)"
        )
    if (path / "Annotations").is_dir():
        return path
    found = sorted(p for p in path.iterdir() if p.is_dir() and (p / "Annotations").is_dir())
    if len(found) == 1:
        return found[0]
    what = "no sub-folder with Annotations/" if not found else f"several: {', '.join(p.name for p in found)}"
    raise SoftSamplingError(
        f"not a VOC folder ({what})",
        file=path,
        fix="give one VOC20xx folder (the one holding Annotations/ and JPEGImages/)",
    )


def _read_split(voc: Path, split: str) -> list[str]:
    split_file = voc / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        main = voc / "ImageSets" / "Main"
        have = sorted(p.stem for p in main.glob("*.txt") if "_" not in p.stem) if main.is_dir() else []
        raise SoftSamplingError(
            f"split file for split {split!r} not found",
            file=split_file,
            fix=f"choose one of the splits present: {', '.join(have)}"
            if have
            else "create ImageSets/Main/<split>.txt with one image stem per line",
        )
    stems: list[str] = []
    line_of: dict[str, int] = {}
    for n, line in enumerate(split_file.read_text(encoding="utf-8").splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        stem = tokens[0]
        if stem in (".", "..") or any(c in stem for c in "/\\\0"):  # before any path is built from it
            raise SoftSamplingError(
                f"image id {stem!r} is not a plain file name (it would name a file outside Annotations/)",
                file=split_file,
                record=f"line {n}",
                fix="list image ids such as 000005, one per line, without folders",
            )
        if stem in line_of:
            raise SoftSamplingError(
                f"image {stem!r} is listed twice (first on line {line_of[stem]})",
                file=split_file,
                record=f"line {n}",
                fix="list every image once",
            )
        if not (voc / "Annotations" / f"{stem}.xml").is_file():
            raise SoftSamplingError(
                f"no annotation file Annotations/{stem}.xml for image {stem!r}",
                file=split_file,
                record=f"line {n}",
                fix="add the XML file or remove the line from the split",
            )
        line_of[stem] = n
        stems.append(stem)
    return stems


def _parse_xml(xml_file: Path) -> ET.Element:
    root = parse_xml(xml_file)
    if root.tag != "annotation":
        raise SoftSamplingError(
            f"root element is <{root.tag}>, expected <annotation>",
            file=xml_file,
            fix="give a Pascal VOC annotation file",
        )
    return root


def _read_object(el: ET.Element, xml_file: Path, ordinal: int) -> dict[str, Any]:
    record = f"object {ordinal}"
    name_el = el.find("name")
    name = _text(name_el) if name_el is not None else ""
    if not name:
        raise SoftSamplingError("missing or empty <name>", file=xml_file, record=record, fix="give the class name")
    record = f"object {ordinal} ({name!r})"
    box_el = el.find("bndbox")
    if box_el is None:
        raise SoftSamplingError(
            "missing <bndbox>", file=xml_file, record=record, fix="add <bndbox> with xmin, ymin, xmax, ymax"
        )
    coords = []
    for tag in COORDS:
        child = box_el.find(tag)
        try:
            coords.append(float(_text(child)))
        except (TypeError, ValueError):
            got = "missing" if child is None else f"{_text(child)!r}"
            raise SoftSamplingError(
                f"<bndbox><{tag}> is {got}, expected a number",
                file=xml_file,
                record=record,
                fix="give xmin, ymin, xmax, ymax as pixel numbers",
            ) from None
    return {
        "name": name,
        "coords": coords,
        "difficult": _flag(el, "difficult", xml_file, record),
        "truncated": _flag(el, "truncated", xml_file, record),
        "fields": [_to_node(child) for child in el],
    }


def _flag(el: ET.Element, tag: str, xml_file: Path, record: str) -> bool:
    child = el.find(tag)
    if child is None or not _text(child):
        return False
    text = _text(child)
    if text in ("0", "1"):
        return text == "1"
    raise SoftSamplingError(
        f"<{tag}> is {text!r}, expected 0 or 1", file=xml_file, record=record, fix=f"set <{tag}> to 0 or 1"
    )


def _int_child(el: ET.Element, tag: str, xml_file: Path, where: str) -> int:
    child = el.find(tag)
    text = _text(child) if child is not None else ""
    try:
        value = float(text)
        if value == int(value) and abs(value) < 2**63:
            return int(value)
    except (ValueError, OverflowError):
        pass
    raise SoftSamplingError(
        f"{where}<{tag}> is {text or 'missing'!r}, expected a whole number",
        file=xml_file,
        fix=f"give <{tag}> in pixels",
    )


def _text(el: ET.Element | None) -> str:
    return "" if el is None or el.text is None else el.text.strip()


def _to_node(el: ET.Element) -> Node:
    children = list(el)
    if children:
        return [el.tag, [_to_node(c) for c in children]]
    return [el.tag, _text(el)]


def _categories(
    names: list[str], class_names: Any, xml_files: list[str], box_image: list[int], ordinals: list[int]
) -> list[Category]:
    if class_names is not None:
        order = list(class_names)
        if len(set(order)) != len(order):
            raise SoftSamplingError(f"class_names has duplicates: {order}", fix="list every class once")
        known = set(order)
        for row, n in enumerate(names):
            if n not in known:
                raise SoftSamplingError(
                    f"class {n!r} is not in class_names",
                    file=xml_files[box_image[row]],
                    record=f"object {ordinals[row]} ({n!r})",
                    fix="add the class to class_names or correct <name>",
                )
    elif set(names) <= set(VOC_CLASSES):
        order = list(VOC_CLASSES)
    else:
        order = sorted(set(names))
    return [Category(i + 1, n) for i, n in enumerate(order)]


# --------------------------------------------------------------------- writing
def write_voc(ds: DetectionDataset, path: str | Path, *, split: str = "trainval") -> None:
    """Write ``ds`` as a ``VOC20xx``-layout folder at ``path`` (atomically, replacing it).

    Writes ``Annotations/<image_id>.xml`` for every image (also images with no
    boxes) and ``ImageSets/Main/<split>.txt`` listing them in row order. Images
    are not copied: ``JPEGImages`` is a *relative symlink* to
    ``ds.image_root`` when it is known (so the folder is ready for training
    and can be moved together with its source), and absent otherwise.
    Everything is written into a temp folder beside ``path`` and renamed into
    place at the end, so a failure leaves any previous ``path`` untouched.
    Refuses to write over the folder that holds ``ds``'s own images.
    """
    path = Path(path)
    if not split or any(c in split for c in "/\\\0\n") or split in (".", ".."):
        raise SoftSamplingError(f"invalid split name {split!r}", fix="use a plain name such as trainval or test")
    stems = [str(i) for i in ds.image_ids]
    for row, stem in enumerate(stems):
        if not stem or stem in (".", "..") or any(c in stem for c in "/\\\0\n\r"):
            raise SoftSamplingError(
                f"image id {stem!r} cannot be a VOC file name",
                record=f"image row {row}",
                fix="give images ids usable as file names",
            )
    if len(set(stems)) != len(stems):
        raise SoftSamplingError(
            "two images have the same id as text; VOC names files by image id", fix="give every image a unique id"
        )
    name_of = ds.category_names
    missing = sorted(set(int(v) for v in np.unique(ds.labels)) - set(name_of))
    if missing:
        raise SoftSamplingError(f"labels {missing} have no category", fix="add the categories to ds.categories")
    final = Path(os.path.abspath(path))
    link_target = None
    if ds.image_root is not None:
        real_images = os.path.realpath(ds.image_root)
        real_final = os.path.realpath(final)
        if os.path.commonpath([real_images, real_final]) == real_final:
            raise SoftSamplingError(
                f"the output folder contains this dataset's images ({real_images}); "
                "writing would replace the folder and delete them",
                file=path,
                fix="write to a new folder",
            )
        link_target = os.path.relpath(real_images, real_final)  # the link lives in final/

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        give_usual_permissions(tmp)
        (tmp / "Annotations").mkdir()
        (tmp / "ImageSets" / "Main").mkdir(parents=True)
        for row, stem in enumerate(stems):
            xml = voc_xml(ds, row, folder=final.name, name_of=name_of)
            (tmp / "Annotations" / f"{stem}.xml").write_bytes(xml)
        (tmp / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems), encoding="utf-8")
        if link_target is not None:
            os.symlink(link_target, tmp / "JPEGImages", target_is_directory=True)
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def voc_xml(ds: DetectionDataset, row: int, *, folder: str = "VOC", name_of: dict[int, str] | None = None) -> bytes:
    """The VOC XML (UTF-8 bytes, tab-indented, no declaration) of image row ``row`` of ``ds``."""
    name_of = ds.category_names if name_of is None else name_of
    kept = ds.image_extra.get("voc_fields")
    fields: list[Node] = (
        kept[row]
        if kept is not None
        else [
            ["folder", folder],
            ["filename", ""],
            ["size", [["width", ""], ["height", ""], ["depth", "3"]]],
            ["segmented", "0"],
            ["object", None],
        ]
    )
    tags = [f[0] for f in fields]
    if "filename" not in tags:
        fields = [["filename", ""], *fields]
    if "size" not in tags:
        fields = [*fields, ["size", [["width", ""], ["height", ""]]]]
    if "object" not in tags:
        fields = [*fields, ["object", None]]
    root = ET.Element("annotation")
    for tag, value in fields:
        if tag == "object":
            for box_row in ds.box_indices_of(row):
                root.append(_object_element(ds, int(box_row), name_of))
        elif tag == "filename":
            ET.SubElement(root, "filename").text = ds.file_names[row]
        elif tag == "size":
            given = {"width": str(int(ds.widths[row])), "height": str(int(ds.heights[row]))}
            children = value if isinstance(value, list) else []
            children = children + [[k, ""] for k in ("width", "height") if k not in [c[0] for c in children]]
            _add(root, "size", [[t, given.get(t, v)] for t, v in children])
        else:
            _add(root, tag, value)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="utf-8") + b"\n"


def _object_element(ds: DetectionDataset, box_row: int, name_of: dict[int, str]) -> ET.Element:
    kept = ds.box_extra.get("voc_fields")
    fields: list[Node] = (
        kept[box_row]
        if kept is not None
        else [
            ["name", ""],
            ["pose", "Unspecified"],
            ["truncated", ""],
            ["difficult", ""],
            ["bndbox", []],
        ]
    )
    flags = {"truncated": bool(ds.truncated[box_row]), "difficult": bool(ds.difficult[box_row])}
    tags = [f[0] for f in fields]
    fields = (
        ([["name", ""]] if "name" not in tags else [])
        + list(fields)
        + [[k, ""] for k, on in flags.items() if on and k not in tags]
        + ([["bndbox", []]] if "bndbox" not in tags else [])
    )
    el = ET.Element("object")
    for tag, value in fields:
        if tag == "name":
            ET.SubElement(el, "name").text = name_of[int(ds.labels[box_row])]
        elif tag in flags:
            ET.SubElement(el, tag).text = "1" if flags[tag] else "0"
        elif tag == "bndbox":
            _add(el, "bndbox", _bndbox_nodes(ds.boxes[box_row], value if isinstance(value, list) else []))
        else:
            _add(el, tag, value)
    return el


def _bndbox_nodes(box: np.ndarray, kept: list[Node]) -> list[Node]:
    """``<bndbox>`` children for a float32 xyxy ``box``: kept text where it still reads back as ``box``."""
    offsets = {"xmin": 1.0, "ymin": 1.0, "xmax": 0.0, "ymax": 0.0}
    value = dict(zip(COORDS, (np.float32(v) for v in box), strict=True))
    kept_tags = [t for t, _ in kept]
    out = []
    for tag, text in kept + [[t, None] for t in COORDS if t not in kept_tags]:
        if tag in value:
            text = text if _reads_back(text, offsets[tag], value[tag]) else voc_coordinate(value[tag], offsets[tag])
        out.append([tag, text])
    return out


def _reads_back(text: Any, offset: float, target: np.float32) -> bool:
    try:
        return bool(np.float32(float(text) - offset) == target)
    except (TypeError, ValueError):
        return False


def voc_coordinate(value: np.float32, offset: float) -> str:
    """Shortest text ``t`` with ``float32(float(t) - offset) == value`` (the VOC reader's mapping).

    ``offset`` is 1 for ``xmin``/``ymin`` (VOC is 1-based) and 0 for ``xmax``/``ymax``.

    >>> voc_coordinate(np.float32(47.0), 1.0), voc_coordinate(np.float32(12.5), 0.0)
    ('48', '12.5')
    """
    exact = float(np.float32(value)) + offset
    for digits in range(0, 12):
        candidate = round(exact, digits)
        if np.float32(candidate - offset) == value:
            return str(int(candidate)) if candidate == int(candidate) else repr(candidate)
    return repr(exact)


def _add(parent: ET.Element, tag: str, value: Any) -> None:
    el = ET.SubElement(parent, tag)
    if isinstance(value, list):
        for child_tag, child_value in value:
            _add(el, child_tag, child_value)
    else:
        el.text = "" if value is None else str(value)
