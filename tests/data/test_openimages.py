"""Open Images CSV reader/writer: hand-checked conversion, round trips, validation messages, chunk boundaries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from softsampling.data.formats import load_dataset, save_dataset
from softsampling.data.openimages import (
    NO_TEXT,
    _format_new,
    image_level_labels,
    labels_path_for,
    read_openimages,
    write_openimages,
)
from softsampling.errors import SoftSamplingError
from softsampling.structures.records import Category, DetectionDataset

HEADER = (
    "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside\n"
)
# line 2..6; img_b is 200 x 100, img_a 640 x 480
BOXES = (
    HEADER
    + "img_b,xclick,/m/dog,1,0.25,0.5,0.1,0.9,0,1,0,0,0\n"
    + "img_b,activemil,/m/cat,1,0.012500,0.987500,0.000000,1.000000,1,0,1,-1,0\n"
    + "img_a,xclick,/m/dog,1,0,1,0.5,0.75,-1,0,0,1,1\n"
    + "img_a,xclick,/m/car,1,1e-01,0.2,0.3,0.4,0,0,0,0,0\n"
    + "img_b,xclick,/m/dog,1,0.6,0.7,0.2,0.3,0,0,0,0,0\n"
)
CLASSES = "/m/dog,Dog\n/m/cat,Cat\n/m/car,Car\n/m/bird,Bird\n"  # official layout: no header
SIZES = "ImageID,width,height\nimg_a,640,480\nimg_b,200,100\nimg_unused,1,1\n"
LABELS = (
    "ImageID,Source,LabelName,Confidence\n"
    "img_a,verification,/m/dog,1\n"
    "img_a,verification,/m/cat,0\n"
    "img_c,crowdsource-verification,/m/bird,1\n"
    "img_b,verification,/m/zzz,0\n"
)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_bytes(text.encode())
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "boxes": write(tmp_path, "boxes.csv", BOXES),
        "classes": write(tmp_path, "classes.csv", CLASSES),
        "sizes": write(tmp_path, "sizes.csv", SIZES + "img_c,50,40\n"),
        "labels": write(tmp_path, "labels.csv", LABELS),
    }


def read_all(files: dict[str, Path], **kw) -> DetectionDataset:
    return read_openimages(
        files["boxes"], classes_csv=files["classes"], sizes_csv=files["sizes"], labels_csv=files["labels"], **kw
    )


# ------------------------------------------------------------------ reading
def test_read_converts_coordinates_and_flags_by_hand(files):
    ds = read_all(files)
    assert ds.image_ids == ["img_b", "img_a", "img_c"]  # first appearance; img_c only has image-level labels
    assert ds.file_names == ["img_b.jpg", "img_a.jpg", "img_c.jpg"]
    assert ds.widths.tolist() == [200, 640, 50] and ds.heights.tolist() == [100, 480, 40]
    assert ds.box_image.tolist() == [0, 0, 1, 1, 0]
    assert ds.box_ids.tolist() == [0, 1, 2, 3, 4]
    # x * width, y * height; file order XMin, XMax, YMin, YMax -> xyxy
    np.testing.assert_array_equal(
        ds.boxes,
        np.array(
            [
                [50, 10, 100, 90],
                [2.5, 0, 197.5, 100],
                [0, 240, 640, 360],
                [64, 144, 128, 192],
                [120, 20, 140, 30],
            ],
            dtype=np.float32,
        ),
    )
    assert [(c.id, c.name, c.extra["LabelName"]) for c in ds.categories] == [
        (1, "Dog", "/m/dog"),
        (2, "Cat", "/m/cat"),
        (3, "Car", "/m/car"),
        (4, "Bird", "/m/bird"),
    ]
    assert ds.labels.tolist() == [1, 2, 1, 3, 1]
    assert ds.group_of.tolist() == [False, True, False, False, False]
    assert ds.truncated.tolist() == [True, False, False, False, False]
    assert not ds.iscrowd.any() and not ds.difficult.any()
    assert ds.box_extra["oi_flags"].tolist()[1] == [1, 0, 1, -1, 0]
    assert ds.box_extra["oi_decimals"].tolist()[1] == [6, 6, 6, 6]  # xyxy order
    assert ds.box_extra["oi_decimals"][3, 0] == NO_TEXT  # "1e-01" is kept verbatim
    assert ds.extra["openimages"]["coord_text"] == {(3, 0): "1e-01"}
    oi = ds.extra["openimages"]
    assert [oi["sources"][i] for i in ds.box_extra["oi_source"]] == [
        "xclick",
        "activemil",
        "xclick",
        "xclick",
        "xclick",
    ]
    assert ds.extra["normalized"] is False
    assert ds.extra["validation_report"].summary() == "all boxes valid"


def test_classes_with_header_equal_classes_without(files, tmp_path):
    with_header = write(tmp_path, "classes_h.csv", "LabelName,DisplayName\n" + CLASSES)
    a = read_openimages(files["boxes"], classes_csv=files["classes"], sizes_csv=files["sizes"])
    b = read_openimages(files["boxes"], classes_csv=with_header, sizes_csv=files["sizes"])
    assert a.equals(b) and [c.name for c in b.categories] == ["Dog", "Cat", "Car", "Bird"]


def test_without_classes_sorted_label_names(files):
    ds = read_openimages(files["boxes"], sizes_csv=files["sizes"])
    assert [(c.id, c.name) for c in ds.categories] == [(1, "/m/car"), (2, "/m/cat"), (3, "/m/dog")]
    assert ds.labels.tolist() == [3, 2, 3, 1, 3]


def test_without_sizes_stays_normalised(files):
    ds = read_openimages(files["boxes"])
    assert ds.extra["normalized"] is True
    assert ds.widths.tolist() == [1, 1] and ds.heights.tolist() == [1, 1]
    np.testing.assert_array_equal(ds.boxes[0], np.array([0.25, 0.1, 0.5, 0.9], dtype=np.float32))


def test_sizes_from_image_files(files, tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    Image.new("RGB", (640, 480)).save(root / "img_a.jpg")
    Image.new("RGB", (200, 100)).save(root / "img_b.jpg")
    ds = read_openimages(files["boxes"], image_root=root)
    assert ds.widths.tolist() == [200, 640] and ds.heights.tolist() == [100, 480]
    assert ds.boxes[2].tolist() == [0, 240, 640, 360]
    assert ds.image_path(1) == root / "img_a.jpg"
    # check_images compares the sizes CSV with the files
    bad_sizes = write(tmp_path, "bad_sizes.csv", "ImageID,width,height\nimg_a,640,480\nimg_b,201,100\n")
    with pytest.raises(SoftSamplingError, match=r"img_b.*200x100|201x100"):
        read_openimages(files["boxes"], image_root=root, sizes_csv=bad_sizes, check_images=True)


def test_image_id_leaving_the_image_folder_is_refused(tmp_path):
    boxes = write(tmp_path, "b.csv", HEADER + "../secret,xclick,/m/dog,1,0.1,0.2,0.1,0.2,0,0,0,0,0\n")
    with pytest.raises(SoftSamplingError, match=r"b\.csv.*leave the image folder.*allow_outside_root"):
        read_openimages(boxes, image_root=tmp_path)


def test_image_level_labels_keep_negatives_and_survive_selection(files, tmp_path):
    ds = read_all(files)
    table = ds.extra["image_labels"]
    assert table["image_id"].tolist() == ["img_a", "img_a", "img_c", "img_b"]
    assert table["confidence"].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert table["label"].tolist() == [1, 2, 4, -1]  # /m/zzz is not a category
    image_index, labels, positive = image_level_labels(ds)
    assert image_index.tolist() == [1, 1, 2] and labels.tolist() == [1, 2, 4]
    assert positive.tolist() == [True, False, True]
    # drop img_a: its labels disappear from the rows and from the written labels file
    sub = ds.select_images(np.array([True, False, True]))
    image_index, labels, _ = image_level_labels(sub)
    assert image_index.tolist() == [1] and labels.tolist() == [4]
    out = tmp_path / "out" / "curated.csv"
    write_openimages(sub, out)
    assert labels_path_for(out) == tmp_path / "out" / "curated-image-labels.csv"
    assert labels_path_for(out).read_text() == (
        "ImageID,Source,LabelName,Confidence\nimg_c,crowdsource-verification,/m/bird,1\nimg_b,verification,/m/zzz,0\n"
    )


# ------------------------------------------------------------------ round trips
def test_round_trip_is_byte_identical(files, tmp_path):
    ds = read_all(files)
    out = tmp_path / "copy.csv"
    write_openimages(ds, out, labels_path=tmp_path / "copy_labels.csv")
    assert out.read_bytes() == files["boxes"].read_bytes()
    assert (tmp_path / "copy_labels.csv").read_bytes() == files["labels"].read_bytes()
    again = read_openimages(
        out, classes_csv=files["classes"], sizes_csv=files["sizes"], labels_csv=tmp_path / "copy_labels.csv"
    )
    assert again.equals(ds)


def test_round_trip_keeps_extra_columns_and_column_order(tmp_path):
    text = (
        "LabelName,ImageID,XMin,XMax,YMin,YMax,Source,Confidence,IsOccluded,IsTruncated,IsGroupOf,"
        "IsDepiction,IsInside,XClick1X\n"
        "/m/dog,x1,0.1,0.2,0.3,0.4,xclick,1,0,0,0,0,0,0.15\n"
        "/m/cat,x1,0.5,0.6,0.7,0.8,xclick,1,0,0,1,0,0,-1\n"
    )
    path = write(tmp_path, "v6.csv", text)
    ds = read_openimages(path)
    assert ds.box_extra["XClick1X"].tolist() == [b"0.15", b"-1"]
    assert ds.boxes[1].tolist() == pytest.approx([0.5, 0.7, 0.6, 0.8])
    write_openimages(ds, tmp_path / "copy.csv")
    assert (tmp_path / "copy.csv").read_text() == text


def test_curated_subset_writes_original_lines(files, tmp_path):
    ds = read_all(files)
    keep = np.array([True, False, True, True, False])
    write_openimages(ds.select_boxes(keep), tmp_path / "sub.csv")
    lines = BOXES.splitlines(keepends=True)
    assert (tmp_path / "sub.csv").read_text() == lines[0] + lines[1] + lines[3] + lines[4]


def test_changed_box_gets_new_text_unchanged_coordinates_keep_theirs(files, tmp_path):
    ds = read_all(files)
    ds.boxes[0, 2] = 150.0  # XMax of line 2: 150 / 200 = 0.75
    ds.group_of[0] = True
    ds.truncated[0] = False
    write_openimages(ds, tmp_path / "edit.csv")
    assert (tmp_path / "edit.csv").read_text().splitlines()[1] == "img_b,xclick,/m/dog,1,0.25,0.75,0.1,0.9,0,0,1,0,0"


def test_dataset_from_elsewhere_round_trips_through_pixels(tmp_path):
    ds = DetectionDataset.from_lists(
        images=[
            {"id": 7, "file_name": "7.jpg", "width": 640, "height": 427},
            {"id": 9, "file_name": "9.jpg", "width": 333, "height": 500},
        ],
        boxes=[
            {"image_index": 0, "bbox": [10.5, 20.25, 300.75, 426.0], "label": 3},
            {"image_index": 1, "bbox": [0, 0, 333, 100.1], "label": 5, "iscrowd": True},
            {"image_index": 1, "bbox": [1.3, 2.7, 200.9, 499.9], "label": 3, "truncated": True},
        ],
        categories=[Category(3, "traffic light"), Category(5, 'sofa, "big"')],
    )
    out = tmp_path / "coco.csv"
    write_openimages(ds, out)
    lines = out.read_text().splitlines()
    # 10.5 / 640, 300.75 / 640, 20.25 / 427, 426 / 427 rounded to 10 decimals, trailing zeros dropped
    assert lines[1] == "7,softsampling,traffic light,1,0.01640625,0.469921875,0.0474238876,0.9976580796,-1,0,0,-1,-1"
    # float32(100.1) is 100.09999847..., so YMax = 0.2001999969; crowd -> IsGroupOf 1
    assert lines[2] == '9,softsampling,"sofa, ""big""",1,0.0,1.0,0.0,0.2001999969,-1,0,1,-1,-1'
    assert lines[3].endswith(",-1,1,0,-1,-1")
    sizes = write(tmp_path, "sizes.csv", "ImageID,width,height\n7,640,427\n9,333,500\n")
    back = read_openimages(out, sizes_csv=sizes)  # the quoted line goes through the csv-module path
    assert back.image_ids == ["7", "9"]
    assert [c.name for c in back.categories] == ['sofa, "big"', "traffic light"]
    np.testing.assert_allclose(back.boxes, ds.boxes, atol=1e-4)
    assert back.group_of.tolist() == [False, True, False] and back.truncated.tolist() == [False, False, True]


