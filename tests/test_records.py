import numpy as np
import pytest

from softsampling.data.validate import validate_boxes
from softsampling.errors import SoftSamplingError
from softsampling.structures.records import Category, DetectionDataset


def _ds() -> DetectionDataset:
    return DetectionDataset.from_lists(
        images=[
            {"id": 1, "file_name": "a.png", "width": 100, "height": 50},
            {"id": 2, "file_name": "b.png", "width": 100, "height": 50},
        ],
        boxes=[
            {"image_index": 1, "bbox": [0, 0, 10, 10], "label": 1, "id": 10},
            {"image_index": 0, "bbox": [5, 5, 20, 20], "label": 2, "id": 11},
            {"image_index": 1, "bbox": [30, 10, 99, 49], "label": 2, "id": 12, "iscrowd": True},
        ],
        categories=[Category(1, "a"), Category(2, "b")],
    )


def test_per_image_views_follow_input_order():
    ds = _ds()
    assert ds.box_indices_of(0).tolist() == [1]
    assert ds.box_indices_of(1).tolist() == [0, 2]
    assert ds.boxes_per_image().tolist() == [1, 2]
    assert ds.boxes.dtype == np.float32 and ds.labels.dtype == np.int64


def test_select_images_reindexes_boxes():
    sub = _ds().select_images(np.array([False, True]))
    assert sub.image_ids == [2]
    assert sub.box_image.tolist() == [0, 0]
    assert sub.box_ids.tolist() == [10, 12]
    assert sub.iscrowd.tolist() == [False, True]


def test_validate_names_record_and_clips_on_request():
    ds = _ds()
    ds.boxes[1] = [5, 5, 101, 20]  # 1 px outside a 100 px wide image
    describe = lambda i: ("x.json", f"annotation id {ds.box_ids[i]}")  # noqa: E731
    with pytest.raises(SoftSamplingError, match=r"x.json: annotation id 11: box lies outside the image"):
        validate_boxes(ds, describe)
    fixed, report = validate_boxes(ds, describe, policy="clip")
    assert fixed.boxes[1].tolist() == [5, 5, 100, 20] and report.clipped == 1
    ds.boxes[0] = [10, 0, 10, 5]  # empty
    skipped, report = validate_boxes(ds, describe, policy="skip")
    assert skipped.box_ids.tolist() == [12] and report.skipped == 2


def test_atomic_write_keeps_old_file_on_error_and_uses_umask_permissions(tmp_path):
    import os

    from softsampling.io import atomic_write

    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temp file left behind
    with atomic_write(target) as f:
        f.write("new")
    assert target.read_text() == "new"
    mask = os.umask(0)
    os.umask(mask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~mask)
