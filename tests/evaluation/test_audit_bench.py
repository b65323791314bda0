"""bench/audit_quality.py on a hand-made `softsampling reproduce` folder (cached predictions, no model)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np

from softsampling.cli import main
from softsampling.data.curate import read_manifest
from softsampling.data.formats import load_dataset, save_dataset
from softsampling.structures.records import Category, DetectionDataset
from tests.conftest import REPO


def bench():
    spec = importlib.util.spec_from_file_location("audit_quality", REPO / "bench" / "audit_quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["audit_quality"] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def reproduce_folder(root: Path) -> Path:
    """root/data/curated/seed0/train_drop50.json (+ manifest) and two runs of `baseline` at 50%."""
    boxes = [
        {"image_index": i, "bbox": [10 * j, 10 * j, 10 * j + 8, 10 * j + 8], "label": 1 + j % 2}
        for i in range(6)
        for j in range(4)
    ]
    ds = DetectionDataset.from_lists(
        images=[{"id": i + 1, "file_name": f"{i}.png", "width": 64, "height": 64} for i in range(6)],
        boxes=boxes,
        categories=[Category(1, "a"), Category(2, "b")],
    )
    full = root / "data" / "digits" / "train.json"
    full.parent.mkdir(parents=True)
    save_dataset(ds, full, "coco")
    curated = root / "data" / "curated" / "seed0" / "train_drop50.json"
    curated.parent.mkdir(parents=True)
    args = ["--input", str(full), "--format", "coco", "--drop-rate", "0.5", "--seed", "0", "--out", str(curated)]
    assert main(["curate", *args]) == 0
    for name in ("baseline-drop50-aaaa11112222", "baseline-drop50-bbbb33334444", "baseline-drop30-cccc55556666"):
        run = root / "runs" / "seed0" / name
        run.mkdir(parents=True)
        (run / "model.pt").write_bytes(b"not used: the predictions are cached")
        data = {"format": "coco", "train": "data/curated/seed0/train_drop50.json", "val": None}
        (run / "cell_spec.json").write_text(json.dumps({"config": {"data": data}}))
    return curated


def test_reproduce_dir_study_reads_runs_manifests_and_cached_predictions(tmp_path, capsys):
    curated = reproduce_folder(tmp_path / "rep")
    gt = load_dataset(curated, "coco")
    manifest = read_manifest(curated)
    row_of = {image_id: r for r, image_id in enumerate(gt.image_ids)}
    # the newest run: every annotated box (score 0.9) and every dropped box (0.8): a perfect ranking
    entries = [
        {
            "image_id": int(gt.image_ids[gt.box_image[b]]),
            "category_id": int(gt.labels[b]),
            "score": 0.9,
            "bbox": [float(v) for v in (*gt.boxes[b][:2], *(gt.boxes[b][2:] - gt.boxes[b][:2]))],
        }
        for b in range(gt.num_boxes)
    ] + [
        {
            "image_id": int(i),
            "category_id": int(c),
            "score": 0.8,
            "bbox": [float(v) for v in (*box[:2], *(box[2:] - box[:2]))],
        }
        for i, c, box in zip(manifest.image_ids.tolist(), manifest.labels.tolist(), manifest.boxes, strict=True)
    ]
    assert all(i in row_of for i in manifest.image_ids.tolist())
    cache = tmp_path / "cache"
    newest = cache / "seed0" / "baseline-drop50-bbbb33334444" / "train.json"
    newest.parent.mkdir(parents=True)
    newest.write_text(json.dumps(entries))
    run = tmp_path / "rep" / "runs" / "seed0" / "baseline-drop50-bbbb33334444" / "model.pt"
    older = tmp_path / "rep" / "runs" / "seed0" / "baseline-drop50-aaaa11112222" / "model.pt"
    run.touch()
    os.utime(older, ns=(1, 1))
    out = tmp_path / "quality.json"
    module = bench()
    module.main(
        [
            "--reproduce-dir",
            str(tmp_path / "rep"),
            "--seeds",
            "0,1",
            "--rates",
            "0.5",
            "--methods",
            "baseline",
            "--cache",
            str(cache),
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr()
    rows = json.loads(out.read_text())
    assert len(rows) == 1  # seed 1 has no runs: skipped, and said so
    assert "seed 1, drop50, baseline: no finished run" in printed.err
    row = rows[0]
    assert row["run"].endswith("baseline-drop50-bbbb33334444") and row["predictions"] == "in-sample"
    assert row["dropped"] == len(manifest.labels) > 0
    assert row["ours"]["average_precision"] == 1.0 and row["ours"]["recall_at_k"] == 1.0
    assert row["candidates"] == len(manifest.labels)
    assert "| 50% | baseline | in-sample | 1 | 100.0 | 100.0 |" in printed.out


def test_markdown_table_means_over_seeds():
    module = bench()

    def row(seed: int, ap: float, estimated: float, cleanlab: float | None) -> dict:
        return {
            "seed": seed,
            "rate": 0.3,
            "method": "overlap_soft",
            "predictions": "cross-fitted",
            "dropped": 10,
            "estimated_missing": estimated,
            "ours": {"average_precision": ap, "recall_at_k": 0.5},
            "cleanlab": None if cleanlab is None else {"average_precision": cleanlab},
        }

    table = module.markdown_table([row(0, 0.9, 9.0, 0.5), row(1, 0.7, 11.0, None)])
    assert table.splitlines()[2] == (
        "| 30% | overlap_soft | cross-fitted | 2 | 80.0 ± 10.0 | 50.0 ± 0.0 | 1.000 ± 0.100 | 50.0 |"
    )


def test_find_cell_resolves_paths_against_the_reproduce_folder(tmp_path):
    curated = reproduce_folder(tmp_path / "rep")
    module = bench()
    cell = module.find_cell(tmp_path / "rep", 0, 0.3, "baseline")
    assert cell.run_dir.name == "baseline-drop30-cccc55556666" and cell.train == curated
    assert cell.manifest == curated.with_name("train_drop50.manifest.json") and cell.val is None
    assert module.find_cell(tmp_path / "rep", 0, 0.5, "overlap_soft") is None
    assert np.isclose(0.3, cell.rate)


def test_ensemble_ranks_the_runs_of_every_method_together(tmp_path, capsys):
    curated = reproduce_folder(tmp_path / "rep")
    manifest = read_manifest(curated)

    def coco(image_id: int, label: int, box, score: float) -> dict:
        return {
            "image_id": int(image_id),
            "category_id": int(label),
            "score": score,
            "bbox": [*box[:2], *(box[2:] - box[:2])],
        }

    dropped = list(zip(manifest.image_ids.tolist(), manifest.labels.tolist(), manifest.boxes.tolist(), strict=True))
    found = {  # baseline finds the first half of the dropped boxes, overlap soft the second half
        "baseline-drop50-bbbb33334444": dropped[: len(dropped) // 2],
        "overlap_soft-drop50-dddd77778888": dropped[len(dropped) // 2 :],
    }
    spec = json.loads(
        (tmp_path / "rep" / "runs" / "seed0" / "baseline-drop50-bbbb33334444" / "cell_spec.json").read_text()
    )
    for name, boxes in found.items():
        run = tmp_path / "rep" / "runs" / "seed0" / name
        run.mkdir(exist_ok=True)
        (run / "model.pt").write_bytes(b"not used")
        (run / "cell_spec.json").write_text(json.dumps(spec))
        cached = tmp_path / "cache" / "seed0" / name / "train.json"
        cached.parent.mkdir(parents=True)
        cached.write_text(json.dumps([coco(i, c, np.array(b), 0.8) for i, c, b in boxes]))
    os.utime(tmp_path / "rep" / "runs" / "seed0" / "baseline-drop50-aaaa11112222" / "model.pt", ns=(1, 1))
    out = tmp_path / "quality.json"
    common = ["--reproduce-dir", str(tmp_path / "rep"), "--seeds", "0", "--rates", "0.5"]
    bench().main(
        [
            *common,
            "--methods",
            "baseline,overlap_soft",
            "--cache",
            str(tmp_path / "cache"),
            "--ensemble",
            "--out",
            str(out),
        ]
    )
    rows = {r["method"]: r for r in json.loads(out.read_text())}
    assert set(rows) == {"baseline", "overlap_soft", "all runs (baseline+overlap_soft)"}
    assert 0 < rows["baseline"]["ours"]["recall_at_k"] < 1 and 0 < rows["overlap_soft"]["ours"]["recall_at_k"] < 1
    together = rows["all runs (baseline+overlap_soft)"]
    assert together["ours"]["recall_at_k"] == 1.0 and together["candidates"] == len(dropped)
    assert "all runs, in-sample" in capsys.readouterr().err
