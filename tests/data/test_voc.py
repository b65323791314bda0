"""Pascal VOC reader/writer on hand-written fixtures (tests/data/fixtures/voc)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from softsampling.data.formats import load_dataset
from softsampling.data.voc import VOC_CLASSES, read_voc, voc_coordinate, write_voc
from softsampling.errors import SoftSamplingError

FIXTURE = Path(__file__).parent / "fixtures" / "voc" / "VOC2007"


@pytest.fixture()
def voc(tmp_path: Path) -> Path:
    """A writable copy of the fixture, with JPEGImages of the annotated sizes."""
    dst = tmp_path / "VOCdevkit" / "VOC2007"
    shutil.copytree(FIXTURE, dst)
    (dst / "JPEGImages").mkdir()
    for stem, size in {"000001": (64, 48), "000002": (32, 32), "000003": (40, 30), "000004": (50, 50)}.items():
        Image.new("RGB", size).save(dst / "JPEGImages" / f"{stem}.jpg")
    return dst


def _tree(path: Path) -> tuple:
    """An XML file as nested (tag, stripped text, children): what "semantically identical" compares."""

    def node(el: ET.Element) -> tuple:
        return (el.tag, (el.text or "").strip(), tuple(node(c) for c in el))

    return node(ET.parse(path).getroot())


def _files(folder: Path) -> dict[str, bytes]:
    files = sorted(p for p in folder.rglob("*") if "JPEGImages" not in p.relative_to(folder).parts)
    return {str(p.relative_to(folder)): p.read_bytes() for p in files if p.is_file()}


# -------------------------------------------------------------------- reading
def test_read_fixture_hand_checked() -> None:
    ds = read_voc(FIXTURE)
    assert ds.image_ids == ["000002", "000001", "000003"]  # split-file order
    assert ds.file_names == ["000002.jpg", "000001.jpg", "000003.jpg"]
    assert ds.widths.tolist() == [32, 64, 40] and ds.heights.tolist() == [32, 48, 30]
    # 1-based inclusive -> 0-based xyxy: (xmin - 1, ymin - 1, xmax, ymax)
    assert ds.boxes.tolist() == [
        [4.0, 6.0, 20.5, 32.0],  # car    5, 7, 20.5, 32
        [0.0, 0.0, 10.0, 20.0],  # dog    1, 1, 10, 20: 10 px wide = xmax - xmin + 1
        [29.0, 4.0, 64.0, 48.0],  # person 30, 5, 64, 48: touches the right/bottom edge
    ]
    assert ds.box_ids.tolist() == [0, 1, 2]
    assert ds.box_image.tolist() == [0, 1, 1]
    assert [c.name for c in ds.categories] == list(VOC_CLASSES)
    assert ds.labels.tolist() == [7, 12, 15]  # car, dog, person in the standard order
    assert ds.difficult.tolist() == [False, False, True]
    assert ds.truncated.tolist() == [True, False, True]
    assert not ds.iscrowd.any() and not ds.group_of.any()
    assert ds.boxes_per_image().tolist() == [1, 2, 0]
    assert ds.image_root == FIXTURE / "JPEGImages"
    # kept fields
    assert ["occluded", "1"] in ds.box_extra["voc_fields"][0]
    assert ds.box_extra["voc_fields"][2][-1][0] == "part"
    assert ds.image_extra["voc_fields"][0][2] == ["owner", [["name", "fixture"]]]


def test_other_split_and_devkit_folder() -> None:
    ds = read_voc(FIXTURE.parent, split="test")  # the folder holding exactly one VOC20xx
    assert ds.image_ids == ["000004"]
    assert ds.boxes.tolist() == [[10.0, 20.0, 30.0, 40.0]]
    assert ds.labels.tolist() == [VOC_CLASSES.index("cat") + 1]
    assert load_dataset(FIXTURE, "voc", split="test").equals(ds)


def test_class_names_and_non_voc_names(voc: Path) -> None:
    ds = read_voc(voc, class_names=["person", "dog", "car"])
    assert ds.labels.tolist() == [3, 2, 1]
    with pytest.raises(SoftSamplingError) as info:
        read_voc(voc, class_names=["person", "dog"])
    assert "000002.xml: object 1 ('car'): class 'car' is not in class_names" in str(info.value)
    xml = voc / "Annotations" / "000002.xml"
    xml.write_text(xml.read_text().replace("<name>car</name>", "<name>zebra</name>"))
    ds = read_voc(voc)
    assert [c.name for c in ds.categories] == ["dog", "person", "zebra"]  # sorted names found
    assert ds.labels.tolist() == [3, 1, 2]


# ------------------------------------------------------------------ round trip
def test_round_trip_is_semantically_identical(voc: Path, tmp_path: Path) -> None:
    ds = read_voc(voc, check_images=True)
    out = tmp_path / "out" / "VOC2007"
    write_voc(ds, out)
    for stem in ds.image_ids:
        assert _tree(out / "Annotations" / f"{stem}.xml") == _tree(voc / "Annotations" / f"{stem}.xml")
    assert (out / "ImageSets" / "Main" / "trainval.txt").read_text() == "000002\n000001\n000003\n"
    assert sorted(p.name for p in (out / "Annotations").iterdir()) == ["000001.xml", "000002.xml", "000003.xml"]
    # images are linked, not copied: a relative symlink to the source JPEGImages
    link = out / "JPEGImages"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.resolve() == (voc / "JPEGImages").resolve()
    again = read_voc(out, check_images=True)
    assert again.equals(ds)
    assert again.box_extra == ds.box_extra and again.image_extra == ds.image_extra
    # deterministic: same bytes when written twice
    out2 = tmp_path / "out2" / "VOC2007"
    write_voc(again, out2)
    assert _files(out2) == _files(out)


def test_plus_one_convention_on_write(voc: Path, tmp_path: Path) -> None:
    ds = read_voc(voc)
    boxes = ds.boxes.copy()
    boxes[1] = [2.0, 3.5, 12.0, 20.0]  # the dog, edited in our 0-based xyxy
    write_voc(dataclasses.replace(ds, boxes=boxes), tmp_path / "VOC")
    dog = ET.parse(tmp_path / "VOC" / "Annotations" / "000001.xml").getroot().find("object/bndbox")
    assert [dog.find(t).text for t in ("xmin", "ymin", "xmax", "ymax")] == ["3", "4.5", "12", "20"]
    person = ET.parse(tmp_path / "VOC" / "Annotations" / "000001.xml").getroot().findall("object")[1]
    assert [person.find(f"bndbox/{t}").text for t in ("xmin", "ymin", "xmax", "ymax")] == ["30", "5", "64", "48"]
    assert voc_coordinate(np.float32(0.0), 1.0) == "1"
    assert read_voc(tmp_path / "VOC").boxes[1].tolist() == [2.0, 3.5, 12.0, 20.0]


def test_images_without_objects_still_written(voc: Path, tmp_path: Path) -> None:
    ds = read_voc(voc)
    curated = ds.select_boxes(ds.labels != 7)  # drop the only box of 000002
    write_voc(curated, tmp_path / "VOC", split="train")
    root = ET.parse(tmp_path / "VOC" / "Annotations" / "000002.xml").getroot()
    assert root.findall("object") == [] and root.find("owner/name").text == "fixture"
    back = read_voc(tmp_path / "VOC", split="train")
    assert back.boxes_per_image().tolist() == [0, 2, 0]
    assert back.box_ids.tolist() == [0, 1]  # VOC ids are positions: renumbered on re-read


def test_write_refuses_to_delete_source_images(voc: Path) -> None:
    ds = read_voc(voc)
    with pytest.raises(SoftSamplingError, match="contains this dataset's images"):
        write_voc(ds, voc)
    assert len(list((voc / "JPEGImages").iterdir())) == 4


def test_write_failure_leaves_previous_output(voc: Path, tmp_path: Path) -> None:
    ds = read_voc(voc)
    out = tmp_path / "VOC"
    write_voc(ds, out)
    before = _files(out)
    broken = dataclasses.replace(ds, categories=ds.categories[:5])  # labels 7, 12, 15 lose their names
    with pytest.raises(SoftSamplingError, match=r"labels \[7, 12, 15\] have no category"):
        write_voc(broken, out)
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# ----------------------------------------------------------------- bad input
BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<annotation><filename>&lol9;</filename><size><width>10</width><height>10</height></size></annotation>
"""


