"""The voc preset's plumbing on a tiny VOC2007-layout folder (random images; a real run needs a GPU)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from softsampling.cli import main

CLASSES = ("cat", "dog")


def make_voc(root: Path, n_trainval: int = 6, n_test: int = 2, size: int = 96) -> Path:
    """VOC2007/{Annotations,ImageSets/Main,JPEGImages} with 3 boxes per image (one of them difficult in test)."""
    voc = root / "VOC2007"
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (voc / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    stems = [f"{i:06d}" for i in range(1, n_trainval + n_test + 1)]
    for i, stem in enumerate(stems):
        pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        objects = []
        for k in range(3):
            x1, y1 = 4 + 30 * k, 10 + 20 * (k % 2)
            x2, y2 = x1 + 24, y1 + 30
            pixels[y1:y2, x1:x2] = 200 if k % 2 == 0 else 120
            difficult = int(i >= n_trainval and k == 2)
            objects.append(
                f"<object><name>{CLASSES[k % 2]}</name><difficult>{difficult}</difficult><bndbox>"
                f"<xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
            )
        Image.fromarray(pixels).save(voc / "JPEGImages" / f"{stem}.jpg", quality=95)
        (voc / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><folder>VOC2007</folder><filename>{stem}.jpg</filename><size><width>{size}</width>"
            f"<height>{size}</height><depth>3</depth></size>{''.join(objects)}</annotation>"
        )
    (voc / "ImageSets/Main/trainval.txt").write_text("".join(s + "\n" for s in stems[:n_trainval]))
    (voc / "ImageSets/Main/test.txt").write_text("".join(s + "\n" for s in stems[n_trainval:]))
    return voc


def test_voc_preset_prepares_curated_voc_folders(tmp_path, capsys):
    voc = make_voc(tmp_path)
    out = tmp_path / "out"
    assert main(["reproduce", "--preset", "voc", "--voc-root", str(voc), "--out", str(out), "--dry-run"]) == 0
    listed = [ln.split()[0] for ln in capsys.readouterr().out.splitlines() if ln.startswith("seed0/")]
    # full data: baseline, overlap_soft; per rate the 6 paper rows + objectness_mining
    # (no val split: no pseudo-label rows)
    assert len(listed) == 2 + 3 * 7
    for tag in ("drop30", "drop40", "drop50"):
        curated = out / "data" / "curated" / "seed0" / f"train_{tag}"
        assert (curated / "manifest.json").exists() and (curated / "ImageSets/Main/trainval.txt").exists()
        assert (curated / "JPEGImages" / "000001.jpg").exists()  # symlinked to the original images
    spec = json.loads((out / "reproduce.json").read_text())
    assert spec["preset"]["config"] == "voc.yaml"
    ub = [c for c in spec["cells"] if "upper_bound-drop50" in c]
    assert len(ub) == 1


@pytest.mark.slow
def test_voc_preset_trains_and_reports_on_cpu(tmp_path, monkeypatch):
    """Every cell of the voc preset for one rate, 1 iteration of ResNet-50-FPN at 64 px on CPU: plumbing only."""
    import dataclasses

    from softsampling.experiments import presets

    voc = make_voc(tmp_path)
    out = tmp_path / "out"
    original = presets.voc_preset

    def one_rate(*args, **kwargs):
        p = original(*args, **kwargs)
        return dataclasses.replace(
            p,
            rates=(0.5,),
            train_eval_images=2,
            overlap_images=2,
            example_images=2,
            methods=("baseline", "overlap_soft"),
        )

    monkeypatch.setattr(presets, "voc_preset", one_rate)
    code = main(
        [
            "reproduce",
            "--preset",
            "voc",
            "--voc-root",
            str(voc),
            "--out",
            str(out),
            "--jobs",
            "2",
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
            "model.min_size=64",
            "--set",
            "model.max_size=64",
            "--set",
            "train.threads=1",
        ]
    )
    results = list(csv.DictReader((out / "results.csv").open(encoding="utf-8")))
    assert code == 0, [(r["method"], r["status"]) for r in results]
    # 2 full-data rows (restricted above) + 7 at 50%: the 6 paper rows and objectness mining (no val: no pseudo labels)
    assert len(results) == 9 and {r["status"] for r in results} == {"done"}
    rows = list(csv.reader((out / "table1.csv").open(encoding="utf-8")))
    assert rows[0] == ["method", "no drop", "50%"]
    assert (out / "fig5_examples.png").exists() and (out / "report.md").exists()
