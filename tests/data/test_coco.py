"""COCO reader/writer: real coco128 file, round-trips, and every validation error."""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from softsampling.data.coco import (
    default_image_root,
    read_coco,
    shortest_xywh,
    shortest_xywh_array,
    write_coco,
    xywh_to_xyxy,
)
from softsampling.data.formats import load_dataset, save_dataset
from softsampling.data.images import image_size
from softsampling.errors import SoftSamplingError
from softsampling.structures.records import Category, DetectionDataset


# ------------------------------------------------------------------ coco128
@pytest.fixture(scope="module")
def coco128(coco128_json: Path) -> DetectionDataset:
    return read_coco(coco128_json)


def test_coco128_counts(coco128: DetectionDataset, coco128_images: Path) -> None:
    ds = coco128
    assert ds.num_images == 128
    assert ds.num_boxes == 939
    assert int(ds.iscrowd.sum()) == 10
    assert int((ds.boxes_per_image() == 0).sum()) == 2
    assert len(ds.categories) == 80
    assert len(set(ds.labels.tolist())) == 71
    # non-contiguous ids kept: COCO's last category is toothbrush = 90
    assert ds.categories[-1].id == 90 and ds.categories[-1].name == "toothbrush"
    assert ds.categories[0].extra == {"supercategory": "person"}
    assert ds.image_ids[0] == 9 and ds.file_names[0] == "000000000009.jpg"
    assert (ds.widths[0], ds.heights[0]) == (640, 480)
    # default image root: <json dir>/../images/<stem without "instances_">
    assert ds.image_root == coco128_images
    assert not ds.difficult.any() and not ds.group_of.any() and not ds.truncated.any()


def test_coco128_bbox_conversion(coco128: DetectionDataset, coco128_json: Path) -> None:
    raw = json.loads(coco128_json.read_text())
    first = raw["annotations"][0]
    assert first["bbox"] == [61.87, 276.25, 296.42, 103.18]
    row = int(np.flatnonzero(coco128.box_ids == first["id"])[0])
    # hand-computed: x2 = 61.87 + 296.42 = 358.29, y2 = 276.25 + 103.18 = 379.43
    np.testing.assert_allclose(coco128.boxes[row], [61.87, 276.25, 358.29, 379.43], rtol=0, atol=1e-4)
    assert coco128.labels[row] == first["category_id"]
    assert coco128.image_ids[coco128.box_image[row]] == first["image_id"]
    # every box: xyxy = (x, y, x + w, y + h) in float64, rounded once to float32
    by_id = {a["id"]: a["bbox"] for a in raw["annotations"]}
    expected = np.array([by_id[int(i)] for i in coco128.box_ids], dtype=np.float64)
    expected[:, 2:] += expected[:, :2]
    assert np.array_equal(coco128.boxes, expected.astype(np.float32))
    assert coco128.boxes.dtype == np.float32


def test_coco128_round_trip(coco128: DetectionDataset, coco128_json: Path, tmp_path: Path) -> None:
    out = tmp_path / "annotations" / "copy.json"
    write_coco(coco128, out)
    # the written JSON equals the input JSON as objects (floats included)
    assert json.loads(out.read_text()) == json.loads(coco128_json.read_text())
    again = read_coco(out, image_root=coco128.image_root)
    assert again.equals(coco128)
    assert again.box_extra == coco128.box_extra
    assert again.image_extra == coco128.image_extra
    assert [c.extra for c in again.categories] == [c.extra for c in coco128.categories]
    # deterministic: same dataset -> same bytes, also after a second round
    out2 = tmp_path / "copy2.json"
    write_coco(again, out2)
    assert out2.read_bytes() == out.read_bytes()
    # readable layout: one image / annotation per line
    lines = out.read_text().splitlines()
    assert lines[0] == "{" and lines[-1] == "}"
    assert len(lines) > 128 + 939


def test_coco128_check_images(coco128_json: Path, coco128_images: Path) -> None:
    ds = read_coco(coco128_json, check_images=True)
    assert ds.num_images == 128
    assert image_size(coco128_images / "000000000009.jpg") == (640, 480)


def test_formats_dispatch(coco128_json: Path, tmp_path: Path) -> None:
    ds = load_dataset(coco128_json, "coco")
    save_dataset(ds, tmp_path / "x.json", "coco")
    assert json.loads((tmp_path / "x.json").read_text()) == json.loads(coco128_json.read_text())