def test_billion_laughs_rejected_fast(voc: Path) -> None:
    xml = voc / "Annotations" / "000003.xml"
    xml.write_text(BILLION_LAUGHS)
    start = time.perf_counter()
    with pytest.raises(SoftSamplingError) as info:
        read_voc(voc)
    assert time.perf_counter() - start < 1.0
    assert str(xml) in str(info.value) and "refused unsafe XML" in str(info.value)


def test_external_entity_rejected(voc: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do-not-read")
    xml = voc / "Annotations" / "000003.xml"
    xml.write_text(
        f'<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
        "<annotation><filename>&xxe;</filename><size><width>10</width><height>10</height></size></annotation>\n"
    )
    with pytest.raises(SoftSamplingError) as info:
        read_voc(voc)
    assert str(xml) in str(info.value) and "refused unsafe XML" in str(info.value)
    assert "do-not-read" not in str(info.value)


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("stem", "old", "new", "expected"),
    [
        ("000001", "<xmax>10</xmax>", "<xmax>0</xmax>", "000001.xml: object 1 ('dog'): box is empty"),
        ("000001", "<xmax>64</xmax>", "<xmax>80</xmax>", "000001.xml: object 2 ('person'): box lies outside the image"),
        ("000001", "<xmax>10</xmax>", "<xmax>nan</xmax>", "000001.xml: object 1 ('dog'): box has a NaN"),
        ("000001", "<ymin>1</ymin>", "", "000001.xml: object 1 ('dog'): <bndbox><ymin> is missing"),
        ("000001", "<xmin>30</xmin>", "<xmin>3O</xmin>", "000001.xml: object 2 ('person'): <bndbox><xmin> is '3O'"),
        ("000002", "<difficult>0</difficult>", "<difficult>yes</difficult>", "object 1 ('car'): <difficult> is 'yes'"),
        ("000002", "<name>car</name>", "<name> </name>", "000002.xml: object 1: missing or empty <name>"),
        ("000002", "<width>32</width>", "<width>0</width>", "000002.xml: <size>: image size must be positive"),
        ("000003", "<height>30</height>", "", "000003.xml: <size><height> is 'missing'"),
        ("000003", "</size>", "</sise>", "000003.xml: line 8: invalid XML (mismatched tag) at line 8, column 4"),
    ],
)
def test_bad_xml_names_file_and_record(voc: Path, stem: str, old: str, new: str, expected: str) -> None:
    _replace(voc / "Annotations" / f"{stem}.xml", old, new)
    with pytest.raises(SoftSamplingError) as info:
        read_voc(voc)
    assert expected in str(info.value)
    assert str(voc / "Annotations") in str(info.value)