def test_load_and_save_dataset_dispatch(files, tmp_path):
    ds = load_dataset(files["boxes"], "openimages", classes_csv=files["classes"], sizes_csv=files["sizes"])
    save_dataset(ds, tmp_path / "x.csv", "openimages")
    assert (tmp_path / "x.csv").read_bytes() == files["boxes"].read_bytes()


def test_crlf_and_missing_final_newline_read_the_same(files, tmp_path):
    crlf = write(tmp_path, "crlf.csv", BOXES.replace("\n", "\r\n").rstrip("\r\n"))
    a = read_openimages(files["boxes"], sizes_csv=files["sizes"])
    b = read_openimages(crlf, sizes_csv=files["sizes"])
    assert a.equals(b)
    assert b.box_extra["oi_flags"].tolist() == a.box_extra["oi_flags"].tolist()


# ------------------------------------------------------------------ chunk boundaries
@pytest.mark.parametrize("chunk_bytes", [1, 7, 50, 133])
def test_chunk_boundaries_give_the_same_dataset(files, chunk_bytes):
    ref = read_all(files)
    ds = read_all(files, chunk_bytes=chunk_bytes)
    assert ds.equals(ref)
    assert ds.extra["openimages"]["coord_text"] == ref.extra["openimages"]["coord_text"]
    for key in ("oi_coords", "oi_decimals", "oi_flags", "oi_source", "oi_confidence"):
        np.testing.assert_array_equal(ds.box_extra[key], ref.box_extra[key])
    for key in ("image_id", "label", "confidence"):
        np.testing.assert_array_equal(ds.extra["image_labels"][key], ref.extra["image_labels"][key])


