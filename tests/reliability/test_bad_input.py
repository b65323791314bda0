"""The malformed-input corpus (tests/data/bad/): every case is one clear line, exit 2, nothing written.

Each case places one defective file from the corpus into an otherwise valid
input, runs the command that reads it through ``softsampling.cli.main``, and
checks: exit status 2; exactly one line on stderr, ``softsampling CMD: error:
...``, naming the file, the record (line, index, id or object) and a fix; no
Python traceback; and no file left in the output folder (temp files included).
``--debug`` turns the same failure into the traceback.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from softsampling.errors import SoftSamplingError
from tests.reliability.helpers import BAD, assert_one_line_error, copy_bad, files_under, run_cli, save_tiny_run

CURATE = ["--drop-rate", "0.5", "--seed", "0"]


# ------------------------------------------------------------------ how each family is run
def coco_case(tmp: Path, bad: str) -> tuple[str, list]:
    src = copy_bad(bad, tmp / "in")
    return "curate", ["curate", "--input", src, "--format", "coco", *CURATE, "--out", tmp / "out" / "curated.json"]


def voc_case(tmp: Path, bad: str) -> tuple[str, list]:
    """A VOC2007 folder: 000001.xml is good, the bad file is 000002.xml (or the split file)."""
    voc = tmp / "in" / "VOC2007"
    copy_bad("voc_good.xml", voc / "Annotations" / "000001.xml")
    split = voc / "ImageSets" / "Main" / "trainval.txt"
    split.parent.mkdir(parents=True)
    if bad.endswith(".txt"):
        copy_bad("voc_good.xml", voc / "Annotations" / "000002.xml")
        copy_bad(bad, split)
    else:
        copy_bad(bad, voc / "Annotations" / "000002.xml")
        split.write_text("000001\n000002\n")
    return "curate", ["curate", "--input", voc, "--format", "voc", *CURATE, "--out", tmp / "out" / "voc"]


def oi_case(tmp: Path, bad: str) -> tuple[str, list]:
    src = copy_bad(bad, tmp / "in")
    return "curate", [
        "curate",
        "--input",
        src,
        "--format",
        "openimages",
        "--classes",
        BAD / "oi_classes.csv",
        "--sizes",
        BAD / "oi_sizes.csv",
        *CURATE,
        "--out",
        tmp / "out" / "curated.csv",
    ]


def txt_gt_case(tmp: Path, bad: str) -> tuple[str, list]:
    """Ground truth a.txt (good) and b.txt (bad); one detection file."""
    copy_bad("txt_gt_good.txt", tmp / "in" / "gt" / "a.txt")
    copy_bad(bad, tmp / "in" / "gt" / "b.txt")
    (tmp / "in" / "det").mkdir()
    (tmp / "in" / "det" / "a.txt").write_text("cat 0.9 5 5 14 14\n")
    return "evaluate", [
        "evaluate",
        "--gt",
        tmp / "in" / "gt",
        "--gt-format",
        "txt",
        "--detections",
        tmp / "in" / "det",
        "--out",
        tmp / "out" / "results.json",
    ]


def txt_det_case(tmp: Path, bad: str) -> tuple[str, list]:
    """Good ground truth a.txt and b.txt; the bad file is the detections of b."""
    copy_bad("txt_gt_good.txt", tmp / "in" / "gt" / "a.txt")
    copy_bad("txt_gt_good.txt", tmp / "in" / "gt" / "b.txt")
    copy_bad(bad, tmp / "in" / "det" / "b.txt")
    return "evaluate", [
        "evaluate",
        "--gt",
        tmp / "in" / "gt",
        "--gt-format",
        "txt",
        "--detections",
        tmp / "in" / "det",
        "--out",
        tmp / "out" / "results.json",
    ]


def det_case(tmp: Path, bad: str) -> tuple[str, list]:
    src = copy_bad(bad, tmp / "in")
    return "evaluate", [
        "evaluate",
        "--gt",
        BAD / "coco_good.json",
        "--gt-format",
        "coco",
        "--detections",
        src,
        "--metric",
        "voc",
        "--out",
        tmp / "out" / "results.json",
        "--plot",
        tmp / "out" / "sweep.png",
    ]


def oi_eval_case(tmp: Path, bad: str) -> tuple[str, list]:
    """Detections (in pixels) against Open Images ground truth read without image sizes."""
    src = copy_bad(bad, tmp / "in")
    return "evaluate", [
        "evaluate",
        "--gt",
        BAD / "oi_good.csv",
        "--gt-format",
        "openimages",
        "--classes",
        BAD / "oi_classes.csv",
        "--detections",
        src,
        "--metric",
        "openimages",
        "--out",
        tmp / "out" / "results.json",
    ]


def cfg_case(tmp: Path, bad: str) -> tuple[str, list]:
    src = copy_bad(bad, tmp / "in")
    return "train", ["train", "--config", src, "--out", tmp / "out" / "run", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return save_tiny_run(tmp_path_factory.mktemp("run") / "run")


def image_case(tmp: Path, bad: str, run: Path) -> tuple[str, list]:
    src = copy_bad(bad, tmp / "in")
    return "predict", ["predict", "--run", run, "--images", src, "--out", tmp / "out" / "preds"]


FAMILIES: dict[str, Callable[[Path, str], tuple[str, list]]] = {
    "coco": coco_case,
    "voc": voc_case,
    "oi": oi_case,
    "txt_gt": txt_gt_case,
    "txt_det": txt_det_case,
    "det": det_case,
    "cfg": cfg_case,
    "oi_eval": oi_eval_case,
}

# (corpus file, family, texts the error line must contain besides the file name: the record and the problem)
CASES: list[tuple[str, str, tuple[str, ...]]] = [
    # COCO instances JSON
    ("coco_truncated.json", "coco", ("invalid JSON", "line 27")),
    ("coco_empty.json", "coco", ("empty file (0 bytes)",)),
    ("coco_top_level_array.json", "coco", ("top level is a JSON array",)),
    ("coco_missing_annotations_key.json", "coco", ("missing top-level key 'annotations'",)),
    ("coco_bbox_is_string.json", "coco", ("annotation id 2", "'bbox'")),
    ("coco_bbox_three_numbers.json", "coco", ("annotation id 2", "list of 4 numbers")),
    ("coco_missing_category_id.json", "coco", ("annotation id 2", "missing required key 'category_id'")),
    ("coco_negative_width_box.json", "coco", ("annotation id 2", "box is empty")),
    ("coco_nan_box.json", "coco", ("annotation id 2", "NaN")),
    ("coco_negative_image_size.json", "coco", ("image id 2", "must be positive")),
    ("coco_fractional_image_size.json", "coco", ("image id 2", "whole number")),
    ("coco_box_far_outside.json", "coco", ("annotation id 2", "outside the image")),
    ("coco_unknown_category_id.json", "coco", ("annotation id 2", "category_id 99")),
    ("coco_unknown_image_id.json", "coco", ("annotation id 2", "image_id 7")),
    ("coco_duplicate_annotation_id.json", "coco", ("duplicate annotation id 1", "entry 1")),
    ("coco_duplicate_image_id.json", "coco", ("duplicate image id 1", "entry 1")),
    ("coco_iscrowd_is_string.json", "coco", ("annotation id 2", "'iscrowd'")),
    ("coco_huge_box_1e308.json", "coco", ("annotation id 2", "NaN or infinite")),
    ("coco_id_beyond_int64.json", "coco", ("annotations[1]", "64-bit")),
    ("coco_image_id_beyond_int64.json", "coco", ("images[1]", "64-bit integer")),
    ("coco_latin1.json", "coco", ("not UTF-8", "line 49")),
    ("coco_deep_nesting.json", "coco", ("nests deeper than 100 levels",)),
    ("coco_image_width_2_pow_70.json", "coco", ("image id 2", "'width'", "at most 2,147,483,647")),
    ("coco_category_id_1e309.json", "coco", ("annotation id 2", "'category_id'", "expected an integer")),
    ("coco_name_lone_surrogate.json", "coco", ("category id 2", "lone surrogate")),
    # Pascal VOC XML (the bad file is Annotations/000002.xml)
    ("voc_truncated.xml", "voc", ("000002.xml", "invalid XML", "line 6")),
    ("voc_wrong_root.xml", "voc", ("000002.xml", "root element is <html>")),
    ("voc_missing_size.xml", "voc", ("000002.xml", "missing <size>")),
    ("voc_negative_size.xml", "voc", ("000002.xml", "<size>", "must be positive")),
    ("voc_size_beyond_int64.xml", "voc", ("000002.xml", "<size><width>", "expected a whole number")),
    ("voc_missing_bndbox.xml", "voc", ("000002.xml", "object 1 ('dog')", "missing <bndbox>")),
    ("voc_coordinate_not_a_number.xml", "voc", ("000002.xml", "object 1 ('dog')", "'eleven'")),
    ("voc_xmax_before_xmin.xml", "voc", ("000002.xml", "object 1 ('dog')", "box is empty")),
    ("voc_nan_coordinate.xml", "voc", ("000002.xml", "object 1 ('dog')", "NaN")),
    ("voc_box_far_outside.xml", "voc", ("000002.xml", "object 1 ('dog')", "outside the image")),
    ("voc_difficult_not_a_flag.xml", "voc", ("000002.xml", "object 1 ('dog')", "<difficult> is 'yes'")),
    ("voc_missing_name.xml", "voc", ("000002.xml", "object 1", "<name>")),
    ("voc_latin1.xml", "voc", ("000002.xml", "invalid XML", "line 7")),
    ("voc_billion_laughs.xml", "voc", ("000002.xml", "refused unsafe XML")),
    ("voc_external_entity.xml", "voc", ("000002.xml", "refused unsafe XML")),
    ("voc_deep_nesting.xml", "voc", ("000002.xml", "nests deeper than 100 levels")),
    ("voc_split_duplicate.txt", "voc", ("trainval.txt", "line 3", "listed twice")),
    ("voc_split_path_traversal.txt", "voc", ("trainval.txt", "line 2", "not a plain file name")),
    # Open Images CSV
    ("oi_truncated.csv", "oi", ("line 3",)),
    ("oi_missing_column.csv", "oi", ("line 1", "XMax")),
    ("oi_too_few_fields.csv", "oi", ("line 3",)),
    ("oi_coordinate_not_a_number.csv", "oi", ("line 3", "'half'")),
    ("oi_xmax_before_xmin.csv", "oi", ("line 3", "box is empty")),
    ("oi_nan_coordinate.csv", "oi", ("line 3",)),
    ("oi_box_far_outside.csv", "oi", ("line 3", "outside the image")),
    ("oi_huge_1e308.csv", "oi", ("line 3",)),
    ("oi_unknown_label.csv", "oi", ("line 3", "/m/unicorn")),
    ("oi_flag_not_binary.csv", "oi", ("line 3", "IsGroupOf")),
    ("oi_latin1_image_id.csv", "oi", ("line 3", "UTF-8")),
    ("oi_utf16.csv", "oi", ("line 1",)),
    ("oi_image_without_size.csv", "oi", ("oi_sizes.csv", "line 3", "img3")),
    ("oi_nul_in_image_id.csv", "oi", ("line 3", "control character 0x00")),
    ("oi_fullwidth_digit.csv", "oi", ("line 3", "XMax is not a number")),
    ("oi_long_field.csv", "oi", ("line 3", "Source is 300 bytes long")),
    ("oi_det_pixels_without_sizes.csv", "oi_eval", ("normalised coordinates", "in pixels", "--sizes")),
    # txt layout: ground truth (b.txt) and detections (b.txt)
    ("txt_gt_four_fields.txt", "txt_gt", ("b.txt", "line 2", "got 4 fields")),
    ("txt_gt_right_before_left.txt", "txt_gt", ("b.txt", "line 2", "right < left")),
    ("txt_gt_nan.txt", "txt_gt", ("b.txt", "line 2", "'nan'")),
    ("txt_gt_huge_1e999.txt", "txt_gt", ("b.txt", "line 2", "'1e999'")),
    ("txt_gt_latin1.txt", "txt_gt", ("b.txt", "line 2", "UTF-8")),
    ("txt_det_score_not_a_number.txt", "txt_det", ("b.txt", "line 2", "'high'")),
    ("txt_det_five_fields.txt", "txt_det", ("b.txt", "line 1", "got 5 fields")),
    # detection files against coco_good.json
    ("det_truncated.json", "det", ("invalid JSON", "line 12")),
    ("det_not_a_list.json", "det", ("must be a JSON list",)),
    ("det_missing_score.json", "det", ("entry 1", "'score'")),
    ("det_score_is_string.json", "det", ("entry 1", "'high'")),
    ("det_unknown_image.json", "det", ("entry 1", "image 42")),
    ("det_image_id_beyond_int64.json", "det", ("entry 1", "not in the ground truth")),
    ("det_nan_score.json", "det", ("entry 1", "NaN")),
    ("det_negative_width.json", "det", ("entry 1", "negative width")),
    ("det_all_unknown_categories.json", "det", ("none of the detections", "99")),
    ("det_latin1.json", "det", ("not UTF-8", "line 23")),
    ("det_missing_column.csv", "det", ("line 1", "ymax")),
    ("det_coordinate_not_a_number.csv", "det", ("line 3", "'ten'")),
    ("det_unknown_image.csv", "det", ("line 3", "'z.png'")),
    ("det_short_line.csv", "det", ("line 3", "got 3")),
    ("det_huge_inf.csv", "det", ("line 3", "NaN or infinite")),
    ("det_utf16.csv", "det", ("line 1", "UTF-8")),
    ("det_unterminated_quote.csv", "det", ("line 3", "bad CSV quoting")),
    ("det_fullwidth_digit.csv", "det", ("line 3", "must be numbers")),
    ("det_category_id_fraction.json", "det", ("entry 1", "'category_id' must be a whole number, got 1.7")),
    ("det_bbox_digit_string.json", "det", ("entry 1", "'bbox' must be a list of 4 numbers", "'2088'")),
    ("det_score_is_true.json", "det", ("entry 1", "'score' must be a number, got true")),
    ("det_id_and_file_name_disagree.json", "det", ("entry 0", "image_id 0 and file_name 'a.png'")),
    ("det_normalised_boxes.json", "det", ("within [0, 1]", "look normalised")),
    ("det_deep_nesting.json", "det", ("nests deeper than 100 levels",)),
    # training configs
    ("cfg_invalid_yaml.yaml", "cfg", ("invalid YAML", "line 4")),
    ("cfg_not_a_mapping.yaml", "cfg", ("YAML mapping",)),
    ("cfg_unknown_key.yaml", "cfg", ("unknown config key 'trian'",)),
    ("cfg_iterations_not_integer.yaml", "cfg", ("train.iterations", "'many'")),
    ("cfg_unknown_strategy.yaml", "cfg", ("strategy", "'softest'")),
    ("cfg_data_not_a_mapping.yaml", "cfg", ("'data' must be a mapping",)),
    ("cfg_negative_lr.yaml", "cfg", ("train.lr",)),
    ("cfg_latin1.yaml", "cfg", ("UTF-8", "line 1")),
    ("cfg_score_soft_without_prior.yaml", "cfg", ("prior_run",)),
    ("cfg_deep_nesting.yaml", "cfg", ("nests deeper than 100 levels", "line 3")),
    ("cfg_seed_negative.yaml", "cfg", ("config seed", "in [0, 4294967295]", "-1")),
    ("cfg_seed_fractional.yaml", "cfg", ("config seed", "whole number", "1.5")),
    ("cfg_threads_negative.yaml", "cfg", ("train.threads", "in [1, 4096]", "-1")),
    ("cfg_momentum_negative.yaml", "cfg", ("train.momentum", "in [0, 1)", "-1")),
    ("cfg_warmup_not_a_number.yaml", "cfg", ("train.warmup_iterations", "whole number", "'abc'")),
    ("cfg_min_size_not_a_number.yaml", "cfg", ("model.min_size", "whole number or null", "'abc'")),
    ("cfg_data_train_is_a_list.yaml", "cfg", ("data.train", "must be text", "['a', 'b']")),
    ("cfg_iterations_beyond_int64.yaml", "cfg", ("train.iterations", "out of range")),
    ("cfg_lr_nan.yaml", "cfg", ("train.lr", "finite number", "nan")),
    ("cfg_strategy_param_not_taken.yaml", "cfg", ("config strategy", "'baseline'", "['a']", "it accepts")),
    ("cfg_strategy_param_not_a_number.yaml", "cfg", ("strategy_params", "a must be a finite number", "'high'")),
    ("cfg_model_option_unknown.yaml", "cfg", ("model.options", "rpn_post_nms_top_n_trian", "rpn_post_nms_top_n_train")),
    ("cfg_model_option_not_a_number.yaml", "cfg", ("model.options.box_score_thresh", "finite number")),
    ("cfg_deterministic_not_a_flag.yaml", "cfg", ("train.deterministic", "true or false", "3")),
    ("cfg_head_norm_unknown.yaml", "cfg", ("model.options.head_norm", "none, group", "'batch'")),
]

# images given to `predict --images` (the run is an untrained model saved by the fixture)
IMAGE_CASES: list[tuple[str, tuple[str, ...]]] = [
    ("img_empty.png", ("empty file (0 bytes)", "--images")),
    ("img_truncated.png", ("cannot read image", "truncated")),
    ("img_not_an_image.png", ("cannot read image",)),
    ("img_bomb_100000x100000.png", ("too large", "decompression bomb")),
]


def test_the_corpus_has_at_least_30_cases_over_every_family():
    files = {name for name, _, _ in CASES} | {name for name, _ in IMAGE_CASES}
    assert len(files) >= 30
    on_disk = {p.name for p in BAD.iterdir() if p.suffix != ".py" and "_good" not in p.name}
    assert files <= on_disk
    helpers = {"oi_classes.csv", "oi_sizes.csv"}  # oi_good.csv, like every *_good file, is left out above
    assert on_disk - files == helpers, "every corpus file is used by a case"
    assert {fam for _, fam, _ in CASES} == set(FAMILIES)


@pytest.mark.parametrize(("bad", "family", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_file_is_one_clear_line_and_leaves_nothing(bad, family, expected, tmp_path, capsys):
    command, argv = FAMILIES[family](tmp_path, bad)
    code, out, err = run_cli(argv, capsys)
    shown_file = bad if family not in ("voc", "txt_gt", "txt_det") else ""
    assert_one_line_error(code, err, command, shown_file, *expected)
    assert files_under(tmp_path / "out") == []


@pytest.mark.parametrize(("bad", "expected"), IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_bad_image_is_one_clear_line_and_leaves_nothing(bad, expected, tiny_run, tmp_path, capsys):
    command, argv = image_case(tmp_path, bad, tiny_run)
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, command, bad, *expected)
    assert files_under(tmp_path / "out") == []


def test_missing_image_is_one_clear_line(tiny_run, tmp_path, capsys):
    code, _, err = run_cli(
        ["predict", "--run", tiny_run, "--images", tmp_path / "nowhere.png", "--out", tmp_path / "out"], capsys
    )
    assert_one_line_error(code, err, "predict", "nowhere.png", "does not exist")
    assert files_under(tmp_path / "out") == []


def test_debug_shows_the_traceback_instead(tmp_path):
    _, argv = coco_case(tmp_path, "coco_unknown_category_id.json")
    from softsampling.cli import main

    with pytest.raises(SoftSamplingError, match="category_id 99"):
        main(["--debug", *map(str, argv)])
    assert files_under(tmp_path / "out") == []


# ------------------------------------------------------------------ bad command-line arguments
def _args_cases(tmp: Path) -> list[tuple[str, list, tuple[str, ...]]]:
    good = BAD / "coco_good.json"
    out = tmp / "out"
    return [
        (
            "curate",
            [
                "curate",
                "--input",
                good,
                "--format",
                "coco",
                "--drop-rate",
                "1.5",
                "--seed",
                "0",
                "--out",
                out / "c.json",
            ],
            ("drop rate must be a number in [0, 1]",),
        ),
        (
            "curate",
            [
                "curate",
                "--input",
                good,
                "--format",
                "coco",
                "--drop-rate",
                "nan",
                "--seed",
                "0",
                "--out",
                out / "c.json",
            ],
            ("drop rate",),
        ),
        (
            "curate",
            [
                "curate",
                "--input",
                good,
                "--format",
                "coco",
                "--preset",
                "easy",
                "--drop-rate",
                "0.3",
                "--seed",
                "0",
                "--out",
                out / "c.json",
            ],
            ("takes no drop rate",),
        ),
        (
            "curate",
            [
                "curate",
                "--input",
                good,
                "--format",
                "coco",
                "--drop-rate",
                "0.3",
                "--seed",
                "-1",
                "--out",
                out / "c.json",
            ],
            ("seed must be >= 0",),
        ),
        (
            "curate",
            [
                "curate",
                "--input",
                tmp / "missing.json",
                "--format",
                "coco",
                "--drop-rate",
                "0.3",
                "--seed",
                "0",
                "--out",
                out / "c.json",
            ],
            ("missing.json", "does not exist", "--input"),
        ),
        (
            "curate",
            [
                "curate",
                "--input",
                good,
                "--format",
                "coco",
                "--classes",
                good,
                "--drop-rate",
                "0.3",
                "--seed",
                "0",
                "--out",
                out / "c.json",
            ],
            ("--classes does not apply",),
        ),
        (
            "curate",
            ["curate", "--input", good, "--format", "coco", "--drop-rate", "0.3", "--seed", "0", "--out", good],
            ("coco_good.json", "would overwrite an input file"),
        ),
        (
            "evaluate",
            [
                "evaluate",
                "--gt",
                good,
                "--gt-format",
                "coco",
                "--detections",
                BAD / "det_good.json",
                "--iou",
                "1.5",
                "--out",
                out / "r.json",
            ],
            ("--iou",),
        ),
        (
            "evaluate",
            [
                "evaluate",
                "--gt",
                good,
                "--gt-format",
                "coco",
                "--detections",
                BAD / "det_good.json",
                "--score-thresholds",
                "a:b",
                "--out",
                out / "r.json",
            ],
            ("a:b",),
        ),
        (
            "evaluate",
            [
                "evaluate",
                "--gt",
                good,
                "--gt-format",
                "coco",
                "--detections",
                BAD / "det_good.json",
                "--score-thresholds",
                "0:1:1e-7",
                "--out",
                out / "r.json",
            ],
            ("10000001 thresholds", "1001"),
        ),
        ("evaluate", ["evaluate", "--gt", good, "--out", out / "r.json"], ("missing inputs",)),
        (
            "evaluate",
            [
                "evaluate",
                "--gt",
                good,
                "--gt-format",
                "coco",
                "--detections",
                BAD / "det_good.json",
                "--metric",
                "coco",
                "--iou",
                "0.5",
                "--out",
                out / "r.json",
            ],
            ("fixed IoU",),
        ),
        ("train", ["train", "--out", out / "run", "--set", "train.lr"], ("bad --set 'train.lr'",)),
        ("train", ["train", "--out", out / "run", "--set", "train.lrate=0.1"], ("unknown config key 'train.lrate'",)),
        ("train", ["train", "--out", out / "run", "--set", "train.batch_size=0"], ("train.batch_size",)),
        ("train", ["train", "--out", out / "run", "--set", "data.train="], ("no training data",)),
        (
            "train",
            ["train", "--out", out / "run", "--set", f"data.train={tmp / 'none.json'}"],
            ("none.json", "does not exist"),
        ),
        ("train", ["train", "--out", out / "run", "--resume"], ("nothing to resume",)),
        (
            "predict",
            ["predict", "--run", tmp / "norun", "--images", BAD / "img_good.png", "--out", out / "p"],
            ("model.pt", "checkpoint not found"),
        ),
        (
            "calibrate",
            ["calibrate", "--run", tmp / "norun", "--criterion", "precision=2", "--out", out / "t.json"],
            ("precision=2",),
        ),
        ("reproduce", ["reproduce", "--seeds", "0,x", "--out", out / "repro", "--dry-run"], ("--seeds",)),
        ("data", ["data", "digits", "--out", out / "digits", "--size", "8"], ("--size is 8",)),
        ("data", ["data", "digits", "--out", out / "digits", "--train", "-1"], ("--train is -1",)),
        (
            "train",
            ["train", "--out", out / "run", "--set", "train.warmup_iterations=abc"],
            ("train.warmup_iterations", "whole number", "'abc'"),
        ),
        ("train", ["train", "--out", out / "run", "--set", "model.min_size=abc"], ("model.min_size", "'abc'")),
        ("train", ["train", "--out", out / "run", "--set", "seed=1.5"], ("config seed", "1.5")),
        ("train", ["train", "--out", out / "run", "--set", "train.threads=-1"], ("train.threads",)),
        (
            "train",
            ["train", "--out", out / "run", "--set", "strategy=hard_negative", "--set", "strategy_params.a=0.3"],
            ("'hard_negative'", "['a']", "min_overlap"),
        ),
        (
            "train",
            ["train", "--out", out / "run", "--set", "strategy_params.thresholds=0.5"],
            ("'thresholds' is set by the engine",),
        ),
        ("train", ["train", "--out", out / "run", "--set", "model.options.nope=1"], ("unknown option(s) ['nope']",)),
        (
            "train",
            ["train", "--out", out / "run", "--set", "nosuch=1"],
            ("unknown config key 'nosuch'", "valid keys here:", "strategy_params"),
        ),
        ("train", ["train", "--out", out / "run", "--set", "train.lrate=0.1"], ("valid keys here:", "train.lr,")),
        ("train", ["train", "--out", out / "run", "--allow-config-change"], ("only with --resume",)),
        (
            "predict",
            [
                "predict",
                "--run",
                tmp / "norun",
                "--images",
                BAD / "img_good.png",
                "--out",
                out / "p",
                "--device",
                "gpu",
            ],
            ("unknown device 'gpu'",),
        ),
        (
            "calibrate",
            ["calibrate", "--run", tmp / "norun", "--default-threshold", "nan", "--out", out / "t.json"],
            ("--default-threshold", "nan"),
        ),
        ("reproduce", ["reproduce", "--out", good, "--dry-run"], ("coco_good.json", "not a folder")),
    ]


def test_bad_arguments_are_one_clear_line_and_leave_nothing(tmp_path, capsys):
    cases = _args_cases(tmp_path)
    for command, argv, expected in cases:
        code, _, err = run_cli(argv, capsys)
        assert_one_line_error(code, err, command, *expected)
        leftovers = files_under(tmp_path / "out")
        assert leftovers == [], (argv, leftovers)
        shutil.rmtree(tmp_path / "out", ignore_errors=True)
    assert len(cases) >= 20


# ------------------------------------------------------------------ the real process: stderr is one line
@pytest.mark.parametrize(
    ("bad", "family"), [("coco_huge_box_1e308.json", "coco"), ("oi_huge_1e308.csv", "oi"), ("det_utf16.csv", "det")]
)
def test_as_a_process_stderr_is_exactly_one_line_and_debug_shows_the_traceback(bad, family, tmp_path):
    """In-process tests capture Python warnings; a real process would print them (e.g. numpy overflow)."""
    command, argv = FAMILIES[family](tmp_path, bad)
    cli = [sys.executable, "-m", "softsampling.cli"]
    proc = subprocess.run([*cli, *map(str, argv)], capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc.returncode, proc.stderr, command, bad)
    assert proc.stdout == ""
    debug = subprocess.run([*cli, "--debug", *map(str, argv)], capture_output=True, text=True, timeout=120)
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.rstrip().split("\n")[-1].startswith("softsampling.errors.SoftSamplingError: ")
    assert files_under(tmp_path / "out") == []


# ------------------------------------------------------------------ leniency: --skip-invalid, counted
def _coco_with_bad_boxes(path: Path, n_bad: int) -> None:
    """Two good boxes and ``n_bad`` bad ones (ids 101...: NaN, empty, far outside, in turn)."""
    doc = json.loads((BAD / "coco_good.json").read_text())
    kinds = [[1, float("nan"), 5, 5], [10, 10, -3, 5], [900, 10, 5, 5]]
    for k in range(n_bad):
        doc["annotations"].append(
            {"id": 101 + k, "image_id": 1 + k % 2, "category_id": 1, "bbox": kinds[k % 3], "iscrowd": 0}
        )
    path.write_text(json.dumps(doc))


def test_skip_invalid_curates_the_rest_and_reports_how_many_and_which(tmp_path, capsys):
    src = tmp_path / "seven_bad.json"
    _coco_with_bad_boxes(src, 7)
    out = tmp_path / "out" / "curated.json"
    code, _, err = run_cli(["curate", "--input", src, "--format", "coco", *CURATE, "--out", out], capsys)
    assert_one_line_error(code, err, "curate", "seven_bad.json", "annotation id 101", "(6 more bad box(es)")
    assert files_under(tmp_path / "out") == []

    code, stdout, err = run_cli(
        ["curate", "--input", src, "--format", "coco", *CURATE, "--out", out, "--skip-invalid"], capsys
    )
    assert code == 0, err
    first = stdout.splitlines()[0]
    assert first.startswith("input: skipped 7 invalid box(es) (e.g. ")
    assert [f"annotation id {i}" in first for i in range(101, 108)] == [True] * 5 + [False] * 2  # first five named
    kept = json.loads(out.read_text())["annotations"]
    manifest = json.loads(out.with_name("curated.manifest.json").read_text())
    # the two good boxes remain (each is alone in its image, so curation keeps it); no bad box survives
    assert [a["id"] for a in kept] == [1, 2] and manifest["dropped"]["box_ids"] == []
    # the alias is exactly --invalid skip: same bytes
    code, _, _ = run_cli(
        ["curate", "--input", src, "--format", "coco", *CURATE, "--out", tmp_path / "same.json", "--invalid", "skip"],
        capsys,
    )
    assert code == 0 and (tmp_path / "same.json").read_bytes() == out.read_bytes()


def test_skip_invalid_in_evaluate_notes_the_skipped_ground_truth(tmp_path, capsys):
    gt = tmp_path / "gt.json"
    _coco_with_bad_boxes(gt, 2)
    argv = [
        "evaluate",
        "--gt",
        gt,
        "--gt-format",
        "coco",
        "--detections",
        BAD / "det_good.json",
        "--out",
        tmp_path / "out" / "r.json",
    ]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "evaluate", "gt.json", "annotation id 101")
    code, stdout, err = run_cli([*argv, "--skip-invalid"], capsys)
    assert code == 0, err
    assert "note: ground truth: skipped 2 invalid box(es) (e.g. " in err
    assert "annotation id 101" in err and "annotation id 102" in err
    result = json.loads((tmp_path / "out" / "r.json").read_text())
    assert result["num_gt_boxes"] == 2 and result["result"]["mAP"] == 1.0  # the good detections match exactly


# ------------------------------------------------------------------ broken checkpoints and resume
def _run_with(tmp: Path, state: dict | None, raw: bytes | None = None) -> Path:
    """A copy of an untrained run whose model.pt holds ``state`` (or the bytes ``raw``)."""
    import torch

    run = save_tiny_run(tmp / "run")
    if raw is not None:
        (run / "model.pt").write_bytes(raw)
    else:
        torch.save(state, run / "model.pt")
    return run


def _final_state() -> dict:
    import torch

    run = save_tiny_run(Path(tempfile_dir()) / "src_run")
    return torch.load(run / "model.pt", weights_only=True)


def tempfile_dir() -> str:
    import tempfile

    return tempfile.mkdtemp()


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ("empty", ("model.pt", "empty file (0 bytes)")),
        ("no_config", ("model.pt", "incomplete: no 'config'")),
        ("no_labels", ("model.pt", "incomplete: no 'labels'")),
        ("a_list", ("model.pt", "not a softsampling checkpoint")),
        ("bad_config", ("model.pt", "saved config is invalid", "config seed")),
        ("other_weights", ("model.pt", "model state in the checkpoint does not fit")),
        ("pickle", ("model.pt", "refusing to load")),
        # corrupt pickle streams found by bench/fuzz_inputs.py (torch raised IndexError / KeyError)
        ("stream_short", ("model.pt", "checkpoint is corrupt", "IndexError")),
        ("stream_empty_stack", ("model.pt", "checkpoint is corrupt", "IndexError")),
        ("stream_memo", ("model.pt", "checkpoint is corrupt", "KeyError")),
    ],
)
def test_broken_model_checkpoint_is_one_clear_line(edit, expected, tmp_path, capsys):
    state = _final_state()
    raw = None
    if edit == "empty":
        raw = b""
    elif edit in ("no_config", "no_labels"):
        del state[edit[3:]]
    elif edit == "a_list":
        state = [1, 2]
    elif edit == "bad_config":
        state["config"]["seed"] = -1
    elif edit == "other_weights":
        state["model"] = {"w": state["model"][next(iter(state["model"]))]}
    elif edit == "pickle":
        import pickle

        class Payload:
            def __reduce__(self):
                return (print, ("payload ran",))

        raw = pickle.dumps({"model": Payload()})
    elif edit.startswith("stream_"):
        raw = {"stream_short": b"K", "stream_empty_stack": b"\x80\x02Q.", "stream_memo": b"h\x0b\xc9\x9b-d\xadP"}[edit]
    run = _run_with(tmp_path, state, raw)
    code, out, err = run_cli(
        ["predict", "--run", run, "--images", BAD / "img_good.png", "--out", tmp_path / "out"], capsys
    )
    line = assert_one_line_error(code, err, "predict", *expected)
    assert "weights_only" not in line and "payload ran" not in out
    assert files_under(tmp_path / "out") == []


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """Two iterations of the digits model on the corpus' two-image COCO file (images made here)."""
    from softsampling.cli import main

    root = tmp_path_factory.mktemp("trained")
    for name in ("a.png", "b.png"):
        copy_bad("img_good.png", root / "data" / name)
    copy_bad("coco_good.json", root / "data" / "train.json")
    code = main(
        [
            "train",
            "--out",
            str(root / "run"),
            "--no-progress",
            "--set",
            f"data.train={root / 'data' / 'train.json'}",
            "--set",
            "train.iterations=2",
            "--set",
            "train.batch_size=2",
            "--set",
            "train.checkpoint_every=1",
        ]
    )
    assert code == 0
    return root / "run"


