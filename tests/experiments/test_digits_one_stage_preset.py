"""`softsampling reproduce --preset digits-one-stage` at tiny sizes: its grid (rows chosen per preset), that the
default digits preset's cells are unchanged by that choice, one run trains and predicts with digits_retinanet,
and the report writes the one-stage table and its targets."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
import torch

from softsampling.cli import main
from softsampling.commands import reproduce as reproduce_command
from softsampling.engine.config import apply_overrides, validate
from softsampling.engine.train import train
from softsampling.errors import SoftSamplingError
from softsampling.experiments.grid import (
    METHODS,
    CellOutcome,
    DataLayout,
    SplitSpec,
    base_config,
    build_cells,
    prepare_data,
    rate_tag,
)
from softsampling.experiments.presets import RATE_METHODS, digit_defaults, get_preset
from softsampling.experiments.report import write_report, write_tables

# The default digits preset's 30 cells of seed 0, computed before presets could choose their per-rate rows
# (minus the full-data pseudo_label and objectness_mining rows, dropped from the default later; the combination's
# digests changed when its teacher became the overlap soft run: grid.PRIOR_ROWS). Same folders as docs/results/digits.
DIGITS_CELLS = (
    "baseline-full-52ec5f4936fd",
    "overlap_soft-full-7726f29f9a03",
    "overlap_soft+pseudo_label-full-a3bd11d74dd4",
    "baseline-drop30-7bf0bf4ec204",
    "hard_negative_0.1-drop30-f1071bf99774",
    "hard_negative_0.2-drop30-41ed1ef9d986",
    "overlap_soft-drop30-e49d4112603a",
    "score_soft-drop30-244f8b1a1973",
    "upper_bound-drop30-f7441156ad4f",
    "pseudo_label-drop30-25e557269c2f",
    "objectness_mining-drop30-d2227a070104",
    "overlap_soft+pseudo_label-drop30-5d6c64f852cb",
    "baseline-drop40-442236881a31",
    "hard_negative_0.1-drop40-12d8aeeca560",
    "hard_negative_0.2-drop40-5b407eb69e12",
    "overlap_soft-drop40-df4fc3ceade1",
    "score_soft-drop40-f4c689330721",
    "upper_bound-drop40-9837d879ec77",
    "pseudo_label-drop40-2baf480b84fa",
    "objectness_mining-drop40-99e4a045acdc",
    "overlap_soft+pseudo_label-drop40-09d3e1595c4b",
    "baseline-drop50-c35dc2ee3d48",
    "hard_negative_0.1-drop50-93483a6fe310",
    "hard_negative_0.2-drop50-0c99f7b3dad7",
    "overlap_soft-drop50-da6583850b15",
    "score_soft-drop50-481b40c9c653",
    "upper_bound-drop50-2d3ec22282c7",
    "pseudo_label-drop50-c26adf1605ce",
    "objectness_mining-drop50-fb69cb9ef481",
    "overlap_soft+pseudo_label-drop50-52f63068e58e",
)


def layout(rates, seeds=(0,)) -> DataLayout:
    img = {"image_root": "data/digits/images/train"}
    return DataLayout(
        train=SplitSpec("data/digits/annotations/train.json", "coco", img),
        test=SplitSpec("data/digits/annotations/test.json", "coco", {"image_root": "data/digits/images/test"}),
        val=SplitSpec("data/digits/annotations/val.json", "coco", {"image_root": "data/digits/images/val"}),
        curated={
            (s, r): SplitSpec(f"data/curated/seed{s}/train_{rate_tag(r)}.json", "coco", img)
            for s in seeds
            for r in rates
        },
    )


def test_default_digits_preset_keeps_its_cells_and_digests():
    preset = get_preset("digits")
    assert preset.rate_methods == RATE_METHODS and "brl" not in RATE_METHODS and "brl" in METHODS
    cells = build_cells(preset, [0], layout(preset.rates), base_config(preset, []))
    assert [c.run_dir for c in cells] == [f"runs/seed0/{name}" for name in DIGITS_CELLS]


def test_one_stage_preset_rows_and_configs():
    preset = get_preset("digits-one-stage")
    assert preset.rates == (0.3, 0.4, 0.5) and preset.digits == digit_defaults() and preset.kind == "one_stage"
    base = base_config(preset, [])
    assert base.model.name == "digits_retinanet" and preset.config_path().name == "digits-retinanet.yaml"
    cells = build_cells(preset, [0, 1], layout(preset.rates, (0, 1)), base)
    assert [c.key for c in cells if c.seed == 1] == ["seed1/baseline-full"] + [
        f"seed1/{m}-drop{p}" for p in (30, 40, 50) for m in ("baseline", "overlap_soft", "brl", "upper_bound")
    ]
    by = {c.key: c for c in cells}
    assert by["seed0/brl-drop40"].config.strategy == "brl" and by["seed0/brl-drop40"].prior is None
    assert by["seed0/upper_bound-drop50"].config.data.manifest == "data/curated/seed0/train_drop50.manifest.json"
    assert by["seed0/overlap_soft-drop30"].config.strategy_params == {"a": 0.25, "b": 50.0, "c": 20.0}
    for cell in cells:  # brl is refused on a two-stage model: every cell must pass the run's own check
        assert validate(cell.config).model.name == "digits_retinanet"
    assert sorted(c.key for c in cells if c.evaluation["train"]) == [
        f"seed{s}/baseline-{t}" for s in (0, 1) for t in ("drop30", "full")
    ]


def test_a_preset_naming_an_unknown_row_or_a_prior_without_its_baseline_is_refused():
    preset = get_preset("digits-one-stage")
    lay, base = layout(preset.rates), base_config(preset, [])
    with pytest.raises(SoftSamplingError, match="unknown rows overlap_sfot"):
        build_cells(dataclasses.replace(preset, rate_methods=("baseline", "overlap_sfot")), [0], lay, base)
    with pytest.raises(SoftSamplingError, match="'score_soft' needs a round-one run"):
        build_cells(dataclasses.replace(preset, rate_methods=("score_soft", "baseline")), [0], lay, base)


def tiny_one_stage_preset():
    preset = get_preset("digits-one-stage")
    return dataclasses.replace(preset, rates=(0.5,), digits=dataclasses.replace(preset.digits, train=4, val=0, test=2))


def test_reproduce_digits_one_stage_dry_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(reproduce_command, "get_preset", lambda name, **_: tiny_one_stage_preset())
    out = tmp_path / "one"
    assert main(["reproduce", "--preset", "digits-one-stage", "--out", str(out), "--dry-run"]) == 0
    listed = [ln.split()[0] for ln in capsys.readouterr().out.splitlines() if "(to run)" in ln]
    assert listed == ["seed0/baseline-full"] + [
        f"seed0/{m}-drop50" for m in ("baseline", "overlap_soft", "brl", "upper_bound")
    ]
    saved = json.loads((out / "reproduce.json").read_text())
    assert saved["preset"]["rate_methods"] == ["baseline", "overlap_soft", "brl", "upper_bound"]


def test_a_digits_one_stage_brl_cell_trains_and_predicts(tmp_path, monkeypatch):
    preset = tiny_one_stage_preset()
    layout_ = prepare_data(preset, [0], tmp_path, log=lambda _: None)
    cells = build_cells(preset, [0], layout_, base_config(preset, []))
    cell = next(c for c in cells if c.key == "seed0/brl-drop50")
    cfg = apply_overrides(
        cell.config,
        ["train.iterations=1", "train.batch_size=2", "train.warmup_iterations=1", "train.checkpoint_every=1"],
    )
    monkeypatch.chdir(tmp_path)  # cell paths are relative to the study folder
    assert train(cfg, tmp_path / "run", progress=False).exists()
    from softsampling.engine.config import load_config
    from softsampling.engine.predict import load_run

    assert load_config(tmp_path / "run" / "config.yaml").strategy == "brl"
    model, _, _ = load_run(tmp_path / "run")
    assert type(model).__name__ == "RetinaNet"
    with torch.no_grad():
        assert set(model([torch.rand(3, 128, 128)])[0]) == {"boxes", "labels", "scores"}


def outcome(cell, m: float) -> CellOutcome:
    sweep = {"thresholds": [0.8], "mAP": [m / 200]}
    results = {"seed": cell.seed, "method": cell.method, "rate": cell.rate, "test": {"mAP": m / 100, "sweep": sweep}}
    return CellOutcome(cell, "done", results)


def test_report_writes_the_one_stage_table_and_targets(tmp_path):
    preset = dataclasses.replace(get_preset("digits-one-stage"), rates=(0.3, 0.5))
    cells = build_cells(preset, [0], layout(preset.rates), base_config(preset, []))
    maps = {"baseline": {0.0: 80.0, 0.3: 76.0, 0.5: 70.0}, "overlap_soft": {0.3: 78.0, 0.5: 76.0}}
    maps |= {"brl": {0.3: 77.0, 0.5: 72.0}, "upper_bound": {0.3: 79.0, 0.5: 78.0}}
    outcomes = [outcome(c, maps[c.method][c.rate]) for c in cells]
    write_tables(tmp_path, outcomes, preset, [0])
    rows = list(csv.reader((tmp_path / "table1.csv").open(encoding="utf-8")))
    assert rows == [
        ["method", "no drop", "30%", "50%"],
        ["Baseline", "80.00", "76.00", "70.00"],
        ["Soft sampling (overlap)", "-", "78.00", "76.00"],
        ["Background recalibration loss (BRL)", "-", "77.00", "72.00"],
        ["Upper bound", "-", "79.00", "78.00"],
    ]
    gap = list(csv.reader((tmp_path / "gap_closed.csv").open(encoding="utf-8")))
    assert gap[1:] == [["Soft sampling (overlap)", "67%", "75%"], ["Background recalibration loss (BRL)", "33%", "25%"]]
    targets = list(csv.DictReader((tmp_path / "targets.csv").open(encoding="utf-8")))
    assert [(t["target"], t["verdict"]) for t in targets] == [("(os-a)", "PASS"), ("(os-b)", "PASS")]
    assert targets[1]["measured"] == "recovers 60% (70.00 -> 76.00 of 80.00)"
    table_md = (tmp_path / "table1.md").read_text()
    assert "mAP@0.5 (%) with detections below score 0.8" in table_md
    assert "Best new strategy" not in table_md  # the two-stage study's choice has no rows here
    md = write_tables(tmp_path, outcomes, preset, [0])
    report = write_report(tmp_path, preset, [0], outcomes, md, wall_seconds=1.0, figures={}, command="reproduce")
    text = report.read_text(encoding="utf-8")
    assert "(os-a)" in text and "Best new strategy" not in text