# ---------------------------------------------------------- small documents
def _doc() -> dict:
    """Two 100x80 images (one without boxes), non-contiguous category ids 3 and 17."""
    return {
        "info": {"year": 2024},
        "images": [
            {"id": 1, "file_name": "a.png", "width": 100, "height": 80, "license": 2},
            {"id": 5, "file_name": "b.png", "width": 100, "height": 80},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 3, "bbox": [10, 20, 30, 40], "iscrowd": 0, "area": 1200.0},
            {"id": 11, "image_id": 1, "category_id": 17, "bbox": [0.5, 0.25, 99.5, 79.75], "iscrowd": 1, "area": 7.0},
        ],
        "categories": [{"id": 3, "name": "car", "supercategory": "vehicle"}, {"id": 17, "name": "cat"}],
    }


def _write(tmp_path: Path, doc: dict, name: str = "train.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def _images(folder: Path, doc: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for im in doc["images"]:
        Image.new("RGB", (im["width"], im["height"])).save(folder / im["file_name"])


def test_small_document(tmp_path: Path) -> None:
    ds = read_coco(_write(tmp_path, _doc()))
    assert ds.image_ids == [1, 5]
    assert ds.box_ids.tolist() == [10, 11]
    assert ds.labels.tolist() == [3, 17]
    assert ds.boxes.tolist() == [[10.0, 20.0, 40.0, 60.0], [0.5, 0.25, 100.0, 80.0]]
    assert ds.iscrowd.tolist() == [False, True]
    assert ds.boxes_per_image().tolist() == [2, 0]
    assert ds.image_extra["coco_fields"] == [{"license": 2}, {}]
    assert ds.box_extra["coco_fields"] == [{"area": 1200.0}, {"area": 7.0}]
    assert ds.extra["coco_top_level"] == {"info": {"year": 2024}}
    assert ds.image_root == tmp_path  # nothing better exists: the JSON's own folder


def _bad(tmp_path: Path, edit) -> tuple[Path, str]:
    doc = _doc()
    edit(doc)
    path = _write(tmp_path, doc)
    with pytest.raises(SoftSamplingError) as info:
        read_coco(path)
    message = str(info.value)
    assert str(path) in message
    return path, message


def test_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "images": [],\n  "annotations": [,]\n}')
    with pytest.raises(SoftSamplingError) as info:
        read_coco(path)
    assert str(path) in str(info.value)
    assert "line 3, column 19" in str(info.value)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d.pop("categories"), "missing top-level key 'categories'"),
        (lambda d: d["images"][1].pop("width"), "image id 5 (images[1]): missing required key 'width'"),
        (lambda d: d["annotations"][1].pop("bbox"), "annotation id 11: missing required key 'bbox'"),
        (lambda d: d["annotations"][0].pop("id"), "annotations[0]: missing required key 'id'"),
        (lambda d: d["annotations"][1].update(category_id=4), "annotation id 11: category_id 4 is not the id"),
        (lambda d: d["annotations"][0].update(image_id=2), "annotation id 10: image_id 2 is not the id"),
        (lambda d: d["images"][1].update(id=1), "duplicate image id 1 (entry 1)"),
        (lambda d: d["annotations"][1].update(id=10), "duplicate annotation id 10 (entry 1)"),
        (lambda d: d["categories"][1].update(id=3), "duplicate category id 3 (entry 1)"),
        (lambda d: d["annotations"][0].update(bbox="10 20 30 40"), "annotation id 10: 'bbox' is \"10 20 30 40\""),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "annotation id 10: 'bbox' is [1, 2, 3]"),
        (lambda d: d["images"][0].update(id="1"), "images[0]: 'id' is \"1\", expected an integer"),
        (lambda d: d["annotations"][0].update(iscrowd=2), "annotation id 10: 'iscrowd' is 2, expected 0 or 1"),
        (lambda d: d["images"][0].update(height=0), "image id 1 (images[0]): image size must be positive"),
        (lambda d: d["annotations"][0].update(bbox=[10, 20, 0, 40]), "annotation id 10: box is empty"),
        (lambda d: d["annotations"][0].update(bbox=[10, 20, -5, 40]), "annotation id 10: box is empty"),
        (lambda d: d["annotations"][1].update(bbox=[10, math.nan, 5, 5]), "annotation id 11: box has a NaN"),
        (lambda d: d["annotations"][0].update(bbox=[90, 20, 30, 40]), "annotation id 10: box lies outside the image"),
    ],
)
def test_validation_errors_name_file_and_record(tmp_path: Path, edit, expected: str) -> None:
    _, message = _bad(tmp_path, edit)
    assert expected in message


