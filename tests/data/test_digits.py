"""The digit-scene benchmark: determinism, unseen test digits, tight boxes, COCO output, CLI."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from softsampling.cli import main
from softsampling.data import digits
from softsampling.data.coco import read_coco
from softsampling.data.digits import (
    SceneStyle,
    box_overlaps,
    format_statistics,
    load_mnist_5k,
    make_digit_scenes,
    render_scene,
    split_source_digits,
)
from softsampling.errors import SoftSamplingError

TINY = {"train": 3, "val": 1, "test": 2, "size": 64}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def mnist() -> tuple[np.ndarray, np.ndarray]:
    return load_mnist_5k()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("digits") / "tiny"
    stats = make_digit_scenes(out, seed=3, **TINY)
    return out, stats


def _coco(out: Path, split: str) -> dict:
    return json.loads((out / "annotations" / f"{split}.json").read_text())


# ------------------------------------------------------------------ source digits


def test_load_mnist_5k_has_500_real_digits_per_class(mnist):
    images, labels = mnist
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5000,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [500] * 10
    assert images.max() == 255 and images[:, 0, :].max() == 0  # ink on black, empty top row as in MNIST
    assert 80 < (images > 0).sum(axis=(1, 2)).mean() < 250  # a handwritten stroke, not noise or a blank


def test_source_split_is_stratified_disjoint_and_seeded(mnist):
    _, labels = mnist
    trainval, test = split_source_digits(labels, seed=0)
    assert len(trainval) == 4000 and len(test) == 1000
    assert np.bincount(labels[test]).tolist() == [100] * 10
    assert np.intersect1d(trainval, test).size == 0
    assert np.array_equal(np.union1d(trainval, test), np.arange(5000))
    assert np.array_equal(split_source_digits(labels, seed=0)[1], test)
    assert not np.array_equal(split_source_digits(labels, seed=1)[1], test)


# ------------------------------------------------------------------ determinism


def test_same_arguments_give_byte_identical_files(tiny, tmp_path):
    out, _ = tiny
    again = tmp_path / "again"
    make_digit_scenes(again, seed=3, **TINY)
    first, second = _files(out), _files(again)
    assert sorted(first) == sorted(second)
    assert len([name for name in first if name.endswith(".png")]) == 6
    assert first == second


def test_different_seed_gives_different_scenes(tiny, tmp_path):
    out, _ = tiny
    other = tmp_path / "other"
    make_digit_scenes(other, seed=4, **TINY)
    a, b = _files(out), _files(other)
    assert a["images/train/000001.png"] != b["images/train/000001.png"]
    assert _coco(out, "train")["annotations"] != _coco(other, "train")["annotations"]


def test_more_training_images_keep_the_existing_ones(tiny, tmp_path):
    out, _ = tiny
    bigger = tmp_path / "bigger"
    make_digit_scenes(bigger, seed=3, **{**TINY, "train": 4})
    a, b = _files(out), _files(bigger)
    assert a["images/train/000003.png"] == b["images/train/000003.png"]
    assert a["images/test/000002.png"] == b["images/test/000002.png"]
    assert "images/train/000004.png" in b


# ------------------------------------------------------------------ content


def test_test_scenes_use_only_unseen_digits(tmp_path, mnist):
    _, labels = mnist
    out = tmp_path / "d"
    make_digit_scenes(out, train=6, val=2, test=6, size=64, seed=5)
    used = {s: {a["mnist_index"] for a in _coco(out, s)["annotations"]} for s in ("train", "val", "test")}
    assert used["train"] and used["test"]
    assert not (used["train"] | used["val"]) & used["test"]
    _, test_pool = split_source_digits(labels, seed=5)
    assert used["test"] <= set(test_pool.tolist())


def test_labels_are_the_mnist_labels_and_counts_match(tiny, mnist):
    out, stats = tiny
    _, labels = mnist
    total = np.zeros(10, np.int64)
    for split in ("train", "val", "test"):
        anns = _coco(out, split)["annotations"]
        cats = np.array([a["category_id"] for a in anns])
        assert all(a["category_id"] - 1 == labels[a["mnist_index"]] for a in anns)
        counts = np.bincount(cats - 1, minlength=10)
        assert [stats["splits"][split]["per_class"][str(k)] for k in range(10)] == counts.tolist()
        assert stats["splits"][split]["boxes"] == len(anns)
        per_image = np.bincount([a["image_id"] for a in anns], minlength=TINY[split] + 1)[1:]
        assert per_image.max() <= 10 and per_image.min() >= 1
        assert stats["splits"][split]["boxes_per_image"]["max"] == per_image.max()
        total += counts
    assert stats["total"]["boxes"] == total.sum() == sum(stats["total"]["box_sizes"].values())
    assert stats["total"]["images"] == 6


def test_boxes_lie_inside_the_image_and_have_ink_on_every_edge(tiny):
    out, _ = tiny
    size = TINY["size"]
    # an ink pixel is >= 77 before contrast; contrast >= 0.7 and noise only adds: >= 54 in the file
    ink = round(SceneStyle().ink_threshold * SceneStyle().contrast[0])
    for split in ("train", "val", "test"):
        coco = _coco(out, split)
        for a in coco["annotations"]:
            x, y, w, h = a["bbox"]
            assert a["area"] == w * h and a["iscrowd"] == 0
            assert x >= 0 and y >= 0 and w >= 2 and h >= 2 and x + w <= size and y + h <= size
            img = np.asarray(Image.open(out / "images" / split / f"{a['image_id']:06d}.png"))
            region = img[y : y + h, x : x + w]
            for edge in (region[0], region[-1], region[:, 0], region[:, -1]):
                assert edge.max() >= ink, (split, a["id"])


def test_box_is_exactly_the_ink_of_a_lone_digit():
    # one digit, no clutter, no noise, full contrast: the image's ink (>= 77) is that digit's ink,
    # so the annotated box must equal the tight box of all pixels >= 77.
    style = SceneStyle(objects=(1, 1), clutter=(0, 0), noise=0.0, contrast=(1.0, 1.0))
    images, labels = load_mnist_5k()
    pool = np.arange(5000)
    for seed in range(20):
        image, boxes, classes, sources = render_scene(np.random.default_rng(seed), images, labels, pool, 96, style)
        ys, xs = np.nonzero(image >= style.ink_threshold)
        assert boxes.tolist() == [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]
        assert classes.tolist() == [labels[sources[0]]]
        height = boxes[0, 3] - boxes[0, 1]
        assert 96 * 14 / 128 - 1.5 <= height <= 96 * 40 / 128 + 1.5


def test_digits_overlap_at_most_the_style_limits(tiny):
    out, _ = tiny
    style = SceneStyle()
    for split in ("train", "val", "test"):
        anns = _coco(out, split)["annotations"]
        for image_id in {a["image_id"] for a in anns}:
            xywh = np.array([a["bbox"] for a in anns if a["image_id"] == image_id], dtype=np.float64)
            xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
            for i in range(1, len(xyxy)):
                iou, cover = box_overlaps(xyxy[i], xyxy[:i])
                assert iou.max() <= style.max_iou + 1e-9 and cover.max() <= style.max_cover + 1e-9


def test_images_are_8bit_grayscale_with_background_noise(tiny):
    out, _ = tiny
    with Image.open(out / "images" / "train" / "000001.png") as im:
        assert im.mode == "L" and im.size == (64, 64)
        img = np.asarray(im)
    dark = img[img < 40]
    assert 0 < dark.mean() < 10  # light noise on black, not a blank background


# ------------------------------------------------------------------ COCO files


def test_coco_json_loads_with_pycocotools_and_our_reader(tiny):
    out, _ = tiny
    coco = COCO(str(out / "annotations" / "train.json"))
    assert coco.getCatIds() == list(range(1, 11))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == [str(k) for k in range(10)]
    assert sorted(coco.getImgIds()) == [1, 2, 3]
    assert len(coco.getAnnIds()) == len(_coco(out, "train")["annotations"])
    info = coco.dataset["info"]
    assert info["generator"] == "softsampling.data.digits" and info["split"] == "train"
    assert info["arguments"] == {"train": 3, "val": 1, "test": 2, "size": 64, "seed": 3}

    ds = read_coco(out / "annotations" / "test.json", check_images=True)
    assert ds.image_root == out / "images" / "test"
    assert ds.num_images == 2 and set(ds.labels.tolist()) <= set(range(1, 11))
    first = _coco(out, "test")["annotations"][0]
    x, y, w, h = first["bbox"]
    assert ds.boxes[0].tolist() == [x, y, x + w, y + h]


# ------------------------------------------------------------------ safety and errors


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_png(image: np.ndarray) -> bytes:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return b"png"

    monkeypatch.setattr(digits, "_png_bytes", failing_png)
    with pytest.raises(KeyboardInterrupt):
        make_digit_scenes(tmp_path / "d", **TINY)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_refused_unless_force(tiny, tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SoftSamplingError, match="already exists"):
        make_digit_scenes(out, **TINY)
    assert (out / "keep.txt").read_text() == "mine"
    make_digit_scenes(out, force=True, seed=3, **TINY)
    assert not (out / "keep.txt").exists()
    assert _files(out) == _files(tiny[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"train": -1}, "--train is -1"),
        ({"size": 16}, "--size is 16"),
        ({"seed": -2}, "--seed is -2"),
        ({"train": 0, "val": 0, "test": 0}, "all splits are empty"),
    ],
)
def test_bad_arguments_are_user_errors(tmp_path, kwargs, message):
    with pytest.raises(SoftSamplingError, match=message):
        make_digit_scenes(tmp_path / "d", **{**TINY, **kwargs})
    assert not (tmp_path / "d").exists()


def test_empty_split_is_a_valid_coco_file(tmp_path):
    make_digit_scenes(tmp_path / "d", train=1, val=0, test=0, size=48)
    val = _coco(tmp_path / "d", "val")
    assert val["images"] == [] and val["annotations"] == [] and len(val["categories"]) == 10


def test_cli_exit_codes_and_statistics(tmp_path, capsys):
    out = tmp_path / "d"
    argv = ["data", "digits", "--out", str(out), "--train", "2", "--val", "1", "--test", "1", "--size", "64"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| images | 2 | 1 | 1 | 4 |" in printed and 'class "9"' in printed and "sqrt(area)" in printed
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    with pytest.raises(SystemExit) as exc:
        main(["data"])
    assert exc.value.code == 2


def test_format_statistics_rows():
    stats = {
        "splits": {
            "train": {
                "images": 2,
                "boxes": 3,
                "boxes_per_image": {"mean": 1.5, "min": 1, "max": 2},
                "box_sizes": {"0-12": 3},
                "per_class": {"0": 3},
            }
        },
        "total": {
            "images": 2,
            "boxes": 3,
            "boxes_per_image": {"mean": 1.5, "min": 1, "max": 2},
            "box_sizes": {"0-12": 3},
            "per_class": {"0": 3},
        },
        "seconds": 0.3,
    }
    assert format_statistics(stats).splitlines() == [
        "| | train | total |",
        "|---|---|---|",
        "| images | 2 | 2 |",
        "| boxes | 3 | 3 |",
        "| boxes/image mean | 1.5 | 1.5 |",
        "| boxes/image min | 1 | 1 |",
        "| boxes/image max | 2 | 2 |",
        "| sqrt(area) 0-12 px | 3 | 3 |",
        '| class "0" | 3 | 3 |',
        "",
        "generated in 0.3 s",
    ]


def test_docstring_examples_run():
    assert doctest.testmod(digits).failed == 0