def test_root_element_must_be_annotation(voc: Path) -> None:
    xml = voc / "Annotations" / "000003.xml"
    xml.write_text("<Annotation><size><width>40</width><height>30</height></size></Annotation>")
    with pytest.raises(SoftSamplingError, match="000003.xml: root element is <Annotation>, expected <annotation>"):
        read_voc(voc)


def test_clip_and_skip(voc: Path) -> None:
    _replace(voc / "Annotations" / "000001.xml", "<xmax>64</xmax>", "<xmax>66</xmax>")  # 2 px past a 64 px edge
    clipped = read_voc(voc, invalid="clip")
    assert clipped.boxes[2].tolist() == [29.0, 4.0, 64.0, 48.0]
    assert clipped.extra["validation_report"].clipped == 1
    skipped = read_voc(voc, invalid="skip")
    assert skipped.box_ids.tolist() == [0, 1]
    assert "object 2 ('person')" in skipped.extra["validation_report"].summary()


def test_split_file_problems(voc: Path) -> None:
    split = voc / "ImageSets" / "Main" / "trainval.txt"
    split.write_text("000002\n\n000009\n")
    with pytest.raises(SoftSamplingError) as info:
        read_voc(voc)
    assert f"{split}: line 3: no annotation file Annotations/000009.xml" in str(info.value)
    split.write_text("000002\n000001\n000002\n")
    with pytest.raises(SoftSamplingError, match="line 3: image '000002' is listed twice"):
        read_voc(voc)
    with pytest.raises(SoftSamplingError, match="choose one of the splits present: test, trainval"):
        read_voc(voc, split="val")


def test_not_a_voc_folder(tmp_path: Path) -> None:
    with pytest.raises(SoftSamplingError, match="not a VOC folder"):
        read_voc(tmp_path)


def test_check_images(voc: Path) -> None:
    assert read_voc(voc, check_images=True).num_images == 3
    Image.new("RGB", (33, 32)).save(voc / "JPEGImages" / "000002.jpg")
    with pytest.raises(SoftSamplingError, match="000002.xml .*says the image is 32x32 but the file .* is 33x32"):
        read_voc(voc, check_images=True)
    (voc / "JPEGImages" / "000002.jpg").unlink()
    with pytest.raises(SoftSamplingError, match="000002.xml .*image file not found"):
        read_voc(voc, check_images=True)
    moved = voc.parent / "elsewhere"
    shutil.copytree(voc / "JPEGImages", moved)
    Image.new("RGB", (32, 32)).save(moved / "000002.jpg")
    assert read_voc(voc, image_root=moved, check_images=True).image_root == moved
    Image.new("RGB", (32, 32)).save(voc / "JPEGImages" / "000002.jpg")
    _replace(voc / "Annotations" / "000001.xml", "<filename>000001.jpg", "<filename>../../000001.jpg")
    with pytest.raises(SoftSamplingError, match="000001.xml .*leaves the image folder"):
        read_voc(voc, check_images=True)