def test_top_level_must_be_object(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text("[]")
    with pytest.raises(SoftSamplingError, match="top level is a JSON array"):
        read_coco(path)


def test_clip_and_skip_policies(tmp_path: Path) -> None:
    doc = _doc()
    # 3 px past the right edge of a 100 px image (tolerance 5% = 5 px): clippable
    doc["annotations"][0]["bbox"] = [70, 20, 33, 40]
    # empty box: never clippable
    doc["annotations"].append({"id": 12, "image_id": 5, "category_id": 3, "bbox": [5, 5, 0, 5], "iscrowd": 0})
    path = _write(tmp_path, doc)
    with pytest.raises(SoftSamplingError, match="annotation id 10: box lies outside the image"):
        read_coco(path)
    with pytest.raises(SoftSamplingError, match="annotation id 12: box is empty"):
        read_coco(path, invalid="clip")

    skipped = read_coco(path, invalid="skip")
    assert skipped.box_ids.tolist() == [11]
    assert skipped.extra["validation_report"].skipped == 2

    doc["annotations"].pop()
    path = _write(tmp_path, doc)
    clipped = read_coco(path, invalid="clip")
    assert clipped.boxes[0].tolist() == [70.0, 20.0, 100.0, 60.0]
    assert clipped.extra["validation_report"].clipped == 1
    # a changed box is written with the shortest exact xywh, the unchanged one as given
    write_coco(clipped, tmp_path / "clipped.json")
    written = json.loads((tmp_path / "clipped.json").read_text())
    assert [a["bbox"] for a in written["annotations"]] == [[70.0, 20.0, 30.0, 40.0], [0.5, 0.25, 99.5, 79.75]]
    assert read_coco(tmp_path / "clipped.json").equals(clipped)
    # a box too far outside is not clipped
    doc["annotations"][0]["bbox"] = [70, 20, 40, 40]
    with pytest.raises(SoftSamplingError, match="annotation id 10: box lies outside"):
        read_coco(_write(tmp_path, doc), invalid="clip")


def test_shortest_xywh_reads_back_exactly() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 2000, size=(50_000, 2))
    wh = rng.uniform(0.01, 500, size=(50_000, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    boxes[:3] = [[1e-30, 0, 3e-7, 1], [0, 0, 1, 1], [1e6, 5e5, 1e6 + 0.0625, 5e5 + 1]]  # extremes
    written = shortest_xywh_array(boxes)
    assert np.array_equal(xywh_to_xyxy(written), boxes)
    # short decimals where they exist: 2-decimal inputs come back with <= 2 decimals
    two = np.round(rng.uniform(0, 600, size=(1000, 4)), 2)
    two[:, 2:] += 1
    written = shortest_xywh_array(xywh_to_xyxy(two))
    assert np.abs(written * 100 - np.round(written * 100)).max() < 1e-6
    assert shortest_xywh(np.array([1.5, 2, 11.5, 6], dtype=np.float32)) == [1.5, 2.0, 10.0, 4.0]


def test_write_is_atomic_and_refuses_nan(tmp_path: Path) -> None:
    ds = read_coco(_write(tmp_path, _doc()))
    out = tmp_path / "out.json"
    out.write_text("previous")
    ds.boxes[0, 0] = np.nan
    with pytest.raises(SoftSamplingError, match="annotation id 10: box has a NaN"):
        write_coco(ds, out)
    assert out.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_write_dataset_from_another_format(tmp_path: Path) -> None:
    ds = DetectionDataset.from_lists(
        images=[
            {"id": "000007", "file_name": "000007.jpg", "width": 50, "height": 40},
            {"id": "000009", "file_name": "000009.jpg", "width": 30, "height": 30},
        ],
        boxes=[
            {"image_index": 1, "bbox": [0, 0, 10.5, 10], "label": 2, "id": 1, "difficult": True},
            {"image_index": 0, "bbox": [5, 5, 20, 20], "label": 1, "id": 2},
        ],
        categories=[Category(1, "cat"), Category(2, "dog")],
    )
    write_coco(ds, tmp_path / "conv.json")
    doc = json.loads((tmp_path / "conv.json").read_text())
    assert [im["id"] for im in doc["images"]] == [1, 2]  # string ids -> 1..I
    assert doc["annotations"][0] == {
        "id": 1,
        "image_id": 2,
        "category_id": 2,
        "bbox": [0.0, 0.0, 10.5, 10.0],
        "iscrowd": 0,
        "difficult": 1,
    }
    back = read_coco(tmp_path / "conv.json")
    assert back.difficult.tolist() == [True, False]
    assert np.array_equal(back.boxes, ds.boxes)


# ------------------------------------------------------------- image checks
def test_default_image_root_layouts(tmp_path: Path) -> None:
    (tmp_path / "annotations").mkdir()
    json_path = tmp_path / "annotations" / "instances_val2017.json"
    assert default_image_root(json_path) == tmp_path / "annotations"
    (tmp_path / "val2017").mkdir()  # official COCO download layout
    assert default_image_root(json_path) == tmp_path / "val2017"
    (tmp_path / "images" / "val2017").mkdir(parents=True)  # coco128 / digit benchmark layout wins
    assert default_image_root(json_path) == tmp_path / "images" / "val2017"


def test_check_images_on_small_dataset(tmp_path: Path) -> None:
    doc = _doc()
    (tmp_path / "annotations").mkdir()
    path = _write(tmp_path / "annotations", doc, "train.json")
    _images(tmp_path / "images" / "train", doc)
    assert read_coco(path, check_images=True).image_root == tmp_path / "images" / "train"

    (tmp_path / "images" / "train" / "b.png").unlink()
    with pytest.raises(SoftSamplingError) as info:
        read_coco(path, check_images=True)
    assert str(path) in str(info.value)
    assert "image id 5 (file_name 'b.png'): image file not found" in str(info.value)

    Image.new("RGB", (99, 80)).save(tmp_path / "images" / "train" / "b.png")
    with pytest.raises(SoftSamplingError, match="image id 5 .*says the image is 100x80 but the file .* is 99x80"):
        read_coco(path, check_images=True)

    (tmp_path / "images" / "train" / "b.png").write_bytes(b"not an image")
    with pytest.raises(SoftSamplingError, match="image id 5 .*cannot read image"):
        read_coco(path, check_images=True)


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_image_paths_escaping_root(tmp_path: Path, kind: str) -> None:
    doc = _doc()
    root = tmp_path / "images"
    _images(root, doc)
    outside = tmp_path / "secret.png"
    Image.new("RGB", (100, 80)).save(outside)
    if kind == "dotdot":
        doc["images"][1]["file_name"] = "../secret.png"
    elif kind == "absolute":
        doc["images"][1]["file_name"] = str(outside)
    else:
        (root / "b.png").unlink()
        os.symlink(outside, root / "b.png")
    path = _write(tmp_path, doc)
    with pytest.raises(SoftSamplingError) as info:
        read_coco(path, image_root=root, check_images=True)
    message = str(info.value)
    assert str(path) in message and "image id 5" in message
    assert ("leaves the image folder" in message) or ("is absolute" in message)
    # the user can opt in
    ds = read_coco(path, image_root=root, check_images=True, allow_outside_root=True)
    assert ds.num_images == 2


def test_decompression_bomb_limit(tmp_path: Path) -> None:
    Image.new("L", (200, 100)).save(tmp_path / "big.png")
    assert image_size(tmp_path / "big.png", max_pixels=20_000) == (200, 100)
    with pytest.raises(SoftSamplingError, match="200x100 = 20,000 pixels, more than the limit of 19,999"):
        image_size(tmp_path / "big.png", max_pixels=19_999, file="a.json", record="image id 1")


def test_unknown_policy_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(SoftSamplingError, match="unknown invalid-box policy 'drop'"):
        read_coco(_write(tmp_path, _doc()), invalid="drop")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SoftSamplingError, match="COCO JSON file not found"):
        read_coco(tmp_path / "nope.json")


def test_doc_fixture_is_unchanged_by_round_trip(tmp_path: Path) -> None:
    doc = _doc()
    ds = read_coco(_write(tmp_path, copy.deepcopy(doc)))
    write_coco(ds, tmp_path / "rt.json")
    assert json.loads((tmp_path / "rt.json").read_text()) == doc


def test_docs_example_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the example's mkdtemp lands in tmp_path
    docs = Path(__file__).resolve().parents[2] / "docs" / "formats.md"
    blocks = docs.read_text().split("```python\n")[1:]
    example = next(b.split("```")[0] for b in blocks if "tempfile" in b)
    exec(compile(example, str(docs), "exec"), {"__name__": "docs_example"})
    out = capsys.readouterr().out
    assert "annotation id 2: box lies outside the image" in out
    assert "<xmin>1</xmin> <ymin>1</ymin> <xmax>10</xmax> <ymax>20</ymax>" in out
    assert out.rstrip().endswith("[29.0, 4.0, 35.0, 44.0]")


def test_curated_file_name_finds_the_images_of_its_source(tmp_path):
    from softsampling.data.coco import default_image_root

    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "annotations").mkdir()
    assert default_image_root(tmp_path / "annotations" / "train_drop50.json") == tmp_path / "images" / "train"
    assert default_image_root(tmp_path / "annotations" / "train_easy_seed3.json") == tmp_path / "images" / "train"
    assert default_image_root(tmp_path / "annotations" / "val.json") == tmp_path / "annotations"
