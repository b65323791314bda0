"""`softsampling audit` and `softsampling audit-merge` end to end on a tiny dataset (no model: --detections)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from softsampling.cli import main
from softsampling.data.formats import load_dataset, save_dataset
from softsampling.structures.records import Category, DetectionDataset


def tiny_dataset(root: Path) -> DetectionDataset:
    """Two 64x48 images: one annotated cat each; a dog in image 0 is not annotated."""
    images = root / "images"
    images.mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (64, 48), (40 * i, 90, 200)).save(images / f"im{i}.png")
    return DetectionDataset.from_lists(
        images=[{"id": i + 1, "file_name": f"im{i}.png", "width": 64, "height": 48} for i in range(2)],
        boxes=[
            {"image_index": 0, "bbox": [2, 2, 20, 20], "label": 1, "id": 1},
            {"image_index": 1, "bbox": [30, 10, 50, 40], "label": 1, "id": 2},
        ],
        categories=[Category(1, "cat"), Category(2, "dog")],
        image_root=images,
    )


@pytest.fixture
def coco(tmp_path: Path) -> tuple[Path, Path]:
    ds = tiny_dataset(tmp_path)
    gt = tmp_path / "train.json"
    save_dataset(ds, gt, "coco")
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [2, 2, 18, 18], "score": 0.95},  # annotated
        {"image_id": 1, "category_id": 2, "bbox": [35, 20, 20, 20], "score": 0.9},  # the missing dog
        {"file_name": "im1.png", "category_id": 1, "bbox": [0, 30, 10, 10], "score": 0.2},
    ]
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets))
    return gt, path


def audit(gt: Path, dets: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "audit",
            "--gt",
            str(gt),
            "--gt-format",
            "coco",
            "--images",
            str(gt.parent / "images"),
            "--detections",
            str(dets),
            "--out",
            str(out),
            *extra,
        ]
    )


def test_audit_writes_candidates_summary_and_review(coco, tmp_path, capsys):
    gt, dets = coco
    out = tmp_path / "audit"
    assert audit(gt, dets, out, "--calibration", "none") == 0
    candidates = json.loads((out / "candidates.json").read_text())
    assert [(c["rank"], c["file_name"], c["category_id"]) for c in candidates] == [(1, "im0.png", 2), (2, "im1.png", 1)]
    assert candidates[0]["bbox"] == [35.0, 20.0, 20.0, 20.0] and candidates[0]["score"] == pytest.approx(0.9)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["candidates_sha256"] == hashlib.sha256((out / "candidates.json").read_bytes()).hexdigest()
    by_name = {c["name"]: c for c in summary["classes"]}
    assert by_name["dog"]["expected_missing"] == pytest.approx(0.9) and by_name["dog"]["annotated"] == 0
    assert by_name["cat"]["annotation_recall"] == pytest.approx(2 / 2.2, abs=1e-4)
    page = (out / "review.html").read_text()
    assert page.count("data:image/jpeg;base64,") == 2 and "http" not in page.replace("http-equiv", "")
    assert "est. missing" in capsys.readouterr().out
    # the unlabeled (positive-unlabelled) calibration runs too
    assert audit(gt, dets, tmp_path / "audit2") == 0
    assert json.loads((tmp_path / "audit2" / "summary.json").read_text())["calibration"][0]["method"] == "unlabeled"


def test_audit_refuses_detections_of_unknown_images(coco, tmp_path, capsys):
    gt, _ = coco
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 99, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}]))
    out = tmp_path / "audit"
    assert audit(gt, bad, out) == 2
    err = capsys.readouterr().err.strip()
    assert "image 99 is not in the ground truth" in err and len(err.splitlines()) == 1
    assert not out.exists()


def decisions_for(candidates: list[dict], accept: list[int], reject: list[int], sha: str | None) -> dict:
    by_rank = {c["rank"]: c for c in candidates}
    return {
        "format": "softsampling-audit-decisions",
        "version": 1,
        "candidates_sha256": sha,
        "decisions": [
            {"rank": r, "decision": d, **{k: by_rank[r][k] for k in ("image_id", "file_name", "category_id", "bbox")}}
            for d, ranks in (("accept", accept), ("reject", reject))
            for r in ranks
        ],
    }


OI_CLASSES = "/m/cat,cat\n/m/dog,dog\n"


@pytest.mark.parametrize("fmt", ["coco", "voc", "openimages"])
def test_merge_round_trip(fmt, tmp_path):
    ds = tiny_dataset(tmp_path)
    extra_in: list[str] = []
    if fmt == "coco":
        gt = tmp_path / "train.json"
    elif fmt == "voc":
        gt = tmp_path / "VOC2007"
    else:
        gt = tmp_path / "boxes.csv"
        ds.image_ids = ["im0", "im1"]
        ds.categories = [Category(1, "cat", {"LabelName": "/m/cat"}), Category(2, "dog", {"LabelName": "/m/dog"})]
        (tmp_path / "classes.csv").write_text(OI_CLASSES)
        (tmp_path / "sizes.csv").write_text("ImageID,width,height\nim0,64,48\nim1,64,48\n")
        extra_in = ["--classes", str(tmp_path / "classes.csv"), "--sizes", str(tmp_path / "sizes.csv")]
    save_dataset(ds, gt, fmt)
    options = (
        {"classes_csv": tmp_path / "classes.csv", "sizes_csv": tmp_path / "sizes.csv"} if fmt == "openimages" else {}
    )
    before = load_dataset(gt, fmt, **options)
    snapshot = {p: p.read_bytes() for p in ([gt] if gt.is_file() else sorted(gt.rglob("*.xml")))}
    row = 0
    name = before.file_names[row]
    cat = {c.name: c.id for c in before.categories}
    candidates = [
        {
            "rank": 1,
            "image_id": before.image_ids[row],
            "file_name": name,
            "category_id": cat["dog"],
            "bbox": [35.0, 20.0, 20.0, 20.0],
            "score": 0.9,
        },
        {
            "rank": 2,
            "image_id": before.image_ids[row],
            "file_name": name,
            "category_id": cat["cat"],
            "bbox": [0.0, 30.0, 10.0, 10.0],
            "score": 0.2,
        },
    ]
    cand_path = tmp_path / "candidates.json"
    cand_path.write_text(json.dumps(candidates))
    sha = hashlib.sha256(cand_path.read_bytes()).hexdigest()
    dec = tmp_path / "decisions.json"
    dec.write_text(json.dumps(decisions_for(candidates, [1], [2], sha)))
    out = tmp_path / ("merged" if fmt == "voc" else f"merged.{'json' if fmt == 'coco' else 'csv'}")
    assert (
        main(
            [
                "audit-merge",
                "--gt",
                str(gt),
                "--gt-format",
                fmt,
                "--decisions",
                str(dec),
                "--candidates",
                str(cand_path),
                "--out",
                str(out),
                *extra_in,
            ]
        )
        == 0
    )
    after = load_dataset(out, fmt, **options)
    assert after.num_boxes == before.num_boxes + 1

    def rows(d: DetectionDataset) -> list[tuple]:
        return sorted(
            (d.file_names[d.box_image[i]], int(d.labels[i]), *np.round(d.boxes[i], 3).tolist())
            for i in range(d.num_boxes)
        )

    assert rows(after) == sorted(rows(before) + [(name, cat["dog"], 35.0, 20.0, 55.0, 40.0)])
    manifest = json.loads(
        (out / "additions.json" if fmt == "voc" else out.with_name(out.stem + ".additions.json")).read_text()
    )
    assert (manifest["accepted"], manifest["rejected"]) == (1, 1) and manifest["added"][0]["rank"] == 1
    assert {p: p.read_bytes() for p in snapshot} == snapshot  # the input is untouched


def test_merge_bad_input_writes_nothing(coco, tmp_path, capsys):
    gt, _ = coco
    candidates = [
        {"rank": 1, "image_id": 1, "file_name": "im0.png", "category_id": 2, "bbox": [35.0, 20.0, 20.0, 20.0]}
    ]
    cand_path = tmp_path / "candidates.json"
    cand_path.write_text(json.dumps(candidates))
    out = tmp_path / "merged.json"

    def merge(decisions: dict, *extra: str) -> str:
        dec = tmp_path / "decisions.json"
        dec.write_text(json.dumps(decisions))
        assert (
            main(
                [
                    "audit-merge",
                    "--gt",
                    str(gt),
                    "--gt-format",
                    "coco",
                    "--decisions",
                    str(dec),
                    "--out",
                    str(out),
                    *extra,
                ]
            )
            == 2
        )
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and not out.exists()
        assert not out.with_name("merged.additions.json").exists()
        return err

    good = decisions_for(candidates, [1], [], None)
    unknown = json.loads(json.dumps(good))
    unknown["decisions"][0]["rank"] = 7
    assert "names no candidate of --candidates" in merge(unknown, "--candidates", str(cand_path))
    moved = json.loads(json.dumps(good))
    moved["decisions"][0]["bbox"] = [0, 0, 5, 5]
    assert "differs from candidate" in merge(moved, "--candidates", str(cand_path))
    other_image = json.loads(json.dumps(good))
    other_image["decisions"][0]["file_name"] = "nope.png"
    assert "image 'nope.png' is not in --gt" in merge(other_image)
    assert "not a decisions file" in merge({"decisions": []})
    stale = dict(good, candidates_sha256="0" * 64)
    assert "another candidates.json" in merge(stale, "--candidates", str(cand_path))
    # a merge over an existing output is refused, and the existing file is left as it was
    out.write_text("{}")
    dec = tmp_path / "decisions.json"
    dec.write_text(json.dumps(good))
    assert (
        main(["audit-merge", "--gt", str(gt), "--gt-format", "coco", "--decisions", str(dec), "--out", str(out)]) == 2
    )
    assert "output already exists" in capsys.readouterr().err and out.read_text() == "{}"
    # merging over the input itself is refused even with --force
    assert (
        main(
            [
                "audit-merge",
                "--gt",
                str(gt),
                "--gt-format",
                "coco",
                "--decisions",
                str(dec),
                "--out",
                str(gt),
                "--force",
            ]
        )
        == 2
    )
    assert "overwrite an input" in capsys.readouterr().err


@pytest.mark.slow
def test_audit_run_with_flip_tta_then_merge_and_retrain(tmp_path, capsys):
    """The whole loop on a 2-iteration digits run: audit --run (twice the same run: agreement), merge, retrain."""
    config = Path(__file__).resolve().parents[2] / "configs" / "digits.yaml"
    data, run_dir = tmp_path / "digits", tmp_path / "run"
    train = data / "annotations" / "train.json"
    assert (
        main(["data", "digits", "--out", str(data), "--train", "6", "--val", "4", "--test", "1", "--size", "64"]) == 0
    )
    common = [
        "--config",
        str(config),
        "--no-progress",
        "--set",
        "train.iterations=2",
        "--set",
        "train.batch_size=2",
        "--set",
        f"data.val={data / 'annotations' / 'val.json'}",
    ]
    assert main(["train", "--out", str(run_dir), "--set", f"data.train={train}", *common]) == 0
    out = tmp_path / "audit"
    assert main(["audit", "--run", str(run_dir), str(run_dir), "--out", str(out), "--no-progress", "--iou", "0.3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["calibration"][0]["method"] == "validation" and summary["annotations"] == str(train)
    candidates = json.loads((out / "candidates.json").read_text())
    assert candidates, "an untrained detector fires everywhere"
    assert {c["support"] for c in candidates} == {2}  # the same model twice agrees with itself
    assert [c["rank"] for c in candidates] == list(range(1, len(candidates) + 1))
    dec = tmp_path / "decisions.json"
    dec.write_text(json.dumps(decisions_for(candidates, [1], [], summary["candidates_sha256"])))
    merged = tmp_path / "train_audited.json"
    assert (
        main(
            [
                "audit-merge",
                "--gt",
                str(train),
                "--gt-format",
                "coco",
                "--decisions",
                str(dec),
                "--candidates",
                str(out / "candidates.json"),
                "--out",
                str(merged),
            ]
        )
        == 0
    )
    assert len(json.loads(merged.read_text())["annotations"]) == len(json.loads(train.read_text())["annotations"]) + 1
    assert (
        main(
            [
                "train",
                "--out",
                str(tmp_path / "run2"),
                "--set",
                f"data.train={merged}",
                "--set",
                f"data.images={data / 'images' / 'train'}",
                *common,
            ]
        )
        == 0
    )


def test_audit_folds_cross_fits_and_a_rerun_reuses_the_fold_models(tmp_path, capsys):
    """--folds 2 on 8 digit images: two 1-iteration models, each predicting the 4 images it did not see."""
    from tests.conftest import REPO
    from tests.engine.digit_data import curated_digits

    data = curated_digits(tmp_path / "digits", train=8, val=2, test=1)
    out = tmp_path / "audit"
    tiny = [f"--set={kv}" for kv in ("train.iterations=1", "train.batch_size=2", "train.warmup_iterations=1")]
    args = [
        "audit",
        "--config",
        str(REPO / "configs" / "digits.yaml"),
        "--folds",
        "2",
        "--gt",
        str(data / "annotations" / "train_drop50.json"),
        "--val-gt",
        str(data / "annotations" / "val.json"),
        "--images",
        str(data / "images" / "train"),
        "--val-images",
        str(data / "images" / "val"),
        "--out",
        str(out),
        "--no-progress",
        "--iou",
        "0.3",
        *tiny,
    ]
    assert main(args) == 0
    split = json.loads((out / "folds" / "split.json").read_text())
    assert split["folds"] == 2 and sorted(k for _, k in split["images"]) == [0, 0, 0, 0, 1, 1, 1, 1]
    gt = load_dataset(data / "annotations" / "train_drop50.json", "coco")
    fold_of = {image_id: k for image_id, k in split["images"]}
    for k in (0, 1):
        here = out / "folds" / f"fold{k + 1}"
        trained_on = {im["id"] for im in json.loads((here / "train.json").read_text())["images"]}
        assert trained_on == {i for i in gt.image_ids if fold_of[i] != k}  # the other fold only
        predicted = {d["image_id"] for d in json.loads((here / "heldout.json").read_text())}
        assert predicted <= {i for i in gt.image_ids if fold_of[i] == k}  # its held-out fold only
        assert (here / "run" / "DONE").exists() and (here / "val.json").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["folds"] == 2 and summary["calibration"][0]["method"] == "validation (cross-fitted)"
    assert len(summary["calibration"][0]["folds"]) == 2
    first = (out / "candidates.json").read_bytes()
    assert "fold 2/2: training" in capsys.readouterr().out

    # a rerun (with --force, the outputs exist) trains nothing and gives the same candidates
    stamps = {p: p.stat().st_mtime_ns for p in (out / "folds").rglob("*") if p.is_file()}
    assert main([*args, "--force"]) == 0
    assert "training" not in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (out / "folds").rglob("*") if p.is_file()} == stamps
    assert (out / "candidates.json").read_bytes() == first

    # an --out holding only its folds (an interrupted audit) continues without --force; another split is refused
    for name in ("candidates.json", "summary.json", "review.html"):
        (out / name).unlink()
    (out / "folds" / "fold2" / "heldout.json").unlink()
    assert main(args) == 0 and (out / "candidates.json").read_bytes() == first
    for name in ("candidates.json", "summary.json", "review.html"):
        (out / name).unlink()
    assert main([*args, "--folds", "3"]) == 2
    assert "another split" in capsys.readouterr().err