def test_resume_refuses_an_edited_config_unless_allowed_and_logs_the_change(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "DONE").unlink()
    (run / "model.pt").unlink()
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("lr: 0.02", "lr: 0.5"))
    code, _, err = run_cli(["train", "--out", run, "--resume", "--no-progress"], capsys)
    assert_one_line_error(
        code, err, "train", "last.pt", "config differs", "train.lr: 0.02 -> 0.5", "--allow-config-change"
    )
    assert not (run / "model.pt").exists()
    code, _, err = run_cli(["train", "--out", run, "--resume", "--no-progress", "--allow-config-change"], capsys)
    assert code == 0, err
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"iteration": 2, "event": "config_changed_on_resume", "changed": {"train.lr": [0.02, 0.5]}} in events


def test_resume_with_a_last_pt_without_optimizer_state_is_one_clear_line(trained_run, tmp_path, capsys):
    import torch

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "model.pt").unlink()
    state = torch.load(run / "last.pt", weights_only=True)
    del state["optimizer"]
    torch.save(state, run / "last.pt")
    code, _, err = run_cli(["train", "--out", run, "--resume", "--no-progress"], capsys)
    assert_one_line_error(code, err, "train", "last.pt", "incomplete: no 'optimizer'")


def test_no_progress_still_prints_the_final_val_map(tmp_path, capsys):
    for name in ("a.png", "b.png"):
        copy_bad("img_good.png", tmp_path / "data" / name)
    data = copy_bad("coco_good.json", tmp_path / "data" / "train.json")
    code, out, err = run_cli(
        [
            "train",
            "--out",
            tmp_path / "run",
            "--no-progress",
            "--set",
            f"data.train={data}",
            "--set",
            f"data.val={data}",
            "--set",
            "train.iterations=1",
            "--set",
            "train.batch_size=2",
        ],
        capsys,
    )
    assert code == 0, err
    assert "val mAP@0.5 (VOC area): " in out


