"""Plumbing of `softsampling reproduce --preset digits-hard` at tiny sizes: the preset builds hard scenes,
curates them, lays out the whole grid from configs/digits-hard.yaml, and one of its runs trains and predicts."""

from __future__ import annotations

import dataclasses
import json

import torch

from softsampling.cli import main
from softsampling.commands import reproduce as reproduce_command
from softsampling.engine.config import apply_overrides
from softsampling.engine.train import train
from softsampling.experiments.grid import base_config, build_cells, prepare_data
from softsampling.experiments.presets import DigitsData, digit_defaults, get_preset


def tiny_hard_preset():
    preset = get_preset("digits-hard")
    return dataclasses.replace(preset, rates=(0.5,), digits=dataclasses.replace(preset.digits, train=4, val=0, test=2))


def test_digits_hard_preset_defaults():
    preset = get_preset("digits-hard")
    assert preset.digits == DigitsData(train=2000, val=300, test=500, size=160, seed=0, preset="hard")
    assert preset.digits == digit_defaults("hard") and get_preset("digits").digits.preset == "classic"
    assert preset.rates == (0.3, 0.4, 0.5) and preset.config_path().name == "digits-hard.yaml"
    model = base_config(preset, []).model
    assert model.name == "digits" and model.options["image_size"] == 160 and 64 in model.options["anchor_sizes"]


def test_reproduce_digits_hard_dry_run_builds_hard_scenes(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(reproduce_command, "get_preset", lambda name, **_: tiny_hard_preset())
    out = tmp_path / "hard"
    assert main(["reproduce", "--preset", "digits-hard", "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "built hard digit scenes (4/0/2 images, 160 px)" in printed
    info = json.loads((out / "data/digits/annotations/train.json").read_text())["info"]
    assert info["arguments"]["preset"] == "hard" and info["arguments"]["size"] == 160
    assert (out / "data/curated/seed0/train_drop50.manifest.json").exists()
    saved = json.loads((out / "reproduce.json").read_text())
    assert saved["preset"]["name"] == "digits-hard" and saved["preset"]["digits"]["preset"] == "hard"
    # 3 full-data rows and 7 at 50% (no val split here, so no pseudo-label rows)
    assert len(saved["cells"]) == 9 and sum("(to run)" in ln for ln in printed.splitlines()) == 9


def test_a_digits_hard_cell_trains_and_predicts(tmp_path, monkeypatch):
    preset = tiny_hard_preset()
    layout = prepare_data(preset, [0], tmp_path, log=lambda _: None)
    cells = build_cells(preset, [0], layout, base_config(preset, []))
    cell = next(c for c in cells if c.key == "seed0/baseline-drop50")
    cfg = apply_overrides(
        cell.config,
        [
            "train.iterations=1",
            "train.batch_size=2",
            "train.warmup_iterations=1",
            "train.log_every=1",
            "train.checkpoint_every=1",
        ],
    )
    monkeypatch.chdir(tmp_path)  # cell paths are relative to the study folder
    weights = train(cfg, tmp_path / "run", progress=False)
    assert weights.exists()
    from softsampling.engine.build import build_model

    model = build_model(cfg, num_classes=11).eval()
    assert model.transform.min_size == (160,) and model.rpn.anchor_generator.sizes == ((16, 24, 32, 48, 64),)
    with torch.no_grad():
        assert set(model([torch.rand(3, 160, 160)])[0]) == {"boxes", "labels", "scores"}