@pytest.mark.parametrize("chunk_bytes", [1, 64, 1 << 20])
def test_error_line_numbers_across_chunks(tmp_path, chunk_bytes):
    good = "img,xclick,/m/dog,1,0.1,0.2,0.1,0.2,0,0,0,0,0\n"
    path = write(tmp_path, "b.csv", HEADER + good * 6 + "img,xclick,/m/dog,1,0.1,0.2,0.1,oops,0,0,0,0,0\n" + good)
    with pytest.raises(SoftSamplingError, match=r"b\.csv: line 8: YMax is not a number: 'oops'"):
        read_openimages(path, chunk_bytes=chunk_bytes)


def test_many_chunks_round_trip_bytes(tmp_path):
    rng = np.random.default_rng(3)
    lines = []
    for i in range(300):
        x1, y1 = rng.uniform(0, 0.5, 2).round(rng.integers(1, 8))
        lines.append(
            f"{i // 7:04x},xclick,/m/c{i % 5},1,{x1},{x1 + 0.25},{y1},{y1 + 0.5},"
            f"{rng.integers(-1, 2)},{rng.integers(0, 2)},{rng.integers(0, 2)},0,0\n"
        )
    path = write(tmp_path, "b.csv", HEADER + "".join(lines))
    ds = read_openimages(path, chunk_bytes=97)
    assert ds.num_boxes == 300 and ds.num_images == 43
    write_openimages(ds, tmp_path / "c.csv", chunk_rows=13)
    assert (tmp_path / "c.csv").read_bytes() == path.read_bytes()


