"""One-stage digit models (RetinaNet, FCOS) train and predict from the CLI with one-stage strategies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from softsampling.cli import main
from tests.engine.digit_data import curated_digits, train_on_curated


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory) -> Path:
    return curated_digits(tmp_path_factory.mktemp("digits") / "digits", train=4, val=2, test=2)


def test_retinanet_and_fcos_train_with_one_stage_strategies_and_predict(tiny_digits, tmp_path, capsys):
    runs = {
        "retina_brl": ["--set", "model.name=digits_retinanet", "--set", "strategy=[overlap_soft,brl]"],
        "fcos_upper": ["--set", "model.name=digits_fcos", "--set", "strategy=upper_bound"],  # reads the manifest
    }
    for name, extra in runs.items():
        assert train_on_curated(tiny_digits, tmp_path / name, *extra) == 0, name
        records = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        assert [r["iteration"] for r in records if "loss" in r] == [1, 2]
        assert all(r["loss"] > 0 and r["classification"] > 0 for r in records if "loss" in r)
        assert 0.0 <= records[-1]["val_mAP50"] <= 1.0
    out = tmp_path / "preds"
    assert (
        main(
            [
                "predict",
                "--run",
                str(tmp_path / "fcos_upper"),
                "--images",
                str(tiny_digits / "images" / "test"),
                "--out",
                str(out),
                "--score-threshold",
                "0",
            ]
        )
        == 0
    )
    dets = json.loads((out / "detections.json").read_text())
    assert dets and all(len(d["bbox"]) == 4 and 0.0 <= d["score"] <= 1.0 for d in dets)
    capsys.readouterr()
    # BRL on Faster R-CNN, a two-stage rule on RetinaNet: one-line config errors, exit status 2
    assert train_on_curated(tiny_digits, tmp_path / "bad1", "--set", "strategy=brl") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rule 'brl' of strategy 'brl' needs a one-stage detector" in err
    assert (
        train_on_curated(
            tiny_digits, tmp_path / "bad2", "--set", "model.name=digits_fcos", "--set", "strategy=objectness_mining"
        )
        == 2
    )
    assert "needs a two-stage detector" in capsys.readouterr().err
    assert not (tmp_path / "bad1").exists() and not (tmp_path / "bad2").exists()
