"""Detection readers/writers and the txt layout, on the real Cartucho sample and small hand-made files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from softsampling.errors import SoftSamplingError
from softsampling.evaluation.io import (
    read_detections,
    read_txt_layout,
    write_detections_coco,
    write_detections_csv,
)
from softsampling.evaluation.voc_metric import voc_ap
from softsampling.structures.detections import Detections
from softsampling.structures.records import Category, DetectionDataset
from tests.evaluation.test_voc_metric import devkit_reference


# ------------------------------------------------------------------ the real Cartucho sample
def raw_cartucho(cartucho_dir: Path):
    """Parse the sample with plain string splitting, for the reference (inclusive numbers as written)."""
    stems = sorted(p.stem for p in (cartucho_dir / "ground-truth").glob("*.txt"))
    row = {s: i for i, s in enumerate(stems)}
    gt, dets = [], []
    for s in stems:
        for line in (cartucho_dir / "ground-truth" / f"{s}.txt").read_text().splitlines():
            name, left, t, r, b = line.split()
            gt.append((row[s], name, float(left), float(t), float(r), float(b), False))
        det_file = cartucho_dir / "detection-results" / f"{s}.txt"
        for line in det_file.read_text().splitlines():
            name, conf, left, t, r, b = line.split()
            dets.append((row[s], name, float(conf), float(left), float(t), float(r), float(b)))
    return stems, gt, dets


def test_cartucho_reader_counts(cartucho_dir):
    notes: list[str] = []
    gt, dets = read_txt_layout(cartucho_dir / "ground-truth", cartucho_dir / "detection-results", notes=notes)
    stems, raw_gt, raw_dets = raw_cartucho(cartucho_dir)
    assert gt.num_images == 85 and gt.image_ids == stems
    assert gt.num_boxes == 686
    assert len(gt.categories) == 30
    assert len(raw_dets) == 494 and len({d[1] for d in raw_dets}) == 36
    gt_classes = {g[1] for g in raw_gt}
    kept = [d for d in raw_dets if d[1] in gt_classes]
    assert len(dets) == len(kept) == 450
    assert len(notes) == 1 and "ignored 44 detection(s) of 8 class(s)" in notes[0] and "refrigerator (32)" in notes[0]
    # Categories: sorted names, ids 1..30; boxes mapped (left-1, top-1, right, bottom).
    names = [c.name for c in gt.categories]
    assert names == sorted(names) and [c.id for c in gt.categories] == list(range(1, 31))
    first = raw_gt[0]
    assert gt.boxes[0].tolist() == [first[2] - 1, first[3] - 1, first[4], first[5]]
    assert gt.category_names[int(gt.labels[0])] == first[1]
    assert not gt.difficult.any()
    # Sizes from the box extents (no images folder): at least the largest right/bottom.
    assert (gt.widths >= 1).all() and gt.widths[0] == int(np.ceil(max(g[4] for g in raw_gt if g[0] == 0)))


def test_cartucho_sizes_from_images(cartucho_dir):
    gt, _ = read_txt_layout(cartucho_dir / "ground-truth", images_dir=cartucho_dir / "images")
    assert gt.file_names[0] == "2007_000027.jpg"
    assert (gt.widths[:2].tolist(), gt.heights[:2].tolist()) == ([640, 640], [480, 480])
    assert gt.image_path(0) == cartucho_dir / "images" / "2007_000027.jpg"


@pytest.mark.parametrize("use_07", [False, True])
def test_cartucho_map_equals_reference(cartucho_dir, use_07):
    _, raw_gt, raw_dets = raw_cartucho(cartucho_dir)
    ref_aps, ref_map = devkit_reference(raw_gt, raw_dets, 0.5, use_07)
    gt, dets = read_txt_layout(cartucho_dir / "ground-truth", cartucho_dir / "detection-results", notes=[])
    r = voc_ap(gt, dets, use_07_metric=use_07)
    assert r["mAP"] == pytest.approx(ref_map, abs=1e-12)
    assert {gt.category_names[c]: e["ap"] for c, e in r["per_class"].items()} == pytest.approx(ref_aps, abs=1e-12)
    assert 0.30 < r["mAP"] < 0.33  # 0.3105 (area), 0.3170 (11-point)


# ------------------------------------------------------------------ txt layout rules
def write_layout(tmp_path: Path, gt: dict[str, str], dets: dict[str, str] | None = None):
    (tmp_path / "gt").mkdir()
    for stem, text in gt.items():
        (tmp_path / "gt" / f"{stem}.txt").write_text(text)
    if dets is not None:
        (tmp_path / "det").mkdir()
        for stem, text in dets.items():
            (tmp_path / "det" / f"{stem}.txt").write_text(text)
    return tmp_path / "gt", (tmp_path / "det" if dets is not None else None)


def test_txt_layout_difficult_empty_and_missing_files(tmp_path):
    gt_dir, det_dir = write_layout(
        tmp_path,
        {"a": "dog 1 1 10 10\ncat 5 5 20 30 difficult\n", "b": "", "c": "dog 3 3 4 4\n"},
        {"a": "dog 0.9 1 1 10 10\n\n", "b": "cat 0.5 1 1 2 2\n"},  # c has no detection file
    )
    gt, dets = read_txt_layout(gt_dir, det_dir)
    assert gt.image_ids == ["a", "b", "c"]
    assert gt.difficult.tolist() == [False, True, False]
    assert [c.name for c in gt.categories] == ["cat", "dog"]
    assert gt.labels.tolist() == [2, 1, 2]
    assert gt.boxes.tolist() == [[0, 0, 10, 10], [4, 4, 20, 30], [2, 2, 4, 4]]
    assert gt.widths.tolist() == [20, 2, 4] and gt.heights.tolist() == [30, 2, 4]
    assert dets.image_index.tolist() == [0, 1] and dets.labels.tolist() == [2, 1]
    assert dets.scores.tolist() == pytest.approx([0.9, 0.5])
    r = voc_ap(gt, dets)
    assert r["per_class"][2]["ap"] == pytest.approx(0.5)  # 1 of 2 dogs at precision 1
    assert r["per_class"][1]["ap"] is None  # the only cat is difficult


@pytest.mark.parametrize(
    "gt_text, det_text, match",
    [
        ("dog 1 1 10\n", None, r"a\.txt: line 1: expected '<class> <left>"),
        ("teddy bear 1 1 10 10\n", None, "line 1: .*got 6 fields.*class names must not contain spaces"),
        ("dog 1 1 10 ten\n", None, "line 1: 'ten' is not a number"),
        ("dog 1 1 10 10\ndog 5 5 1 1\n", None, r"line 2: box has right < left"),
        ("dog 1 1 10 10 hard\n", None, "got 6 fields"),
        ("dog 1 1 10 10\n", "dog 1 1 10 10\n", r"det.a\.txt: line 1: expected '<class> <confidence>"),
        ("dog 1 1 10 10\n", "dog nan 1 1 10 10\n", "not a finite number"),
    ],
)
def test_txt_layout_errors_name_file_and_line(tmp_path, gt_text, det_text, match):
    gt_dir, det_dir = write_layout(tmp_path, {"a": gt_text}, None if det_text is None else {"a": det_text})
    with pytest.raises(SoftSamplingError, match=match):
        read_txt_layout(gt_dir, det_dir)


def test_txt_layout_detection_file_without_ground_truth(tmp_path):
    gt_dir, det_dir = write_layout(tmp_path, {"a": "dog 1 1 10 10\n"}, {"zzz": "dog 0.5 1 1 10 10\n"})
    with pytest.raises(SoftSamplingError, match=r"zzz\.txt: no ground-truth file zzz\.txt.*add an empty"):
        read_txt_layout(gt_dir, det_dir)


def test_txt_layout_all_detections_of_unknown_classes_is_an_error(tmp_path):
    gt_dir, det_dir = write_layout(tmp_path, {"a": "dog 1 1 10 10\n"}, {"a": "Dog 0.5 1 1 10 10\n"})
    with pytest.raises(SoftSamplingError, match="none of the detections has a class of the ground truth"):
        read_txt_layout(gt_dir, det_dir)


def test_txt_layout_unknown_class_warns_without_notes(tmp_path):
    gt_dir, det_dir = write_layout(
        tmp_path, {"a": "dog 1 1 10 10\n"}, {"a": "dog 0.5 1 1 10 10\nunicorn 0.4 1 1 5 5\n"}
    )
    with pytest.warns(UserWarning, match=r"ignored 1 detection\(s\) of 1 class\(s\).*unicorn \(1\)"):
        _, dets = read_txt_layout(gt_dir, det_dir)
    assert len(dets) == 1


def test_txt_layout_missing_image(tmp_path):
    gt_dir, _ = write_layout(tmp_path, {"a": "dog 1 1 10 10\n"})
    (tmp_path / "images").mkdir()
    with pytest.raises(SoftSamplingError, match=r"a\.txt: no image named a\.\*"):
        read_txt_layout(gt_dir, images_dir=tmp_path / "images")


# ------------------------------------------------------------------ CSV and COCO results
def small_gt() -> DetectionDataset:
    return DetectionDataset.from_lists(
        images=[
            {"id": 10, "file_name": "train/a.jpg", "width": 100, "height": 80},
            {"id": 20, "file_name": "train/b.png", "width": 100, "height": 80},
        ],
        boxes=[{"image_index": 0, "bbox": [1, 2, 30, 40], "label": 3}],
        categories=[Category(3, "car"), Category(7, "traffic light")],
    )


def test_csv_reader_resolves_images_by_name_stem_or_id(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(
        "image,label,score,xmin,ymin,xmax,ymax,extra\n"
        "train/a.jpg,car,0.9,1,2,30,40,x\n"
        "b.png,traffic light,0.25,5.5,6,7,8,y\n"
        "b,car,0.5,0,0,10,10,z\n"
        "10,car,0.1,0,0,1,1,w\n"
    )
    d = read_detections(path, small_gt())
    assert d.image_index.tolist() == [0, 1, 1, 0]
    assert d.labels.tolist() == [3, 7, 3, 3]
    assert d.scores.tolist() == pytest.approx([0.9, 0.25, 0.5, 0.1])
    assert d.boxes[1].tolist() == [5.5, 6, 7, 8]


def test_csv_header_order_is_free(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("xmin,ymin,xmax,ymax,score,label,image\n1,2,3,4,0.5,car,a\n")
    d = read_detections(path, small_gt())
    assert d.boxes.tolist() == [[1, 2, 3, 4]] and d.labels.tolist() == [3]


@pytest.mark.parametrize(
    "text, match",
    [
        ("image,label,score,xmin,ymin,xmax\n", "line 1: header lacks column.s. ymax"),
        (
            "image,label,score,xmin,ymin,xmax,ymax\na.jpg,car,0.5,1,2,3,4\nc.jpg,car,0.5,1,2,3,4\n",
            r"line 3: image 'c.jpg' is not in the ground truth",
        ),
        (
            "image,label,score,xmin,ymin,xmax,ymax\na,car,high,1,2,3,4\n",
            "line 2: score and coordinates must be numbers",
        ),
        ("image,label,score,xmin,ymin,xmax,ymax\na,car,0.5,10,2,3,4\n", "line 2: box has negative width"),
        ("image,label,score,xmin,ymin,xmax,ymax\na,car,inf,1,2,3,4\n", "line 2: score or coordinate is NaN"),
        ("image,label,score,xmin,ymin,xmax,ymax\na,bus,0.5,1,2,3,4\n", "none of the detections has a class"),
        ("", "empty file"),
    ],
)
def test_csv_errors_name_the_line(tmp_path, text, match):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(SoftSamplingError, match=match) as info:
        read_detections(path, small_gt())
    assert str(path) in str(info.value)


def test_unknown_class_is_ignored_with_a_note(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("image,label,score,xmin,ymin,xmax,ymax\na,car,0.5,1,2,3,4\na,bus,0.4,1,2,3,4\nb,bus,0.3,1,2,3,4\n")
    notes: list[str] = []
    d = read_detections(path, small_gt(), notes=notes)
    assert len(d) == 1
    assert notes == [f"{path}: ignored 2 detection(s) of 1 class(s) absent from the ground truth: bus (2)"]


def test_ambiguous_image_name(tmp_path):
    gt = DetectionDataset.from_lists(
        images=[
            {"id": 1, "file_name": "x/a.jpg", "width": 9, "height": 9},
            {"id": 2, "file_name": "y/a.jpg", "width": 9, "height": 9},
        ],
        boxes=[],
        categories=[Category(1, "car")],
    )
    path = tmp_path / "d.csv"
    path.write_text("image,label,score,xmin,ymin,xmax,ymax\nx/a.jpg,car,0.5,1,2,3,4\na.jpg,car,0.5,1,2,3,4\n")
    with pytest.raises(SoftSamplingError, match="line 3: image 'a.jpg' matches several"):
        read_detections(path, gt)


def random_detections(gt: DetectionDataset, n: int, seed: int) -> Detections:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 50, size=(n, 2)).astype(np.float32)
    wh = rng.uniform(0.1, 30, size=(n, 2)).astype(np.float32)
    return Detections(
        rng.integers(0, gt.num_images, n),
        np.concatenate([xy, xy + wh], axis=1),
        rng.choice([c.id for c in gt.categories], n),
        rng.random(n).astype(np.float32),
    )


@pytest.mark.parametrize("writer, name", [(write_detections_coco, "d.json"), (write_detections_csv, "d.csv")])
def test_write_then_read_gives_the_same_detections(tmp_path, writer, name):
    gt = small_gt()
    dets = random_detections(gt, 200, seed=0)
    writer(dets, gt, tmp_path / name)
    back = read_detections(tmp_path / name, gt)
    for field in ("image_index", "labels", "boxes", "scores"):
        assert np.array_equal(getattr(back, field), getattr(dets, field)), field


def test_coco_results_format(tmp_path):
    gt = small_gt()
    write_detections_coco(Detections([1], [[1.5, 2, 11.5, 22]], [7], [0.75]), gt, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == [
        {"image_id": 20, "category_id": 7, "bbox": [1.5, 2.0, 10.0, 20.0], "score": 0.75}
    ]


@pytest.mark.parametrize(
    "entries, match",
    [
        ({"image_id": 10}, "must be a JSON list"),
        (
            [{"image_id": 10, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.5}, {"image_id": 10}],
            "entry 1: malformed detection",
        ),
        ([{"image_id": 11, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.5}], "entry 0: image 11 is not in"),
        ([{"image_id": 10, "category_id": 3, "bbox": [0, 0, -1, 1], "score": 0.5}], "negative width"),
        (
            [{"image_id": 10, "category_id": 0, "bbox": [0, 0, 1, 1], "score": 0.5}],
            "none of the detections has a category id",
        ),
    ],
)
def test_coco_results_errors(tmp_path, entries, match):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(entries))
    with pytest.raises(SoftSamplingError, match=match):
        read_detections(path, small_gt())


def test_format_detection_by_extension(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("[]")
    with pytest.raises(SoftSamplingError, match="cannot tell the detections format"):
        read_detections(path, small_gt())
    assert len(read_detections(path, small_gt(), fmt="coco")) == 0
    with pytest.raises(SoftSamplingError, match="does not exist"):
        read_detections(tmp_path / "missing.json", small_gt())