# ------------------------------------------------------------------ validation
def bad_boxes(tmp_path: Path, line: str, header: str = HEADER) -> Path:
    good = "img_a,xclick,/m/dog,1,0.1,0.2,0.1,0.2,0,0,0,0,0\n"
    return write(tmp_path, "bad.csv", header + good + line)


@pytest.mark.parametrize(
    ("header", "pattern"),
    [
        (
            HEADER.replace("XMax", "Xmax"),
            r"bad\.csv: line 1: .*lacks column\(s\) XMax \(found 'Xmax'\?\); expected header: "
            r"ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax",
        ),
        (HEADER.replace("IsInside,", "").replace(",IsInside", ""), r"line 1: .*lacks column\(s\) IsInside"),
        ("img_a,xclick,/m/dog,1,0.1,0.2,0.1,0.2,0,0,0,0,0\n", r"line 1: .*lacks column"),
    ],
)
def test_header_errors_name_file_and_expected_header(tmp_path, header, pattern):
    path = bad_boxes(tmp_path, "", header=header)
    with pytest.raises(SoftSamplingError, match=pattern):
        read_openimages(path)


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ("img_b,xclick,/m/dog,1,0.1,0.2,0.1,0.2,0,0,0,0\n", r"bad\.csv: line 3: line has 12 field\(s\), expected 13"),
        ("\n", r"bad\.csv: line 3: line is empty, expected 13"),
        ("img_b,xclick,/m/dog,1,abc,0.2,0.1,0.2,0,0,0,0,0\n", r"bad\.csv: line 3: XMin is not a number: 'abc'"),
        ("img_b,xclick,/m/dog,1,0.1,,0.1,0.2,0,0,0,0,0\n", r"bad\.csv: line 3: XMax is not a number: ''"),
        ("img_b,xclick,/m/dog,1,0.3,0.2,0.1,0.2,0,0,0,0,0\n", r"bad\.csv: line 3: box is empty"),
        ("img_b,xclick,/m/dog,1,0.1,0.2,0.5,0.5,0,0,0,0,0\n", r"bad\.csv: line 3: box is empty"),
        (
            "img_b,xclick,/m/dog,1,0.1,1.02,0.1,0.2,0,0,0,0,0\n",
            r"bad\.csv: line 3: box lies outside the image.*--invalid clip",
        ),
        (
            "img_b,xclick,/m/dog,1,0.1,0.2,0.1,0.2,0,2,0,0,0\n",
            r"bad\.csv: line 3: IsTruncated must be 0, 1 or -1, got '2'",
        ),
        ('img_b,"xclick,/m/dog,1,0.1,0.2,0.1,0.2,0,0,0,0,0\n', r"bad\.csv: line 3: bad CSV quoting"),
    ],
)
def test_box_errors_name_file_line_and_fix(tmp_path, line, pattern):
    path = bad_boxes(tmp_path, line)
    with pytest.raises(SoftSamplingError, match=pattern) as info:
        read_openimages(path)
    assert info.value.fix


