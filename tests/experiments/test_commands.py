"""`softsampling reproduce` options and presets, and `softsampling analyze overlap` on a tiny trained run."""

from __future__ import annotations

import json

import pytest

from softsampling.cli import main
from softsampling.commands.reproduce import parse_seeds
from softsampling.errors import SoftSamplingError
from softsampling.experiments.presets import digit_defaults, get_preset


def test_parse_seeds():
    assert parse_seeds(None) == [0]
    assert parse_seeds("0,1,2") == [0, 1, 2]
    for bad in ("a", "1,1", "-1", ""):
        with pytest.raises(SoftSamplingError, match="--seeds"):
            parse_seeds(bad)


def test_presets():
    digits = get_preset("digits")
    assert digits.rates == (0.3, 0.4, 0.5) and digits.digits == digit_defaults()
    assert digits.config_path().name == "digits.yaml"
    smoke = get_preset("smoke")
    assert smoke.rates == (0.5,) and (smoke.digits.train, smoke.digits.val, smoke.digits.test) == (40, 10, 20)
    with pytest.raises(SoftSamplingError, match="--voc-root"):
        get_preset("voc")
    with pytest.raises(SoftSamplingError, match="not found"):
        get_preset("voc", voc_root="/nonexistent/VOC2007")


def test_reproduce_dry_run_lists_the_runs(tmp_path, capsys):
    out = tmp_path / "smoke"
    assert main(["reproduce", "--preset", "smoke", "--out", str(out), "--dry-run", "--seeds", "0,1"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("seed")]
    # per seed: baseline, overlap_soft on full data; 7 rows at 50% (no val split: no pseudo labels)
    assert len(lines) == 2 * 9 and all("(to run)" in ln for ln in lines)
    for seed in (0, 1):
        curated = out / "data" / "curated" / f"seed{seed}" / "train_drop50.json"
        assert curated.exists() and curated.with_name("train_drop50.manifest.json").exists()
    saved = json.loads((out / "reproduce.json").read_text())
    assert saved["seeds"] == [0, 1] and len(saved["cells"]) == 18


def test_reproduce_rejects_bad_options(tmp_path, capsys):
    assert main(["reproduce", "--preset", "smoke", "--out", str(tmp_path / "x"), "--seeds", "0,0"]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert main(["reproduce", "--preset", "voc", "--out", str(tmp_path / "y")]) == 2
    assert "--voc-root" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A curated digit set (50% dropped) and a baseline trained for 2 iterations on it."""
    from softsampling.data.digits import make_digit_scenes
    from softsampling.engine.config import apply_overrides, load_config
    from softsampling.engine.train import train
    from softsampling.experiments.presets import CONFIG_DIR

    root = tmp_path_factory.mktemp("analyze")
    make_digit_scenes(root / "digits", train=6, val=1, test=1, size=128, seed=0)
    curated = root / "train_drop50.json"
    assert (
        main(
            [
                "curate",
                "--input",
                str(root / "digits/annotations/train.json"),
                "--format",
                "coco",
                "--drop-rate",
                "0.5",
                "--seed",
                "0",
                "--out",
                str(curated),
            ]
        )
        == 0
    )
    images = root / "digits" / "images" / "train"
    cfg = apply_overrides(
        load_config(CONFIG_DIR / "digits.yaml"),
        [
            f"data.train={curated}",
            f"data.images={images}",
            "data.val=null",
            "train.iterations=2",
            "train.batch_size=2",
            "train.warmup_iterations=1",
            "train.log_every=1",
        ],
    )
    train(cfg, root / "run", progress=False)
    return root, curated, images


def test_analyze_overlap_command(tiny_run, capsys):
    root, curated, images = tiny_run
    out = root / "analysis"
    assert (
        main(
            [
                "analyze",
                "overlap",
                "--data",
                str(curated),
                "--format",
                "coco",
                "--images-root",
                str(images),
                "--run",
                str(root / "run"),
                "--out",
                str(out),
                "--images",
                "4",
            ]
        )
        == 0
    )
    data = json.loads((out / "overlap.json").read_text())
    assert data["images"] == 4
    assert sum(data["curve"]["count"]) == data["background_proposals"] <= data["proposals"]
    assert sum(data["curve"]["dropped"]) == data["background_on_dropped"]
    p = [v for v in data["curve"]["p_dropped"] if v is not None]
    assert all(0.0 <= v <= 1.0 for v in p)
    assert data["paper"] == {"a": 0.25, "b": 50.0, "c": 20.0}
    if data["fitted"] is not None:
        assert 0.0 <= data["fitted"]["a"] <= 1.0
    assert (out / "overlap.png").read_bytes()[:4] == b"\x89PNG"
    assert "background proposals in 4 images" in capsys.readouterr().out


def test_analyze_overlap_needs_a_manifest(tiny_run, tmp_path, capsys):
    root, curated, images = tiny_run
    copy = tmp_path / "copy.json"
    copy.write_bytes(curated.read_bytes())
    assert (
        main(
            [
                "analyze",
                "overlap",
                "--data",
                str(copy),
                "--images-root",
                str(images),
                "--run",
                str(root / "run"),
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 2
    )
    assert "no curation manifest" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
