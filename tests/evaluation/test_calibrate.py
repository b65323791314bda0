"""Per-class score-threshold calibration: matching, threshold choice, thresholds.json, the CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softsampling.cli import main
from softsampling.commands.calibrate import thresholds_document
from softsampling.commands.predict import read_thresholds
from softsampling.errors import SoftSamplingError
from softsampling.evaluation.calibrate import (
    calibrate_thresholds,
    choose_threshold,
    match_detections,
    operating_point,
    parse_criterion,
)
from softsampling.evaluation.voc_metric import average_precision, voc_ap
from softsampling.io import write_json
from softsampling.structures.detections import Detections
from softsampling.structures.records import Category, DetectionDataset

T, F = True, False


def f32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


# ------------------------------------------------------------ choose_threshold
def test_f1_picks_the_best_operating_point():
    # keep >= 0.9: TP1 FP0 F1 2/3; >= 0.6: TP1 FP1 F1 1/2; >= 0.4: TP2 FP1 F1 4/5
    scores, tp = f32(0.9, 0.6, 0.4), np.array([T, F, T])
    assert choose_threshold(scores, tp, 2) == float(np.float32(0.4))
    assert operating_point(scores, tp, 2, choose_threshold(scores, tp, 2)).f1 == pytest.approx(0.8)


def test_input_order_does_not_matter():
    scores, tp = f32(0.4, 0.9, 0.6), np.array([T, T, F])
    assert choose_threshold(scores, tp, 2) == float(np.float32(0.4))


def test_tied_scores_are_kept_or_dropped_together():
    # Per detection, stopping right after the tied TP at 0.7 would give TP2 FP0 (F1 = 1), but no
    # threshold reproduces that: ">= 0.7" keeps all four 0.7s, TP2 FP3, F1 = 4/7 < 2/3 at 0.9.
    scores, tp = f32(0.9, 0.7, 0.7, 0.7, 0.7), np.array([T, T, F, F, F])
    t = choose_threshold(scores, tp, 2)
    assert t == float(np.float32(0.9))
    assert choose_threshold(scores[::-1], tp[::-1], 2) == t
    # Ties with the TP last in input order change nothing either.
    assert choose_threshold(f32(0.9, 0.7, 0.7, 0.7, 0.7), np.array([T, F, F, F, T]), 2) == t


def test_tied_group_as_the_chosen_point():
    # >= 0.8: TP1 FP2 F1 2/5; >= 0.5: TP2 FP2 F1 4/6 -> 0.5; the chosen threshold reproduces it exactly.
    scores, tp = f32(0.8, 0.8, 0.8, 0.5), np.array([F, T, F, T])
    t = choose_threshold(scores, tp, 2)
    assert t == float(np.float32(0.5))
    op = operating_point(scores, tp, 2, t)
    assert (op.num_det, op.tp, op.fp) == (4, 2, 2)
    assert op.f1 == pytest.approx(2 / 3)


def test_f1_tie_prefers_the_higher_threshold():
    # >= 0.9: F1 2/3; >= 0.6: TP2 FP2 F1 4/6: equal, so the one with fewer detections.
    assert choose_threshold(f32(0.9, 0.8, 0.7, 0.6), np.array([T, F, F, T]), 2) == float(np.float32(0.9))


def test_precision_and_recall_criteria():
    scores, tp = f32(0.9, 0.8, 0.7, 0.6, 0.5), np.array([T, T, F, T, F])
    # precision per point: 1, 1, 2/3, 3/4, 3/5; recall (4 gt): .25, .5, .5, .75, .75
    assert choose_threshold(scores, tp, 4, "precision=1") == float(np.float32(0.8))
    assert choose_threshold(scores, tp, 4, "precision=0.75") == float(np.float32(0.6))
    assert choose_threshold(scores, tp, 4, "precision=0.6") == float(np.float32(0.5))
    assert choose_threshold(scores, tp, 4, "recall=0.5") == float(np.float32(0.8))
    assert choose_threshold(scores, tp, 4, "recall=0.75") == float(np.float32(0.6))
    assert choose_threshold(scores, tp, 4, "recall=1") is None  # one box is never found
    assert choose_threshold(f32(0.9, 0.8), np.array([F, T]), 1, "precision=0.9") is None


def test_no_threshold_without_ground_truth_detections_or_true_positives():
    assert choose_threshold(f32(0.9, 0.5), np.array([F, F]), 0) is None  # no ground truth
    assert choose_threshold(f32(), np.array([], dtype=bool), 3) is None  # no detections
    assert choose_threshold(f32(0.9, 0.5), np.array([F, F]), 3) is None  # F1 = 0 everywhere
    assert choose_threshold(f32(0.9), np.array([F]), 3, "recall=0.1") is None


@pytest.mark.parametrize("text", ["f2", "precision", "precision=1.5", "recall=0", "recall=abc", "f1=0.5"])
def test_bad_criteria_are_user_errors(text):
    with pytest.raises(SoftSamplingError, match="criterion"):
        parse_criterion(text)


def test_operating_point_conventions():
    op = operating_point(f32(0.3), np.array([F]), 0, 0.5)  # nothing kept, no ground truth
    assert (op.num_det, op.precision, op.recall, op.f1) == (0, 0.0, 0.0, 0.0)
    op = operating_point(f32(0.5, 0.5), np.array([T, F]), 4, 0.5)  # ">=" keeps scores equal to the threshold
    assert (op.num_det, op.tp, op.fp, op.precision, op.recall) == (2, 1, 1, 0.5, 0.25)
    assert op.f1 == pytest.approx(2 * 0.5 * 0.25 / 0.75)


def brute_force_f1(scores: np.ndarray, tp: np.ndarray, num_gt: int) -> float:
    """Best F1 over every threshold, one threshold at a time (the obvious loop)."""
    best = 0.0
    for t in set(scores.tolist()):
        kept = scores >= t
        n_tp, n_fp = int((tp & kept).sum()), int((~tp & kept).sum())
        best = max(best, 2 * n_tp / (n_tp + n_fp + num_gt) if n_tp else 0.0)
    return best


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=0, max_size=12), st.integers(0, 8), st.integers(0, 6)
)
def test_f1_choice_matches_brute_force(pairs, extra_gt, default_step):
    scores = f32(*[s / 6 for s, _ in pairs])  # few distinct values: many ties
    tp = np.array([t for _, t in pairs], dtype=bool)
    num_gt = int(tp.sum()) + extra_gt
    t = choose_threshold(scores, tp, num_gt)
    best = brute_force_f1(scores, tp, num_gt)
    if t is None:
        assert best == 0.0
    else:
        assert t in scores.tolist()
        assert operating_point(scores, tp, num_gt, t).f1 == pytest.approx(best, abs=1e-12)
        default = default_step / 6
        assert operating_point(scores, tp, num_gt, t).f1 >= operating_point(scores, tp, num_gt, default).f1 - 1e-12


# ------------------------------------------------------------ match_detections
def two_image_gt() -> DetectionDataset:
    return DetectionDataset.from_lists(
        images=[
            {"id": "a", "file_name": "a.png", "width": 100, "height": 100},
            {"id": "b", "file_name": "b.png", "width": 100, "height": 100},
        ],
        boxes=[
            {"image_index": 0, "bbox": [0, 0, 10, 10], "label": 1},
            {"image_index": 0, "bbox": [50, 50, 60, 60], "label": 1, "difficult": True},
            {"image_index": 1, "bbox": [0, 0, 10, 10], "label": 1},
            {"image_index": 1, "bbox": [20, 20, 40, 40], "label": 2},
        ],
        categories=[Category(1, "cat"), Category(2, "dog"), Category(3, "cow")],
    )


def test_matching_rules():
    gt = two_image_gt()
    dets = Detections(
        image_index=[0, 0, 0, 1, 1, 1, 1],
        boxes=[
            [0, 0, 10, 10],  # TP (cat, image a)
            [0, 0, 10, 9],  # duplicate of the same box: FP
            [50, 50, 60, 60],  # on the difficult box: ignored
            [0, 0, 10, 10],  # cat box of image b but labelled dog: FP
            [0, 0, 5, 10],  # IoU exactly 0.5 with the cat of image b: TP (>=)
            [20, 20, 40, 40],  # TP (dog)
            [20, 20, 40, 40],
        ],  # cow: no cow anywhere, FP
        labels=[1, 1, 1, 2, 1, 2, 3],
        scores=[0.9, 0.95, 0.5, 0.9, 0.3, 0.8, 0.7],
    )
    m = match_detections(gt, dets, iou=0.5)
    # The 0.95 duplicate ranks first, so it takes the box and the 0.9 one becomes the duplicate.
    assert m.tp.tolist() == [F, T, F, F, T, T, F]
    assert m.ignored.tolist() == [F, F, T, F, F, F, F]
    assert m.num_gt == {1: 2, 2: 1, 3: 0}
    assert match_detections(gt, dets, iou=0.51).tp.tolist() == [F, T, F, F, F, T, F]


def test_matching_rejects_bad_input():
    gt = two_image_gt()
    with pytest.raises(SoftSamplingError, match="image row 5"):
        match_detections(gt, Detections([5], [[0, 0, 1, 1]], [1], [0.5]))
    with pytest.raises(SoftSamplingError, match="IoU"):
        match_detections(gt, Detections.empty(), iou=1.5)


def random_case(seed: int) -> tuple[DetectionDataset, Detections]:
    rng = np.random.default_rng(seed)
    n_img, n_box, n_det = 6, 30, 120
    xy = rng.uniform(0, 80, (n_box, 2))
    wh = rng.uniform(5, 30, (n_box, 2))
    gt = DetectionDataset.from_lists(
        images=[{"id": i, "file_name": f"{i}.png", "width": 120, "height": 120} for i in range(n_img)],
        boxes=[
            {
                "image_index": int(rng.integers(n_img)),
                "bbox": [*xy[k], *(xy[k] + wh[k])],
                "label": int(rng.integers(1, 4)),
                "difficult": bool(rng.random() < 0.1),
            }
            for k in range(n_box)
        ],
        categories=[Category(1, "a"), Category(2, "b"), Category(3, "c")],
    )
    src = rng.integers(n_box, size=n_det)
    boxes = gt.boxes[src] + rng.normal(0, 3, (n_det, 4))
    labels = np.where(rng.random(n_det) < 0.8, gt.labels[src], rng.integers(1, 4, n_det))
    scores = np.round(rng.random(n_det), 1)  # many ties
    return gt, Detections(gt.box_image[src], boxes, labels, scores)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tp_flags_reproduce_voc_ap(seed):
    gt, dets = random_case(seed)
    m = match_detections(gt, dets, iou=0.5)
    expected = voc_ap(gt, dets, iou_thresholds=[0.5])["per_class"]
    for cid in (1, 2, 3):
        mine = np.flatnonzero((dets.labels == cid) & ~m.ignored)
        ranked = mine[np.argsort(-dets.scores[mine].astype(np.float64), kind="stable")]
        assert m.num_gt[cid] == expected[cid]["num_gt"]
        assert average_precision(m.tp[ranked], m.num_gt[cid]) == pytest.approx(expected[cid]["ap"], abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_thresholding_commutes_with_matching(seed):
    gt, dets = random_case(seed)
    m = match_detections(gt, dets)
    for t in (0.2, 0.5, 0.8):
        kept = dets.scores >= np.float32(t)
        assert match_detections(gt, dets.above(np.float32(t))).tp.tolist() == m.tp[kept].tolist()


# ------------------------------------------------------------ calibrate_thresholds
def test_calibrate_thresholds_per_class():
    gt = DetectionDataset.from_lists(
        images=[{"id": 0, "file_name": "a.png", "width": 100, "height": 100}],
        boxes=[
            {"image_index": 0, "bbox": [0, 0, 10, 10], "label": 1},
            {"image_index": 0, "bbox": [20, 0, 30, 10], "label": 1},
            {"image_index": 0, "bbox": [40, 0, 50, 10], "label": 2},
        ],
        categories=[Category(1, "cat"), Category(2, "dog"), Category(3, "cow")],
    )
    dets = Detections(
        image_index=[0] * 6,
        boxes=[
            [0, 0, 10, 10],
            [60, 60, 70, 70],
            [20, 0, 30, 10],
            [70, 70, 80, 80],  # cat: T F T F
            [80, 0, 90, 10],  # dog: F only
            [40, 0, 50, 10],
        ],  # cow on the dog box: F, and cows have no ground truth
        labels=[1, 1, 1, 1, 2, 3],
        scores=[0.9, 0.8, 0.6, 0.02, 0.7, 0.95],
    )
    cat, dog, cow = calibrate_thresholds(gt, dets, iou=0.5, default_threshold=0.05)
    # cat before (>= 0.05): TP2 FP1, P 2/3 R 1 F1 0.8; after: >= 0.9 F1 2/3, >= 0.8 1/2, >= 0.6 4/5 -> 0.6
    # (equal F1 to the default point, so the higher threshold wins).
    assert cat.threshold == float(np.float32(0.6)) and cat.note is None
    assert (cat.before.num_det, cat.before.tp, cat.before.fp, cat.before.num_gt) == (3, 2, 1, 2)
    assert cat.before.f1 == pytest.approx(0.8) and cat.after.f1 == pytest.approx(0.8)
    assert cat.after.precision == pytest.approx(2 / 3) and cat.after.recall == 1.0
    assert dog.threshold == 0.05 and "no true positive" in dog.note
    assert (dog.after.fp, dog.after.recall) == (1, 0.0)
    assert cow.threshold == 0.05 and "no ground truth" in cow.note
    # A stricter criterion moves the cat threshold up: precision 1 needs >= 0.9.
    cat_p = calibrate_thresholds(gt, dets, [1], criterion="precision=1.0")[0]
    assert cat_p.threshold == float(np.float32(0.9)) and cat_p.after.precision == 1.0 and cat_p.after.recall == 0.5
    # A class without detections keeps the default.
    none = calibrate_thresholds(gt, Detections.empty(), [1])[0]
    assert none.threshold == 0.05 and "no detections" in none.note


# ------------------------------------------------------------ thresholds.json
def test_thresholds_json_is_read_back_by_predict(tmp_path):
    gt, dets = random_case(3)
    dets.scores[:] = np.random.default_rng(0).random(len(dets)).astype(np.float32)  # no round decimals
    results = calibrate_thresholds(gt, dets)
    path = tmp_path / "thresholds.json"
    write_json(
        path,
        thresholds_document(
            results, criterion="f1", iou=0.5, split="val", annotations="val.json", run="runs/x", default_threshold=0.05
        ),
    )
    doc = json.loads(path.read_text())
    assert doc["criterion"] == "f1" and doc["iou"] == 0.5 and doc["split"] == "val"
    assert set(doc["per_class"]) == {"a", "b", "c"}
    assert set(doc["per_class"]["a"]["after"]) == {
        "threshold",
        "num_det",
        "tp",
        "fp",
        "num_gt",
        "precision",
        "recall",
        "f1",
    }
    table = read_thresholds(path, ("a", "b", "c"))
    assert table == {r.name: r.threshold for r in results}
    # predict compares float32 scores with float32 thresholds: the JSON value keeps exactly the calibrated detections.
    m = match_detections(gt, dets)
    for r in results:
        cut = np.float32(table[r.name])
        mine = (dets.labels == r.category_id) & ~m.ignored
        assert int((dets.scores[mine] >= cut).sum()) == r.after.num_det
        assert int((dets.scores[mine] >= cut)[m.tp[mine]].sum()) == r.after.tp


# ------------------------------------------------------------ the command
def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["calibrate", "--help"])
    out = capsys.readouterr().out
    assert "softsampling calibrate --run runs/oss50 --split val" in out and "--criterion" in out


def test_command_errors_are_one_line(tmp_path, capsys):
    assert main(["calibrate", "--run", str(tmp_path / "nope")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["calibrate", "--run", str(tmp_path), "--criterion", "f2"]) == 2
    assert "unknown criterion" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """A 3-iteration digits run (seconds on CPU) and its data folder."""
    root = tmp_path_factory.mktemp("calibrate_e2e")
    data, run_dir = root / "digits", root / "run"
    config = Path(__file__).resolve().parents[2] / "configs" / "digits.yaml"
    assert (
        main(["data", "digits", "--out", str(data), "--train", "8", "--val", "6", "--test", "2", "--size", "64"]) == 0
    )
    assert (
        main(
            [
                "train",
                "--config",
                str(config),
                "--out",
                str(run_dir),
                "--no-progress",
                "--set",
                f"data.train={data / 'annotations' / 'train.json'}",
                "--set",
                f"data.val={data / 'annotations' / 'val.json'}",
                "--set",
                "train.iterations=3",
                "--set",
                "train.batch_size=2",
            ]
        )
        == 0
    )
    return run_dir, data


def test_calibrate_end_to_end_then_predict(tiny_run, tmp_path, capsys):
    run_dir, data = tiny_run
    out = tmp_path / "thresholds.json"
    # A 3-iteration model barely localises, so a loose IoU gives some classes true positives to calibrate on.
    assert (
        main(
            [
                "calibrate",
                "--run",
                str(run_dir),
                "--split",
                "val",
                "--iou",
                "0.1",
                "--batch-size",
                "1",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "before: thr" in printed and f"wrote {out}" in printed
    doc = json.loads(out.read_text())
    names = tuple(json.loads((run_dir / "labels.json").read_text())["names"])
    assert doc["split"] == "val" and doc["iou"] == 0.1 and doc["criterion"] == "f1"
    assert set(doc["thresholds"]) == set(names) == set(doc["per_class"])
    assert doc["per_class"][names[0]]["before"]["num_gt"] > 0 or doc["per_class"][names[1]]["before"]["num_gt"] > 0
    calibrated = [n for n in names if doc["per_class"][n]["note"] is None]
    assert calibrated, "expected at least one class with a true positive at IoU 0.1"
    for n in names:
        c = doc["per_class"][n]
        assert c["after"]["f1"] >= c["before"]["f1"]
        if c["note"] is not None:
            assert c["threshold"] == 0.05 and c["after"] == c["before"]

    # predict applies the file: per class it keeps exactly the detections calibrate counted after.
    preds = tmp_path / "preds"
    assert (
        main(
            [
                "predict",
                "--run",
                str(run_dir),
                "--images",
                str(data / "images" / "val"),
                "--out",
                str(preds),
                "--thresholds",
                str(out),
            ]
        )
        == 0
    )
    kept = Counter(d["category_id"] for d in json.loads((preds / "detections.json").read_text()))
    for n in names:
        c = doc["per_class"][n]
        assert kept.get(c["category_id"], 0) == c["after"]["num_det"], n
    # Refuses to overwrite without --force.
    assert main(["calibrate", "--run", str(run_dir), "--out", str(out), "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_split_without_val_annotations_and_foreign_classes_are_user_errors(tmp_path):
    from types import SimpleNamespace

    from softsampling.commands.calibrate import _check_classes, _load_split

    cfg = SimpleNamespace(
        data=SimpleNamespace(
            format="coco", train="t.json", val=None, images=None, val_images=None, split="trainval", val_split="val"
        )
    )
    args = SimpleNamespace(gt=None, images=None, split="val", run=tmp_path)
    with pytest.raises(SoftSamplingError, match=r"no validation annotations.*--gt PATH"):
        _load_split(args, cfg)
    gt = two_image_gt()  # categories 1 cat, 2 dog, 3 cow
    _check_classes(gt, (1, 2), ("cat", "dog"), Path("val.json"))
    with pytest.raises(SoftSamplingError, match=r"val.json: .*2 'bird'"):
        _check_classes(gt, (1, 2), ("cat", "bird"), Path("val.json"))
