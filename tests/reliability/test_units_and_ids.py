"""Silent wrong numbers: detections meet the right images, in the right units (issue 9 item 3, issue 15 section 1)."""

from __future__ import annotations

import json

from softsampling.commands.predict import collect_images
from softsampling.data.formats import load_dataset
from softsampling.evaluation.io import read_detections
from tests.reliability.helpers import BAD, assert_one_line_error, run_cli


def test_detections_are_matched_by_file_name_not_by_list_position(tmp_path):
    """predict names images by file_name; COCO ids start at 1, so position 0 must not mean image 0."""
    gt = load_dataset(BAD / "coco_good.json", "coco")
    dets = tmp_path / "d.json"
    dets.write_text(json.dumps([{"file_name": "b.png", "category_id": 2, "bbox": [20, 10, 8, 8], "score": 0.8}]))
    found = read_detections(dets, gt)
    assert found.image_index.tolist() == [1] and gt.image_ids[1] == 2


def test_predict_refuses_two_images_with_one_file_name(tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.png").write_bytes((BAD / "img_good.png").read_bytes())
    try:
        collect_images([tmp_path / "x", tmp_path / "y"])
    except Exception as exc:  # noqa: BLE001 - checked below
        assert "two images are named 'a.png'" in str(exc)
    else:
        raise AssertionError("duplicate file names were accepted")


def test_openimages_with_sizes_scores_pixel_detections(tmp_path, capsys):
    """The corpus case that is refused without sizes scores 100 with --sizes (the box is img1's /m/cat box)."""
    argv = [
        "evaluate",
        "--gt",
        BAD / "oi_good.csv",
        "--gt-format",
        "openimages",
        "--classes",
        BAD / "oi_classes.csv",
        "--detections",
        BAD / "oi_det_pixels_without_sizes.csv",
        "--metric",
        "openimages",
        "--out",
        tmp_path / "r.json",
    ]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "evaluate", "--sizes")
    code, _, err = run_cli([*argv, "--sizes", BAD / "oi_sizes.csv"], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())["result"]
    assert result["per_class"]["1"]["ap"] == 1.0
