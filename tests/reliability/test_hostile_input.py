"""Hostile input: XML and YAML bombs, image paths escaping their folder, code-running pickles, pixel bombs.

Each attack is refused quickly with one clear line (exit 2) and has no effect:
no entity is expanded, no file outside the image folder is read, no pickled
code runs, no giant image is decoded, and no output is left behind.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from softsampling.data.coco import read_coco
from softsampling.errors import SoftSamplingError
from tests.conftest import REPO
from tests.reliability.helpers import BAD, assert_one_line_error, copy_bad, files_under, run_cli, save_tiny_run

TRAIN_1_STEP = [
    "--set",
    "data.val=null",
    "--set",
    "data.test=null",
    "--set",
    "train.iterations=1",
    "--set",
    "train.batch_size=1",
    "--set",
    "train.threads=1",
    "--no-progress",
]


# ------------------------------------------------------------------ XML and YAML bombs
@pytest.mark.parametrize("bad", ["voc_billion_laughs.xml", "voc_external_entity.xml"])
def test_xml_entity_attacks_are_refused_in_under_a_second(bad, tmp_path, capsys):
    voc = tmp_path / "VOC2007"
    copy_bad(bad, voc / "Annotations" / "000001.xml")
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "ImageSets" / "Main" / "trainval.txt").write_text("000001\n")
    started = time.perf_counter()
    code, _, err = run_cli(
        [
            "curate",
            "--input",
            voc,
            "--format",
            "voc",
            "--drop-rate",
            "0.5",
            "--seed",
            "0",
            "--out",
            tmp_path / "out" / "voc",
        ],
        capsys,
    )
    elapsed = time.perf_counter() - started
    assert_one_line_error(code, err, "curate", "000001.xml", "refused unsafe XML", "<!DOCTYPE")
    assert "root:" not in err  # nothing of /etc/passwd was read into the message
    assert elapsed < 1.0
    assert files_under(tmp_path / "out") == []


def test_yaml_alias_bomb_config_is_refused_in_under_a_second(tmp_path, capsys):
    # nine levels of 9 aliases each: 9**9 = 387 million strings if expanded
    lines = ["strategy_params:", "  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    code, _, err = run_cli(["train", "--config", cfg, "--out", tmp_path / "out" / "run"], capsys)
    assert time.perf_counter() - started < 1.0
    assert_one_line_error(code, err, "train", "bomb.yaml", "line 3", "YAML alias (*a0) refused")
    assert files_under(tmp_path / "out") == []


# ------------------------------------------------------------------ images outside the image folder
@pytest.fixture
def coco_tree(tmp_path) -> Path:
    """root/annotations/train.json + root/images/train/a.png, and root/secret.png outside the image folder."""
    root = tmp_path / "data"
    copy_bad("img_good.png", root / "images" / "train" / "a.png")
    copy_bad("img_good.png", root / "secret.png")
    (root / "annotations").mkdir()
    return root


def write_coco(root: Path, file_name: str, width: int = 64, height: int = 48) -> Path:
    doc = {
        "images": [{"id": 1, "file_name": file_name, "width": width, "height": height}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 20], "iscrowd": 0}],
        "categories": [{"id": 1, "name": "cat"}],
    }
    path = root / "annotations" / "train.json"
    path.write_text(json.dumps(doc))
    return path


def train_argv(annotations: Path, out: Path, *extra: str) -> list:
    return [
        "train",
        "--config",
        REPO / "configs" / "digits.yaml",
        "--out",
        out,
        "--set",
        f"data.train={annotations}",
        *TRAIN_1_STEP,
        *extra,
    ]


ESCAPES = {
    "dot_dot": ("../../secret.png", "leaves the image folder"),
    "absolute": ("ABSOLUTE", "is absolute"),
    "symlink_out": ("link.png", "leaves the image folder"),
}


@pytest.mark.parametrize("kind", list(ESCAPES))
def test_train_refuses_images_outside_the_root(kind, coco_tree, tmp_path, capsys):
    file_name, problem = ESCAPES[kind]
    if kind == "absolute":
        file_name = str(coco_tree / "secret.png")
    if kind == "symlink_out":
        os.symlink("../../secret.png", coco_tree / "images" / "train" / "link.png")
    annotations = write_coco(coco_tree, file_name)
    out = tmp_path / "out" / "run"
    code, _, err = run_cli(train_argv(annotations, out), capsys)
    assert_one_line_error(code, err, "train", "train.json", "image id 1", problem, "--allow-outside-root")
    assert not out.exists(), "bad data must not leave a run folder behind"


@pytest.mark.slow
def test_allow_outside_root_lets_training_read_them(coco_tree, tmp_path, capsys):
    os.symlink("../../secret.png", coco_tree / "images" / "train" / "link.png")
    annotations = write_coco(coco_tree, "link.png")
    out = tmp_path / "run"
    code, _, err = run_cli(train_argv(annotations, out, "--allow-outside-root"), capsys)
    assert code == 0, err
    assert (out / "model.pt").exists()


def test_a_path_inside_the_root_is_fine_and_the_library_checks_the_same(coco_tree):
    annotations = write_coco(coco_tree, "a.png")
    ds = read_coco(annotations, check_images=True)
    assert ds.file_names == ["a.png"]
    write_coco(coco_tree, "../../secret.png")
    with pytest.raises(SoftSamplingError, match="leaves the image folder"):
        read_coco(annotations, check_images=True)
    assert read_coco(annotations, check_images=True, allow_outside_root=True).num_images == 1


# image files that training must refuse before it creates anything
TRAIN_IMAGES = {
    "missing": (None, "image file not found"),
    "empty": ("img_empty.png", "cannot read image"),
    "not_an_image": ("img_not_an_image.png", "cannot read image"),
    "decompression_bomb": ("img_bomb_100000x100000.png", "decompression bomb"),
    "size_disagrees": ("img_good.png", "the annotation says the image is 60x48"),
}


@pytest.mark.parametrize("case", list(TRAIN_IMAGES))
def test_train_checks_every_image_before_it_starts(case, coco_tree, tmp_path, capsys):
    bad, problem = TRAIN_IMAGES[case]
    if bad is not None:
        copy_bad(bad, coco_tree / "images" / "train" / "b.png")
    annotations = write_coco(coco_tree, "b.png", width=60 if case == "size_disagrees" else 64)
    out = tmp_path / "out" / "run"
    started = time.perf_counter()
    code, _, err = run_cli(train_argv(annotations, out), capsys)
    assert_one_line_error(code, err, "train", "train.json", "image id 1", problem)
    assert time.perf_counter() - started < 5.0  # the bomb is refused from its header, not decoded
    assert not out.exists()


def test_pixel_limit_is_configurable(coco_tree):
    annotations = write_coco(coco_tree, "a.png")
    with pytest.raises(SoftSamplingError, match=r"64x48 = 3,072 pixels, more than the limit of 3,000"):
        read_coco(annotations, check_images=True, max_pixels=3000)
    assert read_coco(annotations, check_images=True, max_pixels=3072).num_images == 1


# ------------------------------------------------------------------ checkpoints that would run code
class _TouchOnLoad:
    """Unpickling this calls open(marker, "w"): it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def evil_run(tmp_path) -> tuple[Path, Path]:
    run = save_tiny_run(tmp_path / "evil_run")
    marker = tmp_path / "pwned.txt"
    state = torch.load(run / "model.pt", weights_only=True)
    state["model"]["payload"] = _TouchOnLoad(marker)
    torch.save(state, run / "model.pt")
    torch.save({"iteration": 1, "payload": _TouchOnLoad(marker)}, run / "last.pt")
    assert not marker.exists()
    return run, marker


def test_predict_refuses_a_pickle_that_would_run_code(evil_run, tmp_path, capsys):
    run, marker = evil_run
    code, _, err = run_cli(
        ["predict", "--run", run, "--images", BAD / "img_good.png", "--out", tmp_path / "out"], capsys
    )
    assert_one_line_error(code, err, "predict", "model.pt", "refusing to load", "other than tensors")
    assert not marker.exists(), "the pickled code ran"
    assert files_under(tmp_path / "out") == []


def test_evaluate_and_resume_refuse_it_too(evil_run, tmp_path, capsys):
    run, marker = evil_run
    code, _, err = run_cli(["evaluate", "--run", run, "--split", "test", "--out", tmp_path / "out" / "r.json"], capsys)
    assert_one_line_error(code, err, "evaluate", "model.pt", "refusing to load")
    from softsampling.engine.checkpoint import load_checkpoint

    with pytest.raises(SoftSamplingError, match="refusing to load"):
        load_checkpoint(run / "last.pt")
    assert not marker.exists()
    assert files_under(tmp_path / "out") == []