def test_unknown_label_name_with_classes(tmp_path, files):
    path = bad_boxes(tmp_path, "img_b,xclick,/m/0xyz,1,0.1,0.2,0.1,0.2,0,0,0,0,0\n")
    with pytest.raises(
        SoftSamplingError, match=r"bad\.csv: line 3: LabelName '/m/0xyz' is not in the classes file .*classes\.csv"
    ):
        read_openimages(path, classes_csv=files["classes"])


def test_missing_size_names_sizes_file_and_boxes_line(tmp_path):
    path = bad_boxes(tmp_path, "img_b,xclick,/m/dog,1,0.1,0.2,0.1,0.2,0,0,0,0,0\n")
    sizes = write(tmp_path, "sizes.csv", "ImageID,width,height\nimg_a,10,10\n")
    with pytest.raises(
        SoftSamplingError, match=r"sizes\.csv: ImageID 'img_b' \(first on line 3 of .*bad\.csv\): no size"
    ):
        read_openimages(path, sizes_csv=sizes)


@pytest.mark.parametrize(
    ("sizes", "pattern"),
    [
        ("ImageID,width,height\nimg_a,10.5,10\n", r"sizes\.csv: line 2: width must be a positive whole number"),
        ("ImageID,width,height\nimg_a,10,0\n", r"sizes\.csv: line 2: height must be a positive whole number"),
        (
            "ImageID,width,height\nimg_a,10,10\nimg_a,10,10\n",
            r"sizes\.csv: line 3: ImageID 'img_a' has a second size line",
        ),
        (
            "ImageID,w,h\nimg_a,10,10\n",
            r"sizes\.csv: line 1: the image sizes header .*expected header: ImageID,width,height",
        ),
    ],
)
def test_sizes_file_errors(tmp_path, sizes, pattern):
    path = bad_boxes(tmp_path, "")
    with pytest.raises(SoftSamplingError, match=pattern):
        read_openimages(path, sizes_csv=write(tmp_path, "sizes.csv", sizes))


