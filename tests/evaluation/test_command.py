"""`softsampling evaluate` end to end on the real data in tests/data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from softsampling.cli import build_parser, main
from softsampling.evaluation.io import read_txt_layout, write_detections_coco, write_detections_csv
from softsampling.evaluation.voc_metric import voc_ap


def cartucho_args(cartucho_dir, *extra):
    return [
        "evaluate",
        "--gt",
        str(cartucho_dir / "ground-truth"),
        "--gt-format",
        "txt",
        "--detections",
        str(cartucho_dir / "detection-results"),
        *extra,
    ]


def test_help_shows_the_module_description(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--help"])
    out = capsys.readouterr().out
    assert (
        "Score detections against ground truth" in out and "--score-thresholds" in out and "docs/evaluation.md" in out
    )


def test_evaluate_cartucho_table_json_and_plot(cartucho_dir, tmp_path, capsys):
    out, plot = tmp_path / "r.json", tmp_path / "sweep.png"
    rc = main(
        cartucho_args(
            cartucho_dir,
            "--metric",
            "voc",
            "--iou",
            "0.5,0.75",
            "--score-thresholds",
            "0:0.9:0.3",
            "--out",
            str(out),
            "--plot",
            str(plot),
        )
    )
    captured = capsys.readouterr()
    assert rc == 0
    gt, dets = read_txt_layout(cartucho_dir / "ground-truth", cartucho_dir / "detection-results", notes=[])
    expected = voc_ap(gt, dets, iou_thresholds=(0.5, 0.75))
    assert "85 images, 686 ground-truth boxes, 450 detections" in captured.out
    mean_line = next(line for line in captured.out.splitlines() if line.startswith("mean"))
    assert mean_line.split()[1:3] == [f"{100 * m:.2f}" for m in expected["mAP_per_iou"]]
    sofa = next(line for line in captured.out.splitlines() if line.startswith("sofa "))
    assert sofa.split() == ["sofa", "90.48", "75.17", "21", "22"]
    assert "ignored 44 detection(s)" in captured.err

    saved = json.loads(out.read_text())
    assert saved["result"]["mAP_per_iou"] == pytest.approx(expected["mAP_per_iou"], abs=1e-15)
    assert saved["result"]["per_class"]["1"]["num_gt"] == expected["per_class"][1]["num_gt"]
    assert [p["score_threshold"] for p in saved["sweep"]] == [0.0, 0.3, 0.6, 0.9]
    assert saved["sweep"][0]["mAP"] == pytest.approx(expected["mAP"])
    assert saved["num_detections"] == 450 and len(saved["notes"]) == 1
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_csv_detections_against_txt_ground_truth(cartucho_dir, tmp_path, capsys):
    gt, dets = read_txt_layout(cartucho_dir / "ground-truth", cartucho_dir / "detection-results", notes=[])
    write_detections_csv(dets, gt, tmp_path / "d.csv")
    out = tmp_path / "r.json"
    rc = main(
        [
            "evaluate",
            "--gt",
            str(cartucho_dir / "ground-truth"),
            "--gt-format",
            "txt",
            "--detections",
            str(tmp_path / "d.csv"),
            "--metric",
            "voc07",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    assert json.loads(out.read_text())["result"]["mAP"] == pytest.approx(voc_ap(gt, dets, use_07_metric=True)["mAP"])


def test_coco_metric_on_coco128(coco128_json, tmp_path, capsys):
    from softsampling.data.coco import read_coco
    from softsampling.structures.detections import Detections

    gt = read_coco(coco128_json)
    keep = ~gt.iscrowd
    perfect = Detections(gt.box_image[keep], gt.boxes[keep], gt.labels[keep], np.ones(int(keep.sum())))
    write_detections_coco(perfect, gt, tmp_path / "results.json")
    out = tmp_path / "r.json"
    rc = main(
        [
            "evaluate",
            "--gt",
            str(coco128_json),
            "--gt-format",
            "coco",
            "--detections",
            str(tmp_path / "results.json"),
            "--metric",
            "coco",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    result = json.loads(out.read_text())["result"]
    assert result["AP"] == pytest.approx(1.0) and result["AP50"] == pytest.approx(1.0)
    assert "COCO: AP 100.00, AP50 100.00" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--metric", "coco", "--iou", "0.5"], "COCO's fixed IoU thresholds"),
        (["--iou", "0.5,abc"], "cannot read --iou"),
        (["--iou", "1.5"], "cannot read --iou"),
        (["--score-thresholds", "0:0.9"], "cannot read score thresholds"),
        (["--metric", "voc", "--hierarchy", "h.json"], "--hierarchy applies to --metric openimages only"),
        (["--split", "test"], "--split does not apply"),
    ],
)
def test_bad_options_are_one_line_errors(cartucho_dir, capsys, extra, message):
    args = cartucho_args(cartucho_dir, *extra)
    if "--split" in extra:  # reader options are checked for the non-txt formats
        args = [
            "evaluate",
            "--gt",
            str(cartucho_dir / "ground-truth"),
            "--gt-format",
            "coco",
            "--detections",
            str(cartucho_dir / "LICENSE"),
            *extra,
        ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("softsampling evaluate: error:") and message in err and len(err.strip().splitlines()) == 1


def test_refuses_to_overwrite_without_force(cartucho_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    out.write_text("keep me")
    assert main(cartucho_args(cartucho_dir, "--out", str(out))) == 2
    assert "output already exists" in capsys.readouterr().err and out.read_text() == "keep me"
    assert main(cartucho_args(cartucho_dir, "--out", str(out), "--force")) == 0
    assert json.loads(out.read_text())["metric"] == "voc"


def test_detection_folder_needs_txt_ground_truth(cartucho_dir, coco128_json, capsys):
    rc = main(
        [
            "evaluate",
            "--gt",
            str(coco128_json),
            "--gt-format",
            "coco",
            "--detections",
            str(cartucho_dir / "detection-results"),
        ]
    )
    assert rc == 2 and "needs --gt-format txt" in capsys.readouterr().err


def test_openimages_metric_on_exhaustive_ground_truth(cartucho_dir, tmp_path):
    # txt ground truth annotates every class everywhere, so every class is verified in every image; with no
    # difficult or group-of boxes the Open Images rules (best box, no fallback, IoU >= .5, area under the
    # envelope) reduce to VOC's, and the mAP must equal the VOC one.
    gt, dets = read_txt_layout(cartucho_dir / "ground-truth", cartucho_dir / "detection-results", notes=[])
    out = tmp_path / "r.json"
    assert main(cartucho_args(cartucho_dir, "--metric", "openimages", "--out", str(out))) == 0
    result = json.loads(out.read_text())["result"]
    assert result["mAP"] == pytest.approx(voc_ap(gt, dets)["mAP"], abs=1e-12)
    assert result["per_class"]["1"]["num_det"] == voc_ap(gt, dets)["per_class"][1]["num_det"]


@pytest.mark.parametrize("metric, exact", [("voc07", False), ("voc07_exact", True)])
def test_voc07_variants_on_the_command_line(cartucho_dir, tmp_path, metric, exact):
    out = tmp_path / "r.json"
    assert main(cartucho_args(cartucho_dir, "--metric", metric, "--out", str(out))) == 0
    gt, dets = read_txt_layout(cartucho_dir / "ground-truth", cartucho_dir / "detection-results", notes=[])
    result = json.loads(out.read_text())["result"]
    assert result["metric"] == metric
    assert result["mAP"] == pytest.approx(voc_ap(gt, dets, use_07_metric=True, exact_tenths=exact)["mAP"], abs=1e-15)


VOC_FIXTURE = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "voc" / "VOC2007"


def test_voc_ground_truth_defaults_to_the_test_split_and_says_so(tmp_path, capsys):
    # The fixture's test split is one image (000004, one cat at 10,20-30,40); trainval has three others.
    dets = tmp_path / "d.csv"
    dets.write_text("image,label,score,xmin,ymin,xmax,ymax\n000004,cat,0.9,10,20,30,40\n")
    out = tmp_path / "r.json"
    base = ["evaluate", "--gt", str(VOC_FIXTURE), "--gt-format", "voc", "--detections", str(dets)]
    assert main([*base, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "VOC image set: test (ImageSets/Main/test.txt, the default; choose another with --split)" in printed
    assert "1 images, 1 ground-truth boxes, 1 detections" in printed
    saved = json.loads(out.read_text())
    assert saved["split"] == "test" and saved["num_images"] == 1 and saved["result"]["mAP"] == 1.0

    # --split picks another image set, and the output names it.
    assert main([*base, "--split", "trainval"]) == 2  # 000004 is not in trainval
    assert "000004" in capsys.readouterr().err
    assert main([*base, "--split", "test"]) == 0
    assert "VOC image set: test (ImageSets/Main/test.txt, --split)" in capsys.readouterr().out


def test_coco_table_prints_a_dash_where_pycocotools_has_no_ground_truth():
    from softsampling.commands.evaluate import format_table

    result = {
        "metric": "coco",
        "per_class": {1: {"name": "cat", "ap": 0.5, "ap50": 0.75, "num_gt": 3, "num_det": 4}},
        "AP": 0.5,
        "AP50": 0.75,
        "APs": -1.0,
        "APm": 0.25,
        "ARs": -1.0,
    }
    stats = format_table(result).splitlines()[-1]
    assert stats == "COCO: AP 50.00, AP50 75.00, APs -, APm 25.00, ARs -"
    assert "-100.00" not in format_table(result)
