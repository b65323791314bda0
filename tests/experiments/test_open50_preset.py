"""The open50 preset's plumbing on a tiny synthetic Open Images tree: `data openimages-subset` builds the folder,
`reproduce --preset open50` trains its three rows (a CPU-sized model, one iteration, in process) and scores
them with the Open Images metric. A real run needs the real data and a GPU."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from softsampling.cli import main
from softsampling.data.openimages import BOX_COLUMNS

CLASSES = ("/m/aa", "/m/bb", "/m/cc")


def make_open_images(root: Path) -> Path:
    """Raw Open Images-style CSVs: 8 train and 4 test images with boxes of three classes; returns the subset folder."""
    rng = np.random.default_rng(0)
    root.mkdir()
    header = ",".join(BOX_COLUMNS)
    labels = ["ImageID,Source,LabelName,Confidence"]
    for split, n in (("train", 8), ("test", 4)):
        lines = [header]
        for i in range(n):
            image = f"{split[:2]}{i:02d}"
            for k, cls in enumerate(CLASSES):
                for j in range(1 + (k == 0) + (i % 2)):  # /m/aa is the densest class
                    x1, y1 = 0.05 + 0.3 * k, 0.05 + 0.3 * j
                    lines.append(f"{image},xclick,{cls},1,{x1:.2f},{x1 + 0.25:.2f},{y1:.2f},{y1 + 0.25:.2f},0,0,0,0,0")
            labels.append(f"{image},verification,{CLASSES[0]},1")
            labels.append(f"{image},verification,/m/zz,0")
        (root / f"{split}-bbox.csv").write_text("\n".join(lines) + "\n")
    (root / "labels.csv").write_text("\n".join(labels) + "\n")
    (root / "classes.csv").write_text("".join(f"{c},Class {c[-2:]}\n" for c in (*CLASSES, "/m/zz")))
    subset = root / "open50"
    assert (
        main(
            [
                "data",
                "openimages-subset",
                "--train-boxes",
                str(root / "train-bbox.csv"),
                "--test-boxes",
                str(root / "test-bbox.csv"),
                "--labels",
                str(root / "labels.csv"),
                "--classes",
                str(root / "classes.csv"),
                "--num-classes",
                "2",
                "--min-train",
                "0",
                "--min-test",
                "0",
                "--out",
                str(subset),
            ]
        )
        == 0
    )
    for split in ("train", "test"):
        folder = subset / "images" / split
        folder.mkdir(parents=True)
        for image in (subset / f"{split}-images.txt").read_text().split():
            pixels = rng.integers(0, 60, (48, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{image}.jpg", quality=90)
    return subset


def test_open50_dry_run_lists_three_rows_without_curation(tmp_path, capsys):
    subset = make_open_images(tmp_path / "oi")
    assert json.loads((subset / "stats.json").read_text())["classes"][0]["LabelName"] == "/m/aa"
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["reproduce", "--preset", "open50", "--oi-root", str(subset), "--out", str(out), "--dry-run"]) == 0
    listed = [ln.split()[0] for ln in capsys.readouterr().out.splitlines() if ln.startswith("seed0/")]
    assert listed == ["seed0/baseline-full", "seed0/hard_negative_0.1-full", "seed0/overlap_soft-full"]
    assert not (out / "data" / "curated").exists()
    spec = json.loads((out / "reproduce.json").read_text())
    assert spec["preset"]["config"] == "open50.yaml" and spec["preset"]["metric"] == "openimages"


def test_open50_needs_the_subset_folder(tmp_path, capsys):
    assert main(["reproduce", "--preset", "open50", "--out", str(tmp_path / "out")]) == 2
    assert "--oi-root" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert (
        main(["reproduce", "--preset", "open50", "--oi-root", str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
        == 2
    )
    err = capsys.readouterr().err
    assert "train.csv" in err and "openimages-subset" in err


def test_open50_trains_and_scores_with_the_open_images_metric(tmp_path, monkeypatch):
    from softsampling.experiments import cell, grid

    def in_process(command_prefix=None, threads=1):
        def launch(spec_path: Path, out_dir: Path, log_path: Path) -> tuple[int, str]:
            here = os.getcwd()
            os.chdir(out_dir)
            try:
                return cell.run_cell(spec_path), ""
            finally:
                os.chdir(here)

        return launch

    monkeypatch.setattr(grid, "subprocess_launcher", in_process)
    subset = make_open_images(tmp_path / "oi")
    out = tmp_path / "out"
    code = main(
        [
            "reproduce",
            "--preset",
            "open50",
            "--oi-root",
            str(subset),
            "--out",
            str(out),
            "--jobs",
            "1",
            "--set",
            "model.name=digits",
            "--set",
            "model.min_size=64",
            "--set",
            "model.max_size=64",
            "--set",
            "train.iterations=1",
            "--set",
            "train.batch_size=2",
            "--set",
            "train.warmup_iterations=1",
            "--set",
            "train.checkpoint_every=1",
            "--set",
            "train.log_every=1",
            "--set",
            "train.amp=false",
            "--set",
            "train.device=cpu",
            "--set",
            "train.threads=1",
        ]
    )
    results = list(csv.DictReader((out / "results.csv").open(encoding="utf-8")))
    assert code == 0, [(r["method"], r["status"]) for r in results]
    assert [r["method"] for r in results] == ["baseline", "hard_negative_0.1", "overlap_soft"]
    for r in results:
        res = json.loads((out / r["run_dir"] / "results.json").read_text())
        assert res["evaluation"]["metric"] == "openimages" and res["train"] is None
        assert set(res["test"]["per_class"]) == {"1", "2"}  # the two chosen classes
        assert 0.0 <= res["test"]["mAP"] <= 1.0
        assert "format: openimages" in (out / r["run_dir"] / "config.yaml").read_text()
    rows = list(csv.reader((out / "table1.csv").open(encoding="utf-8")))
    assert rows[0] == ["method", "mAP@0.5 (%)", "score >= 0.8", "paper"]
    assert [r[0] for r in rows[1:]] == ["Baseline", "Hard negative (0.1)", "Soft sampling (overlap)"]
    assert [r[3] for r in rows[1:]] == ["42.57", "40.06", "45.92"]
    report = (out / "report.md").read_text()
    assert "Open Images metric" in report and (out / "fig2_score_threshold.png").exists()
