"""The hard digit scenes (``--preset hard``): determinism, load-time validation, and scene statistics
checked against the distributions the preset promises (issue 12), with the tolerances stated per test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from softsampling.cli import main
from softsampling.data.coco import read_coco
from softsampling.data.digits import (
    SCENE_PRESETS,
    HardSceneStyle,
    SceneStyle,
    class_frequencies,
    load_mnist_5k,
    make_digit_scenes,
    render_hard_scene,
    split_source_digits,
)
from softsampling.errors import SoftSamplingError

TINY = {"train": 3, "val": 1, "test": 2}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hard") / "tiny"
    make_digit_scenes(out, seed=3, preset="hard", **TINY)
    return out


@pytest.fixture(scope="module")
def mnist_pool() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    images, labels = load_mnist_5k()
    return images, labels, split_source_digits(labels, seed=0)[0]


@pytest.fixture(scope="module")
def objects(mnist_pool) -> dict[str, np.ndarray]:
    """Digits of 200 scenes of the hard style without clutter, occluders and texture (to keep the test fast;
    those layers do not change how digits are drawn and placed): per-image counts, per-box classes and heights."""
    images, labels, pool = mnist_pool
    style = HardSceneStyle(clutter=(0, 0), occluders=(0, 0), texture_scales=())
    counts, classes, heights = [], [], []
    for i in range(200):
        _, boxes, digits, _ = render_hard_scene(np.random.default_rng([0, 1, i]), images, labels, pool, 160, style)
        counts.append(len(boxes))
        classes.append(digits)
        heights.append(boxes[:, 3] - boxes[:, 1])
    return {"counts": np.array(counts), "classes": np.concatenate(classes), "heights": np.concatenate(heights)}


# ------------------------------------------------------------------ guarantees


def test_same_arguments_give_byte_identical_files(tiny, tmp_path):
    again = tmp_path / "again"
    make_digit_scenes(again, seed=3, preset="hard", **TINY)
    first, second = _files(tiny), _files(again)
    assert len([n for n in first if n.endswith(".png")]) == 6
    assert first == second
    other = tmp_path / "other"
    make_digit_scenes(other, seed=4, preset="hard", **TINY)
    assert _files(other)["images/train/000001.png"] != first["images/train/000001.png"]


def test_hard_files_record_the_preset_and_pass_load_time_validation(tiny):
    info = json.loads((tiny / "annotations" / "train.json").read_text())["info"]
    assert info["arguments"] == {"train": 3, "val": 1, "test": 2, "size": 160, "seed": 3, "preset": "hard"}
    assert "hard digit scenes v1" in info["version"] and info["style"]["objects"] == [3, 30]
    for split, n in TINY.items():
        ds = read_coco(tiny / "annotations" / f"{split}.json", check_images=True)  # validates boxes and image sizes
        assert ds.num_images == n and len(ds.boxes) >= 3 * n
        assert (ds.boxes[:, 2:] <= 160).all() and (ds.boxes[:, :2] >= 0).all()
        with Image.open(tiny / "images" / split / "000001.png") as im:
            assert im.mode == "L" and im.size == (160, 160)


def test_classic_preset_is_the_default_and_styles_must_match_the_preset(tmp_path):
    assert SCENE_PRESETS["classic"].size == 128 and SCENE_PRESETS["classic"].style == SceneStyle()
    make_digit_scenes(tmp_path / "a", train=1, val=0, test=0, seed=2)
    make_digit_scenes(tmp_path / "b", train=1, val=0, test=0, seed=2, preset="classic", size=128, style=SceneStyle())
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert "preset" not in json.loads((tmp_path / "a" / "annotations" / "train.json").read_text())["info"]["arguments"]
    with pytest.raises(SoftSamplingError, match="unknown scene preset 'photo'"):
        make_digit_scenes(tmp_path / "c", preset="photo", **TINY)
    with pytest.raises(SoftSamplingError, match="needs a HardSceneStyle"):
        make_digit_scenes(tmp_path / "c", preset="hard", style=SceneStyle(), **TINY)
    assert not (tmp_path / "c").exists()


def test_cli_preset_hard(tmp_path, capsys):
    out = tmp_path / "d"
    assert (
        main(
            [
                "data",
                "digits",
                "--preset",
                "hard",
                "--out",
                str(out),
                "--train",
                "1",
                "--val",
                "0",
                "--test",
                "1",
                "--size",
                "96",
            ]
        )
        == 0
    )
    assert "| images | 1 | 0 | 1 | 2 |" in capsys.readouterr().out
    with Image.open(out / "images" / "train" / "000001.png") as im:
        assert im.size == (96, 96)
    with pytest.raises(SystemExit):
        main(["data", "digits", "--preset", "photo", "--out", str(tmp_path / "e")])


# ------------------------------------------------------------------ statistics (seed 0)


def test_objects_per_image_span_3_to_30_with_a_long_tail(objects):
    counts = objects["counts"]
    # drawn from P(n) ~ n^-1.5 on 3..30 (mean 8.8, median 6, 10% >= 20); a few crowded draws lose digits that
    # do not fit. Tolerances: about 3 standard errors of 200 draws (mean: +-1.4, share >= 20: +-0.06).
    assert counts.min() >= 3 and counts.max() <= 30
    assert counts.max() >= 25
    assert 7.0 <= counts.mean() <= 10.5
    assert 5 <= np.median(counts) <= 7
    assert 0.05 <= (counts >= 20).mean() <= 0.15  # the tail
    assert (counts <= 6).mean() >= 0.4  # most scenes are sparse


def test_digit_sizes_span_at_least_a_4x_range(objects):
    heights = objects["heights"]
    # ink heights log-uniform in 14-56 px (crowded scenes: smaller), +-2 px of rounding when a digit is scaled
    assert heights.max() <= 58 and heights.min() >= 12
    p2, p98 = np.percentile(heights, [2, 98])
    assert p98 / p2 >= 3.2 and heights.max() / np.percentile(heights, 1) >= 4.0
    assert (heights >= 40).mean() >= 0.1 and (heights <= 20).mean() >= 0.2  # both ends are common


def test_class_frequencies_are_zipf_like(objects):
    share = np.bincount(objects["classes"], minlength=10) / len(objects["classes"])
    expected = class_frequencies(1.0)
    assert np.abs(share - expected).max() <= 0.03  # ~1,900 boxes: standard error <= 0.011
    assert share[0] / share[9] >= 6  # expected 10
    ranks = np.log(np.arange(1, 11))
    slope = np.polyfit(ranks, np.log(share), 1)[0]  # Zipf: log share linear in log rank, slope -1
    assert -1.3 <= slope <= -0.7


def test_backgrounds_are_textured_and_brightness_varies(mnist_pool):
    images, labels, pool = mnist_pool
    style = HardSceneStyle()
    images = np.stack(
        [render_hard_scene(np.random.default_rng([0, 1, i]), images, labels, pool, 160, style)[0] for i in range(30)]
    ).astype(np.float64)
    low = np.percentile(images.reshape(len(images), -1), 10, axis=1)  # the background level of each scene
    assert low.std() >= 10 and low.max() - low.min() >= 50  # brightness jitter and gradients
    # not flat: the background texture varies at scales beyond the pixel noise (std 5)
    smooth = images[:, ::8, ::8]
    assert np.median(smooth.reshape(len(images), -1).std(axis=1)) >= 12


def test_occluders_hide_part_of_some_digits_and_boxes_are_visible_ink(mnist_pool):
    images, labels, pool = mnist_pool
    style = HardSceneStyle(clutter=(0, 0), texture_scales=())
    no_occluders = HardSceneStyle(clutter=(0, 0), texture_scales=(), occluders=(0, 0))
    shrunk = 0
    for i in range(40):
        _, occluded, _, _ = render_hard_scene(np.random.default_rng([0, 1, i]), images, labels, pool, 160, style)
        _, clean, _, _ = render_hard_scene(np.random.default_rng([0, 1, i]), images, labels, pool, 160, no_occluders)
        assert len(occluded) == len(clean)
        inside = (occluded[:, :2] >= clean[:, :2]).all() and (occluded[:, 2:] <= clean[:, 2:]).all()
        assert inside  # a visible box lies within the whole digit's box
        shrunk += int((occluded != clean).any(axis=1).sum())
    assert shrunk >= 5  # partial occlusion happens and changes boxes