def test_score_soft_prior_with_another_transform_is_one_clear_line(trained_run, tmp_path, capsys):
    data = trained_run.parent / "data" / "train.json"
    code, _, err = run_cli(
        [
            "train",
            "--out",
            tmp_path / "out" / "run",
            "--no-progress",
            "--set",
            f"data.train={data}",
            "--set",
            "strategy=score_soft",
            "--set",
            f"prior_run={trained_run}",
            "--set",
            "model.min_size=96",
            "--set",
            "train.iterations=1",
        ],
        capsys,
    )
    assert_one_line_error(code, err, "train", "transforms images differently", "min_size")


@pytest.mark.parametrize(
    "kind, expected", [("folder", "is a folder"), ("symlink_loop", "Too many levels of symbolic links")]
)
def test_txt_ground_truth_entry_that_is_not_a_file_is_one_clear_line(kind, expected, tmp_path, capsys):
    copy_bad("txt_gt_good.txt", tmp_path / "in" / "gt" / "a.txt")
    bad = tmp_path / "in" / "gt" / "b.txt"
    if kind == "folder":
        bad.mkdir()
    else:
        bad.symlink_to(bad)
    copy_bad("txt_gt_good.txt", tmp_path / "in" / "det" / "a.txt")
    code, _, err = run_cli(
        [
            "evaluate",
            "--gt",
            tmp_path / "in" / "gt",
            "--gt-format",
            "txt",
            "--detections",
            tmp_path / "in" / "det",
            "--out",
            tmp_path / "out" / "r.json",
        ],
        capsys,
    )
    assert_one_line_error(code, err, "evaluate", "b.txt", expected)
    assert files_under(tmp_path / "out") == []


def test_decompression_bomb_in_evaluate_images_is_one_clear_line(tmp_path, capsys):
    copy_bad("txt_gt_good.txt", tmp_path / "in" / "gt" / "a.txt")
    copy_bad("img_bomb_100000x100000.png", tmp_path / "in" / "images" / "a.png")
    (tmp_path / "in" / "det").mkdir()
    code, _, err = run_cli(
        [
            "evaluate",
            "--gt",
            tmp_path / "in" / "gt",
            "--gt-format",
            "txt",
            "--detections",
            tmp_path / "in" / "det",
            "--images",
            tmp_path / "in" / "images",
            "--out",
            tmp_path / "out" / "r.json",
        ],
        capsys,
    )
    assert_one_line_error(code, err, "evaluate", "a.png", "too large")