def test_clip_and_skip_policies(tmp_path):
    path = bad_boxes(
        tmp_path,
        "img_b,xclick,/m/dog,1,0.1,1.02,-0.01,0.2,0,0,0,0,0\nimg_b,xclick,/m/dog,1,0.1,1.2,0.1,0.2,0,0,0,0,0\n",
    )
    with pytest.raises(SoftSamplingError, match=r"line 4: box lies outside"):
        read_openimages(path, invalid="clip")
    ds = read_openimages(path, invalid="skip")
    assert ds.box_ids.tolist() == [0]
    assert "skipped 2" in ds.extra["validation_report"].summary()
    path = bad_boxes(tmp_path, "img_b,xclick,/m/dog,1,0.1,1.02,-0.01,0.2,0,0,0,0,0\n")
    ds = read_openimages(path, invalid="clip")
    assert ds.boxes[1].tolist() == pytest.approx([0.1, 0.0, 1.0, 0.2])
    assert "clipped 1" in ds.extra["validation_report"].summary()
    write_openimages(ds, tmp_path / "clipped.csv")
    assert (tmp_path / "clipped.csv").read_text().splitlines()[2] == "img_b,xclick,/m/dog,1,0.1,1.0,0.0,0.2,0,0,0,0,0"


def test_classes_file_errors(tmp_path, files):
    dup = write(tmp_path, "dup.csv", "/m/dog,Dog\n/m/dog,Hound\n")
    with pytest.raises(SoftSamplingError, match=r"dup\.csv: duplicate LabelName '/m/dog'"):
        read_openimages(files["boxes"], classes_csv=dup)
    three = write(tmp_path, "three.csv", "/m/dog,Dog,extra\n")
    with pytest.raises(SoftSamplingError, match=r"three\.csv: line 1: line has 3 field\(s\)"):
        read_openimages(files["boxes"], classes_csv=three)


def test_bad_policy_and_missing_file(tmp_path, files):
    with pytest.raises(SoftSamplingError, match="unknown invalid-box policy"):
        read_openimages(files["boxes"], invalid="fix")
    with pytest.raises(SoftSamplingError, match=r"nope\.csv: file does not exist"):
        read_openimages(tmp_path / "nope.csv")


# ------------------------------------------------------------------ number texts
def test_format_new_uses_ten_decimals_without_trailing_zeros():
    got = _format_new(np.array([0.5, 1 / 3, 0.0, 1.0, -0.25, 2 / 3, np.nan]))
    assert got.tolist() == [b"0.5", b"0.3333333333", b"0.0", b"1.0", b"-0.25", b"0.6666666667", b"nan"]
